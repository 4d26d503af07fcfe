/*
 * Seeded model test of the queue adapter: random operations applied to
 * the adapter and to a tiny reference model of adapter.h's queue
 * contract, compared after every step. The seed is printed on failure;
 * rerun one with NV_TEST_SEED=<seed>. Time advances only right before a
 * reserve and due times never tie, so every outcome is determined.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/queue_util.h"

TestSuite(queue_model, .init = queue_setup, .fini = queue_teardown);

#define MQ "model"
#define NIDS 24
#define LEASE 40

struct mjob {
    int     exists;
    int     state;          /* WAITING, DELAYED, ACTIVE, COMPLETED, FAILED */
    int     priority, lifo;
    int64_t order;          /* waiting key */
    int64_t delay_until;
    int     attempts, stalled;
    char    token[40];
    int64_t lease_until;
    int64_t timestamp, finished_on;
    int64_t keep_done, keep_failed;
    int64_t finished_seq;   /* tie-break of equal finished_on */
};

struct model {
    struct mjob j[NIDS];
    int64_t     now, fifo, lifo, fseq;
    int         paused;
    uint64_t    rng;
    unsigned    seed;
    int         step;
};

static uint64_t
rnd(struct model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static int
pick(struct model *m, int n)
{
    return (int)(rnd(m) % (uint64_t)n);
}

#define CHECK(m, cond, ...)                                                 \
    cr_assert(cond, "seed %u step %d: " __VA_ARGS__)
#define MSG_ARGS(m) (m)->seed, (m)->step

static void
idname(int i, char *buf)
{
    snprintf(buf, 16, "id%02d", i);
}

static int
delay_taken(struct model *m, int64_t t)
{
    for (int i = 0; i < NIDS; i++)
        if (m->j[i].exists && m->j[i].state == NV_JOB_DELAYED &&
            m->j[i].delay_until == t)
            return 1;
    return 0;
}

/* A due time after now that no delayed job has. */
static int64_t
fresh_due(struct model *m)
{
    int64_t t;

    do
        t = m->now + 1 + pick(m, 60);
    while (delay_taken(m, t));
    return t;
}

static void
make_waiting(struct model *m, struct mjob *j)
{
    j->state = NV_JOB_WAITING;
    j->order = j->lifo ? --m->lifo : ++m->fifo;
}

static void
promote(struct model *m)
{
    for (;;) {
        struct mjob *best = NULL;

        for (int i = 0; i < NIDS; i++) {
            struct mjob *j = &m->j[i];

            if (j->exists && j->state == NV_JOB_DELAYED &&
                j->delay_until <= m->now &&
                (best == NULL || j->delay_until < best->delay_until))
                best = j;
        }
        if (best == NULL)
            return;
        make_waiting(m, best);
    }
}

/* Q-10 retention after j finished in state st. */
static void
retain(struct model *m, struct mjob *j)
{
    int64_t keep = j->state == NV_JOB_COMPLETED ? j->keep_done : j->keep_failed;
    int st = j->state;

    j->finished_seq = ++m->fseq;
    if (keep == NV_KEEP_ALL)
        return;
    if (keep == 0) {        /* true: only this job goes, as it finishes */
        j->exists = 0;
        return;
    }
    for (;;) {
        int n = 0;
        struct mjob *old = NULL;

        for (int i = 0; i < NIDS; i++) {
            struct mjob *x = &m->j[i];

            if (!x->exists || x->state != st)
                continue;
            n++;
            if (old == NULL || x->finished_on < old->finished_on ||
                (x->finished_on == old->finished_on &&
                 x->finished_seq < old->finished_seq))
                old = x;
        }
        if (n <= keep)
            return;
        old->exists = 0;
    }
}

static void
dump(struct model *m)
{
    nv_job *v = NULL;
    size_t n = 0;
    int64_t total = 0;

    for (int i = 0; i < NIDS; i++) {
        struct mjob *j = &m->j[i];

        if (j->exists)
            fprintf(stderr, "model id%02d state %d prio %d lifo %d order %ld "
                    "due %ld att %d keep %ld/%ld\n", i, j->state, j->priority,
                    j->lifo, (long)j->order, (long)j->delay_until, j->attempts,
                    (long)j->keep_done, (long)j->keep_failed);
    }
    if (QOPS->list(Q, MQ, NV_JOB_MASK_ALL, 0, 1000, &v, &n, &total, NULL) != 0)
        return;
    for (size_t k = 0; k < n; k++)
        fprintf(stderr, "adapter %s state %d prio %d due %ld att %d "
                "keep %ld/%ld\n", v[k].id, v[k].state, v[k].priority,
                (long)v[k].delay_until, v[k].attempts_made,
                (long)v[k].remove_on_complete, (long)v[k].remove_on_fail);
    nv_job_array_free(v, n);
}

static void
compare_counts(struct model *m)
{
    nv_job_counts c = counts(MQ), w = { 0 };

    for (int i = 0; i < NIDS; i++) {
        struct mjob *j = &m->j[i];

        if (!j->exists)
            continue;
        switch (j->state) {
        case NV_JOB_WAITING:
            if (m->paused)
                w.paused++;
            else
                w.waiting++;
            break;
        case NV_JOB_DELAYED: w.delayed++; break;
        case NV_JOB_ACTIVE: w.active++; break;
        case NV_JOB_COMPLETED: w.completed++; break;
        case NV_JOB_FAILED: w.failed++; break;
        }
    }
    if (getenv("NV_TEST_TRACE") != NULL)
        dump(m);
    CHECK(m, c.waiting == w.waiting && c.paused == w.paused &&
          c.delayed == w.delayed && c.active == w.active &&
          c.completed == w.completed && c.failed == w.failed,
          "counts w%ld/%ld p%ld/%ld d%ld/%ld a%ld/%ld c%ld/%ld f%ld/%ld "
          "(adapter/model)", MSG_ARGS(m), (long)c.waiting, (long)w.waiting,
          (long)c.paused, (long)w.paused, (long)c.delayed, (long)w.delayed,
          (long)c.active, (long)w.active, (long)c.completed,
          (long)w.completed, (long)c.failed, (long)w.failed);
}

static void
compare_job(struct model *m, int i)
{
    char id[16];
    nv_job g;
    int rc;
    struct mjob *j = &m->j[i];
    int want;

    idname(i, id);
    memset(&g, 0, sizeof(g));
    rc = QOPS->get(Q, MQ, id, &g, NULL);
    if (!j->exists) {
        CHECK(m, rc == NV_EJOB_NOT_FOUND, "%s should be gone (rc %d)",
              MSG_ARGS(m), id, rc);
        return;
    }
    CHECK(m, rc == NV_OK, "%s missing", MSG_ARGS(m), id);
    want = j->state == NV_JOB_WAITING && m->paused ? NV_JOB_PAUSED : j->state;
    CHECK(m, g.state == want && g.attempts_made == j->attempts &&
          g.stalled_count == j->stalled,
          "%s state %d/%d attempts %d/%d stalled %d/%d", MSG_ARGS(m), id,
          g.state, want, g.attempts_made, j->attempts, g.stalled_count,
          j->stalled);
    nv_job_release(&g);
}

static void
compare_list(struct model *m)
{
    nv_job *v = NULL;
    size_t n = 0;
    int64_t total = 0, want = 0;

    cr_assert_eq(QOPS->list(Q, MQ, NV_JOB_MASK_ALL, 0, 1000, &v, &n, &total,
                            NULL), NV_OK);
    for (int i = 0; i < NIDS; i++)
        want += m->j[i].exists;
    CHECK(m, total == want && (int64_t)n == want, "list total %ld/%ld",
          MSG_ARGS(m), (long)total, (long)want);
    for (size_t k = 1; k < n; k++)
        CHECK(m, v[k - 1].timestamp > v[k].timestamp ||
              (v[k - 1].timestamp == v[k].timestamp &&
               strcmp(v[k - 1].id, v[k].id) > 0), "list order at %zu",
              MSG_ARGS(m), k);
    /* a page is the matching slice of the whole list */
    {
        int64_t off = pick(m, 8), lim = 1 + pick(m, 6), ptotal = 0;
        nv_job *p = NULL;
        size_t pn = 0;

        cr_assert_eq(QOPS->list(Q, MQ, NV_JOB_MASK_ALL, off, lim, &p, &pn,
                                &ptotal, NULL), NV_OK);
        CHECK(m, ptotal == total, "page total", MSG_ARGS(m));
        for (size_t k = 0; k < pn; k++)
            CHECK(m, (size_t)off + k < n &&
                  strcmp(p[k].id, v[(size_t)off + k].id) == 0,
                  "page %ld+%zu", MSG_ARGS(m), (long)off, k);
        CHECK(m, (int64_t)pn == (off >= total ? 0 : (total - off < lim ?
                                                     total - off : lim)),
              "page size %zu", MSG_ARGS(m), pn);
        nv_job_array_free(p, pn);
    }
    nv_job_array_free(v, n);
}

static void
op_enqueue(struct model *m)
{
    int i = pick(m, NIDS), created = -1;
    int64_t maxu = pick(m, 4) == 0 ? 6 : 0, unfinished = 0;
    char id[16];
    nv_job job;
    struct mjob *j = &m->j[i];
    int rc;

    idname(i, id);
    job = mkjob(MQ, id, m->now);
    job.priority = pick(m, 3);
    job.lifo = pick(m, 5) == 0;
    job.delay_until = pick(m, 3) == 0 ? fresh_due(m) : 0;
    job.remove_on_complete = pick(m, 3) == 0 ? 0 : pick(m, 2) ? 3 : NV_KEEP_ALL;
    job.remove_on_fail = pick(m, 3) == 0 ? 2 : NV_KEEP_ALL;
    for (int k = 0; k < NIDS; k++)
        if (m->j[k].exists && m->j[k].state <= NV_JOB_ACTIVE)
            unfinished++;
    rc = QOPS->enqueue(Q, &job, m->now, maxu, NULL, &created, NULL);
    if (j->exists) {
        CHECK(m, rc == NV_OK && created == 0, "enqueue of existing %s: "
              "rc %d created %d", MSG_ARGS(m), id, rc, created);
        return;
    }
    if (maxu > 0 && unfinished >= maxu) {
        CHECK(m, rc == NV_EQUEUE_FULL, "enqueue %s should be full (rc %d)",
              MSG_ARGS(m), id, rc);
        return;
    }
    CHECK(m, rc == NV_OK && created == 1, "enqueue %s rc %d", MSG_ARGS(m), id,
          rc);
    memset(j, 0, sizeof(*j));
    j->exists = 1;
    j->priority = job.priority;
    j->lifo = job.lifo;
    j->timestamp = m->now;
    j->keep_done = job.remove_on_complete;
    j->keep_failed = job.remove_on_fail;
    j->delay_until = job.delay_until;
    if (job.delay_until > m->now)
        j->state = NV_JOB_DELAYED;
    else
        make_waiting(m, j);
}

static void
op_reserve(struct model *m)
{
    struct mjob *best = NULL;
    nv_job a;
    int rc;

    m->now += pick(m, 25);
    promote(m);
    if (!m->paused) {
        for (int i = 0; i < NIDS; i++) {
            struct mjob *j = &m->j[i];

            if (!j->exists || j->state != NV_JOB_WAITING)
                continue;
            if (best == NULL || j->priority < best->priority ||
                (j->priority == best->priority && j->order < best->order))
                best = j;
        }
    }
    memset(&a, 0, sizeof(a));
    rc = QOPS->reserve(Q, MQ, m->now, LEASE, NULL, &a, NULL, NULL);
    if (best == NULL) {
        CHECK(m, rc == NV_ENOTFOUND, "reserve should find nothing, got %s",
              MSG_ARGS(m), rc == NV_OK ? a.id : "error");
        return;
    }
    {
        char id[16];

        idname((int)(best - m->j), id);
        CHECK(m, rc == NV_OK && strcmp(a.id, id) == 0,
              "reserve: want %s got %s (rc %d)", MSG_ARGS(m), id,
              rc == NV_OK ? a.id : "-", rc);
    }
    best->state = NV_JOB_ACTIVE;
    best->lease_until = m->now + LEASE;
    snprintf(best->token, sizeof(best->token), "%s", a.lease_token);
    nv_job_release(&a);
}

static void
op_finish(struct model *m)
{
    int act[NIDS], na = 0, i, kind = pick(m, 4), rc;
    struct mjob *j;
    nv_finish f = { .kind = kind, .returnvalue = "1", .failed_reason = "x" };
    char id[16];
    int stale = pick(m, 8) == 0;

    for (i = 0; i < NIDS; i++)
        if (m->j[i].exists && m->j[i].state == NV_JOB_ACTIVE)
            act[na++] = i;
    if (na == 0)
        return;
    i = act[pick(m, na)];
    j = &m->j[i];
    idname(i, id);
    if (kind == NV_FINISH_RETRY)
        f.retry_at = pick(m, 2) ? fresh_due(m) : m->now;
    rc = QOPS->finish(Q, MQ, id, stale ? "stale-token" : j->token, &f, m->now,
                      NULL);
    if (stale) {
        CHECK(m, rc == NV_ELEASE, "finish with a stale token: rc %d",
              MSG_ARGS(m), rc);
        return;
    }
    CHECK(m, rc == NV_OK, "finish %s rc %d", MSG_ARGS(m), id, rc);
    if (kind != NV_FINISH_RELEASE)
        j->attempts++;
    switch (kind) {
    case NV_FINISH_COMPLETE:
    case NV_FINISH_FAIL:
        j->state = kind == NV_FINISH_COMPLETE ? NV_JOB_COMPLETED : NV_JOB_FAILED;
        j->finished_on = m->now;
        retain(m, j);
        break;
    case NV_FINISH_RETRY:
        if (f.retry_at > m->now) {
            j->state = NV_JOB_DELAYED;
            j->delay_until = f.retry_at;
        } else {
            make_waiting(m, j);
        }
        break;
    case NV_FINISH_RELEASE:
        make_waiting(m, j);
        break;
    }
}

static void
op_remove(struct model *m)
{
    int i = pick(m, NIDS), rc;
    char id[16];
    struct mjob *j = &m->j[i];

    idname(i, id);
    rc = QOPS->remove(Q, MQ, id, NULL, NULL);
    if (!j->exists)
        CHECK(m, rc == NV_EJOB_NOT_FOUND, "remove absent %s rc %d",
              MSG_ARGS(m), id, rc);
    else if (j->state == NV_JOB_ACTIVE)
        CHECK(m, rc == NV_EJOB_ACTIVE, "remove active %s rc %d", MSG_ARGS(m),
              id, rc);
    else {
        CHECK(m, rc == NV_OK, "remove %s rc %d", MSG_ARGS(m), id, rc);
        j->exists = 0;
    }
}

static void
op_retry(struct model *m)
{
    int i = pick(m, NIDS), rc;
    char id[16];
    struct mjob *j = &m->j[i];

    idname(i, id);
    rc = QOPS->retry(Q, MQ, id, m->now, NULL, NULL);
    if (!j->exists) {
        CHECK(m, rc == NV_EJOB_NOT_FOUND, "retry absent %s rc %d",
              MSG_ARGS(m), id, rc);
    } else if (j->state != NV_JOB_FAILED) {
        CHECK(m, rc == NV_EJOB_NOT_FAILED, "retry %s rc %d", MSG_ARGS(m), id,
              rc);
    } else {
        CHECK(m, rc == NV_OK, "retry %s rc %d", MSG_ARGS(m), id, rc);
        make_waiting(m, j);
    }
}

static void
op_pause(struct model *m)
{
    m->paused = !m->paused;
    cr_assert_eq(QOPS->set_paused(Q, MQ, m->paused, NULL), NV_OK);
}

static void
op_reap(struct model *m)
{
    int max_stalled = pick(m, 3);
    nv_reaped *r = NULL;
    size_t n = 0;
    int want = 0;

    cr_assert_eq(QOPS->reap(Q, MQ, m->now, max_stalled, &r, &n, NULL), NV_OK);
    for (int i = 0; i < NIDS; i++) {
        struct mjob *j = &m->j[i];

        want += j->exists && j->state == NV_JOB_ACTIVE &&
                j->lease_until < m->now;
    }
    CHECK(m, (int)n == want, "reaped %zu, want %d", MSG_ARGS(m), n, want);
    /* the order in which one reap handles its jobs is the adapter's:
     * apply them in the order reported */
    for (size_t k = 0; k < n; k++) {
        int idx = atoi(r[k].job.id + 2);
        struct mjob *j = &m->j[idx];

        CHECK(m, j->exists && j->state == NV_JOB_ACTIVE &&
              j->lease_until < m->now, "reaped %s unexpectedly", MSG_ARGS(m),
              r[k].job.id);
        j->stalled++;
        CHECK(m, r[k].failed == (j->stalled > max_stalled),
              "reaped %s failed=%d", MSG_ARGS(m), r[k].job.id, r[k].failed);
        if (j->stalled > max_stalled) {
            j->state = NV_JOB_FAILED;
            j->finished_on = m->now;
            retain(m, j);
        } else {
            make_waiting(m, j);
        }
    }
    nv_reaped_free(r, n);
}

static void
run_model(unsigned seed, int steps)
{
    struct model *m = calloc(1, sizeof(*m));

    m->seed = seed;
    m->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed * 0x2545f4914f6cdd1dull);
    if (m->rng == 0)
        m->rng = 1;
    m->now = 1000000;
    for (m->step = 0; m->step < steps; m->step++) {
        int op = pick(m, 100);

        if (getenv("NV_TEST_TRACE") != NULL)
            fprintf(stderr, "step %d op %d now %ld\n", m->step, op,
                    (long)m->now);

        if (op < 30)
            op_enqueue(m);
        else if (op < 60)
            op_reserve(m);
        else if (op < 80)
            op_finish(m);
        else if (op < 86)
            op_remove(m);
        else if (op < 92)
            op_retry(m);
        else if (op < 95)
            op_pause(m);
        else
            op_reap(m);
        compare_counts(m);
        compare_job(m, pick(m, NIDS));
        if (m->step % 25 == 0)
            compare_list(m);
    }
    for (int i = 0; i < NIDS; i++)
        compare_job(m, i);
    free(m);
}

static unsigned
base_seed(void)
{
    const char *s = getenv("NV_TEST_SEED");

    return s != NULL ? (unsigned)strtoul(s, NULL, 10) : 20260101u;
}

Test(queue_model, random_operations_match_the_reference_model)
{
    const char *s = getenv("NV_TEST_SEED");
    int runs = s != NULL ? 1 : 6;

    for (int r = 0; r < runs; r++) {
        run_model(base_seed() + (unsigned)r, 300);
        /* start the next run from a clean adapter */
        queue_teardown();
        queue_setup();
    }
}
