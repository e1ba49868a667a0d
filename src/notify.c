/*
 * notify.c - sd_notify(3)'s wire protocol in forty lines (notify.h), so that systemd
 * support costs no dependency: a datagram to $NOTIFY_SOCKET. Credentials (our pid) are
 * attached by the kernel (SO_PASSCRED on systemd's side).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "iscsifs/log.h"
#include "iscsifs/notify.h"

bool notify_enabled(void)
{
	const char *p = getenv("NOTIFY_SOCKET");
	return p && (p[0] == '/' || p[0] == '@');
}

int notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	socklen_t salen;
	int fd, r = 0;

	if (!path || !path[0])
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path)
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
			    (path[0] == '/' ? 1 : 0));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
		r = -errno;
	close(fd);
	if (r < 0)
		log_debug("cannot notify systemd at %s: %s", path, strerror(-r));
	return r;
}

int notify_printf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!notify_enabled())
		return 0;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return notify_send(buf);
}
