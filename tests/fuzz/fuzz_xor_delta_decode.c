/*
 * fuzz_xor_delta_decode - hostile payloads and references for the xor-delta
 * decoder and the plane modes under it (planes.c: SPARSE, ZSTD, HUFF, ...).
 * Input: u8 selector, u16 LE payload length P, then P payload bytes, then
 * the base's bytes (the rest).
 *   1. The payload as given, decoded against the base (exact-size copies, so
 *      ASan sees any read past either) into a buffer with a guard after it,
 *      at the base's length and at the length the payload claims.
 *   2. Near-valid payloads: a "fine-tune" made from the base (the payload
 *      bytes XORed into its low bytes, mostly zero, so SPARSE and ZSTD
 *      planes appear), encoded; it must decode exactly; then one byte of it
 *      damaged where the selector says; and the good payload against a base
 *      one byte short and against none.
 * Any result is fine except a crash, a sanitizer report, a write past the
 * destination, a wrong round trip, or an error other than MFS_E_CORRUPT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static mfs_codec_ws *ws;
#define DST_MAX (1u << 18)
#define GUARD	64

static const mfs_dtype types[] = {MFS_DT_BF16,	  MFS_DT_F16,	  MFS_DT_F32,
				  MFS_DT_F64,	  MFS_DT_F8_E4M3, MFS_DT_F8_E5M2,
				  MFS_DT_F8_E8M0, MFS_DT_BF16};

/* Decode; @return the codec's result (trap on a guard write or a foreign error). */
static int decode_into(const uint8_t *src, size_t n, const uint8_t *base, size_t base_len,
		       size_t dst_len, size_t n_refs)
{
	if (dst_len > DST_MAX)
		return MFS_E_CORRUPT;
	uint8_t *dst = malloc(dst_len + GUARD);
	memset(dst + dst_len, 0xa5, GUARD);
	uint8_t *b = malloc(base_len ? base_len : 1);
	if (base_len)
		memcpy(b, base, base_len);
	mfs_ref_data ref[2] = {{MFS_REF_BASE, b, base_len}, {MFS_REF_BASE, b, base_len}};
	mfs_decode_req rq = {.src = src,
			     .src_len = n,
			     .dst = dst,
			     .dst_len = dst_len,
			     .refs = n_refs ? ref : NULL,
			     .n_refs = n_refs};
	int rc = mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws);
	if (rc != 0 && rc != MFS_E_CORRUPT)
		__builtin_trap();
	for (size_t i = 0; i < GUARD; i++)
		if (dst[dst_len + i] != 0xa5)
			__builtin_trap(); /* wrote past dst_len */
	free(dst);
	free(b);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws && mfs_codec_ws_create(&ws))
		return 0;
	if (size < 3)
		return 0;
	unsigned sel = data[0];
	size_t plen = (size_t)data[1] | (size_t)data[2] << 8;
	if (plen > size - 3)
		plen = size - 3;
	const uint8_t *base = data + 3 + plen;
	size_t base_len = size - 3 - plen;
	if (base_len > DST_MAX)
		base_len = DST_MAX;

	/* 1. hostile payloads */
	uint8_t *src = malloc(plen ? plen : 1);
	memcpy(src, data + 3, plen);
	decode_into(src, plen, base, base_len, base_len, 1);
	if (plen >= 8) {
		size_t n = (size_t)src[4] | (size_t)src[5] << 8 | (size_t)src[6] << 16;
		unsigned es = mfs_dtype_bits((mfs_dtype)src[1]) / 8;
		if (es && n * es <= DST_MAX && n * es <= base_len)
			decode_into(src, plen, base, n * es, n * es, 1);
	}
	free(src);

	/* 2. near-valid payloads */
	mfs_dtype dt = types[sel & 7];
	unsigned es = mfs_dtype_bits(dt) / 8;
	size_t len = base_len - base_len % es;
	uint8_t *ft = malloc(len ? len : 1);
	memcpy(ft, base, len);
	for (size_t i = 0; i < len; i += es) {
		uint8_t x = plen ? data[3 + (i / es) % plen] : 0;
		/* most elements unchanged, the rest in their low bits */
		if ((x & 0xc0) == 0)
			ft[i] ^= (uint8_t)(x & (sel & 8 ? 0x3f : 0x07));
		if (es > 2 && (x & 0xf0) == 0x10)
			ft[i + 1] ^= x;
	}
	if (sel & 16) /* one burst in the top bytes: a ZSTD plane */
		for (size_t i = len / 3; i < len / 3 + 32 * es && i + es <= len; i += es)
			ft[i + es - 1] ^= 0x30;
	mfs_ref_data ref = {MFS_REF_BASE, base, len};
	mfs_encode_params p = {.dtype = dt, .refs = &ref, .n_refs = 1};
	size_t cap = mfs_codec_get(MFS_CODEC_XOR_DELTA)->bound(len);
	uint8_t *enc = malloc(cap);
	size_t elen = 0;
	int rc = mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, ft, len, enc, cap, &elen, ws);
	if (rc != 0 || elen > cap)
		__builtin_trap();
	uint8_t *exact = malloc(elen);
	memcpy(exact, enc, elen);
	{
		uint8_t *out = malloc(len ? len : 1);
		uint8_t *b = malloc(len ? len : 1);
		memcpy(b, base, len);
		mfs_ref_data r = {MFS_REF_BASE, b, len};
		mfs_decode_req rq = {.src = exact,
				     .src_len = elen,
				     .dst = out,
				     .dst_len = len,
				     .refs = &r,
				     .n_refs = 1};
		if (mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws) != 0 ||
		    memcmp(out, ft, len) != 0)
			__builtin_trap();
		free(out);
		free(b);
	}
	if (len >= 1 && decode_into(exact, elen, base, len - 1, len, 1) != MFS_E_CORRUPT)
		__builtin_trap();
	if (decode_into(exact, elen, base, len, len, 0) != MFS_E_CORRUPT)
		__builtin_trap();
	if (decode_into(exact, elen, base, len, len, 2) != MFS_E_CORRUPT)
		__builtin_trap();
	if (elen > 0) {
		size_t at = ((size_t)sel << 8 | (plen & 0xff)) % elen;
		exact[at] ^= (uint8_t)(plen ? data[3] | 1 : 1);
		decode_into(exact, elen, base, len, len, 1);
	}
	free(exact);
	free(enc);
	free(ft);
	return 0;
}
