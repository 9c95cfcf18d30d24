/*
 * store_internal.h - what the modules of index/ share about the LMDB
 * environment behind an mfs_store: the named databases, the handle structs,
 * the key and iteration helpers, and the few record helpers that more than
 * one of its modules (names, txn, chunks, catalog, publish, gc, env) uses.  Not a public header: only the sources in
 * index/ include it; everything outside goes through store.h.
 *
 * Module convention: int return, 0 or a negative code from err.h (the
 * key builders return a length, 0 meaning "does not fit").
 */
#ifndef MFS_STORE_INTERNAL_H
#define MFS_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "records.h"
#include "store.h"

/* The named databases of a store (key layouts: store.h). */
enum {
	DB_META,
	DB_REPOS,
	DB_REFS,
	DB_COMMITS,
	DB_FILES,
	DB_NOEXIST,
	DB_BLOBS,
	DB_TENSORS,
	DB_CHUNKS,
	DB_CHUNKREFS,
	DB_PACKS,
	DB__COUNT
};

/* Their names in the environment, by the enum above. */
extern const char *const mfs_db_names[DB__COUNT];

struct mfs_packs; /* pack.c: the pack descriptors and this handle's appender */

struct mfs_store {
	MDB_env *env;
	MDB_dbi dbi[DB__COUNT];
	char *dir;
	int users_fd; /* users.lock, held shared while open (taken before the env) */
	int rdonly;
	unsigned format; /* the format record: MFS_STORE_FORMAT, or 1 (UPGRADE) */
	/* Held by this handle's write transaction from its begin until it has
	 * ended (after the index commit or abort): the appender's state
	 * (pack.c) belongs to that one transaction, and a transaction that
	 * failed to commit truncates what it appended before another appends. */
	pthread_mutex_t wmu;
	struct mfs_packs *packs;
	/* mfs_store_index_warm's own read-only map of data.mdb (NULL: none),
	 * which keeps the index's pages mapped; unmapped at close */
	void *warm_map;
	size_t warm_len;
};

struct mfs_txn {
	mfs_store *s;
	MDB_txn *txn;
	int write;
};

#define DBI(t, d) ((t)->s->dbi[(d)])

/** An LMDB return code as an MFS_E_* / -errno code. */
int mfs_db_rc(int rc);

/**
 * Join key parts with NUL separators (b and c may be NULL).
 * @return the key's length, or 0 when it exceeds @p cap or LMDB's 511-byte limit
 */
size_t mfs_db_key_join(char *buf, size_t cap, const char *a, const char *b, const char *c);

/**
 * The prefix "a\0b\0" (trailing separator; b may be NULL) that every key
 * under a (and b) starts with.  @return its length, or 0 when it does not fit
 */
size_t mfs_db_prefix_join(char *buf, size_t cap, const char *a, const char *b);

/* A record as iterated: key and value point into the map, valid during the call. */
typedef int (*mfs_db_iter_fn)(void *ud, const MDB_val *k, const MDB_val *v);

/**
 * Call @p fn for every record of @p dbi whose key starts with @p prefix
 * (every record when @p plen is 0), in key order.  @p fn returns 0 to go on,
 * anything else to stop (returned as is).
 * @return 0, what @p fn returned, or a database error
 */
int mfs_db_iter(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t plen, mfs_db_iter_fn fn,
		void *ud);

/**
 * Read / write a u64 of the meta database ("format", "generation").
 * @return 0, MFS_E_NOTFOUND, MFS_E_CORRUPT (not 8 bytes), or a database error
 */
int mfs_db_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out);
int mfs_db_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val);

/** Delete every record of @p dbi whose key starts with @p prefix (db.c). */
int mfs_db_delete_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t plen);

/**
 * Add one to the store's generation (txn.c), in every write transaction that
 * changes what a reader sees.  A store without one starts at 1.
 */
int mfs_store_generation_bump(mfs_txn *t);

/*
 * The chunkrefs database (chunks.c): a chunk's count of uses, a u64.
 * mfs_chunkrefs_get: 0, MFS_E_NOTFOUND (the chunk was never stored),
 * MFS_E_CORRUPT (not 8 bytes).  mfs_chunkrefs_add: one more (@p delta > 0)
 * or one less use; MFS_E_NOTFOUND as get, MFS_E_CORRUPT when lowering a
 * count that is already 0 (left as it is).
 */
int mfs_chunkrefs_get(mfs_txn *t, const mfs_chunk_key *key, uint64_t *out);
int mfs_chunkrefs_put(mfs_txn *t, const mfs_chunk_key *key, uint64_t n);
int mfs_chunkrefs_add(mfs_txn *t, const mfs_chunk_key *key, int delta);

/** A files / blobs value as iterated (records.h); pointers stay in the map. */
static inline int mfs_file_val_decode(const MDB_val *v, mfs_file_info *fi)
{
	return mfs_rec_file_decode(v->mv_data, v->mv_size, fi);
}

static inline int mfs_blob_val_decode(const MDB_val *v, mfs_blob_info *bi, const uint8_t **ext)
{
	return mfs_rec_blob_decode(v->mv_data, v->mv_size, bi, ext);
}

/**
 * Drop the use blob record @p v gave each of its extents' chunks (publish.c;
 * for mfs_repo_remove and gc).  The record is copied first: @p v may point
 * into pages the writes move.  A record that does not parse drops nothing
 * (gc's recount settles its counts).  @return 0, -ENOMEM or a database error
 */
int mfs_blob_unref(mfs_txn *t, const MDB_val *v);

#endif
