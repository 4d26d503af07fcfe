/*
 * Stall detection and reconciliation (§13, SD-1..SD-4) on the fake clock:
 * a run without activity is stalled once (step.stalled, flow.stalled, its
 * pending jobs removed); activity keeps it alive; reconciliation enqueues a
 * missing entry job and appends a missing terminal event.
 */
#include <stdatomic.h>

#include "engine_test.h"
#include "core/engine.h"

static atomic_int calls;

static int
ok_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)c;
    (void)input;
    (void)ud;
    atomic_fetch_add(&calls, 1);
    return NV_OK;
}

static const char stall_cfg[] =
    "{\"flows\":{\"stallDetection\":{\"stallTimeout\":10000,"
    "\"checkInterval\":1000}}}";

static void
paused_flow(tenv *t, const char *extra)
{
    tenv_init(t, extra);
    tenv_fn(t, "s", "{\"flow\":{\"name\":\"sf\",\"role\":\"entry\"},"
            "\"worker\":{\"autorun\":false}}", ok_handler, NULL);
    tenv_start(t);
}

static char *
job_key(const char *run)
{
    static char id[NV_JOB_ID_MAX];

    snprintf(id, sizeof(id), "%s__s", run);
    return id;
}

Test(stall, a_run_without_activity_is_stalled_once)
{
    tenv t;
    char run[NV_ID_MAX], *j = NULL;
    json_t *r, *d;

    paused_flow(&t, stall_cfg);
    tstart(&t, "sf", NULL, run);
    tenv_advance(&t, 5000);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "running");
    json_decref(r);
    tenv_advance(&t, 6000);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "stalled");
    d = json_object_get(tevent(r, "flow.stalled", 0), "data");
    cr_assert_str_eq(jstr(d, "reason"), "no activity for 10000 ms");
    cr_assert_str_eq(jstr(d, "previousStatus"), "running");
    cr_assert_not_null(json_object_get(d, "stalledAt"));
    json_decref(r);
    cr_assert_eq(nv_job_get(t.e, "s", job_key(run), &j, NULL),
                 NV_EJOB_NOT_FOUND, "waiting job removed");
    tenv_advance(&t, 20000);
    r = trun(&t, run);
    cr_assert_eq(tcount_type(r, "flow.stalled"), 1);
    json_decref(r);
    tenv_free(&t);
}

Test(stall, a_running_step_without_a_live_lease_gets_step_stalled)
{
    tenv t;
    char run[NV_ID_MAX], rest[128], *key;
    nv_queue *q;
    nv_stream *st;
    nv_job stolen;
    nv_event ev0;
    nv_error err = { 0 };
    json_t *r, *ev;

    tenv_init(&t, stall_cfg);
    tenv_fn(&t, "s", "{\"flow\":{\"name\":\"sf\",\"role\":\"entry\"},"
            "\"queue\":{\"defaultJobOptions\":{\"delay\":1000}}}",
            ok_handler, NULL);
    tenv_start(&t);
    tstart(&t, "sf", NULL, run);
    /* another instance reserves it, starts it, and dies */
    q = nv__engine_queue(t.e);
    memset(&stolen, 0, sizeof(stolen));
    cr_assert_eq(q->ops->reserve(q->self, "s", T0 + 1000, 30000, NULL,
                                 &stolen, NULL, &err), NV_OK, "%s", err.msg);
    nv_job_release(&stolen);
    cr_assert_eq(nv_queue_pause(t.e, "s", NULL, NULL), NV_OK);
    st = nv__engine_stream(t.e);
    snprintf(rest, sizeof(rest), "flow:%s", run);
    key = nv__engine_key(t.e, "stream", rest);
    memset(&ev0, 0, sizeof(ev0));
    snprintf(ev0.type, sizeof(ev0.type), "step.started");
    snprintf(ev0.run_id, sizeof(ev0.run_id), "%s", run);
    snprintf(ev0.flow_name, sizeof(ev0.flow_name), "sf");
    snprintf(ev0.step_name, sizeof(ev0.step_name), "s");
    snprintf(ev0.step_id, sizeof(ev0.step_id), "%s__s__attempt-1", run);
    ev0.attempt = 1;
    ev0.data = (char *)"{\"jobId\":\"x\",\"name\":\"s\",\"queue\":\"s\"}";
    cr_assert_eq(st->ops->append(st->self, key, &ev0, T0 + 1000, -1, NULL,
                                 NULL, &err), NV_OK);
    nv_free(key);
    tenv_advance(&t, 15000);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "running", "a live lease is activity");
    json_decref(r);
    tenv_advance(&t, 17000);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "stalled");
    ev = tevent(r, "step.stalled", 0);
    cr_assert_not_null(ev);
    cr_assert_str_eq(jstr(ev, "stepName"), "s");
    cr_assert_eq(jint(ev, "attempt"), 1);
    cr_assert_eq(atomic_load(&calls), 0);
    json_decref(r);
    tenv_free(&t);
}

Test(stall, a_delayed_retry_counts_as_activity)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r;

    tenv_init(&t, stall_cfg);
    tenv_fn(&t, "s", "{\"flow\":{\"name\":\"sf\",\"role\":\"entry\"},"
            "\"queue\":{\"defaultJobOptions\":{\"delay\":60000}}}",
            ok_handler, NULL);
    tenv_start(&t);
    tstart(&t, "sf", NULL, run);
    tenv_advance(&t, 30000);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "running");
    json_decref(r);
    tenv_free(&t);
}

Test(stall, disabled_detection_never_stalls)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r;

    paused_flow(&t, "{\"flows\":{\"stallDetection\":{\"enabled\":false,"
                "\"stallTimeout\":10000,\"checkInterval\":1000}}}");
    tstart(&t, "sf", NULL, run);
    tenv_advance(&t, 60000);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "running");
    json_decref(r);
    tenv_free(&t);
}

Test(stall, reconciliation_enqueues_a_missing_entry_job)
{
    tenv t;
    char run[NV_ID_MAX];
    nv_queue *q;
    nv_error err = { 0 };

    paused_flow(&t, stall_cfg);
    tstart(&t, "sf", NULL, run);
    q = nv__engine_queue(t.e);
    cr_assert_eq(q->ops->remove(q->self, "s", job_key(run), NULL, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(nv_queue_resume(t.e, "s", NULL, NULL), NV_OK);
    tenv_advance(&t, 1000);
    twait_run(&t, run, "completed");
    cr_assert_eq(atomic_load(&calls), 1);
    tenv_free(&t);
}

Test(stall, reconciliation_appends_a_missing_terminal_event)
{
    tenv t;
    char run[NV_ID_MAX];
    nv_stream *st;
    nv_event ev;
    nv_error err = { 0 };
    char rest[128], *key;
    json_t *r;

    paused_flow(&t, stall_cfg);
    tstart(&t, "sf", NULL, run);
    /* the step completed, then the instance died before the end check */
    st = nv__engine_stream(t.e);
    snprintf(rest, sizeof(rest), "flow:%s", run);
    key = nv__engine_key(t.e, "stream", rest);
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.run_id, sizeof(ev.run_id), "%s", run);
    snprintf(ev.flow_name, sizeof(ev.flow_name), "sf");
    snprintf(ev.step_name, sizeof(ev.step_name), "s");
    snprintf(ev.step_id, sizeof(ev.step_id), "%s__s__attempt-1", run);
    ev.attempt = 1;
    snprintf(ev.type, sizeof(ev.type), "step.started");
    ev.data = (char *)"{\"jobId\":\"x\",\"name\":\"s\",\"queue\":\"s\"}";
    cr_assert_eq(st->ops->append(st->self, key, &ev, T0, -1, NULL, NULL,
                                 &err), NV_OK);
    snprintf(ev.type, sizeof(ev.type), "step.completed");
    ev.data = (char *)"{\"result\":5,\"emitIds\":[],\"durationMs\":1}";
    cr_assert_eq(st->ops->append(st->self, key, &ev, T0, -1, NULL, NULL,
                                 &err), NV_OK);
    nv_free(key);
    tenv_advance(&t, 1000);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "completed");
    cr_assert_eq(tcount_type(r, "flow.completed"), 1);
    cr_assert_eq(jint(json_object_get(tevent(r, "flow.completed", 0), "data"),
                      "result"), 5);
    json_decref(r);
    tenv_free(&t);
}
