/*
 * nvent/adapter.h -- the contract between the engine and its three adapter
 * kinds: queue (jobs, leases, pause flags, limiter windows), store (state
 * keys with TTL, run indexes, schedule documents) and stream (run event
 * streams and live messages between instances). Each kind is an ops table
 * plus an opaque handle; the engine never looks inside. memory, file
 * (SQLite) and redis (Lua scripts) implement it; tests/backend/ holds the
 * contract suite every backend must pass unchanged.
 *
 * Rules for every op:
 *   - return NV_OK or a negative NV_E* code; fill 'err' (may be NULL);
 *     backend error codes (errno, SQLite, Redis) never leak: an unreachable
 *     or failing backend is NV_EBACKEND;
 *   - an op that changes several things does so atomically (one SQLite
 *     transaction, one Lua script, one lock);
 *   - time is passed in ('now', epoch ms from the engine's clock): an adapter
 *     never reads the system clock for behaviour, so fake clocks work;
 *   - an op returns only once its write is durable (file, redis);
 *   - all ops are safe to call from several threads at once;
 *   - strings and JSON texts given in are borrowed; records handed out are
 *     released with the matching *_release/free call below.
 */
#ifndef NVENT_ADAPTER_H
#define NVENT_ADAPTER_H

#include "nvent.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Queue =========================================================== */

enum nv_job_state {
    NV_JOB_WAITING   = 0,
    NV_JOB_DELAYED   = 1,
    NV_JOB_ACTIVE    = 2,
    NV_JOB_COMPLETED = 3,
    NV_JOB_FAILED    = 4,
    NV_JOB_PAUSED    = 5,   /* waiting in a paused queue; reported only */
    NV__JOB_STATES   = 6,
};

/* Bit masks of states for listing. */
#define NV_JOB_MASK(s) (1u << (s))
#define NV_JOB_MASK_ALL ((1u << NV__JOB_STATES) - 1u)

/*
 * Retention policy of a finished job: NV_KEEP_ALL for false,
 * 0 for true (remove at once), N > 0 keep the newest N of its final state.
 */
#define NV_KEEP_ALL (-1)

/*
 * A job record (§3.2). Fixed fields are inline; variable ones are heap
 * strings owned by the record (nv_job_release frees them). JSON members hold
 * JSON text; NULL means "absent". The fields an adapter acts on are parsed
 * out of 'opts' by the engine: priority, lifo, remove_on_*.
 */
typedef struct nv_job {
    char     id[NV_JOB_ID_MAX];
    char     queue[NV_NAME_MAX + 1];
    char     name[NV_NAME_MAX + 1];
    char     run_id[NV_ID_MAX];          /* "" for a plain job */
    char     flow_name[NV_NAME_MAX + 1]; /* "" for a plain job */
    char     step_name[NV_NAME_MAX + 1]; /* "" for a plain job */
    char    *data;                       /* JSON, never NULL in a stored job */
    char    *opts;                       /* JSON, effective options (CF-5) */
    int      state;                      /* enum nv_job_state */
    int      priority;                   /* 0..2097152, lower first */
    int      lifo;                       /* 1: ahead of its priority */
    int64_t  remove_on_complete;         /* NV_KEEP_ALL, 0 or N */
    int64_t  remove_on_fail;
    int      attempts_made;
    int      stalled_count;
    double   progress;
    char    *progress_data;              /* JSON or NULL */
    int64_t  timestamp;                  /* enqueue time, epoch ms */
    int64_t  delay_until;                /* 0 when never delayed */
    int64_t  processed_on;               /* 0 when never started */
    int64_t  finished_on;                /* 0 while unfinished */
    char    *returnvalue;                /* JSON or NULL */
    char    *failed_reason;              /* text or NULL */
    char    *logs;                       /* JSON array or NULL (plain jobs) */
    char    *group;                      /* limiter group value or NULL */
    int64_t  lease_until;                /* while active: lease deadline */
    char     lease_token[40];            /* while active: the holder's token */
} nv_job;

/* Free the heap members of 'j' and zero them; the struct itself is the
 * caller's. Safe on a zeroed job. */
void nv_job_release(nv_job *j);
/* Deep copy; NV_ENOMEM on failure (dst untouched). */
int  nv_job_copy(nv_job *dst, const nv_job *src);
/* Release an array of n jobs returned by an op, and the array. */
void nv_job_array_free(nv_job *jobs, size_t n);

typedef struct nv_job_counts {
    int64_t waiting, delayed, active, completed, failed, paused;
} nv_job_counts;

/* Rate limit of a queue. max 0 = no limiter. */
typedef struct nv_limiter {
    int64_t max;
    int64_t duration_ms;
    int     grouped;        /* 1: the limit holds per job->group value;
                               jobs with group NULL form one group */
} nv_limiter;

/* Outcome of a finishing attempt given to queue->finish. */
enum nv_finish_kind {
    NV_FINISH_COMPLETE = 0,   /* completed, returnvalue set */
    NV_FINISH_RETRY    = 1,   /* delayed until retry_at, or waiting */
    NV_FINISH_FAIL     = 2,   /* failed finally */
    NV_FINISH_RELEASE  = 3,   /* back to waiting, no attempt used (W-7) */
};

typedef struct nv_finish {
    int         kind;           /* enum nv_finish_kind */
    const char *returnvalue;    /* COMPLETE: JSON ("null" when none) */
    const char *failed_reason;  /* RETRY, FAIL */
    int64_t     retry_at;       /* RETRY: epoch ms; <= now means waiting */
} nv_finish;

/* A lease that the reaper took back (W-3). */
typedef struct nv_reaped {
    nv_job job;                 /* the record after the change */
    int    failed;              /* 1: stalled too often, now failed */
} nv_reaped;

typedef struct nv_queue_ops {
    const char *name;           /* "memory", "file", "redis" */

    /*
     * CL-1. Store 'job' (state decided here: waiting,
     * delayed when job->delay_until > now, reported paused when the queue
     * is paused). When a job with job->id exists in the queue, store nothing
     * and copy it to 'out' with *created = 0. When max_unfinished > 0 and
     * the queue holds that many unfinished jobs, fail with NV_EQUEUE_FULL.
     * On success 'out' (may be NULL) receives the stored or existing job.
     */
    int (*enqueue)(void *self, const nv_job *job, int64_t now,
                   int64_t max_unfinished, nv_job *out, int *created,
                   nv_error *err);

    /*
     * W-2, Q-4, Q-12, Q-13. Promote due delayed jobs, then take the first
     * runnable waiting job of 'queue' (not paused; limiter window allowing,
     * group by group when group_key is set) and make it active with a new
     * lease until now + lease_ms: processed_on = now, finished_on = 0 (a
     * manually retried job is unfinished again), a fresh lease_token.
     * Returns NV_OK with the job in 'out', or NV_ENOTFOUND when none is
     * runnable; then *next_at (may be NULL) is the earliest time something
     * may become runnable without an enqueue (a delayed job, a limiter
     * window), or 0 when unknown.
     */
    int (*reserve)(void *self, const char *queue, int64_t now,
                   int64_t lease_ms, const nv_limiter *lim,
                   nv_job *out, int64_t *next_at, nv_error *err);

    /* W-2: extend the lease of an active job held with 'token'. NV_ELEASE
     * when the job is not active under that token any more. */
    int (*extend)(void *self, const char *queue, const char *id,
                  const char *token, int64_t until, nv_error *err);

    /*
     * End an attempt of an active job held with 'token' (Q-6..Q-8, W-4,
     * W-7). COMPLETE/RETRY/FAIL count the attempt (attempts_made + 1);
     * RELEASE does not. COMPLETE and FAIL set finished_on = now and apply
     * the job's retention in the same transaction. NV_ELEASE when
     * the lease is gone (the outcome is then discarded).
     */
    int (*finish)(void *self, const char *queue, const char *id,
                  const char *token, const nv_finish *f, int64_t now,
                  nv_error *err);

    /*
     * Optional (NULL: the engine calls finish, then reserve). finish() of
     * the attempt held with 'token' and, only when it succeeded, reserve()
     * of the next runnable job of the same 'queue' with 'lease_ms' and
     * 'lim', together in one atomic step (one lock, one transaction, one
     * script): a busy worker pays one round trip per job, not two. Returns
     * what finish() returns. On NV_OK, *got = 1 and 'out' holds the job
     * reserved exactly as reserve() would have, or *got = 0 and *next_at
     * (may be NULL) is what reserve() gives when nothing is runnable.
     * 'out' is untouched unless *got = 1.
     */
    int (*finish_reserve)(void *self, const char *queue, const char *id,
                          const char *token, const nv_finish *f, int64_t now,
                          int64_t lease_ms, const nv_limiter *lim,
                          nv_job *out, int *got, int64_t *next_at,
                          nv_error *err);

    /* CTX-8: set progress (and data JSON, may be NULL) of an active job. */
    int (*progress)(void *self, const char *queue, const char *id,
                    const char *token, double progress, const char *data,
                    nv_error *err);

    /* append a log entry (JSON object) to a job, keeping the newest
     * 'keep' entries. */
    int (*log)(void *self, const char *queue, const char *id,
               const char *entry_json, int keep, nv_error *err);

    /* Read one job. NV_EJOB_NOT_FOUND when absent. */
    int (*get)(void *self, const char *queue, const char *id, nv_job *out,
               nv_error *err);

    /*
     * jobs whose reported state is in 'mask', newest first by
     * timestamp (ties: id descending), skipping 'offset', at most 'limit'.
     * *total counts every match. Release with nv_job_array_free.
     */
    int (*list)(void *self, const char *queue, unsigned mask, int64_t offset,
                int64_t limit, nv_job **out, size_t *n, int64_t *total,
                nv_error *err);

    /* exact counts; waiting jobs of a paused queue count as paused. */
    int (*counts)(void *self, const char *queue, nv_job_counts *out,
                  nv_error *err);

    /* the paused flag lives in the adapter. */
    int (*set_paused)(void *self, const char *queue, int paused,
                      nv_error *err);
    int (*is_paused)(void *self, const char *queue, int *paused,
                     nv_error *err);

    /* remove a job that is not active (NV_EJOB_ACTIVE). Copies the
     * removed record to 'out' when not NULL. */
    int (*remove)(void *self, const char *queue, const char *id,
                  nv_job *out, nv_error *err);

    /* a failed job becomes waiting (NV_EJOB_NOT_FAILED otherwise);
     * finished_on and failed_reason are kept until it runs again. 'out'
     * gets the record after the change. */
    int (*retry)(void *self, const char *queue, const char *id, int64_t now,
                 nv_job *out, nv_error *err);

    /*
     * W-3: take back active jobs of 'queue' whose lease ended before 'now'.
     * Each: stalled_count + 1; back to waiting, or failed with
     * failed_reason "job stalled more than allowable limit" when
     * stalled_count exceeds max_stalled (then finished_on = now, retention
     * applies). Returns the changed jobs (release with nv_reaped_free).
     */
    int (*reap)(void *self, const char *queue, int64_t now, int max_stalled,
                nv_reaped **out, size_t *n, nv_error *err);

    /*
     * Block up to 'timeout_ms' (real time) or until a job may have become
     * runnable in 'queue' (an enqueue, retry or resume, from any instance
     * sharing the adapter). May return early; returns NV_OK either way.
     * An adapter told of every such change (redis: notes over pub/sub)
     * may let all but one of a queue's waiters in a process sleep past
     * 'timeout_ms' (redis: up to 1 s in all) until a change: that one
     * returns on time and finds what the timeout is there for (a delayed
     * job or a limiter window coming due).
     */
    int (*wait)(void *self, const char *queue, int64_t timeout_ms);
    /* Wake every waiter of the adapter at once (engine stop). */
    void (*wake)(void *self);

    /* Health check: NV_OK when the backend answers. */
    int (*ping)(void *self, nv_error *err);

    /* Close and free; safe on NULL self. */
    void (*close)(void *self);

    /*
     * Optional (NULL: the engine calls enqueue for each). Enqueue the 'n'
     * jobs 'jobs' (all of one queue) as n enqueue() calls with out = NULL
     * would, where the adapter can in one go (one round trip, one
     * transaction: a bulk start, nv_flow_start_many). Each job on its own: rcs[i] is its code (NV_OK,
     * NV_EQUEUE_FULL...) and created[i] (may be NULL) 1 for a new job, 0
     * for an existing one; a round trip (a transaction) that failed gives
     * each of its jobs that error (each may be stored or not, as after a failed enqueue()).
     * Returns the first job's error that is not NV_OK (*err: its message),
     * else NV_OK.
     */
    int (*enqueue_many)(void *self, const nv_job *jobs, size_t n,
                        int64_t now, int64_t max_unfinished, int *rcs,
                        int *created, nv_error *err);
} nv_queue_ops;

typedef struct nv_queue {
    const nv_queue_ops *ops;
    void               *self;
} nv_queue;

void nv_reaped_free(nv_reaped *r, size_t n);

/* ==== Store =========================================================== */

/* An entry of a sorted index (run index IX-1). */
typedef struct nv_index_entry {
    char   *member;         /* run id */
    double  score;          /* start time, epoch ms */
    char   *meta;           /* JSON object or NULL */
} nv_index_entry;

void nv_index_entries_free(nv_index_entry *v, size_t n);

/* A document of a collection (schedules), with a revision for CAS. */
typedef struct nv_doc {
    char    *id;
    char    *json;
    int64_t  rev;           /* >= 1; grows by one at each put */
} nv_doc;

void nv_docs_free(nv_doc *v, size_t n);

typedef struct nv_store_ops {
    const char *name;

    /* -- keys with TTL (ST-*) -- */
    /* Value (JSON text, caller frees with nv_free) or NV_ENOTFOUND when
     * absent or expired at 'now'. */
    int (*kv_get)(void *self, const char *key, int64_t now, char **value,
                  nv_error *err);
    /* expire_at 0 = never; else epoch ms from which the key reads absent
     * (absent when now >= expire_at, ST-3). */
    int (*kv_set)(void *self, const char *key, const char *value,
                  int64_t expire_at, nv_error *err);
    /* Deleting an absent key is NV_OK. */
    int (*kv_del)(void *self, const char *key, nv_error *err);
    /* Delete every key starting with 'prefix'; *n (may be NULL) = count. */
    int (*kv_del_prefix)(void *self, const char *prefix, int64_t *n,
                         nv_error *err);
    /* Atomically add 'by' to an integer value (absent = 0); *out = new. */
    int (*kv_incr)(void *self, const char *key, int64_t by, int64_t *out,
                   nv_error *err);
    /* Remove keys expired at 'now' from storage (ST-3's 1 s bound). */
    int (*kv_purge)(void *self, int64_t now, nv_error *err);

    /* -- sorted indexes with per-member metadata (IX-*) -- */
    /* Add or replace member (score and meta). */
    int (*idx_put)(void *self, const char *index, const char *member,
                   double score, const char *meta, nv_error *err);
    /* Replace the metadata of an existing member; NV_ENOTFOUND if absent.
     * When 'unless_status' is not NULL and the stored meta has a "status"
     * member in that comma list, nothing changes and NV_ECONFLICT is
     * returned (IX-3: a terminal status is never replaced). */
    int (*idx_set_meta)(void *self, const char *index, const char *member,
                        const char *meta, const char *unless_status,
                        nv_error *err);
    int (*idx_get)(void *self, const char *index, const char *member,
                   nv_index_entry *out, nv_error *err);
    /* Entries by score (desc: newest first), skipping 'offset', at most
     * 'limit' (-1 = all); *total (may be NULL) = size of the index. */
    int (*idx_range)(void *self, const char *index, int desc, int64_t offset,
                     int64_t limit, nv_index_entry **out, size_t *n,
                     int64_t *total, nv_error *err);
    /* Removing an absent member is NV_OK. */
    int (*idx_del)(void *self, const char *index, const char *member,
                   nv_error *err);
    /* Delete a whole index. */
    int (*idx_drop)(void *self, const char *index, nv_error *err);
    /* Names of the non-empty indexes starting with 'prefix', sorted
     * (release with nv_strv_free). */
    int (*idx_names)(void *self, const char *prefix, char ***out, size_t *n,
                     nv_error *err);

    /* -- documents with compare-and-set (schedules, S-4) -- */
    /*
     * Store 'json' as document 'id' of 'coll'. expected_rev: -1 = any,
     * 0 = must not exist, r > 0 = must be at revision r; otherwise
     * NV_ECONFLICT and nothing changes. *new_rev (may be NULL) = new rev.
     */
    int (*doc_put)(void *self, const char *coll, const char *id,
                   const char *json, int64_t expected_rev, int64_t *new_rev,
                   nv_error *err);
    int (*doc_get)(void *self, const char *coll, const char *id, nv_doc *out,
                   nv_error *err);
    /* expected_rev as doc_put; deleting an absent doc is NV_ENOTFOUND. */
    int (*doc_del)(void *self, const char *coll, const char *id,
                   int64_t expected_rev, nv_error *err);
    /* Every document of 'coll', sorted by id. */
    int (*doc_list)(void *self, const char *coll, nv_doc **out, size_t *n,
                    nv_error *err);

    int  (*ping)(void *self, nv_error *err);
    void (*close)(void *self);

    /*
     * Optional (NULL: idx_set_meta, then idx_put when absent, one entry at
     * a time). For each of the 'n' entries of 'v' in order, in 'index':
     * when its member is absent, add it with its score and meta (as
     * idx_put); when present, replace its meta, the score staying, unless
     * the stored meta has a "status" member in the comma list
     * 'unless_status' (NULL: none), as idx_set_meta does (IX-3). Each
     * entry is atomic; a store writes many in one go (a run index kept by
     * a remote store is then written in one round trip per batch).
     */
    int  (*idx_put_many)(void *self, const char *index,
                         const nv_index_entry *v, size_t n,
                         const char *unless_status, nv_error *err);

    /*
     * Optional (NULL: idx_del of each member, kv_del of each key and
     * kv_del_prefix of each prefix, one at a time). Remove the 'n'
     * 'members' of 'index' (index NULL when n is 0), delete the 'nk'
     * 'keys' and every key starting with one of the 'np' 'prefixes';
     * absent ones are fine. Not atomic as a whole (each removal is as its
     * single op); a remote store does it all in a few round trips (a
     * retention pass removing a batch of runs).
     */
    int  (*del_many)(void *self, const char *index,
                     const char *const *members, size_t n,
                     const char *const *keys, size_t nk,
                     const char *const *prefixes, size_t np, nv_error *err);
} nv_store_ops;

typedef struct nv_store {
    const nv_store_ops *ops;
    void               *self;
} nv_store;

void nv_strv_free(char **v, size_t n);

/* ==== Stream ========================================================== */

#define NV_EVENT_ID_MAX 48   /* "<ms>-<seq>" */

/*
 * An event record (§8). The adapter assigns 'id' and 'ts' at append; the
 * other members come from the engine. Strings are "" when absent, data is
 * JSON text or NULL.
 */
typedef struct nv_event {
    char     id[NV_EVENT_ID_MAX];       /* "<ms>-<seq>" (E-2) */
    int64_t  ts;                        /* epoch ms of the append (E-3) */
    char     type[32];                  /* "flow.start", "step.completed"... */
    char     run_id[NV_ID_MAX];
    char     flow_name[NV_NAME_MAX + 1];
    char     step_name[NV_NAME_MAX + 1];
    char     step_id[NV_ID_MAX + NV_NAME_MAX + 24];
    int      attempt;                   /* 0 when absent */
    char    *data;                      /* JSON object text or NULL */
} nv_event;

void nv_event_release(nv_event *ev);
void nv_events_free(nv_event *v, size_t n);
int  nv_event_copy(nv_event *dst, const nv_event *src);

/* Live notification handed to a subscriber, lent for the call. */
typedef struct nv_stream_note {
    const char     *stream;   /* for events: the stream key; else NULL */
    const nv_event *event;    /* an appended event, or NULL */
    const char     *channel;  /* for messages: the channel; else NULL */
    const char     *message;  /* a published message (JSON), or NULL */
} nv_stream_note;

typedef void (*nv_stream_note_fn)(void *ud, const nv_stream_note *note);

typedef struct nv_stream_ops {
    const char *name;

    /*
     * Append 'ev' to 'stream' (E-2..E-4). The adapter sets the id (strictly
     * greater than the stream's last id; ms = max(now, last ms), seq grows
     * within one ms) and ts = now. expected_version: -1 = any; otherwise
     * the number of events the stream must hold, else NV_ECONFLICT and
     * nothing is appended (F-13). 'out' (may be NULL) receives the stored
     * record (id, ts); *version (may be NULL) the new count. Every
     * subscriber, on every instance, is then notified (SSE-5).
     */
    int (*append)(void *self, const char *stream, const nv_event *ev,
                  int64_t now, int64_t expected_version, nv_event *out,
                  int64_t *version, nv_error *err);

    /* Events after id 'after' ("" or NULL = from the start), in order, at
     * most 'limit' (-1 = all). A missing stream gives n = 0. */
    int (*read)(void *self, const char *stream, const char *after,
                int64_t limit, nv_event **out, size_t *n, nv_error *err);

    /* Number of events; 0 for a missing stream. */
    int (*length)(void *self, const char *stream, int64_t *out,
                  nv_error *err);

    /* Delete a stream; deleting a missing one is NV_OK. */
    int (*del)(void *self, const char *stream, nv_error *err);

    /* Optional (NULL: streams cannot be listed). Names of the non-empty
     * streams starting with 'prefix', sorted (release with nv_strv_free).
     * For index rebuilds (IX-4): it may walk every stream. */
    int (*names)(void *self, const char *prefix, char ***out, size_t *n,
                 nv_error *err);

    /* Publish a live message on 'channel' to every subscriber of every
     * instance; not stored. */
    int (*publish)(void *self, const char *channel, const char *message,
                   nv_error *err);

    /*
     * Receive every appended event and published message from now on,
     * from this and other instances, in per-stream order. One callback
     * thread per subscription at most; the callback must not call
     * unsubscribe on its own subscription.
     */
    int  (*subscribe)(void *self, nv_stream_note_fn fn, void *ud,
                      void **handle, nv_error *err);
    void (*unsubscribe)(void *self, void *handle);

    int  (*ping)(void *self, nv_error *err);
    void (*close)(void *self);

    /*
     * Optional (NULL: subscribe() only). As subscribe(), except that with
     * 'flow_only' = 1 the subscription is notified of published messages
     * and of appended events whose type begins with "flow." only, so that
     * an adapter may spare the work of notifying the other events while
     * no subscription wants them; 'flow_only' = 0 is subscribe(). Ended
     * with unsubscribe().
     */
    int  (*subscribe_flow)(void *self, int flow_only, nv_stream_note_fn fn,
                           void *ud, void **handle, nv_error *err);

    /*
     * Optional (NULL: the engine appends one event at a time). Append the
     * 'n' (>= 1) events 'evs' to 'stream' in order as one atomic step:
     * all of them or none. 'expected_version' as for append(), checked
     * before the first; ids, ts (= now) and notifications as for n
     * appends in a row. 'out' (may be NULL) is an array of n that receives
     * the stored records (release each); *version (may be NULL) the new
     * count.
     */
    int  (*append_many)(void *self, const char *stream, const nv_event *evs,
                        size_t n, int64_t now, int64_t expected_version,
                        nv_event *out, int64_t *version, nv_error *err);

    /* Optional (NULL: del of each). Delete the 'n' streams (missing ones
     * are fine) in one go where the adapter can (a retention pass); on an
     * error any of them may be left. */
    int  (*del_many)(void *self, const char *const *streams, size_t n,
                     nv_error *err);

    /*
     * Optional (NULL: the engine calls append for each). Append evs[i] to
     * streams[i] for i < n, each on its own as append() would with
     * expected_version expected[i], where the adapter can in one go (one
     * round trip, one transaction: the flow.start events of a bulk
     * start). rcs[i] is each one's code (NV_OK, NV_ECONFLICT...), out[i]
     * (out may be NULL) its stored record when NV_OK (release each); a
     * round trip (a transaction) that failed gives each of its appends
     * that error (each may be appended or not, as
     * after a failed append()). Returns the first append's error that is
     * not NV_OK (*err: its message), else NV_OK.
     */
    int  (*append_each)(void *self, const char *const *streams,
                        const nv_event *evs, size_t n, int64_t now,
                        const int64_t *expected, nv_event *out, int *rcs,
                        nv_error *err);
} nv_stream_ops;

typedef struct nv_stream {
    const nv_stream_ops *ops;
    void                *self;
} nv_stream;

/* ==== Opening adapters ================================================ */

/*
 * Settings given to an adapter constructor: the resolved configuration
 * block of that adapter kind (prefix, file.dataDir, file.synchronous, redis
 * connection), as a JSON object text:
 *   {"prefix": "nq", "file": {"dataDir": "/abs/.data/queue",
 *    "synchronous": "normal"}, "redis": {"host":..., "port":..., "db": 0,
 *    "username"?, "password"?}}
 * Constructors fail with one clear message naming the path or address.
 */
typedef int (*nv_queue_open_fn)(const char *settings_json, nv_queue *out,
                                nv_error *err);
typedef int (*nv_store_open_fn)(const char *settings_json, nv_store *out,
                                nv_error *err);
typedef int (*nv_stream_open_fn)(const char *settings_json, nv_stream *out,
                                 nv_error *err);

/* Built-in constructors. */
int nv_memory_queue_open(const char *settings_json, nv_queue *out, nv_error *err);
int nv_memory_store_open(const char *settings_json, nv_store *out, nv_error *err);
int nv_memory_stream_open(const char *settings_json, nv_stream *out, nv_error *err);
int nv_file_queue_open(const char *settings_json, nv_queue *out, nv_error *err);
int nv_file_store_open(const char *settings_json, nv_store *out, nv_error *err);
int nv_file_stream_open(const char *settings_json, nv_stream *out, nv_error *err);
int nv_redis_queue_open(const char *settings_json, nv_queue *out, nv_error *err);
int nv_redis_store_open(const char *settings_json, nv_store *out, nv_error *err);
int nv_redis_stream_open(const char *settings_json, nv_stream *out, nv_error *err);

/* Open by adapter name ("memory", "file", "redis"); NV_EINVAL otherwise. */
int nv_queue_open(const char *adapter, const char *settings_json,
                  nv_queue *out, nv_error *err);
int nv_store_open(const char *adapter, const char *settings_json,
                  nv_store *out, nv_error *err);
int nv_stream_open(const char *adapter, const char *settings_json,
                   nv_stream *out, nv_error *err);

#ifdef __cplusplus
}
#endif
#endif /* NVENT_ADAPTER_H */
