/* test_gguf.c - the GGUF parser: on real GGUF files of the fixture model
 * (tests/e2e/fixtures.py, minilm-formats: F16 and Q8_0 conversions of its
 * model.safetensors, checked there against the gguf package's reader), on
 * files built here, and on broken ones: truncated, huge counts, strings and
 * arrays past the end, offsets past EOF or unaligned, overlapping tensors,
 * duplicate names, unknown types. */
#include <math.h>

#include "testhelp.h"
#include "tensorfile_check.h"

#include "gguf.h"
#include "testdata.h"

static uint64_t seed;

static void put32(buf *b, uint32_t v)
{
	uint8_t c[4];
	for (int i = 0; i < 4; i++)
		c[i] = (uint8_t)(v >> (8 * i));
	put(b, c, 4);
}

static void put64(buf *b, uint64_t v)
{
	put32(b, (uint32_t)v);
	put32(b, (uint32_t)(v >> 32));
}

static void put_str(buf *b, const char *s)
{
	put64(b, strlen(s));
	put(b, s, strlen(s));
}

/* One tensor info to build. */
typedef struct tinfo {
	const char *name;
	uint32_t nd;
	uint64_t dims[4];
	uint32_t type;
	uint64_t off;
} tinfo;

/* Header (version 3, @p n_kv pairs given as raw bytes in @p kv), tensor
 * infos, padding to @p align, then @p data_len random bytes. */
static buf gguf_build(const buf *kv, uint64_t n_kv, const tinfo *t, size_t n,
		      uint32_t align, size_t data_len)
{
	buf b = {0};
	put(&b, "GGUF", 4);
	put32(&b, 3);
	put64(&b, n);
	put64(&b, n_kv);
	if (kv)
		put(&b, kv->p, kv->n);
	for (size_t i = 0; i < n; i++) {
		put_str(&b, t[i].name);
		put32(&b, t[i].nd);
		for (uint32_t d = 0; d < t[i].nd; d++)
			put64(&b, t[i].dims[d]);
		put32(&b, t[i].type);
		put64(&b, t[i].off);
	}
	while (b.n % align)
		put(&b, "", 1);
	for (size_t i = 0; i < data_len; i++) {
		uint8_t c = (uint8_t)test_rand(&seed);
		put(&b, &c, 1);
	}
	return b;
}

static int parse(const buf *b, mfs_st_header *h, mfs_errmsg *e)
{
	mfs_preader r;
	mfs_preader_mem(&r, b->p, b->n);
	return mfs_gguf_parse(&r, h, "test.gguf", e);
}

static float f16_to_f32(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 0x400), e - 25);
	return h & 0x8000 ? -v : v;
}

/* --------------------------------------------------------------- built */

static void test_built_valid(void)
{
	buf kv = {0};
	put_str(&kv, "general.alignment");
	put32(&kv, 4);
	put32(&kv, 64);
	put_str(&kv, "tokenizer.ggml.tokens");
	put32(&kv, 9);
	put32(&kv, 8);
	put64(&kv, 3);
	put_str(&kv, "a");
	put_str(&kv, "");
	put_str(&kv, "ccc");
	put_str(&kv, "nested");
	put32(&kv, 9);
	put32(&kv, 9); /* array of arrays of u16 */
	put64(&kv, 2);
	for (int k = 0; k < 2; k++) {
		put32(&kv, 2);
		put64(&kv, 3);
		put(&kv, "\1\0\2\0\3\0", 6);
	}
	tinfo t[] = {
	    {"q", 2, {64, 2}, 8, 128}, /* Q8_0: 4 blocks of 34 = 136 bytes */
	    {"w", 2, {3, 2}, 0, 0},    /* F32 [2,3]: 24 bytes */
	    {"e", 1, {0}, 1, 64},      /* empty F16 */
	    {"k", 1, {256}, 12, 320},  /* Q4_K: one block of 144 */
	};
	buf f = gguf_build(&kv, 3, t, 4, 64, 464);
	mfs_st_header h;
	mfs_errmsg e = {0};
	CHECK_EQ_INT(parse(&f, &h, &e), 0);
	if (e.msg[0])
		fprintf(stderr, "  %s\n", e.msg);
	REQUIRE(h.n_tensors == 4);
	CHECK_EQ_INT(h.data_start % 64, 0);
	const mfs_st_tensor *q = find(&h, "q"), *w = find(&h, "w"), *k = find(&h, "k");
	REQUIRE(q && w && k);
	CHECK_EQ_INT(q->dtype, MFS_DT_U8);
	CHECK_EQ_INT(q->ndim, 1);
	CHECK_EQ_INT(q->end - q->begin, 136);
	CHECK_EQ_INT(q->begin, h.data_start + 128);
	CHECK_EQ_INT(w->dtype, MFS_DT_F32);
	CHECK_EQ_INT(w->ndim, 2);
	CHECK_EQ_INT(w->shape[0], 2); /* slowest first */
	CHECK_EQ_INT(w->shape[1], 3);
	CHECK_EQ_INT(w->begin, h.data_start);
	CHECK_EQ_INT(k->end - k->begin, 144);
	CHECK(h.tensors[0].begin <= h.tensors[1].begin);
	CHECK(spans_ok(&h));
	mfs_st_header_free(&h);
	free(f.p);

	/* without general.alignment: 32 */
	tinfo one[] = {{"w", 1, {4}, 0, 0}};
	f = gguf_build(NULL, 0, one, 1, 32, 16);
	CHECK_EQ_INT(parse(&f, &h, NULL), 0);
	CHECK_EQ_INT(h.data_start % 32, 0);
	mfs_st_header_free(&h);
	free(f.p);
	free(kv.p);
}

/* @p f is refused with @p want and a message holding @p says. */
static void refused(buf *f, int want, const char *says)
{
	mfs_st_header h;
	mfs_errmsg e = {0};
	CHECK_EQ_INT(parse(f, &h, &e), want);
	CHECK(h.tensors == NULL);
	if (says && !strstr(e.msg, says)) {
		CHECK(!"message");
		fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e.msg, says);
	}
	free(f->p);
}

static void test_built_broken(void)
{
	tinfo one[] = {{"w", 1, {4}, 0, 0}};
	buf f, kv;

	/* truncated: every cut of a small valid file */
	buf ok = gguf_build(NULL, 0, one, 1, 32, 16);
	for (size_t n = 0; n < ok.n; n++) {
		buf c = {0};
		put(&c, ok.p, n);
		mfs_st_header h;
		if (n == 0)
			c.p = realloc(c.p, 1);
		CHECK(parse(&c, &h, NULL) < 0);
		free(c.p);
	}
	free(ok.p);

	/* counts the bytes cannot hold */
	f = gguf_build(NULL, 0, one, 1, 32, 16);
	for (int i = 0; i < 8; i++)
		f.p[8 + i] = 0xff;
	refused(&f, MFS_E_FORMAT, "claims");
	f = gguf_build(NULL, 0, one, 1, 32, 16);
	f.p[16 + 4] = 0x40; /* n_kv = 2^38 */
	refused(&f, MFS_E_FORMAT, "claims");

	/* a metadata string and a metadata array past the end */
	kv = (buf){0};
	put_str(&kv, "k");
	put32(&kv, 8);
	put64(&kv, 1ull << 40);
	f = gguf_build(&kv, 1, one, 1, 32, 16);
	refused(&f, MFS_E_FORMAT, "past the end");
	free(kv.p);
	kv = (buf){0};
	put_str(&kv, "k");
	put32(&kv, 9);
	put32(&kv, 10);
	put64(&kv, 1ull << 61); /* u64 elements: the size overflows */
	f = gguf_build(&kv, 1, one, 1, 32, 16);
	CHECK(parse(&f, &(mfs_st_header){0}, NULL) < 0);
	free(f.p);
	free(kv.p);
	kv = (buf){0};
	put_str(&kv, "k");
	put32(&kv, 9);
	put32(&kv, 8);
	put64(&kv, 1ull << 40); /* strings: more than the bytes left */
	f = gguf_build(&kv, 1, one, 1, 32, 16);
	refused(&f, MFS_E_FORMAT, "past the end");
	free(kv.p);

	/* arrays nested too deep; an unknown value type; a bad alignment */
	kv = (buf){0};
	put_str(&kv, "k");
	put32(&kv, 9);
	for (int d = 0; d < 6; d++) {
		put32(&kv, 9);
		put64(&kv, 1);
	}
	put32(&kv, 0);
	put64(&kv, 0);
	f = gguf_build(&kv, 1, one, 1, 32, 16);
	refused(&f, MFS_E_FORMAT, "nest");
	free(kv.p);
	kv = (buf){0};
	put_str(&kv, "k");
	put32(&kv, 13);
	f = gguf_build(&kv, 1, one, 1, 32, 16);
	refused(&f, MFS_E_FORMAT, "not a GGUF type");
	free(kv.p);
	kv = (buf){0};
	put_str(&kv, "general.alignment");
	put32(&kv, 4);
	put32(&kv, 48);
	f = gguf_build(&kv, 1, one, 1, 32, 16);
	refused(&f, MFS_E_FORMAT, "power of two");
	free(kv.p);

	/* tensors: past EOF, unaligned, overlapping, twice, unknown type, a
	 * partial block, too many dimensions, an overflowing size */
	tinfo past[] = {{"w", 1, {4}, 0, 1024}};
	f = gguf_build(NULL, 0, past, 1, 32, 16);
	refused(&f, MFS_E_FORMAT, "past the end");
	tinfo un[] = {{"w", 1, {4}, 0, 8}};
	f = gguf_build(NULL, 0, un, 1, 32, 64);
	refused(&f, MFS_E_FORMAT, "alignment");
	tinfo ov[] = {{"a", 1, {16}, 0, 0}, {"b", 1, {4}, 0, 32}};
	f = gguf_build(NULL, 0, ov, 2, 32, 64);
	refused(&f, MFS_E_FORMAT, "overlaps");
	tinfo dup[] = {{"a", 1, {4}, 0, 0}, {"a", 1, {4}, 0, 32}};
	f = gguf_build(NULL, 0, dup, 2, 32, 64);
	refused(&f, MFS_E_FORMAT, "twice");
	tinfo ut[] = {{"a", 1, {4}, 9, 0}};
	f = gguf_build(NULL, 0, ut, 1, 32, 64);
	refused(&f, MFS_E_UNSUPPORTED, "ggml type 9");
	tinfo pb[] = {{"a", 1, {40}, 8, 0}};
	f = gguf_build(NULL, 0, pb, 1, 32, 64);
	refused(&f, MFS_E_FORMAT, "blocks");
	tinfo big[] = {{"a", 4, {1ull << 32, 1ull << 32, 1ull << 32, 2}, 0, 0}};
	f = gguf_build(NULL, 0, big, 1, 32, 64);
	refused(&f, MFS_E_FORMAT, "overflows");
	f = gguf_build(NULL, 0, one, 1, 32, 16);
	f.p[24 + 8 + 1] = 17; /* n_dims */
	refused(&f, MFS_E_FORMAT, "dimensions");

	/* a name over the limit; the magic; version 1 and a big-endian file */
	char longname[300];
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	tinfo ln[] = {{longname, 1, {4}, 0, 0}};
	f = gguf_build(NULL, 0, ln, 1, 32, 16);
	refused(&f, MFS_E_TOOBIG, "limit");
	f = gguf_build(NULL, 0, one, 1, 32, 16);
	f.p[0] = 'g';
	refused(&f, MFS_E_FORMAT, "GGUF");
	f = gguf_build(NULL, 0, one, 1, 32, 16);
	f.p[4] = 1;
	refused(&f, MFS_E_UNSUPPORTED, "version 1");
	f = gguf_build(NULL, 0, one, 1, 32, 16);
	f.p[4] = 0;
	f.p[7] = 3;
	refused(&f, MFS_E_UNSUPPORTED, "big-endian");
	/* no tensors: nothing to lay out */
	f = gguf_build(NULL, 0, NULL, 0, 32, 0);
	refused(&f, MFS_E_UNSUPPORTED, "no tensors");
}

static void test_built_mutations(void)
{
	buf kv = {0};
	put_str(&kv, "general.alignment");
	put32(&kv, 4);
	put32(&kv, 32);
	put_str(&kv, "s");
	put32(&kv, 9);
	put32(&kv, 8);
	put64(&kv, 2);
	put_str(&kv, "xy");
	put_str(&kv, "z");
	tinfo t[] = {{"a", 2, {32, 2}, 8, 0}, {"b", 1, {8}, 30, 96}};
	buf f = gguf_build(&kv, 2, t, 2, 32, 160);
	tf_mutations(&f, parse, &seed, "files");
	free(f.p);
	free(kv.p);
}

/* ----------------------------------------------------------------- real */

static void test_real(void)
{
	char st[1200], f16[1200], q8[1200];
	test_model_path(st, sizeof st, "minilm-formats", "model.safetensors");
	test_model_path(f16, sizeof f16, "minilm-formats", "extra/model-f16.gguf");
	test_model_path(q8, sizeof q8, "minilm-formats", "extra/model-q8_0.gguf");
	size_t sl, fl, ql;
	uint8_t *s = test_read_file(st, &sl), *a = test_read_file(f16, &fl),
		*b = test_read_file(q8, &ql);
	if (!s || !a || !b) {
		fprintf(stderr,
			"skip: the minilm-formats GGUF files are missing (python "
			"tests/e2e/fixtures.py path minilm-formats builds them)\n");
		free(s);
		free(a);
		free(b);
		return;
	}
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = hl << 8 | s[i];
	mfs_st_header sh, ah, bh;
	mfs_errmsg e = {0};
	mfs_preader r;
	REQUIRE(mfs_st_parse((const char *)s + 8, hl, sl, &sh, "model.safetensors",
			     NULL) == 0);
	mfs_preader_mem(&r, a, fl);
	CHECK_EQ_INT(mfs_gguf_parse(&r, &ah, "model-f16.gguf", &e), 0);
	mfs_preader_mem(&r, b, ql);
	CHECK_EQ_INT(mfs_gguf_parse(&r, &bh, "model-q8_0.gguf", &e), 0);
	if (e.msg[0])
		fprintf(stderr, "  %s\n", e.msg);
	/* every float tensor of the model; position_ids (I64) is left out */
	CHECK_EQ_INT(ah.n_tensors, sh.n_tensors - 1);
	CHECK_EQ_INT(bh.n_tensors, sh.n_tensors - 1);
	CHECK(spans_ok(&ah));
	CHECK(spans_ok(&bh));
	size_t f32_same = 0, q8_checked = 0, n_q8 = 0;
	for (size_t i = 0; i < ah.n_tensors; i++) {
		const mfs_st_tensor *t = &ah.tensors[i], *o = find(&sh, t->name);
		const mfs_st_tensor *q = find(&bh, t->name);
		CHECK(o && q);
		if (!o || !q)
			continue;
		CHECK_EQ_INT(t->ndim, o->ndim);
		CHECK(!memcmp(t->shape, o->shape, o->ndim * sizeof *o->shape));
		if (t->dtype == MFS_DT_F32) {
			/* F32 tensors are the safetensors bytes: same chunks */
			f32_same += t->end - t->begin == o->end - o->begin &&
				    !memcmp(a + t->begin, s + o->begin,
					    (size_t)(o->end - o->begin));
		} else {
			CHECK_EQ_INT(t->dtype, MFS_DT_F16);
			CHECK_EQ_INT(t->end - t->begin, (o->end - o->begin) / 2);
		}
		if (q->dtype == MFS_DT_U8) {
			/* Q8_0: the first block's values are the weights to one step */
			n_q8++;
			CHECK_EQ_INT(q->end - q->begin,
				     (o->end - o->begin) / 4 / 32 * 34);
			const uint8_t *blk = b + q->begin;
			float d = f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
			int good = 1;
			for (int k = 0; k < 32; k++) {
				float w;
				memcpy(&w, s + o->begin + 4 * k, 4);
				good &=
				    fabsf((float)(int8_t)blk[2 + k] * d - w) <=
				    d * 0.6f + 1e-6f; /* half a step, and the f16 rounding
							 of d over 127 steps */
			}
			q8_checked += good;
		}
	}
	CHECK(f32_same > 0);
	CHECK(n_q8 > 30);
	CHECK_EQ_INT(q8_checked, n_q8);
	fprintf(stderr,
		"  model-f16.gguf: %zu tensors, %zu F32 ones byte-identical to the "
		"safetensors; model-q8_0.gguf: %zu Q8_0 tensors, first blocks decode "
		"to the weights\n",
		ah.n_tensors, f32_same, n_q8);

	/* cuts of the real file: refused up to the end of the last tensor */
	uint64_t last_end = 0;
	for (size_t i = 0; i < ah.n_tensors; i++)
		if (ah.tensors[i].end > last_end)
			last_end = ah.tensors[i].end;
	for (int k = 0; k < 100; k++) {
		size_t n = (size_t)(test_rand(&seed) % last_end);
		mfs_st_header x;
		mfs_preader_mem(&r, a, n);
		CHECK(mfs_gguf_parse(&r, &x, "cut.gguf", NULL) < 0);
	}
	mfs_st_header_free(&sh);
	mfs_st_header_free(&ah);
	mfs_st_header_free(&bh);
	free(s);
	free(a);
	free(b);
}

int main(void)
{
	seed = test_seed();
	RUN(test_built_valid);
	RUN(test_built_broken);
	RUN(test_built_mutations);
	RUN(test_real);
	return test_report();
}
