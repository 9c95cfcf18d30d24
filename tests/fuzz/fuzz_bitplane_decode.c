/*
 * fuzz_bitplane_decode - hostile payloads for the bitplane-huff decoder and
 * the Huffman block decoder under it.  Input: u16 LE selector, then payload.
 * The selector picks the decoded length (and, for the raw Huffman call, the
 * alphabet and output width).  The payload is also encoded as weight-like
 * BF16 and F16 and then damaged at a place the selector picks, so the deep
 * paths (tables, streams, merges) see near-valid input.  Any result is fine
 * except a crash, a sanitizer report or an error code other than
 * MFS_E_CORRUPT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "huff.h"

static mfs_codec_ws *ws;
static uint8_t *dst;
#define DST_MAX (1u << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws) {
		if (mfs_codec_ws_create(&ws))
			return 0;
		dst = malloc(DST_MAX * 2);
	}
	if (size < 2)
		return 0;
	unsigned sel = (unsigned)data[0] | (unsigned)data[1] << 8;
	const uint8_t *p = data + 2;
	size_t n = size - 2;
	/* exact-size copy so ASan sees any read past the payload */
	uint8_t *src = malloc(n ? n : 1);
	memcpy(src, p, n);

	size_t dst_len = sel & 0x3fff;
	int rc =
	    mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, src, n, dst, dst_len, ws);
	if (rc != 0 && rc != MFS_E_CORRUPT)
		__builtin_trap();
	/* the element count from the payload itself, so deep paths are reached */
	if (n >= 8) {
		size_t cnt = (size_t)src[4] | (size_t)src[5] << 8;
		unsigned es = mfs_dtype_bits((mfs_dtype)src[1]) / 8;
		if (es && cnt * es <= DST_MAX) {
			rc = mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, src, n,
					      dst, cnt * es, ws);
			if (rc != 0 && rc != MFS_E_CORRUPT)
				__builtin_trap();
		}
	}
	/* the Huffman block decoder directly */
	int wide = (sel >> 14) & 1;
	unsigned nsym = wide ? 1024 : 256;
	size_t nsyms = (sel & 0x3fff) % (DST_MAX / 2);
	rc = mfs_huff_decode(src, n, nsym, dst, wide, nsyms);
	if (rc != 0 && rc != MFS_E_CORRUPT)
		__builtin_trap();
	/* near-valid payloads: encode, damage one byte, decode */
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F16};
	mfs_dtype dt = dts[sel >> 15];
	size_t len = n & ~(size_t)1;
	if (len > DST_MAX)
		len = DST_MAX;
	for (size_t i = 1; i < len; i += 2)
		src[i] = (uint8_t)(0x3c + (src[i] & 3)); /* skewed exponents */
	size_t cap = mfs_codec_bound_max(len);
	uint8_t *enc = malloc(cap);
	size_t elen = 0;
	mfs_encode_params prm = {.dtype = dt};
	if (enc &&
	    mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &prm, src, len, enc, cap, &elen,
			     ws) == 0 &&
	    elen > 0) {
		size_t at = sel % elen;
		enc[at] ^= (uint8_t)(n ? p[0] | 1 : 1);
		uint8_t *exact = malloc(elen);
		memcpy(exact, enc, elen);
		rc = mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, exact, elen, dst,
				      len, ws);
		if (rc != 0 && rc != MFS_E_CORRUPT)
			__builtin_trap();
		free(exact);
	}
	free(enc);
	free(src);
	return 0;
}
