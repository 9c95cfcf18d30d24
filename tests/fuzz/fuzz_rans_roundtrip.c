/*
 * fuzz_rans_roundtrip - rans must give back every input bit for bit, at
 * every precision and lane count.  Input: u8 dtype selector, u8 shaping,
 * u8 settings (precision, lanes), then the raw bytes.  The shaping byte
 * optionally squashes each element's top byte into a few values so the
 * exponent plane is skewed and coded as rANS, not stored raw.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "float_fuzz.h"
#include "rans.h"
#include "rans_kernel.h"

static mfs_codec_ws *ws;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws && mfs_codec_ws_create(&ws))
		return 0;
	if (size < 3)
		return 0;
	mfs_dtype dt = ff_dtype(data[0]);
	unsigned shape = data[1], set = data[2];
	size_t len = size - 3;
	uint8_t *src = malloc(len ? len : 1);
	memcpy(src, data + 3, len);
	unsigned es = mfs_dtype_bits(dt) / 8;
	if (shape & 1)
		ff_squash_top(src, len, dt, shape);
	if (shape & 2) /* long runs of one value: one-symbol and CONST planes */
		for (size_t i = 0; i < len; i++)
			if ((i / 64) % 2)
				src[i] = src[i % es];
	mfs_rans_opts o = {MFS_RANS_PROB_MIN + set % 4, 32 * (1 + (set >> 2) % 32)};
	mfs_encode_params p = {.dtype = dt};
	size_t cap = mfs_rans_bound(len), elen = 0;
	uint8_t *enc = malloc(cap);
	int rc = mfs_rans_encode_opts(&p, &o, src, len, enc, cap, &elen, ws);
	ff_check(MFS_CODEC_RANS, dt, rc, enc, elen, cap, src, len, NULL, 0, ws);
	free(src);
	free(enc);
	return 0;
}
