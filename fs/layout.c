/*
 * layout.c - the hub cache tree (see layout.h).
 *
 * A tree version is built whole from one read transaction, then published
 * by swapping a pointer; versions are reference counted, so a request or an
 * open directory keeps the version it started with.  Nodes live in one
 * vector per version; an open-addressed table maps inode numbers to nodes.
 */
#include "layout.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "check.h"
#include "clock.h"
#include "grow.h"

enum { K_DIR, K_FILE, K_LINK };

typedef struct node {
	uint64_t ino;
	struct node *parent;
	char *path; /* "/models--a--b/blobs/123": owned; name points into it */
	const char *name;
	int kind;
	uint32_t perm;
	uint64_t size;
	uint64_t stored; /* blobs: the blob record's stored bytes */
	uint64_t mtime;
	int immutable;
	/* dir */
	struct node **kids;
	size_t nkids, capkids;
	uint32_t nsubdirs;
	/* link */
	char *target;
	struct node *blob; /* snapshot links: the blob they name */
	/* file */
	int is_blob;
	int is_config;	  /* blobs: some snapshot names it config.json */
	const char *repo; /* owned by the tree's repo list */
	char etag[MFS_ETAG_MAX + 1];
	char data[MFS_COMMIT_LEN + 1];
	size_t data_len;
} node;

/* A repo the tree leaves out, and the line that says why. */
typedef struct left_out {
	char *repo; /* quoted */
	char *line;
} left_out;

typedef struct tree {
	atomic_uint refs;
	uint64_t generation;
	node **nodes;
	size_t nnodes, capnodes;
	node **by_ino; /* open addressing, power of two */
	size_t ino_cap;
	char **repos;
	size_t nrepos, caprepos;
	left_out *left;
	size_t nleft, capleft;
	mfs_layout_totals totals;
} tree;

struct mfs_layout {
	mfs_store *store;
	unsigned refresh_ms;
	pthread_mutex_t mu;	  /* guards cur */
	pthread_mutex_t build_mu; /* one refresh at a time */
	tree *cur;
	atomic_uint_fast64_t last_check_ms;
	mfs_layout_left_out_fn left_fn; /* guarded by build_mu */
	void *left_ud;
};

struct mfs_layout_dir {
	tree *t;
	node *dir;
};


/* ---- tree building ---- */

static void tree_free(tree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nnodes; i++) {
		node *n = t->nodes[i];
		free(n->path);
		free(n->kids);
		free(n->target);
		free(n);
	}
	for (size_t i = 0; i < t->nrepos; i++)
		free(t->repos[i]);
	free(t->repos);
	for (size_t i = 0; i < t->nleft; i++) {
		free(t->left[i].repo);
		free(t->left[i].line);
	}
	free(t->left);
	free(t->nodes);
	free(t->by_ino);
	free(t);
}

static node *ino_find(const tree *t, uint64_t ino)
{
	size_t mask = t->ino_cap - 1;
	for (size_t i = (size_t)ino & mask;; i = (i + 1) & mask) {
		node *n = t->by_ino[i];
		if (!n || n->ino == ino)
			return n;
	}
}

static int ino_table_put(node **tab, size_t cap, node *n)
{
	size_t mask = cap - 1;
	for (size_t i = (size_t)n->ino & mask;; i = (i + 1) & mask) {
		if (!tab[i]) {
			tab[i] = n;
			return 0;
		}
	}
}

static int ino_grow(tree *t)
{
	size_t cap = t->ino_cap ? t->ino_cap * 2 : 1024;
	node **tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < t->ino_cap; i++)
		if (t->by_ino[i])
			ino_table_put(tab, cap, t->by_ino[i]);
	free(t->by_ino);
	t->by_ino = tab;
	t->ino_cap = cap;
	return 0;
}

/* The inode number of a path: stable across refreshes, never 0 or 1 except the root. */
static uint64_t path_ino(const tree *t, const char *path)
{
	if (strcmp(path, "/") == 0)
		return MFS_LAYOUT_ROOT_INO;
	size_t len = strlen(path);
	for (uint64_t seed = 0;; seed++) {
		uint64_t h =
		    seed ? XXH3_64bits_withSeed(path, len, seed) : XXH3_64bits(path, len);
		if (h <= MFS_LAYOUT_ROOT_INO)
			continue;
		node *o = t->ino_cap ? ino_find(t, h) : NULL;
		if (!o || strcmp(o->path, path) == 0)
			return h;
	}
}

static int add_kid(node *dir, node *kid)
{
	node **k = mfs_grow(dir->kids, &dir->capkids, dir->nkids, sizeof(*k), 8);
	if (!k)
		return -ENOMEM;
	dir->kids = k;
	dir->kids[dir->nkids++] = kid;
	if (kid->kind == K_DIR)
		dir->nsubdirs++;
	return 0;
}

/* Find the node at @p path, or create it with @p kind under @p parent. */
static int get_node(tree *t, node *parent, const char *path, int kind, uint64_t mtime,
		    node **out)
{
	uint64_t ino = path_ino(t, path);
	node *n = t->ino_cap ? ino_find(t, ino) : NULL;
	if (n) {
		if (n->kind != kind)
			return MFS_E_EXISTS; /* a file and a directory of the same name */
		if (mtime > n->mtime)
			n->mtime = mtime;
		*out = n;
		return 0;
	}
	if ((t->nnodes + 1) * 2 > t->ino_cap && ino_grow(t) < 0)
		return -ENOMEM;
	node **v = mfs_grow(t->nodes, &t->capnodes, t->nnodes, sizeof(*v), 256);
	if (!v)
		return -ENOMEM;
	t->nodes = v;
	n = calloc(1, sizeof(*n));
	if (!n || !(n->path = strdup(path))) {
		free(n);
		return -ENOMEM;
	}
	const char *slash = strrchr(n->path, '/');
	n->name = slash[1] ? slash + 1 : n->path;
	n->ino = ino;
	n->kind = kind;
	n->mtime = mtime;
	n->parent = parent ? parent : n;
	n->perm = kind == K_DIR ? 0555 : kind == K_LINK ? 0777 : 0444;
	n->size = kind == K_DIR ? 4096 : 0;
	t->nodes[t->nnodes++] = n;
	ino_table_put(t->by_ino, t->ino_cap, n);
	t->totals.nodes++;
	if (parent && add_kid(parent, n) < 0)
		return -ENOMEM;
	*out = n;
	return 0;
}

/*
 * Create the directories of @p rel (a '/'-separated path) under @p base and
 * the leaf itself with @p kind; *depth gets the number of directories of rel.
 */
static int get_path(tree *t, node *base, const char *rel, int kind, uint64_t mtime,
		    node **out, unsigned *depth)
{
	char path[4096];
	size_t blen = strlen(base->path);
	if (blen + 1 + strlen(rel) + 1 > sizeof(path))
		return MFS_E_TOOBIG;
	memcpy(path, base->path, blen);
	size_t pos = blen;
	if (pos == 1)
		pos = 0; /* base is the root: no double slash */
	node *cur = base;
	unsigned d = 0;
	const char *p = rel;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);
		if (clen == 0)
			return MFS_E_INVAL;
		path[pos++] = '/';
		memcpy(path + pos, p, clen);
		pos += clen;
		path[pos] = 0;
		node *n;
		MFS_TRY(get_node(t, cur, path, slash ? K_DIR : kind, mtime, &n));
		cur = n;
		if (!slash)
			break;
		d++;
		p = slash + 1;
	}
	if (depth)
		*depth = d;
	*out = cur;
	return 0;
}

/* The file a model loader reads first; its weights lie next to it. */
#define MODEL_CONFIG   "config.json"
#define WEIGHTS_SUFFIX ".safetensors"

typedef struct build_ctx {
	tree *t;
	mfs_txn *txn;
	node *root;
	node *repo_dir;
	const char *repo;
	uint64_t repo_time;
	const char *commit;
	uint64_t commit_time;
	int rc;
	/* commits of the current repo, for refs' timestamps */
	mfs_commit_info *commits;
	size_t ncommits, capcommits;
	/* why the repo being built cannot be laid out ("its files record ...") */
	char why[MFS_ERRMSG_MAX];
} build_ctx;

int mfs_layout_repo_dirname(const char *repo, char *buf, size_t cap)
{
	size_t o = 0;
	for (const char *p = repo; *p; p++) {
		const char *piece = *p == '/' ? "--" : NULL;
		size_t n = piece ? 2 : 1;
		if (o + n + 1 > cap)
			return MFS_E_NOSPACE;
		if (piece)
			memcpy(buf + o, piece, 2);
		else
			buf[o] = *p;
		o += n;
	}
	if (o + 1 > cap)
		return MFS_E_NOSPACE;
	buf[o] = 0;
	return 0;
}

/* Errors that end the whole build (the old tree stays): the system's, not a repo's. */
static int build_fatal(int rc)
{
	return rc == MFS_E_DB || rc == MFS_E_BUSY || (rc < 0 && rc > -4096);
}

/* Say which record of the repo being built could not be laid out, and return rc. */
static int cannot_lay_out(build_ctx *b, int rc, const char *db, const char *path)
{
	char pq[4 * MFS_PATH_MAX + 8];
	mfs_str_quote(path, MFS_PATH_MAX, pq, sizeof(pq));
	const char *why = rc == MFS_E_EXISTS  ? "a file and a folder of the same name"
			  : rc == MFS_E_INVAL ? "not a path inside the repo"
					      : mfs_strerror(rc);
	if (b->commit)
		snprintf(b->why, sizeof(b->why),
			 "its %s record for %s of commit %s cannot be laid out: %s", db,
			 pq, b->commit, why);
	else
		snprintf(b->why, sizeof(b->why),
			 "its %s record for %s cannot be laid out: %s", db, pq, why);
	return rc;
}

static int file_cb(void *ud, const mfs_file_info *f)
{
	build_ctx *b = ud;
	tree *t = b->t;
	/* the index is untrusted: never a node named ".." (the checker says so too) */
	if (mfs_repo_path_check(f->path, NULL) < 0)
		return cannot_lay_out(b, MFS_E_INVAL, "files", f->path);
	char rel[MFS_PATH_MAX + 64 + MFS_COMMIT_LEN];
	snprintf(rel, sizeof(rel), "snapshots/%s/%s", b->commit, f->path);
	node *link;
	unsigned depth;
	int rc = get_path(t, b->repo_dir, rel, K_LINK, b->commit_time, &link, &depth);
	if (rc < 0)
		return cannot_lay_out(b, rc, "files", f->path);
	/* depth counts "snapshots", the commit and the file's own dirs */
	size_t tlen = 3 * (size_t)depth + strlen("blobs/") + strlen(f->etag) + 1;
	free(link->target);
	link->target = malloc(tlen);
	if (!link->target)
		return -ENOMEM;
	char *o = link->target;
	for (unsigned i = 0; i < depth; i++, o += 3)
		memcpy(o, "../", 3);
	sprintf(o, "blobs/%s", f->etag);
	link->size = strlen(link->target);
	link->immutable = 1;

	snprintf(rel, sizeof(rel), "blobs/%s", f->etag);
	node *blob;
	rc = get_path(t, b->repo_dir, rel, K_FILE, b->commit_time, &blob, NULL);
	if (rc < 0)
		return cannot_lay_out(b, rc, "files", f->path);
	if (!blob->is_blob) {
		mfs_blob_info bi;
		rc = mfs_blob_get(b->txn, b->repo, f->etag, &bi, NULL);
		if (rc < 0)
			return cannot_lay_out(b, rc, "files", f->path);
		blob->is_blob = 1;
		blob->repo = b->repo;
		snprintf(blob->etag, sizeof(blob->etag), "%s", f->etag);
		blob->size = bi.size;
		blob->stored = bi.stored_bytes;
		blob->immutable = 1;
		t->totals.blob_bytes += bi.size;
		t->totals.blob_stored += bi.stored_bytes;
		t->totals.blobs++;
		/* the earliest commit that has it: a blob does not change after */
		blob->mtime = b->commit_time;
	} else if (b->commit_time < blob->mtime) {
		blob->mtime = b->commit_time;
	}
	if (f->mode & 0111)
		blob->perm = 0555;
	link->blob = blob;
	if (strcmp(link->name, MODEL_CONFIG) == 0)
		blob->is_config = 1;
	return 0;
}

static int noexist_cb(void *ud, const char *path)
{
	build_ctx *b = ud;
	if (mfs_repo_path_check(path, NULL) < 0)
		return cannot_lay_out(b, MFS_E_INVAL, "noexist", path);
	char rel[MFS_PATH_MAX + 64 + MFS_COMMIT_LEN];
	snprintf(rel, sizeof(rel), ".no_exist/%s/%s", b->commit, path);
	node *n;
	int rc = get_path(b->t, b->repo_dir, rel, K_FILE, b->commit_time, &n, NULL);
	if (rc == MFS_E_EXISTS)
		return 0; /* a directory of that name: the marker adds nothing */
	if (rc == 0)
		n->immutable = 1;
	return rc < 0 ? cannot_lay_out(b, rc, "noexist", path) : 0;
}

static int commit_cb(void *ud, const mfs_commit_info *c)
{
	build_ctx *b = ud;
	mfs_commit_info *v =
	    mfs_grow(b->commits, &b->capcommits, b->ncommits, sizeof(*v), 8);
	if (!v)
		return -ENOMEM;
	b->commits = v;
	b->commits[b->ncommits++] = *c;
	return 0;
}

static int ref_cb(void *ud, const mfs_ref_info *r)
{
	build_ctx *b = ud;
	uint64_t when = b->repo_time;
	int known = 0;
	for (size_t i = 0; i < b->ncommits; i++)
		if (strcmp(b->commits[i].commit, r->commit) == 0) {
			when = b->commits[i].time;
			known = 1;
		}
	if (!known)
		return 0; /* a ref to a commit we do not have: scan_cache_dir would warn
			   */
	if (mfs_ref_name_check(r->name, NULL) < 0) /* never a node named ".." */
		return cannot_lay_out(b, MFS_E_INVAL, "refs", r->name);
	char rel[MFS_REF_MAX + 8];
	snprintf(rel, sizeof(rel), "refs/%s", r->name);
	node *n;
	int rc = get_path(b->t, b->repo_dir, rel, K_FILE, when, &n, NULL);
	if (rc == MFS_E_EXISTS)
		return 0; /* "a" and "a/b" both refs: skip the odd one */
	if (rc < 0)
		return cannot_lay_out(b, rc, "refs", r->name);
	memcpy(n->data, r->commit, MFS_COMMIT_LEN);
	n->data[MFS_COMMIT_LEN] = 0;
	n->data_len = strlen(n->data);
	n->size = n->data_len;
	n->mtime = when;
	return 0;
}

/* Lay out one repo the checker found intact. */
static int repo_build(build_ctx *b, const char *repo, uint64_t updated)
{
	tree *t = b->t;
	char dname[2 * MFS_REPO_ID_MAX + 2];
	if (mfs_layout_repo_dirname(repo, dname, sizeof(dname)) < 0)
		return 0;
	b->commit = NULL;
	b->why[0] = '\0';
	b->repo_time = updated;
	MFS_TRY(get_path(t, b->root, dname, K_DIR, updated, &b->repo_dir, NULL));
	t->totals.repos++;

	node *d;
	/* snapshots/ always exists: scan_cache_dir calls a repo without it corrupt */
	MFS_TRY(get_path(t, b->repo_dir, "snapshots", K_DIR, updated, &d, NULL));
	MFS_TRY(get_path(t, b->repo_dir, "blobs", K_DIR, updated, &d, NULL));
	MFS_TRY(get_path(t, b->repo_dir, "refs", K_DIR, updated, &d, NULL));

	b->ncommits = 0;
	MFS_TRY(mfs_commits_foreach(b->txn, repo, commit_cb, b));
	for (size_t i = 0; i < b->ncommits; i++) {
		b->commit = b->commits[i].commit;
		b->commit_time = b->commits[i].time;
		char rel[MFS_COMMIT_LEN + 16];
		snprintf(rel, sizeof(rel), "snapshots/%s", b->commit);
		node *snap;
		MFS_TRY(
		    get_path(t, b->repo_dir, rel, K_DIR, b->commit_time, &snap, NULL));
		MFS_TRY(mfs_files_foreach(b->txn, repo, b->commit, file_cb, b));
		MFS_TRY(mfs_noexist_foreach(b->txn, repo, b->commit, noexist_cb, b));
	}
	b->commit = NULL;
	MFS_TRY(mfs_refs_foreach(b->txn, repo, ref_cb, b));
	return 0;
}

/* What a tree held before a repo was added to it. */
typedef struct build_mark {
	size_t nnodes, nrepos, root_kids;
	uint32_t root_subdirs;
	mfs_layout_totals totals;
} build_mark;

/*
 * Take out everything added since @p m: a repo that fails half-way leaves no
 * half-built directory.  Its nodes are the last ones of the vector, and only
 * its repo directory hangs from a node older than the mark (the root).
 */
static void rollback(tree *t, node *root, const build_mark *m)
{
	for (size_t i = m->nnodes; i < t->nnodes; i++) {
		node *n = t->nodes[i];
		free(n->path);
		free(n->kids);
		free(n->target);
		free(n);
	}
	t->nnodes = m->nnodes;
	for (size_t i = m->nrepos; i < t->nrepos; i++)
		free(t->repos[i]);
	t->nrepos = m->nrepos;
	root->nkids = m->root_kids;
	root->nsubdirs = m->root_subdirs;
	t->totals = m->totals;
	/* open addressing has no delete: rebuild the table from the nodes left */
	memset(t->by_ino, 0, t->ino_cap * sizeof(*t->by_ino));
	for (size_t i = 0; i < t->nnodes; i++)
		ino_table_put(t->by_ino, t->ino_cap, t->nodes[i]);
}

static int left_out_add(tree *t, const mfs_check_repo_entry *r)
{
	char line[MFS_ERRMSG_MAX * 3];
	mfs_check_left_out_line(r, line, sizeof(line));
	left_out *v = mfs_grow(t->left, &t->capleft, t->nleft, sizeof(*v), 4);
	if (!v)
		return -ENOMEM;
	t->left = v;
	left_out *e = &t->left[t->nleft];
	e->repo = strdup(r->shown);
	e->line = strdup(line);
	if (!e->repo || !e->line) {
		free(e->repo);
		free(e->line);
		return -ENOMEM;
	}
	t->nleft++;
	t->totals.repos_left_out++;
	return 0;
}

static int repo_cb(void *ud, const mfs_check_repo_entry *r)
{
	build_ctx *b = ud;
	tree *t = b->t;
	if (!r->intact)
		return left_out_add(t, r);
	char **v = mfs_grow(t->repos, &t->caprepos, t->nrepos, sizeof(*v), 16);
	if (!v)
		return -ENOMEM;
	t->repos = v;
	build_mark m = {t->nnodes, t->nrepos, b->root->nkids, b->root->nsubdirs,
			t->totals};
	char *repo = strdup(r->repo);
	if (!repo)
		return -ENOMEM;
	t->repos[t->nrepos++] = repo;
	b->repo = repo;
	int rc = repo_build(b, repo, r->info.updated);
	if (rc == 0 || build_fatal(rc))
		return rc;
	/* the checker passed it, yet it cannot be laid out (two paths that clash) */
	mfs_check_repo_entry e = *r;
	if (!b->why[0])
		snprintf(b->why, sizeof(b->why), "it cannot be laid out: %s",
			 mfs_strerror(rc));
	e.why = b->why;
	e.intact = 0;
	rollback(t, b->root, &m);
	b->repo = NULL;
	return left_out_add(t, &e);
}

static int cmp_kids(const void *a, const void *b)
{
	return strcmp((*(node *const *)a)->name, (*(node *const *)b)->name);
}

static int tree_build(mfs_store *s, tree **out, mfs_errmsg *err)
{
	*out = NULL;
	tree *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	atomic_init(&t->refs, 1);
	build_ctx b = {.t = t};
	int rc = get_node(t, NULL, "/", K_DIR, 0, &b.root);
	if (rc < 0)
		goto out;
	rc = mfs_txn_begin(s, MFS_TXN_READ, &b.txn);
	if (rc < 0) {
		mfs_err(err, rc, "layout: cannot begin a read transaction: %s",
			mfs_strerror(rc));
		goto out;
	}
	rc = mfs_store_generation(b.txn, &t->generation);
	/* every repo the checker passes; the others are left out, each with its line */
	if (rc == 0)
		rc = mfs_check_repos_foreach(b.txn, 0, repo_cb, &b);
	mfs_txn_abort(b.txn);
	if (rc < 0) {
		mfs_err(err, rc, "layout: reading the store%s%s: %s",
			b.repo ? " at repo " : "", b.repo ? b.repo : "",
			mfs_strerror(rc));
		goto out;
	}
	rc = 0;
	for (size_t i = 0; i < t->nnodes; i++) {
		node *n = t->nodes[i];
		if (n->kind != K_DIR)
			continue;
		if (n->nkids > 1)
			qsort(n->kids, n->nkids, sizeof(*n->kids), cmp_kids);
		if (n != b.root && n->mtime > b.root->mtime)
			b.root->mtime = n->mtime;
	}
	/* directories inside a snapshot never change: their commit is fixed */
	for (size_t i = 0; i < t->nnodes; i++) {
		node *n = t->nodes[i];
		if (n->kind == K_DIR && strstr(n->path, "/snapshots/"))
			n->immutable = 1;
	}
out:
	free(b.commits);
	if (rc < 0) {
		tree_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

/* Was @p e left out of @p old too, for the same reason? */
static int left_out_before(const tree *old, const left_out *e)
{
	for (size_t i = 0; old && i < old->nleft; i++)
		if (!strcmp(old->left[i].repo, e->repo) &&
		    !strcmp(old->left[i].line, e->line))
			return 1;
	return 0;
}

/* Tell the caller about the repos @p t leaves out that @p old did not (build_mu held). */
static void announce_left_out(mfs_layout *l, const tree *t, const tree *old)
{
	if (!l->left_fn)
		return;
	for (size_t i = 0; i < t->nleft; i++)
		if (!left_out_before(old, &t->left[i]))
			l->left_fn(l->left_ud, t->left[i].repo, t->left[i].line);
}

/* ---- versions ---- */

static tree *tree_get(mfs_layout *l)
{
	pthread_mutex_lock(&l->mu);
	tree *t = l->cur;
	atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&l->mu);
	return t;
}

static void tree_put(tree *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		tree_free(t);
}

int mfs_layout_create(mfs_store *store, unsigned refresh_ms, mfs_layout **out,
		      mfs_errmsg *err)
{
	*out = NULL;
	mfs_layout *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->store = store;
	l->refresh_ms = refresh_ms;
	int rc = tree_build(store, &l->cur, err);
	if (rc < 0) {
		free(l);
		return rc;
	}
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->build_mu, NULL);
	atomic_init(&l->last_check_ms, mfs_now_ms());
	*out = l;
	return 0;
}

void mfs_layout_free(mfs_layout *l)
{
	if (!l)
		return;
	tree_put(l->cur);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->build_mu);
	free(l);
}

static int refresh_every(mfs_layout *l, uint64_t interval_ms, int *changed)
{
	if (changed)
		*changed = 0;
	uint64_t now = mfs_now_ms();
	uint64_t last = atomic_load(&l->last_check_ms);
	if (now - last < interval_ms)
		return 0;
	/* one thread checks; the others go on with the tree they have */
	if (pthread_mutex_trylock(&l->build_mu) != 0)
		return 0;
	atomic_store(&l->last_check_ms, now);
	mfs_txn *txn;
	uint64_t gen = 0;
	int rc = mfs_txn_begin(l->store, MFS_TXN_READ, &txn);
	if (rc == 0) {
		rc = mfs_store_generation(txn, &gen);
		mfs_txn_abort(txn);
	}
	if (rc == 0 && gen != mfs_layout_generation(l)) {
		tree *t;
		rc = tree_build(l->store, &t, NULL);
		if (rc == 0) {
			pthread_mutex_lock(&l->mu);
			tree *old = l->cur;
			l->cur = t;
			pthread_mutex_unlock(&l->mu);
			announce_left_out(l, t, old);
			tree_put(old);
			if (changed)
				*changed = 1;
		}
	}
	pthread_mutex_unlock(&l->build_mu);
	return rc;
}

void mfs_layout_set_left_out_fn(mfs_layout *l, mfs_layout_left_out_fn fn, void *ud)
{
	pthread_mutex_lock(&l->build_mu);
	l->left_fn = fn;
	l->left_ud = ud;
	tree *t = tree_get(l);
	announce_left_out(l, t, NULL);
	tree_put(t);
	pthread_mutex_unlock(&l->build_mu);
}

int mfs_layout_refresh(mfs_layout *l, int force, int *changed)
{
	return refresh_every(l, force ? 0 : l->refresh_ms, changed);
}

uint64_t mfs_layout_generation(mfs_layout *l)
{
	pthread_mutex_lock(&l->mu);
	uint64_t g = l->cur->generation;
	pthread_mutex_unlock(&l->mu);
	return g;
}

static void fill_attr(const node *n, mfs_layout_attr *a)
{
	a->ino = n->ino;
	a->mode = n->perm | (n->kind == K_DIR	 ? S_IFDIR
			     : n->kind == K_LINK ? S_IFLNK
						 : S_IFREG);
	a->nlink = n->kind == K_DIR ? 2 + n->nsubdirs : 1;
	a->size = n->size;
	a->disk_bytes = n->is_blob ? n->stored : n->size;
	a->mtime = n->mtime;
	a->immutable = n->immutable;
}

static node *find_kid(const node *dir, const char *name)
{
	size_t lo = 0, hi = dir->nkids;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, dir->kids[mid]->name);
		if (c == 0)
			return dir->kids[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Root lookups check the store more often: that is where new repos appear. */
#define ROOT_REFRESH_MS 50

int mfs_layout_lookup(mfs_layout *l, uint64_t parent, const char *name,
		      mfs_layout_attr *out)
{
	refresh_every(l, parent == MFS_LAYOUT_ROOT_INO ? ROOT_REFRESH_MS : l->refresh_ms,
		      NULL);
	tree *t = tree_get(l);
	int rc = MFS_E_NOTFOUND;
	node *d = ino_find(t, parent);
	if (d && d->kind != K_DIR) {
		rc = -ENOTDIR;
	} else if (d) {
		node *n = strcmp(name, ".") == 0    ? d
			  : strcmp(name, "..") == 0 ? d->parent
						    : find_kid(d, name);
		if (n) {
			fill_attr(n, out);
			rc = 0;
		}
	}
	tree_put(t);
	return rc;
}

int mfs_layout_getattr(mfs_layout *l, uint64_t ino, mfs_layout_attr *out)
{
	if (ino == MFS_LAYOUT_ROOT_INO)
		refresh_every(l, ROOT_REFRESH_MS, NULL);
	tree *t = tree_get(l);
	node *n = ino_find(t, ino);
	if (n)
		fill_attr(n, out);
	tree_put(t);
	return n ? 0 : MFS_E_NOTFOUND;
}

int mfs_layout_readlink(mfs_layout *l, uint64_t ino, char *buf, size_t cap)
{
	tree *t = tree_get(l);
	node *n = ino_find(t, ino);
	int rc = 0;
	if (!n)
		rc = MFS_E_NOTFOUND;
	else if (n->kind != K_LINK)
		rc = -EINVAL;
	else if (strlen(n->target) + 1 > cap)
		rc = MFS_E_NOSPACE;
	else
		strcpy(buf, n->target);
	tree_put(t);
	return rc;
}

int mfs_layout_open(mfs_layout *l, uint64_t ino, mfs_layout_file *out)
{
	tree *t = tree_get(l);
	node *n = ino_find(t, ino);
	int rc = 0;
	if (!n) {
		rc = MFS_E_NOTFOUND;
	} else if (n->kind == K_DIR) {
		rc = -EISDIR;
	} else if (n->kind == K_LINK) {
		rc = -EINVAL;
	} else {
		memset(out, 0, sizeof(*out));
		out->is_blob = n->is_blob;
		out->is_config = n->is_config;
		out->size = n->size;
		if (n->is_blob) {
			snprintf(out->repo, sizeof(out->repo), "%s", n->repo);
			snprintf(out->etag, sizeof(out->etag), "%s", n->etag);
		} else {
			memcpy(out->data, n->data, n->data_len);
			out->data_len = n->data_len;
		}
	}
	tree_put(t);
	return rc;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && strcmp(s + n - m, suffix) == 0;
}

/* The weights in directory @p dir, added to @p out unless there already. */
static void add_weights(const node *dir, mfs_layout_file *out, size_t cap, size_t *n)
{
	for (size_t i = 0; i < dir->nkids && *n < cap; i++) {
		const node *k = dir->kids[i];
		if (k->kind != K_LINK || !k->blob || !has_suffix(k->name, WEIGHTS_SUFFIX))
			continue;
		size_t j = 0;
		while (j < *n && strcmp(out[j].etag, k->blob->etag) != 0)
			j++;
		if (j < *n)
			continue;
		memset(&out[j], 0, sizeof(out[j]));
		out[j].is_blob = 1;
		snprintf(out[j].repo, sizeof(out[j].repo), "%s", k->blob->repo);
		snprintf(out[j].etag, sizeof(out[j].etag), "%s", k->blob->etag);
		out[j].size = k->blob->size;
		(*n)++;
	}
}

/* Every config.json link under @p dir naming @p blob: add the weights beside it. */
static void find_configs(const node *dir, const node *blob, mfs_layout_file *out,
			 size_t cap, size_t *n)
{
	for (size_t i = 0; i < dir->nkids; i++) {
		const node *k = dir->kids[i];
		if (k->kind == K_DIR)
			find_configs(k, blob, out, cap, n);
		else if (k->kind == K_LINK && k->blob == blob &&
			 strcmp(k->name, MODEL_CONFIG) == 0)
			add_weights(dir, out, cap, n);
	}
}

int mfs_layout_model_files(mfs_layout *l, uint64_t ino, mfs_layout_file *out, size_t cap,
			   size_t *n)
{
	*n = 0;
	tree *t = tree_get(l);
	const node *b = ino_find(t, ino);
	int rc = 0;
	if (!b) {
		rc = MFS_E_NOTFOUND;
	} else if (b->kind == K_FILE && b->is_config) {
		/* a blob is <repo dir>/blobs/<etag> */
		const node *repo_dir = b->parent->parent;
		for (size_t i = 0; i < repo_dir->nkids; i++)
			if (repo_dir->kids[i]->kind == K_DIR &&
			    strcmp(repo_dir->kids[i]->name, "snapshots") == 0)
				find_configs(repo_dir->kids[i], b, out, cap, n);
	}
	tree_put(t);
	return rc;
}

int mfs_layout_opendir(mfs_layout *l, uint64_t ino, mfs_layout_dir **out)
{
	*out = NULL;
	refresh_every(l, ino == MFS_LAYOUT_ROOT_INO ? ROOT_REFRESH_MS : l->refresh_ms,
		      NULL);
	tree *t = tree_get(l);
	node *n = ino_find(t, ino);
	int rc = !n ? MFS_E_NOTFOUND : n->kind != K_DIR ? -ENOTDIR : 0;
	mfs_layout_dir *d = NULL;
	if (rc == 0 && !(d = malloc(sizeof(*d))))
		rc = -ENOMEM;
	if (rc < 0) {
		tree_put(t);
		return rc;
	}
	d->t = t;
	d->dir = n;
	*out = d;
	return 0;
}

size_t mfs_layout_dir_count(const mfs_layout_dir *d)
{
	return d->dir->nkids + 2;
}

int mfs_layout_dir_entry(const mfs_layout_dir *d, size_t i, const char **name,
			 mfs_layout_attr *out)
{
	const node *n;
	if (i == 0) {
		*name = ".";
		n = d->dir;
	} else if (i == 1) {
		*name = "..";
		n = d->dir->parent;
	} else if (i - 2 < d->dir->nkids) {
		n = d->dir->kids[i - 2];
		*name = n->name;
	} else {
		return MFS_E_NOTFOUND;
	}
	fill_attr(n, out);
	return 0;
}

void mfs_layout_dir_close(mfs_layout *l, mfs_layout_dir *d)
{
	(void)l;
	if (!d)
		return;
	tree_put(d->t);
	free(d);
}

void mfs_layout_totals_get(mfs_layout *l, mfs_layout_totals *out)
{
	tree *t = tree_get(l);
	*out = t->totals;
	tree_put(t);
}
