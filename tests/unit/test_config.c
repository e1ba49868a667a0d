/*
 * test_config.c - proves that config.c parses URLs, -o options, the command line, the
 * CHAP secret file / environment and the initiator name exactly as config.h promises,
 * refuses what it must (passwords on the command line, bad modes, bad names) with a
 * one-line message that names the value, and never prints a secret.
 *
 * A plain program: every failed check prints the expression, expected and got; the
 * exit status is 1 when any check failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iscsi/iscsi.h>

#include "iscsifs/config.h"
#include "iscsifs/exitcode.h"

static int failures, checks;
static char tmpdir[] = "/tmp/test_config.XXXXXX";

#define CHECK_INT(got, want)                                                          \
	do {                                                                          \
		long long g_ = (long long)(got), w_ = (long long)(want);              \
		checks++;                                                             \
		if (g_ != w_) {                                                       \
			failures++;                                                   \
			fprintf(stderr, "%s:%d: %s: expected %lld, got %lld\n", __FILE__, \
				__LINE__, #got, w_, g_);                              \
		}                                                                     \
	} while (0)

#define CHECK_STR(got, want)                                                          \
	do {                                                                          \
		const char *g_ = (got), *w_ = (want);                                 \
		checks++;                                                             \
		if (strcmp(g_, w_) != 0) {                                            \
			failures++;                                                   \
			fprintf(stderr, "%s:%d: %s: expected \"%s\", got \"%s\"\n",   \
				__FILE__, __LINE__, #got, w_, g_);                    \
		}                                                                     \
	} while (0)

#define CHECK_HAS(got, needle)                                                        \
	do {                                                                          \
		const char *g_ = (got), *n_ = (needle);                               \
		checks++;                                                             \
		if (!strstr(g_, n_)) {                                                \
			failures++;                                                   \
			fprintf(stderr, "%s:%d: %s: expected to contain \"%s\", got \"%s\"\n", \
				__FILE__, __LINE__, #got, n_, g_);                    \
		}                                                                     \
	} while (0)

#define CHECK_HASNT(got, needle)                                                      \
	do {                                                                          \
		const char *g_ = (got), *n_ = (needle);                               \
		checks++;                                                             \
		if (strstr(g_, n_)) {                                                 \
			failures++;                                                   \
			fprintf(stderr, "%s:%d: %s: must not contain \"%s\", got \"%s\"\n", \
				__FILE__, __LINE__, #got, n_, g_);                    \
		}                                                                     \
	} while (0)

/* Every error message is one line without a trailing newline or "iscsifs:" prefix. */
static void check_one_line(const char *err, int line)
{
	checks++;
	if (err[0] == '\0' || strchr(err, '\n') || strncmp(err, "iscsifs:", 8) == 0) {
		failures++;
		fprintf(stderr, "%s:%d: error message is not one plain line: \"%s\"\n",
			__FILE__, line, err);
	}
}

/* ---- helpers ---------------------------------------------------------------------- */

static const char *tmp_path(const char *name)
{
	static char buf[8][256];
	static int n;
	char *p = buf[n++ % 8];

	snprintf(p, 256, "%s/%s", tmpdir, name);
	return p;
}

static const char *write_file(const char *name, mode_t mode, const char *text)
{
	const char *path = tmp_path(name);
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		perror(path);
		exit(1);
	}
	close(fd);
	chmod(path, mode);
	return path;
}

/* config_parse_options on a fresh config. */
static int opts(struct config *cfg, const char *o, char *err)
{
	config_init(cfg);
	err[0] = '\0';
	return config_parse_options(cfg, o, err, CONFIG_ERRLEN);
}

/* config_parse_args with a NULL-terminated argument list after "iscsifs". */
static int args(struct config *cfg, char *err, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = "iscsifs";
	va_start(ap, err);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	config_init(cfg);
	err[0] = '\0';
	return config_parse_args(cfg, argc, argv, err, CONFIG_ERRLEN);
}

/* ---- tests ------------------------------------------------------------------------ */

/* config_init gives every documented default. */
static void test_init(void)
{
	struct config c;

	config_init(&c);
	CHECK_INT(c.command, CONFIG_CMD_MOUNT);
	CHECK_INT(c.url.port, 3260);
	CHECK_INT(c.url.lun, -1);
	CHECK_INT(c.have_url, 0);
	CHECK_INT(c.read_only, 0);
	CHECK_INT(c.cache_mode, CONFIG_CACHE_WRITEBACK);
	CHECK_INT(c.cache_size, 256ULL << 20);
	CHECK_INT(c.cache_block, 64 << 10);
	CHECK_INT(c.dirty_max, 64ULL << 20);
	CHECK_INT(c.dirty_expire_ms, 1000);
	CHECK_INT(c.readahead_max, 4 << 20);
	CHECK_INT(c.sessions, 1);
	CHECK_INT(c.noop_interval, 5);
	CHECK_INT(c.noop_timeout, 5);
	CHECK_INT(c.cmd_timeout, 30);
	CHECK_INT(c.login_timeout, 15);
	CHECK_INT(c.replacement_timeout, 120);
	CHECK_INT(c.header_digest, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	CHECK_STR(c.initiator, "");
	CHECK_STR(c.secret_file, "");
	CHECK_STR(c.fuse_opts, "");
	CHECK_INT(c.chap, 0);
}

/* config_parse_size: binary suffixes, KiB, and refusal of junk and overflow. */
static void test_parse_size(void)
{
	static const struct {
		const char *text;
		int rc;
		uint64_t v;
	} t[] = {
		{ "0", 0, 0 },
		{ "4096", 0, 4096 },
		{ "64K", 0, 65536 },
		{ "64k", 0, 65536 },
		{ "64KiB", 0, 65536 },
		{ "64KB", 0, 65536 },
		{ "256M", 0, 256ULL << 20 },
		{ "256MiB", 0, 256ULL << 20 },
		{ "1G", 0, 1ULL << 30 },
		{ "2T", 0, 2ULL << 40 },
		{ "512B", 0, 512 },
		{ "", -EINVAL, 0 },
		{ "K", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 M", -EINVAL, 0 },
		{ "1.5G", -EINVAL, 0 },
		{ "12Q", -EINVAL, 0 },
		{ "64iB", -EINVAL, 0 },
		{ "1P", -EINVAL, 0 },
		{ "99999999999999999999999", -ERANGE, 0 },
		{ "16777216T", -ERANGE, 0 },
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		uint64_t v = 12345;
		int rc = config_parse_size(t[i].text, &v);
		CHECK_INT(rc, t[i].rc);
		if (rc == 0)
			CHECK_INT(v, t[i].v);
		else
			CHECK_INT(v, 12345);   /* untouched on error */
	}
	CHECK_INT(config_parse_size(NULL, NULL), -EINVAL);
}

/* config_check_iscsi_name: IQN, EUI and NAA forms; everything else refused. */
static void test_check_iscsi_name(void)
{
	static const char *good[] = {
		"iqn.2003-01.org.linux-iscsi.host:sn.1234",
		"iqn.1993-08.org.debian:01:abcdef",
		"iqn.2026-11.org.example",
		"iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
		"iqn.2001-04.com.example:Disk.1",
		"eui.02004567A425678D",
		"eui.0123456789abcdef",
		"naa.52004567ba64678d",
		"naa.52004567ba64678d52004567ba64678d",
	};
	static const char *bad[] = {
		"",
		"iqn",
		"iqn.",
		"iqn.2003-01",
		"iqn.2003-01.",
		"iqn.2003-13.org.example",
		"iqn.2003-00.org.example",
		"iqn.03-01.org.example",
		"iqn.2003-1.org.example",
		"iqn.2003-01.Org.Example",
		"iqn.2003-01.org..example",
		"iqn.2003-01.org.example.",
		"iqn.2003-01.org.exa_mple",
		"iqn.2003-01.org.example:",
		"iqn.2003-01.org.example:has space",
		"iqn.2003-01.org.example:tab\there",
		"IQN.2003-01.org.example",
		"eui.0123456789abcde",
		"eui.0123456789abcdef0",
		"eui.0123456789abcdeg",
		"naa.0123",
		"naa.0123456789abcdef0",
		"disk1",
		"iscsi://host/iqn.2003-01.org.example",
	};
	char longname[300];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		checks++;
		if (config_check_iscsi_name(good[i]) != 0) {
			failures++;
			fprintf(stderr, "%s:%d: \"%s\" should be a valid iSCSI name\n", __FILE__,
				__LINE__, good[i]);
		}
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		checks++;
		if (config_check_iscsi_name(bad[i]) != -EINVAL) {
			failures++;
			fprintf(stderr, "%s:%d: \"%s\" should be refused\n", __FILE__, __LINE__,
				bad[i]);
		}
	}
	CHECK_INT(config_check_iscsi_name(NULL), -EINVAL);

	/* 223 bytes is the limit */
	strcpy(longname, "iqn.2026-11.org.example:");
	memset(longname + strlen(longname), 'x', 223 - strlen(longname));
	longname[223] = '\0';
	CHECK_INT(config_check_iscsi_name(longname), 0);
	strcat(longname, "x");
	CHECK_INT(config_check_iscsi_name(longname), -EINVAL);
}

/* config_parse_url: every URL form, IPv6, ports, LUN range, passwords refused. */
static void test_parse_url(void)
{
	struct config_url u;
	char err[CONFIG_ERRLEN];
	int rc;

	rc = config_parse_url("iscsi://192.0.2.1/iqn.2003-01.org.example:disk1/3", &u, err,
			      sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.host, "192.0.2.1");
	CHECK_INT(u.port, 3260);
	CHECK_INT(u.port_explicit, 0);
	CHECK_STR(u.target, "iqn.2003-01.org.example:disk1");
	CHECK_INT(u.lun, 3);
	CHECK_STR(u.user, "");
	CHECK_STR(u.portal, "192.0.2.1:3260");

	rc = config_parse_url("iscsi://nas.example.com:860/iqn.2003-01.org.example:disk1",
			      &u, err, sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.host, "nas.example.com");
	CHECK_INT(u.port, 860);
	CHECK_INT(u.port_explicit, 1);
	CHECK_INT(u.lun, -1);
	CHECK_STR(u.portal, "nas.example.com:860");

	rc = config_parse_url("iscsi://nas:3260", &u, err, sizeof err);
	CHECK_INT(rc, 0);
	CHECK_INT(u.port, 3260);
	CHECK_INT(u.port_explicit, 1);
	CHECK_STR(u.target, "");
	CHECK_INT(u.lun, -1);

	rc = config_parse_url("iscsi://nas", &u, err, sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.portal, "nas:3260");
	CHECK_STR(u.target, "");

	/* trailing slashes */
	CHECK_INT(config_parse_url("iscsi://nas/", &u, err, sizeof err), 0);
	CHECK_STR(u.target, "");
	CHECK_INT(config_parse_url("iscsi://nas/iqn.2003-01.org.example:d/", &u, err,
				   sizeof err), 0);
	CHECK_STR(u.target, "iqn.2003-01.org.example:d");
	CHECK_INT(u.lun, -1);
	CHECK_INT(config_parse_url("iscsi://nas/iqn.2003-01.org.example:d/0/", &u, err,
				   sizeof err), 0);
	CHECK_INT(u.lun, 0);

	/* IPv6 */
	rc = config_parse_url("iscsi://[::1]:3260/iqn.2003-01.org.example:d/1", &u, err,
			      sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.host, "::1");
	CHECK_STR(u.portal, "[::1]:3260");
	CHECK_INT(u.lun, 1);
	rc = config_parse_url("iscsi://[2001:db8::10]", &u, err, sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.host, "2001:db8::10");
	CHECK_INT(u.port, 3260);
	CHECK_STR(u.portal, "[2001:db8::10]:3260");
	rc = config_parse_url("iscsi://[fe80::1%eth0]:3261", &u, err, sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.host, "fe80::1%eth0");
	CHECK_STR(u.portal, "[fe80::1%eth0]:3261");
	rc = config_parse_url("iscsi://::1/iqn.2003-01.org.example:d", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "must be in brackets");
	rc = config_parse_url("iscsi://[::1/iqn.2003-01.org.example:d", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "']'");
	rc = config_parse_url("iscsi://[::g]/", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "invalid IPv6 address");

	/* user name allowed, password never */
	rc = config_parse_url("iscsi://alice@nas/iqn.2003-01.org.example:d/0", &u, err,
			      sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.user, "alice");
	CHECK_STR(u.host, "nas");
	rc = config_parse_url("iscsi://alice%Hunter2xyz@nas/iqn.2003-01.org.example:d/0", &u,
			      err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_STR(err, "password in the URL is not allowed: put it in a secret file and "
		  "pass -o secret_file=PATH");
	CHECK_HASNT(err, "Hunter2xyz");
	rc = config_parse_url("iscsi://alice:Hunter2xyz@[::1]:3260/", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "secret_file");
	CHECK_HASNT(err, "Hunter2xyz");
	/* libiscsi's "?target_password=" URL parameters: refused, never echoed */
	rc = config_parse_url("iscsi://nas/iqn.2003-01.org.example:d?target_user=t&"
			      "target_password=Hunter2xyz", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_STR(err, "password in the URL is not allowed: put it in a secret file and "
		  "pass -o secret_file=PATH");
	rc = config_parse_url("iscsi://nas/iqn.2003-01.org.example:d/1?Password=Hunter2xyz",
			      &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "password in the URL is not allowed");
	CHECK_HASNT(err, "Hunter2xyz");
	rc = config_parse_url("iscsi://nas/iqn.2003-01.org.example:d/1?header_digest=crc32c",
			      &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "URL parameters (\"?...\") are not supported");
	CHECK_HASNT(err, "crc32c");
	check_one_line(err, __LINE__);
	rc = config_parse_url("iscsi://@nas/", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "empty user name");

	/* malformed */
	rc = config_parse_url("foo", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_STR(err, "malformed URL \"foo\": expected iscsi://host[:port]/IQN[/LUN]");
	check_one_line(err, __LINE__);
	rc = config_parse_url("nbd://bob:Hunter2xyz@nas/x", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "malformed URL");
	CHECK_HASNT(err, "Hunter2xyz");
	rc = config_parse_url("iscsi:///iqn.2003-01.org.example:d", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "missing host");
	rc = config_parse_url("iscsi://nas//3", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "missing target");
	rc = config_parse_url("iscsi://nas/disk1/0", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "invalid target name \"disk1\"");
	rc = config_parse_url("iscsi://nas/iqn.2003-01.org.example:d/0/x", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "after the LUN");
	rc = config_parse_url("iscsi://ho st/", &u, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "invalid host name");

	/* ports */
	static const char *bad_ports[] = { "0", "65536", "99999999999", "-1", "32a", "" };
	for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
		char url[128];
		snprintf(url, sizeof url, "iscsi://nas:%s/iqn.2003-01.org.example:d",
			 bad_ports[i]);
		rc = config_parse_url(url, &u, err, sizeof err);
		CHECK_INT(rc, -EINVAL);
		CHECK_HAS(err, "invalid port");
		CHECK_HAS(err, "1..65535");
		check_one_line(err, __LINE__);
	}
	CHECK_INT(config_parse_url("iscsi://nas:65535", &u, err, sizeof err), 0);
	CHECK_INT(u.port, 65535);
	CHECK_INT(config_parse_url("iscsi://nas:1", &u, err, sizeof err), 0);
	CHECK_INT(u.port, 1);

	/* LUNs */
	CHECK_INT(config_parse_url("iscsi://nas/iqn.2003-01.org.example:d/16383", &u, err,
				   sizeof err), 0);
	CHECK_INT(u.lun, 16383);
	static const char *bad_luns[] = { "16384", "-1", "x", "1x", "99999999999999999999" };
	for (size_t i = 0; i < sizeof bad_luns / sizeof bad_luns[0]; i++) {
		char url[128];
		snprintf(url, sizeof url, "iscsi://nas/iqn.2003-01.org.example:d/%s",
			 bad_luns[i]);
		rc = config_parse_url(url, &u, err, sizeof err);
		CHECK_INT(rc, -EINVAL);
		CHECK_HAS(err, "invalid LUN");
		CHECK_HAS(err, "0..16383");
	}

	/* libiscsi's %3A encoding of ':' in target names */
	rc = config_parse_url("iscsi://nas/iqn.2003-01.org.example%3Adisk1/2", &u, err,
			      sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(u.target, "iqn.2003-01.org.example:disk1");

	/* a failed parse leaves the output untouched */
	memset(&u, 0, sizeof u);
	u.lun = 77;
	config_parse_url("iscsi://nas:0", &u, err, sizeof err);
	CHECK_INT(u.lun, 77);
}

/* config_parse_options: every option, header_digest's comma, refusals, pass-through. */
static void test_parse_options(void)
{
	struct config c;
	char err[CONFIG_ERRLEN];

	CHECK_INT(opts(&c, "ro,allow_other", err), 0);
	CHECK_INT(c.read_only, 1);
	CHECK_INT(c.allow_other, 1);
	CHECK_INT(opts(&c, "ro,rw", err), 0);
	CHECK_INT(c.read_only, 0);
	CHECK_INT(opts(&c, "ro=1", err), -EINVAL);
	CHECK_HAS(err, "takes no value");

	CHECK_INT(opts(&c, "cache=writethrough", err), 0);
	CHECK_INT(c.cache_mode, CONFIG_CACHE_WRITETHROUGH);
	CHECK_INT(opts(&c, "cache=none", err), 0);
	CHECK_INT(c.cache_mode, CONFIG_CACHE_NONE);
	CHECK_INT(opts(&c, "cache=writeback", err), 0);
	CHECK_INT(c.cache_mode, CONFIG_CACHE_WRITEBACK);
	CHECK_INT(opts(&c, "cache=fast", err), -EINVAL);
	CHECK_STR(err, "invalid value \"fast\" for cache: expected writeback, writethrough "
		  "or none");
	CHECK_INT(opts(&c, "cache", err), -EINVAL);
	CHECK_HAS(err, "needs a value");

	/* sizes and the dirty_max default */
	CHECK_INT(opts(&c, "cache_size=1G", err), 0);
	CHECK_INT(c.cache_size, 1ULL << 30);
	CHECK_INT(c.dirty_max, 256ULL << 20);
	CHECK_INT(opts(&c, "dirty_max=10M,cache_size=1G", err), 0);
	CHECK_INT(c.dirty_max, 10ULL << 20);
	CHECK_INT(opts(&c, "cache_size=1G,dirty_max=1G", err), 0);
	CHECK_INT(c.dirty_max, 1ULL << 30);
	CHECK_INT(opts(&c, "cache_size=64M,dirty_max=65M", err), -EINVAL);
	CHECK_HAS(err, "dirty_max=65M is larger than cache_size=64M");
	CHECK_INT(opts(&c, "cache_size=99999999999T", err), -EINVAL);
	CHECK_STR(err, "size \"99999999999T\" for cache_size is too large");
	CHECK_INT(opts(&c, "cache_size=lots", err), -EINVAL);
	CHECK_HAS(err, "invalid size \"lots\" for cache_size");
	CHECK_INT(opts(&c, "cache_block=1M", err), 0);
	CHECK_INT(c.cache_block, 1 << 20);
	CHECK_INT(opts(&c, "cache_block=4K", err), 0);
	CHECK_INT(opts(&c, "cache_block=16M", err), 0);
	CHECK_INT(opts(&c, "cache_block=2K", err), -EINVAL);
	CHECK_HAS(err, "power of two 4K..16M");
	CHECK_INT(opts(&c, "cache_block=32M", err), -EINVAL);
	CHECK_INT(opts(&c, "cache_block=96K", err), -EINVAL);
	CHECK_HAS(err, "\"96K\"");
	CHECK_INT(opts(&c, "cache_size=32K", err), -EINVAL);
	CHECK_HAS(err, "cache_size=32K is below 8 x cache_block=64K = 512K");
	/* issue 8 §4: the cache's own bound (8 blocks) is checked with the options, not
	 * after login; the message names the option, the value and the limit */
	CHECK_INT(opts(&c, "cache_size=256K", err), -EINVAL);
	CHECK_STR(err, "cache_size=256K is below 8 x cache_block=64K = 512K (the cache "
		  "needs at least 8 blocks): raise cache_size or lower cache_block");
	check_one_line(err, __LINE__);
	CHECK_INT(opts(&c, "cache_size=512K", err), 0);
	CHECK_INT(opts(&c, "cache_block=1M,cache_size=4M", err), -EINVAL);
	CHECK_HAS(err, "cache_size=4M is below 8 x cache_block=1M = 8M");
	CHECK_INT(opts(&c, "cache_size=4M,cache_block=512K", err), 0);
	CHECK_INT(opts(&c, "cache=none,cache_size=256K", err), 0);
	CHECK_INT(opts(&c, "cache=none,cache_size=0", err), 0);
	CHECK_INT(opts(&c, "readahead_max=0", err), 0);
	CHECK_INT(c.readahead_max, 0);
	CHECK_INT(opts(&c, "readahead_max=16MiB", err), 0);
	CHECK_INT(c.readahead_max, 16 << 20);

	/* repeated calls: an explicit dirty_max survives, a default one follows */
	config_init(&c);
	CHECK_INT(config_parse_options(&c, "dirty_max=8M", err, sizeof err), 0);
	CHECK_INT(config_parse_options(&c, "cache_size=1G", err, sizeof err), 0);
	CHECK_INT(c.dirty_max, 8ULL << 20);
	config_init(&c);
	CHECK_INT(config_parse_options(&c, "ro", err, sizeof err), 0);
	CHECK_INT(config_parse_options(&c, "cache_size=1G", err, sizeof err), 0);
	CHECK_INT(c.dirty_max, 256ULL << 20);

	/* dirty_expire in decimal seconds */
	CHECK_INT(opts(&c, "dirty_expire=0.5", err), 0);
	CHECK_INT(c.dirty_expire_ms, 500);
	CHECK_INT(opts(&c, "dirty_expire=3", err), 0);
	CHECK_INT(c.dirty_expire_ms, 3000);
	CHECK_INT(opts(&c, "dirty_expire=2.125", err), 0);
	CHECK_INT(c.dirty_expire_ms, 2125);
	CHECK_INT(opts(&c, "dirty_expire=0", err), 0);
	CHECK_INT(c.dirty_expire_ms, 0);
	CHECK_INT(opts(&c, "dirty_expire=0.0001", err), -EINVAL);
	CHECK_INT(opts(&c, "dirty_expire=1.", err), -EINVAL);
	CHECK_INT(opts(&c, "dirty_expire=-1", err), -EINVAL);
	CHECK_INT(opts(&c, "dirty_expire=86401", err), -EINVAL);
	CHECK_HAS(err, "dirty_expire");

	/* integers */
	CHECK_INT(opts(&c, "sessions=4,noop_interval=0,noop_timeout=2,cmd_timeout=60,"
		       "login_timeout=7,replacement_timeout=0", err), 0);
	CHECK_INT(c.sessions, 4);
	CHECK_INT(c.noop_interval, 0);
	CHECK_INT(c.noop_timeout, 2);
	CHECK_INT(c.cmd_timeout, 60);
	CHECK_INT(c.login_timeout, 7);
	CHECK_INT(c.replacement_timeout, 0);
	CHECK_INT(opts(&c, "sessions=16", err), 0);
	CHECK_INT(opts(&c, "sessions=17", err), -EINVAL);
	CHECK_STR(err, "invalid value \"17\" for sessions: expected a whole number 1..16");
	CHECK_INT(opts(&c, "sessions=0", err), -EINVAL);
	CHECK_INT(opts(&c, "noop_timeout=0", err), -EINVAL);
	CHECK_INT(opts(&c, "cmd_timeout=0", err), -EINVAL);
	CHECK_INT(opts(&c, "login_timeout=0", err), -EINVAL);
	CHECK_INT(opts(&c, "replacement_timeout=86400", err), 0);
	CHECK_INT(opts(&c, "replacement_timeout=86401", err), -EINVAL);
	CHECK_INT(opts(&c, "cmd_timeout=1.5", err), -EINVAL);
	CHECK_INT(opts(&c, "noop_interval=-1", err), -EINVAL);

	/* initiator */
	CHECK_INT(opts(&c, "initiator=iqn.2026-11.org.example:me", err), 0);
	CHECK_STR(c.initiator, "iqn.2026-11.org.example:me");
	CHECK_INT(c.initiator_explicit, 1);
	CHECK_INT(opts(&c, "initiator=bob", err), -EINVAL);
	CHECK_HAS(err, "invalid initiator name \"bob\"");

	/* header_digest, whose values contain a comma */
	CHECK_INT(opts(&c, "header_digest=none", err), 0);
	CHECK_INT(c.header_digest, ISCSI_HEADER_DIGEST_NONE);
	CHECK_INT(opts(&c, "header_digest=crc32c", err), 0);
	CHECK_INT(c.header_digest, ISCSI_HEADER_DIGEST_CRC32C);
	CHECK_INT(opts(&c, "header_digest=none,crc32c", err), 0);
	CHECK_INT(c.header_digest, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	CHECK_INT(opts(&c, "ro,header_digest=crc32c,none,sessions=2", err), 0);
	CHECK_INT(c.header_digest, ISCSI_HEADER_DIGEST_CRC32C_NONE);
	CHECK_INT(c.read_only, 1);
	CHECK_INT(c.sessions, 2);
	CHECK_INT(opts(&c, "header_digest=crc32c,ro", err), 0);
	CHECK_INT(c.header_digest, ISCSI_HEADER_DIGEST_CRC32C);
	CHECK_INT(c.read_only, 1);
	CHECK_INT(opts(&c, "header_digest=none,none", err), -EINVAL);
	CHECK_HAS(err, "\"none,none\" for header_digest");
	CHECK_INT(opts(&c, "header_digest=md5", err), -EINVAL);

	/* secret_file */
	CHECK_INT(opts(&c, "secret_file=/etc/iscsifs.secret", err), 0);
	CHECK_STR(c.secret_file, "/etc/iscsifs.secret");

	/* FUSE pass-through */
	CHECK_INT(opts(&c, "fsname=mylun,subtype=iscsifs,auto_unmount,default_permissions,"
		       "max_read=131072", err), 0);
	CHECK_STR(c.fuse_opts, "fsname=mylun,subtype=iscsifs,auto_unmount,"
		  "default_permissions,max_read=131072");
	CHECK_INT(opts(&c, "max_read=lots", err), -EINVAL);
	CHECK_INT(opts(&c, "auto_unmount=1", err), -EINVAL);
	CHECK_INT(opts(&c, "fsname=", err), -EINVAL);

	/* generic mount flags FUSE honours go to the mount (issue 8 §6); the rest of
	 * what mount(8)/fstab pass is accepted and dropped */
	CHECK_INT(opts(&c, "rw,dev,nodev,suid,nosuid,exec,noexec,atime,noatime,relatime,"
		       "auto,noauto,user,users,nofail,defaults,_netdev,sync,async,dirsync,"
		       "strictatime,nodiratime,lazytime,"
		       "x-systemd.automount,x-systemd.requires=network-online.target,,", err), 0);
	CHECK_INT(c.read_only, 0);
	CHECK_STR(c.fuse_opts, "dev,nodev,suid,nosuid,exec,noexec,atime,noatime,sync,async,"
		  "dirsync");
	CHECK_INT(opts(&c, "noatime=1", err), -EINVAL);
	CHECK_HAS(err, "takes no value");
	CHECK_INT(opts(&c, "relatime=1", err), 0);   /* dropped whatever it says */

	/* log= */
	CHECK_INT(c.log_to, CONFIG_LOG_AUTO);
	CHECK_INT(opts(&c, "log=stderr", err), 0);
	CHECK_INT(c.log_to, CONFIG_LOG_STDERR);
	CHECK_INT(opts(&c, "log=syslog", err), 0);
	CHECK_INT(c.log_to, CONFIG_LOG_SYSLOG);
	CHECK_INT(opts(&c, "log=/var/log/iscsifs.log", err), 0);
	CHECK_INT(c.log_to, CONFIG_LOG_FILE);
	CHECK_STR(c.log_file, "/var/log/iscsifs.log");
	CHECK_INT(opts(&c, "log=rel.log", err), 0);
	CHECK_INT(c.log_file[0], '/');
	CHECK_HAS(c.log_file, "/rel.log");
	CHECK_INT(opts(&c, "log", err), -EINVAL);
	CHECK_HAS(err, "needs a value");

	/* unknown options: the name, not the value */
	CHECK_INT(opts(&c, "ro,foo", err), -EINVAL);
	CHECK_STR(err, "unknown option \"foo\": see iscsifs --help");
	CHECK_INT(opts(&c, "pasword_typo=x,foo=Hunter2xyz", err), -EINVAL);
	CHECK_INT(opts(&c, "foo=Hunter2xyz", err), -EINVAL);
	CHECK_STR(err, "unknown option \"foo\": see iscsifs --help");
	CHECK_INT(opts(&c, "username=alice", err), -EINVAL);
	CHECK_STR(err, "unknown option \"username\": see iscsifs --help");
	CHECK_INT(opts(&c, "=x", err), -EINVAL);
	/* a password after an enum value that may hold a comma is never joined to it */
	CHECK_INT(opts(&c, "header_digest=none,password=Hunter2xyz", err), -EINVAL);
	CHECK_HAS(err, "password on the command line is not allowed");
	CHECK_HASNT(err, "Hunter2xyz");
	CHECK_INT(opts(&c, "header_digest=none,Hunter2xyz", err), -EINVAL);
	CHECK_HAS(err, "header_digest");

	/* passwords refused, never echoed */
	static const char *pw[] = {
		"password=Hunter2xyz", "chap_password=Hunter2xyz", "target_password=Hunter2xyz",
		"secret=Hunter2xyz", "mutual_password=Hunter2xyz", "Password=Hunter2xyz",
		"chap_secret=Hunter2xyz", "password",
	};
	for (size_t i = 0; i < sizeof pw / sizeof pw[0]; i++) {
		CHECK_INT(opts(&c, pw[i], err), -EINVAL);
		CHECK_HAS(err, "password on the command line is not allowed");
		CHECK_HAS(err, "-o secret_file=PATH");
		CHECK_HASNT(err, "Hunter2xyz");
		check_one_line(err, __LINE__);
	}
}

/* config_parse_args: commands, flags, option placement, mountpoint checks. */
static void test_parse_args(void)
{
	struct config c;
	char err[CONFIG_ERRLEN];
	const char *url = "iscsi://nas/iqn.2003-01.org.example:d/0";
	const char *mp = tmp_path("mnt");
	const char *file = write_file("plainfile", 0600, "x");
	char mp_rel[300], missing[300], *cwd = getcwd(NULL, 0);

	mkdir(mp, 0700);
	snprintf(missing, sizeof missing, "%s/nonexistent", tmpdir);

	CHECK_INT(args(&c, err, "-f", "-d", "-o", "ro,cache_size=1G", url, mp, NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_MOUNT);
	CHECK_INT(c.foreground, 1);
	CHECK_INT(c.debug, 1);
	CHECK_INT(c.read_only, 1);
	CHECK_INT(c.have_url, 1);
	CHECK_STR(c.url_text, url);
	CHECK_STR(c.url.target, "iqn.2003-01.org.example:d");
	CHECK_STR(c.mountpoint, mp);
	CHECK_INT(c.dirty_max, 256ULL << 20);
	CHECK_INT(c.uid, getuid());
	CHECK_INT(c.gid, getgid());

	/* -o last (mount.fuse3), -oX form, repeated -o, dirty_max across lists */
	CHECK_INT(args(&c, err, url, mp, "-o", "dirty_max=512M", "-ocache_size=1G", NULL), 0);
	CHECK_INT(c.cache_size, 1ULL << 30);
	CHECK_INT(c.dirty_max, 512ULL << 20);
	CHECK_INT(c.foreground, 0);
	CHECK_INT(args(&c, err, "-o", "cache_size=1G", url, mp, "-o", "sessions=2", NULL), 0);
	CHECK_INT(c.dirty_max, 256ULL << 20);
	CHECK_INT(c.sessions, 2);
	CHECK_INT(args(&c, err, url, mp, "-o", "dirty_max=512M", NULL), -EINVAL);
	CHECK_HAS(err, "dirty_max=512M is larger than cache_size=256M");

	/* relative mountpoint becomes absolute */
	if (chdir(tmpdir) == 0) {
		snprintf(mp_rel, sizeof mp_rel, "./mnt/");
		CHECK_INT(args(&c, err, url, mp_rel, NULL), 0);
		CHECK_STR(c.mountpoint, mp);
		if (chdir(cwd) != 0)
			perror("chdir");
	}
	free(cwd);

	/* mountpoint checks */
	CHECK_INT(args(&c, err, url, missing, NULL), -ENOENT);
	CHECK_HAS(err, "mountpoint ");
	CHECK_HAS(err, "/nonexistent does not exist: create it first");
	CHECK_INT(args(&c, err, url, file, NULL), -ENOTDIR);
	CHECK_HAS(err, "plainfile is not a directory");

	/* missing positionals and extras */
	CHECK_INT(args(&c, err, NULL), -EINVAL);
	CHECK_HAS(err, "missing URL");
	CHECK_HAS(err, "usage: iscsifs");
	CHECK_INT(args(&c, err, url, NULL), -EINVAL);
	CHECK_HAS(err, "missing mountpoint");
	CHECK_HAS(err, "URL MOUNTPOINT");
	CHECK_INT(args(&c, err, url, mp, "extra", NULL), -EINVAL);
	CHECK_STR(err, "unexpected argument \"extra\": see iscsifs --help");
	CHECK_INT(args(&c, err, "-x", url, mp, NULL), -EINVAL);
	CHECK_STR(err, "unknown option \"-x\": see iscsifs --help");
	CHECK_INT(args(&c, err, "--password=Hunter2xyz", url, mp, NULL), -EINVAL);
	CHECK_HASNT(err, "Hunter2xyz");
	CHECK_INT(args(&c, err, url, mp, "-o", NULL), -EINVAL);
	CHECK_HAS(err, "-o needs");
	CHECK_INT(args(&c, err, "--watch", url, mp, NULL), -EINVAL);
	CHECK_HAS(err, "--watch is only for iscsifs stat");

	/* passwords on the command line */
	CHECK_INT(args(&c, err, "iscsi://bob:Hunter2xyz@nas/iqn.2003-01.org.example:d", mp,
		       NULL), -EINVAL);
	CHECK_HAS(err, "password in the URL is not allowed");
	CHECK_HASNT(err, "Hunter2xyz");
	CHECK_HASNT(c.url_text, "Hunter2xyz");
	CHECK_INT(args(&c, err, url, mp, "-o", "chap_password=Hunter2xyz", NULL), -EINVAL);
	CHECK_HAS(err, "secret_file");
	CHECK_HASNT(err, "Hunter2xyz");

	/* bad URL via argv */
	CHECK_INT(args(&c, err, "foo", mp, NULL), -EINVAL);
	CHECK_STR(err, "malformed URL \"foo\": expected iscsi://host[:port]/IQN[/LUN]");

	/* help and version win anywhere */
	CHECK_INT(args(&c, err, "-h", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_HELP);
	CHECK_INT(args(&c, err, url, "--help", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_HELP);
	CHECK_INT(args(&c, err, "-V", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_VERSION);
	CHECK_INT(args(&c, err, "ls", "--version", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_VERSION);
	/* "help" and "version" are commands, not URLs (issue 10) */
	CHECK_INT(args(&c, err, "help", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_HELP);
	CHECK_INT(args(&c, err, "version", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_VERSION);

	/* --json: ls and stat only */
	CHECK_INT(args(&c, err, "ls", "--json", "iscsi://[::1]", NULL), 0);
	CHECK_INT(c.json, 1);
	CHECK_INT(args(&c, err, "stat", mp, "--json", NULL), 0);
	CHECK_INT(c.json, 1);
	CHECK_INT(args(&c, err, "--json", url, mp, NULL), -EINVAL);
	CHECK_HAS(err, "--json is only for iscsifs ls and iscsifs stat");

	/* ls */
	CHECK_INT(args(&c, err, "ls", "-d", "-o", "login_timeout=3", "iscsi://[::1]", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_LS);
	CHECK_INT(c.debug, 1);
	CHECK_INT(c.login_timeout, 3);
	CHECK_STR(c.url.portal, "[::1]:3260");
	CHECK_STR(c.mountpoint, "");
	CHECK_INT(args(&c, err, "ls", NULL), -EINVAL);
	CHECK_HAS(err, "missing URL: usage: iscsifs ls");
	CHECK_INT(args(&c, err, "ls", url, mp, NULL), -EINVAL);
	CHECK_HAS(err, "unexpected argument");

	/* stat */
	CHECK_INT(args(&c, err, "stat", mp, "--watch", NULL), 0);
	CHECK_INT(c.command, CONFIG_CMD_STAT);
	CHECK_INT(c.watch, 1);
	CHECK_STR(c.mountpoint, mp);
	CHECK_INT(c.have_url, 0);
	CHECK_INT(args(&c, err, "stat", NULL), -EINVAL);
	CHECK_HAS(err, "missing mountpoint: usage: iscsifs stat");
	CHECK_INT(args(&c, err, "stat", missing, NULL), -ENOENT);
	CHECK_INT(args(&c, err, "stat", "-o", "ro", mp, NULL), -EINVAL);

	/* "--" ends options; "-" and "-o"'s argument are not flags */
	CHECK_INT(args(&c, err, "-o", "ro", "--", url, mp, NULL), 0);
	CHECK_INT(c.read_only, 1);
	CHECK_INT(args(&c, err, "--", "-f", mp, NULL), -EINVAL);
	CHECK_HAS(err, "malformed URL \"-f\"");
}

/* config_load_secrets: file checks, parsing, env variables taken and removed. */
static void test_load_secrets(void)
{
	struct config c;
	char err[CONFIG_ERRLEN];
	const char *path;
	int rc;

	unsetenv("LIBISCSI_CHAP_USERNAME");
	unsetenv("LIBISCSI_CHAP_PASSWORD");
	unsetenv("LIBISCSI_CHAP_TARGET_USERNAME");
	unsetenv("LIBISCSI_CHAP_TARGET_PASSWORD");

	/* nothing anywhere: no CHAP */
	config_init(&c);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), 0);
	CHECK_INT(c.chap, 0);
	CHECK_INT(c.mutual_chap, 0);

	/* a good file, mode 600, with comments, blanks, CRLF and loose spacing */
	path = write_file("good.secret", 0600,
			  "# CHAP for the lab target\n"
			  "\n"
			  "username = alice\n"
			  "password=Hunter2 with spaces  \r\n"
			  "   target_username   =  tgt\n"
			  "target_password = Sw0rdfish#42\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	rc = config_load_secrets(&c, err, sizeof err);
	CHECK_INT(rc, 0);
	if (rc)
		fprintf(stderr, "  err: %s\n", err);
	CHECK_STR(c.secrets.username, "alice");
	CHECK_STR(c.secrets.password, "Hunter2 with spaces");
	CHECK_STR(c.secrets.target_username, "tgt");
	CHECK_STR(c.secrets.target_password, "Sw0rdfish#42");
	CHECK_INT(c.chap, 1);
	CHECK_INT(c.mutual_chap, 1);

	/* config_wipe_secrets zeroes every byte */
	config_wipe_secrets(&c);
	{
		static const struct config_secrets zero;
		checks++;
		if (memcmp(&c.secrets, &zero, sizeof zero) != 0) {
			failures++;
			fprintf(stderr, "%s:%d: secrets not wiped\n", __FILE__, __LINE__);
		}
	}

	/* one-way only, user name from the URL */
	path = write_file("oneway.secret", 0400, "password = Hunter2xyz\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	strcpy(c.url.user, "bob");
	CHECK_INT(config_load_secrets(&c, err, sizeof err), 0);
	CHECK_STR(c.secrets.username, "bob");
	CHECK_INT(c.chap, 1);
	CHECK_INT(c.mutual_chap, 0);

	/* the file's user name wins over the URL's */
	path = write_file("both.secret", 0600, "username = carol\npassword = Hunter2xyz\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	strcpy(c.url.user, "bob");
	CHECK_INT(config_load_secrets(&c, err, sizeof err), 0);
	CHECK_STR(c.secrets.username, "carol");

	/* mode 644 refused */
	path = write_file("open.secret", 0644, "username = a\npassword = Hunter2xyz\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	rc = config_load_secrets(&c, err, sizeof err);
	CHECK_INT(rc, -EPERM);
	{
		char want[600];
		snprintf(want, sizeof want, "secret file %s is readable or writable by group "
			 "or others (mode 0644): chmod 600 %s", path, path);
		CHECK_STR(err, want);
	}
	CHECK_STR(c.secrets.password, "");
	CHECK_INT(c.chap, 0);
	path = write_file("groupw.secret", 0620, "username = a\npassword = Hunter2xyz\n");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EPERM);
	CHECK_HAS(err, "(mode 0620)");

	/* a file owned by someone else is refused (needs root to set up) */
	if (geteuid() == 0) {
		path = write_file("theirs.secret", 0600, "username = a\npassword = Hunter2xyz\n");
		if (chown(path, 65534, 65534) == 0) {
			config_init(&c);
			snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
			CHECK_INT(config_load_secrets(&c, err, sizeof err), -EPERM);
			CHECK_HAS(err, "is owned by uid 65534, not by you (uid 0)");
		}
	}

	/* unknown key, with its line number */
	path = write_file("unknown.secret", 0600,
			  "username = a\npassword = Hunter2xyz\n\nfoo = bar\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	rc = config_load_secrets(&c, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "line 4: unknown key: expected username, password");
	CHECK_HASNT(err, "Hunter2xyz");
	CHECK_STR(c.secrets.password, "");      /* wiped on error */
	check_one_line(err, __LINE__);

	/* a bare password that contains '=' is an unknown key, and no part of it shows */
	path = write_file("bare.secret", 0600, "username = a\nHunt3r=2xyz\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "line 2: unknown key");
	CHECK_HASNT(err, "Hunt3r");
	CHECK_HASNT(err, "2xyz");

	/* malformed line: the line text (maybe a bare password) is not echoed */
	path = write_file("malformed.secret", 0600, "username = a\n#\nHunter2xyz\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	rc = config_load_secrets(&c, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	{
		char want[600];
		snprintf(want, sizeof want, "secret file %s line 3: expected \"key = value\"",
			 path);
		CHECK_STR(err, want);
	}
	CHECK_HASNT(err, "Hunter2xyz");
	path = write_file("nokey.secret", 0600, " = Hunter2xyz\n");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "line 1: expected");
	path = write_file("twice.secret", 0600, "username = a\nusername = b\n");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "line 2: \"username\" is set twice");

	/* identical initiator and target secrets */
	path = write_file("same.secret", 0600,
			  "username = a\npassword = Hunter2xyz\n"
			  "target_username = t\ntarget_password = Hunter2xyz\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "mutual CHAP needs different initiator and target secrets");
	CHECK_HASNT(err, "Hunter2xyz");
	CHECK_STR(c.secrets.target_password, "");

	/* incomplete sets */
	path = write_file("nouser.secret", 0600, "password = Hunter2xyz\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "sets password but no user name: set username too");
	CHECK_HASNT(err, "Hunter2xyz");
	path = write_file("nopass.secret", 0600, "username = alice\n");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "CHAP user \"alice\" has no password");
	path = write_file("tonly.secret", 0600,
			  "target_username = t\ntarget_password = Hunter2xyz\n");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "mutual CHAP needs one-way CHAP too: set username and password");
	path = write_file("tnouser.secret", 0600,
			  "username = a\npassword = p1234567890ab\ntarget_password = xyz\n");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "sets target_password but not target_username");
	path = write_file("tnopass.secret", 0600,
			  "username = a\npassword = p1234567890ab\ntarget_username = t\n");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "sets target_username but not target_password");

	/* user in the URL and no secret anywhere */
	config_init(&c);
	strcpy(c.url.user, "bob");
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "CHAP user \"bob\" has no password: put it in a secret file");

	/* missing file, directory */
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", tmp_path("nope.secret"));
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -ENOENT);
	CHECK_HAS(err, "cannot open secret file");
	snprintf(c.secret_file, sizeof c.secret_file, "%s", tmpdir);
	chmod(tmpdir, 0700);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "is not a regular file");

	/* environment: read, then gone */
	setenv("LIBISCSI_CHAP_USERNAME", "envuser", 1);
	setenv("LIBISCSI_CHAP_PASSWORD", "Hunter2xyz", 1);
	setenv("LIBISCSI_CHAP_TARGET_USERNAME", "envtgt", 1);
	setenv("LIBISCSI_CHAP_TARGET_PASSWORD", "Sw0rdfish42", 1);
	config_init(&c);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), 0);
	CHECK_STR(c.secrets.username, "envuser");
	CHECK_STR(c.secrets.password, "Hunter2xyz");
	CHECK_STR(c.secrets.target_username, "envtgt");
	CHECK_STR(c.secrets.target_password, "Sw0rdfish42");
	CHECK_INT(c.chap, 1);
	CHECK_INT(c.mutual_chap, 1);
	CHECK_INT(getenv("LIBISCSI_CHAP_USERNAME") == NULL, 1);
	CHECK_INT(getenv("LIBISCSI_CHAP_PASSWORD") == NULL, 1);
	CHECK_INT(getenv("LIBISCSI_CHAP_TARGET_USERNAME") == NULL, 1);
	CHECK_INT(getenv("LIBISCSI_CHAP_TARGET_PASSWORD") == NULL, 1);

	/* with a secret file the environment is ignored, but still removed */
	setenv("LIBISCSI_CHAP_PASSWORD", "EnvPass999", 1);
	path = write_file("good2.secret", 0600, "username = f\npassword = FilePass1\n");
	config_init(&c);
	snprintf(c.secret_file, sizeof c.secret_file, "%s", path);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), 0);
	CHECK_STR(c.secrets.password, "FilePass1");
	CHECK_INT(getenv("LIBISCSI_CHAP_PASSWORD") == NULL, 1);

	/* environment password without a user name */
	setenv("LIBISCSI_CHAP_PASSWORD", "Hunter2xyz", 1);
	config_init(&c);
	CHECK_INT(config_load_secrets(&c, err, sizeof err), -EINVAL);
	CHECK_STR(err, "the environment sets LIBISCSI_CHAP_PASSWORD but no user name: set "
		  "LIBISCSI_CHAP_USERNAME too, or write iscsi://NAME@host/... in the URL");
	CHECK_HASNT(err, "Hunter2xyz");
	CHECK_INT(getenv("LIBISCSI_CHAP_PASSWORD") == NULL, 1);
}

/* config_resolve_initiator: -o wins, then the file, then iqn.2026-11.org.iscsifs:HOST. */
static void test_resolve_initiator(void)
{
	struct config c;
	char err[CONFIG_ERRLEN], host[256], want[CONFIG_NAME_MAX + 64];
	const char *path;
	int rc;

	/* from an open-iscsi style file, skipping comments */
	path = write_file("initiatorname.iscsi", 0644,
			  "## DO NOT EDIT OR REMOVE THIS FILE!\n"
			  "#InitiatorName=iqn.1993-08.org.debian:01:commented\n"
			  "\n"
			  "InitiatorName=iqn.1993-08.org.debian:01:a1b2c3d4e5f6\n");
	config_init(&c);
	rc = config_resolve_initiator(&c, path, err, sizeof err);
	CHECK_INT(rc, 0);
	CHECK_STR(c.initiator, "iqn.1993-08.org.debian:01:a1b2c3d4e5f6");

	/* -o initiator= wins over the file */
	config_init(&c);
	CHECK_INT(config_parse_options(&c, "initiator=eui.0123456789ABCDEF", err, sizeof err),
		  0);
	CHECK_INT(config_resolve_initiator(&c, path, err, sizeof err), 0);
	CHECK_STR(c.initiator, "eui.0123456789ABCDEF");

	/* an invalid name in the file is an error that names the file */
	path = write_file("bad-initiatorname", 0644, "InitiatorName = not-a-name\n");
	config_init(&c);
	rc = config_resolve_initiator(&c, path, err, sizeof err);
	CHECK_INT(rc, -EINVAL);
	CHECK_HAS(err, "\"not-a-name\"");
	CHECK_HAS(err, path);
	CHECK_HAS(err, "-o initiator=NAME");

	/* no file, or a file without the key: derived from the host name */
	if (gethostname(host, sizeof host) < 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	for (char *p = host; *p; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-' || *p == ':'))
			*p = '-';
	}
	snprintf(want, sizeof want, "iqn.2026-11.org.iscsifs:%s", host);
	want[CONFIG_NAME_MAX - 1] = '\0';
	config_init(&c);
	CHECK_INT(config_resolve_initiator(&c, tmp_path("absent"), err, sizeof err), 0);
	CHECK_STR(c.initiator, want);
	CHECK_INT(config_check_iscsi_name(c.initiator), 0);
	path = write_file("empty-initiatorname", 0644, "# nothing here\n");
	config_init(&c);
	CHECK_INT(config_resolve_initiator(&c, path, err, sizeof err), 0);
	CHECK_STR(c.initiator, want);

	/* an explicit but invalid name (set behind the parser's back) is refused */
	config_init(&c);
	strcpy(c.initiator, "iqn.bad");
	c.initiator_explicit = true;
	CHECK_INT(config_resolve_initiator(&c, NULL, err, sizeof err), -EINVAL);
	CHECK_HAS(err, "invalid initiator name \"iqn.bad\"");
}

/* config_usage names every command and option. */
static void test_usage(void)
{
	static const char *words[] = {
		"Usage: iscsifs [-f] [-d] [-o OPTIONS] URL MOUNTPOINT", "iscsifs ls",
		"iscsifs stat MOUNTPOINT [--watch]", "--help", "--version", "3260",
		"ro", "allow_other", "cache=", "cache_size=", "256M", "cache_block=", "64K",
		"dirty_max=", "dirty_expire=", "readahead_max=", "sessions=", "noop_interval=",
		"noop_timeout=", "cmd_timeout=", "login_timeout=", "replacement_timeout=",
		"initiator=", "header_digest=", "secret_file=", "fsname=", "subtype=",
		"auto_unmount", "default_permissions", "max_read=", "_netdev", "x-*",
		"LIBISCSI_CHAP_USERNAME", "LIBISCSI_CHAP_TARGET_PASSWORD", "log=",
		"NOTIFY_SOCKET", "JOURNAL_STREAM", "--json", "noatime", "Exit status",
	};
	char *u = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&u, &len);

	config_print_usage(f);
	fclose(f);
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		CHECK_HAS(u, words[i]);
	/* every option of the table, and every exit code of exitcode.h */
	size_t n;
	const struct config_option *o = config_options(&n);
	for (size_t i = 0; i < n; i++)
		CHECK_HAS(u, o[i].name);
	for (int code = EXITCODE_OK; code <= EXITCODE_UNWRITTEN; code++) {
		char line[16];
		snprintf(line, sizeof line, "\n  %d  ", code);
		CHECK_HAS(u, line);
	}
	/* no line wider than a terminal */
	for (char *p = u, *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			break;
		CHECK_INT(nl - p <= 80, 1);
	}
	free(u);
}

/* The option table: each documented default is a value the option accepts and is the
 * value config_init() sets; names are unique; a relation names real options. */
static void test_option_table(void)
{
	size_t n;
	const struct config_option *o = config_options(&n);
	char err[CONFIG_ERRLEN], opt[256];

	for (size_t i = 0; i < n; i++) {
		struct config fresh, c;

		for (size_t j = 0; j < i; j++)
			CHECK_INT(strcmp(o[i].name, o[j].name) != 0, 1);
		CHECK_INT(o[i].help != NULL && o[i].help[0] != '\0', 1);
		if (o[i].min_of || o[i].max_of) {
			const char *rel = o[i].min_of ? o[i].min_of : o[i].max_of;
			bool found = false;
			for (size_t j = 0; j < n; j++)
				found |= strcmp(o[j].name, rel) == 0;
			CHECK_INT(found, 1);
		}
		if (!o[i].def || strcmp(o[i].name, "dirty_max") == 0 ||
		    !(o[i].kind == CONFIG_OPT_INT || o[i].kind == CONFIG_OPT_SIZE ||
		      o[i].kind == CONFIG_OPT_SECONDS || o[i].kind == CONFIG_OPT_ENUM))
			continue;
		config_init(&fresh);
		config_init(&c);
		snprintf(opt, sizeof opt, "%s=%s", o[i].name, o[i].def);
		CHECK_INT(config_parse_options(&c, opt, err, sizeof err), 0);
		CHECK_INT(memcmp(&c, &fresh, sizeof c), 0);
	}
}

/* Messages are cut to errlen, never overflow it. */
static void test_short_err(void)
{
	struct config_url u;
	char err[16];

	memset(err, 'z', sizeof err);
	CHECK_INT(config_parse_url("foo-bar-baz-quux-long", &u, err, 8), -EINVAL);
	CHECK_INT(strlen(err), 7);
	CHECK_INT(err[9], 'z');
	CHECK_INT(config_parse_url("foo", &u, NULL, 0), -EINVAL);
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_init();
	test_parse_size();
	test_check_iscsi_name();
	test_parse_url();
	test_parse_options();
	test_parse_args();
	test_load_secrets();
	test_resolve_initiator();
	test_usage();
	test_option_table();
	test_short_err();

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", tmpdir);
	printf("test_config: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
