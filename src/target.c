/*
 * target.c - the targets a URL names and the LUNs behind each: SendTargets for a
 * portal-only URL, sessions to each target, REPORT LUNS and the per-LUN probe
 * (discovery.c). Shared by the mount and by `iscsifs ls`.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/discovery.h"
#include "iscsifs/log.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/target.h"
#include "iscsifs/util.h"

static void strip_tpgt(char *portal)
{
	char *comma = strrchr(portal, ',');
	if (comma)
		*comma = 0;
}

static int port_of(const char *portal)
{
	const char *colon = strrchr(portal, ':');
	const char *bracket = strrchr(portal, ']');
	if (!colon || (bracket && colon < bracket))
		return CONFIG_DEFAULT_PORT;
	return atoi(colon + 1);
}

static void add_discovered(const char *target, const char *portal, void *opaque)
{
	struct target_list *tl = opaque;
	for (int i = 0; i < tl->n; i++)
		if (strcmp(tl->v[i].name, target) == 0)
			return; /* first portal of each target */
	struct fs_target *nv = realloc(tl->v, sizeof(*nv) * (size_t)(tl->n + 1));
	if (!nv)
		return;
	tl->v = nv;
	struct fs_target *t = &tl->v[tl->n++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", target);
	snprintf(t->portal, sizeof(t->portal), "%s", portal);
	strip_tpgt(t->portal);
}

/* A port other than 3260 is worth one notice (860 in particular is the iSCSI *system*
 * port: whoever reads the log should see where it came from). Logged once the work
 * succeeded, so that an error stays the only line on stderr. */
void target_log_port_notices(const struct config *cfg, const struct target_list *tl)
{
	if (cfg->url.target[0]) {
		if (cfg->url.port != CONFIG_DEFAULT_PORT)
			log_notice("connected to %s: port %d instead of 3260 (from the URL)",
				   cfg->url.portal, cfg->url.port);
		return;
	}
	if (cfg->url.port != CONFIG_DEFAULT_PORT)
		log_notice("discovery at %s: port %d instead of 3260 (from the URL)", cfg->url.portal,
			   cfg->url.port);
	for (int i = 0; i < tl->n; i++)
		if (port_of(tl->v[i].portal) != CONFIG_DEFAULT_PORT)
			log_notice("target %s: port %d of portal %s instead of 3260 (from SendTargets)",
				   tl->v[i].name, port_of(tl->v[i].portal), tl->v[i].portal);
}

int target_find(const struct config *cfg, struct target_list *tl, char *err, size_t errlen)
{
	if (cfg->url.target[0]) {
		tl->v = calloc(1, sizeof(*tl->v));
		if (!tl->v)
			return -ENOMEM;
		tl->n = 1;
		snprintf(tl->v[0].name, sizeof(tl->v[0].name), "%s", cfg->url.target);
		snprintf(tl->v[0].portal, sizeof(tl->v[0].portal), "%s", cfg->url.portal);
		return 0;
	}
	int r = session_discover(cfg, cfg->url.portal, add_discovered, tl, err, errlen);
	if (r < 0)
		return r;
	if (tl->n == 0) {
		snprintf(err, errlen, "no targets at %s (SendTargets returned none visible to "
				      "initiator %s)", cfg->url.portal, cfg->initiator);
		return -ENOENT;
	}
	return 0;
}

int target_open_sessions(const struct config *cfg, struct fs_target *t, int n, char *err,
			 size_t errlen)
{
	for (int i = 0; i < n; i++) {
		struct session_params p = { .cfg = cfg, .portal = t->portal, .target = t->name,
					    .index = i };
		int r = session_create(&p, &t->sess[i], err, errlen);
		if (r < 0)
			return r;
		t->nsess++;
	}
	return 0;
}

void target_close_sessions(struct target_list *tl)
{
	for (int i = 0; i < tl->n; i++)
		for (int j = 0; j < tl->v[i].nsess; j++)
			session_destroy(tl->v[i].sess[j]);
}

static void list_luns_text(const uint64_t *luns, int n, char *buf, size_t len)
{
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < n && k + LUNADDR_STRLEN + 8 < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", LUNSTR(luns[i]));
	if (n && k + LUNADDR_STRLEN + 8 >= len)
		snprintf(buf + k, len - k, ", ...");
}

/* A discovery message without its leading "TARGET LUN n" (and ": "), for a line
 * that names the LUN already. */
static const char *without_subject(const char *msg, const char *target, uint64_t lun)
{
	char subject[CONFIG_NAME_MAX + 40];
	size_t n = (size_t)snprintf(subject, sizeof(subject), "%s LUN %s", target, LUNSTR(lun));
	if (strncmp(msg, subject, n) != 0)
		return msg;
	msg += n;
	if (msg[0] == ':')
		msg++;
	return msg + (msg[0] == ' ');
}

/* How a LUN address is formed, for the reason a LUN has no number. */
static const char *address_method(uint64_t a)
{
	uint8_t b[8];
	lunaddr_to_bytes(a, b);
	for (int i = 2; i < 8; i++)
		if (b[i])
			return (b[0] >> 6) == 3 ? "extended addressing" : "a multi-level address";
	switch (b[0] >> 6) {
	case 0: return "peripheral device addressing on a bus other than 0";
	case 2: return "logical unit addressing";
	case 3: return "extended addressing";
	default: return "flat space addressing";
	}
}

static bool is_known(uint64_t a, const uint64_t *known, int nknown)
{
	for (int i = 0; i < nknown; i++)
		if (known[i] == a)
			return true;
	return false;
}

static int list_luns(const struct config *cfg, struct fs_target *t, int number, bool probe_all,
		     const uint64_t *known, int nknown, struct target_lun **out, int *nout,
		     char *err, size_t errlen);

int target_list_luns(const struct config *cfg, struct fs_target *t, int number, bool probe_all,
		     struct target_lun **out, int *nout, char *err, size_t errlen)
{
	return list_luns(cfg, t, number, probe_all, NULL, 0, out, nout, err, errlen);
}

/* target_list_luns; the addresses in `known` are listed without a probe (probed and
 * mountable false, no reason): their files check themselves (lun_check_*). */
static int list_luns(const struct config *cfg, struct fs_target *t, int number, bool probe_all,
		     const uint64_t *known, int nknown, struct target_lun **out, int *nout,
		     char *err, size_t errlen)
{
	uint64_t *luns = NULL;
	int n = discovery_report_luns(t->sess[0], t->name, cfg->login_timeout, &luns, err, errlen);
	if (n < 0)
		return n;
	struct target_lun *v = calloc((size_t)n + 1, sizeof(*v));
	if (!v) {
		free(luns);
		return -ENOMEM;
	}
	int k = 0, r = 0;
	for (int i = 0; i < n; i++) {
		int num = lunaddr_number(luns[i]);
		if (number >= 0 && num != number)
			continue;
		struct target_lun *tl = &v[k++];
		tl->info.lun = luns[i];
		snprintf(tl->label, sizeof(tl->label), "%s", LUNSTR(luns[i]));
		if (!session_can_address(t->sess[0], luns[i])) {
			snprintf(tl->reason, sizeof(tl->reason), "cannot be addressed: its address "
				 "uses bytes past the first two (%s), which libiscsi 1.19 cannot "
				 "send; commands would reach another LUN", address_method(luns[i]));
			tl->warn = true;
			continue;
		}
		bool file = true;
		if (num < 0) {
			snprintf(tl->reason, sizeof(tl->reason), "has no LUN number (%s); iscsifs "
				 "names LUN files by number", address_method(luns[i]));
			tl->warn = true;
			file = false;
		} else {
			for (int j = 0; j < n; j++) {
				if (j != i && lunaddr_number(luns[j]) == num) {
					snprintf(tl->reason, sizeof(tl->reason), "LUN number %d is "
						 "reported in two forms (0x%016" PRIx64 " and 0x%016"
						 PRIx64 "); which one is LUN %d is ambiguous",
						 num, luns[i], luns[j], num);
					snprintf(tl->label, sizeof(tl->label), "0x%016" PRIx64,
						 luns[i]);
					tl->warn = true;
					file = false;
					break;
				}
			}
		}
		if (!file && !probe_all)
			continue;
		if (file && is_known(luns[i], known, nknown))
			continue; /* a file already: it checks itself */
		r = discovery_probe_lun(t->sess[0], t->name, cfg->login_timeout, luns[i],
					&tl->info, err, errlen);
		if (DISCOVERY_TARGET_FAILED(r))
			goto out; /* the target, not this LUN */
		if (r < 0) {
			size_t len = strlen(tl->reason);
			snprintf(tl->reason + len, sizeof(tl->reason) - len, "%s%s",
				 len ? "; and probing it failed: " : "", without_subject(err, t->name,
											luns[i]));
			tl->warn = true;
			tl->err = r;
			err[0] = 0;
			r = 0;
			continue;
		}
		tl->probed = true;
		if (!file)
			continue;
		if (tl->info.qualifier != 0 || tl->info.devtype != 0) {
			snprintf(tl->reason, sizeof(tl->reason), "not a disk: a %s (type 0x%02x%s)",
				 discovery_devtype_name(tl->info.devtype), tl->info.devtype,
				 tl->info.qualifier ? ", not connected" : "");
			continue;
		}
		tl->mountable = true;
	}
	/* One disk reported twice (two LUNs, one VPD 0x83 designator): say so on both. */
	for (int i = 0; i < k; i++)
		for (int j = 0; j < i && v[i].mountable; j++)
			if (v[j].mountable && v[i].info.wwn[0] &&
			    strcmp(v[i].info.wwn, v[j].info.wwn) == 0)
				snprintf(v[i].reason, sizeof(v[i].reason), "same VPD 0x83 identifier "
					 "(%s) as LUN %s: one disk reported twice", v[i].info.wwn,
					 LUNSTR(v[j].info.lun));
out:
	free(luns);
	if (r < 0) {
		free(v);
		return r;
	}
	*out = v;
	*nout = k;
	return 0;
}

int target_check_identities(const struct fs_lun *luns, int n, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			if (luns[i].info.wwn[0] && strcmp(luns[i].info.wwn, luns[j].info.wwn) == 0) {
				snprintf(err, errlen, "%s LUN %s and %s LUN %s report the same "
					 "identifier %s (VPD page 0x83): one disk seen twice, and "
					 "writes through two caches would corrupt it; refusing to mount "
					 "(mount one of them by its URL .../IQN/LUN)",
					 luns[j].target->name, LUNSTR(luns[j].info.lun),
					 luns[i].target->name, LUNSTR(luns[i].info.lun),
					 luns[i].info.wwn);
				return -EEXIST;
			}
	return 0;
}

/* The LUNs of a target that become files. */
int target_probe_luns(const struct config *cfg, struct fs_target *t, bool all,
		      struct lun_info **out, int *nout, char *err, size_t errlen)
{
	struct target_lun *v = NULL;
	int n = 0, k = 0;
	(void)all;
	int r = target_list_luns(cfg, t, cfg->url.lun, false, &v, &n, err, errlen);
	if (r < 0)
		return r;
	struct lun_info *infos = calloc((size_t)n + 1, sizeof(*infos));
	if (!infos) {
		free(v);
		return -ENOMEM;
	}
	if (cfg->url.lun >= 0) {
		/* the URL's LUN is a number: the LUN the target reports under that number */
		if (n == 0) {
			uint64_t *luns = NULL;
			char list[256] = "";
			int m = discovery_report_luns(t->sess[0], t->name, cfg->login_timeout, &luns,
						      err, errlen);
			if (m >= 0)
				list_luns_text(luns, m, list, sizeof(list));
			free(luns);
			snprintf(err, errlen, "target %s has no LUN %d (its LUNs: %s)", t->name,
				 cfg->url.lun, list);
			r = -ENOENT;
		} else if (!v[0].mountable) {
			snprintf(err, errlen, "%s LUN %d cannot be mounted: %s", t->name,
				 cfg->url.lun, v[0].reason);
			r = v[0].probed && (v[0].info.devtype || v[0].info.qualifier) ? -ENODEV
										    : -EINVAL;
		} else {
			infos[k++] = v[0].info;
		}
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if (v[i].mountable && v[i].reason[0]) { /* the same designator as another */
			snprintf(err, errlen, "%s LUN %s: %s; refusing to mount, as writes through "
				 "two caches would corrupt it (mount one of them by its URL "
				 ".../IQN/LUN)", t->name, LUNSTR(v[i].info.lun), v[i].reason);
			r = -EEXIST;
			goto out;
		}
		if (v[i].mountable)
			infos[k++] = v[i].info;
	}
	int left = 0, first = -1;
	for (int i = 0; i < n; i++)
		if (!v[i].mountable && v[i].warn && !left++)
			first = i;
	if (k == 0 && left && cfg->url.target[0]) {
		/* nothing to mount: the reason is the error, not a warning before it */
		snprintf(err, errlen, "%s LUN %s cannot be mounted: %s%s", t->name,
			 v[first].label, v[first].reason,
			 left > 1 ? " (and other LUNs are left out; see: iscsifs ls)" : "");
		r = -ENODEV;
		goto out;
	}
	for (int i = 0; i < n; i++)
		if (!v[i].mountable && v[i].warn)
			log_warn("%s LUN %s is left out: %s (see: iscsifs ls)", t->name, v[i].label,
				 v[i].reason);
out:
	free(v);
	if (r < 0) {
		free(infos);
		return r;
	}
	*out = infos;
	*nout = k;
	return 0;
}

/* ---------- how a target's LUN set changed ---------- */

bool target_same_disk(const struct lun_info *was, const struct lun_info *now, char *why,
		      size_t whylen)
{
	char dummy[8];
	if (!why) {
		why = dummy;
		whylen = sizeof(dummy);
	}
	why[0] = 0;
	if (was->lun != now->lun) {
		snprintf(why, whylen, "another address");
		return false;
	}
	if (was->block_size != now->block_size) {
		snprintf(why, whylen, "its block size changed from %u to %u bytes", was->block_size,
			 now->block_size);
		return false;
	}
	if (was->vpd83_len != now->vpd83_len ||
	    memcmp(was->vpd83, now->vpd83, was->vpd83_len) != 0) {
		snprintf(why, whylen, "another disk answers at its address (VPD page 0x83 "
			 "changed%s%s)", now->wwn[0] ? ": now " : "", now->wwn);
		return false;
	}
	if (was->vpd80_len != now->vpd80_len ||
	    memcmp(was->vpd80, now->vpd80, was->vpd80_len) != 0) {
		snprintf(why, whylen, "another disk answers at its address (VPD page 0x80, the "
			 "serial number, changed)");
		return false;
	}
	if (!was->vpd83_len && !was->vpd80_len &&
	    (strcmp(was->vendor, now->vendor) != 0 || strcmp(was->product, now->product) != 0)) {
		snprintf(why, whylen, "another disk answers at its address (INQUIRY now says "
			 "%s %s)", now->vendor, now->product);
		return false;
	}
	return true;
}

static int change_add(struct target_change **v, int *n, int *cap, enum target_change_kind k,
		      int cur, int now, const char *why)
{
	if (*n == *cap) {
		int nc = *cap ? 2 * *cap : 8;
		struct target_change *nv = realloc(*v, sizeof(*nv) * (size_t)nc);
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	struct target_change *c = &(*v)[(*n)++];
	c->kind = k;
	c->cur = cur;
	c->now = now;
	snprintf(c->why, sizeof(c->why), "%s", why);
	return 0;
}

int target_diff_luns(const struct lun_info *cur, int ncur, const struct target_lun *now,
		     int nnow, struct target_change **out)
{
	struct target_change *v = NULL;
	int n = 0, cap = 0, r = 0;
	char why[160];
	bool *replaced = calloc((size_t)nnow + 1, sizeof(*replaced)); /* now[j] is new */
	if (!replaced)
		return -ENOMEM;
	/* removals and resizes, in cur order */
	for (int i = 0; i < ncur && r == 0; i++) {
		int j = 0;
		while (j < nnow && now[j].info.lun != cur[i].lun)
			j++;
		if (j == nnow) {
			r = change_add(&v, &n, &cap, TARGET_LUN_REMOVED, i, -1,
				       "no longer reported by REPORT LUNS");
			continue;
		}
		const struct target_lun *t = &now[j];
		if (!t->probed) {
			if (t->err == -ENODEV)
				r = change_add(&v, &n, &cap, TARGET_LUN_REMOVED, i, j,
					       "the target says no LUN answers at its address");
			continue; /* not known to be another disk: keep it */
		}
		if (t->info.qualifier != 0 || t->info.devtype != 0) {
			snprintf(why, sizeof(why), "no longer a connected disk (now a %s%s)",
				 discovery_devtype_name(t->info.devtype),
				 t->info.qualifier ? ", not connected" : "");
			r = change_add(&v, &n, &cap, TARGET_LUN_REMOVED, i, j, why);
			continue;
		}
		if (!target_same_disk(&cur[i], &t->info, why, sizeof(why))) {
			r = change_add(&v, &n, &cap, TARGET_LUN_REMOVED, i, j, why);
			replaced[j] = true;
			continue;
		}
		if (t->info.nblocks != cur[i].nblocks) {
			snprintf(why, sizeof(why), "capacity %" PRIu64 " -> %" PRIu64 " blocks",
				 cur[i].nblocks, t->info.nblocks);
			r = change_add(&v, &n, &cap, TARGET_LUN_RESIZED, i, j, why);
		}
	}
	/* additions, in now order: new addresses, and the new disks at replaced ones */
	for (int j = 0; j < nnow && r == 0; j++) {
		const struct target_lun *t = &now[j];
		if (!t->mountable || t->reason[0])
			continue; /* not a file, or one disk reported twice */
		bool known = false;
		for (int i = 0; i < ncur && !known; i++)
			known = cur[i].lun == t->info.lun;
		if (!known || replaced[j])
			r = change_add(&v, &n, &cap, TARGET_LUN_ADDED, -1, j,
				       replaced[j] ? "another disk at the address of a removed LUN"
						   : "newly reported by REPORT LUNS");
	}
	free(replaced);
	if (r < 0) {
		free(v);
		return r;
	}
	*out = v;
	return n;
}

int target_rescan(const struct config *cfg, struct fs_target *t, const struct lun_info *cur,
		  int ncur, const bool *trusted, struct target_lun **now, int *nnow,
		  struct target_change **changes, char *err, size_t errlen)
{
	*now = NULL;
	*nnow = 0;
	*changes = NULL;
	uint64_t *known = calloc((size_t)ncur + 1, sizeof(*known));
	int nknown = 0;
	if (!known)
		return -ENOMEM;
	for (int i = 0; trusted && i < ncur; i++)
		if (trusted[i])
			known[nknown++] = cur[i].lun;
	int r = list_luns(cfg, t, cfg->url.lun, false, known, nknown, now, nnow, err, errlen);
	free(known);
	if (r < 0)
		return r;
	r = target_diff_luns(cur, ncur, *now, *nnow, changes);
	if (r < 0) {
		free(*now);
		*now = NULL;
		*nnow = 0;
		snprintf(err, errlen, "out of memory");
	}
	return r;
}

int target_find_new(const struct config *cfg, const struct target_list *have,
		    struct target_list *added, char *err, size_t errlen)
{
	struct target_list all = { 0 };
	added->v = NULL;
	added->n = 0;
	int r = session_discover(cfg, cfg->url.portal, add_discovered, &all, err, errlen);
	if (r < 0) {
		free(all.v);
		return r;
	}
	for (int i = 0; i < all.n; i++) {
		bool known = false;
		for (int j = 0; j < have->n && !known; j++)
			known = strcmp(have->v[j].name, all.v[i].name) == 0;
		if (!known)
			all.v[added->n++] = all.v[i];
	}
	if (added->n)
		added->v = all.v;
	else
		free(all.v);
	return added->n;
}
