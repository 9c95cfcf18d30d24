/*
 * pack.h - the pack files that hold the chunk payloads of a store (format 2),
 * and what index/ does with them: names and headers, the table of read
 * descriptors, the appender of a store handle, the "packs" database, and the
 * conversion of a format-1 chunk record for `modelfs upgrade`.
 *
 * A pack is <store>/packs/<16 lower-case hex id>.pack, append-only:
 *   pack header (32 bytes): "MFSPACK\0", u32 version (1), u32 reserved (0),
 *                           u64 pack id, u64 reserved (0)
 *   entries, unpadded:      entry header (32 bytes): "MFSE", u32 payload
 *                           length, 16-byte chunk key, u64 reserved (0);
 *                           then the payload
 * Little-endian throughout.  An entry describes itself, so gc, check,
 * upgrade and a remote fetcher can each tell a sound one from a damaged one
 * without the index; its payload is proven by decoding it and re-hashing
 * to the key (mfs_chunk_decode).
 *
 * Durability: an entry is written before the index commit that names it:
 * mfs_txn_commit() fdatasync()s the packs its transaction appended to (and
 * fsyncs packs/ after creating one) before committing the index.  A crash
 * leaves at most bytes past a pack's committed_end (its record in "packs"),
 * or a pack file no record names: gc removes both.
 *
 * Concurrency: a pack is appended to by one store handle at a time, which
 * holds flock(LOCK_EX) on it while it may append (gc truncates or repacks
 * only packs it can lock); ids come from meta "pack_next" in write
 * transactions, so two processes never pick the same one.  Readers open
 * packs O_RDONLY through a per-handle table (opened on first use, guarded by
 * a rwlock, at most PACK_FDS_MAX open; every few seconds descriptors of
 * packs that were unlinked are closed, so their space comes back).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_PACK_H
#define MFS_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "records.h"
#include "store.h"

#define MFS_PACK_HDR	   32 /* the pack header */
#define MFS_PACK_ENTRY_HDR 32 /* an entry header */
#define MFS_PACK_VERSION   1
/* A writer starts a new pack once its pack has passed this many bytes. */
#define MFS_PACK_LIMIT	  ((uint64_t)1 << 30)
/* A writer without a pack of its own appends to an open pack below this
 * size that no one holds, before it starts a new one: many small ingests
 * fill few packs, not one each.  Kept small because push uploads a pack
 * that grew again whole. */
#define MFS_PACK_REUSE_BELOW ((uint64_t)64 << 20)
#define MFS_PACK_NAME_MAX 24 /* "0123456789abcdef.pack" + NUL */

/** The bytes an entry of a @p payload_len payload takes in its pack. */
static inline uint64_t mfs_pack_entry_bytes(uint64_t payload_len)
{
	return MFS_PACK_ENTRY_HDR + payload_len;
}

/** "<16 hex>.pack" of pack @p id into @p out. */
void mfs_pack_name(uint64_t id, char out[MFS_PACK_NAME_MAX]);

/** 1 and *id when @p name is a pack's file name ("<16 lower hex>.pack"), else 0. */
int mfs_pack_name_parse(const char *name, uint64_t *id);

/** <store>/packs/<name> of pack @p id. @return 0 or MFS_E_INVAL (does not fit) */
int mfs_pack_path(const mfs_store *s, uint64_t id, char *buf, size_t cap);

/** <store>/packs. @return 0 or MFS_E_INVAL */
int mfs_pack_dir(const mfs_store *s, char *buf, size_t cap);

/** Write the pack header of pack @p id (MFS_PACK_HDR bytes). */
void mfs_pack_header_put(uint8_t *p, uint64_t id);

/** Check a pack header read from pack @p id's file. @return 0 or MFS_E_CORRUPT */
int mfs_pack_header_check(const uint8_t *p, uint64_t id);

/** Write the entry header of chunk @p key with a @p len byte payload. */
void mfs_pack_entry_header_put(uint8_t *p, const mfs_chunk_key *key, uint32_t len);

/**
 * Check an entry header against what the record says: magic, length, key,
 * reserved bytes.
 * @param[out] why  optional: what differs ("its key is 0123..., not ...")
 * @return 0 or MFS_E_CORRUPT
 */
int mfs_pack_entry_header_check(const uint8_t *p, const mfs_chunk_key *key, uint32_t len,
				char *why, size_t cap);

/* ---- a store handle's pack state (env.c) ---- */

/** Set up s->packs: the descriptor table and the appender; a writable
 *  handle creates packs/ when missing.  @return 0, -ENOMEM or -errno */
int mfs_packs_open(mfs_store *s, mfs_errmsg *err);

/** Close every descriptor, the appender's with its lock; NULL packs is a no-op. */
void mfs_packs_close(mfs_store *s);

/* ---- reading ---- */

/**
 * Where payloads come from when not from <store>/packs: a remote store reads
 * them through its chunk cache (remote/remote.h).
 *   read:       called by mfs_pack_entry_read (so mfs_chunk_payload_read and
 *               mfs_chunk_load) with the chunk's key and location; fills
 *               @p buf with loc->len payload bytes whose entry header it
 *               checked against the key (as the local read does); returns 0
 *               or a code with @p err naming the chunk (MFS_E_CORRUPT, -EIO)
 *   will_need:  optional; called by mfs_pack_will_need with the same range
 *               (a run of entries a read will want): a hint, fetch ahead
 */
typedef struct mfs_payload_source {
	int (*read)(void *ud, const mfs_chunk_key *key, const mfs_chunk_loc *loc, void *buf,
		    mfs_errmsg *err);
	void (*will_need)(void *ud, uint64_t pack, uint64_t off, uint64_t len);
	void *ud;
} mfs_payload_source;

/**
 * Read every payload of @p s through @p src (copied; NULL: from the local
 * packs again).  Set it right after mfs_store_open(), before any read: it
 * is not synchronised with reads in flight.  mfs_pack_entry_check() still
 * reads local packs.
 */
void mfs_store_set_payload_source(mfs_store *s, const mfs_payload_source *src);

/**
 * Read the entry of chunk @p key at @p loc into @p buf (loc->len bytes) and
 * check its header (store.h, mfs_chunk_payload_read).
 * @return 0, MFS_E_CORRUPT (with @p err naming the chunk, pack file and
 *         offset), or -errno
 */
int mfs_pack_entry_read(mfs_store *s, const mfs_chunk_key *key, const mfs_chunk_loc *loc,
			void *buf, mfs_errmsg *err);

/**
 * Read and check only the entry header of chunk @p key at @p loc (check.c).
 * @param[out] why  when damaged: what is wrong, naming the pack file
 * @return 0, MFS_E_CORRUPT, or -errno
 */
int mfs_pack_entry_check(mfs_store *s, const mfs_chunk_key *key, const mfs_chunk_loc *loc,
			 char *why, size_t cap);

/**
 * Open the read descriptors of the packs that hold live entries (up to the
 * table's 256, lowest ids first) before any read asks for them, so the first
 * reads of a cold store do not wait on the path lookups that open a pack
 * (each a directory or inode block read from the disk: 2-17 ms each on the
 * virtual disks we measure).  An open descriptor also keeps the pack's inode
 * in memory.  A pack that cannot be opened is left for the read that needs
 * it to report.  A store whose payloads come from a source (a remote store)
 * has no packs to open.
 * @param[out] opened  descriptors opened by this call (may be NULL)
 * @return 0 or a database error
 */
int mfs_packs_preopen(mfs_store *s, size_t *opened);

/* ---- the packs database ---- */

/** @return 0, MFS_E_NOTFOUND, MFS_E_CORRUPT (a record that does not parse), or a database
 * error */
int mfs_pack_rec_get(mfs_txn *t, uint64_t id, mfs_pack_rec *out);
int mfs_pack_rec_put(mfs_txn *t, uint64_t id, const mfs_pack_rec *r);
/** Delete pack @p id's record (absent: 0). */
int mfs_pack_rec_del(mfs_txn *t, uint64_t id);

/**
 * Count the entry at @p loc as live (@p delta > 0: a record now names it) or
 * as dead (< 0: its record went or moved) in its pack's record.  A pack
 * without a (sound) record is left alone: check reports it.
 * @return 0 or a database error
 */
int mfs_pack_account(mfs_txn *t, const mfs_chunk_loc *loc, int delta);

/**
 * Every pack record, in id order.  A record that does not parse is passed
 * with @p r NULL.  @p cb returns 0 to go on, anything else to stop (returned).
 */
int mfs_packs_foreach(mfs_txn *t, int (*cb)(void *ud, uint64_t id, const mfs_pack_rec *r),
		      void *ud);

/* ---- writing ---- */

/**
 * Append chunk @p key's payload to this handle's pack, in write transaction
 * @p t: a pack is taken on first use (an open pack below
 * MFS_PACK_REUSE_BELOW that no handle holds, its uncommitted tail cut; else
 * a new id from meta "pack_next", its file created, its record written in
 * @p t; flock()ed either way), and another once it has passed
 * MFS_PACK_LIMIT at the start of a transaction.  The pack's
 * record (committed_end, live_bytes) is updated in @p t.
 * @param[out] out  where the entry went
 * @return 0; MFS_E_INVAL (not a write transaction, payload over 4 GiB);
 *         -errno of the file (-ENOSPC); a database error
 */
int mfs_pack_append(mfs_txn *t, const mfs_chunk_key *key, const void *payload, size_t len,
		    mfs_chunk_loc *out);

/**
 * A new, empty pack for a writer of its own (gc's repack): a new id, its
 * record (open, committed_end = the header) in write transaction @p t, its
 * file created with the header written and synced, locked with
 * flock(LOCK_EX).  Commit @p t before naming it anywhere; if @p t aborts,
 * close and unlink the file.
 * @param[out] fd  O_RDWR, locked; the caller closes it
 * @return 0, -errno, or a database error
 */
int mfs_pack_create(mfs_txn *t, uint64_t *id, int *fd);

/** fsync <store>/packs (after a pack file was created or removed). */
int mfs_pack_dir_sync(mfs_store *s);

/* txn.c's hooks, in the transaction's write lock (s->wmu). */
/** Before the index commit: fdatasync what @p t appended. @return 0 or -errno */
int mfs_pack_txn_precommit(mfs_txn *t);
/** After the index commit: @p committed 0 when it failed (what @p t
 *  appended is truncated away again). */
void mfs_pack_txn_end(mfs_txn *t, int committed);
/** Before the index abort: truncate (or remove) what @p t appended. */
void mfs_pack_txn_abort(mfs_txn *t);

/* ---- upgrade (index/upgrade.c) ---- */

/**
 * Convert one format-1 chunk record (its payload inside the record) into a
 * format-2 one, in write transaction @p t: the payload is appended to this
 * handle's pack (mfs_pack_append) and the record rewritten as version 3,
 * naming it; codec, raw length, references and geometry are kept, and so is
 * the reference count.  The payload is not decoded here (verify does that).
 * A record already in a pack is left as it is.  Durable once @p t commits
 * (mfs_txn_commit syncs the pack first), so a batch of conversions per
 * transaction resumes after a crash where the last commit left off.
 * Opens of a format-1 store need MFS_STORE_UPGRADE.
 * @param[out] moved  optional: 1 converted, 0 already in a pack
 * @return 0; MFS_E_NOTFOUND; MFS_E_CORRUPT (the record does not parse:
 *         nothing written); MFS_E_INVAL (a read-only transaction); -errno or
 *         a database error
 */
int mfs_chunk_upgrade(mfs_txn *t, const mfs_chunk_key *key, int *moved);

/** The format the store's meta record said at open: MFS_STORE_FORMAT or 1. */
unsigned mfs_store_format(const mfs_store *s);

/**
 * Set the store's format record to @p format in write transaction @p t
 * (upgrade: 2 once every chunk is in a pack); this handle's
 * mfs_store_format() says @p format from then on (only upgrade calls this).
 * @return 0, MFS_E_INVAL (read-only, or a format this build does not know), or a
 *         database error
 */
int mfs_store_format_set(mfs_txn *t, unsigned format);

#endif
