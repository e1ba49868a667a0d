/*
 * log.h - one logging path for the whole daemon. Levels are syslog's. Log an error
 * once, where it starts, with target, LUN and LBA; never a secret.
 *
 * Where lines go (-o log=, config.h):
 *   stderr   each line "YYYY-MM-DD HH:MM:SS.mmm iscsifs: LEVEL: text"; when stderr is
 *            systemd's journal stream (JOURNAL_STREAM names it), "<N>iscsifs: text"
 *            instead: the journal adds the time and keeps N as the priority
 *   syslog   syslog(3), facility daemon, ident iscsifs
 *   FILE     appended, the same lines as stderr, opened once (mode 0600)
 * The default (AUTO) is stderr until the daemon detaches from the terminal, then
 * syslog when /dev/log exists, else a file (log_fallback_path) whose path is printed
 * on the terminal before it goes.
 *
 * Thread-safe: each line is formatted into a local buffer and written with one
 * write(2) / syslog(3) call. log_configure and log_detach run before other threads
 * read the destination, or while they may: the destination is one atomic int and the
 * file descriptor is never closed once published.
 */
#ifndef ISCSIFS_LOG_H
#define ISCSIFS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "iscsifs/config.h"

/* debug: also emit LOG_DEBUG lines. Safe to call again. */
void log_init(bool debug);

/*
 * Choose the destination from -o log= (cfg->log_to, cfg->log_file). A FILE is opened
 * now, so that a bad path fails before anything connects: 0, or -errno with one line
 * in err. AUTO and STDERR keep stderr until log_detach().
 */
int log_configure(const struct config *cfg, char *err, size_t errlen);

/*
 * The daemon is about to lose its terminal (stderr becomes /dev/null): AUTO switches to
 * syslog, or to the fallback file when /dev/log is absent (printed on stderr first).
 * Returns true when stderr must be kept (log=stderr: the user asked for it).
 */
bool log_detach(const char *mountpoint);

/* The fallback log file of a mount: $XDG_RUNTIME_DIR/iscsifs/, else /run/iscsifs/ for
 * root, else $XDG_STATE_HOME (~/.local/state)/iscsifs/; the name is the mountpoint
 * with '/' as '-' and ".log". Creates the directory (0700). 0 or -errno. */
int log_fallback_path(const char *mountpoint, char *out, size_t outlen);

bool log_debug_enabled(void);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                   \
	do {                                             \
		if (log_debug_enabled())                 \
			log_msg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
