/*
 * stats.h - what stats.c renders and `iscsifs stat` reads: the stats.json schema
 * version (bumped when a key changes meaning or goes away; new keys do not bump it).
 * The schema itself is documented at the top of src/stats.c and in iscsifs(1).
 */
#ifndef ISCSIFS_STATS_H
#define ISCSIFS_STATS_H

#define STATS_SCHEMA 1

#endif
