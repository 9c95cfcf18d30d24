/*
 * testdata.h - the real model files the C tests read (tests/data/models,
 * built by tests/e2e/fixtures.py, or $MFS_TEST_DATA/models): where they
 * are, a whole file read into memory, and the tensors of a safetensors file
 * one after another.  A test that finds a file missing says so and goes on
 * (the fixtures are optional on a fresh checkout).
 */
#ifndef MFS_TESTDATA_H
#define MFS_TESTDATA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

/*
 * $MFS_TEST_DATA/models, else tests/data/models beside this header
 * (__FILE__ is the header's path as the compiler was given it).
 */
static inline void test_models_dir(char *out, size_t cap)
{
	const char *env = getenv("MFS_TEST_DATA");
	if (env) {
		snprintf(out, cap, "%s/models", env);
		return;
	}
	const char *f = __FILE__; /* .../tests/unit/testdata.h */
	const char *slash = strrchr(f, '/');
	snprintf(out, cap, "%.*s/../data/models", (int)(slash ? slash - f : 0), f);
}

/* The path of @p file in model folder @p model ("minilm-bf16"). */
static inline void test_model_path(char *out, size_t cap, const char *model,
				   const char *file)
{
	char dir[1024];
	test_models_dir(dir, sizeof dir);
	snprintf(out, cap, "%s/%s/%s", dir, model, file);
}

/*
 * The whole of @p path in a malloc'd buffer (the caller frees it), its size
 * in *len; NULL when it cannot be read or is empty.
 */
static inline uint8_t *test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	long sz = -1;
	if (fseek(f, 0, SEEK_END) == 0)
		sz = ftell(f);
	uint8_t *b = sz > 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)sz) : NULL;
	if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = b ? (size_t)sz : 0;
	return b;
}

/* A safetensors file in memory and where the walk over its tensors is. */
typedef struct test_st {
	uint8_t *file; /* malloc'd, the whole file */
	size_t len;
	const char *h, *hend, *at; /* the JSON header, the walk's place in it */
	const uint8_t *data;	   /* the byte buffer after the header */
	size_t data_len;
	char name[256]; /* the tensor test_st_next() gave last */
} test_st;

/* Read @p path.  @return 0, or -1 when it is missing or has no valid header
 * (nothing to free then). */
static inline int test_st_open(test_st *st, const char *path)
{
	memset(st, 0, sizeof *st);
	st->file = test_read_file(path, &st->len);
	if (!st->file)
		return -1;
	uint64_t hlen = 0;
	for (int i = 7; st->len >= 8 && i >= 0; i--)
		hlen = hlen << 8 | st->file[i];
	if (st->len < 8 || hlen > st->len - 8) {
		free(st->file);
		st->file = NULL;
		return -1;
	}
	st->h = st->at = (const char *)st->file + 8;
	st->hend = st->h + hlen;
	st->data = st->file + 8 + hlen;
	st->data_len = st->len - 8 - (size_t)hlen;
	return 0;
}

/*
 * The next tensor in header order: its name (st->name, until the next
 * call), dtype (MFS_DT_UNKNOWN for a name dtype.h does not know) and bytes
 * (pointers into st->file).  The header's
 * objects are read as {"dtype":"..","shape":[..],"data_offsets":[a,b]};
 * a tensor whose offsets fall outside the buffer is passed over.
 * @return 1 with a tensor, 0 at the end
 */
static inline int test_st_next(test_st *st, mfs_dtype *dt, const uint8_t **p, size_t *len)
{
	while (st->at < st->hend) {
		const char *d =
		    memmem(st->at, (size_t)(st->hend - st->at), "\"dtype\":\"", 9);
		if (!d)
			break;
		char name[16] = {0};
		sscanf(d + 9, "%15[^\"]", name);
		const char *o =
		    memmem(d, (size_t)(st->hend - d), "\"data_offsets\":[", 16);
		if (!o)
			break;
		unsigned long long a = 0, b = 0;
		sscanf(o + 16, "%llu,%llu", &a, &b);
		st->at = o + 16;
		if (b < a || b > st->data_len)
			continue;
		/* the name: the key before the object, "name":{"dtype":... */
		const char *q = d - st->h >= 3 ? d - 3 : st->h,
			   *k = q; /* q: its closing quote */
		while (k > st->h && k[-1] != '"')
			k--;
		snprintf(st->name, sizeof st->name, "%.*s", (int)(q - k), k);
		*dt = mfs_dtype_from_name(name);
		*p = st->data + a;
		*len = (size_t)(b - a);
		return 1;
	}
	st->at = st->hend;
	return 0;
}

static inline void test_st_close(test_st *st)
{
	free(st->file);
	memset(st, 0, sizeof *st);
}

#endif
