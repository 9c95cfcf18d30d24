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
#include "rans.h"
#include "rans_kernel.h"

static mfs_codec_ws *ws;

static const mfs_dtype types[] = {MFS_DT_BF16,	  MFS_DT_F16,	  MFS_DT_F32,
				  MFS_DT_F64,	  MFS_DT_F8_E4M3, MFS_DT_F8_E5M2,
				  MFS_DT_F8_E8M0, MFS_DT_I32};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws && mfs_codec_ws_create(&ws))
		return 0;
	if (size < 3)
		return 0;
	mfs_dtype dt = types[data[0] % (sizeof types / sizeof types[0])];
	unsigned shape = data[1], set = data[2];
	size_t len = size - 3;
	uint8_t *src = malloc(len ? len : 1);
	memcpy(src, data + 3, len);
	unsigned es = mfs_dtype_bits(dt) / 8;
	if (shape & 1)
		for (size_t i = es - 1; i < len; i += es)
			src[i] = (uint8_t)(0x3c + (src[i] & (shape >> 5)));
	if (shape & 2) /* long runs of one value: one-symbol and CONST planes */
		for (size_t i = 0; i < len; i++)
			if ((i / 64) % 2)
				src[i] = src[i % es];
	mfs_rans_opts o = {MFS_RANS_PROB_MIN + set % 4, 32 * (1 + (set >> 2) % 32)};
	mfs_encode_params p = {.dtype = dt};
	size_t cap = mfs_rans_bound(len), elen = 0;
	uint8_t *enc = malloc(cap), *dec = malloc(len ? len : 1);
	int rc = mfs_rans_encode_opts(&p, &o, src, len, enc, cap, &elen, ws);
	if (rc == MFS_E_UNSUPPORTED) {
		if (len % es == 0 && dt != MFS_DT_I32)
			__builtin_trap();
	} else {
		if (rc != 0 || elen > cap)
			__builtin_trap();
		uint8_t *exact = malloc(elen ? elen : 1);
		memcpy(exact, enc, elen);
		rc = mfs_codec_decode_plain(MFS_CODEC_RANS, exact, elen, dec, len, ws);
		if (rc != 0 || memcmp(dec, src, len) != 0)
			__builtin_trap();
		free(exact);
	}
	free(src);
	free(enc);
	free(dec);
	return 0;
}
