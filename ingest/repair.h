/*
 * repair.h - rewrite damaged chunks from good copies of the files that use
 * them (`modelfs verify --repair-from DIR`).
 *
 * Given what a check found (index/damage.h: the damaged chunks and the
 * blobs whose rebuild failed, e.g. fs/verify.h's result), a folder is
 * searched recursively (a folder of model files or a Hugging Face cache) for
 * a good copy of each damaged blob: a file of the same size whose sha256 is
 * the blob's, or that is named by the blob's etag (as the HF cache names its
 * blobs).  Each damaged chunk is then read from a copy at an extent that
 * uses it, checked against the chunk key, encoded as ingest would
 * (mfs_ingest_encode_chunk, the dtype of the tensor holding the extent),
 * decoded and checked again, and rewritten in its own write transaction
 * (the rewritten chunk stands alone: a damaged delta is repaired without its
 * base).  The store is synced at the end when anything was rewritten.
 *
 * The library prints nothing: each step goes to the caller's report
 * callback as an mfs_repair_event.  The caller holds the store's ingest lock
 * shared (mfs_store_lock_ingest) so gc cannot sweep a chunk being rewritten,
 * and verifies again afterwards.
 *
 * Module convention: 0 or a negative code (codec/err.h) with an
 * mfs_errmsg; a chunk that cannot be repaired is a finding, not an error.
 */
#ifndef MFS_REPAIR_H
#define MFS_REPAIR_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "damage.h"
#include "store.h"

/** What an mfs_repair_event reports; which of its fields are set. */
typedef enum mfs_repair_event_kind {
	/* blob, path: a good copy of the blob was found */
	MFS_REPAIR_SOURCE = 1,
	/* blob: no good copy of it under the folder */
	MFS_REPAIR_NO_SOURCE,
	/* blob, path, key, off, len, rc: the copy's bytes at that extent cannot
	 * be read or do not hash to the chunk key (another copy is tried) */
	MFS_REPAIR_MISMATCH,
	/* key, rc: encoding, checking or writing the chunk failed */
	MFS_REPAIR_REWRITE_FAILED,
	/* key, len, codec, path, off: the chunk was rewritten from the copy's
	 * bytes at off */
	MFS_REPAIR_REWRITTEN,
	/* key: no file uses the chunk (gc removes it) */
	MFS_REPAIR_UNUSED,
	/* key: no good copy of a file that uses it was found */
	MFS_REPAIR_NO_COPY,
} mfs_repair_event_kind;

/** One step.  Every pointer in it is valid during the report call only. */
typedef struct mfs_repair_event {
	mfs_repair_event_kind kind;
	int rc;
	const mfs_damaged_blob *blob;
	const char *path; /* as found under the folder: quote it before showing it */
	const mfs_chunk_key *key;
	uint64_t off;
	uint32_t len;
	mfs_codec_id codec;
} mfs_repair_event;

/**
 * Receives each step, on the thread that called mfs_repair_run().
 * @param[in] ud  the @p ud given to mfs_repair_run
 * @param[in] ev  valid during the call only
 */
typedef void (*mfs_repair_report_fn)(void *ud, const mfs_repair_event *ev);

typedef struct mfs_repair_stats {
	uint64_t rewritten; /* chunks rewritten and checked */
	uint64_t failed;    /* damaged chunks left as they were */
} mfs_repair_stats;

/**
 * Search @p from for good copies of @p blobs and rewrite each of @p chunks
 * from one (see the top of this file).
 * @param[in]  s         an open store, writable
 * @param[in]  from      the folder to search; symlinks to files are
 *                       followed, to folders not; unreadable entries skipped
 * @param[in]  blobs     the damaged blobs (borrowed), @p n_blobs of them
 * @param[in]  chunks    the damaged chunks (borrowed), @p n_chunks of them
 * @param[in]  fn        may be NULL; called with @p ud
 * @param[out] stats     what was done (filled also on error)
 * @param[out] err       may be NULL; on error: "FROM: not a folder"
 *                       (-ENOTDIR, nothing searched), "searching FROM
 *                       failed: ...", "out of memory", "syncing the store
 *                       failed: ..."
 * @return 0 when the search and every attempt ran (whether or not each
 *         chunk could be repaired), or a negative code
 */
int mfs_repair_run(mfs_store *s, const char *from, const mfs_damaged_blob *blobs,
		   size_t n_blobs, const mfs_damaged_chunk *chunks, size_t n_chunks,
		   mfs_repair_report_fn fn, void *ud, mfs_repair_stats *stats,
		   mfs_errmsg *err);

#endif
