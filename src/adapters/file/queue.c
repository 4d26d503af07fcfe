/*
 * File queue adapter: jobs, leases, pause flags and limiter windows in
 * <dataDir>/queue.db (see fdb.c for the database, group commit and the
 * lock file; adapter.h for the contract of each op). This file holds the
 * schema, the writer's memory of each queue (order heaps, leases, counts;
 * loaded at open), counts, pause, open/close and the ops table; queue.h
 * lists the other files of the adapter.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "adapters/file/queue.h"

/*
 * Schema, version 3.
 *
 * jobs: one row per job. 'state' is the stored state (waiting, delayed,
 * active, completed, failed; "paused" is only reported). (sk1, sk2) is
 * the order inside a state:
 *   waiting    (priority, seq)  -- seq from a counter; -seq for lifo, so
 *                                  a later lifo job goes first
 *   delayed    (delay_until, seq)
 *   active     (lease_until, 0)  -- the reaper reads expired leases
 *   completed, failed (finished_on, seq) -- retention drops the oldest
 * Version 1 kept that order in an index, jobs_sched(queue, state, sk1,
 * sk2), which every transition rewrote twice; version 2 drops it: the
 * writer keeps the order in memory (struct qstate), loaded from the rows
 * at open, and so the number of jobs per state (capacity Q-11, retention
 * Q-10, counts Q-15 never scan). Only this process writes the database
 * the lock file), so that memory is the truth of the last commit.
 * jobs_id serves lookups by id and Q-3.
 *
 * Listings (Q-16: newest first by timestamp; ties by id, descending, as
 * on every backend). Version 2 kept an index jobs_time(queue, timestamp,
 * id), which every enqueue and every retention DELETE wrote. Version 3
 * lets the rowid serve instead (queue.h, FQ_QSHIFT): each queue gets a
 * number (queues.num, 1..FQ_QNUM_MAX, given at its first job and kept),
 * and a job enqueued with a timestamp at least the latest one its queue
 * has had takes rid = num << 47 | seq, the queue's next seq. The ordered
 * rows of a queue are thus contiguous in the table and their timestamps
 * never decrease as rid grows: a listing reads them backwards along the
 * primary key, sorting only each run of equal timestamps by id. The
 * other rows -- a timestamp older than the queue's latest (a clock
 * stepped back; a caller's own timestamp), a queue past the numbers or
 * the sequence, every row of a version 2 database -- take rowids below
 * FQ_ORDERED_MIN (new ones negative, downwards), and only they are in
 * the partial index jobs_spill(queue, timestamp, id); a listing merges
 * the two. The engine stamps jobs with its clock, so nearly every row
 * is ordered, and its insert and delete write no index but jobs_id.
 *
 * queues: the paused flag and the queue's number. limits:
 * activation times inside the limiter window, per group key ('' = no
 * group, '=<value>' otherwise).
 */
#define QUEUE_SCHEMA_VERSION 3

static int
queue_migrate(sqlite3 *h, int from, char **msg)
{
    int rc = SQLITE_OK;

    switch (from) {
    case 0:
        rc = sqlite3_exec(h,
            "CREATE TABLE jobs("
            " rid INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL,"
            " name TEXT NOT NULL, run_id TEXT NOT NULL,"
            " flow_name TEXT NOT NULL, step_name TEXT NOT NULL,"
            " data TEXT NOT NULL, opts TEXT, state INTEGER NOT NULL,"
            " priority INTEGER NOT NULL, lifo INTEGER NOT NULL,"
            " remove_on_complete INTEGER NOT NULL,"
            " remove_on_fail INTEGER NOT NULL,"
            " attempts_made INTEGER NOT NULL, stalled_count INTEGER NOT NULL,"
            " progress REAL NOT NULL, progress_data TEXT,"
            " timestamp INTEGER NOT NULL, delay_until INTEGER NOT NULL,"
            " processed_on INTEGER NOT NULL, finished_on INTEGER NOT NULL,"
            " returnvalue TEXT, failed_reason TEXT, logs TEXT, grp TEXT,"
            " lease_until INTEGER NOT NULL, lease_token TEXT NOT NULL,"
            " sk1 INTEGER NOT NULL, sk2 INTEGER NOT NULL);"
            "CREATE UNIQUE INDEX jobs_id ON jobs(queue, id);"
            "CREATE INDEX jobs_spill ON jobs(queue, timestamp, id)"
            " WHERE rid < " FQ_ORDERED_MIN_SQL ";"
            "CREATE TABLE queues(name TEXT PRIMARY KEY,"
            " paused INTEGER NOT NULL, num INTEGER) WITHOUT ROWID;"
            "CREATE TABLE limits(queue TEXT NOT NULL, grp TEXT NOT NULL,"
            " ts INTEGER NOT NULL);"
            "CREATE INDEX limits_q ON limits(queue, ts);",
            NULL, NULL, msg);
        break;
    case 1:
        /* The rows stay as they are; their order moves to memory. */
        rc = sqlite3_exec(h, "DROP INDEX jobs_sched", NULL, NULL, msg);
        if (rc != SQLITE_OK)
            break;
        /* fall through */
    case 2:
        /* The rows keep their rowids (SQLite's, from 1: all below
         * FQ_ORDERED_MIN; one that is not goes negative) and are listed
         * through jobs_spill; the queues get numbers as they take jobs. */
        rc = sqlite3_exec(h,
            "DROP INDEX jobs_time;"
            "UPDATE jobs SET rid = -rid WHERE rid >= " FQ_ORDERED_MIN_SQL ";"
            "CREATE INDEX jobs_spill ON jobs(queue, timestamp, id)"
            " WHERE rid < " FQ_ORDERED_MIN_SQL ";"
            "ALTER TABLE queues ADD COLUMN num INTEGER;",
            NULL, NULL, msg);
        /* fall through */
    case QUEUE_SCHEMA_VERSION:
        break;
    }
    return rc;
}

static const struct fdb_schema queue_schema = {
    .kind = "queue", .version = QUEUE_SCHEMA_VERSION,
    .migrate = queue_migrate,
};

/* ---- Heaps and leases (the writer's memory) ---- */

static int
ent_less(const struct fq_ent *a, const struct fq_ent *b)
{
    if (a->k1 != b->k1)
        return a->k1 < b->k1;
    if (a->k2 != b->k2)
        return a->k2 < b->k2;
    return a->rid < b->rid;
}

static void
sift_down(struct fq_heap *h, size_t i)
{
    struct fq_ent e = h->v[i];

    for (;;) {
        size_t l = 2 * i + 1, m;

        if (l >= h->n)
            break;
        m = l + 1 < h->n && ent_less(&h->v[l + 1], &h->v[l]) ? l + 1 : l;
        if (!ent_less(&h->v[m], &e))
            break;
        h->v[i] = h->v[m];
        i = m;
    }
    h->v[i] = e;
}

/* Append to the heap without ordering (loading); heapify orders. */
static int
heap_append(struct fq_heap *h, const struct fq_ent *e)
{
    struct fq_ent *v = fdb_grow(h->v, &h->cap, h->n, sizeof(*v));

    if (v == NULL)
        return -1;
    h->v = v;
    h->v[h->n++] = *e;
    return 0;
}

static void
heapify(struct fq_heap *h)
{
    for (size_t i = h->n / 2; i-- > 0; )
        sift_down(h, i);
}

static struct fq_ent *
ring_at(const struct fq_heap *h, size_t i)
{
    return &h->r[(h->rh + i) & (h->rcap - 1)];
}

/* Append 'e' to the ring when it keeps the ring in order: 1 done, 0 not
 * in order, -1 out of memory. */
static int
ring_append(struct fq_heap *h, const struct fq_ent *e)
{
    if (h->rn > 0 && ent_less(e, ring_at(h, h->rn - 1)))
        return 0;
    if (h->rn == h->rcap) {
        size_t ncap = h->rcap ? h->rcap * 2 : 64;
        struct fq_ent *r = nv__malloc(ncap * sizeof(*r));

        if (r == NULL)
            return -1;
        for (size_t i = 0; i < h->rn; i++)
            r[i] = *ring_at(h, i);
        nv__free(h->r);
        h->r = r;
        h->rh = 0;
        h->rcap = ncap;
    }
    *ring_at(h, h->rn) = *e;
    h->rn++;
    return 1;
}

/* Place 'e' in the ring, else unordered in the heap (loading). */
static int
order_append(struct fq_heap *h, const struct fq_ent *e)
{
    int rc = ring_append(h, e);

    return rc != 0 ? (rc > 0 ? 0 : -1) : heap_append(h, e);
}

int
fq_push(struct fq *fq, struct fq_heap *h, int64_t k1, int64_t k2,
        int64_t rid, nv_error *err)
{
    struct fq_ent e = { .k1 = k1, .k2 = k2, .rid = rid };
    size_t i;
    int rc = ring_append(h, &e);

    if (rc == 0)
        rc = heap_append(h, &e) == 0 ? 2 : -1;
    if (rc < 0) {
        fq->need_load = 1;      /* the job is in the database, not here */
        return fdb_oom("queue", err);
    }
    if (rc == 1)
        return NV_OK;
    i = h->n - 1;
    while (i > 0 && ent_less(&e, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
    return NV_OK;
}

const struct fq_ent *
fq_top(const struct fq_heap *h)
{
    if (h->rn == 0)
        return h->n > 0 ? &h->v[0] : NULL;
    if (h->n == 0 || ent_less(ring_at(h, 0), &h->v[0]))
        return ring_at(h, 0);
    return &h->v[0];
}

size_t
fq_size(const struct fq_heap *h)
{
    return h->n + h->rn;
}

int
fq_pop(struct fq_heap *h, struct fq_ent *out)
{
    const struct fq_ent *t = fq_top(h);

    if (t == NULL)
        return 0;
    *out = *t;
    if (h->rn > 0 && t == ring_at(h, 0)) {
        h->rh = (h->rh + 1) & (h->rcap - 1);
        if (--h->rn == 0)
            h->rh = 0;
        if (h->rcap > 1024 && h->rn < h->rcap / 8) {
            struct fq_ent *r = nv__malloc(h->rcap / 2 * sizeof(*r));

            if (r != NULL) {
                for (size_t i = 0; i < h->rn; i++)
                    r[i] = *ring_at(h, i);
                nv__free(h->r);
                h->r = r;
                h->rh = 0;
                h->rcap /= 2;
            }
        }
        return 1;
    }
    h->v[0] = h->v[--h->n];
    if (h->n > 0)
        sift_down(h, 0);
    /* Give memory back once a big backlog is gone. */
    if (h->cap > 1024 && h->n < h->cap / 8) {
        struct fq_ent *v = nv__realloc(h->v, h->cap / 2 * sizeof(*v));

        if (v != NULL) {
            h->v = v;
            h->cap /= 2;
        }
    }
    return 1;
}

void
fq_stale_check(struct fq *fq, struct qstate *qs)
{
    static const int states[] = { NV_JOB_WAITING, NV_JOB_DELAYED,
                                  NV_JOB_COMPLETED, NV_JOB_FAILED };

    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        if (fq_size(fq_heap_of(qs, states[i])) >
            2 * (size_t)qs->n[states[i]] + FQ_STALE_MAX)
            fq->need_load = 1;
    }
}

struct fq_heap *
fq_heap_of(struct qstate *qs, int state)
{
    switch (state) {
    case NV_JOB_WAITING:   return &qs->wait;
    case NV_JOB_DELAYED:   return &qs->delay;
    case NV_JOB_COMPLETED: return &qs->done[0];
    case NV_JOB_FAILED:    return &qs->done[1];
    default:               return NULL;
    }
}

int64_t
fq_next_due(const struct qstate *qs)
{
    const struct fq_ent *t = fq_top(&qs->delay);

    return t != NULL ? t->k1 : INT64_MAX;
}

static size_t
lslot(const struct fq_lmap *m, int64_t rid)
{
    uint64_t h = (uint64_t)rid * 0x9e3779b97f4a7c15ull;

    return (size_t)(h >> 32) & (m->cap - 1);
}

struct fq_lease *
fq_lease_get(struct qstate *qs, int64_t rid)
{
    struct fq_lmap *m = &qs->active;

    if (m->cap == 0)
        return NULL;
    for (size_t i = lslot(m, rid); m->v[i].rid != 0; i = (i + 1) & (m->cap - 1)) {
        if (m->v[i].rid == rid)
            return &m->v[i];
    }
    return NULL;
}

static int
lmap_grow(struct fq_lmap *m)
{
    struct fq_lmap g = { .cap = m->cap ? m->cap * 2 : 64 };

    g.v = nv__calloc(g.cap, sizeof(*g.v));
    if (g.v == NULL)
        return -1;
    for (size_t k = 0; k < m->cap; k++) {
        if (m->v[k].rid != 0) {
            size_t i = lslot(&g, m->v[k].rid);

            while (g.v[i].rid != 0)
                i = (i + 1) & (g.cap - 1);
            g.v[i] = m->v[k];
        }
    }
    g.n = m->n;
    nv__free(m->v);
    *m = g;
    return 0;
}

int
fq_lease_put(struct fq *fq, struct qstate *qs, int64_t rid, int64_t until,
             int prio, int lifo, nv_error *err)
{
    struct fq_lmap *m = &qs->active;
    struct fq_lease *l = fq_lease_get(qs, rid);
    size_t i;

    if (l == NULL) {
        if ((m->n + 1) * 2 > m->cap && lmap_grow(m) != 0) {
            fq->need_load = 1;
            return fdb_oom("queue", err);
        }
        for (i = lslot(m, rid); m->v[i].rid != 0; i = (i + 1) & (m->cap - 1))
            ;
        l = &m->v[i];
        l->rid = rid;
        m->n++;
    }
    l->until = until;
    l->prio = prio;
    l->lifo = lifo;
    return NV_OK;
}

void
fq_lease_drop(struct qstate *qs, int64_t rid)
{
    struct fq_lmap *m = &qs->active;
    struct fq_lease *l = fq_lease_get(qs, rid);
    size_t i, j;

    if (l == NULL)
        return;
    /* Backward-shift deletion: no tombstones. */
    i = (size_t)(l - m->v);
    m->v[i].rid = 0;
    m->n--;
    for (j = (i + 1) & (m->cap - 1); m->v[j].rid != 0;
         j = (j + 1) & (m->cap - 1)) {
        size_t home = lslot(m, m->v[j].rid);

        /* Move j back to i unless its home lies cyclically in (i, j]. */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            m->v[i] = m->v[j];
            m->v[j].rid = 0;
            i = j;
        }
    }
}

/* ---- Cached records (queue.h) ---- */

static size_t
rslot(const struct fq_recmap *m, int64_t rid)
{
    uint64_t h = (uint64_t)rid * 0x9e3779b97f4a7c15ull;

    return (size_t)(h >> 32) & (m->cap - 1);
}

static struct fq_rslot *
rec_find(const struct fq_recmap *m, int64_t rid)
{
    if (m->n == 0)
        return NULL;
    for (size_t i = rslot(m, rid); m->v[i].rid != 0; i = (i + 1) & (m->cap - 1)) {
        if (m->v[i].rid == rid)
            return &m->v[i];
    }
    return NULL;
}

int
fq_rec_put(struct fq *fq, int64_t rid, struct fq_rec *rec)
{
    struct fq_recmap *m = &fq->recs;
    size_t i;

    if ((m->n + 1) * 2 > m->cap) {
        struct fq_recmap g = { .cap = m->cap ? m->cap * 2 : 64 };

        g.v = nv__calloc(g.cap, sizeof(*g.v));
        if (g.v == NULL)
            return -1;
        for (size_t k = 0; k < m->cap; k++) {
            if (m->v[k].rid != 0) {
                for (i = rslot(&g, m->v[k].rid); g.v[i].rid != 0;
                     i = (i + 1) & (g.cap - 1))
                    ;
                g.v[i] = m->v[k];
            }
        }
        g.n = m->n;
        nv__free(m->v);
        *m = g;
    }
    for (i = rslot(m, rid); m->v[i].rid != 0 && m->v[i].rid != rid;
         i = (i + 1) & (m->cap - 1))
        ;
    if (m->v[i].rid == rid) {
        /* a rowid again: its record must be a rolled-back one (load()
         * forgets them all first, so this is only a second guard) */
        fq_rec_free(fq, m->v[i].rec);
    } else {
        m->v[i].rid = rid;
        m->n++;
    }
    m->v[i].rec = rec;
    return 0;
}

struct fq_rec *
fq_rec_take(struct fq *fq, int64_t rid)
{
    struct fq_recmap *m = &fq->recs;
    struct fq_rslot *s = rec_find(m, rid);
    struct fq_rec *rec;
    size_t i, j;

    if (s == NULL)
        return NULL;
    rec = s->rec;
    /* Backward-shift deletion, as fq_lease_drop. */
    i = (size_t)(s - m->v);
    m->v[i].rid = 0;
    m->v[i].rec = NULL;
    m->n--;
    for (j = (i + 1) & (m->cap - 1); m->v[j].rid != 0;
         j = (j + 1) & (m->cap - 1)) {
        size_t home = rslot(m, m->v[j].rid);

        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            m->v[i] = m->v[j];
            m->v[j].rid = 0;
            m->v[j].rec = NULL;
            i = j;
        }
    }
    /* Give memory back once a big backlog is gone. */
    if (m->n == 0 && m->cap > 1024) {
        nv__free(m->v);
        m->v = NULL;
        m->cap = 0;
    }
    return rec;
}

void
fq_rec_drop(struct fq *fq, int64_t rid)
{
    struct fq_rec *rec = fq_rec_take(fq, rid);

    if (rec != NULL)
        fq_rec_free(fq, rec);
}

void
fq_recs_clear(struct fq *fq)
{
    struct fq_recmap *m = &fq->recs;

    for (size_t i = 0; i < m->cap; i++) {
        if (m->v[i].rid != 0)
            fq_rec_free(fq, m->v[i].rec);
    }
    nv__free(m->v);
    memset(m, 0, sizeof(*m));
}

/* ---- The writer's memory ---- */

static struct qstate *
qs_find(struct fq *fq, const char *queue)
{
    for (struct qstate *q = fq->qs; q != NULL; q = q->next) {
        if (strcmp(q->name, queue) == 0)
            return q;
    }
    return NULL;
}

struct qstate *
fq_qstate(struct fq *fq, const char *queue)
{
    struct qstate *q = qs_find(fq, queue);
    size_t len;

    if (q != NULL)
        return q;
    len = strlen(queue);
    q = nv__calloc(1, sizeof(*q) + len + 1);
    if (q == NULL)
        return NULL;
    memcpy(q->name, queue, len + 1);
    q->ots = INT64_MIN;
    pthread_mutex_lock(&fq->cmu);
    q->next = fq->qs;
    fq->qs = q;
    pthread_mutex_unlock(&fq->cmu);
    return q;
}

static void
qs_clear(struct qstate *q)
{
    nv__free(q->wait.v);
    nv__free(q->delay.v);
    nv__free(q->done[0].v);
    nv__free(q->done[1].v);
    nv__free(q->wait.r);
    nv__free(q->delay.r);
    nv__free(q->done[0].r);
    nv__free(q->done[1].r);
    nv__free(q->active.v);
    memset(&q->wait, 0, sizeof(q->wait));
    memset(&q->delay, 0, sizeof(q->delay));
    memset(q->done, 0, sizeof(q->done));
    memset(&q->active, 0, sizeof(q->active));
    memset(q->n, 0, sizeof(q->n));
    q->paused = 0;
    q->qnum = q->oseq = 0;
    q->ots = INT64_MIN;
    /* q->excess stays: a reload inside a batch finds the rows as they
     * are, those retention will remove included (forget_all clears it
     * when the batch is rolled back instead). */
}

/* Readers see the counts and pause flags of the last commit. */
static void
publish(struct fq *fq)
{
    for (struct qstate *q = fq->qs; q != NULL; q = q->next) {
        memcpy(q->pub, q->n, sizeof(q->pub));
        q->pub_paused = q->paused;
        q->pub_qnum = q->qnum;
    }
}

/* snap_mu is held across a COMMIT and its publication, so that a
 * listing's snapshot and counts agree; counts alone take only cmu, and
 * do not wait for a COMMIT (with FULL, an fsync). */
static void
pre_commit(void *ud)
{
    struct fq *fq = ud;

    pthread_mutex_lock(&fq->snap_mu);
}

static void
post_commit(void *ud, int ok)
{
    struct fq *fq = ud;

    if (ok) {
        pthread_mutex_lock(&fq->cmu);
        publish(fq);
        pthread_mutex_unlock(&fq->cmu);
    }
    pthread_mutex_unlock(&fq->snap_mu);
}

/* A batch was rolled back: what its ops did to memory may not be true,
 * and the retention its finishes left pending is undone with them. */
static void
forget_all(void *ud)
{
    struct fq *fq = ud;

    fq->need_load = 1;
    fq->trims = 0;
    for (struct qstate *q = fq->qs; q != NULL; q = q->next)
        q->excess[0] = q->excess[1] = 0;
}

/*
 * Load the writer's memory from the database: every queue's pause flag,
 * and every job's state and order (one pass over the table), and the
 * ordering counter. At open, and after a rolled-back batch.
 */
static int
load(struct fdb_conn *c, struct fq *fq, nv_error *err)
{
    struct qstate *q, *last = NULL;
    int rc;

    for (q = fq->qs; q != NULL; q = q->next)
        qs_clear(q);
    fq_recs_clear(fq);
    fq->seq = 0;
    fq->qnum_max = fq->spill_min = 0;
    {
        FDB_STMT(c, st, "SELECT name, paused, num FROM queues");
        while ((rc = fdb_step_row(c, st, err)) == 1) {
            q = fq_qstate(fq, (const char *)sqlite3_column_text(st, 0));
            if (q == NULL) {
                sqlite3_reset(st);
                return fdb_oom("queue", err);
            }
            q->paused = sqlite3_column_int(st, 1) != 0;
            q->qnum = sqlite3_column_int64(st, 2);
            if (q->qnum > fq->qnum_max)
                fq->qnum_max = q->qnum;
        }
        sqlite3_reset(st);
        if (rc < 0)
            return rc;
    }
    FDB_STMT(c, st, "SELECT rid, queue, state, sk1, sk2, priority, lifo,"
                    " timestamp FROM jobs");
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        int64_t rid = sqlite3_column_int64(st, 0);
        int state = sqlite3_column_int(st, 2);
        int64_t k1 = sqlite3_column_int64(st, 3);
        int64_t k2 = sqlite3_column_int64(st, 4);
        struct fq_heap *h;

        if (last == NULL || strcmp(last->name, name) != 0)
            last = fq_qstate(fq, name);
        if (last == NULL) {
            rc = fdb_oom("queue", err);
            break;
        }
        if (k2 > fq->seq)
            fq->seq = k2;
        if (-k2 > fq->seq)
            fq->seq = -k2;
        if (rid < FQ_ORDERED_MIN) {
            if (rid < fq->spill_min)
                fq->spill_min = rid;
        } else if (rid >> FQ_QSHIFT == last->qnum) {
            int64_t ts = sqlite3_column_int64(st, 7);

            if ((rid & FQ_SEQ_MAX) >= last->oseq)
                last->oseq = (rid & FQ_SEQ_MAX) + 1;
            if (ts > last->ots)
                last->ots = ts;
        }
        if (state < 0 || state > 4)
            continue;
        last->n[state]++;
        if (state == NV_JOB_ACTIVE) {
            rc = fq_lease_put(fq, last, rid, k1, sqlite3_column_int(st, 5),
                              sqlite3_column_int(st, 6), err);
            if (rc != NV_OK)
                break;
        } else if ((h = fq_heap_of(last, state)) != NULL &&
                   order_append(h, &(struct fq_ent){ k1, k2, rid }) != 0) {
            rc = fdb_oom("queue", err);
            break;
        }
    }
    sqlite3_reset(st);
    if (rc < 0)
        return rc;
    for (q = fq->qs; q != NULL; q = q->next) {
        heapify(&q->wait);
        heapify(&q->delay);
        heapify(&q->done[0]);
        heapify(&q->done[1]);
    }
    fq->need_load = 0;
    return NV_OK;
}

/* The writer's memory as the rows are, (re)loaded when it may not be. */
static int
loaded(struct fdb_conn *c, struct fq *fq, nv_error *err)
{
    if (fq->need_load && load(c, fq, err) != NV_OK) {
        fq->need_load = 1;
        return err->code;
    }
    return NV_OK;
}

/* The flush of every batch (fdb_on_flush): the retention its finishes
 * left pending (queue_finish.c, retain). */
static int
flush(struct fdb_conn *c, void *ud, nv_error *err)
{
    struct fq *fq = ud;
    int rc;

    if (!fq->trims)
        return NV_OK;
    if ((rc = loaded(c, fq, err)) != NV_OK)
        return rc;
    fq->trims = 0;
    for (struct qstate *q = fq->qs; q != NULL; q = q->next) {
        if ((q->excess[0] > 0 || q->excess[1] > 0) &&
            (rc = fq_trim(c, fq, q, err)) != NV_OK)
            return rc;
    }
    return NV_OK;
}

struct qstate *
fq_qs_write(struct fdb_conn *c, struct fq *fq, const char *queue,
            nv_error *err)
{
    struct qstate *qs;

    if (loaded(c, fq, err) != NV_OK)
        return NULL;
    qs = fq_qstate(fq, queue);
    if (qs == NULL)
        fdb_oom("queue", err);
    return qs;
}

int
fq_qs_for_id(struct fdb_conn *c, struct fq *fq, const char *queue,
             struct qstate **qs, nv_error *err)
{
    int rc = loaded(c, fq, err);

    *qs = rc == NV_OK ? qs_find(fq, queue) : NULL;
    return *qs != NULL ? fq_trim(c, fq, *qs, err) : rc;
}

/* 'k' jobs went from stored state 'from' to 'to' (-1: none). */
void
fq_count_move(struct qstate *qs, int from, int to, int64_t k)
{
    if (from >= 0 && from < 5)
        qs->n[from] -= k;
    if (to >= 0 && to < 5)
        qs->n[to] += k;
}

/* The sk2 of a job becoming waiting now. */
int64_t
fq_wait_seq(struct fq *fq, int lifo)
{
    fq->seq++;
    return lifo ? -fq->seq : fq->seq;
}

/* The rowid for a new job (the listing layout, at the top of this file). */
int
fq_rid_new(struct fdb_conn *c, struct fq *fq, struct qstate *qs, int64_t ts,
           int64_t *rid, nv_error *err)
{
    if (qs->qnum == 0 && fq->qnum_max < FQ_QNUM_MAX) {
        FDB_STMT(c, st, "INSERT INTO queues(name, paused, num)"
                        " VALUES (?1, 0, ?2)"
                        " ON CONFLICT(name) DO UPDATE SET num = excluded.num");
        int rc;

        fdb_bind_text(st, 1, qs->name);
        sqlite3_bind_int64(st, 2, fq->qnum_max + 1);
        if ((rc = fdb_run(c, st, err)) != NV_OK)
            return rc;
        qs->qnum = ++fq->qnum_max;
    }
    if (qs->qnum != 0 && ts >= qs->ots && qs->oseq <= FQ_SEQ_MAX)
        *rid = qs->qnum << FQ_QSHIFT | qs->oseq;
    else
        *rid = fq->spill_min - 1;
    return NV_OK;
}

void
fq_rid_taken(struct fq *fq, struct qstate *qs, int64_t rid, int64_t ts)
{
    if (rid >= FQ_ORDERED_MIN) {
        qs->oseq = (rid & FQ_SEQ_MAX) + 1;
        qs->ots = ts;
    } else if (rid < fq->spill_min) {
        fq->spill_min = rid;
    }
}

/* The hint slot of a lease token (FNV-1a; tokens are random hex). */
struct lease_hint *
fq_hint(struct fq *fq, const char *token)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)token; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &fq->hints[h & (FQ_HINTS - 1)];
}

/* ---- Counts: the last commit's, without a query ---- */

int
fq_counts(void *self, const char *queue, nv_job_counts *out, nv_error *err)
{
    struct fq *fq = self;
    struct qstate *q;

    (void)err;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&fq->cmu);
    q = qs_find(fq, queue);
    if (q != NULL) {
        if (q->pub_paused)
            out->paused = q->pub[NV_JOB_WAITING];
        else
            out->waiting = q->pub[NV_JOB_WAITING];
        out->delayed = q->pub[NV_JOB_DELAYED];
        out->active = q->pub[NV_JOB_ACTIVE];
        out->completed = q->pub[NV_JOB_COMPLETED];
        out->failed = q->pub[NV_JOB_FAILED];
    }
    pthread_mutex_unlock(&fq->cmu);
    return NV_OK;
}

/* For a listing: the counts of 'queue' per stored state, its pause
 * flag and its number, as of the snapshot 'c' reads (the caller's read
 * transaction starts here, under snap_mu, so no commit falls between the
 * two). */
int
fq_counts_snapshot(struct fdb_conn *c, struct fq *fq, const char *queue,
                   int64_t n[5], int *paused, int64_t *qnum, nv_error *err)
{
    FDB_STMT(c, st, "SELECT 1 FROM queues LIMIT 1");
    struct qstate *q;
    int rc;

    pthread_mutex_lock(&fq->snap_mu);
    rc = fdb_step_row(c, st, err);      /* any read starts the snapshot */
    sqlite3_reset(st);
    pthread_mutex_lock(&fq->cmu);
    q = qs_find(fq, queue);
    *paused = q != NULL && q->pub_paused;
    *qnum = q != NULL ? q->pub_qnum : 0;
    for (int s = 0; s < 5; s++)
        n[s] = q != NULL ? q->pub[s] : 0;
    pthread_mutex_unlock(&fq->cmu);
    pthread_mutex_unlock(&fq->snap_mu);
    return rc < 0 ? rc : NV_OK;
}

/* ---- Pause (Q-13) ---- */

struct pause_args {
    struct fq  *fq;
    const char *queue;
    int         paused;
};

static int
set_paused_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct pause_args *a = arg;
    struct qstate *qs = fq_qs_write(c, a->fq, a->queue, err);
    int rc;

    if (qs == NULL)
        return err->code;
    FDB_STMT(c, st, "INSERT INTO queues(name, paused) VALUES (?1, ?2)"
                    " ON CONFLICT(name) DO UPDATE SET paused = excluded.paused");
    fdb_bind_text(st, 1, a->queue);
    sqlite3_bind_int(st, 2, a->paused ? 1 : 0);
    if ((rc = fdb_run(c, st, err)) == NV_OK)
        qs->paused = a->paused ? 1 : 0;
    return rc;
}

static void
set_paused_after(void *arg)
{
    struct pause_args *a = arg;

    if (!a->paused)
        fq_notify(a->fq, a->queue);
}

static int
fq_set_paused(void *self, const char *queue, int paused, nv_error *err)
{
    struct pause_args a = { .fq = self, .queue = queue, .paused = paused };

    return fdb_write(a.fq->db, set_paused_fn, set_paused_after, &a, err);
}

static int
is_paused_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct pause_args *a = arg;

    return fq_paused_read(c, a->queue, &a->paused, err);
}

static int
fq_is_paused(void *self, const char *queue, int *paused, nv_error *err)
{
    struct pause_args a = { .fq = self, .queue = queue };
    int rc = fdb_read(a.fq->db, is_paused_fn, &a, err);

    if (rc == NV_OK)
        *paused = a.paused;
    return rc;
}

/* ---- ping, close, open ---- */

static int
fq_ping(void *self, nv_error *err)
{
    struct fq *fq = self;

    return fdb_ping(fq->db, err);
}

static void
fq_close(void *self)
{
    struct fq *fq = self;

    if (fq == NULL)
        return;
    fdb_close(fq->db);
    while (fq->qs != NULL) {
        struct qstate *n = fq->qs->next;

        qs_clear(fq->qs);
        nv__free(fq->qs);
        fq->qs = n;
    }
    fq_wait_release(fq);
    fq_recs_clear(fq);
    nv__free(fq->hints);
    pthread_mutex_destroy(&fq->wmu);
    pthread_mutex_destroy(&fq->cmu);
    pthread_mutex_destroy(&fq->snap_mu);
    pthread_cond_destroy(&fq->wcv);
    nv__free(fq);
}

static const nv_queue_ops file_queue_ops = {
    .name = "file",
    .enqueue = fq_enqueue,
    .enqueue_many = fq_enqueue_many,
    .reserve = fq_reserve,
    .extend = fq_extend,
    .finish = fq_finish,
    .finish_reserve = fq_finish_reserve,
    .progress = fq_progress,
    .log = fq_log,
    .get = fq_get,
    .list = fq_list,
    .counts = fq_counts,
    .set_paused = fq_set_paused,
    .is_paused = fq_is_paused,
    .remove = fq_remove,
    .retry = fq_retry,
    .reap = fq_reap,
    .wait = fq_wait,
    .wake = fq_wake,
    .ping = fq_ping,
    .close = fq_close,
};

/* The writer's memory, from the database as opened. */
static int
load_open(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct fq *fq = arg;
    int rc = load(c, fq, err);

    if (rc == NV_OK) {
        pthread_mutex_lock(&fq->cmu);
        publish(fq);
        pthread_mutex_unlock(&fq->cmu);
    }
    return rc;
}

int
nv_file_queue_open(const char *settings_json, nv_queue *out, nv_error *err)
{
    struct fq *fq = nv__calloc(1, sizeof(*fq));
    pthread_condattr_t ca;
    int rc;

    if (fq == NULL)
        return fdb_oom("queue", err);
    pthread_mutex_init(&fq->wmu, NULL);
    pthread_mutex_init(&fq->cmu, NULL);
    pthread_mutex_init(&fq->snap_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fq->wcv, &ca);
    pthread_condattr_destroy(&ca);
    fq->hints = nv__calloc(FQ_HINTS, sizeof(*fq->hints));
    if (fq->hints == NULL) {
        fq_close(fq);
        return fdb_oom("queue", err);
    }
    rc = fdb_open(settings_json, &queue_schema, &fq->db, err);
    if (rc == NV_OK) {
        fdb_on_abort(fq->db, forget_all, fq);
        fdb_on_flush(fq->db, flush, fq);
        fdb_on_commit(fq->db, pre_commit, post_commit, fq);
        rc = fdb_read(fq->db, load_open, fq, err);
    }
    if (rc != NV_OK) {
        fq_close(fq);
        return rc;
    }
    out->ops = &file_queue_ops;
    out->self = fq;
    return NV_OK;
}
