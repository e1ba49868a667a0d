/*
 * lun.c - a LUN as a blkdev: LBA arithmetic, CDBs, retries, sense -> errno.
 *
 * A request is split into commands of at most `max_xfer` bytes; each command is a
 * session_cmd submitted to the next session (round-robin). Completions arrive on the
 * session threads; a command that gets a transient status (sense.c says RETRY) is
 * re-submitted with a backoff delay (session_cmd.not_before_ms), at most MAX_TRIES
 * times. The request completes when its last command does, with the first error.
 * 10-byte CDBs are used when LBA and length fit, 16-byte ones otherwise (LUNs > 2 TiB).
 *
 * Thread model: no thread of its own. Entry points run on any thread; completion
 * callbacks run on session threads and only touch the request's atomic counters.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iscsifs/log.h"
#include "iscsifs/lun.h"
#include "iscsifs/sense.h"
#include "iscsifs/util.h"

#define MAX_TRIES 8
#define MAX_SESSIONS 16

struct lun {
	struct blkdev dev;
	struct session *sess[MAX_SESSIONS];
	int nsess;
	unsigned rr;                 /* atomic: round-robin cursor */
	struct lun_info info;        /* immutable */
	char target[CONFIG_NAME_MAX];
	uint32_t bs;
	uint64_t max_xfer;           /* bytes per READ/WRITE command */
	struct lun_stats st;         /* atomic adds */
	int cap_check;               /* atomic: a capacity re-read is in flight */
	int refs;                    /* atomic: the blkdev's own + one per capacity re-read
	                                (which may complete after lun_destroy) */
	int failed;                  /* atomic: the LUN changed identity (seen on any
	                                session): every request fails with EIO */
};

struct cap_cmd {
	struct session_cmd cmd;
	struct lun *l;
	uint8_t buf[32];
};

static void lun_put(struct lun *l)
{
	if (__atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(l);
}

/* The size of a mounted file cannot change under FUSE's attribute cache and the
 * cache's block layout, so a new capacity is read, logged and counted, and the file
 * keeps its size until remounted (I/O past the new end fails with ENOSPC from the
 * target's LBA check). */
static void cap_done(struct session_cmd *c)
{
	struct cap_cmd *cc = (struct cap_cmd *)c;
	struct lun *l = cc->l;
	if (c->result == 0 && c->scsi_status == 0 && c->len - c->residual >= 12) {
		uint64_t nb = ((uint64_t)cc->buf[0] << 56 | (uint64_t)cc->buf[1] << 48 |
			       (uint64_t)cc->buf[2] << 40 | (uint64_t)cc->buf[3] << 32 |
			       (uint64_t)cc->buf[4] << 24 | (uint64_t)cc->buf[5] << 16 |
			       (uint64_t)cc->buf[6] << 8 | cc->buf[7]) + 1;
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
			 "new capacity failed", l->target, LUNSTR(l->info.lun));
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

struct lun_req {
	struct lun *l;
	blkdev_cb cb;
	void *opaque;
	int pending;                 /* atomic */
	int err;                     /* atomic: first error */
	void *zero_buf;              /* owned, for WRITE SAME / UNMAP parameter data */
};

struct lun_chunk {
	struct session_cmd cmd;
	struct lun_req *req;
	struct session *s;
	uint64_t lba;
	uint32_t nblocks;
	int tries;
	uint64_t start_us;
	const char *op;              /* "read", "write", ... for log lines */
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

/* READ/WRITE(10) or (16): opcode10/opcode16 pairs 0x28/0x88, 0x2a/0x8a. */
static void rw_cdb(struct session_cmd *c, bool write, uint64_t lba, uint32_t nblocks)
{
	memset(c->cdb, 0, sizeof(c->cdb));
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

static uint64_t backoff_ms(int tries)
{
	return MIN(50ULL << MIN(tries, 6), 2000);
}

/* Decide what a finished command means: 0, -errno, or 1 = retry (cmd re-armed). */
static int judge(struct session_cmd *c, int *tries, const char *target, const char *what,
		 uint64_t lba, bool *cap_changed)
{
	if (c->result < 0) {
		if (what)
			log_err("%s LUN %s: %s at LBA %" PRIu64 " failed: %s", target, LUNSTR(c->lun), what,
				lba, c->result == -ENODEV ? "the LUN changed identity"
							  : strerror(-c->result));
		return c->result == -ENODEV ? -EIO : c->result;
	}
	struct sense_verdict v = sense_decide(c->scsi_status, c->sense_key, c->asc, c->ascq);
	if (v.capacity_changed && cap_changed)
		*cap_changed = true;
	if (v.action != SENSE_DONE && *tries < MAX_TRIES) {
		c->not_before_ms = v.action == SENSE_RETRY ? util_now_ms() + backoff_ms(*tries) : 0;
		(*tries)++;
		return 1;
	}
	if (v.err == 0 && c->dir == SESSION_DIR_READ && c->residual && c->cdb[0] != 0x12 &&
	    c->cdb[0] != 0x9e && c->cdb[0] != 0x5a && c->cdb[0] != 0x1a && c->cdb[0] != 0xa0 &&
	    c->cdb[0] != 0x25) {
		if (what)
			log_err("%s LUN %s: %s at LBA %" PRIu64 ": short transfer (%u bytes missing)",
				target, LUNSTR(c->lun), what, lba, c->residual);
		return -EIO;
	}
	if (v.err && what) {
		char buf[160];
		log_err("%s LUN %s: %s at LBA %" PRIu64 " failed: %s%s", target, LUNSTR(c->lun), what, lba,
			sense_describe(c->scsi_status, c->sense_key, c->asc, c->ascq, buf, sizeof(buf)),
			v.action != SENSE_DONE ? " (retries exhausted)" : "");
	}
	return v.err;
}

int lun_command(struct session *s, struct session_cmd *c, const char *target, const char *what)
{
	int tries = 0;
	for (;;) {
		c->not_before_ms = 0;
		session_run(s, c);
		int r = judge(c, &tries, target, what, 0, NULL);
		if (r != 1)
			return r;
		uint64_t wait = c->not_before_ms ? c->not_before_ms - MIN(c->not_before_ms, util_now_ms()) : 0;
		if (wait)
			usleep((useconds_t)(wait * 1000));
	}
}

/* ---------- asynchronous requests ---------- */

static void req_finish(struct lun_req *r)
{
	int err = __atomic_load_n(&r->err, __ATOMIC_ACQUIRE);
	r->cb(r->opaque, err);
	free(r->zero_buf);
	free(r);
}

static void chunk_done(struct session_cmd *c)
{
	struct lun_chunk *ch = (struct lun_chunk *)c;
	struct lun_req *r = ch->req;
	struct lun *l = r->l;
	char what[64];

	snprintf(what, sizeof(what), "%s of %u blocks", ch->op, ch->nblocks);
	bool cap_changed = false;
	int res = judge(c, &ch->tries, l->target, what, ch->lba, &cap_changed);
	if (cap_changed)
		recheck_capacity(l, ch->s);
	if (res == 1) {
		__atomic_fetch_add(&l->st.retries, 1, __ATOMIC_RELAXED);
		session_submit(ch->s, c);
		return;
	}
	uint64_t lat = util_now_us() - ch->start_us;
	if (c->dir == SESSION_DIR_READ && c->cdb[0] != 0x9e) {
		__atomic_fetch_add(&l->st.reads, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&l->st.read_bytes, c->len, __ATOMIC_RELAXED);
		__atomic_fetch_add(&l->st.read_lat_us, lat, __ATOMIC_RELAXED);
	} else if (c->cdb[0] == 0x2a || c->cdb[0] == 0x8a) {
		__atomic_fetch_add(&l->st.writes, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&l->st.write_bytes, c->len, __ATOMIC_RELAXED);
		__atomic_fetch_add(&l->st.write_lat_us, lat, __ATOMIC_RELAXED);
	}
	if (c->result == -ENODEV && !__atomic_exchange_n(&l->failed, 1, __ATOMIC_ACQ_REL))
		log_err("%s LUN %s: failed for good (another disk answers as this LUN); every "
			"request now fails with EIO", l->target, LUNSTR(l->info.lun));
	if (res < 0) {
		__atomic_fetch_add(&l->st.errors, 1, __ATOMIC_RELAXED);
		int zero = 0;
		__atomic_compare_exchange_n(&r->err, &zero, res, false, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE);
	}
	free(ch);
	if (__atomic_sub_fetch(&r->pending, 1, __ATOMIC_ACQ_REL) == 0)
		req_finish(r);
}

static struct lun_req *req_new(struct lun *l, blkdev_cb cb, void *opaque, int nchunks)
{
	struct lun_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->l = l;
	r->cb = cb;
	r->opaque = opaque;
	r->pending = nchunks;
	return r;
}

static struct lun_chunk *chunk_new(struct lun_req *r, const char *op, uint64_t lba,
				   uint32_t nblocks)
{
	struct lun_chunk *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->req = r;
	ch->op = op;
	ch->lba = lba;
	ch->nblocks = nblocks;
	ch->cmd.lun = r->l->info.lun;
	ch->cmd.done = chunk_done;
	ch->start_us = util_now_us();
	return ch;
}

/* Build all chunks first, so an allocation failure refuses the whole request. */
static int submit_rw(struct lun *l, bool write, uint64_t off, size_t len, void *buf,
		     blkdev_cb cb, void *opaque)
{
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		return -EIO;
	if (write && l->dev.read_only)
		return -EROFS;
	if (len == 0) {
		cb(opaque, 0);
		return 0;
	}
	size_t n = DIV_ROUND_UP(len, l->max_xfer);
	struct lun_chunk *small[16];
	struct lun_chunk **chunks = n <= ARRAY_SIZE(small) ? small : calloc(n, sizeof(*chunks));
	struct lun_req *r = chunks ? req_new(l, cb, opaque, (int)n) : NULL;
	if (!r) {
		if (chunks != small)
			free(chunks);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t o = off + i * l->max_xfer;
		uint64_t clen = MIN(l->max_xfer, off + len - o);
		chunks[i] = chunk_new(r, write ? "write" : "read", o / l->bs, (uint32_t)(clen / l->bs));
		if (!chunks[i]) {
			while (i--)
				free(chunks[i]);
			free(r);
			if (chunks != small)
				free(chunks);
			return -ENOMEM;
		}
		struct session_cmd *c = &chunks[i]->cmd;
		rw_cdb(c, write, chunks[i]->lba, chunks[i]->nblocks);
		c->dir = write ? SESSION_DIR_WRITE : SESSION_DIR_READ;
		c->buf = (uint8_t *)buf + (o - off);
		c->len = (uint32_t)clen;
	}
	for (size_t i = 0; i < n; i++) {
		chunks[i]->s = pick(l);
		session_submit(chunks[i]->s, &chunks[i]->cmd);
	}
	if (chunks != small)
		free(chunks);
	return 0;
}

static int lun_read(struct blkdev *dev, uint64_t off, size_t len, void *buf, blkdev_cb cb,
		    void *opaque)
{
	return submit_rw(dev->priv, false, off, len, buf, cb, opaque);
}

static int lun_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf,
		     blkdev_cb cb, void *opaque)
{
	return submit_rw(dev->priv, true, off, len, (void *)buf, cb, opaque);
}

/* One command per request (flush, unmap, write same). */
/* The caller checked l->failed when it built the request. */
static int submit_one(struct lun *l, struct lun_chunk *ch)
{
	ch->s = pick(l);
	session_submit(ch->s, &ch->cmd);
	return 0;
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
	struct lun_req *r = req_new(l, cb, opaque, 1);
	struct lun_chunk *ch = r ? chunk_new(r, "synchronize cache", 0, 0) : NULL;
	if (!ch) {
		free(r);
		return -ENOMEM;
	}
	ch->cmd.cdb[0] = 0x35; /* SYNCHRONIZE CACHE(10), whole LUN */
	ch->cmd.cdb_len = 10;
	return submit_one(l, ch);
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
	uint64_t lba = off / l->bs, nb = len / l->bs;
	uint64_t per = l->info.max_unmap_blocks ? l->info.max_unmap_blocks : 0xffffffffu;
	size_t n = DIV_ROUND_UP(nb, per);
	struct lun_req *r = req_new(l, cb, opaque, (int)n);
	if (!r)
		return -ENOMEM;
	r->zero_buf = calloc(n, 24);
	if (!r->zero_buf) {
		free(r);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t clba = lba + i * per;
		uint32_t cnb = (uint32_t)MIN(per, lba + nb - clba);
		uint8_t *p = (uint8_t *)r->zero_buf + i * 24;
		put_be16(p, 6 + 16);
		put_be16(p + 2, 16);
		put_be64(p + 8, clba);
		put_be32(p + 16, cnb);
		struct lun_chunk *ch = chunk_new(r, "unmap", clba, cnb);
		if (!ch) { /* the request completes with ENOMEM through the normal path */
			__atomic_store_n(&r->err, -ENOMEM, __ATOMIC_RELEASE);
			if (__atomic_sub_fetch(&r->pending, (int)(n - i), __ATOMIC_ACQ_REL) == 0)
				req_finish(r);
			return 0;
		}
		ch->cmd.cdb[0] = 0x42;
		put_be16(ch->cmd.cdb + 7, 24);
		ch->cmd.cdb_len = 10;
		ch->cmd.dir = SESSION_DIR_WRITE;
		ch->cmd.buf = p;
		ch->cmd.len = 24;
		submit_one(l, ch);
	}
	return 0;
}

static int lun_write_zeroes(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			    void *opaque)
{
	struct lun *l = dev->priv;
	if (__atomic_load_n(&l->failed, __ATOMIC_ACQUIRE))
		return -EIO;
	if (l->dev.read_only)
		return -EROFS;
	uint64_t lba = off / l->bs, nb = len / l->bs;
	if (l->info.can_ws16) {
		uint64_t per = l->info.max_ws_blocks ? MIN(l->info.max_ws_blocks, 0xffffffffu)
						     : 65536;
		size_t n = DIV_ROUND_UP(nb, per);
		struct lun_req *r = req_new(l, cb, opaque, (int)n);
		if (!r || !(r->zero_buf = calloc(1, l->bs))) {
			free(r);
			return -ENOMEM;
		}
		for (size_t i = 0; i < n; i++) {
			uint64_t clba = lba + i * per;
			uint32_t cnb = (uint32_t)MIN(per, lba + nb - clba);
			struct lun_chunk *ch = chunk_new(r, "write same", clba, cnb);
			if (!ch) {
				__atomic_store_n(&r->err, -ENOMEM, __ATOMIC_RELEASE);
				if (__atomic_sub_fetch(&r->pending, (int)(n - i), __ATOMIC_ACQ_REL) == 0)
					req_finish(r);
				return 0;
			}
			ch->cmd.cdb[0] = 0x93; /* WRITE SAME(16); UNMAP bit when thin: zeroes anyway */
			ch->cmd.cdb[1] = l->info.thin && l->info.lbprz ? 0x08 : 0;
			put_be64(ch->cmd.cdb + 2, clba);
			put_be32(ch->cmd.cdb + 10, cnb);
			ch->cmd.cdb_len = 16;
			ch->cmd.dir = SESSION_DIR_WRITE;
			ch->cmd.buf = r->zero_buf;
			ch->cmd.len = l->bs;
			submit_one(l, ch);
		}
		return 0;
	}
	/* No WRITE SAME: plain writes of zeroes, one buffer reused, synchronously. */
	size_t chunk = (size_t)MIN(len, 1u << 20);
	void *z = calloc(1, chunk);
	if (!z)
		return -ENOMEM;
	int ret = 0;
	for (uint64_t o = off; o < off + len && !ret; o += chunk)
		ret = blkdev_write_sync(dev, o, (size_t)MIN(chunk, off + len - o), z);
	free(z);
	cb(opaque, ret);
	return 0;
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
	int r = lun_command(pick(l), &c, l->target, NULL);
	if (r < 0 || c.len - c.residual < 24) {
		ext->mapped = true;
		ext->len = l->dev.size - off;
		return r == -EOPNOTSUPP || r == -EINVAL || r == 0 ? 0 : r;
	}
	uint64_t lba = get_be64(buf + 8);
	uint64_t nb = get_be32(buf + 16);
	uint64_t start = lba * l->bs, end = start + nb * l->bs;
	if (end <= off || start > off) { /* not describing off: assume mapped */
		ext->mapped = true;
		ext->len = l->bs;
		return 0;
	}
	ext->mapped = (buf[20] & 0x0f) == 0;
	ext->len = MIN(end, l->dev.size) - off;
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
	if (nsess < 1 || nsess > MAX_SESSIONS || !info->block_size) {
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
	l->dev.ops = &lun_ops;
	l->dev.size = info->nblocks * info->block_size;
	l->dev.block_size = info->block_size;
	l->dev.read_only = read_only || info->write_protected;
	l->dev.can_discard = info->can_unmap;
	if (!info->thin)
		l->dev.can_discard = false;
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
}
