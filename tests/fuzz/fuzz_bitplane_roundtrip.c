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

static mfs_codec_ws *ws;

static const mfs_dtype types[] = {MFS_DT_BF16,	  MFS_DT_F16,	  MFS_DT_F32,
				  MFS_DT_F64,	  MFS_DT_F8_E4M3, MFS_DT_F8_E5M2,
				  MFS_DT_F8_E8M0, MFS_DT_I32};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws && mfs_codec_ws_create(&ws))
		return 0;
	if (size < 2)
		return 0;
	mfs_dtype dt = types[data[0] % (sizeof types / sizeof types[0])];
	unsigned shape = data[1];
	size_t len = size - 2;
	uint8_t *src = malloc(len ? len : 1);
	memcpy(src, data + 2, len);
	unsigned es = mfs_dtype_bits(dt) / 8;
	if (shape & 1) {
		/* squash the top byte of each element into a few values */
		for (size_t i = es - 1; i < len; i += es)
			src[i] = (uint8_t)(0x3c + (src[i] & (shape >> 5)));
	}
	mfs_encode_params p = {.dtype = dt};
	size_t cap = mfs_codec_bound_max(len);
	uint8_t *enc = malloc(cap), *dec = malloc(len ? len : 1);
	size_t elen = 0;
	int rc =
	    mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &p, src, len, enc, cap, &elen, ws);
	if (rc == MFS_E_UNSUPPORTED) {
		if (len % es == 0 && dt != MFS_DT_I32)
			__builtin_trap();
	} else {
		if (rc != 0 || elen > cap)
			__builtin_trap();
		rc = mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, enc, elen, dec,
				      len, ws);
		if (rc != 0 || memcmp(dec, src, len) != 0)
			__builtin_trap();
	}
	free(src);
	free(enc);
	free(dec);
	return 0;
}
