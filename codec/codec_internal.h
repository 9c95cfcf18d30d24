/*
 * codec_internal.h - what codec implementations share; not a public header.
 */
#ifndef MFS_CODEC_INTERNAL_H
#define MFS_CODEC_INTERNAL_H

#include <zstd.h>

#include "codec.h"

/* Codec descriptors, one per implementation file. */
extern const mfs_codec mfs_codec_raw;
extern const mfs_codec mfs_codec_zstd;
extern const mfs_codec mfs_codec_bitplane_huff;
extern const mfs_codec mfs_codec_xor_delta;
extern const mfs_codec mfs_codec_quant_residual;

/** The workspace's zstd contexts, created on first use; NULL on OOM. */
ZSTD_CCtx *mfs_codec_ws_cctx(mfs_codec_ws *ws);
ZSTD_DCtx *mfs_codec_ws_dctx(mfs_codec_ws *ws);

/**
 * Decode one zstd frame that must hold exactly @p dst_len bytes (the zstd
 * codec's decoder; also a stage of other codecs).
 * @return 0, MFS_E_CORRUPT, -ENOMEM
 */
int mfs_zstd_frame_decode(const void *src, size_t src_len, void *dst, size_t dst_len,
			  mfs_codec_ws *ws);

#endif
