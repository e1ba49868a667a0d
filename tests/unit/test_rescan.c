/*
 * test_rescan.c - proves the rescan trigger (src/rescan.c, issue 11): one rescan at a
 * time, requests that arrive during a run merged into one more run, a waiter always
 * served by a rescan that started after it asked (with that run's report), SIGHUP's
 * async-signal-safe path, polling at the interval, a failed run reported as its
 * -errno, and stop releasing waiters with -ESHUTDOWN.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "iscsifs/log.h"
#include "iscsifs/rescan.h"
#include "iscsifs/util.h"

#include "check.h"

static struct {
	pthread_mutex_t m;
	int runs, running, max_running;
	unsigned reasons[64];         /* per run */
	int hold_ms;                  /* how long a run takes */
	int result;                   /* what it returns */
} R = { .m = PTHREAD_MUTEX_INITIALIZER };

static int fake_run(void *opaque, unsigned reasons, char *report, size_t len)
{
	(void)opaque;
	pthread_mutex_lock(&R.m);
	int n = R.runs++;
	if (n < 64)
		R.reasons[n] = reasons;
	R.running++;
	R.max_running = MAX(R.max_running, R.running);
	int hold = R.hold_ms, res = R.result;
	pthread_mutex_unlock(&R.m);
	usleep((useconds_t)hold * 1000);
	snprintf(report, len, "run %d\n", n + 1);
	pthread_mutex_lock(&R.m);
	R.running--;
	pthread_mutex_unlock(&R.m);
	return res;
}

static const struct rescan_ops ops = { .run = fake_run };

static void reset(int hold_ms, int result)
{
	pthread_mutex_lock(&R.m);
	R.runs = R.running = R.max_running = 0;
	memset(R.reasons, 0, sizeof(R.reasons));
	R.hold_ms = hold_ms;
	R.result = result;
	pthread_mutex_unlock(&R.m);
}

static int runs(void)
{
	pthread_mutex_lock(&R.m);
	int n = R.runs;
	pthread_mutex_unlock(&R.m);
	return n;
}

static int wait_runs(int n)
{
	for (int i = 0; i < 500 && runs() < n; i++)
		usleep(10000);
	return runs();
}

struct syncer {
	struct rescan *r;
	int result;
	char report[64];
	pthread_t t;
};

static void *do_sync(void *arg)
{
	struct syncer *s = arg;
	s->result = rescan_run_sync(s->r, RESCAN_USER, s->report, sizeof(s->report));
	return NULL;
}

static void test_sync_and_merge(void)
{
	reset(200, 3);
	struct rescan *r = rescan_start(&ops, NULL, 0);
	CHECK("started", r != NULL);
	if (!r)
		return;
	char report[64];
	CHECK_EQ("a rescan on request: its result", 3,
		 rescan_run_sync(r, RESCAN_USER, report, sizeof(report)));
	CHECK("and its report", strcmp(report, "run 1\n") == 0);
	CHECK_EQ("one run", 1, runs());

	/* a burst of requests while a run is going: one more run, not one per request */
	reset(300, 0);
	rescan_request(r, RESCAN_UNIT_ATTENTION);
	wait_runs(1);
	for (int i = 0; i < 10; i++)
		rescan_request(r, i % 2 ? RESCAN_RELOGIN : RESCAN_UNIT_ATTENTION);
	usleep(800000);
	CHECK_EQ("ten requests during a run: merged into one more run", 2, runs());
	CHECK_EQ("never two at once", 1, R.max_running);
	CHECK_EQ("the second run has both reasons", RESCAN_UNIT_ATTENTION | RESCAN_RELOGIN,
		 R.reasons[1]);

	/* a waiter that asks while a run is going gets the next run, not that one */
	reset(300, 5);
	rescan_request(r, RESCAN_SIGNAL);
	wait_runs(1);
	struct syncer s = { .r = r };
	pthread_create(&s.t, NULL, do_sync, &s);
	pthread_join(s.t, NULL);
	CHECK_EQ("waiter during a run: served by the next", 2, runs());
	CHECK("with the report of that run", strcmp(s.report, "run 2\n") == 0);
	CHECK_EQ("and its result", 5, s.result);

	/* several waiters at once share one run */
	reset(200, 1);
	struct syncer w[4];
	for (int i = 0; i < 4; i++) {
		w[i].r = r;
		pthread_create(&w[i].t, NULL, do_sync, &w[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(w[i].t, NULL);
	CHECK("four waiters: at most two runs (one may have started before some asked)",
	      runs() >= 1 && runs() <= 2);
	for (int i = 0; i < 4; i++)
		CHECK_EQ("each got a result", 1, w[i].result);

	/* a failed rescan is its -errno */
	reset(0, -ETIMEDOUT);
	CHECK_EQ("failed rescan", -ETIMEDOUT, rescan_run_sync(r, RESCAN_USER, NULL, 0));
	struct rescan_stats st;
	rescan_get_stats(r, &st);
	CHECK("failures counted", st.failures >= 1);
	CHECK("runs counted", st.runs >= 6);
	CHECK("user requests counted", st.requests[0] >= 6);
	CHECK("changes counted (3 + 5 + 4x1 at least)", st.changes >= 12);
	rescan_stop(r);
}

static void on_hup(int sig)
{
	(void)sig;
	rescan_request_from_signal(RESCAN_SIGNAL);
}

static void test_signal(void)
{
	reset(0, 0);
	rescan_request_from_signal(RESCAN_SIGNAL); /* no thread yet: nothing, no crash */
	struct rescan *r = rescan_start(&ops, NULL, 0);
	if (!r)
		return;
	CHECK("a second rescan thread is refused", rescan_start(&ops, NULL, 0) == NULL);
	usleep(100000);
	CHECK_EQ("a signal before the start is not carried over", 0, runs());
	signal(SIGHUP, on_hup);
	raise(SIGHUP);
	CHECK_EQ("SIGHUP rescans", 1, wait_runs(1));
	CHECK_EQ("for the signal", RESCAN_SIGNAL, R.reasons[0]);
	rescan_stop(r);
	signal(SIGHUP, SIG_DFL);
}

static void test_interval(void)
{
	reset(0, 0);
	struct rescan *r = rescan_start(&ops, NULL, 1);
	if (!r)
		return;
	usleep(2600000);
	int n = runs();
	CHECK("polling every second: 2 runs in 2.6 s (1 to 3 with slack)", n >= 1 && n <= 3);
	if (n)
		CHECK_EQ("for the interval", RESCAN_INTERVAL, R.reasons[0]);
	rescan_stop(r);
	usleep(1500000);
	CHECK_EQ("no run after stop", n, runs());
}

struct async_done {
	pthread_mutex_t m;
	int calls, result;
	char report[64];
};

static void on_done(void *opaque, int result, const char *report)
{
	struct async_done *a = opaque;
	pthread_mutex_lock(&a->m);
	a->calls++;
	a->result = result;
	snprintf(a->report, sizeof(a->report), "%s", report);
	pthread_mutex_unlock(&a->m);
}

static int async_calls(struct async_done *a)
{
	pthread_mutex_lock(&a->m);
	int n = a->calls;
	pthread_mutex_unlock(&a->m);
	return n;
}

/* The FUSE handler's way: no waiting; answered from the rescan thread. */
static void test_async(void)
{
	reset(300, 2);
	struct rescan *r = rescan_start(&ops, NULL, 0);
	if (!r)
		return;
	rescan_request(r, RESCAN_RELOGIN);
	wait_runs(1);
	struct async_done a = { .m = PTHREAD_MUTEX_INITIALIZER };
	CHECK_EQ("async request accepted", 0, rescan_run_async(r, RESCAN_USER, on_done, &a));
	for (int i = 0; i < 200 && !async_calls(&a); i++)
		usleep(10000);
	CHECK_EQ("called back once", 1, async_calls(&a));
	CHECK_EQ("by the run after the one going when it asked", 2, runs());
	CHECK("with that run's report", strcmp(a.report, "run 2\n") == 0);
	CHECK_EQ("and result", 2, a.result);
	/* at stop, a request not yet served is answered -ESHUTDOWN */
	reset(1000, 0);
	rescan_request(r, RESCAN_RELOGIN);
	wait_runs(1);
	struct async_done b = { .m = PTHREAD_MUTEX_INITIALIZER };
	rescan_run_async(r, RESCAN_USER, on_done, &b);
	rescan_stop(r);
	CHECK_EQ("stop answers it", 1, async_calls(&b));
	CHECK_EQ("with -ESHUTDOWN", -ESHUTDOWN, b.result);
	usleep(100000);
	CHECK_EQ("once", 1, async_calls(&b));
}

static void test_stop_releases_waiters(void)
{
	reset(1000, 0);
	struct rescan *r = rescan_start(&ops, NULL, 0);
	if (!r)
		return;
	rescan_request(r, RESCAN_USER);
	wait_runs(1);
	struct syncer s = { .r = r };
	pthread_create(&s.t, NULL, do_sync, &s);
	usleep(100000);
	rescan_stop(r); /* the run in progress finishes; the waiter's run never starts */
	pthread_join(s.t, NULL);
	CHECK_EQ("a waiter at stop gets -ESHUTDOWN", -ESHUTDOWN, s.result);
	CHECK_EQ("its run never started", 1, runs());
}

int main(void)
{
	log_init(false);
	char buf[128];
	rescan_reasons_text(RESCAN_SIGNAL | RESCAN_RELOGIN, buf, sizeof(buf));
	CHECK("reasons in words", strcmp(buf, "SIGHUP, re-login") == 0);
	test_sync_and_merge();
	test_signal();
	test_interval();
	test_stop_releases_waiters();
	test_async();
	printf(failures ? "test_rescan: %d failed\n" : "test_rescan: all passed\n", failures);
	return failures != 0;
}
