/*
 * rescan.h - when a mounted namespace is compared with its targets again (issue 11).
 *
 * A rescan reads REPORT LUNS and READ CAPACITY again (and SendTargets for a portal
 * mount), and makes the files follow: LUNs appear and disappear, sizes change. What a
 * rescan does is the mount's (mount.c, struct rescan_ops); this module decides when
 * it runs, on one thread of its own, one rescan at a time:
 *   - on request: `iscsifs rescan MOUNTPOINT` (a write to .iscsifs/rescan, which
 *     waits for the result: rescan_run_sync), SIGHUP (rescan_request_from_signal);
 *   - when the target says so: the unit attentions 3F/0E, 3F/03 (lun.h
 *     LUN_EVENT_RESCAN), and a capacity that changed (LUN_EVENT_CAPACITY: the files
 *     of that LUN follow);
 *   - after every re-login of a session (the target may have been changed while it
 *     was down: its LUNs, their sizes);
 *   - every `interval` seconds when the user asked for polling (-o rescan_interval).
 * Requests that arrive while a rescan runs are merged into one more run after it, so
 * a burst of triggers (a unit attention on every session, SIGHUP twice) costs at most
 * one extra rescan; a caller of rescan_run_sync always gets a rescan that started
 * after its call.
 *
 * NOTES ON THE THREAD MODEL
 *   rescan_start() starts one thread (rescan_thread in rescan.c); it alone calls
 *   ops->run. Requests are a bit mask of reasons (atomic) and an eventfd write, so
 *   they never block and rescan_request_from_signal is async-signal-safe. Waiters of
 *   rescan_run_sync sleep on `lock`/`cond`.
 */
#ifndef ISCSIFS_RESCAN_H
#define ISCSIFS_RESCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a rescan runs (a bit mask: requests that arrive together are merged). */
enum rescan_reason {
	RESCAN_USER = 1 << 0,           /* iscsifs rescan MOUNTPOINT */
	RESCAN_SIGNAL = 1 << 1,         /* SIGHUP */
	RESCAN_UNIT_ATTENTION = 1 << 2, /* 3F/0E, 3F/03, 3F/05 */
	RESCAN_RELOGIN = 1 << 3,        /* a session logged in again */
	RESCAN_INTERVAL = 1 << 4,       /* -o rescan_interval */
	RESCAN_CAPACITY = 1 << 5,       /* a LUN's capacity changed (2A/09): only the files
	                                   of LUNs whose size differs follow */
	RESCAN_PROBE = 1 << 6,          /* a partition table may have been written: re-probe
	                                   the LUNs that say so (no target I/O but reads) */
	RESCAN_REAP = 1 << 7,           /* a removed LUN is no longer used: free it */
};
#define RESCAN_NREASONS 8
/* The reasons that read REPORT LUNS again (the others only follow what is known). */
#define RESCAN_FULL \
	(RESCAN_USER | RESCAN_SIGNAL | RESCAN_UNIT_ATTENTION | RESCAN_RELOGIN | RESCAN_INTERVAL)

/* The reasons in words, for log lines: "SIGHUP, a re-login". Returns buf. */
const char *rescan_reasons_text(unsigned reasons, char *buf, size_t len);

struct rescan_ops {
	/*
	 * Run one rescan (on the rescan thread only). `reasons` says why; with only
	 * RESCAN_CAPACITY the caller asks for no more than making file sizes follow the
	 * LUNs' sizes. Writes what changed to `report`, one line per change ("lun3: added,
	 * 64 MiB"), or "" when nothing did. Returns the number of changes, or -errno when
	 * the rescan failed (report then says why, in one line). Bounded by the sessions'
	 * own time budgets.
	 */
	int (*run)(void *opaque, unsigned reasons, char *report, size_t len);
};

struct rescan;

/* Start the rescan thread. interval_s 0: no polling. NULL with errno on failure. */
struct rescan *rescan_start(const struct rescan_ops *ops, void *opaque, unsigned interval_s);

/* Ask for a rescan (any thread; never blocks). */
void rescan_request(struct rescan *r, unsigned reasons);

/* The same from a signal handler: async-signal-safe. Until rescan_start has run, or
 * after rescan_stop, it does nothing. */
void rescan_request_from_signal(unsigned reasons);

/*
 * Ask for a rescan and wait until one that started after this call has finished
 * (never on the rescan thread, nor from inside ops->run). Copies that rescan's report
 * into `report` (may be NULL) and returns its result (changes, or -errno);
 * -ESHUTDOWN when the thread stops first.
 */
int rescan_run_sync(struct rescan *r, unsigned reasons, char *report, size_t len);

/*
 * The same without waiting: `done` is called once, on the rescan thread (or in
 * rescan_stop's caller, with -ESHUTDOWN), with the result and the report of a rescan
 * that started after this call; the report is valid during the call. For a FUSE
 * handler, which must not wait: it answers from `done`. Returns 0, or -ENOMEM (done
 * is then never called).
 */
int rescan_run_async(struct rescan *r, unsigned reasons,
		     void (*done)(void *opaque, int result, const char *report), void *opaque);

/* Counters, for stats. */
struct rescan_stats {
	uint64_t runs;                      /* rescans run */
	uint64_t failures;                  /* of those, failed (-errno) */
	uint64_t changes;                   /* namespace changes they made, all together */
	uint64_t requests[RESCAN_NREASONS]; /* requests per reason bit (enum rescan_reason) */
	uint64_t last_ms;                   /* util_now_ms() when the last one ended; 0 never */
};
void rescan_get_stats(struct rescan *r, struct rescan_stats *out);

/* Stop the thread: a rescan running finishes first; waiters get -ESHUTDOWN. NULL ok. */
void rescan_stop(struct rescan *r);

#endif
