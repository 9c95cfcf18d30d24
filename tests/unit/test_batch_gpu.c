/*
 * test_batch_gpu.c - the GPU backend of fs/batch.h against its CPU backend:
 * the real MiniLM BF16 weights (rans, 1 MiB and 64 KiB chunks) in batches
 * mixed with zstd chunks (left to the CPU), a budget small enough that a
 * batch runs in several device parts, partial batches (1 and 3 chunks), a
 * damaged RAW plane and a wrong key (left to the CPU, which says
 * MFS_E_CORRUPT), host destinations and device destinations (read back and
 * compared).  Exits 77 (CTest: skipped) in a build without CUDA or where no
 * CUDA device is usable, and says which.  Label `gpu`.
 */
#include "testhelp.h"

#include "batch.h"
#include "codec.h"

#ifndef MFS_HAVE_CUDA

int main(void)
{
	fprintf(stderr, "test_batch_gpu: built without CUDA (MODELFS_CUDA=OFF or no "
			"toolkit): the GPU backend's tests are skipped\n");
	return 77;
}

#else

#include <cuda_runtime_api.h>

#include "rans_cuda_fixture.h"

static mfs_codec_ws *ws;
static mfs_gpu_backend *gpu;

typedef struct tset {
	size_t n;
	mfs_batch_chunk *b;
	uint8_t **payload; /* owned copies (some damaged) */
	const uint8_t **raw;
	int *expect; /* after GPU + CPU: 0 or MFS_E_CORRUPT */
	int *gpu_takes;
} tset;

/* Chunks of @p s (rans) with a zstd chunk after every fourth, one damaged
 * RAW plane and one wrong key (when @p damage). */
static int build(tset *t, const fx_set *s, size_t first, size_t count, int damage)
{
	size_t n = count + count / 4;
	memset(t, 0, sizeof(*t));
	t->b = calloc(n, sizeof(*t->b));
	t->payload = calloc(n, sizeof(*t->payload));
	t->raw = calloc(n, sizeof(*t->raw));
	t->expect = calloc(n, sizeof(*t->expect));
	t->gpu_takes = calloc(n, sizeof(*t->gpu_takes));
	if (!t->b || !t->payload || !t->raw || !t->expect || !t->gpu_takes)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < count; i++) {
		const fx_chunk *c = &s->v[first + i];
		mfs_batch_chunk *b = &t->b[k];
		t->payload[k] = malloc(c->enc_len);
		if (!t->payload[k])
			return -1;
		memcpy(t->payload[k], c->enc, c->enc_len);
		mfs_chunk_key_of(c->raw, c->len, &b->key);
		b->codec = MFS_CODEC_RANS;
		b->payload = t->payload[k];
		b->payload_len = c->enc_len;
		b->raw_len = c->len;
		b->status = MFS_E_UNSUPPORTED;
		t->raw[k] = c->raw;
		t->gpu_takes[k] = 1;
		k++;
		if (i % 4 == 3) { /* the same bytes coded zstd: the CPU's */
			size_t cap = mfs_codec_get(MFS_CODEC_ZSTD)->bound(c->len);
			mfs_encode_params p = {.dtype = MFS_DT_BF16};
			t->payload[k] = malloc(cap);
			b = &t->b[k];
			if (!t->payload[k] ||
			    mfs_codec_encode(MFS_CODEC_ZSTD, &p, c->raw, c->len,
					     t->payload[k], cap, &b->payload_len, ws) < 0)
				return -1;
			mfs_chunk_key_of(c->raw, c->len, &b->key);
			b->codec = MFS_CODEC_ZSTD;
			b->payload = t->payload[k];
			b->raw_len = c->len;
			b->status = MFS_E_UNSUPPORTED;
			t->raw[k] = c->raw;
			k++;
		}
	}
	t->n = k;
	if (damage && k > 4) {
		/* the last byte of a chunk's payload lies in its last plane (the low
		 * mantissa bits, RAW where rANS would not gain: then only the key
		 * check sees it); a wrong key in another */
		t->payload[0][t->b[0].payload_len - 1] ^= 0x40;
		t->expect[0] = MFS_E_CORRUPT;
		t->gpu_takes[0] = 0;
		t->b[2].key.b[5] ^= 1;
		t->expect[2] = MFS_E_CORRUPT;
		t->gpu_takes[2] = 0;
	}
	return 0;
}

static void tset_free(tset *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->payload[i]);
	free(t->b);
	free(t->payload);
	free(t->raw);
	free(t->expect);
	free(t->gpu_takes);
}

/* One batch with host or device destinations; checks each chunk's status
 * after the GPU, the CPU's verdict on the rest, and the bytes. */
static void run(tset *t, int device)
{
	uint8_t **host = calloc(t->n, sizeof(*host));
	uint8_t **dev = calloc(t->n, sizeof(*dev));
	REQUIRE(host && dev);
	for (size_t i = 0; i < t->n; i++) {
		host[i] = malloc(t->b[i].raw_len + 1);
		REQUIRE(host[i]);
		if (device)
			REQUIRE(cudaMalloc((void **)&dev[i], t->b[i].raw_len + 1) ==
				cudaSuccess);
		t->b[i].dst = device ? (void *)dev[i] : (void *)host[i];
		t->b[i].dst_cap = t->b[i].raw_len;
		t->b[i].status = MFS_E_UNSUPPORTED;
		if (device)
			CHECK(mfs_gpu_backend_is_device_ptr(gpu, dev[i]));
	}
	CHECK(!mfs_gpu_backend_is_device_ptr(gpu, host[0]));
	if (device)
		mfs_gpu_backend_decode_device(gpu, t->b, t->n);
	else
		mfs_gpu_backend_decode(gpu, t->b, t->n);
	for (size_t i = 0; i < t->n; i++) {
		int want = t->gpu_takes[i] ? 0 : MFS_E_UNSUPPORTED;
		if (t->b[i].status != want)
			fprintf(stderr, "chunk %zu (%s): GPU status %d, expected %d\n", i,
				mfs_codec_name(t->b[i].codec), t->b[i].status, want);
		CHECK_EQ_INT(t->b[i].status, want);
	}
	/* what the GPU left: decoded on the CPU into host memory (and, for a
	 * device destination, copied over as libmodelfs does) */
	for (size_t i = 0; i < t->n; i++) {
		if (t->b[i].status != MFS_E_UNSUPPORTED)
			continue;
		mfs_batch_chunk c = t->b[i];
		c.dst = host[i];
		mfs_batch_decode_one(&c, ws);
		CHECK_EQ_INT(c.status, t->expect[i]);
		t->b[i].status = c.status;
		if (device && c.status == 0)
			CHECK_EQ_INT(
			    mfs_gpu_backend_upload(gpu, dev[i], host[i], c.raw_len), 0);
	}
	size_t wrong = 0;
	for (size_t i = 0; i < t->n; i++) {
		if (t->b[i].status != 0)
			continue;
		if (device)
			REQUIRE(cudaMemcpy(host[i], dev[i], t->b[i].raw_len,
					   cudaMemcpyDeviceToHost) == cudaSuccess);
		wrong += memcmp(host[i], t->raw[i], t->b[i].raw_len) != 0;
	}
	CHECK_EQ_INT(wrong, 0);
	for (size_t i = 0; i < t->n; i++) {
		free(host[i]);
		if (device)
			cudaFree(dev[i]);
	}
	free(host);
	free(dev);
}

static void test_model(size_t chunk)
{
	const char *env = getenv("MFS_TEST_DATA");
	const char *f = __FILE__, *slash = strrchr(f, '/');
	char path[1200];
	if (env)
		snprintf(path, sizeof path, "%s/models/minilm-bf16/model.safetensors",
			 env);
	else
		snprintf(path, sizeof path,
			 "%.*s/../data/models/minilm-bf16/model.safetensors",
			 (int)(slash ? slash - f : 0), f);
	fx_set s = {0};
	REQUIRE(fx_load(&s, path, MFS_DT_BF16, chunk, ws) == 0 && s.n > 8);
	mfs_gpu_backend_stats before, after;
	mfs_gpu_backend_stats_get(gpu, &before);
	for (int device = 0; device < 2; device++) {
		tset t;
		REQUIRE(build(&t, &s, 0, s.n, 1) == 0);
		run(&t, device);
		tset_free(&t);
		/* partial batches: one chunk, three chunks from the middle */
		REQUIRE(build(&t, &s, s.n / 2, 1, 0) == 0);
		run(&t, device);
		tset_free(&t);
		REQUIRE(build(&t, &s, s.n / 3, 3, 0) == 0);
		run(&t, device);
		tset_free(&t);
	}
	mfs_gpu_backend_stats_get(gpu, &after);
	CHECK(after.corrupt >= before.corrupt + 4); /* the two damaged, twice */
	CHECK(after.chunks > before.chunks);
	/* the whole model is over the 16 MiB budget: it ran in parts */
	CHECK(after.batches - before.batches > 2 * 3);
	fprintf(stderr,
		"  %zu KiB chunks: %llu device batches, %llu chunks on the device\n",
		chunk >> 10, (unsigned long long)(after.batches - before.batches),
		(unsigned long long)(after.chunks - before.chunks));
	fx_free(&s);
}

static void test_chunks_1m(void)
{
	test_model((size_t)1 << 20);
}

static void test_chunks_64k(void)
{
	test_model((size_t)64 << 10);
}

int main(void)
{
	char why[256];
	int rc = mfs_gpu_backend_open(16 << 20, NULL, NULL, &gpu, why, sizeof(why));
	if (rc == MFS_E_UNSUPPORTED) {
		fprintf(stderr,
			"test_batch_gpu: %s: the GPU backend's tests are skipped\n", why);
		return 77;
	}
	if (rc < 0 || mfs_codec_ws_create(&ws) < 0) {
		fprintf(stderr, "test_batch_gpu: cannot start: %s\n", why);
		return 1;
	}
	fprintf(stderr, "device: %s, budget %llu MiB\n", mfs_gpu_backend_name(gpu),
		(unsigned long long)(mfs_gpu_backend_budget(gpu) >> 20));
	RUN(test_chunks_1m);
	RUN(test_chunks_64k);
	CHECK(mfs_gpu_backend_usable(gpu));
	mfs_gpu_backend_close(gpu);
	mfs_codec_ws_free(ws);
	return test_report();
}

#endif
