/*
 * test_ioahead.c - the read-ahead thread: one waiting job per owner (a newer
 * request replaces it), jobs run in order, drain drops and waits, free with
 * jobs waiting.  Also run under ThreadSanitizer by `./run test`.
 */
#include <pthread.h>
#include <unistd.h>

#include "ioahead.h"
#include "testhelp.h"

/* A job log, and a gate that holds the running job until opened. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int gate_open, running;
static struct {
	void *ud;
	size_t first;
	uint64_t until;
} runs[16];
static int n_runs;

static void job(void *ud, size_t first, uint64_t until)
{
	pthread_mutex_lock(&mu);
	running = 1;
	pthread_cond_broadcast(&cv);
	while (!gate_open)
		pthread_cond_wait(&cv, &mu);
	if (n_runs < 16)
		runs[n_runs].ud = ud, runs[n_runs].first = first, runs[n_runs].until = until;
	n_runs++;
	running = 0;
	pthread_mutex_unlock(&mu);
}

static void reset(int open)
{
	pthread_mutex_lock(&mu);
	gate_open = open;
	running = 0;
	n_runs = 0;
	pthread_mutex_unlock(&mu);
}

static void wait_running(void)
{
	pthread_mutex_lock(&mu);
	while (!running)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static void open_gate(void)
{
	pthread_mutex_lock(&mu);
	gate_open = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static int runs_now(void)
{
	pthread_mutex_lock(&mu);
	int n = n_runs;
	pthread_mutex_unlock(&mu);
	return n;
}

static int A, B, C; /* owners */

/* While a job runs, a second request of one owner replaces its first. */
static void test_replace_and_order(void)
{
	mfs_ioahead *q;
	REQUIRE(mfs_ioahead_create(&q) == 0);
	reset(0);
	CHECK_EQ_INT(mfs_ioahead_request(q, job, &C, 1, 10), 0);
	wait_running(); /* C's job holds the thread */
	CHECK_EQ_INT(mfs_ioahead_request(q, job, &A, 2, 20), 0);
	CHECK_EQ_INT(mfs_ioahead_request(q, job, &B, 3, 30), 0);
	CHECK_EQ_INT(mfs_ioahead_request(q, job, &A, 4, 40), 0); /* replaces A's */
	open_gate();
	mfs_ioahead_drain(q, &C);
	mfs_ioahead_drain(q, &A);
	mfs_ioahead_drain(q, &B);
	/* A's and B's jobs may have run or been dropped by the drains; wait
	 * for no more than the three */
	mfs_ioahead_stats st;
	mfs_ioahead_get_stats(q, &st);
	CHECK_EQ_INT(st.requests, 4);
	CHECK_EQ_INT(st.replaced, 1);
	CHECK_EQ_INT(st.runs + st.dropped, 3);
	int n = runs_now();
	CHECK(n >= 1 && n <= 3);
	CHECK(runs[0].ud == &C && runs[0].first == 1 && runs[0].until == 10);
	for (int i = 1; i < n && i < 3; i++) {
		/* A's newest arguments, and A before B (A asked first) */
		if (runs[i].ud == &A)
			CHECK(runs[i].first == 4 && runs[i].until == 40 && i == 1);
		else
			CHECK(runs[i].ud == &B && runs[i].first == 3);
	}
	mfs_ioahead_free(q);
}

/* A queue whose thread runs A's job, held at the gate, with B's waiting. */
static mfs_ioahead *busy_queue(void)
{
	mfs_ioahead *q;
	if (mfs_ioahead_create(&q) != 0)
		return NULL;
	reset(0);
	CHECK_EQ_INT(mfs_ioahead_request(q, job, &A, 1, 1), 0);
	wait_running();
	CHECK_EQ_INT(mfs_ioahead_request(q, job, &B, 2, 2), 0);
	return q;
}

/* Drain drops a waiting job and waits for a running one. */
static void test_drain(void)
{
	mfs_ioahead *q = busy_queue();
	REQUIRE(q);
	mfs_ioahead_drain(q, &B); /* waiting: dropped, returns at once */
	mfs_ioahead_stats st;
	mfs_ioahead_get_stats(q, &st);
	CHECK_EQ_INT(st.dropped, 1);
	CHECK_EQ_INT(runs_now(), 0); /* A still held at the gate */
	open_gate();
	mfs_ioahead_drain(q, &A); /* running: returns once it has finished */
	CHECK_EQ_INT(runs_now(), 1);
	CHECK(runs[0].ud == &A);
	mfs_ioahead_drain(q, &C); /* an owner with nothing: no-op */
	mfs_ioahead_free(q);
	CHECK_EQ_INT(runs_now(), 1); /* B never ran */
}

/* Many threads asking for their own owners; every owner drains. */
static void *asker(void *arg)
{
	mfs_ioahead *q = arg;
	int me;
	for (int i = 0; i < 2000; i++)
		mfs_ioahead_request(q, job, &me, (size_t)i, (uint64_t)i);
	mfs_ioahead_drain(q, &me);
	return NULL;
}

static void test_threads(void)
{
	mfs_ioahead *q;
	REQUIRE(mfs_ioahead_create(&q) == 0);
	reset(1);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, asker, q);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	mfs_ioahead_stats st;
	mfs_ioahead_get_stats(q, &st);
	CHECK_EQ_INT(st.requests, 8000);
	/* every request queued a job or replaced one; every job ran or was
	 * dropped by its owner's drain */
	CHECK_EQ_INT(st.runs + st.dropped, st.requests - st.replaced);
	mfs_ioahead_free(q);
}

/* Free with jobs waiting: they are dropped; the running one finishes. */
static void test_free_with_waiting(void)
{
	mfs_ioahead *q = busy_queue();
	REQUIRE(q);
	CHECK_EQ_INT(mfs_ioahead_request(q, job, &C, 3, 3), 0);
	open_gate();
	mfs_ioahead_free(q); /* joins after A; B and C may or may not have run */
	int n = runs_now();
	CHECK(n >= 1 && n <= 3);
	mfs_ioahead_free(NULL);
}

int main(void)
{
	RUN(test_replace_and_order);
	RUN(test_drain);
	RUN(test_threads);
	RUN(test_free_with_waiting);
	return test_report();
}
