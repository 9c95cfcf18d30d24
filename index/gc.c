/*
 * gc.c - garbage collection: blobs no file points to, reference counts
 * recounted against the extents and references that use them, and the sweep
 * of chunks nothing uses (store.h, "removal and garbage collection").
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "grow.h"
#include "records.h"
#include "store_internal.h"

/* The set of repo\0etag keys that some file points to, sorted for bsearch. */
struct keyset {
	char **keys;
	size_t n, cap;
};

static int keyset_add_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct keyset *ks = ud;
	/* files key: repo \0 commit \0 path; value holds the etag */
	const char *kp = k->mv_data;
	size_t rl = strnlen(kp, k->mv_size);
	mfs_file_info fi;
	if (rl >= k->mv_size || mfs_file_val_decode(v, &fi) < 0)
		return MFS_E_CORRUPT;
	size_t el = strlen(fi.etag);
	char *s = malloc(rl + 1 + el + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, kp, rl);
	s[rl] = '\0';
	memcpy(s + rl + 1, fi.etag, el + 1);
	char **nk = mfs_grow(ks->keys, &ks->cap, ks->n, sizeof *nk, 256);
	if (!nk) {
		free(s);
		return -ENOMEM;
	}
	ks->keys = nk;
	ks->keys[ks->n++] = s;
	return 0;
}

/* Compare "repo\0etag" strings. */
static int pair_cmp(const char *a, const char *b)
{
	int c = strcmp(a, b);
	if (c)
		return c;
	return strcmp(a + strlen(a) + 1, b + strlen(b) + 1);
}

static int pair_qsort_cmp(const void *a, const void *b)
{
	return pair_cmp(*(char *const *)a, *(char *const *)b);
}

static int keyset_has(const struct keyset *ks, const char *pair)
{
	size_t lo = 0, hi = ks->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = pair_cmp(ks->keys[mid], pair);
		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Chunk keys of every blob extent, sorted; *damaged = 1 when a blob record does not parse. */
struct extent_keys {
	uint8_t (*k)[16];
	size_t n, cap;
	int damaged;
};

static int keys_push(struct extent_keys *ek, const mfs_chunk_key *key);

static int extent_keys_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct extent_keys *ek = ud;
	mfs_blob_info bi;
	const uint8_t *ep;
	if (mfs_blob_val_decode(v, &bi, &ep) < 0) {
		ek->damaged = 1;
		return 1; /* its chunks are unknown: no recount */
	}
	for (uint64_t i = 0; i < bi.n_extents; i++) {
		mfs_extent e;
		mfs_rec_extent_get(ep, i, &e);
		int rc = keys_push(ek, &e.key);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int key16_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static int keys_push(struct extent_keys *ek, const mfs_chunk_key *key)
{
	uint8_t(*g)[16] = mfs_grow(ek->k, &ek->cap, ek->n, sizeof *g, 4096);
	if (!g)
		return -ENOMEM;
	ek->k = g;
	memcpy(ek->k[ek->n++], key->b, 16);
	return 0;
}

/* The chunks each stored chunk references (a use each, like an extent). */
static int chunk_ref_keys_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct extent_keys *ek = ud;
	mfs_chunk_view cv;
	if (mfs_rec_chunk_decode(v->mv_data, v->mv_size, &cv) < 0) {
		ek->damaged = 1;
		return 1; /* its references are unknown: no recount */
	}
	for (uint32_t i = 0; i < cv.n_refs; i++) {
		int rc = keys_push(ek, &cv.refs[i].key);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Set every chunk's reference count to the number of blob extents and
 * stored chunks' references using it (the invariant in store.h).  Counts
 * drift only through damage: removing a repo whose blob record no longer
 * parses cannot lower the counts that blob gave.  Runs only when every blob
 * and chunk record parses (else a count might be lowered below what a
 * damaged record still uses, and its chunk freed); a count too low is
 * raised, so a chunk in use is never swept.
 */
static int recount_refs(mfs_txn *t, mfs_gc_stat *out)
{
	struct extent_keys ek = {0};
	int rc = mfs_db_iter(t->txn, DBI(t, DB_BLOBS), NULL, 0, extent_keys_fn, &ek);
	if (rc == 0 && !ek.damaged)
		rc = mfs_db_iter(t->txn, DBI(t, DB_CHUNKS), NULL, 0, chunk_ref_keys_fn, &ek);
	if (rc < 0 || ek.damaged) {
		out->recount_skipped = ek.damaged;
		free(ek.k);
		return rc < 0 ? rc : 0;
	}
	if (ek.n)
		qsort(ek.k, ek.n, 16, key16_cmp);
	MDB_cursor *cur;
	if ((rc = mfs_db_rc(mdb_cursor_open(t->txn, DBI(t, DB_CHUNKREFS), &cur))) < 0) {
		free(ek.k);
		return rc;
	}
	MDB_val k, v;
	size_t i = 0;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (mrc == 0) {
		if (k.mv_size != 16 || v.mv_size != 8) {
			mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue; /* verify reports it; not ours to guess */
		}
		while (i < ek.n && memcmp(ek.k[i], k.mv_data, 16) < 0)
			i++; /* an extent whose chunk has no count: verify's to report */
		uint64_t uses = 0;
		while (i < ek.n && memcmp(ek.k[i], k.mv_data, 16) == 0)
			uses++, i++;
		if (mfs_get_le64(v.mv_data) != uses) {
			uint8_t b[8];
			mfs_put_le64(b, uses);
			MDB_val nv = {8, b};
			if ((mrc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT)))
				break;
			out->counts_fixed++;
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	free(ek.k);
	return mrc == MDB_NOTFOUND || mrc == 0 ? 0 : mfs_db_rc(mrc);
}

/*
 * Remove every chunk whose count is 0, then drop one use of each chunk the
 * removed ones referenced (after the walk: the cursor is not disturbed).
 * @return 1 when such a drop reached 0 (another pass has work), 0, or an error
 */
static int sweep_pass(mfs_txn *t, mfs_gc_stat *out)
{
	struct extent_keys dropped = {0};
	MDB_cursor *cur;
	int rc = mfs_db_rc(mdb_cursor_open(t->txn, DBI(t, DB_CHUNKREFS), &cur));
	if (rc < 0)
		return rc;
	MDB_val k, v;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (mrc == 0) {
		if (v.mv_size == 8 && mfs_get_le64(v.mv_data) == 0 && k.mv_size == 16) {
			MDB_val ck = k, cv;
			if (mdb_get(t->txn, DBI(t, DB_CHUNKS), &ck, &cv) == 0) {
				mfs_chunk_view view;
				if (mfs_rec_chunk_decode(cv.mv_data, cv.mv_size, &view) == 0)
					for (uint32_t i = 0; i < view.n_refs && rc == 0; i++)
						rc = keys_push(&dropped, &view.refs[i].key);
				if (rc < 0)
					break;
				out->bytes_freed += cv.mv_size;
				if ((mrc = mdb_del(t->txn, DBI(t, DB_CHUNKS), &ck, NULL)))
					break;
			}
			if ((mrc = mdb_cursor_del(cur, 0)))
				break;
			out->chunks_removed++;
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc == 0 && mrc != MDB_NOTFOUND && mrc != 0)
		rc = mfs_db_rc(mrc);
	int again = 0;
	for (size_t i = 0; rc == 0 && i < dropped.n; i++) {
		mfs_chunk_key key;
		memcpy(key.b, dropped.k[i], 16);
		uint64_t n = 0;
		int grc = mfs_chunkrefs_get(t, &key, &n);
		if (grc == MFS_E_NOTFOUND || (grc == 0 && n == 0))
			continue; /* already gone, or already garbage */
		if (grc < 0)
			rc = grc;
		else if ((rc = mfs_chunkrefs_put(t, &key, n - 1)) == 0 && n == 1)
			again = 1;
	}
	free(dropped.k);
	return rc < 0 ? rc : again;
}

int mfs_gc_sweep(mfs_txn *t, mfs_gc_stat *out)
{
	memset(out, 0, sizeof *out);
	struct keyset ks = {0};
	int rc = mfs_db_iter(t->txn, DBI(t, DB_FILES), NULL, 0, keyset_add_fn, &ks);
	if (rc < 0)
		goto done;
	if (ks.n)
		qsort(ks.keys, ks.n, sizeof *ks.keys, pair_qsort_cmp);

	/* 1. blobs that no file points to (left by an ingest that died) */
	MDB_cursor *cur;
	if ((rc = mfs_db_rc(mdb_cursor_open(t->txn, DBI(t, DB_BLOBS), &cur))) < 0)
		goto done;
	MDB_val k, v;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (mrc == 0) {
		char pair[512];
		if (k.mv_size >= sizeof pair) {
			mrc = MDB_CORRUPTED;
			break;
		}
		memcpy(pair, k.mv_data, k.mv_size);
		pair[k.mv_size] = '\0';
		if (!keyset_has(&ks, pair)) {
			if ((rc = mfs_blob_unref(t, &v)) < 0)
				break;
			char tp[512];
			size_t tpl = mfs_db_prefix_join(tp, sizeof tp, pair, pair + strlen(pair) + 1);
			if (tpl && (rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_TENSORS), tp, tpl)) < 0)
				break;
			if ((mrc = mdb_cursor_del(cur, 0)))
				break;
			out->blobs_removed++;
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc < 0)
		goto done;
	if (mrc != MDB_NOTFOUND && mrc != 0) {
		rc = mfs_db_rc(mrc);
		goto done;
	}

	/* 2. reference counts against the extents that use them */
	if ((rc = recount_refs(t, out)) < 0)
		goto done;

	/* 3. chunks with no uses, then those whose last use was a chunk removed */
	while ((rc = sweep_pass(t, out)) > 0)
		;
	if (rc < 0)
		goto done;
	if (out->blobs_removed || out->chunks_removed || out->counts_fixed)
		rc = mfs_store_generation_bump(t);
done:
	for (size_t i = 0; i < ks.n; i++)
		free(ks.keys[i]);
	free(ks.keys);
	return rc;
}
