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
#include "le.h"

#include <errno.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bitplane.c assumes a little-endian host"
#endif

#define BP_VERSION    1
#define BP_HEADER     8
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
	size_t need = (sizeof(mfs_plane_enc_scratch) + 63) & ~(size_t)63;
	/* an unaligned source is copied behind the planes */
	int src_aligned = ((uintptr_t)src & (L->esize - 1)) == 0;
	size_t copy_off = 0;
	size_t off[BP_MAX_PLANES];
	for (unsigned p = 0; p < L->nplanes; p++) {
		off[p] = need;
		need += (mfs_planes_sym_bytes(L->width[p], n) + 63) & ~(size_t)63;
	}
	if (!src_aligned) {
		copy_off = need;
		need += src_len;
	}
	uint8_t *scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, need);
	if (!scr)
		return -ENOMEM;
	mfs_plane_enc_scratch *pscr = (void *)scr;
	void *planes[BP_MAX_PLANES];
	for (unsigned p = 0; p < L->nplanes; p++)
		planes[p] = scr + off[p];
	const uint8_t *elems = src;
	if (!src_aligned) {
		memcpy(scr + copy_off, src, src_len);
		elems = scr + copy_off;
	}
	mfs_planes_split(L, elems, n, planes);

	uint8_t *out = dst, *end = out + dst_cap;
	out[0] = BP_VERSION;
	out[1] = (uint8_t)prm->dtype;
	out[2] = (uint8_t)L->nplanes;
	out[3] = 0;
	mfs_le_put32(out + 4, (uint32_t)n);
	uint8_t *desc = out + BP_HEADER;
	uint8_t *q = desc + BP_PLANE_DESC * L->nplanes;
	int rc = mfs_planes_encode_all(L, planes, n, MFS_PLANE_MODES_BASIC, 0, pscr, desc, &q,
				       end, ws);
	if (rc < 0)
		return rc;
	*dst_len = (size_t)(q - out);
	return 0;
}

/* ---- decoder ---- */

static int bp_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	const uint8_t *src = rq->src;
	size_t src_len = rq->src_len, dst_len = rq->dst_len;
	uint8_t *dst = rq->dst;
	if (src_len < BP_HEADER || src[0] != BP_VERSION || src[3] != 0)
		return MFS_E_CORRUPT;
	const mfs_planes_layout *L = mfs_planes_layout_bitplane(src[1]);
	if (!L || src[2] != L->nplanes || dst_len % L->esize || dst_len > MFS_CHUNK_MAX)
		return MFS_E_CORRUPT;
	size_t n = dst_len / L->esize;
	size_t hdr = BP_HEADER + BP_PLANE_DESC * L->nplanes;
	if (src_len < hdr || mfs_le_get32(src + 4) != n)
		return MFS_E_CORRUPT;

	const uint8_t *data[BP_MAX_PLANES];
	size_t len[BP_MAX_PLANES];
	unsigned mode[BP_MAX_PLANES];
	size_t need = 0, off[BP_MAX_PLANES];
	size_t at = hdr;
	for (unsigned p = 0; p < L->nplanes; p++) {
		const uint8_t *d = src + BP_HEADER + BP_PLANE_DESC * p;
		unsigned w = L->width[p];
		if (d[0] != w || d[1] > MFS_PLANE_HUFF)
			return MFS_E_CORRUPT;
		mode[p] = d[1];
		len[p] = mfs_le_get32(d + 2);
		if (len[p] > src_len - at)
			return MFS_E_CORRUPT;
		data[p] = src + at;
		at += len[p];
		off[p] = need;
		if (mfs_plane_needs_buffer(mode[p], w))
			need += (mfs_planes_sym_bytes(w, n) + 64) &
				~(size_t)63; /* >= 64: never NULL */
	}
	if (at != src_len)
		return MFS_E_CORRUPT;
	uint8_t *scr = NULL;
	if (need) {
		scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, need);
		if (!scr)
			return -ENOMEM;
	}
	/* BF16 with a RAW low plane merges from the packed bytes */
	int fuse6 = L->nplanes == 2 && L->width[0] == 10 && mode[1] == MFS_PLANE_RAW;
	const void *planes[BP_MAX_PLANES];
	for (unsigned p = 0; p < L->nplanes; p++) {
		if (p == 1 && fuse6) {
			if (len[p] != mfs_planes_raw_len(L->width[p], n))
				return MFS_E_CORRUPT;
			planes[p] = data[p];
			continue;
		}
		int rc = mfs_plane_decode(mode[p], L->width[p], n, data[p], len[p],
					  scr ? scr + off[p] : NULL, &planes[p], ws);
		if (rc < 0)
			return rc;
	}
	if (fuse6)
		mfs_planes_merge_bf16_raw6(planes[0], planes[1], n, dst);
	else
		mfs_planes_merge(L, planes, n, dst);
	return 0;
}

const mfs_codec mfs_codec_bitplane_huff = {
    .id = MFS_CODEC_BITPLANE_HUFF,
    .name = "bitplane-huff",
    .flags = 0,
    .bound = bp_bound,
    .encode = bp_encode,
    .decode = bp_decode,
};
