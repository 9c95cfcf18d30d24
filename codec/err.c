#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *mfs_strerror(int code)
{
	switch (code) {
	case MFS_OK:
		return "success";
	case MFS_E_CORRUPT:
		return "data is corrupt (checksum or structure check failed)";
	case MFS_E_FORMAT:
		return "malformed input file";
	case MFS_E_VERSION:
		return "store format version not supported by this modelfs";
	case MFS_E_NOTFOUND:
		return "not found";
	case MFS_E_EXISTS:
		return "already exists";
	case MFS_E_INVAL:
		return "invalid argument";
	case MFS_E_NOSPACE:
		return "buffer too small";
	case MFS_E_CODEC:
		return "unknown or unsupported codec";
	case MFS_E_DB:
		return "database (LMDB) error";
	case MFS_E_BUSY:
		return "resource busy";
	case MFS_E_TOOBIG:
		return "size over limit";
	case MFS_E_UNSUPPORTED:
		return "not supported";
	}
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

int mfs_err(mfs_errmsg *e, int code, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof e->msg, fmt, ap);
		va_end(ap);
		e->code = code;
	}
	return code;
}

int mfs_err_prefix(mfs_errmsg *e, int code, const char *fmt, ...)
{
	if (!e)
		return code;
	char head[MFS_ERRMSG_MAX], joined[2 * MFS_ERRMSG_MAX + 4];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof head, fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof joined, "%s: %s", head,
		 e->msg[0] ? e->msg : mfs_strerror(code));
	/* long messages are cut, never overflowed */
	memcpy(e->msg, joined, sizeof e->msg - 1);
	e->msg[sizeof e->msg - 1] = '\0';
	if (e->code == 0)
		e->code = code;
	return e->code;
}

const char *mfs_str_quote(const char *s, size_t max_chars, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, n = 0;
	const unsigned char *p = (const unsigned char *)s;

	for (; *p && o + 8 < cap && n < max_chars; p++, n++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') {
			buf[o++] = (char)*p;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
		}
	}
	if (*p && o + 4 <= cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	if (cap)
		buf[o < cap ? o : cap - 1] = '\0';
	return buf;
}
