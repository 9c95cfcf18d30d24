/*
 * pool.h - the worker pool: N threads, each with its own codec workspace,
 * running tasks from one FIFO.  The decoded-chunk cache's prefetch
 * (fs/cache.c), libmodelfs's reads (lib/modelfs.c), ingest's encoders
 * (ingest/pipeline.c), verify's chunk check (fs/verify.c) and the
 * streaming of a file in order (fs/stream.c: export, verify, spill) all run
 * on it; it lives in index/ because that is the lowest layer all of them link
 * (it needs codec/ for the workspace and nothing of index/ itself).
 *
 * Use:
 *   mfs_pool_create(threads, &p);
 *   mfs_pool_group g = MFS_POOL_GROUP_INIT;
 *   t->run = fn; t->arg = x; t->group = &g;    (the caller's memory)
 *   mfs_pool_submit(p, t);                      ... more tasks ...
 *   mfs_pool_wait(p, &g);                       every task of g has run
 *   mfs_pool_free(p);
 *
 * Tasks are intrusive: an mfs_pool_task is memory of the caller's (often a
 * field of its job), so a submit allocates nothing and cannot fail for want
 * of memory.  A task is handed to the pool by a submit and comes back to its
 * owner when its run function returns, when it is cancelled (its cancel
 * function, if any, has been called) or when mfs_pool_take() returns 1.
 * Until then its memory must stay valid and untouched; after that the pool
 * never reads it again (a run function may free its own task).  A task that
 * came back may be submitted again, and so may a running task from its own
 * run function (work put back: it then runs once more).
 *
 * Groups: a task may name an mfs_pool_group (caller's memory, zeroed by
 * MFS_POOL_GROUP_INIT).  The group counts its tasks that are queued or
 * running; mfs_pool_wait() waits for the count to reach zero and
 * mfs_pool_cancel() drops the group's tasks that have not started.  A group
 * must stay valid while it counts any task; after mfs_pool_wait() returns,
 * the pool does not touch it.
 *
 * What runs where: a run function runs on one of the pool's threads, without
 * the pool's lock, with that thread's workspace (created with the thread,
 * freed at mfs_pool_free(); no other thread uses it).  A cancel function runs
 * on the thread that called mfs_pool_cancel() or mfs_pool_free(), without the
 * pool's lock.  Run and cancel functions may call any function here for
 * other tasks (submit, take, cancel), but a task must not wait for its own
 * group (it counts itself), and tasks that wait for other tasks of the same
 * pool can deadlock it when every thread waits.  The pool calls nothing of
 * its users' while holding its lock, so a user may call into the pool with
 * its own lock held.
 *
 * Threads: every call is thread-safe, except mfs_pool_free(), which must be
 * the last call and not made from a pool thread.
 *
 * Module convention: int return, 0 or a negative code from err.h (-errno
 * values included).
 */
#ifndef MFS_POOL_H
#define MFS_POOL_H

#include <stddef.h>

#include "codec.h"

typedef struct mfs_pool mfs_pool;
typedef struct mfs_pool_task mfs_pool_task;

/* Most threads one pool runs. */
#define MFS_POOL_MAX_THREADS 256

/** A task's work, on a pool thread, with that thread's workspace @p ws. */
typedef void (*mfs_pool_run_fn)(mfs_pool_task *t, mfs_codec_ws *ws);

/** Called instead of run for a task dropped before it started. */
typedef void (*mfs_pool_cancel_fn)(mfs_pool_task *t);

/* Tasks queued or running in a group; read it only through the calls below. */
typedef struct mfs_pool_group {
	size_t pending; /* under the pool's lock */
} mfs_pool_group;

#define MFS_POOL_GROUP_INIT                                                              \
	{                                                                                \
		0                                                                        \
	}

struct mfs_pool_task {
	/* set by the owner before a submit */
	mfs_pool_run_fn run;	   /* required */
	mfs_pool_cancel_fn cancel; /* optional: NULL when nothing to undo */
	void *arg;		   /* the owner's, for run and cancel */
	mfs_pool_group *group;	   /* optional */
	/* the pool's: do not touch while the task is with the pool */
	mfs_pool_task *prev, *next;
	int queued;
};

/**
 * Start a pool.
 * @param[in]  threads  1 .. MFS_POOL_MAX_THREADS
 * @param[out] out      free with mfs_pool_free(); NULL on failure
 * @return 0; MFS_E_INVAL (no thread, or more than the most); -ENOMEM (a
 *         workspace or the pool itself); -errno from pthread_create (then
 *         the threads already started are stopped and joined: a pool never
 *         runs with fewer threads than asked)
 */
int mfs_pool_create(unsigned threads, mfs_pool **out);

/**
 * Shut the pool down: queued tasks are cancelled (their cancel functions run
 * on this thread), running ones finish, the threads are joined and their
 * workspaces freed.  NULL is a no-op.  No call may be made on @p p during or
 * after it, nor from one of its threads.
 */
void mfs_pool_free(mfs_pool *p);

/** The number of threads of @p p (as created). */
unsigned mfs_pool_threads(const mfs_pool *p);

/**
 * Queue @p t at the back of the FIFO.  @p t must not be with the pool
 * already; its run must be set.
 * @return 0; MFS_E_BUSY when the pool is shutting down (the task stays the
 *         caller's and nothing is counted in its group)
 */
int mfs_pool_submit(mfs_pool *p, mfs_pool_task *t);

/**
 * Queue @p t at the front of the FIFO: the next thread that becomes free
 * runs it before anything queued earlier (for work put back, such as the
 * chunks a cache's batch fill left).
 * @return as mfs_pool_submit()
 */
int mfs_pool_submit_front(mfs_pool *p, mfs_pool_task *t);

/**
 * Take @p t back if it is still queued: it leaves the queue and its group
 * without running and without its cancel function; it is the caller's
 * again.
 * @return 1 (taken back), 0 (not queued: running, done, cancelled or never
 *         submitted; the caller must not touch it until it comes back)
 */
int mfs_pool_take(mfs_pool *p, mfs_pool_task *t);

/**
 * Drop the tasks of @p g that have not started: each leaves the queue and
 * the group, and its cancel function runs on this thread.  Tasks already
 * running are left to finish.
 * @return the number of tasks dropped
 */
size_t mfs_pool_cancel(mfs_pool *p, mfs_pool_group *g);

/**
 * Wait until no task of @p g is queued or running.  Must not be called by a
 * task of @p g.
 */
void mfs_pool_wait(mfs_pool *p, mfs_pool_group *g);

/** mfs_pool_cancel() then mfs_pool_wait(): after it, no task of @p g runs. */
void mfs_pool_drain(mfs_pool *p, mfs_pool_group *g);

/**
 * Whether a task of @p g is queued or running (a snapshot).
 * @return 1 or 0
 */
int mfs_pool_group_busy(mfs_pool *p, const mfs_pool_group *g);

#endif
