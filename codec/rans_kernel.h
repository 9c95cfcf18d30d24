/*
 * rans_kernel.h - the static-model rANS entropy kernel shared by the CPU
 * codec (codec/rans.c) and the CUDA decoder (gpu/rans_cuda.cu).  Internal:
 * the payload format is documented in codec/rans.h; this file holds the
 * small pieces both decoders must agree on, as `static inline` functions
 * that compile as C11 and, under nvcc, as __host__ __device__ code.
 *
 * The coder.  A state x is a 32-bit integer kept in [MFS_RANS_L, 2^32),
 * MFS_RANS_L = 2^16.  Symbol frequencies f[s] are normalised to sum to
 * M = 2^P (P = prob_bits, MFS_RANS_PROB_MIN..MFS_RANS_PROB_MAX), every
 * present symbol at least 1 and below M (so a plane has at least two
 * symbols); c[s] is the cumulative frequency.  Decoding one symbol:
 *
 *   slot = x mod M;  s = the symbol whose [c[s], c[s]+f[s]) holds slot;
 *   x = f[s] * (x >> P) + slot - c[s];
 *   if x < 2^16: x = x << 16 | the next 16-bit word of the stream
 *
 * With P <= 16 at most one word is read per symbol.  P is at most 11 so
 * that the lookup table maps a slot to one u32, f | (slot - c) << 11 |
 * s << 22 (f < 2^11, slot - c < f, s < 2^10): a symbol costs one load (one
 * gather on a CPU's vector unit, one shared-memory load on a GPU), a
 * multiply and an add.  The encoder runs the same steps backwards
 * (mfs_rans_enc_put).
 *
 * Lanes.  A plane of n symbols is coded by `lanes` independent states
 * (a multiple of MFS_RANS_GROUP, at most MFS_RANS_LANES_MAX): symbol j
 * belongs to lane j % lanes and is that lane's (j / lanes)-th symbol.  The
 * lanes of a group of MFS_RANS_GROUP (32 = one CUDA warp) share one word
 * stream: at each step the group's lanes decode in lane order and each lane
 * that needs a word takes the next one, so a warp finds its words with one
 * ballot and a population count, and a CPU decodes the group's 32 lanes
 * side by side with one read pointer.  Symbols of one step are adjacent in
 * the output (coalesced stores on a GPU).
 *
 * Bounds.  Every read takes (ptr, end): header parsing returns -1 on any
 * field that does not fit or does not add up; stream reads past a group's
 * stream set an error instead of reading; at the end every lane's state
 * must be exactly MFS_RANS_L (the encoder's initial state) and every
 * stream consumed exactly.  Nothing here writes outside the buffers whose
 * sizes the caller states.
 */
#ifndef MFS_RANS_KERNEL_H
#define MFS_RANS_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define MFS_RANS_FN static inline __host__ __device__
#else
#define MFS_RANS_FN static inline
#endif

#define MFS_RANS_L	      (1u << 16) /* lower bound of a normalised state */
#define MFS_RANS_GROUP	      32	 /* lanes sharing one word stream (a warp) */
#define MFS_RANS_GROUPS_MAX   32
#define MFS_RANS_LANES_MAX    (MFS_RANS_GROUP * MFS_RANS_GROUPS_MAX) /* 1024 */
#define MFS_RANS_PROB_MIN     8
#define MFS_RANS_PROB_MAX     11
#define MFS_RANS_SLOTS_MAX    (1u << MFS_RANS_PROB_MAX)
#define MFS_RANS_SYM_BITS_MAX 10 /* widest plane symbol (planes.h) */

/* Fixed part of a rANS plane: u8 P, u8 0, u16 groups, u16 lo, u16 cnt. */
#define MFS_RANS_PLANE_HDR 8

MFS_RANS_FN unsigned mfs_rans_get16(const uint8_t *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

MFS_RANS_FN uint32_t mfs_rans_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/*
 * One frequency of the table: one byte 0..127, or two bytes, the first
 * with its top bit set: value = (b0 & 127) | b1 << 7.
 * @return bytes read (1 or 2), 0 when the varint runs past @p end
 */
MFS_RANS_FN unsigned mfs_rans_varint_get(const uint8_t *p, const uint8_t *end,
					 unsigned *v)
{
	if (p >= end)
		return 0;
	if (p[0] < 128) {
		*v = p[0];
		return 1;
	}
	if (end - p < 2)
		return 0;
	*v = (unsigned)(p[0] & 127) | (unsigned)p[1] << 7;
	return 2;
}

/* A parsed rANS plane; pointers into the plane's bytes. */
typedef struct mfs_rans_plane {
	unsigned prob_bits;	/* P */
	unsigned groups, lanes; /* lanes = 32 * groups */
	unsigned lo, cnt;	/* frequencies are given for symbols lo..lo+cnt-1 */
	const uint8_t *freqs;	/* cnt varints */
	const uint8_t *lens;	/* groups x u32: byte length of each group's stream */
	const uint8_t *states;	/* lanes x u32: each lane's initial decoder state */
	const uint8_t *streams; /* the groups' streams, one after another */
	size_t streams_len;
} mfs_rans_plane;

/*
 * Parse and check the layout of a rANS plane of symbols of width @p w:
 * header fields in range, the varints, the stream lengths (even, adding up
 * to the rest of the plane exactly) and the initial states (>= MFS_RANS_L).
 * The frequencies themselves are checked by mfs_rans_freqs_read().
 * @return 0, or -1 for a malformed plane
 */
MFS_RANS_FN int mfs_rans_plane_parse(const uint8_t *p, size_t len, unsigned w,
				     mfs_rans_plane *out)
{
	const uint8_t *end = p + len;
	if (len < MFS_RANS_PLANE_HDR || w < 1 || w > MFS_RANS_SYM_BITS_MAX)
		return -1;
	out->prob_bits = p[0];
	out->groups = mfs_rans_get16(p + 2);
	out->lo = mfs_rans_get16(p + 4);
	out->cnt = mfs_rans_get16(p + 6);
	if (out->prob_bits < MFS_RANS_PROB_MIN || out->prob_bits > MFS_RANS_PROB_MAX ||
	    p[1] != 0 || out->groups < 1 || out->groups > MFS_RANS_GROUPS_MAX ||
	    out->cnt < 2 || out->lo + out->cnt > (1u << w))
		return -1;
	out->lanes = out->groups * MFS_RANS_GROUP;
	const uint8_t *q = p + MFS_RANS_PLANE_HDR;
	out->freqs = q;
	for (unsigned i = 0; i < out->cnt; i++) {
		unsigned v, k = mfs_rans_varint_get(q, end, &v);
		if (!k)
			return -1;
		q += k;
	}
	size_t fixed = (size_t)4 * out->groups + (size_t)4 * out->lanes;
	if ((size_t)(end - q) < fixed)
		return -1;
	out->lens = q;
	out->states = q + 4 * out->groups;
	out->streams = q + fixed;
	out->streams_len = (size_t)(end - out->streams);
	size_t sum = 0;
	for (unsigned g = 0; g < out->groups; g++) {
		uint32_t l = mfs_rans_get32(out->lens + 4 * g);
		if (l & 1 || l > out->streams_len - sum)
			return -1;
		sum += l;
	}
	if (sum != out->streams_len)
		return -1;
	for (unsigned k = 0; k < out->lanes; k++)
		if (mfs_rans_get32(out->states + 4 * k) < MFS_RANS_L)
			return -1;
	return 0;
}

/*
 * Read the plane's frequencies into @p freq (cnt entries) and check them:
 * each below M = 2^P, summing to M exactly.  (At least two are then
 * nonzero.)
 * @return 0, or -1 when they do not form a table
 */
MFS_RANS_FN int mfs_rans_freqs_read(const mfs_rans_plane *pl, const uint8_t *end,
				    uint16_t *freq)
{
	const uint8_t *q = pl->freqs;
	uint32_t m = 1u << pl->prob_bits, sum = 0;
	for (unsigned i = 0; i < pl->cnt; i++) {
		unsigned v, k = mfs_rans_varint_get(q, end, &v);
		if (!k || v >= m)
			return -1;
		q += k;
		freq[i] = (uint16_t)v;
		sum += v;
	}
	return sum == m ? 0 : -1;
}

/*
 * Fill the decode-table slots of one symbol: slots c .. c+f-1 map to
 * f | (slot - c) << 11 | sym << 22.
 */
MFS_RANS_FN void mfs_rans_table_fill(uint32_t *tab, unsigned c, unsigned f, unsigned sym)
{
	for (unsigned i = 0; i < f; i++)
		tab[c + i] = f | i << 11 | (uint32_t)sym << 22;
}

/* Decode one symbol from state @p x (no renormalisation): the new state. */
MFS_RANS_FN uint32_t mfs_rans_dec(uint32_t x, const uint32_t *tab, unsigned prob_bits,
				  unsigned *sym)
{
	uint32_t e = tab[x & ((1u << prob_bits) - 1)];
	*sym = e >> 22;
	return (e & 0x7ff) * (x >> prob_bits) + ((e >> 11) & 0x7ff);
}

/*
 * Encode symbol (f, c) into *x: first push the low 16 bits when the state
 * would leave [MFS_RANS_L, 2^32) (*--*words = low word), then
 * x = (x / f) * M + x % f + c.  The caller ensures room for one word.
 */
MFS_RANS_FN void mfs_rans_enc_put(uint32_t *x, unsigned f, unsigned c, unsigned prob_bits,
				  uint16_t **words)
{
	uint32_t v = *x;
	uint64_t x_max = (uint64_t)f << (32 - prob_bits); /* ((L >> P) << 16) * f */
	if (v >= x_max) {
		*--*words = (uint16_t)v;
		v >>= 16;
	}
	*x = ((v / f) << prob_bits) + v % f + c;
}

/*
 * The lane and output index of step @p t, lane @p k of group @p g, and
 * whether that symbol exists (n need not be a multiple of lanes).
 */
MFS_RANS_FN size_t mfs_rans_index(size_t t, unsigned lanes, unsigned g, unsigned k)
{
	return t * lanes + (size_t)g * MFS_RANS_GROUP + k;
}

/* Steps (symbols of lane 0) of a plane of @p n symbols over @p lanes. */
MFS_RANS_FN size_t mfs_rans_steps(size_t n, unsigned lanes)
{
	return (n + lanes - 1) / lanes;
}

/* ---- the payload around the planes (codec/rans.h has the byte layout) ---- */

#define MFS_RANS_VERSION    1
#define MFS_RANS_HEADER	    8 /* u8 version, u8 dtype, u8 nplanes, u8 0, u32 n */
#define MFS_RANS_DESC	    6 /* per plane: u8 width, u8 mode, u32 len */
#define MFS_RANS_PLANES_MAX 8
/* Plane modes of this codec's payload: RAW and CONST as planes.h has them,
 * and the rANS mode, which only this codec's payloads name. */
#define MFS_RANS_MODE_RAW   0
#define MFS_RANS_MODE_CONST 1
#define MFS_RANS_MODE_RANS  8

/*
 * The plane layout of a dtype, as planes.h's mfs_planes_layout_bitplane()
 * gives it (the unit test checks that they agree), in a form device code
 * can use: element size, left rotation, plane count and widths.
 * @return 0, or -1 for a dtype this codec does not code (values from dtype.h)
 */
MFS_RANS_FN int mfs_rans_layout(unsigned dtype, unsigned *esize, unsigned *rot,
				unsigned *nplanes, unsigned *width)
{
	unsigned i;
	switch (dtype) {
	case 9: /* BF16 */
		*esize = 2, *rot = 1, *nplanes = 2, width[0] = 10, width[1] = 6;
		return 0;
	case 8: /* F16 */
		*esize = 2, *rot = 1, *nplanes = 2, width[0] = 8, width[1] = 8;
		return 0;
	case 12: /* F32 */
		*esize = 4, *rot = 1, *nplanes = 4, width[0] = 10, width[1] = 6;
		width[2] = width[3] = 8;
		return 0;
	case 13: /* F64 */
		*esize = 8, *rot = 1, *nplanes = 8, width[0] = 10, width[1] = 6;
		for (i = 2; i < 8; i++)
			width[i] = 8;
		return 0;
	case 4:	 /* F8_E5M2 */
	case 5:	 /* F8_E4M3 */
	case 16: /* F8_E8M0 */
		*esize = 1, *rot = 0, *nplanes = 1, width[0] = 8;
		return 0;
	default:
		return -1;
	}
}

/*
 * Symbol @p i of a RAW plane of @p n symbols of width @p w (planes.h's
 * packing: 8-bit symbols as bytes; 6-bit ones in blocks of 256 in 192
 * bytes, the rest LSB-first; other widths LSB-first).  Random access, for
 * a decoder that merges element by element; the plane's length has been
 * checked to be exactly ceil(n * w / 8).
 */
MFS_RANS_FN unsigned mfs_rans_raw_get(const uint8_t *p, unsigned w, size_t n, size_t i)
{
	if (w == 8)
		return p[i];
	size_t bit0 = 0;
	if (w == 6) {
		size_t whole = n / 256;
		if (i < whole * 256) {
			const uint8_t *b = p + (i / 256) * 192;
			unsigned j = (unsigned)(i % 256);
			if (j < 192)
				return b[j] & 63u;
			j -= 192;
			return (unsigned)(b[j] >> 6) | (unsigned)(b[64 + j] >> 6) << 2 |
			       (unsigned)(b[128 + j] >> 6) << 4;
		}
		p += whole * 192;
		i -= whole * 256;
	}
	bit0 = i * w;
	const uint8_t *q = p + bit0 / 8;
	unsigned sh = (unsigned)(bit0 % 8);
	/* at most 10 + 7 bits: three bytes, but only those inside the plane */
	size_t last = (bit0 + w - 1) / 8 - bit0 / 8;
	uint32_t v = q[0];
	if (last >= 1)
		v |= (uint32_t)q[1] << 8;
	if (last >= 2)
		v |= (uint32_t)q[2] << 16;
	return (v >> sh) & ((1u << w) - 1);
}

#endif
