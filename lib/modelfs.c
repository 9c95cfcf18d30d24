/*
 * modelfs.c - libmodelfs: the public API (include/modelfs.h) over the store
 * (index/), the read path (fs/reader.h) and the safetensors parser.
 *
 * Reads: a read is cut into pieces, one per chunk it touches; the pieces
 * are decoded on the store's worker pool (index/pool.h) and the calling
 * thread, each
 * straight into the caller's buffer when the chunk lies wholly inside it
 * (a tensor's chunks are aligned to its start, so a whole tensor never needs
 * a copy), else into the thread's workspace and copied.  Every decode goes
 * through mfs_rfile_decode_extent, which re-hashes the chunk to its key.
 */
#include "modelfs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "dtype.h"
#include "err.h"
#include "pool.h"
#include "reader.h"
#include "safetensors.h"
#include "store.h"
#include "warm.h"

#ifdef MFS_PROJECT_VERSION_NUMBER
_Static_assert(MFS_PROJECT_VERSION_NUMBER == MODELFS_VERSION_NUMBER,
	       "include/modelfs.h and project(VERSION) in CMakeLists.txt disagree");
#endif
_Static_assert(MODELFS_COMMIT_SIZE == MFS_COMMIT_LEN + 1, "commit buffer size");
_Static_assert(sizeof(size_t) == 8,
	       "64-bit size_t: files over 4 GiB are read in one call");

/* Most decoding threads a store runs (the caller's and the pool's). */
#define POOL_MAX MFS_POOL_MAX_THREADS
/* Text of untrusted names (paths, tensor names, revisions) in messages. */
#define QUOTE_MAX 120
#define QUOTED	  (4 * QUOTE_MAX + 8)

/* ---- versions and errors ---- */

unsigned modelfs_version_number(void)
{
	return MODELFS_VERSION_NUMBER;
}

const char *modelfs_version_string(void)
{
	return MODELFS_VERSION_STRING;
}

const char *modelfs_strerror(int code)
{
	switch (code) {
	case MODELFS_OK:
		return "success";
	case MODELFS_E_INVAL:
		return "invalid argument";
	case MODELFS_E_NOSTORE:
		return "no store";
	case MODELFS_E_NOREPO:
		return "no such repo";
	case MODELFS_E_NOREVISION:
		return "no such revision";
	case MODELFS_E_NOFILE:
		return "no such file";
	case MODELFS_E_NOTENSOR:
		return "no such tensor";
	case MODELFS_E_CORRUPT:
		return "stored data is damaged";
	case MODELFS_E_FORMAT:
		return "not a valid safetensors file";
	case MODELFS_E_NOSPACE:
		return "buffer too small";
	case MODELFS_E_NOMEM:
		return "out of memory";
	case MODELFS_E_IO:
		return "I/O or database error";
	case MODELFS_E_VERSION:
		return "store format of another modelfs version";
	case MODELFS_E_BUSY:
		return "store busy";
	case MODELFS_E_UNSUPPORTED:
		return "not supported by this build or machine";
	}
	return "unknown error";
}

static int fail(modelfs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(modelfs_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

/* The public code for an internal one (codec/err.h or -errno). */
static int code_of(int rc)
{
	switch (rc) {
	case 0:
		return MODELFS_OK;
	case MFS_E_CORRUPT:
		return MODELFS_E_CORRUPT;
	case MFS_E_FORMAT:
		return MODELFS_E_FORMAT;
	case MFS_E_VERSION:
		return MODELFS_E_VERSION;
	case MFS_E_INVAL:
		return MODELFS_E_INVAL;
	case MFS_E_NOSPACE:
		return MODELFS_E_NOSPACE;
	case MFS_E_BUSY:
		return MODELFS_E_BUSY;
	case -ENOMEM:
		return MODELFS_E_NOMEM;
	}
	return MODELFS_E_IO;
}

static const char *quote(const char *s, char *buf)
{
	return mfs_str_quote(s, QUOTE_MAX, buf, QUOTED);
}

/* ---- stores ---- */

struct modelfs_store {
	/* registry: link, identity and references, under registry_mu */
	struct modelfs_store *next;
	dev_t dev;
	ino_t ino;
	unsigned refs; /* modelfs_store_open()s not closed + open files */
	pid_t pid;     /* the process that opened it (see foreign()) */

	mfs_store *st;
	mfs_reader *reader; /* no cache: reads decode into the caller's memory */
	unsigned threads;   /* the caller's thread included */

	pthread_mutex_t mu;
	/* the decoding pool (threads - 1 of them), started on the first read
	 * that has work for it; under mu */
	mfs_pool *pool;
	int pool_tried;
	/* workspaces of calling threads between calls */
	mfs_codec_ws **spare;
	size_t n_spare, cap_spare;
	/* the GPU (batch.h), started on first use; under mu */
	int gpu_mode;  /* MODELFS_GPU_*: host reads */
	int gpu_tried; /* the backend was asked for (gpu NULL: none) */
	mfs_gpu_backend *gpu;
	char gpu_why[256]; /* why there is none */
	char dir[];
};

/*
 * The stores open in this process.  LMDB must not open one environment twice
 * in a process (its file locks belong to the process, and closing a second
 * handle drops those of the first), so this one table, keyed by the
 * directory's device and inode, hands out references to a single handle.
 * It is the library's only state outside the handles (with code_warmed
 * below), and it exists because the constraint it keeps is per process.
 */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static modelfs_store *registry;

/*
 * Once per process: the library's code and that of the libraries it
 * decodes with (their constant tables too) read in one pass each, so that
 * a first read of a cold store does not fault them in page by page behind
 * the payload reads it asked for (fs/warm.h; measured at the mount's first
 * read: 17-33 ms late).  Only these objects: the process is someone else's.
 */
static pthread_once_t code_warmed = PTHREAD_ONCE_INIT;

static void warm_code(void)
{
	mfs_warm_decoders(NULL, 0, NULL);
}

/*
 * Whether @p s was opened by another process: this one is a child forked
 * after the open (a data loader's worker).  Its LMDB environment, read
 * snapshots and decoding threads belong to the parent (LMDB forbids using an
 * environment across fork; the workers did not survive it), so in a child
 * such a handle refuses every call that would touch them (MODELFS_E_INVAL),
 * and closing it frees nothing that is the parent's: ending a read snapshot
 * here would release the parent's LMDB reader slot.  The child opens the
 * store again for itself.
 */
static int foreign(const modelfs_store *s)
{
	return s->pid != getpid();
}

static int foreign_fail(modelfs_error *err)
{
	return fail(err, MODELFS_E_INVAL,
		    "this store handle was opened by another process (this one was "
		    "forked from it): open the store again in this process");
}

static unsigned cpus_usable(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int modelfs_store_default_dir(char *buf, size_t cap, modelfs_error *err)
{
	if (!buf || cap == 0)
		return fail(err, MODELFS_E_INVAL, "no buffer for the store directory");
	buf[0] = '\0';
	const char *env = getenv("MODELFS_STORE");
	if (env && env[0]) {
		if (strlen(env) >= cap)
			return fail(
			    err, MODELFS_E_INVAL,
			    "$MODELFS_STORE is longer than the %zu bytes given for it",
			    cap);
		memcpy(buf, env, strlen(env) + 1);
		return 0;
	}
	if (mfs_store_default_dir(buf, cap) < 0) {
		buf[0] = '\0';
		const char *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
		if ((x && x[0] == '/') || (h && h[0]))
			return fail(
			    err, MODELFS_E_INVAL,
			    "the default store directory is longer than the %zu bytes "
			    "given for it",
			    cap);
		return fail(err, MODELFS_E_INVAL,
			    "no store given and none of MODELFS_STORE, XDG_DATA_HOME and "
			    "HOME is set: name the store directory");
	}
	return 0;
}

static void store_destroy(modelfs_store *s)
{
	mfs_pool_free(s->pool); /* no read runs: the last reference went */
	mfs_gpu_backend_close(s->gpu);
	for (size_t i = 0; i < s->n_spare; i++)
		mfs_codec_ws_free(s->spare[i]);
	free(s->spare);
	mfs_reader_free(s->reader);
	mfs_store_close(s->st);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static void store_unref(modelfs_store *s)
{
	pthread_mutex_lock(&registry_mu);
	int last = --s->refs == 0;
	if (last)
		for (modelfs_store **p = &registry; *p; p = &(*p)->next)
			if (*p == s) {
				*p = s->next;
				break;
			}
	pthread_mutex_unlock(&registry_mu);
	if (last)
		store_destroy(s);
}

static int store_create(const char *dir, const struct stat *st, unsigned threads,
			modelfs_store **out, modelfs_error *err)
{
	size_t n = strlen(dir);
	modelfs_store *s = calloc(1, sizeof(*s) + n + 1);
	if (!s)
		return fail(err, MODELFS_E_NOMEM, "out of memory opening the store %s",
			    dir);
	memcpy(s->dir, dir, n + 1);
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->refs = 1;
	s->pid = getpid();
	s->threads = threads ? threads : cpus_usable();
	if (s->threads > POOL_MAX)
		s->threads = POOL_MAX;
	pthread_mutex_init(&s->mu, NULL);
	mfs_errmsg em = {0};
	/*
	 * With the kernel's read-around on the map (not MFS_STORE_NORDAHEAD, the
	 * mount's choice): a library read takes a file's chunks in order, and a
	 * fault reading the device's window around it (8 MiB on the virtual disks
	 * here) serves the next records too.  Measured on a cold store (the BF16
	 * MiniLM, open + read of every tensor, median of 8): 47 ms this way, 69
	 * ms without read-around with a thread asking for the records ahead
	 * (MADV_WILLNEED), which then gained nothing with read-around on.
	 */
	int rc = mfs_store_open(dir, MFS_STORE_RDONLY, &s->st, &em);
	if (rc < 0) {
		int code = rc == -ENOENT || rc == -EACCES || rc == -EPERM
			       ? MODELFS_E_NOSTORE
			       : code_of(rc);
		if (rc == -ENOENT)
			fail(err, code,
			     "%s holds no modelfs store (no data.mdb): ingest a model "
			     "into it first (modelfs --store %s ingest ...)",
			     dir, dir);
		else
			fail(err, code, "cannot open the store %s: %s", dir,
			     em.msg[0] ? em.msg : mfs_strerror(rc));
		s->st = NULL;
		store_destroy(s);
		return code;
	}
	if ((rc = mfs_reader_create(s->st, NULL, &s->reader)) < 0) {
		store_destroy(s);
		return fail(err, code_of(rc), "cannot open the store %s: %s", dir,
			    mfs_strerror(rc));
	}
	pthread_once(&code_warmed, warm_code);
	*out = s;
	return 0;
}

int modelfs_store_open(const char *dir, unsigned threads, modelfs_store **out,
		       modelfs_error *err)
{
	if (!out)
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_store_open: no place for the handle");
	*out = NULL;
	char def[4096];
	if (!dir || !dir[0]) {
		int rc = modelfs_store_default_dir(def, sizeof(def), err);
		if (rc < 0)
			return rc;
		dir = def;
	}
	struct stat st;
	if (stat(dir, &st) < 0) {
		int e = errno;
		return fail(
		    err, MODELFS_E_NOSTORE, "no store at %s: %s%s", dir, strerror(e),
		    e == ENOENT ? " (give the store directory, or set MODELFS_STORE)"
				: "");
	}
	if (!S_ISDIR(st.st_mode))
		return fail(
		    err, MODELFS_E_NOSTORE,
		    "no store at %s: it is not a directory (a store is the directory "
		    "holding data.mdb)",
		    dir);
	pthread_mutex_lock(&registry_mu);
	for (modelfs_store *s = registry; s; s = s->next)
		if (s->dev == st.st_dev && s->ino == st.st_ino && !foreign(s)) {
			s->refs++;
			pthread_mutex_unlock(&registry_mu);
			*out = s;
			return 0;
		}
	/* opened under the lock: two threads opening one directory get one handle */
	modelfs_store *s = NULL;
	int rc = store_create(dir, &st, threads, &s, err);
	if (rc == 0) {
		s->next = registry;
		registry = s;
		*out = s;
	}
	pthread_mutex_unlock(&registry_mu);
	return rc;
}

void modelfs_store_close(modelfs_store *s)
{
	if (s && !foreign(s))
		store_unref(s);
}

const char *modelfs_store_dir(const modelfs_store *s)
{
	return s->dir;
}

unsigned modelfs_store_threads(const modelfs_store *s)
{
	return s->threads;
}

/* ---- the GPU ---- */

/* The backend's line when a failure turns it off: the store has no log,
 * so it goes to stderr, once. */
static void gpu_log(void *ud, const char *line)
{
	modelfs_store *s = ud;
	fprintf(stderr, "modelfs: %s (store %s)\n", line, s->dir);
}

/* The store's GPU backend, started on the first call; NULL (and s->gpu_why)
 * when there is none or it turned itself off. */
static mfs_gpu_backend *store_gpu(modelfs_store *s)
{
	pthread_mutex_lock(&s->mu);
	if (!s->gpu_tried) {
		s->gpu_tried = 1;
		if (mfs_gpu_backend_open(0, gpu_log, s, &s->gpu, s->gpu_why,
					 sizeof(s->gpu_why)) < 0)
			s->gpu = NULL;
	}
	mfs_gpu_backend *g = s->gpu;
	if (g && !mfs_gpu_backend_usable(g)) {
		snprintf(
		    s->gpu_why, sizeof(s->gpu_why),
		    "the GPU failed earlier in this process (see the line it logged)");
		g = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	return g;
}

static int no_gpu(modelfs_store *s, modelfs_error *err)
{
	return fail(err, MODELFS_E_UNSUPPORTED, "no GPU decode for the store %s: %s",
		    s->dir, s->gpu_why);
}

int modelfs_store_set_gpu(modelfs_store *s, int mode, modelfs_error *err)
{
	if (!s || mode < MODELFS_GPU_OFF || mode > MODELFS_GPU_ON)
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_store_set_gpu: no store, or a mode other than "
			    "MODELFS_GPU_OFF, _AUTO, _ON");
	if (foreign(s))
		return foreign_fail(err);
	if (mode == MODELFS_GPU_ON && !store_gpu(s))
		return no_gpu(s, err);
	__atomic_store_n(&s->gpu_mode, mode, __ATOMIC_RELAXED);
	return 0;
}

int modelfs_store_gpu(modelfs_store *s, char *name, size_t cap, modelfs_error *err)
{
	if (!s)
		return fail(err, MODELFS_E_INVAL, "modelfs_store_gpu: no store");
	if (foreign(s))
		return foreign_fail(err);
	if (name && cap)
		name[0] = '\0';
	mfs_gpu_backend *g = store_gpu(s);
	if (!g)
		return no_gpu(s, err);
	if (name && cap)
		snprintf(name, cap, "%s", mfs_gpu_backend_name(g));
	return 0;
}

/* ---- names ---- */

/* A repo id as the store keeps it: "org/name" -> "models/org/name". */
static int repo_id(const char *arg, char out[MFS_REPO_ID_MAX + 1], modelfs_error *err)
{
	if (!arg || !arg[0])
		return fail(err, MODELFS_E_INVAL, "no repo id given (\"org/name\")");
	mfs_errmsg em = {0};
	char q[QUOTED];
	if (mfs_repo_id_expand(arg, out, &em) < 0)
		return fail(err, MODELFS_E_INVAL, "invalid repo id \"%s\": %s",
			    quote(arg, q),
			    em.msg[0] ? em.msg : "see modelfs ingest --help");
	return 0;
}

static int txn_read(modelfs_store *s, mfs_txn **t, modelfs_error *err)
{
	if (foreign(s))
		return foreign_fail(err);
	int rc = mfs_txn_begin(s->st, MFS_TXN_READ, t);
	if (rc < 0)
		return fail(err, code_of(rc), "cannot read the store %s: %s", s->dir,
			    mfs_strerror(rc));
	return 0;
}

static int repo_exists(mfs_txn *t, modelfs_store *s, const char *repo, modelfs_error *err)
{
	mfs_repo_info ri;
	int rc = mfs_repo_get(t, repo, &ri);
	if (rc == MFS_E_NOTFOUND)
		return fail(
		    err, MODELFS_E_NOREPO,
		    "no repo %s in the store %s (`modelfs ls` lists them; `modelfs "
		    "ingest` adds one)",
		    repo, s->dir);
	if (rc < 0)
		return fail(
		    err, code_of(rc),
		    "%s: its repos record cannot be read (%s): run `modelfs verify`",
		    repo, mfs_strerror(rc));
	return 0;
}

struct ref_names {
	char text[256];
	size_t len;
};

static int ref_names_fn(void *ud, const mfs_ref_info *r)
{
	struct ref_names *rn = ud;
	char q[QUOTED];
	int n = snprintf(rn->text + rn->len, sizeof(rn->text) - rn->len, "%s%s",
			 rn->len ? ", " : "", quote(r->name, q));
	if (n < 0 || (size_t)n >= sizeof(rn->text) - rn->len) {
		rn->len = sizeof(rn->text) - 1;
		return 1;
	}
	rn->len += (size_t)n;
	return 0;
}

/* Resolve @p rev of @p repo (store form) in @p t. */
static int resolve_in(mfs_txn *t, modelfs_store *s, const char *repo, const char *rev,
		      char commit[MFS_COMMIT_LEN + 1], modelfs_error *err)
{
	int rc = repo_exists(t, s, repo, err);
	if (rc < 0)
		return rc;
	char q[QUOTED];
	if (rev && !rev[0])
		return fail(err, MODELFS_E_INVAL,
			    "%s: an empty revision (give a ref or a commit)", repo);
	if (rev && strlen(rev) > MFS_REF_MAX && !mfs_commit_ok(rev))
		return fail(err, MODELFS_E_NOREVISION, "%s has no ref or commit \"%s\"",
			    repo, quote(rev, q));
	if (mfs_ref_get(t, repo, rev ? rev : "main", commit) == 0)
		return 0;
	if (!rev || mfs_commit_ok(rev)) {
		rc = mfs_commit_pick(t, repo, rev, commit);
		if (rc == 0)
			return 0;
		if (rc != MFS_E_NOTFOUND)
			return fail(err, code_of(rc),
				    "%s: its commits cannot be read (%s): run `modelfs "
				    "verify`",
				    repo, mfs_strerror(rc));
	}
	if (!rev)
		return fail(err, MODELFS_E_NOREVISION, "%s has no snapshot", repo);
	struct ref_names rn = {.len = 0};
	rn.text[0] = '\0';
	mfs_refs_foreach(t, repo, ref_names_fn, &rn);
	return fail(err, MODELFS_E_NOREVISION,
		    "%s has no ref or commit \"%s\" (its refs: %s)", repo, quote(rev, q),
		    rn.len ? rn.text : "none");
}

int modelfs_resolve(modelfs_store *s, const char *repo, const char *revision,
		    char commit[MODELFS_COMMIT_SIZE], modelfs_error *err)
{
	if (!s || !commit)
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_resolve: no store or no buffer");
	commit[0] = '\0';
	char id[MFS_REPO_ID_MAX + 1];
	mfs_txn *t;
	int rc = repo_id(repo, id, err);
	if (rc < 0 || (rc = txn_read(s, &t, err)) < 0)
		return rc;
	rc = resolve_in(t, s, id, revision, commit, err);
	mfs_txn_abort(t);
	return rc;
}

/* ---- lists ---- */

/* Strings of a list live in blocks that never move. */
typedef struct str_block {
	struct str_block *next;
	size_t used, cap;
	char data[];
} str_block;

struct modelfs_list {
	size_t n, cap;
	modelfs_entry *e;
	str_block *blocks;
};

size_t modelfs_list_count(const modelfs_list *l)
{
	return l ? l->n : 0;
}

const modelfs_entry *modelfs_list_get(const modelfs_list *l, size_t i)
{
	return l && i < l->n ? &l->e[i] : NULL;
}

void modelfs_list_free(modelfs_list *l)
{
	if (!l)
		return;
	for (str_block *b = l->blocks, *nb; b; b = nb) {
		nb = b->next;
		free(b);
	}
	free(l->e);
	free(l);
}

static const char *list_str(modelfs_list *l, const char *s)
{
	size_t n = strlen(s) + 1;
	str_block *b = l->blocks;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 16384 ? n : 16384;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->used = 0;
		b->cap = cap;
		b->next = l->blocks;
		l->blocks = b;
	}
	char *p = b->data + b->used;
	memcpy(p, s, n);
	b->used += n;
	return p;
}

/* A new entry, zeroed; NULL when out of memory. */
static modelfs_entry *list_add(modelfs_list *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		modelfs_entry *e = realloc(l->e, cap * sizeof(*e));
		if (!e)
			return NULL;
		l->e = e;
		l->cap = cap;
	}
	modelfs_entry *e = &l->e[l->n++];
	memset(e, 0, sizeof(*e));
	return e;
}

struct list_ctx {
	modelfs_list *l;
	mfs_txn *t;
	const char *repo;
	const char *commit; /* files: the list's copy */
};

#define LIST_NOMEM 1 /* a callback's stop value: out of memory */

static int repos_fn(void *ud, const mfs_repo_info *r)
{
	struct list_ctx *c = ud;
	modelfs_entry *e = list_add(c->l);
	if (!e || !(e->name = list_str(c->l, r->repo)))
		return LIST_NOMEM;
	e->time = r->updated;
	return 0;
}

static int refs_fn(void *ud, const mfs_ref_info *r)
{
	struct list_ctx *c = ud;
	modelfs_entry *e = list_add(c->l);
	if (!e || !(e->name = list_str(c->l, r->name)) ||
	    !(e->commit = list_str(c->l, r->commit)))
		return LIST_NOMEM;
	return 0;
}

static int snapshots_fn(void *ud, const mfs_commit_info *ci)
{
	struct list_ctx *c = ud;
	modelfs_entry *e = list_add(c->l);
	if (!e || !(e->name = list_str(c->l, ci->commit)))
		return LIST_NOMEM;
	e->time = ci->time;
	e->size = ci->n_files;
	return 0;
}

static int files_fn(void *ud, const mfs_file_info *f)
{
	struct list_ctx *c = ud;
	modelfs_entry *e = list_add(c->l);
	if (!e || !(e->name = list_str(c->l, f->path)) ||
	    !(e->etag = list_str(c->l, f->etag)))
		return LIST_NOMEM;
	e->commit = c->commit;
	e->mode = f->mode;
	mfs_blob_info bi;
	int rc = mfs_blob_get(c->t, c->repo, f->etag, &bi, NULL);
	if (rc < 0) /* a file whose blob is not stored: the index is damaged */
		return rc == MFS_E_NOTFOUND ? MFS_E_CORRUPT : rc;
	e->size = bi.size;
	return 0;
}

static int newest_first(const void *a, const void *b)
{
	const modelfs_entry *x = a, *y = b;
	if (x->time != y->time)
		return x->time > y->time ? -1 : 1;
	return strcmp(x->name, y->name);
}

enum list_kind { LIST_REPOS, LIST_REFS, LIST_SNAPSHOTS, LIST_FILES };

static int list_make(modelfs_store *s, enum list_kind kind, const char *repo_arg,
		     const char *rev, modelfs_list **out, modelfs_error *err)
{
	if (!out)
		return fail(err, MODELFS_E_INVAL, "no place for the list");
	*out = NULL;
	if (!s)
		return fail(err, MODELFS_E_INVAL, "no store");
	char repo[MFS_REPO_ID_MAX + 1] = "", commit[MFS_COMMIT_LEN + 1];
	int rc;
	if (kind != LIST_REPOS && (rc = repo_id(repo_arg, repo, err)) < 0)
		return rc;
	mfs_txn *t;
	if ((rc = txn_read(s, &t, err)) < 0)
		return rc;
	modelfs_list *l = calloc(1, sizeof(*l));
	if (!l) {
		mfs_txn_abort(t);
		return fail(err, MODELFS_E_NOMEM, "out of memory listing the store");
	}
	struct list_ctx c = {.l = l, .t = t, .repo = repo};
	const char *what = "repos";
	int pub = 0; /* the repo or revision lookup failed: err says why */
	switch (kind) {
	case LIST_REPOS:
		rc = mfs_repos_foreach(t, repos_fn, &c);
		break;
	case LIST_REFS:
		what = "refs";
		if ((pub = repo_exists(t, s, repo, err)) == 0)
			rc = mfs_refs_foreach(t, repo, refs_fn, &c);
		break;
	case LIST_SNAPSHOTS:
		what = "commits";
		if ((pub = repo_exists(t, s, repo, err)) == 0)
			rc = mfs_commits_foreach(t, repo, snapshots_fn, &c);
		break;
	case LIST_FILES:
		what = "files";
		if ((pub = resolve_in(t, s, repo, rev, commit, err)) == 0) {
			if (!(c.commit = list_str(l, commit)))
				rc = LIST_NOMEM;
			else
				rc = mfs_files_foreach(t, repo, commit, files_fn, &c);
		}
		break;
	}
	mfs_txn_abort(t);
	if (pub < 0)
		rc = pub;
	else if (rc == LIST_NOMEM)
		rc = fail(err, MODELFS_E_NOMEM, "out of memory listing the %s of %s",
			  what, repo[0] ? repo : s->dir);
	else if (rc < 0)
		rc = fail(err, code_of(rc),
			  "the %s of %s cannot be read (%s): run `modelfs verify`", what,
			  repo[0] ? repo : s->dir, mfs_strerror(rc));
	if (rc < 0) {
		modelfs_list_free(l);
		return rc;
	}
	if (kind == LIST_SNAPSHOTS)
		qsort(l->e, l->n, sizeof(*l->e), newest_first);
	*out = l;
	return 0;
}

int modelfs_list_repos(modelfs_store *s, modelfs_list **out, modelfs_error *err)
{
	return list_make(s, LIST_REPOS, NULL, NULL, out, err);
}

int modelfs_list_refs(modelfs_store *s, const char *repo, modelfs_list **out,
		      modelfs_error *err)
{
	return list_make(s, LIST_REFS, repo, NULL, out, err);
}

int modelfs_list_snapshots(modelfs_store *s, const char *repo, modelfs_list **out,
			   modelfs_error *err)
{
	return list_make(s, LIST_SNAPSHOTS, repo, NULL, out, err);
}

int modelfs_list_files(modelfs_store *s, const char *repo, const char *revision,
		       modelfs_list **out, modelfs_error *err)
{
	return list_make(s, LIST_FILES, repo, revision, out, err);
}

/* ---- files ---- */

struct modelfs_file {
	modelfs_store *s; /* one reference */
	mfs_rfile *rf;	  /* its own read snapshot of the store */
	char repo[MFS_REPO_ID_MAX + 1];
	char commit[MFS_COMMIT_LEN + 1];
	char path[MFS_PATH_MAX + 1];
	/* tensors: from the header, when the file is a .safetensors file */
	int tensors_rc; /* 0, or why there are none: tensors_msg */
	char tensors_msg[MODELFS_ERROR_MAX];
	mfs_st_header hdr;	 /* tensors by offset (names and shapes live here) */
	modelfs_tensor *tensors; /* hdr.n_tensors, by name */
	char *metadata;		 /* "__metadata__" as JSON, or NULL */
};

uint64_t modelfs_file_size(const modelfs_file *f)
{
	return f->rf->size;
}

const char *modelfs_file_repo(const modelfs_file *f)
{
	return f->repo;
}

const char *modelfs_file_commit(const modelfs_file *f)
{
	return f->commit;
}

const char *modelfs_file_path(const modelfs_file *f)
{
	return f->path;
}

const char *modelfs_file_etag(const modelfs_file *f)
{
	return f->rf->etag;
}

void modelfs_file_sha256(const modelfs_file *f, uint8_t out[32])
{
	memcpy(out, f->rf->sha256, 32);
}

/* The tensor whose bytes hold file offset @p off, or NULL. */
static const mfs_st_tensor *tensor_at(const modelfs_file *f, uint64_t off)
{
	size_t lo = 0, hi = f->tensors ? f->hdr.n_tensors : 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const mfs_st_tensor *t = &f->hdr.tensors[mid];
		if (off < t->begin)
			hi = mid;
		else if (off >= t->end)
			lo = mid + 1;
		else
			return t;
	}
	return NULL;
}

/* ---- the decoding pool ---- */

/* A piece of a read: bytes [in, in + n) of one extent, going to dst. */
typedef struct piece {
	uint8_t *dst;
	size_t ext;
	uint32_t in, n;
} piece;

/* One call's pieces, claimed one at a time by the caller and the pool
 * tasks it submitted (its helpers, all in one group). */
typedef struct read_job {
	modelfs_file *f;
	const piece *p;
	size_t n;
	size_t next; /* the next piece to claim (atomic) */
	int failed;  /* a piece failed: the rest are skipped (atomic) */
	int rc;	     /* the failure of the lowest failing piece; under s->mu */
	size_t bad;  /* its index */
	mfs_pool_group helpers;
} read_job;

/*
 * Fault in the pages of a destination before a chunk is decoded into it, in
 * one call (MADV_POPULATE_WRITE, Linux 5.14): a fresh buffer (a tensor just
 * allocated) is otherwise faulted in one 4 KiB page at a time by the
 * decoder's stores, and on the virtual machines we measure each of those
 * faults costs more than decoding the page's bytes.  Only whole pages inside
 * the range are touched, so the caller's neighbouring memory is left alone;
 * a kernel without it (EINVAL) or memory that is not anonymous is left to
 * the decoder.  Writing is what the decode does anyway.
 */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define POPULATE_MIN ((size_t)64 << 10)

static void populate(void *dst, size_t len)
{
	if (len < POPULATE_MIN)
		return;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)dst + page - 1) & ~(page - 1);
	uintptr_t e = ((uintptr_t)dst + len) & ~(page - 1);
	unsigned char first;
	/* a buffer read into before is populated already: walking its page
	 * table again cost 8% of a read here; one page tells */
	if (e > a && !(mincore((void *)a, page, &first) == 0 && (first & 1)))
		madvise((void *)a, e - a, MADV_POPULATE_WRITE);
}

static int piece_run(modelfs_file *f, const piece *p, mfs_codec_ws *ws)
{
	const mfs_extent *e = &f->rf->extents[p->ext];
	populate(p->dst, p->n);
	if (p->in == 0 && p->n == e->len)
		return mfs_rfile_decode_extent(f->rf, p->ext, p->dst, ws);
	uint8_t *tmp = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_CHUNK, e->len ? e->len : 1);
	if (!tmp)
		return -ENOMEM;
	int rc = mfs_rfile_decode_extent(f->rf, p->ext, tmp, ws);
	if (rc == 0)
		memcpy(p->dst, tmp + p->in, p->n);
	return rc;
}

/* Claim and decode pieces of @p j until none is left. */
static void run_pieces(modelfs_store *s, read_job *j, mfs_codec_ws *ws)
{
	for (;;) {
		size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (i >= j->n)
			break;
		if (__atomic_load_n(&j->failed, __ATOMIC_RELAXED))
			continue;
		int rc = piece_run(j->f, &j->p[i], ws);
		if (rc < 0) {
			__atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
			pthread_mutex_lock(&s->mu);
			if (j->rc == 0 || i < j->bad) {
				j->rc = rc;
				j->bad = i;
			}
			pthread_mutex_unlock(&s->mu);
		}
	}
}

/* A helper on a pool thread: claim pieces with that thread's workspace. */
static void helper_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	read_job *j = t->arg;
	run_pieces(j->f->s, j, ws);
}

/*
 * The store's pool, started on first use: threads - 1 workers, or fewer
 * when the system will not start that many (fewer is not an error; with
 * none, callers decode alone).
 */
static mfs_pool *store_pool(modelfs_store *s)
{
	pthread_mutex_lock(&s->mu);
	if (!s->pool_tried) {
		s->pool_tried = 1;
		for (unsigned k = s->threads - 1; k && mfs_pool_create(k, &s->pool) < 0;
		     k /= 2)
			;
	}
	mfs_pool *p = s->pool;
	pthread_mutex_unlock(&s->mu);
	return p;
}

static mfs_codec_ws *ws_take(modelfs_store *s)
{
	mfs_codec_ws *ws = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->n_spare)
		ws = s->spare[--s->n_spare];
	pthread_mutex_unlock(&s->mu);
	if (!ws && mfs_codec_ws_create(&ws) < 0)
		return NULL;
	return ws;
}

static void ws_give(modelfs_store *s, mfs_codec_ws *ws)
{
	pthread_mutex_lock(&s->mu);
	if (s->n_spare == s->cap_spare) {
		size_t cap = s->cap_spare ? s->cap_spare * 2 : 8;
		mfs_codec_ws **p = realloc(s->spare, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&s->mu);
			mfs_codec_ws_free(ws);
			return;
		}
		s->spare = p;
		s->cap_spare = cap;
	}
	s->spare[s->n_spare++] = ws;
	pthread_mutex_unlock(&s->mu);
}

/*
 * Decode @p n pieces of @p f: with the pool when there is more than one,
 * the calling thread taking pieces too, so a call always progresses even
 * when every worker serves another caller.
 * @param[out] bad  the lowest failing piece
 */
static int pieces_run(modelfs_file *f, const piece *p, size_t n, size_t *bad)
{
	modelfs_store *s = f->s;
	mfs_codec_ws *ws = ws_take(s);
	if (!ws)
		return -ENOMEM;
	read_job j = {.f = f, .p = p, .n = n, .helpers = MFS_POOL_GROUP_INIT};
	mfs_pool *pool = n > 1 && s->threads > 1 ? store_pool(s) : NULL;
	mfs_pool_task helper[POOL_MAX - 1]; /* the pool has at most threads - 1 */
	size_t n_helpers = 0;
	if (pool) {
		unsigned w = mfs_pool_threads(pool);
		size_t want = n - 1 < w ? n - 1 : w;
		for (; n_helpers < want; n_helpers++) {
			helper[n_helpers] = (mfs_pool_task){
			    .run = helper_run, .arg = &j, .group = &j.helpers};
			if (mfs_pool_submit(pool, &helper[n_helpers]) < 0)
				break;
		}
	}
	run_pieces(s, &j, ws);
	if (n_helpers) {
		/* every piece is claimed: helpers that have not started would find
		 * none, so they go; the running ones finish their last piece */
		mfs_pool_cancel(pool, &j.helpers);
		mfs_pool_wait(pool, &j.helpers);
	}
	ws_give(s, ws);
	*bad = j.bad;
	return j.rc;
}

/* ---- reads ---- */

typedef struct span {
	uint64_t off;
	size_t len;
	uint8_t *dst;
} span;

static int span_by_off(const void *a, const void *b)
{
	const span *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Say which chunk failed, where, and what to do. */
static int read_failed(modelfs_file *f, const piece *p, int rc, modelfs_error *err)
{
	const mfs_extent *e = &f->rf->extents[p->ext];
	uint64_t at = e->off + p->in;
	char where[QUOTED + 64] = "", q[QUOTED], path[QUOTED];
	const mfs_st_tensor *t = tensor_at(f, at);
	if (t)
		snprintf(where, sizeof(where), " (tensor \"%s\")", quote(t->name, q));
	if (rc != MFS_E_CORRUPT && rc != MFS_E_NOTFOUND)
		return fail(err, code_of(rc), "%s %s: reading offset %llu%s failed: %s",
			    f->repo, quote(f->path, path), (unsigned long long)at, where,
			    mfs_strerror(rc));
	char why[400];
	mfs_rfile_explain(f->rf, p->ext, why, sizeof(why));
	return fail(
	    err, MODELFS_E_CORRUPT,
	    "%s %s (commit %.12s): the bytes at offset %llu%s are damaged: %s %s; run "
	    "`modelfs verify %s`",
	    f->repo, quote(f->path, path), f->commit, (unsigned long long)at, where, why,
	    rc == MFS_E_NOTFOUND ? "is not in the store" : "fails its check", f->repo);
}

/*
 * Check @p n spans of @p f, sort them by offset and cut them into pieces,
 * one per chunk each touches, in file order.
 * @param[out] out  malloc'd (NULL when there are none), @p np of them
 */
static int spans_pieces(modelfs_file *f, span *sp, size_t n, piece **out, size_t *np_out,
			modelfs_error *err)
{
	char path[QUOTED];
	*out = NULL;
	*np_out = 0;
	if (foreign(f->s))
		return foreign_fail(err);
	for (size_t i = 0; i < n; i++)
		if (sp[i].off > f->rf->size || sp[i].len > f->rf->size - sp[i].off ||
		    (sp[i].len && !sp[i].dst))
			return fail(err, MODELFS_E_INVAL,
				    "%s %s: cannot read %zu bytes at offset %llu: %s",
				    f->repo, quote(f->path, path), sp[i].len,
				    (unsigned long long)sp[i].off,
				    sp[i].len && !sp[i].dst
					? "no buffer given"
					: "the range runs past the end of the file");
	if (n > 1)
		qsort(sp, n, sizeof(*sp), span_by_off);
	/* one piece per chunk each range touches, in file order */
	size_t np = 0, cap = 0;
	piece *p = NULL;
	const mfs_extent *ext = f->rf->extents;
	size_t n_ext = f->rf->n_extents;
	for (size_t i = 0; i < n; i++) {
		uint64_t off = sp[i].off, end = sp[i].off + sp[i].len;
		uint8_t *dst = sp[i].dst;
		for (size_t k = sp[i].len ? mfs_extent_find(ext, n_ext, off) : n_ext;
		     k < n_ext && off < end; k++) {
			if (np == cap) {
				size_t nc = cap ? cap * 2 : 64;
				piece *pp = realloc(p, nc * sizeof(*pp));
				if (!pp) {
					free(p);
					return fail(err, MODELFS_E_NOMEM,
						    "out of memory reading %s %s",
						    f->repo, quote(f->path, path));
				}
				p = pp;
				cap = nc;
			}
			uint64_t in = off - ext[k].off;
			uint64_t take = ext[k].len - in;
			if (take > end - off)
				take = end - off;
			p[np++] = (piece){.dst = dst,
					  .ext = k,
					  .in = (uint32_t)in,
					  .n = (uint32_t)take};
			dst += take;
			off += take;
		}
		if (off < end) { /* extents that do not tile the file */
			free(p);
			return fail(
			    err, MODELFS_E_CORRUPT,
			    "%s %s: the store's extents of it end before offset %llu: "
			    "its blob record is damaged; run `modelfs verify %s`",
			    f->repo, quote(f->path, path), (unsigned long long)off,
			    f->repo);
		}
	}
	*out = p;
	*np_out = np;
	return 0;
}

/*
 * Hand the pieces that are whole chunks to the GPU backend (one batch,
 * mfs_rfile_decode_batch) and drop the ones it decoded (verified) from
 * @p p; into host destinations or, with @p device, device ones.
 * @return the pieces left for the CPU (at the front of @p p, in order)
 */
static size_t gpu_pieces(modelfs_file *f, mfs_gpu_backend *g, piece *p, size_t np,
			 int device)
{
	mfs_rfile_batch_item *it = malloc(np * sizeof(*it));
	size_t *at = malloc(np * sizeof(*at));
	size_t m = 0;
	if (it && at) {
		for (size_t i = 0; i < np; i++)
			if (p[i].in == 0 && p[i].n == f->rf->extents[p[i].ext].len) {
				it[m] =
				    (mfs_rfile_batch_item){.ext = p[i].ext,
							   .dst = p[i].dst,
							   .status = MFS_E_UNSUPPORTED};
				at[m++] = i;
			}
		if (m && mfs_rfile_decode_batch(f->rf, g, it, m, device) == 0) {
			for (size_t k = 0; k < m; k++)
				if (it[k].status == 0)
					p[at[k]].n = UINT32_MAX; /* decoded: drop */
			size_t kept = 0;
			for (size_t i = 0; i < np; i++)
				if (p[i].n != UINT32_MAX)
					p[kept++] = p[i];
			np = kept;
		}
	}
	free(it);
	free(at);
	return np;
}

/*
 * Before a read of several chunks: ask the disk for their pack entries, per
 * run of adjacent extents (pieces are in file order), so a cold store is
 * read ahead of the decoders instead of each waiting for its own entry.
 */
#define ASK_DISK_MIN 4 /* pieces: below, the decoders' own reads are as quick */

static void ask_disk(modelfs_file *f, const piece *p, size_t np)
{
	if (np < ASK_DISK_MIN)
		return;
	size_t a = p[0].ext, b = a + 1;
	for (size_t i = 1; i <= np; i++) {
		if (i < np && p[i].ext <= b) {
			if (p[i].ext == b)
				b++;
			continue;
		}
		mfs_rfile_will_need(f->rf, a, b);
		if (i < np) {
			a = p[i].ext;
			b = a + 1;
		}
	}
}

static int read_spans(modelfs_file *f, span *sp, size_t n, modelfs_error *err)
{
	piece *p;
	size_t np;
	int rc = spans_pieces(f, sp, n, &p, &np, err);
	if (rc < 0)
		return rc;
	if (np && __atomic_load_n(&f->s->gpu_mode, __ATOMIC_RELAXED) != MODELFS_GPU_OFF) {
		mfs_gpu_backend *g = store_gpu(f->s);
		if (g)
			np = gpu_pieces(f, g, p, np, 0);
	}
	ask_disk(f, p, np);
	size_t bad = 0;
	rc = np ? pieces_run(f, p, np, &bad) : 0;
	if (rc < 0)
		rc = read_failed(f, &p[bad], rc, err);
	free(p);
	return rc;
}

/* read_spans() into device memory (modelfs_file_read_ranges_device). */
static int read_spans_device(modelfs_file *f, span *sp, size_t n, modelfs_error *err)
{
	char path[QUOTED];
	if (foreign(f->s))
		return foreign_fail(err);
	mfs_gpu_backend *g = store_gpu(f->s);
	if (!g)
		return no_gpu(f->s, err);
	for (size_t i = 0; i < n; i++)
		if (sp[i].len && sp[i].dst &&
		    !mfs_gpu_backend_is_device_ptr(g, sp[i].dst))
			return fail(
			    err, MODELFS_E_INVAL,
			    "%s %s: the destination of %zu bytes at offset %llu is not "
			    "memory of the CUDA device %s (allocate it there, or read "
			    "into host memory with modelfs_file_read_ranges)",
			    f->repo, quote(f->path, path), sp[i].len,
			    (unsigned long long)sp[i].off, mfs_gpu_backend_name(g));
	piece *p;
	size_t np;
	int rc = spans_pieces(f, sp, n, &p, &np, err);
	if (rc < 0)
		return rc;
	np = np ? gpu_pieces(f, g, p, np, 1) : 0;
	/* the rest is decoded on the CPU into host memory, then copied over */
	size_t total = 0;
	for (size_t i = 0; i < np; i++)
		total += p[i].n;
	uint8_t *stage = np ? malloc(total ? total : 1) : NULL;
	piece *hp = np ? malloc(np * sizeof(*hp)) : NULL;
	if (np && (!stage || !hp)) {
		free(stage);
		free(hp);
		free(p);
		return fail(err, MODELFS_E_NOMEM, "out of memory reading %s %s", f->repo,
			    quote(f->path, path));
	}
	size_t off = 0;
	for (size_t i = 0; i < np; i++) {
		hp[i] = p[i];
		hp[i].dst = stage + off;
		off += p[i].n;
	}
	size_t bad = 0;
	rc = np ? pieces_run(f, hp, np, &bad) : 0;
	if (rc < 0)
		rc = read_failed(f, &hp[bad], rc, err);
	for (size_t i = 0; rc == 0 && i < np; i++)
		if (mfs_gpu_backend_upload(g, p[i].dst, hp[i].dst, p[i].n) < 0)
			rc = fail(
			    err, MODELFS_E_IO,
			    "%s %s: copying decoded bytes to the CUDA device %s failed "
			    "(the GPU is off for this process from now on)",
			    f->repo, quote(f->path, path), mfs_gpu_backend_name(g));
	free(stage);
	free(hp);
	free(p);
	return rc;
}

int modelfs_file_read(modelfs_file *f, uint64_t offset, void *dst, size_t len,
		      modelfs_error *err)
{
	if (!f)
		return fail(err, MODELFS_E_INVAL, "modelfs_file_read: no file");
	span sp = {.off = offset, .len = len, .dst = dst};
	return read_spans(f, &sp, 1, err);
}

static int read_ranges_to(modelfs_file *f, const modelfs_range *ranges, size_t n,
			  int device, modelfs_error *err)
{
	if (!f || (n && !ranges))
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_file_read_ranges: no file or no ranges");
	if (n == 0)
		return 0;
	if (n > SIZE_MAX / sizeof(span))
		return fail(err, MODELFS_E_NOMEM, "too many ranges");
	span *sp = malloc(n * sizeof(*sp));
	if (!sp)
		return fail(err, MODELFS_E_NOMEM, "out of memory reading %zu ranges", n);
	for (size_t i = 0; i < n; i++)
		sp[i] = (span){
		    .off = ranges[i].offset, .len = ranges[i].len, .dst = ranges[i].dst};
	int rc = device ? read_spans_device(f, sp, n, err) : read_spans(f, sp, n, err);
	free(sp);
	return rc;
}

int modelfs_file_read_ranges(modelfs_file *f, const modelfs_range *ranges, size_t n,
			     modelfs_error *err)
{
	return read_ranges_to(f, ranges, n, 0, err);
}

int modelfs_file_read_ranges_device(modelfs_file *f, const modelfs_range *ranges,
				    size_t n, modelfs_error *err)
{
	return read_ranges_to(f, ranges, n, 1, err);
}

int modelfs_file_read_device(modelfs_file *f, uint64_t offset, void *dev_dst, size_t len,
			     modelfs_error *err)
{
	modelfs_range r = {.offset = offset, .len = len, .dst = dev_dst};
	return read_ranges_to(f, &r, 1, 1, err);
}

/* ---- tensors ---- */

static int by_name(const void *a, const void *b)
{
	return strcmp(((const modelfs_tensor *)a)->name,
		      ((const modelfs_tensor *)b)->name);
}

static int tensors_fail(modelfs_file *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int tensors_fail(modelfs_file *f, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->tensors_msg, sizeof(f->tensors_msg), fmt, ap);
	va_end(ap);
	f->tensors_rc = code;
	return code;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/*
 * List the tensors of a .safetensors file from its own header, read through
 * the checked path and parsed by the same checker ingest uses: names,
 * shapes and offsets a caller sizes buffers by come from checked bytes,
 * never from an index record alone.
 */
static void tensors_load(modelfs_file *f)
{
	char path[QUOTED], what[MFS_REPO_ID_MAX + QUOTED + 8];
	snprintf(what, sizeof(what), "%s %s", f->repo, quote(f->path, path));
	uint8_t first8[8];
	uint64_t hlen;
	mfs_errmsg em = {0};
	modelfs_error e = {0};
	if (f->rf->size >= 8 && modelfs_file_read(f, 0, first8, 8, &e) < 0) {
		tensors_fail(f, e.code, "%s", e.message);
		return;
	}
	if (mfs_st_header_len(first8, f->rf->size, &hlen, what, &em) < 0) {
		tensors_fail(f, MODELFS_E_FORMAT, "%s", em.msg);
		return;
	}
	char *json = malloc(hlen ? hlen : 1);
	if (!json) {
		tensors_fail(f, MODELFS_E_NOMEM,
			     "%s: out of memory for its %llu-byte header", what,
			     (unsigned long long)hlen);
		return;
	}
	if (modelfs_file_read(f, 8, json, hlen, &e) < 0) {
		tensors_fail(f, e.code, "%s", e.message);
		free(json);
		return;
	}
	int rc = mfs_st_parse(json, hlen, f->rf->size, &f->hdr, what, &em);
	if (rc < 0) {
		free(json);
		tensors_fail(f, code_of(rc), "%s", em.msg[0] ? em.msg : mfs_strerror(rc));
		return;
	}
	cJSON *root = cJSON_ParseWithLength(json, hlen);
	free(json);
	if (root) {
		const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
		if (cJSON_IsObject(md))
			f->metadata = cJSON_PrintUnformatted(md);
		cJSON_Delete(root);
	}
	size_t n = f->hdr.n_tensors;
	f->tensors = calloc(n ? n : 1, sizeof(*f->tensors));
	if (!f->tensors) {
		tensors_fail(f, MODELFS_E_NOMEM, "%s: out of memory listing %zu tensors",
			     what, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const mfs_st_tensor *t = &f->hdr.tensors[i];
		f->tensors[i] = (modelfs_tensor){
		    .name = t->name,
		    .dtype = mfs_dtype_name(t->dtype),
		    .dtype_bits = mfs_dtype_bits(t->dtype),
		    .ndim = t->ndim,
		    .shape = t->shape,
		    .offset = t->begin,
		    .nbytes = t->end - t->begin,
		};
	}
	qsort(f->tensors, n, sizeof(*f->tensors), by_name);
}

int modelfs_file_open(modelfs_store *s, const char *repo, const char *revision,
		      const char *path, modelfs_file **out, modelfs_error *err)
{
	if (!out)
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_file_open: no place for the handle");
	*out = NULL;
	if (!s || !path)
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_file_open: no store or no path");
	char id[MFS_REPO_ID_MAX + 1], commit[MFS_COMMIT_LEN + 1], q[QUOTED];
	int rc = repo_id(repo, id, err);
	if (rc < 0)
		return rc;
	mfs_errmsg em = {0};
	if (mfs_repo_path_check(path, &em) < 0)
		return fail(err, MODELFS_E_INVAL, "invalid path \"%s\": %s",
			    quote(path, q),
			    em.msg[0] ? em.msg : "not a path inside a repo");
	mfs_txn *t;
	if ((rc = txn_read(s, &t, err)) < 0)
		return rc;
	mfs_file_info fi;
	if ((rc = resolve_in(t, s, id, revision, commit, err)) == 0 &&
	    (rc = mfs_file_get(t, id, commit, path, &fi)) < 0) {
		if (rc == MFS_E_NOTFOUND)
			rc = fail(err, MODELFS_E_NOFILE,
				  "%s has no file \"%s\" in snapshot %.12s (revision %s; "
				  "`modelfs ls %s` lists them)",
				  id, quote(path, q), commit,
				  revision ? revision : "main", id);
		else
			rc = fail(
			    err, code_of(rc),
			    "%s: the files record of \"%s\" cannot be read (%s): run "
			    "`modelfs verify`",
			    id, quote(path, q), mfs_strerror(rc));
	}
	mfs_txn_abort(t);
	if (rc < 0)
		return rc;
	modelfs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return fail(err, MODELFS_E_NOMEM, "out of memory opening %s", path);
	if ((rc = mfs_rfile_open(s->reader, id, fi.etag, &f->rf)) < 0) {
		free(f);
		if (rc ==
		    MFS_E_NOTFOUND) /* removed since, or a files record naming nothing */
			return fail(
			    err, MODELFS_E_NOFILE,
			    "%s \"%s\": its content (blob %s) is not in the store: the "
			    "repo was removed meanwhile, or its records are damaged "
			    "(run `modelfs verify`)",
			    id, quote(path, q), fi.etag);
		return fail(err, code_of(rc), "%s \"%s\": cannot open it: %s", id,
			    quote(path, q), mfs_strerror(rc));
	}
	pthread_mutex_lock(&registry_mu);
	s->refs++;
	pthread_mutex_unlock(&registry_mu);
	f->s = s;
	memcpy(f->repo, id, sizeof(id));
	memcpy(f->commit, commit, sizeof(commit));
	snprintf(f->path, sizeof(f->path), "%s", path);
	if (ends_with(path, ".safetensors"))
		tensors_load(f);
	else
		tensors_fail(f, MODELFS_E_FORMAT,
			     "%s \"%s\" is not a .safetensors file: it has no tensors",
			     id, quote(path, q));
	*out = f;
	return 0;
}

void modelfs_file_close(modelfs_file *f)
{
	if (!f)
		return;
	if (foreign(f->s)) { /* the parent's snapshot and store stay the parent's */
		free(f->tensors);
		mfs_st_header_free(&f->hdr);
		cJSON_free(f->metadata);
		free(f);
		return;
	}
	mfs_rfile_close(f->rf);
	free(f->tensors);
	mfs_st_header_free(&f->hdr);
	cJSON_free(f->metadata);
	modelfs_store *s = f->s;
	free(f);
	store_unref(s);
}

int modelfs_file_tensor_count(const modelfs_file *f, size_t *n, modelfs_error *err)
{
	if (n)
		*n = 0;
	if (!f || !n)
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_file_tensor_count: no file or no count");
	if (f->tensors_rc == MODELFS_E_FORMAT && !ends_with(f->path, ".safetensors"))
		return 0; /* not a safetensors file: no tensors, and no error */
	if (f->tensors_rc < 0)
		return fail(err, f->tensors_rc, "%s", f->tensors_msg);
	*n = f->hdr.n_tensors;
	return 0;
}

const modelfs_tensor *modelfs_file_tensor(const modelfs_file *f, size_t i)
{
	if (!f || f->tensors_rc < 0 || i >= f->hdr.n_tensors)
		return NULL;
	return &f->tensors[i];
}

int modelfs_file_find_tensor(const modelfs_file *f, const char *name,
			     const modelfs_tensor **out, modelfs_error *err)
{
	if (out)
		*out = NULL;
	if (!f || !name || !out)
		return fail(err, MODELFS_E_INVAL,
			    "modelfs_file_find_tensor: no file, name or result");
	if (f->tensors_rc < 0)
		return fail(err, f->tensors_rc, "%s", f->tensors_msg);
	modelfs_tensor key = {.name = name};
	const modelfs_tensor *t =
	    bsearch(&key, f->tensors, f->hdr.n_tensors, sizeof(*f->tensors), by_name);
	if (!t) {
		char q[QUOTED], path[QUOTED];
		return fail(err, MODELFS_E_NOTENSOR,
			    "%s %s has no tensor \"%s\" (%zu tensors)", f->repo,
			    quote(f->path, path), quote(name, q), f->hdr.n_tensors);
	}
	*out = t;
	return 0;
}

const char *modelfs_file_metadata(const modelfs_file *f)
{
	return f && f->tensors_rc == 0 ? f->metadata : NULL;
}

int modelfs_tensor_read(modelfs_file *f, const char *name, void *dst, size_t dst_cap,
			modelfs_error *err)
{
	const modelfs_tensor *t;
	int rc = modelfs_file_find_tensor(f, name, &t, err);
	if (rc < 0)
		return rc;
	if (dst_cap < t->nbytes) {
		char q[QUOTED];
		return fail(err, MODELFS_E_NOSPACE,
			    "tensor \"%s\" is %llu bytes; the buffer given holds %zu",
			    quote(name, q), (unsigned long long)t->nbytes, dst_cap);
	}
	return modelfs_file_read(f, t->offset, dst, (size_t)t->nbytes, err);
}

int modelfs_tensor_read_device(modelfs_file *f, const char *name, void *dev_dst,
			       size_t dst_cap, modelfs_error *err)
{
	const modelfs_tensor *t;
	int rc = modelfs_file_find_tensor(f, name, &t, err);
	if (rc < 0)
		return rc;
	if (dst_cap < t->nbytes) {
		char q[QUOTED];
		return fail(err, MODELFS_E_NOSPACE,
			    "tensor \"%s\" is %llu bytes; the buffer given holds %zu",
			    quote(name, q), (unsigned long long)t->nbytes, dst_cap);
	}
	return modelfs_file_read_device(f, t->offset, dev_dst, (size_t)t->nbytes, err);
}
