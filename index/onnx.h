/*
 * onnx.h - the weights of an ONNX model file (*.onnx) as the spans of an
 * mfs_st_header (safetensors.h): each initializer of the main graph whose
 * values are inline `raw_data` becomes a tensor span over exactly those
 * bytes, so mfs_st_spans() plans their chunks as it does a safetensors
 * file's.
 *
 * The file is a protobuf ModelProto.  Only the path to the initializers is
 * read: ModelProto.graph (field 7) -> GraphProto.initializer (field 5) ->
 * TensorProto dims (1), data_type (2), name (8), raw_data (9),
 * external_data (13), data_location (14).  Every other field, at every
 * level, is skipped by its wire type, with its length checked against the
 * message that holds it; nodes, attributes and subgraphs are never decoded.
 * Reads go through a 64 KiB window: the file is never loaded.
 *
 * An initializer held another way (float_data and the other typed fields,
 * external data files, a data_type with no dtype here) is not a span: its
 * bytes stay in a gap and are stored as plain bytes.  Checks (MFS_E_FORMAT):
 * varints of at most 10 bytes, lengths inside the enclosing message, no
 * groups (wire types 3, 4), at most MFS_ST_MAX_DIMS dimensions,
 * non-negative dimensions whose element count times the dtype's size is the
 * raw_data length, one graph and one raw_data per tensor, no name twice,
 * names at most MFS_ONNX_NAME_MAX bytes (MFS_E_TOOBIG), at most
 * MFS_ONNX_TENSORS_MAX spans (MFS_E_TOOBIG).  A file with no inline
 * initializer, or whose first one starts before byte 8, is
 * MFS_E_UNSUPPORTED (nothing worth laying out).
 *
 * The result: tensors named as the initializers, dtype from data_type,
 * shape from dims, sorted by begin; header_len 0 and data_start the first
 * span's offset.  Memory: the window, and the tensor array and names, which
 * grow with the initializers read, never with a count the file claims.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_ONNX_H
#define MFS_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "preader.h"
#include "safetensors.h"

#define MFS_ONNX_NAME_MAX    255
#define MFS_ONNX_TENSORS_MAX (1u << 20)

/**
 * The dtype of ONNX TensorProto.DataType @p data_type, or MFS_DT_UNKNOWN
 * for one without a fixed-size dtype here (STRING, COMPLEX, INT4, ...).
 */
mfs_dtype mfs_onnx_dtype(uint64_t data_type);

/**
 * Find the inline initializers of an ONNX model.
 * @param[in]  src   the file (read a piece at a time; not kept)
 * @param[out] out   filled on success; release with mfs_st_header_free();
 *                   zeroed on failure
 * @param[in]  what  the file's name for messages (may be NULL)
 * @param[out] err   optional message
 * @return 0; MFS_E_FORMAT; MFS_E_UNSUPPORTED; MFS_E_TOOBIG; -ENOMEM; a
 *         read error
 */
int mfs_onnx_parse(const mfs_preader *src, mfs_st_header *out, const char *what,
		   mfs_errmsg *err);

#endif
