/*
 * lsout.c - how `iscsifs ls` prints (lsout.h): a table, or one JSON document.
 *
 * NOTES ON THE THREAD MODEL
 *   lsout_new() starts one watcher thread that wakes every 250 ms and, when the step
 *   named by lsout_waiting() has lasted LSOUT_WAIT_NOTICE_MS, prints once on stderr
 *   what ls waits for. `wait_what`, `wait_since` and `wait_told` are protected by
 *   `lock`; everything else belongs to the calling thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "iscsifs-config.h"
#include "iscsifs/discovery.h"
#include "iscsifs/lsout.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/util.h"

struct lsout {
	const struct config *cfg;
	bool json;
	json_object *root, *targets, *cur; /* JSON: the document, its targets, the last */
	bool header_done;                  /* text: the LUN table header of this target */
	char cur_name[CONFIG_NAME_MAX];    /* the current target's name */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	char wait_what[512]; /* protected by lock; "" = not waiting */
	uint64_t wait_since; /* protected by lock */
	bool wait_told;      /* protected by lock */
	bool stop;           /* protected by lock */
	pthread_t watcher;
	bool watcher_started;
};

static void *watcher_main(void *arg)
{
	struct lsout *o = arg;

	pthread_mutex_lock(&o->lock);
	while (!o->stop) {
		struct timespec dl = util_deadline_ms(250);
		if (o->wait_what[0] && !o->wait_told &&
		    util_now_ms() - o->wait_since >= LSOUT_WAIT_NOTICE_MS) {
			fflush(stdout);
			fprintf(stderr,
				"iscsifs: still waiting for %s (login_timeout=%d s, "
				"cmd_timeout=%d s)\n",
				o->wait_what, o->cfg->login_timeout, o->cfg->cmd_timeout);
			o->wait_told = true;
		}
		pthread_cond_timedwait(&o->cond, &o->lock, &dl);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

struct lsout *lsout_new(const struct config *cfg)
{
	struct lsout *o = calloc(1, sizeof *o);

	if (!o)
		return NULL;
	o->cfg = cfg;
	o->json = cfg->json;
	pthread_mutex_init(&o->lock, NULL);
	util_cond_init(&o->cond);
	if (o->json) {
		o->root = json_object_new_object();
		o->targets = json_object_new_array();
		json_object_object_add(o->root, "schema", json_object_new_int(1));
		json_object_object_add(o->root, "version", json_object_new_string(ISCSIFS_VERSION));
		json_object_object_add(o->root, "url", json_object_new_string(cfg->url_text));
		json_object_object_add(o->root, "error", NULL);
		json_object_object_add(o->root, "targets", o->targets);
	}
	o->watcher_started = pthread_create(&o->watcher, NULL, watcher_main, o) == 0;
	return o;
}

void lsout_waiting(struct lsout *o, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&o->lock);
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(o->wait_what, sizeof o->wait_what, fmt, ap);
		va_end(ap);
	} else {
		o->wait_what[0] = '\0';
	}
	o->wait_since = util_now_ms();
	o->wait_told = false;
	pthread_mutex_unlock(&o->lock);
}

void lsout_target(struct lsout *o, const struct fs_target *t)
{
	o->header_done = false;
	snprintf(o->cur_name, sizeof o->cur_name, "%s", t->name);
	if (!o->json) {
		printf("%s  %s\n", t->name, t->portal);
		return;
	}
	o->cur = json_object_new_object();
	json_object_object_add(o->cur, "target", json_object_new_string(t->name));
	json_object_object_add(o->cur, "portal", json_object_new_string(t->portal));
	json_object_object_add(o->cur, "error", NULL);
	json_object_object_add(o->cur, "luns", json_object_new_array());
	json_object_array_add(o->targets, o->cur);
}

void lsout_error(struct lsout *o, const char *msg)
{
	fflush(stdout);
	fprintf(stderr, "iscsifs: %s\n", msg);
	if (o->json)
		json_object_object_add(o->cur ? o->cur : o->root, "error",
				       json_object_new_string(msg));
}

static void human_size(uint64_t b, char *buf, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;
	double v = (double)b;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static bool is_disk(const struct target_lun *tl)
{
	return tl->probed && tl->info.devtype == 0 && tl->info.qualifier == 0;
}

/* The CONTENT column: what is on it, or why it is not a file. */
static void content_text(const struct target_lun *tl, const struct probe_result *pr,
			 const char *error, char *buf, size_t len)
{
	snprintf(buf, len, "-");
	if (tl->err)
		snprintf(buf, len, "not mounted: probing failed");
	else if (!tl->mountable && tl->warn)
		snprintf(buf, len, "not mounted: %s", tl->reason);
	else if (tl->mountable && !pr)
		snprintf(buf, len, "unreadable (%s)", error ? error : "?");
	else if (pr && pr->pttype[0])
		snprintf(buf, len, "%s, %d partition%s", pr->pttype, pr->nparts,
			 pr->nparts == 1 ? "" : "s");
	else if (pr && pr->content.type[0])
		snprintf(buf, len, "%s%s%s", pr->content.type, pr->content.label[0] ? " " : "",
			 pr->content.label);
	else if (pr && pr->blank)
		snprintf(buf, len, "blank (zeros where labels live)");
	else if (pr)
		snprintf(buf, len, "unknown");
	if (tl->mountable && tl->reason[0]) /* the same identifier as another LUN */
		snprintf(buf + strlen(buf), len - strlen(buf), "; not mountable: %s", tl->reason);
}

static void lun_text(struct lsout *o, const struct target_lun *tl, const struct probe_result *pr,
		     const char *error)
{
	const struct lun_info *li = &tl->info;
	char size[32] = "-", content[CONFIG_ERRLEN + 64];
	bool disk = is_disk(tl);

	if (!o->header_done) {
		printf("  %-4s %-10s %10s %6s %-3s %-8s %-16s %-24s %s\n", "LUN", "TYPE", "SIZE",
		       "BLOCK", "RO", "VENDOR", "PRODUCT", "WWN", "CONTENT");
		o->header_done = true;
	}
	if (disk)
		human_size(li->nblocks * li->block_size, size, sizeof(size));
	content_text(tl, pr, error, content, sizeof(content));
	printf("  %-4s %-10s %10s %6u %-3s %-8s %-16s %-24s %s\n", tl->label,
	       tl->probed ? discovery_devtype_name(li->devtype) : "-", size,
	       disk ? li->block_size : 0, disk ? (li->write_protected ? "yes" : "no") : "-",
	       li->vendor[0] ? li->vendor : "-", li->product[0] ? li->product : "-",
	       li->wwn[0] ? li->wwn : (li->serial[0] ? li->serial : "-"), content);
}

static json_object *member(json_object *o, const char *key)
{
	json_object *v = NULL;
	json_object_object_get_ex(o, key, &v);
	return v;
}

static json_object *str_or_null(const char *s)
{
	return s && s[0] ? json_object_new_string(s) : NULL;
}

static json_object *content_json(const struct probe_content *c)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "type", str_or_null(c->type));
	json_object_object_add(o, "label", str_or_null(c->label));
	json_object_object_add(o, "uuid", str_or_null(c->uuid));
	return o;
}

void lsout_lun(struct lsout *o, const struct target_lun *tl, const struct probe_result *pr,
	       const char *error)
{
	const struct lun_info *li = &tl->info;
	json_object *l, *c = NULL;
	char addr[32];
	bool disk = is_disk(tl);

	if (error) {
		fflush(stdout);
		fprintf(stderr, "iscsifs: %s LUN %s: %s\n", o->cur_name, tl->label, error);
	}
	if (!o->json) {
		lun_text(o, tl, pr, error);
		return;
	}
	l = json_object_new_object();
	snprintf(addr, sizeof addr, "0x%016" PRIx64, li->lun);
	json_object_object_add(l, "target", json_object_new_string(o->cur_name));
	json_object_object_add(
		l, "lun",
		lunaddr_number(li->lun) >= 0 ? json_object_new_int(lunaddr_number(li->lun)) : NULL);
	json_object_object_add(l, "label", json_object_new_string(tl->label));
	json_object_object_add(l, "lun_address", json_object_new_string(addr));
	json_object_object_add(l, "probed", json_object_new_boolean(tl->probed));
	json_object_object_add(
		l, "type",
		tl->probed ? json_object_new_string(discovery_devtype_name(li->devtype)) : NULL);
	json_object_object_add(l, "devtype", tl->probed ? json_object_new_int(li->devtype) : NULL);
	json_object_object_add(l, "disk", json_object_new_boolean(disk));
	json_object_object_add(l, "mountable",
			       json_object_new_boolean(tl->mountable && !tl->reason[0]));
	json_object_object_add(l, "not_mounted", str_or_null(tl->reason));
	json_object_object_add(l, "size",
			       disk ? json_object_new_uint64(li->nblocks * li->block_size) : NULL);
	json_object_object_add(l, "block_size",
			       disk ? json_object_new_uint64(li->block_size) : NULL);
	json_object_object_add(l, "write_protected",
			       disk ? json_object_new_boolean(li->write_protected) : NULL);
	json_object_object_add(l, "vendor", str_or_null(li->vendor));
	json_object_object_add(l, "product", str_or_null(li->product));
	json_object_object_add(l, "revision", str_or_null(li->revision));
	json_object_object_add(l, "serial", str_or_null(li->serial));
	json_object_object_add(l, "wwn", str_or_null(li->wwn));
	if (pr) {
		json_object *parts = json_object_new_array();
		c = content_json(&pr->content);
		json_object_object_add(c, "pttype", str_or_null(pr->pttype));
		json_object_object_add(c, "blank", json_object_new_boolean(pr->blank));
		for (int i = 0; i < pr->nparts; i++) {
			json_object *p = content_json(&pr->parts[i].content);
			json_object_object_add(p, "number",
					       json_object_new_int(pr->parts[i].number));
			json_object_object_add(p, "start",
					       json_object_new_uint64(pr->parts[i].start));
			json_object_object_add(p, "size",
					       json_object_new_uint64(pr->parts[i].size));
			json_object_array_add(parts, p);
		}
		json_object_object_add(c, "partitions", parts);
	}
	json_object_object_add(l, "content", c);
	json_object_object_add(l, "error", str_or_null(error));
	json_object_array_add(member(o->cur, "luns"), l);
}

int lsout_finish(struct lsout *o)
{
	int r = 0;

	if (o->watcher_started) {
		pthread_mutex_lock(&o->lock);
		o->stop = true;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->lock);
		pthread_join(o->watcher, NULL);
	}
	if (o->json) {
		puts(json_object_to_json_string_ext(
			o->root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
					 JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o->root);
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		r = -EIO;
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
	free(o);
	return r;
}
