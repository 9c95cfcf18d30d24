/*
 * replace.h - make a store's index the copy of another store's, in place,
 * in one write transaction: how a remote store (remote/remote.h) takes a
 * newer pushed index into the environment its mount already has open.
 *
 *   mfs_store *dst;   // DIR, open writable (and read by a mount)
 *   mfs_store *src;   // the fetched index, open read-only elsewhere
 *   mfs_store_replace_stats st;
 *   mfs_store_replace_index(dst, src, &st, &e);
 *
 * Why in place, and not a second environment swapped in: LMDB forbids
 * opening one file twice in a process, and everything that reads DIR (the
 * mount's layout, its open files' views, the chunk cache's checks) holds
 * this environment.  After the commit every reader that begins a
 * transaction sees the new index whole; one that began before keeps its
 * snapshot (LMDB's MVCC), so a file open in an older view keeps reading the
 * records it opened with.  A mount notices the new generation as it does a
 * local ingest's (fs/ll.c, watch_changed).
 *
 * Only records that differ are written: for each named database both
 * sides are walked in key order; a key the source lacks is deleted, a key
 * it adds or whose value differs is put, the rest is left alone (an
 * incremental push changes a small part of the index).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_REPLACE_H
#define MFS_REPLACE_H

#include <stdint.h>

#include "store.h"

typedef struct mfs_store_replace_stats {
	uint64_t generation_before; /* dst's generation when it began */
	uint64_t generation;	    /* dst's generation now (src's, once replaced) */
	uint64_t puts;		    /* records written (new or changed) */
	uint64_t deletes;	    /* records removed */
	uint64_t kept;		    /* records equal on both sides */
} mfs_store_replace_stats;

/**
 * Replace every record of @p dst with @p src's, in one write transaction of
 * @p dst, unless @p dst is already at @p src's generation or newer (then
 * nothing is written: 0, stats->puts = deletes = 0, generation unchanged).
 * @param[in] dst  open writable; concurrent readers are fine
 * @param[in] src  open (read-only is enough); its format must be
 *                 MFS_STORE_FORMAT
 * @param[out] st  optional
 * @return 0; MFS_E_VERSION (@p src is another store format); MFS_E_CORRUPT
 *         (@p src has no generation record); MFS_E_INVAL (@p dst read-only);
 *         MFS_E_DB / -ENOSPC (the write failed: @p dst is left as it was)
 */
int mfs_store_replace_index(mfs_store *dst, mfs_store *src, mfs_store_replace_stats *st,
			    mfs_errmsg *e);

#endif
