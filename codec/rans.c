/*
 * rans.c - the rans codec (rans.h has the payload; rans_kernel.h the coder).
 *
 * Encoder: split the chunk into planes (planes.c), then per plane CONST,
 * RANS or RAW.  A RANS plane is coded group by group, each group's steps
 * backwards and its lanes in reverse order, pushing words onto a stack, so
 * that the decoder reads them forwards in step and lane order.
 *
 * Decoder: the 32 lanes of a group are decoded side by side, one step (32
 * symbols) at a time; their states are independent, so the table lookups
 * and multiplies of a step overlap, and the one dependency between lanes,
 * the read pointer, is an add.  Steps run unchecked while the stream holds
 * a word for every lane of every step of the run; the rest are checked word
 * by word.  Then the planes are merged as bitplane-huff merges them.
 */
#include "rans.h"

#include "codec_internal.h"
#include "le.h"
#include "planes.h"
#include "rans_kernel.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rans.c assumes a little-endian host (the plane merges do)"
#endif

_Static_assert(MFS_RANS_PROB_MAX <= 16, "one word per symbol at most");
_Static_assert(
    MFS_RANS_PROB_MAX <= 11 && MFS_RANS_SYM_BITS_MAX <= 10,
    "a table entry packs f, slot - c (11 bits each) and the symbol (10) in 32 bits");
_Static_assert(MFS_RANS_PLANES_MAX == MFS_PLANES_MAX, "same layouts as planes.h");
_Static_assert(MFS_RANS_DESC == MFS_PLANE_DESC, "same plane descriptors as planes.h");
_Static_assert(MFS_RANS_MODE_RAW == MFS_PLANE_RAW &&
		   MFS_RANS_MODE_CONST == MFS_PLANE_CONST,
	       "RAW and CONST as planes.h codes them");
_Static_assert(MFS_RANS_MODE_RANS >= MFS_PLANE__COUNT,
	       "the rANS mode is none of planes.h's");

size_t mfs_rans_bound(size_t raw_len)
{
	/* planes are never larger than raw (+1 byte rounding each) */
	return raw_len + MFS_RANS_HEADER + MFS_RANS_PLANES_MAX * (MFS_RANS_DESC + 3) + 16;
}

/* ---- frequencies ---- */

int mfs_rans_normalize(const uint32_t *count, unsigned nsym, unsigned prob_bits,
		       uint16_t *freq)
{
	if (prob_bits < MFS_RANS_PROB_MIN || prob_bits > MFS_RANS_PROB_MAX)
		return MFS_E_INVAL;
	uint32_t m = 1u << prob_bits;
	uint64_t total = 0;
	unsigned present = 0;
	for (unsigned s = 0; s < nsym; s++) {
		total += count[s];
		present += count[s] != 0;
	}
	if (present < 2 || present > m)
		return MFS_E_INVAL;
	int64_t sum = 0;
	for (unsigned s = 0; s < nsym; s++) {
		if (!count[s]) {
			freq[s] = 0;
			continue;
		}
		uint64_t f = ((uint64_t)count[s] * m + total / 2) / total;
		if (f < 1)
			f = 1;
		if (f > m - 1)
			f = m - 1;
		freq[s] = (uint16_t)f;
		sum += (int64_t)f;
	}
	/*
	 * Correct the rounding one unit at a time where it costs least: a unit
	 * more for s saves count[s] * log2((f+1)/f) bits, a unit less costs
	 * count[s] * log2(f/(f-1)).  The sums differ from m by at most the
	 * number of symbols, so this stays cheap next to coding the plane.
	 */
	while (sum != m) {
		int up = sum < m;
		unsigned best = nsym;
		double best_v = 0;
		for (unsigned s = 0; s < nsym; s++) {
			unsigned f = freq[s];
			if (!f || (up ? f >= m - 1 : f <= 1))
				continue;
			/* log2((f+1)/f) ~ 1/(f ln 2): compare count/f (up) or
			 * count/(f-1) (down) exactly enough to rank */
			double v = up ? (double)count[s] * log2((f + 1.0) / f)
				      : (double)count[s] * log2(f / (f - 1.0));
			if (best == nsym || (up ? v > best_v : v < best_v)) {
				best = s;
				best_v = v;
			}
		}
		if (best == nsym)
			return MFS_E_INVAL; /* cannot happen with 2 <= present <= m */
		freq[best] = (uint16_t)(freq[best] + (up ? 1 : -1));
		sum += up ? 1 : -1;
	}
	return 0;
}

double mfs_rans_cost_bits(const uint32_t *count, const uint16_t *freq, unsigned nsym,
			  unsigned prob_bits)
{
	double bits = 0;
	for (unsigned s = 0; s < nsym; s++) {
		if (!count[s])
			continue;
		if (!freq[s])
			return -1;
		bits += (double)count[s] * (prob_bits - log2((double)freq[s]));
	}
	return bits;
}

/* ---- encoder ---- */

/* Per plane: counts, frequencies, cumulative frequencies. */
typedef struct enc_scratch {
	uint32_t count[1u << MFS_RANS_SYM_BITS_MAX];
	uint16_t freq[1u << MFS_RANS_SYM_BITS_MAX];
	uint16_t cum[1u << MFS_RANS_SYM_BITS_MAX];
} enc_scratch;

static unsigned get_sym(const void *syms, unsigned w, size_t j)
{
	return w > 8 ? ((const uint16_t *)syms)[j] : ((const uint8_t *)syms)[j];
}

/* Bytes the frequencies of symbols lo..lo+cnt-1 take as varints. */
static size_t varints_len(const uint16_t *freq, unsigned lo, unsigned cnt)
{
	size_t len = 0;
	for (unsigned i = 0; i < cnt; i++)
		len += freq[lo + i] < 128 ? 1 : 2;
	return len;
}

/* Lanes for a plane of n symbols: a lane gets MFS_RANS_MIN_STEPS symbols. */
static unsigned pick_lanes(size_t n, unsigned max_lanes)
{
	size_t groups = n / ((size_t)MFS_RANS_GROUP * MFS_RANS_MIN_STEPS);
	if (groups < 1)
		groups = 1;
	if (groups > max_lanes / MFS_RANS_GROUP)
		groups = max_lanes / MFS_RANS_GROUP;
	return (unsigned)groups * MFS_RANS_GROUP;
}

/*
 * Code a plane as RANS into @p dst when that fits in @p limit bytes.
 * @p words: n + 1 words of scratch.
 * @return 0 with *len (0 when it does not fit: the caller stores RAW)
 */
static int encode_rans_plane(const void *syms, unsigned w, size_t n,
			     const mfs_rans_opts *o, enc_scratch *sc, unsigned lo,
			     unsigned hi, uint16_t *words, uint8_t *dst, size_t limit,
			     size_t *len)
{
	unsigned P = o->prob_bits, lanes = pick_lanes(n, o->lanes);
	unsigned groups = lanes / MFS_RANS_GROUP, cnt = hi - lo + 1;
	*len = 0;
	int rc = mfs_rans_normalize(sc->count, 1u << w, P, sc->freq);
	if (rc < 0)
		return rc;
	size_t fixed = MFS_RANS_PLANE_HDR + varints_len(sc->freq, lo, cnt) +
		       4 * (size_t)groups + 4 * (size_t)lanes;
	double bits = mfs_rans_cost_bits(sc->count, sc->freq, 1u << w, P);
	if (bits < 0 || (double)fixed + bits / 8 > (double)limit)
		return 0;
	unsigned c = 0;
	for (unsigned s = 0; s < (1u << w); s++) {
		sc->cum[s] = (uint16_t)c;
		c += sc->freq[s];
	}
	uint8_t *q = dst;
	q[0] = (uint8_t)P;
	q[1] = 0;
	mfs_le_put16(q + 2, groups);
	mfs_le_put16(q + 4, lo);
	mfs_le_put16(q + 6, cnt);
	q += MFS_RANS_PLANE_HDR;
	for (unsigned i = 0; i < cnt; i++) {
		unsigned f = sc->freq[lo + i];
		if (f < 128) {
			*q++ = (uint8_t)f;
		} else {
			*q++ = (uint8_t)(0x80 | (f & 127));
			*q++ = (uint8_t)(f >> 7);
		}
	}
	uint8_t *lens = q, *states = q + 4 * groups;
	q = states + 4 * lanes;
	size_t steps = mfs_rans_steps(n, lanes);
	for (unsigned g = 0; g < groups; g++) {
		uint32_t x[MFS_RANS_GROUP];
		uint16_t *top = words + n + 1, *wp = top;
		for (unsigned k = 0; k < MFS_RANS_GROUP; k++)
			x[k] = MFS_RANS_L;
		for (size_t t = steps; t-- > 0;) {
			for (unsigned k = MFS_RANS_GROUP; k-- > 0;) {
				size_t j = mfs_rans_index(t, lanes, g, k);
				if (j >= n)
					continue;
				unsigned s = get_sym(syms, w, j);
				mfs_rans_enc_put(&x[k], sc->freq[s], sc->cum[s], P, &wp);
			}
		}
		size_t nw = (size_t)(top - wp);
		if ((size_t)(q - dst) + 2 * nw > limit)
			return 0;
		for (size_t i = 0; i < nw; i++)
			mfs_le_put16(q + 2 * i, wp[i]);
		q += 2 * nw;
		mfs_le_put32(lens + 4 * g, (uint32_t)(2 * nw));
		for (unsigned k = 0; k < MFS_RANS_GROUP; k++)
			mfs_le_put32(states + 4 * (g * MFS_RANS_GROUP + k), x[k]);
	}
	*len = (size_t)(q - dst);
	return 0;
}

/* One plane: CONST, RANS when it saves MFS_PLANE_MIN_GAIN of RAW, else RAW. */
static int encode_plane(const void *syms, unsigned w, size_t n, const mfs_rans_opts *o,
			enc_scratch *sc, uint16_t *words, uint8_t *dst, unsigned *mode,
			size_t *len)
{
	size_t raw = mfs_planes_raw_len(w, n);
	unsigned nsym = 1u << w;
	memset(sc->count, 0, nsym * sizeof sc->count[0]);
	if (w > 8) {
		const uint16_t *v = syms;
		for (size_t i = 0; i < n; i++)
			sc->count[v[i]]++;
	} else {
		const uint8_t *v = syms;
		for (size_t i = 0; i < n; i++)
			sc->count[v[i]]++;
	}
	unsigned lo = nsym, hi = 0, distinct = 0;
	for (unsigned s = 0; s < nsym; s++)
		if (sc->count[s]) {
			if (lo == nsym)
				lo = s;
			hi = s;
			distinct++;
		}
	if (distinct == 1 && raw > 2) {
		mfs_le_put16(dst, lo);
		*mode = MFS_RANS_MODE_CONST;
		*len = 2;
		return 0;
	}
	/* more symbols present than 2^prob_bits units (a 10-bit plane at
	 * prob_bits 9): no rANS table holds them, so the plane goes RAW */
	if (distinct >= 2 && distinct <= 1u << o->prob_bits) {
		size_t limit = (size_t)((1.0 - MFS_PLANE_MIN_GAIN) * (double)raw);
		int rc =
		    encode_rans_plane(syms, w, n, o, sc, lo, hi, words, dst, limit, len);
		if (rc < 0)
			return rc;
		if (*len) {
			*mode = MFS_RANS_MODE_RANS;
			return 0;
		}
	}
	mfs_planes_pack(syms, w, n, dst);
	*mode = MFS_RANS_MODE_RAW;
	*len = raw;
	return 0;
}

int mfs_rans_encode_opts(const mfs_encode_params *prm, const mfs_rans_opts *opts,
			 const void *src, size_t src_len, void *dst, size_t dst_cap,
			 size_t *dst_len, mfs_codec_ws *ws)
{
	mfs_rans_opts o = {MFS_RANS_DEFAULT_PROB_BITS, MFS_RANS_DEFAULT_LANES};
	if (opts && opts->prob_bits)
		o.prob_bits = opts->prob_bits;
	if (opts && opts->lanes)
		o.lanes = opts->lanes;
	if (o.prob_bits < MFS_RANS_PROB_MIN || o.prob_bits > MFS_RANS_PROB_MAX ||
	    o.lanes % MFS_RANS_GROUP || o.lanes > MFS_RANS_LANES_MAX)
		return MFS_E_INVAL;
	const mfs_planes_layout *L = mfs_planes_layout_bitplane(prm->dtype);
	if (!L || src_len % L->esize)
		return MFS_E_UNSUPPORTED;
	if (src_len > MFS_CHUNK_MAX)
		return MFS_E_TOOBIG;
	if (dst_cap < mfs_rans_bound(src_len))
		return MFS_E_NOSPACE;
	size_t n = src_len / L->esize;

	/* slot A: the plane scratch, the symbol planes, an aligned copy of an
	 * unaligned source; slot B: the word stack of one plane */
	void *sc, *planes[MFS_PLANES_MAX];
	int rc = mfs_planes_split_ws(L, src, n, sizeof(enc_scratch), ws, &sc, planes);
	if (rc < 0)
		return rc;
	uint16_t *words = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_B, 2 * (n + 1));
	if (!words)
		return -ENOMEM;

	uint8_t *out = dst;
	const uint8_t head[4] = {MFS_RANS_VERSION, (uint8_t)prm->dtype,
				 (uint8_t)L->nplanes, 0};
	mfs_planes_header_put(out, head, n);
	uint8_t *desc = out + MFS_RANS_HEADER, *q = desc + MFS_RANS_DESC * L->nplanes;
	for (unsigned p = 0; p < L->nplanes; p++) {
		unsigned mode;
		size_t len;
		rc = encode_plane(planes[p], L->width[p], n, &o, sc, words, q, &mode,
				  &len);
		if (rc < 0)
			return rc;
		mfs_planes_desc_put(desc, p, L->width[p], mode, len);
		q += len;
	}
	*dst_len = (size_t)(q - out);
	return 0;
}

static int rans_encode(const mfs_encode_params *p, const void *src, size_t src_len,
		       void *dst, size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws)
{
	return mfs_rans_encode_opts(p, NULL, src, src_len, dst, dst_cap, dst_len, ws);
}

/* ---- decoder ---- */

#if defined(__GNUC__)
#define RANS_INLINE inline __attribute__((always_inline))
#else
#define RANS_INLINE inline
#endif

/*
 * Where the unchecked run from step @p t ends: a step reads at most one
 * word per lane, so a run of as many steps as the stream from @p s to
 * @p e holds 64-byte blocks cannot leave it; at most @p full; @p t when
 * the stream holds no whole block.
 */
static RANS_INLINE size_t run_stop(size_t t, size_t full, const uint8_t *s,
				   const uint8_t *e)
{
	size_t safe = (size_t)(e - s) / (2 * MFS_RANS_GROUP);
	return full - t < safe ? full : t + safe;
}

/*
 * One group's symbols of a plane (out: the plane's symbols, uint8_t or
 * uint16_t by @p wide), steps from *t on, in unchecked runs (run_stop()).
 * Whether a lane takes a word is data (about one symbol in three or four
 * on weights), so the renormalisation is arithmetic, not a branch.
 */
static RANS_INLINE void decode_run_scalar(const uint32_t *tab, const unsigned P,
					  uint32_t *x, size_t lanes, const uint8_t **sp,
					  const uint8_t *e, size_t *t, size_t full,
					  size_t *op, void *out, const int wide)
{
	const uint32_t mask = (1u << P) - 1;
	const uint8_t *s = *sp;
	size_t o = *op;
	uint16_t *o16 = out;
	uint8_t *o8 = out;
	for (size_t stop; (stop = run_stop(*t, full, s, e)) > *t;) {
		for (; *t < stop; ++*t, o += lanes) {
			for (unsigned k = 0; k < MFS_RANS_GROUP; k++) {
				uint32_t v = x[k], en = tab[v & mask];
				if (wide)
					o16[o + k] = (uint16_t)(en >> 22);
				else
					o8[o + k] = (uint8_t)(en >> 22);
				v = (en & 0x7ff) * (v >> P) + ((en >> 11) & 0x7ff);
				uint32_t word = (uint32_t)s[0] | (uint32_t)s[1] << 8;
				uint32_t need = v < MFS_RANS_L;
				x[k] = v << (need << 4) | (word & (0u - need));
				s += 2 * need;
			}
		}
	}
	*sp = s;
	*op = o;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
#define RANS_AVX2 1
#include <immintrin.h>

/*
 * expand[m][i]: for a lane mask m of 8 lanes, the rank of lane i among the
 * lanes of m (its word's index in the next 8 words of the stream).
 */
#define RK(m, i) (unsigned)__builtin_popcount((m) & ((1u << (i)) - 1))
#define RKROW(m)                                                                         \
	{                                                                                \
		RK(m, 0), RK(m, 1), RK(m, 2), RK(m, 3), RK(m, 4), RK(m, 5), RK(m, 6),    \
		    RK(m, 7)                                                             \
	}
#define RK4(m)	RKROW(m), RKROW(m + 1), RKROW(m + 2), RKROW(m + 3)
#define RK16(m) RK4(m), RK4(m + 4), RK4(m + 8), RK4(m + 12)
#define RK64(m) RK16(m), RK16(m + 16), RK16(m + 32), RK16(m + 48)
static const uint32_t rank_lut[256][8]
    __attribute__((aligned(32))) = {RK64(0), RK64(64), RK64(128), RK64(192)};

/* 8 lanes: decode, renormalise from the words at *s; the symbols (u32). */
__attribute__((target("avx2,popcnt"))) static inline __m256i
dec8(__m256i *x, const uint32_t *tab, __m128i pshift, __m256i mask, const uint8_t **s)
{
	const __m256i m11 = _mm256_set1_epi32(0x7ff), zero = _mm256_setzero_si256();
	__m256i e =
	    _mm256_i32gather_epi32((const int *)tab, _mm256_and_si256(*x, mask), 4);
	__m256i f = _mm256_and_si256(e, m11);
	__m256i b = _mm256_and_si256(_mm256_srli_epi32(e, 11), m11);
	__m256i v =
	    _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srl_epi32(*x, pshift)), b);
	__m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(v, 16), zero);
	unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
	__m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)*s));
	__m256i idx = _mm256_load_si256((const __m256i *)rank_lut[m]);
	__m256i w = _mm256_permutevar8x32_epi32(words, idx);
	*x = _mm256_blendv_epi8(v, _mm256_or_si256(_mm256_slli_epi32(v, 16), w), need);
	*s += 2 * (unsigned)__builtin_popcount(m);
	return _mm256_srli_epi32(e, 22);
}

/* The unchecked runs of decode_run_scalar, a group's 32 lanes as 4 x 8. */
__attribute__((target("avx2,popcnt"))) static void
decode_run_avx2(const uint32_t *tab, unsigned P, uint32_t *x, size_t lanes,
		const uint8_t **sp, const uint8_t *e, size_t *t, size_t full, size_t *op,
		void *out, int wide)
{
	const uint8_t *s = *sp;
	size_t o = *op;
	const __m256i mask = _mm256_set1_epi32((int)((1u << P) - 1));
	const __m128i pshift = _mm_cvtsi32_si128((int)P);
	__m256i x0 = _mm256_loadu_si256((const __m256i *)x),
		x1 = _mm256_loadu_si256((const __m256i *)(x + 8)),
		x2 = _mm256_loadu_si256((const __m256i *)(x + 16)),
		x3 = _mm256_loadu_si256((const __m256i *)(x + 24));
	for (size_t stop; (stop = run_stop(*t, full, s, e)) > *t;) {
		for (; *t < stop; ++*t, o += lanes) {
			/* the 8-word loads stay inside the step's 64 bytes */
			__m256i s0 = dec8(&x0, tab, pshift, mask, &s);
			__m256i s1 = dec8(&x1, tab, pshift, mask, &s);
			__m256i s2 = dec8(&x2, tab, pshift, mask, &s);
			__m256i s3 = dec8(&x3, tab, pshift, mask, &s);
			__m256i p01 =
			    _mm256_permute4x64_epi64(_mm256_packus_epi32(s0, s1), 0xd8);
			__m256i p23 =
			    _mm256_permute4x64_epi64(_mm256_packus_epi32(s2, s3), 0xd8);
			if (wide) {
				uint16_t *o16 = (uint16_t *)out + o;
				_mm256_storeu_si256((__m256i *)o16, p01);
				_mm256_storeu_si256((__m256i *)(o16 + 16), p23);
			} else {
				__m256i b = _mm256_permute4x64_epi64(
				    _mm256_packus_epi16(p01, p23), 0xd8);
				_mm256_storeu_si256((__m256i *)((uint8_t *)out + o), b);
			}
		}
	}
	_mm256_storeu_si256((__m256i *)x, x0);
	_mm256_storeu_si256((__m256i *)(x + 8), x1);
	_mm256_storeu_si256((__m256i *)(x + 16), x2);
	_mm256_storeu_si256((__m256i *)(x + 24), x3);
	*sp = s;
	*op = o;
}
#endif

/*
 * A group of a plane: the unchecked runs (vector or scalar), then the
 * rest, the last (partial) step included, word by word.
 * @return 0, or -1 for a stream that runs short, has words left over or
 *         leaves a lane in another state than 2^16
 */
static RANS_INLINE int decode_group_body(const uint32_t *tab, const unsigned P,
					 const mfs_rans_plane *pl, unsigned g,
					 const uint8_t *s, const uint8_t *e, size_t n,
					 void *out, const int wide, const int simd)
{
	uint32_t x[MFS_RANS_GROUP];
	const size_t lanes = pl->lanes, full = n / lanes, rem = n % lanes;
	const size_t g0 = (size_t)g * MFS_RANS_GROUP;
	for (unsigned k = 0; k < MFS_RANS_GROUP; k++)
		x[k] = mfs_rans_get32(pl->states + 4 * (g0 + k));
	size_t o = g0, t = 0; /* o: output index of the step's lane 0 */
#ifdef RANS_AVX2
	if (simd)
		decode_run_avx2(tab, P, x, lanes, &s, e, &t, full, &o, out, wide);
#else
	(void)simd;
#endif
	decode_run_scalar(tab, P, x, lanes, &s, e, &t, full, &o, out, wide);
	size_t last = full + (rem > g0);
	for (; t < last; t++, o += lanes) {
		unsigned kmax = MFS_RANS_GROUP;
		if (t == full && rem - g0 < MFS_RANS_GROUP)
			kmax = (unsigned)(rem - g0);
		for (unsigned k = 0; k < kmax; k++) {
			unsigned sym;
			uint32_t v = mfs_rans_dec(x[k], tab, P, &sym);
			if (wide)
				((uint16_t *)out)[o + k] = (uint16_t)sym;
			else
				((uint8_t *)out)[o + k] = (uint8_t)sym;
			if (v < MFS_RANS_L) {
				if (e - s < 2)
					return -1;
				v = v << 16 | mfs_rans_get16(s);
				s += 2;
			}
			x[k] = v;
		}
	}
	uint32_t bad = s != e;
	for (unsigned k = 0; k < MFS_RANS_GROUP; k++)
		bad |= x[k] ^ MFS_RANS_L;
	return bad ? -1 : 0;
}

/* Instances: the default precision as a constant (immediate shifts and
 * masks) for the scalar loop, any precision as a variable, and the vector
 * loop (its shift is a register either way). */
typedef int (*decode_group_fn)(const uint32_t *, unsigned, const mfs_rans_plane *,
			       unsigned, const uint8_t *, const uint8_t *, size_t,
			       void *);
#define DEFINE_DECODE_GROUP(NAME, PBITS, WIDE, SIMD)                                     \
	static int NAME(const uint32_t *tab, unsigned P, const mfs_rans_plane *pl,       \
			unsigned g, const uint8_t *s, const uint8_t *e, size_t n,        \
			void *out)                                                       \
	{                                                                                \
		(void)P;                                                                 \
		return decode_group_body(tab, PBITS, pl, g, s, e, n, out, WIDE, SIMD);   \
	}
DEFINE_DECODE_GROUP(decode_group8_dflt, MFS_RANS_DEFAULT_PROB_BITS, 0, 0)
DEFINE_DECODE_GROUP(decode_group16_dflt, MFS_RANS_DEFAULT_PROB_BITS, 1, 0)
DEFINE_DECODE_GROUP(decode_group8_any, P, 0, 0)
DEFINE_DECODE_GROUP(decode_group16_any, P, 1, 0)
#ifdef RANS_AVX2
DEFINE_DECODE_GROUP(decode_group8_avx2, P, 0, 1)
DEFINE_DECODE_GROUP(decode_group16_avx2, P, 1, 1)
#endif

/* A RANS plane of n symbols of width w into @p out. */
static int decode_rans_plane(unsigned w, size_t n, const uint8_t *data, size_t len,
			     void *out)
{
	mfs_rans_plane pl;
	uint32_t tab[MFS_RANS_SLOTS_MAX] __attribute__((aligned(64)));
	uint16_t freq[1u << MFS_RANS_SYM_BITS_MAX];
	if (mfs_rans_plane_parse(data, len, w, &pl) < 0 ||
	    mfs_rans_freqs_read(&pl, data + len, freq) < 0)
		return MFS_E_CORRUPT;
	unsigned c = 0;
	for (unsigned i = 0; i < pl.cnt; i++) {
		mfs_rans_table_fill(tab, c, freq[i], pl.lo + i);
		c += freq[i];
	}
	int dflt = pl.prob_bits == MFS_RANS_DEFAULT_PROB_BITS;
	decode_group_fn fn = w > 8 ? (dflt ? decode_group16_dflt : decode_group16_any)
				   : (dflt ? decode_group8_dflt : decode_group8_any);
#ifdef RANS_AVX2
	if (__builtin_cpu_supports("avx2"))
		fn = w > 8 ? decode_group16_avx2 : decode_group8_avx2;
#endif
	const uint8_t *s = pl.streams;
	for (unsigned g = 0; g < pl.groups; g++) {
		size_t gl = mfs_rans_get32(pl.lens + 4 * g);
		if (fn(tab, pl.prob_bits, &pl, g, s, s + gl, n, out) < 0)
			return MFS_E_CORRUPT;
		s += gl;
	}
	return 0;
}

/* The modes a rans payload's planes may be in. */
#define RANS_MODES                                                                       \
	(MFS_PLANE_MODE_BIT(MFS_RANS_MODE_RAW) |                                         \
	 MFS_PLANE_MODE_BIT(MFS_RANS_MODE_CONST) |                                       \
	 MFS_PLANE_MODE_BIT(MFS_RANS_MODE_RANS))

static int rans_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	const uint8_t *src = rq->src;
	if (rq->src_len < MFS_RANS_HEADER || src[0] != MFS_RANS_VERSION || src[3] != 0)
		return MFS_E_CORRUPT;
	const mfs_planes_layout *L = mfs_planes_layout_bitplane(src[1]);
	if (!L || src[2] != L->nplanes)
		return MFS_E_CORRUPT;
	mfs_planes_payload pp;
	int rc = mfs_planes_payload_parse(L, src, rq->src_len, rq->dst_len, RANS_MODES,
					  ws, &pp);
	if (rc < 0)
		return rc;
	/* the RANS planes here, the rest (RAW, CONST) as bitplane-huff's */
	const void *planes[MFS_PLANES_MAX] = {0};
	for (unsigned p = 0; p < L->nplanes; p++) {
		if (pp.mode[p] != MFS_RANS_MODE_RANS)
			continue;
		rc = decode_rans_plane(L->width[p], pp.n, pp.data[p], pp.len[p],
				       pp.buf[p]);
		if (rc < 0)
			return rc;
		planes[p] = pp.buf[p];
	}
	return mfs_planes_payload_merge(L, &pp, planes, NULL, rq->dst, ws);
}

static size_t rans_bound(size_t raw_len)
{
	return mfs_rans_bound(raw_len);
}

const mfs_codec mfs_codec_rans = {
    .id = MFS_CODEC_RANS,
    .name = "rans",
    .flags = 0,
    .bound = rans_bound,
    .encode = rans_encode,
    .decode = rans_decode,
};
