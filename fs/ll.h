/*
 * ll.h - the mount daemon: a store served through the libfuse3 low-level
 * API (fs/ll.c is the only file that includes FUSE).
 *
 * Use (tools/cmd_mount.c):
 *   mfs_mount_create(cfg, debug, &m, &err)   check the store, mount (errors
 *                                            are reported here, in the
 *                                            caller's terminal)
 *   mfs_mount_run(m)                         daemonize unless cfg->foreground,
 *                                            open the store, serve until
 *                                            unmounted or SIGINT/SIGTERM/SIGHUP
 *   mfs_mount_destroy(m)                     unmount (if still mounted), free
 *
 * The store is opened again after daemonizing: an LMDB environment must not
 * cross a fork().
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_LL_H
#define MFS_LL_H

#include "config.h"
#include "err.h"

typedef struct mfs_mount mfs_mount;

/**
 * Check the store and mount it (read-only) at cfg->mountpoint.  A mount
 * point that is already a FUSE mount is refused (-EBUSY: a second mount
 * would stack on the first and hide it); one that is not empty is mounted
 * over, with a log line saying how many entries it hides.  Opens
 * cfg->log_file (append) and checks cfg->spill_dir, so their errors reach
 * the terminal.
 * @param[in]  cfg    copied
 * @param[in]  debug  log every FUSE request (libfuse -d); implies foreground
 * @param[out] out    free with mfs_mount_destroy()
 * @return 0; -errno or a store code, with @p err saying what failed
 */
int mfs_mount_create(const mfs_mount_config *cfg, int debug, mfs_mount **out,
		     mfs_errmsg *err);

/**
 * Serve requests until the file system is unmounted or a signal asks to stop.
 * @return 0, or a negative code when the store could not be opened after
 *         daemonizing (logged)
 */
int mfs_mount_run(mfs_mount *m);

/** Unmount if still mounted and free everything; NULL is a no-op. */
void mfs_mount_destroy(mfs_mount *m);

/**
 * Log a line at @p level (MFS_LOG_*): in the foreground to stderr, and to
 * cfg->log_file when set; daemonized to cfg->log_file when set, else to
 * syslog.  @p m may be NULL (stderr).
 */
void mfs_mount_log(mfs_mount *m, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** The mount point, resolved (absolute, no symlinks): owned by @p m. */
const char *mfs_mount_point(const mfs_mount *m);

/**
 * The one place a modelfs code becomes an errno for the kernel:
 * -errno -> errno, MFS_E_NOTFOUND -> ENOENT, MFS_E_CORRUPT -> EIO, ...
 */
int mfs_errno(int rc);

#endif
