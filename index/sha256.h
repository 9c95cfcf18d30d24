/*
 * sha256.h - SHA-256 (FIPS 180-4), streaming; uses the x86 SHA extensions
 * when the CPU has them (checked at run time), a portable C path otherwise.
 * Used for blob etags (the hub names LFS blobs by sha256) and verification.
 */
#ifndef MFS_SHA256_H
#define MFS_SHA256_H

#include <stddef.h>
#include <stdint.h>

/*
 * Streaming state: init, update any number of times with any lengths, final.
 * Named _ctx because mfs_sha256 is the one-shot function (C has one name
 * space for both).  Plain data: copy it to fork a hash.
 */
typedef struct mfs_sha256_ctx {
	uint32_t h[8];
	uint64_t total;
	uint8_t buf[64];
	size_t buf_len;
} mfs_sha256_ctx;

void mfs_sha256_init(mfs_sha256_ctx *c);
void mfs_sha256_update(mfs_sha256_ctx *c, const void *data, size_t len);
/** Write the digest and wipe @p c (init it again to reuse it). */
void mfs_sha256_final(mfs_sha256_ctx *c, uint8_t out[32]);
/** One-shot. */
void mfs_sha256(const void *data, size_t len, uint8_t out[32]);
/** Lower-case hex of a 32-byte digest into @p hex (65 bytes). */
void mfs_sha256_hex(const uint8_t d[32], char hex[65]);

/** Lower-case hex of @p n bytes into @p out (2 * n + 1 bytes, NUL-terminated). */
void mfs_hex(const uint8_t *d, size_t n, char *out);

/*
 * SHA-1, only for git blob ids ("blob <len>\0" + content), which the hub
 * uses as the etag of small non-LFS files.
 */
typedef struct mfs_sha1_ctx {
	uint32_t h[5];
	uint64_t total;
	uint8_t buf[64];
	size_t buf_len;
} mfs_sha1_ctx;

void mfs_sha1_init(mfs_sha1_ctx *c);
void mfs_sha1_update(mfs_sha1_ctx *c, const void *data, size_t len);
void mfs_sha1_final(mfs_sha1_ctx *c, uint8_t out[20]);

#endif
