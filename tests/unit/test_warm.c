/*
 * test_warm.c - the daemon's code brought into memory (fs/warm.h): after
 * mfs_warm_code, every page of this program's own mappings is in the page
 * cache (mincore), and of a file mapped executable (both of its mappings,
 * the executable one and a read-only one), but none of a file that is
 * mapped without code; and with a list of addresses, only the objects
 * whose code holds one (mfs_warm_decoders: the program and the decoding
 * libraries, and the objects it is given).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testfs.h"
#include "testhelp.h"
#include "warm.h"

/* Pages of this program's own mappings, and how many are resident. */
static void own_pages(size_t *pages, size_t *resident, size_t *bytes)
{
	struct stat self;
	*pages = *resident = *bytes = 0;
	if (stat("/proc/self/exe", &self) < 0)
		return;
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char line[4352];
	while (fgets(line, sizeof line, f)) {
		uintptr_t lo, hi;
		char perms[8];
		unsigned long long off;
		unsigned long inode;
		char dev[16];
		if (sscanf(line, "%lx-%lx %7s %llx %15s %lu", &lo, &hi, perms, &off, dev,
			   &inode) < 6 ||
		    inode != (unsigned long)self.st_ino || perms[0] != 'r')
			continue;
		size_t n = (hi - lo) / page;
		unsigned char *v = calloc(n ? n : 1, 1);
		if (v && mincore((void *)lo, hi - lo, v) == 0)
			for (size_t i = 0; i < n; i++)
				*resident += v[i] & 1;
		free(v);
		*pages += n;
		*bytes += hi - lo;
	}
	fclose(f);
}

static void test_code_resident(void)
{
	size_t bytes = 0, pages, resident, own;
	/* drop what the page cache holds of this program and is not mapped
	 * yet (what never ran), so that the check below means something */
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	own_pages(&pages, &resident, &own);
	printf("# before: %zu of %zu pages of the program resident\n", resident, pages);
	CHECK_EQ_INT(mfs_warm_code(NULL, 0, &bytes), 0);
	own_pages(&pages, &resident, &own);
	REQUIRE(pages > 0);
	CHECK_EQ_INT(resident, pages);
	CHECK(bytes >= own);
	/* again: nothing changes, nothing fails */
	size_t again = 0;
	CHECK_EQ_INT(mfs_warm_code(NULL, 0, &again), 0);
	CHECK_EQ_INT(again, bytes);
	CHECK_EQ_INT(mfs_warm_code(NULL, 0, NULL), 0);
}

/* Resident pages of [p, p + len). */
static size_t resident_of(const void *p, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page, r = 0;
	unsigned char *v = calloc(n ? n : 1, 1);
	if (v && mincore((void *)p, len, v) == 0)
		for (size_t i = 0; i < n; i++)
			r += v[i] & 1;
	free(v);
	return r;
}

/* A file of @p len bytes at @p path, written out and dropped from the page
 * cache (where the file system lets it: not on tmpfs); its fd. */
static int cold_file(const char *path, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	char *buf = malloc(len);
	for (size_t i = 0; buf && i < len; i++)
		buf[i] = (char)(i * 7 + 1);
	if (!buf || write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0) {
		free(buf);
		close(fd);
		return -1;
	}
	free(buf);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return fd;
}

static void test_mapped_files(void)
{
	enum { LEN = 256 << 10 };
	char *d = test_fresh_dir("warm");
	REQUIRE(d);
	char a[4200], b[4200];
	snprintf(a, sizeof a, "%s/code", d);
	snprintf(b, sizeof b, "%s/data", d);
	int fa = cold_file(a, LEN), fb = cold_file(b, LEN);
	REQUIRE(fa >= 0 && fb >= 0);
	char *code = mmap(NULL, LEN, PROT_READ | PROT_EXEC, MAP_PRIVATE, fa, 0);
	if (code == MAP_FAILED) {
		printf("# skipped: cannot map a file executable in %s (noexec?)\n", d);
		close(fa);
		close(fb);
		test_drop_dir(d);
		return;
	}
	char *rodata = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, fa, 0);
	char *data = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fb, 0);
	REQUIRE(rodata != MAP_FAILED && data != MAP_FAILED);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t before = resident_of(data, LEN);
	printf("# before: %zu, %zu and %zu of %zu pages resident\n", resident_of(code, LEN),
	       resident_of(rodata, LEN), before, (size_t)LEN / page);
	size_t bytes = 0, code_before = resident_of(code, LEN);
	/* named by an address of this program's code: only the program */
	const void *self[] = {(const void *)test_report};
	CHECK_EQ_INT(mfs_warm_code(self, 1, &bytes), 0);
	CHECK(bytes > 0);
	CHECK_EQ_INT(resident_of(code, LEN), code_before);
	/* what a read runs (this program, libxxhash, libzstd, liblmdb) */
	CHECK_EQ_INT(mfs_warm_decoders(NULL, 0, &bytes), 0);
	CHECK(bytes > 0);
	CHECK_EQ_INT(resident_of(code, LEN), code_before);
	/* ... and an object named with it: every mapping of it */
	const void *extra[] = {code};
	CHECK_EQ_INT(mfs_warm_decoders(extra, 1, &bytes), 0);
	CHECK_EQ_INT(resident_of(code, LEN), LEN / page);
	CHECK_EQ_INT(resident_of(rodata, LEN), LEN / page);
	/* every object */
	CHECK_EQ_INT(mfs_warm_code(NULL, 0, &bytes), 0);
	CHECK_EQ_INT(resident_of(code, LEN), LEN / page);
	CHECK_EQ_INT(resident_of(rodata, LEN), LEN / page);
	CHECK_EQ_INT(resident_of(data, LEN), before); /* not a program's file */
	CHECK(bytes >= 2 * (size_t)LEN);
	munmap(code, LEN);
	munmap(rodata, LEN);
	munmap(data, LEN);
	close(fa);
	close(fb);
	test_drop_dir(d);
}

int main(void)
{
	RUN(test_code_resident);
	RUN(test_mapped_files);
	return test_report();
}
