/*
 * test_cache.c - the decoded-chunk cache: one fill per key under concurrent
 * gets, byte budget, pinning, error propagation, prefetch and drain.
 * Meant to run under ThreadSanitizer too (-DMODELFS_TSAN=ON).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "cache.h"
#include "testhelp.h"

#define NKEYS 256

typedef struct fake_store {
	atomic_int fills[NKEYS];
	atomic_int in_fill;
	int fail_mod; /* keys with id % fail_mod == 0 fail (0: none) */
	int fill_sleep_us;
	unsigned shared_from, shared_to; /* ids in [from, to) fill as shared */
} fake_store;

static mfs_chunk_key key_of(unsigned id)
{
	mfs_chunk_key k;
	uint64_t s = id * 0x9E3779B97F4A7C15ull + 1;
	for (int i = 0; i < 16; i++)
		k.b[i] = (uint8_t)(test_rand(&s) >> 56);
	k.b[15] = (uint8_t)id; /* ids below 256 map to distinct keys */
	k.b[14] = 0xA5;
	return k;
}

static unsigned id_of(const mfs_chunk_key *k)
{
	return k->b[15];
}

static uint8_t byte_at(unsigned id, size_t j)
{
	return (uint8_t)(id * 31u + j * 7u + (j >> 9));
}

static int fake_fill(void *ud, const mfs_chunk_key *key, void *dst, size_t len,
		     mfs_codec_ws *ws)
{
	(void)ws;
	fake_store *fs = ud;
	unsigned id = id_of(key);
	atomic_fetch_add(&fs->fills[id], 1);
	atomic_fetch_add(&fs->in_fill, 1);
	if (fs->fill_sleep_us)
		usleep(fs->fill_sleep_us);
	int rc = 0;
	if (fs->fail_mod && id % fs->fail_mod == 0) {
		memset(dst, 0xEE, len);
		rc = MFS_E_CORRUPT;
	} else {
		uint8_t *d = dst;
		for (size_t j = 0; j < len; j++)
			d[j] = byte_at(id, j);
		if (id >= fs->shared_from && id < fs->shared_to)
			rc = MFS_CACHE_FILL_SHARED;
	}
	atomic_fetch_sub(&fs->in_fill, 1);
	return rc;
}

static int data_ok(unsigned id, const mfs_cache_entry *e, size_t len)
{
	const uint8_t *d = mfs_cache_entry_data(e);
	if (mfs_cache_entry_len(e) != len)
		return 0;
	for (size_t j = 0; j < len; j += 61)
		if (d[j] != byte_at(id, j))
			return 0;
	return d[len - 1] == byte_at(id, len - 1);
}

static void test_basic(void)
{
	fake_store fs = {0};
	mfs_cache *c;
	REQUIRE(mfs_cache_create(1 << 20, 0, &c) == 0);
	mfs_chunk_key k = key_of(3);
	mfs_cache_entry *e;
	CHECK_EQ_INT(mfs_cache_get(c, &k, 4096, fake_fill, &fs, NULL, &e), 0);
	CHECK(data_ok(3, e, 4096));
	mfs_cache_release(c, e);
	CHECK_EQ_INT(mfs_cache_get(c, &k, 4096, fake_fill, &fs, NULL, &e), 0);
	CHECK(data_ok(3, e, 4096));
	mfs_cache_release(c, e);
	mfs_cache_release(c, NULL);
	CHECK_EQ_INT(atomic_load(&fs.fills[3]), 1);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.hits, 1);
	CHECK_EQ_INT(st.misses, 1);
	CHECK_EQ_INT(st.bytes, 4096);
	CHECK_EQ_INT(st.entries, 1);
	mfs_cache_free(c);
	mfs_cache_free(NULL);
}

/* ---- many threads, same keys, everything fits: one fill per key ---- */

typedef struct worker_arg {
	mfs_cache *c;
	fake_store *fs;
	uint64_t seed;
	int iters;
	unsigned nkeys;
	size_t len;
	int use_prefetch;
	atomic_int *bad;
	atomic_int *errors_seen;
} worker_arg;

static void *get_worker(void *p)
{
	worker_arg *a = p;
	uint64_t s = a->seed;
	for (int i = 0; i < a->iters; i++) {
		unsigned id = (unsigned)(test_rand(&s) % a->nkeys);
		mfs_chunk_key k = key_of(id);
		if (a->use_prefetch && (test_rand(&s) & 3) == 0) {
			for (unsigned d = 1; d <= 4; d++) {
				mfs_chunk_key pk = key_of((id + d) % a->nkeys);
				mfs_cache_prefetch(a->c, &pk, a->len, fake_fill, a->fs);
			}
		}
		mfs_cache_entry *e;
		int rc = mfs_cache_get(a->c, &k, a->len, fake_fill, a->fs, NULL, &e);
		if (rc == 0) {
			if (!data_ok(id, e, a->len))
				atomic_fetch_add(a->bad, 1);
			if (test_rand(&s) & 1)
				sched_yield(); /* hold the pin a little */
			if (!data_ok(id, e, a->len))
				atomic_fetch_add(a->bad, 1);
			mfs_cache_release(a->c, e);
		} else {
			atomic_fetch_add(a->errors_seen, 1);
			if (rc != MFS_E_CORRUPT || !a->fs->fail_mod ||
			    id % a->fs->fail_mod)
				atomic_fetch_add(a->bad, 1);
		}
	}
	return NULL;
}

static void run_workers(worker_arg *tmpl, int nthreads, uint64_t seed)
{
	pthread_t t[32];
	worker_arg a[32];
	for (int i = 0; i < nthreads; i++) {
		a[i] = *tmpl;
		a[i].seed = seed + (uint64_t)i * 7919 + 1;
		pthread_create(&t[i], NULL, get_worker, &a[i]);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
}

static void test_one_fill_per_key(uint64_t seed)
{
	fake_store fs = {.fill_sleep_us = 300};
	mfs_cache *c;
	const size_t len = 16 << 10;
	const unsigned nkeys = 64;
	REQUIRE(mfs_cache_create(nkeys * len * 2, 0, &c) == 0);
	atomic_int bad = 0, errs = 0;
	worker_arg tmpl = {c, &fs, 0, 400, nkeys, len, 0, &bad, &errs};
	run_workers(&tmpl, 16, seed);
	CHECK_EQ_INT(atomic_load(&bad), 0);
	CHECK_EQ_INT(atomic_load(&errs), 0);
	int once = 1;
	for (unsigned i = 0; i < nkeys; i++)
		once &= atomic_load(&fs.fills[i]) <= 1;
	CHECK(once);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK(st.waits > 0); /* the race really happened */
	CHECK_EQ_INT(st.evictions, 0);
	CHECK_EQ_INT(st.fills, st.misses);
	mfs_cache_free(c);
}

/* ---- byte budget under pressure, with prefetch ---- */

static void test_budget(uint64_t seed, int use_prefetch)
{
	fake_store fs = {0};
	mfs_cache *c;
	const size_t len = 32 << 10;
	const int nthreads = 8;
	const size_t budget = 10 * len;
	REQUIRE(mfs_cache_create(budget, use_prefetch ? 2 : 0, &c) == 0);
	atomic_int bad = 0, errs = 0;
	worker_arg tmpl = {c, &fs, 0, 1500, 200, len, use_prefetch, &bad, &errs};
	run_workers(&tmpl, nthreads, seed);
	CHECK_EQ_INT(atomic_load(&bad), 0);
	CHECK_EQ_INT(atomic_load(&errs), 0);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK(st.evictions > 0);
	/* the overshoot is bounded by what is pinned or in flight at once */
	CHECK(st.bytes_peak <= budget + (size_t)(nthreads + 2 + 1) * len);
	if (use_prefetch)
		CHECK(st.prefetch_queued > 0);
	/* with every pin given back and the workers idle, we are within budget */
	mfs_cache_drain(c, &fs);
	mfs_cache_stats_get(c, &st);
	CHECK(st.bytes <= budget);
	CHECK(st.entries * len == st.bytes);
	mfs_cache_free(c);
}

static void test_pinned_not_evicted(void)
{
	fake_store fs = {0};
	mfs_cache *c;
	const size_t len = 8192;
	REQUIRE(mfs_cache_create(4 * len, 0, &c) == 0);
	mfs_chunk_key k0 = key_of(0);
	mfs_cache_entry *pinned;
	REQUIRE(mfs_cache_get(c, &k0, len, fake_fill, &fs, NULL, &pinned) == 0);
	for (unsigned id = 1; id < 50; id++) {
		mfs_chunk_key k = key_of(id);
		mfs_cache_entry *e;
		CHECK_EQ_INT(mfs_cache_get(c, &k, len, fake_fill, &fs, NULL, &e), 0);
		mfs_cache_release(c, e);
	}
	CHECK(data_ok(0, pinned, len));
	mfs_cache_entry *again;
	CHECK_EQ_INT(mfs_cache_get(c, &k0, len, fake_fill, &fs, NULL, &again), 0);
	CHECK(again == pinned);
	CHECK_EQ_INT(atomic_load(&fs.fills[0]), 1);
	mfs_cache_release(c, again);
	mfs_cache_release(c, pinned);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK(st.bytes <= 4 * len);
	CHECK_EQ_INT(st.evictions, 49 + 1 - 4);
	/* a tiny budget still admits one chunk at a time */
	mfs_cache_free(c);
	REQUIRE(mfs_cache_create(100, 0, &c) == 0);
	mfs_cache_entry *e;
	CHECK_EQ_INT(mfs_cache_get(c, &k0, len, fake_fill, &fs, NULL, &e), 0);
	CHECK(data_ok(0, e, len));
	mfs_cache_release(c, e);
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.bytes, 0);
	mfs_cache_free(c);
}

/* ---- drop-behind: wholly served entries are recycled before the cache grows ---- */

static mfs_cache_entry *get_id(mfs_cache *c, fake_store *fs, unsigned id, size_t len)
{
	mfs_chunk_key k = key_of(id);
	mfs_cache_entry *e = NULL;
	CHECK_EQ_INT(mfs_cache_get(c, &k, len, fake_fill, fs, NULL, &e), 0);
	return e;
}

static void test_drop_behind(void)
{
	fake_store fs = {0};
	mfs_cache *c;
	const size_t len = 4096;
	mfs_cache_stats st;
	REQUIRE(mfs_cache_create(1 << 20, 0, &c) == 0); /* room for 256: no budget eviction */

	/* served in two halves, by two pins: spent only when both are back */
	mfs_cache_entry *a = get_id(c, &fs, 1, len), *a2 = get_id(c, &fs, 1, len);
	mfs_cache_release_served(c, a, len / 2);
	mfs_cache_entry *b = get_id(c, &fs, 2, len); /* a is pinned: stays */
	CHECK(data_ok(1, a2, len));
	mfs_cache_release_served(c, a2, len / 2);
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.drop_behind, 0);
	CHECK_EQ_INT(st.entries, 2);

	/* partly served b stays; a new fill recycles the spent a, not b */
	mfs_cache_release_served(c, b, len - 1);
	mfs_cache_release(c, get_id(c, &fs, 3, len));
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.drop_behind, 1);
	CHECK_EQ_INT(st.evictions, 1);
	CHECK_EQ_INT(st.entries, 2);
	CHECK_EQ_INT(st.bytes, 2 * len);
	mfs_cache_entry *e = get_id(c, &fs, 2, len); /* b: still cached */
	CHECK(data_ok(2, e, len));
	CHECK_EQ_INT(atomic_load(&fs.fills[2]), 1);
	mfs_cache_release(c, e);
	e = get_id(c, &fs, 1, len); /* a: decoded again, same bytes */
	CHECK(data_ok(1, e, len));
	CHECK_EQ_INT(atomic_load(&fs.fills[1]), 2);
	mfs_cache_release(c, e);

	/* a stream: each entry wholly served once; the cache stays at a few entries
	 * however long the stream, and every get sees its own bytes */
	for (unsigned id = 10; id < 200; id++) {
		e = get_id(c, &fs, id, len);
		CHECK(data_ok(id, e, len));
		mfs_cache_release_served(c, e, len);
	}
	mfs_cache_stats_get(c, &st);
	CHECK(st.entries <= 4);
	CHECK(st.bytes_peak <= 5 * len);

	/* a spent entry got again before it is recycled is a hit, valid bytes */
	e = get_id(c, &fs, 199, len);
	CHECK(data_ok(199, e, len));
	CHECK_EQ_INT(atomic_load(&fs.fills[199]), 1);
	mfs_cache_release(c, e);

	/* a bigger fill recycles as many spent entries as it needs, no more:
	 * four spent at once (pinned together, then served) */
	mfs_cache_entry *four[4];
	for (unsigned i = 0; i < 4; i++)
		four[i] = get_id(c, &fs, 210 + i, len);
	for (unsigned i = 0; i < 4; i++)
		mfs_cache_release_served(c, four[i], len);
	mfs_cache_stats_get(c, &st);
	uint64_t before = st.drop_behind;
	mfs_cache_release(c, get_id(c, &fs, 220, 2 * len));
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.drop_behind - before, 2);
	for (unsigned i = 0; i < 2; i++) { /* the two spent first are still there
					     (the cold end takes the latest spent) */
		e = get_id(c, &fs, 210 + i, len);
		CHECK_EQ_INT(atomic_load(&fs.fills[210 + i]), 1);
		mfs_cache_release(c, e);
	}
	mfs_cache_free(c);
}

/*
 * A chunk its fill says is shared (a base's chunk fine-tunes decode against)
 * is not dropped behind when wholly served: a stream of other chunks
 * recycles their own memory and leaves it decoded for the next reader.
 */
static void test_shared_kept(void)
{
	fake_store fs = {.shared_from = 1, .shared_to = 9};
	mfs_cache *c;
	const size_t len = 4096;
	REQUIRE(mfs_cache_create(1 << 20, 0, &c) == 0);
	for (unsigned id = 1; id < 9; id++) /* the base: served whole */
		mfs_cache_release_served(c, get_id(c, &fs, id, len), len);
	for (unsigned id = 20; id < 120; id++) /* another stream */
		mfs_cache_release_served(c, get_id(c, &fs, id, len), len);
	for (unsigned id = 1; id < 9; id++) { /* the base again: all hits */
		mfs_cache_entry *e = get_id(c, &fs, id, len);
		CHECK(data_ok(id, e, len));
		CHECK_EQ_INT(atomic_load(&fs.fills[id]), 1);
		mfs_cache_release(c, e);
	}
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK(st.entries <= 8 + 4); /* the other stream still recycled itself */
	mfs_cache_free(c);
}

/* ---- a failed fill reaches every waiter and is not cached ---- */

typedef struct err_arg {
	mfs_cache *c;
	fake_store *fs;
	int rc;
	pthread_barrier_t *bar;
} err_arg;

static void *err_worker(void *p)
{
	err_arg *a = p;
	mfs_chunk_key k = key_of(34); /* 34 % 17 == 0: fails */
	mfs_cache_entry *e = NULL;
	pthread_barrier_wait(a->bar);
	a->rc = mfs_cache_get(a->c, &k, 4096, fake_fill, a->fs, NULL, &e);
	if (a->rc == 0)
		mfs_cache_release(a->c, e);
	return NULL;
}

static void test_error_propagation(void)
{
	fake_store fs = {.fail_mod = 17, .fill_sleep_us = 100000};
	mfs_cache *c;
	REQUIRE(mfs_cache_create(1 << 20, 0, &c) == 0);
	enum { N = 8 };
	pthread_t t[N];
	err_arg a[N];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, N);
	for (int i = 0; i < N; i++) {
		a[i] = (err_arg){c, &fs, 1, &bar};
		pthread_create(&t[i], NULL, err_worker, &a[i]);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < N; i++)
		CHECK_EQ_INT(a[i].rc, MFS_E_CORRUPT);
	/* all arrived within the 100 ms decode: one fill, N-1 waiters */
	CHECK_EQ_INT(atomic_load(&fs.fills[34]), 1);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK_EQ_INT(st.entries, 0);
	CHECK_EQ_INT(st.bytes, 0);
	CHECK_EQ_INT(st.fill_errors, 1);
	/* not cached: the next get decodes again */
	fs.fill_sleep_us = 0;
	mfs_chunk_key k = key_of(34);
	mfs_cache_entry *e;
	CHECK_EQ_INT(mfs_cache_get(c, &k, 4096, fake_fill, &fs, NULL, &e), MFS_E_CORRUPT);
	CHECK_EQ_INT(atomic_load(&fs.fills[34]), 2);
	mfs_cache_free(c);
}

/* ---- prefetch: decoded on the pool, each once; drain ---- */

static void test_prefetch(void)
{
	fake_store fs = {.fill_sleep_us = 2000};
	mfs_cache *c;
	const size_t len = 64 << 10;
	REQUIRE(mfs_cache_create(64 * len, 2, &c) == 0);
	for (unsigned id = 0; id < 16; id++) {
		mfs_chunk_key k = key_of(id);
		CHECK_EQ_INT(mfs_cache_prefetch(c, &k, len, fake_fill, &fs), 0);
	}
	/* queueing again is a no-op */
	mfs_chunk_key k5 = key_of(5);
	CHECK_EQ_INT(mfs_cache_prefetch(c, &k5, len, fake_fill, &fs), 0);
	for (unsigned id = 0; id < 16; id++) {
		mfs_chunk_key k = key_of(id);
		mfs_cache_entry *e;
		CHECK_EQ_INT(mfs_cache_get(c, &k, len, fake_fill, &fs, NULL, &e), 0);
		CHECK(data_ok(id, e, len));
		mfs_cache_release(c, e);
	}
	mfs_cache_drain(c, &fs);
	int once = 1;
	for (unsigned id = 0; id < 16; id++)
		once &= atomic_load(&fs.fills[id]) == 1;
	CHECK(once);
	mfs_cache_stats st;
	mfs_cache_stats_get(c, &st);
	CHECK(st.prefetch_fills > 0);
	CHECK_EQ_INT(st.prefetch_fills + st.misses, 16);
	/* half the budget at most in flight for prefetch */
	fake_store slow = {.fill_sleep_us = 20000};
	int busy = 0;
	for (unsigned id = 100; id < 160; id++) {
		mfs_chunk_key k = key_of(id);
		busy += mfs_cache_prefetch(c, &k, len, fake_fill, &slow) == MFS_E_BUSY;
	}
	CHECK(busy > 0);
	mfs_cache_drain(c, &slow);
	CHECK_EQ_INT(atomic_load(&slow.in_fill), 0);
	mfs_cache_stats_get(c, &st);
	CHECK(st.bytes <= 64 * len);
	mfs_cache_free(c);
	/* free with jobs still queued */
	REQUIRE(mfs_cache_create(64 * len, 1, &c) == 0);
	for (unsigned id = 0; id < 20; id++) {
		mfs_chunk_key k = key_of(id);
		mfs_cache_prefetch(c, &k, len, fake_fill, &slow);
	}
	mfs_cache_free(c);
}

int main(void)
{
	uint64_t seed = test_seed();
	RUN(test_basic);
	test_one_fill_per_key(seed);
	fprintf(stderr, "ok   test_one_fill_per_key\n");
	test_budget(seed, 0);
	test_budget(seed ^ 0x55, 1);
	fprintf(stderr, "ok   test_budget\n");
	RUN(test_pinned_not_evicted);
	RUN(test_drop_behind);
	RUN(test_shared_kept);
	RUN(test_error_propagation);
	RUN(test_prefetch);
	return test_report();
}
