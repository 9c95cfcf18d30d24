/*
 * test_batch.c - decode batches (fs/batch.h) and the cache's batch prefetch
 * (fs/cache.h mfs_cache_prefetch_batch), on the CPU: batches of mixed codecs
 * (raw, zstd, bitplane-huff, rans, xor-delta with its reference), partial
 * batches, a damaged chunk or a wrong key failing that chunk alone with
 * MFS_E_CORRUPT, destination bounds (a short destination is MFS_E_NOSPACE
 * and nothing is written past one), the cache's workers decoding a batch in
 * parallel, a batch fill (what the GPU backend plugs in) taking some chunks
 * and leaving the others to the workers, a batch fill that takes nothing
 * (a backend turned off), drain while a batch fill runs, and the GPU backend
 * saying why there is none where there is no device.
 */
#include "testhelp.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include "batch.h"
#include "cache.h"
#include "codec.h"

static uint64_t seed;
static mfs_codec_ws *ws;

static uint64_t rnd(void)
{
	seed ^= seed << 13;
	seed ^= seed >> 7;
	seed ^= seed << 17;
	return seed;
}

/* Weights as bf16: a normal distribution's top 16 bits. */
static void fill_bf16(uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2) {
		double u1 = ((double)(rnd() >> 11) + 1) / 9007199254740993.0;
		double u2 = (double)(rnd() >> 11) / 9007199254740992.0;
		float v =
		    (float)(0.02 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
		uint32_t b;
		memcpy(&b, &v, 4);
		p[i] = (uint8_t)(b >> 16);
		p[i + 1] = (uint8_t)(b >> 24);
	}
}

/* One chunk of a test batch: its raw bytes and payload, owned here. */
typedef struct tchunk {
	uint8_t *raw;
	size_t len;
	uint8_t *enc;
	size_t enc_len;
	mfs_codec_id codec;
	mfs_chunk_key key;
	mfs_ref_data ref; /* xor-delta: the base's bytes */
	int has_ref;
} tchunk;

static int make_chunk(tchunk *t, mfs_codec_id codec, size_t len, const uint8_t *base)
{
	memset(t, 0, sizeof(*t));
	t->raw = malloc(len ? len : 1);
	t->len = len;
	t->codec = codec;
	if (!t->raw)
		return -1;
	if (codec == MFS_CODEC_ZSTD) {
		for (size_t i = 0; i < len; i++)
			t->raw[i] = (uint8_t)("modelfs batch "[i % 14]);
	} else if (codec == MFS_CODEC_XOR_DELTA) {
		/* a fine-tune of @p base: a few values differ */
		memcpy(t->raw, base, len);
		for (size_t i = 0; i < len / 64; i++)
			t->raw[(rnd() % (len / 2)) * 2] ^= 1;
		t->ref = (mfs_ref_data){.role = MFS_REF_BASE, .data = base, .len = len};
		t->has_ref = 1;
	} else {
		fill_bf16(t->raw, len);
	}
	mfs_chunk_key_of(t->raw, len, &t->key);
	const mfs_codec *cd = mfs_codec_get(codec);
	size_t cap = cd->bound(len);
	t->enc = malloc(cap);
	mfs_encode_params p = {.dtype = MFS_DT_BF16,
			       .refs = t->has_ref ? &t->ref : NULL,
			       .n_refs = t->has_ref ? 1 : 0};
	if (!t->enc ||
	    mfs_codec_encode(codec, &p, t->raw, len, t->enc, cap, &t->enc_len, ws) < 0)
		return -1;
	return 0;
}

static void free_chunk(tchunk *t)
{
	free(t->raw);
	free(t->enc);
}

/* A batch chunk for @p t, decoding into @p dst of @p cap bytes. */
static mfs_batch_chunk batch_of(const tchunk *t, void *dst, size_t cap)
{
	return (mfs_batch_chunk){.key = t->key,
				 .codec = t->codec,
				 .payload = t->enc,
				 .payload_len = t->enc_len,
				 .refs = t->has_ref ? &t->ref : NULL,
				 .n_refs = t->has_ref ? 1 : 0,
				 .raw_len = t->len,
				 .dst = dst,
				 .dst_cap = cap,
				 .status = MFS_E_UNSUPPORTED};
}

enum { NCH = 10 };
static const mfs_codec_id mix[NCH] = {
    MFS_CODEC_RANS, MFS_CODEC_RAW,  MFS_CODEC_BITPLANE_HUFF, MFS_CODEC_ZSTD,
    MFS_CODEC_RANS, MFS_CODEC_RANS, MFS_CODEC_XOR_DELTA,     MFS_CODEC_BITPLANE_HUFF,
    MFS_CODEC_RANS, MFS_CODEC_ZSTD,
};

static tchunk ch[NCH];
static uint8_t *base_raw;

static int make_mix(void)
{
	size_t base_len = 128 << 10;
	base_raw = malloc(base_len);
	if (!base_raw)
		return -1;
	fill_bf16(base_raw, base_len);
	for (size_t i = 0; i < NCH; i++) {
		/* sizes from 1 element to 256 KiB, tails included */
		size_t len = mix[i] == MFS_CODEC_XOR_DELTA ? base_len
			     : i == 1			   ? 2
			     : i == 5			   ? (size_t)(100 << 10) + 6
				      : (size_t)(16 << 10) << (i % 5);
		if (make_chunk(&ch[i], mix[i], len, base_raw) < 0)
			return -1;
	}
	return 0;
}

/* Mixed codecs decode in one batch, each verified; a partial batch touches
 * only its chunks; a chunk already decoded (a GPU took it) is left alone. */
static void test_cpu_mixed_and_partial(void)
{
	mfs_batch_chunk b[NCH];
	uint8_t *dst[NCH];
	for (size_t i = 0; i < NCH; i++) {
		dst[i] = malloc(ch[i].len + 1);
		REQUIRE(dst[i]);
		memset(dst[i], 0xA5, ch[i].len + 1);
		b[i] = batch_of(&ch[i], dst[i], ch[i].len);
	}
	/* chunk 2 "was decoded elsewhere": its status is 0 and its bytes stay */
	b[2].status = 0;
	size_t part = 7;
	CHECK_EQ_INT(mfs_batch_decode_cpu(b, part, ws), 0);
	for (size_t i = 0; i < part; i++) {
		CHECK_EQ_INT(b[i].status, 0);
		if (i != 2)
			CHECK(memcmp(dst[i], ch[i].raw, ch[i].len) == 0);
		CHECK_EQ_INT(dst[i][ch[i].len], 0xA5);
	}
	CHECK_EQ_INT(dst[2][0], 0xA5); /* not decoded again */
	for (size_t i = part; i < NCH; i++) {
		CHECK_EQ_INT(b[i].status, MFS_E_UNSUPPORTED);
		CHECK_EQ_INT(dst[i][0], 0xA5);
	}
	/* the rest of the batch */
	CHECK_EQ_INT(mfs_batch_decode_cpu(b + part, NCH - part, ws), 0);
	for (size_t i = part; i < NCH; i++)
		CHECK(b[i].status == 0 && memcmp(dst[i], ch[i].raw, ch[i].len) == 0);
	for (size_t i = 0; i < NCH; i++)
		free(dst[i]);
}

/* A damaged payload, a wrong key, a missing reference: that chunk fails
 * with MFS_E_CORRUPT, every other chunk of the batch decodes. */
static void test_cpu_corrupt_one(void)
{
	for (size_t bad = 0; bad < NCH; bad++) {
		for (int how = 0; how < 3; how++) {
			if (how == 2 && !ch[bad].has_ref)
				continue;
			mfs_batch_chunk b[NCH];
			uint8_t *dst[NCH];
			uint8_t *damaged = malloc(ch[bad].enc_len);
			REQUIRE(damaged);
			memcpy(damaged, ch[bad].enc, ch[bad].enc_len);
			/* a byte in the coded data (past the header), or the last one */
			size_t at = ch[bad].enc_len > 64
					? 32 + rnd() % (ch[bad].enc_len - 32)
					: ch[bad].enc_len - 1;
			damaged[at] ^= (uint8_t)(1 + rnd() % 255);
			for (size_t i = 0; i < NCH; i++) {
				dst[i] = malloc(ch[i].len);
				REQUIRE(dst[i]);
				b[i] = batch_of(&ch[i], dst[i], ch[i].len);
			}
			if (how == 0)
				b[bad].payload = damaged;
			else if (how == 1)
				b[bad].key.b[rnd() % 16] ^= 0x10;
			else
				b[bad].refs = NULL;
			CHECK_EQ_INT(mfs_batch_decode_cpu(b, NCH, ws), 1);
			for (size_t i = 0; i < NCH; i++) {
				if (i == bad) {
					if (b[i].status != MFS_E_CORRUPT)
						fprintf(stderr,
							"chunk %zu (%s) damaged %d: %d\n",
							i, mfs_codec_name(ch[i].codec),
							how, b[i].status);
					CHECK_EQ_INT(b[i].status, MFS_E_CORRUPT);
				} else {
					CHECK(b[i].status == 0 &&
					      memcmp(dst[i], ch[i].raw, ch[i].len) == 0);
				}
			}
			for (size_t i = 0; i < NCH; i++)
				free(dst[i]);
			free(damaged);
		}
	}
}

/* A destination a byte short is MFS_E_NOSPACE with nothing written; a
 * destination of exactly raw_len gets no byte past it. */
static void test_cpu_bounds(void)
{
	for (size_t i = 0; i < NCH; i++) {
		if (ch[i].len < 2)
			continue;
		uint8_t *d = malloc(ch[i].len + 16);
		REQUIRE(d);
		memset(d, 0x5A, ch[i].len + 16);
		mfs_batch_chunk b = batch_of(&ch[i], d, ch[i].len - 1);
		CHECK_EQ_INT(mfs_batch_decode_one(&b, ws), MFS_E_NOSPACE);
		size_t untouched = 0;
		for (size_t k = 0; k < ch[i].len + 16; k++)
			untouched += d[k] == 0x5A;
		CHECK_EQ_INT(untouched, ch[i].len + 16);
		b = batch_of(&ch[i], d, ch[i].len);
		CHECK_EQ_INT(mfs_batch_decode_one(&b, ws), 0);
		for (size_t k = 0; k < 16; k++)
			CHECK_EQ_INT(d[ch[i].len + k], 0x5A);
		free(d);
	}
	/* an unknown codec is said so, not called corrupt */
	uint8_t d[4];
	mfs_batch_chunk b = batch_of(&ch[1], d, sizeof(d));
	b.codec = (mfs_codec_id)15;
	CHECK_EQ_INT(mfs_batch_decode_one(&b, ws), MFS_E_CODEC);
}

/* ---- the cache's batches ---- */

typedef struct ctx {
	const tchunk *c;
	size_t n;
	int corrupt;   /* index decoded against a wrong key (-1: none) */
	int take_rans; /* batch fill: take the rans chunks (else take nothing) */
	unsigned sleep_ms;
	/* counters, atomic */
	int fills, batch_calls, batch_items, batch_taken;
	int fill_thread_max, in_fill;
} ctx;

static const tchunk *find(const ctx *x, const mfs_chunk_key *k, size_t *idx)
{
	for (size_t i = 0; i < x->n; i++)
		if (memcmp(x->c[i].key.b, k->b, 16) == 0) {
			*idx = i;
			return &x->c[i];
		}
	return NULL;
}

static int test_fill(void *ud, const mfs_chunk_key *key, void *dst, size_t len,
		     mfs_codec_ws *w)
{
	ctx *x = ud;
	size_t idx;
	const tchunk *t = find(x, key, &idx);
	if (!t)
		return MFS_E_NOTFOUND;
	int now = __atomic_add_fetch(&x->in_fill, 1, __ATOMIC_RELAXED);
	int prev = __atomic_load_n(&x->fill_thread_max, __ATOMIC_RELAXED);
	while (now > prev &&
	       !__atomic_compare_exchange_n(&x->fill_thread_max, &prev, now, 0,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	__atomic_add_fetch(&x->fills, 1, __ATOMIC_RELAXED);
	mfs_batch_chunk b = batch_of(t, dst, len);
	if ((int)idx == x->corrupt)
		b.key.b[0] ^= 1;
	usleep(2000); /* long enough for the other workers to take chunks */
	int rc = mfs_batch_decode_one(&b, w);
	__atomic_sub_fetch(&x->in_fill, 1, __ATOMIC_RELAXED);
	return rc;
}

/* What the GPU backend does through the reader: take the rans chunks of the
 * batch (here decoded on the CPU), leave the others. */
static void test_batch_fill(void *ud, mfs_cache_fill_item *items, size_t n,
			    mfs_codec_ws *w)
{
	ctx *x = ud;
	__atomic_add_fetch(&x->batch_calls, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&x->batch_items, (int)n, __ATOMIC_RELAXED);
	if (x->sleep_ms)
		usleep(x->sleep_ms * 1000);
	for (size_t i = 0; i < n; i++) {
		size_t idx;
		const tchunk *t = find(x, items[i].key, &idx);
		if (!t || items[i].status != MFS_E_UNSUPPORTED || !x->take_rans ||
		    !mfs_batch_gpu_can(t->codec, t->has_ref))
			continue;
		mfs_batch_chunk b = batch_of(t, items[i].dst, items[i].len);
		if ((int)idx == x->corrupt)
			b.key.b[0] ^= 1;
		items[i].status = mfs_batch_decode_one(&b, w);
		if (items[i].status == 0)
			__atomic_add_fetch(&x->batch_taken, 1, __ATOMIC_RELAXED);
	}
}

static void wait_idle(mfs_cache *c, void *ud)
{
	for (int i = 0; i < 20000 && mfs_cache_busy(c, ud); i++)
		usleep(500);
}

/* Every chunk of @p x, got from @p c: the bytes, or the corrupt one's error. */
static void check_gets(mfs_cache *c, ctx *x)
{
	for (size_t i = 0; i < x->n; i++) {
		mfs_cache_entry *e;
		int rc =
		    mfs_cache_get(c, &x->c[i].key, x->c[i].len, test_fill, x, ws, &e);
		if ((int)i == x->corrupt) {
			CHECK_EQ_INT(rc, MFS_E_CORRUPT);
			continue;
		}
		CHECK_EQ_INT(rc, 0);
		if (rc == 0) {
			CHECK(memcmp(mfs_cache_entry_data(e), x->c[i].raw, x->c[i].len) ==
			      0);
			mfs_cache_release(c, e);
		}
	}
}

static void want_all(const ctx *x, mfs_cache_want *w)
{
	for (size_t i = 0; i < x->n; i++)
		w[i] = (mfs_cache_want){.key = x->c[i].key, .len = x->c[i].len};
}

/* Without a batch fill the workers decode a batch's chunks in parallel. */
static void test_cache_batch_cpu(void)
{
	mfs_cache *c;
	REQUIRE(mfs_cache_create(64 << 20, 3, &c) == 0);
	ctx x = {.c = ch, .n = NCH, .corrupt = 3};
	mfs_cache_want w[NCH];
	want_all(&x, w);
	size_t looked = 0;
	CHECK_EQ_INT(mfs_cache_prefetch_batch(c, w, NCH, test_fill, NULL, &x, &looked),
		     0);
	CHECK_EQ_INT(looked, NCH);
	wait_idle(c, &x);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.prefetch_queued, NCH);
	CHECK_EQ_INT(st.prefetch_fills, NCH - 1);
	CHECK_EQ_INT(st.fill_errors, 1);
	CHECK_EQ_INT(st.batches, 0);
	CHECK(x.fill_thread_max >= 2); /* parallel */
	/* queued again: the ready ones are skipped, only the failed one decodes */
	CHECK_EQ_INT(mfs_cache_prefetch_batch(c, w, NCH, test_fill, NULL, &x, NULL), 0);
	wait_idle(c, &x);
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.prefetch_queued, NCH + 1);
	int fills = x.fills;
	check_gets(c, &x);
	CHECK_EQ_INT(x.fills, fills + 1); /* the corrupt one, tried again */
	mfs_cache_free(c);
}

/* A batch fill takes its chunks in one call; the ones it leaves go to the
 * workers; a chunk it fails is not cached. */
static void test_cache_batch_routed(void)
{
	for (int corrupt_rans = 0; corrupt_rans < 2; corrupt_rans++) {
		mfs_cache *c;
		REQUIRE(mfs_cache_create(64 << 20, 2, &c) == 0);
		ctx x = {
		    .c = ch, .n = NCH, .corrupt = corrupt_rans ? 4 : 9, .take_rans = 1};
		mfs_cache_want w[NCH];
		want_all(&x, w);
		CHECK_EQ_INT(mfs_cache_prefetch_batch(c, w, NCH, test_fill,
						      test_batch_fill, &x, NULL),
			     0);
		wait_idle(c, &x);
		size_t rans = 0;
		for (size_t i = 0; i < NCH; i++)
			rans += ch[i].codec == MFS_CODEC_RANS;
		mfs_cache_stats st;
		mfs_cache_stats_get(c, &st);
		CHECK_EQ_INT(x.batch_calls, 1); /* the whole batch in one call */
		CHECK_EQ_INT(x.batch_items, NCH);
		CHECK_EQ_INT(st.batches, 1);
		CHECK_EQ_INT(st.batch_fills, rans - corrupt_rans);
		CHECK_EQ_INT(st.batch_left, NCH - rans);
		CHECK_EQ_INT(x.fills, NCH - rans); /* the workers did the others */
		CHECK_EQ_INT(st.prefetch_fills, NCH - 1);
		CHECK_EQ_INT(st.fill_errors, 1);
		check_gets(c, &x);
		mfs_cache_free(c);
	}
}

/* A batch fill that takes nothing (a GPU backend turned off): every chunk
 * is decoded by the workers, none twice. */
static void test_cache_batch_left(void)
{
	mfs_cache *c;
	REQUIRE(mfs_cache_create(64 << 20, 2, &c) == 0);
	ctx x = {.c = ch, .n = NCH, .corrupt = -1, .take_rans = 0};
	mfs_cache_want w[NCH];
	want_all(&x, w);
	CHECK_EQ_INT(
	    mfs_cache_prefetch_batch(c, w, NCH, test_fill, test_batch_fill, &x, NULL), 0);
	wait_idle(c, &x);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.batch_left, NCH);
	CHECK_EQ_INT(x.fills, NCH);
	CHECK_EQ_INT(st.prefetch_fills, NCH);
	check_gets(c, &x);
	CHECK_EQ_INT(x.fills, NCH); /* all hits */
	mfs_cache_free(c);
}

/* A tiny budget: a batch stops at the first chunk over prefetch's share. */
static void test_cache_batch_busy(void)
{
	mfs_cache *c;
	REQUIRE(mfs_cache_create(300 << 10, 1, &c) == 0);
	ctx x = {.c = ch, .n = NCH, .corrupt = -1};
	mfs_cache_want w[NCH];
	want_all(&x, w);
	size_t looked = 99;
	int rc = mfs_cache_prefetch_batch(c, w, NCH, test_fill, NULL, &x, &looked);
	CHECK_EQ_INT(rc, MFS_E_BUSY);
	CHECK(looked < NCH);
	wait_idle(c, &x);
	check_gets(c, &x);
	mfs_cache_free(c);
}

/* Drain while a batch fill runs: once it returns, nothing of the batch is
 * queued or running (the chunks the fill left are dropped, not run later). */
static void test_cache_batch_drain(void)
{
	mfs_cache *c;
	REQUIRE(mfs_cache_create(64 << 20, 2, &c) == 0);
	ctx x = {.c = ch, .n = NCH, .corrupt = -1, .take_rans = 0, .sleep_ms = 50};
	mfs_cache_want w[NCH];
	want_all(&x, w);
	CHECK_EQ_INT(
	    mfs_cache_prefetch_batch(c, w, NCH, test_fill, test_batch_fill, &x, NULL), 0);
	for (int i = 0; i < 1000 && !__atomic_load_n(&x.batch_calls, __ATOMIC_RELAXED);
	     i++)
		usleep(200);
	mfs_cache_drain(c, &x);
	CHECK_EQ_INT(mfs_cache_busy(c, &x), 0);
	int fills = x.fills;
	usleep(30000);
	CHECK_EQ_INT(x.fills, fills); /* no job of x ran after the drain */
	mfs_cache_free(c);
}

/* Where there is no GPU the backend says why, and NULL takes nothing. */
static void test_gpu_backend_absent(void)
{
	mfs_gpu_backend *g = (mfs_gpu_backend *)1;
	char why[256] = "";
	int rc = mfs_gpu_backend_open(0, NULL, NULL, &g, why, sizeof(why));
	if (rc == 0) {
		fprintf(stderr,
			"  (a GPU is present: %s; its tests are test_batch_gpu)\n",
			mfs_gpu_backend_name(g));
		mfs_gpu_backend_close(g);
		return;
	}
	CHECK_EQ_INT(rc, MFS_E_UNSUPPORTED);
	CHECK(g == NULL);
#ifdef MFS_HAVE_CUDA
	CHECK(strstr(why, "no usable CUDA device") != NULL);
#else
	CHECK(strstr(why, "built without CUDA") != NULL);
#endif
	fprintf(stderr, "  (no GPU backend: %s)\n", why);
	CHECK_EQ_INT(mfs_gpu_backend_usable(NULL), 0);
	mfs_batch_chunk b = batch_of(&ch[0], NULL, 0);
	mfs_gpu_backend_decode(NULL, &b, 1);
	CHECK_EQ_INT(b.status, MFS_E_UNSUPPORTED);
	CHECK_EQ_INT(mfs_gpu_backend_upload(NULL, NULL, "", 1), MFS_E_UNSUPPORTED);
}

int main(void)
{
	seed = (uint64_t)time(NULL) * 2654435761u | 1;
	fprintf(stderr, "seed %" PRIu64 "\n", seed);
	if (mfs_codec_ws_create(&ws) < 0 || make_mix() < 0) {
		fprintf(stderr, "cannot build the test chunks\n");
		return 1;
	}
	RUN(test_cpu_mixed_and_partial);
	RUN(test_cpu_corrupt_one);
	RUN(test_cpu_bounds);
	RUN(test_cache_batch_cpu);
	RUN(test_cache_batch_routed);
	RUN(test_cache_batch_left);
	RUN(test_cache_batch_busy);
	RUN(test_cache_batch_drain);
	RUN(test_gpu_backend_absent);
	for (size_t i = 0; i < NCH; i++)
		free_chunk(&ch[i]);
	free(base_raw);
	mfs_codec_ws_free(ws);
	return test_report();
}
