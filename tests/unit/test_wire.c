/*
 * test_wire.c - proves the wire observer (src/wire.c): over a socketpair, a scripted
 * target writes PDUs and this file reads them exactly as libiscsi 1.19's
 * iscsi_read_from_socket() does (recv of the header's rest, readv of a Data-In segment
 * into the command's buffer at BufferOffset, recv of padding and of other segments);
 * the observer must count Data-In (data_in), flag misplaced or gapped Data-In, refuse
 * (ECONNRESET, with a reason) Data-In beyond the buffer or for no command, CHECK
 * CONDITION sense that libiscsi would read past, bad login lengths, R2Ts beyond the
 * write and ping floods; it must bound the PDUs read per service call, judge sense
 * validity, refuse reads it does not expect, and pass other descriptors through.
 *
 * A plain program: every check prints what it expected and what it got on failure;
 * the exit status is 1 if any check failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iscsifs/util.h"
#include "iscsifs/wire.h"

#include "check.h"

#define CHECK_STR(what, needle, hay)                                                    \
	do {                                                                            \
		const char *h_ = (hay);                                                 \
		if (!h_ || !strstr(h_, (needle))) {                                     \
			fprintf(stderr, "FAIL %s:%d: %s: expected text containing \"%s\", " \
				"got \"%s\"\n", __FILE__, __LINE__, (what), (needle),   \
				h_ ? h_ : "(null)");                                    \
			failures++;                                                     \
		}                                                                       \
	} while (0)

/* ---------- the scripted target side ---------- */

struct pdu {
	uint8_t hdr[52];
	uint8_t data[70000];
	uint32_t dsl;
};

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void pdu_init(struct pdu *p, uint8_t op, uint32_t itt, uint32_t dsl)
{
	memset(p->hdr, 0, sizeof(p->hdr));
	p->hdr[0] = op;
	p->hdr[5] = (uint8_t)(dsl >> 16);
	p->hdr[6] = (uint8_t)(dsl >> 8);
	p->hdr[7] = (uint8_t)dsl;
	put32(p->hdr + 16, itt);
	p->dsl = dsl;
}

static int T;   /* the target's end */
static int I;   /* the initiator's end: observed */
static bool data_digest;   /* both ends: DataDigest=CRC32C, read as libiscsi 1.20 does */

static void send_pdu(const struct pdu *p, uint32_t hdr_size)
{
	uint32_t padded = (p->dsl + 3) & ~3u;
	static uint8_t buf[sizeof(struct pdu)];
	memcpy(buf, p->hdr, hdr_size);
	memcpy(buf + hdr_size, p->data, p->dsl);
	memset(buf + hdr_size + p->dsl, 0, padded - p->dsl);
	size_t len = hdr_size + padded, off = 0;
	if (data_digest && p->dsl) {
		memset(buf + len, 0xdd, 4); /* libiscsi checks it; the observer only skips it */
		len += 4;
	}
	while (off < len) {
		ssize_t n = write(T, buf + off, len - off);
		if (n <= 0) {
			perror("write");
			exit(1);
		}
		off += (size_t)n;
	}
}

static void data_in(uint32_t itt, uint32_t sn, uint32_t off, uint32_t len, bool status,
		    uint8_t scsi_status)
{
	static struct pdu p;
	pdu_init(&p, 0x25, itt, len);
	p.hdr[1] = status ? 0x81 : 0;
	p.hdr[3] = status ? scsi_status : 0;
	put32(p.hdr + 36, sn);
	put32(p.hdr + 40, off);
	memset(p.data, (int)(0x40 + sn), len);
	send_pdu(&p, 48);
}

/* A SCSI Response with `seg` as its data segment. */
static void response(uint32_t itt, uint8_t status, const uint8_t *seg, uint32_t dsl)
{
	static struct pdu p;
	pdu_init(&p, 0x21, itt, dsl);
	p.hdr[1] = 0x80;
	p.hdr[3] = status;
	if (dsl)
		memcpy(p.data, seg, dsl); /* seg may be NULL for an empty segment */
	send_pdu(&p, 48);
}

/* A Login Response (status 0): `keys` as "a=b;c=d"; final: transit to full feature. */
static void login_response(const char *keys, bool final)
{
	static struct pdu p;
	uint32_t n = 0;
	for (const char *k = keys; *k; k++)
		p.data[n++] = *k == ';' ? 0 : (uint8_t)*k;
	p.data[n++] = 0;
	pdu_init(&p, 0x23, 0x1000, n);
	p.hdr[1] = final ? 0x80 | (1 << 2) | 3 : 0x80 | 1; /* T, CSG, NSG */
	send_pdu(&p, 48);
}

static void nop_in(bool ping)
{
	static struct pdu p;
	pdu_init(&p, 0x20, 0xffffffff, 0);
	p.hdr[1] = 0x80;
	put32(p.hdr + 20, ping ? 0x77 : 0xffffffff);
	send_pdu(&p, 48);
}

/* ---------- the initiator side: libiscsi 1.19's read pattern ---------- */

/* The command buffers libiscsi would have as task iovecs, by ITT. */
struct task {
	uint32_t itt;
	uint8_t *buf;
	uint32_t len;
};
static struct task tasks[8];

static struct task *task_of(uint32_t itt)
{
	for (size_t i = 0; i < ARRAY_SIZE(tasks); i++)
		if (tasks[i].buf && tasks[i].itt == itt)
			return &tasks[i];
	return NULL;
}

static uint32_t hdr_size = 48;

/*
 * Read one PDU the way iscsi_read_from_socket does. Returns 1 when a whole PDU was read,
 * 0 on EAGAIN (libiscsi breaks out and keeps its state; call again), -errno when a read
 * failed.
 */
static struct {
	uint8_t hdr[52];
	uint32_t hdr_pos;
	uint8_t *data;
	uint32_t data_pos;
} in;

static int libiscsi_read_pdu(void)
{
	if (in.hdr_pos < hdr_size) {
		ssize_t n = recv(I, in.hdr + in.hdr_pos, hdr_size - in.hdr_pos, 0);
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return -EPIPE;
		in.hdr_pos += (uint32_t)n;
		if (in.hdr_pos < hdr_size)
			return 0;
	}
	uint32_t dsl = (uint32_t)in.hdr[5] << 16 | (uint32_t)in.hdr[6] << 8 | in.hdr[7];
	uint32_t pad = (4 - (dsl & 3)) & 3, size = dsl + pad;
	while (in.data_pos < size) {
		uint32_t count = size - in.data_pos;
		struct task *t = (in.hdr[0] & 0x3f) == 0x25 ?
					 task_of((uint32_t)in.hdr[16] << 24 | (uint32_t)in.hdr[17] << 16 |
						 (uint32_t)in.hdr[18] << 8 | in.hdr[19]) :
					 NULL;
		ssize_t n;
		if (t && count > pad) {
			uint32_t off = (uint32_t)in.hdr[40] << 24 | (uint32_t)in.hdr[41] << 16 |
				       (uint32_t)in.hdr[42] << 8 | in.hdr[43];
			struct iovec iov = { t->buf + off + in.data_pos, count - pad };
			n = readv(I, &iov, 1);
		} else {
			static uint8_t padding[3];
			if (!t && !in.data)
				in.data = malloc(size);
			n = recv(I, t ? padding : in.data + in.data_pos, count, 0);
		}
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return -EPIPE;
		in.data_pos += (uint32_t)n;
	}
	while (data_digest && size && in.data_pos < size + 4) {
		uint8_t digest[4];
		ssize_t n = recv(I, digest, size + 4 - in.data_pos, 0);
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return -EPIPE;
		in.data_pos += (uint32_t)n;
	}
	free(in.data);
	memset(&in, 0, sizeof(in));
	return 1;
}

/* Read PDUs until `n` were read or a read failed; returns the PDUs read, or -errno. */
static int read_pdus(struct wire_conn *w, int n)
{
	int got = 0;
	while (got < n) {
		wire_service_begin(w);
		int r = libiscsi_read_pdu();
		if (r < 0)
			return r;
		got += r;
	}
	return got;
}

static struct wire_conn *W;

/* A fresh connection: socketpair, observer attached, logged in (48-byte headers). */
static void connect_fresh(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	I = sv[0];
	T = sv[1];
	memset(&in, 0, sizeof(in));
	memset(tasks, 0, sizeof(tasks));
	hdr_size = 48;
	data_digest = false;
	W = wire_new();
	CHECK_EQ("wire_attach", 0, wire_attach(W, I));
	login_response("TargetPortalGroupTag=1;MaxRecvDataSegmentLength=65536;"
		       "MaxBurstLength=262144;FirstBurstLength=65536", true);
	CHECK_EQ("login response read", 1, read_pdus(W, 1));
	CHECK("logged in", wire_logged_in(W));
}

static void disconnect(void)
{
	free(in.data); /* a read that failed left libiscsi's partial PDU */
	memset(&in, 0, sizeof(in));
	wire_free(W);
	W = NULL;
	close(I);
	close(T);
}

static uint8_t bufs[4][8192];

static void track_read(int slot, uint32_t itt, uint32_t len)
{
	tasks[slot] = (struct task){ itt, bufs[slot], len };
	memset(bufs[slot], 0xee, sizeof(bufs[slot]));
	CHECK_EQ("reserve", 0, wire_cmd_reserve(W));
	wire_cmd_begin(W, itt, bufs[slot], len, 0);
}

/* ---------- tests ---------- */

static void test_data_in_counted(void)
{
	printf("Data-In: two in-order PDUs of a 4096-byte READ prove 4096 bytes; one PDU "
	       "with status proves 2048 (a short READ); the bytes land where they belong\n");
	connect_fresh();
	struct wire_answer a;
	track_read(0, 10, 4096);
	data_in(10, 0, 0, 2048, false, 0);
	data_in(10, 1, 2048, 2048, true, 0);
	CHECK_EQ("PDUs read", 2, read_pdus(W, 2));
	wire_cmd_end(W, 10, &a);
	CHECK("known", a.known);
	CHECK("status seen", a.status_seen);
	CHECK_EQ("status", 0, a.status);
	CHECK_EQ("data_in", 4096, a.data_in);
	CHECK_STR("no fault", "", a.fault);
	CHECK_EQ("first half placed", 0x40, bufs[0][2047]);
	CHECK_EQ("second half placed", 0x41, bufs[0][2048]);

	track_read(1, 11, 4096);
	data_in(11, 0, 0, 2048, true, 0);
	CHECK_EQ("PDUs read", 1, read_pdus(W, 1));
	wire_cmd_end(W, 11, &a);
	CHECK_EQ("short READ: data_in", 2048, a.data_in);
	CHECK("short READ: status seen", a.status_seen);
	CHECK_EQ("short READ: no residual claimed", 0, a.residual);
	CHECK("connection still fine", !wire_fault(W));
	disconnect();
}

static void test_data_in_misplaced(void)
{
	printf("Data-In: a second PDU 512 bytes too low, or a DataSN gap, is a fault of "
	       "that command; data_in stays at what was proven; the connection goes on\n");
	connect_fresh();
	struct wire_answer a;
	track_read(0, 20, 4096);
	data_in(20, 0, 0, 2048, false, 0);
	data_in(20, 1, 1536, 2048, false, 0);
	data_in(20, 2, 3584, 512, true, 0);
	CHECK_EQ("PDUs read", 3, read_pdus(W, 3));
	wire_cmd_end(W, 20, &a);
	CHECK_STR("overlap fault", "out of place (DataSN 1 at offset 1536", a.fault);
	CHECK_EQ("data_in: only the first PDU is proven", 2048, a.data_in);

	track_read(1, 21, 4096);
	data_in(21, 0, 0, 2048, false, 0);
	data_in(21, 2, 2048, 2048, true, 0);
	CHECK_EQ("PDUs read", 2, read_pdus(W, 2));
	wire_cmd_end(W, 21, &a);
	CHECK_STR("DataSN gap fault", "DataSN 2 at offset 2048", a.fault);
	CHECK("connection still fine", !wire_fault(W));
	disconnect();
}

static void test_data_in_refused(void)
{
	printf("Data-In beyond the buffer, for no command, or for a command that reads "
	       "nothing: the read fails with ECONNRESET and the reason names it\n");
	connect_fresh();
	track_read(0, 30, 4096);
	data_in(30, 0, 0, 2048, false, 0);
	data_in(30, 1, 2048, 4096, true, 0);
	CHECK_EQ("read fails", -ECONNRESET, read_pdus(W, 2));
	CHECK_STR("reason", "more Data-In than asked (4096 bytes at offset 2048 of a 4096-byte",
		  wire_fault(W));
	uint32_t itt = 0;
	CHECK("about the command", wire_fault_itt(W, &itt) && itt == 30);
	struct wire_answer a;
	wire_cmd_end(W, 30, &a);
	CHECK_STR("the command's answer carries it", "more Data-In than asked", a.fault);
	CHECK_EQ("later reads fail too", -ECONNRESET, read_pdus(W, 1));
	disconnect();

	connect_fresh();
	data_in(99, 0, 0, 512, true, 0);
	CHECK_EQ("no command: read fails", -ECONNRESET, read_pdus(W, 1));
	CHECK_STR("reason", "Data-In for no command of ours (ITT 0x00000063)", wire_fault(W));
	CHECK("not about a command", !wire_fault_itt(W, &itt));
	disconnect();

	connect_fresh();
	CHECK_EQ("reserve", 0, wire_cmd_reserve(W));
	wire_cmd_begin(W, 41, NULL, 0, 0);     /* TEST UNIT READY */
	data_in(41, 0, 0, 0, true, 0);         /* status in an empty Data-In: odd, harmless */
	CHECK_EQ("an empty Data-In with status", 1, read_pdus(W, 1));
	struct wire_answer b;
	wire_cmd_end(W, 41, &b);
	CHECK("its status seen", b.status_seen && !b.fault[0]);
	CHECK_EQ("reserve", 0, wire_cmd_reserve(W));
	wire_cmd_begin(W, 40, NULL, 0, 512);   /* a WRITE */
	data_in(40, 0, 0, 512, true, 0);
	CHECK_EQ("a WRITE: read fails", -ECONNRESET, read_pdus(W, 1));
	CHECK_STR("reason", "Data-In for a command that reads nothing", wire_fault(W));
	disconnect();
}

static void test_sense(void)
{
	printf("CHECK CONDITION: full fixed sense is valid; sense shorter than SenseLength, "
	       "or response code 0, is invalid but safe; no sense, or too little for "
	       "libiscsi's parser, is refused before libiscsi reads past its buffer; an "
	       "iSCSI response 'target failure' is a fault, whatever the status byte\n");
	uint8_t seg[64];
	struct wire_answer a;

	connect_fresh();
	memset(seg, 0, sizeof(seg));
	seg[1] = 18;
	seg[2] = 0x70;
	seg[2 + 2] = 0x03;      /* MEDIUM ERROR */
	seg[2 + 7] = 10;
	seg[2 + 12] = 0x11;
	seg[2 + 13] = 0x01;
	track_read(0, 50, 512);
	response(50, 2, seg, 20);
	CHECK_EQ("read", 1, read_pdus(W, 1));
	wire_cmd_end(W, 50, &a);
	CHECK("status seen", a.status_seen && a.status == 2);
	CHECK("fixed sense valid", a.sense_valid);
	CHECK_EQ("key", 3, a.sense_key);
	CHECK_EQ("asc", 0x11, a.asc);
	CHECK_EQ("ascq", 1, a.ascq);
	CHECK_EQ("data_in of a failed READ", 0, a.data_in);

	seg[1] = 24; /* claims 24, 18 present */
	track_read(0, 51, 512);
	response(51, 2, seg, 20);
	CHECK_EQ("read", 1, read_pdus(W, 1));
	wire_cmd_end(W, 51, &a);
	CHECK("SenseLength beyond the segment: invalid", !a.sense_valid);
	CHECK_EQ("and no key reported", 0, a.sense_key);
	CHECK_EQ("SenseLength as claimed", 24, a.sense_len);

	seg[1] = 18;
	seg[2] = 0x00; /* response code 0 */
	track_read(0, 52, 512);
	response(52, 2, seg, 20);
	CHECK_EQ("read", 1, read_pdus(W, 1));
	wire_cmd_end(W, 52, &a);
	CHECK("response code 0: invalid", !a.sense_valid);

	seg[2] = 0x70;
	seg[2 + 7] = 16; /* claims 24 bytes of sense in an 18-byte SenseLength */
	track_read(0, 53, 512);
	response(53, 2, seg, 20);
	CHECK_EQ("read", 1, read_pdus(W, 1));
	wire_cmd_end(W, 53, &a);
	CHECK("additional length beyond SenseLength: invalid", !a.sense_valid);

	seg[1] = 12;
	seg[2] = 0x72;   /* descriptor format, 8 + 4 bytes: fits */
	seg[3] = 0x06;
	seg[4] = 0x29;
	seg[2 + 7] = 4;
	memset(seg + 10, 0, 4);
	track_read(0, 54, 512);
	response(54, 2, seg, 14);
	CHECK_EQ("read", 1, read_pdus(W, 1));
	wire_cmd_end(W, 54, &a);
	CHECK("descriptor sense valid", a.sense_valid);
	CHECK_EQ("descriptor key", 6, a.sense_key);
	CHECK_EQ("descriptor asc", 0x29, a.asc);
	CHECK("connection fine after all that", !wire_fault(W));
	disconnect();

	connect_fresh();
	track_read(0, 57, 512);
	{
		static struct pdu p;
		pdu_init(&p, 0x21, 57, 0);
		p.hdr[1] = 0x80;
		p.hdr[2] = 0x01; /* iSCSI response: target failure; status byte 0 */
		send_pdu(&p, 48);
	}
	CHECK_EQ("target failure: read", 1, read_pdus(W, 1));
	wire_cmd_end(W, 57, &a);
	CHECK_STR("target failure is a fault, not GOOD", "iSCSI response 0x01 (target failure)",
		  a.fault);
	disconnect();

	connect_fresh();
	track_read(0, 55, 512);
	response(55, 2, NULL, 0);
	CHECK_EQ("no sense: read fails", -ECONNRESET, read_pdus(W, 1));
	CHECK_STR("reason", "CHECK CONDITION without sense data", wire_fault(W));
	wire_cmd_end(W, 55, &a);
	CHECK_STR("the command carries it", "without sense data", a.fault);
	disconnect();

	connect_fresh();
	memset(seg, 0, sizeof(seg));
	seg[1] = 18;
	seg[2] = 0x70;
	seg[2 + 2] = 0x00;
	track_read(0, 56, 512);
	response(56, 2, seg, 12); /* 10 of 18 bytes: libiscsi would read up to byte 17 */
	CHECK_EQ("short sense: read fails", -ECONNRESET, read_pdus(W, 1));
	CHECK_STR("reason", "CHECK CONDITION with 10 bytes of sense data where 18 were claimed",
		  wire_fault(W));
	disconnect();
}

static void test_login_keys(void)
{
	printf("login: MaxRecvDataSegmentLength=0, a hex length, MaxBurstLength above "
	       "2^24-1 or FirstBurstLength > MaxBurstLength are refused with the key; "
	       "header digests (52-byte headers) start after login and must stay\n");
	static const struct {
		const char *keys, *want;
	} bad[] = {
		{ "MaxRecvDataSegmentLength=0", "MaxRecvDataSegmentLength=0 at login, outside RFC "
						"7143's range 512..16777215" },
		{ "MaxRecvDataSegmentLength=0x2000", "(libiscsi reads only decimal values)" },
		{ "MaxBurstLength=16777216", "MaxBurstLength=16777216" },
		{ "MaxBurstLength=8192;FirstBurstLength=65536", "FirstBurstLength=65536 larger" },
		{ "FirstBurstLength=Irrelevant", "FirstBurstLength=Irrelevant" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int sv[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
		I = sv[0];
		T = sv[1];
		memset(&in, 0, sizeof(in));
		hdr_size = 48;
		W = wire_new();
		wire_attach(W, I);
		login_response("AuthMethod=None", false);
		CHECK_EQ("security stage read", 1, read_pdus(W, 1));
		login_response(bad[i].keys, true);
		CHECK_EQ(bad[i].keys, -ECONNRESET, read_pdus(W, 1));
		CHECK_STR(bad[i].keys, bad[i].want, wire_fault(W));
		CHECK("not logged in", !wire_logged_in(W));
		disconnect();
	}

	connect_fresh();
	hdr_size = 52; /* a digest was negotiated: the target sends 52-byte headers */
	static struct pdu p;
	pdu_init(&p, 0x20, 0xffffffff, 0);
	p.hdr[1] = 0x80;
	put32(p.hdr + 20, 0xffffffff);
	send_pdu(&p, 52);
	send_pdu(&p, 52);
	CHECK_EQ("52-byte headers after login", 2, read_pdus(W, 2));
	CHECK("fine", !wire_fault(W));
	hdr_size = 48;
	CHECK_EQ("then a 48-byte ask", -ECONNRESET, read_pdus(W, 1));
	CHECK_STR("reason", "lost track of the iSCSI stream (a PDU header of 48 bytes asked)",
		  wire_fault(W));
	disconnect();
}

static void test_budget(void)
{
	printf("budget: 200 NOP-Ins waiting: one service call reads %d, then EAGAIN; the "
	       "next call reads on; 1001 pings within a second end the connection\n",
	       WIRE_SERVICE_PDUS);
	connect_fresh();
	for (int i = 0; i < 200; i++)
		nop_in(false);
	wire_service_begin(W);
	int n = 0, r;
	while ((r = libiscsi_read_pdu()) == 1)
		n++;
	CHECK_EQ("PDUs in one service call", WIRE_SERVICE_PDUS, n);
	CHECK_EQ("then", 0, r);
	CHECK_EQ("errno", EAGAIN, errno);
	wire_service_begin(W);
	n = 0;
	while (libiscsi_read_pdu() == 1)
		n++;
	CHECK_EQ("PDUs in the next call", WIRE_SERVICE_PDUS, n);
	CHECK("no fault", !wire_fault(W));
	disconnect();

	connect_fresh();
	uint64_t t0 = util_now_ms();
	int sent = 0, res = 0;
	for (; sent < WIRE_MAX_PINGS_PER_S + 5 && res >= 0; sent++) {
		nop_in(true);
		res = read_pdus(W, 1);
	}
	if (util_now_ms() - t0 < 900) {
		CHECK_EQ("ping flood: refused", -ECONNRESET, res);
		CHECK_EQ("after", WIRE_MAX_PINGS_PER_S + 1, sent);
		CHECK_STR("reason", "more than 1000 NOP-In pings within one second", wire_fault(W));
	}
	disconnect();
}

static void test_r2t(void)
{
	printf("R2T: within the write it passes; beyond it, for 0 bytes, or for no "
	       "command, the connection is refused\n");
	static const struct {
		uint32_t itt, off, len;
		const char *want;
	} cases[] = {
		{ 60, 0, 4096, NULL },
		{ 60, 4096, 4096, "R2T for 4096 bytes at offset 4096 of a 4096-byte write" },
		{ 60, 0, 0, "R2T for 0 bytes" },
		{ 61, 0, 512, "an R2T for no command of ours" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		connect_fresh();
		wire_cmd_reserve(W);
		wire_cmd_begin(W, 60, NULL, 0, 4096);
		static struct pdu p;
		pdu_init(&p, 0x31, cases[i].itt, 0);
		p.hdr[1] = 0x80;
		put32(p.hdr + 40, cases[i].off);
		put32(p.hdr + 44, cases[i].len);
		send_pdu(&p, 48);
		int r = read_pdus(W, 1);
		if (!cases[i].want) {
			CHECK_EQ("R2T within the write", 1, r);
		} else {
			CHECK_EQ(cases[i].want, -ECONNRESET, r);
			CHECK_STR("reason", cases[i].want, wire_fault(W));
		}
		disconnect();
	}
}

static void test_unexpected_reads(void)
{
	printf("self-check: an ask that is not libiscsi's pattern drops the connection; "
	       "unobserved descriptors pass through\n");
	connect_fresh();
	nop_in(false);
	uint8_t b[16];
	errno = 0;
	CHECK_EQ("recv of 16 bytes at a PDU start", -1, recv(I, b, sizeof(b), 0));
	CHECK_EQ("errno", ECONNRESET, errno);
	CHECK_STR("reason", "lost track of the iSCSI stream (a PDU header of 16 bytes asked)",
		  wire_fault(W));
	disconnect();

	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	CHECK_EQ("write", 5, write(sv[1], "hello", 5));
	CHECK_EQ("recv on an unobserved socket", 3, recv(sv[0], b, 3, 0));
	struct iovec iov = { b, 2 };
	CHECK_EQ("readv on it", 2, readv(sv[0], &iov, 1));
	close(sv[0]);
	close(sv[1]);

	char err[256];
	CHECK("wire_selftest: recv and readv are wire.c's", wire_selftest(err, sizeof(err)));
}

static void test_data_digest(void)
{
	printf("data digest (libiscsi 1.20's read pattern): after a login that negotiated "
	       "DataDigest=CRC32C, the 4 digest bytes after each data segment are skipped: "
	       "Data-In is counted, sense is judged, the stream stays in step\n");
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	I = sv[0];
	T = sv[1];
	memset(&in, 0, sizeof(in));
	memset(tasks, 0, sizeof(tasks));
	hdr_size = 48;
	data_digest = false;
	W = wire_new();
	wire_attach(W, I);
	login_response("HeaderDigest=None;DataDigest=CRC32C;MaxRecvDataSegmentLength=65536", true);
	CHECK_EQ("login", 1, read_pdus(W, 1));
	data_digest = true;
	track_read(0, 70, 4096);
	data_in(70, 0, 0, 2048, false, 0);
	data_in(70, 1, 2048, 2046, true, 0); /* 2 bytes of padding, then the digest */
	CHECK_EQ("Data-In with digests", 2, read_pdus(W, 2));
	struct wire_answer a;
	wire_cmd_end(W, 70, &a);
	CHECK_EQ("data_in", 4094, a.data_in);
	CHECK("status seen", a.status_seen && !a.fault[0]);
	uint8_t seg[20] = { 0, 18, 0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x04, 0x01 };
	track_read(1, 71, 512);
	response(71, 2, seg, 20);
	nop_in(false); /* no data segment: no digest */
	CHECK_EQ("sense with a digest, then a NOP-In", 2, read_pdus(W, 2));
	wire_cmd_end(W, 71, &a);
	CHECK("sense valid", a.sense_valid && a.sense_key == 2 && a.asc == 4 && a.ascq == 1);
	CHECK("in step", !wire_fault(W));
	disconnect();
	data_digest = false;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_data_in_counted();
	test_data_in_misplaced();
	test_data_in_refused();
	test_sense();
	test_login_keys();
	test_budget();
	test_r2t();
	test_unexpected_reads();
	test_data_digest();
	printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
	return failures ? 1 : 0;
}
