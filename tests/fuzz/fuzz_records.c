/*
 * fuzz_records - arbitrary bytes for every store record decoder
 * (index/records.h): chunk, blob (+ its extent list), tensor, file, repo,
 * commit, ref.  Each decoder gets an exact-size heap copy, so ASan reports
 * any read past the record.  Any result is fine except a crash, a sanitizer
 * report, an error other than MFS_E_CORRUPT, or an accepted record whose
 * fields break the decoder's promises.  A chunk record that parses is also
 * decoded and checked (mfs_chunk_decode) into a bounded buffer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"

static mfs_codec_ws *ws;
static uint8_t *dst;
#define DST_MAX (1u << 20)

#define EXPECT(c)                                                                          \
	do {                                                                               \
		if (!(c))                                                                  \
			__builtin_trap();                                                  \
	} while (0)

static void ok_or_corrupt(int rc)
{
	EXPECT(rc == 0 || rc == MFS_E_CORRUPT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ws) {
		if (mfs_codec_ws_create(&ws))
			return 0;
		dst = malloc(DST_MAX);
	}
	uint8_t *p = malloc(size ? size : 1);
	memcpy(p, data, size);

	mfs_chunk_view cv;
	int rc = mfs_rec_chunk_decode(p, size, &cv);
	ok_or_corrupt(rc);
	if (rc == 0) {
		EXPECT(cv.codec < MFS_CODEC__COUNT);
		EXPECT((const uint8_t *)cv.payload >= p &&
		       (const uint8_t *)cv.payload + cv.payload_len == p + size);
		if (cv.n_refs == 0 && cv.raw_len <= DST_MAX) {
			mfs_chunk_key key;
			memset(&key, 0, sizeof key);
			rc = mfs_chunk_decode(&cv, &key, NULL, dst, cv.raw_len, ws);
			EXPECT(rc == 0 || rc == MFS_E_CORRUPT || rc == -ENOMEM);
		}
	}

	mfs_blob_info bi;
	const uint8_t *ext = NULL;
	rc = mfs_rec_blob_decode(p, size, &bi, &ext);
	ok_or_corrupt(rc);
	if (rc == 0) {
		EXPECT(MFS_REC_BLOB_FIXED + bi.n_extents * MFS_REC_EXTENT == size);
		mfs_extent *e = malloc((bi.n_extents ? bi.n_extents : 1) * sizeof *e);
		ok_or_corrupt(mfs_rec_blob_extents(&bi, ext, e));
		free(e);
	}

	mfs_tensor_info ti;
	char name[MFS_REC_TENSOR_STRS];
	rc = mfs_rec_tensor_decode(p, size, &ti, name);
	ok_or_corrupt(rc);
	if (rc == 0)
		EXPECT(ti.ndim <= MFS_MAX_DIMS && ti.name == name &&
		       strlen(name) <= MFS_TENSOR_NAME_MAX);

	mfs_file_info fi;
	rc = mfs_rec_file_decode(p, size, &fi);
	ok_or_corrupt(rc);
	if (rc == 0)
		EXPECT(strlen(fi.etag) >= 1 && strlen(fi.etag) <= MFS_ETAG_MAX);

	mfs_repo_info ri;
	ok_or_corrupt(mfs_rec_repo_decode(p, size, &ri));
	mfs_commit_info ci;
	ok_or_corrupt(mfs_rec_commit_decode(p, size, &ci));
	char commit[MFS_COMMIT_LEN + 1];
	rc = mfs_rec_ref_decode(p, size, commit);
	ok_or_corrupt(rc);
	if (rc == 0)
		EXPECT(strlen(commit) == MFS_COMMIT_LEN);
	free(p);
	return 0;
}
