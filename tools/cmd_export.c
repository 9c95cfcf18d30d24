/*
 * modelfs export: write a snapshot's files to a folder, checked against their
 * sha256.  The writing is fs/export.h's: this file parses the options, opens
 * the store (local or --remote), checks the repo, resolves the revision and
 * prints.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "cli.h"
#include "commands.h"
#include "export.h"
#include "progress.h"
#include "remote.h"
#include "reader.h"
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
	int ret = MFS_EXIT_ERROR;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc < 0 || (rc = mfs_reader_create(s, NULL, &r)) < 0) {
		mfs_cli_error("export", "cannot read the store: %s", mfs_strerror(rc));
		goto out;
	}
	/* a damaged repo is refused before anything is written, naming the record */
	if (mfs_cli_repo_intact("export", t, repo, MFS_CHECK_CHUNKS) < 0 ||
	    mfs_cli_resolve_rev("export", t, repo, rev, commit) < 0)
		goto out;
	mfs_progress_feed bar = {.label = "export", .quiet = quiet};
	mfs_export_opts eo = {.threads = threads,
			      .progress = mfs_progress_feed_report,
			      .progress_ud = &bar};
	mfs_export_stats st;
	mfs_errmsg err = {0};
	rc = mfs_export_snapshot(r, t, repo, commit, dest, &eo, &st, &err);
	mfs_progress_feed_end(&bar);
	if (rc < 0) {
		mfs_cli_error("export", "%s", err.msg[0] ? err.msg : mfs_strerror(rc));
		goto out;
	}
	printf("exported %llu files, %llu bytes, %.2f s, %.1f MB/s (sha256 checked)\n",
	       (unsigned long long)st.files, (unsigned long long)st.bytes, st.seconds,
	       st.seconds > 0 ? (double)st.bytes / st.seconds / 1e6 : 0.0);
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
	mfs_reader_free(r);
	mfs_txn_abort(t);
	if (rem)
		mfs_remote_close(rem);
	else
		mfs_store_close(s);
	return ret;
}
