/*
 * fuzz_safetensors.c - libFuzzer harness for the safetensors header parser.
 * The input is a whole file: the 8-byte length, the header, the data.  The
 * parser must never crash or leak, must return 0 or MFS_E_FORMAT with a
 * message, and when it accepts a file its spans must tile it exactly.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define FUZZ_ASSERT(c)                                                                   \
	do {                                                                             \
		if (!(c))                                                                \
			__builtin_trap();                                                \
	} while (0)

static void check_spans(const mfs_st_header *h)
{
	mfs_st_span *s;
	size_t n;
	uint64_t off = 0;

	FUZZ_ASSERT(mfs_st_spans(h, &s, &n) == 0);
	FUZZ_ASSERT(n >= 1 && s[0].len == h->data_start && s[0].tensor == -1);
	for (size_t i = 0; i < n; i++) {
		FUZZ_ASSERT(s[i].off == off && s[i].len > 0);
		if (s[i].tensor >= 0) {
			const mfs_st_tensor *t;
			FUZZ_ASSERT((size_t)s[i].tensor < h->n_tensors);
			t = &h->tensors[s[i].tensor];
			FUZZ_ASSERT(t->begin == s[i].off &&
				    t->end - t->begin == s[i].len);
		}
		off += s[i].len;
	}
	FUZZ_ASSERT(off == h->file_size);
	free(s);
}

static void check_header(const mfs_st_header *h)
{
	for (size_t i = 0; i < h->n_tensors; i++) {
		const mfs_st_tensor *t = &h->tensors[i];
		uint64_t bytes = (uint64_t)mfs_dtype_bits(t->dtype);

		FUZZ_ASSERT(t->name && t->dtype != MFS_DT_UNKNOWN);
		FUZZ_ASSERT(t->ndim <= MFS_ST_MAX_DIMS);
		FUZZ_ASSERT(h->data_start <= t->begin && t->begin <= t->end &&
			    t->end <= h->file_size);
		if (i)
			FUZZ_ASSERT(h->tensors[i - 1].begin <= t->begin);
		/* The byte size agrees with the shape (the parser proved no overflow). */
		for (uint32_t d = 0; d < t->ndim; d++)
			bytes *= t->shape[d];
		FUZZ_ASSERT(bytes / 8 == t->end - t->begin && bytes % 8 == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t first8[8] = {0};
	uint64_t n;
	mfs_errmsg err = {0};
	mfs_st_header h;
	int rc;

	memcpy(first8, data, size < 8 ? size : 8);
	rc = mfs_st_header_len(first8, size, &n, "fuzz.safetensors", &err);
	if (rc) {
		FUZZ_ASSERT(rc == MFS_E_FORMAT && err.msg[0]);
		return 0;
	}
	/* An exact-size copy, so ASan sees any read past the header. */
	char *json = malloc(n ? n : 1);
	if (!json)
		return 0;
	memcpy(json, data + 8, n);
	rc = mfs_st_parse(json, n, size, &h, "fuzz.safetensors", &err);
	free(json);
	if (rc) {
		FUZZ_ASSERT((rc == MFS_E_FORMAT && err.msg[0]) || rc == -ENOMEM);
		FUZZ_ASSERT(h.tensors == NULL && h.n_tensors == 0);
		return 0;
	}
	check_header(&h);
	check_spans(&h);
	mfs_st_header_free(&h);
	return 0;
}
