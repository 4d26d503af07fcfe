/*
 * File queue adapter: jobs, leases, pause flags and limiter windows in
 * <dataDir>/queue.db (see fdb.c for the database, group commit and the
 * lock file; adapter.h for the contract of each op). This file holds the
 * schema, the writer's per-queue cache, pause, open/close and the ops
 * table; queue.h lists the other files of the adapter.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "adapters/file/queue.h"

/*
 * Schema, version 1.
 *
 * jobs: one row per job. 'state' is the stored state (waiting, delayed,
 * active, completed, failed; "paused" is only reported). (sk1, sk2) is
 * the order inside a state, served by the index jobs_sched:
 *   waiting    (priority, seq)  -- seq from a counter; -seq for lifo, so
 *                                  a later lifo job goes first
 *   delayed    (delay_until, seq)
 *   active     (lease_until, 0)  -- the reaper reads expired leases
 *   completed, failed (finished_on, seq) -- retention drops the oldest
 * The writer keeps the number of jobs per state of each queue in memory
 * (struct qstate), so capacity and retention never scan;
 * the counts op (a read) counts on the index.
 * queues: the paused flag. limits: activation times inside the
 * limiter window, per group key ('' = no group, '=<value>' otherwise).
 */
#define QUEUE_SCHEMA_VERSION 1

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
            "CREATE INDEX jobs_sched ON jobs(queue, state, sk1, sk2);"
            "CREATE INDEX jobs_time ON jobs(queue, timestamp, id);"
            "CREATE TABLE queues(name TEXT PRIMARY KEY,"
            " paused INTEGER NOT NULL) WITHOUT ROWID;"
            "CREATE TABLE limits(queue TEXT NOT NULL, grp TEXT NOT NULL,"
            " ts INTEGER NOT NULL);"
            "CREATE INDEX limits_q ON limits(queue, ts);",
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

/* ---- The writer's cache ---- */

struct qstate *
fq_qstate(struct fq *fq, const char *queue)
{
    struct qstate *q;
    size_t len = strlen(queue);

    for (q = fq->qs; q != NULL; q = q->next) {
        if (strcmp(q->name, queue) == 0)
            return q;
    }
    q = nv__calloc(1, sizeof(*q) + len + 1);
    if (q == NULL)
        return NULL;
    memcpy(q->name, queue, len + 1);
    q->paused = -1;
    q->next = fq->qs;
    fq->qs = q;
    return q;
}

/* A batch was rolled back: what its ops cached may not be true. */
static void
forget_all(void *ud)
{
    struct fq *fq = ud;

    for (struct qstate *q = fq->qs; q != NULL; q = q->next) {
        q->paused = -1;
        q->next_due = 0;
        q->n_known = 0;
    }
}

/* A job becomes delayed until 'at'. */
void
fq_due_at(struct qstate *qs, int64_t at)
{
    if (qs->next_due != 0 && at < qs->next_due)
        qs->next_due = at;
}

/* fq_paused_read for the writer, through the cache. */
int
fq_paused_cached(struct fdb_conn *c, struct qstate *qs, int *paused,
                 nv_error *err)
{
    int rc;

    if (qs->paused < 0) {
        if ((rc = fq_paused_read(c, qs->name, paused, err)) != NV_OK)
            return rc;
        qs->paused = *paused;
    }
    *paused = qs->paused;
    return NV_OK;
}

/* The writer's counts of 'qs', loaded once (then kept by fq_count_move). */
int
fq_counts_load(struct fdb_conn *c, struct qstate *qs, nv_error *err)
{
    int rc;

    if (qs->n_known)
        return NV_OK;
    FDB_STMT(c, st, "SELECT state, count(*) FROM jobs WHERE queue = ?1"
                    " GROUP BY state");
    memset(qs->n, 0, sizeof(qs->n));
    fdb_bind_text(st, 1, qs->name);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        int state = sqlite3_column_int(st, 0);

        if (state >= 0 && state < 5)
            qs->n[state] = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc < 0)
        return rc;
    qs->n_known = 1;
    return NV_OK;
}

/* 'k' jobs went from stored state 'from' to 'to' (-1: none). */
void
fq_count_move(struct qstate *qs, int from, int to, int64_t k)
{
    if (!qs->n_known)
        return;
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

/* The hint slot of a lease token (FNV-1a; tokens are random hex). */
struct lease_hint *
fq_hint(struct fq *fq, const char *token)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)token; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &fq->hints[h & (FQ_HINTS - 1)];
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
    struct qstate *qs = fq_qstate(a->fq, a->queue);

    if (qs == NULL)
        return fdb_oom("queue", err);
    qs->paused = a->paused ? 1 : 0;

    FDB_STMT(c, st, "INSERT INTO queues VALUES (?1, ?2) ON CONFLICT(name)"
                    " DO UPDATE SET paused = excluded.paused");
    fdb_bind_text(st, 1, a->queue);
    sqlite3_bind_int(st, 2, a->paused ? 1 : 0);
    return fdb_run(c, st, err);
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

        nv__free(fq->qs);
        fq->qs = n;
    }
    fq_wait_release(fq);
    nv__free(fq->hints);
    pthread_mutex_destroy(&fq->wmu);
    pthread_cond_destroy(&fq->wcv);
    nv__free(fq);
}

static const nv_queue_ops file_queue_ops = {
    .name = "file",
    .enqueue = fq_enqueue,
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

/* The ordering counter goes on from the largest one stored. */
static int
load_seq(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct fq *fq = arg;
    FDB_STMT(c, st, "SELECT max(coalesce(max(sk2), 0), -coalesce(min(sk2), 0))"
                    " FROM jobs");
    int rc = fdb_step_row(c, st, err);

    if (rc == 1)
        fq->seq = sqlite3_column_int64(st, 0);
    return rc < 0 ? rc : NV_OK;
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
        rc = fdb_read(fq->db, load_seq, fq, err);
    }
    if (rc != NV_OK) {
        fq_close(fq);
        return rc;
    }
    out->ops = &file_queue_ops;
    out->self = fq;
    return NV_OK;
}
