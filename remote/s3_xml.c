#include "s3_xml.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Element names here are short literals; a longer one is a caller's bug. */
#define XML_NAME_MAX 64

int mfs_xml_elem(const char *p, const char *end, const char *name, const char **in,
		 const char **in_end, const char **after)
{
	size_t n = strlen(name);
	if (n == 0 || n > XML_NAME_MAX || !p || end < p)
		return MFS_E_INVAL;
	char open[XML_NAME_MAX + 2], close[XML_NAME_MAX + 4];
	open[0] = '<';
	memcpy(open + 1, name, n);
	close[0] = '<';
	close[1] = '/';
	memcpy(close + 2, name, n);
	close[n + 2] = '>';
	const char *s = p;
	for (;;) {
		const char *t = memmem(s, (size_t)(end - s), open, n + 1);
		if (!t)
			return MFS_E_NOTFOUND;
		const char *q = t + n + 1;
		if (q >= end)
			return MFS_E_CORRUPT;
		if (*q == '>' || *q == '/' || *q == ' ' || *q == '\t' || *q == '\r' ||
		    *q == '\n') {
			const char *gt = memchr(q, '>', (size_t)(end - q));
			if (!gt)
				return MFS_E_CORRUPT;
			if (gt > q && gt[-1] == '/') { /* <name/> or <name a="b"/> */
				*in = *in_end = gt + 1;
				*after = gt + 1;
				return 0;
			}
			const char *body = gt + 1;
			const char *c = memmem(body, (size_t)(end - body), close, n + 3);
			if (!c)
				return MFS_E_CORRUPT;
			*in = body;
			*in_end = c;
			*after = c + n + 3;
			return 0;
		}
		s = q; /* "<KeyCount" when looking for "<Key": go on */
	}
}

/* Append code point @p cp as UTF-8; 0 or MFS_E_TOOBIG. */
static int put_utf8(uint32_t cp, char *out, size_t cap, size_t *o)
{
	unsigned char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xC0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xE0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xF0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	if (cap - *o <= n) /* keep one byte for the NUL */
		return MFS_E_TOOBIG;
	memcpy(out + *o, b, n);
	*o += n;
	return 0;
}

static const struct {
	const char *name;
	char c;
} xml_entities[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''},
};

int mfs_xml_text(const char *p, const char *end, char *out, size_t cap, size_t *len)
{
	size_t o = 0;
	if (cap == 0)
		return MFS_E_TOOBIG;
	out[0] = '\0';
	while (p < end) {
		char c = *p;
		if (c == '\0')
			return MFS_E_CORRUPT;
		if (c != '&') {
			if (cap - o <= 1)
				return MFS_E_TOOBIG;
			out[o++] = c;
			p++;
			continue;
		}
		const char *semi =
		    memchr(p, ';', (size_t)(end - p) < 12 ? (size_t)(end - p) : 12);
		if (!semi)
			return MFS_E_CORRUPT;
		const char *ent = p + 1;
		size_t elen = (size_t)(semi - ent);
		if (elen >= 2 && ent[0] == '#') {
			uint32_t cp = 0;
			int hex = ent[1] == 'x' || ent[1] == 'X';
			const char *d = ent + 1 + hex;
			if (d >= semi)
				return MFS_E_CORRUPT;
			for (; d < semi; d++) {
				int v;
				if (*d >= '0' && *d <= '9')
					v = *d - '0';
				else if (hex && *d >= 'a' && *d <= 'f')
					v = *d - 'a' + 10;
				else if (hex && *d >= 'A' && *d <= 'F')
					v = *d - 'A' + 10;
				else
					return MFS_E_CORRUPT;
				cp = cp * (hex ? 16u : 10u) + (uint32_t)v;
				if (cp > 0x10FFFF)
					return MFS_E_CORRUPT;
			}
			if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
				return MFS_E_CORRUPT;
			int rc = put_utf8(cp, out, cap, &o);
			if (rc)
				return rc;
		} else {
			size_t i;
			for (i = 0; i < sizeof xml_entities / sizeof xml_entities[0]; i++)
				if (strlen(xml_entities[i].name) == elen &&
				    memcmp(xml_entities[i].name, ent, elen) == 0)
					break;
			if (i == sizeof xml_entities / sizeof xml_entities[0])
				return MFS_E_CORRUPT;
			if (cap - o <= 1)
				return MFS_E_TOOBIG;
			out[o++] = xml_entities[i].c;
		}
		p = semi + 1;
	}
	out[o] = '\0';
	if (len)
		*len = o;
	return 0;
}

/* A decimal u64 in [p, end), surrounding whitespace allowed. */
static int parse_u64(const char *p, const char *end, uint64_t *v)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	while (end > p &&
	       (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t'))
		end--;
	if (p == end || end - p > 20)
		return MFS_E_CORRUPT;
	uint64_t x = 0;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return MFS_E_CORRUPT;
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return MFS_E_CORRUPT;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

int mfs_s3_list_page_parse(const char *body, size_t len, mfs_s3_list_fn fn, void *arg,
			   int *truncated, char *token, size_t cap, mfs_errmsg *e)
{
	const char *end = body + len, *in, *in_end, *after;
	*truncated = 0;
	if (cap)
		token[0] = '\0';
	int rc = mfs_xml_elem(body, end, "ListBucketResult", &in, &in_end, &after);
	if (rc)
		return mfs_err(e, MFS_E_CORRUPT,
			       "the listing is not a ListBucketResult (%zu bytes)", len);
	const char *res = in, *res_end = in_end;
	/* The page's own fields come after or before its entries; keys cannot
	 * contain markup, so search the whole result for them, and cut the
	 * <Contents> out before reading each entry's fields. */
	char key[MFS_S3_KEY_MAX];
	const char *s = res;
	uint64_t n = 0;
	for (;;) {
		const char *c, *c_end;
		rc = mfs_xml_elem(s, res_end, "Contents", &c, &c_end, &after);
		if (rc == MFS_E_NOTFOUND)
			break;
		if (rc)
			return mfs_err(e, MFS_E_CORRUPT,
				       "entry %" PRIu64 " of the listing is cut short",
				       n);
		s = after;
		const char *k, *k_end, *a2;
		if (mfs_xml_elem(c, c_end, "Key", &k, &k_end, &a2))
			return mfs_err(e, MFS_E_CORRUPT,
				       "entry %" PRIu64 " of the listing has no key", n);
		size_t klen;
		rc = mfs_xml_text(k, k_end, key, sizeof key, &klen);
		if (rc || klen == 0)
			return mfs_err(e, MFS_E_CORRUPT,
				       "entry %" PRIu64 " of the listing has %s key", n,
				       rc == MFS_E_TOOBIG ? "an over-long (>1024 bytes)"
				       : rc		  ? "an undecodable"
							  : "an empty");
		mfs_s3_object obj = {.key = key};
		const char *z, *z_end;
		if (mfs_xml_elem(c, c_end, "Size", &z, &z_end, &a2) ||
		    parse_u64(z, z_end, &obj.size))
			return mfs_err(
			    e, MFS_E_CORRUPT,
			    "entry %" PRIu64 " of the listing has no readable size", n);
		if (mfs_xml_elem(c, c_end, "ETag", &z, &z_end, &a2) == 0) {
			char tag[sizeof obj.etag + 2];
			size_t tl;
			if (mfs_xml_text(z, z_end, tag, sizeof tag, &tl) == 0) {
				char *t = tag;
				if (tl >= 2 && t[0] == '"' && t[tl - 1] == '"') {
					t[tl - 1] = '\0';
					t++;
				}
				snprintf(obj.etag, sizeof obj.etag, "%s", t);
			}
		}
		n++;
		rc = fn(arg, &obj);
		if (rc)
			return rc;
	}
	const char *t, *t_end;
	/* Only the top-level fields: look outside every <Contents>.  Keys
	 * hold no markup, so after the last entry or before the first is
	 * where these are; searching the whole result is equally right. */
	if (mfs_xml_elem(res, res_end, "IsTruncated", &t, &t_end, &after) == 0) {
		while (t < t_end && (*t == ' ' || *t == '\n'))
			t++;
		if ((size_t)(t_end - t) >= 4 && memcmp(t, "true", 4) == 0)
			*truncated = 1;
	}
	if (*truncated) {
		if (mfs_xml_elem(res, res_end, "NextContinuationToken", &t, &t_end,
				 &after) ||
		    mfs_xml_text(t, t_end, token, cap, NULL) || token[0] == '\0')
			return mfs_err(
			    e, MFS_E_CORRUPT,
			    "the listing says more keys follow but gives no (readable) "
			    "continuation token");
	}
	return 0;
}

void mfs_s3_error_parse(const char *body, size_t len, char *code, size_t code_cap,
			char *msg, size_t msg_cap)
{
	const char *end = body + len, *in, *in_end, *after;
	if (code_cap)
		code[0] = '\0';
	if (msg_cap)
		msg[0] = '\0';
	if (!body || !len || mfs_xml_elem(body, end, "Error", &in, &in_end, &after))
		return;
	const char *t, *t_end;
	if (code_cap && mfs_xml_elem(in, in_end, "Code", &t, &t_end, &after) == 0 &&
	    mfs_xml_text(t, t_end, code, code_cap, NULL))
		code[0] = '\0';
	if (msg_cap && mfs_xml_elem(in, in_end, "Message", &t, &t_end, &after) == 0 &&
	    mfs_xml_text(t, t_end, msg, msg_cap, NULL)) {
		/* a long message: keep what fits, as plain text */
		size_t n =
		    (size_t)(t_end - t) < msg_cap - 1 ? (size_t)(t_end - t) : msg_cap - 1;
		memcpy(msg, t, n);
		msg[n] = '\0';
	}
}
