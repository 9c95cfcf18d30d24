/*
 * fuzz_quant_residual_roundtrip - quant-residual must give back every bit
 * of a chunk against any twin and any scales.  Input: 8 shaping bytes
 * (quant_fuzz.h: scheme kind, twin and scale dtypes, 16-bit type, shape,
 * the chunk; bit 0x80 of the first: a twin quantized from the tensor, else
 * any codes), then the data the values, codes and scales are cut from.
 */
#include "quant_fuzz.h"

static mfs_codec_ws *ws;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws && mfs_codec_ws_create(&ws))
		return 0;
	if (size < 8)
		return 0;
	qf_pair P;
	if (qf_make(&P, data, data + 8, size - 8, data[0] >> 7) == 0) {
		size_t len;
		uint8_t *enc = qf_encode(&P, ws, &len);
		uint8_t *out = malloc(2 * P.n + 1);
		if (qf_decode(&P, enc, len, 0, ws, out) != 0 ||
		    memcmp(out, P.v + 2 * P.e0, 2 * P.n) != 0)
			__builtin_trap();
		free(out);
		free(enc);
	}
	qf_free(&P);
	return 0;
}
