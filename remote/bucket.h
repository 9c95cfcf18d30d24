/*
 * bucket.h - the layout of a modelfs store in an S3 bucket, and its pointer
 * object LATEST: what `modelfs push` writes and a remote mount reads
 * (docs/remote.md, "The bucket").
 *
 * Under s3://BUCKET/PREFIX:
 *   packs/<16 hex>.pack            a pack of the store, byte for byte: its
 *                                  first committed_end bytes at least (packs
 *                                  are append-only, so a longer object holds
 *                                  every range an older index names)
 *   index/<20 digits>-<16 hex>.mdb a compact copy of the store's LMDB index
 *                                  (its generation, then random: never
 *                                  overwritten)
 *   LATEST                         JSON naming the newest complete index;
 *                                  written last, so a reader that follows it
 *                                  finds the index and every pack it names
 *
 * LATEST (MFS_REMOTE_FORMAT 1):
 *   {"format": 1, "store_format": 2, "index": "index/...mdb",
 *    "index_size": N, "index_sha256": "<64 hex>", "generation": G,
 *    "time": UNIX_SECONDS, "packs": N_PACKS, "pack_bytes": BYTES}
 * A reader refuses a "format" above MFS_REMOTE_FORMAT (a newer modelfs
 * wrote it) and checks the index it downloads against index_size and
 * index_sha256.
 *
 * Module convention: int return, 0 or a negative code from err.h; on
 * failure the optional mfs_errmsg names s3://BUCKET/KEY.
 */
#ifndef MFS_REMOTE_BUCKET_H
#define MFS_REMOTE_BUCKET_H

#include <stdint.h>

#include "s3.h"

/* The format of LATEST this build writes and the newest it reads. */
#define MFS_REMOTE_FORMAT 1
/* LATEST is small; a bigger object is not ours. */
#define MFS_REMOTE_LATEST_MAX (64 * 1024)

/** What LATEST says. */
typedef struct mfs_remote_latest {
	unsigned format;	    /* LATEST's own format */
	unsigned store_format;	    /* the store format of the index (MFS_STORE_FORMAT) */
	char index[MFS_S3_KEY_MAX]; /* its key under the prefix: "index/....mdb" */
	uint64_t index_size;	    /* bytes */
	uint8_t index_sha256[32];
	uint64_t generation; /* the store generation the index holds */
	uint64_t time;	     /* unix seconds of the push */
	uint64_t packs;	     /* packs the index names */
	uint64_t pack_bytes; /* the sum of their committed ends */
} mfs_remote_latest;

/**
 * The full key of @p name ("LATEST", "index/...", "packs/...") under
 * @p url's prefix.
 * @param[out] out  cap bytes (MFS_S3_KEY_MAX is enough)
 * @return 0 or MFS_E_INVAL (too long)
 */
int mfs_remote_key(const mfs_s3_url *url, const char *name, char *out, size_t cap);

/** The full key of pack @p id under @p url's prefix. @return as mfs_remote_key */
int mfs_remote_pack_key(const mfs_s3_url *url, uint64_t id, char *out, size_t cap);

/**
 * The pack id of a listed key: 1 and *id when @p key is
 * "PREFIX/packs/<16 hex>.pack" of @p url, else 0.
 */
int mfs_remote_pack_key_parse(const mfs_s3_url *url, const char *key, uint64_t *id);

/**
 * The generation of a listed index key: 1 and *gen when @p key is
 * "PREFIX/index/<20 digits>-<16 hex>.mdb" of @p url, else 0.
 */
int mfs_remote_index_key_parse(const mfs_s3_url *url, const char *key, uint64_t *gen);

/**
 * Write @p l as LATEST's JSON.
 * @param[out] json  malloc'd, NUL-terminated; the caller frees it
 * @return 0 or -ENOMEM
 */
int mfs_remote_latest_encode(const mfs_remote_latest *l, char **json);

/**
 * Read LATEST's JSON (@p len bytes at @p buf; need not be NUL-terminated).
 * @param[in] where  names the object in messages ("s3://B/P/LATEST")
 * @return 0; MFS_E_VERSION (a format newer than MFS_REMOTE_FORMAT, or an
 *         index of a store format this build does not read: the message says
 *         to upgrade modelfs); MFS_E_CORRUPT (not a modelfs LATEST: the
 *         message names the field)
 */
int mfs_remote_latest_decode(const void *buf, size_t len, const char *where,
			     mfs_remote_latest *out, mfs_errmsg *e);

/**
 * Fetch and read LATEST of @p url (HEAD, then a GET of that many bytes; once
 * more if it changed in between).
 * @return 0; MFS_E_NOTFOUND (no LATEST: no modelfs store was pushed there);
 *         the codes of mfs_remote_latest_decode and of s3.h
 */
int mfs_remote_latest_get(mfs_s3 *s3, const mfs_s3_url *url, mfs_remote_latest *out,
			  mfs_errmsg *e);

#endif
