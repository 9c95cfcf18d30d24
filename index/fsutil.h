/*
 * fsutil.h - the file-system helpers every layer from index/ up shares, one
 * of each: making a folder with its parents, reading a whole range of a file
 * despite short reads, listing a folder's names in a stable order, and
 * reading in the pages of a file mapping (the index's, the daemon's code).
 *
 * index/ is the lowest layer that needs them (the store makes its directory
 * and reads LMDB's meta pages); fs/ (the reader's spill file, export) and
 * ingest/ (its sources, verify's repair) use the same ones.  No FUSE, no
 * LMDB here.
 *
 * Module convention: int return, 0 or a negative code (-errno or MFS_E_*
 * from err.h).
 */
#ifndef MFS_FSUTIL_H
#define MFS_FSUTIL_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/**
 * Make folder @p dir and every missing folder above it (mkdir -p).  The
 * folders above are made 0755, @p dir itself @p mode (both less the umask);
 * a folder that exists already is left as it is, whatever its mode.
 * @param[in] dir   absolute or relative path; a trailing '/' is allowed
 * @return 0; -ENAMETOOLONG (4096 bytes or more); -errno of the mkdir that
 *         failed (-EACCES, -ENOTDIR when a component is a file, ...)
 */
int mfs_mkdir_p(const char *dir, mode_t mode);

/**
 * Read exactly @p len bytes at offset @p off of @p fd, retrying short reads
 * and EINTR.
 * @param[in]  short_rc  what to return when the file ends first: the caller
 *                       says what that means to it (MFS_E_CORRUPT for a
 *                       store file cut short, MFS_E_FORMAT for an input
 *                       that shrank, -EIO for a spill file)
 * @param[out] got       optional: the bytes read, on failure too
 * @return 0 (all @p len bytes read); -errno of the failed pread; @p short_rc
 */
int mfs_pread_full(int fd, void *buf, size_t len, uint64_t off, int short_rc, size_t *got);

/**
 * The names in an open folder, "." and ".." left out, sorted by strcmp, so
 * a walk visits a folder the same way on every run and file system.  Reads
 * @p d to its end (from where it stands); does not close it.
 * @param[out] names  malloc'd array of @p *n malloc'd strings, owned by the
 *                    caller: mfs_dir_names_free(); NULL with *n 0 on failure
 * @return 0; -ENOMEM; -errno of a failed readdir
 */
int mfs_dir_names(DIR *d, char ***names, size_t *n);

/** Free what mfs_dir_names() returned; NULL is a no-op. */
void mfs_dir_names_free(char **names, size_t n);

/**
 * Read in the pages of [@p p, @p p + @p len), a readable file mapping, in
 * one pass and map them into this process: madvise MADV_WILLNEED (whatever
 * MADV_RANDOM says), then MADV_POPULATE_READ, or on kernels before 5.14 one
 * byte of each page touched.  The range must lie within the file (a page
 * past its end is SIGBUS).  Blocks while it reads.
 */
void mfs_map_populate(void *p, size_t len);

#endif
