#include "stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

typedef struct slot {
	size_t idx;             /* extent index */
	uint8_t *buf;
	size_t cap;
	int rc;
	int state;              /* 0 free, 1 claimed, 2 decoded */
} slot;

typedef struct stream {
	mfs_reader *r;
	mfs_rfile *f;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	slot *slots;
	size_t n_slots;
	size_t next_claim;      /* next extent index a worker takes */
	size_t next_emit;       /* next extent index the consumer needs */
	int stop;
} stream;

static void *stream_worker(void *arg)
{
	stream *s = arg;
	mfs_codec_ws *ws = NULL;
	int ws_rc = mfs_codec_ws_create(&ws);
	pthread_mutex_lock(&s->mu);
	for (;;) {
		/* a worker may run at most n_slots extents ahead of the consumer */
		while (!s->stop && s->next_claim < s->f->n_extents &&
		       s->next_claim >= s->next_emit + s->n_slots)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop || s->next_claim >= s->f->n_extents)
			break;
		size_t idx = s->next_claim++;
		slot *sl = &s->slots[idx % s->n_slots];
		sl->idx = idx;
		sl->state = 1;
		pthread_mutex_unlock(&s->mu);
		const mfs_extent *e = &s->f->extents[idx];
		int rc = ws_rc;
		if (rc == 0 && sl->cap < e->len) {
			free(sl->buf);
			sl->buf = malloc(e->len);
			sl->cap = sl->buf ? e->len : 0;
			if (!sl->buf)
				rc = -ENOMEM;
		}
		/* from the file's own view: a file opened before its repo was
		 * removed and garbage-collected streams the bytes it opened */
		if (rc == 0)
			rc = mfs_rfile_decode_extent(s->f, idx, sl->buf, ws);
		pthread_mutex_lock(&s->mu);
		sl->rc = rc;
		sl->state = 2;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	mfs_codec_ws_free(ws);
	return NULL;
}

int mfs_rfile_stream(mfs_reader *r, mfs_rfile *f, int threads, mfs_stream_fn fn, void *ud,
		     uint64_t *bad_off)
{
	if (threads < 1)
		threads = 1;
	stream s = {.r = r, .f = f, .n_slots = 2 * (size_t)threads + 2};
	s.slots = calloc(s.n_slots, sizeof *s.slots);
	pthread_t *th = calloc((size_t)threads, sizeof *th);
	if (!s.slots || !th) {
		free(s.slots);
		free(th);
		return -ENOMEM;
	}
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	int started = 0, ret = 0;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, stream_worker, &s) == 0)
			started++;
	if (!started)
		ret = -EAGAIN;
	for (size_t idx = 0; ret == 0 && idx < f->n_extents; idx++) {
		slot *sl = &s.slots[idx % s.n_slots];
		pthread_mutex_lock(&s.mu);
		while (!(sl->state == 2 && sl->idx == idx))
			pthread_cond_wait(&s.cv, &s.mu);
		pthread_mutex_unlock(&s.mu);
		const mfs_extent *e = &f->extents[idx];
		if (sl->rc < 0) {
			ret = sl->rc;
			if (bad_off)
				*bad_off = e->off;
		} else {
			ret = fn(ud, e->off, sl->buf, e->len);
		}
		pthread_mutex_lock(&s.mu);
		sl->state = 0;
		s.next_emit = idx + 1;
		pthread_cond_broadcast(&s.cv);
		pthread_mutex_unlock(&s.mu);
	}
	pthread_mutex_lock(&s.mu);
	s.stop = 1;
	pthread_cond_broadcast(&s.cv);
	pthread_mutex_unlock(&s.mu);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < s.n_slots; i++)
		free(s.slots[i].buf);
	free(s.slots);
	free(th);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	return ret;
}
