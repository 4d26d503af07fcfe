/*
 * Internals of the file queue adapter, shared by its files: queue.c
 * (schema, open/close, the writer's per-queue cache, pause), queue_claim.c
 * (enqueue, reserve), queue_finish.c (lease ops, retention, log, remove,
 * retry, reap), queue_read.c (rows, get, list, counts), queue_wait.c
 * (waiters and wake-ups). Private to src/adapters/file/.
 */
#ifndef NV_ADAPTERS_FILE_QUEUE_H
#define NV_ADAPTERS_FILE_QUEUE_H

#include <pthread.h>
#include <stdint.h>

#include "adapters/file/fdb.h"

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

/*
 * What a reserve learnt about the job it leased, so that the finish of
 * that lease need not look the job up by id first: a hint only, checked
 * by the finish's UPDATE itself (rowid, state, token, queue and id).
 * Direct-mapped by token; leader only.
 */
#define FQ_HINTS 1024
struct lease_hint {
    int64_t rid, keep_c, keep_f;   /* rowid, remove_on_complete/fail */
    char    token[40];             /* "" = free */
};

/* The adapter: the 'self' of every op. */
struct fq {
    struct fdb     *db;
    int64_t         seq;       /* ordering counter (sk2); leader only */
    struct qstate  *qs;        /* leader only */
    struct lease_hint *hints;  /* FQ_HINTS of them; leader only */

    pthread_mutex_t wmu;       /* guards gens, woken */
    pthread_cond_t  wcv;       /* waiters without a generation (no memory) */
    struct qgen    *gens;      /* per-queue generations (queue_wait.c) */
    uint64_t        woken;     /* bumped by fq_wake */
};

/* The columns fq_job_from_row reads, in its order; COL_RID is the rowid. */
#define JOB_COLS \
    "id, queue, name, run_id, flow_name, step_name, data, opts, state," \
    " priority, lifo, remove_on_complete, remove_on_fail, attempts_made," \
    " stalled_count, progress, progress_data, timestamp, delay_until," \
    " processed_on, finished_on, returnvalue, failed_reason, logs, grp," \
    " lease_until, lease_token, rid"
#define COL_RID 27

/* ---- The writer's cache (queue.c) ---- */

/* The cache entry of 'queue', created on first use; NULL when out of
 * memory. */
struct qstate *fq_qstate(struct fq *fq, const char *queue);
/* A job becomes delayed until 'at'. */
void    fq_due_at(struct qstate *qs, int64_t at);
/* fq_paused_read for the writer, through the cache. */
int     fq_paused_cached(struct fdb_conn *c, struct qstate *qs, int *paused,
                         nv_error *err);
/* The writer's counts of 'qs', loaded once (then kept by fq_count_move). */
int     fq_counts_load(struct fdb_conn *c, struct qstate *qs, nv_error *err);
/* 'k' jobs went from stored state 'from' to 'to' (-1: none). */
void    fq_count_move(struct qstate *qs, int from, int to, int64_t k);
/* The sk2 of a job becoming waiting now. */
int64_t fq_wait_seq(struct fq *fq, int lifo);
/* The hint slot of a lease token. */
struct lease_hint *fq_hint(struct fq *fq, const char *token);

/* ---- Rows (queue_read.c) ---- */

/* Fill 'j' from the current row; 'paused' turns waiting into paused. */
int fq_job_from_row(sqlite3_stmt *st, int paused, nv_job *j, nv_error *err);
/* The paused flag of 'queue' as stored. */
int fq_paused_read(struct fdb_conn *c, const char *queue, int *paused,
                   nv_error *err);
/* Read a job by id into 'out' (reported state); its rowid into *rid
 * (may be NULL). NV_EJOB_NOT_FOUND when there is none. */
int fq_load_job(struct fdb_conn *c, const char *queue, const char *id,
                nv_job *out, int64_t *rid, nv_error *err);

/* ---- Waiters (queue_wait.c) ---- */

/* Wake the waiters of 'queue' (after a commit that may make a job
 * runnable). */
void fq_notify(struct fq *fq, const char *queue);
/* The same when one job became runnable: wakes one waiter. */
void fq_notify_one(struct fq *fq, const char *queue);
/* Remember, for this thread, the wake-up generation of 'queue' as a
 * reserve starts, so that its following wait sees a later enqueue. */
void fq_wait_mark(struct fq *fq, const char *queue);
/* Free the wake-up generations (on close). */
void fq_wait_release(struct fq *fq);

/* ---- Shared steps of write ops ---- */

/* The body of finish (queue_finish.c), inside a write: ends the attempt
 * held with 'token' and applies retention; *wake = 1 when the job became
 * waiting or delayed. Checks the lease before it writes anything. */
int fq_finish_in(struct fdb_conn *c, struct fq *fq, const char *queue,
                 const char *id, const char *token, const nv_finish *f,
                 int64_t now, int *wake, nv_error *err);

/* ---- Ops (adapter.h), for the ops table in queue.c ---- */

int  fq_enqueue(void *self, const nv_job *job, int64_t now,
                int64_t max_unfinished, nv_job *out, int *created,
                nv_error *err);
int  fq_reserve(void *self, const char *queue, int64_t now, int64_t lease_ms,
                const nv_limiter *lim, nv_job *out, int64_t *next_at,
                nv_error *err);
int  fq_finish_reserve(void *self, const char *queue, const char *id,
                       const char *token, const nv_finish *f, int64_t now,
                       int64_t lease_ms, const nv_limiter *lim, nv_job *out,
                       int *got, int64_t *next_at, nv_error *err);
int  fq_extend(void *self, const char *queue, const char *id,
               const char *token, int64_t until, nv_error *err);
int  fq_finish(void *self, const char *queue, const char *id,
               const char *token, const nv_finish *f, int64_t now,
               nv_error *err);
int  fq_progress(void *self, const char *queue, const char *id,
                 const char *token, double progress, const char *data,
                 nv_error *err);
int  fq_log(void *self, const char *queue, const char *id,
            const char *entry_json, int keep, nv_error *err);
int  fq_remove(void *self, const char *queue, const char *id, nv_job *out,
               nv_error *err);
int  fq_retry(void *self, const char *queue, const char *id, int64_t now,
              nv_job *out, nv_error *err);
int  fq_reap(void *self, const char *queue, int64_t now, int max_stalled,
             nv_reaped **out, size_t *n, nv_error *err);
int  fq_get(void *self, const char *queue, const char *id, nv_job *out,
            nv_error *err);
int  fq_list(void *self, const char *queue, unsigned mask, int64_t offset,
             int64_t limit, nv_job **out, size_t *n, int64_t *total,
             nv_error *err);
int  fq_counts(void *self, const char *queue, nv_job_counts *out,
               nv_error *err);
int  fq_wait(void *self, const char *queue, int64_t timeout_ms);
void fq_wake(void *self);

#endif
