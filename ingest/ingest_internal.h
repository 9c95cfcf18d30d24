/*
 * ingest_internal.h - what the ingest modules share (internal to ingest/):
 *
 *   sources.c   collects a source (an HF cache, one of its repo folders, a
 *               plain folder) into snapshots of files, every link and file
 *               kind checked, before anything is read into the store;
 *   pipeline.c  the encoders: a ring of chunk jobs, each hashed, its codec
 *               chosen (an xor-delta against the base when that saves),
 *               encoded and decoded again to prove it, on a worker pool
 *               (index/pool.h);
 *   writer.c    one file through the pipeline into the store: its plan
 *               (tensors, chunk cuts), the chunks in write transactions of
 *               TXN_BYTES, its blob record and etag;
 *   ingest.c    snapshots (base and twin choice, publish), the public calls
 *               (ingest.h), notes and progress reports.
 *
 * Ownership: a src_snapshot owns its strings (mfs_src_snapshot_free); jobs
 * own their buffers from mfs_pipe_start to mfs_pipe_stop; everything runs on
 * the thread that called mfs_ingest_path() except the pool's workers, which
 * touch only the jobs handed to them.  Convention: int return, 0 or a
 * negative code (err.h), with ctx->err naming the file.
 */
#ifndef MFS_INGEST_INTERNAL_H
#define MFS_INGEST_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "codec.h"
#include "ingest.h"
#include "pool.h"
#include "safetensors.h"
#include "store.h"

/* Commit the write transaction once this much new payload is in it. */
#define TXN_BYTES ((uint64_t)64 << 20)
/* Files at least this large are LFS files on the hub (etag = sha256). */
#define LFS_MIN_SIZE ((uint64_t)10 << 20)
/* A Git LFS pointer file is small text (the spec: under 1024 bytes). */
#define LFS_POINTER_MAX 1024
#define LFS_POINTER_PREFIX "version https://git-lfs.github.com/spec/v1"
/* Bytes of a name or a link target shown in a message. */
#define SHOW_MAX 160

/* ---------------------------------------------------------------- sources */

typedef struct src_file {
	char *rel;              /* path inside the snapshot */
	char *abs;              /* resolved path to open: no symlink in it */
	char etag[MFS_ETAG_MAX + 1]; /* known (HF cache) or empty (computed) */
	uint32_t mode;          /* 0555 when the file has an x bit, else 0444 */
	uint64_t size;          /* when collected (for the progress reports) */
} src_file;

typedef struct src_snapshot {
	char commit[MFS_COMMIT_LEN + 1]; /* empty for a plain folder: computed */
	src_file *files;
	size_t n_files, cap_files;
	char **noexist;
	size_t n_noexist, cap_noexist;
	char **refs;
	size_t n_refs, cap_refs;
} src_snapshot;

/* One HF cache repo folder, collected: every snapshot in it. */
typedef struct hf_repo {
	char repo[MFS_REPO_ID_MAX + 1];
	src_snapshot *snaps;
	size_t n_snaps;
} hf_repo;

struct ingest_ctx;

/** Append a copy of @p s to a growing string array. @return 0 or -ENOMEM */
int mfs_src_push_str(char ***arr, size_t *n, size_t *cap, const char *s);
/** Free @p n strings and the array (NULL is fine). */
void mfs_src_free_strs(char **a, size_t n);
/** Free what a snapshot owns (not @p sn itself); it is zeroed. */
void mfs_src_snapshot_free(src_snapshot *sn);
/** Free a collected repo's snapshots; it is zeroed. */
void mfs_src_hf_repo_free(hf_repo *r);
/**
 * Collect one HF cache repo folder @p dir (models--org--name): its
 * snapshots, .no_exist names and refs, every link checked.
 * @param[out] out  filled (free with mfs_src_hf_repo_free, also on error)
 */
int mfs_src_collect_hf_repo(const char *dir, hf_repo *out, mfs_errmsg *err);
/**
 * The repo folders of an HF cache @p src (or @p src itself when it is one),
 * in name order.  @param[out] out  owned by the caller (mfs_src_free_strs)
 */
int mfs_src_list_hf_repos(const char *src, char ***out, size_t *n_out, mfs_errmsg *err);
/**
 * Collect a plain folder: every file in it, links checked, .git and .cache
 * left out (a note through @p c says so).  @p sn is the caller's to free.
 */
int mfs_src_collect_folder(struct ingest_ctx *c, const char *src, src_snapshot *sn);
/**
 * Open @p abs (a resolved path with no link in it) one component at a time
 * with O_NOFOLLOW, so a folder that became a link since it was checked makes
 * the open fail.  @return a descriptor, or -1 with errno set
 */
int mfs_src_open_nofollow(const char *abs, int flags);
/** What kind of file @p m is, for messages ("a FIFO", "a socket", ...). */
const char *mfs_src_kind_name(mode_t m);
/** Bytes of the snapshot's files, as collected. */
uint64_t mfs_src_snapshot_bytes(const src_snapshot *sn);
/**
 * Commit id of a plain folder from its files and their @p etags (in the
 * snapshot's file order): 40 lowercase hex digits and a NUL into @p out.
 */
void mfs_src_folder_commit_id(const src_snapshot *sn, char **etags, char out[41]);

/* --------------------------------------------------------------- pipeline */

typedef struct tensor_state {
	int decided;
	mfs_codec_id codec;        /* stand-alone codec */
	int delta;                 /* 1: its chunks are xor-deltas against the base */
	double alone_ratio;        /* stand-alone stored / raw on its first chunk */
	int base_failed;           /* a base chunk could not be used (noted once) */
} tensor_state;

typedef struct job {
	/* in */
	uint8_t *raw;
	size_t len;
	mfs_dtype dtype;
	int tensor;             /* index in the file's tensors, -1 for other bytes */
	int first_of_tensor;
	const mfs_st_tensor *st; /* its tensor, or NULL */
	uint64_t tin;           /* offset of the chunk in its tensor */
	const mfs_base_tensor *bt; /* the base's same tensor, or NULL */
	/* out */
	mfs_chunk_key key;
	int exists;
	uint8_t *enc;
	size_t enc_cap, enc_len;
	mfs_codec_id codec;
	int has_ref;            /* an xor-delta against ref */
	mfs_chunk_ref ref;
	int base_rc;            /* why the base chunk could not be used (< 0), or 0 */
	int rc;
	int in_flight;          /* submitted and not yet finalised: main thread only */
	mfs_pool_task task;     /* on the workers from submit until done */
	mfs_pool_group done;    /* its one task: waited on by mfs_pipe_wait */
} job;

typedef struct pool {
	mfs_pool *workers;      /* the encoder threads */
	int sync_inited;        /* mu and cv_done are initialised */
	pthread_mutex_t mu;     /* tensor_state.decided */
	pthread_cond_t cv_done; /* a tensor's codec was decided */
	mfs_store *store;
	const mfs_ingest_opts *opts;
	tensor_state *tensors;  /* of the file being ingested */
} pool;

/** The chunk's place in its tensor (recorded with deltas) into @p g. */
void mfs_pipe_job_geom(const job *j, mfs_chunk_geom *g);
/** Queue @p j for a worker (the caller has filled its input). */
void mfs_pipe_submit(pool *p, job *j);
/** Wait until @p j is done (its output fields are then the caller's). */
void mfs_pipe_wait(pool *p, job *j);

/* ------------------------------------------------------------ the context */

typedef struct ingest_ctx {
	mfs_store *store;
	mfs_base *base;         /* the snapshot's base, or NULL */
	char twin_hp[MFS_REPO_ID_MAX + 1]; /* the snapshot's pair: high-precision side */
	char twin_q[MFS_REPO_ID_MAX + 1];  /* ... and quantized side ("" for none) */
	const mfs_ingest_opts *opts;
	mfs_ingest_stats *stats;
	mfs_errmsg *err;
	pool pool;
	job *ring;
	size_t n_ring;
	uint64_t progress_done, progress_total; /* of the source being ingested */
	/* the open write transaction and what it holds */
	mfs_txn *txn;
	uint64_t txn_bytes;
} ingest_ctx;


/**
 * Start the workers and the job ring (2 * threads + 2 chunk buffers) of
 * @p c.  @return 0, or a negative code (mfs_pipe_stop cleans up either way)
 */
int mfs_pipe_start(ingest_ctx *c);
/** Stop the workers and free the ring; safe after a failed start. */
void mfs_pipe_stop(ingest_ctx *c);

/** Hand a formatted line to the caller's note callback (opts->note). */
void mfs_ingest_ctx_note(ingest_ctx *c, mfs_ingest_note_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/** A source of @p total bytes begins: report 0 of it. */
void mfs_ingest_ctx_progress_start(ingest_ctx *c, uint64_t total);
/** @p n more bytes of the source were read or found stored: report. */
void mfs_ingest_ctx_progress(ingest_ctx *c, uint64_t n);

/* ---------------------------------------------------------------- writer */

/** Open the write transaction if none is open. */
int mfs_writer_txn_ensure(ingest_ctx *c);
/** Commit the open write transaction, if any. */
int mfs_writer_txn_commit(ingest_ctx *c);
/**
 * Read one file of @p repo into the store: chunks encoded and written, its
 * blob record put.  @param[out] etag_out  MFS_ETAG_MAX + 1 bytes: its etag
 * (the known one, or the one computed as the hub would)
 */
int mfs_writer_file(ingest_ctx *c, const char *repo, const src_file *sf, char *etag_out);

#endif
