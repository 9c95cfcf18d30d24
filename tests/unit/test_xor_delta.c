/*
 * test_xor_delta.c - the xor-delta codec: bit-exact round trips against a
 * base, the plane modes its format uses (SPARSE and ZSTD included), bad
 * references and damaged payloads, and golden payloads pinning the format.
 * Every buffer handed to the codec is allocated at its exact size, so an
 * ASan build catches any read or write outside it.
 */
#include "testhelp.h"

#include "codec.h"

static uint64_t seed;
static mfs_codec_ws *ws;

static const mfs_dtype float_types[] = {MFS_DT_BF16,   MFS_DT_F16,     MFS_DT_F32,
					MFS_DT_F64,    MFS_DT_F8_E4M3, MFS_DT_F8_E5M2,
					MFS_DT_F8_E8M0};

enum { RAW = 0, CONST = 1, HUFF = 2, ZSTD = 3, SPARSE = 4 };

static unsigned esize(mfs_dtype dt)
{
	return mfs_dtype_bits(dt) / 8;
}

static void *dup_exact(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);
	memcpy(q, p, n);
	return q;
}

static double uniform(uint64_t *s)
{
	return (double)(test_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Weight-like float: roughly normal, scale 0.03. */
static double weight(uint64_t *s)
{
	double x = 0;
	for (int i = 0; i < 6; i++)
		x += uniform(s);
	return (x - 3.0) * 0.03;
}

/* The element of dtype dt nearest below v (truncating; fine for tests). */
static void put_elem(mfs_dtype dt, uint8_t *p, double v)
{
	float f = (float)v;
	uint32_t u;
	memcpy(&u, &f, 4);
	switch (dt) {
	case MFS_DT_BF16: {
		uint16_t h = (uint16_t)(u >> 16);
		memcpy(p, &h, 2);
		break;
	}
	case MFS_DT_F16: {
		uint32_t sign = (u >> 16) & 0x8000;
		int e = (int)((u >> 23) & 0xff) - 127 + 15;
		uint16_t h =
		    (uint16_t)(e <= 0 ? sign
			       : e >= 31
				   ? (sign | 0x7c00)
				   : (sign | (uint32_t)e << 10 | ((u >> 13) & 0x3ff)));
		memcpy(p, &h, 2);
		break;
	}
	case MFS_DT_F32:
		memcpy(p, &f, 4);
		break;
	case MFS_DT_F64:
		memcpy(p, &v, 8);
		break;
	default:
		p[0] = (uint8_t)(u >> 24 & 0x80) | (uint8_t)((u >> 20) & 0x7f);
		break;
	}
}

/*
 * A base and a "fine-tune" of it: each element moved by a small relative
 * step, a fraction @p keep of them left equal.
 */
static void make_pair(mfs_dtype dt, uint8_t *base, uint8_t *ft, size_t n, double keep,
		      uint64_t *s)
{
	unsigned es = esize(dt);
	for (size_t i = 0; i < n; i++) {
		double w = weight(s);
		put_elem(dt, base + es * i, w);
		if (uniform(s) < keep)
			memcpy(ft + es * i, base + es * i, es);
		else
			put_elem(dt, ft + es * i, w * (1.0 + 0.01 * (uniform(s) - 0.5)));
	}
}

static int encode(mfs_dtype dt, const uint8_t *ft, const uint8_t *base, size_t len,
		  uint8_t **enc, size_t *elen)
{
	mfs_ref_data ref = {MFS_REF_BASE, base, len};
	mfs_encode_params p = {.dtype = dt, .refs = &ref, .n_refs = 1};
	size_t cap = mfs_codec_get(MFS_CODEC_XOR_DELTA)->bound(len);
	uint8_t *buf = malloc(cap);
	int rc = mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, ft, len, buf, cap, elen, ws);
	if (rc == 0) {
		*enc = dup_exact(buf, *elen); /* exact size: ASan sees reads past it */
		CHECK(*elen <= cap);
	} else {
		*enc = NULL;
	}
	free(buf);
	return rc;
}

/* Decode @p enc against @p base (its own exact-size copy) into an exact-size buffer. */
static int decode(const uint8_t *enc, size_t elen, const uint8_t *base, size_t base_len,
		  mfs_ref_role role, uint8_t *out, size_t len)
{
	uint8_t *b = dup_exact(base, base_len);
	uint8_t *d = malloc(len ? len : 1);
	mfs_ref_data ref = {role, b, base_len};
	mfs_decode_req rq = {.src = enc,
			     .src_len = elen,
			     .dst = d,
			     .dst_len = len,
			     .refs = &ref,
			     .n_refs = 1};
	int rc = mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws);
	if (rc == 0 && out)
		memcpy(out, d, len);
	free(b);
	free(d);
	return rc;
}

/* Encode + decode; @return the payload size, or (size_t)-1 after a failure. */
static size_t roundtrip(mfs_dtype dt, const uint8_t *ft, const uint8_t *base, size_t len)
{
	uint8_t *enc;
	size_t elen = 0;
	int rc = encode(dt, ft, base, len, &enc, &elen);
	CHECK_EQ_INT(rc, 0);
	if (rc)
		return (size_t)-1;
	uint8_t *out = malloc(len + 1);
	rc = decode(enc, elen, base, len, MFS_REF_BASE, out, len);
	CHECK_EQ_INT(rc, 0);
	CHECK(rc == 0 && memcmp(out, ft, len) == 0);
	/* misaligned chunk, base and destination: the same payload, the same bytes */
	uint8_t *mf = malloc(len + 1), *mb = malloc(len + 3), *md = malloc(len + 1);
	memcpy(mf + 1, ft, len);
	memcpy(mb + 3, base, len);
	uint8_t *enc2;
	size_t elen2 = 0;
	CHECK_EQ_INT(encode(dt, mf + 1, mb + 3, len, &enc2, &elen2), 0);
	CHECK(elen2 == elen && enc2 && memcmp(enc2, enc, elen) == 0);
	mfs_ref_data ref = {MFS_REF_BASE, mb + 3, len};
	mfs_decode_req rq = {.src = enc,
			     .src_len = elen,
			     .dst = md + 1,
			     .dst_len = len,
			     .refs = &ref,
			     .n_refs = 1};
	CHECK_EQ_INT(mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws), 0);
	CHECK(memcmp(md + 1, ft, len) == 0);
	/* in place: the destination is the base */
	memcpy(md, base, len);
	ref.data = md;
	rq.dst = md;
	CHECK_EQ_INT(mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws), 0);
	CHECK(memcmp(md, ft, len) == 0);
	free(mf);
	free(mb);
	free(md);
	free(enc2);
	free(enc);
	free(out);
	return rc == 0 ? elen : (size_t)-1;
}

/* Plane p's mode and data in a payload (format: docs/codecs.md). */
static unsigned plane_mode(const uint8_t *enc, unsigned p)
{
	return enc[8 + 6 * p + 1];
}

static size_t plane_off(const uint8_t *enc, unsigned p)
{
	size_t off = 8 + 6 * (size_t)enc[3];
	for (unsigned q = 0; q < p; q++) {
		const uint8_t *d = enc + 8 + 6 * q + 2;
		off += (size_t)d[0] | (size_t)d[1] << 8 | (size_t)d[2] << 16 |
		       (size_t)d[3] << 24;
	}
	return off;
}

static void test_registry(void)
{
	const mfs_codec *c = mfs_codec_get(MFS_CODEC_XOR_DELTA);
	REQUIRE(c != NULL);
	CHECK(strcmp(c->name, "xor-delta") == 0);
	CHECK(mfs_codec_by_name("xor-delta") == c);
	CHECK(c->flags & MFS_CODEC_NEEDS_REF);
	CHECK(c->bound(1 << 20) >= (1 << 20));
	CHECK(mfs_codec_bound_max(1 << 20) >= c->bound(1 << 20));
}

/* Every float dtype, 0..64 elements and odd counts, fine-tune-like and random. */
static void test_roundtrip(void)
{
	uint64_t s = seed;
	for (size_t t = 0; t < sizeof float_types / sizeof float_types[0]; t++) {
		mfs_dtype dt = float_types[t];
		unsigned es = esize(dt);
		size_t maxn = 40000;
		uint8_t *base = malloc(maxn * es), *ft = malloc(maxn * es);
		for (size_t n = 0; n <= 64; n++) {
			make_pair(dt, base, ft, n, 0.5, &s);
			CHECK(roundtrip(dt, ft, base, n * es) != (size_t)-1);
		}
		for (int k = 0; k < 12; k++) {
			size_t n = 1 + test_rand(&s) % maxn;
			double keep = (double)(k % 4) / 3.0;
			make_pair(dt, base, ft, n, keep, &s);
			size_t e = roundtrip(dt, ft, base, n * es);
			CHECK(e != (size_t)-1);
			/* a delta this small costs well under the raw size */
			if (n > 4096 && es >= 2 && k % 4)
				CHECK(e < n * es * 70 / 100);
		}
		/* random chunk against a random base: near raw, never much more */
		size_t n = maxn;
		for (size_t i = 0; i < n * es; i++) {
			base[i] = (uint8_t)test_rand(&s);
			ft[i] = (uint8_t)test_rand(&s);
		}
		size_t e = roundtrip(dt, ft, base, n * es);
		CHECK(e != (size_t)-1 && e <= n * es + 128);
		free(base);
		free(ft);
	}
}

/* A chunk equal to its base: an all-zero XOR, every plane a constant. */
static void test_identical(void)
{
	uint64_t s = seed + 1;
	for (size_t t = 0; t < sizeof float_types / sizeof float_types[0]; t++) {
		mfs_dtype dt = float_types[t];
		size_t len = (size_t)1 << 20;
		uint8_t *base = malloc(len);
		for (size_t i = 0; i < len; i++)
			base[i] = (uint8_t)test_rand(&s);
		size_t e = roundtrip(dt, base, base, len);
		CHECK(e <= 8 + 8 * 8);
		uint8_t *enc;
		size_t elen;
		REQUIRE(encode(dt, base, base, len, &enc, &elen) == 0);
		for (unsigned p = 0; p < enc[3]; p++)
			CHECK_EQ_INT(plane_mode(enc, p), CONST);
		free(enc);
		free(base);
	}
}

/*
 * The modes below Huffman's one bit per symbol: a mostly-zero plane is
 * SPARSE (mask HUFF or CONST; values RAW, HUFF or CONST), one zero run
 * with a short burst is ZSTD.  Each case is checked by its mode bytes.
 */
static void test_modes(void)
{
	uint64_t s = seed + 2;
	size_t n = 65536, len = 2 * n;
	uint8_t *base = malloc(len), *ft = malloc(len);
	unsigned seen_mask[3] = {0}, seen_vals[3] = {0}, seen_zstd = 0;
	for (int k = 0; k < 6; k++) {
		for (size_t i = 0; i < len; i++)
			base[i] = (uint8_t)test_rand(&s);
		memcpy(ft, base, len);
		for (size_t i = 0; i < n; i++) {
			uint8_t *lo = ft + 2 * i; /* the low byte: plane 1 */
			switch (k) {
			case 0: /* 10% of the elements, random low bits: mask HUFF, values
				   HUFF */
				if (test_rand(&s) % 10 == 0)
					*lo ^= (uint8_t)(1 + test_rand(&s) % 7);
				break;
			case 1: /* every 8th element: mask CONST, values HUFF */
				if (i % 8 == 3)
					*lo ^= (uint8_t)(1 + test_rand(&s) % 3);
				break;
			case 2: /* 10% of the elements, all the same bit: values CONST */
				if (test_rand(&s) % 10 == 0)
					*lo ^= 1;
				break;
			case 3: /* 10%, uniform values: values RAW */
				if (test_rand(&s) % 10 == 0)
					*lo ^= (uint8_t)(1 + test_rand(&s) % 255);
				break;
			case 4: /* one burst of changed top bytes: ZSTD */
				if (i >= 1000 && i < 1100)
					lo[1] ^= (uint8_t)(1 + test_rand(&s) % 255);
				break;
			default: /* nonzero everywhere, few values: plain HUFF */
				*lo ^= (uint8_t)(1 + test_rand(&s) % 3);
				break;
			}
		}
		CHECK(roundtrip(MFS_DT_BF16, ft, base, len) != (size_t)-1);
		uint8_t *enc;
		size_t elen;
		REQUIRE(encode(MFS_DT_BF16, ft, base, len, &enc, &elen) == 0);
		for (unsigned p = 0; p < 2; p++) {
			unsigned m = plane_mode(enc, p);
			if (m == SPARSE) {
				const uint8_t *d = enc + plane_off(enc, p);
				if (d[4] <= HUFF)
					seen_mask[d[4]]++;
				if (d[9] <= HUFF)
					seen_vals[d[9]]++;
			}
			seen_zstd += m == ZSTD;
		}
		if (k == 4)
			CHECK_EQ_INT(plane_mode(enc, 0), ZSTD);
		if (k == 5)
			CHECK_EQ_INT(plane_mode(enc, 1), HUFF);
		if (k <= 3)
			CHECK_EQ_INT(plane_mode(enc, 1), SPARSE);
		if (getenv("MFS_TEST_VERBOSE") && plane_mode(enc, 1) == SPARSE)
			fprintf(stderr, "case %d: mask %u values %u\n", k,
				enc[plane_off(enc, 1) + 4], enc[plane_off(enc, 1) + 9]);
		free(enc);
	}
	/* (a RAW mask is the golden payload's) */
	CHECK(seen_mask[CONST] && seen_mask[HUFF]);
	CHECK(seen_vals[RAW] && seen_vals[CONST] && seen_vals[HUFF]);
	CHECK(seen_zstd > 0);
	free(base);
	free(ft);
}

static void test_encode_errors(void)
{
	uint8_t src[64] = {0}, base[64] = {0}, dst[512];
	size_t len;
	mfs_ref_data ref = {MFS_REF_BASE, base, 16};
	static const mfs_dtype others[] = {
	    MFS_DT_UNKNOWN, MFS_DT_BOOL, MFS_DT_U8,  MFS_DT_I8, MFS_DT_I16,    MFS_DT_I32,
	    MFS_DT_I64,	    MFS_DT_U64,	 MFS_DT_C64, MFS_DT_F4, (mfs_dtype)200};
	for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
		mfs_encode_params p = {.dtype = others[i], .refs = &ref, .n_refs = 1};
		CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, src, 16, dst,
					      sizeof dst, &len, ws),
			     MFS_E_UNSUPPORTED);
	}
	/* not a whole number of elements */
	static const struct {
		mfs_dtype dt;
		size_t len;
	} odd[] = {{MFS_DT_BF16, 3}, {MFS_DT_F16, 63}, {MFS_DT_F32, 6}, {MFS_DT_F64, 12}};
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		mfs_ref_data r = {MFS_REF_BASE, base, odd[i].len};
		mfs_encode_params p = {.dtype = odd[i].dt, .refs = &r, .n_refs = 1};
		CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, src, odd[i].len,
					      dst, sizeof dst, &len, ws),
			     MFS_E_UNSUPPORTED);
	}
	/* the reference: missing, of another role, of another length, two of them */
	mfs_encode_params p = {.dtype = MFS_DT_BF16};
	CHECK_EQ_INT(
	    mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, src, 16, dst, sizeof dst, &len, ws),
	    MFS_E_INVAL);
	mfs_ref_data bad[] = {{MFS_REF_QUANT, base, 16},
			      {MFS_REF_BASE, base, 14},
			      {MFS_REF_BASE, base, 18},
			      {MFS_REF_BASE, NULL, 16}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p.refs = &bad[i];
		p.n_refs = 1;
		CHECK_EQ_INT(mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, src, 16, dst,
					      sizeof dst, &len, ws),
			     MFS_E_INVAL);
	}
	mfs_ref_data two[] = {{MFS_REF_BASE, base, 16}, {MFS_REF_BASE, base, 16}};
	p.refs = two;
	p.n_refs = 2;
	CHECK_EQ_INT(
	    mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, src, 16, dst, sizeof dst, &len, ws),
	    MFS_E_INVAL);
	/* too small an output buffer */
	p.refs = &ref;
	p.n_refs = 1;
	CHECK_EQ_INT(
	    mfs_codec_encode(MFS_CODEC_XOR_DELTA, &p, src, 16, dst, 16, &len, ws),
	    MFS_E_NOSPACE);
}

/* A real-looking payload and every way a decode request can be wrong. */
static void test_decode_errors(void)
{
	uint64_t s = seed + 3;
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F32, MFS_DT_F8_E4M3};
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		mfs_dtype dt = dts[d];
		unsigned es = esize(dt);
		size_t n = 6001, len = n * es;
		uint8_t *base = malloc(len), *ft = malloc(len);
		make_pair(dt, base, ft, n, 0.6, &s);
		/* a burst of changed top bytes, so a ZSTD plane is in it too */
		for (size_t i = 100; i < 140; i++)
			ft[es * i + es - 1] ^= 0x40;
		uint8_t *enc;
		size_t elen;
		REQUIRE(encode(dt, ft, base, len, &enc, &elen) == 0);
		/* every truncation */
		for (size_t cut = 0; cut < elen; cut++) {
			uint8_t *t = dup_exact(enc, cut);
			CHECK_EQ_INT(decode(t, cut, base, len, MFS_REF_BASE, NULL, len),
				     MFS_E_CORRUPT);
			free(t);
		}
		/* a wrong raw length */
		CHECK_EQ_INT(
		    decode(enc, elen, base, len - es, MFS_REF_BASE, NULL, len - es),
		    MFS_E_CORRUPT);
		uint8_t *big = malloc(len + es);
		memcpy(big, base, len);
		memset(big + len, 0, es);
		CHECK_EQ_INT(
		    decode(enc, elen, big, len + es, MFS_REF_BASE, NULL, len + es),
		    MFS_E_CORRUPT);
		/* the reference: another role, shorter, longer */
		CHECK_EQ_INT(decode(enc, elen, base, len, MFS_REF_SCALE, NULL, len),
			     MFS_E_CORRUPT);
		CHECK_EQ_INT(decode(enc, elen, base, len - 1, MFS_REF_BASE, NULL, len),
			     MFS_E_CORRUPT);
		CHECK_EQ_INT(decode(enc, elen, big, len + 1, MFS_REF_BASE, NULL, len),
			     MFS_E_CORRUPT);
		free(big);
		/* none, two, one without data */
		uint8_t *out = malloc(len);
		mfs_decode_req rq = {
		    .src = enc, .src_len = elen, .dst = out, .dst_len = len};
		CHECK_EQ_INT(mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws),
			     MFS_E_CORRUPT);
		CHECK_EQ_INT(
		    mfs_codec_decode_plain(MFS_CODEC_XOR_DELTA, enc, elen, out, len, ws),
		    MFS_E_CORRUPT);
		mfs_ref_data two[] = {{MFS_REF_BASE, base, len},
				      {MFS_REF_BASE, base, len}};
		rq.refs = two;
		rq.n_refs = 2;
		CHECK_EQ_INT(mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws),
			     MFS_E_CORRUPT);
		mfs_ref_data nodata = {MFS_REF_BASE, NULL, len};
		rq.refs = &nodata;
		rq.n_refs = 1;
		CHECK_EQ_INT(mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws),
			     MFS_E_CORRUPT);
		/* a destination that partly overlaps the base is the caller's error */
		uint8_t *both = malloc(len + es);
		memcpy(both, base, len);
		mfs_ref_data over = {MFS_REF_BASE, both, len};
		rq.refs = &over;
		rq.dst = both + es;
		CHECK_EQ_INT(mfs_codec_decode(MFS_CODEC_XOR_DELTA, &rq, ws), MFS_E_INVAL);
		free(both);
		/* random damage: an error or some bytes, never a crash (ASan) */
		uint8_t *bad = malloc(elen);
		for (int trial = 0; trial < 3000; trial++) {
			memcpy(bad, enc, elen);
			int flips = 1 + (int)(test_rand(&s) % 3);
			for (int f = 0; f < flips; f++) {
				size_t at = trial & 1
						? test_rand(&s) % (elen < 80 ? elen : 80)
						: test_rand(&s) % elen;
				bad[at] ^= (uint8_t)(1 + test_rand(&s) % 255);
			}
			int rc = decode(bad, elen, base, len, MFS_REF_BASE, NULL, len);
			CHECK(rc == 0 || rc == MFS_E_CORRUPT);
		}
		free(bad);
		free(out);
		free(enc);
		free(base);
		free(ft);
	}
}

/*
 * Golden payloads: the format is on disk, so version 1 must keep decoding
 * to the same bytes.  2048 BF16 elements from a fixed generator; in half
 * of the groups of eight, the first or the fifth changed in its low bits.  The payload is
 * a CONST top plane and a SPARSE low plane (HUFF mask, HUFF values), which beats the ZSTD
 * trial by far; today's encoder must write it exactly (no zstd plane in it: zstd's bytes
 * may change with the library).
 */
static void golden_input(uint16_t *base, uint16_t *ft, size_t n)
{
	uint32_t s = 7;
	unsigned g = 0;
	for (size_t i = 0; i < n; i++) {
		s = s * 1103515245u + 12345u;
		unsigned e = 118 + ((s >> 16) % 6);
		base[i] = (uint16_t)(((s >> 30) & 1) << 15 | e << 7 | ((s >> 8) & 0x7f));
		ft[i] = base[i];
		if (i % 8 == 0)
			g = (s >> 16) &
			    3; /* per 8 elements: none (0, 3), the 1st (1), the 5th (2) */
		if ((g == 1 && i % 8 == 0) || (g == 2 && i % 8 == 4))
			ft[i] ^= (uint16_t)(1 + (s >> 20) % 3);
	}
}

static const uint8_t golden_bf16[] = {
    0x01, 0x09, 0x00, 0x02, 0x00, 0x08, 0x00, 0x00, 0x08, 0x01, 0x02, 0x00, 0x00,
    0x00, 0x08, 0x04, 0x86, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00, 0x00,
    0x02, 0x4a, 0x00, 0x00, 0x00, 0x02, 0x2e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11,
    0x00, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0c, 0x00, 0x00,
    0x00, 0x0c, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x00, 0xaa, 0x3d, 0x34, 0x36,
    0x66, 0x94, 0x0d, 0xca, 0xb9, 0xa5, 0x7f, 0x10, 0xe1, 0x6d, 0xc0, 0xb3, 0xe5,
    0x4b, 0x63, 0x16, 0xed, 0x8d, 0x43, 0x01, 0xdb, 0x65, 0xe4, 0x5a, 0xfa, 0x97,
    0xfc, 0xe1, 0xb2, 0x7f, 0x85, 0x16, 0x3e, 0xd4, 0x28, 0xb3, 0x33, 0x0e, 0x8f,
    0x8d, 0xfc, 0x44, 0xd2, 0xe3, 0x0c, 0x01, 0x00, 0x03, 0x00, 0x22, 0x01, 0x07,
    0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x5f, 0xf3,
    0xdf, 0xe7, 0xa4, 0xf4, 0x27, 0xb7, 0xd1, 0x29, 0x3d, 0x3f, 0xd1, 0x00, 0xad,
    0xa6, 0xaf, 0xa1, 0x0a, 0x36, 0x01, 0xed, 0xb6, 0xdb, 0x9d, 0xcf, 0x2a, 0x0d,
};

/*
 * A second one with a ZSTD plane (decode only): 256 F32 elements whose top
 * bytes change in one burst; plane 0 ZSTD, planes 1..3 CONST, SPARSE, HUFF.
 */
static void golden_input_f32(uint32_t *base, uint32_t *ft, size_t n)
{
	uint32_t s = 11;
	for (size_t i = 0; i < n; i++) {
		s = s * 1103515245u + 12345u;
		base[i] = s;
		ft[i] = s ^ (uint32_t)((s >> 9) % 5);
		if (i >= 40 && i < 48)
			ft[i] ^= 0x55000000u;
		if ((s >> 13) % 3)
			ft[i] ^= (uint32_t)((s >> 20) & 0xff) << 8;
	}
}

static const uint8_t golden_f32_zstd[] = {
    0x01, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x08, 0x03, 0x18, 0x00, 0x00, 0x00,
    0x08, 0x01, 0x02, 0x00, 0x00, 0x00, 0x08, 0x04, 0xd5, 0x00, 0x00, 0x00, 0x08, 0x02,
    0x5f, 0x00, 0x00, 0x00, 0x28, 0xb5, 0x2f, 0xfd, 0x60, 0x00, 0x00, 0x75, 0x00, 0x00,
    0x20, 0x00, 0x00, 0x55, 0x00, 0x03, 0x10, 0x00, 0x4c, 0x2a, 0xd9, 0xfd, 0x60, 0x01,
    0x00, 0x00, 0xa7, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0xa7, 0x00,
    0x00, 0x00, 0xcf, 0xd9, 0xef, 0xbf, 0x4f, 0xb2, 0x3d, 0xfa, 0x84, 0xfb, 0xed, 0xf6,
    0x9e, 0x34, 0x62, 0xb7, 0x67, 0xfd, 0xff, 0x5b, 0x74, 0x83, 0xff, 0xde, 0xc5, 0xd3,
    0xd3, 0xff, 0x71, 0xa7, 0x28, 0x6d, 0x38, 0x0d, 0xc6, 0x0a, 0x9f, 0xba, 0xf1, 0x3d,
    0x94, 0x0f, 0xf1, 0x5a, 0xd8, 0x5e, 0x8a, 0x5e, 0xbb, 0x63, 0x2a, 0x64, 0x1a, 0xa1,
    0x34, 0x4b, 0xf2, 0xf5, 0x90, 0x15, 0xb0, 0x02, 0x65, 0x81, 0xf4, 0x60, 0xb9, 0xe2,
    0xb8, 0x76, 0x22, 0x4f, 0x3b, 0x96, 0xbf, 0x7f, 0xb3, 0x86, 0x67, 0xb5, 0xfb, 0x63,
    0xbb, 0x9c, 0xb9, 0x81, 0x24, 0x8e, 0xac, 0xeb, 0xe5, 0xed, 0x3f, 0xf4, 0x63, 0x36,
    0xa5, 0x7b, 0xdd, 0x56, 0x5b, 0xe5, 0x52, 0xde, 0x2d, 0xf5, 0x52, 0x15, 0x1b, 0x47,
    0xc7, 0x5b, 0xe4, 0xfc, 0x40, 0xe6, 0xef, 0x83, 0xd2, 0xbe, 0xe7, 0xe4, 0x63, 0x80,
    0x2a, 0x83, 0xfa, 0xe4, 0x1a, 0x98, 0xe0, 0xff, 0xbc, 0x6d, 0x8f, 0xbf, 0x3b, 0xc3,
    0x23, 0x5e, 0xcb, 0x53, 0x6e, 0x9f, 0x8d, 0x55, 0xc0, 0x7c, 0x23, 0x70, 0x80, 0xc5,
    0xbc, 0x52, 0x74, 0xae, 0xe3, 0x57, 0xe8, 0x7d, 0x62, 0x28, 0xaa, 0x15, 0x79, 0x12,
    0xfc, 0x2d, 0x99, 0x17, 0xa7, 0x50, 0x78, 0xff, 0x85, 0x5f, 0xf4, 0x5f, 0xe7, 0xbd,
    0x55, 0x0e, 0x6e, 0xd0, 0x1e, 0x2c, 0xb6, 0xc9, 0x46, 0x9d, 0xe4, 0x16, 0x57, 0xf2,
    0x29, 0x7c, 0xf4, 0x46, 0x39, 0x00, 0x00, 0x05, 0x00, 0x23, 0x23, 0x02, 0x13, 0x00,
    0x00, 0x00, 0x13, 0x00, 0x00, 0x00, 0x13, 0x00, 0x00, 0x00, 0x06, 0xf5, 0x58, 0x13,
    0xf2, 0x8c, 0x49, 0xc5, 0x2f, 0xbc, 0x62, 0x2f, 0x3c, 0x7d, 0xfb, 0xa3, 0x69, 0xe0,
    0x00, 0x8b, 0xb7, 0x47, 0xaa, 0x6f, 0x2f, 0x4a, 0x9e, 0xd5, 0x5b, 0x8b, 0x6f, 0xe5,
    0xfd, 0xdf, 0x95, 0xd3, 0x39, 0x73, 0xcc, 0xbe, 0x78, 0xf6, 0x84, 0xa9, 0x35, 0xd8,
    0xb3, 0x21, 0xd7, 0xcf, 0xd2, 0xe4, 0xf0, 0xb5, 0xbd, 0x38, 0x1e, 0xde, 0xf4, 0xd8,
    0x88, 0x01, 0x9e, 0x3a, 0xa9, 0xac, 0x3e, 0xcf, 0xfe, 0x18, 0x6f, 0x7e, 0xe6, 0x31,
    0x14, 0x05,
};

/* MFS_PRINT_GOLDEN=1: print today's payloads (to write new golden arrays). */
static void print_golden(void)
{
	uint16_t base[2048], ft[2048];
	uint32_t fb[256], ff[256];
	uint8_t *enc;
	size_t elen;
	golden_input(base, ft, 2048);
	golden_input_f32(fb, ff, 256);
	for (int k = 0; k < 2; k++) {
		if (k == 0)
			encode(MFS_DT_BF16, (uint8_t *)ft, (uint8_t *)base, sizeof ft,
			       &enc, &elen);
		else
			encode(MFS_DT_F32, (uint8_t *)ff, (uint8_t *)fb, sizeof ff, &enc,
			       &elen);
		for (size_t i = 0; i < elen; i++)
			printf("0x%02x,%s", enc[i], i % 12 == 11 ? "\n" : " ");
		printf("\n\n");
		free(enc);
	}
	fflush(stdout);
}

/*
 * Hand-made: 16 BF16 elements, a CONST top plane and a SPARSE low plane
 * with a RAW mask (0x55 0xaa) and RAW values 1..8 (the encoder writes a RAW
 * mask only for planes where SPARSE barely pays).
 */
static const uint8_t hand_bf16[] = {
    0x01, 0x09, 0x00, 0x02, 0x10, 0x00, 0x00, 0x00, /* v1, BF16, bytes, 2 planes, n 16 */
    0x08, 0x01, 0x02, 0x00, 0x00, 0x00,		    /* plane 0: CONST, 2 bytes */
    0x08, 0x04, 0x18, 0x00, 0x00, 0x00,		    /* plane 1: SPARSE, 24 bytes */
    0x00, 0x00,					    /* symbol 0 */
    0x08, 0x00, 0x00, 0x00,			    /* k = 8 */
    0x00, 0x02, 0x00, 0x00, 0x00,		    /* mask RAW, 2 bytes */
    0x00, 0x08, 0x00, 0x00, 0x00,		    /* values RAW, 8 bytes */
    0x55, 0xaa, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
};

static void test_hand_made(void)
{
	uint16_t base[16], out[16], want[16] = {0};
	static const unsigned at[8] = {0, 2, 4, 6, 9, 11, 13, 15};
	uint64_t s = seed + 4;
	for (unsigned i = 0; i < 16; i++)
		base[i] = (uint16_t)test_rand(&s);
	for (unsigned i = 0; i < 16; i++)
		want[i] = base[i];
	for (unsigned j = 0; j < 8; j++)
		want[at[j]] ^= (uint16_t)(j + 1);
	CHECK_EQ_INT(decode(hand_bf16, sizeof hand_bf16, (uint8_t *)base, sizeof base,
			    MFS_REF_BASE, (uint8_t *)out, sizeof out),
		     0);
	CHECK(memcmp(out, want, sizeof want) == 0);
	/* 15 elements: the mask's bit 15 lies past the end */
	uint8_t bad[sizeof hand_bf16];
	memcpy(bad, hand_bf16, sizeof bad);
	bad[4] = 15;
	CHECK_EQ_INT(decode(bad, sizeof bad, (uint8_t *)base, 30, MFS_REF_BASE, NULL, 30),
		     MFS_E_CORRUPT);
	/* k = 9 with nine values: one more than the mask has bits */
	uint8_t more[sizeof hand_bf16 + 1];
	memcpy(more, hand_bf16, sizeof hand_bf16);
	more[sizeof hand_bf16] = 9;
	more[16] = 0x19; /* plane 1: 25 bytes */
	more[22] = 9;	 /* k */
	more[32] = 9;	 /* value length */
	CHECK_EQ_INT(decode(more, sizeof more, (uint8_t *)base, sizeof base, MFS_REF_BASE,
			    NULL, sizeof out),
		     MFS_E_CORRUPT);
	/* RAW sub-planes of the wrong lengths (3 + 7 still add up) */
	memcpy(bad, hand_bf16, sizeof bad);
	bad[27] = 3;
	bad[32] = 7;
	CHECK_EQ_INT(decode(bad, sizeof bad, (uint8_t *)base, sizeof base, MFS_REF_BASE,
			    NULL, sizeof out),
		     MFS_E_CORRUPT);
}

static void test_golden(void)
{
	uint16_t base[2048], ft[2048], out[2048];
	if (getenv("MFS_PRINT_GOLDEN"))
		print_golden();
	golden_input(base, ft, 2048);
	CHECK_EQ_INT(decode(golden_bf16, sizeof golden_bf16, (uint8_t *)base, sizeof base,
			    MFS_REF_BASE, (uint8_t *)out, sizeof out),
		     0);
	CHECK(memcmp(out, ft, sizeof ft) == 0);
	uint8_t *enc;
	size_t elen;
	REQUIRE(encode(MFS_DT_BF16, (uint8_t *)ft, (uint8_t *)base, sizeof ft, &enc,
		       &elen) == 0);
	CHECK(elen == sizeof golden_bf16 && memcmp(enc, golden_bf16, elen) == 0);
	free(enc);
	CHECK_EQ_INT(plane_mode(golden_bf16, 0), CONST);
	CHECK_EQ_INT(plane_mode(golden_bf16, 1), SPARSE);

	/* deliberately corrupt variants */
	size_t sp = plane_off(golden_bf16, 1); /* the SPARSE plane's header */
	uint8_t bad[sizeof golden_bf16];
	const struct {
		size_t at;
		uint8_t val;
	} edits[] = {
	    {0, 2},	     /* version */
	    {1, MFS_DT_I16}, /* dtype: not a float */
	    {1, MFS_DT_F32}, /* dtype F32: 16 elements, 4 planes */
	    {2, 1},	     /* layout */
	    {3, 1},	     /* plane count */
	    {4, 63},	     /* element count */
	    {8, 7},	     /* plane 0 width */
	    {9, 5},	     /* plane 0 mode: unknown */
	    {10, 3},	     /* plane 0 length */
	    {16, 2},	     /* plane 1 mode: HUFF over SPARSE bytes */
	    {16, 0},	     /* plane 1 mode: RAW of the wrong length */
	    {sp, (uint8_t)(golden_bf16[sp] + 1)}, /* k: one more value than mask bits */
	    {sp, (uint8_t)(golden_bf16[sp] - 1)}, /* k: one fewer */
	    {sp + 4, 3}, /* mask mode: ZSTD is not allowed inside */
	    {sp + 4, 1}, /* mask mode CONST: wrong length */
	    {sp + 5, 7}, /* mask length */
	    {sp + 9, 4}, /* value mode: SPARSE inside SPARSE */
	    {sp + 14, (uint8_t)(golden_bf16[sp + 14] ^ 0x01)}, /* a mask bit: count off */
	};
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		memcpy(bad, golden_bf16, sizeof bad);
		bad[edits[i].at] = edits[i].val;
		int rc = decode(bad, sizeof bad, (uint8_t *)base, sizeof base,
				MFS_REF_BASE, NULL, sizeof out);
		if (rc != MFS_E_CORRUPT)
			fprintf(stderr, "edit %zu (byte %zu = %u): rc %d\n", i,
				edits[i].at, edits[i].val, rc);
		CHECK_EQ_INT(rc, MFS_E_CORRUPT);
	}

	/* the ZSTD one */
	uint32_t fb[256], ff[256], fo[256];
	golden_input_f32(fb, ff, 256);
	CHECK_EQ_INT(decode(golden_f32_zstd, sizeof golden_f32_zstd, (uint8_t *)fb,
			    sizeof fb, MFS_REF_BASE, (uint8_t *)fo, sizeof fo),
		     0);
	CHECK(memcmp(fo, ff, sizeof ff) == 0);
	CHECK_EQ_INT(plane_mode(golden_f32_zstd, 0), ZSTD);
	/* the ZSTD plane one byte shorter, the next one byte longer: the lengths
	 * still add up, the frame is cut */
	uint8_t *z = dup_exact(golden_f32_zstd, sizeof golden_f32_zstd);
	REQUIRE(z[10] > 0 && z[16] < 255);
	z[10]--;
	z[16]++;
	CHECK_EQ_INT(decode(z, sizeof golden_f32_zstd, (uint8_t *)fb, sizeof fb,
			    MFS_REF_BASE, NULL, sizeof fo),
		     MFS_E_CORRUPT);
	free(z);
}

int main(void)
{
	seed = test_seed();
	if (mfs_codec_ws_create(&ws))
		return 1;
	RUN(test_registry);
	RUN(test_roundtrip);
	RUN(test_identical);
	RUN(test_modes);
	RUN(test_encode_errors);
	RUN(test_decode_errors);
	RUN(test_golden);
	RUN(test_hand_made);
	mfs_codec_ws_free(ws);
	return test_report();
}
