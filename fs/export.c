/*
 * export.c - a snapshot's files written under a folder (export.h): each one
 * streamed through the read path into a temporary beside its place, hashed
 * on the way, renamed into place once its sha256 matches.
 */
#include "export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "sha256.h"
#include "stream.h"

/* A path from the index as messages show it (mfs_str_quote, 255 characters). */
#define SHOWN_MAX (4 * 255 + 8)

struct export_ctx {
	mfs_reader *r;
	const char *repo;
	const char *dest;
	int dest_fd; /* every file is created relative to it (open_parent) */
	const mfs_export_opts *o;
	mfs_export_stats *st;
	uint64_t done, total;
	mfs_errmsg *err;
};

struct write_ctx {
	int fd;
	mfs_sha256_ctx sha;
	struct export_ctx *x;
};

static int write_chunk(void *ud, uint64_t off, const void *data, size_t len)
{
	struct write_ctx *w = ud;
	mfs_sha256_update(&w->sha, data, len);
	const uint8_t *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(w->fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	struct export_ctx *x = w->x;
	x->done += len;
	if (x->o->progress)
		x->o->progress(x->o->progress_ud, x->done, x->total);
	return 0;
}

/*
 * Open (creating as needed) the folder of @p rel under the folder @p dest_fd,
 * one component at a time and never through a symbolic link (O_NOFOLLOW), so
 * whatever DEST holds, what is written stays under it.  @p rel has passed
 * mfs_repo_path_check (no "..", ".", empty or absolute component).
 * @param[out] leaf  points into @p rel: the file's own name
 * @return a descriptor to close, or -errno (*bad_at: the component that failed)
 */
static int open_parent(int dest_fd, const char *rel, const char **leaf, char *bad_at,
		       size_t cap)
{
	int fd = dup(dest_fd);
	if (fd < 0)
		return -errno;
	const char *p = rel;
	for (const char *slash; (slash = strchr(p, '/')); p = slash + 1) {
		char comp[256];
		size_t n = (size_t)(slash - p);
		if (n == 0 || n >= sizeof comp) {
			close(fd);
			return -EINVAL;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		snprintf(bad_at, cap, "%.*s", (int)(slash - rel), rel);
		if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			close(fd);
			return -e;
		}
		int next =
		    openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(fd);
		if (next < 0)
			return -e;
		fd = next;
	}
	*leaf = p;
	return fd;
}

static int export_one(void *ud, const mfs_file_info *f)
{
	struct export_ctx *x = ud;
	mfs_errmsg *err = x->err;
	char shown[SHOWN_MAX];
	mfs_str_quote(f->path, 255, shown, sizeof shown);
	/* the index is untrusted: a path that leaves the repo is never written */
	if (mfs_repo_path_check(f->path, NULL) < 0)
		return mfs_err(
		    err, MFS_E_INVAL,
		    "%s: the index holds file path \"%s\", which would leave %s: "
		    "not exported (run `modelfs verify`)",
		    x->repo, shown, x->dest);
	char path[4096], bad_at[4096] = "";
	snprintf(path, sizeof path, "%s/%s", x->dest, shown);
	const char *leaf = NULL;
	int dir_fd = open_parent(x->dest_fd, f->path, &leaf, bad_at, sizeof bad_at);
	if (dir_fd < 0) {
		char bq[SHOWN_MAX];
		return mfs_err(err, dir_fd, "cannot create the folder %s/%s for %s: %s%s",
			       x->dest, mfs_str_quote(bad_at, 255, bq, sizeof bq), shown,
			       strerror(-dir_fd),
			       dir_fd == -ELOOP || dir_fd == -ENOTDIR
				   ? " (a symbolic link or a file there: export writes "
				     "only inside DEST, through real folders)"
				   : "");
	}
	char tmp[300];
	snprintf(tmp, sizeof tmp, "%s.modelfs-tmp", leaf);
	int rc;
	mfs_rfile *rf;
	if ((rc = mfs_rfile_open(x->r, x->repo, f->etag, &rf)) < 0) {
		mfs_err(err, rc, "%s: cannot open blob %s: %s", shown, f->etag,
			mfs_strerror(rc));
		close(dir_fd);
		return rc;
	}
	struct write_ctx w = {.x = x};
	/* a stale temporary (or a link planted in its place) goes first */
	unlinkat(dir_fd, tmp, 0);
	w.fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		      (f->mode & 0111) ? 0755 : 0644);
	if (w.fd < 0) {
		rc = -errno;
		mfs_err(err, rc, "cannot create %s.modelfs-tmp: %s", path,
			strerror(errno));
		mfs_rfile_close(rf);
		close(dir_fd);
		return rc;
	}
	mfs_sha256_init(&w.sha);
	uint64_t bad = 0;
	rc = mfs_rfile_stream(x->r, rf, x->o->threads, write_chunk, &w, &bad);
	if (rc == 0 && ftruncate(w.fd, (off_t)rf->size) < 0)
		rc = -errno;
	if (close(w.fd) < 0 && rc == 0)
		rc = -errno;
	uint8_t d[32];
	mfs_sha256_final(&w.sha, d);
	if (rc == 0 && memcmp(d, rf->sha256, 32) != 0)
		rc = MFS_E_CORRUPT;
	if (rc < 0) {
		unlinkat(dir_fd, tmp, 0);
		if (rc == MFS_E_CORRUPT || rc == MFS_E_NOTFOUND)
			mfs_err(err, rc,
				"%s: stored data is damaged near offset %llu (%s): not "
				"written; run `modelfs verify`",
				shown, (unsigned long long)bad, mfs_strerror(rc));
		else
			mfs_err(err, rc, "%s: %s", path, mfs_strerror(rc));
		mfs_rfile_close(rf);
		close(dir_fd);
		return rc;
	}
	/* renameat replaces a link at the leaf itself, never what it points to */
	if (renameat(dir_fd, tmp, dir_fd, leaf) < 0) {
		rc = -errno;
		mfs_err(err, rc, "cannot rename %s.modelfs-tmp to %s: %s", path, path,
			strerror(errno));
		unlinkat(dir_fd, tmp, 0);
		mfs_rfile_close(rf);
		close(dir_fd);
		return rc;
	}
	close(dir_fd);
	x->st->files++;
	x->st->bytes += rf->size;
	mfs_rfile_close(rf);
	return 0;
}

struct size_sum {
	mfs_txn *t;
	const char *repo;
	uint64_t total;
};

static int size_fn(void *ud, const mfs_file_info *f)
{
	struct size_sum *s = ud;
	mfs_blob_info bi;
	if (mfs_blob_get(s->t, s->repo, f->etag, &bi, NULL) == 0)
		s->total += bi.size;
	return 0;
}

int mfs_export_snapshot(mfs_reader *r, mfs_txn *t, const char *repo, const char *commit,
			const char *dest, const mfs_export_opts *opts,
			mfs_export_stats *stats, mfs_errmsg *err)
{
	*stats = (mfs_export_stats){0};
	int rc = mfs_mkdir_p(dest, 0755);
	if (rc < 0)
		return mfs_err(err, rc, "cannot create %s: %s", dest, strerror(-rc));
	int dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dest_fd < 0) {
		rc = -errno;
		return mfs_err(err, rc, "cannot open %s: %s", dest, strerror(-rc));
	}
	struct size_sum ss = {t, repo, 0};
	mfs_files_foreach(t, repo, commit, size_fn, &ss);
	if (opts->progress)
		opts->progress(opts->progress_ud, 0, ss.total);
	mfs_errmsg local = {0};
	struct export_ctx x = {.r = r,
			       .repo = repo,
			       .dest = dest,
			       .dest_fd = dest_fd,
			       .o = opts,
			       .st = stats,
			       .total = ss.total,
			       .err = err ? err : &local};
	x.err->msg[0] = '\0';
	double t0 = mfs_now_seconds();
	rc = mfs_files_foreach(t, repo, commit, export_one, &x);
	stats->seconds = mfs_now_seconds() - t0;
	close(dest_fd);
	if (rc < 0 && !x.err->msg[0])
		mfs_err(x.err, rc, "reading the files of %s failed: %s", repo,
			mfs_strerror(rc));
	return rc < 0 ? rc : 0;
}
