/* modelfs push: upload the store's packs and an index snapshot to S3 (remote/push.h). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "progress.h"
#include "push.h"
#include "s3.h"
#include "units.h"

static void push_usage(FILE *f)
{
	fprintf(f, "usage: modelfs push --remote s3://BUCKET[/PREFIX] [--store DIR] "
		   "[--part-size SIZE]\n"
		   "                    [--json] [--quiet]\n"
		   "\n"
		   "Upload the store to an S3 bucket (AWS S3, Ceph RGW, MinIO, "
		   "SeaweedFS...), so\n"
		   "other machines can mount it with `modelfs mount --remote`. Uploads "
		   "the packs\n"
		   "the bucket lacks or holds shorter, then a snapshot of the index, "
		   "then LATEST,\n"
		   "the pointer readers follow: a push that stops half-way (killed, "
		   "network lost)\n"
		   "leaves the bucket as it was. A push after more ingests uploads only "
		   "the packs\n"
		   "that are new or grew. The store stays usable while it runs.\n"
		   "\n"
		   "  --remote URL  s3://BUCKET/PREFIX: the bucket must exist; PREFIX "
		   "may be empty\n"
		   "  --store DIR   the store (else $MODELFS_STORE, else the default)\n"
		   "  --part-size SIZE  objects larger than SIZE go up as multipart "
		   "uploads in\n"
		   "                parts of SIZE (default 64M, else "
		   "$MODELFS_PUSH_PART_SIZE;\n"
		   "                at least 5M): a failed part is sent again, not "
		   "the object\n"
		   "  --json        print what was done as JSON on stdout\n"
		   "  --quiet       no progress bar\n"
		   "\n"
		   "Where to and with which keys, as the AWS CLI reads them:\n"
		   "  AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL  the server, e.g. "
		   "http://127.0.0.1:8333\n"
		   "                           (unset: AWS itself)\n"
		   "  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)  "
		   "the keys\n"
		   "  AWS_REGION or AWS_DEFAULT_REGION  the region (default us-east-1)\n"
		   "  AWS_PROFILE           the profile of ~/.aws/config and "
		   "~/.aws/credentials\n"
		   "                        (AWS_CONFIG_FILE, "
		   "AWS_SHARED_CREDENTIALS_FILE move them)\n"
		   "  AWS_MAX_ATTEMPTS      tries per request (default 3)\n"
		   "The snapshot of the index is written under $TMPDIR (else /tmp) and "
		   "removed.\n");
}

typedef struct push_ui {
	mfs_progress bar;
	int bar_on, quiet;
	uint64_t shown;
} push_ui;

static const char *stage_name(mfs_push_stage st)
{
	switch (st) {
	case MFS_PUSH_SNAPSHOT:
		return "snapshot";
	case MFS_PUSH_LISTED:
		return "listed";
	case MFS_PUSH_PART:
		return "part";
	case MFS_PUSH_PACK:
		return "pack";
	case MFS_PUSH_INDEX:
		return "index";
	case MFS_PUSH_LATEST:
		return "latest";
	}
	return "?";
}

static void push_progress(void *ud, const mfs_push_event *ev)
{
	push_ui *ui = ud;
	if (ev->stage == MFS_PUSH_LISTED) {
		mfs_progress_init(&ui->bar, "push", ev->bytes_total, ui->quiet);
		ui->bar_on = 1;
	} else if (ui->bar_on && ev->bytes_done > ui->shown) {
		mfs_progress_add(&ui->bar, ev->bytes_done - ui->shown);
		ui->shown = ev->bytes_done;
	}
	/* the tests kill push between its steps */
	const char *ms = getenv("MODELFS_TEST_PUSH_STEP_MS");
	if (ms && *ms) {
		char what[MFS_S3_KEY_MAX + 64];
		snprintf(what, sizeof what, "%s %s", stage_name(ev->stage), ev->what);
		mfs_cli_test_pause("push", ms, what);
	}
}

int cmd_push(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"remote", required_argument, NULL, 'r'},
	    {"store", required_argument, NULL, 'S'},
	    {"json", no_argument, NULL, 'j'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"part-size", required_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *remote = NULL, *part_arg = getenv("MODELFS_PUSH_PART_SIZE");
	uint64_t part_size = 0;
	int json = 0, quiet = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			remote = optarg;
			break;
		case 'S':
			mfs_cli_store_dir = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'p':
			part_arg = optarg;
			break;
		case 'h':
			push_usage(stdout);
			return MFS_EXIT_OK;
		default:
			push_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc != optind || !remote) {
		if (!remote)
			mfs_cli_error("push", "--remote s3://BUCKET/PREFIX is required");
		push_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	if (part_arg && *part_arg &&
	    (mfs_size_parse(part_arg, &part_size) < 0 || part_size < MFS_S3_PART_MIN ||
	     part_size > ((uint64_t)5 << 30))) {
		mfs_cli_error(
		    "push",
		    "--part-size (or MODELFS_PUSH_PART_SIZE) takes a size from 5M "
		    "to 5G (S3's limits on a part), not \"%s\"",
		    part_arg);
		return MFS_EXIT_USAGE;
	}
	mfs_errmsg e = {0};
	mfs_s3_url url;
	if (mfs_s3_url_parse(remote, &url, &e) < 0) {
		mfs_cli_error("push", "%s", e.msg);
		return MFS_EXIT_USAGE;
	}
	mfs_s3_config cfg;
	mfs_s3 *s3 = NULL;
	if (mfs_s3_config_load(&cfg, &e) < 0 || mfs_s3_open(&cfg, &s3, &e) < 0) {
		mfs_cli_error("push", "%s", e.msg);
		return MFS_EXIT_ERROR;
	}
	mfs_store *s;
	if (mfs_cli_open_store("push", MFS_STORE_RDONLY, &s) < 0) {
		mfs_s3_close(s3);
		return MFS_EXIT_ERROR;
	}
	push_ui ui = {.quiet = quiet || json};
	mfs_push_opts po = {.progress = push_progress, .ud = &ui, .part_size = part_size};
	mfs_push_stat st;
	int rc = mfs_push(s, s3, &url, &po, &st, &e);
	if (ui.bar_on)
		mfs_progress_end(&ui.bar);
	mfs_store_close(s);
	mfs_s3_stats ss;
	mfs_s3_stats_get(s3, &ss);
	mfs_s3_close(s3);
	if (rc < 0) {
		mfs_cli_error("push", "%s", e.msg[0] ? e.msg : mfs_strerror(rc));
		return MFS_EXIT_ERROR;
	}
	double mbps = st.seconds > 0 ? (double)ss.bytes_up / st.seconds / 1e6 : 0;
	if (json) {
		char where[MFS_S3_BUCKET_MAX + MFS_S3_KEY_MAX + 8];
		snprintf(where, sizeof where, "s3://%s/%s", url.bucket, url.prefix);
		cJSON *o = cJSON_CreateObject();
		char *txt = NULL;
		if (o && cJSON_AddStringToObject(o, "remote", where) &&
		    cJSON_AddNumberToObject(o, "generation", (double)st.generation) &&
		    cJSON_AddNumberToObject(o, "packs", (double)st.packs) &&
		    cJSON_AddNumberToObject(o, "pack_bytes", (double)st.pack_bytes) &&
		    cJSON_AddNumberToObject(o, "packs_uploaded",
					    (double)st.packs_uploaded) &&
		    cJSON_AddNumberToObject(o, "pack_bytes_uploaded",
					    (double)st.pack_bytes_uploaded) &&
		    cJSON_AddNumberToObject(o, "index_bytes", (double)st.index_bytes) &&
		    cJSON_AddStringToObject(o, "index_key", st.index_key) &&
		    cJSON_AddBoolToObject(o, "up_to_date", st.up_to_date) &&
		    cJSON_AddNumberToObject(o, "multipart", (double)st.multipart) &&
		    cJSON_AddNumberToObject(
			o, "part_size",
			(double)(part_size ? part_size : MFS_PUSH_PART_SIZE)) &&
		    cJSON_AddNumberToObject(o, "bytes_up", (double)ss.bytes_up) &&
		    cJSON_AddNumberToObject(o, "requests", (double)ss.requests) &&
		    cJSON_AddNumberToObject(o, "seconds", st.seconds) &&
		    cJSON_AddNumberToObject(o, "mb_per_s", mbps))
			txt = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		if (!txt) {
			mfs_cli_error("push",
				      "out of memory writing the JSON summary (the push "
				      "itself succeeded)");
			return MFS_EXIT_ERROR;
		}
		printf("%s\n", txt);
		free(txt);
		return MFS_EXIT_OK;
	}
	char a[32], b[32];
	if (st.up_to_date) {
		printf("push: s3://%s/%s is up to date (generation %" PRIu64 ", %" PRIu64
		       " packs, %s): nothing uploaded\n",
		       url.bucket, url.prefix, st.generation, st.packs,
		       mfs_size_format(st.pack_bytes, a, sizeof a));
		return MFS_EXIT_OK;
	}
	printf("push: uploaded %" PRIu64 " of %" PRIu64
	       " packs (%s) and the index (%s) to "
	       "s3://%s/%s in %.1f s (%.0f MB/s)\n",
	       st.packs_uploaded, st.packs,
	       mfs_size_format(st.pack_bytes_uploaded, a, sizeof a),
	       mfs_size_format(st.index_bytes, b, sizeof b), url.bucket, url.prefix,
	       st.seconds, mbps);
	printf("push: LATEST names %s (generation %" PRIu64 ")\n", st.index_key,
	       st.generation);
	return MFS_EXIT_OK;
}
