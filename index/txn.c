/*
 * txn.c - transactions over a store's environment and the generation that
 * tells readers what changed (store.h, "transactions").
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "pack.h"
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
	if (write)
		pthread_mutex_lock(&s->wmu);
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
	if (rc) {
		if (write)
			pthread_mutex_unlock(&s->wmu);
		free(t);
		return mfs_db_rc(rc);
	}
	*out = t;
	return 0;
}

mfs_store *mfs_txn_store(const mfs_txn *t)
{
	return t->s;
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
	if (!t->write) {
		int rc = mdb_txn_commit(t->txn);
		free(t);
		return mfs_db_rc(rc);
	}
	/* the payloads this transaction appended reach the disk before the index
	 * that names them: a crash leaves at most an unreferenced tail */
	int prc = mfs_pack_txn_precommit(t);
	if (prc < 0) {
		mfs_pack_txn_abort(t);
		mdb_txn_abort(t->txn);
		pthread_mutex_unlock(&s->wmu);
		free(t);
		return prc == -EIO && store_disk_full(s) ? -ENOSPC : prc;
	}
	int rc = mdb_txn_commit(t->txn);
	mfs_pack_txn_end(t, rc == 0);
	pthread_mutex_unlock(&s->wmu);
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
	if (t->write)
		mfs_pack_txn_abort(t); /* still holding the index's write lock */
	mdb_txn_abort(t->txn);
	if (t->write)
		pthread_mutex_unlock(&t->s->wmu);
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
