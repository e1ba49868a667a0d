/*
 * lunlock.h - one writer per LUN per host: every mount takes a lock per LUN it serves,
 * exclusive for a writable mount, shared for a read-only one, before anything is
 * mounted; a second writable mount of the same LUN (or a writable and a read-only one)
 * is refused with a message naming the other mount. The lock is held until the daemon
 * has written back and exits; the kernel drops it when a process dies, so a killed
 * daemon never blocks the next mount.
 *
 * A LUN is identified by its VPD 0x83 designator when it is globally unique (NAA 2, 5,
 * 6, EUI-64, SCSI name string): the same LUN reached through another portal or target
 * is then the same lock. A designator that is only unique within its target (NAA 3
 * "locally assigned", as tgtd's; T10 vendor ID) counts together with the target name;
 * without a designator, the target name and the LUN address are the identity.
 *
 * Lock files live in $XDG_RUNTIME_DIR/iscsifs, else /run/user/UID/iscsifs, else (root)
 * /run/iscsifs, else /tmp/iscsifs-UID: a directory of mode 0700 owned by the user
 * (any candidate that is not is skipped). So mounts of different users do not see each
 * other's locks. If no directory can be had, the mount goes on without locks and says
 * so once.
 */
#ifndef ISCSIFS_LUNLOCK_H
#define ISCSIFS_LUNLOCK_H

#include <stdbool.h>
#include <stddef.h>

#include "iscsifs/lun.h"

/* Lock the LUN `info` of target `target` for the mount of `url` on `mountpoint`:
 * exclusive when `writable`, else shared. Returns 0 (also when locking is not possible
 * here: logged once), or -EBUSY with one line in `err` naming the process that holds
 * a conflicting lock, its mountpoint and what to do. Call from one thread. */
int lunlock_take(const char *target, const struct lun_info *info, bool writable, const char *url,
		 const char *mountpoint, char *err, size_t errlen);

/* Release every lock this process took. */
void lunlock_release_all(void);

#endif
