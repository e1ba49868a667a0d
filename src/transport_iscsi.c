/*
 * transport_iscsi.c - the libiscsi transport (transport.h) for sessions, the login
 * error classifier, and SendTargets discovery (session_discover, session.h), which runs
 * on libiscsi directly.
 *
 * Each slot is the libiscsi call its contract names, with nothing added but
 * bookkeeping: libiscsi hands a struct scsi_task to the callback and leaves freeing it
 * to us, so every request queued on a connection is a `struct call` on the connection's
 * list until its callback ran; destroy frees what libiscsi did not call back.
 * Not thread-safe: a connection is used by one thread (session.c's event thread).
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "iscsifs-config.h"
#include "iscsifs/log.h"
#include "iscsifs/session.h"
#include "iscsifs/transport.h"
#include "iscsifs/util.h"

_Static_assert(TRANSPORT_STATUS_GOOD == SCSI_STATUS_GOOD, "status values are libiscsi's");
_Static_assert(TRANSPORT_STATUS_CHECK_CONDITION == SCSI_STATUS_CHECK_CONDITION,
	       "status values are libiscsi's");
_Static_assert(TRANSPORT_STATUS_CANCELLED == SCSI_STATUS_CANCELLED, "status values are libiscsi's");
_Static_assert(TRANSPORT_STATUS_ERROR == SCSI_STATUS_ERROR, "status values are libiscsi's");
_Static_assert(TRANSPORT_STATUS_TIMEOUT == SCSI_STATUS_TIMEOUT, "status values are libiscsi's");

/* ---------- contexts ---------- */

static struct iscsi_context *new_context(const struct config *cfg, const char *target,
					 bool discovery)
{
	struct iscsi_context *ctx = iscsi_create_context(cfg->initiator);
	if (!ctx)
		return NULL;
	iscsi_set_session_type(ctx, discovery ? ISCSI_SESSION_DISCOVERY : ISCSI_SESSION_NORMAL);
	if (!discovery)
		iscsi_set_targetname(ctx, target);
	iscsi_set_header_digest(ctx, (enum iscsi_header_digest)cfg->header_digest);
#if HAVE_ISCSI_SET_DATA_DIGEST
	/* Offered as "None,CRC32C": used only when the target insists. libiscsi 1.19
	 * (Debian 12) has no data digest at all; this is compiled only where it does. */
	iscsi_set_data_digest(ctx, ISCSI_DATA_DIGEST_NONE_CRC32C);
#endif
	iscsi_set_noautoreconnect(ctx, 1);
	/* libiscsi copies the secrets into the context (and zeroes the context when it
	 * is destroyed); cfg->secrets stay set while mounted because every re-login
	 * builds a new context from them. Neither is ever logged.
	 * Discovery sends our CHAP credentials but does not ask the portal to prove
	 * itself: libiscsi 1.19 then insists on the portal's CHAP_N/CHAP_R, and most
	 * portals (tgt, LIO by default) run discovery without CHAP, so mutual CHAP would
	 * make every portal-only URL fail. Nothing is lost: a SendTargets answer only
	 * names portals, and each target login there is mutually authenticated. */
	if (cfg->chap) {
		iscsi_set_initiator_username_pwd(ctx, cfg->secrets.username, cfg->secrets.password);
		if (cfg->mutual_chap && !discovery)
			iscsi_set_target_username_pwd(ctx, cfg->secrets.target_username,
						      cfg->secrets.target_password);
	}
	return ctx;
}

/*
 * Classify a libiscsi connect/login error into -errno and a user-facing reason.
 *
 * What libiscsi 1.19 reports (iscsi_get_error), checked against tgtd 1.0.85:
 *   "Failed to log in to target. Status: Authentication failure(513)"
 *       the target refused us: no credentials where it wants CHAP, unknown user,
 *       wrong password, or (mutual CHAP) the target has no outgoing account
 *   "Authentication failed. Invalid CHAP_R response from the target"
 *       mutual CHAP: the target does not know our target_password
 *   "Failed to log in to target. Wrong CHAP targetname received: NAME"
 *       mutual CHAP: the target answered with another user name than target_username
 *   "Failed to log in to target. It did not return CHAP_N during SECNEG." (or CHAP_R,
 *   or "Wrong size of CHAP_R received from target.")
 *       mutual CHAP: the target did not authenticate itself at all
 *   "Failed to log in to target. Status: Authorization failure(514)"
 *   "Failed to log in to target. Status: Target not found(515)"
 *       tgtd also answers 515 when an initiator-name ACL does not admit us
 * The raw text goes to the debug log only (it never holds one of our secrets: libiscsi
 * names at most the user name the target sent).
 */
int transport_classify_error(const char *what, const char *portal, const char *target,
			     const struct config *cfg, char *err, size_t errlen)
{
	const char *t = target && *target ? target : "discovery";
	const char *src = cfg->secret_file[0] ? "in the secret file"
					      : "in LIBISCSI_CHAP_USERNAME/_PASSWORD";

	log_debug("login to %s at %s failed; libiscsi says: %s", t, portal, what);
	if (strcasestr(what, "refused")) {
		snprintf(err, errlen, "cannot connect to %s: connection refused (is the target "
				      "running, is the port right?)", portal);
		return -ECONNREFUSED;
	}
	if (strcasestr(what, "unreachable") || strcasestr(what, "no route")) {
		snprintf(err, errlen, "cannot connect to %s: host unreachable", portal);
		return -EHOSTUNREACH;
	}
	/* the target failed our challenge (mutual CHAP): checked first, the texts also
	 * say "authentication" or "CHAP" */
	if (strcasestr(what, "Invalid CHAP_R") || strcasestr(what, "Wrong CHAP targetname") ||
	    strcasestr(what, "did not return CHAP") || strcasestr(what, "size of CHAP_R")) {
		snprintf(err, errlen, "authentication failed for %s at %s: the target did not "
			 "prove it knows target_password (mutual CHAP)%s", t, portal,
			 strcasestr(what, "targetname") ? "; it answered as another user than "
							  "target_username"
			 : strcasestr(what, "did not return") ? "; it did not answer our "
								"challenge at all"
							      : "");
		return -EACCES;
	}
	if (strcasestr(what, "authentication") || strcasestr(what, "chap")) {
		if (!cfg->chap)
			snprintf(err, errlen, "authentication failed for %s at %s: the target "
				 "requires CHAP and no credentials were given: put username and "
				 "password in a secret file and pass -o secret_file=PATH", t, portal);
		else
			snprintf(err, errlen, "authentication failed for %s at %s: the target "
				 "refused our CHAP credentials (check username and password %s%s)",
				 t, portal, src,
				 cfg->mutual_chap && target ? "; for mutual CHAP the target also "
							      "needs an outgoing account" : "");
		return -EACCES;
	}
	if (strcasestr(what, "Authorization failure")) {
		snprintf(err, errlen, "authorization failed for %s at %s: the target does not "
			 "admit initiator %s", t, portal, cfg->initiator);
		return -EACCES;
	}
	if (strcasestr(what, "not found") || strcasestr(what, "removed")) {
		snprintf(err, errlen, "target %s not found at %s, or it does not admit initiator "
			 "%s (list targets with: iscsifs ls iscsi://%s)", t, portal,
			 cfg->initiator, portal);
		return -ENOENT;
	}
	snprintf(err, errlen, "login to %s at %s failed: %s", t, portal, what);
	return -EIO;
}


/* ---------- the transport ---------- */

struct call {
	struct transport_conn *conn;
	transport_cb cb;             /* connect, login, NOP-Out, logout */
	transport_cmd_cb cmd_cb;     /* SCSI commands */
	void *priv;
	struct scsi_task *task;      /* SCSI commands */
	struct scsi_iovec iov;       /* the task's data buffer; lives as long as the task */
	struct call *next, *prev;
};

struct transport_conn {
	struct iscsi_context *ctx;
	struct call *calls;          /* queued, not yet called back */
};

static struct call *call_new(struct transport_conn *conn, transport_cb cb, void *priv)
{
	struct call *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->conn = conn;
	k->cb = cb;
	k->priv = priv;
	k->next = conn->calls;
	if (conn->calls)
		conn->calls->prev = k;
	conn->calls = k;
	return k;
}

static void call_free(struct call *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		k->conn->calls = k->next;
	if (k->next)
		k->next->prev = k->prev;
	if (k->task)
		scsi_free_scsi_task(k->task);
	free(k);
}

/* Every libiscsi callback of ours. */
static void call_done(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	struct call *k = priv;
	struct scsi_task *task = k->task;
	(void)ctx;
	(void)data;
	if (task) {
		struct transport_result r = { .status = status };
		if (status == SCSI_STATUS_CHECK_CONDITION) {
			r.sense_key = task->sense.key;
			r.asc = (task->sense.ascq >> 8) & 0xff;
			r.ascq = task->sense.ascq & 0xff;
		}
		if (task->residual_status == SCSI_RESIDUAL_UNDERFLOW)
			r.residual = (uint32_t)task->residual;
		k->cmd_cb(k->conn, &r, k->priv);
	} else {
		k->cb(k->conn, status, k->priv);
	}
	call_free(k);
}

static struct transport_conn *li_create(void *opaque, const struct config *cfg,
					const char *target, enum transport_session_type type)
{
	(void)opaque;
	struct transport_conn *conn = calloc(1, sizeof(*conn));
	if (!conn)
		return NULL;
	conn->ctx = new_context(cfg, target, type == TRANSPORT_SESSION_DISCOVERY);
	if (!conn->ctx) {
		free(conn);
		return NULL;
	}
	return conn;
}

static int li_connect_async(struct transport_conn *conn, const char *portal, transport_cb cb,
			    void *priv)
{
	struct call *k = call_new(conn, cb, priv);
	if (!k)
		return -1;
	if (iscsi_connect_async(conn->ctx, portal, call_done, k) != 0) {
		call_free(k);
		return -1;
	}
	return 0;
}

static int li_login_async(struct transport_conn *conn, transport_cb cb, void *priv)
{
	struct call *k = call_new(conn, cb, priv);
	if (!k)
		return -1;
	if (iscsi_login_async(conn->ctx, call_done, k) != 0) {
		call_free(k);
		return -1;
	}
	return 0;
}

static int li_service(struct transport_conn *conn, int revents)
{
	return iscsi_service(conn->ctx, revents) < 0 ? -1 : 0;
}

static int li_get_fd(struct transport_conn *conn)
{
	return iscsi_get_fd(conn->ctx);
}

static int li_which_events(struct transport_conn *conn)
{
	return iscsi_which_events(conn->ctx);
}

static bool li_can_address(uint64_t lun)
{
	return (lun & 0x0000ffffffffffffULL) == 0;
}

static int li_command_async(struct transport_conn *conn, uint64_t lun, const uint8_t *cdb,
			    int cdb_len, enum transport_dir dir, void *buf, uint32_t len,
			    transport_cmd_cb cb, void *priv)
{
	if (!li_can_address(lun))
		return -EINVAL;
	struct call *k = call_new(conn, NULL, priv);
	if (!k)
		return -ENOMEM;
	k->cmd_cb = cb;
	/* scsi_create_task copies the CDB */
	k->task = scsi_create_task(cdb_len, (unsigned char *)cdb,
				   dir == TRANSPORT_DIR_READ    ? SCSI_XFER_READ
				   : dir == TRANSPORT_DIR_WRITE ? SCSI_XFER_WRITE
								: SCSI_XFER_NONE,
				   (int)len);
	if (!k->task) {
		call_free(k);
		return -ENOMEM;
	}
	if (len) {
		k->iov.iov_base = buf;
		k->iov.iov_len = len;
		if (dir == TRANSPORT_DIR_READ)
			scsi_task_set_iov_in(k->task, &k->iov, 1);
		else
			scsi_task_set_iov_out(k->task, &k->iov, 1);
	}
	/* libiscsi puts this int into bytes 0..1 of the LUN field as it is: the first two
	 * bytes of the address the target reported (li_can_address). */
	if (iscsi_scsi_command_async(conn->ctx, (int)(lun >> 48), k->task, call_done, NULL, k) != 0) {
		call_free(k);
		return -1;
	}
	return 0;
}

static int li_nop_out_async(struct transport_conn *conn, transport_cb cb, void *priv)
{
	struct call *k = call_new(conn, cb, priv);
	if (!k)
		return -1;
	if (iscsi_nop_out_async(conn->ctx, call_done, NULL, 0, k) != 0) {
		call_free(k);
		return -1;
	}
	return 0;
}

static int li_logout_async(struct transport_conn *conn, transport_cb cb, void *priv)
{
	struct call *k = call_new(conn, cb, priv);
	if (!k)
		return -1;
	if (iscsi_logout_async(conn->ctx, call_done, k) != 0) {
		call_free(k);
		return -1;
	}
	return 0;
}

static const char *li_get_error(struct transport_conn *conn)
{
	const char *e = iscsi_get_error(conn->ctx);
	return e ? e : "";
}

static void li_destroy(struct transport_conn *conn)
{
	/* cancels what is queued: its callbacks run (CANCELLED) and free their calls */
	iscsi_destroy_context(conn->ctx);
	while (conn->calls)
		call_free(conn->calls);
	free(conn);
}

const struct session_transport transport_libiscsi = {
	.create = li_create,
	.connect_async = li_connect_async,
	.login_async = li_login_async,
	.service = li_service,
	.get_fd = li_get_fd,
	.which_events = li_which_events,
	.command_async = li_command_async,
	.can_address = li_can_address,
	.nop_out_async = li_nop_out_async,
	.logout_async = li_logout_async,
	.get_error = li_get_error,
	.destroy = li_destroy,
};

static void logout_cb(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	(void)ctx;
	(void)status;
	(void)data;
	*(bool *)priv = true;
}

/* ---------- SendTargets discovery (session.h; caller's thread, own context) ----------
 * Not part of the transport table: only the libiscsi transport discovers. */

struct disc {
	int phase;       /* 0 connecting, 1 logging in, 2 discovering, 3 done, -1 failed */
	char why[512];
	void (*fn)(const char *, const char *, void *);
	void *opaque;
};

static void disc_cb(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	struct disc *d = priv;
	if (status != SCSI_STATUS_GOOD) {
		snprintf(d->why, sizeof(d->why), "%s", iscsi_get_error(ctx));
		d->phase = -1;
		return;
	}
	switch (d->phase) {
	case 0:
		d->phase = 1;
		if (iscsi_login_async(ctx, disc_cb, d) != 0) {
			snprintf(d->why, sizeof(d->why), "%s", iscsi_get_error(ctx));
			d->phase = -1;
		}
		break;
	case 1:
		d->phase = 2;
		if (iscsi_discovery_async(ctx, disc_cb, d) != 0) {
			snprintf(d->why, sizeof(d->why), "%s", iscsi_get_error(ctx));
			d->phase = -1;
		}
		break;
	case 2:
		for (struct iscsi_discovery_address *a = data; a; a = a->next)
			for (struct iscsi_target_portal *tp = a->portals; tp; tp = tp->next)
				d->fn(a->target_name, tp->portal, d->opaque);
		d->phase = 3;
		break;
	}
}

int session_discover(const struct config *cfg, const char *portal,
		     void (*fn)(const char *target, const char *portal, void *opaque),
		     void *opaque, char *err, size_t errlen)
{
	struct disc d = { .phase = 0, .fn = fn, .opaque = opaque };
	struct iscsi_context *ctx = new_context(cfg, NULL, true);
	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	uint64_t deadline = util_now_ms() + (uint64_t)cfg->login_timeout * 1000;
	if (iscsi_connect_async(ctx, portal, disc_cb, &d) != 0) {
		snprintf(d.why, sizeof(d.why), "%s", iscsi_get_error(ctx));
		d.phase = -1;
	}
	while (d.phase >= 0 && d.phase < 3) {
		uint64_t now = util_now_ms();
		if (now >= deadline) {
			snprintf(err, errlen, "cannot discover targets at %s: no answer within %d s "
				 "(login_timeout); is the address right and the target up?",
				 portal, cfg->login_timeout);
			iscsi_destroy_context(ctx);
			return -ETIMEDOUT;
		}
		struct pollfd p = { .fd = iscsi_get_fd(ctx),
				    .events = (short)(iscsi_which_events(ctx) | POLLRDHUP) };
		int r = poll(&p, 1, (int)MIN(deadline - now, 200));
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && iscsi_service(ctx, p.revents & ~POLLRDHUP) < 0 && d.phase >= 0) {
			snprintf(d.why, sizeof(d.why), "%s", iscsi_get_error(ctx));
			d.phase = -1;
		}
		if (r > 0 && (p.revents & (POLLHUP | POLLERR)) && d.phase >= 0 && d.phase < 3) {
			snprintf(d.why, sizeof(d.why), "%s", iscsi_get_error(ctx));
			if (!d.why[0])
				snprintf(d.why, sizeof(d.why), "connection closed");
			d.phase = -1;
		}
	}
	int ret = 0;
	bool done = false; /* here: the logout callback may run in iscsi_destroy_context */
	if (d.phase != 3)
		ret = transport_classify_error(d.why, portal, NULL, cfg, err, errlen);
	else {
		if (iscsi_logout_async(ctx, logout_cb, &done) == 0) {
			uint64_t dl = util_now_ms() + 1000;
			while (!done && util_now_ms() < dl) {
				struct pollfd p = { .fd = iscsi_get_fd(ctx),
						    .events = (short)iscsi_which_events(ctx) };
				if (poll(&p, 1, 100) > 0 && iscsi_service(ctx, p.revents) < 0)
					break;
			}
		}
	}
	iscsi_destroy_context(ctx);
	return ret;
}
