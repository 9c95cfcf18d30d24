/*
 * grow.h - growing a heap array by doubling: the one way the modules of
 * modelfs append to an array of unknown final length.
 */
#ifndef MFS_GROW_H
#define MFS_GROW_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/**
 * Make room for one more element in @p arr, which holds @p n elements of
 * @p elem bytes and has room for *@p cap.  When it is full, the room doubles
 * (or becomes @p first when there was none) by realloc.
 * @return the array to use from now on (store it back: it may have moved), or
 *         NULL when out of memory; @p arr and *@p cap are then unchanged and
 *         @p arr stays the caller's
 */
static inline void *mfs_grow(void *arr, size_t *cap, size_t n, size_t elem, size_t first)
{
	if (n < *cap)
		return arr;
	size_t nc = *cap ? *cap * 2 : first;
	if (nc <= *cap || nc > SIZE_MAX / elem)
		return NULL;
	void *p = realloc(arr, nc * elem);
	if (p)
		*cap = nc;
	return p;
}

#endif
