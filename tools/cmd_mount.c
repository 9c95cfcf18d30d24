/*
 * cmd_mount.c - `modelfs mount`: serve a store read-only as a Hugging Face
 * cache through FUSE (fs/ll.h does the serving; this file reads options).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "heap.h"
#include "ll.h"
#include "remote.h"
#include "units.h"

static void usage(FILE *f)
{
	size_t n;
	const mfs_config_key *k = mfs_config_keys(&n);
	fprintf(
	    f,
	    "usage: modelfs mount [--config FILE] [--store DIR] [-f|--foreground] "
	    "[--debug] [flags] MOUNTPOINT\n\n"
	    "Serve the store read-only at MOUNTPOINT, laid out like the Hugging Face "
	    "hub\n"
	    "cache (models--org--name/{refs,snapshots,blobs}). Point HF_HUB_CACHE at it "
	    "(or\n"
	    "mount over ~/.cache/huggingface/hub) and set HF_HUB_OFFLINE=1.\n"
	    "Daemonizes unless --foreground; stop with `fusermount3 -u MOUNTPOINT` (or\n"
	    "SIGINT/SIGTERM to the daemon).\n\n"
	    "  --config FILE              read settings from FILE (see mount.conf); flags win\n"
	    "  -f                         the same as --foreground\n"
	    "  --debug                    log every FUSE request (implies --foreground)\n");
	for (size_t i = 0; i < n; i++) {
		char flag[64];
		snprintf(flag, sizeof(flag), "%s %s", k[i].flag, k[i].arg);
		fprintf(f, "  %-25s  %s\n", flag, k[i].help);
	}
	fprintf(
	    f,
	    "\nA store pushed to S3 (modelfs push), mounted from another machine:\n"
	    "  --remote s3://BUCKET/PREFIX  --store DIR is then a directory of its own\n"
	    "                             for it: empty the first time (the index is\n"
	    "                             fetched into it); payloads are fetched as reads\n"
	    "                             need them into DIR/cache. Endpoint and keys: the\n"
	    "                             AWS_* variables (modelfs push --help)\n"
	    "  --cache-size SIZE          the bound of DIR/cache on disk (default 10G)\n"
	    "  A newer push is taken in while the mount serves: --remote-poll SECONDS\n"
	    "  (above) says how often LATEST is read.\n"
	    "\nA yes|no flag alone means yes (--foreground is --foreground yes).\n"
	    "The store is --store, else store = in the config, else $MODELFS_STORE,\n"
	    "else $XDG_DATA_HOME/modelfs (~/.local/share/modelfs).\n");
}

/*
 * Raise the mount's readahead to 1 MiB so the kernel asks for 1 MiB reads
 * (it asks for 128 KiB otherwise).  The bdi is named by the mount's device
 * number, read from mountinfo: a stat() of the mount point would wait on the
 * daemon, which does not serve yet.  Best effort.
 */
static void raise_readahead(mfs_mount *m, const char *mountpoint)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return;
	char line[8192];
	unsigned maj = 0, min = 0;
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned a, b;
		char mp[PATH_MAX];
		/* "36 35 0:52 / /mnt/x rw,... - fuse.modelfs modelfs rw,..." */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, mp) == 3 &&
		    strcmp(mp, mountpoint) == 0 && strstr(line, " fuse.modelfs ")) {
			maj = a;
			min = b;
			found = 1; /* the last one listed is the top of the stack */
		}
	}
	fclose(f);
	if (!found) {
		mfs_mount_log(m, MFS_LOG_WARN, "readahead: %s not found in mountinfo",
			      mountpoint);
		return;
	}
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	int fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, "1024", 4) != 4) {
		mfs_mount_log(
		    m, MFS_LOG_INFO,
		    "readahead: cannot write %s (%s): the kernel will read 128 KiB at "
		    "a time; run as root for 1 MiB",
		    path, strerror(errno));
	} else {
		mfs_mount_log(m, MFS_LOG_DEBUG, "readahead: %s = 1024", path);
	}
	if (fd >= 0)
		close(fd);
}

/* --remote: the mount opens its store with remote/remote.h */
struct remote_opener {
	const char *url;
	uint64_t cache_bytes;
	unsigned poll_seconds;
	mfs_mount *m; /* set once created: the serving open logs there and polls */
	mfs_remote *r;
};

static void remote_log(void *ud, int level, const char *line)
{
	struct remote_opener *o = ud;
	/* MFS_REMOTE_LOG_* are the mount's MFS_LOG_* numbers */
	mfs_mount_log(o->m, level, "%s", line);
}

static int remote_store_open(void *ud, const char *dir, struct mfs_store **out,
			     mfs_errmsg *err)
{
	struct remote_opener *o = ud;
	/* the check before mounting (o->m not set yet) opens without polling:
	 * the serving open after daemonizing starts the poll thread */
	mfs_remote_opts ro = {.cache_bytes = o->cache_bytes,
			      .poll_seconds = o->m ? o->poll_seconds : 0,
			      .log = remote_log,
			      .log_ud = o};
	int rc = mfs_remote_open_opts(dir, o->url, &ro, &o->r, err);
	if (rc == 0)
		*out = mfs_remote_store(o->r);
	return rc;
}

static void remote_store_close(void *ud, struct mfs_store *s)
{
	struct remote_opener *o = ud;
	(void)s; /* the remote's own store */
	mfs_remote_close(o->r);
	o->r = NULL;
}

/* Take --remote URL and --cache-size SIZE out of argv (the config keys do
 * not know them).  @return 0, or -1 after printing the error */
static int take_remote_flags(int *argc, char **argv, struct remote_opener *o)
{
	int j = 1;
	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i], *val = NULL;
		int which = 0;
		if (!strcmp(a, "--remote") || !strcmp(a, "--cache-size")) {
			which = a[2] == 'r' ? 1 : 2;
			if (i + 1 >= *argc) {
				mfs_cli_error("mount", "%s needs a value", a);
				return -1;
			}
			val = argv[++i];
		} else if (!strncmp(a, "--remote=", 9)) {
			which = 1, val = a + 9;
		} else if (!strncmp(a, "--cache-size=", 13)) {
			which = 2, val = a + 13;
		}
		if (which == 1)
			o->url = val;
		else if (which == 2 && mfs_size_parse(val, &o->cache_bytes) < 0) {
			mfs_cli_error("mount", "--cache-size takes a size (10G, 512M), not %s", val);
			return -1;
		} else if (!which)
			argv[j++] = argv[i];
	}
	*argc = j;
	argv[j] = NULL;
	return 0;
}

/* The config key of a long flag ("--cache-bytes" -> "cache_bytes"), or NULL. */
static const mfs_config_key *key_of_flag(const char *flag, size_t flen)
{
	size_t n;
	const mfs_config_key *k = mfs_config_keys(&n);
	for (size_t i = 0; i < n; i++)
		if (strlen(k[i].flag) == flen && strncmp(k[i].flag, flag, flen) == 0)
			return &k[i];
	return NULL;
}

int cmd_mount(int argc, char **argv)
{
	const char *config_path = NULL;
	int debug = 0;
	struct remote_opener ro = {.cache_bytes = (uint64_t)10 << 30};
	if (take_remote_flags(&argc, argv, &ro) < 0)
		return MFS_EXIT_USAGE;
	/* first pass: find --config, so flags can override the file */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return MFS_EXIT_OK;
		}
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			config_path = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			config_path = argv[i] + 9;
	}
	mfs_mount_config cfg;
	mfs_config_defaults(&cfg);
	mfs_errmsg err = {0};
	const char *env_store = getenv("MODELFS_STORE");
	if (env_store && *env_store &&
	    mfs_config_set(&cfg, "store", env_store, "$MODELFS_STORE", &err) < 0) {
		mfs_cli_error("mount", "%s", err.msg);
		return MFS_EXIT_USAGE;
	}
	if (config_path && mfs_config_load_file(&cfg, config_path, &err) < 0) {
		mfs_cli_error("mount", "%s", err.msg);
		return MFS_EXIT_USAGE;
	}
	if (mfs_cli_store_dir &&
	    mfs_config_set(&cfg, "store", mfs_cli_store_dir, "--store", &err) < 0) {
		mfs_cli_error("mount", "%s", err.msg);
		return MFS_EXIT_USAGE;
	}
	const char *mountpoint = NULL;
	const char *bare_bool = NULL; /* a yes|no flag given alone, just before */
	const char *mp_after_bool = NULL; /* the one just before the mount point */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *prev_bare = bare_bool;
		bare_bool = NULL;
		if (!strcmp(a, "--config")) {
			i++;
			continue;
		}
		if (!strncmp(a, "--config=", 9))
			continue;
		if (!strcmp(a, "-f")) {
			cfg.foreground = 1;
			continue;
		}
		if (!strcmp(a, "--debug") || !strcmp(a, "-d")) {
			debug = 1;
			continue;
		}
		if (a[0] == '-' && a[1] == '-') {
			const char *eq = strchr(a, '=');
			size_t flen = eq ? (size_t)(eq - a) : strlen(a);
			const mfs_config_key *k = key_of_flag(a, flen);
			if (!k) {
				mfs_cli_error(
				    "mount",
				    "unknown option %s (see modelfs mount --help)", a);
				return MFS_EXIT_USAGE;
			}
			const char *val = eq ? eq + 1 : NULL;
			int b;
			if (!val && k->is_bool) {
				/* `--foreground yes` as --help spells it; alone, yes */
				if (i + 1 < argc && mfs_config_parse_bool(argv[i + 1], &b) == 0)
					val = argv[++i];
				else
					val = "yes", bare_bool = k->flag;
			} else if (!val && i + 1 < argc)
				val = argv[++i];
			if (mfs_config_set(&cfg, k->name, val, k->flag, &err) < 0) {
				mfs_cli_error("mount", "%s", err.msg);
				return MFS_EXIT_USAGE;
			}
			continue;
		}
		if (a[0] == '-') {
			mfs_cli_error("mount",
				      "unknown option %s (see modelfs mount --help)", a);
			return MFS_EXIT_USAGE;
		}
		if (mountpoint) {
			mfs_cli_error("mount", "more than one mount point (%s, %s)%s%s%s",
				      mountpoint, a, mp_after_bool ? "; " : "",
				      mp_after_bool ? mp_after_bool : "",
				      mp_after_bool ? " takes yes or no (or nothing), not "
						      "another word"
						    : "");
			return MFS_EXIT_USAGE;
		}
		mountpoint = a;
		mp_after_bool = prev_bare;
	}
	if (mountpoint &&
	    mfs_config_set(&cfg, "mountpoint", mountpoint, "MOUNTPOINT", &err) < 0) {
		mfs_cli_error("mount", "%s", err.msg);
		return MFS_EXIT_USAGE;
	}
	if (!cfg.mountpoint[0]) {
		mfs_cli_error("mount",
			      "no mount point: give MOUNTPOINT or mountpoint = in the "
			      "config");
		usage(stderr);
		return MFS_EXIT_USAGE;
	}

	if (ro.url) {
		char def[MFS_CONFIG_PATH_MAX];
		if (mfs_store_default_dir(def, sizeof def) == 0 && !strcmp(def, cfg.store)) {
			mfs_cli_error("mount", "--remote needs --store DIR: a directory of its "
					       "own for the index and the cache");
			return MFS_EXIT_USAGE;
		}
		if (mkdir(cfg.store, 0700) < 0 && errno != EEXIST) {
			mfs_cli_error("mount", "cannot create %s: %s", cfg.store, strerror(errno));
			return MFS_EXIT_ERROR;
		}
		ro.poll_seconds = cfg.remote_poll;
		cfg.store_open = remote_store_open;
		cfg.store_close = remote_store_close;
		cfg.store_ud = &ro;
	}

	mfs_heap_setup(); /* before any thread starts: see fs/heap.h */

	mfs_mount *m;
	int rc = mfs_mount_create(&cfg, debug, &m, &err);
	if (rc < 0) {
		mfs_cli_error("mount", "%s", err.msg[0] ? err.msg : mfs_strerror(rc));
		return MFS_EXIT_ERROR;
	}
	ro.m = m;
	raise_readahead(m, mfs_mount_point(m));
	rc = mfs_mount_run(m);
	mfs_mount_destroy(m);
	return rc < 0 ? MFS_EXIT_ERROR : MFS_EXIT_OK;
}
