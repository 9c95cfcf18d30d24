/*
 * fsutil.c - mkdir -p, a full pread, a sorted folder listing and a file
 * mapping read in (fsutil.h).
 */
#include "fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "grow.h"

int mfs_mkdir_p(const char *dir, mode_t mode)
{
	char tmp[4096];
	size_t n = strlen(dir);
	if (n >= sizeof tmp)
		return -ENAMETOOLONG;
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int mfs_pread_full(int fd, void *buf, size_t len, uint64_t off, int short_rc, size_t *got)
{
	size_t done = 0;
	int rc = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : short_rc;
			break;
		}
		done += (size_t)n;
	}
	if (got)
		*got = done;
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void mfs_dir_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

int mfs_dir_names(DIR *d, char ***names, size_t *n)
{
	char **a = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0;
	*names = NULL;
	*n = 0;
	for (;;) {
		errno = 0; /* readdir says end and failure apart only through errno */
		struct dirent *de = readdir(d);
		if (!de) {
			rc = errno ? -errno : 0;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char **g = mfs_grow(a, &cap, cnt, sizeof *g, 16);
		char *s = g ? strdup(de->d_name) : NULL;
		if (g)
			a = g;
		if (!s) {
			rc = -ENOMEM;
			break;
		}
		a[cnt++] = s;
	}
	if (rc < 0) {
		mfs_dir_names_free(a, cnt);
		return rc;
	}
	if (cnt)
		qsort(a, cnt, sizeof *a, name_cmp);
	*names = a;
	*n = cnt;
	return 0;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

void mfs_map_populate(void *p, size_t len)
{
	madvise(p, len, MADV_WILLNEED);
	if (madvise(p, len, MADV_POPULATE_READ) == 0)
		return;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	for (size_t off = 0; off < len; off += page)
		(void)*((volatile const char *)p + off);
}
