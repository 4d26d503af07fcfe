/*
 * Function registry and flow graph (§1, §2, §7): functions are added with
 * their §2 JSON config, then nv__registry_build validates everything at
 * once (FN-4..FN-6, CF-1..CF-5, V-1..V-5), resolves each queue's effective
 * settings and builds the flows with their V-6 analysis. After a successful
 * build the registry is read-only and may be read from any thread.
 */
#ifndef NV_CORE_REGISTRY_H
#define NV_CORE_REGISTRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "nvent.h"
#include "nvent/adapter.h"
#include "core/config.h"
#include "core/jobopts.h"

/* A registered function with its effective settings (valid after build). */
typedef struct nv__function {
    char       *id;            /* function id (FN-4), e.g. "billing/charge" */
    char       *file;          /* source path for messages (id when none) */
    int         runtime;       /* enum nv_runtime */
    nv_handler  handler;
    void       *ud;
    char        queue[NV_NAME_MAX + 1];   /* FN-5 */
    nv__jobopts opts;          /* effective default job options (CF-5) */
    nv_limiter  limiter;       /* effective limiter; max 0 = none */
    char       *group_key;     /* limiter groupKey or NULL */
    int         concurrency;   /* 1..1024 */
    int         autorun;       /* 0/1 */
    int         max_stalled;   /* >= 0 */
    int64_t     lock_ms;       /* >= 1000 */
    char      **flows;         /* flow names, sorted; NULL/0 for plain */
    size_t      nflows;
    int         is_entry;      /* flow.role == "entry" */
    char        step[NV_NAME_MAX + 1];    /* step name ("" for plain) */
    char      **emits;         /* flow.emits as given (order kept) */
    size_t      nemits;
    char      **subscribes;    /* flow.subscribes as given (order kept) */
    size_t      nsubs;
    json_t     *config_queue;  /* CF-6 {name, defaultJobOptions, limiter?} */
    json_t     *config_worker; /* CF-6 {concurrency, autorun,
                                  lockDurationMs, maxStalledCount} */
} nv__function;

/* A flow (§6, §7), built from the functions whose flow.name contains it. */
typedef struct nv__flow {
    char                *name;
    const nv__function  *entry;
    const nv__function **steps;    /* every step incl. entry, by step name */
    size_t               nsteps;
    char               **warnings; /* V-2 texts (without "<flow>: warning: ") */
    size_t               nwarnings;
    json_t              *analyzed; /* the V-6 object of this flow, complete:
                                      {id, entry, steps, analyzed, warnings} */
} nv__flow;

typedef struct nv__registry nv__registry;

/* Empty registry. NV_ENOMEM on failure. */
int  nv__registry_new(nv__registry **out, nv_error *err);
/* Free the registry and everything it holds. NULL ok. */
void nv__registry_free(nv__registry *r);

/*
 * Add a function: 'id' (non-empty), 'file' (NULL = id), 'runtime'
 * (enum nv_runtime), 'config_json' the §2 shape (NULL = {}), handler and
 * ud. Everything is copied. Configuration problems (bad JSON included) are
 * NOT reported here but collected by nv__registry_build (FN-6). Fails with
 * NV_EINVAL only for a NULL/empty id or NULL handler, NV_ESTATE after a
 * build, NV_ENOMEM.
 */
int  nv__registry_add(nv__registry *r, const char *id, const char *file,
                      int runtime, const char *config_json, nv_handler h,
                      void *ud, nv_error *err);

/*
 * Validate and resolve everything (FN-4, FN-5, CF-1..CF-5, V-1..V-5) using
 * the defaults of 'cfg' (queue.defaultJobOptions, queue.limiter,
 * queue.worker; NULL = built-in defaults). '*report' (may be NULL) receives
 * every error and warning, one per line, each ending in '\n':
 *   "<file>: <key path or ->: <reason>"  (errors)
 *   "<flow>: warning: <text>"            (warnings)
 * ("" when none; caller frees with nv__free). Returns NV_EINVAL when there
 * is any error, or any warning when 'strict' (err->msg then holds the first
 * line), NV_OK otherwise. Call once.
 */
int  nv__registry_build(nv__registry *r, const nv_config *cfg, int strict,
                        char **report, nv_error *err);

/* Functions, sorted by queue name (valid after a successful build). */
size_t              nv__registry_nfunctions(const nv__registry *r);
const nv__function *nv__registry_function(const nv__registry *r, size_t i);
/* The function serving 'queue', or NULL. */
const nv__function *nv__registry_by_queue(const nv__registry *r,
                                          const char *queue);

/* Flows, sorted by name (valid after a successful build). */
size_t          nv__registry_nflows(const nv__registry *r);
const nv__flow *nv__registry_flow_at(const nv__registry *r, size_t i);
/* The flow named 'name', or NULL. */
const nv__flow *nv__registry_flow(const nv__registry *r, const char *name);
/* The function serving step 'step' of flow 'f', or NULL. */
const nv__function *nv__flow_step(const nv__flow *f, const char *step);

#endif
