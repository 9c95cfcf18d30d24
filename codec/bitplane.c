/*
 * bitplane.c - the bitplane-huff codec (id MFS_CODEC_BITPLANE_HUFF) for
 * float tensors: regroup each element's bits into symbol planes, the
 * exponent at the top of the first plane, then code each plane as Huffman,
 * raw (bit-packed) or a constant, whichever is smallest (Huffman only when
 * it saves at least MFS_BP_MIN_GAIN of the plane, since it costs decode
 * time).  docs/codecs.md has the byte layout and the measurements behind
 * the plane split.
 *
 * Element -> planes: the element (little-endian, esize bytes) is rotated
 * left by one bit so the sign goes to the bottom and the exponent becomes
 * the top bits; the rotated value is cut, top bits first, into planes of
 * the widths below.  For BF16 and FP32 the first plane is the 8-bit exponent
 * plus the two top mantissa bits: within one binade the top mantissa bits of
 * normally distributed weights are skewed towards small values, and a joint
 * symbol captures that (measured on all-MiniLM-L6-v2: 66.0% vs 66.4% of raw
 * for BF16 with a plain exponent plane).  The rest are near-uniform
 * mantissa bits, stored raw unless Huffman pays.
 *
 * Payload (little-endian):
 *   u8 version (1), u8 dtype (mfs_dtype), u8 nplanes, u8 0, u32 n (elements)
 *   nplanes x { u8 width, u8 mode, u32 len }
 *   plane data, in plane order, each len bytes:
 *     RAW   (0): n symbols of width bits in ceil(n*w/8) bytes: 8-bit symbols
 *                as bytes, 6-bit ones in blocks of 256 (see pack_bits),
 *                others packed LSB-first
 *     CONST (1): u16 symbol, all n symbols equal it
 *     HUFF  (2): a huff.h block of n symbols
 * n must equal dst_len / esize (so a wrong length is caught even when every
 * plane is a constant); widths must match the dtype's layout.  The decoder
 * needs nothing but the payload and dst_len.
 */
#include "codec_internal.h"
#include "planes.h"

#include <errno.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bitplane.c assumes a little-endian host"
#endif

#define BP_VERSION    1
#define BP_HEADER     MFS_PLANES_HEADER
#define BP_PLANE_DESC MFS_PLANE_DESC
#define BP_MAX_PLANES MFS_PLANES_MAX

static size_t bp_bound(size_t raw_len)
{
	/* planes are never larger than raw (+1 byte rounding each) */
	return raw_len + BP_HEADER + BP_MAX_PLANES * (BP_PLANE_DESC + 1) + 16;
}

/* ---- encoder ---- */

static int bp_encode(const mfs_encode_params *prm, const void *src, size_t src_len,
		     void *dst, size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws)
{
	const mfs_planes_layout *L = mfs_planes_layout_bitplane(prm->dtype);
	if (!L || src_len % L->esize)
		return MFS_E_UNSUPPORTED;
	if (src_len > MFS_CHUNK_MAX)
		return MFS_E_TOOBIG;
	if (dst_cap < bp_bound(src_len))
		return MFS_E_NOSPACE;
	size_t n = src_len / L->esize;

	/* scratch A: the plane coder's scratch, then the symbol planes */
	void *pscr, *planes[BP_MAX_PLANES];
	int rc = mfs_planes_split_ws(L, src, n, sizeof(mfs_plane_enc_scratch), ws, &pscr,
				     planes);
	if (rc < 0)
		return rc;

	const uint8_t head[4] = {BP_VERSION, (uint8_t)prm->dtype, (uint8_t)L->nplanes, 0};
	return mfs_planes_payload_write(L, planes, n, MFS_PLANE_MODES_BASIC, 0, pscr,
					head, dst, dst_cap, dst_len, ws);
}

/* ---- decoder ---- */

static int bp_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	const uint8_t *src = rq->src;
	if (rq->src_len < BP_HEADER || src[0] != BP_VERSION || src[3] != 0)
		return MFS_E_CORRUPT;
	const mfs_planes_layout *L = mfs_planes_layout_bitplane(src[1]);
	if (!L || src[2] != L->nplanes)
		return MFS_E_CORRUPT;
	mfs_planes_payload pp;
	int rc = mfs_planes_payload_parse(L, src, rq->src_len, rq->dst_len,
					  MFS_PLANE_MODES_BASIC, ws, &pp);
	if (rc < 0)
		return rc;
	const void *planes[BP_MAX_PLANES] = {0};
	return mfs_planes_payload_merge(L, &pp, planes, NULL, rq->dst, ws);
}

const mfs_codec mfs_codec_bitplane_huff = {
    .id = MFS_CODEC_BITPLANE_HUFF,
    .name = "bitplane-huff",
    .flags = 0,
    .bound = bp_bound,
    .encode = bp_encode,
    .decode = bp_decode,
};
