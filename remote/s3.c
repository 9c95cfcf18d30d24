/* s3.c - the S3 requests: libcurl, signed by curl's own AWS SigV4. */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "s3_xml.h"

#if LIBCURL_VERSION_NUM < 0x074b00
#error "libcurl 7.75 or newer is needed (CURLOPT_AWS_SIGV4)"
#endif

/* Idle handles kept per client; more threads than this make and free their own. */
#define S3_POOL_MAX 64
/* An error body, or a listing page, is read up to this much. */
#define S3_ERRBODY_MAX	 (64u << 10)
#define S3_LIST_BODY_MAX (32u << 20)
#define S3_URL_MAX	 8192

struct mfs_s3 {
	mfs_s3_config cfg;
	char sigv4[96]; /* "aws:amz:REGION:s3" */
	pthread_mutex_t mu;
	CURL *idle[S3_POOL_MAX];
	int nidle;
	mfs_s3_stats stats; /* updated with __atomic */
};

static pthread_once_t s3_global_once = PTHREAD_ONCE_INIT;
static CURLcode s3_global_rc = CURLE_FAILED_INIT;

static void s3_global_init(void)
{
	s3_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int mfs_s3_open(const mfs_s3_config *cfg, mfs_s3 **out, mfs_errmsg *e)
{
	*out = NULL;
	if (!cfg->access_key[0] || !cfg->secret_key[0])
		return mfs_err(
		    e, MFS_E_INVAL,
		    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
		    "(or ~/.aws/credentials)");
	if (!cfg->region[0] || strpbrk(cfg->region, ":/ \t\r\n"))
		return mfs_err(e, MFS_E_INVAL, "bad S3 region \"%.63s\" (set AWS_REGION)",
			       cfg->region);
	if (cfg->endpoint[0]) {
		char norm[sizeof cfg->endpoint];
		int rc = mfs_s3_endpoint_normalize(cfg->endpoint, "the S3 endpoint", norm,
						   sizeof norm, e);
		if (rc)
			return rc;
	}
	if (cfg->connect_timeout_ms < 1 || cfg->timeout_ms < 1 || cfg->min_rate < 1 ||
	    cfg->stall_ms < 1000 || cfg->attempts < 1 || cfg->attempts > 100 ||
	    cfg->backoff_ms < 0 || cfg->list_page < 1 || cfg->list_page > 1000)
		return mfs_err(
		    e, MFS_E_INVAL,
		    "bad S3 limits: timeouts must be positive (the stall limit at "
		    "least 1000 ms), attempts 1..100, a list page 1..1000 keys");
	pthread_once(&s3_global_once, s3_global_init);
	if (s3_global_rc != CURLE_OK)
		return mfs_err(e, -EIO, "libcurl could not initialise: %s",
			       curl_easy_strerror(s3_global_rc));
	curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
	if (v->version_num < 0x074b00)
		return mfs_err(
		    e, -EIO,
		    "libcurl %s is too old for S3 (AWS SigV4 needs 7.75 or newer)",
		    v->version);
	mfs_s3 *s3 = calloc(1, sizeof *s3);
	if (!s3)
		return -ENOMEM;
	s3->cfg = *cfg;
	if (cfg->endpoint[0])
		mfs_s3_endpoint_normalize(cfg->endpoint, "", s3->cfg.endpoint,
					  sizeof s3->cfg.endpoint, NULL);
	snprintf(s3->sigv4, sizeof s3->sigv4, "aws:amz:%s:s3", cfg->region);
	if (pthread_mutex_init(&s3->mu, NULL)) {
		free(s3);
		return -ENOMEM;
	}
	*out = s3;
	return 0;
}

void mfs_s3_close(mfs_s3 *s3)
{
	if (!s3)
		return;
	for (int i = 0; i < s3->nidle; i++)
		curl_easy_cleanup(s3->idle[i]);
	pthread_mutex_destroy(&s3->mu);
	/* the keys go no further */
	memset(&s3->cfg, 0, sizeof s3->cfg);
	free(s3);
}

void mfs_s3_stats_get(mfs_s3 *s3, mfs_s3_stats *out)
{
	out->requests = __atomic_load_n(&s3->stats.requests, __ATOMIC_RELAXED);
	out->retries = __atomic_load_n(&s3->stats.retries, __ATOMIC_RELAXED);
	out->bytes_up = __atomic_load_n(&s3->stats.bytes_up, __ATOMIC_RELAXED);
	out->bytes_down = __atomic_load_n(&s3->stats.bytes_down, __ATOMIC_RELAXED);
}

static CURL *handle_take(mfs_s3 *s3)
{
	CURL *h = NULL;
	pthread_mutex_lock(&s3->mu);
	if (s3->nidle)
		h = s3->idle[--s3->nidle];
	pthread_mutex_unlock(&s3->mu);
	if (h) {
		curl_easy_reset(h); /* options go; its connections stay for reuse */
		return h;
	}
	return curl_easy_init();
}

static void handle_give(mfs_s3 *s3, CURL *h)
{
	pthread_mutex_lock(&s3->mu);
	if (s3->nidle < S3_POOL_MAX) {
		s3->idle[s3->nidle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s3->mu);
	if (h)
		curl_easy_cleanup(h);
}

/* ---------------------------------------------------------------- one request */

enum sink_kind { SINK_NONE, SINK_BUF, SINK_GROW, SINK_FD };

struct s3_req {
	const char *method; /* GET PUT POST HEAD DELETE */
	const char *bucket;
	const char *key;   /* NULL: the bucket itself */
	const char *query; /* canonical (sorted, encoded), or NULL */
	/* upload: a buffer, or a file range */
	int upload;
	const unsigned char *up_buf;
	int up_fd;
	uint64_t up_off, up_len;
	/* download */
	enum sink_kind sink;
	unsigned char *dst; /* SINK_BUF */
	size_t dst_cap;
	int dst_fd;	 /* SINK_FD */
	size_t grow_max; /* SINK_GROW */
	int ranged;	 /* Range: bytes=range_off-(range_off+dst_cap-1) */
	uint64_t range_off;
	/* bytes expected down when no buffer says it (SINK_FD): sizes the timeout */
	uint64_t down_hint;
};

struct s3_resp {
	CURL *h;
	const struct s3_req *rq;
	/* upload position */
	uint64_t up_pos;
	int up_short, up_errno;
	/* download */
	uint64_t got;
	int overflow, sink_errno;
	unsigned char *body; /* the error body, or the SINK_GROW body */
	size_t body_len, body_cap;
	/* headers of the last response */
	long status;
	int have_clen, have_crange;
	uint64_t clen, cr_first, cr_last, cr_total;
	int cr_unsatisfied; /* "bytes * / total" */
	char etag[80];
	int64_t date, last_modified; /* unix seconds; 0: absent or unreadable */
};

static size_t up_read(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_resp *r = arg;
	const struct s3_req *rq = r->rq;
	size_t want = size * n;
	uint64_t left = rq->up_len - r->up_pos;
	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (rq->up_buf) {
		memcpy(buf, rq->up_buf + r->up_pos, want);
	} else {
		ssize_t k;
		do
			k = pread(rq->up_fd, buf, want, (off_t)(rq->up_off + r->up_pos));
		while (k < 0 && errno == EINTR);
		if (k < 0) {
			r->up_errno = errno;
			return CURL_READFUNC_ABORT;
		}
		if (k == 0) {
			r->up_short = 1;
			return CURL_READFUNC_ABORT;
		}
		want = (size_t)k;
	}
	r->up_pos += want;
	return want;
}

static int up_seek(void *arg, curl_off_t off, int origin)
{
	struct s3_resp *r = arg;
	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->rq->up_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->up_pos = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

static int body_append(struct s3_resp *r, const char *p, size_t n, size_t max)
{
	if (r->body_len + n > max)
		n = max - r->body_len; /* keep the head of an over-long body */
	if (r->body_len + n + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		while (cap < r->body_len + n + 1)
			cap *= 2;
		unsigned char *b = realloc(r->body, cap);
		if (!b)
			return -1;
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

static size_t down_write(char *p, size_t size, size_t n, void *arg)
{
	struct s3_resp *r = arg;
	const struct s3_req *rq = r->rq;
	size_t len = size * n;
	long status = 0;
	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		if (body_append(r, p, len, S3_ERRBODY_MAX))
			return 0;
		return len;
	}
	switch (rq->sink) {
	case SINK_NONE:
		break;
	case SINK_BUF:
		if (r->got + len > rq->dst_cap) {
			r->overflow = 1;
			return 0;
		}
		memcpy(rq->dst + r->got, p, len);
		break;
	case SINK_GROW:
		if (r->got + len > rq->grow_max) {
			r->overflow = 1;
			return 0;
		}
		if (body_append(r, p, len, rq->grow_max))
			return 0;
		break;
	case SINK_FD: {
		size_t done = 0;
		while (done < len) {
			ssize_t k = pwrite(rq->dst_fd, p + done, len - done,
					   (off_t)(r->got + done));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				r->sink_errno = k < 0 ? errno : EIO;
				return 0;
			}
			done += (size_t)k;
		}
		break;
	}
	}
	r->got += len;
	return len;
}

static int hdr_is(const char *line, size_t n, const char *name, const char **val)
{
	size_t k = strlen(name);
	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return 0;
	const char *v = line + k + 1;
	while (v < line + n && (*v == ' ' || *v == '\t'))
		v++;
	*val = v;
	return 1;
}

static size_t hdr_line(char *line, size_t size, size_t n, void *arg)
{
	struct s3_resp *r = arg;
	size_t len = size * n;
	const char *v;
	if (len >= 5 &&
	    memcmp(line, "HTTP/", 5) == 0) { /* a new response (after a 100) */
		r->have_clen = r->have_crange = r->cr_unsatisfied = 0;
		r->etag[0] = '\0';
		r->date = r->last_modified = 0;
		return len;
	}
	char tmp[256];
	if (len >= sizeof tmp)
		return len; /* none of the headers read here is this long */
	memcpy(tmp, line, len);
	tmp[len] = '\0';
	if (hdr_is(tmp, len, "content-length", &v)) {
		r->clen = strtoull(v, NULL, 10);
		r->have_clen = 1;
	} else if (hdr_is(tmp, len, "content-range", &v)) {
		unsigned long long a, b, t;
		if (sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) == 3) {
			r->cr_first = a;
			r->cr_last = b;
			r->cr_total = t;
			r->have_crange = 1;
		} else if (sscanf(v, "bytes */%llu", &t) == 1) {
			r->cr_total = t;
			r->cr_unsatisfied = 1;
		}
	} else if (hdr_is(tmp, len, "date", &v)) {
		if (mfs_http_date_parse(v, &r->date))
			r->date = 0;
	} else if (hdr_is(tmp, len, "last-modified", &v)) {
		if (mfs_http_date_parse(v, &r->last_modified))
			r->last_modified = 0;
	} else if (hdr_is(tmp, len, "etag", &v)) {
		size_t k = strcspn(v, "\r\n");
		if (k >= 2 && v[0] == '"' && v[k - 1] == '"') {
			v++;
			k -= 2;
		}
		if (k >= sizeof r->etag)
			k = sizeof r->etag - 1;
		memcpy(r->etag, v, k);
		r->etag[k] = '\0';
	}
	return len;
}

/* Percent-encode as SigV4 wants: unreserved bytes as they are, '/' too when
 * @p keep_slash, the rest %XX (upper case). */
static int uri_encode(const char *s, int keep_slash, char *out, size_t cap, size_t *o)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
			    c == '~' || (keep_slash && c == '/');
		if (*o + (plain ? 1 : 3) >= cap)
			return MFS_E_INVAL;
		if (plain) {
			out[(*o)++] = (char)c;
		} else {
			out[(*o)++] = '%';
			out[(*o)++] = hex[c >> 4];
			out[(*o)++] = hex[c & 15];
		}
	}
	out[*o] = '\0';
	return 0;
}

/* The endpoint as messages show it. */
static const char *where(const mfs_s3 *s3)
{
	return s3->cfg.endpoint[0] ? s3->cfg.endpoint : "AWS S3";
}

/* "s3://bucket/key" (quoted) for messages. */
static const char *obj_name(const struct s3_req *rq, char *buf, size_t cap)
{
	char k[200];
	mfs_str_quote(rq->key ? rq->key : "", 160, k, sizeof k);
	snprintf(buf, cap, "s3://%s/%s", rq->bucket, k);
	return buf;
}

static int build_url(const mfs_s3 *s3, const struct s3_req *rq, char *url, size_t cap)
{
	size_t o = 0;
	int n;
	if (s3->cfg.endpoint[0])
		n = snprintf(url, cap, "%s/%s%s", s3->cfg.endpoint, rq->bucket,
			     rq->key ? "/" : "");
	else
		n = snprintf(url, cap, "https://%s.s3.%s.amazonaws.com/", rq->bucket,
			     s3->cfg.region);
	if (n < 0 || (size_t)n >= cap)
		return MFS_E_INVAL;
	o = (size_t)n;
	if (rq->key && uri_encode(rq->key, 1, url, cap, &o))
		return MFS_E_INVAL;
	if (rq->query) {
		n = snprintf(url + o, cap - o, "?%s", rq->query);
		if (n < 0 || (size_t)n >= cap - o)
			return MFS_E_INVAL;
	}
	return 0;
}

static int check_names(const char *bucket, const char *key, mfs_errmsg *e)
{
	char q[160];
	size_t bn = bucket ? strlen(bucket) : 0;
	if (bn < 3 || bn >= MFS_S3_BUCKET_MAX || strcspn(bucket, "/?#% ") != bn)
		return mfs_err(e, MFS_E_INVAL, "\"%s\" is not an S3 bucket name",
			       mfs_str_quote(bucket ? bucket : "", 80, q, sizeof q));
	if (key) {
		size_t kn = strlen(key);
		if (kn == 0 || kn >= MFS_S3_KEY_MAX)
			return mfs_err(e, MFS_E_INVAL,
				       "s3://%s/%s: an S3 key is 1 to 1024 bytes", bucket,
				       mfs_str_quote(key, 80, q, sizeof q));
	}
	return 0;
}

static void backoff_sleep(const mfs_s3 *s3, int attempt)
{
	long ms = s3->cfg.backoff_ms;
	for (int i = 1; i < attempt && ms < 4 * s3->cfg.backoff_ms; i++)
		ms *= 2;
	if (ms > 4 * s3->cfg.backoff_ms)
		ms = 4 * s3->cfg.backoff_ms;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t x = (uint64_t)now.tv_nsec * 0x9E3779B97F4A7C15ull;
	x ^= x >> 29;
	if (ms >= 4)
		ms = ms - ms / 4 + (long)(x % (uint64_t)(ms / 2 + 1)); /* +-1/4 */
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The message and code of a 4xx/5xx answer, not retried further. */
static int http_error(const mfs_s3 *s3, const struct s3_req *rq, const struct s3_resp *r,
		      int attempts, mfs_errmsg *e)
{
	char code[64], msg[200], name[300], qm[260], ak[40];
	mfs_s3_error_parse((const char *)r->body, r->body_len, code, sizeof code, msg,
			   sizeof msg);
	mfs_str_quote(msg, 200, qm, sizeof qm);
	obj_name(rq, name, sizeof name);
	mfs_str_quote(s3->cfg.access_key, 24, ak, sizeof ak);
	long st = r->status;
	const char *b = rq->bucket;
	if (!strcmp(code, "NoSuchBucket") || (st == 404 && !rq->key))
		return mfs_err(
		    e, -ENXIO,
		    "%s: the bucket \"%s\" does not exist at %s (NoSuchBucket); create "
		    "it, or check the URL and AWS_ENDPOINT_URL",
		    name, b, where(s3));
	if (!strcmp(code, "NoSuchKey") || st == 404)
		return mfs_err(e, MFS_E_NOTFOUND, "%s: no such key at %s (%s)", name,
			       where(s3), code[0] ? code : "HTTP 404");
	if (!strcmp(code, "InvalidAccessKeyId"))
		return mfs_err(
		    e, -EACCES,
		    "%s: %s does not know access key \"%s\" (InvalidAccessKeyId; the key "
		    "came from %s): check AWS_ACCESS_KEY_ID or the profile",
		    name, where(s3), ak,
		    s3->cfg.key_source[0] ? s3->cfg.key_source : "the caller");
	if (!strcmp(code, "SignatureDoesNotMatch"))
		return mfs_err(e, -EACCES,
			       "%s: %s refused the signature of access key \"%s\" "
			       "(SignatureDoesNotMatch): the secret key is wrong; check "
			       "AWS_SECRET_ACCESS_KEY or the profile (keys from %s)",
			       name, where(s3), ak,
			       s3->cfg.key_source[0] ? s3->cfg.key_source : "the caller");
	if (!strcmp(code, "ExpiredToken") || !strcmp(code, "InvalidToken") ||
	    !strcmp(code, "TokenRefreshRequired"))
		return mfs_err(
		    e, -EACCES,
		    "%s: the session token was refused (%s): get fresh credentials "
		    "(AWS_SESSION_TOKEN)",
		    name, code);
	if (!strcmp(code, "AuthorizationHeaderMalformed") ||
	    !strcmp(code, "PermanentRedirect") || st == 301)
		return mfs_err(
		    e, MFS_E_INVAL,
		    "%s: %s says the bucket is in another region than \"%s\" (%s%s%s): "
		    "set AWS_REGION to the bucket's region",
		    name, where(s3), s3->cfg.region, code[0] ? code : "HTTP 301",
		    qm[0] ? ": " : "", qm);
	if (!strcmp(code, "AccessDenied") || st == 403)
		return mfs_err(
		    e, -EACCES,
		    "%s: %s denied access to access key \"%s\" (%s%s%s); check the keys "
		    "(from %s) and the bucket's policy",
		    name, where(s3), ak, code[0] ? code : "HTTP 403", qm[0] ? ": " : "",
		    qm, s3->cfg.key_source[0] ? s3->cfg.key_source : "the caller");
	if (st >= 500 || st == 429)
		return mfs_err(
		    e, -EIO,
		    "%s: %s failed the request %d time%s (HTTP %ld%s%s%s%s); the object "
		    "store is in trouble: try again later",
		    name, where(s3), attempts, attempts == 1 ? "" : "s", st,
		    code[0] ? " " : "", code, qm[0] ? ": " : "", qm);
	return mfs_err(e, -EIO, "%s: %s answered %s with HTTP %ld%s%s%s%s", name,
		       where(s3), rq->method, st, code[0] ? " " : "", code,
		       qm[0] ? ": " : "", qm);
}

static int retryable_curl(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static int curl_error(const mfs_s3 *s3, const struct s3_req *rq, CURLcode c,
		      const char *detail, int attempts, mfs_errmsg *e)
{
	char name[300];
	obj_name(rq, name, sizeof name);
	const char *d = detail[0] ? detail : curl_easy_strerror(c);
	char tries[48];
	snprintf(tries, sizeof tries, "%d attempt%s", attempts, attempts == 1 ? "" : "s");
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return mfs_err(
		    e, -ECONNREFUSED,
		    "%s: cannot reach the object store at %s after %s (%s); check "
		    "AWS_ENDPOINT_URL (from %s) and that the server is running",
		    name, where(s3), tries, d,
		    s3->cfg.endpoint_source[0] ? s3->cfg.endpoint_source : "the caller");
	case CURLE_OPERATION_TIMEDOUT:
		return mfs_err(
		    e, -ETIMEDOUT,
		    "%s: the object store at %s did not answer in time after %s (%s); it "
		    "is down, stopped or overloaded: try again later",
		    name, where(s3), tries, d);
	default:
		return mfs_err(e, -EIO, "%s: the transfer with %s failed after %s (%s)",
			       name, where(s3), tries, d);
	}
}

/*
 * Run one request with its attempts.  On return @p r holds the last
 * response (the caller frees r->body).  2xx: returns 0.
 */
static int s3_do(mfs_s3 *s3, const struct s3_req *rq, struct s3_resp *r, mfs_errmsg *e)
{
	char url[S3_URL_MAX], name[300];
	memset(r, 0, sizeof *r);
	r->rq = rq;
	if (build_url(s3, rq, url, sizeof url))
		return mfs_err(e, MFS_E_INVAL, "%s: the request URL is too long",
			       obj_name(rq, name, sizeof name));
	CURL *h = handle_take(s3);
	if (!h)
		return -ENOMEM;
	r->h = h;
	struct curl_slist *hdrs = NULL, *t;
	char tok[sizeof s3->cfg.session_token + 32];
#define HDR(str)                                                                         \
	do {                                                                             \
		t = curl_slist_append(hdrs, str);                                        \
		if (!t) {                                                                \
			curl_slist_free_all(hdrs);                                       \
			handle_give(s3, h);                                              \
			return -ENOMEM;                                                  \
		}                                                                        \
		hdrs = t;                                                                \
	} while (0)
	/* The body is not hashed into the signature: the signed header says so. */
	HDR("x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (s3->cfg.session_token[0]) {
		snprintf(tok, sizeof tok, "x-amz-security-token: %s",
			 s3->cfg.session_token);
		HDR(tok);
	}
#undef HDR
	char range[64];
	uint64_t moved = rq->upload		? rq->up_len
			 : rq->sink == SINK_BUF ? rq->dst_cap
						: rq->down_hint;
	long timeout = s3->cfg.timeout_ms;
	uint64_t extra = moved / (uint64_t)s3->cfg.min_rate * 1000u;
	timeout = extra > (uint64_t)(LONG_MAX / 2) ? LONG_MAX / 2 : timeout + (long)extra;
	if (rq->ranged)
		snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, rq->range_off,
			 rq->range_off + rq->dst_cap - 1);

	int rc = 0, attempt;
	char errbuf[CURL_ERROR_SIZE];
	for (attempt = 1;; attempt++) {
		free(r->body);
		struct s3_resp keep = {.h = h, .rq = rq};
		*r = keep;
		errbuf[0] = '\0';
		curl_easy_reset(h);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
		curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s3->sigv4);
		curl_easy_setopt(h, CURLOPT_USERNAME, s3->cfg.access_key);
		curl_easy_setopt(h, CURLOPT_PASSWORD, s3->cfg.secret_key);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
				 s3->cfg.connect_timeout_ms);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
				 (s3->cfg.stall_ms + 999) / 1000);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, down_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, hdr_line);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
		/* No "Expect: 100-continue" round trip: answer at once. */
		curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
		if (!strcmp(rq->method, "HEAD"))
			curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		else if (!strcmp(rq->method, "DELETE"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
		else if (!strcmp(rq->method,
				 "POST")) /* a body through the read callback */
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
		if (rq->upload) {
			curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
					 (curl_off_t)rq->up_len);
			curl_easy_setopt(h, CURLOPT_READFUNCTION, up_read);
			curl_easy_setopt(h, CURLOPT_READDATA, r);
			curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, up_seek);
			curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		}
		if (rq->ranged)
			curl_easy_setopt(h, CURLOPT_RANGE, range);

		CURLcode c = curl_easy_perform(h);
		curl_off_t up = 0, down = 0;
		curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
		curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &down);
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
		__atomic_fetch_add(&s3->stats.requests, 1, __ATOMIC_RELAXED);
		if (attempt > 1)
			__atomic_fetch_add(&s3->stats.retries, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s3->stats.bytes_up, (uint64_t)up, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s3->stats.bytes_down, (uint64_t)down,
				   __ATOMIC_RELAXED);

		int retry = 0;
		if (c != CURLE_OK) {
			/* our own callbacks stopped it: never retried */
			if (r->up_errno) {
				rc = mfs_err(e, -r->up_errno,
					     "%s: reading the file to upload failed: %s",
					     obj_name(rq, name, sizeof name),
					     strerror(r->up_errno));
				break;
			}
			if (r->up_short) {
				rc = mfs_err(
				    e, MFS_E_CORRUPT,
				    "%s: the file to upload ended before offset %" PRIu64
				    " (it shrank while being sent)",
				    obj_name(rq, name, sizeof name),
				    rq->up_off + rq->up_len);
				break;
			}
			if (r->sink_errno) {
				rc = mfs_err(e, -r->sink_errno,
					     "%s: writing the download failed: %s",
					     obj_name(rq, name, sizeof name),
					     strerror(r->sink_errno));
				break;
			}
			if (r->overflow) {
				if (r->status == 200 && rq->ranged)
					rc = mfs_err(
					    e, -EIO,
					    "%s: %s ignored the byte range and sent the "
					    "whole "
					    "object; this client needs ranged GETs",
					    obj_name(rq, name, sizeof name), where(s3));
				else
					rc = mfs_err(e, MFS_E_CORRUPT,
						     "%s: %s sent more than the %zu "
						     "bytes asked for",
						     obj_name(rq, name, sizeof name),
						     where(s3),
						     rq->sink == SINK_BUF ? rq->dst_cap
									  : rq->grow_max);
				break;
			}
			if (c == CURLE_OUT_OF_MEMORY || c == CURLE_WRITE_ERROR) {
				rc = -ENOMEM;
				break;
			}
			retry = retryable_curl(c);
			if (!retry || attempt >= s3->cfg.attempts) {
				rc = curl_error(s3, rq, c, errbuf, attempt, e);
				break;
			}
		} else if (r->status >= 200 && r->status <= 299) {
			rc = 0;
			break;
		} else {
			const char *code = "";
			char cbuf[64];
			mfs_s3_error_parse((const char *)r->body, r->body_len, cbuf,
					   sizeof cbuf, NULL, 0);
			code = cbuf;
			retry = r->status >= 500 || r->status == 429 ||
				!strcmp(code, "SlowDown") ||
				!strcmp(code, "RequestTimeout") ||
				!strcmp(code, "InternalError");
			if (!retry || attempt >= s3->cfg.attempts) {
				rc = r->status == 416 && rq->ranged
					 ? 416
					 : http_error(s3, rq, r, attempt, e);
				break;
			}
		}
		backoff_sleep(s3, attempt);
	}
	curl_slist_free_all(hdrs);
	handle_give(s3, h);
	r->h = NULL;
	return rc;
}

/* ---------------------------------------------------------------- operations */

int mfs_s3_bucket_check(mfs_s3 *s3, const char *bucket, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, NULL, e));
	struct s3_req rq = {.method = "HEAD", .bucket = bucket};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	free(r.body);
	return rc;
}

int mfs_s3_put(mfs_s3 *s3, const char *bucket, const char *key, const void *buf,
	       size_t len, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	static const unsigned char empty[1];
	struct s3_req rq = {.method = "PUT",
			    .bucket = bucket,
			    .key = key,
			    .upload = 1,
			    .up_buf = len ? buf : empty,
			    .up_len = len};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	free(r.body);
	return rc;
}

int mfs_s3_put_file(mfs_s3 *s3, const char *bucket, const char *key, int fd, uint64_t off,
		    uint64_t len, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	if (off > UINT64_MAX - len || off + len > (uint64_t)INT64_MAX)
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the file range is out of bounds",
			       bucket);
	/* A range past the file's end is the caller's mistake: say so before
	 * sending anything (a file that shrinks while sent is caught in up_read). */
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int err = errno;
		return mfs_err(e, -err, "s3://%s: the file to upload: %s", bucket,
			       strerror(err));
	}
	if (S_ISREG(st.st_mode) && off + len > (uint64_t)st.st_size) {
		char q[200];
		return mfs_err(e, MFS_E_CORRUPT,
			       "s3://%s/%s: the file to upload is %" PRIu64
			       " bytes; the range asked for ends at %" PRIu64
			       " (nothing was sent)",
			       bucket, mfs_str_quote(key, 160, q, sizeof q),
			       (uint64_t)st.st_size, off + len);
	}
	struct s3_req rq = {.method = "PUT",
			    .bucket = bucket,
			    .key = key,
			    .upload = 1,
			    .up_fd = fd,
			    .up_off = off,
			    .up_len = len};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	free(r.body);
	return rc;
}

/* After a 416 or a short 206: how long the object really is. */
static int short_object(const mfs_s3 *s3, const struct s3_req *rq, uint64_t total,
			int known, mfs_errmsg *e)
{
	char name[300];
	obj_name(rq, name, sizeof name);
	if (known)
		return mfs_err(e, MFS_E_CORRUPT,
			       "%s: the object is %" PRIu64
			       " bytes, shorter than the %zu bytes at "
			       "offset %" PRIu64 " asked for (truncated or replaced?)",
			       name, total, rq->dst_cap, rq->range_off);
	return mfs_err(e, MFS_E_CORRUPT,
		       "%s: the object is shorter than the %zu bytes at offset %" PRIu64
		       " asked for (truncated or replaced?)",
		       name, rq->dst_cap, rq->range_off);
}

int mfs_s3_get_range(mfs_s3 *s3, const char *bucket, const char *key, uint64_t off,
		     void *dst, size_t len, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	if (len == 0)
		return 0;
	if (off > UINT64_MAX - len)
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the byte range is out of bounds",
			       bucket);
	struct s3_req rq = {.method = "GET",
			    .bucket = bucket,
			    .key = key,
			    .sink = SINK_BUF,
			    .dst = dst,
			    .dst_cap = len,
			    .ranged = 1,
			    .range_off = off};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	char name[300];
	if (rc == 416) {
		rc = short_object(s3, &rq, r.cr_total, r.cr_unsatisfied, e);
	} else if (rc == 0) {
		if (r.status == 206 && r.have_crange &&
		    (r.cr_first != off || r.cr_last > off + len - 1)) {
			rc = mfs_err(e, MFS_E_CORRUPT,
				     "%s: asked for bytes %" PRIu64 "-%" PRIu64
				     ", %s sent %" PRIu64 "-%" PRIu64,
				     obj_name(&rq, name, sizeof name), off, off + len - 1,
				     where(s3), r.cr_first, r.cr_last);
		} else if (r.got != len) {
			if (r.status == 200 && off != 0)
				rc = mfs_err(
				    e, -EIO,
				    "%s: %s ignored the byte range; this client needs "
				    "ranged GETs",
				    obj_name(&rq, name, sizeof name), where(s3));
			else
				rc = short_object(s3, &rq,
						  r.have_crange ? r.cr_total : r.got,
						  r.have_crange || r.status == 200, e);
		} else if (r.status == 200 && off != 0) {
			rc = mfs_err(e, -EIO, "%s: %s ignored the byte range",
				     obj_name(&rq, name, sizeof name), where(s3));
		}
	}
	free(r.body);
	return rc;
}

int mfs_s3_get_file(mfs_s3 *s3, const char *bucket, const char *key, int fd,
		    uint64_t *size, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	/* The size first: it sizes the GET's time limit (an index snapshot may
	 * be hundreds of MB), and a missing key or bucket is told apart. */
	mfs_s3_object info;
	MFS_TRY(mfs_s3_head(s3, bucket, key, &info, e));
	struct s3_req rq = {.method = "GET",
			    .bucket = bucket,
			    .key = key,
			    .sink = SINK_FD,
			    .dst_fd = fd,
			    .down_hint = info.size};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	char name[300];
	if (rc == 0 && r.have_clen && r.got != r.clen)
		rc = mfs_err(e, MFS_E_CORRUPT,
			     "%s: %" PRIu64 " bytes came of %" PRIu64 " announced",
			     obj_name(&rq, name, sizeof name), r.got, r.clen);
	if (rc == 0 && ftruncate(fd, (off_t)r.got) != 0) {
		int err = errno;
		rc = mfs_err(e, -err, "%s: truncating the download failed: %s",
			     obj_name(&rq, name, sizeof name), strerror(err));
	}
	if (rc == 0 && size)
		*size = r.got;
	free(r.body);
	return rc;
}

int mfs_s3_head(mfs_s3 *s3, const char *bucket, const char *key, mfs_s3_object *info,
		mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	struct s3_req rq = {.method = "HEAD", .bucket = bucket, .key = key};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	if (rc == 0) {
		memset(info, 0, sizeof *info);
		char name[300];
		if (!r.have_clen)
			rc = mfs_err(e, -EIO, "%s: %s gave no Content-Length",
				     obj_name(&rq, name, sizeof name), where(s3));
		info->size = r.clen;
		memcpy(info->etag, r.etag, sizeof info->etag);
		info->mtime = r.last_modified;
	} else if (rc == MFS_E_NOTFOUND) {
		/* A HEAD answer has no body to say whether the key or the bucket
		 * is missing: ask about the bucket. */
		mfs_errmsg be = {0};
		if (mfs_s3_bucket_check(s3, bucket, &be) == -ENXIO) {
			rc = -ENXIO;
			if (e)
				*e = be;
		}
	}
	free(r.body);
	return rc;
}

int mfs_s3_list(mfs_s3 *s3, const char *bucket, const char *prefix, mfs_s3_list_fn fn,
		void *arg, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, NULL, e));
	if (strlen(prefix) >= MFS_S3_KEY_MAX)
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the prefix is over 1024 bytes",
			       bucket);
	char token[1024] = "", query[S3_URL_MAX / 2], name[300];
	int rc = 0;
	for (uint64_t page = 0;; page++) {
		/* Parameters in the sorted order SigV4's canonical query wants. */
		size_t o = 0;
		int n = 0;
		if (token[0]) {
			n = snprintf(query, sizeof query, "continuation-token=");
			o = (size_t)n;
			if (uri_encode(token, 0, query, sizeof query, &o))
				return mfs_err(
				    e, MFS_E_INVAL,
				    "s3://%s: the continuation token is too long",
				    bucket);
			query[o++] = '&';
		}
		n = snprintf(query + o, sizeof query - o,
			     "list-type=2&max-keys=%d&prefix=", s3->cfg.list_page);
		o += (size_t)n;
		if (uri_encode(prefix, 0, query, sizeof query, &o))
			return mfs_err(e, MFS_E_INVAL, "s3://%s: the prefix is too long",
				       bucket);
		struct s3_req rq = {.method = "GET",
				    .bucket = bucket,
				    .query = query,
				    .sink = SINK_GROW,
				    .grow_max = S3_LIST_BODY_MAX};
		struct s3_resp r;
		rc = s3_do(s3, &rq, &r, e);
		if (rc) {
			free(r.body);
			return rc;
		}
		int truncated = 0;
		mfs_errmsg pe = {0};
		rc =
		    mfs_s3_list_page_parse(r.body ? (const char *)r.body : "", r.body_len,
					   fn, arg, &truncated, token, sizeof token, &pe);
		free(r.body);
		if (rc) {
			if (pe.msg[0])
				return mfs_err(
				    e, rc,
				    "s3://%s: page %" PRIu64
				    " of the listing of prefix \"%s\" from %s: %s",
				    bucket, page,
				    mfs_str_quote(prefix, 80, name, sizeof name),
				    where(s3), pe.msg);
			return rc; /* the callback's own value */
		}
		if (!truncated)
			return 0;
	}
}

int mfs_s3_delete(mfs_s3 *s3, const char *bucket, const char *key, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	struct s3_req rq = {.method = "DELETE", .bucket = bucket, .key = key};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	free(r.body);
	if (rc == MFS_E_NOTFOUND)
		rc = 0; /* some servers answer 404 for a missing key */
	return rc;
}

int mfs_s3_server_time(mfs_s3 *s3, const char *bucket, int64_t *now, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, NULL, e));
	struct s3_req rq = {.method = "HEAD", .bucket = bucket};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	free(r.body);
	if (rc == 0)
		*now = r.date ? r.date : (int64_t)time(NULL);
	return rc;
}

/* ---------------------------------------------------------------- multipart */

/* "uploadId=ENC" (with @p pre before it, e.g. "partNumber=3&"), as SigV4's
 * canonical query wants it: parameters sorted, values encoded. */
static int upload_query(const char *pre, const char *upload_id, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%suploadId=", pre);
	if (n < 0 || (size_t)n >= cap)
		return MFS_E_INVAL;
	size_t o = (size_t)n;
	return uri_encode(upload_id, 0, out, cap, &o);
}

static int check_upload_id(const char *bucket, const char *key, const char *id,
			   mfs_errmsg *e)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n >= MFS_S3_UPLOAD_ID_MAX)
		return mfs_err(e, MFS_E_INVAL,
			       "s3://%s/%s: an upload id of %zu bytes (1..%d expected)",
			       bucket, key, n, MFS_S3_UPLOAD_ID_MAX - 1);
	return 0;
}

/* The head of a 2xx answer's body, for a message. */
static const char *body_head(const struct s3_resp *r, char *buf, size_t cap)
{
	size_t n = r->body_len < 120 ? r->body_len : 120;
	char raw[124];
	memcpy(raw, r->body ? (const char *)r->body : "", n);
	raw[n] = '\0';
	return mfs_str_quote(raw, 120, buf, cap);
}

int mfs_s3_multipart_create(mfs_s3 *s3, const char *bucket, const char *key,
			    char *upload_id, size_t cap, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	static const unsigned char empty[1];
	struct s3_req rq = {.method = "POST",
			    .bucket = bucket,
			    .key = key,
			    .query = "uploads=",
			    .upload = 1,
			    .up_buf = empty,
			    .up_len = 0,
			    .sink = SINK_GROW,
			    .grow_max = S3_ERRBODY_MAX};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	if (rc == 0) {
		mfs_errmsg pe = {0};
		rc = mfs_s3_upload_id_parse(r.body ? (const char *)r.body : "",
					    r.body_len, upload_id, cap, &pe);
		char name[300], hb[200];
		if (rc)
			mfs_err(e, rc, "%s: %s: %s; it began with \"%s\"",
				obj_name(&rq, name, sizeof name), where(s3), pe.msg,
				body_head(&r, hb, sizeof hb));
	}
	free(r.body);
	return rc;
}

int mfs_s3_multipart_upload_part(mfs_s3 *s3, const char *bucket, const char *key,
				 const char *upload_id, unsigned number, int fd,
				 uint64_t off, uint64_t len, mfs_s3_part *part,
				 mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	MFS_TRY(check_upload_id(bucket, key, upload_id, e));
	if (number < 1 || number > MFS_S3_PARTS_MAX)
		return mfs_err(e, MFS_E_INVAL, "s3://%s/%s: part number %u (1..%d)",
			       bucket, key, number, MFS_S3_PARTS_MAX);
	if (off > UINT64_MAX - len || off + len > (uint64_t)INT64_MAX)
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the file range is out of bounds",
			       bucket);
	char pre[32], query[S3_URL_MAX / 2];
	snprintf(pre, sizeof pre, "partNumber=%u&", number);
	if (upload_query(pre, upload_id, query, sizeof query))
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the upload id is too long",
			       bucket);
	struct s3_req rq = {.method = "PUT",
			    .bucket = bucket,
			    .key = key,
			    .query = query,
			    .upload = 1,
			    .up_fd = fd,
			    .up_off = off,
			    .up_len = len};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	if (rc == 0) {
		char name[300];
		if (!r.etag[0])
			rc = mfs_err(e, -EIO, "%s: %s gave no ETag for part %u",
				     obj_name(&rq, name, sizeof name), where(s3), number);
		part->number = number;
		snprintf(part->etag, sizeof part->etag, "%s", r.etag);
	}
	free(r.body);
	return rc;
}

int mfs_s3_multipart_complete(mfs_s3 *s3, const char *bucket, const char *key,
			      const char *upload_id, const mfs_s3_part *parts, size_t n,
			      mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	MFS_TRY(check_upload_id(bucket, key, upload_id, e));
	if (n == 0 || n > MFS_S3_PARTS_MAX)
		return mfs_err(e, MFS_E_INVAL, "s3://%s/%s: %zu parts (1..%d)", bucket,
			       key, n, MFS_S3_PARTS_MAX);
	/* <Part><PartNumber>N</PartNumber><ETag>"E"</ETag></Part>: ETags are
	 * hex or hex-N, nothing to escape; refuse what would need it */
	size_t cap = 64 + n * (48 + sizeof parts[0].etag), o = 0;
	char *xml = malloc(cap);
	if (!xml)
		return -ENOMEM;
	o += (size_t)snprintf(xml + o, cap - o, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < n; i++) {
		if (strpbrk(parts[i].etag, "<>&\"") ||
		    (i && parts[i].number <= parts[i - 1].number)) {
			free(xml);
			return mfs_err(e, MFS_E_INVAL,
				       "s3://%s/%s: part %u: a bad ETag or part order",
				       bucket, key, parts[i].number);
		}
		o += (size_t)snprintf(
		    xml + o, cap - o,
		    "<Part><PartNumber>%u</PartNumber><ETag>\"%s\"</ETag></Part>",
		    parts[i].number, parts[i].etag);
	}
	o += (size_t)snprintf(xml + o, cap - o, "</CompleteMultipartUpload>");
	char query[S3_URL_MAX / 2];
	if (upload_query("", upload_id, query, sizeof query)) {
		free(xml);
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the upload id is too long",
			       bucket);
	}
	struct s3_req rq = {.method = "POST",
			    .bucket = bucket,
			    .key = key,
			    .query = query,
			    .upload = 1,
			    .up_buf = (const unsigned char *)xml,
			    .up_len = o,
			    .sink = SINK_GROW,
			    .grow_max = S3_ERRBODY_MAX};
	int rc;
	for (int attempt = 1;; attempt++) {
		struct s3_resp r;
		rc = s3_do(s3, &rq, &r, e);
		if (rc == 0) {
			char code[64], msg[200], name[300], hb[200];
			int prc = mfs_s3_complete_parse(
			    r.body ? (const char *)r.body : "", r.body_len, code,
			    sizeof code, msg, sizeof msg);
			if (prc == -EIO && attempt < s3->cfg.attempts &&
			    (!strcmp(code, "InternalError") ||
			     !strcmp(code, "SlowDown"))) {
				free(r.body);
				backoff_sleep(s3, attempt);
				continue;
			}
			if (prc == -EIO)
				rc = mfs_err(
				    e, -EIO,
				    "%s: %s could not complete the multipart upload "
				    "(%s: %s)",
				    obj_name(&rq, name, sizeof name), where(s3),
				    code[0] ? code : "an error", msg);
			else if (prc)
				rc = mfs_err(
				    e, MFS_E_CORRUPT,
				    "%s: %s answered CompleteMultipartUpload with "
				    "something else than its result: \"%s\"",
				    obj_name(&rq, name, sizeof name), where(s3),
				    body_head(&r, hb, sizeof hb));
		}
		free(r.body);
		break;
	}
	free(xml);
	return rc;
}

int mfs_s3_multipart_abort(mfs_s3 *s3, const char *bucket, const char *key,
			   const char *upload_id, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	MFS_TRY(check_upload_id(bucket, key, upload_id, e));
	char query[S3_URL_MAX / 2];
	if (upload_query("", upload_id, query, sizeof query))
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the upload id is too long",
			       bucket);
	struct s3_req rq = {
	    .method = "DELETE", .bucket = bucket, .key = key, .query = query};
	struct s3_resp r;
	int rc = s3_do(s3, &rq, &r, e);
	free(r.body);
	if (rc == MFS_E_NOTFOUND)
		rc = 0; /* NoSuchUpload: already gone */
	return rc;
}

int mfs_s3_multipart_list(mfs_s3 *s3, const char *bucket, const char *prefix,
			  mfs_s3_upload_fn fn, void *arg, mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, NULL, e));
	if (strlen(prefix) >= MFS_S3_KEY_MAX)
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the prefix is over 1024 bytes",
			       bucket);
	char kmark[MFS_S3_KEY_MAX] = "", imark[MFS_S3_UPLOAD_ID_MAX] = "";
	char query[S3_URL_MAX], name[300];
	for (uint64_t page = 0;; page++) {
		/* sorted: key-marker, max-uploads, prefix, upload-id-marker, uploads */
		size_t o = 0;
		int bad = 0;
		if (kmark[0]) {
			o = (size_t)snprintf(query, sizeof query, "key-marker=");
			bad |= uri_encode(kmark, 0, query, sizeof query, &o);
			if (!bad && o + 1 < sizeof query)
				query[o++] = '&';
		}
		int n = snprintf(query + o, sizeof query - o,
				 "max-uploads=%d&prefix=", s3->cfg.list_page);
		o += (size_t)n;
		bad |= uri_encode(prefix, 0, query, sizeof query, &o);
		if (imark[0]) {
			n = snprintf(query + o, sizeof query - o, "&upload-id-marker=");
			o += (size_t)n;
			bad |= uri_encode(imark, 0, query, sizeof query, &o);
		}
		n = snprintf(query + o, sizeof query - o, "&uploads=");
		if (bad || n < 0 || (size_t)n >= sizeof query - o)
			return mfs_err(e, MFS_E_INVAL,
				       "s3://%s: the upload listing's query is too long",
				       bucket);
		struct s3_req rq = {.method = "GET",
				    .bucket = bucket,
				    .query = query,
				    .sink = SINK_GROW,
				    .grow_max = S3_LIST_BODY_MAX};
		struct s3_resp r;
		int rc = s3_do(s3, &rq, &r, e);
		if (rc) {
			if (r.status == 501)
				rc =
				    mfs_err(e, -ENOSYS,
					    "s3://%s: %s does not list multipart uploads "
					    "(HTTP 501)",
					    bucket, where(s3));
			free(r.body);
			return rc;
		}
		int truncated = 0;
		mfs_errmsg pe = {0};
		char okmark[MFS_S3_KEY_MAX], oimark[MFS_S3_UPLOAD_ID_MAX];
		memcpy(okmark, kmark, sizeof okmark);
		memcpy(oimark, imark, sizeof oimark);
		rc = mfs_s3_uploads_page_parse(r.body ? (const char *)r.body : "",
					       r.body_len, fn, arg, &truncated, kmark,
					       sizeof kmark, imark, sizeof imark, &pe);
		free(r.body);
		if (rc) {
			if (pe.msg[0])
				return mfs_err(
				    e, rc,
				    "s3://%s: page %" PRIu64
				    " of the multipart uploads under \"%s\" from "
				    "%s: %s",
				    bucket, page,
				    mfs_str_quote(prefix, 80, name, sizeof name),
				    where(s3), pe.msg);
			return rc;
		}
		if (!truncated)
			return 0;
		if ((!strcmp(okmark, kmark) && !strcmp(oimark, imark)) || page >= 100000)
			return mfs_err(
			    e, MFS_E_CORRUPT,
			    "s3://%s: the multipart upload listing from %s does "
			    "not move on (the same markers twice)",
			    bucket, where(s3));
	}
}

/* Failures worth sending a part again for: the request's own attempts ran
 * out on something that may pass (a dropped link, a busy server). */
static int part_retryable(int rc)
{
	return rc == -EIO || rc == -ETIMEDOUT || rc == -ECONNREFUSED;
}

int mfs_s3_put_file_multipart(mfs_s3 *s3, const char *bucket, const char *key, int fd,
			      uint64_t off, uint64_t len, const mfs_s3_multipart_opts *o,
			      mfs_errmsg *e)
{
	MFS_TRY(check_names(bucket, key, e));
	if (off > UINT64_MAX - len || off + len > (uint64_t)INT64_MAX)
		return mfs_err(e, MFS_E_INVAL, "s3://%s: the file range is out of bounds",
			       bucket);
	uint64_t part = o && o->part_size ? o->part_size : (uint64_t)64 << 20;
	int tries = o && o->part_tries > 0 ? o->part_tries : 3;
	/* at most MFS_S3_PARTS_MAX parts: bigger ones if need be */
	if (len / part >= MFS_S3_PARTS_MAX)
		part = len / (MFS_S3_PARTS_MAX - 1);
	uint64_t nparts = len ? (len + part - 1) / part : 1;
	struct stat st;
	char q[200];
	if (fstat(fd, &st) != 0) {
		int err = errno;
		return mfs_err(e, -err, "s3://%s: the file to upload: %s", bucket,
			       strerror(err));
	}
	if (S_ISREG(st.st_mode) && off + len > (uint64_t)st.st_size)
		return mfs_err(e, MFS_E_CORRUPT,
			       "s3://%s/%s: the file to upload is %" PRIu64
			       " bytes; the range asked for ends at %" PRIu64
			       " (nothing was sent)",
			       bucket, mfs_str_quote(key, 160, q, sizeof q),
			       (uint64_t)st.st_size, off + len);
	mfs_s3_part *parts = calloc((size_t)nparts, sizeof *parts);
	if (!parts)
		return -ENOMEM;
	char id[MFS_S3_UPLOAD_ID_MAX];
	int rc = mfs_s3_multipart_create(s3, bucket, key, id, sizeof id, e);
	if (rc) {
		free(parts);
		return rc;
	}
	for (uint64_t i = 0; i < nparts && rc == 0; i++) {
		uint64_t po = off + i * part,
			 pl = len - i * part < part ? len - i * part : part;
		for (int t = 1;; t++) {
			rc = mfs_s3_multipart_upload_part(s3, bucket, key, id,
							  (unsigned)(i + 1), fd, po, pl,
							  &parts[i], e);
			if (rc == 0 || !part_retryable(rc) || t >= tries)
				break;
			backoff_sleep(s3, t);
		}
		if (rc == 0 && o && o->part_done)
			o->part_done(o->ud, (unsigned)(i + 1), (unsigned)nparts, pl);
	}
	if (rc == 0)
		rc = mfs_s3_multipart_complete(s3, bucket, key, id, parts, (size_t)nparts,
					       e);
	if (rc == MFS_E_NOTFOUND) {
		/* NoSuchUpload after a complete whose answer was lost and that a
		 * retry sent again: the object is there if it has every byte */
		mfs_s3_object info;
		if (mfs_s3_head(s3, bucket, key, &info, NULL) == 0 && info.size == len)
			rc = 0;
	}
	if (rc) {
		/* parts of an upload never completed cost storage: free them */
		mfs_s3_multipart_abort(s3, bucket, key, id, NULL);
	}
	free(parts);
	return rc;
}
