/*
 * ingest.h - read model repositories into a store.
 *
 * Sources:
 *   - a Hugging Face hub cache directory (holding models--org--name/ dirs),
 *     or one models--org--name directory: commit hashes, ref names and blob
 *     etags are kept exactly;
 *   - a plain folder of model files (a repo id is given): the commit id is a
 *     SHA-1 over the sorted (path, etag) list, so the same content always
 *     gets the same commit; etags are sha256 for LFS-type files (weights and
 *     files of 10 MiB or more, as the hub stores them) and the git blob SHA-1
 *     for small text files.
 *
 * Each file is read once, cut into chunks (tensors: aligned to the tensor's
 * first byte; other bytes: aligned to their run's start), hashed, encoded by
 * a pool of workers and written in many small transactions; the files of a
 * snapshot become visible together in its last transaction.  Memory is
 * bounded by (2 * threads + 2) chunk buffers, whatever the file size.
 * Every encoded chunk is decoded again and compared before it is written.
 */
#ifndef MFS_INGEST_H
#define MFS_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "store.h"

typedef struct mfs_ingest_opts {
	size_t chunk_size;        /* power of two, 4 KiB .. 64 MiB; default 1 MiB */
	int threads;              /* encoder threads; 0 = number of CPUs */
	int force_codec;          /* -1 = choose per tensor, else an mfs_codec_id */
	int zstd_level;           /* 0 = default (3) */
	int quiet;                /* no progress bar */
	const char *repo;         /* plain folder: the repo id ("models/org/name") */
	const char *ref;          /* plain folder: ref to point at the commit ("main") */
} mfs_ingest_opts;

typedef struct mfs_ingest_stats {
	uint64_t files;
	uint64_t snapshots;
	uint64_t bytes_in;        /* size of the files read */
	uint64_t bytes_stored;    /* payload bytes their chunks take in the store */
	uint64_t bytes_new;       /* payload bytes of chunks this run added */
	uint64_t chunks_new;
	uint64_t chunks_dedup;    /* chunks already present */
	uint64_t blobs_skipped;   /* blobs already in the store: not read again */
	double seconds;
} mfs_ingest_stats;

/** Defaults for every option. */
void mfs_ingest_opts_default(mfs_ingest_opts *o);

/**
 * Ingest @p src (kind detected: HF cache, one HF repo dir, or a plain folder
 * when opts->repo is set).
 * @return 0, or a negative code with @p err naming the file and the problem;
 *         on error nothing of the failed snapshot is visible.
 */
int mfs_ingest_path(mfs_store *s, const char *src, const mfs_ingest_opts *opts,
		    mfs_ingest_stats *stats, mfs_errmsg *err);

#endif
