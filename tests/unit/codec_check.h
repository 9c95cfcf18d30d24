/*
 * codec_check.h - what the float codecs' tests (test_bitplane, test_rans)
 * share: weight-like data of every float dtype, a round trip that checks a
 * payload every way a reader uses one, and the small, constant and random
 * chunks every such codec must carry.  Include after testhelp.h.
 */
#ifndef MFS_CODEC_CHECK_H
#define MFS_CODEC_CHECK_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* The float dtypes planes.h has layouts for. */
static const mfs_dtype cc_float_types[] = {MFS_DT_BF16,	  MFS_DT_F16,	  MFS_DT_F32,
					   MFS_DT_F64,	  MFS_DT_F8_E4M3, MFS_DT_F8_E5M2,
					   MFS_DT_F8_E8M0};
#define CC_NFLOAT (sizeof cc_float_types / sizeof cc_float_types[0])

static inline double cc_uniform(uint64_t *s)
{
	return (double)(test_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Roughly normal, like trained weights (Irwin-Hall). */
static inline double cc_normalish(uint64_t *s)
{
	double x = 0;
	for (int i = 0; i < 6; i++)
		x += cc_uniform(s);
	return (x - 3.0) * 0.03;
}

/* F32 to F16, truncating: good enough for test data. */
static inline uint16_t cc_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000;
	int e = (int)((u >> 23) & 0xff) - 127 + 15;
	uint32_t m = (u >> 13) & 0x3ff;
	if (e <= 0)
		return (uint16_t)sign;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00);
	return (uint16_t)(sign | (uint32_t)e << 10 | m);
}

/* @p n bytes of weight-like elements of dtype @p dt (a partial last one left as is). */
static inline void cc_fill_weights(mfs_dtype dt, uint8_t *p, size_t n, uint64_t *s)
{
	unsigned es = mfs_dtype_bits(dt) / 8;
	for (size_t i = 0; i + es <= n; i += es) {
		double d = cc_normalish(s);
		float f = (float)d;
		uint32_t u;
		uint16_t h;
		memcpy(&u, &f, 4);
		switch (dt) {
		case MFS_DT_BF16:
			h = (uint16_t)(u >> 16);
			memcpy(p + i, &h, 2);
			break;
		case MFS_DT_F16:
			h = cc_to_f16(f);
			memcpy(p + i, &h, 2);
			break;
		case MFS_DT_F32:
			memcpy(p + i, &f, 4);
			break;
		case MFS_DT_F64:
			memcpy(p + i, &d, 8);
			break;
		default: /* the F8 types: a few exponents, any low bits */
			p[i] = (uint8_t)(0x30 + (u >> 29) + (test_rand(s) & 7));
			break;
		}
	}
}

/* An encoder other than the registry's (rans's with settings, say). */
typedef int (*cc_encode_fn)(const void *ctx, const mfs_encode_params *p, const void *src,
			    size_t len, void *dst, size_t cap, size_t *elen,
			    mfs_codec_ws *ws);

/* How a round trip is checked beyond decoding an exact-size copy of the
 * payload into an aligned and a misaligned buffer. */
enum {
	CC_SAME_MISALIGNED = 1, /* the source at an odd address: the same payload */
};

/*
 * Encode @p len bytes of @p src with codec @p id (through @p enc when not
 * NULL), check the payload is within the codec's bound, that an exact-size
 * copy (ASan sees any read past it) decodes to @p src at an aligned and a
 * misaligned destination, and what @p flags ask.
 * @param[out] payload  when not NULL, the payload (malloc'd, the caller
 *                      frees it; NULL after a failure)
 * @return the payload's size, or (size_t)-1 after a failure
 */
static inline size_t cc_roundtrip(mfs_codec_id id, mfs_dtype dt, const uint8_t *src,
				  size_t len, cc_encode_fn enc, const void *ctx,
				  unsigned flags, mfs_codec_ws *ws, uint8_t **payload)
{
	mfs_encode_params p = {.dtype = dt};
	size_t cap = mfs_codec_get(id)->bound(len), elen = 0;
	uint8_t *out = malloc(cap), *dec = malloc(len + 1);
	int rc = enc ? enc(ctx, &p, src, len, out, cap, &elen, ws)
		     : mfs_codec_encode(id, &p, src, len, out, cap, &elen, ws);
	CHECK_EQ_INT(rc, 0);
	CHECK(rc != 0 || elen <= cap);
	if (rc == 0) {
		uint8_t *exact = malloc(elen ? elen : 1);
		memcpy(exact, out, elen);
		for (int shift = 0; shift < 2; shift++) {
			int drc =
			    mfs_codec_decode_plain(id, exact, elen, dec + shift, len, ws);
			CHECK_EQ_INT(drc, 0);
			CHECK(memcmp(dec + shift, src, len) == 0);
			if (drc || memcmp(dec + shift, src, len))
				rc = -1;
		}
		free(exact);
	}
	if (rc == 0 && (flags & CC_SAME_MISALIGNED)) {
		uint8_t *mis = malloc(len + 1), *out2 = malloc(cap);
		memcpy(mis + 1, src, len);
		size_t elen2 = 0;
		int erc =
		    enc ? enc(ctx, &p, mis + 1, len, out2, cap, &elen2, ws)
			: mfs_codec_encode(id, &p, mis + 1, len, out2, cap, &elen2, ws);
		CHECK_EQ_INT(erc, 0);
		CHECK(elen2 == elen && memcmp(out, out2, elen) == 0);
		free(mis);
		free(out2);
	}
	free(dec);
	if (payload)
		*payload = rc == 0 ? out : NULL;
	if (!payload || rc)
		free(out);
	return rc == 0 ? elen : (size_t)-1;
}

/*
 * Chunks every float codec must carry, for each float dtype: empty, 1..64
 * weight-like elements, @p big bytes all zero and all one value (a payload
 * of a few bytes), and @p big random bytes (never much more than raw).
 */
static inline void cc_small_and_equal(mfs_codec_id id, cc_encode_fn enc, const void *ctx,
				      unsigned flags, size_t big, uint64_t *s,
				      mfs_codec_ws *ws)
{
	uint8_t buf[8 * 64];
	uint8_t *b = malloc(big);
	for (size_t t = 0; t < CC_NFLOAT; t++) {
		mfs_dtype dt = cc_float_types[t];
		unsigned es = mfs_dtype_bits(dt) / 8;
		CHECK(cc_roundtrip(id, dt, buf, 0, enc, ctx, flags, ws, NULL) !=
		      (size_t)-1);
		for (size_t n = 1; n <= 64; n++) {
			cc_fill_weights(dt, buf, n * es, s);
			CHECK(cc_roundtrip(id, dt, buf, n * es, enc, ctx, flags, ws,
					   NULL) != (size_t)-1);
		}
		memset(b, 0, big);
		CHECK(cc_roundtrip(id, dt, b, big, enc, ctx, flags, ws, NULL) < 100);
		for (size_t i = 0; i + es <= big; i += es)
			memcpy(b + i, "\x3f\x80\x12\x34\x56\x78\x9a\xbc", es);
		CHECK(cc_roundtrip(id, dt, b, big, enc, ctx, flags, ws, NULL) < 100);
		for (size_t i = 0; i < big; i++)
			b[i] = (uint8_t)test_rand(s);
		size_t e = cc_roundtrip(id, dt, b, big, enc, ctx, flags, ws, NULL);
		CHECK(e != (size_t)-1 && e <= big + 128);
	}
	free(b);
}

#endif
