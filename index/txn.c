/*
 * txn.c - transactions over a store's environment and the generation that
 * tells readers what changed (store.h, "transactions").
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "store_internal.h"

int mfs_txn_begin(mfs_store *s, unsigned flags, mfs_txn **out)
{
	*out = NULL;
	int write = (flags & MFS_TXN_WRITE) != 0;
	if (write && s->rdonly)
		return MFS_E_INVAL;
	mfs_txn *t = malloc(sizeof *t);
	if (!t)
		return -ENOMEM;
	t->s = s;
	t->write = write;
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
	if (rc) {
		free(t);
		return mfs_db_rc(rc);
	}
	*out = t;
	return 0;
}

/* Is the file system holding the store (nearly) out of space? */
static int store_disk_full(mfs_store *s)
{
	int fd;
	struct statvfs sv;
	if (mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &sv) != 0)
		return 0;
	return (uint64_t)sv.f_bavail * sv.f_frsize < ((uint64_t)1 << 20);
}

int mfs_txn_commit(mfs_txn *t)
{
	mfs_store *s = t->s;
	int rc = mdb_txn_commit(t->txn);
	free(t);
	/* LMDB turns a short write (the disk filled up mid-flush) into EIO: say ENOSPC */
	if (rc == EIO && store_disk_full(s))
		rc = ENOSPC;
	return mfs_db_rc(rc);
}

void mfs_txn_abort(mfs_txn *t)
{
	if (!t)
		return;
	mdb_txn_abort(t->txn);
	free(t);
}

int mfs_store_generation(mfs_txn *t, uint64_t *out)
{
	return mfs_db_meta_get(t->txn, t->s->dbi[DB_META], "generation", out);
}

int mfs_store_generation_bump(mfs_txn *t)
{
	uint64_t g = 0;
	int rc = mfs_store_generation(t, &g);
	if (rc < 0 && rc != MFS_E_NOTFOUND)
		return rc;
	return mfs_db_meta_put(t->txn, t->s->dbi[DB_META], "generation", g + 1);
}
