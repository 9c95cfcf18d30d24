/* test_torchzip.c - the torch.save zip parser: on real checkpoints written by
 * torch.save (tests/e2e/fixtures.py, model minilm-formats: the same weights
 * as its model.safetensors, a BF16 checkpoint with tied weights and views,
 * a legacy pickle, a pickle calling os.system), on zips built here byte by
 * byte with hand-written pickles, and on broken variants of both: truncated,
 * lying directories, huge counts, overlapping storages, foreign globals. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testhelp.h"
#include "tensorfile_check.h"

#include "testdata.h"
#include "tensorfile.h"
#include "torchzip.h"

static uint64_t seed;

/* ------------------------------------------------------------ helpers */

static void put8(buf *b, unsigned v)
{
	uint8_t c = (uint8_t)v;
	put(b, &c, 1);
}

static void put16(buf *b, unsigned v)
{
	put8(b, v & 0xff);
	put8(b, (v >> 8) & 0xff);
}

static void put32(buf *b, uint32_t v)
{
	put16(b, v & 0xffff);
	put16(b, v >> 16);
}

static void set32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* A zip entry to build: its name, bytes, and where its central entry says
 * its local header is (-1: where it was written). */
typedef struct zent {
	const char *name;
	const uint8_t *data;
	size_t len;
	long local;
	uint16_t method;
	int z64; /* sizes and offset in a zip64 extra field, as over 4 GiB */
} zent;

/* Stored entries, their central directory, the end record. */
static buf zip_build(const zent *e, size_t n)
{
	buf b = {0};
	uint32_t *off = calloc(n, sizeof *off);
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(e[i].name);
		off[i] = (uint32_t)b.n;
		put32(&b, 0x04034b50);
		put16(&b, 20);
		put16(&b, 0);
		put16(&b, e[i].method);
		put32(&b, 0);
		put32(&b, 0); /* crc: not checked by the parser */
		put32(&b, (uint32_t)e[i].len);
		put32(&b, (uint32_t)e[i].len);
		put16(&b, (unsigned)nl);
		put16(&b, 0);
		put(&b, e[i].name, nl);
		put(&b, e[i].data, e[i].len);
	}
	uint32_t cd = (uint32_t)b.n;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(e[i].name);
		uint32_t local = e[i].local >= 0 ? (uint32_t)e[i].local : off[i];
		uint32_t big = 0xffffffffu;
		put32(&b, 0x02014b50);
		put16(&b, 20);
		put16(&b, 20);
		put16(&b, 0);
		put16(&b, e[i].method);
		put32(&b, 0);
		put32(&b, 0);
		put32(&b, e[i].z64 ? big : (uint32_t)e[i].len);
		put32(&b, e[i].z64 ? big : (uint32_t)e[i].len);
		put16(&b, (unsigned)nl);
		put16(&b, e[i].z64 ? 28 : 0);
		put16(&b, 0);
		put16(&b, 0);
		put16(&b, 0);
		put32(&b, 0);
		put32(&b, e[i].z64 ? big : local);
		put(&b, e[i].name, nl);
		if (e[i].z64) { /* usize, csize, local offset */
			put16(&b, 1);
			put16(&b, 24);
			for (int k = 0; k < 2; k++) {
				put32(&b, (uint32_t)e[i].len);
				put32(&b, 0);
			}
			put32(&b, local);
			put32(&b, 0);
		}
	}
	uint32_t cd_len = (uint32_t)b.n - cd;
	put32(&b, 0x06054b50);
	put16(&b, 0);
	put16(&b, 0);
	put16(&b, (unsigned)n);
	put16(&b, (unsigned)n);
	put32(&b, cd_len);
	put32(&b, cd);
	put16(&b, 0);
	free(off);
	return b;
}

/* Pickle pieces, protocol 2, as torch.save writes them. */
static void pk_str(buf *b, const char *s)
{
	put8(b, 'X');
	put32(b, (uint32_t)strlen(s));
	put(b, s, strlen(s));
}

static void pk_int(buf *b, unsigned v)
{
	put8(b, 'J');
	put32(b, v);
}

static void pk_global(buf *b, const char *mod, const char *name)
{
	put8(b, 'c');
	put(b, mod, strlen(mod));
	put8(b, '\n');
	put(b, name, strlen(name));
	put8(b, '\n');
}

/* _rebuild_tensor_v2(("storage", cls, key, "cpu", numel), off, shape, stride,
 * False, OrderedDict()) on the stack; @p nd dims, row-major strides. */
static void pk_tensor(buf *b, const char *cls, const char *key, unsigned numel,
		      unsigned off, const unsigned *shape, int nd)
{
	pk_global(b, "torch._utils", "_rebuild_tensor_v2");
	put8(b, '(');
	put8(b, '(');
	pk_str(b, "storage");
	pk_global(b, "torch", cls);
	pk_str(b, key);
	pk_str(b, "cpu");
	pk_int(b, numel);
	put8(b, 't');
	put8(b, 'Q');
	pk_int(b, off);
	put8(b, '(');
	for (int i = 0; i < nd; i++)
		pk_int(b, shape[i]);
	put8(b, 't');
	put8(b, '(');
	for (int i = 0; i < nd; i++) {
		unsigned s = 1;
		for (int k = i + 1; k < nd; k++)
			s *= shape[k];
		pk_int(b, s);
	}
	put8(b, 't');
	put8(b, 0x89);
	pk_global(b, "collections", "OrderedDict");
	put8(b, ')');
	put8(b, 'R');
	put8(b, 't');
	put8(b, 'R');
}

static int parse_mem(const buf *b, mfs_st_header *h, mfs_errmsg *e)
{
	mfs_preader r;
	mfs_preader_mem(&r, b->p, b->n);
	return mfs_tz_parse(&r, h, "test.pt", e);
}

/* A valid two-tensor archive: w (F32 [2,3], storage "0"), b (BF16 [4],
 * storage "1"), in a dict; @p pkl_extra replaces the dict's second value
 * with what it holds when given. */
static buf two_tensor_pickle(void)
{
	buf p = {0};
	unsigned s23[] = {2, 3}, s4[] = {4};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, '}');
	put8(&p, '(');
	pk_str(&p, "w");
	pk_tensor(&p, "FloatStorage", "0", 6, 0, s23, 2);
	pk_str(&p, "b");
	pk_tensor(&p, "BFloat16Storage", "1", 4, 0, s4, 1);
	put8(&p, 'u');
	put8(&p, '.');
	return p;
}

static buf two_tensor_zip(const buf *pkl)
{
	static uint8_t d0[24], d1[8];
	for (size_t i = 0; i < sizeof d0; i++)
		d0[i] = (uint8_t)test_rand(&seed);
	for (size_t i = 0; i < sizeof d1; i++)
		d1[i] = (uint8_t)test_rand(&seed);
	zent e[] = {
	    {"arch/data.pkl", pkl->p, pkl->n, -1, 0, 0},
	    {"arch/data/0", d0, sizeof d0, -1, 0, 0},
	    {"arch/data/1", d1, sizeof d1, -1, 0, 0},
	    {"arch/version", (const uint8_t *)"3\n", 2, -1, 0, 0},
	};
	return zip_build(e, 4);
}

/* ------------------------------------------------------ real checkpoints */

static void test_real_same_as_safetensors(void)
{
	char bin[1200], st[1200];
	test_model_path(bin, sizeof bin, "minilm-formats", "pytorch_model.bin");
	test_model_path(st, sizeof st, "minilm-formats", "model.safetensors");
	size_t bl, sl;
	uint8_t *b = test_read_file(bin, &bl), *s = test_read_file(st, &sl);
	if (!b || !s) {
		fprintf(stderr,
			"skip: %s or %s missing (python tests/e2e/fixtures.py path "
			"minilm-formats builds them)\n",
			bin, st);
		free(b);
		free(s);
		return;
	}
	mfs_st_header th, sh;
	mfs_errmsg e = {0};
	mfs_preader r;
	mfs_preader_mem(&r, b, bl);
	CHECK_EQ_INT(mfs_tz_parse(&r, &th, "pytorch_model.bin", &e), 0);
	if (e.msg[0])
		fprintf(stderr, "  %s\n", e.msg);
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = hl << 8 | s[i];
	REQUIRE(mfs_st_parse((const char *)s + 8, hl, sl, &sh, "model.safetensors",
			     NULL) == 0);
	CHECK_EQ_INT(th.n_tensors, sh.n_tensors);
	CHECK(spans_ok(&th));
	size_t same = 0;
	for (size_t i = 0; i < sh.n_tensors; i++) {
		const mfs_st_tensor *a = &sh.tensors[i], *t = find(&th, a->name);
		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK_EQ_INT(t->dtype, a->dtype);
		CHECK_EQ_INT(t->ndim, a->ndim);
		CHECK(!memcmp(t->shape, a->shape, a->ndim * sizeof *a->shape));
		CHECK_EQ_INT(t->end - t->begin, a->end - a->begin);
		/* torch.save aligns storages to 64 bytes, safetensors to 8 */
		CHECK_EQ_INT(t->begin % 64, 0);
		if (t->end - t->begin == a->end - a->begin &&
		    !memcmp(b + t->begin, s + a->begin, (size_t)(a->end - a->begin)))
			same++;
	}
	CHECK_EQ_INT(same, sh.n_tensors);
	fprintf(stderr,
		"  pytorch_model.bin: %zu storages, %zu byte-identical to "
		"model.safetensors' tensors\n",
		th.n_tensors, same);

	/* every cut of the file is refused, never a crash: the end record and the
	 * central directory are at the end, so nearly every cut loses them */
	size_t cuts = 0;
	for (int k = 0; k < 200; k++) {
		size_t n =
		    k < 100 ? bl - 1 - (size_t)k * 37 : (size_t)(test_rand(&seed) % bl);
		mfs_st_header x;
		mfs_preader_mem(&r, b, n);
		int rc = mfs_tz_parse(&r, &x, "cut.bin", &e);
		CHECK(rc < 0);
		CHECK(x.tensors == NULL);
		cuts += rc == MFS_E_FORMAT;
	}
	CHECK_EQ_INT(cuts, 200);

	/* torch.save writes zip64 end records, which override the classic one:
	 * a lie there (10^9 entries, a directory past the file) is caught */
	const uint8_t *z64 = NULL;
	for (size_t i = bl - 22; i-- > 0 && !z64;)
		if (!memcmp(b + i, "PK\6\6", 4))
			z64 = b + i;
	REQUIRE(z64 != NULL);
	uint8_t *lie = malloc(bl);
	size_t zo = (size_t)(z64 - b);
	mfs_st_header x;
	memcpy(lie, b, bl);
	for (int k = 0; k < 16; k++)
		lie[zo + 24 + k] = (uint8_t)((uint64_t)1000000000 >> (8 * (k % 8)));
	mfs_preader_mem(&r, lie, bl);
	memset(&e, 0, sizeof e);
	CHECK_EQ_INT(mfs_tz_parse(&r, &x, "lying.bin", &e), MFS_E_FORMAT);
	CHECK(strstr(e.msg, "claims") != NULL);
	memcpy(lie, b, bl);
	lie[zo + 48 + 5] = 0x10; /* directory offset + 2^44 */
	CHECK_EQ_INT(mfs_tz_parse(&r, &x, "lying.bin", NULL), MFS_E_FORMAT);
	memcpy(lie, b, bl);
	lie[bl - 22 - 20 + 8 + 4] = 0x10; /* the locator points past the file */
	CHECK_EQ_INT(mfs_tz_parse(&r, &x, "lying.bin", NULL), MFS_E_FORMAT);
	free(lie);
	mfs_st_header_free(&th);
	mfs_st_header_free(&sh);
	free(b);
	free(s);
}

static void test_real_tied_views(void)
{
	char p[1200];
	test_model_path(p, sizeof p, "minilm-formats", "extra/tied-bf16.pt");
	size_t n;
	uint8_t *b = test_read_file(p, &n);
	if (!b) {
		fprintf(stderr, "skip: %s missing\n", p);
		return;
	}
	mfs_st_header h;
	mfs_errmsg e = {0};
	mfs_preader r;
	mfs_preader_mem(&r, b, n);
	CHECK_EQ_INT(mfs_tz_parse(&r, &h, "tied-bf16.pt", &e), 0);
	if (e.msg[0])
		fprintf(stderr, "  %s\n", e.msg);
	CHECK(spans_ok(&h));
	/* the tied weight and the views are no storages of their own */
	CHECK(find(&h, "tied.decoder.weight") == NULL);
	CHECK(find(&h, "views.query.head0") == NULL);
	const mfs_st_tensor *emb = find(&h, "model.embeddings.word_embeddings.weight");
	const mfs_st_tensor *q =
	    find(&h, "model.encoder.layer.0.attention.self.query.weight");
	const mfs_st_tensor *k =
	    find(&h, "model.encoder.layer.0.attention.self.key.weight");
	REQUIRE(emb && q && k);
	CHECK_EQ_INT(emb->dtype, MFS_DT_BF16);
	CHECK_EQ_INT(emb->ndim, 2);
	CHECK_EQ_INT(emb->shape[0], 30522);
	CHECK_EQ_INT(emb->shape[1], 384);
	/* three views of one storage: laid out as the storage, shape [numel] */
	CHECK_EQ_INT(q->ndim, 1);
	CHECK_EQ_INT(q->shape[0], 384 * 384);
	CHECK_EQ_INT(q->end - q->begin, 384 * 384 * 2);
	CHECK_EQ_INT(k->ndim, 2);
	/* an integer tensor keeps its dtype */
	const mfs_st_tensor *pos = find(&h, "model.embeddings.position_ids");
	REQUIRE(pos);
	CHECK_EQ_INT(pos->dtype, MFS_DT_I64);
	/* one storage per tensor of the model: the tie and the views add none */
	CHECK_EQ_INT(h.n_tensors, 104);
	mfs_st_header_free(&h);
	free(b);
}

static void test_real_refused(void)
{
	static const struct {
		const char *file;
		int rc_zip;  /* mfs_tz_parse */
		int rc_file; /* mfs_tensorfile_parse */
		const char *says;
	} cases[] = {
	    {"extra/legacy.pt", MFS_E_FORMAT, MFS_E_UNSUPPORTED, "legacy"},
	    {"extra/hostile-os-system.pt", MFS_E_UNSUPPORTED, MFS_E_UNSUPPORTED,
	     "system"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char p[1200];
		test_model_path(p, sizeof p, "minilm-formats", cases[i].file);
		int fd = open(p, O_RDONLY);
		if (fd < 0) {
			fprintf(stderr, "skip: %s missing\n", p);
			continue;
		}
		struct stat st;
		REQUIRE(fstat(fd, &st) == 0);
		mfs_preader r;
		mfs_st_header h;
		mfs_errmsg e = {0};
		mfs_preader_fd(&r, fd, (uint64_t)st.st_size);
		CHECK_EQ_INT(mfs_tz_parse(&r, &h, cases[i].file, &e), cases[i].rc_zip);
		CHECK(h.tensors == NULL);
		memset(&e, 0, sizeof e);
		CHECK_EQ_INT(mfs_tensorfile_parse(fd, (uint64_t)st.st_size, MFS_TF_TORCH,
						  cases[i].file, &h, &e),
			     cases[i].rc_file);
		CHECK(strstr(e.msg, cases[i].says) != NULL);
		fprintf(stderr, "  %s: %s\n", cases[i].file, e.msg);
		close(fd);
	}
}

/* ---------------------------------------------------------- built here */

static void test_built_valid(void)
{
	buf p = two_tensor_pickle(), z = two_tensor_zip(&p);
	mfs_st_header h;
	mfs_errmsg e = {0};
	CHECK_EQ_INT(parse_mem(&z, &h, &e), 0);
	if (e.msg[0])
		fprintf(stderr, "  %s\n", e.msg);
	REQUIRE(h.n_tensors == 2);
	const mfs_st_tensor *w = find(&h, "w"), *b = find(&h, "b");
	REQUIRE(w && b);
	CHECK_EQ_INT(w->dtype, MFS_DT_F32);
	CHECK_EQ_INT(w->ndim, 2);
	CHECK_EQ_INT(w->end - w->begin, 24);
	CHECK_EQ_INT(b->dtype, MFS_DT_BF16);
	CHECK_EQ_INT(b->end - b->begin, 8);
	CHECK(w->begin < b->begin);
	CHECK(h.tensors[0].begin == w->begin); /* sorted by offset */
	CHECK(spans_ok(&h));
	mfs_st_header_free(&h);
	free(z.p);
	free(p.p);
}

/* Central entries whose sizes and offsets are in zip64 extra fields (as a
 * checkpoint over 4 GiB has them), and one whose extra field is cut short. */
static void test_built_zip64_fields(void)
{
	buf p = two_tensor_pickle();
	static uint8_t d0[24] = {7}, d1[8] = {9};
	zent e[] = {
	    {"z/data.pkl", p.p, p.n, -1, 0, 1},
	    {"z/data/0", d0, sizeof d0, -1, 0, 1},
	    {"z/data/1", d1, sizeof d1, -1, 0, 0},
	};
	buf z = zip_build(e, 3);
	mfs_st_header h;
	mfs_errmsg m = {0};
	CHECK_EQ_INT(parse_mem(&z, &h, &m), 0);
	if (m.msg[0])
		fprintf(stderr, "  %s\n", m.msg);
	const mfs_st_tensor *w = find(&h, "w");
	CHECK(w && w->end - w->begin == 24 && z.p[w->begin] == 7);
	CHECK(spans_ok(&h));
	mfs_st_header_free(&h);
	/* the extra field says 24 bytes but holds 16: refused */
	size_t cd = get32(z.p + z.n - 22 + 16);
	size_t x = cd + 46 + strlen("z/data.pkl");
	CHECK(z.p[x] == 1 && z.p[x + 2] == 24);
	z.p[x + 2] = 16;
	z.p[x + 4 + 16] = 0xee; /* what was the offset's first byte is now a field id */
	m = (mfs_errmsg){0};
	CHECK_EQ_INT(parse_mem(&z, &h, &m), MFS_E_FORMAT);
	CHECK(strstr(m.msg, "zip64") != NULL || strstr(m.msg, "extra") != NULL);
	free(z.p);
	free(p.p);
}

/* An empty storage (torch.save of a 0-element tensor) first in the zip. */
static void test_built_empty_storage(void)
{
	buf p = {0};
	unsigned s0[] = {0}, s4[] = {4};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, '}');
	put8(&p, '(');
	pk_str(&p, "empty");
	pk_tensor(&p, "FloatStorage", "0", 0, 0, s0, 1);
	pk_str(&p, "w");
	pk_tensor(&p, "FloatStorage", "1", 4, 0, s4, 1);
	put8(&p, 'u');
	put8(&p, '.');
	static const uint8_t d[16] = {1, 2, 3};
	zent e[] = {{"e/data.pkl", p.p, p.n, -1, 0, 0},
		    {"e/data/0", d, 0, -1, 0, 0},
		    {"e/data/1", d, 16, -1, 0, 0}};
	buf z = zip_build(e, 3);
	mfs_st_header h;
	CHECK_EQ_INT(parse_mem(&z, &h, NULL), 0);
	CHECK_EQ_INT(h.n_tensors, 2);
	CHECK(spans_ok(&h));
	const mfs_st_tensor *em = find(&h, "empty");
	CHECK(em && em->begin == em->end && em->ndim == 1 && em->shape[0] == 0);
	mfs_st_header_free(&h);
	free(z.p);
	free(p.p);
}

/* A pickle that is refused as @p want, and nothing returned. */
static void refused(const buf *pkl, int want, const char *says)
{
	buf z = two_tensor_zip(pkl);
	mfs_st_header h;
	mfs_errmsg e = {0};
	int rc = parse_mem(&z, &h, &e);
	CHECK_EQ_INT(rc, want);
	CHECK(h.tensors == NULL);
	if (says && !strstr(e.msg, says)) {
		CHECK(!"message");
		fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e.msg, says);
	}
	free(z.p);
}

static void test_built_hostile_pickles(void)
{
	unsigned s4[] = {4}, s5[] = {5};
	buf p;

	/* GLOBAL os.system, applied by REDUCE: refused at the GLOBAL */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	pk_global(&p, "os", "system");
	pk_str(&p, "touch /tmp/pwned");
	put8(&p, 0x85);
	put8(&p, 'R');
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "os.system");
	free(p.p);

	/* the same through STACK_GLOBAL (protocol 4) */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 4);
	put8(&p, 0x8c);
	put8(&p, 5);
	put(&p, "posix", 5);
	put8(&p, 0x8c);
	put8(&p, 6);
	put(&p, "system", 6);
	put8(&p, 0x93);
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "posix.system");
	free(p.p);

	/* REDUCE of a storage class, of builtins.eval, BUILD of a tensor */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	pk_global(&p, "torch", "FloatStorage");
	put8(&p, ')');
	put8(&p, 'R');
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "storage class");
	free(p.p);

	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	pk_global(&p, "builtins", "eval");
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "builtins.eval");
	free(p.p);

	/* an opcode outside the subset (INST, protocol 0's call) */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, '(');
	put(&p, "ios\nsystem\n", 11);
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "opcode 0x69");
	free(p.p);

	/* a view past its storage: 5 elements of a 4-element storage */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	pk_tensor(&p, "FloatStorage", "0", 6, 2, s5, 1);
	put8(&p, '.');
	refused(&p, MFS_E_FORMAT, "reaches element");
	free(p.p);

	/* a storage whose bytes are not numel elements (data/1 holds 8 bytes) */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	pk_tensor(&p, "FloatStorage", "1", 4, 0, s4, 1);
	put8(&p, '.');
	refused(&p, MFS_E_FORMAT, "holds 8 bytes");
	free(p.p);

	/* a storage the zip does not hold */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	pk_tensor(&p, "FloatStorage", "7", 4, 0, s4, 1);
	put8(&p, '.');
	refused(&p, MFS_E_FORMAT, "does not hold");
	free(p.p);

	/* memo: a read of an entry never stored; a store at a huge index */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, 'h');
	put8(&p, 9);
	put8(&p, '.');
	refused(&p, MFS_E_FORMAT, "never stored");
	free(p.p);
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, 'N');
	put8(&p, 'r');
	put32(&p, 0xfffffff0u);
	put8(&p, '.');
	refused(&p, MFS_E_TOOBIG, "memo index");
	free(p.p);

	/* a string longer than the pickle, a pickle without STOP */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, 'X');
	put32(&p, 0x7fffffffu);
	put(&p, "abc", 3);
	refused(&p, MFS_E_FORMAT, "truncated");
	free(p.p);
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, '}');
	refused(&p, MFS_E_FORMAT, "truncated");
	free(p.p);

	/* stack underflow, SETITEMS without a dict, tuples past a mark */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, 'R');
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "does not hold");
	free(p.p);
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, '(');
	pk_str(&p, "k");
	pk_str(&p, "v");
	put8(&p, 'u');
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "SETITEMS");
	free(p.p);
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, 'N');
	put8(&p, '(');
	put8(&p, 0x86);
	put8(&p, '.');
	refused(&p, MFS_E_UNSUPPORTED, "TUPLE");
	free(p.p);

	/* a dict holding itself, and a billion-laughs DAG of dicts, are walked
	 * once each: this pickle finishes at once and names the tensor */
	p = (buf){0};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, '}');
	put8(&p, 'q');
	put8(&p, 0);
	pk_str(&p, "self");
	put8(&p, 'h');
	put8(&p, 0);
	put8(&p, 's');
	for (int lvl = 1; lvl < 12; lvl++) {
		put8(&p, '}');
		put8(&p, '(');
		for (int k = 0; k < 8; k++) {
			char key[4] = {'a', (char)('a' + k), 0};
			pk_str(&p, key);
			put8(&p, 'h');
			put8(&p, (unsigned)(lvl - 1));
		}
		put8(&p, 'u');
		put8(&p, 'q');
		put8(&p, (unsigned)lvl);
	}
	put8(&p, '(');
	pk_str(&p, "w");
	pk_tensor(&p, "FloatStorage", "0", 6, 0, (unsigned[]){6}, 1);
	put8(&p, 'u');
	put8(&p, '.');
	{
		buf z = two_tensor_zip(&p);
		mfs_st_header h;
		mfs_errmsg e = {0};
		CHECK_EQ_INT(parse_mem(&z, &h, &e), 0);
		if (e.msg[0])
			fprintf(stderr, "  %s\n", e.msg);
		CHECK(h.n_tensors == 1 && !strcmp(h.tensors[0].name, "w"));
		mfs_st_header_free(&h);
		free(z.p);
	}
	free(p.p);
}

static void test_built_bad_zips(void)
{
	buf p = two_tensor_pickle(), z = two_tensor_zip(&p);
	mfs_st_header h;
	mfs_errmsg e;
	size_t eocd = z.n - 22;
	uint32_t cd = get32(z.p + eocd + 16);

	/* an end record claiming 60000 entries in a small directory */
	buf x = {0};
	put(&x, z.p, z.n);
	x.p[eocd + 8] = x.p[eocd + 10] = 0x60;
	x.p[eocd + 9] = x.p[eocd + 11] = 0xea;
	e = (mfs_errmsg){0};
	CHECK_EQ_INT(parse_mem(&x, &h, &e), MFS_E_FORMAT);
	CHECK(strstr(e.msg, "claims") != NULL);
	/* a directory offset past the end record; a size past it */
	memcpy(x.p, z.p, z.n);
	set32(x.p + eocd + 16, (uint32_t)z.n);
	CHECK_EQ_INT(parse_mem(&x, &h, NULL), MFS_E_FORMAT);
	memcpy(x.p, z.p, z.n);
	set32(x.p + eocd + 12, 0xfffffff0u);
	CHECK_EQ_INT(parse_mem(&x, &h, NULL), MFS_E_FORMAT);
	/* a central entry whose local header offset lies: into the pickle, then
	 * past the directory */
	memcpy(x.p, z.p, z.n);
	size_t c1 = cd;
	for (int i = 0; i < 1; i++)
		c1 += 46 + strlen("arch/data.pkl");
	set32(x.p + c1 + 42, 40); /* entry arch/data/0 -> inside data.pkl */
	e = (mfs_errmsg){0};
	CHECK_EQ_INT(parse_mem(&x, &h, &e), MFS_E_FORMAT);
	CHECK(strstr(e.msg, "arch/data/0") != NULL);
	memcpy(x.p, z.p, z.n);
	set32(x.p + c1 + 42, 0x7ffffff0u);
	CHECK_EQ_INT(parse_mem(&x, &h, NULL), MFS_E_FORMAT);
	/* a size that runs into the directory */
	memcpy(x.p, z.p, z.n);
	set32(x.p + c1 + 20, 0x10000);
	set32(x.p + c1 + 24, 0x10000);
	CHECK_EQ_INT(parse_mem(&x, &h, NULL), MFS_E_FORMAT);
	/* a name in the directory that the local header does not have */
	memcpy(x.p, z.p, z.n);
	x.p[c1 + 46 + 10] = '9'; /* arch/data/9: the pickle refers to 0 */
	CHECK(parse_mem(&x, &h, NULL) < 0);
	/* the central directory signature, an entry's name past the directory */
	memcpy(x.p, z.p, z.n);
	x.p[cd] = 'Q';
	CHECK_EQ_INT(parse_mem(&x, &h, NULL), MFS_E_FORMAT);
	memcpy(x.p, z.p, z.n);
	x.p[cd + 28] = 0xff;
	x.p[cd + 29] = 0xff;
	CHECK_EQ_INT(parse_mem(&x, &h, NULL), MFS_E_FORMAT);
	free(x.p);

	/* compressed and encrypted entries are not laid out */
	static const uint8_t d[24];
	zent ce[] = {{"a/data.pkl", p.p, p.n, -1, 0, 0},
		     {"a/data/0", d, 24, -1, 8, 0},
		     {"a/data/1", d, 8, -1, 0, 0}};
	buf cz = zip_build(ce, 3);
	e = (mfs_errmsg){0};
	CHECK_EQ_INT(parse_mem(&cz, &h, &e), MFS_E_UNSUPPORTED);
	CHECK(strstr(e.msg, "compressed") != NULL);
	free(cz.p);
	/* no data.pkl: some other zip */
	zent oe[] = {{"docs/readme.txt", d, 8, -1, 0, 0}};
	buf oz = zip_build(oe, 1);
	CHECK_EQ_INT(parse_mem(&oz, &h, NULL), MFS_E_UNSUPPORTED);
	free(oz.p);
	/* not a zip at all; too short for one */
	buf nz = {0};
	put(&nz, "GGUF\3\0\0\0", 8);
	CHECK_EQ_INT(parse_mem(&nz, &h, NULL), MFS_E_FORMAT);
	nz.n = 3;
	CHECK_EQ_INT(parse_mem(&nz, &h, NULL), MFS_E_FORMAT);
	free(nz.p);
	/* duplicate entry names */
	zent de[] = {{"a/data.pkl", p.p, p.n, -1, 0, 0},
		     {"a/data/0", d, 24, -1, 0, 0},
		     {"a/data/0", d, 24, -1, 0, 0},
		     {"a/data/1", d, 8, -1, 0, 0}};
	buf dz = zip_build(de, 4);
	e = (mfs_errmsg){0};
	CHECK_EQ_INT(parse_mem(&dz, &h, &e), MFS_E_FORMAT);
	CHECK(strstr(e.msg, "twice") != NULL);
	free(dz.p);
	free(z.p);
	free(p.p);
}

/* Storage 0's bytes hold a forged local header for storage 1, so the two
 * storages share bytes: refused, as the spans could not tile the file. */
static void test_built_overlap(void)
{
	buf p = {0};
	unsigned s16[] = {16}, s4[] = {4};
	put8(&p, 0x80);
	put8(&p, 2);
	put8(&p, '}');
	put8(&p, '(');
	pk_str(&p, "big");
	pk_tensor(&p, "FloatStorage", "0", 16, 0, s16, 1);
	pk_str(&p, "small");
	pk_tensor(&p, "FloatStorage", "1", 4, 0, s4, 1);
	put8(&p, 'u');
	put8(&p, '.');
	/* a local header for "o/data/1" with 16 bytes of data, padded to 64 */
	buf inner = {0};
	put32(&inner, 0x04034b50);
	put16(&inner, 20);
	put16(&inner, 0);
	put16(&inner, 0);
	put32(&inner, 0);
	put32(&inner, 0);
	put32(&inner, 16);
	put32(&inner, 16);
	put16(&inner, 8);
	put16(&inner, 0);
	put(&inner, "o/data/1", 8);
	while (inner.n < 64)
		put8(&inner, 0x3f);
	zent e[] = {{"o/data.pkl", p.p, p.n, -1, 0, 0},
		    {"o/data/0", inner.p, 64, -1, 0, 0},
		    {"o/data/1", inner.p, 16, 0, 0, 0}};
	/* where o/data/0's data starts: after data.pkl's header and bytes and
	 * o/data/0's own header */
	e[2].local = (long)(30 + strlen("o/data.pkl") + p.n + 30 + strlen("o/data/0"));
	buf z = zip_build(e, 3);
	mfs_st_header h;
	mfs_errmsg m = {0};
	CHECK_EQ_INT(parse_mem(&z, &h, &m), MFS_E_FORMAT);
	CHECK(strstr(m.msg, "overlaps") != NULL);
	fprintf(stderr, "  overlap: %s\n", m.msg);
	free(z.p);
	free(inner.p);
	free(p.p);
}

/* Random damage to a valid archive: any answer but a crash, a leak or a
 * header whose spans do not tile the file. */
static void test_built_mutations(void)
{
	buf p = two_tensor_pickle(), z = two_tensor_zip(&p);
	tf_mutations(&z, parse_mem, &seed, "archives");
	free(z.p);
	free(p.p);
}

int main(void)
{
	seed = test_seed();
	RUN(test_built_valid);
	RUN(test_built_empty_storage);
	RUN(test_built_zip64_fields);
	RUN(test_built_hostile_pickles);
	RUN(test_built_bad_zips);
	RUN(test_built_overlap);
	RUN(test_built_mutations);
	RUN(test_real_same_as_safetensors);
	RUN(test_real_tied_views);
	RUN(test_real_refused);
	return test_report();
}
