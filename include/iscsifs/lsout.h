/*
 * lsout.h - the output of `iscsifs ls` (ls.c decides what to list, this decides how it
 * looks): the text table, or with --json one JSON document on stdout.
 *
 * JSON schema (schema 1, documented in iscsifs(1), JSON OUTPUT; the LUN keys target,
 * lun, lun_address, size and block_size mean what they mean in stats.json):
 *   { "schema": 1, "version", "url",
 *     "targets": [ { "target", "portal", "error": null | "one line",
 *                    "luns": [ { "target", "lun", "lun_address", "type", "devtype",
 *                                "disk", "size", "block_size", "write_protected",
 *                                "vendor", "product", "revision", "serial", "wwn",
 *                                "content": null | { "type", "label", "uuid",
 *                                  "pttype", "partitions": [ {number, start, size,
 *                                  type, label, uuid} ] },
 *                                "content_error": null | "one line" } ] } ] }
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

#define LSOUT_WAIT_NOTICE_MS 2000

struct lsout;

/* Start the output (and the waiting watcher). NULL when out of memory. */
struct lsout *lsout_new(const struct config *cfg);

/* A target; the LUNs and errors that follow belong to it. */
void lsout_target(struct lsout *o, const struct fs_target *t);

/* The current target (or, before any, the command) failed: `msg` is one line. */
void lsout_error(struct lsout *o, const char *msg);

/* One LUN of the current target; `pr` is its probe (NULL when not a disk or the probe
 * failed: then `content_error` says why, or is NULL). */
void lsout_lun(struct lsout *o, const struct lun_info *li, const struct probe_result *pr,
	       const char *content_error);

/* What ls waits for now ("login to IQN at PORTAL"), printf-style; NULL: nothing. */
void lsout_waiting(struct lsout *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print the JSON document (--json), stop the watcher, free. Returns 0 or -EIO when
 * stdout could not be written. */
int lsout_finish(struct lsout *o);

#endif
