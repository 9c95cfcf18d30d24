/*
 * bench_codecs - size and single-thread speed of the codecs on real tensors.
 *
 *   bench_codecs [--tsv] [--quick] [--repeat N] [--chunk BYTES] FILE.safetensors...
 *   bench_codecs --delta BASE.safetensors [--tsv] [--repeat N] [--chunk BYTES] FT.safetensors...
 *
 * --quick measures bitplane-huff only (zstd-19 encodes slowly).
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
	    {"xor-delta", MFS_CODEC_XOR_DELTA, 0, 0},
	    {"xor+zstd-3", MFS_CODEC_ZSTD, 3, 1},
	    {"bitplane-huff (alone)", MFS_CODEC_BITPLANE_HUFF, 0, 0},
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

#define USAGE                                                                            \
	"usage: bench_codecs [--tsv] [--quick] [--repeat N] [--chunk BYTES] "            \
	"FILE.safetensors...\n"                                                          \
	"       bench_codecs --delta BASE.safetensors [--tsv] [--repeat N] [--chunk "     \
	"BYTES] FINETUNE.safetensors...\n"

int main(int argc, char **argv)
{
	int tsv = 0, repeat = 7, only_bitplane = 0;
	size_t chunk_size = (size_t)1 << 20;
	const char *base = NULL;
	char **files = calloc((size_t)argc, sizeof *files);
	int nfiles = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--tsv") == 0) {
			tsv = 1;
		} else if (strcmp(argv[i], "--quick") == 0) {
			only_bitplane = 1;
		} else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
			repeat = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
			chunk_size = strtoull(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--delta") == 0 && i + 1 < argc) {
			base = argv[++i];
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
	if (base)
		return bench_delta(base, files, nfiles, chunk_size, repeat, tsv);
	tensor_list tl = {0};
	for (int i = 0; i < nfiles; i++)
		if (read_safetensors(files[i], &tl))
			return 1;
	static const codec_cfg codecs[] = {
	    {"bitplane-huff", MFS_CODEC_BITPLANE_HUFF, 0, 0},
	    {"zstd-3", MFS_CODEC_ZSTD, 3, 0},
	    {"zstd-19", MFS_CODEC_ZSTD, 19, 0},
	};
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
		size_t ncodecs = only_bitplane ? 1 : sizeof codecs / sizeof codecs[0];
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
