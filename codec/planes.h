/*
 * planes.h - bit planes of float elements and the coding of one plane: the
 * units under bitplane-huff (bitplane.c) and xor-delta (xor_delta.c).
 * Internal to codec/; docs/codecs.md has the measurements behind the
 * layouts and modes.
 *
 * Layouts.  A layout rotates each element (little-endian, esize bytes) left
 * by rot bits, then cuts the rotated value, top bits first, into planes of
 * the given widths (summing to 8 * esize).  A plane of n symbols of width w
 * is held unpacked: uint8_t[n] when w <= 8, uint16_t[n] when w > 8
 * (mfs_planes_sym_bytes).  Split and merge take any layout; the layouts the
 * codecs use get loops that vectorize (merging is on every read path).
 *
 * Plane modes.  One plane is stored in one of these modes (stable: payloads
 * name them):
 *   RAW   (0): the n symbols bit-packed in exactly mfs_planes_raw_len(w, n)
 *              bytes: 8-bit symbols as bytes; 6-bit ones in blocks of 256
 *              symbols in 192 bytes (byte j holds symbol j in its low 6 bits,
 *              symbol 192+k is spread over the top 2 bits of bytes k, 64+k,
 *              128+k, low bits first), the symbols after the last whole block
 *              and other widths packed LSB-first;
 *   CONST (1): u16 LE symbol (below 2^w), all n symbols equal it;
 *   HUFF  (2): a huff.h block of n symbols (w <= 10);
 *   ZSTD  (3): one zstd frame of the unpacked symbols (bytes, or u16 LE
 *              when w > 8); the frame states its content size, which must
 *              be exactly mfs_planes_sym_bytes(w, n), and every symbol must
 *              be below 2^w;
 *   SPARSE(4): w <= 8 only: u32 k, the number of nonzero symbols; u8 mask
 *              mode, u32 mask len; u8 value mode, u32 value len (14 bytes);
 *              then the mask, a plane of ceil(n/8) 8-bit symbols whose bit j
 *              of byte i is set when symbol 8i+j is nonzero (exactly k bits
 *              set, none at or past n), and the values, a plane of the k
 *              nonzero symbols in order, of width w; each of the two in
 *              RAW, CONST or HUFF.  For planes that are mostly zero: a
 *              Huffman code spends at least one bit per symbol, the mask
 *              one bit per eight.
 * A codec says which modes its format allows; bitplane-huff allows the
 * first three, xor-delta all five.
 *
 * The encoder (mfs_plane_encode) takes the modes a codec allows and picks,
 * fastest decoder first, the first mode that nothing slower beats by more
 * than MFS_PLANE_MIN_GAIN of the raw plane (docs/codecs.md has the rule).
 *
 * Nothing here allocates except through the workspace slots named below;
 * decoders never read outside the plane's bytes nor write outside the
 * symbol buffer they are given.  Module convention: int return, 0 or a
 * negative code from err.h.
 */
#ifndef MFS_PLANES_H
#define MFS_PLANES_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "huff.h"

#define MFS_PLANES_MAX 8 /* most planes in a layout (F64: 8) */

/* A slower plane mode must save this fraction of the raw plane to be chosen. */
#define MFS_PLANE_MIN_GAIN 0.01

/* Plane modes: stable, stored in payloads. */
enum mfs_plane_mode {
	MFS_PLANE_RAW = 0,
	MFS_PLANE_CONST = 1,
	MFS_PLANE_HUFF = 2,
	MFS_PLANE_ZSTD = 3,
	MFS_PLANE_SPARSE = 4,
	MFS_PLANE__COUNT
};
#define MFS_PLANE_MODE_BIT(m) (1u << (m))
/* The modes bitplane-huff's format allows. */
#define MFS_PLANE_MODES_BASIC                                                            \
	(MFS_PLANE_MODE_BIT(MFS_PLANE_RAW) | MFS_PLANE_MODE_BIT(MFS_PLANE_CONST) |       \
	 MFS_PLANE_MODE_BIT(MFS_PLANE_HUFF))

/* How elements are cut into planes. */
typedef struct mfs_planes_layout {
	unsigned esize;			/* bytes per element: 1, 2, 4 or 8 */
	unsigned rot;			/* left rotation applied before cutting */
	unsigned nplanes;		/* 1..MFS_PLANES_MAX */
	unsigned width[MFS_PLANES_MAX]; /* top bits first, 1..10 each; sum 8 * esize */
} mfs_planes_layout;

/**
 * bitplane-huff's layout for a float dtype: rotate left 1 and cut into
 * BF16 10,6; F16 8,8; F32 10,6,8,8; F64 10,6,8 x 6; F8 (no rotation) 8.
 * @return a static layout, or NULL when @p dt is not a float type it codes
 */
const mfs_planes_layout *mfs_planes_layout_bitplane(mfs_dtype dt);

/** Bytes one plane of @p n unpacked symbols of width @p w takes (n or 2n). */
static inline size_t mfs_planes_sym_bytes(unsigned w, size_t n)
{
	return w > 8 ? 2 * n : n;
}

/** Bytes of a RAW plane: ceil(n * w / 8). */
static inline size_t mfs_planes_raw_len(unsigned w, size_t n)
{
	return (size_t)(((uint64_t)n * w + 7) / 8);
}

/**
 * Cut @p n elements into planes.
 * @param[in]  src     n * L->esize bytes, aligned to L->esize
 * @param[out] planes  L->nplanes buffers of mfs_planes_sym_bytes() each
 */
void mfs_planes_split(const mfs_planes_layout *L, const uint8_t *src, size_t n,
		      void *const *planes);

/**
 * Merge planes back into @p n elements at @p dst (any alignment).
 * @param[in] planes  L->nplanes symbol arrays as mfs_planes_split() writes
 *                    them; each symbol below 2^width (higher bits would leak
 *                    into the next plane's bits)
 */
void mfs_planes_merge(const mfs_planes_layout *L, const void *const *planes, size_t n,
		      uint8_t *dst);

/**
 * mfs_planes_merge(), then XOR with @p base: dst[i] = merged[i] ^ base[i]
 * for the n * esize bytes.  @p base and @p dst: any alignment, must not
 * overlap unless equal.
 */
void mfs_planes_merge_xor(const mfs_planes_layout *L, const void *const *planes, size_t n,
			  const uint8_t *base, uint8_t *dst);

/**
 * bitplane-huff's BF16 layout (10,6) with the 6-bit plane still packed as
 * RAW (saves unpacking it): merge @p s0 (10-bit symbols) and the packed
 * bytes @p b (mfs_planes_raw_len(6, n) of them) into @p dst (any alignment).
 */
void mfs_planes_merge_bf16_raw6(const uint16_t *s0, const uint8_t *b, size_t n,
				uint8_t *dst);

/** Pack @p n symbols of width @p w into a RAW plane (mfs_planes_raw_len() bytes). */
void mfs_planes_pack(const void *syms, unsigned w, size_t n, uint8_t *dst);

/** Unpack a RAW plane of @p n symbols of width @p w (reads mfs_planes_raw_len()). */
void mfs_planes_unpack(const uint8_t *src, unsigned w, size_t n, void *syms);

/* ---- coding one plane ---- */

/* Encoder scratch for one plane: histograms and a Huffman table (~28 KiB). */
typedef struct mfs_plane_enc_scratch {
	uint32_t freq[MFS_HUFF_MAX_SYMS];
	uint32_t sub[4][MFS_HUFF_MAX_SYMS];
	mfs_huff_table tab;
} mfs_plane_enc_scratch;

/**
 * Bytes of output room mfs_plane_encode() needs for a plane of @p n symbols
 * of width @p w (the RAW size: no mode is chosen that is larger).
 */
static inline size_t mfs_plane_bound(unsigned w, size_t n)
{
	return mfs_planes_raw_len(w, n) + 2;
}

/**
 * Encode one plane in the best of the modes in @p modes (a set of
 * MFS_PLANE_MODE_BIT(); RAW is always allowed).  The rule, fastest decoder
 * first: CONST when the plane holds one distinct symbol (and that is
 * smaller than RAW); else HUFF when its size bound is at most (1 -
 * MFS_PLANE_MIN_GAIN) of RAW, else RAW; then ZSTD, then SPARSE, each
 * replacing the choice so far only when smaller by more than
 * MFS_PLANE_MIN_GAIN of RAW.  With the basic modes only, the bytes are
 * bitplane-huff's of always.
 * @param[in]  syms       n unpacked symbols of width @p w (1..10), each below 2^w
 * @param[in]  zstd_level level of a ZSTD trial; 0: level 1 with a minimum
 *                        match of 7 (measured best on XOR planes)
 * @param[in]  scr        scratch, contents lost
 * @param[out] dst        the plane's bytes; room for mfs_plane_bound(w, n)
 * @param[out] mode, len  the mode chosen and the bytes written
 * @param[in]  ws         SPARSE and ZSTD trials use scratch slot B, ZSTD the
 *                        workspace's zstd context
 * @return 0, -ENOMEM, MFS_E_NOSPACE (dst_cap too small), or an error of the
 *         Huffman encoder
 */
int mfs_plane_encode(const void *syms, unsigned w, size_t n, unsigned modes,
		     int zstd_level, mfs_plane_enc_scratch *scr, uint8_t *dst,
		     size_t dst_cap, unsigned *mode, size_t *len, mfs_codec_ws *ws);

/* Bytes of one plane's descriptor: u8 width, u8 mode, u32 length. */
#define MFS_PLANE_DESC 6

/**
 * Encode the planes of a payload one after another with
 * mfs_plane_encode(), writing each plane's descriptor (MFS_PLANE_DESC bytes:
 * width, mode, little-endian length) into @p desc and its bytes from
 * @p *q on (up to @p end).  bitplane-huff and xor-delta lay out their
 * payloads this way.
 * @param[in]     L  the layout: its nplanes planes and their widths
 * @param[in,out] q  where the first plane goes; on return, past the last
 * @return as mfs_plane_encode()
 */
int mfs_planes_encode_all(const mfs_planes_layout *L, void *const *planes, size_t n,
			  unsigned modes, int zstd_level, mfs_plane_enc_scratch *scr,
			  uint8_t *desc, uint8_t **q, const uint8_t *end, mfs_codec_ws *ws);

/** 1 when a plane in @p mode of width @p w decodes into a symbol buffer
 *  (everything but RAW 8-bit planes, which are used in place). */
static inline int mfs_plane_needs_buffer(unsigned mode, unsigned w)
{
	return !(mode == MFS_PLANE_RAW && w == 8);
}

/**
 * Decode one plane after checking it: RAW length, CONST symbol below 2^w,
 * the Huffman block, the zstd frame's size and symbols, the SPARSE header,
 * sub-planes and mask.  A SPARSE plane uses scratch slot B.
 * @param[in]  data, len  the plane's bytes (exactly)
 * @param[out] out        mfs_planes_sym_bytes(w, n) bytes for the symbols,
 *                        unless !mfs_plane_needs_buffer(mode, w) (may be NULL)
 * @param[out] syms       where the symbols are: @p out, or @p data itself for
 *                        a RAW 8-bit plane
 * @return 0, MFS_E_CORRUPT (bad plane or unknown mode), -ENOMEM
 */
int mfs_plane_decode(unsigned mode, unsigned w, size_t n, const uint8_t *data, size_t len,
		     void *out, const void **syms, mfs_codec_ws *ws);

#endif
