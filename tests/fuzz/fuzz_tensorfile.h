/*
 * fuzz_tensorfile.h - what the fuzz harnesses of the weights-container
 * parsers (torchzip, gguf) check on a header they accepted: tensors inside
 * the file and past data_start, sorted, not sharing bytes, byte sizes that
 * agree with dtype and shape, and spans that tile the file exactly.
 */
#ifndef MFS_FUZZ_TENSORFILE_H
#define MFS_FUZZ_TENSORFILE_H

#include <stdint.h>
#include <stdlib.h>

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

#endif
