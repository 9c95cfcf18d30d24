/*
 * remote.h - a store whose index is a pushed snapshot and whose payloads
 * come from the bucket through a chunk cache: what `modelfs export
 * --remote` (and the remote mount, once fs/ opens its store through this)
 * reads.
 *
 *   mfs_remote *r;
 *   mfs_remote_open("/var/cache/modelfs", "s3://bucket/models", 20 << 30, &r, &e);
 *   mfs_store *s = mfs_remote_store(r);   // read it as any store
 *   mfs_remote_close(r);
 *
 * DIR layout:
 *   data.mdb, lock.mdb   the index LATEST named when DIR was first opened
 *   remote.json          which bucket and which LATEST it came from
 *   cache/               the chunk cache (remote/chunkcache.h), at most
 *                        cache_bytes on disk
 * An empty (or missing) DIR is filled: LATEST is read, the index it names
 * downloaded to a temporary file, checked against LATEST's size and
 * sha256, synced and renamed to data.mdb, so a DIR never holds half an
 * index.  A DIR that holds one already is used as it is; one that holds a
 * local store, or another bucket's index, is refused.  A newer LATEST is
 * not picked up yet (docs/remote.md, "Not done yet").
 *
 * Payloads: every read of the store (mfs_chunk_load, mfs_chunk_payload_read)
 * goes to the chunk cache (index/pack.h, mfs_store_set_payload_source);
 * a fetched payload of a chunk without references is decoded and checked
 * against its key before it is cached, so an altered object is an error
 * naming the chunk, never a cached wrong byte.
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

/**
 * Open DIR as a remote store of @p url (s3://BUCKET/PREFIX), with the S3
 * configuration of the environment (mfs_s3_config_load).
 * @param[in] cache_bytes  the chunk cache's bound on disk (>= 64 KiB)
 * @param[out] out         freed with mfs_remote_close()
 * @return 0; MFS_E_NOTFOUND (no LATEST: nothing was pushed there);
 *         MFS_E_VERSION (a newer format); MFS_E_CORRUPT (an index that
 *         is not what LATEST says); MFS_E_EXISTS (DIR holds a local store or
 *         another bucket's); the codes of s3.h and of mfs_store_open
 */
int mfs_remote_open(const char *dir, const char *url, uint64_t cache_bytes,
		    mfs_remote **out, mfs_errmsg *e);

/** The store (owned by @p r: valid until mfs_remote_close). */
mfs_store *mfs_remote_store(mfs_remote *r);

/** What LATEST said when DIR's index was fetched. */
const mfs_remote_latest *mfs_remote_latest_of(const mfs_remote *r);

/** The chunk cache's counters. */
void mfs_remote_cache_stats(mfs_remote *r, mfs_chunkcache_stats *out);

/** Close the store, the cache and the client; NULL is a no-op. */
void mfs_remote_close(mfs_remote *r);

#endif
