/*
 * verify.c - the store check behind `modelfs verify` (verify.h): chunks on
 * the worker pool, records through index/check.h, files rebuilt through the
 * read path and hashed.
 */
#include "verify.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "grow.h"
#include "pool.h"
#include "sha256.h"
#include "stream.h"

typedef struct chunk_job {
	mfs_chunk_key key;
	uint32_t raw_len;
	int rc;
} chunk_job;

typedef struct verify_ctx {
	mfs_store *s;
	mfs_reader *r;
	mfs_txn *t;
	const mfs_verify_opts *o;
	mfs_verify_result *res;
	/* phase 1: every chunk */
	chunk_job *chunks;
	size_t n_chunks, cap_chunks;
	atomic_size_t next;
	size_t cap_damaged_chunks, cap_damaged_blobs;
	/* phase 3: the blobs of one repo at a time */
	const char *repo;
	uint64_t done, total;
} verify_ctx;

static void report(verify_ctx *c, const mfs_verify_event *ev)
{
	if (c->o->report)
		c->o->report(c->o->ud, ev);
}

static int collect_chunk(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
			 uint64_t refcount)
{
	verify_ctx *c = ud;
	chunk_job *p = mfs_grow(c->chunks, &c->cap_chunks, c->n_chunks, sizeof *p, 1024);
	if (!p)
		return -ENOMEM;
	c->chunks = p;
	chunk_job *j = &c->chunks[c->n_chunks++];
	j->key = *key;
	j->raw_len = v->raw_len;
	/* a record that did not parse is reported as corrupt without decoding */
	j->rc = v->codec == MFS_CODEC__COUNT ? MFS_E_CORRUPT : 1;
	return 0;
}

/* Decode and check chunks of phase 1 until none is left (on each thread). */
static void check_chunks(verify_ctx *c, mfs_codec_ws *ws)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);
		if (i >= c->n_chunks)
			break;
		chunk_job *j = &c->chunks[i];
		if (j->rc != 1)
			continue;
		if (cap < j->raw_len) {
			free(buf);
			buf = malloc(j->raw_len);
			cap = buf ? j->raw_len : 0;
		}
		if (!buf && j->raw_len)
			j->rc = -ENOMEM;
		else
			j->rc =
			    mfs_reader_decode_chunk(c->r, &j->key, buf, j->raw_len, ws);
	}
	free(buf);
}

static void check_chunks_task(mfs_pool_task *t, mfs_codec_ws *ws)
{
	check_chunks(t->arg, ws);
}

/*
 * Where a damaged chunk's payload lies and, when its pack entry is what is
 * wrong (a pack file missing or cut short, a header that is not the
 * chunk's), what the read found.
 */
static void chunk_where(verify_ctx *c, const mfs_chunk_key *key, mfs_verify_event *ev,
			mfs_errmsg *err)
{
	mfs_chunk_view v;
	if (mfs_chunk_get(c->t, key, &v) < 0 || !v.in_pack)
		return;
	ev->in_pack = 1;
	ev->pack = v.loc.pack;
	ev->pack_off = v.loc.off;
	void *p = malloc(v.payload_len ? v.payload_len : 1);
	int rc =
	    p ? mfs_chunk_payload_read(c->s, key, &v, p, v.payload_len, err) : -ENOMEM;
	free(p);
	if (rc >= 0)
		err->msg[0] = '\0';
}

static int add_damaged_chunk(verify_ctx *c, const chunk_job *j)
{
	mfs_verify_result *res = c->res;
	mfs_damaged_chunk *p = mfs_grow(res->damaged_chunks, &c->cap_damaged_chunks,
					res->n_damaged_chunks, sizeof *p, 16);
	if (!p)
		return -ENOMEM;
	res->damaged_chunks = p;
	p[res->n_damaged_chunks++] = (mfs_damaged_chunk){.key = j->key, .rc = j->rc};
	return 0;
}

static int verify_chunks(verify_ctx *c)
{
	int rc = mfs_chunks_foreach(c->t, collect_chunk, c);
	if (rc < 0)
		return rc;
	atomic_store(&c->next, 0);
	/* each pool thread claims chunks until none is left */
	int th = c->o->threads;
	unsigned n = th < 1			 ? 1
		     : th > MFS_POOL_MAX_THREADS ? MFS_POOL_MAX_THREADS
						 : (unsigned)th;
	mfs_pool *pool = NULL;
	if (mfs_pool_create(n, &pool) == 0) {
		mfs_pool_task task[MFS_POOL_MAX_THREADS];
		mfs_pool_group g = MFS_POOL_GROUP_INIT;
		for (unsigned i = 0; i < n; i++) {
			task[i] = (mfs_pool_task){
			    .run = check_chunks_task, .arg = c, .group = &g};
			mfs_pool_submit(pool, &task[i]); /* cannot fail: the pool runs */
		}
		mfs_pool_wait(pool, &g);
		mfs_pool_free(pool);
	} else {
		/* no threads to be had: this one checks them all */
		mfs_codec_ws *ws = NULL;
		if (mfs_codec_ws_create(&ws) < 0)
			return -ENOMEM;
		check_chunks(c, ws);
		mfs_codec_ws_free(ws);
	}
	c->res->chunks = c->n_chunks;
	for (size_t i = 0; i < c->n_chunks; i++) {
		const chunk_job *j = &c->chunks[i];
		if (j->rc >= 0)
			continue;
		if ((rc = add_damaged_chunk(c, j)) < 0)
			return rc;
		mfs_errmsg where = {0};
		mfs_verify_event ev = {.kind = MFS_VERIFY_BAD_CHUNK,
				       .rc = j->rc,
				       .key = &j->key,
				       .detail = where.msg};
		mfs_chunk_refcount(c->t, &j->key, &ev.refs);
		chunk_where(c, &j->key, &ev, &where);
		report(c, &ev);
		c->res->bad_chunks++;
	}
	return 0;
}

static int chunk_is_damaged(const verify_ctx *c, const mfs_chunk_key *key)
{
	const mfs_verify_result *res = c->res;
	for (size_t i = 0; i < res->n_damaged_chunks; i++)
		if (!memcmp(res->damaged_chunks[i].key.b, key->b, 16))
			return 1;
	return 0;
}

/* Extents of a blob that use a chunk phase 1 found damaged. */
static void report_bad_extents(verify_ctx *c, const mfs_blob_info *b,
			       const mfs_extent *ext)
{
	for (uint64_t e = 0; e < b->n_extents; e++)
		if (chunk_is_damaged(c, &ext[e].key))
			report(c, &(mfs_verify_event){.kind = MFS_VERIFY_BAD_EXTENT,
						      .repo = c->repo,
						      .etag = b->etag,
						      .key = &ext[e].key,
						      .off = ext[e].off,
						      .len = ext[e].len});
}

/* Name the snapshot files that a damaged blob breaks. */
struct file_names {
	verify_ctx *c;
	const char *etag, *commit;
	int n;
};

static int name_file(void *ud, const mfs_file_info *f)
{
	struct file_names *fn = ud;
	if (strcmp(f->etag, fn->etag) != 0)
		return 0;
	report(fn->c, &(mfs_verify_event){.kind = MFS_VERIFY_DAMAGED_FILE,
					  .repo = fn->c->repo,
					  .etag = fn->etag,
					  .path = f->path,
					  .commit = fn->commit});
	fn->n++;
	return 0;
}

static int name_commit(void *ud, const mfs_commit_info *ci)
{
	struct file_names *fn = ud;
	fn->commit = ci->commit;
	return mfs_files_foreach(fn->c->t, fn->c->repo, ci->commit, name_file, fn);
}

static void report_files(verify_ctx *c, const char *etag)
{
	struct file_names fn = {c, etag, NULL, 0};
	mfs_commits_foreach(c->t, c->repo, name_commit, &fn);
	if (fn.n == 0)
		report(c, &(mfs_verify_event){
			      .kind = MFS_VERIFY_NO_FILE, .repo = c->repo, .etag = etag});
}

static int remember_bad(verify_ctx *c, const mfs_rfile *f)
{
	mfs_verify_result *res = c->res;
	mfs_damaged_blob *p = mfs_grow(res->damaged_blobs, &c->cap_damaged_blobs,
				       res->n_damaged_blobs, sizeof *p, 16);
	if (!p)
		return -ENOMEM;
	res->damaged_blobs = p;
	mfs_damaged_blob *b = &p[res->n_damaged_blobs];
	memset(b, 0, sizeof *b);
	snprintf(b->repo, sizeof b->repo, "%s", f->repo);
	snprintf(b->etag, sizeof b->etag, "%s", f->etag);
	b->size = f->size;
	memcpy(b->sha256, f->sha256, 32);
	b->extents = malloc((f->n_extents ? f->n_extents : 1) * sizeof *b->extents);
	if (!b->extents)
		return -ENOMEM;
	memcpy(b->extents, f->extents, f->n_extents * sizeof *b->extents);
	b->n_extents = f->n_extents;
	res->n_damaged_blobs++;
	return 0;
}

struct hash_ctx {
	mfs_sha256_ctx sha;
	verify_ctx *c;
};

static int hash_fn(void *ud, uint64_t off, const void *data, size_t len)
{
	struct hash_ctx *h = ud;
	mfs_sha256_update(&h->sha, data, len);
	verify_ctx *c = h->c;
	c->done += len;
	if (c->o->progress)
		c->o->progress(c->o->ud, c->done, c->total);
	return 0;
}

static int verify_blob(void *ud, const mfs_blob_info *b)
{
	verify_ctx *c = ud;
	mfs_rfile *f;
	int rc = mfs_rfile_open(c->r, c->repo, b->etag, &f);
	c->res->files++;
	if (rc < 0) {
		report(c, &(mfs_verify_event){.kind = MFS_VERIFY_BAD_BLOB_RECORD,
					      .repo = c->repo,
					      .etag = b->etag,
					      .rc = rc});
		report_files(c, b->etag);
		c->res->bad_files++;
		return rc == -ENOMEM ? rc : 0;
	}
	struct hash_ctx h = {.c = c};
	mfs_sha256_init(&h.sha);
	uint64_t bad = 0;
	rc = mfs_rfile_stream(c->r, f, c->o->threads, hash_fn, &h, &bad);
	uint8_t d[32];
	mfs_sha256_final(&h.sha, d);
	if (rc == -ENOMEM) {
		mfs_rfile_close(f);
		return rc;
	}
	if (rc < 0 || memcmp(d, f->sha256, 32) != 0) {
		report(c, &(mfs_verify_event){.kind = MFS_VERIFY_BAD_BLOB,
					      .repo = c->repo,
					      .etag = b->etag,
					      .size = b->size,
					      .rc = rc < 0 ? rc : 0,
					      .off = bad});
		report_bad_extents(c, b, f->extents);
		report_files(c, b->etag);
		c->res->bad_files++;
		if ((rc = remember_bad(c, f)) < 0) {
			mfs_rfile_close(f);
			return rc;
		}
	}
	c->res->bytes += f->size;
	mfs_rfile_close(f);
	return 0;
}

static int sum_blob(void *ud, const mfs_blob_info *b)
{
	*(uint64_t *)ud += b->size;
	return 0;
}

struct repo_list {
	char **names;
	size_t n, cap;
};

static int list_repo_name(struct repo_list *l, const char *repo)
{
	char **p = mfs_grow(l->names, &l->cap, l->n, sizeof *p, 16);
	if (!p)
		return -ENOMEM;
	l->names = p;
	l->names[l->n] = strdup(repo);
	return l->names[l->n++] ? 0 : -ENOMEM;
}

/* Every repo key that names a repo, damaged or not: its files are checked too. */
static int list_repo(void *ud, const mfs_check_repo_entry *e)
{
	return e->repo ? list_repo_name(ud, e->repo) : 0;
}

static int report_problem(void *ud, const mfs_check_problem *p)
{
	report(ud, &(mfs_verify_event){.kind = MFS_VERIFY_BAD_RECORD, .problem = p});
	return 0;
}

void mfs_verify_opts_default(mfs_verify_opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	*o = (mfs_verify_opts){.threads = n > 0 ? (int)n : 1};
}

void mfs_verify_result_free(mfs_verify_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n_damaged_blobs; i++)
		free(res->damaged_blobs[i].extents);
	free(res->damaged_blobs);
	free(res->damaged_chunks);
	memset(res, 0, sizeof *res);
}

int mfs_verify_run(mfs_store *s, mfs_reader *r, const mfs_verify_opts *opts,
		   mfs_verify_result *res, mfs_errmsg *err)
{
	memset(res, 0, sizeof *res);
	verify_ctx c = {.s = s, .r = r, .o = opts, .res = res};
	struct repo_list repos = {0};
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &c.t);
	if (rc < 0)
		return mfs_err(err, rc, "cannot read the store: %s", mfs_strerror(rc));
	double t0 = mfs_now_seconds();
	if ((rc = verify_chunks(&c)) < 0) {
		mfs_err(err, rc, "listing chunks failed: %s", mfs_strerror(rc));
		goto out;
	}
	if (opts->repo) {
		mfs_repo_info ri;
		/* a damaged repos record is one of the findings, not "no repo" */
		if (mfs_repo_get(c.t, opts->repo, &ri) == MFS_E_NOTFOUND) {
			rc = mfs_err(err, MFS_E_NOTFOUND, "no repo %s in the store",
				     opts->repo);
			goto out;
		}
		rc = mfs_check_repo(c.t, opts->repo, MFS_CHECK_CHUNKS, report_problem, &c,
				    &res->bad_records);
		if (rc == 0)
			rc = list_repo_name(&repos, opts->repo);
	} else {
		rc = mfs_check_store(c.t, MFS_CHECK_CHUNKS, report_problem, &c,
				     &res->bad_records);
		if (rc == 0)
			rc = mfs_check_repos_foreach(c.t, 0, list_repo, &repos);
	}
	if (rc < 0) {
		mfs_err(err, rc, "checking the index records failed: %s",
			mfs_strerror(rc));
		goto out;
	}
	/* blob records that do not parse were reported above: the walk skips them */
	for (size_t i = 0; i < repos.n; i++)
		mfs_check_blobs_foreach(c.t, repos.names[i], sum_blob, &c.total);
	if (opts->progress)
		opts->progress(opts->ud, 0, c.total);
	for (size_t i = 0; rc == 0 && i < repos.n; i++) {
		c.repo = repos.names[i];
		rc = mfs_check_blobs_foreach(c.t, c.repo, verify_blob, &c);
	}
	if (rc < 0) {
		mfs_err(err, rc, "reading the store failed: %s", mfs_strerror(rc));
		goto out;
	}
	res->seconds = mfs_now_seconds() - t0;
out:
	for (size_t i = 0; i < repos.n; i++)
		free(repos.names[i]);
	free(repos.names);
	free(c.chunks);
	mfs_txn_abort(c.t);
	return rc;
}
