/*
 * ioahead.h - one background thread that asks the disk for data ahead of
 * the readers: the mount's read-ahead of stored chunk records.
 *
 * Asking the kernel to read (madvise MADV_WILLNEED) blocks once the
 * device's request queue is full: on the virtual disks we measure, asking
 * for 32 MiB took 26 ms, during which a FUSE thread that asked served
 * nothing.  So the asking runs here, off every reader's path.
 *
 * A job is a function and its arguments, keyed by an owner pointer @p ud (an
 * open file): at most one job per owner waits, and a newer request replaces
 * the waiting one (a reader that moved on needs only the newest window).
 * Jobs run one at a time, in the order their owners first asked.
 *
 * Threads: every call is thread-safe.
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_IOAHEAD_H
#define MFS_IOAHEAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct mfs_ioahead mfs_ioahead;

/** A job: runs on the ioahead thread with the arguments of its request. */
typedef void (*mfs_ioahead_fn)(void *ud, size_t first, uint64_t until);

/**
 * Start the thread.
 * @param[out] out  free with mfs_ioahead_free()
 * @return 0, -ENOMEM, or -errno from pthread_create
 */
int mfs_ioahead_create(mfs_ioahead **out);

/**
 * Stop the thread: waiting jobs are dropped, a running one finishes first.
 * NULL is a no-op.
 */
void mfs_ioahead_free(mfs_ioahead *q);

/**
 * Queue fn(ud, first, until), replacing the job @p ud has waiting, if any.
 * Never blocks on the job itself.
 * @param[in] ud  must stay valid until the job has run or
 *                mfs_ioahead_drain(q, ud) has returned
 * @return 0, or -ENOMEM (nothing queued; read-ahead is only a hint)
 */
int mfs_ioahead_request(mfs_ioahead *q, mfs_ioahead_fn fn, void *ud, size_t first,
			uint64_t until);

/**
 * Drop the job @p ud has waiting and wait for its running one to finish:
 * after it returns the thread does not use @p ud.  Call before freeing @p ud.
 */
void mfs_ioahead_drain(mfs_ioahead *q, void *ud);

/**
 * Whether @p ud has a job waiting or running (a snapshot: it may change as
 * soon as it is returned).
 * @return 1 or 0
 */
int mfs_ioahead_busy(mfs_ioahead *q, void *ud);

/** Counters since creation (a snapshot; for tests and the stop log). */
typedef struct mfs_ioahead_stats {
	uint64_t requests; /* mfs_ioahead_request calls that queued or replaced */
	uint64_t replaced; /* of which replaced a waiting job */
	uint64_t runs;	   /* jobs run */
	uint64_t dropped;  /* waiting jobs dropped by drain or free */
} mfs_ioahead_stats;

void mfs_ioahead_get_stats(mfs_ioahead *q, mfs_ioahead_stats *out);

#endif
