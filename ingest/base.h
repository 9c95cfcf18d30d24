/*
 * base.h - the base model of a fine-tune: which repo of the store it is,
 * and, for each tensor of the fine-tune, which stored chunk holds the same
 * elements of the base (what an xor-delta chunk decodes against).
 *
 * The base's tensors are read from its "main" ref (else its newest commit):
 * name, dtype, shape and the chunks its bytes were cut into.  A fine-tune
 * tensor has a base tensor when the name, dtype and shape are equal.
 *
 * Choosing a base (mfs_base_propose), in this order:
 *   1. the model card's base_model (README.md front matter), the config's
 *      _name_or_path, an adapter config's base_model_name_or_path, when the
 *      store holds that repo and some of its tensors match;
 *   2. else every repo of the store, scored by the bytes of the fine-tune's
 *      tensors it matches (at least half of them), the best few then by a
 *      sampled bit distance: the share of bits that differ between the first
 *      bytes of their largest matched tensors (a fine-tune of a base differs
 *      from it in a few low mantissa bits; an unrelated model of the same
 *      architecture in about half of them).
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_BASE_H
#define MFS_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* A tensor of the base: its chunks, with offsets relative to its first byte. */
typedef struct mfs_base_tensor {
	char *name;
	mfs_dtype dtype;
	uint32_t ndim;
	uint64_t shape[MFS_MAX_DIMS];
	uint64_t raw_len;
	size_t n_ext;
	mfs_extent *ext; /* off: from the tensor's first byte */
	/* its record (what mfs_tensor_update rewrites): the file's blob, where
	 * it lies in it, its codec and stored bytes as recorded */
	char etag[MFS_ETAG_MAX + 1];
	uint64_t data_off, first_extent, stored_len, alone_len;
	mfs_codec_id codec;
} mfs_base_tensor;

typedef struct mfs_base {
	char repo[MFS_REPO_ID_MAX + 1];
	char commit[MFS_COMMIT_LEN + 1];
	size_t n;
	mfs_base_tensor *t; /* sorted by name */
} mfs_base;

/**
 * Load the tensors of @p repo's main ref (else its newest commit).
 * @param[out] out  free with mfs_base_free(); n == 0 when it has no tensors
 * @return 0, MFS_E_NOTFOUND (no such repo, or no commit), MFS_E_CORRUPT (a
 *         damaged record of it), -ENOMEM
 */
int mfs_base_load(mfs_txn *t, const char *repo, mfs_base **out);

/** Free a loaded base; NULL is a no-op. */
void mfs_base_free(mfs_base *b);

/**
 * Call @p cb with the loaded tensors of every repo of the store but @p self
 * (repos with no commit or a damaged record are passed over; the base is
 * freed after the call).  @p cb returns as for mfs_repos_foreach.
 * @param[out] n_others  optional: how many other repos the store holds
 * @return 0, what @p cb returned to stop, or a negative code
 */
int mfs_base_foreach_other(mfs_txn *t, const char *self,
			   int (*cb)(void *ud, const mfs_base *b), void *ud, size_t *n_others);

/**
 * The base tensor matching a fine-tune tensor: same name, dtype and shape.
 * @return a tensor of @p b, or NULL
 */
const mfs_base_tensor *mfs_base_match(const mfs_base *b, const char *name, mfs_dtype dtype,
				      uint32_t ndim, const uint64_t *shape);

/**
 * The reference for the fine-tune chunk of @p len bytes at offset @p off of
 * its tensor: the base chunk that holds the same bytes of @p bt, when one
 * chunk holds all of them (the base was cut at the same or a larger chunk
 * size).
 * @return 0 with *out filled (role MFS_REF_BASE), or MFS_E_NOTFOUND
 */
int mfs_base_chunk_ref(const mfs_base_tensor *bt, uint64_t off, uint32_t len,
		       mfs_chunk_ref *out);

/**
 * Make @p ref usable at depth 1 and decode the bytes it names: when the base
 * chunk is itself a delta against another chunk (a base stored as a delta
 * of an earlier model), the reference moves to that chunk's own base at the
 * same place, so chains stay one deep.  The chunk is decoded and checked
 * into the workspace slot @p slot.
 * @param[out] bytes  the @p ref->len referenced bytes, in @p ws's slot
 * @return 0; MFS_E_NOTFOUND / MFS_E_CORRUPT (the base chunk is missing,
 *         damaged, or a delta this cannot follow: store the chunk alone);
 *         MFS_E_UNSUPPORTED (the base chunk decodes against other chunks
 *         in another way, as the residual of a quantized twin: store the
 *         chunk alone); -ENOMEM
 */
int mfs_base_ref_resolve(mfs_txn *t, mfs_chunk_ref *ref, mfs_codec_ws *ws, unsigned slot,
			 const uint8_t **bytes);

/* A tensor of the fine-tune, for mfs_base_propose. */
typedef struct mfs_base_want {
	const char *name;
	mfs_dtype dtype;
	uint32_t ndim;
	const uint64_t *shape;
	uint64_t raw_len;
	int file;       /* which file (passed back to read) */
	uint64_t off;   /* its first byte in that file */
} mfs_base_want;

/**
 * Read @p len bytes of file @p file of the fine-tune at @p off into @p buf.
 * @return 0 or a negative code
 */
typedef int (*mfs_base_read_fn)(void *ud, int file, uint64_t off, void *buf, size_t len);

/* How a base was chosen. */
typedef enum mfs_base_how {
	MFS_BASE_NONE = 0,    /* no repo of the store matches: stored alone */
	MFS_BASE_CARD,        /* named by the model card (base_model) */
	MFS_BASE_CONFIG,      /* named by config.json's _name_or_path */
	MFS_BASE_ADAPTER,     /* named by adapter_config.json */
	MFS_BASE_MATCH,       /* found by tensor names, shapes and bit distance */
} mfs_base_how;

/** "model card base_model", ... Static string. */
const char *mfs_base_how_name(mfs_base_how how);

/* What the fine-tune's own files say its base is (HF names "org/name"). */
typedef struct mfs_base_hints {
	const char *card;    /* README.md front matter base_model, or NULL */
	const char *config;  /* config.json _name_or_path, or NULL */
	const char *adapter; /* adapter_config.json base_model_name_or_path, or NULL */
} mfs_base_hints;

/**
 * Parse the hints out of the files' text (any may be NULL).  The strings
 * are copied into @p buf (@p cap bytes) and @p out points into it.
 */
void mfs_base_hints_parse(const char *readme, const char *config_json,
			  const char *adapter_json, mfs_base_hints *out, char *buf, size_t cap);

/**
 * Propose a base for the fine-tune @p self (a repo id, left out of the
 * candidates) whose tensors are @p want.
 * @param[out] repo   the chosen repo id, "" with MFS_BASE_NONE
 * @param[out] how    how it was chosen
 * @param[out] note   optional: a line saying what was compared (for the user)
 * @return 0 or a negative code (a store error, -ENOMEM)
 */
int mfs_base_propose(mfs_txn *t, const char *self, const mfs_base_hints *hints,
		     const mfs_base_want *want, size_t n_want, mfs_base_read_fn read,
		     void *read_ud, char repo[MFS_REPO_ID_MAX + 1], mfs_base_how *how,
		     char *note, size_t note_cap);

/**
 * Bytes of @p want that @p b matches (same name, dtype, shape).
 * @param[out] n_match  optional: how many tensors match
 */
uint64_t mfs_base_matched_bytes(const mfs_base *b, const mfs_base_want *want, size_t n_want,
				size_t *n_match);

#endif
