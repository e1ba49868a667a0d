/*
 * util.h - small helpers shared by every module: cleanup attributes, time, bitmaps.
 */
#ifndef ISCSIFS_UTIL_H
#define ISCSIFS_UTIL_H

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(a, b) (((a) + (b) - 1) / (b))

static inline uint64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t util_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Absolute CLOCK_MONOTONIC deadline `ms` from now, for pthread_cond_timedwait on a
 * condition variable created with util_cond_init(). */
static inline struct timespec util_deadline_ms(uint64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

static inline void util_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

static inline void util_freep(void *p)
{
	free(*(void **)p);
}
#define CLEANUP_FREE __attribute__((cleanup(util_freep)))

/* Bitmaps of 64-bit words. */
static inline bool bit_test(const uint64_t *m, uint32_t i)
{
	return (m[i >> 6] >> (i & 63)) & 1;
}
static inline void bit_set(uint64_t *m, uint32_t i)
{
	m[i >> 6] |= 1ULL << (i & 63);
}
static inline void bit_clear(uint64_t *m, uint32_t i)
{
	m[i >> 6] &= ~(1ULL << (i & 63));
}

#endif
