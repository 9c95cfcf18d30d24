/* test_bitplane.c - the bitplane-huff codec: bit-exact round trips, errors. */
#include "testhelp.h"

#include "codec.h"
#include "codec_check.h"

static uint64_t seed;
static mfs_codec_ws *ws;

/* A round trip, and the same payload from a misaligned source. */
static size_t roundtrip(mfs_dtype dt, const uint8_t *src, size_t len)
{
	return cc_roundtrip(MFS_CODEC_BITPLANE_HUFF, dt, src, len, NULL, NULL,
			    CC_SAME_MISALIGNED, ws, NULL);
}

static void test_registry(void)
{
	const mfs_codec *c = mfs_codec_get(MFS_CODEC_BITPLANE_HUFF);
	REQUIRE(c != NULL);
	CHECK(strcmp(c->name, "bitplane-huff") == 0);
	CHECK(mfs_codec_by_name("bitplane-huff") == c);
	CHECK(strcmp(mfs_codec_name(MFS_CODEC_BITPLANE_HUFF), "bitplane-huff") == 0);
}

static void test_unsupported(void)
{
	uint8_t src[64] = {0}, dst[512];
	size_t len;
	static const mfs_dtype others[] = {
	    MFS_DT_UNKNOWN, MFS_DT_BOOL, MFS_DT_U8,  MFS_DT_I8, MFS_DT_I16,    MFS_DT_I32,
	    MFS_DT_I64,	    MFS_DT_U64,	 MFS_DT_C64, MFS_DT_F4, (mfs_dtype)200};
	for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
		mfs_encode_params p = {.dtype = others[i]};
		CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &p, src, 16, dst,
					      sizeof dst, &len, ws),
			     MFS_E_UNSUPPORTED);
	}
	/* odd byte counts: not a whole number of elements */
	static const struct {
		mfs_dtype dt;
		size_t len;
	} odd[] = {{MFS_DT_BF16, 1}, {MFS_DT_BF16, 3}, {MFS_DT_F16, 63}, {MFS_DT_F32, 6},
		   {MFS_DT_F32, 2},  {MFS_DT_F64, 12}, {MFS_DT_F64, 7}};
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		mfs_encode_params p = {.dtype = odd[i].dt};
		CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &p, src,
					      odd[i].len, dst, sizeof dst, &len, ws),
			     MFS_E_UNSUPPORTED);
	}
	/* too small an output buffer */
	mfs_encode_params p = {.dtype = MFS_DT_BF16};
	CHECK_EQ_INT(
	    mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &p, src, 64, dst, 64, &len, ws),
	    MFS_E_NOSPACE);
}

static void test_edge_values(void)
{
	/* BF16 / F16 / F32 specials, each repeated and mixed */
	static const uint16_t bf16[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0,
					0xffc1, 0x7f81, 0x7fff, 0x0001, 0x807f,
					0x0080, 0x3f80, 0xbf80, 0x7f7f};
	static const uint16_t f16[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00,
				       0xfe01, 0x7c01, 0x7fff, 0x0001, 0x83ff,
				       0x0400, 0x3c00, 0xbc00, 0x7bff};
	static const uint32_t f32[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000,
				       0x7fc00000, 0xffc00001, 0x7f800001, 0x7fffffff,
				       0x00000001, 0x807fffff, 0x00800000, 0x3f800000,
				       0xbf800000, 0x7f7fffff};
	uint64_t s = seed;
	for (unsigned rep = 1; rep <= 300; rep = rep * 3 + 1) {
		size_t n = 14 * rep;
		uint16_t *a = malloc(2 * n), *b = malloc(2 * n);
		uint32_t *c = malloc(4 * n);
		for (size_t i = 0; i < n; i++) {
			size_t k = rep < 10 ? i % 14 : test_rand(&s) % 14;
			a[i] = bf16[k];
			b[i] = f16[k];
			c[i] = f32[k];
		}
		CHECK(roundtrip(MFS_DT_BF16, (uint8_t *)a, 2 * n) != (size_t)-1);
		CHECK(roundtrip(MFS_DT_F16, (uint8_t *)b, 2 * n) != (size_t)-1);
		CHECK(roundtrip(MFS_DT_F32, (uint8_t *)c, 4 * n) != (size_t)-1);
		free(a);
		free(b);
		free(c);
	}
	/* all NaN payloads and all subnormals of BF16 */
	uint16_t *all = malloc(2 * 65536);
	for (unsigned i = 0; i < 65536; i++)
		all[i] = (uint16_t)i;
	CHECK(roundtrip(MFS_DT_BF16, (uint8_t *)all, 2 * 65536) != (size_t)-1);
	CHECK(roundtrip(MFS_DT_F16, (uint8_t *)all, 2 * 65536) != (size_t)-1);
	free(all);
}

/* Empty, 1..64 elements, all-equal and random 1 MiB chunks of every float dtype. */
static void test_small_and_equal(void)
{
	uint64_t s = seed + 1;
	cc_small_and_equal(MFS_CODEC_BITPLANE_HUFF, NULL, NULL, CC_SAME_MISALIGNED,
			   (size_t)1 << 20, &s, ws);
}

static void test_chunk_sizes(void)
{
	uint64_t s = seed + 2;
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32};
	size_t maxlen = (size_t)4 << 20;
	uint8_t *buf = malloc(maxlen);
	for (size_t d = 0; d < 3; d++) {
		cc_fill_weights(dts[d], buf, maxlen, &s);
		for (size_t len = 4096; len <= maxlen; len *= 2) {
			size_t e = roundtrip(dts[d], buf, len);
			CHECK(e != (size_t)-1);
			/* weights compress: the exponent plane is skewed */
			CHECK(e < len * 95 / 100);
		}
		/* lengths that are not powers of two or multiples of 256 elements */
		for (int k = 0; k < 20; k++) {
			unsigned es = mfs_dtype_bits(dts[d]) / 8;
			size_t len = es * (1 + test_rand(&s) % 40000);
			CHECK(roundtrip(dts[d], buf, len) != (size_t)-1);
		}
	}
	free(buf);
}

static void test_corrupt(void)
{
	uint64_t s = seed + 3;
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32,
					MFS_DT_F8_E4M3};
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		size_t len = 6000 * 4;
		uint8_t *src = malloc(len), *dec = malloc(len);
		cc_fill_weights(dts[d], src, len, &s);
		mfs_encode_params p = {.dtype = dts[d]};
		size_t cap = mfs_codec_bound_max(len);
		uint8_t *enc = malloc(cap), *bad = malloc(cap);
		size_t elen;
		REQUIRE(mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &p, src, len, enc, cap,
					 &elen, ws) == 0);
		/* every truncation is an error (plane lengths must add up) */
		for (size_t cut = 0; cut < elen; cut++) {
			uint8_t *t = malloc(cut ? cut : 1);
			memcpy(t, enc, cut);
			CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, t, cut, dec, len, ws),
				     MFS_E_CORRUPT);
			free(t);
		}
		/* a wrong raw length is an error */
		CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, enc, elen,
					      dec, len - 4, ws),
			     MFS_E_CORRUPT);
		/* random damage: an error or some bytes, never a crash (ASan) */
		for (int trial = 0; trial < 2000; trial++) {
			memcpy(bad, enc, elen);
			int flips = 1 + (int)(test_rand(&s) % 3);
			for (int f = 0; f < flips; f++) {
				size_t at = trial & 1
						? test_rand(&s) % (elen < 64 ? elen : 64)
						: test_rand(&s) % elen;
				bad[at] ^= (uint8_t)(1 + test_rand(&s) % 255);
			}
			int rc = mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, bad, elen, dec, len, ws);
			CHECK(rc == 0 || rc == MFS_E_CORRUPT);
		}
		free(src);
		free(dec);
		free(enc);
		free(bad);
	}
	/* header checks */
	uint8_t h[64] = {1, MFS_DT_BF16, 2, 0, 1, 0, 0, 0};
	uint8_t out[2];
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, h, 8, out, 2, ws),
		     MFS_E_CORRUPT);
	h[0] = 2; /* unknown version */
	CHECK_EQ_INT(
	    mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, h, 20, out, 2, ws),
	    MFS_E_CORRUPT);
	h[0] = 1;
	h[1] = MFS_DT_I32;
	CHECK_EQ_INT(
	    mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, h, 20, out, 2, ws),
	    MFS_E_CORRUPT);
}

/* The ingest rule (choose.c) picks bitplane-huff for weights, raw for noise. */
static void test_choose(void)
{
	uint64_t s = seed + 4;
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32};
	size_t len = (size_t)256 << 10;
	uint8_t *buf = malloc(len);
	for (size_t d = 0; d < 3; d++) {
		mfs_encode_params p = {.dtype = dts[d]};
		mfs_codec_id id = MFS_CODEC_RAW;
		mfs_codec_trial tr[8];
		size_t nt = 8;
		cc_fill_weights(dts[d], buf, len, &s);
		CHECK_EQ_INT(mfs_codec_choose(&p, buf, len, ws, &id, tr, &nt), 0);
		CHECK_EQ_INT(id, MFS_CODEC_BITPLANE_HUFF);
		CHECK(nt >= 2);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)test_rand(&s);
		nt = 8;
		CHECK_EQ_INT(mfs_codec_choose(&p, buf, len, ws, &id, tr, &nt), 0);
		CHECK_EQ_INT(id, MFS_CODEC_RAW);
	}
	free(buf);
}

/*
 * Golden payload: the format is on disk, so version 1 must keep decoding to
 * the same bytes.  64 BF16 values from a fixed generator; the payload is a
 * 10-bit HUFF plane (symbols 480..507) and a 6-bit RAW plane.
 */
static void golden_input(uint16_t *v, size_t n)
{
	uint32_t s = 1;
	for (size_t i = 0; i < n; i++) {
		s = s * 1103515245u + 12345u;
		unsigned e = 120 + ((s >> 16) % 7);
		unsigned m = (s >> 8) & 0x7f;
		v[i] = (uint16_t)(((s >> 30) & 1) << 15 | e << 7 | m);
	}
}

static const uint8_t golden_bf16[] = {
    0x01, 0x09, 0x02, 0x00, 0x40, 0x00, 0x00, 0x00, 0x0a, 0x02, 0x44, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x30, 0x00, 0x00, 0x00, 0xe0, 0x01, 0x1c, 0x00, 0x64, 0x44, 0x66, 0x00,
    0x45, 0x54, 0x45, 0x45, 0x56, 0x66, 0x45, 0x55, 0x55, 0x45, 0x0a, 0x00, 0x00, 0x00,
    0x09, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0xe6, 0x33, 0x21, 0xf1, 0xf5, 0x0c,
    0x0f, 0xa7, 0x2f, 0x03, 0xc2, 0x77, 0xb5, 0xb4, 0xe0, 0x18, 0x81, 0x74, 0x4f, 0x55,
    0x99, 0x30, 0x74, 0xa3, 0xb7, 0xc5, 0x2f, 0x07, 0x7b, 0x60, 0x03, 0xfd, 0x7b, 0x2e,
    0x07, 0x4c, 0x66, 0x01, 0x3d, 0x88, 0xdc, 0x3f, 0xda, 0x72, 0xb8, 0x4a, 0xa2, 0x04,
    0xb8, 0x5c, 0xfb, 0x50, 0x6f, 0x31, 0xf2, 0xbb, 0x42, 0xda, 0x2b, 0x45, 0x97, 0x94,
    0x51, 0x97, 0xe7, 0x3c, 0x88, 0xee, 0xa2, 0xd7, 0x8a, 0x5a, 0xf4, 0xb1, 0xfd, 0x7b,
    0x31, 0x60, 0xac, 0xf6, 0x5c, 0x43, 0xd3, 0x4a, 0xdf, 0xa8,
};

static void test_golden(void)
{
	uint16_t v[64], out[64];
	golden_input(v, 64);
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, golden_bf16,
				      sizeof golden_bf16, out, sizeof out, ws),
		     0);
	CHECK(memcmp(out, v, sizeof v) == 0);
	/* today's encoder writes exactly this payload */
	uint8_t enc[512];
	size_t elen = 0;
	mfs_encode_params p = {.dtype = MFS_DT_BF16};
	CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &p, v, sizeof v, enc,
				      sizeof enc, &elen, ws),
		     0);
	CHECK(elen == sizeof golden_bf16 && memcmp(enc, golden_bf16, elen) == 0);
	/* deliberately corrupt variants */
	uint8_t bad[sizeof golden_bf16];
	static const struct {
		size_t at;
		uint8_t val;
	} edits[] = {
	    {0, 2},	/* version */
	    {1, 8},	/* dtype F16: wrong plane widths */
	    {4, 63},	/* element count */
	    {9, 3},	/* plane 0 mode */
	    {8, 8},	/* plane 0 width */
	    {21, 0x04}, /* Huffman lo: lo + cnt past the alphabet */
	    {24, 0x65}, /* a code length: Kraft sum != 1 */
	    {24, 0xd4}, /* a code length of 13 */
	    {38, 0x0b}, /* stream 0 length */
	};
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		memcpy(bad, golden_bf16, sizeof bad);
		bad[edits[i].at] = edits[i].val;
		CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_BITPLANE_HUFF, bad, sizeof bad, out, sizeof out, ws),
			     MFS_E_CORRUPT);
	}
}

int main(void)
{
	seed = test_seed();
	if (mfs_codec_ws_create(&ws))
		return 1;
	RUN(test_registry);
	RUN(test_unsupported);
	RUN(test_edge_values);
	RUN(test_small_and_equal);
	RUN(test_chunk_sizes);
	RUN(test_corrupt);
	RUN(test_golden);
	RUN(test_choose);
	mfs_codec_ws_free(ws);
	return test_report();
}
