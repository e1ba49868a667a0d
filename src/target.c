/*
 * target.c - the targets a URL names and the LUNs behind each: SendTargets for a
 * portal-only URL, sessions to each target, REPORT LUNS and the per-LUN probe
 * (discovery.c). Shared by the mount and by `iscsifs ls`.
 */
#include <errno.h>
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
	for (int i = 0; i < n && k + LUNADDR_STRLEN + 2 < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", LUNSTR(luns[i]));
}

/* The LUNs of a target that become files (or, for ls, all of them). */
int target_probe_luns(const struct config *cfg, struct fs_target *t, bool all,
		      struct lun_info **out, int *nout, char *err, size_t errlen)
{
	uint64_t *luns = NULL;
	int n = discovery_report_luns(t->sess[0], t->name, &luns, err, errlen);
	if (n < 0)
		return n;
	struct lun_info *infos = calloc((size_t)n + 1, sizeof(*infos));
	int k = 0, r = 0;
	if (!infos) {
		free(luns);
		return -ENOMEM;
	}
	if (cfg->url.lun >= 0 && !all) {
		/* the URL's LUN is a number: the LUN the target reports under that number */
		uint64_t addr = UINT64_MAX;
		for (int i = 0; i < n; i++)
			if (lunaddr_number(luns[i]) == cfg->url.lun)
				addr = luns[i];
		if (addr == UINT64_MAX) {
			char list[256];
			list_luns_text(luns, n, list, sizeof(list));
			snprintf(err, errlen, "target %s has no LUN %d (its LUNs: %s)", t->name,
				 cfg->url.lun, list);
			r = -ENOENT;
			goto out;
		}
		r = discovery_probe_lun(t->sess[0], t->name, addr, &infos[0], err, errlen);
		if (r < 0)
			goto out;
		if (infos[0].devtype != 0 || infos[0].qualifier != 0) {
			snprintf(err, errlen, "LUN %d of %s is a %s (type 0x%02x), not a disk; only "
				 "disk LUNs can be mounted", cfg->url.lun, t->name,
				 discovery_devtype_name(infos[0].devtype), infos[0].devtype);
			r = -ENODEV;
			goto out;
		}
		k = 1;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		r = discovery_probe_lun(t->sess[0], t->name, luns[i], &infos[k], err, errlen);
		if (r < 0)
			goto out;
		if (all || (infos[k].devtype == 0 && infos[k].qualifier == 0))
			k++;
	}
out:
	free(luns);
	if (r < 0) {
		free(infos);
		return r;
	}
	*out = infos;
	*nout = k;
	return 0;
}
