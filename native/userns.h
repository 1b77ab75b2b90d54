/*
 * User namespaces and idmapped mounts for tsvz's native programs.
 *
 * A container's id map arrives as --uid-map/--gid-map INSIDE:OUTSIDE:COUNT
 * (repeatable), written to /proc/PID/{uid,gid}_map by a host-root parent.
 * Its root filesystem is either owned by the mapped range on disk (shifted
 * once by tsvz) or owned by 0..COUNT and mounted through an idmapped mount
 * (mount_setattr(MOUNT_ATTR_IDMAP)) made from a user namespace with the same
 * map: the container's, or a throwaway one for a restore, where CRIU makes
 * the container's user namespace itself.
 */
#ifndef TSVZ_USERNS_H
#define TSVZ_USERNS_H

#include "common.h"

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#define MAX_MAP_LINES 5 /* the kernel's limit without CAP_SYS_ADMIN tricks is 340; tsvz uses one */

struct idmap {
	char text[MAX_MAP_LINES * 40];
	int lines;
};

/* Append "INSIDE:OUTSIDE:COUNT" to `m` as a uid_map line; -1 if malformed. */
static inline int idmap_add(struct idmap *m, const char *arg) {
	unsigned long in, out, count;
	char tail;
	if (m->lines >= MAX_MAP_LINES || sscanf(arg, "%lu:%lu:%lu%c", &in, &out, &count, &tail) != 3) return -1;
	if (count == 0 || in > 0xffffffffUL || out > 0xffffffffUL || count > 0xffffffffUL) return -1;
	size_t used = strlen(m->text);
	snprintf(m->text + used, sizeof m->text - used, "%lu %lu %lu\n", in, out, count);
	m->lines++;
	return 0;
}

static inline int write_proc_file(pid_t pid, const char *name, const char *text) {
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	int rc = write_all(fd, text, strlen(text));
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* Give the (just cloned) process `pid` its maps; the gid map before anything can call setgroups. */
static inline int write_idmaps(pid_t pid, const struct idmap *uid, const struct idmap *gid) {
	if (write_proc_file(pid, "uid_map", uid->text) < 0) return -1;
	return write_proc_file(pid, "gid_map", gid->text);
}

/*
 * An fd of a new user namespace with these maps, held by nothing else: a
 * child unshares it and waits; we map it, open it and let the child go.
 */
static inline int throwaway_userns(const struct idmap *uid, const struct idmap *gid) {
	int ready[2], done[2];
	if (pipe2(ready, O_CLOEXEC) < 0) return -1;
	if (pipe2(done, O_CLOEXEC) < 0) { close(ready[0]); close(ready[1]); return -1; }
	pid_t child = fork();
	if (child < 0) return -1;
	if (child == 0) {
		close(ready[0]);
		close(done[1]);
		char c = unshare(CLONE_NEWUSER) == 0 ? 'u' : 'x';
		(void)write_all(ready[1], &c, 1);
		/* Until the parent has opened our namespace (EOF). */
		if (read(done[0], &c, 1) < 0) _exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	char c = 0;
	int fd = -1, saved = 0;
	if (read(ready[0], &c, 1) == 1 && c == 'u' && write_idmaps(child, uid, gid) == 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	saved = c == 'x' ? EPERM : errno;
	close(ready[0]);
	close(done[1]);
	waitpid(child, NULL, 0);
	errno = saved;
	return fd;
}

/* A detached copy of the tree at `path` (all its mounts), shown through the user namespace `userns` if >= 0. */
static inline int detached_tree(int dfd, const char *path, int userns) {
	int tree = open_tree(dfd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0 || userns < 0) return tree;
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (unsigned long long)userns };
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
		int saved = errno;
		close(tree);
		errno = saved;
		return -1;
	}
	return tree;
}

#endif
