/*
 * fuzz_onnx.c - libFuzzer harness for the ONNX initializer finder.  The
 * input is a whole file, read through a positioned reader over an
 * exact-size copy (so ASan sees any read past it).  The parser must never
 * crash or leak, must answer 0 or one of its documented codes with a
 * message, and what it accepts must be a header whose spans tile the file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_tensorfile.h"
#include "onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	mfs_preader r;
	mfs_preader_mem(&r, copy, size);
	mfs_st_header h;
	mfs_errmsg err = {0};
	int rc = mfs_onnx_parse(&r, &h, "fuzz.onnx", &err);
	if (rc) {
		FUZZ_ASSERT(rc == MFS_E_FORMAT || rc == MFS_E_UNSUPPORTED ||
			    rc == MFS_E_TOOBIG || rc == -ENOMEM);
		FUZZ_ASSERT(rc == -ENOMEM || err.msg[0]);
		FUZZ_ASSERT(h.tensors == NULL && h.n_tensors == 0);
	} else {
		fuzz_check_header(&h);
		mfs_st_header_free(&h);
	}
	free(copy);
	return 0;
}
