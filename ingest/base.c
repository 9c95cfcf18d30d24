/*
 * base.c - finding a fine-tune's base in the store (base.h).
 */
#include "base.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

/* ---- loading a base ---- */

struct load {
	mfs_txn *t;
	mfs_base *b;
	size_t cap;
	const char *etag;
	mfs_extent *ext; /* the blob's extents */
	uint64_t n_ext;
	int rc;
};

static int tensor_fn(void *ud, const mfs_tensor_info *ti)
{
	struct load *L = ud;
	if (ti->n_extents == 0 || ti->first_extent > L->n_ext ||
	    ti->n_extents > L->n_ext - ti->first_extent)
		return ti->n_extents == 0 ? 0 : MFS_E_CORRUPT;
	mfs_base_tensor *g = mfs_grow(L->b->t, &L->cap, L->b->n, sizeof *g, 64);
	if (!g)
		return -ENOMEM;
	L->b->t = g;
	mfs_base_tensor *bt = &L->b->t[L->b->n];
	memset(bt, 0, sizeof *bt);
	bt->name = strdup(ti->name);
	bt->ext = malloc(ti->n_extents * sizeof *bt->ext);
	if (!bt->name || !bt->ext) {
		free(bt->name);
		free(bt->ext);
		return -ENOMEM;
	}
	L->b->n++;
	bt->dtype = ti->dtype;
	bt->ndim = ti->ndim;
	memcpy(bt->shape, ti->shape, sizeof bt->shape);
	bt->raw_len = ti->raw_len;
	bt->data_off = ti->data_off;
	bt->first_extent = ti->first_extent;
	bt->codec = ti->codec;
	bt->stored_len = ti->stored_len;
	bt->alone_len = ti->alone_len;
	snprintf(bt->etag, sizeof bt->etag, "%s", L->etag);
	bt->n_ext = ti->n_extents;
	for (uint64_t i = 0; i < ti->n_extents; i++) {
		bt->ext[i] = L->ext[ti->first_extent + i];
		bt->ext[i].off -= ti->data_off;
	}
	return 0;
}

static int file_fn(void *ud, const mfs_file_info *f)
{
	struct load *L = ud;
	mfs_blob_info bi;
	free(L->ext);
	L->ext = NULL;
	int rc = mfs_blob_get(L->t, L->b->repo, f->etag, &bi, &L->ext);
	if (rc < 0)
		return rc;
	if (bi.n_tensors == 0)
		return 0;
	L->n_ext = bi.n_extents;
	L->etag = f->etag;
	return mfs_tensors_foreach(L->t, L->b->repo, f->etag, tensor_fn, L);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const mfs_base_tensor *)a)->name, ((const mfs_base_tensor *)b)->name);
}

int mfs_base_load(mfs_txn *t, const char *repo, mfs_base **out)
{
	*out = NULL;
	if (strlen(repo) > MFS_REPO_ID_MAX)
		return MFS_E_NOTFOUND;
	mfs_base *b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	strcpy(b->repo, repo);
	int rc = mfs_ref_get(t, repo, "main", b->commit);
	if (rc == MFS_E_NOTFOUND)
		rc = mfs_commit_pick(t, repo, NULL, b->commit);
	struct load L = {.t = t, .b = b};
	if (rc == 0)
		rc = mfs_files_foreach(t, repo, b->commit, file_fn, &L);
	free(L.ext);
	if (rc < 0) {
		mfs_base_free(b);
		return rc;
	}
	if (b->n)
		qsort(b->t, b->n, sizeof *b->t, name_cmp);
	*out = b;
	return 0;
}

void mfs_base_free(mfs_base *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		free(b->t[i].name);
		free(b->t[i].ext);
	}
	free(b->t);
	free(b);
}

const mfs_base_tensor *mfs_base_match(const mfs_base *b, const char *name, mfs_dtype dtype,
				      uint32_t ndim, const uint64_t *shape)
{
	size_t lo = 0, hi = b->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(b->t[mid].name, name);
		if (c == 0) {
			const mfs_base_tensor *bt = &b->t[mid];
			if (bt->dtype != dtype || bt->ndim != ndim ||
			    memcmp(bt->shape, shape, ndim * sizeof *shape) != 0)
				return NULL;
			return bt;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int mfs_base_chunk_ref(const mfs_base_tensor *bt, uint64_t off, uint32_t len,
		       mfs_chunk_ref *out)
{
	size_t i = mfs_extent_find(bt->ext, bt->n_ext, off);
	if (i >= bt->n_ext || len == 0)
		return MFS_E_NOTFOUND;
	const mfs_extent *e = &bt->ext[i];
	if (off - e->off + len > e->len)
		return MFS_E_NOTFOUND; /* the base was cut finer: no one chunk holds it */
	out->key = e->key;
	out->off = off - e->off;
	out->len = len;
	out->role = MFS_REF_BASE;
	return 0;
}

int mfs_base_ref_resolve(mfs_txn *t, mfs_chunk_ref *ref, mfs_codec_ws *ws, unsigned slot,
			 const uint8_t **bytes)
{
	mfs_chunk_view v;
	int rc = mfs_chunk_get(t, &ref->key, &v);
	if (rc < 0)
		return rc;
	if (v.n_refs) {
		/* The base chunk is itself a delta: reference its own base at the
		 * same place instead (same elements: xor-delta references are
		 * same-offset), so that chains stay one deep. */
		if (v.codec != MFS_CODEC_XOR_DELTA)
			return MFS_E_UNSUPPORTED; /* e.g. a residual of a quantized twin:
						     no chunk holds its bytes whole */
		if (v.n_refs != 1 || v.refs[0].role != MFS_REF_BASE || v.refs[0].len != v.raw_len)
			return MFS_E_CORRUPT;
		mfs_chunk_ref moved = {.key = v.refs[0].key,
				       .off = v.refs[0].off + ref->off,
				       .len = ref->len,
				       .role = MFS_REF_BASE};
		if ((rc = mfs_chunk_get(t, &moved.key, &v)) < 0)
			return rc;
		*ref = moved;
	}
	if (mfs_chunk_ref_check(ref, &v) < 0)
		return MFS_E_CORRUPT;
	uint8_t *buf = mfs_codec_ws_scratch(ws, slot, v.raw_len ? v.raw_len : 1);
	if (!buf)
		return -ENOMEM;
	if ((rc = mfs_chunk_load(mfs_txn_store(t), &ref->key, &v, ws, NULL)) < 0 ||
	    (rc = mfs_chunk_decode(&v, &ref->key, NULL, buf, v.raw_len, ws)) < 0)
		return rc;
	*bytes = buf + ref->off;
	return 0;
}

uint64_t mfs_base_matched_bytes(const mfs_base *b, const mfs_base_want *want, size_t n_want,
				size_t *n_match)
{
	uint64_t bytes = 0;
	size_t n = 0;
	for (size_t i = 0; i < n_want; i++) {
		if (mfs_base_match(b, want[i].name, want[i].dtype, want[i].ndim, want[i].shape)) {
			bytes += want[i].raw_len;
			n++;
		}
	}
	if (n_match)
		*n_match = n;
	return bytes;
}

/* ---- hints ---- */

const char *mfs_base_how_name(mfs_base_how how)
{
	switch (how) {
	case MFS_BASE_CARD:
		return "the model card's base_model";
	case MFS_BASE_CONFIG:
		return "config.json's _name_or_path";
	case MFS_BASE_ADAPTER:
		return "adapter_config.json's base_model_name_or_path";
	case MFS_BASE_MATCH:
		return "tensor names, shapes and a sampled bit distance";
	default:
		return "nothing";
	}
}

/* Copy [s, s+n) trimmed of blanks and quotes into buf; returns it or NULL. */
static const char *hint_copy(const char *s, size_t n, char **buf, size_t *cap)
{
	while (n && (isspace((unsigned char)*s) || *s == '"' || *s == '\''))
		s++, n--;
	while (n && (isspace((unsigned char)s[n - 1]) || s[n - 1] == '"' || s[n - 1] == '\''))
		n--;
	if (n == 0 || n + 1 > *cap)
		return NULL;
	char *o = *buf;
	memcpy(o, s, n);
	o[n] = '\0';
	*buf += n + 1;
	*cap -= n + 1;
	return o;
}

/* base_model from a README's YAML front matter: "base_model: X" or a list. */
static const char *card_base(const char *readme, char **buf, size_t *cap)
{
	if (strncmp(readme, "---", 3) != 0)
		return NULL;
	const char *p = strchr(readme, '\n');
	const char *end = p ? strstr(p, "\n---") : NULL;
	while (p && p < end) {
		p++;
		const char *eol = strchr(p, '\n');
		if (!eol || eol > end)
			eol = end;
		if (!strncmp(p, "base_model:", 11)) {
			const char *v = p + 11;
			const char *got = hint_copy(v, (size_t)(eol - v), buf, cap);
			if (got && got[0] != '[')
				return got;
			/* a list: the first "- X" line below */
			const char *q = eol;
			while (q < end) {
				q++;
				const char *qe = strchr(q, '\n');
				if (!qe || qe > end)
					qe = end;
				const char *s = q;
				while (s < qe && (*s == ' ' || *s == '\t'))
					s++;
				if (s < qe && *s == '-')
					return hint_copy(s + 1, (size_t)(qe - s - 1), buf, cap);
				if (s == q && s < qe)
					break; /* the next key */
				q = qe;
			}
			return NULL;
		}
		p = eol;
	}
	return NULL;
}

static const char *json_str(const char *json, const char *key, char **buf, size_t *cap)
{
	cJSON *j = cJSON_Parse(json);
	const char *out = NULL;
	const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
	if (cJSON_IsString(v) && v->valuestring)
		out = hint_copy(v->valuestring, strlen(v->valuestring), buf, cap);
	cJSON_Delete(j);
	return out;
}

void mfs_base_hints_parse(const char *readme, const char *config_json,
			  const char *adapter_json, mfs_base_hints *out, char *buf, size_t cap)
{
	memset(out, 0, sizeof *out);
	if (readme)
		out->card = card_base(readme, &buf, &cap);
	if (config_json)
		out->config = json_str(config_json, "_name_or_path", &buf, &cap);
	if (adapter_json)
		out->adapter = json_str(adapter_json, "base_model_name_or_path", &buf, &cap);
}

/* "org/name" (a hub name, not a local path) -> "models/org/name". */
static int hint_repo(const char *hint, char out[MFS_REPO_ID_MAX + 1])
{
	if (!hint || hint[0] == '/' || hint[0] == '.' || hint[0] == '~')
		return -1;
	int n = snprintf(out, MFS_REPO_ID_MAX + 1, "models/%s", hint);
	if (n < 0 || n > MFS_REPO_ID_MAX || mfs_repo_id_check(out, NULL) < 0)
		return -1;
	return 0;
}

/* ---- proposing ---- */

#define SAMPLE_BYTES ((size_t)64 << 10)
#define SAMPLE_TENSORS 4
#define MATCH_CANDIDATES 4

/*
 * Share of bits that differ between the fine-tune and base @p b over the
 * first bytes of the largest matched tensors (1.0 when nothing could be
 * sampled).
 */
static double bit_distance(mfs_txn *t, const mfs_base *b, const mfs_base_want *want,
			   size_t n_want, mfs_base_read_fn read, void *read_ud,
			   mfs_codec_ws *ws, uint8_t *mine)
{
	size_t pick[SAMPLE_TENSORS];
	size_t n_pick = 0;
	for (size_t i = 0; i < n_want; i++) {
		if (!mfs_base_match(b, want[i].name, want[i].dtype, want[i].ndim, want[i].shape))
			continue;
		size_t at = n_pick < SAMPLE_TENSORS ? n_pick++ : SAMPLE_TENSORS;
		if (at == SAMPLE_TENSORS) {
			size_t small = 0;
			for (size_t k = 1; k < SAMPLE_TENSORS; k++)
				if (want[pick[k]].raw_len < want[pick[small]].raw_len)
					small = k;
			if (want[i].raw_len <= want[pick[small]].raw_len)
				continue;
			at = small;
		}
		pick[at] = i;
	}
	uint64_t bits = 0, differ = 0;
	for (size_t k = 0; k < n_pick; k++) {
		const mfs_base_want *w = &want[pick[k]];
		const mfs_base_tensor *bt =
		    mfs_base_match(b, w->name, w->dtype, w->ndim, w->shape);
		size_t len = w->raw_len < SAMPLE_BYTES ? (size_t)w->raw_len : SAMPLE_BYTES;
		if (bt->ext[0].len < len)
			len = bt->ext[0].len;
		mfs_chunk_ref ref;
		const uint8_t *theirs;
		if (len == 0 || mfs_base_chunk_ref(bt, 0, (uint32_t)len, &ref) < 0 ||
		    mfs_base_ref_resolve(t, &ref, ws, MFS_WS_SLOT_REF, &theirs) < 0 ||
		    read(read_ud, w->file, w->off, mine, len) < 0)
			continue;
		for (size_t i = 0; i < len; i++)
			differ += (uint64_t)__builtin_popcount(mine[i] ^ theirs[i]);
		bits += 8 * (uint64_t)len;
	}
	return bits ? (double)differ / (double)bits : 1.0;
}

struct cand {
	char repo[MFS_REPO_ID_MAX + 1];
	uint64_t bytes;
	size_t n_match;
	double dist;
};

struct scan {
	mfs_txn *t;
	const char *self;
	const mfs_base_want *want;
	size_t n_want;
	uint64_t need; /* matched bytes a candidate needs */
	struct cand top[MATCH_CANDIDATES];
	size_t n_top;
	size_t n_repos;
};

struct others {
	mfs_txn *t;
	const char *self;
	int (*cb)(void *ud, const mfs_base *b);
	void *ud;
	size_t n;
};

static int others_fn(void *ud, const mfs_repo_info *r)
{
	struct others *o = ud;
	if (!strcmp(r->repo, o->self))
		return 0;
	o->n++;
	mfs_base *b;
	int rc = mfs_base_load(o->t, r->repo, &b);
	if (rc == MFS_E_NOTFOUND || rc == MFS_E_CORRUPT)
		return 0; /* nothing usable there */
	if (rc < 0)
		return rc;
	rc = o->cb(o->ud, b);
	mfs_base_free(b);
	return rc;
}

int mfs_base_foreach_other(mfs_txn *t, const char *self,
			   int (*cb)(void *ud, const mfs_base *b), void *ud, size_t *n_others)
{
	struct others o = {.t = t, .self = self, .cb = cb, .ud = ud};
	int rc = mfs_repos_foreach(t, others_fn, &o);
	if (n_others)
		*n_others = o.n;
	return rc;
}

static int scan_fn(void *ud, const mfs_base *b)
{
	struct scan *s = ud;
	size_t nm = 0;
	uint64_t bytes = mfs_base_matched_bytes(b, s->want, s->n_want, &nm);
	if (bytes == 0 || bytes < s->need)
		return 0;
	size_t at = s->n_top < MATCH_CANDIDATES ? s->n_top++ : MATCH_CANDIDATES;
	if (at == MATCH_CANDIDATES) {
		size_t small = 0;
		for (size_t k = 1; k < MATCH_CANDIDATES; k++)
			if (s->top[k].bytes < s->top[small].bytes)
				small = k;
		if (bytes <= s->top[small].bytes)
			return 0;
		at = small;
	}
	snprintf(s->top[at].repo, sizeof s->top[at].repo, "%s", b->repo);
	s->top[at].bytes = bytes;
	s->top[at].n_match = nm;
	return 0;
}

int mfs_base_propose(mfs_txn *t, const char *self, const mfs_base_hints *hints,
		     const mfs_base_want *want, size_t n_want, mfs_base_read_fn read,
		     void *read_ud, char repo[MFS_REPO_ID_MAX + 1], mfs_base_how *how,
		     char *note, size_t note_cap)
{
	repo[0] = '\0';
	*how = MFS_BASE_NONE;
	char dummy[1];
	if (!note) {
		note = dummy;
		note_cap = sizeof dummy;
	}
	note[0] = '\0';
	size_t nl = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < n_want; i++)
		total += want[i].raw_len;
	if (n_want == 0) {
		snprintf(note, note_cap, "no tensors to match");
		return 0;
	}
	/* 1. what the model's own files name */
	const char *named[3] = {hints ? hints->card : NULL, hints ? hints->config : NULL,
				hints ? hints->adapter : NULL};
	const mfs_base_how kinds[3] = {MFS_BASE_CARD, MFS_BASE_CONFIG, MFS_BASE_ADAPTER};
	for (int k = 0; k < 3; k++) {
		char id[MFS_REPO_ID_MAX + 1];
		if (hint_repo(named[k], id) < 0 || !strcmp(id, self))
			continue;
		mfs_base *b;
		int rc = mfs_base_load(t, id, &b);
		if (rc == MFS_E_NOTFOUND || rc == MFS_E_CORRUPT) {
			nl += (size_t)snprintf(note + nl, nl < note_cap ? note_cap - nl : 0,
					       "%s%s names %s, which the store does not hold%s",
					       nl ? "; " : "", mfs_base_how_name(kinds[k]), id,
					       rc == MFS_E_CORRUPT ? " intact" : "");
			continue;
		}
		if (rc < 0)
			return rc;
		size_t nm = 0;
		uint64_t bytes = mfs_base_matched_bytes(b, want, n_want, &nm);
		mfs_base_free(b);
		if (bytes == 0) {
			nl += (size_t)snprintf(note + nl, nl < note_cap ? note_cap - nl : 0,
					       "%s%s names %s, but none of its tensors matches "
					       "one of the %zu here by name, dtype and shape",
					       nl ? "; " : "", mfs_base_how_name(kinds[k]), id,
					       n_want);
			continue;
		}
		strcpy(repo, id);
		*how = kinds[k];
		nl += (size_t)snprintf(note + nl, nl < note_cap ? note_cap - nl : 0,
				       "%s%zu of %zu tensors match", nl ? "; " : "", nm, n_want);
		return 0;
	}
	/* 2. every repo, by matched bytes, then bit distance */
	struct scan s = {.t = t, .self = self, .want = want, .n_want = n_want,
			 .need = (total + 1) / 2};
	int rc = mfs_base_foreach_other(t, self, scan_fn, &s, &s.n_repos);
	if (rc < 0)
		return rc;
	if (s.n_top == 0) {
		snprintf(note + nl, nl < note_cap ? note_cap - nl : 0,
			 "%sno repo of the %zu in the store has tensors matching at least half "
			 "of its bytes by name, dtype and shape",
			 nl ? "; " : "", s.n_repos);
		return 0;
	}
	mfs_codec_ws *ws;
	if ((rc = mfs_codec_ws_create(&ws)) < 0)
		return rc;
	uint8_t *mine = malloc(SAMPLE_BYTES);
	if (!mine) {
		mfs_codec_ws_free(ws);
		return -ENOMEM;
	}
	size_t best = 0;
	for (size_t k = 0; k < s.n_top; k++) {
		mfs_base *b;
		s.top[k].dist = 1.0;
		if (mfs_base_load(t, s.top[k].repo, &b) == 0) {
			s.top[k].dist = bit_distance(t, b, want, n_want, read, read_ud, ws, mine);
			mfs_base_free(b);
		}
		if (s.top[k].dist < s.top[best].dist ||
		    (s.top[k].dist == s.top[best].dist && s.top[k].bytes > s.top[best].bytes))
			best = k;
	}
	free(mine);
	mfs_codec_ws_free(ws);
	strcpy(repo, s.top[best].repo);
	*how = MFS_BASE_MATCH;
	snprintf(note + nl, nl < note_cap ? note_cap - nl : 0,
		 "%s%zu of %zu tensors match, %.1f%% of sampled bits differ (%zu candidate%s)",
		 nl ? "; " : "", s.top[best].n_match, n_want, 100.0 * s.top[best].dist, s.n_top,
		 s.n_top == 1 ? "" : "s");
	return 0;
}
