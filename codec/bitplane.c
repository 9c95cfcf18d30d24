/*
 * bitplane.c - the bitplane-huff codec (id MFS_CODEC_BITPLANE_HUFF) for
 * float tensors: regroup each element's bits into symbol planes, the
 * exponent at the top of the first plane, then code each plane as Huffman,
 * raw (bit-packed) or a constant, whichever is smallest (Huffman only when
 * it saves at least MFS_BP_MIN_GAIN of the plane, since it costs decode
 * time).  docs/codecs.md has the byte layout and the measurements behind
 * the plane split.
 *
 * Element -> planes: the element (little-endian, esize bytes) is rotated
 * left by one bit so the sign goes to the bottom and the exponent becomes
 * the top bits; the rotated value is cut, top bits first, into planes of
 * the widths below.  For BF16 and FP32 the first plane is the 8-bit exponent
 * plus the two top mantissa bits: within one binade the top mantissa bits of
 * normally distributed weights are skewed towards small values, and a joint
 * symbol captures that (measured on all-MiniLM-L6-v2: 66.0% vs 66.4% of raw
 * for BF16 with a plain exponent plane).  The rest are near-uniform
 * mantissa bits, stored raw unless Huffman pays.
 *
 * Payload (little-endian):
 *   u8 version (1), u8 dtype (mfs_dtype), u8 nplanes, u8 0, u32 n (elements)
 *   nplanes x { u8 width, u8 mode, u32 len }
 *   plane data, in plane order, each len bytes:
 *     RAW   (0): n symbols of width bits in ceil(n*w/8) bytes: 8-bit symbols
 *                as bytes, 6-bit ones in blocks of 256 (see pack_bits),
 *                others packed LSB-first
 *     CONST (1): u16 symbol, all n symbols equal it
 *     HUFF  (2): a huff.h block of n symbols
 * n must equal dst_len / esize (so a wrong length is caught even when every
 * plane is a constant); widths must match the dtype's layout.  The decoder
 * needs nothing but the payload and dst_len.
 */
#include "codec_internal.h"
#include "huff.h"

#include <errno.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bitplane.c assumes a little-endian host"
#endif

#define BP_VERSION    1
#define BP_MAX_PLANES 8
#define BP_HEADER     8
#define BP_PLANE_DESC 6
/* Huffman must save this fraction of a plane's raw size to be chosen. */
#define MFS_BP_MIN_GAIN 0.01

enum { BP_RAW = 0, BP_CONST = 1, BP_HUFF = 2 };

typedef struct bp_layout {
	unsigned esize; /* bytes per element */
	unsigned rot;	/* left rotation applied before cutting */
	unsigned nplanes;
	unsigned width[BP_MAX_PLANES]; /* top bits first; sums to 8 * esize */
} bp_layout;

static const bp_layout layout_bf16 = {2, 1, 2, {10, 6}};
static const bp_layout layout_f16 = {2, 1, 2, {8, 8}};
static const bp_layout layout_f32 = {4, 1, 4, {10, 6, 8, 8}};
static const bp_layout layout_f64 = {8, 1, 8, {10, 6, 8, 8, 8, 8, 8, 8}};
static const bp_layout layout_f8 = {1, 0, 1, {8}};

static const bp_layout *layout_for(unsigned dt)
{
	switch (dt) {
	case MFS_DT_BF16:
		return &layout_bf16;
	case MFS_DT_F16:
		return &layout_f16;
	case MFS_DT_F32:
		return &layout_f32;
	case MFS_DT_F64:
		return &layout_f64;
	case MFS_DT_F8_E4M3:
	case MFS_DT_F8_E5M2:
	case MFS_DT_F8_E8M0:
		return &layout_f8;
	default:
		return NULL;
	}
}

static inline uint64_t rotl(uint64_t v, unsigned r, unsigned bits)
{
	uint64_t mask = bits == 64 ? ~(uint64_t)0 : (((uint64_t)1 << bits) - 1);
	if (!r)
		return v;
	return ((v << r) | (v >> (bits - r))) & mask;
}

static inline uint64_t rotr(uint64_t v, unsigned r, unsigned bits)
{
	return r ? rotl(v, bits - r, bits) : v;
}

static inline uint64_t load_elem(const uint8_t *p, unsigned esize)
{
	uint64_t v = 0;
	memcpy(&v, p, esize);
	return v;
}

/* Bytes of symbol storage for one plane of n symbols. */
static inline size_t plane_sym_bytes(unsigned w, size_t n)
{
	return w > 8 ? 2 * n : n;
}

static size_t raw_plane_len(unsigned w, size_t n)
{
	return (size_t)(((uint64_t)n * w + 7) / 8);
}

static size_t bp_bound(size_t raw_len)
{
	/* planes are never larger than raw (+1 byte rounding each) */
	return raw_len + BP_HEADER + BP_MAX_PLANES * (BP_PLANE_DESC + 1) + 16;
}

/* ---- bit packing for RAW planes ---- */

/*
 * RAW planes of 6-bit symbols (the low mantissa bits of BF16 and FP32) are
 * laid out so that both directions vectorize: each block of 256 symbols is
 * 192 bytes; byte j holds symbol j in its low 6 bits, and symbol 192 + k is
 * spread over the top 2 bits of bytes k, 64 + k and 128 + k.  The symbols
 * after the last whole block are packed LSB-first.  Other widths are packed
 * LSB-first throughout (8-bit planes are plain bytes).
 */
#define BP6_BLOCK 256
#define BP6_M	  64

static void pack_lsb(const void *syms, unsigned w, size_t n, uint8_t *dst)
{
	uint64_t acc = 0;
	unsigned nb = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned s =
		    w > 8 ? ((const uint16_t *)syms)[i] : ((const uint8_t *)syms)[i];
		acc |= (uint64_t)s << nb;
		nb += w;
		while (nb >= 8) {
			*dst++ = (uint8_t)acc;
			acc >>= 8;
			nb -= 8;
		}
	}
	if (nb)
		*dst = (uint8_t)acc;
}

static void unpack_lsb(const uint8_t *src, unsigned w, size_t n, void *syms)
{
	uint64_t acc = 0;
	unsigned nb = 0;
	uint64_t mask = ((uint64_t)1 << w) - 1;
	for (size_t i = 0; i < n; i++) {
		while (nb < w) {
			acc |= (uint64_t)*src++ << nb;
			nb += 8;
		}
		if (w > 8)
			((uint16_t *)syms)[i] = (uint16_t)(acc & mask);
		else
			((uint8_t *)syms)[i] = (uint8_t)(acc & mask);
		acc >>= w;
		nb -= w;
	}
}

static void pack_bits(const void *syms, unsigned w, size_t n, uint8_t *dst)
{
	if (w == 8) {
		memcpy(dst, syms, n);
		return;
	}
	size_t i = 0;
	if (w == 6) {
		const uint8_t *s = syms;
		for (; i + BP6_BLOCK <= n; i += BP6_BLOCK, dst += 3 * BP6_M) {
			for (unsigned j = 0; j < 3 * BP6_M; j++)
				dst[j] = s[i + j];
			for (unsigned k = 0; k < BP6_M; k++) {
				unsigned t = s[i + 3 * BP6_M + k];
				dst[k] |= (uint8_t)(t << 6);
				dst[BP6_M + k] |= (uint8_t)((t >> 2) << 6);
				dst[2 * BP6_M + k] |= (uint8_t)((t >> 4) << 6);
			}
		}
		pack_lsb(s + i, w, n - i, dst);
		return;
	}
	pack_lsb(syms, w, n, dst);
}

static void unpack_bits(const uint8_t *src, unsigned w, size_t n, void *syms)
{
	size_t i = 0;
	if (w == 6) {
		uint8_t *o = syms;
		for (; i + BP6_BLOCK <= n; i += BP6_BLOCK, src += 3 * BP6_M) {
			for (unsigned j = 0; j < 3 * BP6_M; j++)
				o[i + j] = src[j] & 63;
			for (unsigned k = 0; k < BP6_M; k++)
				o[i + 3 * BP6_M + k] =
				    (uint8_t)((src[k] >> 6) | (src[BP6_M + k] >> 6) << 2 |
					      (src[2 * BP6_M + k] >> 6) << 4);
		}
		unpack_lsb(src, w, n - i, o + i);
		return;
	}
	unpack_lsb(src, w, n, syms);
}

/* ---- split (encoder) and merge (decoder) ---- */

/* Histogram with interleaved sub-counts (repeated symbols do not serialise). */
static void histogram(const void *syms, int wide, size_t n, uint32_t *freq, unsigned nsym,
		      uint32_t (*sub)[MFS_HUFF_MAX_SYMS])
{
	memset(sub, 0, 4 * sizeof sub[0]);
	size_t i = 0;
	if (wide) {
		const uint16_t *v = syms;
		for (; i + 4 <= n; i += 4) {
			sub[0][v[i]]++;
			sub[1][v[i + 1]]++;
			sub[2][v[i + 2]]++;
			sub[3][v[i + 3]]++;
		}
		for (; i < n; i++)
			sub[0][v[i]]++;
	} else {
		const uint8_t *v = syms;
		for (; i + 4 <= n; i += 4) {
			sub[0][v[i]]++;
			sub[1][v[i + 1]]++;
			sub[2][v[i + 2]]++;
			sub[3][v[i + 3]]++;
		}
		for (; i < n; i++)
			sub[0][v[i]]++;
	}
	for (unsigned k = 0; k < nsym; k++)
		freq[k] = sub[0][k] + sub[1][k] + sub[2][k] + sub[3][k];
}

/* Cut elements into symbol planes (the common layouts get loops that vectorize). */
static void split(const bp_layout *L, const uint8_t *src, size_t n, void **planes)
{
	unsigned bits = 8 * L->esize;
	if (L->esize == 2 && L->nplanes == 2) {
		const uint16_t *v =
		    (const void *)src; /* src alignment checked by caller */
		unsigned w1 = L->width[1];
		uint16_t m1 = (uint16_t)((1u << w1) - 1);
		if (L->width[0] > 8) {
			uint16_t *p0 = planes[0];
			uint8_t *p1 = planes[1];
			for (size_t i = 0; i < n; i++) {
				uint16_t r = (uint16_t)(v[i] << 1 | v[i] >> 15);
				p0[i] = (uint16_t)(r >> w1);
				p1[i] = (uint8_t)(r & m1);
			}
		} else {
			uint8_t *p0 = planes[0], *p1 = planes[1];
			for (size_t i = 0; i < n; i++) {
				uint16_t r = (uint16_t)(v[i] << 1 | v[i] >> 15);
				p0[i] = (uint8_t)(r >> w1);
				p1[i] = (uint8_t)(r & m1);
			}
		}
		return;
	}
	if (L->esize == 4 && L->nplanes == 4 && L->width[0] == 10) {
		const uint32_t *v = (const void *)src;
		uint16_t *p0 = planes[0];
		uint8_t *p1 = planes[1], *p2 = planes[2], *p3 = planes[3];
		for (size_t i = 0; i < n; i++) {
			uint32_t r = v[i] << 1 | v[i] >> 31;
			p0[i] = (uint16_t)(r >> 22);
			p1[i] = (uint8_t)((r >> 16) & 63);
			p2[i] = (uint8_t)(r >> 8);
			p3[i] = (uint8_t)r;
		}
		return;
	}
	unsigned shift[BP_MAX_PLANES];
	unsigned at = bits;
	for (unsigned p = 0; p < L->nplanes; p++) {
		at -= L->width[p];
		shift[p] = at;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t r = rotl(load_elem(src + L->esize * i, L->esize), L->rot, bits);
		for (unsigned p = 0; p < L->nplanes; p++) {
			unsigned s =
			    (unsigned)(r >> shift[p]) & ((1u << L->width[p]) - 1);
			if (L->width[p] > 8)
				((uint16_t *)planes[p])[i] = (uint16_t)s;
			else
				((uint8_t *)planes[p])[i] = (uint8_t)s;
		}
	}
}

/*
 * BF16 with a RAW 6-bit plane: merge straight from the packed blocks, which
 * saves writing and re-reading an unpacked plane.  dst must be aligned.
 * Instantiated twice: the portable build (SSE2 on x86-64) and, chosen at run
 * time, an AVX2 one (twice the lanes for the same loop).
 */
#define DEFINE_MERGE_BF16_RAW6(NAME, ATTR)                                               \
	ATTR static void NAME(const uint16_t *s0, const uint8_t *b, size_t n, uint16_t *o) \
	{                                                                                \
		size_t i = 0;                                                            \
		for (; i + BP6_BLOCK <= n; i += BP6_BLOCK, b += 3 * BP6_M) {             \
			for (unsigned j = 0; j < 3 * BP6_M; j++) {                       \
				uint16_t r = (uint16_t)(s0[i + j] << 6 | (b[j] & 63));   \
				o[i + j] = (uint16_t)(r >> 1 | r << 15);                 \
			}                                                                \
			for (unsigned k = 0; k < BP6_M; k++) {                           \
				unsigned t = (unsigned)(b[k] >> 6) |                     \
					     (unsigned)(b[BP6_M + k] >> 6) << 2 |        \
					     (unsigned)(b[2 * BP6_M + k] >> 6) << 4;     \
				uint16_t r = (uint16_t)(s0[i + 3 * BP6_M + k] << 6 | t); \
				o[i + 3 * BP6_M + k] = (uint16_t)(r >> 1 | r << 15);     \
			}                                                                \
		}                                                                        \
		uint8_t tail[BP6_BLOCK];                                                 \
		unpack_lsb(b, 6, n - i, tail);                                           \
		for (size_t j = 0; i + j < n; j++) {                                     \
			uint16_t r = (uint16_t)(s0[i + j] << 6 | tail[j]);               \
			o[i + j] = (uint16_t)(r >> 1 | r << 15);                         \
		}                                                                        \
	}

DEFINE_MERGE_BF16_RAW6(merge_bf16_raw6_portable, )
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
DEFINE_MERGE_BF16_RAW6(merge_bf16_raw6_avx2, __attribute__((target("avx2"))))
#endif

static void merge_bf16_raw6(const uint16_t *s0, const uint8_t *b, size_t n, uint16_t *o)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
	if (__builtin_cpu_supports("avx2")) {
		merge_bf16_raw6_avx2(s0, b, n, o);
		return;
	}
#endif
	merge_bf16_raw6_portable(s0, b, n, o);
}

static void merge(const bp_layout *L, void *const *planes, size_t n, uint8_t *dst)
{
	unsigned bits = 8 * L->esize;
	/* the fast merges store whole elements: dst must be aligned for them */
	int aligned = ((uintptr_t)dst & (L->esize - 1)) == 0;
	if (aligned && L->esize == 2 && L->width[0] == 10) {
		const uint16_t *s0 = planes[0];
		const uint8_t *s1 = planes[1];
		uint16_t *o = (uint16_t *)(void *)dst;
		for (size_t i = 0; i < n; i++) {
			uint16_t r = (uint16_t)(s0[i] << 6 | s1[i]);
			o[i] = (uint16_t)(r >> 1 | r << 15);
		}
		return;
	}
	if (aligned && L->esize == 2 && L->width[0] == 8) {
		const uint8_t *s0 = planes[0], *s1 = planes[1];
		uint16_t *o = (uint16_t *)(void *)dst;
		for (size_t i = 0; i < n; i++) {
			uint16_t r = (uint16_t)(s0[i] << 8 | s1[i]);
			o[i] = (uint16_t)(r >> 1 | r << 15);
		}
		return;
	}
	if (aligned && L->esize == 4 && L->nplanes == 4) {
		const uint16_t *s0 = planes[0];
		const uint8_t *s1 = planes[1], *s2 = planes[2], *s3 = planes[3];
		uint32_t *o = (uint32_t *)(void *)dst;
		for (size_t i = 0; i < n; i++) {
			uint32_t r = (uint32_t)s0[i] << 22 | (uint32_t)s1[i] << 16 |
				     (uint32_t)s2[i] << 8 | s3[i];
			o[i] = r >> 1 | r << 31;
		}
		return;
	}
	if (L->esize == 1) {
		memcpy(dst, planes[0], n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t r = 0;
		for (unsigned p = 0; p < L->nplanes; p++) {
			unsigned s = L->width[p] > 8 ? ((const uint16_t *)planes[p])[i]
						     : ((const uint8_t *)planes[p])[i];
			r = r << L->width[p] | s;
		}
		uint64_t v = rotr(r, L->rot, bits);
		memcpy(dst + L->esize * i, &v, L->esize);
	}
}

/* ---- encoder ---- */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static int bp_encode(const mfs_encode_params *prm, const void *src, size_t src_len,
		     void *dst, size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws)
{
	const bp_layout *L = layout_for(prm->dtype);
	if (!L || src_len % L->esize)
		return MFS_E_UNSUPPORTED;
	if (src_len > MFS_CHUNK_MAX)
		return MFS_E_TOOBIG;
	if (dst_cap < bp_bound(src_len))
		return MFS_E_NOSPACE;
	size_t n = src_len / L->esize;

	/* scratch A: per-plane frequencies, then the symbol planes */
	size_t freq_bytes = sizeof(uint32_t) * MFS_HUFF_MAX_SYMS * L->nplanes;
	size_t sub_bytes = 4 * sizeof(uint32_t) * MFS_HUFF_MAX_SYMS;
	size_t need = freq_bytes + sub_bytes + sizeof(mfs_huff_table);
	/* one more element's room: an unaligned source is copied behind the planes */
	int src_aligned = ((uintptr_t)src & (L->esize - 1)) == 0;
	size_t copy_off = 0;
	size_t off[BP_MAX_PLANES];
	for (unsigned p = 0; p < L->nplanes; p++) {
		off[p] = need;
		need += (plane_sym_bytes(L->width[p], n) + 63) & ~(size_t)63;
	}
	if (!src_aligned) {
		copy_off = need;
		need += src_len;
	}
	uint8_t *scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, need);
	if (!scr)
		return -ENOMEM;
	uint32_t(*freq)[MFS_HUFF_MAX_SYMS] = (void *)scr;
	uint32_t(*sub)[MFS_HUFF_MAX_SYMS] = (void *)(scr + freq_bytes);
	mfs_huff_table *tab = (void *)(scr + freq_bytes + sub_bytes);
	void *planes[BP_MAX_PLANES];
	for (unsigned p = 0; p < L->nplanes; p++)
		planes[p] = scr + off[p];
	const uint8_t *elems = src;
	if (!src_aligned) {
		memcpy(scr + copy_off, src, src_len);
		elems = scr + copy_off;
	}
	split(L, elems, n, planes);
	for (unsigned p = 0; p < L->nplanes; p++)
		histogram(planes[p], L->width[p] > 8, n, freq[p], 1u << L->width[p], sub);

	uint8_t *out = dst, *end = out + dst_cap;
	out[0] = BP_VERSION;
	out[1] = (uint8_t)prm->dtype;
	out[2] = (uint8_t)L->nplanes;
	out[3] = 0;
	put32(out + 4, (uint32_t)n);
	uint8_t *desc = out + BP_HEADER;
	uint8_t *q = desc + BP_PLANE_DESC * L->nplanes;
	for (unsigned p = 0; p < L->nplanes; p++) {
		unsigned w = L->width[p];
		unsigned nsym = 1u << w;
		size_t raw = raw_plane_len(w, n);
		unsigned distinct = 0, last = 0;
		for (unsigned s = 0; s < nsym && distinct < 2; s++)
			if (freq[p][s]) {
				distinct++;
				last = s;
			}
		int mode = BP_RAW;
		size_t len = raw;
		if (distinct == 1 && raw > 2) {
			mode = BP_CONST;
			q[0] = (uint8_t)last;
			q[1] = (uint8_t)(last >> 8);
			len = 2;
		} else if (distinct >= 2 && mfs_huff_build(freq[p], nsym, tab) == 0 &&
			   (double)mfs_huff_block_estimate(tab, freq[p]) <=
			       (1.0 - MFS_BP_MIN_GAIN) * (double)raw) {
			int rc = mfs_huff_encode(tab, planes[p], w > 8, n, q,
						 (size_t)(end - q), &len);
			if (rc < 0)
				return rc;
			mode = BP_HUFF;
		}
		if (mode == BP_RAW)
			pack_bits(planes[p], w, n, q);
		desc[BP_PLANE_DESC * p] = (uint8_t)w;
		desc[BP_PLANE_DESC * p + 1] = (uint8_t)mode;
		put32(desc + BP_PLANE_DESC * p + 2, (uint32_t)len);
		q += len;
	}
	*dst_len = (size_t)(q - out);
	return 0;
}

/* ---- decoder ---- */

static int bp_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	const uint8_t *src = rq->src;
	size_t src_len = rq->src_len, dst_len = rq->dst_len;
	void *dst = rq->dst;
	if (src_len < BP_HEADER || src[0] != BP_VERSION || src[3] != 0)
		return MFS_E_CORRUPT;
	const bp_layout *L = layout_for(src[1]);
	if (!L || src[2] != L->nplanes || dst_len % L->esize || dst_len > MFS_CHUNK_MAX)
		return MFS_E_CORRUPT;
	size_t n = dst_len / L->esize;
	size_t hdr = BP_HEADER + BP_PLANE_DESC * L->nplanes;
	if (src_len < hdr || get32(src + 4) != n)
		return MFS_E_CORRUPT;

	const uint8_t *data[BP_MAX_PLANES];
	size_t len[BP_MAX_PLANES];
	size_t need = 0, off[BP_MAX_PLANES];
	size_t at = hdr;
	for (unsigned p = 0; p < L->nplanes; p++) {
		const uint8_t *d = src + BP_HEADER + BP_PLANE_DESC * p;
		unsigned w = L->width[p];
		if (d[0] != w || d[1] > BP_HUFF)
			return MFS_E_CORRUPT;
		len[p] = get32(d + 2);
		if (len[p] > src_len - at)
			return MFS_E_CORRUPT;
		data[p] = src + at;
		at += len[p];
		off[p] = need;
		if (!(d[1] == BP_RAW && w == 8))
			need += (plane_sym_bytes(w, n) + 64) &
				~(size_t)63; /* >= 64: never NULL */
	}
	if (at != src_len)
		return MFS_E_CORRUPT;
	uint8_t *scr = NULL;
	if (need) {
		scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, need);
		if (!scr)
			return -ENOMEM;
	}
	void *planes[BP_MAX_PLANES];
	int fuse6 = L == &layout_bf16 && src[BP_HEADER + BP_PLANE_DESC + 1] == BP_RAW &&
		    ((uintptr_t)dst & 1) == 0;
	for (unsigned p = 0; p < L->nplanes; p++) {
		unsigned w = L->width[p];
		unsigned mode = src[BP_HEADER + BP_PLANE_DESC * p + 1];
		if (mode == BP_RAW) {
			if (len[p] != raw_plane_len(w, n))
				return MFS_E_CORRUPT;
			if (w == 8 || (p == 1 && fuse6)) {
				planes[p] = (void *)(uintptr_t)data[p];
			} else {
				planes[p] = scr + off[p];
				unpack_bits(data[p], w, n, planes[p]);
			}
		} else if (mode == BP_CONST) {
			if (len[p] != 2)
				return MFS_E_CORRUPT;
			unsigned s = (unsigned)data[p][0] | (unsigned)data[p][1] << 8;
			if (s >> w)
				return MFS_E_CORRUPT;
			planes[p] = scr + off[p];
			if (w > 8) {
				uint16_t *o = planes[p];
				for (size_t i = 0; i < n; i++)
					o[i] = (uint16_t)s;
			} else {
				memset(planes[p], (int)s, n);
			}
		} else {
			planes[p] = scr + off[p];
			int rc = mfs_huff_decode(data[p], len[p], 1u << w, planes[p],
						 w > 8, n);
			if (rc < 0)
				return rc;
		}
	}
	if (fuse6)
		merge_bf16_raw6(planes[0], planes[1], n, dst);
	else
		merge(L, planes, n, dst);
	return 0;
}

const mfs_codec mfs_codec_bitplane_huff = {
    .id = MFS_CODEC_BITPLANE_HUFF,
    .name = "bitplane-huff",
    .flags = 0,
    .bound = bp_bound,
    .encode = bp_encode,
    .decode = bp_decode,
};
