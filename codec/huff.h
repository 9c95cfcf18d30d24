/*
 * huff.h - canonical Huffman coder for symbol planes (alphabets up to 1024).
 *
 * The entropy stage of the bitplane-huff codec: a plane of n symbols, each
 * below 2^w (w <= 10), is coded with one per-block table of code lengths
 * limited to MFS_HUFF_MAX_BITS bits, so one table lookup of that many bits
 * decodes one symbol.  The block is cut into MFS_HUFF_STREAMS equal segments,
 * each its own bit stream, so the decoder runs the streams side by side
 * (instruction-level parallelism).
 *
 * Usage (encode): count symbol frequencies, mfs_huff_build() a table,
 * mfs_huff_block_size() to see whether it pays, mfs_huff_encode() to write.
 * Usage (decode): mfs_huff_decode() with the block and the symbol count.
 *
 * Block layout (all integers little-endian):
 *   u16 lo, u16 cnt          code lengths are given for symbols lo..lo+cnt-1
 *   cnt nibbles              length of symbol lo+i in nibble i (low nibble
 *                            first); 0 = symbol absent; padded to a byte
 *   u32 len[3]               byte length of streams 0..2; stream 3 takes the
 *                            rest of the block
 *   streams                  stream k codes symbols [k*seg, min(n,(k+1)*seg)),
 *                            seg = ceil(n / 4); bits are packed LSB-first, a
 *                            code's first bit in the lowest free bit; the last
 *                            byte is zero-padded
 * The code is canonical (shorter codes first, then by symbol value) and must
 * be complete: the Kraft sum of the lengths is exactly 1, and at least two
 * symbols are present.  A plane with one distinct symbol is not a Huffman
 * block (the caller stores the symbol).
 *
 * Decoders take (ptr, len), validate everything and return MFS_E_CORRUPT on
 * any inconsistency; they never read or write outside the given buffers.
 * Nothing here allocates.  Module convention: int return, 0 or a negative
 * code from err.h.
 */
#ifndef MFS_HUFF_H
#define MFS_HUFF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MFS_HUFF_MAX_BITS	 12 /* longest code; one lookup of this many bits */
#define MFS_HUFF_MAX_SYMBOL_BITS 10
#define MFS_HUFF_MAX_SYMS	 (1u << MFS_HUFF_MAX_SYMBOL_BITS)
#define MFS_HUFF_STREAMS	 4

/* An encoding table: code lengths and LSB-first (bit-reversed) codes. */
typedef struct mfs_huff_table {
	unsigned nsym;			  /* alphabet size, <= MFS_HUFF_MAX_SYMS */
	unsigned lo, hi;		  /* present symbols lie in [lo, hi] */
	unsigned max_len;		  /* longest code length used */
	uint8_t len[MFS_HUFF_MAX_SYMS];	  /* 0 = symbol absent */
	uint16_t code[MFS_HUFF_MAX_SYMS]; /* bit-reversed canonical code */
} mfs_huff_table;

/**
 * Build a length-limited canonical Huffman table from symbol frequencies.
 * @param[in]  freq  nsym counts
 * @param[in]  nsym  alphabet size, 2..MFS_HUFF_MAX_SYMS
 * @param[out] t     the table
 * @return 0; MFS_E_INVAL when nsym is out of range or fewer than two
 *         symbols have a nonzero count (store such a plane as a constant)
 */
int mfs_huff_build(const uint32_t *freq, unsigned nsym, mfs_huff_table *t);

/**
 * Exact size in bytes of the block mfs_huff_encode() writes for these
 * symbols, without writing it.
 * @param[in] t     table from mfs_huff_build()
 * @param[in] syms  n symbols, uint8_t when @p wide is 0, uint16_t when 1
 * @return block size in bytes
 */
size_t mfs_huff_block_size(const mfs_huff_table *t, const void *syms, int wide, size_t n);

/**
 * Upper bound of a block's size that needs no symbol pass: header plus
 * total bits from @p freq (a fast estimate for "does Huffman pay").
 * @return the bound in bytes
 */
size_t mfs_huff_block_estimate(const mfs_huff_table *t, const uint32_t *freq);

/**
 * Encode n symbols as one block.
 * @param[in]  t        table built from these symbols' frequencies (every
 *                      symbol must have a nonzero length)
 * @param[in]  syms     uint8_t[n] when @p wide is 0, uint16_t[n] when 1
 * @param[out] dst      block; needs mfs_huff_block_size() + 8 bytes of room
 * @param[out] dst_len  bytes written
 * @return 0, MFS_E_NOSPACE when dst_cap is too small, MFS_E_INVAL for a
 *         symbol that has no code
 */
int mfs_huff_encode(const mfs_huff_table *t, const void *syms, int wide, size_t n,
		    uint8_t *dst, size_t dst_cap, size_t *dst_len);

/**
 * Decode a block of exactly n symbols.
 * @param[in]  src   the block, exactly src_len bytes (no trailing data)
 * @param[in]  nsym  alphabet size the symbols must lie below (<= 1024)
 * @param[out] dst   uint8_t[n] when @p wide is 0 (then nsym <= 256),
 *                   uint16_t[n] when 1
 * @return 0 or MFS_E_CORRUPT (bad table, stream sizes, or bits that do not
 *         decode to exactly n symbols filling each stream)
 */
int mfs_huff_decode(const uint8_t *src, size_t src_len, unsigned nsym, void *dst,
		    int wide, size_t n);

#endif
