/*
 * ingest.c - sources (HF cache, plain folder) -> chunks -> encoder pool -> store.
 */
#include "ingest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "grow.h"
#include "progress.h"
#include "safetensors.h"
#include "sha256.h"

/* Commit the write transaction once this much new payload is in it. */
#define TXN_BYTES ((uint64_t)64 << 20)
/* Files at least this large are LFS files on the hub (etag = sha256). */
#define LFS_MIN_SIZE ((uint64_t)10 << 20)

/* ---------------------------------------------------------------- sources */

typedef struct src_file {
	char *rel;              /* path inside the snapshot */
	char *abs;              /* path to open */
	char etag[MFS_ETAG_MAX + 1]; /* known (HF cache) or empty (computed) */
	uint32_t mode;
} src_file;

typedef struct src_snapshot {
	char commit[MFS_COMMIT_LEN + 1]; /* empty for a plain folder: computed */
	src_file *files;
	size_t n_files, cap_files;
	char **noexist;
	size_t n_noexist, cap_noexist;
	char **refs;
	size_t n_refs, cap_refs;
} src_snapshot;

static int push_str(char ***arr, size_t *n, size_t *cap, const char *s)
{
	char **a = mfs_grow(*arr, cap, *n, sizeof *a, 16);
	if (!a)
		return -ENOMEM;
	*arr = a;
	char *d = strdup(s);
	if (!d)
		return -ENOMEM;
	(*arr)[(*n)++] = d;
	return 0;
}

static void snapshot_free(src_snapshot *sn)
{
	for (size_t i = 0; i < sn->n_files; i++) {
		free(sn->files[i].rel);
		free(sn->files[i].abs);
	}
	free(sn->files);
	for (size_t i = 0; i < sn->n_noexist; i++)
		free(sn->noexist[i]);
	free(sn->noexist);
	for (size_t i = 0; i < sn->n_refs; i++)
		free(sn->refs[i]);
	free(sn->refs);
	memset(sn, 0, sizeof *sn);
}

static int is_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Walk a directory tree, calling fn for every non-directory entry with its
 * path relative to root.  Entries are visited in name order, so the result
 * does not depend on the file system.  Directories named in skip_dirs (at
 * any depth) are not entered.
 */
typedef int (*walk_fn)(void *ud, const char *abs, const char *rel, const struct stat *lst);

static int walk(const char *root, const char *rel, int depth, const char *const *skip_dirs,
		walk_fn fn, void *ud, mfs_errmsg *err)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel);
	if (depth > 32)
		return mfs_err(err, MFS_E_INVAL,
			       "%s: directories nested more than 32 deep (a symlink loop?)", dir);
	DIR *d = opendir(dir);
	if (!d)
		return mfs_err(err, -errno, "cannot read directory %s: %s", dir,
			       strerror(errno));
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((rc = push_str(&names, &n, &cap, de->d_name)) < 0)
			break;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char crel[4096], cabs[4096];
		snprintf(crel, sizeof crel, "%s%s%s", rel, rel[0] ? "/" : "", names[i]);
		snprintf(cabs, sizeof cabs, "%s/%s", root, crel);
		struct stat lst;
		if (lstat(cabs, &lst) < 0) {
			rc = mfs_err(err, -errno, "cannot stat %s: %s", cabs, strerror(errno));
			break;
		}
		if (S_ISDIR(lst.st_mode)) {
			int skip = 0;
			for (const char *const *s = skip_dirs; s && *s; s++)
				if (!strcmp(names[i], *s))
					skip = 1;
			if (!skip)
				rc = walk(root, crel, depth + 1, skip_dirs, fn, ud, err);
		} else {
			rc = fn(ud, cabs, crel, &lst);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* Plain folder: every file is part of the snapshot. */
static int folder_file_fn(void *ud, const char *abs, const char *rel, const struct stat *lst)
{
	src_snapshot *sn = ud;
	src_file *files = mfs_grow(sn->files, &sn->cap_files, sn->n_files, sizeof *files, 16);
	if (!files)
		return -ENOMEM;
	sn->files = files;
	src_file *f = &sn->files[sn->n_files];
	memset(f, 0, sizeof *f);
	f->rel = strdup(rel);
	f->abs = strdup(abs);
	f->mode = 0444;
	if (!f->rel || !f->abs) {
		free(f->rel);
		free(f->abs);
		return -ENOMEM;
	}
	sn->n_files++;
	return 0;
}

/* HF snapshot dir: symlinks name their blob; regular files are hashed. */
struct hf_walk {
	src_snapshot *sn;
	const char *repo_dir;
	mfs_errmsg *err;
};

static int hf_file_fn(void *ud, const char *abs, const char *rel, const struct stat *lst)
{
	struct hf_walk *w = ud;
	int rc = folder_file_fn(w->sn, abs, rel, lst);
	if (rc < 0 || !S_ISLNK(lst->st_mode))
		return rc;
	src_file *f = &w->sn->files[w->sn->n_files - 1];
	char target[4096];
	ssize_t n = readlink(abs, target, sizeof target - 1);
	if (n < 0)
		return mfs_err(w->err, -errno, "cannot read symlink %s: %s", abs,
			       strerror(errno));
	target[n] = '\0';
	const char *base = strrchr(target, '/');
	base = base ? base + 1 : target;
	/* Hub snapshots link to ../blobs/<etag>; anything else is hashed like a file. */
	if (strstr(target, "blobs/") && (is_hex(base, 64) || is_hex(base, 40))) {
		strcpy(f->etag, base);
		char blob[4096];
		snprintf(blob, sizeof blob, "%s/blobs/%s", w->repo_dir, base);
		free(f->abs);
		f->abs = strdup(blob);
		if (!f->abs)
			return -ENOMEM;
	}
	return 0;
}

static int noexist_fn(void *ud, const char *abs, const char *rel, const struct stat *lst)
{
	src_snapshot *sn = ud;
	return push_str(&sn->noexist, &sn->n_noexist, &sn->cap_noexist, rel);
}

struct ref_walk {
	src_snapshot *snaps;
	size_t n_snaps;
	mfs_errmsg *err;
};

static int ref_fn(void *ud, const char *abs, const char *rel, const struct stat *lst)
{
	struct ref_walk *w = ud;
	char buf[128] = {0};
	int fd = open(abs, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mfs_err(w->err, -errno, "cannot open ref %s: %s", abs, strerror(errno));
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (n != MFS_COMMIT_LEN || !is_hex(buf, MFS_COMMIT_LEN))
		return mfs_err(w->err, MFS_E_FORMAT,
			       "ref %s does not hold a 40-hex commit hash: the cache is damaged",
			       abs);
	for (size_t i = 0; i < w->n_snaps; i++)
		if (!strcmp(w->snaps[i].commit, buf))
			return push_str(&w->snaps[i].refs, &w->snaps[i].n_refs,
					&w->snaps[i].cap_refs, rel);
	return 0; /* a ref to a commit with no snapshot here: nothing to serve */
}

/* Repo id from an HF cache folder name: models--org--name -> models/org/name. */
static int hf_repo_id(const char *dirname, char out[MFS_REPO_ID_MAX + 1], mfs_errmsg *err)
{
	static const char *const types[][2] = {
		{"models--", "models"}, {"datasets--", "datasets"}, {"spaces--", "spaces"}};
	for (size_t t = 0; t < 3; t++) {
		size_t tl = strlen(types[t][0]);
		if (strncmp(dirname, types[t][0], tl))
			continue;
		const char *rest = dirname + tl;
		const char *sep = strstr(rest, "--");
		int n;
		if (sep)
			n = snprintf(out, MFS_REPO_ID_MAX + 1, "%s/%.*s/%s", types[t][1],
				     (int)(sep - rest), rest, sep + 2);
		else
			n = snprintf(out, MFS_REPO_ID_MAX + 1, "%s/%s", types[t][1], rest);
		if (n < 0 || n > MFS_REPO_ID_MAX)
			return mfs_err(err, MFS_E_INVAL, "%s: repo name too long", dirname);
		return mfs_repo_id_check(out, err);
	}
	return mfs_err(err, MFS_E_INVAL, "%s is not a hub cache repo folder (models--ORG--NAME)",
		       dirname);
}

/* --------------------------------------------------------------- pipeline */

typedef struct tensor_state {
	int decided;
	mfs_codec_id codec;
} tensor_state;

typedef struct job {
	/* in */
	uint8_t *raw;
	size_t len;
	mfs_dtype dtype;
	int tensor;             /* index in the file's tensors, -1 for other bytes */
	int first_of_tensor;
	/* out */
	mfs_chunk_key key;
	int exists;
	uint8_t *enc;
	size_t enc_cap, enc_len;
	mfs_codec_id codec;
	int rc;
	int state;              /* 1 queued, 2 done: written under the pool lock */
	int in_flight;          /* submitted and not yet finalised: main thread only */
} job;

typedef struct pool {
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	job **queue;            /* FIFO of queued jobs */
	size_t q_head, q_len, q_cap;
	int stop;
	pthread_t *threads;
	int n_threads;
	mfs_store *store;
	const mfs_ingest_opts *opts;
	tensor_state *tensors;  /* of the file being ingested */
} pool;

static int choose_codec(pool *p, job *j, mfs_codec_ws *ws, mfs_codec_id *out)
{
	mfs_encode_params ep = {.dtype = j->dtype, .zstd_level = p->opts->zstd_level};
	if (p->opts->force_codec >= 0 && j->tensor >= 0) {
		*out = (mfs_codec_id)p->opts->force_codec;
		return 0;
	}
	return mfs_codec_choose(&ep, j->raw, j->len, ws, out, NULL, NULL);
}

/* Encode one chunk, fall back to raw when nothing is gained, and check it decodes. */
static int encode_chunk(pool *p, job *j, mfs_codec_ws *ws)
{
	mfs_encode_params ep = {.dtype = j->dtype, .zstd_level = p->opts->zstd_level};
	int rc = mfs_codec_encode(j->codec, &ep, j->raw, j->len, j->enc, j->enc_cap, &j->enc_len,
				  ws);
	if (rc == MFS_E_UNSUPPORTED) {
		/* a forced codec that does not apply to this dtype: the general one */
		j->codec = MFS_CODEC_ZSTD;
		rc = mfs_codec_encode(j->codec, &ep, j->raw, j->len, j->enc, j->enc_cap,
				      &j->enc_len, ws);
	}
	if (rc < 0)
		return rc;
	if (j->enc_len >= j->len && j->codec != MFS_CODEC_RAW) {
		j->codec = MFS_CODEC_RAW;
		memcpy(j->enc, j->raw, j->len);
		j->enc_len = j->len;
	}
	/* A wrong byte is worse than an error: prove the payload decodes exactly. */
	uint8_t *chk = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_CHUNK, j->len ? j->len : 1);
	if (!chk)
		return -ENOMEM;
	rc = mfs_codec_decode(j->codec, j->enc, j->enc_len, NULL, 0, chk, j->len, ws);
	if (rc < 0 || memcmp(chk, j->raw, j->len) != 0)
		return MFS_E_CORRUPT;
	return 0;
}

static void process_job(pool *p, job *j, mfs_codec_ws *ws)
{
	mfs_chunk_key_of(j->raw, j->len, &j->key);
	mfs_txn *t;
	j->rc = mfs_txn_begin(p->store, MFS_TXN_READ, &t);
	if (j->rc < 0)
		return;
	mfs_chunk_view v;
	int grc = mfs_chunk_get(t, &j->key, &v);
	if (grc == 0) {
		j->exists = 1;
		j->codec = v.codec;
		j->enc_len = v.payload_len;
	}
	mfs_txn_abort(t);
	if (grc < 0 && grc != MFS_E_NOTFOUND) {
		j->rc = grc;
		return;
	}

	/* The tensor's codec is chosen once, on its first chunk (a deterministic sample). */
	tensor_state *ts = j->tensor >= 0 ? &p->tensors[j->tensor] : NULL;
	mfs_codec_id codec = MFS_CODEC_ZSTD;
	if (ts && j->first_of_tensor) {
		if (j->exists)
			codec = j->codec;
		else if ((j->rc = choose_codec(p, j, ws, &codec)) < 0)
			codec = MFS_CODEC_ZSTD;
		pthread_mutex_lock(&p->mu);
		ts->codec = codec;
		ts->decided = 1;
		pthread_cond_broadcast(&p->cv_done);
		pthread_mutex_unlock(&p->mu);
		if (j->rc < 0)
			return;
	} else if (ts && !j->exists) {
		pthread_mutex_lock(&p->mu);
		while (!ts->decided)
			pthread_cond_wait(&p->cv_done, &p->mu);
		codec = ts->codec;
		pthread_mutex_unlock(&p->mu);
	} else if (!ts && !j->exists) {
		if ((j->rc = choose_codec(p, j, ws, &codec)) < 0)
			return;
	}
	if (j->exists)
		return;
	j->codec = codec;
	j->rc = encode_chunk(p, j, ws);
}

static void *worker_main(void *arg)
{
	pool *p = arg;
	mfs_codec_ws *ws = NULL;
	int ws_rc = mfs_codec_ws_create(&ws);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->q_len == 0)
			pthread_cond_wait(&p->cv_work, &p->mu);
		if (p->q_len == 0 && p->stop)
			break;
		job *j = p->queue[p->q_head];
		p->q_head = (p->q_head + 1) % p->q_cap;
		p->q_len--;
		pthread_mutex_unlock(&p->mu);
		if (ws_rc < 0)
			j->rc = ws_rc;
		else
			process_job(p, j, ws);
		pthread_mutex_lock(&p->mu);
		j->state = 2;
		pthread_cond_broadcast(&p->cv_done);
	}
	pthread_mutex_unlock(&p->mu);
	mfs_codec_ws_free(ws);
	return NULL;
}

static void pool_submit(pool *p, job *j)
{
	j->in_flight = 1;
	pthread_mutex_lock(&p->mu);
	j->state = 1;
	p->queue[(p->q_head + p->q_len) % p->q_cap] = j;
	p->q_len++;
	pthread_cond_signal(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
}

static void pool_wait(pool *p, job *j)
{
	pthread_mutex_lock(&p->mu);
	while (j->state == 1)
		pthread_cond_wait(&p->cv_done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------ ingest ctx */

typedef struct ingest_ctx {
	mfs_store *store;
	const mfs_ingest_opts *opts;
	mfs_ingest_stats *stats;
	mfs_errmsg *err;
	pool pool;
	job *ring;
	size_t n_ring;
	mfs_progress progress;
	/* the open write transaction and what it holds */
	mfs_txn *txn;
	uint64_t txn_bytes;
} ingest_ctx;

static int pool_start(ingest_ctx *c)
{
	pool *p = &c->pool;
	memset(p, 0, sizeof *p);
	p->store = c->store;
	p->opts = c->opts;
	int n = c->opts->threads > 0 ? c->opts->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > 256)
		n = 256;
	c->n_ring = 2 * (size_t)n + 2;
	p->q_cap = c->n_ring;
	p->queue = calloc(p->q_cap, sizeof *p->queue);
	c->ring = calloc(c->n_ring, sizeof *c->ring);
	p->threads = calloc((size_t)n, sizeof *p->threads);
	if (!p->queue || !c->ring || !p->threads)
		return -ENOMEM;
	size_t bound = mfs_codec_bound_max(c->opts->chunk_size);
	for (size_t i = 0; i < c->n_ring; i++) {
		c->ring[i].raw = malloc(c->opts->chunk_size);
		c->ring[i].enc = malloc(bound);
		c->ring[i].enc_cap = bound;
		if (!c->ring[i].raw || !c->ring[i].enc)
			return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv_work, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	for (int i = 0; i < n; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
			return -EAGAIN;
		p->n_threads++;
	}
	return 0;
}

static void pool_stop(ingest_ctx *c)
{
	pool *p = &c->pool;
	if (p->n_threads) {
		pthread_mutex_lock(&p->mu);
		p->stop = 1;
		pthread_cond_broadcast(&p->cv_work);
		pthread_mutex_unlock(&p->mu);
		for (int i = 0; i < p->n_threads; i++)
			pthread_join(p->threads[i], NULL);
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv_work);
		pthread_cond_destroy(&p->cv_done);
	}
	for (size_t i = 0; c->ring && i < c->n_ring; i++) {
		free(c->ring[i].raw);
		free(c->ring[i].enc);
	}
	free(c->ring);
	free(p->queue);
	free(p->threads);
}

static int txn_ensure(ingest_ctx *c)
{
	if (c->txn)
		return 0;
	c->txn_bytes = 0;
	return mfs_txn_begin(c->store, MFS_TXN_WRITE, &c->txn);
}

static int txn_commit(ingest_ctx *c)
{
	if (!c->txn)
		return 0;
	int rc = mfs_txn_commit(c->txn);
	c->txn = NULL;
	return rc;
}

/* One file being ingested: its plan and what its chunks produced. */
typedef struct file_state {
	const char *rel;
	mfs_st_header st;
	int is_st;
	mfs_st_span *spans;
	size_t n_spans;
	mfs_extent *extents;
	size_t n_extents, cap_extents;
	mfs_tensor_info *tinfo;
	uint64_t stored;
} file_state;

/* Take a finished job's result: write its chunk, record its extent. */
static int finalize_job(ingest_ctx *c, file_state *fs, job *j, uint64_t off)
{
	pool_wait(&c->pool, j);
	j->in_flight = 0;
	if (j->rc < 0) {
		if (j->rc == MFS_E_CORRUPT)
			return mfs_err(c->err, MFS_E_CORRUPT,
				       "%s: codec %s did not round-trip the chunk at offset %llu "
				       "(an encoder bug: please report it; nothing was stored)",
				       fs->rel, mfs_codec_name(j->codec), (unsigned long long)off);
		return mfs_err(c->err, j->rc, "%s: encoding the chunk at offset %llu failed: %s",
			       fs->rel, (unsigned long long)off, mfs_strerror(j->rc));
	}
	int rc;
	if (!j->exists) {
		if ((rc = txn_ensure(c)) < 0)
			return mfs_err(c->err, rc, "cannot start a store transaction: %s",
				       mfs_strerror(rc));
		int existed = 0;
		rc = mfs_chunk_put(c->txn, &j->key, j->codec, (uint32_t)j->len, NULL, j->enc,
				   j->enc_len, &existed);
		if (rc < 0)
			return mfs_err(c->err, rc, "%s: writing a chunk to the store failed: %s%s",
				       fs->rel, mfs_strerror(rc),
				       rc == -ENOSPC ? " (the disk or the store map is full)" : "");
		if (!existed) {
			c->stats->bytes_new += j->enc_len;
			c->stats->chunks_new++;
			c->txn_bytes += j->enc_len;
		} else {
			c->stats->chunks_dedup++;
		}
	} else {
		c->stats->chunks_dedup++;
	}
	mfs_extent *ext =
	    mfs_grow(fs->extents, &fs->cap_extents, fs->n_extents, sizeof *ext, 16);
	if (!ext)
		return -ENOMEM;
	fs->extents = ext;
	mfs_extent *e = &fs->extents[fs->n_extents++];
	e->off = off;
	e->len = (uint32_t)j->len;
	e->key = j->key;
	fs->stored += j->enc_len;
	if (j->tensor >= 0) {
		mfs_tensor_info *ti = &fs->tinfo[j->tensor];
		ti->stored_len += j->enc_len;
		if (ti->n_extents == 0) {
			ti->first_extent = fs->n_extents - 1;
			ti->codec = c->pool.tensors[j->tensor].codec;
		}
		ti->n_extents++;
	}
	if (c->txn && c->txn_bytes >= TXN_BYTES) {
		if ((rc = txn_commit(c)) < 0)
			return mfs_err(c->err, rc, "committing to the store failed: %s",
				       mfs_strerror(rc));
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return MFS_E_FORMAT; /* the file shrank */
		done += (size_t)n;
	}
	return 0;
}

static int is_lfs_name(const char *rel)
{
	static const char *const exts[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt",
					   ".h5", ".onnx", ".msgpack", ".gguf", ".npz",
					   ".pkl", ".model", ".tflite", ".ot", ".zip",
					   ".tar", ".gz", ".parquet", ".arrow"};
	size_t n = strlen(rel);
	for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
		size_t el = strlen(exts[i]);
		if (n >= el && !strcmp(rel + n - el, exts[i]))
			return 1;
	}
	return 0;
}

static void file_state_free(file_state *fs)
{
	if (fs->is_st)
		mfs_st_header_free(&fs->st);
	free(fs->spans);
	free(fs->extents);
	free(fs->tinfo);
}

/* Plan the file's spans: safetensors tensors + gaps, or one run of bytes. */
static int plan_file(ingest_ctx *c, file_state *fs, int fd, uint64_t size, const char *abs)
{
	size_t rl = strlen(fs->rel);
	int st_name = rl > 12 && !strcmp(fs->rel + rl - 12, ".safetensors");
	if (st_name) {
		uint8_t first8[8];
		uint64_t hlen;
		int rc;
		if (size < 8)
			return mfs_err(c->err, MFS_E_FORMAT,
				       "%s: %llu bytes is too short for a safetensors file (the "
				       "8-byte header length is missing): the file is truncated",
				       fs->rel, (unsigned long long)size);
		if ((rc = read_full(fd, first8, 8, 0)) < 0)
			return mfs_err(c->err, rc, "%s: cannot read: %s", abs, mfs_strerror(rc));
		if ((rc = mfs_st_header_len(first8, size, &hlen, fs->rel, c->err)) < 0)
			return rc;
		char *json = malloc(hlen + 1);
		if (!json)
			return -ENOMEM;
		if ((rc = read_full(fd, json, hlen, 8)) < 0) {
			free(json);
			return mfs_err(c->err, rc, "%s: cannot read the header: %s", abs,
				       mfs_strerror(rc));
		}
		json[hlen] = '\0';
		rc = mfs_st_parse(json, hlen, size, &fs->st, fs->rel, c->err);
		free(json);
		if (rc < 0)
			return rc;
		fs->is_st = 1;
		if ((rc = mfs_st_spans(&fs->st, &fs->spans, &fs->n_spans)) < 0)
			return rc;
		fs->tinfo = calloc(fs->st.n_tensors ? fs->st.n_tensors : 1, sizeof *fs->tinfo);
		if (!fs->tinfo)
			return -ENOMEM;
		for (size_t i = 0; i < fs->st.n_tensors; i++) {
			const mfs_st_tensor *t = &fs->st.tensors[i];
			mfs_tensor_info *ti = &fs->tinfo[i];
			if (strlen(t->name) > MFS_TENSOR_NAME_MAX)
				return mfs_err(c->err, MFS_E_UNSUPPORTED,
					       "%s: tensor name longer than %d bytes: \"%.60s...\"",
					       fs->rel, MFS_TENSOR_NAME_MAX, t->name);
			ti->name = t->name;
			ti->dtype = t->dtype;
			ti->ndim = t->ndim;
			memcpy(ti->shape, t->shape, sizeof ti->shape);
			ti->data_off = t->begin;
			ti->raw_len = t->end - t->begin;
			ti->codec = MFS_CODEC_RAW;
		}
		return 0;
	}
	fs->spans = malloc(sizeof *fs->spans);
	if (!fs->spans)
		return -ENOMEM;
	fs->n_spans = 0;
	if (size > 0) {
		fs->spans[0].off = 0;
		fs->spans[0].len = size;
		fs->spans[0].tensor = -1;
		fs->n_spans = 1;
	}
	return 0;
}

/*
 * Ingest one file into a blob of @p repo.  On success, @p etag holds the
 * blob's etag (given or computed) and the blob is put (not yet visible).
 */
static int ingest_file(ingest_ctx *c, const char *repo, const src_file *sf, char *etag_out)
{
	file_state fs = {.rel = sf->rel};
	int rc;
	/* A blob the store already has for this repo is not read again. */
	if (sf->etag[0]) {
		mfs_txn *t;
		if ((rc = mfs_txn_begin(c->store, MFS_TXN_READ, &t)) < 0)
			return rc;
		mfs_blob_info bi;
		rc = mfs_blob_get(t, repo, sf->etag, &bi, NULL);
		mfs_txn_abort(t);
		if (rc == 0) {
			strcpy(etag_out, sf->etag);
			c->stats->files++;
			c->stats->bytes_in += bi.size;
			c->stats->bytes_stored += bi.stored_bytes;
			c->stats->blobs_skipped++;
			mfs_progress_add(&c->progress, bi.size);
			return 0;
		}
	}
	/* O_NONBLOCK: a FIFO must not hang us; it is refused below. */
	int fd = open(sf->abs, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return mfs_err(c->err, -errno, "%s: cannot open %s: %s%s", sf->rel, sf->abs,
			       strerror(errno),
			       errno == ELOOP ? " (a symlink loop)" : "");
	struct stat st0;
	if (fstat(fd, &st0) < 0 || !S_ISREG(st0.st_mode)) {
		close(fd);
		return mfs_err(c->err, MFS_E_INVAL,
			       "%s: not a regular file (a FIFO, device, socket or directory): "
			       "only regular files can be ingested",
			       sf->rel);
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	uint64_t size = (uint64_t)st0.st_size;
	int need_sha1 = size < LFS_MIN_SIZE && !is_lfs_name(sf->rel);
	if (sf->etag[0])
		need_sha1 = strlen(sf->etag) == 40;
	rc = plan_file(c, &fs, fd, size, sf->abs);
	if (rc < 0)
		goto out;
	c->pool.tensors = calloc(fs.is_st && fs.st.n_tensors ? fs.st.n_tensors : 1,
				 sizeof *c->pool.tensors);
	if (!c->pool.tensors) {
		rc = -ENOMEM;
		goto out;
	}
	mfs_sha256_ctx sha;
	mfs_sha1_ctx sha1;
	mfs_sha256_init(&sha);
	mfs_sha1_init(&sha1);
	if (need_sha1) {
		char hdr[32];
		int hl = snprintf(hdr, sizeof hdr, "blob %llu", (unsigned long long)size);
		mfs_sha1_update(&sha1, hdr, (size_t)hl + 1); /* with its NUL */
	}
	/* Chunks go round the ring in file order; a slot is finalised before reuse. */
	size_t seq = 0;
	uint64_t *slot_off = calloc(c->n_ring, sizeof *slot_off);
	if (!slot_off) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t s = 0; s < fs.n_spans && rc == 0; s++) {
		const mfs_st_span *sp = &fs.spans[s];
		mfs_dtype dt = sp->tensor >= 0 ? fs.st.tensors[sp->tensor].dtype : MFS_DT_UNKNOWN;
		for (uint64_t in = 0; in < sp->len && rc == 0; in += c->opts->chunk_size) {
			job *j = &c->ring[seq % c->n_ring];
			if (j->in_flight)
				rc = finalize_job(c, &fs, j, slot_off[seq % c->n_ring]);
			if (rc < 0)
				break;
			size_t len = (size_t)(sp->len - in < c->opts->chunk_size
						      ? sp->len - in
						      : c->opts->chunk_size);
			uint64_t off = sp->off + in;
			rc = read_full(fd, j->raw, len, off);
			if (rc < 0) {
				rc = mfs_err(c->err, rc,
					     "%s: reading %s at offset %llu failed: %s", sf->rel,
					     sf->abs, (unsigned long long)off,
					     rc == MFS_E_FORMAT
						     ? "the file shrank while being ingested"
						     : mfs_strerror(rc));
				break;
			}
			mfs_sha256_update(&sha, j->raw, len);
			if (need_sha1)
				mfs_sha1_update(&sha1, j->raw, len);
			j->len = len;
			j->dtype = dt;
			j->tensor = sp->tensor;
			j->first_of_tensor = sp->tensor >= 0 && in == 0;
			j->exists = 0;
			j->rc = 0;
			j->enc_len = 0;
			slot_off[seq % c->n_ring] = off;
			pool_submit(&c->pool, j);
			mfs_progress_add(&c->progress, len);
			seq++;
		}
	}
	/* Finalise what is still in flight, in order (on error: just wait for it). */
	size_t first = seq > c->n_ring ? seq - c->n_ring : 0;
	for (size_t q = first; q < seq; q++) {
		job *j = &c->ring[q % c->n_ring];
		if (!j->in_flight)
			continue;
		if (rc == 0)
			rc = finalize_job(c, &fs, j, slot_off[q % c->n_ring]);
		else {
			pool_wait(&c->pool, j);
			j->in_flight = 0;
		}
	}
	free(slot_off);
	if (rc < 0)
		goto out;
	struct stat st1;
	if (fstat(fd, &st1) < 0 || st1.st_size != st0.st_size ||
	    st1.st_mtim.tv_sec != st0.st_mtim.tv_sec ||
	    st1.st_mtim.tv_nsec != st0.st_mtim.tv_nsec) {
		rc = mfs_err(c->err, MFS_E_INVAL,
			     "%s: the file changed while it was being ingested: ingest it again "
			     "once it is complete",
			     sf->rel);
		goto out;
	}
	mfs_blob_rec br = {0};
	mfs_sha256_final(&sha, br.sha256);
	char sha_hex[65], sha1_hex[41];
	mfs_hex(br.sha256, 32, sha_hex);
	if (need_sha1) {
		uint8_t d1[20];
		mfs_sha1_final(&sha1, d1);
		mfs_hex(d1, 20, sha1_hex);
	}
	const char *computed = need_sha1 ? sha1_hex : sha_hex;
	if (sf->etag[0] && strcmp(sf->etag, computed) != 0) {
		rc = mfs_err(c->err, MFS_E_CORRUPT,
			     "%s: blob %s does not match its name (its content hashes to %s): "
			     "the cache copy is damaged; download it again",
			     sf->rel, sf->etag, computed);
		goto out;
	}
	strcpy(etag_out, computed);
	br.etag = etag_out;
	br.size = size;
	br.stored_bytes = fs.stored;
	br.n_extents = fs.n_extents;
	br.extents = fs.extents;
	br.n_tensors = fs.is_st ? fs.st.n_tensors : 0;
	br.tensors = fs.tinfo;
	if ((rc = txn_ensure(c)) < 0)
		goto out;
	rc = mfs_blob_put(c->txn, repo, &br, NULL);
	if (rc < 0) {
		rc = mfs_err(c->err, rc, "%s: writing its record failed: %s", sf->rel,
			     mfs_strerror(rc));
		goto out;
	}
	c->stats->files++;
	c->stats->bytes_in += size;
	c->stats->bytes_stored += fs.stored;
out:
	close(fd);
	free(c->pool.tensors);
	c->pool.tensors = NULL;
	file_state_free(&fs);
	return rc;
}

/* Commit id of a plain folder: SHA-1 over the sorted "path\0etag\n" list. */
static void folder_commit_id(const src_snapshot *sn, char **etags, char out[41])
{
	mfs_sha1_ctx h;
	mfs_sha1_init(&h);
	mfs_sha1_update(&h, "modelfs-folder-v1\n", 18);
	for (size_t i = 0; i < sn->n_files; i++) {
		mfs_sha1_update(&h, sn->files[i].rel, strlen(sn->files[i].rel) + 1);
		mfs_sha1_update(&h, etags[i], strlen(etags[i]));
		mfs_sha1_update(&h, "\n", 1);
	}
	uint8_t d[20];
	mfs_sha1_final(&h, d);
	mfs_hex(d, 20, out);
}

static int ingest_snapshot(ingest_ctx *c, const char *repo, src_snapshot *sn)
{
	int rc = 0;
	char **etags = calloc(sn->n_files ? sn->n_files : 1, sizeof *etags);
	mfs_file_rec *recs = calloc(sn->n_files ? sn->n_files : 1, sizeof *recs);
	if (!etags || !recs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sn->n_files; i++) {
		if ((rc = mfs_repo_path_check(sn->files[i].rel, c->err)) < 0)
			goto out;
		etags[i] = calloc(1, MFS_ETAG_MAX + 1);
		if (!etags[i]) {
			rc = -ENOMEM;
			goto out;
		}
		if ((rc = ingest_file(c, repo, &sn->files[i], etags[i])) < 0)
			goto out;
		recs[i].path = sn->files[i].rel;
		recs[i].etag = etags[i];
		recs[i].mode = sn->files[i].mode;
	}
	char commit[MFS_COMMIT_LEN + 1];
	if (sn->commit[0])
		strcpy(commit, sn->commit);
	else
		folder_commit_id(sn, etags, commit);
	if ((rc = txn_ensure(c)) < 0)
		goto out;
	rc = mfs_snapshot_publish(c->txn, repo, commit, (uint64_t)time(NULL), recs,
				  sn->n_files, (const char *const *)sn->noexist, sn->n_noexist,
				  (const char *const *)sn->refs, sn->n_refs, c->err);
	if (rc < 0)
		goto out;
	/* The snapshot becomes visible here, whole. */
	if ((rc = txn_commit(c)) < 0) {
		mfs_err(c->err, rc, "%s: committing the snapshot failed: %s", repo,
			mfs_strerror(rc));
		goto out;
	}
	c->stats->snapshots++;
out:
	for (size_t i = 0; etags && i < sn->n_files; i++)
		free(etags[i]);
	free(etags);
	free(recs);
	return rc;
}

static uint64_t snapshot_bytes(const src_snapshot *sn)
{
	uint64_t total = 0;
	for (size_t i = 0; i < sn->n_files; i++) {
		struct stat st;
		if (stat(sn->files[i].abs, &st) == 0)
			total += (uint64_t)st.st_size;
	}
	return total;
}

/* One HF cache repo folder (models--org--name): every snapshot in it. */
static int collect_hf_repo(const char *dir, src_snapshot **out, size_t *n_out,
			   mfs_errmsg *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/snapshots", dir);
	DIR *d = opendir(path);
	if (!d)
		return mfs_err(err, -errno, "%s: cannot read %s: %s", dir, path,
			       strerror(errno));
	src_snapshot *snaps = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!is_hex(de->d_name, MFS_COMMIT_LEN)) {
			rc = mfs_err(err, MFS_E_FORMAT,
				     "%s/snapshots/%s: not a 40-hex commit hash: the cache is "
				     "damaged",
				     dir, de->d_name);
			break;
		}
		src_snapshot *more = mfs_grow(snaps, &cap, n, sizeof *more, 16);
		if (!more) {
			rc = -ENOMEM;
			break;
		}
		snaps = more;
		memset(&snaps[n], 0, sizeof snaps[n]);
		strcpy(snaps[n].commit, de->d_name);
		n++;
	}
	closedir(d);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char sdir[4096];
		snprintf(sdir, sizeof sdir, "%s/snapshots/%s", dir, snaps[i].commit);
		struct hf_walk w = {&snaps[i], dir, err};
		rc = walk(sdir, "", 0, NULL, hf_file_fn, &w, err);
		snprintf(sdir, sizeof sdir, "%s/.no_exist/%s", dir, snaps[i].commit);
		struct stat st;
		if (rc == 0 && stat(sdir, &st) == 0 && S_ISDIR(st.st_mode))
			rc = walk(sdir, "", 0, NULL, noexist_fn, &snaps[i], err);
	}
	snprintf(path, sizeof path, "%s/refs", dir);
	struct stat st;
	if (rc == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		struct ref_walk w = {snaps, n, err};
		rc = walk(path, "", 0, NULL, ref_fn, &w, err);
	}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			snapshot_free(&snaps[i]);
		free(snaps);
		return rc;
	}
	*out = snaps;
	*n_out = n;
	return 0;
}

static int ingest_hf_repo(ingest_ctx *c, const char *dir)
{
	const char *base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	char repo[MFS_REPO_ID_MAX + 1];
	int rc = hf_repo_id(base, repo, c->err);
	if (rc < 0)
		return rc;
	src_snapshot *snaps = NULL;
	size_t n = 0;
	if ((rc = collect_hf_repo(dir, &snaps, &n, c->err)) < 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = ingest_snapshot(c, repo, &snaps[i]);
		if (rc < 0)
			mfs_err_prefix(c->err, rc, "%s@%.12s", repo, snaps[i].commit);
	}
	for (size_t i = 0; i < n; i++)
		snapshot_free(&snaps[i]);
	free(snaps);
	return rc;
}

static int is_hf_repo_dir(const char *dir)
{
	const char *base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	char p[4096];
	struct stat st;
	snprintf(p, sizeof p, "%s/snapshots", dir);
	return (!strncmp(base, "models--", 8) || !strncmp(base, "datasets--", 10) ||
		!strncmp(base, "spaces--", 8)) &&
	       stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Total bytes of the HF repo folders under a cache dir (for the progress bar). */
static uint64_t hf_bytes(const char *dir)
{
	src_snapshot *snaps = NULL;
	size_t n = 0;
	uint64_t total = 0;
	if (collect_hf_repo(dir, &snaps, &n, NULL) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		total += snapshot_bytes(&snaps[i]);
		snapshot_free(&snaps[i]);
	}
	free(snaps);
	return total;
}

void mfs_ingest_opts_default(mfs_ingest_opts *o)
{
	memset(o, 0, sizeof *o);
	o->chunk_size = (size_t)1 << 20;
	o->force_codec = -1;
	o->ref = "main";
}

int mfs_ingest_path(mfs_store *s, const char *src_in, const mfs_ingest_opts *opts,
		    mfs_ingest_stats *stats, mfs_errmsg *err)
{
	memset(stats, 0, sizeof *stats);
	size_t cs = opts->chunk_size;
	if (cs < 4096 || cs > MFS_CHUNK_MAX || (cs & (cs - 1)))
		return mfs_err(err, MFS_E_INVAL,
			       "chunk size %zu: must be a power of two from 4 KiB to 64 MiB", cs);
	char src[4096];
	snprintf(src, sizeof src, "%s", src_in);
	size_t sl = strlen(src);
	while (sl > 1 && src[sl - 1] == '/')
		src[--sl] = '\0';
	struct stat st;
	if (stat(src, &st) < 0)
		return mfs_err(err, -errno, "cannot read %s: %s", src, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mfs_err(err, MFS_E_INVAL,
			       "%s is not a directory: give a model folder (with --repo) or a "
			       "Hugging Face cache directory",
			       src);
	int lock_fd = -1;
	int rc = mfs_store_lock_ingest(s, 0, 1, &lock_fd);
	if (rc < 0)
		return mfs_err(err, rc, "cannot take the store's ingest lock: %s",
			       mfs_strerror(rc));
	ingest_ctx c = {.store = s, .opts = opts, .stats = stats, .err = err};
	double t0 = mfs_cli_now();
	if ((rc = pool_start(&c)) < 0) {
		mfs_err(err, rc, "cannot start encoder threads: %s", mfs_strerror(rc));
		goto out;
	}
	if (opts->repo) {
		/* a plain folder */
		if ((rc = mfs_repo_id_check(opts->repo, err)) < 0)
			goto out;
		src_snapshot sn = {0};
		static const char *const skip[] = {".git", ".cache", NULL};
		rc = walk(src, "", 0, skip, folder_file_fn, &sn, err);
		if (rc == 0 && sn.n_files == 0)
			rc = mfs_err(err, MFS_E_INVAL, "%s holds no files to ingest", src);
		if (rc == 0 && opts->ref && (rc = push_str(&sn.refs, &sn.n_refs, &sn.cap_refs,
							   opts->ref)) < 0)
			goto out;
		if (rc == 0) {
			mfs_progress_init(&c.progress, "ingest", snapshot_bytes(&sn), opts->quiet);
			rc = ingest_snapshot(&c, opts->repo, &sn);
		}
		snapshot_free(&sn);
	} else if (is_hf_repo_dir(src)) {
		mfs_progress_init(&c.progress, "ingest", hf_bytes(src), opts->quiet);
		rc = ingest_hf_repo(&c, src);
	} else {
		/* a hub cache: every models--* folder in it */
		DIR *d = opendir(src);
		char **dirs = NULL;
		size_t n = 0, cap = 0;
		struct dirent *de;
		while (d && (de = readdir(d))) {
			char p[4096];
			snprintf(p, sizeof p, "%s/%s", src, de->d_name);
			if (is_hf_repo_dir(p) && (rc = push_str(&dirs, &n, &cap, p)) < 0)
				break;
		}
		if (d)
			closedir(d);
		if (rc == 0 && n == 0)
			rc = mfs_err(err, MFS_E_INVAL,
				     "%s is neither a Hugging Face cache (no models--ORG--NAME "
				     "folders) nor a repo folder: to ingest a plain folder of "
				     "model files, give --repo ORG/NAME",
				     src);
		if (n)
			qsort(dirs, n, sizeof *dirs, cmp_str);
		uint64_t total = 0;
		for (size_t i = 0; i < n; i++)
			total += hf_bytes(dirs[i]);
		mfs_progress_init(&c.progress, "ingest", total, opts->quiet);
		for (size_t i = 0; rc == 0 && i < n; i++)
			rc = ingest_hf_repo(&c, dirs[i]);
		for (size_t i = 0; i < n; i++)
			free(dirs[i]);
		free(dirs);
	}
out:
	if (c.txn) {
		/* what an error left uncommitted is dropped; committed chunks are gc's */
		mfs_txn_abort(c.txn);
		c.txn = NULL;
	}
	mfs_progress_end(&c.progress);
	pool_stop(&c);
	if (rc == 0 && (rc = mfs_store_sync(s)) < 0)
		mfs_err(err, rc, "flushing the store to disk failed: %s", mfs_strerror(rc));
	mfs_store_unlock(lock_fd);
	stats->seconds = mfs_cli_now() - t0;
	return rc;
}
