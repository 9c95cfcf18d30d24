/*
 * rans_cuda.cu - the CUDA decoder of the rans codec (rans_cuda.h).
 *
 * One block per chunk.  Every check of the CPU decoder is made here too,
 * with the same kernel functions (codec/rans_kernel.h): a payload the CPU
 * decoder rejects gets MFS_E_CORRUPT here, and one it accepts decodes to
 * the same bytes (tests/unit/test_rans_cuda.c compares them).
 */
#include <cuda_runtime.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

extern "C" {
#include "codec.h"
}
#include "rans_cuda.h"
#include "rans_kernel.h"

#define BLOCK 256
#define WARPS (BLOCK / 32)

/* What the host tells the device about one chunk (device memory). */
struct job {
	const uint8_t *src;
	uint64_t src_len;
	uint8_t *dst;
	uint64_t dst_len;
	uint8_t *scratch; /* 1.5 x dst_len (+ 256): the coded planes' symbols */
	int status;
};

struct mfs_rans_gpu {
	int device;
	cudaStream_t stream;
	job *jobs_dev, *jobs_host; /* pinned host copy, so the upload is async */
	size_t jobs_cap;
	uint8_t *scratch;
	size_t scratch_cap;
	char name[256];
};

/* Scratch one chunk may use: the widest planes are BF16's (2 + 1 bytes of
 * symbols per 2-byte element). */
static size_t scratch_for(size_t dst_len)
{
	return ((dst_len + dst_len / 2 + 256) + 255) & ~(size_t)255;
}

extern "C" size_t mfs_rans_gpu_scratch_bound(size_t dst_len)
{
	return scratch_for(dst_len);
}

struct plane_info {
	unsigned mode, w;
	const uint8_t *data;
	uint32_t len;
	uint8_t *syms; /* RANS planes: decoded symbols in scratch */
};

__global__ void __launch_bounds__(BLOCK) rans_decode_kernel(job *jobs)
{
	__shared__ uint32_t tab[MFS_RANS_SLOTS_MAX];
	__shared__ uint16_t freq[1u << MFS_RANS_SYM_BITS_MAX];
	__shared__ uint16_t cum[1u << MFS_RANS_SYM_BITS_MAX];
	__shared__ uint32_t goff[MFS_RANS_GROUPS_MAX + 1];
	__shared__ plane_info pi[MFS_RANS_PLANES_MAX];
	__shared__ mfs_rans_plane pl;
	__shared__ unsigned esize, rot, nplanes;
	__shared__ uint64_t n;
	__shared__ int bad;
	job *j = &jobs[blockIdx.x];
	const unsigned tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

	if (tid == 0) {
		bad = 0;
		const uint8_t *src = j->src;
		uint64_t src_len = j->src_len;
		unsigned width[MFS_RANS_PLANES_MAX];
		if (src_len < MFS_RANS_HEADER || src[0] != MFS_RANS_VERSION ||
		    src[3] != 0 ||
		    mfs_rans_layout(src[1], &esize, &rot, &nplanes, width) < 0 ||
		    src[2] != nplanes || j->dst_len % esize) {
			bad = 1;
		} else {
			n = j->dst_len / esize;
			uint64_t at = MFS_RANS_HEADER + (uint64_t)MFS_RANS_DESC * nplanes;
			if (src_len < at || mfs_rans_get32(src + 4) != n)
				bad = 1;
			uint8_t *sc = j->scratch;
			for (unsigned p = 0; p < nplanes && !bad; p++) {
				const uint8_t *d =
				    src + MFS_RANS_HEADER + MFS_RANS_DESC * p;
				pi[p].w = width[p];
				pi[p].mode = d[1];
				pi[p].len = mfs_rans_get32(d + 2);
				pi[p].data = src + at;
				if (d[0] != width[p] || pi[p].len > src_len - at)
					bad = 1;
				at += pi[p].len;
				if (pi[p].mode == MFS_RANS_MODE_RAW) {
					if (pi[p].len != (n * width[p] + 7) / 8)
						bad = 1;
				} else if (pi[p].mode == MFS_RANS_MODE_CONST) {
					if (pi[p].len != 2 ||
					    mfs_rans_get16(pi[p].data) >> width[p])
						bad = 1;
				} else if (pi[p].mode == MFS_RANS_MODE_RANS) {
					pi[p].syms = sc;
					sc += (width[p] > 8 ? 2 : 1) * n;
				} else {
					bad = 1;
				}
			}
			if (!bad && at != src_len)
				bad = 1;
		}
	}
	__syncthreads();
	if (bad) {
		if (tid == 0)
			j->status = MFS_E_CORRUPT;
		return;
	}
	for (unsigned p = 0; p < nplanes; p++) {
		if (pi[p].mode != MFS_RANS_MODE_RANS)
			continue;
		if (tid == 0) {
			const uint8_t *end = pi[p].data + pi[p].len;
			if (mfs_rans_plane_parse(pi[p].data, pi[p].len, pi[p].w, &pl) <
				0 ||
			    mfs_rans_freqs_read(&pl, end, freq) < 0) {
				bad = 1;
			} else {
				unsigned c = 0;
				for (unsigned i = 0; i < pl.cnt; i++) {
					cum[i] = (uint16_t)c;
					c += freq[i];
				}
				uint32_t o = 0;
				for (unsigned g = 0; g < pl.groups; g++) {
					goff[g] = o;
					o += mfs_rans_get32(pl.lens + 4 * g);
				}
				goff[pl.groups] = o;
			}
		}
		__syncthreads();
		if (bad)
			break;
		for (unsigned i = tid; i < pl.cnt; i += BLOCK)
			mfs_rans_table_fill(tab, cum[i], freq[i], pl.lo + i);
		__syncthreads();
		const unsigned P = pl.prob_bits, lanes = pl.lanes;
		const uint64_t full = n / lanes, rem = n % lanes;
		const int wide = pi[p].w > 8;
		for (unsigned g = warp; g < pl.groups; g += WARPS) {
			const uint64_t g0 = (uint64_t)g * MFS_RANS_GROUP;
			uint32_t x = mfs_rans_get32(pl.states + 4 * (g0 + lane));
			const uint8_t *s = pl.streams + goff[g],
				      *e = pl.streams + goff[g + 1];
			const uint64_t last = full + (rem > g0);
			int err = 0;
			for (uint64_t t = 0; t < last; t++) {
				bool active = t < full || g0 + lane < rem;
				unsigned sym = 0;
				uint32_t v = x;
				if (active)
					v = mfs_rans_dec(x, tab, P, &sym);
				bool need = active && v < MFS_RANS_L;
				unsigned mask = __ballot_sync(0xffffffffu, need);
				unsigned rank = __popc(mask & ((1u << lane) - 1));
				if (need) {
					const uint8_t *w = s + 2 * rank;
					if (e - w < 2)
						err = 1;
					else
						v = v << 16 | mfs_rans_get16(w);
				}
				s += 2 * __popc(mask);
				x = v;
				if (active) {
					uint64_t o = mfs_rans_index(t, lanes, g, lane);
					if (wide)
						((uint16_t *)pi[p].syms)[o] =
						    (uint16_t)sym;
					else
						pi[p].syms[o] = (uint8_t)sym;
				}
			}
			if (err || s != e || x != MFS_RANS_L)
				bad = 1; /* any thread may set it: all write the same */
		}
		__syncthreads();
		if (bad)
			break;
	}
	if (bad) {
		if (tid == 0)
			j->status = MFS_E_CORRUPT;
		return;
	}
	/* merge: element i's planes, top bits first, rotated back */
	const unsigned bits = 8 * esize;
	for (uint64_t i = tid; i < n; i += BLOCK) {
		uint64_t r = 0;
		for (unsigned p = 0; p < nplanes; p++) {
			unsigned w = pi[p].w, sym;
			if (pi[p].mode == MFS_RANS_MODE_RANS)
				sym = w > 8 ? ((const uint16_t *)pi[p].syms)[i]
					    : pi[p].syms[i];
			else if (pi[p].mode == MFS_RANS_MODE_CONST)
				sym = mfs_rans_get16(pi[p].data);
			else
				sym = mfs_rans_raw_get(pi[p].data, w, n, i);
			r = r << w | sym;
		}
		if (rot) {
			uint64_t m = bits == 64 ? ~0ull : ((1ull << bits) - 1);
			r = ((r >> rot) | (r << (bits - rot))) & m;
		}
		uint8_t *o = j->dst + i * esize;
		for (unsigned b = 0; b < esize; b++)
			o[b] = (uint8_t)(r >> (8 * b));
	}
	if (tid == 0)
		j->status = 0;
}

extern "C" int mfs_rans_gpu_open(int device, mfs_rans_gpu **out)
{
	*out = NULL;
	int count = 0;
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
	    (e == cudaSuccess && device >= count) || device < 0) {
		cudaGetLastError(); /* clear it */
		return MFS_E_UNSUPPORTED;
	}
	if (e != cudaSuccess)
		return -EIO;
	mfs_rans_gpu *g = (mfs_rans_gpu *)calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	g->device = device;
	cudaDeviceProp prop;
	if (cudaSetDevice(device) != cudaSuccess ||
	    cudaGetDeviceProperties(&prop, device) != cudaSuccess ||
	    cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking) != cudaSuccess) {
		free(g);
		return -EIO;
	}
	snprintf(g->name, sizeof g->name, "%s", prop.name);
	*out = g;
	return 0;
}

extern "C" void mfs_rans_gpu_close(mfs_rans_gpu *g)
{
	if (!g)
		return;
	cudaSetDevice(g->device);
	cudaFree(g->jobs_dev);
	cudaFreeHost(g->jobs_host);
	cudaFree(g->scratch);
	cudaStreamDestroy(g->stream);
	free(g);
}

extern "C" const char *mfs_rans_gpu_device_name(const mfs_rans_gpu *g)
{
	return g->name;
}

static int fail_all(mfs_rans_gpu_chunk *chunks, size_t n, int rc)
{
	for (size_t i = 0; i < n; i++)
		chunks[i].status = rc;
	return rc;
}

extern "C" int mfs_rans_gpu_decode(mfs_rans_gpu *g, mfs_rans_gpu_chunk *chunks, size_t n)
{
	if (n == 0)
		return 0;
	size_t scratch = 0;
	for (size_t i = 0; i < n; i++) {
		if (chunks[i].dst_len > MFS_CHUNK_MAX ||
		    (chunks[i].key && !chunks[i].host_copy))
			return fail_all(chunks, n, MFS_E_INVAL);
		scratch += scratch_for(chunks[i].dst_len);
	}
	if (cudaSetDevice(g->device) != cudaSuccess)
		return fail_all(chunks, n, -EIO);
	if (n > g->jobs_cap) {
		cudaFree(g->jobs_dev);
		cudaFreeHost(g->jobs_host);
		g->jobs_dev = g->jobs_host = NULL;
		g->jobs_cap = 0;
		if (cudaMalloc(&g->jobs_dev, n * sizeof(job)) != cudaSuccess ||
		    cudaMallocHost(&g->jobs_host, n * sizeof(job)) != cudaSuccess) {
			cudaGetLastError();
			return fail_all(chunks, n, -ENOMEM);
		}
		g->jobs_cap = n;
	}
	if (scratch > g->scratch_cap) {
		cudaFree(g->scratch);
		g->scratch = NULL;
		g->scratch_cap = 0;
		if (cudaMalloc(&g->scratch, scratch) != cudaSuccess) {
			cudaGetLastError();
			return fail_all(chunks, n, -ENOMEM);
		}
		g->scratch_cap = scratch;
	}
	uint8_t *sc = g->scratch;
	for (size_t i = 0; i < n; i++) {
		job *jb = &g->jobs_host[i];
		jb->src = (const uint8_t *)chunks[i].src;
		jb->src_len = chunks[i].src_len;
		jb->dst = (uint8_t *)chunks[i].dst;
		jb->dst_len = chunks[i].dst_len;
		jb->scratch = sc;
		jb->status = -EIO; /* stays so if the kernel never ran */
		sc += scratch_for(chunks[i].dst_len);
	}
	cudaMemcpyAsync(g->jobs_dev, g->jobs_host, n * sizeof(job),
			cudaMemcpyHostToDevice, g->stream);
	rans_decode_kernel<<<(unsigned)n, BLOCK, 0, g->stream>>>(g->jobs_dev);
	cudaMemcpyAsync(g->jobs_host, g->jobs_dev, n * sizeof(job),
			cudaMemcpyDeviceToHost, g->stream);
	for (size_t i = 0; i < n; i++)
		if (chunks[i].host_copy && chunks[i].dst_len)
			cudaMemcpyAsync(chunks[i].host_copy, chunks[i].dst,
					chunks[i].dst_len, cudaMemcpyDeviceToHost,
					g->stream);
	if (cudaStreamSynchronize(g->stream) != cudaSuccess ||
	    cudaGetLastError() != cudaSuccess)
		return fail_all(chunks, n, -EIO);
	for (size_t i = 0; i < n; i++) {
		chunks[i].status = g->jobs_host[i].status;
		if (chunks[i].status == 0 && chunks[i].key) {
			XXH128_hash_t h =
			    XXH3_128bits(chunks[i].host_copy, chunks[i].dst_len);
			XXH128_canonical_t c;
			XXH128_canonicalFromHash(&c, h);
			if (memcmp(c.digest, chunks[i].key, 16) != 0)
				chunks[i].status = MFS_E_CORRUPT;
		}
	}
	return 0;
}

extern "C" int mfs_rans_gpu_mem_info(mfs_rans_gpu *g, size_t *free_bytes,
				     size_t *total_bytes)
{
	*free_bytes = *total_bytes = 0;
	if (cudaSetDevice(g->device) != cudaSuccess ||
	    cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
		cudaGetLastError();
		return -EIO;
	}
	return 0;
}

extern "C" int mfs_rans_gpu_alloc(mfs_rans_gpu *g, size_t size, void **out)
{
	*out = NULL;
	if (cudaSetDevice(g->device) != cudaSuccess ||
	    cudaMalloc(out, size ? size : 1) != cudaSuccess) {
		cudaGetLastError();
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

extern "C" void mfs_rans_gpu_free(mfs_rans_gpu *g, void *dev)
{
	if (!dev)
		return;
	cudaSetDevice(g->device);
	cudaFree(dev);
}

extern "C" int mfs_rans_gpu_host_alloc(mfs_rans_gpu *g, size_t size, void **out)
{
	*out = NULL;
	if (cudaSetDevice(g->device) != cudaSuccess ||
	    cudaMallocHost(out, size ? size : 1) != cudaSuccess) {
		cudaGetLastError();
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

extern "C" void mfs_rans_gpu_host_free(mfs_rans_gpu *g, void *host)
{
	if (!host)
		return;
	cudaSetDevice(g->device);
	cudaFreeHost(host);
}

extern "C" int mfs_rans_gpu_upload(mfs_rans_gpu *g, void *dst, const void *src, size_t n)
{
	if (n == 0)
		return 0;
	if (cudaSetDevice(g->device) != cudaSuccess ||
	    cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, g->stream) !=
		cudaSuccess) {
		cudaGetLastError();
		return -EIO;
	}
	return 0;
}

extern "C" int mfs_rans_gpu_sync(mfs_rans_gpu *g)
{
	if (cudaSetDevice(g->device) != cudaSuccess ||
	    cudaStreamSynchronize(g->stream) != cudaSuccess) {
		cudaGetLastError();
		return -EIO;
	}
	return 0;
}

extern "C" int mfs_rans_gpu_is_device_ptr(mfs_rans_gpu *g, const void *p)
{
	cudaPointerAttributes a;
	if (!p || cudaPointerGetAttributes(&a, p) != cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	return (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) &&
	       a.device == g->device;
}
