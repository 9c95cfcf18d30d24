/*
 * chunkcache.c - payloads of a remote store, cached on local disk (chunkcache.h).
 */
#include "chunkcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bucket.h"
#include "pack.h"

#define CC_TRAILER   16	  /* XXH3-128 of the entry header and the payload */
#define CC_BLOCK     4096 /* what a file's size is rounded up to for a reservation */
#define CC_MIN_BYTES (64 * 1024)
#define CC_NAME_MAX  64

enum { CC_PRESENT, CC_FETCHING };

#define CC_QUEUE	64	    /* prefetch runs waiting; more are dropped */
#define CC_PREFETCH_MAX (16u << 20) /* bytes one prefetch GET asks for at most */
#define CC_WORKERS_MAX	16

typedef struct cc_job {
	uint64_t pack, off, len;
} cc_job;

/* One fetch in flight, shared by the callers that wait for it. */
typedef struct cc_fetch {
	int done, rc;
	unsigned refs;
	uint8_t *blob; /* header + payload + trailer room; owned here */
	size_t len;    /* payload length */
	mfs_errmsg err;
} cc_fetch;

typedef struct cc_entry {
	mfs_chunk_key key;
	struct cc_entry *hnext;	      /* hash chain */
	struct cc_entry *prev, *next; /* LRU list, PRESENT only: front = newest */
	uint64_t disk;		      /* its file's blocks (or the reservation) */
	uint64_t id;		      /* unique: tells a re-inserted key apart */
	time_t touched;		      /* mtime as last set */
	uint64_t mtime_ns;	      /* scan: the file's mtime, to order by */
	int state;
	cc_fetch *f; /* FETCHING */
} cc_entry;

struct mfs_chunkcache {
	mfs_chunkcache_opts o;
	char dir[4096]; /* DIR/cache */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	cc_entry **tab;
	size_t nb, count;
	cc_entry lru; /* sentinel */
	uint64_t disk_total, next_id;
	mfs_chunkcache_stats st;
	/* prefetch: a ring of runs, worker threads (mu guards both) */
	cc_job q[CC_QUEUE];
	unsigned q_head, q_n, q_busy;
	int stopping;
	pthread_cond_t qcv;
	pthread_t workers[CC_WORKERS_MAX];
	unsigned n_workers;
};

static void *prefetch_worker(void *arg);

static size_t bucket_of(const mfs_chunkcache *cc, const mfs_chunk_key *k)
{
	uint64_t h;
	memcpy(&h, k->b + 8, sizeof h); /* the key is a hash already */
	return (size_t)(h & (cc->nb - 1));
}

static cc_entry *find(mfs_chunkcache *cc, const mfs_chunk_key *k)
{
	for (cc_entry *e = cc->tab[bucket_of(cc, k)]; e; e = e->hnext)
		if (!memcmp(e->key.b, k->b, 16))
			return e;
	return NULL;
}

static int grow(mfs_chunkcache *cc)
{
	size_t nb = cc->nb * 2;
	cc_entry **t = calloc(nb, sizeof *t);
	if (!t)
		return -ENOMEM;
	size_t old = cc->nb;
	cc_entry **ot = cc->tab;
	cc->tab = t;
	cc->nb = nb;
	for (size_t i = 0; i < old; i++)
		for (cc_entry *e = ot[i], *n; e; e = n) {
			n = e->hnext;
			size_t b = bucket_of(cc, &e->key);
			e->hnext = t[b];
			t[b] = e;
		}
	free(ot);
	return 0;
}

static void tab_add(mfs_chunkcache *cc, cc_entry *e)
{
	if (cc->count >= cc->nb)
		grow(cc); /* on failure the chains grow longer: still correct */
	size_t b = bucket_of(cc, &e->key);
	e->hnext = cc->tab[b];
	cc->tab[b] = e;
	cc->count++;
}

static void tab_del(mfs_chunkcache *cc, cc_entry *e)
{
	for (cc_entry **p = &cc->tab[bucket_of(cc, &e->key)]; *p; p = &(*p)->hnext)
		if (*p == e) {
			*p = e->hnext;
			cc->count--;
			return;
		}
}

static void lru_unlink(cc_entry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}

static void lru_front(mfs_chunkcache *cc, cc_entry *e)
{
	e->next = cc->lru.next;
	e->prev = &cc->lru;
	cc->lru.next->prev = e;
	cc->lru.next = e;
}

static void entry_path(const mfs_chunkcache *cc, const mfs_chunk_key *k, char *out,
		       size_t cap)
{
	char hex[33];
	snprintf(out, cap, "%s/%s.entry", cc->dir, mfs_chunk_key_hex(k, hex));
}

/* Remove a PRESENT entry: its file, its bytes, its record.  Under mu. */
static void drop(mfs_chunkcache *cc, cc_entry *e)
{
	char path[4200];
	entry_path(cc, &e->key, path, sizeof path);
	unlink(path);
	lru_unlink(e);
	tab_del(cc, e);
	cc->disk_total -= e->disk;
	cc->st.entries--;
	free(e);
}

/* Evict the least recently used until @p need more bytes fit.  Under mu.
 * @return 1 when they fit */
static int make_room(mfs_chunkcache *cc, uint64_t need)
{
	while (cc->disk_total + need > cc->o.max_bytes) {
		cc_entry *tail = cc->lru.prev;
		if (tail == &cc->lru)
			return 0; /* only reservations of fetches in flight are left */
		drop(cc, tail);
		cc->st.evictions++;
	}
	return 1;
}

static void trailer_of(const uint8_t *blob, size_t n, uint8_t out[CC_TRAILER])
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(blob, n));
	memcpy(out, c.digest, CC_TRAILER);
}

/* Read a cached file: header, payload into @p buf, trailer; all checked.
 * @return 0, -ENOENT (gone), MFS_E_CORRUPT (torn or damaged), -errno */
static int file_read(mfs_chunkcache *cc, const mfs_chunk_key *key, uint32_t len,
		     void *buf)
{
	char path[4200];
	entry_path(cc, key, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if ((uint64_t)st.st_size != (uint64_t)MFS_PACK_ENTRY_HDR + len + CC_TRAILER)
		rc = MFS_E_CORRUPT;
	uint8_t hdr[MFS_PACK_ENTRY_HDR], tr[CC_TRAILER], want[CC_TRAILER];
	if (rc == 0) {
		struct iovec iov[3] = {{hdr, sizeof hdr}, {buf, len}, {tr, sizeof tr}};
		size_t total = sizeof hdr + len + sizeof tr;
		ssize_t r;
		do
			r = preadv(fd, iov, 3, 0);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			rc = -errno;
		else if ((size_t)r != total)
			rc = MFS_E_CORRUPT; /* a short read of a local file: re-fetch */
	}
	close(fd);
	if (rc < 0)
		return rc;
	if (mfs_pack_entry_header_check(hdr, key, len, NULL, 0) < 0)
		return MFS_E_CORRUPT;
	XXH3_state_t *s = XXH3_createState();
	if (!s)
		return -ENOMEM;
	XXH3_128bits_reset(s);
	XXH3_128bits_update(s, hdr, sizeof hdr);
	XXH3_128bits_update(s, buf, len);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s));
	XXH3_freeState(s);
	memcpy(want, c.digest, CC_TRAILER);
	return memcmp(want, tr, CC_TRAILER) ? MFS_E_CORRUPT : 0;
}

/* Write header + payload + trailer (blob) as the entry's file: a temporary
 * name, then rename.  @return 0 and the file's disk bytes, or -errno */
static int file_write(mfs_chunkcache *cc, const mfs_chunk_key *key, const uint8_t *blob,
		      size_t n, uint64_t *disk)
{
	char path[4200], tmp[4300];
	entry_path(cc, key, path, sizeof path);
	uint64_t rnd = 0;
	if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
		rnd = (uint64_t)(uintptr_t)blob ^ (uint64_t)time(NULL);
	snprintf(tmp, sizeof tmp, "%s.tmp.%016" PRIx64, path, rnd);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	int rc = 0;
	while (done < n) {
		ssize_t w = write(fd, blob + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			break;
		}
		done += (size_t)w;
	}
	struct stat st;
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	/* delayed allocation: blocks may show only once written back; count at
	 * least the size rounded up to a block */
	uint64_t blocks = (uint64_t)st.st_blocks * 512;
	uint64_t round = ((uint64_t)n + CC_BLOCK - 1) / CC_BLOCK * CC_BLOCK;
	*disk = blocks > round ? blocks : round;
	return 0;
}

static int cmp_mtime(const void *a, const void *b)
{
	const cc_entry *x = *(cc_entry *const *)a, *y = *(cc_entry *const *)b;
	return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* What the directory holds: entries by mtime, oldest at the LRU's tail. */
static int scan(mfs_chunkcache *cc, mfs_errmsg *e)
{
	DIR *d = opendir(cc->dir);
	if (!d)
		return mfs_err(e, -errno, "cannot read the chunk cache %s: %s", cc->dir,
			       strerror(errno));
	cc_entry **v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *nm = de->d_name;
		char path[4400];
		snprintf(path, sizeof path, "%s/%s", cc->dir, nm);
		if (strstr(nm, ".tmp.")) { /* a write a crash cut short */
			unlink(path);
			continue;
		}
		if (strlen(nm) != 38 || strcmp(nm + 32, ".entry"))
			continue;
		mfs_chunk_key k;
		int ok = 1;
		for (int i = 0; i < 16 && ok; i++) {
			int a = hexval(nm[2 * i]), b = hexval(nm[2 * i + 1]);
			ok = a >= 0 && b >= 0;
			k.b[i] = (uint8_t)(a << 4 | b);
		}
		struct stat st;
		if (!ok || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 256;
			cc_entry **nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		cc_entry *en = calloc(1, sizeof *en);
		if (!en) {
			rc = -ENOMEM;
			break;
		}
		en->key = k;
		en->disk = (uint64_t)st.st_blocks * 512;
		en->touched = st.st_mtime;
		en->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u +
			       (uint64_t)st.st_mtim.tv_nsec;
		en->state = CC_PRESENT;
		en->id = ++cc->next_id;
		v[n++] = en;
	}
	closedir(d);
	if (rc == 0) {
		if (n)
			qsort(v, n, sizeof *v, cmp_mtime);
		for (size_t i = 0; i < n; i++) {
			tab_add(cc, v[i]);
			lru_front(cc, v[i]);
			cc->disk_total += v[i]->disk;
			cc->st.entries++;
		}
		make_room(cc, 0); /* a smaller bound than last time */
	} else {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
	}
	free(v);
	return rc;
}

int mfs_chunkcache_open(const mfs_chunkcache_opts *o, mfs_chunkcache **out, mfs_errmsg *e)
{
	if (!o->s3 || !o->dir)
		return mfs_err(e, MFS_E_INVAL,
			       "the chunk cache needs a client and a directory");
	if (o->max_bytes < CC_MIN_BYTES)
		return mfs_err(e, MFS_E_INVAL,
			       "a chunk cache of %" PRIu64
			       " bytes is too small: give at least "
			       "64 KiB (--cache-size)",
			       o->max_bytes);
	mfs_chunkcache *cc = calloc(1, sizeof *cc);
	if (!cc)
		return -ENOMEM;
	cc->o = *o;
	cc->lru.prev = cc->lru.next = &cc->lru;
	cc->st.max_bytes = o->max_bytes;
	cc->nb = 1024;
	cc->tab = calloc(cc->nb, sizeof *cc->tab);
	if (!cc->tab) {
		free(cc);
		return -ENOMEM;
	}
	pthread_mutex_init(&cc->mu, NULL);
	pthread_cond_init(&cc->cv, NULL);
	pthread_cond_init(&cc->qcv, NULL);
	snprintf(cc->dir, sizeof cc->dir, "%s/cache", o->dir);
	int rc = 0;
	if (mkdir(o->dir, 0700) < 0 && errno != EEXIST)
		rc = mfs_err(e, -errno, "cannot create %s: %s", o->dir, strerror(errno));
	else if (mkdir(cc->dir, 0700) < 0 && errno != EEXIST)
		rc = mfs_err(e, -errno, "cannot create the chunk cache %s: %s", cc->dir,
			     strerror(errno));
	if (rc == 0)
		rc = scan(cc, e);
	unsigned want =
	    o->prefetch_threads > CC_WORKERS_MAX ? CC_WORKERS_MAX : o->prefetch_threads;
	for (unsigned i = 0; rc == 0 && i < want; i++) {
		int prc = pthread_create(&cc->workers[i], NULL, prefetch_worker, cc);
		if (prc)
			rc = mfs_err(e, -prc, "cannot start a prefetch thread: %s",
				     strerror(prc));
		else
			cc->n_workers++;
	}
	if (rc < 0) {
		mfs_chunkcache_close(cc);
		return rc;
	}
	*out = cc;
	return 0;
}

void mfs_chunkcache_close(mfs_chunkcache *cc)
{
	if (!cc)
		return;
	pthread_mutex_lock(&cc->mu);
	cc->stopping = 1; /* queued runs are dropped; running ones finish */
	pthread_cond_broadcast(&cc->qcv);
	pthread_mutex_unlock(&cc->mu);
	for (unsigned i = 0; i < cc->n_workers; i++)
		pthread_join(cc->workers[i], NULL);
	for (size_t i = 0; i < cc->nb; i++)
		for (cc_entry *e = cc->tab[i], *n; e; e = n) {
			n = e->hnext;
			free(e);
		}
	free(cc->tab);
	pthread_mutex_destroy(&cc->mu);
	pthread_cond_destroy(&cc->cv);
	pthread_cond_destroy(&cc->qcv);
	free(cc);
}

static void fetch_put(cc_fetch *f)
{
	if (--f->refs == 0) {
		free(f->blob);
		free(f);
	}
}

/* A fetched entry (header + payload at @p blob) is chunk @p key's.
 * @return 0, MFS_CHUNKCACHE_UNCHECKED (verify could not check it), or a code */
static int entry_check(mfs_chunkcache *cc, const mfs_chunk_key *key,
		       const mfs_chunk_loc *loc, const uint8_t *blob, mfs_errmsg *e)
{
	char pk[MFS_S3_KEY_MAX], hex[33], why[200];
	mfs_chunk_key_hex(key, hex);
	if (mfs_remote_pack_key(&cc->o.url, loc->pack, pk, sizeof pk) < 0)
		pk[0] = 0;
	if (mfs_pack_entry_header_check(blob, key, loc->len, why, sizeof why) < 0)
		return mfs_err(
		    e, MFS_E_CORRUPT,
		    "chunk %s: the entry at offset %" PRIu64 " of s3://%s/%s is not "
		    "its own: %s (the object was altered or replaced: push the store "
		    "again)",
		    hex, loc->off, cc->o.url.bucket, pk, why);
	if (cc->o.verify) {
		mfs_errmsg ve = {0};
		int rc = cc->o.verify(cc->o.verify_ud, key, blob + MFS_PACK_ENTRY_HDR,
				      loc->len, &ve);
		if (rc < 0)
			return mfs_err(
			    e, rc,
			    "chunk %s: the payload at offset %" PRIu64 " of s3://%s/%s "
			    "fails its check: %s (the object was altered: push the "
			    "store again)",
			    hex, loc->off, cc->o.url.bucket, pk,
			    ve.msg[0] ? ve.msg : mfs_strerror(rc));
		return rc; /* 0, or MFS_CHUNKCACHE_UNCHECKED */
	}
	return 0;
}

/* The ranged GET of an entry, checked. @return 0, MFS_CHUNKCACHE_UNCHECKED, or a
 * code, @p e naming the chunk */
static int fetch(mfs_chunkcache *cc, const mfs_chunk_key *key, const mfs_chunk_loc *loc,
		 uint8_t *blob, mfs_errmsg *e)
{
	char pk[MFS_S3_KEY_MAX], hex[33];
	mfs_chunk_key_hex(key, hex);
	int rc = mfs_remote_pack_key(&cc->o.url, loc->pack, pk, sizeof pk);
	if (rc < 0)
		return mfs_err(e, rc,
			       "chunk %s: the key of pack %016" PRIx64 " is too long",
			       hex, loc->pack);
	size_t n = MFS_PACK_ENTRY_HDR + (size_t)loc->len;
	mfs_errmsg se = {0};
	rc = mfs_s3_get_range(cc->o.s3, cc->o.url.bucket, pk, loc->off, blob, n, &se);
	if (rc == 0)
		return entry_check(cc, key, loc, blob, e);
	if (rc == MFS_E_CORRUPT || rc == MFS_E_NOTFOUND)
		return mfs_err(
		    e, MFS_E_CORRUPT,
		    "chunk %s: its entry (offset %" PRIu64 ", %zu bytes) is not in "
		    "s3://%s/%s: %s (the bucket does not hold what its index names: "
		    "push the store again)",
		    hex, loc->off, n, cc->o.url.bucket, pk, se.msg);
	/* the client's message names s3://BUCKET/KEY and the endpoint already */
	if ((rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EIO) && se.msg[0])
		return mfs_err(
		    e, -EIO, "chunk %s: cannot fetch its entry (offset %" PRIu64 "): %s",
		    hex, loc->off, se.msg);
	if (rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EIO)
		return mfs_err(e, -EIO,
			       "chunk %s: cannot fetch its entry from s3://%s/%s: %s",
			       hex, cc->o.url.bucket, pk, mfs_strerror(rc));
	return mfs_err(e, rc, "chunk %s: fetching s3://%s/%s: %s", hex, cc->o.url.bucket,
		       pk, se.msg);
}

/* A FETCHING entry for @p key, in the table: other callers wait for it.
 * Under mu.  @return 0 or -ENOMEM */
static int fetch_begin(mfs_chunkcache *cc, const mfs_chunk_key *key, uint32_t len,
		       cc_entry **enp, cc_fetch **fp)
{
	size_t n = MFS_PACK_ENTRY_HDR + (size_t)len;
	cc_entry *en = calloc(1, sizeof *en);
	cc_fetch *f = calloc(1, sizeof *f);
	uint8_t *blob = malloc(n + CC_TRAILER);
	if (!en || !f || !blob) {
		free(en);
		free(f);
		free(blob);
		return -ENOMEM;
	}
	en->key = *key;
	en->state = CC_FETCHING;
	en->id = ++cc->next_id;
	en->prev = en->next = en;
	en->f = f;
	f->refs = 1; /* the entry's; the fetcher reads the blob it owns through f */
	f->blob = blob;
	f->len = len;
	tab_add(cc, en);
	*enp = en;
	*fp = f;
	return 0;
}

/* The fetch of @p en ended with @p rc (its entry in f->blob): wake the
 * waiters, copy the payload to @p buf (optional), store the file within the
 * bound (not when @p rc is MFS_CHUNKCACHE_UNCHECKED).  Takes mu.
 * @return rc, 0 for MFS_CHUNKCACHE_UNCHECKED */
static int fetch_end(mfs_chunkcache *cc, cc_entry *en, cc_fetch *f, int rc,
		     const mfs_errmsg *fe, void *buf)
{
	size_t n = MFS_PACK_ENTRY_HDR + f->len;
	uint8_t *blob = f->blob;
	int unchecked = rc == MFS_CHUNKCACHE_UNCHECKED; /* handed out, not stored */
	if (unchecked)
		rc = 0;
	pthread_mutex_lock(&cc->mu);
	f->rc = rc;
	f->err = *fe;
	f->done = 1;
	pthread_cond_broadcast(&cc->cv);
	if (rc < 0) {
		cc->st.fetch_errors++;
		tab_del(cc, en);
		free(en);
		fetch_put(f);
		pthread_mutex_unlock(&cc->mu);
		return rc;
	}
	cc->st.bytes_fetched += n;
	uint64_t need = ((uint64_t)n + CC_TRAILER + CC_BLOCK - 1) / CC_BLOCK * CC_BLOCK;
	int store = !unchecked && need <= cc->o.max_bytes && make_room(cc, need);
	if (store) {
		cc->disk_total += need;
		en->disk = need;
	}
	f->refs++; /* held while this caller copies and writes */
	pthread_mutex_unlock(&cc->mu);

	if (buf)
		memcpy(buf, blob + MFS_PACK_ENTRY_HDR, f->len);
	uint64_t disk = 0;
	int wrc = -1;
	if (store) {
		trailer_of(blob, n, blob + n);
		wrc = file_write(cc, &en->key, blob, n + CC_TRAILER, &disk);
	}

	pthread_mutex_lock(&cc->mu);
	if (store)
		cc->disk_total -= need;
	if (wrc == 0) {
		en->disk = disk;
		cc->disk_total += disk;
		en->state = CC_PRESENT;
		en->f = NULL;
		en->touched = time(NULL);
		lru_front(cc, en);
		cc->st.entries++;
		/* the real blocks may be more than reserved: settle now, never
		 * evicting the entry just written unless it alone is too big */
		lru_unlink(en);
		make_room(cc, 0);
		lru_front(cc, en);
		if (cc->disk_total > cc->o.max_bytes)
			drop(cc, en);
	} else {
		tab_del(cc, en);
		free(en);
	}
	f->refs--;    /* the entry's reference: this caller's still holds f */
	fetch_put(f); /* this caller's */
	pthread_mutex_unlock(&cc->mu);
	return 0;
}

/* ---- prefetch: a run of entries in one GET, by worker threads ---- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void prefetch_run(mfs_chunkcache *cc, const cc_job *j)
{
	char pk[MFS_S3_KEY_MAX];
	uint8_t *buf = malloc(j->len);
	if (!buf || mfs_remote_pack_key(&cc->o.url, j->pack, pk, sizeof pk) < 0 ||
	    mfs_s3_get_range(cc->o.s3, cc->o.url.bucket, pk, j->off, buf, j->len, NULL) <
		0) {
		free(buf);
		pthread_mutex_lock(&cc->mu);
		cc->st.prefetch_errors++;
		pthread_mutex_unlock(&cc->mu);
		return; /* a hint: the reads that follow fetch what they need */
	}
	/* entries describe themselves: walk them, each stored under its key */
	for (uint64_t pos = 0; pos + MFS_PACK_ENTRY_HDR <= j->len;) {
		const uint8_t *h = buf + pos;
		uint32_t plen = le32(h + 4);
		if (memcmp(h, "MFSE", 4) != 0 || plen > j->len - pos - MFS_PACK_ENTRY_HDR)
			break;
		mfs_chunk_key key;
		memcpy(key.b, h + 8, 16);
		mfs_chunk_loc loc = {j->pack, j->off + pos, plen};
		pos += MFS_PACK_ENTRY_HDR + (uint64_t)plen;
		cc_entry *en;
		cc_fetch *f;
		pthread_mutex_lock(&cc->mu);
		if (find(cc, &key) || fetch_begin(cc, &key, plen, &en, &f) < 0) {
			pthread_mutex_unlock(&cc->mu);
			continue; /* there, or being fetched */
		}
		cc->st.prefetched++;
		pthread_mutex_unlock(&cc->mu);
		memcpy(f->blob, h, MFS_PACK_ENTRY_HDR + (size_t)plen);
		mfs_errmsg fe = {0};
		fetch_end(cc, en, f, entry_check(cc, &key, &loc, f->blob, &fe), &fe,
			  NULL);
	}
	free(buf);
}

static void *prefetch_worker(void *arg)
{
	mfs_chunkcache *cc = arg;
	pthread_mutex_lock(&cc->mu);
	for (;;) {
		while (!cc->q_n && !cc->stopping)
			pthread_cond_wait(&cc->qcv, &cc->mu);
		if (cc->stopping)
			break;
		cc_job j = cc->q[cc->q_head];
		cc->q_head = (cc->q_head + 1) % CC_QUEUE;
		cc->q_n--;
		cc->q_busy++;
		pthread_mutex_unlock(&cc->mu);
		prefetch_run(cc, &j);
		pthread_mutex_lock(&cc->mu);
		cc->q_busy--;
		pthread_cond_broadcast(&cc->cv);
	}
	pthread_mutex_unlock(&cc->mu);
	return NULL;
}

void mfs_chunkcache_prefetch(mfs_chunkcache *cc, uint64_t pack, uint64_t off,
			     uint64_t len)
{
	if (!cc->n_workers || !len)
		return;
	if (len > CC_PREFETCH_MAX)
		len = CC_PREFETCH_MAX;
	pthread_mutex_lock(&cc->mu);
	if (cc->q_n == CC_QUEUE || cc->stopping) {
		cc->st.prefetch_dropped++;
	} else {
		cc->q[(cc->q_head + cc->q_n) % CC_QUEUE] = (cc_job){pack, off, len};
		cc->q_n++;
		pthread_cond_signal(&cc->qcv);
	}
	pthread_mutex_unlock(&cc->mu);
}

void mfs_chunkcache_drain(mfs_chunkcache *cc)
{
	pthread_mutex_lock(&cc->mu);
	while (cc->q_n || cc->q_busy)
		pthread_cond_wait(&cc->cv, &cc->mu);
	pthread_mutex_unlock(&cc->mu);
}

int mfs_chunkcache_get(mfs_chunkcache *cc, const mfs_chunk_key *key,
		       const mfs_chunk_loc *loc, void *buf, size_t cap, int *hit,
		       mfs_errmsg *e)
{
	if (hit)
		*hit = 0;
	if (cap < loc->len)
		return mfs_err(e, MFS_E_NOSPACE,
			       "a buffer of %zu bytes for a %u-byte payload", cap,
			       loc->len);
	pthread_mutex_lock(&cc->mu);
	for (;;) {
		cc_entry *en = find(cc, key);
		if (en && en->state == CC_PRESENT) {
			lru_unlink(en);
			lru_front(cc, en);
			time_t now = time(NULL);
			int touch = now != en->touched;
			en->touched = now;
			uint64_t id = en->id;
			pthread_mutex_unlock(&cc->mu);
			int rc = file_read(cc, key, loc->len, buf);
			if (rc == 0) {
				if (touch) {
					char path[4200];
					entry_path(cc, key, path, sizeof path);
					utimensat(AT_FDCWD, path, NULL, 0);
				}
				pthread_mutex_lock(&cc->mu);
				cc->st.hits++;
				pthread_mutex_unlock(&cc->mu);
				if (hit)
					*hit = 1;
				return 0;
			}
			pthread_mutex_lock(&cc->mu);
			/* gone or torn: forget it (unless another caller already did) */
			en = find(cc, key);
			if (en && en->id == id && en->state == CC_PRESENT) {
				if (rc != -ENOENT)
					cc->st.torn++;
				drop(cc, en);
			}
			continue;
		}
		if (en) { /* FETCHING: share it */
			cc_fetch *f = en->f;
			f->refs++;
			while (!f->done)
				pthread_cond_wait(&cc->cv, &cc->mu);
			int rc = f->rc;
			if (rc == 0 && f->len != loc->len)
				rc = mfs_err(e, MFS_E_CORRUPT,
					     "two locations of one chunk give its "
					     "payload as %zu and "
					     "%u bytes",
					     f->len, loc->len);
			else if (rc == 0)
				memcpy(buf, f->blob + MFS_PACK_ENTRY_HDR, loc->len);
			else if (e)
				*e = f->err;
			cc->st.coalesced++;
			fetch_put(f);
			pthread_mutex_unlock(&cc->mu);
			return rc;
		}
		break;
	}
	/* this caller fetches */
	cc_entry *en;
	cc_fetch *f;
	if (fetch_begin(cc, key, loc->len, &en, &f) < 0) {
		pthread_mutex_unlock(&cc->mu);
		return -ENOMEM;
	}
	cc->st.misses++;
	pthread_mutex_unlock(&cc->mu);
	mfs_errmsg fe = {0};
	int rc = fetch(cc, key, loc, f->blob, &fe);
	if (rc < 0 && e)
		*e = fe;
	return fetch_end(cc, en, f, rc, &fe, buf);
}

void mfs_chunkcache_stats_get(mfs_chunkcache *cc, mfs_chunkcache_stats *out)
{
	pthread_mutex_lock(&cc->mu);
	*out = cc->st;
	out->disk_bytes = cc->disk_total;
	pthread_mutex_unlock(&cc->mu);
}
