/* raw: stored as is, for incompressible bytes. */
#include "codec_internal.h"

#include <string.h>

static size_t raw_bound(size_t raw_len)
{
	return raw_len;
}

static int raw_encode(const mfs_encode_params *p, const void *src, size_t src_len, void *dst,
		      size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws)
{
	if (dst_cap < src_len)
		return MFS_E_NOSPACE;
	memcpy(dst, src, src_len);
	*dst_len = src_len;
	return 0;
}

static int raw_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	if (rq->src_len != rq->dst_len)
		return MFS_E_CORRUPT;
	memcpy(rq->dst, rq->src, rq->dst_len);
	return 0;
}

const mfs_codec mfs_codec_raw = {
	.id = MFS_CODEC_RAW,
	.name = "raw",
	.flags = 0,
	.bound = raw_bound,
	.encode = raw_encode,
	.decode = raw_decode,
};
