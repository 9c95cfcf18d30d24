/*
 * sha256.c - SHA-256 and SHA-1 (FIPS 180-4), written from the standard.
 *
 * SHA-256 has two block functions with one state layout (h[0..7] = a..h):
 * a portable one and one for the x86 SHA extensions (sha256rnds2 does two
 * rounds on the state split as ABEF/CDGH).  The choice is made per update
 * call from a cached CPUID answer, so one process can hash on any CPU.
 * SHA-1 is only used for git blob ids of small files: portable only.
 */
#include "sha256.h"
#include "sha256_internal.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define MFS_SHA_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static inline uint32_t rotr32(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static inline uint32_t rotl32(uint32_t x, unsigned n)
{
	return (x << n) | (x >> (32 - n));
}

static inline uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
	store_be32(p, (uint32_t)(v >> 32));
	store_be32(p + 4, (uint32_t)v);
}

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

/* FIPS 180-4 5.3.3. */
static const uint32_t sha256_h0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

void mfs_sha256_blocks_portable(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	uint32_t w[64];

	for (; nblocks; nblocks--, p += 64) {
		for (int t = 0; t < 16; t++)
			w[t] = load_be32(p + 4 * t);
		for (int t = 16; t < 64; t++) {
			uint32_t s0 = rotr32(w[t - 15], 7) ^ rotr32(w[t - 15], 18) ^
				      (w[t - 15] >> 3);
			uint32_t s1 = rotr32(w[t - 2], 17) ^ rotr32(w[t - 2], 19) ^
				      (w[t - 2] >> 10);
			w[t] = w[t - 16] + s0 + w[t - 7] + s1;
		}
		uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
		uint32_t e = h[4], f = h[5], g = h[6], hh = h[7];
		for (int t = 0; t < 64; t++) {
			uint32_t S1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
			uint32_t ch = (e & f) ^ (~e & g);
			uint32_t t1 = hh + S1 + ch + sha256_k[t] + w[t];
			uint32_t S0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
			uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
			uint32_t t2 = S0 + maj;
			hh = g;
			g = f;
			f = e;
			e = d + t1;
			d = c;
			c = b;
			b = a;
			a = t1 + t2;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
		h[5] += f;
		h[6] += g;
		h[7] += hh;
	}
}

#ifdef MFS_SHA_X86
/*
 * sha256rnds2 keeps the state as two vectors, ABEF and CDGH (A in the top
 * dword), and runs two rounds with the low two dwords of its third operand
 * (message word + round constant).  After two rounds the old ABEF is the new
 * CDGH, so the two registers swap roles each call.  sha256msg1/msg2 compute
 * the schedule four words at a time: msg1 adds sigma0 of the next words,
 * the caller adds W[t-7], msg2 adds sigma1 of W[t-2].
 */
#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Four rounds; m is the message vector for rounds 4i..4i+3. */
#define SHANI_ROUNDS4(m, i)                                                              \
	do {                                                                             \
		__m128i wk_ = _mm_add_epi32(                                             \
		    (m), _mm_loadu_si128((const __m128i *)&sha256_k[4 * (i)]));          \
		cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk_);                           \
		wk_ = _mm_shuffle_epi32(wk_, 0x0e);                                      \
		abef = _mm_sha256rnds2_epu32(abef, cdgh, wk_);                           \
	} while (0)

/* The next four schedule words from the previous sixteen (m0 oldest). */
#define SHANI_SCHEDULE(m0, m1, m2, m3)                                                   \
	(m0) = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32((m0), (m1)),      \
						  _mm_alignr_epi8((m3), (m2), 4)),       \
				    (m3))

SHA_TARGET void mfs_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	const __m128i bswap =
	    _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i lo = _mm_loadu_si128((const __m128i *)&h[0]); /* d c b a */
	__m128i hi = _mm_loadu_si128((const __m128i *)&h[4]); /* h g f e */

	lo = _mm_shuffle_epi32(lo, 0xb1);	      /* c d a b */
	hi = _mm_shuffle_epi32(hi, 0x1b);	      /* e f g h */
	__m128i abef = _mm_alignr_epi8(lo, hi, 8);    /* a b e f */
	__m128i cdgh = _mm_blend_epi16(hi, lo, 0xf0); /* c d g h */

	for (; nblocks; nblocks--, p += 64) {
		const __m128i abef0 = abef, cdgh0 = cdgh;
		__m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), bswap);
		__m128i m1 =
		    _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
		__m128i m2 =
		    _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
		__m128i m3 =
		    _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);

		SHANI_ROUNDS4(m0, 0);
		SHANI_ROUNDS4(m1, 1);
		SHANI_ROUNDS4(m2, 2);
		SHANI_ROUNDS4(m3, 3);
		for (int i = 4; i < 16; i += 4) {
			SHANI_SCHEDULE(m0, m1, m2, m3);
			SHANI_ROUNDS4(m0, i);
			SHANI_SCHEDULE(m1, m2, m3, m0);
			SHANI_ROUNDS4(m1, i + 1);
			SHANI_SCHEDULE(m2, m3, m0, m1);
			SHANI_ROUNDS4(m2, i + 2);
			SHANI_SCHEDULE(m3, m0, m1, m2);
			SHANI_ROUNDS4(m3, i + 3);
		}
		abef = _mm_add_epi32(abef, abef0);
		cdgh = _mm_add_epi32(cdgh, cdgh0);
	}

	lo = _mm_shuffle_epi32(abef, 0x1b); /* f e b a */
	hi = _mm_shuffle_epi32(cdgh, 0xb1); /* d c h g */
	_mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(lo, hi, 0xf0));
	_mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(hi, lo, 8));
}

static int sha_cpu_probe(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!(c & bit_SSSE3) || !(c & bit_SSE4_1))
		return 0;
	if (__get_cpuid_max(0, NULL) < 7)
		return 0;
	__cpuid_count(7, 0, a, b, c, d);
	return (b >> 29) & 1; /* CPUID.(EAX=7,ECX=0):EBX[29] = SHA */
}

/*
 * The CPU's answer is cached: CPUID traps to the hypervisor in a VM, far too
 * slow per call.  It is a fact about the machine, the same for every store
 * and mount, so this one static is not per-instance state; racing first
 * callers store the same value.
 */
int mfs_sha256_have_shani(void)
{
	static _Atomic int cached; /* 0 unknown, 1 no, 2 yes */
	int v = cached;

	if (!v) {
		v = sha_cpu_probe() ? 2 : 1;
		cached = v;
	}
	return v == 2;
}
#else
void mfs_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	mfs_sha256_blocks_portable(h, p, nblocks);
}

int mfs_sha256_have_shani(void)
{
	return 0;
}
#endif

typedef void (*sha256_blocks_fn)(uint32_t h[8], const uint8_t *p, size_t nblocks);

/*
 * Merkle-Damgard buffering shared by SHA-256 and SHA-1: top up a partial
 * block, hash whole blocks straight from the input, keep the tail.
 */
static void md_update(uint32_t *h, uint8_t buf[64], size_t *buf_len, uint64_t *total,
		      void (*blocks)(uint32_t *h, const uint8_t *p, size_t nblocks),
		      const uint8_t *p, size_t len)
{
	*total += len;
	if (*buf_len) {
		size_t take = 64 - *buf_len;
		if (take > len)
			take = len;
		memcpy(buf + *buf_len, p, take);
		*buf_len += take;
		p += take;
		len -= take;
		if (*buf_len < 64)
			return;
		blocks(h, buf, 1);
		*buf_len = 0;
	}
	if (len >= 64) {
		blocks(h, p, len / 64);
		p += len & ~(size_t)63;
		len &= 63;
	}
	memcpy(buf, p, len);
	*buf_len = len;
}

static sha256_blocks_fn sha256_blocks(void)
{
	return mfs_sha256_have_shani() ? mfs_sha256_blocks_shani
				       : mfs_sha256_blocks_portable;
}

void mfs_sha256_init(mfs_sha256_ctx *c)
{
	memcpy(c->h, sha256_h0, sizeof c->h);
	c->total = 0;
	c->buf_len = 0;
}

void mfs_sha256_update(mfs_sha256_ctx *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (!len)
		return;
	md_update(c->h, c->buf, &c->buf_len, &c->total, sha256_blocks(), p, len);
}

/* FIPS 180-4 5.1.1 padding, shared by SHA-1 and SHA-256: 0x80, zeros, then
 * the message length in bits as a big-endian 64-bit number. */
static void md_pad(uint8_t buf[64], size_t buf_len, uint64_t total, uint8_t *last,
		   int *two_blocks)
{
	memset(last, 0, 128);
	memcpy(last, buf, buf_len);
	last[buf_len] = 0x80;
	*two_blocks = buf_len >= 56;
	store_be64(last + (*two_blocks ? 120 : 56), total << 3);
}

void mfs_sha256_final(mfs_sha256_ctx *c, uint8_t out[32])
{
	uint8_t last[128];
	int two;

	md_pad(c->buf, c->buf_len, c->total, last, &two);
	sha256_blocks()(c->h, last, two ? 2 : 1);
	for (int i = 0; i < 8; i++)
		store_be32(out + 4 * i, c->h[i]);
	memset(c, 0, sizeof *c);
}

void mfs_sha256(const void *data, size_t len, uint8_t out[32])
{
	mfs_sha256_ctx c;

	mfs_sha256_init(&c);
	mfs_sha256_update(&c, data, len);
	mfs_sha256_final(&c, out);
}

void mfs_hex(const uint8_t *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = '\0';
}

void mfs_sha256_hex(const uint8_t d[32], char hex[65])
{
	mfs_hex(d, 32, hex);
}

/* SHA-1, FIPS 180-4 6.1. */
static void sha1_blocks(uint32_t h[5], const uint8_t *p, size_t nblocks)
{
	uint32_t w[80];

	for (; nblocks; nblocks--, p += 64) {
		for (int t = 0; t < 16; t++)
			w[t] = load_be32(p + 4 * t);
		for (int t = 16; t < 80; t++)
			w[t] = rotl32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
		uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
		for (int t = 0; t < 80; t++) {
			uint32_t f, k;
			if (t < 20) {
				f = (b & c) ^ (~b & d);
				k = 0x5a827999;
			} else if (t < 40) {
				f = b ^ c ^ d;
				k = 0x6ed9eba1;
			} else if (t < 60) {
				f = (b & c) ^ (b & d) ^ (c & d);
				k = 0x8f1bbcdc;
			} else {
				f = b ^ c ^ d;
				k = 0xca62c1d6;
			}
			uint32_t tmp = rotl32(a, 5) + f + e + k + w[t];
			e = d;
			d = c;
			c = rotl32(b, 30);
			b = a;
			a = tmp;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
	}
}

void mfs_sha1_init(mfs_sha1_ctx *c)
{
	static const uint32_t h0[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
				       0xc3d2e1f0};

	memcpy(c->h, h0, sizeof c->h);
	c->total = 0;
	c->buf_len = 0;
}

void mfs_sha1_update(mfs_sha1_ctx *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (!len)
		return;
	md_update(c->h, c->buf, &c->buf_len, &c->total, sha1_blocks, p, len);
}

void mfs_sha1_final(mfs_sha1_ctx *c, uint8_t out[20])
{
	uint8_t last[128];
	int two;

	md_pad(c->buf, c->buf_len, c->total, last, &two);
	sha1_blocks(c->h, last, two ? 2 : 1);
	for (int i = 0; i < 5; i++)
		store_be32(out + 4 * i, c->h[i]);
	memset(c, 0, sizeof *c);
}
