/*
 * fuzz_bitplane_roundtrip - bitplane-huff must give back every input bit
 * for bit.  Input: u8 dtype selector, u8 shaping, then the raw bytes.  The
 * shaping byte optionally makes the data weight-like (bytes masked so the
 * exponent plane is skewed) so Huffman planes, not only raw ones, are hit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "float_fuzz.h"

static mfs_codec_ws *ws;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws && mfs_codec_ws_create(&ws))
		return 0;
	if (size < 2)
		return 0;
	mfs_dtype dt = ff_dtype(data[0]);
	unsigned shape = data[1];
	size_t len = size - 2;
	uint8_t *src = malloc(len ? len : 1);
	memcpy(src, data + 2, len);
	if (shape & 1)
		ff_squash_top(src, len, dt, shape);
	mfs_encode_params p = {.dtype = dt};
	size_t cap = mfs_codec_bound_max(len);
	uint8_t *enc = malloc(cap);
	size_t elen = 0;
	int rc =
	    mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &p, src, len, enc, cap, &elen, ws);
	ff_check(MFS_CODEC_BITPLANE_HUFF, dt, rc, enc, elen, cap, src, len, NULL, 0, ws);
	free(src);
	free(enc);
	return 0;
}
