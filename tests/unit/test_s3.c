/*
 * test_s3.c - the S3 client's parts that need no server: s3:// URLs, endpoint
 * URLs, key joins, the configuration from the environment and the ~/.aws
 * files (precedence, profiles, errors), and the XML of listings and errors
 * (entities, bounds, every truncation of a page).  The requests themselves
 * are tested against a real server by tests/e2e/test_s3_client.py.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3.h"
#include "s3_xml.h"
#include "testhelp.h"

static void test_url_parse(void)
{
	mfs_s3_url u;
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_s3_url_parse("s3://my-bucket/models/llama", &u, &e), 0);
	CHECK(!strcmp(u.bucket, "my-bucket"));
	CHECK(!strcmp(u.prefix, "models/llama"));
	CHECK_EQ_INT(mfs_s3_url_parse("s3://abc", &u, &e), 0);
	CHECK(!strcmp(u.bucket, "abc") && u.prefix[0] == '\0');
	CHECK_EQ_INT(mfs_s3_url_parse("s3://a.b-c/", &u, &e), 0);
	CHECK(!strcmp(u.bucket, "a.b-c") && u.prefix[0] == '\0');
	CHECK_EQ_INT(mfs_s3_url_parse("s3://b12/x//y/", &u, &e), 0);
	CHECK(!strcmp(u.prefix, "x//y/")); /* verbatim */

	static const char *bad[] = {
	    "http://bucket/x",	 "s3:/bucket",	 "s3://",	 "s3://ab",
	    "s3://Bucket",	 "s3://-bucket", "s3://bucket-", "s3://bu_cket",
	    "s3://bucket\x01/x", "s3:///x",	 "bucket/x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		e.msg[0] = '\0';
		int rc = mfs_s3_url_parse(bad[i], &u, &e);
		CHECK_EQ_INT(rc, MFS_E_INVAL);
		CHECK(e.msg[0] != '\0');
	}
	char long_bucket[80];
	memset(long_bucket, 'a', sizeof long_bucket);
	memcpy(long_bucket, "s3://", 5);
	long_bucket[5 + 64] = '\0'; /* 64 characters: one too many */
	CHECK_EQ_INT(mfs_s3_url_parse(long_bucket, &u, &e), MFS_E_INVAL);
	long_bucket[5 + 63] = '\0';
	CHECK_EQ_INT(mfs_s3_url_parse(long_bucket, &u, &e), 0);

	char *longp = malloc(2000);
	REQUIRE(longp);
	snprintf(longp, 2000, "s3://bkt/");
	memset(longp + 9, 'k', 1025);
	longp[9 + 1025] = '\0';
	CHECK_EQ_INT(mfs_s3_url_parse(longp, &u, &e), MFS_E_INVAL);
	longp[9 + 1024] = '\0';
	CHECK_EQ_INT(mfs_s3_url_parse(longp, &u, &e), 0);
	CHECK_EQ_INT(strlen(u.prefix), 1024);
	/* a control character in the prefix is refused, and quoted in the message */
	CHECK_EQ_INT(mfs_s3_url_parse("s3://bkt/a\x1b[31m", &u, &e), MFS_E_INVAL);
	CHECK(strchr(e.msg, '\x1b') == NULL);
	free(longp);
}

static void test_key_join(void)
{
	char k[MFS_S3_KEY_MAX];
	CHECK_EQ_INT(mfs_s3_key_join("", "index", k, sizeof k), 0);
	CHECK(!strcmp(k, "index"));
	CHECK_EQ_INT(mfs_s3_key_join("models", "index", k, sizeof k), 0);
	CHECK(!strcmp(k, "models/index"));
	CHECK_EQ_INT(mfs_s3_key_join("models/", "packs/0a.pack", k, sizeof k), 0);
	CHECK(!strcmp(k, "models/packs/0a.pack"));
	char small[8];
	CHECK_EQ_INT(mfs_s3_key_join("models", "index", small, sizeof small),
		     MFS_E_INVAL);
	CHECK_EQ_INT(mfs_s3_key_join("", "", k, sizeof k), MFS_E_INVAL);
	char big[1100];
	memset(big, 'p', 1020);
	big[1020] = '\0';
	CHECK_EQ_INT(mfs_s3_key_join(big, "abcd", k, sizeof k),
		     MFS_E_INVAL);				   /* 1025 bytes */
	CHECK_EQ_INT(mfs_s3_key_join(big, "abc", k, sizeof k), 0); /* 1024 */
}

static void test_endpoint(void)
{
	char out[512];
	mfs_errmsg e = {0};
	CHECK_EQ_INT(
	    mfs_s3_endpoint_normalize("http://127.0.0.1:8333/", "X", out, sizeof out, &e),
	    0);
	CHECK(!strcmp(out, "http://127.0.0.1:8333"));
	CHECK_EQ_INT(
	    mfs_s3_endpoint_normalize("https://s3.example.com", "X", out, sizeof out, &e),
	    0);
	CHECK(!strcmp(out, "https://s3.example.com"));
	CHECK_EQ_INT(
	    mfs_s3_endpoint_normalize("http://[::1]:9000", "X", out, sizeof out, &e), 0);
	CHECK(!strcmp(out, "http://[::1]:9000"));
	static const char *bad[] = {
	    "127.0.0.1:8333",	  "ftp://host",	       "http://",
	    "http://host:0",	  "http://host:65536", "http://host:x",
	    "http://host/bucket", "http://user@host",  "http://host?x=1",
	    "http://[::1",	  "http://host:80/a/",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		e.msg[0] = '\0';
		CHECK_EQ_INT(mfs_s3_endpoint_normalize(bad[i], "AWS_ENDPOINT_URL", out,
						       sizeof out, &e),
			     MFS_E_INVAL);
		CHECK(strstr(e.msg, "AWS_ENDPOINT_URL") != NULL);
	}
	char tiny[8];
	CHECK_EQ_INT(
	    mfs_s3_endpoint_normalize("http://abcdef", "X", tiny, sizeof tiny, &e),
	    MFS_E_INVAL);
}

/* ---------------------------------------------------------------- config */

static char home[256];

static const char *aws_vars[] = {
    "AWS_PROFILE",	   "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",	   "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",   "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",   "AWS_REGION",
    "AWS_DEFAULT_REGION",  "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS",
};

static void env_clear(void)
{
	for (size_t i = 0; i < sizeof aws_vars / sizeof aws_vars[0]; i++)
		unsetenv(aws_vars[i]);
	setenv("HOME", home, 1);
}

static void write_file(const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/.aws/%s", home, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

static void remove_file(const char *name)
{
	char path[512];
	snprintf(path, sizeof path, "%s/.aws/%s", home, name);
	unlink(path);
}

static void test_config_env(void)
{
	mfs_s3_config c;
	mfs_errmsg e = {0};
	env_clear();
	/* nothing anywhere: an error that says where keys go */
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "AWS_ACCESS_KEY_ID") && strstr(e.msg, "credentials"));

	setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL); /* half a pair */
	CHECK(strstr(e.msg, "AWS_SECRET_ACCESS_KEY") != NULL);
	setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.access_key, "AKENV") && !strcmp(c.secret_key, "SKENV"));
	CHECK(c.session_token[0] == '\0');
	CHECK(!strcmp(c.region, "us-east-1"));
	CHECK(c.endpoint[0] == '\0');
	CHECK_EQ_INT(c.attempts, 3);
	CHECK(strstr(c.key_source, "AWS_ACCESS_KEY_ID") != NULL);

	setenv("AWS_SESSION_TOKEN", "TOKEN", 1);
	setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
	setenv("AWS_MAX_ATTEMPTS", "5", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.session_token, "TOKEN"));
	CHECK(!strcmp(c.region, "eu-west-1"));
	CHECK(!strcmp(c.endpoint, "http://127.0.0.1:9000"));
	CHECK(!strcmp(c.endpoint_source, "AWS_ENDPOINT_URL"));
	CHECK_EQ_INT(c.attempts, 5);
	setenv("AWS_REGION", "ap-south-1", 1); /* over AWS_DEFAULT_REGION */
	setenv("AWS_ENDPOINT_URL_S3", "http://s3.local:8333",
	       1); /* over AWS_ENDPOINT_URL */
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.region, "ap-south-1"));
	CHECK(!strcmp(c.endpoint, "http://s3.local:8333"));
	CHECK(!strcmp(c.endpoint_source, "AWS_ENDPOINT_URL_S3"));

	setenv("AWS_MAX_ATTEMPTS", "0", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "AWS_MAX_ATTEMPTS") != NULL);
	setenv("AWS_MAX_ATTEMPTS", "3", 1);
	setenv("AWS_ENDPOINT_URL_S3", "s3.local:8333", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "AWS_ENDPOINT_URL_S3") != NULL);
	char big[5000];
	memset(big, 't', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	unsetenv("AWS_ENDPOINT_URL_S3");
	setenv("AWS_SESSION_TOKEN", big, 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "AWS_SESSION_TOKEN") != NULL);
	env_clear();
}

static void test_config_files(void)
{
	mfs_s3_config c;
	mfs_errmsg e = {0};
	char dir[300];
	snprintf(dir, sizeof dir, "%s/.aws", home);
	mkdir(dir, 0700);
	env_clear();
	write_file("credentials", "# keys\n"
				  "[default]\n"
				  "aws_access_key_id = AKDEF\n"
				  "aws_secret_access_key=SKDEF\n"
				  "\n"
				  "[work]\n"
				  "  aws_access_key_id = AKWORK  \n"
				  "aws_secret_access_key = SKWORK\n"
				  "aws_session_token = TKWORK\n");
	write_file("config", "[default]\n"
			     "region = eu-central-1\n"
			     "endpoint_url = http://general:1111\n"
			     "s3 =\n"
			     "  endpoint_url = http://s3only:2222/\n"
			     "  addressing_style = path\n"
			     "max_attempts = 7\n"
			     "[profile work]\n"
			     "region = us-west-2\n"
			     "endpoint_url = http://work:3333\n"
			     "[profile cfgkeys]\n"
			     "aws_access_key_id = AKCFG\n"
			     "aws_secret_access_key = SKCFG\n");
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.access_key, "AKDEF") && !strcmp(c.secret_key, "SKDEF"));
	CHECK(!strcmp(c.region, "eu-central-1"));
	CHECK(!strcmp(c.endpoint, "http://s3only:2222")); /* the s3 sub-section wins */
	CHECK(strstr(c.endpoint_source, "line 5") != NULL);
	CHECK_EQ_INT(c.attempts, 7);
	CHECK(strstr(c.key_source, "credentials") && strstr(c.key_source, "[default]"));

	/* env keys over the files; env region and endpoint over the profile's */
	setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
	setenv("AWS_REGION", "sa-east-1", 1);
	setenv("AWS_ENDPOINT_URL", "http://envhost:4444", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.access_key, "AKENV"));
	CHECK(!strcmp(c.region, "sa-east-1"));
	CHECK(!strcmp(c.endpoint, "http://envhost:4444"));
	env_clear();

	/* a named profile: [work] in credentials, [profile work] in config */
	setenv("AWS_PROFILE", "work", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.access_key, "AKWORK") && !strcmp(c.secret_key, "SKWORK"));
	CHECK(!strcmp(c.session_token, "TKWORK"));
	CHECK(!strcmp(c.region, "us-west-2"));
	CHECK(!strcmp(c.endpoint, "http://work:3333"));
	CHECK(!strcmp(c.profile, "work"));
	CHECK_EQ_INT(c.attempts, 3); /* [default]'s max_attempts is not work's */

	/* keys in the config file only */
	setenv("AWS_PROFILE", "cfgkeys", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.access_key, "AKCFG"));
	CHECK(strstr(c.key_source, "config") != NULL);
	CHECK(!strcmp(c.region, "us-east-1"));

	/* a profile neither file has */
	setenv("AWS_PROFILE", "nosuch", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "nosuch") && strstr(e.msg, "AWS_PROFILE"));
	unsetenv("AWS_PROFILE");
	setenv("AWS_DEFAULT_PROFILE", "work", 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.access_key, "AKWORK"));
	env_clear();

	/* AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE point elsewhere */
	char other[400];
	snprintf(other, sizeof other, "%s/.aws/other-creds", home);
	write_file("other-creds",
		   "[default]\naws_access_key_id=AKOTHER\naws_secret_access_key=SK\n");
	setenv("AWS_SHARED_CREDENTIALS_FILE", other, 1);
	snprintf(other, sizeof other, "%s/.aws/missing-config", home);
	setenv("AWS_CONFIG_FILE", other, 1);
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), 0);
	CHECK(!strcmp(c.access_key, "AKOTHER"));
	CHECK(c.endpoint[0] == '\0'); /* the missing config file is fine */
	CHECK(!strcmp(c.region, "us-east-1"));
	env_clear();

	/* malformed files, each named with its line */
	write_file("config", "[default]\nregion = x\nthis line has no equals sign\n");
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_FORMAT);
	CHECK(strstr(e.msg, "config line 3") != NULL);
	write_file("config", "[default\n");
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_FORMAT);
	write_file("config", "[default]\nendpoint_url = localhost:9000\n");
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL);
	CHECK(strstr(e.msg, "line 2") != NULL);
	write_file("config", "[default]\nmax_attempts = lots\n");
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL);
	/* an unreadable file (a folder) is an error, not "no file" */
	remove_file("config");
	snprintf(other, sizeof other, "%s/.aws/config", home);
	mkdir(other, 0700);
	int rc = mfs_s3_config_load(&c, &e);
	CHECK(rc < 0 && rc != MFS_E_INVAL);
	rmdir(other);
	remove_file("credentials");
	CHECK_EQ_INT(mfs_s3_config_load(&c, &e), MFS_E_INVAL); /* no keys left */
	remove_file("other-creds");
	env_clear();
}

static void test_open_checks(void)
{
	mfs_s3_config c;
	mfs_s3 *s3 = (mfs_s3 *)1;
	mfs_errmsg e = {0};
	mfs_s3_config_defaults(&c);
	CHECK_EQ_INT(mfs_s3_open(&c, &s3, &e), MFS_E_INVAL); /* no keys */
	CHECK(s3 == NULL);
	snprintf(c.access_key, sizeof c.access_key, "AK");
	snprintf(c.secret_key, sizeof c.secret_key, "SK");
	c.attempts = 0;
	CHECK_EQ_INT(mfs_s3_open(&c, &s3, &e), MFS_E_INVAL);
	c.attempts = 3;
	c.list_page = 1001;
	CHECK_EQ_INT(mfs_s3_open(&c, &s3, &e), MFS_E_INVAL);
	c.list_page = 10;
	snprintf(c.endpoint, sizeof c.endpoint, "http://127.0.0.1:1/");
	CHECK_EQ_INT(mfs_s3_open(&c, &s3, &e), 0);
	REQUIRE(s3);
	/* names are checked before anything is sent */
	char buf[4];
	CHECK_EQ_INT(mfs_s3_get_range(s3, "ab", "k", 0, buf, 4, &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_s3_get_range(s3, "bucket", "", 0, buf, 4, &e), MFS_E_INVAL);
	CHECK_EQ_INT(mfs_s3_get_range(s3, "bucket", "k", 0, buf, 0, &e),
		     0); /* nothing to do */
	mfs_s3_stats st;
	mfs_s3_stats_get(s3, &st);
	CHECK_EQ_INT(st.requests, 0);
	mfs_s3_close(s3);
	mfs_s3_close(NULL);
}

/* ---------------------------------------------------------------- XML */

struct seen {
	int n;
	char keys[8][MFS_S3_KEY_MAX];
	uint64_t sizes[8];
	char etags[8][80];
	int stop_at;
};

static int collect(void *arg, const mfs_s3_object *o)
{
	struct seen *s = arg;
	if (s->n < 8) {
		snprintf(s->keys[s->n], sizeof s->keys[0], "%s", o->key);
		s->sizes[s->n] = o->size;
		snprintf(s->etags[s->n], sizeof s->etags[0], "%s", o->etag);
	}
	s->n++;
	return s->stop_at && s->n == s->stop_at ? 42 : 0;
}

static const char page1[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>bkt</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>"
    "<IsTruncated>true</IsTruncated>"
    "<Contents><Key>p/a &amp; b&lt;c&gt;</Key><ETag>&#34;abc123&#34;</ETag>"
    "<Size>12</Size></Contents>"
    "<Contents><Key>p/caf&#xE9;&#x1F600;</Key><Size>0</Size><ETag>&quot;e&quot;</ETag>"
    "</Contents>"
    "<Contents>\n  <Key>p/KeyCount</Key>\n  "
    "<Size>18446744073709551615</Size>\n</Contents>"
    "<NextContinuationToken>tok/+=&amp;1</NextContinuationToken>"
    "</ListBucketResult>";

static void test_list_page(void)
{
	struct seen s = {0};
	int trunc = -1;
	char tok[64];
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_s3_list_page_parse(page1, strlen(page1), collect, &s, &trunc,
					    tok, sizeof tok, &e),
		     0);
	CHECK_EQ_INT(s.n, 3);
	CHECK(!strcmp(s.keys[0], "p/a & b<c>"));
	CHECK_EQ_INT(s.sizes[0], 12);
	CHECK(!strcmp(s.etags[0], "abc123"));
	CHECK(!strcmp(s.keys[1], "p/caf\xc3\xa9\xf0\x9f\x98\x80"));
	CHECK(!strcmp(s.etags[1], "e"));
	CHECK(!strcmp(s.keys[2], "p/KeyCount"));
	CHECK(s.sizes[2] == UINT64_MAX);
	CHECK(s.etags[2][0] == '\0');
	CHECK_EQ_INT(trunc, 1);
	CHECK(!strcmp(tok, "tok/+=&1"));

	/* the callback stops the listing with its own value */
	struct seen s2 = {.stop_at = 2};
	CHECK_EQ_INT(mfs_s3_list_page_parse(page1, strlen(page1), collect, &s2, &trunc,
					    tok, sizeof tok, &e),
		     42);
	CHECK_EQ_INT(s2.n, 2);

	/* an empty last page */
	const char *empty =
	    "<ListBucketResult><Name>b</Name><Prefix/><KeyCount>0</KeyCount>"
	    "<IsTruncated>false</IsTruncated></ListBucketResult>";
	struct seen s3 = {0};
	CHECK_EQ_INT(mfs_s3_list_page_parse(empty, strlen(empty), collect, &s3, &trunc,
					    tok, sizeof tok, &e),
		     0);
	CHECK_EQ_INT(s3.n, 0);
	CHECK_EQ_INT(trunc, 0);

	/* pages that are wrong in one way each */
	static const char *bad[] = {
	    "<Error><Code>x</Code></Error>",
	    "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
	    "<ListBucketResult><Contents><Key></Key><Size>1</Size></Contents></"
	    "ListBucketResult>",
	    "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></"
	    "ListBucketResult>",
	    "<ListBucketResult><Contents><Key>k</Key><Size>18446744073709551616</Size>"
	    "</Contents></ListBucketResult>",
	    "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
	    "<ListBucketResult><Contents><Key>a&bogus;</Key><Size>1</Size></Contents>"
	    "</ListBucketResult>",
	    "<ListBucketResult><Contents><Key>a&#0;</Key><Size>1</Size></Contents>"
	    "</ListBucketResult>",
	    "<ListBucketResult><Contents><Key>a&#x110000;</Key><Size>1</Size></Contents>"
	    "</ListBucketResult>",
	    "<ListBucketResult><Contents><Key>a&#xD800;</Key><Size>1</Size></Contents>"
	    "</ListBucketResult>",
	    "<ListBucketResult><Contents><Key>a&amp</Key><Size>1</Size></Contents>"
	    "</ListBucketResult>",
	    "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
	    "<ListBucketResult><Contents><Key>k</Key><Size>1</Size>",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct seen sb = {0};
		e.msg[0] = '\0';
		int rc = mfs_s3_list_page_parse(bad[i], strlen(bad[i]), collect, &sb,
						&trunc, tok, sizeof tok, &e);
		if (rc != MFS_E_CORRUPT)
			fprintf(stderr, "bad page %zu: rc %d\n", i, rc);
		CHECK_EQ_INT(rc, MFS_E_CORRUPT);
		CHECK(e.msg[0] != '\0');
	}

	/* a key over 1024 bytes */
	size_t cap = 1200 + 200;
	char *big = malloc(cap);
	REQUIRE(big);
	int n = snprintf(big, cap, "<ListBucketResult><Contents><Key>");
	memset(big + n, 'k', 1025);
	n += 1025;
	snprintf(big + n, cap - (size_t)n,
		 "</Key><Size>1</Size></Contents></ListBucketResult>");
	struct seen sk = {0};
	CHECK_EQ_INT(mfs_s3_list_page_parse(big, strlen(big), collect, &sk, &trunc, tok,
					    sizeof tok, &e),
		     MFS_E_CORRUPT);
	CHECK_EQ_INT(sk.n, 0);
	/* exactly 1024 is fine */
	n = snprintf(big, cap, "<ListBucketResult><Contents><Key>");
	memset(big + n, 'k', 1024);
	n += 1024;
	snprintf(big + n, cap - (size_t)n,
		 "</Key><Size>1</Size></Contents></ListBucketResult>");
	CHECK_EQ_INT(mfs_s3_list_page_parse(big, strlen(big), collect, &sk, &trunc, tok,
					    sizeof tok, &e),
		     0);
	CHECK_EQ_INT(sk.n, 1);
	free(big);

	/* a token longer than the caller's buffer */
	char small[4];
	struct seen st = {0};
	CHECK_EQ_INT(mfs_s3_list_page_parse(page1, strlen(page1), collect, &st, &trunc,
					    small, sizeof small, &e),
		     MFS_E_CORRUPT);

	/* every prefix of a good page, each in a buffer of exactly its length
	 * (ASan sees a read past it): success or MFS_E_CORRUPT, never more
	 * entries than the full page has */
	size_t len = strlen(page1);
	int ok = 0;
	for (size_t cut = 0; cut < len; cut++) {
		char *p = malloc(cut ? cut : 1);
		REQUIRE(p);
		memcpy(p, page1, cut);
		struct seen sc = {0};
		int rc = mfs_s3_list_page_parse(p, cut, collect, &sc, &trunc, tok,
						sizeof tok, &e);
		CHECK(rc == 0 || rc == MFS_E_CORRUPT);
		CHECK(sc.n <= 3);
		ok += rc == 0;
		free(p);
	}
	CHECK_EQ_INT(ok, 0); /* no cut page reads as whole: the root never closes */

	/* and cut inside, the root closed again: entries cut in two are
	 * errors or left out, never read past */
	static const char tail[] = "</ListBucketResult>";
	for (size_t cut = 0; cut < len; cut++) {
		char *p = malloc(cut + sizeof tail - 1);
		REQUIRE(p);
		memcpy(p, page1, cut);
		memcpy(p + cut, tail, sizeof tail - 1);
		struct seen sc = {0};
		int rc = mfs_s3_list_page_parse(p, cut + sizeof tail - 1, collect, &sc,
						&trunc, tok, sizeof tok, &e);
		CHECK(rc == 0 || rc == MFS_E_CORRUPT);
		CHECK(sc.n <= 3);
		free(p);
	}
}

static void test_xml_text_and_errors(void)
{
	char out[16];
	size_t n;
	const char *t = "a&lt;&#65;&#x42;";
	CHECK_EQ_INT(mfs_xml_text(t, t + strlen(t), out, sizeof out, &n), 0);
	CHECK(!strcmp(out, "a<AB"));
	CHECK_EQ_INT(n, 4);
	const char *l = "0123456789abcdef"; /* 16 bytes do not fit 15 + NUL */
	CHECK_EQ_INT(mfs_xml_text(l, l + 16, out, sizeof out, &n), MFS_E_TOOBIG);
	CHECK_EQ_INT(mfs_xml_text(l, l + 15, out, sizeof out, &n), 0);
	const char *u = "&#x20AC;&#x20AC;&#x20AC;&#x20AC;&#x20AC;&#x20AC;"; /* 18 bytes */
	CHECK_EQ_INT(mfs_xml_text(u, u + strlen(u), out, sizeof out, &n), MFS_E_TOOBIG);
	const char *z = "a\0b";
	CHECK_EQ_INT(mfs_xml_text(z, z + 3, out, sizeof out, &n), MFS_E_CORRUPT);

	char code[32], msg[64];
	const char *err =
	    "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>"
	    "<Message>The bucket &quot;x&quot; does not exist</Message></Error>";
	mfs_s3_error_parse(err, strlen(err), code, sizeof code, msg, sizeof msg);
	CHECK(!strcmp(code, "NoSuchBucket"));
	CHECK(!strcmp(msg, "The bucket \"x\" does not exist"));
	mfs_s3_error_parse("", 0, code, sizeof code, msg, sizeof msg);
	CHECK(code[0] == '\0' && msg[0] == '\0');
	mfs_s3_error_parse("<html>bad gateway</html>", 24, code, sizeof code, msg,
			   sizeof msg);
	CHECK(code[0] == '\0' && msg[0] == '\0');
	/* a code too long for the buffer is dropped, not cut */
	const char *lc =
	    "<Error><Code>AVeryLongErrorCodeThatDoesNotFitAnywhere</Code></Error>";
	mfs_s3_error_parse(lc, strlen(lc), code, sizeof code, msg, sizeof msg);
	CHECK(code[0] == '\0');

	/* element search: a longer name with the same start is skipped */
	const char *doc = "<KeyCount>3</KeyCount><Key>k</Key>";
	const char *in, *in_end, *after;
	CHECK_EQ_INT(mfs_xml_elem(doc, doc + strlen(doc), "Key", &in, &in_end, &after),
		     0);
	CHECK(in_end - in == 1 && *in == 'k');
	CHECK_EQ_INT(mfs_xml_elem(doc, doc + strlen(doc), "Size", &in, &in_end, &after),
		     MFS_E_NOTFOUND);
	const char *open = "<Key>never closed";
	CHECK_EQ_INT(mfs_xml_elem(open, open + strlen(open), "Key", &in, &in_end, &after),
		     MFS_E_CORRUPT);
	const char *edge = "<Key";
	CHECK_EQ_INT(mfs_xml_elem(edge, edge + 4, "Key", &in, &in_end, &after),
		     MFS_E_CORRUPT);
}

static void test_times(void)
{
	int64_t t = -1;
	/* date -u -d 2026-12-02T00:50:48Z +%s */
	const char *a = "2026-12-02T00:50:48.000Z";
	CHECK_EQ_INT(mfs_s3_time_parse(a, a + strlen(a), &t), 0);
	CHECK_EQ_INT(t, 1796172648);
	const char *b = " 1970-01-01T00:00:00Z\n";
	CHECK_EQ_INT(mfs_s3_time_parse(b, b + strlen(b), &t), 0);
	CHECK_EQ_INT(t, 0);
	const char *c = "2024-02-29T23:59:59+01:00"; /* a leap day, an offset */
	CHECK_EQ_INT(mfs_s3_time_parse(c, c + strlen(c), &t), 0);
	CHECK_EQ_INT(t, 1709251199 - 3600);
	const char *d = "2000-03-01T00:00:00-00:30";
	CHECK_EQ_INT(mfs_s3_time_parse(d, d + strlen(d), &t), 0);
	CHECK_EQ_INT(t, 951868800 + 1800);
	static const char *bad[] = {
	    "",
	    "2026-12-02",
	    "2026-12-02T00:50:48",  /* no zone */
	    "2026-13-02T00:50:48Z", /* month 13 */
	    "2025-02-29T00:00:00Z", /* not a leap year */
	    "2026-12-02T24:00:00Z",
	    "2026-12-02T00:60:00Z",
	    "1969-12-31T23:59:59Z",
	    "2026-12-02T00:50:48.Z",
	    "2026-12-02T00:50:48ZZ",
	    "2026-12-02T00:50:48+0100",
	    "2026-12-02 00:50:48Z",
	    "2026-1a-02T00:50:48Z",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		t = 12345;
		CHECK_EQ_INT(mfs_s3_time_parse(bad[i], bad[i] + strlen(bad[i]), &t),
			     MFS_E_CORRUPT);
		CHECK_EQ_INT(t, 12345);
	}
	/* every prefix, in a buffer of exactly its length: never read past */
	size_t n = strlen(a);
	for (size_t cut = 0; cut < n; cut++) {
		char *p = malloc(cut ? cut : 1);
		REQUIRE(p);
		memcpy(p, a, cut);
		CHECK_EQ_INT(mfs_s3_time_parse(p, p + cut, &t), MFS_E_CORRUPT);
		free(p);
	}

	CHECK_EQ_INT(mfs_http_date_parse("Wed, 02 Dec 2026 00:50:48 GMT\r\n", &t), 0);
	CHECK_EQ_INT(t, 1796172648);
	CHECK_EQ_INT(mfs_http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT", &t), 0);
	CHECK_EQ_INT(t, 0);
	static const char *badd[] = {
	    "",
	    "Wed, 02 Dec 2026 00:50:48",
	    "Wed, 02 Dek 2026 00:50:48 GMT",
	    "Wed, 31 Nov 2026 00:50:48 GMT",
	    "Wed 02 Dec 2026 00:50:48 GMT ",
	    "Wed, 02 Dec 2026 00:50:48 UTC",
	    "Wednesday, 02-Dec-26 00:50:48 GMT",
	};
	for (size_t i = 0; i < sizeof badd / sizeof badd[0]; i++)
		CHECK_EQ_INT(mfs_http_date_parse(badd[i], &t), MFS_E_CORRUPT);
}

static const char page_lm[] =
    "<ListBucketResult><IsTruncated>false</IsTruncated>"
    "<Contents><Key>p/a</Key><LastModified>2026-12-02T00:50:48.000Z</LastModified>"
    "<Size>3</Size></Contents>"
    "<Contents><Key>p/b</Key><Size>4</Size></Contents>"
    "</ListBucketResult>";

struct mtimes {
	int n;
	int64_t t[4];
};

static int collect_mtime(void *arg, const mfs_s3_object *o)
{
	struct mtimes *m = arg;
	if (m->n < 4)
		m->t[m->n] = o->mtime;
	m->n++;
	return 0;
}

static void test_list_last_modified(void)
{
	struct mtimes m = {0};
	int trunc = -1;
	char tok[64];
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_s3_list_page_parse(page_lm, strlen(page_lm), collect_mtime, &m,
					    &trunc, tok, sizeof tok, &e),
		     0);
	CHECK_EQ_INT(m.n, 2);
	CHECK_EQ_INT(m.t[0], 1796172648);
	CHECK_EQ_INT(m.t[1], 0); /* not given */
	const char *bad = "<ListBucketResult><Contents><Key>k</Key><Size>1</Size>"
			  "<LastModified>yesterday</LastModified></Contents>"
			  "</ListBucketResult>";
	struct mtimes mb = {0};
	e.msg[0] = '\0';
	CHECK_EQ_INT(mfs_s3_list_page_parse(bad, strlen(bad), collect_mtime, &mb, &trunc,
					    tok, sizeof tok, &e),
		     MFS_E_CORRUPT);
	CHECK(strstr(e.msg, "LastModified") != NULL);
	CHECK_EQ_INT(mb.n, 0);
}

static void test_multipart_answers(void)
{
	char id[64];
	mfs_errmsg e = {0};
	const char *init =
	    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult "
	    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket>"
	    "<Key>p/k</Key><UploadId>VXBsb2Fk&amp;SUQ=</UploadId>"
	    "</InitiateMultipartUploadResult>";
	CHECK_EQ_INT(mfs_s3_upload_id_parse(init, strlen(init), id, sizeof id, &e), 0);
	CHECK(!strcmp(id, "VXBsb2Fk&SUQ="));
	static const char *bad[] = {
	    "",
	    "<Error><Code>AccessDenied</Code></Error>",
	    "<InitiateMultipartUploadResult><Key>k</Key></InitiateMultipartUploadResult>",
	    "<InitiateMultipartUploadResult><UploadId></UploadId>"
	    "</InitiateMultipartUploadResult>",
	    "<InitiateMultipartUploadResult><UploadId>a&bad;</UploadId>"
	    "</InitiateMultipartUploadResult>",
	    "<InitiateMultipartUploadResult><UploadId>"
	    "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "</UploadId></InitiateMultipartUploadResult>", /* longer than id[] */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		e.msg[0] = '\0';
		CHECK_EQ_INT(
		    mfs_s3_upload_id_parse(bad[i], strlen(bad[i]), id, sizeof id, &e),
		    MFS_E_CORRUPT);
		CHECK(e.msg[0] != '\0' && id[0] == '\0');
	}
	size_t n = strlen(init);
	for (size_t cut = 0; cut < n; cut++) {
		char *p = malloc(cut ? cut : 1);
		REQUIRE(p);
		memcpy(p, init, cut);
		CHECK_EQ_INT(mfs_s3_upload_id_parse(p, cut, id, sizeof id, &e),
			     MFS_E_CORRUPT);
		free(p);
	}

	char code[32], msg[64];
	const char *done =
	    "<CompleteMultipartUploadResult><Location>x</Location><Bucket>b"
	    "</Bucket><Key>k</Key><ETag>\"abc-3\"</ETag>"
	    "</CompleteMultipartUploadResult>";
	CHECK_EQ_INT(
	    mfs_s3_complete_parse(done, strlen(done), code, sizeof code, msg, sizeof msg),
	    0);
	/* a 200 whose body is an error */
	const char *err200 =
	    "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code>"
	    "<Message>We encountered an internal error.</Message></Error>";
	CHECK_EQ_INT(mfs_s3_complete_parse(err200, strlen(err200), code, sizeof code, msg,
					   sizeof msg),
		     -EIO);
	CHECK(!strcmp(code, "InternalError"));
	CHECK(!strcmp(msg, "We encountered an internal error."));
	CHECK_EQ_INT(mfs_s3_complete_parse("", 0, code, sizeof code, msg, sizeof msg),
		     MFS_E_CORRUPT);
	CHECK_EQ_INT(
	    mfs_s3_complete_parse("<html/>", 7, code, sizeof code, msg, sizeof msg),
	    MFS_E_CORRUPT);
	n = strlen(done);
	for (size_t cut = 0; cut < n; cut++) {
		char *p = malloc(cut ? cut : 1);
		REQUIRE(p);
		memcpy(p, done, cut);
		CHECK_EQ_INT(
		    mfs_s3_complete_parse(p, cut, code, sizeof code, msg, sizeof msg),
		    MFS_E_CORRUPT);
		free(p);
	}
}

struct ups {
	int n, stop_at;
	char keys[4][32], ids[4][32];
	int64_t init[4];
};

static int collect_up(void *arg, const mfs_s3_upload *u)
{
	struct ups *s = arg;
	if (s->n < 4) {
		snprintf(s->keys[s->n], sizeof s->keys[0], "%s", u->key);
		snprintf(s->ids[s->n], sizeof s->ids[0], "%s", u->upload_id);
		s->init[s->n] = u->initiated;
	}
	s->n++;
	return s->stop_at && s->n == s->stop_at ? 42 : 0;
}

static const char ups_page[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
    "<NextKeyMarker>p/packs/b&amp;.pack</NextKeyMarker>"
    "<NextUploadIdMarker>id-2</NextUploadIdMarker><MaxUploads>2</MaxUploads>"
    "<IsTruncated>true</IsTruncated>"
    "<Upload><Key>p/packs/a.pack</Key><UploadId>id-1</UploadId>"
    "<Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass>"
    "<Initiated>2026-12-02T00:50:48.000Z</Initiated></Upload>"
    "<Upload><Key>p/packs/b&amp;.pack</Key><UploadId>id-2</UploadId></Upload>"
    "</ListMultipartUploadsResult>";

static void test_uploads_page(void)
{
	struct ups s = {0};
	int trunc = -1;
	char km[64], im[64];
	mfs_errmsg e = {0};
	CHECK_EQ_INT(mfs_s3_uploads_page_parse(ups_page, strlen(ups_page), collect_up, &s,
					       &trunc, km, sizeof km, im, sizeof im, &e),
		     0);
	CHECK_EQ_INT(s.n, 2);
	CHECK(!strcmp(s.keys[0], "p/packs/a.pack") && !strcmp(s.ids[0], "id-1"));
	CHECK_EQ_INT(s.init[0], 1796172648);
	CHECK(!strcmp(s.keys[1], "p/packs/b&.pack") && !strcmp(s.ids[1], "id-2"));
	CHECK_EQ_INT(s.init[1], 0);
	CHECK_EQ_INT(trunc, 1);
	CHECK(!strcmp(km, "p/packs/b&.pack") && !strcmp(im, "id-2"));

	struct ups s2 = {.stop_at = 1};
	CHECK_EQ_INT(mfs_s3_uploads_page_parse(ups_page, strlen(ups_page), collect_up,
					       &s2, &trunc, km, sizeof km, im, sizeof im,
					       &e),
		     42);
	CHECK_EQ_INT(s2.n, 1);

	/* no NextKeyMarker / NextUploadIdMarker (SeaweedFS): the last upload's */
	const char *nomark = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
			     "<Upload><Key>k1</Key><UploadId>i1</UploadId></Upload>"
			     "<Upload><Key>k2</Key><UploadId>i2</UploadId></Upload>"
			     "</ListMultipartUploadsResult>";
	struct ups sn = {0};
	CHECK_EQ_INT(mfs_s3_uploads_page_parse(nomark, strlen(nomark), collect_up, &sn,
					       &trunc, km, sizeof km, im, sizeof im, &e),
		     0);
	CHECK_EQ_INT(sn.n, 2);
	CHECK(trunc == 1 && !strcmp(km, "k2") && !strcmp(im, "i2"));

	const char *empty =
	    "<ListMultipartUploadsResult><Bucket>b</Bucket>"
	    "<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
	struct ups s3 = {0};
	CHECK_EQ_INT(mfs_s3_uploads_page_parse(empty, strlen(empty), collect_up, &s3,
					       &trunc, km, sizeof km, im, sizeof im, &e),
		     0);
	CHECK_EQ_INT(s3.n, 0);
	CHECK_EQ_INT(trunc, 0);

	static const char *bad[] = {
	    "<ListBucketResult></ListBucketResult>",
	    "<ListMultipartUploadsResult><Upload><UploadId>i</UploadId></Upload>"
	    "</ListMultipartUploadsResult>",
	    "<ListMultipartUploadsResult><Upload><Key>k</Key></Upload>"
	    "</ListMultipartUploadsResult>",
	    "<ListMultipartUploadsResult><Upload><Key>k</Key><UploadId></UploadId>"
	    "</Upload></ListMultipartUploadsResult>",
	    "<ListMultipartUploadsResult><Upload><Key>k</Key><UploadId>i</UploadId>"
	    "<Initiated>soon</Initiated></Upload></ListMultipartUploadsResult>",
	    "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
	    "</ListMultipartUploadsResult>",
	    "<ListMultipartUploadsResult><Upload><Key>k</Key>",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct ups sb = {0};
		e.msg[0] = '\0';
		int rc =
		    mfs_s3_uploads_page_parse(bad[i], strlen(bad[i]), collect_up, &sb,
					      &trunc, km, sizeof km, im, sizeof im, &e);
		if (rc != MFS_E_CORRUPT)
			fprintf(stderr, "bad upload page %zu: rc %d\n", i, rc);
		CHECK_EQ_INT(rc, MFS_E_CORRUPT);
		CHECK(e.msg[0] != '\0');
	}

	/* every truncation, alone and with the root closed again */
	size_t len = strlen(ups_page);
	static const char tail[] = "</ListMultipartUploadsResult>";
	int ok = 0;
	for (size_t cut = 0; cut < len; cut++) {
		char *p = malloc(cut + sizeof tail);
		REQUIRE(p);
		memcpy(p, ups_page, cut);
		struct ups sc = {0};
		int rc = mfs_s3_uploads_page_parse(p, cut, collect_up, &sc, &trunc, km,
						   sizeof km, im, sizeof im, &e);
		CHECK(rc == 0 || rc == MFS_E_CORRUPT);
		CHECK(sc.n <= 2);
		ok += rc == 0;
		free(p);
		p = malloc(cut + sizeof tail - 1);
		REQUIRE(p);
		memcpy(p, ups_page, cut);
		memcpy(p + cut, tail, sizeof tail - 1);
		struct ups sd = {0};
		rc = mfs_s3_uploads_page_parse(p, cut + sizeof tail - 1, collect_up, &sd,
					       &trunc, km, sizeof km, im, sizeof im, &e);
		CHECK(rc == 0 || rc == MFS_E_CORRUPT);
		CHECK(sd.n <= 2);
		free(p);
	}
	CHECK_EQ_INT(ok, 0);
}

int main(void)
{
	snprintf(home, sizeof home, "%s/mfs-test-s3-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(home)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_url_parse);
	RUN(test_key_join);
	RUN(test_endpoint);
	RUN(test_config_env);
	RUN(test_config_files);
	RUN(test_open_checks);
	RUN(test_list_page);
	RUN(test_xml_text_and_errors);
	RUN(test_times);
	RUN(test_list_last_modified);
	RUN(test_multipart_answers);
	RUN(test_uploads_page);
	char aws[300];
	snprintf(aws, sizeof aws, "%s/.aws", home);
	rmdir(aws);
	rmdir(home);
	return test_report();
}
