/*
 * reader.h - the read path, as a library: open a file of the store and read
 * any byte range of it, decoding only the chunks the range touches.
 *
 * No FUSE here: the mount (fs/ll.c), `modelfs export`, `modelfs verify` and
 * the unit tests all read through this.  With a chunk cache (fs/cache.h) the
 * decoded chunks are shared between readers and threads; without one, each
 * read decodes into the caller's workspace.
 *
 * Every byte returned has been checked: its chunk decoded and re-hashed to
 * the chunk key.  A mismatch fails the read with MFS_E_CORRUPT.
 *
 * Threads: an mfs_reader and an mfs_rfile may be used by many threads at
 * once; each thread passes its own mfs_codec_ws.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_READER_H
#define MFS_READER_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "ioahead.h"
#include "store.h"

typedef struct mfs_reader mfs_reader;
typedef struct mfs_cache mfs_cache;
typedef struct mfs_view mfs_view;
typedef struct mfs_spill mfs_spill;

/* An open file: its extent list, copied out of the store at open. */
typedef struct mfs_rfile {
	char repo[MFS_REPO_ID_MAX + 1];
	char etag[MFS_ETAG_MAX + 1];
	uint64_t size;
	uint8_t sha256[32];
	size_t n_extents;
	mfs_extent *extents;	     /* owned by the mfs_rfile */
	uint64_t seq_next;	     /* where a sequential reader reads next (prefetch);
					accessed atomically, as threads share the file */
	uint64_t *served;	     /* per extent: bytes handed to a reader that keeps
					them (mfs_rfile_mark_served); atomic */
	size_t io_first, io_next;    /* extents io_first..io_next-1 have been asked
					for from the disk (read_ahead_io); atomic */
	int whole;		     /* queued whole (mfs_reader_set_whole_file); atomic */
	int has_refs;		     /* a chunk of it decoded against another (a delta):
					the read-ahead then asks for those too; atomic */
	struct mfs_view *view;	     /* the view the file reads (a reference); NULL
					for a spilled copy */
	mfs_reader *reader;	     /* the reader it was opened through */
	mfs_spill *spill;	     /* a spilled copy (mfs_rfile_spill): its bytes lie
					in this temporary file from spill_off; it has
					no view and no extents */
	uint64_t spill_off;
} mfs_rfile;

/**
 * Create a reader over @p store.
 * @param[in] cache  optional decoded-chunk cache (borrowed; must outlive the reader)
 * @param[out] out   free with mfs_reader_free()
 */
int mfs_reader_create(mfs_store *store, mfs_cache *cache, mfs_reader **out);

/**
 * Free a reader; NULL is a no-op.  With a cache, waits for the prefetch jobs
 * this reader queued (mfs_cache_drain), so the cache may outlive it.
 */
void mfs_reader_free(mfs_reader *r);

/**
 * Decode up to @p chunks chunks ahead of a sequential reader, on the cache's
 * worker pool (no effect without a cache; 0 turns prefetch off; default 0).
 * A read is sequential when it starts within one chunk of where the
 * previous read of the same file ended.
 */
void mfs_reader_set_prefetch(mfs_reader *r, unsigned chunks);

struct mfs_gpu_backend; /* batch.h */

/**
 * Have the chunks prefetch queues (mfs_reader_set_prefetch) go to the cache
 * as batches with a GPU batch fill: their rans chunks are decoded on @p g's
 * device, the others (and all of them once @p g has turned itself off) on
 * the cache's workers.  Reads that miss the cache decode on their own
 * thread, on the CPU, as without it.  NULL (the default): no GPU.  @p g is
 * borrowed and must outlive every file opened through the reader.
 */
void mfs_reader_set_gpu(mfs_reader *r, struct mfs_gpu_backend *g);

/**
 * Ask the disk for the stored records of a sequential reader's next chunks
 * (IO_AHEAD_WINDOWS prefetch windows ahead, in reader.c) on @p io's thread,
 * so a cold store is read in the background while chunks decode.  Needs a
 * cache and prefetch on; NULL (the default) turns it off.  @p io is
 * borrowed and must outlive every file opened through the reader.
 */
void mfs_reader_set_ioahead(mfs_reader *r, mfs_ioahead *io);

/**
 * The first time a file of at most @p max_bytes is read out of order (a read
 * that does not continue the file's previous read), queue the decode of all
 * of it on the cache's workers: from that read to the end, then the start;
 * with a read-ahead thread, ask the disk for the records from that read on.
 * Loaders that jump (from_pretrained maps the file and its loader threads
 * fault in the encoder layers at the end first, the embeddings at the start
 * last) end up reading every tensor, in an order no window follows;
 * sequential readers (cp, sha256sum) keep the window, and a reader of the
 * header alone never triggers it.  Needs a cache and prefetch on; the cache
 * bounds the queued work (half its budget, and its queue); the mount keeps
 * @p max_bytes within a quarter of the budget.  0 (the default) turns it off.
 */
void mfs_reader_set_whole_file(mfs_reader *r, uint64_t max_bytes);

/**
 * Queue the decode of all of @p f now, as the first out-of-order read does
 * (mfs_reader_set_whole_file), whatever its size, before anyone reads it:
 * the mount does this for a model's weights when its config.json is first read
 * (fs/prefetch_model.h).  Once per file; the cache bounds the queued work (a file of
 * more chunks than its queue holds is decoded in part).  Needs a cache and
 * prefetch on (otherwise nothing happens).
 */
void mfs_rfile_queue_whole(mfs_reader *r, mfs_rfile *f);

/**
 * Ask the disk now for the pack entries of extents [@p first, @p end) of
 * @p f (posix_fadvise(POSIX_FADV_WILLNEED) on runs of adjacent entries, and
 * the entries of the chunks a delta decodes against once one was seen), so
 * a caller about to decode them all has the disk reading ahead of its
 * decoders instead of each decoder waiting for its own entry.  A hint only:
 * nothing is read or checked; @p end past the last extent is cut.  May
 * block while the device queue takes the requests.
 */
void mfs_rfile_will_need(mfs_rfile *f, size_t first, size_t end);

/**
 * Whether work queued for @p f (decodes, disk read-ahead) is still waiting
 * or running: once 0, closing @p f waits for nothing.
 * @return 1 or 0
 */
int mfs_rfile_busy(mfs_reader *r, mfs_rfile *f);

/**
 * A view of the store: one read transaction (LMDB MVCC), shared by every
 * file opened in it.  Files opened in a view read the bytes the store held
 * when the view began, even after their repo is removed and its chunks
 * garbage-collected, at the price of LMDB not reusing the pages freed after
 * the view began while it lives.  Reference counted: the view lives while
 * its creator or any file opened in it holds it.
 * @param[out] out  one reference: give it back with mfs_view_unref()
 * @return 0, -ENOMEM, or a store error (MFS_E_DB: no reader slot left)
 */
int mfs_view_begin(mfs_reader *r, mfs_view **out);

/** Take one more reference to @p v. */
void mfs_view_ref(mfs_view *v);

/** Give back a reference; the last one ends the transaction. NULL is a no-op. */
void mfs_view_unref(mfs_view *v);

/** The store generation (mfs_store_generation) the view reads. */
uint64_t mfs_view_generation(const mfs_view *v);

/**
 * Whether blob @p etag of @p repo is in view @p v.
 * @return 1, 0, or a negative store error
 */
int mfs_view_has_blob(mfs_view *v, const char *repo, const char *etag);

/**
 * Open the blob @p etag of @p repo in view @p v (the file takes its own
 * reference to @p v): it reads what the store held when @p v began.
 * @param[out] out  free with mfs_rfile_close()
 * @return 0, MFS_E_NOTFOUND, -ENOMEM
 */
int mfs_rfile_open_in(mfs_reader *r, mfs_view *v, const char *repo, const char *etag,
		      mfs_rfile **out);

/**
 * Open the blob @p etag of @p repo in a view of its own, begun now
 * (mfs_rfile_open_in): it reads the same bytes until closed, even if the
 * repo is removed and its chunks garbage-collected meanwhile.
 * @param[out] out  free with mfs_rfile_close()
 * @return 0, MFS_E_NOTFOUND, -ENOMEM, or a store error
 */
int mfs_rfile_open(mfs_reader *r, const char *repo, const char *etag, mfs_rfile **out);

/**
 * Close a file; NULL is a no-op.  Waits for the prefetch jobs it queued.
 * No read of it may be in progress.  A spilled copy gives its space in the
 * spill file back.
 */
void mfs_rfile_close(mfs_rfile *f);

/**
 * Where files that must outlive their view are copied (mfs_rfile_spill): one
 * temporary file in directory @p dir, created on the first spill and
 * unlinked from the start (O_TMPFILE, else mkstemp + unlink), so nothing is
 * left behind, even by a killed process.  A spilled file's range is freed
 * (a hole punched) when the file is closed, and the file is emptied when no
 * spilled file is left; until then its disk space is the cost.
 * Thread-safe.
 * @param[in]  dir  copied; not checked here (mfs_spill_check_dir)
 * @param[out] out  free with mfs_spill_free() once every spilled file is closed
 * @return 0, -ENOMEM, or MFS_E_INVAL (@p dir too long)
 */
int mfs_spill_create(const char *dir, mfs_spill **out);

/** Close the spill file (its space comes back); NULL is a no-op. */
void mfs_spill_free(mfs_spill *sp);

/**
 * Whether @p dir can hold spilled files: creates (and drops) an unlinked
 * temporary file in it.
 * @return 0 or -errno
 */
int mfs_spill_check_dir(const char *dir);

typedef struct mfs_spill_stats {
	size_t files;	/* spilled files open now */
	uint64_t bytes; /* their bytes (the disk space held) */
	uint64_t peak;	/* the most bytes held at once */
} mfs_spill_stats;

void mfs_spill_stats_get(mfs_spill *sp, mfs_spill_stats *out);

/**
 * Copy all of @p f out of its view into @p sp, decoded (every chunk checked
 * against its key, as reads are) and the whole checked against the blob's
 * sha256, so that the copy reads the same bytes with no view: @p f (and its
 * view, an LMDB reader slot) can then be closed.  The decode reads @p f's
 * view directly, not through the cache.  May take a while (it decodes the
 * whole file): call from a thread that serves no reads.
 * @param[out] out  the copy: same repo, etag, size and sha256, no extents and
 *                  no prefetch; mfs_rfile_read reads it (one pread), and
 *                  mfs_rfile_read_segs answers MFS_E_NOSPACE; close it with
 *                  mfs_rfile_close() before @p sp is freed
 * @return 0; MFS_E_CORRUPT or MFS_E_NOTFOUND (a chunk failed its check, or
 *         the bytes do not hash to the blob's sha256: nothing is kept);
 *         -errno of the spill file (-ENOSPC); -ENOMEM; MFS_E_INVAL when @p f
 *         is itself a spilled copy
 */
int mfs_rfile_spill(mfs_reader *r, mfs_rfile *f, mfs_spill *sp, mfs_rfile **out);

/**
 * Decode extent @p i of @p f from the file's own view (the bytes the store
 * held when the view began), verified, into @p dst of f->extents[i].len
 * bytes; no cache.  For whole-file streaming (fs/stream.h).
 * @return 0, MFS_E_CORRUPT, MFS_E_NOTFOUND, -ENOMEM
 */
int mfs_rfile_decode_extent(mfs_rfile *f, size_t i, void *dst, mfs_codec_ws *ws);

/**
 * Read up to @p len bytes at @p off (short only at end of file).  With a
 * cache, chunks come from it (decoded once for all threads) and sequential
 * reads queue prefetches; without one, each read decodes what it needs.
 * @param[in]  ws    the calling thread's workspace
 * @param[out] got   bytes read; on error, the bytes before the chunk that
 *                   failed (so off + *got lies in that chunk)
 * @return 0; MFS_E_CORRUPT (a chunk failed its check: nothing of it is
 *         served); MFS_E_NOTFOUND (a chunk is missing); -ENOMEM
 */
int mfs_rfile_read(mfs_reader *r, mfs_rfile *f, uint64_t off, void *buf, size_t len,
		   size_t *got, mfs_codec_ws *ws);

/* A piece of a read, served in place from a pinned decoded chunk. */
typedef struct mfs_read_seg {
	const void *data;
	size_t len;
	struct mfs_cache_entry *pin; /* give back with mfs_rfile_release_segs() */
	size_t ext;		     /* index of the extent it lies in */
} mfs_read_seg;

/**
 * Read like mfs_rfile_read() without copying: @p segs point into the
 * cache's decoded chunks, pinned until mfs_rfile_release_segs().  Needs a
 * cache (MFS_E_INVAL without one).
 * @param[in]  max_segs  capacity of @p segs; a range that needs more pieces
 *                       (many tiny tensors), or any range of a spilled copy
 *                       (mfs_rfile_spill), fails with MFS_E_NOSPACE, with
 *                       nothing pinned: use mfs_rfile_read() then
 * @param[out] n_segs    pieces filled (also on error: release them)
 * @param[out] got       bytes covered; on error, those before the bad chunk
 * @return as mfs_rfile_read(), or MFS_E_NOSPACE / MFS_E_INVAL
 */
int mfs_rfile_read_segs(mfs_reader *r, mfs_rfile *f, uint64_t off, size_t len,
			mfs_read_seg *segs, size_t max_segs, size_t *n_segs, size_t *got,
			mfs_codec_ws *ws);

/**
 * Note that the pieces of a mfs_rfile_read_segs() of @p f are about to be
 * handed to a reader that keeps its own copy (the mount's replies land in the
 * kernel page cache): prefetch then skips the extents of @p f served whole
 * (the reader has them).  Call before handing them over: once a mount has
 * replied, the kernel may close the file.
 */
void mfs_rfile_mark_served(mfs_rfile *f, const mfs_read_seg *segs, size_t n_segs);

/**
 * Unpin the pieces of a mfs_rfile_read_segs().  Does not touch their file,
 * which may be closed by now.
 * @param[in] kept  nonzero when the pieces were handed to a reader that keeps
 *                  its own copy: their chunks then become the first to be
 *                  recycled once wholly served (mfs_cache_release_served);
 *                  0 on error paths and for readers that may come back for
 *                  the bytes
 */
void mfs_rfile_release_segs(mfs_reader *r, mfs_read_seg *segs, size_t n_segs, int kept);

/**
 * Say what is wrong with extent @p i of @p f after a read of it failed:
 * "chunk K" and, for a chunk that decodes against others, each of them with
 * its role and whether it is missing, damaged or sound ("chunk K (decodes
 * against base chunk B, which fails its check)").  Looks and decodes in the
 * file's view; for logs, on error paths only.
 * @param[out] buf  NUL-terminated text, truncated to @p cap
 */
void mfs_rfile_explain(mfs_rfile *f, size_t i, char *buf, size_t cap);

/* One extent of a mfs_rfile_decode_batch(). */
typedef struct mfs_rfile_batch_item {
	size_t ext; /* the extent of the file */
	void *dst;  /* its f->extents[ext].len bytes go here */
	int status; /* in: MFS_E_UNSUPPORTED; out: 0 when decoded and verified
		       here, else still MFS_E_UNSUPPORTED (decode it on the CPU:
		       mfs_rfile_decode_extent) */
} mfs_rfile_batch_item;

/**
 * Decode the extents of @p items that @p g takes (rans chunks without
 * references; nothing when @p g is NULL or off) on its device, from the
 * file's view, as batches: into host destinations, or with @p device_dst
 * into device memory (mfs_gpu_backend_decode_device).  Each one decoded is
 * verified by its key.  The others are left for the CPU.
 * @return 0, or MFS_E_INVAL (an extent out of range, a spilled copy)
 */
int mfs_rfile_decode_batch(mfs_rfile *f, struct mfs_gpu_backend *g,
			   mfs_rfile_batch_item *items, size_t n, int device_dst);

/**
 * Decode one chunk (resolving its reference chunk, if any) into @p dst of
 * exactly @p raw_len bytes, verified.  Used by the reader and by the cache's
 * fill function.
 */
int mfs_reader_decode_chunk(mfs_reader *r, const mfs_chunk_key *key, void *dst,
			    size_t raw_len, mfs_codec_ws *ws);

#endif
