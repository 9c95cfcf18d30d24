/*
 * warm.h - what the mount daemon brings into memory at start, so that the
 * first reads of a cold store wait for their payloads only.
 *
 * The first read of a cold store asks the disk for megabytes of pack
 * entries ahead (ioahead.h).  Anything else that read needs from the disk
 * then queues behind them: measured on the virtual disks here (BF16
 * MiniLM, page cache dropped after the mount started), the decoders' own
 * code, never run since the daemon started, faulted in 17-20 ms late, and
 * the first MiB was served after 40-50 ms instead of 10-15.
 *
 * Process-wide, whole: the mount command; a library, for its own code only.
 */
#ifndef MFS_WARM_H
#define MFS_WARM_H

#include <stddef.h>

/**
 * Read in and map the executable file mappings of this process (the
 * program and its shared libraries, as /proc/self/maps lists them), every
 * mapping of each (its read-only data too: a library's constant tables are
 * read on the first decode), and no other file's:
 * madvise MADV_WILLNEED, then MADV_POPULATE_READ (Linux 5.14; before it,
 * one byte of each page touched).  A mapped page is not dropped with the
 * clean page cache; it is reclaimed like any under memory pressure.
 * Blocks while it reads (a few MiB): call it off the serving path.
 * @param[in] in    code addresses (functions): only the objects whose code
 *                  holds one of them are brought in; NULL (or @p n_in 0):
 *                  every object of the process (the mount daemon's choice;
 *                  a library inside someone else's process names its own)
 * @param[out] bytes  the bytes of the mappings covered (may be NULL)
 * @return 0, or -errno when /proc/self/maps cannot be read
 */
int mfs_warm_code(const void *const *in, size_t n_in, size_t *bytes);

/**
 * mfs_warm_code() for what a read of the store runs: the object this code
 * is linked into (the modelfs program, or libmodelfs.so inside someone
 * else's process), libxxhash, libzstd and liblmdb (their code and constant
 * tables), and the objects holding @p extra (the mount adds libfuse's).
 * Not libc, whose pages every process keeps warm.
 * @param[in] extra  more code addresses, or NULL
 * @return as mfs_warm_code()
 */
int mfs_warm_decoders(const void *const *extra, size_t n_extra, size_t *bytes);

#endif
