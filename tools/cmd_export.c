/* modelfs export: write a snapshot's files to a folder, checked against their sha256. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "progress.h"
#include "reader.h"
#include "sha256.h"
#include "stream.h"

static void export_usage(FILE *f)
{
	fprintf(f, "usage: modelfs export [--store DIR] [--rev REV] [--threads N] ORG/NAME DEST\n\n"
		   "Write the files of a snapshot (REV: ref or commit, default main) under DEST,\n"
		   "as plain files at their paths in the repo. Every file's sha256 is checked\n"
		   "against the one recorded at ingest before it is renamed into place.\n");
}

struct export_file {
	mfs_txn *t;
	mfs_reader *r;
	const char *repo;
	const char *dest;
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

static int mkdirs_for(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

static int export_one(void *ud, const mfs_file_info *f)
{
	struct export_file *x = ud;
	char path[4096], tmp[4200];
	snprintf(path, sizeof path, "%s/%s", x->dest, f->path);
	snprintf(tmp, sizeof tmp, "%s.modelfs-tmp", path);
	int rc = mkdirs_for(path);
	if (rc < 0) {
		mfs_cli_error("export", "cannot create the folder for %s: %s", path,
			      strerror(-rc));
		return rc;
	}
	mfs_rfile *rf;
	if ((rc = mfs_rfile_open(x->r, x->repo, f->etag, &rf)) < 0) {
		mfs_cli_error("export", "%s: cannot open blob %s: %s", f->path, f->etag,
			      mfs_strerror(rc));
		return rc;
	}
	struct write_ctx w = {.progress = x->progress};
	w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w.fd < 0) {
		rc = -errno;
		mfs_cli_error("export", "cannot create %s: %s", tmp, strerror(errno));
		mfs_rfile_close(rf);
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
		unlink(tmp);
		if (rc == MFS_E_CORRUPT || rc == MFS_E_NOTFOUND)
			mfs_cli_error("export",
				      "%s: stored data is damaged near offset %llu (%s): not "
				      "written; run `modelfs verify`",
				      f->path, (unsigned long long)bad, mfs_strerror(rc));
		else
			mfs_cli_error("export", "%s: %s", path, mfs_strerror(rc));
		mfs_rfile_close(rf);
		return rc;
	}
	if (rename(tmp, path) < 0) {
		rc = -errno;
		mfs_cli_error("export", "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		mfs_rfile_close(rf);
		return rc;
	}
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
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *rev = NULL;
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
	if (mfs_cli_open_store("export", MFS_STORE_RDONLY, &s) < 0)
		return MFS_EXIT_ERROR;
	mfs_txn *t = NULL;
	mfs_reader *r = NULL;
	int ret = MFS_EXIT_ERROR;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc < 0 || (rc = mfs_reader_create(s, NULL, &r)) < 0) {
		mfs_cli_error("export", "cannot read the store: %s", mfs_strerror(rc));
		goto out;
	}
	if (mfs_cli_resolve_rev("export", t, repo, rev, commit) < 0)
		goto out;
	char dest_slash[4200];
	snprintf(dest_slash, sizeof dest_slash, "%s/", dest);
	if (mkdirs_for(dest_slash) < 0) {
		mfs_cli_error("export", "cannot create %s: %s", dest, strerror(errno));
		goto out;
	}
	struct size_sum ss = {t, repo, 0};
	mfs_files_foreach(t, repo, commit, size_fn, &ss);
	mfs_progress pr;
	mfs_progress_init(&pr, "export", ss.total, quiet);
	struct export_file x = {.t = t, .r = r, .repo = repo, .dest = dest,
				.threads = threads, .progress = &pr};
	double t0 = mfs_cli_now();
	rc = mfs_files_foreach(t, repo, commit, export_one, &x);
	double dt = mfs_cli_now() - t0;
	mfs_progress_end(&pr);
	if (rc < 0)
		goto out;
	printf("exported %llu files, %llu bytes, %.2f s, %.1f MB/s (sha256 checked)\n",
	       (unsigned long long)x.files, (unsigned long long)x.bytes, dt,
	       dt > 0 ? (double)x.bytes / dt / 1e6 : 0.0);
	ret = MFS_EXIT_OK;
out:
	mfs_reader_free(r);
	mfs_txn_abort(t);
	mfs_store_close(s);
	return ret;
}
