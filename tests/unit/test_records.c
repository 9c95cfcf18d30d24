/*
 * test_records.c - the store's record formats (index/records.h): each record
 * round-trips, matches a golden byte string (so an accidental format change
 * fails here), and every truncation or malformation of a valid record is
 * MFS_E_CORRUPT.  Decoders are given exactly-sized heap copies, so ASan
 * catches any read past the end.
 */
#include "testhelp.h"

#include <errno.h>
#include <unistd.h>

#include "records.h"

/* Hex (spaces allowed) into bytes; returns the length. */
static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;
	for (; *h; h++) {
		int v;
		if (*h >= '0' && *h <= '9')
			v = *h - '0';
		else if (*h >= 'a' && *h <= 'f')
			v = *h - 'a' + 10;
		else
			continue;
		if (hi < 0) {
			hi = v;
		} else {
			if (n < cap)
				out[n] = (uint8_t)(hi << 4 | v);
			n++;
			hi = -1;
		}
	}
	return n;
}

static int same_as_golden(const uint8_t *p, size_t len, const char *golden)
{
	uint8_t want[2048];
	size_t n = unhex(golden, want, sizeof want);
	if (n != len || memcmp(p, want, len) != 0) {
		fprintf(stderr, "  got    ");
		for (size_t i = 0; i < len; i++)
			fprintf(stderr, "%02x", p[i]);
		fprintf(stderr, "\n  golden %s\n", golden);
		return 0;
	}
	return 1;
}

/* A heap copy of exactly len bytes, so an over-read is an ASan error. */
static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
	uint8_t *q = malloc(len ? len : 1);
	if (q && len)
		memcpy(q, p, len);
	return q;
}

typedef int (*decode_fn)(const uint8_t *p, size_t len);

static mfs_chunk_view g_chunk;
static mfs_blob_info g_blob;
static const uint8_t *g_ext;
static mfs_tensor_info g_tensor;
static char g_name[MFS_REC_TENSOR_STRS];
static mfs_file_info g_file;
static mfs_repo_info g_repo;
static mfs_commit_info g_commit;
static char g_ref[MFS_COMMIT_LEN + 1];

static int dec_chunk(const uint8_t *p, size_t len)
{
	return mfs_rec_chunk_decode(p, len, &g_chunk);
}

static int dec_blob(const uint8_t *p, size_t len)
{
	return mfs_rec_blob_decode(p, len, &g_blob, &g_ext);
}

static int dec_tensor(const uint8_t *p, size_t len)
{
	return mfs_rec_tensor_decode(p, len, &g_tensor, g_name);
}

static int dec_file(const uint8_t *p, size_t len)
{
	return mfs_rec_file_decode(p, len, &g_file);
}

static int dec_repo(const uint8_t *p, size_t len)
{
	return mfs_rec_repo_decode(p, len, &g_repo);
}

static int dec_commit(const uint8_t *p, size_t len)
{
	return mfs_rec_commit_decode(p, len, &g_commit);
}

static int dec_ref(const uint8_t *p, size_t len)
{
	return mfs_rec_ref_decode(p, len, g_ref);
}

/* Every proper prefix of a record [0, upto) is MFS_E_CORRUPT. */
static void check_truncations(decode_fn fn, const uint8_t *rec, size_t len, size_t upto)
{
	int bad = 0;
	for (size_t n = 0; n < upto && n < len; n++) {
		uint8_t *q = dup_exact(rec, n);
		if (fn(q, n) != MFS_E_CORRUPT) {
			fprintf(stderr, "  truncation to %zu bytes was accepted\n", n);
			bad++;
		}
		free(q);
	}
	CHECK_EQ_INT(bad, 0);
}

/* The record with one extra byte at the end is MFS_E_CORRUPT. */
static void check_trailing(decode_fn fn, const uint8_t *rec, size_t len)
{
	uint8_t *q = malloc(len + 1);
	memcpy(q, rec, len);
	q[len] = 0;
	CHECK_EQ_INT(fn(q, len + 1), MFS_E_CORRUPT);
	free(q);
}

/* The record with byte @i set to @v is MFS_E_CORRUPT. */
static void check_poke(decode_fn fn, const uint8_t *rec, size_t len, size_t i, uint8_t v)
{
	uint8_t *q = dup_exact(rec, len);
	q[i] = v;
	CHECK_EQ_INT(fn(q, len), MFS_E_CORRUPT);
	free(q);
}

static void key_fill(mfs_chunk_key *k, uint8_t base)
{
	for (int i = 0; i < 16; i++)
		k->b[i] = (uint8_t)(base + i);
}

static void test_chunk(void)
{
	uint8_t rec[MFS_REC_CHUNK_HDR_MAX + 3];
	size_t h = 0;
	mfs_chunk_meta m = {.codec = MFS_CODEC_ZSTD, .raw_len = 0x01020304u};
	REQUIRE(mfs_rec_chunk_header(rec, &m, &h) == 0);
	CHECK_EQ_INT(h, MFS_REC_CHUNK_HDR);
	memcpy(rec + h, "abc", 3);
	/* no references, no geometry: version 1, byte for byte as before */
	CHECK(same_as_golden(rec, h + 3, "01 01 00 00 04030201 616263"));
	uint8_t *q = dup_exact(rec, h + 3);
	REQUIRE(dec_chunk(q, h + 3) == 0);
	CHECK_EQ_INT(g_chunk.codec, MFS_CODEC_ZSTD);
	CHECK_EQ_INT(g_chunk.raw_len, 0x01020304u);
	CHECK_EQ_INT(g_chunk.n_refs, 0);
	CHECK_EQ_INT(g_chunk.has_geom, 0);
	CHECK_EQ_INT(g_chunk.payload_len, 3);
	CHECK(g_chunk.payload == q + h);
	free(q);
	/* an empty payload is a valid record (a zero-length chunk) */
	q = dup_exact(rec, h);
	CHECK_EQ_INT(dec_chunk(q, h), 0);
	CHECK_EQ_INT(g_chunk.payload_len, 0);
	free(q);
	check_truncations(dec_chunk, rec, h + 3, h);
	check_poke(dec_chunk, rec, h + 3, 0, 3);    /* version */
	check_poke(dec_chunk, rec, h + 3, 1, 16);   /* codec id out of range */
	check_poke(dec_chunk, rec, h + 3, 1, 0xff);
	check_poke(dec_chunk, rec, h + 3, 2, 0x02); /* unknown flag */
	check_poke(dec_chunk, rec, h + 3, 3, 1);    /* reserved byte */

	/* a version 1 record with a reference still reads: one base reference
	 * to the whole of that chunk */
	uint8_t v1[8 + 16 + 3];
	REQUIRE(unhex("01 04 01 00 00100000 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 78797a", v1,
		      sizeof v1) == sizeof v1);
	q = dup_exact(v1, sizeof v1);
	REQUIRE(dec_chunk(q, sizeof v1) == 0);
	CHECK_EQ_INT(g_chunk.n_refs, 1);
	CHECK_EQ_INT(g_chunk.refs[0].role, MFS_REF_BASE);
	CHECK_EQ_INT(g_chunk.refs[0].off, 0);
	CHECK_EQ_INT(g_chunk.refs[0].len, 4096);
	CHECK_EQ_INT(g_chunk.refs[0].key.b[15], 0xaf);
	CHECK_EQ_INT(g_chunk.payload_len, 3);
	free(q);
	check_truncations(dec_chunk, v1, sizeof v1, 8 + 16);
}

/* Version 2: geometry and a list of references of other lengths. */
static void test_chunk_v2(void)
{
	mfs_chunk_ref refs[2];
	key_fill(&refs[0].key, 0xa0);
	refs[0].off = 0x10;
	refs[0].len = 0x200;
	refs[0].role = MFS_REF_QUANT;
	key_fill(&refs[1].key, 0xb0);
	refs[1].off = 0;
	refs[1].len = 8;
	refs[1].role = MFS_REF_SCALE;
	mfs_chunk_geom g = {.dtype = MFS_DT_BF16, .ndim = 2, .shape = {3, 0x100},
			    .elem_off = 0x100};
	mfs_chunk_meta m = {.codec = MFS_CODEC_QUANT_RESIDUAL, .raw_len = 0x200,
			    .n_refs = 2, .refs = refs, .geom = &g};
	uint8_t rec[MFS_REC_CHUNK_HDR_MAX + 3];
	size_t h = 0;
	REQUIRE(mfs_rec_chunk_header(rec, &m, &h) == 0);
	CHECK_EQ_INT(h, 8 + 2 + 8 + 16 + 2 * MFS_REC_CHUNK_REF);
	memcpy(rec + h, "xyz", 3);
	CHECK(same_as_golden(rec, h + 3,
			     "02 05 02 02 00020000"
			     " 09 02 0001000000000000 0300000000000000 0001000000000000"
			     " a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 1000000000000000 00020000 02"
			     " b0b1b2b3b4b5b6b7b8b9babbbcbdbebf 0000000000000000 08000000 03"
			     " 78797a"));
	uint8_t *q = dup_exact(rec, h + 3);
	REQUIRE(dec_chunk(q, h + 3) == 0);
	CHECK_EQ_INT(g_chunk.codec, MFS_CODEC_QUANT_RESIDUAL);
	CHECK_EQ_INT(g_chunk.n_refs, 2);
	CHECK_EQ_INT(g_chunk.refs[0].off, 0x10);
	CHECK_EQ_INT(g_chunk.refs[0].len, 0x200);
	CHECK_EQ_INT(g_chunk.refs[1].role, MFS_REF_SCALE);
	CHECK(!memcmp(g_chunk.refs[1].key.b, refs[1].key.b, 16));
	CHECK_EQ_INT(g_chunk.has_geom, 1);
	CHECK_EQ_INT(g_chunk.geom.dtype, MFS_DT_BF16);
	CHECK_EQ_INT(g_chunk.geom.ndim, 2);
	CHECK_EQ_INT(g_chunk.geom.shape[1], 0x100);
	CHECK_EQ_INT(g_chunk.geom.elem_off, 0x100);
	CHECK_EQ_INT(g_chunk.payload_len, 3);
	CHECK(g_chunk.payload == q + h);
	free(q);
	check_truncations(dec_chunk, rec, h + 3, h);
	check_poke(dec_chunk, rec, h + 3, 2, 0x03);	 /* v1's ref flag in a v2 record */
	check_poke(dec_chunk, rec, h + 3, 3, MFS_REFS_MAX + 1); /* too many references */
	check_poke(dec_chunk, rec, h + 3, 8, MFS_DT__COUNT);	 /* unknown dtype */
	check_poke(dec_chunk, rec, h + 3, 9, MFS_MAX_DIMS + 1); /* too many dims */
	size_t r0 = 8 + 2 + 8 + 16;
	check_poke(dec_chunk, rec, h + 3, r0 + 28, 0);		/* role 0 */
	check_poke(dec_chunk, rec, h + 3, r0 + 28, MFS_REF__COUNT); /* unknown role */
	/* a reference of length 0 */
	uint8_t *z = dup_exact(rec, h + 3);
	memset(z + r0 + 24, 0, 4);
	CHECK_EQ_INT(dec_chunk(z, h + 3), MFS_E_CORRUPT);
	/* a range that wraps around */
	memcpy(z, rec, h + 3);
	memset(z + r0 + 16, 0xff, 8);
	CHECK_EQ_INT(dec_chunk(z, h + 3), MFS_E_CORRUPT);
	free(z);

	/* references alone (no geometry) are version 2 as well */
	m.geom = NULL;
	m.n_refs = 1;
	REQUIRE(mfs_rec_chunk_header(rec, &m, &h) == 0);
	CHECK_EQ_INT(h, 8 + MFS_REC_CHUNK_REF);
	CHECK_EQ_INT(rec[0], MFS_REC_V2);
	CHECK_EQ_INT(rec[2], 0);
	/* what the writer refuses */
	refs[0].len = 0;
	CHECK_EQ_INT(mfs_rec_chunk_header(rec, &m, &h), MFS_E_INVAL);
	refs[0].len = 1;
	refs[0].role = (mfs_ref_role)0;
	CHECK_EQ_INT(mfs_rec_chunk_header(rec, &m, &h), MFS_E_INVAL);
	refs[0].role = MFS_REF_BASE;
	m.n_refs = MFS_REFS_MAX + 1;
	CHECK_EQ_INT(mfs_rec_chunk_header(rec, &m, &h), MFS_E_INVAL);
}

/* Version 3 (store format 2): no payload, its location in a pack instead. */
static void test_chunk_v3(void)
{
	mfs_chunk_ref ref;
	key_fill(&ref.key, 0xa0);
	ref.off = 0x10;
	ref.len = 0x200;
	ref.role = MFS_REF_BASE;
	mfs_chunk_geom g = {
	    .dtype = MFS_DT_BF16, .ndim = 1, .shape = {0x100}, .elem_off = 0};
	mfs_chunk_loc loc = {
	    .pack = 0x0102030405060708ull, .off = 0x20, .len = 0x11223344u};
	mfs_chunk_meta m = {.codec = MFS_CODEC_XOR_DELTA,
			    .raw_len = 0x200,
			    .n_refs = 1,
			    .refs = &ref,
			    .geom = &g};
	uint8_t rec[MFS_REC_CHUNK_MAX];
	size_t n = 0;
	REQUIRE(mfs_rec_chunk_encode(rec, &m, &loc, &n) == 0);
	CHECK_EQ_INT(n, 8 + 20 + 2 + 8 + 8 + MFS_REC_CHUNK_REF);
	char golden[400];
	snprintf(golden, sizeof golden,
		 "03 %02x 02 01 00020000 0807060504030201 2000000000000000 44332211"
		 " 09 01 0000000000000000 0001000000000000"
		 " a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 1000000000000000 00020000 01",
		 (unsigned)MFS_CODEC_XOR_DELTA);
	CHECK(same_as_golden(rec, n, golden));
	uint8_t *q = dup_exact(rec, n);
	REQUIRE(dec_chunk(q, n) == 0);
	CHECK_EQ_INT(g_chunk.in_pack, 1);
	CHECK(g_chunk.payload == NULL);
	CHECK_EQ_INT(g_chunk.payload_len, 0x11223344u);
	CHECK_EQ_INT(g_chunk.loc.pack, 0x0102030405060708ull);
	CHECK_EQ_INT(g_chunk.loc.off, 0x20);
	CHECK_EQ_INT(g_chunk.loc.len, 0x11223344u);
	CHECK_EQ_INT(g_chunk.n_refs, 1);
	CHECK_EQ_INT(g_chunk.refs[0].off, 0x10);
	CHECK_EQ_INT(g_chunk.has_geom, 1);
	CHECK_EQ_INT(g_chunk.geom.shape[0], 0x100);
	free(q);
	/* exact length: every prefix and a trailing byte are refused */
	check_truncations(dec_chunk, rec, n, n);
	check_trailing(dec_chunk, rec, n);
	check_poke(dec_chunk, rec, n, 0, 4);	/* an unknown version */
	check_poke(dec_chunk, rec, n, 2, 0x01); /* v1's ref flag */
	check_poke(dec_chunk, rec, n, 3, 2);	/* two references, one there */
	/* the plain case: no references, no geometry */
	mfs_chunk_meta plain = {.codec = MFS_CODEC_RAW, .raw_len = 5};
	REQUIRE(mfs_rec_chunk_encode(rec, &plain, &loc, &n) == 0);
	CHECK(same_as_golden(
	    rec, n, "03 00 00 00 05000000 0807060504030201 2000000000000000 44332211"));
	/* and the encoder refuses what the v1/v2 one refuses */
	mfs_chunk_ref bad = ref;
	bad.len = 0;
	mfs_chunk_meta mb = {
	    .codec = MFS_CODEC_XOR_DELTA, .raw_len = 8, .n_refs = 1, .refs = &bad};
	CHECK_EQ_INT(mfs_rec_chunk_encode(rec, &mb, &loc, &n), MFS_E_INVAL);
}

static int dec_pack(const uint8_t *p, size_t len)
{
	mfs_pack_rec r;
	return mfs_rec_pack_decode(p, len, &r);
}

static void test_pack_rec(void)
{
	mfs_pack_rec r = {.committed_end = 0x1000,
			  .live_bytes = 0x800,
			  .dead_bytes = 0x7e0,
			  .state = MFS_PACK_RETIRED,
			  .retired_txnid = 0x99};
	uint8_t rec[MFS_REC_PACK_LEN];
	mfs_rec_pack_encode(rec, &r);
	CHECK(same_as_golden(
	    rec, sizeof rec,
	    "01 0010000000000000 0008000000000000 e007000000000000 02000000"
	    " 9900000000000000"));
	mfs_pack_rec o;
	REQUIRE(mfs_rec_pack_decode(rec, sizeof rec, &o) == 0);
	CHECK_EQ_INT(o.committed_end, 0x1000);
	CHECK_EQ_INT(o.live_bytes, 0x800);
	CHECK_EQ_INT(o.dead_bytes, 0x7e0);
	CHECK_EQ_INT(o.state, MFS_PACK_RETIRED);
	CHECK_EQ_INT(o.retired_txnid, 0x99);
	check_truncations(dec_pack, rec, sizeof rec, sizeof rec);
	check_trailing(dec_pack, rec, sizeof rec);
	check_poke(dec_pack, rec, sizeof rec, 0, 2);		    /* version */
	check_poke(dec_pack, rec, sizeof rec, 25, MFS_PACK__COUNT); /* unknown state */
}

static void test_blob(void)
{
	mfs_extent ext[2];
	ext[0].off = 0;
	ext[0].len = 0x100;
	key_fill(&ext[0].key, 0x10);
	ext[1].off = 0x100;
	ext[1].len = 0x20;
	key_fill(&ext[1].key, 0x20);
	mfs_blob_rec b = {.etag = "ab", .size = 0x120, .stored_bytes = 0x99, .n_extents = 2,
			  .extents = ext, .n_tensors = 3};
	for (int i = 0; i < 32; i++)
		b.sha256[i] = (uint8_t)(0xc0 + i);
	size_t len;
	REQUIRE(mfs_rec_blob_size(2, &len) == 0);
	CHECK_EQ_INT(len, 65 + 2 * 28);
	uint8_t rec[65 + 2 * 28];
	CHECK_EQ_INT(mfs_rec_blob_encode(rec, len - 1, &b), MFS_E_NOSPACE);
	REQUIRE(mfs_rec_blob_encode(rec, len, &b) == 0);
	CHECK(same_as_golden(
		rec, len,
		"01 2001000000000000"
		" c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
		" 9900000000000000 0300000000000000 0200000000000000"
		" 0000000000000000 00010000 101112131415161718191a1b1c1d1e1f"
		" 0001000000000000 20000000 202122232425262728292a2b2c2d2e2f"));
	uint8_t *q = dup_exact(rec, len);
	REQUIRE(dec_blob(q, len) == 0);
	CHECK_EQ_INT(g_blob.size, 0x120);
	CHECK_EQ_INT(g_blob.stored_bytes, 0x99);
	CHECK_EQ_INT(g_blob.n_tensors, 3);
	CHECK_EQ_INT(g_blob.n_extents, 2);
	CHECK(!memcmp(g_blob.sha256, b.sha256, 32));
	mfs_extent got[2];
	CHECK_EQ_INT(mfs_rec_blob_extents(&g_blob, g_ext, got), 0);
	CHECK(got[1].off == 0x100 && got[1].len == 0x20 && !memcmp(got[1].key.b, ext[1].key.b, 16));
	free(q);
	check_truncations(dec_blob, rec, len, len);
	check_trailing(dec_blob, rec, len);
	check_poke(dec_blob, rec, len, 0, 0);      /* version */
	check_poke(dec_blob, rec, len, 57, 3);     /* n_extents says 3, 2 follow */
	check_poke(dec_blob, rec, len, 64, 0x80);  /* n_extents huge */

	/* extents that do not tile the file decode but fail the tiling check */
	uint8_t bad[sizeof rec];
	memcpy(bad, rec, len);
	bad[65 + 28] = 0x01; /* second extent's offset 0x101: a gap */
	REQUIRE(dec_blob(bad, len) == 0);
	CHECK_EQ_INT(mfs_rec_blob_extents(&g_blob, g_ext, got), MFS_E_CORRUPT);
	memcpy(bad, rec, len);
	bad[1] = 0x21; /* size 0x121: the extents end short of it */
	REQUIRE(dec_blob(bad, len) == 0);
	CHECK_EQ_INT(mfs_rec_blob_extents(&g_blob, g_ext, got), MFS_E_CORRUPT);
	memcpy(bad, rec, len);
	memset(bad + 65 + 8, 0, 4); /* first extent empty */
	REQUIRE(dec_blob(bad, len) == 0);
	CHECK_EQ_INT(mfs_rec_blob_extents(&g_blob, g_ext, got), MFS_E_CORRUPT);

	size_t big;
	CHECK_EQ_INT(mfs_rec_blob_size(UINT64_MAX / 2, &big), MFS_E_TOOBIG);
	/* no extents: an empty file */
	mfs_blob_rec e = {.etag = "ab"};
	REQUIRE(mfs_rec_blob_size(0, &len) == 0 && mfs_rec_blob_encode(rec, len, &e) == 0);
	REQUIRE(dec_blob(rec, len) == 0);
	CHECK_EQ_INT(mfs_rec_blob_extents(&g_blob, g_ext, got), 0);
}

static void test_tensor(void)
{
	mfs_tensor_info ti = {.name = "layer.0.w", .dtype = MFS_DT_BF16,
			      .codec = MFS_CODEC_BITPLANE_HUFF, .ndim = 2,
			      .shape = {3, 0x102}, .data_off = 0x48, .raw_len = 0x60c,
			      .stored_len = 0x400, .first_extent = 1, .n_extents = 2};
	uint8_t rec[MFS_REC_TENSOR_MAX];
	size_t len;
	REQUIRE(mfs_rec_tensor_encode(rec, &ti, &len) == 0);
	CHECK_EQ_INT(len, 4 + 16 + 40 + 2 + 9);
	CHECK(same_as_golden(rec, len,
			     "01 09 02 02 0300000000000000 0201000000000000"
			     " 4800000000000000 0c06000000000000 0004000000000000"
			     " 0100000000000000 0200000000000000 0900 6c617965722e302e77"));
	uint8_t *q = dup_exact(rec, len);
	REQUIRE(dec_tensor(q, len) == 0);
	free(q);
	CHECK(!strcmp(g_tensor.name, "layer.0.w") && g_tensor.name == g_name);
	CHECK_EQ_INT(g_tensor.dtype, MFS_DT_BF16);
	CHECK_EQ_INT(g_tensor.codec, MFS_CODEC_BITPLANE_HUFF);
	CHECK_EQ_INT(g_tensor.ndim, 2);
	CHECK(g_tensor.shape[0] == 3 && g_tensor.shape[1] == 0x102);
	CHECK(g_tensor.data_off == 0x48 && g_tensor.raw_len == 0x60c &&
	      g_tensor.stored_len == 0x400 && g_tensor.first_extent == 1 &&
	      g_tensor.n_extents == 2);
	check_truncations(dec_tensor, rec, len, len);
	check_trailing(dec_tensor, rec, len);
	check_poke(dec_tensor, rec, len, 0, 0);            /* version */
	check_poke(dec_tensor, rec, len, 2, 16);           /* codec */
	check_poke(dec_tensor, rec, len, 3, MFS_MAX_DIMS + 1);
	check_poke(dec_tensor, rec, len, len - 5, 0);      /* NUL inside the name */
	check_poke(dec_tensor, rec, len, len - 10, 0xff);  /* name length 0xff09 */

	/* the longest name and the most dims round-trip */
	char name[MFS_TENSOR_NAME_MAX + 1];
	memset(name, 'n', MFS_TENSOR_NAME_MAX);
	name[MFS_TENSOR_NAME_MAX] = '\0';
	mfs_tensor_info big = {.name = name, .ndim = MFS_MAX_DIMS};
	for (int i = 0; i < MFS_MAX_DIMS; i++)
		big.shape[i] = UINT64_MAX - (uint64_t)i;
	REQUIRE(mfs_rec_tensor_encode(rec, &big, &len) == 0);
	CHECK_EQ_INT(rec[0], MFS_REC_V1); /* no base: version 1 */
	REQUIRE(dec_tensor(rec, len) == 0);
	CHECK(g_tensor.base == NULL && g_tensor.alone_len == 0);
	/* with the longest base: version 2, the longest record */
	char base[MFS_REPO_ID_MAX + 1];
	memset(base, 'b', MFS_REPO_ID_MAX);
	base[MFS_REPO_ID_MAX] = '\0';
	big.base = base;
	big.alone_len = 0x0102030405060708ull;
	REQUIRE(mfs_rec_tensor_encode(rec, &big, &len) == 0);
	CHECK_EQ_INT(len, MFS_REC_TENSOR_MAX);
	CHECK_EQ_INT(rec[0], MFS_REC_V2);
	REQUIRE(dec_tensor(rec, len) == 0);
	CHECK(!strcmp(g_name, name) && g_tensor.shape[MFS_MAX_DIMS - 1] == UINT64_MAX - 15);
	CHECK(g_tensor.base && !strcmp(g_tensor.base, base));
	CHECK(g_tensor.alone_len == 0x0102030405060708ull);
	check_truncations(dec_tensor, rec, len, len);
	check_trailing(dec_tensor, rec, len);
	check_poke(dec_tensor, rec, len, len - MFS_REPO_ID_MAX - 1, 0);   /* empty base */
	check_poke(dec_tensor, rec, len, len - MFS_REPO_ID_MAX - 1, 201); /* too long */
	check_poke(dec_tensor, rec, len, len - 3, 0);			  /* NUL in base */
	big.base = "";
	CHECK_EQ_INT(mfs_rec_tensor_encode(rec, &big, &len), MFS_E_INVAL);
	big.base = NULL;
	/* names over the limit and too many dims are refused at encode */
	char longer[MFS_TENSOR_NAME_MAX + 2];
	memset(longer, 'n', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	big.name = longer;
	CHECK_EQ_INT(mfs_rec_tensor_encode(rec, &big, &len), MFS_E_INVAL);
	big.name = "x";
	big.ndim = MFS_MAX_DIMS + 1;
	CHECK_EQ_INT(mfs_rec_tensor_encode(rec, &big, &len), MFS_E_INVAL);
}

static void test_file(void)
{
	uint8_t rec[MFS_REC_FILE_MAX];
	size_t len;
	REQUIRE(mfs_rec_file_encode(rec, 0444, "0a1b", &len) == 0);
	CHECK(same_as_golden(rec, len, "01 24010000 04 30613162"));
	uint8_t *q = dup_exact(rec, len);
	REQUIRE(dec_file(q, len) == 0);
	free(q);
	CHECK_EQ_INT(g_file.mode, 0444);
	CHECK(!strcmp(g_file.etag, "0a1b"));
	check_truncations(dec_file, rec, len, len);
	check_trailing(dec_file, rec, len);
	check_poke(dec_file, rec, len, 0, 0);   /* version */
	check_poke(dec_file, rec, len, 5, 0);   /* empty etag */
	check_poke(dec_file, rec, len, 5, 65);  /* longer than MFS_ETAG_MAX */
	check_poke(dec_file, rec, len, 7, 'A'); /* not lower hex */
	check_poke(dec_file, rec, len, 7, 0);
	CHECK_EQ_INT(mfs_rec_file_encode(rec, 0444, "", &len), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_rec_file_encode(rec, 0444, "../x", &len), MFS_E_INVAL);
	char e64[MFS_ETAG_MAX + 2];
	memset(e64, 'f', sizeof e64 - 1);
	e64[MFS_ETAG_MAX] = '\0';
	REQUIRE(mfs_rec_file_encode(rec, 0555, e64, &len) == 0);
	CHECK_EQ_INT(len, MFS_REC_FILE_MAX);
	CHECK(dec_file(rec, len) == 0 && !strcmp(g_file.etag, e64));
	e64[MFS_ETAG_MAX] = 'f';
	e64[MFS_ETAG_MAX + 1] = '\0';
	CHECK_EQ_INT(mfs_rec_file_encode(rec, 0444, e64, &len), MFS_E_INVAL);
}

static void test_repo_commit_ref(void)
{
	uint8_t rec[MFS_REC_REPO_LEN];
	mfs_rec_repo_encode(rec, 0x0102030405060708ull, 0x1112131415161718ull);
	CHECK(same_as_golden(rec, sizeof rec, "01 0807060504030201 1817161514131211"));
	REQUIRE(dec_repo(rec, sizeof rec) == 0);
	CHECK(g_repo.created == 0x0102030405060708ull && g_repo.updated == 0x1112131415161718ull);
	check_truncations(dec_repo, rec, sizeof rec, sizeof rec);
	check_trailing(dec_repo, rec, sizeof rec);
	check_poke(dec_repo, rec, sizeof rec, 0, 2);

	uint8_t crec[MFS_REC_COMMIT_LEN];
	mfs_rec_commit_encode(crec, 1700000000, 13);
	CHECK(same_as_golden(crec, sizeof crec, "01 00f1536500000000 0d00000000000000"));
	REQUIRE(dec_commit(crec, sizeof crec) == 0);
	CHECK(g_commit.time == 1700000000 && g_commit.n_files == 13);
	check_truncations(dec_commit, crec, sizeof crec, sizeof crec);
	check_trailing(dec_commit, crec, sizeof crec);
	check_poke(dec_commit, crec, sizeof crec, 0, 0);

	const char *c = "0123456789abcdef0123456789abcdef01234567";
	REQUIRE(dec_ref((const uint8_t *)c, 40) == 0);
	CHECK(!strcmp(g_ref, c));
	check_truncations(dec_ref, (const uint8_t *)c, 40, 40);
	check_trailing(dec_ref, (const uint8_t *)c, 40);
	check_poke(dec_ref, (const uint8_t *)c, 40, 3, 'G');
	check_poke(dec_ref, (const uint8_t *)c, 40, 39, 'A');
}

/* Random bytes, and random mutations of valid records, never crash a decoder
 * (ASan/UBSan build) and never yield an out-of-range result. */
static void test_random_inputs(void)
{
	uint64_t seed = test_seed();
	decode_fn fns[] = {dec_chunk, dec_blob, dec_tensor, dec_file,
			   dec_repo, dec_commit, dec_ref};
	uint8_t valid[MFS_REC_TENSOR_MAX];
	mfs_tensor_info ti = {.name = "w", .ndim = 3, .shape = {1, 2, 3}};
	size_t vlen;
	REQUIRE(mfs_rec_tensor_encode(valid, &ti, &vlen) == 0);
	int accepted = 0;
	for (int it = 0; it < 20000; it++) {
		size_t len = test_rand(&seed) % 200;
		uint8_t *p = malloc(len ? len : 1);
		if (it % 2 && len <= vlen) {
			memcpy(p, valid, len);
			if (len)
				p[test_rand(&seed) % len] ^= (uint8_t)(1 + test_rand(&seed) % 255);
		} else {
			for (size_t i = 0; i < len; i++)
				p[i] = (uint8_t)test_rand(&seed);
			if (len)
				p[0] = MFS_REC_V1; /* get past the version check often */
		}
		for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++) {
			int rc = fns[f](p, len);
			CHECK(rc == 0 || rc == MFS_E_CORRUPT);
			if (rc == 0)
				accepted++;
		}
		if (dec_tensor(p, len) == 0)
			CHECK(g_tensor.ndim <= MFS_MAX_DIMS && strlen(g_name) <= MFS_TENSOR_NAME_MAX);
		if (dec_blob(p, len) == 0) {
			CHECK(MFS_REC_BLOB_FIXED + g_blob.n_extents * MFS_REC_EXTENT == len);
			mfs_extent *e = malloc((g_blob.n_extents + 1) * sizeof *e);
			int rc = mfs_rec_blob_extents(&g_blob, g_ext, e);
			CHECK(rc == 0 || rc == MFS_E_CORRUPT);
			free(e);
		}
		if (dec_chunk(p, len) == 0)
			CHECK(g_chunk.codec < MFS_CODEC__COUNT &&
			      (const uint8_t *)g_chunk.payload + g_chunk.payload_len == p + len);
		free(p);
	}
	fprintf(stderr, "  random inputs: %d decodes accepted\n", accepted);
}

/* mfs_chunk_replace (store.h) writes a record through mfs_rec_chunk_header:
 * the rewritten chunk decodes, keeps its reference count, and only an
 * existing chunk can be replaced, only in a write transaction. */
static void test_chunk_replace(void)
{
	char dir[] = "/tmp/mfs-test-records.XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	mfs_store *s = NULL;
	REQUIRE(mfs_store_open(dir, MFS_STORE_CREATE, &s, NULL) == 0);
	uint8_t raw[4096];
	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (uint8_t)(i % 7);
	mfs_chunk_key key, other;
	mfs_chunk_key_of(raw, sizeof raw, &key);
	key_fill(&other, 0x55);
	mfs_txn *t;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	/* stored raw, damaged on purpose: one byte flipped */
	uint8_t bad[sizeof raw];
	memcpy(bad, raw, sizeof raw);
	bad[100] ^= 1;
	CHECK_EQ_INT(mfs_chunk_put(t, &key, &(mfs_chunk_meta){.codec = MFS_CODEC_RAW, .raw_len = sizeof raw}, bad, sizeof bad,
				   NULL),
		     0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);

	mfs_codec_ws *ws = NULL;
	REQUIRE(mfs_codec_ws_create(&ws) == 0);
	uint8_t out[sizeof raw];
	mfs_chunk_view v;
	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	REQUIRE(mfs_chunk_get(t, &key, &v) == 0);
	REQUIRE(mfs_chunk_load(s, &key, &v, ws, NULL) == 0);
	CHECK_EQ_INT(mfs_chunk_decode(&v, &key, NULL, out, sizeof out, ws), MFS_E_CORRUPT);
	/* not in a read transaction */
	CHECK_EQ_INT(mfs_chunk_replace(t, &key, &(mfs_chunk_meta){.codec = MFS_CODEC_RAW, .raw_len = sizeof raw}, raw,
				       sizeof raw),
		     MFS_E_INVAL);
	uint64_t g0 = 0;
	CHECK_EQ_INT(mfs_store_generation(t, &g0), 0);
	mfs_txn_abort(t);

	/* give it a reference, as a published blob would (refcount 1) */
	mfs_extent e = {.off = 0, .len = sizeof raw, .key = key};
	mfs_blob_rec br = {.etag = "ab", .size = sizeof raw, .n_extents = 1, .extents = &e};
	uint8_t enc[8192];
	size_t enc_len = 0;
	mfs_encode_params ep = {.dtype = MFS_DT_UNKNOWN};
	REQUIRE(mfs_codec_encode(MFS_CODEC_ZSTD, &ep, raw, sizeof raw, enc, sizeof enc,
				 &enc_len, ws) == 0);
	REQUIRE(mfs_txn_begin(s, MFS_TXN_WRITE, &t) == 0);
	CHECK_EQ_INT(mfs_blob_put(t, "models/a/b", &br, NULL), 0);
	CHECK_EQ_INT(mfs_chunk_replace(t, &other, &(mfs_chunk_meta){.codec = MFS_CODEC_ZSTD, .raw_len = sizeof raw}, enc,
				       enc_len),
		     MFS_E_NOTFOUND);
	CHECK_EQ_INT(mfs_chunk_replace(t, &key, &(mfs_chunk_meta){.codec = MFS_CODEC_ZSTD, .raw_len = sizeof raw}, enc,
				       enc_len),
		     0);
	CHECK_EQ_INT(mfs_txn_commit(t), 0);

	REQUIRE(mfs_txn_begin(s, MFS_TXN_READ, &t) == 0);
	REQUIRE(mfs_chunk_get(t, &key, &v) == 0);
	CHECK_EQ_INT(v.codec, MFS_CODEC_ZSTD);
	CHECK_EQ_INT(v.payload_len, enc_len);
	REQUIRE(mfs_chunk_load(s, &key, &v, ws, NULL) == 0);
	CHECK_EQ_INT(mfs_chunk_decode(&v, &key, NULL, out, sizeof out, ws), 0);
	CHECK(!memcmp(out, raw, sizeof raw));
	/* the damaged entry is dead in its pack, the new one live after it */
	mfs_store_stat st;
	CHECK_EQ_INT(mfs_store_stat_get(t, &st), 0);
	CHECK_EQ_INT(st.pack_dead_bytes, 32 + sizeof raw);
	CHECK_EQ_INT(st.pack_live_bytes, 32 + enc_len);
	CHECK_EQ_INT(v.loc.off, 32 + 32 + sizeof raw);
	uint64_t refs = 0, g1 = 0;
	CHECK_EQ_INT(mfs_chunk_refcount(t, &key, &refs), 0);
	CHECK_EQ_INT(refs, 1);
	CHECK_EQ_INT(mfs_chunk_exists(t, &other), 0);
	CHECK_EQ_INT(mfs_store_generation(t, &g1), 0);
	CHECK(g1 > g0);
	mfs_txn_abort(t);
	mfs_codec_ws_free(ws);
	mfs_store_close(s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
	RUN(test_chunk);
	RUN(test_chunk_v2);
	RUN(test_chunk_v3);
	RUN(test_pack_rec);
	RUN(test_blob);
	RUN(test_tensor);
	RUN(test_file);
	RUN(test_repo_commit_ref);
	RUN(test_random_inputs);
	RUN(test_chunk_replace);
	return test_report();
}
