/*
 * target.h - the targets a URL names and the LUNs behind each (target.c), for the
 * mount and for `iscsifs ls`. Every function that can fail returns 0 or -errno and
 * writes one line for the user into `err`.
 */
#ifndef ISCSIFS_TARGET_H
#define ISCSIFS_TARGET_H

#include "iscsifs/config.h"
#include "iscsifs/fs.h"
#include "iscsifs/lun.h"

struct target_list {
	struct fs_target *v;          /* malloc'ed; free(v) after target_close_sessions */
	int n;
};

/* The URL's target, or every target of its portal (SendTargets; the first portal of
 * each target). -ENOENT when a portal lists none. */
int target_find(const struct config *cfg, struct target_list *tl, char *err, size_t errlen);

/* Log in `n` sessions to t (t->sess[], t->nsess). */
int target_open_sessions(const struct config *cfg, struct fs_target *t, int n, char *err,
			 size_t errlen);

/* Log out every session of every target in tl. */
void target_close_sessions(struct target_list *tl);

/* The LUNs of t as lun_info (*out malloc'ed, *nout entries): the disk LUNs (all LUNs
 * when `all`), or only the URL's LUN when it names one. */
int target_probe_luns(const struct config *cfg, struct fs_target *t, bool all,
		      struct lun_info **out, int *nout, char *err, size_t errlen);

/* One notice per port other than 3260, saying where it came from (URL, SendTargets). */
void target_log_port_notices(const struct config *cfg, const struct target_list *tl);

#endif
