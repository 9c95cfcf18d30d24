/*
 * test_rans_cuda.c - the CUDA rans decoder against the CPU decoder: the real
 * MiniLM weights (BF16, F16, F32; tests/data/models), every chunk size
 * 4 KiB..4 MiB with tails, n = 0 and 1, all-equal and random chunks, every
 * lane count; partial batches; a corrupt chunk in a batch (a damaged rANS
 * stream, caught by the decoder; a damaged RAW plane, caught by the key);
 * a wrong key.  Exits 77 (CTest: skipped) when there is no CUDA device,
 * and says so.  Label `gpu`.
 */
#include "testhelp.h"

#include <cuda_runtime_api.h>
#include <xxhash.h>

#include "codec.h"
#include "rans.h"
#include "rans_cuda.h"
#include "rans_cuda_fixture.h"
#include "rans_kernel.h"

static uint64_t seed;
static mfs_codec_ws *ws;
static mfs_rans_gpu *gpu;

static void key_of(const void *raw, size_t len, uint8_t key[16])
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(raw, len));
	memcpy(key, c.digest, 16);
}

/*
 * Decode the chunks of @p s in one batch on the device (keys given, host
 * copies back) and compare with the raw bytes and the CPU decoder.
 * @p expect: each chunk's expected status (NULL: all 0).
 */
static void run_batch(const fx_set *s, const int *expect, const uint8_t (*keys)[16])
{
	size_t in = 0, out = 0;
	for (size_t i = 0; i < s->n; i++) {
		in += (s->v[i].enc_len + 255) & ~(size_t)255;
		out += (s->v[i].len + 255) & ~(size_t)255;
	}
	uint8_t *din = NULL, *dout = NULL;
	REQUIRE(cudaMalloc((void **)&din, in + 256) == cudaSuccess);
	REQUIRE(cudaMalloc((void **)&dout, out + 256) == cudaSuccess);
	mfs_rans_gpu_chunk *c = calloc(s->n + 1, sizeof *c);
	uint8_t(*k)[16] = calloc(s->n + 1, 16);
	size_t a = 0, b = 0;
	for (size_t i = 0; i < s->n; i++) {
		REQUIRE(cudaMemcpy(din + a, s->v[i].enc, s->v[i].enc_len,
				   cudaMemcpyHostToDevice) == cudaSuccess);
		c[i].src = din + a;
		c[i].src_len = s->v[i].enc_len;
		c[i].dst = dout + b;
		c[i].dst_len = s->v[i].len;
		c[i].host_copy = malloc(s->v[i].len + 1);
		if (keys)
			memcpy(k[i], keys[i], 16);
		else
			key_of(s->v[i].raw, s->v[i].len, k[i]);
		c[i].key = k[i];
		a += (s->v[i].enc_len + 255) & ~(size_t)255;
		b += (s->v[i].len + 255) & ~(size_t)255;
	}
	CHECK_EQ_INT(mfs_rans_gpu_decode(gpu, c, s->n), 0);
	size_t wrong = 0, cpu_wrong = 0;
	uint8_t *dev = malloc(out + 1), *cpu = malloc(MFS_CHUNK_MAX);
	for (size_t i = 0; i < s->n; i++) {
		int want = expect ? expect[i] : 0;
		if (c[i].status != want) {
			fprintf(stderr, "chunk %zu: status %d, expected %d\n", i,
				c[i].status, want);
			wrong++;
		}
		int cpu_rc = mfs_codec_decode_plain(
		    MFS_CODEC_RANS, s->v[i].enc, s->v[i].enc_len, cpu, s->v[i].len, ws);
		if (c[i].status == 0) {
			/* the device's bytes, not only the copy: read them back again */
			if (s->v[i].len)
				CHECK(cudaMemcpy(dev, c[i].dst, s->v[i].len,
						 cudaMemcpyDeviceToHost) == cudaSuccess);
			if (memcmp(dev, s->v[i].raw, s->v[i].len) != 0 ||
			    memcmp(c[i].host_copy, s->v[i].raw, s->v[i].len) != 0 ||
			    cpu_rc != 0 || memcmp(cpu, dev, s->v[i].len) != 0)
				cpu_wrong++;
		} else if (c[i].status == MFS_E_CORRUPT && cpu_rc == 0 && !keys &&
			   memcmp(cpu, s->v[i].raw, s->v[i].len) == 0) {
			cpu_wrong++; /* the GPU rejected what the CPU decodes right */
		}
		free(c[i].host_copy);
	}
	CHECK_EQ_INT(wrong, 0);
	CHECK_EQ_INT(cpu_wrong, 0);
	free(dev);
	free(cpu);
	free(c);
	free(k);
	cudaFree(din);
	cudaFree(dout);
}

static void fill_weights(uint8_t *p, size_t len, unsigned es, uint64_t *s)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t r = test_rand(s);
		p[i] = i % es == es - 1 ? (uint8_t)(0x3a + (r % 5)) : (uint8_t)r;
	}
}

static void test_real_weights(void)
{
	static const struct {
		const char *name;
		mfs_dtype dt;
	} m[] = {{"minilm-bf16", MFS_DT_BF16},
		 {"minilm-fp16", MFS_DT_F16},
		 {"minilm-f32", MFS_DT_F32}};
	for (size_t i = 0; i < 3; i++) {
		char path[1200];
		test_model_path(path, sizeof path, m[i].name, "model.safetensors");
		fx_set s = {0};
		if (fx_load(&s, path, m[i].dt, (size_t)1 << 20, ws) < 0) {
			fprintf(stderr,
				"note: %s not found: its GPU round trips not run\n",
				path);
			fx_free(&s);
			continue;
		}
		CHECK(s.n > 20);
		run_batch(&s, NULL, NULL);
		fx_free(&s);
	}
}

static void test_sizes_and_edges(void)
{
	uint64_t r = seed;
	size_t maxlen = (size_t)4 << 20;
	uint8_t *buf = malloc(maxlen), *eq = calloc(1, maxlen), *rnd = malloc(maxlen);
	fill_weights(buf, maxlen, 2, &r);
	for (size_t i = 0; i < maxlen; i++)
		rnd[i] = (uint8_t)test_rand(&r);
	static const mfs_dtype dts[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32, MFS_DT_F64,
					MFS_DT_F8_E4M3};
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		unsigned es = mfs_dtype_bits(dts[d]) / 8;
		fx_set s = {0};
		for (size_t len = 4096; len <= maxlen; len *= 2) {
			fx_push(&s, buf, len, dts[d], ws);
			fx_push(&s, buf, len - es * (1 + test_rand(&r) % 1000), dts[d],
				ws);
		}
		fx_push(&s, buf, 0, dts[d], ws);
		fx_push(&s, buf, es, dts[d], ws);
		fx_push(&s, buf, 33 * es, dts[d], ws);
		fx_push(&s, eq, (size_t)1 << 20, dts[d], ws);
		fx_push(&s, rnd, (size_t)1 << 20, dts[d], ws);
		run_batch(&s, NULL, NULL);
		/* a partial batch: the first chunk alone, then three */
		fx_set one = s;
		one.n = 1;
		run_batch(&one, NULL, NULL);
		one.n = 3;
		run_batch(&one, NULL, NULL);
		fx_free(&s);
	}
	/* every precision and lane count */
	fx_set s = {0};
	for (unsigned P = MFS_RANS_PROB_MIN; P <= MFS_RANS_PROB_MAX; P++)
		for (unsigned lanes = 32; lanes <= MFS_RANS_LANES_MAX;
		     lanes += 32 * (1 + lanes / 128)) {
			if (s.n == s.cap) {
				s.cap = s.cap ? 2 * s.cap : 64;
				s.v = realloc(s.v, s.cap * sizeof *s.v);
			}
			fx_chunk *c = &s.v[s.n++];
			size_t len = 2 * (lanes * 37 + 5);
			mfs_rans_opts o = {P, lanes};
			mfs_encode_params p = {.dtype = MFS_DT_BF16};
			c->raw = buf;
			c->len = len;
			c->enc = malloc(mfs_rans_bound(len));
			CHECK(mfs_rans_encode_opts(&p, &o, buf, len, c->enc,
						   mfs_rans_bound(len), &c->enc_len,
						   ws) == 0);
		}
	run_batch(&s, NULL, NULL);
	fx_free(&s);
	free(buf);
	free(eq);
	free(rnd);
}

/* A batch with damaged chunks: only those fail, each as MFS_E_CORRUPT. */
static void test_corrupt_in_batch(void)
{
	uint64_t r = seed + 1;
	size_t len = (size_t)256 << 10;
	uint8_t *buf = malloc(len);
	fill_weights(buf, len, 2, &r);
	fx_set s = {0};
	for (int i = 0; i < 8; i++)
		fx_push(&s, buf, len - 2 * (size_t)i, MFS_DT_BF16, ws);
	int expect[8] = {0};
	/* chunk 2: a byte of the rANS plane's streams; chunk 5: a byte of the
	 * RAW low plane (no decoder check sees it: the key does); chunk 6:
	 * the header's element count */
	const uint8_t *e2 = s.v[2].enc;
	REQUIRE(e2[MFS_RANS_HEADER + 1] == MFS_RANS_MODE_RANS &&
		s.v[5].enc[MFS_RANS_HEADER + MFS_RANS_DESC + 1] == MFS_RANS_MODE_RAW);
	size_t p0 = mfs_rans_get32(e2 + MFS_RANS_HEADER + 2);
	s.v[2].enc[MFS_RANS_HEADER + 2 * MFS_RANS_DESC + p0 - 100] ^= 0x10;
	s.v[5].enc[s.v[5].enc_len - 7] ^= 0x01;
	s.v[6].enc[4] ^= 0x01;
	expect[2] = expect[5] = expect[6] = MFS_E_CORRUPT;
	run_batch(&s, expect, NULL);
	/* a wrong key on good bytes */
	fx_set t = {0};
	fx_push(&t, buf, len, MFS_DT_BF16, ws);
	fx_push(&t, buf, len / 2, MFS_DT_BF16, ws);
	uint8_t keys[2][16];
	key_of(buf, len, keys[0]);
	key_of(buf, len / 2, keys[1]);
	keys[1][15] ^= 1;
	int expect2[2] = {0, MFS_E_CORRUPT};
	run_batch(&t, expect2, keys);
	/* arguments */
	mfs_rans_gpu_chunk bad = {.dst_len = MFS_CHUNK_MAX + 1};
	CHECK_EQ_INT(mfs_rans_gpu_decode(gpu, &bad, 1), MFS_E_INVAL);
	CHECK_EQ_INT(bad.status, MFS_E_INVAL);
	uint8_t k[16] = {0};
	mfs_rans_gpu_chunk nocopy = {.key = k};
	CHECK_EQ_INT(mfs_rans_gpu_decode(gpu, &nocopy, 1), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_rans_gpu_decode(gpu, NULL, 0), 0);
	fx_free(&s);
	fx_free(&t);
	free(buf);
}

int main(void)
{
	seed = test_seed();
	if (mfs_codec_ws_create(&ws))
		return 1;
	int rc = mfs_rans_gpu_open(0, &gpu);
	if (rc == MFS_E_UNSUPPORTED) {
		fprintf(stderr,
			"test_rans_cuda: no CUDA device here: the GPU tests are skipped "
			"(the CPU decoder is covered by test_rans)\n");
		mfs_codec_ws_free(ws);
		return 77;
	}
	if (rc < 0) {
		fprintf(stderr, "test_rans_cuda: opening device 0 failed: %s\n",
			mfs_strerror(rc));
		return 1;
	}
	fprintf(stderr, "device: %s\n", mfs_rans_gpu_device_name(gpu));
	RUN(test_real_weights);
	RUN(test_sizes_and_edges);
	RUN(test_corrupt_in_batch);
	mfs_rans_gpu_close(gpu);
	mfs_codec_ws_free(ws);
	return test_report();
}
