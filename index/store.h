/*
 * store.h - the modelfs store: one LMDB environment holding the index of
 * Hugging Face repositories and the compressed, content-addressed chunks.
 *
 * Layout of a store directory:
 *   data.mdb, lock.mdb   the LMDB environment: the index
 *   packs/<id>.pack      the chunk payloads, in append-only pack files (index/pack.h:
 *                        a 32-byte pack header, then entries of a 32-byte entry
 *                        header and the payload, in the order they were written)
 *   users.lock           flock()ed shared by every process while it has the
 *                        environment open (taken before opening it), exclusively
 *                        by compaction (mfs_store_compact)
 *   ingest.lock          flock()ed shared by every ingest, exclusively by gc's
 *                        orphan sweep (so gc never deletes chunks an ingest
 *                        has written but not yet referenced)
 *
 * Records (named LMDB databases, values are versioned little-endian records):
 *   meta      "format" -> u32 format version; "generation" -> u64, bumped by
 *             every transaction that changes what a reader sees
 *   repos     repo id ("models/org/name")          -> repo record
 *   refs      repo \0 ref name                     -> commit (40 hex)
 *   commits   repo \0 commit                       -> commit record
 *   files     repo \0 commit \0 path               -> etag, mode
 *   noexist   repo \0 commit \0 path               -> (empty): the HF cache's .no_exist
 *   blobs     repo \0 etag                         -> blob record (size, sha256, extents)
 *   tensors   repo \0 etag \0 tensor name          -> tensor record
 *   chunks    16-byte XXH3-128 of the raw bytes    -> chunk record (codec, raw len,
 *                                                      references, where its payload
 *                                                      lies: pack, offset, length)
 *   chunkrefs 16-byte chunk key                    -> u64 uses: blob extents and stored
 *                                                      chunks' references naming it
 *   packs     u64 pack id, big-endian              -> pack record (committed end, live
 *                                                      and dead entry bytes, state)
 *   meta "pack_next" -> u64: the next pack id (allocated in write transactions, so
 *             ids are unique across processes and never reused)
 *
 * Invariants:
 *   - a chunk's key is the XXH3-128 of its raw bytes: identical content is
 *     stored once, and decoding is verified by re-hashing (mfs_chunk_decode).
 *   - a blob's extents tile the file exactly, in order; each extent is one
 *     whole chunk.
 *   - chunkrefs counts blob extents and the references of stored chunks; a
 *     chunk with count 0 is garbage (gc), and removing it drops one use of
 *     each chunk it references.
 *   - a referenced chunk has no references itself (chains have depth 1).
 *   - a commit's files appear in one transaction (mfs_snapshot_publish), so a
 *     reader never sees half a snapshot.
 *
 * Threads: an mfs_store is shared by all threads.  A transaction belongs to
 * the thread that uses it (read transactions may move between threads:
 * the environment is opened with MDB_NOTLS).  One write transaction at a
 * time per store (LMDB serialises writers, across processes too).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_STORE_H
#define MFS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "dtype.h"
#include "err.h"

#define MFS_STORE_FORMAT                                                                 \
	2			   /* format this build writes and reads (1: payloads    \
				      inside the index; `modelfs upgrade` converts it) */
#define MFS_REPO_ID_MAX 200    /* "models/org/name" */
#define MFS_COMMIT_LEN 40      /* hex chars of a commit hash */
#define MFS_ETAG_MAX 64        /* sha256 hex (LFS) or git sha1 hex */
#define MFS_PATH_MAX 255       /* a file path inside a repo (LMDB key limit) */
#define MFS_REF_MAX 128        /* a ref name */
#define MFS_TENSOR_NAME_MAX 255

typedef struct mfs_store mfs_store;
typedef struct mfs_txn mfs_txn;

/* Flags for mfs_store_open. */
#define MFS_STORE_CREATE 0x1u /* create the directory (0700) and environment if missing */
#define MFS_STORE_RDONLY 0x2u /* open read-only (mount, ls, info, export, verify) */
/* No kernel read-around on the index's map (MDB_NORDAHEAD, i.e. MADV_RANDOM):
 * a fault reads only its own page.  For readers that look many records up
 * at random (the mount); without it a cold 4 KiB lookup reads the device's
 * whole readahead window (8 MiB on some virtual disks), synchronously.
 * Payloads are read from the packs with pread, unaffected. */
#define MFS_STORE_NORDAHEAD 0x4u
/* Fail with MFS_E_BUSY instead of waiting while the store is being compacted. */
#define MFS_STORE_NOWAIT 0x8u
/* For `modelfs upgrade` only (index/pack.h, mfs_chunk_upgrade): open a store
 * of format 1 (payloads inside the index) as well as one of this format,
 * writable (with RDONLY: MFS_E_INVAL).  Its "packs" database is created when
 * missing; the format record is left as it is (mfs_store_format_set). */
#define MFS_STORE_UPGRADE 0x10u

/**
 * Open (or create) a store.
 * @param[in]  dir    store directory
 * @param[in]  flags  MFS_STORE_*
 * @param[out] out    owned by the caller; close with mfs_store_close()
 * @param[out] err    optional message
 * Takes <dir>/users.lock shared before it opens the environment, and holds
 * it until mfs_store_close(): waits while a compaction runs (unless
 * MFS_STORE_NOWAIT).  A data.mdb shorter than its own meta pages say (a
 * partial copy) is refused before anything maps it.
 * A writable open creates <dir>/packs/ when missing.
 * @return 0; -ENOENT (no store there and no CREATE); -EACCES (permission
 *         denied); MFS_E_CORRUPT (damaged or incomplete data.mdb);
 *         MFS_E_VERSION (written by a newer or older format: a format-1 store's
 *         message names `modelfs upgrade`; the store is left untouched);
 *         MFS_E_BUSY (NOWAIT and compacting); MFS_E_DB; -errno.
 */
int mfs_store_open(const char *dir, unsigned flags, mfs_store **out, mfs_errmsg *err);

/** Close a store; NULL is a no-op. All transactions must have ended. */
void mfs_store_close(mfs_store *s);

/** The directory the store was opened from (owned by the store). */
const char *mfs_store_dir(const mfs_store *s);

/**
 * The default store directory: $XDG_DATA_HOME/modelfs, else
 * $HOME/.local/share/modelfs.
 * @return 0, or MFS_E_INVAL when neither variable is set / the buffer is short
 */
int mfs_store_default_dir(char *buf, size_t cap);

/** Flush everything committed so far to disk (fsync). */
int mfs_store_sync(mfs_store *s);

/* Space use of the store: the index and the packs. */
typedef struct mfs_store_stat {
	uint64_t file_bytes;  /* size of data.mdb */
	uint64_t used_bytes;  /* pages in use (file_bytes minus free pages) */
	uint64_t n_chunks;
	uint64_t chunk_payload_bytes; /* sum of chunk payloads */
	uint64_t chunk_raw_bytes;     /* sum of chunk raw lengths */
	uint64_t n_packs;	      /* pack files in packs/ */
	uint64_t pack_file_bytes;     /* their sizes */
	uint64_t pack_disk_bytes;     /* their blocks on disk (st_blocks * 512) */
	uint64_t pack_live_bytes;     /* entry bytes (header + payload) of stored
					 chunks, as the packs records count them */
	uint64_t pack_dead_bytes;     /* entry bytes of chunks removed or rewritten:
					 what gc's repack gives back */
	uint64_t disk_bytes;	      /* the store on disk: data.mdb's blocks and
					 the packs' (what du counts of them) */
} mfs_store_stat;

/** Space figures; costs a scan of the chunk records and a stat per pack. */
int mfs_store_stat_get(mfs_txn *t, mfs_store_stat *out);

/* ---- transactions ---- */

#define MFS_TXN_READ 0x0u
#define MFS_TXN_WRITE 0x1u

/**
 * Begin a transaction: a read snapshot or the (single) write transaction.
 * @param[out] out  end with mfs_txn_commit() or mfs_txn_abort()
 */
int mfs_txn_begin(mfs_store *s, unsigned flags, mfs_txn **out);

/** Commit (write) or end (read); the handle is freed either way. */
int mfs_txn_commit(mfs_txn *t);

/** Abort; NULL is a no-op; the handle is freed. */
void mfs_txn_abort(mfs_txn *t);

/**
 * Store generation: changes whenever a commit changes what readers see
 * (a snapshot published, a repo removed).  Cheap; lets a mount notice changes.
 */
int mfs_store_generation(mfs_txn *t, uint64_t *out);

/* ---- names ---- */

/**
 * Check a repo id "models/org/name" (or "models/name"; "datasets/...",
 * "spaces/..."): each part [A-Za-z0-9][A-Za-z0-9._-]*, no "--", no "..".
 * @return 0 or MFS_E_INVAL with a message saying what is wrong
 */
int mfs_repo_id_check(const char *repo, mfs_errmsg *err);

/**
 * A repo id as a person gives it, as the store keys it: "org/name" becomes
 * "models/org/name"; an id that starts with "models/", "datasets/" or
 * "spaces/" is kept as it is.  Then checked (mfs_repo_id_check).
 * @param[in]  arg  what was given (NULL or "" is MFS_E_INVAL)
 * @param[out] out  the id; undefined on failure
 * @return 0 or MFS_E_INVAL with a message: too long, or what the check says
 */
int mfs_repo_id_expand(const char *arg, char out[MFS_REPO_ID_MAX + 1], mfs_errmsg *err);

/**
 * Check a path inside a repo: relative, '/'-separated, no empty, "." or ".."
 * components, no NUL or control chars, at most MFS_PATH_MAX bytes.
 */
int mfs_repo_path_check(const char *path, mfs_errmsg *err);

/** 1 when @p commit is a commit hash as stored: 40 lower-case hex characters. */
int mfs_commit_ok(const char *commit);

/** 1 when @p etag is an etag as stored: 1..MFS_ETAG_MAX lower-case hex characters. */
int mfs_etag_ok(const char *etag);

/**
 * Check a ref name ("main", "refs/pr/1") as git check-ref-format does:
 * '/'-separated components, none empty, starting with '.' or ending in
 * ".lock"; no "..", "@{", control characters, space, ~ ^ : ? * [ or \;
 * not ending in '.'; not "@"; at most MFS_REF_MAX bytes.
 * @return 0 or MFS_E_INVAL with a message naming the rule broken
 */
int mfs_ref_name_check(const char *ref, mfs_errmsg *err);

/* ---- chunks ---- */

typedef struct mfs_chunk_key {
	uint8_t b[16];
} mfs_chunk_key;

/** The key of raw bytes: XXH3-128, serialised big-endian (high64 then low64). */
void mfs_chunk_key_of(const void *raw, size_t len, mfs_chunk_key *out);

/** Hex form (32 chars + NUL) into @p buf (>= 33 bytes); returns buf. */
char *mfs_chunk_key_hex(const mfs_chunk_key *k, char *buf);

/*
 * A stored reference: chunk @key's raw bytes [off, off + len) are what the
 * chunk that holds the reference decodes against, in role @role.  The
 * referenced chunk has no references itself (chains have depth 1).
 */
typedef struct mfs_chunk_ref {
	mfs_chunk_key key;
	uint64_t off;
	uint32_t len;
	mfs_ref_role role;
} mfs_chunk_ref;

/* What a chunk record says besides its payload (for mfs_chunk_put). */
typedef struct mfs_chunk_meta {
	mfs_codec_id codec;
	uint32_t raw_len;
	size_t n_refs;              /* <= MFS_REFS_MAX */
	const mfs_chunk_ref *refs;  /* n_refs entries */
	const mfs_chunk_geom *geom; /* NULL: not recorded */
} mfs_chunk_meta;

/* Where a chunk's payload lies: its entry in a pack file. */
typedef struct mfs_chunk_loc {
	uint64_t pack; /* pack id: <store>/packs/<16 hex>.pack */
	uint64_t off;  /* offset of the entry's 32-byte header in the pack */
	uint32_t len;  /* payload length (the bytes after the entry header) */
} mfs_chunk_loc;

/* A chunk record as stored. */
typedef struct mfs_chunk_view {
	mfs_codec_id codec;
	uint32_t raw_len;
	uint32_t n_refs;                   /* decode needs these chunks' bytes */
	mfs_chunk_ref refs[MFS_REFS_MAX];
	int has_geom;
	mfs_chunk_geom geom;               /* when has_geom */
	int in_pack;	   /* 1: the payload is in a pack, at loc; 0: inside the
			      record (a format-1 record, read only for upgrade) */
	mfs_chunk_loc loc; /* when in_pack */
	/* The payload's bytes: NULL for a chunk in a pack until mfs_chunk_load()
	 * or mfs_chunk_payload_read() put them in a buffer of the caller's (valid
	 * as long as that buffer); for an inline record, owned by LMDB and valid
	 * until the transaction ends. */
	const void *payload;
	size_t payload_len; /* its length (loc.len when in_pack) */
} mfs_chunk_view;

/**
 * Look a chunk up: its record only; the payload of a chunk in a pack is not
 * read (view->payload NULL: mfs_chunk_load).
 * @return 0, MFS_E_NOTFOUND, MFS_E_CORRUPT (bad record).
 */
int mfs_chunk_get(mfs_txn *t, const mfs_chunk_key *key, mfs_chunk_view *out);

/** The store a transaction reads (for mfs_chunk_load after mfs_chunk_get). */
mfs_store *mfs_txn_store(const mfs_txn *t);

/**
 * Read the payload of chunk @p key, whose record is @p v (from mfs_chunk_get
 * in a transaction that is still open, or was open when the read began:
 * gc keeps a pack an older snapshot names until no reader holds that
 * snapshot), into @p buf: one pread of its entry from the pack file, through
 * the store's table of pack descriptors.  Checks the entry header: its
 * magic, its length and its key are the record's.  The payload's bytes are
 * not checked here: mfs_chunk_decode re-hashes what they decode to.
 * For an inline record (format 1) the payload is copied.
 * @param[in]  cap  bytes at @p buf: at least v->payload_len
 * @param[out] err  optional: what is wrong, naming the chunk, the pack file
 *                  and the offset
 * @return 0; MFS_E_CORRUPT (the pack file is missing or shorter than the
 *         entry, or the entry header is not the record's: nothing in @p buf
 *         may be used); MFS_E_NOSPACE (@p cap too small); -errno of the read
 */
int mfs_chunk_payload_read(mfs_store *s, const mfs_chunk_key *key,
			   const mfs_chunk_view *v, void *buf, size_t cap,
			   mfs_errmsg *err);

/**
 * Make @p v->payload point at its bytes: for a chunk in a pack, read into
 * @p ws's MFS_WS_SLOT_PAYLOAD (mfs_chunk_payload_read): valid until that
 * slot is used again (the next load with @p ws) or @p ws is freed; an inline
 * record's payload is left where it is.  Load a chunk's references' payloads
 * and decode them before loading the chunk itself: they share the slot.
 * @return as mfs_chunk_payload_read, or -ENOMEM
 */
int mfs_chunk_load(mfs_store *s, const mfs_chunk_key *key, mfs_chunk_view *v,
		   mfs_codec_ws *ws, mfs_errmsg *err);

/**
 * Ask the kernel to read the entries at [@p off, @p off + @p len) of pack
 * @p pack ahead (posix_fadvise POSIX_FADV_WILLNEED): a hint, nothing is read
 * or checked here, and a pack that cannot be opened is ignored.
 */
void mfs_pack_will_need(mfs_store *s, uint64_t pack, uint64_t off, uint64_t len);

/**
 * Close this handle's read descriptors of packs that were unlinked (gc
 * removed them once no reader needed them), so their disk space comes back.
 * Reads do this on their own at most every 2 s; a long-lived reader that may
 * sit idle (the mount) calls it from a timer.  Never waits: a sweep that
 * would have to is left for the next call.
 */
void mfs_store_packs_sweep(mfs_store *s);

/**
 * Bring the index's pages into memory ahead of the lookups that need them:
 * when the pages in use (up to the last one written, as this handle sees
 * it) come to at most @p max_bytes, they are read in one pass (madvise
 * MADV_WILLNEED, whatever MFS_STORE_NORDAHEAD says) and mapped into this
 * process (MADV_POPULATE_READ, or one byte of each page touched on kernels
 * before 5.14), through a read-only map of the handle's own that stays
 * until mfs_store_close() (a later call replaces it: call again after the
 * index grew).  A cold lookup then does not wait for its page behind the
 * payload reads queued ahead of it (on the virtual disks we measure, 10-40
 * ms at a mount's first read).  A mapped page stays in memory while other
 * clean page cache is dropped, and is reclaimed like any under memory
 * pressure.  Blocks while it reads: call it off the serving path.  Not
 * thread-safe against itself or mfs_store_close().
 * @param[out] bytes  the bytes brought in (0: the index is larger than
 *                    @p max_bytes, and nothing was done); may be NULL
 * @return 0, or -errno when the index's size cannot be read
 */
int mfs_store_index_warm(mfs_store *s, uint64_t max_bytes, uint64_t *bytes);

/** mfs_pack_will_need over the entry of @p v (nothing for an inline record). */
void mfs_chunk_will_need(mfs_store *s, const mfs_chunk_view *v);

/**
 * Decode a chunk into @p dst (exactly raw_len bytes) and verify that the
 * decoded bytes hash to @p key.  Its payload must be loaded
 * (mfs_chunk_load): MFS_E_INVAL when view->payload is NULL.
 * @param[in] refs  view->n_refs entries, in the view's order: the bytes of
 *                  each reference's range (the caller decoded and checked
 *                  the referenced chunks); NULL when the view has none
 * @return 0; MFS_E_CORRUPT on a decode error or checksum mismatch (dst
 *         contents are then undefined and must not be served)
 */
int mfs_chunk_decode(const mfs_chunk_view *view, const mfs_chunk_key *key,
		     const mfs_ref_data *refs, void *dst, size_t dst_len, mfs_codec_ws *ws);

/**
 * Check that chunk view @p rv can serve reference @p ref of another chunk:
 * it has no references itself (depth 1) and holds the range.
 * @return 0 or MFS_E_CORRUPT
 */
int mfs_chunk_ref_check(const mfs_chunk_ref *ref, const mfs_chunk_view *rv);

/**
 * Store a chunk unless one with the same key exists.  A new chunk starts
 * with reference count 0 (garbage until a published blob uses it), and
 * counts one use of each chunk it references, like an extent does: gc never
 * frees a chunk another stored chunk decodes against.
 * The payload is appended to this store handle's pack (one per handle, taken
 * in the first write transaction that needs it and held with flock until the
 * handle closes; a new one past 1 GiB), and its record names where:
 * mfs_txn_commit() syncs the pack before the index commit that makes the
 * chunk visible, and an abort truncates what the transaction appended.
 * @param[in]  m        codec, raw length, references (each must exist and
 *                      have no references itself), geometry
 * @param[out] existed  optional: 1 when the key was already present (nothing
 *                      written, no count changed)
 * @return 0; MFS_E_NOTFOUND (a referenced chunk is not stored);
 *         MFS_E_INVAL (a bad reference list: see mfs_rec_chunk_header, or a
 *         referenced chunk that has references); MFS_E_DB / -ENOSPC
 */
int mfs_chunk_put(mfs_txn *t, const mfs_chunk_key *key, const mfs_chunk_meta *m,
		  const void *payload, size_t payload_len, int *existed);

/**
 * Rewrite an existing chunk's record in place (repair): same key, new codec
 * and payload (appended to a pack as mfs_chunk_put does; the old entry's
 * bytes count as dead in its pack); its reference count is kept.  The caller must have
 * checked that @p payload decodes to @p raw_len bytes hashing to @p key
 * (mfs_chunk_decode): this call stores what it is given.  Bumps the
 * generation so a mount drops what it derived from the old record.  The
 * uses counted for the old record's references move to the new one's.
 * @return 0; MFS_E_NOTFOUND (no chunk with this key: nothing written);
 *         MFS_E_INVAL (read-only transaction); MFS_E_DB / -ENOSPC
 */
int mfs_chunk_replace(mfs_txn *t, const mfs_chunk_key *key, const mfs_chunk_meta *m,
		      const void *payload, size_t payload_len);

/** 1 if the chunk exists, 0 if not, or a negative code. */
int mfs_chunk_exists(mfs_txn *t, const mfs_chunk_key *key);

/** Reference count of a chunk (0 when unknown). */
int mfs_chunk_refcount(mfs_txn *t, const mfs_chunk_key *key, uint64_t *out);

/**
 * Iterate over every chunk (their records: payloads are not read).  A record
 * that does not parse is passed with codec MFS_CODEC__COUNT.  @p cb returns
 * 0 to go on, >0 to stop (returned as is), <0 on error (returned).
 */
int mfs_chunks_foreach(mfs_txn *t,
		       int (*cb)(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
				 uint64_t refcount),
		       void *ud);

/* ---- repos, refs, commits, files ---- */

typedef struct mfs_repo_info {
	const char *repo;      /* "models/org/name" */
	uint64_t created;      /* unix seconds of first ingest */
	uint64_t updated;      /* unix seconds of last publish */
} mfs_repo_info;

typedef struct mfs_ref_info {
	const char *name;      /* "main" */
	char commit[MFS_COMMIT_LEN + 1];
} mfs_ref_info;

typedef struct mfs_commit_info {
	char commit[MFS_COMMIT_LEN + 1];
	uint64_t time;         /* unix seconds of ingest: the mount's timestamps */
	uint64_t n_files;
} mfs_commit_info;

typedef struct mfs_file_info {
	const char *path;      /* path inside the snapshot ("1_Pooling/config.json") */
	char etag[MFS_ETAG_MAX + 1];
	uint32_t mode;         /* 0444 or 0555 (executable) */
} mfs_file_info;

/* The callbacks' strings are valid during the call only. Return as for
 * mfs_chunks_foreach. */
int mfs_repos_foreach(mfs_txn *t, int (*cb)(void *ud, const mfs_repo_info *r), void *ud);
int mfs_refs_foreach(mfs_txn *t, const char *repo,
		     int (*cb)(void *ud, const mfs_ref_info *r), void *ud);
int mfs_commits_foreach(mfs_txn *t, const char *repo,
			int (*cb)(void *ud, const mfs_commit_info *c), void *ud);
/**
 * A commit of @p repo: the one whose hash is @p want, or with @p want NULL
 * the newest (largest time; the first seen of equal ones).
 * @param[out] commit  written only on success
 * @return 0, MFS_E_NOTFOUND (no such commit, or the repo has none), or a
 *         store error from reading its commits
 */
int mfs_commit_pick(mfs_txn *t, const char *repo, const char *want,
		    char commit[MFS_COMMIT_LEN + 1]);
int mfs_files_foreach(mfs_txn *t, const char *repo, const char *commit,
		      int (*cb)(void *ud, const mfs_file_info *f), void *ud);
int mfs_noexist_foreach(mfs_txn *t, const char *repo, const char *commit,
			int (*cb)(void *ud, const char *path), void *ud);

/** @return 0 with *out filled, or MFS_E_NOTFOUND. */
int mfs_repo_get(mfs_txn *t, const char *repo, mfs_repo_info *out_times_only);
int mfs_ref_get(mfs_txn *t, const char *repo, const char *ref,
		char commit[MFS_COMMIT_LEN + 1]);
int mfs_file_get(mfs_txn *t, const char *repo, const char *commit, const char *path,
		 mfs_file_info *out_no_path);

/* ---- blobs and tensors ---- */

typedef struct mfs_extent {
	uint64_t off;          /* offset in the file */
	uint32_t len;          /* raw length = the chunk's raw length */
	mfs_chunk_key key;
} mfs_extent;

typedef struct mfs_blob_info {
	char etag[MFS_ETAG_MAX + 1];
	uint64_t size;
	uint8_t sha256[32];
	uint64_t n_extents;
	uint64_t n_tensors;
	uint64_t stored_bytes;   /* sum of payloads of its extents' chunks at ingest */
} mfs_blob_info;

/**
 * Look a blob up and copy its extent list out.
 * @param[out] extents  optional: malloc'd array of info->n_extents extents,
 *                      owned by the caller (free()); NULL when not wanted
 */
int mfs_blob_get(mfs_txn *t, const char *repo, const char *etag, mfs_blob_info *info,
		 mfs_extent **extents);

int mfs_blobs_foreach(mfs_txn *t, const char *repo,
		      int (*cb)(void *ud, const mfs_blob_info *b), void *ud);

/**
 * Index of the extent holding byte @p off (extents tile the file, sorted).
 * @return index in [0, n), or n when off >= file size.
 */
size_t mfs_extent_find(const mfs_extent *ext, size_t n, uint64_t off);

#define MFS_MAX_DIMS MFS_GEOM_DIMS
typedef struct mfs_tensor_info {
	const char *name;
	mfs_dtype dtype;
	uint32_t ndim;
	uint64_t shape[MFS_MAX_DIMS];
	uint64_t data_off;     /* offset of its first byte in the file */
	uint64_t raw_len;
	uint64_t stored_len;   /* payload bytes of its chunks */
	mfs_codec_id codec;    /* codec chosen for it */
	uint64_t first_extent; /* index into the blob's extents */
	uint64_t n_extents;
	const char *base;      /* repo whose same-named tensor its deltas decode
				  against (codec xor-delta), else NULL */
	uint64_t alone_len;    /* with a base: what it would take stored alone,
				  estimated at ingest from its first chunk */
} mfs_tensor_info;

int mfs_tensors_foreach(mfs_txn *t, const char *repo, const char *etag,
			int (*cb)(void *ud, const mfs_tensor_info *ti), void *ud);

/**
 * Set the stored bytes a blob record counts (after chunks of it were
 * re-encoded in place); nothing else of the record changes.
 * @return 0; MFS_E_NOTFOUND; MFS_E_CORRUPT (a damaged record); MFS_E_INVAL
 *         (a bad etag or a read-only transaction); MFS_E_DB / -ENOSPC
 */
int mfs_blob_set_stored(mfs_txn *t, const char *repo, const char *etag, uint64_t stored_bytes);

/**
 * Rewrite the record of tensor @p ti->name of blob @p etag of @p repo (after
 * its chunks were re-encoded in place: the codec, stored length, base and
 * stand-alone estimate it now has).  Strings are copied; nothing is kept.
 * @return 0; MFS_E_NOTFOUND (no such tensor record); MFS_E_INVAL (a bad
 *         name or a read-only transaction); MFS_E_DB / -ENOSPC
 */
int mfs_tensor_update(mfs_txn *t, const char *repo, const char *etag, const mfs_tensor_info *ti);

/* ---- publishing (ingest) ---- */

/* A blob to publish: the file's content, cut into chunks already stored. */
typedef struct mfs_blob_rec {
	const char *etag;
	uint64_t size;
	uint8_t sha256[32];
	uint64_t stored_bytes;
	size_t n_extents;
	const mfs_extent *extents;
	size_t n_tensors;
	const mfs_tensor_info *tensors;
} mfs_blob_rec;

/**
 * Write a blob record and its tensors, and count one reference for each of
 * its extents' chunks.  A blob with the same repo+etag already present is
 * left as it is (*existed = 1), unless its record does not parse: then this
 * one replaces it (a re-ingest repairs a damaged blob record).  Every extent's chunk must exist.
 * The blob is invisible to the mount until a published file points to it.
 */
int mfs_blob_put(mfs_txn *t, const char *repo, const mfs_blob_rec *b, int *existed);

/* One file of a snapshot. */
typedef struct mfs_file_rec {
	const char *path;
	const char *etag;
	uint32_t mode;
} mfs_file_rec;

/**
 * Publish a snapshot: the repo (created if new), the commit, all its files
 * (whose blobs must have been put), the .no_exist names, and the refs that
 * point to it; bumps the generation.  Call in the same transaction as the
 * last blob put, then commit: the snapshot appears whole or not at all.
 * Re-publishing an existing commit replaces its file list.
 */
int mfs_snapshot_publish(mfs_txn *t, const char *repo, const char *commit, uint64_t time,
			 const mfs_file_rec *files, size_t n_files, const char *const *noexist,
			 size_t n_noexist, const char *const *refs, size_t n_refs,
			 mfs_errmsg *err);

/* ---- removal and garbage collection ---- */

/**
 * Remove a repo: refs, commits, files, blobs, tensors; the reference counts
 * of its chunks drop (chunks reaching 0 are left for gc).  Bumps the generation.
 * A damaged record does not stop it: a blob record that does not parse is
 * removed without lowering the counts it gave (gc's recount settles them).
 * @return 0 or MFS_E_NOTFOUND
 */
int mfs_repo_remove(mfs_txn *t, const char *repo);

typedef struct mfs_gc_stat {
	uint64_t blobs_removed;     /* blobs no file pointed to (crashed ingests) */
	uint64_t chunks_removed;
	uint64_t bytes_freed;	    /* entry bytes (header + payload) of the removed
				       chunks, now dead in their packs */
	uint64_t counts_fixed;      /* reference counts set to their extents' number */
	int recount_skipped;        /* 1: a blob record does not parse, counts left as they are */
} mfs_gc_stat;

/**
 * Remove unreferenced blobs and chunks in one write transaction.  Before the
 * sweep, every chunk's reference count is set to the number of blob extents
 * using it (damage can leave one too high: see mfs_repo_remove), unless a
 * blob record does not parse.
 * The caller must hold the store's ingest lock exclusively
 * (mfs_store_lock_ingest(s, 1, ...)) so no ingest is in flight.
 */
int mfs_gc_sweep(mfs_txn *t, mfs_gc_stat *out);

/* How mfs_gc_packs() repacks. */
typedef struct mfs_pack_gc_opts {
	double repack_below;  /* repack packs whose live fraction (live entry bytes
				 over entry bytes written) is below this; 0: no
				 repack; 0.5 is `gc`'s default */
	unsigned wait_ms;     /* how long to wait for readers of snapshots older than
				 a retired pack before leaving it for the next gc */
	uint64_t batch_bytes; /* entry bytes moved per transaction (0: 64 MiB) */
	uint64_t merge_below; /* also move the packs smaller than this (committed
				 bytes) that no writer holds, when there are at
				 least two: their entries go into one pack (the
				 small packs concurrent writers leave); 0: never;
				 `gc`'s default is 64 MiB */
	void (*step)(void *ud, const char *what); /* optional: told after each
				 committed step (the tests pause there to kill gc) */
	void *ud;
} mfs_pack_gc_opts;

typedef struct mfs_pack_gc_stat {
	uint64_t orphans_removed, orphan_bytes; /* pack files no record names */
	uint64_t tails_truncated, tail_bytes;	/* bytes past committed_end */
	uint64_t packs_repacked;		/* packs wholly moved, now retired */
	uint64_t packs_merged;	/* of those, the ones moved for being small */
	uint64_t chunks_moved, bytes_moved;	/* entries copied into new packs */
	uint64_t packs_removed, bytes_removed;	/* retired pack files unlinked */
	uint64_t packs_waiting;	  /* retired, kept for a reader of an older snapshot */
	uint64_t damaged_entries; /* live entries left in place: their entry header is
				     damaged (verify names the chunk) */
} mfs_pack_gc_stat;

/**
 * Give the packs' dead space back, while mounts and other commands run:
 *   1. in one write transaction, remove pack files that no packs record
 *      names and truncate packs past their committed_end (crashes leave
 *      both), each only when no writer holds the pack's lock;
 *   2. repack the packs whose live fraction is below opts->repack_below,
 *      and, when there are two or more, those smaller than
 *      opts->merge_below, that no writer holds: their live entries (header-checked) are
 *      copied, in file order, into new packs, synced, and the records moved
 *      in transactions of opts->batch_bytes (one whose record changed
 *      meanwhile leaves its copy dead); a pack wholly moved is marked
 *      retired with the retiring transaction's id, and the generation bumped
 *      (so mounts move their views on);
 *   3. unlink the retired packs once no LMDB reader slot holds a snapshot
 *      older than the one that retired them (a reader that looked a
 *      location up before can still open the file), waiting up to
 *      opts->wait_ms for such readers; then drop their records.
 * A crash at any point leaves a store that reads exact; the next call
 * finishes the work.  One at a time per store (<store>/gc.lock, waited
 * for).  Needs no ingest lock: an ingest appends to packs of its own.
 * @param[in] o  NULL: repack below 0.5, no waiting
 * @return 0, or an error with @p err saying what step failed
 */
int mfs_gc_packs(mfs_store *s, const mfs_pack_gc_opts *o, mfs_pack_gc_stat *out,
		 mfs_errmsg *err);

/**
 * Take the store's ingest lock: shared (@p exclusive = 0) for an ingest,
 * exclusive for gc.  Non-blocking when @p wait is 0 (MFS_E_BUSY).
 * @param[out] fd  lock descriptor; release with mfs_store_unlock(fd)
 */
int mfs_store_lock_ingest(mfs_store *s, int exclusive, int wait, int *fd);
void mfs_store_unlock(int fd);

/**
 * Rewrite the environment compactly so data.mdb shrinks: a compact copy
 * (mdb_env_copy2 + MDB_CP_COMPACT) into <dir>/compact.tmp/, synced and
 * checked (every database holds as many records as the store's), renamed over
 * data.mdb, the directory synced, and LMDB's lock region reset for the new
 * file before any other process may open it.
 * Needs the store unused: it takes users.lock exclusively (no modelfs process
 * has the store open; one that starts meanwhile waits) and the write lock on
 * lock.mdb (no other LMDB program has it open).  This process must not have
 * the store open either (mfs_store_close() it first).
 * @return 0; MFS_E_BUSY (in use: nothing changed); another code with @p err
 *         saying what failed and whether the store changed (every failure
 *         before the rename leaves it exactly as it was)
 */
int mfs_store_compact(const char *dir, mfs_errmsg *err);

#endif
