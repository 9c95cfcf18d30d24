/*
 * progress.h - a one-line progress bar on stderr for long work (ingest,
 * export, verify).  Draws only when stderr is a terminal and at most ten
 * times a second; silent otherwise.
 */
#ifndef MFS_PROGRESS_H
#define MFS_PROGRESS_H

#include <stdint.h>

typedef struct mfs_progress {
	const char *label;
	uint64_t total;   /* bytes of all the work */
	uint64_t done;
	double start, last_draw;
	int enabled;
} mfs_progress;

/** Start; @p quiet disables drawing. */
void mfs_progress_init(mfs_progress *p, const char *label, uint64_t total, int quiet);

/** Add @p n bytes done and redraw if due. */
void mfs_progress_add(mfs_progress *p, uint64_t n);

/** Erase the bar (call before printing the summary). */
void mfs_progress_end(mfs_progress *p);

/*
 * A bar drawn from a library's (done, total) progress reports (ingest,
 * verify, export): a report with @p done 0 starts a new bar of @p total
 * bytes; later ones advance it to @p done.  Set label and quiet, zero the
 * rest, and pass the struct as the callback's user data.
 */
typedef struct mfs_progress_feed {
	mfs_progress bar;
	const char *label;
	int quiet;
	uint64_t done; /* what the bar has been given */
	int started;
} mfs_progress_feed;

/** The progress callback: @p ud is an mfs_progress_feed. */
void mfs_progress_feed_report(void *ud, uint64_t done, uint64_t total);

/** Erase the bar if one was started (before printing a line or the summary). */
void mfs_progress_feed_end(mfs_progress_feed *f);

#endif
