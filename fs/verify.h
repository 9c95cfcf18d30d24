/*
 * verify.h - check a whole store, or one repo of it, the way `modelfs verify`
 * does: decode every chunk on a pool of threads and compare it with its key,
 * check every index record (index/check.h), then rebuild every file from its
 * chunks and compare its sha256 with the one recorded at ingest.
 *
 * The library prints nothing: each finding goes to the caller's report
 * callback as an mfs_verify_event (in the order a person reads them: the
 * damaged chunks, the damaged records, then each damaged file followed by
 * the chunks it uses that are damaged and the snapshot paths it breaks),
 * progress goes to a (done, total) callback, and the result holds the
 * counts and the damaged chunks and blobs in the form a repair takes
 * (index/damage.h, ingest/repair.h).
 *
 * Usage:
 *     mfs_verify_opts o;
 *     mfs_verify_opts_default(&o);
 *     o.report = print_finding;
 *     mfs_verify_result res;
 *     int rc = mfs_verify_run(store, reader, &o, &res, &err);
 *     ... res.bad_chunks, res.damaged_blobs ...
 *     mfs_verify_result_free(&res);
 *
 * Module convention: 0 or a negative code (codec/err.h) with an
 * mfs_errmsg; findings are not errors (a damaged store verifies with 0).
 */
#ifndef MFS_VERIFY_H
#define MFS_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "damage.h"
#include "reader.h"
#include "store.h"

/** What an mfs_verify_event reports; which of its fields are set. */
typedef enum mfs_verify_event_kind {
	/* key, rc, refs (file extents using it), and where its payload lies:
	 * in_pack, pack, pack_off, and detail: what reading the pack entry
	 * found ("pack file ... ends 12 bytes into the entry"), "" when the
	 * entry was read whole (so its bytes do not decode to the key).
	 * in_pack 0: the record did not parse or holds the payload itself. */
	MFS_VERIFY_BAD_CHUNK = 1,
	/* problem: a damaged index record, as the checker words it */
	MFS_VERIFY_BAD_RECORD,
	/* repo, etag, rc: the blob's record cannot be read (the file cannot be
	 * rebuilt; it is not in the result's damaged_blobs) */
	MFS_VERIFY_BAD_BLOB_RECORD,
	/* repo, etag, size, rc: the rebuild failed with rc (off: the first
	 * damaged chunk's offset in the file), or rc 0: it rebuilt, but its
	 * sha256 differs from the recorded one */
	MFS_VERIFY_BAD_BLOB,
	/* repo, etag, key, off, len: an extent of the damaged blob just reported
	 * that uses a chunk reported damaged */
	MFS_VERIFY_BAD_EXTENT,
	/* repo, path, commit: a snapshot file that is the damaged blob just
	 * reported (path as stored: quote it before showing it) */
	MFS_VERIFY_DAMAGED_FILE,
	/* repo, etag: no snapshot file points to the damaged blob just reported
	 * (gc removes it) */
	MFS_VERIFY_NO_FILE,
} mfs_verify_event_kind;

/** One finding.  Every pointer in it is valid during the report call only. */
typedef struct mfs_verify_event {
	mfs_verify_event_kind kind;
	int rc;
	const char *repo, *etag, *path, *commit;
	const mfs_chunk_key *key;
	uint64_t size, off, refs;
	uint32_t len;
	int in_pack;
	uint64_t pack, pack_off;
	const char *detail;
	const mfs_check_problem *problem;
} mfs_verify_event;

/**
 * Receives each finding, on the thread that called mfs_verify_run().
 * @param[in] ud  mfs_verify_opts.ud
 * @param[in] ev  the finding; valid during the call only
 */
typedef void (*mfs_verify_report_fn)(void *ud, const mfs_verify_event *ev);

/**
 * Receives how far the file rebuilds are, on the thread that called
 * mfs_verify_run(): once with @p done 0 when the bytes of all files to
 * rebuild are known (after the chunk and record checks), then as they are
 * hashed.
 * @param[in] done   bytes rebuilt so far (done <= total)
 * @param[in] total  bytes of all the files to rebuild
 */
typedef void (*mfs_verify_progress_fn)(void *ud, uint64_t done, uint64_t total);

typedef struct mfs_verify_opts {
	int threads;			 /* decoder threads (1 .. MFS_POOL_MAX_THREADS;
					    outside: the nearest) */
	const char *repo;		 /* check the files of this repo only
					    ("models/org/name"); NULL: every repo.
					    Every chunk is checked either way. */
	mfs_verify_report_fn report;	 /* NULL: findings only counted */
	mfs_verify_progress_fn progress; /* NULL: no progress reports */
	void *ud;			 /* passed to both */
} mfs_verify_opts;

/** What a run found.  Filled by mfs_verify_run, freed by mfs_verify_result_free. */
typedef struct mfs_verify_result {
	uint64_t chunks; /* chunks checked */
	uint64_t files;	 /* blobs checked */
	uint64_t bytes;	 /* bytes of the blobs that could be opened */
	uint64_t bad_chunks, bad_files, bad_records;
	double seconds;
	/* the damaged chunks, in the index's key order; owned by the result */
	mfs_damaged_chunk *damaged_chunks;
	size_t n_damaged_chunks;
	/* the blobs whose rebuild failed (not those whose record is unreadable),
	 * each owning its extents; owned by the result */
	mfs_damaged_blob *damaged_blobs;
	size_t n_damaged_blobs;
} mfs_verify_result;

/** Defaults: threads = the number of CPUs, every repo, no callbacks. */
void mfs_verify_opts_default(mfs_verify_opts *o);

/**
 * Check the store in one read transaction (taken and ended here).
 * @param[in]  s     an open store (read only is enough)
 * @param[in]  r     a reader over @p s (mfs_reader_create), borrowed
 * @param[in]  opts  borrowed for the call
 * @param[out] res   zeroed, then filled (also on error: free it either way)
 * @param[out] err   may be NULL; on error names what failed: "cannot read the
 *                   store: ...", "no repo REPO in the store" (MFS_E_NOTFOUND),
 *                   "listing chunks failed: ...", "checking the index records
 *                   failed: ...", "reading the store failed: ..."
 * @return 0 when the check ran (whatever it found), or a negative code
 */
int mfs_verify_run(mfs_store *s, mfs_reader *r, const mfs_verify_opts *opts,
		   mfs_verify_result *res, mfs_errmsg *err);

/** Free what @p res owns and zero it; NULL or a zeroed result is a no-op. */
void mfs_verify_result_free(mfs_verify_result *res);

#endif
