/*
 * s3_xml.h - the little XML reading the S3 client needs: a ListObjectsV2
 * page, an <Error> body, and the answers of a multipart upload (its
 * UploadId, CompleteMultipartUploadResult, a ListMultipartUploads page),
 * plus the two time formats S3 writes (ISO 8601 in XML, the HTTP date of
 * Last-Modified and Date).  Internal to remote/ (the unit tests use it too).
 *
 * Not a general XML parser: S3 answers are flat and small, so this looks
 * for <Name>...</Name> elements by name inside a byte range, never reads
 * outside [p, end), and decodes the five named entities and numeric
 * character references.  Markup cannot hide in text (a '<' in a key is
 * sent as &lt;), so a search for "<Key>" finds only elements.
 *
 * Module convention: int return, 0 or a negative code (MFS_E_CORRUPT for
 * a body that does not read as expected).
 */
#ifndef MFS_S3_XML_H
#define MFS_S3_XML_H

#include <stddef.h>
#include <stdint.h>

#include "s3.h"

/**
 * Find the first element @p name in [p, end): "<name>", "<name attrs...>"
 * or the empty "<name/>".
 * @param[out] in, in_end  its content (equal for an empty element)
 * @param[out] after       the first byte after its closing tag
 * @return 0; MFS_E_NOTFOUND (no such element); MFS_E_CORRUPT (opened and
 *         never closed)
 */
int mfs_xml_elem(const char *p, const char *end, const char *name, const char **in,
		 const char **in_end, const char **after);

/**
 * Decode text [p, end) into @p out (entities resolved, UTF-8 out for
 * numeric references), NUL-terminated.
 * @param[out] len  optional: bytes written, the NUL left out
 * @return 0; MFS_E_TOOBIG (does not fit @p cap); MFS_E_CORRUPT (a bad
 *         entity, a NUL byte, or a reference to a code point over U+10FFFF
 *         or to NUL)
 */
int mfs_xml_text(const char *p, const char *end, char *out, size_t cap, size_t *len);

/**
 * Read one ListObjectsV2 page: call @p fn for each <Contents> (key, size,
 * etag, and mtime from <LastModified> when present: 0 when absent), then
 * report whether more pages follow.
 * @param[out] truncated  1 when <IsTruncated>true</IsTruncated>
 * @param[out] token      the <NextContinuationToken> (required when
 *                        truncated), cap bytes
 * @return 0; the callback's nonzero value; MFS_E_CORRUPT (not a
 *         ListBucketResult, a missing or over-long key, a bad size, a
 *         LastModified that is not an ISO 8601 time, a truncated page with
 *         no token)
 */
int mfs_s3_list_page_parse(const char *body, size_t len, mfs_s3_list_fn fn, void *arg,
			   int *truncated, char *token, size_t cap, mfs_errmsg *e);

/**
 * The <Code> and <Message> of an S3 <Error> body; either is "" when absent
 * (a HEAD answer has no body).  Never fails: what cannot be read is "".
 */
void mfs_s3_error_parse(const char *body, size_t len, char *code, size_t code_cap,
			char *msg, size_t msg_cap);

/**
 * An ISO 8601 time as S3 writes it in XML: "2026-12-02T00:50:48.000Z"
 * (fraction optional, "Z" or "+HH:MM" / "-HH:MM"), surrounding whitespace
 * allowed, years 1970..9999.
 * @param[out] out  unix seconds (the fraction dropped)
 * @return 0 or MFS_E_CORRUPT
 */
int mfs_s3_time_parse(const char *p, const char *end, int64_t *out);

/**
 * An HTTP date (RFC 9110 IMF-fixdate, "Wed, 02 Dec 2026 00:50:48 GMT"), as
 * in the Date and Last-Modified headers.  @p s is NUL-terminated; what
 * follows the "GMT" (a CR LF) is ignored.
 * @param[out] out  unix seconds
 * @return 0 or MFS_E_CORRUPT
 */
int mfs_http_date_parse(const char *s, int64_t *out);

/**
 * The <UploadId> of an InitiateMultipartUploadResult.
 * @param[out] id  cap bytes, NUL-terminated
 * @return 0; MFS_E_CORRUPT (not that result, no id, an empty or over-long
 *         one: the message says which)
 */
int mfs_s3_upload_id_parse(const char *body, size_t len, char *id, size_t cap,
			   mfs_errmsg *e);

/**
 * The answer of CompleteMultipartUpload, which may be a 200 whose body is an
 * <Error> (S3 sends the status before it knows the result).
 * @param[out] code, msg  the error's <Code> and <Message> ("" when absent)
 * @return 0 (a CompleteMultipartUploadResult); -EIO for an <Error> body
 *         (code and msg say which); MFS_E_CORRUPT for anything else
 */
int mfs_s3_complete_parse(const char *body, size_t len, char *code, size_t code_cap,
			  char *msg, size_t msg_cap);

/**
 * Read one ListMultipartUploads page: call @p fn for each <Upload> (key,
 * upload id, initiated), then report whether more pages follow.
 * @param[out] truncated              1 when <IsTruncated>true</IsTruncated>
 * @param[out] key_marker, id_marker  <NextKeyMarker> and <NextUploadIdMarker>
 *                                    when truncated; either absent: the key
 *                                    or id of the page's last upload
 *                                    (SeaweedFS 4 sends no NextKeyMarker)
 * @return 0; the callback's nonzero value; MFS_E_CORRUPT (not a
 *         ListMultipartUploadsResult, an upload without a key, an id or a
 *         readable Initiated time, a truncated page with neither a
 *         NextKeyMarker nor an upload)
 */
int mfs_s3_uploads_page_parse(const char *body, size_t len, mfs_s3_upload_fn fn,
			      void *arg, int *truncated, char *key_marker, size_t kcap,
			      char *id_marker, size_t icap, mfs_errmsg *e);

#endif
