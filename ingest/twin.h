/*
 * twin.h - a high-precision model (BF16/F16) and its quantized twin (int8 or
 * FP8 E4M3 codes plus scales) held as one copy: the twin is stored as it
 * is, and each high-precision tensor with a twin becomes quant-residual
 * chunks (codec/quant.h) that decode against the twin's codes (role QUANT)
 * and scales (role SCALE) of the same elements.
 *
 * Pairing (mfs_twin_pair) works on what the store holds, so either model may
 * be ingested first: after both are in, the high-precision model's chunks
 * are re-encoded in place (mfs_chunk_replace: same key, same bytes served),
 * each one decoded again and compared before it is written.
 *
 * A tensor X of the high-precision model pairs with X of the twin when:
 *   - X is BF16/F16 there and I8/F8_E4M3 here, with the same shape;
 *   - the twin holds its scales as X_scale or X_scale_inv (so X.weight has
 *     X.weight_scale, as compressed-tensors writes it, or
 *     X.weight_scale_inv, as DeepSeek-style FP8 checkpoints do), F32, BF16 or
 *     F16, of a shape that names a scheme (mfs_quant_scheme_from_shapes:
 *     per tensor, per channel, per group, per block);
 *   - every scale is finite and above zero;
 *   - quantizing the first chunk of X with those scales gives the stored
 *     codes for at least 99% of its elements (a checkpoint's tool may divide
 *     where this multiplies by a reciprocal).
 * A tensor that fails one of these is left as it is stored (never a wrong
 * byte, only less saving) and a note names it and says why.  A chunk of X
 * that other chunks decode against (a base of fine-tunes), that is itself a
 * delta, or that the residual would not shrink by at least 1%, is also left.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_TWIN_H
#define MFS_TWIN_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "store.h"

/** 1 when @p dt is a dtype a high-precision model's tensor pairs from. */
int mfs_twin_is_hp_dtype(mfs_dtype dt);

/** 1 when @p dt is a quantized twin's code dtype (I8, F8_E4M3). */
int mfs_twin_is_q_dtype(mfs_dtype dt);

/**
 * How many of a model's tensors (@p want: its headers) pair with a tensor
 * of @p other by name and shape, in either direction (one high-precision,
 * the other quantized); the twin's scales are not looked at here.
 * @param[out] want_is_q  optional: 1 when @p want is the quantized side of
 *                        most of those pairs
 */
size_t mfs_twin_match_count(const mfs_base *other, const mfs_base_want *want, size_t n_want,
			    int *want_is_q);

/**
 * The repo of the store that is the other half of @p repo (whose tensors
 * are @p want), by names and shapes: the one with the most pairs, at least
 * one.  Reads every repo's tensor list (a store of many repos pays for it).
 * @param[out] other      the repo id, "" when none
 * @param[out] repo_is_q  1 when @p repo is the quantized side
 * @return 0 or a negative code (a store error, -ENOMEM)
 */
int mfs_twin_propose(mfs_txn *t, const char *repo, const mfs_base_want *want, size_t n_want,
		     char other[MFS_REPO_ID_MAX + 1], int *repo_is_q);

/** What a pairing did. */
typedef struct mfs_twin_stats {
	uint64_t tensors;        /* high-precision tensors now (wholly or partly) residuals */
	uint64_t tensors_left;   /* tensors with a twin left as stored (see the notes) */
	uint64_t chunks;         /* chunks re-encoded as residuals */
	uint64_t chunks_left;    /* chunks of paired tensors left as they were */
	uint64_t before;         /* payload bytes of the re-encoded chunks before */
	uint64_t after;          /* ... and after */
} mfs_twin_stats;

/** Receives one line for the user (no newline). */
typedef void (*mfs_twin_note_fn)(void *ud, int warning, const char *line);

/**
 * Re-encode the tensors of @p hp (main ref, else its newest commit) that
 * pair with tensors of @p q as quant-residuals against them.  One write
 * transaction per tensor: a failure leaves every tensor either as it was or
 * wholly paired.  Safe to run again (paired chunks are skipped).
 * @param[in] note  optional
 * @return 0 (stats filled; pairs may be 0), MFS_E_NOTFOUND (a repo is not
 *         stored), or a store error / -ENOMEM, with a message in @p err
 */
int mfs_twin_pair(mfs_store *s, const char *hp, const char *q, mfs_twin_note_fn note,
		  void *note_ud, mfs_twin_stats *stats, mfs_errmsg *err);

#endif
