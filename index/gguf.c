/*
 * gguf.c - the tensors of a GGUF file (see gguf.h).
 *
 * The header is read through a window of GG_WIN bytes that slides forward:
 * a real file's metadata (a tokenizer's 150k strings) costs a few large
 * reads, and nothing the file claims decides how much is allocated before
 * the bytes behind the claim have been seen to exist.
 */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

#define GG_WIN	   (64u << 10)
#define GG_KEY_MAX 65535u
#define GG_QUOTE   80

enum {
	GG_U8 = 0,
	GG_I8,
	GG_U16,
	GG_I16,
	GG_U32,
	GG_I32,
	GG_F32,
	GG_BOOL,
	GG_STRING,
	GG_ARRAY,
	GG_U64,
	GG_I64,
	GG_F64,
	GG__COUNT
};

/* Bytes of a scalar value type; 0 for string and array. */
static const uint8_t gg_scalar[GG__COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* ggml types: block elements, block bytes, dtype (sizes as ggml defines them). */
static const struct {
	uint32_t id, elems, bytes;
	mfs_dtype dt;
	const char *name;
} gg_types[] = {
    {0, 1, 4, MFS_DT_F32, "F32"},	 {1, 1, 2, MFS_DT_F16, "F16"},
    {2, 32, 18, MFS_DT_U8, "Q4_0"},	 {3, 32, 20, MFS_DT_U8, "Q4_1"},
    {6, 32, 22, MFS_DT_U8, "Q5_0"},	 {7, 32, 24, MFS_DT_U8, "Q5_1"},
    {8, 32, 34, MFS_DT_U8, "Q8_0"},	 {10, 256, 84, MFS_DT_U8, "Q2_K"},
    {11, 256, 110, MFS_DT_U8, "Q3_K"},	 {12, 256, 144, MFS_DT_U8, "Q4_K"},
    {13, 256, 176, MFS_DT_U8, "Q5_K"},	 {14, 256, 210, MFS_DT_U8, "Q6_K"},
    {15, 256, 292, MFS_DT_U8, "Q8_K"},	 {16, 256, 66, MFS_DT_U8, "IQ2_XXS"},
    {17, 256, 74, MFS_DT_U8, "IQ2_XS"},	 {18, 256, 98, MFS_DT_U8, "IQ3_XXS"},
    {19, 256, 50, MFS_DT_U8, "IQ1_S"},	 {20, 32, 18, MFS_DT_U8, "IQ4_NL"},
    {21, 256, 110, MFS_DT_U8, "IQ3_S"},	 {22, 256, 82, MFS_DT_U8, "IQ2_S"},
    {23, 256, 136, MFS_DT_U8, "IQ4_XS"}, {24, 1, 1, MFS_DT_I8, "I8"},
    {25, 1, 2, MFS_DT_I16, "I16"},	 {26, 1, 4, MFS_DT_I32, "I32"},
    {27, 1, 8, MFS_DT_I64, "I64"},	 {28, 1, 8, MFS_DT_F64, "F64"},
    {29, 256, 56, MFS_DT_U8, "IQ1_M"},	 {30, 1, 2, MFS_DT_BF16, "BF16"},
    {34, 256, 54, MFS_DT_U8, "TQ1_0"},	 {35, 256, 66, MFS_DT_U8, "TQ2_0"},
    {39, 32, 17, MFS_DT_U8, "MXFP4"},
};

int mfs_gguf_is_gguf(const uint8_t first4[4])
{
	return !memcmp(first4, "GGUF", 4);
}

int mfs_gguf_type_info(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes,
		       mfs_dtype *dtype)
{
	for (size_t i = 0; i < sizeof gg_types / sizeof gg_types[0]; i++)
		if (gg_types[i].id == type) {
			*block_elems = gg_types[i].elems;
			*block_bytes = gg_types[i].bytes;
			*dtype = gg_types[i].dt;
			return 0;
		}
	return MFS_E_UNSUPPORTED;
}

typedef struct gg {
	const mfs_preader *src;
	const char *what;
	mfs_errmsg *err;
	uint8_t *win;
	uint64_t win_off; /* file offset of win[0] */
	size_t win_len;
	uint64_t pos;	/* where the next field starts */
	uint64_t limit; /* the header may not reach past this */
} gg;

static const char *gg_what(const gg *g)
{
	return g->what ? g->what : "GGUF file";
}

#define GG_FAIL(g, code, fmt, ...)                                                       \
	mfs_err((g)->err, code, "%s: " fmt, gg_what(g), __VA_ARGS__)

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int gg_past(gg *g, uint64_t n, const char *piece)
{
	if (g->limit == g->src->size)
		return GG_FAIL(
		    g, MFS_E_FORMAT,
		    "the %s at offset %llu (%llu bytes) runs past the end of the "
		    "file (%llu bytes): the file is truncated or corrupt",
		    piece, (unsigned long long)g->pos, (unsigned long long)n,
		    (unsigned long long)g->src->size);
	return GG_FAIL(
	    g, MFS_E_TOOBIG,
	    "the %s at offset %llu (%llu bytes) runs past %llu bytes, the limit "
	    "on a GGUF header",
	    piece, (unsigned long long)g->pos, (unsigned long long)n,
	    (unsigned long long)g->limit);
}

/* The next @p n (<= GG_WIN) bytes, valid until the next call. */
static int gg_get(gg *g, size_t n, const uint8_t **p, const char *piece)
{
	if (g->pos > g->limit || n > g->limit - g->pos)
		return gg_past(g, n, piece);
	if (g->pos < g->win_off || g->pos + n > g->win_off + g->win_len) {
		uint64_t left = g->src->size - g->pos;
		size_t len = left < GG_WIN ? (size_t)left : GG_WIN;
		int rc = mfs_preader_read(g->src, g->pos, g->win, len);
		if (rc < 0)
			return GG_FAIL(g, rc,
				       "reading the header at offset %llu failed: %s",
				       (unsigned long long)g->pos, mfs_strerror(rc));
		g->win_off = g->pos;
		g->win_len = len;
	}
	*p = g->win + (g->pos - g->win_off);
	g->pos += n;
	return 0;
}

static int gg_skip(gg *g, uint64_t n, const char *piece)
{
	if (g->pos > g->limit || n > g->limit - g->pos)
		return gg_past(g, n, piece);
	g->pos += n;
	return 0;
}

static int gg_u32(gg *g, uint32_t *v, const char *piece)
{
	const uint8_t *p = NULL;
	int rc = gg_get(g, 4, &p, piece);
	if (rc == 0)
		*v = le32(p);
	return rc;
}

static int gg_u64(gg *g, uint64_t *v, const char *piece)
{
	const uint8_t *p = NULL;
	int rc = gg_get(g, 8, &p, piece);
	if (rc == 0)
		*v = le64(p);
	return rc;
}

/* Skip one value of type @p type (an array's elements too). */
static int gg_skip_value(gg *g, uint32_t type, int depth)
{
	int rc;
	uint64_t len = 0;
	if (type >= GG__COUNT)
		return GG_FAIL(
		    g, MFS_E_FORMAT,
		    "metadata value type %u at offset %llu is not a GGUF type: the "
		    "file is corrupt",
		    type, (unsigned long long)g->pos);
	if (gg_scalar[type])
		return gg_skip(g, gg_scalar[type], "metadata value");
	if (type == GG_STRING) {
		if ((rc = gg_u64(g, &len, "metadata string length")) < 0)
			return rc;
		return gg_skip(g, len, "metadata string");
	}
	uint32_t et = 0;
	uint64_t count = 0;
	if (depth >= MFS_GGUF_DEPTH_MAX)
		return GG_FAIL(g, MFS_E_FORMAT,
			       "metadata arrays nest more than %d deep at offset %llu",
			       MFS_GGUF_DEPTH_MAX, (unsigned long long)g->pos);
	if ((rc = gg_u32(g, &et, "metadata array type")) < 0 ||
	    (rc = gg_u64(g, &count, "metadata array length")) < 0)
		return rc;
	if (et >= GG__COUNT)
		return GG_FAIL(
		    g, MFS_E_FORMAT,
		    "metadata array element type %u at offset %llu is not a GGUF "
		    "type: the file is corrupt",
		    et, (unsigned long long)g->pos);
	if (gg_scalar[et]) {
		if (count > UINT64_MAX / gg_scalar[et])
			return gg_past(g, UINT64_MAX, "metadata array");
		return gg_skip(g, count * gg_scalar[et], "metadata array");
	}
	/* Strings or arrays: each takes at least 8 bytes, so a count the bytes
	 * left cannot hold fails here, before the loop. */
	if (count > (g->limit - g->pos) / 8)
		return gg_past(g, count, "metadata array");
	for (uint64_t i = 0; i < count; i++)
		if ((rc = gg_skip_value(g, et, depth + 1)) < 0)
			return rc;
	return 0;
}

static int gg_cmp_begin(const void *a, const void *b)
{
	const mfs_st_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return (x->end > y->end) - (x->end < y->end);
}

static int gg_cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A tensor name, untrusted, quoted for a message. */
static const char *gg_quote(const char *s, char *buf, size_t cap)
{
	return mfs_str_quote(s, GG_QUOTE, buf, cap);
}

/* The tensor infos after the metadata: into @p ts (names in @p names). */
/*
 * The tensor infos after the metadata.  The array and the names grow as the
 * infos are read (a count is only a claim); at the end they are packed into
 * one block, the form mfs_st_header_free() releases.
 */
static int gg_tensors(gg *g, uint64_t n, uint32_t align, mfs_st_tensor **ts_out,
		      uint64_t *data_start)
{
	int rc;
	mfs_st_tensor *ts = NULL;
	size_t cap_ts = 0, cap_rel = 0, cap_nm = 0, nm_len = 0;
	uint64_t *rel = NULL;
	char *nm = NULL;
	for (uint64_t i = 0; i < n; i++) {
		void *gr;
		if (!(gr = mfs_grow(ts, &cap_ts, (size_t)i, sizeof *ts, 64))) {
			rc = -ENOMEM;
			goto out;
		}
		ts = gr;
		if (!(gr = mfs_grow(rel, &cap_rel, (size_t)i, sizeof *rel, 64))) {
			rc = -ENOMEM;
			goto out;
		}
		rel = gr;
		mfs_st_tensor *t = &ts[i];
		memset(t, 0, sizeof *t);
		uint64_t len = 0, dims[MFS_ST_MAX_DIMS];
		uint32_t nd = 0, type = 0;
		const uint8_t *p;
		char q[4 * GG_QUOTE + 8];
		if ((rc = gg_u64(g, &len, "tensor name length")) < 0)
			goto out;
		if (len > MFS_GGUF_NAME_MAX) {
			rc = GG_FAIL(
			    g, MFS_E_TOOBIG,
			    "tensor %llu's name is %llu bytes, over the %d-byte limit",
			    (unsigned long long)i, (unsigned long long)len,
			    MFS_GGUF_NAME_MAX);
			goto out;
		}
		if ((rc = gg_get(g, (size_t)len, &p, "tensor name")) < 0)
			goto out;
		if (memchr(p, '\0', (size_t)len)) {
			rc = GG_FAIL(g, MFS_E_FORMAT,
				     "tensor %llu's name holds a NUL byte",
				     (unsigned long long)i);
			goto out;
		}
		while (cap_nm < nm_len + len + 1) {
			size_t nc = cap_nm ? cap_nm * 2 : 4096;
			char *np = realloc(nm, nc);
			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			nm = np;
			cap_nm = nc;
		}
		memcpy(nm + nm_len, p, (size_t)len);
		nm[nm_len + len] = '\0';
		t->name = NULL;
		t->begin = nm_len; /* the name's place, until the names are packed */
		gg_quote(nm + nm_len, q, sizeof q);
		nm_len += len + 1;
		if ((rc = gg_u32(g, &nd, "tensor dimension count")) < 0)
			goto out;
		if (nd > MFS_ST_MAX_DIMS) {
			rc = GG_FAIL(g, MFS_E_FORMAT,
				     "tensor \"%s\" has %u dimensions, over %d", q, nd,
				     MFS_ST_MAX_DIMS);
			goto out;
		}
		for (uint32_t d = 0; d < nd; d++)
			if ((rc = gg_u64(g, &dims[d], "tensor dimension")) < 0)
				goto out;
		if ((rc = gg_u32(g, &type, "tensor type")) < 0 ||
		    (rc = gg_u64(g, &rel[i], "tensor offset")) < 0)
			goto out;
		uint32_t be, bb;
		mfs_dtype dt;
		if (mfs_gguf_type_info(type, &be, &bb, &dt) < 0) {
			rc = GG_FAIL(
			    g, MFS_E_UNSUPPORTED,
			    "tensor \"%s\" has ggml type %u, which this modelfs does "
			    "not know",
			    q, type);
			goto out;
		}
		uint64_t nelem = 1;
		int zero = 0;
		for (uint32_t d = 0; d < nd; d++)
			zero |= dims[d] == 0;
		for (uint32_t d = 0; d < nd && !zero; d++)
			if (__builtin_mul_overflow(nelem, dims[d], &nelem)) {
				rc = GG_FAIL(
				    g, MFS_E_FORMAT,
				    "tensor \"%s\"'s element count overflows 64 bits", q);
				goto out;
			}
		if (zero)
			nelem = 0;
		if (nd > 0 && dims[0] % be) {
			rc =
			    GG_FAIL(g, MFS_E_FORMAT,
				    "tensor \"%s\"'s first dimension %llu is not a whole "
				    "number of %u-element blocks",
				    q, (unsigned long long)dims[0], be);
			goto out;
		}
		uint64_t bytes = nelem / be * bb; /* nelem / be * bb <= nelem * 4.5 */
		if (nelem / be > UINT64_MAX / bb) {
			rc = GG_FAIL(g, MFS_E_FORMAT,
				     "tensor \"%s\"'s size overflows 64 bits", q);
			goto out;
		}
		if (rel[i] % align) {
			rc = GG_FAIL(
			    g, MFS_E_FORMAT,
			    "tensor \"%s\"'s offset %llu is not a multiple of the "
			    "alignment %u: the file is corrupt",
			    q, (unsigned long long)rel[i], align);
			goto out;
		}
		t->dtype = dt;
		if (dt == MFS_DT_U8 && be > 1) {
			t->ndim = 1;
			t->shape[0] = bytes;
		} else {
			t->ndim = nd;
			for (uint32_t d = 0; d < nd; d++)
				t->shape[d] = dims[nd - 1 - d];
		}
		t->end = bytes; /* until the data section's start is known */
	}
	uint64_t ds = g->pos;
	if (ds % align)
		ds += align - ds % align; /* pos <= 512 MB, align <= 2^31 */
	if (ds > g->src->size) {
		rc = GG_FAIL(
		    g, MFS_E_FORMAT,
		    "the data section would start at %llu, past the end of the file "
		    "(%llu bytes): the file is truncated",
		    (unsigned long long)ds, (unsigned long long)g->src->size);
		goto out;
	}
	size_t arr = (size_t)n * sizeof *ts;
	mfs_st_tensor *packed = malloc(arr + nm_len + 1);
	if (!packed) {
		rc = -ENOMEM;
		goto out;
	}
	if (n)
		memcpy(packed, ts, arr);
	char *names = (char *)packed + arr;
	if (nm_len)
		memcpy(names, nm, nm_len);
	for (uint64_t i = 0; i < n; i++) {
		mfs_st_tensor *t = &packed[i];
		uint64_t bytes = t->end, room = g->src->size - ds;
		t->name = names + t->begin;
		if (rel[i] > room || bytes > room - rel[i]) {
			char q[4 * GG_QUOTE + 8];
			rc = GG_FAIL(
			    g, MFS_E_FORMAT,
			    "tensor \"%s\"'s %llu bytes at data offset %llu run past "
			    "the end of the file (%llu bytes): the file is truncated "
			    "or corrupt",
			    gg_quote(t->name, q, sizeof q), (unsigned long long)bytes,
			    (unsigned long long)rel[i], (unsigned long long)g->src->size);
			free(packed);
			goto out;
		}
		t->begin = ds + rel[i];
		t->end = t->begin + bytes;
	}
	*data_start = ds;
	*ts_out = packed;
	rc = 0;
out:
	free(ts);
	free(rel);
	free(nm);
	return rc;
}

int mfs_gguf_parse(const mfs_preader *src, mfs_st_header *out, const char *what,
		   mfs_errmsg *err)
{
	gg g = {.src = src, .what = what, .err = err};
	mfs_st_tensor *ts = NULL;
	const char **sorted = NULL;
	const uint8_t *p = NULL;
	uint32_t version = 0, align = MFS_GGUF_ALIGN_DEFAULT;
	uint64_t n_tensors, n_kv, data_start = 0;
	int rc;

	memset(out, 0, sizeof *out);
	g.limit = src->size < MFS_GGUF_HEADER_MAX ? src->size : MFS_GGUF_HEADER_MAX;
	g.win = malloc(GG_WIN);
	if (!g.win)
		return -ENOMEM;
	if ((rc = gg_get(&g, 4, &p, "magic")) < 0)
		goto out;
	if (!mfs_gguf_is_gguf(p)) {
		rc = GG_FAIL(&g, MFS_E_FORMAT, "%s",
			     "does not start with \"GGUF\": not a GGUF file");
		goto out;
	}
	if ((rc = gg_u32(&g, &version, "version")) < 0)
		goto out;
	if (version != 2 && version != 3) {
		rc = GG_FAIL(
		    &g, MFS_E_UNSUPPORTED,
		    "GGUF version %u%s: only versions 2 and 3 are laid out as tensors",
		    version, version > 0xffff ? " (a big-endian file?)" : "");
		goto out;
	}
	if ((rc = gg_u64(&g, &n_tensors, "tensor count")) < 0 ||
	    (rc = gg_u64(&g, &n_kv, "metadata count")) < 0)
		goto out;
	/* a key/value takes at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 4 + 8 */
	if (n_kv > (g.limit - g.pos) / 13 || n_tensors > (g.limit - g.pos) / 24) {
		rc = GG_FAIL(
		    &g, MFS_E_FORMAT,
		    "the header claims %llu tensors and %llu metadata values, more "
		    "than its %llu bytes can hold: the file is corrupt",
		    (unsigned long long)n_tensors, (unsigned long long)n_kv,
		    (unsigned long long)(g.limit - g.pos));
		goto out;
	}
	if (n_tensors > MFS_GGUF_TENSORS_MAX) {
		rc = GG_FAIL(&g, MFS_E_TOOBIG, "%llu tensors, over the limit of %u",
			     (unsigned long long)n_tensors, MFS_GGUF_TENSORS_MAX);
		goto out;
	}
	if (n_tensors == 0) {
		rc = GG_FAIL(&g, MFS_E_UNSUPPORTED, "%s", "holds no tensors to lay out");
		goto out;
	}
	for (uint64_t i = 0; i < n_kv; i++) {
		uint64_t klen;
		uint32_t type;
		int is_align = 0;
		if ((rc = gg_u64(&g, &klen, "metadata key length")) < 0)
			goto out;
		if (klen > GG_KEY_MAX) {
			rc = GG_FAIL(&g, MFS_E_FORMAT,
				     "metadata key %llu is %llu bytes, over GGUF's 65535",
				     (unsigned long long)i, (unsigned long long)klen);
			goto out;
		}
		if ((rc = gg_get(&g, (size_t)klen, &p, "metadata key")) < 0)
			goto out;
		is_align = klen == 17 && !memcmp(p, "general.alignment", 17);
		if ((rc = gg_u32(&g, &type, "metadata value type")) < 0)
			goto out;
		if (is_align) {
			uint32_t a;
			if (type != GG_U32) {
				rc = GG_FAIL(
				    &g, MFS_E_FORMAT,
				    "general.alignment has value type %u, not u32", type);
				goto out;
			}
			if ((rc = gg_u32(&g, &a, "general.alignment")) < 0)
				goto out;
			if (a == 0 || (a & (a - 1))) {
				rc = GG_FAIL(&g, MFS_E_FORMAT,
					     "general.alignment %u is not a power of two",
					     a);
				goto out;
			}
			align = a;
			continue;
		}
		if ((rc = gg_skip_value(&g, type, 0)) < 0)
			goto out;
	}
	size_t nt = (size_t)n_tensors;
	if ((rc = gg_tensors(&g, n_tensors, align, &ts, &data_start)) < 0)
		goto out;
	if (!(sorted = malloc(nt * sizeof *sorted))) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nt; i++)
		sorted[i] = ts[i].name;
	qsort(sorted, nt, sizeof *sorted, gg_cmp_name);
	for (size_t i = 1; i < nt; i++)
		if (!strcmp(sorted[i - 1], sorted[i])) {
			char q[4 * GG_QUOTE + 8];
			rc = GG_FAIL(&g, MFS_E_FORMAT,
				     "tensor \"%s\" appears twice: the file is corrupt",
				     gg_quote(sorted[i], q, sizeof q));
			goto out;
		}
	qsort(ts, nt, sizeof *ts, gg_cmp_begin);
	uint64_t reach = 0;
	for (size_t i = 0; i < nt; i++) {
		if (ts[i].begin == ts[i].end)
			continue;
		if (ts[i].begin < reach) {
			char q[4 * GG_QUOTE + 8];
			rc = GG_FAIL(
			    &g, MFS_E_FORMAT,
			    "tensor \"%s\" overlaps another tensor's bytes: the file "
			    "is corrupt",
			    gg_quote(ts[i].name, q, sizeof q));
			goto out;
		}
		reach = ts[i].end;
	}
	out->header_len = 0;
	out->data_start = data_start;
	out->file_size = src->size;
	out->n_tensors = nt;
	out->tensors = ts;
	ts = NULL;
	rc = 0;
out:
	free(ts);
	free(sorted);
	free(g.win);
	return rc;
}
