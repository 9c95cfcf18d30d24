/*
 * prefetch_model.c - the files a model prefetch holds open (see
 * prefetch_model.h).
 */
#include "prefetch_model.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

struct mfs_prefetch_model {
	mfs_reader *r;
	uint64_t budget;
	pthread_mutex_t mu;
	mfs_rfile **held; /* open, their whole decode queued */
	size_t n, cap;
	uint64_t held_bytes;
	mfs_prefetch_model_stats st;
};

int mfs_prefetch_model_create(mfs_reader *r, uint64_t budget, mfs_prefetch_model **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->r = r;
	(*out)->budget = budget;
	pthread_mutex_init(&(*out)->mu, NULL);
	return 0;
}

void mfs_prefetch_model_free(mfs_prefetch_model *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		mfs_rfile_close(p->held[i]); /* drops its queued work first */
	free(p->held);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* Close the files with nothing queued or running (closing them waits for
 * nothing then: no one else queues work for them). */
static void reap_locked(mfs_prefetch_model *p)
{
	size_t kept = 0;
	for (size_t i = 0; i < p->n; i++) {
		mfs_rfile *f = p->held[i];
		if (mfs_rfile_busy(p->r, f)) {
			p->held[kept++] = f;
			continue;
		}
		p->held_bytes -= f->size;
		mfs_rfile_close(f);
	}
	p->n = kept;
	p->st.held = kept;
}

void mfs_prefetch_model_reap(mfs_prefetch_model *p)
{
	pthread_mutex_lock(&p->mu);
	if (p->n)
		reap_locked(p);
	pthread_mutex_unlock(&p->mu);
}

static int held_already(const mfs_prefetch_model *p, const mfs_layout_file *lf)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->held[i]->etag, lf->etag) == 0 &&
		    strcmp(p->held[i]->repo, lf->repo) == 0)
			return 1;
	return 0;
}

int mfs_prefetch_model_start(mfs_prefetch_model *p, const mfs_layout_file *files,
			     size_t n, size_t *started)
{
	size_t done = 0;
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	reap_locked(p);
	for (size_t i = 0; i < n && rc == 0; i++) {
		const mfs_layout_file *lf = &files[i];
		if (!lf->is_blob || held_already(p, lf))
			continue;
		if (lf->size > p->budget - p->held_bytes) {
			p->st.skipped++;
			continue;
		}
		mfs_rfile **v = mfs_grow(p->held, &p->cap, p->n, sizeof(*v), 8);
		if (!v) {
			rc = -ENOMEM;
			break;
		}
		p->held = v;
		mfs_rfile *f;
		if ((rc = mfs_rfile_open(p->r, lf->repo, lf->etag, &f)) < 0)
			break;
		mfs_rfile_queue_whole(p->r, f);
		p->held[p->n++] = f;
		p->held_bytes += f->size;
		p->st.files++;
		p->st.bytes += f->size;
		done++;
	}
	p->st.held = p->n;
	pthread_mutex_unlock(&p->mu);
	if (started)
		*started = done;
	return rc;
}

void mfs_prefetch_model_stats_get(mfs_prefetch_model *p, mfs_prefetch_model_stats *out)
{
	pthread_mutex_lock(&p->mu);
	*out = p->st;
	pthread_mutex_unlock(&p->mu);
}
