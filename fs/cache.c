/*
 * cache.c - decoded-chunk cache and its prefetch on a worker pool (see
 * cache.h; the threads are index/pool.h's).
 *
 * One mutex guards the table, the LRU list, the prefetch jobs and the
 * counters; it is never held across a decode or a malloc of chunk bytes.
 * It is taken before the pool's lock (the cache submits and takes back
 * tasks with it held), never after: the pool calls the cache's task
 * functions without its own.  Decodes are
 * milliseconds, lock holds are a few hundred nanoseconds, so one lock does
 * not limit a 2..64-core machine at 1 MiB chunks.
 *
 * Entry states:
 *   QUEUED   a prefetch job exists, nobody decodes yet; no bytes
 *   FILLING  one thread decodes into e->data; others wait on fill_cv
 *   READY    e->data valid; on the LRU list exactly when refs == 0
 *   FAILED   removed from the table; freed when the last waiter lets go
 * refs counts pins: readers, waiters, and one for a queued job.
 */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

enum { ST_QUEUED, ST_FILLING, ST_READY, ST_FAILED };

/*
 * A prefetch decode: one chunk, and when it belongs to a batch with a batch
 * fill, that fill and the batch's number (its other chunks' jobs share it).
 * It lives in its entry (an entry has at most one job: a job is made only
 * for a key not in the table, and put back only by the worker running it),
 * which its pin keeps alive.  From its enqueue until it is settled it is on
 * the cache's job list, which is what drain and busy look at: a job on the
 * list is queued on the pool, parked, running, or held by a running batch
 * fill.
 *
 * A batch with a batch fill puts one task on the pool, its first chunk's
 * (the leader); the others are parked on the list, and the worker that runs
 * the leader hands the batch fill every parked chunk of the batch at once.
 * (A task per chunk would let a second worker start on a chunk the first
 * one's batch did not get to take back from the pool: the batch would be
 * split in two calls.)
 */
typedef struct pf_job {
	mfs_pool_task task; /* arg: the entry */
	mfs_cache *c;
	mfs_cache_fill_fn fill;
	void *ud;
	mfs_cache_batch_fn batch;
	uint64_t batch_id;
	struct pf_job *prev, *next; /* the cache's job list */
	int queued; /* its task is (or was last seen) in the pool's queue */
	int parked; /* waits for its batch's leader; not on the pool */
	int leader; /* its task runs the batch fill for its batch */
} pf_job;

struct mfs_cache_entry {
	mfs_chunk_key key;
	struct mfs_cache_entry *hnext;	       /* hash chain */
	struct mfs_cache_entry *lprev, *lnext; /* LRU list (READY, unpinned) */
	void *data;
	size_t len;
	unsigned refs;
	int state;
	int err;
	int in_table;
	int prefetch; /* bytes counted in pf_bytes */
	size_t served; /* bytes handed to a reader that keeps them (drop-behind) */
	int shared;    /* the fill said others use the chunk: no drop-behind */
	int cpu_only;  /* a batch fill left it: the plain fill decodes it */
	pf_job job;    /* its prefetch job, when it has one (on c->jobs) */
};

struct mfs_cache {
	pthread_mutex_t mu;
	pthread_cond_t fill_cv; /* an entry left FILLING */
	pthread_cond_t idle_cv; /* a job left the job list (for drain) */

	mfs_cache_entry **buckets;
	size_t nbuckets; /* power of two */

	mfs_cache_entry lru; /* sentinel: lru.lnext = most recent */

	size_t budget;
	size_t bytes;	 /* data bytes of entries in the table + in flight */
	size_t pf_bytes; /* bytes of QUEUED + prefetch FILLING entries */

	mfs_pool *pool;	    /* the prefetch workers; NULL without prefetch */
	mfs_pool_group grp; /* every task of this cache on the pool */
	pf_job jobs;	    /* sentinel of the job list, oldest first */
	size_t qcap, qlen;  /* jobs queued on the pool (not started) */
	uint64_t batch_seq; /* the last batch number given */
	unsigned nworkers;
	int stop;

	mfs_cache_stats st;
};

#define QUEUE_CAP 256

static size_t key_hash(const mfs_chunk_key *k, size_t nbuckets)
{
	uint64_t h;
	memcpy(&h, k->b, sizeof(h)); /* the key is already a hash */
	return (size_t)(h ^ (h >> 29)) & (nbuckets - 1);
}

static mfs_cache_entry *table_find(mfs_cache *c, const mfs_chunk_key *k)
{
	mfs_cache_entry *e = c->buckets[key_hash(k, c->nbuckets)];
	while (e && memcmp(e->key.b, k->b, sizeof(k->b)) != 0)
		e = e->hnext;
	return e;
}

static void table_insert(mfs_cache *c, mfs_cache_entry *e)
{
	size_t h = key_hash(&e->key, c->nbuckets);
	e->hnext = c->buckets[h];
	c->buckets[h] = e;
	e->in_table = 1;
	c->st.entries++;
}

static void table_remove(mfs_cache *c, mfs_cache_entry *e)
{
	mfs_cache_entry **p = &c->buckets[key_hash(&e->key, c->nbuckets)];
	while (*p && *p != e)
		p = &(*p)->hnext;
	if (*p)
		*p = e->hnext;
	e->hnext = NULL;
	e->in_table = 0;
	c->st.entries--;
}

static void lru_unlink(mfs_cache_entry *e)
{
	e->lprev->lnext = e->lnext;
	e->lnext->lprev = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_push_front(mfs_cache *c, mfs_cache_entry *e)
{
	e->lnext = c->lru.lnext;
	e->lprev = &c->lru;
	c->lru.lnext->lprev = e;
	c->lru.lnext = e;
}

/* At the cold end: a spent entry goes before any other. */
static void lru_push_back(mfs_cache *c, mfs_cache_entry *e)
{
	e->lprev = c->lru.lprev;
	e->lnext = &c->lru;
	c->lru.lprev->lnext = e;
	c->lru.lprev = e;
}

/* Every byte of @p e has been served to a reader that keeps it, and no one
 * else is known to use the chunk. */
static int spent(const mfs_cache_entry *e)
{
	return !e->shared && e->served >= e->len;
}

static void entry_free(mfs_cache_entry *e)
{
	free(e->data);
	free(e);
}

static void evict_locked(mfs_cache *c, mfs_cache_entry *v, size_t need, void **reuse)
{
	lru_unlink(v);
	table_remove(c, v);
	c->bytes -= v->len;
	c->st.evictions++;
	if (reuse && !*reuse && v->len == need) {
		*reuse = v->data;
		v->data = NULL;
	}
	entry_free(v);
}

/*
 * Make room for @p need more bytes.  First drop-behind: spent entries (at the
 * cold end of the LRU) are evicted until @p need bytes have been freed, so a
 * stream of reads recycles the memory of what the kernel already holds
 * instead of growing the cache (fresh pages cost as much as decoding).  Then
 * least-recently used unpinned entries go until the budget holds @p need.
 * With @p reuse, the bytes of the first evicted entry of exactly @p need
 * bytes are handed back instead of freed (caller owns them), so a cache
 * turning over same-sized chunks neither frees nor faults in fresh pages.
 */
static void make_room(mfs_cache *c, size_t need, void **reuse)
{
	size_t freed = 0;
	while (freed < need && c->lru.lprev != &c->lru && spent(c->lru.lprev)) {
		freed += c->lru.lprev->len;
		c->st.drop_behind++;
		evict_locked(c, c->lru.lprev, need, reuse);
	}
	while (c->bytes + need > c->budget && c->lru.lprev != &c->lru)
		evict_locked(c, c->lru.lprev, need, reuse);
}

static void note_bytes(mfs_cache *c)
{
	if (c->bytes > c->st.bytes_peak)
		c->st.bytes_peak = c->bytes;
	c->st.bytes = c->bytes;
}

/* Drop one pin, with c->mu held. */
static void unpin_locked(mfs_cache *c, mfs_cache_entry *e)
{
	if (--e->refs > 0)
		return;
	if (e->state == ST_READY && e->in_table) {
		if (spent(e))
			lru_push_back(c, e);
		else
			lru_push_front(c, e);
		make_room(c, 0, NULL); /* trims back after a pinned overshoot */
		note_bytes(c);
	} else if (!e->in_table) {
		entry_free(e);
	}
	/* A QUEUED entry always holds its job's pin, so refs == 0 never meets it. */
}

/*
 * Decode into @p e, which the caller has just moved to FILLING (c->mu held
 * on entry and on return, dropped during the decode).
 */
static int fill_entry(mfs_cache *c, mfs_cache_entry *e, mfs_cache_fill_fn fill, void *ud,
		      mfs_codec_ws *ws)
{
	void *data = NULL;
	make_room(c, e->len, e->len ? &data : NULL);
	c->bytes += e->len;
	note_bytes(c);
	c->st.fills++;
	pthread_mutex_unlock(&c->mu);

	int rc = 0;
	if (!data)
		data = malloc(e->len ? e->len : 1);
	if (!data)
		rc = -ENOMEM;
	else
		rc = fill(ud, &e->key, data, e->len, ws);

	pthread_mutex_lock(&c->mu);
	if (e->prefetch) {
		c->pf_bytes -= e->len;
		e->prefetch = 0;
	}
	if (rc >= 0) {
		e->shared = rc == MFS_CACHE_FILL_SHARED;
		rc = 0;
		e->data = data;
		e->state = ST_READY;
	} else {
		free(data);
		e->state = ST_FAILED;
		e->err = rc;
		c->bytes -= e->len;
		table_remove(c, e);
		c->st.fill_errors++;
		note_bytes(c);
	}
	pthread_cond_broadcast(&c->fill_cv);
	return rc;
}

int mfs_cache_get(mfs_cache *c, const mfs_chunk_key *key, size_t len,
		  mfs_cache_fill_fn fill, void *ud, mfs_codec_ws *ws,
		  mfs_cache_entry **out)
{
	*out = NULL;
	pthread_mutex_lock(&c->mu);
	mfs_cache_entry *e = table_find(c, key);
	if (e && e->state == ST_READY) {
		if (e->refs++ == 0)
			lru_unlink(e);
		c->st.hits++;
		pthread_mutex_unlock(&c->mu);
		*out = e;
		return 0;
	}
	if (e && e->state == ST_FILLING) {
		e->refs++;
		c->st.waits++;
		while (e->state == ST_FILLING)
			pthread_cond_wait(&c->fill_cv, &c->mu);
		if (e->state == ST_READY) {
			pthread_mutex_unlock(&c->mu);
			*out = e;
			return 0;
		}
		int rc = e->err;
		unpin_locked(c, e);
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	if (e) {
		/* QUEUED: take the job over rather than wait behind the queue. */
		e->state = ST_FILLING;
		e->refs++;
	} else {
		e = calloc(1, sizeof(*e));
		if (!e) {
			pthread_mutex_unlock(&c->mu);
			return -ENOMEM;
		}
		e->key = *key;
		e->len = len;
		e->state = ST_FILLING;
		e->refs = 1;
		table_insert(c, e);
	}
	c->st.misses++;
	int rc = fill_entry(c, e, fill, ud, ws);
	if (rc < 0) {
		unpin_locked(c, e);
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	pthread_mutex_unlock(&c->mu);
	*out = e;
	return 0;
}

const void *mfs_cache_entry_data(const mfs_cache_entry *e)
{
	return e->data;
}

size_t mfs_cache_entry_len(const mfs_cache_entry *e)
{
	return e->len;
}

void mfs_cache_release(mfs_cache *c, mfs_cache_entry *e)
{
	mfs_cache_release_served(c, e, 0);
}

void mfs_cache_release_served(mfs_cache *c, mfs_cache_entry *e, size_t served)
{
	if (!e)
		return;
	pthread_mutex_lock(&c->mu);
	e->served += served;
	unpin_locked(c, e);
	pthread_mutex_unlock(&c->mu);
}

static void job_run(mfs_pool_task *t, mfs_codec_ws *ws);
static void job_cancel_task(mfs_pool_task *t);

static void job_list_add(mfs_cache *c, pf_job *j)
{
	j->prev = c->jobs.prev;
	j->next = &c->jobs;
	c->jobs.prev->next = j;
	c->jobs.prev = j;
}

/* The job is settled (ran, or dropped): it leaves the list, which drain
 * waits on.  Before its entry's pin goes: the pin keeps the job alive. */
static void job_list_remove(mfs_cache *c, pf_job *j)
{
	j->prev->next = j->next;
	j->next->prev = j->prev;
	j->prev = j->next = NULL;
	pthread_cond_broadcast(&c->idle_cv);
}

/* Queue one chunk's job, with c->mu held: 0 (queued or nothing to do),
 * MFS_E_BUSY, -ENOMEM. */
static int enqueue_locked(mfs_cache *c, const mfs_chunk_key *key, size_t len,
			  mfs_cache_fill_fn fill, void *ud, mfs_cache_batch_fn batch,
			  uint64_t batch_id, int *have_leader)
{
	if (table_find(c, key))
		return 0;
	if (c->stop || c->qlen == c->qcap || c->pf_bytes + len > c->budget / 2) {
		c->st.prefetch_dropped++;
		return MFS_E_BUSY;
	}
	mfs_cache_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->key = *key;
	e->len = len;
	e->state = ST_QUEUED;
	e->refs = 1; /* the job's pin */
	e->prefetch = 1;
	e->job = (pf_job){.task = {.run = job_run, .cancel = job_cancel_task, .arg = e,
				   .group = &c->grp},
			  .c = c, .fill = fill, .ud = ud, .batch = batch, .batch_id = batch_id};
	if (batch && *have_leader) {
		e->job.parked = 1;
	} else if (mfs_pool_submit(c->pool, &e->job.task) == 0) {
		e->job.queued = 1;
		e->job.leader = batch != NULL;
		if (batch)
			*have_leader = 1;
	} else {
		/* the pool is shutting down */
		free(e);
		c->st.prefetch_dropped++;
		return MFS_E_BUSY;
	}
	c->pf_bytes += len;
	table_insert(c, e);
	job_list_add(c, &e->job);
	c->qlen++;
	c->st.prefetch_queued++;
	return 0;
}

int mfs_cache_prefetch(mfs_cache *c, const mfs_chunk_key *key, size_t len,
		       mfs_cache_fill_fn fill, void *ud)
{
	if (c->nworkers == 0)
		return 0;
	pthread_mutex_lock(&c->mu);
	int rc = enqueue_locked(c, key, len, fill, ud, NULL, 0, NULL);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int mfs_cache_prefetch_batch(mfs_cache *c, const mfs_cache_want *w, size_t n,
			     mfs_cache_fill_fn fill, mfs_cache_batch_fn batch, void *ud,
			     size_t *queued)
{
	size_t i = 0;
	int rc = 0;
	if (c->nworkers == 0) {
		if (queued)
			*queued = n;
		return 0;
	}
	pthread_mutex_lock(&c->mu);
	uint64_t id = batch ? ++c->batch_seq : 0;
	/* plain chunks: a task each, one per worker; with a batch fill, one
	 * task (the leader) and the rest parked for it */
	int have_leader = 0;
	for (; i < n && rc == 0; i++)
		if ((rc = enqueue_locked(c, &w[i].key, w[i].len, fill, ud, batch, id,
					 &have_leader)) < 0)
			break;
	pthread_mutex_unlock(&c->mu);
	if (queued)
		*queued = i;
	return rc;
}

/* Forget a job that will not run (its task no longer queued, so the
 * caller has counted it out of qlen): its entry goes if nobody took it
 * over. */
static void job_cancel_locked(mfs_cache *c, mfs_cache_entry *e)
{
	if (e->state == ST_QUEUED) {
		table_remove(c, e);
		c->pf_bytes -= e->len;
		e->prefetch = 0;
		e->state = ST_FAILED;
		e->err = MFS_E_BUSY;
	}
	job_list_remove(c, &e->job);
	unpin_locked(c, e);
}

/* The pool dropped the job's task before it ran (mfs_cache_free). */
static void job_cancel_task(mfs_pool_task *t)
{
	mfs_cache_entry *e = t->arg;
	mfs_cache *c = e->job.c;
	pthread_mutex_lock(&c->mu);
	e->job.queued = 0;
	c->qlen--;
	job_cancel_locked(c, e);
	pthread_mutex_unlock(&c->mu);
}

/* Take a queued job's task back from the pool, with c->mu held.
 * @return 1 (it will not run: the caller settles it), 0 (a worker has it) */
static int job_take_locked(mfs_cache *c, pf_job *j)
{
	if (!j->queued || !mfs_pool_take(c->pool, &j->task))
		return 0;
	j->queued = 0;
	c->qlen--;
	return 1;
}

/* Put @p e back at the front of the queue for the plain fill (its pin stays
 * with its job), with c->mu held. @return 0, or MFS_E_BUSY when full */
static int requeue_front_locked(mfs_cache *c, mfs_cache_entry *e)
{
	if (c->qlen == c->qcap || c->stop)
		return MFS_E_BUSY;
	e->job.queued = 1;
	if (mfs_pool_submit_front(c->pool, &e->job.task) < 0) {
		e->job.queued = 0;
		return MFS_E_BUSY;
	}
	c->qlen++;
	return 0;
}

/*
 * A worker runs the leader @p e0 of a batch with a batch fill: hand the
 * batch fill every chunk of the batch still queued, the leader's and the
 * parked ones (their pins and jobs coming along), then settle each as the
 * fill says.  A chunk a reader took over meanwhile is left to the reader
 * (its job goes), as is the leader's.  c->mu held on entry and on return.
 */
static void run_batch_locked(mfs_cache *c, mfs_cache_entry *e0, mfs_codec_ws *ws)
{
	/* a batch fill's chunks: at most the queue's (the parked ones count in
	 * it) and the leader's */
	mfs_cache_entry *bent[QUEUE_CAP + 1];
	mfs_cache_fill_item bitem[QUEUE_CAP + 1];
	pf_job *j = &e0->job;
	uint64_t id = j->batch_id;
	mfs_cache_batch_fn batch = j->batch;
	mfs_cache_fill_fn fill = j->fill;
	void *ud = j->ud;
	j->leader = 0;
	size_t m = 0;
	int lead = e0->state == ST_QUEUED;
	if (lead)
		bent[m++] = e0;
	for (pf_job *q = c->jobs.next; q != &c->jobs;) {
		pf_job *next = q->next;
		mfs_cache_entry *e = q->task.arg;
		if (q->parked && q->batch_id == id) {
			q->parked = 0;
			c->qlen--;
			if (e->state == ST_QUEUED && m < QUEUE_CAP + 1) {
				bent[m++] = e;
			} else {
				job_list_remove(c, q);
				unpin_locked(c, e);
			}
		}
		q = next;
	}
	if (!lead) {
		job_list_remove(c, j);
		unpin_locked(c, e0);
	}
	if (m == 0)
		return;
	for (size_t k = 0; k < m; k++) {
		mfs_cache_entry *e = bent[k];
		e->state = ST_FILLING;
		void *data = NULL;
		make_room(c, e->len, e->len ? &data : NULL);
		c->bytes += e->len;
		bitem[k] = (mfs_cache_fill_item){
		    .key = &e->key, .dst = data, .len = e->len, .status = MFS_E_UNSUPPORTED};
	}
	note_bytes(c);
	c->st.batches++;
	pthread_mutex_unlock(&c->mu);

	for (size_t k = 0; k < m; k++) {
		mfs_cache_fill_item *it = &bitem[k];
		if (!it->dst && !(it->dst = malloc(it->len ? it->len : 1)))
			it->status = -ENOMEM; /* left alone by the batch fill */
	}
	batch(ud, bitem, m, ws);

	pthread_mutex_lock(&c->mu);
	for (size_t k = 0; k < m; k++) {
		mfs_cache_entry *e = bent[k];
		mfs_cache_fill_item *it = &bitem[k];
		if (it->status >= 0) {
			c->pf_bytes -= e->len;
			e->prefetch = 0;
			e->shared = it->status == MFS_CACHE_FILL_SHARED;
			e->data = it->dst;
			e->state = ST_READY;
			c->st.fills++;
			c->st.prefetch_fills++;
			c->st.batch_fills++;
			job_list_remove(c, &e->job);
			unpin_locked(c, e);
			continue;
		}
		free(it->dst);
		c->bytes -= e->len;
		if (it->status == MFS_E_UNSUPPORTED) {
			c->st.batch_left++;
			e->cpu_only = 1;
			e->state = ST_QUEUED;
			if (requeue_front_locked(c, e) == 0)
				continue;
			/* no room in the queue: this worker decodes it now */
			e->state = ST_FILLING;
			if (fill_entry(c, e, fill, ud, ws) == 0)
				c->st.prefetch_fills++;
			job_list_remove(c, &e->job);
			unpin_locked(c, e);
			continue;
		}
		c->pf_bytes -= e->len;
		e->prefetch = 0;
		e->state = ST_FAILED;
		e->err = it->status;
		table_remove(c, e);
		c->st.fill_errors++;
		job_list_remove(c, &e->job);
		unpin_locked(c, e);
	}
	note_bytes(c);
	pthread_cond_broadcast(&c->fill_cv);
}

/* A pool worker runs a job's task. */
static void job_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	mfs_cache_entry *e = t->arg; /* alive: the job's pin */
	mfs_cache *c = e->job.c;
	pthread_mutex_lock(&c->mu);
	pf_job *j = &e->job;
	j->queued = 0;
	c->qlen--;
	if (j->leader) {
		run_batch_locked(c, e, ws);
	} else if (e->state != ST_QUEUED) {
		/* taken over by a reader: nothing to do */
		job_list_remove(c, j);
		unpin_locked(c, e);
	} else {
		e->state = ST_FILLING;
		if (fill_entry(c, e, j->fill, j->ud, ws) == 0)
			c->st.prefetch_fills++;
		job_list_remove(c, j);
		unpin_locked(c, e);
	}
	pthread_mutex_unlock(&c->mu);
}

void mfs_cache_drain(mfs_cache *c, void *ud)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		/* again after each wait: a batch fill that finishes puts the chunks
		 * it left back in the queue */
		int busy = 0;
		for (pf_job *q = c->jobs.next; q != &c->jobs;) {
			pf_job *next = q->next;
			if (q->ud == ud) {
				if (q->parked) {
					q->parked = 0;
					c->qlen--;
					job_cancel_locked(c, q->task.arg);
				} else if (job_take_locked(c, q)) {
					job_cancel_locked(c, q->task.arg);
				} else {
					busy = 1; /* running, or a worker is about to */
				}
			}
			q = next;
		}
		if (!busy)
			break;
		pthread_cond_wait(&c->idle_cv, &c->mu);
	}
	pthread_mutex_unlock(&c->mu);
}

int mfs_cache_busy(mfs_cache *c, void *ud)
{
	if (!c)
		return 0;
	pthread_mutex_lock(&c->mu);
	int busy = 0;
	for (pf_job *q = c->jobs.next; q != &c->jobs && !busy; q = q->next)
		busy = q->ud == ud;
	pthread_mutex_unlock(&c->mu);
	return busy;
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

int mfs_cache_create(size_t budget_bytes, unsigned workers, mfs_cache **out)
{
	*out = NULL;
	mfs_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->budget = budget_bytes;
	c->st.budget = budget_bytes;
	/* about one bucket per 64 KiB of budget: short chains at 1 MiB chunks */
	size_t nb = budget_bytes / (64 << 10);
	c->nbuckets = pow2_at_least(nb < 1024 ? 1024 : nb > (1u << 22) ? (1u << 22) : nb);
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	c->qcap = QUEUE_CAP;
	if (!c->buckets) {
		free(c);
		return -ENOMEM;
	}
	c->lru.lnext = c->lru.lprev = &c->lru;
	c->jobs.next = c->jobs.prev = &c->jobs;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->fill_cv, NULL);
	pthread_cond_init(&c->idle_cv, NULL);
	if (workers > MFS_POOL_MAX_THREADS)
		workers = MFS_POOL_MAX_THREADS;
	if (workers) {
		int rc = mfs_pool_create(workers, &c->pool);
		if (rc < 0) {
			mfs_cache_free(c);
			return rc;
		}
		c->nworkers = workers;
	}
	*out = c;
	return 0;
}

void mfs_cache_free(mfs_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = 1; /* no new job, nothing put back */
	pthread_mutex_unlock(&c->mu);
	if (c->pool) {
		/* queued jobs are dropped (job_cancel_task), running ones finish */
		mfs_pool_drain(c->pool, &c->grp);
		mfs_pool_free(c->pool);
	}
	/* what is left on the list waited for a leader that will not run */
	pthread_mutex_lock(&c->mu);
	while (c->jobs.next != &c->jobs) {
		pf_job *q = c->jobs.next;
		q->parked = 0;
		c->qlen--;
		job_cancel_locked(c, q->task.arg);
	}
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; i < c->nbuckets; i++) {
		mfs_cache_entry *e = c->buckets[i];
		while (e) {
			mfs_cache_entry *n = e->hnext;
			entry_free(e);
			e = n;
		}
	}
	pthread_cond_destroy(&c->fill_cv);
	pthread_cond_destroy(&c->idle_cv);
	pthread_mutex_destroy(&c->mu);
	free(c->buckets);
	free(c);
}

void mfs_cache_stats_get(mfs_cache *c, mfs_cache_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->st;
	out->bytes = c->bytes;
	pthread_mutex_unlock(&c->mu);
}
