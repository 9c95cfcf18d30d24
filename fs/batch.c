/*
 * batch.c - batches of chunks and their backends (see batch.h).
 */
#include "batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MFS_HAVE_CUDA
#include "rans_cuda.h"
#endif

void mfs_batch_chunk_set(mfs_batch_chunk *c, const mfs_chunk_key *key,
			 const mfs_chunk_view *v, const mfs_ref_data *refs, void *dst,
			 size_t dst_cap)
{
	c->key = *key;
	c->codec = v->codec;
	c->payload = v->payload;
	c->payload_len = v->payload_len;
	c->geom = v->has_geom ? &v->geom : NULL;
	c->refs = v->n_refs ? refs : NULL;
	c->n_refs = v->n_refs;
	c->raw_len = v->raw_len;
	c->dst = dst;
	c->dst_cap = dst_cap;
	c->status = MFS_E_UNSUPPORTED;
}

int mfs_batch_gpu_can(mfs_codec_id codec, size_t n_refs)
{
	return codec == MFS_CODEC_RANS && n_refs == 0;
}

int mfs_batch_decode_one(mfs_batch_chunk *c, mfs_codec_ws *ws)
{
	if (c->dst_cap < c->raw_len)
		return c->status = MFS_E_NOSPACE;
	if ((c->n_refs && !c->refs) || c->n_refs > MFS_REFS_MAX)
		return c->status = MFS_E_CORRUPT;
	if (!c->payload && c->payload_len)
		return c->status = MFS_E_INVAL; /* not loaded */
	mfs_decode_req rq = {
	    .src = c->payload,
	    .src_len = c->payload_len,
	    .dst = c->dst,
	    .dst_len = c->raw_len,
	    .geom = c->geom,
	    .refs = c->n_refs ? c->refs : NULL,
	    .n_refs = c->n_refs,
	};
	int rc = mfs_codec_decode(c->codec, &rq, ws);
	if (rc < 0)
		return c->status =
			   rc == -ENOMEM || rc == MFS_E_CODEC ? rc : MFS_E_CORRUPT;
	mfs_chunk_key got;
	mfs_chunk_key_of(c->dst, c->raw_len, &got);
	return c->status =
		   memcmp(got.b, c->key.b, sizeof(got.b)) == 0 ? 0 : MFS_E_CORRUPT;
}

size_t mfs_batch_decode_cpu(mfs_batch_chunk *c, size_t n, mfs_codec_ws *ws)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (c[i].status == MFS_E_UNSUPPORTED)
			mfs_batch_decode_one(&c[i], ws);
		bad += c[i].status != 0;
	}
	return bad;
}

static void say(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t cap, const char *fmt, ...)
{
	if (!why || !cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

#ifndef MFS_HAVE_CUDA

/* A build without gpu/: there is never a backend, and NULL takes nothing. */

int mfs_gpu_backend_open(uint64_t budget, mfs_batch_log_fn log, void *log_ud,
			 mfs_gpu_backend **out, char *why, size_t why_cap)
{
	*out = NULL;
	say(why, why_cap,
	    "this build has no GPU decoder (built without CUDA: configure with "
	    "-DMODELFS_CUDA=ON where the CUDA toolkit is installed)");
	return MFS_E_UNSUPPORTED;
}

void mfs_gpu_backend_close(mfs_gpu_backend *g)
{
}

const char *mfs_gpu_backend_name(const mfs_gpu_backend *g)
{
	return "none";
}

uint64_t mfs_gpu_backend_budget(const mfs_gpu_backend *g)
{
	return 0;
}

int mfs_gpu_backend_usable(const mfs_gpu_backend *g)
{
	return 0;
}

void mfs_gpu_backend_stats_get(mfs_gpu_backend *g, mfs_gpu_backend_stats *out)
{
	memset(out, 0, sizeof(*out));
}

void mfs_gpu_backend_decode(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t n)
{
}

void mfs_gpu_backend_decode_device(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t n)
{
}

int mfs_gpu_backend_upload(mfs_gpu_backend *g, void *dst, const void *src, size_t n)
{
	return MFS_E_UNSUPPORTED;
}

int mfs_gpu_backend_is_device_ptr(mfs_gpu_backend *g, const void *p)
{
	return 0;
}

#else /* MFS_HAVE_CUDA */

#define DEV_ALIGN ((size_t)256)

struct mfs_gpu_backend {
	pthread_mutex_t mu; /* one batch at a time on the device */
	mfs_rans_gpu *ctx;
	uint64_t budget;
	int off; /* a failure turned it off (atomic: read unlocked) */
	mfs_batch_log_fn log;
	void *log_ud;
	uint8_t *dev; /* payloads, then (host destinations) decoded bytes */
	size_t dev_cap;
	uint8_t *pinned; /* device destinations: the copies whose keys are checked */
	size_t pinned_cap;
	mfs_rans_gpu_chunk *jobs;
	size_t *idx; /* jobs[k] is chunk idx[k] of the call */
	size_t jobs_cap;
	size_t scratch_peak; /* the decoder's device scratch (it keeps its largest) */
	mfs_gpu_backend_stats st;
};

static size_t align_up(size_t n)
{
	return (n + DEV_ALIGN - 1) & ~(DEV_ALIGN - 1);
}

int mfs_gpu_backend_open(uint64_t budget, mfs_batch_log_fn log, void *log_ud,
			 mfs_gpu_backend **out, char *why, size_t why_cap)
{
	*out = NULL;
	mfs_rans_gpu *ctx;
	int rc = mfs_rans_gpu_open(0, &ctx);
	if (rc == MFS_E_UNSUPPORTED) {
		say(why, why_cap,
		    "no usable CUDA device (no NVIDIA driver loaded, or no device "
		    "visible "
		    "to this process: check nvidia-smi and CUDA_VISIBLE_DEVICES)");
		return rc;
	}
	if (rc < 0) {
		say(why, why_cap, "the CUDA driver failed to start on device 0 (%s)",
		    mfs_strerror(rc));
		return rc;
	}
	size_t free_b, total_b;
	if ((rc = mfs_rans_gpu_mem_info(ctx, &free_b, &total_b)) < 0) {
		say(why, why_cap, "the CUDA driver cannot say how much memory %s has",
		    mfs_rans_gpu_device_name(ctx));
		mfs_rans_gpu_close(ctx);
		return rc;
	}
	if (budget == 0) {
		budget = total_b / 8;
		if (budget > MFS_GPU_MEMORY_DEFAULT_MAX)
			budget = MFS_GPU_MEMORY_DEFAULT_MAX;
	}
	if (budget < MFS_GPU_MEMORY_MIN)
		budget = MFS_GPU_MEMORY_MIN;
	mfs_gpu_backend *g = calloc(1, sizeof(*g));
	if (!g) {
		mfs_rans_gpu_close(ctx);
		say(why, why_cap, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&g->mu, NULL);
	g->ctx = ctx;
	g->budget = budget;
	g->log = log;
	g->log_ud = log_ud;
	*out = g;
	return 0;
}

static void buffers_free(mfs_gpu_backend *g)
{
	mfs_rans_gpu_free(g->ctx, g->dev);
	mfs_rans_gpu_host_free(g->ctx, g->pinned);
	g->dev = g->pinned = NULL;
	g->dev_cap = g->pinned_cap = 0;
}

void mfs_gpu_backend_close(mfs_gpu_backend *g)
{
	if (!g)
		return;
	buffers_free(g);
	mfs_rans_gpu_close(g->ctx);
	free(g->jobs);
	free(g->idx);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

const char *mfs_gpu_backend_name(const mfs_gpu_backend *g)
{
	return g ? mfs_rans_gpu_device_name(g->ctx) : "none";
}

uint64_t mfs_gpu_backend_budget(const mfs_gpu_backend *g)
{
	return g ? g->budget : 0;
}

int mfs_gpu_backend_usable(const mfs_gpu_backend *g)
{
	return g && !__atomic_load_n(&g->off, __ATOMIC_RELAXED);
}

void mfs_gpu_backend_stats_get(mfs_gpu_backend *g, mfs_gpu_backend_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!g)
		return;
	pthread_mutex_lock(&g->mu);
	*out = g->st;
	pthread_mutex_unlock(&g->mu);
}

/* With g->mu held: off for good, said once; its memory goes back. */
static void turn_off(mfs_gpu_backend *g, const char *what)
{
	if (__atomic_exchange_n(&g->off, 1, __ATOMIC_RELAXED))
		return;
	buffers_free(g);
	if (g->log) {
		char line[512];
		snprintf(line, sizeof(line),
			 "GPU decode on %s failed (%s): decoding on the CPU from now on",
			 mfs_rans_gpu_device_name(g->ctx), what);
		g->log(g->log_ud, line);
	}
}

/* Grow a buffer to @p need bytes (contents lost). @return 0 or -ENOMEM */
static int grow_dev(mfs_gpu_backend *g, size_t need)
{
	if (need <= g->dev_cap)
		return 0;
	mfs_rans_gpu_free(g->ctx, g->dev);
	g->dev = NULL;
	g->dev_cap = 0;
	if (mfs_rans_gpu_alloc(g->ctx, need, (void **)&g->dev) < 0)
		return -ENOMEM;
	g->dev_cap = need;
	return 0;
}

static int grow_pinned(mfs_gpu_backend *g, size_t need)
{
	if (need <= g->pinned_cap)
		return 0;
	mfs_rans_gpu_host_free(g->ctx, g->pinned);
	g->pinned = NULL;
	g->pinned_cap = 0;
	if (mfs_rans_gpu_host_alloc(g->ctx, need, (void **)&g->pinned) < 0)
		return -ENOMEM;
	g->pinned_cap = need;
	return 0;
}

/* Device bytes one chunk costs: its payload, its decoded bytes unless they
 * go to the caller's device memory, the decoder's scratch. */
static size_t chunk_cost(const mfs_batch_chunk *c, int device_dst)
{
	return align_up(c->payload_len) + (device_dst ? 0 : align_up(c->raw_len)) +
	       mfs_rans_gpu_scratch_bound(c->raw_len);
}

/*
 * Run chunks idx[from..to) of @p c as one device batch; with g->mu held.
 * @return 0, or a negative code after which the backend is off
 */
static int run_part(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t from, size_t to,
		    int device_dst)
{
	size_t in = 0, out = 0;
	for (size_t k = from; k < to; k++) {
		in += align_up(c[g->idx[k]].payload_len);
		out += align_up(c[g->idx[k]].raw_len);
	}
	if (grow_dev(g, in + (device_dst ? 0 : out)) < 0) {
		turn_off(g, "out of device memory for the batch's payloads");
		return -ENOMEM;
	}
	if (device_dst && grow_pinned(g, out) < 0) {
		turn_off(g, "out of pinned host memory for the key checks");
		return -ENOMEM;
	}
	size_t a = 0, b = 0;
	for (size_t k = from; k < to; k++) {
		mfs_batch_chunk *x = &c[g->idx[k]];
		mfs_rans_gpu_chunk *j = &g->jobs[k - from];
		if (mfs_rans_gpu_upload(g->ctx, g->dev + a, x->payload, x->payload_len) <
		    0) {
			turn_off(g, "a copy to the device failed");
			return -EIO;
		}
		j->src = g->dev + a;
		j->src_len = x->payload_len;
		j->dst_len = x->raw_len;
		j->key = x->key.b;
		if (device_dst) {
			j->dst = x->dst;
			j->host_copy = g->pinned + b;
		} else {
			j->dst = g->dev + in + b;
			j->host_copy = x->dst;
		}
		j->status = MFS_E_UNSUPPORTED;
		a += align_up(x->payload_len);
		b += align_up(x->raw_len);
	}
	int rc = mfs_rans_gpu_decode(g->ctx, g->jobs, to - from);
	if (rc < 0) {
		turn_off(g, rc == -ENOMEM
				? "out of device memory for the decoder's scratch"
				: "a driver error while decoding");
		return rc;
	}
	g->st.batches++;
	for (size_t k = from; k < to; k++) {
		mfs_batch_chunk *x = &c[g->idx[k]];
		int st = g->jobs[k - from].status;
		if (st == 0) {
			x->status = 0;
			g->st.chunks++;
			g->st.bytes += x->raw_len;
		} else if (st == MFS_E_CORRUPT) {
			g->st.corrupt++; /* left to the CPU decoder's verdict */
		}
	}
	return 0;
}

static void decode(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t n, int device_dst)
{
	if (!g || n == 0 || __atomic_load_n(&g->off, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&g->mu);
	if (n > g->jobs_cap) {
		mfs_rans_gpu_chunk *j = realloc(g->jobs, n * sizeof(*j));
		if (j)
			g->jobs = j;
		size_t *ix = realloc(g->idx, n * sizeof(*ix));
		if (ix)
			g->idx = ix;
		if (!j || !ix) {
			pthread_mutex_unlock(&g->mu);
			return; /* host memory: the CPU decodes them this time */
		}
		g->jobs_cap = n;
	}
	/* the chunks it takes, cut into parts that fit the budget */
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (c[i].status == MFS_E_UNSUPPORTED &&
		    mfs_batch_gpu_can(c[i].codec, c[i].n_refs) &&
		    c[i].dst_cap >= c[i].raw_len && c[i].raw_len <= MFS_CHUNK_MAX &&
		    chunk_cost(&c[i], device_dst) <= g->budget)
			g->idx[m++] = i;
	/*
	 * Parts: the buffers held (the arena for payloads and decoded bytes, and
	 * the decoder's scratch, each kept at its largest so far) stay within
	 * the budget: a part is cut where the larger of each would pass it.
	 */
	size_t from = 0;
	while (from < m && !g->off) {
		size_t to = from, io = 0, sc = 0;
		while (to < m) {
			const mfs_batch_chunk *x = &c[g->idx[to]];
			size_t nio = io + align_up(x->payload_len) +
				     (device_dst ? 0 : align_up(x->raw_len));
			size_t nsc = sc + mfs_rans_gpu_scratch_bound(x->raw_len);
			size_t held = (nio > g->dev_cap ? nio : g->dev_cap) +
				      (nsc > g->scratch_peak ? nsc : g->scratch_peak);
			if (held > g->budget)
				break;
			io = nio;
			sc = nsc;
			to++;
		}
		if (to == from) {
			if (g->dev_cap) { /* a smaller arena makes room: try again */
				mfs_rans_gpu_free(g->ctx, g->dev);
				g->dev = NULL;
				g->dev_cap = 0;
				continue;
			}
			from++; /* does not fit beside the scratch held: the CPU's */
			continue;
		}
		if (run_part(g, c, from, to, device_dst) < 0)
			break;
		if (sc > g->scratch_peak)
			g->scratch_peak = sc;
		from = to;
	}
	for (size_t i = 0; i < n; i++)
		g->st.left_to_cpu += c[i].status == MFS_E_UNSUPPORTED;
	pthread_mutex_unlock(&g->mu);
}

void mfs_gpu_backend_decode(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t n)
{
	decode(g, c, n, 0);
}

void mfs_gpu_backend_decode_device(mfs_gpu_backend *g, mfs_batch_chunk *c, size_t n)
{
	decode(g, c, n, 1);
}

int mfs_gpu_backend_upload(mfs_gpu_backend *g, void *dst, const void *src, size_t n)
{
	if (!g)
		return MFS_E_UNSUPPORTED;
	pthread_mutex_lock(&g->mu);
	int rc = g->off ? -EIO : mfs_rans_gpu_upload(g->ctx, dst, src, n);
	if (rc == 0)
		rc = mfs_rans_gpu_sync(g->ctx);
	if (rc < 0)
		turn_off(g, "a copy to the device failed");
	pthread_mutex_unlock(&g->mu);
	return rc;
}

int mfs_gpu_backend_is_device_ptr(mfs_gpu_backend *g, const void *p)
{
	return g && mfs_rans_gpu_is_device_ptr(g->ctx, p);
}

#endif /* MFS_HAVE_CUDA */
