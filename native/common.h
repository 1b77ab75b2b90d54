/*
 * Shared helpers for tsvz's native programs. These exist because a
 * multithreaded Node process must not clone into namespaces, setns into a
 * mount namespace or pivot_root; everything else stays in TypeScript.
 */
#ifndef TSVZ_COMMON_H
#define TSVZ_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_LIST 256

/* Write the whole buffer, retrying on EINTR and short writes. */
static inline int write_all(int fd, const void *buf, size_t len) {
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* printf into an fd; used for the line protocol with the TypeScript side. */
static inline void fdprintf_line(int fd, const char *fmt, ...) {
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0) return;
	if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
	buf[n++] = '\n';
	(void)write_all(fd, buf, (size_t)n);
}

/* Join a cgroup by writing our pid (or another pid) into its cgroup.procs file. */
static inline int cgroup_attach(const char *procs_file, pid_t pid) {
	int fd = open(procs_file, O_WRONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%d", (int)pid);
	int rc = write_all(fd, buf, (size_t)n);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* Send one fd over a unix socket with SCM_RIGHTS. */
static inline int send_fd(int sock, int fd) {
	char byte = 'F';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
	memset(&u, 0, sizeof u);
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/*
 * Receive one message: its text (NUL-terminated) and, when one came with it,
 * an fd (else *fd = -1). Returns the text length, or -1 on EOF/error.
 */
static inline int recv_message(int sock, int *fd, char *text, size_t textlen) {
	struct iovec iov = { .iov_base = text, .iov_len = textlen - 1 };
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	ssize_t n;
	do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
	*fd = -1;
	if (n <= 0) return -1;
	text[n] = 0;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof(int));
	return (int)n;
}

/* Receive either an fd (returns it) or a text message (returns -1, fills `text`); -2 on EOF/error. */
static inline int recv_fd_or_text(int sock, char *text, size_t textlen) {
	int fd;
	if (recv_message(sock, &fd, text, textlen) < 0) return -2;
	return fd >= 0 ? fd : -1;
}

#endif
