/*
 * Several instances on one shared backend (A-5, redis only; other backends
 * skip): a run canceled on one instance raises the cancellation check of
 * its handler on another (CTX-7, within 1 s), and live job events of one
 * instance reach the subscribers of the other (SSE-4, SSE-5), while no job
 * message is published when no instance has a live subscriber.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "engine_test.h"
#include "core/engine.h"

static const char *_Atomic seen;
static atomic_int started;

static int
blocking(nv_ctx *c, const char *input, void *ud)
{
    (void)input;
    (void)ud;
    atomic_fetch_add(&started, 1);
    for (int i = 0; i < 5000 && nv_ctx_canceled(c) == NULL; i++)
        tsleep_ms(1);
    atomic_store(&seen, nv_ctx_canceled(c));
    return NV_OK;
}

static int
is_started(void *ud)
{
    (void)ud;
    return atomic_load(&started) > 0;
}

static int
is_seen(void *ud)
{
    (void)ud;
    return atomic_load(&seen) != NULL;
}

static void
two(tenv *a, tenv *b, const char *fncfg)
{
    char *base = nv_test_config_json();

    tenv_init_with(a, base, NULL);
    tenv_init_with(b, base, NULL);
    free(base);
    tenv_fn(a, "s", fncfg, blocking, NULL);
    tenv_fn(b, "s", fncfg, blocking, NULL);
    tenv_start(a);
}

Test(multi, a_cancel_on_one_instance_reaches_a_handler_on_another)
{
    tenv a, b;
    char run[NV_ID_MAX];
    nv_error err = { 0 };

    if (strcmp(nv_test_backend(), "redis") != 0)
        cr_skip_test("instances share data on redis only");
    two(&a, &b, "{\"flow\":{\"name\":\"m\",\"role\":\"entry\"}}");
    /* b serves no jobs: it is started without workers */
    cr_assert_eq(nv_engine_start(b.e, NV_START_NO_WORKERS, &err), NV_OK,
                 "%s", err.msg);
    tstart(&a, "m", NULL, run);
    cr_assert(twait(is_started, NULL));
    cr_assert_eq(nv_run_cancel(b.e, "m", run, NULL, &err), NV_OK, "%s",
                 err.msg);
    cr_assert(twait(is_seen, NULL));
    cr_assert_str_eq(atomic_load(&seen), "canceled");
    tenv_free(&b);
    tenv_free(&a);
}

static char got[8192];
static pthread_mutex_t got_mu = PTHREAD_MUTEX_INITIALIZER;

static void
collect(void *ud, const char *json)
{
    (void)ud;
    pthread_mutex_lock(&got_mu);
    strncat(got, json, sizeof(got) - strlen(got) - 2);
    strcat(got, "\n");
    pthread_mutex_unlock(&got_mu);
}

static int
got_completed(void *ud)
{
    int r;

    (void)ud;
    pthread_mutex_lock(&got_mu);
    /* a's job events and a's step events (not only its flow events) */
    r = strstr(got, "\"type\":\"completed\"") != NULL &&
        strstr(got, "\"kind\":\"flow.event\"") != NULL &&
        strstr(got, "\"type\":\"step.completed\"") != NULL;
    pthread_mutex_unlock(&got_mu);
    return r;
}

static int
quick(nv_ctx *c, const char *input, void *ud)
{
    (void)c;
    (void)input;
    (void)ud;
    return NV_OK;
}

Test(multi, live_messages_of_one_instance_reach_another)
{
    tenv a, b;
    nv_live *l = NULL;
    char run[NV_ID_MAX], *base = nv_test_config_json();
    nv_error err = { 0 };

    if (strcmp(nv_test_backend(), "redis") != 0) {
        free(base);
        cr_skip_test("instances share data on redis only");
    }
    tenv_init_with(&a, base, NULL);
    tenv_init_with(&b, base, NULL);
    free(base);
    tenv_fn(&a, "s", "{\"flow\":{\"name\":\"m\",\"role\":\"entry\"}}", quick,
            NULL);
    tenv_fn(&b, "s", "{\"flow\":{\"name\":\"m\",\"role\":\"entry\"}}", quick,
            NULL);
    tenv_start(&a);
    cr_assert_eq(nv_engine_start(b.e, NV_START_NO_WORKERS, &err), NV_OK);
    cr_assert_eq(nv_live_subscribe(b.e, collect, NULL, &l, &err), NV_OK);
    tstart(&a, "m", NULL, run);
    twait_run(&a, run, "completed");
    cr_assert(twait(got_completed, NULL), "%s", got);
    nv_live_unsubscribe(b.e, l);
    tenv_free(&b);
    tenv_free(&a);
}

Test(multi, runs_of_a_flow_no_longer_registered_stay_readable)
{
    tenv a, b;
    char run[NV_ID_MAX], *base, *body = NULL;
    nv_error err = { 0 };
    json_t *j;

    if (strcmp(nv_test_backend(), "memory") == 0)
        cr_skip_test("memory keeps nothing after its engine");
    base = nv_test_config_json();
    tenv_init_with(&a, base, NULL);
    tenv_fn(&a, "s", "{\"flow\":{\"name\":\"old\",\"role\":\"entry\"}}", quick,
            NULL);
    tenv_start(&a);
    tstart(&a, "old", NULL, run);
    twait_run(&a, run, "completed");
    tenv_free(&a);
    tenv_init_with(&b, base, NULL);
    free(base);
    tenv_fn(&b, "t", NULL, quick, NULL);
    tenv_start(&b);
    cr_assert_eq(nv_runs_list(b.e, "old", NULL, 0, 10, &body, &err), NV_OK,
                 "%s", err.msg);
    j = tparse(body);
    cr_assert_eq(jint(j, "total"), 1);
    json_decref(j);
    cr_assert_eq(nv_run_get(b.e, "old", run, NULL, NULL, 100, &body, &err),
                 NV_OK, "%s", err.msg);
    j = tparse(body);
    cr_assert_str_eq(jstr(j, "status"), "completed");
    json_decref(j);
    cr_assert_eq(nv_run_get(b.e, NULL, run, NULL, NULL, 100, &body, &err),
                 NV_OK, "%s", err.msg);
    nv_free(body);
    cr_assert_eq(nv_flow_start(b.e, "old", NULL, NULL, run, NULL, &err),
                 NV_EFLOW_NOT_FOUND, "cannot be started");
    cr_assert_eq(nv_flow_clear_history(b.e, "old", &body, &err), NV_OK);
    nv_free(body);
    cr_assert_eq(nv_runs_list(b.e, "old", NULL, 0, 10, &body, &err),
                 NV_EFLOW_NOT_FOUND, "unknown once its index is empty");
    tenv_free(&b);
}

/* Job messages on the shared live channel, seen by a bare stream adapter
 * subscription (as any instance's engine sees them). */
static atomic_int raw_jobs;

static void
raw_note(void *ud, const nv_stream_note *note)
{
    (void)ud;
    if (note->message != NULL && strstr(note->message, "\"kind\":\"job\""))
        atomic_fetch_add(&raw_jobs, 1);
}

static int
raw_seen(void *ud)
{
    (void)ud;
    return atomic_load(&raw_jobs) > 0;
}

static int
got_job(void *ud)
{
    int r;

    (void)ud;
    pthread_mutex_lock(&got_mu);
    r = strstr(got, "\"kind\":\"job\"") != NULL &&
        strstr(got, "\"type\":\"completed\"") != NULL;
    pthread_mutex_unlock(&got_mu);
    return r;
}

Test(multi, job_events_are_published_only_while_some_instance_listens)
{
    tenv a, b;
    nv_live *l = NULL;
    nv_stream raw;
    void *h = NULL;
    char *base = nv_test_config_json(), *settings, id[NV_JOB_ID_MAX];
    json_t *cfg, *st;
    nv_error err = { 0 };

    if (strcmp(nv_test_backend(), "redis") != 0) {
        free(base);
        cr_skip_test("instances share data on redis only");
    }
    cfg = json_loads(base, 0, NULL);
    cr_assert_not_null(cfg);
    st = json_pack("{sOsO}", "prefix", json_object_get(cfg, "prefix"),
                   "redis", json_object_get(json_object_get(cfg,
                                            "connections"), "redis"));
    settings = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    json_decref(cfg);
    cr_assert_eq(nv_redis_stream_open(settings, &raw, &err), NV_OK, "%s",
                 err.msg);
    free(settings);
    cr_assert_eq(raw.ops->subscribe(raw.self, raw_note, NULL, &h, &err),
                 NV_OK, "%s", err.msg);
    tenv_init_with(&a, base, NULL);
    tenv_init_with(&b, base, NULL);
    free(base);
    tenv_fn(&a, "q", "{}", quick, NULL);
    tenv_fn(&b, "q", "{}", quick, NULL);
    tenv_start(&a);
    cr_assert_eq(nv_engine_start(b.e, NV_START_NO_WORKERS, &err), NV_OK);

    /* nobody listens anywhere: a job costs no job message */
    tenqueue(&a, "q", "{}", NULL, id);
    tenv_idle(&a);
    tsleep_ms(300);
    cr_assert_eq(atomic_load(&raw_jobs), 0, "job messages without listeners");

    /* a subscriber on b: a's job events reach it within 1 s (SSE-5; at
     * once when b's announcement is seen first, else by a's next look at
     * the listeners key) */
    cr_assert_eq(nv_live_subscribe(b.e, collect, NULL, &l, &err), NV_OK);
    for (int i = 0; i < 20 && !raw_seen(NULL); i++) {
        tenqueue(&a, "q", "{}", NULL, id);
        tsleep_ms(100);
    }
    cr_assert(twait(raw_seen, NULL));
    cr_assert(twait(got_job, NULL), "%s", got);
    nv_live_unsubscribe(b.e, l);
    tenv_free(&b);
    tenv_free(&a);
    raw.ops->unsubscribe(raw.self, h);
    raw.ops->close(raw.self);
}

static atomic_int late_runs;

static int
count_run(nv_ctx *c, const char *input, void *ud)
{
    (void)c;
    (void)input;
    (void)ud;
    atomic_fetch_add(&late_runs, 1);
    return NV_OK;
}

/* F-4a, F-16 across instances: the instance that started a run still has
 * it cached as running when another one cancels it; a job of the run it
 * reserves afterwards must not start (the run cache must notice the other
 * instance's append before deciding). */
Test(multi, a_job_of_a_run_canceled_on_another_instance_is_removed_unrun)
{
    static const char cfg[] = "{\"flow\":{\"name\":\"m\",\"role\":\"entry\"}}";
    tenv a, b;
    char run[NV_ID_MAX], id[NV_JOB_ID_MAX], *base, *j = NULL;
    nv_error err = { 0 };
    nv_queue *q;
    nv_job late;
    json_t *r;
    int created = 0;

    if (strcmp(nv_test_backend(), "redis") != 0)
        cr_skip_test("instances share data on redis only");
    base = nv_test_config_json();
    tenv_init_with(&a, base, NULL);
    tenv_init_with(&b, base, NULL);
    free(base);
    tenv_fn(&a, "s", cfg, count_run, NULL);
    tenv_fn(&b, "s", cfg, count_run, NULL);
    tenv_start(&a);
    cr_assert_eq(nv_engine_start(b.e, NV_START_NO_WORKERS, &err), NV_OK,
                 "%s", err.msg);
    /* the entry job waits in the paused queue; the cancel on b removes it */
    cr_assert_eq(nv_queue_pause(a.e, "s", NULL, &err), NV_OK, "%s", err.msg);
    tstart(&a, "m", NULL, run);
    cr_assert_eq(nv_run_cancel(b.e, "m", run, NULL, &err), NV_OK, "%s",
                 err.msg);
    /* a late delivery of the run's step, reserved by a */
    q = nv__engine_queue(a.e);
    memset(&late, 0, sizeof(late));
    snprintf(id, sizeof(id), "%s__late", run);
    snprintf(late.id, sizeof(late.id), "%s", id);
    snprintf(late.queue, sizeof(late.queue), "s");
    snprintf(late.name, sizeof(late.name), "s");
    snprintf(late.run_id, sizeof(late.run_id), "%s", run);
    snprintf(late.flow_name, sizeof(late.flow_name), "m");
    snprintf(late.step_name, sizeof(late.step_name), "s");
    late.data = (char *)"{}";
    late.opts = (char *)"{}";
    late.remove_on_complete = NV_KEEP_ALL;
    late.remove_on_fail = NV_KEEP_ALL;
    late.timestamp = T0;
    cr_assert_eq(q->ops->enqueue(q->self, &late, T0, 0, NULL, &created, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(nv_queue_resume(a.e, "s", NULL, &err), NV_OK, "%s", err.msg);
    tenv_idle(&a);
    cr_assert_eq(nv_job_get(a.e, "s", id, &j, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(atomic_load(&late_runs), 0, "not run");
    r = trun(&a, run);
    cr_assert_str_eq(jstr(r, "status"), "canceled");
    cr_assert_eq(tcount_type(r, "step.started"), 0);
    json_decref(r);
    tenv_free(&b);
    tenv_free(&a);
}
