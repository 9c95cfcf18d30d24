/*
 * fuzz_records - arbitrary bytes for every store record decoder
 * (index/records.h): chunk, blob (+ its extent list), tensor, file, repo,
 * commit, ref.  Each decoder gets an exact-size heap copy, so ASan reports
 * any read past the record.  Any result is fine except a crash, a sanitizer
 * report, an error other than MFS_E_CORRUPT, or an accepted record whose
 * fields break the decoder's promises.  A chunk record that parses is also
 * decoded and checked (mfs_chunk_decode) into a bounded buffer; a version-2
 * record's references are given bytes (each of its stated length, exact-size
 * heap copies cut from the input, so a codec reading past one is caught).
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
		if (cv.in_pack) /* version 3: the payload is in a pack, not read here */
			EXPECT(cv.payload == NULL && cv.payload_len == cv.loc.len);
		else
			EXPECT((const uint8_t *)cv.payload >= p &&
			       (const uint8_t *)cv.payload + cv.payload_len == p + size);
		EXPECT(cv.n_refs <= MFS_REFS_MAX);
		EXPECT(!cv.has_geom || cv.geom.ndim <= MFS_MAX_DIMS);
		size_t ref_bytes = 0;
		for (uint32_t i = 0; i < cv.n_refs; i++) {
			EXPECT(cv.refs[i].len >= 1);
			EXPECT(cv.refs[i].role >= MFS_REF_BASE && cv.refs[i].role < MFS_REF__COUNT);
			EXPECT(cv.refs[i].off <= UINT64_MAX - cv.refs[i].len);
			ref_bytes += cv.refs[i].len;
		}
		if (!cv.in_pack && cv.raw_len <= DST_MAX && ref_bytes <= DST_MAX) {
			mfs_ref_data rd[MFS_REFS_MAX];
			for (uint32_t i = 0; i < cv.n_refs; i++) {
				uint8_t *b = malloc(cv.refs[i].len);
				for (size_t j = 0; j < cv.refs[i].len; j++)
					b[j] = size ? data[(j * 131 + i) % size] : 0;
				rd[i] = (mfs_ref_data){cv.refs[i].role, b, cv.refs[i].len};
			}
			mfs_chunk_key key;
			memset(&key, 0, sizeof key);
			rc = mfs_chunk_decode(&cv, &key, cv.n_refs ? rd : NULL, dst, cv.raw_len, ws);
			EXPECT(rc == 0 || rc == MFS_E_CORRUPT || rc == -ENOMEM);
			for (uint32_t i = 0; i < cv.n_refs; i++)
				free((void *)rd[i].data);
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
		       strlen(name) <= MFS_TENSOR_NAME_MAX &&
		       (!ti.base || (strlen(ti.base) >= 1 && strlen(ti.base) <= MFS_REPO_ID_MAX)));

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
