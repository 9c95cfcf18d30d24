/*
 * test_config.c - mount.conf parsing: defaults, sizes, every key, errors with
 * file:line, flags overriding the file, and the checked-in example.
 */
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "testhelp.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* The keys that take a size parse it with mfs_size_parse (test_units.c has
 * its forms): "1.5G" is taken, a fraction of a byte is not. */
static void test_sizes(void)
{
	mfs_mount_config c;
	mfs_errmsg e = {0};
	mfs_config_defaults(&c);
	CHECK_EQ_INT(mfs_config_set(&c, "cache_bytes", "1.5G", "x", &e), 0);
	CHECK_EQ_INT(c.cache_bytes, 3ull << 29);
	CHECK_EQ_INT(mfs_config_set(&c, "cache_bytes", "64MiB", "x", &e), 0);
	CHECK_EQ_INT(c.cache_bytes, 64ull << 20);
	CHECK_EQ_INT(mfs_config_set(&c, "cache_bytes", "1.5", "x", &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_config_set(&c, "cache_bytes", "-1G", "x", &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_config_set(&c, "prefetch_file", "0.25G", "x", &e), 0);
	CHECK_EQ_INT(c.prefetch_file, 1ull << 28);
}

static void test_defaults_and_set(void)
{
	mfs_mount_config c;
	setenv("XDG_DATA_HOME", "/tmp/xdg-test", 1);
	mfs_config_defaults(&c);
	CHECK(strcmp(c.store, "/tmp/xdg-test/modelfs") == 0);
	CHECK_EQ_INT(c.cache_bytes, 1ull << 30);
	CHECK_EQ_INT(c.threads, 4);
	CHECK_EQ_INT(c.prefetch, 8);
	CHECK_EQ_INT(c.prefetch_file, 256ull << 20);
	CHECK_EQ_INT(c.prefetch_model, 1);
	CHECK_EQ_INT(c.gpu, MFS_GPU_AUTO);
	CHECK_EQ_INT(c.log_level, MFS_LOG_INFO);
	CHECK_EQ_INT(c.allow_other, 0);
	CHECK_EQ_INT(c.foreground, 0);
	CHECK(c.mountpoint[0] == 0);
	CHECK(c.log_file[0] == 0);
	CHECK(c.spill_dir[0] == 0);

	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_config_set(&c, "threads", "16", "--threads", &e), 0);
	CHECK_EQ_INT(c.threads, 16);
	CHECK_EQ_INT(mfs_config_set(&c, "threads", "0", "--threads", &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "--threads") && strstr(e.msg, "1 to 256"));
	CHECK_EQ_INT(mfs_config_set(&c, "threads", "4x", "--threads", &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_config_set(&c, "prefetch", "0", "x", &e), 0);
	CHECK_EQ_INT(c.prefetch, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "prefetch_file", "0", "x", &e), 0);
	CHECK_EQ_INT(c.prefetch_file, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "prefetch_file", "1G", "x", &e), 0);
	CHECK_EQ_INT(c.prefetch_file, 1ull << 30);
	CHECK_EQ_INT(mfs_config_set(&c, "prefetch_file", "lots", "--prefetch-file", &e),
		     MFS_E_INVAL);
	CHECK(strstr(e.msg, "--prefetch-file") && strstr(e.msg, "0 turns it off"));
	CHECK_EQ_INT(c.prefetch_file, 1ull << 30);
	CHECK_EQ_INT(mfs_config_set(&c, "prefetch_model", "no", "x", &e), 0);
	CHECK_EQ_INT(c.prefetch_model, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "prefetch_model", "1G", "--prefetch-model", &e),
		     MFS_E_INVAL);
	CHECK(strstr(e.msg, "--prefetch-model") && strstr(e.msg, "yes or no"));
	CHECK_EQ_INT(c.prefetch_model, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "gpu", "off", "x", &e), 0);
	CHECK_EQ_INT(c.gpu, MFS_GPU_OFF);
	CHECK_EQ_INT(mfs_config_set(&c, "gpu", "cuda", "x", &e), MFS_E_INVAL);
	CHECK_EQ_INT(c.gpu_memory, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "gpu_memory", "512M", "--gpu-memory", &e), 0);
	CHECK_EQ_INT(c.gpu_memory, 512ull << 20);
	CHECK_EQ_INT(mfs_config_set(&c, "gpu_memory", "0", "x", &e), 0);
	CHECK_EQ_INT(c.gpu_memory, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "gpu_memory", "1M", "--gpu-memory", &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "--gpu-memory") && strstr(e.msg, "at least 16M"));
	CHECK_EQ_INT(c.gpu_memory, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "log_level", "DEBUG", "x", &e), 0);
	CHECK_EQ_INT(c.log_level, MFS_LOG_DEBUG);
	CHECK_EQ_INT(mfs_config_set(&c, "allow_other", "yes", "x", &e), 0);
	CHECK_EQ_INT(c.allow_other, 1);
	CHECK_EQ_INT(mfs_config_set(&c, "foreground", "maybe", "x", &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_config_set(&c, "cache_bytes", "100K", "x", &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_config_set(&c, "colour", "blue", "x", &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "unknown key 'colour'") != NULL);
	setenv("HOME", "/home/tester", 1);
	CHECK_EQ_INT(mfs_config_set(&c, "mountpoint", "~/hub", "x", &e), 0);
	CHECK(strcmp(c.mountpoint, "/home/tester/hub") == 0);
	CHECK_EQ_INT(mfs_config_set(&c, "store", "", "x", &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_config_set(&c, "log_file", "~/mfs.log", "--log", &e), 0);
	CHECK(strcmp(c.log_file, "/home/tester/mfs.log") == 0);
	CHECK_EQ_INT(mfs_config_set(&c, "log_file", "", "--log", &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "--log") && strstr(e.msg, "give a file"));
	CHECK_EQ_INT(mfs_config_set(&c, "spill_dir", "/var/spill", "--spill-dir", &e), 0);
	CHECK(strcmp(c.spill_dir, "/var/spill") == 0);
	/* remote_poll: whole seconds, 0 turns polling off, at most a day */
	CHECK_EQ_INT(c.remote_poll, 30);
	CHECK_EQ_INT(mfs_config_set(&c, "remote_poll", "0", "--remote-poll", &e), 0);
	CHECK_EQ_INT(c.remote_poll, 0);
	CHECK_EQ_INT(mfs_config_set(&c, "remote_poll", "5", "--remote-poll", &e), 0);
	CHECK_EQ_INT(c.remote_poll, 5);
	CHECK_EQ_INT(mfs_config_set(&c, "remote_poll", "1.5", "--remote-poll", &e),
		     MFS_E_INVAL);
	CHECK(strstr(e.msg, "--remote-poll") && strstr(e.msg, "seconds"));
	CHECK_EQ_INT(mfs_config_set(&c, "remote_poll", "86401", "--remote-poll", &e),
		     MFS_E_INVAL);
	CHECK_EQ_INT(c.remote_poll, 5);
	size_t n;
	const mfs_config_key *k = mfs_config_keys(&n);
	CHECK_EQ_INT(n, 15);
	CHECK(strcmp(k[2].flag, "--cache-bytes") == 0);
	/* the keys the flags name: --log is log_file; every yes|no key is a
	 * boolean flag (a bare flag, or one followed by its value) */
	int seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(k[i].name, "log_file"))
			seen += !strcmp(k[i].flag, "--log") && !k[i].is_bool;
		if (!strcmp(k[i].name, "spill_dir"))
			seen += !strcmp(k[i].flag, "--spill-dir") && !k[i].is_bool;
		if (!strcmp(k[i].name, "allow_other") || !strcmp(k[i].name, "foreground") ||
		    !strcmp(k[i].name, "prefetch_model"))
			seen += k[i].is_bool;
	}
	CHECK_EQ_INT(seen, 5);
}

/* Booleans as mount.conf and the flags spell them. */
static void test_bools(void)
{
	static const char *yes[] = {"yes", "YES", "true", "on", "1"};
	static const char *no[] = {"no", "No", "false", "off", "0"};
	static const char *neither[] = {"", "y", "2", "maybe", "/mnt/hub", "yess"};
	for (size_t i = 0; i < 5; i++) {
		int v = -1;
		CHECK(mfs_config_parse_bool(yes[i], &v) == 0 && v == 1);
		v = -1;
		CHECK(mfs_config_parse_bool(no[i], &v) == 0 && v == 0);
	}
	for (size_t i = 0; i < sizeof(neither) / sizeof(neither[0]); i++) {
		int v = -1;
		CHECK(mfs_config_parse_bool(neither[i], &v) == MFS_E_INVAL && v == -1);
	}
}

static void test_file(void)
{
	char dir[] = "/tmp/mfs-config-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/mount.conf", dir);
	write_file(path, "# comment\n"
			 "\n"
			 "store = /data/store   # trailing comment\n"
			 "  mountpoint=\"/mnt/hub # not a comment\"\n"
			 "cache_bytes = 512M\n"
			 "threads = 8\n"
			 "prefetch = 16\n"
			 "gpu = on\n"
			 "log_level = warn\n"
			 "allow_other = no\n"
			 "foreground = true\n"
			 "log_file = /var/log/modelfs.log\n"
			 "spill_dir = /data/spill\n");
	mfs_mount_config c;
	mfs_config_defaults(&c);
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_config_load_file(&c, path, &e), 0);
	CHECK(strcmp(c.store, "/data/store") == 0);
	CHECK(strcmp(c.mountpoint, "/mnt/hub # not a comment") == 0);
	CHECK_EQ_INT(c.cache_bytes, 512ull << 20);
	CHECK_EQ_INT(c.threads, 8);
	CHECK_EQ_INT(c.prefetch, 16);
	CHECK_EQ_INT(c.gpu, MFS_GPU_ON);
	CHECK_EQ_INT(c.log_level, MFS_LOG_WARN);
	CHECK_EQ_INT(c.foreground, 1);
	CHECK(strcmp(c.log_file, "/var/log/modelfs.log") == 0);
	CHECK(strcmp(c.spill_dir, "/data/spill") == 0);
	/* a flag applied after the file wins */
	CHECK_EQ_INT(mfs_config_set(&c, "cache_bytes", "2G", "--cache-bytes", &e), 0);
	CHECK_EQ_INT(c.cache_bytes, 2ull << 30);

	write_file(path, "threads = 2\nbogus = 1\n");
	CHECK_EQ_INT(mfs_config_load_file(&c, path, &e), MFS_E_INVAL);
	char want[300];
	snprintf(want, sizeof(want), "%s:2: unknown key 'bogus'", path);
	CHECK(strstr(e.msg, want) != NULL);

	write_file(path, "\n\n\ncache_bytes = lots\n");
	CHECK_EQ_INT(mfs_config_load_file(&c, path, &e), MFS_E_INVAL);
	snprintf(want, sizeof(want), "%s:4: cache_bytes 'lots'", path);
	CHECK(strstr(e.msg, want) != NULL);

	write_file(path, "threads\n");
	CHECK_EQ_INT(mfs_config_load_file(&c, path, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, ":1: expected 'key = value'") != NULL);

	write_file(path, "store = \"/a\n");
	CHECK_EQ_INT(mfs_config_load_file(&c, path, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "unbalanced quote") != NULL);

	unlink(path);
	CHECK(mfs_config_load_file(&c, path, &e) < 0);
	CHECK(strstr(e.msg, "cannot read config") != NULL);
	rmdir(dir);
}

/* The checked-in example parses and holds the defaults (but the mountpoint). */
static void test_example(void)
{
	const char *p = getenv("MFS_MOUNT_CONF");
	char path[4096];
	/* __FILE__ is .../tests/unit/test_config.c: the repo root is 3 levels up */
	snprintf(path, sizeof(path), "%s", p ? p : __FILE__);
	for (int up = 0; up < 3 && !p; up++) {
		char *slash = strrchr(path, '/');
		if (slash)
			*slash = 0;
	}
	if (!p)
		strncat(path, "/mount.conf", sizeof(path) - strlen(path) - 1);
	mfs_mount_config c, d;
	mfs_config_defaults(&d);
	mfs_config_defaults(&c);
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_config_load_file(&c, path, &e), 0);
	if (e.msg[0])
		fprintf(stderr, "%s\n", e.msg);
	CHECK_EQ_INT(c.cache_bytes, d.cache_bytes);
	CHECK_EQ_INT(c.threads, d.threads);
	CHECK_EQ_INT(c.prefetch, d.prefetch);
	CHECK_EQ_INT(c.prefetch_file, d.prefetch_file);
	CHECK_EQ_INT(c.prefetch_model, d.prefetch_model);
	CHECK_EQ_INT(c.gpu, d.gpu);
	CHECK_EQ_INT(c.log_level, d.log_level);
	CHECK_EQ_INT(c.allow_other, d.allow_other);
	CHECK_EQ_INT(c.foreground, d.foreground);
	CHECK(strcmp(c.log_file, d.log_file) == 0);
	CHECK(strcmp(c.spill_dir, d.spill_dir) == 0);
	CHECK_EQ_INT(c.remote_poll, d.remote_poll);
}

int main(void)
{
	RUN(test_sizes);
	RUN(test_defaults_and_set);
	RUN(test_bools);
	RUN(test_file);
	RUN(test_example);
	return test_report();
}
