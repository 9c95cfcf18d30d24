/* modelfs ingest: read models into the store. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "ingest.h"
#include "progress.h"
#include "units.h"

static void ingest_usage(FILE *f)
{
	fprintf(f,
		"usage: modelfs ingest [options] SRC\n\n"
		"Read model repositories into the store, compressed and deduplicated.\n"
		"SRC is one of:\n"
		"  a Hugging Face hub cache (a folder holding models--ORG--NAME folders),\n"
		"  one models--ORG--NAME folder of such a cache, or\n"
		"  a plain folder of model files (safetensors, config.json, tokenizer\n"
		"  files...), with --repo ORG/NAME.\n"
		"Commit hashes, refs and blob names of a cache are kept exactly; a plain\n"
		"folder gets a commit id computed from its content (.git/ and .cache/ are\n"
		"left out). Ingesting content the store already has stores nothing new.\n"
		"Nothing outside SRC is read: a link that leads out of it is refused\n"
		"(but a cache blob may link into the cache's shared blobs/ folder, and\n"
		"--follow-links lifts the rule for a plain folder).\n\n"
		"options:\n"
		"  --repo ORG/NAME     repo id for a plain folder\n"
		"  --ref NAME          ref to point at the folder's commit (default main)\n"
		"  --follow-links      in a plain folder, follow symlinks that lead out of\n"
		"                      it too (by default only links that stay inside are\n"
		"                      followed; a local_dir written by an older\n"
		"                      huggingface_hub links into the cache)\n"
		"  --base ORG/NAME     store tensors that match this repo's (same name,\n"
		"                      dtype, shape) as xor-deltas against it (a fine-tune\n"
		"                      and its base); default: the store proposes one from\n"
		"                      the model card's base_model, config.json's\n"
		"                      _name_or_path, or matching tensors, and says which\n"
		"  --no-base           store every tensor alone (no deltas)\n"
		"  --quantized-of ORG/NAME\n"
		"                      SRC is the int8 or FP8 quantization of this stored\n"
		"                      repo (BF16/F16): both are then held as one copy, the\n"
		"                      high-precision tensors as residuals of the quantized\n"
		"                      ones (either may be ingested first); default: the\n"
		"                      store proposes the pair from tensor names and shapes\n"
		"  --no-twin           pair with no quantized twin\n"
		"  --chunk-size SIZE   raw chunk size, a power of two, 4K..64M (default 1M)\n"
		"  --codec NAME        force a codec for tensors (raw, zstd, bitplane-huff,\n"
		"                      rans); default: chosen per tensor (docs/codecs.md)\n"
		"  --gpu-codecs        code float tensors with rans where the choice is\n"
		"                      bitplane-huff: a mount or load_file(device=\"cuda\")\n"
		"                      with a GPU decodes them there (docs/gpu.md)\n"
		"  --zstd-level N      zstd level (default 3)\n"
		"  --threads N         encoder threads (default: all CPUs)\n"
		"  --quiet             no progress bar\n"
		"  --store DIR         the store (default $MODELFS_STORE or "
		"~/.local/share/modelfs)\n");
}

/* Notes and warnings from the ingest library: one line each, on stderr,
 * with the bar erased first. */
static void print_note(void *ud, mfs_ingest_note_kind kind, const char *msg)
{
	mfs_progress_feed_end(ud);
	fprintf(stderr, "modelfs ingest: %s%s\n", kind == MFS_INGEST_WARNING ? "warning: " : "",
		msg);
}

int cmd_ingest(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"repo", required_argument, NULL, 'r'},
		{"ref", required_argument, NULL, 'R'},
		{"follow-links", no_argument, NULL, 'L'},
		{"base", required_argument, NULL, 'B'},
		{"no-base", no_argument, NULL, 'N'},
		{"quantized-of", required_argument, NULL, 'Q'},
		{"no-twin", no_argument, NULL, 'T'},
		{"chunk-size", required_argument, NULL, 'c'},
		{"codec", required_argument, NULL, 'C'},
		{"gpu-codecs", no_argument, NULL, 'G'},
		{"zstd-level", required_argument, NULL, 'z'},
		{"threads", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'},
		{"store", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	mfs_ingest_opts o;
	mfs_ingest_opts_default(&o);
	mfs_progress_feed bar = {.label = "ingest"};
	o.note = print_note;
	o.note_ud = &bar;
	o.progress = mfs_progress_feed_report;
	o.progress_ud = &bar;
	char repo[MFS_REPO_ID_MAX + 1], base[MFS_REPO_ID_MAX + 1], qof[MFS_REPO_ID_MAX + 1];
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		uint64_t v;
		switch (opt) {
		case 'B':
			if (mfs_cli_repo_id("ingest", optarg, base) < 0)
				return MFS_EXIT_ERROR;
			o.base = base;
			break;
		case 'N':
			o.no_base = 1;
			break;
		case 'Q':
			if (mfs_cli_repo_id("ingest", optarg, qof) < 0)
				return MFS_EXIT_ERROR;
			o.quantized_of = qof;
			break;
		case 'T':
			o.no_twin = 1;
			break;
		case 'r':
			if (mfs_cli_repo_id("ingest", optarg, repo) < 0)
				return MFS_EXIT_ERROR;
			o.repo = repo;
			break;
		case 'R':
			o.ref = optarg;
			break;
		case 'c':
			if (mfs_size_parse(optarg, &v) < 0) {
				mfs_cli_error("ingest",
					      "--chunk-size %s: not a size (bytes, or a number "
					      "with K, M, G or T: 1M, 64K)",
					      optarg);
				return MFS_EXIT_USAGE;
			}
			o.chunk_size = (size_t)v;
			break;
		case 'C': {
			const mfs_codec *cd = mfs_codec_by_name(optarg);
			if (!cd) {
				mfs_cli_error("ingest", "--codec %s: unknown codec", optarg);
				return MFS_EXIT_USAGE;
			}
			o.force_codec = cd->id;
			break;
		}
		case 'G':
			o.gpu_codecs = 1;
			break;
		case 'z':
			o.zstd_level = atoi(optarg);
			if (o.zstd_level < 1 || o.zstd_level > 22) {
				mfs_cli_error("ingest", "--zstd-level %s: must be 1..22", optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 't':
			if (mfs_cli_parse_threads("ingest", optarg, &o.threads) < 0)
				return MFS_EXIT_USAGE;
			break;
		case 'L':
			o.follow_links = 1;
			break;
		case 'q':
			bar.quiet = 1;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'h':
			ingest_usage(stdout);
			return MFS_EXIT_OK;
		default:
			ingest_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		ingest_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	if (o.base && o.no_base) {
		mfs_cli_error("ingest", "--base and --no-base: give one of them");
		return MFS_EXIT_USAGE;
	}
	if (o.quantized_of && o.no_twin) {
		mfs_cli_error("ingest", "--quantized-of and --no-twin: give one of them");
		return MFS_EXIT_USAGE;
	}
	mfs_store *s;
	if (mfs_cli_open_store("ingest", MFS_STORE_CREATE, &s) < 0)
		return MFS_EXIT_ERROR;
	mfs_ingest_stats st;
	mfs_errmsg err = {0};
	int rc = mfs_ingest_path(s, argv[optind], &o, &st, &err);
	mfs_progress_feed_end(&bar);
	mfs_store_close(s);
	if (rc < 0) {
		mfs_cli_error("ingest", "%s", err.msg[0] ? err.msg : mfs_strerror(rc));
		fprintf(stderr, "modelfs ingest: nothing of the failed snapshot was published; "
				"the store is as it was\n");
		return MFS_EXIT_ERROR;
	}
	double ratio = st.bytes_stored ? (double)st.bytes_in / (double)st.bytes_stored : 0;
	/* exact byte counts: scripts and tests parse this line */
	printf("ingested %llu files, %llu bytes in, %llu bytes stored (ratio %.3f), %.1f MB/s; "
	       "%llu bytes new in %llu chunks, %llu chunks deduplicated, %llu snapshots, "
	       "%.2f s\n",
	       (unsigned long long)st.files, (unsigned long long)st.bytes_in,
	       (unsigned long long)st.bytes_stored, ratio,
	       st.seconds > 0 ? (double)st.bytes_in / st.seconds / 1e6 : 0.0,
	       (unsigned long long)st.bytes_new, (unsigned long long)st.chunks_new,
	       (unsigned long long)st.chunks_dedup, (unsigned long long)st.snapshots,
	       st.seconds);
	if (st.tensors_delta)
		/* exact byte counts here too: the delta benchmark parses this line */
		printf("deltas: %llu tensors as xor-deltas, %llu bytes stored, about %llu bytes "
		       "alone; %llu tensors already held\n",
		       (unsigned long long)st.tensors_delta, (unsigned long long)st.delta_stored,
		       (unsigned long long)st.delta_alone, (unsigned long long)st.tensors_same);
	if (st.tensors_twin)
		/* exact byte counts: the quantized-twin benchmark parses this line */
		printf("twin: %llu tensors as residuals of %s, %llu bytes stored instead of "
		       "%llu\n",
		       (unsigned long long)st.tensors_twin, st.twin,
		       (unsigned long long)st.twin_after, (unsigned long long)st.twin_before);
	return MFS_EXIT_OK;
}
