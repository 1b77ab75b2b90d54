/*
 * tsvz-exec: run a command inside a running container. Joins init's cgroups
 * and namespaces (setns into a mount namespace is not allowed in a
 * multithreaded process such as Node), forks so the pid namespace applies,
 * and execs. With --tty the command gets a pty from the container's own
 * devpts and this process relays it to our terminal; without it the command
 * is a session leader of its own inside the container (as runc's exec), so
 * a job it leaves running can be checkpointed, and the signals we get are
 * passed on to it.
 *
 * With --userns the container's user namespace is joined first and the
 * command runs as its root; either way it gets none of our groups, the
 * container's bounding set (--cap-drop) and its seccomp filter (--seccomp).
 * Defences against a container that races an exec (runc's CVEs):
 *  - we run from a sealed memfd copy of ourselves, so /proc/PID/exe of the
 *    forked child leads to no host file that could be opened for writing
 *    (CVE-2019-5736);
 *  - we are not dumpable, so the container cannot ptrace the child or open
 *    its /proc files before it execs;
 *  - no fd of ours survives the join, and the working directory is checked
 *    to be inside the container's root (CVE-2024-21626).
 * Exit status: the command's, or 128+signal; 125 when tsvz-exec itself failed.
 */
#include "common.h"
#include "seccomp.h"

#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
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
	fprintf(stderr, "usage: tsvz-exec --pid PID [--userns] [--cgroup PROCS]... [--env K=V]... [--cap-drop N]... [--seccomp SPEC] [--cwd DIR] [--tty] -- CMD [ARGS...]\n");
	exit(125);
}

/*
 * Order matters: the user namespace first (the others are owned by it, and
 * joining it ends our say over the host's), the mount namespace last, as
 * it changes how /proc paths resolve.
 */
static const char *NAMESPACES[] = { "user", "cgroup", "ipc", "uts", "net", "pid", "mnt" };
#define NNS (sizeof NAMESPACES / sizeof NAMESPACES[0])

/* Run again from a sealed in-memory copy unless we already do (see the header). */
static void reexec_sealed(char **argv, char **envp) {
	char self[64] = { 0 };
	if (readlink("/proc/self/exe", self, sizeof self - 1) > 0 && !strncmp(self, "/memfd:", 7)) return;
	int src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (src < 0) die("open /proc/self/exe");
	struct stat st;
	if (fstat(src, &st) < 0) die("stat /proc/self/exe");
	int mem = memfd_create("tsvz-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mem < 0) die("memfd_create");
	for (off_t off = 0; off < st.st_size;) {
		ssize_t n = sendfile(mem, src, &off, (size_t)(st.st_size - off));
		if (n <= 0) die("copy tsvz-exec");
	}
	close(src);
	if (fcntl(mem, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) die("seal tsvz-exec");
	fexecve(mem, argv, envp);
	die("re-exec tsvz-exec");
}

/* Signals we pass on to a command without a tty (with one, the pty carries ^C and friends). */
static const int FORWARDED[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGCONT, SIGWINCH };
#define NFORWARDED (sizeof FORWARDED / sizeof FORWARDED[0])

/* Wait for the command, passing our signals on to it; returns its wait status. */
static int wait_forwarding(pid_t child, const sigset_t *set) {
	int sigfd = signalfd(-1, set, SFD_CLOEXEC);
	int status = 0;
	for (;;) {
		if (sigfd < 0) {
			/* No signalfd: just wait. */
			while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
			return status;
		}
		struct signalfd_siginfo si;
		ssize_t n = read(sigfd, &si, sizeof si);
		if (n < 0 && errno == EINTR) continue;
		if (n != sizeof si) continue;
		if (si.ssi_signo == SIGCHLD) {
			if (waitpid(child, &status, WNOHANG) == child) return status;
			continue;
		}
		kill(child, (int)si.ssi_signo);
	}
}

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

int main(int argc, char **argv, char **envp) {
	reexec_sealed(argv, envp);
	/* Run from the memfd, the kernel named us after its fd ("3"): ps should say what we are. */
	prctl(PR_SET_NAME, "tsvz-exec", 0, 0, 0);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("prctl(PR_SET_DUMPABLE)");
	pid_t target = 0;
	const char *cgroups[MAX_LIST], *cwd = "/", *seccomp = NULL;
	char *env[MAX_LIST + 1] = { 0 };
	int ncg = 0, nenv = 0, tty = 0, userns = 0, i, caps[64], ncaps = 0;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) { i++; break; }
		if (!strcmp(a, "--tty")) { tty = 1; continue; }
		if (!strcmp(a, "--userns")) { userns = 1; continue; }
		if (i + 1 >= argc) usage();
		if (!strcmp(a, "--pid")) target = (pid_t)atoi(argv[++i]);
		else if (!strcmp(a, "--cgroup") && ncg < MAX_LIST) cgroups[ncg++] = argv[++i];
		else if (!strcmp(a, "--env") && nenv < MAX_LIST) env[nenv++] = argv[++i];
		else if (!strcmp(a, "--cwd")) cwd = argv[++i];
		else if (!strcmp(a, "--cap-drop") && ncaps < 64) caps[ncaps++] = atoi(argv[++i]);
		else if (!strcmp(a, "--seccomp")) seccomp = argv[++i];
		else usage();
	}
	if (target <= 0 || i >= argc) usage();
	char **cmd = &argv[i];

	int nsfd[NNS];
	for (size_t k = userns ? 0 : 1; k < NNS; k++) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)target, NAMESPACES[k]);
		nsfd[k] = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd[k] < 0) die("open container namespace (is it running?)");
	}
	/* While we are still root of the host: cgroup.procs belongs to it. */
	for (int k = 0; k < ncg; k++)
		if (cgroup_attach(cgroups[k], getpid()) < 0) die(cgroups[k]);
	for (size_t k = userns ? 0 : 1; k < NNS; k++) {
		if (setns(nsfd[k], 0) < 0) die(NAMESPACES[k]);
		close(nsfd[k]);
	}
	if (setgroups(0, NULL) < 0) die("setgroups");
	if (userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) die("become root of the user namespace");
	/* Nothing of the host's may be reached through an fd (e.g. --cwd /proc/self/fd/N). */
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0) die("close_range");
	if (chdir(cwd) < 0) die("chdir");
	char where[4096];
	/* The kernel prefixes "(unreachable)" to a directory outside our root. */
	if (!getcwd(where, sizeof where) || where[0] != '/') {
		errno = EPERM;
		die("working directory outside the container");
	}

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
	if (!tty)
		for (size_t k = 0; k < NFORWARDED; k++) sigaddset(&block, FORWARDED[k]);
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
		} else if (setsid() < 0) {
			die("setsid");
		}
		/* The same bounding set as init: exec must not hand out what the container was denied. */
		for (int k = 0; k < ncaps; k++)
			if (prctl(PR_CAPBSET_DROP, caps[k], 0, 0, 0) < 0 && errno != EINVAL) die("drop capability");
		if (master >= 0) close(master);
		const char *why;
		if (seccomp && install_seccomp(seccomp, &why) < 0) die(why);
		execvpe(cmd[0], cmd, env);
		fprintf(stderr, "tsvz-exec: %s: %s\n", cmd[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	int status;
	if (tty) status = relay(master, child);
	else status = wait_forwarding(child, &block);
	restore_terminal();
	termios_saved = 0;
	if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
