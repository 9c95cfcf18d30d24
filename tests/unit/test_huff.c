/* test_huff.c - the canonical Huffman coder (codec/huff.h). */
#include "testhelp.h"

#include "huff.h"

static uint64_t seed;

/* Round-trip n symbols below nsym; returns the block size or 0 on failure. */
static size_t roundtrip(const void *syms, int wide, size_t n, unsigned nsym)
{
	static uint32_t freq[MFS_HUFF_MAX_SYMS];
	static mfs_huff_table t;
	memset(freq, 0, sizeof freq);
	for (size_t i = 0; i < n; i++)
		freq[wide ? ((const uint16_t *)syms)[i] : ((const uint8_t *)syms)[i]]++;
	int rc = mfs_huff_build(freq, nsym, &t);
	CHECK_EQ_INT(rc, 0);
	if (rc)
		return 0;
	CHECK(t.max_len <= MFS_HUFF_MAX_BITS);
	size_t exact = mfs_huff_block_size(&t, syms, wide, n);
	CHECK(exact <= mfs_huff_block_estimate(&t, freq));
	size_t cap = exact + 8;
	uint8_t *blk = malloc(cap);
	size_t len = 0;
	CHECK_EQ_INT(mfs_huff_encode(&t, syms, wide, n, blk, cap, &len), 0);
	CHECK_EQ_INT(len, exact);
	size_t w = wide ? 2 : 1;
	uint8_t *out = malloc(n * w + 1);
	rc = mfs_huff_decode(blk, len, nsym, out, wide, n);
	CHECK_EQ_INT(rc, 0);
	CHECK(memcmp(out, syms, n * w) == 0);
	/* a trailing byte is never part of a valid block */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, blk, len);
	longer[len] = 0;
	CHECK_EQ_INT(mfs_huff_decode(longer, len + 1, nsym, out, wide, n), MFS_E_CORRUPT);
	free(longer);
	free(out);
	free(blk);
	return len;
}

/* Geometric-ish skew: symbol k with probability ~ (1-q) q^k, folded into nsym. */
static unsigned skewed(uint64_t *s, unsigned nsym, double q, unsigned offset)
{
	unsigned k = 0;
	while ((test_rand(s) >> 11) * (1.0 / 9007199254740992.0) < q && k < 4 * nsym)
		k++;
	return (k + offset) % nsym;
}

static void test_random_skewed(void)
{
	uint64_t s = seed;
	static const unsigned nsyms[] = {2, 3, 16, 256, 1024};
	static const size_t ns[] = {1,	2,  3,	  4,	5,	17,    63,
				    64, 65, 1000, 4099, 100000, 300001};
	static const double qs[] = {0.1, 0.5, 0.8, 0.97};
	for (size_t a = 0; a < sizeof nsyms / sizeof nsyms[0]; a++)
		for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
			for (size_t c = 0; c < sizeof qs / sizeof qs[0]; c++) {
				unsigned nsym = nsyms[a];
				size_t n = ns[b];
				int wide = nsym > 256;
				uint16_t *v16 = malloc(2 * n + 2);
				uint8_t *v8 = malloc(n + 2);
				unsigned off = (unsigned)(test_rand(&s) % nsym);
				for (size_t i = 0; i < n; i++) {
					v16[i] = (uint16_t)skewed(&s, nsym, qs[c], off);
					v8[i] = (uint8_t)v16[i];
				}
				/* the coder needs two distinct symbols */
				if (n >= 2 && v16[0] == v16[1]) {
					v16[1] = (uint16_t)((v16[0] + 1) % nsym);
					v8[1] = (uint8_t)v16[1];
				}
				if (n >= 2) {
					roundtrip(v16, 1, n, nsym);
					if (!wide)
						roundtrip(v8, 0, n, nsym);
				}
				free(v16);
				free(v8);
			}
}

static void test_single_symbol(void)
{
	uint32_t freq[256] = {0};
	mfs_huff_table t;
	freq[42] = 1000;
	CHECK_EQ_INT(mfs_huff_build(freq, 256, &t), MFS_E_INVAL);
	memset(freq, 0, sizeof freq);
	CHECK_EQ_INT(mfs_huff_build(freq, 256, &t), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_huff_build(freq, 1, &t), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_huff_build(freq, 2000, &t), MFS_E_INVAL);
	/* two symbols: one bit each */
	freq[0] = 1;
	freq[255] = 1000000;
	CHECK_EQ_INT(mfs_huff_build(freq, 256, &t), 0);
	CHECK_EQ_INT(t.len[0], 1);
	CHECK_EQ_INT(t.len[255], 1);
}

static void test_all_256(void)
{
	size_t n = 256 * 64;
	uint8_t *v = malloc(n);
	for (size_t i = 0; i < n; i++)
		v[i] = (uint8_t)(i * 7);
	uint32_t freq[256] = {0};
	for (size_t i = 0; i < n; i++)
		freq[v[i]]++;
	mfs_huff_table t;
	CHECK_EQ_INT(mfs_huff_build(freq, 256, &t), 0);
	for (unsigned s = 0; s < 256; s++)
		CHECK_EQ_INT(t.len[s], 8);
	size_t len = roundtrip(v, 0, n, 256);
	CHECK(len >= n && len < n + 200);
	free(v);
}

static void test_empty(void)
{
	uint32_t freq[16] = {0};
	freq[1] = freq[2] = 1;
	mfs_huff_table t;
	CHECK_EQ_INT(mfs_huff_build(freq, 16, &t), 0);
	uint8_t blk[64];
	size_t len = 0;
	uint8_t none = 0;
	CHECK_EQ_INT(mfs_huff_encode(&t, &none, 0, 0, blk, sizeof blk, &len), 0);
	CHECK(len > 0);
	uint8_t out[1];
	CHECK_EQ_INT(mfs_huff_decode(blk, len, 16, out, 0, 0), 0);
	/* the same block does not hold one symbol */
	CHECK_EQ_INT(mfs_huff_decode(blk, len, 16, out, 0, 1), MFS_E_CORRUPT);
}

static void test_length_limit(void)
{
	/* Fibonacci frequencies give an unlimited Huffman depth of ~nsym */
	for (unsigned nsym = 13; nsym <= 46; nsym += 11) {
		uint32_t freq[64] = {0};
		uint32_t a = 1, b = 1;
		for (unsigned s = 0; s < nsym; s++) {
			freq[s] = a;
			uint32_t c = a + b;
			a = b;
			b = c;
			if (b > 40000000)
				b = 40000000;
		}
		mfs_huff_table t;
		REQUIRE(mfs_huff_build(freq, 64, &t) == 0);
		CHECK(t.max_len <= MFS_HUFF_MAX_BITS);
		uint64_t kraft = 0;
		for (unsigned s = 0; s < 64; s++) {
			CHECK((freq[s] != 0) == (t.len[s] != 0));
			if (t.len[s])
				kraft += 1u << (MFS_HUFF_MAX_BITS - t.len[s]);
		}
		CHECK_EQ_INT(kraft, 1u << MFS_HUFF_MAX_BITS);
		/* a sample that uses every symbol (frequencies capped for memory) */
		size_t m = 0;
		uint8_t *v = malloc(200000);
		for (unsigned s = 0; s < nsym && m < 200000; s++)
			for (uint32_t k = 0; k < freq[s] && k < 5000 && m < 200000; k++)
				v[m++] = (uint8_t)s;
		roundtrip(v, 0, m, 64);
		free(v);
	}
	/* 1024 symbols, one of them dominant: lengths still <= 12, complete */
	static uint32_t f[MFS_HUFF_MAX_SYMS];
	for (unsigned s = 0; s < MFS_HUFF_MAX_SYMS; s++)
		f[s] = 1;
	f[500] = 4000000000u;
	mfs_huff_table t;
	REQUIRE(mfs_huff_build(f, MFS_HUFF_MAX_SYMS, &t) == 0);
	uint64_t kraft = 0;
	for (unsigned s = 0; s < MFS_HUFF_MAX_SYMS; s++) {
		CHECK(t.len[s] >= 1 && t.len[s] <= MFS_HUFF_MAX_BITS);
		kraft += 1u << (MFS_HUFF_MAX_BITS - t.len[s]);
	}
	CHECK_EQ_INT(kraft, 1u << MFS_HUFF_MAX_BITS);
}

/* Build one valid block to corrupt. */
static size_t sample_block(uint8_t *blk, size_t cap, uint8_t *syms, size_t n, uint64_t *s)
{
	uint32_t freq[256] = {0};
	for (size_t i = 0; i < n; i++) {
		syms[i] = (uint8_t)skewed(s, 256, 0.7, 100);
		freq[syms[i]]++;
	}
	syms[0] = 1;
	syms[1] = 2;
	freq[1]++;
	freq[2]++;
	mfs_huff_table t;
	memset(freq, 0, sizeof freq);
	for (size_t i = 0; i < n; i++)
		freq[syms[i]]++;
	if (mfs_huff_build(freq, 256, &t))
		return 0;
	size_t len = 0;
	if (mfs_huff_encode(&t, syms, 0, n, blk, cap, &len))
		return 0;
	return len;
}

static void test_corrupt(void)
{
	uint64_t s = seed ^ 0x9e3779b97f4a7c15ull;
	size_t n = 5000;
	uint8_t *syms = malloc(n), *out = malloc(n);
	uint8_t *blk = malloc(2 * n + 64), *bad = malloc(2 * n + 64);
	size_t len = sample_block(blk, 2 * n + 64, syms, n, &s);
	REQUIRE(len > 0);
	CHECK_EQ_INT(mfs_huff_decode(blk, len, 256, out, 0, n), 0);
	CHECK(memcmp(out, syms, n) == 0);

	/* random byte flips: an error or some output, never a crash (ASan) */
	for (int trial = 0; trial < 3000; trial++) {
		memcpy(bad, blk, len);
		int flips = 1 + (int)(test_rand(&s) % 4);
		for (int f = 0; f < flips; f++)
			bad[test_rand(&s) % len] ^= (uint8_t)(1 + test_rand(&s) % 255);
		int rc = mfs_huff_decode(bad, len, 256, out, 0, n);
		CHECK(rc == 0 || rc == MFS_E_CORRUPT);
	}
	/* every truncation: an error or some output, never a read past the end */
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *t = malloc(cut ? cut : 1);
		memcpy(t, blk, cut);
		int rc = mfs_huff_decode(t, cut, 256, out, 0, n);
		CHECK(rc == 0 || rc == MFS_E_CORRUPT);
		if (cut < 20)
			CHECK_EQ_INT(rc, MFS_E_CORRUPT); /* header cut */
		free(t);
	}
	/* crafted headers */
	uint8_t h[64];
	memset(h, 0, sizeof h);
	h[0] = 0, h[2] = 2; /* lo 0, cnt 2 */
	h[4] = 0x11;	    /* lengths 1, 1: a complete code */
	CHECK_EQ_INT(mfs_huff_decode(h, 4 + 1 + 12, 256, out, 0, 0), 0);
	h[4] = 0x21; /* lengths 1, 2: Kraft 3/4 */
	CHECK_EQ_INT(mfs_huff_decode(h, 17, 256, out, 0, 0), MFS_E_CORRUPT);
	h[4] = 0xd1; /* length 13 */
	CHECK_EQ_INT(mfs_huff_decode(h, 17, 256, out, 0, 0), MFS_E_CORRUPT);
	h[4] = 0x10; /* one symbol only */
	CHECK_EQ_INT(mfs_huff_decode(h, 17, 256, out, 0, 0), MFS_E_CORRUPT);
	h[4] = 0x11;
	h[0] = 255; /* lo + cnt > nsym */
	CHECK_EQ_INT(mfs_huff_decode(h, 17, 256, out, 0, 0), MFS_E_CORRUPT);
	h[0] = 0;
	h[5] = 200; /* stream 0 longer than the block */
	CHECK_EQ_INT(mfs_huff_decode(h, 17, 256, out, 0, 0), MFS_E_CORRUPT);
	h[5] = 0;
	CHECK_EQ_INT(mfs_huff_decode(h, 17, 2000, out, 1, 0), MFS_E_CORRUPT); /* nsym */
	CHECK_EQ_INT(mfs_huff_decode(h, 17, 300, out, 0, 0), MFS_E_CORRUPT);  /* narrow */
	free(syms);
	free(out);
	free(blk);
	free(bad);
}

int main(void)
{
	seed = test_seed();
	RUN(test_random_skewed);
	RUN(test_single_symbol);
	RUN(test_all_256);
	RUN(test_empty);
	RUN(test_length_limit);
	RUN(test_corrupt);
	return test_report();
}
