/*
 * test_layout.c - the hub-cache tree over a real store (fs/layout.c), and the
 * cached read path (fs/reader.c + fs/cache.c): names, link targets, modes,
 * nlink, stable inode numbers across refreshes, removal, exact reads from
 * many threads, zero-copy segments, a corrupt chunk, an open file that
 * outlives rm + gc, and the blob table (views, entries by inode); damaged
 * repos left out whole, each with one line, the others served.  Meant to run
 * under ThreadSanitizer too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob_table.h"
#include "bytes.h"
#include "cache.h"
#include "layout.h"
#include "prefetch_model.h"
#include "reader.h"
#include "sha256.h"
#include "records.h"
#include "store.h"
#include "store_internal.h"
#include "store_raw.h"
#include "testhelp.h"

static uint64_t seed;
static char dir[64];

#define C1	 "1111111111111111111111111111111111111111"
#define C2	 "2222222222222222222222222222222222222222"
#define ETAG_W	 "aa00000000000000000000000000000000000000000000000000000000000001"
#define ETAG_CFG "bb00000000000000000000000000000000000002"
#define ETAG_BAD "cc00000000000000000000000000000000000000000000000000000000000003"
#define ETAG_BIG "dd00000000000000000000000000000000000000000000000000000000000004"

/* The weight file: chunks of uneven sizes, cut at "tensor" starts. */
static const size_t wlens[] = {8 + 120, 65536, 65536, 1000, 131072, 3, 70000};
#define NW (sizeof(wlens) / sizeof(wlens[0]))
static uint8_t *wfile;
static size_t wsize;
static mfs_extent wext[NW];

static int put_chunk(mfs_txn *t, const void *raw, size_t len, mfs_codec_id codec,
		     mfs_chunk_key *key, const void *lie)
{
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws) < 0)
		return -ENOMEM;
	size_t cap = mfs_codec_bound_max(len), n = 0;
	uint8_t *enc = malloc(cap);
	mfs_encode_params p = {0};
	/* @lie: store these bytes under the key of @raw (a corrupt chunk) */
	int rc = mfs_codec_encode(codec, &p, lie ? lie : raw, len, enc, cap, &n, ws);
	mfs_chunk_key_of(raw, len, key);
	if (rc == 0)
		rc = mfs_chunk_put(t, key, &(mfs_chunk_meta){.codec = codec, .raw_len = (uint32_t)len}, enc, n, NULL);
	free(enc);
	mfs_codec_ws_free(ws);
	return rc;
}

/* The stored bytes put_blob's records count: not the size, so that what
 * du is told (disk_bytes) is seen to come from the record. */
#define STORED_OF(size) ((size) / 3 + 7)

static int put_blob(mfs_txn *t, const char *repo, const char *etag, const uint8_t *data,
		    const size_t *lens, size_t n, mfs_extent *ext, int corrupt_idx)
{
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t *lie = NULL;
		if ((int)i == corrupt_idx) {
			lie = malloc(lens[i]);
			memcpy(lie, data + off, lens[i]);
			lie[lens[i] / 2] ^= 0x40;
		}
		int rc =
		    put_chunk(t, data + off, lens[i],
			      i % 2 ? MFS_CODEC_ZSTD : MFS_CODEC_RAW, &ext[i].key, lie);
		free(lie);
		if (rc < 0)
			return rc;
		ext[i].off = off;
		ext[i].len = (uint32_t)lens[i];
		off += lens[i];
	}
	mfs_blob_rec b = {.etag = etag,
			  .size = off,
			  .stored_bytes = STORED_OF(off),
			  .n_extents = n,
			  .extents = ext};
	return mfs_blob_put(t, repo, &b, NULL);
}

static const char cfg_text[] = "{\"model_type\": \"bert\"}";

static int publish_repo(mfs_store *s, const char *repo, const char *commit, int with_bad)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_extent cext[1], bext[2];
	size_t clen[1] = {sizeof(cfg_text) - 1};
	static const size_t blens[2] = {4096, 4096};
	static uint8_t bad[8192];
	uint64_t bs = 42; /* two different chunks (a periodic pattern would dedup) */
	for (size_t i = 0; i < sizeof(bad); i++)
		bad[i] = (uint8_t)(test_rand(&bs) >> 56);
	mfs_file_rec files[4] = {
	    {"model.safetensors", ETAG_W, 0444},
	    {"config.json", ETAG_CFG, 0444},
	    {"1_Pooling/deep/config.json", ETAG_CFG, 0444},
	    {"bad.bin", ETAG_BAD, 0444},
	};
	const char *noexist[] = {"adapter_config.json", "sub/x.json"};
	const char *refs[] = {"main", "refs/pr/1"};
	if ((rc = put_blob(t, repo, ETAG_W, wfile, wlens, NW, wext, -1)) < 0 ||
	    (rc = put_blob(t, repo, ETAG_CFG, (const uint8_t *)cfg_text, clen, 1, cext,
			   -1)) < 0 ||
	    (with_bad &&
	     (rc = put_blob(t, repo, ETAG_BAD, bad, blens, 2, bext, 1)) < 0) ||
	    (rc = mfs_snapshot_publish(t, repo, commit, 1700000000, files,
				       with_bad ? 4 : 3, noexist, 2, refs, 2, NULL)) <
		0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

static int setup(mfs_store **s)
{
	snprintf(dir, sizeof(dir), "/tmp/mfs-test-layout-XXXXXX");
	if (!mkdtemp(dir))
		return -errno;
	int rc = mfs_store_open(dir, MFS_STORE_CREATE, s, NULL);
	if (rc < 0)
		return rc; /* the real reason: `./run test` retries on ENOMEM */
	wsize = 0;
	for (size_t i = 0; i < NW; i++)
		wsize += wlens[i];
	wfile = malloc(wsize);
	for (size_t i = 0; i < wsize; i++)
		wfile[i] = (uint8_t)(test_rand(&seed) >> 60); /* compressible */
	return publish_repo(*s, "models/org/a", C1, 1);
}

static void cleanup(mfs_store *s)
{
	mfs_store_close(s);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(wfile);
}

/* Walk a '/'-separated path from the root. */
static int walk(mfs_layout *l, const char *path, mfs_layout_attr *a)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", path);
	uint64_t ino = MFS_LAYOUT_ROOT_INO;
	int rc = mfs_layout_getattr(l, ino, a);
	for (char *save, *p = strtok_r(buf, "/", &save); p && rc == 0;
	     p = strtok_r(NULL, "/", &save)) {
		rc = mfs_layout_lookup(l, ino, p, a);
		ino = a->ino;
	}
	return rc;
}

static void test_tree(mfs_store *s)
{
	mfs_layout *l;
	mfs_errmsg err = {0};
	REQUIRE(mfs_layout_create(s, 1000, &l, &err) == 0);
	mfs_layout_attr a, b;
	CHECK_EQ_INT(mfs_layout_getattr(l, MFS_LAYOUT_ROOT_INO, &a), 0);
	CHECK_EQ_INT(a.mode, S_IFDIR | 0555);
	CHECK_EQ_INT(a.nlink, 3);
	CHECK_EQ_INT(walk(l, "models--org--a", &a), 0);
	CHECK_EQ_INT(a.mode, S_IFDIR | 0555);
	CHECK_EQ_INT(a.nlink, 2 + 4); /* blobs refs snapshots .no_exist */

	CHECK_EQ_INT(walk(l, "models--org--a/refs/main", &a), 0);
	CHECK_EQ_INT(a.mode, S_IFREG | 0444);
	CHECK_EQ_INT(a.size, 40);
	CHECK_EQ_INT(a.disk_bytes, 40); /* not a blob: its size */
	CHECK_EQ_INT(a.mtime, 1700000000);
	mfs_layout_file lf;
	CHECK_EQ_INT(mfs_layout_open(l, a.ino, &lf), 0);
	CHECK(!lf.is_blob && lf.data_len == 40 && memcmp(lf.data, C1, 40) == 0);
	CHECK_EQ_INT(walk(l, "models--org--a/refs/refs/pr/1", &a), 0);

	char target[256];
	CHECK_EQ_INT(walk(l, "models--org--a/snapshots/" C1 "/model.safetensors", &a), 0);
	CHECK_EQ_INT(a.mode, S_IFLNK | 0777);
	CHECK_EQ_INT(mfs_layout_readlink(l, a.ino, target, sizeof(target)), 0);
	CHECK(strcmp(target, "../../blobs/" ETAG_W) == 0);
	CHECK_EQ_INT(a.size, strlen(target));
	CHECK_EQ_INT(a.disk_bytes, a.size);
	CHECK_EQ_INT(
	    walk(l, "models--org--a/snapshots/" C1 "/1_Pooling/deep/config.json", &a), 0);
	CHECK_EQ_INT(mfs_layout_readlink(l, a.ino, target, sizeof(target)), 0);
	CHECK(strcmp(target, "../../../../blobs/" ETAG_CFG) == 0);
	CHECK_EQ_INT(mfs_layout_readlink(l, a.ino, target, 5), MFS_E_NOSPACE);

	CHECK_EQ_INT(walk(l, "models--org--a/blobs/" ETAG_W, &a), 0);
	CHECK_EQ_INT(a.mode, S_IFREG | 0444);
	CHECK_EQ_INT(a.size, wsize);
	/* du counts what the blob record stores, not the size */
	CHECK_EQ_INT(a.disk_bytes, STORED_OF(wsize));
	CHECK(a.immutable);
	CHECK_EQ_INT(mfs_layout_open(l, a.ino, &lf), 0);
	CHECK(lf.is_blob && strcmp(lf.repo, "models/org/a") == 0 &&
	      strcmp(lf.etag, ETAG_W) == 0);
	CHECK(!lf.is_config);
	/* the weights are not a config: no model files to prefetch */
	mfs_layout_file mf[4];
	size_t nmf = 99;
	CHECK_EQ_INT(mfs_layout_model_files(l, a.ino, mf, 4, &nmf), 0);
	CHECK_EQ_INT(nmf, 0);
	/* the config blob (named config.json at the top and in 1_Pooling/deep):
	 * the weights beside the top one, once */
	CHECK_EQ_INT(walk(l, "models--org--a/blobs/" ETAG_CFG, &a), 0);
	CHECK_EQ_INT(mfs_layout_open(l, a.ino, &lf), 0);
	CHECK(lf.is_blob && lf.is_config);
	CHECK_EQ_INT(mfs_layout_model_files(l, a.ino, mf, 4, &nmf), 0);
	CHECK_EQ_INT(nmf, 1);
	CHECK(mf[0].is_blob && strcmp(mf[0].repo, "models/org/a") == 0 &&
	      strcmp(mf[0].etag, ETAG_W) == 0 && mf[0].size == wsize);
	CHECK_EQ_INT(mfs_layout_model_files(l, a.ino, mf, 0, &nmf), 0);
	CHECK_EQ_INT(nmf, 0);
	/* a snapshot link and a directory have none; a missing node is an error */
	CHECK_EQ_INT(walk(l, "models--org--a/snapshots/" C1 "/config.json", &a), 0);
	CHECK_EQ_INT(mfs_layout_model_files(l, a.ino, mf, 4, &nmf), 0);
	CHECK_EQ_INT(nmf, 0);
	CHECK_EQ_INT(mfs_layout_model_files(l, MFS_LAYOUT_ROOT_INO, mf, 4, &nmf), 0);
	CHECK_EQ_INT(nmf, 0);
	CHECK_EQ_INT(mfs_layout_model_files(l, 12345, mf, 4, &nmf), MFS_E_NOTFOUND);

	CHECK_EQ_INT(walk(l, "models--org--a/.no_exist/" C1 "/adapter_config.json", &a),
		     0);
	CHECK_EQ_INT(a.mode, S_IFREG | 0444);
	CHECK_EQ_INT(a.size, 0);
	CHECK_EQ_INT(walk(l, "models--org--a/.no_exist/" C1 "/sub/x.json", &a), 0);

	/* errors */
	CHECK_EQ_INT(walk(l, "models--org--a/nope", &a), MFS_E_NOTFOUND);
	CHECK_EQ_INT(walk(l, "models--org--a/refs/main/x", &a), -ENOTDIR);
	CHECK_EQ_INT(walk(l, "models--org--a/blobs", &a), 0);
	CHECK_EQ_INT(mfs_layout_open(l, a.ino, &lf), -EISDIR);
	CHECK_EQ_INT(mfs_layout_readlink(l, a.ino, target, sizeof(target)), -EINVAL);
	CHECK_EQ_INT(mfs_layout_getattr(l, 12345, &a), MFS_E_NOTFOUND);

	/* listing: . and .. first, then sorted names */
	CHECK_EQ_INT(walk(l, "models--org--a", &a), 0);
	mfs_layout_dir *d;
	CHECK_EQ_INT(mfs_layout_opendir(l, a.ino, &d), 0);
	const char *want[] = {".", "..", ".no_exist", "blobs", "refs", "snapshots"};
	CHECK_EQ_INT(mfs_layout_dir_count(d), 6);
	for (size_t i = 0; i < 6; i++) {
		const char *name;
		CHECK_EQ_INT(mfs_layout_dir_entry(d, i, &name, &b), 0);
		CHECK(strcmp(name, want[i]) == 0);
	}
	const char *name;
	CHECK_EQ_INT(mfs_layout_dir_entry(d, 1, &name, &b), 0);
	CHECK_EQ_INT(b.ino, MFS_LAYOUT_ROOT_INO);
	CHECK_EQ_INT(mfs_layout_dir_entry(d, 6, &name, &b), MFS_E_NOTFOUND);
	mfs_layout_dir_close(l, d);

	mfs_layout_totals tot;
	mfs_layout_totals_get(l, &tot);
	CHECK_EQ_INT(tot.repos, 1);
	CHECK_EQ_INT(tot.blob_bytes, wsize + sizeof(cfg_text) - 1 + 8192);
	CHECK_EQ_INT(tot.blobs, 3);
	CHECK_EQ_INT(tot.blob_stored,
		     STORED_OF(wsize) + STORED_OF(sizeof(cfg_text) - 1) + STORED_OF(8192));

	/* refresh: a new repo appears, inode numbers keep their meaning */
	mfs_layout_attr before;
	CHECK_EQ_INT(walk(l, "models--org--a/blobs/" ETAG_W, &before), 0);
	CHECK_EQ_INT(mfs_layout_opendir(l, MFS_LAYOUT_ROOT_INO, &d), 0);
	CHECK_EQ_INT(mfs_layout_dir_count(d), 3);
	CHECK_EQ_INT(publish_repo(s, "models/org/b", C2, 0), 0);
	int changed = 0;
	CHECK_EQ_INT(mfs_layout_refresh(l, 1, &changed), 0);
	CHECK(changed);
	CHECK_EQ_INT(mfs_layout_dir_count(d), 3); /* an open listing keeps its version */
	mfs_layout_dir_close(l, d);
	CHECK_EQ_INT(walk(l, "models--org--b/snapshots/" C2 "/config.json", &a), 0);
	CHECK_EQ_INT(walk(l, "models--org--a/blobs/" ETAG_W, &a), 0);
	CHECK_EQ_INT(a.ino, before.ino);
	CHECK_EQ_INT(mfs_layout_refresh(l, 1, &changed), 0);
	CHECK(!changed);
	/* the same path in another repo is another inode */
	CHECK_EQ_INT(walk(l, "models--org--b/blobs/" ETAG_W, &b), 0);
	CHECK(b.ino != a.ino);

	/* removal */
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_repo_remove(t, "models/org/b"), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	CHECK_EQ_INT(mfs_layout_refresh(l, 1, &changed), 0);
	CHECK(changed);
	CHECK_EQ_INT(walk(l, "models--org--b", &a), MFS_E_NOTFOUND);
	CHECK_EQ_INT(mfs_layout_getattr(l, b.ino, &a), MFS_E_NOTFOUND);
	CHECK_EQ_INT(walk(l, "models--org--a/blobs/" ETAG_W, &a), 0);
	mfs_layout_free(l);
	mfs_layout_free(NULL);

	char name_buf[8];
	CHECK_EQ_INT(mfs_layout_repo_dirname("models/org/name", target, sizeof(target)),
		     0);
	CHECK(strcmp(target, "models--org--name") == 0);
	CHECK_EQ_INT(mfs_layout_repo_dirname("datasets/x", target, sizeof(target)), 0);
	CHECK(strcmp(target, "datasets--x") == 0);
	CHECK_EQ_INT(
	    mfs_layout_repo_dirname("models/org/name", name_buf, sizeof(name_buf)),
	    MFS_E_NOSPACE);
}

/* ---- damaged repos ---- */

static int put_file_raw(mfs_store *s, const char *repo, const char *commit,
			const char *path, const char *etag)
{
	char k[512];
	size_t kl = mfs_db_key_join(k, sizeof(k), repo, commit, path);
	uint8_t v[MFS_REC_FILE_MAX];
	size_t vl;
	if (!kl || mfs_rec_file_encode(v, 0444, etag, &vl) < 0)
		return MFS_E_INVAL;
	return put_raw(s, DB_FILES, k, kl, v, vl);
}

typedef struct left_lines {
	int n;
	char repo[8][256];
	char line[8][1024];
} left_lines;

static void left_fn(void *ud, const char *repo, const char *line)
{
	left_lines *l = ud;
	if (l->n < 8) {
		snprintf(l->repo[l->n], sizeof(l->repo[0]), "%s", repo);
		snprintf(l->line[l->n], sizeof(l->line[0]), "%s", line);
	}
	l->n++;
}

static int left_has(const left_lines *l, const char *repo, const char *sub)
{
	for (int i = 0; i < l->n && i < 8; i++)
		if (!strcmp(l->repo[i], repo) && strstr(l->line[i], sub))
			return 1;
	return 0;
}

/* Publish a repo whose two files "x" and "x/y" clash: the checker passes each
 * record, yet "x" cannot be both a link and a folder. */
static int publish_clash(mfs_store *s, const char *repo)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_extent cext[1];
	size_t clen[1] = {sizeof(cfg_text) - 1};
	mfs_file_rec files[3] = {
	    {"config.json", ETAG_CFG, 0444},
	    {"x", ETAG_CFG, 0444},
	    {"x/y", ETAG_CFG, 0444},
	};
	const char *refs[] = {"main"};
	if ((rc = put_blob(t, repo, ETAG_CFG, (const uint8_t *)cfg_text, clen, 1, cext,
			   -1)) < 0 ||
	    (rc = mfs_snapshot_publish(t, repo, C2, 1700000100, files, 3, NULL, 0, refs,
				       1, NULL)) < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

static void test_damaged_repos(void)
{
	char ldir[64];
	snprintf(ldir, sizeof(ldir), "/tmp/mfs-test-layout-dmg-XXXXXX");
	REQUIRE(mkdtemp(ldir) != NULL);
	mfs_store *s;
	REQUIRE(mfs_store_open(ldir, MFS_STORE_CREATE, &s, NULL) == 0);
	REQUIRE(publish_repo(s, "models/org/a", C1, 0) == 0);
	REQUIRE(publish_repo(s, "models/org/b", C1, 0) == 0);
	REQUIRE(publish_repo(s, "models/org/c", C1, 0) == 0);
	/* b: a file names a blob that is not stored; c: its repos record is
	 * from another format version; d: a file's path climbs out of the repo */
	REQUIRE(put_file_raw(s, "models/org/b", C1, "config.json", ETAG_BIG) == 0);
	uint8_t rrec[MFS_REC_REPO_LEN];
	mfs_rec_repo_encode(rrec, 1, 2);
	rrec[0] = 7;
	REQUIRE(put_raw(s, DB_REPOS, "models/org/c", 12, rrec, sizeof(rrec)) == 0);
	REQUIRE(publish_repo(s, "models/org/d", C1, 0) == 0);
	REQUIRE(put_file_raw(s, "models/org/d", C1, "../../escape", ETAG_CFG) == 0);

	mfs_layout *l;
	mfs_errmsg err = {0};
	REQUIRE(mfs_layout_create(s, 1000, &l, &err) ==
		0); /* one bad repo stops nothing */
	left_lines ll = {0};
	mfs_layout_set_left_out_fn(l, left_fn, &ll);
	CHECK_EQ_INT(ll.n, 3);
	CHECK(left_has(
	    &ll, "models/org/b",
	    "models/org/b left out: its files record for config.json of commit " C1
	    " names blob " ETAG_BIG ", which is not stored (run `modelfs verify`"));
	CHECK(left_has(&ll, "models/org/c",
		       "models/org/c left out: its repos record has record version 7"));
	CHECK(left_has(&ll, "models/org/d",
		       "its files record for ../../escape of commit " C1
		       " has a path that has a \"..\" component"));
	mfs_layout_attr a;
	CHECK_EQ_INT(walk(l, "models--org--a/snapshots/" C1 "/config.json", &a), 0);
	CHECK_EQ_INT(walk(l, "models--org--a/refs/main", &a), 0);
	CHECK_EQ_INT(walk(l, "models--org--b", &a), MFS_E_NOTFOUND);
	CHECK_EQ_INT(walk(l, "models--org--c", &a), MFS_E_NOTFOUND);
	CHECK_EQ_INT(walk(l, "models--org--d", &a), MFS_E_NOTFOUND);
	mfs_layout_totals tot;
	mfs_layout_totals_get(l, &tot);
	CHECK_EQ_INT(tot.repos, 1);
	CHECK_EQ_INT(tot.repos_left_out, 3);
	mfs_layout_dir *d;
	CHECK_EQ_INT(mfs_layout_opendir(l, MFS_LAYOUT_ROOT_INO, &d), 0);
	CHECK_EQ_INT(mfs_layout_dir_count(d), 3); /* . .. models--org--a */
	mfs_layout_dir_close(l, d);

	/* a new repo: the tree is rebuilt, the same repos are not told again */
	REQUIRE(publish_repo(s, "models/org/e", C1, 0) == 0);
	int changed = 0;
	CHECK_EQ_INT(mfs_layout_refresh(l, 1, &changed), 0);
	CHECK(changed);
	CHECK_EQ_INT(ll.n, 3);
	CHECK_EQ_INT(walk(l, "models--org--e/snapshots/" C1 "/model.safetensors", &a), 0);
	mfs_layout_attr blob_e;
	CHECK_EQ_INT(walk(l, "models--org--e/blobs/" ETAG_W, &blob_e), 0);
	mfs_layout_totals_get(l, &tot);
	uint64_t nodes_before = tot.nodes;

	/* a repo that fails half-way through its layout leaves nothing behind */
	REQUIRE(publish_clash(s, "models/org/f") == 0);
	CHECK_EQ_INT(mfs_layout_refresh(l, 1, &changed), 0);
	CHECK(changed);
	CHECK_EQ_INT(ll.n, 4);
	CHECK(left_has(&ll, "models/org/f",
		       "models/org/f left out: its files record for x/y of commit " C2
		       " cannot be laid out: a file and a folder of the same name"));
	CHECK_EQ_INT(walk(l, "models--org--f", &a), MFS_E_NOTFOUND);
	mfs_layout_totals_get(l, &tot);
	CHECK_EQ_INT(tot.nodes, nodes_before);
	CHECK_EQ_INT(tot.repos, 2);
	CHECK_EQ_INT(tot.repos_left_out, 4);
	/* the inode table was rebuilt: every node of the others is found by number */
	CHECK_EQ_INT(mfs_layout_getattr(l, blob_e.ino, &a), 0);
	CHECK_EQ_INT(a.size, wsize);
	CHECK_EQ_INT(walk(l, "models--org--a/blobs/" ETAG_CFG, &a), 0);
	mfs_layout_attr again;
	CHECK_EQ_INT(mfs_layout_getattr(l, a.ino, &again), 0);
	CHECK_EQ_INT(again.ino, a.ino);
	CHECK_EQ_INT(mfs_layout_opendir(l, MFS_LAYOUT_ROOT_INO, &d), 0);
	CHECK_EQ_INT(mfs_layout_dir_count(d), 4); /* . .. a e */
	const char *name;
	CHECK_EQ_INT(mfs_layout_dir_entry(d, 3, &name, &a), 0);
	CHECK(strcmp(name, "models--org--e") == 0);
	mfs_layout_dir_close(l, d);
	/* a second hook is told about every repo left out now */
	left_lines ll2 = {0};
	mfs_layout_set_left_out_fn(l, left_fn, &ll2);
	CHECK_EQ_INT(ll2.n, 4);
	mfs_layout_set_left_out_fn(l, NULL, NULL);
	mfs_layout_free(l);
	mfs_store_close(s);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ldir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", ldir);
}

/* ---- the cached read path ---- */

typedef struct rd_arg {
	mfs_reader *r;
	mfs_rfile *f;
	uint64_t seed;
	int bad;
} rd_arg;

/* A cache of @p budget bytes with @p workers prefetch workers, and a reader
 * over it that prefetches @p prefetch chunks; 0 or the error (nothing made). */
static int reader_with_cache(mfs_store *s, size_t budget, unsigned workers,
			     unsigned prefetch, mfs_cache **c, mfs_reader **r)
{
	int rc = mfs_cache_create(budget, workers, c);
	if (rc == 0 && (rc = mfs_reader_create(s, *c, r)) < 0)
		mfs_cache_free(*c);
	if (rc == 0)
		mfs_reader_set_prefetch(*r, prefetch);
	return rc;
}

static void *read_worker(void *p)
{
	rd_arg *a = p;
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws) < 0) {
		a->bad++;
		return NULL;
	}
	uint8_t *buf = malloc(wsize + 10);
	uint64_t s = a->seed;
	for (int i = 0; i < 400; i++) {
		uint64_t off;
		size_t len;
		switch (test_rand(&s) % 4) {
		case 0: /* around a chunk boundary */
			off = wext[test_rand(&s) % NW].off;
			off = off > 5 ? off - test_rand(&s) % 5 : off;
			len = 1 + test_rand(&s) % 70000;
			break;
		case 1: /* the last byte, and past the end */
			off = wsize - 1 - test_rand(&s) % 2;
			len = 1 + test_rand(&s) % 10;
			break;
		default:
			off = test_rand(&s) % wsize;
			len = 1 + test_rand(&s) % (wsize - off + 5);
		}
		size_t got;
		size_t want = off >= wsize ? 0 : (len < wsize - off ? len : wsize - off);
		if (i % 2) {
			if (mfs_rfile_read(a->r, a->f, off, buf, len, &got, ws) != 0 ||
			    got != want || memcmp(buf, wfile + off, got) != 0)
				a->bad++;
		} else {
			mfs_read_seg segs[16];
			size_t n;
			int rc = mfs_rfile_read_segs(a->r, a->f, off, len, segs, 16, &n,
						     &got, ws);
			size_t pos = 0;
			for (size_t k = 0; rc == 0 && k < n; k++) {
				if (memcmp(segs[k].data, wfile + off + pos,
					   segs[k].len) != 0)
					a->bad++;
				pos += segs[k].len;
			}
			if (rc != 0 || got != want || pos != want)
				a->bad++;
			mfs_rfile_release_segs(a->r, segs, n, 0);
		}
	}
	free(buf);
	mfs_codec_ws_free(ws);
	return NULL;
}

static void test_reader(mfs_store *s, size_t budget, unsigned workers, unsigned prefetch,
			int with_io)
{
	mfs_cache *c;
	mfs_reader *r;
	mfs_ioahead *io = NULL;
	REQUIRE(reader_with_cache(s, budget, workers, prefetch, &c, &r) == 0);
	if (with_io) {
		REQUIRE(mfs_ioahead_create(&io) == 0);
		mfs_reader_set_ioahead(r, io);
	}
	mfs_rfile *f;
	REQUIRE(mfs_rfile_open(r, "models/org/a", ETAG_W, &f) == 0);
	CHECK_EQ_INT(f->size, wsize);
	enum { N = 8 };
	pthread_t t[N];
	rd_arg a[N];
	for (int i = 0; i < N; i++) {
		a[i] = (rd_arg){r, f, seed + (uint64_t)i * 101, 0};
		pthread_create(&t[i], NULL, read_worker, &a[i]);
	}
	int bad = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		bad += a[i].bad;
	}
	CHECK_EQ_INT(bad, 0);

	/* a corrupt chunk: an error, not bytes; got says where */
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	mfs_rfile *fb;
	REQUIRE(mfs_rfile_open(r, "models/org/a", ETAG_BAD, &fb) == 0);
	uint8_t buf[8192];
	size_t got = 99;
	CHECK_EQ_INT(mfs_rfile_read(r, fb, 0, buf, 4096, &got, ws), 0);
	CHECK_EQ_INT(got, 4096);
	CHECK_EQ_INT(mfs_rfile_read(r, fb, 100, buf, 8000, &got, ws), MFS_E_CORRUPT);
	CHECK_EQ_INT(got, 4096 - 100);
	mfs_read_seg segs[4];
	size_t n;
	CHECK_EQ_INT(mfs_rfile_read_segs(r, fb, 4000, 200, segs, 4, &n, &got, ws),
		     MFS_E_CORRUPT);
	CHECK_EQ_INT(got, 96);
	mfs_rfile_release_segs(r, segs, n, 1);
	CHECK_EQ_INT(mfs_rfile_read_segs(r, f, 0, wsize, segs, 2, &n, &got, ws),
		     MFS_E_NOSPACE);
	CHECK_EQ_INT(n, 0);
	mfs_rfile_close(fb);
	mfs_codec_ws_free(ws);

	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	if (prefetch && workers)
		CHECK(st.prefetch_queued > 0);
	CHECK(st.fill_errors >= 1);
	if (io) {
		/* a sequential pass from the start: the read-ahead asks for every
		 * record of the file (the window is larger than the file) */
		mfs_rfile *fs;
		REQUIRE(mfs_rfile_open(r, "models/org/a", ETAG_W, &fs) == 0);
		mfs_ioahead_stats ist0, ist;
		mfs_ioahead_get_stats(io, &ist0);
		size_t reads = 0;
		REQUIRE(mfs_codec_ws_create(&ws) == 0);
		uint8_t *all = malloc(wsize);
		REQUIRE(all);
		for (uint64_t off = 0; off < wsize; off += got) {
			size_t len = wsize - off > 50000 ? 50000 : (size_t)(wsize - off);
			CHECK_EQ_INT(mfs_rfile_read(r, fs, off, all + off, len, &got, ws), 0);
			CHECK_EQ_INT(got, len);
			reads++;
			if (got != len)
				break;
		}
		CHECK(memcmp(all, wfile, wsize) == 0);
		free(all);
		/* the job runs on the thread (a drain would drop it if waiting) */
		for (int ms = 0; ms < 10000; ms++) {
			if (__atomic_load_n(&fs->io_next, __ATOMIC_RELAXED) == fs->n_extents)
				break;
			usleep(1000);
		}
		mfs_ioahead_drain(io, fs);
		CHECK_EQ_INT(fs->io_next, fs->n_extents);
		mfs_ioahead_get_stats(io, &ist);
		CHECK(ist.runs > ist0.runs);
		/* ... and wakes the thread once per half window, not per read:
		 * here the window holds the whole file, so once, plus the reads
		 * that came before that run had got far enough to be seen (those
		 * replace the waiting job: no wake-up) */
		CHECK(ist.runs - ist0.runs <= 3);
		CHECK((ist.requests - ist.replaced) - (ist0.requests - ist0.replaced) <= 3);
		CHECK(reads > 4);
		mfs_rfile_close(fs);
		mfs_codec_ws_free(ws);
	}
	mfs_rfile_close(f); /* drains the read-ahead of f */
	mfs_reader_free(r);
	mfs_ioahead_free(io);
	mfs_cache_free(c);
}

/*
 * A reader that jumps back (mmap faults of tensors in model order): prefetch
 * does not decode again the extents after the jump that it was served whole,
 * even once drop-behind has recycled them.
 */
static void test_prefetch_skips_served(mfs_store *s)
{
	mfs_cache *c;
	mfs_reader *r;
	mfs_codec_ws *ws;
	REQUIRE(reader_with_cache(s, 64 << 20, 1, 8, &c, &r) == 0);
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	mfs_rfile *f;
	REQUIRE(mfs_rfile_open(r, "models/org/a", ETAG_W, &f) == 0);
	mfs_read_seg segs[NW];
	size_t n, got;
	/* the tail first, then the head: both sequential, both kept */
	uint64_t spans[][2] = {{wext[4].off, wsize}, {0, wext[4].off}};
	for (int k = 0; k < 2; k++) {
		for (uint64_t off = spans[k][0]; off < spans[k][1]; off += got) {
			size_t len = (size_t)(spans[k][1] - off);
			len = len > 50000 ? 50000 : len;
			CHECK_EQ_INT(mfs_rfile_read_segs(r, f, off, len, segs, NW, &n, &got, ws), 0);
			CHECK_EQ_INT(got, len);
			size_t pos = 0;
			for (size_t i = 0; i < n; i++) {
				CHECK(memcmp(segs[i].data, wfile + off + pos, segs[i].len) == 0);
				pos += segs[i].len;
			}
			mfs_rfile_mark_served(f, segs, n);
			mfs_rfile_release_segs(r, segs, n, 1);
		}
		mfs_cache_drain(c, f);
	}
	for (size_t i = 0; i < NW; i++)
		CHECK_EQ_INT(f->served[i], wlens[i]);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	/* the tail pass queues extents 5 and 6, the head pass at most 1, 2, 3:
	 * never one it was served whole (4, 5, 6), though by then drop-behind
	 * has recycled some of them and the window reaches them */
	CHECK(st.prefetch_queued <= 5);
	CHECK(st.drop_behind > 0);   /* ... though spent ones were recycled */
	mfs_rfile_close(f);
	mfs_codec_ws_free(ws);
	mfs_reader_free(r);
	mfs_cache_free(c);
}

/* Wait (up to 10 s) until the workers have done @p n prefetch decodes more than @p base. */
static void wait_fills(mfs_cache *c, uint64_t base, uint64_t n)
{
	mfs_cache_stats st;
	for (int ms = 0; ms < 10000; ms++) {
		mfs_cache_stats_get(c, &st);
		if (st.prefetch_fills + st.prefetch_dropped >= base + n)
			return;
		usleep(1000);
	}
}

/*
 * A file that fits is decoded whole the first time it is read out of order
 * (from the jump to the end, then the start); a larger one is not, nor is a
 * file read at its start only.
 */
static void test_whole_file_on_jump(mfs_store *s)
{
	enum { NB = 6 };
	const size_t mib = (size_t)1 << 20;
	size_t blens[NB];
	mfs_extent bext[NB];
	uint8_t *big = malloc(NB * mib), *buf = malloc(mib);
	REQUIRE(big && buf);
	uint64_t bs = 7;
	for (size_t i = 0; i < NB * mib; i++)
		big[i] = (uint8_t)(test_rand(&bs) >> 60);
	for (size_t i = 0; i < NB; i++)
		blens[i] = mib;
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	if (put_blob(t, "models/org/big", ETAG_BIG, big, blens, NB, bext, -1) < 0) {
		mfs_txn_abort(t);
		REQUIRE(0);
	}
	REQUIRE(mfs_txn_commit(t) == 0);

	mfs_cache *c;
	mfs_reader *r;
	mfs_codec_ws *ws;
	REQUIRE(reader_with_cache(s, 64 << 20, 2, 1, &c, &r) == 0);
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	mfs_cache_stats st0, st;
	mfs_rfile *f;
	size_t got;

	/* too large for the limit: the jump queues nothing */
	mfs_reader_set_whole_file(r, NB * mib - 1);
	REQUIRE(mfs_rfile_open(r, "models/org/big", ETAG_BIG, &f) == 0);
	CHECK_EQ_INT(mfs_rfile_read(r, f, 0, buf, 4096, &got, ws), 0);
	mfs_cache_stats_get(c, &st0);
	CHECK_EQ_INT(mfs_rfile_read(r, f, 4 * mib, buf, 4096, &got, ws), 0);
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.prefetch_queued, st0.prefetch_queued);
	mfs_rfile_close(f);
	mfs_reader_free(r);
	mfs_cache_free(c); /* a fresh cache: nothing decoded yet */
	REQUIRE(reader_with_cache(s, 64 << 20, 2, 1, &c, &r) == 0);
	mfs_reader_set_whole_file(r, NB * mib);

	/* the start only (a header reader): the window, not the file */
	REQUIRE(mfs_rfile_open(r, "models/org/big", ETAG_BIG, &f) == 0);
	CHECK_EQ_INT(mfs_rfile_read(r, f, 0, buf, 4096, &got, ws), 0);
	mfs_cache_stats_get(c, &st);
	CHECK(st.prefetch_queued <= 1);
	/* a jump: everything else is queued, and then every read hits */
	CHECK_EQ_INT(mfs_rfile_read(r, f, 4 * mib + 10, buf, 4096, &got, ws), 0);
	CHECK(memcmp(buf, big + 4 * mib + 10, 4096) == 0);
	mfs_cache_stats_get(c, &st);
	CHECK(st.prefetch_queued >= NB - 2); /* 5, 1..3 (0 and 4 the reader's own) */
	wait_fills(c, 0, st.prefetch_queued);
	mfs_cache_stats_get(c, &st0);
	for (size_t i = NB; i-- > 0;) {
		CHECK_EQ_INT(mfs_rfile_read(r, f, i * mib, buf, mib, &got, ws), 0);
		CHECK_EQ_INT(got, mib);
		CHECK(memcmp(buf, big + i * mib, mib) == 0);
	}
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.misses, st0.misses);
	/* once per file: more jumps queue nothing new */
	uint64_t q = st.prefetch_queued;
	CHECK_EQ_INT(mfs_rfile_read(r, f, 0, buf, 4096, &got, ws), 0);
	CHECK_EQ_INT(mfs_rfile_read(r, f, 5 * mib, buf, 4096, &got, ws), 0);
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.prefetch_queued, q);
	mfs_rfile_close(f);
	mfs_codec_ws_free(ws);
	mfs_reader_free(r);
	mfs_cache_free(c);
	free(big);
	free(buf);
}

/* Wait (up to 10 s) until the set holds no file: their work is done. */
static void wait_reaped(mfs_prefetch_model *p)
{
	mfs_prefetch_model_stats ps;
	for (int ms = 0; ms < 10000; ms++) {
		mfs_prefetch_model_reap(p);
		mfs_prefetch_model_stats_get(p, &ps);
		if (ps.held == 0)
			return;
		usleep(1000);
	}
}

/*
 * prefetch_model: the config blob's model files are decoded whole before
 * anyone reads them (every read then hits), within the budget, each file
 * once while held; freeing the set with work still queued is safe.
 */
static void test_prefetch_model(mfs_store *s)
{
	mfs_layout *l;
	mfs_errmsg err = {0};
	REQUIRE(mfs_layout_create(s, 1000, &l, &err) == 0);
	mfs_layout_attr a;
	REQUIRE(walk(l, "models--org--a/blobs/" ETAG_CFG, &a) == 0);
	mfs_layout_file mf[4];
	size_t nmf, started;
	REQUIRE(mfs_layout_model_files(l, a.ino, mf, 4, &nmf) == 0 && nmf == 1);

	mfs_cache *c;
	mfs_reader *r;
	mfs_codec_ws *ws;
	REQUIRE(reader_with_cache(s, 64 << 20, 2, 1, &c, &r) == 0);
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	mfs_prefetch_model *p;
	mfs_prefetch_model_stats ps;

	/* over the budget: skipped */
	REQUIRE(mfs_prefetch_model_create(r, wsize - 1, &p) == 0);
	CHECK_EQ_INT(mfs_prefetch_model_start(p, mf, nmf, &started), 0);
	CHECK_EQ_INT(started, 0);
	mfs_prefetch_model_stats_get(p, &ps);
	CHECK_EQ_INT(ps.skipped, 1);
	CHECK_EQ_INT(ps.held, 0);
	mfs_prefetch_model_free(p);

	/* within it: every chunk decoded by the workers, then reads only hit */
	REQUIRE(mfs_prefetch_model_create(r, wsize, &p) == 0);
	CHECK_EQ_INT(mfs_prefetch_model_start(p, mf, nmf, &started), 0);
	CHECK_EQ_INT(started, 1);
	/* held still: not started again (done already: started again, and
	 * nothing is decoded twice, checked below) */
	CHECK_EQ_INT(mfs_prefetch_model_start(p, mf, nmf, &started), 0);
	mfs_prefetch_model_stats_get(p, &ps);
	CHECK(started == 0 ? ps.held == 1 : ps.files == 2);
	wait_reaped(p);
	mfs_prefetch_model_stats_get(p, &ps);
	CHECK_EQ_INT(ps.held, 0);
	mfs_cache_stats st0, st;
	mfs_cache_stats_get(c, &st0);
	CHECK_EQ_INT(st0.prefetch_fills, NW);
	CHECK_EQ_INT(st0.misses, 0);
	mfs_rfile *f;
	REQUIRE(mfs_rfile_open(r, "models/org/a", ETAG_W, &f) == 0);
	uint8_t *buf = malloc(wsize);
	size_t got;
	CHECK_EQ_INT(mfs_rfile_read(r, f, 0, buf, wsize, &got, ws), 0);
	CHECK(got == wsize && memcmp(buf, wfile, wsize) == 0);
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.misses, 0);
	CHECK_EQ_INT(st.hits, st0.hits + NW);
	mfs_rfile_close(f);
	/* started again once done: nothing is decoded twice */
	CHECK_EQ_INT(mfs_prefetch_model_start(p, mf, nmf, &started), 0);
	CHECK_EQ_INT(started, 1);
	wait_reaped(p);
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.prefetch_fills, NW);
	mfs_prefetch_model_free(p);
	mfs_reader_free(r);
	mfs_cache_free(c);

	/* freed at once, with the decodes queued or running */
	REQUIRE(reader_with_cache(s, 64 << 20, 1, 1, &c, &r) == 0);
	REQUIRE(mfs_prefetch_model_create(r, wsize, &p) == 0);
	CHECK_EQ_INT(mfs_prefetch_model_start(p, mf, nmf, &started), 0);
	CHECK_EQ_INT(started, 1);
	mfs_prefetch_model_free(p);
	mfs_reader_free(r);
	mfs_cache_free(c);

	/* a file that is gone from the store: an error, nothing held */
	mfs_layout_file gone = mf[0];
	gone.etag[0] = 'f';
	REQUIRE(reader_with_cache(s, 64 << 20, 1, 1, &c, &r) == 0);
	REQUIRE(mfs_prefetch_model_create(r, wsize, &p) == 0);
	CHECK_EQ_INT(mfs_prefetch_model_start(p, &gone, 1, &started), MFS_E_NOTFOUND);
	CHECK_EQ_INT(started, 0);
	mfs_prefetch_model_stats_get(p, &ps);
	CHECK_EQ_INT(ps.held, 0);
	mfs_prefetch_model_free(p);
	mfs_reader_free(r);
	mfs_cache_free(c);
	free(buf);
	mfs_codec_ws_free(ws);
	mfs_layout_free(l);
}

/* `modelfs rm REPO` then `modelfs gc`, as the commands do; gc must free chunks. */
static void remove_and_gc(mfs_store *s, const char *repo)
{
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_repo_remove(t, repo), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	int lock;
	REQUIRE(mfs_store_lock_ingest(s, 1, 1, &lock) == 0);
	mfs_gc_stat gs;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	mfs_store_unlock(lock);
	CHECK(gs.chunks_removed >= 1);
}

/* An open file reads its own snapshot: rm + gc of its repo do not break it. */
static void test_open_file_survives_gc(mfs_store *s)
{
	CHECK_EQ_INT(publish_repo(s, "models/org/gone", C2, 0), 0);
	/* a blob only this repo has: re-store the weights under another etag with
	 * a changed first chunk, so gc really frees chunks */
	wfile[0] ^= 0xFF;
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	mfs_extent ext[NW];
	CHECK_EQ_INT(put_blob(t, "models/org/gone", ETAG_BAD, wfile, wlens, NW, ext, -1),
		     0);
	mfs_file_rec files[1] = {{"w.bin", ETAG_BAD, 0444}};
	CHECK_EQ_INT(mfs_snapshot_publish(t, "models/org/gone", C1, 1, files, 1, NULL, 0,
					  NULL, 0, NULL),
		     0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);

	mfs_cache *c;
	mfs_reader *r;
	REQUIRE(mfs_cache_create(1 << 20, 1, &c) == 0);
	REQUIRE(mfs_reader_create(s, c, &r) == 0);
	mfs_rfile *f;
	REQUIRE(mfs_rfile_open(r, "models/org/gone", ETAG_BAD, &f) == 0);

	remove_and_gc(s, "models/org/gone");

	mfs_rfile *g;
	CHECK_EQ_INT(mfs_rfile_open(r, "models/org/gone", ETAG_BAD, &g), MFS_E_NOTFOUND);
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	uint8_t *buf = malloc(wsize);
	size_t got;
	CHECK_EQ_INT(mfs_rfile_read(r, f, 0, buf, wsize, &got, ws), 0);
	CHECK(got == wsize && memcmp(buf, wfile, wsize) == 0);
	free(buf);
	mfs_codec_ws_free(ws);
	mfs_rfile_close(f);
	mfs_reader_free(r);
	mfs_cache_free(c);
	wfile[0] ^= 0xFF;
}

/* Read all of blob inode @p ino through @p t; 0 when it equals @p want. */
static int table_read(mfs_blob_table *t, mfs_reader *r, uint64_t ino, const uint8_t *want,
		      size_t len, int *opened, mfs_codec_ws *ws)
{
	mfs_blob_entry *e;
	mfs_rfile *f;
	int rc = mfs_blob_table_get(t, ino, &e, &f, opened);
	if (rc < 0)
		return rc;
	uint8_t *buf = malloc(len + 1);
	size_t got = 0;
	rc = buf ? mfs_rfile_read(r, f, 0, buf, len + 1, &got, ws) : -ENOMEM;
	if (rc == 0 && (got != len || memcmp(buf, want, len) != 0))
		rc = MFS_E_CORRUPT;
	free(buf);
	mfs_blob_table_put(t, e);
	return rc;
}

typedef struct bt_arg {
	mfs_blob_table *t;
	mfs_reader *r;
	uint64_t ino;
	const uint8_t *want;
	size_t len;
	int bad;
} bt_arg;

static void *bt_reader(void *p)
{
	bt_arg *a = p;
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws) < 0) {
		a->bad = 1;
		return NULL;
	}
	for (int i = 0; i < 50 && !a->bad; i++)
		if (table_read(a->t, a->r, a->ino, a->want, a->len, NULL, ws) != 0)
			a->bad = 1;
	mfs_codec_ws_free(ws);
	return NULL;
}

/*
 * Views and the blob table (what the mount reads by inode): an entry reads
 * the view it was made in, so a blob looked up before rm + gc reads exact
 * after them, read before or not; rebase moves the entries of blobs still
 * in the store to a newer view and leaves the removed ones; idle files
 * close and reopen in their entry's view; forget frees (at once, or at the
 * last put); reads from threads while entries come, go and move.
 */
static void test_blob_table(mfs_store *s)
{
	/* a blob only this repo has (a changed first chunk), so gc frees chunks */
	wfile[0] ^= 0x5A;
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	mfs_extent ext[NW];
	CHECK_EQ_INT(put_blob(t, "models/org/bt", ETAG_BAD, wfile, wlens, NW, ext, -1), 0);
	mfs_file_rec files[1] = {{"w.bin", ETAG_BAD, 0444}};
	CHECK_EQ_INT(mfs_snapshot_publish(t, "models/org/bt", C1, 1, files, 1, NULL, 0,
					  NULL, 0, NULL),
		     0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	uint8_t *gone = malloc(wsize);
	memcpy(gone, wfile, wsize);
	wfile[0] ^= 0x5A;

	mfs_cache *c;
	mfs_reader *r;
	REQUIRE(reader_with_cache(s, 1 << 20, 1, 2, &c, &r) == 0);
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	mfs_blob_table *bt;
	REQUIRE(mfs_blob_table_create(r, &bt) == 0);
	mfs_view *v1, *v2;
	REQUIRE(mfs_view_begin(r, &v1) == 0);
	CHECK_EQ_INT(mfs_view_has_blob(v1, "models/org/bt", ETAG_BAD), 1);
	CHECK_EQ_INT(mfs_view_has_blob(v1, "models/org/bt", ETAG_W), 0);

	/* 100: looked up twice and read; 200: another repo's blob; 300: looked
	 * up, never read before the rm */
	CHECK_EQ_INT(mfs_blob_table_ref(bt, 100, "models/org/bt", ETAG_BAD, v1), 0);
	CHECK_EQ_INT(mfs_blob_table_ref(bt, 100, "models/org/bt", ETAG_BAD, v1), 0);
	CHECK_EQ_INT(mfs_blob_table_ref(bt, 200, "models/org/a", ETAG_W, v1), 0);
	CHECK_EQ_INT(mfs_blob_table_ref(bt, 300, "models/org/bt", ETAG_BAD, v1), 0);
	int opened = -1;
	CHECK_EQ_INT(table_read(bt, r, 100, gone, wsize, &opened, ws), 0);
	CHECK_EQ_INT(opened, 1);
	CHECK_EQ_INT(table_read(bt, r, 100, gone, wsize, &opened, ws), 0);
	CHECK_EQ_INT(opened, 0);
	mfs_blob_entry *e;
	mfs_rfile *f;
	CHECK_EQ_INT(mfs_blob_table_get(bt, 999, &e, &f, NULL), MFS_E_NOTFOUND);
	mfs_blob_table_stats st;
	mfs_blob_table_stats_get(bt, &st);
	CHECK(st.entries == 3 && st.files == 1 && st.behind == 0);

	/* rm + gc */
	remove_and_gc(s, "models/org/bt");
	REQUIRE(mfs_view_begin(r, &v2) == 0);
	CHECK(mfs_view_generation(v2) > mfs_view_generation(v1));
	CHECK_EQ_INT(mfs_view_has_blob(v2, "models/org/bt", ETAG_BAD), 0);

	/* 200 moves to v2; 100 and 300 stay on v1, and read exact */
	CHECK(mfs_blob_table_rebase(bt, v2) == 1);
	CHECK(mfs_blob_table_rebase(bt, v2) == 0);
	mfs_blob_table_stats_get(bt, &st);
	CHECK(st.entries == 3 && st.files == 1 && st.behind == 2);
	CHECK_EQ_INT(table_read(bt, r, 300, gone, wsize, &opened, ws), 0);
	CHECK_EQ_INT(opened, 1);
	CHECK_EQ_INT(table_read(bt, r, 100, gone, wsize, NULL, ws), 0);
	CHECK_EQ_INT(table_read(bt, r, 200, wfile, wsize, &opened, ws), 0);
	CHECK_EQ_INT(opened, 1);
	/* an entry made in v2 for the removed blob: not there */
	CHECK_EQ_INT(mfs_blob_table_ref(bt, 400, "models/org/bt", ETAG_BAD, v2), 0);
	CHECK_EQ_INT(mfs_blob_table_get(bt, 400, &e, &f, NULL), -ESTALE);
	mfs_blob_table_forget(bt, 400, 1);

	/* more entries than a sweep's batch (64): rebase moves them all, and
	 * (below) close_idle closes all their files */
	enum { MANY = 70 };
	for (uint64_t i = 0; i < MANY; i++)
		CHECK_EQ_INT(mfs_blob_table_ref(bt, 1000 + i, "models/org/a", ETAG_W, v1), 0);
	CHECK(mfs_blob_table_rebase(bt, v2) == MANY);
	for (uint64_t i = 0; i < MANY; i++)
		CHECK_EQ_INT(table_read(bt, r, 1000 + i, wfile, wsize, NULL, ws), 0);

	/* threads read 200 and 300 while entries come, go and move */
	bt_arg args[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (bt_arg){bt, r, i % 2 ? 200 : 300, i % 2 ? wfile : gone, wsize, 0};
		REQUIRE(pthread_create(&th[i], NULL, bt_reader, &args[i]) == 0);
	}
	for (int i = 0; i < 200; i++) {
		CHECK_EQ_INT(mfs_blob_table_ref(bt, 500 + i % 7, "models/org/a", ETAG_W, v1), 0);
		if (i % 3 == 0)
			mfs_blob_table_forget(bt, 500 + (i + 3) % 7, 2);
		mfs_blob_table_rebase(bt, v2);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(!args[i].bad);
	}

	/* idle files close; the entry reopens its file in its own view */
	mfs_blob_table_stats_get(bt, &st);
	size_t open_files = st.files;
	CHECK(open_files >= 3 + MANY); /* 100, 200, 300, 1000.. */
	CHECK(mfs_blob_table_close_idle(bt, 3600 * 1000) == 0);
	CHECK(mfs_blob_table_close_idle(bt, 0) == open_files);
	mfs_blob_table_stats_get(bt, &st);
	CHECK(st.files == 0);
	for (uint64_t i = 0; i < MANY; i++)
		mfs_blob_table_forget(bt, 1000 + i, 1);
	CHECK_EQ_INT(table_read(bt, r, 300, gone, wsize, &opened, ws), 0);
	CHECK_EQ_INT(opened, 1);

	/* forget: 100 goes at its second; 200 forgotten while in use goes at put */
	mfs_blob_table_forget(bt, 100, 1);
	CHECK_EQ_INT(table_read(bt, r, 100, gone, wsize, NULL, ws), 0);
	mfs_blob_table_forget(bt, 100, 1);
	CHECK_EQ_INT(mfs_blob_table_get(bt, 100, &e, &f, NULL), MFS_E_NOTFOUND);
	CHECK_EQ_INT(mfs_blob_table_get(bt, 200, &e, &f, NULL), 0);
	mfs_blob_table_forget(bt, 200, 99);
	mfs_blob_entry *e2; /* gone from the table, still readable by its user */
	mfs_rfile *f2;
	CHECK_EQ_INT(mfs_blob_table_get(bt, 200, &e2, &f2, NULL), MFS_E_NOTFOUND);
	uint8_t *buf = malloc(wsize);
	size_t got = 0;
	CHECK_EQ_INT(mfs_rfile_read(r, f, 0, buf, wsize, &got, ws), 0);
	CHECK(got == wsize && memcmp(buf, wfile, wsize) == 0);
	free(buf);
	mfs_blob_table_put(bt, e);
	mfs_blob_table_stats_get(bt, &st);
	CHECK(st.entries <= 1 + 7 && st.files >= 1); /* 300 and some of 500..506 */

	mfs_view_unref(v1); /* entries still hold it */
	mfs_blob_table_free(bt);
	mfs_view_unref(v2);
	mfs_codec_ws_free(ws);
	free(gone);
	mfs_reader_free(r);
	mfs_cache_free(c);
}

/* ---- the view bound (blob_table.h: mfs_blob_table_bound_views) ---- */

#define BV_N	 24 /* removed blobs held, each on a view of its own */
#define BV_HALF	 12 /* the first BV_HALF are in the store before any view */
#define BV_BOUND 4

/* Publish @p repo: one blob (two chunks of its own, so gc frees them) with its
 * sha256 recorded, named by that sha256 (@p etag, 65 bytes). */
static int bv_publish(mfs_store *s, const char *repo, const uint8_t *data, size_t len,
		      char *etag)
{
	uint8_t sum[32];
	mfs_sha256(data, len, sum);
	for (int i = 0; i < 32; i++)
		snprintf(etag + 2 * i, 3, "%02x", sum[i]);
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_extent ext[2];
	size_t first = len / 3;
	if ((rc = put_chunk(t, data, first, MFS_CODEC_ZSTD, &ext[0].key, NULL)) == 0)
		rc = put_chunk(t, data + first, len - first, MFS_CODEC_RAW, &ext[1].key, NULL);
	ext[0].off = 0;
	ext[0].len = (uint32_t)first;
	ext[1].off = first;
	ext[1].len = (uint32_t)(len - first);
	mfs_blob_rec b = {.etag = etag, .size = len, .stored_bytes = len, .n_extents = 2,
			  .extents = ext};
	memcpy(b.sha256, sum, 32);
	mfs_file_rec files[1] = {{"w.bin", etag, 0444}};
	if (rc == 0)
		rc = mfs_blob_put(t, repo, &b, NULL);
	if (rc == 0)
		rc = mfs_snapshot_publish(t, repo, C1, 1, files, 1, NULL, 0, NULL, 0, NULL);
	if (rc < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

static void bv_remove(mfs_store *s, const char *repo)
{
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_repo_remove(t, repo), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
}

static void bv_gc(mfs_store *s)
{
	int lock;
	REQUIRE(mfs_store_lock_ingest(s, 1, 1, &lock) == 0);
	mfs_txn *t;
	mfs_gc_stat gs;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_gc_sweep(t, &gs), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	mfs_store_unlock(lock);
}

static uint8_t *bv_data(uint64_t *rs, size_t len)
{
	uint8_t *d = malloc(len);
	for (size_t i = 0; i < len; i++)
		d[i] = (uint8_t)(test_rand(rs) >> 56);
	return d;
}

/* Whether @p dir holds no name at all (the spill file is unlinked). */
static int bv_dir_empty(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", dir);
	return system(cmd) == 0;
}

/*
 * Removed blobs held open across many removals pin a view (an LMDB reader
 * slot) each, until the table bounds them: beyond BV_BOUND views, entries
 * move to a kept view that has their blob (the first half: in the store
 * before the oldest view) or read a spilled copy (the second half: each in
 * its own view only), and every entry reads exact bytes, the copies even
 * once the pages they came from are reused.  Entries in use are left for a
 * later call; copies that fail are counted once; a damaged blob is never
 * copied; the spill file leaves no name and gives its space back.
 */
static void test_view_bound(mfs_store *s)
{
	mfs_cache *c;
	mfs_reader *r;
	REQUIRE(reader_with_cache(s, 1 << 20, 1, 2, &c, &r) == 0);
	mfs_codec_ws *ws;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	char spill_dir[] = "/tmp/mfs-test-spill-XXXXXX";
	REQUIRE(mkdtemp(spill_dir) != NULL);
	mfs_blob_table *bt;
	REQUIRE(mfs_blob_table_create(r, &bt) == 0);
	REQUIRE(mfs_blob_table_set_bound(bt, BV_BOUND, spill_dir) == 0);
	CHECK_EQ_INT(mfs_blob_table_set_bound(bt, BV_BOUND, spill_dir), MFS_E_INVAL);

	uint64_t rs = seed ^ 0xB0B0;
	uint8_t *data[BV_N];
	size_t len[BV_N];
	char repo[BV_N][64], etag[BV_N][65];
	uint64_t spill_want = 0;
	for (int i = 0; i < BV_N; i++) {
		len[i] = 3000 + (size_t)(test_rand(&rs) % 20000);
		data[i] = bv_data(&rs, len[i]);
		snprintf(repo[i], sizeof(repo[i]), "models/org/bound-%02d", i);
		if (i < BV_HALF)
			REQUIRE(bv_publish(s, repo[i], data[i], len[i], etag[i]) == 0);
		else
			spill_want += len[i];
	}
	for (int i = 0; i < BV_N; i++) {
		if (i >= BV_HALF)
			REQUIRE(bv_publish(s, repo[i], data[i], len[i], etag[i]) == 0);
		mfs_view *v;
		REQUIRE(mfs_view_begin(r, &v) == 0);
		CHECK_EQ_INT(mfs_blob_table_ref(bt, 7000 + (uint64_t)i, repo[i], etag[i], v), 0);
		if (i % 2) /* its file open in the view, or not */
			CHECK_EQ_INT(table_read(bt, r, 7000 + (uint64_t)i, data[i], len[i], NULL, ws),
				     0);
		mfs_view_unref(v); /* the entry holds it */
		bv_remove(s, repo[i]);
		if (i % 6 == 5)
			bv_gc(s);
	}
	bv_gc(s);
	mfs_view *newest;
	REQUIRE(mfs_view_begin(r, &newest) == 0);
	CHECK_EQ_INT(mfs_blob_table_ref(bt, 9000, "models/org/a", ETAG_W, newest), 0);
	mfs_blob_table_stats st;
	mfs_blob_table_stats_get(bt, &st);
	CHECK(st.entries == BV_N + 1 && st.views == BV_N + 1 && st.spilled == 0);
	CHECK(mfs_blob_table_rebase(bt, newest) == 0); /* nothing removed moves */

	/* readers on two entries while the views go: those in use wait a call */
	bt_arg args[2] = {
	    {bt, r, 7000 + BV_N - 1, data[BV_N - 1], len[BV_N - 1], 0},
	    {bt, r, 7000 + 5, data[5], len[5], 0},
	};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_create(&th[i], NULL, bt_reader, &args[i]) == 0);
	mfs_blob_table_bound b;
	size_t shared = 0, spilled = 0, failed = 0;
	uint64_t bytes = 0;
	CHECK_EQ_INT(mfs_blob_table_bound_views(bt, &b), 0);
	CHECK_EQ_INT(b.views_before, BV_N + 1);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK(!args[i].bad);
	}
	/* what was in use is dealt with by the next call */
	for (int tries = 0;; tries++) {
		shared += b.shared;
		spilled += b.spilled;
		bytes += b.spilled_bytes;
		failed += b.failed;
		if (b.views <= BV_BOUND || tries == 2)
			break;
		CHECK_EQ_INT(mfs_blob_table_bound_views(bt, &b), 0);
	}
	CHECK(b.views <= BV_BOUND);
	/* kept: the 3 oldest and the newest; 3..HALF-1 share the third oldest */
	CHECK_EQ_INT(shared, BV_HALF - (BV_BOUND - 1));
	CHECK_EQ_INT(spilled, BV_N - BV_HALF);
	CHECK_EQ_INT(failed, 0);
	CHECK_EQ_INT(bytes, spill_want);
	mfs_blob_table_stats_get(bt, &st);
	CHECK(st.entries == BV_N + 1 && st.views == BV_BOUND && st.spilled == BV_N - BV_HALF);
	CHECK_EQ_INT(st.spill_bytes, spill_want);
	CHECK_EQ_INT(mfs_blob_table_bound_views(bt, &b), 0); /* within the bound: nothing */
	CHECK(b.views_before == BV_BOUND && b.shared == 0 && b.spilled == 0);
	for (int i = 0; i < BV_N; i++)
		CHECK_EQ_INT(table_read(bt, r, 7000 + (uint64_t)i, data[i], len[i], NULL, ws), 0);
	/* idle files close, but a copy has no view to reopen in: it stays */
	mfs_blob_table_close_idle(bt, 0);
	mfs_blob_table_stats_get(bt, &st);
	CHECK_EQ_INT(st.files, BV_N - BV_HALF);

	/* only copies left (and the newest view): rm + gc + new data reuse the
	 * pages the copied blobs were read from */
	for (int i = 0; i < BV_HALF; i++)
		mfs_blob_table_forget(bt, 7000 + (uint64_t)i, 1);
	for (int round = 0; round < 3; round++) {
		size_t n = 256 << 10;
		uint8_t *junk = bv_data(&rs, n);
		char je[65];
		REQUIRE(bv_publish(s, "models/org/bound-churn", junk, n, je) == 0);
		bv_remove(s, "models/org/bound-churn");
		bv_gc(s);
		free(junk);
	}
	for (int i = BV_HALF; i < BV_N; i++)
		CHECK_EQ_INT(table_read(bt, r, 7000 + (uint64_t)i, data[i], len[i], NULL, ws), 0);
	for (int i = BV_HALF; i < BV_N; i++)
		mfs_blob_table_forget(bt, 7000 + (uint64_t)i, 1);
	mfs_blob_table_stats_get(bt, &st);
	CHECK(st.entries == 1 && st.spilled == 0 && st.spill_bytes == 0);
	CHECK_EQ_INT(st.spill_peak, spill_want);

	/* a copy is checked chunk by chunk and whole: a damaged chunk, and a
	 * blob whose bytes do not hash to its recorded sha256, are refused */
	mfs_spill *sp;
	REQUIRE(mfs_spill_create(spill_dir, &sp) == 0);
	mfs_rfile *f, *cp = NULL;
	REQUIRE(mfs_rfile_open(r, "models/org/a", ETAG_BAD, &f) == 0);
	CHECK_EQ_INT(mfs_rfile_spill(r, f, sp, &cp), MFS_E_CORRUPT);
	CHECK(cp == NULL);
	mfs_rfile_close(f);
	REQUIRE(mfs_rfile_open(r, "models/org/a", ETAG_W, &f) == 0); /* sha256 not recorded */
	CHECK_EQ_INT(mfs_rfile_spill(r, f, sp, &cp), MFS_E_CORRUPT);
	mfs_rfile_close(f);
	mfs_spill_stats ss;
	mfs_spill_stats_get(sp, &ss);
	CHECK(ss.files == 0 && ss.bytes == 0);
	mfs_spill_free(sp);

	/* a copy that cannot be made (no such directory): counted once, the
	 * entry keeps its view and reads exact */
	mfs_blob_table *bt2;
	REQUIRE(mfs_blob_table_create(r, &bt2) == 0);
	REQUIRE(mfs_blob_table_set_bound(bt2, 1, "/nonexistent/mfs-spill") == 0);
	char et[65];
	REQUIRE(bv_publish(s, "models/org/bound-fail", data[0], len[0], et) == 0);
	mfs_view *v;
	REQUIRE(mfs_view_begin(r, &v) == 0);
	CHECK_EQ_INT(mfs_blob_table_ref(bt2, 1, "models/org/bound-fail", et, v), 0);
	mfs_view_unref(v);
	bv_remove(s, "models/org/bound-fail");
	bv_gc(s);
	REQUIRE(mfs_view_begin(r, &v) == 0); /* the newest: kept */
	CHECK_EQ_INT(mfs_blob_table_ref(bt2, 2, "models/org/a", ETAG_W, v), 0);
	mfs_view_unref(v);
	CHECK_EQ_INT(mfs_blob_table_bound_views(bt2, &b), 0);
	CHECK(b.views_before == 2 && b.views == 2 && b.failed == 1 && b.spilled == 0);
	CHECK_EQ_INT(b.first_error, -ENOENT);
	CHECK(strcmp(b.failed_repo, "models/org/bound-fail") == 0 && strcmp(b.failed_etag, et) == 0);
	CHECK_EQ_INT(mfs_blob_table_bound_views(bt2, &b), 0);
	CHECK(b.views == 2 && b.failed == 0);
	CHECK_EQ_INT(table_read(bt2, r, 1, data[0], len[0], NULL, ws), 0);
	mfs_blob_table_free(bt2);

	mfs_view_unref(newest);
	mfs_blob_table_free(bt);
	CHECK(bv_dir_empty(spill_dir));
	CHECK_EQ_INT(rmdir(spill_dir), 0);
	for (int i = 0; i < BV_N; i++)
		free(data[i]);
	mfs_codec_ws_free(ws);
	mfs_reader_free(r);
	mfs_cache_free(c);
}

int main(void)
{
	seed = test_seed();
	mfs_store *s = NULL;
	int rc = setup(&s);
	if (rc != 0) {
		fprintf(stderr, "setup: %s\n", mfs_strerror(rc));
		fprintf(stderr, "cannot build the test store in %s\n", dir);
		cleanup(s);
		return 1;
	}
	test_tree(s);
	fprintf(stderr, "ok   test_tree\n");
	test_damaged_repos();
	fprintf(stderr, "ok   test_damaged_repos\n");
	test_reader(s, 64 << 20, 2, 8, 0);
	test_reader(s, 64 << 20, 2, 8, 1);  /* with the read-ahead thread */
	test_reader(s, 100 << 10, 2, 4, 1); /* evictions all the time */
	test_reader(s, 1 << 20, 0, 0, 0);
	fprintf(stderr, "ok   test_reader\n");
	test_prefetch_skips_served(s);
	fprintf(stderr, "ok   test_prefetch_skips_served\n");
	test_whole_file_on_jump(s);
	fprintf(stderr, "ok   test_whole_file_on_jump\n");
	test_prefetch_model(s);
	fprintf(stderr, "ok   test_prefetch_model\n");
	test_open_file_survives_gc(s);
	fprintf(stderr, "ok   test_open_file_survives_gc\n");
	test_blob_table(s);
	fprintf(stderr, "ok   test_blob_table\n");
	test_view_bound(s);
	fprintf(stderr, "ok   test_view_bound\n");
	cleanup(s);
	return test_report();
}
