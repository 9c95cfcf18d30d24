/*
 * read_tensor.c - read one tensor out of a modelfs store with libmodelfs.
 *
 *   cc read_tensor.c $(pkg-config --cflags --libs modelfs) -o read_tensor
 *   ./read_tensor [--store DIR] REPO FILE TENSOR [ORIGINAL]
 *
 * Opens the store (DIR, else $MODELFS_STORE, else the default), the file
 * FILE of REPO's main snapshot, finds TENSOR and reads it into memory of its
 * own.  Prints its dtype, shape, size and an FNV-1a hash of its bytes.  With
 * ORIGINAL, the safetensors file the store was ingested from, it also reads
 * the same bytes from it (a store gives files back byte for byte, so the
 * tensor lies at the same offset) and says whether they match: exit 0 when
 * they do, 1 otherwise or on any error.
 */
#define _POSIX_C_SOURCE 200809L /* pread */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <modelfs.h>

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* Read @p n bytes at @p off of @p path; 0 or -1 after printing why. */
static int read_original(const char *path, uint64_t off, unsigned char *buf, size_t n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "read_tensor: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(fd, buf + done, n - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "read_tensor: %s: %s\n", path,
				r < 0 ? strerror(errno)
				      : "shorter than the tensor's end");
			close(fd);
			return -1;
		}
		done += (size_t)r;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *store_dir = NULL;
	int i = 1;
	if (argc > 2 && !strcmp(argv[1], "--store")) {
		store_dir = argv[2];
		i = 3;
	}
	if (argc - i < 3 || argc - i > 4) {
		fprintf(stderr,
			"usage: read_tensor [--store DIR] REPO FILE TENSOR [ORIGINAL]\n");
		return 2;
	}
	const char *repo = argv[i], *path = argv[i + 1], *name = argv[i + 2];
	const char *original = argc - i == 4 ? argv[i + 3] : NULL;

	if (modelfs_version_number() / 10000 != MODELFS_VERSION_MAJOR) {
		fprintf(stderr, "read_tensor: built for libmodelfs %s, running with %s\n",
			MODELFS_VERSION_STRING, modelfs_version_string());
		return 1;
	}
	modelfs_store *s = NULL;
	modelfs_file *f = NULL;
	const modelfs_tensor *t;
	unsigned char *buf = NULL, *want = NULL;
	modelfs_error err;
	int ret = 1;
	if (modelfs_store_open(store_dir, 0, &s, &err) < 0 ||
	    modelfs_file_open(s, repo, "main", path, &f, &err) < 0 ||
	    modelfs_file_find_tensor(f, name, &t, &err) < 0) {
		fprintf(stderr, "read_tensor: %s\n", err.message);
		goto out;
	}
	/* the buffer is ours; the library decodes straight into it */
	buf = malloc(t->nbytes ? t->nbytes : 1);
	if (!buf) {
		fprintf(stderr, "read_tensor: out of memory for %" PRIu64 " bytes\n",
			t->nbytes);
		goto out;
	}
	if (modelfs_tensor_read(f, name, buf, t->nbytes, &err) < 0) {
		fprintf(stderr, "read_tensor: %s\n", err.message);
		goto out;
	}
	printf("%s %s [", t->name, t->dtype);
	for (uint32_t d = 0; d < t->ndim; d++)
		printf("%s%" PRIu64, d ? ", " : "", t->shape[d]);
	printf("] %" PRIu64 " bytes at offset %" PRIu64 ", fnv1a %016" PRIx64 "\n",
	       t->nbytes, t->offset, fnv1a(buf, t->nbytes));
	if (original) {
		want = malloc(t->nbytes ? t->nbytes : 1);
		if (!want || read_original(original, t->offset, want, t->nbytes) < 0)
			goto out;
		if (memcmp(buf, want, t->nbytes) != 0) {
			printf("differs from %s\n", original);
			goto out;
		}
		printf("matches %s\n", original);
	}
	ret = 0;
out:
	free(want);
	free(buf);
	modelfs_file_close(f);
	modelfs_store_close(s);
	return ret;
}
