/*
 * Internals of the file queue adapter, shared by its files: queue.c
 * (schema, open/close, the writer's memory of each queue: heaps, leases,
 * counts; counts, pause), queue_claim.c (enqueue, reserve), queue_finish.c
 * (lease ops, retention, log, remove, retry, reap), queue_read.c (rows,
 * get, list), queue_wait.c (waiters and wake-ups). Private to
 * src/adapters/file/.
 */
#ifndef NV_ADAPTERS_FILE_QUEUE_H
#define NV_ADAPTERS_FILE_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "adapters/file/fdb.h"

/*
 * The order of a queue's jobs inside a state, kept by the writer in
 * memory (the schema has had no index on it since v2): min-heaps of
 * (k1, k2, rid), with the keys the row holds as (sk1, sk2). An entry is
 * a hint: whoever pops one checks the row (state and sk2: every
 * transition draws a new sk2) and drops it when the job has moved on or
 * is gone, so a removal or a move need not find the old entry.
 */
struct fq_ent {
    int64_t k1, k2, rid;
};

struct fq_heap {
    struct fq_ent *v;          /* the heap */
    size_t         n, cap;
    /* Entries that came in key order (the usual case: fifo jobs, equal
     * delays, finishing times) wait in a ring instead, oldest first,
     * for O(1) and no cache misses; the least of both goes first. */
    struct fq_ent *r;
    size_t         rh, rn, rcap;
};

/* An active job: its lease end (for the reaper) and what putting it
 * back to waiting needs. Open addressing by rid; rid 0 = empty. */
struct fq_lease {
    int64_t rid, until;
    int     prio, lifo;
};

struct fq_lmap {
    struct fq_lease *v;
    size_t           cap, n;
};

/*
 * What the writer knows of a queue without asking the database, loaded
 * from it at open (fq_load): pause flag, jobs per stored state, the
 * order of waiting, delayed, completed and failed jobs, the active
 * leases. Touched only inside write ops (by the group-commit leader);
 * after a rolled-back batch it is loaded again. Readers see 'pub' and
 * 'pub_paused', copied under fq.cmu when a batch commits.
 */
struct qstate {
    struct qstate *next;
    int            paused;
    int64_t        n[5];       /* jobs per stored state */
    struct fq_heap wait;       /* (sk1 = priority, sk2 = +-seq) */
    struct fq_heap delay;      /* (delay_until, seq) */
    struct fq_heap done[2];    /* completed, failed: (finished_on, seq) */
    struct fq_lmap active;
    /* Retention left to the end of the batch: how many of the
     * oldest completed [0] and failed [1] jobs go before the commit;
     * n[] still counts them until then (fq_trim). */
    int64_t        excess[2];
    int64_t        pub[5];     /* fq.cmu */
    int            pub_paused; /* fq.cmu */
    /* The listing layout (queue.c, schema v3): the queue's number (0:
     * none yet), the sequence its next ordered row gets, and the latest
     * timestamp an ordered row of it has had (a row may take the next
     * sequence only with a timestamp at least that). */
    int64_t        qnum, oseq, ots;
    int64_t        pub_qnum;   /* fq.cmu */
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

/*
 * A job as its enqueue stored it, built by the enqueuing caller (off the
 * leader's path) and kept by the writer while the job waits, so that its
 * reserve need not read the row back: the reserve's UPDATE checks that
 * the row is still the one cached (same rowid, state, sk2, id, no log
 * added), and the reserving caller turns the record into its nv_job
 * after the commit. Only for jobs enqueued waiting, without logs, while
 * the records held stay under FQ_REC_BYTES; dropped when the job is
 * reserved or removed, all of them when the writer's memory is loaded
 * again (a rolled-back batch may have cached jobs that are not there).
 */
#define FQ_REC_BYTES (16 << 20)
struct fq_rec;
struct fq_recmap {
    struct fq_rslot { int64_t rid; struct fq_rec *rec; } *v;
    size_t cap, n;
};

/* The adapter: the 'self' of every op. */
struct fq {
    struct fdb     *db;
    int64_t         seq;       /* ordering counter (sk2); leader only */
    struct qstate  *qs;        /* changed by the leader under cmu */
    int             need_load; /* leader only: memory to be (re)loaded */
    pthread_mutex_t cmu;       /* guards the qs list and pub fields */
    pthread_mutex_t snap_mu;   /* held by the leader across a COMMIT */
    int             trims;     /* leader only: some qstate has excess */
    int64_t         qnum_max;  /* leader only: highest queue number given */
    int64_t         spill_min; /* leader only: least rowid, or 0 */
    struct lease_hint *hints;  /* FQ_HINTS of them; leader only */
    struct fq_recmap recs;     /* cached records by rid; leader only */
    _Atomic int64_t rec_bytes; /* held by records, cached or being built */

    pthread_mutex_t wmu;       /* guards gens, woken */
    pthread_cond_t  wcv;       /* waiters without a generation (no memory) */
    struct qgen    *gens;      /* per-queue generations (queue_wait.c) */
    uint64_t        woken;     /* bumped by fq_wake */
};

/* The columns fq_job_from_row reads, in its order; COL_RID is the rowid,
 * COL_SK2 the order key the heaps check. */
#define JOB_COLS \
    "id, queue, name, run_id, flow_name, step_name, data, opts, state," \
    " priority, lifo, remove_on_complete, remove_on_fail, attempts_made," \
    " stalled_count, progress, progress_data, timestamp, delay_until," \
    " processed_on, finished_on, returnvalue, failed_reason, logs, grp," \
    " lease_until, lease_token, rid, sk2"
#define COL_STATE 8
#define COL_RID 27
#define COL_SK2 28

/*
 * The rowid of a job (schema v3, queue.c): an "ordered" row has
 * rid = qnum << FQ_QSHIFT | seq (qnum 1..FQ_QNUM_MAX, the queue's number),
 * and the ordered rows of a queue have timestamps that never decrease as
 * the seq grows, so that a listing reads them backwards along the primary
 * key. Every other row (a timestamp older than the queue's latest, a
 * queue past the numbers, a row of schema v2) has rid < FQ_ORDERED_MIN
 * and is in the partial index jobs_spill (queue, timestamp, id).
 */
#define FQ_QSHIFT      47
#define FQ_ORDERED_MIN ((int64_t)1 << FQ_QSHIFT)
#define FQ_SEQ_MAX     (FQ_ORDERED_MIN - 1)
#define FQ_QNUM_MAX    ((int64_t)0xffff)
/* Literal of FQ_ORDERED_MIN for SQL text (the partial index's WHERE). */
#define FQ_ORDERED_MIN_SQL "140737488355328"

/* ---- The writer's memory (queue.c) ---- */

/* The entry of 'queue', created on first use; NULL when out of memory. */
struct qstate *fq_qstate(struct fq *fq, const char *queue);
/* The same for a write op: loads the writer's memory first when it is
 * not (a rolled-back batch); NULL with *err set on failure. */
struct qstate *fq_qs_write(struct fdb_conn *c, struct fq *fq,
                           const char *queue, nv_error *err);
/* For an op that looks a job up by id: the same without creating it
 * (*qs = NULL when 'queue' has no entry, and so no job: every stored
 * job's queue has one), with the retention pending in this batch applied
 * (fq_trim). NV_OK or the error of loading the memory or of the trim. */
int     fq_qs_for_id(struct fdb_conn *c, struct fq *fq, const char *queue,
                     struct qstate **qs, nv_error *err);
/* 'k' jobs went from stored state 'from' to 'to' (-1: none). */
void    fq_count_move(struct qstate *qs, int from, int to, int64_t k);
/* The sk2 of a job becoming waiting now. */
int64_t fq_wait_seq(struct fq *fq, int lifo);
/* The rowid for a new job of 'qs' with timestamp 'ts' (may give the
 * queue its number, a write in the caller's batch); fq_rid_taken
 * records that a row took it. */
int     fq_rid_new(struct fdb_conn *c, struct fq *fq, struct qstate *qs,
                   int64_t ts, int64_t *rid, nv_error *err);
void    fq_rid_taken(struct fq *fq, struct qstate *qs, int64_t rid,
                     int64_t ts);
/* The hint slot of a lease token. */
struct lease_hint *fq_hint(struct fq *fq, const char *token);
/* A job removed, or moved out of a heap other than by a pop, leaves a
 * stale entry behind. Past FQ_STALE_MAX more entries than twice the
 * jobs of a state, fq_stale_check marks the memory for a reload (which
 * has none). */
#define FQ_STALE_MAX 4096
void fq_stale_check(struct fq *fq, struct qstate *qs);
/* The heap of stored state 'state' (waiting, delayed, completed,
 * failed); NULL for active. */
struct fq_heap *fq_heap_of(struct qstate *qs, int state);
/* Heap ops; push fails only for want of memory (then the writer's
 * memory is marked for a reload and NV_ENOMEM returned). */
int     fq_push(struct fq *fq, struct fq_heap *h, int64_t k1, int64_t k2,
                int64_t rid, nv_error *err);
int     fq_pop(struct fq_heap *h, struct fq_ent *out);
/* The least entry (NULL: none); the number of entries. */
const struct fq_ent *fq_top(const struct fq_heap *h);
size_t  fq_size(const struct fq_heap *h);
/* The active lease of 'rid' (NULL: none); add one, drop one. */
struct fq_lease *fq_lease_get(struct qstate *qs, int64_t rid);
int     fq_lease_put(struct fq *fq, struct qstate *qs, int64_t rid,
                     int64_t until, int prio, int lifo, nv_error *err);
void    fq_lease_drop(struct qstate *qs, int64_t rid);
/* No delayed job of 'qs' is due before this (INT64_MAX: none). */
int64_t fq_next_due(const struct qstate *qs);

/* For a listing (queue.c): begins the read snapshot of 'c' and takes
 * the counts of 'queue' per stored state, its pause flag and its number
 * (0: none) as of that snapshot. */
int fq_counts_snapshot(struct fdb_conn *c, struct fq *fq, const char *queue,
                       int64_t n[5], int *paused, int64_t *qnum,
                       nv_error *err);

/* Cached records (queue.c): keep 'rec' for 'rid' (0, or -1 when out of
 * memory: the caller keeps it); take the one of 'rid' out (NULL: none);
 * drop and free the one of 'rid'; free them all. */
int            fq_rec_put(struct fq *fq, int64_t rid, struct fq_rec *rec);
struct fq_rec *fq_rec_take(struct fq *fq, int64_t rid);
void           fq_rec_drop(struct fq *fq, int64_t rid);
void           fq_recs_clear(struct fq *fq);
/* (queue_claim.c) Free a record and give its bytes back. */
void           fq_rec_free(struct fq *fq, struct fq_rec *rec);

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

/* (queue_finish.c) Apply the retention left pending in 'qs' (its
 * excess), as every batch does before its commit (queue.c); an op that
 * looks a job up by id has it done first (fq_qs_for_id), so that it finds
 * a job gone that retention removed earlier in its batch. */
int fq_trim(struct fdb_conn *c, struct fq *fq, struct qstate *qs,
            nv_error *err);

/* The body of enqueue (queue_claim.c), inside a write, without the
 * record handed back or the wake-up after the commit (tests run it in a
 * batch beside other ops). */
int fq_enqueue_in(struct fdb_conn *c, struct fq *fq, const nv_job *job,
                  int64_t now, int *created, nv_error *err);

/* ---- Ops (adapter.h), for the ops table in queue.c ---- */

int  fq_enqueue(void *self, const nv_job *job, int64_t now,
                int64_t max_unfinished, nv_job *out, int *created,
                nv_error *err);
int  fq_enqueue_many(void *self, const nv_job *jobs, size_t n, int64_t now,
                     int64_t max_unfinished, int *rcs, int *created,
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
