/*
 * lsout.h - the output of `iscsifs ls` (ls.c decides what to list, this decides how it
 * looks): the text table, or with --json one JSON document on stdout.
 *
 * JSON schema (schema 1, documented in iscsifs(1), JSON OUTPUT; the LUN keys target,
 * lun, lun_address, size and block_size mean what they mean in stats.json):
 *   { "schema": 1, "version", "url",
 *     "targets": [ { "target", "portal", "error": null | "one line",
 *                    "luns": [ { "target", "lun", "label", "lun_address", "probed",
 *                                "type", "devtype", "disk", "mountable",
 *                                "not_mounted": null | "why", "size", "block_size",
 *                                "write_protected", "vendor", "product", "revision",
 *                                "serial", "wwn",
 *                                "content": null | { "type", "label", "uuid",
 *                                  "pttype", "partitions": [ {number, start, size,
 *                                  type, label, uuid} ] },
 *                                "error": null | "one line" } ] } ] }
 * Errors also go to stderr as one line each, as in text mode.
 *
 * Also: lsout_waiting() names what `ls` is waiting for, and a watcher says so on stderr
 * when a step takes longer than LSOUT_WAIT_NOTICE_MS (a slow or silent portal).
 */
#ifndef ISCSIFS_LSOUT_H
#define ISCSIFS_LSOUT_H

#include "iscsifs/config.h"
#include "iscsifs/fs.h"
#include "iscsifs/lun.h"
#include "iscsifs/probe.h"
#include "iscsifs/target.h"

#define LSOUT_WAIT_NOTICE_MS 2000

struct lsout;

/* Start the output (and the waiting watcher). NULL when out of memory. */
struct lsout *lsout_new(const struct config *cfg);

/* A target; the LUNs and errors that follow belong to it. */
void lsout_target(struct lsout *o, const struct fs_target *t);

/* The current target (or, before any, the command) failed: `msg` is one line. */
void lsout_error(struct lsout *o, const char *msg);

/* One LUN of the current target, as target_list_luns() found it; `pr` is its content
 * (NULL when it was not probed or could not be read). `error` (NULL: none) says why
 * probing the LUN or reading its content failed; it also goes to stderr. */
void lsout_lun(struct lsout *o, const struct target_lun *tl, const struct probe_result *pr,
	       const char *error);

/* What ls waits for now ("login to IQN at PORTAL"), printf-style; NULL: nothing. */
void lsout_waiting(struct lsout *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print the JSON document (--json), stop the watcher, free. Returns 0 or -EIO when
 * stdout could not be written. */
int lsout_finish(struct lsout *o);

#endif
