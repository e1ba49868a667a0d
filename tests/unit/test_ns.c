/*
 * test_ns.c - proves the live namespace's node table (src/ns.c, issue 11): inode
 * numbers are never reused; a removed name is gone at once while the node lives on
 * for the kernel's references and open handles, and is freed (its object released
 * once) when the last of them goes; a name that comes back is a new node; readdir by
 * inode offsets neither repeats nor skips entries that stayed while the directory
 * changes; unlinking a directory takes its children; and many threads looking up,
 * forgetting, opening and releasing while another adds and removes never free a node
 * in use (run under ASan in the sanitizer build).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "iscsifs/ns.h"
#include "iscsifs/util.h"

#include "check.h"

static int freed[64];

static void free_obj(void *obj, void *opaque)
{
	(void)opaque;
	__atomic_add_fetch(&freed[(intptr_t)obj], 1, __ATOMIC_RELAXED);
}

struct inval_log {
	int n;
	char names[16][64];
};

static void on_inval(void *opaque, uint64_t parent, const char *name)
{
	struct inval_log *l = opaque;
	(void)parent;
	if (l->n < 16)
		snprintf(l->names[l->n++], 64, "%s", name);
}

struct listing {
	char names[32][64];
	uint64_t inos[32];
	int n, max;
};

static int collect(void *opaque, const struct ns_node *c)
{
	struct listing *l = opaque;
	if (l->n >= l->max)
		return 1;
	snprintf(l->names[l->n], 64, "%s", c->name);
	l->inos[l->n++] = c->ino;
	return 0;
}

static void test_lifetime(void)
{
	memset(freed, 0, sizeof(freed));
	struct ns *ns = ns_create(free_obj, NULL);
	struct ns_node *a = ns_add(ns, 1, "lun1", NS_LUN, (void *)1, 0, 100, 0);
	struct ns_node *b = ns_add(ns, 1, "lun2", NS_LUN, (void *)2, 0, 200, 0);
	CHECK("added", a && b);
	CHECK_EQ("inode numbers from 2", 2, a->ino);
	CHECK_EQ("then 3", 3, b->ino);
	CHECK("a taken name is refused", !ns_add(ns, 1, "lun1", NS_LUN, NULL, 0, 0, 0) && errno == EEXIST);
	CHECK("no such directory", !ns_add(ns, 99, "x", NS_LUN, NULL, 0, 0, 0) && errno == ENOENT);
	CHECK("not under a file", !ns_add(ns, a->ino, "x", NS_LUN, NULL, 0, 0, 0) && errno == ENOENT);

	/* the kernel looks lun2 up twice and opens it */
	CHECK("lookup", ns_lookup(ns, 1, "lun2") == b);
	CHECK("lookup again", ns_lookup(ns, 1, "lun2") == b);
	ns_open(ns, b);
	struct inval_log il = { 0 };
	CHECK_EQ("unlink lun2", 1, ns_unlink(ns, b, on_inval, &il));
	CHECK("the kernel is told the name went", il.n == 1 && strcmp(il.names[0], "lun2") == 0);
	CHECK("the name is gone at once", ns_lookup(ns, 1, "lun2") == NULL);
	CHECK("the node lives for the kernel", ns_get(ns, 3) == b);
	CHECK("not linked", !ns_linked(ns, b));
	CHECK_EQ("unlinking twice does nothing", 0, ns_unlink(ns, b, NULL, NULL));
	ns_forget(ns, 3, 2);
	CHECK("still open: alive", ns_get(ns, 3) == b);
	CHECK_EQ("not freed yet", 0, freed[2]);
	ns_release(ns, b);
	CHECK("last handle closed, forgotten: freed", ns_get(ns, 3) == NULL);
	CHECK_EQ("its object released once", 1, freed[2]);

	/* the name comes back: a new node, a new number */
	struct ns_node *b2 = ns_add(ns, 1, "lun2", NS_LUN, (void *)3, 0, 300, 0);
	CHECK("lun2 again", b2 != NULL);
	CHECK("with a new inode number", b2 && b2->ino > 3);

	/* unlinked with nothing holding it: freed at once */
	ns_unlink(ns, a, NULL, NULL);
	CHECK_EQ("lun1 freed at once", 1, freed[1]);
	CHECK("gone", ns_get(ns, 2) == NULL);
	/* forget of an unknown inode: ignored */
	ns_forget(ns, 2, 1);
	ns_forget(ns, 12345, 1);

	/* size */
	ns_set_size(b2, 4096);
	CHECK_EQ("size", 4096, ns_get_size(b2));
	uint64_t alive, linked;
	ns_counts(ns, &alive, &linked);
	CHECK_EQ("alive: root and lun2", 2, alive);
	CHECK_EQ("linked", 2, linked);
	ns_destroy(ns);
	CHECK_EQ("destroy releases what is left", 1, freed[3]);
}

static void test_dirs_and_readdir(void)
{
	memset(freed, 0, sizeof(freed));
	struct ns *ns = ns_create(free_obj, NULL);
	struct ns_node *t = ns_add(ns, 1, "iqn.x:disk", NS_DIR, NULL, 0, 0, 0);
	for (int i = 1; i <= 6; i++) {
		char name[16];
		snprintf(name, sizeof(name), "lun%d", i);
		ns_add(ns, t->ino, name, NS_LUN, (void *)(intptr_t)i, 0, 0, 0);
	}
	/* read two, then the directory changes, then read on */
	struct listing l = { .max = 2 };
	CHECK_EQ("readdir", 0, ns_readdir(ns, t->ino, 0, collect, &l));
	CHECK("first two", l.n == 2 && !strcmp(l.names[0], "lun1") && !strcmp(l.names[1], "lun2"));
	uint64_t cookie = l.inos[1];
	ns_unlink(ns, ns_lookup(ns, t->ino, "lun1"), NULL, NULL);
	ns_unlink(ns, ns_lookup(ns, t->ino, "lun4"), NULL, NULL);
	ns_add(ns, t->ino, "lun7", NS_LUN, (void *)7, 0, 0, 0);
	struct listing rest = { .max = 32 };
	ns_readdir(ns, t->ino, cookie, collect, &rest);
	char got[128] = "";
	for (int i = 0; i < rest.n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s ", rest.names[i]);
	CHECK("the rest: no repeat, no skip of what stayed, the new one at the end",
	      strcmp(got, "lun3 lun5 lun6 lun7 ") == 0);
	if (strcmp(got, "lun3 lun5 lun6 lun7 "))
		fprintf(stderr, "  got: %s\n", got);
	CHECK_EQ("readdir of a file", -ENOTDIR,
		 ns_readdir(ns, ns_lookup(ns, t->ino, "lun3")->ino, 0, collect, &rest));

	/* unlinking the directory takes its children, each told to the kernel */
	struct inval_log il = { 0 };
	uint64_t tino = t->ino; /* t itself is freed by the unlink: nothing holds it */
	CHECK_EQ("directory and its 5 files", 6, ns_unlink(ns, t, on_inval, &il));
	CHECK_EQ("six names invalidated", 6, il.n);
	CHECK("the directory last", strcmp(il.names[5], "iqn.x:disk") == 0);
	CHECK("its files are gone", ns_lookup(ns, tino, "lun3") == NULL);
	/* the kernel still held lun3 (looked up above) and lun1, lun4 (unlinked earlier
	 * with a lookup each) */
	CHECK_EQ("unreferenced lun5 freed", 1, freed[5]);
	CHECK_EQ("lun3 (looked up twice) not yet", 0, freed[3]);
	CHECK("no adding into an unlinked directory",
	      !ns_add(ns, tino, "lun8", NS_LUN, NULL, 0, 0, 0) && errno == ENOENT);
	ns_destroy(ns);
}

/* ---------- concurrency ---------- */

static struct ns *CNS;
static int stop;

static void *kernel_thread(void *arg)
{
	(void)arg;
	char name[16];
	unsigned seed = (unsigned)(uintptr_t)pthread_self();
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		snprintf(name, sizeof(name), "f%d", rand_r(&seed) % 8);
		struct ns_node *n = ns_lookup(CNS, 1, name);
		if (!n)
			continue;
		/* a request on the node while the kernel holds it */
		volatile uint64_t s = ns_get_size(n);
		(void)s;
		if (n->name[0] != 'f')
			__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
		if (rand_r(&seed) % 2) {
			ns_open(CNS, n);
			ns_release(CNS, n);
		}
		ns_forget(CNS, n->ino, 1);
	}
	return NULL;
}

static void test_concurrency(void)
{
	memset(freed, 0, sizeof(freed));
	CNS = ns_create(free_obj, NULL);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, kernel_thread, NULL);
	uint64_t t0 = util_now_ms();
	int adds = 0;
	while (util_now_ms() - t0 < 1500) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", adds % 8);
		struct ns_node *n = ns_add(CNS, 1, name, NS_LUN, (void *)1, 0, 0, 0);
		if (n) {
			adds++;
			ns_unlink(CNS, n, NULL, NULL);
		}
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	uint64_t alive, linked;
	ns_counts(CNS, &alive, &linked);
	CHECK_EQ("every node freed once nothing holds it", 1, alive);
	CHECK_EQ("every object released exactly once", adds, freed[1]);
	printf("concurrency: %d nodes added and removed under 4 looking-up threads\n", adds);
	ns_destroy(CNS);
}

int main(void)
{
	test_lifetime();
	test_dirs_and_readdir();
	test_concurrency();
	printf(failures ? "test_ns: %d failed\n" : "test_ns: all passed\n", failures);
	return failures != 0;
}
