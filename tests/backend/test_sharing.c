/*
 * nv_engine_new_sharing: a second engine on the adapters of the first, as
 * `nvent dev` swaps in a new registry (CLI-12). On every backend: queued
 * jobs and runs in progress of the old engine continue on the new one,
 * with the new code; the adapters stay open after the old engine is freed.
 */
#include <stdatomic.h>

#include "engine_test.h"

static int
entry(nv_ctx *c, const char *input, void *ud)
{
    (void)input;
    (void)ud;
    return nv_ctx_emit(c, "go", "{\"n\":1}", NULL);
}

/* ud: the version this code answers */
static int
versioned(nv_ctx *c, const char *input, void *ud)
{
    char out[32];

    (void)input;
    snprintf(out, sizeof(out), "{\"v\":%d}", *(const int *)ud);
    return nv_ctx_result(c, out, NULL);
}

static const char entry_cfg[] =
    "{\"queue\":{\"name\":\"fa\"},\"flow\":{\"name\":\"f\",\"role\":\"entry\","
    "\"emits\":[\"go\"]}}";
static const char step_cfg[] =
    "{\"queue\":{\"name\":\"fb\"},\"flow\":{\"name\":\"f\","
    "\"subscribes\":[\"go\"]}}";
static const char plain_cfg[] = "{\"queue\":{\"name\":\"calc\"}}";

static const int v1 = 1, v2 = 2;

static void
register_all(tenv *t, const int *version)
{
    tenv_fn(t, "fa", entry_cfg, entry, NULL);
    tenv_fn(t, "fb", step_cfg, versioned, (void *)version);
    tenv_fn(t, "calc", plain_cfg, versioned, (void *)version);
}

static long long
count_of(tenv *t, const char *queue, const char *state)
{
    nv_error err = { 0 };
    char *text = NULL;
    json_t *q;
    long long n;

    cr_assert_eq(nv_queue_json(t->e, queue, &text, &err), NV_OK, "%s",
                 err.msg);
    q = tparse(text);
    n = jint(json_object_get(q, "counts"), state);
    json_decref(q);
    return n;
}

static tenv *waiting_env;

static int
step_job_parked(void *ud)
{
    (void)ud;
    return count_of(waiting_env, "fb", "paused") == 1;
}

Test(sharing, a_swapped_in_engine_continues_the_jobs_and_runs_of_the_old_one)
{
    tenv a, b;
    nv_error err = { 0 };
    nv_config *cfg = NULL;
    char *base = nv_test_config_json(), *text = NULL;
    char run_id[NV_ID_MAX], done_id[NV_JOB_ID_MAX], later_id[NV_JOB_ID_MAX];
    json_t *j, *run, *ev;

    tenv_init_with(&a, base, NULL);
    register_all(&a, &v1);
    tenv_start(&a);
    /* a plain job done by the old code, one left waiting for the new */
    tenqueue(&a, "calc", "{}", NULL, done_id);
    tenv_idle(&a);
    cr_assert_eq(nv_queue_pause(a.e, "calc", NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_queue_pause(a.e, "fb", NULL, &err), NV_OK, "%s", err.msg);
    tenqueue(&a, "calc", "{}", NULL, later_id);
    /* a run whose second step waits in a paused queue */
    tstart(&a, "f", "{}", run_id);
    waiting_env = &a;
    cr_assert(twait(step_job_parked, NULL), "step job not queued");

    /* the new registry: same functions, new code, same adapters */
    cr_assert_eq(nv_config_new(&cfg, &err), NV_OK);
    cr_assert_eq(nv_config_load_json(cfg, base, "test", &err), NV_OK, "%s",
                 err.msg);
    free(base);     /* the same key prefixes as a's */
    cr_assert_eq(nv_engine_new_sharing(cfg, a.e, &b.e, &err), NV_OK, "%s",
                 err.msg);
    nv_config_free(cfg);
    nv_test_clock_init(&b.clock, T0);
    nv_engine_set_clock(b.e, nv_test_clock_now, &b.clock);
    register_all(&b, &v2);
    tenv_start(&b);
    cr_assert_eq(nv_engine_stop(a.e, 1000), NV_OK);
    tenv_free(&a);                      /* the adapters stay open for b */

    cr_assert_eq(nv_queue_resume(b.e, "calc", NULL, &err), NV_OK, "%s",
                 err.msg);
    cr_assert_eq(nv_queue_resume(b.e, "fb", NULL, &err), NV_OK, "%s",
                 err.msg);
    twait_run(&b, run_id, "completed");
    tenv_idle(&b);
    j = tjob(&b, "calc", done_id);
    cr_assert_str_eq(jstr(j, "state"), "completed");
    cr_assert_eq(jint(json_object_get(j, "returnvalue"), "v"), 1);
    json_decref(j);
    j = tjob(&b, "calc", later_id);
    cr_assert_str_eq(jstr(j, "state"), "completed");
    cr_assert_eq(jint(json_object_get(j, "returnvalue"), "v"), 2,
                 "the queued job ran on the new code");
    json_decref(j);
    run = trun(&b, run_id);
    cr_assert_eq(tcount_type(run, "flow.completed"), 1);
    ev = NULL;
    {
        json_t *evs = json_object_get(run, "events"), *x;
        size_t i;

        json_array_foreach(evs, i, x) {
            if (strcmp(jstr(x, "type"), "step.completed") == 0 &&
                strcmp(jstr(x, "stepName"), "fb") == 0)
                ev = x;
        }
    }
    cr_assert_not_null(ev);
    text = json_dumps(json_object_get(ev, "data"), JSON_COMPACT);
    cr_assert(strstr(text, "\"v\": 2") != NULL || strstr(text, "\"v\":2") != NULL,
              "step ran on the new code: %s", text);
    free(text);
    json_decref(run);
    tenv_free(&b);
}

Test(sharing, sharing_needs_an_engine)
{
    nv_error err = { 0 };
    nv_engine *e = NULL;

    cr_assert_eq(nv_engine_new_sharing(NULL, NULL, &e, &err), NV_EINVAL);
    cr_assert_null(e);
    cr_assert_str_eq(err.msg, "engine: 'with' must not be NULL");
}
