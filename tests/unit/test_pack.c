/*
 * Unit tests for index/pack.c (and the pack side of chunks.c, txn.c, gc.c):
 * payloads round trip through pack files; an aborted or crashed transaction
 * leaves nothing visible and a tail gc removes; a pack cut short, a damaged
 * entry header, an entry of another key and a missing pack file are each
 * MFS_E_CORRUPT naming the chunk; two handles (as two processes) append to
 * packs of their own at once; the repack moves live chunks and unlinks the
 * old pack only once no older reader is left; the format-1 conversion.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bytes.h"
#include "check.h"
#include "codec.h"
#include "pack.h"
#include "reader.h"
#include "store.h"
#include "store_raw.h"
#include "testfs.h"
#include "testhelp.h"

static uint64_t seed;

/* Weight-like bytes: compressible but not trivially. */
static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(test_rand(&seed) % 13);
}

/* Encode @p raw with @p codec and put it in write transaction @p t. */
static int put_in(mfs_txn *t, const uint8_t *raw, size_t len, mfs_codec_id codec,
		  mfs_chunk_key *key, size_t *stored)
{
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws) < 0)
		return -ENOMEM;
	size_t cap = mfs_codec_bound_max(len), n = 0;
	uint8_t *enc = malloc(cap);
	mfs_encode_params p = {0};
	int rc = enc ? mfs_codec_encode(codec, &p, raw, len, enc, cap, &n, ws) : -ENOMEM;
	mfs_chunk_key_of(raw, len, key);
	if (rc == 0)
		rc = mfs_chunk_put(
		    t, key, &(mfs_chunk_meta){.codec = codec, .raw_len = (uint32_t)len},
		    enc, n, NULL);
	if (stored)
		*stored = n;
	free(enc);
	mfs_codec_ws_free(ws);
	return rc;
}

static int put_one(mfs_store *s, const uint8_t *raw, size_t len, mfs_codec_id codec,
		   mfs_chunk_key *key)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	if ((rc = put_in(t, raw, len, codec, key, NULL)) < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

/* Decode chunk @p key through a reader (the read path) into @p out. */
static int read_chunk(mfs_store *s, const mfs_chunk_key *key, void *out, size_t len)
{
	mfs_reader *r;
	mfs_codec_ws *ws;
	if (mfs_reader_create(s, NULL, &r) < 0)
		return -ENOMEM;
	if (mfs_codec_ws_create(&ws) < 0) {
		mfs_reader_free(r);
		return -ENOMEM;
	}
	int rc = mfs_reader_decode_chunk(r, key, out, len, ws);
	mfs_codec_ws_free(ws);
	mfs_reader_free(r);
	return rc;
}

/* The record of @p key, read in a transaction of its own. */
static int view_of(mfs_store *s, const mfs_chunk_key *key, mfs_chunk_view *v)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	rc = mfs_chunk_get(t, key, v);
	mfs_txn_abort(t);
	return rc;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static int count_packs(const char *dir)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "exit $(ls '%s/packs' | grep -c '\\.pack$')", dir);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Overwrite @p n bytes at @p off of pack @p id's file. */
static int poke_pack(mfs_store *s, uint64_t id, uint64_t off, const void *b, size_t n)
{
	char path[4200];
	mfs_pack_path(s, id, path, sizeof path);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t w = pwrite(fd, b, n, (off_t)off);
	close(fd);
	return w == (ssize_t)n ? 0 : -EIO;
}

/* A checker problem, shown (the count comes back through n_bad). */
static int show_problem(void *ud, const mfs_check_problem *p)
{
	(void)ud;
	fprintf(stderr, "  check: %s %s\n", p->what, p->why);
	return 0;
}

/* The store check in @p t finds no problem (each one printed). */
static void check_sound_in(mfs_txn *t)
{
	uint64_t nbad = 99;
	CHECK_EQ_INT(mfs_check_store(t, 0, show_problem, NULL, &nbad), 0);
	CHECK_EQ_INT(nbad, 0);
}

/* The same, in a read transaction of its own. */
static void check_sound(mfs_store *s)
{
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	check_sound_in(t);
	mfs_txn_abort(t);
}

/* ---- the round trip ---- */

static void test_round_trip(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	enum { N = 12 };
	size_t lens[N];
	uint8_t *raw[N];
	mfs_chunk_key keys[N];
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	for (int i = 0; i < N; i++) {
		lens[i] = i == 0 ? 0 : 1000 + (size_t)(test_rand(&seed) % 300000);
		raw[i] = malloc(lens[i] ? lens[i] : 1);
		fill(raw[i], lens[i]);
		CHECK_EQ_INT(put_in(t, raw[i], lens[i],
				    i % 2 ? MFS_CODEC_ZSTD : MFS_CODEC_RAW, &keys[i],
				    NULL),
			     0);
	}
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	/* the entries lie one after another, in the order they were put */
	uint64_t next = MFS_PACK_HDR, pack = 0;
	for (int i = 0; i < N; i++) {
		mfs_chunk_view v;
		REQUIRE(view_of(s, &keys[i], &v) == 0);
		CHECK_EQ_INT(v.in_pack, 1);
		if (i == 0)
			pack = v.loc.pack;
		CHECK_EQ_INT(v.loc.pack, pack);
		CHECK_EQ_INT(v.loc.off, next);
		next += mfs_pack_entry_bytes(v.loc.len);
	}
	char path[4200];
	mfs_pack_path(s, pack, path, sizeof path);
	CHECK_EQ_INT(file_size(path), (off_t)next);
	/* the file as documented: pack header, then the first entry's header */
	int fd = open(path, O_RDONLY);
	uint8_t h[64];
	REQUIRE(fd >= 0 && pread(fd, h, 64, 0) == 64);
	close(fd);
	CHECK(!memcmp(h, "MFSPACK\0", 8));
	CHECK_EQ_INT(mfs_get_le32(h + 8), 1);
	CHECK_EQ_INT(mfs_get_le64(h + 16), pack);
	CHECK(!memcmp(h + 32, "MFSE", 4));
	CHECK_EQ_INT(mfs_get_le32(h + 36), lens[0]); /* raw codec: payload = bytes */
	CHECK(!memcmp(h + 40, keys[0].b, 16));
	/* another handle, read-only, reads every byte back */
	mfs_store_close(s);
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL) == 0);
	for (int i = 0; i < N; i++) {
		uint8_t *out = malloc(lens[i] ? lens[i] : 1);
		CHECK_EQ_INT(read_chunk(s, &keys[i], out, lens[i]), 0);
		CHECK(!memcmp(out, raw[i], lens[i]));
		free(out);
		free(raw[i]);
	}
	/* the space figures count the packs */
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	mfs_store_stat st;
	CHECK_EQ_INT(mfs_store_stat_get(t, &st), 0);
	CHECK_EQ_INT(st.n_packs, 1);
	CHECK_EQ_INT(st.pack_file_bytes, next);
	CHECK_EQ_INT(st.pack_live_bytes, next - MFS_PACK_HDR);
	CHECK_EQ_INT(st.pack_dead_bytes, 0);
	CHECK_EQ_INT(st.pack_live_bytes - 32 * N, st.chunk_payload_bytes);
	check_sound_in(t);
	mfs_txn_abort(t);
	mfs_store_close(s);
	test_drop_dir(d);
}

/* ---- aborts and crashes ---- */

enum { CHILD_COMMIT, CHILD_CRASH };

/*
 * Another process (LMDB allows one environment handle per process) opens
 * store @p d and stores @p raw as one chunk: CHILD_COMMIT commits it,
 * CHILD_CRASH exits after the append without committing or aborting (as
 * kill -9).
 * @param avoid_pack  with CHILD_COMMIT and not 0: the chunk must not have
 *                    gone into this pack
 * @return the child's exit status: 0; 1 a call failed; 2 it went into
 *         @p avoid_pack; -1 it did not exit
 */
static int in_child(const char *d, const uint8_t *raw, size_t len, int how, uint64_t avoid_pack)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		mfs_store *cs;
		mfs_txn *ct;
		mfs_chunk_key k;
		mfs_chunk_view cv;
		if (mfs_store_open(d, 0, &cs, NULL) != 0)
			_exit(1);
		if (how == CHILD_CRASH) {
			if (mfs_txn_begin(cs, MFS_TXN_WRITE, &ct) != 0 ||
			    put_in(ct, raw, len, MFS_CODEC_RAW, &k, NULL) != 0)
				_exit(1);
			_exit(0); /* no commit, no abort */
		}
		if (put_one(cs, raw, len, MFS_CODEC_RAW, &k) != 0 || view_of(cs, &k, &cv) != 0)
			_exit(1);
		mfs_store_close(cs);
		_exit(avoid_pack && cv.loc.pack == avoid_pack ? 2 : 0);
	}
	int wst;
	if (waitpid(pid, &wst, 0) != pid || !WIFEXITED(wst))
		return -1;
	return WEXITSTATUS(wst);
}

static void test_abort_and_crash(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	uint8_t a[70000], b[80000];
	fill(a, sizeof a);
	fill(b, sizeof b);
	mfs_chunk_key ka, kb;
	REQUIRE(put_one(s, a, sizeof a, MFS_CODEC_RAW, &ka) == 0);
	mfs_chunk_view va;
	REQUIRE(view_of(s, &ka, &va) == 0);
	char path[4200];
	mfs_pack_path(s, va.loc.pack, path, sizeof path);
	off_t committed = file_size(path);
	/* an abort truncates what its transaction appended: nothing visible */
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(put_in(t, b, sizeof b, MFS_CODEC_RAW, &kb, NULL), 0);
	CHECK(file_size(path) > committed);
	mfs_txn_abort(t);
	CHECK_EQ_INT(file_size(path), committed);
	mfs_chunk_view v;
	CHECK_EQ_INT(view_of(s, &kb, &v), MFS_E_NOTFOUND);
	/* the next transaction appends where the committed ones ended */
	REQUIRE(put_one(s, b, sizeof b, MFS_CODEC_RAW, &kb) == 0);
	REQUIRE(view_of(s, &kb, &v) == 0);
	CHECK_EQ_INT(v.loc.off, (uint64_t)committed);

	/* a process that dies before its commit: its pack (created in that
	 * transaction, as this handle holds the first one) is left with no
	 * record, its bytes visible nowhere */
	uint8_t c[90000];
	fill(c, sizeof c);
	mfs_chunk_key kc;
	mfs_chunk_key_of(c, sizeof c, &kc);
	REQUIRE(in_child(d, c, sizeof c, CHILD_CRASH, 0) == 0);
	mfs_store_close(s);
	CHECK_EQ_INT(count_packs(d), 2);
	/* a crash past committed_end of a known pack: a tail of garbage */
	int fd = open(path, O_WRONLY | O_APPEND);
	REQUIRE(fd >= 0 && write(fd, "garbage-tail", 12) == 12);
	close(fd);
	off_t with_tail = file_size(path);
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0);
	CHECK_EQ_INT(view_of(s, &kc, &v), MFS_E_NOTFOUND);
	uint8_t out[90000];
	CHECK_EQ_INT(read_chunk(s, &ka, out, sizeof a), 0);
	CHECK(!memcmp(out, a, sizeof a));
	CHECK_EQ_INT(read_chunk(s, &kb, out, sizeof b), 0);
	CHECK(!memcmp(out, b, sizeof b));
	/* gc: the orphan pack and the tail go */
	mfs_pack_gc_stat gs;
	mfs_pack_gc_opts o = {.repack_below = 0};
	CHECK_EQ_INT(mfs_gc_packs(s, &o, &gs, NULL), 0);
	CHECK_EQ_INT(gs.orphans_removed, 1);
	CHECK_EQ_INT(gs.orphan_bytes, MFS_PACK_HDR + mfs_pack_entry_bytes(sizeof c));
	CHECK_EQ_INT(gs.tails_truncated, 1);
	CHECK_EQ_INT(gs.tail_bytes, 12);
	CHECK_EQ_INT(file_size(path), with_tail - 12);
	CHECK_EQ_INT(count_packs(d), 1);
	CHECK_EQ_INT(read_chunk(s, &kb, out, sizeof b), 0);
	CHECK(!memcmp(out, b, sizeof b));
	mfs_store_close(s);
	test_drop_dir(d);
}

/*
 * A handle without a pack of its own appends to an open pack no one holds
 * (so small ingests one after another fill one pack), cutting the tail a
 * writer that died before its commit left there; a pack another handle
 * holds is not taken.
 */
static void test_reuse(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	static uint8_t raw[5][30000];
	mfs_chunk_key k[5];
	for (int i = 0; i < 5; i++)
		fill(raw[i], sizeof raw[i]);
	REQUIRE(put_one(s, raw[0], sizeof raw[0], MFS_CODEC_RAW, &k[0]) == 0);
	mfs_store_close(s);
	/* the next handle: the same pack, right after the committed entry */
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0);
	REQUIRE(put_one(s, raw[1], sizeof raw[1], MFS_CODEC_RAW, &k[1]) == 0);
	mfs_chunk_view v0, v1, v;
	REQUIRE(view_of(s, &k[0], &v0) == 0 && view_of(s, &k[1], &v1) == 0);
	CHECK_EQ_INT(v1.loc.pack, v0.loc.pack);
	CHECK_EQ_INT(v1.loc.off, v0.loc.off + mfs_pack_entry_bytes(sizeof raw[0]));
	mfs_store_close(s);
	char path[4200];
	snprintf(path, sizeof path, "%s/packs/%016llx.pack", d, (unsigned long long)v0.loc.pack);
	off_t committed = file_size(path);
	CHECK_EQ_INT(committed, (off_t)(v1.loc.off + mfs_pack_entry_bytes(sizeof raw[1])));
	/* a writer that takes it and dies before its commit leaves a tail */
	REQUIRE(in_child(d, raw[2], sizeof raw[2], CHILD_CRASH, 0) == 0);
	CHECK(file_size(path) > committed);
	CHECK_EQ_INT(count_packs(d), 1);
	/* the next writer cuts the tail and appends where the commits ended */
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0);
	REQUIRE(put_one(s, raw[3], sizeof raw[3], MFS_CODEC_RAW, &k[3]) == 0);
	REQUIRE(view_of(s, &k[3], &v) == 0);
	CHECK_EQ_INT(v.loc.pack, v0.loc.pack);
	CHECK_EQ_INT(v.loc.off, (uint64_t)committed);
	CHECK_EQ_INT(file_size(path), committed + (off_t)mfs_pack_entry_bytes(sizeof raw[3]));
	mfs_chunk_key_of(raw[2], sizeof raw[2], &k[2]);
	CHECK_EQ_INT(view_of(s, &k[2], &v), MFS_E_NOTFOUND);
	/* held by this handle: another process starts a pack of its own */
	CHECK_EQ_INT(in_child(d, raw[4], sizeof raw[4], CHILD_COMMIT, v0.loc.pack), 0);
	CHECK_EQ_INT(count_packs(d), 2);
	uint8_t out[30000];
	for (int i = 0; i < 5; i++) {
		if (i == 2)
			continue;
		mfs_chunk_key_of(raw[i], sizeof raw[i], &k[i]);
		CHECK_EQ_INT(read_chunk(s, &k[i], out, sizeof out), 0);
		CHECK(!memcmp(out, raw[i], sizeof out));
	}
	check_sound(s);
	mfs_store_close(s);
	test_drop_dir(d);
}

/*
 * A reader opens the packs ahead of its reads (mfs_packs_preopen): every
 * pack with live entries, once; a pack file that is missing is left for the
 * read that needs it to report.  A held descriptor serves its pack even
 * after the file was renamed away.  And the index brought into memory
 * (mfs_store_index_warm): its pages in use, unless over the bound.
 */
static void test_preopen_and_warm(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	static uint8_t raw[2][30000];
	mfs_chunk_key k[2];
	for (int i = 0; i < 2; i++) {
		fill(raw[i], sizeof raw[i]);
		mfs_chunk_key_of(raw[i], sizeof raw[i], &k[i]);
	}
	REQUIRE(put_one(s, raw[0], sizeof raw[0], MFS_CODEC_RAW, &k[0]) == 0);
	/* this handle holds its pack: the child starts a second */
	mfs_chunk_view v0, v1;
	REQUIRE(view_of(s, &k[0], &v0) == 0);
	REQUIRE(in_child(d, raw[1], sizeof raw[1], CHILD_COMMIT, v0.loc.pack) == 0);
	REQUIRE(view_of(s, &k[1], &v1) == 0);
	CHECK(v1.loc.pack != v0.loc.pack);
	mfs_store_close(s);

	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY | MFS_STORE_NORDAHEAD, &s, NULL) == 0);
	size_t n = 99;
	CHECK_EQ_INT(mfs_packs_preopen(s, &n), 0);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(mfs_packs_preopen(s, &n), 0);
	CHECK_EQ_INT(n, 0); /* held already */
	char path[4200], moved[4300];
	snprintf(path, sizeof path, "%s/packs/%016llx.pack", d, (unsigned long long)v1.loc.pack);
	snprintf(moved, sizeof moved, "%s.moved", path);
	REQUIRE(rename(path, moved) == 0);
	uint8_t out[30000];
	CHECK_EQ_INT(read_chunk(s, &k[1], out, sizeof out), 0);
	CHECK(!memcmp(out, raw[1], sizeof out));
	uint64_t bytes = 0;
	struct stat st;
	char mdb[4200];
	snprintf(mdb, sizeof mdb, "%s/data.mdb", d);
	REQUIRE(stat(mdb, &st) == 0);
	CHECK_EQ_INT(mfs_store_index_warm(s, 1 << 30, &bytes), 0);
	CHECK(bytes > 0 && bytes % 4096 == 0 && bytes <= (uint64_t)st.st_size);
	CHECK_EQ_INT(mfs_store_index_warm(s, 1 << 30, &bytes), 0); /* replaces the map */
	CHECK(bytes > 0);
	CHECK_EQ_INT(mfs_store_index_warm(s, 4096, &bytes), 0); /* over the bound */
	CHECK_EQ_INT(bytes, 0);
	CHECK_EQ_INT(read_chunk(s, &k[0], out, sizeof out), 0);
	CHECK(!memcmp(out, raw[0], sizeof out));
	mfs_store_close(s);

	/* a fresh reader: the missing pack is not opened, and its read says so */
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL) == 0);
	CHECK_EQ_INT(mfs_packs_preopen(s, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(read_chunk(s, &k[1], out, sizeof out), MFS_E_CORRUPT);
	CHECK_EQ_INT(read_chunk(s, &k[0], out, sizeof out), 0);
	mfs_store_close(s);
	REQUIRE(rename(moved, path) == 0);
	test_drop_dir(d);
}

/*
 * Writers at the same time each fill a pack of their own; gc merges packs
 * under merge_below into one when there are two or more (a lone small pack
 * stays where it is), and not at all with merge_below 0.
 */
static void test_merge_small(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	static uint8_t raw[2][50000];
	mfs_chunk_key k[2];
	for (int i = 0; i < 2; i++)
		fill(raw[i], sizeof raw[i]);
	REQUIRE(put_one(s, raw[0], sizeof raw[0], MFS_CODEC_RAW, &k[0]) == 0);
	/* a second writer while this handle holds its pack: a pack of its own */
	REQUIRE(in_child(d, raw[1], sizeof raw[1], CHILD_COMMIT, 0) == 0);
	mfs_store_close(s);
	CHECK_EQ_INT(count_packs(d), 2);
	mfs_chunk_key_of(raw[1], sizeof raw[1], &k[1]);
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0);
	mfs_pack_gc_stat gs;
	mfs_pack_gc_opts o = {.repack_below = 0.5, .merge_below = 0};
	CHECK_EQ_INT(mfs_gc_packs(s, &o, &gs, NULL), 0);
	CHECK_EQ_INT(gs.packs_repacked, 0); /* both wholly live */
	CHECK_EQ_INT(count_packs(d), 2);
	o.merge_below = (uint64_t)64 << 20;
	CHECK_EQ_INT(mfs_gc_packs(s, &o, &gs, NULL), 0);
	CHECK_EQ_INT(gs.packs_repacked, 2);
	CHECK_EQ_INT(gs.packs_merged, 2);
	CHECK_EQ_INT(gs.chunks_moved, 2);
	CHECK_EQ_INT(gs.packs_removed, 2);
	CHECK_EQ_INT(count_packs(d), 1);
	mfs_chunk_view v0, v1;
	REQUIRE(view_of(s, &k[0], &v0) == 0 && view_of(s, &k[1], &v1) == 0);
	CHECK_EQ_INT(v0.loc.pack, v1.loc.pack);
	uint8_t out[50000];
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_INT(read_chunk(s, &k[i], out, sizeof out), 0);
		CHECK(!memcmp(out, raw[i], sizeof out));
	}
	/* one small pack left: nothing to merge it with */
	CHECK_EQ_INT(mfs_gc_packs(s, &o, &gs, NULL), 0);
	CHECK_EQ_INT(gs.packs_repacked, 0);
	CHECK_EQ_INT(gs.chunks_moved, 0);
	check_sound(s);
	mfs_store_close(s);
	test_drop_dir(d);
}

/* ---- damage: every case MFS_E_CORRUPT, naming the chunk ---- */

static void expect_corrupt(mfs_store *s, const mfs_chunk_key *k, size_t len,
			   const char *what, const char *needle)
{
	mfs_chunk_view v;
	REQUIRE(view_of(s, k, &v) == 0);
	uint8_t *buf = malloc(v.payload_len + 1);
	mfs_errmsg err = {0};
	char hex[33];
	int rc = mfs_chunk_payload_read(s, k, &v, buf, v.payload_len, &err);
	if (rc != MFS_E_CORRUPT)
		fprintf(stderr, "  %s: payload read gave %d\n", what, rc);
	CHECK_EQ_INT(rc, MFS_E_CORRUPT);
	CHECK(strstr(err.msg, mfs_chunk_key_hex(k, hex)) != NULL);
	if (!strstr(err.msg, needle))
		fprintf(stderr, "  %s: \"%s\" lacks \"%s\"\n", what, err.msg, needle);
	CHECK(strstr(err.msg, needle) != NULL);
	free(buf);
	uint8_t *out = malloc(len);
	CHECK_EQ_INT(read_chunk(s, k, out, len), MFS_E_CORRUPT);
	free(out);
}

static void test_damage(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	enum { N = 4, LEN = 50000 };
	uint8_t raw[N][LEN];
	mfs_chunk_key k[N];
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	for (int i = 0; i < N; i++) {
		fill(raw[i], LEN);
		CHECK_EQ_INT(put_in(t, raw[i], LEN, MFS_CODEC_RAW, &k[i], NULL), 0);
	}
	REQUIRE(mfs_txn_commit(t) == 0);
	mfs_chunk_view v[N];
	for (int i = 0; i < N; i++)
		REQUIRE(view_of(s, &k[i], &v[i]) == 0);
	uint64_t id = v[0].loc.pack;
	/* a bad magic in entry 0's header */
	REQUIRE(poke_pack(s, id, v[0].loc.off, "XXXX", 4) == 0);
	expect_corrupt(s, &k[0], LEN, "bad magic", "magic");
	/* entry 1's header names another key */
	REQUIRE(poke_pack(s, id, v[1].loc.off + 8, k[2].b, 16) == 0);
	expect_corrupt(s, &k[1], LEN, "wrong key", "the entry is chunk");
	/* entry 2's header says another length */
	uint8_t l4[4];
	mfs_put_le32(l4, LEN - 1);
	REQUIRE(poke_pack(s, id, v[2].loc.off + 4, l4, 4) == 0);
	expect_corrupt(s, &k[2], LEN, "wrong length", "payload bytes");
	/* entry 3's payload altered: the header is sound, the decode's hash is not */
	REQUIRE(poke_pack(s, id, v[3].loc.off + 32 + 100, "\xff\xfe", 2) == 0);
	uint8_t out[LEN];
	CHECK_EQ_INT(read_chunk(s, &k[3], out, LEN), MFS_E_CORRUPT);
	/* the checker names the entries whose header is wrong */
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	uint64_t nbad = 0;
	CHECK_EQ_INT(mfs_check_store(t, 0, show_problem, NULL, &nbad), 0);
	CHECK_EQ_INT(nbad, 3);
	mfs_txn_abort(t);
	/* the pack cut short, in the middle of entry 3 (a fresh handle: no
	 * descriptor open from before) */
	mfs_store_close(s);
	char path[4200];
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0);
	mfs_pack_path(s, id, path, sizeof path);
	REQUIRE(truncate(path, (off_t)(v[3].loc.off + 32 + LEN / 2)) == 0);
	expect_corrupt(s, &k[3], LEN, "truncated", "ends");
	/* the pack file gone */
	REQUIRE(unlink(path) == 0);
	mfs_store_close(s);
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL) == 0);
	expect_corrupt(s, &k[3], LEN, "missing pack", "is missing");
	mfs_store_close(s);
	test_drop_dir(d);
}

/* ---- two writers ---- */

/* One writer process: 40 chunks in transactions of two, so the two
 * processes' transactions interleave.  Exits 0 when all committed. */
static int writer_main(const char *dir, uint8_t (*raw)[20000])
{
	mfs_store *s;
	if (mfs_store_open(dir, 0, &s, NULL) < 0)
		return 1;
	int rc = 0;
	for (int i = 0; i < 40 && rc == 0; i += 2) {
		mfs_txn *t;
		if ((rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t)) < 0)
			break;
		mfs_chunk_key k;
		for (int j = i; j < i + 2 && rc == 0; j++)
			rc = put_in(t, raw[j], sizeof raw[j], MFS_CODEC_ZSTD, &k, NULL);
		if (rc == 0)
			rc = mfs_txn_commit(t);
		else
			mfs_txn_abort(t);
		usleep(1000);
	}
	mfs_store_close(s);
	return rc == 0 ? 0 : 1;
}

static void test_two_writers(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	mfs_store_close(s);
	static uint8_t raw[2][40][20000];
	mfs_chunk_key keys[2][40];
	pid_t pid[2];
	for (int w = 0; w < 2; w++)
		for (int i = 0; i < 40; i++) {
			fill(raw[w][i], sizeof raw[w][i]);
			mfs_chunk_key_of(raw[w][i], sizeof raw[w][i], &keys[w][i]);
		}
	/* two processes (LMDB allows one environment handle per process) */
	for (int w = 0; w < 2; w++) {
		pid[w] = fork();
		REQUIRE(pid[w] >= 0);
		if (pid[w] == 0)
			_exit(writer_main(d, raw[w]));
	}
	for (int w = 0; w < 2; w++) {
		int st;
		REQUIRE(waitpid(pid[w], &st, 0) == pid[w]);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL) == 0);
	/* each process its own pack, every chunk exact */
	uint64_t pack[2] = {0, 0};
	for (int w = 0; w < 2; w++)
		for (int i = 0; i < 40; i++) {
			mfs_chunk_view v;
			REQUIRE(view_of(s, &keys[w][i], &v) == 0);
			if (i == 0)
				pack[w] = v.loc.pack;
			CHECK_EQ_INT(v.loc.pack, pack[w]);
			uint8_t out[20000];
			CHECK_EQ_INT(read_chunk(s, &keys[w][i], out, sizeof out), 0);
			CHECK(!memcmp(out, raw[w][i], sizeof out));
		}
	CHECK(pack[0] != pack[1]);
	CHECK_EQ_INT(count_packs(d), 2);
	check_sound(s);
	mfs_store_close(s);
	test_drop_dir(d);
}

/* ---- repack ---- */

/* Publish a one-file repo whose file is the chunks @p k (of @p len bytes each). */
static int publish(mfs_store *s, const char *repo, const mfs_chunk_key *k, size_t n,
		   size_t len)
{
	mfs_extent ext[16];
	for (size_t i = 0; i < n; i++)
		ext[i] = (mfs_extent){.off = i * len, .len = (uint32_t)len, .key = k[i]};
	const char *etag =
	    "aa00000000000000000000000000000000000000000000000000000000000001";
	const char *commit = "1111111111111111111111111111111111111111";
	return test_publish_file(s, repo, commit, etag, ext, n, n * len);
}

static int sweep(mfs_store *s)
{
	int lock;
	mfs_txn *t;
	mfs_gc_stat gs;
	int rc = mfs_store_lock_ingest(s, 1, 1, &lock);
	if (rc < 0)
		return rc;
	if ((rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t)) == 0) {
		if ((rc = mfs_gc_sweep(t, &gs)) == 0)
			rc = mfs_txn_commit(t);
		else
			mfs_txn_abort(t);
	}
	mfs_store_unlock(lock);
	return rc;
}

static void test_repack(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	enum { N = 10, LEN = 40000 };
	static uint8_t raw[N][LEN];
	mfs_chunk_key k[N];
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	for (int i = 0; i < N; i++) {
		fill(raw[i], LEN);
		CHECK_EQ_INT(put_in(t, raw[i], LEN, MFS_CODEC_RAW, &k[i], NULL), 0);
	}
	REQUIRE(mfs_txn_commit(t) == 0);
	/* chunks 0, 3, 6, 9 are used; the other six are garbage */
	mfs_chunk_key keep[4] = {k[0], k[3], k[6], k[9]};
	REQUIRE(publish(s, "models/org/a", keep, 4, LEN) == 0);
	REQUIRE(sweep(s) == 0);
	mfs_chunk_view old;
	REQUIRE(view_of(s, &k[3], &old) == 0);
	char oldpath[4200];
	mfs_pack_path(s, old.loc.pack, oldpath, sizeof oldpath);
	mfs_store_close(s);
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0); /* no longer the pack's writer */
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	mfs_store_stat st;
	CHECK_EQ_INT(mfs_store_stat_get(t, &st), 0);
	CHECK_EQ_INT(st.pack_dead_bytes, 6 * mfs_pack_entry_bytes(LEN));
	CHECK_EQ_INT(st.pack_live_bytes, 4 * mfs_pack_entry_bytes(LEN));
	mfs_txn_abort(t);

	/* a reader of the old snapshot in another process (as a mount): it looks
	 * chunk 3 up before the repack, and reads it after */
	int go[2], ready[2];
	REQUIRE(pipe(go) == 0 && pipe(ready) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		mfs_store *rs;
		mfs_txn *rt;
		mfs_chunk_view rv;
		mfs_codec_ws *ws;
		uint8_t out[LEN];
		char c = 0;
		mfs_store_close(s); /* the parent's handle: not this process's */
		if (mfs_store_open(d, MFS_STORE_RDONLY, &rs, NULL) != 0 ||
		    mfs_txn_begin(rs, MFS_TXN_READ, &rt) != 0 ||
		    mfs_chunk_get(rt, &k[3], &rv) != 0 || mfs_codec_ws_create(&ws) != 0)
			_exit(2);
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		/* the repack committed meanwhile: the old place, read exact */
		if (rv.loc.pack != old.loc.pack ||
		    mfs_chunk_load(rs, &k[3], &rv, ws, NULL) != 0 ||
		    mfs_chunk_decode(&rv, &k[3], NULL, out, LEN, ws) != 0 ||
		    memcmp(out, raw[3], LEN))
			_exit(4);
		mfs_txn_abort(rt);
		mfs_codec_ws_free(ws);
		mfs_store_close(rs);
		_exit(0);
	}
	char c;
	REQUIRE(read(ready[0], &c, 1) == 1);

	mfs_pack_gc_opts o = {.repack_below = 0.5, .wait_ms = 0, .batch_bytes = 2 * LEN};
	mfs_pack_gc_stat gs;
	mfs_errmsg err = {0};
	CHECK_EQ_INT(mfs_gc_packs(s, &o, &gs, &err), 0);
	CHECK_EQ_INT(gs.packs_repacked, 1);
	CHECK_EQ_INT(gs.chunks_moved, 4);
	CHECK_EQ_INT(gs.packs_waiting, 1); /* the reader holds the old snapshot */
	CHECK(file_size(oldpath) > 0);
	/* new records name the new pack, in the same order */
	mfs_chunk_view nv[4];
	for (int i = 0; i < 4; i++) {
		REQUIRE(view_of(s, &keep[i], &nv[i]) == 0);
		CHECK(nv[i].loc.pack != old.loc.pack);
		if (i)
			CHECK(nv[i].loc.off > nv[i - 1].loc.off);
	}
	REQUIRE(write(go[1], "g", 1) == 1);
	int wst;
	REQUIRE(waitpid(pid, &wst, 0) == pid);
	CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	close(go[0]), close(go[1]), close(ready[0]), close(ready[1]);
	/* once it let go, the next gc unlinks the old pack */
	CHECK_EQ_INT(mfs_gc_packs(s, &o, &gs, &err), 0);
	CHECK_EQ_INT(gs.packs_removed, 1);
	CHECK_EQ_INT(gs.packs_waiting, 0);
	CHECK_EQ_INT(file_size(oldpath), -1);
	CHECK_EQ_INT(count_packs(d), 1);
	uint8_t out[LEN];
	for (int i = 0; i < 4; i++) {
		CHECK_EQ_INT(read_chunk(s, &keep[i], out, LEN), 0);
		CHECK(!memcmp(out, raw[i * 3], LEN));
	}
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	CHECK_EQ_INT(mfs_store_stat_get(t, &st), 0);
	CHECK_EQ_INT(st.pack_dead_bytes, 0);
	CHECK_EQ_INT(st.pack_file_bytes, MFS_PACK_HDR + 4 * mfs_pack_entry_bytes(LEN));
	check_sound_in(t);
	mfs_txn_abort(t);
	mfs_store_close(s);
	test_drop_dir(d);
}

/* A live chunk whose entry header is damaged stays where it is, and so does
 * its pack; the sound ones move. */
static void test_repack_damaged(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	enum { N = 6, LEN = 30000 };
	static uint8_t raw[N][LEN];
	mfs_chunk_key k[N];
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	for (int i = 0; i < N; i++) {
		fill(raw[i], LEN);
		CHECK_EQ_INT(put_in(t, raw[i], LEN, MFS_CODEC_RAW, &k[i], NULL), 0);
	}
	REQUIRE(mfs_txn_commit(t) == 0);
	mfs_chunk_key keep[2] = {k[1], k[4]};
	REQUIRE(publish(s, "models/org/a", keep, 2, LEN) == 0);
	REQUIRE(sweep(s) == 0);
	mfs_chunk_view v1, v4;
	REQUIRE(view_of(s, &k[1], &v1) == 0 && view_of(s, &k[4], &v4) == 0);
	REQUIRE(poke_pack(s, v4.loc.pack, v4.loc.off, "MFSX", 4) == 0);
	mfs_store_close(s);
	REQUIRE(mfs_store_open(d, 0, &s, NULL) == 0);
	mfs_pack_gc_opts o = {.repack_below = 0.5};
	mfs_pack_gc_stat gs;
	CHECK_EQ_INT(mfs_gc_packs(s, &o, &gs, NULL), 0);
	CHECK_EQ_INT(gs.damaged_entries, 1);
	CHECK_EQ_INT(gs.chunks_moved, 1);
	CHECK_EQ_INT(gs.packs_repacked, 0);
	CHECK_EQ_INT(gs.packs_removed, 0);
	char path[4200];
	mfs_pack_path(s, v4.loc.pack, path, sizeof path);
	CHECK(file_size(path) > 0);
	mfs_chunk_view n1, n4;
	REQUIRE(view_of(s, &k[1], &n1) == 0 && view_of(s, &k[4], &n4) == 0);
	CHECK(n1.loc.pack != v1.loc.pack);
	CHECK_EQ_INT(n4.loc.pack, v4.loc.pack);
	uint8_t out[LEN];
	CHECK_EQ_INT(read_chunk(s, &k[1], out, LEN), 0);
	CHECK(!memcmp(out, raw[1], LEN));
	CHECK_EQ_INT(read_chunk(s, &k[4], out, LEN), MFS_E_CORRUPT);
	mfs_store_close(s);
	test_drop_dir(d);
}

/* ---- format 1 ---- */

static void test_format1(void)
{
	char *d = test_fresh_dir("pack");
	mfs_store *s;
	REQUIRE(d && mfs_store_open(d, MFS_STORE_CREATE, &s, NULL) == 0);
	/* an inline record, as format 1 wrote it, and its count */
	uint8_t raw[3000];
	fill(raw, sizeof raw);
	mfs_chunk_key k;
	mfs_chunk_key_of(raw, sizeof raw, &k);
	uint8_t rec[MFS_REC_CHUNK_HDR_MAX + sizeof raw];
	size_t h;
	REQUIRE(mfs_rec_chunk_header(
		    rec, &(mfs_chunk_meta){.codec = MFS_CODEC_RAW, .raw_len = sizeof raw},
		    &h) == 0);
	memcpy(rec + h, raw, sizeof raw);
	uint8_t zero[8] = {0};
	REQUIRE(put_raw(s, DB_CHUNKS, k.b, 16, rec, h + sizeof raw) == 0);
	REQUIRE(put_raw(s, DB_CHUNKREFS, k.b, 16, zero, 8) == 0);
	uint8_t one[8];
	mfs_put_le64(one, 1);
	REQUIRE(put_raw(s, DB_META, "format", 6, one, 8) == 0);
	mfs_store_close(s);
	/* refused, with the command that converts it */
	mfs_errmsg err = {0};
	CHECK_EQ_INT(mfs_store_open(d, MFS_STORE_RDONLY, &s, &err), MFS_E_VERSION);
	char want[512];
	snprintf(want, sizeof want,
		 "store %s is format 1 (payloads inside the index); run `modelfs upgrade "
		 "--store %s` to convert it in place (nothing was changed)",
		 d, d);
	CHECK(!strcmp(err.msg, want));
	CHECK_EQ_INT(mfs_store_open(d, MFS_STORE_RDONLY | MFS_STORE_UPGRADE, &s, NULL),
		     MFS_E_INVAL);
	/* for the upgrade: opened, read inline, converted */
	REQUIRE(mfs_store_open(d, MFS_STORE_UPGRADE, &s, NULL) == 0);
	CHECK_EQ_INT(mfs_store_format(s), 1);
	mfs_chunk_view v;
	REQUIRE(view_of(s, &k, &v) == 0);
	CHECK_EQ_INT(v.in_pack, 0);
	uint8_t out[sizeof raw];
	CHECK_EQ_INT(read_chunk(s, &k, out, sizeof out), 0);
	CHECK(!memcmp(out, raw, sizeof raw));
	mfs_txn *t;
	int moved = 0;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_chunk_upgrade(t, &k, &moved), 0);
	CHECK_EQ_INT(moved, 1);
	CHECK_EQ_INT(mfs_chunk_upgrade(t, &k, &moved), 0);
	CHECK_EQ_INT(moved, 0); /* already in a pack */
	CHECK_EQ_INT(mfs_store_format_set(t, 2), 0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);
	CHECK_EQ_INT(mfs_store_format(s), 2);
	mfs_store_close(s);
	REQUIRE(mfs_store_open(d, MFS_STORE_RDONLY, &s, NULL) == 0);
	REQUIRE(view_of(s, &k, &v) == 0);
	CHECK_EQ_INT(v.in_pack, 1);
	memset(out, 0, sizeof out);
	CHECK_EQ_INT(read_chunk(s, &k, out, sizeof out), 0);
	CHECK(!memcmp(out, raw, sizeof raw));
	uint64_t refs = 9;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	CHECK_EQ_INT(mfs_chunk_refcount(t, &k, &refs), 0);
	CHECK_EQ_INT(refs, 0);
	check_sound_in(t);
	mfs_txn_abort(t);
	mfs_store_close(s);
	test_drop_dir(d);
}

int main(void)
{
	seed = test_seed();
	RUN(test_round_trip);
	RUN(test_abort_and_crash);
	RUN(test_reuse);
	RUN(test_preopen_and_warm);
	RUN(test_merge_small);
	RUN(test_damage);
	RUN(test_two_writers);
	RUN(test_repack);
	RUN(test_repack_damaged);
	RUN(test_format1);
	return test_report();
}
