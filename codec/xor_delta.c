/*
 * xor_delta.c - the xor-delta codec (id MFS_CODEC_XOR_DELTA) for a float
 * tensor of a fine-tune against the same tensor of its base: the chunk is
 * XORed with the base's bytes of the same elements (one reference, role
 * MFS_REF_BASE, exactly as long as the chunk), the XOR is cut into byte
 * planes (planes.h) and each plane is coded RAW, CONST, HUFF, SPARSE or
 * ZSTD.  A fine-tune moves each weight by a small fraction of itself, so the
 * XOR's top bits (sign, exponent, top mantissa) are mostly zero, and in BF16
 * most elements do not change at all: those planes are far more skewed than
 * a Huffman code's 1 bit per symbol can follow, so two modes code below it:
 * SPARSE (a mask of the nonzero symbols, 8 per byte, then only those) and
 * ZSTD (matches over zero runs).  docs/codecs.md has the byte layout, the
 * decoder's checks and the measurements on real fine-tunes that chose the
 * layout and the modes.
 *
 * Payload (little-endian):
 *   u8 version (1), u8 dtype (mfs_dtype), u8 layout (0: byte planes),
 *   u8 nplanes (the element's size in bytes), u32 n (elements; must equal
 *   dst_len / esize)
 *   nplanes x { u8 width (8), u8 mode, u32 len }, top byte first
 *   plane data, in plane order, each len bytes (planes.h describes the modes)
 * The decoder needs the payload, dst_len and the base's bytes.
 */
#include "codec_internal.h"
#include "planes.h"

#include <errno.h>
#include <string.h>

#define XD_VERSION    1
#define XD_HEADER     MFS_PLANES_HEADER
#define XD_PLANE_DESC MFS_PLANE_DESC
#define XD_MODES                                                                         \
	(MFS_PLANE_MODES_BASIC | MFS_PLANE_MODE_BIT(MFS_PLANE_ZSTD) |                    \
	 MFS_PLANE_MODE_BIT(MFS_PLANE_SPARSE))

/*
 * Layout ids (stored).  One so far: byte planes, top byte first, no
 * rotation (docs/codecs.md has the layouts measured against it).
 */
enum { XD_LAYOUT_BYTES = 0, XD_LAYOUT__COUNT };

static const mfs_planes_layout bytes1 = {1, 0, 1, {8}};
static const mfs_planes_layout bytes2 = {2, 0, 2, {8, 8}};
static const mfs_planes_layout bytes4 = {4, 0, 4, {8, 8, 8, 8}};
static const mfs_planes_layout bytes8 = {8, 0, 8, {8, 8, 8, 8, 8, 8, 8, 8}};

/*
 * The layout @p id means for dtype @p dt; NULL when none.  The dtypes are
 * bitplane-huff's: BF16, F16, F32, F64 and the three F8 types.
 */
static const mfs_planes_layout *xd_layout(unsigned id, unsigned dt)
{
	const mfs_planes_layout *bp = mfs_planes_layout_bitplane((mfs_dtype)dt);
	if (id != XD_LAYOUT_BYTES || !bp)
		return NULL;
	switch (bp->esize) {
	case 1:
		return &bytes1;
	case 2:
		return &bytes2;
	case 4:
		return &bytes4;
	default:
		return &bytes8;
	}
}

static size_t xd_bound(size_t raw_len)
{
	/* planes are never larger than raw (+1 byte rounding each) */
	return raw_len + XD_HEADER + MFS_PLANES_MAX * (XD_PLANE_DESC + 3) + 16;
}

/* The one reference a chunk of @p len bytes decodes against, or NULL. */
static const mfs_ref_data *base_ref(const mfs_ref_data *refs, size_t n_refs, size_t len)
{
	if (n_refs != 1 || !refs || refs[0].role != MFS_REF_BASE || refs[0].len != len ||
	    (len && !refs[0].data))
		return NULL;
	return &refs[0];
}

static int xd_encode(const mfs_encode_params *prm, const void *src, size_t src_len,
		     void *dst, size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws)
{
	unsigned lid = XD_LAYOUT_BYTES;
	const mfs_planes_layout *L = xd_layout(lid, prm->dtype);
	if (!L || src_len % L->esize)
		return MFS_E_UNSUPPORTED;
	if (src_len > MFS_CHUNK_MAX)
		return MFS_E_TOOBIG;
	const mfs_ref_data *base = base_ref(prm->refs, prm->n_refs, src_len);
	if (!base)
		return MFS_E_INVAL;
	if (dst_cap < xd_bound(src_len))
		return MFS_E_NOSPACE;
	size_t n = src_len / L->esize;

	/* scratch A: the plane coder's scratch, the symbol planes, then the XOR */
	void *pscr, *planes[MFS_PLANES_MAX];
	uint8_t *x;
	int rc = mfs_planes_enc_scratch(L, n, sizeof(mfs_plane_enc_scratch), src_len, ws,
					&pscr, planes, &x);
	if (rc < 0)
		return rc;
	const uint8_t *a = src, *b = base->data;
	for (size_t i = 0; i < src_len; i++)
		x[i] = a[i] ^ b[i];
	mfs_planes_split(L, x, n, planes);

	const uint8_t head[4] = {XD_VERSION, (uint8_t)prm->dtype, (uint8_t)lid,
				 (uint8_t)L->nplanes};
	return mfs_planes_payload_write(L, planes, n, XD_MODES, prm->zstd_level, pscr,
					head, dst, dst_cap, dst_len, ws);
}

static int xd_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	const uint8_t *src = rq->src;
	size_t dst_len = rq->dst_len;
	uint8_t *dst = rq->dst;
	const mfs_ref_data *base = base_ref(rq->refs, rq->n_refs, dst_len);
	if (!base || rq->src_len < XD_HEADER || src[0] != XD_VERSION)
		return MFS_E_CORRUPT;
	const mfs_planes_layout *L = xd_layout(src[2], src[1]);
	if (!L || src[3] != L->nplanes)
		return MFS_E_CORRUPT;
	mfs_planes_payload pp;
	int rc =
	    mfs_planes_payload_parse(L, src, rq->src_len, dst_len, XD_MODES, ws, &pp);
	if (rc < 0)
		return rc;
	const uint8_t *bb = base->data;
	/* the merge reads base[i] before it writes dst[i]: equal is fine, a
	 * partial overlap is not */
	if (dst_len && bb != dst && bb < dst + dst_len && dst < bb + dst_len)
		return MFS_E_INVAL;
	const void *planes[MFS_PLANES_MAX] = {0};
	return mfs_planes_payload_merge(L, &pp, planes, bb, dst, ws);
}

const mfs_codec mfs_codec_xor_delta = {
    .id = MFS_CODEC_XOR_DELTA,
    .name = "xor-delta",
    .flags = MFS_CODEC_NEEDS_REF,
    .bound = xd_bound,
    .encode = xd_encode,
    .decode = xd_decode,
};
