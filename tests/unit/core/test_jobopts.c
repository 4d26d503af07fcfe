/*
 * Job options (§3.1): validation messages naming the option, layering
 * (CF-5: backoff replaced whole), serialisation, and the Q-6 wait.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/jobopts.h"

static int
apply(nv__jobopts *o, const char *json, int allow_job_id, nv_error *err)
{
    json_t *j = json_loads(json, 0, NULL);
    int rc;

    cr_assert_not_null(j, "bad test JSON %s", json);
    rc = nv__jobopts_apply(o, j, allow_job_id, "opts", err);
    json_decref(j);
    return rc;
}

static void
expect_error(const char *json, const char *msg)
{
    nv__jobopts o, before;
    nv_error err;

    nv__jobopts_default(&o);
    before = o;
    cr_assert_eq(apply(&o, json, 1, &err), NV_EINVAL, "%s accepted", json);
    cr_expect_str_eq(err.msg, msg);
    cr_expect(memcmp(&o, &before, sizeof(o)) == 0, "options changed");
}

static void
expect_json(const nv__jobopts *o, const char *want)
{
    json_t *j = nv__jobopts_to_json(o);
    char *s = json_dumps(j, JSON_COMPACT);

    cr_expect_str_eq(s, want);
    free(s);
    json_decref(j);
}

Test(jobopts, defaults_are_those_of_section_3_1)
{
    nv__jobopts o;

    nv__jobopts_default(&o);
    cr_expect_eq(o.attempts, 1);
    cr_expect_eq(o.backoff_delay, 0);
    cr_expect_eq(o.delay, 0);
    cr_expect_eq(o.priority, 0);
    cr_expect_eq(o.timeout, 0);
    cr_expect_eq(o.lifo, 0);
    cr_expect_eq(o.remove_on_complete, 1000);
    cr_expect_eq(o.remove_on_fail, 5000);
    cr_expect_str_eq(o.job_id, "");
    expect_json(&o, "{\"attempts\":1,\"backoff\":0,\"delay\":0,\"priority\":0,"
                    "\"timeout\":0,\"lifo\":false,\"removeOnComplete\":1000,"
                    "\"removeOnFail\":5000}");
}

Test(jobopts, every_option_is_applied)
{
    nv__jobopts o;
    nv_error err;

    nv__jobopts_default(&o);
    cr_assert_eq(apply(&o, "{\"attempts\":5,\"backoff\":{\"type\":"
                           "\"exponential\",\"delay\":200,\"jitter\":0.5},"
                           "\"delay\":10,\"priority\":2097152,\"timeout\":900,"
                           "\"lifo\":true,\"removeOnComplete\":false,"
                           "\"removeOnFail\":true,\"jobId\":\"order-1\"}",
                       1, &err), NV_OK, "%s", err.msg);
    cr_expect_eq(o.attempts, 5);
    cr_expect_eq(o.backoff_type, NV__BACKOFF_EXPONENTIAL);
    cr_expect_eq(o.backoff_number, 0);
    cr_expect_eq(o.backoff_delay, 200);
    cr_expect_float_eq(o.jitter, 0.5, 1e-9);
    cr_expect_eq(o.delay, 10);
    cr_expect_eq(o.priority, 2097152);
    cr_expect_eq(o.timeout, 900);
    cr_expect_eq(o.lifo, 1);
    cr_expect_eq(o.remove_on_complete, NV_KEEP_ALL);
    cr_expect_eq(o.remove_on_fail, 0);
    cr_expect_str_eq(o.job_id, "order-1");
    expect_json(&o, "{\"attempts\":5,\"backoff\":{\"type\":\"exponential\","
                    "\"delay\":200,\"jitter\":0.5},\"delay\":10,"
                    "\"priority\":2097152,\"timeout\":900,\"lifo\":true,"
                    "\"removeOnComplete\":false,\"removeOnFail\":true,"
                    "\"jobId\":\"order-1\"}");
}

Test(jobopts, bad_values_name_the_option)
{
    expect_error("{\"priority\":-1}",
                 "opts.priority: expected integer 0..2097152, got -1");
    expect_error("{\"priority\":2097153}",
                 "opts.priority: expected integer 0..2097152, got 2097153");
    expect_error("{\"attempts\":0}",
                 "opts.attempts: expected integer 1..1000, got 0");
    expect_error("{\"attempts\":1001}",
                 "opts.attempts: expected integer 1..1000, got 1001");
    expect_error("{\"attempts\":2.0}",
                 "opts.attempts: expected integer 1..1000, got 2.0");
    expect_error("{\"delay\":-5}", "opts.delay: expected integer >= 0, got -5");
    expect_error("{\"delay\":\"5\"}",
                 "opts.delay: expected integer >= 0, got \"5\"");
    expect_error("{\"timeout\":1.5}",
                 "opts.timeout: expected integer >= 0, got 1.5");
    expect_error("{\"lifo\":1}", "opts.lifo: expected boolean, got 1");
    expect_error("{\"removeOnComplete\":-1}",
                 "opts.removeOnComplete: expected boolean or integer >= 0, "
                 "got -1");
    expect_error("{\"removeOnFail\":\"yes\"}",
                 "opts.removeOnFail: expected boolean or integer >= 0, "
                 "got \"yes\"");
    expect_error("{\"jobId\":\"\"}",
                 "opts.jobId: expected string of 1..256 bytes without "
                 "control characters, got \"\"");
    expect_error("{\"jobId\":\"a\\nb\"}",
                 "opts.jobId: expected string of 1..256 bytes without "
                 "control characters, got \"a\\nb\"");
    expect_error("{\"jobId\":5}",
                 "opts.jobId: expected string of 1..256 bytes without "
                 "control characters, got 5");
    expect_error("{\"foo\":1}", "opts.foo: unknown key");
    expect_error("{\"repeat\":{\"every\":5}}", "opts.repeat: not supported");
}

Test(jobopts, bad_backoffs_name_the_member)
{
    expect_error("{\"backoff\":-1}",
                 "opts.backoff: expected integer >= 0 or {type: "
                 "\"fixed\"|\"exponential\", delay, jitter?}, got -1");
    expect_error("{\"backoff\":{\"type\":\"linear\",\"delay\":1}}",
                 "opts.backoff.type: expected one of \"fixed\", "
                 "\"exponential\", got \"linear\"");
    expect_error("{\"backoff\":{\"delay\":1}}", "opts.backoff.type: required");
    expect_error("{\"backoff\":{\"type\":\"fixed\"}}",
                 "opts.backoff.delay: required");
    expect_error("{\"backoff\":{\"type\":\"fixed\",\"delay\":1,\"jitter\":2}}",
                 "opts.backoff.jitter: expected number 0..1, got 2");
    expect_error("{\"backoff\":{\"type\":\"fixed\",\"delay\":1,\"x\":2}}",
                 "opts.backoff.x: unknown key");
}

Test(jobopts, a_non_object_is_refused)
{
    expect_error("[]", "opts: expected object, got []");
}

Test(jobopts, job_id_is_refused_outside_enqueue)
{
    nv__jobopts o;
    nv_error err;

    nv__jobopts_default(&o);
    cr_assert_eq(apply(&o, "{\"jobId\":\"x\"}", 0, &err), NV_EINVAL);
    cr_expect_str_eq(err.msg, "opts.jobId: not allowed here (only at enqueue)");
}

Test(jobopts, a_later_backoff_replaces_the_earlier_one_whole_CF_5)
{
    nv__jobopts o;
    nv_error err;

    nv__jobopts_default(&o);
    cr_assert_eq(apply(&o, "{\"backoff\":{\"type\":\"exponential\","
                           "\"delay\":100,\"jitter\":0.3},\"attempts\":4}",
                       0, &err), NV_OK);
    cr_assert_eq(apply(&o, "{\"backoff\":{\"type\":\"fixed\",\"delay\":7}}",
                       0, &err), NV_OK);
    cr_expect_eq(o.backoff_type, NV__BACKOFF_FIXED);
    cr_expect_float_eq(o.jitter, 0.0, 1e-12);
    cr_expect_eq(o.attempts, 4, "untouched options stay");
    cr_assert_eq(apply(&o, "{\"backoff\":50}", 0, &err), NV_OK);
    cr_expect_eq(o.backoff_number, 1);
    expect_json(&o, "{\"attempts\":4,\"backoff\":50,\"delay\":0,\"priority\":0,"
                    "\"timeout\":0,\"lifo\":false,\"removeOnComplete\":1000,"
                    "\"removeOnFail\":5000}");
}

Test(jobopts, the_serialised_form_applies_back_to_the_same_options)
{
    nv__jobopts a, b;
    nv_error err;
    json_t *j;

    nv__jobopts_default(&a);
    cr_assert_eq(apply(&a, "{\"backoff\":{\"type\":\"fixed\",\"delay\":3},"
                           "\"removeOnComplete\":0,\"removeOnFail\":false}",
                       0, &err), NV_OK);
    j = nv__jobopts_to_json(&a);
    nv__jobopts_default(&b);
    cr_assert_eq(nv__jobopts_apply(&b, j, 0, "opts", &err), NV_OK, "%s",
                 err.msg);
    json_decref(j);
    cr_expect(memcmp(&a, &b, sizeof(a)) == 0);
}

/* ---- Q-6 ---- */

static nv__jobopts
backoff(const char *json)
{
    nv__jobopts o;
    nv_error err;

    nv__jobopts_default(&o);
    cr_assert_eq(apply(&o, json, 0, &err), NV_OK, "%s", err.msg);
    return o;
}

Test(backoff, number_and_fixed_forms_wait_delay)
{
    nv__jobopts n = backoff("{\"backoff\":250}");
    nv__jobopts f = backoff("{\"backoff\":{\"type\":\"fixed\",\"delay\":300}}");

    cr_expect_eq(nv__backoff_ms(&n, 1, 0.0), 250);
    cr_expect_eq(nv__backoff_ms(&n, 7, 0.9), 250);
    cr_expect_eq(nv__backoff_ms(&f, 3, 0.5), 300);
}

Test(backoff, exponential_doubles_per_attempt)
{
    nv__jobopts e = backoff("{\"backoff\":{\"type\":\"exponential\","
                            "\"delay\":100}}");

    cr_expect_eq(nv__backoff_ms(&e, 1, 0), 100);
    cr_expect_eq(nv__backoff_ms(&e, 2, 0), 200);
    cr_expect_eq(nv__backoff_ms(&e, 3, 0), 400);
    cr_expect_eq(nv__backoff_ms(&e, 11, 0), 102400);
}

Test(backoff, jitter_subtracts_floor_of_w_j_r)
{
    nv__jobopts e = backoff("{\"backoff\":{\"type\":\"exponential\","
                            "\"delay\":1000,\"jitter\":0.5}}");

    cr_expect_eq(nv__backoff_ms(&e, 1, 0.0), 1000);
    cr_expect_eq(nv__backoff_ms(&e, 1, 0.5), 750);        /* 1000 - 250 */
    cr_expect_eq(nv__backoff_ms(&e, 2, 0.999), 1001);     /* 2000 - 999 */
    e = backoff("{\"backoff\":{\"type\":\"fixed\",\"delay\":10,"
                "\"jitter\":1}}");
    cr_expect_eq(nv__backoff_ms(&e, 1, 0.99), 1);         /* 10 - 9 */
    cr_expect_eq(nv__backoff_ms(&e, 1, 0.3), 7);          /* 10 - 3 */
}

Test(backoff, saturates_instead_of_overflowing)
{
    nv__jobopts e = backoff("{\"backoff\":{\"type\":\"exponential\","
                            "\"delay\":9223372036854775807}}");
    int64_t w;

    cr_expect_eq(nv__backoff_ms(&e, 2, 0), INT64_MAX);
    e = backoff("{\"backoff\":{\"type\":\"exponential\",\"delay\":3}}");
    cr_expect_eq(nv__backoff_ms(&e, 1000, 0), INT64_MAX);
    cr_expect_eq(nv__backoff_ms(&e, 63, 0), INT64_MAX);
    cr_expect_eq(nv__backoff_ms(&e, 62, 0), (int64_t)3 << 61);
    cr_expect_eq(nv__backoff_ms(&e, 61, 0), (int64_t)3 << 60);
    e = backoff("{\"backoff\":{\"type\":\"exponential\",\"delay\":1,"
                "\"jitter\":1}}");
    w = nv__backoff_ms(&e, 200, 0.9999999);
    cr_expect(w >= 0 && w <= INT64_MAX);
    cr_expect_eq(nv__backoff_ms(&e, 0, 0), 1, "attempt 0 acts as attempt 1");
    cr_expect_eq(nv__backoff_ms(&e, -5, 0), 1);
}

Test(backoff, no_backoff_means_no_wait)
{
    nv__jobopts o;

    nv__jobopts_default(&o);
    cr_expect_eq(nv__backoff_ms(&o, 1, 0.5), 0);
    o = backoff("{\"backoff\":{\"type\":\"exponential\",\"delay\":0,"
                "\"jitter\":1}}");
    cr_expect_eq(nv__backoff_ms(&o, 40, 0.5), 0);
}
