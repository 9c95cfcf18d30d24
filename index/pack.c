/*
 * pack.c - pack files: names and headers, the read descriptors, the
 * appender of a store handle, the "packs" database, the format-1 conversion
 * (pack.h).
 */
#include "pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bytes.h"
#include "clock.h"
#include "fsutil.h"
#include "store_internal.h"

typedef struct mfs_packs mfs_packs;

static const uint8_t pack_magic[8] = {'M', 'F', 'S', 'P', 'A', 'C', 'K', '\0'};
static const uint8_t entry_magic[4] = {'M', 'F', 'S', 'E'};

/* Read descriptors kept open at most (the least recently used one goes). */
#define PACK_FDS_MAX 256
/* Descriptors of unlinked packs are closed at most this often (ms). */
#define PACK_SWEEP_MS 2000

_Static_assert(MFS_PACK_HDR == 32 && MFS_PACK_ENTRY_HDR == 32,
	       "pack headers are 32 bytes");

typedef struct pack_fd {
	uint64_t id;
	int fd;
	uint64_t used; /* tick of the last use (atomic): for eviction */
} pack_fd;

/* This handle's appender; touched only by its write transaction (s->wmu). */
typedef struct pack_writer {
	uint64_t id; /* 0: none taken */
	int fd;	     /* O_RDWR, flock(LOCK_EX) held */
	uint64_t end;
	/* the current write transaction */
	int used;	    /* it appended */
	int created;	    /* it created the pack (no committed record names it) */
	uint64_t txn_start; /* end when it first appended */
} pack_writer;

struct mfs_packs {
	pthread_rwlock_t lock; /* fds: read for a lookup and the read through it */
	pack_fd *fds;	       /* sorted by id */
	size_t n, cap;
	uint64_t tick;	     /* atomic */
	uint64_t last_sweep; /* ms, atomic */
	pack_writer w;
	mfs_payload_source src; /* src.read set: payloads come from it, not packs/ */
	char dir[]; /* <store>/packs */
};

/* ---- names and headers ---- */

void mfs_pack_name(uint64_t id, char out[MFS_PACK_NAME_MAX])
{
	snprintf(out, MFS_PACK_NAME_MAX, "%016llx.pack", (unsigned long long)id);
}

int mfs_pack_name_parse(const char *name, uint64_t *id)
{
	if (strlen(name) != 21 || strcmp(name + 16, ".pack") != 0)
		return 0;
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
						    : 16;
		if (d == 16)
			return 0;
		v = v << 4 | d;
	}
	*id = v;
	return 1;
}

int mfs_pack_dir(const mfs_store *s, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/packs", s->dir);
	return n < 0 || (size_t)n >= cap ? MFS_E_INVAL : 0;
}

int mfs_pack_path(const mfs_store *s, uint64_t id, char *buf, size_t cap)
{
	char name[MFS_PACK_NAME_MAX];
	mfs_pack_name(id, name);
	int n = snprintf(buf, cap, "%s/packs/%s", s->dir, name);
	return n < 0 || (size_t)n >= cap ? MFS_E_INVAL : 0;
}

void mfs_pack_header_put(uint8_t *p, uint64_t id)
{
	memcpy(p, pack_magic, 8);
	mfs_put_le32(p + 8, MFS_PACK_VERSION);
	mfs_put_le32(p + 12, 0);
	mfs_put_le64(p + 16, id);
	mfs_put_le64(p + 24, 0);
}

int mfs_pack_header_check(const uint8_t *p, uint64_t id)
{
	if (memcmp(p, pack_magic, 8) != 0 || mfs_get_le32(p + 8) != MFS_PACK_VERSION ||
	    mfs_get_le32(p + 12) != 0 || mfs_get_le64(p + 16) != id ||
	    mfs_get_le64(p + 24) != 0)
		return MFS_E_CORRUPT;
	return 0;
}

void mfs_pack_entry_header_put(uint8_t *p, const mfs_chunk_key *key, uint32_t len)
{
	memcpy(p, entry_magic, 4);
	mfs_put_le32(p + 4, len);
	memcpy(p + 8, key->b, 16);
	mfs_put_le64(p + 24, 0);
}

int mfs_pack_entry_header_check(const uint8_t *p, const mfs_chunk_key *key, uint32_t len,
				char *why, size_t cap)
{
	char hex[33];
	const char *w = NULL;
	char buf[128];
	if (memcmp(p, entry_magic, 4) != 0)
		w = "no entry starts there (its magic is not MFSE)";
	else if (mfs_get_le32(p + 4) != len) {
		snprintf(buf, sizeof buf,
			 "the entry holds %u payload bytes, the record says %u",
			 (unsigned)mfs_get_le32(p + 4), (unsigned)len);
		w = buf;
	} else if (memcmp(p + 8, key->b, 16) != 0) {
		mfs_chunk_key k;
		memcpy(k.b, p + 8, 16);
		snprintf(buf, sizeof buf, "the entry is chunk %s's",
			 mfs_chunk_key_hex(&k, hex));
		w = buf;
	} else if (mfs_get_le64(p + 24) != 0)
		w = "the entry header's reserved bytes are not 0";
	if (!w)
		return 0;
	if (why && cap)
		snprintf(why, cap, "%s", w);
	return MFS_E_CORRUPT;
}

/* ---- the handle's state ---- */

int mfs_packs_open(mfs_store *s, mfs_errmsg *err)
{
	char dir[4096];
	if (mfs_pack_dir(s, dir, sizeof dir) < 0)
		return mfs_err(err, MFS_E_INVAL, "store path %s is too long", s->dir);
	size_t dl = strlen(dir);
	mfs_packs *p = calloc(1, sizeof *p + dl + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p->dir, dir, dl + 1);
	p->w.fd = -1;
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	/* a table insert must not wait behind an endless stream of reads */
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&p->lock, &a);
	pthread_rwlockattr_destroy(&a);
	p->last_sweep = mfs_now_ms();
	s->packs = p;
	if (!s->rdonly) {
		struct stat st;
		if (stat(dir, &st) < 0) {
			/* another process opening the new store may make it first */
			if (errno != ENOENT || (mkdir(dir, 0700) < 0 && errno != EEXIST))
				return mfs_err(err, -errno, "cannot create %s: %s", dir,
					       strerror(errno));
			int fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd >= 0) {
				fsync(fd);
				close(fd);
			}
		}
	}
	return 0;
}

void mfs_packs_close(mfs_store *s)
{
	mfs_packs *p = s->packs;
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		close(p->fds[i].fd);
	free(p->fds);
	if (p->w.fd >= 0)
		close(p->w.fd); /* and with it the lock */
	pthread_rwlock_destroy(&p->lock);
	free(p);
	s->packs = NULL;
}

/* ---- the read descriptors ---- */

static size_t fd_find(const mfs_packs *p, uint64_t id, int *found)
{
	size_t lo = 0, hi = p->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->fds[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < p->n && p->fds[lo].id == id;
	return lo;
}

/* Close the descriptors of packs that were unlinked (gc retired them): at
 * most every PACK_SWEEP_MS, and never waiting for the lock. */
static void fd_sweep(mfs_packs *p)
{
	uint64_t now = mfs_now_ms();
	uint64_t last = __atomic_load_n(&p->last_sweep, __ATOMIC_RELAXED);
	if (now - last < PACK_SWEEP_MS ||
	    !__atomic_compare_exchange_n(&p->last_sweep, &last, now, 0, __ATOMIC_RELAXED,
					 __ATOMIC_RELAXED))
		return;
	if (pthread_rwlock_trywrlock(&p->lock) != 0)
		return;
	size_t j = 0;
	for (size_t i = 0; i < p->n; i++) {
		struct stat st;
		if (fstat(p->fds[i].fd, &st) == 0 && st.st_nlink == 0) {
			close(p->fds[i].fd);
			continue;
		}
		p->fds[j++] = p->fds[i];
	}
	p->n = j;
	pthread_rwlock_unlock(&p->lock);
}

void mfs_store_packs_sweep(mfs_store *s)
{
	if (s->packs)
		fd_sweep(s->packs);
}

/* Open pack @p id for reading and check its header. */
static int fd_open(mfs_store *s, uint64_t id, int *out, mfs_errmsg *err)
{
	char path[4200];
	if (mfs_pack_path(s, id, path, sizeof path) < 0)
		return mfs_err(err, MFS_E_INVAL, "store path %s is too long", s->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			return mfs_err(err, MFS_E_CORRUPT, "pack file %s is missing",
				       path);
		return mfs_err(err, -e, "cannot open pack file %s: %s", path,
			       strerror(e));
	}
	uint8_t h[MFS_PACK_HDR];
	int rc = mfs_pread_full(fd, h, sizeof h, 0, MFS_E_CORRUPT, NULL);
	if (rc == 0 && mfs_pack_header_check(h, id) < 0)
		rc = MFS_E_CORRUPT;
	if (rc < 0) {
		close(fd);
		if (rc == MFS_E_CORRUPT)
			return mfs_err(err, rc, "pack file %s has no valid pack header",
				       path);
		return mfs_err(err, rc, "cannot read pack file %s: %s", path,
			       mfs_strerror(rc));
	}
	*out = fd;
	return 0;
}

/*
 * A read descriptor of pack @p id, with p->lock held for reading: give it
 * back with fd_release() once the read through it is done (the lock keeps it
 * from being closed meanwhile).
 */
static int fd_acquire(mfs_store *s, uint64_t id, int *fd, mfs_errmsg *err)
{
	mfs_packs *p = s->packs;
	fd_sweep(p);
	for (int tries = 0; tries < 4; tries++) {
		int found;
		pthread_rwlock_rdlock(&p->lock);
		size_t i = fd_find(p, id, &found);
		if (found) {
			__atomic_store_n(
			    &p->fds[i].used,
			    __atomic_add_fetch(&p->tick, 1, __ATOMIC_RELAXED),
			    __ATOMIC_RELAXED);
			*fd = p->fds[i].fd;
			return 0;
		}
		pthread_rwlock_unlock(&p->lock);
		int nfd;
		int rc = fd_open(s, id, &nfd, err);
		if (rc < 0)
			return rc;
		pthread_rwlock_wrlock(&p->lock);
		i = fd_find(p, id, &found);
		if (found) {
			close(nfd); /* another thread opened it meanwhile */
		} else {
			if (p->n >= PACK_FDS_MAX) {
				size_t old = 0;
				for (size_t k = 1; k < p->n; k++)
					if (p->fds[k].used < p->fds[old].used)
						old = k;
				close(p->fds[old].fd);
				memmove(&p->fds[old], &p->fds[old + 1],
					(p->n - old - 1) * sizeof *p->fds);
				p->n--;
				i = fd_find(p, id, &found);
			}
			if (p->n == p->cap) {
				size_t nc = p->cap ? 2 * p->cap : 16;
				pack_fd *g = realloc(p->fds, nc * sizeof *g);
				if (!g) {
					pthread_rwlock_unlock(&p->lock);
					close(nfd);
					return -ENOMEM;
				}
				p->fds = g;
				p->cap = nc;
			}
			memmove(&p->fds[i + 1], &p->fds[i], (p->n - i) * sizeof *p->fds);
			p->fds[i] = (pack_fd){id, nfd, 0};
			p->n++;
		}
		pthread_rwlock_unlock(&p->lock);
	}
	return -EAGAIN; /* evicted three times over: a table far too small */
}

static void fd_release(mfs_store *s)
{
	pthread_rwlock_unlock(&s->packs->lock);
}

/* Close the read descriptor of pack @p id, if one is open: its id may be
 * taken again for another file (a transaction that created it rolled back). */
static void fd_forget(mfs_packs *p, uint64_t id)
{
	pthread_rwlock_wrlock(&p->lock);
	int found;
	size_t i = fd_find(p, id, &found);
	if (found) {
		close(p->fds[i].fd);
		memmove(&p->fds[i], &p->fds[i + 1], (p->n - i - 1) * sizeof *p->fds);
		p->n--;
	}
	pthread_rwlock_unlock(&p->lock);
}

/* preadv of the whole of @p iov (2 parts) at @p off; the bytes read. */
static ssize_t preadv_full(int fd, struct iovec *iov, uint64_t off)
{
	size_t total = iov[0].iov_len + iov[1].iov_len, done = 0;
	while (done < total) {
		struct iovec v[2];
		int n = 0;
		if (done < iov[0].iov_len) {
			v[n].iov_base = (uint8_t *)iov[0].iov_base + done;
			v[n++].iov_len = iov[0].iov_len - done;
			v[n++] = iov[1];
		} else {
			size_t in = done - iov[0].iov_len;
			v[n].iov_base = (uint8_t *)iov[1].iov_base + in;
			v[n++].iov_len = iov[1].iov_len - in;
		}
		ssize_t r = preadv(fd, v, n, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static int entry_read(mfs_store *s, const mfs_chunk_key *key, const mfs_chunk_loc *loc,
		      uint8_t *hdr, void *buf, size_t len, char *why, size_t wcap)
{
	mfs_errmsg e = {0};
	char path[4200];
	mfs_pack_path(s, loc->pack, path, sizeof path);
	int fd;
	int rc = fd_acquire(s, loc->pack, &fd, &e);
	if (rc < 0) {
		snprintf(why, wcap, "%s", e.msg[0] ? e.msg : mfs_strerror(rc));
		return rc;
	}
	struct iovec iov[2] = {{hdr, MFS_PACK_ENTRY_HDR}, {buf, len}};
	ssize_t n = preadv_full(fd, iov, loc->off);
	int en = errno;
	fd_release(s);
	if (n < 0) {
		snprintf(why, wcap, "reading pack file %s failed: %s", path,
			 strerror(en));
		return -en;
	}
	if ((size_t)n < MFS_PACK_ENTRY_HDR + len) {
		snprintf(why, wcap,
			 "pack file %s ends %zd bytes into the entry (of %zu bytes)",
			 path, n, (size_t)MFS_PACK_ENTRY_HDR + len);
		return MFS_E_CORRUPT;
	}
	char w[200];
	if (mfs_pack_entry_header_check(hdr, key, loc->len, w, sizeof w) < 0) {
		snprintf(why, wcap, "in pack file %s: %s", path, w);
		return MFS_E_CORRUPT;
	}
	return 0;
}

int mfs_pack_entry_read(mfs_store *s, const mfs_chunk_key *key, const mfs_chunk_loc *loc,
			void *buf, mfs_errmsg *err)
{
	if (s->packs->src.read)
		return s->packs->src.read(s->packs->src.ud, key, loc, buf, err);
	uint8_t hdr[MFS_PACK_ENTRY_HDR];
	char why[600], hex[33];
	int rc = entry_read(s, key, loc, hdr, buf, loc->len, why, sizeof why);
	if (rc < 0)
		return mfs_err(err, rc, "chunk %s (pack %016llx, offset %llu): %s",
			       mfs_chunk_key_hex(key, hex), (unsigned long long)loc->pack,
			       (unsigned long long)loc->off, why);
	return 0;
}

int mfs_pack_entry_check(mfs_store *s, const mfs_chunk_key *key, const mfs_chunk_loc *loc,
			 char *why, size_t cap)
{
	uint8_t hdr[MFS_PACK_ENTRY_HDR];
	char w[600];
	int rc = entry_read(s, key, loc, hdr, NULL, 0, w, sizeof w);
	if (rc < 0 && why && cap)
		snprintf(why, cap, "%s (entry at offset %llu)", w,
			 (unsigned long long)loc->off);
	return rc;
}

int mfs_chunk_payload_read(mfs_store *s, const mfs_chunk_key *key,
			   const mfs_chunk_view *v, void *buf, size_t cap,
			   mfs_errmsg *err)
{
	if (cap < v->payload_len)
		return MFS_E_NOSPACE;
	if (!v->in_pack) {
		if (v->payload_len)
			memcpy(buf, v->payload, v->payload_len);
		return 0;
	}
	return mfs_pack_entry_read(s, key, &v->loc, buf, err);
}

int mfs_chunk_load(mfs_store *s, const mfs_chunk_key *key, mfs_chunk_view *v,
		   mfs_codec_ws *ws, mfs_errmsg *err)
{
	if (!v->in_pack)
		return 0;
	void *buf =
	    mfs_codec_ws_scratch(ws, MFS_WS_SLOT_PAYLOAD, v->loc.len ? v->loc.len : 1);
	if (!buf)
		return -ENOMEM;
	int rc = mfs_pack_entry_read(s, key, &v->loc, buf, err);
	if (rc < 0)
		return rc;
	v->payload = buf;
	v->payload_len = v->loc.len;
	return 0;
}

void mfs_store_set_payload_source(mfs_store *s, const mfs_payload_source *src)
{
	static const mfs_payload_source none;
	s->packs->src = src ? *src : none;
}

void mfs_pack_will_need(mfs_store *s, uint64_t pack, uint64_t off, uint64_t len)
{
	int fd;
	if (s->packs->src.read) {
		if (s->packs->src.will_need)
			s->packs->src.will_need(s->packs->src.ud, pack, off, len);
		return;
	}
	if (fd_acquire(s, pack, &fd, NULL) < 0)
		return;
	posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
	fd_release(s);
}

void mfs_chunk_will_need(mfs_store *s, const mfs_chunk_view *v)
{
	if (v->in_pack)
		mfs_pack_will_need(s, v->loc.pack, v->loc.off,
				   mfs_pack_entry_bytes(v->loc.len));
}

/* ---- the packs database ---- */

static void pack_key(uint8_t k[8], uint64_t id)
{
	for (int i = 0; i < 8; i++)
		k[i] = (uint8_t)(id >> (56 - 8 * i));
}

int mfs_pack_rec_get(mfs_txn *t, uint64_t id, mfs_pack_rec *out)
{
	uint8_t kb[8];
	pack_key(kb, id);
	MDB_val k = {8, kb}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_PACKS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	return mfs_rec_pack_decode(v.mv_data, v.mv_size, out);
}

int mfs_pack_rec_put(mfs_txn *t, uint64_t id, const mfs_pack_rec *r)
{
	uint8_t kb[8], vb[MFS_REC_PACK_LEN];
	pack_key(kb, id);
	mfs_rec_pack_encode(vb, r);
	MDB_val k = {8, kb}, v = {sizeof vb, vb};
	return mfs_db_rc(mdb_put(t->txn, DBI(t, DB_PACKS), &k, &v, 0));
}

int mfs_pack_rec_del(mfs_txn *t, uint64_t id)
{
	uint8_t kb[8];
	pack_key(kb, id);
	MDB_val k = {8, kb};
	int rc = mdb_del(t->txn, DBI(t, DB_PACKS), &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : mfs_db_rc(rc);
}

int mfs_pack_account(mfs_txn *t, const mfs_chunk_loc *loc, int delta)
{
	mfs_pack_rec r;
	int rc = mfs_pack_rec_get(t, loc->pack, &r);
	if (rc == MFS_E_NOTFOUND || rc == MFS_E_CORRUPT)
		return 0; /* check's to report */
	if (rc < 0)
		return rc;
	uint64_t e = mfs_pack_entry_bytes(loc->len);
	if (delta > 0) {
		r.live_bytes += e;
	} else {
		r.live_bytes = r.live_bytes > e ? r.live_bytes - e : 0;
		r.dead_bytes += e;
	}
	return mfs_pack_rec_put(t, loc->pack, &r);
}

struct packs_iter {
	int (*cb)(void *, uint64_t, const mfs_pack_rec *);
	void *ud;
};

static int packs_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct packs_iter *it = ud;
	if (k->mv_size != 8)
		return it->cb(it->ud, 0, NULL);
	uint64_t id = 0;
	for (int i = 0; i < 8; i++)
		id = id << 8 | ((const uint8_t *)k->mv_data)[i];
	mfs_pack_rec r;
	int rc = mfs_rec_pack_decode(v->mv_data, v->mv_size, &r);
	return it->cb(it->ud, id, rc == 0 ? &r : NULL);
}

int mfs_packs_foreach(mfs_txn *t, int (*cb)(void *ud, uint64_t id, const mfs_pack_rec *r),
		      void *ud)
{
	struct packs_iter it = {cb, ud};
	return mfs_db_iter(t->txn, DBI(t, DB_PACKS), NULL, 0, packs_iter_fn, &it);
}

struct preopen_ids {
	uint64_t id[PACK_FDS_MAX];
	size_t n;
};

static int preopen_collect(void *ud, uint64_t id, const mfs_pack_rec *r)
{
	struct preopen_ids *c = ud;
	if (r && r->live_bytes && r->state != MFS_PACK_RETIRED)
		c->id[c->n++] = id;
	return c->n == PACK_FDS_MAX;
}

int mfs_packs_preopen(mfs_store *s, size_t *opened)
{
	if (opened)
		*opened = 0;
	if (!s->packs || s->packs->src.read)
		return 0;
	struct preopen_ids *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc == 0) {
		rc = mfs_packs_foreach(t, preopen_collect, c);
		mfs_txn_abort(t);
	}
	if (rc > 0) /* the table is full */
		rc = 0;
	for (size_t i = 0; rc == 0 && i < c->n; i++) {
		int fd, found;
		pthread_rwlock_rdlock(&s->packs->lock);
		fd_find(s->packs, c->id[i], &found);
		pthread_rwlock_unlock(&s->packs->lock);
		if (!found && fd_acquire(s, c->id[i], &fd, NULL) == 0) {
			fd_release(s);
			if (opened)
				(*opened)++;
		}
	}
	free(c);
	return rc;
}

/* ---- writing ---- */

int mfs_pack_dir_sync(mfs_store *s)
{
	int fd = open(s->packs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* pwrite all of @p n parts at @p off. @return 0 or -errno */
static int pwritev_full(int fd, const struct iovec *iov, int n, uint64_t off)
{
	struct iovec v[2];
	memcpy(v, iov, (size_t)n * sizeof *v);
	int first = 0;
	while (first < n) {
		ssize_t w = pwritev(fd, v + first, n - first, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		off += (uint64_t)w;
		size_t left = (size_t)w;
		while (first < n && left >= v[first].iov_len)
			left -= v[first++].iov_len;
		if (first < n) {
			v[first].iov_base = (uint8_t *)v[first].iov_base + left;
			v[first].iov_len -= left;
		}
	}
	return 0;
}

int mfs_pack_create(mfs_txn *t, uint64_t *id_out, int *fd_out)
{
	if (!t->write)
		return MFS_E_INVAL;
	mfs_store *s = t->s;
	uint64_t id = 1;
	int rc = mfs_db_meta_get(t->txn, DBI(t, DB_META), "pack_next", &id);
	if (rc < 0 && rc != MFS_E_NOTFOUND)
		return rc;
	if (id == 0)
		id = 1;
	int fd = -1;
	/* a file under a free id was left by a crash (or by a transaction of
	 * another process that is aborting): skip it, gc removes it */
	for (int tries = 0; tries < 64; tries++, id++) {
		char path[4200];
		if ((rc = mfs_pack_path(s, id, path, sizeof path)) < 0)
			return rc;
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			break;
		if (errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	char path[4200];
	mfs_pack_path(s, id, path, sizeof path);
	uint8_t h[MFS_PACK_HDR];
	mfs_pack_header_put(h, id);
	struct iovec iov[1] = {{h, sizeof h}};
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || (rc = pwritev_full(fd, iov, 1, 0)) < 0) {
		rc = rc < 0 ? rc : -errno;
		goto fail;
	}
	mfs_pack_rec r = {.committed_end = MFS_PACK_HDR, .state = MFS_PACK_OPEN};
	if ((rc = mfs_db_meta_put(t->txn, DBI(t, DB_META), "pack_next", id + 1)) < 0 ||
	    (rc = mfs_pack_rec_put(t, id, &r)) < 0)
		goto fail;
	*id_out = id;
	*fd_out = fd;
	return 0;
fail:
	unlink(path);
	close(fd);
	return rc;
}

/* Drop the appender's pack (its lock goes with the descriptor). */
static void writer_drop(pack_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->id = 0;
	w->end = 0;
}

/* A pack left open by a handle that let go of it (a finished ingest's). */
typedef struct reuse_ctx {
	mfs_store *s;
	uint64_t id, end;
	int fd;
} reuse_ctx;

static int reuse_fn(void *ud, uint64_t id, const mfs_pack_rec *r)
{
	reuse_ctx *c = ud;
	if (!r || r->state != MFS_PACK_OPEN || r->committed_end < MFS_PACK_HDR ||
	    r->committed_end >= MFS_PACK_REUSE_BELOW)
		return 0;
	char path[4200];
	if (mfs_pack_path(c->s, id, path, sizeof path) < 0)
		return 0;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	/* held: another handle appends to it, or gc works on it */
	uint8_t h[MFS_PACK_HDR];
	struct stat st;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 ||
	    mfs_pread_full(fd, h, sizeof h, 0, MFS_E_CORRUPT, NULL) < 0 ||
	    mfs_pack_header_check(h, id) < 0 || fstat(fd, &st) < 0 ||
	    (uint64_t)st.st_size < r->committed_end /* damaged: verify reports it */ ||
	    /* bytes past committed_end: a writer that died before its commit */
	    ((uint64_t)st.st_size > r->committed_end &&
	     ftruncate(fd, (off_t)r->committed_end) < 0)) {
		close(fd);
		return 0;
	}
	c->id = id;
	c->end = r->committed_end;
	c->fd = fd;
	return 1;
}

/* The pack to append to in this transaction: the one held, unless it is
 * full (sealed in @p t); else an open pack below MFS_PACK_REUSE_BELOW whose
 * lock is free (in @p t, the newest state of every record: no other writer
 * commits meanwhile, and gc changes a pack only under its lock); else a new
 * one. */
static int writer_ready(mfs_txn *t)
{
	pack_writer *w = &t->s->packs->w;
	if (w->used)
		return 0;
	int rc;
	if (w->id && w->end >= MFS_PACK_LIMIT) {
		mfs_pack_rec r;
		if ((rc = mfs_pack_rec_get(t, w->id, &r)) == 0) {
			r.state = MFS_PACK_SEALED;
			rc = mfs_pack_rec_put(t, w->id, &r);
		}
		if (rc < 0 && rc != MFS_E_NOTFOUND && rc != MFS_E_CORRUPT)
			return rc;
		writer_drop(w);
	}
	if (!w->id) {
		reuse_ctx c = {.s = t->s, .fd = -1};
		if ((rc = mfs_packs_foreach(t, reuse_fn, &c)) < 0)
			return rc;
		if (c.fd >= 0) {
			w->id = c.id;
			w->fd = c.fd;
			w->end = c.end;
			w->created = 0;
		}
	}
	if (!w->id) {
		uint64_t id;
		int fd;
		if ((rc = mfs_pack_create(t, &id, &fd)) < 0)
			return rc;
		w->id = id;
		w->fd = fd;
		w->end = MFS_PACK_HDR;
		w->created = 1;
	}
	w->txn_start = w->end;
	w->used = 1;
	return 0;
}

int mfs_pack_append(mfs_txn *t, const mfs_chunk_key *key, const void *payload, size_t len,
		    mfs_chunk_loc *out)
{
	if (!t->write || len > UINT32_MAX)
		return MFS_E_INVAL;
	int rc = writer_ready(t);
	if (rc < 0)
		return rc;
	pack_writer *w = &t->s->packs->w;
	uint8_t h[MFS_PACK_ENTRY_HDR];
	mfs_pack_entry_header_put(h, key, (uint32_t)len);
	struct iovec iov[2] = {{h, sizeof h}, {(void *)payload, len}};
	if ((rc = pwritev_full(w->fd, iov, len ? 2 : 1, w->end)) < 0)
		return rc; /* the transaction aborts: the tail is truncated then */
	out->pack = w->id;
	out->off = w->end;
	out->len = (uint32_t)len;
	w->end += mfs_pack_entry_bytes(len);
	mfs_pack_rec r;
	if ((rc = mfs_pack_rec_get(t, w->id, &r)) < 0)
		return rc;
	r.committed_end = w->end;
	r.live_bytes += mfs_pack_entry_bytes(len);
	return mfs_pack_rec_put(t, w->id, &r);
}

int mfs_pack_txn_precommit(mfs_txn *t)
{
	pack_writer *w = &t->s->packs->w;
	if (!w->used)
		return 0;
	if (fdatasync(w->fd) < 0)
		return -errno;
	return w->created ? mfs_pack_dir_sync(t->s) : 0;
}

/* Give back what this transaction appended: the tail truncated, or the
 * pack it created removed.  @p may_unlink: the index write lock is still
 * held (before the abort), so no other process can have taken this id. */
static void writer_rollback(mfs_packs *p, const char *path, int may_unlink)
{
	pack_writer *w = &p->w;
	if (w->created) {
		if (may_unlink)
			unlink(path);
		fd_forget(p, w->id); /* a read of it meanwhile: its id is free again */
		writer_drop(w);	     /* after a failed commit: gc removes the file */
	} else {
		if (ftruncate(w->fd, (off_t)w->txn_start) != 0) {
			/* the tail stays past committed_end: gc truncates it */
		}
		w->end = w->txn_start;
	}
}

void mfs_pack_txn_end(mfs_txn *t, int committed)
{
	pack_writer *w = &t->s->packs->w;
	if (w->used && !committed) {
		char path[4200];
		mfs_pack_path(t->s, w->id, path, sizeof path);
		writer_rollback(t->s->packs, path, 0);
	}
	w->used = 0;
	w->created = 0;
}

void mfs_pack_txn_abort(mfs_txn *t)
{
	pack_writer *w = &t->s->packs->w;
	if (w->used) {
		char path[4200];
		mfs_pack_path(t->s, w->id, path, sizeof path);
		writer_rollback(t->s->packs, path, 1);
	}
	w->used = 0;
	w->created = 0;
}

/* ---- upgrade ---- */

int mfs_chunk_upgrade(mfs_txn *t, const mfs_chunk_key *key, int *moved)
{
	if (moved)
		*moved = 0;
	if (!t->write)
		return MFS_E_INVAL;
	MDB_val k = {16, (void *)key->b}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_CHUNKS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	mfs_chunk_view cv;
	if (mfs_rec_chunk_decode(v.mv_data, v.mv_size, &cv) < 0)
		return MFS_E_CORRUPT;
	if (cv.in_pack)
		return 0;
	mfs_chunk_meta m = {.codec = cv.codec,
			    .raw_len = cv.raw_len,
			    .n_refs = cv.n_refs,
			    .refs = cv.refs,
			    .geom = cv.has_geom ? &cv.geom : NULL};
	mfs_chunk_loc loc;
	/* the payload points into the map: appended before the record is rewritten */
	if ((rc = mfs_pack_append(t, key, cv.payload, cv.payload_len, &loc)) < 0)
		return rc;
	uint8_t rec[MFS_REC_CHUNK_MAX];
	size_t rl;
	if ((rc = mfs_rec_chunk_encode(rec, &m, &loc, &rl)) < 0)
		return rc;
	MDB_val nv = {rl, rec};
	if ((rc = mdb_put(t->txn, DBI(t, DB_CHUNKS), &k, &nv, 0)) != 0)
		return mfs_db_rc(rc);
	if (moved)
		*moved = 1;
	return 0;
}

unsigned mfs_store_format(const mfs_store *s)
{
	return s->format;
}

int mfs_store_format_set(mfs_txn *t, unsigned format)
{
	if (!t->write || format < 1 || format > MFS_STORE_FORMAT)
		return MFS_E_INVAL;
	int rc = mfs_db_meta_put(t->txn, DBI(t, DB_META), "format", format);
	if (rc == 0)
		t->s->format = format;
	return rc;
}
