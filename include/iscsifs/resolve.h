/*
 * resolve.h - the host name of a portal to a numeric address, without blocking.
 *
 * libiscsi 1.19 calls getaddrinfo() synchronously inside iscsi_connect_async(), so a
 * slow or dead DNS server would stall the session thread (and its timers) for as long
 * as the resolver likes. The transport resolves first, in a thread of its own, and
 * hands libiscsi a numeric address; the wait is bounded by the caller's deadline
 * (login_timeout), and the host name stays in every message.
 */
#ifndef ISCSIFS_RESOLVE_H
#define ISCSIFS_RESOLVE_H

#include <stddef.h>

struct addrinfo;

struct resolve;

/*
 * Start resolving the host of `portal` ("host[:port][,tpgt]" or "[v6addr]:port", the
 * forms iscsi_connect_async takes). A numeric host is done at once; a name is looked
 * up by a detached thread. NULL only when out of memory or no thread could start.
 */
struct resolve *resolve_start(const char *portal);

/* A descriptor that becomes readable when the answer is in (poll for POLLIN). */
int resolve_fd(const struct resolve *r);

/*
 * The answer: 0 and "a.b.c.d:port" / "[v6]:port" in out; -EINPROGRESS while the
 * lookup runs; -EHOSTUNREACH with a one-line reason naming the host in err when the
 * name does not resolve.
 */
int resolve_result(struct resolve *r, char *out, size_t outlen, char *err, size_t errlen);

/* Forget the lookup. Never blocks: a lookup still running ends on its own thread, which
 * then frees what is left. */
void resolve_free(struct resolve *r);

/* Tests only: replace getaddrinfo (NULL restores it). Set before any resolve_start. */
void resolve_set_lookup(int (*fn)(const char *host, const char *service,
				  const struct addrinfo *hints, struct addrinfo **res));

#endif
