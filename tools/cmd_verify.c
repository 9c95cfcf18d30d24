/*
 * modelfs verify: decode every chunk and check it against its key, check
 * every index record (index/check.h), then rebuild every file and check its
 * sha256; name every damaged chunk and the files it breaks, and every damaged
 * record with its repo and key.  With --repair-from DIR, rewrite each damaged chunk from
 * a good copy of a file that uses it, then verify again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli.h"
#include "clock.h"
#include "fsutil.h"
#include "commands.h"
#include "grow.h"
#include "ingest.h"
#include "pool.h"
#include "progress.h"
#include "reader.h"
#include "sha256.h"
#include "stream.h"

static void verify_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: modelfs verify [--store DIR] [--threads N] [--quiet]\n"
	    "                      [--repair-from DIR] [ORG/NAME]\n\n"
	    "Check the store: decode every chunk and compare it with its checksum,\n"
	    "check every index record (refs, commits, files, blobs, tensors, ...: each\n"
	    "parses, and what it names exists), then rebuild every file (of one repo,\n"
	    "when given) and compare its sha256 with the one recorded at ingest.\n"
	    "Prints each damaged chunk and the files it breaks, and each damaged record\n"
	    "with its repo and key; exits 1 when anything is wrong, 0 when all is "
	    "clean.\n\n"
	    "  --repair-from DIR  look under DIR (a folder of model files or a\n"
	    "                     Hugging Face cache; searched recursively) for good\n"
	    "                     copies of the damaged files (same sha256, or same\n"
	    "                     size and named by their etag), rewrite each damaged\n"
	    "                     chunk from the copy's bytes (checked against the\n"
	    "                     chunk key first), then verify again. Exits 0 only\n"
	    "                     if the store is clean at the end.\n");
}

typedef struct chunk_job {
	mfs_chunk_key key;
	uint32_t raw_len;
	int rc;
	int repaired;
} chunk_job;

/* A file whose rebuild failed: what repair needs to find a good copy. */
typedef struct bad_blob {
	char repo[MFS_REPO_ID_MAX + 1];
	char etag[MFS_ETAG_MAX + 1];
	uint64_t size;
	uint8_t sha256[32];
	size_t n_extents;
	mfs_extent *extents;  /* owned */
	char *source;         /* a good copy found under --repair-from, owned */
} bad_blob;

typedef struct verify_ctx {
	mfs_store *s;
	mfs_reader *r;
	mfs_txn *t;
	int threads, quiet;
	mfs_progress progress;
	/* phase 1 */
	chunk_job *chunks;
	size_t n_chunks, cap_chunks;
	atomic_size_t next;
	/* phase 2 */
	bad_blob *bad;
	size_t n_bad, cap_bad;
	/* results */
	uint64_t bad_chunks, bad_files, bad_records, files, bytes;
	const char *repo;     /* of the blobs being checked */
} verify_ctx;

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
	j->repaired = 0;
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
			j->rc = mfs_reader_decode_chunk(c->r, &j->key, buf, j->raw_len,
							ws);
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
 * chunk's), what the read found: ": pack file ... ends 12 bytes into the
 * entry".  Empty when its record does not parse.
 */
static void chunk_where(verify_ctx *c, const mfs_chunk_key *key, char *buf, size_t cap)
{
	buf[0] = '\0';
	mfs_chunk_view v;
	if (mfs_chunk_get(c->t, key, &v) < 0 || !v.in_pack)
		return;
	void *p = malloc(v.payload_len ? v.payload_len : 1);
	mfs_errmsg err = {0};
	int rc =
	    p ? mfs_chunk_payload_read(c->s, key, &v, p, v.payload_len, &err) : -ENOMEM;
	free(p);
	if (rc < 0 && err.msg[0])
		snprintf(buf, cap, ": %s", err.msg);
	else
		snprintf(buf, cap,
			 ": its payload (pack %016llx, entry at offset %llu) does not "
			 "decode to bytes that hash to its key",
			 (unsigned long long)v.loc.pack, (unsigned long long)v.loc.off);
}

static int verify_chunks(verify_ctx *c)
{
	int rc = mfs_chunks_foreach(c->t, collect_chunk, c);
	if (rc < 0)
		return rc;
	atomic_store(&c->next, 0);
	/* each pool thread claims chunks until none is left */
	unsigned n = c->threads < 1 ? 1
		     : c->threads > MFS_POOL_MAX_THREADS ? MFS_POOL_MAX_THREADS
							 : (unsigned)c->threads;
	mfs_pool *pool = NULL;
	if (mfs_pool_create(n, &pool) == 0) {
		mfs_pool_task task[MFS_POOL_MAX_THREADS];
		mfs_pool_group g = MFS_POOL_GROUP_INIT;
		for (unsigned i = 0; i < n; i++) {
			task[i] = (mfs_pool_task){.run = check_chunks_task, .arg = c, .group = &g};
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
	for (size_t i = 0; i < c->n_chunks; i++) {
		if (c->chunks[i].rc < 0) {
			char hex[33], where[1200];
			uint64_t refs = 0;
			mfs_chunk_refcount(c->t, &c->chunks[i].key, &refs);
			chunk_where(c, &c->chunks[i].key, where, sizeof where);
			printf("BAD chunk %s: %s (used by %llu file extents)%s\n",
			       mfs_chunk_key_hex(&c->chunks[i].key, hex),
			       mfs_strerror(c->chunks[i].rc), (unsigned long long)refs,
			       where);
			c->bad_chunks++;
		}
	}
	return 0;
}

static chunk_job *find_bad_chunk(verify_ctx *c, const mfs_chunk_key *key)
{
	for (size_t i = 0; i < c->n_chunks; i++)
		if (c->chunks[i].rc < 0 && !memcmp(c->chunks[i].key.b, key->b, 16))
			return &c->chunks[i];
	return NULL;
}

/* Extents of a blob that use a chunk phase 1 found bad. */
static void report_bad_extents(verify_ctx *c, const char *repo, const mfs_blob_info *b,
			       const mfs_extent *ext)
{
	for (uint64_t e = 0; e < b->n_extents; e++)
		if (find_bad_chunk(c, &ext[e].key)) {
			char hex[33];
			printf("  blob %s of %s uses damaged chunk %s at offset %llu "
			       "(%u bytes)\n",
			       b->etag, repo, mfs_chunk_key_hex(&ext[e].key, hex),
			       (unsigned long long)ext[e].off, ext[e].len);
		}
}

/* Name the snapshot files that a damaged blob breaks. */
struct file_names {
	mfs_txn *t;
	const char *repo, *etag, *commit;
	int n;
};

static int name_file(void *ud, const mfs_file_info *f)
{
	struct file_names *fn = ud;
	if (strcmp(f->etag, fn->etag) != 0)
		return 0;
	char q[MFS_CLI_QUOTED];
	printf("  damaged file: %s/%s (commit %s)\n", fn->repo, mfs_cli_quote(f->path, q),
	       fn->commit);
	fn->n++;
	return 0;
}

static int name_commit(void *ud, const mfs_commit_info *ci)
{
	struct file_names *fn = ud;
	fn->commit = ci->commit;
	return mfs_files_foreach(fn->t, fn->repo, ci->commit, name_file, fn);
}

static void report_files(verify_ctx *c, const char *repo, const char *etag)
{
	struct file_names fn = {c->t, repo, etag, NULL, 0};
	mfs_commits_foreach(c->t, repo, name_commit, &fn);
	if (fn.n == 0)
		printf("  (no snapshot file points to blob %s: `modelfs gc` removes "
		       "it)\n",
		       etag);
}

static int remember_bad(verify_ctx *c, const mfs_rfile *f)
{
	bad_blob *p = mfs_grow(c->bad, &c->cap_bad, c->n_bad, sizeof *p, 16);
	if (!p)
		return -ENOMEM;
	c->bad = p;
	bad_blob *b = &c->bad[c->n_bad];
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
	c->n_bad++;
	return 0;
}

struct hash_ctx {
	mfs_sha256_ctx sha;
	mfs_progress *p;
};

static int hash_fn(void *ud, uint64_t off, const void *data, size_t len)
{
	struct hash_ctx *h = ud;
	mfs_sha256_update(&h->sha, data, len);
	mfs_progress_add(h->p, len);
	return 0;
}

static int verify_blob(void *ud, const mfs_blob_info *b)
{
	verify_ctx *c = ud;
	mfs_rfile *f;
	int rc = mfs_rfile_open(c->r, c->repo, b->etag, &f);
	c->files++;
	if (rc < 0) {
		printf("BAD blob %s of %s: its record is unreadable (%s)\n", b->etag,
		       c->repo, mfs_strerror(rc));
		report_files(c, c->repo, b->etag);
		c->bad_files++;
		return rc == -ENOMEM ? rc : 0;
	}
	struct hash_ctx h = {.p = &c->progress};
	mfs_sha256_init(&h.sha);
	uint64_t bad = 0;
	rc = mfs_rfile_stream(c->r, f, c->threads, hash_fn, &h, &bad);
	uint8_t d[32];
	mfs_sha256_final(&h.sha, d);
	if (rc == -ENOMEM) {
		mfs_rfile_close(f);
		return rc;
	}
	if (rc < 0 || memcmp(d, f->sha256, 32) != 0) {
		printf("BAD blob %s of %s (%llu bytes): %s\n", b->etag, c->repo,
		       (unsigned long long)b->size,
		       rc < 0 ? mfs_strerror(rc) : "sha256 of the rebuilt file differs");
		if (rc < 0)
			printf("  first damaged chunk at offset %llu\n",
			       (unsigned long long)bad);
		report_bad_extents(c, c->repo, b, f->extents);
		report_files(c, c->repo, b->etag);
		c->bad_files++;
		if ((rc = remember_bad(c, f)) < 0) {
			mfs_rfile_close(f);
			return rc;
		}
	}
	c->bytes += f->size;
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

/* One damaged index record, as the checker words it (every name quoted). */
static int print_problem(void *ud, const mfs_check_problem *p)
{
	(void)ud;
	if (p->repo[0])
		printf("BAD record of %s: %s %s (%s key \"%s\")\n", p->repo, p->what,
		       p->why, p->db, p->key);
	else
		printf("BAD record: %s %s (%s key \"%s\")\n", p->what, p->why, p->db,
		       p->key);
	return 0;
}

static void verify_reset(verify_ctx *c)
{
	for (size_t i = 0; i < c->n_bad; i++) {
		free(c->bad[i].extents);
		free(c->bad[i].source);
	}
	free(c->bad);
	free(c->chunks);
	c->bad = NULL;
	c->chunks = NULL;
	c->n_bad = c->cap_bad = c->n_chunks = c->cap_chunks = 0;
	c->bad_chunks = c->bad_files = c->bad_records = c->files = c->bytes = 0;
}

/*
 * One full pass: every chunk, then every file of @p only (or of every repo).
 * @return 0 (findings are in c), or -1 after printing why the pass could not run
 */
static int verify_pass(verify_ctx *c, const char *only)
{
	struct repo_list repos = {0};
	int ret = -1;
	int rc = mfs_txn_begin(c->s, MFS_TXN_READ, &c->t);
	if (rc < 0) {
		mfs_cli_error("verify", "cannot read the store: %s", mfs_strerror(rc));
		return -1;
	}
	double t0 = mfs_now_seconds();
	if ((rc = verify_chunks(c)) < 0) {
		mfs_cli_error("verify", "listing chunks failed: %s", mfs_strerror(rc));
		goto out;
	}
	if (only) {
		mfs_repo_info ri;
		/* a damaged repos record is one of the findings, not "no repo" */
		if (mfs_repo_get(c->t, only, &ri) == MFS_E_NOTFOUND) {
			mfs_cli_error("verify", "no repo %s in the store", only);
			goto out;
		}
		rc = mfs_check_repo(c->t, only, MFS_CHECK_CHUNKS, print_problem, c,
				    &c->bad_records);
		if (rc == 0)
			rc = list_repo_name(&repos, only);
	} else {
		rc = mfs_check_store(c->t, MFS_CHECK_CHUNKS, print_problem, c,
				     &c->bad_records);
		if (rc == 0)
			rc = mfs_check_repos_foreach(c->t, 0, list_repo, &repos);
	}
	if (rc < 0) {
		mfs_cli_error("verify", "checking the index records failed: %s",
			      mfs_strerror(rc));
		goto out;
	}
	/* blob records that do not parse were reported above: the walk skips them */
	uint64_t total = 0;
	for (size_t i = 0; rc == 0 && i < repos.n; i++)
		mfs_check_blobs_foreach(c->t, repos.names[i], sum_blob, &total);
	mfs_progress_init(&c->progress, "verify", total, c->quiet);
	for (size_t i = 0; rc == 0 && i < repos.n; i++) {
		c->repo = repos.names[i];
		rc = mfs_check_blobs_foreach(c->t, c->repo, verify_blob, c);
	}
	mfs_progress_end(&c->progress);
	if (rc < 0) {
		mfs_cli_error("verify", "reading the store failed: %s", mfs_strerror(rc));
		goto out;
	}
	printf("verified %llu chunks and %llu files (%llu bytes) in %.2f s: %llu damaged "
	       "chunks, %llu damaged files, %llu damaged records\n",
	       (unsigned long long)c->n_chunks, (unsigned long long)c->files,
	       (unsigned long long)c->bytes, mfs_now_seconds() - t0,
	       (unsigned long long)c->bad_chunks, (unsigned long long)c->bad_files,
	       (unsigned long long)c->bad_records);
	ret = 0;
out:
	for (size_t i = 0; i < repos.n; i++)
		free(repos.names[i]);
	free(repos.names);
	mfs_txn_abort(c->t);
	c->t = NULL;
	return ret;
}

/* ---- repair ---- */

/* A path found under --repair-from, quoted: a file name may hold an escape. */
#define QPATH_MAX (4 * 4096 + 8)
static const char *qpath(const char *path, char *buf)
{
	return mfs_str_quote(path, 4096, buf, QPATH_MAX);
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
	} *v;
	size_t n, cap;
};

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
static int consider_file(verify_ctx *c, const char *path, const char *name,
			 const struct stat *st)
{
	int hashed = 0;
	uint8_t d[32];
	for (size_t i = 0; i < c->n_bad; i++) {
		bad_blob *b = &c->bad[i];
		if (b->source || b->size != (uint64_t)st->st_size)
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
		if (match && !(b->source = strdup(path)))
			return -ENOMEM;
	}
	return 0;
}

/* Walk @p dir, entries in name order: directories are not followed through
 * symlinks (no loops); symlinks to files are (an HF snapshot folder links
 * into blobs/).  A folder that cannot be read offers nothing. */
static int walk(verify_ctx *c, const char *dir, struct seen *seen, int depth)
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
static int rewrite_chunk(verify_ctx *c, const mfs_chunk_key *key, const uint8_t *raw,
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
	mfs_chunk_view v = {.codec = codec, .raw_len = (uint32_t)len, .payload = enc,
			    .payload_len = enc_len};
	if ((rc = mfs_chunk_decode(&v, key, NULL, chk, len, ws)) < 0)
		goto out;
	mfs_txn *t;
	if ((rc = mfs_txn_begin(c->s, MFS_TXN_WRITE, &t)) < 0)
		goto out;
	rc = mfs_chunk_replace(t, key, &(mfs_chunk_meta){.codec = codec, .raw_len = (uint32_t)len},
			       enc, enc_len);
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
 * Repair chunk @p j from extent @p e of bad blob @p b's good copy.
 * @return 1 repaired; 0 the copy's bytes there do not match (try another);
 *         a negative code when the rewrite itself failed
 */
static int repair_from_extent(verify_ctx *c, chunk_job *j, const bad_blob *b, size_t e,
			      mfs_codec_ws *ws)
{
	const mfs_extent *x = &b->extents[e];
	char hex[33];
	mfs_chunk_key_hex(&j->key, hex);
	int fd = open(b->source, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	uint8_t *raw = malloc(x->len ? x->len : 1);
	int rc = raw ? mfs_pread_full(fd, raw, x->len, x->off, MFS_E_CORRUPT, NULL) : -ENOMEM;
	close(fd);
	mfs_chunk_key got;
	if (rc == 0) {
		mfs_chunk_key_of(raw, x->len, &got);
		if (memcmp(got.b, j->key.b, 16) != 0)
			rc = MFS_E_CORRUPT;
	}
	if (rc < 0) {
		char qp[QPATH_MAX];
		printf("  %s: bytes %llu..%llu of %s do not match chunk %s (%s)\n",
		       b->etag, (unsigned long long)x->off,
		       (unsigned long long)(x->off + x->len), qpath(b->source, qp), hex,
		       mfs_strerror(rc));
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
	rc = rewrite_chunk(c, &j->key, raw, x->len, df.dtype, ws, &codec);
	free(raw);
	if (rc < 0) {
		printf("could not rewrite chunk %s: %s\n", hex, mfs_strerror(rc));
		return rc;
	}
	char qp[QPATH_MAX];
	printf("repaired chunk %s (%u bytes, %s) from %s at offset %llu\n", hex, x->len,
	       mfs_codec_name(codec), qpath(b->source, qp), (unsigned long long)x->off);
	return 1;
}

/* Try to repair one damaged chunk from the good copies found. @return 1 if repaired */
static int repair_chunk(verify_ctx *c, chunk_job *j, mfs_codec_ws *ws)
{
	int tried = 0;
	for (size_t i = 0; i < c->n_bad; i++) {
		const bad_blob *b = &c->bad[i];
		for (size_t e = 0; b->source && e < b->n_extents; e++) {
			if (memcmp(b->extents[e].key.b, j->key.b, 16) != 0)
				continue;
			tried = 1;
			int rc = repair_from_extent(c, j, b, e, ws);
			if (rc != 0)
				return rc > 0;
		}
	}
	if (tried)
		return 0;
	char hex[33];
	mfs_chunk_key_hex(&j->key, hex);
	uint64_t refs = 0;
	mfs_txn *t;
	if (mfs_txn_begin(c->s, MFS_TXN_READ, &t) == 0) {
		mfs_chunk_refcount(t, &j->key, &refs);
		mfs_txn_abort(t);
	}
	if (refs == 0)
		printf("cannot repair chunk %s: no file uses it (`modelfs gc` removes "
		       "it)\n",
		       hex);
	else
		printf("cannot repair chunk %s: no good copy of a file that uses it was "
		       "found under the repair folder\n",
		       hex);
	return 0;
}

static int repair(verify_ctx *c, const char *from)
{
	struct stat st;
	if (stat(from, &st) < 0 || !S_ISDIR(st.st_mode)) {
		mfs_cli_error("verify", "--repair-from %s: not a folder", from);
		return -1;
	}
	struct seen seen = {0};
	int rc = walk(c, from, &seen, 0);
	free(seen.v);
	if (rc < 0) {
		mfs_cli_error("verify", "searching %s failed: %s", from,
			      mfs_strerror(rc));
		return -1;
	}
	for (size_t i = 0; i < c->n_bad; i++) {
		bad_blob *b = &c->bad[i];
		char qp[QPATH_MAX];
		if (b->source)
			printf("good copy of blob %s of %s: %s\n", b->etag, b->repo,
			       qpath(b->source, qp));
		else
			printf("no good copy of blob %s of %s (%llu bytes) under %s\n",
			       b->etag, b->repo, (unsigned long long)b->size, from);
	}
	mfs_codec_ws *ws = NULL;
	if ((rc = mfs_codec_ws_create(&ws)) < 0) {
		mfs_cli_error("verify", "out of memory");
		return -1;
	}
	uint64_t fixed = 0, failed = 0;
	for (size_t i = 0; i < c->n_chunks; i++) {
		chunk_job *j = &c->chunks[i];
		if (j->rc >= 0)
			continue;
		if (repair_chunk(c, j, ws))
			fixed++;
		else
			failed++;
	}
	mfs_codec_ws_free(ws);
	/* Each rewrite committed (fsynced by LMDB); make it explicit, as ingest does. */
	if (fixed && (rc = mfs_store_sync(c->s)) < 0) {
		mfs_cli_error("verify", "syncing the store failed: %s", mfs_strerror(rc));
		return -1;
	}
	printf("repair: %llu chunks rewritten, %llu could not be repaired\n",
	       (unsigned long long)fixed, (unsigned long long)failed);
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"threads", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'},
		{"store", required_argument, NULL, 'S'},
		{"repair-from", required_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), quiet = 0, opt;
	const char *repair_from = NULL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			if (mfs_cli_parse_threads("verify", optarg, &threads) < 0)
				return MFS_EXIT_USAGE;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'R':
			repair_from = optarg;
			break;
		case 'h':
			verify_usage(stdout);
			return MFS_EXIT_OK;
		default:
			verify_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		verify_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	char only_buf[MFS_REPO_ID_MAX + 1];
	const char *only = NULL;
	if (optind < argc) {
		if (mfs_cli_repo_id("verify", argv[optind], only_buf) < 0)
			return MFS_EXIT_ERROR;
		only = only_buf;
	}
	verify_ctx c = {.threads = threads, .quiet = quiet};
	int lock_fd = -1;
	if (mfs_cli_open_store("verify", repair_from ? 0 : MFS_STORE_RDONLY, &c.s) < 0)
		return MFS_EXIT_ERROR;
	int ret = MFS_EXIT_ERROR;
	int rc = mfs_reader_create(c.s, NULL, &c.r);
	if (rc < 0) {
		mfs_cli_error("verify", "cannot read the store: %s", mfs_strerror(rc));
		goto out;
	}
	if (repair_from) {
		/* Shared, like an ingest: keeps gc from sweeping chunks we rewrite. */
		rc = mfs_store_lock_ingest(c.s, 0, 1, &lock_fd);
		if (rc < 0) {
			mfs_cli_error("verify", "cannot lock the store: %s",
				      mfs_strerror(rc));
			goto out;
		}
	}
	if (verify_pass(&c, only) < 0)
		goto out;
	if (repair_from && (c.bad_chunks || c.bad_files)) {
		if (repair(&c, repair_from) < 0)
			goto out;
		printf("verifying again after repair\n");
		verify_reset(&c);
		if (verify_pass(&c, only) < 0)
			goto out;
	}
	if ((c.bad_chunks || c.bad_files) && repair_from)
		printf("the store is damaged: no good copy was found for the files "
		       "above: re-ingest them from a good copy, or `modelfs rm` their "
		       "repos\n");
	else if (c.bad_chunks || c.bad_files)
		printf("the store is damaged: repair it with `modelfs verify "
		       "--repair-from DIR` (DIR holding good copies of the files above), "
		       "re-ingest them, or `modelfs rm` their repos\n");
	if (c.bad_records)
		printf(
		    "the store's index is damaged: `ls` and the mount leave out the "
		    "repos "
		    "named above; `modelfs rm` each and ingest it again (--repair-from "
		    "rewrites chunks, not records)\n");
	if (!c.bad_chunks && !c.bad_files && !c.bad_records)
		ret = MFS_EXIT_OK;
out:
	verify_reset(&c);
	mfs_store_unlock(lock_fd);
	mfs_reader_free(c.r);
	mfs_store_close(c.s);
	return ret;
}
