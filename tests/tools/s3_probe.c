/*
 * s3_probe - drive the S3 client (remote/s3.h) from a test: one operation a
 * run, its result on stdout, its error on stderr as
 *     error: class=CLASS code=N (NAME): MESSAGE
 * and an exit status per class, so tests/e2e/test_s3_client.py can check
 * both against a real server.
 *
 *   s3_probe [OPTIONS] COMMAND ARGS...
 *     put-file s3://B/KEY FILE [OFF LEN]  upload a file range, streamed
 *     put-buf  s3://B/KEY FILE            upload a whole file from memory
 *     get      s3://B/KEY OFF LEN OUT     ranged GET into memory, then OUT
 *     get-file s3://B/KEY OUT             whole object streamed into OUT
 *     head     s3://B/KEY                 "size N etag E"
 *     list     s3://B/PREFIX              "SIZE KEY" lines, then "keys N"
 *     delete   s3://B/KEY
 *     bucket   s3://B                     does the bucket exist
 *     config                              the configuration (no secret)
 *     put-parts s3://B/KEY FILE PART [TRIES]  a multipart upload of the whole
 *              file in parts of PART bytes, each part tried up to TRIES times
 *     uploads  s3://B/PREFIX              "KEY UPLOAD_ID INITIATED" lines of the
 *              multipart uploads in progress, then "uploads N"
 *     abort    s3://B/KEY UPLOAD_ID       abort a multipart upload
 *     mget     s3://B/KEY LOCAL THREADS ROUNDS MAXLEN
 *              THREADS threads of ROUNDS random ranged GETs (1..MAXLEN
 *              bytes) on one client, each compared with LOCAL
 *   OPTIONS: --connect-timeout-ms N --timeout-ms N --stall-ms N --attempts N
 *            --backoff-ms N --page N
 * put and get print "bytes N seconds S MBps R"; every run ends with the
 * client's counters on stderr ("stats requests=... retries=...").
 *
 * Exit status: 0 ok; 2 key missing; 3 bucket missing; 4 credentials
 * refused; 5 unreachable; 6 timeout; 7 I/O (5xx, broken transfer);
 * 8 corrupt (short object); 9 invalid; 10 mget found a wrong byte; 1 other.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "s3.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(int rc, const mfs_errmsg *e)
{
	const char *cls;
	int status;
	switch (rc) {
	case MFS_E_NOTFOUND:
		cls = "notfound";
		status = 2;
		break;
	case -ENXIO:
		cls = "nobucket";
		status = 3;
		break;
	case -EACCES:
		cls = "auth";
		status = 4;
		break;
	case -ECONNREFUSED:
		cls = "unreachable";
		status = 5;
		break;
	case -ETIMEDOUT:
		cls = "timeout";
		status = 6;
		break;
	case -EIO:
		cls = "io";
		status = 7;
		break;
	case MFS_E_CORRUPT:
		cls = "corrupt";
		status = 8;
		break;
	case MFS_E_INVAL:
		cls = "inval";
		status = 9;
		break;
	default:
		cls = "other";
		status = 1;
		break;
	}
	fprintf(stderr, "error: class=%s code=%d (%s): %s\n", cls, rc, mfs_strerror(rc),
		e && e->msg[0] ? e->msg : "(no message)");
	return status;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: s3_probe [--connect-timeout-ms N] [--timeout-ms N] "
		"[--stall-ms N] [--attempts N] [--backoff-ms N] [--page N] COMMAND ARGS\n"
		"  (see the comment at the top of tests/tools/s3_probe.c)\n");
	return 9;
}

static int read_whole(const char *path, unsigned char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st)) {
		close(fd);
		return -errno;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < *len) {
		ssize_t k = read(fd, *buf + got, *len - got);
		if (k <= 0) {
			close(fd);
			return k < 0 ? -errno : -EIO;
		}
		got += (size_t)k;
	}
	close(fd);
	return 0;
}

static int write_whole(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	while (done < len) {
		ssize_t k = write(fd, (const char *)buf + done, len - done);
		if (k <= 0) {
			close(fd);
			return k < 0 ? -errno : -EIO;
		}
		done += (size_t)k;
	}
	return close(fd) ? -errno : 0;
}

static void rate(uint64_t bytes, double secs)
{
	printf("bytes %" PRIu64 " seconds %.3f MBps %.1f\n", bytes, secs,
	       secs > 0 ? (double)bytes / secs / 1e6 : 0.0);
}

static int print_obj(void *arg, const mfs_s3_object *o)
{
	uint64_t *n = arg;
	printf("%" PRIu64 " %s\n", o->size, o->key);
	(*n)++;
	return 0;
}

static int print_upload(void *arg, const mfs_s3_upload *u)
{
	uint64_t *n = arg;
	printf("%s %s %" PRId64 "\n", u->key, u->upload_id, u->initiated);
	(*n)++;
	return 0;
}

static void print_part(void *ud, unsigned part, unsigned parts, uint64_t bytes)
{
	(void)ud;
	printf("part %u of %u: %" PRIu64 " bytes\n", part, parts, bytes);
}

struct mget {
	mfs_s3 *s3;
	const char *bucket, *key;
	const unsigned char *local;
	size_t local_len, maxlen;
	int rounds;
	uint64_t seed;
	int rc, wrong;
	mfs_errmsg e;
};

static void *mget_thread(void *arg)
{
	struct mget *m = arg;
	unsigned char *buf = malloc(m->maxlen);
	if (!buf) {
		m->rc = -ENOMEM;
		return NULL;
	}
	uint64_t s = m->seed;
	for (int i = 0; i < m->rounds && !m->rc; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		size_t len = 1 + (size_t)(s % m->maxlen);
		if (len > m->local_len)
			len = m->local_len;
		uint64_t off = (s >> 20) % (m->local_len - len + 1);
		m->rc = mfs_s3_get_range(m->s3, m->bucket, m->key, off, buf, len, &m->e);
		if (!m->rc && memcmp(buf, m->local + off, len)) {
			m->wrong++;
			fprintf(stderr, "wrong bytes at %" PRIu64 "+%zu\n", off, len);
		}
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	mfs_s3_config cfg;
	mfs_errmsg e = {0};
	int i = 1;
	long opt[6] = {-1, -1, -1, -1, -1, -1};
	static const char *names[6] = {"--connect-timeout-ms", "--timeout-ms",
				       "--stall-ms",	       "--attempts",
				       "--backoff-ms",	       "--page"};
	for (; i < argc && !strncmp(argv[i], "--", 2); i += 2) {
		int k;
		for (k = 0; k < 6 && strcmp(argv[i], names[k]); k++)
			;
		if (k == 6 || i + 1 >= argc)
			return usage();
		opt[k] = strtol(argv[i + 1], NULL, 10);
	}
	if (i >= argc)
		return usage();
	const char *cmd = argv[i++];
	int rc = mfs_s3_config_load(&cfg, &e);
	if (rc)
		return fail(rc, &e);
	if (opt[0] >= 0)
		cfg.connect_timeout_ms = opt[0];
	if (opt[1] >= 0)
		cfg.timeout_ms = opt[1];
	if (opt[2] >= 0)
		cfg.stall_ms = opt[2];
	if (opt[3] >= 0)
		cfg.attempts = (int)opt[3];
	if (opt[4] >= 0)
		cfg.backoff_ms = opt[4];
	if (opt[5] >= 0)
		cfg.list_page = (int)opt[5];
	if (!strcmp(cmd, "config")) {
		printf("endpoint %s\nendpoint_source %s\nregion %s\nprofile "
		       "%s\naccess_key %s\n"
		       "key_source %s\nsession_token %s\nattempts %d\n",
		       cfg.endpoint[0] ? cfg.endpoint : "-", cfg.endpoint_source,
		       cfg.region, cfg.profile, cfg.access_key, cfg.key_source,
		       cfg.session_token[0] ? "set" : "-", cfg.attempts);
		return 0;
	}
	if (i >= argc)
		return usage();
	mfs_s3_url url;
	if ((rc = mfs_s3_url_parse(argv[i++], &url, &e)))
		return fail(rc, &e);
	mfs_s3 *s3;
	if ((rc = mfs_s3_open(&cfg, &s3, &e)))
		return fail(rc, &e);
	int nargs = argc - i;
	char **a = argv + i;
	unsigned char *buf = NULL;
	size_t len = 0;
	double t0 = now_s();
	int status = 0;
	if (!strcmp(cmd, "put-file") && (nargs == 1 || nargs == 3)) {
		int fd = open(a[0], O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st)) {
			perror(a[0]);
			status = 1;
			goto out;
		}
		uint64_t off = nargs == 3 ? strtoull(a[1], NULL, 10) : 0;
		uint64_t n = nargs == 3 ? strtoull(a[2], NULL, 10) : (uint64_t)st.st_size;
		rc = mfs_s3_put_file(s3, url.bucket, url.prefix, fd, off, n, &e);
		close(fd);
		if (!rc)
			rate(n, now_s() - t0);
	} else if (!strcmp(cmd, "put-buf") && nargs == 1) {
		if ((rc = read_whole(a[0], &buf, &len))) {
			fprintf(stderr, "%s: %s\n", a[0], strerror(-rc));
			status = 1;
			goto out;
		}
		t0 = now_s();
		rc = mfs_s3_put(s3, url.bucket, url.prefix, buf, len, &e);
		if (!rc)
			rate(len, now_s() - t0);
	} else if (!strcmp(cmd, "get") && nargs == 3) {
		uint64_t off = strtoull(a[0], NULL, 10);
		len = (size_t)strtoull(a[1], NULL, 10);
		buf = malloc(len ? len : 1);
		if (!buf) {
			status = 1;
			goto out;
		}
		rc = mfs_s3_get_range(s3, url.bucket, url.prefix, off, buf, len, &e);
		if (!rc) {
			rate(len, now_s() - t0);
			int w = write_whole(a[2], buf, len);
			if (w) {
				fprintf(stderr, "%s: %s\n", a[2], strerror(-w));
				status = 1;
			}
		}
	} else if (!strcmp(cmd, "get-file") && nargs == 1) {
		int fd = open(a[0], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0) {
			perror(a[0]);
			status = 1;
			goto out;
		}
		uint64_t size = 0;
		rc = mfs_s3_get_file(s3, url.bucket, url.prefix, fd, &size, &e);
		close(fd);
		if (!rc)
			rate(size, now_s() - t0);
	} else if (!strcmp(cmd, "head") && nargs == 0) {
		mfs_s3_object o;
		rc = mfs_s3_head(s3, url.bucket, url.prefix, &o, &e);
		if (!rc)
			printf("size %" PRIu64 " etag %s\n", o.size,
			       o.etag[0] ? o.etag : "-");
	} else if (!strcmp(cmd, "list") && nargs == 0) {
		uint64_t n = 0;
		rc = mfs_s3_list(s3, url.bucket, url.prefix, print_obj, &n, &e);
		if (!rc)
			printf("keys %" PRIu64 "\n", n);
	} else if (!strcmp(cmd, "delete") && nargs == 0) {
		rc = mfs_s3_delete(s3, url.bucket, url.prefix, &e);
	} else if (!strcmp(cmd, "bucket") && nargs == 0) {
		rc = mfs_s3_bucket_check(s3, url.bucket, &e);
		if (!rc)
			printf("bucket %s ok\n", url.bucket);
	} else if (!strcmp(cmd, "put-parts") && (nargs == 2 || nargs == 3)) {
		int fd = open(a[0], O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st)) {
			perror(a[0]);
			status = 1;
			goto out;
		}
		mfs_s3_multipart_opts mo = {.part_size = strtoull(a[1], NULL, 10),
					    .part_tries = nargs == 3 ? atoi(a[2]) : 0,
					    .part_done = print_part};
		rc = mfs_s3_put_file_multipart(s3, url.bucket, url.prefix, fd, 0,
					       (uint64_t)st.st_size, &mo, &e);
		close(fd);
		if (!rc)
			rate((uint64_t)st.st_size, now_s() - t0);
	} else if (!strcmp(cmd, "uploads") && nargs == 0) {
		uint64_t n = 0;
		rc = mfs_s3_multipart_list(s3, url.bucket, url.prefix, print_upload, &n,
					   &e);
		if (!rc)
			printf("uploads %" PRIu64 "\n", n);
	} else if (!strcmp(cmd, "abort") && nargs == 1) {
		rc = mfs_s3_multipart_abort(s3, url.bucket, url.prefix, a[0], &e);
	} else if (!strcmp(cmd, "mget") && nargs == 4) {
		if ((rc = read_whole(a[0], &buf, &len)) || len == 0) {
			fprintf(stderr, "%s: unreadable or empty\n", a[0]);
			status = 1;
			goto out;
		}
		int nt = atoi(a[1]);
		if (nt < 1 || nt > 64) {
			status = usage();
			goto out;
		}
		struct mget m[64];
		pthread_t th[64];
		for (int t = 0; t < nt; t++) {
			m[t] = (struct mget){.s3 = s3,
					     .bucket = url.bucket,
					     .key = url.prefix,
					     .local = buf,
					     .local_len = len,
					     .rounds = atoi(a[2]),
					     .maxlen = (size_t)strtoull(a[3], NULL, 10),
					     .seed = 0x9E3779B97F4A7C15ull *
						     (uint64_t)(t + 1)};
			if (m[t].maxlen < 1)
				m[t].maxlen = 1;
			pthread_create(&th[t], NULL, mget_thread, &m[t]);
		}
		int wrong = 0;
		for (int t = 0; t < nt; t++) {
			pthread_join(th[t], NULL);
			wrong += m[t].wrong;
			if (m[t].rc && !rc) {
				rc = m[t].rc;
				e = m[t].e;
			}
		}
		if (!rc) {
			printf("mget %d threads ok, %d wrong\n", nt, wrong);
			if (wrong)
				status = 10;
		}
	} else {
		status = usage();
		goto out;
	}
	if (rc)
		status = fail(rc, &e);
out:;
	mfs_s3_stats st;
	mfs_s3_stats_get(s3, &st);
	fprintf(stderr,
		"stats requests=%" PRIu64 " retries=%" PRIu64 " up=%" PRIu64
		" down=%" PRIu64 "\n",
		st.requests, st.retries, st.bytes_up, st.bytes_down);
	free(buf);
	mfs_s3_close(s3);
	return status;
}
