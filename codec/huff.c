/*
 * huff.c - canonical, length-limited Huffman coder with four interleaved
 * LSB-first bit streams per block (format in huff.h).
 *
 * Decoder: one table of 2^max_len uint16 entries (len << 12 | symbol) on the
 * stack; each stream keeps a 64-bit bit buffer refilled without branches
 * (an unaligned 8-byte load, then the pointer advances by whole bytes so the
 * buffer holds 56..63 valid bits), which is enough for four lookups of at
 * most 12 bits.  The fast loop runs while every stream can load 8 bytes
 * inside the block; the tail loads byte by byte and checks that each code
 * fits in the bits that remain.
 */
#include "huff.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(MFS_HUFF_MAX_BITS <= 12, "table entries keep the length in 4 bits");
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

static inline unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static unsigned bit_reverse(unsigned code, unsigned len)
{
	unsigned r = 0;
	for (unsigned i = 0; i < len; i++) {
		r = (r << 1) | (code & 1);
		code >>= 1;
	}
	return r;
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
	return header_size(t->hi - t->lo + 1) + (size_t)((bits + 7) / 8) + MFS_HUFF_STREAMS;
}

static uint64_t stream_bits(const mfs_huff_table *t, const void *syms, int wide, size_t from,
			    size_t count)
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
		total += (size_t)((stream_bits(t, syms, wide, seg * k, stream_count(n, k)) + 7) /
				  8);
	return total;
}

/* ---- encoder ---- */

static inline unsigned sym_at(const void *syms, int wide, size_t i)
{
	return wide ? ((const uint16_t *)syms)[i] : ((const uint8_t *)syms)[i];
}

/* Write one stream; @return bytes written or (size_t)-1 when out of room. */
static size_t encode_stream(const mfs_huff_table *t, const void *syms, int wide, size_t from,
			    size_t count, uint8_t *dst, uint8_t *end)
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
	put16(dst, t->lo);
	put16(dst + 2, cnt);
	uint8_t *q = dst + 4;
	memset(q, 0, (cnt + 1) / 2);
	for (unsigned i = 0; i < cnt; i++)
		q[i / 2] |= (uint8_t)(t->len[t->lo + i] << (4 * (i & 1)));
	uint8_t *sizes = q + (cnt + 1) / 2;
	uint8_t *p = dst + hs, *end = dst + dst_cap;
	size_t seg = (n + MFS_HUFF_STREAMS - 1) / MFS_HUFF_STREAMS;
	for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++) {
		size_t w = encode_stream(t, syms, wide, seg * k, stream_count(n, k), p, end);
		if (w == (size_t)-1)
			return MFS_E_NOSPACE;
		if (k + 1 < MFS_HUFF_STREAMS) {
			if (w > UINT32_MAX)
				return MFS_E_TOOBIG;
			put32(sizes + 4 * k, (uint32_t)w);
		}
		p += w;
	}
	*dst_len = (size_t)(p - dst);
	return 0;
}

/* ---- decoder ---- */

typedef struct bitreader {
	const uint8_t *p; /* next byte not yet in buf */
	uint64_t buf;     /* valid bits at the bottom */
	unsigned cnt;     /* number of valid bits */
} bitreader;

/* Needs 8 readable bytes at b->p; leaves 56..63 valid bits. */
#define BR_REFILL(b)                                                                       \
	do {                                                                               \
		(b).buf |= load64le((b).p) << (b).cnt;                                     \
		(b).p += (63 - (b).cnt) >> 3;                                              \
		(b).cnt |= 56;                                                             \
	} while (0)

/* 8 bytes loadable at p inside the block (p never passes blk_end) */
#define ROOM8(p) ((size_t)(blk_end - (p)) >= 8)

#define BR_DECODE(b, out)                                                                  \
	do {                                                                               \
		unsigned e_ = tab[(b).buf & mask];                                         \
		(b).buf >>= e_ >> 12;                                                      \
		(b).cnt -= e_ >> 12;                                                       \
		(out) = e_ & 0xfff;                                                        \
	} while (0)

/*
 * Decode streams into T-typed output.  Instantiated for uint8_t and uint16_t.
 * The fast loop needs 8 loadable bytes at each stream's pointer; bytes past
 * a stream's end (the next stream's) may enter its buffer, which is harmless
 * for a valid stream (a code is decided by its own bits; the table repeats
 * each entry for every value of the bits past it) and caught for a corrupt
 * one by the final check on the number of bits each stream consumed.
 */
#define DEFINE_DECODE_STREAMS(NAME, T)                                                     \
	static int NAME(const uint16_t *tab, unsigned mask, const uint8_t *const *start,   \
			const uint8_t *const *send, const uint8_t *blk_end, T *dst, size_t n) \
	{                                                                                  \
		size_t seg = (n + MFS_HUFF_STREAMS - 1) / MFS_HUFF_STREAMS;                \
		bitreader br[MFS_HUFF_STREAMS];                                            \
		T *out[MFS_HUFF_STREAMS];                                                  \
		size_t cnt[MFS_HUFF_STREAMS];                                              \
		for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++) {                          \
			br[k].p = start[k];                                                \
			br[k].buf = 0;                                                     \
			br[k].cnt = 0;                                                     \
			out[k] = dst + seg * k;                                            \
			cnt[k] = stream_count(n, k);                                       \
		}                                                                          \
		size_t i = 0;                                                              \
		bitreader b0 = br[0], b1 = br[1], b2 = br[2], b3 = br[3];                  \
		{                                                                          \
			T *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];          \
			size_t n3 = cnt[3];                                                \
			while (i + 4 <= n3 && ROOM8(b0.p) && ROOM8(b1.p) && ROOM8(b2.p) && \
			       ROOM8(b3.p)) {                                              \
				BR_REFILL(b0);                                             \
				BR_REFILL(b1);                                             \
				BR_REFILL(b2);                                             \
				BR_REFILL(b3);                                             \
				BR_DECODE(b0, o0[i]);                                      \
				BR_DECODE(b1, o1[i]);                                      \
				BR_DECODE(b2, o2[i]);                                      \
				BR_DECODE(b3, o3[i]);                                      \
				BR_DECODE(b0, o0[i + 1]);                                  \
				BR_DECODE(b1, o1[i + 1]);                                  \
				BR_DECODE(b2, o2[i + 1]);                                  \
				BR_DECODE(b3, o3[i + 1]);                                  \
				BR_DECODE(b0, o0[i + 2]);                                  \
				BR_DECODE(b1, o1[i + 2]);                                  \
				BR_DECODE(b2, o2[i + 2]);                                  \
				BR_DECODE(b3, o3[i + 2]);                                  \
				BR_DECODE(b0, o0[i + 3]);                                  \
				BR_DECODE(b1, o1[i + 3]);                                  \
				BR_DECODE(b2, o2[i + 3]);                                  \
				BR_DECODE(b3, o3[i + 3]);                                  \
				i += 4;                                                    \
			}                                                                  \
		}                                                                          \
		br[0] = b0;                                                                \
		br[1] = b1;                                                                \
		br[2] = b2;                                                                \
		br[3] = b3;                                                                \
		for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++) {                          \
			bitreader b = br[k];                                               \
			T *o = out[k];                                                     \
			size_t j = i < cnt[k] ? i : cnt[k];                                \
			while (j + 4 <= cnt[k] && ROOM8(b.p)) {                            \
				BR_REFILL(b);                                              \
				BR_DECODE(b, o[j]);                                        \
				BR_DECODE(b, o[j + 1]);                                    \
				BR_DECODE(b, o[j + 2]);                                    \
				BR_DECODE(b, o[j + 3]);                                    \
				j += 4;                                                    \
			}                                                                  \
			for (; j < cnt[k]; j++) {                                          \
				while (b.cnt <= 56 && b.p < send[k]) {                     \
					b.buf |= (uint64_t)*b.p++ << b.cnt;                \
					b.cnt += 8;                                        \
				}                                                          \
				unsigned e = tab[b.buf & mask];                            \
				if ((e >> 12) > b.cnt)                                     \
					return MFS_E_CORRUPT;                              \
				b.buf >>= e >> 12;                                         \
				b.cnt -= e >> 12;                                          \
				o[j] = (T)(e & 0xfff);                                     \
			}                                                                  \
			/* the stream must end in its last byte, padding < 8 bits */       \
			uint64_t len = (uint64_t)(send[k] - start[k]);                     \
			uint64_t used = 8 * (uint64_t)(b.p - start[k]) - b.cnt;            \
			if (used > 8 * len || used + 8 <= 8 * len)                         \
				return MFS_E_CORRUPT;                                      \
		}                                                                          \
		return 0;                                                                  \
	}

DEFINE_DECODE_STREAMS(decode_streams8, uint8_t)
DEFINE_DECODE_STREAMS(decode_streams16, uint16_t)

int mfs_huff_decode(const uint8_t *src, size_t src_len, unsigned nsym, void *dst, int wide,
		    size_t n)
{
	if (nsym < 2 || nsym > MFS_HUFF_MAX_SYMS || (!wide && nsym > 256))
		return MFS_E_CORRUPT;
	if (src_len < 4)
		return MFS_E_CORRUPT;
	unsigned lo = get16(src), cnt = get16(src + 2);
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

	/* table: 2^max_len entries of len << 12 | symbol */
	uint16_t tab[1u << MFS_HUFF_MAX_BITS];
	unsigned next[MFS_HUFF_MAX_BITS + 2] = {0};
	count[0] = 0;
	unsigned c = 0;
	for (unsigned l = 1; l <= max_len; l++) {
		c = (c + count[l - 1]) << 1;
		next[l] = c;
	}
	unsigned size = 1u << max_len;
	for (unsigned i = 0; i < cnt; i++) {
		unsigned l = len[i];
		if (!l)
			continue;
		unsigned r = bit_reverse(next[l]++, l);
		uint16_t e = (uint16_t)(l << 12 | (lo + i));
		for (unsigned j = r; j < size; j += 1u << l)
			tab[j] = e;
	}

	/* streams */
	const uint8_t *start[MFS_HUFF_STREAMS], *send[MFS_HUFF_STREAMS];
	const uint8_t *sz = q + (cnt + 1) / 2;
	const uint8_t *p = src + hs, *end = src + src_len;
	for (unsigned k = 0; k < MFS_HUFF_STREAMS; k++) {
		size_t l = k + 1 < MFS_HUFF_STREAMS ? get32(sz + 4 * k) : (size_t)(end - p);
		if (l > (size_t)(end - p))
			return MFS_E_CORRUPT;
		start[k] = p;
		send[k] = p + l;
		p += l;
	}
	if (wide)
		return decode_streams16(tab, size - 1, start, send, end, dst, n);
	return decode_streams8(tab, size - 1, start, send, end, dst, n);
}
