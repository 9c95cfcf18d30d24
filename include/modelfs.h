/*
 * modelfs.h - libmodelfs, the public C API of modelfs: read models straight
 * out of a modelfs store, without mounting it.
 *
 * A store holds Hugging Face repositories (repos, their refs and commits,
 * each commit's files) with the files' bytes compressed and deduplicated in
 * chunks.  This library opens a store, lists what it holds, resolves
 * (repo, revision, path) to a file, lists a safetensors file's tensors and
 * reads a tensor, or any byte range of a file, into a buffer the caller
 * owns, decoding the chunks the range covers on every core.  Every byte it
 * hands out has been checked: each chunk is re-hashed to its key after it is
 * decoded, and a mismatch is an error (MODELFS_E_CORRUPT), never wrong data.
 *
 * Use:
 *
 *   modelfs_store *s;
 *   modelfs_file *f;
 *   modelfs_error err;
 *   const modelfs_tensor *t;
 *   if (modelfs_store_open(NULL, 0, &s, &err) < 0 ||
 *       modelfs_file_open(s, "org/name", "main", "model.safetensors", &f, &err) < 0 ||
 *       modelfs_file_find_tensor(f, "lm_head.weight", &t, &err) < 0) {
 *           fprintf(stderr, "%s\n", err.message);
 *           ...
 *   }
 *   void *buf = malloc(t->nbytes);
 *   if (modelfs_tensor_read(f, t->name, buf, t->nbytes, &err) < 0) ...
 *   modelfs_file_close(f);
 *   modelfs_store_close(s);
 *
 * Build against it with pkg-config: `cc app.c $(pkg-config --cflags --libs
 * modelfs)`; the static library needs `pkg-config --static`.
 *
 * Conventions, for every function here:
 *   - Calls that can fail return int: MODELFS_OK (0) or a negative
 *     MODELFS_E_* code (never a raw -errno).  They take an optional
 *     modelfs_error *: on failure it gets the code and one sentence saying
 *     what failed, where (store, repo, revision, file, tensor, offset, chunk)
 *     and what to do.  NULL is always allowed.  On success it is left as is.
 *   - Results go out through out-parameters; on failure those are set to
 *     NULL / 0.
 *   - Each returned pointer says who owns it and until when.  Nothing this
 *     library returns is freed by the caller with free(); handles have their
 *     own close/free call, which accepts NULL.
 *   - Repo ids are accepted as the hub writes them ("org/name", or "name")
 *     or as the store keeps them ("models/org/name"; "datasets/...",
 *     "spaces/..." too).  Returned repo ids are in the store's form.
 *   - Strings in and out are NUL-terminated UTF-8.
 *
 * Threads: a modelfs_store and a modelfs_file may be used by any number of
 * threads at once (reads from many threads run in parallel); only closing a
 * handle must not overlap a call on it.  A modelfs_list is immutable once
 * returned.  No call keeps state between calls outside the handles.
 *
 * fork(): handles belong to the process that opened them.  In a child
 * forked after the open, calls on the parent's handles fail with
 * MODELFS_E_INVAL (the index's environment, its read snapshots and the
 * decoding threads are the parent's), and closing them there frees only
 * memory; the child opens the store again for itself.
 *
 * Consistency: an open modelfs_file reads the bytes its file had when it was
 * opened, even while the store is written: another ingest, `modelfs rm` of
 * its repo and `modelfs gc` do not change or break what it reads (it holds
 * a read snapshot of the store until it is closed; while it does, the store
 * cannot reuse the space freed after that snapshot, and `gc --compact`
 * waits).  Lists are snapshots taken by the call that returns them.
 *
 * Versions and ABI: see docs/library.md.  The header's MODELFS_VERSION_*
 * are those of the headers compiled against; modelfs_version_number() is the
 * library's.  Within one major version the ABI only grows: functions are
 * added, never changed or removed; the structs this library returns
 * (modelfs_entry, modelfs_tensor) may gain fields at their end, so read them
 * through the pointers returned, never copy them by value into storage of
 * your own size; modelfs_range and modelfs_error, which the caller
 * allocates, do not change within a major version.
 */
#ifndef MODELFS_H
#define MODELFS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MODELFS_VERSION_MAJOR 0
#define MODELFS_VERSION_MINOR 1
#define MODELFS_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH: 100 for 0.1.0 */
#define MODELFS_VERSION_NUMBER                                                           \
	(MODELFS_VERSION_MAJOR * 10000 + MODELFS_VERSION_MINOR * 100 +                   \
	 MODELFS_VERSION_PATCH)
#define MODELFS_VERSION_STRING "0.1.0"

/**
 * The version of the library loaded at run time (which may be newer than the
 * header compiled against, within the same major version).
 * @return MODELFS_VERSION_NUMBER of the library
 */
unsigned modelfs_version_number(void);

/** The library's version as text ("0.1.0"); a static string. */
const char *modelfs_version_string(void);

/* ---- errors ---- */

/* Codes returned by every int-returning call.  Stable within a major version. */
enum {
	MODELFS_OK = 0,
	MODELFS_E_INVAL = -1,	     /* an argument is wrong: a bad repo id, path,
					revision or range, a NULL where a value is needed */
	MODELFS_E_NOSTORE = -2,	     /* no store where it was looked for, or it cannot
					be opened (permissions): the message says where */
	MODELFS_E_NOREPO = -3,	     /* the store has no such repo */
	MODELFS_E_NOREVISION = -4,   /* the repo has no such ref or commit */
	MODELFS_E_NOFILE = -5,	     /* the snapshot has no such file */
	MODELFS_E_NOTENSOR = -6,     /* the file has no such tensor */
	MODELFS_E_CORRUPT = -7,	     /* stored data fails its check (a damaged or
					missing chunk, a damaged record): the message
					names the chunk; run `modelfs verify` */
	MODELFS_E_FORMAT = -8,	     /* the file is not a valid safetensors file
					(tensor calls on a file of another kind) */
	MODELFS_E_NOSPACE = -9,	     /* the caller's buffer is too small */
	MODELFS_E_NOMEM = -10,	     /* out of memory */
	MODELFS_E_IO = -11,	     /* the operating system or the database failed
					(the message has its reason) */
	MODELFS_E_VERSION = -12,     /* the store was written by a modelfs with another
					store format */
	MODELFS_E_BUSY = -13,	     /* the store is in use in a way that forbids this */
	MODELFS_E_UNSUPPORTED = -14, /* this build or this machine cannot do it: no
					GPU decoder in the build, no usable CUDA
					device (the message says which) */
};

/* Longest message, terminating NUL included. */
#define MODELFS_ERROR_MAX 512

/* What went wrong, filled by a failing call. Allocated by the caller. */
typedef struct modelfs_error {
	int code;			 /* the MODELFS_E_* returned */
	char message[MODELFS_ERROR_MAX]; /* one sentence; always NUL-terminated */
} modelfs_error;

/**
 * Name a code ("no such tensor").
 * @return a static string, never NULL ("unknown error" for a code not listed)
 */
const char *modelfs_strerror(int code);

/* ---- the store ---- */

typedef struct modelfs_store modelfs_store;

/**
 * The store directory used when none is given: $MODELFS_STORE when set and
 * not empty, else $XDG_DATA_HOME/modelfs, else ~/.local/share/modelfs (the
 * same rule as the modelfs command).
 * @param[out] buf  the path, NUL-terminated
 * @return 0; MODELFS_E_INVAL (neither variable is set, or @p cap is too small)
 */
int modelfs_store_default_dir(char *buf, size_t cap, modelfs_error *err);

/**
 * Open a store for reading.
 * A directory that is already open in this process gives back the same
 * handle with one more reference (LMDB, which holds the index, must not be
 * opened twice by one process: its locks are per process); each successful
 * open is matched by one modelfs_store_close().
 * @param[in]  dir      the store directory; NULL: modelfs_store_default_dir()
 * @param[in]  threads  decoding threads for reads (the calling thread counts as
 *                      one); 0: one per CPU this process may run on.  Ignored
 *                      when the store is already open in this process.
 * @param[out] out      the handle; close with modelfs_store_close()
 * @return 0; MODELFS_E_NOSTORE (no store there, or no permission);
 *         MODELFS_E_VERSION; MODELFS_E_CORRUPT (a damaged data.mdb);
 *         MODELFS_E_NOMEM; MODELFS_E_IO.  Waits while `modelfs gc --compact`
 *         rewrites the store.
 */
int modelfs_store_open(const char *dir, unsigned threads, modelfs_store **out,
		       modelfs_error *err);

/**
 * Give back one reference to a store; NULL is a no-op.  The store is closed
 * when its last reference is given back and every file opened from it is
 * closed (an open modelfs_file keeps its store open).
 */
void modelfs_store_close(modelfs_store *s);

/** The directory @p s was opened from; owned by @p s, valid while it is open. */
const char *modelfs_store_dir(const modelfs_store *s);

/** The number of decoding threads reads on @p s use (the caller's included). */
unsigned modelfs_store_threads(const modelfs_store *s);

/* ---- listings ---- */

typedef struct modelfs_list modelfs_list;

/*
 * One item of a listing.  Which fields are set depends on the listing (see
 * each); the others are NULL or 0.  Owned by the list: valid until
 * modelfs_list_free().
 */
typedef struct modelfs_entry {
	const char *name;   /* repo id / ref name / commit hash / file path */
	const char *commit; /* refs: the commit it points to; files: the snapshot's */
	const char *etag;   /* files: the blob's etag (its name in the HF cache) */
	uint64_t size;	    /* files: bytes; snapshots: number of files */
	uint64_t time;	    /* repos: last update; snapshots: ingest time (unix s) */
	uint32_t mode;	    /* files: 0444, or 0555 when executable */
} modelfs_entry;

/** Number of entries. */
size_t modelfs_list_count(const modelfs_list *l);

/**
 * Entry @p i.
 * @return owned by @p l (valid until modelfs_list_free()), NULL when
 *         i >= count
 */
const modelfs_entry *modelfs_list_get(const modelfs_list *l, size_t i);

/** Free a list; NULL is a no-op. */
void modelfs_list_free(modelfs_list *l);

/**
 * The repos of the store, by id: name = "models/org/name", time.
 * @param[out] out  free with modelfs_list_free()
 * @return 0, MODELFS_E_CORRUPT, MODELFS_E_NOMEM, MODELFS_E_IO
 */
int modelfs_list_repos(modelfs_store *s, modelfs_list **out, modelfs_error *err);

/**
 * The refs of @p repo, by name: name = "main", commit.
 * @return 0, MODELFS_E_INVAL, MODELFS_E_NOREPO, MODELFS_E_CORRUPT, ...
 */
int modelfs_list_refs(modelfs_store *s, const char *repo, modelfs_list **out,
		      modelfs_error *err);

/**
 * The snapshots (commits) of @p repo, newest first: name = commit hash,
 * time, size = number of files.
 * @return 0, MODELFS_E_INVAL, MODELFS_E_NOREPO, MODELFS_E_CORRUPT, ...
 */
int modelfs_list_snapshots(modelfs_store *s, const char *repo, modelfs_list **out,
			   modelfs_error *err);

/**
 * The files of the snapshot @p revision of @p repo, by path: name = path
 * ("1_Pooling/config.json"), commit, etag, size, mode.
 * @param[in] revision  a ref ("main", "refs/pr/1") or a commit hash; NULL:
 *                      "main", or the newest commit where there is no main
 * @return 0, MODELFS_E_INVAL, MODELFS_E_NOREPO, MODELFS_E_NOREVISION, ...
 */
int modelfs_list_files(modelfs_store *s, const char *repo, const char *revision,
		       modelfs_list **out, modelfs_error *err);

/* Bytes of a commit hash as text, NUL included. */
#define MODELFS_COMMIT_SIZE 41

/**
 * Resolve @p revision of @p repo to a commit hash (revision as for
 * modelfs_list_files).
 * @param[out] commit  40 lower-case hex characters and a NUL
 * @return 0, MODELFS_E_INVAL, MODELFS_E_NOREPO, MODELFS_E_NOREVISION, ...
 */
int modelfs_resolve(modelfs_store *s, const char *repo, const char *revision,
		    char commit[MODELFS_COMMIT_SIZE], modelfs_error *err);

/* ---- files ---- */

typedef struct modelfs_file modelfs_file;

/**
 * Open file @p path of snapshot @p revision of @p repo.  The file reads the
 * bytes it had at this moment until it is closed (see Consistency above).
 * A `.safetensors` file's header is read and checked here (its tensors are
 * listed from it); a damaged or malformed header does not stop the open,
 * only the tensor calls, which then return the error.
 * @param[in]  revision  as for modelfs_list_files (NULL: main)
 * @param[in]  path      the path inside the snapshot ("model.safetensors")
 * @param[out] out       close with modelfs_file_close()
 * @return 0, MODELFS_E_INVAL, MODELFS_E_NOREPO, MODELFS_E_NOREVISION,
 *         MODELFS_E_NOFILE, MODELFS_E_CORRUPT (its records are damaged),
 *         MODELFS_E_NOMEM, MODELFS_E_IO (e.g. no LMDB reader slot left)
 */
int modelfs_file_open(modelfs_store *s, const char *repo, const char *revision,
		      const char *path, modelfs_file **out, modelfs_error *err);

/** Close a file; NULL is a no-op.  No call on @p f may be in progress. */
void modelfs_file_close(modelfs_file *f);

/** The file's size in bytes. */
uint64_t modelfs_file_size(const modelfs_file *f);

/*
 * The file's names; each owned by @p f, valid until modelfs_file_close():
 * its repo ("models/org/name"), the resolved commit, its path in the
 * snapshot, and its etag.
 */
const char *modelfs_file_repo(const modelfs_file *f);
const char *modelfs_file_commit(const modelfs_file *f);
const char *modelfs_file_path(const modelfs_file *f);
const char *modelfs_file_etag(const modelfs_file *f);

/** The sha256 recorded for the file's content at ingest, into @p out. */
void modelfs_file_sha256(const modelfs_file *f, uint8_t out[32]);

/**
 * Read bytes [@p offset, @p offset + @p len) of the file into @p dst,
 * decoding the chunks they lie in on the store's threads.  Chunks that lie
 * wholly inside the range are decoded straight into @p dst; at most the
 * first and the last are decoded aside and copied.
 * @param[out] dst  @p len bytes, owned by the caller; on failure its contents
 *                  are undefined
 * @return 0; MODELFS_E_INVAL (the range is not inside the file: nothing is
 *         read); MODELFS_E_CORRUPT (a chunk in the range is damaged or
 *         missing: the message names the chunk, its offset and tensor);
 *         MODELFS_E_NOMEM; MODELFS_E_IO
 */
int modelfs_file_read(modelfs_file *f, uint64_t offset, void *dst, size_t len,
		      modelfs_error *err);

/* One range of a batched read. Allocated by the caller. */
typedef struct modelfs_range {
	uint64_t offset; /* first byte in the file */
	size_t len;	 /* bytes */
	void *dst;	 /* where they go: @p len bytes, owned by the caller */
} modelfs_range;

/**
 * Read many ranges of the file at once, the chunks of all of them decoded in
 * parallel (loading a whole model: one call per file keeps every core busy
 * even where tensors are a chunk or less).  As modelfs_file_read() for each;
 * ranges may come in any order and overlap, their destinations must not.
 * Every range is checked before anything is read.
 * @param[in] ranges  @p n ranges, borrowed for the call
 * @return as modelfs_file_read(); on failure the message names the first
 *         failing range (lowest offset)
 */
int modelfs_file_read_ranges(modelfs_file *f, const modelfs_range *ranges, size_t n,
			     modelfs_error *err);

/* ---- the GPU ---- */

/*
 * rans-coded chunks (`modelfs ingest --gpu-codecs`, or `--codec rans`) can
 * be decoded on a CUDA device: their compressed bytes cross the bus, the
 * device decodes them, and each chunk is copied back to the host once and
 * checked against its key there, as every read is.  Chunks of other codecs
 * always decode on the CPU.  A build without CUDA (the library is built
 * with it where CMake finds the toolkit) or a machine without a usable
 * device has no GPU: the calls below then say so with MODELFS_E_UNSUPPORTED.
 * Device memory used for decoding stays within min(1 GiB, an eighth of the
 * device).  A driver error or device memory running out during a host read
 * turns the GPU off for the store (its reads go on on the CPU).
 */

/* GPU use of host reads (modelfs_store_set_gpu). */
enum {
	MODELFS_GPU_OFF = 0,  /* host reads decode on the CPU (the default) */
	MODELFS_GPU_AUTO = 1, /* host reads decode rans chunks on the GPU when one
				 is usable, else on the CPU */
	MODELFS_GPU_ON = 2,   /* as AUTO, but setting it fails when there is no
				 usable GPU */
};

/**
 * Choose whether reads into host memory (modelfs_file_read,
 * modelfs_file_read_ranges, modelfs_tensor_read) use the GPU.  Reads into
 * device memory (the _device calls) always do.
 * @param[in] mode  MODELFS_GPU_OFF, _AUTO or _ON
 * @return 0; MODELFS_E_UNSUPPORTED (MODELFS_GPU_ON and no usable GPU: the
 *         message says why; the mode is left as it was); MODELFS_E_INVAL
 */
int modelfs_store_set_gpu(modelfs_store *s, int mode, modelfs_error *err);

/**
 * The GPU reads on @p s decode on, starting it on the first call (CUDA device
 * 0).
 * @param[out] name  the device's name ("NVIDIA H100 80GB HBM3"), NUL-terminated,
 *                   cut to @p cap
 * @return 0; MODELFS_E_UNSUPPORTED (no GPU decoder in this build, no usable
 *         device, or it failed earlier: the message says which)
 */
int modelfs_store_gpu(modelfs_store *s, char *name, size_t cap, modelfs_error *err);

/**
 * modelfs_file_read_ranges() into DEVICE memory: each range's dst is memory
 * of the store's CUDA device (cudaMalloc, a torch CUDA tensor).  rans chunks
 * are decoded on the device straight into it; other chunks, and the first
 * and last chunk of a range that starts or ends inside one, are decoded on
 * the CPU and copied to it.  Every chunk is checked against its key before
 * the call returns 0.  The call waits for its copies: the memory is ready
 * when it returns.
 * @return as modelfs_file_read_ranges(); MODELFS_E_UNSUPPORTED (no GPU, see
 *         modelfs_store_gpu); MODELFS_E_INVAL (a dst that is not memory of
 *         that device); MODELFS_E_IO (the driver failed a copy)
 */
int modelfs_file_read_ranges_device(modelfs_file *f, const modelfs_range *ranges,
				    size_t n, modelfs_error *err);

/** modelfs_file_read() into device memory (modelfs_file_read_ranges_device). */
int modelfs_file_read_device(modelfs_file *f, uint64_t offset, void *dev_dst, size_t len,
			     modelfs_error *err);

/* ---- tensors (safetensors files) ---- */

/*
 * A tensor of a safetensors file, as the file's own header describes it
 * (the header is part of the checked content).  Owned by the file: valid
 * until modelfs_file_close().
 */
typedef struct modelfs_tensor {
	const char *name;
	const char *dtype;     /* as safetensors names it: "F32", "BF16", "I64", ... */
	uint32_t dtype_bits;   /* bits per element (4 for F4, 8 for I8, ...) */
	uint32_t ndim;	       /* 0 for a scalar */
	const uint64_t *shape; /* ndim entries */
	uint64_t offset;       /* its first byte, from the start of the file */
	uint64_t nbytes;       /* product(shape) * dtype_bits / 8 */
} modelfs_tensor;

/**
 * Number of tensors in the file.
 * @param[out] n  0 for a file that is not a `.safetensors` file
 * @return 0; MODELFS_E_FORMAT (a `.safetensors` file whose header is not
 *         valid); MODELFS_E_CORRUPT (its header's chunk is damaged)
 */
int modelfs_file_tensor_count(const modelfs_file *f, size_t *n, modelfs_error *err);

/**
 * Tensor @p i, in name order (bytewise, as safetensors' keys()).
 * @return owned by @p f, valid until modelfs_file_close(); NULL when @p i is
 *         out of range (or the file has no valid header)
 */
const modelfs_tensor *modelfs_file_tensor(const modelfs_file *f, size_t i);

/**
 * Find a tensor by name.
 * @param[out] out  owned by @p f, valid until modelfs_file_close()
 * @return 0; MODELFS_E_NOTENSOR; MODELFS_E_FORMAT / MODELFS_E_CORRUPT as
 *         modelfs_file_tensor_count()
 */
int modelfs_file_find_tensor(const modelfs_file *f, const char *name,
			     const modelfs_tensor **out, modelfs_error *err);

/**
 * The header's "__metadata__" object as JSON text ("{\"format\":\"pt\"}").
 * @return owned by @p f, valid until modelfs_file_close(); NULL when the file
 *         has none (or no valid header)
 */
const char *modelfs_file_metadata(const modelfs_file *f);

/**
 * Read tensor @p name, all its nbytes, into @p dst: modelfs_file_read() of
 * its byte range (its chunks are aligned to its start, so all of them are
 * decoded straight into @p dst).
 * @param[out] dst  at least the tensor's nbytes (@p dst_cap), owned by the caller
 * @return 0; MODELFS_E_NOTENSOR; MODELFS_E_NOSPACE (@p dst_cap < nbytes:
 *         nothing read); as modelfs_file_read()
 */
int modelfs_tensor_read(modelfs_file *f, const char *name, void *dst, size_t dst_cap,
			modelfs_error *err);

/**
 * modelfs_tensor_read() into device memory @p dev_dst (at least the tensor's
 * nbytes, memory of the store's CUDA device): its rans chunks are decoded on
 * the device, so only their compressed bytes cross the bus.
 * @return as modelfs_tensor_read() and modelfs_file_read_ranges_device()
 */
int modelfs_tensor_read_device(modelfs_file *f, const char *name, void *dev_dst,
			       size_t dst_cap, modelfs_error *err);

#ifdef __cplusplus
}
#endif

#endif
