/*
 * File queue, retention at the end of a batch: the finishes of a
 * group commit only count the jobs their retention removes, and the batch
 * removes them, oldest first, before its commit, several neighbours in
 * one DELETE over their rowid range (queue_finish.c, fq_trim). These
 * tests put several finishes, of two queues whose rows interleave, into
 * one batch (a write of the test's own run on the adapter's database) and
 * check that exactly the newest N of each queue and state are kept, that
 * an op of the same batch that looks a removed job up finds it gone, and
 * that a reopen finds the same; then the same with concurrent callers,
 * whose batches form as they come. Last, the batch's flush (fdb_on_flush,
 * here a test's): its error rolls the whole batch back, and the
 * retention a rolled-back batch counted is forgotten.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "adapters/file/queue.h"
#include "file_util.h"

TestSuite(file_retention, .timeout = 30);

#define T0 1700000000000LL

static void
enqueue(nv_queue *q, const char *queue, const char *id, int64_t keep_c,
        int64_t keep_f)
{
    nv_job j = ft_job(queue, id, NULL, T0);
    int created = 0;

    j.remove_on_complete = keep_c;
    j.remove_on_fail = keep_f;
    cr_assert_eq(q->ops->enqueue(q->self, &j, T0, 0, NULL, &created, NULL),
                 NV_OK);
    cr_assert_eq(created, 1, "%s", id);
}

/* The ids of 'queue' in the states of 'mask', sorted, comma-joined. */
static char *
ids_in(nv_queue *q, const char *queue, unsigned mask)
{
    nv_job *v = NULL;
    size_t n = 0;
    int64_t total = 0;
    char *out = calloc(1, 1);

    cr_assert_eq(q->ops->list(q->self, queue, mask, 0, -1, &v, &n, &total,
                              NULL), NV_OK);
    cr_assert_eq((int64_t)n, total);
    for (size_t i = 1; i < n; i++) {        /* sort by id */
        for (size_t k = i; k > 0 && strcmp(v[k].id, v[k - 1].id) < 0; k--) {
            nv_job t = v[k];

            v[k] = v[k - 1];
            v[k - 1] = t;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char *s = NULL;

        cr_assert_neq(asprintf(&s, "%s%s%s", out, i ? "," : "", v[i].id),
                      -1);
        free(out);
        out = s;
    }
    nv_job_array_free(v, n);
    return out;
}

static void
assert_ids(nv_queue *q, const char *queue, int state, const char *want)
{
    char *got = ids_in(q, queue, NV_JOB_MASK(state));

    cr_assert_str_eq(got, want, "%s, state %d", queue, state);
    free(got);
}

/* ---- Several finishes in one batch ---- */

struct held {
    char id[NV_JOB_ID_MAX], token[64];
    int  fail;
};

struct batch_args {
    struct fq   *fq;
    const char  *queue[16];
    struct held *h[16];
    int          n;
    int64_t      now0;
    /* then, in the same batch, enqueue these ids again (Q-3: an id
     * whose job is still stored is not created again) */
    const char  *again_queue, *again_id, *kept_id;
    int          again_created, kept_created;
};

static int
batch_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct batch_args *a = arg;
    int rc, wake;

    for (int i = 0; i < a->n; i++) {
        nv_finish f = { .kind = a->h[i]->fail ? NV_FINISH_FAIL
                                              : NV_FINISH_COMPLETE,
                        .returnvalue = "null", .failed_reason = "no" };

        rc = fq_finish_in(c, a->fq, a->queue[i], a->h[i]->id,
                          a->h[i]->token, &f, a->now0 + i, &wake, err);
        if (rc != NV_OK)
            return rc;
    }
    if (a->again_id != NULL) {
        nv_job j = ft_job(a->again_queue, a->again_id, NULL, T0);

        j.remove_on_complete = 2;
        rc = fq_enqueue_in(c, a->fq, &j, a->now0, &a->again_created, err);
        if (rc != NV_OK)
            return rc;
    }
    if (a->kept_id != NULL) {
        nv_job j = ft_job(a->again_queue, a->kept_id, NULL, T0);

        rc = fq_enqueue_in(c, a->fq, &j, a->now0, &a->kept_created, err);
        if (rc != NV_OK)
            return rc;
    }
    return NV_OK;
}

static void
reserve(nv_queue *q, const char *queue, struct held *h)
{
    nv_job j;

    cr_assert_eq(q->ops->reserve(q->self, queue, T0, 60000, NULL, &j, NULL,
                                 NULL), NV_OK, "%s", queue);
    snprintf(h->id, sizeof(h->id), "%s", j.id);
    snprintf(h->token, sizeof(h->token), "%s", j.lease_token);
    nv_job_release(&j);
}

Test(file_retention, finishes_of_one_batch_keep_the_newest_of_each_queue_and_state)
{
    char *dir = ft_dir();
    nv_queue q;
    struct held ha[8], hb[8];
    struct batch_args a = { 0 };
    nv_error err = { 0 };
    nv_job_counts c;
    char id[32];

    ft_open_queue(dir, &q);
    /* Rows interleave: a0 b0 a1 b1 ... (qa keeps 3 completed, 1 failed;
     * qb 2 completed, every failed one), so the rowid range of qa's
     * oldest completed jobs holds rows of qb, a failed job of qa and a
     * newer completed one. */
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue(&q, "qa", id, 3, 1);
        snprintf(id, sizeof(id), "b%d", i);
        enqueue(&q, "qb", id, 2, NV_KEEP_ALL);
    }
    for (int i = 0; i < 8; i++) {
        reserve(&q, "qa", &ha[i]);
        reserve(&q, "qb", &hb[i]);
    }
    /* One batch finishes all 16, a and b in turn, a1 last (the newest
     * of qa, inside the range of its oldest); a3, a5 and b6 fail. */
    a.fq = q.self;
    a.now0 = T0 + 1000;
    for (int i = 0; i < 8; i++) {
        ha[i].fail = i == 3 || i == 5;
        hb[i].fail = i == 6;
        if (i != 1) {
            a.queue[a.n] = "qa";
            a.h[a.n++] = &ha[i];
        }
        a.queue[a.n] = "qb";
        a.h[a.n++] = &hb[i];
    }
    a.queue[a.n] = "qa";
    a.h[a.n++] = &ha[1];
    /* ...then enqueues b0 again (removed by retention in this batch: a
     * new job) and b7 (kept: the stored job is the answer). */
    a.again_queue = "qb";
    a.again_id = "b0";
    a.kept_id = "b7";
    a.kept_created = -1;
    cr_assert_eq(fdb_write(a.fq->db, batch_fn, NULL, &a, &err), NV_OK, "%s",
                 err.msg);
    cr_assert_eq(a.again_created, 1, "b0 was removed in the batch");
    cr_assert_eq(a.kept_created, 0, "b7 is kept");

    for (int pass = 0; pass < 2; pass++) {
        assert_ids(&q, "qa", NV_JOB_COMPLETED, "a1,a6,a7");
        assert_ids(&q, "qa", NV_JOB_FAILED, "a5");
        assert_ids(&q, "qb", NV_JOB_COMPLETED, "b5,b7");
        assert_ids(&q, "qb", NV_JOB_FAILED, "b6");
        assert_ids(&q, "qb", NV_JOB_WAITING, "b0");
        cr_assert_eq(q.ops->counts(q.self, "qa", &c, NULL), NV_OK);
        cr_assert_eq(c.completed, 3);
        cr_assert_eq(c.failed, 1);
        cr_assert_eq(c.waiting + c.active + c.delayed, 0);
        cr_assert_eq(q.ops->counts(q.self, "qb", &c, NULL), NV_OK);
        cr_assert_eq(c.completed, 2);
        cr_assert_eq(c.failed, 1);
        cr_assert_eq(c.waiting, 1);
        /* Again after a reopen: the rows are what memory said. */
        q.ops->close(q.self);
        ft_open_queue(dir, &q);
    }
    q.ops->close(q.self);
    free(dir);
}

/* ---- Concurrent callers ---- */

#define CJOBS 300       /* per queue */

static atomic_long clock_ms;
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
/* per queue (0 a, 1 b) and job: the finish time, and 1 when it failed */
static int64_t fin_at[2][CJOBS];
static int fin_fail[2][CJOBS];

struct worker {
    nv_queue *q;
    int       errors;
};

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    static const char *names[2] = { "ca", "cb" };

    for (int k = 0;; k++) {
        int qi = k % 2, fail, idx;
        nv_job j;
        nv_finish f = { .returnvalue = "null", .failed_reason = "no" };
        int64_t now;

        if (w->q->ops->reserve(w->q->self, names[qi], T0, 60000, NULL, &j,
                               NULL, NULL) != NV_OK) {
            if (w->q->ops->reserve(w->q->self, names[1 - qi], T0, 60000,
                                   NULL, &j, NULL, NULL) != NV_OK)
                break;
            qi = 1 - qi;
        }
        idx = atoi(j.id + 1);
        fail = idx % 5 == 0;
        f.kind = fail ? NV_FINISH_FAIL : NV_FINISH_COMPLETE;
        now = T0 + 1000 + atomic_fetch_add(&clock_ms, 1);
        if (w->q->ops->finish(w->q->self, names[qi], j.id, j.lease_token, &f,
                              now, NULL) != NV_OK) {
            w->errors++;
        } else {
            pthread_mutex_lock(&rec_mu);
            fin_at[qi][idx] = now;
            fin_fail[qi][idx] = fail;
            pthread_mutex_unlock(&rec_mu);
        }
        nv_job_release(&j);
    }
    return NULL;
}

/* The ids of queue 'qi' that finished in 'fail' state, newest 'keep'
 * (all: -1), as ids_in lists them. */
static char *
expected(int qi, int fail, int keep)
{
    int order[CJOBS], n = 0;
    char *out = calloc(1, 1);
    char (*ids)[16];

    for (int i = 0; i < CJOBS; i++) {
        if (fin_at[qi][i] != 0 && fin_fail[qi][i] == fail)
            order[n++] = i;
    }
    /* newest first */
    for (int i = 1; i < n; i++) {
        for (int k = i; k > 0 && fin_at[qi][order[k]] >
                                 fin_at[qi][order[k - 1]]; k--) {
            int t = order[k];

            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    }
    if (keep >= 0 && n > keep)
        n = keep;
    ids = calloc((size_t)n + 1, sizeof(*ids));
    for (int i = 0; i < n; i++)
        snprintf(ids[i], sizeof(ids[i]), "%c%d", qi ? 'b' : 'a', order[i]);
    for (int i = 1; i < n; i++) {           /* by id, as ids_in */
        for (int k = i; k > 0 && strcmp(ids[k], ids[k - 1]) < 0; k--) {
            char t[16];

            memcpy(t, ids[k], sizeof(t));
            memcpy(ids[k], ids[k - 1], sizeof(t));
            memcpy(ids[k - 1], t, sizeof(t));
        }
    }
    for (int i = 0; i < n; i++) {
        char *s = NULL;

        cr_assert_neq(asprintf(&s, "%s%s%s", out, i ? "," : "", ids[i]), -1);
        free(out);
        out = s;
    }
    free(ids);
    return out;
}

Test(file_retention, concurrent_finishes_keep_the_newest_of_each_queue_and_state)
{
    char *dir = ft_dir();
    nv_queue q;
    pthread_t t[8];
    struct worker w[8];
    char id[32];

    ft_open_queue(dir, &q);
    for (int i = 0; i < CJOBS; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue(&q, "ca", id, 7, 4);
        snprintf(id, sizeof(id), "b%d", i);
        enqueue(&q, "cb", id, 11, NV_KEEP_ALL);
    }
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){ .q = &q };
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].errors, 0);
    }
    for (int pass = 0; pass < 2; pass++) {
        static const struct { const char *queue; int qi, state, fail, keep; }
            want[] = {
                { "ca", 0, NV_JOB_COMPLETED, 0, 7 },
                { "ca", 0, NV_JOB_FAILED, 1, 4 },
                { "cb", 1, NV_JOB_COMPLETED, 0, 11 },
                { "cb", 1, NV_JOB_FAILED, 1, -1 },
            };

        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
            char *e = expected(want[i].qi, want[i].fail, want[i].keep);

            assert_ids(&q, want[i].queue, want[i].state, e);
            free(e);
        }
        q.ops->close(q.self);
        ft_open_queue(dir, &q);
    }
    q.ops->close(q.self);
    free(dir);
}

/* ---- A failing flush ---- */

static int flush_armed;

/* Fails while armed; else trims every queue, as the queue's own. */
static int
failing_flush(struct fdb_conn *c, void *ud, nv_error *err)
{
    struct fq *fq = ud;

    if (flush_armed)
        return nv__error(err, NV_EBACKEND, "flush failed on purpose");
    for (struct qstate *qs = fq->qs; qs != NULL; qs = qs->next) {
        int rc = fq_trim(c, fq, qs, err);

        if (rc != NV_OK)
            return rc;
    }
    return NV_OK;
}

struct enq_pair {
    struct fq  *fq;
    const char *id[2];
    int         created[2];
};

static int
enqueue_two_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct enq_pair *a = arg;

    for (int i = 0; i < 2; i++) {
        nv_job j = ft_job("fl", a->id[i], NULL, T0);
        int rc = fq_enqueue_in(c, a->fq, &j, T0, &a->created[i], err);

        if (rc != NV_OK)
            return rc;
    }
    return NV_OK;
}

/* fdb_on_flush: an error of the flush (the queue's is its retention)
 * rolls the whole batch back, and its op fails with that error; the
 * writer's memory is loaded again and the next batch goes on. */
Test(file_retention, a_failing_flush_rolls_its_whole_batch_back)
{
    char *dir = ft_dir();
    nv_queue q;
    struct enq_pair a = { .id = { "x1", "x2" } };
    nv_error err = { 0 };
    nv_job j;
    nv_job_counts c;

    ft_open_queue(dir, &q);
    enqueue(&q, "fl", "x0", NV_KEEP_ALL, NV_KEEP_ALL);
    a.fq = q.self;
    fdb_on_flush(a.fq->db, failing_flush, a.fq);
    flush_armed = 1;
    cr_assert_eq(fdb_write(a.fq->db, enqueue_two_fn, NULL, &a, &err),
                 NV_EBACKEND);
    cr_assert_str_eq(err.msg, "flush failed on purpose");
    cr_assert_eq(a.created[0] + a.created[1], 2, "both ran, then the flush "
                 "failed");
    cr_assert_eq(q.ops->get(q.self, "fl", "x1", &j, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(q.ops->get(q.self, "fl", "x2", &j, NULL), NV_EJOB_NOT_FOUND);
    flush_armed = 0;
    enqueue(&q, "fl", "x3", NV_KEEP_ALL, NV_KEEP_ALL);
    cr_assert_eq(q.ops->counts(q.self, "fl", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, 2, "x0 and x3: the memory of x1, x2 is gone");
    cr_assert_eq(q.ops->reserve(q.self, "fl", T0, 60000, NULL, &j, NULL,
                                NULL), NV_OK);
    cr_assert_str_eq(j.id, "x0");
    nv_job_release(&j);
    cr_assert_eq(q.ops->reserve(q.self, "fl", T0, 60000, NULL, &j, NULL,
                                NULL), NV_OK);
    cr_assert_str_eq(j.id, "x3");
    nv_job_release(&j);
    cr_assert_eq(q.ops->reserve(q.self, "fl", T0, 60000, NULL, &j, NULL,
                                NULL), NV_ENOTFOUND);
    q.ops->close(q.self);
    free(dir);
}

struct fin_one {
    struct fq   *fq;
    struct held *h;
    int64_t      now;
};

static int
finish_one_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct fin_one *a = arg;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };
    int wake;

    return fq_finish_in(c, a->fq, "rb", a->h->id, a->h->token, &f, a->now,
                        &wake, err);
}

/* The retention a rolled-back batch counted is forgotten with it: a job
 * that keeps 5 finishing next removes nothing. */
Test(file_retention, a_rolled_back_batch_forgets_the_retention_it_counted)
{
    char *dir = ft_dir();
    nv_queue q;
    struct held ha, hb, hc;
    struct fin_one a;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };
    nv_error err = { 0 };

    ft_open_queue(dir, &q);
    enqueue(&q, "rb", "a", 1, 1);
    enqueue(&q, "rb", "b", 1, 1);
    enqueue(&q, "rb", "c", 5, 5);
    reserve(&q, "rb", &ha);
    reserve(&q, "rb", &hb);
    reserve(&q, "rb", &hc);
    cr_assert_eq(q.ops->finish(q.self, "rb", ha.id, ha.token, &f, T0 + 5,
                               NULL), NV_OK);
    /* b keeps 1: its batch counts a for removal, then fails */
    a = (struct fin_one){ .fq = q.self, .h = &hb, .now = T0 + 10 };
    fdb_on_flush(a.fq->db, failing_flush, a.fq);
    flush_armed = 1;
    cr_assert_eq(fdb_write(a.fq->db, finish_one_fn, NULL, &a, &err),
                 NV_EBACKEND);
    flush_armed = 0;
    assert_ids(&q, "rb", NV_JOB_COMPLETED, "a");
    assert_ids(&q, "rb", NV_JOB_ACTIVE, "b,c");
    /* c keeps 5: a stays */
    a = (struct fin_one){ .fq = q.self, .h = &hc, .now = T0 + 20 };
    cr_assert_eq(fdb_write(a.fq->db, finish_one_fn, NULL, &a, &err), NV_OK,
                 "%s", err.msg);
    assert_ids(&q, "rb", NV_JOB_COMPLETED, "a,c");
    /* b, still held, keeps 1: a and c go */
    a = (struct fin_one){ .fq = q.self, .h = &hb, .now = T0 + 30 };
    cr_assert_eq(fdb_write(a.fq->db, finish_one_fn, NULL, &a, &err), NV_OK,
                 "%s", err.msg);
    assert_ids(&q, "rb", NV_JOB_COMPLETED, "b");
    q.ops->close(q.self);
    ft_open_queue(dir, &q);
    assert_ids(&q, "rb", NV_JOB_COMPLETED, "b");
    q.ops->close(q.self);
    free(dir);
}
