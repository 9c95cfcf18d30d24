/*
 * export.h - write a snapshot's files to a folder as plain files
 * (`modelfs export`), each rebuilt through the read path, checked against
 * the sha256 recorded at ingest, and renamed into place only then.
 *
 * Nothing is ever written outside the destination: a path from the index
 * that would leave it is refused, and every folder under it is opened one
 * component at a time and never through a symbolic link, so whatever the
 * destination holds, what is written stays under it.  A file is written as
 * NAME.modelfs-tmp beside its place (a stale one, or a link planted there,
 * is removed first), 0755 when the store records it executable, else 0644
 * (less the umask), then renamed over NAME (a link at NAME is replaced, not
 * followed).
 *
 * The library prints nothing: progress goes to a (done, total) callback and
 * the first failure to the mfs_errmsg.  The caller checks the repo
 * (index/check.h) and resolves the revision first.
 *
 * Module convention: 0 or a negative code (codec/err.h) with an mfs_errmsg.
 */
#ifndef MFS_EXPORT_H
#define MFS_EXPORT_H

#include <stdint.h>

#include "reader.h"
#include "store.h"

/**
 * Receives how far the export is, on the thread that called
 * mfs_export_snapshot(): once with @p done 0 when the bytes of all the
 * snapshot's files are known (before the first is written), then as they
 * are written.
 * @param[in] ud     mfs_export_opts.progress_ud
 * @param[in] done   bytes written so far
 * @param[in] total  bytes of all the files (a blob whose record cannot be read
 *                   counts 0)
 */
typedef void (*mfs_export_progress_fn)(void *ud, uint64_t done, uint64_t total);

typedef struct mfs_export_opts {
	int threads;			 /* decoder threads per file (1 ..
					    MFS_POOL_MAX_THREADS; outside: the
					    nearest) */
	mfs_export_progress_fn progress; /* NULL: no progress reports */
	void *progress_ud;		 /* passed to progress */
} mfs_export_opts;

typedef struct mfs_export_stats {
	uint64_t files; /* files written and renamed into place */
	uint64_t bytes; /* their bytes */
	double seconds; /* time spent writing them */
} mfs_export_stats;

/**
 * Write every file of @p commit of @p repo under @p dest (created, with its
 * parents, when missing), in the index's path order; stop at the first
 * failure, leaving the files written before it in place and no temporary.
 * @param[in]  r       a reader over the store that @p t reads (borrowed)
 * @param[in]  t       a read transaction, kept open for the call
 * @param[in]  repo    "models/org/name"
 * @param[in]  commit  a commit of @p repo (40 hex)
 * @param[in]  dest    the destination folder
 * @param[in]  opts    borrowed for the call
 * @param[out] stats   what was written (filled also on error)
 * @param[out] err     may be NULL; on error names the file and what to do:
 *                     "REPO: the index holds file path ..., which would leave
 *                     DEST" (MFS_E_INVAL), "PATH: stored data is damaged
 *                     near offset N (...): not written; run `modelfs
 *                     verify`" (MFS_E_CORRUPT, MFS_E_NOTFOUND), "cannot
 *                     create the folder DEST/A/B for PATH: ...", ...
 * @return 0, or a negative code
 */
int mfs_export_snapshot(mfs_reader *r, mfs_txn *t, const char *repo, const char *commit,
			const char *dest, const mfs_export_opts *opts,
			mfs_export_stats *stats, mfs_errmsg *err);

#endif
