/*
 * pipeline.c - the encoders: chunk jobs hashed, their codec chosen (an
 * xor-delta against the base when that saves), encoded and proven by a
 * decode before the writer stores them, each job a task on a worker pool
 * (index/pool.h) in a group of its own, so the writer waits for the job it
 * needs next while the others go on.
 */
#include "ingest_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* Slack of the codec choice (docs/codecs.md): a delta must save this much more. */
#define DELTA_SLACK 0.01

static int choose_codec(pool *p, job *j, mfs_codec_ws *ws, mfs_codec_id *out,
			size_t *stored)
{
	mfs_encode_params ep = {.dtype = j->dtype, .zstd_level = p->opts->zstd_level};
	*stored = j->len;
	if (p->opts->force_codec >= 0 && j->tensor >= 0) {
		*out = (mfs_codec_id)p->opts->force_codec;
		return 0;
	}
	mfs_codec_trial tr[8];
	size_t n_tr = 8;
	int rc = mfs_codec_choose(&ep, j->raw, j->len, ws, out, tr, &n_tr);
	for (size_t i = 0; rc == 0 && i < n_tr; i++)
		if (tr[i].id == *out)
			*stored = tr[i].stored_len;
	/* --gpu-codecs: the same planes, coded so a GPU decodes them (within 2%
	 * of bitplane-huff's size, docs/codecs.md) */
	if (rc == 0 && p->opts->gpu_codecs && *out == MFS_CODEC_BITPLANE_HUFF)
		*out = MFS_CODEC_RANS;
	return rc;
}

/* The chunk's place in its tensor (recorded with deltas). */
void mfs_pipe_job_geom(const job *j, mfs_chunk_geom *g)
{
	memset(g, 0, sizeof *g);
	g->dtype = j->dtype;
	if (!j->st)
		return;
	g->ndim = j->st->ndim;
	memcpy(g->shape, j->st->shape, sizeof g->shape);
	unsigned bits = mfs_dtype_bits(j->dtype);
	g->elem_off = bits ? j->tin * 8 / bits : 0;
}

int mfs_ingest_encode(mfs_codec_id codec, const mfs_encode_params *ep, const uint8_t *raw,
		      size_t len, uint8_t *enc, size_t cap, size_t *enc_len, mfs_codec_id *used,
		      mfs_codec_ws *ws)
{
	*used = codec;
	int rc = mfs_codec_encode(codec, ep, raw, len, enc, cap, enc_len, ws);
	if (rc == MFS_E_UNSUPPORTED && !ep->n_refs) {
		/* a forced codec that does not apply to this dtype: the general one */
		*used = MFS_CODEC_ZSTD;
		rc = mfs_codec_encode(*used, ep, raw, len, enc, cap, enc_len, ws);
	}
	if (rc < 0)
		return rc;
	if (*enc_len >= len && *used != MFS_CODEC_RAW) {
		if (cap < len)
			return MFS_E_INVAL;
		*used = MFS_CODEC_RAW;
		memcpy(enc, raw, len);
		*enc_len = len;
	}
	/* A wrong byte is worse than an error: prove the payload decodes exactly
	 * (a raw chunk stands alone: no references). */
	uint8_t *chk = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_CHUNK, len ? len : 1);
	if (!chk)
		return -ENOMEM;
	int alone = *used == MFS_CODEC_RAW;
	mfs_decode_req rq = {.src = enc, .src_len = *enc_len, .dst = chk, .dst_len = len,
			     .geom = ep->geom, .refs = alone ? NULL : ep->refs,
			     .n_refs = alone ? 0 : ep->n_refs};
	rc = mfs_codec_decode(*used, &rq, ws);
	if (rc < 0 || memcmp(chk, raw, len) != 0)
		return MFS_E_CORRUPT;
	return 0;
}

int mfs_ingest_encode_chunk(mfs_dtype dtype, int zstd_level, const uint8_t *raw, size_t len,
			    uint8_t *enc, size_t cap, size_t *enc_len, mfs_codec_id *codec,
			    mfs_codec_ws *ws)
{
	mfs_encode_params ep = {.dtype = dtype, .zstd_level = zstd_level};
	mfs_codec_id choice = MFS_CODEC_ZSTD;
	int rc;
	if (dtype != MFS_DT_UNKNOWN &&
	    (rc = mfs_codec_choose(&ep, raw, len, ws, &choice, NULL, NULL)) < 0)
		return rc;
	return mfs_ingest_encode(choice, &ep, raw, len, enc, cap, enc_len, codec, ws);
}

/*
 * Encode one chunk (an xor-delta when @p base is given) and prove it
 * (mfs_ingest_encode).
 */
static int encode_chunk(pool *p, job *j, const uint8_t *base, mfs_codec_ws *ws)
{
	mfs_ref_data rd = {.role = MFS_REF_BASE, .data = base, .len = j->len};
	mfs_chunk_geom g;
	mfs_pipe_job_geom(j, &g);
	mfs_encode_params ep = {.dtype = j->dtype, .zstd_level = p->opts->zstd_level,
				.geom = &g, .refs = base ? &rd : NULL, .n_refs = base ? 1 : 0};
	int rc = mfs_ingest_encode(j->codec, &ep, j->raw, j->len, j->enc, j->enc_cap,
				   &j->enc_len, &j->codec, ws);
	j->has_ref = base != NULL && j->codec != MFS_CODEC_RAW;
	return rc;
}

/*
 * The base's bytes for this chunk, decoded into the workspace's REF slot, or
 * NULL (no base tensor, no base chunk holding the range, or one that cannot
 * be used: j->base_rc says why).
 */
static const uint8_t *job_base(pool *p, job *j, mfs_codec_ws *ws)
{
	if (!j->bt || mfs_base_chunk_ref(j->bt, j->tin, (uint32_t)j->len, &j->ref) < 0)
		return NULL;
	mfs_txn *t;
	const uint8_t *bytes = NULL;
	int rc = mfs_txn_begin(p->store, MFS_TXN_READ, &t);
	if (rc == 0) {
		rc = mfs_base_ref_resolve(t, &j->ref, ws, MFS_WS_SLOT_REF, &bytes);
		mfs_txn_abort(t);
	}
	if (rc < 0) {
		j->base_rc = rc;
		return NULL;
	}
	return bytes;
}

/*
 * Encode a tensor's first chunk: the stand-alone choice, then, with a base,
 * the xor-delta, kept when it saves more than the slack; the decision holds
 * for the whole tensor.
 */
static int first_chunk(pool *p, job *j, tensor_state *ts, mfs_codec_ws *ws)
{
	size_t alone = 0;
	int rc = choose_codec(p, j, ws, &ts->codec, &alone);
	if (rc < 0)
		return rc;
	ts->alone_ratio = j->len ? (double)alone / (double)j->len : 1.0;
	const uint8_t *base = p->opts->force_codec < 0 ? job_base(p, j, ws) : NULL;
	if (base) {
		j->codec = MFS_CODEC_XOR_DELTA;
		rc = encode_chunk(p, j, base, ws);
		if (rc == 0 && j->has_ref &&
		    (double)j->enc_len + DELTA_SLACK * (double)j->len < (double)alone) {
			ts->delta = 1;
			return 0;
		}
		if (rc < 0 && rc != MFS_E_UNSUPPORTED && rc != MFS_E_INVAL)
			return rc;
	}
	j->codec = ts->codec;
	return encode_chunk(p, j, NULL, ws);
}

static void process_job(pool *p, job *j, mfs_codec_ws *ws)
{
	mfs_chunk_key_of(j->raw, j->len, &j->key);
	mfs_txn *t;
	j->rc = mfs_txn_begin(p->store, MFS_TXN_READ, &t);
	if (j->rc < 0)
		return;
	mfs_chunk_view v;
	int grc = mfs_chunk_get(t, &j->key, &v);
	if (grc == 0) {
		j->exists = 1;
		j->codec = v.codec;
		j->enc_len = v.payload_len;
	}
	mfs_txn_abort(t);
	if (grc < 0 && grc != MFS_E_NOTFOUND) {
		j->rc = grc;
		return;
	}

	/* The tensor's codec is chosen once, on its first chunk (a deterministic sample). */
	tensor_state *ts = j->tensor >= 0 ? &p->tensors[j->tensor] : NULL;
	if (ts && j->first_of_tensor) {
		if (j->exists) {
			/* nothing to sample: the tensor's other chunks decide one by one
			 * (a tensor partly equal to its base: the rest may be deltas) */
			ts->codec = j->codec;
			ts->alone_ratio = j->len ? (double)v.payload_len / (double)j->len : 1;
			const mfs_codec *sc = mfs_codec_get(j->codec);
			if (j->bt || !sc || (sc->flags & MFS_CODEC_NEEDS_REF))
				ts->delta = 2;
		} else {
			j->rc = first_chunk(p, j, ts, ws);
		}
		pthread_mutex_lock(&p->mu);
		ts->decided = 1;
		pthread_cond_broadcast(&p->cv_done);
		pthread_mutex_unlock(&p->mu);
		return;
	}
	if (j->exists)
		return;
	mfs_codec_id codec = MFS_CODEC_ZSTD;
	int delta = 0;
	if (ts) {
		pthread_mutex_lock(&p->mu);
		while (!ts->decided)
			pthread_cond_wait(&p->cv_done, &p->mu);
		codec = ts->codec;
		delta = ts->delta;
		pthread_mutex_unlock(&p->mu);
		if (delta == 2) {
			tensor_state one = {0};
			j->rc = first_chunk(p, j, &one, ws);
			return;
		}
	} else {
		size_t alone;
		if ((j->rc = choose_codec(p, j, ws, &codec, &alone)) < 0)
			return;
	}
	const uint8_t *base = delta ? job_base(p, j, ws) : NULL;
	if (base) {
		j->codec = MFS_CODEC_XOR_DELTA;
		j->rc = encode_chunk(p, j, base, ws);
		if (j->rc == 0)
			return;
		if (j->rc != MFS_E_UNSUPPORTED && j->rc != MFS_E_INVAL)
			return;
	}
	j->codec = codec;
	j->rc = encode_chunk(p, j, NULL, ws);
}

/* A job's task on a worker (its outputs are the writer's once its group is
 * empty: the pool's lock orders them before mfs_pipe_wait's return). */
static void job_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	job *j = (job *)((char *)t - offsetof(job, task));
	process_job(t->arg, j, ws);
}

void mfs_pipe_submit(pool *p, job *j)
{
	j->in_flight = 1;
	j->done = (mfs_pool_group)MFS_POOL_GROUP_INIT;
	j->task = (mfs_pool_task){.run = job_run, .arg = p, .group = &j->done};
	int rc = mfs_pool_submit(p->workers, &j->task);
	if (rc < 0)
		j->rc = rc; /* never while ingest runs: the pool stops after it */
}

void mfs_pipe_wait(pool *p, job *j)
{
	mfs_pool_wait(p->workers, &j->done);
}


int mfs_pipe_start(ingest_ctx *c)
{
	pool *p = &c->pool;
	memset(p, 0, sizeof *p);
	p->store = c->store;
	p->opts = c->opts;
	int n = c->opts->threads > 0 ? c->opts->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > MFS_POOL_MAX_THREADS)
		n = MFS_POOL_MAX_THREADS;
	c->n_ring = 2 * (size_t)n + 2;
	c->ring = calloc(c->n_ring, sizeof *c->ring);
	if (!c->ring)
		return -ENOMEM;
	size_t bound = mfs_codec_bound_max(c->opts->chunk_size);
	for (size_t i = 0; i < c->n_ring; i++) {
		c->ring[i].raw = malloc(c->opts->chunk_size);
		c->ring[i].enc = malloc(bound);
		c->ring[i].enc_cap = bound;
		if (!c->ring[i].raw || !c->ring[i].enc)
			return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	p->sync_inited = 1;
	return mfs_pool_create((unsigned)n, &p->workers);
}

void mfs_pipe_stop(ingest_ctx *c)
{
	pool *p = &c->pool;
	/* every submitted job has been waited for (the writer finalises each) */
	mfs_pool_free(p->workers);
	p->workers = NULL;
	if (p->sync_inited) {
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv_done);
		p->sync_inited = 0;
	}
	for (size_t i = 0; c->ring && i < c->n_ring; i++) {
		free(c->ring[i].raw);
		free(c->ring[i].enc);
	}
	free(c->ring);
}

