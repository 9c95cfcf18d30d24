/*
 * prefetch_model.h - decode a model's weights while its loader is still
 * building the model (the mount's `prefetch_model`).
 *
 * transformers' from_pretrained reads config.json, then spends tens of
 * milliseconds building the model in Python, on one core, before it maps
 * the weights (measured: config read at 0.4 ms, weights opened at ~60 ms of
 * a ~120 ms load of all-MiniLM-L6-v2 from a folder).  When config.json is
 * opened through the mount, the weights beside it (mfs_layout_model_files)
 * are opened here and their whole decode is queued on the cache's workers
 * (mfs_rfile_queue_whole): it runs on the core the loader leaves idle, and
 * the loader's reads then find the chunks decoded.
 *
 * The set keeps those files open (their queued work refers to them) until
 * their work is done: mfs_prefetch_model_reap() closes the finished ones;
 * the mount calls it on every open and release.  At most @p budget bytes of
 * files are held at once; a file that would go over is skipped.
 *
 * Threads: every call is thread-safe.
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_PREFETCH_MODEL_H
#define MFS_PREFETCH_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "reader.h"

typedef struct mfs_prefetch_model mfs_prefetch_model;

/**
 * Create an empty set.
 * @param[in]  r       borrowed; must outlive the set (with a cache and
 *                     prefetch on, or nothing is decoded)
 * @param[in]  budget  bytes of files held at once (0: nothing is ever started)
 * @param[out] out     free with mfs_prefetch_model_free()
 * @return 0 or -ENOMEM
 */
int mfs_prefetch_model_create(mfs_reader *r, uint64_t budget, mfs_prefetch_model **out);

/**
 * Drop the work still queued for the held files, wait for what is running,
 * close them and free the set; NULL is a no-op.
 */
void mfs_prefetch_model_free(mfs_prefetch_model *p);

/**
 * Close the held files whose work is done, then open each of @p files (blobs,
 * from mfs_layout_model_files) not held already and queue its whole decode,
 * in order, while the bytes held stay within the budget.
 * @param[out] started  optional: files started by this call
 * @return 0; a store error or -ENOMEM from opening a file (the files before
 *         it stay started)
 */
int mfs_prefetch_model_start(mfs_prefetch_model *p, const mfs_layout_file *files,
			     size_t n, size_t *started);

/** Close the held files whose work is done. */
void mfs_prefetch_model_reap(mfs_prefetch_model *p);

typedef struct mfs_prefetch_model_stats {
	uint64_t files;	  /* files started since creation */
	uint64_t bytes;	  /* their sizes */
	uint64_t skipped; /* files not started: over the budget */
	uint64_t held;	  /* files held now */
} mfs_prefetch_model_stats;

void mfs_prefetch_model_stats_get(mfs_prefetch_model *p, mfs_prefetch_model_stats *out);

#endif
