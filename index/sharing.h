/*
 * sharing.h - what a repo shares with the rest of the store: chunks other
 * repos' files use too (identical tensors: frozen layers, tied embeddings,
 * re-uploads), and chunks other stored chunks decode against (the repo is
 * a base that fine-tunes are stored as deltas of).  `modelfs ls` and
 * `modelfs info` report these; removing the repo frees neither.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_SHARING_H
#define MFS_SHARING_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The chunks some stored chunk decodes against, with how many do (sorted). */
typedef struct mfs_refd {
	mfs_chunk_key *keys; /* sorted, with repeats: one per reference */
	size_t n;
} mfs_refd;

/**
 * Scan every chunk record for its references (reads each record's header).
 * @param[out] out  free with mfs_refd_free()
 * @return 0, -ENOMEM, or a store error
 */
int mfs_refd_load(mfs_txn *t, mfs_refd *out);

void mfs_refd_free(mfs_refd *r);

/** How many stored chunks decode against @p key. */
uint64_t mfs_refd_count(const mfs_refd *r, const mfs_chunk_key *key);

typedef struct mfs_sharing {
	uint64_t chunks;        /* distinct chunks its files use */
	uint64_t stored;        /* their payload bytes */
	uint64_t shared_stored; /* of which other repos' files use too */
	uint64_t base_stored;   /* of which other stored chunks decode against */
	uint64_t deltas;        /* chunks of its files stored as deltas of others */
} mfs_sharing;

/**
 * The sharing figures of @p repo (all its blobs, every snapshot).
 * @param[in] refd  from mfs_refd_load() in the same transaction
 * @return 0, MFS_E_CORRUPT (a damaged record of the repo), -ENOMEM, or a
 *         store error
 */
int mfs_repo_sharing(mfs_txn *t, const char *repo, const mfs_refd *refd, mfs_sharing *out);

#endif
