/*
 * Plain jobs through the engine (§3, §4): every job option, pause/resume,
 * manual retry and removal, job events, counts, the limiter, lease expiry
 * and redelivery, graceful stop. Runs once per backend; time comes from a
 * fake clock advanced by the tests.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "engine_test.h"
#include "core/engine.h"

static atomic_int calls;
static atomic_int fails_left;
static char order[64];
static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static char seen_input[256];
static const char *_Atomic seen_cancel;
static atomic_int release_handler;

static int
ok_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)ud;
    atomic_fetch_add(&calls, 1);
    snprintf(seen_input, sizeof(seen_input), "%s", input);
    nv_ctx_result(c, "{\"ok\":1}", NULL);
    return NV_OK;
}

static int
fail_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)input;
    (void)ud;
    atomic_fetch_add(&calls, 1);
    if (atomic_load(&fails_left) == 0)
        return NV_OK;
    if (atomic_load(&fails_left) > 0)
        atomic_fetch_sub(&fails_left, 1);
    nv_ctx_fail(c, "boom", "at line 1", 0);
    return -1;
}

static int
noretry_once_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)input;
    (void)ud;
    int n = atomic_fetch_add(&calls, 1);

    nv_ctx_fail(c, n == 0 ? "first" : "second", NULL,
                n == 0 ? NV_FAIL_NO_RETRY : 0);
    return -1;
}

static int
order_handler(nv_ctx *c, const char *input, void *ud)
{
    json_t *j = json_loads(input, 0, NULL);

    (void)c;
    (void)ud;
    pthread_mutex_lock(&order_mu);
    strncat(order, json_string_value(json_object_get(j, "k")),
            sizeof(order) - strlen(order) - 1);
    pthread_mutex_unlock(&order_mu);
    json_decref(j);
    atomic_fetch_add(&calls, 1);
    return NV_OK;
}

/* Runs until its cancellation check is raised, then waits for release. */
static int
blocking_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)input;
    (void)ud;
    atomic_fetch_add(&calls, 1);
    while (nv_ctx_canceled(c) == NULL && !atomic_load(&release_handler))
        tsleep_ms(1);
    atomic_store(&seen_cancel, nv_ctx_canceled(c));
    while (!atomic_load(&release_handler))
        tsleep_ms(1);
    return NV_OK;
}

static int
calls_at_least(void *ud)
{
    return atomic_load(&calls) >= *(int *)ud;
}

static void
setup(tenv *t, const char *extra, const char *fncfg, nv_handler h)
{
    tenv_init(t, extra);
    tenv_fn(t, "work", fncfg, h, NULL);
    tenv_start(t);
}

Test(jobs, enqueued_job_completes_with_the_handler_result)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;

    setup(&t, NULL, "{\"worker\":{\"concurrency\":1}}", ok_handler);
    tenqueue(&t, "work", "{\"a\": [1, \"x\"]}", NULL, id);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "completed");
    cr_assert_eq(jint(j, "attemptsMade"), 1);
    cr_assert_eq(jint(j, "finishedOn"), T0);
    cr_assert_eq(jint(json_object_get(j, "returnvalue"), "ok"), 1);
    cr_assert_str_eq(seen_input, "{\"a\": [1, \"x\"]}", "Q-9: data exactly");
    cr_assert_null(json_object_get(j, "failedReason"));
    cr_assert_null(json_object_get(j, "runId"));
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, generated_job_ids_have_the_documented_form)
{
    tenv t;
    char id[NV_JOB_ID_MAX];

    setup(&t, NULL, NULL, ok_handler);
    tenqueue(&t, "work", NULL, NULL, id);
    cr_assert(strncmp(id, "1700000000000-", 14) == 0, "%s", id);
    cr_assert_eq(strlen(id), 14 + 9);
    tenv_free(&t);
}

Test(jobs, failing_job_retries_with_fixed_backoff_then_fails)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;
    int one = 1, two = 2, three = 3;

    atomic_store(&fails_left, -1);
    setup(&t, NULL, NULL, fail_handler);
    tenqueue(&t, "work", NULL, "{\"attempts\":3,\"backoff\":1000}", id);
    cr_assert(twait(calls_at_least, &one));
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "delayed");
    cr_assert_eq(jint(j, "attemptsMade"), 1);
    cr_assert_eq(jint(j, "delayUntil"), T0 + 1000);
    cr_assert_str_eq(jstr(j, "failedReason"), "boom");
    json_decref(j);
    tenv_advance(&t, 999);
    tenv_idle(&t);
    cr_assert_eq(atomic_load(&calls), 1, "Q-5: never earlier");
    tenv_advance(&t, 1);
    cr_assert(twait(calls_at_least, &two));
    tenv_idle(&t);
    tenv_advance(&t, 1000);
    cr_assert(twait(calls_at_least, &three));
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "failed");
    cr_assert_eq(jint(j, "attemptsMade"), 3);
    cr_assert_str_eq(jstr(j, "failedReason"), "boom");
    cr_assert_eq(jint(j, "finishedOn"), T0 + 2000);
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, exponential_backoff_doubles_the_wait)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;
    int two = 2;

    atomic_store(&fails_left, -1);
    setup(&t, NULL, NULL, fail_handler);
    tenqueue(&t, "work", NULL, "{\"attempts\":3,\"backoff\":{\"type\":"
             "\"exponential\",\"delay\":1000}}", id);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_eq(jint(j, "delayUntil"), T0 + 1000);
    json_decref(j);
    tenv_advance(&t, 1000);
    cr_assert(twait(calls_at_least, &two));
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_eq(jint(j, "delayUntil"), T0 + 1000 + 2000);
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, jitter_shortens_the_wait_within_bounds)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;

    atomic_store(&fails_left, -1);
    setup(&t, NULL, NULL, fail_handler);
    tenqueue(&t, "work", NULL, "{\"attempts\":2,\"backoff\":{\"type\":"
             "\"fixed\",\"delay\":1000,\"jitter\":1}}", id);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_geq(jint(j, "delayUntil"), T0 + 1);
    cr_assert_leq(jint(j, "delayUntil"), T0 + 1000);
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, delayed_job_runs_at_its_time_and_not_before)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;
    int one = 1;

    setup(&t, NULL, NULL, ok_handler);
    tenqueue(&t, "work", NULL, "{\"delay\":5000}", id);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "delayed");
    cr_assert_eq(jint(j, "delayUntil"), T0 + 5000);
    json_decref(j);
    tenv_advance(&t, 4999);
    tenv_idle(&t);
    cr_assert_eq(atomic_load(&calls), 0);
    tenv_advance(&t, 1);
    cr_assert(twait(calls_at_least, &one));
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "completed");
    json_decref(j);
    tenv_free(&t);
}

static void
paused_setup(tenv *t, nv_handler h)
{
    setup(t, NULL, "{\"worker\":{\"concurrency\":1,\"autorun\":false}}", h);
}

Test(jobs, lower_priority_value_runs_first)
{
    tenv t;
    int three = 3;

    paused_setup(&t, order_handler);
    tenqueue(&t, "work", "{\"k\":\"A\"}", "{\"priority\":5}", NULL);
    tenqueue(&t, "work", "{\"k\":\"B\"}", "{\"priority\":1}", NULL);
    tenqueue(&t, "work", "{\"k\":\"C\"}", "{\"priority\":3}", NULL);
    cr_assert_eq(nv_queue_resume(t.e, "work", NULL, NULL), NV_OK);
    cr_assert(twait(calls_at_least, &three));
    cr_assert_str_eq(order, "BCA");
    tenv_free(&t);
}

Test(jobs, lifo_job_goes_ahead_of_its_priority)
{
    tenv t;
    int three = 3;

    paused_setup(&t, order_handler);
    tenqueue(&t, "work", "{\"k\":\"A\"}", NULL, NULL);
    tenqueue(&t, "work", "{\"k\":\"B\"}", NULL, NULL);
    tenqueue(&t, "work", "{\"k\":\"C\"}", "{\"lifo\":true}", NULL);
    cr_assert_eq(nv_queue_resume(t.e, "work", NULL, NULL), NV_OK);
    cr_assert(twait(calls_at_least, &three));
    cr_assert_str_eq(order, "CAB");
    tenv_free(&t);
}

Test(jobs, paused_queue_holds_jobs_and_reports_them_paused)
{
    tenv t;
    char id[NV_JOB_ID_MAX], *q = NULL, *body = NULL;
    json_t *j, *b;
    int one = 1;

    setup(&t, NULL, NULL, ok_handler);
    cr_assert_eq(nv_queue_pause(t.e, "work", &body, NULL), NV_OK);
    b = tparse(body);
    cr_assert(json_is_true(json_object_get(b, "isPaused")));
    json_decref(b);
    cr_assert_eq(nv_queue_enqueue(t.e, "work", NULL, NULL, NULL, &body, NULL),
                 NV_OK);
    b = tparse(body);
    cr_assert_str_eq(jstr(b, "state"), "paused", "CL-1");
    snprintf(id, sizeof(id), "%s", jstr(b, "id"));
    json_decref(b);
    tsleep_ms(50);
    cr_assert_eq(atomic_load(&calls), 0);
    cr_assert_eq(nv_queue_json(t.e, "work", &q, NULL), NV_OK);
    j = tparse(q);
    cr_assert(json_is_true(json_object_get(j, "isPaused")));
    cr_assert_eq(jint(json_object_get(j, "counts"), "paused"), 1);
    cr_assert_eq(jint(json_object_get(j, "counts"), "waiting"), 0);
    cr_assert_str_eq(jstr(json_object_get(j, "function"), "id"), "work");
    cr_assert_str_eq(jstr(json_object_get(j, "function"), "runtime"), "c");
    json_decref(j);
    cr_assert_eq(nv_queue_resume(t.e, "work", NULL, NULL), NV_OK);
    cr_assert(twait(calls_at_least, &one));
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "completed");
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, attempt_past_its_timeout_fails_and_sees_the_check)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;
    int one = 1;

    setup(&t, NULL, NULL, blocking_handler);
    tenqueue(&t, "work", NULL, "{\"timeout\":1000}", id);
    cr_assert(twait(calls_at_least, &one));
    tenv_advance(&t, 999);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "active");
    json_decref(j);
    tenv_advance(&t, 1);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "failed", "outcome fixed at deadline");
    cr_assert_str_eq(jstr(j, "failedReason"), "timed out after 1000 ms");
    json_decref(j);
    for (int i = 0; i < 5000 && atomic_load(&seen_cancel) == NULL; i++)
        tsleep_ms(1);
    cr_assert_str_eq(atomic_load(&seen_cancel), "timeout");
    atomic_store(&release_handler, 1);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "failed", "late outcome discarded");
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, job_id_deduplicates_while_the_job_exists)
{
    tenv t;
    char *body = NULL;
    json_t *b;

    paused_setup(&t, ok_handler);
    cr_assert_eq(nv_queue_enqueue(t.e, "work", NULL, "{\"v\":1}",
                                  "{\"jobId\":\"once\"}", &body, NULL), NV_OK);
    b = tparse(body);
    cr_assert(json_is_true(json_object_get(b, "created")));
    json_decref(b);
    cr_assert_eq(nv_queue_enqueue(t.e, "work", NULL, "{\"v\":2}",
                                  "{\"jobId\":\"once\"}", &body, NULL), NV_OK);
    b = tparse(body);
    cr_assert(json_is_false(json_object_get(b, "created")));
    cr_assert_str_eq(jstr(b, "id"), "once");
    json_decref(b);
    b = tjob(&t, "work", "once");
    cr_assert_eq(jint(json_object_get(b, "data"), "v"), 1, "unchanged");
    json_decref(b);
    tenv_free(&t);
}

Test(jobs, remove_on_complete_true_removes_the_job)
{
    tenv t;
    char id[NV_JOB_ID_MAX], *j = NULL;
    nv_error err = { 0 };

    setup(&t, NULL, NULL, ok_handler);
    tenqueue(&t, "work", NULL, "{\"removeOnComplete\":true}", id);
    tenv_idle(&t);
    cr_assert_eq(nv_job_get(t.e, "work", id, &j, &err), NV_EJOB_NOT_FOUND);
    tenv_free(&t);
}

Test(jobs, remove_on_fail_keeps_only_the_newest_failed_jobs)
{
    tenv t;
    char a[NV_JOB_ID_MAX], b[NV_JOB_ID_MAX], *j = NULL;

    atomic_store(&fails_left, -1);
    setup(&t, NULL, "{\"worker\":{\"concurrency\":1}}", fail_handler);
    tenqueue(&t, "work", NULL, "{\"removeOnFail\":1}", a);
    tenv_idle(&t);
    tenv_advance(&t, 10);
    tenqueue(&t, "work", NULL, "{\"removeOnFail\":1}", b);
    tenv_idle(&t);
    cr_assert_eq(nv_job_get(t.e, "work", a, &j, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(nv_job_get(t.e, "work", b, &j, NULL), NV_OK);
    nv_free(j);
    tenv_free(&t);
}

Test(jobs, max_queue_size_refuses_enqueues_and_records_nothing)
{
    tenv t;
    nv_error err = { 0 };
    char *q = NULL;
    json_t *j;

    tenv_init(&t, "{\"queue\":{\"maxQueueSize\":2}}");
    tenv_fn(&t, "work", "{\"worker\":{\"autorun\":false}}", ok_handler, NULL);
    tenv_start(&t);
    tenqueue(&t, "work", NULL, NULL, NULL);
    tenqueue(&t, "work", NULL, NULL, NULL);
    cr_assert_eq(nv_queue_enqueue(t.e, "work", NULL, NULL, NULL, NULL, &err),
                 NV_EQUEUE_FULL);
    cr_assert_str_eq(nv_error_name(err.code), "queue_full");
    cr_assert_eq(nv_queue_json(t.e, "work", &q, NULL), NV_OK);
    j = tparse(q);
    cr_assert_eq(jint(json_object_get(j, "counts"), "paused"), 2);
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, manual_retry_gives_exactly_one_more_attempt)
{
    tenv t;
    char id[NV_JOB_ID_MAX], *body = NULL;
    nv_error err = { 0 };
    json_t *j;
    int two = 2;

    setup(&t, NULL, NULL, noretry_once_handler);
    tenqueue(&t, "work", NULL, "{\"attempts\":3}", id);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "failed", "W-6: no retry");
    cr_assert_eq(jint(j, "attemptsMade"), 1);
    json_decref(j);
    cr_assert_eq(nv_job_retry(t.e, "work", id, &body, &err), NV_OK, "%s",
                 err.msg);
    j = tparse(body);
    cr_assert_str_eq(jstr(j, "state"), "waiting");
    json_decref(j);
    cr_assert(twait(calls_at_least, &two));
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "failed", "no automatic retry");
    cr_assert_eq(jint(j, "attemptsMade"), 2);
    cr_assert_str_eq(jstr(j, "failedReason"), "second");
    json_decref(j);
    cr_assert_eq(atomic_load(&calls), 2);
    tenv_free(&t);
}

Test(jobs, retry_of_a_job_that_did_not_fail_is_refused)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    nv_error err = { 0 };

    setup(&t, NULL, NULL, ok_handler);
    tenqueue(&t, "work", NULL, NULL, id);
    tenv_idle(&t);
    cr_assert_eq(nv_job_retry(t.e, "work", id, NULL, &err),
                 NV_EJOB_NOT_FAILED);
    cr_assert_eq(nv_job_retry(t.e, "work", "nope", NULL, &err),
                 NV_EJOB_NOT_FOUND);
    tenv_free(&t);
}

Test(jobs, remove_deletes_a_waiting_job_and_refuses_an_active_one)
{
    tenv t;
    char a[NV_JOB_ID_MAX], b[NV_JOB_ID_MAX], *body = NULL, *j = NULL;
    nv_error err = { 0 };
    json_t *r;
    int one = 1;

    setup(&t, NULL, "{\"worker\":{\"concurrency\":1}}", blocking_handler);
    tenqueue(&t, "work", NULL, NULL, a);
    cr_assert(twait(calls_at_least, &one));
    tenqueue(&t, "work", NULL, NULL, b);
    cr_assert_eq(nv_job_remove(t.e, "work", a, NULL, &err), NV_EJOB_ACTIVE);
    cr_assert_eq(nv_job_remove(t.e, "work", b, &body, &err), NV_OK, "%s",
                 err.msg);
    r = tparse(body);
    cr_assert(json_is_true(json_object_get(r, "success")));
    cr_assert_str_eq(jstr(r, "id"), b);
    json_decref(r);
    cr_assert_eq(nv_job_get(t.e, "work", b, &j, NULL), NV_EJOB_NOT_FOUND);
    atomic_store(&release_handler, 1);
    tenv_idle(&t);
    tenv_free(&t);
}

static char live_log[16384];
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;

static void
live_cb(void *ud, const char *json)
{
    (void)ud;
    pthread_mutex_lock(&live_mu);
    strncat(live_log, json, sizeof(live_log) - strlen(live_log) - 2);
    strcat(live_log, "\n");
    pthread_mutex_unlock(&live_mu);
}

static int
live_has(void *ud)
{
    int r;

    pthread_mutex_lock(&live_mu);
    r = strstr(live_log, ud) != NULL;
    pthread_mutex_unlock(&live_mu);
    return r;
}

Test(jobs, job_transitions_publish_live_job_events_with_counts)
{
    tenv t;
    nv_live *l = NULL;
    char id[NV_JOB_ID_MAX];

    setup(&t, NULL, NULL, ok_handler);
    cr_assert_eq(nv_live_subscribe(t.e, live_cb, NULL, &l, NULL), NV_OK);
    tenqueue(&t, "work", NULL, NULL, id);
    tenv_idle(&t);
    cr_assert(twait(live_has, (void *)"\"type\":\"completed\""), "%s", live_log);
    cr_assert(live_has((void *)"\"type\":\"waiting\""), "%s", live_log);
    cr_assert(live_has((void *)"\"type\":\"active\""), "%s", live_log);
    cr_assert(live_has((void *)"\"kind\":\"job\""));
    cr_assert(live_has((void *)"\"counts\":{"));
    cr_assert_eq(nv_queue_pause(t.e, "work", NULL, NULL), NV_OK);
    cr_assert(twait(live_has, (void *)"\"type\":\"paused\""), "%s", live_log);
    nv_live_unsubscribe(t.e, l);
    tenv_free(&t);
}

Test(jobs, listing_filters_by_state_newest_first)
{
    tenv t;
    char *body = NULL;
    nv_error err = { 0 };
    json_t *b;

    paused_setup(&t, ok_handler);
    tenqueue(&t, "work", "{\"n\":1}", NULL, NULL);
    tenv_advance(&t, 5);
    tenqueue(&t, "work", "{\"n\":2}", NULL, NULL);
    tenqueue(&t, "work", "{\"n\":3}", "{\"delay\":100000}", NULL);
    cr_assert_eq(nv_jobs_list(t.e, "work", "paused", 0, 1, &body, &err),
                 NV_OK, "%s", err.msg);
    b = tparse(body);
    cr_assert_eq(jint(b, "total"), 2);
    cr_assert_eq(jint(b, "count"), 1);
    cr_assert(json_is_true(json_object_get(b, "hasMore")));
    cr_assert_eq(jint(json_object_get(json_array_get(json_object_get(b,
                 "jobs"), 0), "data"), "n"), 2);
    json_decref(b);
    cr_assert_eq(nv_jobs_list(t.e, "work", "bogus", 0, 10, &body, &err),
                 NV_EINVAL);
    cr_assert_eq(nv_jobs_list(t.e, "work", NULL, 0, 0, &body, &err),
                 NV_EINVAL);
    tenv_free(&t);
}

static atomic_int limited_calls;

static int
limited_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)c;
    (void)input;
    (void)ud;
    atomic_fetch_add(&limited_calls, 1);
    return NV_OK;
}

static int
limited_at_least(void *ud)
{
    return atomic_load(&limited_calls) >= *(int *)ud;
}

Test(jobs, limiter_holds_jobs_back_until_the_window_allows)
{
    tenv t;
    int two = 2, four = 4;

    setup(&t, NULL, "{\"queue\":{\"limiter\":{\"max\":2,\"duration\":1000}}}",
          limited_handler);
    for (int i = 0; i < 5; i++)
        tenqueue(&t, "work", NULL, NULL, NULL);
    cr_assert(twait(limited_at_least, &two));
    tsleep_ms(100);
    cr_assert_eq(atomic_load(&limited_calls), 2);
    tenv_advance(&t, 1000);
    cr_assert(twait(limited_at_least, &four));
    tsleep_ms(50);
    cr_assert_eq(atomic_load(&limited_calls), 4);
    tenv_free(&t);
}

/* A "dead instance" holds a job: reserve it behind the engine's back. */
static void
steal(tenv *t, const char *queue, int64_t at, nv_job *out)
{
    nv_queue *q = nv__engine_queue(t->e);
    nv_error err = { 0 };

    memset(out, 0, sizeof(*out));
    cr_assert_eq(q->ops->reserve(q->self, queue, at, 30000, NULL, out, NULL,
                                 &err), NV_OK, "%s", err.msg);
}

Test(jobs, expired_lease_redelivers_the_same_attempt)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    nv_job stolen;
    json_t *j;
    int one = 1;

    /* The workers' leases (60 s) outlast the jump below: a worker that
       read the clock before it (T0) and reserves right after the reap
       holds a lease to T0 + 60 s, not one already expired at the new
       time (with 30 s a second reap failed the job, ~3% of runs). */
    setup(&t, NULL, "{\"worker\":{\"lockDurationMs\":60000}}", ok_handler);
    tenqueue(&t, "work", NULL, "{\"delay\":1000}", id);
    steal(&t, "work", T0 + 1000, &stolen);
    cr_assert_str_eq(stolen.id, id);
    nv_job_release(&stolen);
    nv_test_clock_set(&t.clock, T0 + 1000 + 30000 + 1);
    tenv_advance(&t, 0);
    cr_assert(twait(calls_at_least, &one));
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "completed");
    cr_assert_eq(jint(j, "stalledCount"), 1);
    cr_assert_eq(jint(j, "attemptsMade"), 1);
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, job_stalled_more_than_allowed_fails)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    nv_job stolen;
    json_t *j;

    setup(&t, NULL, "{\"worker\":{\"maxStalledCount\":0}}", ok_handler);
    tenqueue(&t, "work", NULL, "{\"delay\":1000}", id);
    steal(&t, "work", T0 + 1000, &stolen);
    nv_job_release(&stolen);
    nv_test_clock_set(&t.clock, T0 + 1000 + 30000 + 1);
    tenv_advance(&t, 0);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "failed");
    cr_assert_str_eq(jstr(j, "failedReason"),
                     "job stalled more than allowable limit");
    json_decref(j);
    cr_assert_eq(atomic_load(&calls), 0);
    tenv_free(&t);
}

static void *
stop_thread(void *arg)
{
    nv_engine_stop(arg, 30);
    return NULL;
}

Test(jobs, graceful_stop_puts_active_jobs_back_to_waiting)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    pthread_t st;
    json_t *j;
    int one = 1;

    setup(&t, NULL, NULL, blocking_handler);
    tenqueue(&t, "work", NULL, NULL, id);
    cr_assert(twait(calls_at_least, &one));
    /* the handler ignores its check until released, past the grace */
    cr_assert_eq(pthread_create(&st, NULL, stop_thread, t.e), 0);
    tsleep_ms(200);
    atomic_store(&release_handler, 1);
    pthread_join(st, NULL);
    cr_assert_str_eq(atomic_load(&seen_cancel), "shutdown");
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "waiting");
    cr_assert_eq(jint(j, "attemptsMade"), 0);
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, a_running_handler_keeps_its_lease_by_heartbeat)
{
    tenv t;
    char id[NV_JOB_ID_MAX];
    json_t *j;
    int one = 1;

    setup(&t, NULL, "{\"worker\":{\"lockDurationMs\":1000}}",
          blocking_handler);
    tenqueue(&t, "work", NULL, NULL, id);
    cr_assert(twait(calls_at_least, &one));
    for (int i = 0; i < 6; i++)
        tenv_advance(&t, 600);          /* 3.6 s: the lease is renewed */
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "active");
    cr_assert_eq(jint(j, "stalledCount"), 0);
    json_decref(j);
    atomic_store(&release_handler, 1);
    tenv_idle(&t);
    j = tjob(&t, "work", id);
    cr_assert_str_eq(jstr(j, "state"), "completed");
    json_decref(j);
    tenv_free(&t);
}

Test(jobs, metrics_list_every_queue_and_count_attempts)
{
    tenv t;
    char *text = NULL, *h = NULL;
    json_t *hj;

    atomic_store(&fails_left, 1);
    setup(&t, NULL, NULL, fail_handler);
    cr_assert_eq(nv_metrics_text(t.e, &text, NULL), NV_OK);
    cr_assert(strstr(text, "nvent_jobs_processed_total{queue=\"work\"} 0\n"),
              "%s", text);
    cr_assert(strstr(text, "nvent_job_duration_seconds_bucket{queue=\"work\","
                           "le=\"+Inf\"} 0\n"), "CL-13");
    cr_assert(strstr(text, "# TYPE nvent_job_duration_seconds histogram"));
    cr_assert(strstr(text, "nvent_build_info{version=\"" NV_VERSION "\"} 1"));
    nv_free(text);
    tenqueue(&t, "work", NULL, "{\"attempts\":2}", NULL);
    tenv_idle(&t);
    cr_assert_eq(nv_metrics_text(t.e, &text, NULL), NV_OK);
    cr_assert(strstr(text, "nvent_jobs_processed_total{queue=\"work\"} 2\n"),
              "%s", text);
    cr_assert(strstr(text, "nvent_jobs_failed_total{queue=\"work\"} 1\n"));
    cr_assert(strstr(text, "nvent_queue_jobs{queue=\"work\",state="
                           "\"completed\"} 1\n"));
    cr_assert(strstr(text, "nvent_queue_paused{queue=\"work\"} 0\n"));
    nv_free(text);
    cr_assert_eq(nv_health_json(t.e, &h, NULL), NV_OK);
    hj = tparse(h);
    cr_assert_str_eq(jstr(hj, "status"), "ok");
    cr_assert_str_eq(jstr(hj, "instanceId"), nv_engine_instance_id(t.e));
    cr_assert_eq(jint(hj, "functions"), 1);
    cr_assert_eq(jint(hj, "flows"), 0);
    cr_assert(json_is_true(json_object_get(json_object_get(json_object_get(
        hj, "adapters"), "queue"), "ok")));
    json_decref(hj);
    tenv_free(&t);
}
