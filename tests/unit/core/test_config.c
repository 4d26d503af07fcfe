/*
 * Configuration (§15, CFG-3..CFG-6, CL-14): the key table, validation
 * messages, resolution of defaults and paths, Redis connections, env.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/config.h"
#include "core/util.h"

static nv_config *
fresh(void)
{
    nv_config *c = NULL;
    nv_error err;

    cr_assert_eq(nv_config_new(&c, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_config_set_project_dir(c, "/proj", &err), NV_OK);
    return c;
}

/* Load 'json' expecting failure; returns the message. */
static void
expect_load_error(const char *json, const char *msg)
{
    nv_config *c = fresh();
    nv_error err;
    char *before = NULL, *after = NULL;

    cr_assert_eq(nv_config_get(c, "", &before, NULL), NV_OK);
    cr_assert_neq(nv_config_load_json(c, json, "nvent.json", &err), NV_OK);
    cr_expect_str_eq(err.msg, msg);
    cr_assert_eq(nv_config_get(c, "", &after, NULL), NV_OK);
    cr_expect_str_eq(before, after, "configuration changed on failure");
    nv_free(before);
    nv_free(after);
    nv_config_free(c);
}

static void
expect_get(nv_config *c, const char *path, const char *json)
{
    char *s = NULL;
    nv_error err;

    cr_assert_eq(nv_config_get(c, path, &s, &err), NV_OK, "%s: %s", path,
                 err.msg);
    cr_expect_str_eq(s, json, "%s: got %s", path, s);
    nv_free(s);
}

static void
load_ok(nv_config *c, const char *json)
{
    nv_error err;

    cr_assert_eq(nv_config_load_json(c, json, "nvent.json", &err), NV_OK,
                 "%s", err.msg);
}

Test(config, defaults_apply_without_any_file)
{
    nv_config *c = fresh();

    expect_get(c, "prefix", "\"nq\"");
    expect_get(c, "server.host", "\"127.0.0.1\"");
    expect_get(c, "server.port", "3000");
    expect_get(c, "server.token", "null");
    expect_get(c, "server.ui", "true");
    expect_get(c, "functions.dir", "\"/proj/functions\"");
    expect_get(c, "functions.buildDir", "\"/proj/.nvent/build\"");
    expect_get(c, "functions.cc", "\"cc\"");
    expect_get(c, "functions.cflags", "[]");
    expect_get(c, "functions.maxMessageBytes", "16777216");
    expect_get(c, "shutdownGraceMs", "10000");
    expect_get(c, "debug.level", "\"info\"");
    expect_get(c, "connections.redis",
               "{\"host\":\"127.0.0.1\",\"port\":6379,\"db\":0}");
    expect_get(c, "connections.file.dataDir", "\"/proj/.data\"");
    expect_get(c, "queue.adapter", "\"memory\"");
    expect_get(c, "store.adapter", "\"memory\"");
    expect_get(c, "stream.adapter", "\"memory\"");
    expect_get(c, "queue.prefix", "\"nq\"");
    expect_get(c, "queue.file.dataDir", "\"/proj/.data/queue\"");
    expect_get(c, "store.file.dataDir", "\"/proj/.data/store\"");
    expect_get(c, "stream.file.dataDir", "\"/proj/.data/stream\"");
    expect_get(c, "stream.file.synchronous", "\"normal\"");
    expect_get(c, "queue.worker",
               "{\"concurrency\":2,\"autorun\":true,\"lockDurationMs\":30000,"
               "\"maxStalledCount\":1}");
    expect_get(c, "queue.maxQueueSize", "0");
    expect_get(c, "queue.limiter", "null");
    expect_get(c, "queue.defaultJobOptions",
               "{\"attempts\":1,\"backoff\":0,\"delay\":0,\"priority\":0,"
               "\"timeout\":0,\"lifo\":false,\"removeOnComplete\":1000,"
               "\"removeOnFail\":5000}");
    expect_get(c, "store.state.autoScope", "\"always\"");
    expect_get(c, "store.state.cleanup",
               "{\"strategy\":\"never\",\"ttlMs\":3600000}");
    expect_get(c, "store.retention",
               "{\"maxRunsPerFlow\":1000,\"maxAgeMs\":604800000,"
               "\"maxLogEventsPerRun\":10000}");
    expect_get(c, "flows.stallDetection",
               "{\"enabled\":true,\"stallTimeout\":1800000,"
               "\"checkInterval\":60000,\"enablePeriodicCheck\":true}");
    expect_get(c, "scheduler.misfire", "\"once\"");
    expect_get(c, "scheduler.misfireThresholdMs", "60000");
    nv_config_free(c);
}

Test(config, internal_accessors_read_the_resolved_document)
{
    nv_config *c = fresh();

    cr_expect_eq(nv__config_int(c, "server.port"), 3000);
    cr_expect_str_eq(nv__config_str(c, "server.host"), "127.0.0.1");
    cr_expect_eq(nv__config_bool(c, "server.ui"), 1);
    cr_expect_null(nv__config_str(c, "server.token"));
    cr_expect_null(nv__config_at(c, "queue.limiter"));
    cr_expect_null(nv__config_at(c, "no.such"));
    cr_expect_eq(nv__config_int(c, "no.such"), 0);
    nv_config_free(c);
}

Test(config, a_file_overrides_defaults_and_keeps_the_rest)
{
    nv_config *c = fresh();

    load_ok(c, "{\"server\":{\"port\":3001},\"queue\":{\"worker\":"
               "{\"concurrency\":8}}}");
    expect_get(c, "server.port", "3001");
    expect_get(c, "server.host", "\"127.0.0.1\"");
    expect_get(c, "queue.worker.concurrency", "8");
    expect_get(c, "queue.worker.lockDurationMs", "30000");
    /* a second document merges key by key */
    load_ok(c, "{\"server\":{\"host\":\"0.0.0.0\"}}");
    expect_get(c, "server.port", "3001");
    expect_get(c, "server.host", "\"0.0.0.0\"");
    nv_config_free(c);
}

Test(config, unknown_keys_are_refused_at_any_depth)
{
    expect_load_error("{\"queue\":{\"worker\":{\"concurency\":2}}}",
                      "nvent.json: queue.worker.concurency: unknown key");
    expect_load_error("{\"bogus\":1}", "nvent.json: bogus: unknown key");
    expect_load_error("{\"queue\":{\"file\":{\"dataDir\":\"x\",\"y\":1}}}",
                      "nvent.json: queue.file.y: unknown key");
    expect_load_error("{\"connections\":{\"redis\":{\"hots\":\"x\"}}}",
                      "nvent.json: connections.redis.hots: unknown key");
    expect_load_error("{\"queue\":{\"defaultJobOptions\":{\"atempts\":2}}}",
                      "nvent.json: queue.defaultJobOptions.atempts: unknown key");
    expect_load_error("{\"queue\":{\"limiter\":{\"max\":1,\"duration\":5,"
                      "\"x\":1}}}",
                      "nvent.json: queue.limiter.x: unknown key");
}

Test(config, keys_of_the_typescript_nvent_are_not_supported)
{
    expect_load_error("{\"dir\":\"x\"}",
                      "nvent.json: dir: not supported (use functions.dir)");
    expect_load_error("{\"ui\":{}}",
                      "nvent.json: ui: not supported (use server.ui)");
    expect_load_error("{\"flow\":{}}",
                      "nvent.json: flow: not supported (use flows)");
    expect_load_error("{\"store\":{\"eventTTL\":5}}",
                      "nvent.json: store.eventTTL: not supported "
                      "(use store.retention)");
    expect_load_error("{\"store\":{\"metadataTTL\":5}}",
                      "nvent.json: store.metadataTTL: not supported "
                      "(use store.retention)");
    expect_load_error("{\"store\":{\"kvTTL\":5}}",
                      "nvent.json: store.kvTTL: not supported "
                      "(use store.retention)");
    expect_load_error("{\"store\":{\"indexTTL\":5}}",
                      "nvent.json: store.indexTTL: not supported "
                      "(use store.retention)");
    expect_load_error("{\"store\":{\"compression\":true}}",
                      "nvent.json: store.compression: not supported "
                      "(use store.retention)");
    expect_load_error("{\"stream\":{\"retryAttempts\":5}}",
                      "nvent.json: stream.retryAttempts: not supported");
    expect_load_error("{\"stream\":{\"retryDelay\":5}}",
                      "nvent.json: stream.retryDelay: not supported");
    expect_load_error("{\"queue\":{\"worker\":{\"pollingIntervalMs\":5}}}",
                      "nvent.json: queue.worker.pollingIntervalMs: "
                      "not supported");
    expect_load_error("{\"queue\":{\"worker\":{\"drainDelayMs\":5}}}",
                      "nvent.json: queue.worker.drainDelayMs: not supported");
    expect_load_error("{\"queue\":{\"defaultJobOptions\":{\"repeat\":{}}}}",
                      "nvent.json: queue.defaultJobOptions.repeat: "
                      "not supported");
}

Test(config, wrong_types_and_ranges_name_the_key_and_the_value)
{
    expect_load_error("{\"server\":{\"port\":\"x\"}}",
                      "nvent.json: server.port: expected integer 0..65535, "
                      "got \"x\"");
    expect_load_error("{\"server\":{\"port\":65536}}",
                      "nvent.json: server.port: expected integer 0..65535, "
                      "got 65536");
    expect_load_error("{\"server\":{\"ui\":1}}",
                      "nvent.json: server.ui: expected boolean, got 1");
    expect_load_error("{\"server\":{\"host\":\"\"}}",
                      "nvent.json: server.host: expected non-empty string, "
                      "got \"\"");
    expect_load_error("{\"server\":{\"token\":5}}",
                      "nvent.json: server.token: expected non-empty string "
                      "or null, got 5");
    expect_load_error("{\"server\":[]}",
                      "nvent.json: server: expected object, got []");
    expect_load_error("{\"queue\":{\"adapter\":\"sql\"}}",
                      "nvent.json: queue.adapter: expected one of \"memory\", "
                      "\"file\", \"redis\", got \"sql\"");
    expect_load_error("{\"debug\":{\"level\":\"trace\"}}",
                      "nvent.json: debug.level: expected one of \"debug\", "
                      "\"info\", \"warn\", \"error\", \"silent\", got \"trace\"");
    expect_load_error("{\"functions\":{\"cflags\":[\"-O2\",3]}}",
                      "nvent.json: functions.cflags[1]: expected string, got 3");
    expect_load_error("{\"functions\":{\"maxMessageBytes\":1023}}",
                      "nvent.json: functions.maxMessageBytes: expected "
                      "integer >= 1024, got 1023");
    expect_load_error("{\"queue\":{\"worker\":{\"lockDurationMs\":999}}}",
                      "nvent.json: queue.worker.lockDurationMs: expected "
                      "integer >= 1000, got 999");
    expect_load_error("{\"store\":{\"state\":{\"cleanup\":{\"strategy\":"
                      "\"sometimes\"}}}}",
                      "nvent.json: store.state.cleanup.strategy: expected one "
                      "of \"never\", \"immediate\", \"on-complete\", \"ttl\", "
                      "got \"sometimes\"");
    expect_load_error("[1]",
                      "nvent.json: configuration: expected object, got [1]");
}

Test(config, integers_with_a_fraction_or_exponent_are_refused_CL_14)
{
    expect_load_error("{\"server\":{\"port\":2.0}}",
                      "nvent.json: server.port: expected integer 0..65535, "
                      "got 2.0");
    expect_load_error("{\"queue\":{\"worker\":{\"concurrency\":1e1}}}",
                      "nvent.json: queue.worker.concurrency: expected integer "
                      "1..1024, got 10.0");
}

Test(config, invalid_json_is_reported_with_its_position)
{
    nv_config *c = fresh();
    nv_error err;

    cr_assert_eq(nv_config_load_json(c, "{\"a\":", "x.json", &err), NV_EJSON);
    cr_expect(strncmp(err.msg, "x.json: invalid JSON: ", 22) == 0, "%s",
              err.msg);
    cr_assert_eq(nv_config_load_json(c, "{\"prefix\":\"a\",\"prefix\":\"b\"}",
                                     "x.json", &err), NV_EJSON);
    nv_config_free(c);
}

Test(config, relative_paths_resolve_against_the_project_dir)
{
    nv_config *c = fresh();
    nv_error err;

    load_ok(c, "{\"functions\":{\"dir\":\"./src/../fns/\"},\"connections\":"
               "{\"file\":{\"dataDir\":\"var/data\"}},\"store\":{\"file\":"
               "{\"dataDir\":\"/abs/store\",\"synchronous\":\"full\"}}}");
    expect_get(c, "functions.dir", "\"/proj/fns\"");
    expect_get(c, "queue.file.dataDir", "\"/proj/var/data/queue\"");
    expect_get(c, "stream.file.dataDir", "\"/proj/var/data/stream\"");
    expect_get(c, "store.file", "{\"dataDir\":\"/abs/store\","
                                "\"synchronous\":\"full\"}");
    /* a later project dir re-resolves the same relative paths */
    cr_assert_eq(nv_config_set_project_dir(c, "/other/", &err), NV_OK);
    expect_get(c, "functions.dir", "\"/other/fns\"");
    expect_get(c, "queue.file.dataDir", "\"/other/var/data/queue\"");
    nv_config_free(c);
}

Test(config, prefix_is_the_default_of_each_adapter_prefix_CFG_4)
{
    nv_config *c = fresh();

    load_ok(c, "{\"prefix\":\"app\",\"store\":{\"prefix\":\"st\"}}");
    expect_get(c, "queue.prefix", "\"app\"");
    expect_get(c, "store.prefix", "\"st\"");
    expect_get(c, "stream.prefix", "\"app\"");
    nv_config_free(c);
}

Test(config, redis_connection_in_host_form_fills_defaults)
{
    nv_config *c = fresh();

    load_ok(c, "{\"connections\":{\"redis\":{\"host\":\"r1\",\"password\":"
               "\"pw\"}}}");
    expect_get(c, "connections.redis",
               "{\"host\":\"r1\",\"port\":6379,\"db\":0,\"password\":\"pw\"}");
    expect_get(c, "queue.redis",
               "{\"host\":\"r1\",\"port\":6379,\"db\":0,\"password\":\"pw\"}");
    nv_config_free(c);
}

Test(config, redis_url_is_parsed_CFG_5)
{
    nv_config *c = fresh();

    load_ok(c, "{\"connections\":{\"redis\":{\"url\":"
               "\"redis://al%40x:s%3Acret@cache.local:6380/3\"}}}");
    expect_get(c, "connections.redis",
               "{\"host\":\"cache.local\",\"port\":6380,\"db\":3,"
               "\"username\":\"al@x\",\"password\":\"s:cret\"}");
    load_ok(c, "{\"connections\":{\"redis\":{\"url\":\"redis://:pw@h\"}}}");
    expect_get(c, "connections.redis",
               "{\"host\":\"h\",\"port\":6379,\"db\":0,\"password\":\"pw\"}");
    load_ok(c, "{\"connections\":{\"redis\":{\"url\":\"redis://[::1]:7000/\"}}}");
    expect_get(c, "connections.redis",
               "{\"host\":\"::1\",\"port\":7000,\"db\":0}");
    nv_config_free(c);
}

Test(config, bad_redis_connections_are_refused)
{
    expect_load_error("{\"connections\":{\"redis\":{\"url\":\"rediss://h\"}}}",
                      "nvent.json: connections.redis.url: TLS is not supported");
    expect_load_error("{\"connections\":{\"redis\":{\"url\":\"redis://h\","
                      "\"host\":\"h\"}}}",
                      "nvent.json: connections.redis: give either {url} or "
                      "{host, port, username?, password?, db}, not both");
    expect_load_error("{\"connections\":{\"redis\":{\"url\":\"http://h\"}}}",
                      "nvent.json: connections.redis.url: expected "
                      "redis://[[user]:password@]host[:port][/db], got "
                      "\"http://h\"");
    expect_load_error("{\"connections\":{\"redis\":{\"url\":\"redis://h:0\"}}}",
                      "nvent.json: connections.redis.url: expected "
                      "redis://[[user]:password@]host[:port][/db], got "
                      "\"redis://h:0\"");
    expect_load_error("{\"connections\":{\"redis\":{\"url\":\"redis://h/x\"}}}",
                      "nvent.json: connections.redis.url: expected "
                      "redis://[[user]:password@]host[:port][/db], got "
                      "\"redis://h/x\"");
    expect_load_error("{\"queue\":{\"redis\":{\"port\":\"6379\"}}}",
                      "nvent.json: queue.redis.port: expected integer "
                      "1..65535, got \"6379\"");
    expect_load_error("{\"connections\":{\"redis\":\"redis://h\"}}",
                      "nvent.json: connections.redis: expected {host, port, "
                      "username?, password?, db} or {url}, got \"redis://h\"");
}

Test(config, a_per_adapter_redis_block_replaces_connections_redis)
{
    nv_config *c = fresh();
    char *s;

    load_ok(c, "{\"connections\":{\"redis\":{\"host\":\"shared\"}},"
               "\"queue\":{\"adapter\":\"redis\",\"prefix\":\"qp\","
               "\"redis\":{\"url\":\"redis://own:6390/2\"}}}");
    s = nv__config_adapter_settings(c, "queue");
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "{\"adapter\":\"redis\",\"prefix\":\"qp\",\"file\":"
                        "{\"dataDir\":\"/proj/.data/queue\",\"synchronous\":"
                        "\"normal\"},\"redis\":{\"host\":\"own\",\"port\":6390,"
                        "\"db\":2}}");
    nv__free(s);
    s = nv__config_adapter_settings(c, "store");
    cr_expect(strstr(s, "\"host\":\"shared\"") != NULL, "%s", s);
    nv__free(s);
    cr_expect_null(nv__config_adapter_settings(c, "other"));
    nv_config_free(c);
}

Test(config, set_validates_like_a_file)
{
    nv_config *c = fresh();
    nv_error err;

    cr_assert_eq(nv_config_set(c, "server.port", "3005", "cli", &err), NV_OK);
    expect_get(c, "server.port", "3005");
    cr_assert_eq(nv_config_set(c, "server.port", "\"x\"", "--port", &err),
                 NV_EINVAL);
    cr_expect_str_eq(err.msg, "--port: server.port: expected integer "
                              "0..65535, got \"x\"");
    cr_assert_eq(nv_config_set(c, "server.prot", "1", NULL, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "server.prot: unknown key");
    cr_assert_eq(nv_config_set(c, "dir", "\"x\"", NULL, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "dir: not supported (use functions.dir)");
    cr_assert_eq(nv_config_set(c, "server.port", "30 01", NULL, &err),
                 NV_EJSON);
    expect_get(c, "server.port", "3005");
    /* a whole block */
    cr_assert_eq(nv_config_set(c, "queue.worker", "{\"autorun\":false}", NULL,
                               &err), NV_OK, "%s", err.msg);
    expect_get(c, "queue.worker.autorun", "false");
    expect_get(c, "queue.worker.concurrency", "2");
    nv_config_free(c);
}

Test(config, set_inside_an_object_value_edits_that_value)
{
    nv_config *c = fresh();
    nv_error err;

    cr_assert_eq(nv_config_set(c, "queue.defaultJobOptions.attempts", "3",
                               NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_config_set(c, "queue.defaultJobOptions.priority", "7",
                               NULL, &err), NV_OK, "%s", err.msg);
    expect_get(c, "queue.defaultJobOptions.attempts", "3");
    expect_get(c, "queue.defaultJobOptions.priority", "7");
    cr_assert_eq(nv_config_set(c, "queue.defaultJobOptions.attempts", "0",
                               NULL, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "queue.defaultJobOptions.attempts: expected "
                              "integer 1..1000, got 0");
    cr_assert_eq(nv_config_set(c, "queue.defaultJobOptions.jobId", "\"a\"",
                               NULL, &err), NV_EINVAL);
    cr_assert_eq(nv_config_set(c, "queue.limiter",
                               "{\"max\":5,\"duration\":1000}", NULL, &err),
                 NV_OK);
    expect_get(c, "queue.limiter", "{\"max\":5,\"duration\":1000}");
    cr_assert_eq(nv_config_set(c, "queue.limiter", "null", NULL, &err), NV_OK);
    expect_get(c, "queue.limiter", "null");
    nv_config_free(c);
}

Test(config, file_default_job_options_are_stored_resolved)
{
    nv_config *c = fresh();

    load_ok(c, "{\"queue\":{\"defaultJobOptions\":{\"attempts\":3,"
               "\"backoff\":{\"type\":\"exponential\",\"delay\":100},"
               "\"removeOnComplete\":true}}}");
    expect_get(c, "queue.defaultJobOptions",
               "{\"attempts\":3,\"backoff\":{\"type\":\"exponential\","
               "\"delay\":100},\"delay\":0,\"priority\":0,\"timeout\":0,"
               "\"lifo\":false,\"removeOnComplete\":true,\"removeOnFail\":5000}");
    nv_config_free(c);
}

Test(config, limiter_needs_max_and_duration)
{
    expect_load_error("{\"queue\":{\"limiter\":{\"max\":5}}}",
                      "nvent.json: queue.limiter.duration: required");
    expect_load_error("{\"queue\":{\"limiter\":{\"max\":0,\"duration\":5}}}",
                      "nvent.json: queue.limiter.max: expected integer >= 1, "
                      "got 0");
    expect_load_error("{\"queue\":{\"limiter\":{\"max\":1,\"duration\":5,"
                      "\"groupKey\":\"\"}}}",
                      "nvent.json: queue.limiter.groupKey: expected non-empty "
                      "string, got \"\"");
}

Test(config, get_refuses_unknown_keys_and_gives_members_of_values)
{
    nv_config *c = fresh();
    nv_error err;
    char *s = NULL;

    cr_assert_eq(nv_config_get(c, "server.nope", &s, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "server.nope: unknown key");
    expect_get(c, "connections.redis.port", "6379");
    nv_config_free(c);
}

Test(config, dup_is_a_deep_copy)
{
    nv_config *c = fresh(), *d = NULL;
    nv_error err;

    cr_assert_eq(nv__config_dup(c, &d, &err), NV_OK);
    cr_assert_eq(nv_config_set(c, "server.port", "1", NULL, &err), NV_OK);
    expect_get(d, "server.port", "3000");
    expect_get(d, "functions.dir", "\"/proj/functions\"");
    cr_assert_eq(nv_config_set(d, "prefix", "\"zz\"", NULL, &err), NV_OK);
    expect_get(d, "queue.prefix", "\"zz\"");
    expect_get(c, "queue.prefix", "\"nq\"");
    nv_config_free(c);
    nv_config_free(d);
}

/* ---- Environment (CFG-6) ---- */

Test(config_env, variables_override_file_values)
{
    nv_config *c = fresh();
    nv_error err;
    char *env[] = {
        (char *)"NVENT_PORT=4000", (char *)"NVENT_HOST=0.0.0.0",
        (char *)"NVENT_TOKEN=s3cret", (char *)"NVENT_LOG_LEVEL=debug",
        (char *)"NVENT_DATA_DIR=/var/nv", (char *)"PATH=/bin", NULL,
    };

    load_ok(c, "{\"server\":{\"port\":3001,\"host\":\"h\"}}");
    cr_assert_eq(nv__config_apply_env(c, env, &err), NV_OK, "%s", err.msg);
    expect_get(c, "server.port", "4000");
    expect_get(c, "server.host", "\"0.0.0.0\"");
    expect_get(c, "server.token", "\"s3cret\"");
    expect_get(c, "debug.level", "\"debug\"");
    expect_get(c, "connections.file.dataDir", "\"/var/nv\"");
    expect_get(c, "store.file.dataDir", "\"/var/nv/store\"");
    nv_config_free(c);
}

Test(config_env, per_adapter_blocks_of_the_file_keep_priority)
{
    nv_config *c = fresh();
    nv_error err;
    char *env[] = {
        (char *)"NVENT_REDIS_URL=redis://envhost:7000/1",
        (char *)"NVENT_DATA_DIR=envdata", NULL,
    };

    load_ok(c, "{\"connections\":{\"redis\":{\"host\":\"filehost\"}},"
               "\"queue\":{\"redis\":{\"host\":\"qhost\"},"
               "\"file\":{\"dataDir\":\"qdata\"}}}");
    cr_assert_eq(nv__config_apply_env(c, env, &err), NV_OK, "%s", err.msg);
    expect_get(c, "connections.redis",
               "{\"host\":\"envhost\",\"port\":7000,\"db\":1}");
    expect_get(c, "queue.redis", "{\"host\":\"qhost\",\"port\":6379,\"db\":0}");
    expect_get(c, "store.redis", "{\"host\":\"envhost\",\"port\":7000,\"db\":1}");
    expect_get(c, "queue.file.dataDir", "\"/proj/qdata\"");
    expect_get(c, "store.file.dataDir", "\"/proj/envdata/store\"");
    nv_config_free(c);
}

Test(config_env, an_invalid_value_names_the_variable_and_changes_nothing)
{
    nv_config *c = fresh();
    nv_error err;
    char *env1[] = { (char *)"NVENT_HOST=h2", (char *)"NVENT_PORT=x", NULL };
    char *env2[] = { (char *)"NVENT_REDIS_URL=rediss://h", NULL };
    char *env3[] = { (char *)"NVENT_LOG_LEVEL=loud", NULL };
    char *env4[] = { (char *)"NVENT_PORT=70000", NULL };

    cr_assert_eq(nv__config_apply_env(c, env1, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "NVENT_PORT: server.port: expected integer "
                              "0..65535, got \"x\"");
    expect_get(c, "server.host", "\"127.0.0.1\"");
    cr_assert_eq(nv__config_apply_env(c, env2, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "NVENT_REDIS_URL: connections.redis.url: TLS is "
                              "not supported");
    cr_assert_eq(nv__config_apply_env(c, env3, &err), NV_EINVAL);
    cr_expect(strncmp(err.msg, "NVENT_LOG_LEVEL: debug.level: expected one of",
                      45) == 0, "%s", err.msg);
    cr_assert_eq(nv__config_apply_env(c, env4, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "NVENT_PORT: server.port: expected integer "
                              "0..65535, got 70000");
    nv_config_free(c);
}

Test(config_env, cc_is_the_default_compiler_unless_the_file_sets_one)
{
    nv_config *c = fresh();
    nv_error err;
    char *env[] = { (char *)"CC=clang", NULL };

    cr_assert_eq(nv__config_apply_env(c, env, &err), NV_OK);
    expect_get(c, "functions.cc", "\"clang\"");
    nv_config_free(c);
    c = fresh();
    load_ok(c, "{\"functions\":{\"cc\":\"gcc-12\"}}");
    cr_assert_eq(nv__config_apply_env(c, env, &err), NV_OK);
    expect_get(c, "functions.cc", "\"gcc-12\"");
    nv_config_free(c);
}

Test(config_env, no_environment_changes_nothing)
{
    nv_config *c = fresh();
    nv_error err;

    cr_assert_eq(nv__config_apply_env(c, NULL, &err), NV_OK);
    expect_get(c, "server.port", "3000");
    nv_config_free(c);
}

/* ---- Allocation failures ---- */

Test(config, every_allocation_failure_is_survived)
{
    nv_config *c, *d;
    char *env[] = { (char *)"NVENT_PORT=1", (char *)"CC=x", NULL };
    char *s;
    long n;
    int rc;

    for (n = 1; n < 200; n++) {
        c = d = NULL;
        s = NULL;
        nv__alloc_fail_after(n);
        if (nv_config_new(&c, NULL) == NV_OK) {
            rc = nv_config_load_json(c, "{\"functions\":{\"dir\":\"f\"},"
                                        "\"queue\":{\"adapter\":\"file\"}}",
                                     "x", NULL);
            cr_expect(rc == NV_OK || rc == NV_ENOMEM, "rc %d", rc);
            rc = nv_config_set_project_dir(c, "/p", NULL);
            cr_expect(rc == NV_OK || rc == NV_ENOMEM, "rc %d", rc);
            rc = nv__config_apply_env(c, env, NULL);
            cr_expect(rc == NV_OK || rc == NV_ENOMEM, "rc %d", rc);
            rc = nv__config_dup(c, &d, NULL);
            cr_expect(rc == NV_OK || rc == NV_ENOMEM, "rc %d", rc);
            nv__free(nv__config_adapter_settings(c, "queue"));
            if (nv_config_get(c, "server", &s, NULL) == NV_OK)
                nv_free(s);
        }
        nv_config_free(d);
        nv_config_free(c);
    }
    nv__alloc_fail_after(0);
}
