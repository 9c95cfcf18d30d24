/*
 * test_check.c - the record checker (index/check.c) over real stores whose
 * records are damaged on purpose, byte by byte, through the LMDB handles of
 * store_internal.h: a file naming no blob, a bad version byte in each record
 * kind, paths and names that leave the repo or hold terminal escapes,
 * dangling refs and commits, tensors past their blob, missing chunks and
 * wrong reference counts, records of no repo.  Each problem is reported
 * once, names its database, repo and key, and every string is printable;
 * the other repos stay intact.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "check.h"
#include "records.h"
#include "store.h"
#include "store_internal.h"
#include "pack.h"
#include "store_raw.h"
#include "testhelp.h"

static uint64_t seed;

#define GOOD	  "models/org/good"
#define BAD	  "models/org/bad"
#define BADX	  "models/org/badx" /* "bad" is a prefix of it: never mixed up */
#define C1	  "1111111111111111111111111111111111111111"
#define C2	  "2222222222222222222222222222222222222222"
#define ETAG_W	  "aa00000000000000000000000000000000000000000000000000000000000001"
#define ETAG_C	  "bb00000000000000000000000000000000000002"
#define ETAG_NONE "ee00000000000000000000000000000000000009"

#define NWCHUNK 3
#define WCHUNK	4096

typedef struct fixture {
	char dir[64];
	mfs_store *s;
	mfs_chunk_key wkeys[NWCHUNK]; /* the weight chunks of BAD */
} fixture;

static int put_chunk(mfs_txn *t, const uint8_t *raw, size_t len, mfs_chunk_key *key)
{
	mfs_chunk_key_of(raw, len, key);
	return mfs_chunk_put(t, key, &(mfs_chunk_meta){.codec = MFS_CODEC_RAW, .raw_len = (uint32_t)len}, raw, len, NULL);
}

/* A repo: a weights blob of three chunks and two tensors (bytes unique to the
 * repo), a config blob, three files (one executable), a marker, a ref. */
static int publish(mfs_store *s, const char *repo, mfs_chunk_key *wkeys_out)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	static uint8_t w[NWCHUNK * WCHUNK];
	for (size_t i = 0; i < sizeof w; i++)
		w[i] = (uint8_t)(test_rand(&seed) >> 56);
	mfs_extent wext[NWCHUNK], cext[1];
	for (size_t i = 0; i < NWCHUNK && rc == 0; i++) {
		wext[i].off = i * WCHUNK;
		wext[i].len = WCHUNK;
		rc = put_chunk(t, w + i * WCHUNK, WCHUNK, &wext[i].key);
		if (wkeys_out)
			wkeys_out[i] = wext[i].key;
	}
	char cfg[64];
	int cl = snprintf(cfg, sizeof cfg, "{\"repo\": \"%s\"}", repo);
	cext[0].off = 0;
	cext[0].len = (uint32_t)cl;
	if (rc == 0)
		rc = put_chunk(t, (const uint8_t *)cfg, (size_t)cl, &cext[0].key);
	mfs_tensor_info ti[2] = {
	    {.name = "a.weight",
	     .dtype = MFS_DT_U8,
	     .ndim = 1,
	     .shape = {WCHUNK},
	     .data_off = 0,
	     .raw_len = WCHUNK,
	     .stored_len = WCHUNK,
	     .codec = MFS_CODEC_RAW,
	     .first_extent = 0,
	     .n_extents = 1},
	    {.name = "b.weight",
	     .dtype = MFS_DT_U8,
	     .ndim = 1,
	     .shape = {2 * WCHUNK},
	     .data_off = WCHUNK,
	     .raw_len = 2 * WCHUNK,
	     .stored_len = 2 * WCHUNK,
	     .codec = MFS_CODEC_RAW,
	     .first_extent = 1,
	     .n_extents = 2},
	};
	mfs_blob_rec wb = {.etag = ETAG_W,
			   .size = sizeof w,
			   .stored_bytes = sizeof w,
			   .n_extents = NWCHUNK,
			   .extents = wext,
			   .n_tensors = 2,
			   .tensors = ti};
	mfs_blob_rec cb = {.etag = ETAG_C,
			   .size = (uint64_t)cl,
			   .stored_bytes = (uint64_t)cl,
			   .n_extents = 1,
			   .extents = cext};
	mfs_file_rec files[3] = {
	    {"model.safetensors", ETAG_W, 0444},
	    {"config.json", ETAG_C, 0444},
	    {"bin/run.sh", ETAG_C, 0555},
	};
	const char *noexist[] = {"adapter_config.json"};
	const char *refs[] = {"main"};
	if (rc == 0)
		rc = mfs_blob_put(t, repo, &wb, NULL);
	if (rc == 0)
		rc = mfs_blob_put(t, repo, &cb, NULL);
	if (rc == 0)
		rc = mfs_snapshot_publish(t, repo, C1, 1700000000, files, 3, noexist, 1,
					  refs, 1, NULL);
	if (rc < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

static int fixture_open(fixture *f)
{
	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/mfs-test-check-XXXXXX");
	if (!mkdtemp(f->dir))
		return -errno;
	int rc = mfs_store_open(f->dir, MFS_STORE_CREATE, &f->s, NULL);
	if (rc == 0)
		rc = publish(f->s, GOOD, NULL);
	if (rc == 0)
		rc = publish(f->s, BAD, f->wkeys);
	if (rc == 0)
		rc = publish(f->s, BADX, NULL);
	return rc;
}

static void fixture_close(fixture *f)
{
	mfs_store_close(f->s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
}

/* ---- raw records ---- */

static size_t key3(char *buf, const char *a, const char *b, const char *c)
{
	return mfs_db_key_join(buf, 512, a, b, c);
}

/* Copy a record's value out; @return its length, or -1 when missing. */
static long get_raw(mfs_store *s, int db, const void *k, size_t kl, uint8_t *buf,
		    size_t cap)
{
	mfs_txn *t;
	if (mfs_txn_begin(s, MFS_TXN_READ, &t) < 0)
		return -1;
	MDB_val key = {kl, (void *)k}, val;
	long n = -1;
	if (mdb_get(t->txn, DBI(t, db), &key, &val) == 0 && val.mv_size <= cap) {
		memcpy(buf, val.mv_data, val.mv_size);
		n = (long)val.mv_size;
	}
	mfs_txn_abort(t);
	return n;
}

/* Set the first byte of a record's value (its version byte). */
static int poke_first(mfs_store *s, int db, const void *k, size_t kl, uint8_t byte)
{
	uint8_t buf[4096];
	long n = get_raw(s, db, k, kl, buf, sizeof buf);
	if (n < 1)
		return -ENOENT;
	buf[0] = byte;
	return put_raw(s, db, k, kl, buf, (size_t)n);
}

static int put_file_rec(mfs_store *s, const char *repo, const char *commit,
			const char *path, const char *etag, uint32_t mode)
{
	char k[512];
	size_t kl = key3(k, repo, commit, path);
	uint8_t v[MFS_REC_FILE_MAX];
	size_t vl;
	if (!kl || mfs_rec_file_encode(v, mode, etag, &vl) < 0)
		return MFS_E_INVAL;
	return put_raw(s, DB_FILES, k, kl, v, vl);
}

/* ---- what the checker reports ---- */

#define MAXP 64

typedef struct found {
	size_t n;
	struct {
		char db[16], repo[512], key[2200], what[1400], why[1200];
	} p[MAXP];
	int unprintable; /* some string held a byte outside printable ASCII */
	int stop_after;	 /* return 1 after this many (0: never) */
} found;

static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

static int collect(void *ud, const mfs_check_problem *p)
{
	found *f = ud;
	if (!printable(p->db) || !printable(p->repo) || !printable(p->key) ||
	    !printable(p->what) || !printable(p->why))
		f->unprintable = 1;
	if (f->n < MAXP) {
		snprintf(f->p[f->n].db, sizeof f->p[0].db, "%s", p->db);
		snprintf(f->p[f->n].repo, sizeof f->p[0].repo, "%s", p->repo);
		snprintf(f->p[f->n].key, sizeof f->p[0].key, "%s", p->key);
		snprintf(f->p[f->n].what, sizeof f->p[0].what, "%s", p->what);
		snprintf(f->p[f->n].why, sizeof f->p[0].why, "%s", p->why);
	}
	f->n++;
	if (getenv("MFS_TEST_VERBOSE"))
		fprintf(stderr, "  [%s] %s: %s %s (key %s)\n", p->db, p->repo, p->what,
			p->why, p->key);
	return f->stop_after && f->n >= (size_t)f->stop_after;
}

/* The index of the problem in @p db whose what and why hold @p what_sub and
 * @p why_sub, or -1. */
static int has(const found *f, const char *db, const char *repo, const char *what_sub,
	       const char *why_sub)
{
	for (size_t i = 0; i < f->n && i < MAXP; i++)
		if (!strcmp(f->p[i].db, db) && (!repo || !strcmp(f->p[i].repo, repo)) &&
		    (!what_sub || strstr(f->p[i].what, what_sub)) &&
		    (!why_sub || strstr(f->p[i].why, why_sub)))
			return (int)i;
	return -1;
}

static int check_store(fixture *fx, unsigned flags, found *f)
{
	mfs_txn *t;
	memset(f, 0, sizeof *f);
	int rc = mfs_txn_begin(fx->s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	uint64_t n = 0;
	rc = mfs_check_store(t, flags, collect, f, &n);
	mfs_txn_abort(t);
	if (rc == 0 && n != f->n)
		return -1000;
	return rc;
}

static int check_repo(fixture *fx, const char *repo, unsigned flags, found *f)
{
	mfs_txn *t;
	memset(f, 0, sizeof *f);
	int rc = mfs_txn_begin(fx->s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	uint64_t n = 0;
	rc = mfs_check_repo(t, repo, flags, collect, f, &n);
	mfs_txn_abort(t);
	if (rc == 0 && n != f->n)
		return -1000;
	return rc;
}

static int intact(fixture *fx, const char *repo, char *why, size_t cap)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(fx->s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	rc = mfs_check_repo_intact(t, repo, 0, why, cap);
	mfs_txn_abort(t);
	return rc;
}

/* mfs_check_repos_foreach, collected. */
typedef struct repo_seen {
	size_t n;
	struct {
		char repo[256], shown[512], why[1200], line[2048];
		int named, intact;
		uint64_t updated;
	} r[8];
} repo_seen;

static int repo_seen_fn(void *ud, const mfs_check_repo_entry *e)
{
	repo_seen *s = ud;
	if (s->n >= 8)
		return 1;
	snprintf(s->r[s->n].repo, sizeof s->r[0].repo, "%s", e->repo ? e->repo : "");
	snprintf(s->r[s->n].shown, sizeof s->r[0].shown, "%s", e->shown);
	snprintf(s->r[s->n].why, sizeof s->r[0].why, "%s", e->intact ? "" : e->why);
	mfs_check_left_out_line(e, s->r[s->n].line, sizeof s->r[0].line);
	s->r[s->n].named = e->repo != NULL;
	s->r[s->n].intact = e->intact;
	s->r[s->n].updated = e->intact ? e->info.updated : 0;
	s->n++;
	return 0;
}

static int repos_seen(fixture *fx, repo_seen *s)
{
	mfs_txn *t;
	memset(s, 0, sizeof *s);
	int rc = mfs_txn_begin(fx->s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	rc = mfs_check_repos_foreach(t, 0, repo_seen_fn, s);
	mfs_txn_abort(t);
	return rc;
}

static int count_blob(void *ud, const mfs_blob_info *b)
{
	(void)b;
	(*(int *)ud)++;
	return 0;
}

static int blobs_seen(fixture *fx, const char *repo)
{
	mfs_txn *t;
	int n = 0;
	if (mfs_txn_begin(fx->s, MFS_TXN_READ, &t) < 0)
		return -1;
	if (mfs_check_blobs_foreach(t, repo, count_blob, &n) < 0)
		n = -1;
	mfs_txn_abort(t);
	return n;
}

/* ---- the tests ---- */

static void test_clean(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	found f;
	CHECK_EQ_INT(check_store(&fx, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 0);
	CHECK_EQ_INT(check_repo(&fx, BAD, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 0);
	char why[256] = "x";
	CHECK_EQ_INT(intact(&fx, GOOD, why, sizeof why), 1);
	CHECK_EQ_INT(intact(&fx, BAD, why, sizeof why), 1);
	repo_seen rs;
	CHECK_EQ_INT(repos_seen(&fx, &rs), 0);
	CHECK_EQ_INT(rs.n, 3);
	for (size_t i = 0; i < rs.n; i++) {
		CHECK(rs.r[i].intact && rs.r[i].named);
		CHECK_EQ_INT(rs.r[i].updated, 1700000000);
	}
	CHECK_EQ_INT(blobs_seen(&fx, BAD), 2);
	/* a repo with no records at all */
	CHECK_EQ_INT(check_repo(&fx, "models/org/none", 0, &f), 0);
	CHECK_EQ_INT(f.n, 1);
	CHECK(has(&f, "repos", "models/org/none", "repos record", "is missing") >= 0);
	CHECK_EQ_INT(intact(&fx, "models/org/none", why, sizeof why), 0);
	fixture_close(&fx);
}

static void test_file_names_no_blob(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	REQUIRE(put_file_rec(fx.s, BAD, C1, "config.json", ETAG_NONE, 0444) == 0);
	found f;
	CHECK_EQ_INT(check_repo(&fx, BAD, 0, &f), 0);
	CHECK_EQ_INT(f.n, 1);
	int i = has(&f, "files", BAD, "files record for config.json of commit " C1,
		    "names blob " ETAG_NONE ", which is not stored");
	CHECK(i >= 0);
	if (i >= 0)
		CHECK(strcmp(f.p[i].key, BAD "\\x00" C1 "\\x00config.json") == 0);
	CHECK_EQ_INT(check_store(&fx, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 1);
	CHECK(has(&f, "files", BAD, "config.json", ETAG_NONE) >= 0);
	CHECK_EQ_INT(check_repo(&fx, GOOD, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 0);
	CHECK_EQ_INT(check_repo(&fx, BADX, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 0);

	char why[512];
	CHECK_EQ_INT(intact(&fx, BAD, why, sizeof why), 0);
	CHECK(strncmp(why, "its files record for config.json of commit " C1, 60) == 0);
	CHECK(strstr(why, "names blob " ETAG_NONE ", which is not stored") != NULL);
	CHECK_EQ_INT(intact(&fx, GOOD, why, sizeof why), 1);
	/* a short buffer is cut, never overrun */
	char small[8];
	CHECK_EQ_INT(intact(&fx, BAD, small, sizeof small), 0);
	CHECK_EQ_INT(strlen(small), 7);

	repo_seen rs;
	CHECK_EQ_INT(repos_seen(&fx, &rs), 0);
	CHECK_EQ_INT(rs.n, 3); /* bad, badx, good: key order */
	CHECK(!strcmp(rs.r[0].repo, BAD) && !rs.r[0].intact);
	CHECK(strstr(rs.r[0].why, "which is not stored") != NULL);
	CHECK(strncmp(rs.r[0].line, BAD " left out: its files record for config.json",
		      55) == 0);
	CHECK(strstr(rs.r[0].line, "modelfs verify") &&
	      strstr(rs.r[0].line, "modelfs rm " BAD));
	CHECK(!strcmp(rs.r[1].repo, BADX) && rs.r[1].intact);
	CHECK(!strcmp(rs.r[2].repo, GOOD) && rs.r[2].intact);
	CHECK(!f.unprintable);
	fixture_close(&fx);
}

static void test_bad_versions(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	char k[512];
	size_t kl;
	kl = key3(k, BAD, C1, "model.safetensors");
	REQUIRE(poke_first(fx.s, DB_FILES, k, kl, 7) == 0);
	kl = key3(k, BAD, C1, NULL);
	REQUIRE(poke_first(fx.s, DB_COMMITS, k, kl, 7) == 0);
	kl = key3(k, BAD, "main", NULL);
	REQUIRE(poke_first(fx.s, DB_REFS, k, kl, 'X') ==
		0); /* refs: 40 hex, no version */
	kl = key3(k, BAD, ETAG_C, NULL);
	REQUIRE(poke_first(fx.s, DB_BLOBS, k, kl, 7) == 0);
	REQUIRE(poke_first(fx.s, DB_REPOS, BAD, strlen(BAD), 7) == 0);
	found f;
	CHECK_EQ_INT(check_store(&fx, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 5);
	CHECK(has(&f, "files", BAD, "files record for model.safetensors",
		  "has record version 7") >= 0);
	CHECK(has(&f, "commits", BAD, "commits record for commit " C1,
		  "has record version 7") >= 0);
	CHECK(has(&f, "refs", BAD, "refs record for ref main", "40-hex commit") >= 0);
	CHECK(has(&f, "blobs", BAD, "blobs record for blob " ETAG_C,
		  "has record version 7") >= 0);
	CHECK(has(&f, "repos", BAD, "repos record", "has record version 7") >= 0);
	CHECK_EQ_INT(check_repo(&fx, BAD, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 5);
	/* the first problem of the repo: its repos record */
	char why[512];
	CHECK_EQ_INT(intact(&fx, BAD, why, sizeof why), 0);
	CHECK(strstr(why, "its repos record has record version 7") == why);
	repo_seen rs;
	CHECK_EQ_INT(repos_seen(&fx, &rs), 0); /* one bad repos record stops nothing */
	CHECK_EQ_INT(rs.n, 3);
	CHECK(!rs.r[0].intact && rs.r[0].named && strstr(rs.r[0].why, "version 7"));
	CHECK(rs.r[1].intact && rs.r[2].intact);
	/* the damaged blob is skipped, the other listed */
	CHECK_EQ_INT(blobs_seen(&fx, BAD), 1);
	CHECK_EQ_INT(blobs_seen(&fx, GOOD), 2);
	/* a record with the right version but the wrong length */
	uint8_t v[MFS_REC_COMMIT_LEN + 3] = {MFS_REC_V1};
	kl = key3(k, GOOD, C1, NULL);
	REQUIRE(put_raw(fx.s, DB_COMMITS, k, kl, v, sizeof v) == 0);
	CHECK_EQ_INT(check_repo(&fx, GOOD, 0, &f), 0);
	CHECK_EQ_INT(f.n, 1);
	CHECK(has(&f, "commits", GOOD, NULL, "is 20 bytes long, not 17") >= 0);
	fixture_close(&fx);
}

static void test_paths_and_names(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	char k[512];
	size_t kl;
	REQUIRE(put_file_rec(fx.s, BAD, C1, "../../escape", ETAG_C, 0444) == 0);
	REQUIRE(put_file_rec(fx.s, BAD, C1, "sub/../../x", ETAG_C, 0444) == 0);
	REQUIRE(put_file_rec(fx.s, BAD, C1, "evil\x1b[31m.json", ETAG_C, 0444) == 0);
	kl = key3(k, BAD, C1, "/etc/passwd");
	REQUIRE(put_raw(fx.s, DB_NOEXIST, k, kl, "", 0) == 0);
	kl = key3(k, BAD, "..", NULL);
	REQUIRE(put_raw(fx.s, DB_REFS, k, kl, C1, 40) == 0);
	kl = key3(k, BAD, "x\x1b[31m", NULL);
	REQUIRE(put_raw(fx.s, DB_REFS, k, kl, C1, 40) == 0);
	/* a repos key that is no repo id, with a terminal escape in it */
	const char *evil = "models/org/e\x1b[2Jvil";
	uint8_t rrec[MFS_REC_REPO_LEN];
	mfs_rec_repo_encode(rrec, 1, 2);
	REQUIRE(put_raw(fx.s, DB_REPOS, evil, strlen(evil), rrec, sizeof rrec) == 0);
	/* a key with the wrong number of parts */
	kl = key3(k, BAD, C1, "a");
	k[kl++] = '\0';
	memcpy(k + kl, "b", 1);
	kl++;
	REQUIRE(put_raw(fx.s, DB_NOEXIST, k, kl, "", 0) == 0);

	found f;
	CHECK_EQ_INT(check_store(&fx, MFS_CHECK_CHUNKS, &f), 0);
	CHECK(!f.unprintable);
	CHECK_EQ_INT(f.n, 8);
	CHECK(has(&f, "files", BAD, "files record for ../../escape",
		  "has a \"..\" component (it would point outside the repo)") >= 0);
	CHECK(has(&f, "files", BAD, "files record for sub/../../x", "\"..\" component") >=
	      0);
	CHECK(has(&f, "files", BAD, "files record for evil\\x1b[31m.json",
		  "holds a control character") >= 0);
	CHECK(has(&f, "noexist", BAD, "noexist record for /etc/passwd", "is absolute") >=
	      0);
	CHECK(has(&f, "refs", BAD, "refs record for ref ..", "has an invalid name") >= 0);
	CHECK(has(&f, "refs", BAD, "refs record for ref x\\x1b[31m",
		  "control character") >= 0);
	CHECK(has(&f, "repos", "models/org/e\\x1b[2Jvil", "repos record",
		  "not a repo id") >= 0);
	int i = has(&f, "noexist", BAD, "noexist record", "key of 4 parts");
	CHECK(i >= 0);
	if (i >= 0)
		CHECK(strcmp(f.p[i].key, BAD "\\x00" C1 "\\x00a\\x00b") == 0);
	CHECK_EQ_INT(check_repo(&fx, BAD, 0, &f), 0);
	CHECK_EQ_INT(f.n, 7);
	CHECK(!f.unprintable);

	repo_seen rs;
	CHECK_EQ_INT(repos_seen(&fx, &rs), 0);
	CHECK_EQ_INT(rs.n, 4);
	int evil_seen = 0;
	for (size_t j = 0; j < rs.n; j++) {
		CHECK(printable(rs.r[j].shown) && printable(rs.r[j].why) &&
		      printable(rs.r[j].line));
		if (!rs.r[j].named) {
			evil_seen = 1;
			CHECK(!rs.r[j].intact);
			CHECK(!strcmp(rs.r[j].shown, "models/org/e\\x1b[2Jvil"));
			CHECK(strstr(rs.r[j].line,
				     "repos record \"models/org/e\\x1b[2Jvil\" left "
				     "out") != NULL);
		}
	}
	CHECK(evil_seen);
	fixture_close(&fx);
}

static void test_dangling(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	char k[512];
	size_t kl;
	kl = key3(k, BAD, "dev", NULL);
	REQUIRE(put_raw(fx.s, DB_REFS, k, kl, C2, 40) == 0);
	REQUIRE(put_file_rec(fx.s, BAD, C2, "config.json", ETAG_C, 0444) == 0);
	kl = key3(k, BAD, C1, "x.json");
	REQUIRE(put_raw(fx.s, DB_NOEXIST, k, kl, "x", 1) == 0);
	kl = key3(k, BAD, "1234", NULL);
	uint8_t crec[MFS_REC_COMMIT_LEN];
	mfs_rec_commit_encode(crec, 1, 0);
	REQUIRE(put_raw(fx.s, DB_COMMITS, k, kl, crec, sizeof crec) == 0);
	found f;
	CHECK_EQ_INT(check_repo(&fx, BAD, 0, &f), 0);
	CHECK_EQ_INT(f.n, 4);
	CHECK(has(&f, "refs", BAD, "ref dev",
		  "names commit " C2 ", which the repo does not have") >= 0);
	CHECK(has(&f, "files", BAD, "config.json of commit " C2,
		  "is in commit " C2 ", which the repo does not have") >= 0);
	CHECK(has(&f, "noexist", BAD, "x.json", "holds 1 bytes") >= 0);
	CHECK(has(&f, "commits", BAD, "commit 1234", "not 40 lower-case hex") >= 0);
	fixture_close(&fx);
}

static void test_tensors(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	mfs_tensor_info ti = {.name = "c.weight",
			      .dtype = MFS_DT_U8,
			      .ndim = 1,
			      .shape = {WCHUNK},
			      .data_off = 0,
			      .raw_len = WCHUNK,
			      .codec = MFS_CODEC_RAW,
			      .first_extent = 2,
			      .n_extents = 5};
	uint8_t v[MFS_REC_TENSOR_MAX];
	size_t vl;
	REQUIRE(mfs_rec_tensor_encode(v, &ti, &vl) == 0);
	char k[512];
	size_t kl = key3(k, BAD, ETAG_W, "c.weight");
	REQUIRE(put_raw(fx.s, DB_TENSORS, k, kl, v, vl) == 0);
	ti.first_extent = 0;
	ti.n_extents = 1;
	ti.data_off = NWCHUNK * WCHUNK - 10; /* its bytes run past the blob's end */
	REQUIRE(mfs_rec_tensor_encode(v, &ti, &vl) == 0);
	kl = key3(k, BAD, ETAG_W, "d.weight");
	REQUIRE(put_raw(fx.s, DB_TENSORS, k, kl, v, vl) == 0);
	kl = key3(k, BAD, ETAG_NONE, "c.weight");
	REQUIRE(put_raw(fx.s, DB_TENSORS, k, kl, v, vl) == 0);
	kl = key3(k, BAD, ETAG_W, "a.weight");
	REQUIRE(poke_first(fx.s, DB_TENSORS, k, kl, 9) == 0);
	found f;
	CHECK_EQ_INT(check_repo(&fx, BAD, 0, &f), 0);
	CHECK_EQ_INT(f.n, 4);
	CHECK(has(&f, "tensors", BAD, "tensor c.weight of blob " ETAG_W,
		  "names extents 2 to 7, but its blob has 3") >= 0);
	CHECK(has(&f, "tensors", BAD, "tensor d.weight", "past the end of its blob") >=
	      0);
	CHECK(has(&f, "tensors", BAD, "of blob " ETAG_NONE,
		  "belongs to blob " ETAG_NONE ", which is not stored") >= 0);
	CHECK(has(&f, "tensors", BAD, "tensor a.weight", "has record version 9") >= 0);
	fixture_close(&fx);
}

static void test_chunks_and_counts(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	/* chunk 0 of BAD's weights is gone; chunk 1 counts 0 uses, chunk 2 five */
	REQUIRE(del_raw(fx.s, DB_CHUNKS, fx.wkeys[0].b, 16) == 0);
	uint8_t n8[8];
	mfs_put_le64(n8, 0);
	REQUIRE(put_raw(fx.s, DB_CHUNKREFS, fx.wkeys[1].b, 16, n8, 8) == 0);
	mfs_put_le64(n8, 5);
	REQUIRE(put_raw(fx.s, DB_CHUNKREFS, fx.wkeys[2].b, 16, n8, 8) == 0);
	found f;
	/* without MFS_CHECK_CHUNKS the repo's records are fine */
	CHECK_EQ_INT(check_repo(&fx, BAD, 0, &f), 0);
	CHECK_EQ_INT(f.n, 0);
	CHECK_EQ_INT(check_repo(&fx, BAD, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 1);
	char hex[33];
	mfs_chunk_key_hex(&fx.wkeys[0], hex);
	int i = has(&f, "blobs", BAD, "blob " ETAG_W, "names chunk ");
	CHECK(i >= 0);
	if (i >= 0)
		CHECK(strstr(f.p[i].why, hex) && strstr(f.p[i].why, "extent 0 of 3") &&
		      strstr(f.p[i].why, "which is not stored"));
	CHECK_EQ_INT(check_store(&fx, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 4);
	CHECK(has(&f, "blobs", BAD, "blob " ETAG_W, hex) >= 0);
	i = has(&f, "chunkrefs", "", hex, "counts 1 uses of a chunk that is not stored");
	CHECK(i >= 0);
	if (i >= 0)
		CHECK(!strcmp(f.p[i].key, hex));
	CHECK(has(&f, "chunkrefs", "", mfs_chunk_key_hex(&fx.wkeys[1], hex),
		  "counts 0 uses, but 1 blob extents and chunk references use the chunk") >= 0);
	CHECK(has(&f, "chunkrefs", "", mfs_chunk_key_hex(&fx.wkeys[2], hex),
		  "counts 5 uses, but only 1 blob extents") >= 0);
	/* a chunk with no count */
	REQUIRE(del_raw(fx.s, DB_CHUNKREFS, fx.wkeys[1].b, 16) == 0);
	CHECK_EQ_INT(check_store(&fx, 0, &f), 0);
	CHECK_EQ_INT(f.n, 3);
	CHECK(has(&f, "chunks", "", mfs_chunk_key_hex(&fx.wkeys[1], hex),
		  "has no chunkrefs record") >= 0);
	/* stop at the first: the callback's value comes back */
	memset(&f, 0, sizeof f);
	f.stop_after = 1;
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	CHECK_EQ_INT(mfs_check_store(t, MFS_CHECK_CHUNKS, collect, &f, NULL), 1);
	mfs_txn_abort(t);
	CHECK_EQ_INT(f.n, 1);
	fixture_close(&fx);
}

static void test_records_of_no_repo(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	REQUIRE(del_raw(fx.s, DB_REPOS, BAD, strlen(BAD)) == 0);
	uint8_t g[4] = {1, 2, 3, 4};
	REQUIRE(put_raw(fx.s, DB_META, "generation", 10, g, sizeof g) == 0);
	found f;
	CHECK_EQ_INT(check_store(&fx, MFS_CHECK_CHUNKS, &f), 0);
	/* BAD's commit, ref, 3 files, marker; the meta record.  Its 2 blobs and 2
	 * tensors are what an ingest killed before publishing leaves: garbage
	 * for gc, not damage */
	CHECK_EQ_INT(f.n, 7);
	CHECK(has(&f, "blobs", BAD, "", "") < 0);
	CHECK(has(&f, "tensors", BAD, "", "") < 0);
	CHECK(has(&f, "meta", "", "meta record generation", "is 4 bytes long, not 8") >=
	      0);
	size_t orphans = 0;
	for (size_t i = 0; i < f.n; i++)
		if (strstr(f.p[i].why,
			   "belongs to repo " BAD ", which has no repos record") &&
		    !strcmp(f.p[i].repo, BAD))
			orphans++;
	CHECK_EQ_INT(orphans, 6);
	CHECK_EQ_INT(check_repo(&fx, BAD, 0, &f), 0);
	CHECK_EQ_INT(f.n, 1);
	CHECK(has(&f, "repos", BAD, "repos record", "is missing") >= 0);
	repo_seen rs;
	CHECK_EQ_INT(repos_seen(&fx, &rs), 0);
	CHECK_EQ_INT(rs.n, 2);
	fixture_close(&fx);
}

/* The packs: a chunk's entry damaged, a chunk naming a pack with no record,
 * a pack record whose counts do not add up, a pack file cut short. */
static void test_pack_entries(void)
{
	fixture fx;
	REQUIRE(fixture_open(&fx) == 0);
	found f;
	CHECK_EQ_INT(check_store(&fx, MFS_CHECK_CHUNKS, &f), 0);
	CHECK_EQ_INT(f.n, 0);
	mfs_txn *t;
	mfs_chunk_view v0, v1;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	REQUIRE(mfs_chunk_get(t, &fx.wkeys[0], &v0) == 0 &&
		mfs_chunk_get(t, &fx.wkeys[1], &v1) == 0);
	mfs_txn_abort(t);
	REQUIRE(v0.in_pack && v1.in_pack);
	char path[4200], hex[33];
	mfs_pack_path(fx.s, v0.loc.pack, path, sizeof path);
	/* chunk 0's entry header names another key */
	int fd = open(path, O_WRONLY);
	REQUIRE(fd >= 0);
	REQUIRE(pwrite(fd, fx.wkeys[2].b, 16, (off_t)v0.loc.off + 8) == 16);
	close(fd);
	CHECK_EQ_INT(check_store(&fx, 0, &f), 0);
	CHECK_EQ_INT(f.n, 1);
	int i = has(&f, "chunks", "", mfs_chunk_key_hex(&fx.wkeys[0], hex),
		    "has a damaged payload entry: in pack file ");
	CHECK(i >= 0);
	if (i >= 0)
		CHECK(strstr(f.p[i].why, mfs_chunk_key_hex(&fx.wkeys[2], hex)) != NULL);
	/* the pack's record gone: chunks name a pack without one */
	uint8_t kb[8];
	for (int b = 0; b < 8; b++)
		kb[b] = (uint8_t)(v1.loc.pack >> (56 - 8 * b));
	MDB_val k = {8, kb}, v;
	REQUIRE(mfs_txn_begin(fx.s, MFS_TXN_READ, &t) == 0);
	REQUIRE(mdb_get(t->txn, DBI(t, DB_PACKS), &k, &v) == 0);
	uint8_t rec[MFS_REC_PACK_LEN];
	memcpy(rec, v.mv_data, sizeof rec);
	mfs_txn_abort(t);
	REQUIRE(del_raw(fx.s, DB_PACKS, kb, 8) == 0);
	CHECK_EQ_INT(check_store(&fx, 0, &f), 0);
	CHECK(has(&f, "chunks", "", mfs_chunk_key_hex(&fx.wkeys[1], hex),
		  "which has no packs record") >= 0);
	/* back, but counting one byte too many */
	mfs_pack_rec pr;
	REQUIRE(mfs_rec_pack_decode(rec, sizeof rec, &pr) == 0);
	pr.live_bytes++;
	mfs_rec_pack_encode(rec, &pr);
	REQUIRE(put_raw(fx.s, DB_PACKS, kb, 8, rec, sizeof rec) == 0);
	CHECK_EQ_INT(check_store(&fx, 0, &f), 0);
	CHECK(has(&f, "packs", "", "", "bytes of entries were written") >= 0);
	/* the file cut short of what the record says was written */
	pr.live_bytes--;
	mfs_rec_pack_encode(rec, &pr);
	REQUIRE(put_raw(fx.s, DB_PACKS, kb, 8, rec, sizeof rec) == 0);
	mfs_store_close(fx.s);
	REQUIRE(truncate(path, (off_t)v1.loc.off + 40) == 0);
	REQUIRE(mfs_store_open(fx.dir, 0, &fx.s, NULL) == 0);
	CHECK_EQ_INT(check_store(&fx, 0, &f), 0);
	CHECK(has(&f, "packs", "", "", "which holds ") >= 0);
	/* chunk 1's header is whole (the pack's record tells the rest); the
	 * chunks after it have none */
	CHECK(has(&f, "chunks", "", mfs_chunk_key_hex(&fx.wkeys[2], hex),
		  "ends 0 bytes into the entry") >= 0);
	fixture_close(&fx);
}

int main(void)
{
	seed = test_seed();
	RUN(test_clean);
	RUN(test_file_names_no_blob);
	RUN(test_bad_versions);
	RUN(test_paths_and_names);
	RUN(test_dangling);
	RUN(test_tensors);
	RUN(test_chunks_and_counts);
	RUN(test_records_of_no_repo);
	RUN(test_pack_entries);
	return test_report();
}
