/*
 * testfs.h - the scratch folders and files of the C unit tests: a fresh
 * temporary folder per test, removed with everything in it at the end, and
 * a file written whole.  Beside testhelp.h (the asserts).
 */
#ifndef MFS_TESTFS_H
#define MFS_TESTFS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A new empty folder /tmp/mfs-test-TAG-XXXXXX.
 * @return its path (malloc'd: the caller frees it), or NULL
 */
static inline char *test_fresh_dir(const char *tag)
{
	char tmpl[128];
	snprintf(tmpl, sizeof tmpl, "/tmp/mfs-test-%s-XXXXXX", tag);
	char *d = strdup(tmpl);
	if (!d || !mkdtemp(d)) {
		free(d);
		return NULL;
	}
	return d;
}

/* Remove folder @p d and everything under it (a failure is printed, not fatal). */
static inline void test_rm_dir(const char *d)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", d);
}

/* test_rm_dir, then free @p d (a path test_fresh_dir gave). */
static inline void test_drop_dir(char *d)
{
	test_rm_dir(d);
	free(d);
}

/* Write @p len bytes as the file @p dir/@p name. @return 0, or -1 */
static inline int test_write_file(const char *dir, const char *name, const void *data,
				  size_t len)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	if (!f)
		return -1;
	size_t n = fwrite(data, 1, len, f);
	return fclose(f) == 0 && n == len ? 0 : -1;
}

/*
 * A safetensors file of header @p json (padded to 8 bytes with spaces, as
 * the format asks) followed by @p data_len bytes the caller fills, from
 * *data_start on.
 * @return the file's *len bytes (malloc'd: the caller frees them), or NULL
 */
static inline uint8_t *test_safetensors_alloc(const char *json, size_t data_len, size_t *len,
					      size_t *data_start)
{
	size_t hl = strlen(json), pad = (8 - hl % 8) % 8;
	*data_start = 8 + hl + pad;
	*len = *data_start + data_len;
	uint8_t *buf = malloc(*len);
	if (!buf)
		return NULL;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)(hl + pad) >> (8 * i));
	memcpy(buf + 8, json, hl);
	memset(buf + 8 + hl, ' ', pad);
	return buf;
}

#endif
