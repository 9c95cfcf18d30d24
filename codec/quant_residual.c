/*
 * quant_residual.c - the quant-residual codec (id MFS_CODEC_QUANT_RESIDUAL):
 * a BF16 or F16 chunk stored as its distance from the dequantized value of
 * its quantized twin (int8 or FP8 E4M3 codes and their scales, quant.h).
 *
 * Prediction: p = the 16-bit float nearest (ties to even) to the binary32
 * product code * scale, a NaN product giving the canonical quiet NaN.  The
 * residual is the distance from p to the value in the monotone integer order
 * of the 16-bit type, taken in the direction of growing magnitude (negated
 * for a negative p), modulo 2^16: a bijection for every p, so every bit
 * pattern round-trips (NaN payloads, infinities, -0.0, clipped values, rows
 * whose scale is 0, NaN or negative).  The residual is zigzagged and cut
 * into a token (values below 64 as themselves, larger ones as the top three
 * bits under the leading one plus raw low bits) coded with one Huffman
 * table per context.  The context is a fixed-point log2 of how many 16-bit
 * values one quantization step spans at p (the step's exponent and two
 * mantissa bits against p's exponent), so a value far inside a coarse step
 * and one pinned by a fine step use different tables; docs/codecs.md has
 * the measurements that chose it over the code itself.  Codes are at most
 * 8 bits, so decoding an element is one lookup in a 256-entry table; eight
 * code streams (element i in stream i mod 8) are decoded side by side, and
 * the raw bits that do not fit the lookup with their code go to a raw
 * section per stream, read by a second pass.
 *
 * Payload (little-endian; docs/codecs.md has the byte table):
 *   header (64 bytes): u8 version (1), u8 hp dtype, u8 kind, u8 qdtype,
 *     u8 sdtype, u8 number of contexts (40), u8 token set (0), u8 coding
 *     (0 Huffman, 1 raw); u64 rows, u64 cols, u32 group, u32 block_r,
 *     u32 block_c, u32 n, u64 elem_off, u64 first scale, u64 scale count
 *   coding 0: per context u8 mode (0 unused, 1 one token: u8 token,
 *     2 Huffman: u8 lo, u8 cnt, cnt code lengths 0..8 in nibbles, low
 *     first); u32 bytes of code streams 0..7 and raw sections 0..6 (raw 7
 *     takes the rest); the code streams (per element its token's code,
 *     LSB-first, then its raw bits when qr_inline), then the raw sections
 *   coding 1: n u16 zigzagged residuals
 * The decoder checks the header against the geometry and the references
 * (dtype, shape, element offset, n, the scale span the scheme gives and
 * both references' lengths) before anything else.
 *
 * This file is built with -ffp-contract=off; the one float operation on the
 * decode path is the product, bracketed by the IEEE environment guard.
 */
#include "codec_internal.h"
#include "huff.h"
#include "le.h"
#include "quant.h"
#include "quant_kernel.h"

#include <errno.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quant_residual.c assumes a little-endian host"
#endif

#define QR_VERSION     1
#define QR_HDR	       64
#define QR_NCTX	       40 /* contexts: 4 * log2(step / ulp) + 4 (BF16) or - 4 (F16), clamped */
#define QR_DIRECT_BITS 6
#define QR_DIRECT                                                                        \
	(1u << QR_DIRECT_BITS) /* zigzagged residuals below this are their own token */
#define QR_NTOK	    (QR_DIRECT + (16 - QR_DIRECT_BITS) * 8) /* tokens of token set 0 */
#define QR_STREAMS  8
#define QR_SECTIONS (2 * QR_STREAMS) /* code streams, then their raw-bit sections */
#define QR_TAB_BITS 8 /* longest code: decode tables have 2^8 entries per context */

enum { QR_CODING_HUFF = 0, QR_CODING_RAW = 1 };
enum { QR_CTX_UNUSED = 0, QR_CTX_CONST = 1, QR_CTX_HUFF = 2 };

/* context offsets of 4 * log2(step / ulp) for each 16-bit type (see qr_ctx_base) */
#define QR_CTX_OFF_BF16 32
#define QR_CTX_OFF_F16	(-412)

_Static_assert(QR_NTOK <= 256 && QR_NTOK <= MFS_HUFF_MAX_SYMS, "tokens fit a byte");
_Static_assert(QR_NTOK <= (1u << QR_TAB_BITS), "every table can hold all tokens");
_Static_assert((QR_NCTX << QR_TAB_BITS) <= 65536, "context indices fit 16 bits");
_Static_assert(QR_NCTX <= 255, "contexts fit a byte");

/* ---- tokens ---- */

/* Token of a zigzagged residual z; *nx raw bits follow its code, *base + them is z. */
static inline unsigned qr_token(uint32_t z, unsigned *nx, uint32_t *base)
{
	if (z < QR_DIRECT) {
		*nx = 0;
		*base = z;
		return z;
	}
	unsigned e = 31 - (unsigned)__builtin_clz(z); /* QR_DIRECT_BITS..15 */
	unsigned msb = (z >> (e - 3)) & 7;
	*nx = e - 3;
	*base = (8 | msb) << (e - 3);
	return QR_DIRECT + (e - QR_DIRECT_BITS) * 8 + msb;
}

/* The inverse: base value and raw bit count of token t (< QR_NTOK). */
static inline void qr_token_info(unsigned t, uint32_t *base, unsigned *nx)
{
	if (t < QR_DIRECT) {
		*base = t;
		*nx = 0;
		return;
	}
	unsigned e = (t - QR_DIRECT) / 8 + QR_DIRECT_BITS, msb = (t - QR_DIRECT) % 8;
	*base = (8 | msb) << (e - 3);
	*nx = e - 3;
}

/*
 * Whether token t with a code of @p len bits carries its raw bits in the
 * code stream right after its code (the decode table then resolves them:
 * code and raw bits fit one lookup and the residual an entry), rather
 * than in its stream's raw section.
 */
static inline int qr_inline(unsigned t, unsigned len)
{
	uint32_t base;
	unsigned nx;
	qr_token_info(t, &base, &nx);
	return nx && len + nx <= QR_TAB_BITS && base + (1u << nx) <= 512;
}

/* ---- the 16-bit order and the residual ---- */

/*
 * The residual of value v against prediction p: the distance from p to v
 * in the monotone integer order of the 16-bit type (-0.0 just below +0.0,
 * NaNs past the infinities), counted in the direction of growing magnitude
 * (negated for a negative p), modulo 2^16.  In closed form: t = v, with its
 * magnitude bits complemented when v's sign differs from p's, and r = t - p
 * mod 2^16; the inverse is t = p + r, complemented back when t's sign
 * differs from p's.  A bijection of the 2^16 values for every p.
 */
static inline uint32_t qr_resid(uint32_t v, uint32_t p)
{
	uint32_t t = ((v ^ p) & 0x8000) ? v ^ 0x7fffu : v;
	return (t - p) & 0xffff;
}

static inline uint32_t qr_apply(uint32_t p, uint32_t r)
{
	uint32_t t = (p + r) & 0xffff;
	return t ^ (((t ^ p) & 0x8000) ? 0x7fffu : 0);
}

/* zigzag: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ... (16 bits) */
static inline uint32_t qr_zigzag(uint32_t r)
{
	return ((r << 1) ^ ((r & 0x8000) ? 0xffffu : 0)) & 0xffff;
}

static inline uint32_t qr_unzigzag(uint32_t z)
{
	return ((z >> 1) ^ (0u - (z & 1))) & 0xffff;
}

static inline void st16(uint8_t *p, uint32_t v)
{
	uint16_t h = (uint16_t)v;
	memcpy(p, &h, 2);
}

static inline uint32_t ld16(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, 2);
	return h;
}

static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	mfs_le_put32(p, (uint32_t)v);
	mfs_le_put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)mfs_le_get32(p) | (uint64_t)mfs_le_get32(p + 4) << 32;
}

/* ---- the header ---- */

typedef struct qr_hdr {
	mfs_dtype hp;
	mfs_quant_scheme s;
	unsigned coding;
	uint32_t n;
	uint64_t elem_off, first, count;
} qr_hdr;

static void hdr_write(const qr_hdr *h, uint8_t *o)
{
	memset(o, 0, QR_HDR);
	o[0] = QR_VERSION;
	o[1] = (uint8_t)h->hp;
	o[2] = (uint8_t)h->s.kind;
	o[3] = (uint8_t)h->s.qdtype;
	o[4] = (uint8_t)h->s.sdtype;
	o[5] = QR_NCTX;
	o[6] = 0;
	o[7] = (uint8_t)h->coding;
	put64(o + 8, h->s.rows);
	put64(o + 16, h->s.cols);
	mfs_le_put32(o + 24, h->s.group);
	mfs_le_put32(o + 28, h->s.block_r);
	mfs_le_put32(o + 32, h->s.block_c);
	mfs_le_put32(o + 36, h->n);
	put64(o + 40, h->elem_off);
	put64(o + 48, h->first);
	put64(o + 56, h->count);
}

/* Parse and check a header (not yet against the request). */
static int hdr_read(const uint8_t *p, size_t len, qr_hdr *h)
{
	if (len < QR_HDR || p[0] != QR_VERSION || p[5] != QR_NCTX || p[6] != 0 ||
	    (p[7] != QR_CODING_HUFF && p[7] != QR_CODING_RAW))
		return MFS_E_CORRUPT;
	h->hp = (mfs_dtype)p[1];
	if (h->hp != MFS_DT_BF16 && h->hp != MFS_DT_F16)
		return MFS_E_CORRUPT;
	h->s.kind = (mfs_quant_kind)p[2];
	h->s.qdtype = (mfs_dtype)p[3];
	h->s.sdtype = (mfs_dtype)p[4];
	h->coding = p[7];
	h->s.rows = get64(p + 8);
	h->s.cols = get64(p + 16);
	h->s.group = mfs_le_get32(p + 24);
	h->s.block_r = mfs_le_get32(p + 28);
	h->s.block_c = mfs_le_get32(p + 32);
	h->n = mfs_le_get32(p + 36);
	h->elem_off = get64(p + 40);
	h->first = get64(p + 48);
	h->count = get64(p + 56);
	/* fields a kind does not use must be zero (one payload per chunk) */
	if (mfs_quant_scheme_check(&h->s) ||
	    (h->s.kind != MFS_QUANT_GROUP && h->s.group) ||
	    (h->s.kind != MFS_QUANT_BLOCK && (h->s.block_r || h->s.block_c)))
		return MFS_E_CORRUPT;
	return 0;
}

/* Rows and columns of the tensor a geometry describes; MFS_E_CORRUPT when none. */
static int geom_matrix(const mfs_chunk_geom *g, uint64_t *rows, uint64_t *cols)
{
	if (!g || g->ndim < 1 || g->ndim > MFS_GEOM_DIMS)
		return MFS_E_CORRUPT;
	uint64_t c = 1;
	for (uint32_t i = 1; i < g->ndim; i++)
		if (__builtin_mul_overflow(c, g->shape[i], &c))
			return MFS_E_CORRUPT;
	*rows = g->shape[0];
	*cols = c;
	return 0;
}

/*
 * The two references a chunk needs, by role; MFS_E_CORRUPT unless there are
 * exactly two, one QUANT of n bytes and one SCALE of scale_len bytes.
 */
static int find_refs(const mfs_ref_data *refs, size_t n_refs, size_t n,
		     uint64_t scale_len, const uint8_t **codes, const uint8_t **scales)
{
	const mfs_ref_data *q = NULL, *s = NULL;
	if (n_refs != 2 || !refs)
		return MFS_E_CORRUPT;
	for (size_t i = 0; i < 2; i++) {
		if (refs[i].role == MFS_REF_QUANT && !q)
			q = &refs[i];
		else if (refs[i].role == MFS_REF_SCALE && !s)
			s = &refs[i];
		else
			return MFS_E_CORRUPT;
	}
	if (q->len != n || s->len != scale_len || (n && !q->data) ||
	    (scale_len && !s->data))
		return MFS_E_CORRUPT;
	*codes = q->data;
	*scales = s->data;
	return 0;
}

/*
 * Check a header against the request: the geometry's dtype, matrix and
 * element offset, n against the chunk's length, the scale span the scheme
 * gives for these elements; then find the references.
 */
static int hdr_match(const qr_hdr *h, const mfs_chunk_geom *g, size_t raw_len,
		     const mfs_ref_data *refs, size_t n_refs, const uint8_t **codes,
		     const uint8_t **scales)
{
	uint64_t rows, cols;
	if (geom_matrix(g, &rows, &cols) || g->dtype != h->hp || rows != h->s.rows ||
	    cols != h->s.cols || raw_len % 2 || raw_len / 2 != h->n ||
	    g->elem_off != h->elem_off)
		return MFS_E_CORRUPT;
	uint64_t total = rows * cols; /* no overflow: the scheme check */
	if (h->elem_off > total || h->n > total - h->elem_off)
		return MFS_E_CORRUPT;
	uint64_t first, count;
	mfs_quant_scale_span(&h->s, h->elem_off, h->n, &first, &count);
	if (first != h->first || count != h->count)
		return MFS_E_CORRUPT;
	uint64_t scale_len;
	if (__builtin_mul_overflow(count, (uint64_t)mfs_qk_scale_size(h->s.sdtype),
				   &scale_len))
		return MFS_E_CORRUPT;
	return find_refs(refs, n_refs, h->n, scale_len, codes, scales);
}

/* ---- the prediction (encoder and decoder share it) ---- */

/* Per-code tables: the code's value and its step's log2 (x4) beyond the scale's. */
typedef struct qr_codes {
	float value[256];
	int16_t lstep[256];
} qr_codes;

static void qr_codes_init(mfs_dtype qdt, qr_codes *t)
{
	for (unsigned c = 0; c < 256; c++) {
		if (qdt == MFS_DT_I8) {
			t->value[c] = (float)(int8_t)c;
			t->lstep[c] = 0;
		} else {
			/* an E4M3 step is 2^(max(e,1) - 10) */
			unsigned e = (c >> 3) & 15;
			t->value[c] = mfs_qk_f32(mfs_qk_e4m3_to_f32(c));
			t->lstep[c] = (int16_t)(4 * (int)(e ? e : 1) - 40);
		}
	}
}

/*
 * The context base of a run with scale bits @p sb: 4 * log2(scale) in
 * fixed point (exponent field and two mantissa bits, sign dropped) plus the
 * offset that makes the context 4 * log2(step / ulp(p)) + 4 for BF16 and
 * - 4 for F16 (three more mantissa bits: a step spans 8 times as many
 * values), where ulp(p) is 2^(max(exponent field, 1) - 134) for BF16 and
 * 2^(max(exponent field, 1) - 25) for F16.
 */
static inline int qr_ctx_base(uint32_t sb, mfs_dtype hp)
{
	int a = (int)((sb >> 21) & 0x3ff);
	return a + (hp == MFS_DT_BF16 ? QR_CTX_OFF_BF16 : QR_CTX_OFF_F16);
}

static inline unsigned qr_ctx_clamp(int c)
{
	return c < 0 ? 0u : c > QR_NCTX - 1 ? (unsigned)(QR_NCTX - 1) : (unsigned)c;
}

/*
 * The kernels below compute, for a run of m codes sharing the scale s (the
 * float with bits sb, context base cb), each element's prediction pred[i]
 * and its context's table index cidx[i] = context << QR_TAB_BITS.  The
 * generic one takes every case; the fast ones a BF16 tensor and a finite
 * scale (so a product is never NaN unless its code is), with 16-bit lanes
 * for the context, and are built twice on x86-64 (baseline and AVX2,
 * chosen at run time): integer operations and one IEEE multiply, the same
 * bits either way.
 */
static void run_generic(const qr_codes *t, mfs_dtype hp, const uint8_t *q, size_t m,
			float s, int cb, uint16_t *pred, uint16_t *cidx)
{
	for (size_t i = 0; i < m; i++) {
		unsigned c = q[i];
		float prod = t->value[c] * s;
		uint32_t b, e;
		if (hp == MFS_DT_BF16) {
			b = mfs_qk_f32_to_bf16(mfs_qk_bits(prod));
			e = (b >> 7) & 0xff;
		} else {
			b = mfs_qk_f32_to_f16(mfs_qk_bits(prod));
			e = (b >> 10) & 0x1f;
		}
		e = e ? e : 1;
		pred[i] = (uint16_t)b;
		cidx[i] = (uint16_t)(qr_ctx_clamp(cb + t->lstep[c] - 4 * (int)e)
				     << QR_TAB_BITS);
	}
}

#define QR_MFS_ALWAYS_INLINE inline __attribute__((always_inline))

/* int8 codes, BF16 tensor, finite scale */
static QR_MFS_ALWAYS_INLINE void run_i8_body(const uint8_t *restrict q, size_t m, float s,
					     int cb, uint16_t *restrict pred,
					     uint16_t *restrict cidx)
{
	int16_t cb16 = (int16_t)cb;
	for (size_t i = 0; i < m; i++) {
		float prod = (float)(int8_t)q[i] * s;
		uint32_t x = mfs_qk_bits(prod);
		uint16_t b = (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
		int16_t e = (int16_t)((b >> 7) & 0xff);
		e = e > 1 ? e : 1;
		int16_t c = (int16_t)(cb16 - 4 * e);
		c = c > 0 ? c : 0;
		c = c < QR_NCTX - 1 ? c : QR_NCTX - 1;
		pred[i] = b;
		cidx[i] = (uint16_t)(c << QR_TAB_BITS);
	}
}

/*
 * E4M3FN codes, BF16 tensor, finite scale.  A code's value without tables:
 * a normal one is its bits moved into binary32 (exponent rebiased by 120),
 * a subnormal one m * 2^-9; 0x7f and 0xff (NaN) are multiplied as 480 and then predicted
 * as the canonical NaN.
 */
static QR_MFS_ALWAYS_INLINE void run_e4m3_body(const uint8_t *restrict q, size_t m,
					       float s, int cb, uint16_t *restrict pred,
					       uint16_t *restrict cidx)
{
	int16_t cb16 = (int16_t)cb;
	for (size_t i = 0; i < m; i++) {
		uint32_t c8 = q[i], ef = (c8 >> 3) & 15, m8 = c8 & 7;
		uint32_t nb = ((c8 & 0x7f) << 20) + (120u << 23);
		/* m * 2^-9: exact; selects as masks, so no float operation is
		 * conditional (the loop vectorizes) */
		uint32_t sbits = mfs_qk_bits((float)(int8_t)m8 * 0x1p-9f);
		uint32_t me = 0u - (uint32_t)(ef != 0);
		float v = mfs_qk_f32((nb & me) | (sbits & ~me) | (c8 & 0x80) << 24);
		float prod = v * s;
		uint32_t x = mfs_qk_bits(prod);
		uint16_t b = (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
		uint16_t nan = (uint16_t)(0u - (uint32_t)((c8 & 0x7f) == 0x7f));
		b = (uint16_t)((b & ~nan) | (0x7fc0 & nan));
		int16_t e = (int16_t)((b >> 7) & 0xff);
		e = e > 1 ? e : 1;
		int16_t es = (int16_t)(ef > 1 ? ef : 1);
		int16_t c = (int16_t)(cb16 + 4 * es - 40 - 4 * e);
		c = c > 0 ? c : 0;
		c = c < QR_NCTX - 1 ? c : QR_NCTX - 1;
		pred[i] = b;
		cidx[i] = (uint16_t)(c << QR_TAB_BITS);
	}
}

static void run_i8(const uint8_t *q, size_t m, float s, int cb, uint16_t *pred,
		   uint16_t *cidx)
{
	run_i8_body(q, m, s, cb, pred, cidx);
}

static void run_e4m3(const uint8_t *q, size_t m, float s, int cb, uint16_t *pred,
		     uint16_t *cidx)
{
	run_e4m3_body(q, m, s, cb, pred, cidx);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_BP_NO_AVX2)
#define QR_AVX2 1
__attribute__((target("avx2"))) static void
run_i8_avx2(const uint8_t *q, size_t m, float s, int cb, uint16_t *pred, uint16_t *cidx)
{
	run_i8_body(q, m, s, cb, pred, cidx);
}

__attribute__((target("avx2"))) static void
run_e4m3_avx2(const uint8_t *q, size_t m, float s, int cb, uint16_t *pred, uint16_t *cidx)
{
	run_e4m3_body(q, m, s, cb, pred, cidx);
}
#endif

typedef void (*qr_run_fn)(const uint8_t *, size_t, float, int, uint16_t *, uint16_t *);

/*
 * A run's predictions and context indices for each of the 256 codes, for
 * scales shared by many elements (one per tensor, per wide row, per tile):
 * then an element is two lookups.  Direct-mapped by scale index.
 */
typedef struct qr_lut {
	uint64_t tag;	   /* scale index + 1; 0: empty */
	uint32_t pc[256];  /* prediction | context index << 16 */
	uint16_t tmp[512]; /* building room */
} qr_lut;

#define QR_LUTS	   64
#define QR_LUT_MIN 512 /* elements sharing a scale for a table to pay */

/* What predicting a chunk needs: its header, references, code tables, kernel. */
typedef struct qr_pred {
	const qr_hdr *h;
	const uint8_t *codes, *scales;
	qr_run_fn fast;
	qr_lut *luts; /* QR_LUTS, or NULL when no scale is shared by QR_LUT_MIN */
	qr_codes t;
} qr_pred;

/* Bytes of scratch qr_pred_init() takes. */
#define QR_PRED_SCRATCH (QR_LUTS * sizeof(qr_lut))

/*
 * @p lut_mem: QR_PRED_SCRATCH bytes (8-aligned) for the per-scale tables,
 * used when the scheme shares a scale among QR_LUT_MIN elements and the
 * codes are not int8 (whose kernel is faster than two lookups).
 */
static void qr_pred_init(qr_pred *P, const qr_hdr *h, const uint8_t *codes,
			 const uint8_t *scales, void *lut_mem)
{
	const mfs_quant_scheme *s = &h->s;
	P->h = h;
	P->codes = codes;
	P->scales = scales;
	qr_codes_init(s->qdtype, &P->t);
	P->fast = s->qdtype == MFS_DT_I8 ? run_i8 : run_e4m3;
#ifdef QR_AVX2
	if (__builtin_cpu_supports("avx2"))
		P->fast = s->qdtype == MFS_DT_I8 ? run_i8_avx2 : run_e4m3_avx2;
#endif
	uint64_t shared = s->kind == MFS_QUANT_TENSOR	 ? h->n
			  : s->kind == MFS_QUANT_CHANNEL ? s->cols
			  : s->kind == MFS_QUANT_GROUP
			      ? s->group
			      : (uint64_t)s->block_r * s->block_c;
	P->luts = NULL;
	if (lut_mem && shared >= QR_LUT_MIN &&
	    (s->qdtype != MFS_DT_I8 || h->hp != MFS_DT_BF16)) {
		P->luts = lut_mem;
		for (unsigned k = 0; k < QR_LUTS; k++)
			P->luts[k].tag = 0;
	}
}

/* The codes 0..255, to build a table with the run kernels. */
static const uint8_t qr_all_codes[256] = {
#define QR_C4(x)  (x), (x) + 1, (x) + 2, (x) + 3
#define QR_C16(x) QR_C4(x), QR_C4((x) + 4), QR_C4((x) + 8), QR_C4((x) + 12)
#define QR_C64(x) QR_C16(x), QR_C16((x) + 16), QR_C16((x) + 32), QR_C16((x) + 48)
    QR_C64(0), QR_C64(64), QR_C64(128), QR_C64(192)};

static void qr_lut_apply(const uint32_t *restrict pc, const uint8_t *restrict q, size_t m,
			 uint16_t *restrict pred, uint16_t *restrict cidx)
{
	for (size_t j = 0; j < m; j++) {
		uint32_t v = pc[q[j]];
		pred[j] = (uint16_t)v;
		cidx[j] = (uint16_t)(v >> 16);
	}
}

/* One run of m codes at q sharing the scale with bits sb (index si). */
static void qr_run(qr_pred *P, uint64_t si, uint32_t sb, const uint8_t *q, size_t m,
		   uint16_t *pred, uint16_t *cidx)
{
	const qr_hdr *h = P->h;
	float sc = mfs_qk_f32(sb);
	int cb = qr_ctx_base(sb, h->hp);
	int fast = h->hp == MFS_DT_BF16 && (sb & 0x7f800000u) != 0x7f800000u;
	if (P->luts) {
		qr_lut *L = &P->luts[si % QR_LUTS];
		if (L->tag != si + 1) {
			if (fast)
				P->fast(qr_all_codes, 256, sc, cb, L->tmp, L->tmp + 256);
			else
				run_generic(&P->t, h->hp, qr_all_codes, 256, sc, cb,
					    L->tmp, L->tmp + 256);
			for (unsigned c = 0; c < 256; c++)
				L->pc[c] = L->tmp[c] | (uint32_t)L->tmp[256 + c] << 16;
			L->tag = si + 1;
		}
		qr_lut_apply(L->pc, q, m, pred, cidx);
	} else if (fast) {
		P->fast(q, m, sc, cb, pred, cidx);
	} else {
		run_generic(&P->t, h->hp, q, m, sc, cb, pred, cidx);
	}
}

/*
 * Predictions and context indices of the chunk's elements [i0, i1) (pred,
 * cidx and codes indexed from the chunk's start), run by run of elements
 * sharing a scale.  Callers run it inside the IEEE environment guard
 * (qr_encode, qr_decode).
 */
static void qr_predict(qr_pred *P, size_t i0, size_t i1, uint16_t *pred, uint16_t *cidx)
{
	const qr_hdr *h = P->h;
	const mfs_quant_scheme *s = &h->s;
	uint64_t cols = s->cols;
	uint64_t g = s->kind == MFS_QUANT_GROUP ? cols / s->group : 0;
	uint64_t nbc =
	    s->kind == MFS_QUANT_BLOCK ? (cols + s->block_c - 1) / s->block_c : 0;
	uint64_t e = h->elem_off + i0, end = h->elem_off + i1;
	size_t i = i0;
	while (e < end) {
		uint64_t r = e / cols, c = e % cols, si = 0, run = end - e;
		switch (s->kind) {
		case MFS_QUANT_TENSOR:
			break;
		case MFS_QUANT_CHANNEL:
			si = r;
			run = cols - c;
			break;
		case MFS_QUANT_GROUP:
			si = r * g + c / s->group;
			run = s->group - c % s->group;
			break;
		case MFS_QUANT_BLOCK: {
			si = (r / s->block_r) * nbc + c / s->block_c;
			uint64_t to_tile = s->block_c - c % s->block_c;
			run = cols - c < to_tile ? cols - c : to_tile;
			break;
		}
		}
		if (run > end - e)
			run = end - e;
		uint32_t sb = mfs_qk_scale_bits(P->scales, s->sdtype, si - h->first);
		qr_run(P, si, sb, P->codes + i, (size_t)run, pred + i, cidx + i);
		e += run;
		i += (size_t)run;
	}
}

/* ---- streams ---- */

/* Bytes of the context descriptors for these modes and Huffman tables. */
static size_t ctx_desc_size(const unsigned *mode, const mfs_huff_table *tab)
{
	size_t sz = 0;
	for (unsigned c = 0; c < QR_NCTX; c++) {
		sz += 1;
		if (mode[c] == QR_CTX_CONST)
			sz += 1;
		else if (mode[c] == QR_CTX_HUFF)
			sz += 2 + (tab[c].hi - tab[c].lo + 2) / 2;
	}
	return sz;
}

static size_t qr_bound(size_t raw_len)
{
	/* the Huffman coding is kept only when it is no larger than raw */
	return raw_len + QR_HDR + 16;
}

/* Bit writer, LSB-first, with room checked by the caller. */
typedef struct bitw {
	uint8_t *p;
	uint64_t acc;
	unsigned nb;
} bitw;

static inline void bitw_put(bitw *w, uint32_t bits, unsigned n)
{
	w->acc |= (uint64_t)bits << w->nb;
	w->nb += n;
	while (w->nb >= 8) {
		*w->p++ = (uint8_t)w->acc;
		w->acc >>= 8;
		w->nb -= 8;
	}
}

static inline void bitw_flush(bitw *w)
{
	if (w->nb)
		*w->p++ = (uint8_t)w->acc;
	w->acc = 0;
	w->nb = 0;
}

/* ---- encoder ---- */

/*
 * A Huffman table for one context's token counts with codes of at most
 * QR_TAB_BITS bits (smaller decode tables stay in the L1 cache): when the
 * optimal code is longer, the counts are halved (never below one) and the
 * code built again.
 */
static int qr_build_table(const uint32_t *freq, mfs_huff_table *t)
{
	uint32_t f[QR_NTOK];
	memcpy(f, freq, sizeof f);
	for (;;) {
		int rc = mfs_huff_build(f, QR_NTOK, t);
		if (rc < 0 || t->max_len <= QR_TAB_BITS)
			return rc;
		for (unsigned i = 0; i < QR_NTOK; i++)
			if (f[i])
				f[i] = (f[i] + 1) / 2;
	}
}

__attribute__((noinline)) static int qr_encode_body(const mfs_encode_params *prm,
						    const void *src, size_t src_len,
						    void *dst, size_t dst_cap,
						    size_t *dst_len, mfs_codec_ws *ws)
{
	const mfs_quant_scheme *qs = prm->quant;
	if ((prm->dtype != MFS_DT_BF16 && prm->dtype != MFS_DT_F16) || src_len % 2 ||
	    !qs || mfs_quant_scheme_check(qs) || !prm->geom)
		return MFS_E_UNSUPPORTED;
	if (src_len > MFS_CHUNK_MAX)
		return MFS_E_TOOBIG;
	size_t n = src_len / 2;
	qr_hdr h = {.hp = prm->dtype,
		    .s = *qs,
		    .coding = QR_CODING_HUFF,
		    .n = (uint32_t)n,
		    .elem_off = prm->geom->elem_off};
	/* a canonical scheme: fields its kind does not use are zero */
	if (h.s.kind != MFS_QUANT_GROUP)
		h.s.group = 0;
	if (h.s.kind != MFS_QUANT_BLOCK)
		h.s.block_r = h.s.block_c = 0;
	mfs_quant_scale_span(&h.s, h.elem_off, n, &h.first, &h.count);
	const uint8_t *codes, *scales;
	if (prm->geom->dtype != prm->dtype ||
	    hdr_match(&h, prm->geom, src_len, prm->refs, prm->n_refs, &codes, &scales))
		return MFS_E_UNSUPPORTED;
	if (dst_cap < qr_bound(src_len))
		return MFS_E_NOSPACE;

	/* scratch A: tables and counts, then predictions, contexts, tokens, residuals */
	size_t tab_bytes = (QR_NCTX * sizeof(mfs_huff_table) + 63) & ~(size_t)63;
	size_t freq_bytes = (QR_NCTX * QR_NTOK * sizeof(uint32_t) + 63) & ~(size_t)63;
	size_t need = tab_bytes + freq_bytes + 8 * n + 64;
	uint8_t *scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, need);
	if (!scr)
		return -ENOMEM;
	mfs_huff_table *tab = (mfs_huff_table *)scr;
	uint32_t(*freq)[QR_NTOK] = (uint32_t(*)[QR_NTOK])(scr + tab_bytes);
	/* 2-byte arrays first: tab_bytes and freq_bytes keep them aligned */
	uint16_t *pred = (uint16_t *)(scr + tab_bytes + freq_bytes), *z = pred + n,
		 *cidx = z + n;
	uint8_t *ctx = (uint8_t *)(cidx + n), *tok = ctx + n;
	qr_pred P;
	void *lut_mem = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_B, QR_PRED_SCRATCH);
	if (!lut_mem)
		return -ENOMEM;
	qr_pred_init(&P, &h, codes, scales, lut_mem);
	qr_predict(&P, 0, n, pred, cidx);

	memset(freq, 0, QR_NCTX * QR_NTOK * sizeof(uint32_t));
	const uint8_t *v = src;
	for (size_t i = 0; i < n; i++) {
		uint32_t zi = qr_zigzag(qr_resid(ld16(v + 2 * i), pred[i]));
		unsigned nx;
		uint32_t base;
		z[i] = (uint16_t)zi;
		ctx[i] = (uint8_t)(cidx[i] >> QR_TAB_BITS);
		tok[i] = (uint8_t)qr_token(zi, &nx, &base);
		freq[ctx[i]][tok[i]]++;
	}
	unsigned mode[QR_NCTX], one[QR_NCTX];
	for (unsigned c = 0; c < QR_NCTX; c++) {
		unsigned present = 0;
		for (unsigned t = 0; t < QR_NTOK; t++)
			if (freq[c][t]) {
				present++;
				one[c] = t;
			}
		mode[c] = present == 0	 ? QR_CTX_UNUSED
			  : present == 1 ? QR_CTX_CONST
					 : QR_CTX_HUFF;
		if (mode[c] == QR_CTX_HUFF) {
			int rc = qr_build_table(freq[c], &tab[c]);
			if (rc < 0)
				return rc;
		}
	}
	/* exact size of each section: the code streams, the raw-bit sections */
	uint64_t sbits[QR_SECTIONS] = {0};
	for (unsigned k = 0; k < QR_STREAMS; k++)
		for (size_t i = k; i < n; i += QR_STREAMS) {
			uint32_t base;
			unsigned nx, c = ctx[i];
			qr_token_info(tok[i], &base, &nx);
			unsigned len = mode[c] == QR_CTX_HUFF ? tab[c].len[tok[i]] : 0;
			sbits[k] += len;
			sbits[qr_inline(tok[i], len) ? k : QR_STREAMS + k] += nx;
		}
	size_t huff_size = QR_HDR + ctx_desc_size(mode, tab) + 4 * (QR_SECTIONS - 1);
	for (unsigned k = 0; k < QR_SECTIONS; k++)
		huff_size += (size_t)((sbits[k] + 7) / 8);

	uint8_t *out = dst;
	if (huff_size > QR_HDR + src_len) {
		h.coding = QR_CODING_RAW;
		hdr_write(&h, out);
		for (size_t i = 0; i < n; i++)
			st16(out + QR_HDR + 2 * i, z[i]);
		*dst_len = QR_HDR + src_len;
		return 0;
	}
	hdr_write(&h, out);
	uint8_t *q = out + QR_HDR;
	for (unsigned c = 0; c < QR_NCTX; c++) {
		*q++ = (uint8_t)mode[c];
		if (mode[c] == QR_CTX_CONST) {
			*q++ = (uint8_t)one[c];
		} else if (mode[c] == QR_CTX_HUFF) {
			unsigned lo = tab[c].lo, cnt = tab[c].hi - lo + 1;
			*q++ = (uint8_t)lo;
			*q++ = (uint8_t)cnt;
			memset(q, 0, (cnt + 1) / 2);
			for (unsigned i = 0; i < cnt; i++)
				q[i / 2] |=
				    (uint8_t)(tab[c].len[lo + i] << (4 * (i & 1)));
			q += (cnt + 1) / 2;
		}
	}
	uint8_t *sizes = q;
	q += 4 * (QR_SECTIONS - 1);
	for (unsigned sec = 0; sec < QR_SECTIONS; sec++) {
		unsigned k = sec % QR_STREAMS;
		bitw w = {q, 0, 0};
		for (size_t i = k; i < n; i += QR_STREAMS) {
			uint32_t base;
			unsigned nx, c = ctx[i], t = tok[i];
			qr_token_info(t, &base, &nx);
			unsigned len = mode[c] == QR_CTX_HUFF ? tab[c].len[t] : 0;
			int in = qr_inline(t, len);
			if (sec < QR_STREAMS && len)
				bitw_put(&w, tab[c].code[t], len);
			if (nx && (sec < QR_STREAMS) == in)
				bitw_put(&w, z[i] - base, nx);
		}
		bitw_flush(&w);
		size_t len = (size_t)(w.p - q);
		if (sec + 1 < QR_SECTIONS)
			mfs_le_put32(sizes + 4 * sec, (uint32_t)len);
		q = w.p;
	}
	*dst_len = (size_t)(q - out);
	return 0;
}

/* ---- decoder ---- */

/*
 * Decode tables: QR_NCTX tables of 2^QR_TAB_BITS u16 entries, indexed by
 * the context index (context << QR_TAB_BITS) plus the next QR_TAB_BITS
 * bits of the code stream; a code shorter than that fills every entry its
 * bits begin.  Entry bits 0-3: the bits taken (code, and inline raw bits);
 * bit 6 clear: a residual known from the entry, bits 7-15 (signed: within
 * +-256, qr_inline keeps inline tokens below 512 zigzagged); bit 6 set: bits 7-15 the
 * token, whose raw bits are the next in its stream's raw section, or QE_POISON_TOKEN for
 * a context the payload has no table for (an element there is damage: the references are
 * not the ones the chunk was encoded against).
 */
#define QE_SLOW		0x40u
#define QE_POISON_TOKEN 0x1ffu
#define QR_TAB_SIZE	(1u << QR_TAB_BITS)

_Static_assert(QR_NTOK < QE_POISON_TOKEN && QR_DIRECT <= 256,
	       "entries hold tokens, residuals");
_Static_assert(QR_TAB_BITS < 16, "code lengths fit bits 0-3");

static inline uint16_t qr_entry(unsigned t, unsigned len)
{
	uint32_t base;
	unsigned nx;
	qr_token_info(t, &base, &nx);
	if (!nx)
		return (uint16_t)((qr_unzigzag(base) << 7 | len) & 0xffff);
	return (uint16_t)(t << 7 | QE_SLOW | len);
}

/*
 * Fill the entries of token t, code length @p len, bit-reversed code
 * @p rev, in one context's table: one entry per value of the raw bits
 * when they are inline (qr_inline), else one entry for the code.
 */
static void fill_token(uint16_t *tab, unsigned t, unsigned len, unsigned rev)
{
	if (qr_inline(t, len)) {
		uint32_t base;
		unsigned nx;
		qr_token_info(t, &base, &nx);
		for (uint32_t x = 0; x < 1u << nx; x++) {
			uint16_t e =
			    (uint16_t)((qr_unzigzag(base + x) << 7 | (len + nx)) &
				       0xffff);
			for (unsigned j = rev | x << len; j < QR_TAB_SIZE;
			     j += 1u << (len + nx))
				tab[j] = e;
		}
		return;
	}
	uint16_t e = qr_entry(t, len);
	for (unsigned j = rev; j < QR_TAB_SIZE; j += 1u << len)
		tab[j] = e;
}

static unsigned bit_reverse(unsigned code, unsigned len)
{
	unsigned r = 0;
	for (unsigned i = 0; i < len; i++)
		r |= ((code >> i) & 1) << (len - 1 - i);
	return r;
}

/*
 * Parse the context descriptors at *pp (up to end) and build the decode
 * tables into @p tab (QR_NCTX * QR_TAB_SIZE entries).
 */
static int tables_read(const uint8_t **pp, const uint8_t *end, uint16_t *tab)
{
	const uint8_t *p = *pp;
	for (unsigned c = 0; c < QR_NCTX; c++, tab += QR_TAB_SIZE) {
		if (p >= end)
			return MFS_E_CORRUPT;
		unsigned mode = *p++;
		if (mode == QR_CTX_UNUSED) {
			for (unsigned j = 0; j < QR_TAB_SIZE; j++)
				tab[j] = QE_POISON_TOKEN << 7 | QE_SLOW;
			continue;
		}
		if (mode == QR_CTX_CONST) {
			if (p >= end || *p >= QR_NTOK)
				return MFS_E_CORRUPT;
			fill_token(tab, *p++, 0, 0);
			continue;
		}
		if (mode != QR_CTX_HUFF || end - p < 2)
			return MFS_E_CORRUPT;
		unsigned lo = p[0], cnt = p[1];
		p += 2;
		if (cnt < 2 || lo + cnt > QR_NTOK || (size_t)(end - p) < (cnt + 1) / 2)
			return MFS_E_CORRUPT;
		uint8_t len[QR_NTOK];
		unsigned count[QR_TAB_BITS + 1] = {0}, max_len = 0, present = 0;
		for (unsigned i = 0; i < cnt; i++) {
			unsigned l = (p[i / 2] >> (4 * (i & 1))) & 15;
			if (l > QR_TAB_BITS)
				return MFS_E_CORRUPT;
			len[i] = (uint8_t)l;
			count[l]++;
			if (l) {
				present++;
				max_len = l > max_len ? l : max_len;
			}
		}
		p += (cnt + 1) / 2;
		if (present < 2)
			return MFS_E_CORRUPT;
		uint32_t kraft = 0;
		for (unsigned l = 1; l <= max_len; l++)
			kraft += count[l] << (QR_TAB_BITS - l);
		if (kraft != QR_TAB_SIZE) /* a complete code */
			return MFS_E_CORRUPT;
		/* canonical codes: shorter first, then by token (as huff.h) */
		unsigned next[QR_TAB_BITS + 2] = {0}, code = 0;
		count[0] = 0;
		for (unsigned l = 1; l <= max_len; l++) {
			code = (code + count[l - 1]) << 1;
			next[l] = code;
		}
		for (unsigned i = 0; i < cnt; i++) {
			unsigned l = len[i];
			if (!l)
				continue;
			fill_token(tab, lo + i, l, bit_reverse(next[l]++, l));
		}
	}
	*pp = p;
	return 0;
}

/* The 64-bit window at bit @p pos of @p base (zeros past @p len bytes). */
static inline uint64_t window_tail(const uint8_t *base, size_t len, uint64_t pos)
{
	size_t byte = (size_t)(pos >> 3);
	if (byte + 8 <= len)
		return ld64(base + byte) >> (pos & 7);
	uint64_t v = 0;
	for (unsigned j = 0; j < 8 && byte + j < len; j++)
		v |= (uint64_t)base[byte + j] << (8 * j);
	return v >> (pos & 7);
}

/* Bit 63 of a window: after c bits are shifted out it sits at 63 - c. */
#define QR_SENTINEL ((uint64_t)1 << 63)

/* One element of a stream: its entry replaces its context index c[i]. */
#define QR_STEP(w, i)                                                                    \
	do {                                                                             \
		const uint16_t *t_ = tab + c[i]; /* off the window's chain */            \
		uint32_t e_ = t_[(uint32_t)(w) & (QR_TAB_SIZE - 1)];                     \
		(w) >>= e_ & 15;                                                         \
		c[i] = (uint16_t)e_;                                                     \
	} while (0)

/* Elements per stream per round of the fast loop */
#define QR_ROUND 6
/* Rounds per block: predicted, looked up, finished and written out together */
#define QR_BLOCK_ROUNDS 64

/* The sections of a payload and where decoding stands in each. */
typedef struct qr_streams {
	const uint16_t *tab;		 /* decode tables */
	const uint8_t *sec[QR_SECTIONS]; /* code streams, then raw sections */
	size_t len[QR_SECTIONS];
	uint64_t pos[QR_SECTIONS]; /* bits consumed in each */
	size_t n;
} qr_streams;

_Static_assert(QR_ROUND *QR_TAB_BITS + QR_TAB_BITS <= 57, "a round fits one window");

/*
 * Look up the elements [i, imax) (i a multiple of QR_STREAMS; element
 * i belongs to stream i % QR_STREAMS), in rounds of QR_ROUND elements per
 * stream, as far as every 8-byte load stays inside its stream (a round
 * moves a stream by at most QR_ROUND x QR_TAB_BITS bits; a window holds 57
 * bits below the sentinel's place, enough for a round and the next
 * lookup).  Element i looks its code up in the table at ce[i] (its context
 * index) and ce[i] becomes the entry; no branch depends on the data.  A
 * corrupt stream may be read past its end here (inside the payload): the
 * check on the bits each stream consumed catches it.  @return the element
 * reached.
 */
#define QR_PER_ROUND (QR_STREAMS * QR_ROUND)
#define DEFINE_QR_FAST(NAME, ATTR)                                                       \
	ATTR static size_t NAME(qr_streams *S, uint16_t *ce, size_t i, size_t imax)      \
	{                                                                                \
		const uint16_t *tab = S->tab;                                            \
		size_t r = (imax - (i < imax ? i : imax)) / QR_PER_ROUND;                \
		for (unsigned k = 0; k < QR_STREAMS; k++) {                              \
			size_t at = (size_t)(S->pos[k] >> 3);                            \
			size_t room = S->len[k] > at ? S->len[k] - at : 0;               \
			size_t t = room >= 8 + QR_ROUND ? (room - 8) / QR_ROUND : 0;     \
			r = t < r ? t : r;                                               \
		}                                                                        \
		if (r == 0)                                                              \
			return i;                                                        \
		const uint8_t *b[QR_STREAMS];                                            \
		uint64_t p[QR_STREAMS];                                                  \
		for (unsigned k = 0; k < QR_STREAMS; k++) {                              \
			b[k] = S->sec[k];                                                \
			p[k] = S->pos[k];                                                \
		}                                                                        \
		uint16_t *c = ce + i, *cend = c + QR_PER_ROUND * r;                      \
		do {                                                                     \
			uint64_t w[QR_STREAMS];                                          \
			for (unsigned k = 0; k < QR_STREAMS; k++)                        \
				w[k] = (ld64(b[k] + (p[k] >> 3)) >> (p[k] & 7)) |        \
				       QR_SENTINEL;                                      \
			for (unsigned u = 0; u < QR_ROUND; u++)                          \
				for (unsigned k = 0; k < QR_STREAMS; k++)                \
					QR_STEP(w[k], QR_STREAMS *u + k);                \
			for (unsigned k = 0; k < QR_STREAMS; k++)                        \
				p[k] += (uint64_t)__builtin_clzll(w[k]);                 \
			c += QR_PER_ROUND;                                               \
		} while (c < cend);                                                      \
		for (unsigned k = 0; k < QR_STREAMS; k++)                                \
			S->pos[k] = p[k];                                                \
		return i + QR_PER_ROUND * r;                                             \
	}

DEFINE_QR_FAST(qr_fast_base, )
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MFS_HUFF_NO_BMI2)
/* BMI2 and LZCNT: variable shifts without CL, a one-cycle clz (as huff.c) */
#define QR_BMI2 1
/* GCC checks LZCNT as part of ABM; clang 14 cannot check it, so it gets BMI2 alone */
#ifdef __clang__
#define QR_FAST_TARGET	 "bmi2"
#define QR_FAST_HAVE_CPU __builtin_cpu_supports("bmi2")
#else
#define QR_FAST_TARGET	 "bmi2,lzcnt"
#define QR_FAST_HAVE_CPU (__builtin_cpu_supports("bmi2") && __builtin_cpu_supports("abm"))
#endif
DEFINE_QR_FAST(qr_fast_bmi2, __attribute__((target(QR_FAST_TARGET))))
#endif

typedef size_t (*qr_fast_fn)(qr_streams *, uint16_t *, size_t, size_t);

/*
 * Elements [i0, i1) one at a time, each code checked against its stream's
 * end (the elements the fast loop did not reach).
 */
static int qr_lookup_tail(qr_streams *S, uint16_t *ce, size_t i0, size_t i1)
{
	for (size_t i = i0; i < i1; i++) {
		unsigned k = (unsigned)(i % QR_STREAMS);
		uint64_t p = S->pos[k];
		uint64_t w = window_tail(S->sec[k], S->len[k], p);
		uint32_t e = S->tab[ce[i] + ((uint32_t)w & (QR_TAB_SIZE - 1))];
		p += e & 15;
		if (p > 8 * (uint64_t)S->len[k])
			return MFS_E_CORRUPT;
		S->pos[k] = p;
		ce[i] = (uint16_t)e;
	}
	return 0;
}

/* One element whose entry has raw bits in the raw section (at bit *p of rb). */
static inline int qr_raw_one(const uint8_t *rb, size_t rlen, uint64_t *p, uint16_t *ent,
			     uint16_t *pred)
{
	unsigned t = *ent >> 7, nx;
	uint32_t base;
	if (t >= QR_NTOK)
		return MFS_E_CORRUPT; /* a context without a table */
	qr_token_info(t, &base, &nx);
	if (*p + nx > 8 * (uint64_t)rlen)
		return MFS_E_CORRUPT;
	uint32_t x = (uint32_t)window_tail(rb, rlen, *p) & ((1u << nx) - 1);
	*p += nx;
	*pred = (uint16_t)qr_apply(*pred, qr_unzigzag(base + x));
	*ent = 0;
	return 0;
}

/* SSE2 (x86-64's baseline); the portable test build (MFS_BP_NO_AVX2) scans scalar */
#if defined(__SSE2__) && !defined(MFS_BP_NO_AVX2)
#define QR_SSE2 1
#include <emmintrin.h>
#endif

/* The element at i with raw bits, from the raw section of its stream. */
static inline int qr_raw_at(qr_streams *S, uint16_t *ent, uint16_t *pred, size_t i)
{
	unsigned k = QR_STREAMS + (unsigned)(i % QR_STREAMS);
	return qr_raw_one(S->sec[k], S->len[k], &S->pos[k], ent + i, pred + i);
}

/*
 * Elements [i0, i1) after the lookup: each whose entry has raw bits takes
 * them from its stream's raw section (in order) and is finished here: its
 * prediction becomes the value, its entry 0 (residual 0).  Found 16 entries
 * at a time (SSE2: one mask of their bit 6), as most have none.
 */
static int qr_raw_fixup(qr_streams *S, uint16_t *ent, uint16_t *pred, size_t i0,
			size_t i1)
{
	size_t i = i0;
	int rc;
#ifdef QR_SSE2
	for (; i + 16 <= i1; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(ent + i));
		__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(ent + i + 8));
		/* bit 6 to each lane's sign, the lanes to bytes, their signs to a mask */
		unsigned m = (unsigned)_mm_movemask_epi8(
		    _mm_packs_epi16(_mm_slli_epi16(a, 9), _mm_slli_epi16(b, 9)));
		while (m) {
			if ((rc = qr_raw_at(S, ent, pred, i + (size_t)__builtin_ctz(m))) <
			    0)
				return rc;
			m &= m - 1;
		}
	}
#endif
	for (; i < i1; i++)
		if ((ent[i] & QE_SLOW) && (rc = qr_raw_at(S, ent, pred, i)) < 0)
			return rc;
	return 0;
}

/*
 * out[i] = the value from prediction pred[i] and entry ent[i]'s residual:
 * qr_apply in 16-bit lanes (vectorizes); out may be pred.
 */
static void qr_apply_entries(uint16_t *out, const uint16_t *pred,
			     const uint16_t *restrict ent, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint16_t p = pred[i], r = (uint16_t)((int16_t)ent[i] >> 7);
		uint16_t t = (uint16_t)(p + r);
		uint16_t flip = (uint16_t)((int16_t)(t ^ p) >> 15) & 0x7fff;
		out[i] = t ^ flip;
	}
}

/* Raw fix-ups, residuals and the copy out of elements [i0, i1). */
static int qr_finish(qr_streams *S, uint16_t *ent, uint16_t *pred, size_t i0, size_t i1,
		     uint8_t *dst)
{
	if (i0 >= i1)
		return 0;
	int rc = qr_raw_fixup(S, ent, pred, i0, i1);
	if (rc < 0)
		return rc;
	if (((uintptr_t)dst & 1) == 0) {
		qr_apply_entries((uint16_t *)(void *)(dst + 2 * i0), pred + i0, ent + i0,
				 i1 - i0);
	} else {
		qr_apply_entries(pred + i0, pred + i0, ent + i0, i1 - i0);
		memcpy(dst + 2 * i0, pred + i0, 2 * (i1 - i0));
	}
	return 0;
}

__attribute__((noinline)) static int qr_decode_body(const mfs_decode_req *rq,
						    mfs_codec_ws *ws)
{
	const uint8_t *src = rq->src;
	size_t src_len = rq->src_len;
	qr_hdr h;
	const uint8_t *codes, *scales;
	if (hdr_read(src, src_len, &h) ||
	    hdr_match(&h, rq->geom, rq->dst_len, rq->refs, rq->n_refs, &codes, &scales))
		return MFS_E_CORRUPT;
	size_t n = h.n;
	if (h.coding == QR_CODING_RAW && src_len != QR_HDR + 2 * n)
		return MFS_E_CORRUPT;
	/* blocks are written out while later ones still read the references */
	const uint8_t *d8 = rq->dst;
	size_t slen = (size_t)h.count * mfs_qk_scale_size(h.s.sdtype);
	if (n && ((codes < d8 + 2 * n && d8 < codes + n) ||
		  (slen && scales < d8 + 2 * n && d8 < scales + slen)))
		return MFS_E_INVAL;
	/* scratch A: predictions, context indices (then table entries), tables */
	size_t a16 = (2 * n + 63) & ~(size_t)63;
	size_t tab_bytes = (size_t)QR_NCTX * QR_TAB_SIZE * 2;
	uint8_t *scr = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_A, 2 * a16 + tab_bytes);
	if (!scr)
		return -ENOMEM;
	uint16_t *pred = (uint16_t *)scr, *cidx = (uint16_t *)(scr + a16);
	uint16_t *tab = (uint16_t *)(scr + 2 * a16);
	uint8_t *dst = rq->dst;
	qr_pred P;
	void *lut_mem = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_B, QR_PRED_SCRATCH);
	if (!lut_mem)
		return -ENOMEM;
	qr_pred_init(&P, &h, codes, scales, lut_mem);
	if (h.coding == QR_CODING_RAW) {
		qr_predict(&P, 0, n, pred, cidx);
		for (size_t i = 0; i < n; i++)
			pred[i] = (uint16_t)qr_apply(
			    pred[i], qr_unzigzag(ld16(src + QR_HDR + 2 * i)));
		memcpy(dst, pred, 2 * n);
		return 0;
	}
	qr_streams S = {.tab = tab, .n = n};
	const uint8_t *p = src + QR_HDR, *end = src + src_len;
	int rc = tables_read(&p, end, tab);
	if (rc < 0)
		return rc;
	if ((size_t)(end - p) < 4 * (QR_SECTIONS - 1))
		return MFS_E_CORRUPT;
	const uint8_t *at = p + 4 * (QR_SECTIONS - 1);
	for (unsigned k = 0; k < QR_SECTIONS; k++) {
		size_t left = (size_t)(end - at);
		size_t l = k + 1 < QR_SECTIONS ? mfs_le_get32(p + 4 * k) : left;
		if (l > left)
			return MFS_E_CORRUPT;
		S.sec[k] = at;
		S.len[k] = l;
		at += l;
	}
	qr_fast_fn fast = qr_fast_base;
#ifdef QR_BMI2
	if (QR_FAST_HAVE_CPU)
		fast = qr_fast_bmi2;
#endif
	/*
	 * Blocks of QR_BLOCK_ROUNDS rounds, predicted, looked up, finished
	 * and copied out while they are in the cache; ip: elements predicted,
	 * id: looked up and out.
	 */
	size_t ip = 0, id = 0, full = n - n % QR_PER_ROUND;
	while (id < full) {
		size_t in = id + QR_PER_ROUND * QR_BLOCK_ROUNDS;
		in = in < full ? in : full;
		qr_predict(&P, ip, in, pred, cidx);
		ip = in;
		size_t i2 = fast(&S, cidx, id, in);
		if (i2 == id)
			break;
		if ((rc = qr_finish(&S, cidx, pred, id, i2, dst)) < 0)
			return rc;
		id = i2;
	}
	/* the rest, checked code by code */
	qr_predict(&P, ip, n, pred, cidx);
	if ((rc = qr_lookup_tail(&S, cidx, id, n)) < 0 ||
	    (rc = qr_finish(&S, cidx, pred, id, n, dst)) < 0)
		return rc;
	/* every section must end in its last byte */
	for (unsigned k = 0; k < QR_SECTIONS; k++)
		if (S.pos[k] > 8 * (uint64_t)S.len[k] ||
		    S.pos[k] + 8 <= 8 * (uint64_t)S.len[k])
			return MFS_E_CORRUPT;
	return 0;
}

/*
 * The entry points: the whole encode and decode run in the IEEE
 * environment (quant_kernel.h); the bodies are out of line so no float
 * operation moves across the switch.
 */
static int qr_encode(const mfs_encode_params *prm, const void *src, size_t src_len,
		     void *dst, size_t dst_cap, size_t *dst_len, mfs_codec_ws *ws)
{
	mfs_qk_fpenv env;
	mfs_qk_fpenv_enter(&env);
	int rc = qr_encode_body(prm, src, src_len, dst, dst_cap, dst_len, ws);
	mfs_qk_fpenv_leave(&env);
	return rc;
}

static int qr_decode(const mfs_decode_req *rq, mfs_codec_ws *ws)
{
	mfs_qk_fpenv env;
	mfs_qk_fpenv_enter(&env);
	int rc = qr_decode_body(rq, ws);
	mfs_qk_fpenv_leave(&env);
	return rc;
}

const mfs_codec mfs_codec_quant_residual = {
    .id = MFS_CODEC_QUANT_RESIDUAL,
    .name = "quant-residual",
    .flags = MFS_CODEC_NEEDS_REF,
    .bound = qr_bound,
    .encode = qr_encode,
    .decode = qr_decode,
};
