/*
 * fuzz_quant_residual_decode - hostile payloads and references for the
 * quant-residual decoder.  Input: 8 shaping bytes (quant_fuzz.h), u16 LE
 * payload length P, P payload bytes, then the data the tensor, its twin
 * and its scales are cut from.
 *   1. The payload as given, decoded against references and a geometry
 *      that match its own header (so the tables, streams and raw sections
 *      are reached), and against the shaped pair's.
 *   2. Near-valid payloads: the shaped pair's chunk, encoded; it must decode
 *      exactly; then one byte of it damaged where the payload bytes say,
 *      every truncation point the shaping picks, and QUANT references one
 *      byte short and long.
 * Any result is fine except a crash, a sanitizer report, a write past the
 * destination, a wrong round trip, or an error other than MFS_E_CORRUPT.
 */
#include "quant_fuzz.h"

static mfs_codec_ws *ws;

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Decode @p pay against a pair shaped after its own header, when plausible. */
static void decode_own(const uint8_t *pay, size_t plen, const uint8_t *d, size_t size)
{
	if (plen < 64)
		return;
	mfs_quant_scheme s = {.kind = (mfs_quant_kind)pay[2],
			      .qdtype = (mfs_dtype)pay[3],
			      .sdtype = (mfs_dtype)pay[4],
			      .rows = get64(pay + 8),
			      .cols = get64(pay + 16),
			      .group = get32(pay + 24),
			      .block_r = get32(pay + 28),
			      .block_c = get32(pay + 32)};
	uint32_t n = get32(pay + 36);
	uint64_t e0 = get64(pay + 40);
	if (mfs_quant_scheme_check(&s) || n > (1u << 16) || e0 > s.rows * s.cols ||
	    n > s.rows * s.cols - e0)
		return;
	uint64_t first, count;
	mfs_quant_scale_span(&s, e0, n, &first, &count);
	size_t ss = mfs_dtype_bits(s.sdtype) / 8;
	if (count > (1u << 16))
		return;
	qf_pair P = {.s = s, .hp = (mfs_dtype)pay[1], .e0 = e0, .n = n};
	/* the pair's arrays hold just the chunk: offset them so e0 indexes it */
	uint8_t *codes = malloc(n ? n : 1), *sc = malloc(count * ss ? count * ss : 1);
	for (size_t i = 0; i < n; i++)
		codes[i] = qf_byte(d, size, i);
	for (size_t i = 0; i < count * ss; i++)
		sc[i] = qf_byte(d, size, 3 * i + 1);
	mfs_chunk_geom g = {
	    .dtype = P.hp, .ndim = 2, .shape = {s.rows, s.cols}, .elem_off = e0};
	mfs_ref_data refs[2] = {{MFS_REF_QUANT, codes, n},
				{MFS_REF_SCALE, sc, count * ss}};
	uint8_t *dst = malloc(2 * (size_t)n + 32);
	memset(dst + 2 * (size_t)n, 0xa5, 32);
	mfs_decode_req rq = {.src = pay,
			     .src_len = plen,
			     .dst = dst,
			     .dst_len = 2 * (size_t)n,
			     .geom = &g,
			     .refs = refs,
			     .n_refs = 2};
	int rc = mfs_codec_decode(MFS_CODEC_QUANT_RESIDUAL, &rq, ws);
	if (rc != 0 && rc != MFS_E_CORRUPT)
		__builtin_trap();
	for (int i = 0; i < 32; i++)
		if (dst[2 * (size_t)n + i] != 0xa5)
			__builtin_trap();
	free(dst);
	free(codes);
	free(sc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws && mfs_codec_ws_create(&ws))
		return 0;
	if (size < 10)
		return 0;
	size_t plen = (size_t)data[8] | (size_t)data[9] << 8;
	if (plen > size - 10)
		plen = size - 10;
	uint8_t *pay = qf_dup(data + 10, plen);
	const uint8_t *d = data + 10 + plen;
	size_t dsize = size - 10 - plen;

	/* 1. hostile payloads */
	decode_own(pay, plen, d, dsize);
	qf_pair P;
	if (qf_make(&P, data, d, dsize, 1) == 0) {
		qf_decode(&P, pay, plen, 0, ws, NULL);

		/* 2. near-valid payloads */
		size_t len;
		uint8_t *enc = qf_encode(&P, ws, &len);
		uint8_t *out = malloc(2 * P.n + 1);
		if (qf_decode(&P, enc, len, 0, ws, out) != 0 ||
		    memcmp(out, P.v + 2 * P.e0, 2 * P.n) != 0)
			__builtin_trap();
		if ((P.n && qf_decode(&P, enc, len, -1, ws, NULL) != MFS_E_CORRUPT) ||
		    qf_decode(&P, enc, len, 1, ws, NULL) != MFS_E_CORRUPT)
			__builtin_trap();
		size_t cut = plen ? (size_t)pay[0] % (len + 1) : len / 2;
		if (cut < len) {
			uint8_t *t = qf_dup(enc, cut);
			if (qf_decode(&P, t, cut, 0, ws, NULL) != MFS_E_CORRUPT)
				__builtin_trap();
			free(t);
		}
		if (len && plen >= 2) {
			uint8_t *dmg = qf_dup(enc, len);
			dmg[((size_t)pay[1] << 8 | (plen > 2 ? pay[2] : 0)) % len] ^=
			    (uint8_t)(plen > 3 ? pay[3] | 1 : 1);
			qf_decode(&P, dmg, len, 0, ws, NULL);
			free(dmg);
		}
		free(out);
		free(enc);
	}
	qf_free(&P);
	free(pay);
	return 0;
}
