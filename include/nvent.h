/*
 * nvent.h -- the public API of libnvent, an event-sourced job queue and
 * multi-step flow orchestrator. Everything the CLI, the HTTP API and the web
 * UI do is one call of this header. Behaviour ids (Q-3, F-12, ...) refer to
 * SPEC.md. Adapter authors also read include/nvent/adapter.h.
 *
 * Conventions (see STYLE.md):
 *   - functions return NV_OK (0) or a negative NV_E* code, and fill the
 *     optional 'nv_error *err' (last parameter) with a specific message;
 *   - out-parameters are written only on success;
 *   - pointer parameters are borrowed and copied when kept;
 *   - 'char **json' out-parameters receive a NUL-terminated JSON document
 *     allocated by the library: release it with nv_free();
 *   - JSON inputs are text; they are parsed strictly (jansson) and a bad one
 *     is NV_EINVAL ("invalid_json" in err->msg's code name).
 */
#ifndef NVENT_H
#define NVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NV_VERSION     "0.1.0"
#define NV_ABI_VERSION 1u        /* bump when nv_function_config or nv_handler change */

#define NV_NAME_MAX    128       /* N-1: queue, flow, step, event names */
#define NV_ID_MAX      37        /* UUIDv7 run id + NUL (N-2) */
#define NV_JOB_ID_MAX  257       /* N-3: 256 bytes + NUL */
#define NV_KEY_MAX     257       /* N-4 state keys: 256 bytes + NUL */

/* ---- Errors ---------------------------------------------------------- */

/*
 * Error codes. Each has a stable snake_case name (nv_error_name) that is
 * also the HTTP API's "error" member, and an HTTP status (nv_error_status).
 */
enum {
    NV_OK                  = 0,
    NV_ENOMEM              = -1,   /* internal: out of memory */
    NV_EINVAL              = -2,   /* bad_request: invalid argument/option/name */
    NV_ENOTFOUND           = -3,   /* not_found: generic (e.g. key, route) */
    NV_EIO                 = -4,   /* internal: I/O failure */
    NV_EBACKEND            = -5,   /* unavailable: adapter unreachable/failed */
    NV_ECONFLICT           = -6,   /* internal: expected stream version mismatch */
    NV_EJSON               = -7,   /* invalid_json */
    NV_EFLOW_NOT_FOUND     = -8,   /* flow_not_found */
    NV_EQUEUE_NOT_FOUND    = -9,   /* queue_not_found */
    NV_ERUN_NOT_FOUND      = -10,  /* run_not_found */
    NV_EJOB_NOT_FOUND      = -11,  /* job_not_found */
    NV_ESCHEDULE_NOT_FOUND = -12,  /* schedule_not_found */
    NV_ERUN_NOT_RUNNING    = -13,  /* run_not_running */
    NV_ERUN_RUNNING        = -14,  /* run_running */
    NV_EJOB_ACTIVE         = -15,  /* job_active */
    NV_EJOB_NOT_FAILED     = -16,  /* job_not_failed */
    NV_ESCHEDULE_EXISTS    = -17,  /* schedule_exists */
    NV_EQUEUE_FULL         = -18,  /* queue_full */
    NV_EINVALID_CRON       = -19,  /* invalid_cron */
    NV_EINVALID_TZ         = -20,  /* invalid_timezone */
    NV_EUNAVAILABLE        = -21,  /* unavailable: starting, stopping, busy */
    NV_ELEASE              = -22,  /* internal: the caller no longer holds the job's lease */
    NV_ESTATE              = -23,  /* internal: refused in the current state (e.g. ctx after return) */
    NV_EINTERNAL           = -24,  /* internal */
    NV__ECOUNT             = 25,
};

typedef struct nv_error {
    int  code;          /* NV_OK or a negative NV_E* code */
    char msg[256];      /* detail for humans, "" when none */
} nv_error;

/* Generic text of a code ("run not found"). Never NULL. */
const char *nv_strerror(int code);
/* Stable name of a code ("run_not_found"). Never NULL. */
const char *nv_error_name(int code);
/* HTTP status of a code (404 for run_not_found, 500 for internal ones). */
int nv_error_status(int code);

/* Release memory the library handed out (JSON documents, strings). NULL ok. */
void nv_free(void *p);

/* ---- Clock and logging ----------------------------------------------- */

/*
 * The engine's notion of time: epoch milliseconds. Tests inject a fake clock
 * so delays, backoff, leases, stall detection, TTLs and cron are exercised
 * without sleeping; nv_engine_tick() then runs the periodic work at once.
 */
typedef int64_t (*nv_clock_fn)(void *ud);

enum nv_log_level {
    NV_LOG_DEBUG = 0, NV_LOG_INFO = 1, NV_LOG_WARN = 2, NV_LOG_ERROR = 3,
    NV_LOG_SILENT = 4,
};

/* The engine never prints: it hands each log line to this callback. */
typedef void (*nv_log_fn)(void *ud, int level, const char *msg);

/* ---- Configuration (§15) --------------------------------------------- */

typedef struct nv_config nv_config;   /* opaque: the whole nvent.json, resolved */

/* A configuration with every default (memory adapters, 127.0.0.1:3000...). */
int  nv_config_new(nv_config **out, nv_error *err);
void nv_config_free(nv_config *c);

/*
 * Merge a JSON configuration document (the nvent.json shape) into 'c'.
 * 'origin' names the source in messages ("nvent.json"). Unknown keys, wrong
 * types and values fail with NV_EINVAL and a message
 * "<origin>: <key.path>: <reason>" (CFG-3); 'c' is then unchanged.
 */
int nv_config_load_json(nv_config *c, const char *json, const char *origin,
                        nv_error *err);

/*
 * Set one value by key path ("server.port", "queue.adapter") from JSON text
 * ("3001", "\"file\""). Used for environment overrides and by C programs.
 * Same validation as nv_config_load_json.
 */
int nv_config_set(nv_config *c, const char *path, const char *json_value,
                  const char *origin, nv_error *err);

/*
 * Read a value by key path as JSON text (caller frees with nv_free), after
 * defaults and resolution: "queue.file.dataDir" gives the effective folder.
 */
int nv_config_get(const nv_config *c, const char *path, char **json,
                  nv_error *err);

/* Project directory: relative paths in the configuration resolve here. */
int nv_config_set_project_dir(nv_config *c, const char *dir, nv_error *err);

/* ---- Engine ---------------------------------------------------------- */

typedef struct nv_engine nv_engine;   /* opaque; one per instance */

/*
 * Create an engine from a configuration (copied; NULL = all defaults). The
 * adapters are opened here (a file adapter creates its dataDir; a Redis one
 * connects); failures name the path or address. Nothing runs until
 * nv_engine_start().
 */
int  nv_engine_new(const nv_config *cfg, nv_engine **out, nv_error *err);

/*
 * As nv_engine_new, but on the adapters that 'with' has open instead of
 * opening its own (the adapter settings of 'cfg' are not used; its key
 * prefixes must be the same): both engines then see the same jobs, runs,
 * state and schedules, as two instances on one Redis do, in one process
 * and with any adapter (memory and file included). The adapters are
 * closed when the last engine using them is freed. `nvent dev` swaps in
 * the engine of a new registry this way (CLI-12).
 */
int  nv_engine_new_sharing(const nv_config *cfg, nv_engine *with,
                           nv_engine **out, nv_error *err);

/* Replace the clock (before start). NULL restores the system clock. */
void nv_engine_set_clock(nv_engine *e, nv_clock_fn fn, void *ud);
/* Log callback and minimum level (before start). Default: discard. */
void nv_engine_set_logger(nv_engine *e, nv_log_fn fn, void *ud, int min_level);
/* The engine's current time (its clock). */
int64_t nv_engine_now(const nv_engine *e);

enum nv_start_flags {
    NV_START_STRICT     = 1 << 0,  /* flow warnings are errors (V-2, CLI-9) */
    NV_START_NO_WORKERS = 1 << 1,  /* validate and serve calls, run no handlers
                                      and no periodic work (CLI direct mode) */
};

/*
 * Validate the registry (FN-4..FN-6, CF-*, V-1), then start the worker pools,
 * the scheduler and the maintenance thread, and run reconciliation (SD-4).
 * On validation failure returns NV_EINVAL; every problem is listed by
 * nv_engine_report(). Functions can no longer be registered afterwards.
 */
int nv_engine_start(nv_engine *e, unsigned flags, nv_error *err);

/*
 * Problems and warnings found by the last validation, one per line:
 * "<file>: <key path or ->: <reason>" and "<flow>: warning: <text>".
 * Lent; valid until the next call that validates. "" when none.
 */
const char *nv_engine_report(const nv_engine *e);

/*
 * Graceful stop (W-7): stop reserving, raise the cancellation check with
 * reason "shutdown", wait up to 'grace_ms' for active handlers, put jobs
 * still active back to waiting, stop threads. Idempotent.
 */
int  nv_engine_stop(nv_engine *e, int64_t grace_ms);
/* Stop (grace 0 if still running), close adapters, free. NULL ok. */
void nv_engine_free(nv_engine *e);

/*
 * Run the periodic work once, now, on the calling thread: promote due
 * delayed jobs, reap expired leases, fire due schedules, expire state,
 * time out attempts, stall detection, reconciliation and retention. The
 * background threads do the same on their own; tests with a fake clock call
 * this after advancing time.
 */
int nv_engine_tick(nv_engine *e, nv_error *err);

/*
 * Block until no job is waiting or active in any queue of this instance and
 * no delayed job is due, or until 'timeout_ms' (real time) passes
 * (NV_EUNAVAILABLE). For tests and examples.
 */
int nv_engine_wait_idle(nv_engine *e, int64_t timeout_ms, nv_error *err);

/* Instance id (UUIDv7 chosen at nv_engine_new). Lent for the engine's life. */
const char *nv_engine_instance_id(const nv_engine *e);

/* ---- Functions (§1, §2, §10) ----------------------------------------- */

typedef struct nv_ctx nv_ctx;         /* opaque; valid during one attempt */

/*
 * A handler runs one attempt of a job. 'input' is the JSON input (F-4, F-8,
 * Q-9), lent for the call. Return NV_OK for success, after optionally
 * setting a result with nv_ctx_result(); return anything else for failure,
 * after optionally describing it with nv_ctx_fail() (else the error message
 * is "handler failed (<code>)"). 'ud' is the pointer given at registration.
 */
typedef int (*nv_handler)(nv_ctx *ctx, const char *input, void *ud);

/* An optional integer in a static config: unset when 'set' is 0. */
typedef struct nv_opt_int {
    int       set;
    long long value;
} nv_opt_int;
#define NV_SOME(v) { 1, (v) }

/*
 * A function's configuration: the §2 shape field by field (C-3). Unset
 * fields (NULL, {0}) take their defaults. NULL-terminated arrays list names.
 * Both C functions and JSON configs go through the same validation.
 */
typedef struct nv_function_config {
    unsigned abi;                          /* NV_ABI_VERSION */
    struct {
        const char *name;                  /* queue.name */
        const char *default_job_options;   /* JSON object text (§3.1 w/o jobId) */
        const char *limiter;               /* JSON {max, duration, groupKey?} */
    } queue;
    struct {
        nv_opt_int concurrency;            /* 1..1024, default 2 */
        nv_opt_int autorun;                /* 0/1, default 1 */
        nv_opt_int lock_duration_ms;       /* >= 1000, default 30000 */
        nv_opt_int max_stalled_count;      /* >= 0, default 1 */
    } worker;
    struct {
        const char *const *name;           /* flows; NULL = not a flow function */
        const char *role;                  /* "entry" | "step" (default) */
        const char *step;                  /* default: the function's base name */
        const char *const *emits;
        const char *const *subscribes;
    } flow;
} nv_function_config;

/* What a shared object in functions/ exports (C-3). */
#define NV_FUNCTION_CONFIG_SYMBOL "nvent_config"
#define NV_FUNCTION_HANDLER_SYMBOL "nvent_handler"

enum nv_runtime { NV_RUNTIME_C = 0, NV_RUNTIME_PROCESS = 1 };

/*
 * Register a function before nv_engine_start (FN-7). 'id' is the function id
 * (FN-4, e.g. "billing/charge"); 'file' the source path shown in messages
 * (may be NULL: then the id is used). 'config_json' is the §2 shape (NULL =
 * {}). Configuration problems are not returned here: they are collected and
 * reported by nv_engine_start (FN-6). Returns NV_EINVAL only for a NULL or
 * empty id, a NULL handler, or an engine already started.
 */
int nv_function_register_json(nv_engine *e, const char *id, const char *file,
                              int runtime, const char *config_json,
                              nv_handler handler, void *ud, nv_error *err);

/* The same with a static config structure (converted to the §2 JSON). */
int nv_function_register(nv_engine *e, const char *id, const char *file,
                         const nv_function_config *cfg, nv_handler handler,
                         void *ud, nv_error *err);

/*
 * Convert a static config to its §2 JSON (caller frees). Fails with
 * NV_EINVAL when cfg->abi != NV_ABI_VERSION.
 */
int nv_function_config_to_json(const nv_function_config *cfg, char **json,
                               nv_error *err);

/* ---- Handler context (§5) -------------------------------------------- */

/* Identity of the attempt. Strings are lent for the attempt; NULL flow
 * members for plain jobs. */
const char *nv_ctx_job_id(const nv_ctx *c);
const char *nv_ctx_queue(const nv_ctx *c);
const char *nv_ctx_flow_id(const nv_ctx *c);    /* run id, NULL: plain job */
const char *nv_ctx_flow_name(const nv_ctx *c);  /* NULL: plain job */
const char *nv_ctx_step_name(const nv_ctx *c);  /* plain job: the job name */
const char *nv_ctx_step_id(const nv_ctx *c);
int         nv_ctx_attempt(const nv_ctx *c);    /* 1-based */
int         nv_ctx_max_attempts(const nv_ctx *c);
int64_t     nv_ctx_timeout_ms(const nv_ctx *c); /* 0: none */

/* CTX-1: level "debug", "info", "warn" or "error"; meta JSON may be NULL. */
int nv_ctx_log(nv_ctx *c, const char *level, const char *message,
               const char *meta_json, nv_error *err);

/* §9 run-scoped state. get writes the stored JSON, or "null" when absent. */
int nv_ctx_state_get(nv_ctx *c, const char *key, char **value_json,
                     nv_error *err);
/* ttl_ms 0: no expiry of its own (ST-3, ST-6). */
int nv_ctx_state_set(nv_ctx *c, const char *key, const char *value_json,
                     int64_t ttl_ms, nv_error *err);
int nv_ctx_state_delete(nv_ctx *c, const char *key, nv_error *err);

/* CTX-2: payload JSON may be NULL ({}). */
int nv_ctx_emit(nv_ctx *c, const char *name, const char *payload_json,
                nv_error *err);
/* CTX-3: start a child run; writes its id (NV_ID_MAX bytes). */
int nv_ctx_start_flow(nv_ctx *c, const char *flow, const char *input_json,
                      char *run_id, nv_error *err);
/* CTX-4 */
int nv_ctx_cancel_flow(nv_ctx *c, const char *flow, const char *run_id,
                       nv_error *err);
int nv_ctx_cancel(nv_ctx *c, nv_error *err);
/* CTX-5: flow NULL = the calling flow; run_id NULL = any other run. */
int nv_ctx_is_running(nv_ctx *c, const char *flow, const char *run_id,
                      bool *out, nv_error *err);
/* CTX-6: JSON array (caller frees). */
int nv_ctx_running_flows(nv_ctx *c, const char *flow, char **json,
                         nv_error *err);

/*
 * CTX-7: the cancellation check. NULL while the attempt may go on; else the
 * reason: "canceled", "stalled", "timeout" or "shutdown".
 */
const char *nv_ctx_canceled(const nv_ctx *c);

/* CTX-8: progress 0..100, data JSON may be NULL. */
int nv_ctx_progress(nv_ctx *c, double progress, const char *data_json,
                    nv_error *err);

/* C-5: the attempt's result (any JSON; copied). Default: null. */
int nv_ctx_result(nv_ctx *c, const char *result_json, nv_error *err);

enum nv_fail_flags { NV_FAIL_NO_RETRY = 1 << 0 };   /* W-6 */
/* C-5: describe the failure the handler is about to return. */
int nv_ctx_fail(nv_ctx *c, const char *message, const char *stack,
                unsigned flags);

/* ---- Flows and runs (§6, §8) ----------------------------------------- */

/*
 * F-1: start a run of 'flow' with 'input_json' (NULL = {}). 'start_data_json'
 * (NULL = none) adds members to flow.start's data (parentRunId, scheduleId,
 * scheduledFor, restartOf...). On success writes the run id (NV_ID_MAX) and,
 * when 'body' is not NULL, the API-6 body {id, queue, step, flowId, runId}.
 * Errors: NV_EFLOW_NOT_FOUND, NV_EQUEUE_FULL, NV_EINVAL; nothing recorded.
 */
int nv_flow_start(nv_engine *e, const char *flow, const char *input_json,
                  const char *start_data_json, char *run_id, char **body,
                  nv_error *err);

/*
 * Start n runs of 'flow' at once, as n nv_flow_start calls without start
 * data would (F-1, F-2), inputs[i] (NULL = {}) the input of run i, whose
 * id goes to run_ids[i]. Where the adapters can, the n flow.start events
 * are written together, and so are the n index entries and entry jobs:
 * redis in one round trip per 64 runs, file in one transaction each
 * (memory takes them one by one). For a caller with many runs to start
 * (an import, a backfill), as BullMQ's addBulk.
 * Every input is checked first, and with queue.maxQueueSize set the entry
 * queue must have room for all n: else NV_EINVAL (naming inputs[i]) or
 * NV_EQUEUE_FULL, and nothing is recorded. Each run then starts on its
 * own: *started (may be NULL) counts those started; a run that could not
 * be (its flow.start not appended) has run_ids[i][0] == '\0', and the
 * call returns the first such error (NV_OK when all started).
 */
int nv_flow_start_many(nv_engine *e, const char *flow,
                       const char *const *inputs, size_t n,
                       char (*run_ids)[NV_ID_MAX], size_t *started,
                       nv_error *err);

/* API-5: analyzed flows (V-6), sorted by name. */
int nv_flows_json(nv_engine *e, char **json, nv_error *err);

/* F-15: cancel a running run; 'flow' NULL = any flow; 'reason' may be NULL. */
int nv_run_cancel(nv_engine *e, const char *flow, const char *run_id,
                  const char *reason, nv_error *err);

/* F-17: body {success, oldRunId, newRunId, flowName}. */
int nv_run_restart(nv_engine *e, const char *flow, const char *run_id,
                   char **body, nv_error *err);

/*
 * API-8 / API-32: a run with its events. 'flow' NULL = any flow (API-19);
 * 'after' NULL = from the start; 'types' a comma list or NULL; limit 1..10000.
 */
int nv_run_get(nv_engine *e, const char *flow, const char *run_id,
               const char *after, const char *types, int limit, char **json,
               nv_error *err);

/*
 * Block until the run is finished or 'timeout_ms' (real time) passes
 * (NV_EUNAVAILABLE). Writes the final status ("completed"...) to 'status'
 * (16 bytes) when not NULL.
 */
int nv_run_wait(nv_engine *e, const char *run_id, int64_t timeout_ms,
                char *status, nv_error *err);

/* API-7: 'status' NULL = all; limit 1..100. */
int nv_runs_list(nv_engine *e, const char *flow, const char *status,
                 int offset, int limit, char **json, nv_error *err);
/* API-13 */
int nv_runs_recent(nv_engine *e, int limit, char **json, nv_error *err);
/* API-12 / IX-7 */
int nv_flow_clear_history(nv_engine *e, const char *flow, char **json,
                          nv_error *err);
/* API-14 / IX-4: 'flow' NULL = every flow. Body {flows, runs}. */
int nv_index_rebuild(nv_engine *e, const char *flow, char **json,
                     nv_error *err);

/* ---- Queues and jobs (§3) -------------------------------------------- */

/*
 * API-22 / Q-1: enqueue a plain job. 'name' NULL = the queue name; 'data'
 * NULL = {}; 'opts_json' job options incl. jobId (NULL = {}). Body
 * {id, queue, name, state, created}; 'created' false when Q-3 applied.
 */
int nv_queue_enqueue(nv_engine *e, const char *queue, const char *name,
                     const char *data_json, const char *opts_json,
                     char **body, nv_error *err);

/* API-20 / API-34: every queue, sorted by name. */
int nv_queues_json(nv_engine *e, char **json, nv_error *err);
/* API-21 */
int nv_queue_json(nv_engine *e, const char *queue, char **json,
                  nv_error *err);
/* API-23 / Q-13. Body {name, isPaused}. */
int nv_queue_pause(nv_engine *e, const char *queue, char **body,
                   nv_error *err);
int nv_queue_resume(nv_engine *e, const char *queue, char **body,
                    nv_error *err);
/* API-24 / Q-16: 'states' comma list or NULL (all); limit 1..1000. */
int nv_jobs_list(nv_engine *e, const char *queue, const char *states,
                 int offset, int limit, char **json, nv_error *err);
/* API-25: the job record (§3.2). */
int nv_job_get(nv_engine *e, const char *queue, const char *id, char **json,
               nv_error *err);
/* API-26 / Q-17: body = the job record after the change. */
int nv_job_retry(nv_engine *e, const char *queue, const char *id,
                 char **json, nv_error *err);
/* API-27 / Q-18: body {success, id}. */
int nv_job_remove(nv_engine *e, const char *queue, const char *id,
                  char **body, nv_error *err);

/* ---- Schedules (§12) ------------------------------------------------- */

/* API-15 / S-1: 'body_json' the request body. Answer body as S-1. */
int nv_schedule_add(nv_engine *e, const char *flow, const char *body_json,
                    char **json, nv_error *err);
/* API-16 / API-18 / S-8: 'flow' NULL = every flow. */
int nv_schedules_list(nv_engine *e, const char *flow, char **json,
                      nv_error *err);
/* S-8: body {success, message}. */
int nv_schedule_remove(nv_engine *e, const char *flow, const char *id,
                       char **body, nv_error *err);

/* ---- Live messages (SSE-4) and observability ------------------------- */

/*
 * A subscriber receives every live message of the global stream, from this
 * and (with shared adapters) other instances: 'json' is
 * {kind: "flow.event", event} | {kind: "job", ...} | {kind: "queue", ...},
 * lent for the call. Called on an engine thread: do not block.
 */
typedef void (*nv_live_fn)(void *ud, const char *json);
typedef struct nv_live nv_live;       /* opaque subscription */

int  nv_live_subscribe(nv_engine *e, nv_live_fn fn, void *ud, nv_live **out,
                       nv_error *err);
/* After it returns, 'fn' is not running and will not be called again. */
void nv_live_unsubscribe(nv_engine *e, nv_live *s);

/* API-29 / API-37. Returns NV_OK or NV_EUNAVAILABLE; 'json' set in both. */
int nv_health_json(nv_engine *e, char **json, nv_error *err);
/* API-30 / M-1: Prometheus text. */
int nv_metrics_text(nv_engine *e, char **text, nv_error *err);

#ifdef __cplusplus
}
#endif
#endif /* NVENT_H */
