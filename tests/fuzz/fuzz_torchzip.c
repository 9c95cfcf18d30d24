/*
 * fuzz_torchzip.c - libFuzzer harness for the torch.save zip parser.  The
 * checks are fuzz_tensorfile.h's (fuzz_tensorfile_one).
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_tensorfile.h"
#include "torchzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_tensorfile_one(data, size, mfs_tz_parse, "fuzz.pt");
}
