/*
 * commands.h - the subcommands main() dispatches to. Each returns the process exit
 * status; errors have been printed (one line on stderr) when it is non-zero.
 */
#ifndef ISCSIFS_COMMANDS_H
#define ISCSIFS_COMMANDS_H

#include "iscsifs/config.h"

int mount_main(struct config *cfg);        /* iscsifs URL MOUNTPOINT (mount.c) */
int ls_main(struct config *cfg);           /* iscsifs ls URL (ls.c) */
int stat_main(const struct config *cfg);   /* iscsifs stat MOUNTPOINT (statcmd.c) */
int rescan_main(const struct config *cfg); /* iscsifs rescan MOUNTPOINT (rescancmd.c) */

#endif
