/*
 * torchzip.h - the tensors of a PyTorch checkpoint in the zip format that
 * torch.save writes (pytorch_model.bin, *.pt, *.pth), found without
 * executing anything, as the spans of an mfs_st_header (safetensors.h) so
 * mfs_st_spans() plans their chunks as it does a safetensors file's.
 *
 * The format: a zip archive of stored (uncompressed) entries under one
 * folder "<name>/": "<name>/data.pkl", a pickle of the saved object, and one
 * entry "<name>/data/<key>" per storage holding its bytes.  The pickle names
 * each storage by a persistent id ("storage", <storage type>, "<key>",
 * <location>, <element count>) and builds tensors with
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...).
 *
 * What is read, and checked:
 *   the end of central directory record (zip64 too: checkpoints over 4 GiB),
 *   the central directory (one disk, entry fields within it, no duplicate
 *   names), each local header that is used (signature, the same name and
 *   method as the central entry, data before the central directory), and
 *   data.pkl, interpreted by a small stack machine that only builds values:
 *   the opcodes torch.save emits (PROTO, FRAME, GLOBAL, STACK_GLOBAL, MARK,
 *   tuples, EMPTY_DICT/LIST, SETITEM(S), APPEND(S), BININT*, LONG1, BINFLOAT,
 *   NONE, NEWTRUE/NEWFALSE, BINUNICODE*, BINBYTES*, BINPERSID, REDUCE, BUILD,
 *   BINPUT/LONG_BINPUT/MEMOIZE, BINGET/LONG_BINGET, POP, STOP).  A GLOBAL may
 *   only name collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 *   torch._utils._rebuild_parameter or a torch.<Type>Storage class, and
 *   REDUCE applies only those, with the arguments torch writes.  Anything
 *   else (another global such as os.system, another opcode, a compressed or
 *   encrypted entry, a view past its storage, two storages sharing bytes)
 *   is refused: the caller stores the file generically.
 *
 * The result: one tensor per storage (not per view: the tensors of a tied
 * weight, or slices of one buffer, share a storage and its bytes are one
 * span), with the storage's dtype, begin/end its entry's data in the file,
 * named by the first state-dict key (nested dicts joined with '.') that
 * refers to it, or "data/<key>" when no key does.  Its shape is the view's
 * when exactly that one view covers the whole storage contiguously, else
 * [element count].  Sorted by begin; the bytes between (zip headers, the
 * pickle, the directory) are gaps.  header_len is 0 and data_start is the
 * first storage's offset (at least 8), so the "header" span is the zip's
 * first entries.
 *
 * Limits, whatever the file claims (each refused with MFS_E_TOOBIG): the
 * central directory at most MFS_TZ_CD_MAX bytes and MFS_TZ_ENTRIES_MAX
 * entries, data.pkl at most MFS_TZ_PICKLE_MAX bytes, at most
 * MFS_TZ_NODES_MAX pickle values, names at most MFS_TZ_NAME_MAX bytes (a
 * longer key path names nothing) and 16 MiB in all.  Every table grows with
 * what the bytes hold, never with a count they claim, so a parse holds a
 * few MB for a real checkpoint and under 250 MB at the limits; it reads
 * only the tail, the directory, the local headers it uses and the pickle.
 *
 * Module convention: int return, 0 or a negative code from err.h.
 */
#ifndef MFS_TORCHZIP_H
#define MFS_TORCHZIP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "preader.h"
#include "safetensors.h"

#define MFS_TZ_CD_MAX	   ((uint64_t)16 << 20) /* central directory bytes */
#define MFS_TZ_ENTRIES_MAX (1u << 20)		/* zip entries */
#define MFS_TZ_PICKLE_MAX  ((uint64_t)16 << 20) /* data.pkl bytes */
#define MFS_TZ_NODES_MAX   (2u << 20)		/* values the pickle builds */
#define MFS_TZ_NAME_MAX	   255			/* tensor name bytes */

/**
 * 1 when @p first4 (a file's first bytes) is a zip local header signature
 * ("PK\3\4"), the start of every torch.save zip; 0 otherwise (a legacy
 * torch pickle starts with 0x80).
 */
int mfs_tz_is_zip(const uint8_t first4[4]);

/**
 * Find the storages of a torch.save zip.
 * @param[in]  src   the file (read a piece at a time; not kept)
 * @param[out] out   filled on success; release with mfs_st_header_free()
 *                   (the names share the tensor array's block); zeroed on
 *                   failure
 * @param[in]  what  the file's name for messages (may be NULL)
 * @param[out] err   optional message naming the file and what is wrong
 * @return 0; MFS_E_FORMAT (not a zip, or a zip whose fields lie);
 *         MFS_E_UNSUPPORTED (a zip this parser does not lay out: not a
 *         torch.save archive, a compressed entry, a pickle outside the subset
 *         above); MFS_E_TOOBIG (a limit above); -ENOMEM; a read error
 */
int mfs_tz_parse(const mfs_preader *src, mfs_st_header *out, const char *what,
		 mfs_errmsg *err);

#endif
