/*
 * names.c - the names a store keys records by, checked before they are
 * used: repo ids, paths inside a repo, commit hashes, etags and ref names
 * (store.h, "names").
 */
#include <stdio.h>
#include <string.h>

#include "store.h"

static int name_part_ok(const char *p, size_t n)
{
	if (n == 0 || n > 96)
		return 0;
	if (!((p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z') ||
	      (p[0] >= '0' && p[0] <= '9')))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return 0;
		if (i + 1 < n && ((c == '-' && p[i + 1] == '-') || (c == '.' && p[i + 1] == '.')))
			return 0;
	}
	return 1;
}

int mfs_repo_id_check(const char *repo, mfs_errmsg *err)
{
	const char *slash = strchr(repo, '/');
	if (!slash)
		return mfs_err(err, MFS_E_INVAL,
			       "repo id \"%s\": expected models/ORG/NAME or models/NAME", repo);
	size_t tl = (size_t)(slash - repo);
	if (!((tl == 6 && !strncmp(repo, "models", 6)) ||
	      (tl == 8 && !strncmp(repo, "datasets", 8)) ||
	      (tl == 6 && !strncmp(repo, "spaces", 6))))
		return mfs_err(err, MFS_E_INVAL,
			       "repo id \"%s\": type must be models, datasets or spaces", repo);
	const char *rest = slash + 1;
	const char *s2 = strchr(rest, '/');
	const char *why = "each of ORG and NAME must be 1-96 characters of A-Z a-z 0-9 . _ -, "
			  "start with a letter or digit, and contain no \"--\" or \"..\"";
	if (s2) {
		if (strchr(s2 + 1, '/'))
			return mfs_err(err, MFS_E_INVAL,
				       "repo id \"%s\": too many '/' (expected ORG/NAME)", repo);
		if (!name_part_ok(rest, (size_t)(s2 - rest)) ||
		    !name_part_ok(s2 + 1, strlen(s2 + 1)))
			return mfs_err(err, MFS_E_INVAL, "repo id \"%s\": %s", repo, why);
	} else if (!name_part_ok(rest, strlen(rest))) {
		return mfs_err(err, MFS_E_INVAL, "repo id \"%s\": %s", repo, why);
	}
	if (strlen(repo) > MFS_REPO_ID_MAX)
		return mfs_err(err, MFS_E_INVAL, "repo id \"%s\": longer than %d bytes", repo,
			       MFS_REPO_ID_MAX);
	return 0;
}

int mfs_repo_id_expand(const char *arg, char out[MFS_REPO_ID_MAX + 1], mfs_errmsg *err)
{
	if (!arg || !arg[0])
		return mfs_err(err, MFS_E_INVAL, "no repo id given (\"org/name\")");
	int n;
	if (!strncmp(arg, "models/", 7) || !strncmp(arg, "datasets/", 9) ||
	    !strncmp(arg, "spaces/", 7))
		n = snprintf(out, MFS_REPO_ID_MAX + 1, "%s", arg);
	else
		n = snprintf(out, MFS_REPO_ID_MAX + 1, "models/%s", arg);
	if (n < 0 || n > MFS_REPO_ID_MAX)
		return mfs_err(err, MFS_E_INVAL, "longer than %d bytes", MFS_REPO_ID_MAX);
	return mfs_repo_id_check(out, err);
}

int mfs_repo_path_check(const char *path, mfs_errmsg *err)
{
	size_t n = strlen(path);
	if (n == 0 || n > MFS_PATH_MAX)
		return mfs_err(err, MFS_E_INVAL, "file path \"%s\": empty or longer than %d bytes",
			       path, MFS_PATH_MAX);
	const char *p = path;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') ||
		    (len == 2 && p[0] == '.' && p[1] == '.'))
			return mfs_err(err, MFS_E_INVAL,
				       "file path \"%s\": empty, \".\" or \"..\" component "
				       "(paths must stay inside the repo)",
				       path);
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				return mfs_err(err, MFS_E_INVAL,
					       "file path \"%s\": control character", path);
		p += len;
		if (*p == '/')
			p++;
	}
	if (path[n - 1] == '/')
		return mfs_err(err, MFS_E_INVAL, "file path \"%s\": ends with '/'", path);
	return 0;
}

/* Lower-case hex of @p min..@p max characters. */
static int lower_hex_ok(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);
	if (n < min || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int mfs_commit_ok(const char *commit)
{
	return lower_hex_ok(commit, MFS_COMMIT_LEN, MFS_COMMIT_LEN);
}

int mfs_etag_ok(const char *etag)
{
	return lower_hex_ok(etag, 1, MFS_ETAG_MAX);
}

/* One '/'-separated component of a ref name, as git check-ref-format takes it. */
static const char *ref_component_bad(const char *c, size_t n)
{
	if (n == 0)
		return "an empty component (\"//\", or a leading or trailing '/')";
	if (c[0] == '.')
		return "a component that starts with '.'";
	if (n >= 5 && !memcmp(c + n - 5, ".lock", 5))
		return "a component that ends with \".lock\"";
	return NULL;
}

int mfs_ref_name_check(const char *ref, mfs_errmsg *err)
{
	size_t n = strlen(ref);
	const char *why = NULL;
	if (n == 0 || n > MFS_REF_MAX)
		why = "empty or longer than 128 bytes";
	else if (!strcmp(ref, "@"))
		why = "\"@\" alone";
	else if (ref[n - 1] == '.')
		why = "ends with '.'";
	else if (strstr(ref, ".."))
		why = "contains \"..\"";
	else if (strstr(ref, "@{"))
		why = "contains \"@{\"";
	for (size_t i = 0; !why && i < n; i++) {
		unsigned char ch = (unsigned char)ref[i];
		if (ch < 0x20 || ch == 0x7f)
			why = "contains a control character";
		else if (strchr(" ~^:?*[\\", ch))
			why = "contains one of: space ~ ^ : ? * [ \\";
	}
	for (const char *p = ref; !why;) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		why = ref_component_bad(p, len);
		if (!e)
			break;
		p = e + 1;
	}
	if (!why)
		return 0;
	char shown[4 * MFS_REF_MAX + 8];
	mfs_str_quote(ref, MFS_REF_MAX, shown, sizeof shown);
	return mfs_err(err, MFS_E_INVAL,
		       "ref name \"%s\": %s (ref names follow git check-ref-format: "
		       "'/'-separated components such as main or refs/pr/1)",
		       shown, why);
}
