/*
 * test_verify.c - the store check (fs/verify.h) and the repair
 * (ingest/repair.h) without the CLI: a store ingested here verifies clean
 * (no finding, every chunk and file counted, progress up to the total); a
 * flipped byte in a chunk's pack entry is found and named (the chunk by its
 * key, the blob, the extent, the snapshot file); a repair from the source
 * folder rewrites that chunk and the file reads back exact; a repair from a
 * folder without a good copy, or from no folder, changes nothing and says
 * why; a repo not in the store is refused by name.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ingest.h"
#include "reader.h"
#include "repair.h"
#include "sha256.h"
#include "store.h"
#include "stream.h"
#include "testfs.h"
#include "testhelp.h"
#include "verify.h"

#define MiB	     (1u << 20)
#define REPO	     "models/org/unit"
#define TENSOR_BYTES (3 * MiB) /* three chunks at the default chunk size */

/* A safetensors file of one U8 tensor of random (incompressible, so stored
 * raw: its chunks lie verbatim in the pack) bytes; *data_start: the offset
 * of the tensor's first byte, where its chunks start. */
static uint8_t *make_model(uint64_t seed, size_t *len, size_t *data_start)
{
	char hdr[128];
	snprintf(hdr, sizeof hdr,
		 "{\"noise\":{\"dtype\":\"U8\",\"shape\":[%u],\"data_offsets\":[0,%u]}}",
		 TENSOR_BYTES, TENSOR_BYTES);
	uint8_t *buf = test_safetensors_alloc(hdr, TENSOR_BYTES, len, data_start);
	if (!buf)
		return NULL;
	for (size_t i = *data_start; i < *len; i++)
		buf[i] = (uint8_t)(test_rand(&seed) >> 56);
	return buf;
}

/* What the callbacks were handed. */
struct findings {
	int n[MFS_VERIFY_NO_FILE + 1];
	mfs_chunk_key chunk; /* of the BAD_CHUNK event */
	int chunk_in_pack;
	char blob[MFS_ETAG_MAX + 1], path[256];
	uint64_t extent_off;
	uint32_t extent_len;
	int progress_starts, progress_back;
	uint64_t done, total;
};

static void on_finding(void *ud, const mfs_verify_event *ev)
{
	struct findings *f = ud;
	f->n[ev->kind]++;
	switch (ev->kind) {
	case MFS_VERIFY_BAD_CHUNK:
		f->chunk = *ev->key;
		f->chunk_in_pack = ev->in_pack;
		break;
	case MFS_VERIFY_BAD_BLOB:
		snprintf(f->blob, sizeof f->blob, "%s", ev->etag);
		break;
	case MFS_VERIFY_BAD_EXTENT:
		f->extent_off = ev->off;
		f->extent_len = ev->len;
		break;
	case MFS_VERIFY_DAMAGED_FILE:
		snprintf(f->path, sizeof f->path, "%s", ev->path);
		break;
	default:
		break;
	}
}

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
	struct findings *f = ud;
	if (done == 0)
		f->progress_starts++;
	else if (done < f->done)
		f->progress_back++;
	f->done = done;
	f->total = total;
}

static int run_verify(const char *store_dir, const char *only, struct findings *f,
		      mfs_verify_result *res, mfs_errmsg *err)
{
	mfs_store *s;
	memset(f, 0, sizeof *f);
	int rc = mfs_store_open(store_dir, MFS_STORE_RDONLY, &s, err);
	if (rc < 0)
		return rc;
	mfs_reader *r = NULL;
	if ((rc = mfs_reader_create(s, NULL, &r)) == 0) {
		mfs_verify_opts o;
		mfs_verify_opts_default(&o);
		o.threads = 2;
		o.repo = only;
		o.report = on_finding;
		o.progress = on_progress;
		o.ud = f;
		rc = mfs_verify_run(s, r, &o, res, err);
	}
	mfs_reader_free(r);
	mfs_store_close(s);
	return rc;
}

/* What the repair's callback was handed. */
struct steps {
	int n[MFS_REPAIR_NO_COPY + 1];
	char source[4096];
	uint64_t rewritten_off;
};

static void on_step(void *ud, const mfs_repair_event *ev)
{
	struct steps *st = ud;
	st->n[ev->kind]++;
	if (ev->kind == MFS_REPAIR_SOURCE)
		snprintf(st->source, sizeof st->source, "%s", ev->path);
	if (ev->kind == MFS_REPAIR_REWRITTEN)
		st->rewritten_off = ev->off;
}

static int run_repair(const char *store_dir, const char *from,
		      const mfs_verify_result *res, struct steps *st,
		      mfs_repair_stats *stats, mfs_errmsg *err)
{
	mfs_store *s;
	memset(st, 0, sizeof *st);
	int rc = mfs_store_open(store_dir, 0, &s, err);
	if (rc < 0)
		return rc;
	int lock = -1;
	if ((rc = mfs_store_lock_ingest(s, 0, 1, &lock)) == 0)
		rc = mfs_repair_run(s, from, res->damaged_blobs, res->n_damaged_blobs,
				    res->damaged_chunks, res->n_damaged_chunks, on_step,
				    st, stats, err);
	mfs_store_unlock(lock);
	mfs_store_close(s);
	return rc;
}

/* Flip one byte inside the first copy of @p chunk found in the store's packs. */
static int damage_chunk(const char *store_dir, const uint8_t *chunk, size_t len)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/packs", store_dir);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int found = -1;
	struct dirent *e;
	while (found < 0 && (e = readdir(d))) {
		size_t nl = strlen(e->d_name);
		if (nl < 5 || strcmp(e->d_name + nl - 5, ".pack") != 0)
			continue;
		char p[8192];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		FILE *f = fopen(p, "r+b");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		long size = ftell(f);
		uint8_t *all = size > 0 ? malloc((size_t)size) : NULL;
		rewind(f);
		if (all && fread(all, 1, (size_t)size, f) == (size_t)size) {
			for (long at = 0; at + (long)len <= size; at++)
				if (all[at] == chunk[0] &&
				    !memcmp(all + at, chunk, len)) {
					uint8_t b = (uint8_t)(all[at + 1000] ^ 0xFF);
					fseek(f, at + 1000, SEEK_SET);
					found = fwrite(&b, 1, 1, f) == 1 ? 0 : -1;
					break;
				}
		}
		free(all);
		fclose(f);
	}
	closedir(d);
	return found;
}

/* The stored file equals @p want, rebuilt through the read path. */
struct collect {
	uint8_t *buf;
	size_t len;
};

static int collect_fn(void *ud, uint64_t off, const void *data, size_t len)
{
	struct collect *c = ud;
	if (off + len > c->len)
		return -EINVAL;
	memcpy(c->buf + off, data, len);
	return 0;
}

static int reads_back(const char *store_dir, const char *etag, const uint8_t *want,
		      size_t len)
{
	mfs_store *s;
	if (mfs_store_open(store_dir, MFS_STORE_RDONLY, &s, NULL) < 0)
		return 0;
	mfs_reader *r = NULL;
	mfs_rfile *f = NULL;
	struct collect c = {malloc(len), len};
	int ok = c.buf && mfs_reader_create(s, NULL, &r) == 0 &&
		 mfs_rfile_open(r, REPO, etag, &f) == 0 && f->size == len &&
		 mfs_rfile_stream(r, f, 2, collect_fn, &c, NULL) == 0 &&
		 memcmp(c.buf, want, len) == 0;
	free(c.buf);
	mfs_rfile_close(f);
	mfs_reader_free(r);
	mfs_store_close(s);
	return ok;
}

static void test_verify_and_repair(void)
{
	char *store = test_fresh_dir("verify"), *src = test_fresh_dir("verify-src"),
	     *empty = test_fresh_dir("verify-empty");
	REQUIRE(store && src && empty);
	size_t len = 0, start = 0;
	uint8_t *model = make_model(test_seed(), &len, &start);
	REQUIRE(model);
	const char config[] = "{\"model_type\": \"noise\"}\n";
	REQUIRE(test_write_file(src, "model.safetensors", model, len) == 0);
	REQUIRE(test_write_file(src, "config.json", config, sizeof config - 1) == 0);

	mfs_errmsg err = {0};
	mfs_store *s;
	REQUIRE(mfs_store_open(store, MFS_STORE_CREATE, &s, &err) == 0);
	mfs_ingest_opts io;
	mfs_ingest_opts_default(&io);
	io.repo = REPO;
	io.threads = 2;
	mfs_ingest_stats ist;
	int rc = mfs_ingest_path(s, src, &io, &ist, &err);
	mfs_store_close(s);
	if (rc < 0)
		fprintf(stderr, "ingest: %s\n", err.msg);
	REQUIRE(rc == 0);

	/* clean: nothing found, everything counted */
	struct findings f;
	mfs_verify_result res;
	rc = run_verify(store, NULL, &f, &res, &err);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(res.bad_chunks + res.bad_files + res.bad_records, 0);
	CHECK_EQ_INT(res.files, 2);
	CHECK_EQ_INT(res.bytes, len + sizeof config - 1);
	CHECK(res.chunks >= TENSOR_BYTES / MiB + 1);
	CHECK_EQ_INT(res.n_damaged_chunks + res.n_damaged_blobs, 0);
	int events = 0;
	for (int k = 0; k <= MFS_VERIFY_NO_FILE; k++)
		events += f.n[k];
	CHECK_EQ_INT(events, 0);
	CHECK_EQ_INT(f.progress_starts, 1);
	CHECK_EQ_INT(f.progress_back, 0);
	CHECK_EQ_INT(f.total, res.bytes);
	CHECK_EQ_INT(f.done, f.total);
	mfs_verify_result_free(&res);

	/* the middle chunk of the tensor, damaged in its pack entry */
	const uint8_t *chunk = model + start + MiB;
	mfs_chunk_key key;
	mfs_chunk_key_of(chunk, MiB, &key);
	REQUIRE(damage_chunk(store, chunk, MiB) == 0);
	rc = run_verify(store, NULL, &f, &res, &err);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(res.bad_chunks, 1);
	CHECK_EQ_INT(res.bad_files, 1);
	CHECK_EQ_INT(res.bad_records, 0);
	CHECK_EQ_INT(f.n[MFS_VERIFY_BAD_CHUNK], 1);
	CHECK(!memcmp(f.chunk.b, key.b, 16));
	CHECK_EQ_INT(f.chunk_in_pack, 1);
	REQUIRE(res.n_damaged_chunks == 1);
	CHECK(!memcmp(res.damaged_chunks[0].key.b, key.b, 16));
	CHECK(res.damaged_chunks[0].rc < 0);
	CHECK_EQ_INT(f.n[MFS_VERIFY_BAD_BLOB], 1);
	CHECK_EQ_INT(f.n[MFS_VERIFY_BAD_EXTENT], 1);
	CHECK_EQ_INT(f.extent_off, start + MiB);
	CHECK_EQ_INT(f.extent_len, MiB);
	CHECK_EQ_INT(f.n[MFS_VERIFY_DAMAGED_FILE], 1);
	CHECK(!strcmp(f.path, "model.safetensors"));
	CHECK_EQ_INT(f.n[MFS_VERIFY_NO_FILE] + f.n[MFS_VERIFY_BAD_BLOB_RECORD], 0);
	REQUIRE(res.n_damaged_blobs == 1);
	const mfs_damaged_blob *b = &res.damaged_blobs[0];
	CHECK(!strcmp(b->etag, f.blob));
	CHECK(!strcmp(b->repo, REPO));
	CHECK_EQ_INT(b->size, len);
	uint8_t sha[32];
	mfs_sha256(model, len, sha);
	CHECK(!memcmp(b->sha256, sha, 32));

	/* one repo only: the same chunk and file; a repo not stored is refused */
	mfs_verify_result one;
	CHECK_EQ_INT(run_verify(store, REPO, &f, &one, &err), 0);
	CHECK_EQ_INT(one.bad_chunks, 1);
	CHECK_EQ_INT(one.bad_files, 1);
	mfs_verify_result_free(&one);
	err.msg[0] = '\0';
	CHECK_EQ_INT(run_verify(store, "models/org/none", &f, &one, &err),
		     MFS_E_NOTFOUND);
	CHECK(strstr(err.msg, "models/org/none") != NULL);
	mfs_verify_result_free(&one);

	/* no folder, then a folder without a good copy: nothing rewritten */
	struct steps st;
	mfs_repair_stats rs;
	char missing[4200];
	snprintf(missing, sizeof missing, "%s/none", empty);
	err.msg[0] = '\0';
	CHECK_EQ_INT(run_repair(store, missing, &res, &st, &rs, &err), -ENOTDIR);
	CHECK(strstr(err.msg, "not a folder") != NULL);
	CHECK_EQ_INT(run_repair(store, empty, &res, &st, &rs, &err), 0);
	CHECK_EQ_INT(rs.rewritten, 0);
	CHECK_EQ_INT(rs.failed, 1);
	CHECK_EQ_INT(st.n[MFS_REPAIR_NO_SOURCE], 1);
	CHECK_EQ_INT(st.n[MFS_REPAIR_NO_COPY], 1);
	CHECK_EQ_INT(st.n[MFS_REPAIR_REWRITTEN], 0);
	CHECK(!reads_back(store, b->etag, model, len));

	/* from the source folder: the chunk rewritten, the store clean, the file exact */
	CHECK_EQ_INT(run_repair(store, src, &res, &st, &rs, &err), 0);
	CHECK_EQ_INT(rs.rewritten, 1);
	CHECK_EQ_INT(rs.failed, 0);
	CHECK_EQ_INT(st.n[MFS_REPAIR_SOURCE], 1);
	CHECK(strstr(st.source, "model.safetensors") != NULL);
	CHECK_EQ_INT(st.n[MFS_REPAIR_REWRITTEN], 1);
	CHECK_EQ_INT(st.rewritten_off, start + MiB);
	CHECK(reads_back(store, b->etag, model, len));
	mfs_verify_result_free(&res);
	CHECK_EQ_INT(run_verify(store, NULL, &f, &res, &err), 0);
	CHECK_EQ_INT(res.bad_chunks + res.bad_files + res.bad_records, 0);
	CHECK_EQ_INT(res.files, 2);
	mfs_verify_result_free(&res);

	free(model);
	test_drop_dir(store);
	test_drop_dir(src);
	test_drop_dir(empty);
}

int main(void)
{
	RUN(test_verify_and_repair);
	return test_report();
}
