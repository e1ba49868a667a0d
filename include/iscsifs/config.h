/*
 * config.h - the command line, the iSCSI URL, mount options, the CHAP secret file and
 * the initiator name. Pure parsing and validation: no network, no FUSE, no exit().
 *
 * Every function that can fail returns 0 or -errno and writes one line into `err`
 * (no trailing newline, no "iscsifs:" prefix) that says what was wrong, which value,
 * and what to do. No secret is ever copied into `err`.
 */
#ifndef ISCSIFS_CONFIG_H
#define ISCSIFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PORT 3260   /* RFC 3720: the only default; 860 only if written */
#define CONFIG_ERRLEN 512
#define CONFIG_NAME_MAX 224        /* IQN / EUI names are at most 223 bytes */
#define CONFIG_SECRET_MAX 256

enum config_cache_mode { CONFIG_CACHE_WRITEBACK = 0, CONFIG_CACHE_WRITETHROUGH, CONFIG_CACHE_NONE };

enum config_command { CONFIG_CMD_MOUNT = 0, CONFIG_CMD_LS, CONFIG_CMD_STAT, CONFIG_CMD_HELP,
		      CONFIG_CMD_VERSION, CONFIG_CMD_RESCAN };

/* Where log lines go (-o log=). AUTO: stderr in the foreground; once daemonized,
 * syslog when /dev/log exists, else a file (log.c picks and prints its path). */
enum config_log_to { CONFIG_LOG_AUTO = 0, CONFIG_LOG_STDERR, CONFIG_LOG_SYSLOG, CONFIG_LOG_FILE };

/* iscsi://[user@]host[:port][/target[/lun]]   host may be [IPv6]. */
struct config_url {
	char host[256];          /* without brackets */
	int port;                /* CONFIG_DEFAULT_PORT unless written */
	bool port_explicit;
	char target[CONFIG_NAME_MAX];   /* "" when the URL names only a portal */
	int lun;                 /* -1 when the URL names no LUN */
	char user[CONFIG_SECRET_MAX];   /* CHAP user name from the URL, "" if none */
	char portal[300];        /* "host:port", "[v6addr]:port" - what libiscsi connects to */
};

struct config_secrets {
	char username[CONFIG_SECRET_MAX];        /* one-way CHAP: the target checks us */
	char password[CONFIG_SECRET_MAX];
	char target_username[CONFIG_SECRET_MAX]; /* mutual CHAP: we check the target */
	char target_password[CONFIG_SECRET_MAX];
};

struct config {
	enum config_command command;
	struct config_url url;
	char url_text[1024];     /* the URL as given, for messages (never holds a password) */
	char mountpoint[4096];   /* absolute, for mount and stat */
	bool have_url;

	bool foreground;         /* -f */
	bool debug;              /* -d (implies -f for FUSE's own debug output? no: only our log level) */
	bool watch;              /* stat --watch */
	bool json;               /* ls --json, stat --json: one JSON document on stdout */

	/* -o options (DESIGN.md, README "Options") */
	bool read_only;          /* ro */
	bool allow_other;        /* allow_other (implies default_permissions) */
	enum config_cache_mode cache_mode;   /* cache=writeback|writethrough|none */
	uint64_t cache_size;     /* cache_size=SIZE, default 256 MiB */
	uint64_t cache_block;    /* cache_block=SIZE, default 64 KiB, power of two, 4 KiB..16 MiB */
	uint64_t dirty_max;      /* dirty_max=SIZE, default 25% of cache_size, <= cache_size */
	uint32_t dirty_expire_ms;   /* dirty_expire=SECONDS (decimal allowed), default 1 s */
	uint64_t readahead_max;  /* readahead_max=SIZE, default 4 MiB, 0 disables */
	int sessions;            /* sessions=N, 1..16, default 1 */
	int noop_interval;       /* seconds, default 5, 0 disables keepalive */
	int noop_timeout;        /* seconds, default 5 */
	int cmd_timeout;         /* seconds, default 30 */
	int login_timeout;       /* seconds, default 15 */
	int replacement_timeout; /* seconds, default 120, 0 = fail at once */
	int rescan_interval;     /* seconds between rescans of the targets (issue 11),
	                            default 60, 0 = only when asked or told */
	char initiator[CONFIG_NAME_MAX]; /* resolved by config_resolve_initiator() */
	bool initiator_explicit;
	int header_digest;       /* libiscsi enum iscsi_header_digest; default NONE_CRC32C */
	char secret_file[4096];  /* "" when not given */
	uint32_t uid, gid;       /* owner of the files: the mounting user */
	char fuse_opts[1024];    /* options passed through to FUSE: fsname=, subtype=,
	                            auto_unmount, default_permissions, and the mount flags
	                            FUSE honours (nosuid, noatime, ...), comma-separated */
	enum config_log_to log_to;   /* log=stderr|syslog|FILE, default AUTO */
	char log_file[4096];     /* absolute path when log_to == CONFIG_LOG_FILE */

	struct config_secrets secrets;   /* filled by config_load_secrets() */
	bool chap;               /* secrets.username/password set */
	bool mutual_chap;        /* secrets.target_* set */
};

/* Fill `cfg` with defaults (no URL, writeback, 256 MiB, ...). */
void config_init(struct config *cfg);

/*
 * Parse argv:
 *   iscsifs [-f] [-d] [-o OPT[,OPT...]]... URL MOUNTPOINT
 *   iscsifs ls [-d] [--json] [-o OPT...] URL
 *   iscsifs stat MOUNTPOINT [--watch] [--json]
 *   iscsifs -h|--help|help,  iscsifs -V|--version|version
 * Options may appear before or after the positional arguments (mount.fuse3 puts
 * `-o` last). Every -o option is a row of the option table (config_options()): its
 * kind, bounds and relations to other options are checked here, before any
 * connection. Unknown options are errors.
 * Checks that MOUNTPOINT exists and is a directory.
 * A password anywhere on the command line (URL "user%pass@" / "user:pass@",
 * -o password=, -o chap_password=, ...) is refused with a message that says to use
 * -o secret_file=PATH.
 */
int config_parse_args(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Parse one comma-separated -o list into cfg. */
int config_parse_options(struct config *cfg, const char *opts, char *err, size_t errlen);

/* Parse an iscsi:// URL (libiscsi's form). Port 3260 unless written; 0 and >65535 refused. */
int config_parse_url(const char *text, struct config_url *url, char *err, size_t errlen);

/* Parse "4096", "64K", "64KiB", "256M", "1G", "2T" (binary multiples). */
int config_parse_size(const char *text, uint64_t *out);

/*
 * Load CHAP secrets: from cfg->secret_file when set (file must exist, be a regular file
 * owned by the calling user, not readable or writable by group/other; lines are
 * `key = value`, `#` comments and blank lines ignored; keys username, password,
 * target_username, target_password; an unknown key or malformed line is refused naming
 * the line number), else from LIBISCSI_CHAP_USERNAME / _PASSWORD / _TARGET_USERNAME /
 * _TARGET_PASSWORD, which are then removed from the process environment (unsetenv and
 * the values wiped). A user name in the URL is used when no file/env gives one.
 * Refuses a password without user name, a target password without a one-way secret,
 * and mutual CHAP with identical initiator and target passwords.
 * Sets cfg->chap / cfg->mutual_chap.
 */
int config_load_secrets(struct config *cfg, char *err, size_t errlen);

/*
 * Resolve cfg->initiator: -o initiator=NAME if given; else InitiatorName= from
 * /etc/iscsi/initiatorname.iscsi when readable (`path` overrides it, for tests; NULL =
 * default); else "iqn.2026-11.org.iscsifs:<hostname>". Validates IQN
 * (iqn.YYYY-MM.reverse.domain[:anything]) or EUI (eui. + 16 hex digits), <= 223 bytes.
 */
int config_resolve_initiator(struct config *cfg, const char *path, char *err, size_t errlen);

/* Validate an iSCSI name (IQN or EUI form). Returns 0 or -EINVAL. */
int config_check_iscsi_name(const char *name);

/* Overwrite every secret in cfg with zeroes (explicit_bzero). */
void config_wipe_secrets(struct config *cfg);

/* ---- the option table ------------------------------------------------------------ */

/*
 * One row per -o option: the only place that knows an option's name, type, bounds,
 * default and help. It drives parsing, `--help` (config_print_usage), the OPTIONS
 * section of iscsifs(1) and the README's options table (tests/unit/test_optdoc.c
 * generates both and fails when the committed text differs), and the checks of the
 * bash completion and the container manifest. Adding an option = adding one row (and
 * its field in struct config).
 */
enum config_opt_kind {
	CONFIG_OPT_FLAG,       /* no value; sets a bool field to `min` (1, or 0 for "rw") */
	CONFIG_OPT_INT,        /* int field, whole number in [min, max] */
	CONFIG_OPT_SIZE,       /* uint64_t field, bytes with K/M/G/T, in [min, max] */
	CONFIG_OPT_SECONDS,    /* uint32_t field, milliseconds; written as seconds with up
	                          to three decimals, in [min, max] ms */
	CONFIG_OPT_ENUM,       /* int-sized field, one of `values` */
	CONFIG_OPT_STRING,     /* char[] field (`max` = its size), checked by `check` */
	CONFIG_OPT_FUSE,       /* passed to FUSE as written (fsname=, auto_unmount, ...) */
	CONFIG_OPT_MOUNTFLAG,  /* a generic mount flag FUSE honours: passed to the mount */
	CONFIG_OPT_IGNORED,    /* a mount(8)/fstab option with no meaning here: dropped */
};

struct config_enum_value {
	const char *text;
	int value;
};

struct config_option {
	const char *name;          /* as written after -o; "x-" matches every x-* */
	enum config_opt_kind kind;
	const char *metavar;       /* "SIZE", "SECONDS", "N", ... (NULL: no value) */
	const char *def;           /* the default as a user would write it, NULL: none */
	const char *help;          /* plain ASCII sentences, for --help, man and README */
	size_t off;                /* offsetof(struct config, field) */
	uint64_t min, max;         /* bounds (see the kinds) */
	bool pow2;                 /* SIZE: must be a power of two */
	bool has_value;            /* FUSE: takes "=VALUE" */
	const struct config_enum_value *values;   /* ENUM: NULL-terminated */
	/* A bound that depends on another option, checked once every -o list is read:
	 * value >= min_mult * option `min_of`, value <= option `max_of`; `why` says why
	 * (in the message). Skipped with cache=none when `needs_cache`. */
	const char *min_of;
	uint64_t min_mult;
	const char *max_of;
	const char *why;
	bool needs_cache;
	/* STRING: validate and store `value`; 0 or -errno with one line in err. */
	int (*check)(struct config *cfg, const char *value, char *err, size_t errlen);
};

/* The table, in the order --help and the man page show it; *n = its length. */
const struct config_option *config_options(size_t *n);

/* Option text for the documents (test_optdoc.c, config_print_usage): */
enum config_doc_format { CONFIG_DOC_HELP, CONFIG_DOC_MAN, CONFIG_DOC_README };
/* Write the options part in `format` to `f`: the --help block, the man page's
 * OPTIONS entries (roff), or the README's markdown table. */
void config_write_options_doc(FILE *f, enum config_doc_format format);

/* The whole usage text (`iscsifs --help`), options and exit codes included. */
void config_print_usage(FILE *f);

#endif
