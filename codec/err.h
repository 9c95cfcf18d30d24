/*
 * err.h - modelfs error codes and error messages, shared by every layer.
 *
 * Every library call returns int: 0 on success, a negative code on failure.
 * Codes are either -errno values (-ENOMEM, -EIO, -ENOENT, ...) or project
 * codes in the reserved range [MFS_E__FIRST, MFS_E__LAST]; mfs_strerror()
 * names both.  Results go out through out-parameters.
 *
 * Calls that touch user input also take an optional mfs_errmsg*: on failure
 * they write a sentence a person can act on (what failed, where, what to do).
 * Passing NULL is always allowed.
 *
 * This lives in codec/ because codec is the bottom layer that every other
 * layer links; it has no dependency beyond libc.
 */
#ifndef MFS_ERR_H
#define MFS_ERR_H

#include <stddef.h>

enum {
	MFS_OK = 0,
	MFS_E__FIRST = -40100,
	MFS_E_CORRUPT = -40100,  /* stored or decoded data fails a check */
	MFS_E_FORMAT = -40099,   /* input file is malformed (safetensors, config) */
	MFS_E_VERSION = -40098,  /* store format written by another modelfs version */
	MFS_E_NOTFOUND = -40097, /* record does not exist */
	MFS_E_EXISTS = -40096,   /* record already exists */
	MFS_E_INVAL = -40095,    /* invalid argument or name */
	MFS_E_NOSPACE = -40094,  /* caller's buffer too small */
	MFS_E_CODEC = -40093,    /* unknown or unsupported codec */
	MFS_E_DB = -40092,       /* LMDB reported an error (logged with detail) */
	MFS_E_BUSY = -40091,     /* another process holds what we need */
	MFS_E_TOOBIG = -40090,   /* a size exceeds a stated limit */
	MFS_E_UNSUPPORTED = -40089, /* valid input this version cannot handle */
	MFS_E__LAST = -40089,
};

/* Longest message an mfs_errmsg holds, including the terminating NUL. */
#define MFS_ERRMSG_MAX 512

/* A human-readable error message filled in by a failing call. */
typedef struct mfs_errmsg {
	int code;
	char msg[MFS_ERRMSG_MAX];
} mfs_errmsg;

/**
 * Name an error code.
 * @param[in] code  0, a -errno value or an MFS_E_* code
 * @return a static string; never NULL
 */
const char *mfs_strerror(int code);

/**
 * Record an error message (printf-style) and return @p code.
 * @param[out] e     may be NULL, then only @p code is returned
 * @param[in]  code  the code to return (negative)
 * @return code, so a caller can write `return mfs_err(e, MFS_E_FORMAT, ...)`
 */
int mfs_err(mfs_errmsg *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/**
 * Prefix an existing message with context ("ingest model.safetensors: ...").
 * @return e->code (or @p code when e is NULL or empty)
 */
int mfs_err_prefix(mfs_errmsg *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/**
 * Quote untrusted text (a tensor name, a path or ref read from a file or the
 * index) for a message or a listing: printable ASCII as is; '"', '\\' and
 * every other byte as \xNN, so no terminal escape reaches a screen or a log.
 * At most @p max_chars input bytes are shown; longer text ends in "...".
 * @param[out] buf  output, always NUL-terminated; cut to fit @p cap (>= 1)
 * @return buf
 */
const char *mfs_str_quote(const char *s, size_t max_chars, char *buf, size_t cap);

/* Forward an error from a call, in debug builds logging file and line. */
#ifdef MFS_DEBUG
#include <stdio.h>
#define MFS_TRY(expr)                                                                      \
	do {                                                                               \
		int mfs_try_rc_ = (expr);                                                  \
		if (mfs_try_rc_ < 0) {                                                     \
			fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #expr,    \
				mfs_strerror(mfs_try_rc_));                                \
			return mfs_try_rc_;                                                \
		}                                                                          \
	} while (0)
#else
#define MFS_TRY(expr)                                                                      \
	do {                                                                               \
		int mfs_try_rc_ = (expr);                                                  \
		if (mfs_try_rc_ < 0)                                                       \
			return mfs_try_rc_;                                                \
	} while (0)
#endif
#define MFS_RETURN_IF(cond, err)                                                           \
	do {                                                                               \
		if (cond)                                                                  \
			return (err);                                                      \
	} while (0)

#endif
