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
 * Thread model: no thread of its own. Entry points run on any thread; completion
 * callbacks run on session threads. A request's generator state is protected by its
 * `lock`; the LUN's counters are atomic.
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
	struct lun_info info;        /* immutable */
	char target[CONFIG_NAME_MAX];
	uint32_t bs;
	uint64_t max_xfer;           /* bytes per READ/WRITE command */
	uint64_t unmap_blocks;       /* blocks per UNMAP command */
	uint64_t ws_blocks;          /* blocks per WRITE SAME command */
	void *zeroes;                /* max_xfer bytes of zeroes: WRITE SAME data and zero
	                                writes; never written after lun_create */
	struct lun_stats st;         /* atomic adds */
	int cap_check;               /* atomic: a capacity re-read is in flight */
	int refs;                    /* atomic: the blkdev's own + one per capacity re-read
	                                (which may complete after lun_destroy) */
	int failed;                  /* atomic: the LUN changed identity (seen on any
	                                session): every request fails with EIO */
	int slow_unmap_noted;        /* atomic: the notice about a small UNMAP limit */
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
 * submitted, to state its time budget.
 */
static int judge(struct session_cmd *c, int *tries, bool *cap_changed, uint64_t start_ms,
		 char *why, size_t whylen)
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
	if (v.capacity_changed && cap_changed)
		*cap_changed = true;
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

/* ---------- capacity re-read after CAPACITY DATA HAS CHANGED ---------- */

struct cap_cmd {
	struct session_cmd cmd;
	struct lun *l;
	uint8_t buf[32];
};

static void lun_put(struct lun *l)
{
	if (__atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		munmap(l->zeroes, l->max_xfer);
		free(l);
	}
}

/* The size of a mounted file cannot change under FUSE's attribute cache and the
 * cache's block layout, so a new capacity is read, logged and counted, and the file
 * keeps its size until remounted (I/O past the new end fails with ENOSPC from the
 * target's LBA check). */
static void cap_done(struct session_cmd *c)
{
	struct cap_cmd *cc = (struct cap_cmd *)c;
	struct lun *l = cc->l;
	char why[256];
	int tries = MAX_TRIES; /* no retry from here: the next I/O reports again */
	uint64_t nb = 0, bytes = 0;
	int r = judge(c, &tries, NULL, 0, why, sizeof(why));
	if (r == 0 && c->len - c->residual < 12) {
		snprintf(why, sizeof(why), "short answer (%u bytes)", c->len - c->residual);
		r = -EIO;
	}
	if (r == 0 && lun_capacity(get_be64(cc->buf), get_be32(cc->buf + 8), &nb, &bytes) < 0) {
		snprintf(why, sizeof(why), "the new capacity is impossible (last LBA %" PRIu64
			 ", block size %u)", get_be64(cc->buf), get_be32(cc->buf + 8));
		r = -EIO;
	}
	if (r == 0) {
		__atomic_store_n(&l->st.capacity_blocks, nb, __ATOMIC_RELAXED);
		if (nb != l->info.nblocks)
			log_warn("%s LUN %s: capacity changed from %" PRIu64 " to %" PRIu64
				 " blocks; %s keeps its size (%" PRIu64 " bytes) until remounted",
				 l->target, LUNSTR(l->info.lun), l->info.nblocks, nb, "the file",
				 l->info.nblocks * l->bs);
		else
			log_notice("%s LUN %s: the target reported a capacity change; the "
				   "capacity is unchanged (%" PRIu64 " blocks)",
				   l->target, LUNSTR(l->info.lun), nb);
	} else {
		log_warn("%s LUN %s: the target reported a capacity change, and reading the "
			 "new capacity failed: %s", l->target, LUNSTR(l->info.lun), why);
	}
	__atomic_store_n(&l->cap_check, 0, __ATOMIC_RELEASE);
	free(cc);
	lun_put(l);
}

static void recheck_capacity(struct lun *l, struct session *s)
{
	if (__atomic_exchange_n(&l->cap_check, 1, __ATOMIC_ACQ_REL))
		return; /* one at a time */
	struct cap_cmd *cc = calloc(1, sizeof(*cc));
	if (!cc) {
		__atomic_store_n(&l->cap_check, 0, __ATOMIC_RELEASE);
		return;
	}
	cc->l = l;
	__atomic_fetch_add(&l->refs, 1, __ATOMIC_ACQ_REL);
	cc->cmd.lun = l->info.lun;
	cc->cmd.cdb[0] = 0x9e; /* SERVICE ACTION IN(16): READ CAPACITY(16) */
	cc->cmd.cdb[1] = 0x10;
	cc->cmd.cdb[13] = sizeof(cc->buf);
	cc->cmd.cdb_len = 16;
	cc->cmd.dir = SESSION_DIR_READ;
	cc->cmd.buf = cc->buf;
	cc->cmd.len = sizeof(cc->buf);
	cc->cmd.done = cap_done;
	session_submit(s, &cc->cmd);
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
	r->cb(r->opaque, r->err);
	req_free(r);
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

	pthread_mutex_lock(&r->lock);
	while (!r->err && r->next < r->ncmds && r->idle) {
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
		ch->s = pick(r->l);
		ch->start_us = util_now_us();
		session_submit(ch->s, &ch->cmd);
	}
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

static void chunk_done(struct session_cmd *c)
{
	struct lun_chunk *ch = (struct lun_chunk *)c;
	struct lun_req *r = ch->req;
	struct lun *l = r->l;
	char why[256];
	bool cap_changed = false;

	int res = judge(c, &ch->tries, &cap_changed, ch->start_us / 1000, why, sizeof(why));
	if (cap_changed)
		recheck_capacity(l, ch->s);
	if (res == 1) {
		__atomic_fetch_add(&l->st.retries, 1, __ATOMIC_RELAXED);
		session_submit(ch->s, c);
		return;
	}
	count(l, r->op, c, res, util_now_us() - ch->start_us);
	if (c->result == -ENODEV && !__atomic_exchange_n(&l->failed, 1, __ATOMIC_ACQ_REL))
		log_err("%s LUN %s: failed for good (another disk answers as this LUN); every "
			"request now fails with EIO", l->target, LUNSTR(l->info.lun));

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
	 * flight may fail the same way; their outcome no longer changes the result). */
	if (first && c->result != -ENODEV)
		log_err("%s LUN %s: %s of %u block%s at LBA %" PRIu64 " failed: %s", l->target,
			LUNSTR(l->info.lun), op_names[r->op], ch->nblocks,
			ch->nblocks == 1 ? "" : "s", ch->lba, why);
	req_pump(r);
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
	for (uint64_t i = 0; i < MIN(r->ncmds, (uint64_t)REQ_WINDOW); i++) {
		struct lun_chunk *ch = calloc(1, sizeof(*ch));
		if (!ch) {
			req_free(r);
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
		ext->len = l->dev.size - off;
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
		ext->len = l->dev.size - off;
		return r == -EOPNOTSUPP || r == -EINVAL || r == 0 ? 0 : r;
	}
	/* The first descriptor, checked: it must start at or before `off` and reach past
	 * it, inside the LUN; anything else (or nonsense) is taken as one mapped block. */
	uint64_t lba = get_be64(buf + 8), nb = get_be32(buf + 16);
	uint64_t lbas = l->dev.size / l->bs, cur = off / l->bs;
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
	lat_get(&l->st.lat_read, &out->lat_read);
	lat_get(&l->st.lat_write, &out->lat_write);
	lat_get(&l->st.lat_flush, &out->lat_flush);
}
