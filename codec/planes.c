/*
 * planes.c - bit-plane split/merge and the coding of one plane (planes.h).
 *
 * The merges are the decoders' last pass over every byte, so the layouts
 * the codecs use have loops of their own that GCC vectorizes at -O3 (the
 * build sets it for this file); each is written once as an inline body
 * that takes an optional base to XOR with, and instantiated without (for
 * bitplane-huff) and with (for xor-delta), so the XOR costs no extra pass.
 */
#include "planes.h"

#include "codec_internal.h"
#include "le.h"

#include <zstd_errors.h>

#include <errno.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "planes.c assumes a little-endian host"
#endif

#if defined(__GNUC__)
#define MFS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MFS_ALWAYS_INLINE inline
#endif

static const mfs_planes_layout layout_bf16 = {2, 1, 2, {10, 6}};
static const mfs_planes_layout layout_f16 = {2, 1, 2, {8, 8}};
static const mfs_planes_layout layout_f32 = {4, 1, 4, {10, 6, 8, 8}};
static const mfs_planes_layout layout_f64 = {8, 1, 8, {10, 6, 8, 8, 8, 8, 8, 8}};
static const mfs_planes_layout layout_f8 = {1, 0, 1, {8}};

const mfs_planes_layout *mfs_planes_layout_bitplane(mfs_dtype dt)
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

static inline uint16_t ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static inline uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline void st16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static inline void st32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static int is_layout(const mfs_planes_layout *L, unsigned esize, unsigned rot,
		     unsigned nplanes, const unsigned *w)
{
	if (L->esize != esize || L->rot != rot || L->nplanes != nplanes)
		return 0;
	for (unsigned p = 0; p < nplanes; p++)
		if (L->width[p] != w[p])
			return 0;
	return 1;
}

static const unsigned w_10_6[] = {10, 6}, w_8_8[] = {8, 8}, w_10_6_8_8[] = {10, 6, 8, 8};

/* Byte planes without rotation: plane p holds byte esize-1-p of each element. */
static int is_byte_planes(const mfs_planes_layout *L)
{
	if (L->rot != 0 || L->nplanes != L->esize)
		return 0;
	for (unsigned p = 0; p < L->nplanes; p++)
		if (L->width[p] != 8)
			return 0;
	return 1;
}

/* ---- bit packing for RAW planes ---- */

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

void mfs_planes_pack(const void *syms, unsigned w, size_t n, uint8_t *dst)
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

void mfs_planes_unpack(const uint8_t *src, unsigned w, size_t n, void *syms)
{
	size_t i = 0;
	if (w == 8) {
		memcpy(syms, src, n);
		return;
	}
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

/* ---- split (encoder) ---- */

void mfs_planes_split(const mfs_planes_layout *L, const uint8_t *src, size_t n,
		      void *const *planes)
{
	unsigned bits = 8 * L->esize;
	if (is_layout(L, 2, 1, 2, w_10_6) || is_layout(L, 2, 1, 2, w_8_8)) {
		const uint16_t *v = (const void *)src; /* aligned: see planes.h */
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
	if (is_layout(L, 4, 1, 4, w_10_6_8_8)) {
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
	if (is_byte_planes(L) && L->esize == 2) {
		uint8_t *p0 = planes[0], *p1 = planes[1];
		for (size_t i = 0; i < n; i++) {
			p1[i] = src[2 * i];
			p0[i] = src[2 * i + 1];
		}
		return;
	}
	if (is_byte_planes(L) && L->esize == 4) {
		uint8_t *p0 = planes[0], *p1 = planes[1], *p2 = planes[2],
			*p3 = planes[3];
		for (size_t i = 0; i < n; i++) {
			p3[i] = src[4 * i];
			p2[i] = src[4 * i + 1];
			p1[i] = src[4 * i + 2];
			p0[i] = src[4 * i + 3];
		}
		return;
	}
	unsigned shift[MFS_PLANES_MAX];
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

/* ---- merge (decoder) ---- */

/*
 * BF16 with a RAW 6-bit plane: merge straight from the packed blocks.
 * Instantiated twice: the portable build (SSE2 on x86-64) and, chosen at
 * run time, AVX2 (twice the lanes for the same loop).
 */
#define DEFINE_MERGE_BF16_RAW6(NAME, ATTR)                                               \
	ATTR static void NAME(const uint16_t *s0, const uint8_t *b, size_t n,            \
			      uint8_t *o)                                                \
	{                                                                                \
		size_t i = 0;                                                            \
		for (; i + BP6_BLOCK <= n; i += BP6_BLOCK, b += 3 * BP6_M) {             \
			for (unsigned j = 0; j < 3 * BP6_M; j++) {                       \
				uint16_t r = (uint16_t)(s0[i + j] << 6 | (b[j] & 63));   \
				st16(o + 2 * (i + j), (uint16_t)(r >> 1 | r << 15));     \
			}                                                                \
			for (unsigned k = 0; k < BP6_M; k++) {                           \
				unsigned t = (unsigned)(b[k] >> 6) |                     \
					     (unsigned)(b[BP6_M + k] >> 6) << 2 |        \
					     (unsigned)(b[2 * BP6_M + k] >> 6) << 4;     \
				uint16_t r = (uint16_t)(s0[i + 3 * BP6_M + k] << 6 | t); \
				st16(o + 2 * (i + 3 * BP6_M + k),                        \
				     (uint16_t)(r >> 1 | r << 15));                      \
			}                                                                \
		}                                                                        \
		uint8_t tail[BP6_BLOCK];                                                 \
		unpack_lsb(b, 6, n - i, tail);                                           \
		for (size_t j = 0; i + j < n; j++) {                                     \
			uint16_t r = (uint16_t)(s0[i + j] << 6 | tail[j]);               \
			st16(o + 2 * (i + j), (uint16_t)(r >> 1 | r << 15));             \
		}                                                                        \
	}

DEFINE_MERGE_BF16_RAW6(merge_bf16_raw6_portable, )
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
DEFINE_MERGE_BF16_RAW6(merge_bf16_raw6_avx2, __attribute__((target("avx2"))))
#endif

void mfs_planes_merge_bf16_raw6(const uint16_t *s0, const uint8_t *b, size_t n,
				uint8_t *dst)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
	if (__builtin_cpu_supports("avx2")) {
		merge_bf16_raw6_avx2(s0, b, n, dst);
		return;
	}
#endif
	merge_bf16_raw6_portable(s0, b, n, dst);
}

static MFS_ALWAYS_INLINE void merge_body(const mfs_planes_layout *L,
					 const void *const *planes, size_t n,
					 const uint8_t *base, uint8_t *dst,
					 const int with_base)
{
	unsigned bits = 8 * L->esize;
	if (is_layout(L, 2, 1, 2, w_10_6)) {
		const uint16_t *s0 = planes[0];
		const uint8_t *s1 = planes[1];
		for (size_t i = 0; i < n; i++) {
			uint16_t r = (uint16_t)(s0[i] << 6 | s1[i]);
			r = (uint16_t)(r >> 1 | r << 15);
			if (with_base)
				r ^= ld16(base + 2 * i);
			st16(dst + 2 * i, r);
		}
		return;
	}
	if (is_layout(L, 2, 1, 2, w_8_8)) {
		const uint8_t *s0 = planes[0], *s1 = planes[1];
		for (size_t i = 0; i < n; i++) {
			uint16_t r = (uint16_t)(s0[i] << 8 | s1[i]);
			r = (uint16_t)(r >> 1 | r << 15);
			if (with_base)
				r ^= ld16(base + 2 * i);
			st16(dst + 2 * i, r);
		}
		return;
	}
	if (is_layout(L, 4, 1, 4, w_10_6_8_8)) {
		const uint16_t *s0 = planes[0];
		const uint8_t *s1 = planes[1], *s2 = planes[2], *s3 = planes[3];
		for (size_t i = 0; i < n; i++) {
			uint32_t r = (uint32_t)s0[i] << 22 | (uint32_t)s1[i] << 16 |
				     (uint32_t)s2[i] << 8 | s3[i];
			r = r >> 1 | r << 31;
			if (with_base)
				r ^= ld32(base + 4 * i);
			st32(dst + 4 * i, r);
		}
		return;
	}
	if (is_byte_planes(L) && L->esize == 2) {
		const uint8_t *s0 = planes[0], *s1 = planes[1];
		for (size_t i = 0; i < n; i++) {
			uint16_t r = (uint16_t)(s0[i] << 8 | s1[i]);
			if (with_base)
				r ^= ld16(base + 2 * i);
			st16(dst + 2 * i, r);
		}
		return;
	}
	if (is_byte_planes(L) && L->esize == 4) {
		const uint8_t *s0 = planes[0], *s1 = planes[1], *s2 = planes[2],
			      *s3 = planes[3];
		for (size_t i = 0; i < n; i++) {
			uint32_t r = (uint32_t)s0[i] << 24 | (uint32_t)s1[i] << 16 |
				     (uint32_t)s2[i] << 8 | s3[i];
			if (with_base)
				r ^= ld32(base + 4 * i);
			st32(dst + 4 * i, r);
		}
		return;
	}
	if (L->esize == 1 && L->nplanes == 1 && L->rot == 0) {
		const uint8_t *s0 = planes[0];
		if (!with_base) {
			memcpy(dst, s0, n);
			return;
		}
		for (size_t i = 0; i < n; i++)
			dst[i] = s0[i] ^ base[i];
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
		if (with_base)
			v ^= load_elem(base + L->esize * i, L->esize);
		memcpy(dst + L->esize * i, &v, L->esize);
	}
}

void mfs_planes_merge(const mfs_planes_layout *L, const void *const *planes, size_t n,
		      uint8_t *dst)
{
	merge_body(L, planes, n, NULL, dst, 0);
}

void mfs_planes_merge_xor(const mfs_planes_layout *L, const void *const *planes, size_t n,
			  const uint8_t *base, uint8_t *dst)
{
	merge_body(L, planes, n, base, dst, 1);
}

/* ---- coding one plane ---- */

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

/*
 * The zstd trials run at level 1 with a minimum match of 7 unless the
 * caller names a level: on the planes of real fine-tunes' XOR that is
 * smaller than level 3 and decodes faster (docs/codecs.md, xor-delta).
 */
#define PLANE_ZSTD_LEVEL     1
#define PLANE_ZSTD_MIN_MATCH 7

/* A zstd frame of the unpacked symbols in at most @p cap bytes; *len 0 when it does not
 * fit. */
static int zstd_trial(const void *syms, size_t bytes, int level, uint8_t *out, size_t cap,
		      size_t *len, mfs_codec_ws *ws)
{
	ZSTD_CCtx *cctx = mfs_codec_ws_cctx(ws);
	if (!cctx)
		return -ENOMEM;
	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel,
					  level ? level : PLANE_ZSTD_LEVEL);
	if (!ZSTD_isError(r) && !level)
		r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_minMatch, PLANE_ZSTD_MIN_MATCH);
	if (!ZSTD_isError(r))
		r = ZSTD_compress2(cctx, out, cap, syms, bytes);
	if (ZSTD_isError(r)) {
		if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall) {
			*len = 0;
			return 0;
		}
		return -ENOMEM; /* zstd fails otherwise only on allocation */
	}
	*len = r;
	return 0;
}

/* RAW, CONST or HUFF, as bitplane-huff has always chosen (see planes.h). */
static int encode_basic(const void *syms, unsigned w, size_t n, unsigned modes,
			mfs_plane_enc_scratch *scr, uint8_t *dst, size_t dst_cap,
			unsigned *mode, size_t *len)
{
	unsigned nsym = 1u << w;
	size_t raw = mfs_planes_raw_len(w, n);
	if (dst_cap < mfs_plane_bound(w, n) || w < 1 || w > MFS_HUFF_MAX_SYMBOL_BITS)
		return MFS_E_NOSPACE;
	histogram(syms, w > 8, n, scr->freq, nsym, scr->sub);
	unsigned distinct = 0, last = 0;
	for (unsigned s = 0; s < nsym && distinct < 2; s++)
		if (scr->freq[s]) {
			distinct++;
			last = s;
		}
	if ((modes & MFS_PLANE_MODE_BIT(MFS_PLANE_CONST)) && distinct == 1 && raw > 2) {
		dst[0] = (uint8_t)last;
		dst[1] = (uint8_t)(last >> 8);
		*mode = MFS_PLANE_CONST;
		*len = 2;
		return 0;
	}
	if ((modes & MFS_PLANE_MODE_BIT(MFS_PLANE_HUFF)) && distinct >= 2 &&
	    mfs_huff_build(scr->freq, nsym, &scr->tab) == 0 &&
	    (double)mfs_huff_block_estimate(&scr->tab, scr->freq) <=
		(1.0 - MFS_PLANE_MIN_GAIN) * (double)raw) {
		/* the encoder wants 8 bytes of room past the block; a plane
		 * whose block does not fit so goes RAW, which does */
		int rc = mfs_huff_encode(&scr->tab, syms, w > 8, n, dst, dst_cap, len);
		if (rc == 0) {
			*mode = MFS_PLANE_HUFF;
			return 0;
		}
		if (rc != MFS_E_NOSPACE)
			return rc;
	}
	mfs_planes_pack(syms, w, n, dst);
	*mode = MFS_PLANE_RAW;
	*len = raw;
	return 0;
}

#define SPARSE_HEADER                                                                    \
	14 /* u32 k, u8 mask mode, u32 mask len, u8 value mode, u32 value len */

/*
 * A SPARSE plane of 8-bit-or-narrower symbols into @p out (room:
 * sparse_cap()), using @p mask (ceil(n/8) bytes) and @p vals (n bytes) as
 * work space.
 */
static size_t sparse_cap(size_t n)
{
	/* + 8 per sub-plane: the Huffman encoder's room past its block */
	return SPARSE_HEADER + mfs_plane_bound(8, (n + 7) / 8) + 8 +
	       mfs_plane_bound(8, n) + 8;
}

static int sparse_trial(const uint8_t *syms, unsigned w, size_t n,
			mfs_plane_enc_scratch *scr, uint8_t *mask, uint8_t *vals,
			uint8_t *out, size_t *len)
{
	size_t nm = (n + 7) / 8, k = 0;
	memset(mask, 0, nm);
	for (size_t i = 0; i < n; i++) {
		unsigned nz = syms[i] != 0;
		mask[i >> 3] |= (uint8_t)(nz << (i & 7));
		vals[k] = syms[i];
		k += nz;
	}
	unsigned mm, vm;
	size_t ml, vl;
	uint8_t *q = out + SPARSE_HEADER;
	size_t cap = sparse_cap(n) - SPARSE_HEADER;
	int rc = encode_basic(mask, 8, nm, MFS_PLANE_MODES_BASIC, scr, q, cap, &mm, &ml);
	if (rc < 0)
		return rc;
	q += ml;
	cap -= ml;
	rc = encode_basic(vals, w, k, MFS_PLANE_MODES_BASIC, scr, q, cap, &vm, &vl);
	if (rc < 0)
		return rc;
	mfs_le_put32(out, (uint32_t)k);
	out[4] = (uint8_t)mm;
	mfs_le_put32(out + 5, (uint32_t)ml);
	out[9] = (uint8_t)vm;
	mfs_le_put32(out + 10, (uint32_t)vl);
	*len = SPARSE_HEADER + ml + vl;
	return 0;
}

int mfs_plane_encode(const void *syms, unsigned w, size_t n, unsigned modes,
		     int zstd_level, mfs_plane_enc_scratch *scr, uint8_t *dst,
		     size_t dst_cap, unsigned *mode, size_t *len, mfs_codec_ws *ws)
{
	size_t raw = mfs_planes_raw_len(w, n);
	int rc = encode_basic(syms, w, n, modes & MFS_PLANE_MODES_BASIC, scr, dst,
			      dst_cap, mode, len);
	if (rc < 0 || *mode == MFS_PLANE_CONST || n == 0)
		return rc;
	int sparse = (modes & MFS_PLANE_MODE_BIT(MFS_PLANE_SPARSE)) && w <= 8;
	int zstd = (modes & MFS_PLANE_MODE_BIT(MFS_PLANE_ZSTD)) != 0;
	if (!sparse && !zstd)
		return 0;
	/* slot B: one trial's output, then the sparse trial's mask and values */
	size_t trial_cap = sparse_cap(n) > raw ? sparse_cap(n) : raw;
	size_t need = trial_cap + (n + 7) / 8 + n;
	uint8_t *trial = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_B, need);
	if (!trial)
		return -ENOMEM;
	/* slower modes, fastest decoder first (ZSTD, then SPARSE: measured on
	 * the planes of real fine-tunes' XOR, docs/codecs.md): each must beat
	 * the choice so far by more than MFS_PLANE_MIN_GAIN of the raw plane */
	for (int pass = 0; pass < 2; pass++) {
		double limit = (double)*len - MFS_PLANE_MIN_GAIN * (double)raw;
		if (limit < 1)
			return 0;
		size_t tlen = 0;
		unsigned tmode;
		if (pass == 1 && sparse) {
			rc = sparse_trial(syms, w, n, scr, trial + trial_cap,
					  trial + trial_cap + (n + 7) / 8, trial, &tlen);
			tmode = MFS_PLANE_SPARSE;
		} else if (pass == 0 && zstd) {
			rc = zstd_trial(syms, mfs_planes_sym_bytes(w, n), zstd_level,
					trial, (size_t)limit, &tlen, ws);
			tmode = MFS_PLANE_ZSTD;
		} else {
			continue;
		}
		if (rc < 0)
			return rc;
		if (tlen > 0 && (double)tlen < limit) {
			memcpy(dst, trial, tlen);
			*mode = tmode;
			*len = tlen;
		}
	}
	return 0;
}

/*
 * Expand a SPARSE plane: symbol i is the next value when bit i of the mask
 * is set, else 0.  @p vals holds the values and 8 readable bytes after the
 * last one (each step loads 8 values ahead of use, branch-free).  The mask
 * has been checked to hold exactly as many bits as there are values.
 */
static void sparse_expand_portable(const uint8_t *mask, const uint8_t *vals, size_t n,
				   uint8_t *o)
{
	size_t i = 0, pos = 0;
	for (; i + 8 <= n; i += 8) {
		unsigned m = mask[i >> 3];
		for (unsigned j = 0; j < 8; j++) {
			unsigned b = (m >> j) & 1;
			o[i + j] = (uint8_t)(vals[pos] & (0u - b));
			pos += b;
		}
	}
	for (; i < n; i++) {
		unsigned b = (mask[i >> 3] >> (i & 7)) & 1;
		o[i] = (uint8_t)(vals[pos] & (0u - b));
		pos += b;
	}
}

/*
 * x86-64 with BMI2: eight symbols per step, the next eight values deposited
 * into the bytes the mask byte selects (pdep), then pos moves by its
 * popcount (not on AMD family 17h, whose pdep is microcoded and slow).
 * -DMFS_HUFF_NO_BMI2 builds the portable loop only (to test it).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_HUFF_NO_BMI2)
#define MFS_PLANES_BMI2 1
#include <immintrin.h>
__attribute__((target("bmi2,popcnt"))) static void
sparse_expand_bmi2(const uint8_t *mask, const uint8_t *vals, size_t n, uint8_t *o)
{
	size_t i = 0, pos = 0;
	for (; i + 8 <= n; i += 8) {
		unsigned m = mask[i >> 3];
		uint64_t sel = _pdep_u64(m, 0x0101010101010101ull) * 0xff;
		uint64_t v;
		memcpy(&v, vals + pos, 8);
		v = _pdep_u64(v, sel);
		memcpy(o + i, &v, 8);
		pos += (size_t)__builtin_popcount(m);
	}
	for (; i < n; i++) {
		unsigned b = (mask[i >> 3] >> (i & 7)) & 1;
		o[i] = (uint8_t)(vals[pos] & (0u - b));
		pos += b;
	}
}
#endif

static void sparse_expand(const uint8_t *mask, const uint8_t *vals, size_t n, uint8_t *o)
{
#ifdef MFS_PLANES_BMI2
	/* AMD family 17h (Zen 1, 2) runs pdep in microcode, far slower than
	 * the portable loop */
	if (__builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt") &&
	    !__builtin_cpu_is("amdfam17h")) {
		sparse_expand_bmi2(mask, vals, n, o);
		return;
	}
#endif
	sparse_expand_portable(mask, vals, n, o);
}

/* Bits set in @p n bytes (SWAR: no popcnt instruction needed). */
static size_t count_bits(const uint8_t *p, size_t n)
{
	size_t ones = 0, i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v;
		memcpy(&v, p + i, 8);
		v = v - ((v >> 1) & 0x5555555555555555ull);
		v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
		v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
		ones += (size_t)((v * 0x0101010101010101ull) >> 56);
	}
	for (; i < n; i++)
		for (unsigned b = p[i]; b; b &= b - 1)
			ones++;
	return ones;
}

static int decode_sparse(unsigned w, size_t n, const uint8_t *data, size_t len,
			 uint8_t *out, mfs_codec_ws *ws)
{
	if (w > 8 || len < SPARSE_HEADER)
		return MFS_E_CORRUPT;
	size_t k = mfs_le_get32(data), nm = (n + 7) / 8;
	unsigned mm = data[4], vm = data[9];
	size_t ml = mfs_le_get32(data + 5), vl = mfs_le_get32(data + 10);
	if (k > n || mm > MFS_PLANE_HUFF || vm > MFS_PLANE_HUFF ||
	    ml > len - SPARSE_HEADER || vl != len - SPARSE_HEADER - ml)
		return MFS_E_CORRUPT;
	/* slot B: the mask, then the values and 8 zero bytes */
	size_t moff = (nm + 64) & ~(size_t)63;
	uint8_t *scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_B, moff + k + 8);
	if (!scr)
		return -ENOMEM;
	const void *mask, *vals;
	int rc = mfs_plane_decode(mm, 8, nm, data + SPARSE_HEADER, ml, scr, &mask, ws);
	if (rc < 0)
		return rc;
	rc = mfs_plane_decode(vm, w, k, data + SPARSE_HEADER + ml, vl, scr + moff, &vals,
			      ws);
	if (rc < 0)
		return rc;
	if (vals != scr + moff)
		memcpy(scr + moff, vals,
		       k); /* a RAW 8-bit plane is used in place: copy */
	memset(scr + moff + k, 0, 8);
	/* the mask must have exactly k bits set, none past n */
	const uint8_t *mb = mask;
	if (count_bits(mb, nm) != k || (n & 7 && mb[nm - 1] >> (n & 7)))
		return MFS_E_CORRUPT;
	sparse_expand(mb, scr + moff, n, out);
	return 0;
}

int mfs_plane_decode(unsigned mode, unsigned w, size_t n, const uint8_t *data, size_t len,
		     void *out, const void **syms, mfs_codec_ws *ws)
{
	if (w < 1 || w > MFS_HUFF_MAX_SYMBOL_BITS)
		return MFS_E_CORRUPT;
	switch (mode) {
	case MFS_PLANE_RAW:
		if (len != mfs_planes_raw_len(w, n))
			return MFS_E_CORRUPT;
		if (w == 8) {
			*syms = data;
			return 0;
		}
		mfs_planes_unpack(data, w, n, out);
		*syms = out;
		return 0;
	case MFS_PLANE_CONST: {
		if (len != 2)
			return MFS_E_CORRUPT;
		unsigned s = (unsigned)data[0] | (unsigned)data[1] << 8;
		if (s >> w)
			return MFS_E_CORRUPT;
		if (w > 8) {
			uint16_t *o = out;
			for (size_t i = 0; i < n; i++)
				o[i] = (uint16_t)s;
		} else {
			memset(out, (int)s, n);
		}
		*syms = out;
		return 0;
	}
	case MFS_PLANE_HUFF: {
		int rc = mfs_huff_decode(data, len, 1u << w, out, w > 8, n);
		if (rc < 0)
			return rc;
		*syms = out;
		return 0;
	}
	case MFS_PLANE_ZSTD: {
		int rc =
		    mfs_zstd_frame_decode(data, len, out, mfs_planes_sym_bytes(w, n), ws);
		if (rc < 0)
			return rc;
		/* symbols at or above 2^w would leak into the next plane's bits */
		if (w < 8) {
			const uint8_t *s = out;
			uint8_t bad = 0;
			for (size_t i = 0; i < n; i++)
				bad |= s[i];
			if (bad >> w)
				return MFS_E_CORRUPT;
		} else if (w > 8) {
			const uint16_t *s = out;
			uint16_t bad = 0;
			for (size_t i = 0; i < n; i++)
				bad |= s[i];
			if (bad >> w)
				return MFS_E_CORRUPT;
		}
		*syms = out;
		return 0;
	}
	case MFS_PLANE_SPARSE: {
		int rc = decode_sparse(w, n, data, len, out, ws);
		if (rc < 0)
			return rc;
		*syms = out;
		return 0;
	}
	default:
		return MFS_E_CORRUPT;
	}
}

int mfs_planes_payload_write(const mfs_planes_layout *L, void *const *planes, size_t n,
			     unsigned modes, int zstd_level, mfs_plane_enc_scratch *scr,
			     const uint8_t head[4], uint8_t *dst, size_t dst_cap,
			     size_t *dst_len, mfs_codec_ws *ws)
{
	uint8_t *desc = dst + MFS_PLANES_HEADER, *end = dst + dst_cap;
	uint8_t *q = desc + MFS_PLANE_DESC * L->nplanes;
	mfs_planes_header_put(dst, head, n);
	for (unsigned p = 0; p < L->nplanes; p++) {
		unsigned w = L->width[p], mode;
		size_t len;
		int rc = mfs_plane_encode(planes[p], w, n, modes, zstd_level, scr, q,
					  (size_t)(end - q), &mode, &len, ws);
		if (rc < 0)
			return rc;
		mfs_planes_desc_put(desc, p, w, mode, len);
		q += len;
	}
	*dst_len = (size_t)(q - dst);
	return 0;
}

/* ---- payloads of planes ---- */

static size_t round64(size_t v)
{
	return (v + 63) & ~(size_t)63;
}

int mfs_planes_enc_scratch(const mfs_planes_layout *L, size_t n, size_t head,
			   size_t stage, mfs_codec_ws *ws, void **head_p, void **planes,
			   uint8_t **stage_p)
{
	size_t need = round64(head), off[MFS_PLANES_MAX];
	for (unsigned p = 0; p < L->nplanes; p++) {
		off[p] = need;
		need += round64(mfs_planes_sym_bytes(L->width[p], n));
	}
	size_t stage_off = need;
	need += stage;
	uint8_t *scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, need);
	if (!scr)
		return -ENOMEM;
	*head_p = scr;
	for (unsigned p = 0; p < L->nplanes; p++)
		planes[p] = scr + off[p];
	if (stage_p)
		*stage_p = scr + stage_off;
	return 0;
}

int mfs_planes_split_ws(const mfs_planes_layout *L, const void *src, size_t n,
			size_t head, mfs_codec_ws *ws, void **head_p, void **planes)
{
	int aligned = ((uintptr_t)src & (L->esize - 1)) == 0;
	size_t bytes = n * L->esize;
	uint8_t *stage;
	int rc = mfs_planes_enc_scratch(L, n, head, aligned ? 0 : bytes, ws, head_p,
					planes, &stage);
	if (rc < 0)
		return rc;
	const uint8_t *elems = src;
	if (!aligned) {
		memcpy(stage, src, bytes);
		elems = stage;
	}
	mfs_planes_split(L, elems, n, planes);
	return 0;
}

int mfs_planes_payload_parse(const mfs_planes_layout *L, const uint8_t *src,
			     size_t src_len, size_t dst_len, unsigned modes,
			     mfs_codec_ws *ws, mfs_planes_payload *pp)
{
	if (dst_len % L->esize || dst_len > MFS_CHUNK_MAX)
		return MFS_E_CORRUPT;
	size_t n = dst_len / L->esize;
	size_t hdr = MFS_PLANES_HEADER + MFS_PLANE_DESC * L->nplanes;
	if (src_len < hdr || mfs_le_get32(src + 4) != n)
		return MFS_E_CORRUPT;
	pp->n = n;
	size_t need = 0, off[MFS_PLANES_MAX], at = hdr;
	for (unsigned p = 0; p < L->nplanes; p++) {
		const uint8_t *d = src + MFS_PLANES_HEADER + MFS_PLANE_DESC * p;
		unsigned w = L->width[p];
		if (d[0] != w || d[1] >= 32 || !(modes & MFS_PLANE_MODE_BIT(d[1])))
			return MFS_E_CORRUPT;
		pp->mode[p] = d[1];
		pp->len[p] = mfs_le_get32(d + 2);
		if (pp->len[p] > src_len - at)
			return MFS_E_CORRUPT;
		pp->data[p] = src + at;
		at += pp->len[p];
		off[p] = need;
		if (mfs_plane_needs_buffer(pp->mode[p], w))
			need +=
			    (mfs_planes_sym_bytes(w, n) + 64) & ~(size_t)63; /* >= 64 */
	}
	if (at != src_len)
		return MFS_E_CORRUPT;
	uint8_t *scr = NULL;
	if (need && !(scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, need)))
		return -ENOMEM;
	for (unsigned p = 0; p < L->nplanes; p++)
		pp->buf[p] = mfs_plane_needs_buffer(pp->mode[p], L->width[p])
				 ? scr + off[p]
				 : NULL;
	return 0;
}

int mfs_planes_payload_merge(const mfs_planes_layout *L, const mfs_planes_payload *pp,
			     const void **planes, const uint8_t *base, uint8_t *dst,
			     mfs_codec_ws *ws)
{
	size_t n = pp->n;
	/* BF16 with a RAW low plane merges from the packed bytes */
	int fuse6 =
	    !base && L->nplanes == 2 && L->width[0] == 10 && pp->mode[1] == MFS_PLANE_RAW;
	for (unsigned p = 0; p < L->nplanes; p++) {
		if (planes[p])
			continue;
		if (p == 1 && fuse6) {
			if (pp->len[p] != mfs_planes_raw_len(L->width[p], n))
				return MFS_E_CORRUPT;
			planes[p] = pp->data[p];
			continue;
		}
		int rc = mfs_plane_decode(pp->mode[p], L->width[p], n, pp->data[p],
					  pp->len[p], pp->buf[p], &planes[p], ws);
		if (rc < 0)
			return rc;
	}
	if (base)
		mfs_planes_merge_xor(L, planes, n, base, dst);
	else if (fuse6)
		mfs_planes_merge_bf16_raw6(planes[0], planes[1], n, dst);
	else
		mfs_planes_merge(L, planes, n, dst);
	return 0;
}
