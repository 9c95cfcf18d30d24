/*
 * quant.h - quantization schemes of a quantized twin (an int8 or FP8 E4M3
 * copy of a BF16/F16 tensor plus its scales), as checkpoints store them.
 *
 * A scheme says how the scale tensor maps onto the elements of the
 * high-precision tensor seen as a matrix (rows = shape[0], cols = product of
 * the other dimensions): one scale for the whole tensor, one per row, one
 * per row and group of columns, or one per tile of block_r x block_c
 * elements.  The quant-residual codec (id MFS_CODEC_QUANT_RESIDUAL,
 * docs/codecs.md) predicts each element from its twin's code and scale;
 * ingest uses this header to recognise a pairing from shapes
 * (mfs_quant_scheme_from_shapes), to find the scales a chunk needs
 * (mfs_quant_scale_span) and to confirm the pairing on a sample
 * (mfs_quant_quantize).
 *
 * Usage: build the scheme from the two tensors' shapes; for each chunk of
 * the high-precision tensor, [elem_off, elem_off + n), the twin's bytes of
 * the same elements are its n codes and mfs_quant_scale_span() names the
 * slice of the scale tensor; both go to the codec as references (roles
 * MFS_REF_QUANT and MFS_REF_SCALE) and the scheme as mfs_encode_params.quant.
 *
 * Arithmetic: every computation here and in the codec is IEEE binary32 with
 * round-to-nearest-even and subnormals honoured, whatever the caller's
 * floating-point environment (the calls set it for their duration on x86-64
 * and AArch64: flush-to-zero and denormals-are-zero off, rounding to
 * nearest), so every machine gets the same bits.
 *
 * Pure functions: nothing allocates, nothing keeps state.  Module
 * convention: int return, 0 or a negative code from err.h (the two size
 * helpers return their result).
 */
#ifndef MFS_QUANT_H
#define MFS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

typedef enum mfs_quant_kind {			    /* stable: stored in payloads */
			      MFS_QUANT_TENSOR = 1, /* one scale: scale shape [] or [1] */
			      MFS_QUANT_CHANNEL =
				  2, /* one scale per row: [rows, 1] or [rows] */
			      MFS_QUANT_GROUP = 3, /* per row, per group of `group`
						      columns: [rows, cols/group] */
			      MFS_QUANT_BLOCK = 4, /* per block_r x block_c tile:
						      [ceil(rows/br), ceil(cols/bc)] */
} mfs_quant_kind;

typedef struct mfs_quant_scheme {
	mfs_quant_kind kind;
	mfs_dtype qdtype;    /* MFS_DT_I8 (symmetric, value = q * scale) or MFS_DT_F8_E4M3
				(E4M3FN) */
	mfs_dtype sdtype;    /* scale dtype: MFS_DT_F32, MFS_DT_BF16 or MFS_DT_F16 */
	uint64_t rows, cols; /* the tensor as a matrix: rows = shape[0], cols = product of
				the rest */
	uint32_t group;	     /* GROUP only */
	uint32_t block_r, block_c; /* BLOCK only */
} mfs_quant_scheme;

/* Largest tile side of a BLOCK scheme (a power of two). */
#define MFS_QUANT_BLOCK_MAX 65536u

/**
 * The scheme from shapes.
 * @param[in] hp      the high-precision tensor's dtype (MFS_DT_BF16 or MFS_DT_F16)
 * @param[in] ndim, shape  its shape, ndim >= 1 (a 1-D tensor has cols 1)
 * @param[in] qdtype  the twin's dtype (MFS_DT_I8 or MFS_DT_F8_E4M3); the twin
 *                    has the high-precision tensor's shape (the caller checks)
 * @param[in] sdtype  the scale tensor's dtype (F32, BF16 or F16)
 * @param[in] sndim, sshape  the scale tensor's shape:
 *                    [] or all ones (TENSOR); [rows] or [rows, 1, ...] (CHANNEL);
 *                    [rows, g] with g > 1 dividing cols (GROUP, group = cols / g);
 *                    otherwise [a, b] with a = ceil(rows / br), b = ceil(cols / bc)
 *                    for powers of two br, bc <= MFS_QUANT_BLOCK_MAX (BLOCK; when
 *                    several sizes fit one side, all of which mean the same tiles,
 *                    the other side's size if it fits, else the smallest)
 * @param[out] out    the scheme (unset on error)
 * @return 0, or MFS_E_UNSUPPORTED when the dtypes or shapes fit no scheme
 *         (also: ndim 0, an empty tensor, a dimension product that overflows
 *         64 bits)
 */
int mfs_quant_scheme_from_shapes(mfs_dtype hp, uint32_t ndim, const uint64_t *shape,
				 mfs_dtype qdtype, mfs_dtype sdtype, uint32_t sndim,
				 const uint64_t *sshape, mfs_quant_scheme *out);

/**
 * Check a scheme's fields (what the codec's payload parser and encoder
 * rely on): known kind and dtypes, rows and cols > 0 with a product that
 * fits 64 bits, group > 0 dividing cols (GROUP), block sides powers of two
 * <= MFS_QUANT_BLOCK_MAX (BLOCK).
 * @return 0 or MFS_E_INVAL
 */
int mfs_quant_scheme_check(const mfs_quant_scheme *s);

/** Number of scale elements of the scheme (0 for a scheme that fails the check). */
uint64_t mfs_quant_scale_count(const mfs_quant_scheme *s);

/**
 * The scales elements [e0, e0+n) (row-major element indices of the tensor)
 * need: [*first, *first + *count) in the scale tensor's row-major order.
 * TENSOR: the one scale; CHANNEL: the rows touched; GROUP: the groups from
 * e0's to the last element's (groups are contiguous in row-major order);
 * BLOCK: from the first tile row to the last one touched, whole tile rows.
 * n = 0 gives *first = *count = 0.  The caller keeps e0 + n <= rows * cols.
 */
void mfs_quant_scale_span(const mfs_quant_scheme *s, uint64_t e0, uint64_t n,
			  uint64_t *first, uint64_t *count);

/**
 * Quantize elements [e0, e0+n) of the high-precision tensor the way
 * checkpoints do it, in float32: x = value / scale (IEEE division), then
 *   I8: x rounded half to even, clamped to [-128, 127]; NaN gives 0 (a scale
 *       of amax/127 never reaches -128);
 *   F8 (E4M3FN): x rounded to nearest even on the E4M3FN grid (subnormals
 *       included), |x| >= 448 saturated to +-448 (0x7e / 0xfe, infinities
 *       too), NaN gives 0x7f, the sign of a zero kept.
 * A zero, NaN, infinite or negative scale gives whatever IEEE division
 * gives (x/0 = +-inf, 0/0 = NaN, ...), then the same rounding.
 * @param[in]  s        the scheme
 * @param[in]  hpdt     dtype of @p hp: MFS_DT_BF16 or MFS_DT_F16
 * @param[in]  hp       n values (any alignment, little-endian)
 * @param[in]  scales   the span mfs_quant_scale_span(s, e0, n) names, as
 *                      stored (dtype s->sdtype, little-endian), exactly
 *                      @p scales_len = count * element size bytes
 * @param[out] codes    n codes (the twin's bytes: int8 or E4M3FN bits)
 * @return 0, or MFS_E_INVAL (bad scheme or dtype, e0 + n past the tensor,
 *         scales_len not the span's)
 */
int mfs_quant_quantize(const mfs_quant_scheme *s, mfs_dtype hpdt, const void *hp,
		       uint64_t e0, size_t n, const void *scales, size_t scales_len,
		       uint8_t *codes);

#endif
