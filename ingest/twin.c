/*
 * twin.c - a high-precision model and its quantized twin from one copy (see
 * twin.h): pairing by names and shapes, the checks that confirm a pair, and
 * the pass that re-encodes the high-precision chunks as quant-residuals.
 */
#include "twin.h"

#include "codec.h"
#include "quant.h"
#include "sharing.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A pair must reproduce at least this share of a sample's codes (per mille). */
#define CONFIRM_PERMILLE 990
/* A residual must save at least 1% of the chunk's payload to replace it. */
#define SAVE_PERCENT 1
/* Scale tensors larger than this are not read whole (checked per chunk). */
#define SCALES_MAX ((uint64_t)64 << 20)

int mfs_twin_is_hp_dtype(mfs_dtype dt)
{
	return dt == MFS_DT_BF16 || dt == MFS_DT_F16;
}

int mfs_twin_is_q_dtype(mfs_dtype dt)
{
	return dt == MFS_DT_I8 || dt == MFS_DT_F8_E4M3;
}

static const mfs_base_tensor *by_name(const mfs_base *b, const char *name)
{
	size_t lo = 0, hi = b->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(b->t[mid].name, name);
		if (c == 0)
			return &b->t[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int same_shape(uint32_t na, const uint64_t *a, uint32_t nb, const uint64_t *b)
{
	return na == nb && na > 0 && memcmp(a, b, na * sizeof *a) == 0;
}

size_t mfs_twin_match_count(const mfs_base *other, const mfs_base_want *want, size_t n_want,
			    int *want_is_q)
{
	size_t as_q = 0, as_hp = 0;
	for (size_t i = 0; i < n_want; i++) {
		const mfs_base_tensor *o = by_name(other, want[i].name);
		if (!o || !same_shape(want[i].ndim, want[i].shape, o->ndim, o->shape))
			continue;
		if (mfs_twin_is_q_dtype(want[i].dtype) && mfs_twin_is_hp_dtype(o->dtype))
			as_q++;
		else if (mfs_twin_is_hp_dtype(want[i].dtype) && mfs_twin_is_q_dtype(o->dtype))
			as_hp++;
	}
	if (want_is_q)
		*want_is_q = as_q >= as_hp;
	return as_q > as_hp ? as_q : as_hp;
}

struct propose {
	const mfs_base_want *want;
	size_t n_want;
	size_t best;
	int best_is_q;
	char *other;
};

static int propose_fn(void *ud, const mfs_base *b)
{
	struct propose *p = ud;
	int is_q = 0;
	size_t n = mfs_twin_match_count(b, p->want, p->n_want, &is_q);
	if (n > p->best) {
		p->best = n;
		p->best_is_q = is_q;
		snprintf(p->other, MFS_REPO_ID_MAX + 1, "%s", b->repo);
	}
	return 0;
}

int mfs_twin_propose(mfs_txn *t, const char *repo, const mfs_base_want *want, size_t n_want,
		     char other[MFS_REPO_ID_MAX + 1], int *repo_is_q)
{
	other[0] = '\0';
	*repo_is_q = 0;
	struct propose p = {.want = want, .n_want = n_want, .other = other};
	int rc = mfs_base_foreach_other(t, repo, propose_fn, &p, NULL);
	if (rc < 0)
		return rc;
	*repo_is_q = p.best_is_q;
	return 0;
}

/* ---- the pass ---- */

typedef struct pass {
	mfs_store *s;
	const char *hp, *q;
	mfs_twin_note_fn note;
	void *note_ud;
	mfs_twin_stats *st;
	mfs_errmsg *err;
	mfs_codec_ws *ws;
	mfs_refd refd;
	uint8_t *enc, *check, *codes;
	size_t enc_cap, check_cap, codes_cap;
} pass;

static void say(pass *p, int warning, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(pass *p, int warning, const char *fmt, ...)
{
	if (!p->note)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	p->note(p->note_ud, warning, line);
}

/* Grow a pass buffer to @p n bytes. */
static int need(uint8_t **buf, size_t *cap, size_t n)
{
	if (*cap >= n)
		return 0;
	uint8_t *b = realloc(*buf, n ? n : 1);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*cap = n;
	return 0;
}

/*
 * The @p len bytes at @p off of tensor @p bt, when one chunk without
 * references of its own holds them: the reference (role @p role) and the
 * bytes, decoded and checked into workspace slot @p slot.
 * @return 0, MFS_E_NOTFOUND (no one chunk holds them, or it has references:
 *         the pair is not made), or a decode / store error
 */
static int ref_bytes(mfs_txn *t, const mfs_base_tensor *bt, uint64_t off, uint64_t len,
		     mfs_ref_role role, mfs_codec_ws *ws, unsigned slot, mfs_chunk_ref *ref,
		     const uint8_t **bytes)
{
	if (len > UINT32_MAX || mfs_base_chunk_ref(bt, off, (uint32_t)len, ref) < 0)
		return MFS_E_NOTFOUND;
	ref->role = role;
	mfs_chunk_view v;
	int rc = mfs_chunk_get(t, &ref->key, &v);
	if (rc < 0)
		return rc;
	if (v.n_refs || mfs_chunk_ref_check(ref, &v) < 0)
		return MFS_E_NOTFOUND;
	uint8_t *buf = mfs_codec_ws_scratch(ws, slot, v.raw_len ? v.raw_len : 1);
	if (!buf)
		return -ENOMEM;
	if ((rc = mfs_chunk_load(mfs_txn_store(t), &ref->key, &v, ws, NULL)) < 0 ||
	    (rc = mfs_chunk_decode(&v, &ref->key, NULL, buf, v.raw_len, ws)) < 0)
		return rc;
	*bytes = buf + ref->off;
	return 0;
}

/* A scale as a float (F32, BF16 or F16 bytes, little-endian). */
static float scale_value(mfs_dtype dt, const uint8_t *p)
{
	uint32_t u;
	float f;
	if (dt == MFS_DT_F32) {
		u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		    (uint32_t)p[3] << 24;
	} else if (dt == MFS_DT_BF16) {
		u = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
	} else {
		/* F16 -> F32 */
		uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
		uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 31, m = h & 0x3ffu;
		if (e == 31)
			u = sign | 0x7f800000u | m << 13;
		else if (e)
			u = sign | (e + 112) << 23 | m << 13;
		else if (!m)
			u = sign;
		else {
			/* subnormal: normalise */
			e = 113;
			while (!(m & 0x400u)) {
				m <<= 1;
				e--;
			}
			u = sign | e << 23 | (m & 0x3ffu) << 13;
		}
	}
	memcpy(&f, &u, 4);
	return f;
}

/*
 * Read the whole scale tensor @p sc into @p out (malloc'd) and check every
 * scale is finite and above zero.
 * @return 0; 1 (a bad scale: *why says which); or a negative code
 */
static int read_scales(pass *p, mfs_txn *t, const mfs_base_tensor *sc, uint8_t **out,
		       char *why, size_t why_cap)
{
	*out = NULL;
	if (sc->raw_len > SCALES_MAX) {
		snprintf(why, why_cap, "its scales (%llu bytes) are larger than this reads whole",
			 (unsigned long long)sc->raw_len);
		return 1;
	}
	uint8_t *buf = malloc(sc->raw_len ? sc->raw_len : 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < sc->n_ext; i++) {
		const mfs_extent *e = &sc->ext[i];
		mfs_chunk_ref ref;
		const uint8_t *bytes;
		int rc = ref_bytes(t, sc, e->off, e->len, MFS_REF_SCALE, p->ws, MFS_WS_SLOT_REF,
				   &ref, &bytes);
		if (rc == MFS_E_NOTFOUND) {
			snprintf(why, why_cap, "its scales' chunks decode against other chunks");
			free(buf);
			return 1;
		}
		if (rc < 0) {
			free(buf);
			return rc;
		}
		memcpy(buf + e->off, bytes, e->len);
	}
	size_t ss = mfs_dtype_bits(sc->dtype) / 8;
	for (uint64_t i = 0; ss && i < sc->raw_len / ss; i++) {
		float f = scale_value(sc->dtype, buf + i * ss);
		if (!isfinite(f) || !(f > 0)) {
			snprintf(why, why_cap, "scale %llu of it is %g (scales must be finite and "
				 "above zero)", (unsigned long long)i, (double)f);
			free(buf);
			return 1;
		}
	}
	*out = buf;
	return 0;
}

/* The chunk-by-chunk part of a pair, in write transaction @p t. */
typedef struct tensor_pair {
	const mfs_base_tensor *ht, *qt, *sc;
	mfs_quant_scheme sch;
	const uint8_t *scales; /* the whole scale tensor */
	size_t esize, ssize;
} tensor_pair;

/*
 * Decode the first chunk of the high-precision tensor and quantize it with
 * the twin's scales: the pair is confirmed when the codes match the twin's.
 * @return 0 (confirmed), 1 (not: *why says how far), or a negative code
 */
static int confirm(pass *p, mfs_txn *t, const tensor_pair *tp, char *why, size_t why_cap)
{
	const mfs_extent *e = &tp->ht->ext[0];
	if (e->off != 0 || e->len % tp->esize) {
		snprintf(why, why_cap, "its first chunk does not start a whole element");
		return 1;
	}
	uint64_t n = e->len / tp->esize;
	mfs_chunk_view v;
	int rc = mfs_chunk_get(t, &e->key, &v);
	if (rc < 0)
		return rc;
	uint8_t *hp = mfs_codec_ws_scratch(p->ws, MFS_WS_SLOT_CHUNK, e->len);
	if (!hp)
		return -ENOMEM;
	mfs_ref_data rd[MFS_REFS_MAX];
	const uint8_t *rb[MFS_REFS_MAX];
	for (uint32_t k = 0; k < v.n_refs; k++) {
		mfs_chunk_view rv;
		if ((rc = mfs_chunk_get(t, &v.refs[k].key, &rv)) < 0)
			return rc;
		uint8_t *b = mfs_codec_ws_scratch(p->ws, MFS_WS_SLOT_REF + k, rv.raw_len ? rv.raw_len : 1);
		if (!b)
			return -ENOMEM;
		if ((rc = mfs_chunk_load(mfs_txn_store(t), &v.refs[k].key, &rv, p->ws,
					 NULL)) < 0 ||
		    (rc = mfs_chunk_decode(&rv, &v.refs[k].key, NULL, b, rv.raw_len,
					   p->ws)) < 0)
			return rc;
		rb[k] = b + v.refs[k].off;
		rd[k] = (mfs_ref_data){.role = v.refs[k].role, .data = rb[k], .len = v.refs[k].len};
	}
	/* loaded after its references: they share the payload slot */
	if ((rc = mfs_chunk_load(mfs_txn_store(t), &e->key, &v, p->ws, NULL)) < 0 ||
	    (rc = mfs_chunk_decode(&v, &e->key, v.n_refs ? rd : NULL, hp, e->len,
				   p->ws)) < 0)
		return rc;
	mfs_chunk_ref qr;
	const uint8_t *codes;
	rc = ref_bytes(t, tp->qt, 0, n, MFS_REF_QUANT, p->ws, MFS_WS_SLOT_REF, &qr, &codes);
	if (rc == MFS_E_NOTFOUND) {
		snprintf(why, why_cap, "no one chunk of the twin holds its first %llu codes",
			 (unsigned long long)n);
		return 1;
	}
	if (rc < 0)
		return rc;
	uint64_t first, count;
	mfs_quant_scale_span(&tp->sch, 0, n, &first, &count);
	if ((rc = need(&p->codes, &p->codes_cap, n)) < 0)
		return rc;
	rc = mfs_quant_quantize(&tp->sch, tp->ht->dtype, hp, 0, (size_t)n,
				tp->scales + first * tp->ssize, (size_t)(count * tp->ssize), p->codes);
	if (rc < 0) {
		snprintf(why, why_cap, "its scheme cannot be checked (%s)", mfs_strerror(rc));
		return 1;
	}
	uint64_t same = 0;
	for (uint64_t i = 0; i < n; i++)
		same += p->codes[i] == codes[i];
	if (same * 1000 < n * CONFIRM_PERMILLE) {
		snprintf(why, why_cap,
			 "quantizing it with the twin's scales gives the twin's codes for only "
			 "%.1f%% of its first %llu elements (the scales do not belong to it)",
			 100.0 * (double)same / (double)n, (unsigned long long)n);
		return 1;
	}
	return 0;
}

/*
 * Re-encode chunk @p i of the tensor as a residual, when it can be and pays.
 * @return 1 (replaced), 0 (left as it was), or a negative code
 */
static int pair_chunk(pass *p, mfs_txn *t, const tensor_pair *tp, size_t i, uint64_t *before,
		      uint64_t *after, int *refd_note)
{
	const mfs_base_tensor *ht = tp->ht;
	const mfs_extent *e = &ht->ext[i];
	if (e->off % tp->esize || e->len % tp->esize)
		return 0;
	mfs_chunk_view v;
	int rc = mfs_chunk_get(t, &e->key, &v);
	if (rc < 0)
		return rc;
	if (v.n_refs || v.codec == MFS_CODEC_QUANT_RESIDUAL)
		return 0; /* a delta, or paired before (an equal chunk earlier on) */
	if (mfs_refd_count(&p->refd, &e->key)) {
		*refd_note = 1;
		return 0; /* others decode against it: it must stay whole */
	}
	uint64_t e0 = e->off / tp->esize, n = e->len / tp->esize;
	uint64_t first, count;
	mfs_quant_scale_span(&tp->sch, e0, n, &first, &count);
	mfs_chunk_ref refs[2];
	const uint8_t *codes, *scales;
	rc = ref_bytes(t, tp->qt, e0, n, MFS_REF_QUANT, p->ws, MFS_WS_SLOT_REF, &refs[0], &codes);
	if (rc == 0)
		rc = ref_bytes(t, tp->sc, first * tp->ssize, count * tp->ssize, MFS_REF_SCALE, p->ws,
			       MFS_WS_SLOT_REF + 1, &refs[1], &scales);
	if (rc == MFS_E_NOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	uint8_t *hp = mfs_codec_ws_scratch(p->ws, MFS_WS_SLOT_CHUNK, e->len);
	if (!hp)
		return -ENOMEM;
	if ((rc = mfs_chunk_load(mfs_txn_store(t), &e->key, &v, p->ws, NULL)) < 0 ||
	    (rc = mfs_chunk_decode(&v, &e->key, NULL, hp, e->len, p->ws)) < 0)
		return rc;
	uint64_t old_len = v.payload_len;
	mfs_chunk_geom g = {.dtype = ht->dtype, .ndim = ht->ndim, .elem_off = e0};
	memcpy(g.shape, ht->shape, ht->ndim * sizeof *g.shape);
	mfs_ref_data rd[2] = {{MFS_REF_QUANT, codes, (size_t)n},
			      {MFS_REF_SCALE, scales, (size_t)(count * tp->ssize)}};
	mfs_encode_params ep = {.dtype = ht->dtype, .geom = &g, .refs = rd, .n_refs = 2,
				.quant = &tp->sch};
	if ((rc = need(&p->enc, &p->enc_cap, mfs_codec_bound_max(e->len))) < 0 ||
	    (rc = need(&p->check, &p->check_cap, e->len)) < 0)
		return rc;
	size_t plen;
	rc = mfs_codec_encode(MFS_CODEC_QUANT_RESIDUAL, &ep, hp, e->len, p->enc, p->enc_cap, &plen,
			      p->ws);
	if (rc == MFS_E_UNSUPPORTED)
		return 0;
	if (rc < 0)
		return rc;
	if ((uint64_t)plen * 100 > old_len * (100 - SAVE_PERCENT))
		return 0;
	/* decoded again and compared before it is written: a wrong byte is
	 * worse than a missed saving */
	mfs_decode_req rq = {.src = p->enc, .src_len = plen, .dst = p->check, .dst_len = e->len,
			     .geom = &g, .refs = rd, .n_refs = 2};
	rc = mfs_codec_decode(MFS_CODEC_QUANT_RESIDUAL, &rq, p->ws);
	if (rc < 0 || memcmp(p->check, hp, e->len) != 0) {
		say(p, 1, "%s: tensor %s: a chunk's residual did not decode to its bytes (a codec "
			  "bug: please report it); the chunk stays as it was",
		    p->hp, ht->name);
		return 0;
	}
	mfs_chunk_meta m = {.codec = MFS_CODEC_QUANT_RESIDUAL, .raw_len = (uint32_t)e->len,
			    .n_refs = 2, .refs = refs, .geom = &g};
	if ((rc = mfs_chunk_replace(t, &e->key, &m, p->enc, plen)) < 0)
		return rc;
	*before += old_len;
	*after += plen;
	return 1;
}

/*
 * Pair tensor @p ht of the high-precision model with the twin @p qb, in a
 * write transaction of its own.
 * @return 0 (paired or left, with a note), or a negative code
 */
static int pair_tensor(pass *p, const mfs_base_tensor *ht, const mfs_base *qb)
{
	const mfs_base_tensor *qt = by_name(qb, ht->name);
	if (!qt || !mfs_twin_is_q_dtype(qt->dtype) ||
	    !same_shape(ht->ndim, ht->shape, qt->ndim, qt->shape))
		return 0;
	char why[320] = "";
	char sname[MFS_TENSOR_NAME_MAX + 16];
	const mfs_base_tensor *sc = NULL;
	static const char *const suffix[] = {"_scale", "_scale_inv"};
	for (size_t k = 0; k < 2 && !sc; k++) {
		snprintf(sname, sizeof sname, "%s%s", ht->name, suffix[k]);
		sc = by_name(qb, sname);
	}
	tensor_pair tp = {.ht = ht, .qt = qt, .sc = sc, .esize = mfs_dtype_bits(ht->dtype) / 8};
	mfs_txn *t = NULL;
	uint8_t *scales = NULL;
	int rc = 0, ok = 1;
	if (!sc) {
		snprintf(why, sizeof why, "the twin has no %s_scale or %s_scale_inv", ht->name,
			 ht->name);
		ok = 0;
	} else if (mfs_quant_scheme_from_shapes(ht->dtype, ht->ndim, ht->shape, qt->dtype,
						sc->dtype, sc->ndim, sc->shape, &tp.sch) < 0) {
		snprintf(why, sizeof why,
			 "its scales %s (%s, %u dims) fit no scheme (per tensor, channel, group "
			 "or block)",
			 sc->name, mfs_dtype_name(sc->dtype), sc->ndim);
		ok = 0;
	}
	if (ok) {
		tp.ssize = mfs_dtype_bits(sc->dtype) / 8;
		if (sc->raw_len != mfs_quant_scale_count(&tp.sch) * tp.ssize) {
			snprintf(why, sizeof why, "its scales %s hold %llu bytes, not %llu",
				 sc->name, (unsigned long long)sc->raw_len,
				 (unsigned long long)(mfs_quant_scale_count(&tp.sch) * tp.ssize));
			ok = 0;
		}
	}
	if (ok && (rc = mfs_txn_begin(p->s, MFS_TXN_WRITE, &t)) < 0)
		return mfs_err(p->err, rc, "%s: cannot write to the store: %s", p->hp,
			       mfs_strerror(rc));
	if (ok && ht->n_ext == 0)
		ok = 0;
	if (ok && (rc = read_scales(p, t, sc, &scales, why, sizeof why)) != 0)
		ok = 0;
	tp.scales = scales;
	if (ok && rc == 0 && (rc = confirm(p, t, &tp, why, sizeof why)) != 0)
		ok = 0;
	if (rc < 0)
		goto fail;
	if (!ok) {
		p->st->tensors_left++;
		say(p, 0, "%s: tensor %s stays stored alone, not as a residual of %s's %s: %s",
		    p->hp, ht->name, p->q, mfs_dtype_name(qt->dtype), why);
		goto done;
	}
	uint64_t before = 0, after = 0, paired = 0, left = 0;
	int refd_note = 0;
	for (size_t i = 0; i < ht->n_ext; i++) {
		rc = pair_chunk(p, t, &tp, i, &before, &after, &refd_note);
		if (rc < 0)
			goto fail;
		if (rc)
			paired++;
		else
			left++;
	}
	rc = 0;
	if (refd_note)
		say(p, 0, "%s: tensor %s: chunks that other stored chunks decode against (it is "
			  "the base of a fine-tune) stay whole",
		    p->hp, ht->name);
	if (paired) {
		mfs_tensor_info ti = {.name = ht->name, .dtype = ht->dtype, .ndim = ht->ndim,
				      .data_off = ht->data_off, .raw_len = ht->raw_len,
				      .stored_len = ht->stored_len + after - before,
				      .codec = MFS_CODEC_QUANT_RESIDUAL,
				      .first_extent = ht->first_extent, .n_extents = ht->n_ext,
				      .base = p->q,
				      .alone_len = ht->codec == MFS_CODEC_QUANT_RESIDUAL
							   ? ht->alone_len
							   : ht->stored_len};
		if (ht->stored_len < before)
			ti.stored_len = after; /* a record that undercounted */
		memcpy(ti.shape, ht->shape, sizeof ti.shape);
		if ((rc = mfs_tensor_update(t, p->hp, ht->etag, &ti)) < 0 &&
		    rc != MFS_E_NOTFOUND)
			goto fail;
		/* the file's stored size (ls, info) follows its chunks */
		mfs_blob_info bi;
		if ((rc = mfs_blob_get(t, p->hp, ht->etag, &bi, NULL)) == 0) {
			uint64_t stored = bi.stored_bytes >= before ? bi.stored_bytes - before : 0;
			rc = mfs_blob_set_stored(t, p->hp, ht->etag, stored + after);
		}
		if (rc < 0 && rc != MFS_E_NOTFOUND)
			goto fail;
		rc = 0;
		p->st->tensors++;
	}
	p->st->chunks += paired;
	p->st->chunks_left += left;
	p->st->before += before;
	p->st->after += after;
done:
	free(scales);
	if (t && (rc = mfs_txn_commit(t)) < 0)
		return mfs_err(p->err, rc, "%s: tensor %s: committing failed: %s", p->hp, ht->name,
			       mfs_strerror(rc));
	return 0;
fail:
	free(scales);
	if (t)
		mfs_txn_abort(t);
	return mfs_err(p->err, rc, "%s: tensor %s: pairing with %s failed: %s", p->hp, ht->name,
		       p->q, mfs_strerror(rc));
}

int mfs_twin_pair(mfs_store *s, const char *hp, const char *q, mfs_twin_note_fn note,
		  void *note_ud, mfs_twin_stats *stats, mfs_errmsg *err)
{
	memset(stats, 0, sizeof *stats);
	pass p = {.s = s, .hp = hp, .q = q, .note = note, .note_ud = note_ud, .st = stats,
		  .err = err};
	mfs_base *hb = NULL, *qb = NULL;
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc < 0)
		return mfs_err(err, rc, "cannot read the store: %s", mfs_strerror(rc));
	if ((rc = mfs_base_load(t, hp, &hb)) < 0)
		mfs_err(err, rc, "%s: cannot read its tensors: %s", hp, mfs_strerror(rc));
	else if ((rc = mfs_base_load(t, q, &qb)) < 0)
		mfs_err(err, rc, "%s: cannot read its tensors: %s", q, mfs_strerror(rc));
	else if ((rc = mfs_refd_load(t, &p.refd)) < 0)
		mfs_err(err, rc, "cannot read the store's chunk references: %s", mfs_strerror(rc));
	mfs_txn_abort(t);
	if (rc == 0 && (rc = mfs_codec_ws_create(&p.ws)) < 0)
		mfs_err(err, rc, "out of memory");
	for (size_t i = 0; rc == 0 && i < hb->n; i++)
		if (mfs_twin_is_hp_dtype(hb->t[i].dtype))
			rc = pair_tensor(&p, &hb->t[i], qb);
	mfs_codec_ws_free(p.ws);
	mfs_refd_free(&p.refd);
	free(p.enc);
	free(p.check);
	free(p.codes);
	mfs_base_free(hb);
	mfs_base_free(qb);
	return rc;
}
