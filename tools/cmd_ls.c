/* modelfs ls: repos, or one repo's refs, snapshots and files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "cli.h"
#include "commands.h"
#include "sharing.h"
#include "units.h"

static void ls_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: modelfs ls [--store DIR] [--rev REV] [ORG/NAME]\n\n"
	    "Without a repo: every repo (named as you type it: org/name) with its refs,\n"
	    "snapshot count, size and stored size (its files' chunks, a chunk it\n"
	    "shares with other repos counted in each), how much of what it stores\n"
	    "other repos' files use too (shared) and how much other repos are stored\n"
	    "as deltas against (base of others: bytes it holds alive for them;\n"
	    "removing it frees neither); then a total line: the repos' size, what the\n"
	    "store holds for them (every chunk once: what they share counts once), the\n"
	    "ratio of the two, and the store on disk with its index (what df on a\n"
	    "mount shows used); then the store's own figures. With a repo: its refs\n"
	    "and snapshots, the files of REV (default main) with size, stored size,\n"
	    "ratio and blob etag, and their total.\n\n"
	    "A repo whose index records are damaged is left out, with one line on\n"
	    "stderr naming the first damaged record (`modelfs verify` lists them all);\n"
	    "the others are listed as usual. Names from the index are printed with\n"
	    "control characters and other non-ASCII bytes as \\xNN.\n\n"
	    "Exit status: 0; 1 when a repo was left out (the rest is still listed) or\n"
	    "on any other error; 2 on a usage error.\n");
}

struct repo_sum {
	mfs_txn *t;
	const char *repo;
	uint64_t snapshots, size, stored, blobs;
};

static int count_commit(void *ud, const mfs_commit_info *c)
{
	((struct repo_sum *)ud)->snapshots++;
	return 0;
}

static int sum_blob(void *ud, const mfs_blob_info *b)
{
	struct repo_sum *s = ud;
	s->size += b->size;
	s->stored += b->stored_bytes;
	s->blobs++;
	return 0;
}

static int print_ref_inline(void *ud, const mfs_ref_info *r)
{
	char q[MFS_CLI_QUOTED];
	printf("%s%s@%.12s", *(int *)ud ? "," : "", mfs_cli_quote(r->name, q), r->commit);
	*(int *)ud = 1;
	return 0;
}

struct ls_all {
	mfs_txn *t;
	uint64_t left_out;
	mfs_refd refd;
	uint64_t repos, snapshots, size, stored; /* of the repos listed */
};

/* One repo of the listing, or the line that says why it is left out. */
static int print_repo(void *ud, const mfs_check_repo_entry *e)
{
	struct ls_all *all = ud;
	mfs_txn *t = all->t;
	if (!e->intact) {
		char line[MFS_ERRMSG_MAX * 3];
		mfs_cli_error("ls", "%s", mfs_check_left_out_line(e, line, sizeof line));
		all->left_out++;
		return 0;
	}
	const mfs_repo_info *r = &e->info;
	struct repo_sum s = {.t = t, .repo = r->repo};
	int rc;
	if ((rc = mfs_commits_foreach(t, r->repo, count_commit, &s)) < 0 ||
	    (rc = mfs_blobs_foreach(t, r->repo, sum_blob, &s)) < 0)
		return rc;
	mfs_sharing sh;
	if ((rc = mfs_repo_sharing(t, r->repo, &all->refd, &sh)) < 0)
		return rc;
	all->repos++;
	all->snapshots += s.snapshots;
	all->size += s.size;
	all->stored += s.stored;
	char a[32], b[32], c[32], d[32], q[MFS_CLI_QUOTED];
	printf("%-48s %3llu snap %10s %10s  %5.2fx  shared %9s  base of others %9s  ",
	       mfs_cli_quote(mfs_cli_repo_name(r->repo), q),
	       (unsigned long long)s.snapshots, mfs_size_format(s.size, a, sizeof a),
	       mfs_size_format(s.stored, b, sizeof b),
	       s.stored ? (double)s.size / (double)s.stored : 0.0,
	       mfs_size_format(sh.shared_stored, c, sizeof c),
	       mfs_size_format(sh.base_stored, d, sizeof d));
	int any = 0;
	rc = mfs_refs_foreach(t, r->repo, print_ref_inline, &any);
	printf("\n");
	return rc;
}

static int print_ref(void *ud, const mfs_ref_info *r)
{
	char q[MFS_CLI_QUOTED];
	printf("ref       %-20s %s\n", mfs_cli_quote(r->name, q), r->commit);
	return 0;
}

static int print_commit(void *ud, const mfs_commit_info *c)
{
	char when[32];
	time_t tt = (time_t)c->time;
	struct tm tm;
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&tt, &tm));
	printf("snapshot  %s  %llu files  ingested %s\n", c->commit,
	       (unsigned long long)c->n_files, when);
	return 0;
}

struct file_ctx {
	mfs_txn *t;
	const char *repo;
	uint64_t files, size, stored;
};

static int print_file(void *ud, const mfs_file_info *f)
{
	struct file_ctx *fc = ud;
	mfs_blob_info bi;
	int rc = mfs_blob_get(fc->t, fc->repo, f->etag, &bi, NULL);
	if (rc < 0)
		return rc;
	fc->files++;
	fc->size += bi.size;
	fc->stored += bi.stored_bytes;
	/* exact bytes, as ls -l shows them */
	char q[MFS_CLI_QUOTED];
	printf("%12llu %12llu %6.2fx  %-64s  %s\n", (unsigned long long)bi.size,
	       (unsigned long long)bi.stored_bytes,
	       bi.stored_bytes ? (double)bi.size / (double)bi.stored_bytes : 0.0, f->etag,
	       mfs_cli_quote(f->path, q));
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"rev", required_argument, NULL, 'r'},
		{"store", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *rev = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			rev = optarg;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'h':
			ls_usage(stdout);
			return MFS_EXIT_OK;
		default:
			ls_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		ls_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	char repo[MFS_REPO_ID_MAX + 1];
	if (optind < argc && mfs_cli_repo_id("ls", argv[optind], repo) < 0)
		return MFS_EXIT_ERROR;
	mfs_store *s;
	if (mfs_cli_open_store("ls", MFS_STORE_RDONLY, &s) < 0)
		return MFS_EXIT_ERROR;
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	int ret = MFS_EXIT_OK;
	if (rc < 0) {
		mfs_cli_error("ls", "cannot read the store: %s", mfs_strerror(rc));
		mfs_store_close(s);
		return MFS_EXIT_ERROR;
	}
	if (optind == argc) {
		struct ls_all all = {.t = t};
		rc = mfs_refd_load(t, &all.refd);
		if (rc == 0)
			rc = mfs_check_repos_foreach(t, 0, print_repo, &all);
		mfs_refd_free(&all.refd);
		if (all.left_out)
			ret = MFS_EXIT_ERROR;
		mfs_store_stat st;
		if (rc == 0 && (rc = mfs_store_stat_get(t, &st)) == 0) {
			char a[32], b[32], c[32], d[32], e[32], f[32], label[48];
			/*
			 * Stored: the chunks' payloads, each once (what the repos
			 * share is counted once, unlike in their lines; chunks no
			 * repo uses any more count until gc).
			 */
			snprintf(label, sizeof label, "total (%llu repo%s)",
				 (unsigned long long)all.repos, all.repos == 1 ? "" : "s");
			printf("%-48s %3llu snap %10s %10s  %5.2fx  (%llu bytes logical, %llu "
			       "stored: every chunk once; %s on disk with the index)\n",
			       label, (unsigned long long)all.snapshots,
			       mfs_size_format(all.size, a, sizeof a),
			       mfs_size_format(st.chunk_payload_bytes, b, sizeof b),
			       st.chunk_payload_bytes
				   ? (double)all.size / (double)st.chunk_payload_bytes
				   : 0.0,
			       (unsigned long long)all.size,
			       (unsigned long long)st.chunk_payload_bytes,
			       mfs_size_format(st.disk_bytes, c, sizeof c));
			printf("store %s: %llu chunks, %s raw in %s of payload; %llu packs, %s on "
			       "disk (%s dead: gc gives it back); index file %s, %s in use\n",
			       mfs_store_dir(s), (unsigned long long)st.n_chunks,
			       mfs_size_format(st.chunk_raw_bytes, a, sizeof a),
			       mfs_size_format(st.chunk_payload_bytes, b, sizeof b),
			       (unsigned long long)st.n_packs,
			       mfs_size_format(st.pack_disk_bytes, e, sizeof e),
			       mfs_size_format(st.pack_dead_bytes, f, sizeof f),
			       mfs_size_format(st.file_bytes, c, sizeof c),
			       mfs_size_format(st.used_bytes, d, sizeof d));
		}
	} else {
		char commit[MFS_COMMIT_LEN + 1];
		if (mfs_cli_repo_intact("ls", t, repo, 0) < 0 ||
		    mfs_cli_resolve_rev("ls", t, repo, rev, commit) < 0) {
			ret = MFS_EXIT_ERROR;
		} else {
			printf("repo      %s\n", mfs_cli_repo_name(repo));
			struct file_ctx fc = {.t = t, .repo = repo};
			if ((rc = mfs_refs_foreach(t, repo, print_ref, NULL)) == 0 &&
			    (rc = mfs_commits_foreach(t, repo, print_commit, NULL)) == 0) {
				printf("files of %s:\n%12s %12s %7s  %-64s  %s\n", commit,
				       "size", "stored", "ratio", "etag", "path");
				rc = mfs_files_foreach(t, repo, commit, print_file, &fc);
			}
			if (rc == 0)
				printf("%12llu %12llu %6.2fx  total of %llu files\n",
				       (unsigned long long)fc.size,
				       (unsigned long long)fc.stored,
				       fc.stored ? (double)fc.size / (double)fc.stored : 0.0,
				       (unsigned long long)fc.files);
		}
	}
	if (rc < 0) {
		mfs_cli_error("ls", "reading the store failed: %s", mfs_strerror(rc));
		ret = MFS_EXIT_ERROR;
	}
	mfs_txn_abort(t);
	mfs_store_close(s);
	return ret;
}
