/*
 * store.c - a store's records and their transactions (the environment, its
 * locks and compaction: env.c).
 * Record layouts, encoders and decoders live in records.h/records.c; every
 * record starts with a version byte (MFS_REC_V1) so a later format can add
 * fields.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include "bytes.h"
#include "grow.h"
#include "sha256.h"
#include "records.h"
#include "store_internal.h"

/* ---- keys ---- */

/* Delete every record whose key starts with prefix. */
static int mfs_db_delete_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t plen)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return mfs_db_rc(rc);
	MDB_val k = {plen, (void *)prefix}, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		/* After a delete, MDB_NEXT yields the deleted record's successor. */
		rc = mdb_cursor_del(cur, 0);
		if (rc)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : mfs_db_rc(rc);
}

/* ---- names ---- */

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

/* ---- transactions ---- */

int mfs_txn_begin(mfs_store *s, unsigned flags, mfs_txn **out)
{
	*out = NULL;
	int write = (flags & MFS_TXN_WRITE) != 0;
	if (write && s->rdonly)
		return MFS_E_INVAL;
	mfs_txn *t = malloc(sizeof *t);
	if (!t)
		return -ENOMEM;
	t->s = s;
	t->write = write;
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
	if (rc) {
		free(t);
		return mfs_db_rc(rc);
	}
	*out = t;
	return 0;
}

/* Is the file system holding the store (nearly) out of space? */
static int store_disk_full(mfs_store *s)
{
	int fd;
	struct statvfs sv;
	if (mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &sv) != 0)
		return 0;
	return (uint64_t)sv.f_bavail * sv.f_frsize < ((uint64_t)1 << 20);
}

int mfs_txn_commit(mfs_txn *t)
{
	mfs_store *s = t->s;
	int rc = mdb_txn_commit(t->txn);
	free(t);
	/* LMDB turns a short write (the disk filled up mid-flush) into EIO: say ENOSPC */
	if (rc == EIO && store_disk_full(s))
		rc = ENOSPC;
	return mfs_db_rc(rc);
}

void mfs_txn_abort(mfs_txn *t)
{
	if (!t)
		return;
	mdb_txn_abort(t->txn);
	free(t);
}

int mfs_store_generation(mfs_txn *t, uint64_t *out)
{
	return mfs_db_meta_get(t->txn, t->s->dbi[DB_META], "generation", out);
}

static int mfs_store_generation_bump(mfs_txn *t)
{
	uint64_t g = 0;
	int rc = mfs_store_generation(t, &g);
	if (rc < 0 && rc != MFS_E_NOTFOUND)
		return rc;
	return mfs_db_meta_put(t->txn, t->s->dbi[DB_META], "generation", g + 1);
}


/* ---- chunks (record layout: records.h) ---- */

void mfs_chunk_key_of(const void *raw, size_t len, mfs_chunk_key *out)
{
	XXH128_hash_t h = XXH3_128bits(raw, len);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	_Static_assert(sizeof c.digest == 16, "XXH128 canonical form is 16 bytes");
	memcpy(out->b, c.digest, 16);
}

char *mfs_chunk_key_hex(const mfs_chunk_key *k, char *buf)
{
	mfs_hex(k->b, 16, buf);
	return buf;
}

static int chunk_parse(const MDB_val *v, mfs_chunk_view *out)
{
	return mfs_rec_chunk_decode(v->mv_data, v->mv_size, out);
}

int mfs_chunk_locate(mfs_txn *t, const mfs_chunk_key *key, const void **data, size_t *len)
{
	/* mdb_get returns a record on overflow pages as a pointer computed from
	 * the page number in its leaf node: the record's pages are not read */
	MDB_val k = {16, (void *)key->b}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_CHUNKS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int mfs_chunk_get(mfs_txn *t, const mfs_chunk_key *key, mfs_chunk_view *out)
{
	const void *rec = NULL;
	size_t len = 0;
	int rc = mfs_chunk_locate(t, key, &rec, &len);
	return rc < 0 ? rc : mfs_rec_chunk_decode(rec, len, out);
}

int mfs_chunk_decode(const mfs_chunk_view *view, const mfs_chunk_key *key,
		     const mfs_ref_data *refs, void *dst, size_t dst_len, mfs_codec_ws *ws)
{
	if (dst_len != view->raw_len || (view->n_refs && !refs))
		return MFS_E_INVAL;
	mfs_decode_req rq = {
	    .src = view->payload,
	    .src_len = view->payload_len,
	    .dst = dst,
	    .dst_len = dst_len,
	    .geom = view->has_geom ? &view->geom : NULL,
	    .refs = view->n_refs ? refs : NULL,
	    .n_refs = view->n_refs,
	};
	int rc = mfs_codec_decode(view->codec, &rq, ws);
	if (rc < 0)
		return rc == -ENOMEM ? rc : MFS_E_CORRUPT;
	mfs_chunk_key got;
	mfs_chunk_key_of(dst, dst_len, &got);
	if (memcmp(got.b, key->b, 16) != 0)
		return MFS_E_CORRUPT;
	return 0;
}

int mfs_chunk_ref_check(const mfs_chunk_ref *ref, const mfs_chunk_view *rv)
{
	if (rv->n_refs != 0 || ref->off > rv->raw_len || ref->len > rv->raw_len - ref->off)
		return MFS_E_CORRUPT;
	return 0;
}

int mfs_chunk_exists(mfs_txn *t, const mfs_chunk_key *key)
{
	MDB_val k = {16, (void *)key->b}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_CHUNKREFS), &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? mfs_db_rc(rc) : 1;
}

static int mfs_chunkrefs_get(mfs_txn *t, const mfs_chunk_key *key, uint64_t *out)
{
	MDB_val k = {16, (void *)key->b}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_CHUNKREFS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	if (v.mv_size != 8)
		return MFS_E_CORRUPT;
	*out = mfs_get_le64(v.mv_data);
	return 0;
}

static int mfs_chunkrefs_put(mfs_txn *t, const mfs_chunk_key *key, uint64_t n)
{
	uint8_t b[8];
	mfs_put_le64(b, n);
	MDB_val k = {16, (void *)key->b}, v = {8, b};
	return mfs_db_rc(mdb_put(t->txn, DBI(t, DB_CHUNKREFS), &k, &v, 0));
}

int mfs_chunk_refcount(mfs_txn *t, const mfs_chunk_key *key, uint64_t *out)
{
	*out = 0;
	int rc = mfs_chunkrefs_get(t, key, out);
	return rc == MFS_E_NOTFOUND ? 0 : rc;
}

static int mfs_chunkrefs_add(mfs_txn *t, const mfs_chunk_key *key, int delta);

/* One more (+1) or one less (-1) use of each chunk @p v references. */
static int refs_count(mfs_txn *t, const mfs_chunk_view *v, int delta)
{
	for (uint32_t i = 0; i < v->n_refs; i++) {
		int rc = mfs_chunkrefs_add(t, &v->refs[i].key, delta);
		if (rc < 0 && !(delta < 0 && rc == MFS_E_CORRUPT))
			return rc; /* a count already 0 stays 0 (gc's recount settles it) */
	}
	return 0;
}

/* The references of @p m exist and have none themselves (depth 1). */
static int refs_usable(mfs_txn *t, const mfs_chunk_meta *m)
{
	for (size_t i = 0; i < m->n_refs; i++) {
		mfs_chunk_view rv;
		int rc = mfs_chunk_get(t, &m->refs[i].key, &rv);
		if (rc < 0)
			return rc;
		if (mfs_chunk_ref_check(&m->refs[i], &rv) < 0)
			return MFS_E_INVAL;
	}
	return 0;
}

/* Write record @p hdr + payload under @p key (new, or over an old one). */
static int chunk_write(mfs_txn *t, const mfs_chunk_key *key, const uint8_t *hdr, size_t hl,
		       const void *payload, size_t payload_len, unsigned flags)
{
	MDB_val k = {16, (void *)key->b}, v = {hl + payload_len, NULL};
	int rc = mdb_put(t->txn, DBI(t, DB_CHUNKS), &k, &v, flags | MDB_RESERVE);
	if (rc)
		return rc == MDB_KEYEXIST ? 1 : mfs_db_rc(rc);
	memcpy(v.mv_data, hdr, hl);
	memcpy((uint8_t *)v.mv_data + hl, payload, payload_len);
	return 0;
}

int mfs_chunk_put(mfs_txn *t, const mfs_chunk_key *key, const mfs_chunk_meta *m,
		  const void *payload, size_t payload_len, int *existed)
{
	if (existed)
		*existed = 0;
	uint8_t hbuf[MFS_REC_CHUNK_HDR_MAX];
	size_t hdr;
	int rc = mfs_rec_chunk_header(hbuf, m, &hdr);
	if (rc < 0)
		return rc;
	MDB_val k = {16, (void *)key->b}, v;
	rc = mdb_get(t->txn, DBI(t, DB_CHUNKS), &k, &v);
	if (rc == 0) {
		if (existed)
			*existed = 1;
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return mfs_db_rc(rc);
	if ((rc = refs_usable(t, m)) < 0)
		return rc;
	if ((rc = chunk_write(t, key, hbuf, hdr, payload, payload_len, MDB_NOOVERWRITE)) != 0)
		return rc < 0 ? rc : MFS_E_DB;
	for (size_t i = 0; i < m->n_refs; i++)
		if ((rc = mfs_chunkrefs_add(t, &m->refs[i].key, +1)) < 0)
			return rc;
	/* A new chunk is garbage (count 0) until a published blob references it. */
	return mfs_chunkrefs_put(t, key, 0);
}

int mfs_chunk_replace(mfs_txn *t, const mfs_chunk_key *key, const mfs_chunk_meta *m,
		      const void *payload, size_t payload_len)
{
	if (!t->write)
		return MFS_E_INVAL;
	uint8_t hbuf[MFS_REC_CHUNK_HDR_MAX];
	size_t hdr;
	int rc = mfs_rec_chunk_header(hbuf, m, &hdr);
	if (rc < 0)
		return rc;
	mfs_chunk_view old;
	rc = mfs_chunk_get(t, key, &old);
	if (rc == MFS_E_NOTFOUND)
		return rc;
	int old_ok = rc == 0; /* a record that does not parse names no references */
	if (rc < 0 && rc != MFS_E_CORRUPT)
		return rc;
	if ((rc = refs_usable(t, m)) < 0)
		return rc;
	for (size_t i = 0; i < m->n_refs; i++)
		if ((rc = mfs_chunkrefs_add(t, &m->refs[i].key, +1)) < 0)
			return rc;
	if (old_ok && (rc = refs_count(t, &old, -1)) < 0)
		return rc;
	/* The old value is not read from here on: overwriting it is safe. */
	if ((rc = chunk_write(t, key, hbuf, hdr, payload, payload_len, 0)) != 0)
		return rc < 0 ? rc : MFS_E_DB;
	return mfs_store_generation_bump(t);
}

struct chunks_iter {
	mfs_txn *t;
	int (*cb)(void *, const mfs_chunk_key *, const mfs_chunk_view *, uint64_t);
	void *ud;
};

static int chunks_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct chunks_iter *it = ud;
	mfs_chunk_key key;
	mfs_chunk_view view;
	if (k->mv_size != 16)
		return MFS_E_CORRUPT;
	memcpy(key.b, k->mv_data, 16);
	int rc = chunk_parse(v, &view);
	if (rc < 0)
		memset(&view, 0, sizeof view), view.codec = MFS_CODEC__COUNT;
	uint64_t refs = 0;
	rc = mfs_chunk_refcount(it->t, &key, &refs);
	if (rc < 0)
		return rc;
	return it->cb(it->ud, &key, &view, refs);
}

int mfs_chunks_foreach(mfs_txn *t,
		       int (*cb)(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
				 uint64_t refcount),
		       void *ud)
{
	struct chunks_iter it = {t, cb, ud};
	return mfs_db_iter(t->txn, DBI(t, DB_CHUNKS), NULL, 0, chunks_iter_fn, &it);
}

/* ---- repos, refs, commits, files (record layouts: records.h) ---- */

struct str_iter {
	const void *cb;
	void *ud;
	size_t skip; /* key prefix length to skip */
};

static int repos_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char name[MFS_REPO_ID_MAX + 1];
	if (k->mv_size > MFS_REPO_ID_MAX)
		return MFS_E_CORRUPT;
	memcpy(name, k->mv_data, k->mv_size);
	name[k->mv_size] = '\0';
	mfs_repo_info ri = {.repo = name};
	if (mfs_rec_repo_decode(v->mv_data, v->mv_size, &ri) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_repo_info *))it->cb)(it->ud, &ri);
}

int mfs_repos_foreach(mfs_txn *t, int (*cb)(void *ud, const mfs_repo_info *r), void *ud)
{
	struct str_iter it = {(const void *)cb, ud, 0};
	return mfs_db_iter(t->txn, DBI(t, DB_REPOS), NULL, 0, repos_iter_fn, &it);
}

int mfs_repo_get(mfs_txn *t, const char *repo, mfs_repo_info *out)
{
	MDB_val k = {strlen(repo), (void *)repo}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_REPOS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	out->repo = NULL;
	return mfs_rec_repo_decode(v.mv_data, v.mv_size, out);
}

/* Copy the key's tail after a prefix into buf as a C string. */
static int key_tail(const MDB_val *k, size_t skip, char *buf, size_t cap)
{
	if (k->mv_size < skip || k->mv_size - skip >= cap)
		return MFS_E_CORRUPT;
	size_t n = k->mv_size - skip;
	memcpy(buf, (const char *)k->mv_data + skip, n);
	buf[n] = '\0';
	return 0;
}

static int refs_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char name[MFS_REF_MAX + 1];
	mfs_ref_info ri = {.name = name};
	if (key_tail(k, it->skip, name, sizeof name) < 0 ||
	    mfs_rec_ref_decode(v->mv_data, v->mv_size, ri.commit) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_ref_info *))it->cb)(it->ud, &ri);
}

int mfs_refs_foreach(mfs_txn *t, const char *repo,
		     int (*cb)(void *ud, const mfs_ref_info *r), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_REFS), pfx, pl, refs_iter_fn, &it);
}

int mfs_ref_get(mfs_txn *t, const char *repo, const char *ref, char commit[MFS_COMMIT_LEN + 1])
{
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, ref, NULL);
	if (!kl)
		return MFS_E_INVAL;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_REFS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	return mfs_rec_ref_decode(v.mv_data, v.mv_size, commit);
}

static int commits_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	mfs_commit_info ci;
	if (key_tail(k, it->skip, ci.commit, sizeof ci.commit) < 0)
		return MFS_E_CORRUPT;
	if (mfs_rec_commit_decode(v->mv_data, v->mv_size, &ci) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_commit_info *))it->cb)(it->ud, &ci);
}

int mfs_commits_foreach(mfs_txn *t, const char *repo,
			int (*cb)(void *ud, const mfs_commit_info *c), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_COMMITS), pfx, pl, commits_iter_fn, &it);
}

struct commit_pick {
	const char *want; /* a commit to find, or NULL for the newest */
	char *commit;
	uint64_t time;
	int found;
};

static int commit_pick_fn(void *ud, const mfs_commit_info *c)
{
	struct commit_pick *p = ud;
	if (p->want) {
		if (strcmp(p->want, c->commit) != 0)
			return 0;
		memcpy(p->commit, c->commit, MFS_COMMIT_LEN + 1);
		p->found = 1;
		return 1;
	}
	if (!p->found || c->time > p->time) {
		memcpy(p->commit, c->commit, MFS_COMMIT_LEN + 1);
		p->time = c->time;
		p->found = 1;
	}
	return 0;
}

int mfs_commit_pick(mfs_txn *t, const char *repo, const char *want,
		    char commit[MFS_COMMIT_LEN + 1])
{
	struct commit_pick p = {.want = want, .commit = commit};
	int rc = mfs_commits_foreach(t, repo, commit_pick_fn, &p);
	if (rc < 0)
		return rc;
	return p.found ? 0 : MFS_E_NOTFOUND;
}

static int mfs_file_val_decode(const MDB_val *v, mfs_file_info *fi)
{
	return mfs_rec_file_decode(v->mv_data, v->mv_size, fi);
}

static int files_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char path[MFS_PATH_MAX + 1];
	mfs_file_info fi = {.path = path};
	if (key_tail(k, it->skip, path, sizeof path) < 0 || mfs_file_val_decode(v, &fi) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_file_info *))it->cb)(it->ud, &fi);
}

int mfs_files_foreach(mfs_txn *t, const char *repo, const char *commit,
		      int (*cb)(void *ud, const mfs_file_info *f), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, commit);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_FILES), pfx, pl, files_iter_fn, &it);
}

int mfs_file_get(mfs_txn *t, const char *repo, const char *commit, const char *path,
		 mfs_file_info *out)
{
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, commit, path);
	if (!kl)
		return MFS_E_NOTFOUND;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_FILES), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	out->path = NULL;
	return mfs_file_val_decode(&v, out);
}

static int noexist_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char path[MFS_PATH_MAX + 1];
	if (key_tail(k, it->skip, path, sizeof path) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const char *))it->cb)(it->ud, path);
}

int mfs_noexist_foreach(mfs_txn *t, const char *repo, const char *commit,
			int (*cb)(void *ud, const char *path), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, commit);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_NOEXIST), pfx, pl, noexist_iter_fn, &it);
}

/* ---- blobs and tensors (record layouts: records.h) ----
 * A tensors key holds the name itself, or for a long name a prefix and a hash;
 * the record always holds the whole name.
 */
#define TENSOR_KEY_NAME_MAX 200

static int mfs_blob_val_decode(const MDB_val *v, mfs_blob_info *bi, const uint8_t **ext)
{
	return mfs_rec_blob_decode(v->mv_data, v->mv_size, bi, ext);
}

int mfs_blob_get(mfs_txn *t, const char *repo, const char *etag, mfs_blob_info *info,
		 mfs_extent **extents)
{
	if (extents)
		*extents = NULL;
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, etag, NULL);
	if (!kl || strlen(etag) > MFS_ETAG_MAX)
		return MFS_E_NOTFOUND;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_BLOBS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	const uint8_t *ep;
	if ((rc = mfs_blob_val_decode(&v, info, &ep)) < 0)
		return rc;
	strcpy(info->etag, etag);
	if (!extents)
		return 0;
	mfs_extent *e = malloc((info->n_extents ? info->n_extents : 1) * sizeof *e);
	if (!e)
		return -ENOMEM;
	if ((rc = mfs_rec_blob_extents(info, ep, e)) < 0) {
		free(e);
		return rc;
	}
	*extents = e;
	return 0;
}

static int blobs_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	mfs_blob_info bi;
	const uint8_t *ep;
	if (key_tail(k, it->skip, bi.etag, sizeof bi.etag) < 0 || mfs_blob_val_decode(v, &bi, &ep) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_blob_info *))it->cb)(it->ud, &bi);
}

int mfs_blobs_foreach(mfs_txn *t, const char *repo,
		      int (*cb)(void *ud, const mfs_blob_info *b), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_BLOBS), pfx, pl, blobs_iter_fn, &it);
}

size_t mfs_extent_find(const mfs_extent *ext, size_t n, uint64_t off)
{
	if (n == 0 || off >= ext[n - 1].off + ext[n - 1].len)
		return n;
	size_t lo = 0, hi = n - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo + 1) / 2;
		if (ext[mid].off <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static int tensors_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct str_iter *it = ud;
	char name[MFS_REC_TENSOR_STRS];
	mfs_tensor_info ti;
	if (mfs_rec_tensor_decode(v->mv_data, v->mv_size, &ti, name) < 0)
		return MFS_E_CORRUPT;
	return ((int (*)(void *, const mfs_tensor_info *))it->cb)(it->ud, &ti);
}

int mfs_tensors_foreach(mfs_txn *t, const char *repo, const char *etag,
			int (*cb)(void *ud, const mfs_tensor_info *ti), void *ud)
{
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, etag);
	if (!pl)
		return MFS_E_INVAL;
	struct str_iter it = {(const void *)cb, ud, pl};
	return mfs_db_iter(t->txn, DBI(t, DB_TENSORS), pfx, pl, tensors_iter_fn, &it);
}

/* The tensors key: the name itself, or for long names a prefix plus a hash. */
static size_t tensor_key(char *buf, size_t cap, const char *repo, const char *etag,
			 const char *name, size_t data_off_for_order)
{
	char kn[TENSOR_KEY_NAME_MAX + 24];
	size_t nl = strlen(name);
	if (nl <= TENSOR_KEY_NAME_MAX) {
		memcpy(kn, name, nl + 1);
	} else {
		memcpy(kn, name, TENSOR_KEY_NAME_MAX - 17);
		snprintf(kn + TENSOR_KEY_NAME_MAX - 17, 18, "#%016llx",
			 (unsigned long long)XXH3_64bits(name, nl));
	}
	(void)data_off_for_order;
	return mfs_db_key_join(buf, cap, repo, etag, kn);
}

static int mfs_chunkrefs_add(mfs_txn *t, const mfs_chunk_key *key, int delta)
{
	uint64_t n = 0;
	int rc = mfs_chunkrefs_get(t, key, &n);
	if (rc < 0)
		return rc; /* MFS_E_NOTFOUND: the chunk was never stored */
	if (delta < 0 && n == 0)
		return MFS_E_CORRUPT;
	return mfs_chunkrefs_put(t, key, delta < 0 ? n - 1 : n + 1);
}

int mfs_blob_put(mfs_txn *t, const char *repo, const mfs_blob_rec *b, int *existed)
{
	if (existed)
		*existed = 0;
	if (!mfs_etag_ok(b->etag))
		return MFS_E_INVAL;
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, b->etag, NULL);
	if (!kl)
		return MFS_E_INVAL;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_BLOBS), &k, &v);
	mfs_blob_info old;
	const uint8_t *old_ext;
	if (rc == 0 && mfs_blob_val_decode(&v, &old, &old_ext) == 0) {
		if (existed)
			*existed = 1;
		return 0;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mfs_db_rc(rc);
	/* rc == 0 here: a damaged record, which this one replaces (re-ingest
	 * repairs it; the counts it gave are gc's recount to settle) */
	char tp[512];
	size_t tpl = mfs_db_prefix_join(tp, sizeof tp, repo, b->etag);
	if (rc == 0 && tpl && (rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_TENSORS), tp, tpl)) < 0)
		return rc;
	uint64_t expect = 0;
	for (size_t i = 0; i < b->n_extents; i++) {
		if (b->extents[i].off != expect || b->extents[i].len == 0)
			return MFS_E_INVAL;
		expect += b->extents[i].len;
		if ((rc = mfs_chunkrefs_add(t, &b->extents[i].key, +1)) < 0)
			return rc;
	}
	if (expect != b->size)
		return MFS_E_INVAL;
	size_t blen;
	if ((rc = mfs_rec_blob_size(b->n_extents, &blen)) < 0)
		return rc;
	v.mv_size = blen;
	rc = mdb_put(t->txn, DBI(t, DB_BLOBS), &k, &v, MDB_RESERVE);
	if (rc)
		return mfs_db_rc(rc);
	if ((rc = mfs_rec_blob_encode(v.mv_data, blen, b)) < 0)
		return rc;
	for (size_t i = 0; i < b->n_tensors; i++) {
		const mfs_tensor_info *ti = &b->tensors[i];
		uint8_t rec[MFS_REC_TENSOR_MAX];
		size_t rl;
		if ((rc = mfs_rec_tensor_encode(rec, ti, &rl)) < 0)
			return rc;
		char tk[512];
		size_t tkl = tensor_key(tk, sizeof tk, repo, b->etag, ti->name, 0);
		if (!tkl)
			return MFS_E_INVAL;
		MDB_val kk = {tkl, tk}, vv = {rl, rec};
		if ((rc = mdb_put(t->txn, DBI(t, DB_TENSORS), &kk, &vv, 0)))
			return mfs_db_rc(rc);
	}
	return 0;
}

int mfs_blob_set_stored(mfs_txn *t, const char *repo, const char *etag, uint64_t stored_bytes)
{
	char key[512];
	size_t kl = mfs_db_key_join(key, sizeof key, repo, etag, NULL);
	if (!kl || !mfs_etag_ok(etag))
		return MFS_E_INVAL;
	MDB_val k = {kl, key}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_BLOBS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	mfs_blob_info bi;
	if ((rc = mfs_blob_val_decode(&v, &bi, NULL)) < 0)
		return rc;
	uint8_t *copy = malloc(v.mv_size);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, v.mv_data, v.mv_size);
	mfs_rec_blob_set_stored(copy, stored_bytes);
	MDB_val nv = {v.mv_size, copy};
	rc = mfs_db_rc(mdb_put(t->txn, DBI(t, DB_BLOBS), &k, &nv, 0));
	free(copy);
	return rc;
}

int mfs_tensor_update(mfs_txn *t, const char *repo, const char *etag, const mfs_tensor_info *ti)
{
	if (!mfs_etag_ok(etag) || !ti || !ti->name)
		return MFS_E_INVAL;
	char tk[512];
	size_t tkl = tensor_key(tk, sizeof tk, repo, etag, ti->name, 0);
	if (!tkl)
		return MFS_E_INVAL;
	MDB_val kk = {tkl, tk}, vv;
	int rc = mdb_get(t->txn, DBI(t, DB_TENSORS), &kk, &vv);
	if (rc)
		return mfs_db_rc(rc); /* MDB_NOTFOUND -> MFS_E_NOTFOUND */
	uint8_t rec[MFS_REC_TENSOR_MAX];
	size_t rl;
	if ((rc = mfs_rec_tensor_encode(rec, ti, &rl)) < 0)
		return rc;
	vv.mv_size = rl;
	vv.mv_data = rec;
	return mfs_db_rc(mdb_put(t->txn, DBI(t, DB_TENSORS), &kk, &vv, 0));
}

static int put_kv(mfs_txn *t, int db, const char *key, size_t kl, const void *val, size_t vl)
{
	MDB_val k = {kl, (void *)key}, v = {vl, (void *)val};
	return mfs_db_rc(mdb_put(t->txn, DBI(t, db), &k, &v, 0));
}

/* Is one ref name a folder of the other ("main" and "main/sub")? */
static int ref_nested(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la == lb)
		return 0;
	const char *s = la < lb ? a : b, *l = la < lb ? b : a;
	size_t n = la < lb ? la : lb;
	return !strncmp(s, l, n) && l[n] == '/';
}

struct ref_conflict {
	const char *name;
	char other[MFS_REF_MAX + 1];
};

static int ref_conflict_fn(void *ud, const mfs_ref_info *r)
{
	struct ref_conflict *c = ud;
	if (!ref_nested(c->name, r->name))
		return 0;
	snprintf(c->other, sizeof c->other, "%s", r->name);
	return 1;
}

/*
 * Ref refs[i] may not be a folder of another ref of the repo, or hold one
 * (git's rule: refs are files under refs/, and "main" cannot be both a file
 * and a folder there, as the hub cache on disk could not hold both).
 */
static int ref_conflict_check(mfs_txn *t, const char *repo, const char *const *refs,
			      size_t n_refs, size_t i, mfs_errmsg *err)
{
	struct ref_conflict c = {.name = refs[i]};
	for (size_t j = 0; j < n_refs && !c.other[0]; j++)
		if (ref_nested(refs[i], refs[j]))
			snprintf(c.other, sizeof c.other, "%s", refs[j]);
	if (!c.other[0]) {
		int rc = mfs_refs_foreach(t, repo, ref_conflict_fn, &c);
		if (rc < 0)
			return mfs_err(err, rc, "%s: reading its refs failed: %s", repo,
				       mfs_strerror(rc));
	}
	if (!c.other[0])
		return 0;
	return mfs_err(err, MFS_E_INVAL,
		       "%s: ref \"%s\" cannot sit beside ref \"%s\" (one would be a "
		       "folder of the other): choose another name with --ref",
		       repo, refs[i], c.other);
}

int mfs_snapshot_publish(mfs_txn *t, const char *repo, const char *commit, uint64_t time,
			 const mfs_file_rec *files, size_t n_files, const char *const *noexist,
			 size_t n_noexist, const char *const *refs, size_t n_refs,
			 mfs_errmsg *err)
{
	int rc;
	if ((rc = mfs_repo_id_check(repo, err)) < 0)
		return rc;
	if (!mfs_commit_ok(commit))
		return mfs_err(err, MFS_E_INVAL, "%s: commit \"%s\" is not 40 lower-case hex",
			       repo, commit);
	char key[512];
	/* repo record: keep the creation time of an existing repo */
	uint64_t created = time;
	mfs_repo_info old;
	if (mfs_repo_get(t, repo, &old) == 0)
		created = old.created;
	uint8_t rrec[MFS_REC_REPO_LEN];
	mfs_rec_repo_encode(rrec, created, time);
	if ((rc = put_kv(t, DB_REPOS, repo, strlen(repo), rrec, sizeof rrec)) < 0)
		return rc;
	/* commit record */
	size_t kl = mfs_db_key_join(key, sizeof key, repo, commit, NULL);
	uint8_t crec[MFS_REC_COMMIT_LEN];
	mfs_rec_commit_encode(crec, time, n_files);
	if ((rc = put_kv(t, DB_COMMITS, key, kl, crec, sizeof crec)) < 0)
		return rc;
	/* files: replace the commit's list */
	size_t pl = mfs_db_prefix_join(key, sizeof key, repo, commit);
	if ((rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_FILES), key, pl)) < 0 ||
	    (rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_NOEXIST), key, pl)) < 0)
		return rc;
	for (size_t i = 0; i < n_files; i++) {
		const mfs_file_rec *f = &files[i];
		if ((rc = mfs_repo_path_check(f->path, err)) < 0)
			return rc;
		mfs_blob_info bi;
		if (mfs_blob_get(t, repo, f->etag, &bi, NULL) < 0)
			return mfs_err(err, MFS_E_NOTFOUND,
				       "%s: file %s points to blob %s, which is not stored", repo,
				       f->path, f->etag);
		kl = mfs_db_key_join(key, sizeof key, repo, commit, f->path);
		if (!kl)
			return mfs_err(err, MFS_E_INVAL, "%s: path too long: %s", repo,
				       f->path);
		uint8_t frec[MFS_REC_FILE_MAX];
		size_t fl;
		if (mfs_rec_file_encode(frec, f->mode, f->etag, &fl) < 0)
			return mfs_err(err, MFS_E_INVAL, "%s: file %s: invalid etag \"%s\"",
				       repo, f->path, f->etag);
		if ((rc = put_kv(t, DB_FILES, key, kl, frec, fl)) < 0)
			return rc;
	}
	for (size_t i = 0; i < n_noexist; i++) {
		if (mfs_repo_path_check(noexist[i], NULL) < 0)
			continue; /* a .no_exist entry we cannot name is only a cache hint */
		kl = mfs_db_key_join(key, sizeof key, repo, commit, noexist[i]);
		if (kl && (rc = put_kv(t, DB_NOEXIST, key, kl, "", 0)) < 0)
			return rc;
	}
	for (size_t i = 0; i < n_refs; i++) {
		if ((rc = mfs_ref_name_check(refs[i], err)) < 0)
			return mfs_err_prefix(err, rc, "%s", repo);
		if ((rc = ref_conflict_check(t, repo, refs, n_refs, i, err)) < 0)
			return rc;
		kl = mfs_db_key_join(key, sizeof key, repo, refs[i], NULL);
		if (!kl || (rc = put_kv(t, DB_REFS, key, kl, commit, MFS_COMMIT_LEN)) < 0)
			return rc ? rc : MFS_E_INVAL;
	}
	return mfs_store_generation_bump(t);
}

/* ---- removal and gc ---- */

static int mfs_blob_unref(mfs_txn *t, const MDB_val *v_in)
{
	/* Copy the record: the writes below may move pages that v_in points into. */
	MDB_val v = {v_in->mv_size, malloc(v_in->mv_size ? v_in->mv_size : 1)};
	if (!v.mv_data)
		return -ENOMEM;
	memcpy(v.mv_data, v_in->mv_data, v_in->mv_size);
	mfs_blob_info bi;
	const uint8_t *ep;
	/*
	 * A record that does not parse names no chunks we can find: its
	 * chunks keep the counts it gave them (too high: kept, never lost),
	 * which gc's recount lowers once no damaged blob record is left.
	 */
	int rc = mfs_blob_val_decode(&v, &bi, &ep) < 0 ? 1 : 0;
	for (uint64_t i = 0; rc == 0 && i < bi.n_extents; i++) {
		mfs_extent e;
		mfs_rec_extent_get(ep, i, &e);
		rc = mfs_chunkrefs_add(t, &e.key, -1);
		if (rc == MFS_E_NOTFOUND)
			rc = 0;
	}
	free(v.mv_data);
	return rc > 0 ? 0 : rc;
}

static int unref_iter_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	return mfs_blob_unref(ud, v);
}

int mfs_repo_remove(mfs_txn *t, const char *repo)
{
	MDB_val k = {strlen(repo), (void *)repo}, v;
	int rc = mdb_get(t->txn, DBI(t, DB_REPOS), &k, &v);
	if (rc)
		return mfs_db_rc(rc);
	char pfx[512];
	size_t pl = mfs_db_prefix_join(pfx, sizeof pfx, repo, NULL);
	if (!pl)
		return MFS_E_INVAL;
	if ((rc = mfs_db_iter(t->txn, DBI(t, DB_BLOBS), pfx, pl, unref_iter_fn, t)) < 0)
		return rc;
	static const int dbs[] = {DB_REFS, DB_COMMITS, DB_FILES, DB_NOEXIST, DB_BLOBS,
				  DB_TENSORS};
	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++)
		if ((rc = mfs_db_delete_prefix(t->txn, DBI(t, dbs[i]), pfx, pl)) < 0)
			return rc;
	if ((rc = mdb_del(t->txn, DBI(t, DB_REPOS), &k, NULL)))
		return mfs_db_rc(rc);
	return mfs_store_generation_bump(t);
}

/* The set of repo\0etag keys that some file points to, sorted for bsearch. */
struct keyset {
	char **keys;
	size_t n, cap;
};

static int keyset_add_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct keyset *ks = ud;
	/* files key: repo \0 commit \0 path; value holds the etag */
	const char *kp = k->mv_data;
	size_t rl = strnlen(kp, k->mv_size);
	mfs_file_info fi;
	if (rl >= k->mv_size || mfs_file_val_decode(v, &fi) < 0)
		return MFS_E_CORRUPT;
	size_t el = strlen(fi.etag);
	char *s = malloc(rl + 1 + el + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, kp, rl);
	s[rl] = '\0';
	memcpy(s + rl + 1, fi.etag, el + 1);
	char **nk = mfs_grow(ks->keys, &ks->cap, ks->n, sizeof *nk, 256);
	if (!nk) {
		free(s);
		return -ENOMEM;
	}
	ks->keys = nk;
	ks->keys[ks->n++] = s;
	return 0;
}

/* Compare "repo\0etag" strings. */
static int pair_cmp(const char *a, const char *b)
{
	int c = strcmp(a, b);
	if (c)
		return c;
	return strcmp(a + strlen(a) + 1, b + strlen(b) + 1);
}

static int pair_qsort_cmp(const void *a, const void *b)
{
	return pair_cmp(*(char *const *)a, *(char *const *)b);
}

static int keyset_has(const struct keyset *ks, const char *pair)
{
	size_t lo = 0, hi = ks->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = pair_cmp(ks->keys[mid], pair);
		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Chunk keys of every blob extent, sorted; *damaged = 1 when a blob record does not parse. */
struct extent_keys {
	uint8_t (*k)[16];
	size_t n, cap;
	int damaged;
};

static int keys_push(struct extent_keys *ek, const mfs_chunk_key *key);

static int extent_keys_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct extent_keys *ek = ud;
	mfs_blob_info bi;
	const uint8_t *ep;
	if (mfs_blob_val_decode(v, &bi, &ep) < 0) {
		ek->damaged = 1;
		return 1; /* its chunks are unknown: no recount */
	}
	for (uint64_t i = 0; i < bi.n_extents; i++) {
		mfs_extent e;
		mfs_rec_extent_get(ep, i, &e);
		int rc = keys_push(ek, &e.key);
		if (rc < 0)
			return rc;
	}
	return 0;
}


static int key16_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static int keys_push(struct extent_keys *ek, const mfs_chunk_key *key)
{
	uint8_t(*g)[16] = mfs_grow(ek->k, &ek->cap, ek->n, sizeof *g, 4096);
	if (!g)
		return -ENOMEM;
	ek->k = g;
	memcpy(ek->k[ek->n++], key->b, 16);
	return 0;
}

/* The chunks each stored chunk references (a use each, like an extent). */
static int chunk_ref_keys_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct extent_keys *ek = ud;
	mfs_chunk_view cv;
	if (mfs_rec_chunk_decode(v->mv_data, v->mv_size, &cv) < 0) {
		ek->damaged = 1;
		return 1; /* its references are unknown: no recount */
	}
	for (uint32_t i = 0; i < cv.n_refs; i++) {
		int rc = keys_push(ek, &cv.refs[i].key);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Set every chunk's reference count to the number of blob extents and
 * stored chunks' references using it (the invariant in store.h).  Counts
 * drift only through damage: removing a repo whose blob record no longer
 * parses cannot lower the counts that blob gave.  Runs only when every blob
 * and chunk record parses (else a count might be lowered below what a
 * damaged record still uses, and its chunk freed); a count too low is
 * raised, so a chunk in use is never swept.
 */
static int recount_refs(mfs_txn *t, mfs_gc_stat *out)
{
	struct extent_keys ek = {0};
	int rc = mfs_db_iter(t->txn, DBI(t, DB_BLOBS), NULL, 0, extent_keys_fn, &ek);
	if (rc == 0 && !ek.damaged)
		rc = mfs_db_iter(t->txn, DBI(t, DB_CHUNKS), NULL, 0, chunk_ref_keys_fn, &ek);
	if (rc < 0 || ek.damaged) {
		out->recount_skipped = ek.damaged;
		free(ek.k);
		return rc < 0 ? rc : 0;
	}
	if (ek.n)
		qsort(ek.k, ek.n, 16, key16_cmp);
	MDB_cursor *cur;
	if ((rc = mfs_db_rc(mdb_cursor_open(t->txn, DBI(t, DB_CHUNKREFS), &cur))) < 0) {
		free(ek.k);
		return rc;
	}
	MDB_val k, v;
	size_t i = 0;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (mrc == 0) {
		if (k.mv_size != 16 || v.mv_size != 8) {
			mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue; /* verify reports it; not ours to guess */
		}
		while (i < ek.n && memcmp(ek.k[i], k.mv_data, 16) < 0)
			i++; /* an extent whose chunk has no count: verify's to report */
		uint64_t uses = 0;
		while (i < ek.n && memcmp(ek.k[i], k.mv_data, 16) == 0)
			uses++, i++;
		if (mfs_get_le64(v.mv_data) != uses) {
			uint8_t b[8];
			mfs_put_le64(b, uses);
			MDB_val nv = {8, b};
			if ((mrc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT)))
				break;
			out->counts_fixed++;
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	free(ek.k);
	return mrc == MDB_NOTFOUND || mrc == 0 ? 0 : mfs_db_rc(mrc);
}

/*
 * Remove every chunk whose count is 0, then drop one use of each chunk the
 * removed ones referenced (after the walk: the cursor is not disturbed).
 * @return 1 when such a drop reached 0 (another pass has work), 0, or an error
 */
static int sweep_pass(mfs_txn *t, mfs_gc_stat *out)
{
	struct extent_keys dropped = {0};
	MDB_cursor *cur;
	int rc = mfs_db_rc(mdb_cursor_open(t->txn, DBI(t, DB_CHUNKREFS), &cur));
	if (rc < 0)
		return rc;
	MDB_val k, v;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (mrc == 0) {
		if (v.mv_size == 8 && mfs_get_le64(v.mv_data) == 0 && k.mv_size == 16) {
			MDB_val ck = k, cv;
			if (mdb_get(t->txn, DBI(t, DB_CHUNKS), &ck, &cv) == 0) {
				mfs_chunk_view view;
				if (mfs_rec_chunk_decode(cv.mv_data, cv.mv_size, &view) == 0)
					for (uint32_t i = 0; i < view.n_refs && rc == 0; i++)
						rc = keys_push(&dropped, &view.refs[i].key);
				if (rc < 0)
					break;
				out->bytes_freed += cv.mv_size;
				if ((mrc = mdb_del(t->txn, DBI(t, DB_CHUNKS), &ck, NULL)))
					break;
			}
			if ((mrc = mdb_cursor_del(cur, 0)))
				break;
			out->chunks_removed++;
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc == 0 && mrc != MDB_NOTFOUND && mrc != 0)
		rc = mfs_db_rc(mrc);
	int again = 0;
	for (size_t i = 0; rc == 0 && i < dropped.n; i++) {
		mfs_chunk_key key;
		memcpy(key.b, dropped.k[i], 16);
		uint64_t n = 0;
		int grc = mfs_chunkrefs_get(t, &key, &n);
		if (grc == MFS_E_NOTFOUND || (grc == 0 && n == 0))
			continue; /* already gone, or already garbage */
		if (grc < 0)
			rc = grc;
		else if ((rc = mfs_chunkrefs_put(t, &key, n - 1)) == 0 && n == 1)
			again = 1;
	}
	free(dropped.k);
	return rc < 0 ? rc : again;
}

int mfs_gc_sweep(mfs_txn *t, mfs_gc_stat *out)
{
	memset(out, 0, sizeof *out);
	struct keyset ks = {0};
	int rc = mfs_db_iter(t->txn, DBI(t, DB_FILES), NULL, 0, keyset_add_fn, &ks);
	if (rc < 0)
		goto done;
	if (ks.n)
		qsort(ks.keys, ks.n, sizeof *ks.keys, pair_qsort_cmp);

	/* 1. blobs that no file points to (left by an ingest that died) */
	MDB_cursor *cur;
	if ((rc = mfs_db_rc(mdb_cursor_open(t->txn, DBI(t, DB_BLOBS), &cur))) < 0)
		goto done;
	MDB_val k, v;
	int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (mrc == 0) {
		char pair[512];
		if (k.mv_size >= sizeof pair) {
			mrc = MDB_CORRUPTED;
			break;
		}
		memcpy(pair, k.mv_data, k.mv_size);
		pair[k.mv_size] = '\0';
		if (!keyset_has(&ks, pair)) {
			if ((rc = mfs_blob_unref(t, &v)) < 0)
				break;
			char tp[512];
			size_t tpl = mfs_db_prefix_join(tp, sizeof tp, pair, pair + strlen(pair) + 1);
			if (tpl && (rc = mfs_db_delete_prefix(t->txn, DBI(t, DB_TENSORS), tp, tpl)) < 0)
				break;
			if ((mrc = mdb_cursor_del(cur, 0)))
				break;
			out->blobs_removed++;
		}
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc < 0)
		goto done;
	if (mrc != MDB_NOTFOUND && mrc != 0) {
		rc = mfs_db_rc(mrc);
		goto done;
	}

	/* 2. reference counts against the extents that use them */
	if ((rc = recount_refs(t, out)) < 0)
		goto done;

	/* 3. chunks with no uses, then those whose last use was a chunk removed */
	while ((rc = sweep_pass(t, out)) > 0)
		;
	if (rc < 0)
		goto done;
	if (out->blobs_removed || out->chunks_removed || out->counts_fixed)
		rc = mfs_store_generation_bump(t);
done:
	for (size_t i = 0; i < ks.n; i++)
		free(ks.keys[i]);
	free(ks.keys);
	return rc;
}

/* ---- space ---- */

static int free_pages_fn(void *ud, const MDB_val *k, const MDB_val *v)
{
	/* The free-list value is a count followed by that many page numbers. */
	if (v->mv_size >= sizeof(size_t)) {
		size_t n;
		memcpy(&n, v->mv_data, sizeof n);
		*(uint64_t *)ud += n;
	}
	return 0;
}

static int chunk_stat_fn(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
			 uint64_t refcount)
{
	mfs_store_stat *st = ud;
	st->n_chunks++;
	st->chunk_payload_bytes += v->payload_len;
	st->chunk_raw_bytes += v->raw_len;
	return 0;
}

int mfs_store_stat_get(mfs_txn *t, mfs_store_stat *out)
{
	memset(out, 0, sizeof *out);
	MDB_envinfo ei;
	MDB_stat ms;
	mdb_env_info(t->s->env, &ei);
	mdb_env_stat(t->s->env, &ms);
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/data.mdb", t->s->dir);
	if (stat(path, &st) == 0)
		out->file_bytes = (uint64_t)st.st_size;
	uint64_t free_pages = 0;
	int rc = mfs_db_iter(t->txn, 0, NULL, 0, free_pages_fn, &free_pages);
	if (rc < 0)
		return rc;
	uint64_t used = (uint64_t)(ei.me_last_pgno + 1);
	used = used > free_pages ? used - free_pages : 0;
	out->used_bytes = used * ms.ms_psize;
	return mfs_chunks_foreach(t, chunk_stat_fn, out);
}
