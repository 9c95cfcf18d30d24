/*
 * sha256_internal.h - the block functions behind sha256.h, for tests and
 * benchmarks that compare the portable and the SHA-NI path.  Not part of the
 * index API: callers outside index/ and tests/ use sha256.h.
 */
#ifndef MFS_SHA256_INTERNAL_H
#define MFS_SHA256_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/** Compress @p nblocks 64-byte blocks into the state @p h (FIPS 180-4 order). */
void mfs_sha256_blocks_portable(uint32_t h[8], const uint8_t *p, size_t nblocks);

/**
 * The same with the x86 SHA extensions.  Call only when
 * mfs_sha256_have_shani() returns 1 (it is an illegal instruction otherwise);
 * on builds for other CPUs it falls back to the portable path.
 */
void mfs_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks);

/** 1 when this CPU has SHA-NI, SSSE3 and SSE4.1, else 0. */
int mfs_sha256_have_shani(void);

#endif
