/*
 * File queue, after the claim: the ops on a job held under a lease
 * (extend, finish, progress), retention of finished jobs, the job
 * log, remove, retry of a failed job, and the reaper of expired leases.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/file/queue.h"

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
     int64_t *keep_c, int64_t *keep_f, int *lifo, int *prio, nv_error *err)
{
    FDB_STMT(c, st, "SELECT rid, state, lease_token, remove_on_complete,"
                    " remove_on_fail, lifo, priority FROM jobs"
                    " WHERE queue = ?1 AND id = ?2");
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
    if (prio)
        *prio = sqlite3_column_int(st, 6);
    sqlite3_reset(st);
    return NV_OK;
}

static int
extend_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct lease_args *a = arg;
    struct qstate *qs = fq_qs_write(c, a->fq, a->queue, err);
    struct fq_lease *l;
    int64_t rid;
    int rc;

    if (qs == NULL)
        return err->code;
    if ((rc = held(c, a, &rid, NULL, NULL, NULL, NULL, err)) != NV_OK)
        return rc;
    FDB_STMT(c, st, "UPDATE jobs SET lease_until = ?2, sk1 = ?2"
                    " WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, a->until);
    if ((rc = fdb_run(c, st, err)) == NV_OK &&
        (l = fq_lease_get(qs, rid)) != NULL)
        l->until = a->until;
    return rc;
}

int
fq_extend(void *self, const char *queue, const char *id, const char *token,
          int64_t until, nv_error *err)
{
    struct lease_args a = { .fq = self, .queue = queue, .id = id,
                            .token = token, .until = until };

    return fdb_write(a.fq->db, extend_fn, NULL, &a, err);
}

/*
 * apply the retention 'keep' of a job that just reached 'state'
 * (its entry, of rowid 'rid', is on the heap of that state unless keep
 * is 0): the oldest go while more than 'keep' are left. Keep 0 removes
 * the job at once; otherwise the jobs to remove are only counted here
 * (qs->excess) and removed by fq_trim before the batch commits, several
 * at a time: the retention of a batch's finishes, oldest first, comes
 * to a few neighbouring rows, which one DELETE over their rowid range
 * removes for less than a DELETE each (file_bench reserve+ack, 16
 * threads: ~7 jobs a batch). Nothing outside the batch can tell: its
 * commit holds the same rows either way, and an op that looks a job up
 * by id trims its queue first.
 */
static int
retain(struct fdb_conn *c, struct fq *fq, struct qstate *qs, int state,
       int64_t keep, int64_t rid, nv_error *err)
{
    int k = state == NV_JOB_FAILED;
    int64_t left;
    int rc;

    if (keep < 0)
        return NV_OK;
    if (keep == 0) {
        FDB_STMT(c, st, "DELETE FROM jobs WHERE rid = ?1");
        sqlite3_bind_int64(st, 1, rid);
        if ((rc = fdb_run(c, st, err)) == NV_OK)
            fq_count_move(qs, state, -1, 1);
        return rc;
    }
    left = qs->n[state] - qs->excess[k];
    if (left > keep) {
        qs->excess[k] += left - keep;
        fq->trims = 1;
    }
    return NV_OK;
}

static int
ent_rid_less(const struct fq_ent *a, const struct fq_ent *b)
{
    return a->rid < b->rid;
}

/*
 * Remove the live jobs of entries v[0..m) (popped in key order, so
 * v[m-1] holds the greatest key) of stored state 'state'. Every job of
 * the queue in that state whose key is at most v[m-1]'s has had its entry
 * popped (the heap holds an entry for each, and pops in key order): such
 * a job is one of v, or was removed by an earlier pop. So one DELETE over
 * a rowid range, limited to the queue, the state and keys up to that
 * one, removes exactly the live jobs of v in that range. Entries close
 * in rowid (at most TRIM_GAP - 1 other rows between) share a range.
 */
#define TRIM_GAP 4
static int
trim_run(struct fdb_conn *c, struct qstate *qs, int state,
         struct fq_ent *v, size_t m, nv_error *err)
{
    const struct fq_ent top = v[m - 1];
    int64_t gone = 0;
    size_t i, j;
    int rc;

    /* by rowid (insertion sort: m is small, and mostly in order) */
    for (i = 1; i < m; i++) {
        struct fq_ent e = v[i];

        for (j = i; j > 0 && ent_rid_less(&e, &v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = e;
    }
    for (i = 0; i < m; i = j) {
        for (j = i + 1; j < m && v[j].rid - v[j - 1].rid <= TRIM_GAP; j++)
            ;
        if (j - i == 1) {
            FDB_STMT(c, st, "DELETE FROM jobs WHERE rid = ?1 AND state = ?2"
                            " AND sk2 = ?3");
            sqlite3_bind_int64(st, 1, v[i].rid);
            sqlite3_bind_int(st, 2, state);
            sqlite3_bind_int64(st, 3, v[i].k2);
            rc = fdb_run(c, st, err);
        } else {
            FDB_STMT(c, st, "DELETE FROM jobs WHERE rid BETWEEN ?1 AND ?2"
                            " AND state = ?3 AND +queue = ?4"
                            " AND (sk1, sk2, rid) <= (?5, ?6, ?7)");
            sqlite3_bind_int64(st, 1, v[i].rid);
            sqlite3_bind_int64(st, 2, v[j - 1].rid);
            sqlite3_bind_int(st, 3, state);
            fdb_bind_text(st, 4, qs->name);
            sqlite3_bind_int64(st, 5, top.k1);
            sqlite3_bind_int64(st, 6, top.k2);
            sqlite3_bind_int64(st, 7, top.rid);
            rc = fdb_run(c, st, err);
        }
        if (rc != NV_OK)
            return rc;
        gone += sqlite3_changes(fdb_handle(c));
    }
    return (int)gone;
}

int
fq_trim(struct fdb_conn *c, struct fq *fq, struct qstate *qs, nv_error *err)
{
    for (int k = 0; k < 2; k++) {
        int state = k ? NV_JOB_FAILED : NV_JOB_COMPLETED;
        struct fq_heap *h = &qs->done[k];
        struct fq_ent v[64];

        while (qs->excess[k] > 0) {
            size_t m = 0;
            int rc;

            while (m < sizeof(v) / sizeof(v[0]) &&
                   (int64_t)m < qs->excess[k] && fq_pop(h, &v[m]))
                m++;
            if (m == 0) {
                qs->excess[k] = 0;      /* the heap ran dry: none left */
                break;
            }
            if ((rc = trim_run(c, qs, state, v, m, err)) < 0) {
                fq->need_load = 1;      /* popped, perhaps not removed */
                return rc;
            }
            fq_count_move(qs, state, -1, rc);
            qs->excess[k] -= rc;
        }
    }
    return NV_OK;
}

/* The lease is checked before anything is written (held). */
int
fq_finish_in(struct fdb_conn *c, struct fq *fq, const char *queue,
             const char *id, const char *token, const nv_finish *f,
             int64_t now, int *wake, nv_error *err)
{
    struct lease_args a = { .fq = fq, .queue = queue, .id = id,
                            .token = token, .f = f, .now = now };
    struct qstate *qs;
    struct lease_hint *hint;
    struct fq_lease *l;
    int64_t rid, keep_c, keep_f, sk1, sk2;
    int rc, state, lifo = 0, prio = 0;

    *wake = 0;
    switch (f->kind) {
    case NV_FINISH_COMPLETE:
        state = NV_JOB_COMPLETED;
        break;
    case NV_FINISH_FAIL:
        state = NV_JOB_FAILED;
        break;
    case NV_FINISH_RETRY:
        state = f->retry_at > now ? NV_JOB_DELAYED : NV_JOB_WAITING;
        break;
    case NV_FINISH_RELEASE:
        state = NV_JOB_WAITING;
        break;
    default:
        return nv__error(err, NV_EINVAL, "unknown finish kind %d", f->kind);
    }
    if ((qs = fq_qs_write(c, fq, queue, err)) == NULL)
        return err->code;
    hint = token != NULL && token[0] != '\0' ? fq_hint(fq, token) : NULL;
    if (hint != NULL && strcmp(hint->token, token) == 0) {
        /* The reserve's hint: no lookup by id (the UPDATE checks). */
        rid = hint->rid;
        keep_c = hint->keep_c;
        keep_f = hint->keep_f;
        hint->token[0] = '\0';
    } else if ((rc = held(c, &a, &rid, &keep_c, &keep_f, NULL, NULL,
                          err)) != NV_OK) {
        return rc;
    }
    if ((state == NV_JOB_COMPLETED && keep_c == 0) ||
        (state == NV_JOB_FAILED && keep_f == 0)) {
        /* Q-10, removed at once: no point in updating the row first. */
        FDB_STMT(c, del, "DELETE FROM jobs WHERE rid = ?1 AND state = 2"
                         " AND lease_token = ?2 AND queue = ?3 AND id = ?4");
        sqlite3_bind_int64(del, 1, rid);
        fdb_bind_text(del, 2, token);
        fdb_bind_text(del, 3, queue);
        fdb_bind_text(del, 4, id);
        if ((rc = fdb_run(c, del, err)) != NV_OK)
            return rc;
        if (sqlite3_changes(fdb_handle(c)) == 0)
            return nv__error(err, NV_ELEASE, "job '%s' of queue '%s' is no "
                             "longer held under this lease", id, queue);
        fq_lease_drop(qs, rid);
        fq_count_move(qs, NV_JOB_ACTIVE, -1, 1);
        return NV_OK;
    }
    fq->seq++;
    sk2 = fq->seq;
    switch (state) {
    case NV_JOB_WAITING:
        /* The order of a waiting job: its priority, +-seq, which
         * the lease remembers (else the row tells). */
        if ((l = fq_lease_get(qs, rid)) != NULL) {
            prio = l->prio;
            lifo = l->lifo;
        } else if ((rc = held(c, &a, &rid, NULL, NULL, &lifo, &prio,
                              err)) != NV_OK) {
            return rc;
        }
        sk1 = prio;
        if (lifo)
            sk2 = -sk2;
        break;
    case NV_JOB_DELAYED:
        sk1 = f->retry_at;
        break;
    default:
        sk1 = now;
        break;
    }
    if (state == NV_JOB_COMPLETED) {
        /* The usual finish, without the CASEs the others need (~10% of
         * the statement's time). sk1 is now. */
        FDB_STMT(c, st, "UPDATE jobs SET state = 3,"
                        " attempts_made = attempts_made + 1,"
                        " finished_on = ?2, returnvalue = ?3,"
                        " lease_until = 0, lease_token = '',"
                        " sk1 = ?2, sk2 = ?4"
                        " WHERE rid = ?1 AND state = 2 AND lease_token = ?5"
                        " AND queue = ?6 AND id = ?7");
        sqlite3_bind_int64(st, 1, rid);
        sqlite3_bind_int64(st, 2, now);
        fdb_bind_text(st, 3, f->returnvalue ? f->returnvalue : "null");
        sqlite3_bind_int64(st, 4, sk2);
        fdb_bind_text(st, 5, token);
        fdb_bind_text(st, 6, queue);
        fdb_bind_text(st, 7, id);
        rc = fdb_run(c, st, err);
    } else {
        FDB_STMT(c, st, "UPDATE jobs SET state = ?2,"
                        " attempts_made = attempts_made + ?3,"
                        " finished_on = CASE WHEN ?2 IN (3, 4) THEN ?4"
                        "  ELSE finished_on END,"
                        " returnvalue = CASE WHEN ?2 = 3 THEN ?5"
                        "  ELSE returnvalue END,"
                        " failed_reason = coalesce(?6, failed_reason),"
                        " delay_until = CASE WHEN ?2 = 1 THEN ?7"
                        "  ELSE delay_until END,"
                        " lease_until = 0, lease_token = '',"
                        " sk1 = ?8, sk2 = ?9"
                        " WHERE rid = ?1 AND state = 2 AND lease_token = ?10"
                        " AND queue = ?11 AND id = ?12");
        sqlite3_bind_int64(st, 1, rid);
        sqlite3_bind_int(st, 2, state);
        sqlite3_bind_int(st, 3, f->kind == NV_FINISH_RELEASE ? 0 : 1);
        sqlite3_bind_int64(st, 4, now);
        fdb_bind_text(st, 5, f->returnvalue ? f->returnvalue : "null");
        fdb_bind_text(st, 6, f->kind == NV_FINISH_RETRY ||
                             f->kind == NV_FINISH_FAIL ? f->failed_reason
                                                       : NULL);
        sqlite3_bind_int64(st, 7, f->retry_at);
        sqlite3_bind_int64(st, 8, sk1);
        sqlite3_bind_int64(st, 9, sk2);
        fdb_bind_text(st, 10, token);
        fdb_bind_text(st, 11, queue);
        fdb_bind_text(st, 12, id);
        rc = fdb_run(c, st, err);
    }
    if (rc != NV_OK)
        return rc;
    if (sqlite3_changes(fdb_handle(c)) == 0)
        return nv__error(err, NV_ELEASE, "job '%s' of queue '%s' is no "
                         "longer held under this lease", id, queue);
    fq_lease_drop(qs, rid);
    *wake = state == NV_JOB_WAITING || state == NV_JOB_DELAYED;
    fq_count_move(qs, NV_JOB_ACTIVE, state, 1);
    if ((rc = fq_push(fq, fq_heap_of(qs, state), sk1, sk2, rid, err)) !=
        NV_OK)
        return rc;
    if (state == NV_JOB_COMPLETED)
        return retain(c, fq, qs, state, keep_c, rid, err);
    if (state == NV_JOB_FAILED)
        return retain(c, fq, qs, state, keep_f, rid, err);
    return NV_OK;
}

static int
finish_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct lease_args *a = arg;

    return fq_finish_in(c, a->fq, a->queue, a->id, a->token, a->f, a->now,
                        &a->wake, err);
}

static void
lease_after(void *arg)
{
    struct lease_args *a = arg;

    if (a->wake)
        fq_notify_one(a->fq, a->queue);
}

int
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
    int rc = held(c, a, &rid, NULL, NULL, NULL, NULL, err);

    if (rc != NV_OK)
        return rc;
    FDB_STMT(c, st, "UPDATE jobs SET progress = ?2, progress_data = ?3"
                    " WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_double(st, 2, a->progress);
    fdb_bind_text(st, 3, a->data);
    return fdb_run(c, st, err);
}

int
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
    struct fq  *fq;
    const char *queue, *id, *entry;
    int         keep;
};

static int
log_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct log_args *a = arg;
    struct qstate *qs;
    json_t *logs = NULL, *entry;
    char *text = NULL;
    int64_t rid = 0;
    int rc;

    /* A queue the writer does not know has no job: the lookup below
     * finds none (no entry is made for its name). */
    if ((rc = fq_qs_for_id(c, a->fq, a->queue, &qs, err)) != NV_OK)
        return rc;
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

int
fq_log(void *self, const char *queue, const char *id, const char *entry_json,
       int keep, nv_error *err)
{
    struct fq *fq = self;
    struct log_args a = { .fq = fq, .queue = queue, .id = id,
                          .entry = entry_json, .keep = keep };

    return fdb_write(fq->db, log_fn, NULL, &a, err);
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
    struct qstate *qs;
    int64_t rid;
    int rc;

    /* An unknown queue has no job: fq_load_job says so. */
    if ((rc = fq_qs_for_id(c, a->fq, a->queue, &qs, err)) != NV_OK)
        return rc;
    /* Its heap entry goes stale (dropped when it comes up). */
    if ((rc = fq_load_job(c, a->queue, a->id, &a->out, &rid, err)) != NV_OK)
        return rc;
    if (qs == NULL)     /* cannot be: a job's queue has an entry */
        return nv__error(err, NV_EBACKEND, "file queue: queue '%s' has a"
                         " job the writer does not know", a->queue);
    if (a->out.state == NV_JOB_ACTIVE)
        return nv__error(err, NV_EJOB_ACTIVE, "job '%s' of queue '%s' is "
                         "active", a->id, a->queue);
    FDB_STMT(c, st, "DELETE FROM jobs WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    if ((rc = fdb_run(c, st, err)) == NV_OK) {
        fq_rec_drop(a->fq, rid);
        fq_count_move(qs, a->out.state == NV_JOB_PAUSED ? NV_JOB_WAITING
                                                     : a->out.state, -1, 1);
        fq_stale_check(a->fq, qs);
    }
    return rc;
}

int
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
    struct qstate *qs;
    int64_t rid, sk1, sk2;
    int rc;

    /* An unknown queue has no job: fq_load_job says so. */
    if ((rc = fq_qs_for_id(c, a->fq, a->queue, &qs, err)) != NV_OK ||
        (rc = fq_load_job(c, a->queue, a->id, &a->out, &rid, err)) != NV_OK)
        return rc;
    if (qs == NULL)     /* cannot be: a job's queue has an entry */
        return nv__error(err, NV_EBACKEND, "file queue: queue '%s' has a"
                         " job the writer does not know", a->queue);
    if (a->out.state != NV_JOB_FAILED)
        return nv__error(err, NV_EJOB_NOT_FAILED, "job '%s' of queue '%s' "
                         "has not failed", a->id, a->queue);
    sk1 = a->out.priority;
    sk2 = fq_wait_seq(a->fq, a->out.lifo);
    nv_job_release(&a->out);
    FDB_STMT(c, st, "UPDATE jobs SET state = 0, sk1 = ?3, sk2 = ?2"
                    " WHERE rid = ?1");
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, sk2);
    sqlite3_bind_int64(st, 3, sk1);
    if ((rc = fdb_run(c, st, err)) != NV_OK)
        return rc;
    fq_count_move(qs, NV_JOB_FAILED, NV_JOB_WAITING, 1);
    if ((rc = fq_push(a->fq, &qs->wait, sk1, sk2, rid, err)) != NV_OK)
        return rc;
    fq_stale_check(a->fq, qs);
    return fq_load_job(c, a->queue, a->id, &a->out, NULL, err);
}

static void
retry_after(void *arg)
{
    struct job_args *a = arg;

    fq_notify_one(a->fq, a->queue);
}

int
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
reap_one(struct fdb_conn *c, struct reap_args *a, struct qstate *qs,
         int64_t rid, nv_error *err)
{
    int rc, fail;
    nv_reaped *r;

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
                    " WHERE rid = ?1 AND state = 2 AND sk1 < ?3"
                    " RETURNING " JOB_COLS);
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
    if (rc != 1) {
        sqlite3_reset(st);
        return rc < 0 ? rc : NV_OK;
    }
    rc = fq_job_from_row(st, 0, &r->job, err);
    if (rc == NV_OK) {
        int64_t sk2 = sqlite3_column_int64(st, COL_SK2);

        fail = r->job.state == NV_JOB_FAILED;
        rc = fq_push(a->fq, fail ? &qs->done[1] : &qs->wait,
                     fail ? a->now : r->job.priority, sk2, rid, err);
    }
    sqlite3_reset(st);
    if (rc != NV_OK) {
        nv_job_release(&r->job);
        a->fq->need_load = 1;
        return rc;
    }
    a->n++;
    fq_lease_drop(qs, rid);
    fail = r->job.state == NV_JOB_FAILED;
    r->failed = fail;
    fq_count_move(qs, NV_JOB_ACTIVE, r->job.state, 1);
    if (!fail) {
        if (qs->paused)
            r->job.state = NV_JOB_PAUSED;
        return NV_OK;
    }
    return retain(c, a->fq, qs, NV_JOB_FAILED, r->job.remove_on_fail, rid,
                  err);
}

static int
cmp_until(const void *x, const void *y)
{
    const struct fq_lease *a = x, *b = y;

    return a->until < b->until ? -1 : a->until > b->until;
}

/* Expired leases, oldest first, from the writer's memory. */
static int
reap_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct reap_args *a = arg;
    struct qstate *qs = fq_qs_write(c, a->fq, a->queue, err);
    struct fq_lease *v = NULL;
    size_t n = 0, cap = 0;
    int rc = NV_OK;

    if (qs == NULL)
        return err->code;
    for (size_t i = 0; i < qs->active.cap; i++) {
        struct fq_lease *l = &qs->active.v[i];

        if (l->rid == 0 || l->until >= a->now)
            continue;
        struct fq_lease *g = fdb_grow(v, &cap, n, sizeof(*v));

        if (g == NULL) {
            nv__free(v);
            return fdb_oom("queue", err);
        }
        v = g;
        v[n++] = *l;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_until);
    for (size_t i = 0; i < n && rc == NV_OK; i++)
        rc = reap_one(c, a, qs, v[i].rid, err);
    nv__free(v);
    return rc;
}

static void
reap_after(void *arg)
{
    struct reap_args *a = arg;

    if (a->n > 0)
        fq_notify(a->fq, a->queue);
}

int
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
