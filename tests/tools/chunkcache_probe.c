/*
 * chunkcache_probe - drive the chunk cache (remote/chunkcache.h) from a test:
 * the chunks of a local store, whose packs were pushed to a bucket, are read
 * through a cache of the bucket and compared with the local store's bytes.
 *
 *   chunkcache_probe STORE CACHEDIR s3://B/PREFIX MAXBYTES COMMAND [ARGS]
 *     locs                  "KEYHEX PACK OFF LEN" of every chunk, in key order
 *     read THREADS ROUNDS   THREADS threads, each reading every chunk ROUNDS
 *                           times in an order of its own (seeded), every
 *                           payload compared with the local store's and
 *                           decoded (verify callback: the decode re-hashes
 *                           to the key); errors are counted, not fatal
 *     one KEYHEX            read one chunk
 *     prefetch THREADS      prefetch every pack's entries in runs of at most
 *                           8 MiB (THREADS prefetch threads), wait for them,
 *                           then read every chunk once
 *   The verify callback decodes every payload of a chunk without references
 *   and checks its hash (as a store would).
 * Prints on stdout "stats hits=H misses=M coalesced=C errors=E eio=I
 * corrupt=K fetched=B evictions=V torn=T entries=N disk=D seconds=S
 * mbps=R" and each distinct error message (at most 5) on stderr as
 * "error: code=N MESSAGE".  Exit: 0 no error; 7 some -EIO; 8 some
 * MFS_E_CORRUPT (and no -EIO); 10 a wrong byte was served; 1 other.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chunkcache.h"
#include "codec.h"
#include "s3.h"
#include "store.h"

typedef struct chunk {
	mfs_chunk_key key;
	mfs_chunk_loc loc;
	uint32_t raw_len;
	int n_refs;
} chunk;

typedef struct probe {
	mfs_store *s;
	mfs_chunkcache *cc;
	chunk *v;
	size_t n, cap;
	int rounds;
	pthread_mutex_t mu;
	uint64_t errors, eio, corrupt, wrong, bytes;
	char msgs[5][MFS_ERRMSG_MAX];
	int nmsg;
} probe;

static int collect(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
		   uint64_t refcount)
{
	probe *p = ud;
	if (!v->in_pack)
		return 0;
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 256;
		p->v = realloc(p->v, p->cap * sizeof *p->v);
		if (!p->v)
			return -ENOMEM;
	}
	p->v[p->n++] = (chunk){*key, v->loc, v->raw_len, (int)v->n_refs};
	return 0;
}

/* verify: decode and re-hash, as the store's read path does */
static int verify(void *ud, const mfs_chunk_key *key, const void *payload, size_t len,
		  mfs_errmsg *e)
{
	probe *p = ud;
	mfs_txn *t;
	int rc = mfs_txn_begin(p->s, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	mfs_chunk_view v;
	rc = mfs_chunk_get(t, key, &v);
	mfs_txn_abort(t);
	if (rc < 0)
		return mfs_err(e, rc, "no record");
	if (v.n_refs)
		return 0; /* would need its references' bytes: the length was checked */
	v.payload = payload;
	v.payload_len = len;
	void *dst = malloc(v.raw_len ? v.raw_len : 1);
	mfs_codec_ws *ws = NULL;
	if (!dst || mfs_codec_ws_create(&ws) < 0) {
		free(dst);
		return -ENOMEM;
	}
	rc = mfs_chunk_decode(&v, key, NULL, dst, v.raw_len, ws);
	mfs_codec_ws_free(ws);
	free(dst);
	return rc < 0 ? mfs_err(e, rc, "it does not decode to bytes that hash to its key")
		      : 0;
}

static void note_error(probe *p, int rc, const char *msg)
{
	pthread_mutex_lock(&p->mu);
	p->errors++;
	if (rc == -EIO)
		p->eio++;
	else if (rc == MFS_E_CORRUPT)
		p->corrupt++;
	int seen = 0;
	for (int i = 0; i < p->nmsg; i++)
		seen |= !strcmp(p->msgs[i], msg);
	if (!seen && p->nmsg < 5) {
		snprintf(p->msgs[p->nmsg++], MFS_ERRMSG_MAX, "%s", msg);
		fprintf(stderr, "error: code=%d %s\n", rc, msg);
	}
	pthread_mutex_unlock(&p->mu);
}

static int read_one(probe *p, const chunk *c, uint8_t *buf, uint8_t *want)
{
	mfs_errmsg e = {0};
	int rc = mfs_chunkcache_get(p->cc, &c->key, &c->loc, buf, c->loc.len, NULL, &e);
	if (rc < 0) {
		note_error(p, rc, e.msg[0] ? e.msg : mfs_strerror(rc));
		return rc;
	}
	mfs_chunk_view v = {.in_pack = 1, .loc = c->loc, .payload_len = c->loc.len};
	if (mfs_chunk_payload_read(p->s, &c->key, &v, want, c->loc.len, NULL) < 0 ||
	    memcmp(buf, want, c->loc.len)) {
		char hex[33];
		fprintf(stderr, "WRONG BYTES served for chunk %s\n",
			mfs_chunk_key_hex(&c->key, hex));
		pthread_mutex_lock(&p->mu);
		p->wrong++;
		pthread_mutex_unlock(&p->mu);
		return -1;
	}
	pthread_mutex_lock(&p->mu);
	p->bytes += c->loc.len;
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static int by_loc(const void *a, const void *b)
{
	const chunk *x = a, *y = b;
	if (x->loc.pack != y->loc.pack)
		return x->loc.pack < y->loc.pack ? -1 : 1;
	return x->loc.off < y->loc.off ? -1 : x->loc.off > y->loc.off;
}

typedef struct worker {
	probe *p;
	unsigned seed;
	pthread_t th;
} worker;

static void *run_worker(void *arg)
{
	worker *w = arg;
	probe *p = w->p;
	size_t *order = malloc(p->n * sizeof *order);
	uint32_t maxlen = 1;
	for (size_t i = 0; i < p->n; i++)
		maxlen = p->v[i].loc.len > maxlen ? p->v[i].loc.len : maxlen;
	uint8_t *buf = malloc(maxlen), *want = malloc(maxlen);
	if (!order || !buf || !want)
		goto out;
	for (int r = 0; r < p->rounds; r++) {
		for (size_t i = 0; i < p->n; i++)
			order[i] = i;
		for (size_t i = p->n; i > 1; i--) {
			size_t j = (size_t)rand_r(&w->seed) % i, t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
		for (size_t i = 0; i < p->n; i++)
			read_one(p, &p->v[order[i]], buf, want);
	}
out:
	free(order);
	free(buf);
	free(want);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr,
			"usage: chunkcache_probe STORE CACHEDIR s3://B/P MAXBYTES "
			"locs|read THREADS ROUNDS|one KEYHEX\n");
		return 1;
	}
	probe p = {.rounds = 1};
	pthread_mutex_init(&p.mu, NULL);
	mfs_errmsg e = {0};
	mfs_s3_config cfg;
	mfs_s3 *s3 = NULL;
	mfs_chunkcache_opts o = {.dir = argv[2],
				 .max_bytes = strtoull(argv[4], NULL, 10),
				 .verify = verify,
				 .verify_ud = &p};
	if (mfs_store_open(argv[1], MFS_STORE_RDONLY, &p.s, &e) < 0 ||
	    mfs_s3_url_parse(argv[3], &o.url, &e) < 0 ||
	    mfs_s3_config_load(&cfg, &e) < 0) {
		fprintf(stderr, "error: code=%d %s\n", e.code, e.msg);
		return 1;
	}
	const char *ct = getenv("PROBE_ATTEMPTS");
	if (ct)
		cfg.attempts = atoi(ct);
	if (mfs_s3_open(&cfg, &s3, &e) < 0) {
		fprintf(stderr, "error: %s\n", e.msg);
		return 1;
	}
	o.s3 = s3;
	mfs_txn *t;
	int rc = mfs_txn_begin(p.s, MFS_TXN_READ, &t);
	if (rc == 0) {
		rc = mfs_chunks_foreach(t, collect, &p);
		mfs_txn_abort(t);
	}
	if (rc < 0) {
		fprintf(stderr, "error: listing the chunks: %s\n", mfs_strerror(rc));
		return 1;
	}
	if (!strcmp(argv[5], "locs")) {
		char hex[33];
		for (size_t i = 0; i < p.n; i++)
			printf("%s %016" PRIx64 " %" PRIu64 " %u\n",
			       mfs_chunk_key_hex(&p.v[i].key, hex), p.v[i].loc.pack,
			       p.v[i].loc.off, p.v[i].loc.len);
		goto done;
	}
	double t0 = now_s();
	if ((rc = mfs_chunkcache_open(&o, &p.cc, &e)) < 0) {
		fprintf(stderr, "error: code=%d %s\n", rc, e.msg);
		return 1;
	}
	if (!strcmp(argv[5], "prefetch") && argc == 7) {
		/* runs of adjacent entries, in pack order, as a reader asks for them */
		mfs_chunkcache_close(p.cc);
		o.prefetch_threads = (unsigned)atoi(argv[6]);
		if ((rc = mfs_chunkcache_open(&o, &p.cc, &e)) < 0) {
			fprintf(stderr, "error: code=%d %s\n", rc, e.msg);
			return 1;
		}
		qsort(p.v, p.n, sizeof *p.v, by_loc);
		for (size_t i = 0; i < p.n;) {
			size_t j = i + 1;
			uint64_t a = p.v[i].loc.off, end = a + 32 + p.v[i].loc.len;
			while (j < p.n && p.v[j].loc.pack == p.v[i].loc.pack &&
			       p.v[j].loc.off == end &&
			       end + 32 + p.v[j].loc.len - a <= (8u << 20)) {
				end += 32 + p.v[j].loc.len;
				j++;
			}
			mfs_chunkcache_prefetch(p.cc, p.v[i].loc.pack, a, end - a);
			i = j;
		}
		mfs_chunkcache_drain(p.cc);
		p.rounds = 1;
		worker w = {&p, 1234u, 0};
		run_worker(&w);
	} else if (!strcmp(argv[5], "read") && argc == 8) {
		int nt = atoi(argv[6]);
		p.rounds = atoi(argv[7]);
		worker w[64];
		nt = nt < 1 ? 1 : nt > 64 ? 64 : nt;
		for (int i = 0; i < nt; i++) {
			w[i] = (worker){&p, 1234u + (unsigned)i, 0};
			pthread_create(&w[i].th, NULL, run_worker, &w[i]);
		}
		for (int i = 0; i < nt; i++)
			pthread_join(w[i].th, NULL);
	} else if (!strcmp(argv[5], "one") && argc == 7) {
		size_t i = 0;
		char hex[33];
		for (; i < p.n && strcmp(mfs_chunk_key_hex(&p.v[i].key, hex), argv[6]);
		     i++)
			;
		if (i == p.n) {
			fprintf(stderr, "error: no chunk %s in the store\n", argv[6]);
			return 1;
		}
		uint8_t *buf = malloc(p.v[i].loc.len), *want = malloc(p.v[i].loc.len);
		read_one(&p, &p.v[i], buf, want);
		free(buf);
		free(want);
	} else {
		fprintf(stderr, "error: unknown command %s\n", argv[5]);
		return 1;
	}
	double secs = now_s() - t0;
	mfs_chunkcache_stats st;
	mfs_chunkcache_stats_get(p.cc, &st);
	printf("stats hits=%" PRIu64 " misses=%" PRIu64 " coalesced=%" PRIu64
	       " errors=%" PRIu64 " eio=%" PRIu64 " corrupt=%" PRIu64 " fetched=%" PRIu64
	       " evictions=%" PRIu64 " torn=%" PRIu64 " entries=%" PRIu64 " disk=%" PRIu64
	       " prefetched=%" PRIu64 " prefetch_errors=%" PRIu64
	       " seconds=%.3f mbps=%.1f\n",
	       st.hits, st.misses, st.coalesced, p.errors, p.eio, p.corrupt,
	       st.bytes_fetched, st.evictions, st.torn, st.entries, st.disk_bytes,
	       st.prefetched, st.prefetch_errors, secs,
	       secs > 0 ? (double)st.bytes_fetched / secs / 1e6 : 0);
	mfs_chunkcache_close(p.cc);
done:
	mfs_s3_close(s3);
	mfs_store_close(p.s);
	free(p.v);
	if (p.wrong)
		return 10;
	if (p.eio)
		return 7;
	if (p.corrupt)
		return 8;
	return p.errors ? 1 : 0;
}
