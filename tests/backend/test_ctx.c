/*
 * The handler context (§5, CTX-1..CTX-9): identity, logs of plain and flow
 * jobs, emit refusals, child runs, isRunning / getRunningFlows, progress,
 * and refusal after return. Runs once per backend.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "engine_test.h"

typedef void (*script_fn)(nv_ctx *c, const char *input);

static script_fn script;
static atomic_int done_calls;
static atomic_int hold;
static nv_ctx *saved_ctx;
static char note[1024];

static int
script_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)ud;
    saved_ctx = c;
    if (script != NULL)
        script(c, input);
    while (atomic_load(&hold) && nv_ctx_canceled(c) == NULL)
        tsleep_ms(1);
    atomic_fetch_add(&done_calls, 1);
    return NV_OK;
}

static int
at_least(void *ud)
{
    return atomic_load(&done_calls) >= *(int *)ud;
}

static void
plain(tenv *t, script_fn fn)
{
    script = fn;
    tenv_init(t, NULL);
    tenv_fn(t, "work", NULL, script_handler, NULL);
    tenv_start(t);
}

static void
identity_plain(nv_ctx *c, const char *input)
{
    (void)input;
    snprintf(note, sizeof(note), "%s|%s|%s|%s|%s|%d|%d|%lld",
             nv_ctx_job_id(c), nv_ctx_queue(c),
             nv_ctx_flow_id(c) ? "flow" : "null", nv_ctx_step_name(c),
             nv_ctx_step_id(c), nv_ctx_attempt(c), nv_ctx_max_attempts(c),
             (long long)nv_ctx_timeout_ms(c));
}

Test(ctx, a_plain_job_sees_its_identity)
{
    tenv t;
    char id[NV_JOB_ID_MAX], want[1024];

    plain(&t, identity_plain);
    tenqueue(&t, "work", NULL, "{\"attempts\":4,\"timeout\":5000,"
             "\"jobId\":\"j1\"}", id);
    tenv_idle(&t);
    snprintf(want, sizeof(want), "j1|work|null|work|j1__work__attempt-1|1|4|"
             "5000");
    cr_assert_str_eq(note, want);
    tenv_free(&t);
}

static void
logs_plain(nv_ctx *c, const char *input)
{
    nv_error err = { 0 };

    (void)input;
    cr_assert_eq(nv_ctx_log(c, "info", "hello", "{\"k\":1}", &err), NV_OK,
                 "%s", err.msg);
    cr_assert_eq(nv_ctx_log(c, "loud", "no", NULL, &err), NV_EINVAL);
    for (int i = 0; i < 105; i++)
        nv_ctx_log(c, "debug", "spam", NULL, NULL);
    cr_assert_eq(nv_ctx_emit(c, "ev", NULL, &err), NV_EINVAL,
                 "emit refused in a plain job");
    cr_assert_eq(nv_ctx_cancel(c, &err), NV_EINVAL);
}

Test(ctx, plain_job_logs_go_to_the_job_and_keep_the_latest_100)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j, *logs;

    plain(&t, logs_plain);
    tenqueue(&t, "work", NULL, NULL, id);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    logs = json_object_get(j, "logs");
    cr_assert_eq(json_array_size(logs), 100);
    cr_assert_str_eq(jstr(json_array_get(logs, 99), "message"), "spam");
    cr_assert_eq(jint(json_array_get(logs, 99), "ts"), T0);
    json_decref(j);
    tenv_free(&t);
}

static void
progress_script(nv_ctx *c, const char *input)
{
    nv_error err = { 0 };

    (void)input;
    cr_assert_eq(nv_ctx_progress(c, 101, NULL, &err), NV_EINVAL);
    cr_assert_eq(nv_ctx_progress(c, -1, NULL, &err), NV_EINVAL);
    cr_assert_eq(nv_ctx_progress(c, 42.5, "{\"step\":\"x\"}", &err), NV_OK,
                 "%s", err.msg);
}

Test(ctx, progress_is_recorded_and_out_of_range_values_refused)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;

    plain(&t, progress_script);
    tenqueue(&t, "work", NULL, NULL, id);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_float_eq(json_number_value(json_object_get(j, "progress")),
                       42.5, 1e-9);
    cr_assert_str_eq(jstr(json_object_get(j, "progressData"), "step"), "x");
    json_decref(j);
    tenv_free(&t);
}

Test(ctx, a_context_is_refused_after_its_handler_returned)
{
    tenv t;
    nv_error err = { 0 };
    char *v = NULL;

    plain(&t, NULL);
    tenqueue(&t, "work", NULL, NULL, NULL);
    tenv_idle(&t);
    cr_assert_not_null(saved_ctx);
    cr_assert_eq(nv_ctx_log(saved_ctx, "info", "late", NULL, &err),
                 NV_ESTATE);
    cr_assert_eq(nv_ctx_state_set(saved_ctx, "k", "1", 0, &err), NV_ESTATE);
    cr_assert_eq(nv_ctx_state_get(saved_ctx, "k", &v, &err), NV_ESTATE);
    cr_assert_eq(nv_ctx_result(saved_ctx, "1", &err), NV_ESTATE);
    tenv_free(&t);
}

/* ---- flow jobs ---- */

static char child_run[NV_ID_MAX];
static atomic_int running_answer = -1;
static char running_json[2048];

static void
flow_script(nv_ctx *c, const char *input)
{
    nv_error err = { 0 };
    bool r = false;
    char *json = NULL;

    (void)input;
    if (strcmp(nv_ctx_flow_name(c), "parent") != 0)
        return;
    snprintf(note, sizeof(note), "%s|%s|%s", nv_ctx_step_name(c),
             nv_ctx_step_id(c), nv_ctx_flow_id(c));
    cr_assert_eq(nv_ctx_log(c, "warn", "careful", "{\"level\":\"x\","
                            "\"extra\":true}", &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_ctx_log(c, "info", "scalar", "7", &err), NV_OK);
    cr_assert_eq(nv_ctx_emit(c, "bad name!", NULL, &err), NV_EINVAL);
    cr_assert_eq(nv_ctx_start_flow(c, "child", "{\"c\":1}", child_run, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(nv_ctx_is_running(c, "parent", NULL, &r, &err), NV_OK);
    atomic_store(&running_answer, r);
    cr_assert_eq(nv_ctx_running_flows(c, NULL, &json, &err), NV_OK);
    snprintf(running_json, sizeof(running_json), "%s", json);
    nv_free(json);
}

Test(ctx, flow_job_logs_child_runs_and_running_checks)
{
    tenv t;
    char run[NV_ID_MAX], want[512];
    json_t *r, *ev, *d;

    script = flow_script;
    tenv_init(&t, NULL);
    tenv_fn(&t, "p", "{\"flow\":{\"name\":\"parent\",\"role\":\"entry\"}}",
            script_handler, NULL);
    tenv_fn(&t, "c", "{\"flow\":{\"name\":\"child\",\"role\":\"entry\"},"
            "\"worker\":{\"autorun\":false}}", script_handler, NULL);
    tenv_start(&t);
    tstart(&t, "parent", NULL, run);
    twait_run(&t, run, "completed");
    snprintf(want, sizeof(want), "p|%s__p__attempt-1|%s", run, run);
    cr_assert_str_eq(note, want);
    cr_assert_eq(atomic_load(&running_answer), 0, "only itself is running");
    cr_assert_str_eq(running_json, "[]");
    r = trun(&t, run);
    ev = tevent(r, "log", 0);
    d = json_object_get(ev, "data");
    cr_assert_str_eq(jstr(d, "level"), "warn", "meta does not override");
    cr_assert_str_eq(jstr(d, "message"), "careful");
    cr_assert(json_is_true(json_object_get(d, "extra")));
    cr_assert_str_eq(jstr(ev, "stepName"), "p");
    cr_assert_eq(jint(ev, "attempt"), 1);
    d = json_object_get(tevent(r, "log", 1), "data");
    cr_assert_eq(jint(d, "value"), 7);
    d = json_object_get(tevent(r, "log", 2), "data");
    cr_assert_str_eq(jstr(d, "childRunId"), child_run);
    cr_assert_str_eq(jstr(d, "childFlowName"), "child");
    json_decref(r);
    r = trun(&t, child_run);
    d = json_object_get(tevent(r, "flow.start", 0), "data");
    cr_assert_str_eq(jstr(d, "parentRunId"), run);
    cr_assert_str_eq(jstr(d, "parentFlowName"), "parent");
    cr_assert_str_eq(jstr(d, "parentStepName"), "p");
    cr_assert_eq(jint(json_object_get(d, "input"), "c"), 1);
    json_decref(r);
    tenv_free(&t);
}

static void
running_script(nv_ctx *c, const char *input)
{
    bool r = false;
    char *json = NULL;

    (void)input;
    if (strcmp(input, "{\"second\":1}") != 0)
        return;
    cr_assert_eq(nv_ctx_is_running(c, NULL, NULL, &r, NULL), NV_OK);
    cr_assert_eq(nv_ctx_running_flows(c, NULL, &json, NULL), NV_OK);
    snprintf(running_json, sizeof(running_json), "%s", json);
    nv_free(json);
    atomic_store(&running_answer, r);       /* last: the test waits on it */
}

static int
one_blocked(void *ud)
{
    (void)ud;
    return saved_ctx != NULL;
}

Test(ctx, is_running_sees_other_runs_of_the_flow)
{
    tenv t;
    char r1[NV_ID_MAX], r2[NV_ID_MAX];
    json_t *a;
    bool r = false;
    int one = 1;

    script = running_script;
    atomic_store(&hold, 1);
    tenv_init(&t, NULL);
    tenv_fn(&t, "p", "{\"flow\":{\"name\":\"parent\",\"role\":\"entry\"},"
            "\"worker\":{\"concurrency\":2}}", script_handler, NULL);
    tenv_start(&t);
    tstart(&t, "parent", "{\"first\":1}", r1);
    cr_assert(twait(one_blocked, NULL));
    /* r1 is still running: its handler waits until released */
    tstart(&t, "parent", "{\"second\":1}", r2);
    for (int i = 0; i < 5000 && atomic_load(&running_answer) < 0; i++)
        tsleep_ms(1);
    cr_assert_eq(atomic_load(&running_answer), 1);
    a = json_loads(running_json, 0, NULL);
    cr_assert_eq(json_array_size(a), 1, "%s", running_json);
    cr_assert_str_eq(jstr(json_array_get(a, 0), "id"), r1);
    cr_assert_str_eq(jstr(json_array_get(a, 0), "status"), "running");
    json_decref(a);
    atomic_store(&hold, 0);
    cr_assert(twait(at_least, &one));
    twait_run(&t, r1, "completed");
    twait_run(&t, r2, "completed");
    (void)r;
    tenv_free(&t);
}

static void
many_logs(nv_ctx *c, const char *input)
{
    (void)input;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(nv_ctx_log(c, "info", "line", NULL, NULL), NV_OK);
}

Test(ctx, a_run_keeps_at_most_the_configured_log_events)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r, *d;

    script = many_logs;
    tenv_init(&t, "{\"store\":{\"retention\":{\"maxLogEventsPerRun\":3}}}");
    tenv_fn(&t, "p", "{\"flow\":{\"name\":\"parent\",\"role\":\"entry\"}}",
            script_handler, NULL);
    tenv_start(&t);
    tstart(&t, "parent", NULL, run);
    twait_run(&t, run, "completed");
    r = trun(&t, run);
    cr_assert_eq(tcount_type(r, "log"), 4, "3 and the notice");
    d = json_object_get(tevent(r, "log", 3), "data");
    cr_assert_str_eq(jstr(d, "level"), "warn");
    cr_assert_str_eq(jstr(d, "message"), "log limit reached (3); further log "
                     "events of this run are dropped");
    json_decref(r);
    tenv_free(&t);
}
