/*
 * wire.c - the wire observer: follows the iSCSI PDUs libiscsi reads from each session
 * socket, so that what the target sent can be proven rather than trusted.
 *
 * WHY
 *   libiscsi 1.19 (Debian 12) gives its caller no view of the PDUs. It places Data-In
 *   straight into the caller's buffer at whatever BufferOffset the target names, without
 *   counting bytes or checking DataSN, so a READ whose Data-In falls short or overlaps
 *   completes GOOD over a buffer the target never fully wrote. It parses sense data
 *   without a length check (a short or empty sense segment makes it read past its heap
 *   buffer, and the garbage may decode as "no error"), takes MaxRecvDataSegmentLength=0
 *   from a login answer and then spins forever splitting a WRITE into 0-byte PDUs, turns
 *   an R2T for 4 GiB into half a million queued PDUs, dereferences NULL when a Data-In
 *   names the ITT of a NOP-Out, and keeps reading as long as the socket has data, so a
 *   target that floods the socket keeps iscsi_service() from returning and starves our
 *   timers. No public getter exposes the negotiated values; the private struct is not
 *   installed.
 *
 * HOW
 *   The executable defines recv() and readv() (and send(), which only adds MSG_MORE
 *   to a PDU header whose data follows: "the send side" below). libiscsi.so.7 imports
 *   them from libc through its PLT, and the dynamic linker binds those imports to the
 *   executable's definitions (the executable is first in the lookup scope; ld exports a
 *   symbol that a linked shared library references). Our definitions look the
 *   descriptor up in a lock-free table indexed by fd; a descriptor nobody registered
 *   goes straight to the next definition (dlsym(RTLD_NEXT): libc's, or ASan's
 *   interceptor in a sanitizer build, which then reaches libc's; under valgrind,
 *   libc's). The transport registers each session socket right after
 *   iscsi_connect_async() (wire_attach) and unregisters it before
 *   iscsi_destroy_context() closes it.
 *
 *   For a registered descriptor a framer follows the stream exactly as libiscsi consumes
 *   it. libiscsi 1.19's iscsi_read_from_socket() (lib/socket.c) reads:
 *     - the header with recv(fd, hdr + hdr_pos, hdr_size - hdr_pos, 0), hdr_size 48, or
 *       52 with a header digest: the first recv of each PDU asks for exactly hdr_size
 *       bytes, which tells the framer the header size without parsing login keys;
 *     - a Data-In segment of a task with a buffer with readv() of the bytes left before
 *       the padding, into the task's iovec at data_pos + BufferOffset, and the padding
 *       with recv(); every other data segment with recv() of all bytes left (padding
 *       included) into a malloc'ed buffer;
 *   and processes a PDU only after the read that completes it returned. So every read
 *   the framer sees lies inside one PDU, and it has seen a whole PDU before libiscsi acts
 *   on it. When it sees the header it checks Data-In and R2T placement against the
 *   command (wire_cmd_begin registers each command's ITT and buffer); when it has seen
 *   the whole PDU it checks sense data (SCSI Response, CHECK CONDITION) and login keys
 *   (Login Response). A PDU that libiscsi would misuse (read past a buffer, spin, crash,
 *   or fail anyway with a vague message) is never handed over: the read that completes
 *   it fails with ECONNRESET, the reason is kept (wire_fault), libiscsi drops the
 *   connection, and the transport fails the command it was about with that reason while
 *   the session re-issues the others on a new connection. A fault that leaves libiscsi
 *   safe (Data-In out of place within the buffer, a gap in DataSN, sense data shorter
 *   than it claims) is recorded on the command and reported when it completes
 *   (wire_cmd_end), and the connection goes on.
 *
 *   The same read path bounds each iscsi_service() call (WIRE_SERVICE_PDUS /
 *   WIRE_SERVICE_BYTES): at a PDU boundary past the budget the read fails with EAGAIN,
 *   which libiscsi takes as "nothing more for now" and keeps its state, so the event
 *   loop runs its timers and sends before the next call.
 *
 * WHAT IT ASSUMES, AND WHAT BREAKS IT
 *   It assumes libiscsi's read pattern above (1.19.0's; 1.20.x keeps it and adds, when a
 *   data digest was negotiated, a recv of the 4-byte digest after the padding, which the
 *   framer follows) and that libiscsi reads session sockets only through recv/readv. A
 *   libiscsi that reads differently (other sizes, recvmsg, MSG_PEEK, several PDUs per
 *   read), links with -Bsymbolic or calls syscalls directly, or a build whose executable
 *   does not export recv/readv, breaks it. None of that passes silently:
 *     - wire_selftest() checks at start that recv/readv resolve to ours;
 *     - every read on an observed socket must ask for exactly what the framer expects
 *       (the header's rest, the data segment's rest, readv of one iovec at the very
 *       address the command's buffer plus BufferOffset plus progress gives), else the
 *       connection is dropped with "lost track of the iSCSI stream";
 *     - read() is not ours (probe.c defines it for libblkid, and libiscsi 1.19 uses it
 *       only for /dev/urandom): bytes libiscsi would read with it would be missing from
 *       the stream, which the next ask, or the next status, shows;
 *     - the transport refuses a login the observer did not see completed
 *       (wire_logged_in), and a command whose status the observer did not see
 *       (wire_answer.status_seen): no data is used that the observer did not vouch for.
 *   What is left unguarded is listed in README ("Hostile targets").
 */
#undef _FORTIFY_SOURCE /* the fortified recv is an inline wrapper; we define the real name */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iscsifs/util.h"
#include "iscsifs/wire.h"

/* ---------- PDU layout (RFC 7143 §11) ---------- */

#define BHS 48
#define OP_NOP_IN 0x20
#define OP_SCSI_RESPONSE 0x21
#define OP_LOGIN_RESPONSE 0x23
#define OP_DATA_IN 0x25
#define OP_R2T 0x31

#define FLAG_FINAL 0x80
#define FLAG_OVERFLOW 0x04
#define FLAG_UNDERFLOW 0x02
#define FLAG_STATUS 0x01        /* Data-In: S */
#define LOGIN_TRANSIT 0x80
#define LOGIN_CONTINUE 0x40

#define SCSI_CHECK_CONDITION 0x02
#define NO_TAG 0xffffffffu

/* RFC 7143 §13: the range of the length keys libiscsi uses. */
#define RFC_LEN_MIN 512
#define RFC_LEN_MAX 16777215

/* libiscsi 1.19's own limit on an incoming data segment (it refuses larger ones,
 * iscsi->initiator_max_recv_data_segment_length, which we never change). */
#define LIBISCSI_MAX_RECV 262144
/* Login text kept across Continue PDUs, at most. */
#define LOGIN_TEXT_MAX (1u << 20)
/* Sense bytes kept per command (SPC: at most 252, plus the 2-byte SenseLength). */
#define SENSE_KEEP 260

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* ---------- state ---------- */

struct wire_cmd {
	uint32_t itt;
	uint8_t *in;           /* Data-In buffer, NULL when none */
	uint32_t in_len;
	uint32_t out_len;
	uint32_t next_off;     /* Data-In: bytes proven = where the next PDU must start */
	uint32_t next_sn;      /* Data-In: DataSN expected next */
	uint32_t next_r2tsn;
	uint32_t r2t_total;    /* bytes asked for by R2Ts so far */
	struct wire_answer ans;
	uint8_t sense[SENSE_KEEP];
};

struct wire_conn {
	int fd;                /* -1 when not attached */
	/* the PDU being read */
	uint8_t hdr[BHS + 4];
	uint32_t hdr_size;     /* 48 or 52, from libiscsi's first ask of a PDU */
	uint32_t hdr_pos;
	bool hdr_fixed;        /* hdr_size is the full feature phase's */
	bool in_data;
	uint32_t dsl;          /* data segment length (without padding) */
	uint32_t padded;       /* with padding: what libiscsi keeps of the segment */
	uint32_t data_size;    /* with padding and, when negotiated, the data digest */
	uint32_t data_pos;
	uint8_t *cap;          /* the data segment, for PDUs whose content we check */
	uint32_t cap_size;
	bool capture;
	/* the connection */
	bool logged_in;
	bool digest_next;      /* the login negotiated DataDigest=CRC32C ... */
	bool data_digest;      /* ... in force from the full feature phase (libiscsi >= 1.20) */
	bool dead;
	char fault[240];
	bool fault_has_itt;
	uint32_t fault_itt;
	char *login_text;      /* Login Response text across Continue PDUs */
	uint32_t login_len;
	uint64_t ping_window_ms;
	uint32_t pings;
	/* budget of the current service call */
	uint32_t svc_pdus, svc_bytes;
	uint32_t r2ts;         /* R2Ts accepted since wire_take_r2ts */
	/* commands in flight, unordered */
	struct wire_cmd *cmds;
	uint32_t ncmds, capcmds;
};

/* ---------- the descriptor table ---------- */

#define FD_PAGE_BITS 10
#define FD_PAGES 1024 /* descriptors below 2^20 */

/* Pages are allocated once and never freed; entries are set and cleared with CAS. */
static struct wire_conn **fd_pages[FD_PAGES];

static struct wire_conn **fd_slot(int fd, bool create)
{
	if (fd < 0 || (unsigned)fd >= (unsigned)FD_PAGES << FD_PAGE_BITS)
		return NULL;
	struct wire_conn ***pp = &fd_pages[fd >> FD_PAGE_BITS];
	struct wire_conn **page = __atomic_load_n(pp, __ATOMIC_ACQUIRE);
	if (!page && create) {
		struct wire_conn **fresh = calloc(1u << FD_PAGE_BITS, sizeof(*fresh));
		if (!fresh)
			return NULL;
		if (__atomic_compare_exchange_n(pp, &page, fresh, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			page = fresh;
		else
			free(fresh); /* another thread won; `page` holds its page */
	}
	return page ? &page[fd & ((1 << FD_PAGE_BITS) - 1)] : NULL;
}

static struct wire_conn *fd_lookup(int fd)
{
	struct wire_conn **slot = fd_slot(fd, false);
	return slot ? __atomic_load_n(slot, __ATOMIC_ACQUIRE) : NULL;
}

/* ---------- the next definitions of recv and readv ---------- */

typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);

static recv_fn next_recv_fn;
static readv_fn next_readv_fn;

/* dlsym(RTLD_NEXT) once; until it answers (or if it finds only us), the syscall. */
static void *next_sym(void **cache, const char *name, void *self)
{
	void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
	if (!f) {
		f = dlsym(RTLD_NEXT, name);
		if (f == self)
			f = NULL;
		if (f)
			__atomic_store_n(cache, f, __ATOMIC_RELEASE);
	}
	return f;
}

static ssize_t next_recv(int fd, void *buf, size_t len, int flags)
{
	recv_fn f = (recv_fn)next_sym((void **)&next_recv_fn, "recv", (void *)recv);
	return f ? f(fd, buf, len, flags) : syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
}

static ssize_t next_readv(int fd, const struct iovec *iov, int iovcnt)
{
	readv_fn f = (readv_fn)next_sym((void **)&next_readv_fn, "readv", (void *)readv);
	return f ? f(fd, iov, iovcnt) : syscall(SYS_readv, fd, iov, iovcnt);
}

/* ---------- faults ---------- */

/* End the connection: the read that led here fails with ECONNRESET, and every later
 * read on it too. The first reason wins. */
static ssize_t refuse(struct wire_conn *w, bool about_cmd, uint32_t itt, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static ssize_t refuse(struct wire_conn *w, bool about_cmd, uint32_t itt, const char *fmt, ...)
{
	if (!w->dead) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->fault, sizeof(w->fault), fmt, ap);
		va_end(ap);
		w->dead = true;
		w->fault_has_itt = about_cmd;
		w->fault_itt = itt;
	}
	errno = ECONNRESET;
	return -1;
}

#define LOST_TRACK "the wire observer lost track of the iSCSI stream"
#define LOST_TRACK_END                                                                   \
	"; this iscsifs does not match the libiscsi it runs with (see wire.c), so it drops " \
	"the connection rather than use its data unverified"

/* A fault of one command that leaves libiscsi safe: kept for wire_cmd_end. */
static void cmd_fault(struct wire_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cmd_fault(struct wire_cmd *c, const char *fmt, ...)
{
	if (c->ans.fault[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->ans.fault, sizeof(c->ans.fault), fmt, ap);
	va_end(ap);
}

static struct wire_cmd *find_cmd(struct wire_conn *w, uint32_t itt)
{
	for (uint32_t i = 0; i < w->ncmds; i++)
		if (w->cmds[i].itt == itt)
			return &w->cmds[i];
	return NULL;
}

/* ---------- sense data ---------- */

/*
 * The bytes libiscsi 1.19's scsi_parse_sense_data(sb) reads (iscsi-command.c), where sb
 * is the data segment + 2 and the buffer it copied holds `size` bytes of segment
 * (padding included): true when every read stays inside. Mirrors its code exactly,
 * reading only within `size`.
 */
static bool libiscsi_sense_parse_fits(const uint8_t *seg, uint32_t size)
{
#define AT(i) ((uint32_t)(i) + 2 < size)
	if (!AT(0))
		return false;
	const uint8_t *sb = seg + 2;
	switch (sb[0] & 0x7f) {
	case 0x70:
	case 0x71:
		/* key sb[2], ascq sb[12..13], parse_sense_spec(sb + 15) */
		if (!AT(2) || !AT(13) || !AT(15))
			return false;
		return !(sb[15] & 0x80) || AT(17);
	case 0x72:
	case 0x73: {
		/* key sb[1], ascq sb[2..3], descriptors from sb + 8 for sb[7] bytes */
		if (!AT(3) || !AT(7))
			return false;
		uint32_t end = 8 + (uint32_t)sb[7];
		for (uint32_t p = 8; p < end; p += sb[p + 1]) {
			if (!AT(p + 1))
				return false;
			if (sb[p + 1] < 4)
				break;
			if (!AT(p + 2))
				return false;
			if (!(sb[p + 2] & 0x80))
				break;
			if (!AT(p))
				return false;
			if (sb[p] == 2) {
				if (!AT(p + 4))
					return false;
				if ((sb[p + 4] & 0x80) && !AT(p + 6))
					return false;
			}
		}
		return true;
	}
	default:
		return true;
	}
#undef AT
}

/* Our own reading of the sense in the data segment `seg` of `dsl` bytes (RFC 7143
 * §11.4.7.2: SenseLength, then the sense data). */
static void parse_sense(struct wire_cmd *c, const uint8_t *seg, uint32_t dsl)
{
	struct wire_answer *a = &c->ans;
	memset(c->sense, 0, sizeof(c->sense));
	memcpy(c->sense, seg, MIN(dsl, (uint32_t)sizeof(c->sense)));
	a->sense_valid = false;
	a->sense_key = a->asc = a->ascq = 0;
	if (dsl < 2) {
		a->sense_len = 0;
		return;
	}
	uint32_t len = (uint32_t)seg[0] << 8 | seg[1];
	a->sense_len = (uint16_t)len;
	const uint8_t *sb = seg + 2;
	if (len > dsl - 2 || len < 8)
		return;
	uint8_t rc = sb[0] & 0x7f;
	uint32_t claimed = 8 + (uint32_t)sb[7];   /* both formats: additional length at 7 */
	if (claimed > len)
		return;
	if (rc == 0x70 || rc == 0x71) {
		if (claimed < 14)    /* ASC and ASCQ are bytes 12 and 13 */
			return;
		a->sense_key = sb[2] & 0x0f;
		a->asc = sb[12];
		a->ascq = sb[13];
	} else if (rc == 0x72 || rc == 0x73) {
		a->sense_key = sb[1] & 0x0f;
		a->asc = sb[2];
		a->ascq = sb[3];
	} else {
		return;
	}
	a->sense_valid = true;
}

/* ---------- login keys ---------- */

/*
 * Check the text keys of one Login Response the way libiscsi 1.19 will read them
 * (iscsi_process_login_reply: strtol(value, NULL, 10) for the lengths). Returns NULL,
 * or the reason to refuse the login, in buf.
 */
static const char *check_login_keys(const char *text, uint32_t len, char *buf, size_t buflen)
{
	static const char *const lens[] = { "MaxRecvDataSegmentLength=", "MaxBurstLength=",
					    "FirstBurstLength=", "InitiatorRecvDataSegmentLength=",
					    "TargetRecvDataSegmentLength=" };
	long first = -1, maxburst = -1;
	for (uint32_t pos = 0; pos < len;) {
		const char *kv = text + pos;
		const char *nul = memchr(kv, 0, len - pos);
		uint32_t n = nul ? (uint32_t)(nul - kv) : len - pos;
		pos += n + 1;
		if (n == 0)
			continue;
		char one[256];
		snprintf(one, sizeof(one), "%.*s", (int)MIN(n, sizeof(one) - 1), kv);
		for (size_t k = 0; k < ARRAY_SIZE(lens); k++) {
			size_t kl = strlen(lens[k]);
			if (strncmp(one, lens[k], kl) != 0)
				continue;
			long v = strtol(one + kl, NULL, 10);
			if (v < RFC_LEN_MIN || v > RFC_LEN_MAX) {
				snprintf(buf, buflen, "the target sent %s at login, outside RFC 7143's "
					 "range %d..%d%s; fix the target's configuration", one,
					 RFC_LEN_MIN, RFC_LEN_MAX,
					 strncmp(one + kl, "0x", 2) == 0 ? " (libiscsi reads only "
									   "decimal values)" : "");
				return buf;
			}
			if (k == 1)
				maxburst = v;
			if (k == 2)
				first = v;
		}
	}
	if (first >= 0 && maxburst >= 0 && first > maxburst) {
		snprintf(buf, buflen, "the target sent FirstBurstLength=%ld larger than "
			 "MaxBurstLength=%ld at login (RFC 7143 forbids it); fix the target's "
			 "configuration", first, maxburst);
		return buf;
	}
	return NULL;
}

/* ---------- the framer ---------- */

static void pdu_reset(struct wire_conn *w)
{
	w->hdr_pos = 0;
	w->in_data = false;
	w->dsl = w->padded = w->data_size = w->data_pos = 0;
	w->capture = false;
	w->svc_pdus++;
}

static bool want_capture(uint8_t op, const uint8_t *hdr)
{
	return op == OP_LOGIN_RESPONSE ||
	       (op == OP_SCSI_RESPONSE && hdr[2] == 0 && hdr[3] == SCSI_CHECK_CONDITION);
}

/* The header is complete: check what can be checked before libiscsi reads the data
 * segment (libiscsi acts on the header only once the whole PDU is read; its readv
 * placement, though, follows BufferOffset at once). Returns 0 or refuse(). */
static ssize_t header_done(struct wire_conn *w);
/* The whole PDU is read: the last checks before libiscsi processes it. */
static ssize_t pdu_done(struct wire_conn *w);

static ssize_t header_done(struct wire_conn *w)
{
	const uint8_t *h = w->hdr;
	uint8_t op = h[0] & 0x3f;
	uint32_t itt = be32(h + 16);
	w->dsl = be24(h + 5);
	w->padded = (w->dsl + 3) & ~3u;
	w->data_size = w->padded + (w->data_digest && w->dsl ? 4 : 0);
	w->data_pos = 0;
	w->in_data = w->data_size > 0;
	w->capture = want_capture(op, h) && w->data_size <= LIBISCSI_MAX_RECV;
	if (w->capture && w->cap_size < w->data_size) {
		uint8_t *p = realloc(w->cap, w->data_size);
		if (!p)
			return refuse(w, false, 0, "out of memory checking a PDU from the target");
		w->cap = p;
		w->cap_size = w->data_size;
	}

	if (op == OP_DATA_IN) {
		struct wire_cmd *c = find_cmd(w, itt);
		uint32_t off = be32(h + 40), sn = be32(h + 36);
		if (!c)
			/* libiscsi would place it into whatever request has this ITT: a NOP-Out's
			 * has no task, and it dereferences NULL. */
			return refuse(w, false, 0, "the target sent Data-In for no command of ours "
				      "(ITT 0x%08x)", itt);
		if ((!c->in || c->in_len == 0) && w->dsl)
			return refuse(w, true, itt, "the target sent Data-In for a command that "
				      "reads nothing");
		if ((uint64_t)off + w->dsl > c->in_len)
			return refuse(w, true, itt, "the target sent more Data-In than asked "
				      "(%u bytes at offset %u of a %u-byte transfer)", w->dsl, off,
				      c->in_len);
		if (sn != c->next_sn || off != c->next_off)
			cmd_fault(c, "the target sent Data-In out of place (DataSN %u at offset %u, "
				  "%u bytes; expected DataSN %u at offset %u)", sn, off, w->dsl,
				  c->next_sn, c->next_off);
	} else if (op == OP_R2T) {
		struct wire_cmd *c = find_cmd(w, itt);
		uint32_t off = be32(h + 40), len = be32(h + 44), sn = be32(h + 36);
		if (!c)
			return refuse(w, false, 0, "the target sent an R2T for no command of ours "
				      "(ITT 0x%08x)", itt);
		if (len == 0 || (uint64_t)off + len > c->out_len ||
		    (uint64_t)c->r2t_total + len > c->out_len)
			return refuse(w, true, itt, "the target asked for Data-Out the command does "
				      "not have (R2T for %u bytes at offset %u of a %u-byte write, "
				      "%u asked before)", len, off, c->out_len, c->r2t_total);
		if (sn != c->next_r2tsn)
			return refuse(w, true, itt, "the target sent R2TSN %u, expected %u", sn,
				      c->next_r2tsn);
		c->r2t_total += len;
		c->next_r2tsn++;
		w->r2ts++;
	}
	if (!w->in_data)
		return pdu_done(w);
	return 0;
}

static void status_seen(struct wire_cmd *c, const uint8_t *h)
{
	struct wire_answer *a = &c->ans;
	a->status_seen = true;
	a->status = h[3];
	a->underflow = h[1] & FLAG_UNDERFLOW;
	a->overflow = h[1] & FLAG_OVERFLOW;
	a->residual = (a->underflow || a->overflow) ? be32(h + 44) : 0;
	if (a->underflow && a->residual > c->in_len && c->in_len)
		cmd_fault(c, "the target claimed %u bytes of underflow for a %u-byte transfer",
			  a->residual, c->in_len);
}

static ssize_t pdu_done(struct wire_conn *w)
{
	const uint8_t *h = w->hdr;
	uint8_t op = h[0] & 0x3f;
	uint32_t itt = be32(h + 16);
	char why[240];

	switch (op) {
	case OP_DATA_IN: {
		struct wire_cmd *c = find_cmd(w, itt);
		if (!c)
			break;
		if (!c->ans.fault[0]) {
			c->next_off += w->dsl;
			c->ans.data_in = c->next_off;
		}
		c->next_sn++;
		if (h[1] & FLAG_STATUS)
			status_seen(c, h);
		break;
	}
	case OP_SCSI_RESPONSE: {
		struct wire_cmd *c = find_cmd(w, itt);
		if (!c)
			break; /* libiscsi matches it to nothing, or refuses a wrong opcode */
		status_seen(c, h);
		/* libiscsi 1.19 looks at the iSCSI response code only with residual flags:
		 * "target failure" with a stale GOOD status byte would pass as GOOD. */
		if (h[2] != 0)
			cmd_fault(c, "the target answered iSCSI response 0x%02x (%s), not a SCSI "
				  "status", h[2], h[2] == 1 ? "target failure" : "not defined");
		if (h[2] != 0 || h[3] != SCSI_CHECK_CONDITION)
			break;
		/* libiscsi copies the segment (padding included) and parses sense at its
		 * byte 2 without a length check */
		if (w->dsl == 0)
			return refuse(w, true, itt, "the target answered CHECK CONDITION without "
				      "sense data");
		if (!w->capture)
			return refuse(w, true, itt, "the target answered CHECK CONDITION with a "
				      "%u-byte data segment", w->dsl);
		uint32_t claimed = w->dsl >= 2 ? ((uint32_t)w->cap[0] << 8 | w->cap[1]) : 0;
		if (!libiscsi_sense_parse_fits(w->cap, w->padded)) {
			if (claimed > (w->dsl >= 2 ? w->dsl - 2 : 0))
				return refuse(w, true, itt, "the target answered CHECK CONDITION "
					      "with %u bytes of sense data where %u were claimed",
					      w->dsl >= 2 ? w->dsl - 2 : 0, claimed);
			return refuse(w, true, itt, "the target answered CHECK CONDITION with "
				      "sense data too short to parse (%u bytes)",
				      w->dsl >= 2 ? w->dsl - 2 : 0);
		}
		parse_sense(c, w->cap, w->dsl);
		break;
	}
	case OP_LOGIN_RESPONSE: {
		if (w->capture && w->dsl) {
			if (w->login_len + w->dsl > LOGIN_TEXT_MAX)
				return refuse(w, false, 0, "the target sent more than %u bytes of "
					      "login text", LOGIN_TEXT_MAX);
			char *t = realloc(w->login_text, w->login_len + w->dsl);
			if (!t)
				return refuse(w, false, 0, "out of memory checking the login");
			w->login_text = t;
			memcpy(t + w->login_len, w->cap, w->dsl);
			w->login_len += w->dsl;
		}
		if (h[1] & LOGIN_CONTINUE)
			break;
		bool ok = h[36] == 0;   /* status class */
		uint32_t len = w->login_len;
		w->login_len = 0;
		const char *bad = ok ? check_login_keys(w->login_text, len, why, sizeof(why)) : NULL;
		if (bad)
			return refuse(w, false, 0, "%s", bad);
		for (uint32_t pos = 0; ok && pos < len;) {
			const char *kv = w->login_text + pos;
			size_t n = strnlen(kv, len - pos);
			if (n == strlen("DataDigest=CRC32C") && memcmp(kv, "DataDigest=CRC32C", n) == 0)
				w->digest_next = true;
			pos += (uint32_t)n + 1;
		}
		if (ok && (h[1] & LOGIN_TRANSIT) && (h[1] & 3) == 3) {
			w->logged_in = true;
			w->data_digest = w->digest_next;
		}
		break;
	}
	case OP_NOP_IN:
		if (itt == NO_TAG && be32(h + 20) != NO_TAG) {
			uint64_t now = util_now_ms();
			if (now - w->ping_window_ms >= 1000) {
				w->ping_window_ms = now;
				w->pings = 0;
			}
			if (++w->pings > WIRE_MAX_PINGS_PER_S)
				return refuse(w, false, 0, "the target sent more than %d NOP-In pings "
					      "within one second", WIRE_MAX_PINGS_PER_S);
		}
		break;
	}
	pdu_reset(w);
	return 0;
}

/* A read on an observed descriptor, before the real one: 0 to go on, or refuse(). */
static ssize_t expect_read(struct wire_conn *w, size_t len, bool vector)
{
	if (w->dead) {
		errno = ECONNRESET;
		return -1;
	}
	if (!w->in_data) {
		if (vector)
			return refuse(w, false, 0, LOST_TRACK " (readv at byte %u of a PDU header)"
				      LOST_TRACK_END, w->hdr_pos);
		if (w->hdr_pos == 0) {
			if (w->svc_pdus >= WIRE_SERVICE_PDUS || w->svc_bytes >= WIRE_SERVICE_BYTES) {
				errno = EAGAIN; /* this service call has read enough */
				return -1;
			}
			/* the digest, if negotiated, starts with the first PDU after login and
			 * stays */
			if ((len != BHS && len != BHS + 4) || (w->hdr_fixed && len != w->hdr_size))
				return refuse(w, false, 0, LOST_TRACK " (a PDU header of %zu bytes "
					      "asked)" LOST_TRACK_END, len);
			w->hdr_size = (uint32_t)len;
			w->hdr_fixed = w->logged_in;
		} else if (len != w->hdr_size - w->hdr_pos) {
			return refuse(w, false, 0, LOST_TRACK " (%zu bytes asked at byte %u of a "
				      "%u-byte header)" LOST_TRACK_END, len, w->hdr_pos, w->hdr_size);
		}
		return 0;
	}
	/* readv: the segment's rest before the padding; recv: the padding's (or, with no
	 * buffer, the whole padded segment's) rest, then the data digest's */
	size_t want = vector		       ? w->dsl - MIN(w->dsl, w->data_pos)
		      : w->data_pos < w->padded ? w->padded - w->data_pos
						: w->data_size - w->data_pos;
	if (len != want || want == 0)
		return refuse(w, false, 0, LOST_TRACK " (%zu bytes asked at byte %u of a %u-byte "
			      "data segment)" LOST_TRACK_END, len, w->data_pos, w->dsl);
	return 0;
}

/* `n` bytes were read into buf (NULL: into a command's buffer by readv). */
static ssize_t consumed(struct wire_conn *w, const void *buf, size_t n)
{
	w->svc_bytes += (uint32_t)n;
	if (!w->in_data) {
		memcpy(w->hdr + w->hdr_pos, buf, n);
		w->hdr_pos += (uint32_t)n;
		if (w->hdr_pos == w->hdr_size) {
			ssize_t r = header_done(w);
			if (r < 0)
				return r;
		}
		return (ssize_t)n;
	}
	if (w->capture && buf)
		memcpy(w->cap + w->data_pos, buf, n);
	w->data_pos += (uint32_t)n;
	if (w->data_pos == w->data_size) {
		ssize_t r = pdu_done(w);
		if (r < 0)
			return r;
	}
	return (ssize_t)n;
}

/* ---------- the interposed functions ---------- */

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct wire_conn *w = fd_lookup(fd);
	if (!w)
		return next_recv(fd, buf, len, flags);
	if (flags != 0 && !w->dead)
		return refuse(w, false, 0, LOST_TRACK " (recv with flags 0x%x)" LOST_TRACK_END,
			      flags);
	ssize_t r = expect_read(w, len, false);
	if (r < 0)
		return r;
	ssize_t n = next_recv(fd, buf, len, flags);
	if (n <= 0)
		return n;
	return consumed(w, buf, (size_t)n);
}

ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	struct wire_conn *w = fd_lookup(fd);
	if (!w)
		return next_readv(fd, iov, iovcnt);
	if (iovcnt != 1 && !w->dead)
		return refuse(w, false, 0, LOST_TRACK " (readv of %d buffers)" LOST_TRACK_END,
			      iovcnt);
	ssize_t r = expect_read(w, iovcnt == 1 ? iov[0].iov_len : 0, true);
	if (r < 0)
		return r;
	/* Only a Data-In segment goes to a command's buffer, and exactly where its
	 * BufferOffset and what was read of it put it. */
	const uint8_t *h = w->hdr;
	struct wire_cmd *c = (h[0] & 0x3f) == OP_DATA_IN ? find_cmd(w, be32(h + 16)) : NULL;
	if (!c || !c->in || (uint8_t *)iov[0].iov_base != c->in + be32(h + 40) + w->data_pos)
		return refuse(w, false, 0, LOST_TRACK " (Data-In placed where the observer did "
			      "not expect it)" LOST_TRACK_END);
	ssize_t n = next_readv(fd, iov, iovcnt);
	if (n <= 0)
		return n;
	return consumed(w, NULL, (size_t)n);
}

/* ---------- the send side: one TCP segment per PDU ----------
 *
 * libiscsi 1.19's iscsi_write_to_socket() sends a PDU that carries data from the
 * caller's buffer (a WRITE's immediate data, a Data-Out) as two calls: send() of the
 * header, then writev() of the data. On a TCP_NODELAY socket the header leaves as a
 * segment of its own, so every WRITE costs the target two wake-ups and the loopback
 * two trips through the TCP stack (measured: about a third of the session thread's
 * CPU on random 4 KiB writes). A header whose DataSegmentLength says data follows is
 * sent with MSG_MORE: the kernel holds it until the writev() that follows, which
 * pushes both. Nothing else changes: if that writev() waits for POLLOUT, the header
 * waits in the socket with it. A header without data, or sent together with its
 * data, goes as it is. */

typedef ssize_t (*send_fn)(int, const void *, size_t, int);
static send_fn next_send_fn;

static ssize_t next_send(int fd, const void *buf, size_t len, int flags)
{
	send_fn f = (send_fn)next_sym((void **)&next_send_fn, "send", (void *)send);
	return f ? f(fd, buf, len, flags) : syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	const uint8_t *h = buf;
	struct wire_conn *w = fd_lookup(fd);
	if (w && (len == BHS || len == BHS + 4) &&
	    ((uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7]) != 0)
		flags |= MSG_MORE;
	return next_send(fd, buf, len, flags);
}

/* ---------- the API ---------- */

struct wire_conn *wire_new(void)
{
	struct wire_conn *w = calloc(1, sizeof(*w));
	if (w)
		w->fd = -1;
	return w;
}

int wire_attach(struct wire_conn *w, int fd)
{
	struct wire_conn **slot = fd_slot(fd, true);
	if (!slot)
		return fd < 0 ? -EBADF : -EMFILE;
	struct wire_conn *none = NULL;
	if (!__atomic_compare_exchange_n(slot, &none, w, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return -EBUSY;
	w->fd = fd;
	return 0;
}

void wire_detach(struct wire_conn *w)
{
	if (w->fd < 0)
		return;
	struct wire_conn **slot = fd_slot(w->fd, false);
	struct wire_conn *me = w;
	if (slot)
		__atomic_compare_exchange_n(slot, &me, NULL, false, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE);
	w->fd = -1;
}

void wire_free(struct wire_conn *w)
{
	if (!w)
		return;
	wire_detach(w);
	free(w->cap);
	free(w->login_text);
	free(w->cmds);
	free(w);
}

void wire_service_begin(struct wire_conn *w)
{
	w->svc_pdus = 0;
	w->svc_bytes = 0;
}

uint32_t wire_take_r2ts(struct wire_conn *w)
{
	uint32_t n = w->r2ts;
	w->r2ts = 0;
	return n;
}

const char *wire_fault(const struct wire_conn *w)
{
	return w->dead ? w->fault : NULL;
}

bool wire_fault_itt(const struct wire_conn *w, uint32_t *itt)
{
	if (!w->dead || !w->fault_has_itt)
		return false;
	*itt = w->fault_itt;
	return true;
}

bool wire_logged_in(const struct wire_conn *w)
{
	return w->logged_in && !w->dead;
}

int wire_cmd_reserve(struct wire_conn *w)
{
	if (w->ncmds < w->capcmds)
		return 0;
	uint32_t cap = w->capcmds ? w->capcmds * 2 : 64;
	struct wire_cmd *n = realloc(w->cmds, sizeof(*n) * cap);
	if (!n)
		return -ENOMEM;
	w->cmds = n;
	w->capcmds = cap;
	return 0;
}

void wire_cmd_begin(struct wire_conn *w, uint32_t itt, void *in, uint32_t in_len,
		    uint32_t out_len)
{
	struct wire_cmd *c = find_cmd(w, itt);
	if (!c) {
		if (wire_cmd_reserve(w) != 0)
			return;
		c = &w->cmds[w->ncmds++];
	}
	memset(c, 0, sizeof(*c));
	c->itt = itt;
	c->in = in;
	c->in_len = in ? in_len : 0;
	c->out_len = out_len;
	c->ans.known = true;
}

void wire_cmd_end(struct wire_conn *w, uint32_t itt, struct wire_answer *out)
{
	memset(out, 0, sizeof(*out));
	struct wire_cmd *c = find_cmd(w, itt);
	if (c) {
		*out = c->ans;
		*c = w->cmds[--w->ncmds];
	}
	uint32_t fitt;
	if (wire_fault_itt(w, &fitt) && fitt == itt)
		snprintf(out->fault, sizeof(out->fault), "%s", w->fault);
}

bool wire_selftest(char *err, size_t errlen)
{
	void *r = dlsym(RTLD_DEFAULT, "recv"), *v = dlsym(RTLD_DEFAULT, "readv");
	if (r == (void *)recv && v == (void *)readv)
		return true;
	snprintf(err, errlen, "internal error: this iscsifs binary does not export its recv "
		 "and readv, so it cannot check what targets send (rebuild it without "
		 "-Bsymbolic or symbol hiding; see src/wire.c)");
	return false;
}
