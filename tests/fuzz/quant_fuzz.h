/*
 * quant_fuzz.h - what the two quant-residual fuzz targets share: a small
 * tensor, its twin and its scales shaped by the input bytes, and one chunk
 * of it encoded and decoded with exact-size buffers (ASan sees any read or
 * write past them).
 */
#ifndef MFS_QUANT_FUZZ_H
#define MFS_QUANT_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "quant.h"

typedef struct qf_pair {
	mfs_quant_scheme s;
	mfs_dtype hp;
	size_t total;
	uint8_t *v, *codes, *scales; /* 2 * total, total, scale_len */
	size_t scale_len;
	uint64_t e0; /* the chunk */
	size_t n;
} qf_pair;

static inline uint8_t qf_byte(const uint8_t *d, size_t size, size_t i)
{
	return size ? d[i % size] : 0;
}

/*
 * The pair from 8 shaping bytes h[0..7] and the data bytes (cycled):
 * h[0]: kind, twin dtype, scale dtype, 16-bit type; h[1], h[2]: rows and
 * columns (or groups); h[3]: group or tile sides; h[4..7]: the chunk.
 * @p matched: the twin's codes are the tensor quantized (realistic
 * residuals), else the data bytes (any twin).
 */
static inline int qf_make(qf_pair *P, const uint8_t *h, const uint8_t *d, size_t size,
			  int matched)
{
	static const mfs_dtype sds[] = {MFS_DT_F32, MFS_DT_BF16, MFS_DT_F16};
	memset(P, 0, sizeof *P);
	mfs_quant_scheme *s = &P->s;
	s->kind = (mfs_quant_kind)(1 + h[0] % 4);
	s->qdtype = (h[0] >> 2) & 1 ? MFS_DT_F8_E4M3 : MFS_DT_I8;
	s->sdtype = sds[(h[0] >> 3) % 3];
	P->hp = (h[0] >> 5) & 1 ? MFS_DT_F16 : MFS_DT_BF16;
	s->rows = 1 + h[1] % 24;
	s->cols = 1 + h[2] % 96;
	if (s->kind == MFS_QUANT_GROUP) {
		s->group = 1 + h[3] % 16;
		s->cols = (uint64_t)s->group * (1 + h[2] % 8);
	} else if (s->kind == MFS_QUANT_BLOCK) {
		s->block_r = 1u << (h[3] % 6);
		s->block_c = 1u << ((h[3] >> 3) % 7);
	}
	if (mfs_quant_scheme_check(s))
		return -1;
	P->total = (size_t)(s->rows * s->cols);
	P->scale_len = (size_t)mfs_quant_scale_count(s) * (mfs_dtype_bits(s->sdtype) / 8);
	P->v = malloc(2 * P->total);
	P->codes = malloc(P->total);
	P->scales = malloc(P->scale_len);
	for (size_t i = 0; i < 2 * P->total; i++)
		P->v[i] = qf_byte(d, size, i);
	if (matched && (h[0] & 0x40)) /* weight-like: small magnitudes, both signs */
		for (size_t i = 0; i < P->total; i++)
			P->v[2 * i + 1] = (uint8_t)((P->v[2 * i + 1] & 0x80) |
						    (P->hp == MFS_DT_BF16 ? 0x3c : 0x20) |
						    (P->v[2 * i + 1] & 0x03));
	for (size_t i = 0; i < P->scale_len; i++)
		P->scales[i] = qf_byte(d, size, 7 * i + 3);
	if (matched) {
		if (mfs_quant_quantize(s, P->hp, P->v, 0, P->total, P->scales,
				       P->scale_len, P->codes))
			__builtin_trap();
	} else {
		for (size_t i = 0; i < P->total; i++)
			P->codes[i] = qf_byte(d, size, 5 * i + 1);
	}
	P->e0 = ((uint64_t)h[4] << 8 | h[5]) % P->total;
	P->n = (size_t)(((uint64_t)h[6] << 8 | h[7]) % (P->total - P->e0 + 1));
	return 0;
}

static inline void qf_free(qf_pair *P)
{
	free(P->v);
	free(P->codes);
	free(P->scales);
}

static inline void *qf_dup(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);
	if (n)
		memcpy(q, p, n);
	return q;
}

static inline void qf_geom(const qf_pair *P, mfs_chunk_geom *g)
{
	memset(g, 0, sizeof *g);
	g->dtype = P->hp;
	g->ndim = 2;
	g->shape[0] = P->s.rows;
	g->shape[1] = P->s.cols;
	g->elem_off = P->e0;
}

/* Encode the chunk; the payload is malloc'd at its exact size. */
static inline uint8_t *qf_encode(const qf_pair *P, mfs_codec_ws *ws, size_t *len)
{
	uint64_t first, count;
	mfs_quant_scale_span(&P->s, P->e0, P->n, &first, &count);
	size_t ss = mfs_dtype_bits(P->s.sdtype) / 8;
	mfs_chunk_geom g;
	qf_geom(P, &g);
	mfs_ref_data refs[2] = {
	    {MFS_REF_QUANT, P->codes + P->e0, P->n},
	    {MFS_REF_SCALE, P->scales + first * ss, (size_t)count * ss}};
	mfs_encode_params p = {
	    .dtype = P->hp, .geom = &g, .refs = refs, .n_refs = 2, .quant = &P->s};
	size_t cap = mfs_codec_get(MFS_CODEC_QUANT_RESIDUAL)->bound(2 * P->n);
	uint8_t *enc = malloc(cap);
	if (mfs_codec_encode(MFS_CODEC_QUANT_RESIDUAL, &p, P->v + 2 * P->e0, 2 * P->n,
			     enc, cap, len, ws) != 0 ||
	    *len > cap)
		__builtin_trap();
	uint8_t *exact = qf_dup(enc, *len);
	free(enc);
	return exact;
}

/*
 * Decode a payload as the chunk, with exact-size copies of the references
 * (the QUANT one @p qdelta bytes longer or shorter), into a buffer with a
 * guard after it.  @return the codec's result; traps on a guard write or
 * an error other than MFS_E_CORRUPT.
 */
static inline int qf_decode(const qf_pair *P, const uint8_t *enc, size_t len, int qdelta,
			    mfs_codec_ws *ws, uint8_t *out)
{
	uint64_t first, count;
	mfs_quant_scale_span(&P->s, P->e0, P->n, &first, &count);
	size_t ss = mfs_dtype_bits(P->s.sdtype) / 8;
	size_t qlen = (size_t)((int64_t)P->n + qdelta);
	if (qdelta < 0 && P->n < (size_t)-qdelta)
		qlen = 0;
	uint8_t *q = malloc(qlen ? qlen : 1);
	for (size_t i = 0; i < qlen; i++)
		q[i] = i < P->n ? P->codes[P->e0 + i] : 0;
	uint8_t *sc = qf_dup(P->scales + first * ss, (size_t)count * ss);
	mfs_chunk_geom g;
	qf_geom(P, &g);
	mfs_ref_data refs[2] = {{MFS_REF_QUANT, q, qlen},
				{MFS_REF_SCALE, sc, (size_t)count * ss}};
	enum { GUARD = 32 };
	uint8_t *dst = malloc(2 * P->n + GUARD);
	memset(dst + 2 * P->n, 0xa5, GUARD);
	mfs_decode_req rq = {.src = enc,
			     .src_len = len,
			     .dst = dst,
			     .dst_len = 2 * P->n,
			     .geom = &g,
			     .refs = refs,
			     .n_refs = 2};
	int rc = mfs_codec_decode(MFS_CODEC_QUANT_RESIDUAL, &rq, ws);
	if (rc != 0 && rc != MFS_E_CORRUPT)
		__builtin_trap();
	for (size_t i = 0; i < GUARD; i++)
		if (dst[2 * P->n + i] != 0xa5)
			__builtin_trap();
	if (rc == 0 && out)
		memcpy(out, dst, 2 * P->n);
	free(dst);
	free(q);
	free(sc);
	return rc;
}

#endif
