/*
 * fuzz_onnx.c - libFuzzer harness for the ONNX initializer finder.  The
 * checks are fuzz_tensorfile.h's (fuzz_tensorfile_one).
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_tensorfile.h"
#include "onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_tensorfile_one(data, size, mfs_onnx_parse, "fuzz.onnx");
}
