/*
 * test_session.c - proves the session state machine (src/session.c) over a fake
 * transport: login and its refusal, reconnect with backoff and in-order re-issue,
 * identity verification (changed identity fails only that LUN; BUSY / UNIT ATTENTION
 * on the check is retried), the replacement timeout, NOP-Out and command timeouts,
 * shutdown with commands queued; the time budget (expire_ms: a target that answers NOPs
 * but not READs, one that logs in and says nothing), protocol errors, data_in and
 * sense_valid, a flooding transport, and a bounded shutdown.
 *
 * The fake (struct model + fake_transport) is a scripted target held in this file: two
 * LUNs of in-memory disk, INQUIRY VPD 0x80/0x83, READ(10)/WRITE(10)/TEST UNIT READY, and
 * knobs to refuse connects, refuse logins, drop the connection, stop answering, change
 * the identity pages and answer BUSY / UNIT ATTENTION, leave some commands (or all) or
 * the logout unanswered, answer wrongly (protocol_error), short (data_in) or with
 * unusable sense, and flood (the descriptor never stops being readable, each service
 * call costs time). Its descriptor is one end of a
 * socketpair: a byte written to the other end makes it readable when a request waits,
 * and closing the other end makes the session's poll see a hang-up, as with TCP.
 *
 * A plain program: every check prints what it expected and what it got on failure;
 * the exit status is 1 if any check failed.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iscsifs/config.h"
#include "iscsifs/log.h"
#include "iscsifs/session.h"
#include "iscsifs/transport.h"
#include "iscsifs/util.h"

#include "check.h"

/* Wait up to `ms` for `cond` (polled every 5 ms); false on timeout. */
#define WAIT_FOR(cond, ms)                                                              \
	({                                                                              \
		uint64_t dl_ = util_now_ms() + (ms);                                     \
		bool ok_;                                                               \
		while (!(ok_ = (cond)) && util_now_ms() < dl_)                           \
			usleep(5000);                                                   \
		ok_;                                                                    \
	})

/* ---------- the scripted target ---------- */

#define NLUNS 2
#define BS 512
#define BLOCKS 64
#define MAX_LOG 1024

enum op_kind { OP_CONNECT, OP_LOGIN, OP_CMD, OP_NOP, OP_LOGOUT };

struct op {
	enum op_kind kind;
	transport_cb cb;
	transport_cmd_cb ccb;
	void *priv;
	int lun;
	uint8_t cdb[16];
	enum transport_dir dir;
	void *buf;
	uint32_t len;
	struct op *next;
};

struct model;

struct transport_conn {
	struct model *m;
	int id;                /* 1, 2, ...: one per create */
	int fd, peer;          /* socketpair; peer -1 once dropped */
	bool hung, dropped;    /* protected by m->lock */
	struct op *head, *tail;   /* protected by m->lock */
	struct op *parked;        /* received, never to be answered; protected by m->lock */
	char err[256];
};

struct logged {
	int conn, lun;
	uint8_t op;
	uint32_t lba;
};

struct model {
	pthread_mutex_t lock;   /* everything below */
	/* knobs, set by the test */
	int fail_connects;      /* refuse the next N connects */
	bool down;              /* refuse every connect */
	const char *login_error;   /* refuse logins with this (libiscsi's) text */
	int busy_inquiry;       /* answer the next N INQUIRYs with BUSY ... */
	int ua_inquiry;         /* ... then N with UNIT ATTENTION */
	int ua_next;            /* answer the next N other commands with UNIT ATTENTION */
	int ignore_op;          /* never answer commands with this opcode (-1: none) */
	bool silent;            /* answer no SCSI command at all (NOPs, login: yes) */
	int proto_error_next;   /* the next N commands: answered wrongly (protocol_error) */
	bool short_read;        /* READs: GOOD, but 512 bytes less Data-In, no residual */
	int bad_sense_next;     /* the next N commands: CHECK CONDITION, unusable sense */
	bool flood;             /* the socket never stops being readable; each service
	                           call costs FLOOD_MS (a bounded transport service) */
	bool hang_logout;       /* never answer a logout */
	uint8_t vpd80[NLUNS][16], vpd83[NLUNS][16];   /* identity pages (16 bytes each) */
	uint8_t disk[NLUNS][BLOCKS * BS];
	/* what happened */
	struct transport_conn *conn;   /* the newest connection, NULL once destroyed */
	int conns, live;        /* connections created / not yet destroyed */
	int connects;           /* connect attempts */
	uint64_t connect_ms[64];
	int nops;
	int services;           /* service calls */
	struct logged log[MAX_LOG];
	int nlog;
};

static struct model M;

static void model_reset(void)
{
	pthread_mutex_lock(&M.lock);
	CHECK_EQ("fake connections left open by the previous test", 0, M.live);
	M.fail_connects = 0;
	M.down = false;
	M.login_error = NULL;
	M.busy_inquiry = M.ua_inquiry = M.ua_next = 0;
	M.ignore_op = -1;
	M.silent = M.short_read = M.flood = M.hang_logout = false;
	M.proto_error_next = M.bad_sense_next = 0;
	M.services = 0;
	memset(M.disk, 0, sizeof(M.disk));
	for (int l = 0; l < NLUNS; l++) {
		uint8_t *p = M.vpd80[l];
		memset(p, 0, 16);
		p[1] = 0x80;
		p[3] = 12;
		snprintf((char *)p + 4, 12, "SERIAL%05d", l);
		p = M.vpd83[l];
		memset(p, 0, 16);
		p[1] = 0x83;
		p[3] = 12;
		p[4] = 0x01;   /* binary */
		p[5] = 0x03;   /* NAA */
		p[7] = 8;
		p[8] = 0x60;
		p[15] = (uint8_t)(0x10 + l);
	}
	M.conn = NULL;
	M.conns = M.connects = M.nops = M.nlog = 0;
	pthread_mutex_unlock(&M.lock);
}

static int model_get(const int *field)
{
	pthread_mutex_lock(&M.lock);
	int v = *field;
	pthread_mutex_unlock(&M.lock);
	return v;
}

/* The current connection stops answering anything (a hung target, TCP still up). */
static void model_hang(void)
{
	pthread_mutex_lock(&M.lock);
	if (M.conn)
		M.conn->hung = true;
	pthread_mutex_unlock(&M.lock);
}

/* The current connection is closed by the target. */
static void model_drop(void)
{
	pthread_mutex_lock(&M.lock);
	if (M.conn && M.conn->peer >= 0) {
		close(M.conn->peer);
		M.conn->peer = -1;
		M.conn->dropped = true;
	}
	pthread_mutex_unlock(&M.lock);
}

/* Commands with opcode `op` for `lun` (-1: any) the target received on connection `conn` (0: any). */
static int model_count(int conn, int lun, uint8_t op)
{
	int n = 0;
	pthread_mutex_lock(&M.lock);
	for (int i = 0; i < M.nlog; i++)
		n += (!conn || M.log[i].conn == conn) && (lun < 0 || M.log[i].lun == lun) &&
		     M.log[i].op == op;
	pthread_mutex_unlock(&M.lock);
	return n;
}

static void set_sense(struct transport_result *r, int key, int asc, int ascq)
{
	r->status = TRANSPORT_STATUS_CHECK_CONDITION;
	r->sense_valid = true;
	r->sense_key = key;
	r->asc = asc;
	r->ascq = ascq;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Execute one command against the model. Called with M.lock held. */
static void execute(struct op *o, struct transport_result *r)
{
	uint8_t opc = o->cdb[0];
	uint32_t lba = (opc == 0x28 || opc == 0x2a) ? be32(o->cdb + 2) : 0;
	memset(r, 0, sizeof(*r));
	if (o->lun < 0 || o->lun >= NLUNS) {
		set_sense(r, 5, 0x25, 0);   /* LOGICAL UNIT NOT SUPPORTED */
		return;
	}
	if (opc == 0x12) {
		if (M.busy_inquiry > 0) {
			M.busy_inquiry--;
			r->status = 8;   /* BUSY */
			return;
		}
		if (M.ua_inquiry > 0) {
			M.ua_inquiry--;
			set_sense(r, 6, 0x29, 0);   /* POWER ON OR RESET OCCURRED */
			return;
		}
		const uint8_t *page = !(o->cdb[1] & 1) ? M.vpd80[o->lun]   /* any 16 bytes */
				      : o->cdb[2] == 0x80 ? M.vpd80[o->lun]
				      : o->cdb[2] == 0x83 ? M.vpd83[o->lun]
							  : NULL;
		if (!page) {
			set_sense(r, 5, 0x24, 0);
			return;
		}
		uint32_t n = MIN(o->len, 16u);
		memcpy(o->buf, page, n);
		r->residual = o->len - n;
		r->data_in = n;
		return;
	}
	if (M.ua_next > 0) {
		M.ua_next--;
		set_sense(r, 6, 0x29, 0);
		return;
	}
	if (M.proto_error_next > 0) {
		M.proto_error_next--;
		r->status = TRANSPORT_STATUS_ERROR;
		r->protocol_error = true;
		r->reason = "the target sent Data-In out of place (DataSN 1 at offset 0)";
		return;
	}
	if (M.bad_sense_next > 0) {
		M.bad_sense_next--;
		r->status = TRANSPORT_STATUS_CHECK_CONDITION;   /* sense_valid stays false */
		return;
	}
	switch (opc) {
	case 0x00:   /* TEST UNIT READY */
		return;
	case 0x28:   /* READ(10) */
	case 0x2a: { /* WRITE(10) */
		uint32_t nb = (uint32_t)o->cdb[7] << 8 | o->cdb[8];
		if (lba + nb > BLOCKS || nb * BS != o->len) {
			set_sense(r, 5, 0x21, 0);
			return;
		}
		if (opc == 0x28) {
			memcpy(o->buf, M.disk[o->lun] + (size_t)lba * BS, o->len);
			r->data_in = M.short_read ? o->len - MIN(o->len, 512u) : o->len;
		} else
			memcpy(M.disk[o->lun] + (size_t)lba * BS, o->buf, o->len);
		return;
	}
	default:
		set_sense(r, 5, 0x20, 0);   /* INVALID COMMAND OPERATION CODE */
	}
}

static void fire(struct transport_conn *conn, struct op *o, int status,
		 const struct transport_result *r)
{
	if (o->kind == OP_CMD) {
		struct transport_result c = { .status = status };
		o->ccb(conn, r ? r : &c, o->priv);
	} else {
		o->cb(conn, status, o->priv);
	}
	free(o);
}

static void cancel_all(struct transport_conn *conn)
{
	for (;;) {
		pthread_mutex_lock(&M.lock);
		struct op *o = conn->head;
		if (o) {
			conn->head = o->next;
			if (!conn->head)
				conn->tail = NULL;
		} else if ((o = conn->parked)) {
			conn->parked = o->next;
		}
		pthread_mutex_unlock(&M.lock);
		if (!o)
			return;
		fire(conn, o, TRANSPORT_STATUS_CANCELLED, NULL);
	}
}

static int enqueue(struct transport_conn *conn, struct op *o)
{
	pthread_mutex_lock(&M.lock);
	o->next = NULL;
	if (conn->tail)
		conn->tail->next = o;
	else
		conn->head = o;
	conn->tail = o;
	if (o->kind == OP_CONNECT && M.connects < 64)
		M.connect_ms[M.connects++] = util_now_ms();
	if (o->kind == OP_CMD && M.nlog < MAX_LOG)   /* received, answered or not */
		M.log[M.nlog++] = (struct logged){ conn->id, o->lun, o->cdb[0],
						   o->cdb[0] == 0x28 || o->cdb[0] == 0x2a ?
							   be32(o->cdb + 2) : 0 };
	if (conn->peer >= 0) {
		ssize_t w = write(conn->peer, "x", 1);
		(void)w;
	}
	pthread_mutex_unlock(&M.lock);
	return 0;
}

static struct op *new_op(enum op_kind kind, transport_cb cb, void *priv)
{
	struct op *o = calloc(1, sizeof(*o));
	if (!o)
		abort();
	o->kind = kind;
	o->cb = cb;
	o->priv = priv;
	return o;
}

static struct transport_conn *fake_create(void *opaque, const struct config *cfg,
					  const char *target, enum transport_session_type type)
{
	(void)cfg;
	(void)target;
	struct transport_conn *conn = calloc(1, sizeof(*conn));
	int sv[2];
	if (!conn || opaque != &M || type != TRANSPORT_SESSION_NORMAL ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	conn->m = &M;
	conn->fd = sv[0];
	conn->peer = sv[1];
	pthread_mutex_lock(&M.lock);
	conn->id = ++M.conns;
	M.live++;
	M.conn = conn;
	pthread_mutex_unlock(&M.lock);
	return conn;
}

static int fake_connect_async(struct transport_conn *conn, const char *portal, transport_cb cb,
			      void *priv)
{
	(void)portal;
	return enqueue(conn, new_op(OP_CONNECT, cb, priv));
}

static int fake_login_async(struct transport_conn *conn, transport_cb cb, void *priv)
{
	return enqueue(conn, new_op(OP_LOGIN, cb, priv));
}

#define FLOOD_MS 2

static int fake_service(struct transport_conn *conn, int revents)
{
	(void)revents;
	char junk[256];
	while (read(conn->fd, junk, sizeof(junk)) > 0)
		;
	pthread_mutex_lock(&M.lock);
	M.services++;
	if (M.flood && conn->peer >= 0) {
		/* more is always waiting: the session must come back to its timers */
		ssize_t w = write(conn->peer, "f", 1);
		(void)w;
		pthread_mutex_unlock(&M.lock);
		usleep(FLOOD_MS * 1000);
	} else {
		pthread_mutex_unlock(&M.lock);
	}
	for (;;) {
		pthread_mutex_lock(&M.lock);
		if (conn->dropped) {
			pthread_mutex_unlock(&M.lock);
			cancel_all(conn);
			snprintf(conn->err, sizeof(conn->err), "iscsi_service: POLLHUP, socket error.");
			return -1;
		}
		struct op *o = conn->head;
		if (!o || conn->hung) {
			pthread_mutex_unlock(&M.lock);
			return 0;
		}
		conn->head = o->next;
		if (!conn->head)
			conn->tail = NULL;
		if ((o->kind == OP_CMD && (M.silent || o->cdb[0] == M.ignore_op)) ||
		    (o->kind == OP_LOGOUT && M.hang_logout)) {
			o->next = conn->parked;   /* received; no answer will ever come */
			conn->parked = o;
			pthread_mutex_unlock(&M.lock);
			continue;
		}
		int status = TRANSPORT_STATUS_GOOD;
		struct transport_result r = { 0 };
		switch (o->kind) {
		case OP_CONNECT:
			if (M.down || M.fail_connects > 0) {
				if (M.fail_connects > 0)
					M.fail_connects--;
				status = TRANSPORT_STATUS_ERROR;
				snprintf(conn->err, sizeof(conn->err),
					 "iscsi_service: socket error Connection refused(111).");
			}
			break;
		case OP_LOGIN:
			if (M.login_error) {
				status = TRANSPORT_STATUS_ERROR;
				snprintf(conn->err, sizeof(conn->err), "%s", M.login_error);
			}
			break;
		case OP_CMD:
			execute(o, &r);
			status = r.status;
			break;
		case OP_NOP:
			M.nops++;
			break;
		case OP_LOGOUT:
			break;
		}
		pthread_mutex_unlock(&M.lock);
		fire(conn, o, status, &r);
	}
}

static int fake_get_fd(struct transport_conn *conn)
{
	return conn->fd;
}

static int fake_which_events(struct transport_conn *conn)
{
	(void)conn;
	return POLLIN;
}

static bool fake_can_address(uint64_t lun)
{
	(void)lun;
	return true;
}

static int fake_command_async(struct transport_conn *conn, uint64_t lun, const uint8_t *cdb,
			      int cdb_len, enum transport_dir dir, void *buf, uint32_t len,
			      transport_cmd_cb cb, void *priv)
{
	struct op *o = new_op(OP_CMD, NULL, priv);
	o->ccb = cb;
	o->lun = lun;
	memcpy(o->cdb, cdb, (size_t)MIN(cdb_len, 16));
	o->dir = dir;
	o->buf = buf;
	o->len = len;
	return enqueue(conn, o);
}

static int fake_nop_out_async(struct transport_conn *conn, transport_cb cb, void *priv)
{
	return enqueue(conn, new_op(OP_NOP, cb, priv));
}

static int fake_logout_async(struct transport_conn *conn, transport_cb cb, void *priv)
{
	return enqueue(conn, new_op(OP_LOGOUT, cb, priv));
}

static const char *fake_get_error(struct transport_conn *conn)
{
	return conn->err;
}

static void fake_destroy(struct transport_conn *conn)
{
	pthread_mutex_lock(&M.lock);
	if (M.conn == conn)
		M.conn = NULL;
	if (conn->peer >= 0)
		close(conn->peer);
	M.live--;
	pthread_mutex_unlock(&M.lock);
	cancel_all(conn);
	close(conn->fd);
	free(conn);
}

static const struct session_transport fake_transport = {
	.create = fake_create,
	.connect_async = fake_connect_async,
	.login_async = fake_login_async,
	.service = fake_service,
	.get_fd = fake_get_fd,
	.which_events = fake_which_events,
	.command_async = fake_command_async,
	.can_address = fake_can_address,
	.nop_out_async = fake_nop_out_async,
	.logout_async = fake_logout_async,
	.get_error = fake_get_error,
	.destroy = fake_destroy,
};

/* ---------- helpers ---------- */

static struct config cfg;

/* Keepalive off, 30 s command timeout, 60 s replacement timeout: tests change them. */
static void config_for_test(void)
{
	config_init(&cfg);
	snprintf(cfg.initiator, sizeof(cfg.initiator), "iqn.2026-01.org.iscsifs:unit");
	cfg.noop_interval = 0;
	cfg.noop_timeout = 1;
	cfg.cmd_timeout = 30;
	cfg.login_timeout = 2;
	cfg.replacement_timeout = 60;
}

static int open_session(struct session **s, int backoff_ms, char *err, size_t errlen)
{
	struct session_params p = { .cfg = &cfg, .portal = "fake:3260",
				    .target = "iqn.2026-01.org.example:fake",
				    .initial_backoff_ms = backoff_ms };
	return session_create_with(&p, &fake_transport, &M, s, err, errlen);
}

static void open_ok(struct session **s, int backoff_ms)
{
	char err[CONFIG_ERRLEN] = "";
	int r = open_session(s, backoff_ms, err, sizeof(err));
	CHECK_EQ("session_create over the fake", 0, r);
	if (r) {
		fprintf(stderr, "  err: %s\n", err);
		exit(1);
	}
}

static void register_identity(struct session *s)
{
	pthread_mutex_lock(&M.lock);
	uint8_t p83[16], p80[16];
	memcpy(p83, M.vpd83[0], 16);
	memcpy(p80, M.vpd80[1], 16);
	pthread_mutex_unlock(&M.lock);
	session_set_identity(s, 0, 0x83, p83, 16);
	session_set_identity(s, 1, 0x80, p80, 16);
}

/* A test command and its completions. */
struct tcmd {
	struct session_cmd c;
	uint8_t buf[BS];
	int done;             /* completions; protected by done_lock */
	uint64_t done_ms;
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static int done_order[64], ndone;

static void tcmd_done(struct session_cmd *c)
{
	struct tcmd *t = (struct tcmd *)c;
	pthread_mutex_lock(&done_lock);
	t->done++;
	t->done_ms = util_now_ms();
	if (ndone < 64)
		done_order[ndone++] = (int)(intptr_t)c->opaque;
	pthread_mutex_unlock(&done_lock);
}

static int tcmd_count(struct tcmd *t)
{
	pthread_mutex_lock(&done_lock);
	int n = t->done;
	pthread_mutex_unlock(&done_lock);
	return n;
}

static void rw10(struct tcmd *t, int lun, bool write, uint32_t lba, int tag)
{
	memset(&t->c, 0, sizeof(t->c));
	t->c.lun = lun;
	t->c.cdb[0] = write ? 0x2a : 0x28;
	t->c.cdb[2] = (uint8_t)(lba >> 24);
	t->c.cdb[3] = (uint8_t)(lba >> 16);
	t->c.cdb[4] = (uint8_t)(lba >> 8);
	t->c.cdb[5] = (uint8_t)lba;
	t->c.cdb[8] = 1;
	t->c.cdb_len = 10;
	t->c.dir = write ? SESSION_DIR_WRITE : SESSION_DIR_READ;
	t->c.buf = t->buf;
	t->c.len = BS;
	t->c.done = tcmd_done;
	t->c.opaque = (void *)(intptr_t)tag;
	if (write)
		memset(t->buf, 0xa0 + tag, BS);
	else
		memset(t->buf, 0xee, BS);
	t->done = 0;
}

static int run_rw(struct session *s, int lun, bool write, uint32_t lba, uint8_t fill,
		  uint8_t *out)
{
	struct tcmd t;
	rw10(&t, lun, write, lba, 0);
	if (write)
		memset(t.buf, fill, BS);
	int r = session_run(s, &t.c);
	if (r == 0 && t.c.scsi_status != 0) {
		fprintf(stderr, "  (SCSI status 0x%x, sense %x/%02x/%02x)\n", t.c.scsi_status,
			t.c.sense_key, t.c.asc, t.c.ascq);
		r = 1000 + t.c.scsi_status;
	}
	if (out)
		memcpy(out, t.buf, BS);
	return r;
}

static void reset_done(void)
{
	pthread_mutex_lock(&done_lock);
	ndone = 0;
	pthread_mutex_unlock(&done_lock);
}

static struct session_info info_of(struct session *s)
{
	struct session_info i;
	session_get_info(s, &i);
	return i;
}

static bool logged_in(struct session *s)
{
	return strcmp(info_of(s).state, "logged-in") == 0;
}

/* ---------- tests ---------- */

static void test_login_and_commands(void)
{
	printf("login: the first login succeeds; WRITE/READ round-trip per LUN; the sense "
	       "and residual reach the submitter\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 0);
	CHECK("state after session_create", logged_in(s));

	uint8_t got[BS];
	CHECK_EQ("WRITE(10) LUN 0", 0, run_rw(s, 0, true, 3, 0x5a, NULL));
	CHECK_EQ("READ(10) LUN 0", 0, run_rw(s, 0, false, 3, 0, got));
	CHECK_EQ("data read back, first byte", 0x5a, got[0]);
	CHECK_EQ("data read back, last byte", 0x5a, got[BS - 1]);
	CHECK_EQ("READ(10) LUN 1 (another disk)", 0, run_rw(s, 1, false, 3, 0, got));
	CHECK_EQ("LUN 1 data", 0, got[0]);

	pthread_mutex_lock(&M.lock);
	M.ua_next = 1;
	pthread_mutex_unlock(&M.lock);
	struct session_cmd tur = { .lun = 0, .cdb_len = 6 };
	CHECK_EQ("TEST UNIT READY under UNIT ATTENTION: result", 0, session_run(s, &tur));
	CHECK_EQ("status", 2, tur.scsi_status);
	CHECK_EQ("sense key", 6, tur.sense_key);
	CHECK_EQ("asc", 0x29, tur.asc);
	CHECK_EQ("ascq", 0, tur.ascq);

	uint8_t vpd[255];
	struct session_cmd inq = { .lun = 1, .cdb = { 0x12, 1, 0x80, 0, 255 }, .cdb_len = 6,
				   .dir = SESSION_DIR_READ, .buf = vpd, .len = 255 };
	CHECK_EQ("INQUIRY VPD 0x80", 0, session_run(s, &inq));
	CHECK_EQ("INQUIRY status", 0, inq.scsi_status);
	CHECK_EQ("INQUIRY residual (255 asked, 16 sent)", 255 - 16, inq.residual);
	CHECK("INQUIRY data", memcmp(vpd + 4, "SERIAL00001", 11) == 0);
	CHECK_EQ("reconnects", 0, info_of(s).reconnects);
	session_destroy(s);
	CHECK_EQ("fake connections open after destroy", 0, model_get(&M.live));
}

static void expect_refused(const char *what, int fail_connects, const char *login_error,
			   int want, const char *want_text)
{
	model_reset();
	pthread_mutex_lock(&M.lock);
	M.fail_connects = fail_connects;
	M.login_error = login_error;
	pthread_mutex_unlock(&M.lock);
	struct session *s = NULL;
	char err[CONFIG_ERRLEN] = "";
	int r = open_session(&s, 0, err, sizeof(err));
	CHECK_EQ(what, want, r);
	if (!strstr(err, want_text)) {
		fprintf(stderr, "FAIL %s: message: expected to contain \"%s\", got \"%s\"\n", what,
			want_text, err);
		failures++;
	}
	CHECK_EQ("fake connections open after the refused session_create", 0,
		 model_get(&M.live));
	CHECK_EQ("connect attempts (the first login is not retried)", 1, model_get(&M.connects));
}

static void test_login_refused(void)
{
	printf("login refused: session_create fails at once with the mapped -errno and a "
	       "message, and retries nothing\n");
	config_for_test();
	expect_refused("connection refused", 1, NULL, -ECONNREFUSED, "connection refused");
	expect_refused("CHAP refused", 0,
		       "Failed to log in to target. Status: Authentication failure(513)", -EACCES,
		       "authentication failed for iqn.2026-01.org.example:fake");
	expect_refused("unknown target", 0,
		       "Failed to log in to target. Status: Target not found(515)", -ENOENT,
		       "not found");
}

static void test_reconnect_in_order(void)
{
	printf("reconnect: connection lost with 8 commands in flight; reconnect after 1 s, "
	       "then (connect refused) 2 s; identities checked; the 8 re-issued in order, "
	       "each completed once\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 0);   /* the default backoff: 1 s doubling */
	register_identity(s);
	reset_done();

	model_hang();
	static struct tcmd t[8];
	for (int i = 0; i < 8; i++) {
		rw10(&t[i], i % 2, true, (uint32_t)i, i);
		session_submit(s, &t[i].c);
	}
	CHECK("the target received all 8 before the drop",
	      WAIT_FOR(model_count(1, -1, 0x2a) == 8, 2000));
	pthread_mutex_lock(&M.lock);
	M.fail_connects = 1;
	pthread_mutex_unlock(&M.lock);
	uint64_t t0 = util_now_ms();
	model_drop();

	bool all = WAIT_FOR(({
		int n = 0;
		for (int i = 0; i < 8; i++)
			n += tcmd_count(&t[i]) > 0;
		n == 8;
	}), 8000);
	CHECK("all 8 completed after the reconnect", all);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ("completions of one command", 1, tcmd_count(&t[i]));
		CHECK_EQ("result", 0, t[i].c.result);
		CHECK_EQ("SCSI status", 0, t[i].c.scsi_status);
	}
	pthread_mutex_lock(&done_lock);
	for (int i = 0; i < ndone && i < 8; i++)
		CHECK_EQ("completion order", i, done_order[i]);
	pthread_mutex_unlock(&done_lock);

	pthread_mutex_lock(&M.lock);
	CHECK_EQ("connect attempts (first, refused, accepted)", 3, M.connects);
	if (M.connects >= 3) {
		long long d1 = (long long)(M.connect_ms[1] - t0);
		long long d2 = (long long)(M.connect_ms[2] - M.connect_ms[1]);
		printf("  backoff: %lld ms, then %lld ms\n", d1, d2);
		CHECK("first retry after 1 s", d1 >= 950 && d1 < 4000); /* upper bounds are loose: CI machines are shared */
		CHECK("second retry 2 s later", d2 >= 1950 && d2 < 5000 && d2 > d1);
	}
	/* connection 3: the identity checks, then the 8 writes in order, once each */
	int seen = 0, inq = 0;
	bool inq_first = true;
	for (int i = 0; i < M.nlog; i++) {
		if (M.log[i].conn == 2)
			CHECK("no command on the refused connection", false);
		if (M.log[i].conn != 3)
			continue;
		if (M.log[i].op == 0x12) {
			inq++;
			inq_first &= seen == 0;
		} else if (M.log[i].op == 0x2a) {
			CHECK_EQ("re-issued LBA in original order", seen, M.log[i].lba);
			CHECK_EQ("re-issued LUN", seen % 2, M.log[i].lun);
			seen++;
		}
	}
	CHECK_EQ("identity INQUIRYs after re-login", 2, inq);
	CHECK("identity checked before any re-issued command", inq_first);
	CHECK_EQ("writes re-issued on the new connection", 8, seen);
	for (int i = 0; i < 8; i++)
		CHECK_EQ("data on the disk", 0xa0 + i, M.disk[i % 2][(size_t)i * BS]);
	pthread_mutex_unlock(&M.lock);

	struct session_info in = info_of(s);
	CHECK_EQ("reconnects", 1, in.reconnects);
	CHECK("logged in again", logged_in(s));
	CHECK_EQ("down_since after recovery", 0, in.down_since_ms);
	session_destroy(s);
}

static void test_identity_changed(void)
{
	printf("identity: LUN 0's VPD 0x83 changes across a reconnect: its commands (in "
	       "flight and new) fail -ENODEV and never reach the target; LUN 1 works\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 100);
	register_identity(s);
	model_hang();
	struct tcmd a, b;
	rw10(&a, 0, true, 1, 1);
	rw10(&b, 1, true, 1, 2);
	session_submit(s, &a.c);
	session_submit(s, &b.c);
	CHECK("both received", WAIT_FOR(model_count(1, -1, 0x2a) == 2, 2000));
	pthread_mutex_lock(&M.lock);
	M.vpd83[0][15] ^= 0xff;   /* another disk behind LUN 0 */
	pthread_mutex_unlock(&M.lock);
	model_drop();
	CHECK("both completed", WAIT_FOR(tcmd_count(&a) && tcmd_count(&b), 5000));
	CHECK_EQ("LUN 0 in-flight command", -ENODEV, a.c.result);
	CHECK_EQ("LUN 1 in-flight command", 0, b.c.result);
	CHECK_EQ("new command to LUN 0", -ENODEV, run_rw(s, 0, true, 2, 0x11, NULL));
	CHECK_EQ("new command to LUN 1", 0, run_rw(s, 1, true, 2, 0x22, NULL));
	CHECK_EQ("writes to LUN 0 on the new connection", 0, model_count(2, 0, 0x2a));
	CHECK_EQ("writes to LUN 1 on the new connection", 2, model_count(2, 1, 0x2a));
	pthread_mutex_lock(&M.lock);
	CHECK_EQ("LUN 0's disk untouched after the change", 0, M.disk[0][2 * BS]);
	pthread_mutex_unlock(&M.lock);
	session_destroy(s);
}

static void test_identity_transient(void)
{
	printf("identity: BUSY then UNIT ATTENTION to the identity INQUIRY after a "
	       "reconnect are retried; no LUN is failed\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 100);
	register_identity(s);
	pthread_mutex_lock(&M.lock);
	M.busy_inquiry = 1;
	M.ua_inquiry = 1;
	pthread_mutex_unlock(&M.lock);
	model_drop();
	CHECK("reconnected",
	      WAIT_FOR(info_of(s).reconnects == 1 && logged_in(s), 5000));
	CHECK_EQ("identity INQUIRYs (2 LUNs + 2 retries)", 4, model_count(2, -1, 0x12));
	pthread_mutex_lock(&M.lock);
	CHECK_EQ("BUSY answers left", 0, M.busy_inquiry);
	CHECK_EQ("UNIT ATTENTION answers left", 0, M.ua_inquiry);
	pthread_mutex_unlock(&M.lock);
	CHECK_EQ("LUN 0 works", 0, run_rw(s, 0, true, 0, 1, NULL));
	CHECK_EQ("LUN 1 works", 0, run_rw(s, 1, true, 0, 1, NULL));
	session_destroy(s);
}

static int relogins;
static void on_relogin(void *opaque, struct session *s)
{
	(void)s;
	__atomic_add_fetch((int *)opaque, 1, __ATOMIC_RELAXED);
}

static void test_relogin_handler_and_new_disk(void)
{
	printf("issue 11: every re-login (not the first) is reported to the handler; a LUN "
	       "whose identity is cleared and registered anew (a new disk at its address, "
	       "seen by a rescan) works again and is checked against the new identity\n");
	model_reset();
	config_for_test();
	struct session *s;
	relogins = 0;
	open_ok(&s, 100);
	session_set_relogin_handler(s, on_relogin, &relogins);
	register_identity(s);
	CHECK_EQ("no report for the first login", 0, __atomic_load_n(&relogins, __ATOMIC_RELAXED));
	model_drop();
	CHECK("re-login reported", WAIT_FOR(__atomic_load_n(&relogins, __ATOMIC_RELAXED) == 1, 5000));
	/* another disk at LUN 0: failed by the check after the next re-login */
	pthread_mutex_lock(&M.lock);
	M.vpd83[0][15] ^= 0xff;
	uint8_t p83[16];
	memcpy(p83, M.vpd83[0], 16);
	pthread_mutex_unlock(&M.lock);
	model_drop();
	CHECK("second re-login reported", WAIT_FOR(__atomic_load_n(&relogins, __ATOMIC_RELAXED) == 2, 5000));
	CHECK_EQ("LUN 0 failed", -ENODEV, run_rw(s, 0, true, 2, 0x11, NULL));
	/* the rescan makes it a new file: the new identity replaces the old one */
	session_clear_identity(s, 0);
	session_set_identity(s, 0, 0x83, p83, 16);
	CHECK_EQ("the new disk at LUN 0 works", 0, run_rw(s, 0, true, 2, 0x12, NULL));
	model_drop();
	CHECK("third re-login", WAIT_FOR(__atomic_load_n(&relogins, __ATOMIC_RELAXED) == 3, 5000));
	CHECK_EQ("and is the same disk after it", 0, run_rw(s, 0, true, 3, 0x13, NULL));
	session_set_relogin_handler(s, NULL, NULL);
	model_drop();
	CHECK("a fourth re-login", WAIT_FOR(info_of(s).reconnects == 4 && logged_in(s), 5000));
	CHECK_EQ("not reported once the handler is removed", 3,
		 __atomic_load_n(&relogins, __ATOMIC_RELAXED));
	session_destroy(s);
}

static void test_replacement_timeout(void)
{
	printf("replacement timeout: target down past replacement_timeout (1 s): the "
	       "queued command and new ones fail -ETIMEDOUT; I/O works once the target is back\n");
	model_reset();
	config_for_test();
	cfg.replacement_timeout = 1;
	struct session *s;
	open_ok(&s, 100);
	pthread_mutex_lock(&M.lock);
	M.down = true;
	pthread_mutex_unlock(&M.lock);
	uint64_t t0 = util_now_ms();
	model_drop();
	CHECK("recovering", WAIT_FOR(!logged_in(s), 2000));
	struct tcmd a;
	rw10(&a, 0, true, 4, 4);
	session_submit(s, &a.c);
	usleep(300000);
	CHECK_EQ("still waiting before the replacement timeout", 0, tcmd_count(&a));
	CHECK("completed", WAIT_FOR(tcmd_count(&a) > 0, 3000));
	CHECK_EQ("queued command", -ETIMEDOUT, a.c.result);
	long long took = (long long)(a.done_ms - t0);
	printf("  queued command failed %lld ms after the drop\n", took);
	CHECK("failed after ~1 s", took >= 950 && took < 5000);
	uint64_t t1 = util_now_ms();
	CHECK_EQ("new command while down", -ETIMEDOUT, run_rw(s, 0, true, 4, 4, NULL));
	CHECK("new command failed at once", util_now_ms() - t1 < 200);
	CHECK_EQ("no write reached the target", 0, model_count(0, -1, 0x2a));

	pthread_mutex_lock(&M.lock);
	M.down = false;
	pthread_mutex_unlock(&M.lock);
	CHECK("back", WAIT_FOR(logged_in(s), 6000));
	CHECK_EQ("command after the target is back", 0, run_rw(s, 0, true, 4, 9, NULL));
	CHECK_EQ("reconnects", 1, info_of(s).reconnects);
	session_destroy(s);
}

static void test_nop_timeout(void)
{
	printf("keepalive: NOP-Outs are answered; when the target stops answering, the "
	       "NOP timeout (1 s) starts recovery\n");
	model_reset();
	config_for_test();
	cfg.noop_interval = 1;
	cfg.noop_timeout = 1;
	struct session *s;
	open_ok(&s, 100);
	CHECK("a NOP-Out was answered", WAIT_FOR(model_get(&M.nops) >= 1, 2500));
	CHECK_EQ("no NOP timeout while answered", 0, info_of(s).nop_timeouts);
	model_hang();
	CHECK("recovery started", WAIT_FOR(info_of(s).reconnects == 1, 5000));
	struct session_info in = info_of(s);
	CHECK_EQ("nop_timeouts", 1, in.nop_timeouts);
	CHECK_EQ("command timeouts", 0, in.timeouts);
	CHECK("logged in again", WAIT_FOR(logged_in(s), 3000));
	CHECK_EQ("command after recovery", 0, run_rw(s, 0, true, 0, 3, NULL));
	session_destroy(s);
}

static void test_command_timeout(void)
{
	printf("command timeout: a command unanswered for cmd_timeout (1 s) starts "
	       "recovery and is re-issued on the new connection\n");
	model_reset();
	config_for_test();
	cfg.cmd_timeout = 1;
	struct session *s;
	open_ok(&s, 100);
	model_hang();
	uint64_t t0 = util_now_ms();
	struct tcmd a;
	rw10(&a, 1, true, 7, 7);
	session_submit(s, &a.c);
	CHECK("completed", WAIT_FOR(tcmd_count(&a) > 0, 5000));
	CHECK_EQ("result", 0, a.c.result);
	CHECK_EQ("completions", 1, tcmd_count(&a));
	CHECK("not before the timeout", a.done_ms - t0 >= 1000);
	CHECK_EQ("sent on the hung connection", 1, model_count(1, 1, 0x2a));
	CHECK_EQ("re-issued on the new one", 1, model_count(2, 1, 0x2a));
	struct session_info in = info_of(s);
	CHECK_EQ("timeouts", 1, in.timeouts);
	CHECK_EQ("reconnects", 1, in.reconnects);
	pthread_mutex_lock(&M.lock);
	CHECK_EQ("data written", 0xa7, M.disk[1][7 * BS]);
	pthread_mutex_unlock(&M.lock);
	session_destroy(s);
}

static void test_destroy_queued(void)
{
	printf("shutdown: session_destroy with commands in flight and queued during "
	       "recovery completes each once with -ESHUTDOWN, promptly\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 100);
	model_hang();
	static struct tcmd t[4];
	for (int i = 0; i < 2; i++) {
		rw10(&t[i], 0, true, (uint32_t)i, i);
		session_submit(s, &t[i].c);
	}
	CHECK("in flight", WAIT_FOR(model_count(1, -1, 0x2a) == 2, 2000));
	pthread_mutex_lock(&M.lock);
	M.down = true;
	pthread_mutex_unlock(&M.lock);
	model_drop();
	CHECK("recovering", WAIT_FOR(!logged_in(s), 2000));
	for (int i = 2; i < 4; i++) {
		rw10(&t[i], 0, true, (uint32_t)i, i);
		session_submit(s, &t[i].c);
	}
	usleep(100000);
	for (int i = 0; i < 4; i++)
		CHECK_EQ("still waiting for the target", 0, tcmd_count(&t[i]));
	uint64_t t0 = util_now_ms();
	session_destroy(s);
	CHECK("destroy took under 1 s", util_now_ms() - t0 < 1000);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ("completions", 1, tcmd_count(&t[i]));
		CHECK_EQ("result", -ESHUTDOWN, t[i].c.result);
	}
	CHECK_EQ("fake connections open", 0, model_get(&M.live));
}

static void test_budget_nops_but_no_reads(void)
{
	printf("budget: a target that answers NOPs and INQUIRY but never READs fails the "
	       "READ with -ETIMEDOUT after replacement_timeout (3 s) + cmd_timeout (2 s) at "
	       "most, not after 6 x (cmd_timeout + backoff); WRITEs still work\n");
	model_reset();
	config_for_test();
	cfg.noop_interval = 1;
	cfg.noop_timeout = 1;
	cfg.cmd_timeout = 2;
	cfg.replacement_timeout = 3;
	struct session *s;
	open_ok(&s, 100);
	register_identity(s);
	pthread_mutex_lock(&M.lock);
	M.ignore_op = 0x28;
	pthread_mutex_unlock(&M.lock);
	struct tcmd t;
	rw10(&t, 0, false, 2, 0);
	uint64_t t0 = util_now_ms();
	session_submit(s, &t.c);
	CHECK("completed", WAIT_FOR(tcmd_count(&t) > 0, 16000));
	long long took = (long long)(t.done_ms - t0);
	printf("  the READ failed after %lld ms, %d READs sent\n", took, model_count(0, 0, 0x28));
	CHECK_EQ("result", -ETIMEDOUT, t.c.result);
	CHECK("not before replacement_timeout", took >= 2900);
	CHECK("within replacement_timeout + cmd_timeout (+1.5 s slack)", took <= 6500);
	CHECK("NOPs were answered meanwhile", model_get(&M.nops) >= 1);
	CHECK_EQ("completions", 1, tcmd_count(&t));
	pthread_mutex_lock(&M.lock);
	M.ignore_op = -1;
	pthread_mutex_unlock(&M.lock);
	CHECK("back to logged in", WAIT_FOR(logged_in(s), 5000));
	CHECK_EQ("a WRITE afterwards", 0, run_rw(s, 0, true, 2, 0x33, NULL));
	session_destroy(s);
}

static void test_outage_needs_an_answer(void)
{
	printf("outage: a target that logs in again but answers no command does not end "
	       "the outage: after replacement_timeout (2 s) new commands fail at once; the "
	       "first answer (the session's probe) ends it\n");
	model_reset();
	config_for_test();
	cfg.cmd_timeout = 1;
	cfg.replacement_timeout = 2;
	struct session *s;
	open_ok(&s, 100);
	pthread_mutex_lock(&M.lock);
	M.silent = true;
	pthread_mutex_unlock(&M.lock);
	uint64_t t0 = util_now_ms();
	model_drop();
	CHECK("logged in again, the outage still on",
	      WAIT_FOR(logged_in(s) && info_of(s).down_since_ms != 0 && model_get(&M.conns) >= 2,
		       3000));
	CHECK("the probe reached the target", WAIT_FOR(model_count(2, -1, 0x00) >= 1, 2000));
	while (util_now_ms() < t0 + 2300)
		usleep(10000);
	uint64_t t1 = util_now_ms();
	CHECK_EQ("a command past replacement_timeout", -ETIMEDOUT,
		 run_rw(s, 0, true, 1, 1, NULL));
	CHECK("failed at once", util_now_ms() - t1 < 300);
	CHECK("outage still on", info_of(s).down_since_ms != 0);
	pthread_mutex_lock(&M.lock);
	M.silent = false;
	pthread_mutex_unlock(&M.lock);
	CHECK("an answer ends the outage", WAIT_FOR(info_of(s).down_since_ms == 0, 8000));
	CHECK_EQ("commands work again", 0, run_rw(s, 0, true, 1, 2, NULL));
	session_destroy(s);
}

static void test_protocol_error(void)
{
	printf("protocol error: a command the target answered wrongly fails -EIO at once "
	       "and is not re-issued; the connection stays; the next command works\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 100);
	pthread_mutex_lock(&M.lock);
	M.proto_error_next = 1;
	pthread_mutex_unlock(&M.lock);
	uint64_t t0 = util_now_ms();
	CHECK_EQ("the READ", -EIO, run_rw(s, 0, false, 5, 0, NULL));
	CHECK("at once", util_now_ms() - t0 < 500);
	CHECK_EQ("READs sent (not re-issued)", 1, model_count(0, 0, 0x28));
	CHECK_EQ("reconnects", 0, info_of(s).reconnects);
	CHECK_EQ("the next READ", 0, run_rw(s, 0, false, 5, 0, NULL));
	session_destroy(s);
}

static void test_results_reach_the_submitter(void)
{
	printf("results: data_in (a READ with 512 bytes of Data-In missing) and "
	       "sense_valid (CHECK CONDITION with unusable sense) reach the submitter "
	       "as the transport proved them\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 100);
	struct tcmd t;
	rw10(&t, 0, false, 1, 0);
	CHECK_EQ("a full READ", 0, session_run(s, &t.c));
	CHECK_EQ("data_in", BS, t.c.data_in);
	pthread_mutex_lock(&M.lock);
	M.short_read = true;
	pthread_mutex_unlock(&M.lock);
	rw10(&t, 0, false, 1, 0);
	CHECK_EQ("a short READ: answered", 0, session_run(s, &t.c));
	CHECK_EQ("status GOOD", 0, t.c.scsi_status);
	CHECK_EQ("data_in", BS - 512, t.c.data_in);
	CHECK_EQ("no residual claimed", 0, t.c.residual);
	pthread_mutex_lock(&M.lock);
	M.short_read = false;
	M.bad_sense_next = 1;
	pthread_mutex_unlock(&M.lock);
	struct session_cmd tur = { .lun = 0, .cdb_len = 6 };
	CHECK_EQ("TEST UNIT READY, unusable sense: answered", 0, session_run(s, &tur));
	CHECK_EQ("status", 2, tur.scsi_status);
	CHECK("sense_valid", !tur.sense_valid);
	CHECK_EQ("sense key", 0, tur.sense_key);
	pthread_mutex_lock(&M.lock);
	M.ua_next = 1;
	pthread_mutex_unlock(&M.lock);
	struct session_cmd tur2 = { .lun = 0, .cdb_len = 6 };
	CHECK_EQ("TEST UNIT READY, UNIT ATTENTION", 0, session_run(s, &tur2));
	CHECK("sense_valid", tur2.sense_valid);
	CHECK_EQ("sense key", 6, tur2.sense_key);
	session_destroy(s);
}

static void test_budget_field(void)
{
	printf("expire_ms: set at the first submit to now + replacement_timeout (10 s); a "
	       "command past it fails at once; one waiting for its backoff fails at its "
	       "budget, not at its backoff\n");
	model_reset();
	config_for_test();
	cfg.replacement_timeout = 10;
	struct session *s;
	open_ok(&s, 100);
	struct tcmd t;
	rw10(&t, 0, false, 1, 0);
	uint64_t t0 = util_now_ms();
	CHECK_EQ("a READ", 0, session_run(s, &t.c));
	CHECK("expire_ms = submit + 10 s",
	      t.c.expire_ms >= t0 + 10000 && t.c.expire_ms <= util_now_ms() + 10000);
	uint64_t keep = t.c.expire_ms;
	CHECK_EQ("resubmitted (a retry)", 0, session_run(s, &t.c));
	CHECK_EQ("keeps its budget", keep, t.c.expire_ms);

	rw10(&t, 0, false, 1, 0);
	t.c.expire_ms = util_now_ms() - 1;
	t0 = util_now_ms();
	CHECK_EQ("past its budget", -ETIMEDOUT, session_run(s, &t.c));
	CHECK("at once", util_now_ms() - t0 < 100);
	CHECK_EQ("not sent", 0, model_count(0, 0, 0x28) - 2);

	rw10(&t, 0, false, 1, 0);
	t0 = util_now_ms();
	t.c.not_before_ms = t0 + 5000;
	t.c.expire_ms = t0 + 500;
	session_submit(s, &t.c);
	CHECK("completed", WAIT_FOR(tcmd_count(&t) > 0, 3000));
	CHECK_EQ("result", -ETIMEDOUT, t.c.result);
	long long took = (long long)(t.done_ms - t0);
	CHECK("at its budget (500 ms)", took >= 450 && took < 1500);

	/* in an outage, a new command's budget ends with the outage's */
	pthread_mutex_lock(&M.lock);
	M.down = true;
	pthread_mutex_unlock(&M.lock);
	model_drop();
	CHECK("down", WAIT_FOR(info_of(s).down_since_ms != 0, 2000));
	uint64_t down = info_of(s).down_since_ms;
	usleep(300000);
	rw10(&t, 0, false, 1, 0);
	session_submit(s, &t.c);
	CHECK("budget = down_since + replacement_timeout", t.c.expire_ms == down + 10000);
	pthread_mutex_lock(&M.lock);
	M.down = false;
	pthread_mutex_unlock(&M.lock);
	CHECK("completed after the reconnect", WAIT_FOR(tcmd_count(&t) > 0, 5000));
	CHECK_EQ("result", 0, t.c.result);
	session_destroy(s);
}

static void test_flood(void)
{
	printf("flood: the socket is always readable and every service call is busy: "
	       "commands still complete, and a command timeout (1 s) still fires on time\n");
	model_reset();
	config_for_test();
	cfg.cmd_timeout = 1;
	struct session *s;
	open_ok(&s, 100);
	pthread_mutex_lock(&M.lock);
	M.flood = true;
	pthread_mutex_unlock(&M.lock);
	uint64_t t0 = util_now_ms();
	for (int i = 0; i < 20; i++)
		CHECK_EQ("a WRITE under the flood", 0, run_rw(s, 0, true, (uint32_t)i, 7, NULL));
	CHECK("20 WRITEs within 2 s", util_now_ms() - t0 < 2000);
	pthread_mutex_lock(&M.lock);
	M.ignore_op = 0x2a;
	pthread_mutex_unlock(&M.lock);
	struct tcmd t;
	rw10(&t, 0, true, 30, 1);
	t0 = util_now_ms();
	session_submit(s, &t.c);
	CHECK("the command timeout fired", WAIT_FOR(info_of(s).timeouts >= 1, 4000));
	long long took = (long long)(util_now_ms() - t0);
	printf("  command timeout after %lld ms under the flood, %d service calls\n", took,
	       model_get(&M.services));
	CHECK("on time (1 s, +1 s slack)", took >= 950 && took < 2000);
	pthread_mutex_lock(&M.lock);
	M.ignore_op = -1;
	M.flood = false;
	pthread_mutex_unlock(&M.lock);
	CHECK("re-issued and completed", WAIT_FOR(tcmd_count(&t) > 0, 5000));
	CHECK_EQ("result", 0, t.c.result);
	session_destroy(s);
}

static void test_destroy_bounded(void)
{
	printf("shutdown: a target that never answers the logout costs at most "
	       "SESSION_LOGOUT_MS; one that answers nothing with commands in flight: "
	       "-ESHUTDOWN for each, at once\n");
	model_reset();
	config_for_test();
	struct session *s;
	open_ok(&s, 100);
	pthread_mutex_lock(&M.lock);
	M.hang_logout = true;
	pthread_mutex_unlock(&M.lock);
	uint64_t t0 = util_now_ms();
	session_destroy(s);
	long long took = (long long)(util_now_ms() - t0);
	printf("  destroy with an unanswered logout: %lld ms\n", took);
	CHECK("bounded by SESSION_LOGOUT_MS (+0.5 s)", took <= SESSION_LOGOUT_MS + 500);
	CHECK_EQ("fake connections open", 0, model_get(&M.live));

	model_reset();
	open_ok(&s, 100);
	pthread_mutex_lock(&M.lock);
	M.silent = true;
	pthread_mutex_unlock(&M.lock);
	static struct tcmd t[3];
	for (int i = 0; i < 3; i++) {
		rw10(&t[i], 0, false, (uint32_t)i, i);
		session_submit(s, &t[i].c);
	}
	CHECK("in flight", WAIT_FOR(model_count(1, -1, 0x28) == 3, 2000));
	t0 = util_now_ms();
	session_destroy(s);
	CHECK("destroy under 1 s", util_now_ms() - t0 < 1000);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ("completions", 1, tcmd_count(&t[i]));
		CHECK_EQ("result", -ESHUTDOWN, t[i].c.result);
	}
	CHECK_EQ("fake connections open", 0, model_get(&M.live));
}

static void test_outage_start(void)
{
	printf("outage start: a target that stops answering at t0 (keepalive notices at "
	       "t0 + 2 s): the outage counts from t0, the READ sent at t0 fails at "
	       "t0 + replacement_timeout (2 s), and a READ right after fails at once\n");
	model_reset();
	config_for_test();
	cfg.noop_interval = 1;
	cfg.noop_timeout = 1;
	cfg.replacement_timeout = 2;
	struct session *s;
	open_ok(&s, 100);
	CHECK("a NOP-Out answered first", WAIT_FOR(model_get(&M.nops) >= 1, 2500));
	pthread_mutex_lock(&M.lock);
	M.down = true;   /* reconnects are refused */
	pthread_mutex_unlock(&M.lock);
	model_hang();
	struct tcmd t;
	rw10(&t, 0, false, 1, 0);
	uint64_t t0 = util_now_ms();
	session_submit(s, &t.c);
	CHECK("completed", WAIT_FOR(tcmd_count(&t) > 0, 6000));
	long long took = (long long)(t.done_ms - t0);
	printf("  the READ failed after %lld ms; down_since is %lld ms before its submission\n",
	       took, (long long)t0 - (long long)info_of(s).down_since_ms);
	CHECK_EQ("result", -ETIMEDOUT, t.c.result);
	CHECK("at its budget", took >= 1950 && took < 2600);
	uint64_t t1 = util_now_ms();
	CHECK_EQ("the next READ", -ETIMEDOUT, run_rw(s, 0, false, 2, 0, NULL));
	CHECK("fails at once", util_now_ms() - t1 < 300);
	pthread_mutex_lock(&M.lock);
	M.down = false;
	pthread_mutex_unlock(&M.lock);
	CHECK("back", WAIT_FOR(info_of(s).down_since_ms == 0, 6000));
	CHECK_EQ("a READ once back", 0, run_rw(s, 0, false, 2, 0, NULL));
	session_destroy(s);
}

/* A submitter that retries at once from the completion (as a cache or the kernel may). */
static struct tcmd retry_second;
static void retry_at_once(struct session_cmd *c)
{
	tcmd_done(c);
	struct tcmd *t = (struct tcmd *)c;
	if (c->result != -ETIMEDOUT || t == &retry_second)
		return;
	rw10(&retry_second, 0, false, 3, 1);
	retry_second.c.done = retry_at_once;
	session_submit(c->owner, &retry_second.c);
}

static void test_retry_from_completion(void)
{
	printf("outage: a READ unanswered past replacement_timeout (1 s) fails when its "
	       "cmd_timeout (1 s) drops the connection; a retry submitted from its "
	       "completion fails at once, not with a fresh budget\n");
	model_reset();
	config_for_test();
	cfg.cmd_timeout = 1;
	cfg.replacement_timeout = 1;
	struct session *s;
	open_ok(&s, 100);
	pthread_mutex_lock(&M.lock);
	M.ignore_op = 0x28;
	pthread_mutex_unlock(&M.lock);
	static struct tcmd t;
	rw10(&t, 0, false, 2, 0);
	t.c.done = retry_at_once;
	memset(&retry_second, 0, sizeof(retry_second));
	uint64_t t0 = util_now_ms();
	session_submit(s, &t.c);
	CHECK("both completed", WAIT_FOR(tcmd_count(&t) && tcmd_count(&retry_second), 6000));
	printf("  first failed after %lld ms, the retry %lld ms later\n",
	       (long long)(t.done_ms - t0), (long long)(retry_second.done_ms - t.done_ms));
	CHECK_EQ("first", -ETIMEDOUT, t.c.result);
	CHECK_EQ("retry", -ETIMEDOUT, retry_second.c.result);
	CHECK("the retry failed at once", retry_second.done_ms - t.done_ms < 200);
	CHECK_EQ("READs the target got (the retry was not sent)", 1, model_count(0, 0, 0x28));
	pthread_mutex_lock(&M.lock);
	M.ignore_op = -1;
	pthread_mutex_unlock(&M.lock);
	session_destroy(s);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_init(false);
	pthread_mutex_init(&M.lock, NULL);
	uint64_t t0 = util_now_ms();
	test_login_and_commands();
	test_login_refused();
	test_reconnect_in_order();
	test_identity_changed();
	test_identity_transient();
	test_relogin_handler_and_new_disk();
	test_replacement_timeout();
	test_nop_timeout();
	test_command_timeout();
	test_destroy_queued();
	test_budget_nops_but_no_reads();
	test_outage_needs_an_answer();
	test_protocol_error();
	test_results_reach_the_submitter();
	test_budget_field();
	test_flood();
	test_destroy_bounded();
	test_outage_start();
	test_retry_from_completion();
	printf("%s: %d failure(s) in %.1f s\n", failures ? "FAILED" : "ok", failures,
	       (double)(util_now_ms() - t0) / 1000.0);
	return failures ? 1 : 0;
}
