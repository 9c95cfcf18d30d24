/*
 * push.c - `modelfs push`: packs, then an index snapshot, then LATEST (push.h).
 */
#include "push.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "pack.h"
#include "sha256.h"
/* The snapshot copies the store's own LMDB environment (mdb_env_copyfd2
 * needs its MDB_env: LMDB forbids opening one file twice in a process).
 * store.h has no call for a copy into a descriptor; this is the only use of
 * the struct outside index/. */
#include "store_internal.h"

/* Bytes of an object already in the bucket compared with the local pack. */
#define PUSH_CHECK_BYTES 4096

typedef struct push_pack {
	uint64_t id;
	uint64_t end;	/* committed_end in the snapshot */
	int64_t remote; /* the object's size; -1: none */
	int uploaded;	/* 1: this push sent it */
} push_pack;

typedef struct push_ctx {
	mfs_store *s;
	mfs_s3 *s3;
	const mfs_s3_url *url;
	const mfs_push_opts *o;
	mfs_push_event ev;
	push_pack *packs;
	size_t n, cap;
	char tmpdir[4096];
	char snap[4200];
	int snap_made, dir_made;
	char cur_key[MFS_S3_KEY_MAX]; /* the object going up in parts */
	uint64_t multipart;	      /* objects sent in parts */
	mfs_errmsg *e;
} push_ctx;

static void tell(push_ctx *c, mfs_push_stage st, const char *what)
{
	if (c->o && c->o->progress) {
		c->ev.stage = st;
		c->ev.what = what;
		c->o->progress(c->o->ud, &c->ev);
	}
}

static int pack_cb(void *ud, uint64_t id, const mfs_pack_rec *r)
{
	push_ctx *c = ud;
	if (!r)
		return mfs_err(
		    c->e, MFS_E_CORRUPT,
		    "store %s: the record of pack %016" PRIx64
		    " does not parse: run `modelfs verify` (nothing was pushed)",
		    mfs_store_dir(c->s), id);
	/* retired: no chunk record names it; header only: no entry to read */
	if (r->state == MFS_PACK_RETIRED || r->committed_end <= MFS_PACK_HDR)
		return 0;
	if (c->n == c->cap) {
		size_t nc = c->cap ? 2 * c->cap : 64;
		push_pack *np = realloc(c->packs, nc * sizeof *np);
		if (!np)
			return -ENOMEM;
		c->packs = np;
		c->cap = nc;
	}
	c->packs[c->n++] = (push_pack){id, r->committed_end, -1, 0};
	return 0;
}

static int pack_find(const push_ctx *c, uint64_t id)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->packs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->n && c->packs[lo].id == id ? (int)lo : -1;
}

static int list_cb(void *ud, const mfs_s3_object *obj)
{
	push_ctx *c = ud;
	uint64_t id;
	if (!mfs_remote_pack_key_parse(c->url, obj->key, &id))
		return 0;
	int i = pack_find(c, id);
	if (i >= 0)
		c->packs[i].remote = (int64_t)obj->size;
	return 0;
}

/* Copy the store's environment into <tmpdir>/data.mdb and read from that
 * copy its generation and the packs it names. */
static int snapshot(push_ctx *c, uint64_t *gen, uint64_t *size, uint8_t sha[32])
{
	const char *base = c->o && c->o->tmpdir ? c->o->tmpdir : getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(c->tmpdir, sizeof c->tmpdir, "%s/modelfs-push.XXXXXX", base);
	if (!mkdtemp(c->tmpdir))
		return mfs_err(
		    c->e, -errno,
		    "cannot create a directory for the index snapshot under %s: %s "
		    "(set TMPDIR to a writable place)",
		    base, strerror(errno));
	c->dir_made = 1;
	snprintf(c->snap, sizeof c->snap, "%s/data.mdb", c->tmpdir);
	int fd = open(c->snap, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return mfs_err(c->e, -errno, "cannot create %s: %s", c->snap,
			       strerror(errno));
	c->snap_made = 1;
	int mrc = mdb_env_copyfd2(c->s->env, fd, MDB_CP_COMPACT);
	if (mrc) {
		close(fd);
		return mfs_err(
		    c->e, mrc > 0 ? -mrc : mfs_db_rc(mrc),
		    "copying the index of store %s into %s failed: %s (nothing was "
		    "pushed; is there room in %s? set TMPDIR elsewhere)",
		    mfs_store_dir(c->s), c->snap, mdb_strerror(mrc), base);
	}
	/* the size and hash LATEST records, from the bytes that will be sent */
	mfs_sha256_ctx h;
	mfs_sha256_init(&h);
	uint64_t total = 0;
	static const size_t BUF = 1 << 20;
	uint8_t *buf = malloc(BUF);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r = pread(fd, buf, BUF, (off_t)total);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = -errno;
			free(buf);
			close(fd);
			return mfs_err(c->e, err, "cannot read %s: %s", c->snap,
				       strerror(-err));
		}
		if (r == 0)
			break;
		mfs_sha256_update(&h, buf, (size_t)r);
		total += (uint64_t)r;
	}
	free(buf);
	close(fd);
	mfs_sha256_final(&h, sha);
	*size = total;

	mfs_store *snap;
	int rc = mfs_store_open(c->tmpdir, MFS_STORE_RDONLY, &snap, c->e);
	if (rc < 0)
		return mfs_err_prefix(c->e, rc,
				      "the index snapshot of store %s does not open",
				      mfs_store_dir(c->s));
	mfs_txn *t;
	rc = mfs_txn_begin(snap, MFS_TXN_READ, &t);
	if (rc == 0) {
		rc = mfs_store_generation(t, gen);
		if (rc == MFS_E_NOTFOUND) {
			*gen = 0;
			rc = 0;
		}
		if (rc == 0)
			rc = mfs_packs_foreach(t, pack_cb, c);
		mfs_txn_abort(t);
	}
	mfs_store_close(snap);
	if (rc < 0 && c->e && !c->e->msg[0])
		mfs_err(c->e, rc, "reading the index snapshot of store %s: %s",
			mfs_store_dir(c->s), mfs_strerror(rc));
	return rc;
}

static void snapshot_remove(push_ctx *c)
{
	if (!c->dir_made)
		return;
	/* the directory is this push's own: data.mdb and what opening it made */
	char p[4400];
	snprintf(p, sizeof p, "%s/packs", c->tmpdir);
	rmdir(p);
	DIR *d = opendir(c->tmpdir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
				snprintf(p, sizeof p, "%s/%s", c->tmpdir, de->d_name);
				unlink(p);
			}
		closedir(d);
	}
	rmdir(c->tmpdir);
}

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return MFS_E_CORRUPT;
		got += (size_t)r;
	}
	return 0;
}

/* An object already in the bucket must be this store's pack: the last bytes
 * the two share are the same. */
static int pack_same(push_ctx *c, const push_pack *p, int fd, const char *path,
		     const char *key)
{
	uint64_t common = (uint64_t)p->remote < p->end ? (uint64_t)p->remote : p->end;
	if (common < MFS_PACK_HDR)
		return 0; /* a torn first upload, never named: replaced */
	size_t n = common < PUSH_CHECK_BYTES ? (size_t)common : PUSH_CHECK_BYTES;
	uint8_t a[PUSH_CHECK_BYTES], b[PUSH_CHECK_BYTES];
	int rc = read_full(fd, a, n, common - n);
	if (rc < 0)
		return mfs_err(c->e, rc, "cannot read %s: %s", path, mfs_strerror(rc));
	if ((rc = mfs_s3_get_range(c->s3, c->url->bucket, key, common - n, b, n, c->e)) <
	    0)
		return rc;
	if (memcmp(a, b, n) != 0)
		return mfs_err(
		    c->e, MFS_E_EXISTS,
		    "s3://%s/%s holds other bytes than pack %016" PRIx64
		    " of store %s: this prefix holds another store's packs; push "
		    "to a prefix of its own (nothing was made visible)",
		    c->url->bucket, key, p->id, mfs_store_dir(c->s));
	return 0;
}

static void part_done(void *ud, unsigned part, unsigned parts, uint64_t bytes)
{
	push_ctx *c = ud;
	char what[MFS_S3_KEY_MAX + 48];
	c->ev.bytes_done += bytes;
	snprintf(what, sizeof what, "%s part %u of %u", c->cur_key, part, parts);
	tell(c, MFS_PUSH_PART, what);
}

/* Send bytes [0, len) of @p fd as @p key: one PUT, or in parts when longer
 * than the part size.  ev.bytes_done counts what went up either way. */
static int upload(push_ctx *c, const char *key, int fd, uint64_t len)
{
	uint64_t part = c->o && c->o->part_size ? c->o->part_size : MFS_PUSH_PART_SIZE;
	if (len <= part) {
		int rc = mfs_s3_put_file(c->s3, c->url->bucket, key, fd, 0, len, c->e);
		if (rc == 0)
			c->ev.bytes_done += len;
		return rc;
	}
	snprintf(c->cur_key, sizeof c->cur_key, "%s", key);
	mfs_s3_multipart_opts mo = {.part_size = part, .part_done = part_done, .ud = c};
	uint64_t before = c->ev.bytes_done;
	int rc =
	    mfs_s3_put_file_multipart(c->s3, c->url->bucket, key, fd, 0, len, &mo, c->e);
	c->ev.bytes_done = before + (rc == 0 ? len : 0);
	if (rc == 0)
		c->multipart++;
	return rc;
}

static int push_pack_one(push_ctx *c, push_pack *p, int *uploaded)
{
	char path[4096], key[MFS_S3_KEY_MAX];
	*uploaded = 0;
	int rc = mfs_pack_path(c->s, p->id, path, sizeof path);
	if (rc == 0)
		rc = mfs_remote_pack_key(c->url, p->id, key, sizeof key);
	if (rc < 0)
		return mfs_err(c->e, rc,
			       "pack %016" PRIx64 ": the path or key is too long", p->id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mfs_err(
		    c->e, errno == ENOENT ? MFS_E_CORRUPT : -errno,
		    "cannot open %s, which the index of store %s names: %s (run "
		    "`modelfs verify`; nothing was made visible)",
		    path, mfs_store_dir(c->s), strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0) {
		rc = mfs_err(c->e, -errno, "cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	if ((uint64_t)st.st_size < p->end) {
		rc = mfs_err(c->e, MFS_E_CORRUPT,
			     "%s is %" PRIu64 " bytes, shorter than the %" PRIu64
			     " its record in store %s says were committed: run `modelfs "
			     "verify` (nothing was made visible)",
			     path, (uint64_t)st.st_size, p->end, mfs_store_dir(c->s));
		goto out;
	}
	if (p->remote >= 0 && (rc = pack_same(c, p, fd, path, key)) < 0)
		goto out;
	if (p->remote >= 0 && (uint64_t)p->remote >= p->end)
		goto out;
	if ((rc = upload(c, key, fd, p->end)) < 0)
		goto out;
	*uploaded = 1;
	p->uploaded = 1;
	c->ev.packs_done++;
	tell(c, MFS_PUSH_PACK, key);
out:
	close(fd);
	return rc;
}

int mfs_push(mfs_store *s, mfs_s3 *s3, const mfs_s3_url *url, const mfs_push_opts *o,
	     mfs_push_stat *out, mfs_errmsg *e)
{
	double t0 = mfs_now_seconds();
	push_ctx c = {.s = s, .s3 = s3, .url = url, .o = o, .e = e};
	mfs_push_stat st = {0};
	mfs_remote_latest old, cur;
	char latest_key[MFS_S3_KEY_MAX];
	mfs_txn *pin = NULL;
	char *json = NULL;
	int have_old = 0, rc;

	if ((rc = mfs_remote_key(url, "LATEST", latest_key, sizeof latest_key)) < 0)
		return mfs_err(e, rc, "s3://%s/%s: the prefix is too long", url->bucket,
			       url->prefix);
	if ((rc = mfs_s3_bucket_check(s3, url->bucket, e)) < 0)
		goto fail;
	rc = mfs_remote_latest_get(s3, url, &old, e);
	if (rc == 0)
		have_old = 1;
	else if (rc != MFS_E_NOTFOUND)
		goto fail;

	/* gc keeps every pack a snapshot at least this old names */
	if ((rc = mfs_txn_begin(s, MFS_TXN_READ, &pin)) < 0) {
		mfs_err(e, rc, "store %s: cannot begin a read: %s", mfs_store_dir(s),
			mfs_strerror(rc));
		goto fail;
	}
	uint8_t sha[32];
	if ((rc = snapshot(&c, &st.generation, &st.index_bytes, sha)) < 0)
		goto fail;
	tell(&c, MFS_PUSH_SNAPSHOT, c.snap);
	if (have_old && old.generation > st.generation) {
		rc = mfs_err(
		    e, MFS_E_EXISTS,
		    "s3://%s/%s names generation %" PRIu64
		    ", newer than store %s's %" PRIu64
		    ": another store (or a copy of this one that changed since) pushed "
		    "there; push to a prefix of its own (nothing was changed)",
		    url->bucket, latest_key, old.generation, mfs_store_dir(s),
		    st.generation);
		goto fail;
	}

	char pdir[MFS_S3_KEY_MAX];
	if ((rc = mfs_remote_key(url, "packs/", pdir, sizeof pdir)) < 0 ||
	    (rc = mfs_s3_list(s3, url->bucket, pdir, list_cb, &c, e)) < 0)
		goto fail;
	for (size_t i = 0; i < c.n; i++) {
		st.pack_bytes += c.packs[i].end;
		if (c.packs[i].remote < 0 ||
		    (uint64_t)c.packs[i].remote < c.packs[i].end) {
			c.ev.bytes_total += c.packs[i].end;
			c.ev.packs_total++;
		}
	}
	st.packs = c.n;
	int index_there = 0;
	if (have_old && old.generation == st.generation && c.ev.packs_total == 0) {
		char ik[MFS_S3_KEY_MAX];
		mfs_s3_object info;
		if (mfs_remote_key(url, old.index, ik, sizeof ik) == 0 &&
		    mfs_s3_head(s3, url->bucket, ik, &info, NULL) == 0 &&
		    info.size == old.index_size) {
			index_there = 1;
			snprintf(st.index_key, sizeof st.index_key, "%s", ik);
		}
	}
	if (!index_there)
		c.ev.bytes_total += st.index_bytes;
	tell(&c, MFS_PUSH_LISTED, pdir);

	for (size_t i = 0; i < c.n; i++) {
		int up;
		if ((rc = push_pack_one(&c, &c.packs[i], &up)) < 0)
			goto fail;
		if (up) {
			st.packs_uploaded++;
			st.pack_bytes_uploaded += c.packs[i].end;
		}
	}
	if (index_there) {
		st.up_to_date = 1;
		goto done;
	}

	/* the index, under a key no other push picks */
	uint64_t rnd = 0;
	if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
		rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	char name[64];
	snprintf(name, sizeof name, "index/%020" PRIu64 "-%016" PRIx64 ".mdb",
		 st.generation, rnd);
	if ((rc = mfs_remote_key(url, name, st.index_key, sizeof st.index_key)) < 0)
		goto fail;
	int fd = open(c.snap, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = mfs_err(e, -errno, "cannot open %s: %s", c.snap, strerror(errno));
		goto fail;
	}
	rc = upload(&c, st.index_key, fd, st.index_bytes);
	close(fd);
	if (rc < 0)
		goto fail;
	tell(&c, MFS_PUSH_INDEX, st.index_key);

	/* The packs this push found in the bucket and did not send must still be
	 * there: a `gc --remote` running alongside deletes packs no kept index
	 * names (a pack a dead push left, which this one reuses).  Checked last,
	 * right before LATEST, so the window that stays is this one PUT. */
	for (size_t i = 0; i < c.n; i++) {
		push_pack *p = &c.packs[i];
		if (p->uploaded)
			continue;
		char pk[MFS_S3_KEY_MAX];
		mfs_s3_object info;
		if ((rc = mfs_remote_pack_key(url, p->id, pk, sizeof pk)) < 0)
			goto fail;
		rc = mfs_s3_head(s3, url->bucket, pk, &info, e);
		if (rc == MFS_E_NOTFOUND || (rc == 0 && info.size < p->end)) {
			rc = mfs_err(
			    e, MFS_E_BUSY,
			    "s3://%s/%s went away (or shrank) while this push ran: "
			    "a `modelfs gc --remote` alongside? LATEST is left as it "
			    "was; push again",
			    url->bucket, pk);
			goto fail;
		}
		if (rc < 0)
			goto fail;
	}

	/* a push that ran alongside and named a newer generation stays */
	rc = mfs_remote_latest_get(s3, url, &cur, e);
	if (rc == 0 && cur.generation > st.generation) {
		rc = mfs_err(e, MFS_E_BUSY,
			     "another push wrote s3://%s/%s (generation %" PRIu64
			     ") while this one ran: it is left as it is, and the index "
			     "uploaded here (generation %" PRIu64 ") is not named",
			     url->bucket, latest_key, cur.generation, st.generation);
		goto fail;
	}
	if (rc < 0 && rc != MFS_E_NOTFOUND)
		goto fail;
	mfs_remote_latest l = {.format = MFS_REMOTE_FORMAT,
			       .store_format = MFS_STORE_FORMAT,
			       .index_size = st.index_bytes,
			       .generation = st.generation,
			       .time = (uint64_t)time(NULL),
			       .packs = st.packs,
			       .pack_bytes = st.pack_bytes};
	snprintf(l.index, sizeof l.index, "%s", name);
	memcpy(l.index_sha256, sha, 32);
	if ((rc = mfs_remote_latest_encode(&l, &json)) < 0)
		goto fail;
	if ((rc = mfs_s3_put(s3, url->bucket, latest_key, json, strlen(json), e)) < 0)
		goto fail;
	tell(&c, MFS_PUSH_LATEST, latest_key);
done:
	rc = 0;
fail:
	if (rc < 0 && e && e->msg[0] && !strstr(e->msg, mfs_store_dir(s)))
		mfs_err_prefix(e, rc, "push of store %s to s3://%s/%s", mfs_store_dir(s),
			       url->bucket, url->prefix);
	free(json);
	mfs_txn_abort(pin);
	snapshot_remove(&c);
	free(c.packs);
	st.seconds = mfs_now_seconds() - t0;
	st.multipart = c.multipart;
	if (out)
		*out = st;
	return rc;
}
