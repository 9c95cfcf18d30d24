/*
 * planes.h - bit planes of float elements, the coding of one plane and the
 * payload of planes: the units under bitplane-huff (bitplane.c), xor-delta
 * (xor_delta.c) and rans (rans.c, which codes its own rANS planes).
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
#include <string.h>

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

/** Write plane @p p's descriptor into the descriptor table at @p desc. */
static inline void mfs_planes_desc_put(uint8_t *desc, unsigned p, unsigned w,
				       unsigned mode, size_t len)
{
	uint8_t *d = desc + MFS_PLANE_DESC * p;
	d[0] = (uint8_t)w;
	d[1] = (uint8_t)mode;
	d[2] = (uint8_t)len;
	d[3] = (uint8_t)(len >> 8);
	d[4] = (uint8_t)(len >> 16);
	d[5] = (uint8_t)(len >> 24);
}

/* ---- payloads of planes ----
 *
 * bitplane-huff, xor-delta and rans lay out a payload the same way: four
 * bytes of the codec's own (version, dtype, ...), u32 n (elements), the
 * nplanes descriptors (MFS_PLANE_DESC bytes each), then each plane's bytes
 * in plane order.  The calls below are the steps they share; what the four
 * bytes mean, which modes are allowed and how a plane is coded stay with
 * each codec.
 */
#define MFS_PLANES_HEADER 8

/** Write a payload's first MFS_PLANES_HEADER bytes: @p b (4 bytes), then n. */
static inline void mfs_planes_header_put(uint8_t *out, const uint8_t b[4], size_t n)
{
	memcpy(out, b, 4);
	out[4] = (uint8_t)n;
	out[5] = (uint8_t)(n >> 8);
	out[6] = (uint8_t)(n >> 16);
	out[7] = (uint8_t)(n >> 24);
}

/**
 * Lay out an encoder's scratch slot A: @p head bytes for the codec (its
 * plane coder's scratch), the symbol planes of @p n elements of layout
 * @p L, then @p stage bytes; each part starts 64-byte aligned.
 * @param[out] head_p   the head (slot A's start)
 * @param[out] planes   L->nplanes plane buffers of mfs_planes_sym_bytes() each
 * @param[out] stage_p  the stage (may be NULL when @p stage is 0)
 * Everything is owned by @p ws, valid until slot A's next use.
 * @return 0 or -ENOMEM
 */
int mfs_planes_enc_scratch(const mfs_planes_layout *L, size_t n, size_t head,
			   size_t stage, mfs_codec_ws *ws, void **head_p, void **planes,
			   uint8_t **stage_p);

/**
 * mfs_planes_enc_scratch() and mfs_planes_split() of @p src (n elements),
 * through an aligned copy in the stage when @p src is not aligned to
 * L->esize (the split loads whole elements).
 * @return 0 or -ENOMEM
 */
int mfs_planes_split_ws(const mfs_planes_layout *L, const void *src, size_t n,
			size_t head, mfs_codec_ws *ws, void **head_p, void **planes);

/**
 * Write a payload: the header (@p head, then n), the descriptors and the
 * planes one after another, each coded with mfs_plane_encode() in the best
 * of @p modes.  bitplane-huff and xor-delta write their payloads so.
 * @param[in]  planes   L->nplanes symbol planes of @p n symbols
 * @param[out] dst      room for the header, the descriptors and
 *                      mfs_plane_bound() for each plane (@p dst_cap)
 * @param[out] dst_len  the payload's bytes
 * @return as mfs_plane_encode()
 */
int mfs_planes_payload_write(const mfs_planes_layout *L, void *const *planes, size_t n,
			     unsigned modes, int zstd_level, mfs_plane_enc_scratch *scr,
			     const uint8_t head[4], uint8_t *dst, size_t dst_cap,
			     size_t *dst_len, mfs_codec_ws *ws);

/* A payload's planes, as mfs_planes_payload_parse() finds them. */
typedef struct mfs_planes_payload {
	size_t n;			     /* elements */
	unsigned mode[MFS_PLANES_MAX];	     /* each plane's mode */
	const uint8_t *data[MFS_PLANES_MAX]; /* its bytes, inside the payload */
	size_t len[MFS_PLANES_MAX];	     /* how many */
	void *buf[MFS_PLANES_MAX];	     /* its symbol buffer (slot A), or NULL
						when !mfs_plane_needs_buffer() */
} mfs_planes_payload;

/**
 * Check a payload's layout after its four codec bytes: @p dst_len a whole
 * number of L->esize elements, at most MFS_CHUNK_MAX; the stored n equal
 * to it; each descriptor's width L's and its mode one of @p modes (a set of
 * MFS_PLANE_MODE_BIT(), codec-specific modes below 32 included); the plane
 * lengths adding up to the payload exactly.  Then give each plane that
 * needs one a symbol buffer (mfs_planes_sym_bytes() rounded up, at least
 * 64 bytes) in slot A.
 * @param[out] pp  the planes; pointers into @p src and @p ws, valid while
 *                 both are (slot A until its next use)
 * @return 0, MFS_E_CORRUPT, -ENOMEM
 */
int mfs_planes_payload_parse(const mfs_planes_layout *L, const uint8_t *src,
			     size_t src_len, size_t dst_len, unsigned modes,
			     mfs_codec_ws *ws, mfs_planes_payload *pp);

/**
 * Decode each plane of @p pp that @p planes does not hold yet (NULL) with
 * mfs_plane_decode(), then merge all into @p dst, pp->n * L->esize bytes,
 * XORed with @p base unless NULL (mfs_planes_merge_xor()'s rules).
 * bitplane-huff's BF16 layout (10,6) with a RAW low plane and no base
 * merges from the packed bytes (mfs_planes_merge_bf16_raw6()).
 * @param[in,out] planes  L->nplanes symbol pointers: the codec's own planes
 *                        decoded already, NULL for the rest
 * @return 0, or an error of mfs_plane_decode()
 */
int mfs_planes_payload_merge(const mfs_planes_layout *L, const mfs_planes_payload *pp,
			     const void **planes, const uint8_t *base, uint8_t *dst,
			     mfs_codec_ws *ws);

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
