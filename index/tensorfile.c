/*
 * tensorfile.c - pick the parser for a weights file (see tensorfile.h).
 */
#include "tensorfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "gguf.h"
#include "onnx.h"
#include "preader.h"
#include "torchzip.h"

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n > k && !strcmp(s + n - k, suffix);
}

mfs_tensorfile_kind mfs_tensorfile_kind_of(const char *rel)
{
	if (ends_with(rel, ".safetensors"))
		return MFS_TF_SAFETENSORS;
	if (ends_with(rel, ".bin") || ends_with(rel, ".pt") || ends_with(rel, ".pth"))
		return MFS_TF_TORCH;
	if (ends_with(rel, ".gguf"))
		return MFS_TF_GGUF;
	if (ends_with(rel, ".onnx"))
		return MFS_TF_ONNX;
	return MFS_TF_NONE;
}

const char *mfs_tensorfile_kind_name(mfs_tensorfile_kind kind)
{
	switch (kind) {
	case MFS_TF_SAFETENSORS:
		return "safetensors";
	case MFS_TF_TORCH:
		return "PyTorch zip";
	case MFS_TF_GGUF:
		return "GGUF";
	case MFS_TF_ONNX:
		return "ONNX";
	default:
		return "other";
	}
}

static int parse_safetensors(int fd, uint64_t size, const char *what, mfs_st_header *out,
			     mfs_errmsg *err)
{
	uint8_t first8[8];
	uint64_t hlen;
	int rc;
	if (size < 8)
		return mfs_err(err, MFS_E_FORMAT,
			       "%s: %llu bytes is too short for a safetensors file", what,
			       (unsigned long long)size);
	if ((rc = mfs_pread_full(fd, first8, 8, 0, MFS_E_FORMAT, NULL)) < 0 ||
	    (rc = mfs_st_header_len(first8, size, &hlen, what, err)) < 0)
		return rc;
	char *json = malloc(hlen + 1);
	if (!json)
		return -ENOMEM;
	if ((rc = mfs_pread_full(fd, json, hlen, 8, MFS_E_FORMAT, NULL)) == 0)
		rc = mfs_st_parse(json, hlen, size, out, what, err);
	free(json);
	return rc < 0 ? rc : 1;
}

int mfs_tensorfile_parse(int fd, uint64_t size, mfs_tensorfile_kind kind,
			 const char *what, mfs_st_header *out, mfs_errmsg *err)
{
	mfs_preader r;
	uint8_t first4[4];
	int rc;
	memset(out, 0, sizeof *out);
	if (kind == MFS_TF_SAFETENSORS)
		return parse_safetensors(fd, size, what, out, err);
	if (kind != MFS_TF_TORCH && kind != MFS_TF_GGUF && kind != MFS_TF_ONNX)
		return 0;
	if (size < 4)
		return 0;
	if ((rc = mfs_pread_full(fd, first4, 4, 0, MFS_E_FORMAT, NULL)) < 0)
		return mfs_err(err, rc, "%s: cannot read: %s", what, mfs_strerror(rc));
	mfs_preader_fd(&r, fd, size);
	if (kind == MFS_TF_TORCH) {
		if (first4[0] == 0x80)
			return mfs_err(
			    err, MFS_E_UNSUPPORTED,
			    "%s: a legacy (pre-zip) torch pickle: its tensors cannot "
			    "be found without running it",
			    what);
		if (!mfs_tz_is_zip(first4))
			return 0;
		rc = mfs_tz_parse(&r, out, what, err);
	} else if (kind == MFS_TF_GGUF) {
		rc = mfs_gguf_parse(&r, out, what, err);
	} else {
		rc = mfs_onnx_parse(&r, out, what, err);
	}
	return rc < 0 ? rc : 1;
}
