/*
 * safetensors.h - parse and check a safetensors header, and plan the file's
 * extents (tensor chunks and the bytes between them).
 *
 * File format: u64 little-endian N, then N bytes of JSON header, then the
 * data section.  The header maps tensor names to {"dtype", "shape",
 * "data_offsets": [begin, end]} (offsets relative to the data section) and
 * may hold "__metadata__" (string -> string).
 *
 * Checks (each failure is MFS_E_FORMAT with a message naming the tensor):
 *   header length within the file and at most MFS_ST_HEADER_MAX;
 *   valid JSON object; known dtype; shape entries non-negative integers;
 *   nelem * bits computed without overflow and a whole number of bytes equal
 *   to end - begin; begin <= end; end within the data section; tensors do
 *   not overlap; no duplicate names; __metadata__ values are strings.
 * Gaps between tensors and bytes after the last one are allowed (they are
 * kept as "gap" spans so the file is rebuilt exactly).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_SAFETENSORS_H
#define MFS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

#define MFS_ST_HEADER_MAX ((uint64_t)100 << 20) /* 100 MB, as safetensors itself */
#define MFS_ST_MAX_DIMS 16

typedef struct mfs_st_tensor {
	char *name;              /* owned by the mfs_st_header */
	mfs_dtype dtype;
	uint32_t ndim;
	uint64_t shape[MFS_ST_MAX_DIMS];
	uint64_t begin, end;     /* absolute file offsets: 8 + N + data_offsets */
} mfs_st_tensor;

typedef struct mfs_st_header {
	uint64_t header_len;     /* N */
	uint64_t data_start;     /* 8 + N */
	uint64_t file_size;
	size_t n_tensors;
	mfs_st_tensor *tensors;  /* sorted by begin offset */
} mfs_st_header;

/**
 * Read the first 8 bytes of a file and return N, checked against the file
 * size and MFS_ST_HEADER_MAX.
 * @param[in] first8     the file's first 8 bytes
 * @param[in] file_size  the file's size
 * @param[in] what       file name for messages
 */
int mfs_st_header_len(const uint8_t first8[8], uint64_t file_size, uint64_t *out,
		      const char *what, mfs_errmsg *err);

/**
 * Parse and check the JSON header.
 * @param[in]  json       the N header bytes (need not be NUL-terminated)
 * @param[in]  file_size  total file size, for the bounds checks
 * @param[out] out        filled; release with mfs_st_header_free()
 * @param[in]  what       file name for messages
 * @return 0, MFS_E_FORMAT (with message), -ENOMEM
 */
int mfs_st_parse(const char *json, uint64_t header_len, uint64_t file_size,
		 mfs_st_header *out, const char *what, mfs_errmsg *err);

/** Free what mfs_st_parse allocated; the struct itself is the caller's. */
void mfs_st_header_free(mfs_st_header *h);

/*
 * The file as an ordered list of spans that tile it: tensor spans (one per
 * tensor with at least one byte) and gap spans (the 8-byte length + header,
 * padding between tensors, trailing bytes).  Each span is later cut into
 * chunks aligned to its start.
 */
typedef struct mfs_st_span {
	uint64_t off, len;
	int tensor;              /* index into tensors[], or -1 for a gap */
} mfs_st_span;

/**
 * Plan spans for a parsed header.
 * @param[out] spans  malloc'd array owned by the caller (free())
 */
int mfs_st_spans(const mfs_st_header *h, mfs_st_span **spans, size_t *n_spans);

#endif
