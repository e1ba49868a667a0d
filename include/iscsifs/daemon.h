/*
 * daemon.h - the daemon's life around the FUSE loop, in one file: going to the
 * background, telling the parent (and systemd) that the mount is ready, reporting
 * the sessions' state while mounted, and the final write-back's progress.
 *
 *   daemon_fork        before any thread: fork, the parent waits for the verdict
 *   daemon_ready       the mount is usable: the parent exits 0, logging leaves the
 *                      terminal, systemd gets READY=1 and STATUS= (kept current)
 *   daemon_stopping    unmounted: systemd gets STOPPING=1; the dirty data still to
 *                      write is logged every few seconds with its rate
 *   daemon_stopped     the write-back is over (before the caches are destroyed)
 */
#ifndef ISCSIFS_DAEMON_H
#define ISCSIFS_DAEMON_H

#include "iscsifs/config.h"
#include "iscsifs/fs.h"

/* Fork; returns in the child only, with the descriptor to write the ready byte to.
 * The parent wipes its copy of the secrets and never returns. */
int daemon_fork(struct config *cfg);

/* The mount is live. When `ready_fd` >= 0 (daemonized): the log leaves stderr
 * (log_detach), one byte goes to ready_fd (the parent exits 0) and stdio becomes
 * /dev/null. Then READY=1 to systemd, and a thread keeps STATUS= current (session
 * states, every second when they change). `m` must stay valid until daemon_stopped. */
void daemon_ready(const struct fs_model *m, int ready_fd);

/* The FUSE loop is over and the write-back begins: STOPPING=1, and until
 * daemon_stopped() a line every DAEMON_PROGRESS_MS with the dirty MiB left and the
 * rate, also as STATUS=. A no-op unless daemon_ready ran. */
void daemon_stopping(void);

/* The write-back is over (`lost` LUNs could not write everything): a summary line,
 * and the status thread is joined; the caches may be destroyed after this. */
void daemon_stopped(int lost);

#define DAEMON_PROGRESS_MS 3000

#endif
