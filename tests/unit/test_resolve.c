/*
 * test_resolve.c - proves a portal's host name never stalls a login beyond
 * login_timeout (src/resolve.c and the libiscsi transport): numeric portals are
 * resolved at once; a lookup that hangs leaves resolve_result pending and resolve_free
 * returns at once; session_create and session_discover over the real transport fail
 * within login_timeout with "-ETIMEDOUT" and a one-line message when the lookup hangs,
 * and with -EHOSTUNREACH and "the host name ... does not resolve" when it fails. The
 * lookup is replaced (resolve_set_lookup), so no DNS server is needed.
 *
 * A plain program: every check prints what it expected and what it got on failure;
 * the exit status is 1 if any check failed.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "iscsifs/config.h"
#include "iscsifs/log.h"
#include "iscsifs/resolve.h"
#include "iscsifs/session.h"
#include "iscsifs/util.h"

#include "check.h"

#define CHECK_STR(what, needle, hay)                                                    \
	do {                                                                            \
		if (!strstr((hay), (needle))) {                                         \
			fprintf(stderr, "FAIL %s:%d: %s: expected text containing \"%s\", " \
				"got \"%s\"\n", __FILE__, __LINE__, (what), (needle), (hay)); \
			failures++;                                                     \
		}                                                                       \
	} while (0)

/* ---------- scripted lookups ---------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool released;      /* protected by lock: hanging lookups may return */
static int running;        /* protected by lock: lookups still inside */

/* A DNS server that does not answer until the test ends. */
static int hanging_lookup(const char *host, const char *service, const struct addrinfo *hints,
			  struct addrinfo **res)
{
	(void)host;
	(void)service;
	(void)hints;
	(void)res;
	pthread_mutex_lock(&lock);
	running++;
	while (!released)
		pthread_cond_wait(&cond, &lock);
	running--;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	return EAI_AGAIN;
}

static int failing_lookup(const char *host, const char *service, const struct addrinfo *hints,
			  struct addrinfo **res)
{
	(void)host;
	(void)service;
	(void)hints;
	(void)res;
	return EAI_NONAME;
}

/* ---------- tests ---------- */

static void test_numeric(void)
{
	printf("numeric portals resolve at once, without a thread: IPv4 with and without a "
	       "port and a portal group tag, IPv6 in brackets\n");
	resolve_set_lookup(hanging_lookup); /* must not be called */
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "127.0.0.1:3261", "127.0.0.1:3261" },
		{ "127.0.0.1", "127.0.0.1:3260" },
		{ "10.1.2.3:860,1", "10.1.2.3:860" },
		{ "[::1]:3262", "[::1]:3262" },
		{ "[fe80::1]", "[fe80::1]:3260" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct resolve *r = resolve_start(cases[i].in);
		char out[128] = "", err[256] = "";
		CHECK_EQ(cases[i].in, 0, resolve_result(r, out, sizeof(out), err, sizeof(err)));
		CHECK_STR(cases[i].in, cases[i].want, out);
		resolve_free(r);
	}
	resolve_set_lookup(NULL);
}

static void test_hanging_lookup(void)
{
	printf("a lookup that hangs: the answer stays pending, and giving up does not wait "
	       "for it\n");
	resolve_set_lookup(hanging_lookup);
	struct resolve *r = resolve_start("hang.example:3260");
	char out[128], err[256];
	usleep(50000);
	CHECK_EQ("pending", -EINPROGRESS, resolve_result(r, out, sizeof(out), err, sizeof(err)));
	uint64_t t0 = util_now_ms();
	resolve_free(r);
	CHECK("resolve_free did not wait", util_now_ms() - t0 < 50);
	resolve_set_lookup(NULL);
}

static struct config cfg;

static void test_session_create(void)
{
	printf("session_create (libiscsi transport): a hanging DNS fails it within "
	       "login_timeout (1 s) with -ETIMEDOUT naming the portal; an unknown name "
	       "fails it at once with -EHOSTUNREACH and \"does not resolve\"\n");
	struct session_params p = { .cfg = &cfg, .portal = "hang.example:3260",
				    .target = "iqn.2026-01.org.example:t" };
	struct session *s = NULL;
	char err[CONFIG_ERRLEN] = "";
	resolve_set_lookup(hanging_lookup);
	uint64_t t0 = util_now_ms();
	int r = session_create(&p, &s, err, sizeof(err));
	long long took = (long long)(util_now_ms() - t0);
	printf("  hanging DNS: %d after %lld ms: %s\n", r, took, err);
	CHECK_EQ("result", -ETIMEDOUT, r);
	CHECK("within login_timeout (+0.5 s)", took >= 950 && took < 1500);
	CHECK_STR("message names the portal", "hang.example:3260", err);
	CHECK_STR("message says why", "did not resolve in time", err);
	CHECK_STR("message names the option", "login_timeout", err);

	resolve_set_lookup(failing_lookup);
	p.portal = "nosuch.invalid:3260";
	t0 = util_now_ms();
	r = session_create(&p, &s, err, sizeof(err));
	printf("  unknown name: %d after %lld ms: %s\n", r, (long long)(util_now_ms() - t0), err);
	CHECK_EQ("result", -EHOSTUNREACH, r);
	CHECK("at once", util_now_ms() - t0 < 500);
	CHECK_STR("message", "cannot connect to nosuch.invalid:3260: the host name "
			     "\"nosuch.invalid\" does not resolve", err);
	CHECK_STR("what to do", "check the host name in the URL", err);
	CHECK("one line", !strchr(err, '\n'));
	resolve_set_lookup(NULL);
}

static void noop_found(const char *target, const char *portal, void *opaque)
{
	(void)target;
	(void)portal;
	(void)opaque;
}

static void test_discover(void)
{
	printf("session_discover: the same bounds and messages\n");
	char err[CONFIG_ERRLEN] = "";
	resolve_set_lookup(hanging_lookup);
	uint64_t t0 = util_now_ms();
	int r = session_discover(&cfg, "hang.example", noop_found, NULL, err, sizeof(err));
	long long took = (long long)(util_now_ms() - t0);
	printf("  hanging DNS: %d after %lld ms: %s\n", r, took, err);
	CHECK_EQ("result", -ETIMEDOUT, r);
	CHECK("within login_timeout (+0.5 s)", took >= 950 && took < 1500);
	CHECK_STR("message", "cannot connect to hang.example within 1 s (login_timeout)", err);

	resolve_set_lookup(failing_lookup);
	r = session_discover(&cfg, "nosuch.invalid", noop_found, NULL, err, sizeof(err));
	CHECK_EQ("unknown name", -EHOSTUNREACH, r);
	CHECK_STR("message", "\"nosuch.invalid\" does not resolve", err);
	resolve_set_lookup(NULL);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_init(false);
	config_init(&cfg);
	snprintf(cfg.initiator, sizeof(cfg.initiator), "iqn.2026-01.org.iscsifs:unit");
	cfg.login_timeout = 1;
	test_numeric();
	test_hanging_lookup();
	test_session_create();
	test_discover();
	/* let the hanging lookups return and their threads free what they hold */
	pthread_mutex_lock(&lock);
	released = true;
	pthread_cond_broadcast(&cond);
	while (running)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	usleep(50000);
	printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
	return failures ? 1 : 0;
}
