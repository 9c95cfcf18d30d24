/*
 * units.h - sizes as people write them ("512M", "1.5G", "64KiB", "4096"),
 * parsed one way for every place that takes one: mount.conf and the mount's
 * flags (cache_bytes, prefetch_file), `ingest --chunk-size`.
 *
 * The form: digits, optionally '.' and more digits, then optionally a unit
 * K, M, G or T (any case; binary: K = 1024), an 'i' after the unit, and a
 * final 'B' (any case): 4096, 4096B, 64K, 64KiB, 64kb, 1.5G, 0.5T.  With a
 * unit a fraction is rounded down to whole bytes (1.0001K is 1024); without
 * one it must be zero (1.0 is 1 byte, 1.5 is not a size).  Nothing else: no
 * sign, space, exponent or hex, no 'i' without a unit, no "1." or ".5".
 *
 * Sizes are written for people by mfs_size_format ("91.3 MB": decimal
 * units, as ls -h --si and the hub show them).
 *
 * Module convention: int return, 0 or MFS_E_INVAL (err.h).
 */
#ifndef MFS_UNITS_H
#define MFS_UNITS_H

#include <stddef.h>
#include <stdint.h>

/**
 * Parse a size.
 * @param[in]  s    the text (NUL-terminated); NULL is MFS_E_INVAL
 * @param[out] out  bytes; written only on success
 * @return 0, or MFS_E_INVAL when @p s is not of the form above or the size
 *         is above UINT64_MAX bytes (more than 18 digits after the '.' too)
 */
int mfs_size_parse(const char *s, uint64_t *out);

/**
 * Write @p bytes for a person: "512 B", else one decimal and a decimal unit
 * ("91.3 MB", "4.3 GB"; kB .. PB).
 * @param[out] buf  @p cap bytes (24 hold every value); cut to fit, always
 *                  NUL-terminated when cap > 0
 * @return buf
 */
char *mfs_size_format(uint64_t bytes, char *buf, size_t cap);

#endif
