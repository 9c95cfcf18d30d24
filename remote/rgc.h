/*
 * rgc.h - garbage collection of a pushed store in its bucket
 * (`modelfs gc --remote s3://BUCKET/PREFIX`; docs/remote.md, "Remote gc").
 *
 * Push never deletes: every push leaves its index, and packs that local gc
 * retired (repacked) stay in the bucket.  mfs_remote_gc() removes what no
 * reader can still need:
 *
 *   kept indexes   the one LATEST names; the newest keep_indexes - 1 others
 *                  (by generation) that are not newer than it; every index
 *                  younger than the grace (a push in flight uploads its index
 *                  just before LATEST); and every index that was the newest
 *                  less than the grace ago (the next one's LastModified: a
 *                  mount that looks at LATEST more often than the grace may
 *                  still be reading it)
 *   kept packs     every pack a kept index names (its "packs" records and
 *                  its chunks' locations, read from the downloaded index
 *                  opened as a store), and every pack object younger than
 *                  the grace (a push in flight uploads its packs first)
 *   deleted        the other index/ and packs/ objects of modelfs's own
 *                  names; anything else under the prefix is left alone;
 *                  multipart uploads under index/ and packs/ begun longer
 *                  than the grace ago are aborted
 * Ages are LastModified (Initiated for an upload) against the server's own
 * clock (its Date header); an object whose age the server does not give is
 * kept.
 *
 * Order, so that a gc stopped at any point (kill -9, a lost connection)
 * leaves a bucket every reader of a kept index reads exact:
 *   1. plan from the listings and the kept indexes; nothing is deleted if
 *      any kept index cannot be read;
 *   2. read LATEST again: if a push moved it meanwhile, plan again (at most
 *      three times, then MFS_E_BUSY, nothing deleted);
 *   3. abort stale multipart uploads (invisible objects: no reader sees them);
 *   4. delete the old indexes (every index left still has all its packs);
 *   5. read LATEST again (as in 2; a change plans again), then delete the
 *      packs no kept index names.
 * LATEST, its index and their packs are never deleted.  A stop between 4
 * and 5 leaves packs no index names, which the next gc deletes.
 *
 * Threads: one gc per call, on the caller's thread.  Module convention: int
 * return, 0 or a negative code (err.h, s3.h); no printing: every decision
 * goes to the event callback.
 */
#ifndef MFS_REMOTE_RGC_H
#define MFS_REMOTE_RGC_H

#include <stdint.h>

#include "bucket.h"
#include "s3.h"

/* What an event tells. */
typedef enum mfs_rgc_what {
	MFS_RGC_KEEP_INDEX,   /* an index is kept (why: "latest", "newest", "young",
				 "recent") */
	MFS_RGC_KEEP_PACK,    /* a pack no kept index names is kept: younger than
				 the grace, or of unknown age (why: "young") */
	MFS_RGC_DELETE_INDEX, /* an index was (dry run: would be) deleted */
	MFS_RGC_DELETE_PACK,  /* a pack was (would be) deleted */
	MFS_RGC_ABORT_UPLOAD, /* an incomplete multipart upload was (would be)
				 aborted (key: its key; upload_id: its id) */
	MFS_RGC_PLANNED,      /* the plan is final; deletions follow */
} mfs_rgc_what;

typedef struct mfs_rgc_event {
	mfs_rgc_what what;
	const char *key;       /* the full key; valid during the call */
	const char *why;       /* KEEP_*: the rule that keeps it; else NULL */
	const char *upload_id; /* ABORT_UPLOAD only */
	uint64_t size;	       /* bytes of the object (0 for an upload) */
	int64_t age;	       /* seconds since LastModified; -1: unknown */
	int dry_run;	       /* 1: nothing was deleted */
} mfs_rgc_event;

typedef struct mfs_rgc_opts {
	unsigned keep_indexes; /* >= 1, LATEST's included; 0: 2 */
	int64_t grace_s;       /* >= 0; negative: MFS_RGC_GRACE_S */
	int dry_run;	       /* 1: plan and tell, delete nothing */
	/* where kept indexes are downloaded to be read; NULL: $TMPDIR, /tmp */
	const char *tmpdir;
	/* optional: every decision and deletion, on the calling thread */
	void (*event)(void *ud, const mfs_rgc_event *ev);
	void *ud;
} mfs_rgc_opts;

/* The default grace: longer than a push of a large store takes. */
#define MFS_RGC_GRACE_S 3600

typedef struct mfs_rgc_stat {
	uint64_t generation;	       /* LATEST's */
	uint64_t indexes, index_bytes; /* index objects listed */
	uint64_t indexes_kept;
	uint64_t indexes_deleted, index_bytes_deleted;
	uint64_t packs, pack_bytes; /* pack objects listed */
	uint64_t packs_named;	    /* named by a kept index (and present) */
	uint64_t packs_young;	    /* named by none, kept by the grace */
	uint64_t packs_deleted, pack_bytes_deleted;
	uint64_t packs_missing;		   /* named by a kept index, not in the bucket */
	uint64_t uploads, uploads_aborted; /* incomplete multipart uploads */
	int uploads_unsupported;	   /* the server does not list them */
	uint64_t other_objects;		   /* under the prefix, not modelfs's names */
	uint64_t index_bytes_read;	   /* kept indexes downloaded */
	unsigned rounds;		   /* plans made (LATEST moved: > 1) */
	double seconds;
} mfs_rgc_stat;

/**
 * Collect the garbage of the store pushed to @p url, as the header says.
 * @param[in]  o    NULL: the defaults (keep 2 indexes, grace 1 h)
 * @param[out] out  optional: what was found and done (also on failure: what
 *                  was deleted before it)
 * @return 0;
 *         -ENXIO (no such bucket), -EACCES (keys refused), the connection
 *         codes of s3.h;
 *         MFS_E_NOTFOUND (no LATEST: nothing modelfs pushed there);
 *         MFS_E_VERSION (a LATEST of a newer format: upgrade modelfs);
 *         MFS_E_CORRUPT (LATEST names an index that is missing or does not
 *         match its size and sha256, or a kept index does not open);
 *         MFS_E_BUSY (pushes moved LATEST during three plans);
 *         MFS_E_INVAL (bad options); -errno of the temporary directory.
 *         Nothing is deleted on a failure before step 3; every message
 *         names s3://BUCKET/KEY and what to do.
 */
int mfs_remote_gc(mfs_s3 *s3, const mfs_s3_url *url, const mfs_rgc_opts *o,
		  mfs_rgc_stat *out, mfs_errmsg *e);

#endif
