/* modelfs gc --remote: delete what no reader of a bucket can still need (remote/rgc.h).
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "rgc.h"
#include "s3.h"
#include "units.h"

static void rgc_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: modelfs gc --remote s3://BUCKET[/PREFIX] [--keep-indexes N] "
	    "[--grace TIME]\n"
	    "                  [--dry-run] [--json] [--quiet]\n"
	    "\n"
	    "Delete from a bucket what `modelfs push` left there and no reader can "
	    "still\n"
	    "need: old index snapshots, and packs that local gc repacked. No local "
	    "store is\n"
	    "needed. It keeps:\n"
	    "  - the index LATEST names, and the N-1 newest before it (--keep-indexes, "
	    "default 2);\n"
	    "  - every index and pack younger than the grace (a push running now "
	    "uploads\n"
	    "    its packs first, then its index, then LATEST);\n"
	    "  - every index that was the newest less than the grace ago (a remote "
	    "mount\n"
	    "    still on it keeps reading);\n"
	    "  - every pack a kept index names.\n"
	    "The rest of index/ and packs/ is deleted (old indexes first, then the "
	    "packs),\n"
	    "and multipart uploads begun longer than the grace ago are aborted. "
	    "Ages are\n"
	    "the objects' LastModified by the server's clock. A gc stopped at any "
	    "point\n"
	    "leaves the bucket readable; the next one finishes the job. Nothing "
	    "else under\n"
	    "the prefix is touched.\n"
	    "\n"
	    "  --remote URL        s3://BUCKET/PREFIX, as given to push\n"
	    "  --keep-indexes N    indexes kept besides the young and recent ones, "
	    "LATEST's\n"
	    "                      included (default 2, at least 1)\n"
	    "  --grace TIME        30s, 10m, 1h, 2d (default 1h). It must exceed the "
	    "longest\n"
	    "                      push, and the longest a remote mount goes without "
	    "looking\n"
	    "                      at LATEST; 0 only when nothing pushes or mounts old "
	    "indexes\n"
	    "  --dry-run           print what would be deleted, delete nothing\n"
	    "  --json              print what was done as JSON on stdout\n"
	    "  --quiet             only the summary\n"
	    "\n"
	    "Endpoint, keys and region as for push (modelfs push --help).\n");
}

/* "90", "90s", "10m", "1h", "2d", "1.5h": seconds. */
static int parse_duration(const char *s, int64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || !(v >= 0))
		return -1;
	double mul = 1;
	if (*end == 's')
		end++;
	else if (*end == 'm')
		mul = 60, end++;
	else if (*end == 'h')
		mul = 3600, end++;
	else if (*end == 'd')
		mul = 86400, end++;
	if (*end || v * mul > 100.0 * 365 * 86400)
		return -1;
	*out = (int64_t)(v * mul);
	return 0;
}

typedef struct rgc_ui {
	int quiet, json;
	cJSON *kept, *deleted, *aborted; /* --json */
	const char *step_ms;
} rgc_ui;

static const char *kind_of(mfs_rgc_what w)
{
	switch (w) {
	case MFS_RGC_KEEP_INDEX:
		return "keep-index";
	case MFS_RGC_KEEP_PACK:
		return "keep-pack";
	case MFS_RGC_DELETE_INDEX:
		return "delete-index";
	case MFS_RGC_DELETE_PACK:
		return "delete-pack";
	case MFS_RGC_ABORT_UPLOAD:
		return "abort-upload";
	case MFS_RGC_PLANNED:
		return "planned";
	}
	return "?";
}

static void rgc_event(void *ud, const mfs_rgc_event *ev)
{
	rgc_ui *ui = ud;
	char sz[32];
	mfs_size_format(ev->size, sz, sizeof sz);
	if (ui->json) {
		cJSON *o = ev->key ? cJSON_CreateObject() : NULL;
		if (o) {
			cJSON_AddStringToObject(o, "key", ev->key);
			cJSON_AddNumberToObject(o, "size", (double)ev->size);
			cJSON_AddNumberToObject(o, "age", (double)ev->age);
			if (ev->why)
				cJSON_AddStringToObject(o, "why", ev->why);
			if (ev->upload_id)
				cJSON_AddStringToObject(o, "upload_id", ev->upload_id);
			cJSON *arr = ev->what == MFS_RGC_KEEP_INDEX ||
					     ev->what == MFS_RGC_KEEP_PACK
					 ? ui->kept
				     : ev->what == MFS_RGC_ABORT_UPLOAD ? ui->aborted
									: ui->deleted;
			cJSON_AddItemToArray(arr, o);
		}
	} else if (!ui->quiet && ev->key) {
		const char *verb = ev->dry_run ? "would delete" : "deleted";
		switch (ev->what) {
		case MFS_RGC_KEEP_INDEX:
			printf("gc: keep   %s (%s, %s)\n", ev->key, sz, ev->why);
			break;
		case MFS_RGC_KEEP_PACK:
			printf("gc: keep   %s (%s, named by no kept index, younger than "
			       "the grace)\n",
			       ev->key, sz);
			break;
		case MFS_RGC_DELETE_INDEX:
		case MFS_RGC_DELETE_PACK:
			printf("gc: %s %s (%s)\n", verb, ev->key, sz);
			break;
		case MFS_RGC_ABORT_UPLOAD:
			printf("gc: %s the incomplete upload of %s (%" PRId64 " s old)\n",
			       ev->dry_run ? "would abort" : "aborted", ev->key, ev->age);
			break;
		case MFS_RGC_PLANNED:
			break;
		}
		fflush(stdout);
	}
	/* the tests kill gc between its steps */
	if (ui->step_ms && *ui->step_ms &&
	    (ev->what == MFS_RGC_PLANNED || ev->what == MFS_RGC_DELETE_INDEX ||
	     ev->what == MFS_RGC_DELETE_PACK || ev->what == MFS_RGC_ABORT_UPLOAD)) {
		char what[MFS_S3_KEY_MAX + 64];
		snprintf(what, sizeof what, "%s %s", kind_of(ev->what), ev->key ? ev->key : "");
		mfs_cli_test_pause("gc", ui->step_ms, what);
	}
}

int cmd_gc_remote(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"remote", required_argument, NULL, 'r'},
	    {"keep-indexes", required_argument, NULL, 'k'},
	    {"grace", required_argument, NULL, 'g'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"store", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *remote = NULL;
	int json = 0, quiet = 0, dry = 0, opt;
	long keep = 2;
	int64_t grace = MFS_RGC_GRACE_S;
	char *end;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			remote = optarg;
			break;
		case 'k':
			keep = strtol(optarg, &end, 10);
			if (end == optarg || *end || keep < 1 || keep > 1000000) {
				mfs_cli_error(
				    "gc",
				    "--keep-indexes takes a count of at least 1, "
				    "not %s",
				    optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'g':
			if (parse_duration(optarg, &grace) < 0) {
				mfs_cli_error("gc",
					      "--grace takes a time such as 0, 90s, 10m, "
					      "1h or 2d, not %s",
					      optarg);
				return MFS_EXIT_USAGE;
			}
			break;
		case 'n':
			dry = 1;
			break;
		case 'j':
			json = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'S':
			/* a store is not needed; accepted so `--store` scripts still run
			 */
			break;
		case 'h':
			rgc_usage(stdout);
			return MFS_EXIT_OK;
		default:
			rgc_usage(stderr);
			return MFS_EXIT_USAGE;
		}
	}
	if (argc != optind || !remote) {
		rgc_usage(stderr);
		return MFS_EXIT_USAGE;
	}
	mfs_errmsg e = {0};
	mfs_s3_url url;
	if (mfs_s3_url_parse(remote, &url, &e) < 0) {
		mfs_cli_error("gc", "%s", e.msg);
		return MFS_EXIT_USAGE;
	}
	mfs_s3_config cfg;
	mfs_s3 *s3 = NULL;
	if (mfs_s3_config_load(&cfg, &e) < 0 || mfs_s3_open(&cfg, &s3, &e) < 0) {
		mfs_cli_error("gc", "%s", e.msg);
		return MFS_EXIT_ERROR;
	}
	rgc_ui ui = {
	    .quiet = quiet, .json = json, .step_ms = getenv("MODELFS_TEST_GC_STEP_MS")};
	if (json) {
		ui.kept = cJSON_CreateArray();
		ui.deleted = cJSON_CreateArray();
		ui.aborted = cJSON_CreateArray();
		if (!ui.kept || !ui.deleted || !ui.aborted) {
			mfs_cli_error("gc", "out of memory");
			mfs_s3_close(s3);
			return MFS_EXIT_ERROR;
		}
	}
	mfs_rgc_opts o = {.keep_indexes = (unsigned)keep,
			  .grace_s = grace,
			  .dry_run = dry,
			  .event = rgc_event,
			  .ud = &ui};
	mfs_rgc_stat st;
	int rc = mfs_remote_gc(s3, &url, &o, &st, &e);
	mfs_s3_stats ss;
	mfs_s3_stats_get(s3, &ss);
	mfs_s3_close(s3);
	if (rc < 0) {
		mfs_cli_error("gc", "%s", e.msg[0] ? e.msg : mfs_strerror(rc));
		cJSON_Delete(ui.kept);
		cJSON_Delete(ui.deleted);
		cJSON_Delete(ui.aborted);
		return MFS_EXIT_ERROR;
	}
	if (json) {
		char where[MFS_S3_BUCKET_MAX + MFS_S3_KEY_MAX + 8];
		snprintf(where, sizeof where, "s3://%s/%s", url.bucket, url.prefix);
		cJSON *j = cJSON_CreateObject();
		char *txt = NULL;
		if (j && cJSON_AddStringToObject(j, "remote", where) &&
		    cJSON_AddBoolToObject(j, "dry_run", dry) &&
		    cJSON_AddNumberToObject(j, "generation", (double)st.generation) &&
		    cJSON_AddNumberToObject(j, "keep_indexes", (double)keep) &&
		    cJSON_AddNumberToObject(j, "grace", (double)grace) &&
		    cJSON_AddNumberToObject(j, "indexes", (double)st.indexes) &&
		    cJSON_AddNumberToObject(j, "indexes_kept", (double)st.indexes_kept) &&
		    cJSON_AddNumberToObject(j, "indexes_deleted",
					    (double)st.indexes_deleted) &&
		    cJSON_AddNumberToObject(j, "index_bytes_deleted",
					    (double)st.index_bytes_deleted) &&
		    cJSON_AddNumberToObject(j, "packs", (double)st.packs) &&
		    cJSON_AddNumberToObject(j, "pack_bytes", (double)st.pack_bytes) &&
		    cJSON_AddNumberToObject(j, "packs_named", (double)st.packs_named) &&
		    cJSON_AddNumberToObject(j, "packs_young", (double)st.packs_young) &&
		    cJSON_AddNumberToObject(j, "packs_missing",
					    (double)st.packs_missing) &&
		    cJSON_AddNumberToObject(j, "packs_deleted",
					    (double)st.packs_deleted) &&
		    cJSON_AddNumberToObject(j, "pack_bytes_deleted",
					    (double)st.pack_bytes_deleted) &&
		    cJSON_AddNumberToObject(j, "uploads", (double)st.uploads) &&
		    cJSON_AddNumberToObject(j, "uploads_aborted",
					    (double)st.uploads_aborted) &&
		    cJSON_AddBoolToObject(j, "uploads_unsupported",
					  st.uploads_unsupported) &&
		    cJSON_AddNumberToObject(j, "other_objects",
					    (double)st.other_objects) &&
		    cJSON_AddNumberToObject(j, "index_bytes_read",
					    (double)st.index_bytes_read) &&
		    cJSON_AddNumberToObject(j, "rounds", (double)st.rounds) &&
		    cJSON_AddNumberToObject(j, "requests", (double)ss.requests) &&
		    cJSON_AddNumberToObject(j, "seconds", st.seconds)) {
			cJSON_AddItemToObject(j, "kept", ui.kept);
			cJSON_AddItemToObject(j, "deleted", ui.deleted);
			cJSON_AddItemToObject(j, "aborted", ui.aborted);
			ui.kept = ui.deleted = ui.aborted = NULL;
			txt = cJSON_PrintUnformatted(j);
		}
		cJSON_Delete(j);
		cJSON_Delete(ui.kept);
		cJSON_Delete(ui.deleted);
		cJSON_Delete(ui.aborted);
		if (!txt) {
			mfs_cli_error("gc", "out of memory writing the JSON summary");
			return MFS_EXIT_ERROR;
		}
		printf("%s\n", txt);
		free(txt);
		return MFS_EXIT_OK;
	}
	char a[32], b[32];
	printf("gc: s3://%s/%s: LATEST is generation %" PRIu64 "; kept %" PRIu64
	       " of %" PRIu64 " indexes and %" PRIu64 " of %" PRIu64 " packs (%" PRIu64
	       " named by a kept index, %" PRIu64 " younger than the grace)\n",
	       url.bucket, url.prefix, st.generation, st.indexes_kept, st.indexes,
	       st.packs - st.packs_deleted, st.packs, st.packs_named, st.packs_young);
	printf("gc: %s %" PRIu64 " indexes (%s) and %" PRIu64 " packs (%s)",
	       dry ? "would delete" : "deleted", st.indexes_deleted,
	       mfs_size_format(st.index_bytes_deleted, a, sizeof a), st.packs_deleted,
	       mfs_size_format(st.pack_bytes_deleted, b, sizeof b));
	if (st.uploads_unsupported)
		printf("; the server does not list multipart uploads");
	else
		printf(", %s %" PRIu64 " stale multipart uploads",
		       dry ? "would abort" : "aborted", st.uploads_aborted);
	printf(" in %.1f s%s\n", st.seconds, dry ? " (dry run: nothing deleted)" : "");
	if (st.packs_missing)
		printf("gc: %" PRIu64 " packs a kept index names are not in the bucket: "
		       "push again from the store (modelfs push)\n",
		       st.packs_missing);
	if (st.other_objects)
		printf("gc: %" PRIu64 " objects under index/ or packs/ have names that "
		       "are not modelfs's and were left alone\n",
		       st.other_objects);
	return MFS_EXIT_OK;
}
