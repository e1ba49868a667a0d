/*
 * transport_iscsi.c - the libiscsi transport (transport.h) for sessions, the login
 * error classifier, and SendTargets discovery (session_discover, session.h), which runs
 * on the same connections.
 *
 * Each slot is the libiscsi call its contract names, plus three things libiscsi 1.19
 * does not do:
 *   - resolving the portal's host name without blocking (resolve.h): until the answer is
 *     in, the connection's descriptor is the resolver's, and libiscsi gets a numeric
 *     address;
 *   - proving what the target sent (wire.h): each connection's socket is observed from
 *     connect to destroy; a command's result carries what the observer proved (data_in,
 *     sense_valid) and a command whose answer broke the protocol fails with the reason;
 *     a login or a status the observer did not see is refused;
 *   - bounding each service call (wire_service_begin).
 * libiscsi hands a struct scsi_task to the callback and leaves freeing it to us, so every
 * request queued on a connection is a `struct call` on the connection's list until its
 * callback ran; destroy frees what libiscsi did not call back.
 * Not thread-safe: a connection is used by one thread (session.c's event thread, or the
 * caller of session_discover).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "iscsifs-config.h"
#include "iscsifs/log.h"
#include "iscsifs/resolve.h"
#include "iscsifs/session.h"
#include "iscsifs/transport.h"
#include "iscsifs/util.h"
#include "iscsifs/wire.h"

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
	if (strstr(what, "does not resolve")) {
		snprintf(err, errlen, "cannot connect to %s: %s; check the host name in the URL",
			 portal, what);
		return -EHOSTUNREACH;
	}
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
	/* The portal accepted the TCP connection, then closed it (or sent what made
	 * libiscsi drop it) before answering the login: libiscsi 1.19 then reports only
	 * that it may not reconnect ("iscsi_service_reconnect_if_loggedin. Can not
	 * reconnect right now.") or that the socket closed. Seen with a portal that is
	 * not iSCSI (an HTTP server, anything that answers and hangs up). */
	if (strcasestr(what, "reconnect") || strcasestr(what, "closed") ||
	    strcasestr(what, "eof") || strcasestr(what, "reset by peer")) {
		snprintf(err, errlen, "cannot log in to %s at %s: the portal closed the connection "
			 "without answering the login (is it an iSCSI target, is the port right?)",
			 t, portal);
		return -ECONNRESET;
	}
	/* libiscsi's texts may end in a newline: one line, as every message */
	size_t n = strcspn(what, "\n");
	snprintf(err, errlen, "login to %s at %s failed: %.*s", t, portal, (int)n, what);
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
	bool reads;                  /* a command with a Data-In buffer */
	bool login;                  /* the observer must have seen this login complete */
	bool answered;               /* called back already (li_service): libiscsi's own
	                                callback, when it comes, only frees it */
	struct call *next, *prev;
};

struct transport_conn {
	struct iscsi_context *ctx;
	struct wire_conn *w;         /* observes ctx's socket once connecting */
	struct resolve *res;         /* while the portal's host name is being resolved */
	struct call *connect_call;   /* the connect waiting for res */
	char err[CONFIG_ERRLEN];     /* why we failed the connection ourselves; "" if not */
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

/* Fail the connection ourselves: service() returns -1 from now on, get_error says why. */
static void conn_fail(struct transport_conn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void conn_fail(struct transport_conn *conn, const char *fmt, ...)
{
	if (conn->err[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(conn->err, sizeof(conn->err), fmt, ap);
	va_end(ap);
}

static bool is_transport_status(int status)
{
	return status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
	       status == SCSI_STATUS_TIMEOUT;
}

/* A SCSI command's callback: libiscsi's status, checked against what the observer saw. */
static void cmd_done(struct call *k, int status)
{
	struct transport_conn *conn = k->conn;
	struct wire_answer a;
	wire_cmd_end(conn->w, k->task->itt, &a);
	struct transport_result r = { .status = status };
	if (a.fault[0]) {
		/* answered, wrongly (or refused by the observer before libiscsi saw it) */
		r.status = SCSI_STATUS_ERROR;
		r.protocol_error = true;
		r.reason = a.fault;
	} else if (is_transport_status(status)) {
		r.reason = conn->err[0] ? conn->err : wire_fault(conn->w);
	} else if (!a.status_seen ||
		   (a.status == SCSI_STATUS_CONDITION_MET ? SCSI_STATUS_GOOD : a.status) != status) {
		/* libiscsi reports an answer the observer did not vouch for */
		conn_fail(conn, "the wire observer did not see the status libiscsi reports "
			  "(0x%x, ITT 0x%08x); this iscsifs does not match the libiscsi it runs "
			  "with (see wire.c), so it drops the connection rather than use "
			  "unverified data", (unsigned)status, k->task->itt);
		log_err("%s", conn->err);
		r.status = SCSI_STATUS_ERROR;
		r.reason = conn->err;
	} else {
		r.data_in = k->reads ? a.data_in : 0;
		if (status == SCSI_STATUS_CHECK_CONDITION && a.sense_valid) {
			r.sense_valid = true;
			r.sense_key = a.sense_key;
			r.asc = a.asc;
			r.ascq = a.ascq;
		}
		if (a.underflow)
			r.residual = a.residual;
	}
	k->cmd_cb(conn, &r, k->priv);
}

/* Every libiscsi callback of ours. */
static void call_done(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	struct call *k = priv;
	struct transport_conn *conn = k->conn;
	(void)ctx;
	(void)data;
	if (k->answered) {
		call_free(k);
		return;
	}
	if (k->task) {
		cmd_done(k, status);
	} else {
		if (k->login && status == SCSI_STATUS_GOOD && !wire_logged_in(conn->w)) {
			conn_fail(conn, "the wire observer did not see the target's login answer; "
				  "this iscsifs does not match the libiscsi it runs with (see "
				  "wire.c), so it drops the connection rather than use unverified "
				  "data");
			log_err("%s", conn->err);
		}
		if (status == SCSI_STATUS_GOOD && conn->err[0])
			status = SCSI_STATUS_ERROR;
		k->cb(conn, status, k->priv);
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
	conn->w = wire_new();
	conn->ctx = conn->w ? new_context(cfg, target, type == TRANSPORT_SESSION_DISCOVERY) : NULL;
	if (!conn->ctx) {
		wire_free(conn->w);
		free(conn);
		return NULL;
	}
	char why[CONFIG_ERRLEN];
	if (!wire_selftest(why, sizeof(why)))
		conn_fail(conn, "%s", why);
	return conn;
}

/* Hand libiscsi the numeric portal and start observing its socket. */
static int start_connect(struct transport_conn *conn, const char *numeric, struct call *k)
{
	if (iscsi_connect_async(conn->ctx, numeric, call_done, k) != 0)
		return -1;
	int r = wire_attach(conn->w, iscsi_get_fd(conn->ctx));
	if (r < 0) /* reported when the connect completes: call_done sees conn->err */
		conn_fail(conn, "cannot observe socket %d: %s", iscsi_get_fd(conn->ctx),
			  strerror(-r));
	return 0;
}

static int li_connect_async(struct transport_conn *conn, const char *portal, transport_cb cb,
			    void *priv)
{
	if (conn->err[0])
		return -1;
	struct call *k = call_new(conn, cb, priv);
	if (!k)
		return -1;
	conn->res = resolve_start(portal);
	if (!conn->res) {
		conn_fail(conn, "cannot start resolving %s: out of memory or threads", portal);
		call_free(k);
		return -1;
	}
	char numeric[INET6_ADDRSTRLEN + 16], why[CONFIG_ERRLEN];
	int r = resolve_result(conn->res, numeric, sizeof(numeric), why, sizeof(why));
	if (r == -EINPROGRESS) {
		conn->connect_call = k; /* resolve_step goes on */
		return 0;
	}
	resolve_free(conn->res);
	conn->res = NULL;
	if (r < 0)
		conn_fail(conn, "%s", why);
	if (r < 0 || start_connect(conn, numeric, k) != 0) {
		call_free(k);
		return -1;
	}
	return 0;
}

/* The resolver answered (its descriptor was readable): connect, or fail the connect. */
static int resolve_step(struct transport_conn *conn)
{
	char numeric[INET6_ADDRSTRLEN + 16], why[CONFIG_ERRLEN];
	int r = resolve_result(conn->res, numeric, sizeof(numeric), why, sizeof(why));
	if (r == -EINPROGRESS)
		return 0;
	struct call *k = conn->connect_call;
	conn->connect_call = NULL;
	resolve_free(conn->res);
	conn->res = NULL;
	if (r < 0)
		conn_fail(conn, "%s", why);
	else if (start_connect(conn, numeric, k) == 0)
		return 0;
	else
		conn_fail(conn, "%s", iscsi_get_error(conn->ctx));
	k->cb(conn, SCSI_STATUS_ERROR, k->priv);
	call_free(k);
	return -1;
}

static int li_login_async(struct transport_conn *conn, transport_cb cb, void *priv)
{
	struct call *k = call_new(conn, cb, priv);
	if (!k)
		return -1;
	k->login = true;
	if (iscsi_login_async(conn->ctx, call_done, k) != 0) {
		call_free(k);
		return -1;
	}
	return 0;
}

static int li_service(struct transport_conn *conn, int revents)
{
	if (conn->res)
		return resolve_step(conn);
	wire_service_begin(conn->w);
	int r = iscsi_service(conn->ctx, revents);
	/* The observer refused a PDU about one command: that command was answered
	 * (wrongly) and must fail with the reason, not be re-issued with the others when
	 * the session recovers. libiscsi 1.19 cancels everything from iscsi_service when
	 * a read fails (cmd_done then reports it); if it has not, report it here. */
	uint32_t itt;
	if (wire_fault_itt(conn->w, &itt))
		for (struct call *k = conn->calls; k; k = k->next)
			if (k->task && k->task->itt == itt && !k->answered) {
				cmd_done(k, SCSI_STATUS_CANCELLED);
				k->answered = true;
				break;
			}
	return r < 0 || conn->err[0] || wire_fault(conn->w) ? -1 : 0;
}

static int li_get_fd(struct transport_conn *conn)
{
	return conn->res ? resolve_fd(conn->res) : iscsi_get_fd(conn->ctx);
}

static int li_which_events(struct transport_conn *conn)
{
	return conn->res ? POLLIN : iscsi_which_events(conn->ctx);
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
	if (wire_cmd_reserve(conn->w) != 0)
		return -ENOMEM;
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
	k->reads = dir == TRANSPORT_DIR_READ && len;
	/* libiscsi puts this int into bytes 0..1 of the LUN field as it is: the first two
	 * bytes of the address the target reported (li_can_address). */
	if (iscsi_scsi_command_async(conn->ctx, (int)(lun >> 48), k->task, call_done, NULL, k) != 0) {
		call_free(k);
		return -1;
	}
	/* queued, not sent (libiscsi sends from iscsi_service): nothing of its answer can
	 * have been read yet */
	wire_cmd_begin(conn->w, k->task->itt, k->reads ? buf : NULL, k->reads ? len : 0,
		       dir == TRANSPORT_DIR_WRITE ? len : 0);
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
	if (conn->err[0])
		return conn->err;
	if (wire_fault(conn->w))
		return wire_fault(conn->w);
	if (conn->res)
		return "the host name did not resolve in time (is the DNS server answering?)";
	const char *e = iscsi_get_error(conn->ctx);
	return e ? e : "";
}

static void li_destroy(struct transport_conn *conn)
{
	/* stop observing before libiscsi closes the descriptor: once closed, its number
	 * may be another thread's */
	wire_detach(conn->w);
	resolve_free(conn->res);
	/* cancels what is queued: its callbacks run (CANCELLED) and free their calls */
	iscsi_destroy_context(conn->ctx);
	while (conn->calls)
		call_free(conn->calls);
	wire_free(conn->w);
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

/* ---------- SendTargets discovery (session.h; caller's thread, own connection) ----------
 * Not part of the transport table: only the libiscsi transport discovers. */

struct disc {
	int phase;       /* 0 connecting, 1 logging in, 2 discovering, 3 done, -1 failed */
	char why[CONFIG_ERRLEN];
	void (*fn)(const char *, const char *, void *);
	void *opaque;
};

static void disc_failed(struct disc *d, struct transport_conn *conn)
{
	if (d->phase >= 0)
		snprintf(d->why, sizeof(d->why), "%s", li_get_error(conn));
	d->phase = -1;
}

static void disc_found(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	struct disc *d = priv;
	(void)ctx;
	if (status != SCSI_STATUS_GOOD || d->phase != 2) {
		if (d->phase >= 0)
			snprintf(d->why, sizeof(d->why), "%s", iscsi_get_error(ctx));
		d->phase = -1;
		return;
	}
	for (struct iscsi_discovery_address *a = data; a; a = a->next)
		for (struct iscsi_target_portal *tp = a->portals; tp; tp = tp->next)
			d->fn(a->target_name, tp->portal, d->opaque);
	d->phase = 3;
}

static void disc_step(struct transport_conn *conn, int status, void *priv)
{
	struct disc *d = priv;
	if (status != SCSI_STATUS_GOOD) {
		disc_failed(d, conn);
		return;
	}
	if (d->phase == 0) {
		d->phase = 1;
		if (li_login_async(conn, disc_step, d) != 0)
			disc_failed(d, conn);
	} else if (d->phase == 1) {
		d->phase = 2;
		if (iscsi_discovery_async(conn->ctx, disc_found, d) != 0)
			disc_failed(d, conn);
	}
}

static void logout_done(struct transport_conn *conn, int status, void *priv)
{
	(void)conn;
	(void)status;
	*(bool *)priv = true;
}

int session_discover(const struct config *cfg, const char *portal,
		     void (*fn)(const char *target, const char *portal, void *opaque),
		     void *opaque, char *err, size_t errlen)
{
	struct disc d = { .phase = 0, .fn = fn, .opaque = opaque };
	struct transport_conn *conn = li_create(NULL, cfg, NULL, TRANSPORT_SESSION_DISCOVERY);
	if (!conn) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	uint64_t deadline = util_now_ms() + (uint64_t)cfg->login_timeout * 1000;
	if (li_connect_async(conn, portal, disc_step, &d) != 0)
		disc_failed(&d, conn);
	while (d.phase >= 0 && d.phase < 3) {
		uint64_t now = util_now_ms();
		if (now >= deadline) {
			if (d.phase == 0)
				snprintf(err, errlen, "cannot connect to %s within %d s (login_timeout): "
					 "%s", portal, cfg->login_timeout,
					 conn->res ? li_get_error(conn)
						   : "no answer to the TCP connection request (is the "
						     "address right, is a firewall dropping packets?)");
			else
				snprintf(err, errlen, "cannot discover targets at %s: the portal "
					 "accepted the connection but did not answer the %s within "
					 "%d s (login_timeout)", portal,
					 d.phase == 1 ? "login" : "SendTargets request",
					 cfg->login_timeout);
			li_destroy(conn);
			return -ETIMEDOUT;
		}
		struct pollfd p = { .fd = li_get_fd(conn),
				    .events = (short)(li_which_events(conn) | POLLRDHUP) };
		int r = poll(&p, 1, (int)MIN(deadline - now, 200));
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && li_service(conn, p.revents & ~POLLRDHUP) < 0)
			disc_failed(&d, conn);
		if (r > 0 && (p.revents & (POLLHUP | POLLERR)) && d.phase >= 0 && d.phase < 3) {
			snprintf(d.why, sizeof(d.why), "%s", li_get_error(conn));
			if (!d.why[0])
				snprintf(d.why, sizeof(d.why), "connection closed");
			d.phase = -1;
		}
	}
	int ret = 0;
	bool done = false; /* here: the logout callback may run in li_destroy */
	if (d.phase != 3) {
		ret = transport_classify_error(d.why, portal, NULL, cfg, err, errlen);
	} else if (li_logout_async(conn, logout_done, &done) == 0) {
		uint64_t dl = util_now_ms() + 1000;
		while (!done && util_now_ms() < dl) {
			struct pollfd p = { .fd = li_get_fd(conn),
					    .events = (short)li_which_events(conn) };
			if (poll(&p, 1, 100) > 0 && li_service(conn, p.revents) < 0)
				break;
		}
	}
	li_destroy(conn);
	return ret;
}
