/*
 * session.h - one iSCSI session (one TCP connection) to one target, owned by one
 * event-loop thread, with keepalive, timeouts and recovery.
 *
 * libiscsi 1.19 is not thread-safe and its own reconnect cannot be trusted (command
 * timeouts never fire while a reconnect is pending), so: every call on a session's
 * connection is made on that session's thread; other threads hand commands over
 * through session_submit() (a locked queue + eventfd); recovery is ours (see
 * src/session.c for the state machine). The session reaches libiscsi only through a
 * struct session_transport (transport.h), so tests can give it a fake target.
 *
 * A command is a CDB plus at most one data buffer. The session re-issues commands that
 * were in flight when the connection was lost, after re-login and after checking that
 * each registered LUN still has the same identity (VPD 0x83/0x80 page); a LUN whose
 * identity changed is failed for good (its commands complete with -ENODEV).
 */
#ifndef ISCSIFS_SESSION_H
#define ISCSIFS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iscsifs/config.h"

struct session;

enum session_dir { SESSION_DIR_NONE = 0, SESSION_DIR_READ = 1, SESSION_DIR_WRITE = 2 };

struct session_cmd {
	/* set by the submitter, unchanged by the session */
	uint64_t lun;                /* as REPORT LUNS gave it (lunaddr.h) */
	uint8_t cdb[16];
	uint8_t cdb_len;
	enum session_dir dir;
	void *buf;                   /* data in (READ) or out (WRITE); NULL when len 0 */
	uint32_t len;
	void (*done)(struct session_cmd *cmd);  /* exactly once, on the session thread,
	                                           or in session_submit's caller when the
	                                           command fails at once (session stopped,
	                                           or past its budget) */
	void *opaque;
	uint64_t not_before_ms;      /* util_now_ms() time before which it is not sent
	                                (retry backoff); 0 = at once */
	uint64_t expire_ms;          /* the request's time budget: the util_now_ms() time
	                                after which it is not sent again and completes with
	                                -ETIMEDOUT. 0 = the session sets it at the first
	                                session_submit: now + replacement_timeout, or the end
	                                of the current outage (down_since +
	                                replacement_timeout) when that is sooner. Keep it
	                                across retries of one request: the command then
	                                completes at most expire_ms + cmd_timeout. */

	/* results, valid in done() */
	int result;          /* 0: the target answered (see scsi_status and below);
	                        -ETIMEDOUT: its budget (expire_ms) ran out before an answer;
	                        -EIO: the target's answer broke the protocol (logged: Data-In
	                        misplaced or beyond the buffer, unusable sense, ...), or the
	                        command lost the connection MAX_ATTEMPTS times;
	                        -ENODEV: LUN identity changed; -ESHUTDOWN: session stopped;
	                        -ENOMEM */
	int scsi_status;     /* SCSI status byte (0 GOOD, 2 CHECK CONDITION, 8 BUSY, ...) */
	bool sense_valid;    /* CHECK CONDITION with usable sense (transport.h) */
	int sense_key, asc, ascq;   /* when sense_valid, else 0 */
	uint32_t residual;   /* bytes not transferred (underflow), for data-in */
	uint32_t data_in;    /* READ: bytes of Data-In proven to have arrived in order from
	                        the start of buf; only these were written by the target */

	/* private to session.c */
	struct session_cmd *next, *prev;
	struct session *owner;
	uint64_t deadline_ms;
	int attempts;        /* times issued */
	bool internal;       /* the session's own (identity check, probe): never re-queued */
};

/* Counters and state, for stats. */
struct session_info {
	const char *state;           /* "logged-in", "recovering", "connecting", "stopped" */
	uint64_t reconnects, timeouts, nop_timeouts, commands;
	uint64_t down_since_ms;      /* start of the current outage: the connection was lost
	                                and no command has been answered since; 0 otherwise */
};

/* Everything needed to log in; strings are copied. */
struct session_params {
	const struct config *cfg;    /* timeouts, initiator, digests, secrets */
	const char *portal;          /* "host:port" */
	const char *target;          /* IQN */
	int index;                   /* for log lines when sessions > 1 */
	int initial_backoff_ms;      /* first reconnect delay, doubling to 30 s; 0 = 1000 */
};

/*
 * Connect and log in (bounded by cfg->login_timeout), then start the event thread.
 * On failure returns -errno and writes a one-line reason to err: -ECONNREFUSED,
 * -ETIMEDOUT, -EACCES (authentication failed: names the target and which side),
 * -ENOENT (unknown target), -EHOSTUNREACH, -EIO (other).
 */
int session_create(const struct session_params *p, struct session **out, char *err,
		   size_t errlen);

struct session_transport;

/* session_create over another transport (tests: a fake target); `tr_opaque` is passed
 * to tr->create. session_create is this with transport_libiscsi. */
int session_create_with(const struct session_params *p, const struct session_transport *tr,
			void *tr_opaque, struct session **out, char *err, size_t errlen);

/*
 * Queue a command (any thread). Never blocks on the network. Completes it at once with
 * -ETIMEDOUT when its budget already ran out, or while the session is past
 * replacement_timeout in an outage (until a command is answered again: the session
 * keeps reconnecting and probing in the background).
 */
void session_submit(struct session *s, struct session_cmd *cmd);

/* Submit and wait (any thread but the session's own). Returns cmd->result. */
int session_run(struct session *s, struct session_cmd *cmd);

/* After a re-login, check that INQUIRY VPD `page` of `lun` still returns these bytes,
 * before anything queued is sent. `page` SESSION_IDENT_BLOCK_SIZE instead checks the
 * logical block length: `data` is its 4 bytes (big-endian, as READ CAPACITY(16)
 * returns them in bytes 8-11, SBC-4 5.20.2); a target that refuses READ CAPACITY(16)
 * leaves it unchecked here (the LUN layer checks with what the LUN was read with). A
 * LUN whose page or block length changed fails (its commands: -ENODEV). */
#define SESSION_IDENT_BLOCK_SIZE 0
void session_set_identity(struct session *s, uint64_t lun, uint8_t page, const uint8_t *data,
			  size_t len);

/*
 * Stop checking `lun` after re-logins, and stop failing its commands (issue 11: the
 * LUN left the namespace, or another disk at its address becomes a new file, which
 * registers its own identity with session_set_identity afterwards).
 */
void session_clear_identity(struct session *s, uint64_t lun);

/*
 * Call fn(opaque, s) on the session's thread each time it has logged in again after a
 * lost connection and checked the identities (not after the first login): the target
 * may have changed while the session was away (issue 11: capacities, the LUN set).
 * fn runs under the session's queue lock: it must not block nor call session_*
 * functions. NULL removes it; once this returns, the old fn is not running and will
 * not be called again.
 */
void session_set_relogin_handler(struct session *s, void (*fn)(void *opaque, struct session *s),
				 void *opaque);

/* Whether commands can be sent to `lun` at all (session_transport.can_address). */
bool session_can_address(struct session *s, uint64_t lun);

void session_get_info(struct session *s, struct session_info *out);

/*
 * Stop: every command queued, waiting or in flight completes with -ESHUTDOWN; logs out
 * when logged in with nothing in flight (at most SESSION_LOGOUT_MS); joins the thread.
 * Returns within SESSION_LOGOUT_MS plus one bounded service call, whatever the target
 * does.
 */
void session_destroy(struct session *s);

#define SESSION_LOGOUT_MS 2000

/*
 * SendTargets discovery on a portal (a discovery session, bounded by login_timeout).
 * Calls fn(target, portal, opaque) for each target/portal pair. Returns 0 or -errno
 * with a message in err, as session_create.
 */
int session_discover(const struct config *cfg, const char *portal,
		     void (*fn)(const char *target, const char *portal, void *opaque),
		     void *opaque, char *err, size_t errlen);

#endif
