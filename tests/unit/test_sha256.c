/* test_sha256.c - SHA-256 and SHA-1 against FIPS 180 vectors, streaming, and
 * the SHA-NI block function against the portable one. */
#include <time.h>

#include "testhelp.h"

#include "sha256.h"
#include "sha256_internal.h"

static uint64_t seed;

static void hex_of(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static int sha256_is(const void *data, size_t len, const char *want)
{
	uint8_t d[32];
	char hex[65];

	mfs_sha256(data, len, d);
	mfs_sha256_hex(d, hex);
	if (strcmp(hex, want) != 0) {
		fprintf(stderr, "  sha256 of %zu bytes: got %s want %s\n", len, hex,
			want);
		return 0;
	}
	return 1;
}

static int sha1_is(const void *data, size_t len, const char *want)
{
	mfs_sha1_ctx c;
	uint8_t d[20];
	char hex[41];

	mfs_sha1_init(&c);
	mfs_sha1_update(&c, data, len);
	mfs_sha1_final(&c, d);
	hex_of(d, 20, hex);
	if (strcmp(hex, want) != 0) {
		fprintf(stderr, "  sha1 of %zu bytes: got %s want %s\n", len, hex, want);
		return 0;
	}
	return 1;
}

static const char msg448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
static const char msg896[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
			     "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";

static void test_sha256_vectors(void)
{
	CHECK(sha256_is(
	    "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	CHECK(sha256_is(
	    "abc", 3,
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	CHECK(sha256_is(
	    msg448, strlen(msg448),
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
	CHECK(sha256_is(
	    msg896, strlen(msg896),
	    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));

	size_t n = 1000000;
	char *a = malloc(n);
	REQUIRE(a);
	memset(a, 'a', n);
	CHECK(sha256_is(
	    a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
	free(a);
}

/* Lengths around the padding boundaries (55/56/63/64 bytes) hash the same
 * one-shot and streamed byte by byte or in odd pieces. */
static void test_sha256_streaming(void)
{
	size_t n = 5000;
	uint8_t *buf = malloc(n);
	REQUIRE(buf);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)test_rand(&seed);

	const size_t lens[] = {0,   1,	 55,  56,  57,	63,   64,   65,
			       119, 120, 127, 128, 129, 1000, 4095, 5000};
	for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
		size_t len = lens[li];
		uint8_t one[32], bytes[32], odd[32];
		mfs_sha256_ctx c;

		mfs_sha256(buf, len, one);

		mfs_sha256_init(&c);
		for (size_t i = 0; i < len; i++)
			mfs_sha256_update(&c, buf + i, 1);
		mfs_sha256_final(&c, bytes);
		CHECK(memcmp(one, bytes, 32) == 0);

		mfs_sha256_init(&c);
		size_t off = 0;
		while (off < len) {
			size_t piece = 1 + test_rand(&seed) % 150;
			if (piece > len - off)
				piece = len - off;
			mfs_sha256_update(&c, buf + off, piece);
			mfs_sha256_update(&c, buf + off, 0);
			off += piece;
		}
		mfs_sha256_final(&c, odd);
		CHECK(memcmp(one, odd, 32) == 0);
	}

	/* The million 'a's in pieces of 7, 13 and 1023 bytes. */
	const size_t pieces[] = {7, 13, 1023};
	for (size_t pi = 0; pi < 3; pi++) {
		char chunk[1023];
		mfs_sha256_ctx c;
		uint8_t d[32];
		char hex[65];

		memset(chunk, 'a', sizeof chunk);
		mfs_sha256_init(&c);
		for (size_t left = 1000000; left;) {
			size_t k = left < pieces[pi] ? left : pieces[pi];
			mfs_sha256_update(&c, chunk, k);
			left -= k;
		}
		mfs_sha256_final(&c, d);
		mfs_sha256_hex(d, hex);
		CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
				  "f1809a48a497200e046d39ccc7112cd0") == 0);
	}
	free(buf);
}

/* SHA-256 of a short message through one block function, padded by hand, so
 * each path meets the vectors whichever one the public API picks. */
static void sha256_via(void (*blocks)(uint32_t *, const uint8_t *, size_t),
		       const char *msg, char hex[65])
{
	static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	uint8_t buf[192] = {0}, d[32];
	uint32_t h[8];
	size_t len = strlen(msg), nb = (len + 8) / 64 + 1;
	uint64_t bits = (uint64_t)len * 8;

	memcpy(h, h0, sizeof h);
	memcpy(buf, msg, len);
	buf[len] = 0x80;
	for (int i = 0; i < 8; i++)
		buf[nb * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
	blocks(h, buf, nb);
	for (int i = 0; i < 8; i++)
		for (int k = 0; k < 4; k++)
			d[4 * i + k] = (uint8_t)(h[i] >> (24 - 8 * k));
	mfs_sha256_hex(d, hex);
}

static void test_sha256_each_path(void)
{
	const char *msgs[] = {"", "abc", msg448, msg896};
	const char *want[] = {
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
	    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"};
	char hex[65];

	for (int i = 0; i < 4; i++) {
		sha256_via(mfs_sha256_blocks_portable, msgs[i], hex);
		CHECK(strcmp(hex, want[i]) == 0);
		if (mfs_sha256_have_shani()) {
			sha256_via(mfs_sha256_blocks_shani, msgs[i], hex);
			CHECK(strcmp(hex, want[i]) == 0);
		}
	}
	fprintf(stderr, "  SHA-NI %s\n",
		mfs_sha256_have_shani() ? "present: both paths checked"
					: "absent: portable path only");
}

static void test_sha256_shani_matches_portable(void)
{
	if (!mfs_sha256_have_shani()) {
		fprintf(stderr, "  no SHA-NI on this CPU: comparison skipped\n");
		return;
	}
	size_t max_blocks = 257;
	uint8_t *buf = malloc(max_blocks * 64);
	REQUIRE(buf);
	for (int round = 0; round < 200; round++) {
		size_t nb = test_rand(&seed) % (max_blocks + 1);
		uint32_t hp[8], hs[8];
		for (size_t i = 0; i < nb * 64; i++)
			buf[i] = (uint8_t)test_rand(&seed);
		for (int i = 0; i < 8; i++)
			hp[i] = hs[i] = (uint32_t)test_rand(&seed);
		mfs_sha256_blocks_portable(hp, buf, nb);
		mfs_sha256_blocks_shani(hs, buf, nb);
		CHECK(memcmp(hp, hs, sizeof hp) == 0);
	}
	free(buf);
}

static void test_sha1_vectors(void)
{
	CHECK(sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
	CHECK(sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d"));
	CHECK(
	    sha1_is(msg448, strlen(msg448), "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
	CHECK(
	    sha1_is(msg896, strlen(msg896), "a49b2446a02c645bf419f995b67091253a04a259"));

	size_t n = 1000000;
	char *a = malloc(n);
	REQUIRE(a);
	memset(a, 'a', n);
	CHECK(sha1_is(a, n, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
	free(a);

	/* The git blob id of "hello\n", as `git hash-object` prints it. */
	CHECK(sha1_is("blob 6\0hello\n", 13, "ce013625030ba8dba906f756967f9e9ca394464a"));

	/* Streaming in pieces equals one-shot. */
	uint8_t buf[300], one[20], str[20];
	mfs_sha1_ctx c;
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)test_rand(&seed);
	mfs_sha1_init(&c);
	mfs_sha1_update(&c, buf, sizeof buf);
	mfs_sha1_final(&c, one);
	mfs_sha1_init(&c);
	for (size_t off = 0; off < sizeof buf; off += 11)
		mfs_sha1_update(&c, buf + off,
				sizeof buf - off < 11 ? sizeof buf - off : 11);
	mfs_sha1_final(&c, str);
	CHECK(memcmp(one, str, 20) == 0);
}

int main(void)
{
	seed = test_seed();
	RUN(test_sha256_vectors);
	RUN(test_sha256_streaming);
	RUN(test_sha256_each_path);
	RUN(test_sha256_shani_matches_portable);
	RUN(test_sha1_vectors);
	return test_report();
}
