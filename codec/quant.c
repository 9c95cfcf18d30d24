/*
 * quant.c - quantization schemes from shapes, the scale span of a run of
 * elements, and the reference quantizer (quant.h).
 */
#include "quant.h"

#include "quant_kernel.h"

static int is_hp(mfs_dtype dt)
{
	return dt == MFS_DT_BF16 || dt == MFS_DT_F16;
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

int mfs_quant_scheme_check(const mfs_quant_scheme *s)
{
	uint64_t total;
	if (!s || (s->qdtype != MFS_DT_I8 && s->qdtype != MFS_DT_F8_E4M3) ||
	    !mfs_qk_scale_size(s->sdtype) || !s->rows || !s->cols ||
	    __builtin_mul_overflow(s->rows, s->cols, &total))
		return MFS_E_INVAL;
	switch (s->kind) {
	case MFS_QUANT_TENSOR:
	case MFS_QUANT_CHANNEL:
		return 0;
	case MFS_QUANT_GROUP:
		return s->group && s->cols % s->group == 0 ? 0 : MFS_E_INVAL;
	case MFS_QUANT_BLOCK:
		return is_pow2(s->block_r) && is_pow2(s->block_c) &&
			       s->block_r <= MFS_QUANT_BLOCK_MAX &&
			       s->block_c <= MFS_QUANT_BLOCK_MAX
			   ? 0
			   : MFS_E_INVAL;
	}
	return MFS_E_INVAL;
}

/*
 * The power-of-two tile side b <= MFS_QUANT_BLOCK_MAX with ceil(len / b) ==
 * tiles, preferring @p prefer when it fits (all sides that fit mean the
 * same tiles only when tiles == 1); 0 when none fits.
 */
static uint32_t tile_side(uint64_t len, uint64_t tiles, uint32_t prefer)
{
	if (prefer && ceil_div(len, prefer) == tiles)
		return prefer;
	for (uint32_t b = 1; b <= MFS_QUANT_BLOCK_MAX; b <<= 1)
		if (ceil_div(len, b) == tiles)
			return b;
	return 0;
}

int mfs_quant_scheme_from_shapes(mfs_dtype hp, uint32_t ndim, const uint64_t *shape,
				 mfs_dtype qdtype, mfs_dtype sdtype, uint32_t sndim,
				 const uint64_t *sshape, mfs_quant_scheme *out)
{
	if (!is_hp(hp) || !ndim || !shape || (sndim && !sshape))
		return MFS_E_UNSUPPORTED;
	mfs_quant_scheme s = {
	    .qdtype = qdtype, .sdtype = sdtype, .rows = shape[0], .cols = 1};
	for (uint32_t i = 1; i < ndim; i++)
		if (__builtin_mul_overflow(s.cols, shape[i], &s.cols))
			return MFS_E_UNSUPPORTED;
	s.kind = MFS_QUANT_TENSOR; /* for the check; the kind is chosen below */
	if (mfs_quant_scheme_check(&s))
		return MFS_E_UNSUPPORTED;

	uint64_t scount = 1;
	unsigned non_one = 0;
	for (uint32_t i = 0; i < sndim; i++) {
		if (__builtin_mul_overflow(scount, sshape[i], &scount))
			return MFS_E_UNSUPPORTED;
		non_one += sshape[i] != 1;
	}
	if (scount == 1) {
		s.kind = MFS_QUANT_TENSOR;
	} else if (sndim >= 1 && sshape[0] == s.rows && non_one == 1) {
		s.kind = MFS_QUANT_CHANNEL; /* [rows] or [rows, 1, ...] */
	} else if (sndim == 2 && sshape[0] == s.rows && s.cols % sshape[1] == 0 &&
		   sshape[1] > 1) {
		s.kind = MFS_QUANT_GROUP;
		if (s.cols / sshape[1] > UINT32_MAX)
			return MFS_E_UNSUPPORTED;
		s.group = (uint32_t)(s.cols / sshape[1]);
	} else if (sndim == 2 && sshape[0] && sshape[1]) {
		s.kind = MFS_QUANT_BLOCK;
		/* a side with one tile takes the other side's size when it fits */
		uint32_t br = sshape[0] > 1 ? tile_side(s.rows, sshape[0], 0) : 0;
		uint32_t bc = sshape[1] > 1 ? tile_side(s.cols, sshape[1], 0) : 0;
		if (!br)
			br = tile_side(s.rows, sshape[0], bc);
		if (!bc)
			bc = tile_side(s.cols, sshape[1], br);
		if (!br || !bc)
			return MFS_E_UNSUPPORTED;
		s.block_r = br;
		s.block_c = bc;
	} else {
		return MFS_E_UNSUPPORTED;
	}
	if (mfs_quant_scheme_check(&s))
		return MFS_E_UNSUPPORTED;
	*out = s;
	return 0;
}

uint64_t mfs_quant_scale_count(const mfs_quant_scheme *s)
{
	if (mfs_quant_scheme_check(s))
		return 0;
	switch (s->kind) {
	case MFS_QUANT_TENSOR:
		return 1;
	case MFS_QUANT_CHANNEL:
		return s->rows;
	case MFS_QUANT_GROUP:
		return s->rows * (s->cols / s->group); /* <= rows * cols */
	case MFS_QUANT_BLOCK:
		return ceil_div(s->rows, s->block_r) * ceil_div(s->cols, s->block_c);
	}
	return 0;
}

void mfs_quant_scale_span(const mfs_quant_scheme *s, uint64_t e0, uint64_t n,
			  uint64_t *first, uint64_t *count)
{
	*first = *count = 0;
	if (!n || mfs_quant_scheme_check(s))
		return;
	uint64_t e1 = e0 + n - 1; /* last element */
	uint64_t r0 = e0 / s->cols, r1 = e1 / s->cols;
	switch (s->kind) {
	case MFS_QUANT_TENSOR:
		*count = 1;
		return;
	case MFS_QUANT_CHANNEL:
		*first = r0;
		*count = r1 - r0 + 1;
		return;
	case MFS_QUANT_GROUP: {
		uint64_t g = s->cols / s->group;
		uint64_t i0 = r0 * g + (e0 % s->cols) / s->group;
		uint64_t i1 = r1 * g + (e1 % s->cols) / s->group;
		*first = i0;
		*count = i1 - i0 + 1;
		return;
	}
	case MFS_QUANT_BLOCK: {
		uint64_t nbc = ceil_div(s->cols, s->block_c);
		uint64_t t0 = r0 / s->block_r, t1 = r1 / s->block_r;
		*first = t0 * nbc;
		*count = (t1 - t0 + 1) * nbc;
		return;
	}
	}
}

/* ---- the reference quantizer ---- */

/* x rounded half to even, clamped to [-128, 127]; NaN -> 0. */
static uint8_t quant_i8(float x)
{
	if (x != x)
		return 0;
	if (x >= 127.5f)
		return 127;
	if (x <= -128.5f)
		return (uint8_t)-128;
	int v = (int)x; /* toward zero; then the floor */
	if ((float)v > x)
		v--;
	float d = x - (float)v; /* exact: |x| < 2^8 */
	if (d > 0.5f || (d == 0.5f && (v & 1)))
		v++;
	if (v > 127)
		v = 127;
	if (v < -128)
		v = -128;
	return (uint8_t)(int8_t)v;
}

/* x on the E4M3FN grid, nearest even, saturating at 448; NaN -> 0x7f. */
static uint8_t quant_e4m3(float x)
{
	uint32_t b = mfs_qk_bits(x);
	uint8_t sign = (uint8_t)(b >> 24 & 0x80);
	uint32_t a = b & 0x7fffffffu;
	if (a > 0x7f800000u)
		return 0x7f;
	if (a >= 0x43e00000u) /* 448 and up, infinity too */
		return sign | 0x7e;
	if (a < 0x3c800000u) { /* below 2^-6: subnormal steps of 2^-9 */
		float y = mfs_qk_f32(a) * 512.0f; /* exact: a power of two */
		unsigned m = (unsigned)y;	  /* the floor: y >= 0 */
		float d = y - (float)m;
		if (d > 0.5f || (d == 0.5f && (m & 1)))
			m++;
		return sign | (uint8_t)m; /* m == 8 is 2^-6, code 0x08 */
	}
	/* normal: keep 3 mantissa bits, ties to even; a carry bumps the exponent */
	a += 0x7ffffu + ((a >> 20) & 1);
	uint32_t e = (a >> 23) - 120, m = (a >> 20) & 7;
	return sign | (uint8_t)(e << 3 | m); /* < 448 rounds to at most 0x7e */
}

/* The quantizing loop, out of line so the environment switch brackets it. */
__attribute__((noinline)) static void
quantize_run(const mfs_quant_scheme *s, mfs_dtype hpdt, const uint8_t *hp, uint64_t e0,
	     size_t n, const uint8_t *scales, uint64_t first, uint8_t *codes)
{
	uint64_t g = s->kind == MFS_QUANT_GROUP ? s->cols / s->group : 0;
	uint64_t nbc = s->kind == MFS_QUANT_BLOCK ? ceil_div(s->cols, s->block_c) : 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t e = e0 + i, r = e / s->cols, c = e % s->cols, si = 0;
		switch (s->kind) {
		case MFS_QUANT_TENSOR:
			si = 0;
			break;
		case MFS_QUANT_CHANNEL:
			si = r;
			break;
		case MFS_QUANT_GROUP:
			si = r * g + c / s->group;
			break;
		case MFS_QUANT_BLOCK:
			si = (r / s->block_r) * nbc + c / s->block_c;
			break;
		}
		uint32_t h = (uint32_t)hp[2 * i] | (uint32_t)hp[2 * i + 1] << 8;
		float v = mfs_qk_f32(hpdt == MFS_DT_BF16 ? mfs_qk_bf16_to_f32(h)
							 : mfs_qk_f16_to_f32(h));
		float sc = mfs_qk_f32(mfs_qk_scale_bits(scales, s->sdtype, si - first));
		float x = v / sc;
		codes[i] = s->qdtype == MFS_DT_I8 ? quant_i8(x) : quant_e4m3(x);
	}
}

int mfs_quant_quantize(const mfs_quant_scheme *s, mfs_dtype hpdt, const void *hp,
		       uint64_t e0, size_t n, const void *scales, size_t scales_len,
		       uint8_t *codes)
{
	if (mfs_quant_scheme_check(s) || !is_hp(hpdt))
		return MFS_E_INVAL;
	uint64_t total = s->rows * s->cols;
	if (e0 > total || n > total - e0)
		return MFS_E_INVAL;
	uint64_t first, count;
	mfs_quant_scale_span(s, e0, n, &first, &count);
	uint64_t need;
	if (__builtin_mul_overflow(count, (uint64_t)mfs_qk_scale_size(s->sdtype),
				   &need) ||
	    need != scales_len)
		return MFS_E_INVAL;
	if (!n)
		return 0;
	if (!hp || !scales || !codes)
		return MFS_E_INVAL;
	mfs_qk_fpenv env;
	mfs_qk_fpenv_enter(&env);
	quantize_run(s, hpdt, hp, e0, n, scales, first, codes);
	mfs_qk_fpenv_leave(&env);
	return 0;
}
