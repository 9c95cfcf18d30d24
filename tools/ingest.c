/*
 * ingest.c - sources (HF cache, plain folder) -> chunks -> encoder pool -> store.
 */
#include "ingest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "twin.h"
#include "cli.h"
#include "clock.h"
#include "fsutil.h"
#include "grow.h"
#include "progress.h"
#include "safetensors.h"
#include "sha256.h"
#include "units.h"

/* Commit the write transaction once this much new payload is in it. */
#define TXN_BYTES ((uint64_t)64 << 20)
/* Files at least this large are LFS files on the hub (etag = sha256). */
#define LFS_MIN_SIZE ((uint64_t)10 << 20)

/* ---------------------------------------------------------------- sources */

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
 *   one component at a time with O_NOFOLLOW (open_nofollow): a folder that
 *   became a link after the check makes the open fail, it does not lead out.
 * - Files are opened O_NONBLOCK and checked with fstat: only regular files are
 *   read, so a FIFO, a socket or a device never blocks ingest.
 */

/* Symlinks followed in one chain at most (the kernel's MAXSYMLINKS). */
#define LINK_HOPS_MAX 40
/* Folders nested at most this deep in a source. */
#define DEPTH_MAX 32
/* A Git LFS pointer file is small text (the spec: under 1024 bytes). */
#define LFS_POINTER_MAX 1024
#define LFS_POINTER_PREFIX "version https://git-lfs.github.com/spec/v1"
/* Bytes of a name or a link target shown in a message. */
#define SHOW_MAX 160

typedef struct src_file {
	char *rel;              /* path inside the snapshot */
	char *abs;              /* resolved path to open: no symlink in it */
	char etag[MFS_ETAG_MAX + 1]; /* known (HF cache) or empty (computed) */
	uint32_t mode;          /* 0555 when the file has an x bit, else 0444 */
	uint64_t size;          /* when collected (for the progress bar) */
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

static void free_strs(char **a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i]);
	free(a);
}

static void snapshot_free(src_snapshot *sn)
{
	for (size_t i = 0; i < sn->n_files; i++) {
		free(sn->files[i].rel);
		free(sn->files[i].abs);
	}
	free(sn->files);
	free_strs(sn->noexist, sn->n_noexist);
	free_strs(sn->refs, sn->n_refs);
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
static const char *kind_name(mode_t m)
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
static int open_nofollow(const char *abs, int flags)
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
	return mfs_err(w->err, MFS_E_INVAL, "%s/%s is %s, not %s: %s", w->show, qn, kind_name(m),
		       expected, what_to_do);
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
				kind_name(ch.st.st_mode));
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
				kind_name(ch.st.st_mode));
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
			return push_str(&w->snaps[i].refs, &w->snaps[i].n_refs,
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
			return push_str(&w->skipped, &w->n_skipped, &w->cap_skipped, shown);
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
			return push_str(&w->sn->noexist, &w->sn->n_noexist, &w->sn->cap_noexist,
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
	int fd = open_nofollow(real_dir, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
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
			       kind_name(st.st_mode));
	*present = 1;
	return 0;
}

/* One HF cache repo folder, collected: every snapshot in it. */
typedef struct hf_repo {
	char repo[MFS_REPO_ID_MAX + 1];
	src_snapshot *snaps;
	size_t n_snaps;
} hf_repo;

static void hf_repo_free(hf_repo *r)
{
	for (size_t i = 0; i < r->n_snaps; i++)
		snapshot_free(&r->snaps[i]);
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
static int collect_hf_repo(const char *dir, hf_repo *out, mfs_errmsg *err)
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
	int fd = open_nofollow(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
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
		hf_repo_free(out);
	return rc;
}

/* --------------------------------------------------------------- pipeline */

typedef struct tensor_state {
	int decided;
	mfs_codec_id codec;        /* stand-alone codec */
	int delta;                 /* 1: its chunks are xor-deltas against the base */
	double alone_ratio;        /* stand-alone stored / raw on its first chunk */
	int base_failed;           /* a base chunk could not be used (noted once) */
} tensor_state;

typedef struct job {
	/* in */
	uint8_t *raw;
	size_t len;
	mfs_dtype dtype;
	int tensor;             /* index in the file's tensors, -1 for other bytes */
	int first_of_tensor;
	const mfs_st_tensor *st; /* its tensor, or NULL */
	uint64_t tin;           /* offset of the chunk in its tensor */
	const mfs_base_tensor *bt; /* the base's same tensor, or NULL */
	/* out */
	mfs_chunk_key key;
	int exists;
	uint8_t *enc;
	size_t enc_cap, enc_len;
	mfs_codec_id codec;
	int has_ref;            /* an xor-delta against ref */
	mfs_chunk_ref ref;
	int base_rc;            /* why the base chunk could not be used (< 0), or 0 */
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

/* Slack of the codec choice (docs/codecs.md): a delta must save this much more. */
#define DELTA_SLACK 0.01

static int choose_codec(pool *p, job *j, mfs_codec_ws *ws, mfs_codec_id *out,
			size_t *stored)
{
	mfs_encode_params ep = {.dtype = j->dtype, .zstd_level = p->opts->zstd_level};
	*stored = j->len;
	if (p->opts->force_codec >= 0 && j->tensor >= 0) {
		*out = (mfs_codec_id)p->opts->force_codec;
		return 0;
	}
	mfs_codec_trial tr[8];
	size_t n_tr = 8;
	int rc = mfs_codec_choose(&ep, j->raw, j->len, ws, out, tr, &n_tr);
	for (size_t i = 0; rc == 0 && i < n_tr; i++)
		if (tr[i].id == *out)
			*stored = tr[i].stored_len;
	/* --gpu-codecs: the same planes, coded so a GPU decodes them (within 2%
	 * of bitplane-huff's size, docs/codecs.md) */
	if (rc == 0 && p->opts->gpu_codecs && *out == MFS_CODEC_BITPLANE_HUFF)
		*out = MFS_CODEC_RANS;
	return rc;
}

/* The chunk's place in its tensor (recorded with deltas). */
static void job_geom(const job *j, mfs_chunk_geom *g)
{
	memset(g, 0, sizeof *g);
	g->dtype = j->dtype;
	if (!j->st)
		return;
	g->ndim = j->st->ndim;
	memcpy(g->shape, j->st->shape, sizeof g->shape);
	unsigned bits = mfs_dtype_bits(j->dtype);
	g->elem_off = bits ? j->tin * 8 / bits : 0;
}

/*
 * Encode one chunk (an xor-delta when @p base is given), fall back to raw
 * when nothing is gained, and check it decodes.
 */
static int encode_chunk(pool *p, job *j, const uint8_t *base, mfs_codec_ws *ws)
{
	mfs_ref_data rd = {.role = MFS_REF_BASE, .data = base, .len = j->len};
	mfs_chunk_geom g;
	job_geom(j, &g);
	mfs_encode_params ep = {.dtype = j->dtype, .zstd_level = p->opts->zstd_level,
				.geom = &g, .refs = base ? &rd : NULL, .n_refs = base ? 1 : 0};
	j->has_ref = base != NULL;
	int rc = mfs_codec_encode(j->codec, &ep, j->raw, j->len, j->enc, j->enc_cap, &j->enc_len,
				  ws);
	if (rc == MFS_E_UNSUPPORTED && !base) {
		/* a forced codec that does not apply to this dtype: the general one */
		j->codec = MFS_CODEC_ZSTD;
		rc = mfs_codec_encode(j->codec, &ep, j->raw, j->len, j->enc, j->enc_cap,
				      &j->enc_len, ws);
	}
	if (rc < 0)
		return rc;
	if (j->enc_len >= j->len && j->codec != MFS_CODEC_RAW) {
		j->codec = MFS_CODEC_RAW;
		j->has_ref = 0;
		memcpy(j->enc, j->raw, j->len);
		j->enc_len = j->len;
	}
	/* A wrong byte is worse than an error: prove the payload decodes exactly. */
	uint8_t *chk = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_CHUNK, j->len ? j->len : 1);
	if (!chk)
		return -ENOMEM;
	mfs_decode_req rq = {.src = j->enc, .src_len = j->enc_len, .dst = chk, .dst_len = j->len,
			     .geom = &g, .refs = j->has_ref ? &rd : NULL,
			     .n_refs = j->has_ref ? 1 : 0};
	rc = mfs_codec_decode(j->codec, &rq, ws);
	if (rc < 0 || memcmp(chk, j->raw, j->len) != 0)
		return MFS_E_CORRUPT;
	return 0;
}

/*
 * The base's bytes for this chunk, decoded into the workspace's REF slot, or
 * NULL (no base tensor, no base chunk holding the range, or one that cannot
 * be used: j->base_rc says why).
 */
static const uint8_t *job_base(pool *p, job *j, mfs_codec_ws *ws)
{
	if (!j->bt || mfs_base_chunk_ref(j->bt, j->tin, (uint32_t)j->len, &j->ref) < 0)
		return NULL;
	mfs_txn *t;
	const uint8_t *bytes = NULL;
	int rc = mfs_txn_begin(p->store, MFS_TXN_READ, &t);
	if (rc == 0) {
		rc = mfs_base_ref_resolve(t, &j->ref, ws, MFS_WS_SLOT_REF, &bytes);
		mfs_txn_abort(t);
	}
	if (rc < 0) {
		j->base_rc = rc;
		return NULL;
	}
	return bytes;
}

/*
 * Encode a tensor's first chunk: the stand-alone choice, then, with a base,
 * the xor-delta, kept when it saves more than the slack; the decision holds
 * for the whole tensor.
 */
static int first_chunk(pool *p, job *j, tensor_state *ts, mfs_codec_ws *ws)
{
	size_t alone = 0;
	int rc = choose_codec(p, j, ws, &ts->codec, &alone);
	if (rc < 0)
		return rc;
	ts->alone_ratio = j->len ? (double)alone / (double)j->len : 1.0;
	const uint8_t *base = p->opts->force_codec < 0 ? job_base(p, j, ws) : NULL;
	if (base) {
		j->codec = MFS_CODEC_XOR_DELTA;
		rc = encode_chunk(p, j, base, ws);
		if (rc == 0 && j->has_ref &&
		    (double)j->enc_len + DELTA_SLACK * (double)j->len < (double)alone) {
			ts->delta = 1;
			return 0;
		}
		if (rc < 0 && rc != MFS_E_UNSUPPORTED && rc != MFS_E_INVAL)
			return rc;
	}
	j->codec = ts->codec;
	return encode_chunk(p, j, NULL, ws);
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
	if (ts && j->first_of_tensor) {
		if (j->exists) {
			/* nothing to sample: the tensor's other chunks decide one by one
			 * (a tensor partly equal to its base: the rest may be deltas) */
			ts->codec = j->codec;
			ts->alone_ratio = j->len ? (double)v.payload_len / (double)j->len : 1;
			const mfs_codec *sc = mfs_codec_get(j->codec);
			if (j->bt || !sc || (sc->flags & MFS_CODEC_NEEDS_REF))
				ts->delta = 2;
		} else {
			j->rc = first_chunk(p, j, ts, ws);
		}
		pthread_mutex_lock(&p->mu);
		ts->decided = 1;
		pthread_cond_broadcast(&p->cv_done);
		pthread_mutex_unlock(&p->mu);
		return;
	}
	if (j->exists)
		return;
	mfs_codec_id codec = MFS_CODEC_ZSTD;
	int delta = 0;
	if (ts) {
		pthread_mutex_lock(&p->mu);
		while (!ts->decided)
			pthread_cond_wait(&p->cv_done, &p->mu);
		codec = ts->codec;
		delta = ts->delta;
		pthread_mutex_unlock(&p->mu);
		if (delta == 2) {
			tensor_state one = {0};
			j->rc = first_chunk(p, j, &one, ws);
			return;
		}
	} else {
		size_t alone;
		if ((j->rc = choose_codec(p, j, ws, &codec, &alone)) < 0)
			return;
	}
	const uint8_t *base = delta ? job_base(p, j, ws) : NULL;
	if (base) {
		j->codec = MFS_CODEC_XOR_DELTA;
		j->rc = encode_chunk(p, j, base, ws);
		if (j->rc == 0)
			return;
		if (j->rc != MFS_E_UNSUPPORTED && j->rc != MFS_E_INVAL)
			return;
	}
	j->codec = codec;
	j->rc = encode_chunk(p, j, NULL, ws);
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
	mfs_base *base;         /* the snapshot's base, or NULL */
	char twin_hp[MFS_REPO_ID_MAX + 1]; /* the snapshot's pair: high-precision side */
	char twin_q[MFS_REPO_ID_MAX + 1];  /* ... and quantized side ("" for none) */
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

/* Hand a line to the caller's note callback (the bar is erased first). */
static void ingest_note(ingest_ctx *c, mfs_ingest_note_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void ingest_note(ingest_ctx *c, mfs_ingest_note_kind kind, const char *fmt, ...)
{
	if (!c->opts->note)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	mfs_progress_end(&c->progress);
	c->opts->note(c->opts->note_ud, kind, line);
}

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
	const mfs_base_tensor **bt; /* per tensor: the base's, or NULL */
	uint8_t *t_new;             /* per tensor: some chunk of it was new */
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
		mfs_chunk_geom g;
		job_geom(j, &g);
		mfs_chunk_meta m = {.codec = j->codec,
				    .raw_len = (uint32_t)j->len,
				    .n_refs = j->has_ref ? 1 : 0,
				    .refs = j->has_ref ? &j->ref : NULL,
				    .geom = j->has_ref ? &g : NULL};
		rc = mfs_chunk_put(c->txn, &j->key, &m, j->enc, j->enc_len, &existed);
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
		tensor_state *ts = &c->pool.tensors[j->tensor];
		ti->stored_len += j->enc_len;
		if (ti->n_extents == 0) {
			ti->first_extent = fs->n_extents - 1;
			ti->codec = ts->codec;
		}
		ti->n_extents++;
		if (!j->exists)
			fs->t_new[j->tensor] = 1;
		if (j->has_ref || (j->exists && j->codec == MFS_CODEC_XOR_DELTA)) {
			ti->codec = MFS_CODEC_XOR_DELTA;
			ti->base = c->base ? c->base->repo : NULL;
		}
		if (j->base_rc < 0 && !ts->base_failed) {
			ts->base_failed = 1;
			char hex[33], qn[4 * SHOW_MAX];
			mfs_str_quote(ti->name, SHOW_MAX, qn, sizeof qn);
			if (j->base_rc == MFS_E_UNSUPPORTED)
				ingest_note(c, MFS_INGEST_NOTE,
					    "%s: tensor %s: the base's chunks are residuals of a "
					    "quantized twin (no xor-delta can refer to them): its "
					    "chunks are stored alone",
					    fs->rel, qn);
			else
				ingest_note(c, MFS_INGEST_WARNING,
					    "%s: tensor %s: the base's chunk %s cannot be used (%s): "
					    "the chunks it would serve are stored alone; run "
					    "`modelfs verify` on %s",
					    fs->rel, qn, mfs_chunk_key_hex(&j->ref.key, hex),
					    mfs_strerror(j->base_rc),
					    c->base ? c->base->repo : "the base");
		}
	}
	if (c->txn && c->txn_bytes >= TXN_BYTES) {
		if ((rc = txn_commit(c)) < 0)
			return mfs_err(c->err, rc, "committing to the store failed: %s",
				       mfs_strerror(rc));
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
	free(fs->bt);
	free(fs->t_new);
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
		if ((rc = mfs_pread_full(fd, first8, 8, 0, MFS_E_FORMAT, NULL)) < 0)
			return mfs_err(c->err, rc, "%s: cannot read: %s", abs, mfs_strerror(rc));
		if ((rc = mfs_st_header_len(first8, size, &hlen, fs->rel, c->err)) < 0)
			return rc;
		char *json = malloc(hlen + 1);
		if (!json)
			return -ENOMEM;
		if ((rc = mfs_pread_full(fd, json, hlen, 8, MFS_E_FORMAT, NULL)) < 0) {
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
		size_t nt = fs->st.n_tensors ? fs->st.n_tensors : 1;
		fs->tinfo = calloc(nt, sizeof *fs->tinfo);
		fs->bt = calloc(nt, sizeof *fs->bt);
		fs->t_new = calloc(nt, 1);
		if (!fs->tinfo || !fs->bt || !fs->t_new)
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
			if (c->base)
				fs->bt[i] = mfs_base_match(c->base, t->name, t->dtype, t->ndim,
							   t->shape);
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
 * A Git LFS pointer (a clone without `git lfs pull`) where a file should be:
 * refused for safetensors (nothing could read it), stored as it is with a
 * warning for other LFS-type files (those bytes are what the repo holds).
 */
static int check_lfs_pointer(ingest_ctx *c, const src_file *sf, int fd, uint64_t size)
{
	char head[sizeof LFS_POINTER_PREFIX - 1];
	if (size > LFS_POINTER_MAX || size < sizeof head || mfs_pread_full(fd, head, sizeof head, 0, MFS_E_FORMAT, NULL) ||
	    memcmp(head, LFS_POINTER_PREFIX, sizeof head))
		return 0;
	char qn[4 * SHOW_MAX];
	mfs_str_quote(sf->rel, SHOW_MAX, qn, sizeof qn);
	size_t rl = strlen(sf->rel);
	if (rl > 12 && !strcmp(sf->rel + rl - 12, ".safetensors"))
		return mfs_err(c->err, MFS_E_FORMAT,
			       "%s is a Git LFS pointer, not the file (%llu bytes): fetch the real "
			       "file (git lfs pull) and ingest again",
			       qn, (unsigned long long)size);
	if (is_lfs_name(sf->rel))
		ingest_note(c, MFS_INGEST_WARNING,
			    "%s is a Git LFS pointer, not the file (%llu bytes): stored as it is; "
			    "fetch the real file (git lfs pull) and ingest again if you need it",
			    qn, (unsigned long long)size);
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
	/* sf->abs was checked when collected: open it without following a link
	 * again, and O_NONBLOCK so that a FIFO put there since cannot hang us */
	char qn[4 * SHOW_MAX], qa[4 * SHOW_MAX];
	mfs_str_quote(sf->rel, SHOW_MAX, qn, sizeof qn);
	mfs_str_quote(sf->abs, SHOW_MAX, qa, sizeof qa);
	int fd = open_nofollow(sf->abs, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return mfs_err(c->err, fd, "%s: cannot open %s: %s%s", qn, qa, mfs_strerror(fd),
			       fd == -ELOOP || fd == -ENOTDIR
				       ? " (a part of the path became a symlink since it was "
					 "checked: the source changed during ingest)"
				       : "");
	struct stat st0 = {0};
	if (fstat(fd, &st0) < 0 || !S_ISREG(st0.st_mode)) {
		close(fd);
		return mfs_err(c->err, MFS_E_INVAL,
			       "%s (%s) is %s, not a regular file: only regular files can be "
			       "ingested",
			       qn, qa, kind_name(st0.st_mode));
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	uint64_t size = (uint64_t)st0.st_size;
	if ((rc = check_lfs_pointer(c, sf, fd, size)) < 0) {
		close(fd);
		return rc;
	}
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
			rc = mfs_pread_full(fd, j->raw, len, off, MFS_E_FORMAT, NULL);
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
			j->st = sp->tensor >= 0 ? &fs.st.tensors[sp->tensor] : NULL;
			j->tin = in;
			j->bt = sp->tensor >= 0 ? fs.bt[sp->tensor] : NULL;
			j->has_ref = 0;
			j->base_rc = 0;
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
	for (size_t i = 0; i < br.n_tensors; i++) {
		mfs_tensor_info *ti = &fs.tinfo[i];
		if (ti->base) {
			ti->alone_len = (uint64_t)(c->pool.tensors[i].alone_ratio * (double)ti->raw_len);
			c->stats->tensors_delta++;
			c->stats->delta_stored += ti->stored_len;
			c->stats->delta_alone += ti->alone_len;
		} else if (!fs.t_new[i] && ti->n_extents) {
			c->stats->tensors_same++;
		}
	}
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

/*
 * Commit id of a plain folder: SHA-1 over the sorted "path\0etag\n" list,
 * with " x" before the newline of an executable file: a commit id names its
 * modes too (as a git tree does), and folders without one keep their ids.
 */
static void folder_commit_id(const src_snapshot *sn, char **etags, char out[41])
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

/* ------------------------------------------------------------ base choice */

/* The fine-tune's tensors, read from its safetensors headers before ingest. */
typedef struct want_list {
	mfs_st_header *hdr; /* one per file (is_st[i] says which parsed) */
	uint8_t *is_st;
	mfs_base_want *w;
	size_t n, cap;
} want_list;

static void want_free(want_list *wl, size_t n_files)
{
	for (size_t i = 0; wl->hdr && wl->is_st && i < n_files; i++)
		if (wl->is_st[i])
			mfs_st_header_free(&wl->hdr[i]);
	free(wl->hdr);
	free(wl->is_st);
	free(wl->w);
}

static int is_st_name(const char *rel)
{
	size_t n = strlen(rel);
	return n > 12 && !strcmp(rel + n - 12, ".safetensors");
}

/* Parse the header of file @p i (a safetensors file); a bad one is skipped:
 * ingest reports it when it reads the file. */
static void want_file(want_list *wl, const src_file *sf, size_t i)
{
	int fd = open_nofollow(sf->abs, O_RDONLY | O_NONBLOCK);
	struct stat st;
	uint8_t first8[8];
	uint64_t hlen;
	if (fd < 0)
		return;
	char *json = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 8 &&
	    mfs_pread_full(fd, first8, 8, 0, MFS_E_FORMAT, NULL) == 0 &&
	    mfs_st_header_len(first8, (uint64_t)st.st_size, &hlen, sf->rel, NULL) == 0 &&
	    (json = malloc(hlen + 1)) && mfs_pread_full(fd, json, hlen, 8, MFS_E_FORMAT, NULL) == 0 &&
	    mfs_st_parse(json, hlen, (uint64_t)st.st_size, &wl->hdr[i], sf->rel, NULL) == 0)
		wl->is_st[i] = 1;
	free(json);
	close(fd);
	for (size_t k = 0; wl->is_st[i] && k < wl->hdr[i].n_tensors; k++) {
		const mfs_st_tensor *t = &wl->hdr[i].tensors[k];
		mfs_base_want *g = mfs_grow(wl->w, &wl->cap, wl->n, sizeof *g, 64);
		if (!g)
			return;
		wl->w = g;
		wl->w[wl->n++] = (mfs_base_want){.name = t->name, .dtype = t->dtype,
						 .ndim = t->ndim, .shape = t->shape,
						 .raw_len = t->end - t->begin, .file = (int)i,
						 .off = t->begin};
	}
}

/* The tensors of every safetensors file of @p sn (headers only). */
static int want_build(const src_snapshot *sn, want_list *wl)
{
	memset(wl, 0, sizeof *wl);
	wl->hdr = calloc(sn->n_files ? sn->n_files : 1, sizeof *wl->hdr);
	wl->is_st = calloc(sn->n_files ? sn->n_files : 1, 1);
	if (!wl->hdr || !wl->is_st)
		return -ENOMEM;
	for (size_t i = 0; i < sn->n_files; i++)
		if (is_st_name(sn->files[i].rel))
			want_file(wl, &sn->files[i], i);
	return 0;
}

struct want_read {
	const src_snapshot *sn;
};

static int want_read_fn(void *ud, int file, uint64_t off, void *buf, size_t len)
{
	const struct want_read *wr = ud;
	int fd = open_nofollow(wr->sn->files[file].abs, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd;
	int rc = mfs_pread_full(fd, buf, len, off, MFS_E_FORMAT, NULL);
	close(fd);
	return rc;
}

/* A small text file at the snapshot's top (README.md, config.json), or NULL. */
static char *read_small_file(const src_snapshot *sn, const char *name)
{
	for (size_t i = 0; i < sn->n_files; i++) {
		if (strcmp(sn->files[i].rel, name) != 0)
			continue;
		int fd = open_nofollow(sn->files[i].abs, O_RDONLY | O_NONBLOCK);
		struct stat st;
		char *txt = NULL;
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size <= (off_t)1 << 20 && (txt = malloc((size_t)st.st_size + 1)) &&
		    mfs_pread_full(fd, txt, (size_t)st.st_size, 0, MFS_E_FORMAT, NULL) == 0) {
			txt[st.st_size] = '\0';
		} else {
			free(txt);
			txt = NULL;
		}
		if (fd >= 0)
			close(fd);
		return txt;
	}
	return NULL;
}

/*
 * Choose and load the snapshot's base (c->base): opts->base, or the store's
 * proposal.  Prints the choice; a --base the store does not hold, or whose
 * tensors match none of the snapshot's, is an error.
 */
static int choose_base(ingest_ctx *c, const char *repo, const src_snapshot *sn,
		       const want_list *wlp)
{
	c->stats->base[0] = '\0';
	if (c->opts->no_base)
		return 0;
	want_list wl = *wlp;
	int rc = 0;
	if (wl.n == 0 && !c->opts->base)
		goto out; /* nothing a base could serve */
	mfs_txn *t;
	if ((rc = mfs_txn_begin(c->store, MFS_TXN_READ, &t)) < 0)
		goto out;
	char chosen[MFS_REPO_ID_MAX + 1] = "";
	char note[768] = "";
	mfs_base_how how = MFS_BASE_NONE;
	if (c->opts->base) {
		mfs_repo_info ri;
		rc = mfs_repo_get(t, c->opts->base, &ri);
		if (rc == 0 && !strcmp(c->opts->base, repo))
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--base %s is the repo being ingested: give the repo it was "
				     "fine-tuned from",
				     c->opts->base);
		else if (rc == MFS_E_NOTFOUND)
			rc = mfs_err(c->err, MFS_E_NOTFOUND,
				     "--base %s: the store holds no such repo (`modelfs ls` lists "
				     "what it holds; ingest the base first)",
				     c->opts->base);
		if (rc == 0) {
			strcpy(chosen, c->opts->base);
			how = MFS_BASE_NONE;
		}
	} else {
		char *readme = read_small_file(sn, "README.md");
		char *cfg = read_small_file(sn, "config.json");
		char *adapter = read_small_file(sn, "adapter_config.json");
		char hb[3 * (MFS_REPO_ID_MAX + 2)];
		mfs_base_hints h;
		mfs_base_hints_parse(readme, cfg, adapter, &h, hb, sizeof hb);
		free(readme);
		free(cfg);
		free(adapter);
		struct want_read wr = {sn};
		rc = mfs_base_propose(t, repo, &h, wl.w, wl.n, want_read_fn, &wr, chosen, &how,
				      note, sizeof note);
	}
	if (rc == 0 && chosen[0] && (rc = mfs_base_load(t, chosen, &c->base)) < 0)
		mfs_err(c->err, rc, "%s: cannot read the base %s: %s", repo, chosen,
			mfs_strerror(rc));
	mfs_txn_abort(t);
	if (rc < 0)
		goto out;
	if (c->base) {
		size_t nm = 0;
		uint64_t bytes = mfs_base_matched_bytes(c->base, wl.w, wl.n, &nm);
		if (nm == 0 && c->opts->base) {
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--base %s: none of its %zu tensors matches one of the %zu "
				     "tensors of %s by name, dtype and shape: it is not this "
				     "model's base (leave --base out to let ingest look)",
				     c->opts->base, c->base->n, wl.n, repo);
			goto out;
		}
		snprintf(c->stats->base, sizeof c->stats->base, "%s", c->base->repo);
		char hb[32];
		ingest_note(c, MFS_INGEST_NOTE,
			    "%s: base %s (%s%s): %zu of %zu tensors (%s) match by name, dtype "
			    "and shape and are tried as xor-deltas",
			    repo, c->base->repo, c->opts->base ? "given with --base" : "chosen by ",
			    c->opts->base ? "" : mfs_base_how_name(how), nm, wl.n,
			    mfs_size_format(bytes, hb, sizeof hb));
		if (how == MFS_BASE_MATCH && note[0])
			ingest_note(c, MFS_INGEST_NOTE, "%s: %s", repo, note);
	} else {
		ingest_note(c, MFS_INGEST_NOTE, "%s: stored alone, no base: %s", repo,
			    note[0] ? note : "the store holds no repo with matching tensors");
	}
out:
	return rc;
}

/* ------------------------------------------------------------ quantized twin */

/*
 * Find the snapshot's pair (tools/twin.h) before anything is stored:
 * --quantized-of must name a stored repo with tensors that pair with the
 * snapshot's (else an error), or the store proposes one.  Sets c->twin_hp
 * and c->twin_q ("" when there is no pair).
 */
static int choose_twin(ingest_ctx *c, const char *repo, const want_list *wl)
{
	c->twin_hp[0] = c->twin_q[0] = '\0';
	c->stats->twin[0] = '\0';
	if (c->opts->no_twin)
		return 0;
	const char *qof = c->opts->quantized_of;
	if (!qof && wl->n == 0)
		return 0;
	mfs_txn *t;
	int rc = mfs_txn_begin(c->store, MFS_TXN_READ, &t);
	if (rc < 0)
		return mfs_err(c->err, rc, "%s: cannot read the store: %s", repo, mfs_strerror(rc));
	if (qof) {
		mfs_base *hb = NULL;
		if (!strcmp(qof, repo))
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--quantized-of %s is the repo being ingested: give the "
				     "high-precision model it was quantized from",
				     qof);
		else if ((rc = mfs_base_load(t, qof, &hb)) == MFS_E_NOTFOUND)
			rc = mfs_err(c->err, MFS_E_NOTFOUND,
				     "--quantized-of %s: the store holds no such repo (`modelfs "
				     "ls` lists what it holds; ingest the high-precision model "
				     "first, or ingest this one without --quantized-of and that "
				     "one later)",
				     qof);
		else if (rc < 0)
			mfs_err(c->err, rc, "--quantized-of %s: cannot read its tensors: %s", qof,
				mfs_strerror(rc));
		int is_q = 0;
		size_t n = rc == 0 ? mfs_twin_match_count(hb, wl->w, wl->n, &is_q) : 0;
		if (rc == 0 && (n == 0 || !is_q))
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--quantized-of %s: none of the %zu tensors of %s is an I8 or "
				     "F8_E4M3 tensor with the name and shape of one of its %zu BF16/F16 "
				     "tensors: it is not this model's high-precision twin",
				     qof, wl->n, repo, hb ? hb->n : 0);
		if (rc == 0) {
			snprintf(c->twin_hp, sizeof c->twin_hp, "%s", qof);
			snprintf(c->twin_q, sizeof c->twin_q, "%s", repo);
			ingest_note(c, MFS_INGEST_NOTE,
				    "%s: the quantized twin of %s (given with --quantized-of): "
				    "%zu tensors pair by name and shape",
				    repo, qof, n);
		}
		mfs_base_free(hb);
	} else {
		char other[MFS_REPO_ID_MAX + 1];
		int is_q = 0;
		rc = mfs_twin_propose(t, repo, wl->w, wl->n, other, &is_q);
		if (rc < 0)
			mfs_err(c->err, rc, "%s: looking for its quantized twin failed: %s", repo,
				mfs_strerror(rc));
		else if (other[0]) {
			snprintf(c->twin_hp, sizeof c->twin_hp, "%s", is_q ? other : repo);
			snprintf(c->twin_q, sizeof c->twin_q, "%s", is_q ? repo : other);
			ingest_note(c, MFS_INGEST_NOTE,
				    "%s: %s %s (found by tensor names and shapes; --no-twin "
				    "stores it unpaired)",
				    repo, is_q ? "the quantized twin of" : "has a quantized twin:",
				    other);
		}
	}
	mfs_txn_abort(t);
	return rc;
}

static void twin_note(void *ud, int warning, const char *line)
{
	ingest_ctx *c = ud;
	ingest_note(c, warning ? MFS_INGEST_WARNING : MFS_INGEST_NOTE, "%s", line);
}

/* After the snapshot is published: make the pair (tools/twin.h). */
static int pair_twin(ingest_ctx *c)
{
	if (!c->twin_hp[0])
		return 0;
	mfs_twin_stats ts;
	mfs_errmsg perr = {0};
	int rc = mfs_twin_pair(c->store, c->twin_hp, c->twin_q, twin_note, c, &ts, &perr);
	if (rc < 0) {
		/* the snapshot is published and every tensor is either paired or as
		 * it was: the store is sound, only the saving is missing */
		ingest_note(c, MFS_INGEST_WARNING,
			    "%s: stored, but pairing it with %s stopped: %s (ingest it again to "
			    "retry; what was paired stays)",
			    c->twin_hp, c->twin_q, perr.msg[0] ? perr.msg : mfs_strerror(rc));
		return 0;
	}
	snprintf(c->stats->twin, sizeof c->stats->twin, "%s", c->twin_q);
	c->stats->tensors_twin += ts.tensors;
	c->stats->twin_before += ts.before;
	c->stats->twin_after += ts.after;
	char a[32], b[32], d[32];
	ingest_note(c, MFS_INGEST_NOTE,
		    "%s: %llu tensors (%llu chunks) stored as residuals of its quantized twin %s: "
		    "%s instead of %s (saving %s)%s",
		    c->twin_hp, (unsigned long long)ts.tensors, (unsigned long long)ts.chunks,
		    c->twin_q, mfs_size_format(ts.after, a, sizeof a),
		    mfs_size_format(ts.before, b, sizeof b),
		    mfs_size_format(ts.before - ts.after, d, sizeof d),
		    ts.tensors_left ? "; some tensors stay alone (notes above say why)" : "");
	return 0;
}

/* The saving the deltas of the last snapshot brought, for the user. */
static void note_saving(ingest_ctx *c, const char *repo, const mfs_ingest_stats *before)
{
	if (!c->base)
		return;
	uint64_t n = c->stats->tensors_delta - before->tensors_delta;
	uint64_t stored = c->stats->delta_stored - before->delta_stored;
	uint64_t alone = c->stats->delta_alone - before->delta_alone;
	uint64_t same = c->stats->tensors_same - before->tensors_same;
	char a[32], b[32], d[32];
	ingest_note(c, MFS_INGEST_NOTE,
		    "%s: %llu tensors stored as xor-deltas against %s: %s instead of about %s "
		    "alone (saving %s); %llu tensors already in the store",
		    repo, (unsigned long long)n, c->base->repo, mfs_size_format(stored, a, sizeof a),
		    mfs_size_format(alone, b, sizeof b),
		    mfs_size_format(alone > stored ? alone - stored : 0, d, sizeof d),
		    (unsigned long long)same);
}

static int ingest_snapshot(ingest_ctx *c, const char *repo, src_snapshot *sn)
{
	mfs_ingest_stats before = *c->stats;
	want_list wl;
	char **etags = NULL;
	mfs_file_rec *recs = NULL;
	int rc = want_build(sn, &wl);
	if (rc == 0)
		rc = choose_base(c, repo, sn, &wl);
	if (rc == 0)
		rc = choose_twin(c, repo, &wl);
	want_free(&wl, sn->n_files);
	if (rc < 0)
		goto out;
	etags = calloc(sn->n_files ? sn->n_files : 1, sizeof *etags);
	recs = calloc(sn->n_files ? sn->n_files : 1, sizeof *recs);
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
	note_saving(c, repo, &before);
	rc = pair_twin(c);
out:
	mfs_base_free(c->base);
	c->base = NULL;
	for (size_t i = 0; etags && i < sn->n_files; i++)
		free(etags[i]);
	free(etags);
	free(recs);
	return rc;
}

static uint64_t snapshot_bytes(const src_snapshot *sn)
{
	uint64_t total = 0;
	for (size_t i = 0; i < sn->n_files; i++)
		total += sn->files[i].size;
	return total;
}

static int ingest_hf_repo(ingest_ctx *c, hf_repo *r)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < r->n_snaps; i++) {
		rc = ingest_snapshot(c, r->repo, &r->snaps[i]);
		if (rc < 0)
			mfs_err_prefix(c->err, rc, "%s@%.12s", r->repo, r->snaps[i].commit);
	}
	return rc;
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
static int collect_folder(ingest_ctx *c, const char *src, src_snapshot *sn)
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
		ingest_note(c, MFS_INGEST_NOTE,
			    "%s: skipped %s: .git and .cache hold git's and huggingface_hub's "
			    "bookkeeping, not files of the model",
			    qs, list);
	}
	free_strs(w.skipped, w.n_skipped);
	if (rc == 0 && sn->n_files == 0)
		rc = mfs_err(c->err, MFS_E_INVAL, "%s holds no files to ingest", qs);
	return rc;
}

/*
 * The repo folders of @p src: itself when it is one, else every models--*
 * (datasets--*, spaces--*) folder in it, in name order.  A repo folder that
 * is a link is refused: what it leads to is not part of this cache.
 */
static int list_hf_repos(const char *src, char ***out, size_t *n_out, mfs_errmsg *err)
{
	char **dirs = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	*out = NULL;
	*n_out = 0;
	if (is_hf_repo_dir(src)) {
		if ((rc = push_str(&dirs, &n, &cap, src)) < 0)
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
		rc = push_str(&dirs, &n, &cap, p);
	}
	closedir(d);
	if (rc == 0 && n == 0)
		rc = mfs_err(err, MFS_E_INVAL,
			     "%s is neither a Hugging Face cache (no models--ORG--NAME "
			     "folders) nor a repo folder: to ingest a plain folder of "
			     "model files, give --repo ORG/NAME",
			     src);
	if (rc < 0) {
		free_strs(dirs, n);
		return rc;
	}
	if (n)
		qsort(dirs, n, sizeof *dirs, cmp_str);
	*out = dirs;
	*n_out = n;
	return 0;
}

/* An HF cache or one repo folder of it: every repo collected, then ingested. */
static int ingest_hf_source(ingest_ctx *c, const char *src)
{
	char **dirs = NULL;
	size_t n = 0;
	int rc = list_hf_repos(src, &dirs, &n, c->err);
	if (rc < 0)
		return rc;
	hf_repo *repos = calloc(n ? n : 1, sizeof *repos);
	if (!repos) {
		free_strs(dirs, n);
		return -ENOMEM;
	}
	uint64_t total = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = collect_hf_repo(dirs[i], &repos[i], c->err);
		for (size_t k = 0; rc == 0 && k < repos[i].n_snaps; k++)
			total += snapshot_bytes(&repos[i].snaps[k]);
	}
	if (rc == 0) {
		mfs_progress_init(&c->progress, "ingest", total, c->opts->quiet);
		for (size_t i = 0; rc == 0 && i < n; i++)
			rc = ingest_hf_repo(c, &repos[i]);
	}
	for (size_t i = 0; i < n; i++)
		hf_repo_free(&repos[i]);
	free(repos);
	free_strs(dirs, n);
	return rc;
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
	if (opts->ref && mfs_ref_name_check(opts->ref, err) < 0)
		return mfs_err_prefix(err, MFS_E_INVAL, "--ref");
	if (opts->repo && mfs_repo_id_check(opts->repo, err) < 0)
		return MFS_E_INVAL;
	char src[PATH_MAX];
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
	double t0 = mfs_now_seconds();
	if ((rc = pool_start(&c)) < 0) {
		mfs_err(err, rc, "cannot start encoder threads: %s", mfs_strerror(rc));
		goto out;
	}
	if (opts->repo) {
		src_snapshot sn = {0};
		rc = collect_folder(&c, src, &sn);
		if (rc == 0 && opts->ref)
			rc = push_str(&sn.refs, &sn.n_refs, &sn.cap_refs, opts->ref);
		if (rc == 0) {
			mfs_progress_init(&c.progress, "ingest", snapshot_bytes(&sn), opts->quiet);
			rc = ingest_snapshot(&c, opts->repo, &sn);
		}
		snapshot_free(&sn);
	} else {
		rc = ingest_hf_source(&c, src);
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
	stats->seconds = mfs_now_seconds() - t0;
	return rc;
}
