/*
 * ingest.h - read model repositories into a store.
 *
 * Sources:
 *   - a Hugging Face hub cache directory (holding models--org--name/ dirs),
 *     or one models--org--name directory: commit hashes, ref names and blob
 *     etags are kept exactly;
 *   - a plain folder of model files (a repo id is given): the commit id is a
 *     SHA-1 over the sorted (path, etag, executable) list, so the same content
 *     always gets the same commit; etags are sha256 for LFS-type files
 *     (weights and files of 10 MiB or more, as the hub stores them) and the
 *     git blob SHA-1 for small text files.  .git and .cache entries are left
 *     out (a note says so).
 *
 * Nothing from outside the source is read: in a cache, snapshot entries must
 * be links that stay in their repo folder (a per-repo blob may link into the
 * cache's shared blobs/<2 hex>/<hash> store, as huggingface_hub 2.x writes
 * it); in a plain folder, links are followed while they stay inside it
 * (opts->follow_links lifts that).  Links are resolved hop by hop against the
 * resolved source root and what was checked is opened without following a
 * link again.  Only regular files are opened for reading, non-blocking, so a
 * FIFO, socket or device is refused with its name instead of hanging ingest.
 * A file's mode is kept as one bit: 0555 when any x bit is set, else 0444.
 *
 * Each file is read once, cut into chunks (tensors: aligned to the tensor's
 * first byte; other bytes: aligned to their run's start), hashed, encoded by
 * a pool of workers and written in many small transactions; the files of a
 * snapshot become visible together in its last transaction.  Memory is
 * bounded by (2 * threads + 2) chunk buffers, whatever the file size.
 * Every encoded chunk is decoded again and compared before it is written.
 *
 * Fine-tunes: each snapshot's base is opts->base, or the one proposed from
 * the store (ingest/base.h; a note says which and why, or that there is
 * none).  A tensor with a same-named, same-dtype, same-shape base tensor is
 * tried as an xor-delta of it on its first chunk and stored so when that
 * saves more than the codec choice's slack (docs/codecs.md), else alone.
 * Memory stays bounded: each worker decodes at most one base chunk at a time.
 *
 * Quantized twins: after a snapshot is published, its pair is found
 * (opts->quantized_of names the high-precision model of a quantized one;
 * else the store is searched by tensor names and shapes, in both
 * directions, unless opts->no_twin) and the high-precision model's paired
 * tensors are re-encoded as residuals of the twin (ingest/twin.h), one
 * transaction per tensor.  Notes say what was paired and what was not, and
 * why.
 */
#ifndef MFS_INGEST_H
#define MFS_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "store.h"

/** What a line handed to mfs_ingest_opts.note is. */
typedef enum mfs_ingest_note_kind {
	MFS_INGEST_NOTE = 0,    /* for information: something was left out on purpose */
	MFS_INGEST_WARNING = 1, /* ingest goes on, but the user should look */
} mfs_ingest_note_kind;

/**
 * Receives the lines ingest has for the user besides its result (the library
 * prints nothing itself).  Called on the thread that called
 * mfs_ingest_path(), any number of times, while it runs.
 * @param[in] ud    mfs_ingest_opts.note_ud
 * @param[in] kind  note or warning
 * @param[in] msg   one line without a newline, names and paths quoted;
 *                  valid only during the call
 */
typedef void (*mfs_ingest_note_fn)(void *ud, mfs_ingest_note_kind kind, const char *msg);

/**
 * Receives how far the work is (the library draws nothing: the CLI draws a
 * bar from it).  Called on the thread that called mfs_ingest_path(): once
 * with @p done 0 when a source's size is known (before its first byte is
 * read), then as its files are read or found already stored.
 * @param[in] ud     mfs_ingest_opts.progress_ud
 * @param[in] done   bytes of the source's files handled so far
 * @param[in] total  bytes of all its files (done <= total; a file that grew
 *                   after it was listed can take done past it)
 */
typedef void (*mfs_ingest_progress_fn)(void *ud, uint64_t done, uint64_t total);

typedef struct mfs_ingest_opts {
	size_t chunk_size;        /* power of two, 4 KiB .. 64 MiB; default 1 MiB */
	int threads;              /* encoder threads; 0 = number of CPUs */
	int force_codec;          /* -1 = choose per tensor, else an mfs_codec_id */
	int gpu_codecs;           /* float tensors the choice gives bitplane-huff are
				     coded rans instead (GPU-decodable, fs/batch.h) */
	int zstd_level;           /* 0 = default (3) */
	const char *repo;         /* plain folder: the repo id ("models/org/name") */
	const char *ref;          /* plain folder: ref to point at the commit ("main");
				     checked (mfs_ref_name_check) before anything is read */
	int follow_links;         /* plain folder: follow links that leave it too */
	const char *base;         /* repo id of the base to store deltas against
				     ("models/org/name"); NULL: proposed from the
				     store (ingest/base.h) unless no_base */
	int no_base;              /* store every tensor alone (no xor-delta) */
	const char *quantized_of; /* the snapshot is the quantized twin of this repo
				     ("models/org/name"), which the store must hold:
				     its tensors become residuals of the twin's
				     (ingest/twin.h); NULL: proposed from the store
				     unless no_twin */
	int no_twin;              /* pair with no twin (neither side) */
	mfs_ingest_note_fn note;  /* NULL: notes and warnings are dropped */
	void *note_ud;            /* passed to note */
	mfs_ingest_progress_fn progress; /* NULL: no progress reports */
	void *progress_ud;        /* passed to progress */
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
	uint64_t tensors_delta;   /* tensors stored as xor-deltas against a base */
	uint64_t tensors_same;    /* tensors whose every chunk the store already held */
	uint64_t delta_stored;    /* payload bytes of the xor-delta tensors */
	uint64_t delta_alone;     /* what they would take alone (estimated per tensor
				     from its first chunk) */
	char base[MFS_REPO_ID_MAX + 1]; /* the last snapshot's base, "" for none */
	uint64_t tensors_twin;    /* high-precision tensors made residuals of a twin */
	uint64_t twin_before;     /* their chunks' payload bytes before pairing */
	uint64_t twin_after;      /* ... and after */
	char twin[MFS_REPO_ID_MAX + 1]; /* the last snapshot's pair ("" for none) */
	double seconds;
} mfs_ingest_stats;

/** Defaults for every option. */
void mfs_ingest_opts_default(mfs_ingest_opts *o);

/**
 * Ingest @p src (kind detected: HF cache, one HF repo dir, or a plain folder
 * when opts->repo is set).  Every source is collected and checked (links,
 * file kinds, refs) before anything is read into the store.
 * @param[in]  s      an open store (written)
 * @param[in]  src    the source folder
 * @param[in]  opts   options; borrowed for the call
 * @param[out] stats  what was done (filled also on error)
 * @param[out] err    may be NULL
 * @return 0, or a negative code with @p err naming the file and the problem;
 *         on error nothing of the failed snapshot is visible.
 */
int mfs_ingest_path(mfs_store *s, const char *src, const mfs_ingest_opts *opts,
		    mfs_ingest_stats *stats, mfs_errmsg *err);

/**
 * Encode one chunk with @p codec as ingest stores it, and prove it: a codec
 * that does not take the dtype gives way to zstd (without references), a
 * payload no smaller than the chunk is stored raw, and the payload is decoded
 * again (with @p ep's references and geometry) and compared with @p raw.
 * @param[in]  ep       dtype, zstd level, geometry and references (borrowed)
 * @param[out] enc      @p cap bytes, at least mfs_codec_bound_max(len)
 * @param[out] enc_len  the payload's length
 * @param[out] used     the codec the payload is in (@p codec, zstd or raw)
 * @param[in]  ws       the calling thread's workspace (its CHUNK slot is used)
 * @return 0, MFS_E_CORRUPT when the payload does not decode to @p raw, or
 *         the codec's error
 */
int mfs_ingest_encode(mfs_codec_id codec, const mfs_encode_params *ep, const uint8_t *raw,
		      size_t len, uint8_t *enc, size_t cap, size_t *enc_len, mfs_codec_id *used,
		      mfs_codec_ws *ws);

/**
 * Encode a chunk on its own as ingest would: the codec chosen for @p dtype
 * (mfs_codec_choose), zstd for bytes of no known dtype (MFS_DT_UNKNOWN),
 * then mfs_ingest_encode.  verify's repair rewrites damaged chunks with it.
 * @param[in] zstd_level  0 for the default
 * @return as mfs_ingest_encode, or the choice's error
 */
int mfs_ingest_encode_chunk(mfs_dtype dtype, int zstd_level, const uint8_t *raw, size_t len,
			    uint8_t *enc, size_t cap, size_t *enc_len, mfs_codec_id *codec,
			    mfs_codec_ws *ws);

#endif
