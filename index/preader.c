/*
 * preader.c - positioned reads from a file or a buffer (see preader.h).
 */
#include "preader.h"

#include <string.h>

#include "fsutil.h"

static int fd_read(void *ud, uint64_t off, void *buf, size_t len)
{
	const mfs_preader *r = ud;
	return mfs_pread_full(r->fd, buf, len, off, MFS_E_FORMAT, NULL);
}

static int mem_read(void *ud, uint64_t off, void *buf, size_t len)
{
	const mfs_preader *r = ud;
	/* mfs_preader_read checked the range against r->size. */
	if (len)
		memcpy(buf, r->mem + off, len);
	return 0;
}

void mfs_preader_fd(mfs_preader *r, int fd, uint64_t size)
{
	memset(r, 0, sizeof *r);
	r->read = fd_read;
	r->ud = r;
	r->size = size;
	r->fd = fd;
}

void mfs_preader_mem(mfs_preader *r, const void *buf, size_t len)
{
	memset(r, 0, sizeof *r);
	r->read = mem_read;
	r->ud = r;
	r->size = len;
	r->fd = -1;
	r->mem = buf;
}

int mfs_preader_read(const mfs_preader *r, uint64_t off, void *buf, size_t len)
{
	if (off > r->size || len > r->size - off)
		return MFS_E_FORMAT;
	if (len == 0)
		return 0;
	return r->read(r->ud, off, buf, len);
}
