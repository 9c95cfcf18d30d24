/*
 * bucket.c - keys of a pushed store and its LATEST pointer (bucket.h).
 */
#include "bucket.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "sha256.h"
#include "store.h"

int mfs_remote_key(const mfs_s3_url *url, const char *name, char *out, size_t cap)
{
	return mfs_s3_key_join(url->prefix, name, out, cap);
}

int mfs_remote_pack_key(const mfs_s3_url *url, uint64_t id, char *out, size_t cap)
{
	char name[6 + MFS_PACK_NAME_MAX];
	char pn[MFS_PACK_NAME_MAX];
	mfs_pack_name(id, pn);
	snprintf(name, sizeof name, "packs/%s", pn);
	return mfs_remote_key(url, name, out, cap);
}

int mfs_remote_pack_key_parse(const mfs_s3_url *url, const char *key, uint64_t *id)
{
	char dir[MFS_S3_KEY_MAX];
	if (mfs_remote_key(url, "packs/", dir, sizeof dir) < 0)
		return 0;
	size_t n = strlen(dir);
	if (strncmp(key, dir, n) != 0)
		return 0;
	return mfs_pack_name_parse(key + n, id);
}

int mfs_remote_index_key_parse(const mfs_s3_url *url, const char *key, uint64_t *gen)
{
	char dir[MFS_S3_KEY_MAX];
	if (mfs_remote_key(url, "index/", dir, sizeof dir) < 0)
		return 0;
	size_t n = strlen(dir);
	if (strncmp(key, dir, n) != 0)
		return 0;
	const char *p = key + n;
	/* 20 digits, '-', 16 lower hex, ".mdb", nothing more */
	if (strlen(p) != 20 + 1 + 16 + 4 || p[20] != '-' || strcmp(p + 37, ".mdb") != 0)
		return 0;
	uint64_t g = 0;
	for (int i = 0; i < 20; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		unsigned d = (unsigned)(p[i] - '0');
		if (g > (UINT64_MAX - d) / 10)
			return 0;
		g = g * 10 + d;
	}
	for (int i = 21; i < 37; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	*gen = g;
	return 1;
}

/* u64s go into JSON as numbers: exact below 2^53, which every size and
 * generation of a store stays under. */
#define JSON_INT_MAX ((uint64_t)1 << 53)

int mfs_remote_latest_encode(const mfs_remote_latest *l, char **json)
{
	char hex[65];
	mfs_sha256_hex(l->index_sha256, hex);
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return -ENOMEM;
	int ok = cJSON_AddNumberToObject(o, "format", l->format) &&
		 cJSON_AddNumberToObject(o, "store_format", l->store_format) &&
		 cJSON_AddStringToObject(o, "index", l->index) &&
		 cJSON_AddNumberToObject(o, "index_size", (double)l->index_size) &&
		 cJSON_AddStringToObject(o, "index_sha256", hex) &&
		 cJSON_AddNumberToObject(o, "generation", (double)l->generation) &&
		 cJSON_AddNumberToObject(o, "time", (double)l->time) &&
		 cJSON_AddNumberToObject(o, "packs", (double)l->packs) &&
		 cJSON_AddNumberToObject(o, "pack_bytes", (double)l->pack_bytes);
	char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!s)
		return -ENOMEM;
	*json = s;
	return 0;
}

static int get_u64(const cJSON *o, const char *name, const char *where, uint64_t *out,
		   mfs_errmsg *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
	    v->valuedouble >= (double)JSON_INT_MAX ||
	    v->valuedouble != (double)(uint64_t)v->valuedouble)
		return mfs_err(
		    e, MFS_E_CORRUPT,
		    "%s is not a modelfs LATEST: \"%s\" is %s, not a whole number "
		    "(push again, or point at the prefix a modelfs push wrote)",
		    where, name, v ? "of another kind" : "missing");
	*out = (uint64_t)v->valuedouble;
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int mfs_remote_latest_decode(const void *buf, size_t len, const char *where,
			     mfs_remote_latest *out, mfs_errmsg *e)
{
	memset(out, 0, sizeof *out);
	cJSON *o = cJSON_ParseWithLength(buf, len);
	if (!o || !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return mfs_err(
		    e, MFS_E_CORRUPT,
		    "%s is not a modelfs LATEST (not a JSON object): this prefix "
		    "holds something else; point at the prefix a modelfs push wrote",
		    where);
	}
	uint64_t fmt = 0, sfmt = 0;
	int rc = get_u64(o, "format", where, &fmt, e);
	if (rc == 0 && fmt > MFS_REMOTE_FORMAT)
		rc =
		    mfs_err(e, MFS_E_VERSION,
			    "%s was written by a newer modelfs (bucket format %" PRIu64
			    "; this one reads up to %d): upgrade modelfs to read or push "
			    "there (nothing was changed)",
			    where, fmt, MFS_REMOTE_FORMAT);
	if (rc == 0 && fmt == 0)
		rc = mfs_err(e, MFS_E_CORRUPT, "%s is not a modelfs LATEST: format 0",
			     where);
	if (rc == 0)
		rc = get_u64(o, "store_format", where, &sfmt, e);
	if (rc == 0 && sfmt != MFS_STORE_FORMAT)
		rc = mfs_err(e, MFS_E_VERSION,
			     "%s names an index of store format %" PRIu64
			     " (this modelfs reads format %d): %s (nothing was changed)",
			     where, sfmt, MFS_STORE_FORMAT,
			     sfmt > MFS_STORE_FORMAT
				 ? "upgrade modelfs"
				 : "push it again from an upgraded store");
	const cJSON *ix = cJSON_GetObjectItemCaseSensitive(o, "index");
	if (rc == 0 &&
	    (!cJSON_IsString(ix) || strncmp(ix->valuestring, "index/", 6) != 0 ||
	     strlen(ix->valuestring) >= sizeof out->index ||
	     strstr(ix->valuestring, "..")))
		rc = mfs_err(
		    e, MFS_E_CORRUPT,
		    "%s is not a modelfs LATEST: \"index\" is not a key under index/",
		    where);
	if (rc == 0)
		snprintf(out->index, sizeof out->index, "%s", ix->valuestring);
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "index_sha256");
	if (rc == 0 && (!cJSON_IsString(h) || strlen(h->valuestring) != 64))
		rc = mfs_err(
		    e, MFS_E_CORRUPT,
		    "%s is not a modelfs LATEST: \"index_sha256\" is not 64 hex digits",
		    where);
	for (int i = 0; rc == 0 && i < 32; i++) {
		int a = hex_digit(h->valuestring[2 * i]),
		    b = hex_digit(h->valuestring[2 * i + 1]);
		if (a < 0 || b < 0)
			rc =
			    mfs_err(e, MFS_E_CORRUPT,
				    "%s is not a modelfs LATEST: \"index_sha256\" is not "
				    "lower-case hex",
				    where);
		else
			out->index_sha256[i] = (uint8_t)(a << 4 | b);
	}
	if (rc == 0)
		rc = get_u64(o, "index_size", where, &out->index_size, e);
	if (rc == 0)
		rc = get_u64(o, "generation", where, &out->generation, e);
	if (rc == 0)
		rc = get_u64(o, "time", where, &out->time, e);
	if (rc == 0)
		rc = get_u64(o, "packs", where, &out->packs, e);
	if (rc == 0)
		rc = get_u64(o, "pack_bytes", where, &out->pack_bytes, e);
	cJSON_Delete(o);
	if (rc == 0) {
		out->format = (unsigned)fmt;
		out->store_format = (unsigned)sfmt;
	}
	return rc;
}

int mfs_remote_latest_get(mfs_s3 *s3, const mfs_s3_url *url, mfs_remote_latest *out,
			  mfs_errmsg *e)
{
	char key[MFS_S3_KEY_MAX], where[MFS_S3_KEY_MAX + 80];
	int rc = mfs_remote_key(url, "LATEST", key, sizeof key);
	if (rc < 0)
		return mfs_err(e, rc, "s3://%s/%s: the prefix is too long for a key",
			       url->bucket, url->prefix);
	snprintf(where, sizeof where, "s3://%s/%s", url->bucket, key);
	for (int attempt = 0;; attempt++) {
		mfs_s3_object info;
		if ((rc = mfs_s3_head(s3, url->bucket, key, &info, e)) < 0)
			return rc;
		if (info.size > MFS_REMOTE_LATEST_MAX)
			return mfs_err(
			    e, MFS_E_CORRUPT,
			    "%s is not a modelfs LATEST (%" PRIu64
			    " bytes, far more than one): this prefix holds something "
			    "else; point at the prefix a modelfs push wrote",
			    where, info.size);
		char *buf = malloc(info.size ? info.size : 1);
		if (!buf)
			return -ENOMEM;
		rc = mfs_s3_get_range(s3, url->bucket, key, 0, buf, info.size, e);
		if (rc == 0)
			rc = mfs_remote_latest_decode(buf, info.size, where, out, e);
		free(buf);
		/* replaced between the HEAD and the GET by a push: once more */
		if ((rc == MFS_E_CORRUPT || rc == MFS_E_NOTFOUND) && attempt == 0)
			continue;
		return rc;
	}
}
