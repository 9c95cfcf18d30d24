/*
 * sharing.c - a repo's chunks against the rest of the store (sharing.h).
 */
#include "sharing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

struct keys {
	mfs_chunk_key *k;
	size_t n, cap;
};

static int keys_add(struct keys *ks, const mfs_chunk_key *k)
{
	mfs_chunk_key *g = mfs_grow(ks->k, &ks->cap, ks->n, sizeof *g, 1024);
	if (!g)
		return -ENOMEM;
	ks->k = g;
	ks->k[ks->n++] = *k;
	return 0;
}

static int refd_fn(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
		   uint64_t refcount)
{
	(void)key;
	(void)refcount;
	struct keys *ks = ud;
	for (uint32_t i = 0; i < v->n_refs; i++) {
		int rc = keys_add(ks, &v->refs[i].key);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int mfs_refd_load(mfs_txn *t, mfs_refd *out)
{
	struct keys ks = {0};
	int rc = mfs_chunks_foreach(t, refd_fn, &ks);
	if (rc < 0) {
		free(ks.k);
		return rc;
	}
	if (ks.n)
		qsort(ks.k, ks.n, sizeof *ks.k, key_cmp);
	out->keys = ks.k;
	out->n = ks.n;
	return 0;
}

void mfs_refd_free(mfs_refd *r)
{
	free(r->keys);
	r->keys = NULL;
	r->n = 0;
}

/* First index in the sorted @p a of @p n keys that is >= @p key. */
static size_t lower_bound(const mfs_chunk_key *a, size_t n, const mfs_chunk_key *key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(a[mid].b, key->b, 16) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t mfs_refd_count(const mfs_refd *r, const mfs_chunk_key *key)
{
	size_t i = lower_bound(r->keys, r->n, key);
	uint64_t n = 0;
	while (i + n < r->n && !memcmp(r->keys[i + n].b, key->b, 16))
		n++;
	return n;
}

struct blob_keys {
	mfs_txn *t;
	const char *repo;
	struct keys ks;
	int rc;
};

static int blob_fn(void *ud, const mfs_blob_info *b)
{
	struct blob_keys *bk = ud;
	mfs_extent *ext = NULL;
	mfs_blob_info bi;
	int rc = mfs_blob_get(bk->t, bk->repo, b->etag, &bi, &ext);
	for (uint64_t i = 0; rc == 0 && i < bi.n_extents; i++)
		rc = keys_add(&bk->ks, &ext[i].key);
	free(ext);
	return rc;
}

int mfs_repo_sharing(mfs_txn *t, const char *repo, const mfs_refd *refd, mfs_sharing *out)
{
	memset(out, 0, sizeof *out);
	struct blob_keys bk = {.t = t, .repo = repo};
	int rc = mfs_blobs_foreach(t, repo, blob_fn, &bk);
	if (rc == 0 && bk.ks.n)
		qsort(bk.ks.k, bk.ks.n, sizeof *bk.ks.k, key_cmp);
	for (size_t i = 0; rc == 0 && i < bk.ks.n;) {
		const mfs_chunk_key *k = &bk.ks.k[i];
		uint64_t own = 0;
		while (i < bk.ks.n && !memcmp(bk.ks.k[i].b, k->b, 16))
			own++, i++;
		mfs_chunk_view v;
		uint64_t count = 0;
		if ((rc = mfs_chunk_get(t, k, &v)) < 0 || (rc = mfs_chunk_refcount(t, k, &count)) < 0)
			break;
		uint64_t as_base = mfs_refd_count(refd, k);
		out->chunks++;
		out->stored += v.payload_len;
		if (v.n_refs)
			out->deltas++;
		if (as_base)
			out->base_stored += v.payload_len;
		/* uses beyond its own extents and the chunks decoding against it:
		 * other repos' files */
		if (count > own + as_base)
			out->shared_stored += v.payload_len;
	}
	free(bk.ks.k);
	return rc;
}
