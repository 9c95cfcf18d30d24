/*
 * tensorfile_check.h - what the tests of the weights-container parsers
 * (test_gguf, test_onnx, test_torchzip) share: a growing byte buffer to
 * build files in, the check that an accepted header's spans tile the file
 * with every tensor in its data part, a tensor looked up by name, and the
 * damage loop (random bytes flipped and files cut short, 20000 times: any
 * answer but a crash, a leak, an undocumented code or a header whose spans
 * do not tile the file).  Include after testhelp.h.
 */
#ifndef MFS_TENSORFILE_CHECK_H
#define MFS_TENSORFILE_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* Bytes being built; free(p) when done. */
typedef struct buf {
	uint8_t *p;
	size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n)
{
	if (!n)
		return;
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

/* The spans of @p h tile the file, and every tensor (an empty one too) lies
 * in the data part. */
static int spans_ok(const mfs_st_header *h)
{
	mfs_st_span *s;
	size_t n;
	uint64_t off = 0;
	int ok = 1;
	if (mfs_st_spans(h, &s, &n) != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		ok &= s[i].off == off && s[i].len > 0;
		off += s[i].len;
	}
	free(s);
	for (size_t i = 0; i < h->n_tensors; i++)
		ok &= h->tensors[i].begin >= h->data_start &&
		      h->tensors[i].end <= h->file_size;
	return ok && off == h->file_size;
}

static const mfs_st_tensor *find(const mfs_st_header *h, const char *name)
{
	for (size_t i = 0; i < h->n_tensors; i++)
		if (!strcmp(h->tensors[i].name, name))
			return &h->tensors[i];
	return NULL;
}

/* A parser over built bytes (the test's own wrapper of mfs_*_parse). */
typedef int (*tf_parse_fn)(const buf *b, mfs_st_header *h, mfs_errmsg *e);

/*
 * Damage @p valid 20000 ways (1 to 4 random bytes changed; every tenth cut
 * short at a random length) and parse each: accepted ones must pass
 * spans_ok, refused ones answer MFS_E_FORMAT, MFS_E_UNSUPPORTED or
 * MFS_E_TOOBIG.  Prints how many still parsed ("20000 damaged WHAT: N
 * still parse").
 */
static void tf_mutations(const buf *valid, tf_parse_fn parse, uint64_t *seed,
			 const char *what)
{
	buf x = {0};
	put(&x, valid->p, valid->n);
	int accepted = 0;
	for (int it = 0; it < 20000; it++) {
		memcpy(x.p, valid->p, valid->n);
		int flips = 1 + (int)(test_rand(seed) % 4);
		for (int k = 0; k < flips; k++)
			x.p[test_rand(seed) % valid->n] = (uint8_t)test_rand(seed);
		x.n = it % 10 ? valid->n : (size_t)(test_rand(seed) % valid->n);
		mfs_st_header h;
		int rc = parse(&x, &h, NULL);
		if (rc == 0) {
			accepted++;
			CHECK(spans_ok(&h));
			mfs_st_header_free(&h);
		} else {
			CHECK(rc == MFS_E_FORMAT || rc == MFS_E_UNSUPPORTED ||
			      rc == MFS_E_TOOBIG);
		}
	}
	fprintf(stderr, "  20000 damaged %s: %d still parse\n", what, accepted);
	free(x.p);
}

#endif
