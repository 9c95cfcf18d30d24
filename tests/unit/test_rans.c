/*
 * test_rans.c - the rans codec: bit-exact round trips on the real MiniLM
 * weights (tests/data/models, built by tests/e2e/fixtures.py; that part is
 * reported as not run when they are missing) and on edge cases, every
 * precision and lane count, hostile payloads, and the kernel pieces the
 * CUDA decoder shares (layouts, RAW random access, normalisation).
 */
#include "testhelp.h"

#include <math.h>
#include <xxhash.h>

#include "codec.h"
#include "planes.h"
#include "rans.h"
#include "rans_kernel.h"

#include "codec_check.h"
#include "testdata.h"

static uint64_t seed;
static mfs_codec_ws *ws;

/* Mode of plane p in payload enc. */
static unsigned plane_mode(const uint8_t *enc, unsigned p)
{
	return enc[MFS_RANS_HEADER + MFS_RANS_DESC * p + 1];
}

/* rans's encoder with the settings @p ctx (a mfs_rans_opts). */
static int encode_opts(const void *ctx, const mfs_encode_params *p, const void *src,
		       size_t len, void *dst, size_t cap, size_t *elen, mfs_codec_ws *w)
{
	return mfs_rans_encode_opts(p, ctx, src, len, dst, cap, elen, w);
}

/*
 * Encode with @p o (NULL: the registry's encoder), decode an exact-size
 * copy into an aligned and a misaligned buffer.
 * @return the payload size, or (size_t)-1 after a failure; *rans_planes
 *         counts the planes coded as RANS (may be NULL)
 */
static size_t roundtrip_opts(mfs_dtype dt, const uint8_t *src, size_t len,
			     const mfs_rans_opts *o, unsigned *rans_planes)
{
	uint8_t *enc = NULL;
	size_t elen = cc_roundtrip(MFS_CODEC_RANS, dt, src, len, o ? encode_opts : NULL,
				   o, 0, ws, rans_planes ? &enc : NULL);
	if (rans_planes && enc) {
		*rans_planes = 0;
		for (unsigned k = 0; k < enc[2]; k++)
			*rans_planes += plane_mode(enc, k) == MFS_RANS_MODE_RANS;
	}
	free(enc);
	return elen;
}

static void test_registry(void)
{
	const mfs_codec *c = mfs_codec_get(MFS_CODEC_RANS);
	REQUIRE(c != NULL);
	CHECK(strcmp(c->name, "rans") == 0);
	CHECK(mfs_codec_by_name("rans") == c);
	CHECK(c->flags == 0);
	CHECK(mfs_codec_bound_max(1 << 20) >= c->bound(1 << 20));
}

/* The device-usable layout table agrees with planes.h's for every dtype. */
static void test_layouts(void)
{
	for (unsigned dt = 0; dt < 40; dt++) {
		const mfs_planes_layout *L = mfs_planes_layout_bitplane((mfs_dtype)dt);
		unsigned es = 0, rot = 0, np = 0, w[MFS_RANS_PLANES_MAX];
		int rc = mfs_rans_layout(dt, &es, &rot, &np, w);
		CHECK_EQ_INT(rc == 0, L != NULL);
		if (!L || rc)
			continue;
		CHECK(es == L->esize && rot == L->rot && np == L->nplanes);
		for (unsigned p = 0; p < np; p++)
			CHECK_EQ_INT(w[p], L->width[p]);
	}
}

/* mfs_rans_raw_get reads what mfs_planes_pack writes, at every index. */
static void test_raw_get(void)
{
	uint64_t s = seed + 10;
	static const size_t ns[] = {0, 1, 5, 255, 256, 257, 511, 512, 700, 1000};
	uint16_t syms[1000];
	uint8_t packed[1300];
	for (unsigned w = 1; w <= 10; w++)
		for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
			size_t n = ns[q];
			uint8_t s8[1000];
			for (size_t i = 0; i < n; i++) {
				syms[i] = (uint16_t)(test_rand(&s) & ((1u << w) - 1));
				s8[i] = (uint8_t)syms[i];
			}
			size_t rl = mfs_planes_raw_len(w, n);
			memset(packed, 0, sizeof packed);
			mfs_planes_pack(w > 8 ? (void *)syms : (void *)s8, w, n, packed);
			uint8_t *exact = malloc(rl ? rl : 1);
			memcpy(exact, packed, rl);
			int bad = 0;
			for (size_t i = 0; i < n; i++)
				bad += mfs_rans_raw_get(exact, w, n, i) != syms[i];
			CHECK_EQ_INT(bad, 0);
			free(exact);
		}
}

static void test_normalize(void)
{
	uint64_t s = seed + 11;
	uint32_t count[1024];
	uint16_t freq[1024];
	for (int trial = 0; trial < 200; trial++) {
		unsigned nsym = 2 + (unsigned)(test_rand(&s) % 1023);
		unsigned P = MFS_RANS_PROB_MIN + (unsigned)(test_rand(&s) % 4);
		unsigned present = 0;
		for (unsigned i = 0; i < nsym; i++) {
			unsigned k = (unsigned)(test_rand(&s) % 4);
			count[i] = k == 0   ? 0
				   : k == 1 ? 1
					    : (uint32_t)(test_rand(&s) % 100000);
			present += count[i] != 0;
		}
		int rc = mfs_rans_normalize(count, nsym, P, freq);
		if (present < 2 || present > (1u << P)) {
			CHECK_EQ_INT(rc, MFS_E_INVAL);
			continue;
		}
		CHECK_EQ_INT(rc, 0);
		uint32_t sum = 0;
		int bad = 0;
		for (unsigned i = 0; i < nsym; i++) {
			sum += freq[i];
			bad += (count[i] == 0) != (freq[i] == 0) || freq[i] >= (1u << P);
		}
		CHECK_EQ_INT(bad, 0);
		CHECK_EQ_INT(sum, 1u << P);
		/* within 2% of the entropy, plus table granularity, plus what
		 * giving every present symbol at least one of the 2^P slots costs
		 * the others (rare symbols next to a frequent one: counts 1, 1,
		 * 99999 have 36 bits of entropy, and any table costs the 99999
		 * at least log2(2048/2046) bits each) */
		double h = 0, tot = 0;
		for (unsigned i = 0; i < nsym; i++)
			tot += count[i];
		for (unsigned i = 0; i < nsym; i++)
			if (count[i])
				h -= count[i] * log2(count[i] / tot);
		double c = mfs_rans_cost_bits(count, freq, nsym, P);
		CHECK(c >= h - 1e-6);
		double floor_cost = -tot * log2(1.0 - (double)present / (double)(1u << P));
		if (present <= 64 && P == 11)
			CHECK(c <= h * 1.02 + 64 + floor_cost);
	}
	count[0] = 5;
	count[1] = 0;
	CHECK_EQ_INT(mfs_rans_normalize(count, 2, 11, freq), MFS_E_INVAL);
	count[1] = 1;
	CHECK_EQ_INT(mfs_rans_normalize(count, 2, 7, freq), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_rans_normalize(count, 2, 12, freq), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_rans_normalize(count, 2, 8, freq), 0);
	CHECK(freq[0] + freq[1] == 256 && freq[1] >= 1);
}

static void test_unsupported(void)
{
	uint8_t src[64] = {0}, dst[512];
	size_t len;
	static const mfs_dtype others[] = {MFS_DT_UNKNOWN, MFS_DT_BOOL,	  MFS_DT_U8,
					   MFS_DT_I8,	   MFS_DT_I32,	  MFS_DT_C64,
					   MFS_DT_F4,	   (mfs_dtype)200};
	for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
		mfs_encode_params p = {.dtype = others[i]};
		CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_RANS, &p, src, 16, dst,
					      sizeof dst, &len, ws),
			     MFS_E_UNSUPPORTED);
	}
	mfs_encode_params p = {.dtype = MFS_DT_F32};
	CHECK_EQ_INT(
	    mfs_codec_encode(MFS_CODEC_RANS, &p, src, 6, dst, sizeof dst, &len, ws),
	    MFS_E_UNSUPPORTED);
	p.dtype = MFS_DT_BF16;
	CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_RANS, &p, src, 64, dst, 64, &len, ws),
		     MFS_E_NOSPACE);
	mfs_rans_opts bad[] = {{7, 0}, {12, 0}, {0, 33}, {0, 2048}, {0, 16}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_EQ_INT(
		    mfs_rans_encode_opts(&p, &bad[i], src, 64, dst, sizeof dst, &len, ws),
		    MFS_E_INVAL);
}

/*
 * Empty, 1..64 elements, all-equal and random chunks of every float dtype
 * (256 KiB: the same planes as 1 MiB, a quarter of the time under ASan),
 * once with the source misaligned; two symbols, one of them once (a
 * frequency of 1).
 */
static void test_small_and_equal(void)
{
	uint64_t s = seed + 1;
	size_t len = (size_t)256 << 10;
	cc_small_and_equal(MFS_CODEC_RANS, NULL, NULL, 0, len, &s, ws);
	uint8_t *big = malloc(len);
	for (size_t t = 0; t < CC_NFLOAT; t++) {
		mfs_dtype dt = cc_float_types[t];
		unsigned es = mfs_dtype_bits(dt) / 8;
		cc_fill_weights(dt, big, len, &s);
		CHECK(cc_roundtrip(MFS_CODEC_RANS, dt, big, len, NULL, NULL,
				   CC_SAME_MISALIGNED, ws, NULL) != (size_t)-1);
		memset(big, 0, len);
		big[len / 2 + es - 1] = 0x40;
		unsigned rp = 0;
		mfs_rans_opts o = {0, 32};
		CHECK(roundtrip_opts(dt, big, len, &o, &rp) != (size_t)-1);
		CHECK_EQ_INT(rp, 1);
	}
	free(big);
}

/*
 * Chunk sizes 4 KiB to 1 MiB, and 4 MiB for BF16 (by fours: past 32768
 * elements a plane has its full 512 lanes, so more sizes add nothing); every precision
 * and lane count, on lengths around the lane count, a length of 64 steps and an odd tail,
 * and a random length below 20000 elements (several unchecked runs and a checked tail;
 * the earlier bound, 200000, cost ten times the time for the same paths); a lane count
 * not a power of two.
 */
static void test_opts_and_sizes(void)
{
	uint64_t s = seed + 2;
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32,
					MFS_DT_F8_E4M3};
	size_t maxlen = (size_t)4 << 20;
	uint8_t *buf = malloc(maxlen);
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		unsigned es = mfs_dtype_bits(dts[d]) / 8;
		/* 4 MiB for BF16 alone: the other dtypes' planes are as many */
		size_t top = d == 0 ? maxlen : maxlen / 4;
		cc_fill_weights(dts[d], buf, top, &s);
		for (size_t len = 4096; len <= top; len *= 4) {
			unsigned rp = 0;
			size_t e = roundtrip_opts(dts[d], buf, len, NULL, &rp);
			CHECK(e != (size_t)-1 && e < len * 95 / 100);
			CHECK(rp >= 1); /* the exponent plane is rANS-coded */
		}
		for (unsigned P = MFS_RANS_PROB_MIN; P <= MFS_RANS_PROB_MAX; P++)
			for (unsigned lanes = 32; lanes <= MFS_RANS_LANES_MAX;
			     lanes *= 2) {
				mfs_rans_opts o = {P, lanes};
				size_t ns[] = {lanes - 1, lanes, lanes + 1,
					       64 * lanes + 7, 1 + test_rand(&s) % 20000};
				for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
					unsigned rp;
					CHECK(roundtrip_opts(dts[d], buf, ns[q] * es, &o,
							     &rp) != (size_t)-1);
				}
			}
		mfs_rans_opts o = {11, 96};
		CHECK(roundtrip_opts(dts[d], buf, 100000 * es, &o, NULL) != (size_t)-1);
	}
	free(buf);
}

/* ---- real weights ---- */

/*
 * test_rans_portable (MFS_TEST_PORTABLE: the codec without its AVX2 and
 * BMI2 loops) runs the very encoder this one runs, so it leaves the sizes
 * against bitplane-huff to test_rans.
 */
#ifdef MFS_TEST_PORTABLE
#define REAL_SIZES 0
#else
#define REAL_SIZES 1
#endif

/*
 * One safetensors file's tensors of dtype @p want, cut into 1 MiB chunks
 * from each tensor's start as ingest cuts them: the first and last chunk
 * of the embeddings', the first layer's and the pooler's tensors
 * round-trip (every shape and every tail: the later layers repeat the
 * first one's shapes, the embedding table's middle chunks its first; the
 * whole files go through bench_codecs), and their sizes are held against
 * bitplane-huff's.
 * @return 1 when the file was there
 */
static int real_file(const char *name, mfs_dtype want)
{
	char path[1200];
	test_model_path(path, sizeof path, name, "model.safetensors");
	test_st st;
	if (test_st_open(&st, path) < 0) {
		fprintf(stderr,
			"note: %s not found: real-weight round trips of %s not run "
			"(python tests/e2e/fixtures.py all builds them)\n",
			path, name);
		return 0;
	}
	size_t chunk = (size_t)1 << 20, raw = 0, rans_bytes = 0, bp_bytes = 0,
	       tensors = 0, chunks = 0;
	size_t cap = mfs_codec_bound_max(chunk);
	uint8_t *enc = malloc(cap), *dec = malloc(chunk);
	int fails = 0;
	mfs_dtype dt;
	const uint8_t *data;
	size_t tlen;
	while (test_st_next(&st, &dt, &data, &tlen)) {
		const char *layer = strstr(st.name, "layer.");
		if (dt != want || (layer && atoi(layer + 6) > 0))
			continue;
		tensors++;
		mfs_encode_params prm = {.dtype = want};
		for (size_t off = 0; off < tlen; off += chunk) {
			size_t len = tlen - off < chunk ? tlen - off : chunk;
			if (off > 0 && off + len < tlen)
				continue; /* a middle chunk */
			size_t elen = 0, blen = 0;
			if (mfs_codec_encode(MFS_CODEC_RANS, &prm, data + off, len, enc,
					     cap, &elen, ws) != 0 ||
			    mfs_codec_decode_plain(MFS_CODEC_RANS, enc, elen, dec, len,
						   ws) != 0 ||
			    memcmp(dec, data + off, len) != 0)
				fails++;
			rans_bytes += elen;
			if (REAL_SIZES &&
			    mfs_codec_encode(MFS_CODEC_BITPLANE_HUFF, &prm, data + off,
					     len, enc, cap, &blen, ws) == 0)
				bp_bytes += blen;
			raw += len;
			chunks++;
		}
	}
	CHECK_EQ_INT(fails, 0);
	CHECK(tensors > 10);
	CHECK(chunks > tensors);
	CHECK(raw > 0);
	fprintf(stderr, "  %s: %zu tensors, %zu chunks, %.1f MB: rans %.2f%% of raw\n",
		name, tensors, chunks, raw / 1e6, 100.0 * rans_bytes / (raw ? raw : 1));
	if (REAL_SIZES) {
		/* the size target: within 2% of bitplane-huff */
		CHECK(rans_bytes <= bp_bytes + bp_bytes / 50);
		fprintf(stderr, "  %s: bitplane-huff %.2f%% of raw\n", name,
			100.0 * bp_bytes / (raw ? raw : 1));
	}
	free(enc);
	free(dec);
	test_st_close(&st);
	return 1;
}

static void test_real_weights(void)
{
	real_file("minilm-bf16", MFS_DT_BF16);
	real_file("minilm-fp16", MFS_DT_F16);
	real_file("minilm-f32", MFS_DT_F32);
}

/* ---- hostile payloads ---- */

static void test_corrupt(void)
{
	uint64_t s = seed + 3;
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32,
					MFS_DT_F8_E5M2};
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		size_t len = 8192 * 4;
		uint8_t *src = malloc(len), *dec = malloc(len);
		cc_fill_weights(dts[d], src, len, &s);
		mfs_encode_params p = {.dtype = dts[d]};
		size_t cap = mfs_codec_bound_max(len), elen;
		uint8_t *enc = malloc(cap);
		mfs_rans_opts o = {0, 64};
		REQUIRE(mfs_rans_encode_opts(&p, &o, src, len, enc, cap, &elen, ws) == 0);
		unsigned rp = 0;
		for (unsigned k = 0; k < enc[2]; k++)
			rp += plane_mode(enc, k) == MFS_RANS_MODE_RANS;
		CHECK(rp >= 1);
		/* truncations: the plane lengths must add up.  Every cut in the
		 * header, the descriptors, the first plane's fields and the last
		 * 64 bytes, one in 61 between (each copy is exact-size for
		 * ASan, so all 30000 cost seconds) */
		for (size_t cut = 0; cut < elen;
		     cut += cut < 512 || cut + 64 >= elen ? 1 : 61) {
			uint8_t *t = malloc(cut ? cut : 1);
			memcpy(t, enc, cut);
			CHECK_EQ_INT(
			    mfs_codec_decode_plain(MFS_CODEC_RANS, t, cut, dec, len, ws),
			    MFS_E_CORRUPT);
			free(t);
		}
		CHECK_EQ_INT(
		    mfs_codec_decode_plain(MFS_CODEC_RANS, enc, elen, dec, len - 4, ws),
		    MFS_E_CORRUPT);
		/* random damage: an error or a decode of the right length, never
		 * a read or write out of bounds (exact-size copies, ASan) */
		size_t caught = 0, trials = 1000; /* fuzz_rans_decode does more */
		for (size_t trial = 0; trial < trials; trial++) {
			uint8_t *bad = malloc(elen);
			memcpy(bad, enc, elen);
			int flips = 1 + (int)(test_rand(&s) % 3);
			for (int f = 0; f < flips; f++) {
				size_t at =
				    trial & 1 ? test_rand(&s) % (elen < 600 ? elen : 600)
					      : test_rand(&s) % elen;
				bad[at] ^= (uint8_t)(1 + test_rand(&s) % 255);
			}
			int rc = mfs_codec_decode_plain(MFS_CODEC_RANS, bad, elen, dec,
							len, ws);
			CHECK(rc == 0 || rc == MFS_E_CORRUPT);
			caught += rc == MFS_E_CORRUPT;
			free(bad);
		}
		/* damage to a rANS stream is nearly always caught by the final
		 * states (RAW planes carry no check: the chunk key does) */
		CHECK(caught > trials / 4);
		free(src);
		free(dec);
		free(enc);
	}
	/* header checks */
	uint8_t h[64] = {MFS_RANS_VERSION, MFS_DT_BF16, 2, 0, 1, 0, 0, 0};
	uint8_t out[2];
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, h, 8, out, 2, ws),
		     MFS_E_CORRUPT);
	h[0] = 2;
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, h, 20, out, 2, ws),
		     MFS_E_CORRUPT);
}

/*
 * A hand-built rANS plane with each field wrong in turn: P, reserved byte,
 * groups, lo/cnt, frequencies not summing to 2^P, a frequency of 2^P, an
 * odd or overlong stream length, an initial state below 2^16, a final
 * state other than 2^16, a stream with a word left over.
 */
static void test_plane_fields(void)
{
	/* 4 BF16 elements whose 10-bit symbols are 500, 501, 500, 500 and a
	 * CONST 6-bit plane: one group, P = 8, freqs 192 and 64 */
	uint16_t v[4];
	unsigned s0[4] = {500, 501, 500, 500};
	for (int i = 0; i < 4; i++) {
		uint16_t r = (uint16_t)(s0[i] << 6 | 5);
		v[i] = (uint16_t)(r >> 1 | r << 15);
	}
	/* encode that plane by hand with the kernel's encoder */
	uint32_t x[32];
	for (int k = 0; k < 32; k++)
		x[k] = MFS_RANS_L;
	uint16_t words[8], *wp = words + 8;
	for (int k = 3; k >= 0; k--) {
		unsigned f = s0[k] == 500 ? 192 : 64, c = s0[k] == 500 ? 0 : 192;
		mfs_rans_enc_put(&x[k], f, c, 8, &wp);
	}
	size_t nw = (size_t)(words + 8 - wp);
	uint8_t pl[512];
	size_t q = 0;
	pl[q++] = 8, pl[q++] = 0, pl[q++] = 1, pl[q++] = 0;
	pl[q++] = 500 & 0xff, pl[q++] = 500 >> 8, pl[q++] = 2, pl[q++] = 0;
	pl[q++] = 0x80 | (192 & 127), pl[q++] = 192 >> 7, pl[q++] = 64;
	size_t lens_at = q;
	pl[q++] = (uint8_t)(2 * nw), pl[q++] = 0, pl[q++] = 0, pl[q++] = 0;
	size_t states_at = q;
	for (int k = 0; k < 32; k++) {
		for (int b = 0; b < 4; b++)
			pl[q++] = (uint8_t)(x[k] >> (8 * b));
	}
	for (size_t i = 0; i < nw; i++)
		pl[q++] = (uint8_t)wp[i], pl[q++] = (uint8_t)(wp[i] >> 8);
	size_t plen = q;
	/* the payload around it */
	uint8_t good[600];
	size_t g = 0;
	good[g++] = MFS_RANS_VERSION, good[g++] = MFS_DT_BF16, good[g++] = 2,
	good[g++] = 0;
	good[g++] = 4, good[g++] = 0, good[g++] = 0, good[g++] = 0;
	good[g++] = 10, good[g++] = MFS_RANS_MODE_RANS;
	good[g++] = (uint8_t)plen, good[g++] = (uint8_t)(plen >> 8), good[g++] = 0,
	good[g++] = 0;
	good[g++] = 6, good[g++] = MFS_RANS_MODE_CONST, good[g++] = 2, good[g++] = 0,
	good[g++] = 0, good[g++] = 0;
	size_t pl_at = g;
	memcpy(good + g, pl, plen);
	g += plen;
	good[g++] = 5, good[g++] = 0;
	uint16_t out[4];
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, good, g, out, 8, ws), 0);
	CHECK(memcmp(out, v, 8) == 0);
	static const struct {
		size_t at;
		uint8_t val;
	} edits[] = {
	    {0, 7},    /* P below the minimum */
	    {0, 12},   /* P above the maximum */
	    {1, 1},    /* reserved */
	    {2, 0},    /* no groups */
	    {2, 33},   /* too many groups */
	    {5, 4},    /* lo + cnt past 2^10 */
	    {6, 1},    /* cnt 1 */
	    {10, 63},  /* frequencies sum to 255 */
	    {8, 0x80}, /* 128 + 64: not 256 */
	};
	uint8_t bad[600];
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		memcpy(bad, good, g);
		bad[pl_at + edits[i].at] = edits[i].val;
		CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, bad, g, out, 8, ws),
			     MFS_E_CORRUPT);
	}
	/* odd stream length, a length past the plane */
	memcpy(bad, good, g);
	bad[pl_at + lens_at] ^= 1;
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, bad, g, out, 8, ws),
		     MFS_E_CORRUPT);
	memcpy(bad, good, g);
	bad[pl_at + lens_at] = (uint8_t)(bad[pl_at + lens_at] + 2);
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, bad, g, out, 8, ws),
		     MFS_E_CORRUPT);
	/* a state below 2^16; a lane without symbols not at 2^16 */
	memcpy(bad, good, g);
	bad[pl_at + states_at + 2] = 0, bad[pl_at + states_at + 3] = 0;
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, bad, g, out, 8, ws),
		     MFS_E_CORRUPT);
	memcpy(bad, good, g);
	bad[pl_at + states_at + 4 * 31] ^= 1;
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, bad, g, out, 8, ws),
		     MFS_E_CORRUPT);
	/* a used lane's state changed */
	memcpy(bad, good, g);
	bad[pl_at + states_at] ^= 1;
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, bad, g, out, 8, ws),
		     MFS_E_CORRUPT);
}

/*
 * The format is on disk: today's encoder must write exactly the payload
 * it wrote when version 1 was fixed (its XXH3-64 below), and it decodes.
 */
static void test_golden(void)
{
	size_t n = 20000;
	uint16_t *v = malloc(2 * n);
	uint32_t s = 1;
	for (size_t i = 0; i < n; i++) {
		s = s * 1103515245u + 12345u;
		unsigned e = 118 + ((s >> 16) % 5) + ((s >> 20) % 4);
		v[i] = (uint16_t)(((s >> 30) & 1) << 15 | e << 7 | ((s >> 8) & 0x7f));
	}
	mfs_encode_params p = {.dtype = MFS_DT_BF16};
	size_t cap = mfs_rans_bound(2 * n), elen = 0;
	uint8_t *enc = malloc(cap);
	mfs_rans_opts o = {11, 64};
	REQUIRE(mfs_rans_encode_opts(&p, &o, v, 2 * n, enc, cap, &elen, ws) == 0);
	CHECK(plane_mode(enc, 0) == MFS_RANS_MODE_RANS &&
	      plane_mode(enc, 1) == MFS_RANS_MODE_RAW);
	unsigned long long hash = (unsigned long long)XXH3_64bits(enc, elen);
	if (getenv("MFS_PRINT_GOLDEN"))
		fprintf(stderr, "golden: len %zu xxh3 0x%016llx\n", elen, hash);
	CHECK_EQ_INT(elen, 27362);
	CHECK(hash == 0x8e465134068a5a10ull);
	uint16_t *out = malloc(2 * n);
	CHECK_EQ_INT(mfs_codec_decode_plain(MFS_CODEC_RANS, enc, elen, out, 2 * n, ws),
		     0);
	CHECK(memcmp(out, v, 2 * n) == 0);
	free(v);
	free(out);
	free(enc);
}

/*
 * A plane with more distinct symbols than 2^prob_bits units (random BF16:
 * its wide plane takes every value) cannot be coded rANS at that precision:
 * it is stored RAW and the chunk still round-trips (the encoder failed with
 * MFS_E_INVAL; found by fuzz_rans_roundtrip).
 */
static void test_more_symbols_than_units(void)
{
	uint64_t s = seed + 7;
	size_t n = 8192;
	uint8_t *buf = malloc(2 * n);
	for (size_t i = 0; i < 2 * n; i++)
		buf[i] = (uint8_t)test_rand(&s);
	mfs_rans_opts o = {MFS_RANS_PROB_MIN, 32};
	CHECK(roundtrip_opts(MFS_DT_BF16, buf, 2 * n, &o, NULL) != (size_t)-1);
	free(buf);
}

int main(void)
{
	seed = test_seed();
	if (mfs_codec_ws_create(&ws))
		return 1;
	RUN(test_registry);
	RUN(test_layouts);
	RUN(test_raw_get);
	RUN(test_normalize);
	RUN(test_unsupported);
	RUN(test_small_and_equal);
	RUN(test_opts_and_sizes);
	RUN(test_more_symbols_than_units);
	RUN(test_plane_fields);
	RUN(test_corrupt);
	RUN(test_golden);
	RUN(test_real_weights);
	mfs_codec_ws_free(ws);
	return test_report();
}
