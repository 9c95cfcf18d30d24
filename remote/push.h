/*
 * push.h - upload a store to an S3 bucket (`modelfs push`): its packs and a
 * snapshot of its index, in an order that keeps the bucket readable at every
 * moment (docs/remote.md, "Push").
 *
 *   1. Check the bucket (HEAD) and read LATEST if there is one: a LATEST of
 *      a newer format, or one naming a newer generation than this store's,
 *      stops the push before anything is written.
 *   2. Take a consistent snapshot of the index: a compact copy of the LMDB
 *      environment (mdb_env_copyfd2, MDB_CP_COMPACT) into a temporary
 *      directory, opened as a store to read its generation and the packs it
 *      names (id, committed_end).  A read transaction on the live store is
 *      held from before the copy to the end, so gc keeps every pack the
 *      snapshot names (it unlinks a retired pack only when no reader holds
 *      an older snapshot).
 *   3. List PREFIX/packs/ once.  Each pack whose object is missing or
 *      shorter than its committed_end is uploaded: exactly its bytes
 *      [0, committed_end) (append-only packs: a longer object holds every
 *      range an older index names), in one PUT, or as a multipart upload
 *      when longer than the part size (an object appears only when its
 *      upload completes; a failed one is aborted).  An object already there is checked
 *      against the local file on the last 4 KiB they share, so a prefix that
 *      holds another store's packs is refused instead of mixed.
 *   4. Upload the snapshot as PREFIX/index/<generation>-<random>.mdb (a new
 *      key each time: an index a reader is fetching is never overwritten).
 *   5. Check that every pack found in the bucket and not sent is still
 *      there (HEAD: a remote gc alongside may delete a pack a dead push
 *      left, which this push reuses), read LATEST again (a push that raced
 *      this one and named a newer generation wins), then write PREFIX/LATEST
 *      naming the new index.
 * A push stopped at any point (kill -9, a lost connection) leaves LATEST
 * naming the previous complete index; what it uploaded before is either
 * unnamed (a new pack, an index) or a longer copy of a pack, which still
 * holds every range the previous index names.  Nothing is deleted.
 *
 * Threads: one push per call, on the caller's thread; the mfs_s3 client may
 * be shared.  Module convention: int return, 0 or a negative code from err.h
 * (and -errno / the codes of s3.h); no printing: the caller is told of each
 * step through the progress callback.
 */
#ifndef MFS_REMOTE_PUSH_H
#define MFS_REMOTE_PUSH_H

#include <stdint.h>

#include "bucket.h"
#include "s3.h"
#include "store.h"

/* The steps a push reports. */
typedef enum mfs_push_stage {
	MFS_PUSH_SNAPSHOT, /* the index was copied (what: the temporary file) */
	MFS_PUSH_LISTED,   /* the bucket's packs were listed; plan known */
	MFS_PUSH_PART,	   /* a part of an object sent in parts was uploaded
			      (what: "KEY part N of M") */
	MFS_PUSH_PACK,	   /* a pack was uploaded (what: its key) */
	MFS_PUSH_INDEX,	   /* the index snapshot was uploaded (what: its key) */
	MFS_PUSH_LATEST,   /* LATEST was written: the push is visible */
} mfs_push_stage;

typedef struct mfs_push_event {
	mfs_push_stage stage;
	const char *what;     /* valid during the call */
	uint64_t bytes_done;  /* bytes uploaded so far */
	uint64_t bytes_total; /* bytes the plan uploads (known from LISTED on) */
	uint64_t packs_done, packs_total; /* packs uploaded so far / to upload */
} mfs_push_event;

typedef struct mfs_push_opts {
	/* optional: called after each step, on the pushing thread */
	void (*progress)(void *ud, const mfs_push_event *ev);
	void *ud;
	/* where the snapshot of the index is written; NULL: $TMPDIR, else /tmp */
	const char *tmpdir;
	/* an object longer than this goes up as a multipart upload in parts of
	 * this size (s3.h, mfs_s3_put_file_multipart: a failed part is sent
	 * again, not the object); 0: MFS_PUSH_PART_SIZE.  S3 wants at least
	 * MFS_S3_PART_MIN */
	uint64_t part_size;
} mfs_push_opts;

/* The default part size: a 1 GiB pack goes up in 16 parts. */
#define MFS_PUSH_PART_SIZE ((uint64_t)64 << 20)

typedef struct mfs_push_stat {
	uint64_t generation;	 /* of the snapshot pushed */
	uint64_t packs;		 /* packs the snapshot names */
	uint64_t pack_bytes;	 /* the sum of their committed ends */
	uint64_t packs_uploaded; /* missing or shorter in the bucket */
	uint64_t pack_bytes_uploaded;
	uint64_t index_bytes;		/* the snapshot's size */
	int up_to_date;			/* 1: LATEST already named this generation and
					   every pack was there: nothing was written */
	char index_key[MFS_S3_KEY_MAX]; /* the full key of the index LATEST names */
	uint64_t multipart;		/* objects sent as multipart uploads */
	double seconds;
} mfs_push_stat;

/**
 * Push store @p s (open, read-only is enough) to @p url through @p s3, as
 * the header says.
 * @param[in]  o    NULL: no progress, snapshot in $TMPDIR
 * @param[out] out  optional: what was done
 * @return 0;
 *         -ENXIO (no such bucket), -EACCES (keys refused), the connection
 *         codes of s3.h: nothing was made visible;
 *         MFS_E_VERSION (LATEST of a newer format / store format);
 *         MFS_E_CORRUPT (LATEST that is not modelfs's; a local pack file
 *         shorter than the committed end its record gives);
 *         MFS_E_EXISTS (the prefix holds another store's packs, or a LATEST
 *         of a newer generation than this store's: another store pushed there);
 *         MFS_E_BUSY (another push wrote a newer LATEST while this one ran,
 *         or a pack this push reuses was deleted meanwhile: its packs and
 *         index stay, unnamed);
 *         -errno of the temporary snapshot
 *         Every message names the store, s3://BUCKET/KEY and what to do.
 */
int mfs_push(mfs_store *s, mfs_s3 *s3, const mfs_s3_url *url, const mfs_push_opts *o,
	     mfs_push_stat *out, mfs_errmsg *e);

#endif
