/*
 * main.c - the command line: parse it (config.c), then mount (default), ls or stat
 * (commands.h). Only main exits.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>

#include "iscsifs-config.h"
#include "iscsifs/commands.h"
#include "iscsifs/config.h"
#include "iscsifs/exitcode.h"
#include "iscsifs/log.h"

static struct config cfg; /* read-only once sessions exist */

int main(int argc, char **argv)
{
	char err[CONFIG_ERRLEN] = "";

	/* Keep freed cache-sized buffers from piling up in per-thread arenas: the byte
	 * budget must bound the daemon's RSS. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_ARENA_MAX, 2);
	signal(SIGPIPE, SIG_IGN);

	config_init(&cfg);
	if (config_parse_args(&cfg, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "iscsifs: %s\n", err);
		return EXITCODE_USAGE;
	}
	log_init(cfg.debug);
	if (log_configure(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "iscsifs: %s\n", err);
		return EXITCODE_USAGE;
	}
	switch (cfg.command) {
	case CONFIG_CMD_HELP:
		config_print_usage(stdout);
		return EXITCODE_OK;
	case CONFIG_CMD_VERSION:
		printf("iscsifs %s (libiscsi data digest: %s)\n", ISCSIFS_VERSION,
		       HAVE_ISCSI_SET_DATA_DIGEST ? "yes" : "no");
		return 0;
	case CONFIG_CMD_RESCAN:
		return rescan_main(&cfg);
	case CONFIG_CMD_STAT:
		return stat_main(&cfg);
	case CONFIG_CMD_LS:
		return ls_main(&cfg);
	case CONFIG_CMD_MOUNT:
		return mount_main(&cfg);
	}
	return EXITCODE_RUNTIME;
}
