/*
 * writer.c - one file through the pipeline into the store: its plan
 * (tensors, chunk cuts), its chunks in write transactions, its blob record.
 */
#include "ingest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "grow.h"
#include "sha256.h"
#include "tensorfile.h"
int mfs_writer_txn_ensure(ingest_ctx *c)
{
	if (c->txn)
		return 0;
	c->txn_bytes = 0;
	return mfs_txn_begin(c->store, MFS_TXN_WRITE, &c->txn);
}

int mfs_writer_txn_commit(ingest_ctx *c)
{
	if (!c->txn)
		return 0;
	int rc = mfs_txn_commit(c->txn);
	c->txn = NULL;
	return rc;
}

/* One file being ingested: its plan and what its chunks produced. */
typedef struct file_state {
	const char *rel;
	mfs_st_header st;
	int is_st;
	mfs_st_span *spans;
	size_t n_spans;
	mfs_extent *extents;
	size_t n_extents, cap_extents;
	mfs_tensor_info *tinfo;
	const mfs_base_tensor **bt; /* per tensor: the base's, or NULL */
	uint8_t *t_new;             /* per tensor: some chunk of it was new */
	uint64_t stored;
} file_state;

/* Take a finished job's result: write its chunk, record its extent. */
static int finalize_job(ingest_ctx *c, file_state *fs, job *j, uint64_t off)
{
	mfs_pipe_wait(&c->pool, j);
	j->in_flight = 0;
	if (j->rc < 0) {
		if (j->rc == MFS_E_CORRUPT)
			return mfs_err(c->err, MFS_E_CORRUPT,
				       "%s: codec %s did not round-trip the chunk at offset %llu "
				       "(an encoder bug: please report it; nothing was stored)",
				       fs->rel, mfs_codec_name(j->codec), (unsigned long long)off);
		return mfs_err(c->err, j->rc, "%s: encoding the chunk at offset %llu failed: %s",
			       fs->rel, (unsigned long long)off, mfs_strerror(j->rc));
	}
	int rc;
	if (!j->exists) {
		if ((rc = mfs_writer_txn_ensure(c)) < 0)
			return mfs_err(c->err, rc, "cannot start a store transaction: %s",
				       mfs_strerror(rc));
		int existed = 0;
		mfs_chunk_geom g;
		mfs_pipe_job_geom(j, &g);
		mfs_chunk_meta m = {.codec = j->codec,
				    .raw_len = (uint32_t)j->len,
				    .n_refs = j->has_ref ? 1 : 0,
				    .refs = j->has_ref ? &j->ref : NULL,
				    .geom = j->has_ref ? &g : NULL};
		rc = mfs_chunk_put(c->txn, &j->key, &m, j->enc, j->enc_len, &existed);
		if (rc < 0)
			return mfs_err(c->err, rc, "%s: writing a chunk to the store failed: %s%s",
				       fs->rel, mfs_strerror(rc),
				       rc == -ENOSPC ? " (the disk or the store map is full)" : "");
		if (!existed) {
			c->stats->bytes_new += j->enc_len;
			c->stats->chunks_new++;
			c->txn_bytes += j->enc_len;
		} else {
			c->stats->chunks_dedup++;
		}
	} else {
		c->stats->chunks_dedup++;
	}
	mfs_extent *ext =
	    mfs_grow(fs->extents, &fs->cap_extents, fs->n_extents, sizeof *ext, 16);
	if (!ext)
		return -ENOMEM;
	fs->extents = ext;
	mfs_extent *e = &fs->extents[fs->n_extents++];
	e->off = off;
	e->len = (uint32_t)j->len;
	e->key = j->key;
	fs->stored += j->enc_len;
	if (j->tensor >= 0) {
		mfs_tensor_info *ti = &fs->tinfo[j->tensor];
		tensor_state *ts = &c->pool.tensors[j->tensor];
		ti->stored_len += j->enc_len;
		if (ti->n_extents == 0) {
			ti->first_extent = fs->n_extents - 1;
			ti->codec = ts->codec;
		}
		ti->n_extents++;
		if (!j->exists)
			fs->t_new[j->tensor] = 1;
		if (j->has_ref || (j->exists && j->codec == MFS_CODEC_XOR_DELTA)) {
			ti->codec = MFS_CODEC_XOR_DELTA;
			ti->base = c->base ? c->base->repo : NULL;
		}
		if (j->base_rc < 0 && !ts->base_failed) {
			ts->base_failed = 1;
			char hex[33], qn[4 * SHOW_MAX];
			mfs_str_quote(ti->name, SHOW_MAX, qn, sizeof qn);
			if (j->base_rc == MFS_E_UNSUPPORTED)
				mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
					    "%s: tensor %s: the base's chunks are residuals of a "
					    "quantized twin (no xor-delta can refer to them): its "
					    "chunks are stored alone",
					    fs->rel, qn);
			else
				mfs_ingest_ctx_note(c, MFS_INGEST_WARNING,
					    "%s: tensor %s: the base's chunk %s cannot be used (%s): "
					    "the chunks it would serve are stored alone; run "
					    "`modelfs verify` on %s",
					    fs->rel, qn, mfs_chunk_key_hex(&j->ref.key, hex),
					    mfs_strerror(j->base_rc),
					    c->base ? c->base->repo : "the base");
		}
	}
	if (c->txn && c->txn_bytes >= TXN_BYTES) {
		if ((rc = mfs_writer_txn_commit(c)) < 0)
			return mfs_err(c->err, rc, "committing to the store failed: %s",
				       mfs_strerror(rc));
	}
	return 0;
}

static int is_lfs_name(const char *rel)
{
	static const char *const exts[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt",
					   ".h5", ".onnx", ".msgpack", ".gguf", ".npz",
					   ".pkl", ".model", ".tflite", ".ot", ".zip",
					   ".tar", ".gz", ".parquet", ".arrow"};
	size_t n = strlen(rel);
	for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
		size_t el = strlen(exts[i]);
		if (n >= el && !strcmp(rel + n - el, exts[i]))
			return 1;
	}
	return 0;
}

static void file_state_free(file_state *fs)
{
	if (fs->is_st)
		mfs_st_header_free(&fs->st);
	free(fs->spans);
	free(fs->extents);
	free(fs->tinfo);
	free(fs->bt);
	free(fs->t_new);
}

/* The spans and tensor records of a file whose tensors were parsed. */
static int plan_tensors(ingest_ctx *c, file_state *fs)
{
	int rc;
	if ((rc = mfs_st_spans(&fs->st, &fs->spans, &fs->n_spans)) < 0)
		return rc;
	size_t nt = fs->st.n_tensors ? fs->st.n_tensors : 1;
	fs->tinfo = calloc(nt, sizeof *fs->tinfo);
	fs->bt = calloc(nt, sizeof *fs->bt);
	fs->t_new = calloc(nt, 1);
	if (!fs->tinfo || !fs->bt || !fs->t_new)
		return -ENOMEM;
	for (size_t i = 0; i < fs->st.n_tensors; i++) {
		const mfs_st_tensor *t = &fs->st.tensors[i];
		mfs_tensor_info *ti = &fs->tinfo[i];
		if (strlen(t->name) > MFS_TENSOR_NAME_MAX)
			return mfs_err(c->err, MFS_E_UNSUPPORTED,
				       "%s: tensor name longer than %d bytes: \"%.60s...\"",
				       fs->rel, MFS_TENSOR_NAME_MAX, t->name);
		ti->name = t->name;
		ti->dtype = t->dtype;
		ti->ndim = t->ndim;
		memcpy(ti->shape, t->shape, sizeof ti->shape);
		ti->data_off = t->begin;
		ti->raw_len = t->end - t->begin;
		ti->codec = MFS_CODEC_RAW;
		if (c->base)
			fs->bt[i] = mfs_base_match(c->base, t->name, t->dtype, t->ndim,
						   t->shape);
	}
	return 0;
}

/* Plan the file's spans: tensors + gaps (safetensors, a torch.save zip,
 * GGUF), or one run of bytes. */
static int plan_file(ingest_ctx *c, file_state *fs, int fd, uint64_t size, const char *abs)
{
	size_t rl = strlen(fs->rel);
	int st_name = rl > 12 && !strcmp(fs->rel + rl - 12, ".safetensors");
	if (st_name) {
		uint8_t first8[8];
		uint64_t hlen;
		int rc;
		if (size < 8)
			return mfs_err(c->err, MFS_E_FORMAT,
				       "%s: %llu bytes is too short for a safetensors file (the "
				       "8-byte header length is missing): the file is truncated",
				       fs->rel, (unsigned long long)size);
		if ((rc = mfs_pread_full(fd, first8, 8, 0, MFS_E_FORMAT, NULL)) < 0)
			return mfs_err(c->err, rc, "%s: cannot read: %s", abs, mfs_strerror(rc));
		if ((rc = mfs_st_header_len(first8, size, &hlen, fs->rel, c->err)) < 0)
			return rc;
		char *json = malloc(hlen + 1);
		if (!json)
			return -ENOMEM;
		if ((rc = mfs_pread_full(fd, json, hlen, 8, MFS_E_FORMAT, NULL)) < 0) {
			free(json);
			return mfs_err(c->err, rc, "%s: cannot read the header: %s", abs,
				       mfs_strerror(rc));
		}
		json[hlen] = '\0';
		rc = mfs_st_parse(json, hlen, size, &fs->st, fs->rel, c->err);
		free(json);
		if (rc < 0)
			return rc;
		fs->is_st = 1;
		return plan_tensors(c, fs);
	}
	/*
	 * A torch.save zip, a GGUF or an ONNX file is laid out as tensor spans when its
	 * container parses cleanly (so its tensors share chunks with the same
	 * weights in a safetensors file); anything its parser refuses is stored
	 * as plain bytes, with a note saying why: those files are never refused.
	 */
	mfs_tensorfile_kind kind = mfs_tensorfile_kind_of(fs->rel);
	if (kind != MFS_TF_NONE) {
		mfs_errmsg why = {0};
		int rc = mfs_tensorfile_parse(fd, size, kind, fs->rel, &fs->st, &why);
		if (rc == 1) {
			fs->is_st = 1;
			return plan_tensors(c, fs);
		}
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
					    "%s (stored as plain bytes, not as %s tensors)",
					    why.msg[0] ? why.msg : mfs_strerror(rc),
					    mfs_tensorfile_kind_name(kind));
	}
	fs->spans = malloc(sizeof *fs->spans);
	if (!fs->spans)
		return -ENOMEM;
	fs->n_spans = 0;
	if (size > 0) {
		fs->spans[0].off = 0;
		fs->spans[0].len = size;
		fs->spans[0].tensor = -1;
		fs->n_spans = 1;
	}
	return 0;
}

/*
 * A Git LFS pointer (a clone without `git lfs pull`) where a file should be:
 * refused for safetensors (nothing could read it), stored as it is with a
 * warning for other LFS-type files (those bytes are what the repo holds).
 */
static int check_lfs_pointer(ingest_ctx *c, const src_file *sf, int fd, uint64_t size)
{
	char head[sizeof LFS_POINTER_PREFIX - 1];
	if (size > LFS_POINTER_MAX || size < sizeof head ||
	    mfs_pread_full(fd, head, sizeof head, 0, MFS_E_FORMAT, NULL) ||
	    memcmp(head, LFS_POINTER_PREFIX, sizeof head))
		return 0;
	char qn[4 * SHOW_MAX];
	mfs_str_quote(sf->rel, SHOW_MAX, qn, sizeof qn);
	size_t rl = strlen(sf->rel);
	if (rl > 12 && !strcmp(sf->rel + rl - 12, ".safetensors"))
		return mfs_err(c->err, MFS_E_FORMAT,
			       "%s is a Git LFS pointer, not the file (%llu bytes): fetch the real "
			       "file (git lfs pull) and ingest again",
			       qn, (unsigned long long)size);
	if (is_lfs_name(sf->rel))
		mfs_ingest_ctx_note(c, MFS_INGEST_WARNING,
			    "%s is a Git LFS pointer, not the file (%llu bytes): stored as it is; "
			    "fetch the real file (git lfs pull) and ingest again if you need it",
			    qn, (unsigned long long)size);
	return 0;
}

/*
 * Ingest one file into a blob of @p repo.  On success, @p etag holds the
 * blob's etag (given or computed) and the blob is put (not yet visible).
 */
int mfs_writer_file(ingest_ctx *c, const char *repo, const src_file *sf, char *etag_out)
{
	file_state fs = {.rel = sf->rel};
	int rc;
	/* A blob the store already has for this repo is not read again. */
	if (sf->etag[0]) {
		mfs_txn *t;
		if ((rc = mfs_txn_begin(c->store, MFS_TXN_READ, &t)) < 0)
			return rc;
		mfs_blob_info bi;
		rc = mfs_blob_get(t, repo, sf->etag, &bi, NULL);
		mfs_txn_abort(t);
		if (rc == 0) {
			strcpy(etag_out, sf->etag);
			c->stats->files++;
			c->stats->bytes_in += bi.size;
			c->stats->bytes_stored += bi.stored_bytes;
			c->stats->blobs_skipped++;
			mfs_ingest_ctx_progress(c, bi.size);
			return 0;
		}
	}
	/* sf->abs was checked when collected: open it without following a link
	 * again, and O_NONBLOCK so that a FIFO put there since cannot hang us */
	char qn[4 * SHOW_MAX], qa[4 * SHOW_MAX];
	mfs_str_quote(sf->rel, SHOW_MAX, qn, sizeof qn);
	mfs_str_quote(sf->abs, SHOW_MAX, qa, sizeof qa);
	int fd = mfs_src_open_nofollow(sf->abs, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return mfs_err(c->err, fd, "%s: cannot open %s: %s%s", qn, qa, mfs_strerror(fd),
			       fd == -ELOOP || fd == -ENOTDIR
				       ? " (a part of the path became a symlink since it was "
					 "checked: the source changed during ingest)"
				       : "");
	struct stat st0 = {0};
	if (fstat(fd, &st0) < 0 || !S_ISREG(st0.st_mode)) {
		close(fd);
		return mfs_err(c->err, MFS_E_INVAL,
			       "%s (%s) is %s, not a regular file: only regular files can be "
			       "ingested",
			       qn, qa, mfs_src_kind_name(st0.st_mode));
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	uint64_t size = (uint64_t)st0.st_size;
	if ((rc = check_lfs_pointer(c, sf, fd, size)) < 0) {
		close(fd);
		return rc;
	}
	int need_sha1 = size < LFS_MIN_SIZE && !is_lfs_name(sf->rel);
	if (sf->etag[0])
		need_sha1 = strlen(sf->etag) == 40;
	rc = plan_file(c, &fs, fd, size, sf->abs);
	if (rc < 0)
		goto out;
	c->pool.tensors = calloc(fs.is_st && fs.st.n_tensors ? fs.st.n_tensors : 1,
				 sizeof *c->pool.tensors);
	if (!c->pool.tensors) {
		rc = -ENOMEM;
		goto out;
	}
	mfs_sha256_ctx sha;
	mfs_sha1_ctx sha1;
	mfs_sha256_init(&sha);
	mfs_sha1_init(&sha1);
	if (need_sha1) {
		char hdr[32];
		int hl = snprintf(hdr, sizeof hdr, "blob %llu", (unsigned long long)size);
		mfs_sha1_update(&sha1, hdr, (size_t)hl + 1); /* with its NUL */
	}
	/* Chunks go round the ring in file order; a slot is finalised before reuse. */
	size_t seq = 0;
	uint64_t *slot_off = calloc(c->n_ring, sizeof *slot_off);
	if (!slot_off) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t s = 0; s < fs.n_spans && rc == 0; s++) {
		const mfs_st_span *sp = &fs.spans[s];
		mfs_dtype dt = sp->tensor >= 0 ? fs.st.tensors[sp->tensor].dtype : MFS_DT_UNKNOWN;
		for (uint64_t in = 0; in < sp->len && rc == 0; in += c->opts->chunk_size) {
			job *j = &c->ring[seq % c->n_ring];
			if (j->in_flight)
				rc = finalize_job(c, &fs, j, slot_off[seq % c->n_ring]);
			if (rc < 0)
				break;
			size_t len = (size_t)(sp->len - in < c->opts->chunk_size
						      ? sp->len - in
						      : c->opts->chunk_size);
			uint64_t off = sp->off + in;
			rc = mfs_pread_full(fd, j->raw, len, off, MFS_E_FORMAT, NULL);
			if (rc < 0) {
				rc = mfs_err(c->err, rc,
					     "%s: reading %s at offset %llu failed: %s", sf->rel,
					     sf->abs, (unsigned long long)off,
					     rc == MFS_E_FORMAT
						     ? "the file shrank while being ingested"
						     : mfs_strerror(rc));
				break;
			}
			mfs_sha256_update(&sha, j->raw, len);
			if (need_sha1)
				mfs_sha1_update(&sha1, j->raw, len);
			j->len = len;
			j->dtype = dt;
			j->tensor = sp->tensor;
			j->first_of_tensor = sp->tensor >= 0 && in == 0;
			j->st = sp->tensor >= 0 ? &fs.st.tensors[sp->tensor] : NULL;
			j->tin = in;
			j->bt = sp->tensor >= 0 ? fs.bt[sp->tensor] : NULL;
			j->has_ref = 0;
			j->base_rc = 0;
			j->exists = 0;
			j->rc = 0;
			j->enc_len = 0;
			slot_off[seq % c->n_ring] = off;
			mfs_pipe_submit(&c->pool, j);
			mfs_ingest_ctx_progress(c, len);
			seq++;
		}
	}
	/* Finalise what is still in flight, in order (on error: just wait for it). */
	size_t first = seq > c->n_ring ? seq - c->n_ring : 0;
	for (size_t q = first; q < seq; q++) {
		job *j = &c->ring[q % c->n_ring];
		if (!j->in_flight)
			continue;
		if (rc == 0)
			rc = finalize_job(c, &fs, j, slot_off[q % c->n_ring]);
		else {
			mfs_pipe_wait(&c->pool, j);
			j->in_flight = 0;
		}
	}
	free(slot_off);
	if (rc < 0)
		goto out;
	struct stat st1;
	if (fstat(fd, &st1) < 0 || st1.st_size != st0.st_size ||
	    st1.st_mtim.tv_sec != st0.st_mtim.tv_sec ||
	    st1.st_mtim.tv_nsec != st0.st_mtim.tv_nsec) {
		rc = mfs_err(c->err, MFS_E_INVAL,
			     "%s: the file changed while it was being ingested: ingest it again "
			     "once it is complete",
			     sf->rel);
		goto out;
	}
	mfs_blob_rec br = {0};
	mfs_sha256_final(&sha, br.sha256);
	char sha_hex[65], sha1_hex[41];
	mfs_hex(br.sha256, 32, sha_hex);
	if (need_sha1) {
		uint8_t d1[20];
		mfs_sha1_final(&sha1, d1);
		mfs_hex(d1, 20, sha1_hex);
	}
	const char *computed = need_sha1 ? sha1_hex : sha_hex;
	if (sf->etag[0] && strcmp(sf->etag, computed) != 0) {
		rc = mfs_err(c->err, MFS_E_CORRUPT,
			     "%s: blob %s does not match its name (its content hashes to %s): "
			     "the cache copy is damaged; download it again",
			     sf->rel, sf->etag, computed);
		goto out;
	}
	strcpy(etag_out, computed);
	br.etag = etag_out;
	br.size = size;
	br.stored_bytes = fs.stored;
	br.n_extents = fs.n_extents;
	br.extents = fs.extents;
	br.n_tensors = fs.is_st ? fs.st.n_tensors : 0;
	br.tensors = fs.tinfo;
	for (size_t i = 0; i < br.n_tensors; i++) {
		mfs_tensor_info *ti = &fs.tinfo[i];
		if (ti->base) {
			ti->alone_len = (uint64_t)(c->pool.tensors[i].alone_ratio * (double)ti->raw_len);
			c->stats->tensors_delta++;
			c->stats->delta_stored += ti->stored_len;
			c->stats->delta_alone += ti->alone_len;
		} else if (!fs.t_new[i] && ti->n_extents) {
			c->stats->tensors_same++;
		}
	}
	if ((rc = mfs_writer_txn_ensure(c)) < 0)
		goto out;
	rc = mfs_blob_put(c->txn, repo, &br, NULL);
	if (rc < 0) {
		rc = mfs_err(c->err, rc, "%s: writing its record failed: %s", sf->rel,
			     mfs_strerror(rc));
		goto out;
	}
	c->stats->files++;
	c->stats->bytes_in += size;
	c->stats->bytes_stored += fs.stored;
out:
	close(fd);
	free(c->pool.tensors);
	c->pool.tensors = NULL;
	file_state_free(&fs);
	return rc;
}

