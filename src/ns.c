/*
 * ns.c - the node table of the live namespace (the rules are in ns.h): nodes in a hash
 * by inode number, children in inode order under their directory, freed when no
 * longer linked, looked up by the kernel, or open.
 *
 * NOTES ON THE THREAD MODEL
 *   `lock` (an rwlock) protects the hash, the child lists and every node's nlookup,
 *   nopen and linked. Lookups take it shared and count the kernel's reference with an
 *   atomic add: a node is freed only under the exclusive lock, so a shared holder never
 *   sees it go. free_obj and inval callbacks are called after the lock is released.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/ns.h"
#include "iscsifs/util.h"

struct ns {
	pthread_rwlock_t lock;
	struct ns_node **hash;  /* lock */
	size_t nbuckets;        /* a power of two; lock */
	uint64_t alive, linked; /* lock */
	uint64_t next_ino;      /* lock */
	void (*free_obj)(void *obj, void *opaque);
	void *opaque;
};

static size_t bucket(const struct ns *ns, uint64_t ino)
{
	return (size_t)(ino * 0x9e3779b97f4a7c15ULL >> 20) & (ns->nbuckets - 1);
}

static struct ns_node *find(const struct ns *ns, uint64_t ino)
{
	for (struct ns_node *n = ns->hash[bucket(ns, ino)]; n; n = n->hnext)
		if (n->ino == ino)
			return n;
	return NULL;
}

static int hash_insert(struct ns *ns, struct ns_node *node)
{
	if (ns->alive + 1 > ns->nbuckets) {
		size_t nb = ns->nbuckets * 2;
		struct ns_node **h = calloc(nb, sizeof(*h));
		if (!h)
			return -ENOMEM;
		struct ns_node **old = ns->hash;
		size_t ob = ns->nbuckets;
		ns->hash = h;
		ns->nbuckets = nb;
		for (size_t i = 0; i < ob; i++) {
			for (struct ns_node *n = old[i], *next; n; n = next) {
				next = n->hnext;
				size_t b = bucket(ns, n->ino);
				n->hnext = h[b];
				h[b] = n;
			}
		}
		free(old);
	}
	size_t b = bucket(ns, node->ino);
	node->hnext = ns->hash[b];
	ns->hash[b] = node;
	ns->alive++;
	return 0;
}

static void hash_remove(struct ns *ns, struct ns_node *node)
{
	struct ns_node **pp = &ns->hash[bucket(ns, node->ino)];
	while (*pp != node)
		pp = &(*pp)->hnext;
	*pp = node->hnext;
	ns->alive--;
}

/* Remove `node` from the table if nothing holds it any more; it goes on `dead` to be
 * freed after the lock is released. Under the exclusive lock. */
static void maybe_free(struct ns *ns, struct ns_node *node, struct ns_node **dead)
{
	if (node->linked || node->ino == 1 || __atomic_load_n(&node->nlookup, __ATOMIC_ACQUIRE) ||
	    node->nopen)
		return;
	hash_remove(ns, node);
	node->next = *dead;
	*dead = node;
}

static void free_dead(struct ns *ns, struct ns_node *dead)
{
	while (dead) {
		struct ns_node *next = dead->next;
		if (dead->obj && ns->free_obj)
			ns->free_obj(dead->obj, ns->opaque);
		free(dead);
		dead = next;
	}
}

struct ns *ns_create(void (*free_obj)(void *obj, void *opaque), void *opaque)
{
	struct ns *ns = calloc(1, sizeof(*ns));
	struct ns_node *root = calloc(1, sizeof(*root));
	if (ns)
		ns->hash = calloc(64, sizeof(*ns->hash));
	if (!ns || !root || !ns->hash) {
		if (ns)
			free(ns->hash);
		free(ns);
		free(root);
		return NULL;
	}
	ns->nbuckets = 64;
	pthread_rwlock_init(&ns->lock, NULL);
	ns->free_obj = free_obj;
	ns->opaque = opaque;
	root->ino = 1;
	root->kind = NS_ROOT;
	root->linked = true;
	hash_insert(ns, root); /* cannot fail: the table has room */
	ns->linked = 1;
	ns->next_ino = 2;
	return ns;
}

void ns_destroy(struct ns *ns)
{
	if (!ns)
		return;
	struct ns_node *dead = NULL;
	for (size_t i = 0; i < ns->nbuckets; i++) {
		for (struct ns_node *n = ns->hash[i], *next; n; n = next) {
			next = n->hnext;
			n->next = dead;
			dead = n;
		}
	}
	free_dead(ns, dead);
	free(ns->hash);
	pthread_rwlock_destroy(&ns->lock);
	free(ns);
}

static bool is_dir(const struct ns_node *n)
{
	return n->kind == NS_ROOT || n->kind == NS_DIR;
}

static struct ns_node *child(const struct ns_node *dir, const char *name)
{
	for (struct ns_node *c = dir->first; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

struct ns_node *ns_add(struct ns *ns, uint64_t parent, const char *name, enum ns_kind kind,
		       void *obj, uint64_t off, uint64_t size, int part)
{
	if (strlen(name) >= NS_NAME_MAX) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	struct ns_node *node = calloc(1, sizeof(*node));
	if (!node) {
		errno = ENOMEM;
		return NULL;
	}
	snprintf(node->name, sizeof(node->name), "%s", name);
	node->kind = kind;
	node->obj = obj;
	node->off = off;
	node->size = size;
	node->part = part;
	node->parent = parent;
	node->linked = true;
	pthread_rwlock_wrlock(&ns->lock);
	struct ns_node *dir = find(ns, parent);
	int err = 0;
	if (!dir || !dir->linked || !is_dir(dir))
		err = ENOENT;
	else if (child(dir, name))
		err = EEXIST;
	else {
		node->ino = ns->next_ino; /* taken only on success: numbers stay dense */
		if (hash_insert(ns, node) < 0)
			err = ENOMEM;
	}
	if (err) {
		pthread_rwlock_unlock(&ns->lock);
		free(node);
		errno = err;
		return NULL;
	}
	ns->next_ino++;
	ns->linked++;
	if (dir->last)
		dir->last->next = node;
	else
		dir->first = node;
	dir->last = node;
	pthread_rwlock_unlock(&ns->lock);
	return node;
}

struct ns_node *ns_lookup(struct ns *ns, uint64_t parent, const char *name)
{
	pthread_rwlock_rdlock(&ns->lock);
	struct ns_node *dir = find(ns, parent), *c = NULL;
	if (dir && dir->linked && is_dir(dir))
		c = child(dir, name);
	if (c)
		__atomic_add_fetch(&c->nlookup, 1, __ATOMIC_ACQ_REL);
	pthread_rwlock_unlock(&ns->lock);
	return c;
}

struct ns_node *ns_get(struct ns *ns, uint64_t ino)
{
	pthread_rwlock_rdlock(&ns->lock);
	struct ns_node *n = find(ns, ino);
	pthread_rwlock_unlock(&ns->lock);
	return n;
}

void ns_forget(struct ns *ns, uint64_t ino, uint64_t n)
{
	struct ns_node *dead = NULL;
	pthread_rwlock_wrlock(&ns->lock);
	struct ns_node *node = find(ns, ino);
	if (node) {
		uint64_t have = node->nlookup;
		node->nlookup = have - MIN(have, n);
		maybe_free(ns, node, &dead);
	}
	pthread_rwlock_unlock(&ns->lock);
	free_dead(ns, dead);
}

void ns_open(struct ns *ns, struct ns_node *node)
{
	pthread_rwlock_wrlock(&ns->lock);
	node->nopen++;
	pthread_rwlock_unlock(&ns->lock);
}

void ns_release(struct ns *ns, struct ns_node *node)
{
	struct ns_node *dead = NULL;
	pthread_rwlock_wrlock(&ns->lock);
	if (node->nopen > 0)
		node->nopen--;
	maybe_free(ns, node, &dead);
	pthread_rwlock_unlock(&ns->lock);
	free_dead(ns, dead);
}

int ns_open_count(struct ns *ns, const struct ns_node *node)
{
	pthread_rwlock_rdlock(&ns->lock);
	int n = node->nopen;
	pthread_rwlock_unlock(&ns->lock);
	return n;
}

bool ns_linked(struct ns *ns, const struct ns_node *node)
{
	pthread_rwlock_rdlock(&ns->lock);
	bool l = node->linked;
	pthread_rwlock_unlock(&ns->lock);
	return l;
}

struct inval {
	uint64_t parent;
	char name[NS_NAME_MAX];
};

/* Unlink node and its subtree, children first. Under the exclusive lock. */
static int unlink_tree(struct ns *ns, struct ns_node *node, struct inval **v, size_t *nv,
		       size_t *cap, struct ns_node **dead)
{
	int count = 0;
	while (node->first) /* children of an unlinked directory go too */
		count += unlink_tree(ns, node->first, v, nv, cap, dead);
	struct ns_node *dir = find(ns, node->parent);
	if (dir) {
		struct ns_node **pp = &dir->first, *prev = NULL;
		while (*pp && *pp != node) {
			prev = *pp;
			pp = &(*pp)->next;
		}
		if (*pp) {
			*pp = node->next;
			if (dir->last == node)
				dir->last = prev;
		}
	}
	node->next = NULL;
	node->linked = false;
	ns->linked--;
	if (*nv == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		struct inval *nvv = realloc(*v, nc * sizeof(**v));
		if (nvv) {
			*v = nvv;
			*cap = nc;
		}
	}
	if (*nv < *cap) {
		(*v)[*nv].parent = node->parent;
		snprintf((*v)[*nv].name, sizeof((*v)[*nv].name), "%s", node->name);
		(*nv)++;
	}
	maybe_free(ns, node, dead);
	return count + 1;
}

int ns_unlink(struct ns *ns, struct ns_node *node,
	      void (*inval)(void *opaque, uint64_t parent, const char *name), void *opaque)
{
	struct inval *v = NULL;
	size_t nv = 0, cap = 0;
	struct ns_node *dead = NULL;
	int count = 0;
	pthread_rwlock_wrlock(&ns->lock);
	if (node->linked && node->ino != 1)
		count = unlink_tree(ns, node, &v, &nv, &cap, &dead);
	pthread_rwlock_unlock(&ns->lock);
	for (size_t i = 0; inval && i < nv; i++)
		inval(opaque, v[i].parent, v[i].name);
	free(v);
	free_dead(ns, dead);
	return count;
}

uint64_t ns_get_size(const struct ns_node *node)
{
	return __atomic_load_n(&node->size, __ATOMIC_ACQUIRE);
}

void ns_set_size(struct ns_node *node, uint64_t size)
{
	__atomic_store_n(&node->size, size, __ATOMIC_RELEASE);
}

int ns_readdir(struct ns *ns, uint64_t dir, uint64_t after,
	       int (*fn)(void *opaque, const struct ns_node *child), void *opaque)
{
	int r = 0;
	pthread_rwlock_rdlock(&ns->lock);
	struct ns_node *d = find(ns, dir);
	if (!d || !d->linked)
		r = -ENOENT;
	else if (!is_dir(d))
		r = -ENOTDIR;
	for (struct ns_node *c = r ? NULL : d->first; c; c = c->next)
		if (c->ino > after && fn(opaque, c) != 0)
			break;
	pthread_rwlock_unlock(&ns->lock);
	return r;
}

void ns_counts(struct ns *ns, uint64_t *alive, uint64_t *linked)
{
	pthread_rwlock_rdlock(&ns->lock);
	*alive = ns->alive;
	*linked = ns->linked;
	pthread_rwlock_unlock(&ns->lock);
}
