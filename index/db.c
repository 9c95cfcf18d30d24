/*
 * db.c - the LMDB helpers the index modules share (store_internal.h).
 */
#include <errno.h>
#include <string.h>

#include "bytes.h"
#include "store_internal.h"

const char *const mfs_db_names[DB__COUNT] = {
	"meta", "repos", "refs", "commits", "files", "noexist", "blobs", "tensors", "chunks",
	"chunkrefs", "packs",
};

/* Translate an LMDB return code. */
int mfs_db_rc(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return MFS_E_NOTFOUND;
	case MDB_KEYEXIST:
		return MFS_E_EXISTS;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return MFS_E_CORRUPT;
	case MDB_VERSION_MISMATCH:
		return MFS_E_VERSION;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
		return MFS_E_BUSY;
	}
	if (rc > 0)
		return -rc; /* an errno value */
	return MFS_E_DB;
}

/* Join parts with NUL separators; returns the length, or 0 when over LMDB's key limit. */
size_t mfs_db_key_join(char *buf, size_t cap, const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = b ? strlen(b) : 0, lc = c ? strlen(c) : 0;
	size_t n = la + (b ? 1 + lb : 0) + (c ? 1 + lc : 0);
	if (n > cap || n > 511 || n == 0)
		return 0;
	memcpy(buf, a, la);
	size_t o = la;
	if (b) {
		buf[o++] = '\0';
		memcpy(buf + o, b, lb);
		o += lb;
	}
	if (c) {
		buf[o++] = '\0';
		memcpy(buf + o, c, lc);
		o += lc;
	}
	return o;
}

/* A prefix "a\0b\0" (trailing separator) for iterating the records under a and b. */
size_t mfs_db_prefix_join(char *buf, size_t cap, const char *a, const char *b)
{
	size_t n = mfs_db_key_join(buf, cap - 1, a, b, NULL);
	if (!n)
		return 0;
	buf[n] = '\0';
	return n + 1;
}

/* Call fn for every record whose key starts with prefix (all records when plen == 0). */
int mfs_db_iter(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t plen, mfs_db_iter_fn fn,
		void *ud)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return mfs_db_rc(rc);
	MDB_val k = {plen, (void *)prefix}, v;
	rc = plen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
		  : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	int ret = 0;
	while (rc == 0) {
		if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
			break;
		ret = fn(ud, &k, &v);
		if (ret != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = mfs_db_rc(rc);
	mdb_cursor_close(cur);
	return ret;
}

int mfs_db_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	int rc = mdb_get(txn, dbi, &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	if (v.mv_size != 8)
		return MFS_E_CORRUPT;
	*out = mfs_get_le64(v.mv_data);
	return 0;
}

int mfs_db_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val)
{
	uint8_t b[8];
	mfs_put_le64(b, val);
	MDB_val k = {strlen(name), (void *)name}, v = {8, b};
	return mfs_db_rc(mdb_put(txn, dbi, &k, &v, 0));
}

/* Delete every record whose key starts with prefix. */
int mfs_db_delete_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t plen)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return mfs_db_rc(rc);
	MDB_val k = {plen, (void *)prefix}, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		/* After a delete, MDB_NEXT yields the deleted record's successor. */
		rc = mdb_cursor_del(cur, 0);
		if (rc)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : mfs_db_rc(rc);
}
