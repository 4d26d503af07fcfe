/*
 * The engine's internal state, shared by the files of the engine runtime
 * (engine.c, worker.c, jobs.c, ctx.c, flow.c, runs.c, maint.c, live.c,
 * obs.c). Nothing outside src/core/ includes this: other layers use
 * engine.h. Lock order: a context's mu, then e->mu, then e->live_mu.
 */
#ifndef NV_CORE_ENGINE_INT_H
#define NV_CORE_ENGINE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/config.h"
#include "core/engine.h"
#include "core/jobopts.h"
#include "core/projection.h"
#include "core/registry.h"
#include "nvent.h"
#include "nvent/adapter.h"

#define NV__HIST_BUCKETS 15     /* 14 finite bounds + Inf (M-1) */

enum nv__engine_state {
    NV__E_NEW = 0, NV__E_RUNNING = 1, NV__E_STOPPING = 2, NV__E_STOPPED = 3,
};

/* Runtime of one queue served by this instance. */
typedef struct nv__wq {
    nv_engine          *e;
    const nv__function *fn;
    char               *default_opts;   /* fn->opts as compact JSON */
    pthread_t          *threads;
    int                 nthreads;
    struct nv_ctx      *ctxs;           /* one per worker thread, for the
                                           engine's life (worker.c) */
    int                 nctxs;
    atomic_int          nclaimed;       /* contexts taken by threads */
} nv__wq;

/* Metrics (M-1) of attempts ended: kept per worker context (no cache
 * line shared between workers), summed when read (nv__wq_metrics). */
typedef struct nv__metrics {
    long long processed, failed;
    long long hist[NV__HIST_BUCKETS];
    long long hist_sum_us;
} nv__metrics;

/* A flow with its projection definition (built at start). */
typedef struct nv__flowrt {
    const nv__flow *flow;
    nv__flowdef     def;
    nv__stepdef    *steps;
} nv__flowrt;

/* A live subscription (SSE-4). */
struct nv_live {
    nv_live_fn      fn;
    void           *ud;
    struct nv_live *next;
};

/* Cache of recently active runs' events (runcache.c). */
typedef struct nv__rcache nv__rcache;
typedef int (*nv__rcache_fn)(void *ud, const nv__proj_acc *acc,
                             nv_error *err);

struct nv_engine {
    nv_config      *cfg;
    nv__registry   *reg;
    nv_queue        queue;
    nv_store        store;
    nv_stream       stream;
    struct nv__adapters *adapters;      /* the three above, shared by the
                                           engines of nv_engine_new_sharing */
    char           *prefix[3];          /* queue, store, stream prefixes */
    char           *live_channel;       /* "<stream prefix>:live" */
    char            instance_id[NV_ID_MAX];
    nv_clock_fn     clock;
    void           *clock_ud;
    nv_log_fn       logfn;
    void           *log_ud;
    int             log_level;
    char           *report;
    int64_t         started_mono;       /* real ms at nv_engine_new */
    atomic_int      state;              /* enum nv__engine_state */
    atomic_int      stopping;           /* workers stop reserving */
    unsigned        flags;

    nv__wq         *wqs;                /* sorted by queue name */
    size_t          nwq;
    nv__flowrt     *flows;              /* sorted by flow name */
    size_t          nflows;

    pthread_mutex_t mu;                 /* guards cv waits, timers, threads */
    pthread_cond_t  cv;                 /* attempts ended, runs finished */
    pthread_cond_t  stop_cv;            /* the maintenance thread's sleep */
    pthread_cond_t  run_cv;             /* a run finished (nv_run_wait) */
    atomic_int      run_waiters;        /* threads in nv_run_wait */
    pthread_t       maint_thread, watch_thread;
    int             have_maint, have_watch;
    pthread_mutex_t tick_mu;            /* one periodic pass at a time */
    int64_t         next_stall, next_reconcile, next_retention;
    int64_t         next_reap, next_metrics;
    atomic_llong    run_gen;
    atomic_llong    excess_at;
    atomic_int      retaining;          /* a retention pass runs (runs.c) */
    /* generated job ids (jobs.c): the producer writes it at each
     * enqueue, so it has a cache line of its own, away from what the
     * workers read at each job (stopping, nlive) */
    char            id_pad0[64];
    _Atomic uint64_t id_seq;
    char            id_pad1[64];

    pthread_mutex_t live_mu;            /* guards lives, sub_handle */
    struct nv_live *lives;
    atomic_int      nlive;
    void           *sub_handle;
    int             subscribed;
    int             sub_all;            /* sub_handle gets every event, not
                                           flow.* ones and messages only */
    pthread_mutex_t sub_mu;             /* one subscription change at a
                                           time (live.c); before live_mu */
    int             shared_stream;      /* stream adapter shared (redis) */
    /* Listeners on other instances (jobs.c, shared streams only) */
    atomic_llong    lsn_until;          /* monotonic ms: one known until */
    atomic_llong    lsn_checked;        /* monotonic ms of the last key read */
    int             lsn_thread;         /* presence thread running (live_mu) */
    int             lsn_stop;           /* (live_mu) */
    pthread_t       lsn_th;
    pthread_cond_t  lsn_cv;             /* with live_mu */

    /* Run index writes queued for a remote store (runs.c): flushed in
     * batches by the maintenance pass, before this engine reads the index
     * and at stop */
    pthread_mutex_t ixq_mu;             /* guards the three below */
    struct nv__ixq *ixq;
    size_t          ixq_n, ixq_cap;
    atomic_size_t   ixq_len;
    pthread_mutex_t ixq_flush_mu;       /* one flush at a time, in order */

    pthread_mutex_t dirty_mu;           /* guards dirty */
    json_t         *dirty;              /* {runId: flowName} index to refresh */
    atomic_uint     dirty_gen;          /* bumped (under dirty_mu) when a
                                           flush takes the dirty set */
    nv__rcache     *rcache;             /* running runs' events, parsed */

    /* settings read once at start */
    int             state_cleanup;      /* 0 never, 1 immediate, 2 on-complete, 3 ttl */
    int             state_scope;        /* 0 always, 1 flow, 2 never */
    int64_t         state_ttl;          /* cleanup.ttlMs */
    int64_t         max_queue;          /* queue.maxQueueSize */
    int64_t         max_log_events;     /* store.retention.maxLogEventsPerRun */
    int64_t         max_runs, max_age;  /* store.retention */
    int             stall_enabled;
    int64_t         stall_timeout, check_interval;

    pthread_mutex_t runs_mu;            /* guards runs_cache */
    json_t         *runs_cache;         /* nvent_runs gauge values */
    int64_t         runs_cache_at;
};

/* The handler context of one attempt (CTX-*). */
struct nv_ctx {
    nv_engine        *e;
    nv__wq           *wq;
    nv_job            job;
    nv__jobopts       opts;
    int               attempt;
    int64_t           start_ms;          /* engine clock at start */
    int64_t           deadline;          /* 0: no timeout */
    int64_t           next_hb;           /* next heartbeat (engine clock) */
    int               lease_unsure;      /* a heartbeat failed (under mu) */
    _Atomic(const char *) cancel;        /* CTX-7 reason or NULL */
    atomic_int        open;              /* an attempt runs (its owner
                                            writes; others count) */
    atomic_llong      processed, failed; /* metrics, see nv__metrics */
    atomic_llong      hist[NV__HIST_BUCKETS];
    atomic_llong      hist_sum_us;
    pthread_mutex_t   mu;                /* guards done, busy, returned */
    int               done;              /* outcome fixed (or no attempt):
                                            others then leave the context
                                            alone; its owner refills it */
    int               busy;              /* timeout outcome running */
    int               returned;          /* handler returned (CTX-9) */
    char             *result;
    char             *fail_msg, *fail_stack;
    unsigned          fail_flags;
    /* flow attempts */
    const nv__flowrt *flow;              /* NULL: plain job */
    char              step_id[NV_ID_MAX + NV_NAME_MAX + 24];
    char             *stream_key;
    char            **emit_ids;
    size_t            nemit, emit_cap;
};

/* ---- engine.c ---- */
int64_t      nv__now(const nv_engine *e);
nv__wq      *nv__wq_find(nv_engine *e, const char *queue);
const nv__flowrt *nv__flowrt_find(nv_engine *e, const char *name);
int          nv__name_ok(const char *what, const char *s, nv_error *err);
int          nv__parse_json(const char *what, const char *text, json_t **out,
                            nv_error *err);
/* Dump compact (N-5); NULL on OOM. Caller frees with nv__free. */
/* Hand a JSON value to a char** out-parameter (steals j). */
int          nv__out_json(json_t *j, char **out, nv_error *err);

/* ---- worker.c ---- */
int  nv__workers_start(nv_engine *e, nv_error *err);
void nv__workers_join(nv_engine *e);
/* Fail attempts whose deadline passed (W-5); heartbeats when 'hb'. */
void nv__attempts_check(nv_engine *e, int64_t now, int hb);
/* Raise the cancellation check of every attempt of run 'run_id' (NULL:
 * every attempt) with 'reason'. */
void nv__attempts_cancel(nv_engine *e, const char *run_id, const char *reason);
/* W-7: put the jobs of attempts still open back to waiting (engine stop). */
void nv__attempts_release(nv_engine *e);
/* Free the worker contexts (after nv__workers_join). */
void nv__workers_free(nv_engine *e);
/* Attempts running in wq's workers now. */
int  nv__wq_nactive(const nv__wq *wq);
/* The metrics of wq's workers, summed. */
void nv__wq_metrics(const nv__wq *wq, nv__metrics *out);
/* The attempt's step id (CTX): a plain job's is made on first use, by
 * the handler's thread. */
const char *nv__ctx_step_id(nv_ctx *c);
/* Parsed effective options of a stored job. */
int  nv__job_opts(nv__wq *wq, const nv_job *job, nv__jobopts *o);

/* ---- jobs.c ---- */
/* Build and store a job (no capacity check when max = 0). */
int  nv__job_enqueue(nv_engine *e, nv__wq *wq, const char *id,
                     const char *name, const char *data, json_t *parsed,
                     const nv__jobopts *o, const char *run_id,
                     const char *flow, const char *step, int64_t max,
                     nv_job *out, int *created, nv_error *err);
/* The pieces of a start (flow.c), shared with the bulk start
 * (start_many.c): the flow's runtime and its entry step's queue; room in
 * that queue for 'n' more jobs (Q-11, with queue.maxQueueSize); the index
 * entry of a run just started, its flow.start appended at 'ts' (IX-1),
 * written or queued (nv__index_defer). */
int  nv__start_target(nv_engine *e, const char *flow, const nv__flowrt **f,
                      nv__wq **wq, nv_error *err);
int  nv__entry_has_room(nv_engine *e, nv__wq *wq, size_t n, nv_error *err);
void nv__start_index(nv_engine *e, const nv__flowrt *f, const char *id,
                     int64_t ts);
/* The metadata text of that entry (caller frees; NULL: out of memory). */
char *nv__start_meta(const nv__flowrt *f, int64_t ts);

/* The pieces of nv__job_enqueue, for enqueues made together
 * (nv_flow_start_many): the record it stores, built into *j (its data
 * borrowed; release with nv__job_built_release), and the job event of a
 * job so stored. */
int  nv__job_build(nv_engine *e, nv__wq *wq, const char *id,
                   const char *name, const char *data, json_t *parsed,
                   const nv__jobopts *o, const char *run_id,
                   const char *flow, const char *step, int64_t now,
                   nv_job *j, nv_error *err);
void nv__job_built_release(nv__wq *wq, nv_job *j);
void nv__job_enqueued(nv_engine *e, const nv_job *j);
json_t *nv__job_json(const nv_job *j);
const char *nv__job_state_name(int state);
/* publish a job event (only when someone may listen). */
void nv__job_event(nv_engine *e, const nv_job *j, const char *type,
                   const char *error);
int  nv__publishing(nv_engine *e);
/* Shared streams (jobs.c): a live subscriber came on this instance
 * (announce it to the others); a note came on 'channel' (returns 1 when it
 * was another instance's announcement, consumed); the engine detaches. */
void nv__listeners_local(nv_engine *e);
int  nv__listeners_note(nv_engine *e, const char *channel);
void nv__listeners_stop(nv_engine *e);

/* ---- flow.c ---- */
/* F-4 before an attempt of a flow job: 0 run the handler, 1 skip (job
 * already finished by this call), <0 error (job left to the lease). */
int  nv__flow_before(nv_ctx *c);
/* F-5 / F-10 after a flow attempt; 'ok' success. */
void nv__flow_after(nv_ctx *c, int ok, const char *error, const char *stack,
                    int final, int64_t delay_ms);
/* W-3: a flow job that failed by stalling too often. */
void nv__flow_reaped_failed(nv_engine *e, const nv_job *j);
/* Read and project a run; NV_ERUN_NOT_FOUND when no stream. */
int  nv__run_load(nv_engine *e, const nv__flowrt *f, const char *run_id,
                  nv_event **evs, size_t *nev, nv__run_proj *p,
                  nv_error *err);
/* Dispatch eligible steps and append the terminal event when complete;
 * loops on NV_ECONFLICT. Updates the index. */
int  nv__run_advance(nv_engine *e, const nv__flowrt *f, const char *run_id,
                     nv_error *err);
int  nv__rcache_new(nv__rcache **out);
void nv__rcache_free(nv__rcache *c);
/* Call 'fn' with the run's projection accumulator: brought up to date
 * with its stream (min_version < 0), or as cached when that holds at least
 * min_version events (see runcache.c). NV_ERUN_NOT_FOUND for a missing
 * stream or one of another flow. Under the run's cache lock. */
int  nv__rcache_with(nv_engine *e, const nv__flowrt *f, const char *run_id,
                     int64_t min_version, nv__rcache_fn fn, void *ud,
                     nv_error *err);
void nv__rcache_evict(nv_engine *e, const char *run_id);
/* The run's cached state with 'ev' (its 'facts') applied privately, as
 * viewed at 'now': the cache itself is left as it was. *cached = the
 * events cached before 'ev'. NV_ENOTFOUND when nothing is cached. */
int  nv__rcache_trial(nv_engine *e, const nv__flowrt *f, const char *run_id,
                      const nv_event *ev, const nv__proj_facts *facts,
                      int64_t now, nv__run_proj *p, int64_t *cached,
                      nv_error *err);
/* This engine appended 'ev' as the stream's 'version'-th event; 'facts'
 * what the projection reads of its data, or NULL: then 'data' is its parsed
 * data (shared read-only from then on) or NULL. With 'mark_dirty', also
 * nv__rcache_mark_dirty (in the same lookup). */
void nv__rcache_put(nv_engine *e, const char *run_id, const nv_event *ev,
                    json_t *data, const nv__proj_facts *facts,
                    int64_t version, int mark_dirty);

/* Append an event to a run stream, marking the index dirty. 'data' is
 * kept by the run cache: it must not be changed after the call. */
int  nv__run_append(nv_engine *e, const char *flow, const char *run_id,
                    const char *type, const char *step, const char *step_id,
                    int attempt, json_t *data, int64_t expected,
                    nv_event *out, nv_error *err);
/* The same with data given as JSON text ('facts', when not NULL, what the
 * projection reads of it: see projection.h); *version (may be NULL) gets
 * the stream's new length. */
int  nv__run_append_text(nv_engine *e, const char *flow, const char *run_id,
                         const char *type, const char *step,
                         const char *step_id, int attempt, const char *text,
                         const nv__proj_facts *facts, nv_event *out,
                         int64_t *version, nv_error *err);
char *nv__stream_key(nv_engine *e, const char *run_id);
char *nv__index_key(nv_engine *e, const char *flow);
/* After a terminal event: cleanup (ST-6 on-complete), jobs removal,
 * cancellation, retention, waiters. */
void nv__run_terminated(nv_engine *e, const nv__flowrt *f,
                        const char *run_id, const char *type);
int  nv__run_cancel_internal(nv_engine *e, const nv__flowrt *f,
                             const char *run_id, const char *reason,
                             const char *type, nv_error *err);
/* Find the flow of a run through the indexes (flow NULL = any). */
const nv__flowrt *nv__run_flow(nv_engine *e, const char *flow,
                               const char *run_id);

/* ---- runs.c ---- */
/* Write the IX-1 metadata of a projected run (terminal never replaced). */
void nv__index_update(nv_engine *e, const nv__flowrt *f, const char *run_id,
                      const nv__run_proj *p);
/* Returns the dirty generation the run was added under. */
unsigned nv__index_mark_dirty(nv_engine *e, const char *flow,
                              const char *run_id);
/* The same, skipped when the run cache knows the run is in the current
 * dirty set (no global lock per event of a busy run). */
void nv__rcache_mark_dirty(nv_engine *e, const char *flow,
                           const char *run_id);
void nv__index_flush(nv_engine *e);
/* Write the run index entries queued by this engine (IX-3): before any
 * read of the index. Cheap when nothing is queued. */
void nv__index_sync(nv_engine *e);
/* Queue the IX-1 entry of a run (its start, or a final status) when the
 * store is remote and can write many at once: 1, 'meta' (allocated) taken;
 * 0: not queued ('meta' still the caller's), write it. */
int  nv__index_defer(nv_engine *e, const nv__flowrt *f, const char *run_id,
                     double score, char *meta);
void nv__index_queue_free(nv_engine *e);
/* Drop the entries of 'run_id' queued by this engine (the run is being
 * removed: nothing may write its entry again), after any flush in
 * progress. */
void nv__index_forget(nv_engine *e, const char *run_id);
enum { NV__RETAIN_EXCESS = 0, NV__RETAIN_FULL = 1, NV__RETAIN_CLEAR = 2 };
int  nv__retention(nv_engine *e, const char *flow_name, int mode,
                   int64_t *removed, int64_t *kept_running, nv_error *err);
int  nv__run_remove(nv_engine *e, const char *flow, const char *run_id);
/* Remove the 'n' runs 'ids' of 'flow' as nv__run_remove does each, their
 * streams and their store keys each in one call where the adapters can
 * (del_many). The first failure, or NV_OK; *removed (may be NULL) = runs
 * removed. */
int  nv__runs_remove(nv_engine *e, const char *flow, const char *const *ids,
                     size_t n, int64_t *removed);

/* ---- maint.c ---- */
int  nv__maint_start(nv_engine *e, nv_error *err);
void nv__maint_join(nv_engine *e);
void nv__reconcile(nv_engine *e);
void nv__stall_check(nv_engine *e, int64_t now);

/* ---- live.c ---- */
int  nv__live_attach(nv_engine *e, nv_error *err);
void nv__live_detach(nv_engine *e);
void nv__live_local(nv_engine *e, const char *json);

/* ---- ctx.c ---- */
/* CTX-1 / IX-6: append a log event to a run (limit applied). */
int  nv__run_log(nv_engine *e, const char *flow, const char *run_id,
                 const char *step, const char *step_id, int attempt,
                 json_t *data, nv_error *err);

/* ---- state.c ---- */
/* Delete every state key of a run. */
void nv__state_drop_run(nv_engine *e, const char *run_id);
/* The store key prefix of a run's state keys (caller frees; NULL: out of
 * memory). */
char *nv__state_run_prefix(nv_engine *e, const char *run_id);
void nv__state_drop_job(nv_engine *e, const char *queue, const char *id);

#endif
