/* modelfs rm: remove a repo from the store. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static void rm_usage(FILE *f)
{
	fprintf(f, "usage: modelfs rm [--store DIR] ORG/NAME\n\n"
		   "Remove a repo: its refs, snapshots and files disappear at once (also from\n"
		   "running mounts). Chunks it shared with other repos stay; the others become\n"
		   "garbage that `modelfs gc` frees.\n");
}

int cmd_rm(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"store", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'h':
			rm_usage(stdout);
			return MFS_EXIT_OK;
		default:
			rm_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		rm_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	char repo[MFS_REPO_ID_MAX + 1];
	if (mfs_cli_repo_id("rm", argv[optind], repo) < 0)
		return MFS_EXIT_ERROR;
	mfs_store *s;
	if (mfs_cli_open_store("rm", 0, &s) < 0)
		return MFS_EXIT_ERROR;
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc == 0) {
		rc = mfs_repo_remove(t, repo);
		if (rc == 0)
			rc = mfs_txn_commit(t);
		else
			mfs_txn_abort(t);
	}
	if (rc == 0)
		rc = mfs_store_sync(s);
	mfs_store_close(s);
	if (rc == MFS_E_NOTFOUND) {
		mfs_cli_error("rm", "no repo %s in the store (see `modelfs ls`)", repo);
		return MFS_EXIT_ERROR;
	}
	if (rc < 0) {
		mfs_cli_error("rm", "removing %s failed: %s (the store is unchanged)", repo,
			      mfs_strerror(rc));
		return MFS_EXIT_ERROR;
	}
	printf("removed %s; run `modelfs gc` to free the chunks only it used\n", repo);
	return MFS_EXIT_OK;
}
