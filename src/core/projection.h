/*
 * Run projection: a run's state computed from its event stream alone (§6.3,
 * F-4..F-14, IX-2). Pure: no I/O, no clock except the 'now' passed in. The
 * engine uses it for every flow decision (dispatch, end check, stall
 * detection, reconciliation) and for the run bodies of the API, so there is
 * one truth: the stream.
 */
#ifndef NV_CORE_PROJECTION_H
#define NV_CORE_PROJECTION_H

#include <jansson.h>

#include "nvent/adapter.h"

enum nv__step_status {
    NV_STEP_WAITING = 0,    /* no event, not eligible */
    NV_STEP_PENDING,        /* no event, eligible (entry: until it starts) */
    NV_STEP_RUNNING,
    NV_STEP_RETRYING,
    NV_STEP_COMPLETED,
    NV_STEP_FAILED,
    NV_STEP_STALLED,
    NV_STEP_SKIPPED,        /* run ended; the step never became eligible */
    NV_STEP_CANCELED,       /* run canceled/stalled while pending */
};

enum nv__run_status {
    NV_RUN_RUNNING = 0,
    NV_RUN_COMPLETED,
    NV_RUN_FAILED,
    NV_RUN_CANCELED,
    NV_RUN_STALLED,
};

/* A step of the flow as the projection needs it (from the registry). */
typedef struct nv__stepdef {
    const char         *name;
    int                 is_entry;
    const char *const  *subscribes;
    size_t              nsubs;
} nv__stepdef;

typedef struct nv__flowdef {
    const char        *name;
    const nv__stepdef *steps;
    size_t             nsteps;
} nv__flowdef;

/* One step's projected state. Pointers into the projection's own JSON;
 * valid until nv__run_proj_release. */
typedef struct nv__step_proj {
    const char *name;
    int         status;         /* enum nv__step_status */
    int         has_events;     /* any event with this stepName */
    int         attempt;        /* latest attempt seen, 0 if none */
    int64_t     started_ms;     /* ts of the latest step.started, 0 if none */
    int64_t     ended_ms;       /* ts of its latest ending event, 0 if none */
    const char *last_error;     /* latest step.retry/failed error, or NULL */
    json_t     *result;         /* step.completed result, or NULL */
    json_t     *input;          /* PENDING non-entry steps: the F-8 input
                                   (owned by the projection); NULL otherwise */
    json_t     *err_ref;        /* internal: keeps last_error alive */
} nv__step_proj;

typedef struct nv__run_proj {
    int            has_start;       /* flow.start seen */
    int            status;          /* enum nv__run_status */
    int64_t        version;         /* events in the stream */
    int64_t        started_ms;      /* ts of flow.start */
    int64_t        completed_ms;    /* ts of the terminal event, 0 if none */
    int64_t        last_ms;         /* ts of the latest event */
    json_t        *start_data;      /* flow.start data (owned), or NULL */
    json_t        *input;           /* start_data.input (borrowed), or NULL */
    size_t         completed_steps; /* distinct steps with step.completed */
    json_t        *emitted;         /* array: delivered emit names in order
                                       of first delivery (owned) */
    nv__step_proj *steps;           /* one per flowdef step, same order */
    size_t         nsteps;

    /*
     * F-12: 1 when the run is running and complete, i.e. it needs its
     * terminal event now: 'terminal_type' ("flow.completed"/"flow.failed")
     * and 'terminal_data' (owned) say what to append.
     */
    int            complete;
    const char    *terminal_type;
    json_t        *terminal_data;
} nv__run_proj;

/*
 * Project 'n' events of one run against 'def'. 'now' is used only for the
 * duration of a flow.completed about to be appended. Events of steps unknown
 * to 'def' are counted in 'version' and activity but otherwise ignored.
 * Returns NV_OK, NV_ENOMEM, or NV_EINVAL when an event's data is not JSON
 * (the projection is then unusable and released).
 */
int  nv__project(const nv__flowdef *def, const nv_event *ev, size_t n,
                 int64_t now, nv__run_proj *out, nv_error *err);
/* The same with each event's data already parsed ('data[i]' for 'ev[i]',
 * shared read-only: the projection takes its own references). */
int  nv__project_parsed(const nv__flowdef *def, const nv_event *ev,
                        json_t *const *data, size_t n, int64_t now,
                        nv__run_proj *out, nv_error *err);
void nv__run_proj_release(nv__run_proj *p);

/*
 * The same, incrementally: an accumulator takes a run's events one at a
 * time in stream order (nv__proj_apply), and a view of it at any point is
 * the projection of the events applied so far (nv__proj_view), equal to
 * nv__project over them. The run cache keeps one per run, so a run's
 * state is not recomputed from all its events at every step. 'def' must
 * outlive the accumulator.
 */
typedef struct nv__proj_acc nv__proj_acc;

nv__proj_acc *nv__proj_acc_new(const nv__flowdef *def);
void          nv__proj_acc_free(nv__proj_acc *a);
/* An independent copy (JSON members shared, copied before a change), or
 * NULL when out of memory: to try an event without applying it. */
nv__proj_acc *nv__proj_acc_clone(const nv__proj_acc *a);
/* Apply the next event. 'data' is its parsed data (shared read-only, the
 * accumulator takes references) or NULL: then ev->data is parsed when the
 * projection needs it (nv__proj_needs_data). NV_EINVAL when that is not
 * JSON (the accumulator is then unusable), NV_ENOMEM. */
int           nv__proj_apply(nv__proj_acc *a, const nv_event *ev,
                             json_t *data, nv_error *err);
/*
 * What the projection reads of the data of a step.completed (result,
 * emitIds) or an emit (name, payload), for an event whose data this engine
 * built as text: applied without parsing it. JSON members are borrowed
 * (the accumulator takes references).
 */
typedef struct nv__proj_facts {
    int                has_result;  /* step.completed: result member */
    json_t            *result;      /* NULL with has_result: JSON null */
    const char *const *emit_ids;
    size_t             nemit_ids;
    json_t            *more_ids;    /* internal: ids past emit_ids */
    const char        *name;        /* emit */
    json_t            *payload;     /* emit, or NULL */
} nv__proj_facts;

int           nv__proj_apply_facts(nv__proj_acc *a, const nv_event *ev,
                                   const nv__proj_facts *facts,
                                   nv_error *err);
/* 1 when the projection reads the data of events of 'type'. */
int           nv__proj_needs_data(const char *type);
int           nv__proj_view(const nv__proj_acc *a, int64_t now,
                            nv__run_proj *out, nv_error *err);
/* Cheap reads without a view: events applied, run status (enum
 * nv__run_status), a step's accumulated state (no eligibility: waiting or
 * any status from its events) or NULL. */
int64_t              nv__proj_acc_version(const nv__proj_acc *a);
int                  nv__proj_acc_status(const nv__proj_acc *a);
const nv__step_proj *nv__proj_acc_step(const nv__proj_acc *a,
                                       const char *name);

/* The step projection by name, or NULL. */
const nv__step_proj *nv__proj_step(const nv__run_proj *p, const char *name);

/* "running", "completed", ... for a run status; step status names too. */
const char *nv__run_status_name(int status);
const char *nv__step_status_name(int status);
/* Parse a run status name; -1 when unknown. */
int nv__run_status_parse(const char *s);

/* 1 when 'type' is a terminal flow event type. */
int nv__event_is_terminal(const char *type);

/*
 * IX-1 metadata {status, startedAt, completedAt?, lastActivityAt, stepCount,
 * completedSteps, emittedEvents}; stepCount = def->nsteps. New reference.
 */
json_t *nv__run_proj_meta(const nv__run_proj *p, const nv__flowdef *def);
/* The same as compact JSON text (nv__dump of it), or NULL. */
char   *nv__run_proj_meta_text(const nv__run_proj *p, const nv__flowdef *def);

/*
 * API-32 run body without events: {id, flowName, status, createdAt,
 * startedAt, completedAt?, lastActivityAt, stepCount, completedSteps,
 * emittedEvents}. New reference.
 */
json_t *nv__run_proj_body(const nv__run_proj *p, const nv__flowdef *def,
                          const char *run_id);

/*
 * The §8 event record {id, ts, type, runId, flowName, stepName?, stepId?,
 * attempt?, data?} with ts as an ISO timestamp. New reference, or NULL when
 * the event's data is not JSON.
 */
json_t *nv__event_json(const nv_event *ev);

/* 1 when 's' is printable ASCII without '"' or '\\': written between
 * quotes it is the JSON string of itself. */
int nv__json_plain(const char *s);

/* The 'n' strings 'parts' (NULL ones skipped) in one allocation, or NULL:
 * JSON text put together without printf. */
char *nv__concat(const char *const *parts, size_t n);

/* ISO timestamp JSON string of epoch ms. New reference. */
json_t *nv__json_iso(int64_t ms);

#endif
