/*
 * check.c - the record checker (check.h).
 *
 * One function per record kind takes a key and a value and reports at most
 * one problem; the whole-store check runs them over every record of every
 * database, the per-repo check over the records under "repo\0".  A record is
 * looked at through its raw MDB_val (store_internal.h), never through the
 * mfs_*_foreach walks, which stop at the first record that does not parse.
 */
#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bytes.h"
#include "grow.h"
#include "pack.h"
#include "records.h"
#include "store_internal.h"

#define KEY_MAX	  511  /* LMDB's key limit: no key part is longer */
#define SHOWN_MAX 2100 /* a quoted key: 4 bytes per byte at worst, plus separators */
#define WHAT_MAX  1400
#define WHY_MAX	  1200

typedef struct ck {
	mfs_txn *t;
	unsigned flags;
	mfs_check_fn fn;
	void *ud;
	uint64_t n_bad;
	int whole; /* the whole store: also look for records of no repo */
	/* whole store: the last repo a key named, and whether it has a repos record */
	char seen_repo[KEY_MAX + 1];
	int seen_ok;
	/* tensors: the blob of the last tensor (a blob's tensors are adjacent keys) */
	char tblob_key[KEY_MAX + 1];
	size_t tblob_klen;
	int tblob_state; /* 1 decoded, 0 missing, -1 does not decode */
	mfs_blob_info tblob;
	/* whole store: every blob extent's chunk key, for the reference counts */
	mfs_chunk_key *uses;
	size_t n_uses, cap_uses;
	int blobs_damaged; /* some blob or chunk record did not decode: its uses
			      are unknown */
} ck;

/* A key cut at its NUL separators: the first three parts as C strings. */
typedef struct key_parts {
	size_t n; /* number of parts */
	char part[3][KEY_MAX + 1];
} key_parts;

static void split_key(const MDB_val *k, key_parts *kp)
{
	const char *p = k->mv_data, *end = p + k->mv_size;
	kp->n = 0;
	for (;;) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		size_t len = z ? (size_t)(z - p) : (size_t)(end - p);
		if (kp->n < 3) {
			if (len > KEY_MAX)
				len = KEY_MAX;
			memcpy(kp->part[kp->n], p, len);
			kp->part[kp->n][len] = '\0';
		}
		kp->n++;
		if (!z)
			break;
		p = z + 1;
	}
}

/* Quote @p s for a message (every name from the index is untrusted). */
static const char *q(const char *s, char *buf, size_t cap)
{
	return mfs_str_quote(s, KEY_MAX, buf, cap);
}

/* A key for a message: each part quoted, the separators shown as \x00. */
static void quote_key(const MDB_val *k, int binary, char *buf, size_t cap)
{
	size_t o = 0;
	buf[0] = '\0';
	if (binary) {
		static const char hex[] = "0123456789abcdef";
		const uint8_t *p = k->mv_data;
		for (size_t i = 0; i < k->mv_size && o + 3 <= cap; i++) {
			buf[o++] = hex[p[i] >> 4];
			buf[o++] = hex[p[i] & 15];
		}
		buf[o < cap ? o : cap - 1] = '\0';
		return;
	}
	const char *p = k->mv_data, *end = p + k->mv_size;
	char part[KEY_MAX + 1];
	for (;;) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		size_t len = z ? (size_t)(z - p) : (size_t)(end - p);
		if (len > KEY_MAX)
			len = KEY_MAX;
		memcpy(part, p, len);
		part[len] = '\0';
		mfs_str_quote(part, KEY_MAX, buf + o, cap - o);
		o += strlen(buf + o);
		if (!z || o + 5 > cap)
			break;
		memcpy(buf + o, "\\x00", 5);
		o += 4;
		p = z + 1;
	}
}

static int is_binary_db(int db)
{
	return db == DB_CHUNKS || db == DB_CHUNKREFS || db == DB_PACKS;
}

/* Report one damaged record to the caller. */
static int report(ck *c, int db, const char *repo, const MDB_val *k, const char *what,
		  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int report(ck *c, int db, const char *repo, const MDB_val *k, const char *what,
		  const char *fmt, ...)
{
	char repo_q[4 * KEY_MAX + 8], key_q[SHOWN_MAX], why[WHY_MAX];
	q(repo ? repo : "", repo_q, sizeof repo_q);
	quote_key(k, is_binary_db(db), key_q, sizeof key_q);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	mfs_check_problem p = {mfs_db_names[db], repo_q, key_q, what, why};
	c->n_bad++;
	return c->fn(c->ud, &p);
}

/* Why a value did not decode, as far as can be told from its bytes. */
static void value_why(const MDB_val *v, size_t want_len, char *buf, size_t cap)
{
	const uint8_t *p = v->mv_data;
	if (v->mv_size == 0)
		snprintf(buf, cap, "is empty");
	else if (p[0] != MFS_REC_V1)
		snprintf(
		    buf, cap,
		    "has record version %u (this modelfs reads version %d: the record is "
		    "damaged or was written by another version)",
		    p[0], MFS_REC_V1);
	else if (want_len && v->mv_size != want_len)
		snprintf(buf, cap, "is %zu bytes long, not %zu", v->mv_size, want_len);
	else
		snprintf(buf, cap, "does not decode (%zu bytes)", v->mv_size);
}

/* Which rule of mfs_repo_path_check a path it refused breaks (its own message
 * holds the path unquoted). */
static const char *path_problem(const char *path)
{
	size_t n = strlen(path);
	if (n == 0)
		return "is empty";
	if (n > MFS_PATH_MAX)
		return "is longer than 255 bytes";
	if (path[0] == '/')
		return "is absolute (it would point outside the repo)";
	for (const char *p = path;;) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return "has a \"..\" component (it would point outside the repo)";
		if (len == 1 && p[0] == '.')
			return "has a \".\" component";
		if (len == 0)
			return "has an empty component (\"//\" or a trailing '/')";
		if (!e)
			break;
		p = e + 1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			return "holds a control character";
	return "is not a path inside the repo";
}

/* Look a key up in @p db: 1 found (value in *v), 0 not, or an error. */
static int lookup(ck *c, int db, const void *key, size_t klen, MDB_val *v)
{
	MDB_val k = {klen, (void *)key}, tmp;
	int rc = mdb_get(c->t->txn, DBI(c->t, db), &k, v ? v : &tmp);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? mfs_db_rc(rc) : 1;
}

/* Does "a\0b" name a record of @p db?  1, 0 or an error. */
static int lookup2(ck *c, int db, const char *a, const char *b, MDB_val *v)
{
	char key[KEY_MAX + 1];
	size_t kl = mfs_db_key_join(key, sizeof key, a, b, NULL);
	return kl ? lookup(c, db, key, kl, v) : 0;
}

/*
 * The whole store: does the repo a key names have a repos record?  When not,
 * the record needs no other check (*reported = 1) and is reported, except a
 * blobs or tensors record: ingest writes those before it publishes the
 * snapshot that creates the repos record, so an ingest killed before that
 * leaves them behind (docs/durability.md); they are garbage gc removes, not
 * damage.
 * @return 0, or what report() returned, or an error
 */
static int check_owner(ck *c, int db, const char *repo, const MDB_val *k,
		       const char *what, int *reported)
{
	*reported = 0;
	if (!c->whole)
		return 0;
	if (strcmp(repo, c->seen_repo) != 0) {
		int rc = lookup(c, DB_REPOS, repo, strlen(repo), NULL);
		if (rc < 0)
			return rc;
		snprintf(c->seen_repo, sizeof c->seen_repo, "%s", repo);
		c->seen_ok = rc;
	}
	if (c->seen_ok)
		return 0;
	*reported = 1;
	if (db == DB_BLOBS || db == DB_TENSORS)
		return 0;
	char rq[4 * KEY_MAX + 8];
	return report(c, db, repo, k, what,
		      "belongs to repo %s, which has no repos record",
		      q(repo, rq, sizeof rq));
}

/* A record of a repo but @p parts parts in its key: the layout is wrong. */
static int bad_layout(ck *c, int db, const key_parts *kp, const MDB_val *k,
		      const char *layout)
{
	char what[WHAT_MAX];
	snprintf(what, sizeof what, "%s record", mfs_db_names[db]);
	return report(c, db, kp->n ? kp->part[0] : "", k, what,
		      "has a key of %zu part%s, not %s", kp->n, kp->n == 1 ? "" : "s",
		      layout);
}

/* check_owner, returning from the calling check when it reported the record. */
#define OWNER_OR_RETURN(c, db, repo, k, what)                                            \
	do {                                                                             \
		int reported_;                                                           \
		int own_rc_ = check_owner(c, db, repo, k, what, &reported_);             \
		if (own_rc_ != 0 || reported_)                                           \
			return own_rc_;                                                  \
	} while (0)

/* ---- one function per record kind ---- */

static int check_repo_rec(ck *c, const MDB_val *k, const MDB_val *v)
{
	char name[KEY_MAX + 1], nq[4 * KEY_MAX + 8], why[WHY_MAX];
	size_t n = k->mv_size > KEY_MAX ? KEY_MAX : k->mv_size;
	memcpy(name, k->mv_data, n);
	name[n] = '\0';
	if (memchr(k->mv_data, '\0', k->mv_size))
		return report(c, DB_REPOS, "", k, "repos record",
			      "has a key that holds a NUL byte: not a repo id");
	if (n > MFS_REPO_ID_MAX || mfs_repo_id_check(name, NULL) < 0)
		return report(
		    c, DB_REPOS, name, k, "repos record",
		    "has a key that is not a repo id (%s: expected TYPE/ORG/NAME, "
		    "each part of A-Z a-z 0-9 . _ -)",
		    q(name, nq, sizeof nq));
	mfs_repo_info ri;
	if (mfs_rec_repo_decode(v->mv_data, v->mv_size, &ri) < 0) {
		value_why(v, MFS_REC_REPO_LEN, why, sizeof why);
		return report(c, DB_REPOS, name, k, "repos record", "%s", why);
	}
	return 0;
}

static int check_ref(ck *c, const MDB_val *k, const MDB_val *v)
{
	key_parts kp;
	split_key(k, &kp);
	if (kp.n != 2)
		return bad_layout(c, DB_REFS, &kp, k, "repo\\x00ref");
	const char *repo = kp.part[0], *name = kp.part[1];
	char what[WHAT_MAX], nq[4 * KEY_MAX + 8];
	snprintf(what, sizeof what, "refs record for ref %s", q(name, nq, sizeof nq));
	OWNER_OR_RETURN(c, DB_REFS, repo, k, what);
	mfs_errmsg err = {0};
	if (mfs_ref_name_check(name, &err) < 0) /* its message quotes the name */
		return report(c, DB_REFS, repo, k, what, "has an invalid name: %s",
			      err.msg);
	char commit[MFS_COMMIT_LEN + 1];
	if (mfs_rec_ref_decode(v->mv_data, v->mv_size, commit) < 0)
		return report(c, DB_REFS, repo, k, what,
			      "does not hold a 40-hex commit (%zu bytes)", v->mv_size);
	int rc = lookup2(c, DB_COMMITS, repo, commit, NULL);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return report(c, DB_REFS, repo, k, what,
			      "names commit %s, which the repo does not have", commit);
	return 0;
}

static int check_commit(ck *c, const MDB_val *k, const MDB_val *v)
{
	key_parts kp;
	split_key(k, &kp);
	if (kp.n != 2)
		return bad_layout(c, DB_COMMITS, &kp, k, "repo\\x00commit");
	const char *repo = kp.part[0], *commit = kp.part[1];
	char what[WHAT_MAX], cq[4 * KEY_MAX + 8], why[WHY_MAX];
	snprintf(what, sizeof what, "commits record for commit %s",
		 q(commit, cq, sizeof cq));
	OWNER_OR_RETURN(c, DB_COMMITS, repo, k, what);
	if (!mfs_commit_ok(commit))
		return report(c, DB_COMMITS, repo, k, what,
			      "has a commit that is not 40 lower-case hex");
	mfs_commit_info ci;
	if (mfs_rec_commit_decode(v->mv_data, v->mv_size, &ci) < 0) {
		value_why(v, MFS_REC_COMMIT_LEN, why, sizeof why);
		return report(c, DB_COMMITS, repo, k, what, "%s", why);
	}
	return 0;
}

/*
 * files and noexist share a key layout: repo \0 commit \0 path.  Fills @p what;
 * *done = 1 when the record was reported (nothing more to check).
 */
static int check_path_key(ck *c, int db, const key_parts *kp, const MDB_val *k,
			  char *what, size_t wcap, int *done)
{
	const char *repo = kp->part[0], *commit = kp->part[1], *path = kp->part[2];
	char pq[4 * KEY_MAX + 8], cq[4 * KEY_MAX + 8];
	snprintf(what, wcap, "%s record for %s of commit %s", mfs_db_names[db],
		 q(path, pq, sizeof pq), q(commit, cq, sizeof cq));
	*done = 1;
	OWNER_OR_RETURN(c, db, repo, k, what);
	if (!mfs_commit_ok(commit))
		return report(c, db, repo, k, what,
			      "has a commit that is not 40 lower-case hex");
	if (mfs_repo_path_check(path, NULL) < 0)
		return report(c, db, repo, k, what, "has a path that %s",
			      path_problem(path));
	*done = 0;
	return 0;
}

/* After the value checked out: is its commit one of the repo's? */
static int check_in_commit(ck *c, int db, const key_parts *kp, const MDB_val *k,
			   const char *what)
{
	int rc = lookup2(c, DB_COMMITS, kp->part[0], kp->part[1], NULL);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return report(c, db, kp->part[0], k, what,
			      "is in commit %s, which the repo does not have",
			      kp->part[1]);
	return 0;
}

static int check_file(ck *c, const MDB_val *k, const MDB_val *v)
{
	key_parts kp;
	split_key(k, &kp);
	if (kp.n != 3)
		return bad_layout(c, DB_FILES, &kp, k, "repo\\x00commit\\x00path");
	char what[WHAT_MAX], why[WHY_MAX];
	int done;
	int rc = check_path_key(c, DB_FILES, &kp, k, what, sizeof what, &done);
	if (rc || done)
		return rc;
	const char *repo = kp.part[0];
	mfs_file_info fi;
	if (mfs_rec_file_decode(v->mv_data, v->mv_size, &fi) < 0) {
		value_why(v, 0, why, sizeof why);
		return report(c, DB_FILES, repo, k, what, "%s", why);
	}
	if ((rc = check_in_commit(c, DB_FILES, &kp, k, what)) != 0)
		return rc;
	rc = lookup2(c, DB_BLOBS, repo, fi.etag, NULL);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return report(c, DB_FILES, repo, k, what,
			      "names blob %s, which is not stored", fi.etag);
	return 0;
}

static int check_noexist(ck *c, const MDB_val *k, const MDB_val *v)
{
	key_parts kp;
	split_key(k, &kp);
	if (kp.n != 3)
		return bad_layout(c, DB_NOEXIST, &kp, k, "repo\\x00commit\\x00path");
	char what[WHAT_MAX];
	int done;
	int rc = check_path_key(c, DB_NOEXIST, &kp, k, what, sizeof what, &done);
	if (rc || done)
		return rc;
	if (v->mv_size != 0)
		return report(c, DB_NOEXIST, kp.part[0], k, what,
			      "holds %zu bytes (a .no_exist marker is empty)",
			      v->mv_size);
	return check_in_commit(c, DB_NOEXIST, &kp, k, what);
}

static int add_uses(ck *c, const mfs_extent *e, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		mfs_chunk_key *p =
		    mfs_grow(c->uses, &c->cap_uses, c->n_uses, sizeof *p, 1024);
		if (!p)
			return -ENOMEM;
		c->uses = p;
		c->uses[c->n_uses++] = e[i].key;
	}
	return 0;
}

static int check_blob(ck *c, const MDB_val *k, const MDB_val *v)
{
	key_parts kp;
	split_key(k, &kp);
	if (kp.n != 2) {
		c->blobs_damaged = 1;
		return bad_layout(c, DB_BLOBS, &kp, k, "repo\\x00etag");
	}
	const char *repo = kp.part[0], *etag = kp.part[1];
	char what[WHAT_MAX], eq[4 * KEY_MAX + 8], why[WHY_MAX];
	snprintf(what, sizeof what, "blobs record for blob %s", q(etag, eq, sizeof eq));
	/* a blob of no repo still holds references: its extents are counted below */
	int orphan;
	int rc = check_owner(c, DB_BLOBS, repo, k, what, &orphan);
	if (rc)
		return rc;
	if (orphan) {
		mfs_blob_info bi;
		const uint8_t *ep;
		if (mfs_rec_blob_decode(v->mv_data, v->mv_size, &bi, &ep) < 0) {
			c->blobs_damaged = 1;
			return 0;
		}
		mfs_extent e;
		for (uint64_t i = 0; i < bi.n_extents && rc == 0; i++) {
			mfs_rec_extent_get(ep, i, &e);
			rc = add_uses(c, &e, 1);
		}
		return rc;
	}
	if (!mfs_etag_ok(etag)) {
		c->blobs_damaged = 1;
		return report(
		    c, DB_BLOBS, repo, k, what,
		    "has an etag that is not 1 to 64 lower-case hex characters");
	}
	mfs_blob_info bi;
	const uint8_t *ep;
	if (mfs_rec_blob_decode(v->mv_data, v->mv_size, &bi, &ep) < 0) {
		c->blobs_damaged = 1;
		value_why(v, 0, why, sizeof why);
		return report(c, DB_BLOBS, repo, k, what, "%s", why);
	}
	/* the decoder checked that n_extents records of 28 bytes are there */
	mfs_extent *ext = malloc((bi.n_extents ? bi.n_extents : 1) * sizeof *ext);
	if (!ext)
		return -ENOMEM;
	if (mfs_rec_blob_extents(&bi, ep, ext) < 0) {
		c->blobs_damaged = 1;
		rc = report(
		    c, DB_BLOBS, repo, k, what,
		    "has extents that do not tile its %llu bytes (in order from 0, "
		    "none empty)",
		    (unsigned long long)bi.size);
		goto out;
	}
	if (c->flags & MFS_CHECK_CHUNKS) {
		uint64_t missing = 0, first = 0;
		for (uint64_t i = 0; i < bi.n_extents; i++) {
			int found = lookup(c, DB_CHUNKS, ext[i].key.b, 16, NULL);
			if (found < 0) {
				rc = found;
				goto out;
			}
			if (!found && missing++ == 0)
				first = i;
		}
		if (missing) {
			char hex[33], more[96] = "";
			if (missing > 1)
				snprintf(more, sizeof more,
					 "; %llu more extents name missing chunks",
					 (unsigned long long)(missing - 1));
			rc = report(
			    c, DB_BLOBS, repo, k, what,
			    "names chunk %s (extent %llu of %llu, at offset %llu), "
			    "which is not stored%s",
			    mfs_chunk_key_hex(&ext[first].key, hex),
			    (unsigned long long)first, (unsigned long long)bi.n_extents,
			    (unsigned long long)ext[first].off, more);
			if (rc)
				goto out;
		}
	}
	if (c->whole)
		rc = add_uses(c, ext, bi.n_extents);
out:
	free(ext);
	return rc;
}

static int check_tensor(ck *c, const MDB_val *k, const MDB_val *v)
{
	key_parts kp;
	split_key(k, &kp);
	if (kp.n != 3)
		return bad_layout(c, DB_TENSORS, &kp, k, "repo\\x00etag\\x00name");
	const char *repo = kp.part[0], *etag = kp.part[1];
	char what[WHAT_MAX], nq[4 * KEY_MAX + 8], eq[4 * KEY_MAX + 8], why[WHY_MAX];
	snprintf(what, sizeof what, "tensors record for tensor %s of blob %s",
		 q(kp.part[2], nq, sizeof nq), q(etag, eq, sizeof eq));
	OWNER_OR_RETURN(c, DB_TENSORS, repo, k, what);
	if (!mfs_etag_ok(etag))
		return report(
		    c, DB_TENSORS, repo, k, what,
		    "has an etag that is not 1 to 64 lower-case hex characters");
	mfs_tensor_info ti;
	char name[MFS_REC_TENSOR_STRS];
	if (mfs_rec_tensor_decode(v->mv_data, v->mv_size, &ti, name) < 0) {
		value_why(v, 0, why, sizeof why);
		return report(c, DB_TENSORS, repo, k, what, "%s", why);
	}
	char bkey[KEY_MAX + 1];
	size_t bkl = mfs_db_key_join(bkey, sizeof bkey, repo, etag, NULL);
	if (!bkl || bkl != c->tblob_klen || memcmp(bkey, c->tblob_key, bkl) != 0) {
		MDB_val bv;
		int rc = bkl ? lookup(c, DB_BLOBS, bkey, bkl, &bv) : 0;
		if (rc < 0)
			return rc;
		c->tblob_state =
		    rc == 0 ? 0
		    : mfs_rec_blob_decode(bv.mv_data, bv.mv_size, &c->tblob, NULL) == 0
			? 1
			: -1;
		memcpy(c->tblob_key, bkey, bkl);
		c->tblob_klen = bkl;
	}
	if (c->tblob_state == 0)
		return report(c, DB_TENSORS, repo, k, what,
			      "belongs to blob %s, which is not stored", etag);
	if (c->tblob_state < 0)
		return 0; /* the blob's own record is reported */
	const mfs_blob_info *b = &c->tblob;
	if (ti.first_extent > b->n_extents ||
	    ti.n_extents > b->n_extents - ti.first_extent)
		return report(c, DB_TENSORS, repo, k, what,
			      "names extents %llu to %llu, but its blob has %llu",
			      (unsigned long long)ti.first_extent,
			      (unsigned long long)(ti.first_extent + ti.n_extents),
			      (unsigned long long)b->n_extents);
	if (ti.data_off > b->size || ti.raw_len > b->size - ti.data_off)
		return report(c, DB_TENSORS, repo, k, what,
			      "covers bytes %llu to %llu, past the end of its blob (%llu "
			      "bytes)",
			      (unsigned long long)ti.data_off,
			      (unsigned long long)(ti.data_off + ti.raw_len),
			      (unsigned long long)b->size);
	return 0;
}

/* ---- the records of no repo (whole store) ---- */

static int check_meta_u64(ck *c, const char *name)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	char what[64];
	snprintf(what, sizeof what, "meta record %s", name);
	int rc = lookup(c, DB_META, name, strlen(name), &v);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return report(c, DB_META, "", &k, what, "is missing");
	if (v.mv_size != 8)
		return report(c, DB_META, "", &k, what, "is %zu bytes long, not 8",
			      v.mv_size);
	if (!strcmp(name, "format") && mfs_get_le64(v.mv_data) != MFS_STORE_FORMAT)
		return report(c, DB_META, "", &k, what, "says format %llu, not %d",
			      (unsigned long long)mfs_get_le64(v.mv_data),
			      MFS_STORE_FORMAT);
	return 0;
}

static void chunk_what(const MDB_val *k, int db, char *buf, size_t cap)
{
	char hex[33];
	if (k->mv_size == 16) {
		mfs_chunk_key key;
		memcpy(key.b, k->mv_data, 16);
		snprintf(buf, cap, "%s record for chunk %s", mfs_db_names[db],
			 mfs_chunk_key_hex(&key, hex));
	} else {
		snprintf(buf, cap, "%s record", mfs_db_names[db]);
	}
}

static const char *role_name(mfs_ref_role r)
{
	return r == MFS_REF_BASE ? "base" : r == MFS_REF_QUANT ? "quantized values" : "scales";
}

/* The references of a chunk record: each counts a use, and must name a
 * stored chunk that has no references itself and holds the range. */
static int check_chunk_refs(ck *c, const MDB_val *k, const char *what, const mfs_chunk_view *cv)
{
	for (uint32_t i = 0; i < cv->n_refs; i++) {
		const mfs_chunk_ref *r = &cv->refs[i];
		mfs_extent e = {.key = r->key};
		int rc = add_uses(c, &e, 1);
		if (rc < 0)
			return rc;
		char hex[33];
		mfs_chunk_key_hex(&r->key, hex);
		mfs_chunk_view rv;
		rc = mfs_chunk_get(c->t, &r->key, &rv);
		if (rc == MFS_E_NOTFOUND)
			return report(c, DB_CHUNKS, "", k, what,
				      "decodes against chunk %s (%s), which is not stored", hex,
				      role_name(r->role));
		if (rc == MFS_E_CORRUPT)
			return report(c, DB_CHUNKS, "", k, what,
				      "decodes against chunk %s (%s), whose record does not "
				      "decode",
				      hex, role_name(r->role));
		if (rc < 0)
			return rc;
		if (rv.n_refs)
			return report(c, DB_CHUNKS, "", k, what,
				      "decodes against chunk %s (%s), which decodes against "
				      "another chunk itself (references are one deep)",
				      hex, role_name(r->role));
		if (mfs_chunk_ref_check(r, &rv) < 0)
			return report(c, DB_CHUNKS, "", k, what,
				      "decodes against bytes %llu..%llu of chunk %s (%s), which "
				      "holds %u bytes",
				      (unsigned long long)r->off,
				      (unsigned long long)(r->off + r->len), hex,
				      role_name(r->role), (unsigned)rv.raw_len);
	}
	return 0;
}

/*
 * Where a chunk record says its payload lies: a pack with a record (not
 * retired), inside what committed transactions wrote to it, and an entry
 * there whose header is this chunk's (magic, length, key).
 */
static int check_chunk_entry(ck *c, const MDB_val *k, const char *what,
			     const mfs_chunk_view *cv)
{
	if (!cv->in_pack)
		return report(
		    c, DB_CHUNKS, "", k, what,
		    "holds its payload inside the index (a format-1 record: run "
		    "`modelfs upgrade`)");
	const mfs_chunk_loc *l = &cv->loc;
	mfs_pack_rec pr;
	int rc = mfs_pack_rec_get(c->t, l->pack, &pr);
	if (rc == MFS_E_NOTFOUND || rc == MFS_E_CORRUPT)
		return report(
		    c, DB_CHUNKS, "", k, what, "names pack %016llx, which has %s",
		    (unsigned long long)l->pack,
		    rc == MFS_E_NOTFOUND ? "no packs record" : "a damaged packs record");
	if (rc < 0)
		return rc;
	uint64_t end = l->off + mfs_pack_entry_bytes(l->len);
	if (l->off < MFS_PACK_HDR || end < l->off || end > pr.committed_end)
		return report(
		    c, DB_CHUNKS, "", k, what,
		    "names bytes %llu..%llu of pack %016llx, outside the %llu bytes "
		    "its committed writes hold",
		    (unsigned long long)l->off, (unsigned long long)end,
		    (unsigned long long)l->pack, (unsigned long long)pr.committed_end);
	if (pr.state == MFS_PACK_RETIRED)
		return report(c, DB_CHUNKS, "", k, what,
			      "names pack %016llx, which gc retired (repacked)",
			      (unsigned long long)l->pack);
	mfs_chunk_key key;
	memcpy(key.b, k->mv_data, 16);
	char why[WHY_MAX];
	rc = mfs_pack_entry_check(c->t->s, &key, l, why, sizeof why);
	if (rc == MFS_E_CORRUPT)
		return report(c, DB_CHUNKS, "", k, what,
			      "has a damaged payload entry: %s", why);
	return rc;
}

/* A packs record: it decodes, and its counts add up to what it says was written. */
static int check_pack_rec(ck *c, const MDB_val *k, const MDB_val *v)
{
	char what[64];
	uint64_t id = 0;
	for (size_t i = 0; i < k->mv_size && i < 8; i++)
		id = id << 8 | ((const uint8_t *)k->mv_data)[i];
	snprintf(what, sizeof what, "packs record for pack %016llx",
		 (unsigned long long)id);
	if (k->mv_size != 8)
		return report(c, DB_PACKS, "", k, "packs record",
			      "has a key of %zu bytes, not 8", k->mv_size);
	mfs_pack_rec r;
	if (mfs_rec_pack_decode(v->mv_data, v->mv_size, &r) < 0)
		return report(c, DB_PACKS, "", k, what, "does not decode (%zu bytes)",
			      v->mv_size);
	if (r.committed_end < MFS_PACK_HDR ||
	    r.committed_end - MFS_PACK_HDR != r.live_bytes + r.dead_bytes)
		return report(
		    c, DB_PACKS, "", k, what,
		    "counts %llu live and %llu dead entry bytes, but %llu bytes of "
		    "entries were written",
		    (unsigned long long)r.live_bytes, (unsigned long long)r.dead_bytes,
		    (unsigned long long)(r.committed_end >= MFS_PACK_HDR
					     ? r.committed_end - MFS_PACK_HDR
					     : 0));
	if (r.state == MFS_PACK_RETIRED)
		return 0; /* its file may be gone: gc unlinks it when no reader needs it
			   */
	char path[4200];
	struct stat st;
	if (mfs_pack_path(c->t->s, id, path, sizeof path) < 0)
		return MFS_E_INVAL;
	if (stat(path, &st) < 0)
		return report(c, DB_PACKS, "", k, what, "names pack file %s, which %s",
			      path, errno == ENOENT ? "is missing" : strerror(errno));
	if ((uint64_t)st.st_size < r.committed_end)
		return report(
		    c, DB_PACKS, "", k, what,
		    "says %llu bytes were written to pack file %s, which holds %llu",
		    (unsigned long long)r.committed_end, path,
		    (unsigned long long)st.st_size);
	return 0;
}

static int check_chunk(ck *c, const MDB_val *k, const MDB_val *v)
{
	char what[128];
	chunk_what(k, DB_CHUNKS, what, sizeof what);
	if (k->mv_size != 16)
		return report(c, DB_CHUNKS, "", k, what, "has a key of %zu bytes, not 16",
			      k->mv_size);
	int rc = lookup(c, DB_CHUNKREFS, k->mv_data, 16, NULL);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return report(c, DB_CHUNKS, "", k, what,
			      "has no chunkrefs record (its reference count)");
	/* the payload is verify's chunk pass: decoded and hashed there; the
	 * header names the chunks it decodes against */
	mfs_chunk_view cv;
	if (mfs_rec_chunk_decode(v->mv_data, v->mv_size, &cv) < 0) {
		c->blobs_damaged = 1; /* the uses it gives are unknown */
		return 0;	      /* verify's chunk pass reports it, with its uses */
	}
	if ((rc = check_chunk_refs(c, k, what, &cv)) != 0)
		return rc;
	return check_chunk_entry(c, k, what, &cv);
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/* How many blob extents and chunk references use chunk @p key (c->uses is sorted). */
static uint64_t count_uses(const ck *c, const void *key)
{
	size_t lo = 0, hi = c->n_uses;
	while (lo < hi) { /* the first use >= key */
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(c->uses[mid].b, key, 16) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	uint64_t n = 0;
	while (lo + n < c->n_uses && memcmp(c->uses[lo + n].b, key, 16) == 0)
		n++;
	return n;
}

static int check_chunkref(ck *c, const MDB_val *k, const MDB_val *v)
{
	char what[128];
	chunk_what(k, DB_CHUNKREFS, what, sizeof what);
	if (k->mv_size != 16)
		return report(c, DB_CHUNKREFS, "", k, what,
			      "has a key of %zu bytes, not 16", k->mv_size);
	if (v->mv_size != 8)
		return report(c, DB_CHUNKREFS, "", k, what, "is %zu bytes long, not 8",
			      v->mv_size);
	uint64_t count = mfs_get_le64(v->mv_data);
	int rc = lookup(c, DB_CHUNKS, k->mv_data, 16, NULL);
	if (rc < 0)
		return rc;
	if (rc == 0 && count > 0)
		return report(c, DB_CHUNKREFS, "", k, what,
			      "counts %llu uses of a chunk that is not stored",
			      (unsigned long long)count);
	uint64_t uses = count_uses(c, k->mv_data);
	if (count < uses)
		return report(
		    c, DB_CHUNKREFS, "", k, what,
		    "counts %llu uses, but %llu blob extents and chunk references use "
		    "the chunk (`modelfs gc` sets the count right)",
		    (unsigned long long)count, (unsigned long long)uses);
	/* a damaged blob record's extents are unknown: more counts are expected */
	if (count > uses && !c->blobs_damaged)
		return report(
		    c, DB_CHUNKREFS, "", k, what,
		    "counts %llu uses, but only %llu blob extents and chunk references "
		    "use the chunk (`modelfs gc` sets the count right)",
		    (unsigned long long)count, (unsigned long long)uses);
	return 0;
}

/* ---- the walks ---- */

typedef int (*record_fn)(ck *c, const MDB_val *k, const MDB_val *v);

struct walk {
	ck *c;
	record_fn fn;
};

static int walk_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct walk *w = ud;
	return w->fn(w->c, k, v);
}

static int walk_db(ck *c, int db, const void *prefix, size_t plen, record_fn fn)
{
	struct walk w = {c, fn};
	return mfs_db_iter(c->t->txn, DBI(c->t, db), prefix, plen, walk_fn, &w);
}

/* The per-repo databases in the order a first problem is most telling. */
static const struct {
	int db;
	record_fn fn;
} repo_dbs[] = {
    {DB_COMMITS, check_commit},	 {DB_REFS, check_ref},	 {DB_FILES, check_file},
    {DB_NOEXIST, check_noexist}, {DB_BLOBS, check_blob}, {DB_TENSORS, check_tensor},
};

int mfs_check_store(mfs_txn *t, unsigned flags, mfs_check_fn fn, void *ud,
		    uint64_t *n_bad)
{
	ck c = {.t = t, .flags = flags, .fn = fn, .ud = ud, .whole = 1};
	c.seen_repo[0] = '\0';
	c.seen_ok = 0;
	int rc = check_meta_u64(&c, "format");
	if (rc == 0)
		rc = check_meta_u64(&c, "generation");
	if (rc == 0)
		rc = walk_db(&c, DB_REPOS, NULL, 0, check_repo_rec);
	/* an empty name never matches a key's repo: the first key looks it up */
	for (size_t i = 0; rc == 0 && i < sizeof repo_dbs / sizeof repo_dbs[0]; i++) {
		c.seen_repo[0] = '\0';
		c.seen_ok = 0;
		rc = walk_db(&c, repo_dbs[i].db, NULL, 0, repo_dbs[i].fn);
	}
	if (rc == 0)
		rc = walk_db(&c, DB_PACKS, NULL, 0, check_pack_rec);
	if (rc == 0)
		rc = walk_db(&c, DB_CHUNKS, NULL, 0, check_chunk);
	if (rc == 0) {
		if (c.n_uses)
			qsort(c.uses, c.n_uses, sizeof *c.uses, key_cmp);
		rc = walk_db(&c, DB_CHUNKREFS, NULL, 0, check_chunkref);
	}
	free(c.uses);
	if (n_bad)
		*n_bad = c.n_bad;
	return rc;
}

int mfs_check_repo(mfs_txn *t, const char *repo, unsigned flags, mfs_check_fn fn,
		   void *ud, uint64_t *n_bad)
{
	ck c = {.t = t, .flags = flags, .fn = fn, .ud = ud};
	char pfx[KEY_MAX + 2];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (n_bad)
		*n_bad = 0;
	if (!pl)
		return MFS_E_INVAL;
	MDB_val rk = {strlen(repo), (void *)repo}, rv;
	int rc = lookup(&c, DB_REPOS, repo, strlen(repo), &rv);
	if (rc == 0)
		rc = report(&c, DB_REPOS, repo, &rk, "repos record", "is missing");
	else if (rc == 1)
		rc = check_repo_rec(&c, &rk, &rv);
	for (size_t i = 0; rc == 0 && i < sizeof repo_dbs / sizeof repo_dbs[0]; i++)
		rc = walk_db(&c, repo_dbs[i].db, pfx, pl, repo_dbs[i].fn);
	if (n_bad)
		*n_bad = c.n_bad;
	return rc;
}

struct first_problem {
	char *buf;
	size_t cap;
};

static int first_fn(void *ud, const mfs_check_problem *p)
{
	struct first_problem *f = ud;
	snprintf(f->buf, f->cap, "its %s %s", p->what, p->why);
	return 1;
}

int mfs_check_repo_intact(mfs_txn *t, const char *repo, unsigned flags, char *why,
			  size_t cap)
{
	char dummy[1];
	struct first_problem f = {cap ? why : dummy, cap ? cap : sizeof dummy};
	f.buf[0] = '\0';
	int rc = mfs_check_repo(t, repo, flags, first_fn, &f, NULL);
	if (rc == 1)
		return 0;
	return rc < 0 ? rc : 1;
}

struct repos_walk {
	mfs_txn *t;
	unsigned flags;
	int (*cb)(void *ud, const mfs_check_repo_entry *r);
	void *ud;
};

static int repos_walk_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct repos_walk *w = ud;
	char name[KEY_MAX + 1], shown[SHOWN_MAX], why[WHY_MAX];
	size_t n = k->mv_size > KEY_MAX ? KEY_MAX : k->mv_size;
	memcpy(name, k->mv_data, n);
	name[n] = '\0';
	quote_key(k, 0, shown, sizeof shown);
	mfs_check_repo_entry e = {.shown = shown, .why = why};
	why[0] = '\0';
	if (memchr(k->mv_data, '\0', k->mv_size) || n > MFS_REPO_ID_MAX ||
	    mfs_repo_id_check(name, NULL) < 0) {
		snprintf(why, sizeof why,
			 "its repos record has a key that is not a repo id");
		return w->cb(w->ud, &e);
	}
	e.repo = name;
	if (mfs_rec_repo_decode(v->mv_data, v->mv_size, &e.info) < 0) {
		char vw[WHY_MAX];
		value_why(v, MFS_REC_REPO_LEN, vw, sizeof vw);
		snprintf(why, sizeof why, "its repos record %s", vw);
		return w->cb(w->ud, &e);
	}
	int rc = mfs_check_repo_intact(w->t, name, w->flags, why, sizeof why);
	if (rc < 0)
		return rc;
	e.intact = rc;
	e.info.repo = name;
	return w->cb(w->ud, &e);
}

int mfs_check_repos_foreach(mfs_txn *t, unsigned flags,
			    int (*cb)(void *ud, const mfs_check_repo_entry *r), void *ud)
{
	struct repos_walk w = {t, flags, cb, ud};
	return mfs_db_iter(t->txn, DBI(t, DB_REPOS), NULL, 0, repos_walk_fn, &w);
}

const char *mfs_check_left_out_line(const mfs_check_repo_entry *r, char *buf, size_t cap)
{
	if (r->repo)
		snprintf(
		    buf, cap,
		    "%s left out: %s (run `modelfs verify` to list every damaged record; "
		    "`modelfs rm %s` and ingest it again)",
		    r->shown, r->why, r->shown);
	else
		snprintf(buf, cap,
			 "repos record \"%s\" left out: %s (run `modelfs verify` to list "
			 "every damaged record)",
			 r->shown, r->why);
	return buf;
}

struct blobs_walk {
	size_t skip;
	int (*cb)(void *ud, const mfs_blob_info *b);
	void *ud;
};

static int blobs_walk_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct blobs_walk *w = ud;
	mfs_blob_info bi;
	size_t el = k->mv_size - w->skip;
	if (el > MFS_ETAG_MAX)
		return 0;
	memcpy(bi.etag, (const char *)k->mv_data + w->skip, el);
	bi.etag[el] = '\0';
	if (!mfs_etag_ok(bi.etag) ||
	    mfs_rec_blob_decode(v->mv_data, v->mv_size, &bi, NULL) < 0)
		return 0;
	return w->cb(w->ud, &bi);
}

int mfs_check_blobs_foreach(mfs_txn *t, const char *repo,
			    int (*cb)(void *ud, const mfs_blob_info *b), void *ud)
{
	char pfx[KEY_MAX + 2];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	struct blobs_walk w = {pl, cb, ud};
	return mfs_db_iter(t->txn, DBI(t, DB_BLOBS), pfx, pl, blobs_walk_fn, &w);
}
