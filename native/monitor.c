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
 * With --uid-map/--gid-map, init gets a user namespace of its own (root
 * inside is an unprivileged range outside) and every other namespace is
 * owned by it. Paths on the host are resolved by the monitor, as host root,
 * before the child enters that namespace: the rootfs is a detached copy of
 * the tree (idmapped with --idmapped-rootfs) and /dev a tmpfs the monitor
 * makes and fills, both moved into place by the child. /dev is made on the
 * host side because a user namespace can neither mknod nor open device
 * nodes on a tmpfs it mounted itself. Then: /proc and a read-only /sys,
 * --mask'ed paths covered (files by /dev/null, directories by an empty
 * read-only directory), --readonly paths bound read-only except the
 * --writable ones below them, and last before exec the bounding set
 * (--cap-drop) and the seccomp filter (--seccomp, see seccomp.h).
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
 * With --idmap-root SRC DST (and the container's maps) the monitor first
 * mounts SRC idmapped at DST on the host, for CRIU's --root; tsvz detaches
 * it once the restore is done.
 */
#include "common.h"
#include "seccomp.h"
#include "userns.h"

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
#include <grp.h>
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
	struct idmap uidmap, gidmap; /* user namespace mode when uidmap has lines */
	int idmapped;          /* the rootfs is shown through an idmapped mount (else it is owned by the range on disk) */
	const char *seccomp;   /* the filter's policy, see seccomp.h */
	const char *masks[MAX_LIST];
	int nmasks;
	const char *readonly[MAX_LIST];
	int nreadonly;
	const char *writable[MAX_LIST];
	int nwritable;
	const char *criu;      /* restore mode: path of criu */
	const char *idmap_src, *idmap_dst; /* restore mode: mount SRC idmapped at DST first */
	char **argv;           /* init's argv */
};

#define CRIU_RPC_FD 4
#define HANDOFF_FD 5

static void usage(void) {
	fprintf(stderr, "usage: tsvz-monitor --dir DIR --rootfs DIR --hostname NAME [--cgroup PROCS]... "
	                "[--env K=V]... [--cap-drop N]... [--share-net] [--uid-map I:O:N --gid-map I:O:N [--idmapped-rootfs]] "
	                "[--seccomp SPEC] [--mask PATH]... [--readonly PATH]... [--writable PATH]... -- INIT [ARGS...]\n"
	                "       tsvz-monitor --dir DIR --restore --criu PATH [--idmap-root SRC DST --uid-map I:O:N --gid-map I:O:N]"
	                "   (fds 4: CRIU RPC socket, 5: hand-over)\n");
	exit(2);
}

static int is_flag(const char *a) {
	return !strcmp(a, "--share-net") || !strcmp(a, "--restore") || !strcmp(a, "--idmapped-rootfs");
}

/* A relative path inside the rootfs: no "..", no leading "/". */
static const char *inside(const char *p) {
	if (p[0] == '/' || !strcmp(p, "..") || !strncmp(p, "../", 3) || strstr(p, "/../") ||
	    (strlen(p) >= 3 && !strcmp(p + strlen(p) - 3, "/..")))
		usage();
	return p;
}

static void parse_args(int argc, char **argv, struct spec *s) {
	memset(s, 0, sizeof *s);
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) { i++; break; }
		if (i + 1 >= argc && !is_flag(a)) usage();
		if (!strcmp(a, "--dir")) s->dir = argv[++i];
		else if (!strcmp(a, "--rootfs")) s->rootfs = argv[++i];
		else if (!strcmp(a, "--hostname")) s->hostname = argv[++i];
		else if (!strcmp(a, "--cgroup") && s->ncgroups < MAX_LIST) s->cgroups[s->ncgroups++] = argv[++i];
		else if (!strcmp(a, "--env") && s->nenv < MAX_LIST) s->env[s->nenv++] = argv[++i];
		else if (!strcmp(a, "--cap-drop") && s->ncaps < 64) s->caps_drop[s->ncaps++] = atoi(argv[++i]);
		else if (!strcmp(a, "--share-net")) s->share_net = 1;
		else if (!strcmp(a, "--restore")) continue;
		else if (!strcmp(a, "--criu")) s->criu = argv[++i];
		else if (!strcmp(a, "--uid-map")) { if (idmap_add(&s->uidmap, argv[++i]) < 0) usage(); }
		else if (!strcmp(a, "--gid-map")) { if (idmap_add(&s->gidmap, argv[++i]) < 0) usage(); }
		else if (!strcmp(a, "--idmapped-rootfs")) s->idmapped = 1;
		else if (!strcmp(a, "--seccomp")) s->seccomp = argv[++i];
		else if (!strcmp(a, "--mask") && s->nmasks < MAX_LIST) s->masks[s->nmasks++] = inside(argv[++i]);
		else if (!strcmp(a, "--readonly") && s->nreadonly < MAX_LIST) s->readonly[s->nreadonly++] = inside(argv[++i]);
		else if (!strcmp(a, "--writable") && s->nwritable < MAX_LIST) s->writable[s->nwritable++] = inside(argv[++i]);
		else if (!strcmp(a, "--idmap-root") && i + 2 < argc) { s->idmap_src = argv[++i]; s->idmap_dst = argv[++i]; }
		else usage();
	}
	/* Both maps or neither. */
	if (!s->uidmap.lines != !s->gidmap.lines) usage();
	if ((s->idmapped || s->idmap_src) && !s->uidmap.lines) usage();
	if (s->criu) {
		if (!s->dir) usage();
		return;
	}
	if (i >= argc || !s->dir || !s->rootfs || !s->hostname) usage();
	s->argv = &argv[i];
}

struct devnode { const char *name; unsigned maj, min; };
static const struct devnode DEVICES[] = {
	{ "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 },
	{ "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
};

/* The host ids of the container's root (0:0 without a user namespace): /dev's owner. */
static void root_ids(const struct spec *s, unsigned long *uid, unsigned long *gid) {
	unsigned long in, out, n;
	*uid = *gid = 0;
	if (s->uidmap.lines && sscanf(s->uidmap.text, "%lu %lu %lu", &in, &out, &n) == 3 && in == 0) *uid = out;
	if (s->gidmap.lines && sscanf(s->gidmap.text, "%lu %lu %lu", &in, &out, &n) == 3 && in == 0) *gid = out;
}

/*
 * /dev, made here (host root, before the clone) as a detached tmpfs: the
 * safe nodes, pts and shm directories, the usual links and the file
 * /dev/console is bound over. /dev/shm is a directory of it, not a tmpfs of
 * its own: CRIU saves each tmpfs by running tar and gzip inside the frozen
 * window (~15 ms here, and as much again on restore); tsvz saves this one
 * itself (checkpoint/dev-tmpfs.ts). Returns the mount's fd, or aborts.
 */
static int make_dev(const struct spec *s, const char **why) {
	unsigned long uid, gid;
	root_ids(s, &uid, &gid);
	char owner[64];
	*why = "make /dev";
	int fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fsfd < 0) return -1;
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "mode", "755", 0) < 0 || fsconfig(fsfd, FSCONFIG_SET_STRING, "size", "65536k", 0) < 0) return -1;
	snprintf(owner, sizeof owner, "%lu", uid);
	if (uid && fsconfig(fsfd, FSCONFIG_SET_STRING, "uid", owner, 0) < 0) return -1;
	snprintf(owner, sizeof owner, "%lu", gid);
	if (gid && fsconfig(fsfd, FSCONFIG_SET_STRING, "gid", owner, 0) < 0) return -1;
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) return -1;
	int dev = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME);
	close(fsfd);
	if (dev < 0) return -1;
	*why = "mknod in /dev";
	for (size_t i = 0; i < sizeof DEVICES / sizeof DEVICES[0]; i++) {
		if (mknodat(dev, DEVICES[i].name, S_IFCHR | 0666, makedev(DEVICES[i].maj, DEVICES[i].min)) < 0) return -1;
		/* mknod's mode is masked by the umask. */
		if (fchmodat(dev, DEVICES[i].name, 0666, 0) < 0 || fchownat(dev, DEVICES[i].name, uid, gid, 0) < 0) return -1;
	}
	*why = "fill /dev";
	/* mkdir's mode is masked by the umask: the sticky, world-writable mode is set apart. */
	if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0 || fchmodat(dev, "shm", 01777, 0) < 0) return -1;
	if (fchownat(dev, "pts", uid, gid, 0) < 0 || fchownat(dev, "shm", uid, gid, 0) < 0) return -1;
	int console = openat(dev, "console", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (console < 0) return -1;
	close(console);
	if (symlinkat("pts/ptmx", dev, "ptmx") < 0 || symlinkat("/proc/self/fd", dev, "fd") < 0 ||
	    symlinkat("/proc/self/fd/0", dev, "stdin") < 0 || symlinkat("/proc/self/fd/1", dev, "stdout") < 0 ||
	    symlinkat("/proc/self/fd/2", dev, "stderr") < 0)
		return -1;
	const char *links[] = { "ptmx", "fd", "stdin", "stdout", "stderr" };
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		if (fchownat(dev, links[i], uid, gid, AT_SYMLINK_NOFOLLOW) < 0) return -1;
	return dev;
}

/* ---- inside the new namespaces (the child) ---- */

/* Report a failed step to the monitor and die. */
static void child_fail(int sync, const char *step) {
	char buf[512];
	snprintf(buf, sizeof buf, "error %s: %s", step, strerror(errno));
	(void)send(sync, buf, strlen(buf), MSG_NOSIGNAL);
	_exit(127);
}

static void child_fail_at(int sync, const char *step, const char *path) {
	char buf[300];
	snprintf(buf, sizeof buf, "%s %s", step, path);
	child_fail(sync, buf);
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
	if (mount(slave_path, "dev/console", NULL, MS_BIND, NULL) < 0) child_fail(sync, "bind /dev/console");
	if (send_fd(sync, master) < 0) child_fail(sync, "send console to monitor");
	close(master);
	return slave;
}

/*
 * Bind `src` over `path` read-only (a mask), or `path` over itself
 * read-only when src is NULL. A file mask is /dev/null, which reads empty
 * (as runc's): its mount keeps devices.
 */
static int bind_readonly(const char *src, const char *path, int nodev) {
	if (mount(src ? src : path, path, NULL, MS_BIND, NULL) < 0) return -1;
	unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC | (nodev ? MS_NODEV : 0);
	return mount(NULL, path, NULL, flags, NULL);
}

/*
 * Cover what the kernel shows of the host: files by /dev/null, directories
 * by the empty directory under devpts's mount point (dev/pts before devpts
 * is mounted), so no tmpfs of its own has to be saved by CRIU. Called while
 * dev/pts is still that empty directory. Missing paths are skipped.
 */
static void apply_masks(const struct spec *s, int sync) {
	for (int i = 0; i < s->nmasks; i++) {
		struct stat st;
		if (lstat(s->masks[i], &st) < 0) continue;
		int dir = S_ISDIR(st.st_mode);
		if (bind_readonly(dir ? "dev/pts" : "dev/null", s->masks[i], dir) < 0) child_fail_at(sync, "mask", s->masks[i]);
	}
}

/*
 * Read-only binds; a --writable path below one keeps its own, writable
 * bind (proc/sys/net under proc/sys: the container's network namespace is
 * its own, as LXC's proc:mixed). The writable copy is taken first and put
 * back on top, so no mount is left hidden under another.
 */
static void apply_readonly(const struct spec *s, int sync) {
	for (int i = 0; i < s->nreadonly; i++) {
		const char *ro = s->readonly[i];
		if (access(ro, F_OK) < 0) continue;
		int keep[MAX_LIST], nkeep = 0;
		const char *where[MAX_LIST];
		size_t len = strlen(ro);
		for (int j = 0; j < s->nwritable; j++) {
			const char *w = s->writable[j];
			if (strncmp(w, ro, len) || w[len] != '/' || access(w, F_OK) < 0) continue;
			keep[nkeep] = open_tree(AT_FDCWD, w, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
			if (keep[nkeep] < 0) child_fail_at(sync, "keep writable", w);
			where[nkeep++] = w;
		}
		if (bind_readonly(NULL, ro, 1) < 0) child_fail_at(sync, "make read-only", ro);
		for (int k = 0; k < nkeep; k++) {
			if (move_mount(keep[k], "", AT_FDCWD, where[k], MOVE_MOUNT_F_EMPTY_PATH) < 0) child_fail_at(sync, "keep writable", where[k]);
			close(keep[k]);
		}
	}
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

/* `tree` and `dev`: the detached rootfs and /dev the monitor made (see make_dev). */
static void child_main(struct spec *s, int sync, int tree, int dev) {
	char go[16] = { 0 };
	if (recv(sync, go, sizeof go - 1, 0) <= 0 || strcmp(go, "go")) _exit(1);

	/* Root of the user namespace (its maps are written by now); none of the host's groups. */
	if (setgroups(0, NULL) < 0) child_fail(sync, "setgroups");
	if (s->uidmap.lines && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) child_fail(sync, "become root of the user namespace");
	/* Created after init joined its cgroups, so its cgroup is its root. */
	if (unshare(CLONE_NEWCGROUP) < 0) child_fail(sync, "unshare cgroup namespace");
	/* Nothing mounted from here on may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) child_fail(sync, "make / private");
	/*
	 * The rootfs goes over the container's directory (our cwd, reached
	 * without a path lookup the namespace's root could be denied), and we
	 * step into it by its fd.
	 */
	if (move_mount(tree, "", AT_FDCWD, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) child_fail(sync, "attach rootfs");
	if (fchdir(tree) < 0) child_fail(sync, "enter rootfs");
	close(tree);

	if (mkdir_p("proc", 0555) < 0 || mkdir_p("sys", 0555) < 0 || mkdir_p("dev", 0755) < 0) child_fail(sync, "mkdir /proc");
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) child_fail(sync, "mount /proc");
	if (mount("sysfs", "sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) < 0) child_fail(sync, "mount /sys");
	if (move_mount(dev, "", AT_FDCWD, "dev", MOVE_MOUNT_F_EMPTY_PATH) < 0) child_fail(sync, "attach /dev");
	close(dev);
	apply_masks(s, sync);
	if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0) child_fail(sync, "mount devpts");
	int console = setup_console(sync);
	apply_readonly(s, sync);
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
	const char *why;
	if (s->seccomp && install_seccomp(s->seccomp, &why) < 0) child_fail(sync, why);
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
	/* Resolved here, as host root: the child may not be allowed to walk the path. */
	int tree = detached_tree(AT_FDCWD, s->rootfs, -1);
	if (tree < 0) abort_start(0, "open rootfs: %s", strerror(errno));
	const char *why;
	int dev = make_dev(s, &why);
	if (dev < 0) {
		char d[300];
		snprintf(d, sizeof d, "%s: %s", why, strerror(errno));
		abort_start(0, "%s", d);
	}
	int userns = s->uidmap.lines > 0;
	unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (s->share_net ? 0 : CLONE_NEWNET) |
	                      (userns ? CLONE_NEWUSER : 0);
	pid_t child = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
	if (child < 0) abort_start(0, "clone: %s", strerror(errno));
	if (child == 0) {
		close(sv[0]);
		close(CTL_FD);
		child_main(s, sv[1], tree, dev);
	}
	close(sv[1]);
	close(dev);

	if (userns) {
		if (write_idmaps(child, &s->uidmap, &s->gidmap) < 0) abort_start(child, "write the user namespace's id maps: %s", strerror(errno));
		if (s->idmapped) {
			/* The child shares this open tree: it moves the idmapped mount in place. */
			char path[64];
			snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
			int ns = open(path, O_RDONLY | O_CLOEXEC);
			struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (unsigned long long)ns };
			if (ns < 0 || mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
				abort_start(child, "idmap the rootfs: %s", strerror(errno));
			close(ns);
		}
	}
	close(tree);

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
	if (s->idmap_src) {
		int ns = throwaway_userns(&s->uidmap, &s->gidmap);
		if (ns < 0) abort_start(0, "make a user namespace for the idmapped rootfs: %s", strerror(errno));
		int tree = detached_tree(AT_FDCWD, s->idmap_src, ns);
		if (tree < 0) abort_start(0, "idmap the rootfs: %s", strerror(errno));
		if (move_mount(tree, "", AT_FDCWD, s->idmap_dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) abort_start(0, "mount the idmapped rootfs: %s", strerror(errno));
		close(tree);
		close(ns);
	}
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
