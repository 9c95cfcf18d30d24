/*
 * stream.h - read a whole file in order with its chunks decoded in parallel.
 *
 * For `modelfs export` and `modelfs verify`: a worker pool (index/pool.h)
 * decodes the file's chunks ahead of the consumer (each into its own buffer,
 * verified against its key), and the callback receives them in file order,
 * on the calling thread.  Memory: (2 * threads + 2) chunk buffers.
 */
#ifndef MFS_STREAM_H
#define MFS_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "reader.h"

/**
 * Called for each chunk in file order; return 0 to go on, non-zero to stop
 * (that value is returned by mfs_rfile_stream).
 * @param[in] data  valid during the call only
 */
typedef int (*mfs_stream_fn)(void *ud, uint64_t off, const void *data, size_t len);

/**
 * Stream @p f through @p fn.
 * @param[in]  r          unused (the file knows its reader)
 * @param[in]  threads    decoder threads (1 .. MFS_POOL_MAX_THREADS; outside:
 *                        the nearest)
 * @param[out] bad_off    optional: on MFS_E_CORRUPT / MFS_E_NOTFOUND, the file
 *                        offset of the first chunk that failed
 * @return 0, the callback's non-zero value, the first decode error, or the
 *         pool's (-errno when its threads cannot start, -ENOMEM)
 */
int mfs_rfile_stream(mfs_reader *r, mfs_rfile *f, int threads, mfs_stream_fn fn, void *ud,
		     uint64_t *bad_off);

#endif
