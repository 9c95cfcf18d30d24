/*
 * chunkcache.h - the local disk cache a remote mount reads chunk payloads
 * through: a payload is looked up by its chunk key, served from
 * DIR/cache/ when present, else fetched with one ranged GET of its entry
 * (entry header + payload) from the pack object in the bucket, checked,
 * stored, and the least recently used entries are removed so that the
 * cache's files never take more than a bound on disk.
 *
 * On disk: one file per entry, DIR/cache/<32 hex key>.entry, holding the
 * 32-byte pack entry header (index/pack.h), the payload, and a 16-byte
 * XXH3-128 of the two; written as <name>.tmp.<random> and renamed, so a
 * file under its final name was written whole, and the trailer catches one
 * a crash tore anyway (no fsync per entry: a torn or lost file is a miss,
 * never a wrong byte).  Files are keyed by content, not by pack, so an entry
 * stays valid when gc repacks it elsewhere.  Why one file per entry and not
 * sparse per-pack files: docs/remote.md, "The chunk cache".
 *
 * Bound: the bytes the entries' files take on disk (st_blocks * 512, what
 * du counts) never exceed max_bytes: room is made (LRU entries unlinked)
 * before a file is written, for its size rounded up to the block size, and
 * settled against the real blocks after.  A payload too big for the bound
 * is returned without being cached.
 *
 * Restart: the directory is scanned at open; entries are ordered by their
 * files' mtime (a hit sets it, at most once a second per entry), so the LRU
 * order survives within a second.  Leftover .tmp files are removed.
 *
 * Checks: the entry header must name the key and length asked for (magic,
 * length, key); the optional verify callback (a store decodes the payload
 * and re-hashes it to the key) must accept the payload before it is stored
 * or returned; a cached file must match its trailer, else it is removed and
 * fetched again.
 *
 * Threads: every call may run from any number of threads.  Fetches of one
 * key coalesce: one GET, the other callers wait for it and share its result
 * (bytes or error).
 *
 * Faults: while the object store is unreachable, cached entries read as
 * always; a miss fails with -EIO after the S3 client's bounded retries (its
 * limits: remote/s3.h), the message naming the chunk, the pack object and
 * what went wrong.  A pack object shorter than the entry, or an entry that
 * is not the chunk's, is MFS_E_CORRUPT naming the chunk and the object.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_REMOTE_CHUNKCACHE_H
#define MFS_REMOTE_CHUNKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "s3.h"
#include "store.h"

typedef struct mfs_chunkcache mfs_chunkcache;

/* What a verify callback returns for a payload it cannot check (its record
 * is not in the index it knows): handed to the caller, which checks it
 * itself, and not cached. */
#define MFS_CHUNKCACHE_UNCHECKED 1

/**
 * Accept or refuse a fetched payload (e.g. decode it and check its hash).
 * @return 0 to accept; MFS_CHUNKCACHE_UNCHECKED to hand it out uncached; a
 *         negative code (MFS_E_CORRUPT) with @p e saying why
 */
typedef int (*mfs_chunkcache_verify_fn)(void *ud, const mfs_chunk_key *key,
					const void *payload, size_t len, mfs_errmsg *e);

typedef struct mfs_chunkcache_opts {
	const char *dir;    /* the cache is DIR/cache/ (created) */
	uint64_t max_bytes; /* bound on the entries' disk bytes; >= 64 KiB */
	mfs_s3 *s3;	    /* the client: the caller's, must outlive the cache */
	mfs_s3_url url;	    /* s3://BUCKET/PREFIX the packs are under */
	mfs_chunkcache_verify_fn verify; /* optional */
	void *verify_ud;
	unsigned
	    prefetch_threads; /* workers for mfs_chunkcache_prefetch (<= 16); 0: none */
} mfs_chunkcache_opts;

/**
 * Open (or create) the cache in @p o->dir and read what it holds; entries
 * past the bound (a smaller max_bytes than before) are removed, oldest first.
 * @param[out] out  freed with mfs_chunkcache_close()
 * @return 0; MFS_E_INVAL (a bound under 64 KiB, no client); -ENOMEM;
 *         -errno of the directory (the message names it)
 */
int mfs_chunkcache_open(const mfs_chunkcache_opts *o, mfs_chunkcache **out,
			mfs_errmsg *e);

/** Free the cache (its files stay).  No call may be running.  NULL: no-op. */
void mfs_chunkcache_close(mfs_chunkcache *cc);

/**
 * The payload of chunk @p key, whose entry is at @p loc in its pack, into
 * @p buf (loc->len bytes): from the cache, else fetched (and cached).
 * @param[in] cap  bytes at @p buf, at least loc->len
 * @param[out] hit optional: 1 served from disk, 0 fetched (or shared a fetch)
 * @return 0; MFS_E_NOSPACE (@p cap too small); MFS_E_CORRUPT (the object is
 *         shorter than the entry, its header is not the chunk's, or verify
 *         refused it); -EIO (the object store could not be read after its
 *         retries); MFS_E_NOTFOUND (no such pack object); -EACCES; -ENOMEM.
 *         @p buf holds nothing usable on failure.
 */
int mfs_chunkcache_get(mfs_chunkcache *cc, const mfs_chunk_key *key,
		       const mfs_chunk_loc *loc, void *buf, size_t cap, int *hit,
		       mfs_errmsg *e);

/**
 * Fetch the entries in bytes [@p off, @p off + @p len) of pack @p pack into
 * the cache ahead of their reads (a read's run of adjacent entries: index/
 * pack.h's will_need), in the background: one GET (at most 16 MiB), each
 * entry found in it (entries describe themselves) checked as a fetch is and
 * stored under its key, unless present or being fetched.  A hint: dropped
 * when 64 runs wait already, or there are no prefetch threads; a failed GET
 * is only counted (the reads fetch what they need).  Reads of an entry a
 * prefetch is storing wait for it.
 */
void mfs_chunkcache_prefetch(mfs_chunkcache *cc, uint64_t pack, uint64_t off,
			     uint64_t len);

/** Wait until no prefetch is queued or running (tests, before a count). */
void mfs_chunkcache_drain(mfs_chunkcache *cc);

typedef struct mfs_chunkcache_stats {
	uint64_t hits;	    /* served from disk */
	uint64_t misses;    /* fetched by this caller */
	uint64_t coalesced; /* waited for another caller's fetch of the same key */
	uint64_t fetch_errors;
	uint64_t bytes_fetched; /* entry bytes received */
	uint64_t evictions;
	uint64_t torn;	     /* cached files that failed their check (removed) */
	uint64_t prefetched; /* entries a prefetch fetched */
	uint64_t prefetch_errors, prefetch_dropped;
	uint64_t entries;    /* files now */
	uint64_t disk_bytes; /* their blocks on disk */
	uint64_t max_bytes;
} mfs_chunkcache_stats;

/** A copy of the counters. */
void mfs_chunkcache_stats_get(mfs_chunkcache *cc, mfs_chunkcache_stats *out);

#endif
