/*
 * check.h - is the index sound?  A checker for the store's records, apart
 * from the chunk payloads (which `verify` decodes and hashes itself).
 *
 * Every record kind is checked: meta, repos, refs, commits, files, noexist,
 * blobs, tensors, and the chunks/chunkrefs pair.  For each record: its key
 * parses (the layouts in store.h), the names in it pass mfs_repo_id_check,
 * mfs_ref_name_check or mfs_repo_path_check, its value decodes (records.h),
 * and what it names exists: a ref's commit is a commit of its repo, a file's
 * and a .no_exist marker's commit too, a file's etag names a blob of its
 * repo, a tensor's blob exists and holds its extents, a blob's extents tile
 * the file and (MFS_CHECK_CHUNKS) each names a stored chunk.  The whole-store
 * check adds the records of no repo (meta, packs, chunks, chunkrefs), records
 * whose repo has no repos record, each chunk's reference count against the
 * blob extents that use it, and each chunk's payload entry: its pack has a
 * record, the entry lies inside what committed writes hold, and its header
 * (one pread of 32 bytes) is this chunk's; a pack record's counts add up and
 * its file is there, as long as the record says.
 *
 * Each problem goes to a callback, at most one per record: the database,
 * the repo, the record's key and what is wrong, every name quoted with
 * mfs_str_quote (the index is untrusted: a name may hold a terminal escape).
 *
 * Use:
 *   mfs_check_store(t, MFS_CHECK_CHUNKS, fn, ud, &n)   `modelfs verify`
 *   mfs_check_repo(t, repo, flags, fn, ud, &n)          one repo, every problem
 *   mfs_check_repo_intact(t, repo, 0, why, cap)         one repo, first problem
 *   mfs_check_repos_foreach(t, 0, cb, ud)               every repo key, intact
 *                                                       or not (ls, the mount)
 * Cost without MFS_CHECK_CHUNKS: one pass over the repo's records plus one
 * lookup per file, ref, marker and (per blob) tensor run: about what listing
 * the repo costs, so ls and the mount check each repo before serving it.
 *
 * Module convention: int return, 0 or a negative code from err.h; a callback
 * returns 0 to go on, anything else to stop (then returned as is).
 */
#ifndef MFS_CHECK_H
#define MFS_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Flags for the checks. */
#define MFS_CHECK_CHUNKS 0x1u /* look up every blob extent's chunk (one lookup each) */

/* One damaged record.  Every string is printable (quoted) and valid during
 * the callback only. */
typedef struct mfs_check_problem {
	const char *db;	  /* the database: "files" */
	const char *repo; /* the repo the key names, quoted; "" for meta, chunks,
			     chunkrefs, and a key that names no repo */
	const char *key;  /* the whole key, quoted: its NUL separators as \x00,
			     chunk keys in hex */
	const char *what; /* the record in words: "files record for config.json of
			     commit 0123..." */
	const char *why;  /* what is wrong: "names blob 9f..., which is not stored" */
} mfs_check_problem;

typedef int (*mfs_check_fn)(void *ud, const mfs_check_problem *p);

/**
 * Check every record of the store.
 * @param[in]  t       a read (or write) transaction
 * @param[in]  flags   MFS_CHECK_*
 * @param[in]  fn      called for each damaged record
 * @param[out] n_bad   optional: the number of damaged records reported
 * @return 0 (problems go to @p fn, not to the return code); what @p fn
 *         returned to stop; -ENOMEM or a database error
 */
int mfs_check_store(mfs_txn *t, unsigned flags, mfs_check_fn fn, void *ud,
		    uint64_t *n_bad);

/**
 * Check the records of one repo: its repos record (missing is a problem),
 * refs, commits, files, noexist markers, blobs and tensors.
 * @param[in] repo  the repo id as stored ("models/org/name"); need not pass
 *                  mfs_repo_id_check (that is one of the checks)
 * @return as mfs_check_store
 */
int mfs_check_repo(mfs_txn *t, const char *repo, unsigned flags, mfs_check_fn fn,
		   void *ud, uint64_t *n_bad);

/**
 * Is one repo intact?  Stops at its first damaged record.
 * @param[out] why  when not intact: "its files record for config.json of commit
 *                  0123... names blob 9f..., which is not stored" (quoted names;
 *                  cut to fit @p cap)
 * @return 1 intact, 0 damaged, or -ENOMEM / a database error
 */
int mfs_check_repo_intact(mfs_txn *t, const char *repo, unsigned flags, char *why,
			  size_t cap);

/* A repo as mfs_check_repos_foreach sees it; valid during the callback only. */
typedef struct mfs_check_repo_entry {
	const char *repo;   /* the repo id, or NULL when the key is not one (then the
			       repo cannot be named on a command line) */
	const char *shown;  /* the key, quoted: what to print */
	int intact;	    /* 1: every record of the repo checks out */
	mfs_repo_info info; /* intact: its times (info.repo == repo) */
	const char *why;    /* damaged: as mfs_check_repo_intact's */
} mfs_check_repo_entry;

/**
 * Call @p cb for every key of the repos database, in key order, with the
 * verdict of mfs_check_repo_intact: unlike mfs_repos_foreach, a damaged
 * repos record (or any record of a repo) stops nothing.
 * @return 0, what @p cb returned to stop, or -ENOMEM / a database error
 */
int mfs_check_repos_foreach(mfs_txn *t, unsigned flags,
			    int (*cb)(void *ud, const mfs_check_repo_entry *r), void *ud);

/**
 * The line that says a damaged repo is left out, and what to do:
 * "models/x/y left out: its files record ... (run `modelfs verify` to list
 * every damaged record; `modelfs rm models/x/y` and ingest it again)".
 * @param[out] buf  always NUL-terminated, cut to fit @p cap (>= 1)
 * @return buf
 */
const char *mfs_check_left_out_line(const mfs_check_repo_entry *r, char *buf, size_t cap);

/**
 * Like mfs_blobs_foreach, but a blob record whose key or value does not parse
 * is skipped instead of ending the walk (mfs_check_repo reports it).
 * @return 0, what @p cb returned to stop, or a database error
 */
int mfs_check_blobs_foreach(mfs_txn *t, const char *repo,
			    int (*cb)(void *ud, const mfs_blob_info *b), void *ud);

#endif
