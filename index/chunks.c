/*
 * chunks.c - the content-addressed chunks: keys, records (layout: records.h)
 * naming their payloads' entries in the packs (pack.h), decoding with its
 * checksum, and the reference counts of the chunkrefs database (store.h,
 * "chunks").
 */
#include <errno.h>
#include <lmdb.h>
#include <string.h>
#include <xxhash.h>

#include "bytes.h"
#include "pack.h"
#include "records.h"
#include "sha256.h"
#include "store_internal.h"

void mfs_chunk_key_of(const void *raw, size_t len, mfs_chunk_key *out)
{
	XXH128_hash_t h = XXH3_128bits(raw, len);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	_Static_assert(sizeof c.digest == 16, "XXH128 canonical form is 16 bytes");
	memcpy(out->b, c.digest, 16);
}

char *mfs_chunk_key_hex(const mfs_chunk_key *k, char *buf)
{
	mfs_hex(k->b, 16, buf);
	return buf;
}

static int chunk_parse(const MDB_val *v, mfs_chunk_view *out)
{
	return mfs_rec_chunk_decode(v->mv_data, v->mv_size, out);
}

int mfs_chunk_get(mfs_txn *t, const mfs_chunk_key *key, mfs_chunk_view *out)
{
	MDB_val k = {16, (void *)key->b}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_CHUNKS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	return chunk_parse(&v, out);
}

int mfs_chunk_decode(const mfs_chunk_view *view, const mfs_chunk_key *key,
		     const mfs_ref_data *refs, void *dst, size_t dst_len, mfs_codec_ws *ws)
{
	if (dst_len != view->raw_len || (view->n_refs && !refs) ||
	    (view->in_pack && !view->payload))
		return MFS_E_INVAL; /* not loaded: mfs_chunk_load */
	mfs_decode_req rq = {
	    .src = view->payload,
	    .src_len = view->payload_len,
	    .dst = dst,
	    .dst_len = dst_len,
	    .geom = view->has_geom ? &view->geom : NULL,
	    .refs = view->n_refs ? refs : NULL,
	    .n_refs = view->n_refs,
	};
	int rc = mfs_codec_decode(view->codec, &rq, ws);
	if (rc < 0)
		return rc == -ENOMEM ? rc : MFS_E_CORRUPT;
	mfs_chunk_key got;
	mfs_chunk_key_of(dst, dst_len, &got);
	if (memcmp(got.b, key->b, 16) != 0)
		return MFS_E_CORRUPT;
	return 0;
}

int mfs_chunk_ref_check(const mfs_chunk_ref *ref, const mfs_chunk_view *rv)
{
	if (rv->n_refs != 0 || ref->off > rv->raw_len || ref->len > rv->raw_len - ref->off)
		return MFS_E_CORRUPT;
	return 0;
}

int mfs_chunk_exists(mfs_txn *t, const mfs_chunk_key *key)
{
	MDB_val k = {16, (void *)key->b}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_CHUNKREFS), &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? mfs_db_rc(rc) : 1;
}

int mfs_chunkrefs_get(mfs_txn *t, const mfs_chunk_key *key, uint64_t *out)
{
	MDB_val k = {16, (void *)key->b}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_CHUNKREFS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	if (v.mv_size != 8)
		return MFS_E_CORRUPT;
	*out = mfs_get_le64(v.mv_data);
	return 0;
}

int mfs_chunkrefs_put(mfs_txn *t, const mfs_chunk_key *key, uint64_t n)
{
	uint8_t b[8];
	mfs_put_le64(b, n);
	MDB_val k = {16, (void *)key->b}, v = {8, b};
	return mfs_db_rc(mdb_put(t->txn, DBI(t, DB_CHUNKREFS), &k, &v, 0));
}

int mfs_chunk_refcount(mfs_txn *t, const mfs_chunk_key *key, uint64_t *out)
{
	*out = 0;
	int rc = mfs_chunkrefs_get(t, key, out);
	return rc == MFS_E_NOTFOUND ? 0 : rc;
}

int mfs_chunkrefs_add(mfs_txn *t, const mfs_chunk_key *key, int delta)
{
	uint64_t n = 0;
	int rc = mfs_chunkrefs_get(t, key, &n);
	if (rc < 0)
		return rc; /* MFS_E_NOTFOUND: the chunk was never stored */
	if (delta < 0 && n == 0)
		return MFS_E_CORRUPT;
	return mfs_chunkrefs_put(t, key, delta < 0 ? n - 1 : n + 1);
}

/* One more (+1) or one less (-1) use of each chunk @p v references. */
static int refs_count(mfs_txn *t, const mfs_chunk_view *v, int delta)
{
	for (uint32_t i = 0; i < v->n_refs; i++) {
		int rc = mfs_chunkrefs_add(t, &v->refs[i].key, delta);
		if (rc < 0 && !(delta < 0 && rc == MFS_E_CORRUPT))
			return rc; /* a count already 0 stays 0 (gc's recount settles it) */
	}
	return 0;
}

/* The references of @p m exist and have none themselves (depth 1). */
static int refs_usable(mfs_txn *t, const mfs_chunk_meta *m)
{
	for (size_t i = 0; i < m->n_refs; i++) {
		mfs_chunk_view rv;
		int rc = mfs_chunk_get(t, &m->refs[i].key, &rv);
		if (rc < 0)
			return rc;
		if (mfs_chunk_ref_check(&m->refs[i], &rv) < 0)
			return MFS_E_INVAL;
	}
	return 0;
}

/*
 * Append @p payload to the handle's pack and write the record naming it
 * under @p key (new with MDB_NOOVERWRITE, or over an old one).
 * @return 0, 1 (MDB_NOOVERWRITE and the key exists), or an error
 */
static int chunk_write(mfs_txn *t, const mfs_chunk_key *key, const mfs_chunk_meta *m,
		       const void *payload, size_t payload_len, unsigned flags)
{
	mfs_chunk_loc loc;
	uint8_t rec[MFS_REC_CHUNK_MAX];
	size_t rl;
	int rc = mfs_rec_chunk_encode(rec, m, &(mfs_chunk_loc){0}, &rl);
	if (rc < 0)
		return rc;
	if ((rc = mfs_pack_append(t, key, payload, payload_len, &loc)) < 0)
		return rc;
	mfs_rec_chunk_encode(rec, m, &loc, &rl);
	MDB_val k = {16, (void *)key->b}, v = {rl, rec};
	rc = mdb_put(t->txn, DBI(t, DB_CHUNKS), &k, &v, flags);
	if (rc)
		return rc == MDB_KEYEXIST ? 1 : mfs_db_rc(rc);
	return 0;
}

int mfs_chunk_put(mfs_txn *t, const mfs_chunk_key *key, const mfs_chunk_meta *m,
		  const void *payload, size_t payload_len, int *existed)
{
	if (existed)
		*existed = 0;
	uint8_t hbuf[MFS_REC_CHUNK_MAX];
	size_t hdr;
	int rc = mfs_rec_chunk_header(hbuf, m, &hdr); /* the meta is sound */
	if (rc < 0)
		return rc;
	MDB_val k = {16, (void *)key->b}, v;
	rc = mdb_get(t->txn, DBI(t, DB_CHUNKS), &k, &v);
	if (rc == 0) {
		if (existed)
			*existed = 1;
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return mfs_db_rc(rc);
	if ((rc = refs_usable(t, m)) < 0)
		return rc;
	if ((rc = chunk_write(t, key, m, payload, payload_len, MDB_NOOVERWRITE)) != 0)
		return rc < 0 ? rc : MFS_E_DB;
	for (size_t i = 0; i < m->n_refs; i++)
		if ((rc = mfs_chunkrefs_add(t, &m->refs[i].key, +1)) < 0)
			return rc;
	/* A new chunk is garbage (count 0) until a published blob references it. */
	return mfs_chunkrefs_put(t, key, 0);
}

int mfs_chunk_replace(mfs_txn *t, const mfs_chunk_key *key, const mfs_chunk_meta *m,
		      const void *payload, size_t payload_len)
{
	if (!t->write)
		return MFS_E_INVAL;
	uint8_t hbuf[MFS_REC_CHUNK_MAX];
	size_t hdr;
	int rc = mfs_rec_chunk_header(hbuf, m, &hdr);
	if (rc < 0)
		return rc;
	mfs_chunk_view old;
	rc = mfs_chunk_get(t, key, &old);
	if (rc == MFS_E_NOTFOUND)
		return rc;
	int old_ok = rc == 0; /* a record that does not parse names no references */
	if (rc < 0 && rc != MFS_E_CORRUPT)
		return rc;
	if ((rc = refs_usable(t, m)) < 0)
		return rc;
	for (size_t i = 0; i < m->n_refs; i++)
		if ((rc = mfs_chunkrefs_add(t, &m->refs[i].key, +1)) < 0)
			return rc;
	if (old_ok && (rc = refs_count(t, &old, -1)) < 0)
		return rc;
	/* the old entry's bytes are dead once the new record names another */
	if (old_ok && old.in_pack && (rc = mfs_pack_account(t, &old.loc, -1)) < 0)
		return rc;
	if ((rc = chunk_write(t, key, m, payload, payload_len, 0)) != 0)
		return rc < 0 ? rc : MFS_E_DB;
	return mfs_store_generation_bump(t);
}

struct chunks_iter {
	mfs_txn *t;
	int (*cb)(void *, const mfs_chunk_key *, const mfs_chunk_view *, uint64_t);
	void *ud;
};

static int chunks_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct chunks_iter *it = ud;
	mfs_chunk_key key;
	mfs_chunk_view view;
	if (k->mv_size != 16)
		return MFS_E_CORRUPT;
	memcpy(key.b, k->mv_data, 16);
	int rc = chunk_parse(v, &view);
	if (rc < 0)
		memset(&view, 0, sizeof view), view.codec = MFS_CODEC__COUNT;
	uint64_t refs = 0;
	rc = mfs_chunk_refcount(it->t, &key, &refs);
	if (rc < 0)
		return rc;
	return it->cb(it->ud, &key, &view, refs);
}

int mfs_chunks_foreach(mfs_txn *t,
		       int (*cb)(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
				 uint64_t refcount),
		       void *ud)
{
	struct chunks_iter it = {t, cb, ud};
	return mfs_db_iter(t->txn, DBI(t, DB_CHUNKS), NULL, 0, chunks_iter_fn, &it);
}
