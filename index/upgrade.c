/*
 * upgrade.c - format 1 -> 2 in place: payloads out of the LMDB records into
 * pack files, in file order, in bounded batches, resumable (upgrade.h).
 */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "lmdblock.h"
#include "pack.h"
#include "store_internal.h"

/* meta record: present (value 1) from the format switch until the
 * compaction that follows it is done */
#define META_COMPACT "upgrade_compact"

typedef struct blob_ref {
	char *repo;
	char *etag;
} blob_ref;

typedef struct upgrade {
	const char *dir;
	mfs_store *s;
	int lock_fd; /* lock.mdb: its first byte write-locked while converting */
	uint64_t batch_bytes;
	const mfs_upgrade_opts *opts;
	mfs_upgrade_stat *st;
	mfs_upgrade_progress pr;
	blob_ref *blobs;
	size_t n_blobs, cap_blobs;
	mfs_errmsg *err;
} upgrade;

static void progress(upgrade *u, mfs_upgrade_phase phase)
{
	u->pr.phase = phase;
	if (u->opts && u->opts->progress)
		u->opts->progress(u->opts->progress_ud, &u->pr);
}

static uint64_t file_size(const char *dir, const char *name)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* ---- who has the store open (for the messages) ---- */

/* " (process 1234, modelfs)" for a pid, into buf. */
static void name_process(pid_t pid, char *buf, size_t cap)
{
	char comm[64];
	mfs_proc_comm(pid, comm, sizeof comm);
	snprintf(buf, cap, " (process %d%s%s)", (int)pid, comm[0] ? ", " : "", comm);
}

/* A process other than this one holding a flock on @p path, from /proc/locks
 * ("1: FLOCK  ADVISORY  READ 1234 fd:01:5678 0 EOF"); "" when none is found. */
static void flock_holder(const char *path, char *buf, size_t cap)
{
	struct stat st;
	buf[0] = '\0';
	if (stat(path, &st) < 0)
		return;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		char kind[16];
		int pid;
		unsigned maj, min;
		unsigned long long ino;
		if (sscanf(line, "%*[^:]: %15s %*s %*s %d %x:%x:%llu", kind, &pid, &maj, &min,
			   &ino) != 5)
			continue;
		if (strcmp(kind, "FLOCK") || pid == (int)getpid() || ino != (unsigned long long)st.st_ino ||
		    maj != major(st.st_dev) || min != minor(st.st_dev))
			continue;
		name_process((pid_t)pid, buf, cap);
		break;
	}
	fclose(f);
}

static int in_use(upgrade *u, const char *who, const char *what)
{
	return mfs_err(u->err, MFS_E_BUSY,
		       "store %s is in use by %s%s: stop it, then run modelfs upgrade again "
		       "(nothing was changed)",
		       u->dir, what, who);
}

/*
 * No modelfs process has the store open (users.lock is free), and no LMDB
 * program either: then take lock.mdb's first byte for writing and keep it
 * (u->lock_fd) so that nobody opens the environment until the format has
 * switched.  Before the store is opened: a refusal changes nothing.
 */
static int claim_store(upgrade *u)
{
	char path[4200], who[128];
	snprintf(path, sizeof path, "%s/users.lock", u->dir);
	int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0)
		return mfs_err(u->err, -errno, "cannot open %s: %s (nothing was changed)", path,
			       strerror(errno));
	int rc;
	while ((rc = flock(f, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
		;
	int e = errno;
	close(f); /* a probe only: mfs_store_open takes it shared itself */
	if (rc < 0) {
		if (e != EWOULDBLOCK)
			return mfs_err(u->err, -e, "cannot lock %s: %s (nothing was changed)", path,
				       strerror(e));
		flock_holder(path, who, sizeof who);
		return in_use(u, who, "another modelfs process (a mount, an ingest or another "
				      "command)");
	}
	snprintf(path, sizeof path, "%s/lock.mdb", u->dir);
	u->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (u->lock_fd < 0)
		return mfs_err(u->err, -errno, "cannot open %s: %s (nothing was changed)", path,
			       strerror(errno));
	if (mfs_lmdb_lock_byte(u->lock_fd, F_WRLCK, F_SETLK, NULL) < 0) {
		struct flock fl;
		who[0] = '\0';
		if (mfs_lmdb_lock_byte(u->lock_fd, F_WRLCK, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			name_process(fl.l_pid, who, sizeof who);
		return in_use(u, who, "an LMDB program");
	}
	return 0;
}

/*
 * After the store is open: LMDB's open downgraded this process's lock on
 * lock.mdb's first byte to a read lock (it takes one itself); take it back
 * for writing, so that other openers wait.  Fails only when another process
 * opened the environment in between.
 */
static int hold_store(upgrade *u)
{
	if (mfs_lmdb_lock_byte(u->lock_fd, F_WRLCK, F_SETLK, NULL) == 0)
		return 0;
	struct flock fl;
	char who[128] = "";
	if (mfs_lmdb_lock_byte(u->lock_fd, F_WRLCK, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
		name_process(fl.l_pid, who, sizeof who);
	return in_use(u, who, "a process that opened it just now");
}

/* ---- which format ---- */

/*
 * Is there a store at u->dir this modelfs can upgrade?  A read-only open
 * answers without writing anything: a store of this format opens (*fmt =
 * MFS_STORE_FORMAT); one of another format is refused with MFS_E_VERSION
 * (*fmt = 0: read_format says which); a folder that is no store, a damaged
 * or partial data.mdb and an environment without the store's databases are
 * refused with the store's own message.
 */
static int probe_store(upgrade *u, unsigned *fmt)
{
	mfs_store *s;
	mfs_errmsg perr = {0};
	*fmt = 0;
	int rc = mfs_store_open(u->dir, MFS_STORE_RDONLY | MFS_STORE_NOWAIT, &s, &perr);
	if (rc == 0) {
		*fmt = mfs_store_format(s);
		mfs_store_close(s);
		return 0;
	}
	if (rc == MFS_E_VERSION)
		return 0;
	if (rc == MFS_E_BUSY)
		return mfs_err(u->err, rc, "store %s is being compacted (modelfs gc --compact): run "
					   "modelfs upgrade again when it is done (nothing was changed)",
			       u->dir);
	return mfs_err(u->err, rc, "cannot upgrade: %s", perr.msg[0] ? perr.msg : mfs_strerror(rc));
}

/*
 * The format record, read with LMDB directly: for a store the read-only open
 * refused as of another format (so its data.mdb passed the open's checks).
 * MDB_NOLOCK: this process holds lock.mdb's first byte (claim_store), nobody
 * else has the environment open, and a lock-free open leaves that lock be.
 */
static int read_format(upgrade *u, uint64_t *fmt)
{
	MDB_env *env;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	int mrc = mdb_env_create(&env);
	if (mrc)
		return mfs_db_rc(mrc);
	mdb_env_set_maxdbs(env, DB__COUNT + 2);
	mrc = mdb_env_open(env, u->dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
	if (mrc == 0)
		mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (mrc == 0)
		mrc = mdb_dbi_open(txn, mfs_db_names[DB_META], 0, &dbi);
	int rc = mrc ? mfs_db_rc(mrc) : mfs_db_meta_get(txn, dbi, "format", fmt);
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	if (rc < 0)
		return mfs_err(u->err, rc, "cannot read the format record of store %s: %s (nothing "
					   "was changed)",
			       u->dir, mfs_strerror(rc));
	if (*fmt == 1)
		return 0;
	if (*fmt > MFS_STORE_FORMAT)
		return mfs_err(u->err, MFS_E_VERSION,
			       "store %s is format %llu, newer than this modelfs knows (it reads "
			       "format %d and upgrades format 1): use a modelfs as new as the one "
			       "that wrote it (nothing was changed)",
			       u->dir, (unsigned long long)*fmt, MFS_STORE_FORMAT);
	return mfs_err(u->err, MFS_E_VERSION,
		       "store %s is format %llu, which no modelfs wrote: it is damaged, or not a "
		       "modelfs store (nothing was changed)",
		       u->dir, (unsigned long long)*fmt);
}

/* ---- counting ---- */

static int count_fn(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
		    uint64_t refcount)
{
	(void)key;
	(void)refcount;
	upgrade *u = ud;
	u->pr.chunks_total++;
	if (v->in_pack)
		u->pr.chunks_done++;
	else
		u->pr.bytes_total += v->payload_len;
	return 0;
}

/* Enough free disk for the packs, while data.mdb keeps its copies? */
static int space_check(upgrade *u)
{
	struct statvfs sv;
	if (statvfs(u->dir, &sv) < 0)
		return 0; /* cannot tell: the commits will say ENOSPC if so */
	uint64_t inline_chunks = u->pr.chunks_total - u->pr.chunks_done;
	/* entry headers, a pack header per GiB, and a margin for the index */
	uint64_t need = u->pr.bytes_total + inline_chunks * MFS_PACK_ENTRY_HDR +
			(u->pr.bytes_total / MFS_PACK_LIMIT + 1) * 4096 + ((uint64_t)16 << 20);
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (avail >= need)
		return 0;
	return mfs_err(u->err, -ENOSPC,
		       "upgrading store %s needs about %llu MB free for the pack files (the "
		       "index keeps its copies until the end), and its file system has %llu MB: "
		       "free some space and run modelfs upgrade again (nothing was converted)",
		       u->dir, (unsigned long long)(need >> 20), (unsigned long long)(avail >> 20));
}

/* ---- converting ---- */

static int blob_list_fn(void *ud, const mfs_blob_info *b);

struct repo_walk {
	upgrade *u;
	mfs_txn *t;
	const char *repo;
	int rc;
};

static int repo_list_fn(void *ud, const mfs_repo_info *r)
{
	struct repo_walk *w = ud;
	w->repo = r->repo;
	int rc = mfs_blobs_foreach(w->t, r->repo, blob_list_fn, w);
	return rc < 0 ? rc : 0;
}

static int blob_list_fn(void *ud, const mfs_blob_info *b)
{
	struct repo_walk *w = ud;
	upgrade *u = w->u;
	if (u->n_blobs == u->cap_blobs) {
		size_t cap = u->cap_blobs ? 2 * u->cap_blobs : 64;
		blob_ref *nb = realloc(u->blobs, cap * sizeof *nb);
		if (!nb)
			return -ENOMEM;
		u->blobs = nb;
		u->cap_blobs = cap;
	}
	blob_ref *br = &u->blobs[u->n_blobs];
	br->repo = strdup(w->repo);
	br->etag = strdup(b->etag);
	if (!br->repo || !br->etag) {
		free(br->repo);
		free(br->etag);
		return -ENOMEM;
	}
	u->n_blobs++;
	return 0;
}

/* Every blob of every repo, in key order (they do not change while we hold
 * the store). */
static int list_blobs(upgrade *u)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(u->s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	struct repo_walk w = {u, t, NULL, 0};
	rc = mfs_repos_foreach(t, repo_list_fn, &w);
	mfs_txn_abort(t);
	return rc < 0 ? rc : 0;
}

static void free_blobs(upgrade *u)
{
	for (size_t i = 0; i < u->n_blobs; i++) {
		free(u->blobs[i].repo);
		free(u->blobs[i].etag);
	}
	free(u->blobs);
	u->blobs = NULL;
	u->n_blobs = u->cap_blobs = 0;
}

static int chunk_damaged(upgrade *u, const mfs_chunk_key *key, int rc, const char *where)
{
	char hex[33];
	mfs_chunk_key_hex(key, hex);
	if (rc == MFS_E_CORRUPT)
		return mfs_err(u->err, rc,
			       "store %s: the record of chunk %s (%s) does not parse, so it cannot "
			       "be converted: the store stays format 1 (what was converted so far "
			       "stays so); check it with the modelfs release that wrote it "
			       "(modelfs verify) and run modelfs upgrade again",
			       u->dir, hex, where);
	return mfs_err(u->err, rc, "store %s: converting chunk %s (%s) failed: %s (the store "
				   "stays format 1; run modelfs upgrade again to go on)",
		       u->dir, hex, where, mfs_strerror(rc));
}

/* Convert chunk @p key if its payload is still inside its record. */
static int convert_one(upgrade *u, mfs_txn *t, const mfs_chunk_key *key, const char *where,
		       uint64_t *batch)
{
	mfs_chunk_view v;
	int rc = mfs_chunk_get(t, key, &v);
	if (rc == MFS_E_NOTFOUND)
		return 0; /* a file naming a missing chunk: verify reports it, nothing to move */
	if (rc < 0)
		return chunk_damaged(u, key, rc, where);
	if (v.in_pack)
		return 0;
	uint64_t len = v.payload_len;
	int moved = 0;
	rc = mfs_chunk_upgrade(t, key, &moved);
	if (rc < 0)
		return chunk_damaged(u, key, rc, where);
	if (moved) {
		*batch += len;
		u->st->chunks_moved++;
		u->st->bytes_moved += len;
		u->pr.chunks_done++;
		u->pr.bytes_done += len;
	}
	return 0;
}

static int batch_full(const upgrade *u, uint64_t bytes, uint64_t chunks0)
{
	return bytes >= u->batch_bytes || u->st->chunks_moved - chunks0 >= MFS_UPGRADE_BATCH_CHUNKS;
}

static int batch_commit(upgrade *u, mfs_txn *t, uint64_t chunks0)
{
	int rc = mfs_txn_commit(t);
	if (rc < 0)
		return mfs_err(u->err, rc,
			       "store %s: committing a batch of the upgrade failed: %s (the store "
			       "stays format 1 and what earlier batches converted stays so; run "
			       "modelfs upgrade again to go on)",
			       u->dir, mfs_strerror(rc));
	if (u->st->chunks_moved > chunks0)
		u->st->batches++;
	progress(u, MFS_UPGRADE_CONVERT);
	return 0;
}

/* Step 2a: the chunks of every file, in file order. */
static int convert_files(upgrade *u)
{
	size_t bi = 0;
	uint64_t ei = 0;
	mfs_extent *ext = NULL;
	mfs_blob_info info = {0};
	int rc = 0;
	while (bi < u->n_blobs && rc == 0) {
		mfs_txn *t;
		if ((rc = mfs_txn_begin(u->s, MFS_TXN_WRITE, &t)) < 0)
			break;
		uint64_t bytes = 0, chunks0 = u->st->chunks_moved;
		while (bi < u->n_blobs && rc == 0 && !batch_full(u, bytes, chunks0)) {
			if (!ext) {
				rc = mfs_blob_get(t, u->blobs[bi].repo, u->blobs[bi].etag, &info,
						  &ext);
				if (rc == MFS_E_NOTFOUND || rc == MFS_E_CORRUPT) {
					/* a damaged blob record: its chunks are swept below */
					rc = 0;
					bi++;
					continue;
				}
				if (rc < 0) {
					mfs_err(u->err, rc, "store %s: reading the file record %s of %s "
							    "failed: %s (the store stays format 1; run "
							    "modelfs upgrade again to go on)",
						u->dir, u->blobs[bi].etag, u->blobs[bi].repo,
						mfs_strerror(rc));
					break;
				}
				ei = 0;
			}
			for (; ei < info.n_extents && rc == 0 && !batch_full(u, bytes, chunks0); ei++)
				rc = convert_one(u, t, &ext[ei].key, u->blobs[bi].repo, &bytes);
			if (ei >= info.n_extents) {
				free(ext);
				ext = NULL;
				bi++;
			}
		}
		if (rc < 0) {
			mfs_txn_abort(t);
			break;
		}
		rc = batch_commit(u, t, chunks0);
	}
	free(ext);
	return rc;
}

/*
 * Up to @p max keys of chunks whose payload is still inline, in key order
 * (an LMDB cursor), from the first (@p from NULL) or from @p from on (@p
 * after: past it).
 * @return the number found (0: none left), or a negative code
 */
static long inline_keys(upgrade *u, mfs_txn *t, const mfs_chunk_key *from, int after,
			mfs_chunk_key *out, size_t max)
{
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(t->txn, DBI(t, DB_CHUNKS), &cur);
	if (mrc)
		return mfs_db_rc(mrc);
	MDB_val k = {0, NULL}, v;
	if (from) {
		k.mv_size = sizeof from->b;
		k.mv_data = (void *)from->b;
		mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else {
		mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	long n = 0;
	for (; mrc == 0 && (size_t)n < max; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		mfs_chunk_key key;
		if (k.mv_size != sizeof key.b)
			continue; /* not a chunk key: check reports it */
		memcpy(key.b, k.mv_data, sizeof key.b);
		if (after && !memcmp(key.b, from->b, sizeof key.b))
			continue;
		mfs_chunk_view cv;
		int rc = mfs_rec_chunk_decode(v.mv_data, v.mv_size, &cv);
		if (rc < 0) {
			mdb_cursor_close(cur);
			return chunk_damaged(u, &key, rc, "not used by any file");
		}
		if (!cv.in_pack)
			out[n++] = key;
	}
	mdb_cursor_close(cur);
	if (mrc && mrc != MDB_NOTFOUND)
		return mfs_db_rc(mrc);
	return n;
}

/* Step 2b: every chunk still inline (none a file uses), in key order. */
static int convert_rest(upgrade *u)
{
	mfs_chunk_key *keys = malloc(MFS_UPGRADE_BATCH_CHUNKS * sizeof *keys);
	if (!keys)
		return -ENOMEM;
	mfs_chunk_key from;
	int have_from = 0, after = 0, rc = 0;
	for (;;) {
		mfs_txn *t;
		if ((rc = mfs_txn_begin(u->s, MFS_TXN_WRITE, &t)) < 0)
			break;
		long n = inline_keys(u, t, have_from ? &from : NULL, after, keys,
				     MFS_UPGRADE_BATCH_CHUNKS);
		if (n <= 0) {
			mfs_txn_abort(t);
			rc = (int)n;
			break;
		}
		uint64_t bytes = 0, chunks0 = u->st->chunks_moved;
		long i = 0;
		for (; i < n && rc == 0 && !batch_full(u, bytes, chunks0); i++)
			rc = convert_one(u, t, &keys[i], "not used by any file", &bytes);
		if (rc < 0) {
			mfs_txn_abort(t);
			break;
		}
		/* the next batch starts at the first key this one left, or past
		 * the last one it did: every key is visited once */
		have_from = 1;
		after = i >= n;
		from = keys[after ? n - 1 : i];
		if ((rc = batch_commit(u, t, chunks0)) < 0)
			break;
	}
	free(keys);
	return rc;
}

/* Step 3: no payload is inline any more; format 2, compaction owed. */
static int switch_format(upgrade *u)
{
	progress(u, MFS_UPGRADE_SWITCH);
	mfs_txn *t;
	mfs_chunk_key left;
	int rc = mfs_txn_begin(u->s, MFS_TXN_WRITE, &t);
	if (rc < 0)
		return rc;
	long n = inline_keys(u, t, NULL, 0, &left, 1);
	if (n != 0) {
		mfs_txn_abort(t);
		if (n < 0)
			return (int)n;
		char hex[33];
		return mfs_err(u->err, MFS_E_CORRUPT,
			       "store %s: chunk %s still holds its payload after the conversion "
			       "(the store stays format 1; run modelfs upgrade again)",
			       u->dir, mfs_chunk_key_hex(&left, hex));
	}
	if ((rc = mfs_store_format_set(t, 2)) < 0 ||
	    (rc = mfs_db_meta_put(t->txn, DBI(t, DB_META), META_COMPACT, 1)) < 0) {
		mfs_txn_abort(t);
		return mfs_err(u->err, rc, "store %s: setting format 2 failed: %s (the store stays "
					   "format 1; run modelfs upgrade again)",
			       u->dir, mfs_strerror(rc));
	}
	if ((rc = mfs_txn_commit(t)) < 0)
		return mfs_err(u->err, rc, "store %s: committing format 2 failed: %s (the store "
					   "stays format 1; run modelfs upgrade again)",
			       u->dir, mfs_strerror(rc));
	u->st->switched = 1;
	return 0;
}

static int compact_owed(mfs_store *s, int *owed)
{
	mfs_txn *t;
	uint64_t v = 0;
	*owed = 0;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	rc = mfs_db_meta_get(t->txn, DBI(t, DB_META), META_COMPACT, &v);
	mfs_txn_abort(t);
	if (rc == MFS_E_NOTFOUND)
		return 0;
	*owed = rc == 0 && v != 0;
	return rc;
}

/* The store's packs, for the summary. */
static void pack_figures(mfs_store *s, mfs_upgrade_stat *st)
{
	mfs_txn *t;
	mfs_store_stat ss;
	if (mfs_txn_begin(s, MFS_TXN_READ, &t) < 0)
		return;
	if (mfs_store_stat_get(t, &ss) == 0) {
		st->chunks = ss.n_chunks;
		st->n_packs = ss.n_packs;
		st->pack_bytes = ss.pack_file_bytes;
	}
	mfs_txn_abort(t);
}

/* Step 4: compact the closed store, then clear the "owed" record. */
static int compact(upgrade *u)
{
	progress(u, MFS_UPGRADE_COMPACT);
	mfs_errmsg cerr = {0};
	int rc = mfs_store_compact(u->dir, &cerr);
	if (rc == MFS_E_BUSY) {
		u->st->compact_pending = 1;
		return 0;
	}
	if (rc < 0)
		return mfs_err(u->err, rc,
			       "store %s is format 2 now, but compacting its index failed: %s; the "
			       "store is usable, and modelfs upgrade run again compacts it",
			       u->dir, cerr.msg[0] ? cerr.msg : mfs_strerror(rc));
	u->st->compacted = 1;
	mfs_store *s;
	if ((rc = mfs_store_open(u->dir, MFS_STORE_NOWAIT, &s, &cerr)) < 0) {
		/* someone opened it right after the compaction: the record stays,
		 * and the next run compacts once more (a no-op but for its time) */
		u->st->compact_pending = rc == MFS_E_BUSY;
		return rc == MFS_E_BUSY ? 0 : mfs_err(u->err, rc, "%s", cerr.msg);
	}
	mfs_txn *t;
	if ((rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t)) == 0) {
		MDB_val k = {strlen(META_COMPACT), (void *)META_COMPACT};
		int mrc = mdb_del(t->txn, DBI(t, DB_META), &k, NULL);
		rc = mrc && mrc != MDB_NOTFOUND ? mfs_db_rc(mrc) : 0;
		if (rc == 0)
			rc = mfs_txn_commit(t);
		else
			mfs_txn_abort(t);
	}
	pack_figures(s, u->st);
	mfs_store_close(s);
	if (rc < 0)
		return mfs_err(u->err, rc,
			       "store %s was upgraded and compacted, but clearing its \"compaction "
			       "owed\" record failed: %s (harmless: the next modelfs upgrade compacts "
			       "it once more)",
			       u->dir, mfs_strerror(rc));
	return 0;
}

int mfs_store_upgrade(const char *dir, const mfs_upgrade_opts *opts, mfs_upgrade_stat *st,
		      mfs_errmsg *err)
{
	upgrade u;
	memset(&u, 0, sizeof u);
	memset(st, 0, sizeof *st);
	u.dir = dir;
	u.lock_fd = -1;
	u.opts = opts;
	u.st = st;
	u.err = err;
	u.batch_bytes = opts && opts->batch_bytes ? opts->batch_bytes : MFS_UPGRADE_BATCH_DEFAULT;

	char path[4200];
	struct stat sb;
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if (stat(path, &sb) < 0) {
		int e = errno;
		if (e == ENOENT)
			return mfs_err(err, -ENOENT,
				       "no modelfs store at %s (no data.mdb there): nothing to "
				       "upgrade (pass --store DIR)",
				       dir);
		return mfs_err(err, -e, "cannot open the store at %s: %s", dir, strerror(e));
	}
	st->index_bytes_before = (uint64_t)sb.st_size;
	unsigned fmt;
	int rc = probe_store(&u, &fmt);
	if (rc < 0)
		goto out;
	if ((rc = claim_store(&u)) < 0)
		goto out;
	uint64_t fmt_rec;
	if (fmt == 0 && (rc = read_format(&u, &fmt_rec)) < 0)
		goto out;
	rc = mfs_store_open(dir, MFS_STORE_UPGRADE | MFS_STORE_NOWAIT, &u.s, err);
	if (rc < 0) {
		if (rc == MFS_E_BUSY)
			mfs_err(err, rc, "store %s is being compacted (modelfs gc --compact): run "
					 "modelfs upgrade again when it is done (nothing was changed)",
				dir);
		else
			mfs_err_prefix(err, rc, "cannot upgrade");
		goto out;
	}
	if ((rc = hold_store(&u)) < 0)
		goto out;
	st->format_before = mfs_store_format(u.s);
	if (st->format_before == MFS_STORE_FORMAT) {
		int owed = 0;
		if ((rc = compact_owed(u.s, &owed)) < 0)
			goto out;
		pack_figures(u.s, st);
		st->chunks_resumed = st->chunks;
		if (!owed)
			goto out; /* nothing to do */
	} else {
		mfs_txn *t;
		if ((rc = mfs_txn_begin(u.s, MFS_TXN_READ, &t)) < 0)
			goto out;
		rc = mfs_chunks_foreach(t, count_fn, &u);
		mfs_txn_abort(t);
		if (rc < 0) {
			mfs_err(err, rc, "store %s: reading its chunk records failed: %s (nothing "
					 "was changed); check it with the modelfs release that wrote "
					 "it (modelfs verify)",
				dir, mfs_strerror(rc));
			goto out;
		}
		st->chunks = u.pr.chunks_total;
		st->chunks_resumed = u.pr.chunks_done;
		if ((rc = space_check(&u)) < 0)
			goto out;
		progress(&u, MFS_UPGRADE_CONVERT);
		rc = list_blobs(&u);
		if (rc == MFS_E_CORRUPT) {
			/* a damaged repo or blob record: no file order for what the
			 * list missed, every chunk is still converted in key order */
			rc = 0;
		} else if (rc < 0) {
			mfs_err(err, rc, "store %s: reading its file records failed: %s (nothing "
					 "was converted)",
				dir, mfs_strerror(rc));
			goto out;
		}
		if ((rc = convert_files(&u)) < 0 || (rc = convert_rest(&u)) < 0 ||
		    (rc = switch_format(&u)) < 0)
			goto out;
		pack_figures(u.s, st);
	}
	/* step 4 needs the store closed: every lock of ours on it goes with it */
	mfs_store_close(u.s);
	u.s = NULL;
	close(u.lock_fd);
	u.lock_fd = -1;
	rc = compact(&u);
out:
	free_blobs(&u);
	mfs_store_close(u.s);
	if (u.lock_fd >= 0)
		close(u.lock_fd); /* after the store: LMDB's own locks on lock.mdb go with it */
	st->index_bytes_after = file_size(dir, "data.mdb");
	return rc;
}
