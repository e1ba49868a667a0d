/*
 * config.c - from the command line to a struct config: the iscsi:// URL, the -o mount
 * options, the CHAP secrets (secret file or libiscsi's environment variables) and the
 * initiator name.
 *
 * Role: parsing and validation only. No network, no FUSE, no logging, no exit(). Every
 * failure returns -errno and writes one line into `err` that says what was wrong, which
 * value, and what to do.
 *
 * Invariants:
 *  - No secret reaches `err`, cfg->url_text or any field outside cfg->secrets. A URL
 *    with a password is refused before its text is stored or echoed, and URL text in
 *    any message passes through redact() first. Options are echoed by name only, never
 *    by value, when they are unknown or refused (a misspelt "pasword=..." must not end
 *    up on the terminal or in a log).
 *  - Every buffer that held secret bytes on the way into cfg->secrets (the file
 *    contents, the option list copy, the environment values) is wiped with
 *    explicit_bzero before the function returns, on success and on error. On error
 *    cfg->secrets is wiped too.
 *  - After config_parse_args() succeeds: cache_block is a power of two in
 *    [4 KiB, 16 MiB], cache_size >= cache_block unless cache=none, dirty_max <=
 *    cache_size (dirty_max defaults to cache_size / 4, computed after every -o list has
 *    been read, unless dirty_max= was given), every timeout is within its range, and
 *    mountpoint (mount, stat) is the absolute path of an existing directory.
 *
 * Why no getopt(): options may follow the positional arguments (mount.fuse3 puts -o
 * last), the first argument may be a subcommand, and the parser must be re-entrant for
 * the unit tests; a plain loop over argv is shorter than working around getopt's state.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iscsi/iscsi.h>

#include "iscsifs/config.h"
#include "iscsifs/util.h"

#define DEFAULT_INITIATOR_FILE "/etc/iscsi/initiatorname.iscsi"
#define FALLBACK_INITIATOR_PREFIX "iqn.2026-11.org.iscsifs:"
#define SECRET_FILE_MAX 8192       /* a secret file is four short lines */
#define SECONDS_MAX 86400          /* upper bound for every timeout option */
#define LUN_MAX 16383              /* SAM flat/peripheral addressing */
#define NAME_HINT "expected iqn.YYYY-MM.reverse.domain[:name] or eui.<16 hex digits>"
#define URL_HINT "expected iscsi://host[:port]/IQN[/LUN]"
#define SECRET_HINT "put it in a secret file and pass -o secret_file=PATH"

/* ---- messages ------------------------------------------------------------------ */

/* Format one line into err (control characters become '?'), return rc. */
static int __attribute__((format(printf, 4, 5)))
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	for (char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return rc;
}

/*
 * Copy URL-like text for a message. When the user-info part (between "://", or the
 * start, and the last '@') could hold a password (it contains ':' or '%'), it is
 * replaced by "***".
 */
static void redact(const char *text, char *out, size_t outlen)
{
	const char *scheme = strstr(text, "://");
	const char *start = scheme ? scheme + 3 : text;
	const char *at = strrchr(start, '@');

	if (at && strcspn(start, ":%") < (size_t)(at - start)) {
		snprintf(out, outlen, "%.*s***%s", (int)(start - text), text, at);
		return;
	}
	snprintf(out, outlen, "%s", text);
}

/* "256M" when exact, else the byte count: sizes in messages read like the options. */
static const char *fmt_size(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && v != 0 && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
	return buf;
}

/* ---- small parsers --------------------------------------------------------------- */

/* Unsigned decimal, digits only, <= max. */
static int parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		uint64_t d = (uint64_t)(s[i] - '0');

		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		if (v > (max - d) / 10 || d > max)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int config_parse_size(const char *text, uint64_t *out)
{
	const char *p = text;
	uint64_t v = 0, mult = 1;

	if (!text || !out || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	switch (tolower((unsigned char)*p)) {
	case 'k': mult = 1ULL << 10; p++; break;
	case 'm': mult = 1ULL << 20; p++; break;
	case 'g': mult = 1ULL << 30; p++; break;
	case 't': mult = 1ULL << 40; p++; break;
	default: break;
	}
	if (mult > 1 && strcasecmp(p, "ib") == 0)
		p += 2;
	else if (strcasecmp(p, "b") == 0)
		p++;
	if (*p)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

/* Seconds with up to three decimals ("1", "0.5", "2.125") -> milliseconds. */
static int parse_seconds_ms(const char *s, uint32_t max_s, uint32_t *out)
{
	const char *dot = strchr(s, '.');
	size_t ilen = dot ? (size_t)(dot - s) : strlen(s);
	uint64_t sec, frac = 0;
	int rc;

	rc = parse_uint(s, ilen, max_s, &sec);
	if (rc < 0)
		return rc;
	if (dot) {
		size_t flen = strlen(dot + 1);
		if (flen == 0 || flen > 3)
			return -EINVAL;
		rc = parse_uint(dot + 1, flen, 999, &frac);
		if (rc < 0)
			return rc;
		for (size_t i = flen; i < 3; i++)
			frac *= 10;
	}
	if (sec * 1000 + frac > (uint64_t)max_s * 1000)
		return -ERANGE;
	*out = (uint32_t)(sec * 1000 + frac);
	return 0;
}

static bool all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* ---- iSCSI names ------------------------------------------------------------------- */

/*
 * RFC 3720 3.2.6.3 / RFC 3722: "iqn." YYYY-MM "." reversed domain [":" anything],
 * "eui." 16 hex digits, "naa." 16 or 32 hex digits; at most 223 bytes.
 */
int config_check_iscsi_name(const char *name)
{
	const char *p, *dom;
	size_t len;
	int month;

	if (!name)
		return -EINVAL;
	len = strlen(name);
	if (len == 0 || len >= CONFIG_NAME_MAX)
		return -EINVAL;
	if (strncmp(name, "eui.", 4) == 0)
		return len == 20 && all_hex(name + 4, 16) ? 0 : -EINVAL;
	if (strncmp(name, "naa.", 4) == 0)
		return (len == 20 || len == 36) && all_hex(name + 4, len - 4) ? 0 : -EINVAL;
	if (strncmp(name, "iqn.", 4) != 0 || len < 13)
		return -EINVAL;

	p = name + 4;
	for (int i = 0; i < 7; i++)
		if (i == 4 ? p[i] != '-' : !isdigit((unsigned char)p[i]))
			return -EINVAL;
	month = (p[5] - '0') * 10 + (p[6] - '0');
	if (month < 1 || month > 12 || p[7] != '.')
		return -EINVAL;

	/* naming authority: a reversed domain name, lower case */
	dom = p + 8;
	for (p = dom; *p && *p != ':'; p++) {
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' ||
		      *p == '.'))
			return -EINVAL;
		if (*p == '.' && (p == dom || p[-1] == '.'))
			return -EINVAL;
	}
	if (p == dom || p[-1] == '.' || *dom == '-')
		return -EINVAL;
	if (*p == ':') {
		if (*++p == '\0')
			return -EINVAL;
		for (; *p; p++)
			if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
				return -EINVAL;
	}
	return 0;
}

/* ---- URL ---------------------------------------------------------------------------- */

/* Copy n bytes decoding %XX (libiscsi URL-encodes ':' in target names as %3A). */
static int percent_decode(const char *s, size_t n, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			if (i + 2 >= n || !all_hex(s + i + 1, 2))
				return -EINVAL;
			char hex[3] = { s[i + 1], s[i + 2], 0 };
			c = (char)strtol(hex, NULL, 16);
			if (c == '\0')
				return -EINVAL;
			i += 2;
		}
		if (o + 1 >= outlen)
			return -ENAMETOOLONG;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

static bool host_char_ok(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

int config_parse_url(const char *text, struct config_url *url, char *err, size_t errlen)
{
	static const char scheme[] = "iscsi://";
	char shown[1100];
	struct config_url u;
	const char *auth, *at, *host, *auth_end, *host_end, *port_s = NULL, *p, *seg, *q;
	size_t n;
	uint64_t v;

	if (!text)
		text = "";
	/* libiscsi's own URL form takes "?target_user=..&target_password=.." (and
	 * header_digest=); nothing here echoes such a URL, since its parts may be secret */
	q = strchr(text, '?');
	if (q) {
		if (strcasestr(q, "passw") || strcasestr(q, "secret"))
			return fail(err, errlen, -EINVAL,
				    "password in the URL is not allowed: %s", SECRET_HINT);
		return fail(err, errlen, -EINVAL,
			    "URL parameters (\"?...\") are not supported: use -o options "
			    "(see iscsifs --help) and -o secret_file=PATH for CHAP");
	}
	redact(text, shown, sizeof shown);
	memset(&u, 0, sizeof u);
	u.port = CONFIG_DEFAULT_PORT;
	u.lun = -1;

	if (strncasecmp(text, scheme, sizeof scheme - 1) != 0)
		return fail(err, errlen, -EINVAL, "malformed URL \"%s\": %s", shown, URL_HINT);
	auth = text + sizeof scheme - 1;

	/* user-info: everything before the last '@' (iSCSI names never contain '@') */
	at = strrchr(auth, '@');
	if (at) {
		n = (size_t)(at - auth);
		if (memchr(auth, ':', n) || memchr(auth, '%', n))
			return fail(err, errlen, -EINVAL,
				    "password in the URL is not allowed: %s", SECRET_HINT);
		if (n == 0)
			return fail(err, errlen, -EINVAL,
				    "empty user name in URL \"%s\": write iscsi://USER@host/... "
				    "or leave out the '@'", shown);
		if (memchr(auth, '/', n))
			return fail(err, errlen, -EINVAL, "malformed URL \"%s\": %s", shown,
				    URL_HINT);
		if (n >= sizeof u.user)
			return fail(err, errlen, -ENAMETOOLONG,
				    "user name in URL \"%s\" is too long (max %zu bytes)", shown,
				    sizeof u.user - 1);
		memcpy(u.user, auth, n);
		host = at + 1;
	} else {
		host = auth;
	}
	auth_end = host + strcspn(host, "/");

	/* host, [v6] or name/IPv4, then :port */
	if (*host == '[') {
		const char *rb = memchr(host, ']', (size_t)(auth_end - host));
		char addr[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		size_t alen;

		if (!rb)
			return fail(err, errlen, -EINVAL,
				    "malformed URL \"%s\": IPv6 address needs a closing ']'", shown);
		n = (size_t)(rb - host - 1);
		alen = strcspn(host + 1, "%]");          /* "%zone" may follow the address */
		if (n == 0 || n >= sizeof u.host || alen >= sizeof addr)
			goto bad_v6;
		memcpy(addr, host + 1, alen);
		addr[alen] = '\0';
		if (inet_pton(AF_INET6, addr, &a6) != 1)
			goto bad_v6;
		for (size_t i = alen + 1; i < n; i++)
			if (!host_char_ok(host[1 + i]))
				goto bad_v6;
		if (alen + 1 == n)               /* "%" with no zone */
			goto bad_v6;
		memcpy(u.host, host + 1, n);
		host_end = rb + 1;
		if (host_end < auth_end && *host_end != ':')
			return fail(err, errlen, -EINVAL,
				    "malformed URL \"%s\": expected ':PORT' or '/' after ']'", shown);
	} else {
		const char *colon = memchr(host, ':', (size_t)(auth_end - host));

		host_end = colon ? colon : auth_end;
		if (colon && memchr(colon + 1, ':', (size_t)(auth_end - colon - 1)))
			return fail(err, errlen, -EINVAL,
				    "IPv6 address in URL \"%s\" must be in brackets: "
				    "iscsi://[ADDRESS]:PORT/...", shown);
		n = (size_t)(host_end - host);
		for (size_t i = 0; i < n; i++)
			if (!host_char_ok(host[i]))
				return fail(err, errlen, -EINVAL,
					    "invalid host name in URL \"%s\": %s", shown, URL_HINT);
		if (n >= sizeof u.host)
			return fail(err, errlen, -ENAMETOOLONG,
				    "host name in URL \"%s\" is too long (max %zu bytes)", shown,
				    sizeof u.host - 1);
		memcpy(u.host, host, n);
	}
	if (u.host[0] == '\0')
		return fail(err, errlen, -EINVAL, "missing host in URL \"%s\": %s", shown,
			    URL_HINT);
	if (host_end < auth_end) {              /* at ':' */
		port_s = host_end + 1;
		n = (size_t)(auth_end - port_s);
		if (parse_uint(port_s, n, 65535, &v) < 0 || v == 0)
			return fail(err, errlen, -EINVAL,
				    "invalid port \"%.*s\" in URL \"%s\": expected 1..65535 "
				    "(default 3260)", (int)n, port_s, shown);
		u.port = (int)v;
		u.port_explicit = true;
	}

	/* path: "" | "/" | "/T" | "/T/" | "/T/L" | "/T/L/" */
	p = auth_end;
	if (*p == '/' && p[1] != '\0') {
		seg = ++p;
		n = strcspn(seg, "/");
		if (n == 0)
			return fail(err, errlen, -EINVAL,
				    "missing target in URL \"%s\": %s", shown, URL_HINT);
		if (percent_decode(seg, n, u.target, sizeof u.target) < 0 ||
		    config_check_iscsi_name(u.target) < 0)
			return fail(err, errlen, -EINVAL,
				    "invalid target name \"%.*s\" in URL \"%s\": %s", (int)n, seg,
				    shown, NAME_HINT);
		p = seg + n;
		if (*p == '/' && p[1] != '\0') {
			seg = ++p;
			n = strcspn(seg, "/");
			if (parse_uint(seg, n, LUN_MAX, &v) < 0)
				return fail(err, errlen, -EINVAL,
					    "invalid LUN \"%.*s\" in URL \"%s\": expected a number "
					    "0..%d", (int)n, seg, shown, LUN_MAX);
			u.lun = (int)v;
			p = seg + n;
		}
	}
	if (*p == '/')
		p++;
	if (*p != '\0')
		return fail(err, errlen, -EINVAL,
			    "malformed URL \"%s\": unexpected \"%s\" after the %s; %s", shown, p,
			    u.lun >= 0 ? "LUN" : "target", URL_HINT);

	if (strchr(u.host, ':'))
		snprintf(u.portal, sizeof u.portal, "[%s]:%d", u.host, u.port);
	else
		snprintf(u.portal, sizeof u.portal, "%s:%d", u.host, u.port);
	*url = u;
	return 0;

bad_v6:
	return fail(err, errlen, -EINVAL, "invalid IPv6 address in URL \"%s\": %s", shown,
		    "expected iscsi://[ADDRESS]:PORT/...");
}

/* ---- -o options: the table -------------------------------------------------------- */

/* State that lives across several -o lists of one command line. */
struct opt_state {
	bool dirty_max_set;      /* dirty_max= was given: do not derive it from cache_size */
};

static int check_initiator(struct config *cfg, const char *v, char *err, size_t errlen);
static int check_secret_file(struct config *cfg, const char *v, char *err, size_t errlen);
static int check_log(struct config *cfg, const char *v, char *err, size_t errlen);

static const struct config_enum_value cache_modes[] = {
	{ "writeback", CONFIG_CACHE_WRITEBACK },
	{ "writethrough", CONFIG_CACHE_WRITETHROUGH },
	{ "none", CONFIG_CACHE_NONE },
	{ NULL, 0 },
};

static const struct config_enum_value header_digests[] = {
	{ "none", ISCSI_HEADER_DIGEST_NONE },
	{ "crc32c", ISCSI_HEADER_DIGEST_CRC32C },
	{ "none,crc32c", ISCSI_HEADER_DIGEST_NONE_CRC32C },
	{ "crc32c,none", ISCSI_HEADER_DIGEST_CRC32C_NONE },
	{ NULL, 0 },
};

#define F(field) offsetof(struct config, field)
#define MOUNTFLAG_HELP                                                                  \
	"Generic mount flags, passed to the kernel mount as mount(8) would (FUSE honours " \
	"these; as non-root, fusermount3 always adds nosuid and nodev)."
#define IGNORED_HELP                                                                    \
	"Accepted for mount(8) and fstab and dropped: they mean nothing to iscsifs, or "  \
	"FUSE (libfuse 3.14) cannot pass them on (the kernel mounts FUSE relatime)."

/*
 * Every -o option. Keep each row's help self-contained: it is printed by --help, in
 * the man page and in the README table. Rows with the same help text (the same
 * string) in a row are shown as one entry.
 */
static const struct config_option options[] = {
	{ .name = "ro", .kind = CONFIG_OPT_FLAG, .off = F(read_only), .min = 1,
	  .def = "off", .help = "Read-only: files are 0400 and writes fail with EROFS." },
	{ .name = "rw", .kind = CONFIG_OPT_FLAG, .off = F(read_only), .min = 0,
	  .def = "on", .help = "Read-write (undoes an earlier ro)." },
	{ .name = "allow_other", .kind = CONFIG_OPT_FLAG, .off = F(allow_other), .min = 1,
	  .def = "off",
	  .help = "Let other users in (FUSE); default_permissions is always on, so file "
		  "modes are enforced." },
	{ .name = "cache", .kind = CONFIG_OPT_ENUM, .metavar = "MODE", .off = F(cache_mode),
	  .values = cache_modes, .def = "writeback",
	  .help = "writeback: write() completes in the cache; writethrough: write() "
		  "completes when the target has it; none: no caching at all, for LUNs "
		  "shared by several initiators (direct I/O: a shared mmap needs Linux 6.6 "
		  "or later, for FUSE_DIRECT_IO_ALLOW_MMAP; older kernels refuse it with "
		  "ENODEV)." },
	{ .name = "cache_size", .kind = CONFIG_OPT_SIZE, .metavar = "SIZE",
	  .off = F(cache_size), .min = 0, .max = UINT64_MAX, .def = "256M",
	  .min_of = "cache_block", .min_mult = 8, .needs_cache = true,
	  .why = "the cache needs at least 8 blocks",
	  .help = "Byte budget of the block cache for the whole mount: all LUNs together, "
		  "shared by use; never exceeded." },
	{ .name = "cache_block", .kind = CONFIG_OPT_SIZE, .metavar = "SIZE",
	  .off = F(cache_block), .min = 4096, .max = 16 << 20, .pow2 = true, .def = "64K",
	  .help = "Cache block, the unit of memory and eviction; raised to the LUN's "
		  "block size when that is larger." },
	{ .name = "dirty_max", .kind = CONFIG_OPT_SIZE, .metavar = "SIZE",
	  .off = F(dirty_max), .min = 0, .max = UINT64_MAX, .def = "cache_size/4",
	  .max_of = "cache_size", .why = "dirty data lives in the cache",
	  .help = "Writers wait (never fail) while cache blocks holding this much are dirty, all "
		  "LUNs together (each LUN gets a fair share)." },
	{ .name = "dirty_expire", .kind = CONFIG_OPT_SECONDS, .metavar = "SECONDS",
	  .off = F(dirty_expire_ms), .min = 0, .max = SECONDS_MAX * 1000ULL, .def = "1",
	  .help = "Dirty data older than this is written back (decimals allowed, e.g. "
		  "0.5)." },
	{ .name = "readahead_max", .kind = CONFIG_OPT_SIZE, .metavar = "SIZE",
	  .off = F(readahead_max), .min = 0, .max = 1ULL << 30, .def = "4M",
	  .help = "Read-ahead on sequential streaks grows up to this; 0 disables it." },
	{ .name = "sessions", .kind = CONFIG_OPT_INT, .metavar = "N", .off = F(sessions),
	  .min = 1, .max = 16, .def = "1",
	  .help = "iSCSI sessions per target; commands are spread over them." },
	{ .name = "noop_interval", .kind = CONFIG_OPT_INT, .metavar = "SECONDS",
	  .off = F(noop_interval), .min = 0, .max = SECONDS_MAX, .def = "5",
	  .help = "NOP-Out keepalive interval; 0 disables it." },
	{ .name = "noop_timeout", .kind = CONFIG_OPT_INT, .metavar = "SECONDS",
	  .off = F(noop_timeout), .min = 1, .max = SECONDS_MAX, .def = "5",
	  .help = "A keepalive not answered by then starts recovery." },
	{ .name = "cmd_timeout", .kind = CONFIG_OPT_INT, .metavar = "SECONDS",
	  .off = F(cmd_timeout), .min = 1, .max = SECONDS_MAX, .def = "30",
	  .help = "A SCSI command not answered by then starts recovery." },
	{ .name = "login_timeout", .kind = CONFIG_OPT_INT, .metavar = "SECONDS",
	  .off = F(login_timeout), .min = 1, .max = SECONDS_MAX, .def = "15",
	  .help = "Bound on connect + login, the first one included." },
	{ .name = "replacement_timeout", .kind = CONFIG_OPT_INT, .metavar = "SECONDS",
	  .off = F(replacement_timeout), .min = 0, .max = SECONDS_MAX, .def = "120",
	  .help = "The time budget of every request: every request completes, with EIO "
		  "at worst, at most replacement_timeout + cmd_timeout after it was issued; "
		  "once the target has answered nothing for this long, waiting and new I/O "
		  "fails at once until it answers again; 0 fails at once." },
	{ .name = "rescan_interval", .kind = CONFIG_OPT_INT, .metavar = "SECONDS",
	  .off = F(rescan_interval), .min = 0, .max = SECONDS_MAX, .def = "60",
	  .help = "Compare the files with the targets this often: REPORT LUNS, and READ "
		  "CAPACITY and the identity of each LUN (3 small commands per LUN a minute "
		  "by default, fewer than the keepalives); new LUNs appear, removed ones go, "
		  "sizes follow. For targets that send no unit attention (tgt); 0: only when "
		  "told (iscsifs rescan, SIGHUP, unit attentions, re-logins)." },
	{ .name = "initiator", .kind = CONFIG_OPT_STRING, .metavar = "NAME",
	  .off = F(initiator), .max = sizeof(((struct config *)0)->initiator),
	  .check = check_initiator,
	  .def = "InitiatorName= of /etc/iscsi/initiatorname.iscsi, else "
		 "iqn.2026-11.org.iscsifs:HOSTNAME",
	  .help = "Initiator name (IQN or EUI)." },
	{ .name = "header_digest", .kind = CONFIG_OPT_ENUM, .metavar = "DIGEST",
	  .off = F(header_digest), .values = header_digests, .def = "none,crc32c",
	  .help = "Header digest to offer, in order of preference." },
	{ .name = "secret_file", .kind = CONFIG_OPT_STRING, .metavar = "PATH",
	  .off = F(secret_file), .max = sizeof(((struct config *)0)->secret_file),
	  .check = check_secret_file, .def = "the LIBISCSI_CHAP_* variables",
	  .help = "CHAP secrets: \"key = value\" lines with username, password and, for "
		  "mutual CHAP, target_username and target_password; the file must be "
		  "yours and mode 0600." },
	{ .name = "log", .kind = CONFIG_OPT_STRING, .metavar = "stderr|syslog|FILE",
	  .off = F(log_file), .max = sizeof(((struct config *)0)->log_file),
	  .check = check_log,
	  .def = "stderr with -f; else syslog, or a file when /dev/log is absent",
	  .help = "Where log lines go. The fallback file is "
		  "$XDG_RUNTIME_DIR/iscsifs/MOUNT.log (or ~/.local/state/iscsifs/, or "
		  "/run/iscsifs/ for root); its path is printed at mount." },
	{ .name = "fsname", .kind = CONFIG_OPT_FUSE, .metavar = "NAME", .has_value = true,
	  .def = "the URL", .help = "The mount's source in /proc/mounts and df (FUSE)." },
	{ .name = "subtype", .kind = CONFIG_OPT_FUSE, .metavar = "NAME", .has_value = true,
	  .def = "iscsifs", .help = "The type shows as fuse.NAME (FUSE)." },
	{ .name = "max_read", .kind = CONFIG_OPT_FUSE, .metavar = "N", .has_value = true,
	  .min = 1, .max = UINT32_MAX,
	  .help = "Largest read request the kernel sends, in bytes (FUSE)." },
	{ .name = "auto_unmount", .kind = CONFIG_OPT_FUSE, .def = "on",
	  .help = "Unmount when the daemon dies (FUSE); always on, so a crashed daemon "
		  "never leaves a dead mountpoint." },
	{ .name = "default_permissions", .kind = CONFIG_OPT_FUSE, .def = "on",
	  .help = "The kernel checks file modes (FUSE); always on." },
	{ .name = "suid", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "nosuid", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "dev", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "nodev", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "exec", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "noexec", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "async", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "sync", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "dirsync", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "atime", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "noatime", .kind = CONFIG_OPT_MOUNTFLAG, .help = MOUNTFLAG_HELP },
	{ .name = "relatime", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "norelatime", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "strictatime", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "diratime", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "nodiratime", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "lazytime", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "nolazytime", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "auto", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "noauto", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "user", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "nouser", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "users", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "nofail", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "defaults", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "_netdev", .kind = CONFIG_OPT_IGNORED, .help = IGNORED_HELP },
	{ .name = "x-", .kind = CONFIG_OPT_IGNORED, .metavar = "*", .help = IGNORED_HELP },
};
#undef F

const struct config_option *config_options(size_t *n)
{
	*n = ARRAY_SIZE(options);
	return options;
}

static const struct config_option *find_option(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct config_option *o = &options[i];
		if (strcmp(o->name, "x-") == 0 ? strncmp(name, "x-", 2) == 0
					       : strcmp(name, o->name) == 0)
			return o;
	}
	return NULL;
}

static const struct config_enum_value *find_enum(const struct config_option *o,
						 const char *v)
{
	for (const struct config_enum_value *e = o->values; e && e->text; e++)
		if (strcasecmp(v, e->text) == 0)
			return e;
	return NULL;
}

static void *field(struct config *cfg, const struct config_option *o)
{
	return (char *)cfg + o->off;
}

/* An option's current value as a number (INT, SIZE, SECONDS), for the relations. */
static uint64_t number_of(const struct config *cfg, const struct config_option *o)
{
	const char *p = (const char *)cfg + o->off;
	uint32_t u32;
	uint64_t u64;
	int i;

	switch (o->kind) {
	case CONFIG_OPT_INT:
		memcpy(&i, p, sizeof i);
		return (uint64_t)i;
	case CONFIG_OPT_SECONDS:
		memcpy(&u32, p, sizeof u32);
		return u32;
	default:
		memcpy(&u64, p, sizeof u64);
		return u64;
	}
}

/* The value as the user would write it: "64K", "30", "0.5". */
static const char *fmt_value(const struct config_option *o, uint64_t v, char *buf,
			     size_t len)
{
	if (o->kind == CONFIG_OPT_SIZE)
		return fmt_size(v, buf, len);
	if (o->kind == CONFIG_OPT_SECONDS && v % 1000)
		snprintf(buf, len, "%llu.%03llu", (unsigned long long)(v / 1000),
			 (unsigned long long)(v % 1000));
	else
		snprintf(buf, len, "%llu",
			 (unsigned long long)(o->kind == CONFIG_OPT_SECONDS ? v / 1000 : v));
	return buf;
}

static bool is_password_option(const char *name)
{
	if (strcasestr(name, "password") || strcasestr(name, "passwd"))
		return true;
	return strcasestr(name, "secret") && strcmp(name, "secret_file") != 0;
}

static int append_fuse_opt(struct config *cfg, const char *name, const char *value,
			   char *err, size_t errlen)
{
	size_t used = strlen(cfg->fuse_opts);
	int n = snprintf(cfg->fuse_opts + used, sizeof cfg->fuse_opts - used, "%s%s%s%s",
			 used ? "," : "", name, value ? "=" : "", value ? value : "");

	if (n < 0 || (size_t)n >= sizeof cfg->fuse_opts - used) {
		cfg->fuse_opts[used] = '\0';
		return fail(err, errlen, -E2BIG,
			    "too many FUSE options (at \"%s\"): the limit is %zu bytes", name,
			    sizeof cfg->fuse_opts - 1);
	}
	return 0;
}

static int check_initiator(struct config *cfg, const char *v, char *err, size_t errlen)
{
	if (config_check_iscsi_name(v) < 0)
		return fail(err, errlen, -EINVAL, "invalid initiator name \"%s\": %s", v,
			    NAME_HINT);
	snprintf(cfg->initiator, sizeof cfg->initiator, "%s", v);
	cfg->initiator_explicit = true;
	return 0;
}

static int check_secret_file(struct config *cfg, const char *v, char *err, size_t errlen)
{
	if (strlen(v) >= sizeof cfg->secret_file)
		return fail(err, errlen, -ENAMETOOLONG,
			    "secret_file path is too long (max %zu bytes)",
			    sizeof cfg->secret_file - 1);
	snprintf(cfg->secret_file, sizeof cfg->secret_file, "%s", v);
	return 0;
}

/* log=stderr|syslog|FILE; FILE is made absolute now (the daemon runs in "/"). */
static int check_log(struct config *cfg, const char *v, char *err, size_t errlen)
{
	char cwd[PATH_MAX];
	int n;

	if (strcmp(v, "stderr") == 0 || strcmp(v, "syslog") == 0) {
		cfg->log_to = v[1] == 't' ? CONFIG_LOG_STDERR : CONFIG_LOG_SYSLOG;
		cfg->log_file[0] = '\0';
		return 0;
	}
	if (v[0] == '/')
		n = snprintf(cfg->log_file, sizeof cfg->log_file, "%s", v);
	else if (getcwd(cwd, sizeof cwd))
		n = snprintf(cfg->log_file, sizeof cfg->log_file, "%s/%s", cwd, v);
	else
		return fail(err, errlen, -errno, "log=%s: cannot resolve a relative path (%s): "
			    "give an absolute path", v, strerror(errno));
	if (n < 0 || (size_t)n >= sizeof cfg->log_file) {
		cfg->log_file[0] = '\0';
		return fail(err, errlen, -ENAMETOOLONG, "log file path is too long (max %zu "
			    "bytes)", sizeof cfg->log_file - 1);
	}
	cfg->log_to = CONFIG_LOG_FILE;
	return 0;
}

/* One option: `name`, and `value` (NULL when there was no '='). */
static int parse_one_option(struct config *cfg, const char *name, const char *value,
			    struct opt_state *st, char *err, size_t errlen)
{
	const struct config_option *o;
	const struct config_enum_value *e;
	char a[32], b[32];
	uint64_t v;
	uint32_t ms;
	bool has_value;
	int rc, iv;

	if (is_password_option(name))
		return fail(err, errlen, -EINVAL,
			    "password on the command line is not allowed (option \"%s\"): %s",
			    name, SECRET_HINT);
	o = find_option(name);
	if (!o)
		return fail(err, errlen, -EINVAL, "unknown option \"%s\": see iscsifs --help",
			    name);
	if (o->kind == CONFIG_OPT_IGNORED)
		return 0;
	has_value = o->kind == CONFIG_OPT_FUSE ? o->has_value : o->metavar != NULL;
	if (!has_value && value)
		return fail(err, errlen, -EINVAL,
			    "option \"%s\" takes no value: write just %s", name, name);
	if (has_value && (!value || !*value))
		return fail(err, errlen, -EINVAL, "option \"%s\" needs a value: %s=VALUE (see "
			    "iscsifs --help)", name, name);

	switch (o->kind) {
	case CONFIG_OPT_FLAG:
		*(bool *)field(cfg, o) = o->min != 0;
		return 0;
	case CONFIG_OPT_MOUNTFLAG:
		return append_fuse_opt(cfg, name, NULL, err, errlen);
	case CONFIG_OPT_FUSE:
		if (o->max && (parse_uint(value, strlen(value), o->max, &v) < 0 || v < o->min))
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for %s: expected a number %llu..%llu",
				    value, name, (unsigned long long)o->min,
				    (unsigned long long)o->max);
		return append_fuse_opt(cfg, name, value, err, errlen);
	case CONFIG_OPT_INT:
		rc = parse_uint(value, strlen(value), o->max, &v);
		if (rc < 0 || v < o->min)
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for %s: expected a whole number "
				    "%llu..%llu", value, name, (unsigned long long)o->min,
				    (unsigned long long)o->max);
		iv = (int)v;
		memcpy(field(cfg, o), &iv, sizeof iv);
		return 0;
	case CONFIG_OPT_SIZE:
		rc = config_parse_size(value, &v);
		if (rc == -ERANGE)
			return fail(err, errlen, -EINVAL, "size \"%s\" for %s is too large",
				    value, name);
		if (rc < 0)
			return fail(err, errlen, -EINVAL,
				    "invalid size \"%s\" for %s: expected a number with an "
				    "optional K, M, G or T suffix (e.g. 256M)", value, name);
		if (v < o->min || v > o->max || (o->pow2 && (v & (v - 1))))
			return fail(err, errlen, -EINVAL,
				    "invalid size \"%s\" for %s: expected %s%s..%s", value, name,
				    o->pow2 ? "a power of two " : "",
				    fmt_size(o->min, a, sizeof a), fmt_size(o->max, b, sizeof b));
		memcpy(field(cfg, o), &v, sizeof v);
		if (strcmp(name, "dirty_max") == 0)
			st->dirty_max_set = true;
		return 0;
	case CONFIG_OPT_SECONDS:
		if (parse_seconds_ms(value, (uint32_t)(o->max / 1000), &ms) < 0 || ms < o->min)
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for %s: expected seconds %s..%s, up to "
				    "three decimals (e.g. 0.5)", value, name,
				    fmt_value(o, o->min, a, sizeof a),
				    fmt_value(o, o->max, b, sizeof b));
		memcpy(field(cfg, o), &ms, sizeof ms);
		return 0;
	case CONFIG_OPT_ENUM: {
		char list[256] = "";
		size_t k = 0, n = 0;

		e = find_enum(o, value);
		if (e) {
			iv = e->value;
			memcpy(field(cfg, o), &iv, sizeof iv);
			return 0;
		}
		for (const struct config_enum_value *x = o->values; x->text; x++)
			n++;
		for (size_t i = 0; i < n && k < sizeof list; i++)
			k += (size_t)snprintf(list + k, sizeof list - k, "%s%s",
					      i == 0 ? "" : i + 1 == n ? " or " : ", ",
					      o->values[i].text);
		return fail(err, errlen, -EINVAL, "invalid value \"%s\" for %s: expected %s",
			    value, name, list);
	}
	case CONFIG_OPT_STRING:
		return o->check(cfg, value, err, errlen);
	case CONFIG_OPT_IGNORED:
		break;
	}
	return 0;
}

static bool enum_has_comma(const struct config_option *o)
{
	for (const struct config_enum_value *e = o->values; e && e->text; e++)
		if (strchr(e->text, ','))
			return true;
	return false;
}

/* One comma-separated list. An enum value that may hold a comma ("header_digest=
 * crc32c,none") takes the next item along when that item is a bare word and not an
 * option of its own ("header_digest=crc32c,ro" is two options). A word with '=' never
 * joins: it could be a refused password, which must not end up in a message. */
static int parse_option_list(struct config *cfg, const char *opts, struct opt_state *st,
			     char *err, size_t errlen)
{
	size_t len = strlen(opts);
	char *copy = strdup(opts), *p = copy;
	int rc = 0;

	if (!copy)
		return fail(err, errlen, -ENOMEM, "out of memory parsing options");
	while (p && rc == 0) {
		char *item = p, *comma = strchr(p, ','), *value;
		const struct config_option *o;

		if (comma) {
			*comma = '\0';
			p = comma + 1;
		} else {
			p = NULL;
		}
		value = strchr(item, '=');
		if (value)
			*value++ = '\0';
		o = value ? find_option(item) : NULL;
		if (o && o->kind == CONFIG_OPT_ENUM && enum_has_comma(o)) {
			while (p) {
				size_t n = strcspn(p, ",");
				char word[64];

				if (n == 0 || n >= sizeof word || memchr(p, '=', n))
					break;
				memcpy(word, p, n);
				word[n] = '\0';
				if (find_option(word))
					break;
				*comma = ',';
				comma = p[n] ? p + n : NULL;
				p = comma ? comma + 1 : NULL;
				if (comma)
					*comma = '\0';
			}
		}
		if (*item)
			rc = parse_one_option(cfg, item, value, st, err, errlen);
		else if (value)
			rc = fail(err, errlen, -EINVAL,
				  "option with an empty name in -o: write NAME=VALUE");
	}
	explicit_bzero(copy, len);   /* the list may have held a refused password */
	free(copy);
	return rc;
}

/* Cross-option rules (the table's min_of / max_of), once every -o list has been read. */
static int finish_options(struct config *cfg, const struct opt_state *st, char *err,
			  size_t errlen)
{
	char a[32], b[32], c[32];

	if (!st->dirty_max_set)
		cfg->dirty_max = cfg->cache_size / 4;
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct config_option *o = &options[i], *r;
		uint64_t v = number_of(cfg, o), limit;

		if (o->needs_cache && cfg->cache_mode == CONFIG_CACHE_NONE)
			continue;
		if (o->min_of) {
			r = find_option(o->min_of);
			limit = number_of(cfg, r) * o->min_mult;
			if (v < limit)
				return fail(err, errlen, -EINVAL,
					    "%s=%s is below %llu x %s=%s = %s (%s): raise %s or "
					    "lower %s", o->name, fmt_value(o, v, a, sizeof a),
					    (unsigned long long)o->min_mult, r->name,
					    fmt_value(r, number_of(cfg, r), b, sizeof b),
					    fmt_value(o, limit, c, sizeof c), o->why, o->name,
					    r->name);
		}
		if (o->max_of) {
			r = find_option(o->max_of);
			limit = number_of(cfg, r);
			if (v > limit)
				return fail(err, errlen, -EINVAL,
					    "%s=%s is larger than %s=%s (%s): lower %s or raise %s",
					    o->name, fmt_value(o, v, a, sizeof a), r->name,
					    fmt_value(r, limit, b, sizeof b), o->why, o->name,
					    r->name);
		}
	}
	return 0;
}

/*
 * A dirty_max that differs from cache_size / 4 was set on purpose by an earlier call;
 * one that equals it follows cache_size. (config_parse_args() tracks this exactly.)
 */
int config_parse_options(struct config *cfg, const char *opts, char *err, size_t errlen)
{
	struct opt_state st = { .dirty_max_set = cfg->dirty_max != cfg->cache_size / 4 };
	int rc;

	if (!opts)
		return 0;
	rc = parse_option_list(cfg, opts, &st, err, errlen);
	if (rc < 0)
		return rc;
	return finish_options(cfg, &st, err, errlen);
}

/* ---- defaults --------------------------------------------------------------------- */

/*
 * The defaults come from the table: every number, size, duration and enum option whose
 * `def` is a value is set by parsing that text, so the documented default is the one
 * in force. (dirty_max's "cache_size/4" is derived once the options are read.)
 */
void config_init(struct config *cfg)
{
	struct opt_state st = { 0 };

	memset(cfg, 0, sizeof *cfg);
	cfg->command = CONFIG_CMD_MOUNT;
	cfg->url.port = CONFIG_DEFAULT_PORT;
	cfg->url.lun = -1;
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct config_option *o = &options[i];

		if (o->def && (o->kind == CONFIG_OPT_INT || o->kind == CONFIG_OPT_SIZE ||
			       o->kind == CONFIG_OPT_SECONDS || o->kind == CONFIG_OPT_ENUM))
			parse_one_option(cfg, o->name, o->def, &st, NULL, 0);
	}
	cfg->dirty_max = cfg->cache_size / 4;
	cfg->uid = (uint32_t)getuid();
	cfg->gid = (uint32_t)getgid();
}

/* ---- command line ----------------------------------------------------------------- */

/* Is `dir` (a canonical path) already the mountpoint of an iscsifs mount? Mounting
 * another on top would hide it while its daemon and open files go on, and the next
 * `fusermount3 -u` would unmount the wrong one. */
static bool is_iscsifs_mount(const char *dir)
{
	FILE *f = setmntent("/proc/self/mounts", "r");
	struct mntent *e;
	bool found = false;
	if (!f)
		return false;
	while (!found && (e = getmntent(f)))
		found = strcmp(e->mnt_dir, dir) == 0 && strcmp(e->mnt_type, "fuse.iscsifs") == 0;
	endmntent(f);
	return found;
}

/* `for_mount`: the directory is to be mounted on (not an existing mount's, as for
 * stat and rescan). */
static int check_mountpoint(const char *arg, bool for_mount, char *out, size_t outlen,
			    char *err, size_t errlen)
{
	char buf[PATH_MAX];
	struct stat sb;
	int e;

	if (!realpath(arg, buf) || stat(buf, &sb) < 0) {
		e = errno;
		if (e == ENOENT)
			return fail(err, errlen, -ENOENT,
				    "mountpoint %s does not exist: create it first", arg);
		if (e == ENOTCONN)
			return fail(err, errlen, -ENOTCONN,
				    "mountpoint %s is a dead FUSE mount (transport endpoint is "
				    "not connected): run fusermount3 -u %s", arg, arg);
		if (e == ENOTDIR)
			return fail(err, errlen, -ENOTDIR,
				    "mountpoint %s is not a directory: give a directory", arg);
		return fail(err, errlen, -e, "cannot use mountpoint %s: %s", arg, strerror(e));
	}
	if (!S_ISDIR(sb.st_mode))
		return fail(err, errlen, -ENOTDIR,
			    "mountpoint %s is not a directory: give a directory", arg);
	if (for_mount && is_iscsifs_mount(buf))
		return fail(err, errlen, -EBUSY,
			    "mountpoint %s is already an iscsifs mount: unmount it first "
			    "(fusermount3 -u %s) or give another directory", arg, arg);
	if (strlen(buf) >= outlen)
		return fail(err, errlen, -ENAMETOOLONG, "mountpoint %s: path is too long", arg);
	strcpy(out, buf);
	return 0;
}

/* Print an argument in a message: up to '=' only (it may be "--password=..."). */
static int bad_arg(char *err, size_t errlen, const char *what, const char *arg)
{
	char shown[256];

	redact(arg, shown, sizeof shown);
	shown[strcspn(shown, "=")] = '\0';
	return fail(err, errlen, -EINVAL, "%s \"%s\": see iscsifs --help", what, shown);
}

int config_parse_args(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	static const char *const usage_line[] = {
		[CONFIG_CMD_MOUNT] = "usage: iscsifs [-f] [-d] [-o OPTIONS] URL MOUNTPOINT",
		[CONFIG_CMD_LS] = "usage: iscsifs ls [-d] [--json] [-o OPTIONS] URL",
		[CONFIG_CMD_STAT] = "usage: iscsifs stat MOUNTPOINT [--watch] [--json]",
		[CONFIG_CMD_RESCAN] = "usage: iscsifs rescan MOUNTPOINT",
	};
	struct opt_state st = { .dirty_max_set = cfg->dirty_max != cfg->cache_size / 4 };
	const char *pos[2] = { NULL, NULL }, *url_arg = NULL, *mp_arg = NULL;
	int npos = 0, want, i, rc;
	bool opts_done = false;

	/* -h / -V win wherever they are (before "--") */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			break;
		if (strcmp(a, "-o") == 0) {
			i++;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cfg->command = CONFIG_CMD_HELP;
			return 0;
		}
		if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			cfg->command = CONFIG_CMD_VERSION;
			return 0;
		}
	}

	i = 1;
	cfg->command = CONFIG_CMD_MOUNT;
	/* "help" and "version" are words, never URLs: say what they mean */
	if (argc > 1 && strcmp(argv[1], "help") == 0) {
		cfg->command = CONFIG_CMD_HELP;
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "version") == 0) {
		cfg->command = CONFIG_CMD_VERSION;
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "ls") == 0) {
		cfg->command = CONFIG_CMD_LS;
		i = 2;
	} else if (argc > 1 && strcmp(argv[1], "stat") == 0) {
		cfg->command = CONFIG_CMD_STAT;
		i = 2;
	} else if (argc > 1 && strcmp(argv[1], "rescan") == 0) {
		cfg->command = CONFIG_CMD_RESCAN;
		i = 2;
	}
	/* stat and rescan name a mountpoint, nothing else */
	bool mp_only = cfg->command == CONFIG_CMD_STAT || cfg->command == CONFIG_CMD_RESCAN;
	want = cfg->command == CONFIG_CMD_MOUNT ? 2 : 1;

	for (; i < argc; i++) {
		const char *a = argv[i];

		if (!opts_done && a[0] == '-' && a[1] != '\0') {
			if (strcmp(a, "--") == 0) {
				opts_done = true;
			} else if (strcmp(a, "-f") == 0) {
				if (cfg->command != CONFIG_CMD_MOUNT)
					return fail(err, errlen, -EINVAL,
						    "-f is only for mounting: see iscsifs --help");
				cfg->foreground = true;
			} else if (strcmp(a, "-d") == 0) {
				cfg->debug = true;
			} else if (strncmp(a, "-o", 2) == 0) {
				const char *o = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
				if (!o)
					return fail(err, errlen, -EINVAL,
						    "-o needs a list of options: -o OPT[,OPT...] "
						    "(see iscsifs --help)");
				if (mp_only)
					return fail(err, errlen, -EINVAL,
						    "iscsifs %s takes no -o options: %s", argv[1],
						    usage_line[cfg->command]);
				rc = parse_option_list(cfg, o, &st, err, errlen);
				if (rc < 0)
					return rc;
			} else if (strcmp(a, "--watch") == 0) {
				if (cfg->command != CONFIG_CMD_STAT)
					return fail(err, errlen, -EINVAL,
						    "--watch is only for iscsifs stat: %s",
						    usage_line[CONFIG_CMD_STAT]);
				cfg->watch = true;
			} else if (strcmp(a, "--json") == 0) {
				if (cfg->command == CONFIG_CMD_MOUNT ||
				    cfg->command == CONFIG_CMD_RESCAN)
					return fail(err, errlen, -EINVAL,
						    "--json is only for iscsifs ls and iscsifs "
						    "stat: see iscsifs --help");
				cfg->json = true;
			} else {
				return bad_arg(err, errlen, "unknown option", a);
			}
			continue;
		}
		if (npos == want)
			return bad_arg(err, errlen, "unexpected argument", a);
		pos[npos++] = a;
	}

	if (mp_only) {
		mp_arg = pos[0];
	} else {
		url_arg = pos[0];
		mp_arg = pos[1];
	}
	if (!mp_only && !url_arg)
		return fail(err, errlen, -EINVAL, "missing URL: %s", usage_line[cfg->command]);
	if (cfg->command != CONFIG_CMD_LS && !mp_arg)
		return fail(err, errlen, -EINVAL, "missing mountpoint: %s",
			    usage_line[cfg->command]);

	if (url_arg) {
		rc = config_parse_url(url_arg, &cfg->url, err, errlen);
		if (rc < 0)
			return rc;
		if (strlen(url_arg) >= sizeof cfg->url_text)
			return fail(err, errlen, -ENAMETOOLONG, "URL is too long (max %zu bytes)",
				    sizeof cfg->url_text - 1);
		strcpy(cfg->url_text, url_arg);    /* no password: config_parse_url refused it */
		cfg->have_url = true;
	}
	rc = finish_options(cfg, &st, err, errlen);
	if (rc < 0)
		return rc;
	if (mp_arg) {
		rc = check_mountpoint(mp_arg, !mp_only, cfg->mountpoint, sizeof cfg->mountpoint, err,
				      errlen);
		if (rc < 0 && mp_only)
			return fail(err, errlen, rc, "%s is not an iscsifs mount (%s)", mp_arg,
				    strerror(-rc));
		if (rc < 0)
			return rc;
	}
	if (cfg->command == CONFIG_CMD_MOUNT) {
		cfg->uid = (uint32_t)getuid();
		cfg->gid = (uint32_t)getgid();
	}
	return 0;
}

/* ---- secrets ---------------------------------------------------------------------- */

static const struct secret_key {
	const char *key;         /* in the secret file */
	const char *env;         /* libiscsi's environment variable */
	size_t off;
} secret_keys[] = {
	{ "username", "LIBISCSI_CHAP_USERNAME", offsetof(struct config_secrets, username) },
	{ "password", "LIBISCSI_CHAP_PASSWORD", offsetof(struct config_secrets, password) },
	{ "target_username", "LIBISCSI_CHAP_TARGET_USERNAME",
	  offsetof(struct config_secrets, target_username) },
	{ "target_password", "LIBISCSI_CHAP_TARGET_PASSWORD",
	  offsetof(struct config_secrets, target_password) },
};

static char *secret_field(struct config_secrets *s, const struct secret_key *k)
{
	return (char *)s + k->off;
}

static char *trim(char *s, char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*end = '\0';
	return s;
}

/* Parse the file's `key = value` lines (buf is NUL-terminated and modified). */
static int parse_secret_lines(const char *path, char *buf, struct config_secrets *s,
			      char *err, size_t errlen)
{
	int lineno = 0;

	for (char *line = buf, *next; line; line = next) {
		char *nl = strchr(line, '\n'), *eq, *key, *value;
		const struct secret_key *k = NULL;
		char *field;

		next = nl ? nl + 1 : NULL;
		lineno++;
		line = trim(line, nl ? nl : line + strlen(line));
		if (*line == '\0' || *line == '#')
			continue;
		eq = strchr(line, '=');
		if (!eq)
			return fail(err, errlen, -EINVAL,
				    "secret file %s line %d: expected \"key = value\"", path, lineno);
		key = trim(line, eq);
		value = trim(eq + 1, eq + 1 + strlen(eq + 1));
		if (*key == '\0')
			return fail(err, errlen, -EINVAL,
				    "secret file %s line %d: expected \"key = value\"", path, lineno);
		for (size_t i = 0; i < ARRAY_SIZE(secret_keys); i++)
			if (strcmp(key, secret_keys[i].key) == 0)
				k = &secret_keys[i];
		/* the key is not echoed: a bare "s3cr=t" line would put half a password
		 * on the terminal */
		if (!k)
			return fail(err, errlen, -EINVAL,
				    "secret file %s line %d: unknown key: expected username, "
				    "password, target_username or target_password", path, lineno);
		field = secret_field(s, k);
		if (*value == '\0')
			return fail(err, errlen, -EINVAL,
				    "secret file %s line %d: empty value for \"%s\"", path, lineno,
				    k->key);
		if (field[0])
			return fail(err, errlen, -EINVAL,
				    "secret file %s line %d: \"%s\" is set twice: keep one line",
				    path, lineno, k->key);
		if (strlen(value) >= CONFIG_SECRET_MAX)
			return fail(err, errlen, -EINVAL,
				    "secret file %s line %d: value of \"%s\" is too long (max %d "
				    "bytes)", path, lineno, k->key, CONFIG_SECRET_MAX - 1);
		strcpy(field, value);
	}
	return 0;
}

static int load_secret_file(const char *path, struct config_secrets *s, char *err,
			    size_t errlen)
{
	char buf[SECRET_FILE_MAX];
	struct stat sb;
	size_t len = 0;
	ssize_t n;
	int fd, rc;

	/* check the file actually opened, not the path: no race with a rename */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		return fail(err, errlen, rc, "cannot open secret file %s: %s: check -o "
			    "secret_file=", path, strerror(-rc));
	}
	if (fstat(fd, &sb) < 0) {
		rc = fail(err, errlen, -errno, "cannot stat secret file %s: %s", path,
			  strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = fail(err, errlen, -EINVAL,
			  "secret file %s is not a regular file: give the path of a file", path);
		goto out;
	}
	if (sb.st_uid != geteuid()) {
		rc = fail(err, errlen, -EPERM,
			  "secret file %s is owned by uid %u, not by you (uid %u): chown it "
			  "or use a file of your own", path, (unsigned)sb.st_uid,
			  (unsigned)geteuid());
		goto out;
	}
	if (sb.st_mode & 077) {
		rc = fail(err, errlen, -EPERM,
			  "secret file %s is readable or writable by group or others (mode "
			  "%04o): chmod 600 %s", path, (unsigned)(sb.st_mode & 07777), path);
		goto out;
	}
	while ((n = read(fd, buf + len, sizeof buf - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = fail(err, errlen, -errno, "cannot read secret file %s: %s", path,
				  strerror(errno));
			goto out;
		}
		len += (size_t)n;
		if (len == sizeof buf - 1) {
			rc = fail(err, errlen, -EFBIG,
				  "secret file %s is too large (max %d bytes): it should hold "
				  "four \"key = value\" lines", path, SECRET_FILE_MAX - 1);
			goto out;
		}
	}
	buf[len] = '\0';
	rc = parse_secret_lines(path, buf, s, err, errlen);
out:
	explicit_bzero(buf, sizeof buf);
	close(fd);
	return rc;
}

/*
 * Take the LIBISCSI_CHAP_* variables out of the environment: copy them into `s` when
 * `use`, and always wipe the values in place (so /proc/PID/environ no longer shows
 * them) and unsetenv() them, so that neither libiscsi nor a child process sees them.
 */
static int take_env_secrets(struct config_secrets *s, bool use, char *err, size_t errlen)
{
	int rc = 0;

	for (size_t i = 0; i < ARRAY_SIZE(secret_keys); i++) {
		const struct secret_key *k = &secret_keys[i];
		char *v = getenv(k->env);
		size_t n;

		if (!v)
			continue;
		n = strlen(v);
		if (use && rc == 0) {
			if (n >= CONFIG_SECRET_MAX)
				rc = fail(err, errlen, -EINVAL,
					  "%s is too long (max %d bytes)", k->env,
					  CONFIG_SECRET_MAX - 1);
			else
				memcpy(secret_field(s, k), v, n + 1);
		}
		explicit_bzero(v, n);
		unsetenv(k->env);
	}
	return rc;
}

int config_load_secrets(struct config *cfg, char *err, size_t errlen)
{
	struct config_secrets *s = &cfg->secrets;
	bool from_file = cfg->secret_file[0] != '\0';
	const char *key[ARRAY_SIZE(secret_keys)];
	char where[4200];
	int rc;

	config_wipe_secrets(cfg);
	cfg->chap = cfg->mutual_chap = false;
	if (from_file)
		snprintf(where, sizeof where, "secret file %s", cfg->secret_file);
	else
		snprintf(where, sizeof where, "the environment");

	rc = take_env_secrets(s, !from_file, err, errlen);
	if (rc == 0 && from_file)
		rc = load_secret_file(cfg->secret_file, s, err, errlen);
	if (rc < 0)
		goto fail;

	if (!s->username[0] && cfg->url.user[0])
		strcpy(s->username, cfg->url.user);

	/* name the keys the way the user wrote them: file keys or variable names */
	for (size_t i = 0; i < ARRAY_SIZE(secret_keys); i++)
		key[i] = from_file ? secret_keys[i].key : secret_keys[i].env;

	if (s->password[0] && !s->username[0]) {
		rc = fail(err, errlen, -EINVAL,
			  "%s sets %s but no user name: set %s too, or write "
			  "iscsi://NAME@host/... in the URL", where, key[1], key[0]);
	} else if (s->username[0] && !s->password[0]) {
		if (from_file)
			rc = fail(err, errlen, -EINVAL,
				  "CHAP user \"%s\" has no password: add password = SECRET to %s",
				  s->username, where);
		else
			rc = fail(err, errlen, -EINVAL,
				  "CHAP user \"%s\" has no password: %s", s->username,
				  SECRET_HINT);
	} else if (!s->target_username[0] != !s->target_password[0]) {
		rc = fail(err, errlen, -EINVAL,
			  "%s sets %s but not %s: mutual CHAP needs both", where,
			  s->target_username[0] ? key[2] : key[3],
			  s->target_username[0] ? key[3] : key[2]);
	} else if (s->target_username[0] && !s->username[0]) {
		rc = fail(err, errlen, -EINVAL,
			  "mutual CHAP needs one-way CHAP too: set %s and %s in %s", key[0],
			  key[1], where);
	} else if (s->target_password[0] && strcmp(s->password, s->target_password) == 0) {
		rc = fail(err, errlen, -EINVAL,
			  "mutual CHAP needs different initiator and target secrets: change "
			  "%s or %s in %s", key[1], key[3], where);
	}
	if (rc < 0)
		goto fail;
	cfg->chap = s->username[0] != '\0';
	cfg->mutual_chap = s->target_username[0] != '\0';
	return 0;

fail:
	config_wipe_secrets(cfg);
	return rc;
}

void config_wipe_secrets(struct config *cfg)
{
	explicit_bzero(&cfg->secrets, sizeof cfg->secrets);
}

/* ---- initiator name --------------------------------------------------------------- */

/* InitiatorName= from an open-iscsi style file: 1 found, 0 none or unreadable,
 * -1 too long (out holds the start, for the message). */
static int read_initiator_file(const char *path, char *out, size_t outlen)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return 0;
	while (!found && getline(&line, &cap, f) > 0) {
		char *p = trim(line, line + strcspn(line, "\n"));
		if (*p == '#' || strncmp(p, "InitiatorName", 13) != 0)
			continue;
		p += 13;
		p += strspn(p, " \t");
		if (*p != '=')
			continue;
		p = trim(p + 1, p + 1 + strlen(p + 1));
		snprintf(out, outlen, "%.*s", (int)(outlen - 1), p);
		found = strlen(p) < outlen ? 1 : -1;
	}
	free(line);
	fclose(f);
	return found;
}

int config_resolve_initiator(struct config *cfg, const char *path, char *err,
			     size_t errlen)
{
	char name[CONFIG_NAME_MAX], host[256];
	size_t plen = strlen(FALLBACK_INITIATOR_PREFIX), hlen;
	int found;

	if (cfg->initiator_explicit && cfg->initiator[0]) {
		if (config_check_iscsi_name(cfg->initiator) < 0)
			return fail(err, errlen, -EINVAL,
				    "invalid initiator name \"%s\" (-o initiator=): %s",
				    cfg->initiator, NAME_HINT);
		return 0;
	}
	if (!path)
		path = DEFAULT_INITIATOR_FILE;
	found = read_initiator_file(path, name, sizeof name);
	if (found != 0) {
		if (found < 0 || config_check_iscsi_name(name) < 0)
			return fail(err, errlen, -EINVAL,
				    "invalid initiator name \"%s\" in %s (%s): fix the file or "
				    "pass -o initiator=NAME", name, path, NAME_HINT);
		strcpy(cfg->initiator, name);
		return 0;
	}

	/* a stable name derived from the host name */
	if (gethostname(host, sizeof host) < 0 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	for (char *p = host; *p; p++) {
		*p = (char)tolower((unsigned char)*p);
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' ||
		      *p == '-' || *p == ':'))
			*p = '-';
	}
	hlen = strlen(host);
	if (plen + hlen >= sizeof name)
		hlen = sizeof name - 1 - plen;
	memcpy(name, FALLBACK_INITIATOR_PREFIX, plen);
	memcpy(name + plen, host, hlen);
	name[plen + hlen] = '\0';
	if (config_check_iscsi_name(name) < 0)
		return fail(err, errlen, -EINVAL,
			    "cannot derive an initiator name from host name \"%s\": pass -o "
			    "initiator=NAME", host);
	strcpy(cfg->initiator, name);
	return 0;
}

/* ---- usage and the option documents ------------------------------------------------ */

/* The rows [i, *end) that share one help text: one entry in every document. */
static size_t entry_end(size_t i)
{
	size_t j = i + 1;

	while (j < ARRAY_SIZE(options) && options[j].help == options[i].help)
		j++;
	return j;
}

/* "cache_size=SIZE", "ro", "x-*" */
static void entry_name(const struct config_option *o, char *buf, size_t len)
{
	if (o->kind == CONFIG_OPT_IGNORED && o->metavar)
		snprintf(buf, len, "%s%s", o->name, o->metavar);
	else if (o->metavar)
		snprintf(buf, len, "%s=%s", o->name, o->metavar);
	else
		snprintf(buf, len, "%s", o->name);
}

/* The sentences the table adds to the help: values, bounds, relations. */
static void entry_facts(const struct config_option *o, char *buf, size_t len)
{
	char a[32], b[32];
	size_t k = 0;

#define ADD(...) (k += (size_t)snprintf(buf + k, k < len ? len - k : 0, __VA_ARGS__))
	buf[0] = '\0';
	if (o->kind == CONFIG_OPT_ENUM && o->values[0].text && o->values[1].text &&
	    strchr(o->help, ':') == NULL) {
		ADD(" One of:");
		for (const struct config_enum_value *e = o->values; e->text; e++)
			ADD("%s %s", e == o->values ? "" : e[1].text ? "," : " or", e->text);
		ADD(".");
	}
	if ((o->kind == CONFIG_OPT_INT || o->kind == CONFIG_OPT_SECONDS ||
	     o->kind == CONFIG_OPT_SIZE) && (o->min || o->max != UINT64_MAX))
		ADD(" %s %s..%s.", o->pow2 ? "A power of two," : "Range",
		    fmt_value(o, o->min, a, sizeof a), fmt_value(o, o->max, b, sizeof b));
	if (o->min_of)
		ADD(" At least %llu x %s (%s)%s.", (unsigned long long)o->min_mult, o->min_of,
		    o->why, o->needs_cache ? ", unless cache=none" : "");
	if (o->max_of)
		ADD(" At most %s (%s).", o->max_of, o->why);
	if (o->def)
		ADD(" Default: %s.", o->def);
#undef ADD
}

/* Word-wrap `text` at `width` columns, every line but the first indented by `indent`
 * (the first continues at column `col`). */
static void wrap(FILE *f, const char *text, int col, int indent, int width)
{
	const char *p = text;

	while (*p) {
		size_t n = strcspn(p, " ");

		if (col > indent && col + 1 + (int)n > width) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fprintf(f, "%.*s", (int)n, p);
		col += (int)n;
		p += n;
		p += strspn(p, " ");
	}
	fputc('\n', f);
}

/* roff text: backslashes and hyphens escaped. */
static void roff(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else
			fputc(*s, f);
	}
}

/* A markdown table cell: '|' would end it. */
static void markdown_cell(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputc('\\', f);
		fputc(*s, f);
	}
}

void config_write_options_doc(FILE *f, enum config_doc_format format)
{
	if (format == CONFIG_DOC_README)
		fputs("| option | meaning |\n|---|---|\n", f);
	for (size_t i = 0, end; i < ARRAY_SIZE(options); i = end) {
		const struct config_option *o = &options[i];
		char names[512] = "", one[96], facts[512], text[1536];
		size_t k = 0;

		end = entry_end(i);
		for (size_t j = i; j < end; j++) {
			entry_name(&options[j], one, sizeof one);
			k += (size_t)snprintf(names + k, sizeof names - k, "%s%s%s%s",
					      j == i ? "" : ", ",
					      format == CONFIG_DOC_README ? "`" : "", one,
					      format == CONFIG_DOC_README ? "`" : "");
		}
		entry_facts(o, facts, sizeof facts);
		snprintf(text, sizeof text, "%s%s", o->help, facts);
		switch (format) {
		case CONFIG_DOC_HELP:
			if (strlen(names) > 22) {
				fprintf(f, "  ");
				wrap(f, names, 2, 4, 79);
				fprintf(f, "%*s", 25, "");
				wrap(f, text, 25, 25, 79);
			} else {
				fprintf(f, "  %-22s ", names);
				wrap(f, text, 25, 25, 79);
			}
			break;
		case CONFIG_DOC_README:
			fputs("| ", f);
			markdown_cell(f, names);
			fputs(" | ", f);
			markdown_cell(f, text);
			fputs(" |\n", f);
			break;
		case CONFIG_DOC_MAN:
			fputs(".TP\n", f);
			if (end - i == 1 && o->metavar && o->kind != CONFIG_OPT_IGNORED) {
				fputs(".BI \"", f);
				roff(f, o->name);
				fputs("=\" \"", f);
				roff(f, o->metavar);
				fputs("\"\n", f);
			} else {
				fputs(".B \"", f);
				roff(f, names);
				fputs("\"\n", f);
			}
			roff(f, text);
			fputc('\n', f);
			break;
		}
	}
}

void config_print_usage(FILE *f)
{
	fputs(
"Usage: iscsifs [-f] [-d] [-o OPTIONS] URL MOUNTPOINT\n"
"       iscsifs ls [-d] [--json] [-o OPTIONS] URL\n"
"       iscsifs stat MOUNTPOINT [--watch] [--json]\n"
"       iscsifs rescan MOUNTPOINT\n"
"       iscsifs help | -h | --help\n"
"       iscsifs version | -V | --version\n"
"       fusermount3 -u MOUNTPOINT    (unmount; dirty data is written first)\n"
"\n"
"Mount the LUNs of an iSCSI target as regular files, without kernel modules.\n"
"\n"
"Commands:\n"
"  (none)                 mount URL on MOUNTPOINT (in the background unless -f)\n"
"  ls                     list the targets, LUNs, sizes and contents behind URL\n"
"  stat                   show the statistics of a mounted iscsifs\n"
"  rescan                 make a mounted iscsifs follow its targets now: new LUNs\n"
"                         appear, removed ones go, sizes follow; prints the\n"
"                         changes (SIGHUP to the daemon does the same)\n"
"\n"
"URL:\n"
"  iscsi://[USER@]HOST[:PORT]            every target of the portal, one dir each\n"
"  iscsi://[USER@]HOST[:PORT]/IQN        every LUN of one target\n"
"  iscsi://[USER@]HOST[:PORT]/IQN/LUN    one LUN (0..16383)\n"
"  HOST is a name, an IPv4 address or an IPv6 address in brackets ([::1]).\n"
"  PORT defaults to 3260. USER is the CHAP user name; never put a password in the\n"
"  URL or on the command line: use -o secret_file=PATH.\n"
"\n"
"Flags:\n"
"  -f                     stay in the foreground (mount); logs go to stderr\n"
"  -d                     debug logging\n"
"  -o OPT[,OPT...]        options, below; may be repeated\n"
"  --json                 one JSON document on stdout (ls, stat; see iscsifs(1))\n"
"  --watch                refresh the statistics every second (stat)\n"
"  -h, --help             show this text\n"
"  -V, --version          show the version\n"
"\n"
"Options (-o OPT[,OPT...]; SIZE takes K, M, G or T, binary: 64K = 65536 bytes):\n",
	      f);
	config_write_options_doc(f, CONFIG_DOC_HELP);
	fputs(
"\n"
"Environment:\n"
"  LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD, LIBISCSI_CHAP_TARGET_USERNAME,\n"
"  LIBISCSI_CHAP_TARGET_PASSWORD\n"
"                         CHAP secrets when no secret_file is given; removed from\n"
"                         the environment as soon as they are read.\n"
"  NOTIFY_SOCKET          systemd's notification socket (Type=notify): READY=1\n"
"                         once mounted, STATUS= with the sessions' state,\n"
"                         STOPPING=1 and write-back progress at unmount.\n"
"  JOURNAL_STREAM         set by systemd: log lines carry <N> priority prefixes.\n"
"\n"
"Exit status:\n"
"  0  success\n"
"  1  runtime failure (I/O error, the mount itself failed, ...)\n"
"  2  usage: bad command line, option, URL or secret file\n"
"  3  cannot connect to the portal, or the login timed out\n"
"  4  authentication or authorization refused by the target\n"
"  5  target or LUN not found, or the LUN is not a disk\n"
"  6  unmounted, but dirty data could not be written to the target\n"
"\n"
"Examples:\n"
"  iscsifs iscsi://192.0.2.10/iqn.2003-01.org.example:disk1/1 /mnt/lun\n"
"  iscsifs ls --json iscsi://[2001:db8::1]\n"
"  fstab: iscsi://nas/iqn.2003-01.org.example:disk1 /mnt/nas fuse.iscsifs \\\n"
"         _netdev,secret_file=/etc/iscsifs.secret 0 0\n"
"\n"
"See iscsifs(1) for the whole story.\n",
	      f);
}
