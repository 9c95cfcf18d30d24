/*
 * fuzz_rans_decode - hostile payloads for the rans decoder.  Input: u16 LE
 * selector, then the payload.  The selector picks the decoded length; the
 * payload is also decoded into the length its own header claims, so the
 * plane and stream checks are reached.  Then the payload's bytes, shaped
 * into weight-like BF16 / F32 values, are encoded with a lane count and
 * precision from the selector, damaged at a place the selector picks (or
 * cut short), and decoded: near-valid rANS planes.  Any result is fine
 * except a crash, a sanitizer report, a write past dst_len or an error
 * code other than MFS_E_CORRUPT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "rans.h"
#include "rans_kernel.h"

static mfs_codec_ws *ws;
static uint8_t *dst;
#define DST_MAX (1u << 17)
#define GUARD	64

static void decode_into(const uint8_t *src, size_t n, size_t dst_len)
{
	if (dst_len > DST_MAX)
		return;
	memset(dst + dst_len, 0xa5, GUARD);
	int rc = mfs_codec_decode_plain(MFS_CODEC_RANS, src, n, dst, dst_len, ws);
	if (rc != 0 && rc != MFS_E_CORRUPT)
		__builtin_trap();
	for (size_t i = 0; i < GUARD; i++)
		if (dst[dst_len + i] != 0xa5)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws) {
		if (mfs_codec_ws_create(&ws))
			return 0;
		dst = malloc(DST_MAX + GUARD);
	}
	if (size < 2)
		return 0;
	unsigned sel = (unsigned)data[0] | (unsigned)data[1] << 8;
	const uint8_t *p = data + 2;
	size_t n = size - 2;
	/* exact-size copy so ASan sees any read past the payload */
	uint8_t *src = malloc(n ? n : 1);
	memcpy(src, p, n);
	decode_into(src, n, sel & 0x3fff);
	if (n >= 8) {
		size_t cnt = (size_t)src[4] | (size_t)src[5] << 8 | (size_t)src[6] << 16;
		unsigned es = mfs_dtype_bits((mfs_dtype)src[1]) / 8;
		if (es && cnt <= DST_MAX / es)
			decode_into(src, n, cnt * es);
	}
	/* near-valid payloads */
	mfs_dtype dt = sel & 0x8000 ? MFS_DT_F32 : MFS_DT_BF16;
	unsigned es = dt == MFS_DT_F32 ? 4 : 2;
	size_t len = n - n % es;
	if (len > DST_MAX)
		len = DST_MAX - DST_MAX % es;
	for (size_t i = es - 1; i < len; i += es)
		src[i] = (uint8_t)(0x3c + (src[i] & 3)); /* skewed exponents */
	mfs_rans_opts o = {MFS_RANS_PROB_MIN + (sel >> 8) % 4, 32u << ((sel >> 10) % 6)};
	size_t cap = mfs_rans_bound(len), elen = 0;
	uint8_t *enc = malloc(cap);
	mfs_encode_params prm = {.dtype = dt};
	if (enc && mfs_rans_encode_opts(&prm, &o, src, len, enc, cap, &elen, ws) == 0 &&
	    elen) {
		if (sel & 0x4000) {
			elen = sel % elen; /* cut short */
		} else {
			size_t at = (sel * 2654435761u) % elen;
			enc[at] ^= (uint8_t)(n ? p[0] | 1 : 1);
		}
		uint8_t *exact = malloc(elen ? elen : 1);
		memcpy(exact, enc, elen);
		decode_into(exact, elen, len);
		free(exact);
	}
	free(enc);
	free(src);
	return 0;
}
