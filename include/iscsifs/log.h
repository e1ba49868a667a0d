/*
 * log.h - one logging path for the whole daemon: stderr in the foreground (or before
 * daemonizing), syslog after. Levels are syslog's. Log an error once, where it starts,
 * with target, LUN and LBA; never a secret.
 */
#ifndef ISCSIFS_LOG_H
#define ISCSIFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* debug: also emit LOG_DEBUG lines. Safe to call again (e.g. after daemonizing). */
void log_init(bool debug);
void log_to_syslog(void);    /* switch to syslog (daemon mode) */
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
