/*
 * env.c - a store's LMDB environment: opening it (checked against partial
 * copies before anything maps it), the lock files that order the processes
 * sharing it, compaction, and its space figures (mfs_store_stat_get).
 *
 * The locks, all in the store directory:
 *   users.lock   flock: every modelfs process holds it shared for as long as
 *                it has the environment open, and takes it BEFORE
 *                mdb_env_open; compaction holds it exclusively, so no modelfs
 *                process has the old data.mdb or lock.mdb open when they are
 *                replaced (one that opened them first and then waited for the
 *                lock would write into the unlinked file).
 *   lock.mdb     LMDB's own.  Every LMDB process, modelfs or not (mdb_dump,
 *                mdb_stat), holds a fcntl read lock on its first byte while
 *                the environment is open, and waits for that lock while
 *                another holds it for writing.  Compaction takes the write
 *                lock: no LMDB program has the environment open beside it,
 *                and none opens it until the lock region describes the new
 *                file (see mfs_store_compact).
 *   ingest.lock  flock: shared by every ingest, exclusive for gc's sweep.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "fsutil.h"
#include "lmdblock.h"
#include "pack.h"
#include "store_internal.h"

#define MAP_SIZE ((size_t)1 << 40) /* address space only: the file grows as used */
#define MAX_READERS 1024

_Static_assert(sizeof(size_t) == 8, "the store maps up to 1 TiB: 64-bit only");

/*
 * What this file reads of LMDB's on-disk format (version 1, unchanged since
 * LMDB 0.9): data.mdb starts with two meta pages; each holds, after a 16-byte
 * page header, the meta record: magic u32, version u32, address, map size,
 * two 48-byte database records (the first one's leading u32 is the page
 * size), the last page number in use and the transaction id (u64 each, in
 * the machine's byte order).  LMDB uses the meta with the larger id.
 */
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_META_OFF 16
#define LMDB_META_PSIZE (LMDB_META_OFF + 24)
#define LMDB_META_LAST_PG (LMDB_META_OFF + 24 + 2 * 48)
#define LMDB_META_TXNID (LMDB_META_LAST_PG + 8)
#define LMDB_META_END (LMDB_META_TXNID + 8)

/* One meta page's page size, last page and txn id; 0 or MFS_E_CORRUPT. */
static int meta_read(int fd, off_t off, uint32_t *psize, uint64_t *last_pg, uint64_t *txnid)
{
	uint8_t m[LMDB_META_END];
	int rc = mfs_pread_full(fd, m, sizeof m, (uint64_t)off, MFS_E_CORRUPT, NULL);
	if (rc < 0)
		return rc;
	uint32_t magic, version;
	memcpy(&magic, m + LMDB_META_OFF, 4);
	memcpy(&version, m + LMDB_META_OFF + 4, 4);
	if (magic != LMDB_MAGIC || version != 1)
		return MFS_E_CORRUPT;
	memcpy(psize, m + LMDB_META_PSIZE, 4);
	memcpy(last_pg, m + LMDB_META_LAST_PG, 8);
	memcpy(txnid, m + LMDB_META_TXNID, 8);
	return 0;
}

/*
 * Refuse a data.mdb shorter than its own meta pages say it is (a partial
 * copy, a truncated file): LMDB maps the file and would die by SIGBUS on the
 * first page past its end.  Reads the meta pages with pread, maps nothing.
 */
static int data_file_check(const char *dir, const char *path, mfs_errmsg *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mfs_err(err, -errno, "cannot open %s: %s", path, strerror(errno));
	struct stat st;
	uint32_t ps0 = 0, ps1 = 0;
	uint64_t last0 = 0, last1 = 0, id0 = 0, id1 = 0;
	/* meta first, size after: LMDB writes a commit's pages before its meta */
	int rc0 = meta_read(fd, 0, &ps0, &last0, &id0);
	int rc1 = rc0 == 0 && ps0 >= 512 && ps0 <= 65536 && !(ps0 & (ps0 - 1))
			  ? meta_read(fd, (off_t)ps0, &ps1, &last1, &id1)
			  : MFS_E_CORRUPT;
	int rs = fstat(fd, &st);
	int e = errno;
	close(fd);
	if (rs < 0)
		return mfs_err(err, -e, "cannot stat %s: %s", path, strerror(e));
	uint64_t size = (uint64_t)st.st_size;
	const char *what = "the store at %s is damaged or incomplete: %s (a partial copy?): "
			   "copy the whole store again or restore it from a backup; nothing "
			   "was changed";
	char why[256];
	if (rc0 == -EIO || rc1 == -EIO)
		return mfs_err(err, -EIO, "cannot read %s: %s", path, strerror(EIO));
	if (rc0 < 0 || rc1 < 0 || ps1 != ps0) {
		snprintf(why, sizeof why,
			 "data.mdb (%llu bytes) does not start with two LMDB meta pages",
			 (unsigned long long)size);
		return mfs_err(err, MFS_E_CORRUPT, what, dir, why);
	}
	uint64_t last = id1 > id0 ? last1 : last0;
	if (last > (UINT64_MAX / ps0) - 1 || (last + 1) * ps0 > size) {
		snprintf(why, sizeof why,
			 "data.mdb is %llu bytes but its meta page says it holds %llu pages of "
			 "%u bytes",
			 (unsigned long long)size, (unsigned long long)(last + 1), ps0);
		return mfs_err(err, MFS_E_CORRUPT, what, dir, why);
	}
	return 0;
}

int mfs_store_default_dir(char *buf, size_t cap)
{
	const char *x = getenv("XDG_DATA_HOME");
	int n;
	if (x && x[0] == '/')
		n = snprintf(buf, cap, "%s/modelfs", x);
	else {
		const char *h = getenv("HOME");
		if (!h || !h[0])
			return MFS_E_INVAL;
		n = snprintf(buf, cap, "%s/.local/share/modelfs", h);
	}
	return (n < 0 || (size_t)n >= cap) ? MFS_E_INVAL : 0;
}

/*
 * Take users.lock: shared by every process with the environment open,
 * exclusive for compaction.  A reader that cannot create the file (a store it
 * may only read) goes on without it: it cannot be compacted under anyone who
 * can write the store either, as compaction creates the file first.
 * @return 0 with *fd >= 0 (or -1: no lock file and none can be made),
 *         MFS_E_BUSY (@p wait 0 and the lock is held), -errno
 */
static int users_lock(const char *dir, int exclusive, int wait, int *fd)
{
	char path[4096];
	*fd = -1;
	snprintf(path, sizeof path, "%s/users.lock", dir);
	int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0 && !exclusive && (errno == EACCES || errno == EROFS))
		f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return (!exclusive && errno == ENOENT) ? 0 : -errno;
	int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
	int rc;
	while ((rc = flock(f, op)) < 0 && errno == EINTR)
		;
	if (rc < 0) {
		int e = errno;
		close(f);
		return e == EWOULDBLOCK ? MFS_E_BUSY : -e;
	}
	*fd = f;
	return 0;
}

/*
 * Creating a store.  LMDB creates data.mdb and writes its meta pages an
 * instant later, and the format record follows in the first transaction, so
 * an opener may find a store its creator has not finished.  The openers meet
 * on an OFD lock on users.lock's first byte (independent of the flock on the
 * same file), held from their look at data.mdb until the store is open: for
 * writing by one that may create the store and found data.mdb missing or
 * short, for reading by every other.  So a file still short once no creator
 * is at work is refused as damaged, and one being created is waited for.
 * @return 0, or -errno (EBADF: users.lock was opened read-only)
 */
static int create_lock(int fd, short type)
{
	return mfs_lmdb_lock_byte(fd, type, F_OFD_SETLKW, NULL);
}

/* The message for a store path stat() or open() refused. */
static int store_access_error(const char *dir, int e, mfs_errmsg *err)
{
	if (e == EACCES || e == EPERM)
		return mfs_err(err, -e,
			       "cannot open the store at %s: permission denied (run as a user "
			       "who may read it, or pass --store DIR)",
			       dir);
	return mfs_err(err, -e, "cannot open the store at %s: %s", dir, strerror(e));
}

/* Open the LMDB environment (the caller holds users.lock as needed). */
static int env_open(const char *dir, unsigned mdb_flags, MDB_env **out, mfs_errmsg *err)
{
	MDB_env *env;
	*out = NULL;
	int rc = mdb_env_create(&env);
	if (rc)
		return mfs_err(err, mfs_db_rc(rc), "cannot create LMDB environment: %s",
			       mdb_strerror(rc));
	mdb_env_set_mapsize(env, MAP_SIZE);
	mdb_env_set_maxdbs(env, DB__COUNT + 2);
	mdb_env_set_maxreaders(env, MAX_READERS);
	rc = mdb_env_open(env, dir, MDB_NOTLS | mdb_flags, 0600);
	if (rc) {
		mdb_env_close(env);
		if (rc == EACCES || rc == EPERM)
			return store_access_error(dir, rc, err);
		return mfs_err(err, mfs_db_rc(rc), "cannot open store %s: %s%s", dir,
			       mdb_strerror(rc),
			       rc == MDB_INVALID ? " (not an LMDB file: is this a modelfs store?)"
						 : "");
	}
	*out = env;
	return 0;
}

/*
 * Open the named databases and check the format, or write it when the
 * environment has none and this open may create the store (@p create): a
 * new store, or one whose creator died before its first commit.  An open
 * that may not create it (an upgrade, gc, rm) refuses such an environment.
 */
static int store_init_dbs(mfs_store *s, int upgrade, int create, mfs_errmsg *err)
{
	MDB_txn *txn = NULL;
	int rdonly = s->rdonly;
	int rc = mdb_txn_begin(s->env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
	/* "packs" after the format check: a format-1 store has none, and a
	 * refused store must be left as it was */
	for (int i = 0; rc == 0 && i < DB__COUNT; i++)
		if (i != DB_PACKS)
			rc = mdb_dbi_open(txn, mfs_db_names[i], rdonly ? 0 : MDB_CREATE,
					  &s->dbi[i]);
	if (rc) {
		if (txn)
			mdb_txn_abort(txn);
		return mfs_err(err, mfs_db_rc(rc), "cannot open store %s: %s%s", s->dir,
			       mdb_strerror(rc),
			       rc == MDB_NOTFOUND
				       ? " (not a modelfs store: its databases are missing)"
				       : "");
	}
	uint64_t fmt = 0;
	int grc = mfs_db_meta_get(txn, s->dbi[DB_META], "format", &fmt);
	if (grc == MFS_E_NOTFOUND && !rdonly && !create) {
		mdb_txn_abort(txn);
		return mfs_err(err, MFS_E_NOTFOUND,
			       "%s holds an LMDB environment with no modelfs format record: not "
			       "a modelfs store (or one whose creation never finished: ingest "
			       "into it to make it one); nothing was changed",
			       s->dir);
	}
	if (grc == MFS_E_NOTFOUND && !rdonly) {
		if ((grc = mfs_db_meta_put(txn, s->dbi[DB_META], "format", MFS_STORE_FORMAT)) ||
		    (grc = mfs_db_meta_put(txn, s->dbi[DB_META], "generation", 1))) {
			mdb_txn_abort(txn);
			return mfs_err(err, grc, "cannot initialise store %s: %s", s->dir,
				       mfs_strerror(grc));
		}
		fmt = MFS_STORE_FORMAT;
	} else if (grc < 0) {
		mdb_txn_abort(txn);
		return mfs_err(err, grc, "store %s has no readable format record: %s", s->dir,
			       mfs_strerror(grc));
	}
	if (fmt == 1 && !upgrade) {
		mdb_txn_abort(txn);
		return mfs_err(
		    err, MFS_E_VERSION,
		    "store %s is format 1 (payloads inside the index); run `modelfs "
		    "upgrade --store %s` to convert it in place (nothing was changed)",
		    s->dir, s->dir);
	}
	if (fmt != MFS_STORE_FORMAT && fmt != 1) {
		mdb_txn_abort(txn);
		return mfs_err(err, MFS_E_VERSION,
			       "store %s is format %llu, this modelfs reads format %d: use the "
			       "modelfs version that wrote it (nothing was changed)",
			       s->dir, (unsigned long long)fmt, MFS_STORE_FORMAT);
	}
	s->format = (unsigned)fmt;
	rc = mdb_dbi_open(txn, mfs_db_names[DB_PACKS], rdonly ? 0 : MDB_CREATE,
			  &s->dbi[DB_PACKS]);
	if (rc) {
		mdb_txn_abort(txn);
		return mfs_err(err, mfs_db_rc(rc), "cannot open store %s: %s%s", s->dir,
			       mdb_strerror(rc),
			       rc == MDB_NOTFOUND
				   ? " (its packs database is missing: the store "
				     "is damaged or incomplete)"
				   : "");
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		return mfs_err(err, mfs_db_rc(rc), "cannot open store %s: %s", s->dir,
			       mdb_strerror(rc));
	return 0;
}

int mfs_store_open(const char *dir, unsigned flags, mfs_store **out, mfs_errmsg *err)
{
	*out = NULL;
	int rdonly = (flags & MFS_STORE_RDONLY) != 0;
	if (rdonly && (flags & MFS_STORE_UPGRADE))
		return mfs_err(err, MFS_E_INVAL, "an upgrade opens store %s writable",
			       dir);
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	int exists = stat(path, &st) == 0;
	if (!exists && errno != ENOENT)
		return store_access_error(dir, errno, err);
	if (!exists) {
		if (!(flags & MFS_STORE_CREATE) || rdonly)
			return mfs_err(err, -ENOENT,
				       "no modelfs store at %s (ingest a model first, or pass "
				       "--store DIR)",
				       dir);
		int rc = mfs_mkdir_p(dir, 0700);
		if (rc < 0)
			return mfs_err(err, rc, "cannot create store directory %s: %s", dir,
				       mfs_strerror(rc));
	}
	mfs_store *s = calloc(1, sizeof *s);
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		return -ENOMEM;
	}
	s->users_fd = -1;
	s->rdonly = rdonly;
	pthread_mutex_init(&s->wmu, NULL);
	/* users.lock before the environment: see the top of this file */
	int rc = users_lock(dir, 0, !(flags & MFS_STORE_NOWAIT), &s->users_fd);
	int create_held = 0; /* holding create_lock, until the end */
	if (rc < 0) {
		mfs_store_close(s);
		if (rc == MFS_E_BUSY)
			return mfs_err(err, rc,
				       "store %s is being compacted (modelfs gc --compact): try "
				       "again when it is done",
				       dir);
		return mfs_err(err, rc, "cannot lock the store at %s: %s", dir,
			       mfs_strerror(rc));
	}
	/*
	 * Checked after the lock: a compaction in flight replaces the file.  And
	 * under create_lock: for writing when this open may create the store,
	 * else for reading, so no one looks at a store a creator has not
	 * finished (data.mdb empty, or no format record yet).
	 */
	int write = !rdonly && (flags & MFS_STORE_CREATE);
	int present = stat(path, &st) == 0;
	rc = present ? data_file_check(dir, path, NULL) : 0;
	if (s->users_fd >= 0) {
		int lrc = create_lock(s->users_fd,
				      write && (!present || rc < 0) ? F_WRLCK : F_RDLCK);
		if (lrc < 0 && lrc != -EBADF) {
			mfs_store_close(s);
			return mfs_err(err, lrc, "cannot lock the store at %s: %s", dir,
				       mfs_strerror(lrc));
		}
		create_held = lrc == 0;
	}
	present = stat(path, &st) == 0;
	rc = present ? data_file_check(dir, path, err) : 0;
	if (!present && !write)
		rc = mfs_err(err, -ENOENT,
			     "no modelfs store at %s (ingest a model first, or pass --store DIR)",
			     dir);
	if (rc < 0) {
		mfs_store_close(s); /* releases create_lock with users.lock */
		return rc;
	}
	rc = env_open(dir,
		      (rdonly ? MDB_RDONLY : 0) |
			  (flags & MFS_STORE_NORDAHEAD ? MDB_NORDAHEAD : 0),
		      &s->env, err);
	if (rc < 0) {
		mfs_store_close(s);
		return rc;
	}
	/*
	 * Free the reader slots of processes that died holding a read transaction
	 * (a mount killed with -9).  LMDB re-initialises the reader table only when
	 * no other process has the store open; otherwise a dead reader would pin
	 * its old snapshot (pages freed after it are never reused) and its slot
	 * for as long as any other user stays up.
	 */
	int dead = 0;
	mdb_reader_check(s->env, &dead);
	if ((rc = store_init_dbs(s, (flags & MFS_STORE_UPGRADE) != 0,
				 write && !(flags & MFS_STORE_UPGRADE), err)) < 0 ||
	    (rc = mfs_packs_open(s, err)) < 0) {
		mfs_store_close(s); /* releases create_lock with users.lock */
		return rc;
	}
	if (create_held)
		create_lock(s->users_fd, F_UNLCK);
	*out = s;
	return 0;
}

void mfs_store_close(mfs_store *s)
{
	if (!s)
		return;
	mfs_packs_close(s); /* the appender's lock with it */
	if (s->warm_map)
		munmap(s->warm_map, s->warm_len);
	if (s->env)
		mdb_env_close(s->env);
	/* after the environment: users.lock covers every moment it is open */
	if (s->users_fd >= 0)
		close(s->users_fd);
	pthread_mutex_destroy(&s->wmu);
	free(s->dir);
	free(s);
}

const char *mfs_store_dir(const mfs_store *s)
{
	return s->dir;
}

int mfs_store_sync(mfs_store *s)
{
	return mfs_db_rc(mdb_env_sync(s->env, 1));
}

int mfs_store_lock_ingest(mfs_store *s, int exclusive, int wait, int *fd)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/ingest.lock", s->dir);
	int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0)
		return -errno;
	int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
	if (flock(f, op) < 0) {
		int e = errno;
		close(f);
		return e == EWOULDBLOCK ? MFS_E_BUSY : -e;
	}
	*fd = f;
	return 0;
}

void mfs_store_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ---- compaction ---- */

/* "process 1234 (mdb_dump)": who holds lock.mdb, for the message. */
static void lmdb_holder(int fd, char *buf, size_t cap)
{
	struct flock fl;
	snprintf(buf, cap, "another process");
	if (mfs_lmdb_lock_byte(fd, F_WRLCK, F_GETLK, &fl) < 0 || fl.l_type == F_UNLCK)
		return;
	char comm[64];
	mfs_proc_comm(fl.l_pid, comm, sizeof comm);
	snprintf(buf, cap, "process %d%s%s%s", (int)fl.l_pid, comm[0] ? " (" : "", comm,
		 comm[0] ? ")" : "");
}

/* Entries of the main and every named database of a read-only environment. */
static int env_counts(MDB_env *env, size_t counts[DB__COUNT + 1], uint64_t *format)
{
	MDB_txn *txn;
	MDB_stat ms;
	int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mfs_db_rc(rc);
	MDB_dbi main_dbi;
	rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
	if (rc == 0)
		rc = mdb_stat(txn, main_dbi, &ms);
	if (rc == 0)
		counts[DB__COUNT] = ms.ms_entries;
	for (int i = 0; rc == 0 && i < DB__COUNT; i++) {
		MDB_dbi dbi;
		rc = mdb_dbi_open(txn, mfs_db_names[i], 0, &dbi);
		if (rc == 0)
			rc = mdb_stat(txn, dbi, &ms);
		if (rc == 0)
			counts[i] = ms.ms_entries;
		if (rc == 0 && i == DB_META)
			rc = mfs_db_meta_get(txn, dbi, "format", format) < 0 ? MDB_CORRUPTED : 0;
	}
	mdb_txn_abort(txn);
	return mfs_db_rc(rc);
}

/* The compact copy holds what the store holds, database by database. */
static int copy_check(MDB_env *src, const char *tmpdir, mfs_errmsg *err)
{
	size_t a[DB__COUNT + 1], b[DB__COUNT + 1];
	uint64_t fa = 0, fb = 0;
	MDB_env *copy = NULL;
	int rc = env_counts(src, a, &fa);
	if (rc < 0)
		return mfs_err(err, rc, "reading the store failed: %s", mfs_strerror(rc));
	rc = env_open(tmpdir, MDB_RDONLY | MDB_NOLOCK, &copy, err);
	if (rc < 0)
		return rc;
	rc = env_counts(copy, b, &fb);
	mdb_env_close(copy);
	if (rc < 0)
		return mfs_err(err, rc, "the compact copy cannot be read back: %s",
			       mfs_strerror(rc));
	for (int i = 0; i <= DB__COUNT; i++)
		if (a[i] != b[i])
			return mfs_err(err, MFS_E_CORRUPT,
				       "the compact copy holds %zu records in %s, the store %zu",
				       b[i], i < DB__COUNT ? mfs_db_names[i] : "the main database",
				       a[i]);
	if (fa != fb)
		return mfs_err(err, MFS_E_CORRUPT, "the compact copy has another format record");
	return 0;
}

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/*
 * After data.mdb was replaced: make the lock region describe the new file
 * before anyone else may open the environment.  LMDB re-initialises the lock
 * region when it opens the environment as its only user; this process holds
 * the write lock on lock.mdb's first byte, which LMDB's own exclusive-open
 * test (a write lock of that byte, per process) then grants, so the open below
 * is exclusive, takes the new file's transaction id, and downgrades the lock to
 * shared, which lets waiting openers in.  Without this, the region kept the
 * old file's transaction id, and with it LMDB picks which of the new file's
 * two meta pages is current: the wrong one is the empty database of a fresh
 * copy, on which the next commit builds.
 * If that open fails, the region is zeroed instead: a later opener that is not
 * alone then fails with MDB_INVALID ("lock region has invalid magic") rather
 * than trust it, and one that is alone initialises it.
 */
static int lock_region_reset(const char *dir, int guard, mfs_errmsg *err)
{
	MDB_env *env = NULL;
	mfs_errmsg e2 = {0};
	int rc = env_open(dir, 0, &env, &e2);
	if (rc == 0) {
		mdb_env_close(env);
		return 0;
	}
	struct stat st;
	if (fstat(guard, &st) == 0 && st.st_size > 0)
		if (ftruncate(guard, 0) < 0 || ftruncate(guard, st.st_size) < 0)
			return mfs_err(err, -errno,
				       "the store was compacted, but LMDB's lock file could not be "
				       "reset (%s) nor cleared (%s): stop every process using the "
				       "store, delete %s/lock.mdb, and check it with modelfs verify",
				       e2.msg, strerror(errno), dir);
	return mfs_err(err, rc,
		       "the store was compacted, but LMDB's lock file could not be reset (%s); "
		       "it was cleared, so the next command re-creates it",
		       e2.msg);
}

int mfs_store_compact(const char *dir, mfs_errmsg *err)
{
	char tmpdir[4096], tmp[4200], data[4200], lockp[4200];
	snprintf(tmpdir, sizeof tmpdir, "%s/compact.tmp", dir);
	snprintf(tmp, sizeof tmp, "%s/data.mdb", tmpdir);
	snprintf(data, sizeof data, "%s/data.mdb", dir);
	snprintf(lockp, sizeof lockp, "%s/lock.mdb", dir);
	int users = -1, guard = -1, rc;
	MDB_env *src = NULL;

	rc = users_lock(dir, 1, 0, &users);
	if (rc == MFS_E_BUSY)
		return mfs_err(err, rc,
			       "store %s is in use by another process (a mount, an ingest or "
			       "another command): stop it, then compact again",
			       dir);
	if (rc < 0)
		return mfs_err(err, rc, "cannot lock the store at %s: %s", dir,
			       mfs_strerror(rc));
	if ((rc = data_file_check(dir, data, err)) < 0)
		goto out;
	guard = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (guard < 0) {
		rc = mfs_err(err, -errno, "cannot open %s: %s", lockp, strerror(errno));
		goto out;
	}
	if ((rc = mfs_lmdb_lock_byte(guard, F_WRLCK, F_SETLK, NULL)) < 0) {
		char who[128];
		lmdb_holder(guard, who, sizeof who);
		rc = mfs_err(err, MFS_E_BUSY,
			     "store %s is open in %s, which is not a modelfs command (an "
			     "mdb_dump, mdb_stat or another LMDB program): stop it, then compact "
			     "again (nothing was changed)",
			     dir, who);
		goto out;
	}
	/* no lock region needed: nothing else can open the environment now */
	if ((rc = env_open(dir, MDB_RDONLY | MDB_NOLOCK, &src, err)) < 0)
		goto out;
	unlink(tmp);
	if (mkdir(tmpdir, 0700) < 0 && errno != EEXIST) {
		rc = mfs_err(err, -errno, "cannot create %s: %s (nothing was changed)", tmpdir,
			     strerror(errno));
		goto out;
	}
	int mrc = mdb_env_copy2(src, tmpdir, MDB_CP_COMPACT);
	if (mrc) {
		rc = mfs_err(err, mfs_db_rc(mrc), "compacting %s failed: %s (nothing was changed)",
			     dir, mdb_strerror(mrc));
		goto out_tmp;
	}
	if (chmod(tmp, 0600) < 0 || (rc = fsync_path(tmp, O_RDONLY)) < 0) {
		rc = mfs_err(err, rc < 0 ? rc : -errno,
			     "cannot sync the compact copy %s: %s (nothing was changed)", tmp,
			     strerror(rc < 0 ? -rc : errno));
		goto out_tmp;
	}
	if ((rc = copy_check(src, tmpdir, err)) < 0) {
		mfs_err_prefix(err, rc, "compacting %s failed (nothing was changed)", dir);
		goto out_tmp;
	}
	mdb_env_close(src);
	src = NULL;
	if (rename(tmp, data) < 0) {
		rc = mfs_err(err, -errno, "cannot replace %s: %s (nothing was changed)", data,
			     strerror(errno));
		goto out_tmp;
	}
	rmdir(tmpdir);
	if ((rc = fsync_path(dir, O_RDONLY | O_DIRECTORY)) < 0)
		mfs_err(err, rc,
			"the store was compacted but syncing %s failed: %s (a crash now may "
			"bring back the old, equally valid file)",
			dir, mfs_strerror(rc));
	int lrc = lock_region_reset(dir, guard, rc < 0 ? NULL : err);
	if (rc == 0)
		rc = lrc;
	goto out;
out_tmp:
	unlink(tmp);
	rmdir(tmpdir);
out:
	if (src)
		mdb_env_close(src);
	/* closing any descriptor of lock.mdb drops this process's fcntl locks on it */
	if (guard >= 0)
		close(guard);
	if (users >= 0)
		close(users);
	return rc;
}

/* ---- space ---- */

static int free_pages_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	/* The free-list value is a count followed by that many page numbers. */
	if (v->mv_size >= sizeof(size_t)) {
		size_t n;
		memcpy(&n, v->mv_data, sizeof n);
		*(uint64_t *)ud += n;
	}
	return 0;
}

static int chunk_stat_fn(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
			 uint64_t refcount)
{
	mfs_store_stat *st = ud;
	st->n_chunks++;
	st->chunk_payload_bytes += v->payload_len;
	st->chunk_raw_bytes += v->raw_len;
	return 0;
}

static int pack_stat_fn(void *ud, uint64_t id, const mfs_pack_rec *r)
{
	mfs_store_stat *st = ud;
	if (r) {
		st->pack_live_bytes += r->live_bytes;
		st->pack_dead_bytes += r->dead_bytes;
	}
	return 0;
}

/* The pack files in packs/: their number, sizes and blocks. */
static void pack_files_stat(mfs_store *s, mfs_store_stat *out)
{
	char dir[4096];
	if (mfs_pack_dir(s, dir, sizeof dir) < 0)
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t id;
		struct stat st;
		if (!mfs_pack_name_parse(de->d_name, &id) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		out->n_packs++;
		out->pack_file_bytes += (uint64_t)st.st_size;
		out->pack_disk_bytes += (uint64_t)st.st_blocks * 512;
	}
	closedir(d);
}

int mfs_store_stat_get(mfs_txn *t, mfs_store_stat *out)
{
	memset(out, 0, sizeof *out);
	int rc0;
	MDB_envinfo ei;
	MDB_stat ms;
	mdb_env_info(t->s->env, &ei);
	mdb_env_stat(t->s->env, &ms);
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/data.mdb", t->s->dir);
	if (stat(path, &st) == 0) {
		out->file_bytes = (uint64_t)st.st_size;
		out->disk_bytes = (uint64_t)st.st_blocks * 512;
	}
	pack_files_stat(t->s, out);
	out->disk_bytes += out->pack_disk_bytes;
	if ((rc0 = mfs_packs_foreach(t, pack_stat_fn, out)) < 0)
		return rc0;
	uint64_t free_pages = 0;
	int rc = mfs_db_iter(t->txn, 0, NULL, 0, free_pages_fn, &free_pages);
	if (rc < 0)
		return rc;
	uint64_t used = (uint64_t)(ei.me_last_pgno + 1);
	used = used > free_pages ? used - free_pages : 0;
	out->used_bytes = used * ms.ms_psize;
	return mfs_chunks_foreach(t, chunk_stat_fn, out);
}

int mfs_store_index_warm(mfs_store *s, uint64_t max_bytes, uint64_t *bytes)
{
	if (bytes)
		*bytes = 0;
	MDB_envinfo ei;
	MDB_stat ms;
	int fd;
	struct stat st;
	if (mdb_env_info(s->env, &ei) != 0 || mdb_env_stat(s->env, &ms) != 0 ||
	    mdb_env_get_fd(s->env, &fd) != 0)
		return -EIO;
	if (fstat(fd, &st) < 0)
		return -errno;
	uint64_t len = (uint64_t)(ei.me_last_pgno + 1) * ms.ms_psize;
	/* never past the file's end: a page there is SIGBUS, not zeros */
	if (len > (uint64_t)st.st_size)
		len = (uint64_t)st.st_size & ~(uint64_t)(ms.ms_psize - 1);
	if (len == 0 || len > max_bytes)
		return 0;
	/* a map of our own (LMDB does not say where its map is): its pages are
	 * the page cache's, the very pages LMDB's map faults in */
	char *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	mfs_map_populate(map, len);
	if (s->warm_map)
		munmap(s->warm_map, s->warm_len);
	s->warm_map = map;
	s->warm_len = len;
	if (bytes)
		*bytes = len;
	return 0;
}
