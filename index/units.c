/*
 * units.c - mfs_size_parse (units.h), in integers only: a double would
 * round sizes above 2^53 and let strtod's exponents and hex in.
 */
#include "units.h"

#include <stdio.h>

#include "err.h"

#define FRAC_DIGITS_MAX 18 /* 10^18 and twice it fit in a uint64_t */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int mfs_size_parse(const char *s, uint64_t *out)
{
	if (!s || !is_digit(*s))
		return MFS_E_INVAL;
	uint64_t whole = 0;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (whole > (UINT64_MAX - d) / 10)
			return MFS_E_INVAL;
		whole = whole * 10 + d;
	}
	/* the fraction as num / den, den = 10^digits */
	uint64_t num = 0, den = 1;
	if (*s == '.') {
		s++;
		if (!is_digit(*s))
			return MFS_E_INVAL;
		for (int n = 0; is_digit(*s); s++, n++) {
			if (n == FRAC_DIGITS_MAX)
				return MFS_E_INVAL;
			num = num * 10 + (uint64_t)(*s - '0');
			den *= 10;
		}
	}
	unsigned shift = 0;
	switch (*s) {
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	case 't': case 'T':
		shift = 40;
		break;
	default:
		break;
	}
	if (shift) {
		s++;
		if (*s == 'i' || *s == 'I')
			s++;
	}
	if (*s == 'b' || *s == 'B')
		s++;
	if (*s || (num && !shift))
		return MFS_E_INVAL; /* trailing text, or a fraction of a byte */
	if (whole > UINT64_MAX >> shift)
		return MFS_E_INVAL;
	/* floor(num * 2^shift / den), one bit at a time: rem < den <= 10^18,
	 * so 2 * rem never overflows */
	uint64_t frac = 0, rem = num;
	for (unsigned i = 0; i < shift; i++) {
		rem *= 2;
		frac *= 2;
		if (rem >= den) {
			rem -= den;
			frac++;
		}
	}
	uint64_t bytes = whole << shift;
	if (frac > UINT64_MAX - bytes)
		return MFS_E_INVAL;
	*out = bytes + frac;
	return 0;
}

char *mfs_size_format(uint64_t bytes, char *buf, size_t cap)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1000 && u < 5)
		v /= 1000, u++;
	if (u == 0)
		snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, cap, "%.1f %s", v, units[u]);
	return buf;
}
