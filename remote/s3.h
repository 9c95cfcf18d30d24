/*
 * s3.h - a small S3 client (libcurl, with curl's own AWS SigV4 signing) for
 * the remote store: `modelfs push` uploads packs and index snapshots with
 * it, and a remote mount fetches byte ranges of packs with it.
 *
 * Use:
 *     mfs_s3_config cfg;
 *     mfs_s3_config_load(&cfg, &e);           // env + ~/.aws files
 *     mfs_s3_url url;
 *     mfs_s3_url_parse("s3://bucket/models", &url, &e);
 *     mfs_s3 *s3;
 *     mfs_s3_open(&cfg, &s3, &e);
 *     mfs_s3_get_range(s3, url.bucket, "models/packs/...", off, buf, len, &e);
 *     mfs_s3_close(s3);
 *
 * Requests go path-style to the configured endpoint
 * (ENDPOINT/BUCKET/KEY); with no endpoint configured they go
 * virtual-host style to AWS (https://BUCKET.s3.REGION.amazonaws.com/KEY).
 * Every request has a connect timeout, a total timeout that grows with the
 * bytes moved, a stall timeout, and a bounded number of attempts with
 * exponential backoff for connection errors, timeouts, 5xx answers, 429 /
 * SlowDown and bodies cut short.  Client errors (4xx) are never retried.
 *
 * Threads: an mfs_s3 may be used from any number of threads at once; it
 * keeps a pool of libcurl handles (a handle, and its connections, serve one
 * call at a time).  curl_global_init() runs once per process, the first
 * time mfs_s3_open() is called.
 *
 * Module convention: int return, 0 or a negative code; on failure the
 * optional mfs_errmsg gets a sentence that names s3://BUCKET/KEY and the
 * endpoint, and says what to do.  The codes:
 *   MFS_E_NOTFOUND  the key does not exist (NoSuchKey, 404 on an object)
 *   -ENXIO          the bucket does not exist (NoSuchBucket)
 *   -EACCES         the credentials were refused: unknown access key,
 *                   wrong secret key (signature mismatch), expired token,
 *                   or access denied by policy
 *   -ECONNREFUSED   the endpoint could not be reached (refused, no route,
 *                   host not resolved), after every attempt
 *   -ETIMEDOUT      no answer, or a transfer stalled, within the time
 *                   limits, after every attempt
 *   -EIO            5xx answers, or a connection that broke mid-transfer,
 *                   after every attempt; or an answer this client cannot
 *                   read (unexpected status)
 *   MFS_E_CORRUPT   the object is shorter than the range asked for, or
 *                   the server sent a different range or length
 *   MFS_E_INVAL     a bad URL, bucket or key, or a bad configuration
 *   -ENOMEM         out of memory
 * plus the -errno of a failing read(2)/write(2) on a caller's file.
 */
#ifndef MFS_S3_H
#define MFS_S3_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Longest bucket name S3 allows (3..63 bytes), plus the NUL. */
#define MFS_S3_BUCKET_MAX 64
/* Longest key S3 allows (1024 bytes of UTF-8), plus the NUL. */
#define MFS_S3_KEY_MAX 1025

/* Where the configuration came from, for messages ("env", a file path...). */
#define MFS_S3_SOURCE_MAX 600

/**
 * Everything a client needs.  Plain data: fill it with
 * mfs_s3_config_load(), or by hand (tests), then pass it to mfs_s3_open(),
 * which copies it.  Strings are NUL-terminated; an empty string means
 * "not set".
 */
typedef struct mfs_s3_config {
	/* "http[s]://host[:port]" with no trailing '/'; empty: AWS itself */
	char endpoint[512];
	char region[64];	  /* never empty after a load: "us-east-1" by default */
	char access_key[256];	  /* required */
	char secret_key[256];	  /* required */
	char session_token[4096]; /* optional: sent as x-amz-security-token */
	char profile[128];	  /* the profile that was read ("default" ...) */
	/* where the keys and the endpoint came from: named in error messages */
	char key_source[MFS_S3_SOURCE_MAX];
	char endpoint_source[MFS_S3_SOURCE_MAX];

	long connect_timeout_ms; /* TCP (and TLS) connect, per attempt; default 3000 */
	/* total time of one attempt: timeout_ms plus bytes / min_rate; defaults
	 * 10000 and 1 MiB/s, so a 1 GiB pack has 17 minutes, a 1 MiB range 11 s */
	long timeout_ms;
	long min_rate; /* bytes per second, see timeout_ms */
	/* an attempt that moves under 1 KiB/s for this long is abandoned (a
	 * stopped server, a dead link); default 5000 */
	long stall_ms;
	int attempts;	 /* tries per call, >= 1; default 3 (AWS_MAX_ATTEMPTS) */
	long backoff_ms; /* first wait between tries, doubled each time, 1/4
			  * jitter, capped at 4x; default 200 */
	int list_page;	 /* max-keys of a ListObjectsV2 page, 1..1000; default 1000 */
} mfs_s3_config;

/**
 * Fill @p cfg with the defaults above and nothing else (no keys, no
 * endpoint, region "us-east-1").
 */
void mfs_s3_config_defaults(mfs_s3_config *cfg);

/**
 * Fill @p cfg from the environment and the AWS files, as the AWS CLI does:
 *   profile:  AWS_PROFILE, else AWS_DEFAULT_PROFILE, else "default";
 *   files:    AWS_CONFIG_FILE (else ~/.aws/config, section [profile NAME] or
 *             [default]) and AWS_SHARED_CREDENTIALS_FILE (else
 *             ~/.aws/credentials, section [NAME]); a missing file is fine;
 *   keys:     AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
 *             when both are set, else the credentials file's profile, else
 *             the config file's profile (aws_access_key_id, ...);
 *   region:   AWS_REGION, else AWS_DEFAULT_REGION, else the profile's
 *             `region`, else "us-east-1";
 *   endpoint: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else the profile's
 *             `endpoint_url` in its `s3 =` sub-section, else its own
 *             `endpoint_url`, else none (AWS);
 *   attempts: AWS_MAX_ATTEMPTS, else the profile's `max_attempts`.
 * The timeouts keep their defaults (set the fields after loading).
 * @return 0; MFS_E_INVAL (no keys anywhere, a named profile that neither
 *         file has, a malformed endpoint or number: the message says which
 *         variable or file line); MFS_E_FORMAT (a file that is not INI);
 *         -errno of a file that exists but cannot be read
 */
int mfs_s3_config_load(mfs_s3_config *cfg, mfs_errmsg *e);

/**
 * Check and normalise an endpoint URL: "http://" or "https://", a host, an
 * optional port, an optional trailing '/' (removed).  A path, query or
 * user info is refused.
 * @param[out] out  cap bytes; the normalised URL
 * @return 0 or MFS_E_INVAL (the message names @p what, e.g. the variable)
 */
int mfs_s3_endpoint_normalize(const char *url, const char *what, char *out, size_t cap,
			      mfs_errmsg *e);

/** s3://BUCKET/PREFIX, split. */
typedef struct mfs_s3_url {
	char bucket[MFS_S3_BUCKET_MAX];
	/* everything after "BUCKET/", verbatim (may be empty); no leading '/' */
	char prefix[MFS_S3_KEY_MAX];
} mfs_s3_url;

/**
 * Parse "s3://BUCKET", "s3://BUCKET/" or "s3://BUCKET/PREFIX".  The bucket
 * must be a valid S3 name (3..63 of a-z 0-9 . -, starting and ending with
 * a letter or digit); the prefix must be a valid key (under 1025 bytes, no
 * control characters).
 * @return 0 or MFS_E_INVAL (the message quotes the URL and says what is wrong)
 */
int mfs_s3_url_parse(const char *url, mfs_s3_url *out, mfs_errmsg *e);

/**
 * The key of @p name under @p prefix: "PREFIX/NAME" with exactly one '/'
 * between them ("NAME" when the prefix is empty).
 * @param[out] out  cap bytes, NUL-terminated
 * @return 0 or MFS_E_INVAL (the key would be 1025 bytes or more, or
 *         @p cap is too small)
 */
int mfs_s3_key_join(const char *prefix, const char *name, char *out, size_t cap);

/** The client; opaque.  One per configuration, shared by threads. */
typedef struct mfs_s3 mfs_s3;

/**
 * Make a client for @p cfg (copied: the caller may free or change it).
 * Opens no connection: a wrong endpoint or key shows at the first request
 * (use mfs_s3_bucket_check() to find out early).
 * @param[out] out  the client, freed with mfs_s3_close()
 * @return 0; MFS_E_INVAL (no keys, a bad endpoint or limit); -ENOMEM;
 *         -EIO (libcurl could not initialise, or lacks SigV4 support)
 */
int mfs_s3_open(const mfs_s3_config *cfg, mfs_s3 **out, mfs_errmsg *e);

/** Free a client and its handles.  No call may be running on it.  NULL: no-op. */
void mfs_s3_close(mfs_s3 *s3);

/**
 * Does @p bucket exist, and do the keys open it?  (HEAD on the bucket.)
 * @return 0; -ENXIO; -EACCES; the connection codes
 */
int mfs_s3_bucket_check(mfs_s3 *s3, const char *bucket, mfs_errmsg *e);

/**
 * Store @p len bytes of @p buf as @p key (replacing any object there).
 * The bytes are sent as UNSIGNED-PAYLOAD (the signature covers the request,
 * not the body): callers check what they read back against its own hash.
 * @param[in] buf  read only; the caller's, for the duration of the call
 * @return 0 or a code above
 */
int mfs_s3_put(mfs_s3 *s3, const char *bucket, const char *key, const void *buf,
	       size_t len, mfs_errmsg *e);

/**
 * Store bytes [off, off + len) of the open file @p fd as @p key, streamed
 * with pread (never all in memory; @p fd's offset is not used or moved).
 * @return 0; a code above; MFS_E_CORRUPT when the file ends before
 *         off + len (checked with fstat before anything is sent, and
 *         again while sending); -errno of a failing fstat or pread
 */
int mfs_s3_put_file(mfs_s3 *s3, const char *bucket, const char *key, int fd, uint64_t off,
		    uint64_t len, mfs_errmsg *e);

/**
 * Read exactly @p len bytes of @p key from offset @p off into @p dst
 * (a ranged GET).  @p len 0 returns 0 without a request.
 * @param[out] dst  the caller's buffer of at least @p len bytes; on failure
 *                  its contents are unspecified
 * @return 0; MFS_E_CORRUPT when the object ends before off + len (the
 *         message gives its size); MFS_E_NOTFOUND; a code above
 */
int mfs_s3_get_range(mfs_s3 *s3, const char *bucket, const char *key, uint64_t off,
		     void *dst, size_t len, mfs_errmsg *e);

/**
 * Download the whole of @p key into @p fd from file offset 0 (pwrite;
 * a retry starts over), then truncate @p fd to the object's size.  A HEAD
 * goes first: the object's size sets the GET's time limit.
 * @param[out] size  optional: the object's size
 * @return 0; MFS_E_NOTFOUND (the key); -ENXIO (the bucket); MFS_E_CORRUPT
 *         (fewer bytes than the announced length); -errno of a failing
 *         pwrite/ftruncate; a code above
 */
int mfs_s3_get_file(mfs_s3 *s3, const char *bucket, const char *key, int fd,
		    uint64_t *size, mfs_errmsg *e);

/** What HEAD and LIST tell about an object. */
typedef struct mfs_s3_object {
	const char *key; /* list only: valid during the callback; NULL from head */
	uint64_t size;
	char etag[80]; /* without the quotes; may be empty */
	/* unix seconds of LastModified (list) / Last-Modified (head), by the
	 * server's clock; 0 when the server gave none */
	int64_t mtime;
} mfs_s3_object;

/**
 * Size and ETag of @p key.
 * @return 0; MFS_E_NOTFOUND (the key), -ENXIO (the bucket); a code above
 */
int mfs_s3_head(mfs_s3 *s3, const char *bucket, const char *key, mfs_s3_object *info,
		mfs_errmsg *e);

/**
 * Called once per key by mfs_s3_list(), in the order the store lists them
 * (UTF-8 binary order for S3).
 * @param[in] obj  valid only during the call
 * @return 0 to go on; any other value stops the listing, and mfs_s3_list()
 *         returns it
 */
typedef int (*mfs_s3_list_fn)(void *arg, const mfs_s3_object *obj);

/**
 * Every key that starts with @p prefix ("" for the whole bucket), page by
 * page (ListObjectsV2, cfg.list_page keys a page; each page is one request
 * with its own attempts).  Keys are decoded from the XML with every
 * length checked; a page that cannot be read is MFS_E_CORRUPT.
 * @return 0; the callback's nonzero value; -ENXIO; a code above
 */
int mfs_s3_list(mfs_s3 *s3, const char *bucket, const char *prefix, mfs_s3_list_fn fn,
		void *arg, mfs_errmsg *e);

/**
 * Delete @p key.  Deleting a key that does not exist succeeds (S3 answers
 * 204 either way).
 * @return 0; -ENXIO; a code above
 */
int mfs_s3_delete(mfs_s3 *s3, const char *bucket, const char *key, mfs_errmsg *e);

/**
 * The server's clock: HEAD on @p bucket and its Date header (an age taken
 * from LastModified is then measured against the clock that wrote it, not
 * against this machine's).
 * @param[out] now  unix seconds; this machine's time(NULL) when the answer
 *                  has no readable Date
 * @return 0; -ENXIO; -EACCES; the connection codes
 */
int mfs_s3_server_time(mfs_s3 *s3, const char *bucket, int64_t *now, mfs_errmsg *e);

/* ---------------------------------------------------------------- multipart
 *
 * An object of up to 10 000 parts (S3: each part 5 MiB to 5 GiB but the
 * last; so up to 5 TiB), each part its own request with its own attempts.
 * Nothing shows under the key until CompleteMultipartUpload, which replaces
 * any object there atomically; an upload never completed holds storage until
 * it is aborted (mfs_s3_multipart_abort; `modelfs gc --remote` aborts those
 * older than its grace).
 */

/* The most parts S3 takes in one upload, and its smallest part but the last. */
#define MFS_S3_PARTS_MAX     10000
#define MFS_S3_PART_MIN	     ((uint64_t)5 << 20)
#define MFS_S3_UPLOAD_ID_MAX 1024

/** One uploaded part: its number (1..10000) and the ETag the server gave. */
typedef struct mfs_s3_part {
	unsigned number;
	char etag[80];
} mfs_s3_part;

/**
 * Begin a multipart upload of @p key (CreateMultipartUpload).
 * @param[out] upload_id  cap bytes (MFS_S3_UPLOAD_ID_MAX is enough)
 * @return 0; MFS_E_CORRUPT (an answer without an UploadId); a code above
 */
int mfs_s3_multipart_create(mfs_s3 *s3, const char *bucket, const char *key,
			    char *upload_id, size_t cap, mfs_errmsg *e);

/**
 * Upload part @p number of @p upload_id: bytes [off, off + len) of @p fd,
 * streamed with pread as mfs_s3_put_file() does.
 * @param[out] part  its number and ETag, for mfs_s3_multipart_complete()
 * @return 0; -EIO (an answer without an ETag); the codes of mfs_s3_put_file()
 */
int mfs_s3_multipart_upload_part(mfs_s3 *s3, const char *bucket, const char *key,
				 const char *upload_id, unsigned number, int fd,
				 uint64_t off, uint64_t len, mfs_s3_part *part,
				 mfs_errmsg *e);

/**
 * Finish @p upload_id with @p n parts, in increasing part number
 * (CompleteMultipartUpload).  An <Error> in a 200 answer is an error;
 * InternalError / SlowDown there are retried like a 5xx.
 * @param[in] parts  read only, for the duration of the call
 * @return 0; MFS_E_NOTFOUND (no such upload: aborted, or completed by an
 *         earlier attempt whose answer was lost); -EIO; a code above
 */
int mfs_s3_multipart_complete(mfs_s3 *s3, const char *bucket, const char *key,
			      const char *upload_id, const mfs_s3_part *parts, size_t n,
			      mfs_errmsg *e);

/**
 * Abort @p upload_id (AbortMultipartUpload): its parts are freed.  An upload
 * that is already gone succeeds.
 * @return 0 or a code above
 */
int mfs_s3_multipart_abort(mfs_s3 *s3, const char *bucket, const char *key,
			   const char *upload_id, mfs_errmsg *e);

/** An upload in progress, as ListMultipartUploads tells it. */
typedef struct mfs_s3_upload {
	const char *key;       /* valid during the callback */
	const char *upload_id; /* valid during the callback */
	int64_t initiated;     /* unix seconds by the server's clock; 0: not given */
} mfs_s3_upload;

/** Called once per upload by mfs_s3_multipart_list(); nonzero stops it. */
typedef int (*mfs_s3_upload_fn)(void *arg, const mfs_s3_upload *u);

/**
 * Every multipart upload in progress under @p prefix, page by page.
 * @return 0; the callback's nonzero value; MFS_E_CORRUPT (a page that does
 *         not read); -ENOSYS (the server does not list uploads: HTTP 501
 *         NotImplemented); a code above
 */
int mfs_s3_multipart_list(mfs_s3 *s3, const char *bucket, const char *prefix,
			  mfs_s3_upload_fn fn, void *arg, mfs_errmsg *e);

/** How mfs_s3_put_file_multipart() cuts and retries. */
typedef struct mfs_s3_multipart_opts {
	/* bytes per part (the last may be shorter); raised so that the object
	 * fits MFS_S3_PARTS_MAX parts.  0: 64 MiB */
	uint64_t part_size;
	/* tries of one part, each a request with its own attempts (so a part
	 * that failed is sent again, never the whole object); 0: 3 */
	int part_tries;
	/* optional: after each part, on the calling thread */
	void (*part_done)(void *ud, unsigned part, unsigned parts, uint64_t bytes);
	void *ud;
} mfs_s3_multipart_opts;

/**
 * Store bytes [off, off + len) of @p fd as @p key in parts: create, upload
 * each part (a failed one retried up to part_tries), complete.  On any
 * failure the upload is aborted (best effort: an abort that fails too leaves
 * an incomplete upload, invisible, which gc --remote aborts later) and the
 * object that was there before, if any, stays as it was.
 * @param[in] o  NULL: the defaults
 * @return 0; the codes of mfs_s3_put_file() and of the calls above
 */
int mfs_s3_put_file_multipart(mfs_s3 *s3, const char *bucket, const char *key, int fd,
			      uint64_t off, uint64_t len, const mfs_s3_multipart_opts *o,
			      mfs_errmsg *e);

/** Counters of one client, summed over threads (for tests and stats). */
typedef struct mfs_s3_stats {
	uint64_t requests; /* attempts sent, retries included */
	uint64_t retries;  /* attempts after the first */
	uint64_t bytes_up, bytes_down;
} mfs_s3_stats;

/** Copy the client's counters into @p out. */
void mfs_s3_stats_get(mfs_s3 *s3, mfs_s3_stats *out);

#endif
