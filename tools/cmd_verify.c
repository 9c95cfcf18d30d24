/*
 * modelfs verify: decode every chunk and check it against its key, then
 * rebuild every file and check its sha256; name every damaged chunk and the
 * files it breaks.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "progress.h"
#include "reader.h"
#include "sha256.h"
#include "stream.h"

static void verify_usage(FILE *f)
{
	fprintf(f, "usage: modelfs verify [--store DIR] [--threads N] [--quiet] [ORG/NAME]\n\n"
		   "Check the store: decode every chunk and compare it with its checksum, then\n"
		   "rebuild every file (of one repo, when given) and compare its sha256 with\n"
		   "the one recorded at ingest. Prints each damaged chunk and the files it\n"
		   "breaks; exits 1 when anything is wrong, 0 when all is clean.\n");
}

typedef struct chunk_job {
	mfs_chunk_key key;
	uint32_t raw_len;
	int rc;
} chunk_job;

typedef struct verify_ctx {
	mfs_store *s;
	mfs_reader *r;
	mfs_txn *t;
	int threads;
	mfs_progress progress;
	/* phase 1 */
	chunk_job *chunks;
	size_t n_chunks, cap_chunks;
	atomic_size_t next;
	/* results */
	uint64_t bad_chunks, bad_files, files, bytes;
	const char *repo;     /* of the blobs being checked */
} verify_ctx;

static int collect_chunk(void *ud, const mfs_chunk_key *key, const mfs_chunk_view *v,
			 uint64_t refcount)
{
	verify_ctx *c = ud;
	if (c->n_chunks == c->cap_chunks) {
		size_t nc = c->cap_chunks ? 2 * c->cap_chunks : 1024;
		chunk_job *p = realloc(c->chunks, nc * sizeof *p);
		if (!p)
			return -ENOMEM;
		c->chunks = p;
		c->cap_chunks = nc;
	}
	chunk_job *j = &c->chunks[c->n_chunks++];
	j->key = *key;
	j->raw_len = v->raw_len;
	/* a record that did not parse is reported as corrupt without decoding */
	j->rc = v->codec == MFS_CODEC__COUNT ? MFS_E_CORRUPT : 1;
	return 0;
}

static void *chunk_worker(void *arg)
{
	verify_ctx *c = arg;
	mfs_codec_ws *ws = NULL;
	if (mfs_codec_ws_create(&ws) < 0)
		return NULL;
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);
		if (i >= c->n_chunks)
			break;
		chunk_job *j = &c->chunks[i];
		if (j->rc != 1)
			continue;
		if (cap < j->raw_len) {
			free(buf);
			buf = malloc(j->raw_len);
			cap = buf ? j->raw_len : 0;
		}
		j->rc = buf || j->raw_len == 0
				? mfs_reader_decode_chunk(c->r, &j->key, buf, j->raw_len, ws)
				: -ENOMEM;
	}
	free(buf);
	mfs_codec_ws_free(ws);
	return NULL;
}

static int verify_chunks(verify_ctx *c)
{
	int rc = mfs_chunks_foreach(c->t, collect_chunk, c);
	if (rc < 0)
		return rc;
	atomic_store(&c->next, 0);
	pthread_t th[256];
	int n = 0;
	for (int i = 0; i < c->threads && i < 256; i++)
		if (pthread_create(&th[n], NULL, chunk_worker, c) == 0)
			n++;
	if (n == 0)
		chunk_worker(c);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < c->n_chunks; i++) {
		if (c->chunks[i].rc < 0) {
			char hex[33];
			printf("BAD chunk %s: %s\n", mfs_chunk_key_hex(&c->chunks[i].key, hex),
			       mfs_strerror(c->chunks[i].rc));
			c->bad_chunks++;
		}
	}
	return 0;
}

/* Extents of a blob that use a chunk phase 1 found bad. */
static void report_bad_extents(verify_ctx *c, const char *repo, const mfs_blob_info *b,
			       const mfs_extent *ext)
{
	for (uint64_t e = 0; e < b->n_extents; e++)
		for (size_t i = 0; i < c->n_chunks; i++)
			if (c->chunks[i].rc < 0 &&
			    !memcmp(c->chunks[i].key.b, ext[e].key.b, 16)) {
				char hex[33];
				printf("  blob %s of %s uses damaged chunk %s at offset %llu\n",
				       b->etag, repo, mfs_chunk_key_hex(&ext[e].key, hex),
				       (unsigned long long)ext[e].off);
			}
}

struct hash_ctx {
	mfs_sha256_ctx sha;
	mfs_progress *p;
};

static int hash_fn(void *ud, uint64_t off, const void *data, size_t len)
{
	struct hash_ctx *h = ud;
	mfs_sha256_update(&h->sha, data, len);
	mfs_progress_add(h->p, len);
	return 0;
}

static int verify_blob(void *ud, const mfs_blob_info *b)
{
	verify_ctx *c = ud;
	mfs_rfile *f;
	int rc = mfs_rfile_open(c->r, c->repo, b->etag, &f);
	c->files++;
	if (rc < 0) {
		printf("BAD blob %s of %s: its record is unreadable (%s)\n", b->etag, c->repo,
		       mfs_strerror(rc));
		c->bad_files++;
		return rc == -ENOMEM ? rc : 0;
	}
	struct hash_ctx h = {.p = &c->progress};
	mfs_sha256_init(&h.sha);
	uint64_t bad = 0;
	rc = mfs_rfile_stream(c->r, f, c->threads, hash_fn, &h, &bad);
	uint8_t d[32];
	mfs_sha256_final(&h.sha, d);
	if (rc == -ENOMEM) {
		mfs_rfile_close(f);
		return rc;
	}
	if (rc < 0 || memcmp(d, f->sha256, 32) != 0) {
		printf("BAD blob %s of %s (%llu bytes): %s\n", b->etag, c->repo,
		       (unsigned long long)b->size,
		       rc < 0 ? mfs_strerror(rc) : "sha256 of the rebuilt file differs");
		if (rc < 0)
			printf("  first damaged chunk at offset %llu\n", (unsigned long long)bad);
		report_bad_extents(c, c->repo, b, f->extents);
		c->bad_files++;
	}
	c->bytes += f->size;
	mfs_rfile_close(f);
	return 0;
}

static int sum_blob(void *ud, const mfs_blob_info *b)
{
	*(uint64_t *)ud += b->size;
	return 0;
}

struct repo_list {
	char **names;
	size_t n, cap;
};

static int list_repo(void *ud, const mfs_repo_info *r)
{
	struct repo_list *l = ud;
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 16;
		char **p = realloc(l->names, nc * sizeof *p);
		if (!p)
			return -ENOMEM;
		l->names = p;
		l->cap = nc;
	}
	l->names[l->n] = strdup(r->repo);
	return l->names[l->n++] ? 0 : -ENOMEM;
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"threads", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'},
		{"store", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), quiet = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			threads = atoi(optarg);
			if (threads < 1 || threads > 256) {
				mfs_cli_error("verify", "--threads %s: must be 1..256", optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'q':
			quiet = 1;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'h':
			verify_usage(stdout);
			return MFS_EXIT_OK;
		default:
			verify_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		verify_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	char only[MFS_REPO_ID_MAX + 1];
	if (optind < argc && mfs_cli_repo_id("verify", argv[optind], only) < 0)
		return MFS_EXIT_ERROR;
	verify_ctx c = {.threads = threads};
	struct repo_list repos = {0};
	if (mfs_cli_open_store("verify", MFS_STORE_RDONLY, &c.s) < 0)
		return MFS_EXIT_ERROR;
	int ret = MFS_EXIT_ERROR;
	int rc = mfs_txn_begin(c.s, MFS_TXN_READ, &c.t);
	if (rc < 0 || (rc = mfs_reader_create(c.s, NULL, &c.r)) < 0) {
		mfs_cli_error("verify", "cannot read the store: %s", mfs_strerror(rc));
		goto out;
	}
	double t0 = mfs_cli_now();
	if ((rc = verify_chunks(&c)) < 0) {
		mfs_cli_error("verify", "listing chunks failed: %s", mfs_strerror(rc));
		goto out;
	}
	if (optind < argc) {
		mfs_repo_info ri;
		if (mfs_repo_get(c.t, only, &ri) < 0) {
			mfs_cli_error("verify", "no repo %s in the store", only);
			goto out;
		}
		rc = list_repo(&repos, &(mfs_repo_info){.repo = only});
	} else {
		rc = mfs_repos_foreach(c.t, list_repo, &repos);
	}
	uint64_t total = 0;
	for (size_t i = 0; rc == 0 && i < repos.n; i++)
		mfs_blobs_foreach(c.t, repos.names[i], sum_blob, &total);
	mfs_progress_init(&c.progress, "verify", total, quiet);
	for (size_t i = 0; rc == 0 && i < repos.n; i++) {
		c.repo = repos.names[i];
		rc = mfs_blobs_foreach(c.t, c.repo, verify_blob, &c);
	}
	mfs_progress_end(&c.progress);
	if (rc < 0) {
		mfs_cli_error("verify", "reading the store failed: %s", mfs_strerror(rc));
		goto out;
	}
	double dt = mfs_cli_now() - t0;
	printf("verified %llu chunks and %llu files (%llu bytes) in %.2f s: %llu damaged "
	       "chunks, %llu damaged files\n",
	       (unsigned long long)c.n_chunks, (unsigned long long)c.files,
	       (unsigned long long)c.bytes, dt, (unsigned long long)c.bad_chunks,
	       (unsigned long long)c.bad_files);
	if (c.bad_chunks || c.bad_files)
		printf("the store is damaged: re-ingest the damaged files from a good copy, "
		       "or `modelfs rm` their repos\n");
	else
		ret = MFS_EXIT_OK;
out:
	for (size_t i = 0; i < repos.n; i++)
		free(repos.names[i]);
	free(repos.names);
	free(c.chunks);
	mfs_reader_free(c.r);
	mfs_txn_abort(c.t);
	mfs_store_close(c.s);
	return ret;
}
