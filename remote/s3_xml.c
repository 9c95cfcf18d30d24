#include "s3_xml.h"

#include <errno.h>
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
		if (mfs_xml_elem(c, c_end, "LastModified", &z, &z_end, &a2) == 0 &&
		    mfs_s3_time_parse(z, z_end, &obj.mtime))
			return mfs_err(e, MFS_E_CORRUPT,
				       "entry %" PRIu64
				       " of the listing has an unreadable LastModified",
				       n);
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

/* ---------------------------------------------------------------- times */

/* Days since 1970-01-01 of a proleptic Gregorian date (y >= 1970). */
static int64_t days_of(int64_t y, int m, int d)
{
	/* count March-based years so that the leap day ends the year */
	y -= m <= 2;
	int64_t era = y / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m)
{
	static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dm[m - 1];
}

/* @p n digits at p (all of them inside [p, end)) as a number, or -1. */
static int64_t digits(const char *p, const char *end, int n)
{
	if (end - p < n)
		return -1;
	int64_t v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

static int civil_ok(int64_t y, int64_t mo, int64_t d, int64_t h, int64_t mi, int64_t sec)
{
	return y >= 1970 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 &&
	       d <= days_in_month(y, (int)mo) && h >= 0 && h <= 23 && mi >= 0 &&
	       mi <= 59 && sec >= 0 && sec <= 60;
}

int mfs_s3_time_parse(const char *p, const char *end, int64_t *out)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	while (end > p &&
	       (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t'))
		end--;
	/* YYYY-MM-DDTHH:MM:SS */
	if (end - p < 19 || p[4] != '-' || p[7] != '-' ||
	    (p[10] != 'T' && p[10] != 't') || p[13] != ':' || p[16] != ':')
		return MFS_E_CORRUPT;
	int64_t y = digits(p, end, 4), mo = digits(p + 5, end, 2),
		d = digits(p + 8, end, 2), h = digits(p + 11, end, 2),
		mi = digits(p + 14, end, 2), sec = digits(p + 17, end, 2);
	if (!civil_ok(y, mo, d, h, mi, sec))
		return MFS_E_CORRUPT;
	const char *q = p + 19;
	if (q < end && *q == '.') {
		const char *f = ++q;
		while (q < end && *q >= '0' && *q <= '9')
			q++;
		if (q == f)
			return MFS_E_CORRUPT;
	}
	int64_t off = 0;
	if (q < end && (*q == 'Z' || *q == 'z')) {
		q++;
	} else if (q < end && (*q == '+' || *q == '-')) {
		int64_t oh = digits(q + 1, end, 2);
		if (oh < 0 || q + 3 >= end || q[3] != ':')
			return MFS_E_CORRUPT;
		int64_t om = digits(q + 4, end, 2);
		if (om < 0 || oh > 23 || om > 59)
			return MFS_E_CORRUPT;
		off = (oh * 60 + om) * 60 * (*q == '-' ? -1 : 1);
		q += 6;
	} else {
		return MFS_E_CORRUPT;
	}
	if (q != end)
		return MFS_E_CORRUPT;
	*out = days_of(y, (int)mo, (int)d) * 86400 + h * 3600 + mi * 60 + sec - off;
	return 0;
}

int mfs_http_date_parse(const char *s, int64_t *out)
{
	static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
				       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	/* "Wed, 02 Dec 2026 00:50:48 GMT" */
	size_t n = strlen(s);
	if (n < 29)
		return MFS_E_CORRUPT;
	const char *end = s + n;
	if (s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
	    s[19] != ':' || s[22] != ':' || s[25] != ' ' || memcmp(s + 26, "GMT", 3) != 0)
		return MFS_E_CORRUPT;
	int mo = 0;
	for (int i = 0; i < 12; i++)
		if (memcmp(s + 8, months[i], 3) == 0)
			mo = i + 1;
	int64_t d = digits(s + 5, end, 2), y = digits(s + 12, end, 4),
		h = digits(s + 17, end, 2), mi = digits(s + 20, end, 2),
		sec = digits(s + 23, end, 2);
	if (!mo || !civil_ok(y, mo, d, h, mi, sec))
		return MFS_E_CORRUPT;
	*out = days_of(y, mo, (int)d) * 86400 + h * 3600 + mi * 60 + sec;
	return 0;
}

/* ---------------------------------------------------------------- multipart */

int mfs_s3_upload_id_parse(const char *body, size_t len, char *id, size_t cap,
			   mfs_errmsg *e)
{
	const char *end = body + len, *in, *in_end, *after, *t, *t_end;
	if (cap)
		id[0] = '\0';
	if (mfs_xml_elem(body, end, "InitiateMultipartUploadResult", &in, &in_end,
			 &after))
		return mfs_err(e, MFS_E_CORRUPT,
			       "the answer to CreateMultipartUpload is not an "
			       "InitiateMultipartUploadResult (%zu bytes)",
			       len);
	if (mfs_xml_elem(in, in_end, "UploadId", &t, &t_end, &after))
		return mfs_err(e, MFS_E_CORRUPT,
			       "the answer to CreateMultipartUpload has no UploadId");
	int rc = mfs_xml_text(t, t_end, id, cap, NULL);
	if (rc || !id[0]) {
		if (cap)
			id[0] = '\0';
		return mfs_err(e, MFS_E_CORRUPT,
			       "the UploadId of CreateMultipartUpload is %s",
			       rc == MFS_E_TOOBIG ? "over-long"
			       : rc		  ? "undecodable"
						  : "empty");
	}
	return 0;
}

int mfs_s3_complete_parse(const char *body, size_t len, char *code, size_t code_cap,
			  char *msg, size_t msg_cap)
{
	const char *end = body + len, *in, *in_end, *after;
	if (code_cap)
		code[0] = '\0';
	if (msg_cap)
		msg[0] = '\0';
	if (!body || !len)
		return MFS_E_CORRUPT;
	/* an <Error> first: a result cannot hold one, an error may quote anything */
	if (mfs_xml_elem(body, end, "Error", &in, &in_end, &after) == 0) {
		mfs_s3_error_parse(body, len, code, code_cap, msg, msg_cap);
		return -EIO;
	}
	if (mfs_xml_elem(body, end, "CompleteMultipartUploadResult", &in, &in_end,
			 &after))
		return MFS_E_CORRUPT;
	return 0;
}

int mfs_s3_uploads_page_parse(const char *body, size_t len, mfs_s3_upload_fn fn,
			      void *arg, int *truncated, char *key_marker, size_t kcap,
			      char *id_marker, size_t icap, mfs_errmsg *e)
{
	const char *end = body + len, *in, *in_end, *after;
	*truncated = 0;
	if (kcap)
		key_marker[0] = '\0';
	if (icap)
		id_marker[0] = '\0';
	if (mfs_xml_elem(body, end, "ListMultipartUploadsResult", &in, &in_end, &after))
		return mfs_err(e, MFS_E_CORRUPT,
			       "the upload listing is not a ListMultipartUploadsResult "
			       "(%zu bytes)",
			       len);
	const char *res = in, *res_end = in_end, *s = res;
	char key[MFS_S3_KEY_MAX], id[MFS_S3_UPLOAD_ID_MAX];
	char last_key[MFS_S3_KEY_MAX] = "", last_id[MFS_S3_UPLOAD_ID_MAX] = "";
	uint64_t n = 0;
	int rc;
	for (;;) {
		const char *u, *u_end, *t, *t_end, *a2;
		rc = mfs_xml_elem(s, res_end, "Upload", &u, &u_end, &after);
		if (rc == MFS_E_NOTFOUND)
			break;
		if (rc)
			return mfs_err(e, MFS_E_CORRUPT,
				       "upload %" PRIu64 " of the listing is cut short",
				       n);
		s = after;
		size_t klen = 0, ilen = 0;
		if (mfs_xml_elem(u, u_end, "Key", &t, &t_end, &a2) ||
		    mfs_xml_text(t, t_end, key, sizeof key, &klen) || klen == 0)
			return mfs_err(
			    e, MFS_E_CORRUPT,
			    "upload %" PRIu64 " of the listing has no (readable) key", n);
		if (mfs_xml_elem(u, u_end, "UploadId", &t, &t_end, &a2) ||
		    mfs_xml_text(t, t_end, id, sizeof id, &ilen) || ilen == 0)
			return mfs_err(e, MFS_E_CORRUPT,
				       "upload %" PRIu64
				       " of the listing has no (readable) UploadId",
				       n);
		mfs_s3_upload up = {.key = key, .upload_id = id};
		if (mfs_xml_elem(u, u_end, "Initiated", &t, &t_end, &a2) == 0 &&
		    mfs_s3_time_parse(t, t_end, &up.initiated))
			return mfs_err(e, MFS_E_CORRUPT,
				       "upload %" PRIu64
				       " of the listing has an unreadable Initiated time",
				       n);
		n++;
		memcpy(last_key, key, klen + 1);
		memcpy(last_id, id, ilen + 1);
		if ((rc = fn(arg, &up)) != 0)
			return rc;
	}
	/* the page's own fields: an <Upload> holds none of these names */
	const char *t, *t_end;
	if (mfs_xml_elem(res, res_end, "IsTruncated", &t, &t_end, &after) == 0) {
		while (t < t_end && (*t == ' ' || *t == '\n'))
			t++;
		if ((size_t)(t_end - t) >= 4 && memcmp(t, "true", 4) == 0)
			*truncated = 1;
	}
	if (*truncated) {
		/* the markers, else (SeaweedFS 4 sends no NextKeyMarker) the last
		 * upload of the page, as a ListObjects page without NextMarker */
		if (mfs_xml_elem(res, res_end, "NextKeyMarker", &t, &t_end, &after) ==
		    0) {
			if (mfs_xml_text(t, t_end, key_marker, kcap, NULL))
				return mfs_err(
				    e, MFS_E_CORRUPT,
				    "the upload listing's NextKeyMarker does not "
				    "read");
		} else if (kcap > strlen(last_key)) {
			memcpy(key_marker, last_key, strlen(last_key) + 1);
		}
		if (key_marker[0] == '\0')
			return mfs_err(e, MFS_E_CORRUPT,
				       "the upload listing says more follow but gives no "
				       "NextKeyMarker and no upload");
		if (mfs_xml_elem(res, res_end, "NextUploadIdMarker", &t, &t_end,
				 &after) == 0) {
			if (mfs_xml_text(t, t_end, id_marker, icap, NULL))
				return mfs_err(e, MFS_E_CORRUPT,
					       "the upload listing's NextUploadIdMarker "
					       "does not read");
		} else if (icap > strlen(last_id)) {
			memcpy(id_marker, last_id, strlen(last_id) + 1);
		}
	}
	return 0;
}
