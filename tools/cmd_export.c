/* modelfs export: write a snapshot's files to a folder, checked against their sha256. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "progress.h"
#include "remote.h"
#include "reader.h"
#include "sha256.h"
#include "stream.h"
#include "units.h"

static void export_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: modelfs export [--store DIR] [--rev REV] [--threads N] ORG/NAME "
	    "DEST\n\n"
	    "Write the files of a snapshot (REV: ref or commit, default main) under "
	    "DEST,\n"
	    "as plain files at their paths in the repo. Every file's sha256 is checked\n"
	    "against the one recorded at ingest before it is renamed into place.\n"
	    "Files the store records as executable are written 0755, the others 0644\n"
	    "(less the umask). Nothing is ever written outside DEST: a path from the\n"
	    "index that would leave it, or a folder under DEST that is a symbolic link,\n"
	    "is refused; so is a repo whose index records are damaged (see verify).\n\n"
	    "  --remote s3://BUCKET/PREFIX  read a store pushed there (modelfs push):\n"
	    "        --store DIR is then a directory of its own for it (empty the first\n"
	    "        time: the index is fetched into it); payloads are fetched as they\n"
	    "        are needed into DIR/cache. Endpoint and keys: the AWS_* variables\n"
	    "        (modelfs push --help)\n"
	    "  --cache-size SIZE  the bound of DIR/cache on disk (default 10G)\n");
}

struct export_file {
	mfs_txn *t;
	mfs_reader *r;
	const char *repo;
	const char *dest;
	int dest_fd; /* every file is created relative to it (open_parent) */
	int threads;
	mfs_progress *progress;
	uint64_t files, bytes;
	int failed;
};

struct write_ctx {
	int fd;
	mfs_sha256_ctx sha;
	mfs_progress *progress;
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
	mfs_progress_add(w->progress, len);
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
	struct export_file *x = ud;
	char shown[MFS_CLI_QUOTED];
	mfs_cli_quote(f->path, shown);
	/* the index is untrusted: a path that leaves the repo is never written */
	if (mfs_repo_path_check(f->path, NULL) < 0) {
		mfs_cli_error(
		    "export",
		    "%s: the index holds file path \"%s\", which would leave %s: "
		    "not exported (run `modelfs verify`)",
		    x->repo, shown, x->dest);
		return MFS_E_INVAL;
	}
	char path[4096], bad_at[4096] = "";
	snprintf(path, sizeof path, "%s/%s", x->dest, shown);
	const char *leaf = NULL;
	int dir_fd = open_parent(x->dest_fd, f->path, &leaf, bad_at, sizeof bad_at);
	if (dir_fd < 0) {
		char bq[MFS_CLI_QUOTED];
		mfs_cli_error(
		    "export", "cannot create the folder %s/%s for %s: %s%s", x->dest,
		    mfs_cli_quote(bad_at, bq), shown, strerror(-dir_fd),
		    dir_fd == -ELOOP || dir_fd == -ENOTDIR
			? " (a symbolic link or a file there: export writes only "
			  "inside DEST, through real folders)"
			: "");
		return dir_fd;
	}
	char tmp[300];
	snprintf(tmp, sizeof tmp, "%s.modelfs-tmp", leaf);
	int rc;
	mfs_rfile *rf;
	if ((rc = mfs_rfile_open(x->r, x->repo, f->etag, &rf)) < 0) {
		mfs_cli_error("export", "%s: cannot open blob %s: %s", shown, f->etag,
			      mfs_strerror(rc));
		close(dir_fd);
		return rc;
	}
	struct write_ctx w = {.progress = x->progress};
	/* a stale temporary (or a link planted in its place) goes first */
	unlinkat(dir_fd, tmp, 0);
	w.fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		      (f->mode & 0111) ? 0755 : 0644);
	if (w.fd < 0) {
		rc = -errno;
		mfs_cli_error("export", "cannot create %s.modelfs-tmp: %s", path,
			      strerror(errno));
		mfs_rfile_close(rf);
		close(dir_fd);
		return rc;
	}
	mfs_sha256_init(&w.sha);
	uint64_t bad = 0;
	rc = mfs_rfile_stream(x->r, rf, x->threads, write_chunk, &w, &bad);
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
			mfs_cli_error(
			    "export",
			    "%s: stored data is damaged near offset %llu (%s): not "
			    "written; run `modelfs verify`",
			    shown, (unsigned long long)bad, mfs_strerror(rc));
		else
			mfs_cli_error("export", "%s: %s", path, mfs_strerror(rc));
		mfs_rfile_close(rf);
		close(dir_fd);
		return rc;
	}
	/* renameat replaces a link at the leaf itself, never what it points to */
	if (renameat(dir_fd, tmp, dir_fd, leaf) < 0) {
		rc = -errno;
		mfs_cli_error("export", "cannot rename %s.modelfs-tmp to %s: %s", path,
			      path, strerror(errno));
		unlinkat(dir_fd, tmp, 0);
		mfs_rfile_close(rf);
		close(dir_fd);
		return rc;
	}
	close(dir_fd);
	x->files++;
	x->bytes += rf->size;
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

int cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"rev", required_argument, NULL, 'r'},
		{"threads", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'},
		{"store", required_argument, NULL, 'S'},
		{"remote", required_argument, NULL, 'R'},
		{"cache-size", required_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *rev = NULL, *remote = NULL;
	uint64_t cache_size = (uint64_t)10 << 30;
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), quiet = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			rev = optarg;
			break;
		case 't':
			if (mfs_cli_parse_threads("export", optarg, &threads) < 0)
				return MFS_EXIT_USAGE;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'R':
			remote = optarg;
			break;
		case 'C':
			if (mfs_size_parse(optarg, &cache_size) < 0) {
				mfs_cli_error("export",
					      "--cache-size takes a size (10G, 512M), not %s",
					      optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'h':
			export_usage(stdout);
			return MFS_EXIT_OK;
		default:
			export_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		export_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	char repo[MFS_REPO_ID_MAX + 1], commit[MFS_COMMIT_LEN + 1];
	if (mfs_cli_repo_id("export", argv[optind], repo) < 0)
		return MFS_EXIT_ERROR;
	const char *dest = argv[optind + 1];
	mfs_store *s;
	mfs_remote *rem = NULL;
	if (remote) {
		const char *dir = mfs_cli_store_dir ? mfs_cli_store_dir : getenv("MODELFS_STORE");
		if (!dir || !*dir) {
			mfs_cli_error("export", "--remote needs --store DIR: the directory "
						"that holds its index and its cache");
			return MFS_EXIT_USAGE;
		}
		mfs_errmsg e = {0};
		int orc = mfs_remote_open(dir, remote, cache_size, &rem, &e);
		if (orc < 0) {
			mfs_cli_error("export", "%s", e.msg[0] ? e.msg : mfs_strerror(orc));
			return MFS_EXIT_ERROR;
		}
		s = mfs_remote_store(rem);
	} else if (mfs_cli_open_store("export", MFS_STORE_RDONLY, &s) < 0) {
		return MFS_EXIT_ERROR;
	}
	mfs_txn *t = NULL;
	mfs_reader *r = NULL;
	int ret = MFS_EXIT_ERROR, dest_fd = -1;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc < 0 || (rc = mfs_reader_create(s, NULL, &r)) < 0) {
		mfs_cli_error("export", "cannot read the store: %s", mfs_strerror(rc));
		goto out;
	}
	/* a damaged repo is refused before anything is written, naming the record */
	if (mfs_cli_repo_intact("export", t, repo, MFS_CHECK_CHUNKS) < 0 ||
	    mfs_cli_resolve_rev("export", t, repo, rev, commit) < 0)
		goto out;
	if ((rc = mfs_mkdir_p(dest, 0755)) < 0) {
		mfs_cli_error("export", "cannot create %s: %s", dest, strerror(-rc));
		goto out;
	}
	dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dest_fd < 0) {
		mfs_cli_error("export", "cannot open %s: %s", dest, strerror(errno));
		goto out;
	}
	struct size_sum ss = {t, repo, 0};
	mfs_files_foreach(t, repo, commit, size_fn, &ss);
	mfs_progress pr;
	mfs_progress_init(&pr, "export", ss.total, quiet);
	struct export_file x = {.t = t,
				.r = r,
				.repo = repo,
				.dest = dest,
				.dest_fd = dest_fd,
				.threads = threads,
				.progress = &pr};
	double t0 = mfs_now_seconds();
	rc = mfs_files_foreach(t, repo, commit, export_one, &x);
	double dt = mfs_now_seconds() - t0;
	mfs_progress_end(&pr);
	if (rc < 0)
		goto out;
	printf("exported %llu files, %llu bytes, %.2f s, %.1f MB/s (sha256 checked)\n",
	       (unsigned long long)x.files, (unsigned long long)x.bytes, dt,
	       dt > 0 ? (double)x.bytes / dt / 1e6 : 0.0);
	if (rem) {
		mfs_chunkcache_stats cs;
		mfs_remote_cache_stats(rem, &cs);
		printf("remote: %llu chunks fetched (%llu bytes), %llu read from the cache, "
		       "%llu prefetched; the cache holds %llu bytes on disk (bound %llu)\n",
		       (unsigned long long)(cs.misses + cs.prefetched),
		       (unsigned long long)cs.bytes_fetched, (unsigned long long)cs.hits,
		       (unsigned long long)cs.prefetched, (unsigned long long)cs.disk_bytes,
		       (unsigned long long)cs.max_bytes);
	}
	ret = MFS_EXIT_OK;
out:
	if (dest_fd >= 0)
		close(dest_fd);
	mfs_reader_free(r);
	mfs_txn_abort(t);
	if (rem)
		mfs_remote_close(rem);
	else
		mfs_store_close(s);
	return ret;
}
