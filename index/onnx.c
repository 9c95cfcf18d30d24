/*
 * onnx.c - the inline initializers of an ONNX model (see onnx.h).
 *
 * A protobuf message is a run of fields, each a varint tag (field number,
 * wire type) and a value whose size the wire type gives; a nested message is
 * a length-delimited value.  The walk keeps the end of the message it is in
 * and refuses any length that runs past it, so a lying length can never
 * move the walk outside its parent.
 */
#include "onnx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

#define OX_WIN	 (64u << 10)
#define OX_QUOTE 80

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

typedef struct ox {
	const mfs_preader *src;
	const char *what;
	mfs_errmsg *err;
	uint8_t *win;
	uint64_t win_off;
	size_t win_len;
	uint64_t pos;
	/* what has been found */
	mfs_st_tensor *ts;
	size_t n_ts, cap_ts;
	char *names;
	size_t names_len, cap_names;
} ox;

static const char *ox_what(const ox *o)
{
	return o->what ? o->what : "ONNX file";
}

#define OX_FAIL(o, code, fmt, ...)                                                       \
	mfs_err((o)->err, code, "%s: " fmt, ox_what(o), __VA_ARGS__)

mfs_dtype mfs_onnx_dtype(uint64_t t)
{
	switch (t) {
	case 1:
		return MFS_DT_F32;
	case 2:
		return MFS_DT_U8;
	case 3:
		return MFS_DT_I8;
	case 4:
		return MFS_DT_U16;
	case 5:
		return MFS_DT_I16;
	case 6:
		return MFS_DT_I32;
	case 7:
		return MFS_DT_I64;
	case 9:
		return MFS_DT_BOOL;
	case 10:
		return MFS_DT_F16;
	case 11:
		return MFS_DT_F64;
	case 12:
		return MFS_DT_U32;
	case 13:
		return MFS_DT_U64;
	case 16:
		return MFS_DT_BF16;
	case 17:
		return MFS_DT_F8_E4M3;
	case 19:
		return MFS_DT_F8_E5M2;
	default:
		return MFS_DT_UNKNOWN;
	}
}

static int ox_past(ox *o, uint64_t end, const char *piece)
{
	return OX_FAIL(
	    o, MFS_E_FORMAT,
	    "the %s at offset %llu runs past the end of its message (at %llu): the "
	    "file is truncated or corrupt",
	    piece, (unsigned long long)o->pos, (unsigned long long)end);
}

/* The next @p n (<= OX_WIN) bytes before @p end, valid until the next call. */
static int ox_get(ox *o, size_t n, uint64_t end, const uint8_t **p, const char *piece)
{
	if (o->pos > end || n > end - o->pos)
		return ox_past(o, end, piece);
	if (o->pos < o->win_off || o->pos + n > o->win_off + o->win_len) {
		uint64_t left = o->src->size - o->pos;
		size_t len = left < OX_WIN ? (size_t)left : OX_WIN;
		int rc = mfs_preader_read(o->src, o->pos, o->win, len);
		if (rc < 0)
			return OX_FAIL(o, rc, "reading at offset %llu failed: %s",
				       (unsigned long long)o->pos, mfs_strerror(rc));
		o->win_off = o->pos;
		o->win_len = len;
	}
	*p = o->win + (o->pos - o->win_off);
	o->pos += n;
	return 0;
}

static int ox_varint(ox *o, uint64_t end, uint64_t *v, const char *piece)
{
	uint64_t x = 0;
	for (int i = 0; i < 10; i++) {
		const uint8_t *p = NULL;
		int rc = ox_get(o, 1, end, &p, piece);
		if (rc < 0)
			return rc;
		if (i == 9 && *p > 1)
			break;
		x |= (uint64_t)(*p & 0x7f) << (7 * i);
		if (!(*p & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return OX_FAIL(o, MFS_E_FORMAT, "a varint at offset %llu is longer than 64 bits",
		       (unsigned long long)o->pos);
}

/* A length-delimited value's length, checked against @p end. */
static int ox_len(ox *o, uint64_t end, uint64_t *len, const char *piece)
{
	int rc = ox_varint(o, end, len, piece);
	if (rc < 0)
		return rc;
	if (*len > end - o->pos)
		return ox_past(o, end, piece);
	return 0;
}

static int ox_skip(ox *o, uint64_t end, unsigned wt)
{
	uint64_t v;
	switch (wt) {
	case WT_VARINT:
		return ox_varint(o, end, &v, "field");
	case WT_I64:
	case WT_I32: {
		uint64_t n = wt == WT_I64 ? 8 : 4;
		if (o->pos > end || n > end - o->pos)
			return ox_past(o, end, "field");
		o->pos += n;
		return 0;
	}
	case WT_LEN: {
		int rc = ox_len(o, end, &v, "field");
		if (rc == 0)
			o->pos += v;
		return rc;
	}
	default:
		return OX_FAIL(
		    o, MFS_E_FORMAT,
		    "wire type %u at offset %llu (a group, or not protobuf): not an "
		    "ONNX model",
		    wt, (unsigned long long)o->pos);
	}
}

/* One TensorProto in [pos, end): a span when its values are raw_data. */
static int ox_tensor(ox *o, uint64_t end, int *n_raw_out)
{
	uint64_t dims[MFS_ST_MAX_DIMS], data_type = 0, raw_off = 0, raw_len = 0, v, len;
	uint32_t nd = 0;
	int has_raw = 0, external = 0, has_name = 0, rc;
	size_t name_at = o->names_len;
	char q[4 * OX_QUOTE + 8] = "?";
	while (o->pos < end) {
		if ((rc = ox_varint(o, end, &v, "tensor field")) < 0)
			return rc;
		uint64_t field = v >> 3;
		unsigned wt = (unsigned)(v & 7);
		if (field == 1 && (wt == WT_VARINT || wt == WT_LEN)) { /* dims */
			uint64_t stop = end;
			if (wt == WT_LEN) {
				if ((rc = ox_len(o, end, &len, "tensor dims")) < 0)
					return rc;
				stop = o->pos + len;
			}
			/* one varint, or a packed run of them */
			for (int first = 1; first ? 1 : (wt == WT_LEN && o->pos < stop);
			     first = 0) {
				if (first && wt == WT_LEN && o->pos == stop)
					break;
				if (nd == MFS_ST_MAX_DIMS)
					return OX_FAIL(
					    o, MFS_E_FORMAT,
					    "an initializer has more than %d dimensions",
					    MFS_ST_MAX_DIMS);
				if ((rc = ox_varint(o, stop, &dims[nd++], "tensor dim")) <
				    0)
					return rc;
			}
		} else if (field == 2 && wt == WT_VARINT) {
			if ((rc = ox_varint(o, end, &data_type, "tensor data_type")) < 0)
				return rc;
		} else if (field == 8 && wt == WT_LEN) {
			const uint8_t *p = NULL;
			if ((rc = ox_len(o, end, &len, "tensor name")) < 0)
				return rc;
			if (len > MFS_ONNX_NAME_MAX)
				return OX_FAIL(
				    o, MFS_E_TOOBIG,
				    "an initializer's name is %llu bytes, over the "
				    "%d-byte limit",
				    (unsigned long long)len, MFS_ONNX_NAME_MAX);
			if ((rc = ox_get(o, (size_t)len, end, &p, "tensor name")) < 0)
				return rc;
			if (memchr(p, '\0', (size_t)len))
				return OX_FAIL(o, MFS_E_FORMAT, "%s",
					       "an initializer's name holds a NUL byte");
			while (o->cap_names < name_at + len + 1) {
				size_t nc = o->cap_names ? o->cap_names * 2 : 4096;
				char *np = realloc(o->names, nc);
				if (!np)
					return -ENOMEM;
				o->names = np;
				o->cap_names = nc;
			}
			/* protobuf: the last name wins */
			memcpy(o->names + name_at, p, (size_t)len);
			o->names[name_at + len] = '\0';
			has_name = 1;
			mfs_str_quote(o->names + name_at, OX_QUOTE, q, sizeof q);
		} else if (field == 9 && wt == WT_LEN) {
			if (has_raw)
				return OX_FAIL(
				    o, MFS_E_FORMAT,
				    "an initializer has raw_data twice (at offset %llu)",
				    (unsigned long long)o->pos);
			if ((rc = ox_len(o, end, &raw_len, "raw_data")) < 0)
				return rc;
			raw_off = o->pos;
			o->pos += raw_len;
			has_raw = 1;
		} else if (field == 13 && wt == WT_LEN) {
			external = 1;
			if ((rc = ox_skip(o, end, wt)) < 0)
				return rc;
		} else if (field == 14 && wt == WT_VARINT) {
			if ((rc = ox_varint(o, end, &v, "data_location")) < 0)
				return rc;
			external |= v == 1;
		} else if ((rc = ox_skip(o, end, wt)) < 0) {
			return rc;
		}
	}
	mfs_dtype dt = mfs_onnx_dtype(data_type);
	if (!has_raw || external || dt == MFS_DT_UNKNOWN || raw_len == 0)
		return 0; /* its bytes stay in a gap */
	if (!has_name)
		return OX_FAIL(o, MFS_E_FORMAT,
			       "the initializer at offset %llu has no name",
			       (unsigned long long)raw_off);
	uint64_t nelem = 1, bits;
	for (uint32_t i = 0; i < nd; i++)
		if ((int64_t)dims[i] < 0 ||
		    __builtin_mul_overflow(nelem, dims[i], &nelem))
			return OX_FAIL(
			    o, MFS_E_FORMAT,
			    "initializer \"%s\" has a negative or overflowing shape", q);
	if (__builtin_mul_overflow(nelem, (uint64_t)mfs_dtype_bits(dt), &bits) ||
	    bits / 8 != raw_len || bits % 8)
		return OX_FAIL(
		    o, MFS_E_FORMAT,
		    "initializer \"%s\": %llu elements of %s are not its %llu bytes of "
		    "raw_data: the file is corrupt",
		    q, (unsigned long long)nelem, mfs_dtype_name(dt),
		    (unsigned long long)raw_len);
	if (o->n_ts >= MFS_ONNX_TENSORS_MAX)
		return OX_FAIL(o, MFS_E_TOOBIG, "more than %u initializers, the limit",
			       MFS_ONNX_TENSORS_MAX);
	void *g = mfs_grow(o->ts, &o->cap_ts, o->n_ts, sizeof *o->ts, 64);
	if (!g)
		return -ENOMEM;
	o->ts = g;
	mfs_st_tensor *t = &o->ts[o->n_ts++];
	memset(t, 0, sizeof *t);
	t->dtype = dt;
	t->ndim = nd;
	memcpy(t->shape, dims, nd * sizeof *dims);
	t->begin = raw_off;
	t->end = raw_off + raw_len;
	t->name = (char *)(uintptr_t)name_at; /* an offset until the names are packed */
	o->names_len = name_at + strlen(o->names + name_at) + 1;
	(*n_raw_out)++;
	return 0;
}

static int ox_graph(ox *o, uint64_t end)
{
	uint64_t v, len;
	int rc, n_raw = 0;
	while (o->pos < end) {
		if ((rc = ox_varint(o, end, &v, "graph field")) < 0)
			return rc;
		if ((v >> 3) == 5 && (v & 7) == WT_LEN) {
			if ((rc = ox_len(o, end, &len, "initializer")) < 0)
				return rc;
			uint64_t stop = o->pos + len;
			if ((rc = ox_tensor(o, stop, &n_raw)) < 0)
				return rc;
			o->pos = stop;
		} else if ((rc = ox_skip(o, end, (unsigned)(v & 7))) < 0) {
			return rc;
		}
	}
	return 0;
}

static int ox_cmp_begin(const void *a, const void *b)
{
	const mfs_st_tensor *x = a, *y = b;
	return (x->begin > y->begin) - (x->begin < y->begin);
}

static int ox_cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int mfs_onnx_parse(const mfs_preader *src, mfs_st_header *out, const char *what,
		   mfs_errmsg *err)
{
	ox o = {.src = src, .what = what, .err = err};
	const char **sorted = NULL;
	mfs_st_tensor *packed = NULL;
	int rc, graphs = 0;
	uint64_t v, len, end = src->size;

	memset(out, 0, sizeof *out);
	if (!(o.win = malloc(OX_WIN)))
		return -ENOMEM;
	while (o.pos < end) {
		if ((rc = ox_varint(&o, end, &v, "model field")) < 0)
			goto out;
		if ((v >> 3) == 7 && (v & 7) == WT_LEN) {
			if (graphs++) {
				rc = OX_FAIL(&o, MFS_E_FORMAT, "%s",
					     "the model holds two graphs");
				goto out;
			}
			if ((rc = ox_len(&o, end, &len, "graph")) < 0)
				goto out;
			uint64_t stop = o.pos + len;
			if ((rc = ox_graph(&o, stop)) < 0)
				goto out;
			o.pos = stop;
		} else if ((rc = ox_skip(&o, end, (unsigned)(v & 7))) < 0) {
			goto out;
		}
	}
	if (o.n_ts == 0) {
		rc = OX_FAIL(&o, MFS_E_UNSUPPORTED, "%s",
			     "no initializer holds inline raw_data: nothing to lay out");
		goto out;
	}
	size_t arr = o.n_ts * sizeof *o.ts;
	packed = malloc(arr + o.names_len + 1);
	sorted = malloc(o.n_ts * sizeof *sorted);
	if (!packed || !sorted) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(packed, o.ts, arr);
	char *names = (char *)packed + arr;
	memcpy(names, o.names, o.names_len);
	for (size_t i = 0; i < o.n_ts; i++) {
		packed[i].name = names + (uintptr_t)packed[i].name;
		sorted[i] = packed[i].name;
	}
	qsort(sorted, o.n_ts, sizeof *sorted, ox_cmp_name);
	for (size_t i = 1; i < o.n_ts; i++)
		if (!strcmp(sorted[i - 1], sorted[i])) {
			char q[4 * OX_QUOTE + 8];
			rc = OX_FAIL(&o, MFS_E_FORMAT, "initializer \"%s\" appears twice",
				     mfs_str_quote(sorted[i], OX_QUOTE, q, sizeof q));
			goto out;
		}
	/* raw_data fields of distinct messages never share bytes: sorted, the
	 * spans are disjoint */
	qsort(packed, o.n_ts, sizeof *packed, ox_cmp_begin);
	if (packed[0].begin < 8) {
		rc = OX_FAIL(
		    &o, MFS_E_UNSUPPORTED, "%s",
		    "the first initializer starts in the first 8 bytes: too small to lay "
		    "out");
		goto out;
	}
	out->header_len = 0;
	out->data_start = packed[0].begin;
	out->file_size = src->size;
	out->n_tensors = o.n_ts;
	out->tensors = packed;
	packed = NULL;
	rc = 0;
out:
	free(packed);
	free(sorted);
	free(o.ts);
	free(o.names);
	free(o.win);
	return rc;
}
