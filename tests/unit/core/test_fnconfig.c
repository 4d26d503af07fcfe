/*
 * Function configuration (§2, CF-1..CF-6): validation messages with the
 * file and key path, every problem collected, effective settings layered
 * over the configuration file, and the static C config conversion.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/fnconfig.h"
#include "core/util.h"

struct res {
    nv__function fn;
    nv__problems p;
    char         text[4096];
};

static void
resolve_cfg(struct res *r, const char *id, const char *json,
            const nv_config *c)
{
    json_t *doc = json ? json_loads(json, 0, NULL) : NULL;
    size_t i, n;

    cr_assert(json == NULL || doc != NULL, "bad test JSON %s", json);
    memset(r, 0, sizeof(*r));
    r->fn.id = (char *)id;
    r->fn.file = nv__asprintf("functions/%s.c", id);
    n = nv__fnconfig_resolve(&r->fn, doc, c, &r->p);
    cr_assert_eq(n, r->p.n);
    for (i = 0; i < r->p.n; i++) {
        strcat(r->text, r->p.lines[i]);
        strcat(r->text, "\n");
    }
    json_decref(doc);
}

static void
resolve(struct res *r, const char *id, const char *json)
{
    resolve_cfg(r, id, json, NULL);
}

static void
release(struct res *r)
{
    nv__fnconfig_release(&r->fn);
    nv__problems_release(&r->p);
    nv__free(r->fn.file);
}

static void
expect_problems(const char *json, const char *want)
{
    struct res r;

    resolve(&r, "a", json);
    cr_expect_str_eq(r.text, want);
    release(&r);
}

Test(fnconfig, an_empty_config_takes_every_default)
{
    struct res r;
    char *s;

    resolve(&r, "billing/charge", NULL);
    cr_assert_str_eq(r.text, "");
    cr_expect_str_eq(r.fn.queue, "charge");
    cr_expect_eq(r.fn.concurrency, 2);
    cr_expect_eq(r.fn.autorun, 1);
    cr_expect_eq(r.fn.lock_ms, 30000);
    cr_expect_eq(r.fn.max_stalled, 1);
    cr_expect_eq(r.fn.limiter.max, 0);
    cr_expect_eq(r.fn.nflows, 0);
    cr_expect_str_eq(r.fn.step, "");
    cr_expect_eq(r.fn.opts.attempts, 1);
    s = json_dumps(r.fn.config_queue, JSON_COMPACT);
    cr_expect_str_eq(s, "{\"name\":\"charge\",\"defaultJobOptions\":"
                        "{\"attempts\":1,\"backoff\":0,\"delay\":0,"
                        "\"priority\":0,\"timeout\":0,\"lifo\":false,"
                        "\"removeOnComplete\":1000,\"removeOnFail\":5000}}");
    free(s);
    s = json_dumps(r.fn.config_worker, JSON_COMPACT);
    cr_expect_str_eq(s, "{\"concurrency\":2,\"autorun\":true,"
                        "\"lockDurationMs\":30000,\"maxStalledCount\":1}");
    free(s);
    release(&r);
}

Test(fnconfig, every_field_is_read)
{
    struct res r;
    char *s;

    resolve(&r, "x", "{\"queue\":{\"name\":\"q1\",\"defaultJobOptions\":"
                     "{\"attempts\":3},\"limiter\":{\"max\":2,\"duration\":"
                     "1000,\"groupKey\":\"tenant\"}},\"worker\":{"
                     "\"concurrency\":7,\"autorun\":false,\"lockDurationMs\":"
                     "5000,\"maxStalledCount\":0},\"flow\":{\"name\":[\"f2\","
                     "\"f1\"],\"role\":\"step\",\"step\":\"s\",\"emits\":"
                     "\"done\",\"subscribes\":[\"step:e\",\"go\",\"go\"]}}");
    cr_assert_str_eq(r.text, "");
    cr_expect_str_eq(r.fn.queue, "q1");
    cr_expect_eq(r.fn.opts.attempts, 3);
    cr_expect_eq(r.fn.limiter.max, 2);
    cr_expect_eq(r.fn.limiter.duration_ms, 1000);
    cr_expect_eq(r.fn.limiter.grouped, 1);
    cr_expect_str_eq(r.fn.group_key, "tenant");
    cr_expect_eq(r.fn.concurrency, 7);
    cr_expect_eq(r.fn.autorun, 0);
    cr_expect_eq(r.fn.lock_ms, 5000);
    cr_expect_eq(r.fn.max_stalled, 0);
    cr_assert_eq(r.fn.nflows, 2);
    cr_expect_str_eq(r.fn.flows[0], "f1", "flow names are sorted");
    cr_expect_str_eq(r.fn.flows[1], "f2");
    cr_expect_eq(r.fn.is_entry, 0);
    cr_expect_str_eq(r.fn.step, "s");
    cr_assert_eq(r.fn.nemits, 1);
    cr_expect_str_eq(r.fn.emits[0], "done");
    cr_assert_eq(r.fn.nsubs, 2, "duplicate subscriptions collapse");
    cr_expect_str_eq(r.fn.subscribes[0], "step:e");
    cr_expect_str_eq(r.fn.subscribes[1], "go");
    s = json_dumps(json_object_get(r.fn.config_queue, "limiter"), JSON_COMPACT);
    cr_expect_str_eq(s, "{\"max\":2,\"duration\":1000,\"groupKey\":\"tenant\"}");
    free(s);
    release(&r);
}

Test(fnconfig, types_and_ranges_are_reported_with_file_and_key_CF_1)
{
    expect_problems("{\"worker\":{\"concurrency\":0}}",
                    "functions/a.c: worker.concurrency: expected integer "
                    "1..1024, got 0\n");
    expect_problems("{\"worker\":{\"concurrency\":2.0}}",
                    "functions/a.c: worker.concurrency: expected integer "
                    "1..1024, got 2.0\n");
    expect_problems("{\"worker\":{\"autorun\":\"yes\",\"lockDurationMs\":999,"
                    "\"maxStalledCount\":-1}}",
                    "functions/a.c: worker.autorun: expected boolean, got "
                    "\"yes\"\n"
                    "functions/a.c: worker.lockDurationMs: expected integer "
                    ">= 1000, got 999\n"
                    "functions/a.c: worker.maxStalledCount: expected integer "
                    ">= 0, got -1\n");
    expect_problems("{\"queue\":{\"name\":\"a b\"}}",
                    "functions/a.c: queue.name: expected name matching "
                    "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$, got \"a b\"\n");
    expect_problems("{\"queue\":{\"defaultJobOptions\":{\"priority\":-1}}}",
                    "functions/a.c: queue.defaultJobOptions.priority: expected "
                    "integer 0..2097152, got -1\n");
    expect_problems("{\"queue\":{\"defaultJobOptions\":{\"jobId\":\"x\"}}}",
                    "functions/a.c: queue.defaultJobOptions.jobId: not allowed "
                    "here (only at enqueue)\n");
    expect_problems("{\"flow\":{\"name\":\"f\",\"role\":\"first\"}}",
                    "functions/a.c: flow.role: expected one of \"step\", "
                    "\"entry\", got \"first\"\n");
    expect_problems("[]", "functions/a.c: -: expected object, got []\n");
    expect_problems("{\"worker\":3}",
                    "functions/a.c: worker: expected object, got 3\n");
}

Test(fnconfig, unknown_and_unsupported_keys_are_errors_CF_2)
{
    expect_problems("{\"isolate\":true,\"runner\":\"x\",\"bogus\":1}",
                    "functions/a.c: isolate: not supported\n"
                    "functions/a.c: runner: not supported\n"
                    "functions/a.c: bogus: unknown key\n");
    expect_problems("{\"queue\":{\"prefix\":\"p\",\"nam\":\"x\"}}",
                    "functions/a.c: queue.prefix: not supported\n"
                    "functions/a.c: queue.nam: unknown key\n");
    expect_problems("{\"queue\":{\"defaultJobOptions\":{\"repeat\":{}}}}",
                    "functions/a.c: queue.defaultJobOptions.repeat: "
                    "not supported\n");
    expect_problems("{\"worker\":{\"pollingIntervalMs\":1,\"drainDelayMs\":1}}",
                    "functions/a.c: worker.pollingIntervalMs: not supported\n"
                    "functions/a.c: worker.drainDelayMs: not supported\n");
    expect_problems("{\"flow\":{\"name\":\"f\",\"triggers\":[],\"awaitBefore\":"
                    "1,\"awaitAfter\":1,\"stepTimeout\":1}}",
                    "functions/a.c: flow.triggers: not supported\n"
                    "functions/a.c: flow.awaitBefore: not supported\n"
                    "functions/a.c: flow.awaitAfter: not supported\n"
                    "functions/a.c: flow.stepTimeout: not supported\n");
}

Test(fnconfig, limiter_needs_max_and_duration_CF_3)
{
    expect_problems("{\"queue\":{\"limiter\":{\"max\":1}}}",
                    "functions/a.c: queue.limiter.duration: required\n");
    expect_problems("{\"queue\":{\"limiter\":{\"duration\":1}}}",
                    "functions/a.c: queue.limiter.max: required\n");
    expect_problems("{\"queue\":{\"limiter\":{\"max\":1,\"duration\":0}}}",
                    "functions/a.c: queue.limiter.duration: expected integer "
                    ">= 1, got 0\n");
    expect_problems("{\"queue\":{\"limiter\":{\"max\":1,\"duration\":1,"
                    "\"groupKey\":7}}}",
                    "functions/a.c: queue.limiter.groupKey: expected non-empty "
                    "string, got 7\n");
}

Test(fnconfig, flow_block_rules_CF_4)
{
    expect_problems("{\"flow\":{\"role\":\"entry\"}}",
                    "functions/a.c: flow.name: required (a flow block needs "
                    "the names of its flows)\n");
    expect_problems("{\"flow\":{\"name\":\"f\",\"role\":\"entry\","
                    "\"subscribes\":\"go\"}}",
                    "functions/a.c: flow.subscribes: an entry cannot "
                    "subscribe: it is the first step of its flows\n");
    expect_problems("{\"flow\":{\"name\":\"f\",\"role\":\"entry\","
                    "\"subscribes\":[]}}", "");
    expect_problems("{\"flow\":{\"name\":\"f\",\"step\":[\"a\",\"b\"]}}",
                    "functions/a.c: flow.step: one step per function: expected "
                    "a name, not an array\n");
    expect_problems("{\"flow\":{\"name\":[]}}",
                    "functions/a.c: flow.name: expected name or non-empty "
                    "array of distinct names, got []\n");
    expect_problems("{\"flow\":{\"name\":[\"f\",\"f\"]}}",
                    "functions/a.c: flow.name: flow \"f\" is listed twice\n");
    expect_problems("{\"flow\":{\"name\":[\"f\",\"b c\"]}}",
                    "functions/a.c: flow.name[1]: expected name matching "
                    "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$, got \"b c\"\n");
    expect_problems("{\"flow\":{\"name\":\"f\",\"emits\":5}}",
                    "functions/a.c: flow.emits: expected name or array of "
                    "names, got 5\n");
}

Test(fnconfig, subscriptions_must_be_names_or_step_refs)
{
    expect_problems("{\"flow\":{\"name\":\"f\",\"subscribes\":[\"queue:q\","
                    "\"worker:w\",\"a b\",\"step:\",3]}}",
                    "functions/a.c: flow.subscribes: \"queue:q\": queue: "
                    "subscriptions are not supported\n"
                    "functions/a.c: flow.subscribes: \"worker:w\": worker: "
                    "subscriptions are not supported\n"
                    "functions/a.c: flow.subscribes: invalid subscription "
                    "\"a b\": expected an event name or step:<name>\n"
                    "functions/a.c: flow.subscribes: invalid subscription "
                    "\"step:\": expected an event name or step:<name>\n"
                    "functions/a.c: flow.subscribes[4]: expected non-empty "
                    "string, got 3\n");
}

Test(fnconfig, the_step_name_defaults_to_the_base_name)
{
    struct res r;

    resolve(&r, "dir/sub/fetch", "{\"flow\":{\"name\":\"f\"}}");
    cr_expect_str_eq(r.fn.step, "fetch");
    cr_expect_str_eq(r.fn.queue, "fetch");
    release(&r);
    resolve(&r, "bad name", NULL);
    cr_expect_str_eq(r.text, "functions/bad name.c: queue.name: the base name "
                             "\"bad name\" is not a valid queue name: set "
                             "queue.name\n");
    release(&r);
}

Test(fnconfig, settings_layer_over_the_configuration_file_CF_5)
{
    nv_config *c = NULL;
    struct res r;
    nv_error err;

    cr_assert_eq(nv_config_new(&c, &err), NV_OK);
    cr_assert_eq(nv_config_load_json(c,
        "{\"queue\":{\"defaultJobOptions\":{\"attempts\":4,\"priority\":9,"
        "\"backoff\":{\"type\":\"exponential\",\"delay\":10,\"jitter\":0.5}},"
        "\"limiter\":{\"max\":3,\"duration\":100},"
        "\"worker\":{\"concurrency\":5,\"autorun\":false}}}", "nvent.json",
        &err), NV_OK, "%s", err.msg);
    resolve_cfg(&r, "a", "{\"queue\":{\"defaultJobOptions\":{\"priority\":1,"
                         "\"backoff\":{\"type\":\"fixed\",\"delay\":7}}},"
                         "\"worker\":{\"concurrency\":1}}", c);
    cr_assert_str_eq(r.text, "");
    cr_expect_eq(r.fn.opts.attempts, 4, "file default kept");
    cr_expect_eq(r.fn.opts.priority, 1, "function default wins");
    cr_expect_eq(r.fn.opts.backoff_type, NV__BACKOFF_FIXED);
    cr_expect_float_eq(r.fn.opts.jitter, 0.0, 1e-12, "backoff replaced whole");
    cr_expect_eq(r.fn.limiter.max, 3, "file limiter applies");
    cr_expect_eq(r.fn.concurrency, 1);
    cr_expect_eq(r.fn.autorun, 0, "file worker setting applies");
    cr_expect_eq(r.fn.lock_ms, 30000);
    release(&r);
    resolve_cfg(&r, "b", "{\"queue\":{\"limiter\":{\"max\":9,\"duration\":1,"
                         "\"groupKey\":\"g\"}}}", c);
    cr_expect_eq(r.fn.limiter.max, 9, "function limiter replaces the file's");
    cr_expect_eq(r.fn.limiter.duration_ms, 1);
    cr_expect_eq(r.fn.limiter.grouped, 1);
    release(&r);
    nv_config_free(c);
}

/* ---- nv_function_config_to_json ---- */

Test(fnconfig_static, a_full_static_config_converts_field_by_field)
{
    static const char *const flows[] = { "orders", NULL };
    static const char *const emits[] = { "paid", NULL };
    static const char *const subs[] = { "step:start", "ready", NULL };
    nv_function_config cfg = {
        .abi = NV_ABI_VERSION,
        .queue = { .name = "charge", .default_job_options = "{\"attempts\":3}",
                   .limiter = "{\"max\":1,\"duration\":10}" },
        .worker = { .concurrency = NV_SOME(4), .autorun = NV_SOME(0),
                    .lock_duration_ms = NV_SOME(2000),
                    .max_stalled_count = NV_SOME(2) },
        .flow = { .name = flows, .role = "step", .step = "charge",
                  .emits = emits, .subscribes = subs },
    };
    nv_error err;
    char *json = NULL;

    cr_assert_eq(nv_function_config_to_json(&cfg, &json, &err), NV_OK);
    cr_expect_str_eq(json,
        "{\"queue\":{\"name\":\"charge\",\"defaultJobOptions\":{\"attempts\":3},"
        "\"limiter\":{\"max\":1,\"duration\":10}},\"worker\":{\"concurrency\":4,"
        "\"autorun\":false,\"lockDurationMs\":2000,\"maxStalledCount\":2},"
        "\"flow\":{\"name\":[\"orders\"],\"role\":\"step\",\"step\":\"charge\","
        "\"emits\":[\"paid\"],\"subscribes\":[\"step:start\",\"ready\"]}}");
    nv_free(json);
}

Test(fnconfig_static, unset_fields_are_left_out)
{
    nv_function_config cfg = { .abi = NV_ABI_VERSION };
    nv_error err;
    char *json = NULL;

    cr_assert_eq(nv_function_config_to_json(&cfg, &json, &err), NV_OK);
    cr_expect_str_eq(json, "{}");
    nv_free(json);
}

Test(fnconfig_static, an_abi_mismatch_is_refused)
{
    nv_function_config cfg = { .abi = NV_ABI_VERSION + 1 };
    nv_error err;
    char *json = NULL;

    cr_assert_eq(nv_function_config_to_json(&cfg, &json, &err), NV_EINVAL);
    cr_expect_null(json);
    cr_expect(strstr(err.msg, "ABI") != NULL, "%s", err.msg);
}

Test(fnconfig_static, bad_json_text_is_kept_for_validation_to_report)
{
    nv_function_config cfg = {
        .abi = NV_ABI_VERSION,
        .queue = { .default_job_options = "{attempts:3" },
        .worker = { .autorun = NV_SOME(5) },
    };
    nv_error err;
    char *json = NULL;
    struct res r;

    cr_assert_eq(nv_function_config_to_json(&cfg, &json, &err), NV_OK);
    resolve(&r, "a", json);
    cr_expect_str_eq(r.text,
                     "functions/a.c: queue.defaultJobOptions: expected object, "
                     "got \"{attempts:3\"\n"
                     "functions/a.c: worker.autorun: expected boolean, got 5\n");
    release(&r);
    nv_free(json);
}
