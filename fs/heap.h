/*
 * heap.h - the mount daemon's malloc policy.
 *
 * Decoded chunks are blocks of up to a few MiB, allocated and freed all the
 * time by every thread.  On the machines we measure, a page faulted in fresh
 * costs about 2.4 us (allocation, zeroing, accounting): 0.4 ms per MiB, as
 * much as decoding the MiB.  So the daemon keeps freed chunk memory in its
 * heap for the next chunk instead of giving it back to the kernel, and
 * faults in the heap a streaming reader needs once, at start.
 *
 * Process-wide: call from the mount command only, never from library code
 * that other programs (ingest, export, tests) link.
 */
#ifndef MFS_HEAP_H
#define MFS_HEAP_H

#include <stddef.h>

/**
 * Tune glibc malloc for the daemon: chunks up to 64 MiB come from the heap
 * (no mmap + page faults per chunk), one arena for all threads (a chunk freed
 * by one thread is reused by any other, so memory stays near the cache
 * budget), and the heap is not trimmed back to the kernel below 64 MiB of
 * free top (freed chunks are reused, not faulted in again).
 * Call before any thread starts.
 */
void mfs_heap_setup(void);

/**
 * Fault in @p bytes of heap now and leave them free, so the next mallocs up
 * to that total (the first chunks a reader decodes) reuse resident pages.
 * Costs about 0.4 ms per MiB at start and keeps @p bytes resident (at most
 * 64 MiB are kept, the trim threshold).  Call after daemonizing (a fork
 * would copy-on-write the pages) and after mfs_heap_setup().
 */
void mfs_heap_prewarm(size_t bytes);

#endif
