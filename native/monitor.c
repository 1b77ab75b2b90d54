/*
 * tsvz-monitor: one per running container (like LXC's monitor or podman's
 * conmon). It clones the container's init into new namespaces, finishes the
 * container's root filesystem from inside them, then stays behind as the
 * init's parent: it holds the console pty master, appends everything the
 * container writes to console.log, serves `tsvz console` on console.sock and
 * records init's exit status in exit.json. console.log is kept to a size:
 * past it (TSVZ_CONSOLE_LOG_MAX bytes, default 8 MiB) it becomes
 * console.log.1 (replacing the one before) and a new console.log starts.
 *
 * The console pty is allocated from the container's own devpts instance, so
 * the container holds no host file: CRIU can dump it and a new monitor can
 * take its place on restore.
 *
 * Handshake with the TypeScript side on fd 3 (a stream socket), one line each:
 *   monitor -> ts   "pid <host pid of init>"   (init is in its cgroups, waiting)
 *   ts -> monitor   "go"                       (network is set up; anything else aborts)
 *   monitor -> ts   "ready" | "error <message>"
 *
 * Restore mode (--restore --criu PATH): instead of cloning init, the monitor
 * runs `criu swrk 3` on the RPC socket it inherited as fd 4, so that the tree
 * CRIU restores (rst_sibling) becomes the monitor's child. TypeScript speaks
 * the RPC and then hands over, on the SEQPACKET socket at fd 5, one message
 * "init <pid>" carrying the console pty master CRIU created (SCM_RIGHTS):
 *   monitor -> ts   "criu <pid>", later "criu-exit <status>"
 *   ts -> monitor   (fd 5) "init <pid>" + pty master, or EOF to abort
 *   monitor -> ts   "ready" | "error <message>"
 */
#include "common.h"

#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#define CTL_FD 3
#define MAX_CLIENTS 16
#define CONSOLE_LOG_MAX_DEFAULT (8L << 20)

/* console.log, rotated by size (see the header). */
static struct {
	int fd;
	off_t size, max;
} console_log = { -1, 0, CONSOLE_LOG_MAX_DEFAULT };

static void open_console_log(void) {
	console_log.fd = open("console.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	struct stat st;
	console_log.size = console_log.fd >= 0 && fstat(console_log.fd, &st) == 0 ? st.st_size : 0;
}

static void log_console(const char *buf, size_t n) {
	if (console_log.fd < 0) return;
	(void)write_all(console_log.fd, buf, n);
	console_log.size += (off_t)n;
	if (console_log.size < console_log.max) return;
	/* A reader following console.log sees it shrink and starts over. */
	if (rename("console.log", "console.log.1") < 0) {
		fprintf(stderr, "tsvz-monitor: rotate console.log: %s\n", strerror(errno));
		console_log.max *= 2; /* don't retry on every write */
		return;
	}
	close(console_log.fd);
	open_console_log();
}

struct spec {
	const char *dir;       /* container state dir: console.log, console.sock, exit.json */
	const char *rootfs;
	const char *hostname;
	const char *cgroups[MAX_LIST]; /* cgroup.procs files to put init in */
	int ncgroups;
	char *env[MAX_LIST + 1];
	int nenv;
	int caps_drop[64];
	int ncaps;
	int share_net;         /* 1: stay in the monitor's netns (--net host) */
	const char *criu;      /* restore mode: path of criu */
	char **argv;           /* init's argv */
};

#define CRIU_RPC_FD 4
#define HANDOFF_FD 5

static void usage(void) {
	fprintf(stderr, "usage: tsvz-monitor --dir DIR --rootfs DIR --hostname NAME [--cgroup PROCS]... "
	                "[--env K=V]... [--cap-drop N]... [--share-net] -- INIT [ARGS...]\n"
	                "       tsvz-monitor --dir DIR --restore --criu PATH   (fds 4: CRIU RPC socket, 5: hand-over)\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct spec *s) {
	memset(s, 0, sizeof *s);
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) { i++; break; }
		if (i + 1 >= argc && strcmp(a, "--share-net") && strcmp(a, "--restore")) usage();
		if (!strcmp(a, "--dir")) s->dir = argv[++i];
		else if (!strcmp(a, "--rootfs")) s->rootfs = argv[++i];
		else if (!strcmp(a, "--hostname")) s->hostname = argv[++i];
		else if (!strcmp(a, "--cgroup") && s->ncgroups < MAX_LIST) s->cgroups[s->ncgroups++] = argv[++i];
		else if (!strcmp(a, "--env") && s->nenv < MAX_LIST) s->env[s->nenv++] = argv[++i];
		else if (!strcmp(a, "--cap-drop") && s->ncaps < 64) s->caps_drop[s->ncaps++] = atoi(argv[++i]);
		else if (!strcmp(a, "--share-net")) s->share_net = 1;
		else if (!strcmp(a, "--restore")) continue;
		else if (!strcmp(a, "--criu")) s->criu = argv[++i];
		else usage();
	}
	if (s->criu) {
		if (!s->dir) usage();
		return;
	}
	if (i >= argc || !s->dir || !s->rootfs || !s->hostname) usage();
	s->argv = &argv[i];
}

/* ---- inside the new namespaces (the child) ---- */

/* Report a failed step to the monitor and die. */
static void child_fail(int sync, const char *step) {
	char buf[512];
	snprintf(buf, sizeof buf, "error %s: %s", step, strerror(errno));
	(void)send(sync, buf, strlen(buf), MSG_NOSIGNAL);
	_exit(127);
}

static int mkdir_p(const char *path, mode_t mode) {
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/') continue;
		*p = 0;
		if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -1;
		*p = '/';
	}
	return (mkdir(tmp, mode) < 0 && errno != EEXIST) ? -1 : 0;
}

struct devnode { const char *name; unsigned maj, min; };
static const struct devnode DEVICES[] = {
	{ "dev/null", 1, 3 }, { "dev/zero", 1, 5 }, { "dev/full", 1, 7 },
	{ "dev/random", 1, 8 }, { "dev/urandom", 1, 9 }, { "dev/tty", 5, 0 },
};

/*
 * /dev: a small tmpfs with only the safe nodes, a private devpts and shm.
 * /dev/shm is a directory of that tmpfs, not a tmpfs of its own: CRIU saves
 * each tmpfs by running tar and gzip inside the frozen window (~15 ms here,
 * and as much again on restore), and one /dev is enough for both.
 */
static void setup_dev(int sync) {
	if (mkdir_p("dev", 0755) < 0) child_fail(sync, "mkdir /dev");
	if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0) child_fail(sync, "mount /dev");
	for (size_t i = 0; i < sizeof DEVICES / sizeof DEVICES[0]; i++) {
		if (mknod(DEVICES[i].name, S_IFCHR | 0666, makedev(DEVICES[i].maj, DEVICES[i].min)) < 0) child_fail(sync, "mknod");
		if (chmod(DEVICES[i].name, 0666) < 0) child_fail(sync, "chmod device");
	}
	if (mkdir("dev/pts", 0755) < 0) child_fail(sync, "mkdir /dev/pts");
	/* mkdir's mode is masked by the umask: the sticky, world-writable mode is set apart. */
	if (mkdir("dev/shm", 01777) < 0 || chmod("dev/shm", 01777) < 0) child_fail(sync, "mkdir /dev/shm");
	if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0) child_fail(sync, "mount devpts");
	if (symlink("pts/ptmx", "dev/ptmx") < 0) child_fail(sync, "symlink /dev/ptmx");
	if (symlink("/proc/self/fd", "dev/fd") < 0 || symlink("/proc/self/fd/0", "dev/stdin") < 0 ||
	    symlink("/proc/self/fd/1", "dev/stdout") < 0 || symlink("/proc/self/fd/2", "dev/stderr") < 0)
		child_fail(sync, "symlink /dev/fd");
}

/*
 * The console: a pty from the container's devpts. The master goes to the
 * monitor; the slave becomes /dev/console and init's stdio. Returns the slave.
 */
static int setup_console(int sync) {
	int master = open("dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0) child_fail(sync, "open ptmx");
	int unlock = 0, n = -1;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0) child_fail(sync, "unlock pty");
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (slave < 0) child_fail(sync, "open pty slave");
	char slave_path[64];
	snprintf(slave_path, sizeof slave_path, "dev/pts/%d", n);
	int fd = open("dev/console", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) child_fail(sync, "create /dev/console");
	close(fd);
	if (mount(slave_path, "dev/console", NULL, MS_BIND, NULL) < 0) child_fail(sync, "bind /dev/console");
	if (send_fd(sync, master) < 0) child_fail(sync, "send console to monitor");
	close(master);
	return slave;
}

/* Remount a /proc entry read-only so the container can't poke the host kernel through it. */
static void proc_readonly(int sync, const char *path) {
	if (access(path, F_OK) < 0) return;
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0 ||
	    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) < 0)
		child_fail(sync, "protect /proc");
}

static void loopback_up(int sync) {
	int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk < 0) child_fail(sync, "socket");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, IFNAMSIZ, "lo");
	if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0) child_fail(sync, "get lo flags");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(sk, SIOCSIFFLAGS, &ifr) < 0) child_fail(sync, "bring lo up");
	close(sk);
}

static void child_main(struct spec *s, int sync) {
	char go[16] = { 0 };
	if (recv(sync, go, sizeof go - 1, 0) <= 0 || strcmp(go, "go")) _exit(1);

	/* Created after init joined its cgroups, so its cgroup is its root. */
	if (unshare(CLONE_NEWCGROUP) < 0) child_fail(sync, "unshare cgroup namespace");
	/* Nothing mounted from here on may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) child_fail(sync, "make / private");
	if (mount(s->rootfs, s->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) child_fail(sync, "bind rootfs");
	if (chdir(s->rootfs) < 0) child_fail(sync, "chdir rootfs");

	if (mkdir_p("proc", 0555) < 0 || mkdir_p("sys", 0555) < 0) child_fail(sync, "mkdir /proc");
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) child_fail(sync, "mount /proc");
	if (mount("sysfs", "sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) < 0) child_fail(sync, "mount /sys");
	setup_dev(sync);
	int console = setup_console(sync);
	proc_readonly(sync, "proc/sysrq-trigger");
	proc_readonly(sync, "proc/irq");
	proc_readonly(sync, "proc/bus");
	if (!s->share_net) loopback_up(sync);
	if (sethostname(s->hostname, strlen(s->hostname)) < 0) child_fail(sync, "sethostname");

	if (syscall(SYS_pivot_root, ".", ".") < 0) child_fail(sync, "pivot_root");
	if (umount2(".", MNT_DETACH) < 0) child_fail(sync, "detach old root");
	if (chdir("/") < 0) child_fail(sync, "chdir /");

	if (setsid() < 0) child_fail(sync, "setsid");
	if (ioctl(console, TIOCSCTTY, 0) < 0) child_fail(sync, "set controlling tty");
	for (int fd = 0; fd < 3; fd++)
		if (dup2(console, fd) < 0) child_fail(sync, "dup2 console");
	if (console > 2) close(console);

	for (int i = 0; i < s->ncaps; i++)
		if (prctl(PR_CAPBSET_DROP, s->caps_drop[i], 0, 0, 0) < 0 && errno != EINVAL) child_fail(sync, "drop capability");

	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* No host fd may survive into the container; `sync` is close-on-exec already. */
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) child_fail(sync, "close_range");
	execvpe(s->argv[0], s->argv, s->env);
	char step[300];
	snprintf(step, sizeof step, "exec %s", s->argv[0]);
	child_fail(sync, step);
}

/* ---- the monitor (outside) ---- */

static int ctl_readline(char *buf, size_t len) {
	size_t n = 0;
	while (n + 1 < len) {
		char c;
		ssize_t r = read(CTL_FD, &c, 1);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		if (c == '\n') break;
		buf[n++] = c;
	}
	buf[n] = 0;
	return 0;
}

/* Tell the TypeScript side why we failed, reap the child, exit. */
static void abort_start(pid_t child, const char *fmt, const char *detail) {
	char msg[600];
	snprintf(msg, sizeof msg, fmt, detail);
	fdprintf_line(CTL_FD, "error %s", msg);
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	exit(1);
}

static int listen_console(void) {
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) return -1;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	/* Relative to the container dir (our cwd): avoids sun_path's 108-byte limit. */
	snprintf(addr.sun_path, sizeof addr.sun_path, "console.sock");
	unlink(addr.sun_path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || chmod("console.sock", 0600) < 0 || listen(fd, 4) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* exit.json, written atomically: readers see the old file or the whole new one. */
static void record_exit(pid_t pid, int status) {
	char buf[256];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	int n;
	if (WIFSIGNALED(status))
		n = snprintf(buf, sizeof buf, "{\"pid\":%d,\"signal\":%d,\"finishedAt\":%lld}\n", (int)pid, WTERMSIG(status), ms);
	else
		n = snprintf(buf, sizeof buf, "{\"pid\":%d,\"exitCode\":%d,\"finishedAt\":%lld}\n", (int)pid, WEXITSTATUS(status), ms);
	int fd = open("exit.json.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) return;
	(void)write_all(fd, buf, (size_t)n);
	fsync(fd);
	close(fd);
	rename("exit.json.tmp", "exit.json");
	int dir = open(".", O_RDONLY | O_CLOEXEC);
	if (dir >= 0) { fsync(dir); close(dir); }
}

static void broadcast(int *clients, int *nclients, const char *buf, size_t len) {
	for (int i = 0; i < *nclients;) {
		/* A client too slow to keep up is dropped rather than blocking the container. */
		if (send(clients[i], buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len) {
			close(clients[i]);
			clients[i] = clients[--*nclients];
			continue;
		}
		i++;
	}
}

static int drain_console(int master, int *clients, int *nclients) {
	char buf[65536];
	ssize_t n = read(master, buf, sizeof buf);
	if (n <= 0) return -1; /* EIO once every slave fd is closed */
	log_console(buf, (size_t)n);
	broadcast(clients, nclients, buf, (size_t)n);
	return 0;
}

static void serve(pid_t init, int master, int listen_fd, int sigfd) {
	int clients[MAX_CLIENTS], nclients = 0, master_open = 1;
	fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
	for (;;) {
		struct pollfd pfd[3 + MAX_CLIENTS];
		int n = 0;
		pfd[n++] = (struct pollfd){ .fd = sigfd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = master_open ? master : -1, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
		for (int i = 0; i < nclients; i++) pfd[n++] = (struct pollfd){ .fd = clients[i], .events = POLLIN };
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR) continue;
			return;
		}
		if (pfd[1].revents & POLLIN) {
			while (drain_console(master, clients, &nclients) == 0) {}
		} else if (pfd[1].revents & (POLLHUP | POLLERR)) {
			master_open = 0; /* no slave open right now: stop polling, keep the master */
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof si) == sizeof si) {}
			int status;
			pid_t pid;
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
				if (pid != init) continue;
				while (drain_console(master, clients, &nclients) == 0) {}
				record_exit(pid, status);
				unlink("console.sock");
				return;
			}
		}
		if (pfd[2].revents & POLLIN) {
			int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0 && nclients < MAX_CLIENTS) clients[nclients++] = c;
			else if (c >= 0) close(c);
			master_open = 1;
		}
		for (int i = 3; i < n; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
			char buf[4096];
			ssize_t r = read(pfd[i].fd, buf, sizeof buf);
			if (r > 0) {
				(void)write_all(master, buf, (size_t)r);
				master_open = 1;
				continue;
			}
			for (int j = 0; j < nclients; j++) {
				if (clients[j] != pfd[i].fd) continue;
				close(clients[j]);
				clients[j] = clients[--nclients];
				break;
			}
		}
	}
}

/* Clone init into new namespaces and walk it through the handshake; returns its pid. */
static pid_t launch_init(struct spec *s, int *master_out) {
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) abort_start(0, "socketpair: %s", strerror(errno));
	unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (s->share_net ? 0 : CLONE_NEWNET);
	pid_t child = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
	if (child < 0) abort_start(0, "clone: %s", strerror(errno));
	if (child == 0) {
		close(sv[0]);
		close(CTL_FD);
		child_main(s, sv[1]);
	}
	close(sv[1]);

	for (int i = 0; i < s->ncgroups; i++)
		if (cgroup_attach(s->cgroups[i], child) < 0) {
			char d[600];
			snprintf(d, sizeof d, "%s: %s", s->cgroups[i], strerror(errno));
			abort_start(child, "join cgroup %s", d);
		}
	fdprintf_line(CTL_FD, "pid %d", (int)child);
	char line[64];
	if (ctl_readline(line, sizeof line) < 0 || strcmp(line, "go")) abort_start(child, "%s", "start aborted by tsvz");
	if (send(sv[0], "go", 2, MSG_NOSIGNAL) != 2) abort_start(child, "signal init: %s", strerror(errno));

	char text[512];
	int master = recv_fd_or_text(sv[0], text, sizeof text);
	if (master == -1) abort_start(child, "%s", text + (strncmp(text, "error ", 6) ? 0 : 6));
	if (master < 0) abort_start(child, "%s", "init died during set-up");
	int r = recv_fd_or_text(sv[0], text, sizeof text); /* EOF: exec succeeded (close-on-exec) */
	if (r == -1) abort_start(child, "%s", text + (strncmp(text, "error ", 6) ? 0 : 6));
	close(sv[0]);
	*master_out = master;
	return child;
}

/*
 * Restore mode: run `criu swrk` as our child, report its exit, and wait for
 * TypeScript to hand over the restored init's pid and console. Returns the
 * pid; *early_status is its wait status if it already died, else -1.
 */
static pid_t restore_init(struct spec *s, int sigfd, int *master_out, int *early_status) {
	if (fcntl(CRIU_RPC_FD, F_GETFD) < 0 || fcntl(HANDOFF_FD, F_GETFD) < 0) abort_start(0, "%s", "restore needs fds 4 and 5");
	fcntl(HANDOFF_FD, F_SETFD, FD_CLOEXEC);
	pid_t criu = fork();
	if (criu < 0) abort_start(0, "fork: %s", strerror(errno));
	if (criu == 0) {
		/* The RPC socket becomes criu's fd 3 (replacing our close-on-exec control socket). */
		if (dup2(CRIU_RPC_FD, 3) < 0) _exit(127);
		close(CRIU_RPC_FD);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execl(s->criu, "criu", "swrk", "3", (char *)NULL);
		fprintf(stderr, "tsvz-monitor: exec %s: %s\n", s->criu, strerror(errno));
		_exit(127);
	}
	close(CRIU_RPC_FD);
	fdprintf_line(CTL_FD, "criu %d", (int)criu);

	pid_t died = 0;
	int died_status = 0;
	for (;;) {
		struct pollfd pfd[2] = { { .fd = sigfd, .events = POLLIN }, { .fd = HANDOFF_FD, .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR) continue;
			abort_start(criu, "poll: %s", strerror(errno));
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof si) == sizeof si) {}
			int st;
			pid_t pid;
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
				if (pid == criu) fdprintf_line(CTL_FD, "criu-exit %d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
				else { died = pid; died_status = st; } /* the restored init, gone already */
			}
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			char text[64];
			int fd, init = 0;
			if (recv_message(HANDOFF_FD, &fd, text, sizeof text) < 0 || fd < 0 || sscanf(text, "init %d", &init) != 1)
				abort_start(0, "%s", "restore aborted by tsvz");
			close(HANDOFF_FD);
			*master_out = fd;
			*early_status = died == init ? died_status : -1;
			return init;
		}
	}
}

int main(int argc, char **argv) {
	struct spec s;
	parse_args(argc, argv, &s);
	if (fcntl(CTL_FD, F_GETFD) < 0) { fprintf(stderr, "tsvz-monitor: fd 3 (control socket) is not open\n"); return 2; }
	fcntl(CTL_FD, F_SETFD, FD_CLOEXEC);
	(void)setsid();
	/* Whatever is left under us (e.g. a tree CRIU restores) is reaped by us. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	if (chdir(s.dir) < 0) abort_start(0, "chdir to container dir: %s", strerror(errno));
	int errfd = open("monitor.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (errfd >= 0) { dup2(errfd, 2); close(errfd); }
	const char *log_max = getenv("TSVZ_CONSOLE_LOG_MAX");
	if (log_max && atol(log_max) > 0) console_log.max = atol(log_max);
	open_console_log();
	if (console_log.fd < 0) abort_start(0, "open console.log: %s", strerror(errno));

	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0) abort_start(0, "signalfd: %s", strerror(errno));

	int master = -1, early_status = -1;
	pid_t init = s.criu ? restore_init(&s, sigfd, &master, &early_status) : launch_init(&s, &master);

	int listen_fd = listen_console();
	if (listen_fd < 0) abort_start(s.criu ? 0 : init, "console socket: %s", strerror(errno));
	fdprintf_line(CTL_FD, "ready");
	close(CTL_FD);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); close(devnull); }

	if (early_status != -1) {
		record_exit(init, early_status);
		unlink("console.sock");
		return 0;
	}
	serve(init, master, listen_fd, sigfd);
	return 0;
}
