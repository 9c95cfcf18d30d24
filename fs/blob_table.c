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

#include "clock.h"
#include "err.h"
#include "grow.h"

struct mfs_blob_entry {
	struct mfs_blob_entry *next; /* bucket chain */
	uint64_t ino;
	uint64_t nlookup; /* the kernel's lookup count */
	unsigned use;	  /* reads between get and put */
	uint64_t last_ms; /* when the last read put it back (monotonic) */
	int dead;	  /* forgotten while in use: freed by the last put */
	int spill_failed; /* its copy failed (bound_views): not tried again */
	uint64_t tried;	  /* the bound_views pass that last took it up */
	mfs_view *view;	  /* a reference; NULL once spilled */
	mfs_rfile *file;  /* opened on the first read; NULL until then; once
			     spilled, the copy (never closed while the entry
			     lives: it has no view to reopen in) */
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
	size_t max_views; /* mfs_blob_table_set_bound; 0: no bound */
	mfs_spill *spill; /* where copies go (set with the bound) */
	uint64_t pass;	  /* bound_views passes so far */
};

#define FIRST_BUCKETS 64


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
	mfs_spill_free(t->spill); /* after the copies in it */
	free(t->buckets);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

int mfs_blob_table_set_bound(mfs_blob_table *t, size_t max_views, const char *spill_dir)
{
	if (t->spill || max_views == 0)
		return MFS_E_INVAL;
	int rc = mfs_spill_create(spill_dir, &t->spill);
	if (rc == 0)
		t->max_views = max_views;
	return rc;
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
	uint64_t now = mfs_now_ms();
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
				if (e->use || !e->view || e->view == view ||
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
		uint64_t now = mfs_now_ms();
		pthread_mutex_lock(&t->mu);
		for (size_t b = 0; b < t->n_buckets && n < SWEEP_BATCH; b++)
			for (mfs_blob_entry *e = t->buckets[b]; e && n < SWEEP_BATCH;
			     e = e->next)
				if (e->file && e->view && !e->use &&
				    now - e->last_ms >= idle_ms) {
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

/*
 * The distinct views entries hold, gathered under the table's lock.  Entries
 * come in long runs on one view (most are on the newest), so the last match
 * is tried first and a pass over the table stays linear; the set itself is
 * small (the bound, plus what a tick adds).
 */
typedef struct held_view {
	mfs_view *view; /* a reference when the set takes them */
	uint64_t gen;
	int keep;
} held_view;

typedef struct view_set {
	held_view *v;
	size_t n, cap, last;
	int nomem;
} view_set;

/* The index of @p v in @p s, or s->n. */
static size_t view_set_find(view_set *s, const mfs_view *v)
{
	if (s->last < s->n && s->v[s->last].view == v)
		return s->last;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].view == v)
			return s->last = i;
	return s->n;
}

static void view_set_add(view_set *s, mfs_view *v, int take_ref)
{
	if (view_set_find(s, v) < s->n)
		return;
	held_view *nv = mfs_grow(s->v, &s->cap, s->n, sizeof(*nv), 64);
	if (!nv) {
		s->nomem = 1;
		return;
	}
	s->v = nv;
	if (take_ref)
		mfs_view_ref(v);
	s->v[s->n++] = (held_view){v, mfs_view_generation(v), 0};
}

/* Free the set, giving back the references it took (@p refs). */
static void view_set_release(view_set *s, int refs)
{
	for (size_t i = 0; refs && i < s->n; i++)
		mfs_view_unref(s->v[i].view);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Every view an entry of the table reads, into @p s (taking references when
 * @p take_ref); the table's lock is taken here. */
static void table_views(mfs_blob_table *t, view_set *s, int take_ref)
{
	pthread_mutex_lock(&t->mu);
	for (size_t b = 0; b < t->n_buckets; b++)
		for (mfs_blob_entry *e = t->buckets[b]; e; e = e->next)
			if (e->view)
				view_set_add(s, e->view, take_ref);
	pthread_mutex_unlock(&t->mu);
}

static int by_generation(const void *a, const void *b)
{
	uint64_t x = ((const held_view *)a)->gen, y = ((const held_view *)b)->gen;
	return x < y ? -1 : x > y;
}

/* An entry bound_views takes up, copied out of the table. */
typedef struct bound_item {
	uint64_t ino;
	mfs_view *view; /* the entry's view (a reference) */
	char repo[MFS_REPO_ID_MAX + 1];
	char etag[MFS_ETAG_MAX + 1];
} bound_item;

/*
 * Give entry @p it (still on it->view and not in use, else nothing happens)
 * @p target as its view, or with @p copy (a spilled file) no view at all;
 * what it held goes to @p tk.
 * @return 1 when the entry took it; 0 (the caller frees @p copy)
 */
static int bound_swap(mfs_blob_table *t, const bound_item *it, mfs_view *target,
		      mfs_rfile *copy, taken *tk)
{
	int done = 0;
	*tk = (taken){NULL, NULL};
	pthread_mutex_lock(&t->mu);
	mfs_blob_entry *e = find(t, it->ino, NULL);
	if (e && e->view == it->view && !e->use) {
		*tk = (taken){e->file, e->view};
		if (copy) {
			e->view = NULL;
			e->file = copy;
		} else {
			mfs_view_ref(target);
			e->view = target;
			e->file = NULL;
		}
		done = 1;
	}
	pthread_mutex_unlock(&t->mu);
	return done;
}

/* A copy of entry @p it failed: the entry keeps its view for good. */
static void bound_failed(mfs_blob_table *t, const bound_item *it, int rc,
			 mfs_blob_table_bound *res)
{
	pthread_mutex_lock(&t->mu);
	mfs_blob_entry *e = find(t, it->ino, NULL);
	if (e && e->view == it->view)
		e->spill_failed = 1;
	pthread_mutex_unlock(&t->mu);
	if (res->failed++ == 0) {
		res->first_error = rc;
		memcpy(res->failed_repo, it->repo, sizeof(res->failed_repo));
		memcpy(res->failed_etag, it->etag, sizeof(res->failed_etag));
	}
}

/* Deal with one entry whose view goes (bound_views): share or spill. */
static void bound_one(mfs_blob_table *t, const bound_item *it, const view_set *vs,
		      mfs_blob_table_bound *res)
{
	/* a view kept that has the blob, the newest first; an entry whose own
	 * view lacks it reads nothing anywhere (-ESTALE): any kept view will do */
	mfs_view *target = NULL;
	int own = mfs_view_has_blob(it->view, it->repo, it->etag);
	for (size_t i = vs->n; i-- > 0 && !target;)
		if (vs->v[i].keep &&
		    (own == 0 || mfs_view_has_blob(vs->v[i].view, it->repo, it->etag) == 1))
			target = vs->v[i].view;
	taken tk;
	if (target) {
		res->shared += bound_swap(t, it, target, NULL, &tk);
		release_taken(&tk, 1);
		return;
	}
	mfs_rfile *f, *copy = NULL;
	int rc = own < 0 ? own : mfs_rfile_open_in(t->r, it->view, it->repo, it->etag, &f);
	if (rc == 0) {
		rc = mfs_rfile_spill(t->r, f, t->spill, &copy);
		mfs_rfile_close(f);
	}
	if (rc < 0) {
		bound_failed(t, it, rc, res);
		return;
	}
	uint64_t size = copy->size;
	if (bound_swap(t, it, NULL, copy, &tk)) {
		res->spilled++;
		res->spilled_bytes += size;
	} else {
		mfs_rfile_close(copy); /* read meanwhile, or gone: next time */
	}
	release_taken(&tk, 1);
}

int mfs_blob_table_bound_views(mfs_blob_table *t, mfs_blob_table_bound *res)
{
	memset(res, 0, sizeof(*res));
	if (!t->max_views)
		return 0;
	view_set vs = {0};
	table_views(t, &vs, 1);
	pthread_mutex_lock(&t->mu);
	uint64_t pass = ++t->pass;
	pthread_mutex_unlock(&t->mu);
	res->views_before = res->views = vs.n;
	if (vs.nomem || vs.n <= t->max_views) {
		int nomem = vs.nomem;
		view_set_release(&vs, 1);
		return nomem ? -ENOMEM : 0;
	}
	/* keep the newest (where the blobs still in the store are) and the
	 * oldest: a view that has lived long is likely to go on living, and
	 * it holds every blob that was already in the store when it began */
	qsort(vs.v, vs.n, sizeof(*vs.v), by_generation);
	for (size_t i = 0; i < vs.n; i++)
		vs.v[i].keep = i + 1 < t->max_views || i + 1 == vs.n;
	enum { BATCH = SWEEP_BATCH };
	bound_item *items = malloc(BATCH * sizeof(*items));
	if (!items) {
		view_set_release(&vs, 1);
		return -ENOMEM;
	}
	for (;;) {
		size_t n = 0;
		pthread_mutex_lock(&t->mu);
		for (size_t b = 0; b < t->n_buckets && n < BATCH; b++)
			for (mfs_blob_entry *e = t->buckets[b]; e && n < BATCH; e = e->next) {
				if (!e->view || e->use || e->spill_failed || e->tried == pass)
					continue;
				size_t k = view_set_find(&vs, e->view);
				if (k == vs.n || vs.v[k].keep)
					continue; /* a view kept, or one made since */
				e->tried = pass;
				bound_item *it = &items[n++];
				it->ino = e->ino;
				mfs_view_ref(e->view);
				it->view = e->view;
				memcpy(it->repo, e->repo, sizeof(it->repo));
				memcpy(it->etag, e->etag, sizeof(it->etag));
			}
		pthread_mutex_unlock(&t->mu);
		for (size_t i = 0; i < n; i++) {
			bound_one(t, &items[i], &vs, res);
			mfs_view_unref(items[i].view);
		}
		if (n < BATCH)
			break;
	}
	free(items);
	view_set_release(&vs, 1); /* the last references of the views let go */
	view_set now = {0};
	table_views(t, &now, 0);
	res->views = now.n;
	view_set_release(&now, 0);
	return 0;
}

void mfs_blob_table_stats_get(mfs_blob_table *t, mfs_blob_table_stats *out)
{
	memset(out, 0, sizeof *out);
	view_set vs = {0};
	pthread_mutex_lock(&t->mu);
	for (size_t b = 0; b < t->n_buckets; b++)
		for (mfs_blob_entry *e = t->buckets[b]; e; e = e->next) {
			out->entries++;
			out->files += e->file != NULL;
			if (!e->view) {
				out->spilled++;
				continue;
			}
			out->behind += mfs_view_generation(e->view) < t->newest;
			view_set_add(&vs, e->view, 0);
		}
	out->views = vs.n;
	pthread_mutex_unlock(&t->mu);
	view_set_release(&vs, 0);
	if (t->spill) { /* set before the table is shared (set_bound) */
		mfs_spill_stats ss;
		mfs_spill_stats_get(t->spill, &ss);
		out->spill_bytes = ss.bytes;
		out->spill_peak = ss.peak;
	}
}
