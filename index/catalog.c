/*
 * catalog.c - looking up what a store holds: repos, refs, commits, files,
 * blobs and tensors, one at a time or in key order (record layouts:
 * records.h; store.h, "repos, refs, commits, files" and "blobs and tensors").
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "store_internal.h"

struct str_iter {
	const void *cb;
	void *ud;
	size_t skip; /* key prefix length to skip */
};

static int repos_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char name[MFS_REPO_ID_MAX + 1];
	if (k->mv_size > MFS_REPO_ID_MAX)
		return MFS_E_CORRUPT;
	memcpy(name, k->mv_data, k->mv_size);
	name[k->mv_size] = '\0';
	mfs_repo_info ri = {.repo = name};
	if (mfs_rec_repo_decode(v->mv_data, v->mv_size, &ri) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_repo_info *))it->cb)(it->ud, &ri);
}

int mfs_repos_foreach(mfs_txn *t, int (*cb)(void *ud, const mfs_repo_info *r), void *ud)
{
	struct str_iter it = {(const void *)cb, ud, 0};
	return mfs_db_iter(t->txn, DBI(t, DB_REPOS), NULL, 0, repos_iter_fn, &it);
}

int mfs_repo_get(mfs_txn *t, const char *repo, mfs_repo_info *out)
{
	MDB_val k = {strlen(repo), (void *)repo}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_REPOS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	out->repo = NULL;
	return mfs_rec_repo_decode(v.mv_data, v.mv_size, out);
}

/* Copy the key's tail after a prefix into buf as a C string. */
static int key_tail(const MDB_val *k, size_t skip, char *buf, size_t cap)
{
	if (k->mv_size < skip || k->mv_size - skip >= cap)
		return MFS_E_CORRUPT;
	size_t n = k->mv_size - skip;
	memcpy(buf, (const char *)k->mv_data + skip, n);
	buf[n] = '\0';
	return 0;
}

static int refs_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char name[MFS_REF_MAX + 1];
	mfs_ref_info ri = {.name = name};
	if (key_tail(k, it->skip, name, sizeof name) < 0 ||
	    mfs_rec_ref_decode(v->mv_data, v->mv_size, ri.commit) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_ref_info *))it->cb)(it->ud, &ri);
}

int mfs_refs_foreach(mfs_txn *t, const char *repo,
		     int (*cb)(void *ud, const mfs_ref_info *r), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_REFS), pfx, pl, refs_iter_fn, &it);
}

int mfs_ref_get(mfs_txn *t, const char *repo, const char *ref, char commit[MFS_COMMIT_LEN + 1])
{
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, ref, NULL);
	if (!kl)
		return MFS_E_INVAL;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_REFS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	return mfs_rec_ref_decode(v.mv_data, v.mv_size, commit);
}

static int commits_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	mfs_commit_info ci;
	if (key_tail(k, it->skip, ci.commit, sizeof ci.commit) < 0)
		return MFS_E_CORRUPT;
	if (mfs_rec_commit_decode(v->mv_data, v->mv_size, &ci) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_commit_info *))it->cb)(it->ud, &ci);
}

int mfs_commits_foreach(mfs_txn *t, const char *repo,
			int (*cb)(void *ud, const mfs_commit_info *c), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_COMMITS), pfx, pl, commits_iter_fn, &it);
}

struct commit_pick {
	const char *want; /* a commit to find, or NULL for the newest */
	char *commit;
	uint64_t time;
	int found;
};

static int commit_pick_fn(void *ud, const mfs_commit_info *c)
{
	struct commit_pick *p = ud;
	if (p->want) {
		if (strcmp(p->want, c->commit) != 0)
			return 0;
		memcpy(p->commit, c->commit, MFS_COMMIT_LEN + 1);
		p->found = 1;
		return 1;
	}
	if (!p->found || c->time > p->time) {
		memcpy(p->commit, c->commit, MFS_COMMIT_LEN + 1);
		p->time = c->time;
		p->found = 1;
	}
	return 0;
}

int mfs_commit_pick(mfs_txn *t, const char *repo, const char *want,
		    char commit[MFS_COMMIT_LEN + 1])
{
	struct commit_pick p = {.want = want, .commit = commit};
	int rc = mfs_commits_foreach(t, repo, commit_pick_fn, &p);
	if (rc < 0)
		return rc;
	return p.found ? 0 : MFS_E_NOTFOUND;
}

static int files_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char path[MFS_PATH_MAX + 1];
	mfs_file_info fi = {.path = path};
	if (key_tail(k, it->skip, path, sizeof path) < 0 || mfs_file_val_decode(v, &fi) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_file_info *))it->cb)(it->ud, &fi);
}

int mfs_files_foreach(mfs_txn *t, const char *repo, const char *commit,
		      int (*cb)(void *ud, const mfs_file_info *f), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, commit);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_FILES), pfx, pl, files_iter_fn, &it);
}

int mfs_file_get(mfs_txn *t, const char *repo, const char *commit, const char *path,
		 mfs_file_info *out)
{
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, commit, path);
	if (!kl)
		return MFS_E_NOTFOUND;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_FILES), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	out->path = NULL;
	return mfs_file_val_decode(&v, out);
}

static int noexist_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char path[MFS_PATH_MAX + 1];
	if (key_tail(k, it->skip, path, sizeof path) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const char *))it->cb)(it->ud, path);
}

int mfs_noexist_foreach(mfs_txn *t, const char *repo, const char *commit,
			int (*cb)(void *ud, const char *path), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, commit);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_NOEXIST), pfx, pl, noexist_iter_fn, &it);
}

int mfs_blob_get(mfs_txn *t, const char *repo, const char *etag, mfs_blob_info *info,
		 mfs_extent **extents)
{
	if (extents)
		*extents = NULL;
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, etag, NULL);
	if (!kl || strlen(etag) > MFS_ETAG_MAX)
		return MFS_E_NOTFOUND;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_BLOBS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	const uint8_t *ep;
	if ((rc = mfs_blob_val_decode(&v, info, &ep)) < 0)
		return rc;
	strcpy(info->etag, etag);
	if (!extents)
		return 0;
	mfs_extent *e = malloc((info->n_extents ? info->n_extents : 1) * sizeof *e);
	if (!e)
		return -ENOMEM;
	if ((rc = mfs_rec_blob_extents(info, ep, e)) < 0) {
		free(e);
		return rc;
	}
	*extents = e;
	return 0;
}

static int blobs_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	mfs_blob_info bi;
	const uint8_t *ep;
	if (key_tail(k, it->skip, bi.etag, sizeof bi.etag) < 0 || mfs_blob_val_decode(v, &bi, &ep) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_blob_info *))it->cb)(it->ud, &bi);
}

int mfs_blobs_foreach(mfs_txn *t, const char *repo,
		      int (*cb)(void *ud, const mfs_blob_info *b), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_BLOBS), pfx, pl, blobs_iter_fn, &it);
}

size_t mfs_extent_find(const mfs_extent *ext, size_t n, uint64_t off)
{
	if (n == 0 || off >= ext[n - 1].off + ext[n - 1].len)
		return n;
	size_t lo = 0, hi = n - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo + 1) / 2;
		if (ext[mid].off <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static int tensors_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char name[MFS_REC_TENSOR_STRS];
	mfs_tensor_info ti;
	if (mfs_rec_tensor_decode(v->mv_data, v->mv_size, &ti, name) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_tensor_info *))it->cb)(it->ud, &ti);
}

int mfs_tensors_foreach(mfs_txn *t, const char *repo, const char *etag,
			int (*cb)(void *ud, const mfs_tensor_info *ti), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, etag);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_TENSORS), pfx, pl, tensors_iter_fn, &it);
}
