/*
 * s3_xml.h - the little XML reading the S3 client needs: a ListObjectsV2
 * page and an <Error> body.  Internal to remote/ (the unit tests use it too).
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
 * etag), then report whether more pages follow.
 * @param[out] truncated  1 when <IsTruncated>true</IsTruncated>
 * @param[out] token      the <NextContinuationToken> (required when
 *                        truncated), cap bytes
 * @return 0; the callback's nonzero value; MFS_E_CORRUPT (not a
 *         ListBucketResult, a missing or over-long key, a bad size, a
 *         truncated page with no token)
 */
int mfs_s3_list_page_parse(const char *body, size_t len, mfs_s3_list_fn fn, void *arg,
			   int *truncated, char *token, size_t cap, mfs_errmsg *e);

/**
 * The <Code> and <Message> of an S3 <Error> body; either is "" when absent
 * (a HEAD answer has no body).  Never fails: what cannot be read is "".
 */
void mfs_s3_error_parse(const char *body, size_t len, char *code, size_t code_cap,
			char *msg, size_t msg_cap);

#endif
