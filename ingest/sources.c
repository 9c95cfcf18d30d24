/*
 * sources.c - a source (an HF cache, one of its repo folders, a plain folder)
 * collected into snapshots of files, every link and file kind checked.
 */
#include "ingest_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "grow.h"
#include "sha256.h"

/*
 * What a source may hold, and how it is read without leaving it:
 *
 * - The source root is resolved once (realpath).  Folders are walked through
 *   descriptors (openat with O_NOFOLLOW, fstatat with AT_SYMLINK_NOFOLLOW), so
 *   a walk never follows a link it has not checked.
 * - A symlink is followed hop by hop (chain_follow): each hop's folder is
 *   resolved with realpath, so every hop is a canonical path that the rules
 *   below compare with the resolved root.  A hop that does not exist is a
 *   dangling link; more than LINK_HOPS_MAX hops is a loop.
 * - What is opened is the chain's last hop, a path with no link in it, opened
 *   one component at a time with O_NOFOLLOW (mfs_src_open_nofollow): a folder that
 *   became a link after the check makes the open fail, it does not lead out.
 * - Files are opened O_NONBLOCK and checked with fstat: only regular files are
 *   read, so a FIFO, a socket or a device never blocks ingest.
 */

/* Symlinks followed in one chain at most (the kernel's MAXSYMLINKS). */
#define LINK_HOPS_MAX 40
/* Folders nested at most this deep in a source. */
#define DEPTH_MAX 32


int mfs_src_push_str(char ***arr, size_t *n, size_t *cap, const char *s)
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

void mfs_src_free_strs(char **a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i]);
	free(a);
}

void mfs_src_snapshot_free(src_snapshot *sn)
{
	for (size_t i = 0; i < sn->n_files; i++) {
		free(sn->files[i].rel);
		free(sn->files[i].abs);
	}
	free(sn->files);
	mfs_src_free_strs(sn->noexist, sn->n_noexist);
	mfs_src_free_strs(sn->refs, sn->n_refs);
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

/* A file type in words, for messages. */
const char *mfs_src_kind_name(mode_t m)
{
	if (S_ISREG(m))
		return "a regular file";
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISLNK(m))
		return "a symlink";
	if (S_ISFIFO(m))
		return "a FIFO (named pipe)";
	if (S_ISSOCK(m))
		return "a unix socket";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	return "a special file";
}

/* @p p is @p root or inside it (both resolved). */
static int path_inside(const char *p, const char *root)
{
	size_t rl = strlen(root);
	if (rl == 1 && root[0] == '/')
		return 1;
	return !strncmp(p, root, rl) && (p[rl] == '/' || p[rl] == '\0');
}

/* @p p is directly in folder @p dir (resolved): returns its name, or NULL. */
static const char *path_child_of(const char *p, const char *dir)
{
	size_t dl = strlen(dir);
	if (strncmp(p, dir, dl) || p[dl] != '/' || !p[dl + 1] || strchr(p + dl + 1, '/'))
		return NULL;
	return p + dl + 1;
}

/* "a/b" from "a" and "b"; "b" when @p a is empty.  -ENAMETOOLONG if it does not fit. */
static int path_join(char *out, size_t cap, const char *a, const char *b)
{
	int n = snprintf(out, cap, "%s%s%s", a, a[0] && strcmp(a, "/") ? "/" : "", b);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/*
 * Open @p abs, a resolved absolute path, without following a symlink in any
 * of its components: each folder is opened (O_PATH, O_NOFOLLOW) from the one
 * above it, so a component replaced by a link after it was checked fails
 * with ELOOP or ENOTDIR instead of leading elsewhere.
 * @param flags  open flags for the last component (O_NOFOLLOW|O_CLOEXEC added)
 * @return a descriptor the caller closes, or -errno
 */
int mfs_src_open_nofollow(const char *abs, int flags)
{
	if (abs[0] != '/')
		return -EINVAL;
	int dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	const char *p = abs;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p) { /* abs is "/" */
			int fd = openat(dfd, ".", flags | O_CLOEXEC);
			int e = errno;
			close(dfd);
			return fd < 0 ? -e : fd;
		}
		const char *end = p + strcspn(p, "/");
		const char *after = end + strspn(end, "/");
		int last = !*after;
		char comp[NAME_MAX + 1];
		size_t len = (size_t)(end - p);
		if (len > NAME_MAX) {
			close(dfd);
			return -ENAMETOOLONG;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		int fd = openat(dfd, comp,
				last ? flags | O_NOFOLLOW | O_CLOEXEC
				     : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(dfd);
		if (fd < 0)
			return -e;
		if (last)
			return fd;
		dfd = fd;
		p = after;
	}
}

/* A symlink chain as resolved: hop[0] is the link, hop[n - 1] where it ends. */
typedef struct link_chain {
	char *hop[LINK_HOPS_MAX + 2];
	size_t n;
	struct stat st;         /* lstat of hop[n - 1] (never a link) on success */
	char target[4096];      /* what hop[0] holds (readlink), for messages */
} link_chain;

static void chain_free(link_chain *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->hop[i]);
	c->n = 0;
}

static int chain_push(link_chain *c, const char *p)
{
	if (c->n >= LINK_HOPS_MAX + 2)
		return -ELOOP;
	if (!(c->hop[c->n] = strdup(p)))
		return -ENOMEM;
	c->n++;
	return 0;
}

/*
 * Follow the symlink @p link (an absolute path whose folders hold no link)
 * to where it ends, one hop at a time.
 * @return 0; -ENOENT when a hop does not exist (dangling), -ELOOP after
 *         LINK_HOPS_MAX hops, or another -errno.  The caller frees @p c
 *         (chain_free) whatever the result.
 */
static int chain_follow(const char *link, link_chain *c)
{
	memset(c, 0, sizeof *c);
	int rc = chain_push(c, link);
	while (rc == 0) {
		const char *cur = c->hop[c->n - 1];
		char t[4096];
		ssize_t tl = readlink(cur, t, sizeof t - 1);
		if (tl < 0)
			return -errno;
		t[tl] = '\0';
		if (c->n == 1)
			memcpy(c->target, t, (size_t)tl + 1);
		if (c->n > LINK_HOPS_MAX)
			return -ELOOP;
		/* what the link names, from the folder it is in */
		char cand[8192];
		if (t[0] == '/')
			snprintf(cand, sizeof cand, "%s", t);
		else
			snprintf(cand, sizeof cand, "%.*s/%s", (int)(strrchr(cur, '/') - cur), cur, t);
		size_t cl = strlen(cand);
		while (cl > 1 && cand[cl - 1] == '/')
			cand[--cl] = '\0';
		char *slash = strrchr(cand, '/');
		const char *last = slash + 1;
		char next[PATH_MAX];
		if (!*last || !strcmp(last, ".") || !strcmp(last, "..")) {
			if (!realpath(cand, next))
				return -errno;
		} else {
			char parent[PATH_MAX];
			*slash = '\0';
			if (!realpath(cand[0] ? cand : "/", parent))
				return -errno;
			if (path_join(next, sizeof next, parent, last) < 0)
				return -ENAMETOOLONG;
		}
		if ((rc = chain_push(c, next)) < 0)
			return rc;
		if (lstat(next, &c->st) < 0)
			return -errno;
		if (!S_ISLNK(c->st.st_mode))
			return 0;
	}
	return rc;
}

enum walk_kind {
	WALK_FOLDER,   /* a plain folder: files, folders, links inside it */
	WALK_SNAPSHOT, /* snapshots/<commit>: links into blobs/, or files (copy mode) */
	WALK_NOEXIST,  /* .no_exist/<commit>: empty marker files, only their names read */
	WALK_REFS,     /* refs/: files holding a commit hash */
};

typedef struct walker {
	enum walk_kind kind;
	const char *root;       /* resolved: the folder walked (links may not leave it) */
	const char *show;       /* how messages name it */
	int follow_links;       /* WALK_FOLDER: links that leave the folder are followed */
	const char *repo_real;  /* WALK_SNAPSHOT: the repo folder, resolved */
	const char *cache_real; /* WALK_SNAPSHOT: the cache it is in (shared blob store) */
	src_snapshot *sn;       /* WALK_FOLDER, _SNAPSHOT, _NOEXIST: what is collected */
	src_snapshot *snaps;    /* WALK_REFS: the repo's snapshots, to attach refs to */
	size_t n_snaps;
	char **skipped;         /* WALK_FOLDER: .git / .cache entries left out */
	size_t n_skipped, cap_skipped;
	/* the folders being walked, outermost first: a link back to one is a loop */
	dev_t dev[DEPTH_MAX + 2];
	ino_t ino[DEPTH_MAX + 2];
	int depth;
	mfs_errmsg *err;
} walker;

static int walk_dir(walker *w, const char *real_dir, const char *rel);

/* The files ingest leaves out of a plain folder (git's and huggingface_hub's bookkeeping). */
static int is_skipped_name(const char *name)
{
	return !strcmp(name, ".git") || !strcmp(name, ".cache");
}

static int add_file(src_snapshot *sn, const char *rel, const char *abs, const struct stat *st,
		    const char *etag)
{
	src_file *files = mfs_grow(sn->files, &sn->cap_files, sn->n_files, sizeof *files, 16);
	if (!files)
		return -ENOMEM;
	sn->files = files;
	src_file *f = &sn->files[sn->n_files];
	memset(f, 0, sizeof *f);
	f->rel = strdup(rel);
	f->abs = strdup(abs);
	/* the store keeps one bit of the mode: executable or not */
	f->mode = (st->st_mode & 0111) ? 0555 : 0444;
	f->size = (uint64_t)st->st_size;
	if (etag)
		snprintf(f->etag, sizeof f->etag, "%s", etag);
	if (!f->rel || !f->abs) {
		free(f->rel);
		free(f->abs);
		return -ENOMEM;
	}
	sn->n_files++;
	return 0;
}

/*
 * An error about a link: "<source>/<rel> is a symlink to "<target>"<why>",
 * the names quoted; @p why_fmt may hold one %s, filled with @p arg quoted.
 */
static int link_error(walker *w, int code, const char *rel, const link_chain *ch,
		      const char *why_fmt, const char *arg)
{
	char qn[4 * SHOW_MAX], qt[4 * SHOW_MAX], qa[4 * SHOW_MAX], why[1024];
	mfs_str_quote(rel, SHOW_MAX, qn, sizeof qn);
	mfs_str_quote(ch->target, SHOW_MAX, qt, sizeof qt);
	mfs_str_quote(arg ? arg : "", SHOW_MAX, qa, sizeof qa);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(why, sizeof why, why_fmt, qa);
#pragma GCC diagnostic pop
	return mfs_err(w->err, code, "%s/%s is a symlink to \"%s\"%s", w->show, qn, qt, why);
}

/* An error about a link that chain_follow could not follow to its end. */
static int chain_error(walker *w, const char *rel, const link_chain *ch, int rc)
{
	if (rc == -ENOENT || rc == -ENOTDIR)
		return link_error(w, MFS_E_INVAL, rel, ch,
				  ", which does not exist (a dangling link): restore its target "
				  "or remove the link%s",
				  NULL);
	if (rc == -ELOOP) {
		char n[16];
		snprintf(n, sizeof n, "%d", LINK_HOPS_MAX);
		return link_error(w, MFS_E_INVAL, rel, ch,
				  " that never ends (a symlink loop, or more than %s links in a "
				  "row): fix or remove the link",
				  n);
	}
	return link_error(w, rc, rel, ch, ": cannot follow it: %s", mfs_strerror(rc));
}

/* An entry that is not what this place holds. */
static int kind_error(walker *w, const char *rel, mode_t m, const char *expected,
		      const char *what_to_do)
{
	char qn[4 * SHOW_MAX];
	mfs_str_quote(rel, SHOW_MAX, qn, sizeof qn);
	return mfs_err(w->err, MFS_E_INVAL, "%s/%s is %s, not %s: %s", w->show, qn,
		       mfs_src_kind_name(m), expected, what_to_do);
}

/* <cache>/blobs/<2 hex>/<64 hex>, the 2 hex being the hash's first two. */
static int is_shared_blob(const char *p, const char *cache_real)
{
	char dir[PATH_MAX];
	if (path_join(dir, sizeof dir, cache_real, "blobs") < 0 || !path_inside(p, dir))
		return 0;
	const char *rest = p + strlen(dir) + 1;
	return strlen(rest) == 67 && rest[2] == '/' && is_hex(rest + 3, 64) &&
	       !strncmp(rest, rest + 3, 2);
}

/* A snapshot entry that is a link: it must end in this repo (or the shared blob store). */
static int snapshot_link(walker *w, const char *abs, const char *rel)
{
	link_chain ch;
	int rc = chain_follow(abs, &ch);
	if (rc < 0) {
		rc = chain_error(w, rel, &ch, rc);
		chain_free(&ch);
		return rc;
	}
	char blobs[PATH_MAX];
	if (path_join(blobs, sizeof blobs, w->repo_real, "blobs") < 0) {
		chain_free(&ch);
		return -ENAMETOOLONG;
	}
	const char *end = ch.hop[ch.n - 1];
	/* every hop but the last stays in the repo folder; the last too, or it is
	 * the shared blob a per-repo blob links to (huggingface_hub 2.x) */
	size_t bad = 0;
	for (size_t i = 1; i + 1 < ch.n && !bad; i++)
		if (!path_inside(ch.hop[i], w->repo_real))
			bad = i;
	if (!bad && !path_inside(end, w->repo_real) &&
	    !(ch.n >= 3 && path_child_of(ch.hop[ch.n - 2], blobs) &&
	      is_shared_blob(end, w->cache_real)))
		bad = ch.n - 1;
	if (bad) {
		rc = link_error(w, MFS_E_INVAL, rel, &ch,
				", which leads out of the repo folder (to %s): a hub snapshot "
				"links only into its repo's blobs/ (or the cache's shared "
				"blobs/); refusing to ingest it",
				ch.hop[bad]);
		chain_free(&ch);
		return rc;
	}
	if (!S_ISREG(ch.st.st_mode)) {
		rc = link_error(w, MFS_E_INVAL, rel, &ch,
				", which is %s, not a regular file: a hub snapshot links only to "
				"blob files; the cache is damaged",
				mfs_src_kind_name(ch.st.st_mode));
		chain_free(&ch);
		return rc;
	}
	/* the blob's name is its etag: the first hop in blobs/ named by a hash */
	const char *etag = NULL;
	for (size_t i = 1; i < ch.n && !etag; i++) {
		const char *name = path_child_of(ch.hop[i], blobs);
		if (name && (is_hex(name, 64) || is_hex(name, 40)))
			etag = name;
	}
	rc = add_file(w->sn, rel, end, &ch.st, etag);
	chain_free(&ch);
	return rc;
}

/* A plain folder's link: followed when it stays inside (or --follow-links). */
static int folder_link(walker *w, const char *abs, const char *rel)
{
	link_chain ch;
	int rc = chain_follow(abs, &ch);
	if (rc < 0) {
		rc = chain_error(w, rel, &ch, rc);
		chain_free(&ch);
		return rc;
	}
	const char *end = ch.hop[ch.n - 1];
	size_t bad = 0;
	for (size_t i = 1; i < ch.n && !bad && !w->follow_links; i++)
		if (!path_inside(ch.hop[i], w->root))
			bad = i;
	if (bad) {
		rc = link_error(w, MFS_E_INVAL, rel, &ch,
				", which leads out of the folder (to %s): links that leave the "
				"source are not followed; pass --follow-links to follow them (a "
				"local_dir written by an older huggingface_hub links into the "
				"user's cache)",
				ch.hop[bad]);
	} else if (S_ISREG(ch.st.st_mode)) {
		rc = add_file(w->sn, rel, end, &ch.st, NULL);
	} else if (S_ISDIR(ch.st.st_mode)) {
		for (int i = 0; i < w->depth; i++)
			if (w->dev[i] == ch.st.st_dev && w->ino[i] == ch.st.st_ino) {
				rc = link_error(w, MFS_E_INVAL, rel, &ch,
						", a folder that holds it (a symlink loop): "
						"remove the link%s",
						NULL);
				break;
			}
		if (rc == 0)
			rc = walk_dir(w, end, rel);
	} else {
		rc = link_error(w, MFS_E_INVAL, rel, &ch,
				", which is %s, not a regular file: only regular files can be "
				"ingested; remove the link",
				mfs_src_kind_name(ch.st.st_mode));
	}
	chain_free(&ch);
	return rc;
}

/* refs/<rel>: a regular file holding a 40-hex commit hash. */
static int read_ref(walker *w, int dfd, const char *name, const char *rel)
{
	mfs_errmsg why = {0};
	char qn[4 * SHOW_MAX];
	mfs_str_quote(rel, SHOW_MAX, qn, sizeof qn);
	if (mfs_ref_name_check(rel, &why) < 0)
		return mfs_err(w->err, MFS_E_INVAL, "%s/%s: %s; rename or remove that file",
			       w->show, qn, why.msg);
	/* O_NONBLOCK|O_NOFOLLOW: whatever replaced the file since it was listed
	 * (a FIFO, a link) neither blocks nor leads elsewhere */
	int fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return mfs_err(w->err, -errno, "cannot open ref %s/%s: %s", w->show, qn,
			       strerror(errno));
	struct stat st = {0};
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return kind_error(w, rel, st.st_mode, "a regular file",
				  "a ref is a file holding a commit hash; remove it");
	}
	char buf[128] = {0};
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (n != MFS_COMMIT_LEN || !is_hex(buf, MFS_COMMIT_LEN))
		return mfs_err(w->err, MFS_E_FORMAT,
			       "ref %s/%s does not hold a 40-hex commit hash: the cache is damaged",
			       w->show, qn);
	for (size_t i = 0; i < w->n_snaps; i++)
		if (!strcmp(w->snaps[i].commit, buf))
			return mfs_src_push_str(&w->snaps[i].refs, &w->snaps[i].n_refs,
					&w->snaps[i].cap_refs, rel);
	return 0; /* a ref to a commit with no snapshot here: nothing to serve */
}

/* One entry of a folder being walked (@p st: its lstat). */
static int walk_entry(walker *w, int dfd, const char *abs, const char *rel, const char *name,
		      const struct stat *st)
{
	switch (w->kind) {
	case WALK_FOLDER:
		if (is_skipped_name(name)) {
			char shown[4096];
			snprintf(shown, sizeof shown, "%s%s", rel, S_ISDIR(st->st_mode) ? "/" : "");
			return mfs_src_push_str(&w->skipped, &w->n_skipped, &w->cap_skipped, shown);
		}
		if (S_ISDIR(st->st_mode))
			return walk_dir(w, abs, rel);
		if (S_ISREG(st->st_mode))
			return add_file(w->sn, rel, abs, st, NULL);
		if (S_ISLNK(st->st_mode))
			return folder_link(w, abs, rel);
		return kind_error(w, rel, st->st_mode, "a regular file",
				  "only regular files can be ingested; remove it from the folder");
	case WALK_SNAPSHOT:
		if (S_ISDIR(st->st_mode))
			return walk_dir(w, abs, rel);
		if (S_ISREG(st->st_mode)) /* a cache written in copy mode */
			return add_file(w->sn, rel, abs, st, NULL);
		if (S_ISLNK(st->st_mode))
			return snapshot_link(w, abs, rel);
		return kind_error(w, rel, st->st_mode, "a link to a blob or a regular file",
				  "the cache is damaged; remove it and download the file again");
	case WALK_NOEXIST:
		if (S_ISDIR(st->st_mode))
			return walk_dir(w, abs, rel);
		if (S_ISREG(st->st_mode))
			return mfs_src_push_str(&w->sn->noexist, &w->sn->n_noexist, &w->sn->cap_noexist,
					rel);
		return kind_error(w, rel, st->st_mode, "an empty regular file",
				  "a .no_exist marker is an empty file; remove it");
	case WALK_REFS:
		if (S_ISDIR(st->st_mode)) /* refs/pr/1 */
			return walk_dir(w, abs, rel);
		if (S_ISREG(st->st_mode))
			return read_ref(w, dfd, name, rel);
		return kind_error(w, rel, st->st_mode, "a regular file",
				  "a ref is a file holding a commit hash; remove it");
	}
	return MFS_E_INVAL;
}

/*
 * Walk the folder @p real_dir (resolved; @p rel its path in the source),
 * entries in name order so the result does not depend on the file system.
 */
static int walk_dir(walker *w, const char *real_dir, const char *rel)
{
	char qn[4 * SHOW_MAX];
	mfs_str_quote(rel[0] ? rel : ".", SHOW_MAX, qn, sizeof qn);
	if (w->depth > DEPTH_MAX)
		return mfs_err(w->err, MFS_E_INVAL,
			       "%s/%s: folders nested more than %d deep (a symlink loop?)", w->show,
			       qn, DEPTH_MAX);
	int fd = mfs_src_open_nofollow(real_dir, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
	if (fd < 0)
		return mfs_err(w->err, fd, "cannot read folder %s/%s: %s%s", w->show, qn,
			       mfs_strerror(fd),
			       fd == -ELOOP || fd == -ENOTDIR
				       ? " (it changed into a link or a file while being read)"
				       : "");
	struct stat dst;
	DIR *d = NULL;
	if (fstat(fd, &dst) < 0 || !(d = fdopendir(fd))) {
		int e = -errno;
		close(fd);
		return mfs_err(w->err, e, "cannot read folder %s/%s: %s", w->show, qn,
			       mfs_strerror(e));
	}
	w->dev[w->depth] = dst.st_dev;
	w->ino[w->depth] = dst.st_ino;
	w->depth++;
	char **names = NULL;
	size_t n = 0;
	int rc = mfs_dir_names(d, &names, &n);
	if (rc < 0 && rc != -ENOMEM)
		rc = mfs_err(w->err, rc, "cannot read folder %s/%s: %s", w->show, qn,
			     mfs_strerror(rc));
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char crel[4096], cabs[PATH_MAX];
		if (path_join(crel, sizeof crel, rel, names[i]) < 0 ||
		    path_join(cabs, sizeof cabs, real_dir, names[i]) < 0) {
			rc = mfs_err(w->err, -ENAMETOOLONG, "%s/%s/%.60s...: path too long", w->show,
				     qn, names[i]);
			break;
		}
		struct stat st;
		if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			char qc[4 * SHOW_MAX];
			mfs_str_quote(crel, SHOW_MAX, qc, sizeof qc);
			rc = mfs_err(w->err, -errno, "cannot stat %s/%s: %s", w->show, qc,
				     strerror(errno));
			break;
		}
		rc = walk_entry(w, dirfd(d), cabs, crel, names[i], &st);
	}
	closedir(d);
	w->depth--;
	mfs_dir_names_free(names, n);
	return rc;
}

/*
 * One folder a repo folder holds (snapshots, refs, blobs, .no_exist, or one
 * commit's folder in them): *present = 0 when it does not exist; a link or
 * anything but a directory is refused, naming it.
 */
static int hf_subdir(const char *dir, const char *show, const char *name, int *present,
		     mfs_errmsg *err)
{
	char p[PATH_MAX];
	struct stat st;
	*present = 0;
	if (path_join(p, sizeof p, dir, name) < 0)
		return mfs_err(err, -ENAMETOOLONG, "%s/%s: path too long", show, name);
	if (lstat(p, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return mfs_err(err, -errno, "cannot stat %s/%s: %s", show, name, strerror(errno));
	}
	if (S_ISLNK(st.st_mode)) {
		char t[4096], qt[4 * SHOW_MAX];
		ssize_t n = readlink(p, t, sizeof t - 1);
		t[n < 0 ? 0 : n] = '\0';
		mfs_str_quote(t, SHOW_MAX, qt, sizeof qt);
		return mfs_err(err, MFS_E_INVAL,
			       "%s/%s is a symlink to \"%s\": huggingface_hub writes a real folder "
			       "here, and a link could lead out of the cache; refusing to ingest "
			       "it",
			       show, name, qt);
	}
	if (!S_ISDIR(st.st_mode))
		return mfs_err(err, MFS_E_INVAL,
			       "%s/%s is %s, not a directory: the cache is damaged", show, name,
			       mfs_src_kind_name(st.st_mode));
	*present = 1;
	return 0;
}


void mfs_src_hf_repo_free(hf_repo *r)
{
	for (size_t i = 0; i < r->n_snaps; i++)
		mfs_src_snapshot_free(&r->snaps[i]);
	free(r->snaps);
	memset(r, 0, sizeof *r);
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

/*
 * Collect one HF cache repo folder @p dir (models--org--name): its snapshots
 * (each entry a link into blobs/, checked), .no_exist names and refs.  The
 * cache whose shared blob store the blobs may link into is the folder's
 * parent.
 */
int mfs_src_collect_hf_repo(const char *dir, hf_repo *out, mfs_errmsg *err)
{
	memset(out, 0, sizeof *out);
	const char *base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	int rc = hf_repo_id(base, out->repo, err);
	if (rc < 0)
		return rc;
	char repo_real[PATH_MAX], cache_real[PATH_MAX];
	if (!realpath(dir, repo_real))
		return mfs_err(err, -errno, "cannot read %s: %s", dir, strerror(errno));
	snprintf(cache_real, sizeof cache_real, "%s", repo_real);
	*strrchr(cache_real, '/') = '\0';
	if (!cache_real[0])
		strcpy(cache_real, "/");
	int present;
	static const char *const parts[] = {"blobs", "refs", ".no_exist", "snapshots"};
	for (size_t i = 0; i < 4; i++)
		if ((rc = hf_subdir(repo_real, base, parts[i], &present, err)) < 0)
			return rc;
	char path[PATH_MAX], show[PATH_MAX];
	snprintf(path, sizeof path, "%s/snapshots", repo_real);
	DIR *d = NULL;
	int fd = mfs_src_open_nofollow(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
	if (fd < 0 || !(d = fdopendir(fd))) {
		rc = fd < 0 ? fd : -errno;
		if (fd >= 0)
			close(fd);
		return mfs_err(err, rc, "%s: cannot read %s/snapshots: %s", dir, base,
			       mfs_strerror(rc));
	}
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!is_hex(de->d_name, MFS_COMMIT_LEN)) {
			char qn[4 * SHOW_MAX];
			mfs_str_quote(de->d_name, SHOW_MAX, qn, sizeof qn);
			rc = mfs_err(err, MFS_E_FORMAT,
				     "%s/snapshots/%s: not a 40-hex commit hash: the cache is "
				     "damaged",
				     base, qn);
			break;
		}
		src_snapshot *more = mfs_grow(out->snaps, &cap, out->n_snaps, sizeof *more, 16);
		if (!more) {
			rc = -ENOMEM;
			break;
		}
		out->snaps = more;
		memset(&out->snaps[out->n_snaps], 0, sizeof out->snaps[0]);
		strcpy(out->snaps[out->n_snaps].commit, de->d_name);
		out->n_snaps++;
	}
	closedir(d);
	for (size_t i = 0; rc == 0 && i < out->n_snaps; i++) {
		src_snapshot *sn = &out->snaps[i];
		snprintf(path, sizeof path, "%s/snapshots", repo_real);
		snprintf(show, sizeof show, "%s/snapshots", base);
		if ((rc = hf_subdir(path, show, sn->commit, &present, err)) < 0)
			break;
		snprintf(path, sizeof path, "%s/snapshots/%s", repo_real, sn->commit);
		snprintf(show, sizeof show, "%s/snapshots/%s", base, sn->commit);
		walker w = {.kind = WALK_SNAPSHOT, .root = path, .show = show,
			    .repo_real = repo_real, .cache_real = cache_real, .sn = sn, .err = err};
		if ((rc = walk_dir(&w, path, "")) < 0)
			break;
		snprintf(path, sizeof path, "%s/.no_exist", repo_real);
		snprintf(show, sizeof show, "%s/.no_exist", base);
		if ((rc = hf_subdir(path, show, sn->commit, &present, err)) < 0)
			break;
		if (!present)
			continue;
		snprintf(path, sizeof path, "%s/.no_exist/%s", repo_real, sn->commit);
		snprintf(show, sizeof show, "%s/.no_exist/%s", base, sn->commit);
		walker wn = {.kind = WALK_NOEXIST, .root = path, .show = show, .sn = sn,
			     .err = err};
		rc = walk_dir(&wn, path, "");
	}
	if (rc == 0 && (rc = hf_subdir(repo_real, base, "refs", &present, err)) == 0 && present) {
		snprintf(path, sizeof path, "%s/refs", repo_real);
		snprintf(show, sizeof show, "%s/refs", base);
		walker w = {.kind = WALK_REFS, .root = path, .show = show, .snaps = out->snaps,
			    .n_snaps = out->n_snaps, .err = err};
		rc = walk_dir(&w, path, "");
	}
	if (rc < 0)
		mfs_src_hf_repo_free(out);
	return rc;
}


/*
 * Commit id of a plain folder: SHA-1 over the sorted "path\0etag\n" list,
 * with " x" before the newline of an executable file: a commit id names its
 * modes too (as a git tree does), and folders without one keep their ids.
 */
void mfs_src_folder_commit_id(const src_snapshot *sn, char **etags, char out[41])
{
	mfs_sha1_ctx h;
	mfs_sha1_init(&h);
	mfs_sha1_update(&h, "modelfs-folder-v1\n", 18);
	for (size_t i = 0; i < sn->n_files; i++) {
		mfs_sha1_update(&h, sn->files[i].rel, strlen(sn->files[i].rel) + 1);
		mfs_sha1_update(&h, etags[i], strlen(etags[i]));
		if (sn->files[i].mode & 0111)
			mfs_sha1_update(&h, " x", 2);
		mfs_sha1_update(&h, "\n", 1);
	}
	uint8_t d[20];
	mfs_sha1_final(&h, d);
	mfs_hex(d, 20, out);
}


uint64_t mfs_src_snapshot_bytes(const src_snapshot *sn)
{
	uint64_t total = 0;
	for (size_t i = 0; i < sn->n_files; i++)
		total += sn->files[i].size;
	return total;
}

/* A models--*, datasets--* or spaces--* folder with a snapshots/ in it. */
static int is_hf_repo_dir(const char *dir)
{
	const char *base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	char p[PATH_MAX];
	struct stat st;
	snprintf(p, sizeof p, "%s/snapshots", dir);
	return (!strncmp(base, "models--", 8) || !strncmp(base, "datasets--", 10) ||
		!strncmp(base, "spaces--", 8)) &&
	       stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A plain folder: every file in it, links checked, .git and .cache left out. */
int mfs_src_collect_folder(ingest_ctx *c, const char *src, src_snapshot *sn)
{
	char root[PATH_MAX];
	if (!realpath(src, root))
		return mfs_err(c->err, -errno, "cannot read %s: %s", src, strerror(errno));
	char qs[4 * SHOW_MAX];
	mfs_str_quote(src, SHOW_MAX, qs, sizeof qs);
	walker w = {.kind = WALK_FOLDER, .root = root, .show = qs,
		    .follow_links = c->opts->follow_links, .sn = sn, .err = c->err};
	int rc = walk_dir(&w, root, "");
	if (rc == 0 && w.n_skipped) {
		char list[600] = "";
		size_t shown = 0;
		for (; shown < w.n_skipped && strlen(list) < 400; shown++) {
			char q[4 * SHOW_MAX];
			mfs_str_quote(w.skipped[shown], SHOW_MAX, q, sizeof q);
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
				 shown ? ", " : "", q);
		}
		if (shown < w.n_skipped)
			snprintf(list + strlen(list), sizeof list - strlen(list), " and %zu more",
				 w.n_skipped - shown);
		mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
			    "%s: skipped %s: .git and .cache hold git's and huggingface_hub's "
			    "bookkeeping, not files of the model",
			    qs, list);
	}
	mfs_src_free_strs(w.skipped, w.n_skipped);
	if (rc == 0 && sn->n_files == 0)
		rc = mfs_err(c->err, MFS_E_INVAL, "%s holds no files to ingest", qs);
	return rc;
}

/*
 * The repo folders of @p src: itself when it is one, else every models--*
 * (datasets--*, spaces--*) folder in it, in name order.  A repo folder that
 * is a link is refused: what it leads to is not part of this cache.
 */
int mfs_src_list_hf_repos(const char *src, char ***out, size_t *n_out, mfs_errmsg *err)
{
	char **dirs = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	*out = NULL;
	*n_out = 0;
	if (is_hf_repo_dir(src)) {
		if ((rc = mfs_src_push_str(&dirs, &n, &cap, src)) < 0)
			return rc;
		*out = dirs;
		*n_out = n;
		return 0;
	}
	DIR *d = opendir(src);
	if (!d)
		return mfs_err(err, -errno, "cannot read %s: %s", src, strerror(errno));
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		char p[PATH_MAX];
		if (path_join(p, sizeof p, src, de->d_name) < 0 || !is_hf_repo_dir(p))
			continue;
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode)) {
			char t[4096], qn[4 * SHOW_MAX], qt[4 * SHOW_MAX];
			ssize_t tl = readlink(p, t, sizeof t - 1);
			t[tl < 0 ? 0 : tl] = '\0';
			mfs_str_quote(de->d_name, SHOW_MAX, qn, sizeof qn);
			mfs_str_quote(t, SHOW_MAX, qt, sizeof qt);
			rc = mfs_err(err, MFS_E_INVAL,
				     "%s/%s is a symlink to \"%s\": a repo folder outside the cache "
				     "is not part of it; ingest that folder itself if you trust it",
				     src, qn, qt);
			break;
		}
		rc = mfs_src_push_str(&dirs, &n, &cap, p);
	}
	closedir(d);
	if (rc == 0 && n == 0)
		rc = mfs_err(err, MFS_E_INVAL,
			     "%s is neither a Hugging Face cache (no models--ORG--NAME "
			     "folders) nor a repo folder: to ingest a plain folder of "
			     "model files, give --repo ORG/NAME",
			     src);
	if (rc < 0) {
		mfs_src_free_strs(dirs, n);
		return rc;
	}
	if (n)
		qsort(dirs, n, sizeof *dirs, cmp_str);
	*out = dirs;
	*n_out = n;
	return 0;
}

