/*
 * pool.c - the worker pool (see pool.h).
 *
 * One mutex guards the queue (a doubly linked list through the tasks, so a
 * front push, a take and a group's cancel are O(1) per task), the groups'
 * counts and the stop flag.  It is held for a few list operations at a
 * time, never across a run or a cancel function.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "err.h"

typedef struct pool_worker {
	mfs_pool *p;
	pthread_t tid;
	mfs_codec_ws *ws;
} pool_worker;

struct mfs_pool {
	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* a task was queued, or stop */
	pthread_cond_t done_cv; /* a group's count reached zero */
	mfs_pool_task head;	/* sentinel: head.next is the oldest task */
	int stop;
	pool_worker *workers;
	unsigned n_threads; /* asked for */
	unsigned n_started; /* threads to join */
};

static void queue_unlink(mfs_pool_task *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->queued = 0;
}

static void queue_insert_after(mfs_pool_task *at, mfs_pool_task *t)
{
	t->prev = at;
	t->next = at->next;
	at->next->prev = t;
	at->next = t;
	t->queued = 1;
}

/* @p n tasks of @p g left the pool (ran, cancelled or taken back): with p->mu held. */
static void group_done_locked(mfs_pool *p, mfs_pool_group *g, size_t n)
{
	if (!g || !n)
		return;
	g->pending -= n;
	if (g->pending == 0)
		pthread_cond_broadcast(&p->done_cv);
}

static void *worker_main(void *arg)
{
	pool_worker *w = arg;
	mfs_pool *p = w->p;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->head.next == &p->head)
			pthread_cond_wait(&p->work_cv, &p->mu);
		if (p->stop)
			break; /* what is still queued, mfs_pool_free cancels */
		mfs_pool_task *t = p->head.next;
		queue_unlink(t);
		/* read before the run: the task may be freed by it */
		mfs_pool_group *g = t->group;
		pthread_mutex_unlock(&p->mu);
		t->run(t, w->ws);
		pthread_mutex_lock(&p->mu);
		group_done_locked(p, g, 1);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int submit_at(mfs_pool *p, mfs_pool_task *t, int front)
{
	pthread_mutex_lock(&p->mu);
	if (p->stop) {
		pthread_mutex_unlock(&p->mu);
		return MFS_E_BUSY;
	}
	queue_insert_after(front ? &p->head : p->head.prev, t);
	if (t->group)
		t->group->pending++;
	pthread_cond_signal(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int mfs_pool_submit(mfs_pool *p, mfs_pool_task *t)
{
	return submit_at(p, t, 0);
}

int mfs_pool_submit_front(mfs_pool *p, mfs_pool_task *t)
{
	return submit_at(p, t, 1);
}

int mfs_pool_take(mfs_pool *p, mfs_pool_task *t)
{
	pthread_mutex_lock(&p->mu);
	int taken = t->queued;
	if (taken) {
		mfs_pool_group *g = t->group;
		queue_unlink(t);
		group_done_locked(p, g, 1);
	}
	pthread_mutex_unlock(&p->mu);
	return taken;
}

/*
 * Take the queued tasks of @p g (every queued task when @p all) off the
 * queue, run their cancel functions without the lock, then let their groups
 * go.  A cancelled task stays counted in its group until its cancel function
 * has returned, so a waiter never sees a group empty while one still runs.
 */
static size_t cancel_where(mfs_pool *p, mfs_pool_group *g, int all)
{
	mfs_pool_task *list = NULL, **tail = &list;
	size_t n = 0;
	pthread_mutex_lock(&p->mu);
	for (mfs_pool_task *t = p->head.next; t != &p->head;) {
		mfs_pool_task *next = t->next;
		if (all || t->group == g) {
			queue_unlink(t);
			*tail = t;
			tail = &t->next;
			n++;
		}
		t = next;
	}
	pthread_mutex_unlock(&p->mu);
	for (mfs_pool_task *t = list; t;) {
		mfs_pool_task *next = t->next;
		mfs_pool_group *tg = t->group;
		t->next = NULL;
		if (t->cancel)
			t->cancel(t); /* may free t */
		pthread_mutex_lock(&p->mu);
		group_done_locked(p, tg, 1);
		pthread_mutex_unlock(&p->mu);
		t = next;
	}
	return n;
}

size_t mfs_pool_cancel(mfs_pool *p, mfs_pool_group *g)
{
	return cancel_where(p, g, 0);
}

void mfs_pool_wait(mfs_pool *p, mfs_pool_group *g)
{
	pthread_mutex_lock(&p->mu);
	while (g->pending > 0)
		pthread_cond_wait(&p->done_cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void mfs_pool_drain(mfs_pool *p, mfs_pool_group *g)
{
	mfs_pool_cancel(p, g);
	mfs_pool_wait(p, g);
}

int mfs_pool_group_busy(mfs_pool *p, const mfs_pool_group *g)
{
	pthread_mutex_lock(&p->mu);
	int busy = g->pending > 0;
	pthread_mutex_unlock(&p->mu);
	return busy;
}

unsigned mfs_pool_threads(const mfs_pool *p)
{
	return p->n_threads;
}

/* Stop and join the started threads, cancel what is queued, free. */
static void pool_destroy(mfs_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->n_started; i++)
		pthread_join(p->workers[i].tid, NULL);
	cancel_where(p, NULL, 1);
	for (unsigned i = 0; i < p->n_threads; i++)
		mfs_codec_ws_free(p->workers[i].ws);
	pthread_cond_destroy(&p->work_cv);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->mu);
	free(p->workers);
	free(p);
}

int mfs_pool_create(unsigned threads, mfs_pool **out)
{
	*out = NULL;
	if (threads == 0 || threads > MFS_POOL_MAX_THREADS)
		return MFS_E_INVAL;
	mfs_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->workers = calloc(threads, sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return -ENOMEM;
	}
	p->n_threads = threads;
	p->head.next = p->head.prev = &p->head;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work_cv, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	/* every workspace before any thread: a pool that cannot give each of
	 * its threads one fails here, whole */
	for (unsigned i = 0; i < threads; i++) {
		p->workers[i].p = p;
		if (mfs_codec_ws_create(&p->workers[i].ws) < 0) {
			pool_destroy(p);
			return -ENOMEM;
		}
	}
	for (unsigned i = 0; i < threads; i++) {
		int rc =
		    pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]);
		if (rc) {
			pool_destroy(p);
			return -rc;
		}
		p->n_started++;
	}
	*out = p;
	return 0;
}

void mfs_pool_free(mfs_pool *p)
{
	if (p)
		pool_destroy(p);
}
