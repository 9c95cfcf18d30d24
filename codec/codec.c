#include "codec_internal.h"
#include "rans.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The registry: index = stable id.  A NULL slot is an id this build lacks. */
static const mfs_codec *const registry[MFS_CODEC__COUNT] = {
	[MFS_CODEC_RAW] = &mfs_codec_raw,
	[MFS_CODEC_ZSTD] = &mfs_codec_zstd,
	[MFS_CODEC_BITPLANE_HUFF] = &mfs_codec_bitplane_huff,
	[MFS_CODEC_RANS] = &mfs_codec_rans,
	[MFS_CODEC_XOR_DELTA] = &mfs_codec_xor_delta,
	[MFS_CODEC_QUANT_RESIDUAL] = &mfs_codec_quant_residual,
};

struct mfs_codec_ws {
	void *slot[MFS_WS_SLOTS];
	size_t slot_cap[MFS_WS_SLOTS];
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
};

const mfs_codec *mfs_codec_get(mfs_codec_id id)
{
	if ((unsigned)id >= MFS_CODEC__COUNT)
		return NULL;
	return registry[id];
}

const mfs_codec *mfs_codec_by_name(const char *name)
{
	for (unsigned i = 0; i < MFS_CODEC__COUNT; i++)
		if (registry[i] && strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

const char *mfs_codec_name(mfs_codec_id id)
{
	const mfs_codec *c = mfs_codec_get(id);
	return c ? c->name : "unknown";
}

int mfs_codec_encode(mfs_codec_id id, const mfs_encode_params *p, const void *src,
		     size_t src_len, void *dst, size_t dst_cap, size_t *dst_len,
		     mfs_codec_ws *ws)
{
	const mfs_codec *c = mfs_codec_get(id);
	if (!c)
		return MFS_E_CODEC;
	if (src_len > MFS_CHUNK_MAX)
		return MFS_E_TOOBIG;
	if ((c->flags & MFS_CODEC_NEEDS_REF) && (!p || p->n_refs == 0 || !p->refs))
		return MFS_E_INVAL;
	if (p && p->n_refs > MFS_REFS_MAX)
		return MFS_E_INVAL;
	static const mfs_encode_params defaults = {0};
	return c->encode(p ? p : &defaults, src, src_len, dst, dst_cap, dst_len, ws);
}

int mfs_codec_decode(mfs_codec_id id, const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	const mfs_codec *c = mfs_codec_get(id);
	if (!c)
		return MFS_E_CODEC;
	if (rq->dst_len > MFS_CHUNK_MAX || rq->n_refs > MFS_REFS_MAX ||
	    (rq->n_refs && !rq->refs))
		return MFS_E_CORRUPT;
	for (size_t i = 0; i < rq->n_refs; i++)
		if (!rq->refs[i].data && rq->refs[i].len)
			return MFS_E_CORRUPT;
	if ((c->flags & MFS_CODEC_NEEDS_REF) && rq->n_refs == 0)
		return MFS_E_CORRUPT; /* a delta without its base cannot be decoded */
	return c->decode(rq, ws);
}

int mfs_codec_decode_plain(mfs_codec_id id, const void *src, size_t src_len, void *dst,
			   size_t dst_len, mfs_codec_ws *ws)
{
	mfs_decode_req rq = {.src = src, .src_len = src_len, .dst = dst, .dst_len = dst_len};
	return mfs_codec_decode(id, &rq, ws);
}

const mfs_ref_data *mfs_decode_req_ref(const mfs_decode_req *rq, mfs_ref_role role)
{
	for (size_t i = 0; i < rq->n_refs; i++)
		if (rq->refs[i].role == role)
			return &rq->refs[i];
	return NULL;
}

size_t mfs_codec_bound_max(size_t raw_len)
{
	size_t best = 0;
	for (unsigned i = 0; i < MFS_CODEC__COUNT; i++) {
		if (!registry[i])
			continue;
		size_t b = registry[i]->bound(raw_len);
		if (b > best)
			best = b;
	}
	return best;
}

int mfs_codec_ws_create(mfs_codec_ws **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : -ENOMEM;
}

void mfs_codec_ws_free(mfs_codec_ws *ws)
{
	if (!ws)
		return;
	for (unsigned i = 0; i < MFS_WS_SLOTS; i++)
		free(ws->slot[i]);
	ZSTD_freeCCtx(ws->cctx);
	ZSTD_freeDCtx(ws->dctx);
	free(ws);
}

void *mfs_codec_ws_scratch(mfs_codec_ws *ws, unsigned slot, size_t size)
{
	if (slot >= MFS_WS_SLOTS)
		return NULL;
	if (size <= ws->slot_cap[slot] && ws->slot[slot])
		return ws->slot[slot];
	free(ws->slot[slot]);
	ws->slot[slot] = NULL;
	ws->slot_cap[slot] = 0;
	/* Capacities are powers of two: a slot that follows chunk sizes (a
	 * payload slot sees every compressed length) then grows a handful of
	 * times instead of at nearly every call, and the freed smaller blocks
	 * do not pile up as holes in the one heap the daemon runs on
	 * (fs/heap.c; test_stress measured the daemon's RssAnon). */
	size_t cap = 64;
	while (cap < size && cap <= SIZE_MAX / 2)
		cap <<= 1;
	if (cap < size)
		return NULL;
	void *p = aligned_alloc(64, cap);
	if (!p)
		return NULL;
	ws->slot[slot] = p;
	ws->slot_cap[slot] = cap;
	return p;
}

ZSTD_CCtx *mfs_codec_ws_cctx(mfs_codec_ws *ws)
{
	if (!ws->cctx)
		ws->cctx = ZSTD_createCCtx();
	return ws->cctx;
}

ZSTD_DCtx *mfs_codec_ws_dctx(mfs_codec_ws *ws)
{
	if (!ws->dctx)
		ws->dctx = ZSTD_createDCtx();
	return ws->dctx;
}
