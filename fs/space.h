/*
 * space.h - what a store takes on disk and what the disk under it has left:
 * the figures the mount's statfs reports (fs/ll.c), so that `df` on a mount
 * shows the store's real use and the free space it can still grow into.
 *
 * No FUSE and no index transaction here: a look at the store directory
 * (stat of data.mdb, of each pack in packs/) and statvfs(2) of it, cheap
 * enough for every statfs request.
 *
 * Module convention: int return, 0 or a negative code (err.h, -errno).
 */
#ifndef MFS_SPACE_H
#define MFS_SPACE_H

#include <stdint.h>

typedef struct mfs_space {
	/* The store on disk: the blocks of data.mdb and of every pack file
	 * (packs/<16 hex>.pack), st_blocks * 512, what `du` counts of them and
	 * what mfs_store_stat_get's disk_bytes says. */
	uint64_t store_bytes;
	/* The file system that holds the store directory (statvfs), in bytes. */
	uint64_t fs_bytes;	 /* its size */
	uint64_t fs_free_bytes;	 /* free (f_bfree: root's reserve included) */
	uint64_t fs_avail_bytes; /* free to an unprivileged user (f_bavail) */
} mfs_space;

/**
 * Measure the store at @p store_dir and the file system under it.
 * A data.mdb or packs/ that is not there counts 0 (a store being created or
 * removed meanwhile); so does a pack unlinked while the directory is read.
 * @param[in]  store_dir  the store directory (mfs_store_dir())
 * @param[out] out        filled on success; zeroed on failure
 * @return 0, or -errno of statvfs(2) on @p store_dir (out zeroed)
 */
int mfs_space_get(const char *store_dir, mfs_space *out);

#endif
