/*
 * test_fsutil.c - the shared file-system helpers (fsutil.h) and the clock
 * (clock.h): mkdir -p with modes and its refusals, a full pread of a range,
 * of a file that ends early and of descriptors that cannot be read, the
 * sorted folder listing, and the clock's three readings of one clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "testhelp.h"

static char base[256];

static void path_of(char *buf, size_t cap, const char *rel)
{
	snprintf(buf, cap, "%s/%s", base, rel);
}

static void test_mkdir_p(void)
{
	char p[512];
	struct stat st;
	path_of(p, sizeof p, "a/b/c");
	CHECK_EQ_INT(mfs_mkdir_p(p, 0700), 0);
	CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	path_of(p, sizeof p, "a/b");
	CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0700) == 0700);
	/* again, and with a trailing '/': nothing to do, no error */
	path_of(p, sizeof p, "a/b/c");
	CHECK_EQ_INT(mfs_mkdir_p(p, 0700), 0);
	path_of(p, sizeof p, "a/b/c/");
	CHECK_EQ_INT(mfs_mkdir_p(p, 0700), 0);
	/* a file in the way */
	path_of(p, sizeof p, "a/file");
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	path_of(p, sizeof p, "a/file/sub");
	CHECK_EQ_INT(mfs_mkdir_p(p, 0700), -ENOTDIR);
	char longp[5000];
	memset(longp, 'x', sizeof longp - 1);
	longp[sizeof longp - 1] = '\0';
	CHECK_EQ_INT(mfs_mkdir_p(longp, 0700), -ENAMETOOLONG);
}

static void test_pread_full(void)
{
	char p[512];
	path_of(p, sizeof p, "data");
	uint8_t data[10000];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, data, sizeof data) == (ssize_t)sizeof data);
	uint8_t got[10000];
	size_t n = 0;
	CHECK_EQ_INT(mfs_pread_full(fd, got, 4000, 5000, MFS_E_CORRUPT, &n), 0);
	CHECK_EQ_INT(n, 4000);
	CHECK(memcmp(got, data + 5000, 4000) == 0);
	/* past the end: the caller's code, and how far it got */
	CHECK_EQ_INT(mfs_pread_full(fd, got, 4000, 8000, MFS_E_FORMAT, &n), MFS_E_FORMAT);
	CHECK_EQ_INT(n, 2000);
	CHECK(memcmp(got, data + 8000, 2000) == 0);
	CHECK_EQ_INT(mfs_pread_full(fd, got, 10, 20000, -EIO, NULL), -EIO);
	CHECK_EQ_INT(mfs_pread_full(fd, got, 0, 20000, -EIO, &n), 0);
	CHECK_EQ_INT(n, 0);
	close(fd);
	/* a read error is -errno: a descriptor opened for writing only */
	fd = open(p, O_WRONLY);
	REQUIRE(fd >= 0);
	CHECK_EQ_INT(mfs_pread_full(fd, got, 10, 0, MFS_E_CORRUPT, &n), -EBADF);
	CHECK_EQ_INT(n, 0);
	close(fd);
	/* a pipe cannot be pread: -ESPIPE, never a short-file code */
	int pp[2];
	REQUIRE(pipe(pp) == 0);
	CHECK_EQ_INT(mfs_pread_full(pp[0], got, 10, 0, MFS_E_CORRUPT, NULL), -ESPIPE);
	close(pp[0]);
	close(pp[1]);
}

static void test_dir_names(void)
{
	char p[512];
	path_of(p, sizeof p, "list");
	REQUIRE(mfs_mkdir_p(p, 0700) == 0);
	static const char *const names[] = {"zeta", "Alpha", "beta", ".hidden", "b", "a.b"};
	for (size_t i = 0; i < 6; i++) {
		char f[600];
		snprintf(f, sizeof f, "%s/%s", p, names[i]);
		int fd = open(f, O_CREAT | O_WRONLY, 0600);
		REQUIRE(fd >= 0);
		close(fd);
	}
	char sub[600];
	snprintf(sub, sizeof sub, "%s/sub", p);
	REQUIRE(mkdir(sub, 0700) == 0);
	DIR *d = opendir(p);
	REQUIRE(d);
	char **got = NULL;
	size_t n = 0;
	CHECK_EQ_INT(mfs_dir_names(d, &got, &n), 0);
	closedir(d);
	static const char *const want[] = {".hidden", "Alpha", "a.b", "b", "beta", "sub", "zeta"};
	CHECK_EQ_INT(n, 7);
	for (size_t i = 0; i < n && i < 7; i++)
		CHECK(strcmp(got[i], want[i]) == 0);
	mfs_dir_names_free(got, n);
	/* an empty folder */
	d = opendir(sub);
	REQUIRE(d);
	got = (char **)1;
	CHECK_EQ_INT(mfs_dir_names(d, &got, &n), 0);
	CHECK(got == NULL && n == 0);
	closedir(d);
	mfs_dir_names_free(NULL, 0);
}

static void test_clock(void)
{
	uint64_t a = mfs_now_ns(), ms0 = mfs_now_ms();
	double s0 = mfs_now_seconds();
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	uint64_t b = mfs_now_ns(), ms1 = mfs_now_ms();
	double s1 = mfs_now_seconds();
	CHECK(b - a >= 20u * 1000 * 1000);
	CHECK(ms1 - ms0 >= 19 && ms1 - ms0 < 10000);
	CHECK(s1 - s0 >= 0.019 && s1 - s0 < 10.0);
	/* the three read one clock */
	CHECK(ms1 >= b / 1000000u && ms1 - b / 1000000u < 1000);
}

int main(void)
{
	snprintf(base, sizeof base, "/tmp/test_fsutil.%d", (int)getpid());
	if (mkdir(base, 0700) != 0) {
		fprintf(stderr, "cannot make %s: %s\n", base, strerror(errno));
		return 1;
	}
	RUN(test_mkdir_p);
	RUN(test_pread_full);
	RUN(test_dir_names);
	RUN(test_clock);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	return test_report();
}
