/* Unit tests for index/store.c and fs/reader.c: records, versions, refcounts, gc. */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "reader.h"
#include "store.h"
#include "store_raw.h"
#include "testfs.h"
#include "testhelp.h"

static uint64_t seed;

/* Store raw bytes as one chunk with codec @p codec; returns its key. */
static int put_chunk(mfs_store *s, const void *raw, size_t len, mfs_codec_id codec,
		     mfs_chunk_key *key)
{
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws) < 0)
		return -1;
	size_t cap = mfs_codec_bound_max(len), n = 0;
	uint8_t *enc = malloc(cap);
	mfs_encode_params p = {0};
	int rc = mfs_codec_encode(codec, &p, raw, len, enc, cap, &n, ws);
	mfs_chunk_key_of(raw, len, key);
	mfs_txn *t;
	if (rc == 0)
		rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc == 0) {
		rc = mfs_chunk_put(t, key, &(mfs_chunk_meta){.codec = codec, .raw_len = (uint32_t)len}, enc, n, NULL);
		rc = rc ? rc : mfs_txn_commit(t);
	}
	free(enc);
	mfs_codec_ws_free(ws);
	return rc;
}

static void test_names(void)
{
	static const char *const good[] = {"models/org/name", "models/gpt2",
					   "datasets/a-b/c_d.e", "models/O1/n.2-x"};
	static const char *const bad[] = {"org/name",          "models/../x",
					  "models/a/../../b",  "models/a/b/c",
					  "models/a--b/c",     "models/.hidden/x",
					  "models/",           "models/a/",
					  "blobs/a/b",         "models/a b/c",
					  "models/a/b\n"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		CHECK_EQ_INT(mfs_repo_id_check(good[i], NULL), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		mfs_errmsg e = {0};
		CHECK_EQ_INT(mfs_repo_id_check(bad[i], &e), MFS_E_INVAL);
		CHECK(e.msg[0] != '\0');
	}
	CHECK_EQ_INT(mfs_repo_path_check("config.json", NULL), 0);
	CHECK_EQ_INT(mfs_repo_path_check("1_Pooling/config.json", NULL), 0);
	CHECK_EQ_INT(mfs_repo_path_check("name with spaces.json", NULL), 0);
	CHECK_EQ_INT(mfs_repo_path_check("../etc/passwd", NULL), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_repo_path_check("a/./b", NULL), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_repo_path_check("a//b", NULL), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_repo_path_check("/abs", NULL), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_repo_path_check("dir/", NULL), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_repo_path_check("", NULL), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_repo_path_check("a\x01" "b", NULL), MFS_E_INVAL);
}

static void test_extent_find(void)
{
	for (int round = 0; round < 200; round++) {
		size_t n = 1 + test_rand(&seed) % 64;
		mfs_extent ext[64];
		uint64_t off = 0;
		for (size_t i = 0; i < n; i++) {
			ext[i].off = off;
			ext[i].len = 1 + (uint32_t)(test_rand(&seed) % 5000);
			off += ext[i].len;
		}
		for (int q = 0; q < 50; q++) {
			uint64_t o = test_rand(&seed) % (off + 10);
			size_t i = mfs_extent_find(ext, n, o);
			if (o >= off) {
				CHECK_EQ_INT(i, n);
			} else {
				CHECK(i < n && ext[i].off <= o && o < ext[i].off + ext[i].len);
			}
		}
		CHECK_EQ_INT(mfs_extent_find(ext, n, 0), 0);
		CHECK_EQ_INT(mfs_extent_find(ext, n, off - 1), n - 1);
	}
	CHECK_EQ_INT(mfs_extent_find(NULL, 0, 0), 0);
}

static void test_open_and_version(void)
{
	char *d = test_fresh_dir("store");
	REQUIRE(d);
	mfs_store *s = NULL;
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_store_open(d, MFS_STORE_RDONLY, &s, &e), -ENOENT);
	CHECK(strstr(e.msg, d) != NULL);
	REQUIRE(mfs_store_open(d, MFS_STORE_CREATE, &s, &e) == 0);
	struct stat st;
	CHECK(stat(d, &st) == 0);
	mfs_txn *t;
	uint64_t g0 = 0;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	CHECK_EQ_INT(mfs_store_generation(t, &g0), 0);
	CHECK(g0 >= 1);
	mfs_txn_abort(t);
	mfs_store_close(s);

	/* a store written by another format version is refused, and left alone */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	REQUIRE(mdb_env_create(&env) == 0);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_mapsize(env, (size_t)1 << 40);
	REQUIRE(mdb_env_open(env, d, 0, 0600) == 0);
	REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	REQUIRE(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
	uint8_t v99[8] = {99};
	MDB_val k = {6, "format"}, v = {8, v99};
	REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
	REQUIRE(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	memset(&e, 0, sizeof e);
	CHECK_EQ_INT(mfs_store_open(d, 0, &s, &e), MFS_E_VERSION);
	CHECK(strstr(e.msg, "format 99") != NULL);
	CHECK_EQ_INT(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL), MFS_E_VERSION);

	/* an LMDB environment without a format record (not a store, or one whose
	 * creator died before its first commit): only an open that may create
	 * a store makes it one; an upgrade, or any other writer, refuses it */
	char *d3 = test_fresh_dir("store");
	REQUIRE(d3);
	REQUIRE(mdb_env_create(&env) == 0);
	REQUIRE(mdb_env_open(env, d3, 0, 0600) == 0);
	mdb_env_close(env);
	memset(&e, 0, sizeof e);
	CHECK_EQ_INT(mfs_store_open(d3, MFS_STORE_UPGRADE, &s, &e), MFS_E_NOTFOUND);
	CHECK(strstr(e.msg, "no modelfs format record") != NULL);
	CHECK_EQ_INT(mfs_store_open(d3, 0, &s, NULL), MFS_E_NOTFOUND);
	CHECK(mfs_store_open(d3, MFS_STORE_RDONLY, &s, NULL) < 0);
	REQUIRE(mfs_store_open(d3, MFS_STORE_CREATE, &s, NULL) == 0);
	mfs_store_close(s);
	CHECK_EQ_INT(mfs_store_open(d3, MFS_STORE_UPGRADE, &s, NULL), 0);
	mfs_store_close(s);
	test_drop_dir(d3);

	/* something that is not an LMDB file is refused with a message */
	char *d2 = test_fresh_dir("store");
	REQUIRE(d2);
	char p[256];
	snprintf(p, sizeof p, "%s/data.mdb", d2);
	FILE *f = fopen(p, "w");
	REQUIRE(f);
	for (int i = 0; i < 10000; i++)
		fputs("not lmdb ", f);
	fclose(f);
	memset(&e, 0, sizeof e);
	CHECK(mfs_store_open(d2, 0, &s, &e) < 0);
	CHECK(e.msg[0] != '\0');
	test_drop_dir(d2);
	test_drop_dir(d);
}

static void test_chunks(void)
{
	char *d = test_fresh_dir("store");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	size_t len = 100000;
	uint8_t *raw = malloc(len), *out = malloc(len);
	for (size_t i = 0; i < len; i++)
		raw[i] = (uint8_t)(test_rand(&seed) % 7);
	mfs_chunk_key k1, k2;
	CHECK_EQ_INT(put_chunk(s, raw, len, MFS_CODEC_ZSTD, &k1), 0);
	/* the same bytes again: nothing new */
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	int existed = 0;
	CHECK_EQ_INT(mfs_chunk_put(t, &k1, &(mfs_chunk_meta){.codec = MFS_CODEC_RAW, .raw_len = (uint32_t)len}, raw, len, &existed),
		     0);
	CHECK_EQ_INT(existed, 1);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	mfs_chunk_view v;
	REQUIRE(mfs_chunk_get(t, &k1, &v) == 0);
	CHECK_EQ_INT(v.codec, MFS_CODEC_ZSTD);
	CHECK_EQ_INT(v.raw_len, len);
	CHECK(v.payload_len < len);
	/* the record names its entry in a pack; the payload is not read yet */
	CHECK_EQ_INT(v.in_pack, 1);
	CHECK(v.payload == NULL);
	CHECK_EQ_INT(v.payload_len, v.loc.len);
	CHECK_EQ_INT(v.loc.off, 32); /* the first entry, after the pack header */
	CHECK_EQ_INT(mfs_chunk_decode(&v, &k1, NULL, out, len, ws), MFS_E_INVAL);
	REQUIRE(mfs_chunk_load(s, &k1, &v, ws, NULL) == 0);
	CHECK_EQ_INT(mfs_chunk_decode(&v, &k1, NULL, out, len, ws), 0);
	CHECK(memcmp(out, raw, len) == 0);
	/* a key that does not match the bytes: the decode is refused */
	k2 = k1;
	k2.b[5] ^= 1;
	CHECK_EQ_INT(mfs_chunk_decode(&v, &k2, NULL, out, len, ws), MFS_E_CORRUPT);
	/* and the entry is not that key's: the read is refused */
	mfs_chunk_view v2 = v;
	v2.payload = NULL;
	CHECK_EQ_INT(mfs_chunk_load(s, &k2, &v2, ws, NULL), MFS_E_CORRUPT);
	CHECK_EQ_INT(mfs_chunk_get(t, &k2, &v), MFS_E_NOTFOUND);
	uint64_t rc = 99;
	CHECK_EQ_INT(mfs_chunk_refcount(t, &k1, &rc), 0);
	CHECK_EQ_INT(rc, 0);
	mfs_txn_abort(t);
	/* read-only without read-around (the mount's way) reads the same */
	mfs_store_close(s);
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY | MFS_STORE_NORDAHEAD, &s, NULL) == 0);
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	REQUIRE(mfs_chunk_get(t, &k1, &v) == 0);
	memset(out, 0, len);
	REQUIRE(mfs_chunk_load(s, &k1, &v, ws, NULL) == 0);
	CHECK_EQ_INT(mfs_chunk_decode(&v, &k1, NULL, out, len, ws), 0);
	CHECK(memcmp(out, raw, len) == 0);
	mfs_txn_abort(t);
	free(raw);
	free(out);
	mfs_codec_ws_free(ws);
	mfs_store_close(s);
	test_drop_dir(d);
}

/* A store with two repos sharing a chunk; used by the publish/rm/gc/reader tests. */
struct fixture {
	mfs_store *s;
	uint8_t *file;      /* the blob's bytes */
	size_t size;
	mfs_extent ext[8];
	size_t n_ext;
};

static int fixture_build(struct fixture *fx, const char *d)
{
	if (mfs_store_open(d, MFS_STORE_CREATE, &fx->s, NULL) < 0)
		return -1;
	/* a file of 5 chunks of uneven size, one of them repeated (dedup inside a file) */
	static const size_t lens[] = {4096, 65536, 4096, 1000, 7};
	fx->size = 0;
	for (size_t i = 0; i < 5; i++)
		fx->size += lens[i];
	fx->file = malloc(fx->size);
	for (size_t i = 0; i < fx->size; i++)
		fx->file[i] = (uint8_t)(test_rand(&seed) >> 56);
	memcpy(fx->file + 4096 + 65536, fx->file, 4096);
	uint64_t off = 0;
	for (size_t i = 0; i < 5; i++) {
		mfs_codec_id c = i % 2 ? MFS_CODEC_ZSTD : MFS_CODEC_RAW;
		if (put_chunk(fx->s, fx->file + off, lens[i], c, &fx->ext[i].key) < 0)
			return -1;
		fx->ext[i].off = off;
		fx->ext[i].len = (uint32_t)lens[i];
		off += lens[i];
	}
	fx->n_ext = 5;
	return 0;
}

static void fixture_free(struct fixture *fx)
{
	free(fx->file);
	mfs_store_close(fx->s);
	fx->file = NULL;
	fx->s = NULL;
}

static int publish(mfs_store *s, const char *repo, const struct fixture *fx, const char *etag,
		   const char *commit)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_tensor_info ti = {.name = "w", .dtype = MFS_DT_U8, .ndim = 1, .shape = {100},
			      .data_off = 8, .raw_len = 100, .codec = MFS_CODEC_RAW,
			      .n_extents = 1};
	mfs_blob_rec b = {.etag = etag, .size = fx->size, .stored_bytes = fx->size,
			  .n_extents = fx->n_ext, .extents = fx->ext, .n_tensors = 1,
			  .tensors = &ti};
	mfs_file_rec f[2] = {{"model.safetensors", etag, 0444}, {"sub/dir/copy.bin", etag, 0444}};
	const char *refs[] = {"main"};
	const char *noexist[] = {"missing.json"};
	if ((rc = mfs_blob_put(t, repo, &b, NULL)) < 0 ||
	    (rc = mfs_snapshot_publish(t, repo, commit, 1700000000, f, 2, noexist, 1, refs, 1,
				       NULL)) < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

/* The fixture's file published as models/org/a at commit C1, blob ETAG_A. */
#define ETAG_A "aa00000000000000000000000000000000000000000000000000000000000001"
#define C1 "1111111111111111111111111111111111111111"
static int fixture_with_repo(struct fixture *fx, const char *d)
{
	if (!d || fixture_build(fx, d) < 0)
		return -1;
	return publish(fx->s, "models/org/a", fx, ETAG_A, C1);
}

static int count_files(void *ud, const mfs_file_info *f)
{
	(*(int *)ud)++;
	return 0;
}

static int count_noexist(void *ud, const char *p)
{
	(*(int *)ud)++;
	return strcmp(p, "missing.json") == 0 ? 0 : -1;
}

static void test_publish_rm_gc(void)
{
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(d && fixture_build(&fx, d) == 0);
	const char *etag = "aa00000000000000000000000000000000000000000000000000000000000001";
	const char *c1 = "1111111111111111111111111111111111111111";
	const char *c2 = "2222222222222222222222222222222222222222";
	mfs_txn *t;
	uint64_t g0, g1;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	mfs_store_generation(t, &g0);
	mfs_txn_abort(t);
	CHECK_EQ_INT(publish(fx.s, "models/org/a", &fx, etag, c1), 0);
	CHECK_EQ_INT(publish(fx.s, "models/org/b", &fx, etag, c2), 0);
	/* a blob whose chunk was never stored is refused */
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	mfs_extent bogus = {.off = 0, .len = 10};
	memset(bogus.key.b, 0xee, 16);
	mfs_blob_rec bb = {.etag = "bb", .size = 10, .n_extents = 1, .extents = &bogus};
	CHECK_EQ_INT(mfs_blob_put(t, "models/org/c", &bb, NULL), MFS_E_NOTFOUND);
	/* extents that do not tile the file are refused */
	mfs_extent gap[2] = {fx.ext[0], fx.ext[2]};
	gap[1].off = 5000;
	mfs_blob_rec bg = {.etag = "bc", .size = 5000 + 4096, .n_extents = 2, .extents = gap};
	CHECK_EQ_INT(mfs_blob_put(t, "models/org/c", &bg, NULL), MFS_E_INVAL);
	mfs_txn_abort(t);

	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	mfs_store_generation(t, &g1);
	CHECK(g1 > g0);
	char commit[41];
	CHECK_EQ_INT(mfs_ref_get(t, "models/org/a", "main", commit), 0);
	CHECK(strcmp(commit, c1) == 0);
	int nf = 0, nn = 0;
	CHECK_EQ_INT(mfs_files_foreach(t, "models/org/a", c1, count_files, &nf), 0);
	CHECK_EQ_INT(nf, 2);
	CHECK_EQ_INT(mfs_noexist_foreach(t, "models/org/a", c1, count_noexist, &nn), 0);
	CHECK_EQ_INT(nn, 1);
	mfs_file_info fi;
	CHECK_EQ_INT(mfs_file_get(t, "models/org/a", c1, "sub/dir/copy.bin", &fi), 0);
	CHECK(strcmp(fi.etag, etag) == 0);
	/* "models/org/a" must not see "models/org/ab"-style neighbours: prefix isolation */
	CHECK_EQ_INT(mfs_files_foreach(t, "models/org", c1, count_files, &nf), 0);
	CHECK_EQ_INT(nf, 2);
	mfs_blob_info bi;
	mfs_extent *ext = NULL;
	CHECK_EQ_INT(mfs_blob_get(t, "models/org/a", etag, &bi, &ext), 0);
	CHECK_EQ_INT(bi.size, fx.size);
	CHECK_EQ_INT(bi.n_extents, 5);
	CHECK(ext && memcmp(ext[4].key.b, fx.ext[4].key.b, 16) == 0);
	free(ext);
	/* chunk 0 is used twice per blob (repeated content) and by two repos */
	uint64_t rc0 = 0, rc1 = 0;
	mfs_chunk_refcount(t, &fx.ext[0].key, &rc0);
	mfs_chunk_refcount(t, &fx.ext[1].key, &rc1);
	CHECK_EQ_INT(rc0, 4);
	CHECK_EQ_INT(rc1, 2);
	mfs_txn_abort(t);

	/* the reader returns exact bytes for random ranges, across chunk boundaries */
	mfs_reader *r;
	mfs_rfile *f;
	mfs_codec_ws *ws;
	REQUIRE(mfs_reader_create(fx.s, NULL, &r) == 0 && mfs_codec_ws_create(&ws) == 0);
	REQUIRE(mfs_rfile_open(r, "models/org/a", etag, &f) == 0);
	uint8_t *buf = malloc(fx.size + 10);
	for (int q = 0; q < 300; q++) {
		uint64_t off = test_rand(&seed) % (fx.size + 5);
		size_t len = (size_t)(test_rand(&seed) % (fx.size + 5));
		size_t got = 0;
		CHECK_EQ_INT(mfs_rfile_read(r, f, off, buf, len, &got, ws), 0);
		size_t want = off >= fx.size ? 0 : (len < fx.size - off ? len : fx.size - off);
		CHECK_EQ_INT(got, want);
		if (got)
			CHECK(memcmp(buf, fx.file + off, got) == 0);
	}
	size_t got = 0;
	CHECK_EQ_INT(mfs_rfile_read(r, f, fx.size - 1, buf, 1, &got, ws), 0);
	CHECK(got == 1 && buf[0] == fx.file[fx.size - 1]);
	mfs_rfile_close(f);
	CHECK_EQ_INT(mfs_rfile_open(r, "models/org/a", "ffff", &f), MFS_E_NOTFOUND);

	/* rm a: b keeps every byte; nothing is garbage yet */
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_repo_remove(t, "models/org/a"), 0);
	CHECK_EQ_INT(mfs_repo_remove(t, "models/org/zz"), MFS_E_NOTFOUND);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	mfs_gc_stat gs;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	CHECK_EQ_INT(gs.chunks_removed, 0);
	REQUIRE(mfs_rfile_open(r, "models/org/b", etag, &f) == 0);
	CHECK_EQ_INT(mfs_rfile_read(r, f, 0, buf, fx.size, &got, ws), 0);
	CHECK(got == fx.size && memcmp(buf, fx.file, fx.size) == 0);
	mfs_rfile_close(f);
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	CHECK_EQ_INT(mfs_ref_get(t, "models/org/a", "main", commit), MFS_E_NOTFOUND);
	mfs_txn_abort(t);

	/* a chunk nothing uses (an ingest that died) and b removed: gc frees everything */
	mfs_chunk_key orphan;
	uint8_t junk[300];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)i;
	CHECK_EQ_INT(put_chunk(fx.s, junk, sizeof junk, MFS_CODEC_RAW, &orphan), 0);
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_repo_remove(t, "models/org/b"), 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	CHECK_EQ_INT(gs.chunks_removed, 5); /* 4 distinct of the file + the orphan */
	CHECK(gs.bytes_freed > 0);
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	mfs_store_stat st;
	CHECK_EQ_INT(mfs_store_stat_get(t, &st), 0);
	CHECK_EQ_INT(st.n_chunks, 0);
	mfs_txn_abort(t);

	free(buf);
	mfs_codec_ws_free(ws);
	mfs_reader_free(r);
	free(fx.file);
	mfs_store_close(fx.s);
	test_drop_dir(d);
}

static int get_tensor(void *ud, const mfs_tensor_info *ti)
{
	*(mfs_tensor_info *)ud = *ti;
	((mfs_tensor_info *)ud)->name = NULL; /* strings are the callback's only */
	((mfs_tensor_info *)ud)->base = ti->base ? "set" : NULL;
	return 0;
}

static void test_records_rewritten(void)
{
	/* a twin pairing rewrites a published tensor record and its blob's stored
	 * size in place; nothing else of either changes */
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(fixture_with_repo(&fx, d) == 0);
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	mfs_tensor_info ti = {.name = "w", .dtype = MFS_DT_U8, .ndim = 1, .shape = {100},
			      .data_off = 8, .raw_len = 100, .stored_len = 40,
			      .codec = MFS_CODEC_QUANT_RESIDUAL, .n_extents = 1,
			      .base = "models/org/twin", .alone_len = 100};
	CHECK_EQ_INT(mfs_tensor_update(t, "models/org/a", ETAG_A, &ti), 0);
	ti.name = "absent";
	CHECK_EQ_INT(mfs_tensor_update(t, "models/org/a", ETAG_A, &ti), MFS_E_NOTFOUND);
	CHECK_EQ_INT(mfs_blob_set_stored(t, "models/org/a", ETAG_A, 1234), 0);
	CHECK_EQ_INT(mfs_blob_set_stored(t, "models/org/a", "bb", 1), MFS_E_NOTFOUND);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	mfs_tensor_info got = {0};
	CHECK_EQ_INT(mfs_tensors_foreach(t, "models/org/a", ETAG_A, get_tensor, &got), 0);
	CHECK_EQ_INT(got.codec, MFS_CODEC_QUANT_RESIDUAL);
	CHECK_EQ_INT(got.stored_len, 40);
	CHECK_EQ_INT(got.alone_len, 100);
	CHECK(got.base != NULL);
	mfs_blob_info bi;
	mfs_extent *ext = NULL;
	CHECK_EQ_INT(mfs_blob_get(t, "models/org/a", ETAG_A, &bi, &ext), 0);
	CHECK_EQ_INT(bi.stored_bytes, 1234);
	CHECK_EQ_INT(bi.size, fx.size);
	CHECK_EQ_INT(bi.n_extents, fx.n_ext);
	for (size_t i = 0; ext && i < fx.n_ext; i++)
		CHECK(ext[i].off == fx.ext[i].off && ext[i].len == fx.ext[i].len &&
		      !memcmp(&ext[i].key, &fx.ext[i].key, sizeof ext[i].key));
	free(ext);
	mfs_txn_abort(t);
	/* a read-only transaction writes nothing */
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	CHECK(mfs_blob_set_stored(t, "models/org/a", ETAG_A, 1) < 0);
	mfs_txn_abort(t);
	fixture_free(&fx);
	test_drop_dir(d);
}

static void test_orphan_blob_gc(void)
{
	/* a blob put whose snapshot never got published (crash) is swept, refs dropped */
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(d && fixture_build(&fx, d) == 0);
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	mfs_blob_rec b = {.etag = "abcdef", .size = fx.size, .n_extents = fx.n_ext,
			  .extents = fx.ext};
	CHECK_EQ_INT(mfs_blob_put(t, "models/x", &b, NULL), 0);
	int existed = 0;
	CHECK_EQ_INT(mfs_blob_put(t, "models/x", &b, &existed), 0);
	CHECK_EQ_INT(existed, 1);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	mfs_gc_stat gs;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	CHECK_EQ_INT(gs.blobs_removed, 1);
	CHECK_EQ_INT(gs.chunks_removed, 4);
	/* the ingest lock keeps gc from sweeping while an ingest runs */
	int l1 = -1, l2 = -1;
	CHECK_EQ_INT(mfs_store_lock_ingest(fx.s, 0, 0, &l1), 0);
	CHECK_EQ_INT(mfs_store_lock_ingest(fx.s, 1, 0, &l2), MFS_E_BUSY);
	mfs_store_unlock(l1);
	CHECK_EQ_INT(mfs_store_lock_ingest(fx.s, 1, 0, &l2), 0);
	mfs_store_unlock(l2);
	free(fx.file);
	mfs_store_close(fx.s);
	test_drop_dir(d);
}

static void test_ref_names(void)
{
	static const char *const good[] = {"main", "v1.0", "refs/pr/1", "release/2024-06",
					   "a.b/c_d-e", "caf\xc3\xa9"};
	static const char *const bad[] = {"", "x/.", "/abs", "a//b", "x/", "x/./y", ".hidden",
					  "a/.b", "a..b", "a.lock", "a/b.lock/c", "a.", "@",
					  "a@{b", "a b", "a~b", "a^b", "a:b", "a?b", "a*b",
					  "a[b", "a\\b", "a\x1b[31m", "a\x7f"};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		mfs_errmsg e = {0};
		int rc = mfs_ref_name_check(good[i], &e);
		CHECK_EQ_INT(rc, 0);
		if (rc)
			fprintf(stderr, "  good ref refused: %s (%s)\n", good[i], e.msg);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		mfs_errmsg e = {0};
		CHECK_EQ_INT(mfs_ref_name_check(bad[i], &e), MFS_E_INVAL);
		CHECK(strstr(e.msg, "check-ref-format") != NULL);
		CHECK(strchr(e.msg, '\x1b') == NULL); /* the name is quoted */
	}
	char longref[MFS_REF_MAX + 2];
	memset(longref, 'a', sizeof longref - 1);
	longref[sizeof longref - 1] = '\0';
	CHECK_EQ_INT(mfs_ref_name_check(longref, NULL), MFS_E_INVAL);

	/* a ref may not be a folder of another ref of the same repo */
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(fixture_with_repo(&fx, d) == 0);
	const char *etag = ETAG_A;
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	mfs_file_rec f = {"model.safetensors", etag, 0444};
	const char *nested[] = {"main/sub"};
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_snapshot_publish(t, "models/org/a",
					  "2222222222222222222222222222222222222222", 1, &f, 1,
					  NULL, 0, nested, 1, &e),
		     MFS_E_INVAL);
	CHECK(strstr(e.msg, "main/sub") && strstr(e.msg, "\"main\""));
	const char *pair[] = {"dev", "dev/x"};
	CHECK_EQ_INT(mfs_snapshot_publish(t, "models/org/a",
					  "2222222222222222222222222222222222222222", 1, &f, 1,
					  NULL, 0, pair, 2, NULL),
		     MFS_E_INVAL);
	const char *fine[] = {"main", "mainline/x"};
	CHECK_EQ_INT(mfs_snapshot_publish(t, "models/org/a",
					  "2222222222222222222222222222222222222222", 1, &f, 1,
					  NULL, 0, fine, 2, NULL),
		     0);
	mfs_txn_abort(t);
	fixture_free(&fx);
	test_drop_dir(d);
}

/* A child that holds the environment open as a program outside modelfs would. */
static pid_t hold_env_in_child(const char *d, int *release_fd)
{
	int up[2], down[2];
	if (pipe(up) < 0 || pipe(down) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		MDB_env *env;
		MDB_txn *txn;
		char c = 'x';
		if (mdb_env_create(&env) || (mdb_env_set_maxdbs(env, 16), 0) ||
		    mdb_env_set_mapsize(env, (size_t)1 << 40) ||
		    mdb_env_set_maxreaders(env, 1024) || mdb_env_open(env, d, MDB_RDONLY, 0600) ||
		    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
			c = 'e';
		if (write(up[1], &c, 1) != 1 || read(down[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	char c = 0;
	if (pid < 0 || read(up[0], &c, 1) != 1 || c != 'x') {
		close(up[0]);
		close(down[1]);
		return -1;
	}
	close(up[0]);
	*release_fd = down[1];
	return pid;
}

static void test_compact(void)
{
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(fixture_with_repo(&fx, d) == 0);
	const char *etag = ETAG_A;
	/* this process has the store open: refused, as for any other user */
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_store_compact(d, &e), MFS_E_BUSY);
	CHECK(strstr(e.msg, "in use") != NULL);
	mfs_store_close(fx.s);
	fx.s = NULL;

	/* another LMDB program has it open: refused, naming its pid */
	int rel = -1;
	pid_t pid = hold_env_in_child(d, &rel);
	REQUIRE(pid > 0);
	memset(&e, 0, sizeof e);
	CHECK_EQ_INT(mfs_store_compact(d, &e), MFS_E_BUSY);
	char want[32];
	snprintf(want, sizeof want, "process %d", (int)pid);
	CHECK(strstr(e.msg, want) != NULL);
	close(rel);
	waitpid(pid, NULL, 0);

	/* alone: compacted, and every record and a new commit work after */
	CHECK_EQ_INT(mfs_store_compact(d, NULL), 0);
	mfs_store *s;
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0);
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	mfs_repo_info ri;
	CHECK_EQ_INT(mfs_repo_get(t, "models/org/a", &ri), 0);
	mfs_txn_abort(t);
	fx.s = s;
	CHECK_EQ_INT(publish(s, "models/org/b", &fx, etag,
			     "2222222222222222222222222222222222222222"),
		     0);
	mfs_store_close(s);
	fx.s = NULL;
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL) == 0);
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	CHECK_EQ_INT(mfs_repo_get(t, "models/org/a", &ri), 0);
	CHECK_EQ_INT(mfs_repo_get(t, "models/org/b", &ri), 0);
	mfs_txn_abort(t);
	mfs_store_close(s);
	fixture_free(&fx);
	test_drop_dir(d);
}

static void test_truncated(void)
{
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(fixture_with_repo(&fx, d) == 0);
	mfs_store_close(fx.s);
	fx.s = NULL;
	char path[256];
	snprintf(path, sizeof path, "%s/data.mdb", d);
	struct stat st;
	REQUIRE(stat(path, &st) == 0);
	off_t full = st.st_size;
	const off_t cuts[] = {full - 1, full - 4096, full / 2, 8192, 4097, 4096, 100, 0};
	for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
		REQUIRE(truncate(path, cuts[i]) == 0);
		for (unsigned fl = 0; fl <= MFS_STORE_RDONLY; fl += MFS_STORE_RDONLY) {
			mfs_store *s = NULL;
			mfs_errmsg e = {0};
			CHECK_EQ_INT(mfs_store_open(d, fl, &s, &e), MFS_E_CORRUPT);
			CHECK(strstr(e.msg, "damaged or incomplete") != NULL);
			mfs_store_close(s);
		}
		CHECK_EQ_INT(mfs_store_compact(d, NULL), MFS_E_CORRUPT);
		REQUIRE(stat(path, &st) == 0);
		CHECK_EQ_INT(st.st_size, cuts[i]); /* nothing wrote to it */
	}
	fixture_free(&fx);
	test_drop_dir(d);
}

/*
 * Processes opening a store that does not exist yet, all at once: every
 * writer opens it (one creates it, the others wait for it and open what it
 * made), a reader opens it or finds no store, and none sees the file LMDB
 * has created but not yet written as a damaged store.
 */
static void test_concurrent_create(void)
{
	enum { ROUNDS = 40, WRITERS = 4, READERS = 2 };
	int bad = 0;
	for (int r = 0; r < ROUNDS && !bad; r++) {
		char *d = test_fresh_dir("store");
		REQUIRE(d != NULL);
		char dir[80];
		snprintf(dir, sizeof dir, "%s/store", d);
		int go[2];
		REQUIRE(pipe(go) == 0);
		pid_t kids[WRITERS + READERS];
		for (int k = 0; k < WRITERS + READERS; k++) {
			kids[k] = fork();
			REQUIRE(kids[k] >= 0);
			if (kids[k] == 0) {
				char c;
				close(go[1]);
				if (read(go[0], &c, 1) < 0) /* EOF: all start together */
					_exit(3);
				int rdonly = k >= WRITERS;
				mfs_store *s = NULL;
				mfs_errmsg e = {0};
				int rc = mfs_store_open(dir, rdonly ? MFS_STORE_RDONLY : MFS_STORE_CREATE, &s, &e);
				mfs_store_close(s);
				if (rc == 0 || (rdonly && rc == -ENOENT))
					_exit(0);
				fprintf(stderr, "round %d, %s %d: %d %s\n", r, rdonly ? "reader" : "writer", k,
					rc, e.msg);
				_exit(1);
			}
		}
		close(go[0]);
		close(go[1]);
		for (int k = 0; k < WRITERS + READERS; k++) {
			int st = 0;
			REQUIRE(waitpid(kids[k], &st, 0) == kids[k]);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				bad++;
		}
		CHECK_EQ_INT(bad, 0);
		test_drop_dir(d);
	}
}

/* gc sets every count to the number of extents using the chunk, unless a blob record is damaged */
static void test_gc_recount(void)
{
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(fixture_with_repo(&fx, d) == 0);
	const char *etag = ETAG_A;
	mfs_txn *t;
	uint64_t n = 0, want = 0;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	CHECK_EQ_INT(mfs_chunk_refcount(t, &fx.ext[1].key, &want), 0);
	mfs_txn_abort(t);
	CHECK_EQ_INT(want, 1);
	/* one count too high, one too low (the repeated chunk is used twice) */
	uint8_t b[8] = {7}, z[8] = {0};
	REQUIRE(put_raw(fx.s, DB_CHUNKREFS, fx.ext[1].key.b, 16, b, 8) == 0);
	REQUIRE(put_raw(fx.s, DB_CHUNKREFS, fx.ext[0].key.b, 16, z, 8) == 0);
	mfs_gc_stat gs;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK_EQ_INT(gs.counts_fixed, 2);
	CHECK_EQ_INT(gs.chunks_removed, 0); /* the low count was raised before the sweep */
	CHECK_EQ_INT(mfs_chunk_refcount(t, &fx.ext[1].key, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(mfs_chunk_refcount(t, &fx.ext[0].key, &n), 0);
	CHECK_EQ_INT(n, 2);
	REQUIRE(mfs_txn_commit(t) == 0);
	/* a blob record that does not parse: counts are left alone */
	REQUIRE(put_raw(fx.s, DB_CHUNKREFS, fx.ext[1].key.b, 16, b, 8) == 0);
	char bk[128];
	size_t bkl = mfs_db_key_join(bk, sizeof bk, "models/org/a", etag, NULL);
	REQUIRE(put_raw(fx.s, DB_BLOBS, bk, bkl, "\x07xx", 3) == 0);
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK_EQ_INT(gs.counts_fixed, 0);
	CHECK_EQ_INT(gs.recount_skipped, 1);
	CHECK_EQ_INT(mfs_chunk_refcount(t, &fx.ext[1].key, &n), 0);
	CHECK_EQ_INT(n, 7);
	/* rm goes through the damaged blob record; gc then settles the counts */
	CHECK_EQ_INT(mfs_repo_remove(t, "models/org/a"), 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK(gs.counts_fixed >= 1);
	CHECK_EQ_INT(gs.chunks_removed, 4); /* every chunk of the file, freed */
	REQUIRE(mfs_txn_commit(t) == 0);
	fixture_free(&fx);
	test_drop_dir(d);
}

/* A chunk stored with references (codec raw: the bytes are its own, the
 * references exercise counting, gc and the reader's resolution). */
static int put_with_refs(mfs_store *s, const void *raw, size_t len, const mfs_chunk_ref *refs,
			 size_t n_refs, mfs_chunk_key *key)
{
	mfs_chunk_key_of(raw, len, key);
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_chunk_geom g = {.dtype = MFS_DT_U8, .ndim = 1, .shape = {len}};
	mfs_chunk_meta m = {.codec = MFS_CODEC_RAW, .raw_len = (uint32_t)len,
			    .n_refs = n_refs, .refs = refs, .geom = &g};
	rc = mfs_chunk_put(t, key, &m, raw, len, NULL);
	if (rc < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

static uint64_t refcount_of(mfs_store *s, const mfs_chunk_key *k)
{
	mfs_txn *t;
	uint64_t n = 99;
	if (mfs_txn_begin(s, MFS_TXN_READ, &t) == 0) {
		mfs_chunk_refcount(t, k, &n);
		mfs_txn_abort(t);
	}
	return n;
}

static int chunk_present(mfs_store *s, const mfs_chunk_key *k)
{
	mfs_txn *t;
	if (mfs_txn_begin(s, MFS_TXN_READ, &t) < 0)
		return -1;
	mfs_chunk_view v;
	int rc = mfs_chunk_get(t, k, &v);
	mfs_txn_abort(t);
	return rc == 0;
}

static int gc_now(mfs_store *s, mfs_gc_stat *gs)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc == 0 && (rc = mfs_gc_sweep(t, gs)) == 0)
		return mfs_txn_commit(t);
	mfs_txn_abort(t);
	return rc;
}

/*
 * References are counted like extents: a fine-tune's chunk keeps its base's
 * chunk alive after the base repo is removed and gc runs; removing the
 * fine-tune then frees both; gc's recount includes references.
 */
static void test_chunk_refs(void)
{
	char *d = test_fresh_dir("store");
	struct fixture fx;
	REQUIRE(fixture_with_repo(&fx, d) == 0); /* "models/org/a" = the base */
	const mfs_chunk_key *base = &fx.ext[1].key; /* 65536 bytes, zstd */
	uint8_t delta[300];
	for (size_t i = 0; i < sizeof delta; i++)
		delta[i] = (uint8_t)(i * 7 + 1);
	mfs_chunk_ref ref = {.key = *base, .off = 100, .len = sizeof delta,
			     .role = MFS_REF_BASE};
	mfs_chunk_key dk;
	CHECK_EQ_INT(refcount_of(fx.s, base), 1);
	REQUIRE(put_with_refs(fx.s, delta, sizeof delta, &ref, 1, &dk) == 0);
	CHECK_EQ_INT(refcount_of(fx.s, base), 2); /* its extent and the new chunk */
	CHECK_EQ_INT(refcount_of(fx.s, &dk), 0);

	/* what a put refuses: a reference to a missing chunk or to a chunk that
	 * has references itself (depth 1), a range it does not hold */
	mfs_chunk_ref bad = ref;
	memset(bad.key.b, 0x5a, 16);
	uint8_t other[10] = {1, 2, 3};
	mfs_chunk_key ok;
	CHECK_EQ_INT(put_with_refs(fx.s, other, sizeof other, &bad, 1, &ok), MFS_E_NOTFOUND);
	bad.key = dk;
	CHECK_EQ_INT(put_with_refs(fx.s, other, sizeof other, &bad, 1, &ok), MFS_E_INVAL);
	bad.key = *base;
	bad.off = 65536 - 10;
	bad.len = 11;
	CHECK_EQ_INT(put_with_refs(fx.s, other, sizeof other, &bad, 1, &ok), MFS_E_INVAL);
	CHECK_EQ_INT(refcount_of(fx.s, base), 2);

	/* the fine-tune: a file of one chunk, the delta */
	struct fixture ft = {.s = fx.s, .file = delta, .size = sizeof delta, .n_ext = 1};
	ft.ext[0] = (mfs_extent){.off = 0, .len = sizeof delta, .key = dk};
	const char *etag_ft = "bb00000000000000000000000000000000000000000000000000000000000002";
	REQUIRE(publish(fx.s, "models/org/ft", &ft, etag_ft, C1) == 0);
	CHECK_EQ_INT(refcount_of(fx.s, &dk), 1);

	/* rm the base + gc: the base chunk the delta uses stays, the others go */
	mfs_gc_stat gs;
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_repo_remove(t, "models/org/a"), 0);
	REQUIRE(mfs_txn_commit(t) == 0);
	REQUIRE(gc_now(fx.s, &gs) == 0);
	CHECK_EQ_INT(gs.chunks_removed, 3);
	CHECK_EQ_INT(chunk_present(fx.s, base), 1);
	CHECK_EQ_INT(refcount_of(fx.s, base), 1);

	/* the reader resolves the reference (its bytes reach the codec) and the
	 * decode is checked against the key */
	mfs_reader *r;
	mfs_codec_ws *ws;
	REQUIRE(mfs_reader_create(fx.s, NULL, &r) == 0 && mfs_codec_ws_create(&ws) == 0);
	uint8_t out[sizeof delta];
	CHECK_EQ_INT(mfs_reader_decode_chunk(r, &dk, out, sizeof out, ws), 0);
	CHECK(!memcmp(out, delta, sizeof delta));

	/* a base chunk that is missing makes the delta undecodable: an error */
	REQUIRE(del_raw(fx.s, DB_CHUNKS, base->b, 16) == 0);
	CHECK_EQ_INT(mfs_reader_decode_chunk(r, &dk, out, sizeof out, ws), MFS_E_CORRUPT);

	/* gc's recount counts references: a lost count comes back, not a sweep */
	REQUIRE(put_chunk(fx.s, fx.file + 4096, 65536, MFS_CODEC_ZSTD, &ok) == 0);
	uint8_t z[8] = {0};
	REQUIRE(put_raw(fx.s, DB_CHUNKREFS, base->b, 16, z, 8) == 0);
	REQUIRE(gc_now(fx.s, &gs) == 0);
	CHECK_EQ_INT(gs.chunks_removed, 0);
	CHECK_EQ_INT(refcount_of(fx.s, base), 1);
	CHECK_EQ_INT(mfs_reader_decode_chunk(r, &dk, out, sizeof out, ws), 0);

	/* rm the fine-tune + gc: the delta goes, then the base chunk it held */
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_repo_remove(t, "models/org/ft"), 0);
	REQUIRE(mfs_txn_commit(t) == 0);
	REQUIRE(gc_now(fx.s, &gs) == 0);
	CHECK_EQ_INT(gs.chunks_removed, 2);
	CHECK_EQ_INT(chunk_present(fx.s, &dk), 0);
	CHECK_EQ_INT(chunk_present(fx.s, base), 0);

	/* replace moves the uses: a delta rewritten alone frees its base */
	REQUIRE(put_chunk(fx.s, fx.file + 4096, 65536, MFS_CODEC_ZSTD, &ok) == 0);
	REQUIRE(put_with_refs(fx.s, delta, sizeof delta, &ref, 1, &dk) == 0);
	CHECK_EQ_INT(refcount_of(fx.s, base), 1);
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_chunk_replace(t, &dk, &(mfs_chunk_meta){.codec = MFS_CODEC_RAW,
								 .raw_len = sizeof delta},
				       delta, sizeof delta),
		     0);
	REQUIRE(mfs_txn_commit(t) == 0);
	CHECK_EQ_INT(refcount_of(fx.s, base), 0);

	mfs_codec_ws_free(ws);
	mfs_reader_free(r);
	fixture_free(&fx);
	test_drop_dir(d);
}

int main(void)
{
	seed = test_seed();
	RUN(test_names);
	RUN(test_extent_find);
	RUN(test_open_and_version);
	RUN(test_chunks);
	RUN(test_publish_rm_gc);
	RUN(test_orphan_blob_gc);
	RUN(test_records_rewritten);
	RUN(test_ref_names);
	RUN(test_compact);
	RUN(test_truncated);
	RUN(test_concurrent_create);
	RUN(test_gc_recount);
	RUN(test_chunk_refs);
	return test_report();
}
