/*
 * remote.h - a store whose index is a pushed snapshot and whose payloads
 * come from the bucket through a chunk cache: what `modelfs export
 * --remote` and `modelfs mount --remote` read.
 *
 *   mfs_remote *r;
 *   mfs_remote_opts o = {.cache_bytes = 20ull << 30, .poll_seconds = 30};
 *   mfs_remote_open_opts("/var/cache/modelfs", "s3://bucket/models", &o, &r, &e);
 *   mfs_store *s = mfs_remote_store(r);   // read it as any store
 *   mfs_remote_close(r);
 *
 * DIR layout:
 *   data.mdb, lock.mdb   the index: LATEST's when DIR was filled, then each
 *                        newer LATEST's taken in (mfs_remote_refresh)
 *   remote.json          which bucket and which LATEST it holds
 *   cache/               the chunk cache (remote/chunkcache.h), at most
 *                        cache_bytes on disk
 *   refresh/, refresh.lock  a newer index while it is fetched and checked
 *                        (refresh/ is emptied before each use)
 * An empty (or missing) DIR is filled: LATEST is read, the index it names
 * downloaded to a temporary file, checked against LATEST's size and
 * sha256, synced and renamed to data.mdb, so a DIR never holds half an
 * index.  A DIR that holds one already is used as it is and brought up to
 * the bucket's LATEST when it names a newer generation (a bucket that cannot
 * be read then leaves it as it is, said through opts->log); one that holds
 * a local store, or another bucket's index, is refused.
 *
 * A newer LATEST (mfs_remote_refresh, and every opts->poll_seconds on a
 * thread of its own): its index is downloaded into DIR/refresh/, checked
 * as at first open (size, sha256, store format), opened, and copied into
 * DIR's open environment in one write transaction
 * (index/replace.h, mfs_store_replace_index): readers see the old index or
 * the new one whole, never a mix, and a read transaction begun before keeps
 * its snapshot (a mount's open files keep reading what they opened; the
 * payloads of older generations stay readable: packs are append-only and
 * the chunk cache is keyed by content).  A mount notices the new
 * generation as it does a local ingest's.  remote.json is written after
 * the commit: a crash between the two leaves the new index with the old
 * LATEST named, which the next refresh sees is already in (generations
 * compare).  An index that fails its checks, a newer format, or a bucket
 * out of reach: the current index stays, a line says why, and the next poll
 * tries again (an index that failed its check is not downloaded again
 * until LATEST names another).
 *
 * Payloads: every read of the store (mfs_chunk_load, mfs_chunk_payload_read)
 * goes to the chunk cache (index/pack.h, mfs_store_set_payload_source);
 * a fetched payload of a chunk without references is decoded and checked
 * against its key before it is cached, so an altered object is an error
 * naming the chunk, never a cached wrong byte.  A chunk the current index
 * no longer has (read through an older snapshot) is handed out uncached:
 * the reader decodes and re-hashes it to its key before any byte leaves.
 *
 * Threads: every call may run beside the poll thread and the store's
 * readers; mfs_remote_close stops the thread first.
 *
 * Module convention: int return, 0 or a negative code from err.h; messages
 * name DIR and s3://BUCKET/KEY.
 */
#ifndef MFS_REMOTE_REMOTE_H
#define MFS_REMOTE_REMOTE_H

#include <stdint.h>

#include "bucket.h"
#include "chunkcache.h"
#include "s3.h"
#include "store.h"

typedef struct mfs_remote mfs_remote;

/* Levels of the lines a remote store says (the mount's MFS_LOG_* numbers). */
enum { MFS_REMOTE_LOG_ERROR = 0, MFS_REMOTE_LOG_WARN = 1, MFS_REMOTE_LOG_INFO = 2 };

/**
 * Where a remote store's lines go (a newer index taken in, a poll that
 * failed): @p line is one sentence without a newline, valid during the call.
 * Called from the poll thread and from mfs_remote_open_opts.
 */
typedef void (*mfs_remote_log_fn)(void *ud, int level, const char *line);

typedef struct mfs_remote_opts {
	uint64_t cache_bytes;  /* the chunk cache's bound on disk (>= 64 KiB) */
	unsigned poll_seconds; /* read LATEST this often on a thread (0: never) */
	mfs_remote_log_fn log; /* optional: without it nothing is said */
	void *log_ud;
} mfs_remote_opts;

/**
 * Open DIR as a remote store of @p url (s3://BUCKET/PREFIX), with the S3
 * configuration of the environment (mfs_s3_config_load).  An empty DIR is
 * filled from LATEST; a DIR filled before is brought up to LATEST's
 * generation when newer (mfs_remote_refresh; when that fails the DIR's
 * index is used, and o->log says why).  DIR's index is opened writable.
 * With o->poll_seconds, a thread refreshes every that many seconds until
 * mfs_remote_close.
 * @param[out] out  freed with mfs_remote_close()
 * @return 0; MFS_E_NOTFOUND (no LATEST: nothing was pushed there);
 *         MFS_E_VERSION (a newer format); MFS_E_CORRUPT (an index that
 *         is not what LATEST says); MFS_E_EXISTS (DIR holds a local store or
 *         another bucket's); the codes of s3.h and of mfs_store_open
 */
int mfs_remote_open_opts(const char *dir, const char *url, const mfs_remote_opts *o,
			 mfs_remote **out, mfs_errmsg *e);

/** mfs_remote_open_opts with only a cache bound: no poll thread, no lines. */
int mfs_remote_open(const char *dir, const char *url, uint64_t cache_bytes,
		    mfs_remote **out, mfs_errmsg *e);

/** What a refresh found and did. */
typedef struct mfs_remote_refresh_info {
	int changed;		    /* a newer index was taken in */
	uint64_t generation_before; /* DIR's index before */
	uint64_t generation;	    /* and after */
	uint64_t latest_generation; /* what LATEST named (0: not read) */
	uint64_t puts, deletes;	    /* records written / removed */
	uint64_t ms;		    /* how long it took */
} mfs_remote_refresh_info;

/**
 * Read LATEST; when it names a newer generation than DIR's index, download
 * its index into DIR/refresh/, check it (size and sha256 against LATEST, the
 * store format), and copy it into DIR's environment in one write
 * transaction (mfs_store_replace_index), then write remote.json.  One at a
 * time per handle; when another process of DIR is doing it, returns 0 with
 * nothing changed (its commit shows in this environment too).
 * @param[out] info  optional
 * @return 0 (also when nothing is newer); on any failure DIR's index is as
 *         it was: MFS_E_NOTFOUND (LATEST is gone), MFS_E_VERSION (a newer
 *         LATEST or store format), MFS_E_CORRUPT (an index that is not what
 *         LATEST says; that index is not downloaded again until LATEST
 *         names another), the codes of s3.h (unreachable, keys), -errno
 *         (DIR/refresh)
 */
int mfs_remote_refresh(mfs_remote *r, mfs_remote_refresh_info *info, mfs_errmsg *e);

/** The store (owned by @p r: valid until mfs_remote_close). */
mfs_store *mfs_remote_store(mfs_remote *r);

/** What LATEST said of the index DIR holds now (a copy). */
void mfs_remote_latest_of(mfs_remote *r, mfs_remote_latest *out);

/** The chunk cache's counters. */
void mfs_remote_cache_stats(mfs_remote *r, mfs_chunkcache_stats *out);

/** Stop the poll thread, close the cache, the store and the client; NULL is a
 * no-op. */
void mfs_remote_close(mfs_remote *r);

#endif
