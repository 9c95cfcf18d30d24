#include "cli.h"

#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *mfs_cli_store_dir;

void mfs_cli_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "modelfs %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int mfs_cli_open_store(const char *cmd, unsigned flags, mfs_store **out)
{
	char def[4096];
	const char *dir = mfs_cli_store_dir;
	if (!dir)
		dir = getenv("MODELFS_STORE");
	if (!dir || !dir[0]) {
		if (mfs_store_default_dir(def, sizeof def) < 0) {
			mfs_cli_error(cmd, "no store given and neither XDG_DATA_HOME nor HOME "
					   "is set: pass --store DIR");
			return -1;
		}
		dir = def;
	}
	mfs_errmsg err = {0};
	int rc = mfs_store_open(dir, flags | MFS_STORE_NOWAIT, out, &err);
	if (rc == MFS_E_BUSY && !(flags & MFS_STORE_NOWAIT)) {
		fprintf(stderr, "modelfs %s: the store is being compacted (modelfs gc --compact): "
				"waiting for it to finish\n",
			cmd);
		memset(&err, 0, sizeof err);
		rc = mfs_store_open(dir, flags, out, &err);
	}
	if (rc < 0) {
		mfs_cli_error(cmd, "%s", err.msg[0] ? err.msg : mfs_strerror(rc));
		return -1;
	}
	return 0;
}

int mfs_cli_repo_id(const char *cmd, const char *arg, char out[MFS_REPO_ID_MAX + 1])
{
	mfs_errmsg err = {0};
	if (mfs_repo_id_expand(arg, out, &err) < 0) {
		mfs_cli_error(cmd, "invalid repo name \"%s\": %s", arg, err.msg);
		return -1;
	}
	return 0;
}

const char *mfs_cli_repo_name(const char *repo)
{
	return strncmp(repo, "models/", 7) == 0 ? repo + 7 : repo;
}

int mfs_cli_parse_threads(const char *cmd, const char *arg, int *out)
{
	int n = atoi(arg);
	if (n < 1 || n > 256) {
		mfs_cli_error(cmd, "--threads %s: must be 1..256", arg);
		return -1;
	}
	*out = n;
	return 0;
}

int mfs_cli_resolve_rev(const char *cmd, mfs_txn *t, const char *repo, const char *rev,
			char commit[MFS_COMMIT_LEN + 1])
{
	mfs_repo_info ri;
	int rc = mfs_repo_get(t, repo, &ri);
	if (rc == MFS_E_NOTFOUND) {
		mfs_cli_error(cmd, "no repo %s in the store (see `modelfs ls`)", repo);
		return -1;
	}
	if (rc < 0) {
		mfs_cli_error(
		    cmd, "%s: its repos record cannot be read (%s): run `modelfs verify`",
		    repo, mfs_strerror(rc));
		return -1;
	}
	if (mfs_ref_get(t, repo, rev ? rev : "main", commit) == 0)
		return 0;
	/* a commit hash of the repo, or (no rev and no main) its newest commit */
	if (mfs_commit_pick(t, repo, rev, commit) < 0) {
		if (rev)
			mfs_cli_error(cmd, "%s has no ref or commit \"%s\" (see `modelfs ls %s`)",
				      repo, rev, repo);
		else
			mfs_cli_error(cmd, "%s has no snapshot", repo);
		return -1;
	}
	return 0;
}

int mfs_cli_repo_intact(const char *cmd, mfs_txn *t, const char *repo, unsigned flags)
{
	mfs_repo_info ri;
	int rc = mfs_repo_get(t, repo, &ri);
	if (rc == MFS_E_NOTFOUND) {
		mfs_cli_error(cmd, "no repo %s in the store (see `modelfs ls`)", repo);
		return -1;
	}
	char why[MFS_ERRMSG_MAX * 2];
	rc = mfs_check_repo_intact(t, repo, flags, why, sizeof why);
	if (rc < 0) {
		mfs_cli_error(cmd, "checking the records of %s failed: %s", repo,
			      mfs_strerror(rc));
		return -1;
	}
	if (rc == 0) {
		mfs_cli_error(
		    cmd,
		    "%s is damaged: %s (run `modelfs verify` to list every damaged "
		    "record; `modelfs rm %s` and ingest it again)",
		    repo, why, repo);
		return -1;
	}
	return 0;
}

const char *mfs_cli_quote(const char *s, char *buf)
{
	return mfs_str_quote(s, 255, buf, MFS_CLI_QUOTED);
}

void mfs_cli_test_pause(const char *cmd, const char *ms, const char *what)
{
	if (!ms || !*ms)
		return;
	fprintf(stderr, "modelfs %s: step: %s\n", cmd, what);
	long v = strtol(ms, NULL, 10);
	struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}
