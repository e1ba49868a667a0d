/*
 * session.c - one iSCSI session: a transport connection (transport.h: libiscsi, or a
 * fake in the unit tests), its event-loop thread, keepalive, command timeouts and
 * recovery.
 *
 * NOTES ON THE THREAD MODEL
 *   session_create() starts one thread per session (session_thread). That thread alone
 *   calls the transport for the session's connection: it polls the socket, an eventfd
 *   that session_submit() writes after queueing a command under `qlock`, and a timer
 *   (the poll timeout), because libiscsi only notices timeouts inside iscsi_service()
 *   and iscsi_which_events() may be 0 while nothing is queued. Completion callbacks
 *   (cmd->done) run on this thread and must not block.
 *
 * STATE MACHINE (event thread only)
 *
 *   state        meaning                              leaves to
 *   CONNECTING   new context, TCP connect + login     VERIFYING / LOGGED_IN on success,
 *                in progress, bounded by               BACKOFF on failure or login
 *                login_timeout                         timeout (the first login: fails
 *                                                      session_create instead)
 *   VERIFYING    INQUIRY VPD of each registered LUN   LOGGED_IN (LUNs whose identity
 *                compared with what it was             changed are failed: -ENODEV)
 *   LOGGED_IN    commands flow; NOP-Out every          BACKOFF on socket error/hangup,
 *                noop_interval                         NOP timeout, command timeout
 *   BACKOFF      waiting 1 s (initial_backoff_ms),     CONNECTING
 *                doubling to 30 s
 *   STOPPED      session_destroy                       -
 *
 *   Invariants: commands are sent only in LOGGED_IN; `inflight` holds exactly the
 *   commands handed to the transport and not yet completed, oldest first; on connection loss
 *   the context is destroyed (its callbacks are ignored while `tearing`) and `inflight`
 *   goes back to the front of `pending` in order, to be re-issued after re-login.
 *
 * TIME BOUNDS (replacement_timeout is the user's one budget)
 *   - Every command carries a budget, expire_ms (session.h): at most replacement_timeout
 *     from its first submission, less when an outage is already under way. Past it, a
 *     command is never sent again: waiting ones complete with -ETIMEDOUT at that moment,
 *     one in flight when its cmd_timeout fires or its connection is lost. So every
 *     command completes at most replacement_timeout + cmd_timeout after it was first
 *     submitted, whatever the target does (answers NOPs but not READs, logs in and then
 *     says nothing, floods the socket: the transport's service calls are bounded, and
 *     the timers run between them).
 *   - An outage (`down_since`) starts when the first request the target left
 *     unanswered was sent (or its last answer to a command, if later - answered NOPs do
 *     not count; or the loss itself when nothing was outstanding), is noticed when the
 *     connection is lost, and ends only when
 *     the target answers a command after a re-login - an identity check, a re-issued
 *     command, or a TEST UNIT READY probe the session sends when nothing else is in
 *     flight - not at the login itself: a target that logs in and then answers nothing
 *     cannot reset the clock. Once an outage is replacement_timeout old, everything
 *     waiting and every new command fails at once with -ETIMEDOUT (`expired`) until an
 *     answer ends the outage; reconnecting and probing go on in the background.
 *   - session_destroy: everything completes with -ESHUTDOWN at once; a logout is tried
 *     only when logged in with nothing in flight, for at most SESSION_LOGOUT_MS.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "iscsifs/log.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/session.h"
#include "iscsifs/transport.h"
#include "iscsifs/util.h"

enum sstate { S_CONNECTING, S_VERIFYING, S_LOGGED_IN, S_BACKOFF, S_STOPPED };
static const char *const state_names[] = { "connecting", "verifying", "logged-in",
					   "recovering", "stopped" };

#define MAX_INFLIGHT 256
#define MAX_ATTEMPTS 6       /* a command that keeps killing the connection fails */

struct ident {
	uint64_t lun;
	uint8_t page;
	uint8_t *data;
	size_t len;
	bool failed;
	bool removed;                /* session_clear_identity: no longer checked; kept
	                                until session_destroy (a check may refer to it) */
	struct session *owner;
	struct ident *next;
};

struct session {
	char portal[300];
	char target[CONFIG_NAME_MAX];
	char name[400];              /* "target@portal" (+ "#n"), for log lines */
	const struct config *cfg;
	int efd;
	pthread_t thread;

	pthread_mutex_t qlock;
	pthread_cond_t qcond;        /* initial login result; session_run completions */
	/* protected by qlock */
	struct session_cmd *qhead, *qtail;
	bool stopping;
	bool expired;                /* replacement timeout passed while down */
	struct ident *idents;
	void (*relogin_fn)(void *opaque, struct session *s);   /* session_set_relogin_handler */
	void *relogin_opaque;
	struct session_info info;
	int init_result;             /* 1 = pending, 0 = logged in, <0 = failed */
	char init_err[CONFIG_ERRLEN];

	const struct session_transport *tr;
	void *tr_opaque;
	uint64_t initial_backoff_ms;

	/* event thread only */
	struct transport_conn *ctx;  /* NULL between connections */
	enum sstate state;
	bool initial;                /* the first login: failures are reported, not retried */
	bool connected;              /* CONNECTING: the TCP connection is up, login sent */
	bool tearing;                /* ignore callbacks of the context being destroyed */
	bool lost;                   /* set by callbacks: recover after tr->service */
	char lost_why[256];
	struct session_cmd *pend_head, *pend_tail;    /* to issue, in order */
	struct session_cmd *infl_head, *infl_tail;    /* issued, oldest first */
	struct session_cmd *delay_head, *delay_tail;  /* waiting for not_before_ms */
	uint32_t ninflight;
	uint64_t deadline_ms;        /* CONNECTING: login deadline; BACKOFF: retry time */
	uint64_t backoff_ms;
	uint64_t down_since;         /* start of the outage; 0 when up (TIME BOUNDS) */
	uint64_t last_answer_ms;     /* when the target last answered a SCSI command (NOP-Ins
	                                and logins do not count: a target may answer those
	                                and nothing else) */
	bool probe_sent;             /* the outage probe went out on this connection */
	struct session_cmd probe;    /* TEST UNIT READY, internal */
	uint64_t expire_log_ms;      /* when the last "no answer within" line was logged */
	int expire_quiet;            /* expiries not logged since */
	uint64_t next_nop_ms;
	bool nop_outstanding;
	uint64_t nop_deadline_ms;
	int verify_left;
	int verify_cap;               /* entries in verify_cmds and verify_buf */
	struct session_cmd *verify_cmds;   /* one per identity checked after a re-login */
	uint8_t (*verify_buf)[255];   /* INQUIRY allocation length is one byte */
};

/* ---------- lists (event thread) ---------- */

static void list_append(struct session_cmd **head, struct session_cmd **tail,
			struct session_cmd *c)
{
	c->next = NULL;
	c->prev = *tail;
	if (*tail)
		(*tail)->next = c;
	else
		*head = c;
	*tail = c;
}

static void list_del(struct session_cmd **head, struct session_cmd **tail,
		     struct session_cmd *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		*tail = c->prev;
	c->next = c->prev = NULL;
}

static void complete(struct session_cmd *c, int result)
{
	c->result = result;
	c->done(c);
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* "READ(10) of 8 blocks at LBA 2048 on LUN 1", for messages that say what the target
 * did not answer. */
static const char *describe(const struct session_cmd *c, char *buf, size_t len)
{
	static const struct {
		uint8_t op;
		const char *name;
		int lba_at, lba_len, n_at, n_len;   /* CDB fields; 0 = none */
	} ops[] = {
		{ 0x28, "READ(10)", 2, 4, 7, 2 },        { 0x88, "READ(16)", 2, 8, 10, 4 },
		{ 0x2a, "WRITE(10)", 2, 4, 7, 2 },       { 0x8a, "WRITE(16)", 2, 8, 10, 4 },
		{ 0x35, "SYNCHRONIZE CACHE(10)", 0, 0, 0, 0 },
		{ 0x91, "SYNCHRONIZE CACHE(16)", 0, 0, 0, 0 },
		{ 0x41, "WRITE SAME(10)", 2, 4, 7, 2 },  { 0x93, "WRITE SAME(16)", 2, 8, 10, 4 },
		{ 0x42, "UNMAP", 0, 0, 0, 0 },           { 0x00, "TEST UNIT READY", 0, 0, 0, 0 },
		{ 0x12, "INQUIRY", 0, 0, 0, 0 },         { 0xa0, "REPORT LUNS", 0, 0, 0, 0 },
		{ 0x25, "READ CAPACITY(10)", 0, 0, 0, 0 }, { 0x1a, "MODE SENSE(6)", 0, 0, 0, 0 },
		{ 0x5a, "MODE SENSE(10)", 0, 0, 0, 0 },
	};
	const char *name = NULL;
	int k = -1;
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
		if (ops[i].op == c->cdb[0]) {
			name = ops[i].name;
			k = (int)i;
		}
	if (c->cdb[0] == 0x9e)
		name = (c->cdb[1] & 0x1f) == 0x10 ? "READ CAPACITY(16)"
		       : (c->cdb[1] & 0x1f) == 0x12 ? "GET LBA STATUS" : NULL;
	if (!name) {
		snprintf(buf, len, "command 0x%02x on LUN %s", c->cdb[0], LUNSTR(c->lun));
	} else if (k >= 0 && ops[k].lba_len) {
		snprintf(buf, len, "%s of %" PRIu64 " blocks at LBA %" PRIu64 " on LUN %s", name,
			 get_be(c->cdb + ops[k].n_at, ops[k].n_len),
			 get_be(c->cdb + ops[k].lba_at, ops[k].lba_len), LUNSTR(c->lun));
	} else {
		snprintf(buf, len, "%s on LUN %s", name, LUNSTR(c->lun));
	}
	return buf;
}

/* A command whose budget ran out: -ETIMEDOUT, said at most once a second. */
static void expire(struct session *s, struct session_cmd *c, uint64_t now)
{
	if (now - s->expire_log_ms >= 1000) {
		char what[128];
		log_err("%s: no answer to %s within its time budget (replacement_timeout, %d s); "
			"failing it%s", s->name, describe(c, what, sizeof(what)),
			s->cfg->replacement_timeout,
			s->expire_quiet ? " (and earlier ones not logged)" : "");
		s->expire_log_ms = now;
		s->expire_quiet = 0;
	} else {
		s->expire_quiet++;
	}
	complete(c, -ETIMEDOUT);
}

/* ---------- context setup ---------- */

/* ---------- event thread: connection management ---------- */

static void connect_cb(struct transport_conn *ctx, int status, void *priv);
static void login_cb(struct transport_conn *ctx, int status, void *priv);
static void issue_pending(struct session *s);

static void set_state(struct session *s, enum sstate st)
{
	s->state = st;
	pthread_mutex_lock(&s->qlock);
	s->info.state = state_names[st];
	s->info.down_since_ms = s->down_since;
	pthread_mutex_unlock(&s->qlock);
}

static void start_connect(struct session *s)
{
	s->connected = false;
	s->ctx = s->tr->create(s->tr_opaque, s->cfg, s->target, TRANSPORT_SESSION_NORMAL);
	s->deadline_ms = util_now_ms() + (uint64_t)s->cfg->login_timeout * 1000;
	set_state(s, S_CONNECTING);
	if (!s->ctx || s->tr->connect_async(s->ctx, s->portal, connect_cb, s) != 0) {
		s->lost = true;
		snprintf(s->lost_why, sizeof(s->lost_why), "connect: %s",
			 s->ctx ? s->tr->get_error(s->ctx) : "out of memory");
	}
}

/* Tear down the context; move in-flight commands back to the front of pending, but
 * complete those past their budget (-ETIMEDOUT; -ESHUTDOWN when `stopping`). */
static void drop_context(struct session *s, bool stopping)
{
	if (s->ctx) {
		s->tearing = true;
		s->tr->destroy(s->ctx);
		s->tearing = false;
		s->ctx = NULL;
	}
	uint64_t now = util_now_ms();
	/* requeue in original order, in front of what was never sent */
	while (s->infl_tail) {
		struct session_cmd *c = s->infl_tail;
		list_del(&s->infl_head, &s->infl_tail, c);
		if (c->internal)
			continue; /* identity checks and probes are redone after the next login */
		if (stopping) {
			complete(c, -ESHUTDOWN);
			continue;
		}
		if (now >= c->expire_ms) {
			expire(s, c, now);
			continue;
		}
		c->next = s->pend_head;
		c->prev = NULL;
		if (s->pend_head)
			s->pend_head->prev = c;
		else
			s->pend_tail = c;
		s->pend_head = c;
	}
	s->ninflight = 0;
	s->nop_outstanding = false;
	s->probe_sent = false;
}

/* Once the outage is replacement_timeout old: fail what waits, and what comes, at once
 * (the loop fails `pending` while `expired`). Returns the time it will be, when not yet. */
static uint64_t check_outage(struct session *s, uint64_t now)
{
	if (!s->down_since)
		return UINT64_MAX;
	uint64_t limit = s->down_since + (uint64_t)s->cfg->replacement_timeout * 1000;
	if (now < limit)
		return limit;
	pthread_mutex_lock(&s->qlock);
	bool was = s->expired;
	s->expired = true;
	pthread_mutex_unlock(&s->qlock);
	if (!was)
		log_err("%s: no answer from the target for %d s (replacement_timeout): failing I/O "
			"until it answers again; still trying to reconnect", s->name,
			s->cfg->replacement_timeout);
	return UINT64_MAX;
}

static void enter_backoff(struct session *s, const char *why)
{
	uint64_t now = util_now_ms();
	bool was_up = s->state == S_LOGGED_IN;
	if (was_up) {
		log_warn("%s: connection lost (%s); reconnecting", s->name, why);
		pthread_mutex_lock(&s->qlock);
		s->info.reconnects++;
		pthread_mutex_unlock(&s->qlock);
	}
	/* The outage began when we started waiting in vain: the oldest request still
	 * unanswered (command or keepalive), but not before the target's last answer to a
	 * command (a target that answers NOPs and not READs is not serving I/O); now
	 * when nothing was outstanding (the target closed an idle connection). A re-login
	 * that no answer followed does not end it (TIME BOUNDS), so a target that logs in
	 * and then says nothing also backs off further each time. */
	if (!s->down_since) {
		uint64_t since = now;
		for (struct session_cmd *c = s->infl_head; c; c = c->next)
			since = MIN(since, c->deadline_ms - (uint64_t)s->cfg->cmd_timeout * 1000);
		if (s->nop_outstanding)
			since = MIN(since, s->nop_deadline_ms -
						   (uint64_t)s->cfg->noop_timeout * 1000);
		s->down_since = MIN(MAX(since, s->last_answer_ms), now);
		s->backoff_ms = s->initial_backoff_ms;
	} else {
		s->backoff_ms = MIN(MAX(s->backoff_ms, 1) * 2, 30000);
	}
	/* Before the in-flight commands past their budget complete: whatever their
	 * completions submit must already see the outage (and fail at once if it is
	 * replacement_timeout old), not get a fresh budget. */
	pthread_mutex_lock(&s->qlock);
	s->info.down_since_ms = s->down_since;
	pthread_mutex_unlock(&s->qlock);
	check_outage(s, now);
	drop_context(s, false);
	if (!was_up)
		log_debug("%s: reconnect failed (%s); next try in %" PRIu64 " ms", s->name, why,
			  s->backoff_ms);
	s->deadline_ms = now + s->backoff_ms;
	set_state(s, S_BACKOFF);
}

static void initial_result(struct session *s, int result, const char *err)
{
	pthread_mutex_lock(&s->qlock);
	s->init_result = result;
	if (err)
		snprintf(s->init_err, sizeof(s->init_err), "%s", err);
	pthread_cond_broadcast(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
}

/* Called from transport callbacks: only records the failure. The connection must not
 * be destroyed while its service() is running; the loop acts on `lost` afterwards. */
static void login_failed(struct session *s, const char *what)
{
	if (!s->lost)
		snprintf(s->lost_why, sizeof(s->lost_why), "%s", what);
	s->lost = true;
}

/* The first login failed: report it to session_create and stop. Loop only. */
static void initial_failed(struct session *s, const char *what)
{
	char err[CONFIG_ERRLEN];
	int r = transport_classify_error(what, s->portal, s->target, s->cfg, err, sizeof(err));
	drop_context(s, false);
	s->initial = false;
	set_state(s, S_STOPPED);
	initial_result(s, r, err);
}

static void connect_cb(struct transport_conn *ctx, int status, void *priv)
{
	struct session *s = priv;
	if (s->tearing)
		return;
	if (status != TRANSPORT_STATUS_GOOD) {
		login_failed(s, s->tr->get_error(ctx));
		return;
	}
	s->connected = true;
	if (s->tr->login_async(ctx, login_cb, s) != 0)
		login_failed(s, s->tr->get_error(ctx));
}

static void verify_done(struct session_cmd *c);

static void logged_in(struct session *s)
{
	uint64_t now = util_now_ms();
	if (s->down_since)
		log_info("%s: logged in again %.1f s into the outage; it ends when the target "
			 "answers a command", s->name, (double)(now - s->down_since) / 1000.0);
	s->next_nop_ms = now + (uint64_t)s->cfg->noop_interval * 1000;
	s->probe_sent = false;
	set_state(s, S_LOGGED_IN);
	if (s->initial) {
		s->initial = false;
		initial_result(s, 0, NULL);
		return;
	}
	/* issue 11: the target may have changed while we were away. Under qlock, so that
	 * once session_set_relogin_handler has returned the old handler is not running. */
	pthread_mutex_lock(&s->qlock);
	if (s->relogin_fn)
		s->relogin_fn(s->relogin_opaque, s);
	pthread_mutex_unlock(&s->qlock);
}

static void issue(struct session *s, struct session_cmd *c);

/* The target answered a command on a logged-in connection: the outage, if any, is over. */
static void outage_over(struct session *s)
{
	if (!s->down_since)
		return;
	log_notice("%s: session re-established after %.1f s", s->name,
		   (double)(util_now_ms() - s->down_since) / 1000.0);
	s->down_since = 0;
	s->backoff_ms = 0;
	pthread_mutex_lock(&s->qlock);
	s->expired = false;
	s->info.down_since_ms = 0;
	pthread_mutex_unlock(&s->qlock);
}

static void probe_done(struct session_cmd *c)
{
	(void)c; /* an answer ended the outage in cmd_cb; a timeout starts recovery */
}

/* In an outage, logged in, nothing in flight or waiting: ask the target something, so
 * an answer can end the outage. Once per connection. */
static void maybe_probe(struct session *s)
{
	if (!s->down_since || s->probe_sent || s->state != S_LOGGED_IN || s->lost ||
	    s->infl_head || s->pend_head)
		return;
	struct session_cmd *c = &s->probe;
	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&s->qlock);
	for (struct ident *id = s->idents; id; id = id->next)
		if (!id->failed) {
			c->lun = id->lun;
			break;
		}
	pthread_mutex_unlock(&s->qlock);
	c->cdb_len = 6; /* TEST UNIT READY; any status is an answer */
	c->done = probe_done;
	c->internal = true;
	s->probe_sent = true;
	issue(s, c);
}

static void login_cb(struct transport_conn *ctx, int status, void *priv)
{
	struct session *s = priv;
	if (s->tearing)
		return;
	if (status != TRANSPORT_STATUS_GOOD) {
		login_failed(s, s->tr->get_error(ctx));
		return;
	}
	/* Re-login: check every registered LUN is still the same disk before anything
	 * queued for it is sent - all of them: a LUN left unchecked could be another disk.
	 * No verify command of an earlier login is referenced any more (drop_context
	 * destroyed its context), so the arrays may move. */
	int n = 0, want = 0;
	pthread_mutex_lock(&s->qlock);
	for (struct ident *id = s->idents; id; id = id->next)
		want += !id->failed && !id->removed;
	if (want > s->verify_cap) {
		struct session_cmd *cmds = realloc(s->verify_cmds, sizeof(*cmds) * (size_t)want);
		if (cmds)
			s->verify_cmds = cmds;
		uint8_t(*bufs)[255] = cmds ? realloc(s->verify_buf, sizeof(*bufs) * (size_t)want) :
					     NULL;
		if (bufs)
			s->verify_buf = bufs;
		if (!cmds || !bufs) {
			pthread_mutex_unlock(&s->qlock);
			login_failed(s, "out of memory for the LUN identity checks");
			return;
		}
		s->verify_cap = want;
	}
	for (struct ident *id = s->idents; id && n < want; id = id->next) {
		if (id->failed || id->removed)
			continue;
		struct session_cmd *c = &s->verify_cmds[n];
		memset(c, 0, sizeof(*c));
		c->lun = id->lun;
		if (id->page == SESSION_IDENT_BLOCK_SIZE) {
			c->cdb[0] = 0x9e; /* SERVICE ACTION IN(16): READ CAPACITY(16) */
			c->cdb[1] = 0x10;
			c->cdb[13] = 32;
			c->cdb_len = 16;
		} else {
			c->cdb[0] = 0x12; /* INQUIRY, EVPD */
			c->cdb[1] = 1;
			c->cdb[2] = id->page;
			c->cdb[4] = (uint8_t)sizeof(s->verify_buf[n]);
			c->cdb_len = 6;
		}
		c->dir = SESSION_DIR_READ;
		memset(s->verify_buf[n], 0, sizeof(s->verify_buf[n]));
		c->buf = s->verify_buf[n];
		c->len = sizeof(s->verify_buf[n]);
		c->done = verify_done;
		c->opaque = id;
		c->internal = true;
		n++;
	}
	pthread_mutex_unlock(&s->qlock);
	if (n == 0 || s->initial) {
		logged_in(s);
		return;
	}
	set_state(s, S_VERIFYING);
	s->verify_left = n;
	for (int i = 0; i < n; i++)
		issue(s, &s->verify_cmds[i]);
}

static bool lun_failed(struct session *s, uint64_t lun);

static void verify_done(struct session_cmd *c)
{
	struct ident *id = c->opaque;
	struct session *s = id->owner;
	if (s->lost)
		return; /* this login is being torn down; the next one checks again */
	bool answered = c->result == 0 && c->scsi_status == 0;
	/* Compare the page as its header sizes it (a target that omits the residual
	 * must not make bytes past the page count). */
	size_t plen = id->len >= 4 ? MIN(id->len, 4 + (size_t)((id->data[2] << 8) | id->data[3]))
				   : id->len;
	bool same = answered && c->data_in >= plen && memcmp(c->buf, id->data, plen) == 0;
	bool bs = id->page == SESSION_IDENT_BLOCK_SIZE;
	if (bs) {
		/* the block length is bytes 8-11 of READ CAPACITY(16)'s answer; a target
		 * without READ CAPACITY(16) (ILLEGAL REQUEST: invalid opcode or field)
		 * cannot be checked here */
		same = answered && c->data_in >= 12 && memcmp(c->buf + 8, id->data, 4) == 0;
		if (c->result == 0 && c->scsi_status == 2 && c->sense_valid &&
		    c->sense_key == 5 && (c->asc == 0x20 || c->asc == 0x24))
			answered = same = true;
	}
	pthread_mutex_lock(&s->qlock);
	if (id->removed) /* the LUN left the namespace meanwhile: nothing to protect */
		answered = same = true;
	pthread_mutex_unlock(&s->qlock);
	/* ILLEGAL REQUEST (e.g. logical unit not supported): the LUN is not there. */
	bool gone = c->result == 0 && c->scsi_status == 2 && c->sense_valid && c->sense_key == 5;
	if (!answered && !gone) {
		/* BUSY, TASK SET FULL, a pending UNIT ATTENTION, becoming ready: not an
		 * answer about identity. Ask again; if it stays so, log in again later
		 * rather than fail a disk that may well be the same. */
		if (c->attempts < 6) {
			issue(s, c);
			return;
		}
		login_failed(s, "the identity check after login got no answer");
		return;
	}
	if (!same && !lun_failed(s, id->lun)) { /* one line per LUN, not per page */
		pthread_mutex_lock(&s->qlock);
		id->failed = true;
		pthread_mutex_unlock(&s->qlock);
		if (bs)
			log_err("%s: LUN %s is no longer the same disk after reconnecting (its "
				"block size changed); failing it rather than writing where its "
				"blocks no longer are", s->name, LUNSTR(id->lun));
		else
			log_err("%s: LUN %s is no longer the same disk after reconnecting (VPD "
				"page 0x%02x changed); failing it rather than writing to another "
				"disk", s->name, LUNSTR(id->lun), id->page);
	}
	if (--s->verify_left == 0)
		logged_in(s);
}

/* ---------- event thread: commands ---------- */

static void cmd_cb(struct transport_conn *ctx, const struct transport_result *res, void *priv)
{
	struct session_cmd *c = priv;
	struct session *s = c->owner;
	int status = res->status;

	if (s->tearing)
		return; /* drop_context requeues it */
	if (status == TRANSPORT_STATUS_ERROR && res->protocol_error) {
		/* answered, wrongly: not the connection's fault, and asking again would
		 * get the same answer */
		char what[128];
		s->last_answer_ms = util_now_ms();
		list_del(&s->infl_head, &s->infl_tail, c);
		s->ninflight--;
		if (!c->internal)
			log_err("%s: %s: %s; failing it", s->name, describe(c, what, sizeof(what)),
				res->reason ? res->reason : "protocol error");
		c->scsi_status = status;
		c->sense_valid = false;
		c->sense_key = c->asc = c->ascq = 0;
		c->residual = c->data_in = 0;
		complete(c, -EIO);
		return;
	}
	if (status == TRANSPORT_STATUS_CANCELLED || status == TRANSPORT_STATUS_ERROR ||
	    status == TRANSPORT_STATUS_TIMEOUT) {
		/* The transport failed under this command: recover, then re-issue it.
		 * When the target closes the socket, libiscsi 1.19 cancels every in-flight
		 * command without setting an error text, so get_error() still holds an
		 * older message (e.g. the sense of an earlier UNIT ATTENTION): name the
		 * cause from the transport's reason or the status instead. The first cause
		 * of this loss wins. */
		if (!s->lost)
			snprintf(s->lost_why, sizeof(s->lost_why), "%s",
				 res->reason ? res->reason
				 : status == TRANSPORT_STATUS_CANCELLED ?
					 "connection closed; in-flight commands cancelled" :
					 s->tr->get_error(ctx));
		s->lost = true;
		return;
	}
	list_del(&s->infl_head, &s->infl_tail, c);
	s->ninflight--;
	s->last_answer_ms = util_now_ms();
	c->scsi_status = status;
	c->sense_valid = res->sense_valid;
	c->sense_key = res->sense_valid ? res->sense_key : 0;
	c->asc = res->sense_valid ? res->asc : 0;
	c->ascq = res->sense_valid ? res->ascq : 0;
	c->residual = res->residual;
	c->data_in = c->dir == SESSION_DIR_READ ? MIN(res->data_in, c->len) : 0;
	if (s->state == S_LOGGED_IN || s->state == S_VERIFYING)
		outage_over(s);
	complete(c, 0);
}

static void issue(struct session *s, struct session_cmd *c)
{
	c->owner = s;
	c->attempts++;
	c->deadline_ms = util_now_ms() + (uint64_t)s->cfg->cmd_timeout * 1000;
	list_append(&s->infl_head, &s->infl_tail, c);
	s->ninflight++;
	int r = s->tr->command_async(s->ctx, c->lun, c->cdb, c->cdb_len,
				     c->dir == SESSION_DIR_READ    ? TRANSPORT_DIR_READ
				     : c->dir == SESSION_DIR_WRITE ? TRANSPORT_DIR_WRITE
								   : TRANSPORT_DIR_NONE,
				     c->len ? c->buf : NULL, c->len, cmd_cb, c);
	if (r == -ENOMEM) {
		/* nothing was sent and the connection is fine: fail only this command */
		list_del(&s->infl_head, &s->infl_tail, c);
		s->ninflight--;
		c->attempts--;
		complete(c, -ENOMEM);
		return;
	}
	pthread_mutex_lock(&s->qlock);
	s->info.commands++;
	pthread_mutex_unlock(&s->qlock);
	if (r != 0) {
		/* the transport refused to queue it: the connection is unusable */
		s->lost = true;
		snprintf(s->lost_why, sizeof(s->lost_why), "submit: %s", s->tr->get_error(s->ctx));
	}
}

static bool lun_failed(struct session *s, uint64_t lun)
{
	bool failed = false;
	pthread_mutex_lock(&s->qlock);
	for (struct ident *id = s->idents; id; id = id->next)
		if (id->lun == lun && id->failed && !id->removed)
			failed = true;
	pthread_mutex_unlock(&s->qlock);
	return failed;
}

static void issue_pending(struct session *s)
{
	while (s->state == S_LOGGED_IN && !s->lost && s->pend_head &&
	       s->ninflight < MAX_INFLIGHT) {
		struct session_cmd *c = s->pend_head;
		list_del(&s->pend_head, &s->pend_tail, c);
		if (lun_failed(s, c->lun)) {
			complete(c, -ENODEV);
			continue;
		}
		uint64_t now = util_now_ms();
		if (now >= c->expire_ms) {
			expire(s, c, now);
			continue;
		}
		if (c->attempts >= MAX_ATTEMPTS) {
			char what[128];
			log_err("%s: %s lost the connection %d times; failing it", s->name,
				describe(c, what, sizeof(what)), c->attempts);
			complete(c, -EIO);
			continue;
		}
		issue(s, c);
	}
}

static void nop_cb(struct transport_conn *ctx, int status, void *priv)
{
	struct session *s = priv;
	if (s->tearing)
		return;
	s->nop_outstanding = false;
	if (status != TRANSPORT_STATUS_GOOD) {
		s->lost = true;
		snprintf(s->lost_why, sizeof(s->lost_why), "NOP-Out failed: %s",
			 s->tr->get_error(ctx));
	}
}

/* Move commands handed over by other threads into the pending list. */
static bool take_submitted(struct session *s)
{
	uint64_t v;
	ssize_t r = read(s->efd, &v, sizeof(v));
	(void)r;
	pthread_mutex_lock(&s->qlock);
	struct session_cmd *c = s->qhead;
	bool stopping = s->stopping;
	s->qhead = s->qtail = NULL;
	pthread_mutex_unlock(&s->qlock);
	uint64_t now = util_now_ms();
	while (c) {
		struct session_cmd *n = c->next;
		if (c->not_before_ms > now)
			list_append(&s->delay_head, &s->delay_tail, c);
		else
			list_append(&s->pend_head, &s->pend_tail, c);
		c = n;
	}
	return stopping;
}

static void fail_all_pending(struct session *s, int err)
{
	while (s->delay_head) {
		struct session_cmd *c = s->delay_head;
		list_del(&s->delay_head, &s->delay_tail, c);
		list_append(&s->pend_head, &s->pend_tail, c);
	}
	while (s->pend_head) {
		struct session_cmd *c = s->pend_head;
		list_del(&s->pend_head, &s->pend_tail, c);
		complete(c, err);
	}
}

/* Complete what waits (pending or delayed) past its budget; returns the earliest budget
 * still running (UINT64_MAX when none). */
static uint64_t expire_waiting(struct session *s, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	struct session_cmd **heads[] = { &s->pend_head, &s->delay_head };
	struct session_cmd **tails[] = { &s->pend_tail, &s->delay_tail };
	for (int l = 0; l < 2; l++)
		for (struct session_cmd *c = *heads[l], *n; c; c = n) {
			n = c->next;
			if (now >= c->expire_ms) {
				list_del(heads[l], tails[l], c);
				expire(s, c, now);
			} else {
				next = MIN(next, c->expire_ms);
			}
		}
	return next;
}

/* Timers; returns the poll timeout in ms. */
static int run_timers(struct session *s)
{
	uint64_t now = util_now_ms();
	uint64_t next = now + 1000;

	next = MIN(next, expire_waiting(s, now));
	for (struct session_cmd *c = s->delay_head, *n; c; c = n) {
		n = c->next;
		if (c->not_before_ms <= now) {
			list_del(&s->delay_head, &s->delay_tail, c);
			list_append(&s->pend_head, &s->pend_tail, c);
		} else {
			next = MIN(next, c->not_before_ms);
		}
	}

	switch (s->state) {
	case S_CONNECTING:
		if (now >= s->deadline_ms) {
			if (s->initial) {
				char err[CONFIG_ERRLEN];
				if (!s->connected)
					snprintf(err, sizeof(err), "cannot connect to %s within %d s "
						 "(login_timeout): %s", s->portal,
						 s->cfg->login_timeout,
						 s->ctx && *s->tr->get_error(s->ctx) ?
							 s->tr->get_error(s->ctx) :
							 "no answer to the TCP connection request (is "
							 "the address right, is a firewall dropping "
							 "packets?)");
				else
					snprintf(err, sizeof(err), "cannot log in to %s at %s: the "
						 "target accepted the connection but did not answer "
						 "the login within %d s (login_timeout)", s->target,
						 s->portal, s->cfg->login_timeout);
				drop_context(s, false);
				s->initial = false;
				set_state(s, S_STOPPED);
				initial_result(s, -ETIMEDOUT, err);
				return 1000;
			}
			enter_backoff(s, s->connected ? "no answer to the login request within "
							 "login_timeout"
						       : "no connection within login_timeout");
		}
		next = MIN(next, s->deadline_ms);
		break;
	case S_BACKOFF:
		if (now >= s->deadline_ms) {
			start_connect(s);
			return 0;
		}
		next = MIN(next, s->deadline_ms);
		break;
	case S_LOGGED_IN:
		if (s->cfg->noop_interval > 0) {
			if (s->nop_outstanding && now >= s->nop_deadline_ms) {
				pthread_mutex_lock(&s->qlock);
				s->info.nop_timeouts++;
				pthread_mutex_unlock(&s->qlock);
				char why[96];
				snprintf(why, sizeof(why), "no answer to NOP-Out keepalive within %d s "
					 "(noop_timeout)", s->cfg->noop_timeout);
				enter_backoff(s, why);
				return 0;
			}
			if (!s->nop_outstanding && now >= s->next_nop_ms) {
				if (s->tr->nop_out_async(s->ctx, nop_cb, s) == 0) {
					s->nop_outstanding = true;
					s->nop_deadline_ms = now + (uint64_t)s->cfg->noop_timeout * 1000;
				}
				s->next_nop_ms = now + (uint64_t)s->cfg->noop_interval * 1000;
			}
			next = MIN(next, s->nop_outstanding ? s->nop_deadline_ms : s->next_nop_ms);
		}
		/* fallthrough */
	case S_VERIFYING:
		for (struct session_cmd *c = s->infl_head; c; c = c->next) {
			if (now >= c->deadline_ms) {
				pthread_mutex_lock(&s->qlock);
				s->info.timeouts++;
				pthread_mutex_unlock(&s->qlock);
				char why[192], what[128];
				snprintf(why, sizeof(why), "no answer to %s within %d s (cmd_timeout)",
					 describe(c, what, sizeof(what)), s->cfg->cmd_timeout);
				enter_backoff(s, why);
				return 0;
			}
			next = MIN(next, c->deadline_ms);
		}
		break;
	case S_STOPPED:
		break;
	}

	if (s->state != S_STOPPED) {
		next = MIN(next, check_outage(s, now));
		pthread_mutex_lock(&s->qlock);
		bool expired = s->expired;
		pthread_mutex_unlock(&s->qlock);
		if (expired)
			fail_all_pending(s, -ETIMEDOUT);
	}
	return next > now ? (int)(next - now) : 0;
}

static void logout_cb(struct transport_conn *ctx, int status, void *priv)
{
	(void)ctx;
	(void)status;
	*(bool *)priv = true;
}

static void *session_thread(void *arg)
{
	struct session *s = arg;
	bool done = false; /* logout: here, as the callback may run in drop_context below */
	bool stopping = false;

	start_connect(s);
	while (!stopping) {
		int timeout = run_timers(s);
		if (s->state == S_STOPPED && !s->initial) {
			/* the first login failed: wait for session_destroy */
			pthread_mutex_lock(&s->qlock);
			stopping = s->stopping;
			pthread_mutex_unlock(&s->qlock);
			if (stopping)
				break;
		}
		if (s->state == S_LOGGED_IN) {
			issue_pending(s);
			maybe_probe(s);
		}
		struct pollfd pfd[2] = { { .fd = s->efd, .events = POLLIN } };
		int n = 1;
		if (s->ctx && (s->state == S_CONNECTING || s->state == S_VERIFYING ||
			       s->state == S_LOGGED_IN)) {
			pfd[1].fd = s->tr->get_fd(s->ctx);
			pfd[1].events = (short)(s->tr->which_events(s->ctx) | POLLRDHUP);
			if (pfd[1].fd >= 0)
				n = 2;
		}
		if (s->lost)
			timeout = 0;
		int r = poll(pfd, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR) {
			log_err("%s: poll: %m", s->name);
			usleep(100000);
			continue;
		}
		if (pfd[0].revents & POLLIN)
			stopping = take_submitted(s);
		if (n == 2 && pfd[1].revents) {
			short rev = pfd[1].revents;
			if (s->tr->service(s->ctx, rev & ~POLLRDHUP) < 0 && !s->lost) {
				s->lost = true;
				snprintf(s->lost_why, sizeof(s->lost_why), "%s", s->tr->get_error(s->ctx));
			}
			if ((rev & (POLLHUP | POLLERR | POLLRDHUP)) && !s->lost) {
				s->lost = true;
				snprintf(s->lost_why, sizeof(s->lost_why), "connection closed by target");
			}
		}
		if (s->lost) {
			s->lost = false;
			if (s->initial && s->state != S_STOPPED) {
				initial_failed(s, s->lost_why);
			} else if (s->state != S_STOPPED) {
				enter_backoff(s, s->lost_why);
			}
		}
		if (stopping) {
			/* destroy: everything was flushed above us; drop what is left */
			break;
		}
		pthread_mutex_lock(&s->qlock);
		bool expired = s->expired;
		pthread_mutex_unlock(&s->qlock);
		if (expired)
			fail_all_pending(s, -ETIMEDOUT);
	}
	/* Stopping. Commands submitted from now on fail at once (session_submit sees
	 * `stopping`); what is still here completes with -ESHUTDOWN below. */
	take_submitted(s);
	if (s->ctx && s->state == S_LOGGED_IN && !s->infl_head &&
	    s->tr->logout_async(s->ctx, logout_cb, &done) == 0) {
		/* polite logout, bounded: service calls are bounded too (transport.h) */
		uint64_t dl = util_now_ms() + SESSION_LOGOUT_MS;
		for (uint64_t now; !done && (now = util_now_ms()) < dl;) {
			struct pollfd p = { .fd = s->tr->get_fd(s->ctx),
					    .events = (short)s->tr->which_events(s->ctx) };
			if (poll(&p, 1, (int)MIN(dl - now, 100)) > 0 &&
			    s->tr->service(s->ctx, p.revents) < 0)
				break;
		}
	}
	drop_context(s, true);
	fail_all_pending(s, -ESHUTDOWN);
	set_state(s, S_STOPPED);
	return NULL;
}

/* ---------- public API ---------- */

void session_submit(struct session *s, struct session_cmd *c)
{
	c->next = c->prev = NULL;
	c->owner = s;
	c->attempts = 0;
	c->internal = false;
	uint64_t now = util_now_ms();
	uint64_t budget = (uint64_t)s->cfg->replacement_timeout * 1000;
	pthread_mutex_lock(&s->qlock);
	if (!c->expire_ms) {
		c->expire_ms = now + budget;
		if (s->info.down_since_ms)
			c->expire_ms = MIN(c->expire_ms, s->info.down_since_ms + budget);
	}
	if (s->stopping || s->expired || now >= c->expire_ms) {
		int err = s->stopping ? -ESHUTDOWN : -ETIMEDOUT;
		pthread_mutex_unlock(&s->qlock);
		complete(c, err);
		return;
	}
	/* Wake the thread only for the first command of a batch: it drains the whole
	 * queue after reading the eventfd, so later ones are seen without a wake-up. */
	bool wake = s->qhead == NULL;
	if (s->qtail)
		s->qtail->next = c;
	else
		s->qhead = c;
	s->qtail = c;
	pthread_mutex_unlock(&s->qlock);
	if (wake) {
		uint64_t one = 1;
		ssize_t r = write(s->efd, &one, sizeof(one));
		(void)r;
	}
}

struct run_wait {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
};

static void run_done(struct session_cmd *c)
{
	struct run_wait *w = c->opaque;
	pthread_mutex_lock(&w->m);
	w->done = true;
	pthread_cond_signal(&w->c);
	pthread_mutex_unlock(&w->m);
}

int session_run(struct session *s, struct session_cmd *c)
{
	struct run_wait w = { .done = false };
	pthread_mutex_init(&w.m, NULL);
	pthread_cond_init(&w.c, NULL);
	c->done = run_done;
	c->opaque = &w;
	session_submit(s, c);
	pthread_mutex_lock(&w.m);
	while (!w.done)
		pthread_cond_wait(&w.c, &w.m);
	pthread_mutex_unlock(&w.m);
	pthread_mutex_destroy(&w.m);
	pthread_cond_destroy(&w.c);
	return c->result;
}

void session_set_identity(struct session *s, uint64_t lun, uint8_t page, const uint8_t *data,
			  size_t len)
{
	struct ident *id = calloc(1, sizeof(*id));
	if (!id)
		return;
	id->data = malloc(len);
	if (!id->data) {
		free(id);
		return;
	}
	memcpy(id->data, data, len);
	id->len = len;
	id->lun = lun;
	id->page = page;
	id->owner = s;
	pthread_mutex_lock(&s->qlock);
	id->next = s->idents;
	s->idents = id;
	pthread_mutex_unlock(&s->qlock);
}

void session_clear_identity(struct session *s, uint64_t lun)
{
	pthread_mutex_lock(&s->qlock);
	for (struct ident *id = s->idents; id; id = id->next)
		if (id->lun == lun)
			id->removed = true;
	pthread_mutex_unlock(&s->qlock);
}

void session_set_relogin_handler(struct session *s, void (*fn)(void *opaque, struct session *s),
				 void *opaque)
{
	pthread_mutex_lock(&s->qlock);
	s->relogin_fn = fn;
	s->relogin_opaque = opaque;
	pthread_mutex_unlock(&s->qlock);
}

bool session_can_address(struct session *s, uint64_t lun)
{
	return s->tr->can_address(lun);
}

void session_get_info(struct session *s, struct session_info *out)
{
	pthread_mutex_lock(&s->qlock);
	*out = s->info;
	pthread_mutex_unlock(&s->qlock);
}

int session_create(const struct session_params *p, struct session **out, char *err,
		   size_t errlen)
{
	return session_create_with(p, &transport_libiscsi, NULL, out, err, errlen);
}

int session_create_with(const struct session_params *p, const struct session_transport *tr,
			void *tr_opaque, struct session **out, char *err, size_t errlen)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(s->portal, sizeof(s->portal), "%s", p->portal);
	snprintf(s->target, sizeof(s->target), "%s", p->target);
	if (p->cfg->sessions > 1)
		snprintf(s->name, sizeof(s->name), "%s@%s#%d", p->target, p->portal, p->index);
	else
		snprintf(s->name, sizeof(s->name), "%s@%s", p->target, p->portal);
	s->cfg = p->cfg;
	s->tr = tr;
	s->tr_opaque = tr_opaque;
	s->initial_backoff_ms = p->initial_backoff_ms > 0 ? (uint64_t)p->initial_backoff_ms : 1000;
	s->initial = true;
	s->init_result = 1;
	s->info.state = state_names[S_CONNECTING];
	pthread_mutex_init(&s->qlock, NULL);
	pthread_cond_init(&s->qcond, NULL);
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		free(s);
		return -errno;
	}
	int r = pthread_create(&s->thread, NULL, session_thread, s);
	if (r) {
		snprintf(err, errlen, "cannot start session thread: %s", strerror(r));
		close(s->efd);
		free(s);
		return -r;
	}
	pthread_mutex_lock(&s->qlock);
	while (s->init_result == 1)
		pthread_cond_wait(&s->qcond, &s->qlock);
	r = s->init_result;
	pthread_mutex_unlock(&s->qlock);
	if (r < 0) {
		snprintf(err, errlen, "%s", s->init_err);
		session_destroy(s);
		return r;
	}
	log_debug("%s: logged in", s->name);
	*out = s;
	return 0;
}

void session_destroy(struct session *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->qlock);
	s->stopping = true;
	struct session_cmd *c = s->qhead;
	s->qhead = s->qtail = NULL;
	pthread_mutex_unlock(&s->qlock);
	uint64_t one = 1;
	ssize_t w = write(s->efd, &one, sizeof(one));
	(void)w;
	pthread_join(s->thread, NULL);
	while (c) {
		struct session_cmd *n = c->next;
		complete(c, -ESHUTDOWN);
		c = n;
	}
	for (struct ident *id = s->idents, *n; id; id = n) {
		n = id->next;
		free(id->data);
		free(id);
	}
	free(s->verify_cmds);
	free(s->verify_buf);
	close(s->efd);
	pthread_mutex_destroy(&s->qlock);
	pthread_cond_destroy(&s->qcond);
	free(s);
}

