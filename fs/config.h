/*
 * config.h - the mount's settings: mount.conf and the matching flags.
 *
 * mount.conf is `key = value` lines; `#` starts a comment; blank lines are
 * ignored; a value may be quoted with "...".  Every key is also a flag of
 * `modelfs mount` (`cache_bytes` <-> `--cache-bytes`); flags are applied
 * after the file, so they win.  An unknown key or a bad value is an error
 * naming the file and line (or the flag) and what is accepted.
 *
 * Keys (defaults in mfs_config_defaults):
 *   store        store directory
 *   mountpoint   where to mount
 *   cache_bytes  decoded-chunk cache budget: bytes, or with a K/M/G/T suffix (x1024)
 *   threads      FUSE worker threads (1..256)
 *   prefetch     chunks decoded ahead of a sequential reader (0..256, 0 = off)
 *   prefetch_file  a file up to this size (bytes or K/M/G/T) is decoded whole in
 *                the background the first time it is read out of order; at
 *                most a quarter of cache_bytes takes effect; 0 = off
 *   prefetch_model  yes | no: when a snapshot's config.json is first read, the
 *                `*.safetensors` files beside it are decoded in the background
 *                (fs/prefetch_model.h), as many as fit in the prefetch_file
 *                limit; needs prefetch on
 *   gpu          auto | on | off: whether rans chunks are decoded on a CUDA device
 *                (fs/batch.h): auto and on use one when the build has gpu/ and a
 *                device is usable; without one the mount decodes on the CPU and
 *                logs why (on too: a mount never fails for want of a GPU); off
 *                never uses one
 *   gpu_memory   device memory GPU decoding may use: bytes or K/M/G/T; 0 (the
 *                default) = min(1 GiB, an eighth of the device); else at least
 *                16 MiB (MFS_GPU_MEMORY_MIN_BYTES)
 *   log_level    error | warn | info | debug
 *   allow_other  yes | no  (let other users read the mount; needs user_allow_other
 *                in /etc/fuse.conf when not root)
 *   foreground   yes | no  (stay in the foreground instead of daemonizing)
 *   log_file     append the log to this file (flag --log): what a foreground
 *                mount prints to stderr; a daemon then logs there instead of
 *                to syslog.  Default: none
 *   remote_poll  seconds between reads of LATEST by a mount with --remote (0..86400;
 *                0 = never: the index fetched at start stays); a newer one is
 *                taken in while the mount serves (remote/remote.h).  Default: 30
 *   spill_dir    where copies of removed files still held open go once the
 *                mount holds too many store snapshots (fs/blob_table.h).
 *                Default: empty, meaning $TMPDIR, else /var/tmp, else /tmp
 *                (the first one that works)
 *
 * A boolean flag may stand alone (`--foreground`: yes) or take its value as
 * the next argument or after '=' (`--foreground no`, `--foreground=no`).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_CONFIG_H
#define MFS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct mfs_store; /* index/store.h */

#define MFS_CONFIG_PATH_MAX 4096

enum { MFS_GPU_AUTO = 0, MFS_GPU_ON = 1, MFS_GPU_OFF = 2 };
/* The smallest gpu_memory (batch.h's MFS_GPU_MEMORY_MIN). */
#define MFS_GPU_MEMORY_MIN_BYTES ((uint64_t)16 << 20)
enum { MFS_LOG_ERROR = 0, MFS_LOG_WARN = 1, MFS_LOG_INFO = 2, MFS_LOG_DEBUG = 3 };

typedef struct mfs_mount_config {
	char store[MFS_CONFIG_PATH_MAX];
	char mountpoint[MFS_CONFIG_PATH_MAX];
	uint64_t cache_bytes;
	unsigned threads;
	unsigned prefetch;
	uint64_t prefetch_file; /* bytes; 0 = off */
	int prefetch_model;	/* yes/no */
	int gpu;       /* MFS_GPU_* */
	uint64_t gpu_memory; /* device bytes for decoding; 0 = the default */
	int log_level; /* MFS_LOG_* */
	int allow_other;
	int foreground;
	char log_file[MFS_CONFIG_PATH_MAX];  /* empty: none */
	char spill_dir[MFS_CONFIG_PATH_MAX]; /* empty: the first of $TMPDIR,
						/var/tmp, /tmp that works */
	unsigned remote_poll; /* seconds; 0 = off (only with --remote) */
	/* Not from the file or flags: how the mount opens its store, when not
	 * with mfs_store_open(store, read-only) (a remote store: tools/cmd_mount.c
	 * opens it with remote/remote.h).  Called before mounting (the check) and
	 * again after daemonizing; close gets what open gave. */
	int (*store_open)(void *ud, const char *dir, struct mfs_store **out, mfs_errmsg *err);
	void (*store_close)(void *ud, struct mfs_store *s);
	void *store_ud;
} mfs_mount_config;

/* One key, for --help and for mapping flags. */
typedef struct mfs_config_key {
	const char *name; /* "cache_bytes" */
	const char *flag; /* "--cache-bytes" */
	int is_bool;	  /* yes|no; a flag without a value sets it to yes */
	const char *arg;  /* what the flag takes, for --help: "SIZE", "[yes|no]" */
	const char *help;
} mfs_config_key;

/**
 * The keys, in mount.conf order.
 * @param[out] n  number of keys
 * @return a static table
 */
const mfs_config_key *mfs_config_keys(size_t *n);

/**
 * Fill @p c with the defaults: store = mfs_store_default_dir() (empty when
 * neither XDG_DATA_HOME nor HOME is set), no mountpoint, cache_bytes 1 GiB,
 * threads 4, prefetch 8, prefetch_file 256 MiB, prefetch_model yes, gpu auto,
 * gpu_memory 0 (the default budget),
 * log_level info, allow_other no, foreground no, no log_file, spill_dir
 * empty (chosen at mount), remote_poll 30.
 */
void mfs_config_defaults(mfs_mount_config *c);

/**
 * Set one key from its text value.
 * @param[in]  where  "mount.conf:12" or "--cache-bytes", put in messages
 * @return 0; MFS_E_INVAL (unknown key or bad value; @p err says which and
 *         what is accepted)
 */
int mfs_config_set(mfs_mount_config *c, const char *key, const char *value,
		   const char *where, mfs_errmsg *err);

/**
 * Read a mount.conf file into @p c (keys not in the file keep their value).
 * @return 0; -errno when it cannot be read; MFS_E_INVAL with "file:line: ..."
 */
int mfs_config_load_file(mfs_mount_config *c, const char *path, mfs_errmsg *err);

/**
 * Parse a boolean as mount.conf and the flags spell it: yes, true, on, 1 or
 * no, false, off, 0 (any case).
 * @return 0 or MFS_E_INVAL
 */
int mfs_config_parse_bool(const char *s, int *out);

/** Name of a log level ("info") / GPU mode ("auto"): static strings. */
const char *mfs_config_log_level_name(int level);
const char *mfs_config_gpu_name(int gpu);

#endif
