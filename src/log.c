/*
 * log.c - stderr or syslog, chosen once by main. Thread-safe: each line is formatted
 * into a local buffer and written with one write(2) / syslog(3) call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "iscsifs/log.h"

static bool log_debug_on;  /* set before threads start, read-only after */
static bool log_syslog;    /* likewise */

void log_init(bool debug)
{
	log_debug_on = debug;
}

void log_to_syslog(void)
{
	openlog("iscsifs", LOG_PID, LOG_DAEMON);
	log_syslog = true;
}

bool log_debug_enabled(void)
{
	return log_debug_on;
}

void log_msg(int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (level == LOG_DEBUG && !log_debug_on)
		return;
	va_start(ap, fmt);
	if (log_syslog) {
		vsnprintf(buf, sizeof(buf), fmt, ap);
		syslog(level, "%s", buf);
	} else {
		static const char *const names[] = { "emerg", "alert", "crit", "error",
						     "warning", "notice", "info", "debug" };
		int n = snprintf(buf, sizeof(buf), "iscsifs: %s%s", level <= LOG_WARNING ? names[level & 7] : "",
				 level <= LOG_WARNING ? ": " : "");
		if (n < 0)
			n = 0;
		vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
		size_t len = strlen(buf);
		buf[len++] = '\n';
		ssize_t w = write(STDERR_FILENO, buf, len);
		(void)w;
	}
	va_end(ap);
}
