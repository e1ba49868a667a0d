/*
 * ls.c - `iscsifs ls URL`: every target, every LUN (disks and the rest), size, block
 * size, write protection, identity and content, without mounting anything. What is
 * printed, and how (table or --json), is lsout.c's; this file decides what to list
 * and the exit status.
 */
#include <errno.h>
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

/* What is on a LUN that becomes a file, into *pr (malloc'ed); 1 (and why, in `why`)
 * when it cannot be read: an unreadable LUN is not "unknown content". */
static int content_of(struct fs_target *tg, const struct target_lun *tl, struct probe_result **pr,
		      char *why, size_t whylen)
{
	int r = -ENOMEM;
	struct blkdev *d = lun_create(tg->sess, 1, tg->name, &tl->info, true);
	*pr = malloc(sizeof(**pr));
	if (!d)
		r = -errno;
	if (d && *pr)
		r = probe_blkdev(d, true, *pr);
	if (r < 0) {
		free(*pr);
		*pr = NULL;
		snprintf(why, whylen, "cannot read its content: %s", strerror(-r));
	}
	if (d)
		d->ops->destroy(d);
	return r < 0;
}

/* One LUN of the listing; 1 when probing it failed (the exit status). */
static int list_lun(struct lsout *out, struct fs_target *tg, const struct target_lun *tl)
{
	struct probe_result *pr = NULL;
	char why[CONFIG_ERRLEN + 64] = "";
	int status = 0;

	if (tl->err) {
		/* probing failed: listed, and the failure is the exit status */
		snprintf(why, sizeof(why), "%s", tl->reason);
		status = 1;
	} else if (tl->mountable) {
		lsout_waiting(out, "the content of LUN %s of %s", tl->label, tg->name);
		status = content_of(tg, tl, &pr, why, sizeof(why));
	}
	lsout_lun(out, tl, pr, status ? why : NULL);
	free(pr);
	return status;
}

int ls_main(struct config *cfg)
{
	char err[CONFIG_ERRLEN] = "";
	struct target_list tl = { 0 };
	int status = EXITCODE_OK, r;
	bool probe_failed = false;
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
		struct target_lun *luns = NULL;
		int n = 0;

		lsout_target(out, tg);
		lsout_waiting(out, "login to %s at %s", tg->name, tg->portal);
		r = target_open_sessions(cfg, tg, 1, err, sizeof(err));
		if (r == 0) {
			lsout_waiting(out, "the LUNs of %s (REPORT LUNS, INQUIRY)", tg->name);
			r = target_list_luns(cfg, tg, cfg->url.lun, true, &luns, &n, err,
					     sizeof(err));
		}
		if (r < 0) {
			lsout_error(out, err);
			status = exitcode_from_errno(r);
			continue;
		}
		if (cfg->url.lun >= 0 && n == 0) { /* the URL names one LUN: list just that one */
			snprintf(err, sizeof(err), "target %s has no LUN %d", tg->name,
				 cfg->url.lun);
			lsout_error(out, err);
			status = EXITCODE_NOTFOUND;
		}
		for (int i = 0; i < n; i++)
			probe_failed |= list_lun(out, tg, &luns[i]) != 0;
		free(luns);
	}
	lsout_waiting(out, NULL);
	if (status == EXITCODE_OK && probe_failed)
		status = EXITCODE_RUNTIME;
	if (status == EXITCODE_OK)
		target_log_port_notices(cfg, &tl);
	target_close_sessions(&tl);
	free(tl.v);
	config_wipe_secrets(cfg);
	if (lsout_finish(out) < 0 && status == EXITCODE_OK)
		status = EXITCODE_RUNTIME;
	return status;
}
