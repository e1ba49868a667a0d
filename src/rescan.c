/*
 * rescan.c - the rescan thread: runs the mount's rescan when asked, one at a time,
 * merging requests (rescan.h says who asks and why).
 *
 * NOTES ON THE THREAD MODEL
 *   rescan_start() starts rescan_thread, which alone calls ops->run. It sleeps in
 *   poll() on the process's rescan eventfd (sig_efd) with the polling interval as
 *   timeout. Requests record their reasons under `lock` (rescan_request,
 *   rescan_run_sync) or in the atomic `sig_pending` (the async-signal-safe path for
 *   SIGHUP), then write the eventfd. The thread drains the eventfd before it takes
 *   the requests, so a request made while a rescan runs wakes it for one more run.
 *
 *   rescan_run_sync takes a ticket (`asked`) with its reasons; the thread notes the
 *   last ticket taken before each run starts (`covered`) and publishes it when the run
 *   ends (`served`), with the run's result and report: a ticket <= served has been
 *   served by a rescan that started after it was taken.
 *
 *   The eventfd is created by the first rescan_start and never closed, so a signal
 *   handler never writes to a descriptor that was closed or reused; one process has
 *   one mount, so one rescan thread at a time (rescan_start refuses a second).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "iscsifs/log.h"
#include "iscsifs/rescan.h"
#include "iscsifs/util.h"

#define REPORT_MAX 8192

static int sig_efd = -1;     /* created once, never closed */
static unsigned sig_pending; /* atomic: reasons from signal handlers */
static int sig_active;       /* atomic: a rescan thread is there to serve them */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

struct async_waiter {
	uint64_t ticket;
	void (*done)(void *opaque, int result, const char *report);
	void *opaque;
	struct async_waiter *next;
};

struct rescan {
	const struct rescan_ops *ops;
	void *opaque;
	unsigned interval_s;
	pthread_t thread;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* `served` moved, or stopped */
	/* protected by lock */
	unsigned pending; /* reasons asked for since the last run started */
	uint64_t asked;   /* tickets taken by rescan_run_sync */
	uint64_t served;  /* tickets served by the last finished run */
	bool stopping, stopped;
	int waiters;                /* in rescan_run_sync */
	struct async_waiter *async; /* rescan_run_async's, newest first */
	int last_result;
	char *last_report; /* REPORT_MAX bytes */
	struct rescan_stats st;
};

const char *rescan_reasons_text(unsigned reasons, char *buf, size_t len)
{
	static const char *const names[RESCAN_NREASONS] = {
		"rescan command",          "SIGHUP",
		"unit attention",          "re-login",
		"rescan_interval",         "capacity change",
		"partition table written", "LUN no longer used"
	};
	size_t k = 0;
	buf[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if ((reasons & (1u << i)) && k < len)
			k += (size_t)snprintf(buf + k, len - k, "%s%s", k ? ", " : "", names[i]);
	return buf;
}

static void wake(void)
{
	uint64_t one = 1;
	ssize_t w = write(sig_efd, &one, sizeof(one));
	(void)w; /* a full counter already wakes the thread */
}

static void count_requests(struct rescan *r, unsigned reasons)
{
	for (size_t i = 0; i < ARRAY_SIZE(r->st.requests); i++)
		if (reasons & (1u << i))
			r->st.requests[i]++;
}

void rescan_request(struct rescan *r, unsigned reasons)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->pending |= reasons;
	count_requests(r, reasons);
	pthread_mutex_unlock(&r->lock);
	wake();
}

void rescan_request_from_signal(unsigned reasons)
{
	int saved = errno;
	if (__atomic_load_n(&sig_active, __ATOMIC_ACQUIRE)) {
		__atomic_fetch_or(&sig_pending, reasons, __ATOMIC_ACQ_REL);
		wake();
	}
	errno = saved;
}

int rescan_run_sync(struct rescan *r, unsigned reasons, char *report, size_t len)
{
	pthread_mutex_lock(&r->lock);
	uint64_t ticket = ++r->asked;
	r->pending |= reasons;
	count_requests(r, reasons);
	pthread_mutex_unlock(&r->lock);
	wake();
	pthread_mutex_lock(&r->lock);
	r->waiters++;
	while (r->served < ticket && !r->stopped)
		pthread_cond_wait(&r->cond, &r->lock);
	int res = r->served >= ticket ? r->last_result : -ESHUTDOWN;
	if (report && len)
		snprintf(report, len, "%s", r->served >= ticket ? r->last_report : "");
	if (--r->waiters == 0 && r->stopped)
		pthread_cond_broadcast(&r->cond); /* rescan_stop waits for the last one */
	pthread_mutex_unlock(&r->lock);
	return res;
}

int rescan_run_async(struct rescan *r, unsigned reasons,
		     void (*done)(void *opaque, int result, const char *report), void *opaque)
{
	struct async_waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->done = done;
	w->opaque = opaque;
	pthread_mutex_lock(&r->lock);
	w->ticket = ++r->asked;
	w->next = r->async;
	r->async = w;
	r->pending |= reasons;
	count_requests(r, reasons);
	pthread_mutex_unlock(&r->lock);
	wake();
	return 0;
}

/* Take the async waiters served by a run that covered tickets up to `covered` (all of
 * them when `all`), oldest first. Under r->lock. */
static struct async_waiter *take_async(struct rescan *r, uint64_t covered, bool all)
{
	struct async_waiter *done = NULL, **pp = &r->async;
	while (*pp) {
		struct async_waiter *w = *pp;
		if (all || w->ticket <= covered) {
			*pp = w->next;
			w->next = done; /* the list is newest first: this reverses it */
			done = w;
		} else {
			pp = &w->next;
		}
	}
	return done;
}

static void call_async(struct async_waiter *w, int result, const char *report)
{
	while (w) {
		struct async_waiter *next = w->next;
		w->done(w->opaque, result, report);
		free(w);
		w = next;
	}
}

static void *rescan_thread(void *arg)
{
	struct rescan *r = arg;
	char *report = malloc(REPORT_MAX);
	uint64_t next_poll = r->interval_s ? util_now_ms() + r->interval_s * 1000ULL : 0;
	char why[160];

	for (;;) {
		int timeout = -1;
		if (next_poll) {
			uint64_t now = util_now_ms();
			timeout = next_poll > now ? (int)MIN(next_poll - now, 60000u) : 0;
		}
		struct pollfd p = { .fd = sig_efd, .events = POLLIN };
		if (poll(&p, 1, timeout) < 0 && errno != EINTR)
			log_err("rescan thread: poll: %m"); /* cannot happen; keep serving */
		uint64_t v;
		ssize_t rd = read(sig_efd, &v, sizeof(v)); /* drain before taking requests */
		(void)rd;

		pthread_mutex_lock(&r->lock);
		if (r->stopping) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		uint64_t covered = r->asked;
		unsigned reasons = r->pending;
		r->pending = 0;
		unsigned sig = __atomic_exchange_n(&sig_pending, 0, __ATOMIC_ACQ_REL);
		count_requests(r, sig);
		reasons |= sig;
		pthread_mutex_unlock(&r->lock);
		if (next_poll && util_now_ms() >= next_poll)
			reasons |= RESCAN_INTERVAL;
		if (!reasons)
			continue;

		log_debug("rescan (%s)", rescan_reasons_text(reasons, why, sizeof(why)));
		int res = -ENOMEM;
		if (report) {
			report[0] = 0;
			res = r->ops->run(r->opaque, reasons, report, REPORT_MAX);
		}
		pthread_mutex_lock(&r->lock);
		r->st.runs++;
		if (res < 0)
			r->st.failures++;
		else
			r->st.changes += (uint64_t)res;
		r->st.last_ms = util_now_ms();
		r->served = covered;
		r->last_result = res;
		snprintf(r->last_report, REPORT_MAX, "%s", report ? report : "out of memory");
		struct async_waiter *served = take_async(r, covered, false);
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		call_async(served, res, report ? report : "out of memory");
		/* the next poll counts from the last rescan, whatever caused it */
		if (r->interval_s)
			next_poll = util_now_ms() + r->interval_s * 1000ULL;
	}
	free(report);
	return NULL;
}

struct rescan *rescan_start(const struct rescan_ops *ops, void *opaque, unsigned interval_s)
{
	pthread_mutex_lock(&start_lock);
	if (__atomic_load_n(&sig_active, __ATOMIC_ACQUIRE)) {
		pthread_mutex_unlock(&start_lock);
		errno = EBUSY;
		return NULL;
	}
	if (sig_efd < 0)
		sig_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sig_efd < 0) {
		pthread_mutex_unlock(&start_lock);
		return NULL;
	}
	struct rescan *r = calloc(1, sizeof(*r));
	if (!r || !(r->last_report = calloc(1, REPORT_MAX))) {
		free(r);
		pthread_mutex_unlock(&start_lock);
		errno = ENOMEM;
		return NULL;
	}
	r->ops = ops;
	r->opaque = opaque;
	r->interval_s = interval_s;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	uint64_t v;
	ssize_t rd = read(sig_efd, &v, sizeof(v)); /* what an earlier instance left */
	(void)rd;
	__atomic_store_n(&sig_pending, 0, __ATOMIC_RELEASE);
	int e = pthread_create(&r->thread, NULL, rescan_thread, r);
	if (e) {
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r->last_report);
		free(r);
		pthread_mutex_unlock(&start_lock);
		errno = e;
		return NULL;
	}
	__atomic_store_n(&sig_active, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&start_lock);
	return r;
}

void rescan_get_stats(struct rescan *r, struct rescan_stats *out)
{
	pthread_mutex_lock(&r->lock);
	*out = r->st;
	pthread_mutex_unlock(&r->lock);
}

void rescan_stop(struct rescan *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&start_lock);
	__atomic_store_n(&sig_active, 0, __ATOMIC_RELEASE);
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_mutex_unlock(&r->lock);
	wake();
	pthread_join(r->thread, NULL);
	pthread_mutex_lock(&r->lock);
	r->stopped = true;
	pthread_cond_broadcast(&r->cond);
	while (r->waiters > 0) /* they return -ESHUTDOWN; then nothing refers to r */
		pthread_cond_wait(&r->cond, &r->lock);
	struct async_waiter *left = take_async(r, 0, true);
	pthread_mutex_unlock(&r->lock);
	call_async(left, -ESHUTDOWN, "");
	pthread_mutex_unlock(&start_lock);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r->last_report);
	free(r);
}
