/*
 * ll.c - libfuse3 low-level glue: kernel requests -> fs/layout.h + fs/reader.h.
 *
 * Only this file includes FUSE.  Each mfs_ll_* handler translates one
 * request; per-mount state travels in the session userdata (mount_of(req)),
 * per-thread decode workspaces in a pthread key of the mount.  Every write
 * request is answered EROFS (the kernel already refuses most of them: the
 * mount is "ro").
 *
 * Caching policy (files never change under a mount):
 *   - no OPEN: the first one is answered ENOSYS (FUSE_CAP_NO_OPEN_SUPPORT),
 *     so the kernel opens files by itself from then on, keeping their page
 *     cache, and a re-read of a cached file costs no request at all.  Reads
 *     therefore find their file by inode (fs/blob_table.h: a blob's entry
 *     lives from the first lookup handed out until the kernel forgets it);
 *   - blobs, snapshot entries and symlinks: attr/entry timeouts of a day;
 *   - refs and other names that a refresh may change: 1 s, and the watcher
 *     thread drops the page cache of every ref when the store changes;
 *   - names in the root (repo dirs): 1 s, and the watcher drops those of
 *     removed repos at once (the root's listing shows them gone at once);
 *   - negative lookups: 1 s, but none at the root, where new repos appear.
 * On a kernel without FUSE_CAP_NO_OPEN_SUPPORT, opens are answered with
 * keep_cache for blobs (not for refs) and read the same way, by inode.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)

#include "ll.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "blob_table.h"
#include "cache.h"
#include "clock.h"
#include "heap.h"
#include "layout.h"
#include "pack.h"
#include "prefetch_model.h"
#include "reader.h"
#include "space.h"
#include "warm.h"

#define LONG_TIMEOUT  86400.0
#define SHORT_TIMEOUT 1.0
#define NEG_TIMEOUT   1.0
#define REFRESH_MS    1000
#define WATCH_MS      100 /* the watcher's tick (watch_main) */
#define FILE_IDLE_MS  30000 /* a blob's file closes after this long unread */
#define MAX_REQUEST   (1u << 20)
/* An index up to this size is brought into memory (warm_store). */
#define INDEX_WARM_MAX (256ull << 20)
#define MAX_SEGS      64 /* pieces of a zero-copy reply */
/* prefetch_file takes effect up to this share of the cache budget
 * (mfs_reader_set_whole_file). */
#define WHOLE_FILE_SHARE 4
/*
 * The most store views (LMDB read transactions) the blob table's entries may
 * hold (mfs_blob_table_set_bound); beyond it, removed blobs still held open
 * share a view kept or are copied to the spill file.  Each view is one of the
 * store's 1024 reader slots (index/, MAX_READERS), which every process of
 * the store shares: a mount then holds at most 32 + 3 of them for good (the
 * newest view, the read-ahead thread, a tree rebuild), plus for a few
 * seconds the files a model prefetch opens (up to 64), so a dozen mounts and
 * the commands beside them (one slot each, one per encoder thread for
 * ingest) stay well within the 1024.  Removed-and-open files spread over
 * fewer than 32 removals cost no copy at all.
 */
#define MAX_VIEWS 32

struct mfs_mount {
	mfs_mount_config cfg;
	int debug;
	int daemonized;
	int mounted;
	struct fuse_session *se;
	mfs_store *store;
	mfs_layout *layout;
	mfs_cache *cache;
	mfs_ioahead *io; /* read-ahead of stored records (reader) */
	/* read-error lines: at most READ_ERR_LINES a second (atomics) */
	uint64_t err_sec, err_lines, err_dropped;
	mfs_reader *reader;
	mfs_gpu_backend *gpu;	    /* gpu auto|on with a usable device, else NULL */
	mfs_prefetch_model *pmodel; /* prefetch_model: weights decoded on config.json */
	mfs_blob_table *blobs;	    /* the blobs the kernel holds, by inode */
	pthread_mutex_t view_mu;
	mfs_view *view; /* the newest view: new blob entries read it (current_view) */
	int no_open;	/* the kernel opens files without asking (no OPEN) */
	/* the watcher thread (watch_main) */
	pthread_t watcher;
	int watcher_ok;
	pthread_mutex_t watch_mu;
	pthread_cond_t watch_cv;
	int watch_stop;
	uint64_t watch_gen; /* the layout generation it last saw */
	char **root_names;  /* the root's names at that generation */
	size_t n_root_names;
	pthread_key_t tkey;
	int tkey_ok;
	int sig_ok;
	/* the store's data.mdb and lock.mdb as the mount opened them (store_gone) */
	dev_t store_dev, lock_dev;
	ino_t store_ino, lock_ino;
	int lock_known; /* lock.mdb was there to remember */
	uint64_t store_checked_ms;
	int store_gone; /* 0, or why it is gone (an errno value) */
	int log_fd;	/* cfg.log_file, or -1 */
	/* watch_bound_views: the generation it last ran at, whether it left more
	 * than MAX_VIEWS, and the copies that failed (for the stop line) */
	uint64_t bound_gen;
	int bound_over;
	size_t spill_failed;
	/* read counters, for the stop log line: updated atomically */
	uint64_t n_reads, read_bytes, read_ns, reply_ns;
	/*
	 * Open directories, so that those the kernel never released (the mount
	 * went away while they were open) are freed at destroy.
	 */
	pthread_mutex_t handles_mu;
	int handles_ok;
	struct handle *handles;
};

/* What an open directory's fh points to: linked into m->handles. */
typedef struct handle {
	struct handle *prev, *next;
} handle;

static void handle_add(mfs_mount *m, handle *h)
{
	pthread_mutex_lock(&m->handles_mu);
	h->prev = NULL;
	h->next = m->handles;
	if (m->handles)
		m->handles->prev = h;
	m->handles = h;
	pthread_mutex_unlock(&m->handles_mu);
}

static void handle_remove(mfs_mount *m, handle *h)
{
	pthread_mutex_lock(&m->handles_mu);
	if (h->prev)
		h->prev->next = h->next;
	else
		m->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&m->handles_mu);
}


/* What a FUSE worker thread keeps between requests. */
typedef struct thread_ctx {
	mfs_codec_ws *ws;
	void *buf;
	size_t cap;
} thread_ctx;

/* An open directory. */
typedef struct odir {
	handle h; /* first: the handle list links odirs */
	mfs_layout_dir *dir;
} odir;

static mfs_mount *mount_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Unlink and free an open directory; NULL is a no-op. */
static void odir_free(mfs_mount *m, odir *od)
{
	if (!od)
		return;
	handle_remove(m, &od->h);
	mfs_layout_dir_close(m->layout, od->dir);
	free(od);
}

/* One line appended to the log file: a single write, whole on O_APPEND. */
static void log_to_file(int fd, const char *line)
{
	char buf[1200];
	time_t now = time(NULL);
	struct tm tm;
	char stamp[32] = "?";
	if (gmtime_r(&now, &tm))
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	int n = snprintf(buf, sizeof(buf), "%s modelfs mount[%ld]: %s\n", stamp,
			 (long)getpid(), line);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf)) {
		n = (int)sizeof(buf) - 1;
		buf[n - 1] = '\n';
	}
	if (write(fd, buf, (size_t)n) < 0) {
		/* nowhere left to say so */
	}
}

void mfs_mount_log(mfs_mount *m, int level, const char *fmt, ...)
{
	if (m && level > m->cfg.log_level)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (m && m->log_fd >= 0)
		log_to_file(m->log_fd, line);
	if (m && m->daemonized) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		if (m->log_fd < 0)
			syslog(prio[level < 0 ? 0 : level > 3 ? 3 : level], "%s", line);
	} else {
		fprintf(stderr, "modelfs mount: %s\n", line);
	}
}

const char *mfs_mount_point(const mfs_mount *m)
{
	return m->cfg.mountpoint;
}

int mfs_errno(int rc)
{
	if (rc >= 0)
		return 0;
	if (rc > -4096)
		return -rc; /* already -errno */
	switch (rc) {
	case MFS_E_NOTFOUND:
		return ENOENT;
	case MFS_E_CORRUPT:
		return EIO;
	case MFS_E_FORMAT:
		return EIO;
	case MFS_E_VERSION:
		return EIO;
	case MFS_E_EXISTS:
		return EEXIST;
	case MFS_E_INVAL:
		return EINVAL;
	case MFS_E_NOSPACE:
		return ERANGE;
	case MFS_E_CODEC:
		return EIO;
	case MFS_E_DB:
		return EIO;
	case MFS_E_BUSY:
		return EBUSY;
	case MFS_E_TOOBIG:
		return EFBIG;
	case MFS_E_UNSUPPORTED:
		return EOPNOTSUPP;
	default:
		return EIO;
	}
}

static void thread_ctx_free(void *p)
{
	thread_ctx *t = p;
	if (!t)
		return;
	mfs_codec_ws_free(t->ws);
	free(t->buf);
	free(t);
}

static thread_ctx *tctx(mfs_mount *m)
{
	thread_ctx *t = pthread_getspecific(m->tkey);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	if (mfs_codec_ws_create(&t->ws) < 0 || pthread_setspecific(m->tkey, t) != 0) {
		thread_ctx_free(t);
		return NULL;
	}
	return t;
}

/* ---- the store under the mount ---- */

/*
 * A store directory removed, replaced or made unreadable while mounted: LMDB
 * goes on reading its old (unlinked) map, so without this check the mount
 * would serve a store that no longer exists, holding its disk space, until
 * unmounted.  Requests (and the watcher) check at most every STORE_CHECK_MS
 * that <store>/data.mdb is still the file the mount opened; while it is not,
 * lookups and opens fail with ENOENT, directory opens and reads with EIO.  If
 * the same file comes back (permissions restored), serving resumes.
 *
 * The same holds for <store>/lock.mdb, the reader table through which
 * writers see which snapshots readers still use: once it is deleted (or
 * replaced), the next process to open the store makes a fresh one without
 * this mount's readers, and its writes may reuse the pages this mount's
 * snapshots read.  That file never comes back: unmount and mount again.
 */
#define STORE_CHECK_MS 1000


/* Remember which files the store is, right after opening it. */
static void store_remember(mfs_mount *m)
{
	char path[MFS_CONFIG_PATH_MAX + 16];
	struct stat st;
	snprintf(path, sizeof(path), "%s/data.mdb", m->cfg.store);
	if (stat(path, &st) == 0) {
		m->store_dev = st.st_dev;
		m->store_ino = st.st_ino;
	}
	snprintf(path, sizeof(path), "%s/lock.mdb", m->cfg.store);
	m->lock_known = stat(path, &st) == 0;
	if (m->lock_known) {
		m->lock_dev = st.st_dev;
		m->lock_ino = st.st_ino;
	}
	m->store_checked_ms = mfs_now_ms();
	m->store_gone = 0;
}

/* 0 while the store is there, else an errno value saying why it is not. */
static int store_gone(mfs_mount *m)
{
	uint64_t now = mfs_now_ms();
	uint64_t last = __atomic_load_n(&m->store_checked_ms, __ATOMIC_RELAXED);
	if (now - last < STORE_CHECK_MS ||
	    !__atomic_compare_exchange_n(&m->store_checked_ms, &last, now, 0,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return __atomic_load_n(&m->store_gone, __ATOMIC_RELAXED);
	char path[MFS_CONFIG_PATH_MAX + 16];
	struct stat st;
	snprintf(path, sizeof(path), "%s/data.mdb", m->cfg.store);
	int gone = 0, lock_gone = 0;
	if (stat(path, &st) != 0)
		gone = errno ? errno : EIO;
	else if (st.st_dev != m->store_dev || st.st_ino != m->store_ino)
		gone = ESTALE;
	if (!gone && m->lock_known) {
		snprintf(path, sizeof(path), "%s/lock.mdb", m->cfg.store);
		int lrc = stat(path, &st);
		if (lrc != 0 && errno == ENOENT)
			gone = lock_gone = ENOENT;
		else if (lrc == 0 && (st.st_dev != m->lock_dev || st.st_ino != m->lock_ino))
			gone = lock_gone = ESTALE;
		/* any other stat error (a store made unreadable) already shows
		 * on data.mdb */
	}
	int was = __atomic_exchange_n(&m->store_gone, gone, __ATOMIC_RELAXED);
	if (gone && !was && lock_gone)
		mfs_mount_log(
		    m, MFS_LOG_ERROR,
		    "store %s: its lock file lock.mdb was %s while mounted: a process "
		    "that opens the store now makes a fresh lock file, whose writers no "
		    "longer see this mount's readers and may reuse the pages its open "
		    "files read; lookups fail with ENOENT and reads with EIO from now "
		    "on: unmount, and mount again",
		    m->cfg.store,
		    lock_gone == ENOENT ? "deleted" : "replaced by another file");
	else if (gone && !was)
		mfs_mount_log(
		    m, MFS_LOG_ERROR,
		    "store %s is gone (%s): lookups fail with ENOENT and reads with "
		    "EIO; unmount, and mount again once the store is back",
		    m->cfg.store,
		    gone == ESTALE ? "data.mdb was replaced by another file"
				   : strerror(gone));
	else if (!gone && was)
		mfs_mount_log(m, MFS_LOG_WARN, "store %s is back: serving again",
			      m->cfg.store);
	return gone;
}

/* ---- attributes ---- */

static void attr_to_stat(const mfs_layout_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_size = (off_t)a->size;
	/* what the disk holds for it (a blob: its chunks' payloads), so du
	 * shows the stored bytes and du --apparent-size the size */
	st->st_blocks = (blkcnt_t)((a->disk_bytes + 511) / 512);
	st->st_blksize = MAX_REQUEST; /* cp and friends read 1 MiB at a time */
	st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = (time_t)a->mtime;
	/* owned by the mounting user, the user_id/group_id libfuse mounts with */
	st->st_uid = getuid();
	st->st_gid = getgid();
}

static double timeout_of(const mfs_layout_attr *a)
{
	return a->immutable ? LONG_TIMEOUT : SHORT_TIMEOUT;
}

/*
 * Names in the root (repo dirs) are kept 1 s (a path walk then costs no
 * request), and dropped by the watcher as soon as their repo is removed.
 */
static void fill_entry(const mfs_layout_attr *a, uint64_t parent,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = 1;
	attr_to_stat(a, &e->attr);
	e->attr_timeout = timeout_of(a);
	e->entry_timeout = parent == MFS_LAYOUT_ROOT_INO ? SHORT_TIMEOUT : timeout_of(a);
}

/*
 * A reference to the newest view of the store (give it back with
 * mfs_view_unref), begun anew once the layout has seen a newer generation:
 * blob entries made from that layout then find their blob in it.  NULL on
 * error (no memory, no LMDB reader slot left).
 */
static mfs_view *current_view(mfs_mount *m)
{
	uint64_t gen = mfs_layout_generation(m->layout);
	pthread_mutex_lock(&m->view_mu);
	if (!m->view || mfs_view_generation(m->view) < gen) {
		mfs_view *v;
		int rc = mfs_view_begin(m->reader, &v);
		if (rc == 0) {
			mfs_view_unref(m->view);
			m->view = v;
		} else {
			mfs_mount_log(m, MFS_LOG_WARN,
				      "cannot begin a read of store %s: %s", m->cfg.store,
				      mfs_strerror(rc));
		}
	}
	mfs_view *v = m->view;
	if (v)
		mfs_view_ref(v);
	pthread_mutex_unlock(&m->view_mu);
	return v;
}

/*
 * The kernel is about to be handed an entry for @p a: when it is a blob,
 * count it in m->blobs (its reads find their file there).
 * @return 1 (a blob, counted: mfs_blob_table_forget if the entry is not
 *         sent), 0 (not a blob), or a negative error
 */
static int hold_blob(mfs_mount *m, const mfs_layout_attr *a)
{
	if (!S_ISREG(a->mode))
		return 0;
	mfs_layout_file lf;
	int rc = mfs_layout_open(m->layout, a->ino, &lf);
	if (rc < 0 || !lf.is_blob)
		return rc < 0 ? rc : 0;
	mfs_view *v = current_view(m);
	if (!v)
		return MFS_E_DB;
	rc = mfs_blob_table_ref(m->blobs, a->ino, lf.repo, lf.etag, v);
	mfs_view_unref(v);
	return rc < 0 ? rc : 1;
}

/* ---- handlers ---- */

static void mfs_ll_init(void *ud, struct fuse_conn_info *conn)
{
	mfs_mount *m = ud;
	conn->max_readahead = MAX_REQUEST;
	conn->max_read = MAX_REQUEST; /* must match the max_read mount option */
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* files never change: no need to drop the page cache on mtime checks */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/* answer the first OPEN with ENOSYS: the kernel sends no more */
	m->no_open = !!(conn->capable & FUSE_CAP_NO_OPEN_SUPPORT);
	mfs_mount_log(
	    m, MFS_LOG_DEBUG, "init: proto %u.%u, max_readahead %u, max_write %u",
	    conn->proto_major, conn->proto_minor, conn->max_readahead, conn->max_write);
}

static void mfs_ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mfs_mount *m = mount_of(req);
	if (store_gone(m)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	mfs_layout_attr a;
	int rc = mfs_layout_lookup(m->layout, parent, name, &a);
	struct fuse_entry_param e;
	if (rc == MFS_E_NOTFOUND) {
		/* a cached "no such name", except at the root where repos come and go */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = parent == MFS_LAYOUT_ROOT_INO ? 0 : NEG_TIMEOUT;
		fuse_reply_entry(req, &e);
		return;
	}
	int held = rc < 0 ? rc : hold_blob(m, &a);
	if (held < 0) {
		fuse_reply_err(req, mfs_errno(held));
		return;
	}
	fill_entry(&a, parent, &e);
	if (fuse_reply_entry(req, &e) != 0 && held)
		mfs_blob_table_forget(m->blobs, a.ino, 1); /* the kernel never had it */
}

/* Inode numbers are path hashes: only blobs keep something per lookup. */
static void mfs_ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	mfs_blob_table_forget(mount_of(req)->blobs, ino, nlookup);
	fuse_reply_none(req);
}

static void mfs_ll_forget_multi(fuse_req_t req, size_t count,
				struct fuse_forget_data *forgets)
{
	mfs_mount *m = mount_of(req);
	for (size_t i = 0; i < count; i++)
		mfs_blob_table_forget(m->blobs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void mfs_ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mfs_mount *m = mount_of(req);
	mfs_layout_attr a;
	int rc = mfs_layout_getattr(m->layout, ino, &a);
	if (rc < 0) {
		fuse_reply_err(req, mfs_errno(rc));
		return;
	}
	struct stat st;
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, timeout_of(&a));
}

static void mfs_ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
	mfs_mount *m = mount_of(req);
	char buf[PATH_MAX];
	int rc = mfs_layout_readlink(m->layout, ino, buf, sizeof(buf));
	if (rc < 0)
		fuse_reply_err(req, mfs_errno(rc));
	else
		fuse_reply_readlink(req, buf);
}

static void mfs_ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mfs_mount *m = mount_of(req);
	if (store_gone(m)) {
		fuse_reply_err(req, EIO);
		return;
	}
	odir *od = calloc(1, sizeof(*od));
	if (!od) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int rc = mfs_layout_opendir(m->layout, ino, &od->dir);
	if (rc < 0) {
		free(od);
		fuse_reply_err(req, mfs_errno(rc));
		return;
	}
	handle_add(m, &od->h);
	fi->fh = (uint64_t)(uintptr_t)od;
	if (fuse_reply_open(req, fi) != 0)
		odir_free(m, od); /* interrupted: no releasedir comes */
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	mfs_mount *m = mount_of(req);
	mfs_layout_dir *d = ((odir *)(uintptr_t)fi->fh)->dir;
	char *buf = malloc(size ? size : 1);
	/* readdirplus: the blobs counted for this reply (hold_blob) */
	uint64_t *held = plus ? malloc((size / 64 + 1) * sizeof(*held)) : NULL;
	size_t n_held = 0;
	if (!buf || (plus && !held)) {
		free(buf);
		free(held);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t pos = 0, n = mfs_layout_dir_count(d);
	int rc = 0;
	for (size_t i = off < 0 ? 0 : (size_t)off; i < n; i++) {
		const char *name;
		mfs_layout_attr a;
		if (mfs_layout_dir_entry(d, i, &name, &a) < 0)
			break;
		size_t need;
		if (plus) {
			/* every entry but . and .. counts as a lookup (once it fits) */
			struct fuse_entry_param e;
			fill_entry(&a, ino, &e);
			need = fuse_add_direntry_plus(req, NULL, 0, name, &e, 0);
			if (need > size - pos)
				break;
			if (i >= 2 && (rc = hold_blob(m, &a)) < 0)
				break;
			if (rc == 1)
				held[n_held++] = a.ino;
			need = fuse_add_direntry_plus(req, buf + pos, size - pos, name,
						      &e, (off_t)(i + 1));
		} else {
			struct stat st;
			attr_to_stat(&a, &st);
			need = fuse_add_direntry(req, buf + pos, size - pos, name, &st,
						 (off_t)(i + 1));
		}
		if (need > size - pos)
			break;
		pos += need;
	}
	if (rc < 0 && pos == 0) {
		fuse_reply_err(req, mfs_errno(rc));
	} else if (fuse_reply_buf(req, buf, pos) != 0) {
		for (size_t k = 0; k < n_held; k++) /* the kernel never had them */
			mfs_blob_table_forget(m->blobs, held[k], 1);
	}
	free(buf);
	free(held);
}

static void mfs_ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void mfs_ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void mfs_ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	odir_free(mount_of(req), (odir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/*
 * After the reply to the first read of a blob (the reader goes on
 * meanwhile): a config.json starts the decode of the weights beside it
 * (prefetch_model.h).
 */
static void prefetch_model(mfs_mount *m, fuse_ino_t ino)
{
	enum { MAX_FILES = 64 };
	mfs_layout_file lf;
	if (mfs_layout_open(m->layout, ino, &lf) < 0 || !lf.is_config)
		return;
	mfs_layout_file *files = malloc(MAX_FILES * sizeof(*files));
	size_t n = 0, started = 0;
	int rc = files ? mfs_layout_model_files(m->layout, ino, files, MAX_FILES, &n)
		       : -ENOMEM;
	if (rc == 0)
		rc = mfs_prefetch_model_start(m->pmodel, files, n, &started);
	if (rc < 0)
		mfs_mount_log(m, MFS_LOG_WARN,
			      "prefetch of the weights beside %s blob %s (its config.json) "
			      "failed: %s; the files read as usual",
			      lf.repo, lf.etag, mfs_strerror(rc));
	else if (started)
		mfs_mount_log(m, MFS_LOG_DEBUG,
			      "prefetch: %zu of %zu weight files beside %s blob %s "
			      "(config.json)",
			      started, n, lf.repo, lf.etag);
	free(files);
}

/*
 * Only a kernel without FUSE_CAP_NO_OPEN_SUPPORT sends more than one OPEN:
 * reads find their file by inode either way.
 */
static void mfs_ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mfs_mount *m = mount_of(req);
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (store_gone(m)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (m->no_open) {
		/* "not implemented" means: open it yourself, now and from now on,
		 * keeping the page cache */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	mfs_layout_file lf;
	int rc = mfs_layout_open(m->layout, ino, &lf);
	if (rc < 0) {
		fuse_reply_err(req, mfs_errno(rc));
		return;
	}
	fi->keep_cache = lf.is_blob; /* a blob is named by its content; refs move */
	fi->noflush = 1;
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

#define READ_ERR_LINES 10

/*
 * Whether this read error gets a line: at most READ_ERR_LINES a second (an
 * object store that is down fails every read).  @p dropped: the lines left
 * out since the last one, to say so.
 */
static int read_error_line(mfs_mount *m, uint64_t *dropped)
{
	uint64_t sec = mfs_now_ms() / 1000;
	uint64_t was = __atomic_load_n(&m->err_sec, __ATOMIC_RELAXED);
	if (was != sec &&
	    __atomic_compare_exchange_n(&m->err_sec, &was, sec, 0, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED))
		__atomic_store_n(&m->err_lines, 0, __ATOMIC_RELAXED);
	if (__atomic_add_fetch(&m->err_lines, 1, __ATOMIC_RELAXED) > READ_ERR_LINES) {
		__atomic_add_fetch(&m->err_dropped, 1, __ATOMIC_RELAXED);
		return 0;
	}
	*dropped = __atomic_exchange_n(&m->err_dropped, 0, __ATOMIC_RELAXED);
	return 1;
}

static void log_read_error(mfs_mount *m, mfs_rfile *rf, uint64_t off, int rc)
{
	uint64_t dropped = 0;
	if (!read_error_line(m, &dropped))
		return;
	size_t i = mfs_extent_find(rf->extents, rf->n_extents, off);
	char hex[400] = "chunk ?";
	uint64_t eoff = 0;
	if (i < rf->n_extents) {
		mfs_rfile_explain(rf, i, hex, sizeof hex);
		eoff = rf->extents[i].off;
	}
	/* damage wants verify; anything else (an object store out of reach,
	 * memory) is worth retrying as it is */
	const char *advice = rc == MFS_E_CORRUPT
				 ? "run `modelfs verify` on this repo"
				 : "the store could not be read: the same read may work "
				   "again once the cause above is gone";
	char more[64] = "";
	if (dropped)
		snprintf(more, sizeof more, " (%llu read errors before it not logged)",
			 (unsigned long long)dropped);
	mfs_mount_log(m, MFS_LOG_ERROR,
		      "read error (EIO) in %s blob %s: %s at file offset %llu "
		      "(read at %llu): %s; a program that maps this file (safetensors, "
		      "from_pretrained) gets SIGBUS instead of the error; %s%s",
		      rf->repo, rf->etag, hex, (unsigned long long)eoff,
		      (unsigned long long)off, mfs_strerror(rc), advice, more);
}

static void count_read(mfs_mount *m, size_t bytes, uint64_t read_ns, uint64_t reply_ns)
{
	__atomic_add_fetch(&m->n_reads, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m->read_bytes, bytes, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m->read_ns, read_ns, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m->reply_ns, reply_ns, __ATOMIC_RELAXED);
}

/* A read of a file that is not a blob the kernel holds: refs, .no_exist. */
static void read_small(mfs_mount *m, fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off)
{
	mfs_layout_file lf;
	int rc = mfs_layout_open(m->layout, ino, &lf);
	if (rc == 0 && lf.is_blob) {
		/* every blob entry handed out is counted (hold_blob): not reached */
		mfs_mount_log(m, MFS_LOG_ERROR,
			      "read of %s blob %s (inode %llu) that the mount never "
			      "handed out: EIO",
			      lf.repo, lf.etag, (unsigned long long)ino);
		rc = MFS_E_CORRUPT;
	}
	if (rc < 0) {
		fuse_reply_err(req, mfs_errno(rc));
		return;
	}
	size_t o = off < 0 ? 0 : (size_t)off;
	size_t n = o >= lf.data_len ? 0 : lf.data_len - o;
	fuse_reply_buf(req, lf.data + (n ? o : 0), n < size ? n : size);
}

/* The mfs_rfile_read_segs reply: zero copy from the pinned decoded chunks. */
static int reply_segs(mfs_mount *m, fuse_req_t req, mfs_rfile *rf, size_t size,
		      off_t off, struct fuse_file_info *fi, thread_ctx *t)
{
	mfs_read_seg segs[MAX_SEGS];
	struct iovec iov[MAX_SEGS];
	size_t nseg = 0, got = 0;
	uint64_t t0 = mfs_now_ns();
	int rc = mfs_rfile_read_segs(m->reader, rf, (uint64_t)off, size, segs, MAX_SEGS,
				     &nseg, &got, t->ws);
	if (rc == MFS_E_NOSPACE)
		return rc;
	if (rc < 0) {
		mfs_rfile_release_segs(m->reader, segs, nseg, 0);
		log_read_error(m, rf, (uint64_t)off + got, rc);
		fuse_reply_err(req, mfs_errno(rc));
		return 0;
	}
	for (size_t i = 0; i < nseg; i++) {
		iov[i].iov_base = (void *)segs[i].data;
		iov[i].iov_len = segs[i].len;
	}
	/* a reply to a cached (not O_DIRECT) read lands in the page cache, which
	 * keeps it: prefetch need not decode it again, and its chunks may be
	 * recycled first (drop-behind) */
	int kept = !(fi->flags & O_DIRECT);
	if (kept)
		mfs_rfile_mark_served(rf, segs, nseg);
	uint64_t t1 = mfs_now_ns();
	int sent = fuse_reply_iov(req, iov, (int)nseg) == 0;
	uint64_t t2 = mfs_now_ns();
	mfs_rfile_release_segs(m->reader, segs, nseg, sent && kept);
	count_read(m, got, t1 - t0, t2 - t1);
	return 0;
}

static void mfs_ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	mfs_mount *m = mount_of(req);
	if (store_gone(m)) {
		fuse_reply_err(req, EIO);
		return;
	}
	mfs_blob_entry *e;
	mfs_rfile *rf;
	int opened;
	int rc = mfs_blob_table_get(m->blobs, ino, &e, &rf, &opened);
	if (rc == MFS_E_NOTFOUND) {
		read_small(m, req, ino, size, off);
		return;
	}
	if (rc < 0) {
		mfs_mount_log(m, MFS_LOG_WARN, "read of blob inode %llu failed: %s%s",
			      (unsigned long long)ino, mfs_strerror(rc),
			      rc == -ESTALE ? " (its repo was removed from the store before "
					      "the file was looked up: open it again)"
					    : "");
		fuse_reply_err(req, mfs_errno(rc));
		return;
	}
	thread_ctx *t = tctx(m);
	if (!t) {
		mfs_blob_table_put(m->blobs, e);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (reply_segs(m, req, rf, size, off, fi, t) == MFS_E_NOSPACE) {
		/* a range of many tiny chunks: copy them into one buffer */
		size_t got = 0;
		uint64_t t0 = mfs_now_ns();
		if (t->cap < size) {
			void *nb = realloc(t->buf, size);
			rc = nb ? 0 : -ENOMEM;
			if (nb) {
				t->buf = nb;
				t->cap = size;
			}
		}
		if (rc == 0 &&
		    (rc = mfs_rfile_read(m->reader, rf, (uint64_t)off, t->buf, size, &got,
					 t->ws)) < 0)
			log_read_error(m, rf, (uint64_t)off + got, rc);
		if (rc < 0) {
			fuse_reply_err(req, mfs_errno(rc));
		} else {
			uint64_t t1 = mfs_now_ns();
			fuse_reply_buf(req, t->buf, got);
			count_read(m, got, t1 - t0, mfs_now_ns() - t1);
		}
	}
	mfs_blob_table_put(m->blobs, e);
	if (opened && m->pmodel)
		prefetch_model(m, ino);
}

static void mfs_ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* nothing per open (see mfs_ll_open) */
}

static void mfs_ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
			 struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/*
 * df on the mount: used is the store on disk (data.mdb and the packs),
 * available is what the file system under the store has free for a user
 * (what the store can still grow into: f_bavail, so root's reserve is not
 * counted as free), and the size is their sum; not the files' logical
 * sizes, which would show the mount 100% full.  Where the store directory
 * cannot be measured, the size is the files' stored bytes and nothing is free.
 */
static void mfs_ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	mfs_mount *m = mount_of(req);
	mfs_layout_totals tot;
	mfs_layout_totals_get(m->layout, &tot);
	const uint64_t unit = 4096;
	mfs_space sp;
	uint64_t used, avail = 0;
	if (mfs_space_get(mfs_store_dir(m->store), &sp) == 0) {
		used = (sp.store_bytes + unit - 1) / unit;
		avail = sp.fs_avail_bytes / unit;
	} else {
		used = (tot.blob_stored + unit - 1) / unit;
	}
	struct statvfs sv;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = unit;
	sv.f_frsize = unit;
	sv.f_blocks = used + avail;
	sv.f_bfree = avail;
	sv.f_bavail = avail;
	sv.f_files = tot.nodes; /* every node served: dirs, links, files */
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

static void mfs_ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	fuse_reply_err(req, ENODATA); /* no extended attributes here */
}

static void mfs_ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, 0);
	else
		fuse_reply_buf(req, NULL, 0);
}

static void mfs_ll_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	mfs_mount *m = mount_of(req);
	mfs_layout_attr a;
	int rc = mfs_layout_getattr(m->layout, ino, &a);
	if (rc < 0)
		fuse_reply_err(req, mfs_errno(rc));
	else if (mask & W_OK)
		fuse_reply_err(req, EROFS);
	else if ((mask & X_OK) && !(a.mode & 0111))
		fuse_reply_err(req, EACCES);
	else
		fuse_reply_err(req, 0);
}

/* ---- everything that would write: EROFS ---- */

static void mfs_ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			   struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			   const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			  fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
			const char *newname)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
			 off_t off, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_create(fuse_req_t req, fuse_ino_t parent, const char *name,
			  mode_t mode, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			    const char *value, size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			     off_t length, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void mfs_ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
				   struct fuse_file_info *fi_in, fuse_ino_t ino_out,
				   off_t off_out, struct fuse_file_info *fi_out,
				   size_t len, int flags)
{
	fuse_reply_err(req, EROFS);
}

static const struct fuse_lowlevel_ops mfs_ll_ops = {
    .init = mfs_ll_init,
    .lookup = mfs_ll_lookup,
    .forget = mfs_ll_forget,
    .forget_multi = mfs_ll_forget_multi,
    .getattr = mfs_ll_getattr,
    .readlink = mfs_ll_readlink,
    .opendir = mfs_ll_opendir,
    .readdir = mfs_ll_readdir,
    .readdirplus = mfs_ll_readdirplus,
    .releasedir = mfs_ll_releasedir,
    .open = mfs_ll_open,
    .read = mfs_ll_read,
    .release = mfs_ll_release,
    /* no .flush: libfuse answers ENOSYS, and the kernel sends no more
     * FLUSH on close (a file opened without OPEN has no noflush flag) */
    .fsync = mfs_ll_fsync,
    .statfs = mfs_ll_statfs,
    .getxattr = mfs_ll_getxattr,
    .listxattr = mfs_ll_listxattr,
    .access = mfs_ll_access,
    .setattr = mfs_ll_setattr,
    .mknod = mfs_ll_mknod,
    .mkdir = mfs_ll_mkdir,
    .unlink = mfs_ll_unlink,
    .rmdir = mfs_ll_unlink,
    .symlink = mfs_ll_symlink,
    .rename = mfs_ll_rename,
    .link = mfs_ll_link,
    .write = mfs_ll_write,
    .create = mfs_ll_create,
    .setxattr = mfs_ll_setxattr,
    .removexattr = mfs_ll_removexattr,
    .fallocate = mfs_ll_fallocate,
    .copy_file_range = mfs_ll_copy_file_range,
};

/* ---- the watcher: what a store change means for the kernel's caches ---- */

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The names in the root (repo dirs), in the layout's order (sorted). */
static int list_root(mfs_mount *m, char ***out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	mfs_layout_dir *d;
	int rc = mfs_layout_opendir(m->layout, MFS_LAYOUT_ROOT_INO, &d);
	if (rc < 0)
		return rc;
	size_t cnt = mfs_layout_dir_count(d), n = 0;
	char **names = calloc(cnt ? cnt : 1, sizeof(*names));
	for (size_t i = 2; names && i < cnt && rc == 0; i++) { /* after . and .. */
		const char *name;
		mfs_layout_attr a;
		if (mfs_layout_dir_entry(d, i, &name, &a) == 0 &&
		    !(names[n++] = strdup(name)))
			rc = -ENOMEM;
	}
	mfs_layout_dir_close(m->layout, d);
	if (!names || rc < 0) {
		free_names(names, n);
		return -ENOMEM;
	}
	*out = names;
	*n_out = n;
	return 0;
}

/* Drop the kernel's page cache and attributes of every file under @p dir
 * (a repo's refs/, whose files say which commit a ref names). */
static void inval_files_under(mfs_mount *m, uint64_t dir, int depth)
{
	mfs_layout_dir *d;
	if (depth > 8 || mfs_layout_opendir(m->layout, dir, &d) < 0)
		return;
	size_t cnt = mfs_layout_dir_count(d);
	for (size_t i = 2; i < cnt; i++) {
		const char *name;
		mfs_layout_attr a;
		if (mfs_layout_dir_entry(d, i, &name, &a) < 0)
			continue;
		if (S_ISDIR(a.mode))
			inval_files_under(m, a.ino, depth + 1);
		else if (S_ISREG(a.mode)) /* -ENOENT: the kernel has no such inode */
			fuse_lowlevel_notify_inval_inode(m->se, a.ino, 0, 0);
	}
	mfs_layout_dir_close(m->layout, d);
}

/*
 * The store changed (a new generation): the kernel keeps files' pages
 * (no OPEN tells it otherwise) and the root's names for a second, so
 *   - every ref's pages go (a ref may name another commit now);
 *   - the names of removed repos go (their subtrees with them: the blob
 *     inodes no file holds open are forgotten, and their entries freed).
 */
static void watch_changed(mfs_mount *m)
{
	char **names;
	size_t n;
	if (list_root(m, &names, &n) < 0)
		return; /* no memory: next tick */
	for (size_t i = 0, j = 0; i < m->n_root_names; i++) {
		while (j < n && strcmp(names[j], m->root_names[i]) < 0)
			j++;
		if (j < n && !strcmp(names[j], m->root_names[i]))
			continue;
		const char *gone = m->root_names[i];
		int rc = fuse_lowlevel_notify_inval_entry(m->se, MFS_LAYOUT_ROOT_INO, gone,
							  strlen(gone));
		mfs_mount_log(m, MFS_LOG_DEBUG, "watch: %s removed (%s)", gone,
			      rc == 0 || rc == -ENOENT ? "dropped" : strerror(-rc));
	}
	free_names(m->root_names, m->n_root_names);
	m->root_names = names;
	m->n_root_names = n;
	for (size_t i = 0; i < n; i++) {
		mfs_layout_attr repo, refs;
		if (mfs_layout_lookup(m->layout, MFS_LAYOUT_ROOT_INO, names[i], &repo) == 0 &&
		    mfs_layout_lookup(m->layout, repo.ino, "refs", &refs) == 0)
			inval_files_under(m, refs.ino, 0);
	}
}

/*
 * Keep the views the blob entries hold within MAX_VIEWS
 * (mfs_blob_table_bound_views), and say what that cost.
 */
static void watch_bound_views(mfs_mount *m)
{
	mfs_blob_table_bound b;
	if (mfs_blob_table_bound_views(m->blobs, &b) < 0) {
		m->bound_over = 1; /* no memory: next tick */
		return;
	}
	m->bound_over = b.views > MAX_VIEWS;
	if (b.views_before == b.views)
		return;
	mfs_mount_log(m, b.spilled ? MFS_LOG_INFO : MFS_LOG_DEBUG,
		      "watch: removed files still open held %zu store views, more than "
		      "%d: %zu now (%zu files moved to a view kept, %zu copied to the "
		      "spill file in %s, %llu bytes)",
		      b.views_before, MAX_VIEWS, b.views, b.shared, b.spilled,
		      m->cfg.spill_dir, (unsigned long long)b.spilled_bytes);
	if (b.failed) {
		m->spill_failed += b.failed;
		mfs_mount_log(
		    m, MFS_LOG_WARN,
		    "watch: %zu removed files still open could not be copied to %s "
		    "(the first: %s blob %s: %s): each keeps its store view, one LMDB "
		    "reader slot of the 1024 every process of the store shares; give "
		    "spill_dir room, or close the files",
		    b.failed, m->cfg.spill_dir, b.failed_repo, b.failed_etag,
		    mfs_strerror(b.first_error));
	}
}

/*
 * An ioahead job (or run inline) at start, and again at each new store
 * generation (watch_tick: the index may have grown, new packs come): the
 * index brought into memory and the packs' read descriptors opened, so
 * that the first reads of a cold store wait for their payloads only, not
 * for lookups or opens queued behind them (warm.h says the same of code,
 * which mfs_mount_run brings in once).
 */
static void warm_store(void *ud, size_t first, uint64_t until)
{
	(void)first;
	(void)until;
	mfs_mount *m = ud;
	uint64_t bytes = 0;
	size_t n = 0;
	int rc = mfs_store_index_warm(m->store, INDEX_WARM_MAX, &bytes);
	if (rc == 0)
		rc = mfs_packs_preopen(m->store, &n);
	if (rc < 0)
		mfs_mount_log(m, MFS_LOG_WARN, "warming the store: %s (reads go on)",
			      mfs_strerror(rc));
	else
		mfs_mount_log(m, MFS_LOG_DEBUG,
			      "%llu bytes of index brought into memory, %zu pack files "
			      "opened",
			      (unsigned long long)bytes, n);
}

/*
 * One tick: reap the finished model prefetches; notice a new store
 * generation (watch_changed); close blob files unread for FILE_IDLE_MS (the
 * kernel may keep an inode for long); move the blob entries still in the
 * store to the newest view (mfs_blob_table_rebase), so older views end, and
 * keep those of removed blobs within MAX_VIEWS.  Nothing that reads the store
 * while it is gone (store_gone: its lock file may be another's by now).
 */
static void watch_tick(mfs_mount *m)
{
	if (m->pmodel)
		mfs_prefetch_model_reap(m->pmodel);
	if (store_gone(m)) {
		mfs_blob_table_close_idle(m->blobs, FILE_IDLE_MS);
		return;
	}
	mfs_layout_refresh(m->layout, 0, NULL); /* errors: the old tree stays */
	uint64_t gen = mfs_layout_generation(m->layout);
	if (gen != m->watch_gen) {
		m->watch_gen = gen;
		watch_changed(m);
		/* the index may have grown, and new packs come with it */
		if (m->io)
			mfs_ioahead_request(m->io, warm_store, m, 0, 0);
	}
	mfs_blob_table_close_idle(m->blobs, FILE_IDLE_MS);
	/* packs gc removed: their descriptors go, so the space comes back */
	mfs_store_packs_sweep(m->store);
	mfs_view *v = current_view(m);
	if (v) {
		size_t moved = mfs_blob_table_rebase(m->blobs, v);
		if (moved)
			mfs_mount_log(m, MFS_LOG_DEBUG,
				      "watch: %zu blob files moved to store generation %llu",
				      moved, (unsigned long long)mfs_view_generation(v));
		/* entries gain views only with a new generation (new entries take
		 * the newest view): no pass over the table on a quiet tick */
		uint64_t g = mfs_view_generation(v);
		if (g != m->bound_gen || m->bound_over) {
			watch_bound_views(m);
			m->bound_gen = g;
		}
		mfs_view_unref(v);
	}
}

static void *watch_main(void *p)
{
	mfs_mount *m = p;
	pthread_mutex_lock(&m->watch_mu);
	while (!m->watch_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += WATCH_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&m->watch_cv, &m->watch_mu, &ts);
		if (m->watch_stop)
			break;
		pthread_mutex_unlock(&m->watch_mu);
		watch_tick(m);
		pthread_mutex_lock(&m->watch_mu);
	}
	pthread_mutex_unlock(&m->watch_mu);
	return NULL;
}

/* Start the watcher; without it (no thread), the mount still serves, with
 * removed repos and moved refs taking up to a second to show. */
static void watch_start(mfs_mount *m)
{
	m->watch_gen = mfs_layout_generation(m->layout);
	if (list_root(m, &m->root_names, &m->n_root_names) < 0 ||
	    pthread_create(&m->watcher, NULL, watch_main, m) != 0) {
		mfs_mount_log(m, MFS_LOG_WARN,
			      "cannot start the watcher thread: removed repos show for "
			      "up to a second, and a ref that moves may read stale");
		return;
	}
	m->watcher_ok = 1;
}

static void watch_stop(mfs_mount *m)
{
	if (m->watcher_ok) {
		pthread_mutex_lock(&m->watch_mu);
		m->watch_stop = 1;
		pthread_cond_signal(&m->watch_cv);
		pthread_mutex_unlock(&m->watch_mu);
		pthread_join(m->watcher, NULL);
		m->watcher_ok = 0;
	}
	free_names(m->root_names, m->n_root_names);
	m->root_names = NULL;
	m->n_root_names = 0;
}

/* ---- the mount's life ---- */

/* A repo whose records are damaged is left out of the tree: say so, once. */
static void layout_left_out(void *ud, const char *repo, const char *line)
{
	(void)repo;
	mfs_mount_log(ud, MFS_LOG_WARN, "%s", line);
}

static int open_store(mfs_mount *m, mfs_errmsg *err)
{
	int rc = m->cfg.store_open
		     ? m->cfg.store_open(m->cfg.store_ud, m->cfg.store, &m->store, err)
		     : mfs_store_open(m->cfg.store, MFS_STORE_RDONLY | MFS_STORE_NORDAHEAD,
				      &m->store, err);
	if (rc < 0)
		return mfs_err_prefix(err, rc, "store %s", m->cfg.store);
	store_remember(m);
	rc = mfs_layout_create(m->store, REFRESH_MS, &m->layout, err);
	if (rc < 0)
		return rc;
	/* the check before mounting tells the terminal only when a daemon logs
	 * elsewhere after: in the foreground the serving mount says it */
	if (m->mounted || !m->cfg.foreground)
		mfs_layout_set_left_out_fn(m->layout, layout_left_out, m);
	return 0;
}

static void close_store(mfs_mount *m)
{
	if (m->reader) /* a file closed from here on has no read-ahead to drain */
		mfs_reader_set_ioahead(m->reader, NULL);
	/* so the read-ahead stops first: its running job (which reads an open
	 * file) finishes, the waiting ones are dropped, before files close */
	mfs_ioahead_free(m->io);
	m->io = NULL;
	mfs_prefetch_model_free(m->pmodel); /* closes its files: before the reader */
	m->pmodel = NULL;
	mfs_blob_table_free(m->blobs); /* the same */
	m->blobs = NULL;
	mfs_view_unref(m->view);
	m->view = NULL;
	mfs_reader_free(m->reader); /* drains its prefetch jobs first */
	m->reader = NULL;
	mfs_cache_free(m->cache); /* its workers were the GPU's last users */
	m->cache = NULL;
	mfs_gpu_backend_close(m->gpu);
	m->gpu = NULL;
	mfs_layout_free(m->layout);
	m->layout = NULL;
	if (m->cfg.store_close && m->store)
		m->cfg.store_close(m->cfg.store_ud, m->store);
	else
		mfs_store_close(m->store);
	m->store = NULL;
}

/* A mount point field of /proc/self/mountinfo, its octal escapes undone. */
static void unescape_mountinfo(char *s)
{
	char *w = s;
	for (char *r = s; *r; w++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w = *r++;
		}
	}
	*w = 0;
}

/*
 * Whether @p path is the mount point of a FUSE file system now, read from
 * /proc/self/mountinfo (never by a stat of it: a hung daemon would hang
 * that).  @p what gets "fuse.<subtype> <source>" of the topmost one.
 * @return 1, 0, or -errno when mountinfo cannot be read
 */
static int fuse_mounted_at(const char *path, char *what, size_t cap)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t len = 0;
	int found = 0;
	while (getline(&line, &len, f) > 0) {
		/* "36 35 0:52 / /mnt/x rw,nosuid - fuse.modelfs modelfs ro,..." */
		char *sep = strstr(line, " - ");
		char *fields[5];
		char *save = NULL, *p = line;
		int n = 0;
		if (!sep)
			continue;
		*sep = 0;
		while (n < 5 && (fields[n] = strtok_r(p, " ", &save)))
			n++, p = NULL;
		if (n < 5)
			continue;
		unescape_mountinfo(fields[4]);
		if (strcmp(fields[4], path) != 0)
			continue;
		char type[64] = "", source[256] = "";
		if (sscanf(sep + 3, "%63s %255s", type, source) < 1)
			continue;
		/* the last one listed is the top of the stack */
		found = !strcmp(type, "fuse") || !strncmp(type, "fuse.", 5) ||
			!strcmp(type, "fuseblk");
		snprintf(what, cap, "%s %s", type, source);
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * Resolve the mount point into m->cfg.mountpoint and refuse a FUSE mount
 * there.  The directory above is resolved first and the last name checked
 * in mountinfo before the mount point itself is looked at, so a mount point
 * served by a hung daemon is refused rather than waited on.
 */
static int mountpoint_check(mfs_mount *m, mfs_errmsg *err)
{
	char *given = m->cfg.mountpoint, real[PATH_MAX], what[320] = "";
	char cand[PATH_MAX + 256];
	const char *slash = strrchr(given, '/');
	const char *base = slash ? slash + 1 : given;
	if (*base && strcmp(base, ".") != 0 && strcmp(base, "..") != 0) {
		char parent[PATH_MAX];
		if (!slash)
			snprintf(parent, sizeof(parent), ".");
		else if (slash == given)
			snprintf(parent, sizeof(parent), "/");
		else
			snprintf(parent, sizeof(parent), "%.*s", (int)(slash - given), given);
		char rp[PATH_MAX];
		if (realpath(parent, rp)) {
			snprintf(cand, sizeof(cand), "%s/%s", strcmp(rp, "/") ? rp : "", base);
			if (fuse_mounted_at(cand, what, sizeof(what)) == 1)
				goto stacked;
		}
	}
	if (!realpath(given, real))
		return mfs_err(err, -errno, "mount point %s: %s", given, strerror(errno));
	snprintf(m->cfg.mountpoint, sizeof(m->cfg.mountpoint), "%s", real);
	snprintf(cand, sizeof(cand), "%s", real);
	if (fuse_mounted_at(m->cfg.mountpoint, what, sizeof(what)) == 1)
		goto stacked;
	struct stat st;
	if (stat(m->cfg.mountpoint, &st) != 0 || !S_ISDIR(st.st_mode))
		return mfs_err(err, -ENOTDIR, "mount point %s is not a directory",
			       m->cfg.mountpoint);
	/* mounting over a folder with files (~/.cache/huggingface/hub) is
	 * allowed: say what it hides */
	DIR *d = opendir(m->cfg.mountpoint);
	size_t n = 0;
	if (d) {
		for (struct dirent *de; (de = readdir(d));)
			n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
		closedir(d);
	}
	if (n)
		mfs_mount_log(m, MFS_LOG_WARN,
			      "the mount hides %zu entr%s of %s while mounted (they are "
			      "there again once unmounted)",
			      n, n == 1 ? "y" : "ies", m->cfg.mountpoint);
	return 0;
stacked:
	return mfs_err(err, -EBUSY,
		       "mount point %s is already a FUSE mount (%s): a second mount would "
		       "stack on it and hide it; unmount it first (fusermount3 -u %s) or "
		       "choose another directory",
		       cand, what, cand);
}

/*
 * The spill directory (mfs_blob_table_set_bound): the one configured, which
 * must work, or the first of $TMPDIR, /var/tmp, /tmp that does.  Empty when
 * none does (logged: copies then fail, and removed files still open keep
 * their views).
 */
static int spill_dir_choose(mfs_mount *m, mfs_errmsg *err)
{
	char real[PATH_MAX];
	int rc;
	if (m->cfg.spill_dir[0]) {
		if (!realpath(m->cfg.spill_dir, real))
			rc = -errno;
		else if ((rc = mfs_spill_check_dir(real)) == 0)
			snprintf(m->cfg.spill_dir, sizeof(m->cfg.spill_dir), "%s", real);
		if (rc < 0)
			return mfs_err(err, rc,
				       "spill_dir %s: cannot make a temporary file there "
				       "(%s); give a writable directory (--spill-dir, or "
				       "spill_dir = in mount.conf)",
				       m->cfg.spill_dir, strerror(-rc));
		return 0;
	}
	const char *tmp = getenv("TMPDIR");
	const char *cands[] = {tmp && tmp[0] == '/' ? tmp : NULL, "/var/tmp", "/tmp"};
	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
		if (cands[i] && realpath(cands[i], real) && mfs_spill_check_dir(real) == 0) {
			snprintf(m->cfg.spill_dir, sizeof(m->cfg.spill_dir), "%s", real);
			return 0;
		}
	mfs_mount_log(m, MFS_LOG_WARN,
		      "no spill directory: none of $TMPDIR, /var/tmp, /tmp takes a "
		      "temporary file; removed files held open over more than %d "
		      "removals each keep a store view (a reader slot); set spill_dir",
		      MAX_VIEWS);
	return 0;
}

int mfs_mount_create(const mfs_mount_config *cfg, int debug, mfs_mount **out,
		     mfs_errmsg *err)
{
	*out = NULL;
	mfs_mount *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	m->debug = debug;
	m->log_fd = -1;
	pthread_mutex_init(&m->handles_mu, NULL);
	pthread_mutex_init(&m->view_mu, NULL);
	pthread_mutex_init(&m->watch_mu, NULL);
	pthread_cond_init(&m->watch_cv, NULL);
	m->handles_ok = 1;
	if (debug) {
		m->cfg.foreground = 1;
		m->cfg.log_level = MFS_LOG_DEBUG;
	}
	int rc = 0;
	char real[PATH_MAX];
	if (m->cfg.log_file[0]) {
		/* opened now: a daemon's working directory is / */
		m->log_fd = open(m->cfg.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
				 0640);
		if (m->log_fd < 0) {
			rc = mfs_err(err, -errno, "log file %s: %s (--log / log_file)",
				     m->cfg.log_file, strerror(errno));
			goto fail;
		}
	}
	if (!m->cfg.store[0]) {
		rc = mfs_err(err, MFS_E_INVAL,
			     "no store given (--store, or store = in mount.conf)");
		goto fail;
	}
	if (!realpath(m->cfg.store, real)) {
		rc = mfs_err(err, -errno, "store %s: %s", m->cfg.store, strerror(errno));
		goto fail;
	}
	snprintf(m->cfg.store, sizeof(m->cfg.store), "%s", real);
	if (!m->cfg.mountpoint[0]) {
		rc = mfs_err(err, MFS_E_INVAL, "no mount point given");
		goto fail;
	}
	if ((rc = mountpoint_check(m, err)) < 0 || (rc = spill_dir_choose(m, err)) < 0)
		goto fail;

	/* check the store now, so errors reach the terminal; reopened after fork */
	if ((rc = open_store(m, err)) < 0)
		goto fail;
	close_store(m);

	if ((rc = pthread_key_create(&m->tkey, thread_ctx_free)) != 0) {
		rc = mfs_err(err, -rc, "pthread_key_create failed");
		goto fail;
	}
	m->tkey_ok = 1;

	char opts[256];
	snprintf(opts, sizeof(opts),
		 "ro,default_permissions,fsname=modelfs,subtype=modelfs,max_read=%u%s",
		 MAX_REQUEST, m->cfg.allow_other ? ",allow_other" : "");
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	if (fuse_opt_add_arg(&args, "modelfs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, opts) || (debug && fuse_opt_add_arg(&args, "-d"))) {
		fuse_opt_free_args(&args);
		rc = -ENOMEM;
		goto fail;
	}
	m->se = fuse_session_new(&args, &mfs_ll_ops, sizeof(mfs_ll_ops), m);
	fuse_opt_free_args(&args);
	if (!m->se) {
		rc = mfs_err(err, -EINVAL, "cannot create the FUSE session (see above)");
		goto fail;
	}
	if (fuse_set_signal_handlers(m->se) != 0) {
		rc = mfs_err(err, -EINVAL, "cannot install signal handlers");
		goto fail;
	}
	m->sig_ok = 1;
	if (fuse_session_mount(m->se, m->cfg.mountpoint) != 0) {
		rc = mfs_err(
		    err, -EIO,
		    "cannot mount on %s (see the message above; is /dev/fuse there, "
		    "fusermount3 installed, the directory not already a mount?)",
		    m->cfg.mountpoint);
		goto fail;
	}
	m->mounted = 1;
	*out = m;
	return 0;
fail:
	mfs_mount_destroy(m);
	return rc;
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/* The GPU backend's line when it turns itself off (batch.h). */
static void gpu_log(void *ud, const char *line)
{
	mfs_mount_log(ud, MFS_LOG_WARN, "%s", line);
}

/*
 * gpu = auto|on: open the GPU backend and give it to the reader when the
 * build has one, a device is usable and prefetch runs (the GPU decodes the
 * batches prefetch queues).  @p what gets the start line's words for it,
 * saying why the CPU decodes when it does; `on` without a device mounts too.
 */
static void gpu_select(mfs_mount *m, unsigned workers, char *what, size_t cap)
{
	const char *mode = mfs_config_gpu_name(m->cfg.gpu);
	char why[256];
	if (m->cfg.gpu == MFS_GPU_OFF) {
		snprintf(what, cap, "gpu off: CPU decode");
		return;
	}
	if (!workers) {
		snprintf(what, cap,
			 "gpu %s: CPU decode: prefetch is off (the GPU decodes the chunks "
			 "prefetch queues; set prefetch above 0)",
			 mode);
		return;
	}
	if (mfs_gpu_backend_open(m->cfg.gpu_memory, gpu_log, m, &m->gpu, why, sizeof(why)) <
	    0) {
		snprintf(what, cap, "gpu %s: CPU decode: %s", mode, why);
		return;
	}
	mfs_reader_set_gpu(m->reader, m->gpu);
	snprintf(what, cap,
		 "gpu %s: rans chunks decoded on %s (up to %llu MiB of device memory), "
		 "other codecs on the CPU",
		 mode, mfs_gpu_backend_name(m->gpu),
		 (unsigned long long)(mfs_gpu_backend_budget(m->gpu) >> 20));
}

int mfs_mount_run(mfs_mount *m)
{
	if (!m->cfg.foreground) {
		if (m->log_fd < 0)
			openlog("modelfs", LOG_PID, LOG_DAEMON);
		m->daemonized = 1;
	}
	fuse_daemonize(m->cfg.foreground);

	mfs_errmsg err = {0};
	int rc = open_store(m, &err);
	unsigned workers = m->cfg.prefetch ? online_cpus() : 0;
	if (rc == 0)
		rc = mfs_cache_create(m->cfg.cache_bytes, workers, &m->cache);
	if (rc == 0)
		rc = mfs_reader_create(m->store, m->cache, &m->reader);
	if (rc == 0)
		rc = mfs_blob_table_create(m->reader, &m->blobs);
	if (rc == 0) /* without a spill directory (""), copies fail, logged */
		rc = mfs_blob_table_set_bound(m->blobs, MAX_VIEWS, m->cfg.spill_dir);
	if (rc == 0 && workers)
		rc = mfs_ioahead_create(&m->io);
	if (rc < 0) {
		mfs_mount_log(m, MFS_LOG_ERROR, "%s",
			      err.msg[0] ? err.msg : mfs_strerror(rc));
		close_store(m);
		return rc;
	}
	mfs_reader_set_prefetch(m->reader, m->cfg.prefetch);
	mfs_reader_set_ioahead(m->reader, m->io);
	/* what a read runs, once: a few MiB, read before serving (warm.h) */
	const void *fuse_code[] = {(const void *)fuse_reply_iov};
	size_t code = 0;
	mfs_warm_decoders(fuse_code, 1, &code); /* a hint: a failure costs only time */
	mfs_mount_log(m, MFS_LOG_DEBUG, "%zu bytes of code brought into memory", code);
	/* the index and the packs off the serving path (warm_store) */
	if (!m->io || mfs_ioahead_request(m->io, warm_store, m, 0, 0) < 0)
		warm_store(m, 0, 0);
	char gpu_what[512];
	gpu_select(m, workers, gpu_what, sizeof(gpu_what));
	uint64_t whole = 0;
	if (m->cfg.prefetch) {
		whole = m->cfg.cache_bytes / WHOLE_FILE_SHARE;
		whole = m->cfg.prefetch_file < whole ? m->cfg.prefetch_file : whole;
		mfs_reader_set_whole_file(m->reader, whole);
		if (m->cfg.prefetch_model && whole)
			rc = mfs_prefetch_model_create(m->reader, whole, &m->pmodel);
	}
	if (rc < 0) {
		mfs_mount_log(m, MFS_LOG_ERROR, "%s", mfs_strerror(rc));
		close_store(m);
		return rc;
	}
	/* the memory a streaming reader cycles through: the prefetch window, a
	 * chunk per FUSE thread and per worker, and the kernel's request */
	size_t warm = ((size_t)m->cfg.prefetch + m->cfg.threads + workers + 2) << 20;
	mfs_heap_prewarm(warm < m->cfg.cache_bytes ? warm : (size_t)m->cfg.cache_bytes);
	mfs_layout_totals tot;
	mfs_layout_totals_get(m->layout, &tot);
	mfs_mount_log(
	    m, MFS_LOG_INFO,
	    "serving %s at %s: %llu repos; cache %llu MiB, %u threads, prefetch %u "
	    "chunks on %u workers, files up to %llu MiB decoded whole once read out of "
	    "order%s; %s",
	    m->cfg.store, m->cfg.mountpoint, (unsigned long long)tot.repos,
	    (unsigned long long)(m->cfg.cache_bytes >> 20), m->cfg.threads,
	    m->cfg.prefetch, workers, (unsigned long long)(whole >> 20),
	    m->pmodel ? " or when their config.json is first read" : "", gpu_what);

	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	if (!lc) {
		close_store(m);
		return -ENOMEM;
	}
	fuse_loop_cfg_set_max_threads(lc, m->cfg.threads);
	fuse_loop_cfg_set_idle_threads(lc, m->cfg.threads);
	fuse_loop_cfg_set_clone_fd(lc, 0);
	watch_start(m);
	rc = fuse_session_loop_mt(m->se, lc);
	watch_stop(m);
	fuse_loop_cfg_destroy(lc);

	mfs_cache_stats st;
	mfs_cache_stats_get(m->cache, &st);
	mfs_mount_log(
	    m, MFS_LOG_INFO,
	    "stopping: cache hits %llu, misses %llu, waits %llu, decodes %llu (prefetch %llu), "
	    "evictions %llu (drop-behind %llu), peak %llu MiB, fill errors %llu",
	    (unsigned long long)st.hits, (unsigned long long)st.misses,
	    (unsigned long long)st.waits, (unsigned long long)st.fills,
	    (unsigned long long)st.prefetch_fills,
	    (unsigned long long)st.evictions, (unsigned long long)st.drop_behind,
	    (unsigned long long)(st.bytes_peak >> 20),
	    (unsigned long long)st.fill_errors);
	mfs_mount_log(m, MFS_LOG_INFO,
		      "reads: %llu requests, %llu MiB, %.1f ms reading (decode + copy), "
		      "%.1f ms replying",
		      (unsigned long long)m->n_reads,
		      (unsigned long long)(m->read_bytes >> 20), m->read_ns / 1e6,
		      m->reply_ns / 1e6);
	mfs_blob_table_stats bs;
	mfs_blob_table_stats_get(m->blobs, &bs);
	mfs_mount_log(m, MFS_LOG_INFO,
		      "blobs the kernel still holds: %zu (%zu with a file open, %zu on an "
		      "older view of the store, %zu read from the spill file); %zu store "
		      "views; spill file peak %llu bytes, %zu copies failed",
		      bs.entries, bs.files, bs.behind, bs.spilled, bs.views,
		      (unsigned long long)bs.spill_peak, m->spill_failed);
	if (m->gpu) {
		mfs_gpu_backend_stats gs;
		mfs_gpu_backend_stats_get(m->gpu, &gs);
		mfs_mount_log(m, MFS_LOG_INFO,
			      "gpu: %llu chunks (%llu MiB) decoded on %s in %llu device batches, "
			      "%llu left to the CPU (%llu of them found damaged on the device)%s",
			      (unsigned long long)gs.chunks,
			      (unsigned long long)(gs.bytes >> 20), mfs_gpu_backend_name(m->gpu),
			      (unsigned long long)gs.batches,
			      (unsigned long long)gs.left_to_cpu,
			      (unsigned long long)gs.corrupt,
			      mfs_gpu_backend_usable(m->gpu) ? "" : "; turned off by a failure");
	}
	if (m->pmodel) {
		mfs_prefetch_model_stats ps;
		mfs_prefetch_model_stats_get(m->pmodel, &ps);
		mfs_mount_log(m, MFS_LOG_INFO,
			      "prefetch_model: %llu weight files (%llu MiB) decoded on "
			      "config.json reads, %llu over the budget skipped",
			      (unsigned long long)ps.files,
			      (unsigned long long)(ps.bytes >> 20),
			      (unsigned long long)ps.skipped);
	}
	return rc < 0 ? -EIO : 0;
}

void mfs_mount_destroy(mfs_mount *m)
{
	if (!m)
		return;
	if (m->se) {
		if (m->mounted)
			fuse_session_unmount(m->se);
		if (m->sig_ok)
			fuse_remove_signal_handlers(m->se);
		fuse_session_destroy(m->se);
	}
	/* no request runs any more: free what the kernel left open */
	while (m->handles)
		odir_free(m, (odir *)m->handles);
	close_store(m);
	if (m->handles_ok) {
		pthread_mutex_destroy(&m->handles_mu);
		pthread_mutex_destroy(&m->view_mu);
		pthread_mutex_destroy(&m->watch_mu);
		pthread_cond_destroy(&m->watch_cv);
	}
	if (m->tkey_ok)
		pthread_key_delete(m->tkey);
	if (m->daemonized && m->log_fd < 0)
		closelog();
	if (m->log_fd >= 0)
		close(m->log_fd);
	free(m);
}
