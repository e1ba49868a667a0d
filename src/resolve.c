/*
 * resolve.c - a portal's host name to a numeric address, in a thread of its own
 * (resolve.h says why).
 *
 * NOTES ON THE THREAD MODEL
 *   resolve_start() starts one detached thread per lookup of a name (numeric hosts need
 *   none). The thread calls getaddrinfo(), stores the answer under `lock`, and writes
 *   the eventfd. The owner and the thread each hold a reference; whoever drops the last
 *   one frees the struct and closes the eventfd, so the owner can give up on a lookup
 *   that hangs (resolve_free) without waiting for it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iscsifs/resolve.h"

typedef int (*lookup_fn)(const char *, const char *, const struct addrinfo *,
			 struct addrinfo **);
static lookup_fn lookup = getaddrinfo;  /* set by tests before any lookup */

struct resolve {
	pthread_mutex_t lock;
	/* protected by lock */
	int refs;
	bool done;
	int gai;                 /* getaddrinfo's result */
	int gai_errno;           /* errno, for EAI_SYSTEM */
	char numeric[INET6_ADDRSTRLEN + 2];   /* the address, "[v6]" in brackets */
	/* immutable after resolve_start */
	int efd;
	char host[256];
	int port;
};

static void put(struct resolve *r)
{
	pthread_mutex_lock(&r->lock);
	bool last = --r->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (last) {
		close(r->efd);
		pthread_mutex_destroy(&r->lock);
		free(r);
	}
}

/* The first address as text; libiscsi connects to the first one too. */
static void answer(struct resolve *r, int gai, int err, const struct addrinfo *ai)
{
	char buf[INET6_ADDRSTRLEN] = "";
	if (gai == 0) {
		if (ai->ai_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
				  buf, sizeof(buf));
		else if (ai->ai_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr,
				  buf, sizeof(buf));
		else
			gai = EAI_FAMILY;
	}
	pthread_mutex_lock(&r->lock);
	r->gai = gai;
	r->gai_errno = err;
	if (gai == 0)
		snprintf(r->numeric, sizeof(r->numeric), ai->ai_family == AF_INET6 ? "[%s]" : "%s",
			 buf);
	r->done = true;
	pthread_mutex_unlock(&r->lock);
	uint64_t one = 1;
	ssize_t w = write(r->efd, &one, sizeof(one));
	(void)w;
}

static int lookup_one(lookup_fn fn, struct resolve *r, int flags, struct addrinfo **ai)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = flags };
	return fn(r->host, NULL, &hints, ai);
}

static void *resolve_thread(void *arg)
{
	struct resolve *r = arg;
	struct addrinfo *ai = NULL;
	int gai = lookup_one(lookup, r, 0, &ai);
	answer(r, gai, errno, ai);
	if (ai)
		freeaddrinfo(ai);
	put(r);
	return NULL;
}

/* host and port of a portal, as libiscsi 1.19's iscsi_connect_async splits it. */
static int split(const char *portal, char *host, size_t hostlen, int *port)
{
	char buf[300];
	snprintf(buf, sizeof(buf), "%s", portal);
	char *h = buf, *s = strrchr(h, ',');
	*port = 3260;
	if (s)
		*s = 0; /* target portal group tag */
	s = strrchr(h, ':');
	if (s && !strchr(s, ']')) {
		*port = atoi(s + 1);
		*s = 0;
	}
	if (h[0] == '[') {
		h++;
		s = strchr(h, ']');
		if (!s)
			return -EINVAL;
		*s = 0;
	}
	snprintf(host, hostlen, "%s", h);
	return 0;
}

struct resolve *resolve_start(const char *portal)
{
	struct resolve *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	r->refs = 1;
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0) {
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	if (split(portal, r->host, sizeof(r->host), &r->port) != 0) {
		answer(r, EAI_NONAME, 0, NULL);
		return r;
	}
	/* numeric: no DNS, no thread */
	struct addrinfo *ai = NULL;
	int gai = lookup_one(getaddrinfo, r, AI_NUMERICHOST, &ai);
	if (gai == 0) {
		answer(r, 0, 0, ai);
		freeaddrinfo(ai);
		return r;
	}
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r->refs = 2;
	int e = pthread_create(&t, &attr, resolve_thread, r);
	pthread_attr_destroy(&attr);
	if (e) {
		r->refs = 1;
		resolve_free(r);
		return NULL;
	}
	return r;
}

int resolve_fd(const struct resolve *r)
{
	return r->efd;
}

int resolve_result(struct resolve *r, char *out, size_t outlen, char *err, size_t errlen)
{
	pthread_mutex_lock(&r->lock);
	bool done = r->done;
	int gai = r->gai, e = r->gai_errno;
	char numeric[sizeof(r->numeric)];
	memcpy(numeric, r->numeric, sizeof(numeric));
	pthread_mutex_unlock(&r->lock);
	if (!done)
		return -EINPROGRESS;
	if (gai != 0) {
		snprintf(err, errlen, "the host name \"%s\" does not resolve (%s)", r->host,
			 gai == EAI_SYSTEM ? strerror(e) : gai_strerror(gai));
		return -EHOSTUNREACH;
	}
	snprintf(out, outlen, "%s:%d", numeric, r->port);
	return 0;
}

void resolve_free(struct resolve *r)
{
	if (r)
		put(r);
}

void resolve_set_lookup(int (*fn)(const char *host, const char *service,
				  const struct addrinfo *hints, struct addrinfo **res))
{
	lookup = fn ? fn : getaddrinfo;
}
