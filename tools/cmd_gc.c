/* modelfs gc: free blobs and chunks nothing refers to, give the packs' dead
 * space back (repack); optionally shrink the index file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "units.h"

static void gc_usage(FILE *f)
{
	fprintf(
	    f, "usage: modelfs gc [--store DIR] [--repack-below F] [--merge-below SIZE]\n"
	       "                  [--reader-wait S] [--compact] [--no-wait]\n"
	       "       modelfs gc --remote s3://BUCKET/PREFIX [--keep-indexes N] "
	       "[--grace TIME] [--dry-run]\n"
	       "                  (old indexes and packs in a bucket push wrote: "
	       "modelfs gc --remote\n"
	       "                  s3://B --help)\n\n"
	       "Free what no snapshot uses: chunks of removed repos and anything an\n"
	       "interrupted ingest left behind. Waits for running ingests to finish\n"
	       "first (--no-wait: fail instead).\n"
	       "The payloads live in pack files (<store>/packs): gc removes what no\n"
	       "commit references, and repacks each pack whose live fraction is below F\n"
	       "(default 0.5; 0 turns repacking off): its live chunks are copied into\n"
	       "a new pack and the old one is deleted, so the disk space comes back,\n"
	       "while mounts and other commands run. Packs under SIZE (default 64M;\n"
	       "0: never), which writers running at the same time leave, are merged\n"
	       "into one when there are two or more. A mount or reader still using an\n"
	       "old pack keeps it until it lets go: gc waits up to S seconds for that\n"
	       "(default 10), and the next gc removes what is left.\n"
	       "--compact also rewrites the index file (data.mdb) so it shrinks. That\n"
	       "needs the store unused: no mount and no other command or LMDB program\n"
	       "may have it open (gc says which one does, and changes nothing);\n"
	       "commands started while it compacts wait for it.\n");
}

static void print_space(const char *when, mfs_store *s)
{
	mfs_txn *t;
	mfs_store_stat st;
	if (mfs_txn_begin(s, MFS_TXN_READ, &t) < 0)
		return;
	if (mfs_store_stat_get(t, &st) == 0) {
		char a[32], b[32], c[32], d[32], e[32], g[32];
		printf(
		    "%s: %llu chunks, %s of payload; %llu packs, %s on disk (%s dead); "
		    "index file %s, %s in use; store %s on disk\n",
		    when, (unsigned long long)st.n_chunks,
		    mfs_size_format(st.chunk_payload_bytes, a, sizeof a),
		    (unsigned long long)st.n_packs,
		    mfs_size_format(st.pack_disk_bytes, b, sizeof b),
		    mfs_size_format(st.pack_dead_bytes, c, sizeof c),
		    mfs_size_format(st.file_bytes, d, sizeof d),
		    mfs_size_format(st.used_bytes, e, sizeof e),
		    mfs_size_format(st.disk_bytes, g, sizeof g));
	}
	mfs_txn_abort(t);
}

/* Between gc's committed steps: pause when the tests ask (they kill gc there). */
static void gc_step(void *ud, const char *what)
{
	(void)ud;
	mfs_cli_test_pause("gc", getenv("MODELFS_TEST_GC_STEP_MS"), what);
}

int cmd_gc(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"compact", no_argument, NULL, 'c'},
	    {"no-wait", no_argument, NULL, 'n'},
	    {"repack-below", required_argument, NULL, 'r'},
	    {"merge-below", required_argument, NULL, 'm'},
	    {"reader-wait", required_argument, NULL, 'w'},
	    {"store", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int compact = 0, wait = 1, opt;
	double below = 0.5, reader_wait = 10;
	uint64_t merge_below = (uint64_t)64 << 20;
	char *end;
	/* the bucket's gc is a command of its own, with its own options */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--remote") || !strncmp(argv[i], "--remote=", 9))
			return cmd_gc_remote(argc, argv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			below = strtod(optarg, &end);
			if (end == optarg || *end || !(below >= 0 && below <= 1)) {
				mfs_cli_error(
				    "gc",
				    "--repack-below takes a fraction from 0 to 1, "
				    "not %s",
				    optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'm':
			if (mfs_size_parse(optarg, &merge_below) < 0) {
				mfs_cli_error("gc",
					      "--merge-below takes a size (0, 16M, 1G...), "
					      "not %s",
					      optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'w':
			reader_wait = strtod(optarg, &end);
			if (end == optarg || *end ||
			    !(reader_wait >= 0 && reader_wait <= 86400)) {
				mfs_cli_error(
				    "gc",
				    "--reader-wait takes seconds (0 to 86400), not %s",
				    optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'c':
			compact = 1;
			break;
		case 'n':
			wait = 0;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'h':
			gc_usage(stdout);
			return MFS_EXIT_OK;
		default:
			gc_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc != optind) {
		gc_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	mfs_store *s;
	if (mfs_cli_open_store("gc", 0, &s) < 0)
		return MFS_EXIT_ERROR;
	int lock = -1;
	int rc = mfs_store_lock_ingest(s, 1, 0, &lock);
	if (rc == MFS_E_BUSY && wait) {
		fprintf(stderr, "modelfs gc: an ingest is running; waiting for it to finish\n");
		rc = mfs_store_lock_ingest(s, 1, 1, &lock);
	}
	if (rc < 0) {
		mfs_cli_error("gc", "%s", rc == MFS_E_BUSY
						  ? "an ingest is running: try again when it is done"
						  : mfs_strerror(rc));
		mfs_store_close(s);
		return MFS_EXIT_ERROR;
	}
	print_space("before", s);
	mfs_gc_stat gs;
	mfs_txn *t;
	rc = mfs_txn_begin(s, MFS_TXN_WRITE, &t);
	if (rc == 0) {
		rc = mfs_gc_sweep(t, &gs);
		if (rc == 0)
			rc = mfs_txn_commit(t);
		else
			mfs_txn_abort(t);
	}
	if (rc == 0)
		rc = mfs_store_sync(s);
	int ret = MFS_EXIT_OK;
	if (rc < 0) {
		mfs_cli_error("gc", "sweeping failed: %s (the store is unchanged)",
			      mfs_strerror(rc));
		ret = MFS_EXIT_ERROR;
	} else {
		printf("gc: removed %llu unreferenced blobs and %llu chunks, freed %llu bytes\n",
		       (unsigned long long)gs.blobs_removed, (unsigned long long)gs.chunks_removed,
		       (unsigned long long)gs.bytes_freed);
		if (gs.counts_fixed)
			printf("gc: set %llu reference counts to the number of extents using "
			       "them (left by a damaged record)\n",
			       (unsigned long long)gs.counts_fixed);
		if (gs.recount_skipped)
			printf("gc: a blob record is damaged, so reference counts were not "
			       "checked (run modelfs verify)\n");
	}
	/* ingests may start again: the packs' gc works beside them */
	mfs_store_unlock(lock);
	lock = -1;
	if (ret == MFS_EXIT_OK) {
		mfs_pack_gc_opts po = {.repack_below = below,
				       .merge_below = merge_below,
				       .wait_ms = (unsigned)(reader_wait * 1000),
				       .step = gc_step};
		mfs_pack_gc_stat ps;
		mfs_errmsg perr = {0};
		const char *bs = getenv("MODELFS_TEST_GC_BATCH");
		if (bs && *bs)
			po.batch_bytes = strtoull(bs, NULL, 10);
		rc = mfs_gc_packs(s, &po, &ps, &perr);
		if (rc < 0) {
			mfs_cli_error("gc", "%s",
				      perr.msg[0] ? perr.msg : mfs_strerror(rc));
			ret = MFS_EXIT_ERROR;
		} else {
			printf("gc: packs: moved %llu chunks (%llu bytes) out of %llu "
			       "packs (%llu small ones merged); "
			       "removed %llu pack files (%llu bytes freed), %llu "
			       "unreferenced "
			       "pack files and %llu tails (%llu bytes)\n",
			       (unsigned long long)ps.chunks_moved,
			       (unsigned long long)ps.bytes_moved,
			       (unsigned long long)ps.packs_repacked,
			       (unsigned long long)ps.packs_merged,
			       (unsigned long long)ps.packs_removed,
			       (unsigned long long)ps.bytes_removed,
			       (unsigned long long)ps.orphans_removed,
			       (unsigned long long)ps.tails_truncated,
			       (unsigned long long)(ps.orphan_bytes + ps.tail_bytes));
			if (ps.packs_waiting)
				printf("gc: %llu repacked packs are still read by a "
				       "mount or "
				       "another reader of an older snapshot: the next gc "
				       "removes "
				       "them\n",
				       (unsigned long long)ps.packs_waiting);
			if (ps.damaged_entries)
				printf("gc: %llu chunks have damaged pack entries and "
				       "were left "
				       "where they are (run modelfs verify)\n",
				       (unsigned long long)ps.damaged_entries);
		}
		print_space("after", s);
	}
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", mfs_store_dir(s));
	mfs_store_close(s);
	if (ret != MFS_EXIT_OK || !compact)
		return ret;
	/* compaction opens the store itself, alone: this process lets go first */
	mfs_errmsg err = {0};
	rc = mfs_store_compact(dir, &err);
	if (rc < 0) {
		mfs_cli_error("gc", "%s", err.msg[0] ? err.msg : mfs_strerror(rc));
		return MFS_EXIT_ERROR;
	}
	if (mfs_cli_open_store("gc", MFS_STORE_RDONLY, &s) < 0) {
		mfs_cli_error("gc", "the store was compacted but cannot be opened again: run "
				    "modelfs verify");
		return MFS_EXIT_ERROR;
	}
	print_space("compacted", s);
	mfs_store_close(s);
	return MFS_EXIT_OK;
}
