/*
 * codec.h - the codec registry: byte transforms + entropy coders by stable id.
 *
 * A codec turns one chunk of raw bytes (at most MFS_CHUNK_MAX) into a
 * self-describing payload and back.  Each codec has a numeric id that is
 * stored in the store with every chunk and never changes meaning.
 *
 * Decoding is a request (mfs_decode_req): the payload, the chunk's
 * geometry (dtype, its tensor's shape, the element offset of the chunk in
 * its tensor) and a list of references, each the raw bytes of a range of
 * another chunk with a role (the base model's bytes for xor-delta; the
 * quantized twin's values and its scales for quant-residual).  The caller
 * (index/, fs/) resolves each stored reference (chunk key, byte offset,
 * length, role) to bytes before the call; a codec never looks anything up.
 * A decoder:
 *   - decodes into a caller-provided buffer of exactly the raw length (the
 *     store records it), and fails with MFS_E_CORRUPT on any payload that
 *     does not decode to exactly that many bytes, or on references that are
 *     missing or of the wrong length for its payload; it never reads outside
 *     [src, src+src_len) or a reference's [data, data+len), nor writes
 *     outside [dst, dst+dst_len);
 *   - codecs without MFS_CODEC_NEEDS_REF ignore references and geometry;
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
#define MFS_CODEC_NEEDS_REF 0x1u /* decode needs references (mfs_decode_req.refs) */

/* Per-thread scratch for encoders and decoders (opaque). */
typedef struct mfs_codec_ws mfs_codec_ws;

/*
 * What a reference is to the chunk that decodes against it.  Stable: stored
 * in chunk records (index/records.h).
 */
typedef enum mfs_ref_role {
	MFS_REF_BASE = 1,  /* xor-delta: the base model's bytes of the same elements */
	MFS_REF_QUANT = 2, /* quant-residual: the quantized twin's values of the same elements */
	MFS_REF_SCALE = 3, /* quant-residual: the scales that dequantize them */
	MFS_REF__COUNT
} mfs_ref_role;

/* Most references one chunk decodes against. */
#define MFS_REFS_MAX 4
/* Most dimensions of a tensor (also store.h's MFS_MAX_DIMS). */
#define MFS_GEOM_DIMS 16

/* Where a chunk lies in its tensor. */
typedef struct mfs_chunk_geom {
	mfs_dtype dtype;
	uint32_t ndim;			/* 0 when the chunk is not tensor data */
	uint64_t shape[MFS_GEOM_DIMS];
	uint64_t elem_off;		/* index of the chunk's first element in its tensor */
} mfs_chunk_geom;

/* One reference, resolved to bytes (the caller owns them). */
typedef struct mfs_ref_data {
	mfs_ref_role role;
	const void *data;
	size_t len;
} mfs_ref_data;

/* A decode request.  Everything is borrowed for the call. */
typedef struct mfs_decode_req {
	const void *src;		/* the payload */
	size_t src_len;
	void *dst;			/* exactly dst_len bytes are written on success */
	size_t dst_len;
	const mfs_chunk_geom *geom;	/* NULL when the store recorded none */
	const mfs_ref_data *refs;	/* n_refs entries (NULL when 0) */
	size_t n_refs;
} mfs_decode_req;

/** The reference of role @p role in @p rq, or NULL when it has none. */
const mfs_ref_data *mfs_decode_req_ref(const mfs_decode_req *rq, mfs_ref_role role);

struct mfs_quant_scheme; /* quant.h */

/* What an encoder is told about the chunk it encodes. */
typedef struct mfs_encode_params {
	mfs_dtype dtype;   /* element type of the tensor; MFS_DT_UNKNOWN for non-tensor bytes */
	int zstd_level;    /* level for zstd-backed stages (0 = codec default) */
	const mfs_chunk_geom *geom;  /* optional: where the chunk lies in its tensor */
	const mfs_ref_data *refs;    /* references, for MFS_CODEC_NEEDS_REF codecs */
	size_t n_refs;
	const struct mfs_quant_scheme *quant; /* quant-residual only: the twin's scheme; NULL otherwise */
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
	/** Decode exactly rq->dst_len bytes. @return 0 or MFS_E_CORRUPT / -ENOMEM. */
	int (*decode)(const mfs_decode_req *rq, mfs_codec_ws *ws);
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

/**
 * Decode with codec @p id (dispatch + argument checks: dst_len at most
 * MFS_CHUNK_MAX, at most MFS_REFS_MAX references, each with data unless
 * empty).  See the decoding rules at the top of this file.
 * @return 0, MFS_E_CODEC for an unknown id, MFS_E_CORRUPT, -ENOMEM
 */
int mfs_codec_decode(mfs_codec_id id, const mfs_decode_req *rq, mfs_codec_ws *ws);

/**
 * Decode a chunk that has no references: mfs_codec_decode() with a request
 * of @p src and @p dst only.
 */
int mfs_codec_decode_plain(mfs_codec_id id, const void *src, size_t src_len, void *dst,
			   size_t dst_len, mfs_codec_ws *ws);

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
 * CHUNK, REF, PAYLOAD: callers outside codec/ (the reader's decoded chunk and
 * reference chunk; a chunk's payload read from its pack, index/store.h
 * mfs_chunk_load).  A codec never touches the caller slots, so a caller may
 * decode into its slot while the codec uses its own.
 */
enum {
	MFS_WS_SLOT_A = 0,
	MFS_WS_SLOT_B,
	MFS_WS_SLOT_C,
	MFS_WS_SLOT_CHUNK,
	MFS_WS_SLOT_REF, /* MFS_REFS_MAX slots: the REF + i-th reference chunk */
	MFS_WS_SLOT_PAYLOAD = MFS_WS_SLOT_REF + MFS_REFS_MAX,
	MFS_WS_SLOTS
};

/**
 * Scratch memory of at least @p size bytes in slot @p slot, 64-byte aligned.
 * Grows (reallocates, contents lost) only when a larger size is asked for,
 * to the next power of two (so a slot that follows chunk sizes grows a few
 * times, not at each new largest size).
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
