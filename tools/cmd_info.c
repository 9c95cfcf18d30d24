/* modelfs info: per-file and per-tensor facts (dtype, shape, codec, ratio). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sha256.h"
#include "units.h"

static void info_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: modelfs info [--store DIR] [--rev REV] [--json] ORG/NAME[/FILE]\n\n"
	    "Show each file of a snapshot (REV: a ref or commit, default main) with its\n"
	    "size, stored size and ratio, and each tensor of its safetensors files with\n"
	    "dtype, shape, the codec chosen at ingest and its ratio; a tensor stored as\n"
	    "an xor-delta names its base and the bytes the delta saves over storing it\n"
	    "alone (estimated at ingest); one stored as the residual of a quantized\n"
	    "twin (quant-residual) names the twin's repo and the saving. The bytes\n"
	    "of a file that no tensor holds (a whole config.json or tokenizer.json,\n"
	    "a safetensors header, the pickle of a .bin, GGUF metadata) show as one\n"
	    "row per codec with their ratio. Each file\n"
	    "says how many of its bytes lie in chunks used elsewhere too (other files\n"
	    "or repos, a delta's base, a twin's codes). --json prints the same as one\n"
	    "JSON document. In the table, names from the file or the index\n"
	    "show control characters and other non-ASCII bytes as \\xNN; the JSON\n"
	    "holds them exactly (JSON-escaped).\n");
}

/*
 * Split "org/name/path" into a repo id and a file path: the longest prefix
 * (type/org/name or org/name, then name) that is a repo in the store.
 */
static int split_target(mfs_txn *t, const char *arg, char repo[MFS_REPO_ID_MAX + 1],
			const char **file)
{
	int typed = !strncmp(arg, "models/", 7) || !strncmp(arg, "datasets/", 9) ||
		    !strncmp(arg, "spaces/", 7);
	for (int parts = typed ? 3 : 2; parts >= (typed ? 2 : 1); parts--) {
		const char *p = arg;
		int n = 0;
		while (n < parts && (p = strchr(p, '/')))
			p++, n++;
		size_t len = (n == parts && p) ? (size_t)(p - 1 - arg) : strlen(arg);
		char cand[MFS_REPO_ID_MAX + 1];
		int w = snprintf(cand, sizeof cand, "%s%.*s", typed ? "" : "models/", (int)len,
				 arg);
		if (w < 0 || w > MFS_REPO_ID_MAX)
			continue;
		mfs_repo_info ri;
		/* a repo whose repos record is damaged is still found (and then refused
		 * naming its record, not "no repo") */
		int got = mfs_repo_id_check(cand, NULL) == 0 ? mfs_repo_get(t, cand, &ri)
							     : MFS_E_NOTFOUND;
		if (got == 0 || got == MFS_E_CORRUPT) {
			strcpy(repo, cand);
			*file = arg[len] == '/' ? arg + len + 1 : NULL;
			if (*file && !**file)
				*file = NULL;
			return 0;
		}
	}
	return -1;
}

struct info_ctx {
	mfs_txn *t;
	const char *repo;
	const char *only;  /* one file, or NULL */
	cJSON *files;      /* JSON output, or NULL for text */
	int found;
	int rc;
};

static int tensor_fn(void *ud, const mfs_tensor_info *ti)
{
	struct info_ctx *c = ud;
	double ratio = ti->stored_len ? (double)ti->raw_len / (double)ti->stored_len : 0;
	if (c->files) {
		cJSON *file = cJSON_GetArrayItem(c->files, cJSON_GetArraySize(c->files) - 1);
		cJSON *arr = cJSON_GetObjectItem(file, "tensors");
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", ti->name);
		cJSON_AddStringToObject(o, "dtype", mfs_dtype_name(ti->dtype));
		cJSON *shape = cJSON_AddArrayToObject(o, "shape");
		for (uint32_t d = 0; d < ti->ndim; d++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)ti->shape[d]));
		cJSON_AddStringToObject(o, "codec", mfs_codec_name(ti->codec));
		cJSON_AddNumberToObject(o, "offset", (double)ti->data_off);
		cJSON_AddNumberToObject(o, "raw_bytes", (double)ti->raw_len);
		cJSON_AddNumberToObject(o, "stored_bytes", (double)ti->stored_len);
		cJSON_AddNumberToObject(o, "ratio", ratio);
		cJSON_AddNumberToObject(o, "chunks", (double)ti->n_extents);
		if (ti->base && ti->codec == MFS_CODEC_QUANT_RESIDUAL) {
			cJSON_AddStringToObject(o, "twin", ti->base);
			cJSON_AddNumberToObject(o, "alone_bytes", (double)ti->alone_len);
			cJSON_AddNumberToObject(o, "saving_bytes",
						ti->alone_len > ti->stored_len
						    ? (double)(ti->alone_len - ti->stored_len)
						    : 0.0);
		} else if (ti->base) {
			cJSON_AddStringToObject(o, "base", ti->base);
			cJSON_AddNumberToObject(o, "alone_bytes", (double)ti->alone_len);
			cJSON_AddNumberToObject(o, "saving_bytes",
						ti->alone_len > ti->stored_len
						    ? (double)(ti->alone_len - ti->stored_len)
						    : 0.0);
		}
		cJSON_AddItemToArray(arr, o);
		return 0;
	}
	char shape[128] = "[";
	for (uint32_t d = 0; d < ti->ndim; d++) {
		size_t l = strlen(shape);
		snprintf(shape + l, sizeof shape - l, "%s%llu", d ? "," : "",
			 (unsigned long long)ti->shape[d]);
	}
	strncat(shape, "]", sizeof shape - strlen(shape) - 1);
	/* a tensor name comes from the file: "\x1b[31m" must not reach the terminal */
	char q[MFS_CLI_QUOTED];
	printf("    %-52s %-7s %-16s %-13s %11llu %11llu %6.3fx", mfs_cli_quote(ti->name, q),
	       mfs_dtype_name(ti->dtype), shape, mfs_codec_name(ti->codec),
	       (unsigned long long)ti->raw_len, (unsigned long long)ti->stored_len, ratio);
	if (ti->base) {
		char a[32];
		uint64_t save = ti->alone_len > ti->stored_len ? ti->alone_len - ti->stored_len : 0;
		printf("  %s %s, saves %s (%.1f%% of alone)",
		       ti->codec == MFS_CODEC_QUANT_RESIDUAL ? "residual of twin" : "base",
		       mfs_cli_quote(ti->base, q),
		       mfs_size_format(save, a, sizeof a),
		       ti->alone_len ? 100.0 * (double)save / (double)ti->alone_len : 0.0);
	}
	printf("\n");
	return 0;
}

/* The bytes of a file outside its tensors, by the codec of their chunks. */
struct plain_sum {
	uint64_t raw, stored, chunks;
};

struct plain_ctx {
	uint64_t n_extents;
	unsigned char *in_tensor; /* n_extents flags: the extent holds tensor bytes */
};

static int mark_tensor_fn(void *ud, const mfs_tensor_info *ti)
{
	struct plain_ctx *p = ud;
	/* a record naming extents past the blob's marks what lies inside it */
	for (uint64_t i = ti->first_extent;
	     i < p->n_extents && i - ti->first_extent < ti->n_extents; i++)
		p->in_tensor[i] = 1;
	return 0;
}

/*
 * Sum the extents of blob @p etag that no tensor record covers into
 * @p sums (indexed by codec id; MFS_CODEC__COUNT: a chunk record that cannot
 * be read, whose stored bytes are unknown).
 */
static int plain_bytes(mfs_txn *t, const char *repo, const char *etag,
		       const mfs_extent *ext, uint64_t n,
		       struct plain_sum sums[MFS_CODEC__COUNT + 1])
{
	memset(sums, 0, sizeof(struct plain_sum) * (MFS_CODEC__COUNT + 1));
	if (!n)
		return 0;
	struct plain_ctx p = {.n_extents = n, .in_tensor = calloc((size_t)n, 1)};
	if (!p.in_tensor)
		return -ENOMEM;
	int rc = mfs_tensors_foreach(t, repo, etag, mark_tensor_fn, &p);
	for (uint64_t i = 0; rc >= 0 && i < n; i++) {
		if (p.in_tensor[i])
			continue;
		mfs_chunk_view v;
		int got = mfs_chunk_get(t, &ext[i].key, &v);
		if (got < 0 && got != MFS_E_NOTFOUND && got != MFS_E_CORRUPT) {
			rc = got;
			break;
		}
		unsigned c = got == 0 && (unsigned)v.codec < MFS_CODEC__COUNT
				 ? (unsigned)v.codec
				 : MFS_CODEC__COUNT;
		sums[c].raw += ext[i].len;
		sums[c].stored += got == 0 ? v.payload_len : 0;
		sums[c].chunks++;
	}
	free(p.in_tensor);
	return rc < 0 ? rc : 0;
}

static const char *plain_codec_name(unsigned c)
{
	return c < MFS_CODEC__COUNT ? mfs_codec_name((mfs_codec_id)c) : "unreadable";
}

/* The codecs with plain bytes, most bytes first, into @p order; @return their number. */
static unsigned plain_order(const struct plain_sum sums[MFS_CODEC__COUNT + 1],
			    unsigned order[MFS_CODEC__COUNT + 1])
{
	unsigned n = 0;
	for (unsigned c = 0; c <= MFS_CODEC__COUNT; c++) {
		if (!sums[c].chunks)
			continue;
		unsigned j = n++;
		while (j > 0 && sums[order[j - 1]].raw < sums[c].raw) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = c;
	}
	return n;
}

static int ext_cmp(const void *a, const void *b)
{
	return memcmp(((const mfs_extent *)a)->key.b, ((const mfs_extent *)b)->key.b, 16);
}

/*
 * Bytes of a file in chunks used elsewhere too: their count of uses is more
 * than the file's own extents of them (other files, other repos, deltas
 * decoding against them).
 */
static int shared_bytes(mfs_txn *t, mfs_extent *ext, uint64_t n, uint64_t *out)
{
	*out = 0;
	if (n)
		qsort(ext, n, sizeof *ext, ext_cmp);
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i, count = 0;
		while (j < n && !memcmp(ext[j].key.b, ext[i].key.b, 16))
			j++;
		int rc = mfs_chunk_refcount(t, &ext[i].key, &count);
		if (rc < 0)
			return rc;
		if (count > j - i)
			*out += (uint64_t)ext[i].len * (j - i);
		i = j;
	}
	return 0;
}

static int file_fn(void *ud, const mfs_file_info *f)
{
	struct info_ctx *c = ud;
	if (c->only && strcmp(c->only, f->path) != 0)
		return 0;
	c->found = 1;
	mfs_blob_info bi;
	mfs_extent *ext = NULL;
	int rc = mfs_blob_get(c->t, c->repo, f->etag, &bi, &ext);
	if (rc < 0)
		return rc;
	struct plain_sum plain[MFS_CODEC__COUNT + 1];
	unsigned order[MFS_CODEC__COUNT + 1];
	if ((rc = plain_bytes(c->t, c->repo, f->etag, ext, bi.n_extents, plain)) < 0) {
		free(ext);
		return rc;
	}
	unsigned n_plain = plain_order(plain, order);
	uint64_t shared = 0; /* sorts ext: after plain_bytes */
	if ((rc = shared_bytes(c->t, ext, bi.n_extents, &shared)) < 0) {
		free(ext);
		return rc;
	}
	free(ext);
	double ratio = bi.stored_bytes ? (double)bi.size / (double)bi.stored_bytes : 0;
	char sha[65];
	mfs_sha256_hex(bi.sha256, sha);
	if (c->files) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "path", f->path);
		cJSON_AddStringToObject(o, "etag", f->etag);
		cJSON_AddStringToObject(o, "sha256", sha);
		cJSON_AddNumberToObject(o, "size", (double)bi.size);
		cJSON_AddNumberToObject(o, "stored_bytes", (double)bi.stored_bytes);
		cJSON_AddNumberToObject(o, "ratio", ratio);
		cJSON_AddNumberToObject(o, "chunks", (double)bi.n_extents);
		cJSON_AddNumberToObject(o, "shared_bytes", (double)shared);
		/* the bytes no tensor holds, by codec, most bytes first */
		cJSON *pl = cJSON_AddArrayToObject(o, "plain");
		for (unsigned i = 0; i < n_plain; i++) {
			const struct plain_sum *ps = &plain[order[i]];
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "codec", plain_codec_name(order[i]));
			cJSON_AddNumberToObject(e, "raw_bytes", (double)ps->raw);
			cJSON_AddNumberToObject(e, "stored_bytes", (double)ps->stored);
			cJSON_AddNumberToObject(e, "ratio",
						ps->stored ? (double)ps->raw / (double)ps->stored
							   : 0.0);
			cJSON_AddNumberToObject(e, "chunks", (double)ps->chunks);
			cJSON_AddItemToArray(pl, e);
		}
		cJSON_AddArrayToObject(o, "tensors");
		cJSON_AddItemToArray(c->files, o);
	} else {
		char a[32], b[32], d[32], q[MFS_CLI_QUOTED];
		printf("%s  %s -> %s (%.3fx)  blob %s  shared %s\n", mfs_cli_quote(f->path, q),
		       mfs_size_format(bi.size, a, sizeof a),
		       mfs_size_format(bi.stored_bytes, b, sizeof b), ratio, f->etag,
		       mfs_size_format(shared, d, sizeof d));
		if (bi.n_tensors || n_plain)
			printf("    %-52s %-7s %-16s %-13s %11s %11s %7s\n", "tensor", "dtype",
			       "shape", "codec", "raw", "stored", "ratio");
		for (unsigned i = 0; i < n_plain; i++) {
			const struct plain_sum *ps = &plain[order[i]];
			printf("    %-52s %-7s %-16s %-13s %11llu %11llu %6.3fx\n",
			       bi.n_tensors ? "(bytes outside tensors)" : "(plain bytes: no tensors)",
			       "-", "-", plain_codec_name(order[i]), (unsigned long long)ps->raw,
			       (unsigned long long)ps->stored,
			       ps->stored ? (double)ps->raw / (double)ps->stored : 0.0);
		}
	}
	return mfs_tensors_foreach(c->t, c->repo, f->etag, tensor_fn, c);
}

static int ref_json_fn(void *ud, const mfs_ref_info *r)
{
	cJSON_AddStringToObject((cJSON *)ud, r->name, r->commit);
	return 0;
}

static int ref_text_fn(void *ud, const mfs_ref_info *r)
{
	char q[MFS_CLI_QUOTED];
	printf("ref %s -> %s\n", mfs_cli_quote(r->name, q), r->commit);
	return 0;
}

int cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"rev", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{"store", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *rev = NULL;
	int json = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			rev = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'h':
			info_usage(stdout);
			return MFS_EXIT_OK;
		default:
			info_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		info_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	mfs_store *s;
	if (mfs_cli_open_store("info", MFS_STORE_RDONLY, &s) < 0)
		return MFS_EXIT_ERROR;
	mfs_txn *t;
	int rc = mfs_txn_begin(s, MFS_TXN_READ, &t);
	if (rc < 0) {
		mfs_cli_error("info", "cannot read the store: %s", mfs_strerror(rc));
		mfs_store_close(s);
		return MFS_EXIT_ERROR;
	}
	int ret = MFS_EXIT_ERROR;
	char repo[MFS_REPO_ID_MAX + 1], commit[MFS_COMMIT_LEN + 1];
	const char *file = NULL;
	cJSON *doc = NULL;
	if (split_target(t, argv[optind], repo, &file) < 0) {
		mfs_cli_error("info", "no repo matching \"%s\" in the store (see `modelfs ls`)",
			      argv[optind]);
		goto out;
	}
	if (mfs_cli_repo_intact("info", t, repo, 0) < 0 ||
	    mfs_cli_resolve_rev("info", t, repo, rev, commit) < 0)
		goto out;
	struct info_ctx c = {.t = t, .repo = repo, .only = file};
	if (json) {
		doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "repo", repo);
		cJSON_AddStringToObject(doc, "commit", commit);
		mfs_refs_foreach(t, repo, ref_json_fn, cJSON_AddObjectToObject(doc, "refs"));
		c.files = cJSON_AddArrayToObject(doc, "files");
	} else {
		printf("repo %s  snapshot %s\n", mfs_cli_repo_name(repo), commit);
		mfs_refs_foreach(t, repo, ref_text_fn, NULL);
	}
	rc = mfs_files_foreach(t, repo, commit, file_fn, &c);
	if (rc < 0) {
		mfs_cli_error("info", "reading %s failed: %s", repo, mfs_strerror(rc));
		goto out;
	}
	if (file && !c.found) {
		char q[MFS_CLI_QUOTED];
		mfs_cli_error("info", "%s has no file %s in snapshot %s", repo,
			      mfs_cli_quote(file, q), commit);
		goto out;
	}
	if (doc) {
		char *txt = cJSON_Print(doc);
		if (txt)
			printf("%s\n", txt);
		free(txt);
	}
	ret = MFS_EXIT_OK;
out:
	cJSON_Delete(doc);
	mfs_txn_abort(t);
	mfs_store_close(s);
	return ret;
}
