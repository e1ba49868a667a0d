/*
 * check.h - the assertions shared by the C unit tests: each failed check prints file,
 * line, what was checked, expected and got, and counts in `failures`; main() returns
 * non-zero when any failed.
 */
#ifndef ISCSIFS_TEST_CHECK_H
#define ISCSIFS_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK_EQ(what, expected, got)                                                   \
	do {                                                                            \
		long long e_ = (long long)(expected), g_ = (long long)(got);             \
		if (e_ != g_) {                                                         \
			fprintf(stderr, "FAIL %s:%d: %s: expected %lld, got %lld\n",    \
				__FILE__, __LINE__, (what), e_, g_);                    \
			failures++;                                                     \
		}                                                                       \
	} while (0)

#define CHECK(what, cond)                                                               \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "FAIL %s:%d: %s: expected %s\n", __FILE__,      \
				__LINE__, (what), #cond);                               \
			failures++;                                                     \
		}                                                                       \
	} while (0)

#endif
