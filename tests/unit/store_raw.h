/*
 * store_raw.h - raw record writes for the unit tests that damage a store on
 * purpose (a bad version byte, a record naming nothing): through the LMDB
 * handles of index/store_internal.h, one write transaction each.
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

#endif
