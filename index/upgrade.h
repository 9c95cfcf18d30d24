/*
 * upgrade.h - convert a store of format 1 (every chunk's payload inside its
 * LMDB record) in place to format 2 (payloads in pack files, index/pack.h;
 * LMDB holds the index only): what `modelfs upgrade` runs.
 *
 * mfs_store_upgrade(dir, ...) goes through four steps:
 *   1. checks, before anything is written: there is a store at dir (an
 *      empty or missing folder is not one: nothing is created; a read-only
 *      open refuses a damaged data.mdb and an environment that is not a
 *      store); no process has it open (users.lock, which every modelfs
 *      process holds shared, and lock.mdb's first byte, which every LMDB
 *      program holds); its format is 1 or 2 (a newer one is refused);
 *      enough free disk for the packs.
 *   2. convert, in bounded batches, one write transaction each: every
 *      chunk a file uses, in file order (every blob of every repo, its
 *      extents in order, so that a file's payloads lie in order in the packs
 *      as ingest writes them and a cold read is a few large reads), then
 *      every other chunk (a delta's base no file uses any more, leftovers
 *      of an interrupted ingest) in key order.  Each conversion appends the
 *      payload to a pack and rewrites the record to name it
 *      (mfs_chunk_upgrade); the commit syncs the pack before the index.
 *   3. switch: one transaction checks that no record holds a payload any
 *      more, sets the format to 2 and records that a compaction is owed
 *      (meta "upgrade_compact").
 *   4. compact: the store is closed and compacted (mfs_store_compact),
 *      which gives the pages of the old payloads back to the file system;
 *      then the "owed" record is removed.
 *
 * Crash safety: killed at any moment, the store is either format 1 with
 * some records converted (each conversion is whole: its transaction
 * committed or did not), which this modelfs still refuses with the message
 * naming `modelfs upgrade` and the next run goes on from; or format 2 and
 * complete, with at most the compaction owed, which the next run does.
 * A batch in flight leaves only bytes past its pack's committed end, which
 * gc (or the next appender) cuts off.  The format switches in one commit.
 *
 * Exclusive: from step 1 to the end of step 3 this process holds the write
 * lock on lock.mdb's first byte, as compaction does: any other process that
 * opens the store (modelfs of this release or an older one, mdb_stat, ...)
 * waits in LMDB's open until it is done, then finds format 2.  Step 4 needs
 * the store unused; when a waiting process got in first, the compaction is
 * left owed (*compact_pending) and a later run does it.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_UPGRADE_H
#define MFS_UPGRADE_H

#include <stdint.h>

#include "err.h"

/* Payload bytes moved per transaction when the caller gives 0. */
#define MFS_UPGRADE_BATCH_DEFAULT ((uint64_t)64 << 20)
/* And at most this many chunks per transaction, whatever their size. */
#define MFS_UPGRADE_BATCH_CHUNKS 8192

typedef enum mfs_upgrade_phase {
	MFS_UPGRADE_CONVERT = 0, /* moving payloads into packs */
	MFS_UPGRADE_SWITCH = 1,  /* checking and switching the format */
	MFS_UPGRADE_COMPACT = 2, /* compacting the index */
} mfs_upgrade_phase;

/* Where a run stands (passed to the progress callback after each commit). */
typedef struct mfs_upgrade_progress {
	mfs_upgrade_phase phase;
	uint64_t chunks_total; /* chunk records in the store */
	uint64_t chunks_done;  /* of those, in packs now (earlier runs' included) */
	uint64_t bytes_total;  /* payload bytes inside records when this run began */
	uint64_t bytes_done;   /* of those, moved by this run so far */
} mfs_upgrade_progress;

typedef struct mfs_upgrade_opts {
	uint64_t batch_bytes; /* payload bytes per transaction; 0: the default */
	/* Optional: called from the calling thread at the start (chunks_done
	 * says what an interrupted run already moved), after every committed
	 * batch, and when each later phase begins.  @p p is valid during the
	 * call only. */
	void (*progress)(void *ud, const mfs_upgrade_progress *p);
	void *progress_ud;
} mfs_upgrade_opts;

/* What a run did. */
typedef struct mfs_upgrade_stat {
	unsigned format_before;   /* the format the store had: 1 or 2 */
	int switched;             /* 1: this run set format 2 */
	int compacted;            /* 1: this run compacted the index */
	int compact_pending;      /* 1: format 2, but the compaction is still owed
				     (the store was in use): run again */
	uint64_t chunks;          /* chunk records in the store */
	uint64_t chunks_resumed;  /* in packs already when this run began */
	uint64_t chunks_moved;    /* moved into packs by this run */
	uint64_t bytes_moved;     /* their payload bytes */
	uint64_t batches;         /* write transactions that moved chunks */
	uint64_t index_bytes_before; /* size of data.mdb when this run began */
	uint64_t index_bytes_after;  /* and when it ended */
	uint64_t n_packs;         /* pack files after the run */
	uint64_t pack_bytes;      /* their bytes */
} mfs_upgrade_stat;

/**
 * Convert the store at @p dir to format 2 in place, or finish a conversion
 * an earlier run began (see the top of this file).  A store of format 2
 * with nothing owed is left exactly as it is (*st says format_before 2,
 * switched 0, compacted 0).
 * @param[in]  dir   the store directory
 * @param[in]  opts  optional (NULL: defaults)
 * @param[out] st    what was done; filled as far as the run got, also on failure
 * @param[out] err   optional: on failure, what failed, whether the store
 *                   changed and what to do
 * This process must not have the store open (the compaction needs it
 * closed, as mfs_store_compact says).
 * @return 0; -ENOENT (no store at @p dir); MFS_E_BUSY (a process has the
 *         store open: nothing was changed); MFS_E_VERSION (a format this
 *         modelfs does not know: nothing was changed); MFS_E_CORRUPT (a
 *         damaged data.mdb: nothing was changed; or a damaged record: what
 *         was converted stays converted, the format stays 1); -ENOSPC (not
 *         enough free disk: nothing was converted, or the batch in flight is
 *         lost); the read-only open's code for an environment that is not a
 *         modelfs store; another code from the store.  After a failure in
 *         step 4 the store is format 2 and usable, and a later run compacts it.
 */
int mfs_store_upgrade(const char *dir, const mfs_upgrade_opts *opts, mfs_upgrade_stat *st,
		      mfs_errmsg *err);

#endif
