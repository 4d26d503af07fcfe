/*
 * Function configuration (§2): validation of one function's §2 JSON
 * (CF-1..CF-4) and resolution of its effective settings against the
 * configuration file (CF-5, CF-6). Used by the registry; every problem is
 * collected (FN-6) rather than stopping at the first.
 */
#ifndef NV_CORE_FNCONFIG_H
#define NV_CORE_FNCONFIG_H

#include <jansson.h>
#include <stddef.h>

#include "core/config.h"
#include "core/registry.h"

/* A growing list of report lines (each without its final '\n'). */
typedef struct nv__problems {
    char  **lines;
    size_t  n, cap;
    int     oom;        /* a line could not be stored */
} nv__problems;

void nv__problems_add(nv__problems *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void nv__problems_release(nv__problems *p);

/*
 * Validate 'cfg' (the §2 object; NULL = {}) of function 'fn' (id and file
 * already set) and fill fn's queue, options, limiter, worker settings,
 * flow membership, step, emits, subscribes and config_queue/config_worker,
 * layering over the defaults of 'c' (NULL = built-in defaults). Every
 * problem is added to 'p' as "<file>: <key path or ->: <reason>".
 * Returns the number of problems added (0: fn is usable).
 */
size_t nv__fnconfig_resolve(nv__function *fn, json_t *cfg, const nv_config *c,
                            nv__problems *p);

/* Release what nv__fnconfig_resolve allocated in 'fn' (not id/file). */
void nv__fnconfig_release(nv__function *fn);

#endif
