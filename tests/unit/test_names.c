/*
 * test_names.c - mfs_repo_id_expand, the one way the CLI and libmodelfs turn
 * what a person types into the repo id the store keys by.
 */
#include "store.h"
#include "testhelp.h"

static int expands(const char *arg, const char *want)
{
	char out[MFS_REPO_ID_MAX + 1];
	mfs_errmsg e = {0};
	int rc = mfs_repo_id_expand(arg, out, &e);
	if (rc != 0 || strcmp(out, want) != 0) {
		fprintf(stderr, "  \"%s\": rc %d (%s)\n", arg, rc, e.msg);
		return 0;
	}
	return 1;
}

/* Refused with MFS_E_INVAL and a message that holds @p why. */
static int refuses(const char *arg, const char *why)
{
	char out[MFS_REPO_ID_MAX + 1];
	mfs_errmsg e = {0};
	int rc = mfs_repo_id_expand(arg, out, &e);
	if (rc != MFS_E_INVAL || !strstr(e.msg, why)) {
		fprintf(stderr, "  \"%s\": rc %d, message \"%s\" (want \"%s\")\n",
			arg ? arg : "(null)", rc, e.msg, why);
		return 0;
	}
	return 1;
}

static void test_expand(void)
{
	CHECK(expands("org/name", "models/org/name"));
	CHECK(expands("name", "models/name"));
	CHECK(expands("models/org/name", "models/org/name"));
	CHECK(expands("datasets/org/set", "datasets/org/set"));
	CHECK(expands("spaces/org/app", "spaces/org/app"));
	CHECK(expands("sentence-transformers/all-MiniLM-L6-v2",
		      "models/sentence-transformers/all-MiniLM-L6-v2"));
	/* "models" without its '/' is a name like any other */
	CHECK(expands("modelsx/name", "models/modelsx/name"));
}

static void test_refused(void)
{
	CHECK(refuses(NULL, "no repo id given"));
	CHECK(refuses("", "no repo id given"));
	CHECK(refuses("org/../etc", "repo id"));
	CHECK(refuses("a/b/c", "too many '/'"));
	CHECK(refuses("org--x/name", "\"--\""));
	CHECK(refuses("models/", "repo id"));
	char longid[300], want[300];
	memset(longid, 'a', 193);
	longid[193] = '\0';
	CHECK(refuses(longid, "1-96 characters")); /* a part over 96 */
	/* "models/" + 96 + '/' + 96: the longest id, 200 bytes */
	memset(longid, 'a', 96);
	longid[96] = '/';
	memset(longid + 97, 'b', 96);
	longid[193] = '\0';
	snprintf(want, sizeof want, "models/%s", longid);
	CHECK(expands(longid, want));
	char over[300];
	memset(over, 'c', 120);
	over[120] = '/';
	memset(over + 121, 'd', 90);
	over[211] = '\0';
	CHECK(refuses(over, "longer than 200 bytes"));
}

int main(void)
{
	RUN(test_expand);
	RUN(test_refused);
	return test_report();
}
