/* test_safetensors.c - the safetensors header parser and span planner on
 * files built in memory: valid files of every kind, random valid files, and
 * every malformed case the parser must refuse with a message naming the
 * tensor. */
#include <time.h>

#include "testhelp.h"

#include "safetensors.h"

#define WHAT "model.safetensors"

static uint64_t seed;

struct stfile {
	uint8_t *bytes;
	size_t size;
};

/* u64 LE header length, the JSON, @p pad spaces, then @p data_len data bytes. */
static struct stfile st_build(const char *json, size_t pad, size_t data_len)
{
	size_t jl = strlen(json), n = jl + pad;
	struct stfile f = {malloc(8 + n + data_len + 1), 8 + n + data_len};

	if (!f.bytes)
		return f;
	for (int i = 0; i < 8; i++)
		f.bytes[i] = (uint8_t)((uint64_t)n >> (8 * i));
	memcpy(f.bytes + 8, json, jl);
	memset(f.bytes + 8 + jl, ' ', pad);
	for (size_t i = 0; i < data_len; i++)
		f.bytes[8 + n + i] = (uint8_t)test_rand(&seed);
	return f;
}

/* What an ingest does: read the length, parse the header. */
static int st_load(const struct stfile *f, mfs_st_header *h, mfs_errmsg *err)
{
	uint64_t n;
	uint8_t first8[8] = {0};

	memset(h, 0, sizeof *h);
	memcpy(first8, f->bytes, f->size < 8 ? f->size : 8);
	int rc = mfs_st_header_len(first8, f->size, &n, WHAT, err);
	if (rc)
		return rc;
	return mfs_st_parse((const char *)f->bytes + 8, n, f->size, h, WHAT, err);
}

/* The spans tile [0, file_size) exactly and agree with the tensors. */
static int spans_tile(const mfs_st_header *h)
{
	mfs_st_span *s;
	size_t n, n_nonempty = 0, seen = 0;
	uint64_t off = 0;
	int ok = 1;

	if (mfs_st_spans(h, &s, &n) != 0)
		return 0;
	for (size_t i = 0; i < h->n_tensors; i++)
		n_nonempty += h->tensors[i].end > h->tensors[i].begin;
	ok &= n >= 1 && s[0].off == 0 && s[0].len == h->data_start && s[0].tensor == -1;
	for (size_t i = 0; i < n && ok; i++) {
		ok &= s[i].off == off && s[i].len > 0;
		if (s[i].tensor >= 0) {
			ok &= (size_t)s[i].tensor < h->n_tensors;
			if (!ok)
				break;
			const mfs_st_tensor *t = &h->tensors[s[i].tensor];
			ok &= t->begin == s[i].off && t->end == s[i].off + s[i].len;
			seen++;
		} else if (i > 1) {
			/* Only the header stands apart; other gaps are merged. */
			ok &= s[i - 1].tensor >= 0;
		}
		off += s[i].len;
	}
	ok &= off == h->file_size && seen == n_nonempty;
	free(s);
	return ok;
}

static const mfs_st_tensor *find(const mfs_st_header *h, const char *name)
{
	for (size_t i = 0; i < h->n_tensors; i++)
		if (strcmp(h->tensors[i].name, name) == 0)
			return &h->tensors[i];
	return NULL;
}

static void test_every_dtype(void)
{
	/* One tensor per dtype, in a shape giving a whole number of bytes. */
	char json[8192];
	size_t o = 0, off = 0;
	struct {
		mfs_dtype dt;
		uint64_t nbytes;
	} want[MFS_DT__COUNT];

	o += (size_t)snprintf(json + o, sizeof json - o, "{");
	for (int dt = 1; dt < MFS_DT__COUNT; dt++) {
		unsigned bits = mfs_dtype_bits((mfs_dtype)dt);
		uint64_t nelem = bits == 4   ? 6
				 : bits == 6 ? 4
					     : 3; /* 3 bytes for sub-byte */
		uint64_t nbytes = nelem * bits / 8;
		o += (size_t)snprintf(json + o, sizeof json - o,
				      "%s\"t.%s\":{\"dtype\":\"%s\",\"shape\":[1,%llu],"
				      "\"data_offsets\":[%zu,%llu]}",
				      dt > 1 ? "," : "", mfs_dtype_name((mfs_dtype)dt),
				      mfs_dtype_name((mfs_dtype)dt),
				      (unsigned long long)nelem, off,
				      (unsigned long long)(off + nbytes));
		want[dt].dt = (mfs_dtype)dt;
		want[dt].nbytes = nbytes;
		off += nbytes;
	}
	snprintf(json + o, sizeof json - o, "}");

	struct stfile f = st_build(json, 5, off);
	mfs_st_header h;
	mfs_errmsg err = {0};
	REQUIRE(f.bytes);
	int rc = st_load(&f, &h, &err);
	if (rc)
		fprintf(stderr, "  %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(h.n_tensors, MFS_DT__COUNT - 1);
	CHECK_EQ_INT(h.data_start, 8 + strlen(json) + 5);
	for (int dt = 1; dt < MFS_DT__COUNT && !rc; dt++) {
		char name[64];
		snprintf(name, sizeof name, "t.%s", mfs_dtype_name((mfs_dtype)dt));
		const mfs_st_tensor *t = find(&h, name);
		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK_EQ_INT(t->dtype, dt);
		CHECK_EQ_INT(t->ndim, 2);
		CHECK_EQ_INT(t->shape[0], 1);
		CHECK_EQ_INT(t->end - t->begin, want[dt].nbytes);
	}
	for (size_t i = 1; i < h.n_tensors; i++)
		CHECK(h.tensors[i - 1].begin < h.tensors[i].begin);
	CHECK(spans_tile(&h));
	mfs_st_header_free(&h);
	free(f.bytes);
}

static void test_scalar_empty_metadata_gaps(void)
{
	/*
	 * Out of offset order in the JSON; a scalar; two empty tensors (one at
	 * the end of the data, one inside another tensor's range); 4 bytes of
	 * padding after the header, 2 between tensors, 3 trailing.
	 */
	const char *json = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
			   "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],"
			   "\"data_offsets\":[10,22]},"
			   "\"a.scale\":{\"dtype\":\"F32\",\"shape\":[],"
			   "\"data_offsets\":[4,8]},"
			   "\"empty\":{\"shape\":[0,5],\"dtype\":\"F16\","
			   "\"data_offsets\":[22,22],\"extra\":1},"
			   "\"empty2\":{\"dtype\":\"I64\",\"shape\":[3,0],"
			   "\"data_offsets\":[12,12]}}";
	struct stfile f = st_build(json, 0, 25);
	mfs_st_header h;
	mfs_errmsg err = {0};
	REQUIRE(f.bytes);
	int rc = st_load(&f, &h, &err);
	if (rc)
		fprintf(stderr, "  %s\n", err.msg);
	REQUIRE(rc == 0);
	CHECK_EQ_INT(h.n_tensors, 4);
	CHECK_EQ_INT(h.file_size, f.size);
	uint64_t ds = h.data_start;
	CHECK_EQ_INT(ds, 8 + strlen(json));
	CHECK(strcmp(h.tensors[0].name, "a.scale") == 0);
	CHECK_EQ_INT(h.tensors[0].ndim, 0);
	CHECK_EQ_INT(h.tensors[0].begin, ds + 4);
	CHECK_EQ_INT(h.tensors[0].end, ds + 8);
	CHECK(strcmp(h.tensors[1].name, "b.weight") == 0);
	CHECK(strcmp(h.tensors[2].name, "empty2") == 0);
	CHECK(strcmp(h.tensors[3].name, "empty") == 0);
	CHECK_EQ_INT(h.tensors[3].shape[0], 0);
	CHECK_EQ_INT(h.tensors[3].shape[1], 5);

	mfs_st_span *s;
	size_t n;
	REQUIRE(mfs_st_spans(&h, &s, &n) == 0);
	/* header | pad 4 | a.scale | pad 2 | b.weight | tail 3 */
	CHECK_EQ_INT(n, 6);
	if (n == 6) {
		CHECK(s[0].off == 0 && s[0].len == ds && s[0].tensor == -1);
		CHECK(s[1].off == ds && s[1].len == 4 && s[1].tensor == -1);
		CHECK(s[2].off == ds + 4 && s[2].len == 4 && s[2].tensor == 0);
		CHECK(s[3].off == ds + 8 && s[3].len == 2 && s[3].tensor == -1);
		CHECK(s[4].off == ds + 10 && s[4].len == 12 && s[4].tensor == 1);
		CHECK(s[5].off == ds + 22 && s[5].len == 3 && s[5].tensor == -1);
	}
	free(s);
	CHECK(spans_tile(&h));
	mfs_st_header_free(&h);
	mfs_st_header_free(&h); /* a freed header is empty: freeing again is safe */
	mfs_st_header_free(NULL);
	free(f.bytes);
}

static void test_minimal_files(void)
{
	mfs_st_header h;
	mfs_errmsg err = {0};
	const char *jsons[] = {"{}", " {\"__metadata__\":{}}\n",
			       /* an empty name is a name */
			       ("{\"\":{\"dtype\":\"U8\","
				"\"shape\":[1],\"data_offsets\":[0,1]}}")};
	const size_t data[] = {0, 7, 1};

	for (int i = 0; i < 3; i++) {
		struct stfile f = st_build(jsons[i], 0, data[i]);
		REQUIRE(f.bytes);
		int rc = st_load(&f, &h, &err);
		if (rc)
			fprintf(stderr, "  %s\n", err.msg);
		CHECK_EQ_INT(rc, 0);
		CHECK(spans_tile(&h));
		mfs_st_header_free(&h);
		free(f.bytes);
	}
}

/* Random valid files: random dtypes, shapes, padding and JSON order. */
static void test_random_valid(void)
{
	for (int round = 0; round < 200; round++) {
		size_t nt = test_rand(&seed) % 40;
		size_t cap = 256 + nt * 200, o = 0;
		char *json = malloc(cap);
		size_t *order = malloc((nt + 1) * sizeof *order);
		uint64_t *begin = malloc((nt + 1) * sizeof *begin);
		uint64_t *end = malloc((nt + 1) * sizeof *end);
		int *dts = malloc((nt + 1) * sizeof *dts);
		uint64_t *d0 = malloc((nt + 1) * sizeof *d0);
		REQUIRE(json && order && begin && end && dts && d0);

		uint64_t off = test_rand(&seed) % 3;
		for (size_t i = 0; i < nt; i++) {
			int dt = 1 + (int)(test_rand(&seed) % (MFS_DT__COUNT - 1));
			unsigned bits = mfs_dtype_bits((mfs_dtype)dt);
			/* nelem a multiple of 4 keeps sub-byte types whole. */
			uint64_t nelem = 4 * (test_rand(&seed) % 20);
			dts[i] = dt;
			d0[i] = nelem;
			begin[i] = off;
			end[i] = off + nelem * bits / 8;
			off = end[i] + test_rand(&seed) % 3;
			order[i] = i;
		}
		for (size_t i = nt; i > 1; i--) {
			size_t j = test_rand(&seed) % i, t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
		o += (size_t)snprintf(json + o, cap - o, "{");
		for (size_t k = 0; k < nt; k++) {
			size_t i = order[k];
			o += (size_t)snprintf(
			    json + o, cap - o,
			    "%s\"layer.%zu\": {\"dtype\": \"%s\", \"shape\": "
			    "[%llu, 1], \"data_offsets\": [%llu, %llu]}",
			    k ? ", " : "", i, mfs_dtype_name((mfs_dtype)dts[i]),
			    (unsigned long long)d0[i], (unsigned long long)begin[i],
			    (unsigned long long)end[i]);
		}
		snprintf(json + o, cap - o, "}");

		struct stfile f = st_build(json, test_rand(&seed) % 9, off);
		mfs_st_header h;
		mfs_errmsg err = {0};
		REQUIRE(f.bytes);
		int rc = st_load(&f, &h, &err);
		if (rc)
			fprintf(stderr, "  %s\n", err.msg);
		CHECK_EQ_INT(rc, 0);
		CHECK_EQ_INT(h.n_tensors, nt);
		for (size_t i = 0; i < h.n_tensors; i++) {
			size_t idx = (size_t)strtoull(h.tensors[i].name + 6, NULL, 10);
			CHECK(idx < nt &&
			      h.tensors[i].begin == h.data_start + begin[idx] &&
			      h.tensors[i].end == h.data_start + end[idx] &&
			      h.tensors[i].dtype == (mfs_dtype)dts[idx]);
			if (i)
				CHECK(h.tensors[i - 1].begin <= h.tensors[i].begin);
		}
		CHECK(spans_tile(&h));
		mfs_st_header_free(&h);
		free(f.bytes);
		free(json);
		free(order);
		free(begin);
		free(end);
		free(dts);
		free(d0);
	}
}

/* 10k tensors: parse + spans stay fast (n log n). */
static void test_large_header(void)
{
	size_t nt = 10000, cap = nt * 120 + 16, o = 0;
	char *json = malloc(cap);
	REQUIRE(json);

	o += (size_t)snprintf(json + o, cap - o, "{");
	/* Written in reverse offset order, so the sort has work to do. */
	for (size_t k = 0; k < nt; k++) {
		size_t i = nt - 1 - k;
		o += (size_t)snprintf(
		    json + o, cap - o,
		    "%s\"model.layers.%zu.mlp.weight\":{\"dtype\":\"BF16\","
		    "\"shape\":[4,2],\"data_offsets\":[%zu,%zu]}",
		    k ? "," : "", i, i * 16, i * 16 + 16);
	}
	snprintf(json + o, cap - o, "}");
	struct stfile f = st_build(json, 0, nt * 16);
	REQUIRE(f.bytes);

	mfs_st_header h;
	mfs_errmsg err = {0};
	clock_t t0 = clock();
	int rc = st_load(&f, &h, &err);
	double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	if (rc)
		fprintf(stderr, "  %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(h.n_tensors, nt);
	CHECK(spans_tile(&h));
	fprintf(stderr, "  10k tensors, %zu-byte header: parsed in %.1f ms\n", o + 1,
		secs * 1e3);
	CHECK(secs < 2.0); /* generous: sanitizer builds are slow */
	mfs_st_header_free(&h);
	free(f.bytes);
	free(json);
}

static int verbose;

/* The file must be refused with MFS_E_FORMAT and a message holding @p needle
 * (the tensor name, or another part of the message) and the file name. */
static int bad_file(const struct stfile *f, const char *needle, int line)
{
	mfs_st_header h;
	mfs_errmsg err = {0};
	int rc = st_load(f, &h, &err);
	int ok = rc == MFS_E_FORMAT && err.code == MFS_E_FORMAT &&
		 strstr(err.msg, needle) && strstr(err.msg, WHAT) && h.tensors == NULL &&
		 h.n_tensors == 0;

	if (!ok || verbose)
		fprintf(stderr, "  %s line %d: rc %d, \"%s\" (want \"%s\")\n",
			ok ? "ok" : "FAIL", line, rc, err.msg, needle);
	mfs_st_header_free(&h);
	return ok;
}

static int bad_json(const char *json, size_t data_len, const char *needle, int line)
{
	struct stfile f = st_build(json, 0, data_len);
	if (!f.bytes)
		return 0;
	int ok = bad_file(&f, needle, line);
	free(f.bytes);
	return ok;
}

#define BAD(json, data_len, needle) CHECK(bad_json(json, data_len, needle, __LINE__))

/* A tensor entry called "encoder.layer.0.weight" with the given body. */
#define T(body) "{\"encoder.layer.0.weight\":{" body "}}"
#define TN	"encoder.layer.0.weight"

static void test_bad_tensors(void)
{
	BAD(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[10,20]"), 15,
	    "data_offsets [10, 20] end past the data section (size 15)");
	BAD(T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]"), 15, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), 15, TN);
	BAD(T("\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]"), 8,
	    "unknown dtype \"F128\"");
	BAD(T("\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]"), 8, TN);
	BAD(T("\"shape\":[2],\"data_offsets\":[0,8]"), 8, "missing field \"dtype\"");
	BAD(T("\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 8, "missing field \"shape\"");
	BAD(T("\"dtype\":\"F32\",\"shape\":[2]"), 8, "missing field \"data_offsets\"");
	BAD(T("\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,null]"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"),
	    8, "field \"dtype\" appears twice");
	BAD("{\"" TN "\":[1,2]}", 8, TN);
	BAD("{\"" TN "\":\"F32\"}", 8, TN);

	/* Numbers that are not exact non-negative integers below 2^53. */
	BAD(T("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,6]"), 8, TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[9007199254740992],\"data_offsets\":[0,0]"), 8,
	    TN);
	BAD(T("\"dtype\":\"F32\",\"shape\":[1e400],\"data_offsets\":[0,0]"), 8, TN);
	BAD(T("\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-2,0]"), 8, TN);
	BAD(T("\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0.5,2.5]"), 8, TN);
	BAD(T("\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9007199254740993,"
	      "9007199254740993]"),
	    8, TN);

	/* Sizes: overflow, sub-byte remainders, more than 16 dimensions. */
	BAD(T("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],"
	      "\"data_offsets\":[0,0]"),
	    8, "overflows");
	BAD(T("\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
	      "\"data_offsets\":[0,0]"),
	    8, "overflow");
	BAD(T("\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]"), 8,
	    "not a whole number of bytes");
	BAD(T("\"dtype\":\"F6_E2M3\",\"shape\":[2],\"data_offsets\":[0,1]"), 8,
	    "not a whole number of bytes");
	BAD(T("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
	      "\"data_offsets\":[0,1]"),
	    8, "more than 16 dimensions");
}

static void test_bad_layout(void)
{
	/* Overlap, also when the overlapping tensor comes second in the JSON. */
	BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
	    "\"b.bias\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}",
	    12, "b.bias");
	BAD("{\"b.bias\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
	    "\"a\":{\"dtype\":\"U8\",\"shape\":[12],\"data_offsets\":[0,12]}}",
	    12, "overlap");
	/* Same range twice. */
	BAD("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
	    "\"y\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
	    4, "overlap");
	/* Duplicate names, not adjacent in the JSON. */
	BAD("{\"dup.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
	    "\"other\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
	    "\"dup.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
	    3, "dup.w");
	BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__");
	BAD("{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", 0, "\"n\"");
	BAD("{\"__metadata__\":{\"format\":null}}", 0, "__metadata__");
	BAD("{\"__metadata__\":[\"a\"]}", 0, "__metadata__");
	BAD("{\"__metadata__\":\"pt\"}", 0, "__metadata__");
	/* A name that needs quoting in the message. */
	BAD("{\"bad\\u001bname\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}",
	    0, "bad\\x1bname");
}

static void test_bad_json(void)
{
	BAD("", 4, "does not start with a JSON object");
	BAD("   ", 4, "does not start with a JSON object");
	BAD("[1,2]", 4, "does not start with a JSON object");
	BAD("\"str\"", 4, "does not start with a JSON object");
	BAD("{\"a\": ", 4, "not valid JSON");
	BAD("{\"a\": 1,}", 4, "not valid JSON");
	BAD("{} x", 4, "after the JSON object");
	BAD("{}{}", 4, "after the JSON object");
	BAD("{\"a\":\"x\001y\"}", 4, "control character");
	BAD("{\"a\":\"x\ty\"}", 4, "control character");
	BAD("{\"a\":\"\xff\"}", 4, "UTF-8");
	BAD("{\"a\":\"\xc0\x80\"}", 4, "UTF-8");	 /* overlong NUL */
	BAD("{\"a\":\"\xed\xa0\x80\"}", 4, "UTF-8");	 /* surrogate */
	BAD("{\"a\":\"\xf4\x90\x80\x80\"}", 4, "UTF-8"); /* past U+10FFFF */
	BAD("{\"a\":\"\xe2\x82\"}", 4, "UTF-8");	 /* cut short */
	BAD("\xef\xbb\xbf{}", 4, "does not start with a JSON object");
	BAD("{\"a\\u0000b\":{}}", 4, "\\u0000");
	/* An escaped backslash before "u0000" is not an escape. */
	CHECK(bad_json("{\"a\\\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],"
		       "\"data_offsets\":[0,2]}}",
		       4, "a\\x5cu0000b", __LINE__));
	/* A raw NUL in the header. */
	struct stfile f = st_build("{\"a\":\"x y\"}", 0, 0);
	REQUIRE(f.bytes);
	f.bytes[8 + 7] = 0;
	CHECK(bad_file(&f, "control character", __LINE__));
	free(f.bytes);
}

static void test_bad_length(void)
{
	mfs_errmsg err = {0};
	uint64_t n = 99;
	uint8_t first8[8] = {0};

	/* Shorter than 8 bytes. */
	CHECK_EQ_INT(mfs_st_header_len(first8, 5, &n, WHAT, &err), MFS_E_FORMAT);
	CHECK(strstr(err.msg, WHAT) && strstr(err.msg, "shorter"));
	CHECK_EQ_INT(n, 0);

	/* Length past the end of the file. */
	first8[0] = 100;
	CHECK_EQ_INT(mfs_st_header_len(first8, 50, &n, WHAT, &err), MFS_E_FORMAT);
	CHECK(strstr(err.msg, WHAT) && strstr(err.msg, "past the end"));
	CHECK_EQ_INT(mfs_st_header_len(first8, 108, &n, WHAT, &err), 0);
	CHECK_EQ_INT(n, 100);
	CHECK_EQ_INT(mfs_st_header_len(first8, 107, &n, WHAT, &err), MFS_E_FORMAT);

	/* Over 100 MB, even if the file were that large; and 2^64 - 1. */
	uint64_t big = MFS_ST_HEADER_MAX + 1;
	for (int i = 0; i < 8; i++)
		first8[i] = (uint8_t)(big >> (8 * i));
	CHECK_EQ_INT(mfs_st_header_len(first8, (uint64_t)1 << 40, &n, WHAT, &err),
		     MFS_E_FORMAT);
	CHECK(strstr(err.msg, "limit"));
	memset(first8, 0xff, 8);
	CHECK_EQ_INT(mfs_st_header_len(first8, UINT64_MAX, &n, WHAT, &err), MFS_E_FORMAT);

	/* mfs_st_parse checks the length again, and takes a NULL message. */
	mfs_st_header h;
	CHECK_EQ_INT(mfs_st_parse("{}", 2, 9, &h, WHAT, &err), MFS_E_FORMAT);
	CHECK_EQ_INT(mfs_st_parse("{}", 2, 10, &h, NULL, NULL), 0);
	CHECK_EQ_INT(h.n_tensors, 0);
	mfs_st_header_free(&h);
	CHECK_EQ_INT(mfs_st_parse("{", 1, 10, &h, NULL, NULL), MFS_E_FORMAT);
	CHECK_EQ_INT(mfs_st_parse("{}", 2, MFS_ST_HEADER_MAX * 2, &h, NULL, NULL), 0);
	mfs_st_header_free(&h);
}

/* mfs_st_spans refuses a hand-made header that is not laid out as one from
 * mfs_st_parse. */
static void test_spans_guard(void)
{
	mfs_st_tensor t[2] = {{.name = "a", .dtype = MFS_DT_U8, .begin = 20, .end = 30},
			      {.name = "b", .dtype = MFS_DT_U8, .begin = 25, .end = 35}};
	mfs_st_header h = {.header_len = 2,
			   .data_start = 10,
			   .file_size = 40,
			   .n_tensors = 2,
			   .tensors = t};
	mfs_st_span *s = (mfs_st_span *)&h;
	size_t n = 7;

	CHECK_EQ_INT(mfs_st_spans(&h, &s, &n), MFS_E_INVAL);
	CHECK(s == NULL && n == 0);
	t[1].begin = 30;
	t[1].end = 41;
	CHECK_EQ_INT(mfs_st_spans(&h, &s, &n), MFS_E_INVAL);
	t[1].end = 40;
	CHECK_EQ_INT(mfs_st_spans(&h, &s, &n), 0);
	CHECK_EQ_INT(n, 4); /* header, gap, a, b */
	free(s);
}

int main(void)
{
	seed = test_seed();
	verbose = getenv("MFS_TEST_VERBOSE") != NULL;
	RUN(test_every_dtype);
	RUN(test_scalar_empty_metadata_gaps);
	RUN(test_minimal_files);
	RUN(test_random_valid);
	RUN(test_large_header);
	RUN(test_bad_tensors);
	RUN(test_bad_layout);
	RUN(test_bad_json);
	RUN(test_bad_length);
	RUN(test_spans_guard);
	return test_report();
}
