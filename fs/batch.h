/*
 * batch.h - decode work as batches of chunks, and the backends that take them.
 *
 * A batch is an array of mfs_batch_chunk: each names a chunk (its key), its
 * stored payload and codec, its geometry, its references resolved to bytes,
 * and where its raw bytes go.  Whoever knows which chunks come next (the
 * mount's read-ahead, fs/reader.c; a library read, lib/modelfs.c) fills a
 * batch and hands all of it over at once; a backend sets each chunk's
 * status, so one damaged chunk fails that chunk alone.
 *
 * Backends:
 *   - CPU: mfs_batch_decode_one() decodes and verifies one chunk; the worker
 *     pools that take batches (the cache's prefetch workers, fs/cache.h
 *     mfs_cache_prefetch_batch; libmodelfs's decoding threads) claim a
 *     batch's chunks one by one and run them in parallel.
 *     mfs_batch_decode_cpu() runs a whole batch on the calling thread.
 *   - GPU (mfs_gpu_backend, only in a build with gpu/: MFS_HAVE_CUDA): takes
 *     the chunks of a batch it can decode (codec rans, no references), copies
 *     their payloads to the device, decodes them there (gpu/rans_cuda.h),
 *     copies the bytes back and checks each chunk's key (XXH3-128) on the
 *     host, so no byte it hands out is unchecked.  The chunks it does not
 *     take (other codecs, or everything once the device failed) keep status
 *     MFS_E_UNSUPPORTED: the caller decodes those on the CPU.  Device memory
 *     is bounded by a budget (mount.conf gpu_memory): a batch larger than it
 *     runs in parts.  A driver error, or device memory that cannot be had,
 *     turns the backend off for good with one log line; from then on it takes
 *     nothing and every chunk goes to the CPU, so a read never fails for it.
 *     A chunk the device finds damaged is also left to the CPU, whose decoder
 *     is the reference and gives the verdict (MFS_E_CORRUPT there).
 *
 * Every decoded chunk is verified against its key before its status is 0.
 *
 * Threads: mfs_batch_decode_* are reentrant (one workspace per thread); a
 * mfs_gpu_backend may be shared by threads (one batch at a time runs on the
 * device, the others wait).
 *
 * Module convention: int return, 0 or a negative code from err.h; a
 * chunk's result in mfs_batch_chunk.status.
 */
#ifndef MFS_BATCH_H
#define MFS_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "store.h"

/* One chunk of a batch; everything it points to is borrowed for the call. */
typedef struct mfs_batch_chunk {
	mfs_chunk_key key;   /* the XXH3-128 its raw bytes must hash to */
	mfs_codec_id codec;  /* how its payload is coded */
	const void *payload; /* the stored payload, read from its pack into a
				buffer of the caller's (mfs_chunk_payload_read) */
	size_t payload_len;
	const mfs_chunk_geom *geom; /* NULL when the store recorded none */
	const mfs_ref_data *refs;   /* its references' bytes, n_refs (NULL when 0) */
	size_t n_refs;
	size_t raw_len; /* the decoded length (the chunk record's) */
	void *dst;	/* where raw_len bytes go: host memory, or device
			   memory for mfs_gpu_backend_decode_device */
	size_t dst_cap; /* bytes at dst; less than raw_len: MFS_E_NOSPACE */
	int status;	/* out: 0 (decoded, verified), MFS_E_CORRUPT,
			   MFS_E_NOSPACE, MFS_E_CODEC, -ENOMEM, or
			   MFS_E_UNSUPPORTED (a GPU backend did not take it) */
} mfs_batch_chunk;

/**
 * Fill @p c from chunk record @p v of @p key: codec, payload (v->payload:
 * NULL until the caller loads it and sets c->payload), geometry, references
 * (@p refs: v->n_refs resolved ranges, borrowed), raw length, and the
 * destination; status MFS_E_UNSUPPORTED (not decoded yet).
 */
void mfs_batch_chunk_set(mfs_batch_chunk *c, const mfs_chunk_key *key,
			 const mfs_chunk_view *v, const mfs_ref_data *refs, void *dst,
			 size_t dst_cap);

/**
 * Whether a GPU backend decodes chunks of codec @p codec with @p n_refs
 * references: rans without references.
 * @return 1 or 0
 */
int mfs_batch_gpu_can(mfs_codec_id codec, size_t n_refs);

/**
 * CPU backend, one chunk: decode @p c into c->dst and verify its key.
 * Writes nothing outside [dst, dst + raw_len).
 * @return c->status: 0, MFS_E_CORRUPT (a decode error or a key mismatch:
 *         the bytes at dst must not be used), MFS_E_NOSPACE (dst_cap <
 *         raw_len: nothing written), MFS_E_CODEC (an unknown codec), -ENOMEM
 */
int mfs_batch_decode_one(mfs_batch_chunk *c, mfs_codec_ws *ws);

/**
 * CPU backend, a whole batch on the calling thread: mfs_batch_decode_one()
 * of each chunk whose status is MFS_E_UNSUPPORTED (not decoded yet); chunks
 * already decoded (by a GPU backend) are left as they are.
 * @return the number of chunks whose status is not 0 afterwards
 */
size_t mfs_batch_decode_cpu(mfs_batch_chunk *c, size_t n, mfs_codec_ws *ws);

/* ---- the GPU backend ---- */

typedef struct mfs_gpu_backend mfs_gpu_backend;

/** Told one line when the backend turns itself off (the line is the call's). */
typedef void (*mfs_batch_log_fn)(void *ud, const char *line);

/* The default device-memory budget: min(1 GiB, an eighth of the device),
 * so the model being loaded keeps the rest. */
#define MFS_GPU_MEMORY_DEFAULT_MAX ((uint64_t)1 << 30)
/* The smallest budget accepted: one 4 MiB chunk with its payload and scratch. */
#define MFS_GPU_MEMORY_MIN ((uint64_t)16 << 20)

/**
 * Open the GPU backend on CUDA device 0.
 * @param[in]  budget  device bytes decoding may use (payloads, decoded bytes,
 *                     decoder scratch); 0: MFS_GPU_MEMORY_DEFAULT_MAX or an
 *                     eighth of the device's memory, whichever is less; at
 *                     least MFS_GPU_MEMORY_MIN
 * @param[in]  log     optional: told when the backend turns itself off
 * @param[out] out     close with mfs_gpu_backend_close()
 * @param[out] why     on failure, one sentence saying why there is no GPU
 *                     decode ("this build has no GPU decoder ...", "no CUDA
 *                     device or driver ..."), NUL-terminated, cut to @p why_cap
 * @return 0; MFS_E_UNSUPPORTED (a build without CUDA, no device, no driver);
 *         -EIO (another driver error); -ENOMEM
 */
int mfs_gpu_backend_open(uint64_t budget, mfs_batch_log_fn log, void *log_ud,
			 mfs_gpu_backend **out, char *why, size_t why_cap);

/** Close the backend (its device memory is freed); NULL is a no-op. */
void mfs_gpu_backend_close(mfs_gpu_backend *g);

/** The device's name ("NVIDIA H100 80GB HBM3"); owned by @p g. */
const char *mfs_gpu_backend_name(const mfs_gpu_backend *g);

/** The device-memory budget in bytes. */
uint64_t mfs_gpu_backend_budget(const mfs_gpu_backend *g);

/**
 * Whether the backend still takes chunks (0 once a failure turned it off,
 * or for NULL).
 * @return 1 or 0
 */
int mfs_gpu_backend_usable(const mfs_gpu_backend *g);

/* Counters since open (a snapshot). */
typedef struct mfs_gpu_backend_stats {
	uint64_t batches;     /* device batches run (a batch over the budget: several) */
	uint64_t chunks;      /* chunks decoded and verified on the device */
	uint64_t bytes;	      /* their raw bytes */
	uint64_t left_to_cpu; /* chunks a decode call left to the CPU */
	uint64_t corrupt;     /* chunks the device found damaged (left to the CPU) */
} mfs_gpu_backend_stats;

void mfs_gpu_backend_stats_get(mfs_gpu_backend *g, mfs_gpu_backend_stats *out);

/**
 * Decode the chunks of @p c that it can (mfs_batch_gpu_can, status
 * MFS_E_UNSUPPORTED, dst_cap >= raw_len) on the device into their HOST
 * destinations, each verified by its key on the host: their status becomes
 * 0.  Every other chunk keeps its status (MFS_E_UNSUPPORTED: decode it on the
 * CPU).  @p g NULL takes nothing.
 */
void mfs_gpu_backend_decode(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t n);

/**
 * As mfs_gpu_backend_decode(), with DEVICE destinations (c->dst: device
 * memory of the backend's device, e.g. a CUDA tensor): only the payloads
 * cross the bus to the device; each chunk is then copied back to pinned host
 * memory and its key checked there, so a status of 0 means the device
 * bytes are the ingested ones.
 */
void mfs_gpu_backend_decode_device(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t n);

/**
 * Copy @p n host bytes to device memory @p dst (the chunks a caller decoded
 * on the CPU for a device destination), waiting for the copy.
 * @return 0, -EIO (the backend then turns itself off), MFS_E_UNSUPPORTED
 *         (@p g NULL)
 */
int mfs_gpu_backend_upload(mfs_gpu_backend *g, void *dst, const void *src, size_t n);

/**
 * Whether @p p is device memory of the backend's device.
 * @return 1 or 0 (also for @p g NULL)
 */
int mfs_gpu_backend_is_device_ptr(mfs_gpu_backend *g, const void *p);

#endif
