/*
 * rgc.c - `modelfs gc --remote`: delete the indexes and packs of a bucket
 * that no reader can still need (rgc.h).
 */
#include "rgc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "grow.h"
#include "pack.h"
#include "sha256.h"
#include "store.h"

/* Plans made before giving up on a LATEST that keeps moving. */
#define RGC_ROUNDS 3

typedef struct rgc_obj {
	char *key;
	uint64_t size;
	int64_t mtime;	  /* 0: unknown */
	uint64_t num;	  /* index: generation; pack: id */
	const char *keep; /* index: the rule that keeps it; NULL: deleted */
	int named;	  /* pack: a kept index names it */
} rgc_obj;

typedef struct rgc_vec {
	rgc_obj *v;
	size_t n, cap;
} rgc_vec;

/* Pack ids the kept indexes name: a sorted, deduplicated array. */
typedef struct rgc_ids {
	uint64_t *v;
	size_t n, cap;
} rgc_ids;

typedef struct rgc_ctx {
	mfs_s3 *s3;
	const mfs_s3_url *url;
	const mfs_rgc_opts *o;
	unsigned keep_n;
	int64_t grace, now;
	mfs_rgc_stat st;
	rgc_vec idx, packs;
	rgc_ids named;
	mfs_remote_latest latest;
	char tmpdir[4096];
	int dir_made;
	mfs_errmsg *e;
} rgc_ctx;

static void vec_clear(rgc_vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->v[i].key);
	v->n = 0;
}

static void vec_free(rgc_vec *v)
{
	vec_clear(v);
	free(v->v);
	v->v = NULL;
	v->cap = 0;
}

static int vec_push(rgc_vec *v, const mfs_s3_object *obj, uint64_t num)
{
	rgc_obj *nv = mfs_grow(v->v, &v->cap, v->n, sizeof *nv, 64);
	if (!nv)
		return -ENOMEM;
	v->v = nv;
	char *k = strdup(obj->key);
	if (!k)
		return -ENOMEM;
	v->v[v->n++] =
	    (rgc_obj){.key = k, .size = obj->size, .mtime = obj->mtime, .num = num};
	return 0;
}

static int ids_add(rgc_ids *s, uint64_t id)
{
	uint64_t *nv = mfs_grow(s->v, &s->cap, s->n, sizeof *nv, 256);
	if (!nv)
		return -ENOMEM;
	s->v = nv;
	s->v[s->n++] = id;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void ids_sort(rgc_ids *s)
{
	if (!s->n)
		return;
	qsort(s->v, s->n, sizeof *s->v, cmp_u64);
	size_t o = 1;
	for (size_t i = 1; i < s->n; i++)
		if (s->v[i] != s->v[o - 1])
			s->v[o++] = s->v[i];
	s->n = o;
}

static int ids_has(const rgc_ids *s, uint64_t id)
{
	return bsearch(&id, s->v, s->n, sizeof *s->v, cmp_u64) != NULL;
}

/* Indexes oldest first: by generation, then key (the random part). */
static int cmp_index(const void *a, const void *b)
{
	const rgc_obj *x = a, *y = b;
	if (x->num != y->num)
		return x->num < y->num ? -1 : 1;
	return strcmp(x->key, y->key);
}

static int64_t age_of(const rgc_ctx *c, int64_t mtime)
{
	return mtime ? c->now - mtime : -1;
}

/* Young: an age under the grace, or an age the server did not give. */
static int is_young(const rgc_ctx *c, int64_t mtime)
{
	return !mtime || c->now - mtime < c->grace;
}

static void tell(rgc_ctx *c, mfs_rgc_what what, const rgc_obj *ob, const char *why,
		 const char *upload_id)
{
	if (!c->o || !c->o->event)
		return;
	mfs_rgc_event ev = {.what = what,
			    .key = ob ? ob->key : NULL,
			    .why = why,
			    .upload_id = upload_id,
			    .size = ob ? ob->size : 0,
			    .age = ob ? age_of(c, ob->mtime) : -1,
			    .dry_run = c->o->dry_run};
	c->o->event(c->o->ud, &ev);
}

static int list_index_cb(void *ud, const mfs_s3_object *obj)
{
	rgc_ctx *c = ud;
	uint64_t gen;
	if (!mfs_remote_index_key_parse(c->url, obj->key, &gen)) {
		c->st.other_objects++;
		return 0;
	}
	c->st.indexes++;
	c->st.index_bytes += obj->size;
	return vec_push(&c->idx, obj, gen);
}

static int list_pack_cb(void *ud, const mfs_s3_object *obj)
{
	rgc_ctx *c = ud;
	uint64_t id;
	if (!mfs_remote_pack_key_parse(c->url, obj->key, &id)) {
		c->st.other_objects++;
		return 0;
	}
	c->st.packs++;
	c->st.pack_bytes += obj->size;
	return vec_push(&c->packs, obj, id);
}

/* ---------------------------------------------------------------- kept indexes */

static int pack_rec_cb(void *ud, uint64_t id, const mfs_pack_rec *r)
{
	rgc_ids *s = ud;
	/* a record that does not parse might name anything: keep its pack */
	if (r && (r->state == MFS_PACK_RETIRED || r->committed_end <= MFS_PACK_HDR))
		return 0;
	return ids_add(s, id);
}

static int chunk_cb(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
		    uint64_t refcount)
{
	(void)key;
	(void)refcount;
	rgc_ids *s = ud;
	return v->in_pack ? ids_add(s, v->loc.pack) : 0;
}

static void dir_empty(const char *dir)
{
	char p[4400];
	snprintf(p, sizeof p, "%s/packs", dir);
	rmdir(p);
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
			unlink(p);
		}
	closedir(d);
}

/* Download index @p ix into the temporary directory, check it when it is
 * LATEST's, open it as a store and add every pack it names to c->named. */
static int read_index(rgc_ctx *c, const rgc_obj *ix, int is_latest)
{
	char dir[4200], path[4300];
	snprintf(dir, sizeof dir, "%s/index", c->tmpdir);
	dir_empty(dir);
	rmdir(dir);
	if (mkdir(dir, 0700) != 0)
		return mfs_err(c->e, -errno, "cannot create %s: %s", dir,
			       strerror(errno));
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return mfs_err(c->e, -errno, "cannot create %s: %s", path,
			       strerror(errno));
	uint64_t size = 0;
	int rc = mfs_s3_get_file(c->s3, c->url->bucket, ix->key, fd, &size, c->e);
	if (rc == 0 && is_latest) {
		/* LATEST's own promise: its index, byte for byte */
		mfs_sha256_ctx h;
		mfs_sha256_init(&h);
		uint8_t buf[1 << 16], sha[32];
		uint64_t off = 0;
		for (;;) {
			ssize_t r = pread(fd, buf, sizeof buf, (off_t)off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				rc = mfs_err(c->e, -errno, "cannot read %s: %s", path,
					     strerror(errno));
				break;
			}
			if (r == 0)
				break;
			mfs_sha256_update(&h, buf, (size_t)r);
			off += (uint64_t)r;
		}
		mfs_sha256_final(&h, sha);
		if (rc == 0 && (size != c->latest.index_size ||
				memcmp(sha, c->latest.index_sha256, 32) != 0))
			rc =
			    mfs_err(c->e, MFS_E_CORRUPT,
				    "s3://%s/%s is not the index LATEST names (%" PRIu64
				    " bytes or its sha256 differ from LATEST's %" PRIu64
				    "): the bucket is damaged; nothing was deleted (push "
				    "again)",
				    c->url->bucket, ix->key, size, c->latest.index_size);
	}
	close(fd);
	c->st.index_bytes_read += size;
	if (rc < 0)
		return rc;
	mfs_store *s;
	rc = mfs_store_open(dir, MFS_STORE_RDONLY, &s, c->e);
	if (rc < 0)
		return mfs_err_prefix(
		    c->e, rc,
		    "s3://%s/%s (a kept index) does not open; nothing was "
		    "deleted",
		    c->url->bucket, ix->key);
	mfs_txn *t;
	rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc == 0) {
		rc = mfs_packs_foreach(t, pack_rec_cb, &c->named);
		if (rc == 0)
			rc = mfs_chunks_foreach(t, chunk_cb, &c->named);
		mfs_txn_abort(t);
	}
	mfs_store_close(s);
	dir_empty(dir);
	rmdir(dir);
	if (rc < 0)
		return mfs_err(
		    c->e, rc,
		    "reading s3://%s/%s (a kept index) failed: %s; nothing was "
		    "deleted",
		    c->url->bucket, ix->key, mfs_strerror(rc));
	return 0;
}

/* ---------------------------------------------------------------- the plan */

static int plan(rgc_ctx *c)
{
	char dir[MFS_S3_KEY_MAX];
	int rc;
	vec_clear(&c->idx);
	vec_clear(&c->packs);
	c->named.n = 0;
	c->st.indexes = c->st.index_bytes = c->st.packs = c->st.pack_bytes = 0;
	c->st.other_objects = c->st.indexes_kept = c->st.packs_named = 0;
	c->st.packs_young = c->st.packs_missing = 0;
	c->st.rounds++;

	rc = mfs_remote_latest_get(c->s3, c->url, &c->latest, c->e);
	if (rc == MFS_E_NOTFOUND)
		return mfs_err(c->e, MFS_E_NOTFOUND,
			       "s3://%s/%s has no LATEST: no modelfs store was pushed "
			       "there (or the prefix is wrong); nothing was deleted",
			       c->url->bucket, c->url->prefix);
	if (rc < 0)
		return rc;
	c->st.generation = c->latest.generation;
	if ((rc = mfs_remote_key(c->url, "index/", dir, sizeof dir)) < 0 ||
	    (rc = mfs_s3_list(c->s3, c->url->bucket, dir, list_index_cb, c, c->e)) < 0)
		return rc;
	if ((rc = mfs_remote_key(c->url, "packs/", dir, sizeof dir)) < 0 ||
	    (rc = mfs_s3_list(c->s3, c->url->bucket, dir, list_pack_cb, c, c->e)) < 0)
		return rc;

	char lkey[MFS_S3_KEY_MAX];
	if ((rc = mfs_remote_key(c->url, c->latest.index, lkey, sizeof lkey)) < 0)
		return mfs_err(c->e, rc, "s3://%s/%s: the index key is too long",
			       c->url->bucket, c->url->prefix);
	if (c->idx.n)
		qsort(c->idx.v, c->idx.n, sizeof *c->idx.v, cmp_index);
	ssize_t li = -1;
	for (size_t i = 0; i < c->idx.n; i++)
		if (!strcmp(c->idx.v[i].key, lkey))
			li = (ssize_t)i;
	if (li < 0)
		return mfs_err(c->e, MFS_E_CORRUPT,
			       "LATEST of s3://%s/%s names %s, which is not in the "
			       "bucket: the bucket is damaged; nothing was deleted (push "
			       "again)",
			       c->url->bucket, c->url->prefix, lkey);

	/* Keep rules, newest first.  Indexes newer than LATEST's were never
	 * named by it: a push in flight (young) or one that died. */
	rgc_obj *ix = c->idx.v;
	ix[li].keep = "latest";
	unsigned newest = 1;
	int64_t next_mtime = ix[li].mtime; /* when the one older became second */
	for (size_t k = c->idx.n; k-- > 0;) {
		rgc_obj *x = &ix[k];
		if ((ssize_t)k == li)
			continue;
		int older = cmp_index(x, &ix[li]) < 0;
		if (older && newest < c->keep_n) {
			x->keep = "newest";
			newest++;
		} else if (is_young(c, x->mtime)) {
			x->keep = "young";
		} else if (older && is_young(c, next_mtime)) {
			/* it was the newest until next_mtime: a mount that looks at
			 * LATEST less often than the grace may still read it */
			x->keep = "recent";
		}
		if (older)
			next_mtime = x->mtime;
	}
	for (size_t k = 0; k < c->idx.n; k++) {
		if (!ix[k].keep)
			continue;
		c->st.indexes_kept++;
		if ((rc = read_index(c, &ix[k], (ssize_t)k == li)) < 0)
			return rc;
	}
	ids_sort(&c->named);
	for (size_t k = 0; k < c->packs.n; k++) {
		rgc_obj *p = &c->packs.v[k];
		p->named = ids_has(&c->named, p->num);
		if (p->named)
			c->st.packs_named++;
		else if (is_young(c, p->mtime))
			c->st.packs_young++;
	}
	/* a pack a kept index names that is not there: not ours to fix, but say so */
	size_t j = 0;
	for (size_t k = 0; k < c->named.n; k++) {
		while (j < c->packs.n && c->packs.v[j].num < c->named.v[k])
			j++;
		if (j >= c->packs.n || c->packs.v[j].num != c->named.v[k])
			c->st.packs_missing++;
	}
	return 0;
}

/* LATEST again: still naming the index the plan kept as LATEST's? */
static int latest_same(rgc_ctx *c, int *same)
{
	mfs_remote_latest now;
	int rc = mfs_remote_latest_get(c->s3, c->url, &now, c->e);
	if (rc < 0)
		return rc;
	*same = !strcmp(now.index, c->latest.index);
	return 0;
}

/* ---------------------------------------------------------------- deleting */

typedef struct upload_list {
	rgc_ctx *c;
	char idx_dir[MFS_S3_KEY_MAX], pack_dir[MFS_S3_KEY_MAX];
	struct {
		char *key, *id;
		int64_t initiated;
	} * v;
	size_t n, cap;
} upload_list;

static int upload_cb(void *ud, const mfs_s3_upload *u)
{
	upload_list *l = ud;
	l->c->st.uploads++;
	if (strncmp(u->key, l->idx_dir, strlen(l->idx_dir)) &&
	    strncmp(u->key, l->pack_dir, strlen(l->pack_dir)))
		return 0; /* not one of ours */
	if (is_young(l->c, u->initiated))
		return 0;
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 16;
		void *nv = realloc(l->v, nc * sizeof *l->v);
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n].key = strdup(u->key);
	l->v[l->n].id = strdup(u->upload_id);
	l->v[l->n].initiated = u->initiated;
	if (!l->v[l->n].key || !l->v[l->n].id) {
		free(l->v[l->n].key);
		free(l->v[l->n].id);
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

static int abort_stale_uploads(rgc_ctx *c)
{
	upload_list l = {.c = c};
	char pre[MFS_S3_KEY_MAX];
	int rc;
	if ((rc = mfs_remote_key(c->url, "index/", l.idx_dir, sizeof l.idx_dir)) < 0 ||
	    (rc = mfs_remote_key(c->url, "packs/", l.pack_dir, sizeof l.pack_dir)) < 0 ||
	    (rc = mfs_remote_key(c->url, "", pre, sizeof pre)) < 0)
		return rc;
	mfs_errmsg le = {0};
	int skip = 0;
	rc = mfs_s3_multipart_list(c->s3, c->url->bucket, pre, upload_cb, &l, &le);
	if (rc == -ENOSYS || rc == MFS_E_CORRUPT) {
		/* a server that does not list them, or lists them in a way this
		 * client cannot page through: stale uploads cost storage, not
		 * correctness, so the gc of objects goes on */
		c->st.uploads_unsupported = 1;
		skip = 1; /* what a broken listing gave is not trusted */
		rc = 0;
	} else if (rc < 0 && c->e) {
		*c->e = le;
	}
	for (size_t i = 0; rc == 0 && !skip && i < l.n; i++) {
		rgc_obj ob = {.key = l.v[i].key, .mtime = l.v[i].initiated};
		if (!c->o->dry_run &&
		    (rc = mfs_s3_multipart_abort(c->s3, c->url->bucket, l.v[i].key,
						 l.v[i].id, c->e)) < 0)
			break;
		c->st.uploads_aborted++;
		tell(c, MFS_RGC_ABORT_UPLOAD, &ob, NULL, l.v[i].id);
	}
	for (size_t i = 0; i < l.n; i++) {
		free(l.v[i].key);
		free(l.v[i].id);
	}
	free(l.v);
	return rc;
}

static int delete_one(rgc_ctx *c, const rgc_obj *ob, mfs_rgc_what what)
{
	if (!c->o->dry_run) {
		int rc = mfs_s3_delete(c->s3, c->url->bucket, ob->key, c->e);
		if (rc < 0)
			return rc;
	}
	if (what == MFS_RGC_DELETE_INDEX) {
		c->st.indexes_deleted++;
		c->st.index_bytes_deleted += ob->size;
	} else {
		c->st.packs_deleted++;
		c->st.pack_bytes_deleted += ob->size;
	}
	tell(c, what, ob, NULL, NULL);
	return 0;
}

int mfs_remote_gc(mfs_s3 *s3, const mfs_s3_url *url, const mfs_rgc_opts *o,
		  mfs_rgc_stat *out, mfs_errmsg *e)
{
	static const mfs_rgc_opts defaults = {0};
	double t0 = mfs_now_seconds();
	if (!o)
		o = &defaults;
	rgc_ctx c = {.s3 = s3,
		     .url = url,
		     .o = o,
		     .keep_n = o->keep_indexes ? o->keep_indexes : 2,
		     .grace = o->grace_s >= 0 ? o->grace_s : MFS_RGC_GRACE_S,
		     .e = e};
	int rc;
	if (c.keep_n > 1000000)
		return mfs_err(e, MFS_E_INVAL,
			       "keep_indexes %u is not a count of indexes", c.keep_n);
	/* the bucket and the keys first, and the clock ages are measured by */
	if ((rc = mfs_s3_server_time(s3, url->bucket, &c.now, e)) < 0)
		goto fail;
	const char *base = o->tmpdir ? o->tmpdir : getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(c.tmpdir, sizeof c.tmpdir, "%s/modelfs-rgc.XXXXXX", base);
	if (!mkdtemp(c.tmpdir)) {
		rc =
		    mfs_err(e, -errno,
			    "cannot create a directory for the indexes under %s: %s (set "
			    "TMPDIR to a writable place)",
			    base, strerror(errno));
		goto fail;
	}
	c.dir_made = 1;

	int same = 0, deleted_indexes = 0;
	for (;;) {
		if (c.st.rounds >= RGC_ROUNDS) {
			rc = mfs_err(e, MFS_E_BUSY,
				     "LATEST of s3://%s/%s moved during %d plans (pushes "
				     "keep landing): try again later; %" PRIu64
				     " old indexes and no packs were deleted",
				     url->bucket, url->prefix, RGC_ROUNDS,
				     c.st.indexes_deleted);
			goto fail;
		}
		if ((rc = plan(&c)) < 0)
			goto fail;
		if ((rc = latest_same(&c, &same)) < 0)
			goto fail;
		if (!same)
			continue;
		if (!deleted_indexes) {
			for (size_t k = 0; k < c.idx.n; k++)
				if (c.idx.v[k].keep)
					tell(&c, MFS_RGC_KEEP_INDEX, &c.idx.v[k],
					     c.idx.v[k].keep, NULL);
			for (size_t k = 0; k < c.packs.n; k++)
				if (!c.packs.v[k].named &&
				    is_young(&c, c.packs.v[k].mtime))
					tell(&c, MFS_RGC_KEEP_PACK, &c.packs.v[k],
					     "young", NULL);
			tell(&c, MFS_RGC_PLANNED, NULL, NULL, NULL);
			if ((rc = abort_stale_uploads(&c)) < 0)
				goto fail;
			/* indexes first: every index left has all its packs */
			for (size_t k = 0; k < c.idx.n; k++)
				if (!c.idx.v[k].keep &&
				    (rc = delete_one(&c, &c.idx.v[k],
						     MFS_RGC_DELETE_INDEX)) < 0)
					goto fail;
			deleted_indexes = 1;
			/* a push that landed while indexes went: plan the packs again */
			if ((rc = latest_same(&c, &same)) < 0)
				goto fail;
			if (!same)
				continue;
		}
		break;
	}
	for (size_t k = 0; k < c.packs.n; k++) {
		rgc_obj *p = &c.packs.v[k];
		if (p->named || is_young(&c, p->mtime))
			continue;
		if ((rc = delete_one(&c, p, MFS_RGC_DELETE_PACK)) < 0)
			goto fail;
	}
	rc = 0;
fail:
	if (rc < 0 && e && e->msg[0] && !strstr(e->msg, "gc of"))
		mfs_err_prefix(e, rc, "gc of s3://%s/%s", url->bucket, url->prefix);
	if (c.dir_made) {
		char d[4200];
		snprintf(d, sizeof d, "%s/index", c.tmpdir);
		dir_empty(d);
		rmdir(d);
		rmdir(c.tmpdir);
	}
	vec_free(&c.idx);
	vec_free(&c.packs);
	free(c.named.v);
	c.st.seconds = mfs_now_seconds() - t0;
	if (out)
		*out = c.st;
	return rc;
}
