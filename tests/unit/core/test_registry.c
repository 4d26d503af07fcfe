/*
 * Registry and flow graph (§1, §7): duplicate ids and queues (FN-4, FN-5),
 * every problem collected (FN-6), V-1 errors, V-2 warnings and --strict,
 * reachability (V-3), dependsOn/triggers (V-4), levels (V-5, CL-9) and the
 * V-6 object. Handlers are dummies: the registry runs nothing.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/registry.h"
#include "core/util.h"

static int
dummy(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ctx; (void)input; (void)ud;
    return 0;
}

static nv__registry *
reg_new(void)
{
    nv__registry *r = NULL;

    cr_assert_eq(nv__registry_new(&r, NULL), NV_OK);
    return r;
}

/* Add function 'id' (file functions/<id>.c) with config 'json'. */
static void
add(nv__registry *r, const char *id, const char *json)
{
    char file[256];
    nv_error err;

    snprintf(file, sizeof(file), "functions/%s.c", id);
    cr_assert_eq(nv__registry_add(r, id, file, NV_RUNTIME_C, json, dummy,
                                  NULL, &err), NV_OK, "%s", err.msg);
}

/* Build; returns the report (caller frees), checks the return code. */
static char *
build(nv__registry *r, int strict, int want_rc)
{
    char *report = NULL;
    nv_error err;
    int rc = nv__registry_build(r, NULL, strict, &report, &err);

    cr_assert_eq(rc, want_rc, "rc %d: %s / report:\n%s", rc, err.msg,
                 report ? report : "");
    cr_assert_not_null(report);
    return report;
}

static char *
dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT);
}

static void
expect_json(const json_t *j, const char *want)
{
    char *s = dump(j);

    cr_expect_str_eq(s, want);
    free(s);
}

static const char *
level_json(const nv__flow *f)
{
    static char buf[1024];
    char *s = dump(json_object_get(json_object_get(f->analyzed, "analyzed"),
                                   "levels"));

    snprintf(buf, sizeof(buf), "%s/%lld", s, (long long)json_integer_value(
        json_object_get(json_object_get(f->analyzed, "analyzed"),
                        "maxLevel")));
    free(s);
    return buf;
}

#define ENTRY(flow) "{\"flow\":{\"name\":\"" flow "\",\"role\":\"entry\"}}"

/* ---- Functions ---- */

Test(registry, functions_are_sorted_by_queue_and_found_by_queue)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "zeta", "{\"queue\":{\"name\":\"alpha\"}}");
    add(r, "b/mid", NULL);
    add(r, "a/omega", NULL);
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(rep, "");
    cr_assert_eq(nv__registry_nfunctions(r), 3);
    cr_expect_str_eq(nv__registry_function(r, 0)->queue, "alpha");
    cr_expect_str_eq(nv__registry_function(r, 1)->queue, "mid");
    cr_expect_str_eq(nv__registry_function(r, 2)->queue, "omega");
    cr_expect_str_eq(nv__registry_by_queue(r, "alpha")->id, "zeta");
    cr_expect_str_eq(nv__registry_by_queue(r, "omega")->file,
                     "functions/a/omega.c");
    cr_expect_null(nv__registry_by_queue(r, "nope"));
    cr_expect_null(nv__registry_function(r, 3));
    cr_expect_eq(nv__registry_nflows(r), 0);
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, add_checks_its_arguments_and_refuses_after_build)
{
    nv__registry *r = reg_new();
    nv_error err;
    char *rep;

    cr_expect_eq(nv__registry_add(r, "", NULL, 0, NULL, dummy, NULL, &err),
                 NV_EINVAL);
    cr_expect_eq(nv__registry_add(r, NULL, NULL, 0, NULL, dummy, NULL, &err),
                 NV_EINVAL);
    cr_expect_eq(nv__registry_add(r, "a", NULL, 0, NULL, NULL, NULL, &err),
                 NV_EINVAL);
    cr_assert_eq(nv__registry_add(r, "a", NULL, 0, NULL, dummy, NULL, &err),
                 NV_OK);
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(nv__registry_function(r, 0)->file, "a",
                     "the id stands for a missing file");
    cr_expect_eq(nv__registry_add(r, "b", NULL, 0, NULL, dummy, NULL, &err),
                 NV_ESTATE);
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, the_handler_and_user_data_are_kept)
{
    nv__registry *r = reg_new();
    int token;
    char *rep;

    cr_assert_eq(nv__registry_add(r, "p", "functions/p", NV_RUNTIME_PROCESS,
                                  NULL, dummy, &token, NULL), NV_OK);
    rep = build(r, 0, NV_OK);
    cr_expect_eq(nv__registry_function(r, 0)->handler, dummy);
    cr_expect_eq(nv__registry_function(r, 0)->ud, &token);
    cr_expect_eq(nv__registry_function(r, 0)->runtime, NV_RUNTIME_PROCESS);
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, duplicate_function_ids_name_both_files_FN_4)
{
    nv__registry *r = reg_new();
    nv_error err;
    char *rep;

    cr_assert_eq(nv__registry_add(r, "billing/charge", "functions/billing/"
                                  "charge.c", 0, "{\"queue\":{\"name\":"
                                  "\"c1\"}}", dummy, NULL, &err), NV_OK);
    cr_assert_eq(nv__registry_add(r, "billing/charge", "functions/billing/"
                                  "charge.py", 1, "{\"queue\":{\"name\":"
                                  "\"c2\"}}", dummy, NULL, &err), NV_OK);
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/billing/charge.py: -: function id "
                          "\"billing/charge\" is defined twice: "
                          "functions/billing/charge.c and "
                          "functions/billing/charge.py\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, two_functions_on_one_queue_name_both_files_and_the_queue_FN_5)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "a/send", NULL);
    add(r, "b/send", NULL);
    add(r, "other", "{\"queue\":{\"name\":\"send\"}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep,
                     "functions/b/send.c: queue.name: queue \"send\" is served "
                     "by two functions: functions/a/send.c and "
                     "functions/b/send.c\n"
                     "functions/other.c: queue.name: queue \"send\" is served "
                     "by two functions: functions/b/send.c and "
                     "functions/other.c\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, every_problem_is_collected_one_per_line_FN_6)
{
    nv__registry *r = reg_new();
    nv_error err;
    char *rep = NULL;

    add(r, "b", "{\"worker\":{\"concurrency\":0},\"bogus\":1}");
    add(r, "a", "{\"queue\":");
    add(r, "c", "{\"queue\":{\"limiter\":{\"max\":1}}}");
    cr_assert_eq(nv__registry_build(r, NULL, 0, &rep, &err), NV_EINVAL);
    cr_expect_str_eq(rep,
                     "functions/a.c: -: invalid JSON config: unexpected "
                     "token near end of file (line 1, column 9)\n"
                     "functions/b.c: bogus: unknown key\n"
                     "functions/b.c: worker.concurrency: expected integer "
                     "1..1024, got 0\n"
                     "functions/c.c: queue.limiter.duration: required\n");
    cr_expect(strncmp(err.msg, "functions/a.c: -: invalid JSON", 30) == 0,
              "err holds the first line: %s", err.msg);
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, a_build_without_report_pointer_still_validates)
{
    nv__registry *r = reg_new();

    add(r, "a", "{\"worker\":{\"concurrency\":0}}");
    cr_expect_eq(nv__registry_build(r, NULL, 0, NULL, NULL), NV_EINVAL);
    nv__registry_free(r);
}

Test(registry, effective_settings_use_the_configuration_file_CF_5)
{
    nv__registry *r = reg_new();
    nv_config *c = NULL;
    char *rep = NULL;

    cr_assert_eq(nv_config_new(&c, NULL), NV_OK);
    cr_assert_eq(nv_config_load_json(c, "{\"queue\":{\"worker\":{"
                                        "\"lockDurationMs\":9000},"
                                        "\"defaultJobOptions\":{\"timeout\":"
                                        "50}}}", "nvent.json", NULL), NV_OK);
    add(r, "a", "{\"worker\":{\"maxStalledCount\":4}}");
    cr_assert_eq(nv__registry_build(r, c, 0, &rep, NULL), NV_OK);
    cr_expect_eq(nv__registry_function(r, 0)->lock_ms, 9000);
    cr_expect_eq(nv__registry_function(r, 0)->max_stalled, 4);
    cr_expect_eq(nv__registry_function(r, 0)->opts.timeout, 50);
    expect_json(nv__registry_function(r, 0)->config_worker,
                "{\"concurrency\":2,\"autorun\":true,\"lockDurationMs\":9000,"
                "\"maxStalledCount\":4}");
    nv__free(rep);
    nv__registry_free(r);
    nv_config_free(c);
}

/* ---- V-1 ---- */

Test(flows, a_flow_without_entry_is_an_error)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "s1", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"x\"}}");
    add(r, "s2", "{\"flow\":{\"name\":\"f\",\"emits\":\"x\"}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/s1.c: flow.name: flow \"f\" has no entry "
                          "(no function with flow.role \"entry\")\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, two_entries_are_an_error)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e1", ENTRY("f"));
    add(r, "e2", ENTRY("f"));
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/e2.c: flow.role: flow \"f\" has more than "
                          "one entry: functions/e1.c and functions/e2.c\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, two_functions_with_one_step_name_are_an_error)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", ENTRY("f"));
    add(r, "x/work", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"step:e\"}}");
    add(r, "y", "{\"queue\":{\"name\":\"y\"},\"flow\":{\"name\":\"f\","
                "\"step\":\"work\",\"subscribes\":\"step:e\"}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/y.c: flow.step: step \"work\" of flow "
                          "\"f\" is defined twice: functions/x/work.c and "
                          "functions/y.c\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_step_reference_to_no_step_is_an_error)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", ENTRY("f"));
    add(r, "s", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"step:e\","
                "\"step:ghost\"]}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/s.c: flow.subscribes: \"step:ghost\" "
                          "names no step of flow \"f\"\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, queue_and_worker_subscriptions_are_refused)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", ENTRY("f"));
    add(r, "s", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"queue:e\"]}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/s.c: flow.subscribes: \"queue:e\": queue: "
                          "subscriptions are not supported\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, errors_in_one_flow_do_not_hide_another_flows_errors)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "a", "{\"flow\":{\"name\":\"f1\"}}");
    add(r, "b", "{\"flow\":{\"name\":\"f2\"}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep,
                     "functions/a.c: flow.name: flow \"f1\" has no entry (no "
                     "function with flow.role \"entry\")\n"
                     "functions/b.c: flow.name: flow \"f2\" has no entry (no "
                     "function with flow.role \"entry\")\n");
    nv__free(rep);
    nv__registry_free(r);
}

/* ---- V-2, V-3 ---- */

Test(flows, warnings_are_reported_and_strict_makes_them_errors)
{
    nv__registry *r;
    char *rep;
    int strict;

    for (strict = 0; strict <= 1; strict++) {
        r = reg_new();
        add(r, "e", "{\"flow\":{\"name\":\"f\",\"role\":\"entry\","
                    "\"emits\":\"go\"}}");
        add(r, "a", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"go\","
                    "\"never\"]}}");
        add(r, "lonely", "{\"flow\":{\"name\":\"f\"}}");
        rep = build(r, strict, strict ? NV_EINVAL : NV_OK);
        cr_expect_str_eq(rep,
                         "f: warning: step \"a\" subscribes to event \"never\", "
                         "which no step of the flow emits\n"
                         "f: warning: step \"a\" is unreachable from the entry\n"
                         "f: warning: step \"lonely\" is unreachable from the "
                         "entry\n");
        cr_assert_eq(nv__registry_nflows(r), 1);
        cr_expect_eq(nv__registry_flow(r, "f")->nwarnings, 3);
        expect_json(json_object_get(nv__registry_flow(r, "f")->analyzed,
                                    "warnings"),
                    "[\"step \\\"a\\\" subscribes to event \\\"never\\\", "
                    "which no step of the flow emits\",\"step \\\"a\\\" is "
                    "unreachable from the entry\",\"step \\\"lonely\\\" is "
                    "unreachable from the entry\"]");
        nv__free(rep);
        nv__registry_free(r);
    }
}

Test(flows, a_step_fed_only_by_an_unreachable_step_is_unreachable_V_3)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", ENTRY("f"));
    add(r, "orphan", "{\"flow\":{\"name\":\"f\",\"emits\":\"x\"}}");
    add(r, "child", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"x\"}}");
    add(r, "ok", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"step:e\"}}");
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(rep,
                     "f: warning: step \"child\" is unreachable from the entry\n"
                     "f: warning: step \"orphan\" is unreachable from the "
                     "entry\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_cycle_is_a_warning_and_levels_still_come_out_V_5)
{
    nv__registry *r = reg_new();
    const nv__flow *f;
    char *rep;

    add(r, "e", ENTRY("f"));
    add(r, "a", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"step:e\","
                "\"step:b\"]}}");
    add(r, "b", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"step:a\"}}");
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(rep,
                     "f: warning: step \"a\" is unreachable from the entry\n"
                     "f: warning: step \"b\" is unreachable from the entry\n"
                     "f: warning: cycle between steps a, b\n");
    f = nv__registry_flow(r, "f");
    cr_expect_str_eq(level_json(f), "[[\"e\"],[\"a\"],[\"b\"]]/2");
    nv__free(rep);
    nv__registry_free(r);
    r = reg_new();
    add(r, "e", ENTRY("f"));
    add(r, "a", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"step:e\","
                "\"step:b\"]}}");
    add(r, "b", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"step:a\"}}");
    rep = build(r, 1, NV_EINVAL);
    nv__free(rep);
    nv__registry_free(r);
}

/* ---- V-4, V-5 ---- */

Test(flows, a_chain_gets_one_level_per_step)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "start", ENTRY("chain"));
    add(r, "two", "{\"flow\":{\"name\":\"chain\",\"subscribes\":\"step:start\"}}");
    add(r, "three", "{\"flow\":{\"name\":\"chain\",\"subscribes\":"
                    "\"step:two\"}}");
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(rep, "");
    cr_expect_str_eq(level_json(nv__registry_flow(r, "chain")),
                     "[[\"start\"],[\"two\"],[\"three\"]]/2");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_join_waits_for_its_deepest_dependency)
{
    nv__registry *r = reg_new();
    const nv__flow *f;
    json_t *steps;
    char *rep;

    add(r, "e", "{\"flow\":{\"name\":\"j\",\"role\":\"entry\",\"emits\":"
                "\"split\"}}");
    add(r, "left", "{\"flow\":{\"name\":\"j\",\"subscribes\":\"split\"}}");
    add(r, "right", "{\"flow\":{\"name\":\"j\",\"subscribes\":\"split\","
                    "\"emits\":\"r\"}}");
    add(r, "deep", "{\"flow\":{\"name\":\"j\",\"subscribes\":\"r\"}}");
    add(r, "join", "{\"flow\":{\"name\":\"j\",\"subscribes\":[\"step:left\","
                   "\"step:deep\"]}}");
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(rep, "");
    f = nv__registry_flow(r, "j");
    cr_expect_str_eq(level_json(f), "[[\"e\"],[\"left\",\"right\"],[\"deep\"],"
                                    "[\"join\"]]/3");
    steps = json_object_get(json_object_get(f->analyzed, "analyzed"), "steps");
    expect_json(json_object_get(json_object_get(steps, "join"), "dependsOn"),
                "[\"deep\",\"left\"]");
    expect_json(json_object_get(json_object_get(steps, "e"), "triggers"),
                "[\"left\",\"right\"]");
    expect_json(json_object_get(json_object_get(steps, "left"), "triggers"),
                "[\"join\"]");
    expect_json(json_object_get(json_object_get(steps, "e"), "dependsOn"), "[]");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_step_without_dependencies_has_level_1_CL_9)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", ENTRY("f"));
    add(r, "idle", "{\"flow\":{\"name\":\"f\"}}");
    add(r, "z", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"step:idle\"}}");
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(level_json(nv__registry_flow(r, "f")),
                     "[[\"e\"],[\"idle\"],[\"z\"]]/2");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_lone_entry_has_only_level_0)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", ENTRY("f"));
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(level_json(nv__registry_flow(r, "f")), "[[\"e\"]]/0");
    nv__free(rep);
    nv__registry_free(r);
}

/* ---- V-6 and lookups ---- */

Test(flows, the_analyzed_object_has_the_V_6_shape)
{
    nv__registry *r = reg_new();
    const nv__flow *f;
    nv_error err;
    char *rep;

    add(r, "orders/start", "{\"flow\":{\"name\":\"orders\",\"role\":\"entry\","
                           "\"emits\":\"created\"}}");
    cr_assert_eq(nv__registry_add(r, "orders/ship", "functions/orders/ship.py",
                                  NV_RUNTIME_PROCESS, "{\"flow\":{\"name\":"
                                  "\"orders\",\"subscribes\":[\"created\","
                                  "\"step:start\"]}}", dummy, NULL, &err),
                 NV_OK);
    rep = build(r, 0, NV_OK);
    f = nv__registry_flow(r, "orders");
    cr_assert_not_null(f);
    cr_expect_str_eq(f->entry->step, "start");
    cr_assert_eq(f->nsteps, 2);
    cr_expect_str_eq(f->steps[0]->step, "ship");
    cr_expect_str_eq(f->steps[1]->step, "start");
    cr_expect_eq(nv__flow_step(f, "ship"), f->steps[0]);
    cr_expect_null(nv__flow_step(f, "nope"));
    expect_json(f->analyzed,
        "{\"id\":\"orders\","
        "\"entry\":{\"step\":\"start\",\"queue\":\"start\",\"workerId\":"
        "\"orders/start\",\"runtime\":\"c\",\"emits\":[\"created\"]},"
        "\"steps\":{\"ship\":{\"queue\":\"ship\",\"workerId\":\"orders/ship\","
        "\"subscribes\":[\"created\",\"step:start\"],\"runtime\":\"process\","
        "\"emits\":[]}},"
        "\"analyzed\":{\"levels\":[[\"start\"],[\"ship\"]],\"maxLevel\":1,"
        "\"steps\":{"
        "\"ship\":{\"name\":\"ship\",\"queue\":\"ship\",\"workerId\":"
        "\"orders/ship\",\"subscribes\":[\"created\",\"step:start\"],"
        "\"emits\":[],\"runtime\":\"process\",\"dependsOn\":[\"start\"],"
        "\"triggers\":[],\"level\":1},"
        "\"start\":{\"name\":\"start\",\"queue\":\"start\",\"workerId\":"
        "\"orders/start\",\"subscribes\":[],\"emits\":[\"created\"],"
        "\"runtime\":\"c\",\"dependsOn\":[],\"triggers\":[\"ship\"],"
        "\"level\":0}}},"
        "\"warnings\":[]}");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_function_can_serve_several_flows_F_3)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e1", ENTRY("f1"));
    add(r, "e2", ENTRY("f2"));
    add(r, "shared", "{\"flow\":{\"name\":[\"f2\",\"f1\"],\"subscribes\":"
                     "\"done\"}}");
    add(r, "x", "{\"flow\":{\"name\":\"f1\",\"subscribes\":\"step:e1\","
                "\"emits\":\"done\"}}");
    rep = build(r, 0, NV_OK);
    cr_expect_str_eq(rep, "f2: warning: step \"shared\" subscribes to event "
                          "\"done\", which no step of the flow emits\n"
                          "f2: warning: step \"shared\" is unreachable from "
                          "the entry\n");
    cr_assert_eq(nv__registry_nflows(r), 2);
    cr_expect_str_eq(nv__registry_flow_at(r, 0)->name, "f1");
    cr_expect_str_eq(nv__registry_flow_at(r, 1)->name, "f2");
    cr_expect_eq(nv__flow_step(nv__registry_flow(r, "f1"), "shared"),
                 nv__flow_step(nv__registry_flow(r, "f2"), "shared"));
    cr_expect_null(nv__registry_flow(r, "f3"));
    cr_expect_null(nv__registry_flow_at(r, 2));
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_step_function_can_be_excluded_by_its_own_errors_only)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", ENTRY("f"));
    add(r, "bad", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"step:e\"},"
                  "\"worker\":{\"concurrency\":\"x\"}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/bad.c: worker.concurrency: expected "
                          "integer 1..1024, got \"x\"\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(flows, a_broken_entry_adds_no_follow_on_flow_errors)
{
    nv__registry *r = reg_new();
    char *rep;

    add(r, "e", "{\"flow\":{\"name\":\"f\",\"role\":\"entry\"},"
                "\"worker\":{\"autorun\":1}}");
    add(r, "s", "{\"flow\":{\"name\":\"f\",\"subscribes\":\"step:e\"}}");
    rep = build(r, 0, NV_EINVAL);
    cr_expect_str_eq(rep, "functions/e.c: worker.autorun: expected boolean, "
                          "got 1\n");
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, free_accepts_null)
{
    nv__registry_free(NULL);
}

/* ---- Allocation failures ---- */

static void
build_once(void)
{
    nv__registry *r = NULL;
    char *rep = NULL;
    int rc;

    if (nv__registry_new(&r, NULL) != NV_OK)
        return;
    rc = nv__registry_add(r, "e", "functions/e.c", 0, ENTRY("f"), dummy, NULL,
                          NULL);
    if (rc == NV_OK)
        rc = nv__registry_add(r, "a", "functions/a.c", 0,
                              "{\"flow\":{\"name\":[\"f\",\"g\"],\"subscribes\":"
                              "[\"step:e\",\"x\"],\"emits\":\"y\"}}", dummy,
                              NULL, NULL);
    if (rc == NV_OK)
        rc = nv__registry_add(r, "b", NULL, 0, "{\"worker\":{\"concurrency\":"
                              "0}}", dummy, NULL, NULL);
    if (rc == NV_OK) {
        rc = nv__registry_build(r, NULL, 0, &rep, NULL);
        cr_expect(rc == NV_EINVAL || rc == NV_ENOMEM, "rc %d", rc);
        if (rc == NV_EINVAL && rep != NULL)
            cr_expect(strstr(rep, "worker.concurrency") != NULL);
    } else {
        cr_expect_eq(rc, NV_ENOMEM);
    }
    nv__free(rep);
    nv__registry_free(r);
}

Test(registry, every_allocation_failure_is_survived)
{
    long n;

    for (n = 1; n < 400; n++) {
        nv__alloc_fail_after(n);
        build_once();
    }
    nv__alloc_fail_after(0);
}
