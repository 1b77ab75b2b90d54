/*
 * The container's seccomp filter, installed last before exec by the
 * monitor (for init) and tsvz-exec (for an exec'd command). The policy is
 * tsvz's (runtime/seccomp.ts) and arrives as one argument:
 *   NAME:ERRNO[:ARG:MASK],...
 * each entry denying syscall NAME with ERRNO, or, with ARG and MASK, only
 * when argument ARG has all of MASK's bits set. Everything else is allowed
 * (a deny list, as LXC's default for system containers). Names this
 * libseccomp does not know are skipped: the kernel cannot have them either.
 * The filter covers x86-64, i386 and x32 entry points, so a 32-bit syscall
 * cannot step around it. No-new-privs is left off: setuid binaries inside
 * keep working, and the caller holds CAP_SYS_ADMIN in its namespace anyway.
 */
#ifndef TSVZ_SECCOMP_H
#define TSVZ_SECCOMP_H

#include "common.h"

#include <seccomp.h>

/* Returns 0, or -1 with errno and a short reason in *why. */
static inline int install_seccomp(const char *spec, const char **why) {
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc = -1;
	*why = "seccomp_init";
	if (!ctx) { errno = ENOMEM; return -1; }
	*why = "seccomp no-new-privs attribute";
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) goto out;
#ifdef __x86_64__
	*why = "seccomp architectures";
	if (seccomp_arch_add(ctx, SCMP_ARCH_X86) < 0 && errno != EEXIST) goto out;
	if (seccomp_arch_add(ctx, SCMP_ARCH_X32) < 0 && errno != EEXIST) goto out;
#endif
	char buf[8192];
	snprintf(buf, sizeof buf, "%s", spec);
	for (char *save = NULL, *entry = strtok_r(buf, ",", &save); entry; entry = strtok_r(NULL, ",", &save)) {
		char name[64];
		int err = 0;
		unsigned arg = 0;
		unsigned long long mask = 0;
		int n = sscanf(entry, "%63[a-z0-9_]:%d:%u:%llu", name, &err, &arg, &mask);
		*why = "seccomp policy entry";
		if (n != 2 && n != 4) { errno = EINVAL; goto out; }
		if (err <= 0 || err > 4095 || arg > 5) { errno = EINVAL; goto out; }
		int nr = seccomp_syscall_resolve_name(name);
		if (nr == __NR_SCMP_ERROR) continue;
		*why = name;
		int r = n == 2 ? seccomp_rule_add(ctx, SCMP_ACT_ERRNO((unsigned)err), nr, 0)
		               : seccomp_rule_add(ctx, SCMP_ACT_ERRNO((unsigned)err), nr, 1, SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, mask));
		/* -EOPNOTSUPP / -EDOM: no such syscall on one of the architectures (e.g. kexec_file_load on i386). */
		if (r < 0 && r != -EOPNOTSUPP && r != -EDOM) { errno = -r; goto out; }
	}
	*why = "seccomp_load";
	rc = seccomp_load(ctx);
	if (rc < 0) { errno = -rc; rc = -1; }
out:
	{
		int saved = errno;
		seccomp_release(ctx);
		errno = saved;
	}
	return rc;
}

#endif
