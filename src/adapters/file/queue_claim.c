/*
 * File queue, claiming: enqueue (Q-3 idempotent ids, Q-11 capacity) and
 * reserve, which promotes due delayed jobs, applies the limiter
 * and takes the first runnable job under a new lease, all in one
 * write transaction; finish_reserve, a finish and a reserve in one.
 */
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "adapters/file/queue.h"

/* ---- Cached records (queue.h) ---- */

enum { R_ID, R_QUEUE, R_NAME, R_RUN, R_FLOW, R_STEP, R_DATA, R_OPTS,
       R_PDATA, R_RET, R_FAIL, R_GROUP, R_NSTR };

struct fq_rec {
    int64_t  size;             /* bytes, counted in fq.rec_bytes */
    int      priority, lifo, attempts_made, stalled_count;
    int64_t  remove_on_complete, remove_on_fail, timestamp, delay_until;
    int64_t  processed_on, finished_on;
    double   progress;
    uint32_t off[R_NSTR];      /* into s; UINT32_MAX: NULL */
    char     s[];
};

/* The record of 'o' as enqueue_fn stores it (enqueued at 'ts'), or NULL
 * (no memory, or the records held are at FQ_REC_BYTES). */
static struct fq_rec *
rec_build(struct fq *fq, const nv_job *o, int64_t ts)
{
    const char *str[R_NSTR] = {
        o->id, o->queue, o->name, o->run_id, o->flow_name, o->step_name,
        o->data != NULL ? o->data : "{}", o->opts, o->progress_data,
        o->returnvalue, o->failed_reason, o->group,
    };
    size_t len[R_NSTR], total = sizeof(struct fq_rec), at = 0;
    struct fq_rec *r;

    for (int i = 0; i < R_NSTR; i++) {
        len[i] = str[i] != NULL ? strlen(str[i]) + 1 : 0;
        total += len[i];
    }
    if (total > UINT32_MAX / 2 ||
        atomic_fetch_add(&fq->rec_bytes, (int64_t)total) + (int64_t)total >
            FQ_REC_BYTES ||
        (r = nv__malloc(total)) == NULL) {
        atomic_fetch_sub(&fq->rec_bytes, (int64_t)total);
        return NULL;
    }
    r->size = (int64_t)total;
    r->priority = o->priority;
    r->lifo = o->lifo ? 1 : 0;
    r->attempts_made = o->attempts_made;
    r->stalled_count = o->stalled_count;
    r->remove_on_complete = o->remove_on_complete;
    r->remove_on_fail = o->remove_on_fail;
    r->timestamp = ts;
    r->delay_until = o->delay_until;
    r->processed_on = o->processed_on;
    r->finished_on = o->finished_on;
    r->progress = o->progress;
    for (int i = 0; i < R_NSTR; i++) {
        if (str[i] == NULL) {
            r->off[i] = UINT32_MAX;
            continue;
        }
        r->off[i] = (uint32_t)at;
        memcpy(r->s + at, str[i], len[i]);
        at += len[i];
    }
    return r;
}

void
fq_rec_free(struct fq *fq, struct fq_rec *rec)
{
    if (rec != NULL) {
        atomic_fetch_sub(&fq->rec_bytes, rec->size);
        nv__free(rec);
    }
}

static const char *
rec_str(const struct fq_rec *r, int i)
{
    return r->off[i] == UINT32_MAX ? NULL : r->s + r->off[i];
}

static int
rec_dup(const struct fq_rec *r, int i, char **dst)
{
    const char *s = rec_str(r, i);

    *dst = s != NULL ? nv__strdup(s) : NULL;
    return s != NULL && *dst == NULL;
}

/* The job of 'r' as a reserve hands it out (what fq_job_from_row reads
 * from the row the reserve left): waiting fields from the record, the
 * lease from the reserve. */
static int
rec_to_job(const struct fq_rec *r, int64_t now, int64_t until,
           const char *token, nv_job *j, nv_error *err)
{
    int bad = 0;

    memset(j, 0, sizeof(*j));
    nv__strlcpy(j->id, rec_str(r, R_ID), sizeof(j->id));
    nv__strlcpy(j->queue, rec_str(r, R_QUEUE), sizeof(j->queue));
    nv__strlcpy(j->name, rec_str(r, R_NAME), sizeof(j->name));
    nv__strlcpy(j->run_id, rec_str(r, R_RUN), sizeof(j->run_id));
    nv__strlcpy(j->flow_name, rec_str(r, R_FLOW), sizeof(j->flow_name));
    nv__strlcpy(j->step_name, rec_str(r, R_STEP), sizeof(j->step_name));
    bad |= rec_dup(r, R_DATA, &j->data);
    bad |= rec_dup(r, R_OPTS, &j->opts);
    bad |= rec_dup(r, R_PDATA, &j->progress_data);
    bad |= rec_dup(r, R_RET, &j->returnvalue);
    bad |= rec_dup(r, R_FAIL, &j->failed_reason);
    bad |= rec_dup(r, R_GROUP, &j->group);
    j->state = NV_JOB_ACTIVE;
    j->priority = r->priority;
    j->lifo = r->lifo;
    j->remove_on_complete = r->remove_on_complete;
    j->remove_on_fail = r->remove_on_fail;
    j->attempts_made = r->attempts_made;
    j->stalled_count = r->stalled_count;
    j->progress = r->progress;
    j->timestamp = r->timestamp;
    j->delay_until = r->delay_until;
    j->processed_on = now;
    j->finished_on = 0;
    j->lease_until = until;
    nv__strlcpy(j->lease_token, token, sizeof(j->lease_token));
    if (bad) {
        nv_job_release(j);
        return fdb_oom("queue", err);
    }
    return NV_OK;
}

/* ---- enqueue ---- */

struct enq_args {
    struct fq    *fq;
    const nv_job *job;
    int64_t       now, max_unfinished;
    nv_job        out;         /* the caller's copy, made before the write */
    int           want_out;
    int           created;
    struct fq_rec *rec;        /* the record to cache, built beforehand */
};

/* The stored job of a->job's id becomes the answer. */
static int
existing(struct fdb_conn *c, struct enq_args *a, nv_error *err)
{
    a->created = 0;
    nv_job_release(&a->out);
    if (!a->want_out)
        return NV_OK;
    return fq_load_job(c, a->job->queue, a->job->id, &a->out, NULL, err);
}

/* The leader only binds and inserts: the record handed back was copied
 * by the caller beforehand (fq_enqueue). */
static int
enqueue_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct enq_args *a = arg;
    const nv_job *o = a->job;
    struct qstate *qs = fq_qs_write(c, a->fq, o->queue, err);
    int rc, paused, delayed = o->delay_until > a->now;
    int64_t n, ts = o->timestamp != 0 ? o->timestamp : a->now;
    int64_t sk1, sk2, rid;

    a->created = 0;     /* (a transaction run again starts anew) */
    if (qs == NULL)
        return err->code;
    if (a->max_unfinished > 0) {
        /* Q-3 before Q-11: an existing job is returned, never refused
         * (one that retention removes in this batch is gone already). */
        if ((rc = fq_trim(c, a->fq, qs, err)) != NV_OK)
            return rc;
        FDB_STMT(c, ex, "SELECT 1 FROM jobs WHERE queue = ?1 AND id = ?2");
        fdb_bind_text(ex, 1, o->queue);
        fdb_bind_text(ex, 2, o->id);
        rc = fdb_step_row(c, ex, err);
        sqlite3_reset(ex);
        if (rc < 0)
            return rc;
        if (rc == 1)
            return existing(c, a, err);
        n = qs->n[NV_JOB_WAITING] + qs->n[NV_JOB_DELAYED] +
            qs->n[NV_JOB_ACTIVE];
        if (n >= a->max_unfinished)
            return nv__error(err, NV_EQUEUE_FULL, "queue '%s' is full (%"
                             PRId64 " unfinished jobs)", o->queue, n);
    }
    paused = qs->paused;
    if ((rc = fq_rid_new(c, a->fq, qs, ts, &rid, err)) != NV_OK)
        return rc;
    a->fq->seq++;
    sk1 = delayed ? o->delay_until : o->priority;
    sk2 = delayed || !o->lifo ? a->fq->seq : -a->fq->seq;
    FDB_STMT(c, st, "INSERT INTO jobs(queue, id, name, run_id, flow_name,"
                    " step_name, data, opts, state, priority, lifo,"
                    " remove_on_complete, remove_on_fail, attempts_made,"
                    " stalled_count, progress, progress_data, timestamp,"
                    " delay_until, processed_on, finished_on, returnvalue,"
                    " failed_reason, logs, grp, lease_until, lease_token, sk1, sk2,"
                    " rid)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                    " ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,"
                    " ?25, 0, '', ?26, ?27, ?28) ON CONFLICT(queue, id) DO NOTHING");
    fdb_bind_text(st, 1, o->queue);
    fdb_bind_text(st, 2, o->id);
    fdb_bind_text(st, 3, o->name);
    fdb_bind_text(st, 4, o->run_id);
    fdb_bind_text(st, 5, o->flow_name);
    fdb_bind_text(st, 6, o->step_name);
    fdb_bind_text(st, 7, o->data != NULL ? o->data : "{}");
    fdb_bind_text(st, 8, o->opts);
    sqlite3_bind_int(st, 9, delayed ? NV_JOB_DELAYED : NV_JOB_WAITING);
    sqlite3_bind_int(st, 10, o->priority);
    sqlite3_bind_int(st, 11, o->lifo ? 1 : 0);
    sqlite3_bind_int64(st, 12, o->remove_on_complete);
    sqlite3_bind_int64(st, 13, o->remove_on_fail);
    sqlite3_bind_int(st, 14, o->attempts_made);
    sqlite3_bind_int(st, 15, o->stalled_count);
    sqlite3_bind_double(st, 16, o->progress);
    fdb_bind_text(st, 17, o->progress_data);
    sqlite3_bind_int64(st, 18, ts);
    sqlite3_bind_int64(st, 19, o->delay_until);
    sqlite3_bind_int64(st, 20, o->processed_on);
    sqlite3_bind_int64(st, 21, o->finished_on);
    fdb_bind_text(st, 22, o->returnvalue);
    fdb_bind_text(st, 23, o->failed_reason);
    fdb_bind_text(st, 24, o->logs);
    fdb_bind_text(st, 25, o->group);
    sqlite3_bind_int64(st, 26, sk1);
    sqlite3_bind_int64(st, 27, sk2);
    sqlite3_bind_int64(st, 28, rid);
    if ((rc = fdb_run(c, st, err)) != NV_OK)
        return rc;
    if (sqlite3_changes(fdb_handle(c)) == 0 &&
        (qs->excess[0] > 0 || qs->excess[1] > 0)) {
        /* The id exists: unless it is a job that retention removes in
         * this batch (Q-10 before Q-3), as it would have at once. */
        if ((rc = fq_trim(c, a->fq, qs, err)) != NV_OK ||
            (rc = fdb_run(c, st, err)) != NV_OK)
            return rc;
    }
    if (sqlite3_changes(fdb_handle(c)) == 0)
        return existing(c, a, err);     /* the id exists */
    fq_rid_taken(a->fq, qs, rid, ts);
    rc = fq_push(a->fq, delayed ? &qs->delay : &qs->wait, sk1, sk2, rid,
                 err);
    if (rc != NV_OK)
        return rc;
    if (a->want_out) {
        a->out.state = delayed ? NV_JOB_DELAYED
                     : paused ? NV_JOB_PAUSED : NV_JOB_WAITING;
        a->out.timestamp = ts;
        a->out.lease_until = 0;
        a->out.lease_token[0] = '\0';
    }
    fq_count_move(qs, -1, delayed ? NV_JOB_DELAYED : NV_JOB_WAITING, 1);
    a->created = 1;
    if (a->rec != NULL && !delayed &&
        fq_rec_put(a->fq, rid, a->rec) == 0)
        a->rec = NULL;      /* the writer's now */
    return NV_OK;
}

int
fq_enqueue_in(struct fdb_conn *c, struct fq *fq, const nv_job *job,
              int64_t now, int *created, nv_error *err)
{
    struct enq_args a = { .fq = fq, .job = job, .now = now };
    int rc = enqueue_fn(c, &a, err);

    *created = a.created;
    return rc;
}

static void
enqueue_after(void *arg)
{
    struct enq_args *a = arg;

    if (a->created)
        fq_notify_one(a->fq, a->job->queue);
}

int
fq_enqueue(void *self, const nv_job *job, int64_t now, int64_t max_unfinished,
           nv_job *out, int *created, nv_error *err)
{
    struct enq_args a = { .fq = self, .job = job, .now = now,
                          .max_unfinished = max_unfinished,
                          .want_out = out != NULL };
    int rc;

    if (a.want_out) {
        if (nv_job_copy(&a.out, job) != NV_OK ||
            (a.out.data == NULL && (a.out.data = nv__strdup("{}")) == NULL)) {
            nv_job_release(&a.out);
            return fdb_oom("queue", err);
        }
    }
    if (job->delay_until <= now && job->logs == NULL)
        a.rec = rec_build(a.fq, job, job->timestamp != 0 ? job->timestamp
                                                        : now);
    rc = fdb_write(a.fq->db, enqueue_fn, enqueue_after, &a, err);
    fq_rec_free(a.fq, a.rec);   /* not cached: an existing id, a failure */
    if (rc != NV_OK) {
        nv_job_release(&a.out);
        return rc;
    }
    if (created != NULL)
        *created = a.created;
    if (out != NULL)
        *out = a.out;
    return NV_OK;
}

/* enqueue_many: every job in one transaction (one commit for a bulk
 * start's entry jobs): a full queue refuses its job only
 * (fdb_write_each). */
int
fq_enqueue_many(void *self, const nv_job *jobs, size_t n, int64_t now,
                int64_t max_unfinished, int *rcs, int *created, nv_error *err)
{
    struct fq *fq = self;
    struct enq_args *v;
    int rc;

    if (n == 0)
        return NV_OK;
    if ((v = nv__calloc(n, sizeof(*v))) == NULL) {
        for (size_t i = 0; i < n; i++)
            rcs[i] = NV_ENOMEM;
        return fdb_oom("queue", err);
    }
    for (size_t i = 0; i < n; i++) {
        const nv_job *j = &jobs[i];

        v[i] = (struct enq_args){ .fq = fq, .job = j, .now = now,
                                  .max_unfinished = max_unfinished };
        if (j->delay_until <= now && j->logs == NULL)
            v[i].rec = rec_build(fq, j, j->timestamp != 0 ? j->timestamp
                                                          : now);
    }
    rc = fdb_write_each(fq->db, enqueue_fn, enqueue_after, v, sizeof(*v), n,
                        NV_EQUEUE_FULL, rcs, err);
    for (size_t i = 0; i < n; i++) {
        fq_rec_free(fq, v[i].rec);   /* not cached */
        if (created != NULL)
            created[i] = rcs[i] == NV_OK && v[i].created;
    }
    nv__free(v);
    return rc;
}

/* ---- reserve ---- */

struct res_args {
    struct fq         *fq;
    const char        *queue;
    int64_t            now, lease_ms;
    const nv_limiter  *lim;
    nv_job             out;        /* filled here unless 'rec' is set */
    struct fq_rec     *rec;        /* the job as cached: out is made of it */
    int64_t            until;      /* the lease taken */
    char               token[40];
    int                found;
    int64_t            next_at;
};

/* After the write: the nv_job of a reserve that took a cached record. */
static int
res_out(struct res_args *a, nv_error *err)
{
    int rc = NV_OK;

    if (a->rec != NULL) {
        rc = rec_to_job(a->rec, a->now, a->until, a->token, &a->out, err);
        fq_rec_free(a->fq, a->rec);
        a->rec = NULL;
    }
    return rc;
}

/*
 * Claim the waiting entry 'e' whose job is cached as 'rec': the UPDATE
 * of reserve_fn, taking effect only when the row is still what the
 * record says (waiting under that sk2, the same id, no log added since).
 * 1 claimed, 0 not (the caller reads the row), <0 error.
 */
static int
claim_cached(struct fdb_conn *c, struct res_args *a, const struct fq_ent *e,
             const struct fq_rec *rec, nv_error *err)
{
    FDB_STMT(c, st, "UPDATE jobs SET state = 2, processed_on = ?2,"
                    " finished_on = 0, lease_until = ?3, lease_token = ?4,"
                    " sk1 = ?3, sk2 = 0 WHERE rid = ?1 AND state = 0"
                    " AND sk2 = ?5 AND id = ?6 AND logs IS NULL");
    int rc;

    sqlite3_bind_int64(st, 1, e->rid);
    sqlite3_bind_int64(st, 2, a->now);
    sqlite3_bind_int64(st, 3, a->until);
    fdb_bind_text(st, 4, a->token);
    sqlite3_bind_int64(st, 5, e->k2);
    fdb_bind_text(st, 6, rec_str(rec, R_ID));
    if ((rc = fdb_run(c, st, err)) != NV_OK)
        return rc;
    return sqlite3_changes(fdb_handle(c)) == 1;
}

/* Delayed jobs that are due become waiting, in due order. */
static int
promote(struct fdb_conn *c, struct fq *fq, struct qstate *qs, int64_t now,
        nv_error *err)
{
    const struct fq_ent *t;
    struct fq_ent e;
    int rc;

    while ((t = fq_top(&qs->delay)) != NULL && t->k1 <= now) {
        FDB_STMT(c, up, "UPDATE jobs SET state = 0, sk1 = priority,"
                        " sk2 = CASE WHEN lifo THEN -?2 ELSE ?2 END"
                        " WHERE rid = ?1 AND state = 1 AND sk2 = ?3"
                        " RETURNING sk1, sk2");
        fq_pop(&qs->delay, &e);
        fq->seq++;
        sqlite3_bind_int64(up, 1, e.rid);
        sqlite3_bind_int64(up, 2, fq->seq);
        sqlite3_bind_int64(up, 3, e.k2);
        rc = fdb_step_row(c, up, err);
        if (rc == 1) {
            int64_t k1 = sqlite3_column_int64(up, 0);
            int64_t k2 = sqlite3_column_int64(up, 1);

            rc = fdb_step_done(up) == SQLITE_OK ? NV_OK
                 : fdb_fail(c, sqlite3_errcode(fdb_handle(c)), err);
            if (rc == NV_OK)
                rc = fq_push(fq, &qs->wait, k1, k2, e.rid, err);
            if (rc != NV_OK)
                return rc;
            fq_count_move(qs, NV_JOB_DELAYED, NV_JOB_WAITING, 1);
        } else {
            sqlite3_reset(up);
            if (rc < 0) {
                fq->need_load = 1;      /* the entry is gone from memory */
                return rc;
            }
        }
    }
    return NV_OK;
}

/*
 * The row of a popped waiting entry, if the entry still holds: 1 and
 * the job in 'out', 0 when stale, <0 on error.
 */
static int
take_row(struct fdb_conn *c, const struct fq_ent *e, nv_job *out,
         nv_error *err)
{
    FDB_STMT(c, sel, "SELECT " JOB_COLS " FROM jobs WHERE rid = ?1");
    int rc;

    sqlite3_bind_int64(sel, 1, e->rid);
    rc = fdb_step_row(c, sel, err);
    if (rc == 1 && (sqlite3_column_int(sel, COL_STATE) != NV_JOB_WAITING ||
                    sqlite3_column_int64(sel, COL_SK2) != e->k2))
        rc = 0;
    if (rc == 1 && fq_job_from_row(sel, 0, out, err) != NV_OK)
        rc = err->code;
    sqlite3_reset(sel);
    return rc;
}

/*
 * the first waiting job the limiter lets through, taken off the
 * heap into *pick (found = 1); *win_at = when a saturated window next
 * frees a slot. Jobs of saturated groups go back on the heap.
 */
static int
limited_pick(struct fdb_conn *c, struct res_args *a, struct qstate *qs,
             struct fq_ent *pick, int *found, int64_t *win_at,
             nv_error *err)
{
    const nv_limiter *lim = a->lim;
    int64_t since = a->now - lim->duration_ms;
    char **sat = NULL;
    size_t nsat = 0, nskip = 0, cap = 0;
    struct fq_ent *skip = NULL, e;
    int rc;

    *found = 0;
    *win_at = 0;
    FDB_STMT(c, del, "DELETE FROM limits WHERE queue = ?1 AND ts <= ?2");
    fdb_bind_text(del, 1, a->queue);
    sqlite3_bind_int64(del, 2, since);
    if ((rc = fdb_run(c, del, err)) != NV_OK)
        return rc;
    /* Both statements are prepared before 'sat' holds anything, so a
     * failed prepare cannot leak the saturated group names. */
    FDB_STMT(c, w, "SELECT CASE WHEN grp IS NULL THEN '' ELSE '=' || grp"
                   " END, state, sk2 FROM jobs WHERE rid = ?1");
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
    while (fq_pop(&qs->wait, &e)) {
        const char *g;
        size_t i;

        sqlite3_bind_int64(w, 1, e.rid);
        rc = fdb_step_row(c, w, err);
        if (rc < 0) {
            sqlite3_reset(w);
            fq_push(a->fq, &qs->wait, e.k1, e.k2, e.rid, err);
            break;
        }
        if (rc == 0 || sqlite3_column_int(w, 1) != NV_JOB_WAITING ||
            sqlite3_column_int64(w, 2) != e.k2) {
            sqlite3_reset(w);
            rc = NV_OK;
            continue;           /* stale */
        }
        g = (const char *)sqlite3_column_text(w, 0);
        for (i = 0; i < nsat && strcmp(sat[i], g ? g : "") != 0; i++)
            ;
        sqlite3_reset(w);
        rc = NV_OK;
        if (i == nsat) {
            *pick = e;
            *found = 1;
            break;
        }
        {
            struct fq_ent *v = fdb_grow(skip, &cap, nskip, sizeof(*v));

            if (v == NULL) {
                fq_push(a->fq, &qs->wait, e.k1, e.k2, e.rid, err);
                rc = fdb_oom("queue", err);
                break;
            }
            skip = v;
            skip[nskip++] = e;
        }
    }
    for (size_t i = 0; i < nskip; i++) {
        nv_error e2;

        if (fq_push(a->fq, &qs->wait, skip[i].k1, skip[i].k2, skip[i].rid,
                    &e2) != NV_OK && rc == NV_OK)
            rc = fdb_oom("queue", err);
    }
out:
    nv__free(skip);
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
    struct qstate *qs = fq_qs_write(c, a->fq, a->queue, err);
    int limited = a->lim != NULL && a->lim->max > 0;
    int64_t win_at = 0, next, keep_c, keep_f;
    unsigned char rnd[16];
    struct fq_rec *rec = NULL;
    struct fq_ent e;
    int rc = NV_OK, found = 0, prio, lifo;

    a->next_at = 0;
    a->found = 0;
    a->until = a->now + a->lease_ms;
    if (qs == NULL)
        return err->code;
    /* Prepared before any entry leaves the heap. */
    FDB_STMT(c, st, "UPDATE jobs SET state = 2, processed_on = ?2,"
                    " finished_on = 0, lease_until = ?3, lease_token = ?4,"
                    " sk1 = ?3, sk2 = 0 WHERE rid = ?1");
    if ((rc = promote(c, a->fq, qs, a->now, err)) != NV_OK)
        return rc;
    if (qs->paused)
        return NV_OK;
    nv__random(rnd, sizeof(rnd));
    for (int i = 0; i < 16; i++) {
        a->token[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
        a->token[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
    }
    a->token[32] = '\0';
    /* The claim: the first entry of the heap whose row still holds. */
    if (limited) {
        rc = limited_pick(c, a, qs, &e, &found, &win_at, err);
        if (rc != NV_OK)
            return rc;
        if (found) {
            /* Checked a moment ago in this transaction: it holds. */
            if ((rc = take_row(c, &e, &a->out, err)) < 0) {
                nv_error e2;

                fq_push(a->fq, &qs->wait, e.k1, e.k2, e.rid, &e2);
                return rc;
            }
            found = rc == 1;
            if (found)
                fq_rec_drop(a->fq, e.rid);
        }
    } else {
        while ((found = fq_pop(&qs->wait, &e))) {
            if ((rec = fq_rec_take(a->fq, e.rid)) != NULL) {
                rc = claim_cached(c, a, &e, rec, err);
                if (rc == 1)
                    break;
                fq_rec_free(a->fq, rec);
                rec = NULL;
                if (rc < 0)
                    break;
                /* Changed since it was cached (or stale): read it. */
            }
            if ((rc = take_row(c, &e, &a->out, err)) != 0)
                break;
        }
        if (found && rc < 0) {
            nv_error e2;

            fq_push(a->fq, &qs->wait, e.k1, e.k2, e.rid, &e2);
            return rc;
        }
    }
    rc = NV_OK;
    if (found) {
        if (rec == NULL) {
            sqlite3_bind_int64(st, 1, e.rid);
            sqlite3_bind_int64(st, 2, a->now);
            sqlite3_bind_int64(st, 3, a->until);
            fdb_bind_text(st, 4, a->token);
            if ((rc = fdb_run(c, st, err)) != NV_OK) {
                a->fq->need_load = 1;
                nv_job_release(&a->out);
                return rc;
            }
            prio = a->out.priority;
            lifo = a->out.lifo;
            keep_c = a->out.remove_on_complete;
            keep_f = a->out.remove_on_fail;
        } else {
            prio = rec->priority;
            lifo = rec->lifo;
            keep_c = rec->remove_on_complete;
            keep_f = rec->remove_on_fail;
        }
        fq_count_move(qs, NV_JOB_WAITING, NV_JOB_ACTIVE, 1);
        rc = fq_lease_put(a->fq, qs, e.rid, a->until, prio, lifo, err);
        if (rc != NV_OK) {
            nv_job_release(&a->out);
            fq_rec_free(a->fq, rec);
            return rc;
        }
        {
            struct lease_hint *h = fq_hint(a->fq, a->token);

            h->rid = e.rid;
            h->keep_c = keep_c;
            h->keep_f = keep_f;
            memcpy(h->token, a->token, sizeof(a->token));
        }
        if (rec != NULL) {
            a->rec = rec;       /* the caller makes a->out of it */
        } else {
            a->out.state = NV_JOB_ACTIVE;
            a->out.processed_on = a->now;
            a->out.finished_on = 0;
            a->out.lease_until = a->until;
            memcpy(a->out.lease_token, a->token, sizeof(a->token));
        }
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
    if ((next = fq_next_due(qs)) != INT64_MAX)
        a->next_at = next;
    if (win_at > 0 && (a->next_at == 0 || win_at < a->next_at))
        a->next_at = win_at;
    return NV_OK;
}

int
fq_reserve(void *self, const char *queue, int64_t now, int64_t lease_ms,
           const nv_limiter *lim, nv_job *out, int64_t *next_at,
           nv_error *err)
{
    struct fq *fq = self;
    struct res_args a = { .fq = fq, .queue = queue, .now = now,
                          .lease_ms = lease_ms, .lim = lim };
    int rc;

    fq_wait_mark(fq, queue);
    /* A write even when nothing is found: due delayed jobs are promoted
     * in the same transaction, and the result is the same either way. */
    rc = fdb_write(fq->db, reserve_fn, NULL, &a, err);
    if (rc == NV_OK && a.found && (rc = res_out(&a, err)) == NV_OK) {
        *out = a.out;
        return NV_OK;
    }
    fq_rec_free(fq, a.rec);
    nv_job_release(&a.out);
    if (rc != NV_OK)
        return rc;
    if (next_at != NULL)
        *next_at = a.next_at;
    return nv__error(err, NV_ENOTFOUND, "no runnable job in queue '%s'",
                     queue);
}

/* ---- finish_reserve ---- */

struct finres_args {
    struct res_args  res;
    const char      *id, *token;
    const nv_finish *f;
    int              wake;
};

/* The finish first: when the lease is gone it fails before writing, and
 * nothing is reserved. */
static int
finish_reserve_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct finres_args *a = arg;
    int rc;

    rc = fq_finish_in(c, a->res.fq, a->res.queue, a->id, a->token, a->f,
                      a->res.now, &a->wake, err);
    if (rc != NV_OK)
        return rc;
    return reserve_fn(c, &a->res, err);
}

static void
finish_reserve_after(void *arg)
{
    struct finres_args *a = arg;

    /* A job put back to waiting that this reserve did not take again
     * is for somebody else. */
    if (a->wake)
        fq_notify_one(a->res.fq, a->res.queue);
}

int
fq_finish_reserve(void *self, const char *queue, const char *id,
                  const char *token, const nv_finish *f, int64_t now,
                  int64_t lease_ms, const nv_limiter *lim, nv_job *out,
                  int *got, int64_t *next_at, nv_error *err)
{
    struct fq *fq = self;
    struct finres_args a = {
        .res = { .fq = fq, .queue = queue, .now = now, .lease_ms = lease_ms,
                 .lim = lim },
        .id = id, .token = token, .f = f,
    };
    int rc;

    *got = 0;
    fq_wait_mark(fq, queue);
    rc = fdb_write(fq->db, finish_reserve_fn, finish_reserve_after, &a, err);
    if (rc == NV_OK && a.res.found) {
        nv_error e2;

        /* Out of memory for the job taken: the finish stands; the job
         * comes back once its lease expires (W-3). */
        if (res_out(&a.res, &e2) == NV_OK) {
            *out = a.res.out;
            *got = 1;
        }
        return NV_OK;
    }
    fq_rec_free(fq, a.res.rec);
    nv_job_release(&a.res.out);
    if (rc == NV_OK && next_at != NULL)
        *next_at = a.res.next_at;
    return rc;
}
