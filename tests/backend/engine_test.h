/*
 * Helpers for the engine-level backend tests (test_jobs.c, test_flows.c,
 * ...): an engine on the backend under test with a fake clock, function
 * registration from JSON, and small readers of the JSON the API returns.
 * Everything is static inline so each test file takes what it uses.
 */
#ifndef NV_TESTS_ENGINE_TEST_H
#define NV_TESTS_ENGINE_TEST_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nvent.h"
#include "nvent/adapter.h"
#include "support/backend.h"

#define T0 1700000000000LL

typedef struct tenv {
    nv_engine     *e;
    nv_test_clock  clock;
} tenv;

/* Engine on the backend configured by 'base' (nv_test_config_json), with
 * 'extra' more configuration (may be NULL). Two engines given the same
 * base share their adapters' data where the backend allows (redis). */
static inline void
tenv_init_with(tenv *t, const char *base, const char *extra)
{
    nv_error err = { 0 };
    nv_config *cfg = NULL;

    cr_assert_not_null(base);
    cr_assert_eq(nv_config_new(&cfg, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_config_load_json(cfg, base, "test", &err), NV_OK, "%s",
                 err.msg);
    if (extra != NULL)
        cr_assert_eq(nv_config_load_json(cfg, extra, "extra", &err), NV_OK,
                     "%s", err.msg);
    cr_assert_eq(nv_engine_new(cfg, &t->e, &err), NV_OK, "%s", err.msg);
    nv_config_free(cfg);
    nv_test_clock_init(&t->clock, T0);
    nv_engine_set_clock(t->e, nv_test_clock_now, &t->clock);
}

/* Engine on the current backend; 'extra' more configuration (may be NULL). */
static inline void
tenv_init(tenv *t, const char *extra)
{
    nv_error err = { 0 };
    nv_config *cfg = NULL;
    char *base = nv_test_config_json();

    cr_assert_not_null(base);
    cr_assert_eq(nv_config_new(&cfg, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_config_load_json(cfg, base, "test", &err), NV_OK, "%s",
                 err.msg);
    if (extra != NULL)
        cr_assert_eq(nv_config_load_json(cfg, extra, "extra", &err), NV_OK,
                     "%s", err.msg);
    free(base);
    cr_assert_eq(nv_engine_new(cfg, &t->e, &err), NV_OK, "%s", err.msg);
    nv_config_free(cfg);
    nv_test_clock_init(&t->clock, T0);
    nv_engine_set_clock(t->e, nv_test_clock_now, &t->clock);
}

static inline void
tenv_fn(tenv *t, const char *id, const char *config, nv_handler h, void *ud)
{
    nv_error err = { 0 };

    cr_assert_eq(nv_function_register_json(t->e, id, NULL, NV_RUNTIME_C,
                                           config, h, ud, &err), NV_OK,
                 "%s", err.msg);
}

static inline void
tenv_start(tenv *t)
{
    nv_error err = { 0 };

    cr_assert_eq(nv_engine_start(t->e, 0, &err), NV_OK, "%s\n%s", err.msg,
                 nv_engine_report(t->e));
}

static inline void
tenv_free(tenv *t)
{
    nv_engine_free(t->e);
    t->e = NULL;
}

static inline void
tenv_idle(tenv *t)
{
    nv_error err = { 0 };

    cr_assert_eq(nv_engine_wait_idle(t->e, 10000, &err), NV_OK, "%s",
                 err.msg);
}

/* Advance the fake clock and run the periodic work. */
static inline void
tenv_advance(tenv *t, int64_t ms)
{
    nv_error err = { 0 };

    nv_test_clock_advance(&t->clock, ms);
    cr_assert_eq(nv_engine_tick(t->e, &err), NV_OK, "%s", err.msg);
}

static inline json_t *
tparse(char *text)
{
    json_error_t je;
    json_t *j;

    cr_assert_not_null(text);
    j = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(j, "bad JSON (%s): %s", je.text, text);
    nv_free(text);
    return j;
}

/* Enqueue; returns the job id (static buffer per call site is enough). */
static inline void
tenqueue(tenv *t, const char *queue, const char *data, const char *opts,
         char id[NV_JOB_ID_MAX])
{
    nv_error err = { 0 };
    char *body = NULL;
    json_t *b;

    cr_assert_eq(nv_queue_enqueue(t->e, queue, NULL, data, opts, &body, &err),
                 NV_OK, "%s", err.msg);
    b = tparse(body);
    if (id != NULL)
        snprintf(id, NV_JOB_ID_MAX, "%s",
                 json_string_value(json_object_get(b, "id")));
    json_decref(b);
}

static inline json_t *
tjob(tenv *t, const char *queue, const char *id)
{
    nv_error err = { 0 };
    char *j = NULL;

    cr_assert_eq(nv_job_get(t->e, queue, id, &j, &err), NV_OK, "%s",
                 err.msg);
    return tparse(j);
}

static inline const char *
jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

static inline long long
jint(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* Poll (real time) until cond() is true, up to 5 s. */
static inline int
twait(int (*cond)(void *), void *ud)
{
    for (int i = 0; i < 5000; i++) {
        if (cond(ud))
            return 1;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    return cond(ud);
}

static inline void
tsleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* A run's body (API-8) and its events. */
static inline json_t *
trun(tenv *t, const char *run_id)
{
    nv_error err = { 0 };
    char *j = NULL;

    cr_assert_eq(nv_run_get(t->e, NULL, run_id, NULL, NULL, 10000, &j, &err),
                 NV_OK, "%s", err.msg);
    return tparse(j);
}

static inline int
tcount_type(json_t *run, const char *type)
{
    json_t *evs = json_object_get(run, "events"), *ev;
    size_t i;
    int n = 0;

    json_array_foreach(evs, i, ev) {
        if (strcmp(jstr(ev, "type"), type) == 0)
            n++;
    }
    return n;
}

/* The i-th event of 'type' (0-based), or NULL. */
static inline json_t *
tevent(json_t *run, const char *type, int which)
{
    json_t *evs = json_object_get(run, "events"), *ev;
    size_t i;

    json_array_foreach(evs, i, ev) {
        if (strcmp(jstr(ev, "type"), type) == 0 && which-- == 0)
            return ev;
    }
    return NULL;
}

static inline void
twait_run(tenv *t, const char *run_id, const char *status)
{
    nv_error err = { 0 };
    char st[16] = "";

    cr_assert_eq(nv_run_wait(t->e, run_id, 10000, st, &err), NV_OK, "%s",
                 err.msg);
    if (status != NULL)
        cr_assert_str_eq(st, status);
}

static inline void
tstart(tenv *t, const char *flow, const char *input, char run_id[NV_ID_MAX])
{
    nv_error err = { 0 };

    cr_assert_eq(nv_flow_start(t->e, flow, input, NULL, run_id, NULL, &err),
                 NV_OK, "%s", err.msg);
}

#endif
