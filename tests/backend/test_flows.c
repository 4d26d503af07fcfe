/*
 * Flow semantics through the engine (§6, §8, IX-*): dispatch, joins,
 * skipped steps, failures, retries with undelivered emits, cancel, F-4
 * redeliveries, one terminal event under races, restart, the run index and
 * the run queries. Runs once per backend.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "engine_test.h"
#include "core/engine.h"
#include "core/engine_int.h"
#include "core/util.h"

struct spec {
    const char   *emit;          /* event to emit at each attempt */
    int           fail_first;    /* attempts that fail */
    int           block;         /* wait for release (or cancel) */
    int           pair;          /* meet the other 'pair' step first */
    const char   *result;
    atomic_int    calls;
    char          input[512];
    const char *_Atomic cancel_seen;
    atomic_int    late_emit_rc;
};

static atomic_int release_all;
static atomic_int arrived;

static int
step_handler(nv_ctx *c, const char *input, void *ud)
{
    struct spec *s = ud;
    int n = atomic_fetch_add(&s->calls, 1);

    snprintf(s->input, sizeof(s->input), "%s", input);
    if (s->pair) {
        int k = atomic_fetch_add(&arrived, 1) + 1;
        int target = ((k + 1) / 2) * 2;

        while (atomic_load(&arrived) < target)
            ;
    }
    if (s->block) {
        while (!atomic_load(&release_all) && nv_ctx_canceled(c) == NULL)
            tsleep_ms(1);
        atomic_store(&s->cancel_seen, nv_ctx_canceled(c));
        if (nv_ctx_canceled(c) != NULL)
            atomic_store(&s->late_emit_rc,
                         nv_ctx_emit(c, "late", NULL, NULL));
        while (!atomic_load(&release_all))
            tsleep_ms(1);
    }
    if (s->emit != NULL) {
        char p[64];

        snprintf(p, sizeof(p), "{\"attempt\":%d}", nv_ctx_attempt(c));
        cr_assert_eq(nv_ctx_emit(c, s->emit, p, NULL), NV_OK);
    }
    if (n < s->fail_first) {
        nv_ctx_fail(c, "boom", NULL, 0);
        return -1;
    }
    if (s->result != NULL)
        nv_ctx_result(c, s->result, NULL);
    return NV_OK;
}

static struct spec S_start, S_a, S_b, S_j, S_c;

/* entry "start" emits go; a and b subscribe go; j joins a and b. */
static void
diamond(tenv *t, const char *extra, const char *start_opts,
        const char *b_opts)
{
    char cfg[512];

    tenv_init(t, extra);
    snprintf(cfg, sizeof(cfg), "{\"flow\":{\"name\":\"f\",\"role\":\"entry\","
             "\"emits\":[\"go\"]}%s%s}", start_opts ? "," : "",
             start_opts ? start_opts : "");
    if (S_start.emit == NULL)
        S_start.emit = "go";
    tenv_fn(t, "start", cfg, step_handler, &S_start);
    tenv_fn(t, "a", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"go\"]}}",
            step_handler, &S_a);
    snprintf(cfg, sizeof(cfg), "{\"flow\":{\"name\":\"f\",\"subscribes\":"
             "[\"go\"]}%s%s}", b_opts ? "," : "", b_opts ? b_opts : "");
    tenv_fn(t, "b", cfg, step_handler, &S_b);
    tenv_fn(t, "j", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"step:a\","
            "\"step:b\"]}}", step_handler, &S_j);
    tenv_start(t);
}

Test(flows, a_run_dispatches_fans_out_joins_and_completes)
{
    tenv t;
    char run[NV_ID_MAX], *body = NULL;
    nv_error err = { 0 };
    json_t *r, *ev, *b;

    S_a.result = "{\"from\":\"a\"}";
    S_b.result = "{\"from\":\"b\"}";
    S_j.result = "\"done\"";
    diamond(&t, NULL, NULL, NULL);
    cr_assert_eq(nv_flow_start(t.e, "f", "{\"in\":1}", NULL, run, &body, &err),
                 NV_OK, "%s", err.msg);
    b = tparse(body);
    cr_assert_str_eq(jstr(b, "runId"), run);
    cr_assert_str_eq(jstr(b, "flowId"), run);
    cr_assert_str_eq(jstr(b, "step"), "start");
    cr_assert_str_eq(jstr(b, "queue"), "start");
    cr_assert(strstr(jstr(b, "id"), "__start") != NULL);
    json_decref(b);
    twait_run(&t, run, "completed");
    cr_assert_str_eq(S_start.input, "{\"in\":1}", "entry input = run input");
    b = json_loads(S_a.input, 0, NULL);
    cr_assert_eq(jint(json_object_get(b, "go"), "attempt"), 1, "%s",
                 S_a.input);
    json_decref(b);
    b = json_loads(S_j.input, 0, NULL);
    cr_assert_str_eq(jstr(json_object_get(b, "step:a"), "from"), "a");
    cr_assert_str_eq(jstr(json_object_get(b, "step:b"), "from"), "b");
    json_decref(b);
    cr_assert_eq(atomic_load(&S_j.calls), 1);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(json_array_get(json_object_get(r, "events"), 0),
                          "type"), "flow.start");
    cr_assert_eq(tcount_type(r, "flow.completed"), 1);
    cr_assert_eq(tcount_type(r, "step.completed"), 4);
    ev = tevent(r, "flow.completed", 0);
    cr_assert_str_eq(jstr(json_object_get(ev, "data"), "result"), "done");
    cr_assert_eq(json_array_size(json_object_get(json_object_get(ev, "data"),
                                                 "skipped")), 0);
    cr_assert_null(json_object_get(ev, "stepName"), "E-1");
    ev = tevent(r, "step.started", 1);
    cr_assert_not_null(json_object_get(ev, "stepId"));
    cr_assert_str_eq(jstr(r, "status"), "completed");
    cr_assert_eq(jint(r, "completedSteps"), 4);
    cr_assert_eq(jint(r, "stepCount"), 4);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(r,
                     "emittedEvents"), 0)), "go");
    json_decref(r);
    tenv_free(&t);
}

Test(flows, a_failed_entry_fails_the_run)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r, *d;

    S_start.fail_first = 1;
    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    twait_run(&t, run, "failed");
    r = trun(&t, run);
    d = json_object_get(tevent(r, "flow.failed", 0), "data");
    cr_assert_str_eq(jstr(d, "failedStep"), "start");
    cr_assert_str_eq(jstr(d, "error"), "boom");
    cr_assert_eq(tcount_type(r, "step.failed"), 1);
    cr_assert_eq(tcount_type(r, "emit"), 1, "kept for inspection");
    cr_assert_eq(atomic_load(&S_a.calls), 0, "F-6: not delivered");
    json_decref(r);
    tenv_free(&t);
}

Test(flows, a_step_that_never_becomes_eligible_is_skipped)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r, *sk;

    tenv_init(&t, NULL);
    S_start.emit = "go";
    tenv_fn(&t, "start", "{\"flow\":{\"name\":\"g\",\"role\":\"entry\","
            "\"emits\":[\"go\"]}}", step_handler, &S_start);
    tenv_fn(&t, "c", "{\"flow\":{\"name\":\"g\",\"subscribes\":[\"never\"]}}",
            step_handler, &S_c);
    tenv_start(&t);
    tstart(&t, "g", NULL, run);
    twait_run(&t, run, "completed");
    r = trun(&t, run);
    sk = json_object_get(json_object_get(tevent(r, "flow.completed", 0),
                                         "data"), "skipped");
    cr_assert_eq(json_array_size(sk), 1);
    cr_assert_str_eq(json_string_value(json_array_get(sk, 0)), "c");
    cr_assert_eq(atomic_load(&S_c.calls), 0);
    json_decref(r);
    tenv_free(&t);
}

Test(flows, emits_of_a_failed_attempt_are_never_delivered)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r, *d, *ids, *in;

    S_start.fail_first = 1;
    diamond(&t, NULL, "\"queue\":{\"defaultJobOptions\":{\"attempts\":2}}",
            NULL);
    tstart(&t, "f", NULL, run);
    twait_run(&t, run, "completed");
    cr_assert_eq(atomic_load(&S_a.calls), 1, "dispatched once");
    in = json_loads(S_a.input, 0, NULL);
    cr_assert_eq(jint(json_object_get(in, "go"), "attempt"), 2,
                 "payload of the completing attempt: %s", S_a.input);
    json_decref(in);
    r = trun(&t, run);
    cr_assert_eq(tcount_type(r, "emit"), 2);
    d = json_object_get(tevent(r, "step.retry", 0), "data");
    cr_assert_str_eq(jstr(d, "error"), "boom");
    cr_assert_eq(jint(d, "attempt"), 1);
    cr_assert_eq(jint(d, "maxAttempts"), 2);
    cr_assert_eq(jint(d, "nextAttempt"), 2);
    cr_assert_eq(jint(d, "delayMs"), 0);
    ids = json_object_get(json_object_get(tevent(r, "step.completed", 0),
                                          "data"), "emitIds");
    cr_assert_eq(json_array_size(ids), 1);
    cr_assert_str_eq(json_string_value(json_array_get(ids, 0)),
                     jstr(tevent(r, "emit", 1), "id"));
    json_decref(r);
    tenv_free(&t);
}

static int
a_blocked(void *ud)
{
    (void)ud;
    return atomic_load(&S_a.calls) >= 1;
}

Test(flows, cancel_removes_pending_jobs_and_signals_running_handlers)
{
    tenv t;
    char run[NV_ID_MAX], id[NV_JOB_ID_MAX], *j = NULL;
    nv_error err = { 0 };
    json_t *r, *d;

    S_a.block = 1;
    diamond(&t, NULL, NULL,
            "\"queue\":{\"defaultJobOptions\":{\"delay\":100000}}");
    tstart(&t, "f", NULL, run);
    cr_assert(twait(a_blocked, NULL));
    snprintf(id, sizeof(id), "%s__b", run);
    for (int i = 0; i < 20000 && nv_job_get(t.e, "b", id, &j, &err) != NV_OK;
         i++)
        tsleep_ms(1);
    cr_assert_not_null(j, "%s", err.msg);
    nv_free(j);
    j = NULL;
    cr_assert_eq(nv_run_cancel(t.e, "f", run, "enough", &err), NV_OK, "%s",
                 err.msg);
    cr_assert_eq(nv_job_get(t.e, "b", id, &j, NULL), NV_EJOB_NOT_FOUND,
                 "pending job removed");
    for (int i = 0; i < 20000 && atomic_load(&S_a.cancel_seen) == NULL; i++)
        tsleep_ms(1);
    cr_assert_str_eq(atomic_load(&S_a.cancel_seen), "canceled");
    cr_assert_neq(atomic_load(&S_a.late_emit_rc), NV_OK, "late emit refused");
    atomic_store(&release_all, 1);
    tenv_idle(&t);
    r = trun(&t, run);
    cr_assert_str_eq(jstr(r, "status"), "canceled");
    d = json_object_get(tevent(r, "flow.cancel", 0), "data");
    cr_assert_str_eq(jstr(d, "previousStatus"), "running");
    cr_assert_str_eq(jstr(d, "reason"), "enough");
    cr_assert_eq(tcount_type(r, "flow.cancel") + tcount_type(r,
                 "flow.completed") + tcount_type(r, "flow.failed"), 1);
    cr_assert_eq(tcount_type(r, "emit"), 1, "no emit after the cancel");
    cr_assert_eq(atomic_load(&S_j.calls), 0, "nothing dispatched after");
    json_decref(r);
    cr_assert_eq(nv_run_cancel(t.e, "f", run, NULL, &err),
                 NV_ERUN_NOT_RUNNING);
    cr_assert_eq(nv_run_cancel(t.e, "f", "0190a1b2-0000-7000-8000-"
                               "000000000000", NULL, &err),
                 NV_ERUN_NOT_FOUND);
    tenv_free(&t);
}

static int
a_done(void *ud)
{
    tenv *t = ud;
    char *j = NULL, id[NV_JOB_ID_MAX];
    json_t *o;
    int done;

    snprintf(id, sizeof(id), "%.40s__a", S_c.input);
    if (nv_job_get(t->e, "a", id, &j, NULL) != NV_OK)
        return 0;
    o = tparse(j);
    done = strcmp(jstr(o, "state"), "completed") == 0;
    json_decref(o);
    return done;
}

Test(flows, redelivery_after_a_completed_step_does_not_rerun_or_redispatch)
{
    tenv t;
    char run[NV_ID_MAX], id[NV_JOB_ID_MAX];
    nv_job copy;
    nv_queue *q;
    nv_error err = { 0 };
    json_t *r;
    int created = 0;

    S_b.block = 1;
    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    snprintf(S_c.input, sizeof(S_c.input), "%s", run);
    cr_assert(twait(a_done, &t));
    /* the same job delivered again, as after a crash before its ack */
    snprintf(id, sizeof(id), "%s__a", run);
    q = nv__engine_queue(t.e);
    memset(&copy, 0, sizeof(copy));
    cr_assert_eq(q->ops->get(q->self, "a", id, &copy, &err), NV_OK);
    cr_assert_eq(nv_job_remove(t.e, "a", id, NULL, &err), NV_OK, "%s",
                 err.msg);
    copy.state = NV_JOB_WAITING;
    copy.finished_on = 0;
    cr_assert_eq(q->ops->enqueue(q->self, &copy, T0, 0, NULL, &created, &err),
                 NV_OK, "%s", err.msg);
    nv_job_release(&copy);
    cr_assert(twait(a_done, &t));
    cr_assert_eq(atomic_load(&S_a.calls), 1, "F-4b: handler not re-run");
    atomic_store(&release_all, 1);
    twait_run(&t, run, "completed");
    cr_assert_eq(atomic_load(&S_j.calls), 1);
    r = trun(&t, run);
    cr_assert_eq(tcount_type(r, "step.started"), 4);
    cr_assert_eq(tcount_type(r, "step.completed"), 4);
    cr_assert_eq(tcount_type(r, "flow.completed"), 1);
    json_decref(r);
    tenv_free(&t);
}

Test(flows, redelivery_after_lease_expiry_reruns_without_the_lost_emits)
{
    tenv t;
    char run[NV_ID_MAX], id[NV_JOB_ID_MAX], sid[256];
    nv_job stolen;
    nv_queue *q;
    nv_stream *st;
    nv_event ev, out;
    nv_error err = { 0 };
    json_t *r, *ids, *sk;
    char *key;

    tenv_init(&t, NULL);
    S_start.emit = "go";
    tenv_fn(&t, "start", "{\"flow\":{\"name\":\"h\",\"role\":\"entry\","
            "\"emits\":[\"go\"]}}", step_handler, &S_start);
    tenv_fn(&t, "a", "{\"flow\":{\"name\":\"h\",\"subscribes\":[\"go\"],"
            "\"emits\":[\"x\"]},\"queue\":{\"defaultJobOptions\":"
            "{\"delay\":1000}}}", step_handler, &S_a);
    tenv_fn(&t, "c", "{\"flow\":{\"name\":\"h\",\"subscribes\":[\"x\"]}}",
            step_handler, &S_c);
    tenv_start(&t);
    tstart(&t, "h", NULL, run);
    snprintf(id, sizeof(id), "%s__a", run);
    q = nv__engine_queue(t.e);
    /* (up to 20 s: the entry step runs on a loaded machine, under ASan) */
    for (int i = 0;; i++) {
        char *j = NULL;

        if (nv_job_get(t.e, "a", id, &j, NULL) == NV_OK) {
            nv_free(j);
            break;
        }
        cr_assert_lt(i, 20000, "step a was never enqueued");
        tsleep_ms(1);
    }
    /* a dead instance took it, started it and emitted x, then vanished */
    memset(&stolen, 0, sizeof(stolen));
    cr_assert_eq(q->ops->reserve(q->self, "a", T0 + 1000, 30000, NULL,
                                 &stolen, NULL, &err), NV_OK, "%s", err.msg);
    st = nv__engine_stream(t.e);
    key = nv__engine_key(t.e, "stream", "flow:");
    snprintf(sid, sizeof(sid), "%s%s", key, run);
    nv_free(key);
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.run_id, sizeof(ev.run_id), "%s", run);
    snprintf(ev.flow_name, sizeof(ev.flow_name), "h");
    snprintf(ev.step_name, sizeof(ev.step_name), "a");
    snprintf(ev.step_id, sizeof(ev.step_id), "%s__a__attempt-1", run);
    ev.attempt = 1;
    snprintf(ev.type, sizeof(ev.type), "step.started");
    ev.data = (char *)"{\"jobId\":\"x\",\"name\":\"a\",\"queue\":\"a\"}";
    cr_assert_eq(st->ops->append(st->self, sid, &ev, T0 + 1000, -1, NULL,
                                 NULL, &err), NV_OK);
    snprintf(ev.type, sizeof(ev.type), "emit");
    ev.data = (char *)"{\"name\":\"x\",\"payload\":{}}";
    memset(&out, 0, sizeof(out));
    cr_assert_eq(st->ops->append(st->self, sid, &ev, T0 + 1000, -1, &out,
                                 NULL, &err), NV_OK);
    nv_job_release(&stolen);
    nv_test_clock_set(&t.clock, T0 + 1000 + 30001);
    tenv_advance(&t, 0);
    twait_run(&t, run, "completed");
    cr_assert_eq(atomic_load(&S_a.calls), 1, "runs again here");
    cr_assert_eq(atomic_load(&S_c.calls), 0, "lost emit not delivered");
    r = trun(&t, run);
    cr_assert(json_is_true(json_object_get(json_object_get(
        tevent(r, "step.started", 2), "data"), "redelivered")));
    ids = json_object_get(json_object_get(tevent(r, "step.completed", 1),
                                          "data"), "emitIds");
    cr_assert_eq(json_array_size(ids), 0);
    sk = json_object_get(json_object_get(tevent(r, "flow.completed", 0),
                                         "data"), "skipped");
    cr_assert_str_eq(json_string_value(json_array_get(sk, 0)), "c");
    cr_assert_eq(json_array_size(json_object_get(r, "emittedEvents")), 1);
    json_decref(r);
    nv_event_release(&out);
    tenv_free(&t);
}

Test(flows, two_last_steps_finishing_at_once_give_one_terminal_event)
{
    tenv t;

    S_a.pair = S_b.pair = 1;
    tenv_init(&t, NULL);
    S_start.emit = "go";
    tenv_fn(&t, "start", "{\"flow\":{\"name\":\"p\",\"role\":\"entry\","
            "\"emits\":[\"go\"]}}", step_handler, &S_start);
    tenv_fn(&t, "a", "{\"flow\":{\"name\":\"p\",\"subscribes\":[\"go\"]}}",
            step_handler, &S_a);
    tenv_fn(&t, "b", "{\"flow\":{\"name\":\"p\",\"subscribes\":[\"go\"]}}",
            step_handler, &S_b);
    tenv_start(&t);
    for (int i = 0; i < 20; i++) {
        char run[NV_ID_MAX];
        json_t *r;

        tstart(&t, "p", NULL, run);
        twait_run(&t, run, "completed");
        r = trun(&t, run);
        cr_assert_eq(tcount_type(r, "flow.completed"), 1, "run %d", i);
        cr_assert_eq(tcount_type(r, "flow.failed"), 0);
        json_decref(r);
    }
    tenv_free(&t);
}

Test(flows, restart_starts_a_new_run_with_the_same_input)
{
    tenv t;
    char run[NV_ID_MAX], *body = NULL;
    nv_error err = { 0 };
    json_t *b, *r, *d;

    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", "{\"k\":[1,2]}", run);
    twait_run(&t, run, "completed");
    cr_assert_eq(nv_run_restart(t.e, "f", run, &body, &err), NV_OK, "%s",
                 err.msg);
    b = tparse(body);
    cr_assert(json_is_true(json_object_get(b, "success")));
    cr_assert_str_eq(jstr(b, "oldRunId"), run);
    cr_assert_str_eq(jstr(b, "flowName"), "f");
    twait_run(&t, jstr(b, "newRunId"), "completed");
    r = trun(&t, jstr(b, "newRunId"));
    d = json_object_get(tevent(r, "flow.start", 0), "data");
    cr_assert_str_eq(jstr(d, "restartOf"), run);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(d, "input"),
                                                 "k")), 2);
    json_decref(r);
    json_decref(b);
    tenv_free(&t);
}

Test(flows, unknown_flow_is_refused_and_records_nothing)
{
    tenv t;
    char run[NV_ID_MAX], *body = NULL;
    nv_error err = { 0 };
    json_t *b;

    diamond(&t, NULL, NULL, NULL);
    cr_assert_eq(nv_flow_start(t.e, "nope", NULL, NULL, run, NULL, &err),
                 NV_EFLOW_NOT_FOUND);
    cr_assert_str_eq(nv_error_name(err.code), "flow_not_found");
    cr_assert_eq(nv_flow_start(t.e, "f", "{bad", NULL, run, NULL, &err),
                 NV_EINVAL);
    cr_assert_eq(nv_runs_list(t.e, "f", NULL, 0, 50, &body, &err), NV_OK);
    b = tparse(body);
    cr_assert_eq(jint(b, "total"), 0);
    json_decref(b);
    tenv_free(&t);
}

Test(flows, runs_are_listed_filtered_and_recent)
{
    tenv t;
    char r1[NV_ID_MAX], r2[NV_ID_MAX], *body = NULL;
    nv_error err = { 0 };
    json_t *b, *it;

    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, r1);
    twait_run(&t, r1, "completed");
    S_a.block = 1;
    tenv_advance(&t, 10);
    tstart(&t, "f", NULL, r2);
    cr_assert(twait(a_blocked, NULL));
    cr_assert_eq(nv_runs_list(t.e, "f", NULL, 0, 50, &body, &err), NV_OK,
                 "%s", err.msg);
    b = tparse(body);
    cr_assert_eq(jint(b, "total"), 2);
    it = json_array_get(json_object_get(b, "items"), 0);
    cr_assert_str_eq(jstr(it, "id"), r2, "newest first");
    cr_assert_str_eq(jstr(it, "status"), "running");
    cr_assert_str_eq(jstr(it, "createdAt"), jstr(it, "startedAt"));
    json_decref(b);
    cr_assert_eq(nv_runs_list(t.e, "f", "completed", 0, 50, &body, &err),
                 NV_OK);
    b = tparse(body);
    cr_assert_eq(jint(b, "total"), 1);
    it = json_array_get(json_object_get(b, "items"), 0);
    cr_assert_str_eq(jstr(it, "id"), r1);
    cr_assert_not_null(json_object_get(it, "completedAt"));
    json_decref(b);
    cr_assert_eq(nv_runs_list(t.e, "f", "bogus", 0, 50, &body, &err),
                 NV_EINVAL);
    cr_assert_eq(nv_runs_recent(t.e, 1, &body, &err), NV_OK);
    b = tparse(body);
    cr_assert_eq(jint(b, "count"), 1);
    it = json_array_get(json_object_get(b, "items"), 0);
    cr_assert_str_eq(jstr(it, "id"), r2);
    cr_assert_str_eq(jstr(it, "flowDisplayName"), "f");
    json_decref(b);
    /* clear history keeps the running run */
    cr_assert_eq(nv_flow_clear_history(t.e, "f", &body, &err), NV_OK);
    b = tparse(body);
    cr_assert_eq(jint(b, "deletedStreams"), 1);
    cr_assert_eq(jint(b, "keptRunning"), 1);
    cr_assert(json_is_false(json_object_get(b, "deletedIndex")));
    json_decref(b);
    cr_assert_eq(nv_run_get(t.e, "f", r1, NULL, NULL, 10, &body, &err),
                 NV_ERUN_NOT_FOUND);
    atomic_store(&release_all, 1);
    twait_run(&t, r2, "completed");
    tenv_free(&t);
}

Test(flows, run_events_are_filtered_by_type_after_and_limit)
{
    tenv t;
    char run[NV_ID_MAX], *body = NULL;
    nv_error err = { 0 };
    json_t *b, *evs;

    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    twait_run(&t, run, "completed");
    cr_assert_eq(nv_run_get(t.e, "f", run, NULL, "step.completed,emit", 2,
                            &body, &err), NV_OK, "%s", err.msg);
    b = tparse(body);
    evs = json_object_get(b, "events");
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert(json_is_true(json_object_get(b, "hasMore")));
    json_decref(b);
    cr_assert_eq(nv_run_get(t.e, "nope", run, NULL, NULL, 2, &body, &err),
                 NV_EFLOW_NOT_FOUND);
    cr_assert_eq(nv_run_get(t.e, "f", run, NULL, NULL, 0, &body, &err),
                 NV_EINVAL);
    tenv_free(&t);
}

Test(flows, a_failed_flow_job_can_be_retried_while_its_run_runs)
{
    tenv t;
    char run[NV_ID_MAX], id[NV_JOB_ID_MAX];
    nv_error err = { 0 };
    json_t *r, *d;

    S_a.fail_first = 1;
    S_b.block = 1;
    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    snprintf(id, sizeof(id), "%s__a", run);
    for (int i = 0; i < 5000; i++) {
        char *j = NULL;
        json_t *o;
        int failed = 0;

        if (nv_job_get(t.e, "a", id, &j, NULL) == NV_OK) {
            o = tparse(j);
            failed = strcmp(jstr(o, "state"), "failed") == 0;
            json_decref(o);
        }
        if (failed)
            break;
        tsleep_ms(1);
    }
    cr_assert_eq(nv_job_retry(t.e, "a", id, NULL, &err), NV_OK, "%s",
                 err.msg);
    atomic_store(&release_all, 1);
    twait_run(&t, run, "completed");
    r = trun(&t, run);
    d = json_object_get(tevent(r, "step.retry", 0), "data");
    cr_assert(json_is_true(json_object_get(d, "manual")));
    cr_assert_eq(jint(d, "delayMs"), 0);
    cr_assert_eq(atomic_load(&S_j.calls), 1);
    json_decref(r);
    cr_assert_eq(nv_job_retry(t.e, "start", "nope", NULL, &err),
                 NV_EJOB_NOT_FOUND);
    tenv_free(&t);
}

Test(flows, a_waiting_job_of_a_running_run_cannot_be_removed)
{
    tenv t;
    char run[NV_ID_MAX], id[NV_JOB_ID_MAX];
    nv_error err = { 0 };

    diamond(&t, NULL, "\"worker\":{\"autorun\":false}", NULL);
    tstart(&t, "f", NULL, run);
    snprintf(id, sizeof(id), "%s__start", run);
    cr_assert_eq(nv_job_remove(t.e, "start", id, NULL, &err), NV_ERUN_RUNNING);
    tenv_free(&t);
}

Test(flows, flows_json_lists_the_analyzed_flows)
{
    tenv t;
    char *body = NULL;
    json_t *b;

    diamond(&t, NULL, NULL, NULL);
    cr_assert_eq(nv_flows_json(t.e, &body, NULL), NV_OK);
    b = tparse(body);
    cr_assert_eq(json_array_size(b), 1);
    cr_assert_str_eq(jstr(json_array_get(b, 0), "id"), "f");
    json_decref(b);
    tenv_free(&t);
}

Test(flows, rebuild_recomputes_the_index_from_the_streams)
{
    tenv t;
    char run[NV_ID_MAX], *body = NULL;
    nv_error err = { 0 };
    json_t *b, *it;

    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    twait_run(&t, run, "completed");
    cr_assert_eq(nv_index_rebuild(t.e, NULL, &body, &err), NV_OK, "%s",
                 err.msg);
    b = tparse(body);
    cr_assert_eq(jint(b, "flows"), 1);
    cr_assert_eq(jint(b, "runs"), 1);
    json_decref(b);
    cr_assert_eq(nv_runs_list(t.e, "f", NULL, 0, 10, &body, &err), NV_OK);
    b = tparse(body);
    it = json_array_get(json_object_get(b, "items"), 0);
    cr_assert_str_eq(jstr(it, "status"), "completed");
    cr_assert_eq(jint(it, "completedSteps"), 4);
    json_decref(b);
    tenv_free(&t);
}

Test(flows, rebuild_finds_a_run_whose_index_entry_is_missing)
{
    tenv t;
    char run[NV_ID_MAX], *body = NULL, *key;
    nv_error err = { 0 };
    nv_store *st;
    json_t *b, *it;

    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    twait_run(&t, run, "completed");
    tenv_idle(&t);
    tenv_advance(&t, 0);        /* no index update of the run is pending */
    /* as after a crash between the run's flow.start and its index entry */
    st = nv__engine_store(t.e);
    key = nv__engine_key(t.e, "store", "flows:f");
    cr_assert_eq(st->ops->idx_del(st->self, key, run, NULL), NV_OK);
    nv__free(key);
    cr_assert_eq(nv_runs_list(t.e, "f", NULL, 0, 10, &body, &err), NV_OK);
    b = tparse(body);
    cr_assert_eq(jint(b, "total"), 0);
    json_decref(b);
    cr_assert_eq(nv_index_rebuild(t.e, "f", &body, &err), NV_OK, "%s",
                 err.msg);
    b = tparse(body);
    cr_assert_eq(jint(b, "runs"), 1);
    json_decref(b);
    cr_assert_eq(nv_runs_list(t.e, "f", NULL, 0, 10, &body, &err), NV_OK);
    b = tparse(body);
    cr_assert_eq(jint(b, "total"), 1);
    it = json_array_get(json_object_get(b, "items"), 0);
    cr_assert_str_eq(jstr(it, "id"), run);
    cr_assert_str_eq(jstr(it, "status"), "completed");
    cr_assert_eq(jint(it, "completedSteps"), 4);
    json_decref(b);
    tenv_free(&t);
}

Test(flows, a_job_of_a_finished_run_is_removed_unrun)
{
    tenv t;
    char run[NV_ID_MAX], id[NV_JOB_ID_MAX], *j = NULL;
    nv_queue *q;
    nv_job late;
    nv_error err = { 0 };
    json_t *r;
    int created = 0, before;

    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    twait_run(&t, run, "completed");
    r = trun(&t, run);
    before = (int)json_array_size(json_object_get(r, "events"));
    json_decref(r);
    /* a late delivery of step a, as from a dispatch racing the end */
    q = nv__engine_queue(t.e);
    memset(&late, 0, sizeof(late));
    snprintf(late.id, sizeof(late.id), "%s__late", run);
    snprintf(late.queue, sizeof(late.queue), "a");
    snprintf(late.name, sizeof(late.name), "a");
    snprintf(late.run_id, sizeof(late.run_id), "%s", run);
    snprintf(late.flow_name, sizeof(late.flow_name), "f");
    snprintf(late.step_name, sizeof(late.step_name), "a");
    late.data = (char *)"{}";
    late.opts = (char *)"{}";
    late.remove_on_complete = NV_KEEP_ALL;
    late.remove_on_fail = NV_KEEP_ALL;
    late.timestamp = T0;
    cr_assert_eq(q->ops->enqueue(q->self, &late, T0, 0, NULL, &created, &err),
                 NV_OK, "%s", err.msg);
    snprintf(id, sizeof(id), "%s__late", run);
    tenv_idle(&t);
    cr_assert_eq(nv_job_get(t.e, "a", id, &j, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(atomic_load(&S_a.calls), 1, "not run");
    r = trun(&t, run);
    cr_assert_eq((int)json_array_size(json_object_get(r, "events")), before,
                 "no events");
    json_decref(r);
    tenv_free(&t);
}

/* The run cache holds 4096 runs in 16 shards: starting many more runs than
 * that (entries evicted, table slots deleted and reused) and canceling
 * every third keeps every run's state right as the engine reads it. The
 * cache is the same code on every backend: memory only, for time. */
Test(flows, runs_beyond_the_run_cache_keep_their_state)
{
    enum { N = 5000 };
    static char ids[N][NV_ID_MAX];
    tenv t;
    nv_error err = { 0 };

    if (strcmp(nv_test_backend(), "memory") != 0)
        cr_skip_test("the run cache is backend-independent; memory only");
    tenv_init(&t, "{\"store\":{\"retention\":{\"maxRunsPerFlow\":0}}}");
    tenv_fn(&t, "s", "{\"flow\":{\"name\":\"m\",\"role\":\"entry\"}}",
            step_handler, &S_a);
    cr_assert_eq(nv_engine_start(t.e, NV_START_NO_WORKERS, &err), NV_OK,
                 "%s", err.msg);
    for (int i = 0; i < N; i++) {
        tstart(&t, "m", NULL, ids[i]);
        if (i % 3 == 0)
            cr_assert_eq(nv_run_cancel(t.e, "m", ids[i], NULL, &err), NV_OK,
                         "%s", err.msg);
    }
    for (int i = N - 1; i >= 0; i--) {
        char st[16] = "";

        if (i % 3 != 0) {
            cr_assert_eq(nv_run_wait(t.e, ids[i], 0, st, &err),
                         NV_EUNAVAILABLE, "run %d", i);
            cr_assert_eq(nv_run_cancel(t.e, "m", ids[i], NULL, &err), NV_OK,
                         "run %d: %s", i, err.msg);
        } else {
            cr_assert_eq(nv_run_cancel(t.e, "m", ids[i], NULL, &err),
                         NV_ERUN_NOT_RUNNING, "run %d", i);
        }
        cr_assert_eq(nv_run_wait(t.e, ids[i], 0, st, &err), NV_OK, "%s",
                     err.msg);
        cr_assert_str_eq(st, "canceled");
    }
    tenv_free(&t);
}

static atomic_int hold_release;

static int
hold_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)c;
    (void)ud;
    while (strstr(input, "hold") != NULL && !atomic_load(&hold_release))
        tsleep_ms(1);
    return NV_OK;
}

static int
run_exists(tenv *t, const char *run)
{
    char *j = NULL;
    int rc = nv_run_get(t->e, "r", run, NULL, NULL, 10, &j, NULL);

    nv_free(j);
    return rc == NV_OK;
}

struct gone_arg {
    tenv       *t;
    const char *run;
};

static int
run_gone(void *ud)
{
    struct gone_arg *g = ud;

    return !run_exists(g->t, g->run);
}

/* 'run' among the runs listed from flow r's index (API-7). */
static int
run_listed(tenv *t, const char *run)
{
    char *j = NULL;
    nv_error err = { 0 };
    int found;

    cr_assert_eq(nv_runs_list(t->e, "r", NULL, 0, 100, &j, &err), NV_OK,
                 "%s", err.msg);
    found = strstr(j, run) != NULL;
    nv_free(j);
    return found;
}

static int
run_unlisted(void *ud)
{
    struct gone_arg *g = ud;

    return !run_listed(g->t, g->run);
}

/* Whether 'run' (its stream gone) leaves the index within IX-3's 1 s:
 * a retention pass on redis deletes a batch's streams first, then their
 * index entries (a crash between the two leaves no stream unindexed), so
 * the entry may outlive the stream by a moment. */
static int
unlisted_soon(tenv *t, const char *run)
{
    struct gone_arg g = { t, run };
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!twait(run_unlisted, &g))
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0.tv_sec) * 1000 +
           (t1.tv_nsec - t0.tv_nsec) / 1000000 <= 1000;
}

/* IX-5: after a run ends, the finished runs beyond the newest
 * maxRunsPerFlow (by start time) are removed, oldest first; a running run
 * is never removed, and goes once it has ended. (Passes after endings run
 * at most every 100 ms: the test waits that long between them.) */
Test(flows, retention_removes_finished_runs_beyond_the_newest_limit)
{
    tenv t;
    char a[NV_ID_MAX], b[NV_ID_MAX], c[NV_ID_MAX], d[NV_ID_MAX];
    nv_error err = { 0 };

    tenv_init(&t, "{\"store\":{\"retention\":{\"maxRunsPerFlow\":2}}}");
    tenv_fn(&t, "s", "{\"flow\":{\"name\":\"r\",\"role\":\"entry\"}}",
            hold_handler, NULL);
    tenv_start(&t);
    cr_assert_eq(nv_flow_start(t.e, "r", "{\"hold\":1}", NULL, a, NULL, &err),
                 NV_OK, "%s", err.msg);
    tenv_advance(&t, 10);
    tstart(&t, "r", NULL, b);
    twait_run(&t, b, "completed");
    tenv_advance(&t, 10);
    tstart(&t, "r", NULL, c);
    twait_run(&t, c, "completed");
    tenv_advance(&t, 10);
    tsleep_ms(120);
    tstart(&t, "r", NULL, d);
    twait_run(&t, d, "completed");
    /* newest two: d, c; beyond them: b (finished: removed), a (running) */
    {
        struct gone_arg g = { &t, b };

        cr_assert(twait(run_gone, &g), "b removed");
    }
    cr_assert(run_exists(&t, a) && run_exists(&t, c) && run_exists(&t, d));
    /* its index entry with it, and no queued write brings it back (checked
     * again at the end) */
    cr_assert(unlisted_soon(&t, b), "b left the index within 1 s");
    cr_assert(run_listed(&t, c) && run_listed(&t, d));
    tsleep_ms(120);
    atomic_store(&hold_release, 1);
    {
        struct gone_arg g = { &t, a };

        cr_assert(twait(run_gone, &g), "a removed once ended");
    }
    cr_assert(run_exists(&t, c) && run_exists(&t, d));
    cr_assert(unlisted_soon(&t, a), "a left the index within 1 s");
    cr_assert(!run_listed(&t, b));
    tenv_free(&t);
}

/* A run removed while its final index entry is still queued (redis: the
 * entries are written in batches) stays out of the index once the queue
 * is written: the removal drops what was queued for it. */
struct acked_arg {
    tenv       *t;
    const char *run;
};

/* The entry job of run 'run' (step s) is no longer active. */
static int
job_acked(void *ud)
{
    struct acked_arg *g = ud;
    char id[2 * NV_ID_MAX], *j = NULL;
    int done;

    snprintf(id, sizeof(id), "%s__s", g->run);
    if (nv_job_get(g->t->e, "s", id, &j, NULL) != NV_OK)
        return 1;                       /* removed on completion */
    done = strstr(j, "\"state\":\"active\"") == NULL;
    nv_free(j);
    return done;
}

Test(flows, a_removed_run_is_not_written_back_to_the_index)
{
    tenv t;
    char a[NV_ID_MAX], b[NV_ID_MAX], st[16];
    nv_error err = { 0 };

    tenv_init(&t, "{\"store\":{\"retention\":{\"maxRunsPerFlow\":0}}}");
    tenv_fn(&t, "s", "{\"flow\":{\"name\":\"r\",\"role\":\"entry\"}}",
            hold_handler, NULL);
    tenv_start(&t);
    cr_assert_eq(nv_flow_start(t.e, "r", "{\"hold\":1}", NULL, a, NULL, &err),
                 NV_OK, "%s", err.msg);
    tstart(&t, "r", NULL, b);
    cr_assert_eq(nv_run_wait(t.e, b, 5000, st, &err), NV_OK, "%s", err.msg);
    /* a ends after the last start: nothing has read (and written) the
     * index since its final entry was made */
    atomic_store(&hold_release, 1);
    cr_assert_eq(nv_run_wait(t.e, a, 5000, st, &err), NV_OK, "%s", err.msg);
    cr_assert_str_eq(st, "completed");
    {
        /* its job acknowledged: the end check (and its index entry) is
         * done (F-5), not only the terminal event appended */
        struct acked_arg g = { &t, a };

        cr_assert(twait(job_acked, &g));
    }
    cr_assert_eq(nv__run_remove(t.e, "r", a), NV_OK);
    nv__index_sync(t.e);
    cr_assert(!run_listed(&t, a), "the removed run came back");
    cr_assert(run_listed(&t, b));
    tenv_free(&t);
}

/* ---- live subscribers (SSE-4) ---- */

static char live_log[16384];
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;

static void
live_cb(void *ud, const char *json)
{
    (void)ud;
    pthread_mutex_lock(&live_mu);
    if (strlen(live_log) + strlen(json) + 2 < sizeof(live_log)) {
        strcat(live_log, json);
        strcat(live_log, "\n");
    }
    pthread_mutex_unlock(&live_mu);
}

/* The live log holds a step.started and a flow.completed of run 'ud'. */
static int
live_has_run(void *ud)
{
    char a[NV_ID_MAX + 64], b[NV_ID_MAX + 64];
    int r;

    snprintf(a, sizeof(a), "\"type\":\"step.started\",\"runId\":\"%s\"",
             (const char *)ud);
    snprintf(b, sizeof(b), "\"type\":\"flow.completed\",\"runId\":\"%s\"",
             (const char *)ud);
    pthread_mutex_lock(&live_mu);
    r = strstr(live_log, a) != NULL && strstr(live_log, b) != NULL;
    pthread_mutex_unlock(&live_mu);
    return r;
}

/* On a shared stream the engine listens to flow events only while it has
 * no live subscriber: one that comes later, or again after the last one
 * left, gets every event of a run. */
Test(flows, a_live_subscriber_gets_step_events_also_after_the_last_one_left)
{
    tenv t;
    nv_live *l = NULL;
    char run[NV_ID_MAX];

    S_a.result = S_b.result = S_j.result = NULL;
    diamond(&t, NULL, NULL, NULL);
    tstart(&t, "f", NULL, run);
    twait_run(&t, run, "completed");
    for (int round = 0; round < 2; round++) {
        pthread_mutex_lock(&live_mu);
        live_log[0] = '\0';
        pthread_mutex_unlock(&live_mu);
        cr_assert_eq(nv_live_subscribe(t.e, live_cb, NULL, &l, NULL), NV_OK);
        tstart(&t, "f", NULL, run);
        twait_run(&t, run, "completed");
        cr_assert(twait(live_has_run, run), "round %d: %s", round, live_log);
        nv_live_unsubscribe(t.e, l);
    }
    tenv_free(&t);
}

/* ---- Bulk start (nv_flow_start_many) ---- */

static long long
runs_total(tenv *t, const char *status)
{
    nv_error err = { 0 };
    char *body = NULL;
    json_t *b;
    long long n;

    cr_assert_eq(nv_runs_list(t->e, "f", status, 0, 100, &body, &err), NV_OK,
                 "%s", err.msg);
    b = tparse(body);
    n = jint(b, "total");
    json_decref(b);
    return n;
}

Test(flows, start_many_starts_every_run_with_its_input)
{
    enum { N = 150 };    /* more than one round trip's 64 */
    static char ids[N][NV_ID_MAX];
    static char text[N][32];
    const char *inputs[N];
    nv_error err = { 0 };
    size_t started = 0;
    tenv t;

    diamond(&t, NULL, NULL, NULL);
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof(text[i]), "{\"n\":%d}", i);
        inputs[i] = i == 7 ? NULL : text[i];
    }
    cr_assert_eq(nv_flow_start_many(t.e, "f", inputs, N, ids, &started, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(started, N);
    for (int i = 0; i < N; i++) {
        json_t *r, *st;

        cr_assert_eq(strlen(ids[i]), NV_ID_MAX - 1, "run %d: '%s'", i, ids[i]);
        for (int k = 0; k < i; k++)
            cr_assert_str_neq(ids[i], ids[k]);
        twait_run(&t, ids[i], "completed");
        r = trun(&t, ids[i]);
        cr_assert_eq(tcount_type(r, "flow.start"), 1);
        cr_assert_eq(tcount_type(r, "step.completed"), 4);
        cr_assert_eq(tcount_type(r, "flow.completed"), 1);
        st = json_object_get(tevent(r, "flow.start", 0), "data");
        st = json_object_get(st, "input");
        if (i == 7)
            cr_assert_eq(json_object_size(st), 0, "NULL input: {}");
        else
            cr_assert_eq(jint(st, "n"), i);
        json_decref(r);
    }
    cr_assert_eq(atomic_load(&S_start.calls), N);
    cr_assert_eq(atomic_load(&S_j.calls), N);
    cr_assert_eq(runs_total(&t, "completed"), N);
    tenv_free(&t);
}

Test(flows, start_many_checks_every_input_first_and_records_nothing)
{
    static char ids[3][NV_ID_MAX];
    const char *bad[3] = { "{}", "{\"a\":", "{}" };
    nv_error err = { 0 };
    size_t started = 9;
    tenv t;

    diamond(&t, NULL, NULL, NULL);
    cr_assert_eq(nv_flow_start_many(t.e, "f", bad, 3, ids, &started, &err),
                 NV_EINVAL);
    cr_assert(strstr(err.msg, "inputs[1]") != NULL, "%s", err.msg);
    cr_assert_eq(started, 0);
    cr_assert_eq(nv_flow_start_many(t.e, "nope", bad, 3, ids, &started,
                                    &err), NV_EFLOW_NOT_FOUND);
    cr_assert_eq(nv_flow_start_many(t.e, "f", bad, 0, ids, &started, &err),
                 NV_OK, "n = 0 starts nothing");
    cr_assert_eq(nv_flow_start_many(t.e, "f", NULL, 3, ids, &started, &err),
                 NV_EINVAL);
    tsleep_ms(200);
    cr_assert_eq(runs_total(&t, NULL), 0);
    cr_assert_eq(atomic_load(&S_start.calls), 0);
    tenv_free(&t);
}

Test(flows, start_many_needs_room_for_all_its_entry_jobs)
{
    static char ids[4][NV_ID_MAX];
    const char *in[4] = { NULL, NULL, NULL, NULL };
    nv_error err = { 0 };
    size_t started = 0;
    char *q = NULL;
    json_t *j;
    tenv t;

    diamond(&t, "{\"queue\":{\"maxQueueSize\":3}}",
            "\"worker\":{\"autorun\":false}", NULL);
    cr_assert_eq(nv_flow_start_many(t.e, "f", in, 4, ids, &started, &err),
                 NV_EQUEUE_FULL);
    cr_assert_eq(started, 0);
    cr_assert_eq(runs_total(&t, NULL), 0, "nothing recorded");
    cr_assert_eq(nv_flow_start_many(t.e, "f", in, 3, ids, &started, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(started, 3);
    cr_assert_eq(runs_total(&t, "running"), 3);
    cr_assert_eq(nv_queue_json(t.e, "start", &q, &err), NV_OK, "%s", err.msg);
    j = tparse(q);
    cr_assert_eq(jint(json_object_get(j, "counts"), "paused"), 3,
                 "the entry jobs wait (autorun off: paused)");
    json_decref(j);
    tenv_free(&t);
}
