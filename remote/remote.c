/*
 * remote.c - a store read from a bucket: the pushed index in DIR, payloads
 * through the chunk cache (remote.h).
 */
#include "remote.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "pack.h"
#include "replace.h"
#include "sha256.h"

/* A failing poll says so again after this long, if nothing changed. */
#define POLL_REPEAT_MS (10 * 60 * 1000)

struct mfs_remote {
	mfs_s3 *s3;
	mfs_store *store;
	mfs_chunkcache *cc;
	char *dir, *urls;
	mfs_s3_url url;
	mfs_remote_log_fn log;
	void *log_ud;
	pthread_mutex_t mu; /* latest */
	mfs_remote_latest latest;
	/* one refresh at a time in this process (the poll thread, a caller) */
	pthread_mutex_t refresh_mu;
	/* an index that failed its check: not downloaded again until LATEST
	 * names another (under refresh_mu) */
	char bad_index[MFS_S3_KEY_MAX];
	uint8_t bad_sha[32];
	mfs_errmsg bad_err;
	/* the poll thread */
	pthread_t poller;
	int poll_started;
	pthread_mutex_t poll_mu;
	pthread_cond_t poll_cv; /* CLOCK_MONOTONIC */
	int poll_stop;
	unsigned poll_seconds;
	/* the poll thread's last failure, for rate limiting its lines */
	int fail_rc;
	char fail_msg[MFS_ERRMSG_MAX];
	uint64_t fail_logged_ms;
	uint64_t fails_quiet; /* failures not logged since */
};

static void rlog(mfs_remote *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rlog(mfs_remote *r, int level, const char *fmt, ...)
{
	if (!r->log)
		return;
	char line[2 * MFS_ERRMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	r->log(r->log_ud, level, line);
}

/*
 * A fetched payload of a chunk without references must decode to its key.
 * A chunk the current index lacks, or records otherwise, is one read through
 * an older snapshot (a file opened before a newer index came in): it is
 * handed out uncached, and the reader checks it against its key.
 */
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
	if (rc == MFS_E_NOTFOUND)
		return MFS_CHUNKCACHE_UNCHECKED;
	if (rc < 0)
		return mfs_err(e, rc, "the index has no sound record of it");
	if (v.payload_len != len)
		return MFS_CHUNKCACHE_UNCHECKED;
	if (v.n_refs)
		return 0; /* decoded against its references by the reader */
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

/*
 * Download the index @p l names into @p tmp (created or truncated), check it
 * against @p l's size and sha256 and sync it.  On failure @p tmp is removed.
 */
static int index_download(mfs_remote *r, const mfs_remote_latest *l, const char *tmp,
			  mfs_errmsg *e)
{
	char key[MFS_S3_KEY_MAX];
	int rc = mfs_remote_key(&r->url, l->index, key, sizeof key);
	if (rc < 0)
		return mfs_err(e, rc, "%s: the index key is too long", r->urls);
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return mfs_err(e, -errno, "cannot create %s: %s", tmp, strerror(errno));
	uint64_t size = 0;
	rc = mfs_s3_get_file(r->s3, r->url.bucket, key, fd, &size, e);
	if (rc == MFS_E_NOTFOUND)
		rc = mfs_err(
		    e, MFS_E_CORRUPT,
		    "s3://%s/%s, the index LATEST names, is missing: push the store "
		    "again",
		    r->url.bucket, key);
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
		if (rc == 0 &&
		    (size != l->index_size || memcmp(sha, l->index_sha256, 32) != 0))
			rc = mfs_err(
			    e, MFS_E_CORRUPT,
			    "s3://%s/%s is not the index LATEST names (its size or "
			    "sha256 differs): push the store again",
			    r->url.bucket, key);
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = mfs_err(e, -errno, "cannot sync %s: %s", tmp, strerror(errno));
	close(fd);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* LATEST's index into DIR/data.mdb, checked, never half there. */
static int index_fetch(mfs_remote *r, mfs_errmsg *e)
{
	int rc = mfs_remote_latest_get(r->s3, &r->url, &r->latest, e);
	if (rc == MFS_E_NOTFOUND)
		return mfs_err(
		    e, MFS_E_NOTFOUND,
		    "%s holds no modelfs store (no LATEST): push one there with "
		    "`modelfs push --remote %s`, or check the URL",
		    r->urls, r->urls);
	if (rc < 0)
		return rc;
	char tmp[4200], data[4200];
	snprintf(tmp, sizeof tmp, "%s/data.mdb.fetch", r->dir);
	snprintf(data, sizeof data, "%s/data.mdb", r->dir);
	if ((rc = index_download(r, &r->latest, tmp, e)) < 0)
		return rc;
	if ((rc = state_write(r->dir, r->urls, &r->latest, e)) == 0 &&
	    rename(tmp, data) < 0)
		rc = mfs_err(e, -errno, "cannot rename %s: %s", tmp, strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	return fsync_dir(r->dir);
}

/* DIR/refresh/ emptied of what a refresh leaves there (a crash may). */
static int refresh_dir_clear(const char *rdir)
{
	static const char *const names[] = {"data.mdb", "lock.mdb", "users.lock",
					    "data.mdb.fetch"};
	char p[4300];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", rdir, names[i]);
		if (unlink(p) < 0 && errno != ENOENT)
			return -errno;
	}
	return 0;
}

/* The generation of DIR's index now. */
static int store_generation_now(mfs_remote *r, uint64_t *gen)
{
	mfs_txn *t;
	int rc = mfs_txn_begin(r->store, MFS_TXN_READ, &t);
	if (rc < 0)
		return rc;
	rc = mfs_store_generation(t, gen);
	mfs_txn_abort(t);
	return rc;
}

static uint64_t latest_generation(mfs_remote *r)
{
	pthread_mutex_lock(&r->mu);
	uint64_t g = r->latest.generation;
	pthread_mutex_unlock(&r->mu);
	return g;
}

/* The fetched index holds the generation LATEST names. */
static int index_generation_check(mfs_store *src, const mfs_remote_latest *l,
				  const char *urls, mfs_errmsg *e)
{
	mfs_txn *t;
	uint64_t g = 0;
	int rc = mfs_txn_begin(src, MFS_TXN_READ, &t);
	if (rc == 0) {
		rc = mfs_store_generation(t, &g);
		mfs_txn_abort(t);
	}
	if (rc == 0 && g == l->generation)
		return 0;
	return mfs_err(e, MFS_E_CORRUPT,
		       "the index LATEST of %s names holds generation %" PRIu64
		       ", not %" PRIu64 " as LATEST says (%s): push the store again",
		       urls, g, l->generation,
		       rc < 0 ? mfs_strerror(rc) : "another index");
}

/*
 * One refresh: read LATEST; when it names a generation newer than DIR's
 * index, take that index in.  Under refresh_mu, and DIR/refresh.lock
 * (another process of this DIR taking it in: this one leaves it to it).
 */
static int refresh_locked(mfs_remote *r, mfs_remote_refresh_info *info, mfs_errmsg *e)
{
	uint64_t t0 = mfs_now_ms();
	char lockp[4200], rdir[4200], tmp[4300], data[4300];
	snprintf(lockp, sizeof lockp, "%s/refresh.lock", r->dir);
	snprintf(rdir, sizeof rdir, "%s/refresh", r->dir);
	snprintf(tmp, sizeof tmp, "%s/data.mdb.fetch", rdir);
	snprintf(data, sizeof data, "%s/data.mdb", rdir);
	int rc = store_generation_now(r, &info->generation_before);
	if (rc < 0)
		return mfs_err(e, rc, "cannot read the index of %s: %s", r->dir,
			       mfs_strerror(rc));
	info->generation = info->generation_before;
	mfs_remote_latest l;
	rc = mfs_remote_latest_get(r->s3, &r->url, &l, e);
	if (rc == MFS_E_NOTFOUND)
		return mfs_err(
		    e, rc,
		    "%s has no LATEST any more: keeping the index of generation "
		    "%" PRIu64,
		    r->urls, info->generation_before);
	if (rc < 0)
		return rc;
	info->latest_generation = l.generation;
	if (l.generation <= info->generation_before) {
		/* nothing newer.  DIR holds LATEST's generation while r->latest
		 * names an older one: another process of DIR took it in, or a
		 * crash came between a commit and remote.json */
		if (l.generation == info->generation_before &&
		    latest_generation(r) != l.generation) {
			pthread_mutex_lock(&r->mu);
			r->latest = l;
			pthread_mutex_unlock(&r->mu);
			state_write(r->dir, r->urls, &l, NULL); /* best effort */
		}
		return 0;
	}
	if (r->bad_index[0] && strcmp(r->bad_index, l.index) == 0 &&
	    memcmp(r->bad_sha, l.index_sha256, 32) == 0) {
		if (e)
			*e = r->bad_err;
		return r->bad_err.code ? r->bad_err.code : MFS_E_CORRUPT;
	}
	int lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0)
		return mfs_err(e, -errno, "cannot open %s: %s", lockp, strerror(errno));
	if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
		int er = errno;
		close(lfd);
		if (er == EWOULDBLOCK) /* another process of DIR: its commit shows here */
			return 0;
		return mfs_err(e, -er, "cannot lock %s: %s", lockp, strerror(er));
	}
	mfs_store *src = NULL;
	mfs_store_replace_stats st = {0};
	mfs_errmsg de = {0};
	int fetched = 0; /* a failure from here on is the object's */
	if (mkdir(rdir, 0700) < 0 && errno != EEXIST)
		rc = mfs_err(&de, -errno, "cannot create %s: %s", rdir, strerror(errno));
	else if ((rc = refresh_dir_clear(rdir)) < 0)
		rc = mfs_err(&de, rc, "cannot empty %s: %s", rdir, mfs_strerror(rc));
	else if ((rc = index_download(r, &l, tmp, &de)) < 0)
		fetched = rc == MFS_E_CORRUPT; /* missing, or not what LATEST says */
	else {
		fetched = 1;
		if (rename(tmp, data) < 0)
			rc = mfs_err(&de, -errno, "cannot rename %s: %s", tmp,
				     strerror(errno));
		else if ((rc = mfs_store_open(rdir, MFS_STORE_RDONLY, &src, &de)) < 0)
			mfs_err_prefix(&de, rc,
				       "the index LATEST of %s names (generation %" PRIu64
				       ")",
				       r->urls, l.generation);
		else if ((rc = index_generation_check(src, &l, r->urls, &de)) == 0)
			rc = mfs_store_replace_index(r->store, src, &st, &de);
	}
	mfs_store_close(src);
	if (fetched && (rc == MFS_E_CORRUPT || rc == MFS_E_VERSION)) {
		snprintf(r->bad_index, sizeof r->bad_index, "%s", l.index);
		memcpy(r->bad_sha, l.index_sha256, 32);
		r->bad_err = de;
		r->bad_err.code = rc;
	}
	if (rc < 0 && e)
		*e = de;
	refresh_dir_clear(rdir);
	rmdir(rdir);
	if (rc == 0 && st.generation != st.generation_before) {
		info->changed = 1;
		info->generation = st.generation;
		info->puts = st.puts;
		info->deletes = st.deletes;
		/* after the commit: a crash before leaves an older remote.json,
		 * which the next refresh finds already taken in */
		rc = state_write(r->dir, r->urls, &l, e);
		pthread_mutex_lock(&r->mu);
		r->latest = l;
		pthread_mutex_unlock(&r->mu);
	}
	close(lfd);
	info->ms = mfs_now_ms() - t0;
	return rc;
}

int mfs_remote_refresh(mfs_remote *r, mfs_remote_refresh_info *info, mfs_errmsg *e)
{
	mfs_remote_refresh_info local;
	if (!info)
		info = &local;
	memset(info, 0, sizeof *info);
	pthread_mutex_lock(&r->refresh_mu);
	int rc = refresh_locked(r, info, e);
	pthread_mutex_unlock(&r->refresh_mu);
	return rc;
}

/* The poll thread's line for one refresh: every change, a failure when it is
 * new (or POLL_REPEAT_MS after the last line), and the first success after. */
static void poll_report(mfs_remote *r, int rc, const mfs_remote_refresh_info *in,
			const mfs_errmsg *pe)
{
	uint64_t now = mfs_now_ms();
	if (rc == 0) {
		if (r->fail_rc)
			rlog(r, MFS_REMOTE_LOG_INFO,
			     "remote: polling %s works again (%" PRIu64 " more polls had "
			     "failed the same way)",
			     r->urls, r->fails_quiet);
		r->fail_rc = 0;
		r->fail_msg[0] = 0;
		r->fails_quiet = 0;
		if (in->changed)
			rlog(r, MFS_REMOTE_LOG_INFO,
			     "remote: took in the index of generation %" PRIu64
			     " (was %" PRIu64 ") from %s: %" PRIu64
			     " records written, %" PRIu64 " removed, in %" PRIu64 " ms",
			     in->generation, in->generation_before, r->urls, in->puts,
			     in->deletes, in->ms);
		return;
	}
	const char *msg = pe->msg[0] ? pe->msg : mfs_strerror(rc);
	if (rc == r->fail_rc && strcmp(msg, r->fail_msg) == 0 &&
	    now - r->fail_logged_ms < POLL_REPEAT_MS) {
		r->fails_quiet++;
		return;
	}
	rlog(r, MFS_REMOTE_LOG_WARN,
	     "remote: cannot take in a newer LATEST of %s: %s; serving the index of "
	     "generation %" PRIu64 " as before, trying again every %u s",
	     r->urls, msg, in->generation_before, r->poll_seconds);
	r->fail_rc = rc;
	snprintf(r->fail_msg, sizeof r->fail_msg, "%s", msg);
	r->fail_logged_ms = now;
	r->fails_quiet = 0;
}

static void *poll_main(void *p)
{
	mfs_remote *r = p;
	pthread_mutex_lock(&r->poll_mu);
	while (!r->poll_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)r->poll_seconds;
		while (!r->poll_stop &&
		       pthread_cond_timedwait(&r->poll_cv, &r->poll_mu, &ts) != ETIMEDOUT)
			;
		if (r->poll_stop)
			break;
		pthread_mutex_unlock(&r->poll_mu);
		mfs_remote_refresh_info in;
		mfs_errmsg pe = {0};
		int rc = mfs_remote_refresh(r, &in, &pe);
		poll_report(r, rc, &in, &pe);
		pthread_mutex_lock(&r->poll_mu);
	}
	pthread_mutex_unlock(&r->poll_mu);
	return NULL;
}

int mfs_remote_open_opts(const char *dir, const char *urls, const mfs_remote_opts *o,
			 mfs_remote **out, mfs_errmsg *e)
{
	mfs_s3_config cfg;
	mfs_s3_url url;
	int rc = mfs_s3_url_parse(urls, &url, e);
	if (rc < 0)
		return rc;
	if ((rc = mfs_s3_config_load(&cfg, e)) < 0)
		return rc;
	mfs_remote *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->mu, NULL);
	pthread_mutex_init(&r->refresh_mu, NULL);
	pthread_mutex_init(&r->poll_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->poll_cv, &ca);
	pthread_condattr_destroy(&ca);
	r->url = url;
	r->log = o->log;
	r->log_ud = o->log_ud;
	r->poll_seconds = o->poll_seconds;
	if (!(r->dir = strdup(dir)) || !(r->urls = strdup(urls))) {
		rc = -ENOMEM;
		goto fail;
	}
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
	int existed = stat(data, &st) == 0;
	if (existed) {
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
		   (rc = index_fetch(r, e)) < 0) {
		goto fail;
	}
	/* writable: a newer index is copied into this environment
	 * (mfs_remote_refresh); a mount reads it as it reads any store */
	if ((rc = mfs_store_open(dir, MFS_STORE_NORDAHEAD, &r->store, e)) < 0)
		goto fail;
	mfs_chunkcache_opts co = {.dir = dir,
				  .max_bytes = o->cache_bytes,
				  .s3 = r->s3,
				  .url = url,
				  .verify = verify_payload,
				  .verify_ud = r,
				  .prefetch_threads = 4};
	if ((rc = mfs_chunkcache_open(&co, &r->cc, e)) < 0)
		goto fail;
	mfs_payload_source src = {payload_source, payload_will_need, r};
	mfs_store_set_payload_source(r->store, &src);
	if (existed) { /* brought up to the bucket's LATEST, when it can be read */
		mfs_remote_refresh_info in;
		mfs_errmsg re = {0};
		int frc = mfs_remote_refresh(r, &in, &re);
		if (frc < 0)
			rlog(r, MFS_REMOTE_LOG_WARN,
			     "remote: cannot read a newer LATEST of %s: %s; opening the "
			     "index of generation %" PRIu64 " that %s holds",
			     urls, re.msg[0] ? re.msg : mfs_strerror(frc),
			     in.generation_before, dir);
		else if (in.changed)
			rlog(r, MFS_REMOTE_LOG_INFO,
			     "remote: %s held the index of generation %" PRIu64
			     "; took in generation %" PRIu64 " from %s (%" PRIu64
			     " records written, %" PRIu64 " removed, in %" PRIu64 " ms)",
			     dir, in.generation_before, in.generation, urls, in.puts,
			     in.deletes, in.ms);
	}
	if (r->poll_seconds) {
		int prc = pthread_create(&r->poller, NULL, poll_main, r);
		if (prc != 0) {
			rc = mfs_err(e, -prc, "cannot start the thread that polls %s: %s",
				     urls, strerror(prc));
			goto fail;
		}
		r->poll_started = 1;
	}
	*out = r;
	return 0;
fail:
	mfs_remote_close(r);
	return rc;
}

int mfs_remote_open(const char *dir, const char *urls, uint64_t cache_bytes,
		    mfs_remote **out, mfs_errmsg *e)
{
	mfs_remote_opts o = {.cache_bytes = cache_bytes};
	return mfs_remote_open_opts(dir, urls, &o, out, e);
}

mfs_store *mfs_remote_store(mfs_remote *r)
{
	return r->store;
}

void mfs_remote_latest_of(mfs_remote *r, mfs_remote_latest *out)
{
	pthread_mutex_lock(&r->mu);
	*out = r->latest;
	pthread_mutex_unlock(&r->mu);
}

void mfs_remote_cache_stats(mfs_remote *r, mfs_chunkcache_stats *out)
{
	mfs_chunkcache_stats_get(r->cc, out);
}

void mfs_remote_close(mfs_remote *r)
{
	if (!r)
		return;
	if (r->poll_started) {
		pthread_mutex_lock(&r->poll_mu);
		r->poll_stop = 1;
		pthread_cond_signal(&r->poll_cv);
		pthread_mutex_unlock(&r->poll_mu);
		pthread_join(r->poller, NULL);
	}
	if (r->store)
		mfs_store_set_payload_source(r->store, NULL);
	mfs_chunkcache_close(r->cc); /* its prefetch threads check through the store */
	mfs_store_close(r->store);
	mfs_s3_close(r->s3);
	pthread_cond_destroy(&r->poll_cv);
	pthread_mutex_destroy(&r->poll_mu);
	pthread_mutex_destroy(&r->refresh_mu);
	pthread_mutex_destroy(&r->mu);
	free(r->dir);
	free(r->urls);
	free(r);
}
