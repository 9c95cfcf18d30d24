/*
 * main.c - the modelfs command: a table of subcommands (git's commands[]).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

#ifdef MFS_NO_FUSE
/* Built where libfuse3 was missing (CMakeLists.txt: MODELFS_FUSE): the
 * mount is left out, and says how to get it. */
static int cmd_mount_absent(int argc, char **argv)
{
	int help = argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
	fprintf(help ? stdout : stderr,
		"usage: modelfs mount [flags] MOUNTPOINT\n\n"
		"This modelfs was built without FUSE (libfuse3 was not found when it was\n"
		"configured, or MODELFS_FUSE=OFF), so it cannot mount a store. Install\n"
		"libfuse3-dev (Debian) and rebuild to have `modelfs mount`. Without a mount,\n"
		"`modelfs export` writes a snapshot's files to a folder, and the library\n"
		"(libmodelfs, or `import modelfs` in Python) reads tensors from the store.\n");
	return help ? MFS_EXIT_OK : MFS_EXIT_USAGE;
}
#define cmd_mount cmd_mount_absent
#define MOUNT_SUMMARY "(not in this build: no FUSE) serve the store as a Hugging Face cache"
#else
#define MOUNT_SUMMARY "serve the store read-only as a Hugging Face cache (FUSE)"
#endif

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"ingest", cmd_ingest, "read models (HF cache or a folder) into the store"},
	{"ls", cmd_ls, "list repos, refs and files with sizes"},
	{"info", cmd_info, "per-tensor dtype, shape, codec and ratio"},
	{"export", cmd_export, "write a repo's files to a folder"},
	{"verify", cmd_verify, "decode everything and check every checksum"},
	{"rm", cmd_rm, "remove a repo (shared chunks stay)"},
	{"gc", cmd_gc, "free chunks nothing uses any more (--remote: in a bucket)"},
	{"mount", cmd_mount, MOUNT_SUMMARY},
	{"push", cmd_push, "upload the store to an S3 bucket for remote mounts"},
	{"upgrade", cmd_upgrade, "convert a store of an older format to this one, in place"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: modelfs [--store DIR] COMMAND [ARGS]\n\n"
		   "modelfs keeps many model repositories compressed and deduplicated in one\n"
		   "store, and serves them back byte-exact as a Hugging Face cache.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nThe store is --store DIR, else $MODELFS_STORE, else "
		   "$XDG_DATA_HOME/modelfs\n(~/.local/share/modelfs). "
		   "`modelfs COMMAND --help` explains a command.\n");
}

int main(int argc, char **argv)
{
	int i = 1;
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return MFS_EXIT_OK;
		} else if (!strcmp(argv[i], "--store") && i + 1 < argc) {
			mfs_cli_store_dir = argv[i + 1];
			i += 2;
		} else if (!strncmp(argv[i], "--store=", 8)) {
			mfs_cli_store_dir = argv[i] + 8;
			i++;
		} else {
			fprintf(stderr, "modelfs: unknown option %s\n\n", argv[i]);
			usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return MFS_EXIT_USAGE;
	}
	for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
		if (!strcmp(argv[i], commands[c].name))
			return commands[c].fn(argc - i, argv + i);
	fprintf(stderr, "modelfs: unknown command \"%s\"\n\n", argv[i]);
	usage(stderr);
	return MFS_EXIT_USAGE;
}
