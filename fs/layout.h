/*
 * layout.h - the Hugging Face hub cache tree, built from a store.
 *
 * No FUSE here: the mount (fs/ll.c) translates kernel requests into these
 * calls, and the unit tests walk the tree without mounting.  The tree is
 *
 *   /models--<org>--<name>/                 (repo "models/org/name")
 *       refs/<ref>                          file: the commit hash, 40 bytes, no newline
 *       snapshots/<commit>/<path>           symlink -> ../../blobs/<etag> (one more
 *                                           "../" per directory level of <path>)
 *       blobs/<etag>                        the file's bytes (read with fs/reader.h)
 *       .no_exist/<commit>/<path>           empty file (only where the store has them)
 *
 * which is exactly what huggingface_hub writes, so HF_HUB_CACHE pointed at
 * a mount (with HF_HUB_OFFLINE=1) reads it unchanged.
 *
 * Inode numbers are a 64-bit hash (XXH3) of the node's path from the root, so
 * a path keeps its number across refreshes and remounts, and a number never
 * names two paths while mounted (a collision, if one ever happens, is
 * resolved by re-hashing with a seed).  The root is 1.
 *
 * Refresh: each version of the tree is an immutable snapshot.  Lookups and
 * directory opens check the store's generation (at most every refresh_ms, or
 * every 50 ms for the root directory) and build a new snapshot when it moved;
 * requests in flight finish on the version they started with.  Removed repos
 * disappear from the next version; files already open keep reading through
 * their own mfs_rfile.
 *
 * Damaged repos: a repo is laid out only when every record of it passes the
 * record checker (index/check.h: mfs_check_repos_foreach) and every path and
 * name read from the index is one that stays inside its folder; otherwise the
 * whole repo is left out (no half-built directory) and the tree keeps one line
 * saying why, which mfs_layout_set_left_out_fn hands to the caller (the
 * mount logs it).  The other repos are served as usual.
 *
 * Threads: every call is thread-safe.
 *
 * Module convention: int return, 0 or a negative code (err.h; -ENOTDIR,
 * -EISDIR, -EINVAL for the wrong kind of node).
 */
#ifndef MFS_LAYOUT_H
#define MFS_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define MFS_LAYOUT_ROOT_INO 1

typedef struct mfs_layout mfs_layout;
typedef struct mfs_layout_dir mfs_layout_dir;

/* What stat() reports for a node. */
typedef struct mfs_layout_attr {
	uint64_t ino;
	uint32_t
	    mode; /* S_IFDIR | 0555, S_IFREG | 0444 (0555 executable), S_IFLNK | 0777 */
	uint32_t nlink; /* dirs: 2 + subdirectories; others 1 */
	uint64_t size;	/* files: bytes; links: target length; dirs: 4096 */
	uint64_t disk_bytes; /* what the node takes on disk (st_blocks, what du counts):
				blobs: the stored bytes of their blob record (the
				payloads of their chunks, each chunk counted in
				every file that uses it, as a reflinked copy counts
				on btrfs); every other node: its size */
	uint64_t mtime; /* unix seconds: the ingest time of the commit */
	int immutable;	/* 1 when the content can never change (blobs, links,
			   snapshot dirs): the kernel may cache it for long */
} mfs_layout_attr;

/* How to read a regular file. */
typedef struct mfs_layout_file {
	int is_blob;			/* 1: a blob (read via fs/reader.h) */
	int is_config;			/* blob: a snapshot names it config.json
					   (mfs_layout_model_files) */
	char repo[MFS_REPO_ID_MAX + 1]; /* blob: the repo id ("models/org/name") */
	char etag[MFS_ETAG_MAX + 1];	/* blob: its etag */
	uint64_t size;
	char data[MFS_COMMIT_LEN + 1]; /* not a blob: the whole content (refs) */
	size_t data_len;
} mfs_layout_file;

/**
 * Build the tree of @p store.
 * @param[in]  store       borrowed; must outlive the layout
 * @param[in]  refresh_ms  how often lookups may check the store generation
 * @param[out] out         free with mfs_layout_free()
 * @param[out] err         optional message
 * @return 0, -ENOMEM, or a store error
 */
int mfs_layout_create(mfs_store *store, unsigned refresh_ms, mfs_layout **out,
		      mfs_errmsg *err);

/**
 * Told about a repo the tree leaves out.
 * @param[in] repo  the repo id (or the repos key), quoted: printable
 * @param[in] line  "models/x/y left out: its files record for config.json of
 *                  commit ... names blob ..., which is not stored (run ...)"
 * Both are valid during the call only.
 */
typedef void (*mfs_layout_left_out_fn)(void *ud, const char *repo, const char *line);

/**
 * Have @p fn called once for each repo the tree in use leaves out (at once,
 * from this thread), then for each repo a later version leaves out that the
 * version before it did not leave out for the same reason (from the thread
 * that builds it, with the layout's build lock held: @p fn must not call
 * back into the layout).  NULL stops the calls.
 */
void mfs_layout_set_left_out_fn(mfs_layout *l, mfs_layout_left_out_fn fn, void *ud);

/** Free a layout; NULL is a no-op.  No directory handle may be open. */
void mfs_layout_free(mfs_layout *l);

/**
 * Rebuild the tree if the store generation changed.
 * @param[in]  force    0: at most once per refresh_ms; 1: check now
 * @param[out] changed  optional: 1 when a new tree was built
 * @return 0 or a store error (the old tree stays in use)
 */
int mfs_layout_refresh(mfs_layout *l, int force, int *changed);

/** Store generation of the tree in use. */
uint64_t mfs_layout_generation(mfs_layout *l);

/**
 * Find @p name in directory @p parent.
 * @return 0, MFS_E_NOTFOUND, -ENOTDIR
 */
int mfs_layout_lookup(mfs_layout *l, uint64_t parent, const char *name,
		      mfs_layout_attr *out);

/** Attributes of @p ino. @return 0 or MFS_E_NOTFOUND */
int mfs_layout_getattr(mfs_layout *l, uint64_t ino, mfs_layout_attr *out);

/**
 * Target of symlink @p ino, NUL-terminated, into @p buf.
 * @return 0, MFS_E_NOTFOUND, -EINVAL (not a link), MFS_E_NOSPACE
 */
int mfs_layout_readlink(mfs_layout *l, uint64_t ino, char *buf, size_t cap);

/**
 * What regular file @p ino holds.
 * @return 0, MFS_E_NOTFOUND, -EISDIR, -EINVAL (a link)
 */
int mfs_layout_open(mfs_layout *l, uint64_t ino, mfs_layout_file *out);

/**
 * The model weights a loader that opened blob @p ino is about to read: when
 * some snapshot names @p ino `config.json` (the first file transformers and
 * diffusers read), the `*.safetensors` files of every directory where it
 * does, each once, in name order (model-00001-of-00003 first).  Any other
 * node has none.
 * @param[out] out  up to @p cap files (is_blob, repo, etag, size set)
 * @param[out] n    files filled
 * @return 0 or MFS_E_NOTFOUND
 */
int mfs_layout_model_files(mfs_layout *l, uint64_t ino, mfs_layout_file *out, size_t cap,
			   size_t *n);

/**
 * Open directory @p ino for listing: the handle sees one version of the
 * tree from open to close, so a listing is consistent across refreshes.
 * @param[out] out  close with mfs_layout_dir_close()
 * @return 0, MFS_E_NOTFOUND, -ENOTDIR, -ENOMEM
 */
int mfs_layout_opendir(mfs_layout *l, uint64_t ino, mfs_layout_dir **out);

/** Number of entries, "." and ".." included (they come first). */
size_t mfs_layout_dir_count(const mfs_layout_dir *d);

/**
 * Entry @p i of an open directory.
 * @param[out] name  owned by the handle: valid until mfs_layout_dir_close()
 * @return 0, or MFS_E_NOTFOUND when i >= count
 */
int mfs_layout_dir_entry(const mfs_layout_dir *d, size_t i, const char **name,
			 mfs_layout_attr *out);

/** Close a directory handle; NULL is a no-op. */
void mfs_layout_dir_close(mfs_layout *l, mfs_layout_dir *d);

/* Totals of the tree in use (statfs). */
typedef struct mfs_layout_totals {
	uint64_t nodes;
	uint64_t repos;
	uint64_t repos_left_out; /* repos whose records are damaged (not in the tree) */
	uint64_t blob_bytes;	 /* sum of blob sizes */
	uint64_t blob_stored;	 /* sum of their stored bytes (disk_bytes) */
	uint64_t blobs;		 /* blob files */
} mfs_layout_totals;

void mfs_layout_totals_get(mfs_layout *l, mfs_layout_totals *out);

/**
 * The directory name of repo id @p repo in the hub cache
 * ("models/org/name" -> "models--org--name").
 * @return 0 or MFS_E_NOSPACE
 */
int mfs_layout_repo_dirname(const char *repo, char *buf, size_t cap);

#endif
