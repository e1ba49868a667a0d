/*
 * notify.h - systemd's service notification protocol without libsystemd: one datagram
 * of "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or
 * "@name" for the abstract namespace), as sd_notify(3) sends it. Without
 * $NOTIFY_SOCKET every call is a no-op that returns 0.
 */
#ifndef ISCSIFS_NOTIFY_H
#define ISCSIFS_NOTIFY_H

#include <stdbool.h>

/* $NOTIFY_SOCKET is set (we run under a Type=notify unit). */
bool notify_enabled(void);

/* Send `state` ("READY=1", "STATUS=...\nSTOPPING=1", ...). 0, or -errno (nobody
 * listens, bad address); a failure is logged at debug level only: notification is a
 * courtesy, never a reason to fail. Thread-safe. */
int notify_send(const char *state);

/* notify_send with printf formatting. */
int notify_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
