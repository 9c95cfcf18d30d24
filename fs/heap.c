/*
 * heap.c - the mount daemon's malloc policy (see heap.h).
 */
#include "heap.h"

#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#define HEAP_KEEP ((size_t)64 << 20)

void mfs_heap_setup(void)
{
	/* decoded chunks (<= 64 MiB) come from the heap, not one mmap each */
	mallopt(M_MMAP_THRESHOLD, (int)HEAP_KEEP);
	/* freed chunks stay in the heap for the next ones (no brk shrink and
	 * re-fault); M_MMAP_THRESHOLD above already turned off the dynamic
	 * thresholds, which would otherwise move this one */
	mallopt(M_TRIM_THRESHOLD, (int)HEAP_KEEP);
	/* ... and in one arena: with one arena per thread, chunks evicted by one
	 * thread sit free in that thread's arena while others grow theirs, and the
	 * daemon's memory climbs far past the cache budget (tests/e2e/test_stress.py
	 * measured +90 MiB over a 64 MiB budget with 8 threads; +45 MiB with one
	 * arena, which is the per-thread buffers).  One malloc per decoded chunk
	 * makes the shared arena lock cheap. */
	mallopt(M_ARENA_MAX, 1);
}

void mfs_heap_prewarm(size_t bytes)
{
	if (bytes > HEAP_KEEP)
		bytes = HEAP_KEEP;
	if (bytes == 0)
		return;
	/* volatile bytes: stores into memory that is then freed unread are dead
	 * to the compiler, and would be dropped with the malloc */
	volatile unsigned char *p = malloc(bytes);
	if (!p)
		return; /* only an optimisation */
	long page = sysconf(_SC_PAGESIZE);
	if (page <= 0)
		page = 4096;
	for (size_t i = 0; i < bytes; i += (size_t)page)
		p[i] = 0;
	p[bytes - 1] = 0;
	free((void *)p); /* back to the top of the heap, which is not trimmed */
}
