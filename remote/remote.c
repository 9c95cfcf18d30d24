/*
 * remote.c - a store read from a bucket: the pushed index in DIR, payloads
 * through the chunk cache (remote.h).
 */
#include "remote.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pack.h"
#include "sha256.h"

struct mfs_remote {
	mfs_s3 *s3;
	mfs_store *store;
	mfs_chunkcache *cc;
	mfs_remote_latest latest;
};

/* A fetched payload of a chunk without references must decode to its key. */
static int verify_payload(void *ud, const mfs_chunk_key *key, const void *payload,
			  size_t len, mfs_errmsg *e)
{
	mfs_remote *r = ud;
	mfs_txn *t;
	int rc = mfs_txn_begin(r->store, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	mfs_chunk_view v;
	rc = mfs_chunk_get(t, key, &v);
	mfs_txn_abort(t);
	if (rc < 0)
		return mfs_err(e, rc, "the index has no sound record of it");
	if (v.n_refs || v.payload_len != len)
		return v.payload_len != len
			   ? mfs_err(e, MFS_E_CORRUPT, "its length is not the record's")
			   : 0; /* decoded against its references by the reader */
	v.payload = payload;
	void *dst = malloc(v.raw_len ? v.raw_len : 1);
	mfs_codec_ws *ws = NULL;
	if (!dst || mfs_codec_ws_create(&ws) < 0) {
		free(dst);
		return -ENOMEM;
	}
	rc = mfs_chunk_decode(&v, key, NULL, dst, v.raw_len, ws);
	mfs_codec_ws_free(ws);
	free(dst);
	if (rc < 0)
		return mfs_err(e, MFS_E_CORRUPT,
			       "it does not decode to bytes that hash to its key");
	return 0;
}

static int payload_source(void *ud, const mfs_chunk_key *key, const mfs_chunk_loc *loc,
			  void *buf, mfs_errmsg *err)
{
	mfs_remote *r = ud;
	return mfs_chunkcache_get(r->cc, key, loc, buf, loc->len, NULL, err);
}

static void payload_will_need(void *ud, uint64_t pack, uint64_t off, uint64_t len)
{
	mfs_remote *r = ud;
	mfs_chunkcache_prefetch(r->cc, pack, off, len);
}

static int write_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* remote.json: the URL and the LATEST the index came from. */
static int state_read(const char *path, const char *url, mfs_remote_latest *l,
		      mfs_errmsg *e)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char buf[MFS_REMOTE_LATEST_MAX + MFS_S3_KEY_MAX + 256];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	cJSON *o = cJSON_Parse(buf);
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "url");
	const cJSON *lt = cJSON_GetObjectItemCaseSensitive(o, "latest");
	int rc = 0;
	char *txt = NULL;
	if (!cJSON_IsString(u) || !cJSON_IsObject(lt) ||
	    !(txt = cJSON_PrintUnformatted(lt)))
		rc = mfs_err(
		    e, MFS_E_CORRUPT,
		    "%s is damaged: remove the directory it is in and open it again "
		    "(it is fetched anew)",
		    path);
	else if (strcmp(u->valuestring, url) != 0)
		rc = mfs_err(
		    e, MFS_E_EXISTS,
		    "%s holds the index of %s, not of %s: give a directory of its own "
		    "to each bucket",
		    path, u->valuestring, url);
	else
		rc = mfs_remote_latest_decode(txt, strlen(txt), path, l, e);
	free(txt);
	cJSON_Delete(o);
	return rc;
}

static int state_write(const char *dir, const char *url, const mfs_remote_latest *l,
		       mfs_errmsg *e)
{
	char path[4200], tmp[4300];
	snprintf(path, sizeof path, "%s/remote.json", dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	char *lj = NULL;
	int rc = mfs_remote_latest_encode(l, &lj);
	if (rc < 0)
		return rc;
	cJSON *o = cJSON_CreateObject();
	cJSON *lo = cJSON_Parse(lj);
	free(lj);
	char *txt = NULL;
	if (o && lo && cJSON_AddStringToObject(o, "url", url)) {
		cJSON_AddItemToObject(o, "latest", lo);
		lo = NULL;
		txt = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(lo);
	cJSON_Delete(o);
	if (!txt)
		return -ENOMEM;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		rc = -errno;
	else {
		rc = write_all(fd, txt, strlen(txt));
		if (rc == 0 && fsync(fd) < 0)
			rc = -errno;
		close(fd);
	}
	free(txt);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return mfs_err(e, rc, "cannot write %s: %s", path, strerror(-rc));
	}
	return fsync_dir(dir);
}

/* LATEST's index into DIR/data.mdb, checked, never half there. */
static int index_fetch(mfs_remote *r, const char *dir, const mfs_s3_url *url,
		       const char *urls, mfs_errmsg *e)
{
	int rc = mfs_remote_latest_get(r->s3, url, &r->latest, e);
	if (rc == MFS_E_NOTFOUND)
		return mfs_err(
		    e, MFS_E_NOTFOUND,
		    "%s holds no modelfs store (no LATEST): push one there with "
		    "`modelfs push --remote %s`, or check the URL",
		    urls, urls);
	if (rc < 0)
		return rc;
	char key[MFS_S3_KEY_MAX], tmp[4200], data[4200];
	if ((rc = mfs_remote_key(url, r->latest.index, key, sizeof key)) < 0)
		return mfs_err(e, rc, "%s: the index key is too long", urls);
	snprintf(tmp, sizeof tmp, "%s/data.mdb.fetch", dir);
	snprintf(data, sizeof data, "%s/data.mdb", dir);
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return mfs_err(e, -errno, "cannot create %s: %s", tmp, strerror(errno));
	uint64_t size = 0;
	rc = mfs_s3_get_file(r->s3, url->bucket, key, fd, &size, e);
	if (rc == MFS_E_NOTFOUND)
		rc = mfs_err(
		    e, MFS_E_CORRUPT,
		    "s3://%s/%s, the index LATEST names, is missing: push the store "
		    "again",
		    url->bucket, key);
	uint8_t sha[32];
	if (rc == 0) {
		mfs_sha256_ctx h;
		mfs_sha256_init(&h);
		uint8_t *buf = malloc(1 << 20);
		uint64_t off = 0;
		if (!buf)
			rc = -ENOMEM;
		while (rc == 0) {
			ssize_t n = pread(fd, buf, 1 << 20, (off_t)off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				rc = mfs_err(e, -errno, "cannot read %s: %s", tmp,
					     strerror(errno));
			if (n <= 0)
				break;
			mfs_sha256_update(&h, buf, (size_t)n);
			off += (uint64_t)n;
		}
		free(buf);
		mfs_sha256_final(&h, sha);
		if (rc == 0 && (size != r->latest.index_size ||
				memcmp(sha, r->latest.index_sha256, 32) != 0))
			rc = mfs_err(
			    e, MFS_E_CORRUPT,
			    "s3://%s/%s is not the index LATEST names (its size or "
			    "sha256 differs): push the store again",
			    url->bucket, key);
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = mfs_err(e, -errno, "cannot sync %s: %s", tmp, strerror(errno));
	close(fd);
	if (rc == 0 && (rc = state_write(dir, urls, &r->latest, e)) == 0 &&
	    rename(tmp, data) < 0)
		rc = mfs_err(e, -errno, "cannot rename %s: %s", tmp, strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	return fsync_dir(dir);
}

int mfs_remote_open(const char *dir, const char *urls, uint64_t cache_bytes,
		    mfs_remote **out, mfs_errmsg *e)
{
	mfs_s3_url url;
	mfs_s3_config cfg;
	int rc = mfs_s3_url_parse(urls, &url, e);
	if (rc < 0)
		return rc;
	if ((rc = mfs_s3_config_load(&cfg, e)) < 0)
		return rc;
	mfs_remote *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	if ((rc = mfs_s3_open(&cfg, &r->s3, e)) < 0)
		goto fail;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = mfs_err(e, -errno, "cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	char data[4200], state[4200];
	snprintf(data, sizeof data, "%s/data.mdb", dir);
	snprintf(state, sizeof state, "%s/remote.json", dir);
	struct stat st;
	if (stat(data, &st) == 0) {
		rc = state_read(state, urls, &r->latest, e);
		if (rc == -ENOENT)
			rc = mfs_err(
			    e, MFS_E_EXISTS,
			    "%s holds a local store, not one fetched from a bucket: give "
			    "an empty directory for %s",
			    dir, urls);
		if (rc < 0)
			goto fail;
	} else if ((rc = mfs_s3_bucket_check(r->s3, url.bucket, e)) < 0 ||
		   (rc = index_fetch(r, dir, &url, urls, e)) < 0) {
		goto fail;
	}
	if ((rc = mfs_store_open(dir, MFS_STORE_RDONLY | MFS_STORE_NORDAHEAD, &r->store,
				 e)) < 0)
		goto fail;
	mfs_chunkcache_opts co = {.dir = dir,
				  .max_bytes = cache_bytes,
				  .s3 = r->s3,
				  .url = url,
				  .verify = verify_payload,
				  .verify_ud = r,
				  .prefetch_threads = 4};
	if ((rc = mfs_chunkcache_open(&co, &r->cc, e)) < 0)
		goto fail;
	mfs_payload_source src = {payload_source, payload_will_need, r};
	mfs_store_set_payload_source(r->store, &src);
	*out = r;
	return 0;
fail:
	mfs_remote_close(r);
	return rc;
}

mfs_store *mfs_remote_store(mfs_remote *r)
{
	return r->store;
}

const mfs_remote_latest *mfs_remote_latest_of(const mfs_remote *r)
{
	return &r->latest;
}

void mfs_remote_cache_stats(mfs_remote *r, mfs_chunkcache_stats *out)
{
	mfs_chunkcache_stats_get(r->cc, out);
}

void mfs_remote_close(mfs_remote *r)
{
	if (!r)
		return;
	if (r->store)
		mfs_store_set_payload_source(r->store, NULL);
	mfs_store_close(r->store);
	mfs_chunkcache_close(r->cc);
	mfs_s3_close(r->s3);
	free(r);
}
