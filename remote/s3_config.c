/* s3_config.c - the client's configuration: environment, ~/.aws files, URLs. */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void mfs_s3_config_defaults(mfs_s3_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	snprintf(cfg->region, sizeof cfg->region, "us-east-1");
	snprintf(cfg->profile, sizeof cfg->profile, "default");
	cfg->connect_timeout_ms = 3000;
	cfg->timeout_ms = 10000;
	cfg->min_rate = 1 << 20;
	cfg->stall_ms = 5000;
	cfg->attempts = 3;
	cfg->backoff_ms = 200;
	cfg->list_page = 1000;
}

/* ---------------------------------------------------------------- URLs */

int mfs_s3_endpoint_normalize(const char *url, const char *what, char *out, size_t cap,
			      mfs_errmsg *e)
{
	char q[160];
	mfs_str_quote(url, 100, q, sizeof q);
	const char *p;
	if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return mfs_err(e, MFS_E_INVAL,
			       "%s \"%s\" is not an http:// or https:// URL (write e.g. "
			       "http://127.0.0.1:8333)",
			       what, q);
	const char *host = p;
	if (*p == '[') { /* [IPv6] */
		const char *rb = strchr(p, ']');
		if (!rb)
			return mfs_err(e, MFS_E_INVAL,
				       "%s \"%s\": an IPv6 address without ']'", what, q);
		p = rb + 1;
	} else {
		while (*p && (isalnum((unsigned char)*p) || *p == '.' || *p == '-' ||
			      *p == '_'))
			p++;
	}
	if (p == host)
		return mfs_err(e, MFS_E_INVAL, "%s \"%s\" names no host", what, q);
	if (*p == ':') {
		const char *d = ++p;
		long port = 0;
		while (*p >= '0' && *p <= '9' && port <= 65535)
			port = port * 10 + (*p++ - '0');
		if (p == d || port < 1 || port > 65535)
			return mfs_err(e, MFS_E_INVAL, "%s \"%s\" has a bad port", what,
				       q);
	}
	if (*p == '/' && p[1] == '\0')
		p++;
	if (*p)
		return mfs_err(
		    e, MFS_E_INVAL,
		    "%s \"%s\": only scheme://host[:port] is supported (no path, "
		    "query or user name; the bucket comes from the s3:// URL)",
		    what, q);
	size_t n = (size_t)(p - url);
	if (n && url[n - 1] == '/')
		n--;
	if (n + 1 > cap)
		return mfs_err(e, MFS_E_INVAL, "%s \"%s\" is too long", what, q);
	memcpy(out, url, n);
	out[n] = '\0';
	return 0;
}

static int bucket_valid(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && c != '.' && c != '-')
			return 0;
		if ((i == 0 || i == n - 1) && !alnum)
			return 0;
	}
	return 1;
}

int mfs_s3_url_parse(const char *url, mfs_s3_url *out, mfs_errmsg *e)
{
	char q[160];
	mfs_str_quote(url, 100, q, sizeof q);
	memset(out, 0, sizeof *out);
	if (strncmp(url, "s3://", 5) != 0)
		return mfs_err(e, MFS_E_INVAL,
			       "\"%s\" is not an s3:// URL (write s3://BUCKET or "
			       "s3://BUCKET/PREFIX)",
			       q);
	const char *b = url + 5, *slash = strchr(b, '/');
	size_t bn = slash ? (size_t)(slash - b) : strlen(b);
	if (!bucket_valid(b, bn))
		return mfs_err(
		    e, MFS_E_INVAL,
		    "\"%s\": the bucket name must be 3 to 63 characters of a-z, 0-9, '.' "
		    "and '-', beginning and ending with a letter or digit",
		    q);
	memcpy(out->bucket, b, bn);
	out->bucket[bn] = '\0';
	const char *pre = slash ? slash + 1 : "";
	size_t pn = strlen(pre);
	if (pn >= MFS_S3_KEY_MAX)
		return mfs_err(e, MFS_E_INVAL, "\"%s\": the prefix is over 1024 bytes",
			       q);
	for (size_t i = 0; i < pn; i++)
		if ((unsigned char)pre[i] < 0x20 || pre[i] == 0x7f)
			return mfs_err(e, MFS_E_INVAL,
				       "\"%s\": the prefix holds a control character", q);
	memcpy(out->prefix, pre, pn + 1);
	return 0;
}

int mfs_s3_key_join(const char *prefix, const char *name, char *out, size_t cap)
{
	size_t pn = strlen(prefix), nn = strlen(name);
	int sep = pn && prefix[pn - 1] != '/';
	size_t n = pn + (size_t)sep + nn;
	if (n >= MFS_S3_KEY_MAX || n + 1 > cap || n == 0)
		return MFS_E_INVAL;
	memcpy(out, prefix, pn);
	if (sep)
		out[pn] = '/';
	memcpy(out + pn + (size_t)sep, name, nn + 1);
	return 0;
}

/* ---------------------------------------------------------------- files */

/* What one profile of one AWS file says. */
struct aws_profile {
	int found;
	char access_key[256], secret_key[256], session_token[4096];
	char region[64], endpoint[512], s3_endpoint[512], max_attempts[16];
	int endpoint_line, s3_endpoint_line, attempts_line;
};

#define INI_LINE_MAX 8192

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
		     s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

static int set_field(char *dst, size_t cap, const char *v, const char *path, int line,
		     const char *key, mfs_errmsg *e)
{
	size_t n = strlen(v);
	if (n + 1 > cap)
		return mfs_err(e, MFS_E_INVAL,
			       "%s line %d: %s is too long (%zu bytes, at most %zu)",
			       path, line, key, n, cap - 1);
	memcpy(dst, v, n + 1);
	return 0;
}

/*
 * Read section @p section of INI file @p path into @p p (AWS's format: `[name]`
 * sections, `key = value`, full-line '#'/';' comments, and indented
 * `key = value` lines under a `name =` line forming a sub-section, e.g.
 * `s3 =` then `  endpoint_url = ...`).  A missing file is not an error.
 */
static int aws_file_read(const char *path, const char *section, const char *alt_section,
			 struct aws_profile *p, mfs_errmsg *e)
{
	memset(p, 0, sizeof *p);
	FILE *f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		int err = errno;
		return mfs_err(e, -err, "cannot read %s: %s", path, strerror(err));
	}
	char *buf = malloc(INI_LINE_MAX);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	int rc = 0, line = 0, in_section = 0;
	char sub[64] = ""; /* the open sub-section ("s3"), "" for none */
	while (fgets(buf, INI_LINE_MAX, f)) {
		line++;
		size_t len = strlen(buf);
		if (len == INI_LINE_MAX - 1 && buf[len - 1] != '\n') {
			rc = mfs_err(e, MFS_E_FORMAT, "%s line %d is over %d bytes", path,
				     line, INI_LINE_MAX - 2);
			break;
		}
		int indented = buf[0] == ' ' || buf[0] == '\t';
		char *s = trim(buf);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *rb = strchr(s, ']');
			if (!rb) {
				rc = mfs_err(e, MFS_E_FORMAT,
					     "%s line %d: a section without ']'", path,
					     line);
				break;
			}
			*rb = '\0';
			char *name = trim(s + 1);
			/* "[profile  x]": collapse the blanks after "profile" */
			char norm[300];
			if (strncmp(name, "profile", 7) == 0 &&
			    (name[7] == ' ' || name[7] == '\t'))
				snprintf(norm, sizeof norm, "profile %s", trim(name + 8));
			else
				snprintf(norm, sizeof norm, "%s", name);
			in_section = strcmp(norm, section) == 0 ||
				     (alt_section && strcmp(norm, alt_section) == 0);
			if (in_section)
				p->found = 1;
			sub[0] = '\0';
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			rc = mfs_err(e, MFS_E_FORMAT,
				     "%s line %d is neither a [section] nor key = value",
				     path, line);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		if (!in_section)
			continue;
		if (!indented)
			sub[0] = '\0';
		if (!indented && *val == '\0') { /* "s3 =": a sub-section opens */
			snprintf(sub, sizeof sub, "%s", key);
			continue;
		}
		if (indented && sub[0]) {
			if (strcmp(sub, "s3") == 0 && strcmp(key, "endpoint_url") == 0) {
				rc = set_field(p->s3_endpoint, sizeof p->s3_endpoint, val,
					       path, line, key, e);
				p->s3_endpoint_line = line;
			}
			if (rc)
				break;
			continue;
		}
		if (strcmp(key, "aws_access_key_id") == 0)
			rc = set_field(p->access_key, sizeof p->access_key, val, path,
				       line, key, e);
		else if (strcmp(key, "aws_secret_access_key") == 0)
			rc = set_field(p->secret_key, sizeof p->secret_key, val, path,
				       line, key, e);
		else if (strcmp(key, "aws_session_token") == 0)
			rc = set_field(p->session_token, sizeof p->session_token, val,
				       path, line, key, e);
		else if (strcmp(key, "region") == 0)
			rc = set_field(p->region, sizeof p->region, val, path, line, key,
				       e);
		else if (strcmp(key, "endpoint_url") == 0) {
			rc = set_field(p->endpoint, sizeof p->endpoint, val, path, line,
				       key, e);
			p->endpoint_line = line;
		} else if (strcmp(key, "max_attempts") == 0) {
			rc = set_field(p->max_attempts, sizeof p->max_attempts, val, path,
				       line, key, e);
			p->attempts_line = line;
		}
		if (rc)
			break;
	}
	if (!rc && ferror(f))
		rc = mfs_err(e, -EIO, "cannot read %s: %s", path, strerror(EIO));
	free(buf);
	fclose(f);
	return rc;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static int env_copy(char *dst, size_t cap, const char *v, const char *name, mfs_errmsg *e)
{
	size_t n = strlen(v);
	if (n + 1 > cap)
		return mfs_err(e, MFS_E_INVAL, "%s is too long (%zu bytes, at most %zu)",
			       name, n, cap - 1);
	memcpy(dst, v, n + 1);
	return 0;
}

static int parse_attempts(const char *v, const char *where, int *out, mfs_errmsg *e)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 1 || n > 100)
		return mfs_err(e, MFS_E_INVAL,
			       "%s: max attempts \"%.20s\" is not a number in 1..100",
			       where, v);
	*out = (int)n;
	return 0;
}

int mfs_s3_config_load(mfs_s3_config *cfg, mfs_errmsg *e)
{
	mfs_s3_config_defaults(cfg);
	const char *prof = env("AWS_PROFILE");
	const char *prof_var = "AWS_PROFILE";
	if (!prof) {
		prof = env("AWS_DEFAULT_PROFILE");
		prof_var = "AWS_DEFAULT_PROFILE";
	}
	int explicit_profile = prof != NULL;
	if (!prof)
		prof = "default";
	int rc = env_copy(cfg->profile, sizeof cfg->profile, prof, prof_var, e);
	if (rc)
		return rc;

	char cfg_path[PATH_MAX] = "", cred_path[PATH_MAX] = "";
	const char *home = env("HOME");
	if (env("AWS_CONFIG_FILE"))
		snprintf(cfg_path, sizeof cfg_path, "%s", env("AWS_CONFIG_FILE"));
	else if (home)
		snprintf(cfg_path, sizeof cfg_path, "%s/.aws/config", home);
	if (env("AWS_SHARED_CREDENTIALS_FILE"))
		snprintf(cred_path, sizeof cred_path, "%s",
			 env("AWS_SHARED_CREDENTIALS_FILE"));
	else if (home)
		snprintf(cred_path, sizeof cred_path, "%s/.aws/credentials", home);

	struct aws_profile *pc = calloc(2, sizeof *pc);
	if (!pc)
		return -ENOMEM;
	struct aws_profile *pk = pc + 1; /* the credentials file */
	char section[160];
	snprintf(section, sizeof section, "profile %s", prof);
	/* config: [profile NAME], and [default] for the default profile */
	if (cfg_path[0] &&
	    (rc = aws_file_read(cfg_path, section,
				strcmp(prof, "default") ? NULL : "default", pc, e)))
		goto out;
	if (cred_path[0] && (rc = aws_file_read(cred_path, prof, NULL, pk, e)))
		goto out;
	if (explicit_profile && !pc->found && !pk->found) {
		rc = mfs_err(
		    e, MFS_E_INVAL,
		    "%s=%s, but neither %s nor %s has that profile; add it, or unset %s",
		    prof_var, prof, cfg_path[0] ? cfg_path : "~/.aws/config",
		    cred_path[0] ? cred_path : "~/.aws/credentials", prof_var);
		goto out;
	}

	/* keys */
	const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
	if (ak || sk) {
		if (!ak || !sk) {
			rc = mfs_err(e, MFS_E_INVAL,
				     "%s is set but %s is not: set both (or neither, "
				     "to use ~/.aws/credentials)",
				     ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
				     ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
			goto out;
		}
		if ((rc = env_copy(cfg->access_key, sizeof cfg->access_key, ak,
				   "AWS_ACCESS_KEY_ID", e)) ||
		    (rc = env_copy(cfg->secret_key, sizeof cfg->secret_key, sk,
				   "AWS_SECRET_ACCESS_KEY", e)))
			goto out;
		if (env("AWS_SESSION_TOKEN") &&
		    (rc = env_copy(cfg->session_token, sizeof cfg->session_token,
				   env("AWS_SESSION_TOKEN"), "AWS_SESSION_TOKEN", e)))
			goto out;
		snprintf(cfg->key_source, sizeof cfg->key_source,
			 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY%s",
			 cfg->session_token[0] ? "/AWS_SESSION_TOKEN" : "");
	} else {
		struct aws_profile *from = NULL;
		const char *path = NULL;
		if (pk->access_key[0] && pk->secret_key[0]) {
			from = pk;
			path = cred_path;
		} else if (pc->access_key[0] && pc->secret_key[0]) {
			from = pc;
			path = cfg_path;
		}
		if (!from) {
			rc = mfs_err(
			    e, MFS_E_INVAL,
			    "no S3 credentials: set AWS_ACCESS_KEY_ID and "
			    "AWS_SECRET_ACCESS_KEY, or put aws_access_key_id and "
			    "aws_secret_access_key in profile [%s] of %s",
			    prof, cred_path[0] ? cred_path : "~/.aws/credentials");
			goto out;
		}
		memcpy(cfg->access_key, from->access_key, sizeof cfg->access_key);
		memcpy(cfg->secret_key, from->secret_key, sizeof cfg->secret_key);
		memcpy(cfg->session_token, from->session_token,
		       sizeof cfg->session_token);
		snprintf(cfg->key_source, sizeof cfg->key_source, "%s, profile [%s]",
			 path, prof);
	}

	/* region */
	const char *region = env("AWS_REGION");
	const char *region_var = "AWS_REGION";
	if (!region) {
		region = env("AWS_DEFAULT_REGION");
		region_var = "AWS_DEFAULT_REGION";
	}
	if (region)
		rc = env_copy(cfg->region, sizeof cfg->region, region, region_var, e);
	else if (pc->region[0])
		memcpy(cfg->region, pc->region, sizeof cfg->region);
	if (rc)
		goto out;

	/* endpoint */
	const char *ep = env("AWS_ENDPOINT_URL_S3");
	char what[PATH_MAX + 64] = "AWS_ENDPOINT_URL_S3";
	if (!ep && (ep = env("AWS_ENDPOINT_URL")))
		snprintf(what, sizeof what, "AWS_ENDPOINT_URL");
	if (!ep && pc->s3_endpoint[0]) {
		ep = pc->s3_endpoint;
		snprintf(what, sizeof what, "%s line %d (s3 endpoint_url)", cfg_path,
			 pc->s3_endpoint_line);
	}
	if (!ep && pc->endpoint[0]) {
		ep = pc->endpoint;
		snprintf(what, sizeof what, "%s line %d (endpoint_url)", cfg_path,
			 pc->endpoint_line);
	}
	if (ep) {
		if ((rc = mfs_s3_endpoint_normalize(ep, what, cfg->endpoint,
						    sizeof cfg->endpoint, e)))
			goto out;
		snprintf(cfg->endpoint_source, sizeof cfg->endpoint_source, "%s", what);
	} else {
		snprintf(cfg->endpoint_source, sizeof cfg->endpoint_source,
			 "AWS (no AWS_ENDPOINT_URL)");
	}

	/* attempts */
	if (env("AWS_MAX_ATTEMPTS"))
		rc = parse_attempts(env("AWS_MAX_ATTEMPTS"), "AWS_MAX_ATTEMPTS",
				    &cfg->attempts, e);
	else if (pc->max_attempts[0]) {
		snprintf(what, sizeof what, "%s line %d", cfg_path, pc->attempts_line);
		rc = parse_attempts(pc->max_attempts, what, &cfg->attempts, e);
	}
out:
	/* the secrets read from the files go no further than cfg */
	memset(pc, 0, 2 * sizeof *pc);
	free(pc);
	return rc;
}
