/*
 * quant_kernel.h - the bit-exact float helpers quant.c and quant_residual.c
 * share: 16-bit float <-> binary32 conversions, E4M3FN codes, the scale
 * element loader and the guard that puts the floating-point environment in
 * the IEEE default (round to nearest even, subnormals kept) for the span of
 * a call.  Internal to codec/.
 *
 * Conversions to a 16-bit type round to nearest even on integers only, and
 * give one canonical quiet NaN (BF16 0x7fc0, F16 0x7e00) for every NaN, so
 * the result does not depend on which NaN payload a machine's multiplier
 * propagates.  Conversions to binary32 are exact.
 */
#ifndef MFS_QUANT_KERNEL_H
#define MFS_QUANT_KERNEL_H

#include <float.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"

/*
 * The product and quotient must be rounded once, to binary32.  C11 without
 * GNU extensions gives -fexcess-precision=standard, which makes an
 * assignment to a float round; on a machine that evaluates in a wider
 * format the product of two floats is still exact there (48 bits), so the
 * one rounding on assignment is IEEE's.  The build also sets
 * -ffp-contract=off for these files (there is nothing to fuse, but it
 * documents the rule).
 */
#if !defined(FLT_EVAL_METHOD) ||                                                         \
    (FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != 1 && FLT_EVAL_METHOD != 2)
#error "quant: unknown float evaluation method"
#endif

static inline float mfs_qk_f32(uint32_t b)
{
	float f;
	memcpy(&f, &b, 4);
	return f;
}

static inline uint32_t mfs_qk_bits(float f)
{
	uint32_t b;
	memcpy(&b, &f, 4);
	return b;
}

/* BF16 bits -> binary32 bits (exact). */
static inline uint32_t mfs_qk_bf16_to_f32(uint32_t h)
{
	return (h & 0xffffu) << 16;
}

/* F16 bits -> binary32 bits (exact, subnormals normalized). */
static inline uint32_t mfs_qk_f16_to_f32(uint32_t h)
{
	uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
	if (e == 31)
		return s | 0x7f800000u | m << 13;
	if (e)
		return s | (e + 112) << 23 | m << 13;
	if (!m)
		return s;
	/* subnormal: m * 2^-24, m < 2^10; normalize so the top bit is bit 10 */
	unsigned sh = 0;
	while (!(m & 0x400)) {
		m <<= 1;
		sh++;
	}
	return s | (113 - sh) << 23 | (m & 0x3ff) << 13;
}

/* binary32 bits -> BF16 bits, round to nearest even, NaN -> 0x7fc0. */
static inline uint32_t mfs_qk_f32_to_bf16(uint32_t x)
{
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return 0x7fc0;
	return (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
}

/* binary32 bits -> F16 bits, round to nearest even (subnormals, overflow to
 * infinity), NaN -> 0x7e00. */
static inline uint32_t mfs_qk_f32_to_f16(uint32_t x)
{
	uint32_t s = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
	if (a > 0x7f800000u)
		return 0x7e00;
	if (a >= 0x477ff000u) /* >= 65520: rounds past 65504 */
		return s | 0x7c00;
	if (a >= 0x38800000u) { /* a normal half (2^-14 and up) */
		a += 0xfffu + ((a >> 13) & 1);
		return s | ((a >> 13) - (112u << 10));
	}
	/* subnormal half: a value below 2^-14 in units of 2^-24 */
	uint32_t e = a >> 23;
	if (e < 101) /* below 2^-26: rounds to zero */
		return s;
	uint32_t m = (a & 0x7fffffu) | 0x800000u;
	unsigned sh = 126 - e; /* 14..25 */
	uint32_t h = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
	if (rem > half || (rem == half && (h & 1)))
		h++;
	return s | h;
}

/* E4M3FN code -> binary32 bits (exact); 0x7f and 0xff are NaN. */
static inline uint32_t mfs_qk_e4m3_to_f32(unsigned c)
{
	uint32_t s = (uint32_t)(c & 0x80) << 24, e = (c >> 3) & 15, m = c & 7;
	if ((c & 0x7f) == 0x7f)
		return s | 0x7fc00000u;
	if (e)
		return s | (e + 120) << 23 | m << 20;
	if (!m)
		return s;
	/* m * 2^-9 */
	unsigned sh = 0;
	while (!(m & 8)) {
		m <<= 1;
		sh++;
	}
	return s | (121 - sh) << 23 | (m & 7) << 20;
}

/* Bytes of one scale element, 0 for a dtype that is not a scale type. */
static inline unsigned mfs_qk_scale_size(mfs_dtype dt)
{
	return dt == MFS_DT_F32 ? 4 : (dt == MFS_DT_BF16 || dt == MFS_DT_F16) ? 2 : 0;
}

/* Scale element @p i of @p p (little-endian, dtype @p dt) as binary32 bits. */
static inline uint32_t mfs_qk_scale_bits(const uint8_t *p, mfs_dtype dt, uint64_t i)
{
	if (dt == MFS_DT_F32) {
		const uint8_t *q = p + 4 * i;
		return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
		       (uint32_t)q[3] << 24;
	}
	const uint8_t *q = p + 2 * i;
	uint32_t h = (uint32_t)q[0] | (uint32_t)q[1] << 8;
	return dt == MFS_DT_BF16 ? mfs_qk_bf16_to_f32(h) : mfs_qk_f16_to_f32(h);
}

/* ---- the floating-point environment ---- */

/* What mfs_qk_fpenv_enter() saved. */
typedef struct mfs_qk_fpenv {
	uint64_t saved;
} mfs_qk_fpenv;

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#include <xmmintrin.h>
/* MXCSR: flush-to-zero (bit 15), denormals-are-zero (bit 6), rounding (13-14) */
static inline void mfs_qk_fpenv_enter(mfs_qk_fpenv *e)
{
	unsigned csr = _mm_getcsr();
	e->saved = csr;
	_mm_setcsr(csr & ~(0x8000u | 0x0040u | 0x6000u));
}
static inline void mfs_qk_fpenv_leave(const mfs_qk_fpenv *e)
{
	_mm_setcsr((unsigned)e->saved);
}
#elif defined(__aarch64__)
/* FPCR: flush-to-zero (bit 24), rounding mode (22-23), alternate half (26) */
static inline void mfs_qk_fpenv_enter(mfs_qk_fpenv *e)
{
	uint64_t r;
	__asm__ __volatile__("mrs %0, fpcr" : "=r"(r));
	e->saved = r;
	r &= ~(((uint64_t)1 << 24) | ((uint64_t)3 << 22) | ((uint64_t)1 << 26));
	__asm__ __volatile__("msr fpcr, %0" : : "r"(r) : "memory");
}
static inline void mfs_qk_fpenv_leave(const mfs_qk_fpenv *e)
{
	__asm__ __volatile__("msr fpcr, %0" : : "r"(e->saved) : "memory");
}
#else
/* Elsewhere the default environment (IEEE) is assumed. */
static inline void mfs_qk_fpenv_enter(mfs_qk_fpenv *e)
{
	e->saved = 0;
}
static inline void mfs_qk_fpenv_leave(const mfs_qk_fpenv *e)
{
	(void)e;
}
#endif

#endif
