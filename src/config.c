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

/* ---- -o options ------------------------------------------------------------------- */

/* State that lives across several -o lists of one command line. */
struct opt_state {
	bool dirty_max_set;      /* dirty_max= was given: do not derive it from cache_size */
};

/* Integer options: name, field, range. */
static const struct int_opt {
	const char *name;
	size_t off;
	int min, max;
} int_opts[] = {
	{ "sessions", offsetof(struct config, sessions), 1, 16 },
	{ "noop_interval", offsetof(struct config, noop_interval), 0, SECONDS_MAX },
	{ "noop_timeout", offsetof(struct config, noop_timeout), 1, SECONDS_MAX },
	{ "cmd_timeout", offsetof(struct config, cmd_timeout), 1, SECONDS_MAX },
	{ "login_timeout", offsetof(struct config, login_timeout), 1, SECONDS_MAX },
	{ "replacement_timeout", offsetof(struct config, replacement_timeout), 0, SECONDS_MAX },
};

/* Size options: name, field, range, and what the range means. */
static const struct size_opt {
	const char *name;
	size_t off;
	uint64_t min, max;
	bool pow2;
} size_opts[] = {
	{ "cache_size", offsetof(struct config, cache_size), 0, UINT64_MAX, false },
	{ "cache_block", offsetof(struct config, cache_block), 4096, 16 << 20, true },
	{ "dirty_max", offsetof(struct config, dirty_max), 0, UINT64_MAX, false },
	{ "readahead_max", offsetof(struct config, readahead_max), 0, 1ULL << 30, false },
};

/* Generic mount(8)/fstab options, accepted and ignored (plus every "x-*"). */
static const char *const ignored_opts[] = {
	"rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime",
	"relatime", "auto", "noauto", "user", "users", "nofail", "defaults", "_netdev",
};

/* FUSE options copied to cfg->fuse_opts; true when the option takes a value. */
static const struct fuse_opt_desc {
	const char *name;
	bool has_value;
} fuse_pass[] = {
	{ "fsname", true }, { "subtype", true }, { "max_read", true },
	{ "auto_unmount", false }, { "default_permissions", false },
};

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

static int parse_header_digest(const char *v, int *out)
{
	static const struct {
		const char *text;
		int value;
	} map[] = {
		{ "none", ISCSI_HEADER_DIGEST_NONE },
		{ "crc32c", ISCSI_HEADER_DIGEST_CRC32C },
		{ "none,crc32c", ISCSI_HEADER_DIGEST_NONE_CRC32C },
		{ "crc32c,none", ISCSI_HEADER_DIGEST_CRC32C_NONE },
	};

	for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
		if (strcasecmp(v, map[i].text) == 0) {
			*out = map[i].value;
			return 0;
		}
	}
	return -EINVAL;
}

/* One option: `name`, and `value` (NULL when there was no '='). */
static int parse_one_option(struct config *cfg, const char *name, const char *value,
			    struct opt_state *st, char *err, size_t errlen)
{
	char a[32], b[32];
	uint64_t v;
	int rc;

	if (is_password_option(name))
		return fail(err, errlen, -EINVAL,
			    "password on the command line is not allowed (option \"%s\"): %s",
			    name, SECRET_HINT);

	/* flags */
	if (strcmp(name, "ro") == 0 || strcmp(name, "rw") == 0 ||
	    strcmp(name, "allow_other") == 0) {
		if (value)
			return fail(err, errlen, -EINVAL,
				    "option \"%s\" takes no value: write just %s", name, name);
		if (strcmp(name, "allow_other") == 0)
			cfg->allow_other = true;
		else
			cfg->read_only = name[1] == 'o';
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ignored_opts); i++)
		if (strcmp(name, ignored_opts[i]) == 0)
			return 0;
	if (strncmp(name, "x-", 2) == 0)
		return 0;

	for (size_t i = 0; i < ARRAY_SIZE(fuse_pass); i++) {
		if (strcmp(name, fuse_pass[i].name) != 0)
			continue;
		if (!fuse_pass[i].has_value && value)
			return fail(err, errlen, -EINVAL,
				    "option \"%s\" takes no value: write just %s", name, name);
		if (fuse_pass[i].has_value && (!value || !*value))
			return fail(err, errlen, -EINVAL,
				    "option \"%s\" needs a value: %s=VALUE", name, name);
		if (strcmp(name, "max_read") == 0 &&
		    (parse_uint(value, strlen(value), UINT32_MAX, &v) < 0 || v == 0))
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for max_read: expected a number of bytes",
				    value);
		return append_fuse_opt(cfg, name, value, err, errlen);
	}

	/* everything below needs a value */
	bool known = strcmp(name, "cache") == 0 || strcmp(name, "dirty_expire") == 0 ||
		     strcmp(name, "initiator") == 0 || strcmp(name, "header_digest") == 0 ||
		     strcmp(name, "secret_file") == 0;
	for (size_t i = 0; i < ARRAY_SIZE(int_opts) && !known; i++)
		known = strcmp(name, int_opts[i].name) == 0;
	for (size_t i = 0; i < ARRAY_SIZE(size_opts) && !known; i++)
		known = strcmp(name, size_opts[i].name) == 0;
	if (!known)
		return fail(err, errlen, -EINVAL, "unknown option \"%s\": see iscsifs --help",
			    name);
	if (!value || !*value)
		return fail(err, errlen, -EINVAL, "option \"%s\" needs a value: %s=VALUE (see "
			    "iscsifs --help)", name, name);

	for (size_t i = 0; i < ARRAY_SIZE(int_opts); i++) {
		const struct int_opt *o = &int_opts[i];
		if (strcmp(name, o->name) != 0)
			continue;
		rc = parse_uint(value, strlen(value), (uint64_t)o->max, &v);
		if (rc < 0 || v < (uint64_t)o->min)
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for %s: expected a whole number %d..%d",
				    value, name, o->min, o->max);
		*(int *)((char *)cfg + o->off) = (int)v;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(size_opts); i++) {
		const struct size_opt *o = &size_opts[i];
		if (strcmp(name, o->name) != 0)
			continue;
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
		*(uint64_t *)((char *)cfg + o->off) = v;
		if (strcmp(name, "dirty_max") == 0)
			st->dirty_max_set = true;
		return 0;
	}

	if (strcmp(name, "cache") == 0) {
		if (strcmp(value, "writeback") == 0)
			cfg->cache_mode = CONFIG_CACHE_WRITEBACK;
		else if (strcmp(value, "writethrough") == 0)
			cfg->cache_mode = CONFIG_CACHE_WRITETHROUGH;
		else if (strcmp(value, "none") == 0)
			cfg->cache_mode = CONFIG_CACHE_NONE;
		else
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for cache: expected writeback, "
				    "writethrough or none", value);
		return 0;
	}
	if (strcmp(name, "dirty_expire") == 0) {
		if (parse_seconds_ms(value, SECONDS_MAX, &cfg->dirty_expire_ms) < 0)
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for dirty_expire: expected seconds "
				    "0..%d, up to three decimals (e.g. 0.5)", value, SECONDS_MAX);
		return 0;
	}
	if (strcmp(name, "initiator") == 0) {
		if (config_check_iscsi_name(value) < 0)
			return fail(err, errlen, -EINVAL, "invalid initiator name \"%s\": %s",
				    value, NAME_HINT);
		snprintf(cfg->initiator, sizeof cfg->initiator, "%s", value);
		cfg->initiator_explicit = true;
		return 0;
	}
	if (strcmp(name, "header_digest") == 0) {
		if (parse_header_digest(value, &cfg->header_digest) < 0)
			return fail(err, errlen, -EINVAL,
				    "invalid value \"%s\" for header_digest: expected none, "
				    "crc32c, none,crc32c or crc32c,none", value);
		return 0;
	}
	/* secret_file */
	if (strlen(value) >= sizeof cfg->secret_file)
		return fail(err, errlen, -ENAMETOOLONG,
			    "secret_file path is too long (max %zu bytes)",
			    sizeof cfg->secret_file - 1);
	snprintf(cfg->secret_file, sizeof cfg->secret_file, "%s", value);
	return 0;
}

/* One comma-separated list. "header_digest=crc32c,none" keeps its comma. */
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

		if (comma) {
			*comma = '\0';
			p = comma + 1;
		} else {
			p = NULL;
		}
		value = strchr(item, '=');
		if (value)
			*value++ = '\0';
		if (value && p && strcmp(item, "header_digest") == 0) {
			size_t n = strcspn(p, ",");
			if ((n == 4 && strncasecmp(p, "none", 4) == 0) ||
			    (n == 6 && strncasecmp(p, "crc32c", 6) == 0)) {
				char *end = p + n;

				*comma = ',';
				p = *end ? end + 1 : NULL;
				*end = '\0';
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

/* Cross-option rules, once every -o list has been read. */
static int finish_options(struct config *cfg, const struct opt_state *st, char *err,
			  size_t errlen)
{
	char a[32], b[32];

	if (!st->dirty_max_set)
		cfg->dirty_max = cfg->cache_size / 4;
	if (cfg->cache_mode != CONFIG_CACHE_NONE && cfg->cache_size < cfg->cache_block)
		return fail(err, errlen, -EINVAL,
			    "cache_size=%s is smaller than one cache block (cache_block=%s): "
			    "raise cache_size or lower cache_block",
			    fmt_size(cfg->cache_size, a, sizeof a),
			    fmt_size(cfg->cache_block, b, sizeof b));
	if (cfg->dirty_max > cfg->cache_size)
		return fail(err, errlen, -EINVAL,
			    "dirty_max=%s is larger than cache_size=%s: lower dirty_max or "
			    "raise cache_size", fmt_size(cfg->dirty_max, a, sizeof a),
			    fmt_size(cfg->cache_size, b, sizeof b));
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

void config_init(struct config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->command = CONFIG_CMD_MOUNT;
	cfg->url.port = CONFIG_DEFAULT_PORT;
	cfg->url.lun = -1;
	cfg->cache_mode = CONFIG_CACHE_WRITEBACK;
	cfg->cache_size = 256ULL << 20;
	cfg->cache_block = 64ULL << 10;
	cfg->dirty_max = cfg->cache_size / 4;
	cfg->dirty_expire_ms = 1000;
	cfg->readahead_max = 4ULL << 20;
	cfg->sessions = 1;
	cfg->noop_interval = 5;
	cfg->noop_timeout = 5;
	cfg->cmd_timeout = 30;
	cfg->login_timeout = 15;
	cfg->replacement_timeout = 120;
	cfg->header_digest = ISCSI_HEADER_DIGEST_NONE_CRC32C;
	cfg->uid = (uint32_t)getuid();
	cfg->gid = (uint32_t)getgid();
}

/* ---- command line ----------------------------------------------------------------- */

static int check_mountpoint(const char *arg, char *out, size_t outlen, char *err,
			    size_t errlen)
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
		[CONFIG_CMD_LS] = "usage: iscsifs ls [-d] [-o OPTIONS] URL",
		[CONFIG_CMD_STAT] = "usage: iscsifs stat MOUNTPOINT [--watch]",
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
	if (argc > 1 && strcmp(argv[1], "ls") == 0) {
		cfg->command = CONFIG_CMD_LS;
		i = 2;
	} else if (argc > 1 && strcmp(argv[1], "stat") == 0) {
		cfg->command = CONFIG_CMD_STAT;
		i = 2;
	}
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
				if (cfg->command == CONFIG_CMD_STAT)
					return fail(err, errlen, -EINVAL,
						    "iscsifs stat takes no -o options: %s",
						    usage_line[CONFIG_CMD_STAT]);
				rc = parse_option_list(cfg, o, &st, err, errlen);
				if (rc < 0)
					return rc;
			} else if (strcmp(a, "--watch") == 0) {
				if (cfg->command != CONFIG_CMD_STAT)
					return fail(err, errlen, -EINVAL,
						    "--watch is only for iscsifs stat: %s",
						    usage_line[CONFIG_CMD_STAT]);
				cfg->watch = true;
			} else {
				return bad_arg(err, errlen, "unknown option", a);
			}
			continue;
		}
		if (npos == want)
			return bad_arg(err, errlen, "unexpected argument", a);
		pos[npos++] = a;
	}

	if (cfg->command == CONFIG_CMD_STAT) {
		mp_arg = pos[0];
	} else {
		url_arg = pos[0];
		mp_arg = pos[1];
	}
	if (cfg->command != CONFIG_CMD_STAT && !url_arg)
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
		rc = check_mountpoint(mp_arg, cfg->mountpoint, sizeof cfg->mountpoint, err,
				      errlen);
		if (rc < 0 && cfg->command == CONFIG_CMD_STAT)
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

/* ---- usage -------------------------------------------------------------------------- */

const char *config_usage(void)
{
	return
"Usage: iscsifs [-f] [-d] [-o OPTIONS] URL MOUNTPOINT\n"
"       iscsifs ls [-d] [-o OPTIONS] URL\n"
"       iscsifs stat MOUNTPOINT [--watch]\n"
"       iscsifs -h | --help\n"
"       iscsifs -V | --version\n"
"       fusermount3 -u MOUNTPOINT    (unmount; dirty data is written first)\n"
"\n"
"Mount the LUNs of an iSCSI target as regular files, without kernel modules.\n"
"\n"
"Commands:\n"
"  (none)                 mount URL on MOUNTPOINT (in the background unless -f)\n"
"  ls                     list the targets, LUNs, sizes and contents behind URL\n"
"  stat                   show the statistics of a mounted iscsifs\n"
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
"  -f                     stay in the foreground (mount)\n"
"  -d                     debug logging\n"
"  -o OPT[,OPT...]        options, below; may be repeated\n"
"  --watch                refresh the statistics every second (stat)\n"
"  -h, --help             show this text\n"
"  -V, --version          show the version\n"
"\n"
"Options (-o OPT[,OPT...]):\n"
"  ro                     read-only: files are 0400, not 0600 (default off)\n"
"  allow_other            let other users in; implies default_permissions\n"
"                         (default off)\n"
"  cache=MODE             writeback, writethrough or none (default writeback)\n"
"  cache_size=SIZE        memory for cached blocks (default 256M)\n"
"  cache_block=SIZE       cache block, a power of two, 4K..16M (default 64K)\n"
"  dirty_max=SIZE         dirty bytes before writers wait, at most cache_size\n"
"                         (default cache_size/4)\n"
"  dirty_expire=SECONDS   dirty data older than this is written back; decimals\n"
"                         allowed, e.g. 0.5 (default 1)\n"
"  readahead_max=SIZE     largest read-ahead, 0 disables it (default 4M)\n"
"  sessions=N             iSCSI sessions per target, 1..16 (default 1)\n"
"  noop_interval=SECONDS  keepalive (NOP-Out) interval, 0 disables it (default 5)\n"
"  noop_timeout=SECONDS   keepalive answer timeout (default 5)\n"
"  cmd_timeout=SECONDS    SCSI command timeout (default 30)\n"
"  login_timeout=SECONDS  connect and login timeout (default 15)\n"
"  replacement_timeout=SECONDS\n"
"                         how long I/O waits for a lost session before failing\n"
"                         with EIO; 0 fails at once (default 120)\n"
"  initiator=NAME         initiator name, IQN or EUI (default: InitiatorName from\n"
"                         /etc/iscsi/initiatorname.iscsi, else\n"
"                         iqn.2026-11.org.iscsifs:HOSTNAME)\n"
"  header_digest=D        none, crc32c, none,crc32c or crc32c,none\n"
"                         (default none,crc32c)\n"
"  secret_file=PATH       CHAP secrets, \"key = value\" lines with the keys\n"
"                         username, password and, for mutual CHAP,\n"
"                         target_username and target_password; the file must\n"
"                         be yours and mode 0600\n"
"                         (default: the environment variables below)\n"
"  fsname=NAME, subtype=NAME, auto_unmount, default_permissions, max_read=N\n"
"                         passed to FUSE\n"
"  SIZE takes K, M, G or T (binary: 64K = 65536 bytes; 64KiB works too).\n"
"  Ignored, for mount(8) and fstab: rw, dev, nodev, suid, nosuid, exec, noexec,\n"
"  atime, noatime, relatime, auto, noauto, user, users, nofail, defaults,\n"
"  _netdev, x-*.\n"
"\n"
"Environment:\n"
"  LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD, LIBISCSI_CHAP_TARGET_USERNAME,\n"
"  LIBISCSI_CHAP_TARGET_PASSWORD\n"
"                         CHAP secrets when no secret_file is given; removed from\n"
"                         the environment as soon as they are read.\n"
"\n"
"Examples:\n"
"  iscsifs iscsi://192.0.2.10/iqn.2003-01.org.example:disk1/0 /mnt/lun\n"
"  iscsifs ls iscsi://[2001:db8::1]\n"
"  fstab: iscsi://nas/iqn.2003-01.org.example:disk1 /mnt/nas fuse.iscsifs \\\n"
"         _netdev,secret_file=/etc/iscsifs.secret 0 0\n";
}
