/*
 * records.h - the store's on-disk record formats: one encoder and one
 * decoder per record kind, apart from LMDB so they can be unit-tested with
 * golden byte strings and fuzzed with arbitrary bytes.
 *
 * Every value starts with a version byte (MFS_REC_V1).  Integers are
 * little-endian, written byte by byte (bytes.h).  The layouts:
 *
 *   chunk   version 1 (chunks without references or geometry):
 *           u8 version (1), u8 codec, u8 flags (bit 0: has ref; others 0),
 *           u8 reserved (0), u32 raw_len, [16-byte ref key], payload (the rest);
 *           a v1 ref is read as one MFS_REF_BASE reference to the whole of
 *           that chunk (offset 0, length raw_len)
 *           version 2 (written for chunks with references or geometry):
 *           u8 version (2), u8 codec, u8 flags (bit 1: geometry; others 0),
 *           u8 n_refs (<= MFS_REFS_MAX), u32 raw_len,
 *           [geometry: u8 dtype, u8 ndim (<= MFS_MAX_DIMS), u64 elem_off,
 *            u64 shape[ndim]],
 *           n_refs times: 16-byte chunk key, u64 offset, u32 length (>= 1),
 *           u8 role (an mfs_ref_role),
 *           payload (the rest)
 *           versions 1 and 2 hold the payload (store format 1); they are read
 *           for `modelfs upgrade` and written only by tests that build one
 *           version 3 (store format 2: the payload is in a pack):
 *           u8 version (3), u8 codec, u8 flags (bit 1: geometry; others 0),
 *           u8 n_refs (<= MFS_REFS_MAX), u32 raw_len,
 *           u64 pack id, u64 entry offset, u32 payload length,
 *           [geometry as version 2], n_refs references as version 2
 *           (exact length: nothing follows)
 *   blob    u8 version, u64 size, 32-byte sha256, u64 stored_bytes,
 *           u64 n_tensors, u64 n_extents, then n_extents times:
 *           u64 off, u32 len, 16-byte chunk key              (exact length)
 *   tensor  u8 version, u8 dtype, u8 codec, u8 ndim (<= MFS_MAX_DIMS),
 *           u64 shape[ndim], u64 data_off, u64 raw_len, u64 stored_len,
 *           u64 first_extent, u64 n_extents, u16 name length (<= 255), name;
 *           version 2 (a tensor with a base) then has u64 alone_len,
 *           u8 base length (1..MFS_REPO_ID_MAX), base repo id
 *   file    u8 version, u32 mode, u8 etag length (1..64), etag (lower hex)
 *   repo    u8 version, u64 created, u64 updated
 *   commit  u8 version, u64 time, u64 n_files
 *   ref     40 lower-case hex characters (the commit), no version byte
 *   pack    u8 version (1), u64 committed_end, u64 live_bytes, u64 dead_bytes,
 *           u32 state (an mfs_pack_state), u64 retired_txnid   (exact length)
 *
 * Decoders take (ptr, len), read only inside it (through mfs_rd), and
 * return MFS_E_CORRUPT for anything malformed: a short or over-long record,
 * an unknown version, a reserved bit set, a count that does not fit.  A
 * chunk record's payload length is "the rest", so a truncated payload is
 * caught by the chunk key check on decode (mfs_chunk_decode), not here.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_RECORDS_H
#define MFS_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define MFS_REC_V1 1
#define MFS_REC_V2 2
#define MFS_REC_V3 3

#define MFS_REC_CHUNK_HAS_REF 0x1u  /* v1 */
#define MFS_REC_CHUNK_HAS_GEOM 0x2u /* v2 */
#define MFS_REC_CHUNK_HDR 8         /* fixed part, both versions */
#define MFS_REC_CHUNK_REF 29        /* one v2 reference */
#define MFS_REC_CHUNK_GEOM_MAX (2 + 8 + 8 * MFS_MAX_DIMS)
/* The longest header (v2, geometry and MFS_REFS_MAX references). */
#define MFS_REC_CHUNK_HDR_MAX \
	(MFS_REC_CHUNK_HDR + MFS_REC_CHUNK_GEOM_MAX + MFS_REC_CHUNK_REF * MFS_REFS_MAX)
#define MFS_REC_CHUNK_LOC 20 /* v3: pack id, offset, payload length */
/* The longest v3 record. */
#define MFS_REC_CHUNK_MAX (MFS_REC_CHUNK_HDR_MAX + MFS_REC_CHUNK_LOC)
#define MFS_REC_PACK_LEN  37

#define MFS_REC_BLOB_FIXED (1 + 8 + 32 + 8 + 8 + 8)
#define MFS_REC_EXTENT 28
#define MFS_REC_TENSOR_MAX \
	(4 + 8 * MFS_MAX_DIMS + 40 + 2 + MFS_TENSOR_NAME_MAX + 9 + MFS_REPO_ID_MAX)
/* Room for a decoded tensor record's strings: name and base. */
#define MFS_REC_TENSOR_STRS (MFS_TENSOR_NAME_MAX + 1 + MFS_REPO_ID_MAX + 1)
#define MFS_REC_FILE_MAX (6 + MFS_ETAG_MAX)
#define MFS_REC_REPO_LEN 17
#define MFS_REC_COMMIT_LEN 17
#define MFS_REC_REF_LEN MFS_COMMIT_LEN

/* ---- chunk ---- */

/**
 * Write a chunk record's header: version 1 when @p m has no references and
 * no geometry (the bytes today's stores hold), else version 2.
 * @param[out] p    at least MFS_REC_CHUNK_HDR_MAX bytes
 * @param[out] len  the header length; the payload follows it
 * @return 0, or MFS_E_INVAL (more than MFS_REFS_MAX references, a reference
 *         of length 0 or an unknown role, more than MFS_MAX_DIMS dims)
 */
int mfs_rec_chunk_header(uint8_t *p, const mfs_chunk_meta *m, size_t *len);

/**
 * Write a version 3 chunk record: @p m and where its payload lies (@p loc).
 * @param[out] p    at least MFS_REC_CHUNK_MAX bytes
 * @param[out] len  the record's length
 * @return 0, or MFS_E_INVAL as mfs_rec_chunk_header
 */
int mfs_rec_chunk_encode(uint8_t *p, const mfs_chunk_meta *m, const mfs_chunk_loc *loc,
			 size_t *len);

/**
 * Decode a chunk record (any version).
 * @param[out] out  versions 1 and 2: in_pack 0, its payload points into
 *                  [p, p + len), valid as long as that is; version 3:
 *                  in_pack 1, loc set, payload NULL, payload_len loc.len
 * @return 0 or MFS_E_CORRUPT (also for a codec id >= MFS_CODEC__COUNT, an
 *         unknown role, a reference range that overflows, an unknown dtype,
 *         a version 3 record with bytes after its last field)
 */
int mfs_rec_chunk_decode(const void *p, size_t len, mfs_chunk_view *out);

/* ---- pack ---- */

/* What a pack is to writers and gc (a pack record's state). */
typedef enum mfs_pack_state {
	MFS_PACK_OPEN = 0,    /* a writer may append to it (one at a time: flock) */
	MFS_PACK_SEALED = 1,  /* full, or being repacked: no more appends */
	MFS_PACK_RETIRED = 2, /* repacked: no record names it since retired_txnid;
				 unlinked once no reader is older */
	MFS_PACK__COUNT
} mfs_pack_state;

typedef struct mfs_pack_rec {
	uint64_t committed_end; /* bytes up to the end of the last entry a committed
				   transaction references (at least the header) */
	uint64_t live_bytes;	/* entry bytes of chunks whose record names it */
	uint64_t dead_bytes;	/* entry bytes of chunks removed or moved */
	mfs_pack_state state;
	uint64_t retired_txnid; /* RETIRED: the transaction that retired it */
} mfs_pack_rec;

/** Encode a pack record into @p p (MFS_REC_PACK_LEN bytes). */
void mfs_rec_pack_encode(uint8_t *p, const mfs_pack_rec *r);

/** Decode a pack record. @return 0 or MFS_E_CORRUPT (also an unknown state) */
int mfs_rec_pack_decode(const void *p, size_t len, mfs_pack_rec *out);

/* ---- blob ---- */

/**
 * Length of the blob record of @p n_extents extents.
 * @return 0, or MFS_E_TOOBIG when it does not fit in a size_t
 */
int mfs_rec_blob_size(uint64_t n_extents, size_t *out);

/**
 * Encode a blob record (its fixed part and extents; tensors are records of
 * their own).  @p cap must be at least mfs_rec_blob_size(b->n_extents).
 * @return 0 or MFS_E_NOSPACE
 */
int mfs_rec_blob_encode(uint8_t *p, size_t cap, const mfs_blob_rec *b);

/**
 * Set the stored_bytes field of a blob record that mfs_rec_blob_decode()
 * accepted, in place (@p p is a writable copy of it).
 */
void mfs_rec_blob_set_stored(uint8_t *p, uint64_t stored_bytes);

/**
 * Decode a blob record's fixed part (info->etag is left as it is) and check
 * that exactly info->n_extents extents follow.
 * @param[out] ext  optional: the first extent's bytes, inside [p, p + len);
 *                  read them with mfs_rec_extent_get()
 * @return 0 or MFS_E_CORRUPT
 */
int mfs_rec_blob_decode(const void *p, size_t len, mfs_blob_info *info,
			const uint8_t **ext);

/**
 * Extent @p i of a blob record that mfs_rec_blob_decode() accepted
 * (@p i < its n_extents: the decoder checked that they are all there).
 */
void mfs_rec_extent_get(const uint8_t *ext, uint64_t i, mfs_extent *out);

/**
 * Decode all extents of an accepted blob record into @p out (info->n_extents
 * entries) and check that they tile the file: in order from 0, none empty,
 * ending at info->size.
 * @return 0 or MFS_E_CORRUPT
 */
int mfs_rec_blob_extents(const mfs_blob_info *info, const uint8_t *ext, mfs_extent *out);

/* ---- tensor ---- */

/**
 * Encode a tensor record into @p p (MFS_REC_TENSOR_MAX bytes): version 1,
 * or 2 when ti->base is set.
 * @param[out] len  bytes written
 * @return 0, or MFS_E_INVAL (name longer than MFS_TENSOR_NAME_MAX, more than
 *         MFS_MAX_DIMS dims, a base empty or longer than MFS_REPO_ID_MAX)
 */
int mfs_rec_tensor_encode(uint8_t *p, const mfs_tensor_info *ti, size_t *len);

/**
 * Decode a tensor record (either version); the name and base are copied into
 * @p strs and out->name / out->base point into it (base NULL in version 1).
 * @return 0 or MFS_E_CORRUPT
 */
int mfs_rec_tensor_decode(const void *p, size_t len, mfs_tensor_info *out,
			  char strs[MFS_REC_TENSOR_STRS]);

/* ---- file ---- */

/**
 * Encode a file record into @p p (MFS_REC_FILE_MAX bytes).
 * @return 0 or MFS_E_INVAL (etag empty, longer than MFS_ETAG_MAX, not lower hex)
 */
int mfs_rec_file_encode(uint8_t *p, uint32_t mode, const char *etag, size_t *len);

/** Decode a file record: mode and etag (out->path is left as it is). */
int mfs_rec_file_decode(const void *p, size_t len, mfs_file_info *out);

/* ---- repo, commit, ref ---- */

/** Encode a repo record (MFS_REC_REPO_LEN bytes). */
void mfs_rec_repo_encode(uint8_t *p, uint64_t created, uint64_t updated);

/** Decode a repo record: the times (out->repo is left as it is). */
int mfs_rec_repo_decode(const void *p, size_t len, mfs_repo_info *out);

/** Encode a commit record (MFS_REC_COMMIT_LEN bytes). */
void mfs_rec_commit_encode(uint8_t *p, uint64_t time, uint64_t n_files);

/** Decode a commit record: time and n_files (out->commit is left as it is). */
int mfs_rec_commit_decode(const void *p, size_t len, mfs_commit_info *out);

/** Decode a ref value into @p commit (NUL-terminated). @return 0 or MFS_E_CORRUPT */
int mfs_rec_ref_decode(const void *p, size_t len, char commit[MFS_COMMIT_LEN + 1]);

#endif
