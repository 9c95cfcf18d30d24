/*
 * test_lib.c - libmodelfs, the public API (include/modelfs.h), over real
 * stores written here with the index layer: versions; opening a store (the
 * default place, a missing one, the same one twice); repos, refs, snapshots
 * and files; revisions by ref and by commit; a safetensors file's tensors
 * (from its header: names in order, dtypes, shapes, offsets, metadata);
 * tensors and random byte ranges read back exactly, from many threads at
 * once and with a single thread; every error its own code with a message
 * (missing repo, revision, file, tensor; a damaged chunk naming its tensor;
 * a malformed header; a range past the end; a short buffer); an open file
 * that reads on while another process removes its repo and garbage-collects
 * its chunks; handles carried into a forked child.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "modelfs.h"

#include "codec.h"
#include "safetensors.h"
#include "sha256.h"
#include "store.h"
#include "testhelp.h"

static uint64_t seed;
static char dir[64], dir1[80];

#define C1	  "1111111111111111111111111111111111111111"
#define C2	  "2222222222222222222222222222222222222222"
#define ETAG_M	  "aa00000000000000000000000000000000000000000000000000000000000001"
#define ETAG_D	  "aa00000000000000000000000000000000000000000000000000000000000002"
#define ETAG_G	  "aa00000000000000000000000000000000000000000000000000000000000003"
#define ETAG_BADH "aa00000000000000000000000000000000000000000000000000000000000004"
#define ETAG_CFG  "bb00000000000000000000000000000000000001"
#define ETAG_CFG2 "bb00000000000000000000000000000000000002"

/* Chunk size of the test stores: small, so a tensor spans many chunks. */
#define CH 16384

/* The model: declared out of name order; a 3-byte gap after c.idx. */
typedef struct tdesc {
	const char *name;
	const char *dtype;
	unsigned bits;
	uint32_t ndim;
	uint64_t shape[3];
} tdesc;

/* a.weight is 251 chunks: a whole read moves the read-ahead window on */
/* clang-format off */
static const tdesc model_tensors[] = {
    {"a.weight", "F32", 32, 2, {4000, 257, 0}},
    {"b.bias", "BF16", 16, 1, {1000, 0, 0}},
    {"c.idx", "I64", 64, 1, {7, 0, 0}},
    {"d.empty", "F32", 32, 2, {0, 4, 0}},
    {"e.scalar", "F16", 16, 0, {0, 0, 0}},
    {"Z.first", "U8", 8, 3, {5, 7, 11}},
};
/* clang-format on */
#define NT (sizeof(model_tensors) / sizeof(model_tensors[0]))

typedef struct model {
	uint8_t *data;
	size_t size;
	uint64_t off[NT], len[NT]; /* each tensor's bytes in the file */
} model;

static const char cfg_text[] = "{\"model_type\": \"bert\"}";
static const char cfg2_text[] = "{\"model_type\": \"bert\", \"v\": 2}";

static uint64_t nbytes_of(const tdesc *t)
{
	uint64_t n = 1;
	for (uint32_t d = 0; d < t->ndim; d++)
		n *= t->shape[d];
	return n * t->bits / 8;
}

/* A safetensors file of model_tensors, values from @p rs (compressible). */
static void model_make(model *m, uint64_t *rs)
{
	char json[2048];
	size_t o = 0, data = 0;
	o += (size_t)snprintf(
	    json + o, sizeof(json) - o,
	    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"test_lib\"}");
	for (size_t i = 0; i < NT; i++) {
		const tdesc *t = &model_tensors[i];
		m->len[i] = nbytes_of(t);
		o += (size_t)snprintf(json + o, sizeof(json) - o,
				      ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name,
				      t->dtype);
		for (uint32_t d = 0; d < t->ndim; d++)
			o += (size_t)snprintf(json + o, sizeof(json) - o, "%s%llu",
					      d ? "," : "",
					      (unsigned long long)t->shape[d]);
		o += (size_t)snprintf(json + o, sizeof(json) - o,
				      "],\"data_offsets\":[%zu,%zu]}", data,
				      data + (size_t)m->len[i]);
		m->off[i] = data;
		data += (size_t)m->len[i];
		if (!strcmp(t->name, "c.idx"))
			data += 3; /* a gap the file keeps */
	}
	o += (size_t)snprintf(json + o, sizeof(json) - o, "}");
	while ((8 + o) % 8)
		json[o++] = ' ';
	m->size = 8 + o + data;
	m->data = calloc(1, m->size);
	for (int b = 0; b < 8; b++)
		m->data[b] = (uint8_t)((uint64_t)o >> (8 * b));
	memcpy(m->data + 8, json, o);
	for (size_t i = 0; i < NT; i++)
		m->off[i] += 8 + o;
	for (size_t i = 8 + o; i < m->size; i++)
		m->data[i] = (uint8_t)(test_rand(rs) >> 59);
}

static int put_chunk(mfs_txn *t, const uint8_t *raw, size_t len, const uint8_t *lie,
		     mfs_chunk_key *key)
{
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws) < 0)
		return -ENOMEM;
	size_t cap = mfs_codec_bound_max(len), n = 0;
	uint8_t *enc = malloc(cap);
	mfs_encode_params p = {0};
	mfs_codec_id codec = len % 2 ? MFS_CODEC_RAW : MFS_CODEC_ZSTD;
	/* @lie: these bytes stored under the key of @raw (a damaged chunk) */
	int rc = mfs_codec_encode(codec, &p, lie ? lie : raw, len, enc, cap, &n, ws);
	mfs_chunk_key_of(raw, len, key);
	if (rc == 0)
		rc = mfs_chunk_put(
		    t, key, &(mfs_chunk_meta){.codec = codec, .raw_len = (uint32_t)len},
		    enc, n, NULL);
	free(enc);
	mfs_codec_ws_free(ws);
	return rc;
}

/*
 * Store @p data as blob @p etag, cut as ingest cuts a safetensors file (each
 * span into CH-byte chunks from its start) when @p st, else in CH chunks.
 * @p lie_at: a file offset whose chunk is stored damaged (or UINT64_MAX).
 */
static int put_blob(mfs_txn *t, const char *repo, const char *etag, const uint8_t *data,
		    size_t size, int st, uint64_t lie_at)
{
	mfs_st_span *spans = NULL, whole = {0, size, -1};
	size_t n_spans = 1;
	mfs_st_header h = {0};
	int rc = 0;
	if (st) {
		uint64_t hl = 0;
		if ((rc = mfs_st_header_len(data, size, &hl, "test", NULL)) < 0 ||
		    (rc = mfs_st_parse((const char *)data + 8, hl, size, &h, "test",
				       NULL)) < 0 ||
		    (rc = mfs_st_spans(&h, &spans, &n_spans)) < 0)
			return rc;
	}
	const mfs_st_span *sp = st ? spans : &whole;
	mfs_extent *ext = malloc((size / CH + 2 * n_spans + 1) * sizeof(*ext));
	size_t ne = 0;
	for (size_t i = 0; i < n_spans && rc == 0; i++)
		for (uint64_t o = 0; o < sp[i].len && rc == 0; o += CH) {
			uint64_t at = sp[i].off + o;
			size_t len = sp[i].len - o < CH ? (size_t)(sp[i].len - o) : CH;
			uint8_t *lie = NULL;
			if (lie_at >= at && lie_at < at + len) {
				lie = malloc(len);
				memcpy(lie, data + at, len);
				lie[lie_at - at] ^= 0x5a;
			}
			rc = put_chunk(t, data + at, len, lie, &ext[ne].key);
			free(lie);
			ext[ne].off = at;
			ext[ne].len = (uint32_t)len;
			ne++;
		}
	mfs_blob_rec b = {.etag = etag,
			  .size = size,
			  .stored_bytes = size,
			  .n_extents = ne,
			  .extents = ext};
	mfs_sha256(data, size, b.sha256);
	if (rc == 0)
		rc = mfs_blob_put(t, repo, &b, NULL);
	free(ext);
	free(spans);
	mfs_st_header_free(&h);
	return rc;
}

static model good, damaged, gone;
static uint8_t garbage[100];

/* org/lib: main and refs/pr/1 at C1 (model, config, a .safetensors that is
 * not one), v2 at C2 (a newer config alone). */
static int publish_lib(mfs_store *s)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_file_rec f1[] = {{"model.safetensors", ETAG_M, 0444},
			     {"config.json", ETAG_CFG, 0444},
			     {"sub/bad.safetensors", ETAG_BADH, 0555}};
	mfs_file_rec f2[] = {{"config.json", ETAG_CFG2, 0444}};
	const char *r1[] = {"main", "refs/pr/1"}, *r2[] = {"v2"};
	if ((rc = put_blob(t, "models/org/lib", ETAG_M, good.data, good.size, 1,
			   UINT64_MAX)) < 0 ||
	    (rc = put_blob(t, "models/org/lib", ETAG_CFG, (const uint8_t *)cfg_text,
			   sizeof(cfg_text) - 1, 0, UINT64_MAX)) < 0 ||
	    (rc = put_blob(t, "models/org/lib", ETAG_CFG2, (const uint8_t *)cfg2_text,
			   sizeof(cfg2_text) - 1, 0, UINT64_MAX)) < 0 ||
	    (rc = put_blob(t, "models/org/lib", ETAG_BADH, garbage, sizeof(garbage), 0,
			   UINT64_MAX)) < 0 ||
	    (rc = mfs_snapshot_publish(t, "models/org/lib", C1, 100, f1, 3, NULL, 0, r1,
				       2, NULL)) < 0 ||
	    (rc = mfs_snapshot_publish(t, "models/org/lib", C2, 200, f2, 1, NULL, 0, r2,
				       1, NULL)) < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

/* One repo with one model file; @p lie_at as put_blob's. */
static int publish_model(mfs_store *s, const char *repo, const char *etag, const model *m,
			 uint64_t lie_at)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_file_rec f[] = {{"model.safetensors", etag, 0444}};
	const char *refs[] = {"main"};
	if ((rc = put_blob(t, repo, etag, m->data, m->size, 1, lie_at)) < 0 ||
	    (rc = mfs_snapshot_publish(t, repo, C1, 100, f, 1, NULL, 0, refs, 1, NULL)) <
		0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

static int make_store(const char *d, int all)
{
	mfs_store *s;
	int rc = mfs_store_open(d, MFS_STORE_CREATE, &s, NULL);
	if (rc < 0)
		return rc;
	rc = publish_lib(s);
	if (rc == 0 && all)
		rc = publish_model(s, "models/org/damaged", ETAG_D, &damaged,
				   damaged.off[0] + 3 * CH + 17);
	if (rc == 0 && all)
		rc = publish_model(s, "models/org/gone", ETAG_G, &gone, UINT64_MAX);
	mfs_store_close(s);
	return rc;
}

static int setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mfs-test-lib-XXXXXX");
	if (!mkdtemp(dir))
		return -errno;
	snprintf(dir1, sizeof(dir1), "%s/single", dir);
	uint64_t rs = seed;
	model_make(&good, &rs);
	model_make(&damaged, &rs);
	model_make(&gone, &rs);
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t)test_rand(&rs);
	garbage[0] = 200; /* a header length past the end of the file */
	memset(garbage + 1, 0, 7);
	int rc = make_store(dir, 1);
	return rc < 0 ? rc : make_store(dir1, 0);
}

static void cleanup(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(good.data);
	free(damaged.data);
	free(gone.data);
}

/* ---- tests ---- */

static void test_version(void)
{
	CHECK_EQ_INT(modelfs_version_number(), MODELFS_VERSION_NUMBER);
	CHECK(!strcmp(modelfs_version_string(), MODELFS_VERSION_STRING));
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", MODELFS_VERSION_MAJOR,
		 MODELFS_VERSION_MINOR, MODELFS_VERSION_PATCH);
	CHECK(!strcmp(want, MODELFS_VERSION_STRING));
	CHECK(!strcmp(modelfs_strerror(MODELFS_E_NOTENSOR), "no such tensor"));
	CHECK(!strcmp(modelfs_strerror(12345), "unknown error"));
	/* every code has its own name */
	for (int a = MODELFS_E_BUSY; a < 0; a++)
		for (int b = a + 1; b < 0; b++)
			CHECK(strcmp(modelfs_strerror(a), modelfs_strerror(b)) != 0);
}

static void test_open(void)
{
	modelfs_store *s = (modelfs_store *)1, *s2;
	modelfs_error err = {0};
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/none", dir);
	CHECK_EQ_INT(modelfs_store_open(missing, 0, &s, &err), MODELFS_E_NOSTORE);
	CHECK(s == NULL && err.code == MODELFS_E_NOSTORE && strstr(err.message, missing));
	/* a directory that holds no store */
	CHECK_EQ_INT(mkdir(missing, 0700), 0);
	CHECK_EQ_INT(modelfs_store_open(missing, 0, &s, &err), MODELFS_E_NOSTORE);
	CHECK(strstr(err.message, "no modelfs store") != NULL);
	rmdir(missing);

	/* the default place: $MODELFS_STORE */
	char buf[256];
	setenv("MODELFS_STORE", dir, 1);
	CHECK_EQ_INT(modelfs_store_default_dir(buf, sizeof(buf), NULL), 0);
	CHECK(!strcmp(buf, dir));
	CHECK_EQ_INT(modelfs_store_default_dir(buf, 4, &err), MODELFS_E_INVAL);
	REQUIRE(modelfs_store_open(NULL, 3, &s, NULL) == 0);
	CHECK(!strcmp(modelfs_store_dir(s), dir));
	CHECK_EQ_INT(modelfs_store_threads(s), 3);
	/* the same directory again: the same handle (LMDB opens it once per process) */
	char dots[128];
	snprintf(dots, sizeof(dots), "%s/./", dir);
	REQUIRE(modelfs_store_open(dots, 7, &s2, NULL) == 0);
	CHECK(s2 == s);
	CHECK_EQ_INT(modelfs_store_threads(s2), 3);
	modelfs_store_close(s2);
	modelfs_store_close(s);
	unsetenv("MODELFS_STORE");
	setenv("XDG_DATA_HOME", dir, 1);
	CHECK_EQ_INT(modelfs_store_default_dir(buf, sizeof(buf), NULL), 0);
	char want[128];
	snprintf(want, sizeof(want), "%s/modelfs", dir);
	CHECK(!strcmp(buf, want));
	modelfs_error e2 = {0};
	CHECK_EQ_INT(modelfs_store_default_dir(buf, 8, &e2), MODELFS_E_INVAL);
	CHECK(strstr(e2.message, "longer than") != NULL);
	unsetenv("XDG_DATA_HOME");
	char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	unsetenv("HOME");
	CHECK_EQ_INT(modelfs_store_default_dir(buf, sizeof(buf), &e2), MODELFS_E_INVAL);
	CHECK(strstr(e2.message, "none of MODELFS_STORE") != NULL);
	if (home) {
		setenv("HOME", home, 1);
		free(home);
	}
	modelfs_store_close(NULL);
}

static const modelfs_entry *find_entry(const modelfs_list *l, const char *name)
{
	for (size_t i = 0; i < modelfs_list_count(l); i++)
		if (!strcmp(modelfs_list_get(l, i)->name, name))
			return modelfs_list_get(l, i);
	return NULL;
}

static void test_lists(modelfs_store *s)
{
	modelfs_list *l;
	modelfs_error err = {0};
	REQUIRE(modelfs_list_repos(s, &l, &err) == 0);
	CHECK_EQ_INT(modelfs_list_count(l), 3);
	CHECK(find_entry(l, "models/org/lib") && find_entry(l, "models/org/gone"));
	CHECK(modelfs_list_get(l, 3) == NULL);
	modelfs_list_free(l);

	REQUIRE(modelfs_list_refs(s, "org/lib", &l, &err) == 0);
	CHECK_EQ_INT(modelfs_list_count(l), 3);
	const modelfs_entry *e = find_entry(l, "main");
	CHECK(e && !strcmp(e->commit, C1));
	CHECK((e = find_entry(l, "refs/pr/1")) && !strcmp(e->commit, C1));
	CHECK((e = find_entry(l, "v2")) && !strcmp(e->commit, C2));
	modelfs_list_free(l);

	REQUIRE(modelfs_list_snapshots(s, "models/org/lib", &l, &err) == 0);
	REQUIRE(modelfs_list_count(l) == 2);
	CHECK(!strcmp(modelfs_list_get(l, 0)->name, C2)); /* newest first */
	CHECK_EQ_INT(modelfs_list_get(l, 0)->time, 200);
	CHECK_EQ_INT(modelfs_list_get(l, 0)->size, 1);
	CHECK_EQ_INT(modelfs_list_get(l, 1)->size, 3);
	modelfs_list_free(l);

	REQUIRE(modelfs_list_files(s, "org/lib", NULL, &l, &err) == 0);
	CHECK_EQ_INT(modelfs_list_count(l), 3);
	CHECK((e = find_entry(l, "model.safetensors")) && e->size == good.size &&
	      !strcmp(e->etag, ETAG_M) && !strcmp(e->commit, C1) && e->mode == 0444);
	CHECK((e = find_entry(l, "sub/bad.safetensors")) && e->mode == 0555);
	modelfs_list_free(l);
	REQUIRE(modelfs_list_files(s, "org/lib", "v2", &l, &err) == 0);
	CHECK_EQ_INT(modelfs_list_count(l), 1);
	CHECK((e = find_entry(l, "config.json")) && e->size == sizeof(cfg2_text) - 1);
	modelfs_list_free(l);

	l = (modelfs_list *)1;
	CHECK_EQ_INT(modelfs_list_files(s, "org/nope", NULL, &l, &err), MODELFS_E_NOREPO);
	CHECK(l == NULL && strstr(err.message, "models/org/nope"));
	CHECK_EQ_INT(modelfs_list_refs(s, "org/nope", &l, NULL), MODELFS_E_NOREPO);
	CHECK_EQ_INT(modelfs_list_files(s, "org/lib", "v3", &l, &err),
		     MODELFS_E_NOREVISION);
	CHECK(strstr(err.message, "v3") && strstr(err.message, "refs/pr/1"));
	CHECK_EQ_INT(modelfs_list_snapshots(s, "org/../x", &l, &err), MODELFS_E_INVAL);
}

static void test_resolve(modelfs_store *s)
{
	char c[MODELFS_COMMIT_SIZE];
	modelfs_error err = {0};
	CHECK_EQ_INT(modelfs_resolve(s, "org/lib", "main", c, &err), 0);
	CHECK(!strcmp(c, C1));
	CHECK_EQ_INT(modelfs_resolve(s, "models/org/lib", NULL, c, &err), 0);
	CHECK(!strcmp(c, C1));
	CHECK_EQ_INT(modelfs_resolve(s, "org/lib", "v2", c, &err), 0);
	CHECK(!strcmp(c, C2));
	CHECK_EQ_INT(modelfs_resolve(s, "org/lib", C2, c, &err), 0); /* a commit hash */
	CHECK(!strcmp(c, C2));
	CHECK_EQ_INT(modelfs_resolve(s, "org/lib",
				     "3333333333333333333333333333333333333333", c, &err),
		     MODELFS_E_NOREVISION);
	CHECK(c[0] == '\0');
	CHECK_EQ_INT(modelfs_resolve(s, "org/lib", "", c, &err), MODELFS_E_INVAL);
	CHECK_EQ_INT(modelfs_resolve(s, "org/missing", "main", c, &err),
		     MODELFS_E_NOREPO);
	CHECK(err.code == MODELFS_E_NOREPO && strstr(err.message, "models/org/missing"));
	CHECK_EQ_INT(modelfs_resolve(s, "", "main", c, &err), MODELFS_E_INVAL);
	CHECK_EQ_INT(modelfs_resolve(s, "org/a--b", "main", c, &err), MODELFS_E_INVAL);
	CHECK(strstr(err.message, "invalid repo id") != NULL);
}

static void test_tensors(modelfs_store *s)
{
	modelfs_file *f = (modelfs_file *)1;
	modelfs_error err = {0};
	CHECK_EQ_INT(
	    modelfs_file_open(s, "org/lib", "main", "nope.safetensors", &f, &err),
	    MODELFS_E_NOFILE);
	CHECK(f == NULL && strstr(err.message, "nope.safetensors"));
	CHECK_EQ_INT(modelfs_file_open(s, "org/lib", "v2", "model.safetensors", &f, &err),
		     MODELFS_E_NOFILE); /* v2's snapshot has no model */
	CHECK_EQ_INT(modelfs_file_open(s, "org/lib", "main", "../x", &f, &err),
		     MODELFS_E_INVAL);
	REQUIRE(modelfs_file_open(s, "org/lib", "refs/pr/1", "model.safetensors", &f,
				  &err) == 0);
	CHECK_EQ_INT(modelfs_file_size(f), good.size);
	CHECK(!strcmp(modelfs_file_repo(f), "models/org/lib"));
	CHECK(!strcmp(modelfs_file_commit(f), C1));
	CHECK(!strcmp(modelfs_file_path(f), "model.safetensors"));
	CHECK(!strcmp(modelfs_file_etag(f), ETAG_M));
	uint8_t sha[32], want_sha[32];
	modelfs_file_sha256(f, sha);
	mfs_sha256(good.data, good.size, want_sha);
	CHECK(!memcmp(sha, want_sha, 32));
	const char *md = modelfs_file_metadata(f);
	CHECK(md && !strcmp(md, "{\"format\":\"pt\",\"note\":\"test_lib\"}"));

	size_t n = 0;
	REQUIRE(modelfs_file_tensor_count(f, &n, &err) == 0);
	REQUIRE(n == NT);
	/* bytewise name order: "Z.first" before "a.weight" */
	static const char *const order[NT] = {"Z.first", "a.weight", "b.bias",
					      "c.idx",	 "d.empty",  "e.scalar"};
	for (size_t i = 0; i < NT; i++) {
		const modelfs_tensor *t = modelfs_file_tensor(f, i);
		REQUIRE(t != NULL);
		CHECK(!strcmp(t->name, order[i]));
		size_t k = 0;
		while (k < NT && strcmp(model_tensors[k].name, t->name))
			k++;
		REQUIRE(k < NT);
		const tdesc *d = &model_tensors[k];
		CHECK(!strcmp(t->dtype, d->dtype));
		CHECK_EQ_INT(t->dtype_bits, d->bits);
		CHECK_EQ_INT(t->ndim, d->ndim);
		for (uint32_t j = 0; j < t->ndim; j++)
			CHECK_EQ_INT(t->shape[j], d->shape[j]);
		CHECK_EQ_INT(t->offset, good.off[k]);
		CHECK_EQ_INT(t->nbytes, good.len[k]);
		/* read it: exactly the file's bytes, and nothing past nbytes written */
		uint8_t *buf = malloc(t->nbytes + 16);
		memset(buf, 0xee, t->nbytes + 16);
		CHECK_EQ_INT(modelfs_tensor_read(f, t->name, buf, t->nbytes + 16, &err),
			     0);
		CHECK(!memcmp(buf, good.data + good.off[k], t->nbytes));
		CHECK(buf[t->nbytes] == 0xee && buf[t->nbytes + 15] == 0xee);
		if (t->nbytes) {
			CHECK_EQ_INT(
			    modelfs_tensor_read(f, t->name, buf, t->nbytes - 1, &err),
			    MODELFS_E_NOSPACE);
			CHECK(strstr(err.message, t->name) != NULL);
		}
		free(buf);
	}
	CHECK(modelfs_file_tensor(f, NT) == NULL);
	const modelfs_tensor *t = (const modelfs_tensor *)1;
	CHECK_EQ_INT(modelfs_file_find_tensor(f, "a.weigh", &t, &err),
		     MODELFS_E_NOTENSOR);
	CHECK(t == NULL && strstr(err.message, "a.weigh"));
	uint8_t one;
	CHECK_EQ_INT(modelfs_tensor_read(f, "zzz", &one, 1, &err), MODELFS_E_NOTENSOR);
	modelfs_file_close(f);

	/* a file of another kind: no tensors, no error; asking for one is FORMAT */
	REQUIRE(modelfs_file_open(s, "org/lib", NULL, "config.json", &f, &err) == 0);
	CHECK_EQ_INT(modelfs_file_tensor_count(f, &n, &err), 0);
	CHECK_EQ_INT(n, 0);
	CHECK(modelfs_file_metadata(f) == NULL);
	CHECK_EQ_INT(modelfs_file_find_tensor(f, "x", &t, &err), MODELFS_E_FORMAT);
	char text[64] = "";
	CHECK_EQ_INT(modelfs_file_read(f, 0, text, sizeof(cfg_text) - 1, &err), 0);
	CHECK(!strcmp(text, cfg_text));
	modelfs_file_close(f);

	/* a .safetensors file that is not one: opens, reads, and says why it has no
	 * tensors */
	REQUIRE(modelfs_file_open(s, "org/lib", NULL, "sub/bad.safetensors", &f, &err) ==
		0);
	CHECK_EQ_INT(modelfs_file_tensor_count(f, &n, &err), MODELFS_E_FORMAT);
	CHECK(strstr(err.message, "header length") != NULL);
	CHECK_EQ_INT(modelfs_file_find_tensor(f, "x", &t, &err), MODELFS_E_FORMAT);
	uint8_t g[sizeof(garbage)];
	CHECK_EQ_INT(modelfs_file_read(f, 0, g, sizeof(g), &err), 0);
	CHECK(!memcmp(g, garbage, sizeof(g)));
	modelfs_file_close(f);
}

/* Random ranges from many threads, compared with the file's bytes. */
typedef struct reader_arg {
	modelfs_file *f;
	uint64_t seed;
	int bad;
} reader_arg;

static int random_reads(modelfs_file *f, uint64_t *rs, int rounds)
{
	uint8_t *buf[3];
	for (int k = 0; k < 3; k++)
		buf[k] = malloc(good.size);
	int bad = 0;
	for (int r = 0; r < rounds && !bad; r++) {
		modelfs_range rg[3];
		size_t n = 1 + test_rand(rs) % 3;
		for (size_t k = 0; k < n; k++) {
			uint64_t off = test_rand(rs) % good.size;
			uint64_t len = test_rand(rs) % 4 == 0
					   ? good.size - off
					   : test_rand(rs) % (4 * CH + 1);
			if (len > good.size - off)
				len = good.size - off;
			rg[k] = (modelfs_range){
			    .offset = off, .len = (size_t)len, .dst = buf[k]};
		}
		modelfs_error err;
		int rc = n == 1 ? modelfs_file_read(f, rg[0].offset, rg[0].dst, rg[0].len,
						    &err)
				: modelfs_file_read_ranges(f, rg, n, &err);
		if (rc != 0) {
			fprintf(stderr, "read failed: %s\n", err.message);
			bad = 1;
		}
		for (size_t k = 0; k < n && !bad; k++)
			if (memcmp(rg[k].dst, good.data + rg[k].offset, rg[k].len) != 0) {
				fprintf(stderr, "range %llu+%zu differs\n",
					(unsigned long long)rg[k].offset, rg[k].len);
				bad = 1;
			}
	}
	for (int k = 0; k < 3; k++)
		free(buf[k]);
	return bad;
}

static void *reader_main(void *p)
{
	reader_arg *a = p;
	a->bad = random_reads(a->f, &a->seed, 60);
	return NULL;
}

static void test_reads(modelfs_store *s)
{
	modelfs_file *f;
	modelfs_error err = {0};
	REQUIRE(modelfs_file_open(s, "org/lib", "main", "model.safetensors", &f, &err) ==
		0);
	/* the whole file, and an empty read at its end */
	uint8_t *buf = malloc(good.size + 1);
	CHECK_EQ_INT(modelfs_file_read(f, 0, buf, good.size, &err), 0);
	CHECK(!memcmp(buf, good.data, good.size));
	CHECK_EQ_INT(modelfs_file_read(f, good.size, buf, 0, &err), 0);
	/* past the end: refused before anything is read */
	CHECK_EQ_INT(modelfs_file_read(f, good.size - 2, buf, 3, &err), MODELFS_E_INVAL);
	CHECK(strstr(err.message, "past the end") != NULL);
	CHECK_EQ_INT(modelfs_file_read(f, UINT64_MAX, buf, 1, &err), MODELFS_E_INVAL);
	CHECK_EQ_INT(modelfs_file_read(f, 0, NULL, 5, &err), MODELFS_E_INVAL);
	/* every tensor in one batched call, given out of order */
	modelfs_range rg[NT];
	uint8_t *dst[NT];
	for (size_t i = 0; i < NT; i++) {
		dst[i] = malloc(good.len[i] + 1);
		rg[NT - 1 - i] =
		    (modelfs_range){good.off[i], (size_t)good.len[i], dst[i]};
	}
	CHECK_EQ_INT(modelfs_file_read_ranges(f, rg, NT, &err), 0);
	for (size_t i = 0; i < NT; i++) {
		CHECK(!memcmp(dst[i], good.data + good.off[i], good.len[i]));
		free(dst[i]);
	}
	CHECK_EQ_INT(modelfs_file_read_ranges(f, rg, 0, &err), 0);
	free(buf);

	uint64_t rs = seed ^ 0x9e3779b97f4a7c15ull;
	CHECK_EQ_INT(random_reads(f, &rs, 40), 0);
	/* many threads on one file and one store (3 decoding threads) */
	pthread_t th[4];
	reader_arg a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (reader_arg){.f = f, .seed = seed + 1000 + (uint64_t)i};
		CHECK_EQ_INT(pthread_create(&th[i], NULL, reader_main, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(a[i].bad, 0);
	}
	modelfs_file_close(f);
}

/* The store opened with one thread: every read on the calling thread. */
static void test_single_thread(void)
{
	modelfs_store *s;
	modelfs_file *f;
	REQUIRE(modelfs_store_open(dir1, 1, &s, NULL) == 0);
	CHECK_EQ_INT(modelfs_store_threads(s), 1);
	REQUIRE(modelfs_file_open(s, "org/lib", "main", "model.safetensors", &f, NULL) ==
		0);
	/* the file keeps the store open after its handle is given back */
	modelfs_store_close(s);
	uint64_t rs = seed ^ 77;
	CHECK_EQ_INT(random_reads(f, &rs, 30), 0);
	modelfs_file_close(f);
}

static void test_damaged(modelfs_store *s)
{
	modelfs_file *f;
	modelfs_error err = {0};
	REQUIRE(modelfs_file_open(s, "org/damaged", "main", "model.safetensors", &f,
				  &err) == 0);
	const modelfs_tensor *t;
	REQUIRE(modelfs_file_find_tensor(f, "a.weight", &t, &err) == 0);
	uint8_t *buf = malloc(t->nbytes);
	CHECK_EQ_INT(modelfs_tensor_read(f, "a.weight", buf, t->nbytes, &err),
		     MODELFS_E_CORRUPT);
	CHECK_EQ_INT(err.code, MODELFS_E_CORRUPT);
	CHECK(strstr(err.message, "models/org/damaged") &&
	      strstr(err.message, "a.weight") && strstr(err.message, "fails its check") &&
	      strstr(err.message, "modelfs verify"));
	char at[32];
	snprintf(at, sizeof(at), "offset %llu", (unsigned long long)(t->offset + 3 * CH));
	CHECK(strstr(err.message, at) != NULL);
	/* the bytes before the damaged chunk, and the other tensors, read fine */
	CHECK_EQ_INT(modelfs_file_read(f, t->offset, buf, 3 * CH, &err), 0);
	CHECK(!memcmp(buf, damaged.data + t->offset, 3 * CH));
	CHECK_EQ_INT(modelfs_tensor_read(f, "b.bias", buf, t->nbytes, &err), 0);
	/* a read that only partly covers the damaged chunk fails too */
	CHECK_EQ_INT(modelfs_file_read(f, t->offset + 3 * CH + 100, buf, 10, &err),
		     MODELFS_E_CORRUPT);
	free(buf);
	modelfs_file_close(f);
}

/* Remove org/gone and gc in another process, as `modelfs rm` + `gc` would. */
static int rm_and_gc(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		mfs_store *s;
		mfs_txn *t;
		mfs_gc_stat gs = {0};
		int lock = -1;
		int rc = mfs_store_open(dir, 0, &s, NULL);
		if (rc == 0 && (rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t)) == 0 &&
		    (rc = mfs_repo_remove(t, "models/org/gone")) == 0)
			rc = mfs_txn_commit(t);
		if (rc == 0)
			rc = mfs_store_lock_ingest(s, 1, 1, &lock);
		if (rc == 0 && (rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t)) == 0 &&
		    (rc = mfs_gc_sweep(t, &gs)) == 0)
			rc = mfs_txn_commit(t);
		if (lock >= 0)
			mfs_store_unlock(lock);
		if (rc == 0)
			mfs_store_close(s);
		_exit(rc == 0 && gs.chunks_removed > 0 ? 0 : 1);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void test_survives_gc(modelfs_store *s)
{
	modelfs_file *f, *g;
	modelfs_error err = {0};
	REQUIRE(modelfs_file_open(s, "org/gone", "main", "model.safetensors", &f, &err) ==
		0);
	REQUIRE(rm_and_gc() == 0);
	CHECK_EQ_INT(
	    modelfs_file_open(s, "org/gone", "main", "model.safetensors", &g, &err),
	    MODELFS_E_NOREPO);
	modelfs_list *l;
	REQUIRE(modelfs_list_repos(s, &l, &err) == 0);
	CHECK_EQ_INT(modelfs_list_count(l), 2);
	modelfs_list_free(l);
	/* the open file still reads what it had, every byte checked */
	uint8_t *buf = malloc(gone.size);
	CHECK_EQ_INT(modelfs_file_read(f, 0, buf, gone.size, &err), 0);
	CHECK(!memcmp(buf, gone.data, gone.size));
	free(buf);
	modelfs_file_close(f);
}

/*
 * A child forked while the parent has the store and a file open: the
 * parent's handles refuse to read there and closing them harms nothing of
 * the parent's; the child opens the store anew and reads; the parent reads
 * on, its snapshot intact.
 */
static void test_fork(modelfs_store *s)
{
	modelfs_file *f;
	REQUIRE(modelfs_file_open(s, "org/lib", "main", "model.safetensors", &f, NULL) ==
		0);
	uint8_t *buf = malloc(good.size);
	CHECK_EQ_INT(modelfs_file_read(f, 0, buf, good.size, NULL), 0); /* pool started */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		int bad = 0;
		modelfs_error err = {0};
		modelfs_file *g = NULL;
		modelfs_store *s2 = NULL;
		char c[MODELFS_COMMIT_SIZE];
		bad |= modelfs_file_read(f, 0, buf, good.size, &err) != MODELFS_E_INVAL;
		bad |= strstr(err.message, "another process") == NULL;
		bad |= modelfs_resolve(s, "org/lib", "main", c, NULL) != MODELFS_E_INVAL;
		bad |= modelfs_file_open(s, "org/lib", "main", "config.json", &g, NULL) !=
		       MODELFS_E_INVAL;
		modelfs_file_close(f); /* must not end the parent's snapshot */
		modelfs_store_close(s);
		/* one thread: a child starts none (TSAN cannot follow threads
		 * started after a multi-threaded fork) */
		bad |= modelfs_store_open(dir, 1, &s2, &err) != 0;
		bad |= s2 == s;
		bad |= modelfs_file_open(s2, "org/lib", "main", "model.safetensors", &g,
					 &err) != 0;
		memset(buf, 0, good.size);
		bad |= g && modelfs_file_read(g, 0, buf, good.size, &err) != 0;
		bad |= memcmp(buf, good.data, good.size) != 0;
		modelfs_file_close(g);
		modelfs_store_close(s2);
		if (bad)
			fprintf(stderr, "child: %s\n", err.message);
		_exit(bad);
	}
	int st = 0;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	memset(buf, 0, good.size);
	CHECK_EQ_INT(modelfs_file_read(f, 0, buf, good.size, NULL), 0);
	CHECK(!memcmp(buf, good.data, good.size));
	free(buf);
	modelfs_file_close(f);
}

int main(void)
{
	seed = test_seed();
	int rc = setup();
	if (rc < 0) {
		fprintf(stderr, "setup failed: %s\n", mfs_strerror(rc));
		return 1;
	}
	RUN(test_version);
	RUN(test_open);
	modelfs_store *s = NULL;
	modelfs_error err = {0};
	if (modelfs_store_open(dir, 3, &s, &err) < 0) {
		fprintf(stderr, "open failed: %s\n", err.message);
		cleanup();
		return 1;
	}
#define RUN_S(fn)                                                                        \
	do {                                                                             \
		int before_ = test_failures;                                             \
		fn(s);                                                                   \
		fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL",   \
			#fn);                                                            \
	} while (0)
	RUN_S(test_lists);
	RUN_S(test_resolve);
	RUN_S(test_tensors);
	RUN_S(test_reads);
	RUN(test_single_thread);
	RUN_S(test_damaged);
	RUN_S(test_fork);
	RUN_S(test_survives_gc);
	modelfs_store_close(s);
	cleanup();
	return test_report();
}
