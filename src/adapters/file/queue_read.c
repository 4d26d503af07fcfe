/*
 * File queue, reads: turning a jobs row into an nv_job, the stored pause
 * flag, and the read ops get and list (counts: queue.c, from memory).
 * Reads run on a pooled read connection in one snapshot (fdb_read).
 */
#include <stdint.h>
#include <string.h>

#include "adapters/file/queue.h"

/* ---- Rows ---- */

/* Fill 'j' from the current row; 'paused' turns waiting into paused. */
int
fq_job_from_row(sqlite3_stmt *st, int paused, nv_job *j,
                nv_error *err)
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

int
fq_paused_read(struct fdb_conn *c, const char *queue, int *paused,
               nv_error *err)
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

/* Read a job by id into 'out' (reported state). NV_EJOB_NOT_FOUND. */
int
fq_load_job(struct fdb_conn *c, const char *queue, const char *id,
            nv_job *out, int64_t *rid, nv_error *err)
{
    FDB_STMT(c, st, "SELECT " JOB_COLS " FROM jobs"
                    " WHERE queue = ?1 AND id = ?2");
    int rc, paused;

    if ((rc = fq_paused_read(c, queue, &paused, err)) != NV_OK)
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
    rc = fq_job_from_row(st, paused, out, err);
    sqlite3_reset(st);
    return rc;
}

/* ---- Reads: get, list, counts ---- */

struct get_args {
    const char *queue, *id;
    nv_job      out;
};

static int
get_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct get_args *a = arg;

    return fq_load_job(c, a->queue, a->id, &a->out, NULL, err);
}

int
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
    struct fq  *fq;
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

    int64_t n[5];

    /* The counts of the snapshot read below, from the writer's memory. */
    if ((rc = fq_counts_snapshot(c, a->fq, a->queue, n, &paused, err)) !=
        NV_OK)
        return rc;
    if (a->mask & NV_JOB_MASK(paused ? NV_JOB_PAUSED : NV_JOB_WAITING))
        stored |= NV_JOB_MASK(NV_JOB_WAITING);
    a->total = 0;
    for (int s = 0; s < 5; s++) {
        if (stored & NV_JOB_MASK(s))
            a->total += n[s];
    }
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
        if ((rc = fq_job_from_row(st, paused, &a->out[a->n], err)) != NV_OK)
            break;
        a->n++;
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

int
fq_list(void *self, const char *queue, unsigned mask, int64_t offset,
        int64_t limit, nv_job **out, size_t *n, int64_t *total,
        nv_error *err)
{
    struct fq *fq = self;
    struct list_args a = { .fq = fq, .queue = queue, .mask = mask,
                           .offset = offset,
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
