/*
 * warm.c - the daemon's code brought into memory at start (see warm.h).
 */
#include "warm.h"

#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "fsutil.h"

/* Programs and libraries mapped at most (more are left as they are). */
#define OBJECTS_MAX 256

typedef struct mapping {
	uintptr_t lo, hi;
	char perms[8];
	char dev[16];
	unsigned long inode;
} mapping;

/* One line of /proc/self/maps; 0 when it is not a file's mapping. */
static int parse(const char *line, mapping *m)
{
	unsigned long long off;
	if (sscanf(line, "%lx-%lx %7s %llx %15s %lu", &m->lo, &m->hi, m->perms, &off,
		   m->dev, &m->inode) < 6)
		return 0;
	return m->inode != 0 && m->perms[0] == 'r' && m->hi > m->lo;
}

/* Whether one of @p in falls in [lo, hi) (no list: every object counts). */
static int wanted(const void *const *in, size_t n_in, uintptr_t lo, uintptr_t hi)
{
	if (!in || !n_in)
		return 1;
	for (size_t i = 0; i < n_in; i++)
		if ((uintptr_t)in[i] >= lo && (uintptr_t)in[i] < hi)
			return 1;
	return 0;
}

int mfs_warm_code(const void *const *in, size_t n_in, size_t *bytes)
{
	if (bytes)
		*bytes = 0;
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return -errno;
	/* first pass: the objects with code (an executable mapping) */
	struct {
		char dev[16];
		unsigned long inode;
	} obj[OBJECTS_MAX];
	size_t n = 0, total = 0;
	char line[4352];
	mapping m;
	while (fgets(line, sizeof line, f))
		if (parse(line, &m) && m.perms[2] == 'x' && n < OBJECTS_MAX &&
		    wanted(in, n_in, m.lo, m.hi)) {
			memcpy(obj[n].dev, m.dev, sizeof m.dev);
			obj[n++].inode = m.inode;
		}
	/* second pass: every mapping of those objects, their read-only data
	 * too (a library's constant tables are read on the first decode), and
	 * none of any other file (the index's map is a terabyte) */
	rewind(f);
	while (fgets(line, sizeof line, f)) {
		if (!parse(line, &m))
			continue;
		for (size_t i = 0; i < n; i++)
			if (obj[i].inode == m.inode && !strcmp(obj[i].dev, m.dev)) {
				mfs_map_populate((void *)m.lo, m.hi - m.lo);
				total += m.hi - m.lo;
				break;
			}
	}
	fclose(f);
	if (bytes)
		*bytes = total;
	return 0;
}

int mfs_warm_decoders(const void *const *extra, size_t n_extra, size_t *bytes)
{
	enum { OWN = 4, EXTRA_MAX = 8 };
	const void *in[OWN + EXTRA_MAX] = {(const void *)mfs_warm_decoders,
					   (const void *)XXH3_128bits,
					   (const void *)ZSTD_decompressDCtx, (const void *)mdb_get};
	size_t n = OWN;
	for (size_t i = 0; extra && i < n_extra && n < OWN + EXTRA_MAX; i++)
		in[n++] = extra[i];
	return mfs_warm_code(in, n, bytes);
}
