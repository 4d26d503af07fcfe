/*
 * Job options (§3.1): parsing and validation of the JSON form, layering
 * (CF-5: enqueue options over function defaults over file defaults over
 * built-in defaults), serialisation of the effective options stored in a
 * job's 'opts', and the retry wait of Q-6.
 */
#ifndef NV_CORE_JOBOPTS_H
#define NV_CORE_JOBOPTS_H

#include <jansson.h>
#include <stdint.h>

#include "nvent.h"
#include "nvent/adapter.h"

enum {
    NV__BACKOFF_FIXED       = 0,
    NV__BACKOFF_EXPONENTIAL = 1,
};

/* Effective job options; a plain value type (no heap members). */
typedef struct nv__jobopts {
    int     attempts;                 /* 1..1000, default 1 */
    int     backoff_type;             /* NV__BACKOFF_FIXED | _EXPONENTIAL */
    int     backoff_number;           /* 1: given as a bare number (serialised
                                         back as a number); default 1 */
    int64_t backoff_delay;            /* >= 0 ms, default 0 */
    double  jitter;                   /* 0..1, default 0 */
    int64_t delay;                    /* >= 0 ms, default 0 */
    int     priority;                 /* 0..2097152, default 0 */
    int64_t timeout;                  /* >= 0 ms, 0 = none */
    int     lifo;                     /* 0/1 */
    int64_t remove_on_complete;       /* NV_KEEP_ALL (false), 0 (true), N;
                                         default 1000 */
    int64_t remove_on_fail;           /* same; default 5000 */
    int     remove_on_complete_bool;  /* 1: given as a boolean */
    int     remove_on_fail_bool;
    char    job_id[NV_JOB_ID_MAX];    /* "" = none (enqueue only) */
} nv__jobopts;

/* The built-in defaults of §3.1. */
void nv__jobopts_default(nv__jobopts *o);

/*
 * Apply the JSON object 'j' over 'o' member by member (NULL = nothing to
 * apply), validating each member (§3.1, CL-14: integers are JSON integers,
 * 2.0 is refused). 'backoff' replaces the previous backoff whole (CF-5).
 * 'jobId' is accepted only when 'allow_job_id' (enqueue), else it fails
 * with "<path>.jobId: not allowed here (only at enqueue)". 'path' prefixes messages ("opts", "queue.defaultJobOptions").
 * A non-object, an unknown member or a bad value fails with NV_EINVAL and a
 * message "<path>.<member>: <reason>", e.g.
 *   "opts.priority: expected integer 0..2097152, got -1"
 *   "opts.foo: unknown key"   "opts.repeat: not supported"
 * and 'o' is left unchanged.
 */
int nv__jobopts_apply(nv__jobopts *o, json_t *j, int allow_job_id,
                      const char *path, nv_error *err);

/*
 * The effective options as a JSON object (new reference, NULL on OOM):
 * {attempts, backoff, delay, priority, timeout, lifo, removeOnComplete,
 * removeOnFail, jobId?}. backoff is a number when given as one (or by
 * default), else {type, delay, jitter?}; removeOn* are booleans when given
 * as booleans. jobId only when set.
 */
json_t *nv__jobopts_to_json(const nv__jobopts *o);

/*
 * the wait in ms before the retry that follows failed attempt 'n'
 * (1-based): delay for the number form and "fixed", delay * 2^(n-1) for
 * "exponential"; with jitter j, w - floor(w * j * r). 'r' is a uniform
 * draw in [0, 1) supplied by the caller (tests pass fixed values).
 * Saturates at INT64_MAX; never negative.
 */
int64_t nv__backoff_ms(const nv__jobopts *o, int n, double r);

#endif
