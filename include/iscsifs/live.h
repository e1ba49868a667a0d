/*
 * live.h - the live namespace's rescans (issue 11): what a rescan does to the mounted
 * model (live.c), and the stack assembly it shares with the mount (mount.c).
 *
 * A rescan runs on the rescan thread (rescan.h) only. What it does depends on why:
 *  - RESCAN_FULL reasons (the rescan command, SIGHUP, unit attentions, re-logins,
 *    polling): SendTargets again for a portal mount (new targets get a directory and
 *    sessions); for each target whose sessions are logged in, READ CAPACITY and (but
 *    after a re-login, which checked already) the identity of each LUN file, REPORT
 *    LUNS, a probe of each new LUN; then LUNs no longer reported, no longer disks or
 *    now another disk leave the namespace (removal plus addition for another disk) and
 *    new disks become files;
 *  - always: every file whose LUN changed size follows it (the cache first: dirty data
 *    past a new end is lost, logged, and reported at the next fsync or close of a file
 *    that had it), LUNs whose partition table was written are re-probed, removed LUNs
 *    nothing refers to any more are freed.
 * Commands of a rescan have a short budget (login_timeout, at most 5 s each); a target
 * that does not answer changes nothing and is reported.
 */
#ifndef ISCSIFS_LIVE_H
#define ISCSIFS_LIVE_H

#include "iscsifs/fs.h"
#include "iscsifs/lun.h"
#include "iscsifs/session.h"

/* struct rescan_ops.run; opaque is the struct fs_model. */
int live_rescan(void *opaque, unsigned reasons, char *report, size_t len);

/* lun_event_fn of every LUN of the mount (opaque: the model): asks for a rescan. */
void live_lun_event(void *opaque, struct blkdev *dev, const struct lun_event *ev);

/* session relogin handler of every session of the mount (opaque: the model). */
void live_relogin(void *opaque, struct session *s);

/*
 * mount.c's stack assembly for one LUN of target t (sessions open): the one-writer
 * lock, the identity the sessions check after a re-login, lun.c, the cache in the
 * mount's pool, the event handler, the probe. NULL with errno and a line in err (the
 * LUN is then not a file).
 */
struct fs_lun *mount_lun_build(struct fs_model *m, struct fs_target *t, const struct lun_info *info,
			       char *err, size_t errlen);

/* Add l to the model's list of LUN files (the list holds its first reference).
 * 0 or -ENOMEM. */
int mount_model_add_lun(struct fs_model *m, struct fs_lun *l);

/* Free a LUN nothing refers to any more (a removed LUN: its cache holds nothing). */
void mount_lun_free(struct fs_model *m, struct fs_lun *l);

/* A target of the mount: copy it into the model, log in its sessions. The model's
 * copy, or NULL with errno (the login's: -ECONNREFUSED, -EACCES, ...) and err. */
struct fs_target *mount_target_add(struct fs_model *m, const struct fs_target *t, char *err,
				   size_t errlen);

#endif
