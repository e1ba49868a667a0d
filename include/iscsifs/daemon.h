/*
 * daemon.h - daemon mode: fork before any thread exists; the parent exits with the
 * child's verdict once the child has mounted (a byte on the returned descriptor, see
 * fs_run's ready_fd) or failed.
 */
#ifndef ISCSIFS_DAEMON_H
#define ISCSIFS_DAEMON_H

#include "iscsifs/config.h"

/* Fork; returns in the child only, with the descriptor to write the ready byte to.
 * The parent wipes its copy of the secrets and never returns. */
int daemon_fork(struct config *cfg);

#endif
