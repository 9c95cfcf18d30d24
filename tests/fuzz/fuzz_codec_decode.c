/*
 * fuzz_codec_decode - hostile payloads for the codec decoders that ingest
 * writes: byte 0 picks raw / zstd / bitplane-huff (mod 3), the rest is the
 * payload.  Each payload is decoded into every fixed destination size below
 * and into the size the payload itself claims (zstd frame content size,
 * bitplane element count), so the deep paths are reached too.  Any result
 * is fine except a crash, a sanitizer report, a write past the destination,
 * or an error code other than MFS_E_CORRUPT.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec.h"

static mfs_codec_ws *ws;
static uint8_t *dst;
#define DST_MAX (1u << 20)
#define GUARD 64

static const size_t fixed_sizes[] = {0, 1, 2, 3, 7, 64, 1000, 4096, 65536};

static void decode_into(mfs_codec_id id, const uint8_t *src, size_t n, size_t dst_len)
{
	if (dst_len > DST_MAX)
		return;
	memset(dst + dst_len, 0xa5, GUARD);
	int rc = mfs_codec_decode_plain(id, src, n, dst, dst_len, ws);
	if (rc != 0 && rc != MFS_E_CORRUPT && rc != -ENOMEM)
		__builtin_trap();
	for (size_t i = 0; i < GUARD; i++)
		if (dst[dst_len + i] != 0xa5)
			__builtin_trap(); /* wrote past dst_len */
	if (rc == 0 && id == MFS_CODEC_RAW && (n != dst_len || memcmp(dst, src, n) != 0))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const mfs_codec_id ids[] = {MFS_CODEC_RAW, MFS_CODEC_ZSTD,
					   MFS_CODEC_BITPLANE_HUFF};
	if (!ws) {
		if (mfs_codec_ws_create(&ws))
			return 0;
		dst = malloc(DST_MAX + GUARD);
	}
	if (size < 1)
		return 0;
	mfs_codec_id id = ids[data[0] % 3];
	size_t n = size - 1;
	/* exact-size copy so ASan sees any read past the payload */
	uint8_t *src = malloc(n ? n : 1);
	memcpy(src, data + 1, n);
	for (size_t i = 0; i < sizeof fixed_sizes / sizeof fixed_sizes[0]; i++)
		decode_into(id, src, n, fixed_sizes[i]);
	decode_into(id, src, n, n); /* raw's only valid size; others' too-easy one */
	if (id == MFS_CODEC_ZSTD) {
		unsigned long long fsz = ZSTD_getFrameContentSize(src, n);
		if (fsz != ZSTD_CONTENTSIZE_UNKNOWN && fsz != ZSTD_CONTENTSIZE_ERROR)
			decode_into(id, src, n, (size_t)(fsz < DST_MAX ? fsz : DST_MAX + 1));
	} else if (id == MFS_CODEC_BITPLANE_HUFF && n >= 8) {
		/* the element count and dtype from the payload's own header */
		size_t cnt = (size_t)src[4] | (size_t)src[5] << 8 | (size_t)src[6] << 16 |
			     (size_t)src[7] << 24;
		unsigned es = mfs_dtype_bits((mfs_dtype)src[1]) / 8;
		if (es && cnt <= DST_MAX / es)
			decode_into(id, src, n, cnt * es);
	}
	free(src);
	return 0;
}
