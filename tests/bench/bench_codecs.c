/*
 * bench_codecs - size and single-thread speed of the codecs on real tensors.
 *
 *   bench_codecs [--tsv] [--quick] [--repeat N] [--chunk BYTES] FILE.safetensors...
 *   bench_codecs --delta BASE.safetensors [--tsv] [--repeat N] [--chunk BYTES] FT.safetensors...
 *   bench_codecs --quant HP.safetensors [--tsv] [--repeat N] [--chunk BYTES] Q.safetensors
 *
 * --quick measures bitplane-huff and rans only (zstd-19 encodes slowly);
 * --rans-sweep measures rans at precisions P = 9, 10, 11 and lane counts
 * 32..1024 next to bitplane-huff;
 * --rans-tables compares one rANS table per chunk with one per tensor
 * (bench_rans_tables).
 *
 * Reads the tensors of the given safetensors files (a small header parser of
 * its own, so the bench does not depend on index/), groups them by dtype and
 * cuts each tensor into chunks of 1 MiB (aligned to the tensor's start, as
 * ingest does).  Per dtype and codec (bitplane-huff, zstd level 3, zstd level
 * 19) it prints the stored size in % of raw, encode MB/s and decode MB/s,
 * one thread.  Decoding goes into one reused, pre-faulted chunk buffer, so
 * the figure is the codec's, not the page-fault handler's.  Each tensor's
 * chunks are decoded N times and the best pass counts (as bench_zipnn.py
 * does per tensor), so a busy neighbour on a shared machine shows less;
 * every chunk is checked bit-exact once.
 *
 * --delta BASE: each fine-tune FT against BASE.  Only FT's float tensors
 * that BASE holds under the same name, shape and dtype count (others are
 * reported on stderr and left out); chunks are cut the same way, and the
 * base's bytes of the same elements are each chunk's reference.  Rows per
 * fine-tune and dtype: xor-delta; the XOR coded with zstd -3 (BitX; its
 * decode includes the XOR pass); bitplane-huff on the fine-tune alone; the
 * per-tensor choice of xor-delta or bitplane-huff by the ingest rule's 1%
 * slack; the order-0 entropy of the XOR's byte planes per tensor and per
 * chunk (no tables counted: a floor for one static model per plane); then
 * how many tensors chose the delta and how many chunks equal the base's.
 *
 * --quant HP Q: each BF16/F16 tensor X of HP whose quantized twin Q holds
 * (X in Q, dtype I8 or F8_E4M3, same shape; its scale X_scale or
 * X_scale_inv, or for X = S.weight also S.scale / S.scale_inv), coded as
 * quant-residual against the twin (chunks of HP cut as ingest does; the
 * twin's codes and the scale span of the same elements are each chunk's
 * references).  Rows per twin dtype: the pair (residual + the twin with
 * the codec mfs_codec_choose picks for it + the scales raw) in % of the raw
 * bytes of both (HP + twin + scales) and the HP decode speed from the pair;
 * the residual alone (% of HP); the twin alone with that codec and with
 * zstd -3 (% of the twin, chunks cut from the twin's own start, with their
 * decode speeds); HP alone with bitplane-huff;
 * the pair stored stand-alone (HP bitplane-huff + twin zstd -3); the
 * order-0 bound H(q, r) per tensor (the twin's code and the distance of the
 * value from its dequantized code, no tables); and how many of the twin's
 * codes mfs_quant_quantize() reproduces (ingest's confirmation).
 * MB = 10^6 bytes of raw (decoded) data.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "planes.h"
#include "quant.h"
#include "rans.h"

typedef struct tensor {
	mfs_dtype dtype;
	const uint8_t *data;
	size_t len;
	char name[256];
	char shape[128]; /* the JSON text of its shape, blanks dropped: "[384,1536]" */
} tensor;

typedef struct tensor_list {
	tensor *v;
	size_t n, cap;
} tensor_list;

/*
 * CPU time of this process, not wall time: the bench runs on shared
 * machines, and being descheduled must not count as decode time (ZipNN's
 * bench uses the same clock).
 */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- a minimal safetensors header reader ---- */

typedef struct jcur {
	const char *p, *end;
} jcur;

static void jws(jcur *c)
{
	while (c->p < c->end &&
	       (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
		c->p++;
}

/* Parse a string into out (truncated to cap-1, escapes kept verbatim). */
static int jstring(jcur *c, char *out, size_t cap)
{
	jws(c);
	if (c->p >= c->end || *c->p != '"')
		return -1;
	c->p++;
	size_t k = 0;
	while (c->p < c->end && *c->p != '"') {
		if (*c->p == '\\' && c->p + 1 < c->end) {
			if (out && k + 1 < cap)
				out[k++] = *c->p;
			c->p++;
		}
		if (out && k + 1 < cap)
			out[k++] = *c->p;
		c->p++;
	}
	if (c->p >= c->end)
		return -1;
	c->p++;
	if (out)
		out[k] = 0;
	return 0;
}

static int jskip(jcur *c, int depth)
{
	if (depth > 64)
		return -1;
	jws(c);
	if (c->p >= c->end)
		return -1;
	char ch = *c->p;
	if (ch == '"')
		return jstring(c, NULL, 0);
	if (ch == '{' || ch == '[') {
		char close = ch == '{' ? '}' : ']';
		c->p++;
		jws(c);
		if (c->p < c->end && *c->p == close) {
			c->p++;
			return 0;
		}
		for (;;) {
			if (ch == '{') {
				if (jstring(c, NULL, 0))
					return -1;
				jws(c);
				if (c->p >= c->end || *c->p != ':')
					return -1;
				c->p++;
			}
			if (jskip(c, depth + 1))
				return -1;
			jws(c);
			if (c->p < c->end && *c->p == ',') {
				c->p++;
				continue;
			}
			if (c->p < c->end && *c->p == close) {
				c->p++;
				return 0;
			}
			return -1;
		}
	}
	while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']')
		c->p++;
	return 0;
}

static int add_tensor(tensor_list *l, tensor t)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		tensor *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = t;
	return 0;
}

static int read_safetensors(const char *path, tensor_list *out)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "bench_codecs: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = size > 0 ? malloc((size_t)size) : NULL;
	if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
		fprintf(stderr, "bench_codecs: %s: cannot read\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | buf[i];
	if (size < 8 || hlen > (uint64_t)size - 8)
		goto bad;
	const uint8_t *base = buf + 8 + hlen;
	uint64_t data_len = (uint64_t)size - 8 - hlen;
	jcur c = {(const char *)buf + 8, (const char *)buf + 8 + hlen};
	jws(&c);
	if (c.p >= c.end || *c.p != '{')
		goto bad;
	c.p++;
	for (;;) {
		char name[256];
		jws(&c);
		if (c.p < c.end && *c.p == '}')
			break;
		if (jstring(&c, name, sizeof name))
			goto bad;
		jws(&c);
		if (c.p >= c.end || *c.p != ':')
			goto bad;
		c.p++;
		jws(&c);
		if (strcmp(name, "__metadata__") == 0 || c.p >= c.end || *c.p != '{') {
			if (jskip(&c, 0))
				goto bad;
		} else {
			char dtype[32] = "", shape[128] = "";
			uint64_t off[2] = {0, 0};
			c.p++;
			for (;;) {
				char key[64];
				if (jstring(&c, key, sizeof key))
					goto bad;
				jws(&c);
				if (c.p >= c.end || *c.p != ':')
					goto bad;
				c.p++;
				jws(&c);
				if (strcmp(key, "dtype") == 0) {
					if (jstring(&c, dtype, sizeof dtype))
						goto bad;
				} else if (strcmp(key, "data_offsets") == 0 &&
					   c.p < c.end && *c.p == '[') {
					char *e;
					off[0] = strtoull(c.p + 1, &e, 10);
					while (e < c.end && *e != ',')
						e++;
					off[1] = strtoull(e + 1, &e, 10);
					c.p = e;
					jws(&c);
					if (c.p >= c.end || *c.p != ']')
						goto bad;
					c.p++;
				} else if (strcmp(key, "shape") == 0) {
					const char *from = c.p;
					if (jskip(&c, 0))
						goto bad;
					size_t k = 0;
					for (const char *q = from; q < c.p && k + 1 < sizeof shape; q++)
						if (*q != ' ' && *q != '\n' && *q != '\t' && *q != '\r')
							shape[k++] = *q;
					shape[k] = 0;
				} else if (jskip(&c, 0)) {
					goto bad;
				}
				jws(&c);
				if (c.p < c.end && *c.p == ',') {
					c.p++;
					continue;
				}
				if (c.p < c.end && *c.p == '}') {
					c.p++;
					break;
				}
				goto bad;
			}
			if (off[1] < off[0] || off[1] > data_len)
				goto bad;
			tensor t = {mfs_dtype_from_name(dtype), base + off[0],
				    (size_t)(off[1] - off[0]), "", ""};
			snprintf(t.name, sizeof t.name, "%s", name);
			snprintf(t.shape, sizeof t.shape, "%s", shape);
			if (t.len && add_tensor(out, t))
				goto bad;
		}
		jws(&c);
		if (c.p < c.end && *c.p == ',') {
			c.p++;
			continue;
		}
		if (c.p < c.end && *c.p == '}')
			break;
		goto bad;
	}
	return 0; /* buf stays alive: tensors point into it */
bad:
	fprintf(stderr, "bench_codecs: %s: not a safetensors file I can read\n", path);
	free(buf);
	return -1;
}

/* ---- the measurement ---- */

typedef struct codec_cfg {
	const char *label;
	mfs_codec_id id;
	int level;
	int xor_first; /* code the XOR with the base with a stand-alone codec (BitX) */
	mfs_rans_opts rans; /* rans: precision and lanes (0: the defaults) */
} codec_cfg;

typedef struct chunk {
	size_t tensor; /* index of its tensor: chunks of one tensor are adjacent */
	const uint8_t *raw;
	const uint8_t *base; /* the base's bytes of the same elements (delta mode) */
	size_t len;
	uint8_t *enc;
	size_t enc_len;
} chunk;

static int encode_chunk(const codec_cfg *cc, mfs_dtype dt, chunk *c, size_t cap,
			uint8_t *tmp, mfs_codec_ws *ws)
{
	mfs_encode_params p = {.dtype = dt, .zstd_level = cc->level};
	mfs_ref_data ref = {MFS_REF_BASE, c->base, c->len};
	const uint8_t *in = c->raw;
	if (cc->xor_first) {
		for (size_t k = 0; k < c->len; k++)
			tmp[k] = c->raw[k] ^ c->base[k];
		in = tmp;
	} else if (mfs_codec_get(cc->id)->flags & MFS_CODEC_NEEDS_REF) {
		p.refs = &ref;
		p.n_refs = 1;
	}
	if (cc->id == MFS_CODEC_RANS)
		return mfs_rans_encode_opts(&p, &cc->rans, in, c->len, c->enc, cap, &c->enc_len,
					    ws);
	return mfs_codec_encode(cc->id, &p, in, c->len, c->enc, cap, &c->enc_len, ws);
}

static int decode_chunk(const codec_cfg *cc, const chunk *c, uint8_t *dec, mfs_codec_ws *ws)
{
	if (cc->xor_first) {
		int rc = mfs_codec_decode_plain(cc->id, c->enc, c->enc_len, dec, c->len, ws);
		for (size_t k = 0; k < c->len; k++)
			dec[k] ^= c->base[k];
		return rc;
	}
	mfs_ref_data ref = {MFS_REF_BASE, c->base, c->len};
	mfs_decode_req rq = {.src = c->enc, .src_len = c->enc_len, .dst = dec, .dst_len = c->len};
	if (mfs_codec_get(cc->id)->flags & MFS_CODEC_NEEDS_REF) {
		rq.refs = &ref;
		rq.n_refs = 1;
	}
	return mfs_codec_decode(cc->id, &rq, ws);
}

/*
 * Encode every chunk with @p cc (sizes left in ch[i].enc_len), check each
 * round trip, then time decoding.
 */
static int bench_one(const codec_cfg *cc, mfs_dtype dt, chunk *ch, size_t nch,
		     size_t chunk_size, int repeat, mfs_codec_ws *ws, uint8_t *dec,
		     uint8_t *tmp, double *pct, double *enc_mbps, double *dec_mbps)
{
	size_t raw = 0, stored = 0;
	size_t cap = mfs_codec_bound_max(chunk_size);
	double t0 = now();
	for (size_t i = 0; i < nch; i++) {
		int rc = encode_chunk(cc, dt, &ch[i], cap, tmp, ws);
		if (rc < 0) {
			fprintf(stderr, "bench_codecs: %s encode: %s\n", cc->label,
				mfs_strerror(rc));
			return -1;
		}
		raw += ch[i].len;
		stored += ch[i].enc_len;
	}
	double t_enc = now() - t0;
	for (size_t i = 0; i < nch; i++) {
		int rc = decode_chunk(cc, &ch[i], dec, ws);
		if (rc < 0 || memcmp(dec, ch[i].raw, ch[i].len) != 0) {
			fprintf(stderr, "bench_codecs: %s: round trip failed (%s)\n",
				cc->label, mfs_strerror(rc));
			return -1;
		}
	}
	/* per tensor, the best of `repeat` passes over its chunks (robust to
	 * other processes on a shared machine), summed over tensors */
	double best_sum = 0;
	for (size_t i = 0; i < nch;) {
		size_t j = i;
		while (j < nch && ch[j].tensor == ch[i].tensor)
			j++;
		double best = 0;
		for (int r = 0; r < repeat; r++) {
			t0 = now();
			for (size_t c = i; c < j; c++)
				decode_chunk(cc, &ch[c], dec, ws);
			double t = now() - t0;
			if (r == 0 || t < best)
				best = t;
		}
		best_sum += best;
		i = j;
	}
	*pct = 100.0 * (double)stored / (double)raw;
	*enc_mbps = raw / t_enc / 1e6;
	*dec_mbps = raw / best_sum / 1e6;
	return 0;
}

static void print_row(int tsv, const char *file, mfs_dtype dt, const char *label, double raw,
		      double pct, double e, double d)
{
	if (tsv) {
		if (file)
			printf("%s\t", file);
		printf("%s\t%s\t%.3f\t%.2f\t%.0f\t%.0f\n", mfs_dtype_name(dt), label, raw / 1e6,
		       pct, e, d);
	} else {
		if (file)
			printf("%-28s ", file);
		if (e > 0)
			printf("%-6s %-22s %10.1f %8.2f%% %10.0f %10.0f\n", mfs_dtype_name(dt),
			       label, raw / 1e6, pct, e, d);
		else
			printf("%-6s %-22s %10.1f %8.2f%% %10s %10s\n", mfs_dtype_name(dt),
			       label, raw / 1e6, pct, "-", "-");
	}
	fflush(stdout);
}

static const mfs_dtype bench_dtypes[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32};

/* Cut the tensors of dtype @p dt into chunks aligned to each tensor's start. */
static chunk *make_chunks(const tensor_list *tl, const tensor *const *bases, mfs_dtype dt,
			  size_t chunk_size, size_t *nch_out, size_t *raw_out)
{
	size_t nch = 0, raw = 0, cap = mfs_codec_bound_max(chunk_size);
	for (size_t i = 0; i < tl->n; i++)
		if (tl->v[i].dtype == dt && (!bases || bases[i]))
			nch += (tl->v[i].len + chunk_size - 1) / chunk_size;
	*nch_out = nch;
	*raw_out = 0;
	if (!nch)
		return NULL;
	chunk *ch = calloc(nch, sizeof *ch);
	if (!ch)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < tl->n; i++) {
		if (tl->v[i].dtype != dt || (bases && !bases[i]))
			continue;
		for (size_t o = 0; o < tl->v[i].len; o += chunk_size) {
			ch[k].tensor = i;
			ch[k].raw = tl->v[i].data + o;
			ch[k].base = bases ? bases[i]->data + o : NULL;
			ch[k].len = tl->v[i].len - o < chunk_size ? tl->v[i].len - o : chunk_size;
			ch[k].enc = malloc(cap);
			if (!ch[k].enc)
				return NULL;
			raw += ch[k].len;
			k++;
		}
	}
	*raw_out = raw;
	return ch;
}

static void free_chunks(chunk *ch, size_t nch)
{
	for (size_t i = 0; i < nch; i++)
		free(ch[i].enc);
	free(ch);
}

static double plane_entropy_bits(const uint64_t *f, uint64_t n)
{
	double h = 0;
	for (unsigned s = 0; s < 256; s++)
		if (f[s])
			h -= (double)f[s] * log2((double)f[s] / (double)n);
	return h;
}

/*
 * The order-0 entropy of the XOR's byte planes (byte k of every element),
 * in bytes: per tensor (one histogram per byte position over the tensor)
 * and per chunk.
 */
static void xor_bounds(const chunk *ch, size_t nch, unsigned es, double *per_tensor,
		       double *per_chunk)
{
	static uint64_t ft[8][256], fc[8][256];
	uint64_t nt = 0;
	*per_tensor = *per_chunk = 0;
	memset(ft, 0, sizeof ft);
	for (size_t i = 0; i < nch; i++) {
		memset(fc, 0, sizeof fc);
		for (size_t k = 0; k < ch[i].len; k++)
			fc[k % es][ch[i].raw[k] ^ ch[i].base[k]]++;
		for (unsigned b = 0; b < es; b++) {
			*per_chunk += plane_entropy_bits(fc[b], ch[i].len / es) / 8;
			for (unsigned s = 0; s < 256; s++)
				ft[b][s] += fc[b][s];
		}
		nt += ch[i].len / es;
		if (i + 1 == nch || ch[i + 1].tensor != ch[i].tensor) {
			for (unsigned b = 0; b < es; b++)
				*per_tensor += plane_entropy_bits(ft[b], nt) / 8;
			memset(ft, 0, sizeof ft);
			nt = 0;
		}
	}
}

/* Same name, shape and dtype (and so length). */
static const tensor *match_base(const tensor_list *base, const tensor *t)
{
	for (size_t j = 0; j < base->n; j++) {
		const tensor *b = &base->v[j];
		if (b->dtype == t->dtype && b->len == t->len && strcmp(b->name, t->name) == 0 &&
		    strcmp(b->shape, t->shape) == 0)
			return b;
	}
	return NULL;
}

/*
 * Delta mode: each fine-tune against the base, on the float tensors that
 * match one of the base's.  Rows per (file, dtype): xor-delta, the XOR coded
 * with zstd -3 (BitX), bitplane-huff on the fine-tune alone, the per-tensor
 * choice of the two by the 1% rule, and the order-0 bounds of the XOR's byte
 * planes.
 */
static int bench_delta(const char *base_path, char **files, int nfiles, size_t chunk_size,
		       int repeat, int tsv)
{
	tensor_list base = {0};
	if (read_safetensors(base_path, &base))
		return 1;
	static const codec_cfg codecs[] = {
	    {"xor-delta", MFS_CODEC_XOR_DELTA, 0, 0, {0, 0}},
	    {"xor+zstd-3", MFS_CODEC_ZSTD, 3, 1, {0, 0}},
	    {"bitplane-huff (alone)", MFS_CODEC_BITPLANE_HUFF, 0, 0, {0, 0}},
	};
	enum { N_CODECS = sizeof codecs / sizeof codecs[0] };
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws))
		return 1;
	uint8_t *dec = malloc(chunk_size), *tmp = malloc(chunk_size);
	if (!dec || !tmp)
		return 1;
	memset(dec, 0, chunk_size); /* pre-fault the reused decode buffer */
	if (!tsv) {
		printf("base %s; chunks of %zu bytes, one thread, process CPU time; decode into "
		       "one reused pre-faulted buffer, best of %d passes per tensor; MB = 1e6 "
		       "raw bytes\n",
		       base_path, chunk_size, repeat);
		printf("%-28s %-6s %-22s %10s %9s %10s %10s\n", "file", "dtype", "codec",
		       "raw MB", "stored%", "enc MB/s", "dec MB/s");
	}
	for (int f = 0; f < nfiles; f++) {
		tensor_list tl = {0};
		if (read_safetensors(files[f], &tl))
			return 1;
		/* a fine-tune's folder names it better than "model.safetensors" */
		char label[64];
		const char *slash = strrchr(files[f], '/');
		const char *fname = slash ? slash + 1 : files[f];
		if (slash && strcmp(fname, "model.safetensors") == 0) {
			const char *d0 = slash;
			while (d0 > files[f] && d0[-1] != '/')
				d0--;
			snprintf(label, sizeof label, "%.*s", (int)(slash - d0), d0);
		} else {
			snprintf(label, sizeof label, "%s", fname);
		}
		const tensor **bases = calloc(tl.n ? tl.n : 1, sizeof *bases);
		size_t unmatched = 0, unmatched_n = 0;
		for (size_t i = 0; i < tl.n; i++) {
			bases[i] = match_base(&base, &tl.v[i]);
			if (!bases[i] && mfs_dtype_is_float(tl.v[i].dtype)) {
				unmatched += tl.v[i].len;
				unmatched_n++;
			}
		}
		if (unmatched_n)
			fprintf(stderr, "bench_codecs: %s: %zu float tensors (%zu bytes) match "
					"none of the base's (left out)\n",
				label, unmatched_n, unmatched);
		for (size_t d = 0; d < sizeof bench_dtypes / sizeof bench_dtypes[0]; d++) {
			mfs_dtype dt = bench_dtypes[d];
			unsigned es = mfs_dtype_bits(dt) / 8;
			size_t nch, raw;
			chunk *ch = make_chunks(&tl, bases, dt, chunk_size, &nch, &raw);
			if (!nch)
				continue;
			if (!ch)
				return 1;
			size_t *sizes[N_CODECS];
			for (size_t c = 0; c < N_CODECS; c++) {
				double pct, e, dm;
				if (bench_one(&codecs[c], dt, ch, nch, chunk_size, repeat, ws, dec,
					      tmp, &pct, &e, &dm))
					return 1;
				sizes[c] = malloc(nch * sizeof(size_t));
				for (size_t i = 0; i < nch; i++)
					sizes[c][i] = ch[i].enc_len;
				print_row(tsv, label, dt, codecs[c].label, (double)raw, pct, e, dm);
			}
			/* per tensor: xor-delta when it saves more than 1% of the raw
			 * tensor over bitplane-huff alone (the ingest rule's slack) */
			size_t chosen = 0, same = 0, same_bytes = 0, delta_tensors = 0,
			       tensors = 0;
			for (size_t i = 0; i < nch;) {
				size_t j = i, xd = 0, bp = 0, traw = 0;
				while (j < nch && ch[j].tensor == ch[i].tensor) {
					xd += sizes[0][j];
					bp += sizes[2][j];
					traw += ch[j].len;
					j++;
				}
				int use_delta = (double)xd < (double)bp - 0.01 * (double)traw;
				delta_tensors += use_delta;
				tensors++;
				for (size_t k = i; k < j; k++) {
					size_t sz = use_delta ? sizes[0][k] : sizes[2][k];
					chosen += sz;
					if (memcmp(ch[k].raw, ch[k].base, ch[k].len) == 0) {
						same++;
						same_bytes += ch[k].len;
					}
				}
				i = j;
			}
			print_row(tsv, label, dt, "chosen per tensor", (double)raw,
				  100.0 * chosen / raw, 0, 0);
			double bt, bc;
			xor_bounds(ch, nch, es, &bt, &bc);
			print_row(tsv, label, dt, "XOR H0 bound/tensor", (double)raw,
				  100.0 * bt / raw, 0, 0);
			print_row(tsv, label, dt, "XOR H0 bound/chunk", (double)raw,
				  100.0 * bc / raw, 0, 0);
			if (!tsv)
				printf("%-28s %-6s %zu of %zu tensors as xor-delta; %zu of %zu "
				       "chunks (%.1f MB) equal to the base's\n",
				       label, mfs_dtype_name(dt), delta_tensors, tensors, same, nch,
				       same_bytes / 1e6);
			for (size_t c = 0; c < N_CODECS; c++)
				free(sizes[c]);
			free_chunks(ch, nch);
		}
		free(bases);
		free(tl.v);
	}
	free(dec);
	free(tmp);
	mfs_codec_ws_free(ws);
	return 0;
}

/* ---- quant mode ---- */

static const tensor *find_tensor(const tensor_list *l, const char *name)
{
	for (size_t j = 0; j < l->n; j++)
		if (strcmp(l->v[j].name, name) == 0)
			return &l->v[j];
	return NULL;
}

/* "[384,1536]" -> dims; @return the number of dims or -1 */
static int parse_shape(const char *s, uint64_t *dims, int max)
{
	int n = 0;
	if (*s++ != '[')
		return -1;
	while (*s && *s != ']') {
		char *e;
		if (n == max)
			return -1;
		dims[n++] = strtoull(s, &e, 10);
		if (e == s)
			return -1;
		s = *e == ',' ? e + 1 : e;
	}
	return *s == ']' ? n : -1;
}

/* The scale tensor of twin X: X_scale, X_scale_inv, or S.scale(_inv) for X = S.weight. */
static const tensor *find_scale(const tensor_list *q, const char *name)
{
	static const char *const suffix[] = {"_scale", "_scale_inv"};
	char buf[300];
	for (int k = 0; k < 2; k++) {
		snprintf(buf, sizeof buf, "%s%s", name, suffix[k]);
		const tensor *t = find_tensor(q, buf);
		if (t)
			return t;
	}
	size_t len = strlen(name);
	if (len > 7 && strcmp(name + len - 7, ".weight") == 0)
		for (int k = 0; k < 2; k++) {
			snprintf(buf, sizeof buf, "%.*s.scale%s", (int)(len - 7), name,
				 k ? "_inv" : "");
			const tensor *t = find_tensor(q, buf);
			if (t)
				return t;
		}
	return NULL;
}

static float f32_of_bits(uint32_t b)
{
	float f;
	memcpy(&f, &b, 4);
	return f;
}

static uint32_t f16_bits_to_f32(uint32_t h)
{
	uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
	if (e == 31)
		return s | 0x7f800000u | m << 13;
	if (e)
		return s | (e + 112) << 23 | m << 13;
	float f = (float)m * 0x1p-24f;
	uint32_t b;
	memcpy(&b, &f, 4);
	return s | b;
}

/* Scale element i as a float (dtype F32, BF16 or F16). */
static float scale_at(const tensor *sc, uint64_t i)
{
	const uint8_t *p = sc->data;
	uint32_t b;
	if (sc->dtype == MFS_DT_F32) {
		memcpy(&b, p + 4 * i, 4);
	} else {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		b = sc->dtype == MFS_DT_BF16 ? (uint32_t)h << 16 : f16_bits_to_f32(h);
	}
	return f32_of_bits(b);
}

static float e4m3_value(unsigned c)
{
	unsigned e = (c >> 3) & 15, m = c & 7;
	float v;
	if ((c & 0x7f) == 0x7f)
		return NAN;
	v = e ? ldexpf(1.0f + m / 8.0f, (int)e - 7) : ldexpf((float)m, -9);
	return c & 0x80 ? -v : v;
}

static uint64_t scale_index(const mfs_quant_scheme *s, uint64_t e)
{
	uint64_t r = e / s->cols, c = e % s->cols;
	switch (s->kind) {
	case MFS_QUANT_TENSOR:
		return 0;
	case MFS_QUANT_CHANNEL:
		return r;
	case MFS_QUANT_GROUP:
		return r * (s->cols / s->group) + c / s->group;
	case MFS_QUANT_BLOCK:
		return (r / s->block_r) * ((s->cols + s->block_c - 1) / s->block_c) +
		       c / s->block_c;
	}
	return 0;
}

/* binary32 -> F16 bits, nearest even (through double: exact for a bound) */
static uint32_t f32_to_f16_bits(float f)
{
	if (f != f)
		return 0x7e00;
	uint32_t sign = signbit(f) ? 0x8000 : 0;
	double a = fabs((double)f);
	if (a >= 65520.0)
		return sign | 0x7c00;
	if (a < 0x1p-14) /* subnormal: units of 2^-24 */
		return sign | (uint32_t)nearbyint(a * 0x1p24);
	int e;
	double m = frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
	double q = nearbyint(m * 2048.0); /* 11 significant bits */
	if (q == 2048.0) {
		q = 1024.0;
		e++;
	}
	return sign | (uint32_t)(e + 14) << 10 | ((uint32_t)q - 1024);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * H(q, r) in bits over a tensor: q the twin's code, r the distance of the
 * 16-bit value from the dequantized code in the type's monotone order.
 */
static double pair_entropy_bits(const tensor *hp, const tensor *tw, const tensor *sc,
				const mfs_quant_scheme *s)
{
	size_t n = hp->len / 2;
	uint32_t *key = malloc(n * sizeof *key);
	if (!key)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned q = tw->data[i];
		float v = s->qdtype == MFS_DT_I8 ? (float)(int8_t)q : e4m3_value(q);
		float prod = v * scale_at(sc, scale_index(s, i));
		uint32_t x, p;
		memcpy(&x, &prod, 4);
		if (hp->dtype == MFS_DT_BF16) {
			p = (x & 0x7fffffffu) > 0x7f800000u ? 0x7fc0
							     : (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
		} else {
			p = f32_to_f16_bits(prod);
		}
		uint16_t vb;
		memcpy(&vb, hp->data + 2 * i, 2);
		uint32_t ov = vb ^ (vb & 0x8000 ? 0xffffu : 0x8000u);
		uint32_t op = p ^ (p & 0x8000 ? 0xffffu : 0x8000u);
		key[i] = q << 16 | ((ov - op) & 0xffff);
	}
	qsort(key, n, sizeof *key, cmp_u32);
	double h = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && key[j] == key[i])
			j++;
		double c = (double)(j - i);
		h -= c * log2(c / (double)n);
		i = j;
	}
	free(key);
	return h;
}

/* Stored bytes of @p len bytes at @p data with codec @p id, in chunks of chunk_size. */
static int stored_alone(mfs_codec_id id, int level, mfs_dtype dt, const uint8_t *data,
			size_t len, size_t chunk_size, uint8_t *enc, uint8_t *dec,
			mfs_codec_ws *ws, size_t *stored, double *dec_s, int repeat)
{
	size_t cap = mfs_codec_bound_max(chunk_size);
	*stored = 0;
	*dec_s = 0;
	for (size_t o = 0; o < len; o += chunk_size) {
		size_t l = len - o < chunk_size ? len - o : chunk_size, el = 0;
		mfs_encode_params p = {.dtype = dt, .zstd_level = level};
		int rc = mfs_codec_encode(id, &p, data + o, l, enc, cap, &el, ws);
		if (rc < 0) {
			fprintf(stderr, "bench_codecs: %s encode: %s\n", mfs_codec_name(id),
				mfs_strerror(rc));
			return -1;
		}
		double best = 0;
		for (int r = 0; r < repeat; r++) {
			double t0 = now();
			rc = mfs_codec_decode_plain(id, enc, el, dec, l, ws);
			double t = now() - t0;
			if (rc < 0 || memcmp(dec, data + o, l) != 0) {
				fprintf(stderr, "bench_codecs: %s: round trip failed\n",
					mfs_codec_name(id));
				return -1;
			}
			if (r == 0 || t < best)
				best = t;
		}
		*dec_s += best;
		*stored += el;
	}
	return 0;
}

typedef struct quant_sum {
	mfs_dtype hpdt, qdt;
	int tensors;
	double hp_raw, twin_raw, scale_raw;
	double resid, twin_bp, twin_zstd, hp_bp, bound_bits;
	double enc_s, dec_s, twin_dec_s, twin_zdec_s, hp_dec_s;
	unsigned twin_codec[MFS_CODEC__COUNT]; /* tensors per chosen twin codec */
	uint64_t codes, matched;
	double worst_match;
} quant_sum;

/* One tensor and its twin: the residual's chunks, the twin and HP alone, the bound. */
static int bench_quant_tensor(const tensor *hp, const tensor *tw, const tensor *sc,
			      const mfs_quant_scheme *s, size_t chunk_size, int repeat,
			      mfs_codec_ws *ws, uint8_t *enc, uint8_t *dec, quant_sum *sum)
{
	size_t cap = mfs_codec_bound_max(chunk_size);
	size_t ssz = mfs_dtype_bits(sc->dtype) / 8;
	mfs_chunk_geom geom = {.dtype = hp->dtype};
	geom.ndim = (uint32_t)parse_shape(hp->shape, geom.shape, MFS_GEOM_DIMS);
	size_t nch = (hp->len + chunk_size - 1) / chunk_size;
	uint8_t **encs = calloc(nch, sizeof *encs);
	size_t *elens = calloc(nch, sizeof *elens);
	if (!encs || !elens)
		return -1;
	size_t resid = 0;
	double t_enc = 0;
	for (size_t k = 0; k < nch; k++) {
		size_t o = k * chunk_size, l = hp->len - o < chunk_size ? hp->len - o : chunk_size;
		uint64_t e0 = o / 2, n = l / 2, first, count;
		mfs_quant_scale_span(s, e0, n, &first, &count);
		mfs_ref_data refs[2] = {{MFS_REF_QUANT, tw->data + e0, n},
					{MFS_REF_SCALE, sc->data + first * ssz, count * ssz}};
		geom.elem_off = e0;
		mfs_encode_params p = {.dtype = hp->dtype, .geom = &geom, .refs = refs,
				       .n_refs = 2, .quant = s};
		encs[k] = malloc(cap);
		double t0 = now();
		int rc = mfs_codec_encode(MFS_CODEC_QUANT_RESIDUAL, &p, hp->data + o, l, encs[k],
					  cap, &elens[k], ws);
		t_enc += now() - t0;
		if (rc < 0) {
			fprintf(stderr, "bench_codecs: %s: quant-residual encode: %s\n", hp->name,
				mfs_strerror(rc));
			return -1;
		}
		resid += elens[k];
		mfs_decode_req rq = {.src = encs[k], .src_len = elens[k], .dst = dec, .dst_len = l,
				     .geom = &geom, .refs = refs, .n_refs = 2};
		rc = mfs_codec_decode(MFS_CODEC_QUANT_RESIDUAL, &rq, ws);
		if (rc < 0 || memcmp(dec, hp->data + o, l) != 0) {
			fprintf(stderr, "bench_codecs: %s: quant-residual round trip failed (%s)\n",
				hp->name, mfs_strerror(rc));
			return -1;
		}
	}
	double best = 0;
	for (int r = 0; r < repeat; r++) {
		double t0 = now();
		for (size_t k = 0; k < nch; k++) {
			size_t o = k * chunk_size,
			       l = hp->len - o < chunk_size ? hp->len - o : chunk_size;
			uint64_t e0 = o / 2, n = l / 2, first, count;
			mfs_quant_scale_span(s, e0, n, &first, &count);
			mfs_ref_data refs[2] = {{MFS_REF_QUANT, tw->data + e0, n},
						{MFS_REF_SCALE, sc->data + first * ssz, count * ssz}};
			geom.elem_off = e0;
			mfs_decode_req rq = {.src = encs[k], .src_len = elens[k], .dst = dec,
					     .dst_len = l, .geom = &geom, .refs = refs, .n_refs = 2};
			mfs_codec_decode(MFS_CODEC_QUANT_RESIDUAL, &rq, ws);
		}
		double t = now() - t0;
		if (r == 0 || t < best)
			best = t;
	}
	for (size_t k = 0; k < nch; k++)
		free(encs[k]);
	free(encs);
	free(elens);

	/* the twin with the codec ingest would choose for it (on its first chunk) */
	size_t twin_bp, twin_zstd, hp_bp;
	double twin_dec, zdec, hp_dec;
	mfs_codec_id twin_codec = MFS_CODEC_RAW;
	mfs_encode_params tp = {.dtype = tw->dtype};
	if (mfs_codec_choose(&tp, tw->data, tw->len < chunk_size ? tw->len : chunk_size, ws,
			     &twin_codec, NULL, NULL) < 0)
		return -1;
	sum->twin_codec[twin_codec]++;
	if (stored_alone(twin_codec, 0, tw->dtype, tw->data, tw->len, chunk_size, enc, dec, ws,
			 &twin_bp, &twin_dec, repeat) ||
	    stored_alone(MFS_CODEC_ZSTD, 3, tw->dtype, tw->data, tw->len, chunk_size, enc, dec,
			 ws, &twin_zstd, &zdec, repeat) ||
	    stored_alone(MFS_CODEC_BITPLANE_HUFF, 0, hp->dtype, hp->data, hp->len, chunk_size,
			 enc, dec, ws, &hp_bp, &hp_dec, repeat))
		return -1;

	/* ingest's confirmation: the twin's codes from the high-precision tensor */
	size_t n = hp->len / 2, matched = 0;
	uint8_t *codes = malloc(n ? n : 1);
	uint64_t first, count;
	mfs_quant_scale_span(s, 0, n, &first, &count);
	if (!codes || mfs_quant_quantize(s, hp->dtype, hp->data, 0, n, sc->data + first * ssz,
					 count * ssz, codes) < 0) {
		fprintf(stderr, "bench_codecs: %s: mfs_quant_quantize failed\n", hp->name);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		matched += codes[i] == tw->data[i];
	free(codes);
	double match = n ? 100.0 * matched / n : 100;
	if (match < 99.0)
		fprintf(stderr, "bench_codecs: %s: quantize() reproduces %.2f%% of the twin's codes\n",
			hp->name, match);

	sum->tensors++;
	sum->hp_raw += hp->len;
	sum->twin_raw += tw->len;
	sum->scale_raw += sc->len;
	sum->resid += resid;
	sum->twin_bp += twin_bp;
	sum->twin_zstd += twin_zstd;
	sum->hp_bp += hp_bp;
	sum->bound_bits += pair_entropy_bits(hp, tw, sc, s);
	sum->enc_s += t_enc;
	sum->dec_s += best;
	sum->twin_dec_s += twin_dec;
	sum->twin_zdec_s += zdec;
	sum->hp_dec_s += hp_dec;
	sum->codes += n;
	sum->matched += matched;
	if (sum->tensors == 1 || match < sum->worst_match)
		sum->worst_match = match;
	return 0;
}

static void print_quant(int tsv, const char *label, const quant_sum *q)
{
	double both = q->hp_raw + q->twin_raw + q->scale_raw;
	char tag[64];
	snprintf(tag, sizeof tag, "%s+%s", mfs_dtype_name(q->hpdt), mfs_dtype_name(q->qdt));
	struct {
		const char *what;
		double pct, raw, enc, dec;
	} rows[] = {
	    {"pair: residual + twin", 100 * (q->resid + q->twin_bp + q->scale_raw) / both,
	     both, 0, q->hp_raw / q->dec_s / 1e6},
	    {"residual alone (of HP)", 100 * q->resid / q->hp_raw, q->hp_raw,
	     q->hp_raw / q->enc_s / 1e6, q->hp_raw / q->dec_s / 1e6},
	    {"twin, ingest's codec", 100 * q->twin_bp / q->twin_raw, q->twin_raw, 0,
	     q->twin_raw / q->twin_dec_s / 1e6},
	    {"twin zstd-3", 100 * q->twin_zstd / q->twin_raw, q->twin_raw, 0,
	     q->twin_raw / q->twin_zdec_s / 1e6},
	    {"HP alone bitplane-huff", 100 * q->hp_bp / q->hp_raw, q->hp_raw, 0,
	     q->hp_raw / q->hp_dec_s / 1e6},
	    {"pair stand-alone bp+zstd-3", 100 * (q->hp_bp + q->twin_zstd + q->scale_raw) / both,
	     both, 0, 0},
	    {"pair H0 bound H(q,r)", 100 * (q->bound_bits / 8 + q->scale_raw) / both, both, 0, 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		if (tsv)
			printf("%s\t%s\t%s\t%.3f\t%.2f\t%.0f\t%.0f\n", label, tag, rows[i].what,
			       rows[i].raw / 1e6, rows[i].pct, rows[i].enc, rows[i].dec);
		else if (rows[i].dec > 0)
			printf("%-24s %-11s %-28s %9.1f %8.2f%% %9s %9.0f\n", label, tag,
			       rows[i].what, rows[i].raw / 1e6, rows[i].pct, "", rows[i].dec);
		else
			printf("%-24s %-11s %-28s %9.1f %8.2f%% %9s %9s\n", label, tag,
			       rows[i].what, rows[i].raw / 1e6, rows[i].pct, "", "-");
		if (i == 1 && !tsv && rows[i].enc > 0)
			printf("%-24s %-11s %-28s %9s %9s %9.0f\n", label, tag,
			       "  (residual encode MB/s)", "", "", rows[i].enc);
	}
	if (!tsv) {
		printf("%-24s %-11s twin codecs chosen:", label, tag);
		for (unsigned c = 0; c < MFS_CODEC__COUNT; c++)
			if (q->twin_codec[c])
				printf(" %s x%u", mfs_codec_name((mfs_codec_id)c), q->twin_codec[c]);
		printf("\n");
	}
	if (!tsv)
		printf("%-24s %-11s %d tensors; quantize() reproduces %.3f%% of the codes (worst "
		       "tensor %.2f%%)\n",
		       label, tag, q->tensors, 100.0 * q->matched / (q->codes ? q->codes : 1),
		       q->worst_match);
	fflush(stdout);
}

static int bench_quant(const char *hp_path, const char *q_path, size_t chunk_size, int repeat,
		       int tsv)
{
	tensor_list hp = {0}, q = {0};
	if (read_safetensors(hp_path, &hp) || read_safetensors(q_path, &q))
		return 1;
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws))
		return 1;
	size_t cap = mfs_codec_bound_max(chunk_size);
	uint8_t *dec = malloc(chunk_size), *enc = malloc(cap);
	if (!dec || !enc)
		return 1;
	memset(dec, 0, chunk_size); /* pre-fault the reused decode buffer */
	const char *slash = strrchr(q_path, '/');
	const char *label = slash ? slash + 1 : q_path;
	quant_sum sums[4];
	size_t nsum = 0;
	int skipped = 0;
	for (size_t i = 0; i < hp.n; i++) {
		const tensor *t = &hp.v[i];
		if (t->dtype != MFS_DT_BF16 && t->dtype != MFS_DT_F16)
			continue;
		const tensor *tw = find_tensor(&q, t->name), *sc = NULL;
		if (!tw || (tw->dtype != MFS_DT_I8 && tw->dtype != MFS_DT_F8_E4M3))
			continue;
		sc = find_scale(&q, t->name);
		uint64_t shape[MFS_GEOM_DIMS], sshape[MFS_GEOM_DIMS];
		int nd = parse_shape(t->shape, shape, MFS_GEOM_DIMS);
		int snd = sc ? parse_shape(sc->shape, sshape, MFS_GEOM_DIMS) : -1;
		mfs_quant_scheme s;
		if (strcmp(t->shape, tw->shape) != 0 || nd < 1 || snd < 0 ||
		    mfs_quant_scheme_from_shapes(t->dtype, (uint32_t)nd, shape, tw->dtype,
						 sc->dtype, (uint32_t)snd, sshape, &s) < 0 ||
		    mfs_quant_scale_count(&s) * (mfs_dtype_bits(sc->dtype) / 8) != sc->len) {
			fprintf(stderr, "bench_codecs: %s: twin %s, scale %s: no scheme (left out)\n",
				t->name, tw->shape, sc ? sc->shape : "missing");
			skipped++;
			continue;
		}
		size_t k = 0;
		while (k < nsum && !(sums[k].hpdt == t->dtype && sums[k].qdt == tw->dtype))
			k++;
		if (k == nsum) {
			if (nsum == 4)
				continue;
			memset(&sums[k], 0, sizeof sums[k]);
			sums[k].hpdt = t->dtype;
			sums[k].qdt = tw->dtype;
			nsum++;
		}
		if (bench_quant_tensor(t, tw, sc, &s, chunk_size, repeat, ws, enc, dec, &sums[k]))
			return 1;
	}
	if (!tsv) {
		printf("HP %s, twin %s; chunks of %zu bytes, one thread, process CPU time; decode "
		       "into one reused pre-faulted buffer, best of %d passes per tensor; MB = 1e6 "
		       "raw bytes; scales counted raw in the pair\n",
		       hp_path, q_path, chunk_size, repeat);
		printf("%-24s %-11s %-28s %9s %9s %9s %9s\n", "twin file", "pair", "what", "raw MB",
		       "stored%", "", "dec MB/s");
	}
	for (size_t k = 0; k < nsum; k++)
		print_quant(tsv, label, &sums[k]);
	if (!nsum)
		fprintf(stderr, "bench_codecs: %s: no tensor of %s has a twin here\n", q_path,
			hp_path);
	free(dec);
	free(enc);
	mfs_codec_ws_free(ws);
	return nsum ? 0 : 1;
}

/* Bytes a rANS table of @p f takes: one varint (1 or 2 bytes) per symbol
 * from the lowest to the highest with a frequency. */
static size_t freq_table_bytes(const uint16_t *f, unsigned nsym)
{
	unsigned lo = nsym, hi = 0;
	for (unsigned k = 0; k < nsym; k++)
		if (f[k])
			lo = lo < k ? lo : k, hi = k;
	size_t bytes = 0;
	for (unsigned k = lo; k <= hi; k++)
		bytes += f[k] < 128 ? 1 : 2;
	return bytes;
}

/*
 * --rans-tables: the first (exponent) plane of each dtype's tensors coded
 * with one rANS table per chunk against one table per tensor: the coded
 * bits (mfs_rans_cost_bits) plus the table bytes (one varint per symbol
 * of the table's range), in % of the raw bytes.  States and stream
 * rounding are the same either way and left out.
 */
static void bench_rans_tables(const tensor_list *tl, size_t chunk_size)
{
	printf("%-6s %-34s %9s\n", "dtype", "plane 0 as rANS, P=11", "% of raw");
	for (size_t d = 0; d < sizeof bench_dtypes / sizeof bench_dtypes[0]; d++) {
		mfs_dtype dt = bench_dtypes[d];
		const mfs_planes_layout *L = mfs_planes_layout_bitplane(dt);
		unsigned w = L->width[0], nsym = 1u << w, P = MFS_RANS_DEFAULT_PROB_BITS;
		double per_chunk = 0, per_tensor = 0, raw = 0;
		static uint32_t ct[1024], cc[1024];
		static uint16_t ft[1024], fc[1024];
		size_t nmax = chunk_size / L->esize;
		void *planes[MFS_PLANES_MAX];
		for (unsigned q = 0; q < L->nplanes; q++)
			planes[q] = malloc(2 * nmax + 64);
		uint8_t *al = malloc(chunk_size);
		for (size_t i = 0; i < tl->n; i++) {
			const tensor *t = &tl->v[i];
			if (t->dtype != dt)
				continue;
			memset(ct, 0, sizeof ct);
			/* two passes: the tensor's counts, then each chunk against both */
			for (int pass = 0; pass < 2; pass++) {
				if (pass == 1) {
					if (mfs_rans_normalize(ct, nsym, P, ft) < 0)
						break;
					per_tensor += (double)freq_table_bytes(ft, nsym);
				}
				for (size_t o = 0; o < t->len; o += chunk_size) {
					size_t len = t->len - o < chunk_size ? t->len - o : chunk_size;
					size_t n = len / L->esize;
					memcpy(al, t->data + o, len);
					mfs_planes_split(L, al, n, planes);
					memset(cc, 0, sizeof cc);
					for (size_t k = 0; k < n; k++)
						cc[w > 8 ? ((uint16_t *)planes[0])[k]
							 : ((uint8_t *)planes[0])[k]]++;
					if (pass == 0) {
						for (unsigned k = 0; k < nsym; k++)
							ct[k] += cc[k];
						continue;
					}
					raw += (double)len;
					per_tensor += mfs_rans_cost_bits(cc, ft, nsym, P) / 8;
					if (mfs_rans_normalize(cc, nsym, P, fc) < 0) {
						per_chunk += 2; /* one symbol: CONST */
						continue;
					}
					per_chunk += mfs_rans_cost_bits(cc, fc, nsym, P) / 8;
					per_chunk += (double)freq_table_bytes(fc, nsym);
				}
			}
		}
		if (raw > 0) {
			printf("%-6s %-34s %8.3f%%\n", mfs_dtype_name(dt), "a table per chunk",
			       100 * per_chunk / raw);
			printf("%-6s %-34s %8.3f%%\n", mfs_dtype_name(dt), "a table per tensor",
			       100 * per_tensor / raw);
		}
		for (unsigned q = 0; q < L->nplanes; q++)
			free(planes[q]);
		free(al);
	}
}

#define USAGE                                                                            \
	"usage: bench_codecs [--tsv] [--quick | --rans-sweep | --rans-tables] [--repeat N] " \
	"[--chunk BYTES] "                                                              \
	"FILE.safetensors...\n"                                                          \
	"       bench_codecs --delta BASE.safetensors [--tsv] [--repeat N] [--chunk "     \
	"BYTES] FINETUNE.safetensors...\n"                                                \
	"       bench_codecs --quant HP.safetensors [--tsv] [--repeat N] [--chunk BYTES] "  \
	"QUANTIZED.safetensors\n"

int main(int argc, char **argv)
{
	int tsv = 0, repeat = 7, only_bitplane = 0, rans_sweep = 0, rans_tables = 0;
	size_t chunk_size = (size_t)1 << 20;
	const char *base = NULL, *quant_hp = NULL;
	char **files = calloc((size_t)argc, sizeof *files);
	int nfiles = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--tsv") == 0) {
			tsv = 1;
		} else if (strcmp(argv[i], "--quick") == 0) {
			only_bitplane = 1;
		} else if (strcmp(argv[i], "--rans-sweep") == 0) {
			rans_sweep = 1;
		} else if (strcmp(argv[i], "--rans-tables") == 0) {
			rans_tables = 1;
		} else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
			repeat = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
			chunk_size = strtoull(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--delta") == 0 && i + 1 < argc) {
			base = argv[++i];
		} else if (strcmp(argv[i], "--quant") == 0 && i + 1 < argc) {
			quant_hp = argv[++i];
		} else if (argv[i][0] == '-') {
			fprintf(stderr, USAGE);
			return 2;
		} else {
			files[nfiles++] = argv[i];
		}
	}
	if (!nfiles || repeat < 1 || chunk_size == 0 || chunk_size > MFS_CHUNK_MAX) {
		fprintf(stderr, USAGE);
		return 2;
	}
	if (quant_hp) {
		if (nfiles != 1 || base) {
			fprintf(stderr, USAGE);
			return 2;
		}
		return bench_quant(quant_hp, files[0], chunk_size, repeat, tsv);
	}
	if (base)
		return bench_delta(base, files, nfiles, chunk_size, repeat, tsv);
	tensor_list tl = {0};
	for (int i = 0; i < nfiles; i++)
		if (read_safetensors(files[i], &tl))
			return 1;
	/* bitplane-huff and rans, then zstd (unless --quick), or with
	 * --rans-sweep rans at every precision and lane count measured */
	codec_cfg codecs[32] = {
	    {"bitplane-huff", MFS_CODEC_BITPLANE_HUFF, 0, 0, {0, 0}},
	    {"rans", MFS_CODEC_RANS, 0, 0, {0, 0}},
	};
	size_t ncodecs = 2;
	static char labels[32][32];
	if (rans_tables) {
		bench_rans_tables(&tl, chunk_size);
		return 0;
	}
	if (rans_sweep) {
		static const unsigned bits[] = {9, 10, 11};
		for (size_t b = 0; b < 3; b++)
			for (unsigned lanes = 32; lanes <= 1024; lanes *= 2) {
				size_t k = ncodecs++;
				snprintf(labels[k], sizeof labels[0], "rans P%u L%u", bits[b],
					 lanes);
				codecs[k] = (codec_cfg){labels[k], MFS_CODEC_RANS, 0, 0,
							{bits[b], lanes}};
			}
	} else if (!only_bitplane) {
		codecs[ncodecs++] = (codec_cfg){"zstd-3", MFS_CODEC_ZSTD, 3, 0, {0, 0}};
		codecs[ncodecs++] = (codec_cfg){"zstd-19", MFS_CODEC_ZSTD, 19, 0, {0, 0}};
	}
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws))
		return 1;
	uint8_t *dec = malloc(chunk_size), *tmp = malloc(chunk_size);
	if (!dec || !tmp)
		return 1;
	memset(dec, 0, chunk_size); /* pre-fault the reused decode buffer */
	if (!tsv) {
		printf("chunks of %zu bytes, one thread, process CPU time; decode into "
		       "one reused "
		       "pre-faulted buffer, best of %d passes per tensor; MB = 1e6 raw "
		       "bytes\n",
		       chunk_size, repeat);
		printf("%-6s %-14s %10s %9s %10s %10s\n", "dtype", "codec", "raw MB",
		       "stored%", "enc MB/s", "dec MB/s");
	}
	for (size_t d = 0; d < sizeof bench_dtypes / sizeof bench_dtypes[0]; d++) {
		size_t nch, raw;
		chunk *ch = make_chunks(&tl, NULL, bench_dtypes[d], chunk_size, &nch, &raw);
		if (!nch)
			continue;
		if (!ch)
			return 1;
		for (size_t c = 0; c < ncodecs; c++) {
			double pct, e, dm;
			if (bench_one(&codecs[c], bench_dtypes[d], ch, nch, chunk_size, repeat,
				      ws, dec, tmp, &pct, &e, &dm))
				return 1;
			if (tsv)
				printf("%s\t%s\t%.3f\t%.2f\t%.0f\t%.0f\n",
				       mfs_dtype_name(bench_dtypes[d]), codecs[c].label,
				       raw / 1e6, pct, e, dm);
			else
				printf("%-6s %-14s %10.1f %8.2f%% %10.0f %10.0f\n",
				       mfs_dtype_name(bench_dtypes[d]), codecs[c].label,
				       raw / 1e6, pct, e, dm);
			fflush(stdout);
		}
		free_chunks(ch, nch);
	}
	free(dec);
	free(tmp);
	free(files);
	mfs_codec_ws_free(ws);
	return 0;
}
