/*
 * clock.h - the monotonic clock, read one way everywhere above codec/: for
 * intervals (a cache entry's age, how often the mount checks the store, a
 * command's elapsed time), never for dates.
 *
 * Module convention: plain values; clock_gettime(CLOCK_MONOTONIC) cannot
 * fail on the systems modelfs runs on (Linux), so nothing is checked.
 */
#ifndef MFS_CLOCK_H
#define MFS_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Nanoseconds since an arbitrary fixed point (boot). */
static inline uint64_t mfs_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** Milliseconds since the same point. */
static inline uint64_t mfs_now_ms(void)
{
	return mfs_now_ns() / 1000000u;
}

/** Seconds since the same point, with a fraction (for rates and timings shown). */
static inline double mfs_now_seconds(void)
{
	return (double)mfs_now_ns() * 1e-9;
}

#endif
