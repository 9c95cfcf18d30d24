/*
 * Unit tests for index/upgrade.c (mfs_store_upgrade): a format-1 store built
 * here record by record (inline chunk records as format 1 wrote them, two
 * repos whose files share a chunk, a chunk no file uses) is converted with
 * small batches; every chunk reads back exact from the packs, a file's
 * chunks lie in the packs in file order, progress is reported in order,
 * the index is compacted; a second run does nothing; a run over a partly
 * converted store goes on from there; a store this process has open is
 * refused with nothing changed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bytes.h"
#include "check.h"
#include "pack.h"
#include "store.h"
#include "store_raw.h"
#include "testfs.h"
#include "testhelp.h"
#include "upgrade.h"

static uint64_t seed;

#define N_CHUNKS 24
#define N_A	 10 /* repo a's file: chunks 0..9 */
#define N_B	 9  /* repo b's file: chunk 3 again, then 10..17; 18..23 no file uses */

static uint64_t file_size(const char *dir, const char *name)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

typedef struct chunk {
	uint8_t *raw;
	size_t len;
	mfs_chunk_key key;
} chunk;

/* An inline (format 1) record of a raw-codec chunk, with a count of 0. */
static int put_inline(mfs_store *s, const chunk *c)
{
	size_t h;
	uint8_t *rec = malloc(MFS_REC_CHUNK_HDR_MAX + c->len);
	if (!rec)
		return -ENOMEM;
	int rc = mfs_rec_chunk_header(
	    rec, &(mfs_chunk_meta){.codec = MFS_CODEC_RAW, .raw_len = (uint32_t)c->len},
	    &h);
	if (rc == 0) {
		memcpy(rec + h, c->raw, c->len);
		uint8_t zero[8] = {0};
		rc = put_raw(s, DB_CHUNKS, c->key.b, 16, rec, h + c->len);
		if (rc == 0)
			rc = put_raw(s, DB_CHUNKREFS, c->key.b, 16, zero, 8);
	}
	free(rec);
	return rc;
}

/* A snapshot of @p repo whose one file is the chunks @p idx, in that order. */
static int publish(mfs_store *s, const char *repo, const char *etag, const chunk *c,
		   const int *idx, size_t n)
{
	mfs_extent ext[N_CHUNKS];
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		ext[i] = (mfs_extent){
		    .off = off, .len = (uint32_t)c[idx[i]].len, .key = c[idx[i]].key};
		off += c[idx[i]].len;
	}
	const char *commit = "2222222222222222222222222222222222222222";
	return test_publish_file(s, repo, commit, etag, ext, n, off);
}

static const int FILE_A[N_A] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
static const int FILE_B[N_B] = {3, 10, 11, 12, 13, 14, 15, 16, 17};

/* A format-1 store at @p d: the chunks, two repos' files, format record 1. */
static int make_format1(const char *d, chunk *c)
{
	mfs_store *s;
	int rc = mfs_store_open(d, MFS_STORE_CREATE, &s, NULL);
	if (rc < 0)
		return rc;
	for (int i = 0; i < N_CHUNKS && rc == 0; i++)
		rc = put_inline(s, &c[i]);
	if (rc == 0)
		rc = publish(
		    s, "models/org/a",
		    "aa00000000000000000000000000000000000000000000000000000000000001", c,
		    FILE_A, N_A);
	if (rc == 0)
		rc = publish(
		    s, "models/org/b",
		    "bb00000000000000000000000000000000000000000000000000000000000002", c,
		    FILE_B, N_B);
	uint8_t one[8];
	mfs_put_le64(one, 1);
	if (rc == 0)
		rc = put_raw(s, DB_META, "format", 6, one, 8);
	mfs_store_close(s);
	return rc;
}

static void make_chunks(chunk *c)
{
	for (int i = 0; i < N_CHUNKS; i++) {
		/* over a 4 KiB batch each: one chunk per transaction */
		c[i].len = 5000 + (size_t)(test_rand(&seed) % 20000);
		c[i].raw = malloc(c[i].len);
		REQUIRE(c[i].raw);
		for (size_t j = 0; j < c[i].len; j++)
			c[i].raw[j] = (uint8_t)(test_rand(&seed) >> 7);
		c[i].raw[0] = (uint8_t)i; /* distinct keys */
		mfs_chunk_key_of(c[i].raw, c[i].len, &c[i].key);
	}
}

static void free_chunks(chunk *c)
{
	for (int i = 0; i < N_CHUNKS; i++)
		free(c[i].raw);
}

struct seen {
	int calls, bad_order;
	mfs_upgrade_phase last_phase;
	uint64_t last_done, last_bytes, total;
};

static void on_progress(void *ud, const mfs_upgrade_progress *p)
{
	struct seen *s = ud;
	if (s->calls && (p->phase < s->last_phase || p->chunks_done < s->last_done ||
			 p->bytes_done < s->last_bytes))
		s->bad_order++;
	s->calls++;
	s->last_phase = p->phase;
	s->last_done = p->chunks_done;
	s->last_bytes = p->bytes_done;
	s->total = p->bytes_total;
}

static int show_problem(void *ud, const mfs_check_problem *p)
{
	(void)ud;
	fprintf(stderr, "  check: %s %s\n", p->what, p->why);
	return 0;
}

/* Every chunk in a pack, its payload the raw bytes; @p loc gets where. */
static void check_chunks(const char *d, const chunk *c, mfs_chunk_loc *loc)
{
	mfs_store *s;
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL) == 0);
	CHECK_EQ_INT(mfs_store_format(s), 2);
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	for (int i = 0; i < N_CHUNKS; i++) {
		mfs_chunk_view v;
		REQUIRE(mfs_chunk_get(t, &c[i].key, &v) == 0);
		CHECK_EQ_INT(v.in_pack, 1);
		CHECK_EQ_INT(v.payload_len, c[i].len);
		uint8_t *buf = malloc(c[i].len);
		REQUIRE(buf);
		CHECK_EQ_INT(
		    mfs_chunk_payload_read(s, &c[i].key, &v, buf, c[i].len, NULL), 0);
		CHECK(!memcmp(buf, c[i].raw, c[i].len));
		free(buf);
		loc[i] = v.loc;
	}
	uint64_t v = 7;
	CHECK_EQ_INT(mfs_db_meta_get(t->txn, DBI(t, DB_META), "upgrade_compact", &v),
		     MFS_E_NOTFOUND);
	uint64_t nbad = 99;
	CHECK_EQ_INT(mfs_check_store(t, 0, show_problem, NULL, &nbad), 0);
	CHECK_EQ_INT(nbad, 0);
	mfs_txn_abort(t);
	mfs_store_close(s);
}

/* (pack, offset) of a before b */
static int loc_before(const mfs_chunk_loc *a, const mfs_chunk_loc *b)
{
	return a->pack < b->pack || (a->pack == b->pack && a->off < b->off);
}

static void test_convert(void)
{
	chunk c[N_CHUNKS];
	make_chunks(c);
	char *d = test_fresh_dir("upgrade");
	REQUIRE(d && make_format1(d, c) == 0);
	uint64_t before = file_size(d, "data.mdb");
	struct seen seen = {0};
	mfs_upgrade_opts o = {
	    .batch_bytes = 4096, .progress = on_progress, .progress_ud = &seen};
	mfs_upgrade_stat st;
	mfs_errmsg err = {0};
	CHECK_EQ_INT(mfs_store_upgrade(d, &o, &st, &err), 0);
	if (err.msg[0])
		fprintf(stderr, "  %s\n", err.msg);
	CHECK_EQ_INT(st.format_before, 1);
	CHECK_EQ_INT(st.switched, 1);
	CHECK_EQ_INT(st.compacted, 1);
	CHECK_EQ_INT(st.compact_pending, 0);
	CHECK_EQ_INT(st.chunks, N_CHUNKS);
	CHECK_EQ_INT(st.chunks_resumed, 0);
	CHECK_EQ_INT(st.chunks_moved, N_CHUNKS);
	CHECK_EQ_INT(st.batches, N_CHUNKS); /* every chunk is over a batch */
	uint64_t payload = 0;
	for (int i = 0; i < N_CHUNKS; i++)
		payload += c[i].len;
	CHECK_EQ_INT(st.bytes_moved, payload);
	CHECK(st.index_bytes_after < before);
	CHECK_EQ_INT(seen.bad_order, 0);
	CHECK_EQ_INT(seen.last_phase, MFS_UPGRADE_COMPACT);
	CHECK_EQ_INT(seen.last_bytes, payload);
	CHECK_EQ_INT(seen.total, payload);
	mfs_chunk_loc loc[N_CHUNKS];
	check_chunks(d, c, loc);
	/* file order: a's chunks in its order, then b's new ones in its order,
	 * then the chunks no file uses */
	for (int i = 1; i < N_A; i++)
		CHECK(loc_before(&loc[FILE_A[i - 1]], &loc[FILE_A[i]]));
	CHECK(loc_before(&loc[FILE_A[N_A - 1]], &loc[FILE_B[1]]));
	for (int i = 2; i < N_B; i++)
		CHECK(loc_before(&loc[FILE_B[i - 1]], &loc[FILE_B[i]]));
	for (int i = N_A + N_B - 1; i < N_CHUNKS; i++)
		CHECK(loc_before(&loc[FILE_B[N_B - 1]], &loc[i]));
	/* again: nothing to do, nothing changed */
	uint64_t size = file_size(d, "data.mdb");
	CHECK_EQ_INT(mfs_store_upgrade(d, NULL, &st, NULL), 0);
	CHECK_EQ_INT(st.format_before, 2);
	CHECK_EQ_INT(st.switched, 0);
	CHECK_EQ_INT(st.compacted, 0);
	CHECK_EQ_INT(st.chunks_moved, 0);
	CHECK_EQ_INT(file_size(d, "data.mdb"), size);
	test_drop_dir(d);
	free_chunks(c);
}

static void test_resume(void)
{
	chunk c[N_CHUNKS];
	make_chunks(c);
	char *d = test_fresh_dir("upgrade");
	REQUIRE(d && make_format1(d, c) == 0);
	/* an earlier run converted every other chunk, then stopped */
	mfs_store *s;
	mfs_txn *t;
	REQUIRE(mfs_store_open(d, MFS_STORE_UPGRADE, &s, NULL) == 0);
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	for (int i = 0; i < N_CHUNKS; i += 2) {
		int moved = 0;
		CHECK_EQ_INT(mfs_chunk_upgrade(t, &c[i].key, &moved), 0);
		CHECK_EQ_INT(moved, 1);
	}
	REQUIRE(mfs_txn_commit(t) == 0);
	mfs_store_close(s);
	mfs_errmsg err = {0};
	CHECK_EQ_INT(mfs_store_open(d, MFS_STORE_RDONLY, &s, &err), MFS_E_VERSION);
	CHECK(strstr(err.msg, "modelfs upgrade --store") != NULL);
	mfs_upgrade_stat st;
	CHECK_EQ_INT(mfs_store_upgrade(d, NULL, &st, NULL), 0);
	CHECK_EQ_INT(st.chunks_resumed, N_CHUNKS / 2);
	CHECK_EQ_INT(st.chunks_moved, N_CHUNKS / 2);
	CHECK_EQ_INT(st.switched, 1);
	mfs_chunk_loc loc[N_CHUNKS];
	check_chunks(d, c, loc);
	test_drop_dir(d);
	free_chunks(c);
}

static void test_refused_in_use(void)
{
	chunk c[N_CHUNKS];
	make_chunks(c);
	char *d = test_fresh_dir("upgrade");
	REQUIRE(d && make_format1(d, c) == 0);
	uint64_t size = file_size(d, "data.mdb");
	/* another process has the store open (as a mount would), until told */
	int up[2], down[2];
	REQUIRE(pipe(up) == 0 && pipe(down) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		mfs_store *s;
		char b = mfs_store_open(d, MFS_STORE_RDONLY | MFS_STORE_UPGRADE, &s,
					NULL) == MFS_E_INVAL &&
				 mfs_store_open(d, MFS_STORE_UPGRADE, &s, NULL) == 0
			     ? 'y'
			     : 'n';
		if (write(up[1], &b, 1) != 1 || read(down[0], &b, 1) != 1)
			_exit(2);
		mfs_store_close(s);
		_exit(0);
	}
	char b = 0;
	REQUIRE(read(up[0], &b, 1) == 1 && b == 'y');
	size = file_size(d, "data.mdb");
	mfs_upgrade_stat st;
	mfs_errmsg err = {0};
	CHECK_EQ_INT(mfs_store_upgrade(d, NULL, &st, &err), MFS_E_BUSY);
	CHECK(strstr(err.msg, "in use") != NULL &&
	      strstr(err.msg, "nothing was changed") != NULL);
	CHECK_EQ_INT(file_size(d, "data.mdb"), size);
	REQUIRE(write(down[1], "x", 1) == 1);
	int status = 0;
	REQUIRE(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		WEXITSTATUS(status) == 0);
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);
	/* no store there: nothing is created */
	char missing[4200];
	snprintf(missing, sizeof missing, "%s/missing", d);
	CHECK_EQ_INT(mfs_store_upgrade(missing, NULL, &st, &err), -ENOENT);
	struct stat sb;
	CHECK(stat(missing, &sb) < 0 && errno == ENOENT);
	/* let go: it converts */
	CHECK_EQ_INT(mfs_store_upgrade(d, NULL, &st, NULL), 0);
	CHECK_EQ_INT(st.switched, 1);
	test_drop_dir(d);
	free_chunks(c);
}

int main(void)
{
	seed = test_seed();
	RUN(test_convert);
	RUN(test_resume);
	RUN(test_refused_in_use);
	return test_report();
}
