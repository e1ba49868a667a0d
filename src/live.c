/*
 * live.c - the live namespace's rescans (issue 11; live.h says what a rescan does and
 * why it runs): compare what the targets have now with the model, then change the
 * model and the files - removals first, then size changes, then additions - telling
 * the kernel as fs.c does.
 *
 * NOTES ON THE THREAD MODEL
 *   live_rescan runs on the rescan thread only (rescan.c), which is therefore the only
 *   thread that adds LUNs to the model, removes them, or frees them: it may walk the
 *   model's lists without references. It takes the model's lock only to change the
 *   lists. live_lun_event and live_relogin run on session threads and only ask for a
 *   rescan (rescan_request never blocks).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iscsifs/cache.h"
#include "iscsifs/discovery.h"
#include "iscsifs/live.h"
#include "iscsifs/log.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/rescan.h"
#include "iscsifs/target.h"
#include "iscsifs/util.h"

/* ---------- requests ---------- */

void live_lun_event(void *opaque, struct blkdev *dev, const struct lun_event *ev)
{
	struct fs_model *m = opaque;
	struct rescan *rs = __atomic_load_n(&m->rescan, __ATOMIC_ACQUIRE);
	(void)dev;
	rescan_request(rs,
		       ev->kind == LUN_EVENT_CAPACITY ? RESCAN_CAPACITY : RESCAN_UNIT_ATTENTION);
}

void live_relogin(void *opaque, struct session *s)
{
	struct fs_model *m = opaque;
	(void)s;
	rescan_request(__atomic_load_n(&m->rescan, __ATOMIC_ACQUIRE), RESCAN_RELOGIN);
}

/* ---------- helpers ---------- */

static void say(char *report, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say(char *report, size_t len, const char *fmt, ...)
{
	size_t k = strlen(report);
	va_list ap;
	if (k + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(report + k, len - k, fmt, ap);
	va_end(ap);
}

/* "lun1" or "iqn...:disk/lun1" */
static const char *path(const struct fs_model *m, const struct fs_target *t, const char *name,
			char *buf, size_t len)
{
	if (m->target_dirs)
		snprintf(buf, len, "%s/%s", t->name, name);
	else
		snprintf(buf, len, "%s", name);
	return buf;
}

static bool stopping(const struct fs_model *m)
{
	return __atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE);
}

static bool logged_in(const struct fs_target *t)
{
	struct session_info si;
	if (t->nsess < 1)
		return false;
	session_get_info(t->sess[0], &si);
	return strcmp(si.state, "logged-in") == 0;
}

/* The time budget of each command of a rescan. */
static int budget_ms(const struct fs_model *m)
{
	return MIN(MAX(m->cfg->login_timeout, 1), 5) * 1000;
}

/*
 * Before another blkdev may use address `lun` of target t (a new disk there, or the
 * probe of one): the LUNs that left from that address must have nothing in flight,
 * or a command of theirs could still reach the new disk. They send nothing new
 * (failed for good), so this waits at most for what the sessions hold (bounded by
 * their budgets); true when the address is free.
 */
static bool address_free(struct fs_model *m, const struct fs_target *t, uint64_t lun,
			 const struct fs_lun *except)
{
	uint64_t deadline = util_now_ms() + (uint64_t)MAX(m->cfg->replacement_timeout, 1) * 1000 +
			    (uint64_t)m->cfg->cmd_timeout * 1000;
	for (;;) {
		bool busy = false;
		pthread_mutex_lock(&m->lock);
		for (struct fs_lun *g = m->gone; g && !busy; g = g->gone_next)
			busy = g->target == t && g->info.lun == lun && lun_inflight(g->lundev) > 0;
		for (int i = 0; i < m->nluns && !busy; i++)
			busy = m->luns[i] != except && m->luns[i]->target == t &&
			       m->luns[i]->info.lun == lun && lun_is_failed(m->luns[i]->lundev) &&
			       lun_inflight(m->luns[i]->lundev) > 0;
		pthread_mutex_unlock(&m->lock);
		if (!busy)
			return true;
		if (util_now_ms() > deadline || stopping(m))
			return false;
		usleep(10000);
	}
}

/* ---------- changes ---------- */

/* l leaves the namespace. */
static void remove_lun(struct fs_model *m, struct fs *fs, struct fs_lun *l, const char *why,
		       char *report, size_t len)
{
	char p[CONFIG_NAME_MAX + 64];
	pthread_mutex_lock(&m->lock);
	for (int i = 0; i < m->nluns; i++) {
		if (m->luns[i] == l) {
			m->luns[i] = m->luns[--m->nluns];
			break;
		}
	}
	__atomic_store_n(&l->removed, true, __ATOMIC_RELEASE);
	l->gone_next = m->gone;
	m->gone = l;
	pthread_mutex_unlock(&m->lock);
	/* Nothing more reaches the target from it: not its dirty data, not a handle still
	 * open on it - whatever the target puts at its address later. */
	lun_set_event_handler(l->lundev, NULL, NULL);
	lun_retire(l->lundev, why);
	for (int s = 0; s < l->target->nsess; s++)
		session_clear_identity(l->target->sess[s], l->info.lun);
	/* its dirty data cannot be written: dropped, one line saying why */
	char lost_why[256];
	snprintf(lost_why, sizeof(lost_why), "the LUN was removed (%s)", why);
	cache_drop_all(l->cache, lost_why);
	fs_live_remove_lun(fs, l);
	path(m, l->target, l->name, p, sizeof(p));
	log_notice("%s: removed: %s LUN %s %s", p, l->target->name, LUNSTR(l->info.lun), why);
	say(report, len, "%s: removed (%s)\n", p, why);
	__atomic_fetch_add(&m->live.luns_removed, 1, __ATOMIC_RELAXED);
	fs_lun_put(m, l); /* the list's reference */
}

/* A LUN of target t becomes a file. */
static int add_lun(struct fs_model *m, struct fs *fs, struct fs_target *t,
		   const struct lun_info *info, char *report, size_t len)
{
	char err[CONFIG_ERRLEN] = "", p[CONFIG_NAME_MAX + 64], name[40];
	snprintf(name, sizeof(name), "lun%s", LUNSTR(info->lun));
	path(m, t, name, p, sizeof(p));
	/* one disk behind two files would be written through two caches */
	for (int i = 0; i < m->nluns; i++) {
		if (info->wwn[0] && strcmp(info->wwn, m->luns[i]->info.wwn) == 0) {
			log_warn("%s LUN %s is not added: it reports the same identifier %s (VPD "
				 "page 0x83) as %s LUN %s: one disk seen twice",
				 t->name, LUNSTR(info->lun), info->wwn, m->luns[i]->target->name,
				 LUNSTR(m->luns[i]->info.lun));
			say(report, len, "%s: not added (the same disk as %s LUN %s)\n", p,
			    m->luns[i]->target->name, LUNSTR(m->luns[i]->info.lun));
			return 0;
		}
	}
	if (!address_free(m, t, info->lun, NULL)) {
		say(report, len,
		    "%s: not added yet (the disk that was at its address still has "
		    "commands in flight; the next rescan adds it)\n",
		    p);
		return 0;
	}
	struct fs_lun *l = mount_lun_build(m, t, info, err, sizeof(err));
	if (!l) {
		log_warn("%s LUN %s is not added: %s", t->name, LUNSTR(info->lun), err);
		say(report, len, "%s: not added (%s)\n", p, err);
		return 0;
	}
	if (mount_model_add_lun(m, l) < 0) {
		mount_lun_free(m, l);
		return 0;
	}
	int r = fs_live_add_lun(fs, l, report, len);
	if (r < 0) {
		log_err("%s: cannot add the file: %s", p, strerror(-r));
		remove_lun(m, fs, l, "its file could not be added", report, len);
		return 0;
	}
	log_notice("%s: added: %s LUN %s, %" PRIu64 " bytes", p, t->name, LUNSTR(info->lun),
		   l->cache->size);
	__atomic_fetch_add(&m->live.luns_added, 1, __ATOMIC_RELAXED);
	return 1;
}

/* Files follow the sizes their LUNs have now (lun.c applied them). */
static int follow_sizes(struct fs_model *m, struct fs *fs, char *report, size_t len)
{
	char p[CONFIG_NAME_MAX + 64];
	int changes = 0;
	for (int i = 0; i < m->nluns; i++) {
		struct fs_lun *l = m->luns[i];
		uint64_t old = l->cache->size, now = lun_get_size(l->lundev);
		if (now == old || lun_is_failed(l->lundev))
			continue;
		cache_set_size(l->cache, now); /* dirty data past a new end: lost, logged */
		fs_live_resize_lun(fs, l, old, now);
		__atomic_store_n(&l->reprobe, true, __ATOMIC_RELEASE); /* partitions, GPT backup */
		path(m, l->target, l->name, p, sizeof(p));
		log_notice("%s: size %" PRIu64 " -> %" PRIu64 " bytes", p, old, now);
		say(report, len, "%s: size %" PRIu64 " -> %" PRIu64 " bytes\n", p, old, now);
		__atomic_fetch_add(&m->live.luns_resized, 1, __ATOMIC_RELAXED);
		changes++;
	}
	return changes;
}

static int reprobe(struct fs_model *m, struct fs *fs, char *report, size_t len)
{
	int changes = 0;
	for (int i = 0; i < m->nluns && !stopping(m); i++) {
		struct fs_lun *l = m->luns[i];
		if (!__atomic_load_n(&l->reprobe, __ATOMIC_ACQUIRE) || lun_is_failed(l->lundev))
			continue;
		/* Read the partition table only of the disk this file is: another disk at
		 * the address (the LUN then fails, and the next rescan gives the new disk a
		 * file of its own) or one that cannot be checked now is not read. */
		int r = lun_check_identity(l->lundev, budget_ms(m));
		if (r < 0) {
			if (r != -ENODEV)
				log_warn("%s %s: not re-probed: its identity could not be checked "
					 "(%s); the next rescan tries again",
					 l->target->name, l->name, strerror(-r));
			continue;
		}
		r = fs_live_reprobe(fs, l, report, len);
		changes += MAX(r, 0);
	}
	return changes;
}

/* Free the removed LUNs nothing refers to any more. */
static void reap(struct fs_model *m)
{
	struct fs_lun *dead = NULL;
	pthread_mutex_lock(&m->lock);
	for (struct fs_lun **pp = &m->gone; *pp;) {
		struct fs_lun *l = *pp;
		if (__atomic_load_n(&l->refs, __ATOMIC_ACQUIRE) == 0) {
			*pp = l->gone_next;
			l->gone_next = dead;
			dead = l;
		} else {
			pp = &l->gone_next;
		}
	}
	pthread_mutex_unlock(&m->lock);
	while (dead) {
		struct fs_lun *next = dead->gone_next;
		log_debug("%s %s: freed (no file refers to it any more)", dead->target->name,
			  dead->name);
		mount_lun_free(m, dead);
		dead = next;
	}
}

/* ---------- reading the targets ---------- */

/* A portal mount: targets SendTargets lists now that the mount lacks. */
static int new_targets(struct fs_model *m, struct fs *fs, char *report, size_t len)
{
	char err[CONFIG_ERRLEN] = "";
	struct target_list have = { 0 }, added = { 0 };
	int changes = 0;
	have.v = calloc((size_t)m->ntargets + 1, sizeof(*have.v));
	if (!have.v)
		return -ENOMEM;
	for (int i = 0; i < m->ntargets; i++)
		have.v[have.n++] = *m->targets[i];
	int r = target_find_new(m->cfg, &have, &added, err, sizeof(err));
	free(have.v);
	if (r < 0) {
		log_warn("rescan: SendTargets at %s failed: %s", m->cfg->url.portal, err);
		say(report, len, "SendTargets at %s failed: %s\n", m->cfg->url.portal, err);
		return r;
	}
	for (int i = 0; i < added.n && !stopping(m); i++) {
		struct fs_target *t = mount_target_add(m, &added.v[i], err, sizeof(err));
		if (!t) {
			log_warn("rescan: new target %s: %s", added.v[i].name, err);
			say(report, len, "%s/: not added (%s)\n", added.v[i].name, err);
			continue;
		}
		if (fs_live_add_target(fs, t) < 0)
			continue;
		log_notice("%s/: added (target at %s)", t->name, t->portal);
		say(report, len, "%s/: added (portal %s)\n", t->name, t->portal);
		__atomic_fetch_add(&m->live.targets_added, 1, __ATOMIC_RELAXED);
		changes++;
	}
	free(added.v);
	return changes;
}

/* One target: its LUN files check their capacity and identity, REPORT LUNS tells
 * what went and what came. Returns the changes, or -errno when the target could not
 * be read (nothing changed). */
static int rescan_target(struct fs_model *m, struct fs *fs, struct fs_target *t, unsigned reasons,
			 char *report, size_t len)
{
	char err[CONFIG_ERRLEN] = "", why[200];
	int ncur = 0, changes = 0, r = 0;
	struct fs_lun **cur = calloc((size_t)m->nluns + 1, sizeof(*cur));
	struct lun_info *infos = calloc((size_t)m->nluns + 1, sizeof(*infos));
	bool *trusted = calloc((size_t)m->nluns + 1, sizeof(*trusted));
	struct target_lun *now = NULL;
	struct target_change *c = NULL;
	int nnow = 0;
	if (!cur || !infos || !trusted) {
		r = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < m->nluns; i++)
		if (m->luns[i]->target == t)
			cur[ncur++] = m->luns[i];
	/* each file checks itself: capacity (READ CAPACITY), identity (VPD; a re-login
	 * checked it already) */
	bool check_identity = reasons & ~(unsigned)RESCAN_RELOGIN & RESCAN_FULL;
	for (int i = 0; i < ncur && !stopping(m); i++) {
		struct fs_lun *l = cur[i];
		infos[i] = l->info;
		if (lun_is_failed(l->lundev))
			continue; /* another disk (or none): probed as new below */
		r = lun_check_capacity(l->lundev,
				       reasons & RESCAN_RELOGIN ? "after re-login" : "on rescan",
				       budget_ms(m));
		if (r == 0 && check_identity)
			r = lun_check_identity(l->lundev, budget_ms(m));
		if (r == -ENODEV) {
			r = 0;
			continue;
		}
		if (r < 0) {
			snprintf(err, sizeof(err), "%s LUN %s did not answer usefully (%s)",
				 t->name, LUNSTR(l->info.lun), strerror(-r));
			goto out;
		}
		trusted[i] = true;
	}
	if (stopping(m)) {
		r = -ESHUTDOWN;
		goto out;
	}
	/* A failed LUN (another disk, or none, at its address) is probed as new: the
	 * sessions stop failing commands to the address. Nothing of the failed LUN can
	 * reach it: lun.c refuses its requests for good. */
	for (int i = 0; i < ncur; i++) {
		if (trusted[i] || !lun_is_failed(cur[i]->lundev))
			continue;
		if (!address_free(m, t, cur[i]->info.lun, NULL)) {
			snprintf(err, sizeof(err), "the failed %s still has commands in flight",
				 cur[i]->name);
			r = -EBUSY;
			goto out;
		}
		for (int s = 0; s < t->nsess; s++)
			session_clear_identity(t->sess[s], cur[i]->info.lun);
	}
	int n = target_rescan(m->cfg, t, infos, ncur, trusted, &now, &nnow, &c, err, sizeof(err));
	if (n < 0) {
		r = n;
		goto out;
	}
	/* removals first: a replaced disk's name is free for its successor */
	bool *removed = calloc((size_t)ncur + 1, sizeof(*removed));
	if (!removed) {
		r = -ENOMEM;
		goto out;
	}
	for (int k = 0; k < n; k++) {
		if (c[k].kind != TARGET_LUN_REMOVED)
			continue;
		removed[c[k].cur] = true;
		remove_lun(m, fs, cur[c[k].cur], c[k].why, report, len);
		changes++;
	}
	/* a failed LUN the probe finds unchanged (its failure was its block size, or a
	 * check that saw it gone for a moment) is replaced all the same: its file can
	 * never be used again */
	for (int i = 0; i < ncur; i++) {
		if (removed[i] || !lun_is_failed(cur[i]->lundev))
			continue;
		remove_lun(m, fs, cur[i], "it failed for good (see above)", report, len);
		changes++;
		for (int j = 0; j < nnow; j++)
			if (now[j].info.lun == infos[i].lun && now[j].mountable &&
			    !now[j].reason[0])
				changes += add_lun(m, fs, t, &now[j].info, report, len);
	}
	free(removed);
	for (int k = 0; k < n && !stopping(m); k++)
		if (c[k].kind == TARGET_LUN_ADDED)
			changes += add_lun(m, fs, t, &now[c[k].now].info, report, len);
	/* LUNs left out (not addressable, ambiguous, a failed probe): said once per rescan
	 * that was asked for, not at every poll */
	for (int j = 0; j < nnow && (reasons & (RESCAN_USER | RESCAN_SIGNAL)); j++)
		if (!now[j].mountable && now[j].warn && now[j].probed + now[j].err != 0) {
			snprintf(why, sizeof(why), "%s", now[j].reason);
			log_warn("%s LUN %s is left out: %s (see: iscsifs ls)", t->name,
				 now[j].label, why);
		}
	r = 0;
out:
	if (r < 0 && r != -ESHUTDOWN) {
		log_warn("rescan of %s failed: %s; its files stay as they are", t->name,
			 err[0] ? err : strerror(-r));
		say(report, len, "%s: not rescanned (%s)\n", t->name, err[0] ? err : strerror(-r));
	}
	free(cur);
	free(infos);
	free(trusted);
	free(now);
	free(c);
	return r < 0 ? r : changes;
}

int live_rescan(void *opaque, unsigned reasons, char *report, size_t len)
{
	struct fs_model *m = opaque;
	struct fs *fs = __atomic_load_n(&m->fs, __ATOMIC_ACQUIRE);
	char why[160];
	int changes = 0, failed = 0, tried = 0, first_err = 0;
	if (!fs)
		return -ESHUTDOWN;
	report[0] = 0;
	if (reasons & RESCAN_FULL) {
		rescan_reasons_text(reasons & RESCAN_FULL, why, sizeof(why));
		/* a poll that changes nothing says so only in the debug log */
		if ((reasons & RESCAN_FULL) == RESCAN_INTERVAL)
			log_debug("rescan (%s)", why);
		else
			log_info("rescan (%s)", why);
		__atomic_fetch_add(&m->live.rescans, 1, __ATOMIC_RELAXED);
		if (m->target_dirs) {
			int r = new_targets(m, fs, report, len);
			changes += MAX(r, 0);
			if (r < 0) {
				failed++;
				first_err = r;
			}
		}
		for (int t = 0; t < m->ntargets && !stopping(m); t++) {
			struct fs_target *tg = m->targets[t];
			tried++;
			if (!logged_in(tg)) {
				/* its session is recovering: a re-login rescans it */
				say(report, len,
				    "%s: not rescanned (not logged in; it is rescanned "
				    "after the re-login)\n",
				    tg->name);
				failed++;
				first_err = first_err ? first_err : -ENOTCONN;
				continue;
			}
			int r = rescan_target(m, fs, tg, reasons, report, len);
			changes += MAX(r, 0);
			if (r < 0) {
				failed++;
				first_err = first_err ? first_err : r;
			}
		}
		if (failed)
			__atomic_fetch_add(&m->live.rescan_failures, 1, __ATOMIC_RELAXED);
	}
	changes += follow_sizes(m, fs, report, len);
	changes += reprobe(m, fs, report, len);
	reap(m);
	if (reasons & RESCAN_FULL)
		if ((reasons & RESCAN_FULL) != RESCAN_INTERVAL || changes)
			log_info("rescan (%s): %d change%s%s", why, changes, changes == 1 ? "" : "s",
				 failed ? ", some targets not rescanned (see above)" : "");
	/* a rescan that could read no target at all is an error for whoever asked */
	return failed && failed >= tried + (m->target_dirs ? 1 : 0) && !changes ? first_err :
										  changes;
}
