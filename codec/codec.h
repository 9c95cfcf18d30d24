/*
 * codec.h - the codec registry: byte transforms + entropy coders by stable id.
 *
 * A codec turns one chunk of raw bytes (at most MFS_CHUNK_MAX) into a
 * self-describing payload and back.  Each codec has a numeric id that is
 * stored in the store with every chunk and never changes meaning.
 *
 * Decoding:
 *   - decodes into a caller-provided buffer of exactly the raw length (the
 *     store records it), and fails with MFS_E_CORRUPT on any payload that
 *     does not decode to exactly that many bytes; it never reads outside
 *     [src, src+src_len) nor writes outside [dst, dst+dst_len);
 *   - takes an optional reference chunk (raw bytes): the base model's chunk
 *     for xor-delta, the quantized tensor's chunk for quant-residual;
 *     codecs without MFS_CODEC_NEEDS_REF ignore it;
 *   - allocates nothing on the hot path: scratch memory comes from an
 *     mfs_codec_ws, one per thread, which grows to the largest chunk seen and
 *     is then reused.
 * The checksum of the decoded bytes is verified by the caller (index/), not
 * here: the chunk key is the XXH3-128 of the raw bytes.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_CODEC_H
#define MFS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

/* Largest raw chunk any codec handles (chunk sizes are powers of two up to this). */
#define MFS_CHUNK_MAX ((size_t)64 << 20)

/* Stable codec ids: stored on disk. */
typedef enum mfs_codec_id {
	MFS_CODEC_RAW = 0,
	MFS_CODEC_ZSTD = 1,
	MFS_CODEC_BITPLANE_HUFF = 2,
	MFS_CODEC_RANS = 3,
	MFS_CODEC_XOR_DELTA = 4,
	MFS_CODEC_QUANT_RESIDUAL = 5,
	MFS_CODEC__COUNT = 16
} mfs_codec_id;

/* Codec flags. */
#define MFS_CODEC_NEEDS_REF 0x1u /* decode needs the reference chunk */

/* Per-thread scratch for encoders and decoders (opaque). */
typedef struct mfs_codec_ws mfs_codec_ws;

/* What an encoder is told about the chunk it encodes. */
typedef struct mfs_encode_params {
	mfs_dtype dtype;   /* element type of the tensor; MFS_DT_UNKNOWN for non-tensor bytes */
	int zstd_level;    /* level for zstd-backed stages (0 = codec default) */
	const void *ref;   /* reference chunk raw bytes, for MFS_CODEC_NEEDS_REF codecs */
	size_t ref_len;
} mfs_encode_params;

typedef struct mfs_codec {
	mfs_codec_id id;
	const char *name; /* "raw", "zstd", "bitplane-huff", ... */
	unsigned flags;
	/** Worst-case payload size for @p raw_len bytes of input. */
	size_t (*bound)(size_t raw_len);
	/**
	 * Encode. @return 0 and *dst_len, MFS_E_NOSPACE when dst_cap < bound,
	 * MFS_E_UNSUPPORTED when the codec does not apply to this input (e.g. a
	 * float codec given a length that is not a whole number of elements).
	 */
	int (*encode)(const mfs_encode_params *p, const void *src, size_t src_len, void *dst,
		      size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws);
	/** Decode exactly dst_len bytes. @return 0 or MFS_E_CORRUPT / -ENOMEM. */
	int (*decode)(const void *src, size_t src_len, const void *ref, size_t ref_len,
		      void *dst, size_t dst_len, mfs_codec_ws *ws);
} mfs_codec;

/**
 * Look a codec up by id.
 * @return a static descriptor, or NULL when this build does not know @p id.
 */
const mfs_codec *mfs_codec_get(mfs_codec_id id);

/** Look a codec up by name ("zstd"); NULL when unknown. */
const mfs_codec *mfs_codec_by_name(const char *name);

/** Name of a codec id ("zstd"), or "unknown". Static string. */
const char *mfs_codec_name(mfs_codec_id id);

/**
 * Encode with codec @p id (dispatch + argument checks).
 * @param[out] dst_len  payload bytes written
 * @return 0, MFS_E_CODEC for an unknown id, or the codec's error.
 */
int mfs_codec_encode(mfs_codec_id id, const mfs_encode_params *p, const void *src,
		     size_t src_len, void *dst, size_t dst_cap, size_t *dst_len,
		     mfs_codec_ws *ws);

/** Decode with codec @p id. See mfs_codec.decode. */
int mfs_codec_decode(mfs_codec_id id, const void *src, size_t src_len, const void *ref,
		     size_t ref_len, void *dst, size_t dst_len, mfs_codec_ws *ws);

/** Largest bound() over all codecs for @p raw_len: sizes an encode buffer. */
size_t mfs_codec_bound_max(size_t raw_len);

/**
 * Create a workspace. Not thread-safe: one per thread.
 * @param[out] out  owned by the caller; free with mfs_codec_ws_free()
 * @return 0 or -ENOMEM
 */
int mfs_codec_ws_create(mfs_codec_ws **out);

/** Free a workspace; NULL is a no-op. */
void mfs_codec_ws_free(mfs_codec_ws *ws);

/*
 * Scratch slots.  A, B: codec encoders/decoders; C: mfs_codec_choose;
 * CHUNK, REF: callers outside codec/ (the reader's decoded chunk and
 * reference chunk).  A codec never touches the caller slots, so a caller may
 * decode into its slot while the codec uses its own.
 */
enum {
	MFS_WS_SLOT_A = 0,
	MFS_WS_SLOT_B,
	MFS_WS_SLOT_C,
	MFS_WS_SLOT_CHUNK,
	MFS_WS_SLOT_REF,
	MFS_WS_SLOTS
};

/**
 * Scratch memory of at least @p size bytes in slot @p slot, 64-byte aligned.
 * Grows (reallocates, contents lost) only when a larger size is asked for.
 * @return pointer owned by the workspace, valid until the next call for the
 *         same slot with a larger size or mfs_codec_ws_free(); NULL on OOM.
 */
void *mfs_codec_ws_scratch(mfs_codec_ws *ws, unsigned slot, size_t size);

/* ---- codec choice at ingest ---- */

/* One candidate's result on a sample. */
typedef struct mfs_codec_trial {
	mfs_codec_id id;
	size_t raw_len;
	size_t stored_len;
	double decode_mbps; /* single-thread decode speed on the sample, MB/s */
} mfs_codec_trial;

/**
 * Choose the codec for a tensor (or a run of non-tensor bytes) from a sample
 * of it: try the candidates for @p p->dtype and keep the smallest that meets
 * the speed rule documented in docs/codecs.md.
 * @param[in]  sample      raw bytes, a whole number of elements
 * @param[out] out         the chosen id
 * @param[out] trials      optional: each candidate's result (may be NULL)
 * @param[in,out] n_trials in: capacity of @p trials; out: number filled
 * @return 0 or a negative code (-ENOMEM)
 */
int mfs_codec_choose(const mfs_encode_params *p, const void *sample, size_t sample_len,
		     mfs_codec_ws *ws, mfs_codec_id *out, mfs_codec_trial *trials,
		     size_t *n_trials);

#endif
