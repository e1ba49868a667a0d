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

#define CONFIG_DEFAULT_PORT 3260   /* RFC 3720: the only default; 860 only if written */
#define CONFIG_ERRLEN 512
#define CONFIG_NAME_MAX 224        /* IQN / EUI names are at most 223 bytes */
#define CONFIG_SECRET_MAX 256

enum config_cache_mode { CONFIG_CACHE_WRITEBACK = 0, CONFIG_CACHE_WRITETHROUGH, CONFIG_CACHE_NONE };

enum config_command { CONFIG_CMD_MOUNT = 0, CONFIG_CMD_LS, CONFIG_CMD_STAT, CONFIG_CMD_HELP,
		      CONFIG_CMD_VERSION };

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
	char initiator[CONFIG_NAME_MAX]; /* resolved by config_resolve_initiator() */
	bool initiator_explicit;
	int header_digest;       /* libiscsi enum iscsi_header_digest; default NONE_CRC32C */
	char secret_file[4096];  /* "" when not given */
	uint32_t uid, gid;       /* owner of the files: the mounting user */
	char fuse_opts[1024];    /* options passed through to FUSE: fsname=, subtype=,
	                            auto_unmount, default_permissions, ... comma-separated */

	struct config_secrets secrets;   /* filled by config_load_secrets() */
	bool chap;               /* secrets.username/password set */
	bool mutual_chap;        /* secrets.target_* set */
};

/* Fill `cfg` with defaults (no URL, writeback, 256 MiB, ...). */
void config_init(struct config *cfg);

/*
 * Parse argv:
 *   iscsifs [-f] [-d] [-o OPT[,OPT...]]... URL MOUNTPOINT
 *   iscsifs ls [-d] [-o OPT...] URL
 *   iscsifs stat MOUNTPOINT [--watch]
 *   iscsifs -h|--help,  iscsifs -V|--version
 * Options may appear before or after the positional arguments (mount.fuse3 puts
 * `-o` last). Unknown options are errors, except the generic mount options that
 * mount(8)/fstab pass (rw, dev, nodev, suid, nosuid, exec, noexec, atime, noatime,
 * relatime, auto, noauto, user, users, nofail, defaults, _netdev, x-*), which are
 * accepted and ignored, and FUSE options that are passed through in fuse_opts
 * (fsname=, subtype=, auto_unmount, default_permissions, max_read=).
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

/* The usage text (for -h and for errors that want it). */
const char *config_usage(void);

#endif
