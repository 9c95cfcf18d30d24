/*
 * float_fuzz.h - what the float codecs' round-trip fuzz targets share
 * (fuzz_bitplane_roundtrip, fuzz_rans_roundtrip, fuzz_xor_delta_roundtrip):
 * the dtype an input byte selects and the check of one encode's outcome.
 * Any broken promise is a __builtin_trap(), which libFuzzer reports.
 */
#ifndef MFS_FLOAT_FUZZ_H
#define MFS_FLOAT_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* The float dtypes, and one the codecs refuse. */
static const mfs_dtype ff_types[] = {MFS_DT_BF16,    MFS_DT_F16,     MFS_DT_F32,
				     MFS_DT_F64,     MFS_DT_F8_E4M3, MFS_DT_F8_E5M2,
				     MFS_DT_F8_E8M0, MFS_DT_I32};

static inline mfs_dtype ff_dtype(uint8_t sel)
{
	return ff_types[sel % (sizeof ff_types / sizeof ff_types[0])];
}

/* Shaping: each element's top byte squashed into a few values (by
 * @p shape's top three bits), so the exponent plane is skewed and coded,
 * not stored raw. */
static inline void ff_squash_top(uint8_t *src, size_t len, mfs_dtype dt, unsigned shape)
{
	unsigned es = mfs_dtype_bits(dt) / 8;
	for (size_t i = es - 1; i < len; i += es)
		src[i] = (uint8_t)(0x3c + (src[i] & (shape >> 5)));
}

/*
 * After encoding @p len bytes of @p src as dtype @p dt with codec @p id
 * (@p rc, @p elen of @p cap): MFS_E_UNSUPPORTED only for I32 or a partial
 * element; else success within the bound, and an exact-size copy of the
 * payload (ASan sees any read past it) decoding to @p src, against
 * @p refs when the codec takes references.
 */
static inline void ff_check(mfs_codec_id id, mfs_dtype dt, int rc, const uint8_t *enc,
			    size_t elen, size_t cap, const uint8_t *src, size_t len,
			    const mfs_ref_data *refs, size_t n_refs, mfs_codec_ws *ws)
{
	unsigned es = mfs_dtype_bits(dt) / 8;
	if (rc == MFS_E_UNSUPPORTED) {
		if (len % es == 0 && dt != MFS_DT_I32)
			__builtin_trap();
		return;
	}
	if (rc != 0 || elen > cap)
		__builtin_trap();
	uint8_t *exact = malloc(elen ? elen : 1), *dec = malloc(len ? len : 1);
	memcpy(exact, enc, elen);
	mfs_decode_req rq = {.src = exact,
			     .src_len = elen,
			     .dst = dec,
			     .dst_len = len,
			     .refs = refs,
			     .n_refs = n_refs};
	rc = mfs_codec_decode(id, &rq, ws);
	if (rc != 0 || memcmp(dec, src, len) != 0)
		__builtin_trap();
	free(exact);
	free(dec);
}

#endif
