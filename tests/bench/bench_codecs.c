/*
 * bench_codecs - size and single-thread speed of the codecs on real tensors.
 *
 *   bench_codecs [--tsv] [--quick] [--repeat N] [--chunk BYTES] FILE.safetensors...
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
 * MB = 10^6 bytes of raw (decoded) data.
 */
#include <errno.h>
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
			char dtype[32] = "";
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
				    (size_t)(off[1] - off[0])};
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
} codec_cfg;

typedef struct chunk {
	size_t tensor; /* index of its tensor: chunks of one tensor are adjacent */
	const uint8_t *raw;
	size_t len;
	uint8_t *enc;
	size_t enc_len;
} chunk;

static int bench_one(const codec_cfg *cc, mfs_dtype dt, chunk *ch, size_t nch,
		     size_t chunk_size, int repeat, mfs_codec_ws *ws, uint8_t *dec,
		     double *pct, double *enc_mbps, double *dec_mbps)
{
	mfs_encode_params p = {.dtype = dt, .zstd_level = cc->level};
	size_t raw = 0, stored = 0;
	size_t cap = mfs_codec_bound_max(chunk_size);
	double t0 = now();
	for (size_t i = 0; i < nch; i++) {
		int rc = mfs_codec_encode(cc->id, &p, ch[i].raw, ch[i].len, ch[i].enc,
					  cap, &ch[i].enc_len, ws);
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
		int rc = mfs_codec_decode_plain(cc->id, ch[i].enc, ch[i].enc_len, dec,
					  ch[i].len, ws);
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
				mfs_codec_decode_plain(cc->id, ch[c].enc, ch[c].enc_len, dec, ch[c].len, ws);
			double t = now() - t0;
			if (r == 0 || t < best)
				best = t;
		}
		best_sum += best;
		i = j;
	}
	double best = best_sum;
	*pct = 100.0 * (double)stored / (double)raw;
	*enc_mbps = raw / t_enc / 1e6;
	*dec_mbps = raw / best / 1e6;
	return 0;
}

int main(int argc, char **argv)
{
	int tsv = 0, repeat = 7, only_bitplane = 0;
	size_t chunk_size = (size_t)1 << 20;
	tensor_list tl = {0};
	int files = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--tsv") == 0) {
			tsv = 1;
		} else if (strcmp(argv[i], "--quick") == 0) {
			only_bitplane = 1;
		} else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
			repeat = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
			chunk_size = strtoull(argv[++i], NULL, 0);
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "usage: bench_codecs [--tsv] [--quick] [--repeat "
					"N] [--chunk BYTES] "
					"FILE.safetensors...\n");
			return 2;
		} else {
			if (read_safetensors(argv[i], &tl))
				return 1;
			files++;
		}
	}
	if (!files || repeat < 1 || chunk_size == 0 || chunk_size > MFS_CHUNK_MAX) {
		fprintf(
		    stderr,
		    "usage: bench_codecs [--tsv] [--quick] [--repeat N] [--chunk BYTES] "
		    "FILE.safetensors...\n");
		return 2;
	}
	static const codec_cfg codecs[] = {
	    {"bitplane-huff", MFS_CODEC_BITPLANE_HUFF, 0},
	    {"zstd-3", MFS_CODEC_ZSTD, 3},
	    {"zstd-19", MFS_CODEC_ZSTD, 19},
	};
	static const mfs_dtype dtypes[] = {MFS_DT_BF16, MFS_DT_F16, MFS_DT_F32};
	mfs_codec_ws *ws;
	if (mfs_codec_ws_create(&ws))
		return 1;
	uint8_t *dec = malloc(chunk_size);
	if (!dec)
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
	for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
		size_t nch = 0, raw = 0;
		for (size_t i = 0; i < tl.n; i++)
			if (tl.v[i].dtype == dtypes[d])
				nch += (tl.v[i].len + chunk_size - 1) / chunk_size;
		if (!nch)
			continue;
		chunk *ch = calloc(nch, sizeof *ch);
		size_t cap = mfs_codec_bound_max(chunk_size);
		size_t k = 0;
		for (size_t i = 0; i < tl.n; i++) {
			if (tl.v[i].dtype != dtypes[d])
				continue;
			for (size_t o = 0; o < tl.v[i].len; o += chunk_size) {
				ch[k].tensor = i;
				ch[k].raw = tl.v[i].data + o;
				ch[k].len = tl.v[i].len - o < chunk_size ? tl.v[i].len - o
									 : chunk_size;
				ch[k].enc = malloc(cap);
				if (!ch[k].enc)
					return 1;
				raw += ch[k].len;
				k++;
			}
		}
		size_t ncodecs = only_bitplane ? 1 : sizeof codecs / sizeof codecs[0];
		for (size_t c = 0; c < ncodecs; c++) {
			double pct, e, dm;
			if (bench_one(&codecs[c], dtypes[d], ch, nch, chunk_size, repeat,
				      ws, dec, &pct, &e, &dm))
				return 1;
			if (tsv)
				printf("%s\t%s\t%.3f\t%.2f\t%.0f\t%.0f\n",
				       mfs_dtype_name(dtypes[d]), codecs[c].label,
				       raw / 1e6, pct, e, dm);
			else
				printf("%-6s %-14s %10.1f %8.2f%% %10.0f %10.0f\n",
				       mfs_dtype_name(dtypes[d]), codecs[c].label,
				       raw / 1e6, pct, e, dm);
			fflush(stdout);
		}
		for (size_t i = 0; i < nch; i++)
			free(ch[i].enc);
		free(ch);
	}
	free(dec);
	mfs_codec_ws_free(ws);
	return 0;
}
