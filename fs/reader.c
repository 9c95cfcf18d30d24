/*
 * reader.c - the read path: extent lookup, chunk decode + verify, copy out.
 */
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "cache.h"
#include "clock.h"
#include "fsutil.h"
#include "ioahead.h"
#include "pack.h"
#include "sha256.h"
#include "stream.h"

/*
 * The last failures to load a chunk's payload, with mfs_chunk_load's message
 * (for a remote store: the chunk, the s3:// object and why it could not be
 * read, e.g. the server unreachable), so that mfs_rfile_explain, which the
 * mount's line for a failed read calls, says what failed rather than only
 * a code.  A few are enough: the explain follows the failure it explains.
 */
#define LOAD_ERRORS 8
/* An older one is not this failure's (a later read may fail another way). */
#define LOAD_ERROR_MS 10000
typedef struct load_error {
	mfs_chunk_key key;
	int code;    /* 0: an empty slot */
	uint64_t ms; /* when (mfs_now_ms) */
	char msg[MFS_ERRMSG_MAX];
} load_error;

struct mfs_reader {
	mfs_store *store;
	mfs_cache *cache;
	unsigned prefetch; /* chunks ahead of a sequential reader */
	mfs_ioahead *io;   /* optional: asks the disk for records ahead */
	uint64_t whole_max; /* mfs_reader_set_whole_file */
	mfs_gpu_backend *gpu; /* optional: takes the rans chunks of prefetch batches */
	pthread_mutex_t err_mu; /* errs, err_next */
	load_error errs[LOAD_ERRORS];
	unsigned err_next;
};

/*
 * A view (reader.h): one read transaction, shared by the files opened in it
 * and freed with the last of them.  Its lookups are serialised by @mu (an
 * LMDB transaction is not for concurrent use); the payloads they return stay
 * valid while the view lives, and are decoded unlocked.
 */
struct mfs_view {
	pthread_mutex_t mu;
	mfs_txn *txn;
	uint64_t generation;
	int refs; /* atomic */
};

/* Chunk size the prefetch window is counted in (the ingest default). */
#define PREFETCH_UNIT ((uint64_t)1 << 20)
/* A sequential reader's pack entries are asked for from the disk this many
 * prefetch windows ahead (read_ahead_io). */
#define IO_AHEAD_WINDOWS 4
/* One request reads entries at most this far apart, up to this much. */
#define IO_AHEAD_GAP ((uint64_t)64 << 10)
#define IO_AHEAD_MAX ((uint64_t)8 << 20)

int mfs_reader_create(mfs_store *store, mfs_cache *cache, mfs_reader **out)
{
	*out = calloc(1, sizeof **out);
	if (!*out)
		return -ENOMEM;
	(*out)->store = store;
	(*out)->cache = cache;
	pthread_mutex_init(&(*out)->err_mu, NULL);
	return 0;
}

void mfs_reader_free(mfs_reader *r)
{
	if (!r)
		return;
	mfs_cache_drain(r->cache, r); /* no worker may still decode with r */
	pthread_mutex_destroy(&r->err_mu);
	free(r);
}

void mfs_reader_set_prefetch(mfs_reader *r, unsigned chunks)
{
	r->prefetch = chunks;
}

void mfs_reader_set_ioahead(mfs_reader *r, mfs_ioahead *io)
{
	r->io = io;
}

void mfs_reader_set_whole_file(mfs_reader *r, uint64_t max_bytes)
{
	r->whole_max = max_bytes;
}

void mfs_reader_set_gpu(mfs_reader *r, mfs_gpu_backend *g)
{
	r->gpu = g;
}

int mfs_view_begin(mfs_reader *r, mfs_view **out)
{
	*out = NULL;
	mfs_view *v = calloc(1, sizeof *v);
	if (!v)
		return -ENOMEM;
	int rc = mfs_txn_begin(r->store, MFS_TXN_READ, &v->txn);
	if (rc == 0 && (rc = mfs_store_generation(v->txn, &v->generation)) < 0)
		mfs_txn_abort(v->txn);
	if (rc < 0) {
		free(v);
		return rc;
	}
	pthread_mutex_init(&v->mu, NULL);
	v->refs = 1;
	*out = v;
	return 0;
}

void mfs_view_ref(mfs_view *v)
{
	__atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
}

void mfs_view_unref(mfs_view *v)
{
	if (!v || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	mfs_txn_abort(v->txn);
	pthread_mutex_destroy(&v->mu);
	free(v);
}

uint64_t mfs_view_generation(const mfs_view *v)
{
	return v->generation;
}

int mfs_view_has_blob(mfs_view *v, const char *repo, const char *etag)
{
	mfs_blob_info bi; /* mfs_blob_get: a name too long is MFS_E_NOTFOUND */
	pthread_mutex_lock(&v->mu);
	int rc = mfs_blob_get(v->txn, repo, etag, &bi, NULL);
	pthread_mutex_unlock(&v->mu);
	return rc == 0 ? 1 : rc == MFS_E_NOTFOUND ? 0 : rc;
}

int mfs_rfile_open_in(mfs_reader *r, mfs_view *v, const char *repo, const char *etag,
		      mfs_rfile **out)
{
	*out = NULL;
	if (strlen(repo) > MFS_REPO_ID_MAX || strlen(etag) > MFS_ETAG_MAX)
		return MFS_E_NOTFOUND;
	mfs_rfile *f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	mfs_blob_info bi;
	pthread_mutex_lock(&v->mu);
	int rc = mfs_blob_get(v->txn, repo, etag, &bi, &f->extents);
	pthread_mutex_unlock(&v->mu);
	if (rc == 0 && !(f->served = calloc(bi.n_extents ? bi.n_extents : 1, sizeof(uint64_t))))
		rc = -ENOMEM;
	if (rc < 0) {
		free(f->extents);
		free(f);
		return rc;
	}
	mfs_view_ref(v);
	f->view = v;
	f->reader = r;
	strcpy(f->repo, repo);
	strcpy(f->etag, etag);
	f->size = bi.size;
	memcpy(f->sha256, bi.sha256, 32);
	f->n_extents = bi.n_extents;
	*out = f;
	return 0;
}

int mfs_rfile_open(mfs_reader *r, const char *repo, const char *etag, mfs_rfile **out)
{
	*out = NULL;
	mfs_view *v;
	int rc = mfs_view_begin(r, &v);
	if (rc < 0)
		return rc;
	rc = mfs_rfile_open_in(r, v, repo, etag, out);
	mfs_view_unref(v); /* the file holds its own reference */
	return rc;
}

static void spill_release(mfs_spill *sp, uint64_t off, uint64_t size);

void mfs_rfile_close(mfs_rfile *f)
{
	if (!f)
		return;
	if (f->spill)
		spill_release(f->spill, f->spill_off, f->size);
	if (f->reader->io) /* nor the read-ahead thread */
		mfs_ioahead_drain(f->reader->io, f);
	mfs_cache_drain(f->reader->cache, f); /* no worker may still use f */
	mfs_view_unref(f->view);
	free(f->extents);
	free(f->served);
	free(f);
}

/*
 * The references of a chunk, resolved to decoded bytes: through the cache
 * when the reader has one (a base shared by many fine-tunes is decoded once,
 * and a fine-tune read after its base decodes nothing of it again), else
 * into the workspace's REF slots.
 */
typedef struct ref_set {
	size_t n;
	mfs_ref_data data[MFS_REFS_MAX];
	mfs_cache_entry *pin[MFS_REFS_MAX];
} ref_set;

static void ref_set_release(mfs_reader *r, ref_set *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		mfs_cache_release(r->cache, rs->pin[i]);
	rs->n = 0;
}

static int cache_fill(void *ud, const mfs_chunk_key *key, void *dst, size_t len,
		      mfs_codec_ws *ws);

/* mfs_chunk_load, its message kept for mfs_rfile_explain when it fails. */
static int chunk_load(mfs_reader *r, const mfs_chunk_key *key, mfs_chunk_view *v,
		      mfs_codec_ws *ws)
{
	mfs_errmsg e = {0};
	int rc = mfs_chunk_load(r->store, key, v, ws, &e);
	if (rc < 0) {
		pthread_mutex_lock(&r->err_mu);
		load_error *le = &r->errs[r->err_next++ % LOAD_ERRORS];
		le->key = *key;
		le->code = rc;
		le->ms = mfs_now_ms();
		snprintf(le->msg, sizeof le->msg, "%s",
			 e.msg[0] ? e.msg : mfs_strerror(rc));
		pthread_mutex_unlock(&r->err_mu);
	}
	return rc;
}

/*
 * Append to @p buf (at @p n of @p cap) the newest load failure of chunk
 * @p key kept in the last LOAD_ERROR_MS, as ": MESSAGE" (a message that starts by naming
 * the chunk loses that part: the caller named it).  @return the new length
 */
static size_t load_error_explain(mfs_reader *r, const mfs_chunk_key *key, char *buf,
				 size_t n, size_t cap)
{
	char hex[33], lead[48];
	snprintf(lead, sizeof lead, "chunk %s: ", mfs_chunk_key_hex(key, hex));
	uint64_t now = mfs_now_ms();
	pthread_mutex_lock(&r->err_mu);
	for (unsigned k = 0; k < LOAD_ERRORS && n + 1 < cap; k++) {
		const load_error *le = &r->errs[(r->err_next - 1 - k) % LOAD_ERRORS];
		if (!le->code || now - le->ms > LOAD_ERROR_MS ||
		    memcmp(le->key.b, key->b, sizeof key->b) != 0)
			continue;
		const char *m = le->msg;
		if (strncmp(m, lead, strlen(lead)) == 0)
			m += strlen(lead);
		int w = snprintf(buf + n, cap - n, ": %s", m);
		n = w < 0 ? n : n + (size_t)w < cap ? n + (size_t)w : cap - 1;
		break;
	}
	pthread_mutex_unlock(&r->err_mu);
	return n;
}

/*
 * Decode reference @p i of chunk view @p v (whose referenced record is
 * @p rv, looked up in the same snapshot) and add its range to @p rs.  With a
 * cache and a file (@p f), the referenced chunk comes from the cache, filled
 * from @p f's view.  A missing or damaged referenced chunk is MFS_E_CORRUPT:
 * the chunk that needs it cannot be served.
 */
static int ref_resolve(mfs_reader *r, mfs_rfile *f, const mfs_chunk_view *v, size_t i,
		       const mfs_chunk_view *rv, ref_set *rs, mfs_codec_ws *ws)
{
	const mfs_chunk_ref *ref = &v->refs[i];
	if (mfs_chunk_ref_check(ref, rv) < 0)
		return MFS_E_CORRUPT;
	const uint8_t *bytes;
	rs->pin[rs->n] = NULL;
	int rc;
	if (r->cache && f) {
		rc = mfs_cache_get(r->cache, &ref->key, rv->raw_len, cache_fill, f, ws,
				   &rs->pin[rs->n]);
		if (rc < 0)
			return rc == MFS_E_NOTFOUND ? MFS_E_CORRUPT : rc;
		bytes = mfs_cache_entry_data(rs->pin[rs->n]);
	} else {
		void *buf = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_REF + (unsigned)i,
						 rv->raw_len ? rv->raw_len : 1);
		if (!buf)
			return -ENOMEM;
		mfs_chunk_view lv = *rv;
		if ((rc = chunk_load(r, &ref->key, &lv, ws)) < 0 ||
		    (rc = mfs_chunk_decode(&lv, &ref->key, NULL, buf, lv.raw_len, ws)) <
			0)
			return rc;
		bytes = buf;
	}
	rs->data[rs->n].role = ref->role;
	rs->data[rs->n].data = bytes + ref->off;
	rs->data[rs->n].len = ref->len;
	rs->n++;
	return 0;
}

/* Decode @p v (chunk @p key), its references first; @p rv: their records. */
static int decode_with_refs(mfs_reader *r, mfs_rfile *f, const mfs_chunk_view *v,
			    const mfs_chunk_view *rv, const mfs_chunk_key *key, void *dst,
			    size_t raw_len, mfs_codec_ws *ws)
{
	if (v->raw_len != raw_len)
		return MFS_E_CORRUPT;
	ref_set rs = {0};
	int rc = 0;
	for (size_t i = 0; i < v->n_refs && rc == 0; i++)
		rc = ref_resolve(r, f, v, i, &rv[i], &rs, ws);
	/* the payload after the references': their decodes load theirs into the
	 * same workspace slot */
	mfs_chunk_view lv = *v;
	if (rc == 0)
		rc = chunk_load(r, key, &lv, ws);
	if (rc == 0)
		rc = mfs_chunk_decode(&lv, key, v->n_refs ? rs.data : NULL, dst, raw_len,
				      ws);
	ref_set_release(r, &rs);
	return rc;
}

/* Look up the records of @p v's references in @p t. */
static int refs_lookup(mfs_txn *t, const mfs_chunk_view *v, mfs_chunk_view *rv)
{
	for (size_t i = 0; i < v->n_refs; i++) {
		int rc = mfs_chunk_get(t, &v->refs[i].key, &rv[i]);
		if (rc < 0)
			return rc == MFS_E_NOTFOUND ? MFS_E_CORRUPT : rc;
	}
	return 0;
}

int mfs_reader_decode_chunk(mfs_reader *r, const mfs_chunk_key *key, void *dst,
			    size_t raw_len, mfs_codec_ws *ws)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(r->store, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	mfs_chunk_view v, rv[MFS_REFS_MAX];
	rc = mfs_chunk_get(t, key, &v);
	if (rc == 0)
		rc = refs_lookup(t, &v, rv);
	if (rc == 0)
		rc = decode_with_refs(r, NULL, &v, rv, key, dst, raw_len, ws);
	mfs_txn_abort(t);
	return rc;
}

/*
 * Decode a chunk of @p f from the file's view: the lookups under the view's
 * lock, the decode (the expensive part) outside it.  References come
 * through the cache when @p via_cache (the reader's cache fill), else they
 * are decoded here.  For the cache: MFS_CACHE_FILL_SHARED when more than one
 * extent or chunk uses the chunk.
 */
static int rfile_decode_ex(mfs_rfile *f, const mfs_chunk_key *key, void *dst, size_t len,
			   int via_cache, mfs_codec_ws *ws)
{
	mfs_chunk_view v, rv[MFS_REFS_MAX];
	uint64_t uses = 0;
	pthread_mutex_lock(&f->view->mu);
	int rc = mfs_chunk_get(f->view->txn, key, &v);
	if (rc == 0)
		rc = refs_lookup(f->view->txn, &v, rv);
	if (rc == 0 && via_cache)
		mfs_chunk_refcount(f->view->txn, key, &uses); /* 0 when unknown */
	pthread_mutex_unlock(&f->view->mu);
	if (rc < 0)
		return rc;
	if (v.raw_len != len)
		return MFS_E_CORRUPT;
	if (v.n_refs && !__atomic_load_n(&f->has_refs, __ATOMIC_RELAXED))
		__atomic_store_n(&f->has_refs, 1, __ATOMIC_RELAXED);
	rc = decode_with_refs(f->reader, via_cache ? f : NULL, &v, rv, key, dst, len, ws);
	return rc == 0 && uses > 1 ? MFS_CACHE_FILL_SHARED : rc;
}

static int rfile_decode(mfs_rfile *f, const mfs_chunk_key *key, void *dst, size_t len,
			mfs_codec_ws *ws)
{
	return rfile_decode_ex(f, key, dst, len, 0, ws);
}

static const char *role_word(mfs_ref_role r)
{
	return r == MFS_REF_BASE ? "base" : r == MFS_REF_QUANT ? "quantized" : "scales";
}

void mfs_rfile_explain(mfs_rfile *f, size_t i, char *buf, size_t cap)
{
	char hex[33] = "?";
	size_t n = 0;
	buf[0] = '\0';
	if (!f->view || i >= f->n_extents) {
		snprintf(buf, cap, "chunk ?");
		return;
	}
	n += (size_t)snprintf(buf, cap, "chunk %s", mfs_chunk_key_hex(&f->extents[i].key, hex));
	if (n >= cap)
		return;
	/* why its payload could not be loaded, when that is what failed */
	n = load_error_explain(f->reader, &f->extents[i].key, buf, n, cap);
	mfs_chunk_view v;
	pthread_mutex_lock(&f->view->mu);
	int rc = mfs_chunk_get(f->view->txn, &f->extents[i].key, &v);
	pthread_mutex_unlock(&f->view->mu);
	if (rc < 0 || v.n_refs == 0)
		return;
	mfs_codec_ws *ws = NULL;
	if (mfs_codec_ws_create(&ws) < 0)
		return;
	for (uint32_t k = 0; k < v.n_refs && n < cap; k++) {
		const mfs_chunk_ref *ref = &v.refs[k];
		mfs_chunk_view rv;
		pthread_mutex_lock(&f->view->mu);
		int grc = mfs_chunk_get(f->view->txn, &ref->key, &rv);
		pthread_mutex_unlock(&f->view->mu);
		const char *state = "which is sound: the chunk's own payload is damaged";
		if (grc == MFS_E_NOTFOUND)
			state = "which is not stored";
		else if (grc < 0)
			state = "whose record is damaged";
		else if (mfs_chunk_ref_check(ref, &rv) < 0)
			state = "which does not hold the range it needs";
		else {
			void *tmp = malloc(rv.raw_len ? rv.raw_len : 1);
			int lrc =
			    tmp ? chunk_load(f->reader, &ref->key, &rv, ws) : -ENOMEM;
			int drc = lrc;
			if (drc == 0)
				drc = mfs_chunk_decode(&rv, &ref->key, NULL, tmp,
						       rv.raw_len, ws);
			free(tmp);
			if (lrc < 0 && lrc != MFS_E_CORRUPT)
				state = "which cannot be read now";
			else if (drc < 0)
				state = "which fails its check";
		}
		n += (size_t)snprintf(buf + n, cap - n, "%s %s chunk %s, %s%s",
				      k ? ";" : " (decodes against", role_word(ref->role),
				      mfs_chunk_key_hex(&ref->key, hex), state,
				      k + 1 == v.n_refs ? ")" : "");
	}
	mfs_codec_ws_free(ws);
}

int mfs_rfile_decode_extent(mfs_rfile *f, size_t i, void *dst, mfs_codec_ws *ws)
{
	if (i >= f->n_extents)
		return MFS_E_INVAL;
	return rfile_decode(f, &f->extents[i].key, dst, f->extents[i].len, ws);
}

static int cache_fill(void *ud, const mfs_chunk_key *key, void *dst, size_t len,
		      mfs_codec_ws *ws)
{
	return rfile_decode_ex(ud, key, dst, len, 1, ws);
}

/*
 * Coalesces the entries asked for from the disk: a run of entries of one
 * pack that lie one after another (ingest writes a file's chunks in order)
 * is asked for in one request, flushed when the next one is not adjacent,
 * lies in another pack, or the run reaches its cap.
 */
typedef struct io_run {
	mfs_store *s;
	uint64_t pack, a, end, cap;
} io_run;

static void io_run_flush(io_run *x)
{
	if (x->end)
		mfs_pack_will_need(x->s, x->pack, x->a, x->end - x->a);
	x->end = 0;
}

static void io_run_add(io_run *x, const mfs_chunk_view *v)
{
	if (!v->in_pack)
		return;
	uint64_t q = v->loc.off, n = mfs_pack_entry_bytes(v->loc.len);
	if (x->end && v->loc.pack == x->pack && q >= x->a && q <= x->end + IO_AHEAD_GAP &&
	    q + n - x->a <= x->cap) {
		if (q + n > x->end)
			x->end = q + n;
		return;
	}
	io_run_flush(x);
	x->pack = v->loc.pack;
	x->a = q;
	x->end = q + n;
}

/*
 * The entries a delta's decode will also need: for extents [from, to) of
 * @p f whose entries were just asked for, look each record up and ask for
 * the entries of the chunks it decodes against (a fine-tune's base), so a
 * cold fine-tune's decodes do not each wait for their base's entry.  Only
 * for files where a delta has been decoded (f->has_refs): others pay
 * nothing.
 */
static void refs_ahead(mfs_txn *t, mfs_rfile *f, size_t from, size_t to)
{
	if (!__atomic_load_n(&f->has_refs, __ATOMIC_RELAXED))
		return; /* no delta seen in it: nothing more to ask for */
	io_run x = {.s = f->reader->store, .cap = IO_AHEAD_MAX / 2};
	for (size_t i = from; i < to; i++) {
		const mfs_extent *e = &f->extents[i];
		mfs_chunk_view v;
		if (__atomic_load_n(&f->served[i], __ATOMIC_RELAXED) >= e->len ||
		    mfs_chunk_get(t, &e->key, &v) < 0)
			continue;
		for (uint32_t r = 0; r < v.n_refs; r++) {
			mfs_chunk_view rv;
			if (mfs_chunk_get(t, &v.refs[r].key, &rv) == 0)
				io_run_add(&x, &rv);
		}
	}
	io_run_flush(&x);
}

/* Ask for the entries of extents [from, to) of @p f not served yet, in runs. */
static void ask_extents(mfs_txn *t, mfs_rfile *f, io_run *x, size_t from, size_t to)
{
	for (size_t j = from; j < to; j++) {
		const mfs_extent *e = &f->extents[j];
		mfs_chunk_view v;
		if (__atomic_load_n(&f->served[j], __ATOMIC_RELAXED) < e->len &&
		    mfs_chunk_get(t, &e->key, &v) == 0)
			io_run_add(x, &v);
	}
	io_run_flush(x);
}

/*
 * A job of the read-ahead thread (ioahead.h): ask the kernel to read, from
 * extent @p first up to file offset @p until, the pack entries of the
 * chunks the reader has not had yet (posix_fadvise(POSIX_FADV_WILLNEED) on
 * their ranges).  On a cold store this keeps the disk busy ahead of the
 * decoders, which otherwise each wait for their own entry's read.  Entries
 * asked for before (extents f->io_first to f->io_next) are skipped, unless
 * the reader jumped back before them.
 *
 * The lookups run in a transaction of their own, not under the file's
 * view's lock: on a cold store a lookup may wait for a B-tree page behind
 * the very reads asked for here (the disk's queue is sorted by position),
 * and the decoders must not wait on it.  A newer snapshot holds the same
 * record for the same key (keys are content hashes) or one gc moved, and a
 * location is only ever a hint to the kernel here, never read.
 */
static void read_ahead_io(void *ud, size_t first, uint64_t until)
{
	mfs_rfile *f = ud;
	size_t j = __atomic_load_n(&f->io_next, __ATOMIC_RELAXED);
	size_t from = __atomic_load_n(&f->io_first, __ATOMIC_RELAXED);
	if (j < first || first < from) {
		/* a jump forward, or back before what was asked */
		j = first;
		__atomic_store_n(&f->io_first, first, __ATOMIC_RELAXED);
	}
	if (j >= f->n_extents || f->extents[j].off >= until)
		return;
	mfs_txn *t;
	if (mfs_txn_begin(f->reader->store, MFS_TXN_READ, &t) < 0)
		return;
	enum { BATCH = 16 };
	/* one request for a run of entries instead of one per entry (an entry is
	 * ~0.7 MiB; a request costs ~0.3 ms on top of its transfer on the disks
	 * we measure) */
	io_run x = {.s = f->reader->store, .cap = IO_AHEAD_MAX};
	while (j < f->n_extents && f->extents[j].off < until) {
		size_t batch_first = j, k = 0;
		while (k < BATCH && j + k < f->n_extents && f->extents[j + k].off < until)
			k++;
		ask_extents(t, f, &x, j, j + k);
		j += k;
		refs_ahead(t, f, batch_first, j);
		__atomic_store_n(&f->io_next, j, __ATOMIC_RELAXED);
	}
	mfs_txn_abort(t);
}

void mfs_rfile_will_need(mfs_rfile *f, size_t first, size_t end)
{
	if (end > f->n_extents)
		end = f->n_extents;
	mfs_txn *t;
	if (first >= end || mfs_txn_begin(f->reader->store, MFS_TXN_READ, &t) < 0)
		return;
	io_run x = {.s = f->reader->store, .cap = IO_AHEAD_MAX};
	ask_extents(t, f, &x, first, end);
	refs_ahead(t, f, first, end);
	mfs_txn_abort(t);
}

/*
 * Hand the read-ahead thread the window after a sequential read of extents
 * from @p first that ends at @p end, when what it has asked for reaches less
 * than half a window past @p end (so it wakes once per half window, not per
 * read), or when the reader jumped past it or back before it.
 */
static void request_io_ahead(mfs_reader *r, mfs_rfile *f, size_t first, uint64_t end)
{
	uint64_t win = (uint64_t)r->prefetch * PREFETCH_UNIT * IO_AHEAD_WINDOWS;
	size_t from = __atomic_load_n(&f->io_first, __ATOMIC_RELAXED);
	size_t next = __atomic_load_n(&f->io_next, __ATOMIC_RELAXED);
	uint64_t asked = next < f->n_extents ? f->extents[next].off : f->size;
	uint64_t want = end + win / 2 < f->size ? end + win / 2 : f->size;
	if (first >= from && first <= next && asked >= want)
		return;
	mfs_ioahead_request(r->io, read_ahead_io, f, first, end + win);
}

/* Chunks one prefetch batch holds at most (with 1 MiB chunks, what a GPU
 * decodes in one launch: 64 MiB). */
#define BATCH_MAX 64

/* Whether chunk @p v of @p key is one the GPU backend takes, and (its
 * decode being done outside the cache's fill) whether others use it. */
static int gpu_pick(mfs_rfile *f, const mfs_chunk_key *key, size_t len, mfs_chunk_view *v,
		    uint64_t *uses)
{
	*uses = 0;
	if (mfs_chunk_get(f->view->txn, key, v) < 0 || v->raw_len != len ||
	    !mfs_batch_gpu_can(v->codec, v->n_refs))
		return 0;
	mfs_chunk_refcount(f->view->txn, key, uses);
	return 1;
}

/* Arena room for a payload: each starts 64-byte aligned. */
static size_t arena_span(size_t len)
{
	return (len + 63) & ~(size_t)63;
}

/*
 * Read the payloads of batch chunks bc[0..m) (their records v) into
 * @p arena (the sum of their arena_span()s), after asking the disk for all
 * of them: a chunk whose entry cannot be read or is damaged is dropped from
 * the batch (left MFS_E_UNSUPPORTED, so the CPU's decode reports it), and
 * bc, map and uses (optional) are compacted alike.
 * @return the number of chunks kept
 */
static size_t batch_load(mfs_store *s, mfs_batch_chunk *bc, const mfs_chunk_view *v,
			 size_t *map, uint64_t *uses, size_t m, uint8_t *arena)
{
	for (size_t k = 0; k < m; k++)
		mfs_chunk_will_need(s, &v[k]);
	size_t kept = 0, at = 0;
	for (size_t k = 0; k < m; k++) {
		if (mfs_chunk_payload_read(s, &bc[k].key, &v[k], arena + at,
					   v[k].payload_len, NULL) < 0)
			continue;
		bc[kept] = bc[k];
		bc[kept].payload = arena + at;
		bc[kept].payload_len = v[k].payload_len;
		map[kept] = map[k];
		if (uses)
			uses[kept] = uses[k];
		kept++;
		at += arena_span(v[k].payload_len);
	}
	return kept;
}

static size_t batch_arena_bytes(const mfs_chunk_view *v, size_t m)
{
	size_t n = 64;
	for (size_t k = 0; k < m; k++)
		n += arena_span(v[k].payload_len);
	return n;
}

/*
 * The cache's batch fill (mfs_cache_batch_fn) when the reader has a GPU
 * backend: the rans chunks of a prefetch batch go to the device in one
 * call (per BATCH_MAX), each verified by its key; the others, and any the
 * backend does not take, stay MFS_E_UNSUPPORTED for the pool's CPU fill.
 */
static void gpu_batch_fill(void *ud, mfs_cache_fill_item *items, size_t n,
			   mfs_codec_ws *ws)
{
	mfs_rfile *f = ud;
	mfs_gpu_backend *g = f->reader->gpu;
	for (size_t at = 0; at < n && mfs_gpu_backend_usable(g); at += BATCH_MAX) {
		size_t end = n - at < BATCH_MAX ? n : at + BATCH_MAX, m = 0;
		mfs_chunk_view v[BATCH_MAX];
		mfs_batch_chunk bc[BATCH_MAX];
		size_t map[BATCH_MAX];
		uint64_t uses[BATCH_MAX];
		pthread_mutex_lock(&f->view->mu);
		for (size_t i = at; i < end; i++)
			if (items[i].status == MFS_E_UNSUPPORTED &&
			    gpu_pick(f, items[i].key, items[i].len, &v[m], &uses[m])) {
				mfs_batch_chunk_set(&bc[m], items[i].key, &v[m], NULL,
						    items[i].dst, items[i].len);
				map[m++] = i;
			}
		pthread_mutex_unlock(&f->view->mu);
		/* the payloads in the workspace's payload slot: the CPU decodes of
		 * what the device leaves come after this call */
		uint8_t *arena = m ? mfs_codec_ws_scratch(ws, MFS_WS_SLOT_PAYLOAD,
							  batch_arena_bytes(v, m))
				   : NULL;
		if (!arena)
			continue; /* nothing taken, or no memory: the CPU's */
		m = batch_load(f->reader->store, bc, v, map, uses, m, arena);
		mfs_gpu_backend_decode(g, bc, m);
		for (size_t k = 0; k < m; k++)
			if (bc[k].status == 0)
				items[map[k]].status = uses[k] > 1 ? MFS_CACHE_FILL_SHARED : 0;
	}
}

int mfs_rfile_decode_batch(mfs_rfile *f, mfs_gpu_backend *g, mfs_rfile_batch_item *items,
			   size_t n, int device_dst)
{
	if (f->spill || !f->view)
		return MFS_E_INVAL;
	for (size_t i = 0; i < n; i++)
		if (items[i].ext >= f->n_extents)
			return MFS_E_INVAL;
	for (size_t at = 0; at < n && mfs_gpu_backend_usable(g); at += BATCH_MAX) {
		size_t end = n - at < BATCH_MAX ? n : at + BATCH_MAX, m = 0;
		mfs_chunk_view v[BATCH_MAX];
		mfs_batch_chunk bc[BATCH_MAX];
		size_t map[BATCH_MAX];
		uint64_t uses;
		pthread_mutex_lock(&f->view->mu);
		for (size_t i = at; i < end; i++) {
			const mfs_extent *e = &f->extents[items[i].ext];
			if (items[i].status == MFS_E_UNSUPPORTED &&
			    gpu_pick(f, &e->key, e->len, &v[m], &uses)) {
				mfs_batch_chunk_set(&bc[m], &e->key, &v[m], NULL, items[i].dst,
						    e->len);
				map[m++] = i;
			}
		}
		pthread_mutex_unlock(&f->view->mu);
		if (m == 0)
			continue;
		uint8_t *arena = malloc(batch_arena_bytes(v, m));
		if (!arena)
			continue; /* the CPU decodes them */
		m = batch_load(f->reader->store, bc, v, map, NULL, m, arena);
		if (device_dst)
			mfs_gpu_backend_decode_device(g, bc, m);
		else
			mfs_gpu_backend_decode(g, bc, m);
		for (size_t k = 0; k < m; k++)
			if (bc[k].status == 0)
				items[map[k]].status = 0;
		free(arena);
	}
	return 0;
}

/*
 * Queue the decode of the extents from @p j on that start before @p until
 * (looking at @p max_jobs at most), skipping those the reader already has
 * (a reader that jumps back, as loading tensors in model order does, must
 * not decode again what lies after the jump); stops when the cache is busy.
 * They go to the cache in batches of BATCH_MAX, with the GPU backend's
 * batch fill when the reader has one.
 */
static void queue_decodes(mfs_reader *r, mfs_rfile *f, size_t j, uint64_t until,
			  size_t max_jobs)
{
	mfs_cache_want w[BATCH_MAX];
	size_t nw = 0;
	mfs_cache_batch_fn bf = mfs_gpu_backend_usable(r->gpu) ? gpu_batch_fill : NULL;
	for (size_t q = 0; j < f->n_extents && q < max_jobs; j++, q++) {
		const mfs_extent *e = &f->extents[j];
		if (e->off >= until)
			break;
		if (__atomic_load_n(&f->served[j], __ATOMIC_RELAXED) >= e->len)
			continue;
		w[nw].key = e->key;
		w[nw++].len = e->len;
		if (nw == BATCH_MAX) {
			if (mfs_cache_prefetch_batch(r->cache, w, nw, cache_fill, bf, f,
						     NULL) == MFS_E_BUSY)
				return;
			nw = 0;
		}
	}
	if (nw)
		mfs_cache_prefetch_batch(r->cache, w, nw, cache_fill, bf, f, NULL);
}

/*
 * Queue the decode of all of @p f, from extent @p first to the end, then the
 * start, and ask the disk for its records from @p first on; once per file.
 */
static void queue_whole(mfs_reader *r, mfs_rfile *f, size_t first)
{
	if (f->n_extents == 0 || __atomic_exchange_n(&f->whole, 1, __ATOMIC_RELAXED))
		return;
	if (r->io)
		mfs_ioahead_request(r->io, read_ahead_io, f, first, f->size);
	queue_decodes(r, f, first, f->size, f->n_extents);
	queue_decodes(r, f, 0, f->extents[first].off, first);
}

void mfs_rfile_queue_whole(mfs_reader *r, mfs_rfile *f)
{
	if (r->cache && r->prefetch)
		queue_whole(r, f, 0);
}

int mfs_rfile_busy(mfs_reader *r, mfs_rfile *f)
{
	return (r->io && mfs_ioahead_busy(r->io, f)) || mfs_cache_busy(r->cache, f);
}

/*
 * A read that starts within a chunk of where the last one ended is
 * sequential (the kernel's readahead may send neighbours out of order): queue
 * the decode of the chunks after @p first, over this read and a window of
 * r->prefetch chunks beyond it, so workers decode while this thread does its
 * first chunk, and hand the read-ahead thread its next records.  Tiny extents
 * (small tensors) count by bytes, not by number.  Any other read is out of
 * order: the first one may queue the whole file (mfs_reader_set_whole_file;
 * a later window request may replace its disk read-ahead before it runs,
 * which leaves each decode to ask for its own record).
 */
static void queue_prefetch(mfs_reader *r, mfs_rfile *f, size_t first, uint64_t off,
			   size_t len)
{
	if (!r->cache || !r->prefetch)
		return;
	uint64_t prev = __atomic_exchange_n(&f->seq_next, off + len, __ATOMIC_RELAXED);
	if (off + PREFETCH_UNIT < prev || off > prev + PREFETCH_UNIT) {
		/* out of order: the first time, a file that fits is decoded whole,
		 * from here to the end, then the start (mfs_reader_set_whole_file) */
		if (f->size <= r->whole_max)
			queue_whole(r, f, first);
		return;
	}
	if (r->io)
		request_io_ahead(r, f, first, off + len);
	queue_decodes(r, f, first + 1, off + len + (uint64_t)r->prefetch * PREFETCH_UNIT,
		      (size_t)r->prefetch * 8);
}

/* ---- spilled copies (reader.h: mfs_spill, mfs_rfile_spill) ---- */

/*
 * Copies start on a block boundary, so closing one punches a hole over
 * whole blocks of its own and never touches a neighbour's.
 */
#define SPILL_ALIGN ((uint64_t)4096)

struct mfs_spill {
	pthread_mutex_t mu;
	int fd;	      /* -1 until the first spill */
	uint64_t end; /* where the next copy goes (SPILL_ALIGN-aligned) */
	size_t files;
	uint64_t bytes, peak;
	char dir[];
};

static uint64_t spill_span(uint64_t size)
{
	return (size + SPILL_ALIGN - 1) & ~(SPILL_ALIGN - 1);
}

/* An unlinked temporary file in @p dir: the fd, or -errno. */
static int spill_open(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* a file system without O_TMPFILE: a named file, unlinked at once */
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof(path), "%s/.modelfs-spill-XXXXXX", dir) >=
	    sizeof(path))
		return -ENAMETOOLONG;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

int mfs_spill_check_dir(const char *dir)
{
	int fd = spill_open(dir);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int mfs_spill_create(const char *dir, mfs_spill **out)
{
	*out = NULL;
	size_t n = strlen(dir);
	if (n >= PATH_MAX)
		return MFS_E_INVAL;
	mfs_spill *sp = calloc(1, sizeof(*sp) + n + 1);
	if (!sp)
		return -ENOMEM;
	memcpy(sp->dir, dir, n + 1);
	sp->fd = -1;
	pthread_mutex_init(&sp->mu, NULL);
	*out = sp;
	return 0;
}

void mfs_spill_free(mfs_spill *sp)
{
	if (!sp)
		return;
	if (sp->fd >= 0)
		close(sp->fd);
	pthread_mutex_destroy(&sp->mu);
	free(sp);
}

void mfs_spill_stats_get(mfs_spill *sp, mfs_spill_stats *out)
{
	pthread_mutex_lock(&sp->mu);
	out->files = sp->files;
	out->bytes = sp->bytes;
	out->peak = sp->peak;
	pthread_mutex_unlock(&sp->mu);
}

/* Room for a copy of @p size bytes; opens the spill file the first time. */
static int spill_reserve(mfs_spill *sp, uint64_t size, uint64_t *off)
{
	pthread_mutex_lock(&sp->mu);
	if (sp->fd < 0) {
		int fd = spill_open(sp->dir);
		if (fd < 0) {
			pthread_mutex_unlock(&sp->mu);
			return fd;
		}
		sp->fd = fd;
	}
	*off = sp->end;
	sp->end += spill_span(size);
	sp->files++;
	sp->bytes += size;
	if (sp->bytes > sp->peak)
		sp->peak = sp->bytes;
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

/*
 * Give a copy's range back: a hole punched over it (a file system that
 * cannot punch keeps the blocks until the spill file empties), and the whole
 * file emptied once no copy is left, so its size does not only grow.
 */
static void spill_release(mfs_spill *sp, uint64_t off, uint64_t size)
{
	pthread_mutex_lock(&sp->mu);
	sp->files--;
	sp->bytes -= size;
	if (sp->files == 0) {
		sp->end = 0;
		if (ftruncate(sp->fd, 0) != 0) {
			/* the blocks stay until the spill is freed: nothing else to do */
		}
	} else if (size) {
		fallocate(sp->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			  (off_t)spill_span(size));
	}
	pthread_mutex_unlock(&sp->mu);
}

typedef struct spill_copy {
	int fd;
	uint64_t base;	  /* the copy's offset in the spill file */
	uint64_t written; /* file bytes written so far */
	mfs_sha256_ctx sha;
} spill_copy;

/* mfs_rfile_stream's callback: the chunks in file order, decoded and checked. */
static int spill_chunk(void *ud, uint64_t off, const void *data, size_t len)
{
	spill_copy *c = ud;
	if (off != c->written)
		return MFS_E_CORRUPT; /* extents that do not tile the file */
	mfs_sha256_update(&c->sha, data, len);
	const uint8_t *p = data;
	while (len) {
		ssize_t n = pwrite(c->fd, p, len, (off_t)(c->base + c->written));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		c->written += (uint64_t)n;
	}
	return 0;
}

int mfs_rfile_spill(mfs_reader *r, mfs_rfile *f, mfs_spill *sp, mfs_rfile **out)
{
	*out = NULL;
	if (f->spill || !f->view)
		return MFS_E_INVAL;
	mfs_rfile *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	uint64_t off;
	int rc = spill_reserve(sp, f->size, &off);
	if (rc < 0) {
		free(c);
		return rc;
	}
	spill_copy x = {.fd = sp->fd, .base = off};
	mfs_sha256_init(&x.sha);
	/* one decoder beside this thread (which writes and hashes): a background
	 * copy, not a reason to take every core from the readers */
	rc = mfs_rfile_stream(r, f, 1, spill_chunk, &x, NULL);
	uint8_t sum[32];
	mfs_sha256_final(&x.sha, sum);
	if (rc == 0 && (x.written != f->size || memcmp(sum, f->sha256, 32) != 0))
		rc = MFS_E_CORRUPT;
	if (rc < 0) {
		spill_release(sp, off, f->size);
		free(c);
		return rc;
	}
	memcpy(c->repo, f->repo, sizeof(c->repo));
	memcpy(c->etag, f->etag, sizeof(c->etag));
	c->size = f->size;
	memcpy(c->sha256, f->sha256, 32);
	c->reader = r;
	c->spill = sp;
	c->spill_off = off;
	*out = c;
	return 0;
}

/* A read of a spilled copy: the bytes were checked when they were copied. */
static int spill_read(mfs_rfile *f, uint64_t off, void *buf, size_t len, size_t *got)
{
	return mfs_pread_full(f->spill->fd, buf, len, f->spill_off + off, -EIO, got);
}

int mfs_rfile_read(mfs_reader *r, mfs_rfile *f, uint64_t off, void *buf, size_t len,
		   size_t *got, mfs_codec_ws *ws)
{
	*got = 0;
	if (off >= f->size || len == 0)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	if (f->spill)
		return spill_read(f, off, buf, len, got);
	size_t i = mfs_extent_find(f->extents, f->n_extents, off);
	queue_prefetch(r, f, i, off, len);
	uint8_t *out = buf;
	size_t done = 0;
	while (done < len && i < f->n_extents) {
		const mfs_extent *e = &f->extents[i];
		uint64_t in = off + done - e->off;
		size_t n = e->len - in;
		if (n > len - done)
			n = len - done;
		int rc;
		if (r->cache) {
			mfs_cache_entry *ce;
			rc = mfs_cache_get(r->cache, &e->key, e->len, cache_fill, f, ws,
					   &ce);
			if (rc == 0) {
				memcpy(out + done,
				       (const uint8_t *)mfs_cache_entry_data(ce) + in, n);
				mfs_cache_release(r->cache, ce);
			}
		} else if (in == 0 && n == e->len) {
			/* The whole chunk is wanted: decode straight into the caller's
			 * buffer. */
			rc = rfile_decode(f, &e->key, out + done, e->len, ws);
		} else {
			uint8_t *tmp =
			    mfs_codec_ws_scratch(ws, MFS_WS_SLOT_CHUNK, e->len);
			rc = tmp ? rfile_decode(f, &e->key, tmp, e->len, ws) : -ENOMEM;
			if (rc == 0)
				memcpy(out + done, tmp + in, n);
		}
		if (rc < 0) {
			*got = done;
			return rc;
		}
		done += n;
		i++;
	}
	*got = done;
	return 0;
}

int mfs_rfile_read_segs(mfs_reader *r, mfs_rfile *f, uint64_t off, size_t len,
			mfs_read_seg *segs, size_t max_segs, size_t *n_segs, size_t *got,
			mfs_codec_ws *ws)
{
	*n_segs = 0;
	*got = 0;
	if (f->spill)
		return MFS_E_NOSPACE; /* no decoded chunks to point into */
	if (!r->cache)
		return MFS_E_INVAL;
	if (off >= f->size || len == 0)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	size_t first = mfs_extent_find(f->extents, f->n_extents, off);
	size_t last = mfs_extent_find(f->extents, f->n_extents, off + len - 1);
	if (last - first + 1 > max_segs)
		return MFS_E_NOSPACE;
	queue_prefetch(r, f, first, off, len);
	size_t done = 0;
	for (size_t i = first; done < len && i < f->n_extents; i++) {
		const mfs_extent *e = &f->extents[i];
		uint64_t in = off + done - e->off;
		size_t n = e->len - in;
		if (n > len - done)
			n = len - done;
		mfs_cache_entry *ce;
		int rc = mfs_cache_get(r->cache, &e->key, e->len, cache_fill, f, ws, &ce);
		if (rc < 0) {
			*got = done;
			return rc;
		}
		segs[*n_segs].data = (const uint8_t *)mfs_cache_entry_data(ce) + in;
		segs[*n_segs].len = n;
		segs[*n_segs].pin = ce;
		segs[*n_segs].ext = i;
		(*n_segs)++;
		done += n;
	}
	*got = done;
	return 0;
}

void mfs_rfile_mark_served(mfs_rfile *f, const mfs_read_seg *segs, size_t n_segs)
{
	for (size_t i = 0; i < n_segs; i++)
		__atomic_add_fetch(&f->served[segs[i].ext], segs[i].len, __ATOMIC_RELAXED);
}

void mfs_rfile_release_segs(mfs_reader *r, mfs_read_seg *segs, size_t n_segs, int kept)
{
	for (size_t i = 0; i < n_segs; i++)
		mfs_cache_release_served(r->cache, segs[i].pin, kept ? segs[i].len : 0);
}
