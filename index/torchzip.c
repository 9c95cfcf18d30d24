/*
 * torchzip.c - the storages of a torch.save zip, found without executing
 * anything (see torchzip.h).
 *
 * Three steps, each on untrusted bytes: the zip's directory (end record,
 * central directory, the local headers of the entries used), the pickle in
 * data.pkl run by a stack machine that only builds inert values (numbers,
 * strings, tuples, dicts, and the three torch callables it knows, applied by
 * REDUCE to arguments of the shape torch writes), and the storages it
 * refers to, checked against their entries and laid out as tensors.
 *
 * Every value the pickle builds is a 16-byte node in one array; tuples keep
 * their members in a second array, dicts their items in a third (a chain per
 * dict, so SETITEMS on a dict reached through the memo is O(1)).  Every one
 * of these grows with the pickle and is capped by MFS_TZ_NODES_MAX, so
 * memory follows what the pickle holds, not what it claims.
 */
#include "torchzip.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

#define TZ_EOCD_SIG	0x06054b50u
#define TZ_Z64_LOC_SIG	0x07064b50u
#define TZ_Z64_EOCD_SIG 0x06064b50u
#define TZ_CEN_SIG	0x02014b50u
#define TZ_LOC_SIG	0x04034b50u
#define TZ_EOCD_LEN	22u
#define TZ_CEN_LEN	46u
#define TZ_LOC_LEN	30u
#define TZ_Z64_EOCD_LEN 56u
#define TZ_TAIL_MAX	(TZ_EOCD_LEN + 65535u)

#define TZ_NAMES_MAX	   ((size_t)16 << 20) /* all tensor names together */
#define TZ_DEPTH_MAX	   16		      /* nested dicts walked for names */
#define TZ_GLOBAL_PART_MAX 256		      /* a GLOBAL's module or name */
#define TZ_KEY_MAX	   64		      /* a storage key */
#define TZ_NONE32	   UINT32_MAX

#define TZ_QUOTE 80

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* ------------------------------------------------------------------ types */

typedef struct tz_entry {
	uint32_t name_off; /* into the central directory buffer */
	uint16_t name_len, method, flags;
	uint64_t usize, csize, local;
} tz_entry;

enum tz_kind {
	N_NONE,
	N_BOOL,
	N_INT,
	N_FLOAT,
	N_STR,	  /* a = length, v = offset in the pickle */
	N_BYTES,  /* opaque */
	N_TUPLE,  /* a = members, v = first in kids[] */
	N_LIST,	  /* contents dropped: no name is read from a list */
	N_DICT,	  /* a = index in dicts[] */
	N_GLOBAL, /* a = callable, v = dtype for a storage class */
	N_PERSID, /* a = storage */
	N_TENSOR, /* a = storage */
};

enum tz_callable { G_ODICT, G_REBUILD_V2, G_REBUILD_PARAM, G_STORAGE };

typedef struct tz_node {
	uint8_t kind;
	uint32_t a;
	uint64_t v;
} tz_node;
_Static_assert(sizeof(tz_node) == 16, "a pickle value is 16 bytes");

typedef struct tz_item {
	uint32_t key, val, next;
} tz_item;

typedef struct tz_dict {
	uint32_t first, last;
	uint8_t walked;
} tz_dict;

typedef struct tz_storage {
	uint32_t entry; /* its zip entry */
	mfs_dtype dtype;
	uint64_t numel;
	uint32_t n_views, ndim; /* of the first view */
	uint64_t shape_at;	/* the first view's shape in dims[] */
	int all_full;		/* every view is one full contiguous view */
	uint64_t name_at;	/* in names[], or UINT64_MAX */
	uint64_t begin;
} tz_storage;

typedef struct tz {
	const mfs_preader *src;
	const char *what;
	mfs_errmsg *err;
	/* the zip */
	uint8_t *cd;
	uint64_t cd_off, cd_size;
	tz_entry *ent;
	size_t n_ent;
	uint32_t *by_name; /* entry indices sorted by name */
	const uint8_t *prefix;
	size_t prefix_len; /* "<name>/" */
	/* the pickle */
	uint8_t *pkl;
	size_t pkl_len, pc;
	tz_node *nodes;
	size_t n_nodes, cap_nodes;
	uint32_t *stack;
	size_t sp, cap_stack;
	size_t *marks;
	size_t n_marks, cap_marks;
	uint32_t *memo;
	size_t memo_len, cap_memo, memo_set;
	uint32_t *kids;
	size_t n_kids, cap_kids;
	tz_item *items;
	size_t n_items, cap_items;
	tz_dict *dicts;
	size_t n_dicts, cap_dicts;
	/* storages */
	int32_t *storage_of; /* per entry: its storage, or -1 */
	tz_storage *st;
	size_t n_st, cap_st;
	uint64_t *dims;
	size_t n_dims, cap_dims;
	char *names;
	size_t names_len, cap_names;
} tz;

static const char *tz_what(const tz *t)
{
	return t->what ? t->what : "PyTorch checkpoint";
}

#define TZ_FAIL(t, code, fmt, ...)                                                       \
	mfs_err((t)->err, code, "%s: " fmt, tz_what(t), __VA_ARGS__)

/* Untrusted bytes (a zip name, a pickle string) quoted for a message. */
static const char *tz_quote(const uint8_t *s, size_t n, char *buf, size_t cap)
{
	char tmp[TZ_QUOTE + 1];
	size_t k = n < TZ_QUOTE ? n : TZ_QUOTE;
	memcpy(tmp, s, k);
	tmp[k] = '\0';
	for (size_t i = 0; i < k; i++)
		if (!tmp[i])
			tmp[i] = '?';
	mfs_str_quote(tmp, TZ_QUOTE, buf, cap);
	if (n > k && strlen(buf) + 4 < cap)
		strcat(buf, "...");
	return buf;
}

/* ------------------------------------------------------------------- zip */

static int tz_read(tz *t, uint64_t off, void *buf, size_t len, const char *piece)
{
	int rc = mfs_preader_read(t->src, off, buf, len);
	if (rc == MFS_E_FORMAT)
		return TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "the %s at offset %llu (%zu bytes) runs past the end of the "
		    "file (%llu bytes): the file is truncated or not a zip",
		    piece, (unsigned long long)off, len,
		    (unsigned long long)t->src->size);
	if (rc < 0)
		return TZ_FAIL(t, rc, "reading the %s at offset %llu failed: %s", piece,
			       (unsigned long long)off, mfs_strerror(rc));
	return 0;
}

/* The end records: where the central directory is and how many entries it
 * says it holds. */
static int tz_end_records(tz *t, uint64_t *n_out)
{
	uint64_t size = t->src->size;
	if (size < TZ_EOCD_LEN)
		return TZ_FAIL(t, MFS_E_FORMAT,
			       "%llu bytes is too short for a zip (a zip ends with a "
			       "22-byte record)",
			       (unsigned long long)size);
	size_t tail_len = size < TZ_TAIL_MAX ? (size_t)size : TZ_TAIL_MAX;
	uint64_t tail_off = size - tail_len;
	uint8_t *tail = malloc(tail_len);
	if (!tail)
		return -ENOMEM;
	int rc = tz_read(t, tail_off, tail, tail_len, "end of the zip");
	if (rc < 0)
		goto out;
	/* The last record whose comment reaches exactly the end of the file. */
	size_t at = SIZE_MAX;
	for (size_t i = tail_len - TZ_EOCD_LEN + 1; i-- > 0;) {
		if (le32(tail + i) == TZ_EOCD_SIG &&
		    i + TZ_EOCD_LEN + le16(tail + i + 20) == tail_len) {
			at = i;
			break;
		}
	}
	if (at == SIZE_MAX) {
		rc =
		    TZ_FAIL(t, MFS_E_FORMAT, "%s",
			    "no zip end of central directory record at its end: the file "
			    "is truncated or not a zip");
		goto out;
	}
	const uint8_t *p = tail + at;
	uint64_t disk = le16(p + 4), cd_disk = le16(p + 6), n_disk = le16(p + 8),
		 n = le16(p + 10), csz = le32(p + 12), coff = le32(p + 16);
	uint64_t eocd = tail_off + at, limit = eocd;
	if (eocd >= 20) {
		uint8_t loc[20];
		if ((rc = tz_read(t, eocd - 20, loc, 20, "zip64 locator")) < 0)
			goto out;
		if (le32(loc) == TZ_Z64_LOC_SIG) {
			uint64_t z64 = le64(loc + 8);
			uint8_t r[TZ_Z64_EOCD_LEN];
			if (z64 > eocd - 20 || eocd - 20 - z64 < TZ_Z64_EOCD_LEN) {
				rc = TZ_FAIL(
				    t, MFS_E_FORMAT,
				    "the zip64 end record offset %llu is not before "
				    "its locator at %llu: the zip is corrupt",
				    (unsigned long long)z64,
				    (unsigned long long)(eocd - 20));
				goto out;
			}
			if ((rc = tz_read(t, z64, r, sizeof r, "zip64 end record")) < 0)
				goto out;
			if (le32(r) != TZ_Z64_EOCD_SIG) {
				rc = TZ_FAIL(
				    t, MFS_E_FORMAT,
				    "no zip64 end record at offset %llu, where its "
				    "locator points: the zip is corrupt",
				    (unsigned long long)z64);
				goto out;
			}
			disk = le32(r + 16);
			cd_disk = le32(r + 20);
			n_disk = le64(r + 24);
			n = le64(r + 32);
			csz = le64(r + 40);
			coff = le64(r + 48);
			limit = z64;
		}
	}
	if (disk != 0 || cd_disk != 0 || n_disk != n) {
		rc =
		    TZ_FAIL(t, MFS_E_UNSUPPORTED, "%s",
			    "the zip spans several disks, which torch.save never writes");
		goto out;
	}
	if (coff > limit || csz > limit - coff) {
		rc = TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "the central directory [%llu, +%llu) runs past its end record "
		    "at %llu: the zip is truncated or corrupt",
		    (unsigned long long)coff, (unsigned long long)csz,
		    (unsigned long long)limit);
		goto out;
	}
	if (csz > MFS_TZ_CD_MAX) {
		rc = TZ_FAIL(
		    t, MFS_E_TOOBIG,
		    "the central directory is %llu bytes, over the %llu-byte limit",
		    (unsigned long long)csz, (unsigned long long)MFS_TZ_CD_MAX);
		goto out;
	}
	if (n > csz / TZ_CEN_LEN) {
		rc = TZ_FAIL(t, MFS_E_FORMAT,
			     "the zip claims %llu entries, but its central directory of "
			     "%llu bytes holds at most %llu: the zip is corrupt",
			     (unsigned long long)n, (unsigned long long)csz,
			     (unsigned long long)(csz / TZ_CEN_LEN));
		goto out;
	}
	if (n > MFS_TZ_ENTRIES_MAX) {
		rc = TZ_FAIL(t, MFS_E_TOOBIG,
			     "the zip has %llu entries, over the limit of %u",
			     (unsigned long long)n, MFS_TZ_ENTRIES_MAX);
		goto out;
	}
	t->cd_off = coff;
	t->cd_size = csz;
	*n_out = n;
	rc = 0;
out:
	free(tail);
	return rc;
}

static int tz_name_cmp(const tz *t, uint32_t a, uint32_t b)
{
	const tz_entry *x = &t->ent[a], *y = &t->ent[b];
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(t->cd + x->name_off, t->cd + y->name_off, n);
	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* qsort has no context argument: a sort of indices by name, by hand
 * (heapsort: O(n log n) whatever the input, no recursion). */
static void tz_sift(tz *t, uint32_t *a, size_t i, size_t n)
{
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && tz_name_cmp(t, a[c], a[c + 1]) < 0)
			c++;
		if (tz_name_cmp(t, a[i], a[c]) >= 0)
			return;
		uint32_t x = a[i];
		a[i] = a[c];
		a[c] = x;
		i = c;
	}
}

static void tz_sort_names(tz *t)
{
	uint32_t *a = t->by_name;
	size_t n = t->n_ent;
	for (size_t i = n / 2; i-- > 0;)
		tz_sift(t, a, i, n);
	for (size_t e = n; e-- > 1;) {
		uint32_t x = a[0];
		a[0] = a[e];
		a[e] = x;
		tz_sift(t, a, 0, e);
	}
}

static int tz_central(tz *t, uint64_t n)
{
	int rc;
	t->cd = malloc(t->cd_size ? (size_t)t->cd_size : 1);
	t->ent = calloc(n ? (size_t)n : 1, sizeof *t->ent);
	t->by_name = malloc((n ? (size_t)n : 1) * sizeof *t->by_name);
	if (!t->cd || !t->ent || !t->by_name)
		return -ENOMEM;
	if ((rc = tz_read(t, t->cd_off, t->cd, (size_t)t->cd_size, "central directory")) <
	    0)
		return rc;
	uint64_t pos = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (t->cd_size - pos < TZ_CEN_LEN)
			return TZ_FAIL(
			    t, MFS_E_FORMAT,
			    "central directory entry %llu runs past the directory's "
			    "end: the zip is corrupt",
			    (unsigned long long)i);
		const uint8_t *p = t->cd + pos;
		if (le32(p) != TZ_CEN_SIG)
			return TZ_FAIL(
			    t, MFS_E_FORMAT,
			    "central directory entry %llu (offset %llu) has no "
			    "entry signature: the zip is corrupt",
			    (unsigned long long)i, (unsigned long long)(t->cd_off + pos));
		tz_entry *e = &t->ent[i];
		uint64_t nlen = le16(p + 28), xlen = le16(p + 30), clen = le16(p + 32);
		if (TZ_CEN_LEN + nlen + xlen + clen > t->cd_size - pos)
			return TZ_FAIL(
			    t, MFS_E_FORMAT,
			    "central directory entry %llu's name and fields run "
			    "past the directory's end: the zip is corrupt",
			    (unsigned long long)i);
		if (nlen == 0)
			return TZ_FAIL(t, MFS_E_FORMAT,
				       "central directory entry %llu has an empty name",
				       (unsigned long long)i);
		e->flags = le16(p + 8);
		e->method = le16(p + 10);
		e->csize = le32(p + 20);
		e->usize = le32(p + 24);
		e->local = le32(p + 42);
		e->name_off = (uint32_t)(pos + TZ_CEN_LEN);
		e->name_len = (uint16_t)nlen;
		/* zip64 extra field: the 64-bit values, in this order, of those
		 * fields that hold 0xFFFFFFFF */
		const uint8_t *x = p + TZ_CEN_LEN + nlen, *xe = x + xlen;
		while (xe - x >= 4) {
			uint16_t id = le16(x), len = le16(x + 2);
			if (len > xe - x - 4)
				return TZ_FAIL(
				    t, MFS_E_FORMAT,
				    "central directory entry %llu has an extra "
				    "field past its end: the zip is corrupt",
				    (unsigned long long)i);
			if (id == 1) {
				const uint8_t *q = x + 4, *qe = q + len;
				uint64_t *f[3] = {&e->usize, &e->csize, &e->local};
				for (int k = 0; k < 3; k++) {
					if (*f[k] != 0xffffffffu)
						continue;
					if (qe - q < 8)
						return TZ_FAIL(
						    t, MFS_E_FORMAT,
						    "central directory entry %llu's "
						    "zip64 field is too short: the "
						    "zip is corrupt",
						    (unsigned long long)i);
					*f[k] = le64(q);
					q += 8;
				}
			}
			x += 4 + len;
		}
		t->by_name[i] = (uint32_t)i;
		pos += TZ_CEN_LEN + nlen + xlen + clen;
	}
	t->n_ent = (size_t)n;
	tz_sort_names(t);
	for (size_t i = 1; i < t->n_ent; i++)
		if (tz_name_cmp(t, t->by_name[i - 1], t->by_name[i]) == 0) {
			const tz_entry *e = &t->ent[t->by_name[i]];
			char q[4 * TZ_QUOTE + 8];
			return TZ_FAIL(
			    t, MFS_E_FORMAT,
			    "the zip names entry \"%s\" twice: the zip is corrupt",
			    tz_quote(t->cd + e->name_off, e->name_len, q, sizeof q));
		}
	return 0;
}

/* The entry called prefix + @p name (@p n bytes), or -1. */
static int64_t tz_find(const tz *t, const uint8_t *name, size_t n)
{
	size_t lo = 0, hi = t->n_ent;
	size_t full = t->prefix_len + n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const tz_entry *e = &t->ent[t->by_name[mid]];
		const uint8_t *en = t->cd + e->name_off;
		int c;
		size_t k = e->name_len < t->prefix_len ? e->name_len : t->prefix_len;
		c = memcmp(en, t->prefix, k);
		if (!c && e->name_len > t->prefix_len) {
			size_t m = e->name_len - t->prefix_len;
			c = memcmp(en + t->prefix_len, name, m < n ? m : n);
		}
		if (!c)
			c = e->name_len < full ? -1 : e->name_len > full;
		if (c == 0)
			return t->by_name[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* "<name>/data.pkl" with no other '/': the archive's folder. */
static int tz_prefix(tz *t)
{
	static const char pk[] = "/data.pkl";
	const size_t pl = sizeof pk - 1;
	int found = 0;
	for (size_t i = 0; i < t->n_ent; i++) {
		const tz_entry *e = &t->ent[i];
		const uint8_t *n = t->cd + e->name_off;
		if (e->name_len <= pl || memcmp(n + e->name_len - pl, pk, pl))
			continue;
		if (memchr(n, '/', e->name_len - pl))
			continue;
		if (found++)
			return TZ_FAIL(
			    t, MFS_E_UNSUPPORTED, "%s",
			    "the zip holds two archives' data.pkl: not one torch.save "
			    "checkpoint");
		t->prefix = n;
		t->prefix_len = e->name_len - pl + 1;
	}
	if (!found)
		return TZ_FAIL(
		    t, MFS_E_UNSUPPORTED, "%s",
		    "the zip has no <name>/data.pkl: not a torch.save checkpoint");
	return 0;
}

/* Where entry @p i's bytes lie, from its local header. */
static int tz_entry_data(tz *t, size_t i, uint64_t *data_off)
{
	const tz_entry *e = &t->ent[i];
	char q[4 * TZ_QUOTE + 8];
	const uint8_t *name = t->cd + e->name_off;
	tz_quote(name, e->name_len, q, sizeof q);
	if (e->flags & 1)
		return TZ_FAIL(t, MFS_E_UNSUPPORTED, "entry \"%s\" is encrypted", q);
	if (e->method != 0)
		return TZ_FAIL(
		    t, MFS_E_UNSUPPORTED,
		    "entry \"%s\" is compressed (method %u); torch.save stores "
		    "its entries uncompressed",
		    q, e->method);
	if (e->csize != e->usize)
		return TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "entry \"%s\" is stored but its sizes differ (%llu, %llu): "
		    "the zip is corrupt",
		    q, (unsigned long long)e->csize, (unsigned long long)e->usize);
	if (e->local > t->cd_off || t->cd_off - e->local < TZ_LOC_LEN)
		return TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "entry \"%s\"'s local header offset %llu is not before the "
		    "central directory (%llu): the zip is corrupt",
		    q, (unsigned long long)e->local, (unsigned long long)t->cd_off);
	uint8_t h[TZ_LOC_LEN];
	int rc = tz_read(t, e->local, h, sizeof h, "local header");
	if (rc < 0)
		return rc;
	if (le32(h) != TZ_LOC_SIG || le16(h + 8) != e->method ||
	    le16(h + 26) != e->name_len)
		return TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "entry \"%s\"'s local header at %llu does not match the central "
		    "directory: the zip is corrupt",
		    q, (unsigned long long)e->local);
	uint8_t buf[256];
	for (size_t k = 0; k < e->name_len; k += sizeof buf) {
		size_t m = e->name_len - k < sizeof buf ? e->name_len - k : sizeof buf;
		if ((rc = tz_read(t, e->local + TZ_LOC_LEN + k, buf, m, "local header")) <
		    0)
			return rc;
		if (memcmp(buf, name + k, m))
			return TZ_FAIL(
			    t, MFS_E_FORMAT,
			    "entry \"%s\"'s local header at %llu names another "
			    "file: the zip is corrupt",
			    q, (unsigned long long)e->local);
	}
	uint64_t d = e->local + TZ_LOC_LEN + e->name_len + le16(h + 28);
	if (d > t->cd_off || e->usize > t->cd_off - d)
		return TZ_FAIL(t, MFS_E_FORMAT,
			       "entry \"%s\"'s %llu bytes at %llu run into the central "
			       "directory at %llu: the zip is corrupt",
			       q, (unsigned long long)e->usize, (unsigned long long)d,
			       (unsigned long long)t->cd_off);
	*data_off = d;
	return 0;
}

/* ---------------------------------------------------------------- pickle */

#define TZ_GROW(t, arr, n, cap, first)                                                   \
	do {                                                                             \
		if ((n) >= MFS_TZ_NODES_MAX)                                             \
			return TZ_FAIL(t, MFS_E_TOOBIG,                                  \
				       "data.pkl builds more than %u values, over the "  \
				       "limit",                                          \
				       MFS_TZ_NODES_MAX);                                \
		void *g_ = mfs_grow((arr), &(cap), (n), sizeof *(arr), (first));         \
		if (!g_)                                                                 \
			return -ENOMEM;                                                  \
		(arr) = g_;                                                              \
	} while (0)

static int tz_bad(tz *t, const char *why)
{
	return TZ_FAIL(t, MFS_E_UNSUPPORTED,
		       "data.pkl byte %zu: %s; the pickle is not one torch.save writes "
		       "for tensors (it was not run)",
		       t->pc, why);
}

static int tz_new(tz *t, uint8_t kind, uint32_t a, uint64_t v, uint32_t *id)
{
	TZ_GROW(t, t->nodes, t->n_nodes, t->cap_nodes, 256);
	t->nodes[t->n_nodes] = (tz_node){.kind = kind, .a = a, .v = v};
	*id = (uint32_t)t->n_nodes++;
	return 0;
}

static int tz_push(tz *t, uint32_t id)
{
	TZ_GROW(t, t->stack, t->sp, t->cap_stack, 256);
	t->stack[t->sp++] = id;
	return 0;
}

static int tz_push_new(tz *t, uint8_t kind, uint32_t a, uint64_t v)
{
	uint32_t id = 0;
	int rc = tz_new(t, kind, a, v, &id);
	return rc < 0 ? rc : tz_push(t, id);
}

/* The stack's top, popped; the caller checked there is one above the mark. */
static int tz_pop(tz *t, uint32_t *id)
{
	size_t floor = t->n_marks ? t->marks[t->n_marks - 1] : 0;
	if (t->sp <= floor)
		return tz_bad(t, "an opcode takes a value the stack does not hold");
	*id = t->stack[--t->sp];
	return 0;
}

/* The values above the top mark: [*from, sp); the mark is popped. */
static int tz_pop_mark(tz *t, size_t *from)
{
	if (!t->n_marks)
		return tz_bad(t, "an opcode needs a MARK that is not there");
	*from = t->marks[--t->n_marks];
	return 0;
}

static const tz_node *tz_at(const tz *t, uint32_t id)
{
	return &t->nodes[id];
}

/* A tuple of the @p n values at stack[from..]: they leave the stack. */
static int tz_tuple(tz *t, size_t from)
{
	size_t n = t->sp - from, first = t->n_kids;
	for (size_t i = 0; i < n; i++) {
		TZ_GROW(t, t->kids, t->n_kids, t->cap_kids, 256);
		t->kids[t->n_kids++] = t->stack[from + i];
	}
	t->sp = from;
	return tz_push_new(t, N_TUPLE, (uint32_t)n, first);
}

static int tz_new_dict(tz *t)
{
	TZ_GROW(t, t->dicts, t->n_dicts, t->cap_dicts, 64);
	t->dicts[t->n_dicts] = (tz_dict){TZ_NONE32, TZ_NONE32, 0};
	return tz_push_new(t, N_DICT, (uint32_t)t->n_dicts++, 0);
}

static int tz_setitem(tz *t, uint32_t dict, uint32_t key, uint32_t val)
{
	const tz_node *d = tz_at(t, dict);
	if (d->kind != N_DICT)
		return tz_bad(t, "SETITEM on something that is not a dict");
	TZ_GROW(t, t->items, t->n_items, t->cap_items, 256);
	uint32_t it = (uint32_t)t->n_items++;
	t->items[it] = (tz_item){key, val, TZ_NONE32};
	tz_dict *dd = &t->dicts[d->a];
	if (dd->last == TZ_NONE32)
		dd->first = it;
	else
		t->items[dd->last].next = it;
	dd->last = it;
	return 0;
}

static int tz_need(tz *t, size_t n)
{
	if (t->pkl_len - t->pc < n)
		return TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "data.pkl ends inside an opcode at byte %zu: the pickle is "
		    "truncated",
		    t->pc);
	return 0;
}

static int tz_str(tz *t, uint64_t len, uint8_t kind)
{
	int rc;
	if (len > t->pkl_len - t->pc)
		return tz_need(t, SIZE_MAX);
	rc = tz_push_new(t, kind, (uint32_t)len, t->pc);
	t->pc += (size_t)len;
	return rc;
}

static int tz_eq(const tz *t, const tz_node *s, const char *lit)
{
	size_t n = strlen(lit);
	return s->kind == N_STR && s->a == n && !memcmp(t->pkl + s->v, lit, n);
}

static const struct {
	const char *name;
	mfs_dtype dt;
} tz_storages[] = {
    {"FloatStorage", MFS_DT_F32}, {"DoubleStorage", MFS_DT_F64},
    {"HalfStorage", MFS_DT_F16},  {"BFloat16Storage", MFS_DT_BF16},
    {"LongStorage", MFS_DT_I64},  {"IntStorage", MFS_DT_I32},
    {"ShortStorage", MFS_DT_I16}, {"CharStorage", MFS_DT_I8},
    {"ByteStorage", MFS_DT_U8},	  {"BoolStorage", MFS_DT_BOOL},
};

/* The callable a GLOBAL names, or a refusal naming it. */
static int tz_global(tz *t, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl)
{
#define IS(p, l, lit) ((l) == sizeof(lit) - 1 && !memcmp((p), (lit), sizeof(lit) - 1))
	if (IS(mod, ml, "collections") && IS(name, nl, "OrderedDict"))
		return tz_push_new(t, N_GLOBAL, G_ODICT, 0);
	if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_tensor_v2"))
		return tz_push_new(t, N_GLOBAL, G_REBUILD_V2, 0);
	if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_parameter"))
		return tz_push_new(t, N_GLOBAL, G_REBUILD_PARAM, 0);
	if (IS(mod, ml, "torch"))
		for (size_t i = 0; i < sizeof tz_storages / sizeof tz_storages[0]; i++)
			if (nl == strlen(tz_storages[i].name) &&
			    !memcmp(name, tz_storages[i].name, nl))
				return tz_push_new(t, N_GLOBAL, G_STORAGE,
						   (uint64_t)tz_storages[i].dt);
#undef IS
	char qm[4 * TZ_QUOTE + 8], qn[4 * TZ_QUOTE + 8];
	return TZ_FAIL(t, MFS_E_UNSUPPORTED,
		       "data.pkl byte %zu names the global %s.%s, which a torch.save of "
		       "tensors never holds (the pickle was not run)",
		       t->pc, tz_quote(mod, ml, qm, sizeof qm),
		       tz_quote(name, nl, qn, sizeof qn));
}

/* BINPERSID: ("storage", <storage class>, "<key>", <location>, numel). */
static int tz_persid(tz *t)
{
	uint32_t id = 0;
	int rc = tz_pop(t, &id);
	if (rc < 0)
		return rc;
	const tz_node *p = tz_at(t, id);
	if (p->kind != N_TUPLE || p->a != 5)
		return tz_bad(t, "a persistent id is not a 5-tuple");
	const uint32_t *k = t->kids + p->v;
	const tz_node *tag = tz_at(t, k[0]), *cls = tz_at(t, k[1]), *key = tz_at(t, k[2]),
		      *loc = tz_at(t, k[3]), *num = tz_at(t, k[4]);
	if (!tz_eq(t, tag, "storage") || cls->kind != N_GLOBAL || cls->a != G_STORAGE ||
	    key->kind != N_STR || key->a == 0 || key->a > TZ_KEY_MAX ||
	    loc->kind != N_STR || num->kind != N_INT || (int64_t)num->v < 0)
		return tz_bad(
		    t, "a persistent id is not (\"storage\", a torch storage class, "
		       "key, location, element count)");
	uint8_t name[5 + TZ_KEY_MAX];
	memcpy(name, "data/", 5);
	memcpy(name + 5, t->pkl + key->v, key->a);
	int64_t e = tz_find(t, name, 5 + key->a);
	char q[4 * TZ_QUOTE + 8];
	if (e < 0)
		return TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "data.pkl refers to storage \"%s\", which the zip does not hold: "
		    "the checkpoint is incomplete",
		    tz_quote(t->pkl + key->v, key->a, q, sizeof q));
	mfs_dtype dt = (mfs_dtype)cls->v;
	int32_t s = t->storage_of[e];
	if (s >= 0) {
		if (t->st[s].dtype != dt || t->st[s].numel != num->v)
			return TZ_FAIL(
			    t, MFS_E_UNSUPPORTED,
			    "storage \"%s\" is referred to with two types or sizes",
			    tz_quote(t->pkl + key->v, key->a, q, sizeof q));
	} else {
		TZ_GROW(t, t->st, t->n_st, t->cap_st, 64);
		s = (int32_t)t->n_st++;
		t->st[s] = (tz_storage){.entry = (uint32_t)e,
					.dtype = dt,
					.numel = num->v,
					.all_full = 1,
					.name_at = UINT64_MAX};
		t->storage_of[e] = s;
	}
	return tz_push_new(t, N_PERSID, (uint32_t)s, 0);
}

/* The ints of tuple @p id into @p out (at most MFS_ST_MAX_DIMS); -1 if not. */
static int tz_ints(const tz *t, uint32_t id, uint64_t *out, uint32_t *n)
{
	const tz_node *p = tz_at(t, id);
	if (p->kind != N_TUPLE || p->a > MFS_ST_MAX_DIMS)
		return -1;
	for (uint32_t i = 0; i < p->a; i++) {
		const tz_node *x = tz_at(t, t->kids[p->v + i]);
		if (x->kind != N_INT || (int64_t)x->v < 0)
			return -1;
		out[i] = x->v;
	}
	*n = p->a;
	return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta]) */
static int tz_rebuild(tz *t, const tz_node *args)
{
	if (args->kind != N_TUPLE || (args->a != 6 && args->a != 7))
		return tz_bad(t,
			      "_rebuild_tensor_v2 is given other than 6 or 7 arguments");
	const uint32_t *k = t->kids + args->v;
	const tz_node *st = tz_at(t, k[0]), *off = tz_at(t, k[1]), *rg = tz_at(t, k[4]);
	uint64_t size[MFS_ST_MAX_DIMS], stride[MFS_ST_MAX_DIMS];
	uint32_t nd, ns;
	if (st->kind != N_PERSID || off->kind != N_INT || (int64_t)off->v < 0 ||
	    rg->kind != N_BOOL || tz_ints(t, k[2], size, &nd) ||
	    tz_ints(t, k[3], stride, &ns) || nd != ns)
		return tz_bad(t, "_rebuild_tensor_v2 is given arguments of other types "
				 "than torch writes");
	tz_storage *s = &t->st[st->a];
	/* The view's last element must lie in its storage. */
	uint64_t nelem = 1, last = off->v, x;
	int empty = 0;
	for (uint32_t i = 0; i < nd; i++)
		empty |= size[i] == 0;
	for (uint32_t i = 0; i < nd && !empty; i++) {
		if (__builtin_mul_overflow(nelem, size[i], &nelem) ||
		    __builtin_mul_overflow(size[i] - 1, stride[i], &x) ||
		    __builtin_add_overflow(last, x, &last))
			return tz_bad(t, "a tensor's size or stride overflows 64 bits");
	}
	if (!empty && last >= s->numel)
		return TZ_FAIL(
		    t, MFS_E_FORMAT,
		    "data.pkl byte %zu: a tensor reaches element %llu of a storage "
		    "of %llu: the checkpoint is corrupt",
		    t->pc, (unsigned long long)last, (unsigned long long)s->numel);
	/* Full: the whole storage, row-major (a dimension of 1 has any stride);
	 * the running product is at most nelem, which did not overflow. */
	int full = !empty && off->v == 0 && nelem == s->numel;
	for (uint64_t i = nd, w = 1; full && i-- > 0; w *= size[i])
		if (size[i] != 1 && stride[i] != w)
			full = 0;
	if (s->n_views == 0) {
		s->ndim = nd;
		s->shape_at = t->n_dims;
		for (uint32_t i = 0; i < nd; i++) {
			TZ_GROW(t, t->dims, t->n_dims, t->cap_dims, 256);
			t->dims[t->n_dims++] = size[i];
		}
		s->all_full = full;
	} else if (!full || s->ndim != nd ||
		   memcmp(t->dims + s->shape_at, size, nd * sizeof *size)) {
		s->all_full = 0;
	}
	s->n_views++;
	return tz_push_new(t, N_TENSOR, st->a, 0);
}

static int tz_reduce(tz *t)
{
	uint32_t aid = 0, fid = 0;
	int rc;
	if ((rc = tz_pop(t, &aid)) < 0 || (rc = tz_pop(t, &fid)) < 0)
		return rc;
	const tz_node *f = tz_at(t, fid), *args = tz_at(t, aid);
	if (f->kind != N_GLOBAL || args->kind != N_TUPLE)
		return tz_bad(
		    t, "REDUCE applies something that is not a known torch callable");
	switch (f->a) {
	case G_ODICT:
		if (args->a != 0)
			return tz_bad(t, "OrderedDict is given arguments");
		return tz_new_dict(t);
	case G_REBUILD_V2:
		return tz_rebuild(t, args);
	case G_REBUILD_PARAM: {
		/* (tensor, requires_grad, hooks): the parameter is its tensor */
		if (args->a != 3 || tz_at(t, t->kids[args->v])->kind != N_TENSOR)
			return tz_bad(t,
				      "_rebuild_parameter is given other arguments than "
				      "torch writes");
		return tz_push(t, t->kids[args->v]);
	}
	default:
		return tz_bad(t, "REDUCE applies a storage class");
	}
}

static int tz_memo_put(tz *t, uint64_t idx)
{
	if (!t->sp)
		return tz_bad(t, "a memo store with an empty stack");
	if (idx >= MFS_TZ_NODES_MAX)
		return TZ_FAIL(t, MFS_E_TOOBIG,
			       "data.pkl byte %zu: memo index %llu is over the limit",
			       t->pc, (unsigned long long)idx);
	while (t->memo_len <= idx) {
		TZ_GROW(t, t->memo, t->memo_len, t->cap_memo, 256);
		t->memo[t->memo_len++] = TZ_NONE32;
	}
	if (t->memo[idx] == TZ_NONE32)
		t->memo_set++;
	t->memo[idx] = t->stack[t->sp - 1];
	return 0;
}

static int tz_memo_get(tz *t, uint64_t idx)
{
	if (idx >= t->memo_len || t->memo[idx] == TZ_NONE32)
		return TZ_FAIL(t, MFS_E_FORMAT,
			       "data.pkl byte %zu reads memo entry %llu, which was never "
			       "stored: the pickle is corrupt",
			       t->pc, (unsigned long long)idx);
	return tz_push(t, t->memo[idx]);
}

static int tz_run(tz *t, uint32_t *result)
{
	int rc = 0;
	t->pc = 0;
	while (rc == 0) {
		if ((rc = tz_need(t, 1)) < 0)
			return rc;
		uint8_t op = t->pkl[t->pc++];
		const uint8_t *a = t->pkl + t->pc;
		uint32_t x = 0, y = 0, z = 0;
		size_t from = 0;
		switch (op) {
		case 0x80: /* PROTO */
			if ((rc = tz_need(t, 1)) < 0)
				return rc;
			if (a[0] > 5)
				return tz_bad(t, "a pickle protocol above 5");
			t->pc++;
			break;
		case 0x95: /* FRAME: a size hint */
			if ((rc = tz_need(t, 8)) < 0)
				return rc;
			t->pc += 8;
			break;
		case 'c': { /* GLOBAL "module\nname\n" */
			const uint8_t *end = t->pkl + t->pkl_len;
			size_t lim = (size_t)(end - a) < 2 * TZ_GLOBAL_PART_MAX + 2
					 ? (size_t)(end - a)
					 : 2 * TZ_GLOBAL_PART_MAX + 2;
			const uint8_t *nl1 = memchr(a, '\n', lim);
			const uint8_t *nl2 =
			    nl1 ? memchr(nl1 + 1, '\n', lim - (size_t)(nl1 + 1 - a))
				: NULL;
			if (!nl2)
				return tz_bad(t, "a GLOBAL without its two lines");
			rc = tz_global(t, a, (size_t)(nl1 - a), nl1 + 1,
				       (size_t)(nl2 - nl1 - 1));
			t->pc += (size_t)(nl2 + 1 - a);
			break;
		}
		case 0x93: /* STACK_GLOBAL */
			if ((rc = tz_pop(t, &y)) < 0 || (rc = tz_pop(t, &x)) < 0)
				return rc;
			if (tz_at(t, x)->kind != N_STR || tz_at(t, y)->kind != N_STR)
				return tz_bad(
				    t, "STACK_GLOBAL of values that are not strings");
			rc = tz_global(t, t->pkl + tz_at(t, x)->v, tz_at(t, x)->a,
				       t->pkl + tz_at(t, y)->v, tz_at(t, y)->a);
			break;
		case '(': /* MARK */
			TZ_GROW(t, t->marks, t->n_marks, t->cap_marks, 64);
			t->marks[t->n_marks++] = t->sp;
			break;
		case ')':
			rc = tz_push_new(t, N_TUPLE, 0, 0);
			break;
		case 't':
			if ((rc = tz_pop_mark(t, &from)) == 0)
				rc = tz_tuple(t, from);
			break;
		case 0x85: /* TUPLE1..3 */
		case 0x86:
		case 0x87: {
			size_t n = (size_t)(op - 0x84);
			size_t floor = t->n_marks ? t->marks[t->n_marks - 1] : 0;
			if (t->sp < floor + n)
				return tz_bad(
				    t, "a TUPLE opcode takes values the stack does "
				       "not hold");
			rc = tz_tuple(t, t->sp - n);
			break;
		}
		case '}':
			rc = tz_new_dict(t);
			break;
		case ']':
			rc = tz_push_new(t, N_LIST, 0, 0);
			break;
		case 'l': /* LIST from the mark */
			if ((rc = tz_pop_mark(t, &from)) == 0) {
				t->sp = from;
				rc = tz_push_new(t, N_LIST, 0, 0);
			}
			break;
		case 'd': /* DICT from the mark */
			if ((rc = tz_pop_mark(t, &from)) < 0)
				return rc;
			if ((t->sp - from) % 2)
				return tz_bad(t, "DICT of an odd number of values");
			/* the dict goes above the pairs, takes them, then replaces them
			 */
			if ((rc = tz_new_dict(t)) < 0)
				return rc;
			x = t->stack[t->sp - 1];
			for (size_t i = from; i + 1 < t->sp - 1 && rc == 0; i += 2)
				rc = tz_setitem(t, x, t->stack[i], t->stack[i + 1]);
			t->sp = from;
			t->stack[t->sp++] = x;
			break;
		case 's': /* SETITEM */
			if ((rc = tz_pop(t, &y)) < 0 || (rc = tz_pop(t, &x)) < 0)
				return rc;
			if ((rc = tz_pop(t, &z)) < 0)
				return rc;
			t->sp++; /* the dict stays */
			rc = tz_setitem(t, z, x, y);
			break;
		case 'u': /* SETITEMS */
			if ((rc = tz_pop_mark(t, &from)) < 0)
				return rc;
			if ((t->sp - from) % 2 || from == 0 ||
			    (t->n_marks && from <= t->marks[t->n_marks - 1]))
				return tz_bad(
				    t, "SETITEMS without a dict and key/value pairs");
			for (size_t i = from; i < t->sp && rc == 0; i += 2)
				rc = tz_setitem(t, t->stack[from - 1], t->stack[i],
						t->stack[i + 1]);
			t->sp = from;
			break;
		case 'a': /* APPEND: lists are not read */
			if ((rc = tz_pop(t, &x)) < 0)
				return rc;
			if (!t->sp || tz_at(t, t->stack[t->sp - 1])->kind != N_LIST)
				return tz_bad(t,
					      "APPEND to something that is not a list");
			break;
		case 'e': /* APPENDS */
			if ((rc = tz_pop_mark(t, &from)) < 0)
				return rc;
			if (from == 0 || tz_at(t, t->stack[from - 1])->kind != N_LIST ||
			    (t->n_marks && from <= t->marks[t->n_marks - 1]))
				return tz_bad(t,
					      "APPENDS to something that is not a list");
			t->sp = from;
			break;
		case 'J': /* BININT */
			if ((rc = tz_need(t, 4)) < 0)
				return rc;
			rc =
			    tz_push_new(t, N_INT, 0, (uint64_t)(int64_t)(int32_t)le32(a));
			t->pc += 4;
			break;
		case 'K':
			if ((rc = tz_need(t, 1)) < 0)
				return rc;
			rc = tz_push_new(t, N_INT, 0, a[0]);
			t->pc += 1;
			break;
		case 'M':
			if ((rc = tz_need(t, 2)) < 0)
				return rc;
			rc = tz_push_new(t, N_INT, 0, le16(a));
			t->pc += 2;
			break;
		case 0x8a: { /* LONG1: n little-endian two's complement bytes */
			if ((rc = tz_need(t, 1)) < 0)
				return rc;
			size_t n = a[0];
			if (n > 8)
				return tz_bad(t, "an integer wider than 64 bits");
			if ((rc = tz_need(t, 1 + n)) < 0)
				return rc;
			uint64_t v = 0;
			for (size_t i = 0; i < n; i++)
				v |= (uint64_t)a[1 + i] << (8 * i);
			if (n && n < 8 && (a[n] & 0x80))
				v |= ~(uint64_t)0 << (8 * n);
			rc = tz_push_new(t, N_INT, 0, v);
			t->pc += 1 + n;
			break;
		}
		case 'G': /* BINFLOAT */
			if ((rc = tz_need(t, 8)) < 0)
				return rc;
			rc = tz_push_new(t, N_FLOAT, 0, 0);
			t->pc += 8;
			break;
		case 'N':
			rc = tz_push_new(t, N_NONE, 0, 0);
			break;
		case 0x88:
		case 0x89:
			rc = tz_push_new(t, N_BOOL, 0, op == 0x88);
			break;
		case 'X': /* BINUNICODE */
		case 'B': /* BINBYTES */
			if ((rc = tz_need(t, 4)) < 0)
				return rc;
			t->pc += 4;
			rc = tz_str(t, le32(a), op == 'X' ? N_STR : N_BYTES);
			break;
		case 0x8c: /* SHORT_BINUNICODE */
		case 'C':  /* SHORT_BINBYTES */
			if ((rc = tz_need(t, 1)) < 0)
				return rc;
			t->pc += 1;
			rc = tz_str(t, a[0], op == 0x8c ? N_STR : N_BYTES);
			break;
		case 0x8d: /* BINUNICODE8 */
		case 0x8e: /* BINBYTES8 */
			if ((rc = tz_need(t, 8)) < 0)
				return rc;
			t->pc += 8;
			rc = tz_str(t, le64(a), op == 0x8d ? N_STR : N_BYTES);
			break;
		case 'Q':
			rc = tz_persid(t);
			break;
		case 'R':
			rc = tz_reduce(t);
			break;
		case 'b': /* BUILD: only an OrderedDict's state (state_dict's _metadata)
			   */
			if ((rc = tz_pop(t, &x)) < 0)
				return rc;
			if (!t->sp || tz_at(t, t->stack[t->sp - 1])->kind != N_DICT ||
			    (tz_at(t, x)->kind != N_DICT && tz_at(t, x)->kind != N_NONE))
				return tz_bad(
				    t, "BUILD of something other than a dict's state");
			break;
		case 'q':
			if ((rc = tz_need(t, 1)) < 0)
				return rc;
			rc = tz_memo_put(t, a[0]);
			t->pc += 1;
			break;
		case 'r':
			if ((rc = tz_need(t, 4)) < 0)
				return rc;
			rc = tz_memo_put(t, le32(a));
			t->pc += 4;
			break;
		case 0x94: /* MEMOIZE: at the memo's length */
			rc = tz_memo_put(t, t->memo_set);
			break;
		case 'h':
			if ((rc = tz_need(t, 1)) < 0)
				return rc;
			rc = tz_memo_get(t, a[0]);
			t->pc += 1;
			break;
		case 'j':
			if ((rc = tz_need(t, 4)) < 0)
				return rc;
			rc = tz_memo_get(t, le32(a));
			t->pc += 4;
			break;
		case '0': /* POP */
			rc = tz_pop(t, &x);
			break;
		case '.': /* STOP */
			if (!t->sp)
				return tz_bad(t, "STOP with an empty stack");
			*result = t->stack[t->sp - 1];
			return 0;
		default: {
			char why[64];
			snprintf(why, sizeof why,
				 "opcode 0x%02x is outside the subset read", op);
			return tz_bad(t, why);
		}
		}
	}
	return rc;
}

/* -------------------------------------------------------------- layout */

static int tz_add_name(tz *t, tz_storage *s, const char *path, size_t n)
{
	if (t->names_len + n + 1 > TZ_NAMES_MAX)
		return TZ_FAIL(t, MFS_E_TOOBIG,
			       "the tensor names exceed %zu bytes, the limit",
			       TZ_NAMES_MAX);
	while (t->cap_names < t->names_len + n + 1) {
		size_t nc = t->cap_names ? t->cap_names * 2 : 4096;
		char *p = realloc(t->names, nc);
		if (!p)
			return -ENOMEM;
		t->names = p;
		t->cap_names = nc;
	}
	s->name_at = t->names_len;
	memcpy(t->names + t->names_len, path, n);
	t->names[t->names_len + n] = '\0';
	t->names_len += n + 1;
	return 0;
}

/* Name storages by the dict keys that lead to their tensors; each dict is
 * walked once (a dict reached twice through the memo adds no names, and a
 * dict holding itself ends). */
static int tz_walk(tz *t, uint32_t id, char *path, size_t plen, int depth)
{
	const tz_node *n = tz_at(t, id);
	if (n->kind == N_TENSOR) {
		tz_storage *s = &t->st[n->a];
		if (s->name_at == UINT64_MAX && plen > 0)
			return tz_add_name(t, s, path, plen);
		return 0;
	}
	if (n->kind != N_DICT || depth >= TZ_DEPTH_MAX || t->dicts[n->a].walked)
		return 0;
	t->dicts[n->a].walked = 1;
	for (uint32_t it = t->dicts[n->a].first; it != TZ_NONE32;
	     it = t->items[it].next) {
		const tz_node *k = tz_at(t, t->items[it].key);
		char num[24];
		const char *kp;
		size_t kl;
		if (k->kind == N_STR) {
			kp = (const char *)t->pkl + k->v;
			kl = k->a;
		} else if (k->kind == N_INT) {
			kl = (size_t)snprintf(num, sizeof num, "%lld",
					      (long long)(int64_t)k->v);
			kp = num;
		} else {
			continue;
		}
		size_t nl = plen + (plen ? 1 : 0) + kl;
		/* A name with a NUL byte or over the limit names nothing. */
		if (nl > MFS_TZ_NAME_MAX || memchr(kp, '\0', kl))
			continue;
		if (plen)
			path[plen] = '.';
		memcpy(path + plen + (plen ? 1 : 0), kp, kl);
		int rc = tz_walk(t, t->items[it].val, path, nl, depth + 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int tz_cmp_begin(const void *a, const void *b)
{
	const mfs_st_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return (x->end > y->end) - (x->end < y->end);
}

static int tz_cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int tz_layout(tz *t, mfs_st_header *out)
{
	int rc;
	/* Unnamed storages: their entry's name inside the archive. */
	for (size_t i = 0; i < t->n_st; i++) {
		tz_storage *s = &t->st[i];
		if (s->name_at != UINT64_MAX)
			continue;
		const tz_entry *e = &t->ent[s->entry];
		if ((rc = tz_add_name(t, s,
				      (const char *)t->cd + e->name_off + t->prefix_len,
				      e->name_len - t->prefix_len)) < 0)
			return rc;
	}
	size_t arr = t->n_st * sizeof(mfs_st_tensor);
	mfs_st_tensor *ts = calloc(1, arr + t->names_len + 1);
	const char **sorted = malloc((t->n_st ? t->n_st : 1) * sizeof *sorted);
	if (!ts || !sorted) {
		free(ts);
		free(sorted);
		return -ENOMEM;
	}
	char *names = (char *)ts + arr;
	if (t->names_len)
		memcpy(names, t->names, t->names_len);
	rc = 0;
	for (size_t i = 0; i < t->n_st && rc == 0; i++) {
		const tz_storage *s = &t->st[i];
		const tz_entry *e = &t->ent[s->entry];
		mfs_st_tensor *o = &ts[i];
		uint64_t bytes, data_off;
		o->name = names + s->name_at;
		sorted[i] = o->name;
		o->dtype = s->dtype;
		if ((rc = tz_entry_data(t, s->entry, &data_off)) < 0)
			break;
		if (__builtin_mul_overflow(
			s->numel, (uint64_t)mfs_dtype_bits(s->dtype) / 8, &bytes) ||
		    bytes != e->usize) {
			char q[4 * TZ_QUOTE + 8];
			rc = TZ_FAIL(
			    t, MFS_E_FORMAT,
			    "storage \"%s\" holds %llu bytes, not %llu elements of %s: "
			    "the checkpoint is corrupt",
			    tz_quote(t->cd + e->name_off, e->name_len, q, sizeof q),
			    (unsigned long long)e->usize, (unsigned long long)s->numel,
			    mfs_dtype_name(s->dtype));
			break;
		}
		o->begin = data_off;
		o->end = data_off + bytes;
		if (s->all_full && s->n_views) {
			o->ndim = s->ndim;
			memcpy(o->shape, t->dims + s->shape_at,
			       s->ndim * sizeof *o->shape);
		} else {
			o->ndim = 1;
			o->shape[0] = s->numel;
		}
	}
	if (rc == 0) {
		qsort(sorted, t->n_st, sizeof *sorted, tz_cmp_str);
		for (size_t i = 1; i < t->n_st; i++)
			if (!strcmp(sorted[i - 1], sorted[i])) {
				char q[4 * TZ_QUOTE + 8];
				rc = TZ_FAIL(
				    t, MFS_E_UNSUPPORTED,
				    "two storages are both named \"%s\"",
				    mfs_str_quote(sorted[i], TZ_QUOTE, q, sizeof q));
				break;
			}
	}
	free(sorted);
	if (rc < 0) {
		free(ts);
		return rc;
	}
	qsort(ts, t->n_st, sizeof *ts, tz_cmp_begin);
	/* data_start: the first storage, empty ones too (so every tensor lies
	 * at or after it, as in a safetensors header) */
	uint64_t first = t->n_st ? ts[0].begin : t->src->size, reach = 0;
	for (size_t i = 0; i < t->n_st; i++) {
		if (ts[i].begin == ts[i].end)
			continue;
		if (ts[i].begin < reach) {
			char q[4 * TZ_QUOTE + 8];
			mfs_str_quote(ts[i].name, TZ_QUOTE, q, sizeof q);
			free(ts);
			return TZ_FAIL(
			    t, MFS_E_FORMAT,
			    "storage \"%s\" overlaps another storage's bytes: the zip "
			    "is corrupt",
			    q);
		}
		reach = ts[i].end;
	}
	out->header_len = 0;
	out->data_start = first < 8 ? 8 : first;
	out->file_size = t->src->size;
	out->n_tensors = t->n_st;
	out->tensors = ts;
	return 0;
}

static void tz_free(tz *t)
{
	free(t->cd);
	free(t->ent);
	free(t->by_name);
	free(t->pkl);
	free(t->nodes);
	free(t->stack);
	free(t->marks);
	free(t->memo);
	free(t->kids);
	free(t->items);
	free(t->dicts);
	free(t->storage_of);
	free(t->st);
	free(t->dims);
	free(t->names);
}

int mfs_tz_is_zip(const uint8_t first4[4])
{
	return first4[0] == 'P' && first4[1] == 'K' && first4[2] == 3 && first4[3] == 4;
}

int mfs_tz_parse(const mfs_preader *src, mfs_st_header *out, const char *what,
		 mfs_errmsg *err)
{
	tz t = {.src = src, .what = what, .err = err};
	uint64_t n = 0, pkl_off;
	uint32_t result = 0;
	int rc;
	char path[MFS_TZ_NAME_MAX + 1];

	memset(out, 0, sizeof *out);
	if (src->size >= 4) {
		uint8_t m[4];
		if ((rc = tz_read(&t, 0, m, 4, "zip signature")) < 0)
			goto out;
		if (!mfs_tz_is_zip(m)) {
			rc = TZ_FAIL(
			    &t, MFS_E_FORMAT, "%s",
			    "does not start with a zip signature: not a torch.save "
			    "zip checkpoint (a legacy pickle checkpoint is stored as "
			    "plain bytes)");
			goto out;
		}
	}
	if ((rc = tz_end_records(&t, &n)) < 0 || (rc = tz_central(&t, n)) < 0 ||
	    (rc = tz_prefix(&t)) < 0)
		goto out;
	int64_t pe = tz_find(&t, (const uint8_t *)"data.pkl", 8);
	if (pe < 0 || (rc = tz_entry_data(&t, (size_t)pe, &pkl_off)) < 0) {
		rc = rc < 0 ? rc : MFS_E_FORMAT;
		goto out;
	}
	if (t.ent[pe].usize > MFS_TZ_PICKLE_MAX) {
		rc = TZ_FAIL(&t, MFS_E_TOOBIG,
			     "data.pkl is %llu bytes, over the %llu-byte limit",
			     (unsigned long long)t.ent[pe].usize,
			     (unsigned long long)MFS_TZ_PICKLE_MAX);
		goto out;
	}
	t.pkl_len = (size_t)t.ent[pe].usize;
	t.pkl = malloc(t.pkl_len ? t.pkl_len : 1);
	t.storage_of = malloc((t.n_ent ? t.n_ent : 1) * sizeof *t.storage_of);
	if (!t.pkl || !t.storage_of) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t.n_ent; i++)
		t.storage_of[i] = -1;
	if ((rc = tz_read(&t, pkl_off, t.pkl, t.pkl_len, "data.pkl")) < 0 ||
	    (rc = tz_run(&t, &result)) < 0 || (rc = tz_walk(&t, result, path, 0, 0)) < 0)
		goto out;
	if (t.n_st == 0) {
		rc = TZ_FAIL(&t, MFS_E_UNSUPPORTED, "%s",
			     "the checkpoint holds no tensor storage to lay out");
		goto out;
	}
	rc = tz_layout(&t, out);
out:
	tz_free(&t);
	return rc;
}
