/*
 * lun.c - a LUN as a blkdev: LBA arithmetic, CDBs, retries, sense -> errno.
 *
 * A request (read, write, flush, discard, write zeroes) is a range of blocks cut into
 * commands of at most a per-operation number of blocks: READ/WRITE max_xfer bytes,
 * UNMAP the LUN's MAXIMUM UNMAP LBA COUNT, WRITE SAME its MAXIMUM WRITE SAME LENGTH
 * (both capped at MAX_BLOCKS_PER_CMD, as Linux's sd does). Commands are generated
 * lazily: at most REQ_WINDOW of one request are in flight and the next is built when
 * one completes, so what a single request holds is bounded whatever its length and
 * the LUN's limits (a 512 MiB discard on a LUN that allows 1 block per UNMAP is a
 * million commands, REQ_WINDOW at a time, in REQ_WINDOW preallocated structures).
 * After the first error no new command is issued; the request completes, with that
 * error, when the last command in flight does.
 *
 * Each command goes to the next session (round-robin). A command that gets a transient
 * status (sense.c says RETRY) is re-submitted with a backoff delay
 * (session_cmd.not_before_ms), at most MAX_TRIES times and never past its time budget
 * (session_cmd.expire_ms: set by the session at the command's first submission and kept
 * across our retries; a retry that would pass it fails the command with EIO instead).
 *
 * Success is GOOD or CONDITION MET with every byte accounted for (judge()): a CHECK
 * CONDITION is never success (sense.c), a READ must have received all it asked for, a
 * WRITE must have sent all of it. A failed command's buffer is never used.
 * 10-byte CDBs are used when LBA and length fit, 16-byte ones otherwise (LUNs > 2 TiB).
 *
 * A LUN that changes while mounted (lun.h): the capacity in blocks (`nblocks`) and
 * dev.size change atomically when READ CAPACITY says so; every command is checked
 * against `nblocks` when it is built, so after a shrink nothing past the new end is
 * sent. A sign that the LUN may be another disk (a unit attention sense.c flags
 * inquiry_changed, a "no LU here" answer, a write after a pause: lun.h) starts an
 * identity check (INQUIRY VPD 0x83/0x80, as the session does after a re-login); while
 * it runs, `verifying` is set and commands of the LUN wait in `parked` instead of
 * being submitted; the verdict releases or fails them. Parking never blocks a thread:
 * a write-back whose commands are parked simply completes later, with EIO when the
 * disk changed, and its data stays dirty in the cache until the rescan retires the LUN
 * and reports it lost.
 *
 * Thread model: no thread of its own. Entry points run on any thread; completion
 * callbacks run on session threads. A request's generator state is protected by its
 * `lock`; the LUN's counters and `nblocks`/dev.size/`failed` are atomic; `lock`
 * protects the identity check state and capacity updates (taken before `ev_lock`,
 * which serialises event delivery).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iscsifs/log.h"
#include "iscsifs/lun.h"
#include "iscsifs/sense.h"
#include "iscsifs/util.h"

#define MAX_TRIES 8
#define MAX_SESSIONS 16
#define REQ_WINDOW 16                /* commands of one request in flight at once */
#define MAX_BLOCKS_PER_CMD 0x7fffffu /* UNMAP / WRITE SAME, whatever the LUN allows */
#define WS_DEFAULT_BLOCKS 65536u     /* WRITE SAME when the LUN reports no limit */
#define IDLE_CHECK_MS 250            /* identity check before a write after a pause */

/*
 * What the session reports besides status and sense (usable sense, the time budget,
 * the Data-In proven to have arrived). These accessors are the only place that reads
 * the fields, so the rules below (judge()) hold for whichever transport fills them.
 */
static bool cmd_sense_valid(const struct session_cmd *c)
{
	return c->sense_valid;
}

/* The command's time budget: set by the session at its first submission, kept by us
 * across retries (chunk_prepare clears it for each new command). 0: none. */
static uint64_t cmd_expire_ms(const struct session_cmd *c)
{
	return c->expire_ms;
}

/* Bytes of Data-In proven to have arrived in order from the start of the buffer (READ
 * direction only); UINT32_MAX when there is nothing to count or no way to. */
static uint32_t cmd_data_in(const struct session_cmd *c)
{
	return c->dir == SESSION_DIR_READ ? c->data_in : UINT32_MAX;
}

enum op { OP_READ, OP_WRITE, OP_FLUSH, OP_UNMAP, OP_WRITE_SAME, OP_ZERO_WRITE };
static const char *const op_names[] = { "read", "write", "synchronize cache", "unmap",
					"write same", "zero write" };

struct lun {
	struct blkdev dev;
	struct session *sess[MAX_SESSIONS];
	int nsess;
	unsigned rr;                 /* atomic: round-robin cursor */
	struct lun_info info;        /* immutable: as discovered at lun_create */
	char target[CONFIG_NAME_MAX];
	uint32_t bs;                 /* immutable: a new block size fails the LUN */
	uint64_t nblocks;            /* atomic: the capacity now; dev.size = nblocks * bs */
	uint64_t max_xfer;           /* bytes per READ/WRITE command */
	uint64_t unmap_blocks;       /* blocks per UNMAP command */
	uint64_t ws_blocks;          /* blocks per WRITE SAME command */
	void *zeroes;                /* max_xfer bytes of zeroes: WRITE SAME data and zero
	                                writes; never written after lun_create */
	struct lun_stats st;         /* atomic adds */
	int cap_check;               /* atomic: a capacity re-read is in flight */
	int refs;                    /* atomic: the blkdev's own + one per request and per
	                                check in flight (which may complete after
	                                lun_destroy: a LUN removed while mounted is
	                                destroyed with its cache's I/O still running) */
	int failed;                  /* atomic: the LUN changed identity (seen on any
	                                session): every request fails with EIO */
	int nreq;                    /* atomic: requests started and not finished */
	int slow_unmap_noted;        /* atomic: the notice about a small UNMAP limit */
	int past_end_noted;          /* atomic: a request past the end was logged since the
	                                last capacity change */
	pthread_mutex_t lock;
	int verifying;               /* written under lock, read atomically: an identity
	                                check runs (after a unit attention, a "no LUN
	                                here" answer, or a pause before a write) */
	bool verify_quiet;           /* lock: the check running is the routine one before
	                                a write after a pause: its "same disk" is not news */
	struct lun_chunk *parked;    /* lock: commands waiting for its verdict */
	uint64_t last_answer_ms;     /* atomic: when the target last answered a command of
	                                this LUN (util_now_ms) */
	pthread_mutex_t ev_lock;     /* held while an event is delivered */
	lun_event_fn ev_fn;          /* ev_lock */
	void *ev_opaque;             /* ev_lock */
};

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

int lun_capacity(uint64_t last_lba, uint32_t bs, uint64_t *nblocks, uint64_t *bytes)
{
	if (last_lba == UINT64_MAX || bs == 0)
		return -EOVERFLOW;
	uint64_t nb = last_lba + 1;
	if (nb > (uint64_t)INT64_MAX / bs)
		return -EOVERFLOW; /* the product overflows, or exceeds the largest off_t */
	*nblocks = nb;
	*bytes = nb * bs;
	return 0;
}

/* ---------- judging a completed command ---------- */

/* Commands whose answer may be shorter than the allocation length asked for. */
static bool short_answer_ok(const struct session_cmd *c)
{
	switch (c->cdb[0]) {
	case 0x12: /* INQUIRY, VPD pages included */
	case 0xa0: /* REPORT LUNS */
	case 0x1a: /* MODE SENSE(6) */
	case 0x5a: /* MODE SENSE(10) */
	case 0x25: /* READ CAPACITY(10) */
		return true;
	case 0x9e: /* SERVICE ACTION IN(16): READ CAPACITY(16), GET LBA STATUS */
		return (c->cdb[1] & 0x1f) == 0x10 || (c->cdb[1] & 0x1f) == 0x12;
	default:
		return false;
	}
}

static uint64_t backoff_ms(int tries)
{
	return MIN(50ULL << MIN(tries, 6), 2000);
}

/*
 * What a finished command means: 0, -errno, or 1 = retry (the command is re-armed:
 * not_before_ms set, *tries counted). On error `why` says what the target (or the
 * session) did, for the caller's one log line. `start_ms`: when the command was first
 * submitted, to state its time budget. `notes` (may be NULL; the caller zeroes it)
 * receives the sense verdict's notes (capacity changed, LUNs or INQUIRY data changed).
 */
static int judge(struct session_cmd *c, int *tries, struct sense_verdict *notes,
		 uint64_t start_ms, char *why, size_t whylen)
{
	char desc[160];

	why[0] = 0;
	if (c->result < 0) {
		uint64_t now = util_now_ms();
		if (c->result == -ENODEV)
			snprintf(why, whylen, "the LUN changed identity (another disk answers as it)");
		else if (c->result == -ETIMEDOUT && start_ms && now > start_ms)
			snprintf(why, whylen, "no answer within %.0f s (its time budget ran out)",
				 (double)(now - start_ms) / 1000.0);
		else if (c->result == -ETIMEDOUT)
			snprintf(why, whylen, "no answer within its time budget");
		else if (c->result == -EIO)
			snprintf(why, whylen, "the target's answer broke the iSCSI protocol, or the "
				 "connection failed repeatedly (see above)");
		else
			snprintf(why, whylen, "%s", strerror(-c->result));
		return c->result == -ENODEV || c->result == -ETIMEDOUT ? -EIO : c->result;
	}
	bool valid = cmd_sense_valid(c);
	struct sense_verdict v = sense_decide(c->scsi_status, valid, c->sense_key, c->asc, c->ascq);
	if (notes)
		*notes = v; /* what the sense says besides the outcome: capacity, identity */
	if (v.action != SENSE_DONE) {
		uint64_t now = util_now_ms();
		uint64_t delay = v.action == SENSE_RETRY ? backoff_ms(*tries) : 0;
		uint64_t exp = cmd_expire_ms(c);
		bool in_budget = !exp || now + delay < exp;
		if (*tries < MAX_TRIES && in_budget) {
			c->not_before_ms = delay ? now + delay : 0;
			(*tries)++;
			return 1;
		}
		sense_describe(c->scsi_status, valid, c->sense_key, c->asc, c->ascq, desc,
			       sizeof(desc));
		if (!in_budget)
			snprintf(why, whylen, "%s; not retried again: a retry would pass its time "
				 "budget (%.0f s)", desc, (double)(exp - MIN(exp, start_ms)) / 1000.0);
		else
			snprintf(why, whylen, "%s, %d times (retries exhausted)", desc, *tries + 1);
		return v.err;
	}
	if (v.err) {
		sense_describe(c->scsi_status, valid, c->sense_key, c->asc, c->ascq, why, whylen);
		return v.err;
	}
	/* GOOD: every byte accounted for. */
	if (c->residual > c->len) {
		snprintf(why, whylen, "GOOD with a residual of %u bytes for a transfer of %u",
			 c->residual, c->len);
		return -EIO;
	}
	/* A WRITE the target took only part of did not write the rest. (Parameter lists
	 * are not checked: tgt 1.0.85 answers UNMAP with GOOD and its whole parameter list
	 * as residual, and a device server that did not get the list cannot act on it.) */
	if (c->dir == SESSION_DIR_WRITE && c->residual && (c->cdb[0] == 0x2a || c->cdb[0] == 0x8a)) {
		snprintf(why, whylen, "GOOD, but the target took only %u of %u bytes",
			 c->len - c->residual, c->len);
		return -EIO;
	}
	if (c->dir == SESSION_DIR_READ) {
		if (c->residual && !short_answer_ok(c)) {
			snprintf(why, whylen, "GOOD, but short: %u of %u bytes missing (residual)",
				 c->residual, c->len);
			return -EIO;
		}
		uint32_t in = cmd_data_in(c);
		if (in != UINT32_MAX && in != c->len - c->residual) {
			snprintf(why, whylen, "GOOD, but %u bytes of Data-In arrived for %u expected",
				 in, c->len - c->residual);
			return -EIO;
		}
	}
	return 0;
}

int lun_command(struct session *s, struct session_cmd *c, const char *target, const char *what,
		char *why, size_t whylen)
{
	char buf[256];
	int tries = 0;
	uint64_t start = util_now_ms();
	for (;;) {
		c->not_before_ms = 0;
		session_run(s, c);
		int r = judge(c, &tries, NULL, start, buf, sizeof(buf));
		if (r == 1) {
			uint64_t now = util_now_ms();
			if (c->not_before_ms > now)
				usleep((useconds_t)((c->not_before_ms - now) * 1000));
			continue;
		}
		if (r < 0) {
			if (what)
				log_err("%s LUN %s: %s failed: %s", target, LUNSTR(c->lun), what, buf);
			if (why)
				snprintf(why, whylen, "%s", buf);
		}
		return r;
	}
}

/* ---------- statistics ---------- */

static void lat_add(struct lun_latency *h, uint64_t us)
{
	static const uint64_t bounds[LUN_LAT_NBOUNDS] = LUN_LAT_BOUNDS_US;
	int i = 0;
	while (i < LUN_LAT_NBOUNDS && us > bounds[i])
		i++;
	__atomic_fetch_add(&h->bucket[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_us, us, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
}

static void lat_get(const struct lun_latency *h, struct lun_latency *out)
{
	/* count is the sum of the buckets as read, so a reader never sees them disagree */
	out->count = 0;
	for (int i = 0; i < LUN_LAT_BUCKETS; i++) {
		out->bucket[i] = __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
		out->count += out->bucket[i];
	}
	out->sum_us = __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED);
}

/* ---------- asynchronous requests ---------- */

struct lun_chunk;

struct lun_req {
	struct lun *l;
	blkdev_cb cb;
	void *opaque;
	enum op op;
	uint8_t *buf;                /* READ/WRITE: the caller's buffer, for block `lba` */
	uint64_t lba, nblocks;       /* the whole range */
	uint64_t per;                /* blocks per command */
	uint64_t ncmds;              /* commands in all */
	pthread_mutex_t lock;
	/* protected by lock */
	uint64_t next;               /* index of the next command to issue */
	int inflight;
	int err;                     /* the first error */
	bool finished;
	struct lun_chunk *idle;      /* chunks to reuse: REQ_WINDOW at most exist */
};

struct lun_chunk {
	struct session_cmd cmd;
	struct lun_req *req;
	struct lun_chunk *next;      /* in req->idle, or in a batch to submit */
	struct session *s;
	uint64_t lba;
	uint32_t nblocks;
	int tries;
	uint64_t start_us;           /* first submission */
	uint8_t param[24];           /* UNMAP parameter list: header + one descriptor */
};

/* READ/WRITE(10) or (16): opcode10/opcode16 pairs 0x28/0x88, 0x2a/0x8a. */
static void rw_cdb(struct session_cmd *c, bool write, uint64_t lba, uint32_t nblocks)
{
	if (lba + nblocks <= 0xffffffffULL && nblocks <= 0xffff) {
		c->cdb[0] = write ? 0x2a : 0x28;
		put_be32(c->cdb + 2, (uint32_t)lba);
		put_be16(c->cdb + 7, (uint16_t)nblocks);
		c->cdb_len = 10;
	} else {
		c->cdb[0] = write ? 0x8a : 0x88;
		put_be64(c->cdb + 2, lba);
		put_be32(c->cdb + 10, nblocks);
		c->cdb_len = 16;
	}
}

static struct session *pick(struct lun *l)
{
	unsigned i = __atomic_fetch_add(&l->rr, 1, __ATOMIC_RELAXED);
	return l->sess[i % (unsigned)l->nsess];
}

/* Turn an idle chunk into command number `i` of the request. Under r->lock. */
static void chunk_prepare(struct lun_req *r, struct lun_chunk *ch, uint64_t i)
{
	struct lun *l = r->l;
	struct session_cmd *c = &ch->cmd;
	uint64_t lba = r->lba + i * r->per;
	uint32_t nb = (uint32_t)MIN(r->per, r->lba + r->nblocks - lba);

	memset(c, 0, sizeof(*c));
	c->lun = l->info.lun;
	c->done = NULL; /* set by the caller of chunk_prepare */
	ch->lba = lba;
	ch->nblocks = nb;
	ch->tries = 0;
	switch (r->op) {
	case OP_READ:
	case OP_WRITE:
		rw_cdb(c, r->op == OP_WRITE, lba, nb);
		c->dir = r->op == OP_WRITE ? SESSION_DIR_WRITE : SESSION_DIR_READ;
		c->buf = r->buf + (lba - r->lba) * l->bs;
		c->len = nb * l->bs;
		break;
	case OP_ZERO_WRITE:
		rw_cdb(c, true, lba, nb);
		c->dir = SESSION_DIR_WRITE;
		c->buf = l->zeroes;
		c->len = nb * l->bs;
		break;
	case OP_FLUSH:
		c->cdb[0] = 0x35; /* SYNCHRONIZE CACHE(10), whole LUN */
		c->cdb_len = 10;
		break;
	case OP_UNMAP:
		memset(ch->param, 0, sizeof(ch->param));
		put_be16(ch->param, sizeof(ch->param) - 2);  /* UNMAP DATA LENGTH */
		put_be16(ch->param + 2, 16);                 /* BLOCK DESCRIPTOR DATA LENGTH */
		put_be64(ch->param + 8, lba);
		put_be32(ch->param + 16, nb);
		c->cdb[0] = 0x42;
		put_be16(c->cdb + 7, sizeof(ch->param));
		c->cdb_len = 10;
		c->dir = SESSION_DIR_WRITE;
		c->buf = ch->param;
		c->len = sizeof(ch->param);
		break;
	case OP_WRITE_SAME:
		c->cdb[0] = 0x93; /* WRITE SAME(16); UNMAP bit when thin: zeroes anyway */
		c->cdb[1] = l->info.thin && l->info.lbprz ? 0x08 : 0;
		put_be64(c->cdb + 2, lba);
		put_be32(c->cdb + 10, nb);
		c->cdb_len = 16;
		c->dir = SESSION_DIR_WRITE;
		c->buf = l->zeroes;
		c->len = l->bs;
		break;
	}
}

/* ---------- events, failure, capacity and identity while mounted ---------- */

static void lun_put(struct lun *l)
{
	if (__atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		pthread_mutex_destroy(&l->lock);
		pthread_mutex_destroy(&l->ev_lock);
		munmap(l->zeroes, l->max_xfer);
		free(l);
	}
}

static void emit(struct lun *l, enum lun_event_kind kind, uint64_t old_size, uint64_t new_size,
		 const char *why)
{
	struct lun_event ev = { .kind = kind, .lun = l->info.lun, .old_size = old_size,
				.new_size = new_size, .why = why };
	pthread_mutex_lock(&l->ev_lock);
	if (l->ev_fn)
		l->ev_fn(l->ev_opaque, &l->dev, &ev);
	pthread_mutex_unlock(&l->ev_lock);
}

/* The LUN is no longer the disk it was: every request fails from now on. Logged and
 * reported once. */
static void lun_fail(struct lun *l, const char *why)
{
	if (__atomic_exchange_n(&l->failed, 1, __ATOMIC_ACQ_REL))
		return;
	log_err("%s LUN %s: failed for good (%s); every request now fails with EIO", l->target,
		LUNSTR(l->info.lun), why);
	emit(l, LUN_EVENT_FAILED, 0, 0, why);
}

/* A READ CAPACITY answer: apply it (see lun.h). `when` names the cause for the log.
 * Returns 0, -ENODEV (block size changed: the LUN failed) or -EOVERFLOW. */
static int cap_apply(struct lun *l, uint64_t last_lba, uint32_t bs, const char *when)
{
	char why[160];
	uint64_t nb, bytes;
	if (bs != l->bs) {
		snprintf(why, sizeof(why), "its block size changed from %u to %u bytes %s: another "
			 "disk", l->bs, bs, when);
		lun_fail(l, why);
		return -ENODEV;
	}
	if (lun_capacity(last_lba, bs, &nb, &bytes) < 0) {
		log_warn("%s LUN %s: READ CAPACITY %s reports an impossible capacity (last LBA %"
			 PRIu64 ", block size %u); the size stays %" PRIu64 " bytes", l->target,
			 LUNSTR(l->info.lun), when, last_lba, bs, lun_get_size(&l->dev));
		return -EOVERFLOW;
	}
	pthread_mutex_lock(&l->lock); /* one change at a time: old and new pair up */
	uint64_t old = __atomic_load_n(&l->nblocks, __ATOMIC_ACQUIRE);
	__atomic_store_n(&l->st.capacity_blocks, nb, __ATOMIC_RELAXED);
	if (nb != old) {
		__atomic_store_n(&l->nblocks, nb, __ATOMIC_RELEASE);
		__atomic_store_n(&l->dev.size, bytes, __ATOMIC_RELEASE);
		__atomic_store_n(&l->past_end_noted, 0, __ATOMIC_RELAXED);
		__atomic_fetch_add(&l->st.capacity_changes, 1, __ATOMIC_RELAXED);
		if (nb > old)
			log_notice("%s LUN %s: capacity grew %s from %" PRIu64 " to %" PRIu64
				   " bytes (%" PRIu64 " to %" PRIu64 " blocks of %u)", l->target,
				   LUNSTR(l->info.lun), when, old * bs, bytes, old, nb, bs);
		else
			log_warn("%s LUN %s: capacity shrank %s from %" PRIu64 " to %" PRIu64
				 " bytes (%" PRIu64 " to %" PRIu64 " blocks of %u); I/O past the new "
				 "end fails with ENOSPC", l->target, LUNSTR(l->info.lun), when,
				 old * bs, bytes, old, nb, bs);
		emit(l, LUN_EVENT_CAPACITY, old * bs, bytes, when);
	}
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* A one-shot rendezvous on the waiting thread's stack. */
struct waiter {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
	int ret;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->m, NULL);
	pthread_cond_init(&w->c, NULL);
	w->done = false;
	w->ret = 0;
}

static void waiter_cb(void *opaque, int ret)
{
	struct waiter *w = opaque;
	pthread_mutex_lock(&w->m);
	w->ret = ret;
	w->done = true;
	pthread_cond_signal(&w->c);
	pthread_mutex_unlock(&w->m);
}

static int waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->m);
	while (!w->done)
		pthread_cond_wait(&w->c, &w->m);
	pthread_mutex_unlock(&w->m);
	pthread_mutex_destroy(&w->m);
	pthread_cond_destroy(&w->c);
	return w->ret;
}

/* An internal command of the LUN (capacity or identity check): retried as judge()
 * says, its completion `step` run on the session thread. Holds a reference on the LUN,
 * so it may complete after lun_destroy. */
struct check_cmd {
	struct session_cmd cmd;
	struct lun *l;
	struct session *s;
	int tries;
	uint64_t start_ms;
	uint64_t expire_ms;          /* the time budget of each of its commands; 0: the
	                                session's (replacement_timeout) */
	const char *when;            /* capacity: the cause, for the log */
	bool rc10;                   /* capacity: READ CAPACITY(10) after (16) failed */
	int page;                    /* identity: index of the page being checked */
	void (*done)(void *opaque, int ret);
	void *opaque;
	uint8_t buf[255];
};

static struct check_cmd *check_new(struct lun *l, int budget_ms, void (*done)(void *, int),
				   void *opaque)
{
	struct check_cmd *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->l = l;
	k->s = pick(l);
	k->done = done;
	k->opaque = opaque;
	k->start_ms = util_now_ms();
	k->expire_ms = budget_ms > 0 ? k->start_ms + (uint64_t)budget_ms : 0;
	__atomic_fetch_add(&l->refs, 1, __ATOMIC_ACQ_REL);
	return k;
}

static void check_submit(struct check_cmd *k, const uint8_t *cdb, uint8_t cdb_len, uint32_t len,
			 void (*step)(struct session_cmd *))
{
	struct session_cmd *c = &k->cmd;
	memset(c, 0, sizeof(*c));
	c->lun = k->l->info.lun;
	memcpy(c->cdb, cdb, cdb_len);
	c->cdb_len = cdb_len;
	c->dir = SESSION_DIR_READ;
	c->buf = k->buf;
	c->len = len;
	c->done = step;
	c->expire_ms = k->expire_ms;
	k->tries = 0;
	memset(k->buf, 0, sizeof(k->buf));
	session_submit(k->s, c);
}

/* The session failed the command because its check after a re-login found another
 * disk at the LUN's address: the LUN fails for good (as chunk_end does). */
static bool check_found_other_disk(struct check_cmd *k)
{
	if (k->cmd.result != -ENODEV)
		return false;
	lun_fail(k->l, "another disk answers at its address (found by the identity check "
		       "after a re-login)");
	return true;
}

static void check_end(struct check_cmd *k, int ret)
{
	struct lun *l = k->l;
	if (k->done)
		k->done(k->opaque, ret);
	free(k);
	lun_put(l);
}

/* A unit attention consumed by a check's own command is not lost: a LUN inventory
 * change still asks for a rescan (which checks identities and capacities again). */
static void verify_after_ua(struct lun *l, struct lun_chunk *ch, const char *what);

static void check_notes(struct check_cmd *k, const struct sense_verdict *v)
{
	char ua[160];
	struct session_cmd *c = &k->cmd;
	if (!v->luns_changed && !v->inquiry_changed)
		return;
	sense_describe(c->scsi_status, true, c->sense_key, c->asc, c->ascq, ua, sizeof(ua));
	/* and the LUN's own commands wait for its identity, as if they had got it */
	if (v->inquiry_changed)
		verify_after_ua(k->l, NULL, ua);
	emit(k->l, LUN_EVENT_RESCAN, 0, 0, ua);
}

static void cap_step(struct session_cmd *c);

static void cap_send(struct check_cmd *k)
{
	uint8_t cdb[16] = { 0 };
	if (k->rc10) {
		cdb[0] = 0x25; /* READ CAPACITY(10) */
		check_submit(k, cdb, 10, 8, cap_step);
	} else {
		cdb[0] = 0x9e; /* SERVICE ACTION IN(16): READ CAPACITY(16) */
		cdb[1] = 0x10;
		cdb[13] = 32;
		check_submit(k, cdb, 16, 32, cap_step);
	}
}

static void cap_step(struct session_cmd *c)
{
	struct check_cmd *k = (struct check_cmd *)c;
	struct lun *l = k->l;
	char why[256];
	struct sense_verdict notes = { 0 };
	int r = judge(c, &k->tries, &notes, k->start_ms, why, sizeof(why));
	check_notes(k, &notes);
	if (r == 1) {
		session_submit(k->s, c);
		return;
	}
	if (check_found_other_disk(k)) {
		check_end(k, -ENODEV);
		return;
	}
	if (r == -ENODEV && notes.lun_gone) {
		/* LOGICAL UNIT NOT SUPPORTED: nothing answers at the address */
		lun_fail(l, "it is gone: the target says no LUN answers at its address");
		check_end(k, -ENODEV);
		return;
	}
	if ((r == -EOPNOTSUPP || r == -EINVAL) && !k->rc10) {
		k->rc10 = true; /* as discovery did: the LUN may lack READ CAPACITY(16) */
		cap_send(k);
		return;
	}
	uint32_t got = c->len - c->residual;
	if (r == 0 && got < (k->rc10 ? 8u : 12u)) {
		snprintf(why, sizeof(why), "a short answer (%u bytes)", got);
		r = -EIO;
	}
	if (r == 0 && k->rc10 && get_be32(k->buf) == 0xffffffffu) {
		snprintf(why, sizeof(why), "READ CAPACITY(10) says the LUN is too large for it, "
			 "and READ CAPACITY(16) failed");
		r = -EIO;
	}
	if (r == 0)
		r = k->rc10 ? cap_apply(l, get_be32(k->buf), get_be32(k->buf + 4), k->when)
			    : cap_apply(l, get_be64(k->buf), get_be32(k->buf + 8), k->when);
	else
		log_warn("%s LUN %s: reading the capacity %s failed: %s; the size stays %" PRIu64
			 " bytes", l->target, LUNSTR(l->info.lun), k->when, why,
			 lun_get_size(&l->dev));
	check_end(k, r);
}

/* Start a capacity re-read; `done` (may be NULL) gets its result. 0 or -errno. */
static int cap_start(struct lun *l, const char *when, int budget_ms, void (*done)(void *, int),
		     void *opaque)
{
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		return -ENODEV;
	struct check_cmd *k = check_new(l, budget_ms, done, opaque);
	if (!k)
		return -ENOMEM;
	k->when = when;
	cap_send(k);
	return 0;
}

static void cap_ua_done(void *opaque, int ret)
{
	struct lun *l = opaque;
	(void)ret;
	__atomic_store_n(&l->cap_check, 0, __ATOMIC_RELEASE);
}

/* CAPACITY DATA HAS CHANGED: read it again, one re-read at a time. */
static void recheck_capacity(struct lun *l)
{
	if (__atomic_exchange_n(&l->cap_check, 1, __ATOMIC_ACQ_REL))
		return;
	if (cap_start(l, "on a CAPACITY DATA HAS CHANGED unit attention", 0, cap_ua_done, l) < 0)
		__atomic_store_n(&l->cap_check, 0, __ATOMIC_RELEASE);
}

int lun_check_capacity(struct blkdev *dev, const char *when, int budget_ms)
{
	struct lun *l = dev->priv;
	struct waiter w;
	waiter_init(&w);
	int r = cap_start(l, when, budget_ms, waiter_cb, &w);
	if (r < 0)
		waiter_cb(&w, r);
	return waiter_wait(&w);
}

/* The identity pages of the LUN, as lun_create got them. */
static int id_pages(const struct lun *l, uint8_t pages[2])
{
	int n = 0;
	if (l->info.vpd83_len)
		pages[n++] = 0x83;
	if (l->info.vpd80_len)
		pages[n++] = 0x80;
	return n;
}

static void id_step(struct session_cmd *c);

/* The last part of an identity check: the same VPD pages with another block size is
 * the same disk exported otherwise - every block now elsewhere (tgt re-creates a LUN
 * on the same file with --blocksize): READ CAPACITY fails the LUN then (cap_apply),
 * and applies a new size before anything parked is sent. */
static void id_capacity(struct check_cmd *k)
{
	k->when = "when its identity was checked";
	k->rc10 = false;
	cap_send(k);
}

static void id_send(struct check_cmd *k)
{
	uint8_t pages[2];
	uint8_t cdb[16] = { 0x12, 1 }; /* INQUIRY, EVPD */
	id_pages(k->l, pages);
	cdb[2] = pages[k->page];
	cdb[4] = 255;
	check_submit(k, cdb, 6, 255, id_step);
}

static void id_step(struct session_cmd *c)
{
	struct check_cmd *k = (struct check_cmd *)c;
	struct lun *l = k->l;
	char why[256];
	uint8_t pages[2];
	int npages = id_pages(l, pages);
	struct sense_verdict notes = { 0 };
	int r = judge(c, &k->tries, &notes, k->start_ms, why, sizeof(why));
	if (c->result == 0)
		__atomic_store_n(&l->last_answer_ms, util_now_ms(), __ATOMIC_RELAXED);
	check_notes(k, &notes);
	if (r == 1) {
		session_submit(k->s, c);
		return;
	}
	if (check_found_other_disk(k)) {
		check_end(k, -ENODEV);
		return;
	}
	if (r == 0 && c->len - c->residual >= 1 && (k->buf[0] >> 5) == 3) {
		/* peripheral qualifier 011b: "no logical unit at this address" (tgt answers
		 * so, with its LUN 0's page, for a LUN it no longer has) */
		lun_fail(l, "it is gone: the target answers that no logical unit is at its "
			    "address (peripheral qualifier 011b)");
		check_end(k, -ENODEV);
		return;
	}
	if (r == -ENODEV) {
		/* ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED: nothing answers at the address */
		lun_fail(l, "it is gone: the target says no LUN answers at its address");
		check_end(k, -ENODEV);
		return;
	}
	if (r < 0) {
		log_warn("%s LUN %s: checking its identity failed: INQUIRY VPD page 0x%02x: %s",
			 l->target, LUNSTR(l->info.lun), pages[k->page], why);
		check_end(k, r);
		return;
	}
	const uint8_t *was = pages[k->page] == 0x83 ? l->info.vpd83 : l->info.vpd80;
	size_t was_len = pages[k->page] == 0x83 ? l->info.vpd83_len : l->info.vpd80_len;
	/* compare the page as its header sizes it, as the session does after a re-login */
	size_t plen = was_len >= 4 ? MIN(was_len, 4 + (size_t)((was[2] << 8) | was[3])) : was_len;
	if (c->len - c->residual < plen || memcmp(k->buf, was, plen) != 0) {
		snprintf(why, sizeof(why), "another disk answers at its address: VPD page 0x%02x "
			 "changed", pages[k->page]);
		lun_fail(l, why);
		check_end(k, -ENODEV);
		return;
	}
	if (++k->page < npages) {
		id_send(k);
		return;
	}
	id_capacity(k);
}

/* Start an identity check; `done` gets 0 (same), -ENODEV (failed) or -errno. */
static int id_start(struct lun *l, int budget_ms, void (*done)(void *, int), void *opaque)
{
	uint8_t pages[2];
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		return -ENODEV;
	__atomic_fetch_add(&l->st.identity_checks, 1, __ATOMIC_RELAXED);
	struct check_cmd *k = check_new(l, budget_ms, done, opaque);
	if (!k)
		return -ENOMEM;
	if (id_pages(l, pages) == 0)
		id_capacity(k); /* no pages to compare (taken as the same, as the session
		                 * does): the block size still is */
	else
		id_send(k);
	return 0;
}

int lun_check_identity(struct blkdev *dev, int budget_ms)
{
	struct lun *l = dev->priv;
	struct waiter w;
	waiter_init(&w);
	int r = id_start(l, budget_ms, waiter_cb, &w);
	if (r < 0)
		waiter_cb(&w, r);
	return waiter_wait(&w);
}

void lun_set_event_handler(struct blkdev *dev, lun_event_fn fn, void *opaque)
{
	struct lun *l = dev->priv;
	pthread_mutex_lock(&l->ev_lock);
	l->ev_fn = fn;
	l->ev_opaque = opaque;
	pthread_mutex_unlock(&l->ev_lock);
}

uint64_t lun_get_size(struct blkdev *dev)
{
	return __atomic_load_n(&dev->size, __ATOMIC_ACQUIRE);
}

void lun_retire(struct blkdev *dev, const char *why)
{
	lun_fail(dev->priv, why);
}

int lun_inflight(struct blkdev *dev)
{
	struct lun *l = dev->priv;
	return __atomic_load_n(&l->nreq, __ATOMIC_ACQUIRE);
}

bool lun_is_failed(struct blkdev *dev)
{
	struct lun *l = dev->priv;
	return __atomic_load_n(&l->failed, __ATOMIC_ACQUIRE);
}

static void chunk_done(struct session_cmd *c);

static void req_free(struct lun_req *r)
{
	while (r->idle) {
		struct lun_chunk *ch = r->idle;
		r->idle = ch->next;
		free(ch);
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void req_finish(struct lun_req *r)
{
	struct lun *l = r->l;
	/* nothing of it is in flight or will be sent: no longer counted before its caller
	 * hears of it (who may then ask lun_inflight) */
	__atomic_sub_fetch(&l->nreq, 1, __ATOMIC_ACQ_REL);
	r->cb(r->opaque, r->err);
	req_free(r);
	lun_put(l); /* the request's reference: lun_destroy may have come meanwhile */
}

static void chunk_end(struct lun_chunk *ch, int res, const char *why);

/* Submit a command of the LUN, or park it while an identity check runs; a LUN that
 * failed for good sends nothing more, not even a retry. */
static void chunk_send(struct lun *l, struct lun_chunk *ch)
{
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE)) {
		chunk_end(ch, -EIO, "the LUN failed for good");
		return;
	}
	if (__atomic_load_n(&l->verifying, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&l->lock);
		if (l->verifying) {
			ch->next = l->parked;
			l->parked = ch;
			pthread_mutex_unlock(&l->lock);
			return;
		}
		pthread_mutex_unlock(&l->lock);
	}
	session_submit(ch->s, &ch->cmd);
}

/*
 * Issue what the window allows, or finish the request when nothing is left in flight
 * and nothing more will be issued. Submission happens outside the lock: a session
 * that is stopped completes a command inside session_submit.
 */
static void req_pump(struct lun_req *r)
{
	struct lun_chunk *head = NULL, **tail = &head;
	bool finish = false;

	struct lun *l = r->l;
	uint64_t cap = __atomic_load_n(&l->nblocks, __ATOMIC_ACQUIRE), past = UINT64_MAX;
	pthread_mutex_lock(&r->lock);
	while (!r->err && r->next < r->ncmds && r->idle) {
		if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE)) {
			r->err = -EIO; /* logged once by lun_fail */
			break;
		}
		if (r->op != OP_FLUSH) {
			/* never past the end as it is now: after a shrink nothing beyond the new
			 * end reaches the target */
			uint64_t lba = r->lba + r->next * r->per;
			if (lba + MIN(r->per, r->lba + r->nblocks - lba) > cap) {
				r->err = -ENOSPC;
				past = lba;
				break;
			}
		}
		struct lun_chunk *ch = r->idle;
		r->idle = ch->next;
		chunk_prepare(r, ch, r->next++);
		ch->cmd.done = chunk_done;
		ch->next = NULL;
		*tail = ch;
		tail = &ch->next;
		r->inflight++;
	}
	if (!r->finished && r->inflight == 0 && (r->err || r->next == r->ncmds))
		r->finished = finish = true;
	pthread_mutex_unlock(&r->lock);

	/* The request cannot finish before every chunk of this batch has completed, so
	 * `n` is read before its chunk is submitted and may complete. */
	for (struct lun_chunk *ch = head, *n; ch; ch = n) {
		n = ch->next;
		ch->s = pick(l);
		ch->start_us = util_now_us();
		chunk_send(l, ch);
	}
	if (past != UINT64_MAX && !__atomic_exchange_n(&l->past_end_noted, 1, __ATOMIC_ACQ_REL))
		log_warn("%s LUN %s: %s at LBA %" PRIu64 " not sent: past the end of the LUN, "
			 "which now has %" PRIu64 " blocks (ENOSPC; logged once per size change)",
			 l->target, LUNSTR(l->info.lun), op_names[r->op], past, cap);
	if (finish)
		req_finish(r);
}

static void count(struct lun *l, enum op op, const struct session_cmd *c, int res,
		  uint64_t lat_us)
{
	struct lun_stats *st = &l->st;
	switch (op) {
	case OP_READ:
		__atomic_fetch_add(&st->reads, 1, __ATOMIC_RELAXED);
		if (res == 0)
			__atomic_fetch_add(&st->read_bytes, c->len, __ATOMIC_RELAXED);
		__atomic_fetch_add(&st->read_lat_us, lat_us, __ATOMIC_RELAXED);
		lat_add(&st->lat_read, lat_us);
		break;
	case OP_WRITE:
	case OP_ZERO_WRITE:
		__atomic_fetch_add(&st->writes, 1, __ATOMIC_RELAXED);
		if (res == 0)
			__atomic_fetch_add(&st->write_bytes, c->len, __ATOMIC_RELAXED);
		__atomic_fetch_add(&st->write_lat_us, lat_us, __ATOMIC_RELAXED);
		lat_add(&st->lat_write, lat_us);
		break;
	case OP_FLUSH:
		lat_add(&st->lat_flush, lat_us);
		break;
	case OP_UNMAP:
	case OP_WRITE_SAME:
		break;
	}
	if (res < 0)
		__atomic_fetch_add(&st->errors, 1, __ATOMIC_RELAXED);
}

/* The command of `ch` is over with `res` (0 or -errno; `why` says what happened): count
 * it, keep the request's first error, and go on with the request. */
static void chunk_end(struct lun_chunk *ch, int res, const char *why)
{
	struct lun_req *r = ch->req;
	struct lun *l = r->l;
	struct session_cmd *c = &ch->cmd;

	count(l, r->op, c, res, util_now_us() - ch->start_us);
	if (c->result == -ENODEV)
		lun_fail(l, "another disk answers at its address (found by the identity check "
			    "after a re-login)");
	bool first = false;
	pthread_mutex_lock(&r->lock);
	r->inflight--;
	if (res < 0 && !r->err) {
		r->err = res;
		first = true;
	}
	ch->next = r->idle;
	r->idle = ch;
	pthread_mutex_unlock(&r->lock);
	/* One line per failed request, where the failure starts (the commands still in
	 * flight may fail the same way; their outcome no longer changes the result). A LUN
	 * that failed for good said so once. */
	if (first && !__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		log_err("%s LUN %s: %s of %u block%s at LBA %" PRIu64 " failed: %s", l->target,
			LUNSTR(l->info.lun), op_names[r->op], ch->nblocks,
			ch->nblocks == 1 ? "" : "s", ch->lba, why);
	req_pump(r);
}

/* The identity check after a unit attention answered: release or fail what waited. */
static void verify_done(void *opaque, int ret)
{
	struct lun *l = opaque;
	struct lun_chunk *list = NULL;
	int n = 0;
	pthread_mutex_lock(&l->lock);
	for (struct lun_chunk *ch = l->parked, *next; ch; ch = next) {
		next = ch->next; /* reverse: the oldest first */
		ch->next = list;
		list = ch;
		n++;
	}
	l->parked = NULL;
	bool quiet = l->verify_quiet;
	l->verify_quiet = false;
	__atomic_store_n(&l->verifying, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&l->lock);
	if (ret == 0 && quiet)
		log_debug("%s LUN %s: still the same disk after a pause; %d command%s resumed",
			  l->target, LUNSTR(l->info.lun), n, n == 1 ? "" : "s");
	else if (ret == 0)
		log_notice("%s LUN %s: still the same disk (VPD pages unchanged); %d command%s "
			   "resumed", l->target, LUNSTR(l->info.lun), n, n == 1 ? "" : "s");
	else if (ret != -ENODEV)
		log_err("%s LUN %s: could not check that it is still the same disk (see above); "
			"the %d command%s that waited for the check fail with EIO", l->target,
			LUNSTR(l->info.lun), n, n == 1 ? "" : "s");
	for (struct lun_chunk *ch = list, *next; ch; ch = next) {
		next = ch->next;
		if (ret == 0)
			chunk_send(l, ch);
		else
			chunk_end(ch, -EIO, ret == -ENODEV ? "the LUN failed for good"
							   : "its identity could not be checked");
	}
}

/* A unit attention says the LUN may be another disk: park `ch` (if any), and check its
 * identity unless a check runs already (see the top of this file). */
static void verify_after_ua(struct lun *l, struct lun_chunk *ch, const char *what)
{
	pthread_mutex_lock(&l->lock);
	if (ch) { /* NULL: a check command of the LUN got the unit attention */
		ch->next = l->parked;
		l->parked = ch;
	}
	bool start = !l->verifying;
	if (start)
		__atomic_store_n(&l->verifying, 1, __ATOMIC_RELEASE);
	else
		l->verify_quiet = false; /* news now: say what the check finds */
	pthread_mutex_unlock(&l->lock);
	if (!start)
		return;
	log_notice("%s LUN %s: %s: checking that it is still the same disk before sending it "
		   "more", l->target, LUNSTR(l->info.lun), what);
	int r = id_start(l, 0, verify_done, l);
	if (r < 0)
		verify_done(l, r);
}

static void chunk_done(struct session_cmd *c)
{
	struct lun_chunk *ch = (struct lun_chunk *)c;
	struct lun_req *r = ch->req;
	struct lun *l = r->l;
	char why[256], ua[160];
	struct sense_verdict notes = { 0 };

	int res = judge(c, &ch->tries, &notes, ch->start_us / 1000, why, sizeof(why));
	if (c->result == 0)
		__atomic_store_n(&l->last_answer_ms, util_now_ms(), __ATOMIC_RELAXED);
	if (c->result == 0 && c->scsi_status != 0 && log_debug_enabled()) {
		char d[160];
		log_debug("%s LUN %s: %s at LBA %" PRIu64 ": %s", l->target, LUNSTR(l->info.lun),
			  op_names[r->op], ch->lba,
			  sense_describe(c->scsi_status, c->sense_valid, c->sense_key, c->asc,
					 c->ascq, d, sizeof(d)));
	}
	if (notes.capacity_changed)
		recheck_capacity(l);
	if (notes.luns_changed || notes.inquiry_changed || notes.lun_gone)
		sense_describe(c->scsi_status, true, c->sense_key, c->asc, c->ascq, ua, sizeof(ua));
	if (notes.luns_changed)
		emit(l, LUN_EVENT_RESCAN, 0, 0, ua);
	if (res < 0 && notes.lun_gone && ch->tries < MAX_TRIES) {
		/* No logical unit answers at the address now. Not retried blindly, not
		 * failed at once: the command waits, with every other command of the LUN,
		 * for a check of what answers there (a rescan was asked for above). Gone or
		 * another disk: the LUN fails for good and nothing of it is sent; the same
		 * disk back again: the command goes on. */
		ch->tries++;
		__atomic_fetch_add(&l->st.retries, 1, __ATOMIC_RELAXED);
		verify_after_ua(l, ch, ua);
		return;
	}
	if (res == 1) {
		__atomic_fetch_add(&l->st.retries, 1, __ATOMIC_RELAXED);
		if (notes.inquiry_changed)
			verify_after_ua(l, ch, ua);
		else
			chunk_send(l, ch);
		return;
	}
	chunk_end(ch, res, why);
}

/*
 * A command that changes the disk, after the target has said nothing about this LUN
 * for IDLE_CHECK_MS: check first that the disk at the address is still this one.
 * Targets do not always tell: tgt 1.0.85 gives a logical unit it creates no unit
 * attention at all (only the other LUNs of the nexus get 3F/0E), so a LUN deleted and
 * created again with another disk between two write-backs answers the next WRITE with
 * GOOD. The commands of the request wait (parked) for the verdict like those after a
 * unit attention; a stream of writes pays nothing, the first write after a pause two
 * INQUIRY and a READ CAPACITY round trip (id_capacity). (Reads are not checked: they
 * change nothing on any disk.)
 */
static void check_after_pause(struct lun *l)
{
	uint8_t pages[2];
	uint64_t now = util_now_ms();
	if (now - __atomic_load_n(&l->last_answer_ms, __ATOMIC_RELAXED) < IDLE_CHECK_MS ||
	    __atomic_load_n(&l->verifying, __ATOMIC_ACQUIRE) || id_pages(l, pages) == 0)
		return;
	pthread_mutex_lock(&l->lock);
	bool start = !l->verifying;
	if (start) {
		__atomic_store_n(&l->verifying, 1, __ATOMIC_RELEASE);
		l->verify_quiet = true;
	}
	pthread_mutex_unlock(&l->lock);
	if (!start)
		return;
	int r = id_start(l, 0, verify_done, l);
	if (r < 0)
		verify_done(l, r);
}

/*
 * Start a request of `nblocks` blocks from `lba`, `per` blocks per command (flush:
 * nblocks 0, one command). The chunks it may ever use are allocated here, so running
 * out of memory refuses the request up front (-ENOMEM) rather than halfway.
 */
static int req_start(struct lun *l, enum op op, uint64_t lba, uint64_t nblocks, uint64_t per,
		     void *buf, blkdev_cb cb, void *opaque)
{
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		return -EIO;
	if (op != OP_READ && op != OP_FLUSH)
		check_after_pause(l);
	if (op != OP_READ && op != OP_FLUSH && l->dev.read_only)
		return -EROFS;
	if (op != OP_FLUSH && nblocks == 0) {
		cb(opaque, 0);
		return 0;
	}
	struct lun_req *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->l = l;
	r->cb = cb;
	r->opaque = opaque;
	r->op = op;
	r->buf = buf;
	r->lba = lba;
	r->nblocks = nblocks;
	r->per = MAX(per, 1);
	r->ncmds = op == OP_FLUSH ? 1 : DIV_ROUND_UP(nblocks, r->per);
	pthread_mutex_init(&r->lock, NULL);
	__atomic_fetch_add(&l->refs, 1, __ATOMIC_ACQ_REL); /* until req_finish */
	__atomic_fetch_add(&l->nreq, 1, __ATOMIC_ACQ_REL);
	for (uint64_t i = 0; i < MIN(r->ncmds, (uint64_t)REQ_WINDOW); i++) {
		struct lun_chunk *ch = calloc(1, sizeof(*ch));
		if (!ch) {
			req_free(r);
			__atomic_sub_fetch(&l->nreq, 1, __ATOMIC_ACQ_REL);
			lun_put(l);
			return -ENOMEM;
		}
		ch->req = r;
		ch->next = r->idle;
		r->idle = ch;
	}
	req_pump(r);
	return 0;
}

static int lun_read(struct blkdev *dev, uint64_t off, size_t len, void *buf, blkdev_cb cb,
		    void *opaque)
{
	struct lun *l = dev->priv;
	return req_start(l, OP_READ, off / l->bs, len / l->bs, l->max_xfer / l->bs, buf, cb,
			 opaque);
}

static int lun_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf,
		     blkdev_cb cb, void *opaque)
{
	struct lun *l = dev->priv;
	return req_start(l, OP_WRITE, off / l->bs, len / l->bs, l->max_xfer / l->bs, (void *)buf,
			 cb, opaque);
}

static int lun_flush(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque)
{
	struct lun *l = dev->priv;
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		return -EIO;
	if (!sync_target) {
		cb(opaque, 0);
		return 0;
	}
	/* SYNCHRONIZE CACHE on every session's path would be the same cache: one is enough. */
	return req_start(l, OP_FLUSH, 0, 0, 1, NULL, cb, opaque);
}

static int lun_discard(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
		       void *opaque)
{
	struct lun *l = dev->priv;
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		return -EIO;
	if (l->dev.read_only)
		return -EROFS;
	if (!l->info.can_unmap)
		return -EOPNOTSUPP;
	uint64_t nb = len / l->bs;
	if (nb > l->unmap_blocks * REQ_WINDOW * 64 &&
	    !__atomic_exchange_n(&l->slow_unmap_noted, 1, __ATOMIC_ACQ_REL))
		log_notice("%s LUN %s: the LUN allows %" PRIu64 " block%s per UNMAP (VPD page "
			   "0xB0): discarding %" PRIu64 " blocks takes %" PRIu64 " commands, %d at "
			   "a time", l->target, LUNSTR(l->info.lun), l->unmap_blocks,
			   l->unmap_blocks == 1 ? "" : "s", nb, DIV_ROUND_UP(nb, l->unmap_blocks),
			   REQ_WINDOW);
	return req_start(l, OP_UNMAP, off / l->bs, nb, l->unmap_blocks, NULL, cb, opaque);
}

/* WRITE SAME when the LUN has it, else plain WRITEs of zeroes: both asynchronous,
 * REQ_WINDOW commands at a time, from one shared buffer of zeroes. */
static int lun_write_zeroes(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			    void *opaque)
{
	struct lun *l = dev->priv;
	if (l->info.can_ws16)
		return req_start(l, OP_WRITE_SAME, off / l->bs, len / l->bs, l->ws_blocks, NULL, cb,
				 opaque);
	return req_start(l, OP_ZERO_WRITE, off / l->bs, len / l->bs, l->max_xfer / l->bs, NULL,
			 cb, opaque);
}

static int lun_lba_status(struct blkdev *dev, uint64_t off, struct blkdev_extent *ext)
{
	struct lun *l = dev->priv;
	uint8_t buf[8 + 16 * 4];
	struct session_cmd c = { .lun = l->info.lun };
	if (!l->info.thin || !l->info.lbprz) {
		/* GET LBA STATUS belongs to logical block provisioning (LBPME), and only
		 * with LBPRZ do unmapped blocks read as zeroes, as a hole must: without
		 * both, every block is data. (tgtd answers it on any LUN, from the holes of
		 * the backing file.) */
		ext->mapped = true;
		ext->len = lun_get_size(&l->dev) - MIN(off, lun_get_size(&l->dev));
		return 0;
	}
	c.cdb[0] = 0x9e; /* SERVICE ACTION IN(16) */
	c.cdb[1] = 0x12; /* GET LBA STATUS */
	put_be64(c.cdb + 2, off / l->bs);
	put_be32(c.cdb + 10, sizeof(buf));
	c.cdb_len = 16;
	c.dir = SESSION_DIR_READ;
	c.buf = buf;
	c.len = sizeof(buf);
	int r = lun_command(pick(l), &c, l->target, NULL, NULL, 0);
	if (r < 0 || c.len - c.residual < 24) {
		ext->mapped = true;
		ext->len = lun_get_size(&l->dev) - MIN(off, lun_get_size(&l->dev));
		return r == -EOPNOTSUPP || r == -EINVAL || r == 0 ? 0 : r;
	}
	/* The first descriptor, checked: it must start at or before `off` and reach past
	 * it, inside the LUN; anything else (or nonsense) is taken as one mapped block. */
	uint64_t lba = get_be64(buf + 8), nb = get_be32(buf + 16);
	uint64_t lbas = lun_get_size(&l->dev) / l->bs, cur = off / l->bs;
	if (nb == 0 || lba > cur || lba >= lbas || MIN(nb, lbas - lba) <= cur - lba) {
		ext->mapped = true;
		ext->len = l->bs;
		return 0;
	}
	ext->mapped = (buf[20] & 0x0f) == 0;
	ext->len = (lba + MIN(nb, lbas - lba)) * l->bs - off;
	return 0;
}

static void lun_destroy(struct blkdev *dev)
{
	lun_set_event_handler(dev, NULL, NULL); /* checks still running report to no one */
	lun_put(dev->priv);
}

static const struct blkdev_ops lun_ops = {
	.read = lun_read,
	.write = lun_write,
	.flush = lun_flush,
	.discard = lun_discard,
	.write_zeroes = lun_write_zeroes,
	.lba_status = lun_lba_status,
	.destroy = lun_destroy,
};

struct blkdev *lun_create(struct session **sess, int nsess, const char *target,
			  const struct lun_info *info, bool read_only)
{
	uint64_t nblocks, bytes;
	if (nsess < 1 || nsess > MAX_SESSIONS || !info->block_size || !info->nblocks ||
	    lun_capacity(info->nblocks - 1, info->block_size, &nblocks, &bytes) < 0) {
		errno = EINVAL;
		return NULL;
	}
	struct lun *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	memcpy(l->sess, sess, sizeof(*sess) * (size_t)nsess);
	l->nsess = nsess;
	l->info = *info;
	snprintf(l->target, sizeof(l->target), "%s", target);
	l->bs = info->block_size;
	uint64_t max = 4u << 20;
	if (info->max_xfer_blocks)
		max = MIN(max, (uint64_t)info->max_xfer_blocks * l->bs);
	l->max_xfer = MAX(max / l->bs * l->bs, l->bs);
	/* UNMAP: MAXIMUM UNMAP LBA COUNT bounds all the descriptors of one command together
	 * (SBC-4 5.31), so one descriptor per command covers what a command may; 0 (not
	 * reported) and 0xffffffff (no limit) get the cap. */
	uint32_t u = info->max_unmap_blocks;
	l->unmap_blocks = u == 0 || u == UINT32_MAX ? MAX_BLOCKS_PER_CMD : MIN(u, MAX_BLOCKS_PER_CMD);
	l->ws_blocks = info->max_ws_blocks ? MIN(info->max_ws_blocks, MAX_BLOCKS_PER_CMD)
					   : WS_DEFAULT_BLOCKS;
	/* Mapped, not calloc'ed: calloc clears memory it takes from the heap, which it does
	 * once glibc has raised its mmap threshold (any large free does), and then every LUN
	 * cost max_xfer of RSS (4.4 GiB for 1100 LUNs, seen intermittently). A private
	 * read-only anonymous mapping is the kernel's zero page: no memory at all. */
	l->zeroes = mmap(NULL, l->max_xfer, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (l->zeroes == MAP_FAILED) {
		free(l);
		return NULL;
	}
	l->dev.ops = &lun_ops;
	l->dev.size = bytes;
	l->dev.block_size = info->block_size;
	l->dev.read_only = read_only || info->write_protected;
	l->dev.can_discard = info->can_unmap && info->thin;
	l->dev.discard_zeroes = l->dev.can_discard && info->lbprz;
	l->dev.priv = l;
	l->nblocks = nblocks;
	l->st.capacity_blocks = nblocks;
	l->last_answer_ms = util_now_ms(); /* discovery has just read its identity */
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->ev_lock, NULL);
	l->refs = 1;
	return &l->dev;
}

void lun_get_stats(struct blkdev *dev, struct lun_stats *out)
{
	struct lun *l = dev->priv;
	out->reads = __atomic_load_n(&l->st.reads, __ATOMIC_RELAXED);
	out->writes = __atomic_load_n(&l->st.writes, __ATOMIC_RELAXED);
	out->read_bytes = __atomic_load_n(&l->st.read_bytes, __ATOMIC_RELAXED);
	out->write_bytes = __atomic_load_n(&l->st.write_bytes, __ATOMIC_RELAXED);
	out->retries = __atomic_load_n(&l->st.retries, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&l->st.errors, __ATOMIC_RELAXED);
	out->read_lat_us = __atomic_load_n(&l->st.read_lat_us, __ATOMIC_RELAXED);
	out->write_lat_us = __atomic_load_n(&l->st.write_lat_us, __ATOMIC_RELAXED);
	out->capacity_blocks = __atomic_load_n(&l->st.capacity_blocks, __ATOMIC_RELAXED);
	out->capacity_changes = __atomic_load_n(&l->st.capacity_changes, __ATOMIC_RELAXED);
	out->identity_checks = __atomic_load_n(&l->st.identity_checks, __ATOMIC_RELAXED);
	lat_get(&l->st.lat_read, &out->lat_read);
	lat_get(&l->st.lat_write, &out->lat_write);
	lat_get(&l->st.lat_flush, &out->lat_flush);
}
