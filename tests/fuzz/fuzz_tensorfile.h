/*
 * fuzz_tensorfile.h - the fuzz harness of the weights-container parsers
 * (torchzip, gguf, onnx: each fuzz_*.c names its parse function and calls
 * fuzz_tensorfile_one).  The input is a whole file, read through a
 * positioned reader over an exact-size copy (so ASan sees any read past
 * it).  The parser must never crash or leak, must answer 0 or one of its
 * documented codes with a message, and on a header it accepted the checks
 * are: tensors inside the file and past data_start, sorted, not sharing
 * bytes, byte sizes that agree with dtype and shape, and spans that tile the
 * file exactly.
 */
#ifndef MFS_FUZZ_TENSORFILE_H
#define MFS_FUZZ_TENSORFILE_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "preader.h"
#include "safetensors.h"

#define FUZZ_ASSERT(c)                                                                   \
	do {                                                                             \
		if (!(c))                                                                \
			__builtin_trap();                                                \
	} while (0)

static void fuzz_check_header(const mfs_st_header *h)
{
	uint64_t reach = 0;
	FUZZ_ASSERT(h->data_start >= 8 && h->data_start <= h->file_size);
	for (size_t i = 0; i < h->n_tensors; i++) {
		const mfs_st_tensor *t = &h->tensors[i];
		uint64_t bits = mfs_dtype_bits(t->dtype);
		FUZZ_ASSERT(t->name && t->dtype != MFS_DT_UNKNOWN &&
			    t->ndim <= MFS_ST_MAX_DIMS);
		FUZZ_ASSERT(h->data_start <= t->begin && t->begin <= t->end &&
			    t->end <= h->file_size);
		if (i)
			FUZZ_ASSERT(h->tensors[i - 1].begin <= t->begin);
		if (t->begin < t->end) {
			FUZZ_ASSERT(t->begin >= reach);
			reach = t->end;
		}
		for (uint32_t d = 0; d < t->ndim; d++)
			bits *= t->shape[d]; /* the parser proved the product fits */
		FUZZ_ASSERT(bits % 8 == 0 && bits / 8 == t->end - t->begin);
	}
	mfs_st_span *s;
	size_t n;
	uint64_t off = 0;
	FUZZ_ASSERT(mfs_st_spans(h, &s, &n) == 0);
	for (size_t i = 0; i < n; i++) {
		FUZZ_ASSERT(s[i].off == off && s[i].len > 0);
		off += s[i].len;
	}
	FUZZ_ASSERT(off == h->file_size);
	free(s);
}

/* A container parser: mfs_tz_parse, mfs_gguf_parse, mfs_onnx_parse. */
typedef int (*fuzz_tensorfile_parse_fn)(const mfs_preader *src, mfs_st_header *out,
					const char *what, mfs_errmsg *err);

/* One fuzz input through @p parse, as the file @p what; always returns 0. */
static int fuzz_tensorfile_one(const uint8_t *data, size_t size,
			       fuzz_tensorfile_parse_fn parse, const char *what)
{
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	mfs_preader r;
	mfs_preader_mem(&r, copy, size);
	mfs_st_header h;
	mfs_errmsg err = {0};
	int rc = parse(&r, &h, what, &err);
	if (rc) {
		FUZZ_ASSERT(rc == MFS_E_FORMAT || rc == MFS_E_UNSUPPORTED ||
			    rc == MFS_E_TOOBIG || rc == -ENOMEM);
		FUZZ_ASSERT(rc == -ENOMEM || err.msg[0]);
		FUZZ_ASSERT(h.tensors == NULL && h.n_tensors == 0);
	} else {
		fuzz_check_header(&h);
		mfs_st_header_free(&h);
	}
	free(copy);
	return 0;
}

#endif
