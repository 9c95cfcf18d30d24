/*
 * blob_table.h - the blobs the kernel holds, by inode number, and the open
 * file (fs/reader.h) each one reads through.
 *
 * The mount answers the kernel's OPEN with "not implemented" (so the kernel
 * sends no OPEN or RELEASE at all: a re-read of a cached file costs no
 * request), and therefore reads by inode, not by open file.  A blob's
 * entry lives as long as the kernel may send a read for it: from the first
 * entry the mount hands out for it (a lookup or a readdirplus entry) until
 * the kernel forgets every one of them (FORGET), which it does only once no
 * file has it open.  The entry pins the view (fs/reader.h) current when it
 * was made, so a file opened before its repo was removed and garbage-
 * collected reads its bytes still; mfs_blob_table_rebase() moves the
 * entries of blobs still in the store to a newer view, so the old views
 * (and the store pages they keep from reuse) end.
 *
 * A view is one LMDB read transaction, and so one of the store's reader
 * slots, which every process of the store shares (1024 in all): removed
 * blobs held open across many removals would pin a view each.
 * mfs_blob_table_bound_views() keeps the views the entries hold within a
 * bound: the entries of a view beyond it move to a view kept that has their
 * blob (views share where the snapshots allow), and the others are copied
 * out of their view into a spill file (mfs_rfile_spill: decoded, checked),
 * after which the view ends.
 *
 * Threads: every call is thread-safe.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_BLOB_TABLE_H
#define MFS_BLOB_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "reader.h"

typedef struct mfs_blob_table mfs_blob_table;
typedef struct mfs_blob_entry mfs_blob_entry;

/**
 * An empty table, whose files are opened through @p r (borrowed; must
 * outlive the table).
 * @param[out] out  free with mfs_blob_table_free()
 */
int mfs_blob_table_create(mfs_reader *r, mfs_blob_table **out);

/** Close every file and end every view reference; NULL is a no-op.  No
 *  entry may be in use (mfs_blob_table_get without its put). */
void mfs_blob_table_free(mfs_blob_table *t);

/**
 * The kernel is handed an entry for blob @p etag of @p repo as inode
 * @p ino: count it (the kernel's lookup count).  A new entry takes a
 * reference to @p view (whose bytes it will read); an existing one keeps
 * its own.  Call before the entry is sent (a read may follow at once), and
 * mfs_blob_table_forget(ino, 1) if sending it fails.
 * @return 0 or -ENOMEM
 */
int mfs_blob_table_ref(mfs_blob_table *t, uint64_t ino, const char *repo,
		       const char *etag, mfs_view *view);

/**
 * The kernel forgot @p n lookups of @p ino (FORGET): at 0 the entry goes,
 * and its file is closed (once no read uses it).  Unknown inodes (not
 * blobs) are ignored.
 */
void mfs_blob_table_forget(mfs_blob_table *t, uint64_t ino, uint64_t n);

/**
 * The file to read blob inode @p ino through, opened in the entry's view
 * on its first read.  Give it back with mfs_blob_table_put().
 * @param[out] e       the entry, in use until put
 * @param[out] f       its file: valid until put
 * @param[out] opened  optional: 1 when this call opened the file (its first
 *                     read since the entry was made or rebased)
 * @return 0; MFS_E_NOTFOUND when the table has no @p ino (not a blob the
 *         kernel holds); -ESTALE when the entry's view lacks the blob (it
 *         was removed before the lookup's view began); -ENOMEM
 */
int mfs_blob_table_get(mfs_blob_table *t, uint64_t ino, mfs_blob_entry **e,
		       mfs_rfile **f, int *opened);

/** End a use begun by mfs_blob_table_get(). */
void mfs_blob_table_put(mfs_blob_table *t, mfs_blob_entry *e);

/**
 * Move every entry not in use and on a view older than @p view whose blob
 * @p view holds to @p view (its open file is closed; the next read reopens
 * it in @p view); entries whose blob @p view lacks (removed) keep their
 * view, for the files the kernel still has open, and spilled entries their
 * copy.  Closing files may wait
 * for their prefetches: call from a thread that serves no reads.
 * @return the entries moved
 */
size_t mfs_blob_table_rebase(mfs_blob_table *t, mfs_view *view);

/**
 * Close the files of entries no read has used for @p idle_ms (entries not in
 * use): the kernel may keep an inode long after its last read, and a file
 * holds its extent list.  The entry stays, with its view; its next read
 * reopens the file.  Spilled copies stay open (they have no view to reopen
 * in).  May wait for a file's prefetches, like rebase.
 * @return the files closed
 */
size_t mfs_blob_table_close_idle(mfs_blob_table *t, uint64_t idle_ms);

/**
 * Bound the views the entries hold to @p max_views (see the top of this
 * file), spilling into an unlinked temporary file in @p spill_dir (created
 * on the first spill; mfs_spill_create).  Call once, before the table is
 * shared; without it there is no bound.
 * @return 0, -ENOMEM, MFS_E_INVAL (called twice, or @p max_views 0)
 */
int mfs_blob_table_set_bound(mfs_blob_table *t, size_t max_views, const char *spill_dir);

/* What one mfs_blob_table_bound_views() did. */
typedef struct mfs_blob_table_bound {
	size_t views_before;	 /* views the entries held before */
	size_t views;		 /* and after */
	size_t shared;		 /* entries moved to a view kept */
	size_t spilled;		 /* entries now reading a spilled copy */
	uint64_t spilled_bytes;	 /* the bytes of those copies */
	size_t failed;		 /* copies that failed: those entries keep their
				    view for good (not tried again) */
	int first_error;	 /* the first failure's code */
	char failed_repo[MFS_REPO_ID_MAX + 1]; /* and its blob */
	char failed_etag[MFS_ETAG_MAX + 1];
} mfs_blob_table_bound;

/**
 * When the entries hold more views than the bound (mfs_blob_table_set_bound),
 * keep the newest view and the bound - 1 oldest, and let the others go:
 * every entry of theirs not in use moves to the newest view kept that has
 * its blob, or else reads from then on a copy of its blob in the spill file
 * (mfs_rfile_spill), and its view ends once no entry holds it.  An entry in
 * use is left for a later call.  Copies may take a while (each decodes a
 * whole file) and closing files may wait for their prefetches: call from a
 * thread that serves no reads (the mount's watcher), one at a time.
 * No-op without a bound.
 * @param[out] res  what it did
 * @return 0 or -ENOMEM (a copy that fails is counted in @p res, not returned)
 */
int mfs_blob_table_bound_views(mfs_blob_table *t, mfs_blob_table_bound *res);

/* What the table holds (tests, the stop log). */
typedef struct mfs_blob_table_stats {
	size_t entries;	     /* inodes the kernel holds */
	size_t files;	     /* of them, with a file open (spilled copies too) */
	size_t behind;	     /* of them, on a view older than the newest rebased to */
	size_t spilled;	     /* of them, reading a spilled copy (no view) */
	size_t views;	     /* distinct views the entries hold (reader slots) */
	uint64_t spill_bytes; /* the spill file's live bytes */
	uint64_t spill_peak;  /* and the most it held at once */
} mfs_blob_table_stats;

void mfs_blob_table_stats_get(mfs_blob_table *t, mfs_blob_table_stats *out);

#endif
