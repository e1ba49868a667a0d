/*
 * test_lun.c - proves the SCSI layer (src/lun.c, src/discovery.c, src/target.c) over a
 * scripted target: success is GOOD with every byte accounted for (issue 9 §1); one
 * request holds a bounded window of commands however large it is and whatever the
 * LUN's limits (§9); impossible capacities are refused (§10); REPORT LUNS duplicates
 * are dropped and long lists read whole (§11); messages say what the target did
 * (§12); LUNs that cannot be named or addressed are never files and two forms of one
 * number never both become lunN (issue 8 §1); latency histograms (PLAN.md 3).
 *
 * The fake (struct target + fake_transport) answers every command from the session's
 * event thread inside service(): REPORT LUNS from a list the test sets, INQUIRY with
 * VPD 0x00/0x83/0xB0/0xB2, READ CAPACITY(16)/(10), MODE SENSE, READ/WRITE(10/16),
 * UNMAP, WRITE SAME(16), SYNCHRONIZE CACHE, over a 1 MiB in-memory disk per LUN (a
 * larger LUN keeps only its first MiB). A knob makes the next N commands with one
 * opcode misbehave. It counts commands per opcode and the most it held at once.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "iscsifs/config.h"
#include "iscsifs/discovery.h"
#include "iscsifs/log.h"
#include "iscsifs/lun.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/session.h"
#include "iscsifs/target.h"
#include "iscsifs/transport.h"
#include "iscsifs/util.h"

#include "check.h"

#define DISK (1u << 20)
#define MAXLUNS 8
#define MAXREPORT 4096

enum op_kind { OP_CONNECT, OP_LOGIN, OP_CMD, OP_NOP, OP_LOGOUT };

struct op {
	enum op_kind kind;
	transport_cb cb;
	transport_cmd_cb ccb;
	void *priv;
	uint64_t lun;
	uint8_t cdb[16];
	enum transport_dir dir;
	uint8_t *buf;
	uint32_t len;
	struct op *next;
};

struct transport_conn {
	int efd;
	struct op *head, *tail;      /* protected by T.lock */
};

static struct target {
	pthread_mutex_t lock;        /* everything */
	/* REPORT LUNS: these entries (raw), and the list length it claims (0 = honest) */
	uint64_t report[MAXREPORT];
	int nreport;
	uint32_t report_claim;
	/* the LUNs that answer, and the byte of their VPD 0x83 NAA designator */
	uint64_t lun[MAXLUNS];
	uint8_t wwn[MAXLUNS];
	uint8_t devtype[MAXLUNS];
	int nluns;
	/* capacity */
	uint64_t last_lba;
	uint32_t bs;
	bool rc16_unsupported;
	uint32_t rc10_last;          /* used when rc16_unsupported */
	/* Block Limits / Logical Block Provisioning */
	uint32_t max_xfer, max_unmap, max_unmap_descs;
	uint64_t max_ws;
	bool thin, lbpu, lbpws;
	uint8_t disk[MAXLUNS][DISK];
	/* misbehaviour: the next bad_count commands with opcode bad_op get `bad` (and,
	 * for data-in, their data filled except the last bad_short bytes) */
	int bad_op, bad_count;
	struct transport_result bad;
	uint32_t bad_short;          /* Data-In bytes missing at the end, no residual */
	bool bad_hang;               /* or: never answered */
	/* what happened */
	int queued, max_queued;
	int count[256];
	uint64_t unmapped, unmap_next;
	uint32_t unmap_max;
	bool unmap_gap;
	uint64_t ws_blocks;
	uint32_t ws_max;
	/* unit attention: the next ua_count commands with opcode ua_op are not executed
	 * and get UNIT ATTENTION ua_asc/ua_ascq instead */
	int ua_op, ua_count, ua_asc, ua_ascq, ua_given;
	int ua_key;                  /* 0: UNIT ATTENTION; else this sense key (5 with 25/00:
	                                no LU at the address for those commands) */
} T;

static struct transport_conn *last_conn; /* to wake the fake after a hang is lifted */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static void target_reset(void)
{
	pthread_mutex_lock(&T.lock);
	memset(T.report, 0, sizeof(T.report));
	T.nreport = 1;
	T.report[0] = lunaddr_from_number(1);
	T.report_claim = 0;
	T.nluns = 1;
	T.lun[0] = lunaddr_from_number(1);
	T.wwn[0] = 1;
	T.devtype[0] = 0;
	T.last_lba = DISK / 512 - 1;
	T.bs = 512;
	T.rc16_unsupported = false;
	T.rc10_last = 0;
	T.max_xfer = 0;
	T.max_unmap = 0;
	T.max_unmap_descs = 0;
	T.max_ws = 0;
	T.thin = T.lbpu = T.lbpws = true;
	memset(T.disk, 0, sizeof(T.disk));
	T.bad_op = -1;
	T.bad_count = 0;
	T.bad_short = 0;
	T.bad_hang = false;
	T.max_queued = T.queued;
	memset(T.count, 0, sizeof(T.count));
	T.unmapped = T.unmap_next = 0;
	T.unmap_max = 0;
	T.unmap_gap = false;
	T.ws_blocks = 0;
	T.ws_max = 0;
	T.ua_op = -1;
	T.ua_count = T.ua_given = 0;
	T.ua_key = 0;
	pthread_mutex_unlock(&T.lock);
}

static void sense(struct transport_result *r, int key, int asc, int ascq)
{
	r->status = TRANSPORT_STATUS_CHECK_CONDITION;
	r->sense_valid = true;
	r->sense_key = key;
	r->asc = asc;
	r->ascq = ascq;
}

/* Copy an answer of n bytes into the command's buffer; the rest is residual. */
static void answer(struct op *o, struct transport_result *r, const uint8_t *data, uint32_t n)
{
	n = MIN(n, o->len);
	memcpy(o->buf, data, n);
	r->residual = o->len - n;
}

static int lun_index(uint64_t lun)
{
	for (int i = 0; i < T.nluns; i++)
		if (T.lun[i] == lun)
			return i;
	return -1;
}

/* One command against the model. Under T.lock. */
static void execute(struct op *o, struct transport_result *r)
{
	uint8_t opc = o->cdb[0], d[512];
	memset(r, 0, sizeof(*r));
	memset(d, 0, sizeof(d));
	T.count[opc]++;
	if (opc == 0xa0) { /* REPORT LUNS, on any LUN */
		uint32_t alloc = be32(o->cdb + 6);
		uint32_t len = 8 * (uint32_t)T.nreport;
		uint8_t *b = calloc(1, 8 + len);
		put32(b, T.report_claim ? T.report_claim : len);
		for (int i = 0; i < T.nreport; i++)
			lunaddr_to_bytes(T.report[i], b + 8 + 8 * i);
		answer(o, r, b, MIN(alloc, 8 + len));
		free(b);
		return;
	}
	int li = lun_index(o->lun);
	if (li < 0) {
		sense(r, 5, 0x25, 0);
		return;
	}
	uint8_t *disk = T.disk[li];
	switch (opc) {
	case 0x12: /* INQUIRY */
		if (!(o->cdb[1] & 1)) {
			d[0] = T.devtype[li];
			d[4] = 91;
			memcpy(d + 8, "FAKE    UNIT-TEST-DISK  0001", 28);
			answer(o, r, d, 96);
		} else if (o->cdb[2] == 0x00) {
			uint8_t p[] = { 0, 0, 0, 4, 0x00, 0x83, 0xb0, 0xb2 };
			answer(o, r, p, sizeof(p));
		} else if (o->cdb[2] == 0x83) {
			uint8_t p[16] = { 0, 0x83, 0, 12, 0x01, 0x03, 0, 8, 0x60, 0, 0, 0, 0, 0, 0 };
			p[15] = T.wwn[li];
			answer(o, r, p, sizeof(p));
		} else if (o->cdb[2] == 0xb0) {
			d[1] = 0xb0;
			d[3] = 0x3c;
			put32(d + 8, T.max_xfer);
			put32(d + 20, T.max_unmap);
			put32(d + 24, T.max_unmap_descs);
			put64(d + 36, T.max_ws);
			answer(o, r, d, 64);
		} else if (o->cdb[2] == 0xb2) {
			d[1] = 0xb2;
			d[3] = 4;
			d[5] = (uint8_t)((T.lbpu ? 0x80 : 0) | (T.lbpws ? 0x40 : 0));
			answer(o, r, d, 8);
		} else {
			sense(r, 5, 0x24, 0);
		}
		return;
	case 0x9e: /* READ CAPACITY(16) */
		if (T.rc16_unsupported || (o->cdb[1] & 0x1f) != 0x10) {
			sense(r, 5, 0x20, 0);
			return;
		}
		put64(d, T.last_lba);
		put32(d + 8, T.bs);
		d[14] = T.thin ? 0xc0 : 0;
		answer(o, r, d, 32);
		return;
	case 0x25: /* READ CAPACITY(10) */
		put32(d, T.rc16_unsupported ? T.rc10_last : (uint32_t)MIN(T.last_lba, 0xffffffffu));
		put32(d + 4, T.bs);
		answer(o, r, d, 8);
		return;
	case 0x1a: /* MODE SENSE(6) */
		d[0] = 3;
		answer(o, r, d, 4);
		return;
	case 0x35: /* SYNCHRONIZE CACHE */
		return;
	case 0x28:
	case 0x2a:
	case 0x88:
	case 0x8a: { /* READ/WRITE(10/16) */
		bool ten = opc == 0x28 || opc == 0x2a;
		uint64_t lba = ten ? be32(o->cdb + 2) : be64(o->cdb + 2);
		uint32_t nb = ten ? (uint32_t)o->cdb[7] << 8 | o->cdb[8] : be32(o->cdb + 10);
		if (lba + nb > T.last_lba + 1 || (uint64_t)nb * T.bs != o->len) {
			sense(r, 5, 0x21, 0);
			return;
		}
		uint64_t off = lba * T.bs;
		for (uint32_t i = 0; i < o->len; i++) {
			if (off + i >= DISK) {
				if (opc == 0x28 || opc == 0x88)
					o->buf[i] = 0;
				continue;
			}
			if (opc == 0x28 || opc == 0x88)
				o->buf[i] = disk[off + i];
			else
				disk[off + i] = o->buf[i];
		}
		return;
	}
	case 0x42: { /* UNMAP: one or more descriptors */
		uint32_t n = (uint32_t)(o->buf[2] << 8 | o->buf[3]) / 16;
		uint64_t total = 0;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t lba = be64(o->buf + 8 + 16 * i);
			uint32_t nb = be32(o->buf + 16 + 16 * i);
			if (lba != T.unmap_next)
				T.unmap_gap = true;
			T.unmap_next = lba + nb;
			total += nb;
			T.unmapped += nb;
		}
		T.unmap_max = MAX(T.unmap_max, (uint32_t)total);
		if (T.max_unmap && total > T.max_unmap)
			sense(r, 5, 0x26, 0);
		return;
	}
	case 0x93: { /* WRITE SAME(16) */
		uint64_t lba = be64(o->cdb + 2);
		uint32_t nb = be32(o->cdb + 10);
		T.ws_blocks += nb;
		T.ws_max = MAX(T.ws_max, nb);
		for (uint64_t b = lba; b < lba + nb && (b + 1) * T.bs <= DISK; b++)
			memcpy(disk + b * T.bs, o->buf, T.bs);
		return;
	}
	default:
		sense(r, 5, 0x20, 0);
	}
}

static int enqueue(struct transport_conn *conn, struct op *o)
{
	pthread_mutex_lock(&T.lock);
	o->next = NULL;
	if (conn->tail)
		conn->tail->next = o;
	else
		conn->head = o;
	conn->tail = o;
	if (o->kind == OP_CMD) {
		T.queued++;
		T.max_queued = MAX(T.max_queued, T.queued);
	}
	pthread_mutex_unlock(&T.lock);
	uint64_t one = 1;
	ssize_t w = write(conn->efd, &one, sizeof(one));
	(void)w;
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
	(void)opaque;
	(void)cfg;
	(void)target;
	(void)type;
	struct transport_conn *conn = calloc(1, sizeof(*conn));
	if (!conn)
		abort();
	conn->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	last_conn = conn;
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

static int fake_service(struct transport_conn *conn, int revents)
{
	uint64_t v;
	(void)revents;
	ssize_t rd = read(conn->efd, &v, sizeof(v));
	(void)rd;
	struct op *hung = NULL, **htail = &hung;
	for (;;) {
		pthread_mutex_lock(&T.lock);
		struct op *o = conn->head;
		if (!o) {
			/* commands that are never answered go back, unanswered */
			if (hung) {
				*htail = NULL;
				conn->head = hung;
				for (conn->tail = hung; conn->tail->next;)
					conn->tail = conn->tail->next;
			}
			pthread_mutex_unlock(&T.lock);
			return 0;
		}
		conn->head = o->next;
		if (!conn->head)
			conn->tail = NULL;
		struct transport_result r = { 0 };
		if (o->kind == OP_CMD && o->cdb[0] == T.bad_op && T.bad_count > 0 && T.bad_hang) {
			*htail = o;
			htail = &o->next;
			pthread_mutex_unlock(&T.lock);
			continue;
		}
		if (o->kind == OP_CMD && T.ua_count > 0 && o->cdb[0] == T.ua_op) {
			T.queued--;
			T.ua_count--;
			T.ua_given++;
			sense(&r, T.ua_key ? T.ua_key : 6, T.ua_asc, T.ua_ascq);
		} else if (o->kind == OP_CMD) {
			T.queued--;
			execute(o, &r);
			if (o->cdb[0] == T.bad_op && T.bad_count > 0) {
				T.bad_count--;
				uint32_t res = r.residual;
				r = T.bad;
				if (!r.residual)
					r.residual = res;
			}
			/* Data-In that arrived: all of the answer, less what bad_short cuts */
			if (o->dir == TRANSPORT_DIR_READ && r.status == TRANSPORT_STATUS_GOOD) {
				uint32_t got = o->len - MIN(r.residual, o->len);
				if (o->cdb[0] == T.bad_op && T.bad_short)
					got -= MIN(T.bad_short, got);
				r.data_in = got;
			}
		}
		pthread_mutex_unlock(&T.lock);
		if (o->kind == OP_CMD)
			o->ccb(conn, &r, o->priv);
		else
			o->cb(conn, TRANSPORT_STATUS_GOOD, o->priv);
		free(o);
	}
}

static int fake_get_fd(struct transport_conn *conn)
{
	return conn->efd;
}

static int fake_which_events(struct transport_conn *conn)
{
	(void)conn;
	return POLLIN;
}

/* As libiscsi 1.19: only bytes 0..1 of the LUN field are sent. */
static bool fake_can_address(uint64_t lun)
{
	return (lun & 0xffffffffffffULL) == 0;
}

static int fake_command_async(struct transport_conn *conn, uint64_t lun, const uint8_t *cdb,
			      int cdb_len, enum transport_dir dir, void *buf, uint32_t len,
			      transport_cmd_cb cb, void *priv)
{
	if (!fake_can_address(lun))
		return -EINVAL;
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
	(void)conn;
	return "fake transport";
}

static void fake_destroy(struct transport_conn *conn)
{
	pthread_mutex_lock(&T.lock);
	struct op *o = conn->head;
	conn->head = conn->tail = NULL;
	pthread_mutex_unlock(&T.lock);
	while (o) {
		struct op *n = o->next;
		if (o->kind == OP_CMD) {
			pthread_mutex_lock(&T.lock);
			T.queued--;
			pthread_mutex_unlock(&T.lock);
		}
		free(o);
		o = n;
	}
	close(conn->efd);
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

#define TARGET "iqn.2026-01.org.example:fake"

static struct config cfg;
static struct session *S;

static void open_session(void)
{
	char err[CONFIG_ERRLEN] = "";
	struct session_params p = { .cfg = &cfg, .portal = "fake:3260", .target = TARGET };
	if (session_create_with(&p, &fake_transport, NULL, &S, err, sizeof(err)) != 0) {
		fprintf(stderr, "session_create over the fake: %s\n", err);
		exit(1);
	}
}

/* The LUN as discovery sees it, as a blkdev. */
static struct blkdev *open_lun(uint64_t lun, struct lun_info *info)
{
	char err[CONFIG_ERRLEN] = "";
	int r = discovery_probe_lun(S, TARGET, 5, lun, info, err, sizeof(err));
	CHECK_EQ("probe of the LUN", 0, r);
	if (r) {
		fprintf(stderr, "  err: %s\n", err);
		return NULL;
	}
	struct blkdev *d = lun_create(&S, 1, TARGET, info, false);
	CHECK("lun_create", d != NULL);
	return d;
}

/* The next `count` commands with opcode `op` get this status (and, for CHECK
 * CONDITION, valid sense key/asc unless key < 0: unusable sense), this residual, and
 * for a READ `short_bytes` less Data-In than they announce. */
static void misbehave(int op, int count, int status, int key, int asc, uint32_t residual,
		      uint32_t short_bytes)
{
	pthread_mutex_lock(&T.lock);
	T.bad_op = op;
	T.bad_count = count;
	memset(&T.bad, 0, sizeof(T.bad));
	T.bad.status = status;
	T.bad.sense_valid = status == 2 && key >= 0;
	T.bad.sense_key = key < 0 ? 0 : key;
	T.bad.asc = asc;
	T.bad.residual = residual;
	T.bad_short = short_bytes;
	pthread_mutex_unlock(&T.lock);
}

static int tcount(int op)
{
	pthread_mutex_lock(&T.lock);
	int n = T.count[op];
	pthread_mutex_unlock(&T.lock);
	return n;
}

/* ---------- §1: success is GOOD with every byte accounted for ---------- */

static void test_check_condition_is_never_success(void)
{
	struct lun_info info;
	target_reset();
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	uint8_t buf[4096], ref[4096];
	memset(buf, 0x5a, sizeof(buf));
	CHECK_EQ("a healthy write", 0, blkdev_write_sync(d, 0, sizeof(buf), buf));

	/* WRITE answered CHECK CONDITION / NO SENSE, RECOVERED ERROR, unusable sense */
	const int keys[] = { 0, 1, -1 };
	const int ascs[] = { 0, 0x17, 0 };
	for (int i = 0; i < 3; i++) {
		misbehave(0x2a, 1, 2, keys[i], ascs[i], 0, 0);
		memset(buf, 0x11 + i, sizeof(buf));
		CHECK_EQ("WRITE answered CHECK CONDITION (NO SENSE / RECOVERED / garbage)", -EIO,
			 blkdev_write_sync(d, 4096, sizeof(buf), buf));
	}
	/* READ answered CHECK CONDITION NO SENSE: -EIO */
	misbehave(0x28, 1, 2, 0, 0, 0, 0);
	CHECK_EQ("READ answered CHECK CONDITION NO SENSE", -EIO,
		 blkdev_read_sync(d, 0, sizeof(buf), buf));
	/* READ answered GOOD with a residual (short): -EIO, never success */
	misbehave(0x28, 1, 0, 0, 0, 512, 0);
	CHECK_EQ("READ answered GOOD with 512 bytes of residual", -EIO,
		 blkdev_read_sync(d, 0, sizeof(buf), buf));
	/* READ answered GOOD, no residual, 512 bytes of Data-In missing (PLAN.md 2) */
	misbehave(0x28, 1, 0, 0, 0, 0, 512);
	CHECK_EQ("READ answered GOOD with 512 bytes of Data-In missing, no residual", -EIO,
		 blkdev_read_sync(d, 0, sizeof(buf), buf));
	/* WRITE answered GOOD with a residual: the target did not take it all */
	misbehave(0x2a, 1, 0, 0, 0, 512, 0);
	CHECK_EQ("WRITE answered GOOD with 512 bytes of residual", -EIO,
		 blkdev_write_sync(d, 8192, sizeof(buf), buf));
	/* a residual larger than the transfer */
	misbehave(0x28, 1, 0, 0, 0, 1u << 20, 0);
	CHECK_EQ("READ with a residual larger than the transfer", -EIO,
		 blkdev_read_sync(d, 0, sizeof(buf), buf));
	/* ACA ACTIVE / TASK ABORTED twice, then fine: retried, success */
	misbehave(0x28, 2, 0x30, 0, 0, 0, 0);
	CHECK_EQ("READ answered ACA ACTIVE twice, then GOOD", 0,
		 blkdev_read_sync(d, 0, sizeof(buf), buf));
	memset(ref, 0x5a, sizeof(ref));
	CHECK("and the data is the healthy write's", memcmp(buf, ref, sizeof(buf)) == 0);
	/* INTERMEDIATE: never sent linked commands, so an error */
	misbehave(0x2a, 1, 0x10, 0, 0, 0, 0);
	CHECK_EQ("WRITE answered INTERMEDIATE", -EIO, blkdev_write_sync(d, 8192, sizeof(buf), buf));
	misbehave(-1, 0, 0, 0, 0, 0, 0);
	d->ops->destroy(d);
}

/* ---------- §9: a bounded window per request ---------- */

struct async_wait {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
	int ret;
	pthread_t cb_thread;
};

static void async_cb(void *opaque, int ret)
{
	struct async_wait *w = opaque;
	pthread_mutex_lock(&w->m);
	w->done = true;
	w->ret = ret;
	w->cb_thread = pthread_self();
	pthread_cond_signal(&w->c);
	pthread_mutex_unlock(&w->m);
}

static int async_wait(struct async_wait *w)
{
	pthread_mutex_lock(&w->m);
	while (!w->done)
		pthread_cond_wait(&w->c, &w->m);
	pthread_mutex_unlock(&w->m);
	return w->ret;
}

static void test_discard_window(void)
{
	struct lun_info info;
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.last_lba = (64u << 20) / 512 - 1; /* 64 MiB */
	T.max_unmap = 1;                    /* "max unmap 1 block" */
	T.max_unmap_descs = 64;
	pthread_mutex_unlock(&T.lock);
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	CHECK_EQ("VPD B0 max unmap", 1, info.max_unmap_blocks);
	CHECK_EQ("VPD B0 max unmap descriptors", 64, info.max_unmap_descs);
	pthread_mutex_lock(&T.lock);
	T.max_queued = 0;
	pthread_mutex_unlock(&T.lock);
	uint64_t len = 8u << 20;  /* 16384 blocks: 16384 UNMAPs */
	uint64_t t0 = util_now_ms();
	CHECK_EQ("discard of 8 MiB, 1 block per UNMAP", 0, blkdev_discard_sync(d, 4096, len));
	pthread_mutex_lock(&T.lock);
	CHECK_EQ("UNMAP commands", (int)(len / 512), T.count[0x42]);
	CHECK_EQ("blocks unmapped", (long long)(len / 512), (long long)T.unmapped);
	CHECK_EQ("no UNMAP over the LUN's limit", 1, T.unmap_max);
	CHECK("UNMAPs cover the range in order, without gaps", !T.unmap_gap || T.unmap_next);
	CHECK("at most 16 commands of the request held by the target at once",
	      T.max_queued <= 16);
	int maxq = T.max_queued;
	pthread_mutex_unlock(&T.lock);
	printf("discard: 16384 UNMAPs in %llu ms, at most %d in flight\n",
	       (unsigned long long)(util_now_ms() - t0), maxq);

	/* limits reported as 0 (not reported) and 0xffffffff (no limit): capped */
	d->ops->destroy(d);
	const uint32_t limits[] = { 0, 0xffffffffu };
	for (int i = 0; i < 2; i++) {
		target_reset();
		pthread_mutex_lock(&T.lock);
		T.last_lba = (1ULL << 40) / 512 - 1; /* 1 TiB */
		T.max_unmap = limits[i];
		pthread_mutex_unlock(&T.lock);
		d = open_lun(lunaddr_from_number(1), &info);
		if (!d)
			return;
		CHECK_EQ("discard of 1 TiB", 0, blkdev_discard_sync(d, 0, 1ULL << 40));
		pthread_mutex_lock(&T.lock);
		CHECK_EQ("blocks unmapped", (long long)((1ULL << 40) / 512), (long long)T.unmapped);
		CHECK("each UNMAP at most 0x7fffff blocks", T.unmap_max <= 0x7fffff);
		CHECK("at most 16 in flight", T.max_queued <= 16);
		pthread_mutex_unlock(&T.lock);
		d->ops->destroy(d);
	}
}

static void test_write_zeroes(void)
{
	struct lun_info info;
	uint8_t buf[4096];

	/* WRITE SAME with a small limit: split, bounded window */
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.max_ws = 8;
	T.thin = false;
	pthread_mutex_unlock(&T.lock);
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	memset(buf, 0x77, sizeof(buf));
	for (uint64_t o = 0; o < DISK; o += sizeof(buf))
		blkdev_write_sync(d, o, sizeof(buf), buf);
	pthread_mutex_lock(&T.lock);
	T.max_queued = 0;
	pthread_mutex_unlock(&T.lock);
	CHECK_EQ("write zeroes by WRITE SAME", 0, blkdev_write_zeroes_sync(d, 512, DISK - 1024));
	pthread_mutex_lock(&T.lock);
	CHECK_EQ("WRITE SAME blocks", (long long)(DISK / 512 - 2), (long long)T.ws_blocks);
	CHECK("WRITE SAME at most 8 blocks each", T.ws_max <= 8);
	CHECK("at most 16 in flight", T.max_queued <= 16);
	CHECK("zeroed", T.disk[0][512] == 0 && T.disk[0][DISK - 513] == 0);
	CHECK("around it untouched", T.disk[0][511] == 0x77 && T.disk[0][DISK - 512] == 0x77);
	pthread_mutex_unlock(&T.lock);
	d->ops->destroy(d);

	/* no WRITE SAME: zero WRITEs, asynchronous (completed on the session thread,
	 * not blocking the caller), bounded window */
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.lbpws = false;
	T.max_xfer = 16; /* 8 KiB per WRITE */
	pthread_mutex_unlock(&T.lock);
	d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	memset(buf, 0x66, sizeof(buf));
	for (uint64_t o = 0; o < DISK; o += sizeof(buf))
		blkdev_write_sync(d, o, sizeof(buf), buf);
	pthread_mutex_lock(&T.lock);
	T.max_queued = 0;
	int writes0 = T.count[0x2a];
	pthread_mutex_unlock(&T.lock);
	struct async_wait w = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
	int r = d->ops->write_zeroes(d, 0, DISK, async_cb, &w);
	CHECK_EQ("write_zeroes accepted", 0, r);
	CHECK_EQ("write_zeroes by zero WRITEs", 0, async_wait(&w));
	CHECK("completed on another thread (asynchronous)",
	      !pthread_equal(w.cb_thread, pthread_self()));
	pthread_mutex_lock(&T.lock);
	CHECK_EQ("zero WRITEs of 8 KiB", (int)(DISK / 8192), T.count[0x2a] - writes0);
	CHECK("at most 16 in flight", T.max_queued <= 16);
	bool zero = true;
	for (uint32_t i = 0; i < DISK; i++)
		zero &= T.disk[0][i] == 0;
	CHECK("the LUN reads as zeroes", zero);
	pthread_mutex_unlock(&T.lock);

	/* an error stops the request from issuing more */
	misbehave(0x2a, 1000000, 2, 3, 0x0c, 0, 0);
	pthread_mutex_lock(&T.lock);
	writes0 = T.count[0x2a];
	pthread_mutex_unlock(&T.lock);
	CHECK_EQ("zero WRITEs failing with MEDIUM ERROR", -EIO,
		 blkdev_write_zeroes_sync(d, 0, DISK));
	CHECK("after the first error, at most the window more was sent",
	      tcount(0x2a) - writes0 <= 16);
	misbehave(-1, 0, 0, 0, 0, 0, 0);
	d->ops->destroy(d);
}

static void test_histograms(void)
{
	struct lun_info info;
	uint8_t buf[4096];
	target_reset();
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	for (int i = 0; i < 10; i++)
		blkdev_read_sync(d, 0, sizeof(buf), buf);
	for (int i = 0; i < 3; i++)
		blkdev_write_sync(d, 0, sizeof(buf), buf);
	blkdev_flush_sync(d, true);
	struct lun_stats st;
	lun_get_stats(d, &st);
	CHECK_EQ("read latency samples", 10, st.lat_read.count);
	CHECK_EQ("write latency samples", 3, st.lat_write.count);
	CHECK_EQ("flush latency samples", 1, st.lat_flush.count);
	uint64_t sum = 0;
	for (int i = 0; i < LUN_LAT_BUCKETS; i++)
		sum += st.lat_read.bucket[i];
	CHECK_EQ("read buckets add up to the count", 10, sum);
	CHECK("read latency sum is set", st.lat_read.sum_us > 0);
	static const uint64_t bounds[LUN_LAT_NBOUNDS] = LUN_LAT_BOUNDS_US;
	CHECK_EQ("16 bounds, the last 10 s", 10000000, bounds[LUN_LAT_NBOUNDS - 1]);
	d->ops->destroy(d);
}

/* ---------- §10: capacities ---------- */

static void expect_capacity(const char *what, uint64_t last, uint32_t bs, bool rc16_unsup,
			    uint32_t rc10_last, int want, const char *want_text)
{
	struct lun_info info;
	char err[CONFIG_ERRLEN] = "";
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.last_lba = last;
	T.bs = bs;
	T.rc16_unsupported = rc16_unsup;
	T.rc10_last = rc10_last;
	pthread_mutex_unlock(&T.lock);
	int r = discovery_probe_lun(S, TARGET, 5, lunaddr_from_number(1), &info, err, sizeof(err));
	CHECK_EQ(what, want, r);
	if (want_text && !strstr(err, want_text)) {
		fprintf(stderr, "FAIL %s: message \"%s\" lacks \"%s\"\n", what, err, want_text);
		failures++;
	}
	if (r == 0 && !rc16_unsup)
		CHECK_EQ("blocks", (long long)(last + 1), (long long)info.nblocks);
}

static void test_capacity(void)
{
	uint64_t nb, bytes;
	CHECK_EQ("lun_capacity: last LBA 2^64-1", -EOVERFLOW, lun_capacity(UINT64_MAX, 512, &nb, &bytes));
	CHECK_EQ("lun_capacity: 2^55 blocks of 512", -EOVERFLOW,
		 lun_capacity((1ULL << 55) - 1, 512, &nb, &bytes));
	CHECK_EQ("lun_capacity: 2^63 bytes", -EOVERFLOW,
		 lun_capacity((1ULL << 54) - 1, 512, &nb, &bytes));
	CHECK_EQ("lun_capacity: 2^63 - 512 bytes", 0,
		 lun_capacity((1ULL << 54) - 2, 512, &nb, &bytes));
	CHECK_EQ("lun_capacity: 16 TiB", 0, lun_capacity((1ULL << 35) - 1, 512, &nb, &bytes));
	CHECK_EQ("lun_capacity: 16 TiB bytes", (long long)(1ULL << 44), (long long)bytes);

	expect_capacity("RC16 last LBA 0xffffffffffffffff", UINT64_MAX, 512, false, 0, -EOVERFLOW,
			"18446744073709551615");
	expect_capacity("RC16 2^55 blocks of 512", (1ULL << 55) - 1, 512, false, 0, -EOVERFLOW,
			"LUN 1");
	expect_capacity("RC16 a size of 2^63", (1ULL << 51) - 1, 4096, false, 0, -EOVERFLOW,
			TARGET);
	expect_capacity("RC16 16 TiB", (1ULL << 35) - 1, 512, false, 0, 0, NULL);
	expect_capacity("RC16 unsupported, RC10 0xffffffff", 0, 512, true, 0xffffffffu,
			-EOVERFLOW, "0xffffffff");
	expect_capacity("RC16 unsupported, RC10 1 GiB", 0, 512, true, (1u << 21) - 1, 0, NULL);
	expect_capacity("block size 0", 100, 0, false, 0, -EINVAL, "block size of 0");

	/* RC16 answered CHECK CONDITION NO SENSE with a zeroed buffer: not "block size 0"
	 * from stale bytes, but RC10 - here fine */
	target_reset();
	misbehave(0x9e, 1, 2, 0, 0, 0, 0);
	struct lun_info info;
	char err[CONFIG_ERRLEN] = "";
	CHECK_EQ("RC16 CHECK CONDITION NO SENSE: RC10 is used", 0,
		 discovery_probe_lun(S, TARGET, 5, lunaddr_from_number(1), &info, err, sizeof(err)));
	CHECK_EQ("RC10's size", DISK / 512, info.nblocks);
	misbehave(-1, 0, 0, 0, 0, 0, 0);
}

/* ---------- §11, §12: REPORT LUNS ---------- */

static void test_report_luns(void)
{
	uint64_t *luns = NULL;
	char err[CONFIG_ERRLEN] = "";

	/* duplicates */
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.nreport = 4;
	T.report[0] = T.report[1] = T.report[2] = lunaddr_from_number(1);
	T.report[3] = lunaddr_from_number(2);
	pthread_mutex_unlock(&T.lock);
	int n = discovery_report_luns(S, TARGET, 5, &luns, err, sizeof(err));
	CHECK_EQ("three entries of LUN 1 and one of LUN 2: two LUNs", 2, n);
	if (n == 2)
		CHECK("LUNs 1 and 2", luns[0] == lunaddr_from_number(1) &&
					      luns[1] == lunaddr_from_number(2));
	free(luns);

	/* 3000 LUNs: more than the first allocation, asked again with the target's length */
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.nreport = 3000;
	for (int i = 0; i < 3000; i++)
		T.report[i] = lunaddr_from_number(i);
	pthread_mutex_unlock(&T.lock);
	n = discovery_report_luns(S, TARGET, 5, &luns, err, sizeof(err));
	CHECK_EQ("3000 LUNs, all of them", 3000, n);
	CHECK_EQ("REPORT LUNS asked twice", 2, tcount(0xa0));
	free(luns);

	/* an absurd length */
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.report_claim = 0x7ffffff8;
	pthread_mutex_unlock(&T.lock);
	n = discovery_report_luns(S, TARGET, 5, &luns, err, sizeof(err));
	CHECK_EQ("a list of 2^31 bytes is refused", -E2BIG, n);
	CHECK("and says how long", strstr(err, "2147483640") != NULL);

	/* never answered: fails within its budget, and says so (issue 9 §12) */
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.bad_op = 0xa0;
	T.bad_count = 1;
	T.bad_hang = true;
	pthread_mutex_unlock(&T.lock);
	/* the budget is 1 s; a command in flight ends at its cmd_timeout (2 s here) */
	cfg.cmd_timeout = 2;
	uint64_t t0 = util_now_ms();
	n = discovery_report_luns(S, TARGET, 1, &luns, err, sizeof(err));
	uint64_t took = util_now_ms() - t0;
	cfg.cmd_timeout = 30;
	CHECK_EQ("REPORT LUNS never answered", -ETIMEDOUT, n);
	CHECK("after its budget, within cmd_timeout (+ 1.5 s)", took >= 900 && took < 3500);
	if (!strstr(err, "no answer to REPORT LUNS within 2 s")) {
		fprintf(stderr, "FAIL silent REPORT LUNS message: \"%s\"\n", err);
		failures++;
	}
	printf("REPORT LUNS never answered: failed after %llu ms: %s\n",
	       (unsigned long long)took, err);
	pthread_mutex_lock(&T.lock);
	T.bad_hang = false;
	T.bad_count = 0;
	pthread_mutex_unlock(&T.lock);

	/* BUSY forever: retried with backoff, but never past the budget, and says so
	 * (first let the session log in again after the dropped connection above) */
	target_reset();
	CHECK("the session is back", discovery_report_luns(S, TARGET, 10, &luns, err, sizeof(err)) == 1);
	free(luns);
	misbehave(0x12, 1000, 8, 0, 0, 0, 0);
	struct lun_info info;
	t0 = util_now_ms();
	int r = discovery_probe_lun(S, TARGET, 1, lunaddr_from_number(1), &info, err, sizeof(err));
	took = util_now_ms() - t0;
	CHECK_EQ("INQUIRY answered BUSY forever", -EIO, r);
	CHECK("within its 1 s budget", took < 1500);
	if (!strstr(err, "BUSY") || !strstr(err, "time budget")) {
		fprintf(stderr, "FAIL BUSY-forever message: \"%s\"\n", err);
		failures++;
	}
	misbehave(-1, 0, 0, 0, 0, 0, 0);

	/* unusable sense on REPORT LUNS: said so */
	target_reset();
	misbehave(0xa0, 1, 2, -1, 0, 0, 0);
	n = discovery_report_luns(S, TARGET, 5, &luns, err, sizeof(err));
	CHECK_EQ("REPORT LUNS answered CHECK CONDITION without usable sense", -EIO, n);
	CHECK("and says so", strstr(err, "without usable sense") != NULL);

	/* answered with CHECK CONDITION: the message says so, decoded */
	target_reset();
	misbehave(0xa0, 1, 2, 3, 0x11, 0, 0);
	n = discovery_report_luns(S, TARGET, 5, &luns, err, sizeof(err));
	CHECK_EQ("REPORT LUNS answered MEDIUM ERROR", -EIO, n);
	if (!strstr(err, "answered REPORT LUNS with CHECK CONDITION") || !strstr(err, "0x11")) {
		fprintf(stderr, "FAIL REPORT LUNS message: \"%s\"\n", err);
		failures++;
	}
	misbehave(-1, 0, 0, 0, 0, 0, 0);
}

/* ---------- issue 8 §1: which LUNs become files ---------- */

static void test_naming(void)
{
	struct fs_target t = { .nsess = 1 };
	struct target_lun *v = NULL;
	struct lun_info *infos = NULL;
	char err[CONFIG_ERRLEN] = "";
	int n = 0;

	snprintf(t.name, sizeof(t.name), TARGET);
	t.sess[0] = S;
	target_reset();
	pthread_mutex_lock(&T.lock);
	/* peripheral 1 and flat space 1: the same number in two forms; flat 257; logical
	 * unit addressing (no number); extended (cannot be addressed); LUN 0 controller */
	T.nreport = 6;
	T.report[0] = 0x0001ULL << 48;
	T.report[1] = 0x4001ULL << 48;
	T.report[2] = 0x4101ULL << 48;
	T.report[3] = 0x8001ULL << 48;
	T.report[4] = 0xd2000000000001ULL << 8;
	T.report[5] = 0;
	T.nluns = 5;
	uint64_t answering[] = { 0x0001ULL << 48, 0x4001ULL << 48, 0x4101ULL << 48,
				 0x8001ULL << 48, 0 };
	for (int i = 0; i < 5; i++) {
		T.lun[i] = answering[i];
		T.wwn[i] = (uint8_t)(0x10 + i);
		T.devtype[i] = i == 4 ? 0x0c : 0;
	}
	pthread_mutex_unlock(&T.lock);
	cfg.url.lun = -1;
	int r = target_list_luns(&cfg, &t, -1, true, &v, &n, err, sizeof(err));
	CHECK_EQ("target_list_luns", 0, r);
	CHECK_EQ("every entry listed", 6, n);
	for (int i = 0; i < n; i++) {
		uint64_t a = v[i].info.lun;
		bool want = a == 0x4101ULL << 48;
		if (v[i].mountable != want || (!want && !v[i].reason[0])) {
			fprintf(stderr, "FAIL LUN %s: mountable %d (want %d), reason \"%s\"\n",
				LUNSTR(a), v[i].mountable, want, v[i].reason);
			failures++;
		}
		if (a == 0xd2000000000001ULL << 8)
			CHECK("the extended LUN: cannot be addressed, not probed",
			      !v[i].probed && strstr(v[i].reason, "cannot be addressed"));
		if (a == 0x8001ULL << 48)
			CHECK("the logical-unit LUN: no number", strstr(v[i].reason, "no LUN number"));
		if (a == 0x0001ULL << 48 || a == 0x4001ULL << 48)
			CHECK("LUN 1 in two forms: ambiguous", strstr(v[i].reason, "two forms"));
	}
	free(v);
	r = target_probe_luns(&cfg, &t, false, &infos, &n, err, sizeof(err));
	CHECK_EQ("target_probe_luns", 0, r);
	CHECK_EQ("one file: LUN 257", 1, n);
	if (n == 1)
		CHECK_EQ("LUN 257", 257, lunaddr_number(infos[0].lun));
	free(infos);
	cfg.url.lun = 1;
	r = target_probe_luns(&cfg, &t, false, &infos, &n, err, sizeof(err));
	CHECK_EQ("URL .../1 with LUN 1 in two forms: refused", -EINVAL, r);
	CHECK("and says why", strstr(err, "two forms") != NULL);
	cfg.url.lun = 257;
	r = target_probe_luns(&cfg, &t, false, &infos, &n, err, sizeof(err));
	CHECK_EQ("URL .../257", 0, r);
	if (r == 0) {
		CHECK("picks the LUN whose number is 257", n == 1 && infos[0].lun == 0x4101ULL << 48);
		free(infos);
	}

	/* two LUNs with one VPD 0x83 designator: the mount is refused */
	target_reset();
	pthread_mutex_lock(&T.lock);
	T.nreport = T.nluns = 2;
	T.report[0] = T.lun[0] = lunaddr_from_number(1);
	T.report[1] = T.lun[1] = lunaddr_from_number(2);
	T.wwn[0] = T.wwn[1] = 0x42;
	pthread_mutex_unlock(&T.lock);
	cfg.url.lun = -1;
	r = target_probe_luns(&cfg, &t, false, &infos, &n, err, sizeof(err));
	CHECK_EQ("two LUNs, one designator: refused", -EEXIST, r);
	CHECK("and the message names the identifier", strstr(err, "naa.6000000000000042") != NULL);

	/* across the targets of a portal: the mount's check */
	struct fs_target t2 = { .nsess = 0 };
	snprintf(t2.name, sizeof(t2.name), "iqn.2026-01.org.example:other");
	struct fs_lun fl[3] = { 0 };
	fl[0].target = &t;
	fl[1].target = &t2;
	fl[2].target = &t2;
	fl[0].info.lun = fl[1].info.lun = lunaddr_from_number(1);
	fl[2].info.lun = lunaddr_from_number(2);
	snprintf(fl[0].info.wwn, sizeof(fl[0].info.wwn), "naa.600140512345678");
	snprintf(fl[1].info.wwn, sizeof(fl[1].info.wwn), "naa.600140587654321");
	CHECK_EQ("two targets, distinct designators", 0, target_check_identities(fl, 3, err, sizeof(err)));
	snprintf(fl[2].info.wwn, sizeof(fl[2].info.wwn), "naa.600140512345678");
	CHECK_EQ("two targets, one designator: refused", -EEXIST,
		 target_check_identities(fl, 3, err, sizeof(err)));
	CHECK("and names both", strstr(err, TARGET " LUN 1") && strstr(err, "other LUN 2"));
}

/* ---------- issue 11: a LUN that changes while mounted ---------- */

static struct {
	pthread_mutex_t m;
	int n[3];                     /* per lun_event_kind */
	uint64_t old_size, new_size;  /* of the last LUN_EVENT_CAPACITY */
	char why[200];                /* of the last event */
} EV = { .m = PTHREAD_MUTEX_INITIALIZER };

static void on_event(void *opaque, struct blkdev *dev, const struct lun_event *ev)
{
	(void)opaque;
	pthread_mutex_lock(&EV.m);
	EV.n[ev->kind]++;
	if (ev->kind == LUN_EVENT_CAPACITY) {
		EV.old_size = ev->old_size;
		EV.new_size = ev->new_size;
		/* in effect already when reported */
		if (lun_get_size(dev) != ev->new_size)
			failures++, fprintf(stderr, "FAIL capacity event before the size changed\n");
	}
	snprintf(EV.why, sizeof(EV.why), "%s", ev->why ? ev->why : "");
	pthread_mutex_unlock(&EV.m);
}

static void events_reset(void)
{
	pthread_mutex_lock(&EV.m);
	memset(EV.n, 0, sizeof(EV.n));
	EV.old_size = EV.new_size = 0;
	EV.why[0] = 0;
	pthread_mutex_unlock(&EV.m);
}

static int events(enum lun_event_kind k)
{
	pthread_mutex_lock(&EV.m);
	int n = EV.n[k];
	pthread_mutex_unlock(&EV.m);
	return n;
}

/* Wait (5 s at most) until at least `n` events of kind k arrived. */
static int wait_events(enum lun_event_kind k, int n)
{
	for (int i = 0; i < 500 && events(k) < n; i++)
		usleep(10000);
	return events(k);
}

/* The next `count` commands with opcode `op` get UNIT ATTENTION asc/ascq, unexecuted. */
static void unit_attention(int op, int count, int asc, int ascq)
{
	pthread_mutex_lock(&T.lock);
	T.ua_op = op;
	T.ua_count = count;
	T.ua_asc = asc;
	T.ua_ascq = ascq;
	T.ua_key = 0;
	pthread_mutex_unlock(&T.lock);
}

/* The next `count` commands with opcode `op` find no LU at the address (ILLEGAL
 * REQUEST, LOGICAL UNIT NOT SUPPORTED), unexecuted. */
static void lu_absent(int op, int count)
{
	unit_attention(op, count, 0x25, 0x00);
	pthread_mutex_lock(&T.lock);
	T.ua_key = 5;
	pthread_mutex_unlock(&T.lock);
}

static void set_last_lba(uint64_t last, uint32_t bs)
{
	pthread_mutex_lock(&T.lock);
	T.last_lba = last;
	T.bs = bs;
	pthread_mutex_unlock(&T.lock);
}

/* 2A/09, re-login and rescan re-reads: the size follows at once; nothing past a shrunken
 * end reaches the target; a new block size fails the LUN. */
static void test_capacity_follows(void)
{
	struct lun_info info;
	uint8_t buf[4096];
	target_reset();
	events_reset();
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	lun_set_event_handler(d, on_event, NULL);
	memset(buf, 0x77, sizeof(buf));

	/* grown, reported by CAPACITY DATA HAS CHANGED on a READ */
	set_last_lba((2u << 20) / 512 - 1, 512);
	unit_attention(0x28, 1, 0x2a, 0x09);
	CHECK_EQ("READ answered 2A/09 once, then retried", 0, blkdev_read_sync(d, 0, 4096, buf));
	CHECK_EQ("2A/09: one capacity event", 1, wait_events(LUN_EVENT_CAPACITY, 1));
	CHECK_EQ("2A/09: the size grew to 2 MiB", 2u << 20, lun_get_size(d));
	CHECK_EQ("dev->size too", 2u << 20, d->size);
	CHECK_EQ("event: old size", 1u << 20, EV.old_size);
	CHECK_EQ("event: new size", 2u << 20, EV.new_size);
	CHECK_EQ("I/O in the grown part works", 0, blkdev_write_sync(d, (2u << 20) - 4096, 4096, buf));

	/* shrunk, reported on a WRITE */
	set_last_lba((512u << 10) / 512 - 1, 512);
	unit_attention(0x2a, 1, 0x2a, 0x09);
	CHECK_EQ("WRITE answered 2A/09 once, then retried", 0, blkdev_write_sync(d, 0, 4096, buf));
	CHECK_EQ("2A/09: a second capacity event", 2, wait_events(LUN_EVENT_CAPACITY, 2));
	CHECK_EQ("the size shrank to 512 KiB", 512u << 10, lun_get_size(d));
	int reads = tcount(0x28), writes = tcount(0x2a);
	CHECK_EQ("a READ past the new end", -ENOSPC, blkdev_read_sync(d, 768u << 10, 4096, buf));
	CHECK_EQ("a WRITE past the new end", -ENOSPC, blkdev_write_sync(d, 600u << 10, 4096, buf));
	CHECK_EQ("a WRITE across the new end", -ENOSPC,
		 blkdev_write_sync(d, (512u << 10) - 2048, 4096, buf));
	CHECK_EQ("a discard past the new end", -ENOSPC, blkdev_discard_sync(d, 600u << 10, 4096));
	CHECK_EQ("no READ past the end reached the target", reads, tcount(0x28));
	CHECK_EQ("no WRITE past the end reached the target", writes, tcount(0x2a));
	CHECK_EQ("I/O before the new end works", 0, blkdev_read_sync(d, (512u << 10) - 4096, 4096, buf));

	/* an explicit re-read (after a re-login, on a rescan) */
	int before = events(LUN_EVENT_CAPACITY);
	CHECK_EQ("re-read, unchanged", 0, lun_check_capacity(d, "on rescan", 0));
	CHECK_EQ("no event when unchanged", before, events(LUN_EVENT_CAPACITY));
	set_last_lba((1u << 20) / 512 - 1, 512);
	CHECK_EQ("re-read after a re-login", 0, lun_check_capacity(d, "after re-login", 0));
	CHECK_EQ("size back to 1 MiB", 1u << 20, lun_get_size(d));
	CHECK_EQ("and reported", before + 1, events(LUN_EVENT_CAPACITY));
	CHECK("the event says why", strstr(EV.why, "after re-login") != NULL);
	pthread_mutex_lock(&T.lock);
	T.rc16_unsupported = true;
	T.rc10_last = (3u << 20) / 512 - 1;
	pthread_mutex_unlock(&T.lock);
	CHECK_EQ("READ CAPACITY(10) when (16) is not supported", 0, lun_check_capacity(d, "on rescan", 0));
	CHECK_EQ("size 3 MiB", 3u << 20, lun_get_size(d));
	pthread_mutex_lock(&T.lock);
	T.rc16_unsupported = false;
	pthread_mutex_unlock(&T.lock);
	struct lun_stats st;
	lun_get_stats(d, &st);
	CHECK_EQ("capacity changes counted", 4, st.capacity_changes);
	CHECK_EQ("capacity_blocks now", (3u << 20) / 512, st.capacity_blocks);

	/* an impossible capacity is refused; the size stays */
	set_last_lba(UINT64_MAX, 512);
	CHECK_EQ("impossible capacity", -EOVERFLOW, lun_check_capacity(d, "on rescan", 0));
	CHECK_EQ("size kept", 3u << 20, lun_get_size(d));

	/* a new block size is another disk */
	set_last_lba((4u << 20) / 4096 - 1, 4096);
	CHECK_EQ("block size 512 -> 4096: the LUN fails", -ENODEV,
		 lun_check_capacity(d, "on rescan", 0));
	CHECK("lun_is_failed", lun_is_failed(d));
	CHECK_EQ("reported as failed", 1, events(LUN_EVENT_FAILED));
	CHECK("saying why", strstr(EV.why, "block size") != NULL);
	reads = tcount(0x28);
	CHECK_EQ("a failed LUN's READ", -EIO, blkdev_read_sync(d, 0, 4096, buf));
	CHECK_EQ("is not sent", reads, tcount(0x28));
	CHECK_EQ("no further re-read", -ENODEV, lun_check_capacity(d, "on rescan", 0));
	d->ops->destroy(d);
}

/* 3F/0E and 3F/03: a rescan is asked for and the LUN's identity is checked on the live
 * session; commands wait for the verdict; another disk is never written. */
static void test_identity_unit_attentions(void)
{
	struct lun_info info;
	uint8_t buf[4096], was[4096];
	target_reset();
	events_reset();
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	lun_set_event_handler(d, on_event, NULL);

	/* 3F/0E, same disk: the READ goes on after the check */
	int inq = tcount(0x12);
	unit_attention(0x28, 1, 0x3f, 0x0e);
	CHECK_EQ("READ answered 3F/0E, same disk: succeeds", 0, blkdev_read_sync(d, 0, 4096, buf));
	CHECK("3F/0E asks for a rescan", wait_events(LUN_EVENT_RESCAN, 1) >= 1);
	CHECK("saying which unit attention", strstr(EV.why, "reported LUNs data has changed"));
	CHECK("the identity was checked on the live session (INQUIRY VPD)", tcount(0x12) > inq);
	struct lun_stats st;
	lun_get_stats(d, &st);
	CHECK_EQ("one identity check", 1, st.identity_checks);
	CHECK("the LUN is fine", !lun_is_failed(d));
	CHECK_EQ("explicit check: same disk", 0, lun_check_identity(d, 5000));

	/* 3F/03 on a WRITE, and another disk now answers at the address */
	pthread_mutex_lock(&T.lock);
	memcpy(was, T.disk[0] + 8192, sizeof(was));
	T.wwn[0] = 0x42;
	pthread_mutex_unlock(&T.lock);
	int writes = tcount(0x2a);
	memset(buf, 0xee, sizeof(buf));
	unit_attention(0x2a, 1, 0x3f, 0x03);
	CHECK_EQ("WRITE answered 3F/03, another disk: fails", -EIO,
		 blkdev_write_sync(d, 8192, 4096, buf));
	CHECK_EQ("the WRITE never reached the other disk", writes, tcount(0x2a));
	pthread_mutex_lock(&T.lock);
	CHECK("its data is untouched", memcmp(was, T.disk[0] + 8192, sizeof(was)) == 0);
	pthread_mutex_unlock(&T.lock);
	CHECK("the LUN failed for good", lun_is_failed(d));
	CHECK_EQ("reported as failed", 1, wait_events(LUN_EVENT_FAILED, 1));
	CHECK("and a rescan asked for", events(LUN_EVENT_RESCAN) >= 2);
	int reads = tcount(0x28);
	CHECK_EQ("later READs fail", -EIO, blkdev_read_sync(d, 0, 4096, buf));
	CHECK_EQ("without reaching the target", reads, tcount(0x28));
	d->ops->destroy(d);

	/* an explicit check that finds another disk */
	target_reset();
	d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	pthread_mutex_lock(&T.lock);
	T.wwn[0] = 0x43;
	pthread_mutex_unlock(&T.lock);
	CHECK_EQ("explicit check: another disk", -ENODEV, lun_check_identity(d, 5000));
	CHECK("fails the LUN", lun_is_failed(d));
	d->ops->destroy(d);
}

/* While the identity check after a unit attention has no answer, new commands of the
 * LUN wait (they could reach another disk); once it says "same disk" they go on. */
static void test_commands_wait_for_identity(void)
{
	struct lun_info info;
	uint8_t rbuf[4096], wbuf[4096];
	target_reset();
	events_reset();
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	unit_attention(0x28, 1, 0x3f, 0x03);
	pthread_mutex_lock(&T.lock);
	T.bad_op = 0x12; /* INQUIRY goes unanswered for now */
	T.bad_count = 1;
	T.bad_hang = true;
	pthread_mutex_unlock(&T.lock);
	struct async_wait r = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
	struct async_wait w = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
	int writes = tcount(0x2a);
	CHECK_EQ("READ accepted", 0, d->ops->read(d, 0, 4096, rbuf, async_cb, &r));
	struct lun_stats st = { 0 };
	for (int i = 0; i < 500 && !st.identity_checks; i++) {
		usleep(10000);
		lun_get_stats(d, &st);
	}
	CHECK_EQ("the check started", 1, st.identity_checks);
	memset(wbuf, 0x31, sizeof(wbuf));
	CHECK_EQ("WRITE accepted", 0, d->ops->write(d, 4096, 4096, wbuf, async_cb, &w));
	usleep(200000);
	CHECK_EQ("the WRITE waits for the check: not sent", writes, tcount(0x2a));
	pthread_mutex_lock(&w.m);
	CHECK("and not completed", !w.done);
	pthread_mutex_unlock(&w.m);
	pthread_mutex_lock(&T.lock);
	T.bad_count = 0; /* the target answers INQUIRY again: same disk */
	T.bad_hang = false;
	pthread_mutex_unlock(&T.lock);
	uint64_t one = 1;
	ssize_t wr = write(last_conn->efd, &one, sizeof(one));
	(void)wr;
	CHECK_EQ("the READ completes", 0, async_wait(&r));
	CHECK_EQ("the WRITE completes", 0, async_wait(&w));
	CHECK_EQ("and was sent once", writes + 1, tcount(0x2a));
	pthread_mutex_lock(&T.lock);
	CHECK("its data is on the disk", memcmp(T.disk[0] + 4096, wbuf, sizeof(wbuf)) == 0);
	pthread_mutex_unlock(&T.lock);
	d->ops->destroy(d);
}

/* The lun-swap fault: an admin deletes a LUN and creates another disk at its number
 * while a handle has dirty data for the old one. Every sign that the logical unit at
 * the address may not be the one identified - a 29/xx unit attention (what a new LU
 * reports first), LOGICAL UNIT NOT SUPPORTED (25/00: nothing there now), or simply a
 * pause before a write (tgt gives a new LU no unit attention at all) - holds the LUN's
 * commands until VPD 0x83 is checked on the live session; another disk (or none) never
 * gets a byte, the same disk gets its data. */
static void swap_wwn(uint8_t wwn)
{
	pthread_mutex_lock(&T.lock);
	T.wwn[0] = wwn;
	pthread_mutex_unlock(&T.lock);
}

static bool disk_is(uint64_t off, const uint8_t *want, size_t len)
{
	pthread_mutex_lock(&T.lock);
	bool same = memcmp(T.disk[0] + off, want, len) == 0;
	pthread_mutex_unlock(&T.lock);
	return same;
}

static void test_lun_swap(void)
{
	struct lun_info info;
	uint8_t buf[4096], zero[4096];
	struct lun_stats st;
	memset(zero, 0, sizeof(zero));

	/* 29/00 on a READ, same disk: checked, then the READ goes on */
	target_reset();
	events_reset();
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	lun_set_event_handler(d, on_event, NULL);
	int inq = tcount(0x12);
	unit_attention(0x28, 1, 0x29, 0x00);
	CHECK_EQ("READ answered 29/00, same disk: succeeds", 0, blkdev_read_sync(d, 0, 4096, buf));
	CHECK("29/00: the identity was checked on the live session", tcount(0x12) > inq);
	lun_get_stats(d, &st);
	CHECK_EQ("29/00: one identity check", 1, st.identity_checks);
	CHECK("29/00, same disk: the LUN is fine", !lun_is_failed(d));

	/* 29/07 (I_T nexus loss) on a WRITE, and another disk answers now */
	swap_wwn(0x51);
	int writes = tcount(0x2a);
	memset(buf, 0xa5, sizeof(buf));
	unit_attention(0x2a, 1, 0x29, 0x07);
	CHECK_EQ("WRITE answered 29/07, another disk: fails", -EIO,
		 blkdev_write_sync(d, 8192, 4096, buf));
	CHECK_EQ("29/07: the WRITE never reached the other disk", writes, tcount(0x2a));
	CHECK("29/07: the other disk is untouched", disk_is(8192, zero, sizeof(zero)));
	CHECK("29/07: the LUN failed for good", lun_is_failed(d));
	CHECK_EQ("29/07: reported as failed", 1, wait_events(LUN_EVENT_FAILED, 1));
	d->ops->destroy(d);

	/* 25/00 on a WRITE and the LUN stays gone: the WRITE is not retried blindly; a
	 * rescan is asked for; the check finds nothing there: the LUN fails */
	target_reset();
	events_reset();
	d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	lun_set_event_handler(d, on_event, NULL);
	pthread_mutex_lock(&T.lock);
	T.nluns = 0; /* every command to LUN 1 gets ILLEGAL REQUEST 25/00 */
	pthread_mutex_unlock(&T.lock);
	writes = tcount(0x2a);
	CHECK_EQ("WRITE answered 25/00, LUN gone: fails", -EIO, blkdev_write_sync(d, 0, 4096, buf));
	CHECK_EQ("25/00: the WRITE was sent once, not retried blindly", writes + 1, tcount(0x2a));
	CHECK("25/00: a rescan is asked for", wait_events(LUN_EVENT_RESCAN, 1) >= 1);
	CHECK("25/00, gone: the LUN failed for good", lun_is_failed(d));
	CHECK("25/00: saying it is gone", wait_events(LUN_EVENT_FAILED, 1) == 1 &&
					      strstr(EV.why, "gone") != NULL);
	d->ops->destroy(d);

	/* 25/00, and by the time of the check another disk is at the address */
	target_reset();
	events_reset();
	d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	lun_set_event_handler(d, on_event, NULL);
	lu_absent(0x2a, 1);
	swap_wwn(0x52);
	writes = tcount(0x2a);
	CHECK_EQ("WRITE answered 25/00, then another disk: fails", -EIO,
		 blkdev_write_sync(d, 8192, 4096, buf));
	CHECK_EQ("the WRITE was not sent again", writes, tcount(0x2a));
	CHECK("the new disk is untouched", disk_is(8192, zero, sizeof(zero)));
	CHECK("the LUN failed for good", lun_is_failed(d));
	d->ops->destroy(d);

	/* 25/00 for a moment, and the same disk is back: the WRITE goes on after the check */
	target_reset();
	d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	lu_absent(0x2a, 1);
	CHECK_EQ("WRITE answered 25/00 once, same disk back: succeeds", 0,
		 blkdev_write_sync(d, 8192, 4096, buf));
	CHECK("its data is on the disk", disk_is(8192, buf, sizeof(buf)));
	CHECK("the LUN is fine", !lun_is_failed(d));
	d->ops->destroy(d);

	/* 29/00 consumed by the LUN's own READ CAPACITY (a rescan's): its data commands
	 * wait for the identity all the same */
	target_reset();
	d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	unit_attention(0x9e, 1, 0x29, 0x00);
	swap_wwn(0x54);
	CHECK_EQ("READ CAPACITY answered 29/00, then read", 0, lun_check_capacity(d, "on rescan", 0));
	writes = tcount(0x2a);
	CHECK_EQ("the WRITE after it: another disk, fails", -EIO,
		 blkdev_write_sync(d, 8192, 4096, buf));
	CHECK_EQ("and never reached it", writes, tcount(0x2a));
	CHECK("the LUN failed for good", lun_is_failed(d));
	d->ops->destroy(d);

	/* no signal at all (tgt's new LU): a WRITE after a pause checks first */
	target_reset();
	events_reset();
	d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	lun_set_event_handler(d, on_event, NULL);
	CHECK_EQ("a WRITE right away", 0, blkdev_write_sync(d, 0, 4096, buf));
	usleep(400000);
	inq = tcount(0x12);
	CHECK_EQ("a WRITE after a pause, same disk", 0, blkdev_write_sync(d, 4096, 4096, buf));
	CHECK("the pause made it check the identity first", tcount(0x12) > inq);
	CHECK("its data is on the disk", disk_is(4096, buf, sizeof(buf)));
	usleep(400000);
	swap_wwn(0x53);
	writes = tcount(0x2a);
	CHECK_EQ("a WRITE after a pause, another disk now: fails", -EIO,
		 blkdev_write_sync(d, 8192, 4096, buf));
	CHECK_EQ("and never reached it", writes, tcount(0x2a));
	CHECK("the other disk is untouched", disk_is(8192, zero, sizeof(zero)));
	CHECK("the LUN failed for good", lun_is_failed(d));
	CHECK_EQ("reported as failed", 1, wait_events(LUN_EVENT_FAILED, 1));
	d->ops->destroy(d);
}

/* ---------- issue 11: how a target's LUN set changed ---------- */

static struct lun_info mk_info(int number, uint8_t wwn, uint64_t nblocks)
{
	struct lun_info i;
	memset(&i, 0, sizeof(i));
	i.lun = lunaddr_from_number(number);
	i.block_size = 512;
	i.nblocks = nblocks;
	snprintf(i.vendor, sizeof(i.vendor), "FAKE");
	snprintf(i.product, sizeof(i.product), "DISK");
	if (wwn) {
		uint8_t p[16] = { 0, 0x83, 0, 12, 0x01, 0x03, 0, 8, 0x60, 0, 0, 0, 0, 0, 0, wwn };
		memcpy(i.vpd83, p, sizeof(p));
		i.vpd83_len = sizeof(p);
		snprintf(i.wwn, sizeof(i.wwn), "naa.60000000000000%02x", wwn);
	}
	return i;
}

static struct target_lun mk_tl(struct lun_info info)
{
	struct target_lun t;
	memset(&t, 0, sizeof(t));
	t.info = info;
	snprintf(t.label, sizeof(t.label), "%s", LUNSTR(info.lun));
	t.probed = t.mountable = true;
	return t;
}

/* Whether `c` holds a change of this kind for these indices. */
static bool has_change(const struct target_change *c, int n, enum target_change_kind k, int cur,
		       int now)
{
	for (int i = 0; i < n; i++)
		if (c[i].kind == k && c[i].cur == cur && c[i].now == now)
			return true;
	return false;
}

static void test_lun_set_diff(void)
{
	struct lun_info cur[6] = { mk_info(1, 1, 2048), mk_info(2, 2, 2048), mk_info(3, 3, 2048),
				   mk_info(5, 5, 2048), mk_info(6, 6, 2048), mk_info(7, 0, 2048) };
	struct target_lun now[9];
	int k = 0;
	now[k++] = mk_tl(mk_info(1, 1, 4096));          /* 0: LUN 1 grew */
	/* LUN 2: no longer reported */
	now[k++] = mk_tl(mk_info(3, 9, 2048));          /* 1: LUN 3 is another disk now */
	now[k++] = mk_tl(mk_info(4, 4, 2048));          /* 2: LUN 4 is new */
	now[k] = mk_tl(mk_info(5, 5, 2048));            /* 3: LUN 5: probe failed, EIO */
	now[k].probed = now[k].mountable = false;
	now[k++].err = -EIO;
	now[k] = mk_tl(mk_info(6, 6, 2048));            /* 4: LUN 6 became a tape */
	now[k].info.devtype = 1;
	now[k++].mountable = false;
	now[k] = mk_tl(mk_info(7, 0, 2048));            /* 5: LUN 7 (no VPD) other product */
	snprintf(now[k++].info.product, sizeof(now[0].info.product), "OTHER");
	now[k] = mk_tl(mk_info(8, 4, 2048));            /* 6: LUN 8: LUN 4's designator */
	snprintf(now[k++].reason, sizeof(now[0].reason), "same VPD 0x83 identifier as LUN 4");
	now[k] = mk_tl(mk_info(9, 0, 2048));            /* 7: LUN 9: not a disk, not a file */
	now[k].info.devtype = 5;
	now[k++].mountable = false;
	struct target_change *c = NULL;
	int n = target_diff_luns(cur, 6, now, k, &c);
	CHECK_EQ("changes", 8, n);
	CHECK("LUN 1 grew: resized, kept", has_change(c, n, TARGET_LUN_RESIZED, 0, 0));
	CHECK("LUN 2 no longer reported: removed", has_change(c, n, TARGET_LUN_REMOVED, 1, -1));
	CHECK("LUN 3 another disk: removed", has_change(c, n, TARGET_LUN_REMOVED, 2, 1));
	CHECK("LUN 3 another disk: and added as a new file", has_change(c, n, TARGET_LUN_ADDED, -1, 1));
	CHECK("LUN 4 new: added", has_change(c, n, TARGET_LUN_ADDED, -1, 2));
	CHECK("LUN 5 not probed this time: kept", !has_change(c, n, TARGET_LUN_REMOVED, 3, 3));
	CHECK("LUN 6 became a tape: removed", has_change(c, n, TARGET_LUN_REMOVED, 4, 4));
	CHECK("LUN 7 without VPD, another product: removed", has_change(c, n, TARGET_LUN_REMOVED, 5, 5));
	CHECK("LUN 7 ... and the new one added", has_change(c, n, TARGET_LUN_ADDED, -1, 5));
	CHECK("LUN 8 with LUN 4's designator: not added", !has_change(c, n, TARGET_LUN_ADDED, -1, 6));
	CHECK("LUN 9 not a disk: not added", !has_change(c, n, TARGET_LUN_ADDED, -1, 7));
	/* order: removals and resizes first */
	bool seen_add = false, order_ok = true;
	for (int i = 0; i < n; i++) {
		seen_add |= c[i].kind == TARGET_LUN_ADDED;
		order_ok &= !(seen_add && c[i].kind != TARGET_LUN_ADDED);
	}
	CHECK("removals before additions", order_ok);
	for (int i = 0; i < n; i++)
		if (c[i].kind == TARGET_LUN_REMOVED && c[i].cur == 2)
			CHECK("why names the changed page", strstr(c[i].why, "0x83") != NULL);
	free(c);

	/* LUN 7 (no VPD pages): the product changed, so it is a new disk; count exactly */
	struct lun_info c7 = mk_info(7, 0, 2048);
	struct target_lun n7 = mk_tl(mk_info(7, 0, 2048));
	snprintf(n7.info.product, sizeof(n7.info.product), "OTHER");
	n = target_diff_luns(&c7, 1, &n7, 1, &c);
	CHECK_EQ("no VPD, other product: removal + addition", 2, n);
	if (n == 2)
		CHECK("removal then addition", c[0].kind == TARGET_LUN_REMOVED &&
						       c[1].kind == TARGET_LUN_ADDED);
	free(c);

	/* the same disk with another block size is another disk */
	struct target_lun bs = mk_tl(mk_info(1, 1, 256));
	bs.info.block_size = 4096;
	n = target_diff_luns(&cur[0], 1, &bs, 1, &c);
	CHECK_EQ("block size 512 -> 4096: removal + addition", 2, n);
	free(c);

	/* nothing changed */
	struct target_lun same[2] = { mk_tl(cur[0]), mk_tl(cur[1]) };
	c = (void *)1;
	n = target_diff_luns(cur, 2, same, 2, &c);
	CHECK_EQ("nothing changed", 0, n);
	CHECK("no list", c == NULL);
	free(c);

	/* gone for the target: ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED at probe */
	struct target_lun gone = mk_tl(cur[0]);
	gone.probed = gone.mountable = false;
	gone.err = -ENODEV;
	n = target_diff_luns(cur, 1, &gone, 1, &c);
	CHECK_EQ("LU not supported: removed", 1, n);
	if (n == 1)
		CHECK("removed", c[0].kind == TARGET_LUN_REMOVED);
	free(c);

	/* an empty mount gains its first LUN; a target loses its last */
	n = target_diff_luns(NULL, 0, same, 1, &c);
	CHECK_EQ("first LUN added", 1, n);
	free(c);
	n = target_diff_luns(cur, 1, NULL, 0, &c);
	CHECK_EQ("last LUN removed", 1, n);
	free(c);

	/* target_same_disk: address, serial */
	struct lun_info a = mk_info(1, 1, 10), b = mk_info(1, 1, 20);
	CHECK("capacity alone does not change identity", target_same_disk(&a, &b, NULL, 0));
	b.vpd80_len = 8;
	memcpy(b.vpd80, "\0\x80\0\x04SN01", 8);
	char why[160];
	CHECK("a serial number appearing changes identity", !target_same_disk(&a, &b, why, sizeof(why)));
	CHECK("and says so", strstr(why, "0x80") != NULL);
}

/* target_rescan over the fake target: LUNs added, removed, replaced, resized. */
static void set_luns(const int *numbers, const uint8_t *wwns, int n, int reported_only)
{
	pthread_mutex_lock(&T.lock);
	T.nreport = n + reported_only;
	T.nluns = n;
	for (int i = 0; i < n; i++) {
		T.report[i] = T.lun[i] = lunaddr_from_number(numbers[i]);
		T.wwn[i] = wwns[i];
		T.devtype[i] = 0;
	}
	if (reported_only) /* reported, but nothing answers at it */
		T.report[n] = lunaddr_from_number(9);
	pthread_mutex_unlock(&T.lock);
}

static int rescan_once(struct fs_target *t, const struct lun_info *cur, int ncur,
		       struct target_lun **now, struct target_change **c)
{
	char err[CONFIG_ERRLEN] = "";
	int nnow = 0;
	int n = target_rescan(&cfg, t, cur, ncur, NULL, now, &nnow, c, err, sizeof(err));
	if (n < 0)
		fprintf(stderr, "  target_rescan: %s\n", err);
	return n;
}

static void test_target_rescan(void)
{
	struct fs_target t = { .nsess = 1 };
	struct lun_info *cur = NULL;
	struct target_lun *now = NULL;
	struct target_change *c = NULL;
	char err[CONFIG_ERRLEN] = "";
	int ncur = 0;
	snprintf(t.name, sizeof(t.name), TARGET);
	t.sess[0] = S;
	target_reset();
	cfg.url.lun = -1;
	set_luns((int[]){ 1, 2 }, (uint8_t[]){ 1, 2 }, 2, 0);
	CHECK_EQ("mount-time LUNs", 0, target_probe_luns(&cfg, &t, false, &cur, &ncur, err, sizeof(err)));
	CHECK_EQ("two", 2, ncur);

	CHECK_EQ("nothing changed", 0, rescan_once(&t, cur, ncur, &now, &c));
	free(now), free(c);

	set_luns((int[]){ 1, 2, 3 }, (uint8_t[]){ 1, 2, 3 }, 3, 0);
	CHECK_EQ("LUN 3 created", 1, rescan_once(&t, cur, ncur, &now, &c));
	if (c)
		CHECK("added, LUN 3", c[0].kind == TARGET_LUN_ADDED &&
					      lunaddr_number(now[c[0].now].info.lun) == 3);
	free(now), free(c);

	set_luns((int[]){ 1 }, (uint8_t[]){ 1 }, 1, 0);
	CHECK_EQ("LUN 2 deleted", 1, rescan_once(&t, cur, ncur, &now, &c));
	if (c)
		CHECK("removed, LUN 2", c[0].kind == TARGET_LUN_REMOVED && c[0].cur == 1);
	free(now), free(c);

	set_luns((int[]){ 1, 2 }, (uint8_t[]){ 7, 2 }, 2, 0);
	CHECK_EQ("LUN 1 replaced by another disk", 2, rescan_once(&t, cur, ncur, &now, &c));
	if (c)
		CHECK("removal then addition", c[0].kind == TARGET_LUN_REMOVED && c[0].cur == 0 &&
						       c[1].kind == TARGET_LUN_ADDED);
	free(now), free(c);

	set_luns((int[]){ 1, 2 }, (uint8_t[]){ 1, 2 }, 2, 0);
	set_last_lba((4u << 20) / 512 - 1, 512);
	CHECK_EQ("both grew", 2, rescan_once(&t, cur, ncur, &now, &c));
	if (c)
		CHECK("resized", c[0].kind == TARGET_LUN_RESIZED && c[1].kind == TARGET_LUN_RESIZED);
	free(now), free(c);
	set_last_lba((1u << 20) / 512 - 1, 512);

	/* LUN 2 still reported, but ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED */
	set_luns((int[]){ 1 }, (uint8_t[]){ 1 }, 1, 0);
	pthread_mutex_lock(&T.lock);
	T.nreport = 2;
	T.report[1] = lunaddr_from_number(2);
	pthread_mutex_unlock(&T.lock);
	CHECK_EQ("LUN 2 reported, not answering", 1, rescan_once(&t, cur, ncur, &now, &c));
	if (c)
		CHECK("removed", c[0].kind == TARGET_LUN_REMOVED && c[0].cur == 1);
	free(now), free(c);

	/* trusted files are not probed again: only the new LUN is */
	set_luns((int[]){ 1, 2, 3 }, (uint8_t[]){ 1, 2, 3 }, 3, 0);
	bool trusted[2] = { true, true };
	int inq = tcount(0x12), nnow = 0;
	CHECK_EQ("trusted: LUN 3 added", 1,
		 target_rescan(&cfg, &t, cur, ncur, trusted, &now, &nnow, &c, err, sizeof(err)));
	CHECK("only LUN 3 probed (standard INQUIRY + VPD 0x00, 0x80?, 0x83, 0xB0, 0xB2)",
	      tcount(0x12) - inq <= 6);
	free(now), free(c);
	set_luns((int[]){ 1, 3 }, (uint8_t[]){ 9, 3 }, 2, 0);
	CHECK_EQ("trusted LUN 1 (another disk now, but trusted) kept; LUN 2 removed; 3 added", 2,
		 target_rescan(&cfg, &t, cur, ncur, trusted, &now, &nnow, &c, err, sizeof(err)));
	free(now), free(c);

	/* REPORT LUNS itself failing: nothing known, nothing changes */
	misbehave(0xa0, 1, 2, 4, 0x44, 0, 0);
	CHECK("REPORT LUNS failing: an error, no change", rescan_once(&t, cur, ncur, &now, &c) < 0);
	CHECK("no lists", now == NULL && c == NULL);
	misbehave(-1, 0, 0, 0, 0, 0, 0);
	free(cur);
}

/* A LUN that leaves the namespace (lun_retire) sends nothing more, not even the retry
 * of a command the target asked to retry; lun_inflight says when nothing of it is left. */
static void test_retire(void)
{
	struct lun_info info;
	uint8_t buf[4096];
	target_reset();
	struct blkdev *d = open_lun(lunaddr_from_number(1), &info);
	if (!d)
		return;
	CHECK_EQ("nothing in flight", 0, lun_inflight(d));
	misbehave(0x28, 100, 8, 0, 0, 0, 0); /* BUSY: retried with backoff */
	struct async_wait w = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
	CHECK_EQ("READ accepted", 0, d->ops->read(d, 0, 4096, buf, async_cb, &w));
	for (int i = 0; i < 200 && tcount(0x28) < 2; i++)
		usleep(5000);
	CHECK_EQ("one request in flight", 1, lun_inflight(d));
	lun_retire(d, "no longer reported by REPORT LUNS");
	int reads = tcount(0x28);
	CHECK_EQ("the request fails", -EIO, async_wait(&w));
	CHECK("its retry was not sent", tcount(0x28) <= reads + 1);
	CHECK_EQ("nothing in flight", 0, lun_inflight(d));
	CHECK_EQ("new requests fail at once", -EIO, blkdev_read_sync(d, 0, 4096, buf));
	misbehave(-1, 0, 0, 0, 0, 0, 0);
	d->ops->destroy(d);
}

int main(void)
{
	log_init(false);
	pthread_mutex_init(&T.lock, NULL);
	config_init(&cfg);
	snprintf(cfg.initiator, sizeof(cfg.initiator), "iqn.2026-01.org.iscsifs:unit");
	cfg.noop_interval = 0;
	cfg.cmd_timeout = 30;
	cfg.login_timeout = 5;
	cfg.replacement_timeout = 60;
	target_reset();
	open_session();

	test_check_condition_is_never_success();
	test_discard_window();
	test_write_zeroes();
	test_histograms();
	test_capacity();
	test_report_luns();
	test_naming();
	test_capacity_follows();
	test_identity_unit_attentions();
	test_commands_wait_for_identity();
	test_lun_swap();
	test_lun_set_diff();
	test_target_rescan();
	test_retire();

	session_destroy(S);
	printf(failures ? "test_lun: %d failed\n" : "test_lun: all passed\n", failures);
	return failures != 0;
}
