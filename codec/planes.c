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
 * Instantiated for the portable build (SSE2 on x86-64) and, chosen at run
 * time, AVX2 (twice the lanes for the same loop); each with and without a
 * base to XOR with.
 */
static MFS_ALWAYS_INLINE void merge_bf16_raw6_body(const uint16_t *s0, const uint8_t *b,
						   size_t n, const uint8_t *base,
						   uint8_t *o, const int with_base)
{
	size_t i = 0;
	for (; i + BP6_BLOCK <= n; i += BP6_BLOCK, b += 3 * BP6_M) {
		for (unsigned j = 0; j < 3 * BP6_M; j++) {
			uint16_t r = (uint16_t)(s0[i + j] << 6 | (b[j] & 63));
			r = (uint16_t)(r >> 1 | r << 15);
			if (with_base)
				r ^= ld16(base + 2 * (i + j));
			st16(o + 2 * (i + j), r);
		}
		for (unsigned k = 0; k < BP6_M; k++) {
			unsigned t = (unsigned)(b[k] >> 6) | (unsigned)(b[BP6_M + k] >> 6) << 2 |
				     (unsigned)(b[2 * BP6_M + k] >> 6) << 4;
			uint16_t r = (uint16_t)(s0[i + 3 * BP6_M + k] << 6 | t);
			r = (uint16_t)(r >> 1 | r << 15);
			if (with_base)
				r ^= ld16(base + 2 * (i + 3 * BP6_M + k));
			st16(o + 2 * (i + 3 * BP6_M + k), r);
		}
	}
	uint8_t tail[BP6_BLOCK];
	unpack_lsb(b, 6, n - i, tail);
	for (size_t j = 0; i + j < n; j++) {
		uint16_t r = (uint16_t)(s0[i + j] << 6 | tail[j]);
		r = (uint16_t)(r >> 1 | r << 15);
		if (with_base)
			r ^= ld16(base + 2 * (i + j));
		st16(o + 2 * (i + j), r);
	}
}

#define DEFINE_MERGE_BF16_RAW6(NAME, ATTR)                                               \
	ATTR static void NAME(const uint16_t *s0, const uint8_t *b, size_t n,            \
			      const uint8_t *base, uint8_t *o)                           \
	{                                                                                \
		if (base)                                                                \
			merge_bf16_raw6_body(s0, b, n, base, o, 1);                      \
		else                                                                     \
			merge_bf16_raw6_body(s0, b, n, NULL, o, 0);                      \
	}

DEFINE_MERGE_BF16_RAW6(merge_bf16_raw6_portable, )
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
DEFINE_MERGE_BF16_RAW6(merge_bf16_raw6_avx2, __attribute__((target("avx2"))))
#endif

void mfs_planes_merge_bf16_raw6(const uint16_t *s0, const uint8_t *b, size_t n,
				const uint8_t *base, uint8_t *dst)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
	if (__builtin_cpu_supports("avx2")) {
		merge_bf16_raw6_avx2(s0, b, n, base, dst);
		return;
	}
#endif
	merge_bf16_raw6_portable(s0, b, n, base, dst);
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

/* A zstd frame of the unpacked symbols in at most @p cap bytes; 0 when it does not fit. */
static int zstd_trial(const void *syms, size_t bytes, int level, uint8_t *out, size_t cap,
		      size_t *len, mfs_codec_ws *ws)
{
	ZSTD_CCtx *cctx = mfs_codec_ws_cctx(ws);
	if (!cctx)
		return -ENOMEM;
	size_t r = ZSTD_compressCCtx(cctx, out, cap, syms, bytes, level);
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

int mfs_plane_encode(const void *syms, unsigned w, size_t n, unsigned modes, int zstd_level,
		     mfs_plane_enc_scratch *scr, uint8_t *dst, size_t dst_cap,
		     unsigned *mode, size_t *len, mfs_codec_ws *ws)
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
	unsigned m = MFS_PLANE_RAW;
	size_t size = raw;
	if ((modes & MFS_PLANE_MODE_BIT(MFS_PLANE_HUFF)) && distinct >= 2 &&
	    mfs_huff_build(scr->freq, nsym, &scr->tab) == 0 &&
	    (double)mfs_huff_block_estimate(&scr->tab, scr->freq) <=
		(1.0 - MFS_PLANE_MIN_GAIN) * (double)raw) {
		int rc = mfs_huff_encode(&scr->tab, syms, w > 8, n, dst, dst_cap, &size);
		if (rc < 0)
			return rc;
		m = MFS_PLANE_HUFF;
	}
	if ((modes & MFS_PLANE_MODE_BIT(MFS_PLANE_ZSTD)) && n > 0) {
		/* worth it only below size - gain * raw */
		double limit = (double)size - MFS_PLANE_MIN_GAIN * (double)raw;
		if (limit >= 1) {
			size_t cap = (size_t)limit;
			uint8_t *z = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_B, cap);
			if (!z)
				return -ENOMEM;
			size_t zlen = 0;
			int rc = zstd_trial(syms, mfs_planes_sym_bytes(w, n), zstd_level, z, cap,
					    &zlen, ws);
			if (rc < 0)
				return rc;
			if (zlen > 0 && (double)zlen < limit) {
				memcpy(dst, z, zlen);
				m = MFS_PLANE_ZSTD;
				size = zlen;
			}
		}
	}
	if (m == MFS_PLANE_RAW)
		mfs_planes_pack(syms, w, n, dst);
	*mode = m;
	*len = size;
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
		int rc = mfs_zstd_frame_decode(data, len, out, mfs_planes_sym_bytes(w, n), ws);
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
	default:
		return MFS_E_CORRUPT;
	}
}
