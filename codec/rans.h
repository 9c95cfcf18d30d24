/*
 * rans.h - the rans codec (id MFS_CODEC_RANS): float tensors cut into the
 * same bit planes as bitplane-huff (planes.h, mfs_planes_layout_bitplane),
 * the skewed planes coded with static-model interleaved rANS whose lanes a
 * GPU decodes in parallel (gpu/rans_cuda.h); this CPU decoder is the
 * reference and the fallback.  The coder itself (state, renormalisation,
 * lanes, lookup table) is codec/rans_kernel.h, shared with the CUDA
 * decoder; docs/codecs.md has the measurements behind the choices.
 *
 * Usage: through the registry (mfs_codec_get(MFS_CODEC_RANS), name "rans")
 * like any codec; mfs_rans_encode_opts() encodes with a chosen precision
 * and lane count (benchmarks, tests).
 *
 * Payload, version 1 (all integers little-endian, written byte by byte):
 *   u8 version (1), u8 dtype (mfs_dtype), u8 nplanes, u8 0, u32 n (elements)
 *   nplanes x { u8 width, u8 mode, u32 len }
 *   plane data, in plane order, each len bytes, by mode:
 *     RAW   (0): planes.h's RAW packing, exactly ceil(n * width / 8) bytes
 *     CONST (1): u16 symbol (below 2^width), all n symbols equal it
 *     RANS  (8): a rANS plane:
 *        u8  P, the probability precision: frequencies sum to 2^P (8..11)
 *        u8  0
 *        u16 groups (1..32); lanes = 32 * groups
 *        u16 lo, u16 cnt: frequencies follow for symbols lo..lo+cnt-1
 *            (cnt >= 2, lo + cnt <= 2^width)
 *        cnt frequencies, each one byte 0..127 or two bytes
 *            b0 | 0x80, b1 meaning (b0 & 127) | b1 << 7; each below 2^P,
 *            summing to 2^P
 *        groups x u32: byte length of each group's word stream (even)
 *        lanes x u32: each lane's initial state (>= 2^16)
 *        the groups' streams, group 0 first, each of u16 words; the
 *            lengths add up to the rest of the plane exactly
 *      Symbol j of the plane is lane (j % lanes)'s (j / lanes)-th symbol;
 *      lane k is in group k / 32; the decoding steps are rans_kernel.h's.
 *      After the last symbol every lane's state is exactly 2^16 and every
 *      stream has been read to its end.
 * n must equal dst_len / element size; widths must be the dtype's layout.
 * The decoder needs nothing but the payload and dst_len.
 *
 * Encoder: per plane, as mfs_plane_encode() picks among its modes: CONST
 * for one distinct symbol; RANS when its size is at most 99% of RAW
 * (MFS_PLANE_MIN_GAIN); else RAW.  Tables are per chunk and per plane, so
 * every chunk decodes alone.
 *
 * Decoders never read outside the payload nor write outside dst; any
 * payload that does not decode to exactly dst_len bytes under these rules
 * is MFS_E_CORRUPT.  Nothing is allocated on the hot path: planes go to
 * the workspace's scratch slot A (the encoder also uses slot B), lookup
 * tables live on the stack (8 KiB).  Module convention: int return, 0 or
 * a negative code from err.h.
 */
#ifndef MFS_RANS_H
#define MFS_RANS_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* The encoder's defaults (docs/codecs.md, rans: measured choices). */
#define MFS_RANS_DEFAULT_PROB_BITS 11
#define MFS_RANS_DEFAULT_LANES	   512
/* A lane gets at least this many symbols: fewer lanes for small planes,
 * since each lane costs a 4-byte state. */
#define MFS_RANS_MIN_STEPS 64

/* Encoder settings; zero fields take the defaults. */
typedef struct mfs_rans_opts {
	unsigned prob_bits; /* MFS_RANS_PROB_MIN..MFS_RANS_PROB_MAX (rans_kernel.h) */
	unsigned lanes;	    /* most lanes per plane: a multiple of 32, 32..1024 */
} mfs_rans_opts;

/* The registry's descriptor (codec.c). */
extern const mfs_codec mfs_codec_rans;

/** Worst-case payload size for @p raw_len raw bytes. */
size_t mfs_rans_bound(size_t raw_len);

/**
 * Encode one chunk with explicit settings (the registry's encoder is this
 * with @p o NULL).
 * @param[in]  p        p->dtype: a float type of planes.h's layouts
 * @param[in]  o        settings, or NULL for the defaults
 * @param[out] dst      room for mfs_rans_bound(src_len) bytes
 * @param[out] dst_len  bytes written
 * @param[in]  ws       scratch slots A and B
 * @return 0, MFS_E_UNSUPPORTED (not a float layout, a partial element),
 *         MFS_E_INVAL (settings out of range), MFS_E_NOSPACE, MFS_E_TOOBIG,
 *         -ENOMEM
 */
int mfs_rans_encode_opts(const mfs_encode_params *p, const mfs_rans_opts *o,
			 const void *src, size_t src_len, void *dst, size_t dst_cap,
			 size_t *dst_len, mfs_codec_ws *ws);

/**
 * Normalise symbol counts to frequencies that sum to 2^prob_bits: every
 * counted symbol gets at least 1, and the rounding is corrected where it
 * costs the fewest bits.
 * @param[in]  count  nsym counts, at least two of them nonzero
 * @param[out] freq   nsym frequencies (0 exactly where count is 0)
 * @return 0, or MFS_E_INVAL when fewer than two or more than 2^prob_bits
 *         symbols are counted, or prob_bits is out of range
 */
int mfs_rans_normalize(const uint32_t *count, unsigned nsym, unsigned prob_bits,
		       uint16_t *freq);

/**
 * Bits the symbols of @p count cost under the frequencies @p freq
 * (sum of count[s] * (prob_bits - log2 freq[s])): a plane's coded size
 * without its table, states and stream rounding.
 * @return the bits, or -1 when a counted symbol has no frequency
 */
double mfs_rans_cost_bits(const uint32_t *count, const uint16_t *freq, unsigned nsym,
			  unsigned prob_bits);

#endif
