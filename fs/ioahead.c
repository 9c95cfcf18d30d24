/*
 * ioahead.c - the read-ahead thread (see ioahead.h): a FIFO of jobs, at most
 * one per owner, run one at a time without the lock held.
 */
#include "ioahead.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

typedef struct job {
	struct job *next;
	mfs_ioahead_fn fn;
	void *ud;
	size_t first;
	uint64_t until;
} job;

struct mfs_ioahead {
	pthread_mutex_t mu;
	pthread_cond_t work; /* a job was queued, or stop */
	pthread_cond_t done; /* the running job finished */
	job *head, *tail;    /* waiting jobs, oldest first */
	void *running;	     /* owner of the running job, or NULL */
	int stop;
	pthread_t thread;
	mfs_ioahead_stats st;
};

static void *run(void *arg)
{
	mfs_ioahead *q = arg;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->head && !q->stop)
			pthread_cond_wait(&q->work, &q->mu);
		if (q->stop)
			break;
		job *j = q->head;
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		q->running = j->ud;
		q->st.runs++;
		pthread_mutex_unlock(&q->mu);
		j->fn(j->ud, j->first, j->until);
		free(j);
		pthread_mutex_lock(&q->mu);
		q->running = NULL;
		pthread_cond_broadcast(&q->done);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

int mfs_ioahead_create(mfs_ioahead **out)
{
	*out = NULL;
	mfs_ioahead *q = calloc(1, sizeof *q);
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->work, NULL);
	pthread_cond_init(&q->done, NULL);
	int rc = pthread_create(&q->thread, NULL, run, q);
	if (rc) {
		pthread_cond_destroy(&q->done);
		pthread_cond_destroy(&q->work);
		pthread_mutex_destroy(&q->mu);
		free(q);
		return -rc;
	}
	*out = q;
	return 0;
}

void mfs_ioahead_free(mfs_ioahead *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = 1;
	pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->thread, NULL);
	for (job *j = q->head, *n; j; j = n) {
		n = j->next;
		free(j);
	}
	pthread_cond_destroy(&q->done);
	pthread_cond_destroy(&q->work);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* The waiting job of @p ud and the one before it (NULL: it is the head). */
static job *find(mfs_ioahead *q, void *ud, job **prev)
{
	*prev = NULL;
	for (job *j = q->head; j; *prev = j, j = j->next)
		if (j->ud == ud)
			return j;
	return NULL;
}

int mfs_ioahead_request(mfs_ioahead *q, mfs_ioahead_fn fn, void *ud, size_t first,
			uint64_t until)
{
	pthread_mutex_lock(&q->mu);
	job *prev, *j = find(q, ud, &prev);
	if (j) {
		j->fn = fn;
		j->first = first;
		j->until = until;
		q->st.requests++;
		q->st.replaced++;
		pthread_mutex_unlock(&q->mu);
		return 0;
	}
	pthread_mutex_unlock(&q->mu);
	/* allocate outside the lock; a racing request for ud may queue a
	 * second job, which is harmless (both run) */
	if (!(j = malloc(sizeof *j)))
		return -ENOMEM;
	*j = (job){NULL, fn, ud, first, until};
	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->st.requests++;
	pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

void mfs_ioahead_drain(mfs_ioahead *q, void *ud)
{
	pthread_mutex_lock(&q->mu);
	job *prev, *j;
	while ((j = find(q, ud, &prev))) {
		if (prev)
			prev->next = j->next;
		else
			q->head = j->next;
		if (q->tail == j)
			q->tail = prev;
		free(j);
		q->st.dropped++;
	}
	while (q->running == ud)
		pthread_cond_wait(&q->done, &q->mu);
	pthread_mutex_unlock(&q->mu);
}

int mfs_ioahead_busy(mfs_ioahead *q, void *ud)
{
	pthread_mutex_lock(&q->mu);
	job *prev;
	int busy = q->running == ud || find(q, ud, &prev) != NULL;
	pthread_mutex_unlock(&q->mu);
	return busy;
}

void mfs_ioahead_get_stats(mfs_ioahead *q, mfs_ioahead_stats *out)
{
	pthread_mutex_lock(&q->mu);
	*out = q->st;
	pthread_mutex_unlock(&q->mu);
}
