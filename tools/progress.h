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

#endif
