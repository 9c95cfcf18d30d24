/* test_onnx.c - the ONNX initializer finder: on a real torch.onnx.export of
 * the fixture model (tests/e2e/fixtures.py, minilm-onnx), on protobufs built
 * here byte by byte, and on broken ones: every truncation, lengths past
 * their message, over-long varints, groups, shapes that do not match the
 * bytes, duplicate names, random damage. */
#include "testhelp.h"
#include "tensorfile_check.h"

#include "onnx.h"
#include "testdata.h"

static uint64_t seed;

static void varint(buf *b, uint64_t v)
{
	do {
		uint8_t c = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			c |= 0x80;
		put(b, &c, 1);
	} while (v);
}

static void tag(buf *b, unsigned field, unsigned wt)
{
	varint(b, (uint64_t)field << 3 | wt);
}

/* A length-delimited field holding @p inner. */
static void msg(buf *b, unsigned field, const buf *inner)
{
	tag(b, field, 2);
	varint(b, inner->n);
	put(b, inner->p, inner->n);
}

static void bytes_field(buf *b, unsigned field, const void *s, size_t n)
{
	tag(b, field, 2);
	varint(b, n);
	put(b, s, n);
}

/* A TensorProto: dims (packed or not), data_type, name, raw_data of
 * @p raw_len random bytes (none when 0). */
static buf tensor(const char *name, const uint64_t *dims, int nd, int packed, unsigned dt,
		  size_t raw_len)
{
	buf t = {0};
	if (packed) {
		buf d = {0};
		for (int i = 0; i < nd; i++)
			varint(&d, dims[i]);
		msg(&t, 1, &d);
		free(d.p);
	} else {
		for (int i = 0; i < nd; i++) {
			tag(&t, 1, 0);
			varint(&t, dims[i]);
		}
	}
	tag(&t, 2, 0);
	varint(&t, dt);
	bytes_field(&t, 8, name, strlen(name));
	if (raw_len) {
		uint8_t *r = malloc(raw_len);
		for (size_t i = 0; i < raw_len; i++)
			r[i] = (uint8_t)test_rand(&seed);
		bytes_field(&t, 9, r, raw_len);
		free(r);
	}
	return t;
}

/* ModelProto: ir_version, producer, graph { node, the tensors as
 * initializers, a name }, opset_import. */
static buf model(buf *tensors, size_t n)
{
	buf g = {0}, m = {0}, node = {0};
	bytes_field(&node, 4, "MatMul", 6);
	msg(&g, 1, &node);
	for (size_t i = 0; i < n; i++)
		msg(&g, 5, &tensors[i]);
	bytes_field(&g, 2, "main_graph", 10);
	tag(&m, 1, 0);
	varint(&m, 8);
	bytes_field(&m, 2, "pytorch", 7);
	msg(&m, 7, &g);
	buf op = {0};
	tag(&op, 2, 0);
	varint(&op, 17);
	msg(&m, 8, &op);
	free(op.p);
	free(g.p);
	free(node.p);
	return m;
}

static int parse(const buf *b, mfs_st_header *h, mfs_errmsg *e)
{
	mfs_preader r;
	mfs_preader_mem(&r, b->p ? b->p : (const uint8_t *)"", b->n);
	return mfs_onnx_parse(&r, h, "model.onnx", e);
}

static void free_all(buf *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].p);
}

static void test_built_valid(void)
{
	uint64_t d23[] = {2, 3}, d4[] = {4};
	buf t[4];
	t[0] = tensor("w", d23, 2, 1, 1, 24); /* F32, packed dims */
	t[1] = tensor("h", d4, 1, 0, 10, 8);  /* F16, unpacked dims */
	t[2] = tensor("fd", d4, 1, 0, 1, 0);  /* no raw_data: float_data */
	tag(&t[2], 4, 2);
	varint(&t[2], 16);
	put(&t[2], "0123456789abcdef", 16);
	t[3] = tensor("ext", d4, 1, 0, 1, 16); /* external: not a span */
	tag(&t[3], 14, 0);
	varint(&t[3], 1);
	buf m = model(t, 4);
	mfs_st_header h;
	mfs_errmsg e = {0};
	CHECK_EQ_INT(parse(&m, &h, &e), 0);
	if (e.msg[0])
		fprintf(stderr, "  %s\n", e.msg);
	REQUIRE(h.n_tensors == 2);
	const mfs_st_tensor *w = find(&h, "w"), *hh = find(&h, "h");
	REQUIRE(w && hh);
	CHECK_EQ_INT(w->dtype, MFS_DT_F32);
	CHECK_EQ_INT(w->ndim, 2);
	CHECK_EQ_INT(w->shape[1], 3);
	CHECK_EQ_INT(w->end - w->begin, 24);
	CHECK_EQ_INT(hh->dtype, MFS_DT_F16);
	CHECK_EQ_INT(hh->end - hh->begin, 8);
	CHECK(spans_ok(&h));
	/* the span is exactly the raw_data bytes: they follow their length */
	CHECK(w->begin > 0 && m.p[w->begin - 1] == 24);
	mfs_st_header_free(&h);
	free(m.p);
	free_all(t, 4);
}

static void refused(buf *m, int want, const char *says)
{
	mfs_st_header h;
	mfs_errmsg e = {0};
	int rc = parse(m, &h, &e);
	CHECK_EQ_INT(rc, want);
	CHECK(h.tensors == NULL);
	if (rc == 0)
		mfs_st_header_free(&h);
	if (says && !strstr(e.msg, says)) {
		CHECK(!"message");
		fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e.msg, says);
	}
	free(m->p);
}

static void test_built_broken(void)
{
	uint64_t d23[] = {2, 3}, d5[] = {5};
	buf t[2], m;

	/* every cut before the graph's end is refused; protobuf has no end
	 * marker, so a cut between top-level fields after it (the 4-byte
	 * opset_import) is a valid, shorter model, whose spans still tile */
	t[0] = tensor("w", d23, 2, 1, 1, 24);
	m = model(t, 1);
	size_t graph_end = m.n - 4;
	for (size_t n = 0; n < m.n; n++) {
		buf c = {m.p, n, n};
		mfs_st_header h;
		int rc = parse(&c, &h, NULL);
		if (n < graph_end)
			CHECK(rc < 0);
		else if (rc == 0) {
			CHECK(n == graph_end && spans_ok(&h));
			mfs_st_header_free(&h);
		}
	}
	free(m.p);
	free_all(t, 1);

	/* a length past the file (opset_import's) */
	t[0] = tensor("w", d23, 2, 1, 1, 24);
	m = model(t, 1);
	m.p[m.n - 3] = 0x7f;
	refused(&m, MFS_E_FORMAT, "past the end");
	free_all(t, 1);
	/* shape and bytes disagree */
	t[0] = tensor("w", d5, 1, 0, 1, 24);
	m = model(t, 1);
	refused(&m, MFS_E_FORMAT, "not its 24 bytes");
	free_all(t, 1);
	/* the same name twice */
	t[0] = tensor("w", d23, 2, 1, 1, 24);
	t[1] = tensor("w", d23, 2, 1, 1, 24);
	m = model(t, 2);
	refused(&m, MFS_E_FORMAT, "twice");
	free_all(t, 2);
	/* raw_data twice in one tensor */
	t[0] = tensor("w", d23, 2, 1, 1, 24);
	bytes_field(&t[0], 9, "abcd", 4);
	m = model(t, 1);
	refused(&m, MFS_E_FORMAT, "raw_data twice");
	free_all(t, 1);
	/* a group (wire type 3) and an 11-byte varint */
	t[0] = tensor("w", d23, 2, 1, 1, 24);
	tag(&t[0], 20, 3);
	m = model(t, 1);
	refused(&m, MFS_E_FORMAT, "wire type 3");
	free_all(t, 1);
	m = (buf){0};
	put(&m, "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12);
	refused(&m, MFS_E_FORMAT, "longer than 64 bits");
	/* 17 dimensions; a name over the limit; a negative dimension */
	uint64_t d17[17];
	for (int i = 0; i < 17; i++)
		d17[i] = 1;
	t[0] = tensor("w", d17, 17, 1, 1, 4);
	m = model(t, 1);
	refused(&m, MFS_E_FORMAT, "dimensions");
	free_all(t, 1);
	char longname[300];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	t[0] = tensor(longname, d23, 2, 1, 1, 24);
	m = model(t, 1);
	refused(&m, MFS_E_TOOBIG, "limit");
	free_all(t, 1);
	uint64_t dneg[] = {(uint64_t)-1, 3};
	t[0] = tensor("w", dneg, 2, 1, 1, 24);
	m = model(t, 1);
	refused(&m, MFS_E_FORMAT, "negative");
	free_all(t, 1);
	/* nothing inline: not laid out */
	t[0] = tensor("w", d23, 2, 1, 1, 0);
	m = model(t, 1);
	refused(&m, MFS_E_UNSUPPORTED, "no initializer");
	free_all(t, 1);
	/* not protobuf at all */
	m = (buf){0};
	put(&m, "PK\3\4 not a model at all", 24);
	CHECK(parse(&m, &(mfs_st_header){0}, NULL) < 0);
	free(m.p);
}

static void test_built_mutations(void)
{
	uint64_t d23[] = {2, 3}, d4[] = {4};
	buf t[2] = {tensor("a", d23, 2, 1, 1, 24), tensor("b", d4, 1, 0, 16, 8)};
	buf m = model(t, 2);
	tf_mutations(&m, parse, &seed, "models");
	free(m.p);
	free_all(t, 2);
}

static void test_real(void)
{
	char op[1200], sp[1200];
	test_model_path(op, sizeof op, "minilm-onnx", "model.onnx");
	test_model_path(sp, sizeof sp, "minilm-f32", "model.safetensors");
	size_t ol, sl;
	uint8_t *o = test_read_file(op, &ol), *s = test_read_file(sp, &sl);
	if (!o || !s) {
		fprintf(stderr,
			"skip: %s or %s missing (python tests/e2e/fixtures.py path "
			"minilm-onnx builds it; it needs the onnx package)\n",
			op, sp);
		free(o);
		free(s);
		return;
	}
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = hl << 8 | s[i];
	mfs_st_header oh, sh;
	mfs_errmsg e = {0};
	mfs_preader r;
	REQUIRE(mfs_st_parse((const char *)s + 8, hl, sl, &sh, "model.safetensors",
			     NULL) == 0);
	mfs_preader_mem(&r, o, ol);
	CHECK_EQ_INT(mfs_onnx_parse(&r, &oh, "model.onnx", &e), 0);
	if (e.msg[0])
		fprintf(stderr, "  %s\n", e.msg);
	CHECK(spans_ok(&oh));
	size_t same = 0, named = 0;
	uint64_t bytes = 0, same_bytes = 0;
	for (size_t i = 0; i < oh.n_tensors; i++) {
		const mfs_st_tensor *t = &oh.tensors[i];
		bytes += t->end - t->begin;
		/* the exporter names the encoder's weights "m.<safetensors name>" */
		const mfs_st_tensor *x =
		    !strncmp(t->name, "m.", 2) ? find(&sh, t->name + 2) : NULL;
		if (!x)
			continue;
		named++;
		CHECK_EQ_INT(t->dtype, x->dtype);
		if (t->end - t->begin == x->end - x->begin &&
		    !memcmp(o + t->begin, s + x->begin, (size_t)(x->end - x->begin))) {
			same++;
			same_bytes += x->end - x->begin;
		}
	}
	CHECK(named > 0);
	CHECK_EQ_INT(same, named);
	fprintf(stderr,
		"  model.onnx: %zu inline initializers (%llu of %zu bytes), %zu of them "
		"byte-identical to model.safetensors' tensors (%llu bytes); the rest "
		"are the exporter's transposed MatMul weights\n",
		oh.n_tensors, (unsigned long long)bytes, ol, same,
		(unsigned long long)same_bytes);
	CHECK(bytes > ol * 99 / 100);
	mfs_st_header_free(&oh);
	mfs_st_header_free(&sh);
	free(o);
	free(s);
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
