/*
 * safetensors.c - parse and check a safetensors header (see safetensors.h).
 *
 * The header is untrusted input: every number, type and range is checked
 * before it is used, and every failure names the file and the tensor.  Work is
 * O(n log n) in the number of tensors (two sorts: by offset for the overlap
 * check and the spans, by name for duplicates), so a 10k-tensor header costs
 * milliseconds.
 *
 * cJSON keeps duplicate keys as separate items and accepts a few things JSON
 * (and the reference safetensors reader) does not: raw control characters in
 * strings, a UTF-8 byte order mark, invalid UTF-8, "\u0000" that truncates a
 * key.  A byte-level pre-scan rejects those, so two readers of one file agree
 * on what it contains.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* JSON numbers are doubles: integers at or above 2^53 are not exact. */
#define ST_MAX_EXACT_INT 9007199254740992.0 /* 2^53 */

/* Longest part of a tensor name quoted in a message (the message is 512 bytes). */
#define ST_NAME_QUOTE_MAX 160

static const char *st_what(const char *what)
{
	return what ? what : "safetensors file";
}

/* A tensor name is user input: quoted (mfs_str_quote) so it cannot put
 * terminal escapes into a message. */
static const char *st_quote(const char *name, char *buf, size_t cap)
{
	return mfs_str_quote(name, ST_NAME_QUOTE_MAX, buf, cap);
}

int mfs_st_header_len(const uint8_t first8[8], uint64_t file_size, uint64_t *out,
		      const char *what, mfs_errmsg *err)
{
	uint64_t n = 0;

	*out = 0;
	if (file_size < 8)
		return mfs_err(err, MFS_E_FORMAT,
			       "%s: file is %llu bytes, shorter than the 8-byte header "
			       "length of a safetensors file; it is truncated or not a "
			       "safetensors file",
			       st_what(what), (unsigned long long)file_size);
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | first8[i];
	if (n > MFS_ST_HEADER_MAX)
		return mfs_err(err, MFS_E_FORMAT,
			       "%s: header length %llu is over the %llu-byte limit; the "
			       "file is corrupt or not a safetensors file",
			       st_what(what), (unsigned long long)n,
			       (unsigned long long)MFS_ST_HEADER_MAX);
	if (n > file_size - 8)
		return mfs_err(
		    err, MFS_E_FORMAT,
		    "%s: header length %llu runs past the end of the file "
		    "(size %llu); the file is truncated or not a safetensors file",
		    st_what(what), (unsigned long long)n, (unsigned long long)file_size);
	*out = n;
	return 0;
}

/*
 * Byte-level checks cJSON does not make: valid UTF-8 (no overlongs, no
 * surrogates, nothing past U+10FFFF), no raw control characters other than
 * JSON whitespace, no "\u0000" escape inside a string (cJSON would cut the key
 * there), and the first non-blank byte is '{'.
 */
static int st_prescan(const unsigned char *s, size_t n, const char *what, mfs_errmsg *err)
{
	int in_str = 0, esc = 0;
	size_t i = 0;

	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	if (i == n || s[i] != '{')
		return mfs_err(err, MFS_E_FORMAT,
			       "%s: header does not start with a JSON object ('{'); the "
			       "file is corrupt or not a safetensors file",
			       st_what(what));
	while (i < n) {
		unsigned c = s[i];

		if (c < 0x80) {
			if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
				goto ctrl;
			if (in_str && c < 0x20)
				goto ctrl;
			if (esc) {
				esc = 0;
				if (c == 'u' && i + 4 < n &&
				    memcmp(s + i + 1, "0000", 4) == 0)
					return mfs_err(err, MFS_E_FORMAT,
						       "%s: header byte %zu: a \\u0000 "
						       "escape in a JSON string is not "
						       "allowed in a safetensors header",
						       st_what(what), i - 1);
			} else if (in_str && c == '\\') {
				esc = 1;
			} else if (c == '"') {
				in_str = !in_str;
			}
			i++;
			continue;
		}
		esc = 0;
		size_t len;
		unsigned cp, min;
		if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			goto utf8;
		}
		if (n - i < len)
			goto utf8;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto utf8;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			goto utf8;
		i += len;
	}
	return 0;
ctrl:
	return mfs_err(err, MFS_E_FORMAT,
		       "%s: header byte %zu is the control character 0x%02x, which JSON "
		       "does not allow there; the file is corrupt",
		       st_what(what), i, s[i]);
utf8:
	return mfs_err(err, MFS_E_FORMAT,
		       "%s: header byte %zu is not valid UTF-8; the file is corrupt or "
		       "not a safetensors file",
		       st_what(what), i);
}

/*
 * A JSON number that must be an exact non-negative integer below 2^53.
 * Returns 0 and the value, or 1 when it is not one (the caller words the
 * message, since it knows which field this is).
 */
static int st_uint(const cJSON *v, uint64_t *out)
{
	if (!cJSON_IsNumber(v))
		return 1;
	double d = v->valuedouble;
	/* Written so that NaN fails too; in range, the cast is exact. */
	if (!(d >= 0 && d < ST_MAX_EXACT_INT))
		return 1;
	uint64_t u = (uint64_t)d;
	if ((double)u != d)
		return 1;
	*out = u;
	return 0;
}

/* Describe a JSON value for a message: its type, and its value if short. */
static const char *st_describe(const cJSON *v, char *buf, size_t cap)
{
	if (!v)
		snprintf(buf, cap, "nothing");
	else if (cJSON_IsNumber(v))
		snprintf(buf, cap, "the number %.17g", v->valuedouble);
	else if (cJSON_IsString(v))
		snprintf(buf, cap, "a string");
	else if (cJSON_IsArray(v))
		snprintf(buf, cap, "an array");
	else if (cJSON_IsObject(v))
		snprintf(buf, cap, "an object");
	else if (cJSON_IsBool(v))
		snprintf(buf, cap, "a boolean");
	else if (cJSON_IsNull(v))
		snprintf(buf, cap, "null");
	else
		snprintf(buf, cap, "an unknown JSON value");
	return buf;
}

/* Context for building messages about one tensor. */
struct st_ctx {
	const char *what;
	mfs_errmsg *err;
	char qname[ST_NAME_QUOTE_MAX * 4 + 8];
};

#define ST_FAIL(c, fmt, ...)                                                             \
	mfs_err((c)->err, MFS_E_FORMAT, "%s: tensor \"%s\": " fmt, st_what((c)->what),   \
		(c)->qname, __VA_ARGS__)

static int st_parse_tensor(struct st_ctx *c, const cJSON *obj, uint64_t data_size,
			   uint64_t data_start, mfs_st_tensor *t)
{
	const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
	char desc[64];

	if (!cJSON_IsObject(obj))
		return ST_FAIL(c,
			       "entry is %s, expected an object with dtype, shape and "
			       "data_offsets",
			       st_describe(obj, desc, sizeof desc));
	/* Unknown fields are ignored (as serde does); known ones must appear once. */
	for (const cJSON *f = obj->child; f; f = f->next) {
		const cJSON **slot = NULL;
		if (!f->string)
			continue;
		if (strcmp(f->string, "dtype") == 0)
			slot = &dtype;
		else if (strcmp(f->string, "shape") == 0)
			slot = &shape;
		else if (strcmp(f->string, "data_offsets") == 0)
			slot = &offs;
		if (!slot)
			continue;
		if (*slot)
			return ST_FAIL(c, "field \"%s\" appears twice", f->string);
		*slot = f;
	}

	if (!dtype)
		return ST_FAIL(c, "%s", "missing field \"dtype\"");
	if (!cJSON_IsString(dtype) || !dtype->valuestring)
		return ST_FAIL(c, "dtype is %s, expected a string such as \"BF16\"",
			       st_describe(dtype, desc, sizeof desc));
	t->dtype = mfs_dtype_from_name(dtype->valuestring);
	if (t->dtype == MFS_DT_UNKNOWN) {
		char qd[ST_NAME_QUOTE_MAX * 4 + 8];
		return ST_FAIL(c, "unknown dtype \"%s\"; this modelfs does not know it",
			       st_quote(dtype->valuestring, qd, sizeof qd));
	}

	if (!shape)
		return ST_FAIL(c, "%s", "missing field \"shape\"");
	if (!cJSON_IsArray(shape))
		return ST_FAIL(c, "shape is %s, expected an array of integers",
			       st_describe(shape, desc, sizeof desc));
	uint32_t ndim = 0;
	int has_zero = 0;
	for (const cJSON *d = shape->child; d; d = d->next) {
		uint64_t v;
		if (ndim == MFS_ST_MAX_DIMS)
			return ST_FAIL(c, "shape has more than %d dimensions",
				       MFS_ST_MAX_DIMS);
		if (st_uint(d, &v))
			return ST_FAIL(c,
				       "shape entry %u is %s, expected a non-negative "
				       "integer below 2^53",
				       ndim, st_describe(d, desc, sizeof desc));
		t->shape[ndim++] = v;
		has_zero |= v == 0;
	}
	t->ndim = ndim;

	if (!offs)
		return ST_FAIL(c, "%s", "missing field \"data_offsets\"");
	if (!cJSON_IsArray(offs))
		return ST_FAIL(c, "data_offsets is %s, expected [begin, end]",
			       st_describe(offs, desc, sizeof desc));
	const cJSON *b = offs->child, *e = b ? b->next : NULL;
	if (!b || !e || e->next)
		return ST_FAIL(c,
			       "data_offsets has %d entries, expected 2 ([begin, end])",
			       cJSON_GetArraySize(offs));
	uint64_t begin, end;
	if (st_uint(b, &begin))
		return ST_FAIL(c,
			       "data_offsets begin is %s, expected a non-negative "
			       "integer below 2^53",
			       st_describe(b, desc, sizeof desc));
	if (st_uint(e, &end))
		return ST_FAIL(c,
			       "data_offsets end is %s, expected a non-negative "
			       "integer below 2^53",
			       st_describe(e, desc, sizeof desc));
	if (begin > end)
		return ST_FAIL(c,
			       "data_offsets [%llu, %llu] begin is after end; the file "
			       "is corrupt",
			       (unsigned long long)begin, (unsigned long long)end);
	if (end > data_size)
		return ST_FAIL(c,
			       "data_offsets [%llu, %llu] end past the data section "
			       "(size %llu); the file is truncated or corrupt",
			       (unsigned long long)begin, (unsigned long long)end,
			       (unsigned long long)data_size);

	/*
	 * A zero dimension makes the tensor empty whatever the others are, so the
	 * product is not checked for overflow then (the answer does not depend on
	 * the order of the dimensions).
	 */
	uint64_t nelem = 1, bits;
	if (has_zero) {
		nelem = 0;
	} else {
		for (uint32_t i = 0; i < ndim; i++)
			if (__builtin_mul_overflow(nelem, t->shape[i], &nelem))
				return ST_FAIL(c,
					       "the shape's element count overflows 64 "
					       "bits (%u dimensions); the file is "
					       "corrupt",
					       ndim);
	}
	if (__builtin_mul_overflow(nelem, (uint64_t)mfs_dtype_bits(t->dtype), &bits))
		return ST_FAIL(c,
			       "%llu elements of %s overflow 64 bits; the file is "
			       "corrupt",
			       (unsigned long long)nelem, mfs_dtype_name(t->dtype));
	if (bits % 8)
		return ST_FAIL(c,
			       "%llu elements of %s (%u bits each) are not a whole "
			       "number of bytes",
			       (unsigned long long)nelem, mfs_dtype_name(t->dtype),
			       mfs_dtype_bits(t->dtype));
	if (bits / 8 != end - begin)
		return ST_FAIL(c,
			       "shape and dtype %s give %llu bytes but data_offsets "
			       "[%llu, %llu] hold %llu; the file is corrupt",
			       mfs_dtype_name(t->dtype), (unsigned long long)(bits / 8),
			       (unsigned long long)begin, (unsigned long long)end,
			       (unsigned long long)(end - begin));

	/* data_start <= 8 + 100 MB and end < 2^53: the sum cannot wrap. */
	t->begin = data_start + begin;
	t->end = data_start + end;
	return 0;
}

static int st_check_metadata(const cJSON *meta, const char *what, mfs_errmsg *err)
{
	char desc[64], q[ST_NAME_QUOTE_MAX * 4 + 8];

	if (!cJSON_IsObject(meta))
		return mfs_err(err, MFS_E_FORMAT,
			       "%s: \"__metadata__\" is %s, expected an object of "
			       "string values",
			       st_what(what), st_describe(meta, desc, sizeof desc));
	for (const cJSON *m = meta->child; m; m = m->next)
		if (!cJSON_IsString(m))
			return mfs_err(err, MFS_E_FORMAT,
				       "%s: \"__metadata__\" key \"%s\" is %s, "
				       "expected a string",
				       st_what(what),
				       st_quote(m->string ? m->string : "", q, sizeof q),
				       st_describe(m, desc, sizeof desc));
	return 0;
}

/* Sort order of tensors: by begin, then end, then name (a total order). */
static int st_cmp_offset(const void *a, const void *b)
{
	const mfs_st_tensor *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int st_cmp_name(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;

	return strcmp(*x, *y);
}

/*
 * Duplicate keys, "__metadata__" included, are found by sorting all top-level
 * keys: cJSON keeps every duplicate as its own item.
 */
static int st_check_duplicates(const cJSON *root, size_t n_keys, const char *what,
			       mfs_errmsg *err)
{
	const char **names = malloc((n_keys ? n_keys : 1) * sizeof *names);
	size_t i = 0;
	int rc = 0;

	if (!names)
		return mfs_err(err, -ENOMEM, "%s: out of memory checking tensor names",
			       st_what(what));
	for (const cJSON *it = root->child; it; it = it->next)
		names[i++] = it->string ? it->string : "";
	qsort(names, n_keys, sizeof *names, st_cmp_name);
	for (i = 1; i < n_keys; i++) {
		if (strcmp(names[i - 1], names[i]) == 0) {
			char q[ST_NAME_QUOTE_MAX * 4 + 8];
			rc = mfs_err(err, MFS_E_FORMAT,
				     "%s: tensor \"%s\": the name appears more than once "
				     "in the header; the file is corrupt",
				     st_what(what), st_quote(names[i], q, sizeof q));
			break;
		}
	}
	free(names);
	return rc;
}

int mfs_st_parse(const char *json, uint64_t header_len, uint64_t file_size,
		 mfs_st_header *out, const char *what, mfs_errmsg *err)
{
	char *copy = NULL;
	cJSON *root = NULL;
	mfs_st_tensor *tensors = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	if (!json && header_len)
		return mfs_err(err, MFS_E_INVAL, "%s: no header bytes given",
			       st_what(what));
	if (header_len > MFS_ST_HEADER_MAX || file_size < 8 || header_len > file_size - 8)
		return mfs_err(err, MFS_E_FORMAT,
			       "%s: header length %llu does not fit the file (size %llu) "
			       "or is over the %llu-byte limit; the file is corrupt",
			       st_what(what), (unsigned long long)header_len,
			       (unsigned long long)file_size,
			       (unsigned long long)MFS_ST_HEADER_MAX);

	uint64_t data_start = 8 + header_len;
	uint64_t data_size = file_size - data_start;
	size_t n = (size_t)header_len;

	rc = st_prescan((const unsigned char *)json, n, what, err);
	if (rc)
		return rc;

	/*
	 * cJSON reads a NUL-terminated copy: the length-bounded entry point has
	 * had bounds bugs in past releases, and the copy costs little next to the
	 * parse.  The pre-scan made sure the header holds no NUL byte.
	 */
	copy = malloc(n + 1);
	if (!copy)
		return mfs_err(err, -ENOMEM, "%s: out of memory for a %zu-byte header",
			       st_what(what), n);
	memcpy(copy, json, n);
	copy[n] = '\0';

	/*
	 * Every cJSON parse writes the library's global error position, so two
	 * ingest threads parsing at once race on it (ThreadSanitizer does not see
	 * it: the system libcjson is not instrumented).  A header parse is short
	 * next to reading the file: serialise it.
	 */
	static pthread_mutex_t cjson_lock = PTHREAD_MUTEX_INITIALIZER;
	const char *end = NULL;
	pthread_mutex_lock(&cjson_lock);
	root = cJSON_ParseWithOpts(copy, &end, 0);
	pthread_mutex_unlock(&cjson_lock);
	if (!root) {
		/* cJSON reports failure and out-of-memory alike; it is nearly always
		 * the former for a header that passed the pre-scan. */
		size_t at =
		    end && end >= copy && end <= copy + n ? (size_t)(end - copy) : 0;
		rc = mfs_err(err, MFS_E_FORMAT,
			     "%s: header is not valid JSON (error near byte %zu of %zu); "
			     "the file is corrupt or not a safetensors file",
			     st_what(what), at, n);
		goto out;
	}
	for (const char *p = end; p && p < copy + n; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			rc =
			    mfs_err(err, MFS_E_FORMAT,
				    "%s: header has bytes after the JSON object (at byte "
				    "%zu of %zu); the file is corrupt",
				    st_what(what), (size_t)(p - copy), n);
			goto out;
		}
	}
	if (!cJSON_IsObject(root)) {
		rc = mfs_err(err, MFS_E_FORMAT, "%s: header is not a JSON object",
			     st_what(what));
		goto out;
	}

	size_t n_keys = 0, n_tensors = 0, names_len = 0;
	for (const cJSON *it = root->child; it; it = it->next) {
		n_keys++;
		if (it->string && strcmp(it->string, "__metadata__") == 0)
			continue;
		n_tensors++;
		names_len += strlen(it->string ? it->string : "") + 1;
	}
	rc = st_check_duplicates(root, n_keys, what, err);
	if (rc)
		goto out;

	/*
	 * One block holds the tensor array and then every name, so the header is
	 * freed with one free() and the names stay put while the array is sorted.
	 * Both sizes are bounded by the header length (<= 100 MB), so the sum
	 * cannot overflow.
	 */
	size_t arr_bytes = n_tensors * sizeof *tensors;
	tensors = malloc(arr_bytes + names_len + 1);
	if (!tensors) {
		rc = mfs_err(err, -ENOMEM, "%s: out of memory for %zu tensors",
			     st_what(what), n_tensors);
		goto out;
	}
	char *names = (char *)tensors + arr_bytes;
	size_t ti = 0;
	struct st_ctx ctx = {.what = what, .err = err};

	for (const cJSON *it = root->child; it; it = it->next) {
		const char *name = it->string ? it->string : "";
		if (strcmp(name, "__metadata__") == 0) {
			rc = st_check_metadata(it, what, err);
			if (rc)
				goto out;
			continue;
		}
		mfs_st_tensor *t = &tensors[ti++];
		size_t len = strlen(name);
		memset(t, 0, sizeof *t);
		memcpy(names, name, len + 1);
		t->name = names;
		names += len + 1;
		st_quote(name, ctx.qname, sizeof ctx.qname);
		rc = st_parse_tensor(&ctx, it, data_size, data_start, t);
		if (rc)
			goto out;
	}

	qsort(tensors, n_tensors, sizeof *tensors, st_cmp_offset);

	/*
	 * Sorted by begin, two non-empty tensors share a byte exactly when one
	 * begins before the furthest end seen so far.  Empty tensors hold no
	 * byte and overlap nothing.
	 */
	const mfs_st_tensor *furthest = NULL;
	for (size_t i = 0; i < n_tensors; i++) {
		const mfs_st_tensor *t = &tensors[i];
		if (t->begin == t->end)
			continue;
		if (furthest && t->begin < furthest->end) {
			char q2[ST_NAME_QUOTE_MAX * 4 + 8];
			st_quote(t->name, ctx.qname, sizeof ctx.qname);
			rc = ST_FAIL(&ctx,
				     "data_offsets [%llu, %llu] overlap tensor \"%s\" at "
				     "[%llu, %llu]; the file is corrupt",
				     (unsigned long long)(t->begin - data_start),
				     (unsigned long long)(t->end - data_start),
				     st_quote(furthest->name, q2, sizeof q2),
				     (unsigned long long)(furthest->begin - data_start),
				     (unsigned long long)(furthest->end - data_start));
			goto out;
		}
		if (!furthest || t->end > furthest->end)
			furthest = t;
	}

	out->header_len = header_len;
	out->data_start = data_start;
	out->file_size = file_size;
	out->n_tensors = n_tensors;
	out->tensors = tensors;
	tensors = NULL;
	rc = 0;
out:
	free(tensors);
	cJSON_Delete(root);
	free(copy);
	return rc;
}

void mfs_st_header_free(mfs_st_header *h)
{
	if (!h)
		return;
	/* The names live in the same block as the array (see mfs_st_parse). */
	free(h->tensors);
	memset(h, 0, sizeof *h);
}

int mfs_st_spans(const mfs_st_header *h, mfs_st_span **spans, size_t *n_spans)
{
	*spans = NULL;
	*n_spans = 0;
	if (!h || h->data_start < 8 || h->data_start > h->file_size ||
	    h->n_tensors > (SIZE_MAX / sizeof(mfs_st_span) - 2) / 2 ||
	    h->n_tensors > (size_t)INT32_MAX)
		return MFS_E_INVAL;

	/* Header, then at most a gap and a tensor per tensor, then the tail. */
	size_t cap = 2 + 2 * h->n_tensors, n = 0;
	mfs_st_span *s = malloc(cap * sizeof *s);
	if (!s)
		return -ENOMEM;

	/* The header is its own span, even when padding follows it. */
	s[n++] = (mfs_st_span){0, h->data_start, -1};
	uint64_t cur = h->data_start;
	for (size_t i = 0; i < h->n_tensors; i++) {
		const mfs_st_tensor *t = &h->tensors[i];
		if (t->begin == t->end)
			continue;
		/* Holds for any header mfs_st_parse made; guards a hand-made one. */
		if (t->begin < cur || t->end < t->begin || t->end > h->file_size) {
			free(s);
			return MFS_E_INVAL;
		}
		if (t->begin > cur)
			s[n++] = (mfs_st_span){cur, t->begin - cur, -1};
		s[n++] = (mfs_st_span){t->begin, t->end - t->begin, (int)i};
		cur = t->end;
	}
	if (cur < h->file_size)
		s[n++] = (mfs_st_span){cur, h->file_size - cur, -1};
	*spans = s;
	*n_spans = n;
	return 0;
}
