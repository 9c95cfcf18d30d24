/*
 * test_pool.c - the worker pool (index/pool.h): FIFO and front push, groups
 * waited on, take and cancel of queued tasks, many threads and groups at
 * once, shutdown with tasks queued, one workspace per thread, bad arguments.
 * Meant to run under ThreadSanitizer too (-DMODELFS_TSAN=ON).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "err.h"
#include "pool.h"
#include "testhelp.h"

/* A task that blocks its thread until the test opens the gate. */
typedef struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int entered, open;
	mfs_pool_task task;
} gate;

static void gate_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	gate *g = t->arg;
	pthread_mutex_lock(&g->mu);
	g->entered = 1;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_init(gate *g, mfs_pool_group *grp)
{
	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->task = (mfs_pool_task){.run = gate_run, .arg = g, .group = grp};
}

/* Wait until a thread sits in the gate: the queue behind it stays put. */
static void gate_wait_entered(gate *g)
{
	pthread_mutex_lock(&g->mu);
	while (!g->entered)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = 1;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(gate *g)
{
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
}

/* A task that records the order it ran in, and whether it was cancelled. */
typedef struct rec {
	mfs_pool_task task;
	int id;
	atomic_int ran, cancelled;
	int *order; /* shared log; one pool thread only writes it */
	atomic_int *n_order;
	mfs_codec_ws *ws;
	pthread_t thread;
} rec;

static void rec_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	rec *r = t->arg;
	r->ws = ws;
	r->thread = pthread_self();
	if (r->order)
		r->order[atomic_fetch_add(r->n_order, 1)] = r->id;
	atomic_fetch_add(&r->ran, 1);
}

static void rec_cancel(mfs_pool_task *t)
{
	rec *r = t->arg;
	atomic_fetch_add(&r->cancelled, 1);
}

static void rec_init(rec *r, int id, mfs_pool_group *g, int *order, atomic_int *n_order)
{
	memset(r, 0, sizeof(*r));
	r->id = id;
	r->order = order;
	r->n_order = n_order;
	r->task =
	    (mfs_pool_task){.run = rec_run, .cancel = rec_cancel, .arg = r, .group = g};
}

static void test_bad_args(void)
{
	mfs_pool *p = (mfs_pool *)1;
	CHECK_EQ_INT(mfs_pool_create(0, &p), MFS_E_INVAL);
	CHECK(p == NULL);
	p = (mfs_pool *)1;
	CHECK_EQ_INT(mfs_pool_create(MFS_POOL_MAX_THREADS + 1, &p), MFS_E_INVAL);
	CHECK(p == NULL);
	mfs_pool_free(NULL);
}

/* One thread: tasks run in submit order; a front push jumps the queue. */
static void test_fifo_and_front(void)
{
	mfs_pool *p;
	REQUIRE(mfs_pool_create(1, &p) == 0);
	CHECK_EQ_INT(mfs_pool_threads(p), 1);
	mfs_pool_group g = MFS_POOL_GROUP_INIT;
	gate gt;
	gate_init(&gt, &g);
	REQUIRE(mfs_pool_submit(p, &gt.task) == 0);
	gate_wait_entered(&gt);
	int order[8];
	atomic_int n = 0;
	rec r[5];
	for (int i = 0; i < 4; i++) {
		rec_init(&r[i], i, &g, order, &n);
		CHECK_EQ_INT(mfs_pool_submit(p, &r[i].task), 0);
	}
	rec_init(&r[4], 4, &g, order, &n);
	CHECK_EQ_INT(mfs_pool_submit_front(p, &r[4].task), 0);
	CHECK_EQ_INT(mfs_pool_group_busy(p, &g), 1);
	gate_open(&gt);
	mfs_pool_wait(p, &g);
	CHECK_EQ_INT(mfs_pool_group_busy(p, &g), 0);
	CHECK_EQ_INT(atomic_load(&n), 5);
	int want[5] = {4, 0, 1, 2, 3};
	for (int i = 0; i < 5; i++) {
		CHECK_EQ_INT(order[i], want[i]);
		CHECK_EQ_INT(atomic_load(&r[i].ran), 1);
		CHECK_EQ_INT(atomic_load(&r[i].cancelled), 0);
	}
	/* a task that came back may go again */
	CHECK_EQ_INT(mfs_pool_submit(p, &r[0].task), 0);
	mfs_pool_wait(p, &g);
	CHECK_EQ_INT(atomic_load(&r[0].ran), 2);
	mfs_pool_free(p);
	gate_destroy(&gt);
}

/* Take back and cancel touch only queued tasks, and cancel only one group. */
static void test_take_cancel_drain(void)
{
	mfs_pool *p;
	REQUIRE(mfs_pool_create(1, &p) == 0);
	mfs_pool_group gg = MFS_POOL_GROUP_INIT, g1 = MFS_POOL_GROUP_INIT,
		       g2 = MFS_POOL_GROUP_INIT;
	gate gt;
	gate_init(&gt, &gg);
	REQUIRE(mfs_pool_submit(p, &gt.task) == 0);
	gate_wait_entered(&gt);
	/* the running gate is not queued: neither take nor cancel reach it */
	CHECK_EQ_INT(mfs_pool_take(p, &gt.task), 0);
	CHECK_EQ_INT(mfs_pool_cancel(p, &gg), 0);
	CHECK_EQ_INT(mfs_pool_group_busy(p, &gg), 1);

	enum { N = 40 };
	rec r[N];
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], i, i % 2 ? &g2 : &g1, NULL, NULL);
		CHECK_EQ_INT(mfs_pool_submit(p, &r[i].task), 0);
	}
	/* r[0] (g1) taken back: no run, no cancel, and it left its group's count */
	CHECK_EQ_INT(mfs_pool_take(p, &r[0].task), 1);
	CHECK_EQ_INT(mfs_pool_take(p, &r[0].task), 0);
	CHECK_EQ_INT(mfs_pool_cancel(p, &g1), N / 2 - 1);
	CHECK_EQ_INT(mfs_pool_group_busy(p, &g1), 0);
	mfs_pool_wait(p, &g1); /* empty: returns with the gate still shut */
	CHECK_EQ_INT(mfs_pool_group_busy(p, &g2), 1);
	gate_open(&gt);
	mfs_pool_wait(p, &g2);
	mfs_pool_wait(p, &gg);
	for (int i = 0; i < N; i++) {
		int g1_task = i % 2 == 0;
		CHECK_EQ_INT(atomic_load(&r[i].ran), !g1_task);
		CHECK_EQ_INT(atomic_load(&r[i].cancelled), g1_task && i != 0);
	}
	/* drain of a group with nothing left returns at once */
	mfs_pool_drain(p, &g2);
	CHECK_EQ_INT(mfs_pool_group_busy(p, &g2), 0);
	mfs_pool_free(p);
	gate_destroy(&gt);
}

/* Drain while the group's first task runs: the rest never start, and drain
 * returns only after the running one finished. */
static void test_drain_waits_for_running(void)
{
	mfs_pool *p;
	REQUIRE(mfs_pool_create(2, &p) == 0);
	mfs_pool_group g = MFS_POOL_GROUP_INIT, other = MFS_POOL_GROUP_INIT;
	gate a, b;
	gate_init(&a, &g);
	gate_init(&b, &other);
	REQUIRE(mfs_pool_submit(p, &a.task) == 0);
	REQUIRE(mfs_pool_submit(p, &b.task) == 0);
	gate_wait_entered(&a);
	gate_wait_entered(&b); /* both threads held: what follows stays queued */
	rec r[10];
	for (int i = 0; i < 10; i++) {
		rec_init(&r[i], i, &g, NULL, NULL);
		REQUIRE(mfs_pool_submit(p, &r[i].task) == 0);
	}
	CHECK_EQ_INT(mfs_pool_cancel(p, &g), 10);
	gate_open(&b);
	mfs_pool_wait(p, &other);
	CHECK_EQ_INT(mfs_pool_group_busy(p, &g), 1); /* a still runs */
	gate_open(&a);
	mfs_pool_drain(p, &g);
	CHECK_EQ_INT(mfs_pool_group_busy(p, &g), 0);
	pthread_mutex_lock(&a.mu);
	CHECK_EQ_INT(a.entered, 1);
	pthread_mutex_unlock(&a.mu);
	for (int i = 0; i < 10; i++) {
		CHECK_EQ_INT(atomic_load(&r[i].ran), 0);
		CHECK_EQ_INT(atomic_load(&r[i].cancelled), 1);
	}
	mfs_pool_free(p);
	gate_destroy(&a);
	gate_destroy(&b);
}

/* Many threads, many groups, tasks that submit more tasks: every task runs
 * once, each group's wait covers exactly its own. */
typedef struct fan {
	mfs_pool *p;
	mfs_pool_task task;
	mfs_pool_group *g;
	atomic_long *sum;
	long value;
	int children; /* tasks this one submits to its own group */
	struct fan *kids;
} fan;

static void fan_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	fan *f = t->arg;
	/* the workspace is usable by the task */
	unsigned char *s = mfs_codec_ws_scratch(ws, MFS_WS_SLOT_CHUNK, 256);
	if (s)
		s[255] = (unsigned char)f->value;
	atomic_fetch_add(f->sum, f->value);
	for (int i = 0; i < f->children; i++)
		if (mfs_pool_submit(f->p, &f->kids[i].task) != 0)
			atomic_fetch_add(f->sum,
					 1000000000L); /* refused: fails the sum */
}

static void test_many_threads(void)
{
	enum { THREADS = 64, GROUPS = 8, PER = 200, KIDS = 3 };
	mfs_pool *p;
	REQUIRE(mfs_pool_create(THREADS, &p) == 0);
	CHECK_EQ_INT(mfs_pool_threads(p), THREADS);
	uint64_t seed = test_seed();
	mfs_pool_group g[GROUPS];
	atomic_long sum[GROUPS];
	long want[GROUPS];
	fan *f = calloc((size_t)GROUPS * PER * (1 + KIDS), sizeof(*f));
	REQUIRE(f);
	for (int k = 0; k < GROUPS; k++) {
		g[k] = (mfs_pool_group)MFS_POOL_GROUP_INIT;
		atomic_init(&sum[k], 0);
		want[k] = 0;
	}
	size_t used = 0;
	fan *top[GROUPS * PER];
	for (int i = 0; i < GROUPS * PER; i++) {
		int k = i % GROUPS;
		fan *x = &f[used++];
		*x = (fan){.p = p,
			   .g = &g[k],
			   .sum = &sum[k],
			   .value = (long)(test_rand(&seed) % 1000) + 1,
			   .children = KIDS};
		x->kids = &f[used];
		used += KIDS;
		want[k] += x->value;
		for (int c = 0; c < KIDS; c++) {
			fan *y = &x->kids[c];
			*y = (fan){.p = p,
				   .g = &g[k],
				   .sum = &sum[k],
				   .value = (long)(test_rand(&seed) % 1000) + 1};
			y->task =
			    (mfs_pool_task){.run = fan_run, .arg = y, .group = &g[k]};
			want[k] += y->value;
		}
		x->task = (mfs_pool_task){.run = fan_run, .arg = x, .group = &g[k]};
		top[i] = x;
	}
	for (int i = 0; i < GROUPS * PER; i++)
		CHECK_EQ_INT(i % 3 ? mfs_pool_submit(p, &top[i]->task)
				   : mfs_pool_submit_front(p, &top[i]->task),
			     0);
	/* a parent's children join its group before the parent leaves it, so a
	 * wait covers them too */
	for (int k = 0; k < GROUPS; k++) {
		mfs_pool_wait(p, &g[k]);
		CHECK_EQ_INT(atomic_load(&sum[k]), want[k]);
		CHECK_EQ_INT(mfs_pool_group_busy(p, &g[k]), 0);
	}
	mfs_pool_free(p);
	free(f);
}

/* Each thread has one workspace of its own, the same for every task it runs. */
static void test_workspace_per_thread(void)
{
	enum { THREADS = 4, N = 400 };
	mfs_pool *p;
	REQUIRE(mfs_pool_create(THREADS, &p) == 0);
	mfs_pool_group g = MFS_POOL_GROUP_INIT;
	rec *r = calloc(N, sizeof(*r));
	REQUIRE(r);
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], i, &g, NULL, NULL);
		CHECK_EQ_INT(mfs_pool_submit(p, &r[i].task), 0);
	}
	mfs_pool_wait(p, &g);
	mfs_codec_ws *seen[THREADS] = {0};
	pthread_t seen_th[THREADS];
	int n_seen = 0;
	for (int i = 0; i < N; i++) {
		CHECK_EQ_INT(atomic_load(&r[i].ran), 1);
		CHECK(r[i].ws != NULL);
		int k = 0;
		while (k < n_seen && seen[k] != r[i].ws)
			k++;
		if (k == n_seen) {
			REQUIRE(n_seen <
				THREADS); /* never more workspaces than threads */
			seen[k] = r[i].ws;
			seen_th[k] = r[i].thread;
			n_seen++;
		}
		/* one workspace, one thread */
		CHECK(pthread_equal(seen_th[k], r[i].thread));
		for (int j = 0; j < n_seen; j++)
			if (j != k)
				CHECK(!pthread_equal(seen_th[j], r[i].thread));
	}
	CHECK(n_seen >= 1);
	mfs_pool_free(p);
	free(r);
}

/* Shutdown with tasks queued: the running one finishes, the queued ones are
 * cancelled (not run), and a submit made during the shutdown is refused. */
typedef struct late {
	mfs_pool *p;
	mfs_pool_task task;
	rec *extra;
	atomic_int started;
	int submit_rc;
} late;

static void late_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	late *l = t->arg;
	atomic_store(&l->started, 1);
	/* long enough for mfs_pool_free (called right after the submits) to
	 * have begun */
	usleep(200 * 1000);
	l->submit_rc = mfs_pool_submit(l->p, &l->extra->task);
}

static void test_shutdown_with_queued(void)
{
	enum { N = 100 };
	mfs_pool *p;
	REQUIRE(mfs_pool_create(1, &p) == 0);
	mfs_pool_group g = MFS_POOL_GROUP_INIT;
	rec *r = calloc(N + 1, sizeof(*r));
	REQUIRE(r);
	for (int i = 0; i <= N; i++)
		rec_init(&r[i], i, &g, NULL, NULL);
	late l = {.p = p, .extra = &r[N], .submit_rc = 1};
	l.task = (mfs_pool_task){.run = late_run, .arg = &l, .group = &g};
	REQUIRE(mfs_pool_submit(p, &l.task) == 0);
	for (int i = 0; i < N; i++)
		CHECK_EQ_INT(mfs_pool_submit(p, &r[i].task), 0);
	while (!atomic_load(&l.started))
		usleep(1000);
	mfs_pool_free(p);
	CHECK_EQ_INT(l.submit_rc, MFS_E_BUSY);
	CHECK_EQ_INT(g.pending, 0);
	for (int i = 0; i <= N; i++) {
		CHECK_EQ_INT(atomic_load(&r[i].ran), 0);
		CHECK_EQ_INT(atomic_load(&r[i].cancelled), i < N);
	}
	free(r);
}

/* A cancel function may free its task and submit others (a cache puts work
 * back); a run function may free its own task. */
typedef struct owned {
	mfs_pool_task task;
	atomic_int *count;
} owned;

static void owned_run(mfs_pool_task *t, mfs_codec_ws *ws)
{
	owned *o = t->arg;
	atomic_fetch_add(o->count, 1);
	free(o);
}

static void owned_cancel(mfs_pool_task *t)
{
	owned *o = t->arg;
	atomic_fetch_add(o->count, 100);
	free(o);
}

static void test_tasks_free_themselves(void)
{
	mfs_pool *p;
	REQUIRE(mfs_pool_create(1, &p) == 0);
	mfs_pool_group g = MFS_POOL_GROUP_INIT, gg = MFS_POOL_GROUP_INIT;
	gate gt;
	gate_init(&gt, &gg);
	REQUIRE(mfs_pool_submit(p, &gt.task) == 0);
	gate_wait_entered(&gt);
	atomic_int count = 0;
	for (int i = 0; i < 10; i++) {
		owned *o = malloc(sizeof(*o));
		REQUIRE(o);
		o->count = &count;
		o->task = (mfs_pool_task){
		    .run = owned_run, .cancel = owned_cancel, .arg = o, .group = &g};
		REQUIRE(mfs_pool_submit(p, &o->task) == 0);
	}
	CHECK_EQ_INT(mfs_pool_cancel(p, &g), 10);
	CHECK_EQ_INT(atomic_load(&count), 1000);
	for (int i = 0; i < 10; i++) {
		owned *o = malloc(sizeof(*o));
		REQUIRE(o);
		o->count = &count;
		o->task = (mfs_pool_task){
		    .run = owned_run, .cancel = owned_cancel, .arg = o, .group = &g};
		REQUIRE(mfs_pool_submit(p, &o->task) == 0);
	}
	gate_open(&gt);
	mfs_pool_wait(p, &g);
	CHECK_EQ_INT(atomic_load(&count), 1010);
	mfs_pool_free(p);
	gate_destroy(&gt);
}

int main(void)
{
	RUN(test_bad_args);
	RUN(test_fifo_and_front);
	RUN(test_take_cancel_drain);
	RUN(test_drain_waits_for_running);
	RUN(test_many_threads);
	RUN(test_workspace_per_thread);
	RUN(test_shutdown_with_queued);
	RUN(test_tasks_free_themselves);
	return test_report();
}
