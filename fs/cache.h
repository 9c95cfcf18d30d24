/*
 * cache.h - the decoded-chunk cache: a byte-bounded LRU of decoded chunks,
 * shared by every thread of a mount, and its prefetch, which runs on a
 * worker pool of its own (index/pool.h: the threads, each with its codec
 * workspace, and their FIFO; the cache keeps which chunks are queued).
 *
 * Keys are chunk keys (XXH3-128 of the raw bytes), so an entry never goes
 * stale: the same key always decodes to the same bytes, whatever repo or
 * file asked for it.
 *
 * Use:
 *   mfs_cache_get(c, key, len, fill, ud, ws, &e)   pin the decoded chunk
 *   ... read mfs_cache_entry_data(e) ...
 *   mfs_cache_release(c, e)                        unpin it
 *
 * Guarantees:
 *   - one decode per key at a time: a thread that asks for a chunk another
 *     thread (or a prefetch worker) is decoding waits for that decode;
 *   - a failed decode is not cached: every thread waiting on it gets the
 *     error, and the next get tries again;
 *   - a pinned entry is never evicted nor freed;
 *   - spent entries (every byte served to a reader that keeps a copy, see
 *     mfs_cache_release_served) are evicted before the cache grows, unless
 *     their fill said the chunk is shared (MFS_CACHE_FILL_SHARED);
 *   - the bytes of unpinned entries stay within the budget.  Pinned and
 *     in-flight entries may take the total over it while they are held (at
 *     most one chunk per reading thread and per prefetch worker: the fixed
 *     overhead); releasing trims back to the budget.
 *
 * Prefetch: mfs_cache_prefetch() queues a decode on the worker pool and
 * returns at once.  A queued chunk is not decoded twice: a reader that asks
 * for it before a worker starts takes the job over and decodes it itself,
 * so a reader never waits behind the queue.  Prefetch never pushes the
 * queued + in-flight prefetch bytes over half the budget (so it cannot
 * evict what a reader is about to use), and is dropped when the queue is
 * full.
 *
 * Batches: mfs_cache_prefetch_batch() queues the chunks a reader will want
 * next as one batch.  The workers are its CPU backend: each takes the next
 * chunk of the queue, so a batch's chunks decode in parallel.  A batch may
 * also carry a batch fill (a GPU backend, fs/batch.h): the first worker to
 * reach one of its chunks hands it every chunk of the batch still queued,
 * at once; the chunks the batch fill does not take go back to the front of
 * the queue, to be decoded one by one with the plain fill.
 *
 * Threads: every call is thread-safe.  The fill function runs without the
 * cache lock held, on the calling thread (get) or a worker (prefetch); it
 * may itself call mfs_cache_get for another key (reference chunks).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_CACHE_H
#define MFS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "store.h"

typedef struct mfs_cache mfs_cache;
typedef struct mfs_cache_entry mfs_cache_entry;

/* A fill's success when the chunk is used by more than one extent or chunk
 * (a base's chunk that fine-tunes decode against, a tensor shared by two
 * models): the entry is then exempt from drop-behind, so that the next
 * reader of it, often right after, finds it decoded. */
#define MFS_CACHE_FILL_SHARED 1

/**
 * Decode chunk @p key into @p dst (exactly @p len bytes), verified.
 * @param[in] ud  the pointer given with the get or prefetch call
 * @param[in] ws  the calling thread's workspace
 * @return 0 or MFS_CACHE_FILL_SHARED (decoded), or a negative code (the entry
 *         is then not cached)
 */
typedef int (*mfs_cache_fill_fn)(void *ud, const mfs_chunk_key *key, void *dst,
				 size_t len, mfs_codec_ws *ws);

/**
 * Create a cache.
 * @param[in]  budget_bytes  bytes of decoded chunks kept (at least one chunk
 *                           is always admitted, whatever the budget)
 * @param[in]  workers       prefetch worker threads, MFS_POOL_MAX_THREADS
 *                           when more are asked for (0: no prefetch; calls
 *                           to mfs_cache_prefetch then do nothing)
 * @param[out] out           free with mfs_cache_free()
 * @return 0, -ENOMEM, or -errno from pthread_create (no cache then)
 */
int mfs_cache_create(size_t budget_bytes, unsigned workers, mfs_cache **out);

/**
 * Stop the workers (queued prefetches are dropped, running ones finish) and
 * free the cache; NULL is a no-op.  No entry may be pinned.
 */
void mfs_cache_free(mfs_cache *c);

/**
 * Get the decoded chunk @p key, decoding it with @p fill on a miss.
 * @param[in]  len   raw length of the chunk (from the extent)
 * @param[in]  ws    the calling thread's workspace, passed to @p fill
 * @param[out] out   pinned entry: read it with mfs_cache_entry_data(), then
 *                   give it back with mfs_cache_release() (exactly once)
 * @return 0; the fill function's error (nothing is pinned then); -ENOMEM
 */
int mfs_cache_get(mfs_cache *c, const mfs_chunk_key *key, size_t len,
		  mfs_cache_fill_fn fill, void *ud, mfs_codec_ws *ws,
		  mfs_cache_entry **out);

/** The decoded bytes of a pinned entry: valid until mfs_cache_release(). */
const void *mfs_cache_entry_data(const mfs_cache_entry *e);

/** The length of a pinned entry's bytes. */
size_t mfs_cache_entry_len(const mfs_cache_entry *e);

/** Unpin an entry got from mfs_cache_get(); NULL is a no-op. */
void mfs_cache_release(mfs_cache *c, mfs_cache_entry *e);

/**
 * Unpin like mfs_cache_release(), noting that @p served bytes of the entry
 * went to a reader that keeps its own copy (the kernel page cache of a
 * mount).  Once as many bytes as the entry holds have been served, the entry
 * is "spent": it moves to the cold end of the LRU and is evicted before the
 * cache grows (drop-behind), so a sequential stream recycles a few chunks'
 * memory instead of faulting in fresh pages for every chunk.  The count is a
 * hint (overlapping reads count twice); it never affects which bytes are
 * returned, only what is evicted first.
 */
void mfs_cache_release_served(mfs_cache *c, mfs_cache_entry *e, size_t served);

/**
 * Queue a decode of @p key on the worker pool, unless the chunk is cached,
 * being decoded or queued already.  Never blocks on a decode.
 * @param[in] ud  passed to @p fill; must stay valid until the job has run
 *                or mfs_cache_drain(c, ud) has returned
 * @return 0 (queued, or nothing to do), MFS_E_BUSY (queue full or prefetch
 *         over its share of the budget: dropped), -ENOMEM
 */
int mfs_cache_prefetch(mfs_cache *c, const mfs_chunk_key *key, size_t len,
		       mfs_cache_fill_fn fill, void *ud);

/* One chunk of a prefetch batch. */
typedef struct mfs_cache_want {
	mfs_chunk_key key;
	size_t len; /* its raw length (from the extent) */
} mfs_cache_want;

/* A chunk handed to a batch fill. */
typedef struct mfs_cache_fill_item {
	const mfs_chunk_key *key;
	void *dst;  /* len bytes for the decoded chunk */
	size_t len;
	int status; /* in: MFS_E_UNSUPPORTED, or -ENOMEM (no memory for dst:
		       leave it alone).  out: 0 or MFS_CACHE_FILL_SHARED
		       (decoded and verified into dst), MFS_E_UNSUPPORTED (not
		       taken: the pool decodes it with the plain fill), or another
		       negative code (failed: not cached) */
} mfs_cache_fill_item;

/**
 * Decode what it can of @p n chunks (a GPU backend); the rest keep status
 * MFS_E_UNSUPPORTED.  Runs on a worker without the cache lock.
 */
typedef void (*mfs_cache_batch_fn)(void *ud, mfs_cache_fill_item *items, size_t n,
				   mfs_codec_ws *ws);

/**
 * Queue the decodes of @p n chunks as one batch (see Batches above), in
 * order, skipping those cached, being decoded or queued already; stops at
 * the first that does not fit (queue full, or prefetch over its share).
 * @param[in] fill   decodes one chunk (as mfs_cache_prefetch)
 * @param[in] batch  optional batch fill (NULL: the chunks go to @p fill)
 * @param[in] ud     passed to both; valid as for mfs_cache_prefetch
 * @param[out] queued  optional: chunks of @p w looked at before it stopped
 *                     (queued or already there)
 * @return 0 (all of them looked at), MFS_E_BUSY (stopped early), -ENOMEM
 */
int mfs_cache_prefetch_batch(mfs_cache *c, const mfs_cache_want *w, size_t n,
			     mfs_cache_fill_fn fill, mfs_cache_batch_fn batch, void *ud,
			     size_t *queued);

/**
 * Drop the queued prefetches made with @p ud and wait for the running ones
 * to finish: after it returns no worker uses @p ud.  Call before freeing
 * what @p ud points to.
 */
void mfs_cache_drain(mfs_cache *c, void *ud);

/**
 * Whether a prefetch made with @p ud is queued or being decoded (a
 * snapshot).  NULL cache: 0.
 * @return 1 or 0
 */
int mfs_cache_busy(mfs_cache *c, void *ud);

/* Counters, for tests, logs and `modelfs mount --debug`. */
typedef struct mfs_cache_stats {
	uint64_t hits;	 /* gets served from a ready entry */
	uint64_t misses; /* gets that decoded (including taken-over prefetches) */
	uint64_t waits;	 /* gets that waited for another thread's decode */
	uint64_t fills;	 /* fill calls (get + prefetch) */
	uint64_t fill_errors;
	uint64_t prefetch_queued;
	uint64_t prefetch_fills; /* decodes done by workers */
	uint64_t prefetch_dropped;
	uint64_t evictions;
	uint64_t drop_behind; /* evictions of spent entries (part of evictions) */
	uint64_t entries;    /* entries in the table now */
	uint64_t bytes;	     /* decoded bytes held now (ready + in flight) */
	uint64_t bytes_peak; /* largest `bytes` seen */
	uint64_t budget;
	uint64_t batches;      /* batches handed to a batch fill */
	uint64_t batch_fills;  /* chunks a batch fill decoded */
	uint64_t batch_left;   /* chunks it left to the plain fill */
} mfs_cache_stats;

/** A consistent snapshot of the counters. */
void mfs_cache_stats_get(mfs_cache *c, mfs_cache_stats *out);

#endif
