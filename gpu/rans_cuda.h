/*
 * rans_cuda.h - the CUDA decoder of the rans codec (codec/rans.h): a batch
 * of rans payloads already in device memory decoded into device memory.
 * The CPU decoder (codec/rans.c) is the reference; both use the kernel
 * pieces of codec/rans_kernel.h, so they accept and reject the same
 * payloads.
 *
 * Usage: mfs_rans_gpu_open() once per thread that decodes (the context owns
 * a CUDA stream and grows device scratch to the largest batch seen);
 * mfs_rans_gpu_decode() per batch; mfs_rans_gpu_close().
 *
 * How it runs: one thread block (256 threads, 8 warps) per chunk.  Thread 0
 * checks the payload header and each rANS plane's fields; the block fills
 * the plane's 2^P-entry table in shared memory; each warp decodes whole
 * lane groups (32 lanes = 32 threads, one word stream: a ballot and a
 * population count give each lane its word), writing symbols to device
 * scratch; then the block merges the planes (RAW ones read in place,
 * CONST ones by value) into the chunk's bytes.
 *
 * Key verification (how a wrong byte cannot pass).  The decoder's own
 * checks (every field, stream lengths consumed exactly, every lane's final
 * state 2^16) catch nearly every damaged rANS stream but cannot catch a
 * damaged RAW plane.  So a chunk given its key (the store's chunk key: the
 * XXH3-128 of the raw bytes, canonical form) and a host buffer is copied
 * back and the host computes the XXH3-128 of exactly the bytes it
 * received and compares it with the key: a chunk whose bytes differ from
 * the ingested ones in any byte gets MFS_E_CORRUPT (a false pass needs a
 * 128-bit collision), and the caller never sees a host byte that was not
 * checked.  This is the mount's path (it needs host bytes anyway).  Bytes
 * kept on the device alone are checked only by the decoder's own checks:
 * a caller that must not use an unchecked device byte asks for the copy
 * (it costs one device-to-host copy of the raw bytes).
 *
 * Module convention: int return, 0 or a negative code from codec/err.h;
 * per-chunk results in mfs_rans_gpu_chunk.status.
 */
#ifndef MFS_RANS_CUDA_H
#define MFS_RANS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mfs_rans_gpu mfs_rans_gpu;

/* One chunk of a batch. */
typedef struct mfs_rans_gpu_chunk {
	const void *src; /* device: the rans payload */
	size_t src_len;
	void *dst;	/* device: dst_len bytes written on success */
	size_t dst_len; /* the chunk's raw length (at most MFS_CHUNK_MAX) */
	void
	    *host_copy; /* host, optional: dst_len bytes, the decoded chunk copied back */
	const uint8_t *key; /* optional, with host_copy: 16 bytes, XXH3-128 canonical */
	int status; /* out: 0, MFS_E_CORRUPT (payload or key), or the batch's error */
} mfs_rans_gpu_chunk;

/**
 * Open a decoding context on CUDA device @p device.
 * @param[out] out  owned by the caller; free with mfs_rans_gpu_close()
 * @return 0; MFS_E_UNSUPPORTED when there is no such device (or no driver:
 *         the CPU decoder is the fallback); -EIO on another driver error;
 *         -ENOMEM
 */
int mfs_rans_gpu_open(int device, mfs_rans_gpu **out);

/** Close a context (frees its stream and device scratch); NULL is a no-op. */
void mfs_rans_gpu_close(mfs_rans_gpu *g);

/**
 * Decode @p n chunks on the device and wait for them.  @p chunks is the
 * caller's (host memory); its src and dst pointers are device memory that
 * must not overlap.  Device scratch grows (cudaMalloc) only when a batch
 * needs more than any before it.
 * @return 0 when the batch ran (each chunk's status says how it went, and
 *         a chunk's bytes are valid only where its status is 0); -ENOMEM
 *         when device scratch cannot be had; -EIO on a driver error (every
 *         status is set to it); MFS_E_INVAL for a dst_len over
 *         MFS_CHUNK_MAX or a key without a host copy
 */
int mfs_rans_gpu_decode(mfs_rans_gpu *g, mfs_rans_gpu_chunk *chunks, size_t n);

/** The device's name ("NVIDIA H100 80GB HBM3"); static per context. */
const char *mfs_rans_gpu_device_name(const mfs_rans_gpu *g);

/**
 * Device scratch mfs_rans_gpu_decode() needs for a chunk of @p dst_len raw
 * bytes (a batch needs the sum over its chunks): what a caller bounding
 * the device memory of decoding counts besides its own buffers.
 */
size_t mfs_rans_gpu_scratch_bound(size_t dst_len);

/**
 * The device's memory (cudaMemGetInfo).
 * @param[out] free_bytes, total_bytes
 * @return 0 or -EIO
 */
int mfs_rans_gpu_mem_info(mfs_rans_gpu *g, size_t *free_bytes, size_t *total_bytes);

/*
 * Memory and copies for the callers that stage a batch (fs/batch.c): device
 * buffers (cudaMalloc), pinned host buffers (cudaMallocHost, so copies to
 * and from them run at the bus's speed) and copies queued on the context's
 * stream, so they are ordered with its decodes.  Each buffer is freed with
 * its own call (NULL is a no-op there), on the context that allocated it.
 */

/** @return 0, or -ENOMEM (*out NULL) */
int mfs_rans_gpu_alloc(mfs_rans_gpu *g, size_t size, void **out);
void mfs_rans_gpu_free(mfs_rans_gpu *g, void *dev);
/** @return 0, or -ENOMEM (*out NULL) */
int mfs_rans_gpu_host_alloc(mfs_rans_gpu *g, size_t size, void **out);
void mfs_rans_gpu_host_free(mfs_rans_gpu *g, void *host);

/**
 * Queue a copy of @p n bytes from host @p src to device @p dst on the
 * context's stream (a later mfs_rans_gpu_decode() sees them; a pageable
 * @p src is copied before the call returns, a pinned one may still be
 * read until mfs_rans_gpu_sync()).
 * @return 0 or -EIO
 */
int mfs_rans_gpu_upload(mfs_rans_gpu *g, void *dst, const void *src, size_t n);

/** Wait for everything queued on the context's stream. @return 0 or -EIO */
int mfs_rans_gpu_sync(mfs_rans_gpu *g);

/**
 * Whether @p p is device memory (or managed memory) the context's device
 * can write: a caller's destination is checked with this before a decode
 * writes into it.
 * @return 1 or 0
 */
int mfs_rans_gpu_is_device_ptr(mfs_rans_gpu *g, const void *p);

#ifdef __cplusplus
}
#endif

#endif
