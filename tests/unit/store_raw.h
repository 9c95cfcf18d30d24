/*
 * store_raw.h - raw record writes for the unit tests that damage a store on
 * purpose (a bad version byte, a record naming nothing): through the LMDB
 * handles of index/store_internal.h, one write transaction each; and a
 * snapshot of one file published from chunks already stored, for the tests
 * that need files over their chunks (packs, upgrade).
 */
#ifndef MFS_TEST_STORE_RAW_H
#define MFS_TEST_STORE_RAW_H

#include <lmdb.h>

#include "store_internal.h"

/* Put @p v under @p k in database @p db. @return 0 or a store error */
static inline int put_raw(mfs_store *s, int db, const void *k, size_t kl, const void *v,
			  size_t vl)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
	rc = mfs_db_rc(mdb_put(t->txn, DBI(t, db), &key, &val, 0));
	if (rc < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

/* Delete the record under @p k of database @p db. @return 0 or a store error */
static inline int del_raw(mfs_store *s, int db, const void *k, size_t kl)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	MDB_val key = {kl, (void *)k};
	rc = mfs_db_rc(mdb_del(t->txn, DBI(t, db), &key, NULL));
	if (rc < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

/*
 * Publish commit @p commit of @p repo (ref main) whose one file model.bin
 * (0444) is blob @p etag of @p size bytes, made of the @p n extents @p ext
 * (borrowed), in one write transaction.  @return 0 or a store error
 */
static inline int test_publish_file(mfs_store *s, const char *repo, const char *commit,
				    const char *etag, const mfs_extent *ext, size_t n,
				    uint64_t size)
{
	mfs_blob_rec b = {.etag = etag, .size = size, .n_extents = n, .extents = ext};
	mfs_file_rec f = {.path = "model.bin", .etag = etag, .mode = 0444};
	const char *refs[] = {"main"};
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	if ((rc = mfs_blob_put(t, repo, &b, NULL)) < 0 ||
	    (rc = mfs_snapshot_publish(t, repo, commit, 1, &f, 1, NULL, 0, refs, 1, NULL)) < 0) {
		mfs_txn_abort(t);
		return rc;
	}
	return mfs_txn_commit(t);
}

#endif
