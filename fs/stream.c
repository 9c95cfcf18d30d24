#include "stream.h"

#include <errno.h>
#include <stdlib.h>

#include "pool.h"

/*
 * A slot decodes one extent at a time on the pool; its own group says when
 * that decode has finished (mfs_pool_wait), after which the slot is the
 * consumer's again and may be handed the extent n_slots further on.
 */
typedef struct slot {
	mfs_pool_task task;
	mfs_pool_group group;
	mfs_rfile *f;
	size_t idx;             /* extent index */
	uint8_t *buf;
	size_t cap;
	int rc;
} slot;

static void slot_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	slot *sl = t->arg;
	const mfs_extent *e = &sl->f->extents[sl->idx];
	int rc = 0;
	if (sl->cap < e->len) {
		free(sl->buf);
		sl->buf = malloc(e->len);
		sl->cap = sl->buf ? e->len : 0;
		if (!sl->buf)
			rc = -ENOMEM;
	}
	/* from the file's own view: a file opened before its repo was removed
	 * and garbage-collected streams the bytes it opened */
	if (rc == 0)
		rc = mfs_rfile_decode_extent(sl->f, sl->idx, sl->buf, ws);
	sl->rc = rc;
}

static int slot_start(mfs_pool *p, slot *sl, size_t idx)
{
	sl->idx = idx;
	sl->rc = 0;
	sl->task = (mfs_pool_task){.run = slot_run, .arg = sl, .group = &sl->group};
	return mfs_pool_submit(p, &sl->task);
}

int mfs_rfile_stream(mfs_reader *r, mfs_rfile *f, int threads, mfs_stream_fn fn, void *ud,
		     uint64_t *bad_off)
{
	(void)r;
	if (threads < 1)
		threads = 1;
	if (threads > MFS_POOL_MAX_THREADS)
		threads = MFS_POOL_MAX_THREADS;
	/* workers run at most n_slots extents ahead of the consumer */
	size_t n_slots = 2 * (size_t)threads + 2;
	slot *slots = calloc(n_slots, sizeof *slots);
	if (!slots)
		return -ENOMEM;
	mfs_pool *p;
	int ret = mfs_pool_create((unsigned)threads, &p);
	if (ret < 0) {
		free(slots);
		return ret;
	}
	for (size_t i = 0; i < n_slots; i++)
		slots[i] = (slot){.group = MFS_POOL_GROUP_INIT, .f = f};
	for (size_t i = 0; ret == 0 && i < n_slots && i < f->n_extents; i++)
		ret = slot_start(p, &slots[i], i);
	for (size_t idx = 0; ret == 0 && idx < f->n_extents; idx++) {
		slot *sl = &slots[idx % n_slots];
		mfs_pool_wait(p, &sl->group);
		const mfs_extent *e = &f->extents[idx];
		if (sl->rc < 0) {
			ret = sl->rc;
			if (bad_off)
				*bad_off = e->off;
		} else {
			ret = fn(ud, e->off, sl->buf, e->len);
		}
		if (ret == 0 && idx + n_slots < f->n_extents)
			ret = slot_start(p, sl, idx + n_slots);
	}
	/* what is still queued after an error or a stop is dropped */
	for (size_t i = 0; i < n_slots; i++)
		mfs_pool_drain(p, &slots[i].group);
	mfs_pool_free(p);
	for (size_t i = 0; i < n_slots; i++)
		free(slots[i].buf);
	free(slots);
	return ret;
}
