/*
 * tensorfile.h - which weights container a file is, and its tensors as the
 * spans of an mfs_st_header, whichever container it is: safetensors
 * (safetensors.h), a torch.save zip (torchzip.h), GGUF (gguf.h) or ONNX
 * (onnx.h).  Ingest
 * asks this module, so a tensor of the same weights is cut into the same
 * chunks in every container that holds it.
 *
 * The kind comes from the file's name (the name the repo gives it), then
 * its first bytes decide whether the parser is tried at all: a ".bin" that
 * is not a zip (a tokenizer, a fastText model) is silently not a tensor
 * file, while a zip or pickle that the torch parser refuses comes back as
 * an error the caller reports before storing the file as plain bytes.
 *
 * Module convention: int return, 0 or a negative code from err.h; the
 * parse call also returns 1.
 */
#ifndef MFS_TENSORFILE_H
#define MFS_TENSORFILE_H

#include <stdint.h>

#include "err.h"
#include "safetensors.h"

typedef enum mfs_tensorfile_kind {
	MFS_TF_NONE = 0,    /* not a weights container this module reads */
	MFS_TF_SAFETENSORS, /* *.safetensors */
	MFS_TF_TORCH,	    /* *.bin, *.pt, *.pth: a torch.save zip, maybe */
	MFS_TF_GGUF,	    /* *.gguf */
	MFS_TF_ONNX,	    /* *.onnx: inline initializers (onnx.h) */
} mfs_tensorfile_kind;

/** The kind a file's name (a path inside its repo) calls for. */
mfs_tensorfile_kind mfs_tensorfile_kind_of(const char *rel);

/** "safetensors", "PyTorch zip", "GGUF", "ONNX" or "other". Static string. */
const char *mfs_tensorfile_kind_name(mfs_tensorfile_kind kind);

/**
 * The tensors of an open file of kind @p kind.
 * @param[in]  fd    the file, read with pread (never loaded whole)
 * @param[in]  size  its size
 * @param[in]  what  its name for messages
 * @param[out] out   on 1: filled, release with mfs_st_header_free();
 *                   otherwise zeroed
 * @param[out] err   on failure: why the file is not laid out as tensors
 * @return 1 (parsed); 0 (not this kind after all: a .bin that is neither a
 *         zip nor a pickle, or MFS_TF_NONE: nothing to report); a negative
 *         code from the parser (MFS_E_FORMAT, MFS_E_UNSUPPORTED,
 *         MFS_E_TOOBIG, -ENOMEM, a read error) with a message
 */
int mfs_tensorfile_parse(int fd, uint64_t size, mfs_tensorfile_kind kind,
			 const char *what, mfs_st_header *out, mfs_errmsg *err);

#endif
