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

/*
 * A LUN as REPORT LUNS gave it, and whether it becomes a file.
 *
 * A LUN becomes a file named lunN only when all of these hold; otherwise `ls` lists it
 * with the reason and the mount leaves it out (with a warning, except for LUNs that
 * are simply not disks, like the controller at LUN 0):
 *  - the transport can send its 8-byte address exactly (session_can_address(); libiscsi
 *    1.19 writes only bytes 0..1, so extended and multi-level addresses cannot be
 *    reached - sending them would reach another LUN);
 *  - it has a number (lunaddr_number(): single level, peripheral bus 0 or flat space).
 *    A LUN with an address but no number (logical unit addressing, a bus other than
 *    0) is left out: files and URLs name LUNs by number, and inventing a name for
 *    it would be a name no other tool uses;
 *  - no other entry of the list has the same number in another form (peripheral 1
 *    and flat space 1 are both "1": which one is LUN 1 is ambiguous, so neither is
 *    lunN and the URL .../1 is refused);
 *  - the probe succeeded (INQUIRY, READ CAPACITY: a LUN whose answers are errors or
 *    impossible, e.g. a capacity no file can have, is left out with the message);
 *  - it is a connected disk (peripheral qualifier 0, device type 0).
 * Two LUNs that become files and carry the same VPD 0x83 designator are one disk
 * reported twice: the mount is refused (target_probe_luns / target_check_identities).
 */
struct target_lun {
	struct lun_info info;         /* info.lun always; the rest once probed */
	char label[LUNADDR_STRLEN];   /* "257", or the address in hex when the number
	                                 does not name it alone (for ls and logs) */
	bool probed;                  /* INQUIRY and the rest are in info */
	bool mountable;               /* becomes a file */
	bool warn;                    /* left out for a reason worth a warning */
	int err;                      /* -errno when probing it failed (reason says how) */
	char reason[CONFIG_ERRLEN];   /* why it is not a file, without the LUN's name
	                                 ("has no LUN number ..."); "" when mountable */
};

/*
 * Every LUN of t (*out malloc'ed, *nout entries, in REPORT LUNS order, duplicates
 * dropped), each with whether it becomes a file and why not. `number` >= 0: only the
 * entries with that LUN number. `probe_all`: probe LUNs that will not become files
 * too, where they can be addressed (for `ls`). Returns 0, or -errno when the target
 * failed as a whole: REPORT LUNS failed, or a command got no answer (-ETIMEDOUT).
 */
int target_list_luns(const struct config *cfg, struct fs_target *t, int number, bool probe_all,
		     struct target_lun **out, int *nout, char *err, size_t errlen);

/*
 * The LUNs of t that become files, as lun_info (*out malloc'ed, *nout entries): the
 * disk LUNs, or only the URL's LUN when it names one (the LUN whose number is N; an
 * error saying why when there is none, or it cannot be a file). Left-out LUNs are
 * logged once each. Two of them with the same VPD 0x83 designator fail it (-EEXIST).
 * `all` is accepted for compatibility and ignored (ls uses target_list_luns).
 */
int target_probe_luns(const struct config *cfg, struct fs_target *t, bool all,
		      struct lun_info **out, int *nout, char *err, size_t errlen);

/* Whether two LUN files of a mount (of any of its targets) carry the same VPD 0x83
 * designator: 0, or -EEXIST with a message naming both. */
int target_check_identities(const struct fs_lun *luns, int n, char *err, size_t errlen);

/*
 * ---------- how a target's LUN set changed (a rescan) ----------
 *
 * target_diff_luns compares the LUN files a target has now (`cur`, as lun_create got
 * them) with a new target_list_luns() answer (`now`) and says what to do with each:
 *  - TARGET_LUN_REMOVED: a file whose LUN is no longer reported, is no longer a
 *    connected disk, or whose probe says another disk answers at its address now
 *    (target_same_disk false: VPD 0x83 or 0x80 page or block size differs). A LUN
 *    whose identity changed is a removal plus an addition, never the old file with
 *    another disk behind it.
 *  - TARGET_LUN_ADDED: a LUN of `now` that becomes a file (mountable, not the same
 *    designator as another LUN of the list) and is not one of `cur`.
 *  - TARGET_LUN_RESIZED: the same disk with another capacity.
 * A LUN of `cur` that is still reported but could not be probed this time (the
 * probe failed, or it was not probed) keeps its file: nothing is known against it;
 * except that ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (-ENODEV) removes it.
 * Entries are matched by exact address (lunaddr.h), never by number alone. Pure: no
 * I/O, no logging; `why` says it in words for the caller's log line.
 */
enum target_change_kind { TARGET_LUN_ADDED, TARGET_LUN_REMOVED, TARGET_LUN_RESIZED };

struct target_change {
	enum target_change_kind kind;
	int cur;                      /* index into cur: REMOVED, RESIZED; else -1 */
	int now;                      /* index into now: ADDED, RESIZED; REMOVED when the
	                                 address is still reported; else -1 */
	char why[160];                /* "no longer reported by REPORT LUNS", ... */
};

/* The changes (*out malloc'ed, NULL when none): removals and resizes in `cur` order,
 * then additions in `now` order. Returns their count, or -ENOMEM. */
int target_diff_luns(const struct lun_info *cur, int ncur, const struct target_lun *now,
		     int nnow, struct target_change **out);

/* Whether `now` is the disk `was` was: same address, block size, VPD 0x83 and 0x80
 * pages (raw), and when neither page exists, the same vendor and product. `why` (may
 * be NULL) says what differs. */
bool target_same_disk(const struct lun_info *was, const struct lun_info *now, char *why,
		      size_t whylen);

/*
 * Rescan one target: REPORT LUNS and a probe of each LUN (target_list_luns, only the
 * URL's LUN number when it names one), then target_diff_luns against `cur`. A LUN of
 * `cur` with trusted[i] set (trusted may be NULL: none) is not probed again: its file
 * has checked its identity and capacity through its own blkdev (lun_check_*), so it
 * stays unless REPORT LUNS no longer lists it; this keeps a rescan to one command per
 * LUN file plus a probe of each new LUN. *now (malloc'ed, *nnow entries) and *changes
 * (malloc'ed or NULL) belong to the caller. Returns the number of changes, or -errno
 * when the target could not be listed (then nothing is known and nothing changes;
 * err says why).
 */
int target_rescan(const struct config *cfg, struct fs_target *t, const struct lun_info *cur,
		  int ncur, const bool *trusted, struct target_lun **now, int *nnow,
		  struct target_change **changes, char *err, size_t errlen);

/*
 * A portal mount: SendTargets again; the targets it lists that are not in `have`
 * (by name) go to *added (tl->v malloc'ed, first portal of each, no sessions yet).
 * Returns their count, or -errno with err set.
 */
int target_find_new(const struct config *cfg, const struct target_list *have,
		    struct target_list *added, char *err, size_t errlen);

/* One notice per port other than 3260, saying where it came from (URL, SendTargets). */
void target_log_port_notices(const struct config *cfg, const struct target_list *tl);

#endif
