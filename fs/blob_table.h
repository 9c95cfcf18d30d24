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
 * view, for the files the kernel still has open.  Closing files may wait
 * for their prefetches: call from a thread that serves no reads.
 * @return the entries moved
 */
size_t mfs_blob_table_rebase(mfs_blob_table *t, mfs_view *view);

/**
 * Close the files of entries no read has used for @p idle_ms (entries not in
 * use): the kernel may keep an inode long after its last read, and a file
 * holds its extent list.  The entry stays, with its view; its next read
 * reopens the file.  May wait for a file's prefetches, like rebase.
 * @return the files closed
 */
size_t mfs_blob_table_close_idle(mfs_blob_table *t, uint64_t idle_ms);

/* What the table holds (tests, the stop log). */
typedef struct mfs_blob_table_stats {
	size_t entries; /* inodes the kernel holds */
	size_t files;	/* of them, with a file open */
	size_t behind;	/* of them, on a view older than the newest rebased to */
} mfs_blob_table_stats;

void mfs_blob_table_stats_get(mfs_blob_table *t, mfs_blob_table_stats *out);

#endif
