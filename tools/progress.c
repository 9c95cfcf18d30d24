#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "units.h"

void mfs_progress_init(mfs_progress *p, const char *label, uint64_t total, int quiet)
{
	p->label = label;
	p->total = total;
	p->done = 0;
	p->start = mfs_now_seconds();
	p->last_draw = 0;
	p->enabled = !quiet && isatty(2);
}

void mfs_progress_add(mfs_progress *p, uint64_t n)
{
	p->done += n;
	if (!p->enabled)
		return;
	double now = mfs_now_seconds();
	if (now - p->last_draw < 0.1 && p->done < p->total)
		return;
	p->last_draw = now;
	double frac = p->total ? (double)p->done / (double)p->total : 1.0;
	if (frac > 1)
		frac = 1;
	int width = 30, fill = (int)(frac * width);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = '\0';
	double el = now - p->start;
	double mbps = el > 0 ? (double)p->done / el / 1e6 : 0;
	char a[32], b[32];
	fprintf(stderr, "\r%s [%s] %3.0f%% %s / %s  %.0f MB/s ", p->label, bar, frac * 100,
		mfs_size_format(p->done, a, sizeof a), mfs_size_format(p->total, b, sizeof b), mbps);
	fflush(stderr);
}

void mfs_progress_end(mfs_progress *p)
{
	if (p->enabled) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
}

void mfs_progress_feed_report(void *ud, uint64_t done, uint64_t total)
{
	mfs_progress_feed *f = ud;
	if (done == 0) { /* a piece of work begins */
		mfs_progress_feed_end(f);
		mfs_progress_init(&f->bar, f->label, total, f->quiet);
		f->done = 0;
		f->started = 1;
		return;
	}
	if (f->started && done > f->done) {
		mfs_progress_add(&f->bar, done - f->done);
		f->done = done;
	}
}

void mfs_progress_feed_end(mfs_progress_feed *f)
{
	if (f->started)
		mfs_progress_end(&f->bar);
}
