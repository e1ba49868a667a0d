/*
 * daemon.c - going to the background, readiness, status and the final write-back's
 * progress (daemon.h).
 *
 * NOTES ON THE THREAD MODEL
 *   daemon_fork() runs before any thread exists (session and cache threads would not
 *   survive a fork); the parent waits on a pipe until the child has mounted (exit 0)
 *   or failed (exit with the child's status; the child printed the reason).
 *   daemon_ready() starts one status thread, which only reads: session_get_info()
 *   and cache_get_stats() (both thread-safe) of the model it was given. It sleeps on
 *   `st.cond`; daemon_stopping() and daemon_stopped() change its phase under
 *   `st.lock`, and daemon_stopped() joins it before the caches go away.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iscsifs/cache.h"
#include "iscsifs/daemon.h"
#include "iscsifs/log.h"
#include "iscsifs/notify.h"
#include "iscsifs/util.h"

enum phase { PHASE_NONE, PHASE_MOUNTED, PHASE_STOPPING, PHASE_STOPPED };

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when `phase` changes */
	enum phase phase;    /* protected by lock */
	bool thread_started; /* set by daemon_ready, read by daemon_stopped */
	pthread_t thread;
	const struct fs_model *m; /* immutable while the thread runs */
	uint64_t stop_ms;         /* when daemon_stopping ran; protected by lock */
	uint64_t dirty_at_stop;   /* protected by lock */
} st = { .lock = PTHREAD_MUTEX_INITIALIZER };

int daemon_fork(struct config *cfg)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		perror("iscsifs: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("iscsifs: fork");
		exit(1);
	}
	if (pid > 0) {
		char ok;
		/* the parent only waits for the verdict: it has no use for the secrets */
		config_wipe_secrets(cfg);
		close(p[1]);
		if (read(p[0], &ok, 1) == 1)
			exit(0);
		int status = 0;
		waitpid(pid, &status, 0);
		exit(WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
	}
	close(p[0]);
	setsid();
	if (chdir("/") != 0) { /* do not pin the caller's directory */
	}
	return p[1];
}

/* "2/2 sessions logged in" or "1/2 sessions logged in; iqn...:disk1 #1 recovering
 * (down 12 s)": what systemctl status shows. */
static void session_summary(const struct fs_model *m, char *buf, size_t len)
{
	int total = 0, up = 0;
	size_t k = 0;
	char bad[512] = "";
	uint64_t now = util_now_ms();

	/* the lists change while mounted (issue 11): read them under the model's lock */
	pthread_mutex_lock((pthread_mutex_t *)&m->lock);
	for (int t = 0; t < m->ntargets; t++)
		for (int i = 0; i < m->targets[t]->nsess; i++) {
			struct session_info si;

			session_get_info(m->targets[t]->sess[i], &si);
			total++;
			if (strcmp(si.state, "logged-in") == 0) {
				up++;
				continue;
			}
			if (k < sizeof bad)
				k += (size_t)snprintf(
					bad + k, sizeof bad - k, "; %s #%d %s (down %llu s)",
					m->targets[t]->name, i, si.state,
					si.down_since_ms ?
						(unsigned long long)(now - si.down_since_ms) /
							1000 :
						0ULL);
		}
	snprintf(buf, len, "%s: %d LUN%s, %d/%d session%s logged in%s", m->cfg->mountpoint,
		 m->nluns, m->nluns == 1 ? "" : "s", up, total, total == 1 ? "" : "s", bad);
	pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
}

static uint64_t dirty_bytes(const struct fs_model *m)
{
	uint64_t sum = 0;

	pthread_mutex_lock((pthread_mutex_t *)&m->lock);
	for (int i = 0; i < m->nluns; i++) {
		struct cache_stats cs;
		cache_get_stats(m->luns[i]->cache, &cs);
		sum += cs.dirty_bytes;
	}
	pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
	return sum;
}

static double mib(uint64_t b)
{
	return (double)b / 1048576.0;
}

static void *status_main(void *arg)
{
	char status[768], last[768] = "";
	uint64_t last_dirty = 0, last_ms = 0;

	(void)arg;
	pthread_mutex_lock(&st.lock);
	while (st.phase == PHASE_MOUNTED || st.phase == PHASE_STOPPING) {
		enum phase ph = st.phase;
		struct timespec dl =
			util_deadline_ms(ph == PHASE_MOUNTED ? 1000 : DAEMON_PROGRESS_MS);

		pthread_mutex_unlock(&st.lock);
		if (ph == PHASE_MOUNTED) {
			session_summary(st.m, status, sizeof status);
			if (strcmp(status, last) != 0) {
				notify_printf("STATUS=%s", status);
				snprintf(last, sizeof last, "%s", status);
			}
		} else {
			uint64_t now = util_now_ms(), d = dirty_bytes(st.m);
			if (last_ms == 0) {
				pthread_mutex_lock(&st.lock);
				last_ms = st.stop_ms;
				last_dirty = st.dirty_at_stop;
				pthread_mutex_unlock(&st.lock);
			}
			double secs = (double)(now - last_ms) / 1000.0;
			double rate = secs > 0 && last_dirty > d ? mib(last_dirty - d) / secs : 0;
			if (now - last_ms >= DAEMON_PROGRESS_MS / 2) {
				log_notice(
					"writing back before exit: %.1f MiB dirty left, %.1f MiB/s",
					mib(d), rate);
				notify_printf(
					"STATUS=writing back before exit: %.1f MiB dirty left, "
					"%.1f MiB/s",
					mib(d), rate);
				last_ms = now;
				last_dirty = d;
			}
		}
		pthread_mutex_lock(&st.lock);
		if (st.phase == ph)
			pthread_cond_timedwait(&st.cond, &st.lock, &dl);
	}
	pthread_mutex_unlock(&st.lock);
	return NULL;
}

void daemon_ready(const struct fs_model *m, int ready_fd)
{
	char status[768];

	if (ready_fd >= 0) {
		bool keep_stderr = log_detach(m->cfg->mountpoint);
		char ok = 1;
		ssize_t w = write(ready_fd, &ok, 1);
		(void)w;
		close(ready_fd);
		/* daemonized: the terminal is the parent's */
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, STDIN_FILENO);
			dup2(nul, STDOUT_FILENO);
			if (!keep_stderr)
				dup2(nul, STDERR_FILENO);
			close(nul);
		}
		/* the first line where the daemon's log now goes */
		log_info("daemon pid %d serving %s on %s", (int)getpid(), m->cfg->url_text,
			 m->cfg->mountpoint);
	}
	session_summary(m, status, sizeof status);
	notify_printf("READY=1\nSTATUS=%s", status);
	st.m = m;
	util_cond_init(&st.cond);
	pthread_mutex_lock(&st.lock);
	st.phase = PHASE_MOUNTED;
	pthread_mutex_unlock(&st.lock);
	if (pthread_create(&st.thread, NULL, status_main, NULL) == 0)
		st.thread_started = true;
	else
		log_warn("cannot start the status thread: no STATUS= updates or write-back "
			 "progress lines");
}

void daemon_stopping(void)
{
	uint64_t d;

	if (!st.m)
		return;
	d = dirty_bytes(st.m);
	notify_printf("STOPPING=1\nSTATUS=unmounted; writing back %.1f MiB", mib(d));
	if (d)
		log_notice("unmounted; writing back %.1f MiB of dirty data before exit", mib(d));
	pthread_mutex_lock(&st.lock);
	st.phase = PHASE_STOPPING;
	st.stop_ms = util_now_ms();
	st.dirty_at_stop = d;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
}

void daemon_stopped(int lost)
{
	uint64_t start, dirty;

	if (!st.m)
		return;
	pthread_mutex_lock(&st.lock);
	st.phase = PHASE_STOPPED;
	start = st.stop_ms;
	dirty = st.dirty_at_stop;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
	if (st.thread_started)
		pthread_join(st.thread, NULL);
	st.thread_started = false;
	if (dirty && !lost)
		log_notice("write-back done: %.1f MiB in %.1f s", mib(dirty),
			   (double)(util_now_ms() - start) / 1000.0);
	log_info("unmounted %s; %s", st.m->cfg->mountpoint,
		 lost ? "dirty data could not be written" : "all data written");
	notify_printf("STATUS=%s", lost ? "exiting: dirty data could not be written" :
					  "exiting: all data written");
	st.m = NULL;
}
