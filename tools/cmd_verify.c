/*
 * modelfs verify: decode every chunk and check it against its key, check
 * every index record (index/check.h), then rebuild every file and check its
 * sha256; name every damaged chunk and the files it breaks, and every damaged
 * record with its repo and key.  With --repair-from DIR, rewrite each damaged chunk from
 * a good copy of a file that uses it, then verify again.  The check is
 * fs/verify.h's and the repair ingest/repair.h's: this file parses the
 * options and prints what they report.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "progress.h"
#include "reader.h"
#include "repair.h"
#include "verify.h"

static void verify_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: modelfs verify [--store DIR] [--threads N] [--quiet]\n"
	    "                      [--repair-from DIR] [ORG/NAME]\n\n"
	    "Check the store: decode every chunk and compare it with its checksum,\n"
	    "check every index record (refs, commits, files, blobs, tensors, ...: each\n"
	    "parses, and what it names exists), then rebuild every file (of one repo,\n"
	    "when given) and compare its sha256 with the one recorded at ingest.\n"
	    "Prints each damaged chunk and the files it breaks, and each damaged record\n"
	    "with its repo and key; exits 1 when anything is wrong, 0 when all is "
	    "clean.\n\n"
	    "  --repair-from DIR  look under DIR (a folder of model files or a\n"
	    "                     Hugging Face cache; searched recursively) for good\n"
	    "                     copies of the damaged files (same sha256, or same\n"
	    "                     size and named by their etag), rewrite each damaged\n"
	    "                     chunk from the copy's bytes (checked against the\n"
	    "                     chunk key first), then verify again. Exits 0 only\n"
	    "                     if the store is clean at the end.\n");
}

/* A path found under --repair-from, quoted: a file name may hold an escape. */
#define QPATH_MAX (4 * 4096 + 8)
static const char *qpath(const char *path, char *buf)
{
	return mfs_str_quote(path, 4096, buf, QPATH_MAX);
}

static void print_finding(void *ud, const mfs_verify_event *ev)
{
	(void)ud;
	char hex[33], q[MFS_CLI_QUOTED];
	const mfs_check_problem *p = ev->problem;
	switch (ev->kind) {
	case MFS_VERIFY_BAD_CHUNK:
		printf("BAD chunk %s: %s (used by %llu file extents)",
		       mfs_chunk_key_hex(ev->key, hex), mfs_strerror(ev->rc),
		       (unsigned long long)ev->refs);
		if (ev->in_pack && ev->detail[0])
			printf(": %s", ev->detail);
		else if (ev->in_pack)
			printf(": its payload (pack %016llx, entry at offset %llu) does not "
			       "decode to bytes that hash to its key",
			       (unsigned long long)ev->pack, (unsigned long long)ev->pack_off);
		printf("\n");
		break;
	case MFS_VERIFY_BAD_RECORD:
		if (p->repo[0])
			printf("BAD record of %s: %s %s (%s key \"%s\")\n", p->repo, p->what,
			       p->why, p->db, p->key);
		else
			printf("BAD record: %s %s (%s key \"%s\")\n", p->what, p->why, p->db,
			       p->key);
		break;
	case MFS_VERIFY_BAD_BLOB_RECORD:
		printf("BAD blob %s of %s: its record is unreadable (%s)\n", ev->etag, ev->repo,
		       mfs_strerror(ev->rc));
		break;
	case MFS_VERIFY_BAD_BLOB:
		printf("BAD blob %s of %s (%llu bytes): %s\n", ev->etag, ev->repo,
		       (unsigned long long)ev->size,
		       ev->rc < 0 ? mfs_strerror(ev->rc) : "sha256 of the rebuilt file differs");
		if (ev->rc < 0)
			printf("  first damaged chunk at offset %llu\n", (unsigned long long)ev->off);
		break;
	case MFS_VERIFY_BAD_EXTENT:
		printf("  blob %s of %s uses damaged chunk %s at offset %llu (%u bytes)\n",
		       ev->etag, ev->repo, mfs_chunk_key_hex(ev->key, hex),
		       (unsigned long long)ev->off, ev->len);
		break;
	case MFS_VERIFY_DAMAGED_FILE:
		printf("  damaged file: %s/%s (commit %s)\n", ev->repo, mfs_cli_quote(ev->path, q),
		       ev->commit);
		break;
	case MFS_VERIFY_NO_FILE:
		printf("  (no snapshot file points to blob %s: `modelfs gc` removes it)\n",
		       ev->etag);
		break;
	}
}

static void print_repair(void *ud, const mfs_repair_event *ev)
{
	const char *from = ud;
	char hex[33], qp[QPATH_MAX];
	if (ev->key)
		mfs_chunk_key_hex(ev->key, hex);
	switch (ev->kind) {
	case MFS_REPAIR_SOURCE:
		printf("good copy of blob %s of %s: %s\n", ev->blob->etag, ev->blob->repo,
		       qpath(ev->path, qp));
		break;
	case MFS_REPAIR_NO_SOURCE:
		printf("no good copy of blob %s of %s (%llu bytes) under %s\n", ev->blob->etag,
		       ev->blob->repo, (unsigned long long)ev->blob->size, from);
		break;
	case MFS_REPAIR_MISMATCH:
		printf("  %s: bytes %llu..%llu of %s do not match chunk %s (%s)\n",
		       ev->blob->etag, (unsigned long long)ev->off,
		       (unsigned long long)(ev->off + ev->len), qpath(ev->path, qp), hex,
		       mfs_strerror(ev->rc));
		break;
	case MFS_REPAIR_REWRITE_FAILED:
		printf("could not rewrite chunk %s: %s\n", hex, mfs_strerror(ev->rc));
		break;
	case MFS_REPAIR_REWRITTEN:
		printf("repaired chunk %s (%u bytes, %s) from %s at offset %llu\n", hex, ev->len,
		       mfs_codec_name(ev->codec), qpath(ev->path, qp),
		       (unsigned long long)ev->off);
		break;
	case MFS_REPAIR_UNUSED:
		printf("cannot repair chunk %s: no file uses it (`modelfs gc` removes it)\n",
		       hex);
		break;
	case MFS_REPAIR_NO_COPY:
		printf("cannot repair chunk %s: no good copy of a file that uses it was found "
		       "under the repair folder\n",
		       hex);
		break;
	}
}

/*
 * One full pass (fs/verify.h) and its summary line.
 * @return 0 (findings are in @p res), or -1 after printing why it could not run
 */
static int verify_pass(mfs_store *s, mfs_reader *r, mfs_verify_opts *o, int quiet,
		       mfs_verify_result *res)
{
	mfs_progress_feed bar = {.label = "verify", .quiet = quiet};
	o->report = print_finding;
	o->progress = mfs_progress_feed_report;
	o->ud = &bar;
	mfs_errmsg err = {0};
	int rc = mfs_verify_run(s, r, o, res, &err);
	mfs_progress_feed_end(&bar);
	if (rc < 0) {
		mfs_cli_error("verify", "%s", err.msg[0] ? err.msg : mfs_strerror(rc));
		return -1;
	}
	printf("verified %llu chunks and %llu files (%llu bytes) in %.2f s: %llu damaged "
	       "chunks, %llu damaged files, %llu damaged records\n",
	       (unsigned long long)res->chunks, (unsigned long long)res->files,
	       (unsigned long long)res->bytes, res->seconds,
	       (unsigned long long)res->bad_chunks, (unsigned long long)res->bad_files,
	       (unsigned long long)res->bad_records);
	return 0;
}

/* --repair-from (ingest/repair.h). @return 0, or -1 after printing why it stopped */
static int repair(mfs_store *s, const mfs_verify_result *res, const char *from)
{
	mfs_repair_stats st;
	mfs_errmsg err = {0};
	int rc = mfs_repair_run(s, from, res->damaged_blobs, res->n_damaged_blobs,
				res->damaged_chunks, res->n_damaged_chunks, print_repair,
				(void *)from, &st, &err);
	if (rc < 0) {
		mfs_cli_error("verify", "%s%s", rc == -ENOTDIR ? "--repair-from " : "",
			      err.msg[0] ? err.msg : mfs_strerror(rc));
		return -1;
	}
	printf("repair: %llu chunks rewritten, %llu could not be repaired\n",
	       (unsigned long long)st.rewritten, (unsigned long long)st.failed);
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"threads", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'},
		{"store", required_argument, NULL, 'S'},
		{"repair-from", required_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), quiet = 0, opt;
	const char *repair_from = NULL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			if (mfs_cli_parse_threads("verify", optarg, &threads) < 0)
				return MFS_EXIT_USAGE;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'R':
			repair_from = optarg;
			break;
		case 'h':
			verify_usage(stdout);
			return MFS_EXIT_OK;
		default:
			verify_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		verify_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	char only_buf[MFS_REPO_ID_MAX + 1];
	const char *only = NULL;
	if (optind < argc) {
		if (mfs_cli_repo_id("verify", argv[optind], only_buf) < 0)
			return MFS_EXIT_ERROR;
		only = only_buf;
	}
	mfs_verify_opts o;
	mfs_verify_opts_default(&o);
	o.threads = threads;
	o.repo = only;
	mfs_verify_result res = {0};
	mfs_store *s = NULL;
	mfs_reader *r = NULL;
	int lock_fd = -1;
	if (mfs_cli_open_store("verify", repair_from ? 0 : MFS_STORE_RDONLY, &s) < 0)
		return MFS_EXIT_ERROR;
	int ret = MFS_EXIT_ERROR;
	int rc = mfs_reader_create(s, NULL, &r);
	if (rc < 0) {
		mfs_cli_error("verify", "cannot read the store: %s", mfs_strerror(rc));
		goto out;
	}
	if (repair_from) {
		/* Shared, like an ingest: keeps gc from sweeping chunks we rewrite. */
		rc = mfs_store_lock_ingest(s, 0, 1, &lock_fd);
		if (rc < 0) {
			mfs_cli_error("verify", "cannot lock the store: %s",
				      mfs_strerror(rc));
			goto out;
		}
	}
	if (verify_pass(s, r, &o, quiet, &res) < 0)
		goto out;
	if (repair_from && (res.bad_chunks || res.bad_files)) {
		if (repair(s, &res, repair_from) < 0)
			goto out;
		printf("verifying again after repair\n");
		mfs_verify_result_free(&res);
		if (verify_pass(s, r, &o, quiet, &res) < 0)
			goto out;
	}
	if ((res.bad_chunks || res.bad_files) && repair_from)
		printf("the store is damaged: no good copy was found for the files "
		       "above: re-ingest them from a good copy, or `modelfs rm` their "
		       "repos\n");
	else if (res.bad_chunks || res.bad_files)
		printf("the store is damaged: repair it with `modelfs verify "
		       "--repair-from DIR` (DIR holding good copies of the files above), "
		       "re-ingest them, or `modelfs rm` their repos\n");
	if (res.bad_records)
		printf(
		    "the store's index is damaged: `ls` and the mount leave out the "
		    "repos "
		    "named above; `modelfs rm` each and ingest it again (--repair-from "
		    "rewrites chunks, not records)\n");
	if (!res.bad_chunks && !res.bad_files && !res.bad_records)
		ret = MFS_EXIT_OK;
out:
	mfs_verify_result_free(&res);
	mfs_store_unlock(lock_fd);
	mfs_reader_free(r);
	mfs_store_close(s);
	return ret;
}
