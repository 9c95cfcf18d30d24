/*
 * publish.c - writing what ingest made visible: blob and tensor records, a
 * snapshot's repo, commit, files and refs in one transaction, the in-place
 * updates of repair, and removing a repo (store.h, "blobs and tensors",
 * "publishing" and "removal").
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "records.h"
#include "store_internal.h"

/* ---- blobs and tensors ----
 * A tensors key holds the name itself, or for a long name a prefix and a hash;
 * the record always holds the whole name.
 */
#define TENSOR_KEY_NAME_MAX 200

/* The tensors key: the name itself, or for long names a prefix plus a hash. */
static size_t tensor_key(char *buf, size_t cap, const char *repo, const char *etag,
			 const char *name, size_t data_off_for_order)
{
	char kn[TENSOR_KEY_NAME_MAX + 24];
	size_t nl = strlen(name);
	if (nl <= TENSOR_KEY_NAME_MAX) {
		memcpy(kn, name, nl + 1);
	} else {
		memcpy(kn, name, TENSOR_KEY_NAME_MAX - 17);
		snprintf(kn + TENSOR_KEY_NAME_MAX - 17, 18, "#%016llx",
			 (unsigned long long)XXH3_64bits(name, nl));
	}
	(void)data_off_for_order;
	return mfs_db_key_join(buf, cap, repo, etag, kn);
}

int mfs_blob_put(mfs_txn *t, const char *repo, const mfs_blob_rec *b, int *existed)
{
	if (existed)
		*existed = 0;
	if (!mfs_etag_ok(b->etag))
		return MFS_E_INVAL;
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, b->etag, NULL);
	if (!kl)
		return MFS_E_INVAL;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_BLOBS), &k, &v);
	mfs_blob_info old;
	const uint8_t *old_ext;
	if (rc == 0 && mfs_blob_val_decode(&v, &old, &old_ext) == 0) {
		if (existed)
			*existed = 1;
		return 0;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mfs_db_rc(rc);
	/* rc == 0 here: a damaged record, which this one replaces (re-ingest
	 * repairs it; the counts it gave are gc's recount to settle) */
	char tp[512];
	size_t tpl = mfs_db_prefix_join(tp, sizeof tp, repo, b->etag);
	if (rc == 0 && tpl && (rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_TENSORS), tp, tpl)) < 0)
		return rc;
	uint64_t expect = 0;
	for (size_t i = 0; i < b->n_extents; i++) {
		if (b->extents[i].off != expect || b->extents[i].len == 0)
			return MFS_E_INVAL;
		expect += b->extents[i].len;
		if ((rc = mfs_chunkrefs_add(t, &b->extents[i].key, +1)) < 0)
			return rc;
	}
	if (expect != b->size)
		return MFS_E_INVAL;
	size_t blen;
	if ((rc = mfs_rec_blob_size(b->n_extents, &blen)) < 0)
		return rc;
	v.mv_size = blen;
	rc = mdb_put(t->txn, DBI(t, DB_BLOBS), &k, &v, MDB_RESERVE);
	if (rc)
		return mfs_db_rc(rc);
	if ((rc = mfs_rec_blob_encode(v.mv_data, blen, b)) < 0)
		return rc;
	for (size_t i = 0; i < b->n_tensors; i++) {
		const mfs_tensor_info *ti = &b->tensors[i];
		uint8_t rec[MFS_REC_TENSOR_MAX];
		size_t rl;
		if ((rc = mfs_rec_tensor_encode(rec, ti, &rl)) < 0)
			return rc;
		char tk[512];
		size_t tkl = tensor_key(tk, sizeof tk, repo, b->etag, ti->name, 0);
		if (!tkl)
			return MFS_E_INVAL;
		MDB_val kk = {tkl, tk}, vv = {rl, rec};
		if ((rc = mdb_put(t->txn, DBI(t, DB_TENSORS), &kk, &vv, 0)))
			return mfs_db_rc(rc);
	}
	return 0;
}

int mfs_blob_set_stored(mfs_txn *t, const char *repo, const char *etag, uint64_t stored_bytes)
{
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, etag, NULL);
	if (!kl || !mfs_etag_ok(etag))
		return MFS_E_INVAL;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_BLOBS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	mfs_blob_info bi;
	if ((rc = mfs_blob_val_decode(&v, &bi, NULL)) < 0)
		return rc;
	uint8_t *copy = malloc(v.mv_size);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, v.mv_data, v.mv_size);
	mfs_rec_blob_set_stored(copy, stored_bytes);
	MDB_val nv = {v.mv_size, copy};
	rc = mfs_db_rc(mdb_put(t->txn, DBI(t, DB_BLOBS), &k, &nv, 0));
	free(copy);
	return rc;
}

int mfs_tensor_update(mfs_txn *t, const char *repo, const char *etag, const mfs_tensor_info *ti)
{
	if (!mfs_etag_ok(etag) || !ti || !ti->name)
		return MFS_E_INVAL;
	char tk[512];
	size_t tkl = tensor_key(tk, sizeof tk, repo, etag, ti->name, 0);
	if (!tkl)
		return MFS_E_INVAL;
	MDB_val kk = {tkl, tk}, vv;
	int rc = mdb_get(t->txn, DBI(t, DB_TENSORS), &kk, &vv);
	if (rc)
		return mfs_db_rc(rc); /* MDB_NOTFOUND -> MFS_E_NOTFOUND */
	uint8_t rec[MFS_REC_TENSOR_MAX];
	size_t rl;
	if ((rc = mfs_rec_tensor_encode(rec, ti, &rl)) < 0)
		return rc;
	vv.mv_size = rl;
	vv.mv_data = rec;
	return mfs_db_rc(mdb_put(t->txn, DBI(t, DB_TENSORS), &kk, &vv, 0));
}

static int put_kv(mfs_txn *t, int db, const char *key, size_t kl, const void *val, size_t vl)
{
	MDB_val k = {kl, (void *)key}, v = {vl, (void *)val};
	return mfs_db_rc(mdb_put(t->txn, DBI(t, db), &k, &v, 0));
}

/* Is one ref name a folder of the other ("main" and "main/sub")? */
static int ref_nested(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la == lb)
		return 0;
	const char *s = la < lb ? a : b, *l = la < lb ? b : a;
	size_t n = la < lb ? la : lb;
	return !strncmp(s, l, n) && l[n] == '/';
}

struct ref_conflict {
	const char *name;
	char other[MFS_REF_MAX + 1];
};

static int ref_conflict_fn(void *ud, const mfs_ref_info *r)
{
	struct ref_conflict *c = ud;
	if (!ref_nested(c->name, r->name))
		return 0;
	snprintf(c->other, sizeof c->other, "%s", r->name);
	return 1;
}

/*
 * Ref refs[i] may not be a folder of another ref of the repo, or hold one
 * (git's rule: refs are files under refs/, and "main" cannot be both a file
 * and a folder there, as the hub cache on disk could not hold both).
 */
static int ref_conflict_check(mfs_txn *t, const char *repo, const char *const *refs,
			      size_t n_refs, size_t i, mfs_errmsg *err)
{
	struct ref_conflict c = {.name = refs[i]};
	for (size_t j = 0; j < n_refs && !c.other[0]; j++)
		if (ref_nested(refs[i], refs[j]))
			snprintf(c.other, sizeof c.other, "%s", refs[j]);
	if (!c.other[0]) {
		int rc = mfs_refs_foreach(t, repo, ref_conflict_fn, &c);
		if (rc < 0)
			return mfs_err(err, rc, "%s: reading its refs failed: %s", repo,
				       mfs_strerror(rc));
	}
	if (!c.other[0])
		return 0;
	return mfs_err(err, MFS_E_INVAL,
		       "%s: ref \"%s\" cannot sit beside ref \"%s\" (one would be a "
		       "folder of the other): choose another name with --ref",
		       repo, refs[i], c.other);
}

int mfs_snapshot_publish(mfs_txn *t, const char *repo, const char *commit, uint64_t time,
			 const mfs_file_rec *files, size_t n_files, const char *const *noexist,
			 size_t n_noexist, const char *const *refs, size_t n_refs,
			 mfs_errmsg *err)
{
	int rc;
	if ((rc = mfs_repo_id_check(repo, err)) < 0)
		return rc;
	if (!mfs_commit_ok(commit))
		return mfs_err(err, MFS_E_INVAL, "%s: commit \"%s\" is not 40 lower-case hex",
			       repo, commit);
	char key[512];
	/* repo record: keep the creation time of an existing repo */
	uint64_t created = time;
	mfs_repo_info old;
	if (mfs_repo_get(t, repo, &old) == 0)
		created = old.created;
	uint8_t rrec[MFS_REC_REPO_LEN];
	mfs_rec_repo_encode(rrec, created, time);
	if ((rc = put_kv(t, DB_REPOS, repo, strlen(repo), rrec, sizeof rrec)) < 0)
		return rc;
	/* commit record */
	size_t kl = mfs_db_key_join(key, sizeof key, repo, commit, NULL);
	uint8_t crec[MFS_REC_COMMIT_LEN];
	mfs_rec_commit_encode(crec, time, n_files);
	if ((rc = put_kv(t, DB_COMMITS, key, kl, crec, sizeof crec)) < 0)
		return rc;
	/* files: replace the commit's list */
	size_t pl = mfs_db_prefix_join(key, sizeof key, repo, commit);
	if ((rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_FILES), key, pl)) < 0 ||
	    (rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_NOEXIST), key, pl)) < 0)
		return rc;
	for (size_t i = 0; i < n_files; i++) {
		const mfs_file_rec *f = &files[i];
		if ((rc = mfs_repo_path_check(f->path, err)) < 0)
			return rc;
		mfs_blob_info bi;
		if (mfs_blob_get(t, repo, f->etag, &bi, NULL) < 0)
			return mfs_err(err, MFS_E_NOTFOUND,
				       "%s: file %s points to blob %s, which is not stored", repo,
				       f->path, f->etag);
		kl = mfs_db_key_join(key, sizeof key, repo, commit, f->path);
		if (!kl)
			return mfs_err(err, MFS_E_INVAL, "%s: path too long: %s", repo,
				       f->path);
		uint8_t frec[MFS_REC_FILE_MAX];
		size_t fl;
		if (mfs_rec_file_encode(frec, f->mode, f->etag, &fl) < 0)
			return mfs_err(err, MFS_E_INVAL, "%s: file %s: invalid etag \"%s\"",
				       repo, f->path, f->etag);
		if ((rc = put_kv(t, DB_FILES, key, kl, frec, fl)) < 0)
			return rc;
	}
	for (size_t i = 0; i < n_noexist; i++) {
		if (mfs_repo_path_check(noexist[i], NULL) < 0)
			continue; /* a .no_exist entry we cannot name is only a cache hint */
		kl = mfs_db_key_join(key, sizeof key, repo, commit, noexist[i]);
		if (kl && (rc = put_kv(t, DB_NOEXIST, key, kl, "", 0)) < 0)
			return rc;
	}
	for (size_t i = 0; i < n_refs; i++) {
		if ((rc = mfs_ref_name_check(refs[i], err)) < 0)
			return mfs_err_prefix(err, rc, "%s", repo);
		if ((rc = ref_conflict_check(t, repo, refs, n_refs, i, err)) < 0)
			return rc;
		kl = mfs_db_key_join(key, sizeof key, repo, refs[i], NULL);
		if (!kl || (rc = put_kv(t, DB_REFS, key, kl, commit, MFS_COMMIT_LEN)) < 0)
			return rc ? rc : MFS_E_INVAL;
	}
	return mfs_store_generation_bump(t);
}

/* ---- removal ---- */

int mfs_blob_unref(mfs_txn *t, const MDB_val *v_in)
{
	/* Copy the record: the writes below may move pages that v_in points into. */
	MDB_val v = {v_in->mv_size, malloc(v_in->mv_size ? v_in->mv_size : 1)};
	if (!v.mv_data)
		return -ENOMEM;
	memcpy(v.mv_data, v_in->mv_data, v_in->mv_size);
	mfs_blob_info bi;
	const uint8_t *ep;
	/*
	 * A record that does not parse names no chunks we can find: its
	 * chunks keep the counts it gave them (too high: kept, never lost),
	 * which gc's recount lowers once no damaged blob record is left.
	 */
	int rc = mfs_blob_val_decode(&v, &bi, &ep) < 0 ? 1 : 0;
	for (uint64_t i = 0; rc == 0 && i < bi.n_extents; i++) {
		mfs_extent e;
		mfs_rec_extent_get(ep, i, &e);
		rc = mfs_chunkrefs_add(t, &e.key, -1);
		if (rc == MFS_E_NOTFOUND)
			rc = 0;
	}
	free(v.mv_data);
	return rc > 0 ? 0 : rc;
}

static int unref_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	return mfs_blob_unref(ud, v);
}

int mfs_repo_remove(mfs_txn *t, const char *repo)
{
	MDB_val k = {strlen(repo), (void *)repo}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_REPOS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	if ((rc = mfs_db_iter(t->txn, DBI(t, DB_BLOBS), pfx, pl, unref_iter_fn, t)) < 0)
		return rc;
	static const int dbs[] = {DB_REFS, DB_COMMITS, DB_FILES, DB_NOEXIST, DB_BLOBS,
				  DB_TENSORS};
	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++)
		if ((rc = mfs_db_delete_prefix(t->txn, DBI(t, dbs[i]), pfx, pl)) < 0)
			return rc;
	if ((rc = mdb_del(t->txn, DBI(t, DB_REPOS), &k, NULL)))
		return mfs_db_rc(rc);
	return mfs_store_generation_bump(t);
}
