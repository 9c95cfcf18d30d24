/*
 * ingest.c - snapshots into the store (the base and twin choices, publish)
 * and the public calls of ingest.h; the modules under it are named in
 * ingest_internal.h.
 */
#include "ingest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "grow.h"
#include "tensorfile.h"
#include "twin.h"
#include "units.h"
void mfs_ingest_ctx_note(ingest_ctx *c, mfs_ingest_note_kind kind, const char *fmt, ...)
{
	if (!c->opts->note)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	c->opts->note(c->opts->note_ud, kind, line);
}

void mfs_ingest_ctx_progress_start(ingest_ctx *c, uint64_t total)
{
	c->progress_done = 0;
	c->progress_total = total;
	if (c->opts->progress)
		c->opts->progress(c->opts->progress_ud, 0, total);
}

void mfs_ingest_ctx_progress(ingest_ctx *c, uint64_t n)
{
	c->progress_done += n;
	if (c->opts->progress)
		c->opts->progress(c->opts->progress_ud, c->progress_done, c->progress_total);
}


/* ------------------------------------------------------------ base choice */

/* The fine-tune's tensors, read from its safetensors headers before ingest. */
typedef struct want_list {
	mfs_st_header *hdr; /* one per file (is_st[i] says which parsed) */
	uint8_t *is_st;
	mfs_base_want *w;
	size_t n, cap;
} want_list;

static void want_free(want_list *wl, size_t n_files)
{
	for (size_t i = 0; wl->hdr && wl->is_st && i < n_files; i++)
		if (wl->is_st[i])
			mfs_st_header_free(&wl->hdr[i]);
	free(wl->hdr);
	free(wl->is_st);
	free(wl->w);
}

/* Parse the tensors of file @p i (of kind @p kind); a bad one is skipped:
 * ingest reports it when it reads the file. */
static void want_file(want_list *wl, const src_file *sf, size_t i, mfs_tensorfile_kind kind)
{
	int fd = mfs_src_open_nofollow(sf->abs, O_RDONLY | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    mfs_tensorfile_parse(fd, (uint64_t)st.st_size, kind, sf->rel, &wl->hdr[i], NULL) == 1)
		wl->is_st[i] = 1;
	close(fd);
	for (size_t k = 0; wl->is_st[i] && k < wl->hdr[i].n_tensors; k++) {
		const mfs_st_tensor *t = &wl->hdr[i].tensors[k];
		mfs_base_want *g = mfs_grow(wl->w, &wl->cap, wl->n, sizeof *g, 64);
		if (!g)
			return;
		wl->w = g;
		wl->w[wl->n++] = (mfs_base_want){.name = t->name, .dtype = t->dtype,
						 .ndim = t->ndim, .shape = t->shape,
						 .raw_len = t->end - t->begin, .file = (int)i,
						 .off = t->begin};
	}
}

/*
 * The tensors of every safetensors file of @p sn (headers only); in a
 * snapshot without one, those of its torch.save zips, GGUF and ONNX files (where
 * both exist they hold the same weights, and the safetensors names are the
 * ones a base shares).
 */
static int want_build(const src_snapshot *sn, want_list *wl)
{
	memset(wl, 0, sizeof *wl);
	wl->hdr = calloc(sn->n_files ? sn->n_files : 1, sizeof *wl->hdr);
	wl->is_st = calloc(sn->n_files ? sn->n_files : 1, 1);
	if (!wl->hdr || !wl->is_st)
		return -ENOMEM;
	for (size_t i = 0; i < sn->n_files; i++)
		if (mfs_tensorfile_kind_of(sn->files[i].rel) == MFS_TF_SAFETENSORS)
			want_file(wl, &sn->files[i], i, MFS_TF_SAFETENSORS);
	int have_st = wl->n > 0;
	for (size_t i = 0; !have_st && i < sn->n_files; i++) {
		mfs_tensorfile_kind k = mfs_tensorfile_kind_of(sn->files[i].rel);
		if (k != MFS_TF_NONE && k != MFS_TF_SAFETENSORS)
			want_file(wl, &sn->files[i], i, k);
	}
	return 0;
}

struct want_read {
	const src_snapshot *sn;
};

static int want_read_fn(void *ud, int file, uint64_t off, void *buf, size_t len)
{
	const struct want_read *wr = ud;
	int fd = mfs_src_open_nofollow(wr->sn->files[file].abs, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd;
	int rc = mfs_pread_full(fd, buf, len, off, MFS_E_FORMAT, NULL);
	close(fd);
	return rc;
}

/* A small text file at the snapshot's top (README.md, config.json), or NULL. */
static char *read_small_file(const src_snapshot *sn, const char *name)
{
	for (size_t i = 0; i < sn->n_files; i++) {
		if (strcmp(sn->files[i].rel, name) != 0)
			continue;
		int fd = mfs_src_open_nofollow(sn->files[i].abs, O_RDONLY | O_NONBLOCK);
		struct stat st;
		char *txt = NULL;
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size <= (off_t)1 << 20 && (txt = malloc((size_t)st.st_size + 1)) &&
		    mfs_pread_full(fd, txt, (size_t)st.st_size, 0, MFS_E_FORMAT, NULL) == 0) {
			txt[st.st_size] = '\0';
		} else {
			free(txt);
			txt = NULL;
		}
		if (fd >= 0)
			close(fd);
		return txt;
	}
	return NULL;
}

/*
 * Choose and load the snapshot's base (c->base): opts->base, or the store's
 * proposal.  Prints the choice; a --base the store does not hold, or whose
 * tensors match none of the snapshot's, is an error.
 */
static int choose_base(ingest_ctx *c, const char *repo, const src_snapshot *sn,
		       const want_list *wlp)
{
	c->stats->base[0] = '\0';
	if (c->opts->no_base)
		return 0;
	want_list wl = *wlp;
	int rc = 0;
	if (wl.n == 0 && !c->opts->base)
		goto out; /* nothing a base could serve */
	mfs_txn *t;
	if ((rc = mfs_txn_begin(c->store, MFS_TXN_READ, &t)) < 0)
		goto out;
	char chosen[MFS_REPO_ID_MAX + 1] = "";
	char note[768] = "";
	mfs_base_how how = MFS_BASE_NONE;
	if (c->opts->base) {
		mfs_repo_info ri;
		rc = mfs_repo_get(t, c->opts->base, &ri);
		if (rc == 0 && !strcmp(c->opts->base, repo))
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--base %s is the repo being ingested: give the repo it was "
				     "fine-tuned from",
				     c->opts->base);
		else if (rc == MFS_E_NOTFOUND)
			rc = mfs_err(c->err, MFS_E_NOTFOUND,
				     "--base %s: the store holds no such repo (`modelfs ls` lists "
				     "what it holds; ingest the base first)",
				     c->opts->base);
		if (rc == 0) {
			strcpy(chosen, c->opts->base);
			how = MFS_BASE_NONE;
		}
	} else {
		char *readme = read_small_file(sn, "README.md");
		char *cfg = read_small_file(sn, "config.json");
		char *adapter = read_small_file(sn, "adapter_config.json");
		char hb[3 * (MFS_REPO_ID_MAX + 2)];
		mfs_base_hints h;
		mfs_base_hints_parse(readme, cfg, adapter, &h, hb, sizeof hb);
		free(readme);
		free(cfg);
		free(adapter);
		struct want_read wr = {sn};
		rc = mfs_base_propose(t, repo, &h, wl.w, wl.n, want_read_fn, &wr, chosen, &how,
				      note, sizeof note);
	}
	if (rc == 0 && chosen[0] && (rc = mfs_base_load(t, chosen, &c->base)) < 0)
		mfs_err(c->err, rc, "%s: cannot read the base %s: %s", repo, chosen,
			mfs_strerror(rc));
	mfs_txn_abort(t);
	if (rc < 0)
		goto out;
	if (c->base) {
		size_t nm = 0;
		uint64_t bytes = mfs_base_matched_bytes(c->base, wl.w, wl.n, &nm);
		if (nm == 0 && c->opts->base) {
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--base %s: none of its %zu tensors matches one of the %zu "
				     "tensors of %s by name, dtype and shape: it is not this "
				     "model's base (leave --base out to let ingest look)",
				     c->opts->base, c->base->n, wl.n, repo);
			goto out;
		}
		snprintf(c->stats->base, sizeof c->stats->base, "%s", c->base->repo);
		char hb[32];
		mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
			    "%s: base %s (%s%s): %zu of %zu tensors (%s) match by name, dtype "
			    "and shape and are tried as xor-deltas",
			    repo, c->base->repo, c->opts->base ? "given with --base" : "chosen by ",
			    c->opts->base ? "" : mfs_base_how_name(how), nm, wl.n,
			    mfs_size_format(bytes, hb, sizeof hb));
		if (how == MFS_BASE_MATCH && note[0])
			mfs_ingest_ctx_note(c, MFS_INGEST_NOTE, "%s: %s", repo, note);
	} else {
		mfs_ingest_ctx_note(c, MFS_INGEST_NOTE, "%s: stored alone, no base: %s", repo,
			    note[0] ? note : "the store holds no repo with matching tensors");
	}
out:
	return rc;
}

/* ------------------------------------------------------------ quantized twin */

/*
 * Find the snapshot's pair (ingest/twin.h) before anything is stored:
 * --quantized-of must name a stored repo with tensors that pair with the
 * snapshot's (else an error), or the store proposes one.  Sets c->twin_hp
 * and c->twin_q ("" when there is no pair).
 */
static int choose_twin(ingest_ctx *c, const char *repo, const want_list *wl)
{
	c->twin_hp[0] = c->twin_q[0] = '\0';
	c->stats->twin[0] = '\0';
	if (c->opts->no_twin)
		return 0;
	const char *qof = c->opts->quantized_of;
	if (!qof && wl->n == 0)
		return 0;
	mfs_txn *t;
	int rc = mfs_txn_begin(c->store, MFS_TXN_READ, &t);
	if (rc < 0)
		return mfs_err(c->err, rc, "%s: cannot read the store: %s", repo, mfs_strerror(rc));
	if (qof) {
		mfs_base *hb = NULL;
		if (!strcmp(qof, repo))
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--quantized-of %s is the repo being ingested: give the "
				     "high-precision model it was quantized from",
				     qof);
		else if ((rc = mfs_base_load(t, qof, &hb)) == MFS_E_NOTFOUND)
			rc = mfs_err(c->err, MFS_E_NOTFOUND,
				     "--quantized-of %s: the store holds no such repo (`modelfs "
				     "ls` lists what it holds; ingest the high-precision model "
				     "first, or ingest this one without --quantized-of and that "
				     "one later)",
				     qof);
		else if (rc < 0)
			mfs_err(c->err, rc, "--quantized-of %s: cannot read its tensors: %s", qof,
				mfs_strerror(rc));
		int is_q = 0;
		size_t n = rc == 0 ? mfs_twin_match_count(hb, wl->w, wl->n, &is_q) : 0;
		if (rc == 0 && (n == 0 || !is_q))
			rc = mfs_err(c->err, MFS_E_INVAL,
				     "--quantized-of %s: none of the %zu tensors of %s is an I8 or "
				     "F8_E4M3 tensor with the name and shape of one of its %zu BF16/F16 "
				     "tensors: it is not this model's high-precision twin",
				     qof, wl->n, repo, hb ? hb->n : 0);
		if (rc == 0) {
			snprintf(c->twin_hp, sizeof c->twin_hp, "%s", qof);
			snprintf(c->twin_q, sizeof c->twin_q, "%s", repo);
			mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
				    "%s: the quantized twin of %s (given with --quantized-of): "
				    "%zu tensors pair by name and shape",
				    repo, qof, n);
		}
		mfs_base_free(hb);
	} else {
		char other[MFS_REPO_ID_MAX + 1];
		int is_q = 0;
		rc = mfs_twin_propose(t, repo, wl->w, wl->n, other, &is_q);
		if (rc < 0)
			mfs_err(c->err, rc, "%s: looking for its quantized twin failed: %s", repo,
				mfs_strerror(rc));
		else if (other[0]) {
			snprintf(c->twin_hp, sizeof c->twin_hp, "%s", is_q ? other : repo);
			snprintf(c->twin_q, sizeof c->twin_q, "%s", is_q ? repo : other);
			mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
				    "%s: %s %s (found by tensor names and shapes; --no-twin "
				    "stores it unpaired)",
				    repo, is_q ? "the quantized twin of" : "has a quantized twin:",
				    other);
		}
	}
	mfs_txn_abort(t);
	return rc;
}

static void twin_note(void *ud, int warning, const char *line)
{
	ingest_ctx *c = ud;
	mfs_ingest_ctx_note(c, warning ? MFS_INGEST_WARNING : MFS_INGEST_NOTE, "%s", line);
}

/* After the snapshot is published: make the pair (ingest/twin.h). */
static int pair_twin(ingest_ctx *c)
{
	if (!c->twin_hp[0])
		return 0;
	mfs_twin_stats ts;
	mfs_errmsg perr = {0};
	int rc = mfs_twin_pair(c->store, c->twin_hp, c->twin_q, twin_note, c, &ts, &perr);
	if (rc < 0) {
		/* the snapshot is published and every tensor is either paired or as
		 * it was: the store is sound, only the saving is missing */
		mfs_ingest_ctx_note(c, MFS_INGEST_WARNING,
			    "%s: stored, but pairing it with %s stopped: %s (ingest it again to "
			    "retry; what was paired stays)",
			    c->twin_hp, c->twin_q, perr.msg[0] ? perr.msg : mfs_strerror(rc));
		return 0;
	}
	snprintf(c->stats->twin, sizeof c->stats->twin, "%s", c->twin_q);
	c->stats->tensors_twin += ts.tensors;
	c->stats->twin_before += ts.before;
	c->stats->twin_after += ts.after;
	char a[32], b[32], d[32];
	mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
		    "%s: %llu tensors (%llu chunks) stored as residuals of its quantized twin %s: "
		    "%s instead of %s (saving %s)%s",
		    c->twin_hp, (unsigned long long)ts.tensors, (unsigned long long)ts.chunks,
		    c->twin_q, mfs_size_format(ts.after, a, sizeof a),
		    mfs_size_format(ts.before, b, sizeof b),
		    mfs_size_format(ts.before - ts.after, d, sizeof d),
		    ts.tensors_left ? "; some tensors stay alone (notes above say why)" : "");
	return 0;
}

/* The saving the deltas of the last snapshot brought, for the user. */
static void note_saving(ingest_ctx *c, const char *repo, const mfs_ingest_stats *before)
{
	if (!c->base)
		return;
	uint64_t n = c->stats->tensors_delta - before->tensors_delta;
	uint64_t stored = c->stats->delta_stored - before->delta_stored;
	uint64_t alone = c->stats->delta_alone - before->delta_alone;
	uint64_t same = c->stats->tensors_same - before->tensors_same;
	char a[32], b[32], d[32];
	mfs_ingest_ctx_note(c, MFS_INGEST_NOTE,
		    "%s: %llu tensors stored as xor-deltas against %s: %s instead of about %s "
		    "alone (saving %s); %llu tensors already in the store",
		    repo, (unsigned long long)n, c->base->repo, mfs_size_format(stored, a, sizeof a),
		    mfs_size_format(alone, b, sizeof b),
		    mfs_size_format(alone > stored ? alone - stored : 0, d, sizeof d),
		    (unsigned long long)same);
}

static int ingest_snapshot(ingest_ctx *c, const char *repo, src_snapshot *sn)
{
	mfs_ingest_stats before = *c->stats;
	want_list wl;
	char **etags = NULL;
	mfs_file_rec *recs = NULL;
	int rc = want_build(sn, &wl);
	if (rc == 0)
		rc = choose_base(c, repo, sn, &wl);
	if (rc == 0)
		rc = choose_twin(c, repo, &wl);
	want_free(&wl, sn->n_files);
	if (rc < 0)
		goto out;
	etags = calloc(sn->n_files ? sn->n_files : 1, sizeof *etags);
	recs = calloc(sn->n_files ? sn->n_files : 1, sizeof *recs);
	if (!etags || !recs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sn->n_files; i++) {
		if ((rc = mfs_repo_path_check(sn->files[i].rel, c->err)) < 0)
			goto out;
		etags[i] = calloc(1, MFS_ETAG_MAX + 1);
		if (!etags[i]) {
			rc = -ENOMEM;
			goto out;
		}
		if ((rc = mfs_writer_file(c, repo, &sn->files[i], etags[i])) < 0)
			goto out;
		recs[i].path = sn->files[i].rel;
		recs[i].etag = etags[i];
		recs[i].mode = sn->files[i].mode;
	}
	char commit[MFS_COMMIT_LEN + 1];
	if (sn->commit[0])
		strcpy(commit, sn->commit);
	else
		mfs_src_folder_commit_id(sn, etags, commit);
	if ((rc = mfs_writer_txn_ensure(c)) < 0)
		goto out;
	rc = mfs_snapshot_publish(c->txn, repo, commit, (uint64_t)time(NULL), recs,
				  sn->n_files, (const char *const *)sn->noexist, sn->n_noexist,
				  (const char *const *)sn->refs, sn->n_refs, c->err);
	if (rc < 0)
		goto out;
	/* The snapshot becomes visible here, whole. */
	if ((rc = mfs_writer_txn_commit(c)) < 0) {
		mfs_err(c->err, rc, "%s: committing the snapshot failed: %s", repo,
			mfs_strerror(rc));
		goto out;
	}
	c->stats->snapshots++;
	note_saving(c, repo, &before);
	rc = pair_twin(c);
out:
	mfs_base_free(c->base);
	c->base = NULL;
	for (size_t i = 0; etags && i < sn->n_files; i++)
		free(etags[i]);
	free(etags);
	free(recs);
	return rc;
}

static int ingest_hf_repo(ingest_ctx *c, hf_repo *r)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < r->n_snaps; i++) {
		rc = ingest_snapshot(c, r->repo, &r->snaps[i]);
		if (rc < 0)
			mfs_err_prefix(c->err, rc, "%s@%.12s", r->repo, r->snaps[i].commit);
	}
	return rc;
}

/* An HF cache or one repo folder of it: every repo collected, then ingested. */
static int ingest_hf_source(ingest_ctx *c, const char *src)
{
	char **dirs = NULL;
	size_t n = 0;
	int rc = mfs_src_list_hf_repos(src, &dirs, &n, c->err);
	if (rc < 0)
		return rc;
	hf_repo *repos = calloc(n ? n : 1, sizeof *repos);
	if (!repos) {
		mfs_src_free_strs(dirs, n);
		return -ENOMEM;
	}
	uint64_t total = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = mfs_src_collect_hf_repo(dirs[i], &repos[i], c->err);
		for (size_t k = 0; rc == 0 && k < repos[i].n_snaps; k++)
			total += mfs_src_snapshot_bytes(&repos[i].snaps[k]);
	}
	if (rc == 0) {
		mfs_ingest_ctx_progress_start(c, total);
		for (size_t i = 0; rc == 0 && i < n; i++)
			rc = ingest_hf_repo(c, &repos[i]);
	}
	for (size_t i = 0; i < n; i++)
		mfs_src_hf_repo_free(&repos[i]);
	free(repos);
	mfs_src_free_strs(dirs, n);
	return rc;
}

void mfs_ingest_opts_default(mfs_ingest_opts *o)
{
	memset(o, 0, sizeof *o);
	o->chunk_size = (size_t)1 << 20;
	o->force_codec = -1;
	o->ref = "main";
}

int mfs_ingest_path(mfs_store *s, const char *src_in, const mfs_ingest_opts *opts,
		    mfs_ingest_stats *stats, mfs_errmsg *err)
{
	memset(stats, 0, sizeof *stats);
	size_t cs = opts->chunk_size;
	if (cs < 4096 || cs > MFS_CHUNK_MAX || (cs & (cs - 1)))
		return mfs_err(err, MFS_E_INVAL,
			       "chunk size %zu: must be a power of two from 4 KiB to 64 MiB", cs);
	if (opts->ref && mfs_ref_name_check(opts->ref, err) < 0)
		return mfs_err_prefix(err, MFS_E_INVAL, "--ref");
	if (opts->repo && mfs_repo_id_check(opts->repo, err) < 0)
		return MFS_E_INVAL;
	char src[PATH_MAX];
	snprintf(src, sizeof src, "%s", src_in);
	size_t sl = strlen(src);
	while (sl > 1 && src[sl - 1] == '/')
		src[--sl] = '\0';
	struct stat st;
	if (stat(src, &st) < 0)
		return mfs_err(err, -errno, "cannot read %s: %s", src, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mfs_err(err, MFS_E_INVAL,
			       "%s is not a directory: give a model folder (with --repo) or a "
			       "Hugging Face cache directory",
			       src);
	int lock_fd = -1;
	int rc = mfs_store_lock_ingest(s, 0, 1, &lock_fd);
	if (rc < 0)
		return mfs_err(err, rc, "cannot take the store's ingest lock: %s",
			       mfs_strerror(rc));
	ingest_ctx c = {.store = s, .opts = opts, .stats = stats, .err = err};
	double t0 = mfs_now_seconds();
	if ((rc = mfs_pipe_start(&c)) < 0) {
		mfs_err(err, rc, "cannot start encoder threads: %s", mfs_strerror(rc));
		goto out;
	}
	if (opts->repo) {
		src_snapshot sn = {0};
		rc = mfs_src_collect_folder(&c, src, &sn);
		if (rc == 0 && opts->ref)
			rc = mfs_src_push_str(&sn.refs, &sn.n_refs, &sn.cap_refs, opts->ref);
		if (rc == 0) {
			mfs_ingest_ctx_progress_start(&c, mfs_src_snapshot_bytes(&sn));
			rc = ingest_snapshot(&c, opts->repo, &sn);
		}
		mfs_src_snapshot_free(&sn);
	} else {
		rc = ingest_hf_source(&c, src);
	}
out:
	if (c.txn) {
		/* what an error left uncommitted is dropped; committed chunks are gc's */
		mfs_txn_abort(c.txn);
		c.txn = NULL;
	}
	mfs_pipe_stop(&c);
	if (rc == 0 && (rc = mfs_store_sync(s)) < 0)
		mfs_err(err, rc, "flushing the store to disk failed: %s", mfs_strerror(rc));
	mfs_store_unlock(lock_fd);
	stats->seconds = mfs_now_seconds() - t0;
	return rc;
}

