/*
 * damage.h - what a check of the store found damaged, in the form the repair
 * takes it: the chunks whose payload does not decode to their key, and the
 * files (blobs) that do not rebuild to their sha256.  fs/verify.h fills
 * these lists; ingest/repair.h reads them.  Types only: no function here.
 *
 * Module convention: plain structs; whoever fills a list owns it (the
 * verify result: mfs_verify_result_free).
 */
#ifndef MFS_DAMAGE_H
#define MFS_DAMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* A chunk that does not decode to the bytes its key names. */
typedef struct mfs_damaged_chunk {
	mfs_chunk_key key;
	int rc; /* why: the decode's error (MFS_E_CORRUPT, MFS_E_NOTFOUND, ...) */
} mfs_damaged_chunk;

/* A blob whose rebuild failed: what a repair needs to find a good copy. */
typedef struct mfs_damaged_blob {
	char repo[MFS_REPO_ID_MAX + 1];
	char etag[MFS_ETAG_MAX + 1];
	uint64_t size;
	uint8_t sha256[32];
	size_t n_extents;
	mfs_extent *extents; /* owned by whoever filled the list */
} mfs_damaged_blob;

#endif
