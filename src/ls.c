/*
 * ls.c - `iscsifs ls URL`: every target, every LUN (disks and the rest), size, block
 * size, write protection, identity and content, without mounting anything. What is
 * printed, and how (table or --json), is lsout.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/commands.h"
#include "iscsifs/discovery.h"
#include "iscsifs/exitcode.h"
#include "iscsifs/log.h"
#include "iscsifs/lsout.h"
#include "iscsifs/lun.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/probe.h"
#include "iscsifs/target.h"
#include "iscsifs/util.h"

int ls_main(struct config *cfg)
{
	char err[CONFIG_ERRLEN] = "";
	struct target_list tl = { 0 };
	int status = EXITCODE_OK, r;
	struct lsout *out;

	if (config_load_secrets(cfg, err, sizeof(err)) < 0 ||
	    config_resolve_initiator(cfg, NULL, err, sizeof(err)) < 0) {
		config_wipe_secrets(cfg);
		fprintf(stderr, "iscsifs: %s\n", err);
		return EXITCODE_USAGE;
	}
	out = lsout_new(cfg);
	if (!out) {
		config_wipe_secrets(cfg);
		fprintf(stderr, "iscsifs: out of memory\n");
		return EXITCODE_RUNTIME;
	}
	lsout_waiting(out, cfg->url.target[0] ? "%s" : "the target list (SendTargets) of %s",
		      cfg->url.portal);
	r = target_find(cfg, &tl, err, sizeof(err));
	if (r < 0) {
		lsout_error(out, err);
		lsout_finish(out);
		config_wipe_secrets(cfg);
		free(tl.v);
		return exitcode_from_errno(r);
	}
	for (int t = 0; t < tl.n; t++) {
		struct fs_target *tg = &tl.v[t];
		lsout_target(out, tg);
		struct lun_info *infos = NULL;
		int n = 0;
		lsout_waiting(out, "login to %s at %s", tg->name, tg->portal);
		r = target_open_sessions(cfg, tg, 1, err, sizeof(err));
		if (r == 0) {
			lsout_waiting(out, "the LUNs of %s (REPORT LUNS, INQUIRY)", tg->name);
			r = target_probe_luns(cfg, tg, true, &infos, &n, err, sizeof(err));
		}
		if (r < 0) {
			lsout_error(out, err);
			status = exitcode_from_errno(r);
			continue;
		}
		if (cfg->url.lun >= 0) { /* the URL names one LUN: list just that one */
			int k = 0;
			for (int i = 0; i < n; i++)
				if (lunaddr_number(infos[i].lun) == cfg->url.lun)
					infos[k++] = infos[i];
			if (k == 0) {
				snprintf(err, sizeof(err), "target %s has no LUN %d", tg->name,
					 cfg->url.lun);
				lsout_error(out, err);
				status = EXITCODE_NOTFOUND;
			}
			n = k;
		}
		for (int i = 0; i < n; i++) {
			struct lun_info *li = &infos[i];
			struct probe_result *pr = NULL;
			bool disk = li->devtype == 0 && li->qualifier == 0;
			if (disk) {
				lsout_waiting(out, "the content of LUN %s of %s", LUNSTR(li->lun),
					      tg->name);
				struct blkdev *d = lun_create(tg->sess, 1, tg->name, li, true);
				pr = malloc(sizeof(*pr));
				if (!d || !pr || probe_blkdev(d, true, pr) != 0) {
					free(pr);
					pr = NULL;
				}
				if (d)
					d->ops->destroy(d);
			}
			lsout_lun(out, li, pr, NULL);
			free(pr);
		}
		free(infos);
	}
	lsout_waiting(out, NULL);
	if (status == EXITCODE_OK)
		target_log_port_notices(cfg, &tl);
	target_close_sessions(&tl);
	free(tl.v);
	config_wipe_secrets(cfg);
	if (lsout_finish(out) < 0 && status == EXITCODE_OK)
		status = EXITCODE_RUNTIME;
	return status;
}
