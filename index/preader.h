/*
 * preader.h - positioned reads from a file or a buffer, for the parsers of
 * weight containers (torchzip.h, gguf.h) that read an untrusted file's
 * directory pieces without loading the file: a 10 GB checkpoint is read a
 * few kilobytes at a time, wherever its directory says.
 *
 * A reader is a small struct the caller fills (mfs_preader_fd(),
 * mfs_preader_mem()) and keeps for as long as a parse uses it; it owns
 * nothing (the fd or the buffer stays the caller's).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_PREADER_H
#define MFS_PREADER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct mfs_preader {
	/* Read exactly @p len bytes at @p off into @p buf: 0, MFS_E_FORMAT when
	 * the source ends first, or a negative -errno. */
	int (*read)(void *ud, uint64_t off, void *buf, size_t len);
	void *ud;
	uint64_t size; /* the source's size in bytes */
	int fd;	       /* for mfs_preader_fd (ud points here) */
	const uint8_t *mem;
} mfs_preader;

/**
 * A reader over an open file.
 * @param[out] r     filled; valid while @p fd stays open and @p r in place
 * @param[in]  fd    the file (not closed by anything here)
 * @param[in]  size  its size (fstat's st_size); reads past it fail with
 *                   MFS_E_FORMAT
 */
void mfs_preader_fd(mfs_preader *r, int fd, uint64_t size);

/**
 * A reader over a buffer (tests and fuzz harnesses).
 * @param[out] r  filled; valid while @p buf lives and @p r stays in place
 */
void mfs_preader_mem(mfs_preader *r, const void *buf, size_t len);

/**
 * Read @p len bytes at @p off, checked against the source's size first (so
 * an offset a file claims is never passed on unchecked).
 * @return 0; MFS_E_FORMAT when [off, off+len) is not inside the source;
 *         what the read callback returned
 */
int mfs_preader_read(const mfs_preader *r, uint64_t off, void *buf, size_t len);

#endif
