/*
 * gguf.h - the tensors of a GGUF file (llama.cpp's weights format), as the
 * spans of an mfs_st_header (safetensors.h), so mfs_st_spans() plans their
 * chunks as it does a safetensors file's.
 *
 * The format (little-endian, versions 2 and 3): "GGUF", u32 version, u64
 * tensor count, u64 metadata count; the metadata key/value pairs (a key
 * string, a u32 type, a value: a scalar, a string (u64 length + bytes) or an
 * array (u32 element type, u64 count, elements)); the tensor infos (name
 * string, u32 dimension count, u64 dimensions, fastest first, u32 ggml type,
 * u64 offset in the data section); padding to the alignment
 * ("general.alignment", u32, a power of two; 32 when absent); the data
 * section.
 *
 * The metadata is skipped, not kept (only general.alignment is read), with
 * every length checked against the file; the tensor infos are read, a piece
 * at a time through a 64 KiB window, so a 10 GB file is never loaded.
 *
 * Checks (MFS_E_FORMAT, naming the file and the tensor): the magic; counts
 * that the bytes left could hold; every string and array inside the file
 * and within MFS_GGUF_HEADER_MAX; known value types; arrays nested at most
 * MFS_GGUF_DEPTH_MAX deep; the alignment a power of two; at most
 * MFS_ST_MAX_DIMS dimensions; element counts and byte sizes without
 * overflow; a block type's first dimension a whole number of blocks;
 * offsets aligned; each tensor's bytes inside the file; no two tensors
 * sharing a byte; no name twice.  A ggml type this module does not know, a
 * version other than 2 and 3 (or a big-endian file) is MFS_E_UNSUPPORTED.
 *
 * The result: one tensor per GGUF tensor.  F32, F16, BF16, F64 and the
 * integer types keep their dtype, with the shape written slowest first as
 * safetensors does (GGUF lists dimensions fastest first); block-quantized
 * types (Q8_0, Q4_K, IQ2_XS, ...) become U8 spans of their bytes, shape
 * [bytes] (no codec here reads their block structure: see docs/formats.md).
 * Sorted by begin; header_len is 0 and data_start the aligned start of the
 * data section; the padding between tensors is gaps.
 *
 * Memory: a 64 KiB window, and the tensor array and names, which grow as
 * tensor infos are read (at most MFS_GGUF_TENSORS_MAX tensors of names up
 * to MFS_GGUF_NAME_MAX bytes; about 170 bytes per 24 bytes of header at
 * worst), never sized by a count the file claims.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_GGUF_H
#define MFS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "preader.h"
#include "safetensors.h"

#define MFS_GGUF_HEADER_MAX    ((uint64_t)512 << 20) /* metadata + tensor infos */
#define MFS_GGUF_TENSORS_MAX   (1u << 20)
#define MFS_GGUF_NAME_MAX      255
#define MFS_GGUF_DEPTH_MAX     4 /* arrays of arrays */
#define MFS_GGUF_ALIGN_DEFAULT 32

/** 1 when @p first4 (a file's first bytes) is the GGUF magic; 0 otherwise. */
int mfs_gguf_is_gguf(const uint8_t first4[4]);

/**
 * ggml type @p type: its block size in elements and bytes, and the dtype its
 * span gets (MFS_DT_U8 for a block type).
 * @return 0; MFS_E_UNSUPPORTED for a type this module does not know
 */
int mfs_gguf_type_info(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes,
		       mfs_dtype *dtype);

/**
 * Find the tensors of a GGUF file.
 * @param[in]  src   the file (read a piece at a time; not kept)
 * @param[out] out   filled on success; release with mfs_st_header_free()
 *                   (the names share the tensor array's block); zeroed on
 *                   failure
 * @param[in]  what  the file's name for messages (may be NULL)
 * @param[out] err   optional message
 * @return 0; MFS_E_FORMAT; MFS_E_UNSUPPORTED; MFS_E_TOOBIG (a limit above);
 *         -ENOMEM; a read error
 */
int mfs_gguf_parse(const mfs_preader *src, mfs_st_header *out, const char *what,
		   mfs_errmsg *err);

#endif
