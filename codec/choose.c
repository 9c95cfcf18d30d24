/*
 * Codec choice per tensor (docs/codecs.md states the rule):
 * candidates are tried on a sample in order of decode speed, fastest first;
 * the chosen one is the smallest, except that a faster candidate whose
 * output is within MFS_CHOOSE_SLACK of the smallest wins.  The rule uses
 * sizes only, so the same input always picks the same codec (timings on a
 * shared machine are noisy); each codec's speed class was measured by
 * `modelfs bench` and is fixed by its place in the candidate list.
 */
#include "codec_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

/* A slower codec must save more than 1% of the sample to be chosen. */
#define MFS_CHOOSE_SLACK 0.01

/* Candidates in order of decode speed, fastest first, per kind of input. */
static const mfs_codec_id float_candidates[] = {
	MFS_CODEC_RAW,
	MFS_CODEC_BITPLANE_HUFF,
	MFS_CODEC_ZSTD,
};
static const mfs_codec_id other_candidates[] = {
	MFS_CODEC_RAW,
	MFS_CODEC_ZSTD,
};

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int mfs_codec_choose(const mfs_encode_params *p, const void *sample, size_t sample_len,
		     mfs_codec_ws *ws, mfs_codec_id *out, mfs_codec_trial *trials,
		     size_t *n_trials)
{
	const mfs_codec_id *cand = other_candidates;
	size_t n_cand = sizeof other_candidates / sizeof other_candidates[0];
	if (mfs_dtype_is_float(p->dtype)) {
		cand = float_candidates;
		n_cand = sizeof float_candidates / sizeof float_candidates[0];
	}
	size_t cap = trials && n_trials ? *n_trials : 0;
	size_t filled = 0;
	*out = MFS_CODEC_RAW;
	if (sample_len == 0) {
		if (n_trials)
			*n_trials = 0;
		return 0;
	}
	size_t bound = mfs_codec_bound_max(sample_len);
	uint8_t *enc = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_C, bound);
	if (!enc)
		return -ENOMEM;
	/* Sizes of each tried candidate, in candidate order. */
	size_t sizes[8];
	mfs_codec_id ids[8];
	size_t n_ok = 0;
	uint8_t *dec = NULL;
	for (size_t i = 0; i < n_cand && n_ok < 8; i++) {
		const mfs_codec *c = mfs_codec_get(cand[i]);
		if (!c || (c->flags & MFS_CODEC_NEEDS_REF))
			continue;
		size_t len = 0;
		int rc = c->encode(p, sample, sample_len, enc, bound, &len, ws);
		if (rc == MFS_E_UNSUPPORTED)
			continue;
		if (rc < 0)
			return rc;
		sizes[n_ok] = len;
		ids[n_ok] = cand[i];
		n_ok++;
		if (filled < cap) {
			/* Decode speed is reported, not used by the rule. */
			if (!dec) {
				dec = malloc(sample_len);
				if (!dec)
					return -ENOMEM;
			}
			double t0 = now_seconds();
			rc = mfs_codec_decode_plain(cand[i], enc, len, dec, sample_len, ws);
			double dt = now_seconds() - t0;
			if (rc < 0) {
				free(dec);
				return rc;
			}
			trials[filled].id = cand[i];
			trials[filled].raw_len = sample_len;
			trials[filled].stored_len = len;
			trials[filled].decode_mbps = dt > 0 ? sample_len / dt / 1e6 : 0;
			filled++;
		}
	}
	free(dec);
	if (n_trials)
		*n_trials = filled;
	if (n_ok == 0)
		return 0;
	size_t smallest = sizes[0];
	for (size_t i = 1; i < n_ok; i++)
		if (sizes[i] < smallest)
			smallest = sizes[i];
	for (size_t i = 0; i < n_ok; i++) {
		if ((double)sizes[i] <= (double)smallest + MFS_CHOOSE_SLACK * (double)sample_len) {
			*out = ids[i];
			break;
		}
	}
	return 0;
}
