/*
 * ls.c - `iscsifs ls URL`: every target, every LUN (disks and the rest), size, block
 * size, write protection, identity and content, without mounting anything.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/commands.h"
#include "iscsifs/discovery.h"
#include "iscsifs/log.h"
#include "iscsifs/lun.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/probe.h"
#include "iscsifs/target.h"
#include "iscsifs/util.h"

static void human_size(uint64_t b, char *buf, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;
	double v = (double)b;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* What is on a LUN that becomes a file, into `content`; 1 (and a line on stderr) when
 * it cannot be read: an unreadable LUN is not "unknown content". */
static int content_of(struct fs_target *tg, const struct target_lun *tl, char *content,
		      size_t len)
{
	int r = -ENOMEM;
	struct blkdev *d = lun_create(tg->sess, 1, tg->name, &tl->info, true);
	struct probe_result *pr = malloc(sizeof(*pr));
	if (!d)
		r = -errno;
	if (d && pr && (r = probe_blkdev(d, true, pr)) == 0) {
		if (pr->pttype[0])
			snprintf(content, len, "%s, %d partition%s", pr->pttype, pr->nparts,
				 pr->nparts == 1 ? "" : "s");
		else if (pr->content.type[0])
			snprintf(content, len, "%s%s%s", pr->content.type,
				 pr->content.label[0] ? " " : "", pr->content.label);
		else
			snprintf(content, len, "unknown");
	} else {
		fflush(stdout);
		fprintf(stderr, "iscsifs: %s LUN %s: cannot read its content: %s\n", tg->name,
			tl->label, strerror(-r));
		snprintf(content, len, "unreadable (%s)", strerror(-r));
	}
	free(pr);
	if (d)
		d->ops->destroy(d);
	return r < 0;
}

/* One line of the listing; 1 when probing the LUN failed (the exit status). */
static int list_lun(struct fs_target *tg, const struct target_lun *tl)
{
	const struct lun_info *li = &tl->info;
	char size[32] = "-", content[CONFIG_ERRLEN + 32] = "-";
	bool disk = tl->probed && li->devtype == 0 && li->qualifier == 0;
	int status = 0;

	if (disk)
		human_size(li->nblocks * li->block_size, size, sizeof(size));
	if (tl->err) {
		/* probing failed: listed, and the failure is the exit status */
		fflush(stdout);
		fprintf(stderr, "iscsifs: %s LUN %s: %s\n", tg->name, tl->label, tl->reason);
		snprintf(content, sizeof(content), "not mounted: probing failed");
		status = 1;
	} else if (!tl->mountable && tl->warn) {
		snprintf(content, sizeof(content), "not mounted: %s", tl->reason);
	} else if (tl->mountable) {
		status = content_of(tg, tl, content, sizeof(content));
		if (tl->reason[0]) /* the same identifier as another LUN */
			snprintf(content + strlen(content), sizeof(content) - strlen(content),
				 "; not mountable: %s", tl->reason);
	}
	printf("  %-4s %-10s %10s %6u %-3s %-8s %-16s %-24s %s\n", tl->label,
	       tl->probed ? discovery_devtype_name(li->devtype) : "-", size,
	       disk ? li->block_size : 0, disk ? (li->write_protected ? "yes" : "no") : "-",
	       li->vendor[0] ? li->vendor : "-", li->product[0] ? li->product : "-",
	       li->wwn[0] ? li->wwn : (li->serial[0] ? li->serial : "-"), content);
	return status;
}

int ls_main(struct config *cfg)
{
	char err[CONFIG_ERRLEN] = "";
	struct target_list tl = { 0 };
	int status = 0;

	if (config_load_secrets(cfg, err, sizeof(err)) < 0 ||
	    config_resolve_initiator(cfg, NULL, err, sizeof(err)) < 0 ||
	    target_find(cfg, &tl, err, sizeof(err)) < 0) {
		config_wipe_secrets(cfg);
		fprintf(stderr, "iscsifs: %s\n", err);
		free(tl.v);
		return 1;
	}
	for (int t = 0; t < tl.n; t++) {
		struct fs_target *tg = &tl.v[t];
		printf("%s  %s\n", tg->name, tg->portal);
		struct target_lun *luns = NULL;
		int n = 0;
		if (target_open_sessions(cfg, tg, 1, err, sizeof(err)) < 0 ||
		    target_list_luns(cfg, tg, cfg->url.lun, true, &luns, &n, err, sizeof(err)) < 0) {
			fflush(stdout);
			fprintf(stderr, "iscsifs: %s\n", err);
			status = 1;
			continue;
		}
		if (cfg->url.lun >= 0 && n == 0) { /* the URL names one LUN: list just that one */
			fflush(stdout);
			fprintf(stderr, "iscsifs: target %s has no LUN %d\n", tg->name, cfg->url.lun);
			status = 1;
		}
		printf("  %-4s %-10s %10s %6s %-3s %-8s %-16s %-24s %s\n", "LUN", "TYPE", "SIZE",
		       "BLOCK", "RO", "VENDOR", "PRODUCT", "WWN", "CONTENT");
		for (int i = 0; i < n; i++)
			status |= list_lun(tg, &luns[i]);
		fflush(stdout);
		free(luns);
	}
	if (status == 0)
		target_log_port_notices(cfg, &tl);
	target_close_sessions(&tl);
	free(tl.v);
	config_wipe_secrets(cfg);
	return status;
}
