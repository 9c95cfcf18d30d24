/*
 * bench_rans_cuda - the CUDA rans decoder on real tensors.
 *
 *   bench_rans_cuda [--repeat N] [--chunk BYTES] FILE.safetensors...
 *
 * The float tensors of the files, cut into chunks (1 MiB) from each
 * tensor's start and rans-encoded on the CPU, are decoded as one batch:
 *   - device to device: payloads already on the device, decoded into
 *     device memory, no key check (GB/s of raw output, best of N);
 *   - host to device: the payloads copied from pinned host memory, then
 *     decoded (the bus carries compressed bytes);
 *   - against cudaMemcpy of the raw bytes host to device (pinned) and
 *     device to device, the device's measured copy bandwidth.
 * Then the batch backend (fs/batch.h) as the mount and load_file(device=
 * "cuda") use it, in batches of 64 chunks within its default memory budget,
 * payloads read from pageable host memory as from the store's map, every
 * chunk's key checked on the host:
 *   - host destinations (the mount: payload up, decode, bytes back);
 *   - device destinations (a CUDA tensor: payload up, decode into it, one
 *     copy back for the key check).
 * Every chunk is checked bit-exact once (with its key, host copy).  Exits
 * 77 when there is no CUDA device, saying so.  GB = 1e9 raw bytes.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "batch.h"
#include "codec.h"
#include "rans_cuda.h"
#include "../unit/rans_cuda_fixture.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int repeat = 10;
	size_t chunk = (size_t)1 << 20;
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws))
		return 1;
	fx_set s = {0};
	int nfiles = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
			repeat = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
			chunk = strtoull(argv[++i], NULL, 0);
		} else {
			fx_set f = {0};
			if (fx_load(&f, argv[i], MFS_DT_UNKNOWN, chunk, ws) < 0) {
				fprintf(stderr,
					"bench_rans_cuda: %s: cannot read its tensors\n",
					argv[i]);
				return 1;
			}
			/* keep the file buffers: chunks point into them */
			for (size_t k = 0; k < f.n; k++) {
				if (s.n == s.cap) {
					s.cap = s.cap ? 2 * s.cap : 256;
					s.v = realloc(s.v, s.cap * sizeof *s.v);
				}
				s.v[s.n++] = f.v[k];
			}
			s.raw += f.raw;
			s.stored += f.stored;
			free(f.v);
			nfiles++;
		}
	}
	if (!nfiles || repeat < 1 || !chunk || chunk > MFS_CHUNK_MAX) {
		fprintf(stderr, "usage: bench_rans_cuda [--repeat N] [--chunk BYTES] "
				"FILE.safetensors...\n");
		return 2;
	}
	mfs_rans_gpu *g;
	int rc = mfs_rans_gpu_open(0, &g);
	if (rc == MFS_E_UNSUPPORTED) {
		fprintf(stderr,
			"bench_rans_cuda: no CUDA device here: nothing measured\n");
		return 77;
	}
	if (rc < 0) {
		fprintf(stderr, "bench_rans_cuda: device 0: %s\n", mfs_strerror(rc));
		return 1;
	}
	size_t in = 0, out = 0;
	for (size_t i = 0; i < s.n; i++) {
		in += (s.v[i].enc_len + 255) & ~(size_t)255;
		out += (s.v[i].len + 255) & ~(size_t)255;
	}
	uint8_t *hin, *hraw, *din, *dout, *dcopy;
	if (cudaMallocHost((void **)&hin, in) || cudaMallocHost((void **)&hraw, out) ||
	    cudaMalloc((void **)&din, in) || cudaMalloc((void **)&dout, out) ||
	    cudaMalloc((void **)&dcopy, out)) {
		fprintf(stderr, "bench_rans_cuda: out of memory\n");
		return 1;
	}
	mfs_rans_gpu_chunk *c = calloc(s.n, sizeof *c);
	uint8_t(*keys)[16] = calloc(s.n, 16);
	uint8_t *hcopy = malloc(out);
	size_t a = 0, b = 0;
	for (size_t i = 0; i < s.n; i++) {
		memcpy(hin + a, s.v[i].enc, s.v[i].enc_len);
		memcpy(hraw + b, s.v[i].raw, s.v[i].len);
		XXH128_canonical_t k;
		XXH128_canonicalFromHash(&k, XXH3_128bits(s.v[i].raw, s.v[i].len));
		memcpy(keys[i], k.digest, 16);
		c[i] = (mfs_rans_gpu_chunk){
		    din + a, s.v[i].enc_len, dout + b, s.v[i].len, hcopy + b, keys[i], 0};
		a += (s.v[i].enc_len + 255) & ~(size_t)255;
		b += (s.v[i].len + 255) & ~(size_t)255;
	}
	cudaMemcpy(din, hin, in, cudaMemcpyHostToDevice);
	/* checked once, with keys */
	if (mfs_rans_gpu_decode(g, c, s.n) < 0)
		return 1;
	for (size_t i = 0; i < s.n; i++)
		if (c[i].status || memcmp(c[i].host_copy, s.v[i].raw, s.v[i].len)) {
			fprintf(stderr, "bench_rans_cuda: chunk %zu decoded wrong (%d)\n",
				i, c[i].status);
			return 1;
		}
	for (size_t i = 0; i < s.n; i++)
		c[i].host_copy = NULL, c[i].key = NULL;
	double best_d2d = 1e9, best_h2d = 1e9, best_cp = 1e9, best_dd = 1e9;
	for (int r = 0; r < repeat; r++) {
		double t0 = now();
		mfs_rans_gpu_decode(g, c, s.n);
		double t1 = now();
		cudaMemcpy(din, hin, in, cudaMemcpyHostToDevice);
		mfs_rans_gpu_decode(g, c, s.n);
		double t2 = now();
		cudaMemcpy(dcopy, hraw, s.raw, cudaMemcpyHostToDevice);
		double t3 = now();
		cudaMemcpy(dcopy, dout, s.raw, cudaMemcpyDeviceToDevice);
		cudaDeviceSynchronize();
		double t4 = now();
		if (t1 - t0 < best_d2d)
			best_d2d = t1 - t0;
		if (t2 - t1 < best_h2d)
			best_h2d = t2 - t1;
		if (t3 - t2 < best_cp)
			best_cp = t3 - t2;
		if (t4 - t3 < best_dd)
			best_dd = t4 - t3;
	}
	printf("device %s; %zu chunks of %zu bytes, %.1f MB raw, rans %.2f%% of raw; "
	       "best of %d\n",
	       mfs_rans_gpu_device_name(g), s.n, chunk, s.raw / 1e6,
	       100.0 * s.stored / s.raw, repeat);
	printf("%-44s %10s\n", "what", "GB/s raw");
	printf("%-44s %10.1f\n", "rans decode, device to device", s.raw / best_d2d / 1e9);
	printf("%-44s %10.1f\n", "rans host to device (payload copy + decode)",
	       s.raw / best_h2d / 1e9);
	printf("%-44s %10.1f\n", "cudaMemcpy raw bytes host to device (pinned)",
	       s.raw / best_cp / 1e9);
	printf("%-44s %10.1f\n", "cudaMemcpy device to device", s.raw / best_dd / 1e9);
	mfs_rans_gpu_close(g);

	/* the batch backend, as the mount and libmodelfs call it */
	mfs_gpu_backend *bk;
	char why[256];
	if (mfs_gpu_backend_open(0, NULL, NULL, &bk, why, sizeof why) < 0) {
		fprintf(stderr, "bench_rans_cuda: batch backend: %s\n", why);
		return 1;
	}
	mfs_batch_chunk *bc = calloc(s.n, sizeof *bc);
	uint8_t *hdst = malloc(out);
	double best_bh = 1e9, best_bd = 1e9;
	for (int r = 0; r < repeat; r++)
		for (int device = 0; device < 2; device++) {
			b = 0;
			for (size_t i = 0; i < s.n; i++) {
				bc[i] =
				    (mfs_batch_chunk){.codec = MFS_CODEC_RANS,
						      .payload = s.v[i].enc,
						      .payload_len = s.v[i].enc_len,
						      .raw_len = s.v[i].len,
						      .dst = device ? (void *)(dcopy + b)
								    : (void *)(hdst + b),
						      .dst_cap = s.v[i].len,
						      .status = MFS_E_UNSUPPORTED};
				memcpy(bc[i].key.b, keys[i], 16);
				b += (s.v[i].len + 255) & ~(size_t)255;
			}
			double t0 = now();
			for (size_t i = 0; i < s.n; i += 64) {
				size_t m = s.n - i < 64 ? s.n - i : 64;
				if (device)
					mfs_gpu_backend_decode_device(bk, bc + i, m);
				else
					mfs_gpu_backend_decode(bk, bc + i, m);
			}
			double t1 = now();
			for (size_t i = 0; i < s.n; i++)
				if (bc[i].status != 0) {
					fprintf(stderr,
						"bench_rans_cuda: batch backend: chunk "
						"%zu: %d\n",
						i, bc[i].status);
					return 1;
				}
			double *best = device ? &best_bd : &best_bh;
			if (t1 - t0 < *best)
				*best = t1 - t0;
		}
	printf("%-44s %10.1f\n", "batch backend, host dst (mount), keys checked",
	       s.raw / best_bh / 1e9);
	printf("%-44s %10.1f\n", "batch backend, device dst, keys checked",
	       s.raw / best_bd / 1e9);
	printf("(batch backend budget %llu MiB)\n",
	       (unsigned long long)(mfs_gpu_backend_budget(bk) >> 20));
	mfs_gpu_backend_close(bk);
	return 0;
}
