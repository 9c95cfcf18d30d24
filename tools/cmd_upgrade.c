/* modelfs upgrade: convert an older store to this modelfs's format, in place (index/upgrade.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "progress.h"
#include "units.h"
#include "upgrade.h"

static void upgrade_usage(FILE *f)
{
	fprintf(f,
		"usage: modelfs upgrade [--store DIR] [--batch SIZE] [--quiet]\n\n"
		"Convert a store written by an older modelfs to the format this one reads,\n"
		"in place. Format 1 (modelfs before pack files) kept every chunk's payload\n"
		"inside the LMDB index (data.mdb); format 2 keeps the payloads in pack files\n"
		"(packs/*.pack) and the index says where they are. Other commands refuse a\n"
		"format-1 store and name this one.\n\n"
		"The payloads are moved in file order (so that a file's chunks lie in order\n"
		"in the packs, as an ingest writes them), in batches of --batch bytes of\n"
		"payload per transaction (default 64M); the format switches to 2 in one\n"
		"commit at the end, and the index is then compacted (as gc --compact does),\n"
		"which gives the space of the old copies back.\n\n"
		"It is crash-safe: killed or interrupted at any point, the store is either\n"
		"still format 1 (partly converted: run upgrade again and it goes on where it\n"
		"stopped) or format 2 and complete (run upgrade again if it was stopped\n"
		"before the compaction). What a batch in flight wrote is an unreferenced\n"
		"pack tail that modelfs gc removes.\n\n"
		"It needs the store to itself: while a mount, another command or an LMDB\n"
		"program (mdb_stat, ...) has it open, upgrade is refused and nothing is\n"
		"changed; commands started while it runs wait for it. While it runs, the\n"
		"store needs about its payload's size of free disk (the index keeps its\n"
		"copies until the compaction). A store already in format 2 is left as it is.\n\n"
		"options:\n"
		"  --batch SIZE   payload bytes per transaction (e.g. 64M, 256K; at least 4K)\n"
		"  --quiet        no progress bar\n"
		"  --store DIR    the store (default $MODELFS_STORE or ~/.local/share/modelfs)\n\n"
		"Exit status: 0 (upgraded, finished, or nothing to do); 1 on an error (the\n"
		"message says whether anything changed); 2 on a usage error.\n");
}

struct bar {
	mfs_progress p;
	int quiet, started;
};

static void on_progress(void *ud, const mfs_upgrade_progress *pr)
{
	struct bar *b = ud;
	if (!b->started) {
		mfs_progress_init(&b->p, "upgrade", pr->bytes_total, b->quiet);
		b->started = 1;
	}
	if (pr->phase == MFS_UPGRADE_CONVERT)
		mfs_progress_add(&b->p, pr->bytes_done - b->p.done);
	else
		mfs_progress_end(&b->p);
}

static const char *store_dir(char *def, size_t cap)
{
	const char *dir = mfs_cli_store_dir;
	if (!dir)
		dir = getenv("MODELFS_STORE");
	if (dir && dir[0])
		return dir;
	return mfs_store_default_dir(def, cap) == 0 ? def : NULL;
}

int cmd_upgrade(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"batch", required_argument, NULL, 'b'},
		{"quiet", no_argument, NULL, 'q'},
		{"store", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	mfs_upgrade_opts opts = {0};
	struct bar bar = {0};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			if (mfs_size_parse(optarg, &opts.batch_bytes) < 0 ||
			    opts.batch_bytes < 4096) {
				mfs_cli_error("upgrade", "--batch %s: a size of at least 4K (e.g. 64M)",
					      optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'q':
			bar.quiet = 1;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'h':
			upgrade_usage(stdout);
			return MFS_EXIT_OK;
		default:
			upgrade_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc != optind) {
		upgrade_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	char def[4096];
	const char *dir = store_dir(def, sizeof def);
	if (!dir) {
		mfs_cli_error("upgrade", "no store given and neither XDG_DATA_HOME nor HOME is "
					 "set: pass --store DIR");
		return MFS_EXIT_ERROR;
	}
	opts.progress = on_progress;
	opts.progress_ud = &bar;
	mfs_upgrade_stat st;
	mfs_errmsg err = {0};
	int rc = mfs_store_upgrade(dir, &opts, &st, &err);
	if (bar.started)
		mfs_progress_end(&bar.p);
	if (rc < 0) {
		mfs_cli_error("upgrade", "%s", err.msg[0] ? err.msg : mfs_strerror(rc));
		return MFS_EXIT_ERROR;
	}
	char a[32], b[32], c[32];
	if (st.format_before == MFS_STORE_FORMAT && !st.compacted && !st.compact_pending) {
		printf("store %s is already format %d: nothing to do\n", dir, MFS_STORE_FORMAT);
		return MFS_EXIT_OK;
	}
	if (st.switched) {
		printf("upgraded store %s to format %d: %llu chunks in %llu pack%s (%s); "
		       "%llu moved by this run (%s of payload in %llu batches)",
		       dir, MFS_STORE_FORMAT, (unsigned long long)st.chunks,
		       (unsigned long long)st.n_packs, st.n_packs == 1 ? "" : "s",
		       mfs_size_format(st.pack_bytes, a, sizeof a),
		       (unsigned long long)st.chunks_moved, mfs_size_format(st.bytes_moved, b, sizeof b),
		       (unsigned long long)st.batches);
		if (st.chunks_resumed)
			printf(", %llu by an earlier, interrupted run",
			       (unsigned long long)st.chunks_resumed);
		printf("\n");
	} else {
		printf("store %s was format %d already; finished its upgrade with the index "
		       "compaction it still owed\n",
		       dir, MFS_STORE_FORMAT);
	}
	if (st.compacted)
		printf("index compacted: data.mdb %s -> %s\n",
		       mfs_size_format(st.index_bytes_before, a, sizeof a),
		       mfs_size_format(st.index_bytes_after, c, sizeof c));
	if (st.compact_pending)
		fprintf(stderr,
			"modelfs upgrade: the store is format %d and usable, but it was in use, so "
			"its index was not compacted: data.mdb (%s) still holds the old copies of "
			"the payloads; run `modelfs upgrade --store %s` again when nothing uses "
			"the store to give that space back\n",
			MFS_STORE_FORMAT, mfs_size_format(st.index_bytes_after, a, sizeof a), dir);
	return MFS_EXIT_OK;
}
