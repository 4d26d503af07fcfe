/*
 * File queue adapter: jobs, leases, pause flags and limiter windows in
 * <dataDir>/queue.db (see fdb.c for the database, group commit and the
 * lock file; adapter.h for the contract of each op). Waiters of a queue
 * sleep on an in-process condition variable, woken after the commit of
 * any change that may make a job runnable.
 */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/file/fdb.h"

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

/* ---- The adapter ---- */

/* Wake-up generation of one queue; guarded by fq.wmu. */
struct qgen {
    struct qgen *next;
    uint64_t     gen;
    char         name[];
};

/*
 * What the writer knows of a queue without asking the database. Touched
 * only inside write ops (by the group-commit leader), so it needs no lock;
 * forgotten when a batch is rolled back (forget_all).
 */
struct qstate {
    struct qstate *next;
    int            paused;     /* -1: unknown */
    int64_t        next_due;   /* no delayed job is due before this;
                                  0: unknown, INT64_MAX: none delayed */
    int            n_known;    /* n[] is loaded */
    int64_t        n[5];       /* jobs per stored state */
    char           name[];
};

struct fq {
    struct fdb     *db;
    int64_t         seq;       /* ordering counter (sk2); leader only */
    struct qstate  *qs;        /* leader only */

    pthread_mutex_t wmu;       /* guards gens, woken */
    pthread_cond_t  wcv;
    struct qgen    *gens;
    uint64_t        woken;     /* bumped by wake() */
};

/* What the last reserve of this thread saw, so that a job enqueued
 * between that reserve and the following wait is not slept through. */
static _Thread_local struct {
    const struct fq   *fq;
    const struct qgen *q;
    uint64_t           gen;
} tl_seen;

static struct qgen *
qgen_get(struct fq *fq, const char *queue)
{
    struct qgen *q;
    size_t len = strlen(queue);

    for (q = fq->gens; q != NULL; q = q->next) {
        if (strcmp(q->name, queue) == 0)
            return q;
    }
    q = nv__calloc(1, sizeof(*q) + len + 1);
    if (q == NULL)
        return NULL;
    memcpy(q->name, queue, len + 1);
    q->next = fq->gens;
    fq->gens = q;
    return q;
}

static struct qstate *
qstate_get(struct fq *fq, const char *queue)
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
static void
due_at(struct qstate *qs, int64_t at)
{
    if (qs->next_due != 0 && at < qs->next_due)
        qs->next_due = at;
}

static void
notify(struct fq *fq, const char *queue)
{
    struct qgen *q;

    pthread_mutex_lock(&fq->wmu);
    q = qgen_get(fq, queue);
    if (q != NULL)
        q->gen++;
    else
        fq->woken++;    /* out of memory: wake everybody instead */
    pthread_cond_broadcast(&fq->wcv);
    pthread_mutex_unlock(&fq->wmu);
}

/* ---- Rows ---- */

#define JOB_COLS \
    "id, queue, name, run_id, flow_name, step_name, data, opts, state," \
    " priority, lifo, remove_on_complete, remove_on_fail, attempts_made," \
    " stalled_count, progress, progress_data, timestamp, delay_until," \
    " processed_on, finished_on, returnvalue, failed_reason, logs, grp," \
    " lease_until, lease_token, rid"
#define COL_RID 27

/* Fill 'j' from the current row; 'paused' turns waiting into paused. */
static int
job_from_row(sqlite3_stmt *st, int paused, nv_job *j, nv_error *err)
{
    int bad = 0;

    memset(j, 0, sizeof(*j));
    fdb_col_copy(st, 0, j->id, sizeof(j->id));
    fdb_col_copy(st, 1, j->queue, sizeof(j->queue));
    fdb_col_copy(st, 2, j->name, sizeof(j->name));
    fdb_col_copy(st, 3, j->run_id, sizeof(j->run_id));
    fdb_col_copy(st, 4, j->flow_name, sizeof(j->flow_name));
    fdb_col_copy(st, 5, j->step_name, sizeof(j->step_name));
    j->data = fdb_col_dup(st, 6, &bad);
    j->opts = fdb_col_dup(st, 7, &bad);
    j->state = sqlite3_column_int(st, 8);
    if (j->state == NV_JOB_WAITING && paused)
        j->state = NV_JOB_PAUSED;
    j->priority = sqlite3_column_int(st, 9);
    j->lifo = sqlite3_column_int(st, 10);
    j->remove_on_complete = sqlite3_column_int64(st, 11);
    j->remove_on_fail = sqlite3_column_int64(st, 12);
    j->attempts_made = sqlite3_column_int(st, 13);
    j->stalled_count = sqlite3_column_int(st, 14);
    j->progress = sqlite3_column_double(st, 15);
    j->progress_data = fdb_col_dup(st, 16, &bad);
    j->timestamp = sqlite3_column_int64(st, 17);
    j->delay_until = sqlite3_column_int64(st, 18);
    j->processed_on = sqlite3_column_int64(st, 19);
    j->finished_on = sqlite3_column_int64(st, 20);
    j->returnvalue = fdb_col_dup(st, 21, &bad);
    j->failed_reason = fdb_col_dup(st, 22, &bad);
    j->logs = fdb_col_dup(st, 23, &bad);
    j->group = fdb_col_dup(st, 24, &bad);
    j->lease_until = sqlite3_column_int64(st, 25);
    fdb_col_copy(st, 26, j->lease_token, sizeof(j->lease_token));
    if (bad) {
        nv_job_release(j);
        return fdb_oom("queue", err);
    }
    return NV_OK;
}

static int
is_paused(struct fdb_conn *c, const char *queue, int *paused, nv_error *err)
{
    FDB_STMT(c, st, "SELECT paused FROM queues WHERE name = ?1");
    int rc;

    fdb_bind_text(st, 1, queue);
    rc = fdb_step_row(c, st, err);
    if (rc < 0)
        return rc;
    *paused = rc == 1 && sqlite3_column_int(st, 0) != 0;
    sqlite3_reset(st);
    return NV_OK;
}

/* is_paused for the writer, through the cache. */
static int
paused_cached(struct fdb_conn *c, struct qstate *qs, int *paused,
              nv_error *err)
{
    int rc;

    if (qs->paused < 0) {
        if ((rc = is_paused(c, qs->name, paused, err)) != NV_OK)
            return rc;
        qs->paused = *paused;
    }
    *paused = qs->paused;
    return NV_OK;
}

/* Read a job by id into 'out' (reported state). NV_EJOB_NOT_FOUND. */
static int
load_job(struct fdb_conn *c, const char *queue, const char *id, nv_job *out,
         int64_t *rid, nv_error *err)
{
    FDB_STMT(c, st, "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1 AND id = ?2");
    int rc, paused;

    if ((rc = is_paused(c, queue, &paused, err)) != NV_OK)
        return rc;
    fdb_bind_text(st, 1, queue);
    fdb_bind_text(st, 2, id);
    rc = fdb_step_row(c, st, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return nv__error(err, NV_EJOB_NOT_FOUND, "job '%s' not found in "
                         "queue '%s'", id, queue);
    if (rid != NULL)
        *rid = sqlite3_column_int64(st, COL_RID);
    rc = job_from_row(st, paused, out, err);
    sqlite3_reset(st);
    return rc;
}

/* Jobs of 'queue' whose stored state is in 'mask', counted on the
 * index (reads). */
static int64_t
count_of(struct fdb_conn *c, const char *queue, unsigned mask, nv_error *err,
         int *rc)
{
    sqlite3_stmt *st = fdb_stmt(c, "SELECT count(*) FROM jobs"
                                   " WHERE queue = ?1 AND (?2 >> state) & 1");
    int64_t n = 0;

    if (st == NULL) {
        *rc = fdb_fail(c, sqlite3_errcode(fdb_handle(c)), err);
        return 0;
    }
    fdb_bind_text(st, 1, queue);
    sqlite3_bind_int64(st, 2, mask);
    *rc = fdb_step_row(c, st, err);
    if (*rc == 1)
        n = sqlite3_column_int64(st, 0);
    *rc = *rc < 0 ? *rc : NV_OK;
    sqlite3_reset(st);
    return n;
}

/* The writer's counts of 'qs', loaded once (then kept by count_move). */
static int
counts_load(struct fdb_conn *c, struct qstate *qs, nv_error *err)
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
static void
count_move(struct qstate *qs, int from, int to, int64_t k)
{
    if (!qs->n_known)
        return;
    if (from >= 0 && from < 5)
        qs->n[from] -= k;
    if (to >= 0 && to < 5)
        qs->n[to] += k;
}

/* apply the retention 'keep' of a job that just reached 'state'. */
static int
retain(struct fdb_conn *c, struct qstate *qs, int state, int64_t keep,
       int64_t rid, nv_error *err)
{
    int rc;
    int64_t n;

    if (keep < 0)
        return NV_OK;
    if (keep == 0) {
        FDB_STMT(c, st, "DELETE FROM jobs WHERE rid = ?1");
        sqlite3_bind_int64(st, 1, rid);
        if ((rc = fdb_run(c, st, err)) == NV_OK)
            count_move(qs, state, -1, 1);
        return rc;
    }
    if ((rc = counts_load(c, qs, err)) != NV_OK)
        return rc;
    n = qs->n[state];
    if (n <= keep)
        return NV_OK;
    /* Usually one over: the oldest goes, without a temporary table. */
    FDB_STMT(c, one, "DELETE FROM jobs WHERE rid = (SELECT rid FROM jobs"
                 " WHERE queue = ?1 AND state = ?2 ORDER BY sk1, sk2"
                 " LIMIT 1)");
    FDB_STMT(c, many, "DELETE FROM jobs WHERE rid IN (SELECT rid FROM jobs"
                  " WHERE queue = ?1 AND state = ?2 ORDER BY sk1, sk2"
                  " LIMIT ?3)");
    sqlite3_stmt *st = n - keep == 1 ? one : many;
    fdb_bind_text(st, 1, qs->name);
    sqlite3_bind_int(st, 2, state);
    if (st == many)
        sqlite3_bind_int64(st, 3, n - keep);
    if ((rc = fdb_run(c, st, err)) == NV_OK)
        count_move(qs, state, -1, sqlite3_changes(fdb_handle(c)));
    return rc;
}

/* The sk2 of a job becoming waiting now. */
static int64_t
wait_seq(struct fq *fq, int lifo)
{
    fq->seq++;
    return lifo ? -fq->seq : fq->seq;
}

/* ---- enqueue ---- */

struct enq_args {
    struct fq    *fq;
    const nv_job *job;
    int64_t       now, max_unfinished;
    nv_job        out;
    int           created;
};

static int
enqueue_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct enq_args *a = arg;
    const nv_job *j = a->job;
    struct qstate *qs = qstate_get(a->fq, j->queue);
    int rc, paused, delayed = j->delay_until > a->now;
    int64_t n;

    if (qs == NULL)
        return fdb_oom("queue", err);
    if (a->max_unfinished > 0) {
        /* Q-3 before Q-11: an existing job is returned, never refused. */
        rc = load_job(c, j->queue, j->id, &a->out, NULL, err);
        if (rc != NV_EJOB_NOT_FOUND) {
            a->created = 0;
            return rc;
        }
        nv__error_clear(err);
        if ((rc = counts_load(c, qs, err)) != NV_OK)
            return rc;
        n = qs->n[NV_JOB_WAITING] + qs->n[NV_JOB_DELAYED] +
            qs->n[NV_JOB_ACTIVE];
        if (n >= a->max_unfinished)
            return nv__error(err, NV_EQUEUE_FULL, "queue '%s' is full (%"
                             PRId64 " unfinished jobs)", j->queue, n);
    }
    if ((rc = paused_cached(c, qs, &paused, err)) != NV_OK)
        return rc;
    if (nv_job_copy(&a->out, j) != NV_OK)
        return fdb_oom("queue", err);
    a->out.state = delayed ? NV_JOB_DELAYED : NV_JOB_WAITING;
    if (a->out.timestamp == 0)
        a->out.timestamp = a->now;
    if (a->out.data == NULL && (a->out.data = nv__strdup("{}")) == NULL)
        return fdb_oom("queue", err);
    a->fq->seq++;
    FDB_STMT(c, st, "INSERT INTO jobs(queue, id, name, run_id, flow_name,"
                " step_name, data, opts, state, priority, lifo,"
                " remove_on_complete, remove_on_fail, attempts_made,"
                " stalled_count, progress, progress_data, timestamp,"
                " delay_until, processed_on, finished_on, returnvalue,"
                " failed_reason, logs, grp, lease_until, lease_token, sk1, sk2)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                " ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,"
                " ?25, 0, '', ?26, ?27) ON CONFLICT(queue, id) DO NOTHING");
    const nv_job *o = &a->out;
    fdb_bind_text(st, 1, o->queue);
    fdb_bind_text(st, 2, o->id);
    fdb_bind_text(st, 3, o->name);
    fdb_bind_text(st, 4, o->run_id);
    fdb_bind_text(st, 5, o->flow_name);
    fdb_bind_text(st, 6, o->step_name);
    fdb_bind_text(st, 7, o->data);
    fdb_bind_text(st, 8, o->opts);
    sqlite3_bind_int(st, 9, o->state);
    sqlite3_bind_int(st, 10, o->priority);
    sqlite3_bind_int(st, 11, o->lifo ? 1 : 0);
    sqlite3_bind_int64(st, 12, o->remove_on_complete);
    sqlite3_bind_int64(st, 13, o->remove_on_fail);
    sqlite3_bind_int(st, 14, o->attempts_made);
    sqlite3_bind_int(st, 15, o->stalled_count);
    sqlite3_bind_double(st, 16, o->progress);
    fdb_bind_text(st, 17, o->progress_data);
    sqlite3_bind_int64(st, 18, o->timestamp);
    sqlite3_bind_int64(st, 19, o->delay_until);
    sqlite3_bind_int64(st, 20, o->processed_on);
    sqlite3_bind_int64(st, 21, o->finished_on);
    fdb_bind_text(st, 22, o->returnvalue);
    fdb_bind_text(st, 23, o->failed_reason);
    fdb_bind_text(st, 24, o->logs);
    fdb_bind_text(st, 25, o->group);
    sqlite3_bind_int64(st, 26, delayed ? o->delay_until : o->priority);
    sqlite3_bind_int64(st, 27, delayed || !o->lifo ? a->fq->seq
                                                   : -a->fq->seq);
    if ((rc = fdb_run(c, st, err)) != NV_OK)
        return rc;
    if (sqlite3_changes(fdb_handle(c)) == 0) {
        /* the id exists; hand back the stored job. */
        nv_job_release(&a->out);
        a->created = 0;
        return load_job(c, j->queue, j->id, &a->out, NULL, err);
    }
    a->out.lease_until = 0;
    a->out.lease_token[0] = '\0';
    if (paused && a->out.state == NV_JOB_WAITING)
        a->out.state = NV_JOB_PAUSED;
    if (delayed)
        due_at(qs, o->delay_until);
    count_move(qs, -1, delayed ? NV_JOB_DELAYED : NV_JOB_WAITING, 1);
    a->created = 1;
    return NV_OK;
}

static void
enqueue_after(void *arg)
{
    struct enq_args *a = arg;

    if (a->created)
        notify(a->fq, a->job->queue);
}

static int
fq_enqueue(void *self, const nv_job *job, int64_t now, int64_t max_unfinished,
           nv_job *out, int *created, nv_error *err)
{
    struct enq_args a = { .fq = self, .job = job, .now = now,
                          .max_unfinished = max_unfinished };
    int rc;

    rc = fdb_write(a.fq->db, enqueue_fn, enqueue_after, &a, err);
    if (rc != NV_OK) {
        nv_job_release(&a.out);
        return rc;
    }
    if (created != NULL)
        *created = a.created;
    if (out != NULL)
        *out = a.out;
    else
        nv_job_release(&a.out);
    return NV_OK;
}

/* ---- reserve ---- */

struct res_args {
    struct fq         *fq;
    const char        *queue;
    int64_t            now, lease_ms;
    const nv_limiter  *lim;
    nv_job             out;
    int                found;
    int64_t            next_at;
};

/* Delayed jobs that are due become waiting, in due order; then
 * qs->next_due is the due time of the first delayed job left. */
static int
promote(struct fdb_conn *c, struct fq *fq, struct qstate *qs, int64_t now,
        nv_error *err)
{
    int64_t rids[64];
    int lifo[64], n, rc;

    if (qs->next_due != 0 && now < qs->next_due)
        return NV_OK;
    do {
        FDB_STMT(c, st, "SELECT rid, lifo FROM jobs WHERE queue = ?1"
                    " AND state = 1 AND sk1 <= ?2 ORDER BY sk1, sk2 LIMIT 64");
        fdb_bind_text(st, 1, qs->name);
        sqlite3_bind_int64(st, 2, now);
        for (n = 0; (rc = fdb_step_row(c, st, err)) == 1; n++) {
            rids[n] = sqlite3_column_int64(st, 0);
            lifo[n] = sqlite3_column_int(st, 1);
        }
        sqlite3_reset(st);
        if (rc < 0)
            return rc;
        for (int i = 0; i < n; i++) {
            FDB_STMT(c, up, "UPDATE jobs SET state = 0, sk1 = priority,"
                        " sk2 = ?2 WHERE rid = ?1");
            sqlite3_bind_int64(up, 1, rids[i]);
            sqlite3_bind_int64(up, 2, wait_seq(fq, lifo[i]));
            if ((rc = fdb_run(c, up, err)) != NV_OK)
                return rc;
            count_move(qs, NV_JOB_DELAYED, NV_JOB_WAITING, 1);
        }
    } while (n == 64);
    FDB_STMT(c, st, "SELECT min(sk1) FROM jobs WHERE queue = ?1 AND state = 1");
    fdb_bind_text(st, 1, qs->name);
    if ((rc = fdb_step_row(c, st, err)) < 0)
        return rc;
    qs->next_due = rc == 1 && sqlite3_column_type(st, 0) != SQLITE_NULL
                   ? sqlite3_column_int64(st, 0) : INT64_MAX;
    sqlite3_reset(st);
    return NV_OK;
}

/*
 * pick the first waiting job the limiter lets through. *rid = 0
 * when none; *win_at = when a saturated window next frees a slot.
 */
static int
limited_pick(struct fdb_conn *c, const struct res_args *a, int64_t *rid,
             int64_t *win_at, nv_error *err)
{
    const nv_limiter *lim = a->lim;
    int64_t since = a->now - lim->duration_ms;
    char **sat = NULL;
    size_t nsat = 0;
    int rc;

    *rid = 0;
    *win_at = 0;
    FDB_STMT(c, del, "DELETE FROM limits WHERE queue = ?1 AND ts <= ?2");
    fdb_bind_text(del, 1, a->queue);
    sqlite3_bind_int64(del, 2, since);
    if ((rc = fdb_run(c, del, err)) != NV_OK)
        return rc;
    /* Saturated groups (ungrouped: everything is group ''). */
    FDB_STMT(c, st, "SELECT grp, min(ts) FROM limits WHERE queue = ?1"
                " GROUP BY grp HAVING count(*) >= ?2");
    fdb_bind_text(st, 1, a->queue);
    sqlite3_bind_int64(st, 2, lim->max);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        int64_t at = sqlite3_column_int64(st, 1) + lim->duration_ms;
        char **v = nv__realloc(sat, (nsat + 1) * sizeof(*sat));
        int bad = 0;

        if (v == NULL || (v[nsat] = fdb_col_dup(st, 0, &bad)) == NULL) {
            sat = v ? v : sat;
            rc = fdb_oom("queue", err);
            break;
        }
        sat = v;
        nsat++;
        if (*win_at == 0 || at < *win_at)
            *win_at = at;
    }
    sqlite3_reset(st);
    if (rc < 0)
        goto out;
    rc = NV_OK;
    if (nsat > 0 && !lim->grouped)
        goto out;       /* the one window is full */
    FDB_STMT(c, w, "SELECT rid, CASE WHEN grp IS NULL THEN '' ELSE '=' || grp"
               " END FROM jobs WHERE queue = ?1 AND state = 0"
               " ORDER BY sk1, sk2");
    fdb_bind_text(w, 1, a->queue);
    while ((rc = fdb_step_row(c, w, err)) == 1) {
        const char *g = (const char *)sqlite3_column_text(w, 1);
        size_t i;

        for (i = 0; i < nsat && strcmp(sat[i], g ? g : "") != 0; i++)
            ;
        if (i == nsat) {
            *rid = sqlite3_column_int64(w, 0);
            break;
        }
    }
    sqlite3_reset(w);
    rc = rc < 0 ? rc : NV_OK;
out:
    nv_strv_free(sat, nsat);
    return rc;
}

/*
 * Finding nothing is not an error of the op: due delayed jobs were
 * promoted and old limiter entries dropped, and that is committed either
 * way (a->found = 0).
 */
static int
reserve_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct res_args *a = arg;
    struct qstate *qs = qstate_get(a->fq, a->queue);
    int limited = a->lim != NULL && a->lim->max > 0;
    int64_t rid = 0, win_at = 0, until = a->now + a->lease_ms;
    unsigned char rnd[16];
    char token[40];
    int rc = NV_OK, paused;

    a->next_at = 0;
    a->found = 0;
    if (qs == NULL)
        return fdb_oom("queue", err);
    if ((rc = promote(c, a->fq, qs, a->now, err)) != NV_OK ||
        (rc = paused_cached(c, qs, &paused, err)) != NV_OK)
        return rc;
    if (paused)
        return NV_OK;
    if (limited && (rc = limited_pick(c, a, &rid, &win_at, err)) != NV_OK)
        return rc;
    if (!limited || rid != 0) {
        /* The claim: read the first runnable job, then take it by rowid,
         * both inside this transaction (no other writer exists). Cheaper
         * in SQLite than one UPDATE ... RETURNING. */
        FDB_STMT(c, sel, "SELECT " JOB_COLS " FROM jobs WHERE rid = CASE"
                     " WHEN ?2 > 0 THEN ?2 ELSE (SELECT rid FROM jobs"
                     " WHERE queue = ?1 AND state = 0 ORDER BY sk1, sk2"
                     " LIMIT 1) END");
        fdb_bind_text(sel, 1, a->queue);
        sqlite3_bind_int64(sel, 2, rid);
        rc = fdb_step_row(c, sel, err);
        if (rc == 1) {
            rid = sqlite3_column_int64(sel, COL_RID);
            rc = job_from_row(sel, 0, &a->out, err);
        }
        sqlite3_reset(sel);
        if (rc < 0)
            return rc;
    }
    if (rc == NV_OK && rid != 0) {
        FDB_STMT(c, st, "UPDATE jobs SET state = 2, processed_on = ?2,"
                    " finished_on = 0, lease_until = ?3, lease_token = ?4,"
                    " sk1 = ?3, sk2 = 0 WHERE rid = ?1");
        nv__random(rnd, sizeof(rnd));
        for (int i = 0; i < 16; i++) {
            token[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
            token[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
        }
        token[32] = '\0';
        sqlite3_bind_int64(st, 1, rid);
        sqlite3_bind_int64(st, 2, a->now);
        sqlite3_bind_int64(st, 3, until);
        fdb_bind_text(st, 4, token);
        if ((rc = fdb_run(c, st, err)) != NV_OK)
            return rc;
        count_move(qs, NV_JOB_WAITING, NV_JOB_ACTIVE, 1);
        a->out.state = NV_JOB_ACTIVE;
        a->out.processed_on = a->now;
        a->out.finished_on = 0;
        a->out.lease_until = until;
        memcpy(a->out.lease_token, token, sizeof(token));
        a->found = 1;
        if (limited) {
            FDB_STMT(c, ins, "INSERT INTO limits VALUES (?1, ?2, ?3)");
            char *gk = NULL;

            if (a->lim->grouped && a->out.group != NULL) {
                gk = nv__asprintf("=%s", a->out.group);
                if (gk == NULL)
                    return fdb_oom("queue", err);
            }
            fdb_bind_text(ins, 1, a->queue);
            fdb_bind_text(ins, 2, gk ? gk : "");
            sqlite3_bind_int64(ins, 3, a->now);
            rc = fdb_run(c, ins, err);
            nv__free(gk);
        }
        return rc;
    }
    /* Nothing runnable: when may something be, without an enqueue? */
    if (qs->next_due != INT64_MAX)
        a->next_at = qs->next_due;
    if (win_at > 0 && (a->next_at == 0 || win_at < a->next_at))
        a->next_at = win_at;
    return NV_OK;
}

static int
fq_reserve(void *self, const char *queue, int64_t now, int64_t lease_ms,
           const nv_limiter *lim, nv_job *out, int64_t *next_at,
           nv_error *err)
{
    struct fq *fq = self;
    struct res_args a = { .fq = fq, .queue = queue, .now = now,
                          .lease_ms = lease_ms, .lim = lim };
    struct qgen *q;
    int rc;

    pthread_mutex_lock(&fq->wmu);
    q = qgen_get(fq, queue);
    tl_seen.fq = fq;
    tl_seen.q = q;
    tl_seen.gen = q ? q->gen : 0;
    pthread_mutex_unlock(&fq->wmu);
    /* A write even when nothing is found: due delayed jobs are promoted
     * in the same transaction, and the result is the same either way. */
    rc = fdb_write(fq->db, reserve_fn, NULL, &a, err);
    if (rc == NV_OK && a.found) {
        *out = a.out;
        return NV_OK;
    }
    nv_job_release(&a.out);
    if (rc != NV_OK)
        return rc;
    if (next_at != NULL)
        *next_at = a.next_at;
    return nv__error(err, NV_ENOTFOUND, "no runnable job in queue '%s'",
                     queue);
}

/* ---- Operations on one job held under a lease ---- */

struct lease_args {
    struct fq       *fq;
    const char      *queue, *id, *token;
    int64_t          until, now;
    const nv_finish *f;
    double           progress;
    const char      *data;
    int              wake;
};

/* The rid and row of an active job held with 'token', else NV_ELEASE. */
static int
held(struct fdb_conn *c, const struct lease_args *a, int64_t *rid,
     int64_t *keep_c, int64_t *keep_f, int *lifo, nv_error *err)
{
    FDB_STMT(c, st, "SELECT rid, state, lease_token, remove_on_complete,"
                " remove_on_fail, lifo FROM jobs WHERE queue = ?1 AND id = ?2");
    int rc;

    fdb_bind_text(st, 1, a->queue);
    fdb_bind_text(st, 2, a->id);
    rc = fdb_step_row(c, st, err);
    if (rc < 0)
        return rc;
    if (rc == 0 || sqlite3_column_int(st, 1) != NV_JOB_ACTIVE ||
        a->token == NULL ||
        strcmp((const char *)sqlite3_column_text(st, 2), a->token) != 0) {
        sqlite3_reset(st);
        return nv__error(err, NV_ELEASE, "job '%s' of queue '%s' is no "
                         "longer held under this lease", a->id, a->queue);
    }
    *rid = sqlite3_column_int64(st, 0);
    if (keep_c)
        *keep_c = sqlite3_column_int64(st, 3);
    if (keep_f)
        *keep_f = sqlite3_column_int64(st, 4);
    if (lifo)
        *lifo = sqlite3_column_int(st, 5);
    sqlite3_reset(st);
    return NV_OK;
}

static int
extend_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct lease_args *a = arg;
    int64_t rid;
    int rc = held(c, a, &rid, NULL, NULL, NULL, err);

    if (rc != NV_OK)
        return rc;
    FDB_STMT(c, st, "UPDATE jobs SET lease_until = ?2, sk1 = ?2 WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, a->until);
    return fdb_run(c, st, err);
}

static int
fq_extend(void *self, const char *queue, const char *id, const char *token,
          int64_t until, nv_error *err)
{
    struct lease_args a = { .fq = self, .queue = queue, .id = id,
                            .token = token, .until = until };

    return fdb_write(a.fq->db, extend_fn, NULL, &a, err);
}

/* The lease is checked before anything is written (held). */
static int
finish_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct lease_args *a = arg;
    const nv_finish *f = a->f;
    struct qstate *qs = qstate_get(a->fq, a->queue);
    int64_t rid, keep_c, keep_f, sk1;
    int rc, state;

    switch (f->kind) {
    case NV_FINISH_COMPLETE:
        state = NV_JOB_COMPLETED;
        break;
    case NV_FINISH_FAIL:
        state = NV_JOB_FAILED;
        break;
    case NV_FINISH_RETRY:
        state = f->retry_at > a->now ? NV_JOB_DELAYED : NV_JOB_WAITING;
        break;
    case NV_FINISH_RELEASE:
        state = NV_JOB_WAITING;
        break;
    default:
        return nv__error(err, NV_EINVAL, "unknown finish kind %d", f->kind);
    }
    sk1 = state == NV_JOB_DELAYED ? f->retry_at : a->now;
    if (qs == NULL)
        return fdb_oom("queue", err);
    if ((rc = held(c, a, &rid, &keep_c, &keep_f, NULL, err)) != NV_OK)
        return rc;
    FDB_STMT(c, st, "UPDATE jobs SET state = ?2,"
                " attempts_made = attempts_made + ?3,"
                " finished_on = CASE WHEN ?2 IN (3, 4) THEN ?4"
                "  ELSE finished_on END,"
                " returnvalue = CASE WHEN ?2 = 3 THEN ?5 ELSE returnvalue END,"
                " failed_reason = coalesce(?6, failed_reason),"
                " delay_until = CASE WHEN ?2 = 1 THEN ?7 ELSE delay_until END,"
                " lease_until = 0, lease_token = '',"
                " sk1 = CASE WHEN ?2 = 0 THEN priority ELSE ?8 END,"
                " sk2 = CASE WHEN ?2 = 0 AND lifo THEN -?9 ELSE ?9 END"
                " WHERE rid = ?1");
    a->fq->seq++;
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int(st, 2, state);
    sqlite3_bind_int(st, 3, f->kind == NV_FINISH_RELEASE ? 0 : 1);
    sqlite3_bind_int64(st, 4, a->now);
    fdb_bind_text(st, 5, f->returnvalue ? f->returnvalue : "null");
    fdb_bind_text(st, 6, f->kind == NV_FINISH_RETRY ||
                         f->kind == NV_FINISH_FAIL ? f->failed_reason : NULL);
    sqlite3_bind_int64(st, 7, f->retry_at);
    sqlite3_bind_int64(st, 8, sk1);
    sqlite3_bind_int64(st, 9, a->fq->seq);
    if ((rc = fdb_run(c, st, err)) != NV_OK)
        return rc;
    a->wake = state == NV_JOB_WAITING || state == NV_JOB_DELAYED;
    count_move(qs, NV_JOB_ACTIVE, state, 1);
    if (state == NV_JOB_DELAYED)
        due_at(qs, f->retry_at);
    if (state == NV_JOB_COMPLETED)
        return retain(c, qs, state, keep_c, rid, err);
    if (state == NV_JOB_FAILED)
        return retain(c, qs, state, keep_f, rid, err);
    return NV_OK;
}

static void
lease_after(void *arg)
{
    struct lease_args *a = arg;

    if (a->wake)
        notify(a->fq, a->queue);
}

static int
fq_finish(void *self, const char *queue, const char *id, const char *token,
          const nv_finish *f, int64_t now, nv_error *err)
{
    struct lease_args a = { .fq = self, .queue = queue, .id = id,
                            .token = token, .f = f, .now = now };

    return fdb_write(a.fq->db, finish_fn, lease_after, &a, err);
}

static int
progress_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct lease_args *a = arg;
    int64_t rid;
    int rc = held(c, a, &rid, NULL, NULL, NULL, err);

    if (rc != NV_OK)
        return rc;
    FDB_STMT(c, st, "UPDATE jobs SET progress = ?2, progress_data = ?3"
                " WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_double(st, 2, a->progress);
    fdb_bind_text(st, 3, a->data);
    return fdb_run(c, st, err);
}

static int
fq_progress(void *self, const char *queue, const char *id, const char *token,
            double progress, const char *data, nv_error *err)
{
    struct lease_args a = { .fq = self, .queue = queue, .id = id,
                            .token = token, .progress = progress,
                            .data = data };

    return fdb_write(a.fq->db, progress_fn, NULL, &a, err);
}

/* ---- log ---- */

struct log_args {
    const char *queue, *id, *entry;
    int         keep;
};

static int
log_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct log_args *a = arg;
    json_t *logs = NULL, *entry;
    char *text = NULL;
    int64_t rid = 0;
    int rc;

    entry = json_loads(a->entry, JSON_DECODE_ANY, NULL);
    if (!json_is_object(entry)) {
        json_decref(entry);
        return nv__error(err, NV_EINVAL, "log entry is not a JSON object");
    }
    FDB_STMT(c, st, "SELECT rid, logs FROM jobs WHERE queue = ?1 AND id = ?2");
    fdb_bind_text(st, 1, a->queue);
    fdb_bind_text(st, 2, a->id);
    rc = fdb_step_row(c, st, err);
    if (rc == 1) {
        const char *t = (const char *)sqlite3_column_text(st, 1);

        rid = sqlite3_column_int64(st, 0);
        logs = t ? json_loads(t, 0, NULL) : NULL;
        if (!json_is_array(logs)) {
            json_decref(logs);
            logs = json_array();
        }
        rc = NV_OK;
    } else if (rc == 0) {
        rc = nv__error(err, NV_EJOB_NOT_FOUND, "job '%s' not found in "
                       "queue '%s'", a->id, a->queue);
    }
    sqlite3_reset(st);
    if (rc == NV_OK) {
        if (logs == NULL || json_array_append(logs, entry) != 0)
            rc = fdb_oom("queue", err);
        while (rc == NV_OK && a->keep >= 0 &&
               json_array_size(logs) > (size_t)a->keep)
            json_array_remove(logs, 0);
        if (rc == NV_OK && (text = json_dumps(logs, JSON_COMPACT)) == NULL)
            rc = fdb_oom("queue", err);
    }
    json_decref(entry);
    json_decref(logs);
    if (rc != NV_OK)
        return rc;
    sqlite3_stmt *up = fdb_stmt(c, "UPDATE jobs SET logs = ?2 WHERE rid = ?1");
    if (up == NULL) {
        free(text);
        return fdb_fail(c, sqlite3_errcode(fdb_handle(c)), err);
    }
    sqlite3_bind_int64(up, 1, rid);
    fdb_bind_text(up, 2, text);
    rc = fdb_run(c, up, err);
    free(text);
    return rc;
}

static int
fq_log(void *self, const char *queue, const char *id, const char *entry_json,
       int keep, nv_error *err)
{
    struct fq *fq = self;
    struct log_args a = { .queue = queue, .id = id, .entry = entry_json,
                          .keep = keep };

    return fdb_write(fq->db, log_fn, NULL, &a, err);
}

/* ---- Reads: get, list, counts, is_paused ---- */

struct get_args {
    const char *queue, *id;
    nv_job      out;
};

static int
get_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct get_args *a = arg;

    return load_job(c, a->queue, a->id, &a->out, NULL, err);
}

static int
fq_get(void *self, const char *queue, const char *id, nv_job *out,
       nv_error *err)
{
    struct fq *fq = self;
    struct get_args a = { .queue = queue, .id = id };
    int rc = fdb_read(fq->db, get_fn, &a, err);

    if (rc == NV_OK)
        *out = a.out;
    return rc;
}

struct list_args {
    const char *queue;
    unsigned    mask;
    int64_t     offset, limit;
    nv_job     *out;
    size_t      n;
    int64_t     total;
};

static int
list_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct list_args *a = arg;
    unsigned stored = a->mask & (NV_JOB_MASK(NV_JOB_DELAYED) |
                                 NV_JOB_MASK(NV_JOB_ACTIVE) |
                                 NV_JOB_MASK(NV_JOB_COMPLETED) |
                                 NV_JOB_MASK(NV_JOB_FAILED));
    size_t cap = 0;
    int rc, paused;

    if ((rc = is_paused(c, a->queue, &paused, err)) != NV_OK)
        return rc;
    if (a->mask & NV_JOB_MASK(paused ? NV_JOB_PAUSED : NV_JOB_WAITING))
        stored |= NV_JOB_MASK(NV_JOB_WAITING);
    a->total = count_of(c, a->queue, stored, err, &rc);
    if (rc != NV_OK)
        return rc;
    FDB_STMT(c, st, "SELECT " JOB_COLS " FROM jobs WHERE queue = ?1"
                " AND (?2 >> state) & 1 ORDER BY timestamp DESC, id DESC"
                " LIMIT ?3 OFFSET ?4");
    fdb_bind_text(st, 1, a->queue);
    sqlite3_bind_int64(st, 2, stored);
    sqlite3_bind_int64(st, 3, a->limit < 0 ? -1 : a->limit);
    sqlite3_bind_int64(st, 4, a->offset < 0 ? 0 : a->offset);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        nv_job *v = fdb_grow(a->out, &cap, a->n, sizeof(*v));

        if (v == NULL) {
            rc = fdb_oom("queue", err);
            break;
        }
        a->out = v;
        if ((rc = job_from_row(st, paused, &a->out[a->n], err)) != NV_OK)
            break;
        a->n++;
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

static int
fq_list(void *self, const char *queue, unsigned mask, int64_t offset,
        int64_t limit, nv_job **out, size_t *n, int64_t *total,
        nv_error *err)
{
    struct fq *fq = self;
    struct list_args a = { .queue = queue, .mask = mask, .offset = offset,
                           .limit = limit };
    int rc = fdb_read(fq->db, list_fn, &a, err);

    if (rc != NV_OK) {
        nv_job_array_free(a.out, a.n);
        return rc;
    }
    *out = a.out;
    *n = a.n;
    if (total != NULL)
        *total = a.total;
    return NV_OK;
}

struct counts_args {
    const char    *queue;
    nv_job_counts  out;
};

static int
counts_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct counts_args *a = arg;
    int rc, paused;

    if ((rc = is_paused(c, a->queue, &paused, err)) != NV_OK)
        return rc;
    FDB_STMT(c, st, "SELECT state, count(*) FROM jobs WHERE queue = ?1"
                " GROUP BY state");
    fdb_bind_text(st, 1, a->queue);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        int64_t n = sqlite3_column_int64(st, 1);

        switch (sqlite3_column_int(st, 0)) {
        case NV_JOB_WAITING:
            if (paused)
                a->out.paused = n;
            else
                a->out.waiting = n;
            break;
        case NV_JOB_DELAYED:   a->out.delayed = n; break;
        case NV_JOB_ACTIVE:    a->out.active = n; break;
        case NV_JOB_COMPLETED: a->out.completed = n; break;
        case NV_JOB_FAILED:    a->out.failed = n; break;
        }
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

static int
fq_counts(void *self, const char *queue, nv_job_counts *out, nv_error *err)
{
    struct fq *fq = self;
    struct counts_args a = { .queue = queue };
    int rc = fdb_read(fq->db, counts_fn, &a, err);

    if (rc == NV_OK)
        *out = a.out;
    return rc;
}

struct pause_args {
    struct fq  *fq;
    const char *queue;
    int         paused;
};

static int
set_paused_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct pause_args *a = arg;
    struct qstate *qs = qstate_get(a->fq, a->queue);

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
        notify(a->fq, a->queue);
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

    return is_paused(c, a->queue, &a->paused, err);
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

/* ---- remove, retry ---- */

struct job_args {
    struct fq  *fq;
    const char *queue, *id;
    int64_t     now;
    nv_job      out;
};

static int
remove_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct job_args *a = arg;
    struct qstate *qs = qstate_get(a->fq, a->queue);
    int64_t rid;
    int rc;

    if (qs == NULL)
        return fdb_oom("queue", err);
    if ((rc = load_job(c, a->queue, a->id, &a->out, &rid, err)) != NV_OK)
        return rc;
    if (a->out.state == NV_JOB_ACTIVE)
        return nv__error(err, NV_EJOB_ACTIVE, "job '%s' of queue '%s' is "
                         "active", a->id, a->queue);
    FDB_STMT(c, st, "DELETE FROM jobs WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    if ((rc = fdb_run(c, st, err)) == NV_OK)
        count_move(qs, a->out.state == NV_JOB_PAUSED ? NV_JOB_WAITING
                                                     : a->out.state, -1, 1);
    return rc;
}

static int
fq_remove(void *self, const char *queue, const char *id, nv_job *out,
          nv_error *err)
{
    struct job_args a = { .fq = self, .queue = queue, .id = id };
    int rc = fdb_write(a.fq->db, remove_fn, NULL, &a, err);

    if (rc == NV_OK && out != NULL)
        *out = a.out;
    else
        nv_job_release(&a.out);
    return rc;
}

static int
retry_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct job_args *a = arg;
    struct qstate *qs = qstate_get(a->fq, a->queue);
    int64_t rid;
    int rc, lifo;

    if (qs == NULL)
        return fdb_oom("queue", err);
    if ((rc = load_job(c, a->queue, a->id, &a->out, &rid, err)) != NV_OK)
        return rc;
    if (a->out.state != NV_JOB_FAILED)
        return nv__error(err, NV_EJOB_NOT_FAILED, "job '%s' of queue '%s' "
                         "has not failed", a->id, a->queue);
    lifo = a->out.lifo;
    nv_job_release(&a->out);
    FDB_STMT(c, st, "UPDATE jobs SET state = 0, sk1 = priority, sk2 = ?2"
                " WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, wait_seq(a->fq, lifo));
    if ((rc = fdb_run(c, st, err)) != NV_OK)
        return rc;
    count_move(qs, NV_JOB_FAILED, NV_JOB_WAITING, 1);
    return load_job(c, a->queue, a->id, &a->out, NULL, err);
}

static void
retry_after(void *arg)
{
    struct job_args *a = arg;

    notify(a->fq, a->queue);
}

static int
fq_retry(void *self, const char *queue, const char *id, int64_t now,
         nv_job *out, nv_error *err)
{
    struct job_args a = { .fq = self, .queue = queue, .id = id, .now = now };
    int rc = fdb_write(a.fq->db, retry_fn, retry_after, &a, err);

    if (rc == NV_OK && out != NULL)
        *out = a.out;
    else
        nv_job_release(&a.out);
    return rc;
}

/* ---- reap ---- */

struct reap_args {
    struct fq  *fq;
    const char *queue;
    int64_t     now;
    int         max_stalled;
    nv_reaped  *out;
    size_t      n;
};

static int
reap_one(struct fdb_conn *c, struct reap_args *a, int64_t rid, nv_error *err)
{
    struct qstate *qs = qstate_get(a->fq, a->queue);
    int rc, fail;
    nv_reaped *r;

    if (qs == NULL)
        return fdb_oom("queue", err);
    FDB_STMT(c, st, "UPDATE jobs SET stalled_count = stalled_count + 1,"
                " state = CASE WHEN stalled_count + 1 > ?2 THEN 4 ELSE 0 END,"
                " failed_reason = CASE WHEN stalled_count + 1 > ?2 THEN"
                " 'job stalled more than allowable limit' ELSE failed_reason"
                " END, finished_on = CASE WHEN stalled_count + 1 > ?2 THEN ?3"
                " ELSE finished_on END, lease_until = 0, lease_token = '',"
                " sk1 = CASE WHEN stalled_count + 1 > ?2 THEN ?3"
                " ELSE priority END,"
                " sk2 = CASE WHEN stalled_count + 1 > ?2 THEN ?4"
                " WHEN lifo THEN -?4 ELSE ?4 END"
                " WHERE rid = ?1 RETURNING " JOB_COLS);
    r = nv__realloc(a->out, (a->n + 1) * sizeof(*r));
    if (r == NULL)
        return fdb_oom("queue", err);
    a->out = r;
    r = &a->out[a->n];
    memset(r, 0, sizeof(*r));
    a->fq->seq++;
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int(st, 2, a->max_stalled);
    sqlite3_bind_int64(st, 3, a->now);
    sqlite3_bind_int64(st, 4, a->fq->seq);
    rc = fdb_step_row(c, st, err);
    if (rc != 1)
        return rc < 0 ? rc : NV_OK;
    rc = job_from_row(st, 0, &r->job, err);
    sqlite3_reset(st);
    if (rc != NV_OK)
        return rc;
    a->n++;
    fail = r->job.state == NV_JOB_FAILED;
    r->failed = fail;
    count_move(qs, NV_JOB_ACTIVE, r->job.state, 1);
    if (!fail) {
        int paused;

        if ((rc = paused_cached(c, qs, &paused, err)) != NV_OK)
            return rc;
        if (paused)
            r->job.state = NV_JOB_PAUSED;
        return NV_OK;
    }
    return retain(c, qs, NV_JOB_FAILED, r->job.remove_on_fail, rid, err);
}

static int
reap_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct reap_args *a = arg;
    int64_t rids[64];
    int n, rc;

    do {
        FDB_STMT(c, st, "SELECT rid FROM jobs WHERE queue = ?1 AND state = 2"
                    " AND sk1 < ?2 ORDER BY sk1 LIMIT 64");
        fdb_bind_text(st, 1, a->queue);
        sqlite3_bind_int64(st, 2, a->now);
        for (n = 0; (rc = fdb_step_row(c, st, err)) == 1; n++)
            rids[n] = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (rc < 0)
            return rc;
        for (int i = 0; i < n; i++) {
            if ((rc = reap_one(c, a, rids[i], err)) != NV_OK)
                return rc;
        }
    } while (n == 64);
    return NV_OK;
}

static void
reap_after(void *arg)
{
    struct reap_args *a = arg;

    if (a->n > 0)
        notify(a->fq, a->queue);
}

static int
fq_reap(void *self, const char *queue, int64_t now, int max_stalled,
        nv_reaped **out, size_t *n, nv_error *err)
{
    struct reap_args a = { .fq = self, .queue = queue, .now = now,
                           .max_stalled = max_stalled };
    int rc = fdb_write(a.fq->db, reap_fn, reap_after, &a, err);

    if (rc != NV_OK) {
        nv_reaped_free(a.out, a.n);
        return rc;
    }
    *out = a.out;
    *n = a.n;
    return NV_OK;
}

/* ---- wait, wake, ping, close ---- */

static int
fq_wait(void *self, const char *queue, int64_t timeout_ms)
{
    struct fq *fq = self;
    struct timespec ts;
    struct qgen *q;
    uint64_t start, woken;

    if (timeout_ms <= 0)
        return NV_OK;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&fq->wmu);
    q = qgen_get(fq, queue);
    start = q == NULL ? 0 : tl_seen.fq == fq && tl_seen.q == q ? tl_seen.gen
                                                               : q->gen;
    woken = fq->woken;
    while (q != NULL && q->gen == start && fq->woken == woken) {
        if (pthread_cond_timedwait(&fq->wcv, &fq->wmu, &ts) != 0)
            break;
    }
    tl_seen.fq = NULL;
    pthread_mutex_unlock(&fq->wmu);
    return NV_OK;
}

static void
fq_wake(void *self)
{
    struct fq *fq = self;

    pthread_mutex_lock(&fq->wmu);
    fq->woken++;
    pthread_cond_broadcast(&fq->wcv);
    pthread_mutex_unlock(&fq->wmu);
}

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
    struct qgen *q;

    if (fq == NULL)
        return;
    fdb_close(fq->db);
    while (fq->qs != NULL) {
        struct qstate *n = fq->qs->next;

        nv__free(fq->qs);
        fq->qs = n;
    }
    while ((q = fq->gens) != NULL) {
        fq->gens = q->next;
        nv__free(q);
    }
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
