/*
 * blob_table.c - the blobs the kernel holds, by inode (see blob_table.h).
 *
 * A hash table of entries chained per bucket, under one mutex.  Files are
 * opened and closed outside the mutex (a cold store may make either wait
 * for the disk): an entry in use (a read between get and put) is never
 * closed or rebased, and one forgotten while in use is unlinked at once
 * and freed by its last put.
 */
#include "blob_table.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"

struct mfs_blob_entry {
	struct mfs_blob_entry *next; /* bucket chain */
	uint64_t ino;
	uint64_t nlookup; /* the kernel's lookup count */
	unsigned use;	  /* reads between get and put */
	uint64_t last_ms; /* when the last read put it back (monotonic) */
	int dead;	  /* forgotten while in use: freed by the last put */
	mfs_view *view;	  /* a reference */
	mfs_rfile *file;  /* opened on the first read; NULL until then */
	char repo[MFS_REPO_ID_MAX + 1];
	char etag[MFS_ETAG_MAX + 1];
};

struct mfs_blob_table {
	pthread_mutex_t mu;
	mfs_reader *r;
	mfs_blob_entry **buckets;
	size_t n_buckets; /* a power of two */
	size_t n;
	uint64_t newest; /* generation of the newest view rebased to */
};

#define FIRST_BUCKETS 64

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t bucket_of(const mfs_blob_table *t, uint64_t ino)
{
	/* inode numbers are hashes already (layout.h); mix anyway */
	ino ^= ino >> 33;
	ino *= 0xff51afd7ed558ccdULL;
	ino ^= ino >> 33;
	return (size_t)ino & (t->n_buckets - 1);
}

int mfs_blob_table_create(mfs_reader *r, mfs_blob_table **out)
{
	*out = NULL;
	mfs_blob_table *t = calloc(1, sizeof *t);
	if (!t || !(t->buckets = calloc(FIRST_BUCKETS, sizeof *t->buckets))) {
		free(t);
		return -ENOMEM;
	}
	t->n_buckets = FIRST_BUCKETS;
	t->r = r;
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return 0;
}

static void entry_free(mfs_blob_entry *e)
{
	mfs_rfile_close(e->file);
	mfs_view_unref(e->view);
	free(e);
}

void mfs_blob_table_free(mfs_blob_table *t)
{
	if (!t)
		return;
	for (size_t b = 0; b < t->n_buckets; b++)
		for (mfs_blob_entry *e = t->buckets[b], *next; e; e = next) {
			next = e->next;
			entry_free(e);
		}
	free(t->buckets);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* The entry of @p ino, or NULL; with @p link, where it is chained from. */
static mfs_blob_entry *find(mfs_blob_table *t, uint64_t ino, mfs_blob_entry ***link)
{
	mfs_blob_entry **p = &t->buckets[bucket_of(t, ino)];
	while (*p && (*p)->ino != ino)
		p = &(*p)->next;
	if (link)
		*link = p;
	return *p;
}

/* Double the buckets when the chains grow past one entry each on average;
 * on no memory, the chains just grow longer. */
static void grow(mfs_blob_table *t)
{
	if (t->n <= t->n_buckets)
		return;
	size_t nb = t->n_buckets * 2;
	mfs_blob_entry **b = calloc(nb, sizeof *b);
	if (!b)
		return;
	mfs_blob_entry **old = t->buckets;
	size_t on = t->n_buckets;
	t->buckets = b;
	t->n_buckets = nb;
	for (size_t i = 0; i < on; i++)
		for (mfs_blob_entry *e = old[i], *next; e; e = next) {
			next = e->next;
			size_t k = bucket_of(t, e->ino);
			e->next = b[k];
			b[k] = e;
		}
	free(old);
}

int mfs_blob_table_ref(mfs_blob_table *t, uint64_t ino, const char *repo,
		       const char *etag, mfs_view *view)
{
	if (strlen(repo) > MFS_REPO_ID_MAX || strlen(etag) > MFS_ETAG_MAX)
		return MFS_E_INVAL;
	pthread_mutex_lock(&t->mu);
	mfs_blob_entry *e = find(t, ino, NULL);
	if (e) {
		e->nlookup++;
		pthread_mutex_unlock(&t->mu);
		return 0;
	}
	e = calloc(1, sizeof *e);
	if (!e) {
		pthread_mutex_unlock(&t->mu);
		return -ENOMEM;
	}
	e->ino = ino;
	e->nlookup = 1;
	strcpy(e->repo, repo);
	strcpy(e->etag, etag);
	mfs_view_ref(view);
	e->view = view;
	size_t k = bucket_of(t, ino);
	e->next = t->buckets[k];
	t->buckets[k] = e;
	t->n++;
	grow(t);
	pthread_mutex_unlock(&t->mu);
	return 0;
}

void mfs_blob_table_forget(mfs_blob_table *t, uint64_t ino, uint64_t n)
{
	mfs_blob_entry **link;
	pthread_mutex_lock(&t->mu);
	mfs_blob_entry *e = find(t, ino, &link);
	if (e && e->nlookup > n) {
		e->nlookup -= n;
		e = NULL;
	}
	if (!e) {
		pthread_mutex_unlock(&t->mu);
		return;
	}
	*link = e->next;
	t->n--;
	if (e->use) {
		e->dead = 1; /* the last put frees it */
		e = NULL;
	}
	pthread_mutex_unlock(&t->mu);
	if (e)
		entry_free(e);
}

int mfs_blob_table_get(mfs_blob_table *t, uint64_t ino, mfs_blob_entry **out,
		       mfs_rfile **f, int *opened)
{
	*out = NULL;
	*f = NULL;
	if (opened)
		*opened = 0;
	pthread_mutex_lock(&t->mu);
	mfs_blob_entry *e = find(t, ino, NULL);
	if (!e) {
		pthread_mutex_unlock(&t->mu);
		return MFS_E_NOTFOUND;
	}
	e->use++;
	mfs_rfile *file = e->file;
	pthread_mutex_unlock(&t->mu);
	if (!file) {
		/* the view cannot change meanwhile: rebase skips entries in use */
		int rc = mfs_rfile_open_in(t->r, e->view, e->repo, e->etag, &file);
		if (rc == MFS_E_NOTFOUND)
			rc = -ESTALE; /* removed before the view began */
		if (rc < 0) {
			mfs_blob_table_put(t, e);
			return rc;
		}
		pthread_mutex_lock(&t->mu);
		mfs_rfile *lost = NULL;
		if (e->file) { /* another read opened it first */
			lost = file;
			file = e->file;
		} else {
			e->file = file;
			if (opened)
				*opened = 1;
		}
		pthread_mutex_unlock(&t->mu);
		mfs_rfile_close(lost);
	}
	*out = e;
	*f = file;
	return 0;
}

void mfs_blob_table_put(mfs_blob_table *t, mfs_blob_entry *e)
{
	if (!e)
		return;
	uint64_t now = now_ms();
	pthread_mutex_lock(&t->mu);
	e->last_ms = now;
	int last = --e->use == 0 && e->dead;
	pthread_mutex_unlock(&t->mu);
	if (last)
		entry_free(e);
}

/*
 * Rebase and close_idle take files (and views) out of entries under the
 * lock, and close them outside it, SWEEP_BATCH per pass over the table: an
 * entry they have dealt with no longer matches, so a pass that fills its
 * batch is followed by another.
 */
enum { SWEEP_BATCH = 64 };

typedef struct taken {
	mfs_rfile *file; /* or NULL */
	mfs_view *view;	 /* a reference, or NULL */
} taken;

static void release_taken(const taken *tk, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mfs_rfile_close(tk[i].file);
		mfs_view_unref(tk[i].view);
	}
}

size_t mfs_blob_table_rebase(mfs_blob_table *t, mfs_view *view)
{
	uint64_t gen = mfs_view_generation(view);
	size_t moved = 0;
	for (;;) {
		taken tk[SWEEP_BATCH];
		size_t n = 0;
		pthread_mutex_lock(&t->mu);
		if (gen > t->newest)
			t->newest = gen;
		for (size_t b = 0; b < t->n_buckets && n < SWEEP_BATCH; b++)
			for (mfs_blob_entry *e = t->buckets[b]; e && n < SWEEP_BATCH;
			     e = e->next) {
				if (e->use || e->view == view ||
				    mfs_view_generation(e->view) >= gen ||
				    mfs_view_has_blob(view, e->repo, e->etag) != 1)
					continue;
				tk[n++] = (taken){e->file, e->view};
				e->file = NULL;
				mfs_view_ref(view);
				e->view = view;
			}
		pthread_mutex_unlock(&t->mu);
		release_taken(tk, n);
		moved += n;
		if (n < SWEEP_BATCH)
			return moved;
	}
}

size_t mfs_blob_table_close_idle(mfs_blob_table *t, uint64_t idle_ms)
{
	size_t closed = 0;
	for (;;) {
		taken tk[SWEEP_BATCH];
		size_t n = 0;
		uint64_t now = now_ms();
		pthread_mutex_lock(&t->mu);
		for (size_t b = 0; b < t->n_buckets && n < SWEEP_BATCH; b++)
			for (mfs_blob_entry *e = t->buckets[b]; e && n < SWEEP_BATCH;
			     e = e->next)
				if (e->file && !e->use && now - e->last_ms >= idle_ms) {
					tk[n++] = (taken){e->file, NULL};
					e->file = NULL;
				}
		pthread_mutex_unlock(&t->mu);
		release_taken(tk, n);
		closed += n;
		if (n < SWEEP_BATCH)
			return closed;
	}
}

void mfs_blob_table_stats_get(mfs_blob_table *t, mfs_blob_table_stats *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&t->mu);
	for (size_t b = 0; b < t->n_buckets; b++)
		for (mfs_blob_entry *e = t->buckets[b]; e; e = e->next) {
			out->entries++;
			out->files += e->file != NULL;
			out->behind += mfs_view_generation(e->view) < t->newest;
		}
	pthread_mutex_unlock(&t->mu);
}
