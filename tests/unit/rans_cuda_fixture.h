/*
 * rans_cuda_fixture.h - chunks for the rans GPU test and benchmark: the
 * float tensors of a safetensors file cut into chunks from each tensor's
 * start (as ingest cuts them), rans-encoded on the CPU.
 */
#ifndef MFS_RANS_CUDA_FIXTURE_H
#define MFS_RANS_CUDA_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "testdata.h"

typedef struct fx_chunk {
	const uint8_t *raw; /* into the file's buffer */
	size_t len;
	uint8_t *enc; /* malloc'd payload */
	size_t enc_len;
} fx_chunk;

typedef struct fx_set {
	uint8_t *file;
	fx_chunk *v;
	size_t n, cap, raw, stored;
} fx_set;

static inline int fx_push(fx_set *s, const uint8_t *raw, size_t len, mfs_dtype dt,
			  mfs_codec_ws *ws)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		fx_chunk *v = realloc(s->v, cap * sizeof *v);
		if (!v)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	fx_chunk *c = &s->v[s->n];
	size_t cap = mfs_codec_get(MFS_CODEC_RANS)->bound(len);
	mfs_encode_params p = {.dtype = dt};
	c->raw = raw;
	c->len = len;
	c->enc = malloc(cap);
	if (!c->enc ||
	    mfs_codec_encode(MFS_CODEC_RANS, &p, raw, len, c->enc, cap, &c->enc_len, ws))
		return -1;
	s->raw += len;
	s->stored += c->enc_len;
	s->n++;
	return 0;
}

/* The float tensors of @p path (of dtype @p want, or any float when
 * MFS_DT_UNKNOWN), in chunks of @p chunk bytes.  @return 0, or -1 when the
 * file cannot be read. */
static inline int fx_load(fx_set *s, const char *path, mfs_dtype want, size_t chunk,
			  mfs_codec_ws *ws)
{
	test_st st;
	if (test_st_open(&st, path) < 0)
		return -1;
	s->file = st.file; /* the chunks point into it; fx_free frees it */
	mfs_dtype t;
	const uint8_t *data;
	size_t len;
	while (test_st_next(&st, &t, &data, &len)) {
		if (!mfs_dtype_is_float(t) || (want != MFS_DT_UNKNOWN && t != want))
			continue;
		for (size_t off = 0; off < len; off += chunk)
			if (fx_push(s, data + off, len - off < chunk ? len - off : chunk,
				    t, ws))
				return -1;
	}
	return 0;
}

static inline void fx_free(fx_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].enc);
	free(s->v);
	free(s->file);
	memset(s, 0, sizeof *s);
}

#endif
