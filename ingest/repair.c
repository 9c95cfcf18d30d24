/*
 * repair.c - damaged chunks rewritten from good copies found under a folder
 * (repair.h): the search, the per-chunk attempts, the re-encode.
 */
#include "repair.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "grow.h"
#include "ingest.h"
#include "sha256.h"

typedef struct repair_ctx {
	mfs_store *s;
	const mfs_damaged_blob *blobs;
	size_t n_blobs;
	char **sources; /* per blob: a good copy's path (owned), or NULL */
	mfs_repair_report_fn fn;
	void *ud;
} repair_ctx;

static void report(repair_ctx *c, const mfs_repair_event *ev)
{
	if (c->fn)
		c->fn(c->ud, ev);
}

/* A file's sha256; @return 0 or -errno. */
static int sha256_file(const char *path, uint8_t out[32])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t cap = 1 << 20;
	uint8_t *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	mfs_sha256_ctx sha;
	mfs_sha256_init(&sha);
	int rc = 0;
	for (;;) {
		ssize_t n = read(fd, buf, cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		mfs_sha256_update(&sha, buf, (size_t)n);
	}
	mfs_sha256_final(&sha, out);
	free(buf);
	close(fd);
	return rc;
}

/* Files already looked at (hard links and the cache's many symlinks to one blob). */
struct seen {
	struct {
		dev_t dev;
		ino_t ino;
	} * v;
	size_t n, cap;
};

/* @return 1 when @p st is new (now remembered), 0 when seen, -ENOMEM */
static int seen_add(struct seen *s, const struct stat *st)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].dev == st->st_dev && s->v[i].ino == st->st_ino)
			return 0;
	void *p = mfs_grow(s->v, &s->cap, s->n, sizeof *s->v, 64);
	if (!p)
		return -ENOMEM;
	s->v = p;
	s->v[s->n].dev = st->st_dev;
	s->v[s->n].ino = st->st_ino;
	s->n++;
	return 1;
}

/* A candidate file: does it hold the content of any damaged blob still without one? */
static int consider_file(repair_ctx *c, const char *path, const char *name,
			 const struct stat *st)
{
	int hashed = 0;
	uint8_t d[32];
	for (size_t i = 0; i < c->n_blobs; i++) {
		const mfs_damaged_blob *b = &c->blobs[i];
		if (c->sources[i] || b->size != (uint64_t)st->st_size)
			continue;
		/* The HF cache names a blob by its etag; every chunk read from it is
		 * still checked against its key before it is used. */
		int match = strcmp(name, b->etag) == 0;
		if (!match) {
			if (!hashed) {
				if (sha256_file(path, d) < 0)
					return 0; /* unreadable: not a candidate */
				hashed = 1;
			}
			match = memcmp(d, b->sha256, 32) == 0;
		}
		if (match && !(c->sources[i] = strdup(path)))
			return -ENOMEM;
	}
	return 0;
}

/* Walk @p dir, entries in name order: directories are not followed through
 * symlinks (no loops); symlinks to files are (an HF snapshot folder links
 * into blobs/).  A folder that cannot be read offers nothing. */
static int walk(repair_ctx *c, const char *dir, struct seen *seen, int depth)
{
	if (depth > 64)
		return 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	char **names = NULL;
	size_t n = 0;
	int rc = mfs_dir_names(d, &names, &n);
	closedir(d);
	if (rc < 0)
		return rc == -ENOMEM ? rc : 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char path[4096];
		int pl = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (pl < 0 || pl >= (int)sizeof path)
			continue;
		struct stat st;
		if (lstat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			rc = walk(c, path, seen, depth + 1);
			continue;
		}
		if (S_ISLNK(st.st_mode) && stat(path, &st) < 0)
			continue;
		if (!S_ISREG(st.st_mode))
			continue;
		int fresh = seen_add(seen, &st);
		if (fresh < 0)
			rc = fresh;
		else if (fresh)
			rc = consider_file(c, path, names[i], &st);
	}
	mfs_dir_names_free(names, n);
	return rc;
}

/* The dtype of the tensor holding extent @p idx of a blob (UNKNOWN if none). */
struct dtype_find {
	uint64_t idx;
	mfs_dtype dtype;
};

static int dtype_of_extent(void *ud, const mfs_tensor_info *ti)
{
	struct dtype_find *f = ud;
	if (f->idx >= ti->first_extent && f->idx - ti->first_extent < ti->n_extents) {
		f->dtype = ti->dtype;
		return 1;
	}
	return 0;
}

/*
 * Encode @p raw as ingest would (mfs_ingest_encode_chunk), prove it decodes
 * to @p key, and rewrite the chunk in one write transaction.  The rewritten
 * chunk stands alone: a damaged delta is repaired without its base.
 */
static int rewrite_chunk(repair_ctx *c, const mfs_chunk_key *key, const uint8_t *raw,
			 size_t len, mfs_dtype dtype, mfs_codec_ws *ws,
			 mfs_codec_id *used)
{
	size_t cap = mfs_codec_bound_max(len);
	uint8_t *enc = malloc(cap ? cap : 1);
	uint8_t *chk = malloc(len ? len : 1);
	size_t enc_len = 0;
	mfs_codec_id codec;
	int rc;
	if (!enc || !chk) {
		rc = -ENOMEM;
		goto out;
	}
	rc = mfs_ingest_encode_chunk(dtype, 0, raw, len, enc, cap, &enc_len, &codec, ws);
	if (rc < 0)
		goto out;
	/* Decode and re-hash exactly as a reader will. */
	mfs_chunk_view v = {.codec = codec,
			    .raw_len = (uint32_t)len,
			    .payload = enc,
			    .payload_len = enc_len};
	if ((rc = mfs_chunk_decode(&v, key, NULL, chk, len, ws)) < 0)
		goto out;
	mfs_txn *t;
	if ((rc = mfs_txn_begin(c->s, MFS_TXN_WRITE, &t)) < 0)
		goto out;
	rc = mfs_chunk_replace(
	    t, key, &(mfs_chunk_meta){.codec = codec, .raw_len = (uint32_t)len}, enc,
	    enc_len);
	if (rc < 0)
		mfs_txn_abort(t);
	else
		rc = mfs_txn_commit(t);
	*used = codec;
out:
	free(enc);
	free(chk);
	return rc;
}

/*
 * Repair chunk @p key from extent @p e of blob @p bi's good copy.
 * @return 1 repaired; 0 the copy's bytes there do not match (try another);
 *         a negative code when the rewrite itself failed
 */
static int repair_from_extent(repair_ctx *c, const mfs_chunk_key *key, size_t bi,
			      size_t e, mfs_codec_ws *ws)
{
	const mfs_damaged_blob *b = &c->blobs[bi];
	const char *source = c->sources[bi];
	const mfs_extent *x = &b->extents[e];
	int fd = open(source, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	uint8_t *raw = malloc(x->len ? x->len : 1);
	int rc =
	    raw ? mfs_pread_full(fd, raw, x->len, x->off, MFS_E_CORRUPT, NULL) : -ENOMEM;
	close(fd);
	mfs_chunk_key got;
	if (rc == 0) {
		mfs_chunk_key_of(raw, x->len, &got);
		if (memcmp(got.b, key->b, 16) != 0)
			rc = MFS_E_CORRUPT;
	}
	if (rc < 0) {
		report(c, &(mfs_repair_event){.kind = MFS_REPAIR_MISMATCH,
					      .blob = b,
					      .path = source,
					      .key = key,
					      .off = x->off,
					      .len = x->len,
					      .rc = rc});
		free(raw);
		return 0;
	}
	mfs_txn *t;
	struct dtype_find df = {e, MFS_DT_UNKNOWN};
	if (mfs_txn_begin(c->s, MFS_TXN_READ, &t) == 0) {
		mfs_tensors_foreach(t, b->repo, b->etag, dtype_of_extent, &df);
		mfs_txn_abort(t);
	}
	mfs_codec_id codec = MFS_CODEC_RAW;
	rc = rewrite_chunk(c, key, raw, x->len, df.dtype, ws, &codec);
	free(raw);
	if (rc < 0) {
		report(c, &(mfs_repair_event){
			      .kind = MFS_REPAIR_REWRITE_FAILED, .key = key, .rc = rc});
		return rc;
	}
	report(c, &(mfs_repair_event){.kind = MFS_REPAIR_REWRITTEN,
				      .blob = b,
				      .path = source,
				      .key = key,
				      .off = x->off,
				      .len = x->len,
				      .codec = codec});
	return 1;
}

/* Try to repair one damaged chunk from the good copies found. @return 1 if repaired */
static int repair_chunk(repair_ctx *c, const mfs_chunk_key *key, mfs_codec_ws *ws)
{
	int tried = 0;
	for (size_t i = 0; i < c->n_blobs; i++) {
		const mfs_damaged_blob *b = &c->blobs[i];
		for (size_t e = 0; c->sources[i] && e < b->n_extents; e++) {
			if (memcmp(b->extents[e].key.b, key->b, 16) != 0)
				continue;
			tried = 1;
			int rc = repair_from_extent(c, key, i, e, ws);
			if (rc != 0)
				return rc > 0;
		}
	}
	if (tried)
		return 0;
	uint64_t refs = 0;
	mfs_txn *t;
	if (mfs_txn_begin(c->s, MFS_TXN_READ, &t) == 0) {
		mfs_chunk_refcount(t, key, &refs);
		mfs_txn_abort(t);
	}
	report(c, &(mfs_repair_event){.kind = refs == 0 ? MFS_REPAIR_UNUSED
							: MFS_REPAIR_NO_COPY,
				      .key = key});
	return 0;
}

int mfs_repair_run(mfs_store *s, const char *from, const mfs_damaged_blob *blobs,
		   size_t n_blobs, const mfs_damaged_chunk *chunks, size_t n_chunks,
		   mfs_repair_report_fn fn, void *ud, mfs_repair_stats *stats,
		   mfs_errmsg *err)
{
	*stats = (mfs_repair_stats){0};
	struct stat st;
	if (stat(from, &st) < 0 || !S_ISDIR(st.st_mode))
		return mfs_err(err, -ENOTDIR, "%s: not a folder", from);
	repair_ctx c = {.s = s, .blobs = blobs, .n_blobs = n_blobs, .fn = fn, .ud = ud};
	c.sources = calloc(n_blobs ? n_blobs : 1, sizeof *c.sources);
	if (!c.sources)
		return mfs_err(err, -ENOMEM, "out of memory");
	struct seen seen = {0};
	int rc = walk(&c, from, &seen, 0);
	free(seen.v);
	if (rc < 0) {
		mfs_err(err, rc, "searching %s failed: %s", from, mfs_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < n_blobs; i++)
		report(&c,
		       &(mfs_repair_event){.kind = c.sources[i] ? MFS_REPAIR_SOURCE
								: MFS_REPAIR_NO_SOURCE,
					   .blob = &blobs[i],
					   .path = c.sources[i]});
	mfs_codec_ws *ws = NULL;
	if ((rc = mfs_codec_ws_create(&ws)) < 0) {
		mfs_err(err, rc, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_chunks; i++) {
		if (repair_chunk(&c, &chunks[i].key, ws))
			stats->rewritten++;
		else
			stats->failed++;
	}
	mfs_codec_ws_free(ws);
	/* Each rewrite committed (fsynced by LMDB); make it explicit, as ingest does. */
	if (stats->rewritten && (rc = mfs_store_sync(s)) < 0)
		mfs_err(err, rc, "syncing the store failed: %s", mfs_strerror(rc));
out:
	for (size_t i = 0; i < n_blobs; i++)
		free(c.sources[i]);
	free(c.sources);
	return rc;
}
