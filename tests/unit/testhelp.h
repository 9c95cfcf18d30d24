/*
 * testhelp.h - the assert helper for the C unit tests (one program per module).
 * CHECK() records a failure and goes on; REQUIRE() stops the test function.
 * Each program ends with `return test_report();` (exit 1 on any failure).
 */
#ifndef MFS_TESTHELP_H
#define MFS_TESTHELP_H

#include <inttypes.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_checks, test_failures;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		test_checks++;                                                             \
		if (!(cond)) {                                                             \
			test_failures++;                                                   \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);    \
		}                                                                          \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                 \
	do {                                                                               \
		long long ta_ = (long long)(a), tb_ = (long long)(b);                      \
		test_checks++;                                                             \
		if (ta_ != tb_) {                                                          \
			test_failures++;                                                   \
			fprintf(stderr, "FAIL %s:%d: %s == %s (%lld vs %lld)\n", __FILE__, \
				__LINE__, #a, #b, ta_, tb_);                               \
		}                                                                          \
	} while (0)

#define REQUIRE(cond)                                                                      \
	do {                                                                               \
		test_checks++;                                                             \
		if (!(cond)) {                                                             \
			test_failures++;                                                   \
			fprintf(stderr, "FAIL (fatal) %s:%d: %s\n", __FILE__, __LINE__,    \
				#cond);                                                    \
			return;                                                            \
		}                                                                          \
	} while (0)

#define RUN(fn)                                                                            \
	do {                                                                               \
		int before_ = test_failures;                                               \
		fn();                                                                      \
		fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL",     \
			#fn);                                                              \
	} while (0)

static inline int test_report(void)
{
	fprintf(stderr, "%d checks, %d failures\n", test_checks, test_failures);
	return test_failures ? 1 : 0;
}

/* Deterministic, seedable PRNG (xorshift64*); the seed is printed by callers. */
static inline uint64_t test_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Seed from $MFS_TEST_SEED or the clock; printed so a failure can be replayed. */
static inline uint64_t test_seed(void)
{
	const char *e = getenv("MFS_TEST_SEED");
	uint64_t s = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
	if (!s)
		s = 1;
	fprintf(stderr, "MFS_TEST_SEED=%" PRIu64 "\n", s);
	return s;
}


#endif
