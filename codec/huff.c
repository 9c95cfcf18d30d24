/*
 * huff.c - canonical, length-limited Huffman coder with four interleaved
 * LSB-first bit streams per block (format in huff.h).
 *
 * Decoder: the lengths are checked (range, Kraft sum exactly 1) and turned
 * into a 2^12-entry table that yields one or two symbols per lookup (the
 * planes' common codes are 3-6 bits, so most lookups yield two).  Each
 * stream is a bit position plus a 64-bit window refilled by one unaligned
 * load; four streams are decoded side by side so their lookups overlap.
 * Loads never leave the block; the tail decodes symbol by symbol and every
 * stream must end exactly in its last byte.  Tables live on the stack
 * (8 KiB + 16 KiB): nothing is allocated.
 */
#include "huff.h"
#include "le.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(MFS_HUFF_MAX_BITS <= 15 && MFS_HUFF_MAX_SYMBOL_BITS <= 12,
	       "table entries are symbol << 4 | length in 16 bits");
_Static_assert(4 * MFS_HUFF_MAX_BITS <= 56, "four lookups per refill");
_Static_assert(MFS_HUFF_MAX_SYMS <= (1u << MFS_HUFF_MAX_BITS),
	       "every symbol can get a code of at most MFS_HUFF_MAX_BITS");

static inline uint64_t load64le(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline void store64le(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static unsigned bit_reverse(unsigned code, unsigned len)
{
	/* reverse 16 bits by swapping halves, bytes, nibbles, pairs, bits */
	unsigned r = code & 0xffff;
	r = (r >> 8 | r << 8) & 0xffff;
	r = ((r >> 4) & 0x0f0f) | ((r & 0x0f0f) << 4);
	r = ((r >> 2) & 0x3333) | ((r & 0x3333) << 2);
	r = ((r >> 1) & 0x5555) | ((r & 0x5555) << 1);
	return r >> (16 - len);
}

static size_t header_size(unsigned cnt)
{
	return 4 + (cnt + 1) / 2 + 4 * (MFS_HUFF_STREAMS - 1);
}

/* Symbols in stream k: segments of ceil(n/4), the last one shorter. */
static size_t stream_count(size_t n, unsigned k)
{
	size_t seg = (n + MFS_HUFF_STREAMS - 1) / MFS_HUFF_STREAMS;
	size_t start = seg * k;
	if (start >= n)
		return 0;
	return n - start < seg ? n - start : seg;
}

/* ---- table construction ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * Unlimited Huffman lengths by the two-queue method over leaves sorted by
 * frequency, then limited to MFS_HUFF_MAX_BITS: clamp, lengthen the rarest
 * short codes until the Kraft sum fits, then shorten the most frequent codes
 * while the sum stays <= 1, which ends exactly at 1 (the deficit is always
 * a multiple of the smallest unit, which the longest code can take).
 */
static void build_lengths(const uint32_t *freq, unsigned nsym, uint8_t *len)
{
	static const unsigned L = MFS_HUFF_MAX_BITS;
	uint64_t key[MFS_HUFF_MAX_SYMS];
	uint64_t w[2 * MFS_HUFF_MAX_SYMS];
	uint16_t parent[2 * MFS_HUFF_MAX_SYMS];
	uint16_t depth[2 * MFS_HUFF_MAX_SYMS];
	unsigned m = 0;

	memset(len, 0, nsym);
	for (unsigned s = 0; s < nsym; s++)
		if (freq[s])
			key[m++] = (uint64_t)freq[s] << 16 | s;
	qsort(key, m, sizeof key[0], cmp_u64);
	for (unsigned i = 0; i < m; i++)
		w[i] = key[i] >> 16;
	unsigned li = 0, ii = m, nn = m;
	for (unsigned k = 0; k + 1 < m; k++) {
		unsigned a, b;
		a = (li < m && (ii >= nn || w[li] <= w[ii])) ? li++ : ii++;
		b = (li < m && (ii >= nn || w[li] <= w[ii])) ? li++ : ii++;
		w[nn] = w[a] + w[b];
		parent[a] = parent[b] = (uint16_t)nn;
		nn++;
	}
	depth[nn - 1] = 0;
	for (unsigned i = nn - 1; i-- > 0;)
		depth[i] = depth[parent[i]] + 1;

	uint64_t kraft = 0;
	for (unsigned i = 0; i < m; i++) {
		unsigned s = (unsigned)(key[i] & 0xffff);
		unsigned d = depth[i] > L ? L : depth[i];
		len[s] = (uint8_t)d;
		kraft += 1u << (L - d);
	}
	const uint64_t full = 1u << L;
	while (kraft > full) {
		/* lengthen the rarest code that can grow (keys sort rarest first) */
		int best = -1;
		for (unsigned i = 0; i < m && best < 0; i++) {
			unsigned s = (unsigned)(key[i] & 0xffff);
			if (len[s] < L)
				best = (int)s;
		}
		len[best]++;
		kraft -= 1u << (L - len[best]);
	}
	while (kraft < full) {
		/* shorten the most frequent code whose gain still fits */
		for (unsigned i = m; i-- > 0;) {
			unsigned s = (unsigned)(key[i] & 0xffff);
			if (len[s] > 1 && kraft + (1u << (L - len[s])) <= full) {
				kraft += 1u << (L - len[s]);
				len[s]--;
				break;
			}
		}
	}
}

/* Canonical codes from lengths (shorter first, then symbol order), reversed. */
static void assign_codes(const uint8_t *len, unsigned lo, unsigned hi, uint16_t *code)
{
	unsigned count[MFS_HUFF_MAX_BITS + 2] = {0};
	unsigned next[MFS_HUFF_MAX_BITS + 2] = {0};
	for (unsigned s = lo; s <= hi; s++)
		count[len[s]]++;
	count[0] = 0;
	unsigned c = 0;
	for (unsigned l = 1; l <= MFS_HUFF_MAX_BITS; l++) {
		c = (c + count[l - 1]) << 1;
		next[l] = c;
	}
	for (unsigned s = lo; s <= hi; s++)
		if (len[s])
			code[s] = (uint16_t)bit_reverse(next[len[s]]++, len[s]);
}

int mfs_huff_build(const uint32_t *freq, unsigned nsym, mfs_huff_table *t)
{
	if (nsym < 2 || nsym > MFS_HUFF_MAX_SYMS)
		return MFS_E_INVAL;
	unsigned present = 0, lo = nsym, hi = 0;
	for (unsigned s = 0; s < nsym; s++) {
		if (!freq[s])
			continue;
		present++;
		if (s < lo)
			lo = s;
		hi = s;
	}
	if (present < 2)
		return MFS_E_INVAL;
	t->nsym = nsym;
	t->lo = lo;
	t->hi = hi;
	build_lengths(freq, nsym, t->len);
	t->max_len = 0;
	for (unsigned s = lo; s <= hi; s++)
		if (t->len[s] > t->max_len)
			t->max_len = t->len[s];
	memset(t->code, 0, sizeof t->code);
	assign_codes(t->len, lo, hi, t->code);
	return 0;
}

size_t mfs_huff_block_estimate(const mfs_huff_table *t, const uint32_t *freq)
{
	uint64_t bits = 0;
	for (unsigned s = t->lo; s <= t->hi; s++)
		bits += (uint64_t)freq[s] * t->len[s];
	return header_size(t->hi - t->lo + 1) + (size_t)((bits + 7) / 8) +
	       MFS_HUFF_STREAMS;
}

static uint64_t stream_bits(const mfs_huff_table *t, const void *syms, int wide,
			    size_t from, size_t count)
{
	uint64_t bits = 0;
	if (wide) {
		const uint16_t *s = (const uint16_t *)syms + from;
		for (size_t i = 0; i < count; i++)
			bits += t->len[s[i] < MFS_HUFF_MAX_SYMS ? s[i] : 0];
	} else {
		const uint8_t *s = (const uint8_t *)syms + from;
		for (size_t i = 0; i < count; i++)
			bits += t->len[s[i]];
	}
	return bits;
}

size_t mfs_huff_block_size(const mfs_huff_table *t, const void *syms, int wide, size_t n)
{
	size_t total = header_size(t->hi - t->lo + 1);
	size_t seg = (n + MFS_HUFF_STREAMS - 1) / MFS_HUFF_STREAMS;
	for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++)
		total +=
		    (size_t)((stream_bits(t, syms, wide, seg * k, stream_count(n, k)) +
			      7) /
			     8);
	return total;
}

/* ---- encoder ---- */

static inline unsigned sym_at(const void *syms, int wide, size_t i)
{
	return wide ? ((const uint16_t *)syms)[i] : ((const uint8_t *)syms)[i];
}

/* Write one stream; @return bytes written or (size_t)-1 when out of room. */
static size_t encode_stream(const mfs_huff_table *t, const void *syms, int wide,
			    size_t from, size_t count, uint8_t *dst, uint8_t *end)
{
	uint8_t *p = dst;
	uint64_t acc = 0;
	unsigned nb = 0;
	size_t i = 0;
	/* 4 codes of <= 12 bits on top of < 8 pending bits fit in 64 */
	for (; i + 4 <= count; i += 4) {
		for (unsigned j = 0; j < 4; j++) {
			unsigned s = sym_at(syms, wide, from + i + j);
			acc |= (uint64_t)t->code[s] << nb;
			nb += t->len[s];
		}
		if (end - p < 8)
			return (size_t)-1;
		store64le(p, acc);
		p += nb >> 3;
		acc >>= nb & ~7u;
		nb &= 7;
	}
	for (; i < count; i++) {
		unsigned s = sym_at(syms, wide, from + i);
		acc |= (uint64_t)t->code[s] << nb;
		nb += t->len[s];
	}
	while (nb > 0) {
		if (p >= end)
			return (size_t)-1;
		*p++ = (uint8_t)acc;
		acc >>= 8;
		nb = nb > 8 ? nb - 8 : 0;
	}
	return (size_t)(p - dst);
}

int mfs_huff_encode(const mfs_huff_table *t, const void *syms, int wide, size_t n,
		    uint8_t *dst, size_t dst_cap, size_t *dst_len)
{
	unsigned cnt = t->hi - t->lo + 1;
	size_t hs = header_size(cnt);
	if (dst_cap < hs)
		return MFS_E_NOSPACE;
	/* Every symbol must have a code: the caller built t from these symbols. */
	for (size_t i = 0; i < n; i++) {
		unsigned s = sym_at(syms, wide, i);
		if (s < t->lo || s > t->hi || !t->len[s])
			return MFS_E_INVAL;
	}
	mfs_le_put16(dst, t->lo);
	mfs_le_put16(dst + 2, cnt);
	uint8_t *q = dst + 4;
	memset(q, 0, (cnt + 1) / 2);
	for (unsigned i = 0; i < cnt; i++)
		q[i / 2] |= (uint8_t)(t->len[t->lo + i] << (4 * (i & 1)));
	uint8_t *sizes = q + (cnt + 1) / 2;
	uint8_t *p = dst + hs, *end = dst + dst_cap;
	size_t seg = (n + MFS_HUFF_STREAMS - 1) / MFS_HUFF_STREAMS;
	for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++) {
		size_t w =
		    encode_stream(t, syms, wide, seg * k, stream_count(n, k), p, end);
		if (w == (size_t)-1)
			return MFS_E_NOSPACE;
		if (k + 1 < MFS_HUFF_STREAMS) {
			if (w > UINT32_MAX)
				return MFS_E_TOOBIG;
			mfs_le_put32(sizes + 4 * k, (uint32_t)w);
		}
		p += w;
	}
	*dst_len = (size_t)(p - dst);
	return 0;
}

/* ---- decoder ---- */

/*
 * Each stream is read through a bit position relative to the block start
 * (one register) and a 64-bit window loaded at that position (a second):
 * a refill is one unaligned load and one shift and leaves at least 57 valid
 * bits, enough for four codes of at most 12 bits.  The table always has
 * 2^MFS_HUFF_MAX_BITS entries, so the index mask is a constant.
 */
#define TAB_SIZE (1u << MFS_HUFF_MAX_BITS)
#define TAB_MASK (TAB_SIZE - 1)

static inline uint64_t window(const uint8_t *base, uint64_t bitpos)
{
	return load64le(base + (bitpos >> 3)) >> (bitpos & 7);
}

/* The window at bitpos when fewer than 8 bytes remain; zeros past blk_len. */
static inline uint64_t window_tail(const uint8_t *base, size_t blk_len, uint64_t bitpos)
{
	size_t byte = (size_t)(bitpos >> 3);
	if (byte + 8 <= blk_len)
		return window(base, bitpos);
	uint64_t v = 0;
	for (unsigned j = 0; j < 8 && byte + j < blk_len; j++)
		v |= (uint64_t)base[byte + j] << (8 * j);
	return v >> (bitpos & 7);
}

/*
 * Two-symbol table: entry j holds the code at the bottom of the 12 bits j
 * and, when the next code also fits in those 12 bits, that one too (the
 * planes' typical codes are 3-6 bits, so most lookups yield two symbols).
 * The output store always writes two symbols; the count says how far the
 * cursor moves.
 * Entry layouts (the count on top, so extracting it is one shift):
 *   wide (uint16_t out):  sym1 0-9, total len 10-15, sym2 16-25, len1 26-29, count 30-31
 *   narrow (uint8_t out): sym1 0-7, sym2 8-15, total len 16-21, len1 24-27, count 30-31
 */
#define W_LEN(e)  (((e) >> 10) & 63)
#define W_CNT(e)  ((e) >> 30)
#define W_SYM1(e) ((e)&0x3ff)
#define W_LEN1(e) (((e) >> 26) & 15)
#define N_LEN(e)  (((e) >> 16) & 63)
#define N_CNT(e)  ((e) >> 30)
#define N_SYM1(e) ((e)&0xff)
#define N_LEN1(e) (((e) >> 24) & 15)

/*
 * Fill the two-symbol table symbol by symbol: the entries whose low l1 bits
 * are symbol s1's code are s1 followed by whatever the remaining 12 - l1 bits
 * x decode to (tab1[x], read in order), when that code fits in them.
 */
static void build_pairs(const uint16_t *tab1, const uint16_t *sym, const uint8_t *slen,
			const uint16_t *srev, unsigned m, int wide, uint32_t *tab2)
{
	for (unsigned k = 0; k < m; k++) {
		unsigned s1 = sym[k], l1 = slen[k], r1 = srev[k];
		unsigned avail = MFS_HUFF_MAX_BITS - l1;
		uint32_t one, two_base;
		if (wide) {
			one = s1 | l1 << 10 | l1 << 26 | 1u << 30;
			two_base = s1 | l1 << 26 | 2u << 30;
		} else {
			one = s1 | l1 << 16 | l1 << 24 | 1u << 30;
			two_base = s1 | l1 << 24 | 2u << 30;
		}
		for (unsigned x = 0; x < 1u << avail; x++) {
			unsigned e2 = tab1[x], l2 = e2 & 15, s2 = e2 >> 4;
			uint32_t two = wide ? two_base | (l1 + l2) << 10 | s2 << 16
					    : two_base | s2 << 8 | (l1 + l2) << 16;
			tab2[r1 | x << l1] = l2 <= avail ? two : one;
		}
	}
}

static inline void store_pair16(uint16_t *o, uint32_t e)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint32_t v = e & 0x03ff03ffu;
	memcpy(o, &v, 4);
#else
	o[0] = (uint16_t)(e & 0x3ff);
	o[1] = (uint16_t)((e >> 16) & 0x3ff);
#endif
}

static inline void store_pair8(uint8_t *o, uint32_t e)
{
	o[0] = (uint8_t)e;
	o[1] = (uint8_t)(e >> 8);
}

/*
 * The fast loop's windows carry a sentinel bit at 63: after c bits are
 * shifted out it sits at 63 - c >= 15, above any index bits, so the bits a
 * stream consumed in one iteration are clz(window) and need no per-symbol
 * bookkeeping.  (A window only ever needs bits 0..59: 48 consumed + 12.)
 */
#define SENTINEL ((uint64_t)1 << 63)

#define DEC2(w, o, PFX, STORE)                                                           \
	do {                                                                             \
		uint32_t e_ = tab[(w)&TAB_MASK];                                         \
		STORE((o), e_);                                                          \
		(w) >>= PFX##_LEN(e_);                                                   \
		(o) += PFX##_CNT(e_);                                                    \
	} while (0)

/*
 * Decode the four streams into T-typed output; instantiated for uint8_t and
 * uint16_t.  The fast loop runs in rounds of r iterations for which every
 * stream's 8-byte loads stay inside the block (an iteration moves a stream
 * by at most 48 bits) and its two-symbol stores inside its segment (an
 * iteration writes at most 8 symbols).  Bits past a stream's end (the next
 * stream's) may be looked at there, which is harmless for a valid stream (a
 * code is decided by its own bits; the table repeats each entry for every
 * value of the bits past it) and caught for a corrupt one by the final
 * check on the bits each stream consumed.  The tail decodes one symbol per
 * lookup and checks each code against the stream's end.
 */
#define DEFINE_DECODE_STREAMS(NAME, T, PFX, STORE, ATTR)                                 \
	ATTR static int NAME(const uint32_t *tab, const uint8_t *base, size_t blk_len,   \
			     const size_t *soff, T *dst, size_t n)                       \
	{                                                                                \
		size_t seg = (n + MFS_HUFF_STREAMS - 1) / MFS_HUFF_STREAMS;              \
		T *oend[MFS_HUFF_STREAMS];                                               \
		for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++)                          \
			oend[k] = dst + seg * k + stream_count(n, k);                    \
		uint64_t pos0 = 8 * (uint64_t)soff[0], pos1 = 8 * (uint64_t)soff[1];     \
		uint64_t pos2 = 8 * (uint64_t)soff[2], pos3 = 8 * (uint64_t)soff[3];     \
		T *o0 = dst, *o1 = dst + seg, *o2 = dst + 2 * seg, *o3 = dst + 3 * seg;  \
		if (n >= MFS_HUFF_STREAMS * 16) {                                        \
			for (;;) {                                                       \
				size_t r = (size_t)(oend[0] - o0);                       \
				size_t t = (size_t)(oend[1] - o1);                       \
				r = t < r ? t : r;                                       \
				t = (size_t)(oend[2] - o2);                              \
				r = t < r ? t : r;                                       \
				t = (size_t)(oend[3] - o3);                              \
				r = (t < r ? t : r) / 8;                                 \
				uint64_t hi = pos0 > pos1 ? pos0 : pos1;                 \
				hi = hi > pos2 ? hi : pos2;                              \
				hi = hi > pos3 ? hi : pos3;                              \
				size_t room = blk_len - (size_t)(hi >> 3);               \
				t = room >= 8 + 6 ? (room - 8) / 6 : 0;                  \
				r = t < r ? t : r;                                       \
				if (r == 0)                                              \
					break;                                           \
				do {                                                     \
					uint64_t w0 = window(base, pos0) | SENTINEL;     \
					uint64_t w1 = window(base, pos1) | SENTINEL;     \
					uint64_t w2 = window(base, pos2) | SENTINEL;     \
					uint64_t w3 = window(base, pos3) | SENTINEL;     \
					DEC2(w0, o0, PFX, STORE);                        \
					DEC2(w1, o1, PFX, STORE);                        \
					DEC2(w2, o2, PFX, STORE);                        \
					DEC2(w3, o3, PFX, STORE);                        \
					DEC2(w0, o0, PFX, STORE);                        \
					DEC2(w1, o1, PFX, STORE);                        \
					DEC2(w2, o2, PFX, STORE);                        \
					DEC2(w3, o3, PFX, STORE);                        \
					DEC2(w0, o0, PFX, STORE);                        \
					DEC2(w1, o1, PFX, STORE);                        \
					DEC2(w2, o2, PFX, STORE);                        \
					DEC2(w3, o3, PFX, STORE);                        \
					DEC2(w0, o0, PFX, STORE);                        \
					DEC2(w1, o1, PFX, STORE);                        \
					DEC2(w2, o2, PFX, STORE);                        \
					DEC2(w3, o3, PFX, STORE);                        \
					pos0 += (uint64_t)__builtin_clzll(w0);           \
					pos1 += (uint64_t)__builtin_clzll(w1);           \
					pos2 += (uint64_t)__builtin_clzll(w2);           \
					pos3 += (uint64_t)__builtin_clzll(w3);           \
				} while (--r);                                           \
			}                                                                \
		}                                                                        \
		uint64_t pos[MFS_HUFF_STREAMS] = {pos0, pos1, pos2, pos3};               \
		T *cur[MFS_HUFF_STREAMS] = {o0, o1, o2, o3};                             \
		for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++) {                        \
			uint64_t p = pos[k], end = 8 * (uint64_t)soff[k + 1];            \
			for (T *o = cur[k]; o < oend[k]; o++) {                          \
				uint64_t w = window_tail(base, blk_len, p);              \
				uint32_t e = tab[w & TAB_MASK];                          \
				p += PFX##_LEN1(e);                                      \
				if (p > end)                                             \
					return MFS_E_CORRUPT;                            \
				*o = (T)PFX##_SYM1(e);                                   \
			}                                                                \
			/* the stream must end in its last byte: padding < 8 bits */     \
			if (p > end || p + 8 <= end)                                     \
				return MFS_E_CORRUPT;                                    \
		}                                                                        \
		return 0;                                                                \
	}

DEFINE_DECODE_STREAMS(decode_streams8, uint8_t, N, store_pair8, )
DEFINE_DECODE_STREAMS(decode_streams16, uint16_t, W, store_pair16, )

/*
 * x86-64 with BMI2: the same loops compiled for shrx (a variable shift that
 * does not tie up CL), chosen at run time; a few percent faster here.
 * -DMFS_HUFF_NO_BMI2 builds the portable loops only (to test them).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_HUFF_NO_BMI2)
#define MFS_HUFF_BMI2 1
#define BMI2_ATTR     __attribute__((target("bmi2")))
DEFINE_DECODE_STREAMS(decode_streams8_bmi2, uint8_t, N, store_pair8, BMI2_ATTR)
DEFINE_DECODE_STREAMS(decode_streams16_bmi2, uint16_t, W, store_pair16, BMI2_ATTR)
#endif

int mfs_huff_decode(const uint8_t *src, size_t src_len, unsigned nsym, void *dst,
		    int wide, size_t n)
{
	if (nsym < 2 || nsym > MFS_HUFF_MAX_SYMS || (!wide && nsym > 256))
		return MFS_E_CORRUPT;
	if (src_len < 4)
		return MFS_E_CORRUPT;
	unsigned lo = mfs_le_get16(src), cnt = mfs_le_get16(src + 2);
	if (cnt < 2 || lo + cnt > nsym)
		return MFS_E_CORRUPT;
	size_t hs = header_size(cnt);
	if (src_len < hs)
		return MFS_E_CORRUPT;

	/* lengths: in range, at least two, Kraft sum exactly 1 */
	uint8_t len[MFS_HUFF_MAX_SYMS];
	unsigned count[MFS_HUFF_MAX_BITS + 1] = {0};
	const uint8_t *q = src + 4;
	unsigned max_len = 0, present = 0;
	for (unsigned i = 0; i < cnt; i++) {
		unsigned l = (q[i / 2] >> (4 * (i & 1))) & 15;
		if (l > MFS_HUFF_MAX_BITS)
			return MFS_E_CORRUPT;
		len[i] = (uint8_t)l;
		count[l]++;
		if (l) {
			present++;
			if (l > max_len)
				max_len = l;
		}
	}
	if (present < 2)
		return MFS_E_CORRUPT;
	uint32_t kraft = 0;
	for (unsigned l = 1; l <= max_len; l++)
		kraft += count[l] << (max_len - l);
	if (kraft != 1u << max_len)
		return MFS_E_CORRUPT;

	/* table: TAB_SIZE entries of symbol << 4 | len; a code of length l
	 * fills every entry whose low l bits are its (reversed) code */
	uint16_t tab[TAB_SIZE];
	unsigned next[MFS_HUFF_MAX_BITS + 2] = {0};
	count[0] = 0;
	unsigned c = 0;
	for (unsigned l = 1; l <= max_len; l++) {
		c = (c + count[l - 1]) << 1;
		next[l] = c;
	}
	uint16_t sym[MFS_HUFF_MAX_SYMS], srev[MFS_HUFF_MAX_SYMS];
	uint8_t slen[MFS_HUFF_MAX_SYMS];
	unsigned m = 0;
	for (unsigned i = 0; i < cnt; i++) {
		unsigned l = len[i];
		if (!l)
			continue;
		unsigned r = bit_reverse(next[l]++, l);
		uint16_t e = (uint16_t)((lo + i) << 4 | l);
		for (unsigned j = r; j < TAB_SIZE; j += 1u << l)
			tab[j] = e;
		sym[m] = (uint16_t)(lo + i);
		slen[m] = (uint8_t)l;
		srev[m] = (uint16_t)r;
		m++;
	}

	/* streams: offsets from the block start; soff[4] is the block end */
	size_t soff[MFS_HUFF_STREAMS + 1];
	const uint8_t *sz = q + (cnt + 1) / 2;
	size_t at = hs;
	for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++) {
		size_t l = k + 1 < MFS_HUFF_STREAMS ? mfs_le_get32(sz + 4 * k) : src_len - at;
		if (l > src_len - at)
			return MFS_E_CORRUPT;
		soff[k] = at;
		at += l;
	}
	soff[MFS_HUFF_STREAMS] = src_len;
	uint32_t pairs[TAB_SIZE];
	build_pairs(tab, sym, slen, srev, m, wide, pairs);
#ifdef MFS_HUFF_BMI2
	if (__builtin_cpu_supports("bmi2")) {
		if (wide)
			return decode_streams16_bmi2(pairs, src, src_len, soff, dst, n);
		return decode_streams8_bmi2(pairs, src, src_len, soff, dst, n);
	}
#endif
	if (wide)
		return decode_streams16(pairs, src, src_len, soff, dst, n);
	return decode_streams8(pairs, src, src_len, soff, dst, n);
}
