/*
 * gc.c - garbage collection: blobs no file points to, reference counts
 * recounted against the extents and references that use them, the sweep
 * of chunks nothing uses, and the packs: files and tails no commit
 * references, the repack of packs mostly dead, the unlink of retired packs
 * once no reader needs them (store.h, "removal and garbage collection").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "clock.h"
#include "fsutil.h"
#include "grow.h"
#include "pack.h"
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
				int parsed = mfs_rec_chunk_decode(cv.mv_data, cv.mv_size,
								  &view) == 0;
				if (parsed)
					for (uint32_t i = 0; i < view.n_refs && rc == 0; i++)
						rc = keys_push(&dropped, &view.refs[i].key);
				/* its entry's bytes are dead in its pack: repack gives
				 * them back */
				if (rc == 0 && parsed && view.in_pack)
					rc = mfs_pack_account(t, &view.loc, -1);
				if (rc < 0)
					break;
				out->bytes_freed +=
				    parsed && view.in_pack
					? mfs_pack_entry_bytes(view.loc.len)
					: cv.mv_size;
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

/* ---- packs: orphans, tails, repack, retired packs (mfs_gc_packs) ---- */

/* A pack file locked for gc's use: O_RDWR and flock(LOCK_EX), or -1 when a
 * writer holds it (or it cannot be opened). */
static int pack_lock(mfs_store *s, uint64_t id)
{
	char path[4200];
	if (mfs_pack_path(s, id, path, sizeof path) < 0)
		return -1;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * In one write transaction (no writer of any process is between its
 * appends and its commit meanwhile): remove pack files no record names
 * (left by a crash) and truncate packs to what committed transactions wrote,
 * each only when no writer holds its lock; drop the records of retired
 * packs whose file is gone.
 */
static int packs_cleanup(mfs_store *s, mfs_pack_gc_stat *st)
{
	char dir[4096];
	if (mfs_pack_dir(s, dir, sizeof dir) < 0)
		return MFS_E_INVAL;
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	DIR *d = opendir(dir);
	int removed = 0;
	if (d) {
		struct dirent *de;
		while (rc >= 0 && (de = readdir(d)) != NULL) {
			uint64_t id;
			if (!mfs_pack_name_parse(de->d_name, &id))
				continue;
			mfs_pack_rec r;
			int grc = mfs_pack_rec_get(t, id, &r);
			if (grc < 0 && grc != MFS_E_NOTFOUND)
				continue; /* a damaged record: check reports it; keep the
					     file */
			if (grc == 0 && r.state == MFS_PACK_RETIRED)
				continue; /* unlinked once no reader needs it */
			int fd = pack_lock(s, id);
			if (fd < 0)
				continue; /* a writer has it */
			struct stat fs;
			if (fstat(fd, &fs) == 0) {
				if (grc == MFS_E_NOTFOUND) {
					if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
						st->orphans_removed++;
						st->orphan_bytes += (uint64_t)fs.st_size;
						removed = 1;
					}
				} else if ((uint64_t)fs.st_size > r.committed_end &&
					   ftruncate(fd, (off_t)r.committed_end) == 0) {
					st->tails_truncated++;
					st->tail_bytes +=
					    (uint64_t)fs.st_size - r.committed_end;
				}
			}
			close(fd);
		}
		closedir(d);
	}
	if (rc >= 0) {
		rc = 0;
		/* retired packs whose file is gone (a gc died between the unlink and
		 * the record's removal) */
		struct retired_gone {
			uint64_t id[64];
			size_t n;
		} g = {.n = 0};
		MDB_cursor *cur;
		if ((rc = mfs_db_rc(mdb_cursor_open(t->txn, DBI(t, DB_PACKS), &cur))) ==
		    0) {
			MDB_val k, v;
			int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
			while (mrc == 0 && g.n < 64) {
				mfs_pack_rec r;
				if (k.mv_size == 8 &&
				    mfs_rec_pack_decode(v.mv_data, v.mv_size, &r) == 0 &&
				    r.state == MFS_PACK_RETIRED) {
					uint64_t id = 0;
					for (int i = 0; i < 8; i++)
						id = id << 8 |
						     ((const uint8_t *)k.mv_data)[i];
					char path[4200];
					struct stat ps;
					if (mfs_pack_path(s, id, path, sizeof path) ==
						0 &&
					    stat(path, &ps) < 0 && errno == ENOENT)
						g.id[g.n++] = id;
				}
				mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			}
			mdb_cursor_close(cur);
		}
		for (size_t i = 0; rc == 0 && i < g.n; i++)
			rc = mfs_pack_rec_del(t, g.id[i]);
	}
	if (rc < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	if ((rc = mfs_txn_commit(t)) < 0)
		return rc;
	return removed ? mfs_pack_dir_sync(s) : 0;
}

typedef struct cand {
	uint64_t id;
	int fd;		  /* locked: no writer appends meanwhile */
	uint64_t pending; /* entries of it not moved (damaged, or a move failed) */
	int small;	  /* taken only for being small (mfs_pack_gc_opts.merge_below) */
} cand;

typedef struct live_entry {
	mfs_chunk_key key;
	mfs_chunk_loc loc;
	size_t cand; /* index into the candidates */
} live_entry;

typedef struct repack {
	mfs_store *s;
	double below;
	uint64_t merge_below;
	size_t n_small; /* candidates taken only for being small */
	cand *c;
	size_t nc, capc;
	live_entry *e;
	size_t ne, cape;
} repack;

static int cand_fn(void *ud, uint64_t id, const mfs_pack_rec *r)
{
	repack *rp = ud;
	if (!r || r->state == MFS_PACK_RETIRED || r->committed_end < MFS_PACK_HDR)
		return 0;
	uint64_t written = r->committed_end - MFS_PACK_HDR;
	double live = written ? (double)r->live_bytes / (double)written : 0.0;
	int small = !(live < rp->below);
	if (small && !(written && r->committed_end < rp->merge_below))
		return 0;
	int fd = pack_lock(rp->s, id);
	if (fd < 0)
		return 0; /* a writer has it, or its file is gone: not ours now */
	cand *g = mfs_grow(rp->c, &rp->capc, rp->nc, sizeof *g, 16);
	if (!g) {
		close(fd);
		return -ENOMEM;
	}
	rp->c = g;
	rp->c[rp->nc++] = (cand){id, fd, 0, small};
	rp->n_small += small;
	return 0;
}

/* A single small pack has nothing to merge with: moving it gains nothing. */
static void cand_drop_lone_small(repack *rp)
{
	if (rp->n_small != 1)
		return;
	for (size_t i = 0; i < rp->nc; i++)
		if (rp->c[i].small) {
			close(rp->c[i].fd);
			rp->c[i] = rp->c[--rp->nc];
			rp->n_small = 0;
			return;
		}
}

static size_t cand_find(const repack *rp, uint64_t id)
{
	for (size_t i = 0; i < rp->nc; i++)
		if (rp->c[i].id == id)
			return i;
	return rp->nc;
}

static int live_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	repack *rp = ud;
	mfs_chunk_view cv;
	if (k->mv_size != 16 || mfs_rec_chunk_decode(v->mv_data, v->mv_size, &cv) < 0 ||
	    !cv.in_pack)
		return 0;
	size_t ci = cand_find(rp, cv.loc.pack);
	if (ci == rp->nc)
		return 0;
	live_entry *g = mfs_grow(rp->e, &rp->cape, rp->ne, sizeof *g, 1024);
	if (!g)
		return -ENOMEM;
	rp->e = g;
	live_entry *x = &rp->e[rp->ne++];
	memcpy(x->key.b, k->mv_data, 16);
	x->loc = cv.loc;
	x->cand = ci;
	return 0;
}

static int live_cmp(const void *a, const void *b)
{
	const live_entry *x = a, *y = b;
	if (x->loc.pack != y->loc.pack)
		return x->loc.pack < y->loc.pack ? -1 : 1;
	return x->loc.off < y->loc.off ? -1 : x->loc.off > y->loc.off;
}

/* One copied entry: where it was, where it is now. */
typedef struct moved {
	size_t e;	  /* index into rp->e */
	mfs_chunk_loc to; /* in the new pack */
} moved;

/* The new pack the copies go to. */
typedef struct target {
	uint64_t id;
	int fd;
	uint64_t end;
} target;

static void step(const mfs_pack_gc_opts *o, const char *what)
{
	if (o && o->step)
		o->step(o->ud, what);
}

/*
 * Commit the moves of one batch (their bytes are in @p q, synced): each
 * record still naming its old place names the new one; one whose record
 * went or moved meanwhile leaves its copy dead in @p q.
 */
static int commit_moves(repack *rp, target *q, const moved *mv, size_t n, int seal,
			mfs_pack_gc_stat *st)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(rp->s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	mfs_pack_rec qr;
	if ((rc = mfs_pack_rec_get(t, q->id, &qr)) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		live_entry *x = &rp->e[mv[i].e];
		uint64_t eb = mfs_pack_entry_bytes(x->loc.len);
		MDB_val k = {16, x->key.b}, v;
		mfs_chunk_view cv;
		int mrc = mdb_get(t->txn, DBI(t, DB_CHUNKS), &k, &v);
		if (mrc != 0 || mfs_rec_chunk_decode(v.mv_data, v.mv_size, &cv) < 0 ||
		    !cv.in_pack || cv.loc.pack != x->loc.pack ||
		    cv.loc.off != x->loc.off || cv.loc.len != x->loc.len) {
			if (mrc != 0 && mrc != MDB_NOTFOUND) {
				rc = mfs_db_rc(mrc);
				goto fail;
			}
			qr.dead_bytes +=
			    eb; /* gone or moved by another: the copy is dead */
			continue;
		}
		mfs_chunk_meta m = {.codec = cv.codec,
				    .raw_len = cv.raw_len,
				    .n_refs = cv.n_refs,
				    .refs = cv.refs,
				    .geom = cv.has_geom ? &cv.geom : NULL};
		uint8_t rec[MFS_REC_CHUNK_MAX];
		size_t rl;
		if ((rc = mfs_rec_chunk_encode(rec, &m, &mv[i].to, &rl)) < 0)
			goto fail;
		MDB_val nv = {rl, rec};
		if ((rc = mfs_db_rc(mdb_put(t->txn, DBI(t, DB_CHUNKS), &k, &nv, 0))) <
			0 ||
		    (rc = mfs_pack_account(t, &x->loc, -1)) < 0)
			goto fail;
		qr.live_bytes += eb;
		st->chunks_moved++;
		st->bytes_moved += eb;
	}
	qr.committed_end = q->end;
	if (seal)
		qr.state = MFS_PACK_SEALED;
	if ((rc = mfs_pack_rec_put(t, q->id, &qr)) < 0)
		goto fail;
	return mfs_txn_commit(t);
fail:
	mfs_txn_abort(t);
	return rc;
}

/* A new pack for the copies (its record committed before anything names it). */
static int target_open(mfs_store *s, target *q)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	if ((rc = mfs_pack_create(t, &q->id, &q->fd)) < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	if ((rc = mfs_txn_commit(t)) < 0) {
		char path[4200];
		mfs_pack_path(s, q->id, path, sizeof path);
		unlink(path);
		close(q->fd);
		q->fd = -1;
		return rc;
	}
	q->end = MFS_PACK_HDR;
	return mfs_pack_dir_sync(s);
}

/* Copy the live entries of the candidates into new packs, in batches. */
static int repack_copy(repack *rp, const mfs_pack_gc_opts *o, mfs_pack_gc_stat *st)
{
	uint64_t batch = o && o->batch_bytes ? o->batch_bytes : (uint64_t)64 << 20;
	target q = {.fd = -1};
	moved *mv = NULL;
	size_t nmv = 0, capmv = 0;
	uint64_t in_batch = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc = 0;
	size_t uncommitted = 0; /* entries from here on are not moved yet */
	for (size_t i = 0; rc == 0 && i < rp->ne; i++) {
		live_entry *x = &rp->e[i];
		size_t need = MFS_PACK_ENTRY_HDR + (size_t)x->loc.len;
		if (need > cap) {
			uint8_t *nb = realloc(buf, need);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			cap = need;
		}
		/* the entry as a reader checks it: a damaged one stays where it is
		 * (its pack with it), for verify to name and repair */
		if (mfs_pread_full(rp->c[x->cand].fd, buf, need, x->loc.off,
				   MFS_E_CORRUPT, NULL) < 0 ||
		    mfs_pack_entry_header_check(buf, &x->key, x->loc.len, NULL, 0) < 0) {
			rp->c[x->cand].pending++;
			st->damaged_entries++;
			continue;
		}
		if (q.fd < 0 && (rc = target_open(rp->s, &q)) < 0)
			break;
		ssize_t w = -1;
		for (size_t done = 0; done < need; done += (size_t)w) {
			w = pwrite(q.fd, buf + done, need - done, (off_t)(q.end + done));
			if (w < 0 && errno == EINTR) {
				w = 0;
				continue;
			}
			if (w <= 0)
				break;
		}
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		moved *g = mfs_grow(mv, &capmv, nmv, sizeof *g, 256);
		if (!g) {
			rc = -ENOMEM;
			break;
		}
		mv = g;
		mv[nmv++] = (moved){i, {q.id, q.end, x->loc.len}};
		q.end += need;
		in_batch += need;
		int full = q.end >= MFS_PACK_LIMIT;
		if (in_batch >= batch || full || i + 1 == rp->ne) {
			if (fdatasync(q.fd) < 0) {
				rc = -errno;
				break;
			}
			if ((rc = commit_moves(rp, &q, mv, nmv, full, st)) < 0)
				break;
			uncommitted = i + 1;
			step(o, "moved a batch of entries");
			nmv = 0;
			in_batch = 0;
			if (full) {
				close(q.fd);
				q.fd = -1;
			}
		}
	}
	if (rc == 0 && nmv) { /* the last entries were damaged: commit what moved */
		if (fdatasync(q.fd) < 0)
			rc = -errno;
		else if ((rc = commit_moves(rp, &q, mv, nmv, 0, st)) == 0)
			uncommitted = rp->ne;
	}
	if (rc < 0) /* what was not moved keeps its pack */
		for (size_t k = uncommitted; k < rp->ne; k++)
			rp->c[rp->e[k].cand].pending++;
	if (q.fd >= 0)
		close(q.fd);
	free(mv);
	free(buf);
	return rc;
}

/* In the retiring transaction: a candidate some chunk record still names
 * (whatever the bookkeeping above says) is not retired. */
static int still_named_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	repack *rp = ud;
	mfs_chunk_view cv;
	(void)k;
	if (mfs_rec_chunk_decode(v->mv_data, v->mv_size, &cv) == 0 && cv.in_pack) {
		size_t ci = cand_find(rp, cv.loc.pack);
		if (ci < rp->nc)
			rp->c[ci].pending++;
	}
	return 0;
}

/* Mark the candidates every entry of which moved as retired. */
static int repack_retire(repack *rp, mfs_pack_gc_stat *st)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(rp->s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	uint64_t txnid = (uint64_t)mdb_txn_id(t->txn);
	int any = 0;
	if ((rc = mfs_db_iter(t->txn, DBI(t, DB_CHUNKS), NULL, 0, still_named_fn, rp)) < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	for (size_t i = 0; rc == 0 && i < rp->nc; i++) {
		if (rp->c[i].pending)
			continue;
		mfs_pack_rec r;
		if ((rc = mfs_pack_rec_get(t, rp->c[i].id, &r)) < 0)
			break;
		/* no record names it: what it holds is dead, whatever drift the
		 * counts had */
		r.live_bytes = 0;
		r.dead_bytes = r.committed_end - MFS_PACK_HDR;
		r.state = MFS_PACK_RETIRED;
		r.retired_txnid = txnid;
		rc = mfs_pack_rec_put(t, rp->c[i].id, &r);
		st->packs_repacked++;
		st->packs_merged += rp->c[i].small != 0;
		any = 1;
	}
	/* a mount moves its views on at a new generation: the old snapshots that
	 * keep a retired pack then end */
	if (rc == 0 && any)
		rc = mfs_store_generation_bump(t);
	if (rc < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

/* mdb_reader_list's lines: "pid thread txnid" or "pid thread -" (idle). */
static int reader_line(const char *msg, void *ctx)
{
	uint64_t *oldest = ctx;
	int pid;
	unsigned long long tid, txnid;
	if (sscanf(msg, "%d %llx %llu", &pid, &tid, &txnid) == 3 && txnid < *oldest)
		*oldest = txnid;
	return 0;
}

/* The snapshot the oldest active reader of the store holds (UINT64_MAX: none). */
static uint64_t oldest_reader(mfs_store *s)
{
	int dead = 0;
	mdb_reader_check(s->env, &dead); /* slots of processes that died */
	uint64_t oldest = UINT64_MAX;
	mdb_reader_list(s->env, reader_line, &oldest);
	return oldest;
}

struct retired_list {
	uint64_t id[256], txnid[256];
	size_t n;
};

static int retired_fn(void *ud, uint64_t id, const mfs_pack_rec *r)
{
	struct retired_list *l = ud;
	if (r && r->state == MFS_PACK_RETIRED && l->n < 256) {
		l->id[l->n] = id;
		l->txnid[l->n++] = r->retired_txnid;
	}
	return 0;
}

/*
 * Unlink the retired packs no reader can still need: every reader slot
 * holds a snapshot at least as new as the transaction that retired it (an
 * older one may have looked a location up in it, and opens the file only
 * now).  Waits up to @p wait_ms for older readers to end (a mount moves to
 * the new generation within a tick); what is still needed stays for the
 * next gc.
 */
static int retired_unlink(mfs_store *s, unsigned wait_ms, mfs_pack_gc_stat *st)
{
	uint64_t t0 = mfs_now_ms();
	for (;;) {
		struct retired_list l = {.n = 0};
		mfs_txn *t;
		int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
		if (rc < 0)
			return rc;
		rc = mfs_packs_foreach(t, retired_fn, &l);
		mfs_txn_abort(t);
		if (rc < 0)
			return rc;
		uint64_t oldest = oldest_reader(s);
		uint64_t gone[256];
		size_t ng = 0, left = 0;
		for (size_t i = 0; i < l.n; i++) {
			if (oldest < l.txnid[i]) {
				left++;
				continue;
			}
			char path[4200];
			struct stat ps;
			if (mfs_pack_path(s, l.id[i], path, sizeof path) < 0)
				continue;
			if (stat(path, &ps) == 0 && unlink(path) == 0) {
				st->packs_removed++;
				st->bytes_removed += (uint64_t)ps.st_size;
			}
			gone[ng++] = l.id[i];
		}
		if (ng) {
			if ((rc = mfs_pack_dir_sync(s)) < 0)
				return rc;
			if ((rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t)) < 0)
				return rc;
			for (size_t i = 0; rc == 0 && i < ng; i++)
				rc = mfs_pack_rec_del(t, gone[i]);
			if (rc < 0) {
				mfs_txn_abort(t);
				return rc;
			}
			if ((rc = mfs_txn_commit(t)) < 0)
				return rc;
		}
		st->packs_waiting = left;
		if (!left || mfs_now_ms() - t0 >= wait_ms)
			return 0;
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int mfs_gc_packs(mfs_store *s, const mfs_pack_gc_opts *o, mfs_pack_gc_stat *out,
		 mfs_errmsg *err)
{
	memset(out, 0, sizeof *out);
	if (s->rdonly || s->format < 2)
		return mfs_err(err, MFS_E_INVAL,
			       "store %s: packs are gc'd in a writable store of "
			       "format 2",
			       s->dir);
	char path[4200];
	snprintf(path, sizeof path, "%s/gc.lock", s->dir);
	int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0)
		return mfs_err(err, -errno, "cannot open %s: %s", path, strerror(errno));
	int rc;
	while ((rc = flock(lock, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (rc < 0) {
		rc = -errno;
		close(lock);
		return mfs_err(err, rc, "cannot lock %s: %s", path, mfs_strerror(rc));
	}
	repack rp = {.s = s,
		     .below = o ? o->repack_below : 0.5,
		     .merge_below = o ? o->merge_below : 0};
	const char *what = "removing unreferenced pack files and tails";
	if ((rc = packs_cleanup(s, out)) < 0)
		goto out;
	step(o, "cleaned up");
	what = "repacking";
	if (rp.below > 0 || rp.merge_below > 0) {
		mfs_txn *t;
		if ((rc = mfs_txn_begin(s, MFS_TXN_READ, &t)) < 0)
			goto out;
		rc = mfs_packs_foreach(t, cand_fn, &rp);
		cand_drop_lone_small(&rp);
		if (rc == 0 && rp.nc)
			rc =
			    mfs_db_iter(t->txn, DBI(t, DB_CHUNKS), NULL, 0, live_fn, &rp);
		mfs_txn_abort(t);
		if (rc < 0)
			goto out;
		if (rp.ne)
			qsort(rp.e, rp.ne, sizeof *rp.e, live_cmp);
		if (rp.nc) {
			rc = repack_copy(&rp, o, out);
			/* what moved is committed: retire what is wholly moved even when
			 * a later batch failed */
			int rrc = repack_retire(&rp, out);
			if (rc == 0)
				rc = rrc;
			if (rc < 0)
				goto out;
			step(o, "retired");
		}
	}
	what = "removing retired packs";
	rc = retired_unlink(s, o ? o->wait_ms : 0, out);
out:
	for (size_t i = 0; i < rp.nc; i++)
		close(rp.c[i].fd);
	free(rp.c);
	free(rp.e);
	close(lock);
	if (rc < 0)
		return mfs_err(err, rc,
			       "gc of the packs of store %s failed while %s: %s "
			       "(what was committed is consistent: run gc again)",
			       s->dir, what, mfs_strerror(rc));
	return 0;
}
