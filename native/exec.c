/*
 * tsvz-exec: run a command inside a running container. Joins init's cgroups
 * and namespaces (setns into a mount namespace is not allowed in a
 * multithreaded process such as Node), forks so the pid namespace applies,
 * and execs. With --tty the command gets a pty from the container's own
 * devpts and this process relays it to our terminal.
 * Exit status: the command's, or 128+signal; 125 when tsvz-exec itself failed.
 */
#include "common.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>

static void die(const char *what) {
	fprintf(stderr, "tsvz-exec: %s: %s\n", what, strerror(errno));
	exit(125);
}

static void usage(void) {
	fprintf(stderr, "usage: tsvz-exec --pid PID [--cgroup PROCS]... [--env K=V]... [--cap-drop N]... [--cwd DIR] [--tty] -- CMD [ARGS...]\n");
	exit(125);
}

/* Order matters: the mount namespace last, as it changes how /proc paths resolve. */
static const char *NAMESPACES[] = { "cgroup", "ipc", "uts", "net", "pid", "mnt" };
#define NNS (sizeof NAMESPACES / sizeof NAMESPACES[0])

static struct termios saved_termios;
static int termios_saved;

static void restore_terminal(void) {
	if (termios_saved) tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
}

static void copy_winsize(int from, int to) {
	struct winsize ws;
	if (ioctl(from, TIOCGWINSZ, &ws) == 0) ioctl(to, TIOCSWINSZ, &ws);
}

/* Relay our terminal <-> the pty master until the command exits; returns its wait status. */
static int relay(int master, pid_t child) {
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
		termios_saved = 1;
		atexit(restore_terminal);
		struct termios raw = saved_termios;
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
		copy_winsize(STDIN_FILENO, master);
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGWINCH);
	int sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	int status = 0, exited = 0, stdin_open = 1;
	char buf[16384];
	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = sigfd, .events = POLLIN },
			{ .fd = master, .events = POLLIN },
			{ .fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
		};
		if (poll(pfd, 3, exited ? 50 : -1) < 0 && errno != EINTR) break;
		if (pfd[1].revents & POLLIN) {
			ssize_t n = read(master, buf, sizeof buf);
			if (n > 0) { (void)write_all(STDOUT_FILENO, buf, (size_t)n); continue; }
		}
		if (exited) break; /* command gone and its output drained */
		if (pfd[1].revents & (POLLHUP | POLLERR) && !(pfd[1].revents & POLLIN)) {
			/* every slave closed: only the exit status is left to collect */
		}
		if (pfd[2].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
			if (n > 0) (void)write_all(master, buf, (size_t)n);
			else { stdin_open = 0; if (!termios_saved) { char eot = 4; (void)write_all(master, &eot, 1); } }
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof si) != sizeof si) continue;
			if (si.ssi_signo == SIGWINCH) copy_winsize(STDIN_FILENO, master);
			else if (waitpid(child, &status, WNOHANG) == child) exited = 1;
		}
	}
	return status;
}

int main(int argc, char **argv) {
	pid_t target = 0;
	const char *cgroups[MAX_LIST], *cwd = "/";
	char *env[MAX_LIST + 1] = { 0 };
	int ncg = 0, nenv = 0, tty = 0, i, caps[64], ncaps = 0;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) { i++; break; }
		if (!strcmp(a, "--tty")) { tty = 1; continue; }
		if (i + 1 >= argc) usage();
		if (!strcmp(a, "--pid")) target = (pid_t)atoi(argv[++i]);
		else if (!strcmp(a, "--cgroup") && ncg < MAX_LIST) cgroups[ncg++] = argv[++i];
		else if (!strcmp(a, "--env") && nenv < MAX_LIST) env[nenv++] = argv[++i];
		else if (!strcmp(a, "--cwd")) cwd = argv[++i];
		else if (!strcmp(a, "--cap-drop") && ncaps < 64) caps[ncaps++] = atoi(argv[++i]);
		else usage();
	}
	if (target <= 0 || i >= argc) usage();
	char **cmd = &argv[i];

	int nsfd[NNS];
	for (size_t k = 0; k < NNS; k++) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)target, NAMESPACES[k]);
		nsfd[k] = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd[k] < 0) die("open container namespace (is it running?)");
	}
	for (int k = 0; k < ncg; k++)
		if (cgroup_attach(cgroups[k], getpid()) < 0) die(cgroups[k]);
	for (size_t k = 0; k < NNS; k++) {
		if (setns(nsfd[k], 0) < 0) die(NAMESPACES[k]);
		close(nsfd[k]);
	}
	if (chdir(cwd) < 0) die("chdir");

	int master = -1;
	if (tty) {
		master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
		int unlock = 0;
		if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0) die("open container pty");
	}
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigaddset(&block, SIGWINCH);
	sigprocmask(SIG_BLOCK, &block, NULL);

	pid_t child = fork();
	if (child < 0) die("fork");
	if (child == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (tty) {
			int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
			if (slave < 0 || setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) die("pty slave");
			for (int fd = 0; fd < 3; fd++) dup2(slave, fd);
			if (slave > 2) close(slave);
		}
		/* The same bounding set as init: exec must not hand out what the container was denied. */
		for (int k = 0; k < ncaps; k++)
			if (prctl(PR_CAPBSET_DROP, caps[k], 0, 0, 0) < 0 && errno != EINVAL) die("drop capability");
		syscall(SYS_close_range, 3, ~0U, 0);
		execvpe(cmd[0], cmd, env);
		fprintf(stderr, "tsvz-exec: %s: %s\n", cmd[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	int status;
	if (tty) status = relay(master, child);
	else while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
	restore_terminal();
	termios_saved = 0;
	if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
