/* zstd: libzstd single-frame payload; for headers, JSON, tokenizers, fallback. */
#include "codec_internal.h"

#include <zstd_errors.h>

#include <errno.h>

#define MFS_ZSTD_DEFAULT_LEVEL 3

static size_t zstd_bound(size_t raw_len)
{
	return ZSTD_compressBound(raw_len);
}

static int zstd_encode(const mfs_encode_params *p, const void *src, size_t src_len, void *dst,
		       size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws)
{
	ZSTD_CCtx *cctx = mfs_codec_ws_cctx(ws);
	if (!cctx)
		return -ENOMEM;
	int level = p->zstd_level ? p->zstd_level : MFS_ZSTD_DEFAULT_LEVEL;
	size_t n = ZSTD_compressCCtx(cctx, dst, dst_cap, src, src_len, level);
	if (ZSTD_isError(n))
		return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? MFS_E_NOSPACE
									   : MFS_E_INVAL;
	*dst_len = n;
	return 0;
}

/** Decode a zstd frame of exactly @p dst_len bytes (codec_internal.h). */
int mfs_zstd_frame_decode(const void *src, size_t src_len, void *dst, size_t dst_len,
			  mfs_codec_ws *ws)
{
	ZSTD_DCtx *dctx = mfs_codec_ws_dctx(ws);
	if (!dctx)
		return -ENOMEM;
	/* The frame must say exactly dst_len, so a short frame is caught too. */
	unsigned long long fsz = ZSTD_getFrameContentSize(src, src_len);
	if (fsz != dst_len)
		return MFS_E_CORRUPT;
	size_t n = ZSTD_decompressDCtx(dctx, dst, dst_len, src, src_len);
	if (ZSTD_isError(n) || n != dst_len)
		return MFS_E_CORRUPT;
	return 0;
}

static int zstd_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	return mfs_zstd_frame_decode(rq->src, rq->src_len, rq->dst, rq->dst_len, ws);
}

const mfs_codec mfs_codec_zstd = {
	.id = MFS_CODEC_ZSTD,
	.name = "zstd",
	.flags = 0,
	.bound = zstd_bound,
	.encode = zstd_encode,
	.decode = zstd_decode,
};
