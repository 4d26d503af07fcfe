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

/*
 * A listing reads two runs of rows, each newest first (the layout:
 * queue.c, schema v3), and merges them: the queue's ordered rows
 * backwards along the rowid, each run of equal timestamps sorted by id
 * here, and its other rows through the partial index jobs_spill. Both
 * read only (rid, timestamp, id, state) and the merge takes a row only
 * when it is the newer of the two heads, whatever its state, so that no
 * row older than the page's last is read (but the rest of that row's
 * run of equal timestamps); the rows of the page are then read whole,
 * LIST_CHUNK rowids per statement.
 *
 * A long run of one timestamp (past LIST_RUN_MAX rows: jobs stamped
 * alike by a caller of the adapter; the engine stamps each with its
 * clock) is measured first: its first rowid is found by bisection
 * (timestamps never decrease along the rowids), and the rowids it spans
 * bound its rows. When it spans at least 1/64 of the queue's jobs, its
 * rows come in id order from jobs_id instead of being read whole
 * (skipping the queue's other ids: fewer than 64 a row, unless many of
 * the rows it spans were removed), and the rowid order goes on below
 * it; a shorter one is read whole (less than 1/64 of the queue).
 */
#define LIST_RUN_MAX 64

struct lrow {
    int64_t     rid, ts;
    int         state;
    size_t      at;             /* of the id in the run's text */
    const char *id;             /* set once the run is read */
};

struct lrun {
    sqlite3_stmt *st;
    int           row;          /* st is on a row not yet taken */
    int64_t       lo, hi;       /* the queue's ordered rowids */
    struct lrow  *g;            /* the run of one timestamp, sorted */
    size_t        gn, gi, gcap; /* its rows, the next one, room */
    char         *text;         /* their ids */
    size_t        tn, tcap;
    /* A long run, read from jobs_id (tst on its next row, trow). */
    sqlite3_stmt *tst, *bst;    /* jobs_id order; bisection */
    int           tie, trow, tnext;
    int64_t       tts, tfloor;  /* its timestamp; the rowid below it */
};

/* Listing order: timestamp, then id, descending. */
static int
lrow_cmp(int64_t ats, const char *aid, int64_t bts, const char *bid)
{
    if (ats != bts)
        return ats > bts ? -1 : 1;
    return -strcmp(aid, bid);
}

static int
lrow_sort(const void *a, const void *b)
{
    const struct lrow *x = a, *y = b;

    return lrow_cmp(x->ts, x->id, y->ts, y->id);
}

/* Step 'st' (1: on a row, 0: done, <0: error) into *row. */
static int
lrun_step(struct fdb_conn *c, sqlite3_stmt *st, int *row, nv_error *err)
{
    int rc = fdb_step_row(c, st, err);

    *row = rc == 1;
    return rc;
}

/* Start the ordered rows at rowid 'hi' and below. */
static int
lrun_start(struct fdb_conn *c, struct lrun *r, int64_t hi, nv_error *err)
{
    int rc;

    sqlite3_reset(r->st);
    sqlite3_bind_int64(r->st, 1, r->lo);
    sqlite3_bind_int64(r->st, 2, hi);
    rc = lrun_step(c, r->st, &r->row, err);
    return rc < 0 ? rc : NV_OK;
}

/* *floor: the greatest ordered rowid whose row is older than 'ts', the
 * timestamp of the row at 'top' (r->lo - 1: none), by bisection over the
 * rowids: the nearest row at or below x is older for every x below the
 * run of 'ts', and for none from its first row up. */
static int
run_floor(struct fdb_conn *c, struct lrun *r, int64_t ts, int64_t top,
          int64_t *floor, nv_error *err)
{
    int64_t a = r->lo - 1, b = top;     /* a: older or none; b: not */
    int rc, row;

    while (b - a > 1) {
        int64_t x = a + (b - a) / 2;

        sqlite3_reset(r->bst);
        sqlite3_bind_int64(r->bst, 1, r->lo);
        sqlite3_bind_int64(r->bst, 2, x);
        if ((rc = lrun_step(c, r->bst, &row, err)) < 0)
            return rc;
        if (!row || sqlite3_column_int64(r->bst, 1) < ts)
            a = x;
        else
            b = x;
    }
    sqlite3_reset(r->bst);
    *floor = a;
    return NV_OK;
}

/* A long run read from jobs_id ends: the rowid order goes on below it. */
static int
lrun_below(struct fdb_conn *c, struct lrun *r, nv_error *err)
{
    r->tie = 0;
    if (r->tfloor < r->lo) {
        r->row = 0;
        return NV_OK;
    }
    return lrun_start(c, r, r->tfloor, err);
}

/* The next run of equal timestamps of the ordered rows, sorted (none
 * when the rows are all read), or a long run turned to jobs_id order
 * (r->tie: only its rows in stored states 'stored'); <0 on error.
 * 'queue_n': the queue's jobs. */
static int
lrun_fill(struct fdb_conn *c, struct lrun *r, const char *queue,
          int64_t queue_n, unsigned stored, nv_error *err)
{
    int64_t ts, top;
    int rc, checked = 0;

    r->gn = r->gi = r->tn = 0;
    if (!r->row)
        return NV_OK;
    ts = sqlite3_column_int64(r->st, 1);
    top = sqlite3_column_int64(r->st, 0);
    do {
        struct lrow *g = fdb_grow(r->g, &r->gcap, r->gn, sizeof(*g));
        const char *id = (const char *)sqlite3_column_text(r->st, 2);
        size_t len = id != NULL ? strlen(id) + 1 : 1;

        if (g == NULL)
            return fdb_oom("queue", err);
        r->g = g;
        if (r->tn + len > r->tcap) {
            size_t cap = r->tcap ? r->tcap : 1024;
            char *t;

            while (cap < r->tn + len)
                cap *= 2;
            if ((t = nv__realloc(r->text, cap)) == NULL)
                return fdb_oom("queue", err);
            r->text = t;
            r->tcap = cap;
        }
        memcpy(r->text + r->tn, id != NULL ? id : "", len);
        g[r->gn].rid = sqlite3_column_int64(r->st, 0);
        g[r->gn].ts = ts;
        g[r->gn].state = sqlite3_column_int(r->st, 3);
        g[r->gn].at = r->tn;
        r->tn += len;
        r->gn++;
        if ((rc = lrun_step(c, r->st, &r->row, err)) < 0)
            return rc;
        if (!checked && r->row && r->gn >= LIST_RUN_MAX &&
            sqlite3_column_int64(r->st, 1) == ts) {
            /* A long run: how long (its rowids hold at most its rows
             * and the gaps of removed ones)? */
            int64_t floor;

            checked = 1;
            if ((rc = run_floor(c, r, ts, top, &floor, err)) != NV_OK)
                return rc;
            if ((top - floor) * 64 >= queue_n) {
                /* From jobs_id, in id order. */
                r->gn = r->tn = 0;
                r->tie = 1;
                r->tts = ts;
                r->tfloor = floor;
                sqlite3_reset(r->st);
                sqlite3_reset(r->tst);
                fdb_bind_text(r->tst, 1, queue);
                sqlite3_bind_int64(r->tst, 2, floor + 1);
                sqlite3_bind_int64(r->tst, 3, top);
                sqlite3_bind_int64(r->tst, 4, ts);
                sqlite3_bind_int64(r->tst, 5, stored);
                rc = lrun_step(c, r->tst, &r->trow, err);
                return rc < 0 ? rc : NV_OK;
            }
        }
    } while (r->row && sqlite3_column_int64(r->st, 1) == ts);
    for (size_t i = 0; i < r->gn; i++)
        r->g[i].id = r->text + r->g[i].at;
    if (r->gn > 1)
        qsort(r->g, r->gn, sizeof(*r->g), lrow_sort);
    return NV_OK;
}

/* The rowids of the page (offset, limit) of the rows in stored states
 * 'stored' (of which there are 'total', of 'queue_n' jobs in all),
 * newest first, into *rids (*n of them). */
static int
list_rids(struct fdb_conn *c, struct list_args *a, unsigned stored,
          int64_t qnum, int64_t queue_n, int64_t **rids, size_t *n,
          nv_error *err)
{
    FDB_STMT(c, ost, "SELECT rid, timestamp, id, state FROM jobs"
                     " WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid DESC");
    FDB_STMT(c, sst, "SELECT rid, timestamp, id, state FROM jobs"
                     " INDEXED BY jobs_spill WHERE queue = ?1"
                     " AND rid < " FQ_ORDERED_MIN_SQL
                     " ORDER BY timestamp DESC, id DESC");
    FDB_STMT(c, tst, "SELECT rid, id, state FROM jobs INDEXED BY jobs_id"
                     " WHERE queue = ?1 AND rid BETWEEN ?2 AND ?3"
                     " AND timestamp = ?4 AND (?5 >> state) & 1"
                     " ORDER BY id DESC");
    FDB_STMT(c, bst, "SELECT rid, timestamp FROM jobs"
                     " WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid DESC LIMIT 1");
    struct lrun o = { .st = ost, .tst = tst, .bst = bst };
    int64_t skip = a->offset < 0 ? 0 : a->offset, seen = 0;
    int64_t want = a->limit < 0 || skip > INT64_MAX - a->limit
                 ? INT64_MAX : skip + a->limit;
    size_t cap = 0;
    int rc, srow = 0;

    fdb_bind_text(sst, 1, a->queue);
    if ((rc = lrun_step(c, sst, &srow, err)) < 0)
        goto done;
    if (qnum > 0) {
        o.lo = qnum << FQ_QSHIFT;
        o.hi = qnum << FQ_QSHIFT | FQ_SEQ_MAX;
        if ((rc = lrun_start(c, &o, o.hi, err)) != NV_OK)
            goto done;
    }
    rc = NV_OK;
    /* Up to the page's end, or the last matching row (the total). */
    while (seen < want && seen < a->total) {
        int64_t ots = 0, rid;
        const char *oid = NULL;
        int state, from_o, ohas;

        /* The long run's next row is found only when needed (it may lie
         * far: other states, other timestamps in between). */
        if (o.tie && o.tnext) {
            o.tnext = 0;
            if ((rc = lrun_step(c, tst, &o.trow, err)) < 0)
                goto done;
        }
        if (o.tie && !o.trow && (rc = lrun_below(c, &o, err)) != NV_OK)
            goto done;
        if (!o.tie && o.gi == o.gn &&
            (rc = lrun_fill(c, &o, a->queue, queue_n, stored, err)) != NV_OK)
            goto done;
        if (o.tie) {
            ohas = o.trow;
            ots = o.tts;
            oid = (const char *)sqlite3_column_text(tst, 1);
        } else if ((ohas = o.gi < o.gn)) {
            ots = o.g[o.gi].ts;
            oid = o.g[o.gi].id;
        }
        if (ohas && srow) {
            const char *sid = (const char *)sqlite3_column_text(sst, 2);

            from_o = lrow_cmp(ots, oid != NULL ? oid : "",
                              sqlite3_column_int64(sst, 1),
                              sid != NULL ? sid : "") < 0;
        } else if (ohas || srow) {
            from_o = ohas;
        } else {
            break;
        }
        if (from_o && o.tie) {
            rid = sqlite3_column_int64(tst, 0);
            state = sqlite3_column_int(tst, 2);
            o.tnext = 1;
        } else if (from_o) {
            rid = o.g[o.gi].rid;
            state = o.g[o.gi++].state;
        } else {
            rid = sqlite3_column_int64(sst, 0);
            state = sqlite3_column_int(sst, 3);
            if ((rc = lrun_step(c, sst, &srow, err)) < 0)
                goto done;
        }
        rc = NV_OK;
        if (state < 0 || state > 4 || !(stored & NV_JOB_MASK(state)) ||
            seen++ < skip)
            continue;
        int64_t *v = fdb_grow(*rids, &cap, *n, sizeof(*v));

        if (v == NULL) {
            rc = fdb_oom("queue", err);
            goto done;
        }
        *rids = v;
        v[(*n)++] = rid;
    }
done:
    nv__free(o.g);
    nv__free(o.text);
    sqlite3_reset(ost);
    sqlite3_reset(sst);
    sqlite3_reset(tst);
    sqlite3_reset(bst);
    return rc;
}

#define LIST_CHUNK 32

static int
list_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct list_args *a = arg;
    unsigned stored = a->mask & (NV_JOB_MASK(NV_JOB_DELAYED) |
                                 NV_JOB_MASK(NV_JOB_ACTIVE) |
                                 NV_JOB_MASK(NV_JOB_COMPLETED) |
                                 NV_JOB_MASK(NV_JOB_FAILED));
    size_t nr = 0;
    int64_t *rids = NULL, qnum = 0, queue_n = 0;
    int rc, paused;

    int64_t n[5];

    /* The counts of the snapshot read below, from the writer's memory. */
    if ((rc = fq_counts_snapshot(c, a->fq, a->queue, n, &paused, &qnum,
                                 err)) != NV_OK)
        return rc;
    if (a->mask & NV_JOB_MASK(paused ? NV_JOB_PAUSED : NV_JOB_WAITING))
        stored |= NV_JOB_MASK(NV_JOB_WAITING);
    a->total = 0;
    for (int s = 0; s < 5; s++) {
        queue_n += n[s];
        if (stored & NV_JOB_MASK(s))
            a->total += n[s];
    }
    if (a->limit == 0 || a->total == 0)
        return NV_OK;
    FDB_STMT(c, st, "SELECT " JOB_COLS " FROM jobs WHERE rid IN (?1, ?2,"
                    " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                    " ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25,"
                    " ?26, ?27, ?28, ?29, ?30, ?31, ?32)");
    if ((rc = list_rids(c, a, stored, qnum, queue_n, &rids, &nr, err)) != NV_OK) {
        nv__free(rids);
        return rc;
    }
    if (nr > 0 && (a->out = nv__calloc(nr, sizeof(*a->out))) == NULL) {
        nv__free(rids);
        return fdb_oom("queue", err);
    }
    a->n = nr;      /* zeroed until read: releasing them is harmless */
    /* The page's rows whole, LIST_CHUNK rowids per statement (0, which no
     * row has, pads the last). */
    for (size_t at = 0; at < nr && rc == NV_OK; at += LIST_CHUNK) {
        size_t k = nr - at < LIST_CHUNK ? nr - at : LIST_CHUNK, got = 0;

        for (size_t i = 0; i < LIST_CHUNK; i++)
            sqlite3_bind_int64(st, (int)i + 1, i < k ? rids[at + i] : 0);
        while (rc == NV_OK && (rc = fdb_step_row(c, st, err)) == 1) {
            int64_t rid = sqlite3_column_int64(st, COL_RID);
            size_t i = 0;

            while (i < k && rids[at + i] != rid)
                i++;
            rc = i < k ? fq_job_from_row(st, paused, &a->out[at + i], err)
                       : NV_OK;
            got++;
        }
        sqlite3_reset(st);
        if (rc == 0 && got != k)    /* the snapshot has them: cannot be */
            rc = nv__error(err, NV_EBACKEND, "file queue: a listed job"
                           " vanished from its snapshot");
    }
    nv__free(rids);
    return rc;
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
