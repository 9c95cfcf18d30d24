/*
 * replace.c - a store's index made another's, in place, in one write
 * transaction (replace.h).
 */
#include "replace.h"

#include <lmdb.h>
#include <string.h>

#include "store_internal.h"

/*
 * Walk dst's and src's records of one database in key order (both use
 * LMDB's default comparison) and make dst's src's.  The cursor on dst does
 * the writes, so it stays where the walk is: after a delete LMDB's
 * MDB_NEXT yields the record that followed; after a put of a key dst
 * lacked, the cursor is on it and MDB_NEXT yields the dst record the walk
 * was looking at.
 */
static int db_replace(MDB_txn *dt, MDB_dbi ddbi, MDB_txn *stx, MDB_dbi sdbi,
		      mfs_store_replace_stats *st)
{
	MDB_cursor *dc = NULL, *sc = NULL;
	int rc = mdb_cursor_open(dt, ddbi, &dc);
	if (rc == 0)
		rc = mdb_cursor_open(stx, sdbi, &sc);
	if (rc) {
		if (dc)
			mdb_cursor_close(dc);
		return mfs_db_rc(rc);
	}
	MDB_val dk, dv, sk, sv;
	int drc = mdb_cursor_get(dc, &dk, &dv, MDB_FIRST);
	int src = mdb_cursor_get(sc, &sk, &sv, MDB_FIRST);
	rc = 0;
	while (rc == 0 && (drc == 0 || src == 0)) {
		if ((drc && drc != MDB_NOTFOUND) || (src && src != MDB_NOTFOUND)) {
			rc = drc && drc != MDB_NOTFOUND ? drc : src;
			break;
		}
		int c = drc ? 1 : src ? -1 : mdb_cmp(dt, ddbi, &dk, &sk);
		if (c < 0) { /* only in dst */
			if ((rc = mdb_cursor_del(dc, 0)) == 0) {
				st->deletes++;
				drc = mdb_cursor_get(dc, &dk, &dv, MDB_NEXT);
			}
		} else if (c > 0) { /* only in src */
			if ((rc = mdb_cursor_put(dc, &sk, &sv, 0)) == 0) {
				st->puts++;
				drc = mdb_cursor_get(dc, &dk, &dv, MDB_NEXT);
				src = mdb_cursor_get(sc, &sk, &sv, MDB_NEXT);
			}
		} else if (dv.mv_size != sv.mv_size ||
			   memcmp(dv.mv_data, sv.mv_data, sv.mv_size) != 0) {
			if ((rc = mdb_cursor_put(dc, &sk, &sv, 0)) == 0) {
				st->puts++;
				drc = mdb_cursor_get(dc, &dk, &dv, MDB_NEXT);
				src = mdb_cursor_get(sc, &sk, &sv, MDB_NEXT);
			}
		} else {
			st->kept++;
			drc = mdb_cursor_get(dc, &dk, &dv, MDB_NEXT);
			src = mdb_cursor_get(sc, &sk, &sv, MDB_NEXT);
		}
	}
	mdb_cursor_close(sc);
	mdb_cursor_close(dc);
	return rc ? mfs_db_rc(rc) : 0;
}

int mfs_store_replace_index(mfs_store *dst, mfs_store *src, mfs_store_replace_stats *stp,
			    mfs_errmsg *e)
{
	mfs_store_replace_stats st = {0};
	if (src->format != MFS_STORE_FORMAT)
		return mfs_err(
		    e, MFS_E_VERSION,
		    "the index at %s is store format %u, this modelfs reads format "
		    "%d: upgrade modelfs",
		    src->dir, src->format, MFS_STORE_FORMAT);
	mfs_txn *st_txn = NULL, *dt_txn = NULL;
	int rc = mfs_txn_begin(src, MFS_TXN_READ, &st_txn);
	if (rc < 0)
		return mfs_err(e, rc, "cannot read the index at %s: %s", src->dir,
			       mfs_strerror(rc));
	uint64_t sgen = 0;
	if ((rc = mfs_store_generation(st_txn, &sgen)) < 0) {
		mfs_txn_abort(st_txn);
		return mfs_err(e, rc == MFS_E_NOTFOUND ? MFS_E_CORRUPT : rc,
			       "the index at %s has no readable generation record: %s",
			       src->dir, mfs_strerror(rc));
	}
	if ((rc = mfs_txn_begin(dst, MFS_TXN_WRITE, &dt_txn)) < 0) {
		mfs_txn_abort(st_txn);
		return mfs_err(e, rc, "cannot write the index of %s: %s", dst->dir,
			       rc == MFS_E_INVAL ? "it is open read-only"
						 : mfs_strerror(rc));
	}
	rc = mfs_store_generation(dt_txn, &st.generation_before);
	if (rc == MFS_E_NOTFOUND)
		st.generation_before = 0, rc = 0;
	st.generation = st.generation_before;
	if (rc == 0 && st.generation_before >= sgen) { /* nothing newer */
		mfs_txn_abort(dt_txn);
		mfs_txn_abort(st_txn);
		if (stp)
			*stp = st;
		return 0;
	}
	for (int i = 0; rc == 0 && i < DB__COUNT; i++)
		rc = db_replace(dt_txn->txn, DBI(dt_txn, i), st_txn->txn, DBI(st_txn, i),
				&st);
	if (rc < 0) {
		mfs_txn_abort(dt_txn);
		mfs_txn_abort(st_txn);
		return mfs_err(e, rc,
			       "cannot copy the index at %s into %s: %s (nothing was "
			       "changed)",
			       src->dir, dst->dir, mfs_strerror(rc));
	}
	/* src's pages are read until here: its snapshot ends after the commit */
	rc = mfs_txn_commit(dt_txn);
	mfs_txn_abort(st_txn);
	if (rc < 0)
		return mfs_err(e, rc,
			       "cannot commit the index of %s: %s (nothing was changed)",
			       dst->dir, mfs_strerror(rc));
	st.generation = sgen;
	if (stp)
		*stp = st;
	return 0;
}
