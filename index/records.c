/*
 * records.c - encoders and bounds-checked decoders of the store's records.
 * The layouts are in records.h; a golden test (tests/unit/test_records.c)
 * pins them byte for byte.
 */
#include "records.h"

#include <string.h>

#include "bytes.h"

_Static_assert(MFS_REC_BLOB_FIXED == 65, "blob record fixed part is 65 bytes");
_Static_assert(MFS_REC_PACK_LEN == 1 + 8 + 8 + 8 + 4 + 8, "pack record is 37 bytes");
_Static_assert(MFS_TENSOR_NAME_MAX <= 0xffff, "tensor name length is a u16");
_Static_assert(MFS_ETAG_MAX <= 0xff, "etag length is a u8");
_Static_assert(MFS_CODEC__COUNT <= 0x100, "codec id is a u8");

static int lower_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

/* The reader consumed the whole record and nothing went out of bounds. */
static int rd_done(const mfs_rd *r)
{
	return r->ok && r->p == r->end;
}

/* ---- chunk ---- */

static int role_ok(unsigned role)
{
	return role >= MFS_REF_BASE && role < MFS_REF__COUNT;
}

static int chunk_meta_ok(const mfs_chunk_meta *m)
{
	if (m->n_refs > MFS_REFS_MAX || (m->n_refs && !m->refs) ||
	    (m->geom && m->geom->ndim > MFS_MAX_DIMS))
		return 0;
	for (size_t i = 0; i < m->n_refs; i++)
		if (m->refs[i].len == 0 || !role_ok(m->refs[i].role) ||
		    m->refs[i].off > UINT64_MAX - m->refs[i].len)
			return 0;
	return 1;
}

/* Geometry and references, as versions 2 and 3 write them; returns the end. */
static uint8_t *chunk_tail_put(uint8_t *q, const mfs_chunk_meta *m)
{
	if (m->geom) {
		*q++ = (uint8_t)m->geom->dtype;
		*q++ = (uint8_t)m->geom->ndim;
		mfs_put_le64(q, m->geom->elem_off), q += 8;
		for (uint32_t d = 0; d < m->geom->ndim; d++, q += 8)
			mfs_put_le64(q, m->geom->shape[d]);
	}
	for (size_t i = 0; i < m->n_refs; i++) {
		const mfs_chunk_ref *r = &m->refs[i];
		memcpy(q, r->key.b, 16);
		mfs_put_le64(q + 16, r->off);
		mfs_put_le32(q + 24, r->len);
		q[28] = (uint8_t)r->role;
		q += MFS_REC_CHUNK_REF;
	}
	return q;
}

int mfs_rec_chunk_encode(uint8_t *p, const mfs_chunk_meta *m, const mfs_chunk_loc *loc,
			 size_t *len)
{
	if (!chunk_meta_ok(m))
		return MFS_E_INVAL;
	p[0] = MFS_REC_V3;
	p[1] = (uint8_t)m->codec;
	p[2] = m->geom ? MFS_REC_CHUNK_HAS_GEOM : 0;
	p[3] = (uint8_t)m->n_refs;
	mfs_put_le32(p + 4, m->raw_len);
	mfs_put_le64(p + 8, loc->pack);
	mfs_put_le64(p + 16, loc->off);
	mfs_put_le32(p + 24, loc->len);
	uint8_t *q = chunk_tail_put(p + MFS_REC_CHUNK_HDR + MFS_REC_CHUNK_LOC, m);
	*len = (size_t)(q - p);
	return 0;
}

int mfs_rec_chunk_header(uint8_t *p, const mfs_chunk_meta *m, size_t *len)
{
	if (!chunk_meta_ok(m))
		return MFS_E_INVAL;
	p[1] = (uint8_t)m->codec;
	mfs_put_le32(p + 4, m->raw_len);
	if (m->n_refs == 0 && !m->geom) {
		p[0] = MFS_REC_V1;
		p[2] = 0;
		p[3] = 0;
		*len = MFS_REC_CHUNK_HDR;
		return 0;
	}
	p[0] = MFS_REC_V2;
	p[2] = m->geom ? MFS_REC_CHUNK_HAS_GEOM : 0;
	p[3] = (uint8_t)m->n_refs;
	uint8_t *q = chunk_tail_put(p + MFS_REC_CHUNK_HDR, m);
	*len = (size_t)(q - p);
	return 0;
}

/* The v2 part after the fixed header: geometry and references. */
static int chunk_v2_decode(mfs_rd *r, unsigned flags, unsigned n_refs, mfs_chunk_view *out)
{
	if ((flags & ~MFS_REC_CHUNK_HAS_GEOM) != 0 || n_refs > MFS_REFS_MAX)
		return MFS_E_CORRUPT;
	if (flags & MFS_REC_CHUNK_HAS_GEOM) {
		uint8_t dtype = mfs_rd_u8(r);
		uint8_t ndim = mfs_rd_u8(r);
		uint64_t elem_off = mfs_rd_u64(r);
		if (!r->ok || dtype >= MFS_DT__COUNT || ndim > MFS_MAX_DIMS)
			return MFS_E_CORRUPT;
		out->has_geom = 1;
		out->geom.dtype = (mfs_dtype)dtype;
		out->geom.ndim = ndim;
		out->geom.elem_off = elem_off;
		for (unsigned d = 0; d < ndim; d++)
			out->geom.shape[d] = mfs_rd_u64(r);
	}
	for (unsigned i = 0; i < n_refs; i++) {
		const uint8_t *q = mfs_rd_take(r, MFS_REC_CHUNK_REF);
		if (!q)
			return MFS_E_CORRUPT;
		mfs_chunk_ref *ref = &out->refs[i];
		memcpy(ref->key.b, q, 16);
		ref->off = mfs_get_le64(q + 16);
		ref->len = mfs_get_le32(q + 24);
		if (ref->len == 0 || !role_ok(q[28]) || ref->off > UINT64_MAX - ref->len)
			return MFS_E_CORRUPT;
		ref->role = (mfs_ref_role)q[28];
	}
	out->n_refs = n_refs;
	return r->ok ? 0 : MFS_E_CORRUPT;
}

int mfs_rec_chunk_decode(const void *p, size_t len, mfs_chunk_view *out)
{
	mfs_rd r = mfs_rd_init(p, len);
	uint8_t ver = mfs_rd_u8(&r);
	uint8_t codec = mfs_rd_u8(&r);
	uint8_t flags = mfs_rd_u8(&r);
	uint8_t fourth = mfs_rd_u8(&r); /* v1: reserved; v2: n_refs */
	uint32_t raw_len = mfs_rd_u32(&r);
	if (!r.ok || ver < MFS_REC_V1 || ver > MFS_REC_V3 || codec >= MFS_CODEC__COUNT)
		return MFS_E_CORRUPT;
	memset(out, 0, sizeof *out);
	out->codec = (mfs_codec_id)codec;
	out->raw_len = raw_len;
	if (ver == MFS_REC_V3) {
		out->loc.pack = mfs_rd_u64(&r);
		out->loc.off = mfs_rd_u64(&r);
		out->loc.len = mfs_rd_u32(&r);
		if (!r.ok || chunk_v2_decode(&r, flags, fourth, out) < 0 || !rd_done(&r))
			return MFS_E_CORRUPT;
		out->in_pack = 1;
		out->payload = NULL;
		out->payload_len = out->loc.len;
		return 0;
	}
	if (ver == MFS_REC_V2) {
		if (chunk_v2_decode(&r, flags, fourth, out) < 0)
			return MFS_E_CORRUPT;
	} else {
		if ((flags & ~MFS_REC_CHUNK_HAS_REF) != 0 || fourth != 0)
			return MFS_E_CORRUPT;
		if (flags & MFS_REC_CHUNK_HAS_REF) {
			const uint8_t *ref = mfs_rd_take(&r, 16);
			if (!ref || raw_len == 0)
				return MFS_E_CORRUPT;
			memcpy(out->refs[0].key.b, ref, 16);
			out->refs[0].off = 0;
			out->refs[0].len = raw_len;
			out->refs[0].role = MFS_REF_BASE;
			out->n_refs = 1;
		}
	}
	out->payload = r.p;
	out->payload_len = (size_t)(r.end - r.p);
	return 0;
}

/* ---- pack ---- */

void mfs_rec_pack_encode(uint8_t *p, const mfs_pack_rec *r)
{
	p[0] = MFS_REC_V1;
	mfs_put_le64(p + 1, r->committed_end);
	mfs_put_le64(p + 9, r->live_bytes);
	mfs_put_le64(p + 17, r->dead_bytes);
	mfs_put_le32(p + 25, (uint32_t)r->state);
	mfs_put_le64(p + 29, r->retired_txnid);
}

int mfs_rec_pack_decode(const void *p, size_t len, mfs_pack_rec *out)
{
	mfs_rd r = mfs_rd_init(p, len);
	uint8_t ver = mfs_rd_u8(&r);
	mfs_pack_rec pr;
	pr.committed_end = mfs_rd_u64(&r);
	pr.live_bytes = mfs_rd_u64(&r);
	pr.dead_bytes = mfs_rd_u64(&r);
	uint32_t state = mfs_rd_u32(&r);
	pr.retired_txnid = mfs_rd_u64(&r);
	if (!rd_done(&r) || ver != MFS_REC_V1 || state >= MFS_PACK__COUNT)
		return MFS_E_CORRUPT;
	pr.state = (mfs_pack_state)state;
	*out = pr;
	return 0;
}

/* ---- blob ---- */

int mfs_rec_blob_size(uint64_t n_extents, size_t *out)
{
	if (n_extents > (SIZE_MAX - MFS_REC_BLOB_FIXED) / MFS_REC_EXTENT)
		return MFS_E_TOOBIG;
	*out = MFS_REC_BLOB_FIXED + (size_t)n_extents * MFS_REC_EXTENT;
	return 0;
}

int mfs_rec_blob_encode(uint8_t *p, size_t cap, const mfs_blob_rec *b)
{
	size_t need;
	if (mfs_rec_blob_size(b->n_extents, &need) < 0 || cap < need)
		return MFS_E_NOSPACE;
	p[0] = MFS_REC_V1;
	mfs_put_le64(p + 1, b->size);
	memcpy(p + 9, b->sha256, 32);
	mfs_put_le64(p + 41, b->stored_bytes);
	mfs_put_le64(p + 49, b->n_tensors);
	mfs_put_le64(p + 57, b->n_extents);
	uint8_t *q = p + MFS_REC_BLOB_FIXED;
	for (size_t i = 0; i < b->n_extents; i++, q += MFS_REC_EXTENT) {
		mfs_put_le64(q, b->extents[i].off);
		mfs_put_le32(q + 8, b->extents[i].len);
		memcpy(q + 12, b->extents[i].key.b, 16);
	}
	return 0;
}

void mfs_rec_blob_set_stored(uint8_t *p, uint64_t stored_bytes)
{
	mfs_put_le64(p + 41, stored_bytes);
}

int mfs_rec_blob_decode(const void *p, size_t len, mfs_blob_info *info,
			const uint8_t **ext)
{
	mfs_rd r = mfs_rd_init(p, len);
	uint8_t ver = mfs_rd_u8(&r);
	uint64_t size = mfs_rd_u64(&r);
	const uint8_t *sha = mfs_rd_take(&r, 32);
	uint64_t stored = mfs_rd_u64(&r);
	uint64_t n_tensors = mfs_rd_u64(&r);
	uint64_t n_extents = mfs_rd_u64(&r);
	if (!r.ok || ver != MFS_REC_V1)
		return MFS_E_CORRUPT;
	size_t left = (size_t)(r.end - r.p);
	if (left % MFS_REC_EXTENT != 0 || n_extents != left / MFS_REC_EXTENT)
		return MFS_E_CORRUPT;
	info->size = size;
	memcpy(info->sha256, sha, 32);
	info->stored_bytes = stored;
	info->n_tensors = n_tensors;
	info->n_extents = n_extents;
	if (ext)
		*ext = r.p;
	return 0;
}

void mfs_rec_extent_get(const uint8_t *ext, uint64_t i, mfs_extent *out)
{
	const uint8_t *p = ext + i * MFS_REC_EXTENT;
	out->off = mfs_get_le64(p);
	out->len = mfs_get_le32(p + 8);
	memcpy(out->key.b, p + 12, 16);
}

int mfs_rec_blob_extents(const mfs_blob_info *info, const uint8_t *ext, mfs_extent *out)
{
	uint64_t expect = 0;
	for (uint64_t i = 0; i < info->n_extents; i++) {
		mfs_rec_extent_get(ext, i, &out[i]);
		/* Extents tile the file; a record whose extents do not is corrupt. */
		if (out[i].off != expect || out[i].len == 0)
			return MFS_E_CORRUPT;
		expect += out[i].len;
	}
	return expect == info->size ? 0 : MFS_E_CORRUPT;
}

/* ---- tensor ---- */

int mfs_rec_tensor_encode(uint8_t *p, const mfs_tensor_info *ti, size_t *len)
{
	size_t nl = strlen(ti->name);
	size_t bl = ti->base ? strlen(ti->base) : 0;
	if (nl > MFS_TENSOR_NAME_MAX || ti->ndim > MFS_MAX_DIMS ||
	    (ti->base && (bl == 0 || bl > MFS_REPO_ID_MAX)))
		return MFS_E_INVAL;
	uint8_t *q = p;
	*q++ = ti->base ? MFS_REC_V2 : MFS_REC_V1;
	*q++ = (uint8_t)ti->dtype;
	*q++ = (uint8_t)ti->codec;
	*q++ = (uint8_t)ti->ndim;
	for (uint32_t d = 0; d < ti->ndim; d++, q += 8)
		mfs_put_le64(q, ti->shape[d]);
	mfs_put_le64(q, ti->data_off), q += 8;
	mfs_put_le64(q, ti->raw_len), q += 8;
	mfs_put_le64(q, ti->stored_len), q += 8;
	mfs_put_le64(q, ti->first_extent), q += 8;
	mfs_put_le64(q, ti->n_extents), q += 8;
	mfs_put_le16(q, (uint16_t)nl), q += 2;
	memcpy(q, ti->name, nl), q += nl;
	if (ti->base) {
		mfs_put_le64(q, ti->alone_len), q += 8;
		*q++ = (uint8_t)bl;
		memcpy(q, ti->base, bl), q += bl;
	}
	*len = (size_t)(q - p);
	return 0;
}

int mfs_rec_tensor_decode(const void *p, size_t len, mfs_tensor_info *out,
			  char strs[MFS_REC_TENSOR_STRS])
{
	char *name = strs;
	mfs_rd r = mfs_rd_init(p, len);
	uint8_t ver = mfs_rd_u8(&r);
	uint8_t dtype = mfs_rd_u8(&r);
	uint8_t codec = mfs_rd_u8(&r);
	uint8_t ndim = mfs_rd_u8(&r);
	if (!r.ok || (ver != MFS_REC_V1 && ver != MFS_REC_V2) || ndim > MFS_MAX_DIMS ||
	    codec >= MFS_CODEC__COUNT)
		return MFS_E_CORRUPT;
	mfs_tensor_info ti;
	memset(&ti, 0, sizeof ti);
	ti.dtype = (mfs_dtype)dtype;
	ti.codec = (mfs_codec_id)codec;
	ti.ndim = ndim;
	for (uint32_t i = 0; i < ti.ndim; i++)
		ti.shape[i] = mfs_rd_u64(&r);
	ti.data_off = mfs_rd_u64(&r);
	ti.raw_len = mfs_rd_u64(&r);
	ti.stored_len = mfs_rd_u64(&r);
	ti.first_extent = mfs_rd_u64(&r);
	ti.n_extents = mfs_rd_u64(&r);
	const uint8_t *nb = mfs_rd_take(&r, 2);
	size_t nl = nb ? mfs_get_le16(nb) : 0;
	const uint8_t *np = nl <= MFS_TENSOR_NAME_MAX ? mfs_rd_take(&r, nl) : NULL;
	if (!np || memchr(np, '\0', nl))
		return MFS_E_CORRUPT;
	memcpy(name, np, nl);
	name[nl] = '\0';
	ti.name = name;
	if (ver == MFS_REC_V2) {
		ti.alone_len = mfs_rd_u64(&r);
		size_t bl = mfs_rd_u8(&r);
		const uint8_t *bp = r.ok && bl >= 1 && bl <= MFS_REPO_ID_MAX ? mfs_rd_take(&r, bl)
								    : NULL;
		if (!bp || memchr(bp, '\0', bl))
			return MFS_E_CORRUPT;
		char *base = strs + nl + 1;
		memcpy(base, bp, bl);
		base[bl] = '\0';
		ti.base = base;
	}
	if (!rd_done(&r))
		return MFS_E_CORRUPT;
	*out = ti;
	return 0;
}

/* ---- file ---- */

int mfs_rec_file_encode(uint8_t *p, uint32_t mode, const char *etag, size_t *len)
{
	size_t el = strlen(etag);
	if (el == 0 || el > MFS_ETAG_MAX || !lower_hex((const uint8_t *)etag, el))
		return MFS_E_INVAL;
	p[0] = MFS_REC_V1;
	mfs_put_le32(p + 1, mode);
	p[5] = (uint8_t)el;
	memcpy(p + 6, etag, el);
	*len = 6 + el;
	return 0;
}

int mfs_rec_file_decode(const void *p, size_t len, mfs_file_info *out)
{
	mfs_rd r = mfs_rd_init(p, len);
	uint8_t ver = mfs_rd_u8(&r);
	uint32_t mode = mfs_rd_u32(&r);
	uint8_t el = mfs_rd_u8(&r);
	const uint8_t *e = el >= 1 && el <= MFS_ETAG_MAX ? mfs_rd_take(&r, el) : NULL;
	if (!e || !rd_done(&r) || ver != MFS_REC_V1 || !lower_hex(e, el))
		return MFS_E_CORRUPT;
	out->mode = mode;
	memcpy(out->etag, e, el);
	out->etag[el] = '\0';
	return 0;
}

/* ---- repo, commit, ref ---- */

void mfs_rec_repo_encode(uint8_t *p, uint64_t created, uint64_t updated)
{
	p[0] = MFS_REC_V1;
	mfs_put_le64(p + 1, created);
	mfs_put_le64(p + 9, updated);
}

int mfs_rec_repo_decode(const void *p, size_t len, mfs_repo_info *out)
{
	mfs_rd r = mfs_rd_init(p, len);
	uint8_t ver = mfs_rd_u8(&r);
	uint64_t created = mfs_rd_u64(&r);
	uint64_t updated = mfs_rd_u64(&r);
	if (!rd_done(&r) || ver != MFS_REC_V1)
		return MFS_E_CORRUPT;
	out->created = created;
	out->updated = updated;
	return 0;
}

void mfs_rec_commit_encode(uint8_t *p, uint64_t time, uint64_t n_files)
{
	p[0] = MFS_REC_V1;
	mfs_put_le64(p + 1, time);
	mfs_put_le64(p + 9, n_files);
}

int mfs_rec_commit_decode(const void *p, size_t len, mfs_commit_info *out)
{
	mfs_rd r = mfs_rd_init(p, len);
	uint8_t ver = mfs_rd_u8(&r);
	uint64_t time = mfs_rd_u64(&r);
	uint64_t n_files = mfs_rd_u64(&r);
	if (!rd_done(&r) || ver != MFS_REC_V1)
		return MFS_E_CORRUPT;
	out->time = time;
	out->n_files = n_files;
	return 0;
}

int mfs_rec_ref_decode(const void *p, size_t len, char commit[MFS_COMMIT_LEN + 1])
{
	mfs_rd r = mfs_rd_init(p, len);
	const uint8_t *c = mfs_rd_take(&r, MFS_COMMIT_LEN);
	if (!c || !rd_done(&r) || !lower_hex(c, MFS_COMMIT_LEN))
		return MFS_E_CORRUPT;
	memcpy(commit, c, MFS_COMMIT_LEN);
	commit[MFS_COMMIT_LEN] = '\0';
	return 0;
}
