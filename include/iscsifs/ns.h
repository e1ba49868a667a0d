/*
 * ns.h - the node table of a live namespace (issue 11): directories, LUN files,
 * partition files and control files that appear and disappear while mounted, with
 * the lifetime rules the FUSE kernel protocol needs.
 *
 *  - Inode numbers are never reused while the daemon runs: each node gets the next
 *    number (FUSE_ROOT_ID is the root). A name that goes and comes back is a new node
 *    with a new number, so the kernel never mixes a file it still holds with the one
 *    now at that name (the generation of every node is 0).
 *  - A node lives while it is linked (in its directory), while the kernel holds a
 *    lookup reference (ns_lookup counts one, FUSE forget drops them: ns_forget), or
 *    while a file handle is open on it (ns_open / ns_release). When all three are gone
 *    it is freed, and the owner's free_obj(obj) is called (outside the table's lock).
 *  - Unlinking takes the name away at once: later lookups fail with ENOENT, readdir
 *    no longer lists it; the node stays what open handles and the kernel refer to.
 *  - readdir offsets are inode numbers (children are kept in inode order), so a
 *    directory read while it changes never repeats or skips an entry that stayed.
 *
 * What a node stands for (its LUN, its window) is the owner's (fs.c): `obj`, `off`,
 * `part` are set at ns_add and never change; `size` may change (ns_set_size).
 *
 * NOTES ON THE THREAD MODEL
 *   Every function is callable from any thread. The table is protected by one rwlock:
 *   lookups, gets and readdir take it shared; add, unlink, forget, open and release
 *   exclusively. No callback runs under it. A node pointer returned by ns_lookup or
 *   ns_get may be used without the lock while the caller holds something that keeps
 *   the node alive: the kernel's reference during a FUSE request on that inode (the
 *   kernel sends FORGET only once no request on the inode is in progress), or an open
 *   handle.
 */
#ifndef ISCSIFS_NS_H
#define ISCSIFS_NS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NS_NAME_MAX 256

enum ns_kind {
	NS_ROOT, /* the mountpoint */
	NS_DIR,  /* a target's directory (portal mounts), .iscsifs */
	NS_LUN,  /* a LUN file */
	NS_PART, /* a partition file: a window [off, off+size) onto its LUN */
	NS_CTL,  /* a control file of .iscsifs (stats.json, metrics, rescan) */
};

struct ns_node {
	uint64_t ino;           /* immutable */
	uint64_t parent;        /* immutable */
	char name[NS_NAME_MAX]; /* immutable */
	enum ns_kind kind;      /* immutable */
	void *obj;              /* the owner's, immutable */
	uint64_t off;           /* immutable: NS_PART's start on the LUN */
	int part;               /* immutable: the owner's tag (partition number) */
	uint64_t size;          /* atomic (ns_get_size / ns_set_size) */

	/* private to ns.c, under its lock */
	uint64_t nlookup;
	int nopen;
	bool linked;
	struct ns_node *first, *last; /* children, in inode order */
	struct ns_node *next;         /* sibling */
	struct ns_node *hnext;        /* in the inode hash */
};

struct ns;

/* A table with the root (FUSE_ROOT_ID 1). free_obj (may be NULL) is called once for
 * each freed node that has an obj. NULL when out of memory. */
struct ns *ns_create(void (*free_obj)(void *obj, void *opaque), void *opaque);

/* Free every node (free_obj for each), then the table. Nothing may use it after. */
void ns_destroy(struct ns *ns);

/* Add a linked node under directory `parent`. NULL with errno: EEXIST (the name is
 * taken by a linked node), ENOENT (no such directory, or unlinked), ENOMEM,
 * ENAMETOOLONG. */
struct ns_node *ns_add(struct ns *ns, uint64_t parent, const char *name, enum ns_kind kind,
		       void *obj, uint64_t off, uint64_t size, int part);

/* FUSE lookup: the linked child `name` of `parent`, with one more kernel reference.
 * NULL when there is none. */
struct ns_node *ns_lookup(struct ns *ns, uint64_t parent, const char *name);

/* The node with inode number `ino` (linked or not, while alive); NULL when none. */
struct ns_node *ns_get(struct ns *ns, uint64_t ino);

/* The kernel forgot `n` references of `ino` (FUSE forget / batch forget). */
void ns_forget(struct ns *ns, uint64_t ino, uint64_t n);

/* A file handle was opened on / released from `node`. */
void ns_open(struct ns *ns, struct ns_node *node);
void ns_release(struct ns *ns, struct ns_node *node);

/* Open handles on `node` now. */
int ns_open_count(struct ns *ns, const struct ns_node *node);

/* Whether `node` is still linked (in its directory). */
bool ns_linked(struct ns *ns, const struct ns_node *node);

/*
 * Unlink `node` (a directory with everything under it), so the name is gone at once.
 * Calls inval(opaque, parent, name) for each node unlinked, after the lock is released
 * (the caller tells the kernel: fuse_lowlevel_notify_inval_entry). Returns the number
 * of nodes unlinked; 0 when it was not linked.
 */
int ns_unlink(struct ns *ns, struct ns_node *node,
	      void (*inval)(void *opaque, uint64_t parent, const char *name), void *opaque);

uint64_t ns_get_size(const struct ns_node *node);
void ns_set_size(struct ns_node *node, uint64_t size);

/*
 * List the linked children of `dir` whose inode number is greater than `after`, in
 * inode order, calling fn for each until it returns non-zero (its buffer is full).
 * Returns 0, or -ENOENT / -ENOTDIR when `dir` is no linked directory. fn runs under
 * the shared lock: it must not call ns_* functions that take it exclusively.
 */
int ns_readdir(struct ns *ns, uint64_t dir, uint64_t after,
	       int (*fn)(void *opaque, const struct ns_node *child), void *opaque);

/* Counts, for stats and tests: nodes alive, and of those linked. */
void ns_counts(struct ns *ns, uint64_t *alive, uint64_t *linked);

#endif
