/*
 * test_space.c - fs/space.h: the store's blocks on disk (data.mdb and the
 * packs, nothing else of the directory) and the free space under it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "space.h"
#include "testhelp.h"

static char dir[256];

static void put_file(const char *rel, size_t len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return;
	char *buf = malloc(len);
	if (buf) {
		memset(buf, 0x5a, len); /* written, so the blocks are allocated */
		if (write(fd, buf, len) != (ssize_t)len)
			fprintf(stderr, "short write to %s\n", path);
	}
	free(buf);
	fsync(fd);
	close(fd);
}

static uint64_t blocks_of(const char *rel)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	struct stat st;
	return lstat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

static void test_store_bytes(void)
{
	mfs_space sp;
	/* an empty directory: no store yet, the disk is still measured */
	CHECK_EQ_INT(mfs_space_get(dir, &sp), 0);
	CHECK_EQ_INT(sp.store_bytes, 0);
	struct statvfs sv;
	REQUIRE(statvfs(dir, &sv) == 0);
	CHECK_EQ_INT(sp.fs_bytes, (uint64_t)sv.f_blocks * sv.f_frsize);
	CHECK(sp.fs_avail_bytes <= sp.fs_free_bytes && sp.fs_free_bytes <= sp.fs_bytes);
	/* within 64 MiB of what statvfs says now (other programs write meanwhile) */
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	uint64_t d = sp.fs_avail_bytes > avail ? sp.fs_avail_bytes - avail
					       : avail - sp.fs_avail_bytes;
	CHECK(d < ((uint64_t)64 << 20));

	/* data.mdb alone, then the packs; lock.mdb, gc's temporary files and a
	 * link named like a pack are not the store's bytes */
	put_file("data.mdb", 40000);
	put_file("lock.mdb", 8192);
	CHECK_EQ_INT(mfs_space_get(dir, &sp), 0);
	CHECK(blocks_of("data.mdb") >= 40000);
	CHECK_EQ_INT(sp.store_bytes, blocks_of("data.mdb"));

	char packs[512];
	snprintf(packs, sizeof packs, "%s/packs", dir);
	REQUIRE(mkdir(packs, 0700) == 0);
	put_file("packs/0000000000000001.pack", 100000);
	put_file("packs/00000000000000ff.pack", 3000);
	put_file("packs/0000000000000003.pack.tmp", 50000);
	put_file("packs/notapack", 50000);
	char link[600];
	snprintf(link, sizeof link, "%s/0000000000000004.pack", packs);
	CHECK(symlink("0000000000000001.pack", link) == 0);
	CHECK_EQ_INT(mfs_space_get(dir, &sp), 0);
	CHECK_EQ_INT(sp.store_bytes, blocks_of("data.mdb") +
					 blocks_of("packs/0000000000000001.pack") +
					 blocks_of("packs/00000000000000ff.pack"));
	CHECK(sp.store_bytes >= 40000 + 100000 + 3000);
}

static void test_missing(void)
{
	char gone[300];
	snprintf(gone, sizeof gone, "%s/not-here", dir);
	mfs_space sp;
	memset(&sp, 0xff, sizeof sp);
	CHECK_EQ_INT(mfs_space_get(gone, &sp), -ENOENT);
	CHECK_EQ_INT(sp.store_bytes, 0);
	CHECK_EQ_INT(sp.fs_bytes, 0);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/mfs-space-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_store_bytes);
	RUN(test_missing);
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return test_report();
}
