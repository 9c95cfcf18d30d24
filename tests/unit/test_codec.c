/* Unit tests for the codec registry, raw and zstd, workspaces and the choice rule. */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "testhelp.h"

static uint64_t seed;

static void test_registry(void)
{
	CHECK(mfs_codec_get(MFS_CODEC_RAW) != NULL);
	CHECK(mfs_codec_get(MFS_CODEC_ZSTD) != NULL);
	CHECK(mfs_codec_get((mfs_codec_id)200) == NULL);
	CHECK(mfs_codec_get((mfs_codec_id)-1) == NULL);
	CHECK(mfs_codec_by_name("zstd") == mfs_codec_get(MFS_CODEC_ZSTD));
	CHECK(mfs_codec_by_name("nope") == NULL);
	CHECK(strcmp(mfs_codec_name(MFS_CODEC_RAW), "raw") == 0);
	CHECK(strcmp(mfs_codec_name((mfs_codec_id)15), "unknown") == 0);
	/* ids and names are unique */
	for (int i = 0; i < MFS_CODEC__COUNT; i++) {
		const mfs_codec *a = mfs_codec_get((mfs_codec_id)i);
		if (!a)
			continue;
		CHECK_EQ_INT(a->id, i);
		CHECK(mfs_codec_by_name(a->name) == a);
	}
	uint8_t x[4] = {0};
	size_t n;
	CHECK_EQ_INT(mfs_codec_encode((mfs_codec_id)14, NULL, x, 4, x, 4, &n, NULL), MFS_E_CODEC);
	CHECK_EQ_INT(mfs_codec_decode_plain((mfs_codec_id)14, x, 4, x, 4, NULL), MFS_E_CODEC);
}

static void roundtrip(mfs_codec_id id, const uint8_t *src, size_t len, mfs_codec_ws *ws)
{
	size_t cap = mfs_codec_bound_max(len), n = 0;
	uint8_t *enc = malloc(cap + 1), *dec = malloc(len + 1);
	mfs_encode_params p = {.dtype = MFS_DT_UNKNOWN};
	CHECK_EQ_INT(mfs_codec_encode(id, &p, src, len, enc, cap, &n, ws), 0);
	CHECK(n <= mfs_codec_get(id)->bound(len));
	CHECK_EQ_INT(mfs_codec_decode_plain(id, enc, n, dec, len, ws), 0);
	CHECK(len == 0 || memcmp(dec, src, len) == 0);
	/* wrong length, truncated and flipped payloads are errors, never a crash */
	if (len > 0) {
		CHECK_EQ_INT(mfs_codec_decode_plain(id, enc, n, dec, len - 1, ws),
			     MFS_E_CORRUPT);
		if (n > 1)
			CHECK(mfs_codec_decode_plain(id, enc, n - 1, dec, len, ws) < 0);
	}
	if (id == MFS_CODEC_ZSTD && n > 8) {
		for (int k = 0; k < 20; k++) {
			uint8_t *bad = malloc(n);
			memcpy(bad, enc, n);
			bad[test_rand(&seed) % n] ^= (uint8_t)(1 + test_rand(&seed) % 255);
			int rc = mfs_codec_decode_plain(id, bad, n, dec, len, ws);
			/* zstd has no checksum here; a flip either fails or yields other bytes,
			 * which the store's key check then rejects */
			CHECK(rc == 0 || rc == MFS_E_CORRUPT);
			free(bad);
		}
	}
	free(enc);
	free(dec);
}

static void test_raw_zstd(void)
{
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	static const size_t sizes[] = {0, 1, 7, 4096, 65536 + 3, 1 << 20};
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t len = sizes[s];
		uint8_t *buf = malloc(len + 1);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(test_rand(&seed) % 11);
		roundtrip(MFS_CODEC_RAW, buf, len, ws);
		roundtrip(MFS_CODEC_ZSTD, buf, len, ws);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(test_rand(&seed) >> 56);
		roundtrip(MFS_CODEC_ZSTD, buf, len, ws);
		free(buf);
	}
	/* too small a destination */
	uint8_t src[100] = {1}, dst[10];
	size_t n;
	mfs_encode_params p = {0};
	CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_RAW, &p, src, 100, dst, 10, &n, ws),
		     MFS_E_NOSPACE);
	mfs_codec_ws_free(ws);
	mfs_codec_ws_free(NULL);
}

static void test_scratch(void)
{
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	uint8_t *a = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, 100);
	REQUIRE(a);
	CHECK(((uintptr_t)a & 63) == 0);
	CHECK(mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, 50) == a); /* reused, no realloc */
	uint8_t *b = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_B, 100);
	CHECK(b && b != a);
	CHECK(mfs_codec_ws_scratch(ws, MFS_WS_SLOTS, 10) == NULL);
	mfs_codec_ws_free(ws);
}

static void test_choose(void)
{
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	size_t len = 1 << 16;
	uint8_t *buf = malloc(len);
	mfs_encode_params p = {.dtype = MFS_DT_U8};
	mfs_codec_id id;
	mfs_codec_trial tr[8];
	size_t nt = 8;
	/* random bytes: nothing saves 1%, raw (the fastest) wins */
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(test_rand(&seed) >> 56);
	CHECK_EQ_INT(mfs_codec_choose(&p, buf, len, ws, &id, tr, &nt), 0);
	CHECK_EQ_INT(id, MFS_CODEC_RAW);
	CHECK(nt >= 2);
	/* text-like bytes: zstd */
	for (size_t i = 0; i < len; i++)
		buf[i] = "the quick brown fox "[i % 20];
	CHECK_EQ_INT(mfs_codec_choose(&p, buf, len, ws, &id, NULL, NULL), 0);
	CHECK_EQ_INT(id, MFS_CODEC_ZSTD);
	/* the same input always gives the same choice (sizes only, no timings) */
	mfs_codec_id id2;
	CHECK_EQ_INT(mfs_codec_choose(&p, buf, len, ws, &id2, NULL, NULL), 0);
	CHECK_EQ_INT(id, id2);
	free(buf);
	mfs_codec_ws_free(ws);
}

static void test_dtypes(void)
{
	CHECK_EQ_INT(mfs_dtype_bits(MFS_DT_BF16), 16);
	CHECK_EQ_INT(mfs_dtype_bits(MFS_DT_F4), 4);
	CHECK_EQ_INT(mfs_dtype_bits((mfs_dtype)99), 0);
	for (int i = 1; i < MFS_DT__COUNT; i++)
		CHECK_EQ_INT(mfs_dtype_from_name(mfs_dtype_name((mfs_dtype)i)), i);
	CHECK_EQ_INT(mfs_dtype_from_name("F128"), MFS_DT_UNKNOWN);
	CHECK(mfs_dtype_is_float(MFS_DT_F32) && !mfs_dtype_is_float(MFS_DT_I8));
}

int main(void)
{
	seed = test_seed();
	RUN(test_registry);
	RUN(test_raw_zstd);
	RUN(test_scratch);
	RUN(test_choose);
	RUN(test_dtypes);
	return test_report();
}
