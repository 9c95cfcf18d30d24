/*
 * bytes.h - little-endian integer encoding for on-disk records.
 * On-disk integers are written byte by byte, never by memcpy of a struct,
 * so the format does not depend on the host's layout.
 */
#ifndef MFS_BYTES_H
#define MFS_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline void mfs_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void mfs_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void mfs_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t mfs_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t mfs_get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t mfs_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/*
 * A bounds-checked reader over a record: every get fails (sets ok = 0 and
 * returns 0) instead of reading past the end, so a corrupt record is
 * reported, never over-read.
 */
typedef struct mfs_rd {
	const uint8_t *p, *end;
	int ok;
} mfs_rd;

static inline mfs_rd mfs_rd_init(const void *p, size_t len)
{
	mfs_rd r = {(const uint8_t *)p, (const uint8_t *)p + len, 1};
	return r;
}

static inline const uint8_t *mfs_rd_take(mfs_rd *r, size_t n)
{
	if (!r->ok || (size_t)(r->end - r->p) < n) {
		r->ok = 0;
		return NULL;
	}
	const uint8_t *q = r->p;
	r->p += n;
	return q;
}

static inline uint8_t mfs_rd_u8(mfs_rd *r)
{
	const uint8_t *q = mfs_rd_take(r, 1);
	return q ? q[0] : 0;
}

static inline uint32_t mfs_rd_u32(mfs_rd *r)
{
	const uint8_t *q = mfs_rd_take(r, 4);
	return q ? mfs_get_le32(q) : 0;
}

static inline uint64_t mfs_rd_u64(mfs_rd *r)
{
	const uint8_t *q = mfs_rd_take(r, 8);
	return q ? mfs_get_le64(q) : 0;
}

#endif
