/*
 * fuzz_xor_delta_roundtrip - xor-delta must give back every bit of a chunk
 * against any base.  Input: u8 dtype selector, u8 shaping, then the base
 * (first half of the rest) and the chunk (second half).  The shaping byte
 * optionally makes the chunk a near copy of the base (its bytes kept only
 * where they are small, masked to a few low bits), so mostly-zero XOR
 * planes, and so the SPARSE, ZSTD and CONST modes, are hit as well as RAW
 * and HUFF ones.
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
	size_t len = (size - 2) / 2;
	uint8_t *base = malloc(len ? len : 1), *ft = malloc(len ? len : 1);
	memcpy(base, data + 2, len);
	memcpy(ft, data + 2 + len, len);
	if (shape & 1) {
		uint8_t keep = (uint8_t)((1u << (shape >> 5)) - 1);
		for (size_t i = 0; i < len; i++)
			ft[i] = base[i] ^
				(ft[i] < (shape & 0x1e) ? (uint8_t)(ft[i] & keep) : 0);
	}
	mfs_ref_data ref = {MFS_REF_BASE, base, len};
	mfs_encode_params p = {.dtype = dt, .refs = &ref, .n_refs = 1};
	size_t cap = mfs_codec_get(MFS_CODEC_XOR_DELTA)->bound(len);
	uint8_t *enc = malloc(cap);
	size_t elen = 0;
	int rc = mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, ft, len, enc, cap, &elen, ws);
	ff_check(MFS_CODEC_XOR_DELTA, dt, rc, enc, elen, cap, ft, len, &ref, 1, ws);
	free(base);
	free(ft);
	free(enc);
	return 0;
}
