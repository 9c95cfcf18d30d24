/*
 * test_ingest.c - the ingest library (ingest/ingest.h) without the CLI:
 * a plain folder (a safetensors file written here, text files, a subfolder,
 * a .git folder) ingested into a fresh store and read back byte for byte
 * through libmodelfs; the notes and progress reports it hands its callbacks;
 * the same folder again (nothing new, same commit); the real BF16 model
 * fixture when it is built; bad sources (missing, not a folder, empty, a
 * FIFO among good files, a bad chunk size), each refused with a message
 * naming it and nothing published; and the stand-alone chunk encoder that
 * verify's repair uses.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "ingest.h"
#include "modelfs.h"
#include "store.h"
#include "testdata.h"
#include "testfs.h"
#include "testhelp.h"

/* A BF16 tensor of smooth weights (a narrow exponent range, as trained
 * weights have) and an F32 one, in a safetensors file of @p *len bytes. */
static uint8_t *make_safetensors(size_t *len)
{
	const size_t n16 = 300000, n32 = 20000;
	char hdr[256];
	snprintf(hdr, sizeof hdr,
		 "{\"w\":{\"dtype\":\"BF16\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
		 "\"b\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}}",
		 n16, 2 * n16, n32, 2 * n16, 2 * n16 + 4 * n32);
	size_t start;
	uint8_t *buf = test_safetensors_alloc(hdr, 2 * n16 + 4 * n32, len, &start);
	if (!buf)
		return NULL;
	uint8_t *d = buf + start;
	uint64_t s = 12345;
	for (size_t i = 0; i < n16; i++) {
		float v = (float)((int)(test_rand(&s) % 2001) - 1000) / 40000.0f;
		uint32_t u;
		memcpy(&u, &v, 4);
		d[2 * i] = (uint8_t)(u >> 16);
		d[2 * i + 1] = (uint8_t)(u >> 24);
	}
	d += 2 * n16;
	for (size_t i = 0; i < n32; i++) {
		float v = (float)((int)(test_rand(&s) % 201) - 100) / 1000.0f;
		memcpy(d + 4 * i, &v, 4);
	}
	return buf;
}

/* What the callbacks were handed. */
struct seen {
	int notes, warnings;
	char note[1024];
	int progress_calls, progress_starts, progress_backwards;
	uint64_t last_done, last_total;
};

static void on_note(void *ud, mfs_ingest_note_kind kind, const char *msg)
{
	struct seen *s = ud;
	if (kind == MFS_INGEST_WARNING)
		s->warnings++;
	else
		s->notes++;
	snprintf(s->note + strlen(s->note), sizeof s->note - strlen(s->note), "%s\n", msg);
}

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
	struct seen *s = ud;
	s->progress_calls++;
	if (done == 0)
		s->progress_starts++;
	else if (done < s->last_done)
		s->progress_backwards++;
	s->last_done = done;
	s->last_total = total;
}

static int ingest_into(const char *store_dir, const char *src, const char *repo, size_t chunk,
		       struct seen *seen, mfs_ingest_stats *st, mfs_errmsg *err)
{
	mfs_store *s;
	int rc = mfs_store_open(store_dir, MFS_STORE_CREATE, &s, err);
	if (rc < 0)
		return rc;
	mfs_ingest_opts o;
	mfs_ingest_opts_default(&o);
	o.repo = repo;
	o.threads = 2;
	if (chunk)
		o.chunk_size = chunk;
	o.note = on_note;
	o.note_ud = seen;
	o.progress = on_progress;
	o.progress_ud = seen;
	rc = mfs_ingest_path(s, src, &o, st, err);
	mfs_store_close(s);
	return rc;
}

/* The stored file @p path of @p repo equals the file at @p orig, read whole
 * and in odd pieces. */
static int same_as_original(modelfs_store *ms, const char *repo, const char *path,
			    const char *orig, char commit[41])
{
	size_t len;
	uint8_t *want = test_read_file(orig, &len); /* none is empty */
	if (!want)
		return 0;
	modelfs_file *f;
	modelfs_error e;
	int ok = modelfs_file_open(ms, repo, NULL, path, &f, &e) == 0;
	if (!ok) {
		fprintf(stderr, "%s: %s\n", path, e.message);
		free(want);
		return 0;
	}
	uint8_t *got = malloc(len ? len : 1);
	ok = got && modelfs_file_size(f) == len && modelfs_file_read(f, 0, got, len, &e) == 0 &&
	     memcmp(got, want, len) == 0;
	for (size_t off = 0; ok && off < len; off += 77777) {
		size_t n = len - off < 1000 ? len - off : 1000;
		ok = modelfs_file_read(f, off, got, n, &e) == 0 && memcmp(got, want + off, n) == 0;
	}
	if (commit)
		snprintf(commit, 41, "%s", modelfs_file_commit(f));
	modelfs_file_close(f);
	free(got);
	free(want);
	return ok;
}

static const char *const FOLDER_FILES[] = {"model.safetensors", "config.json", "README.md",
					   "sub/tokenizer.json"};

static void make_folder(const char *src)
{
	size_t stl;
	uint8_t *st = make_safetensors(&stl);
	REQUIRE(st);
	char p[512];
	snprintf(p, sizeof p, "%s/sub", src);
	REQUIRE(mkdir(p, 0755) == 0);
	snprintf(p, sizeof p, "%s/.git", src);
	REQUIRE(mkdir(p, 0755) == 0);
	REQUIRE(test_write_file(src, "model.safetensors", st, stl) == 0);
	REQUIRE(test_write_file(src, "config.json", "{\"model_type\": \"bert\"}\n", 23) == 0);
	REQUIRE(test_write_file(src, "README.md", "# a model\n", 10) == 0);
	REQUIRE(test_write_file(src, "sub/tokenizer.json", "{}\n", 3) == 0);
	REQUIRE(test_write_file(src, ".git/HEAD", "ref: refs/heads/main\n", 21) == 0);
	free(st);
}

static void test_plain_folder(void)
{
	char *src = test_fresh_dir("ingest"), *store = test_fresh_dir("ingest"), *store2 = test_fresh_dir("ingest");
	REQUIRE(src && store && store2);
	make_folder(src);
	uint64_t total = 0;
	for (size_t i = 0; i < 4; i++) {
		char p[512];
		struct stat sb;
		snprintf(p, sizeof p, "%s/%s", src, FOLDER_FILES[i]);
		REQUIRE(stat(p, &sb) == 0);
		total += (uint64_t)sb.st_size;
	}

	/* 64 KiB chunks: the tensors span many */
	struct seen seen = {0};
	mfs_ingest_stats st;
	mfs_errmsg err = {0};
	CHECK_EQ_INT(ingest_into(store, src, "models/org/unit", 64 << 10, &seen, &st, &err), 0);
	CHECK_EQ_INT((int)st.files, 4);
	CHECK_EQ_INT((int)st.snapshots, 1);
	CHECK(st.bytes_in == total);
	CHECK(st.chunks_new > 10);
	CHECK(st.bytes_stored < st.bytes_in); /* the weights compress */
	/* progress: one start, the total known before reading, never backwards, all done */
	CHECK_EQ_INT(seen.progress_starts, 1);
	CHECK_EQ_INT(seen.progress_backwards, 0);
	CHECK(seen.progress_calls > 2);
	CHECK(seen.last_total == total);
	CHECK(seen.last_done == total);
	/* the .git folder was left out, with a note saying so */
	CHECK(strstr(seen.note, ".git") != NULL);
	CHECK_EQ_INT(seen.warnings, 0);

	modelfs_store *ms;
	modelfs_error e;
	REQUIRE(modelfs_store_open(store, 2, &ms, &e) == 0);
	char commit[41] = "";
	for (size_t i = 0; i < 4; i++) {
		char p[512];
		snprintf(p, sizeof p, "%s/%s", src, FOLDER_FILES[i]);
		CHECK(same_as_original(ms, "models/org/unit", FOLDER_FILES[i], p,
				       i == 0 ? commit : NULL));
	}
	modelfs_file *f;
	CHECK_EQ_INT(modelfs_file_open(ms, "models/org/unit", NULL, ".git/HEAD", &f, &e),
		     MODELFS_E_NOFILE);
	modelfs_store_close(ms);
	CHECK_EQ_INT((int)strlen(commit), 40);

	/* the same folder again: every chunk already there (a plain folder's
	 * etags come from its bytes, so its files are read again) */
	struct seen again = {0};
	CHECK_EQ_INT(ingest_into(store, src, "models/org/unit", 64 << 10, &again, &st, &err), 0);
	CHECK(st.bytes_new == 0);
	CHECK(st.chunks_new == 0);
	CHECK(st.chunks_dedup > 10);
	CHECK(again.last_done == total);

	/* into another store, with another chunk size: the same commit id */
	struct seen other = {0};
	CHECK_EQ_INT(ingest_into(store2, src, "models/org/unit", 0, &other, &st, &err), 0);
	REQUIRE(modelfs_store_open(store2, 1, &ms, &e) == 0);
	char commit2[41] = "";
	char p[512];
	snprintf(p, sizeof p, "%s/model.safetensors", src);
	CHECK(same_as_original(ms, "models/org/unit", "model.safetensors", p, commit2));
	CHECK(strcmp(commit, commit2) == 0);
	modelfs_store_close(ms);

	test_rm_dir(src);
	test_rm_dir(store);
	test_rm_dir(store2);
	free(src);
	free(store);
	free(store2);
}

/* The real BF16 model (tests/data/models/minilm-bf16) when its fixture is built. */
static void test_real_model(void)
{
	char models[1024], dir[1100], p[1200];
	test_models_dir(models, sizeof models);
	snprintf(dir, sizeof dir, "%s/minilm-bf16", models);
	snprintf(p, sizeof p, "%s/model.safetensors", dir);
	if (access(p, R_OK) != 0) {
		fprintf(stderr, "test_real_model: %s not built (python tests/e2e/fixtures.py all): "
				"skipped\n",
			p);
		return;
	}
	char *store = test_fresh_dir("ingest");
	REQUIRE(store);
	struct seen seen = {0};
	mfs_ingest_stats st;
	mfs_errmsg err = {0};
	CHECK_EQ_INT(ingest_into(store, dir, "models/sentence-transformers/minilm", 0, &seen, &st,
				 &err),
		     0);
	/* BF16 weights: bitplane-huff stores them in about two thirds */
	CHECK(st.bytes_stored < st.bytes_in * 7 / 10);
	modelfs_store *ms;
	modelfs_error e;
	REQUIRE(modelfs_store_open(store, 2, &ms, &e) == 0);
	CHECK(same_as_original(ms, "models/sentence-transformers/minilm", "model.safetensors", p,
			       NULL));
	modelfs_store_close(ms);
	test_rm_dir(store);
	free(store);
}

/* The store holds no repo (nothing of a failed ingest was published). */
static int store_is_empty(const char *store)
{
	modelfs_store *ms;
	modelfs_error e;
	if (modelfs_store_open(store, 1, &ms, &e) != 0)
		return 1; /* never created */
	modelfs_list *l;
	int empty = modelfs_list_repos(ms, &l, &e) == 0 && modelfs_list_count(l) == 0;
	modelfs_list_free(l);
	modelfs_store_close(ms);
	return empty;
}

static void test_bad_sources(void)
{
	char *src = test_fresh_dir("ingest"), *store = test_fresh_dir("ingest");
	REQUIRE(src && store);
	struct seen seen = {0};
	mfs_ingest_stats st;
	mfs_errmsg err = {0};
	char p[600];

	snprintf(p, sizeof p, "%s/missing", src);
	CHECK(ingest_into(store, p, "models/org/bad", 0, &seen, &st, &err) < 0);
	CHECK(strstr(err.msg, "missing") != NULL);

	memset(&err, 0, sizeof err);
	REQUIRE(test_write_file(src, "plain.txt", "x", 1) == 0);
	snprintf(p, sizeof p, "%s/plain.txt", src);
	CHECK_EQ_INT(ingest_into(store, p, "models/org/bad", 0, &seen, &st, &err), MFS_E_INVAL);
	CHECK(strstr(err.msg, "not a directory") != NULL);

	memset(&err, 0, sizeof err);
	snprintf(p, sizeof p, "%s/empty", src);
	REQUIRE(mkdir(p, 0755) == 0);
	CHECK_EQ_INT(ingest_into(store, p, "models/org/bad", 0, &seen, &st, &err), MFS_E_INVAL);
	CHECK(strstr(err.msg, "no files") != NULL);

	/* a FIFO among good files: refused by name, before anything is stored */
	memset(&err, 0, sizeof err);
	snprintf(p, sizeof p, "%s/withfifo", src);
	REQUIRE(mkdir(p, 0755) == 0);
	REQUIRE(test_write_file(p, "config.json", "{}\n", 3) == 0);
	char fifo[700];
	snprintf(fifo, sizeof fifo, "%s/pipe.bin", p);
	REQUIRE(mkfifo(fifo, 0644) == 0);
	CHECK(ingest_into(store, p, "models/org/bad", 0, &seen, &st, &err) < 0);
	CHECK(strstr(err.msg, "pipe.bin") != NULL);

	memset(&err, 0, sizeof err);
	snprintf(p, sizeof p, "%s/withfifo", src);
	mfs_store *s;
	REQUIRE(mfs_store_open(store, MFS_STORE_CREATE, &s, &err) == 0);
	mfs_ingest_opts o;
	mfs_ingest_opts_default(&o);
	o.repo = "models/org/bad";
	o.chunk_size = 3000; /* not a power of two */
	CHECK_EQ_INT(mfs_ingest_path(s, p, &o, &st, &err), MFS_E_INVAL);
	CHECK(strstr(err.msg, "power of two") != NULL);
	o.chunk_size = (size_t)1 << 20;
	o.repo = "not a repo id";
	CHECK_EQ_INT(mfs_ingest_path(s, p, &o, &st, &err), MFS_E_INVAL);
	mfs_store_close(s);

	CHECK(store_is_empty(store));
	test_rm_dir(src);
	test_rm_dir(store);
	free(src);
	free(store);
}

/* The stand-alone encoder verify's repair uses: the dtype's codec, raw for
 * noise, zstd for bytes of no dtype, a codec that does not take the dtype
 * replaced by zstd; every payload decodes to the input. */
static void test_encode_chunk(void)
{
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	size_t stl;
	uint8_t *st = make_safetensors(&stl);
	REQUIRE(st);
	const uint8_t *w = st + stl - 2 * 300000 - 4 * 20000; /* the BF16 tensor */
	const size_t len = 1 << 16;
	size_t cap = mfs_codec_bound_max(len), enc_len;
	uint8_t *enc = malloc(cap), *dec = malloc(len), *noise = malloc(len);
	REQUIRE(enc && dec && noise);
	uint64_t s = 99;
	for (size_t i = 0; i < len; i++)
		noise[i] = (uint8_t)test_rand(&s);

	mfs_codec_id codec;
	CHECK_EQ_INT(mfs_ingest_encode_chunk(MFS_DT_BF16, 0, w, len, enc, cap, &enc_len, &codec, ws),
		     0);
	CHECK_EQ_INT(codec, MFS_CODEC_BITPLANE_HUFF);
	CHECK(enc_len < len * 9 / 10);
	mfs_decode_req rq = {.src = enc, .src_len = enc_len, .dst = dec, .dst_len = len};
	CHECK_EQ_INT(mfs_codec_decode(codec, &rq, ws), 0);
	CHECK(memcmp(dec, w, len) == 0);

	CHECK_EQ_INT(mfs_ingest_encode_chunk(MFS_DT_BF16, 0, noise, len, enc, cap, &enc_len,
					     &codec, ws),
		     0);
	CHECK_EQ_INT(codec, MFS_CODEC_RAW);
	CHECK(enc_len == len && memcmp(enc, noise, len) == 0);

	static const char text[] = "{\"architectures\": [\"BertModel\"], \"hidden_size\": 384}\n"
				   "{\"architectures\": [\"BertModel\"], \"hidden_size\": 384}\n";
	CHECK_EQ_INT(mfs_ingest_encode_chunk(MFS_DT_UNKNOWN, 0, (const uint8_t *)text,
					     sizeof text - 1, enc, cap, &enc_len, &codec, ws),
		     0);
	CHECK_EQ_INT(codec, MFS_CODEC_ZSTD);
	rq = (mfs_decode_req){.src = enc, .src_len = enc_len, .dst = dec,
			      .dst_len = sizeof text - 1};
	CHECK_EQ_INT(mfs_codec_decode(codec, &rq, ws), 0);
	CHECK(memcmp(dec, text, sizeof text - 1) == 0);

	/* bitplane-huff does not take I8: zstd codes it */
	mfs_encode_params ep = {.dtype = MFS_DT_I8};
	memset(dec, 7, len);
	CHECK_EQ_INT(mfs_ingest_encode(MFS_CODEC_BITPLANE_HUFF, &ep, dec, len, enc, cap, &enc_len,
				       &codec, ws),
		     0);
	CHECK_EQ_INT(codec, MFS_CODEC_ZSTD);
	CHECK(enc_len < 100);

	free(enc);
	free(dec);
	free(noise);
	free(st);
	mfs_codec_ws_free(ws);
}

int main(void)
{
	RUN(test_encode_chunk);
	RUN(test_plain_folder);
	RUN(test_bad_sources);
	RUN(test_real_model);
	return test_report();
}
