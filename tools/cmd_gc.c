/* modelfs gc: free blobs and chunks nothing refers to; optionally shrink the file. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "units.h"

static void gc_usage(FILE *f)
{
	fprintf(f, "usage: modelfs gc [--store DIR] [--compact] [--no-wait]\n\n"
		   "Free what no snapshot uses: chunks of removed repos and anything an\n"
		   "interrupted ingest left behind. Freed pages are reused by later ingests.\n"
		   "Waits for running ingests to finish first (--no-wait: fail instead).\n"
		   "Freed space stays in the store file for later ingests; --compact also\n"
		   "rewrites the file so it shrinks on disk. That needs the store unused:\n"
		   "no mount and no other command or LMDB program may have it open (gc\n"
		   "says which one does, and changes nothing); commands started while it\n"
		   "compacts wait for it.\n");
}

static void print_space(const char *when, mfs_store *s)
{
	mfs_txn *t;
	mfs_store_stat st;
	if (mfs_txn_begin(s, MFS_TXN_READ, &t) < 0)
		return;
	if (mfs_store_stat_get(t, &st) == 0) {
		char a[32], b[32], c[32];
		printf("%s: %llu chunks, %s of payload; store file %s, %s in use\n", when,
		       (unsigned long long)st.n_chunks,
		       mfs_size_format(st.chunk_payload_bytes, a, sizeof a),
		       mfs_size_format(st.file_bytes, b, sizeof b),
		       mfs_size_format(st.used_bytes, c, sizeof c));
	}
	mfs_txn_abort(t);
}

int cmd_gc(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"compact", no_argument, NULL, 'c'},
		{"no-wait", no_argument, NULL, 'n'},
		{"store", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int compact = 0, wait = 1, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
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
		print_space("after", s);
	}
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", mfs_store_dir(s));
	mfs_store_unlock(lock);
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
