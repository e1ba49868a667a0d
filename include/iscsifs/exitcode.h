/*
 * exitcode.h - the exit status of every iscsifs command, in one place (PLAN.md
 * interface 6). Documented in `iscsifs --help` (config_usage) and in iscsifs(1), EXIT
 * STATUS; a script can tell a typo from a dead portal from a wrong password, as with
 * iscsiadm's numbered codes.
 *
 * Only main() exits; commands return one of these.
 */
#ifndef ISCSIFS_EXITCODE_H
#define ISCSIFS_EXITCODE_H

#include <errno.h>

enum exitcode {
	EXITCODE_OK = 0,        /* done */
	EXITCODE_RUNTIME = 1,   /* failed while running (I/O error, mount refused, ...) */
	EXITCODE_USAGE = 2,     /* bad command line, option, URL, secret file */
	EXITCODE_CONNECT = 3,   /* cannot connect, or the login timed out */
	EXITCODE_AUTH = 4,      /* authentication (CHAP) or authorization (ACL) refused */
	EXITCODE_NOTFOUND = 5,  /* no such target or LUN, or the LUN is not a disk */
	EXITCODE_UNWRITTEN = 6, /* unmounted, but dirty data could not be written */
};

/*
 * The exit status for a command that failed with -errno `err` while connecting,
 * logging in or finding its target/LUN (the errnos transport_classify_error() and
 * target.c return). Anything else is a runtime failure.
 */
static inline int exitcode_from_errno(int err)
{
	switch (err < 0 ? -err : err) {
	case 0:
		return EXITCODE_OK;
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ETIMEDOUT:
	case EADDRNOTAVAIL:
		return EXITCODE_CONNECT;
	case EACCES:
		return EXITCODE_AUTH;
	case ENOENT:
	case ENODEV:
	case ENXIO:
		return EXITCODE_NOTFOUND;
	default:
		return EXITCODE_RUNTIME;
	}
}

#endif
