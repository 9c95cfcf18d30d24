/*
 * test_units.c - mfs_size_parse: every form it takes (what the mount and
 * `ingest --chunk-size` both accept now), every form it refuses, the limits
 * at 2^64, random whole and fractional sizes against their value; and what
 * mfs_size_format writes.
 */
#include <string.h>

#include "err.h"
#include "testhelp.h"
#include "units.h"

static int parses(const char *s, uint64_t want)
{
	uint64_t v = 0xdeadbeef;
	int rc = mfs_size_parse(s, &v);
	if (rc != 0 || v != want) {
		fprintf(stderr, "  \"%s\": rc %d, %llu (want %llu)\n", s, rc,
			(unsigned long long)v, (unsigned long long)want);
		return 0;
	}
	return 1;
}

static int refuses(const char *s)
{
	uint64_t v = 12345;
	int rc = mfs_size_parse(s, &v);
	if (rc != MFS_E_INVAL || v != 12345) {
		fprintf(stderr, "  \"%s\": rc %d, %llu (want MFS_E_INVAL, untouched)\n", s, rc,
			(unsigned long long)v);
		return 0;
	}
	return 1;
}

static void test_accepted(void)
{
	CHECK(parses("0", 0));
	CHECK(parses("123456", 123456));
	CHECK(parses("4096B", 4096));
	CHECK(parses("4096b", 4096));
	CHECK(parses("1K", 1024));
	CHECK(parses("1k", 1024));
	CHECK(parses("64KiB", 64 << 10));
	CHECK(parses("64kib", 64 << 10));
	CHECK(parses("64KB", 64 << 10));
	CHECK(parses("64Ki", 64 << 10));
	CHECK(parses("16K", 16 << 10)); /* the e2e tests' --chunk-size */
	CHECK(parses("512M", 512ull << 20));
	CHECK(parses("2G", 2ull << 30));
	CHECK(parses("2g", 2ull << 30));
	CHECK(parses("1T", 1ull << 40));
	CHECK(parses("007M", 7ull << 20));
	/* fractions, which `ingest --chunk-size` refused before */
	CHECK(parses("1.5G", 3ull << 29));
	CHECK(parses("1.5M", 3ull << 19));
	CHECK(parses("0.5K", 512));
	CHECK(parses("0.25T", 1ull << 38));
	CHECK(parses("1.0001K", 1024)); /* rounded down to whole bytes */
	CHECK(parses("0.999999999999999999T", (1ull << 40) - 1));
	CHECK(parses("1.0", 1));
	CHECK(parses("2.000B", 2));
	/* the limits */
	CHECK(parses("18446744073709551615", UINT64_MAX));
	CHECK(parses("16777215T", (16777215ull << 40)));
	CHECK(parses("16777215.5T", (16777215ull << 40) + (1ull << 39)));
	CHECK(parses("16777215.999999999999999999T", UINT64_MAX)); /* 18 digits */
	CHECK(parses("9007199254740993", 9007199254740993ull)); /* 2^53 + 1: exact */
}

static void test_refused(void)
{
	CHECK(mfs_size_parse(NULL, &(uint64_t){0}) == MFS_E_INVAL);
	static const char *const bad[] = {
	    "", "G", "K1", "-1", "-1G", "+1G", " 1G", "1G ", "1 G", "\t1", "2X", "1Q",
	    "1.5", "1.5B", "0.1", "1.", "1.G", ".5G", ".", "1..5G", "1.5.5G", "1e3", "1E3K",
	    "0x10", "0x1p20", "inf", "nan", "5i", "5iB", "1GG", "1GiBB", "1Gb2", "1P",
	    "1,5G", "1_000", "18446744073709551616", "99999999999999999999",
	    "16777216T", "17179869184G", "16777215.9999999999999999999T",
	    "1.0000000000000000001K",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(refuses(bad[i]));
}

/* Random sizes written as a person would, parsed back exactly. */
static void test_random(void)
{
	uint64_t seed = (uint64_t)time(NULL);
	fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
	static const char units[] = "KMGT";
	int ok = 0;
	for (int i = 0; i < 20000; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t r = seed >> 11;
		char buf[64];
		unsigned u = (unsigned)(r % 4);
		unsigned shift = 10 * (u + 1);
		uint64_t whole = (r >> 2) % 100000;
		unsigned quarters = (unsigned)((r >> 20) % 4);
		/* whole and a quarter of a unit: exact in binary */
		snprintf(buf, sizeof buf, "%llu%s%c%s", (unsigned long long)whole,
			 quarters == 0 ? "" : quarters == 1 ? ".25" : quarters == 2 ? ".5" : ".75",
			 (r >> 30) & 1 ? units[u] : (char)(units[u] + 32), (r >> 31) & 1 ? "iB" : "");
		uint64_t want = (whole << shift) + ((uint64_t)quarters << (shift - 2));
		ok += parses(buf, want);
		snprintf(buf, sizeof buf, "%llu", (unsigned long long)r);
		ok += parses(buf, r);
	}
	CHECK_EQ_INT(ok, 40000);
}

/* What people read: bytes below 1000 exact, then one decimal, decimal units. */
static void test_format(void)
{
	char b[24];
	CHECK(strcmp(mfs_size_format(0, b, sizeof b), "0 B") == 0);
	CHECK(strcmp(mfs_size_format(999, b, sizeof b), "999 B") == 0);
	CHECK(strcmp(mfs_size_format(1000, b, sizeof b), "1.0 kB") == 0);
	CHECK(strcmp(mfs_size_format(91300000, b, sizeof b), "91.3 MB") == 0);
	CHECK(strcmp(mfs_size_format((uint64_t)4 << 30, b, sizeof b), "4.3 GB") == 0);
	CHECK(strcmp(mfs_size_format(UINT64_MAX, b, sizeof b), "18446.7 PB") == 0);
	char small[4];
	CHECK(strcmp(mfs_size_format(91300000, small, sizeof small), "91.") == 0);
}

int main(void)
{
	RUN(test_accepted);
	RUN(test_refused);
	RUN(test_format);
	RUN(test_random);
	return test_report();
}
