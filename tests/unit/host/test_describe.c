/* Describe (P-2, P-3): src/host/proc.c. */
#include "helpers.h"

#include <time.h>

TestSuite(host_describe, .fini = th_cleanup, .timeout = 30);

static nv_host *
host(void)
{
    nv_config *c = th_config("{\"functions\":{\"describeTimeoutMs\":300,"
                             "\"killGraceMs\":200}}");
    nv_host *h = NULL;
    nv_error err = { 0 };

    cr_assert_eq(nv_host_new(c, th_dir, &h, &err), NV_OK, "%s", err.msg);
    nv_config_free(c);
    return h;
}

static int
describe_one(nv_host *h, char **config, hbuf *rep)
{
    hfile *f;
    size_t n;
    int missing, rc;

    cr_assert_eq(host_scan(host_settings_of(h), &f, &n, &missing, rep), 0);
    cr_assert_eq(n, 1);
    rc = proc_describe(h, &f[0], config, rep);
    host_files_free(f, n);
    return rc;
}

Test(host_describe, the_config_answer_is_returned)
{
    nv_host *h;
    char *config = NULL;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/tools/resize.sh",
             "#!/bin/sh\nread line\n"
             "echo '{\"type\":\"config\",\"config\":{\"queue\":{\"name\":\"img\"}}}'\n"
             "read rest\n", 0755);
    h = host();
    cr_assert_eq(describe_one(h, &config, &rep), 0, "%s", rep.s);
    cr_assert_str_eq(config, "{\"queue\":{\"name\":\"img\"}}");
    free(config);
    hbuf_release(&rep);
    nv_host_free(h);
}

Test(host_describe, the_child_gets_the_protocol_environment_and_runs_in_the_project)
{
    nv_host *h;
    char *config = NULL, want[600];
    hbuf rep = { 0 };

    th_project();
    th_write("functions/tools/env.sh",
             "#!/bin/sh\nread line\n"
             "printf '{\"type\":\"config\",\"config\":{\"x\":\"%s %s %s %s %s\"}}\\n' "
             "\"$NVENT_PROTOCOL\" \"$NVENT_FUNCTION_ID\" \"$NVENT_QUEUE\" \"$(pwd)\" "
             "\"$(echo \"$line\" | tr -d ' ' | tr '\"' _)\"\n", 0755);
    h = host();
    cr_assert_eq(describe_one(h, &config, &rep), 0, "%s", rep.s);
    snprintf(want, sizeof(want), "{\"x\":\"1 tools/env env %s {_type_:_describe_,"
             "_protocol_:1}\"}", th_dir);
    cr_assert_str_eq(config, want);
    free(config);
    hbuf_release(&rep);
    nv_host_free(h);
}

Test(host_describe, no_answer_in_time_is_the_exact_startup_error)
{
    nv_host *h;
    char *config = NULL;
    hbuf rep = { 0 };
    int64_t t0;

    th_project();
    th_write("functions/slow.sh", "#!/bin/sh\nexec sleep 30\n", 0755);
    h = host();
    t0 = mono_ms();
    cr_assert_eq(describe_one(h, &config, &rep), -1);
    cr_assert_geq(mono_ms() - t0, 290);
    cr_assert_lt(mono_ms() - t0, 2000);
    cr_assert_str_eq(rep.s, "functions/slow.sh: -: no config answer to describe "
                     "within 300 ms\n");
    hbuf_release(&rep);
    t0 = mono_ms();
    nv_host_free(h);                    /* the child is killed and reaped */
    cr_assert_lt(mono_ms() - t0, 2000);
}

Test(host_describe, a_child_that_exits_without_answering_is_reported_with_its_status)
{
    nv_host *h;
    char *config = NULL;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/bye.sh", "#!/bin/sh\necho garbage\nexit 3\n", 0755);
    h = host();
    cr_assert_eq(describe_one(h, &config, &rep), -1);
    cr_assert_str_eq(rep.s, "functions/bye.sh: -: no config answer to describe within "
                     "300 ms (process exited with code 3)\n");
    hbuf_release(&rep);
    nv_host_free(h);
}

Test(host_describe, a_config_that_is_not_an_object_is_reported)
{
    nv_host *h;
    char *config = NULL;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/bad.sh",
             "#!/bin/sh\nread line\necho '{\"type\":\"config\",\"config\":[1]}'\nread x\n",
             0755);
    h = host();
    cr_assert_eq(describe_one(h, &config, &rep), -1);
    cr_assert_str_eq(rep.s, "functions/bad.sh: -: the config answer to describe needs "
                     "an object \"config\"\n");
    hbuf_release(&rep);
    nv_host_free(h);
}

Test(host_describe, a_file_that_cannot_be_executed_is_reported)
{
    nv_host *h;
    char *config = NULL;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/noshebang", "just text\n", 0755);
    h = host();
    cr_assert_eq(describe_one(h, &config, &rep), -1);
    cr_assert_str_eq(rep.s, "functions/noshebang: -: cannot execute: Exec format error\n");
    hbuf_release(&rep);
    nv_host_free(h);
}

Test(host_describe, executables_are_described_all_at_once)
{
    nv_config *c;
    nv_host *h;
    nv_engine *e;
    nv_error err = { 0 };
    char *report = NULL;
    int64_t t0;
    static const char *const slow =
        "#!/bin/sh\nread line\nsleep 0.6\n"
        "echo '{\"type\":\"config\",\"config\":{}}'\nread rest\n";

    th_project();
    th_write("functions/a.sh", slow, 0755);
    th_write("functions/b.sh", slow, 0755);
    th_write("functions/c.sh", slow, 0755);
    c = th_config("{\"functions\":{\"describeTimeoutMs\":3000,\"killGraceMs\":200}}");
    cr_assert_eq(nv_host_new(c, th_dir, &h, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_engine_new(c, &e, &err), NV_OK, "%s", err.msg);
    t0 = mono_ms();
    cr_assert_eq(nv_host_discover(h, e, NV_HOST_DESCRIBE_ONLY, &report, &err), NV_OK,
                 "%s", report);
    cr_assert_lt(mono_ms() - t0, 1500, "took %lld ms", (long long)(mono_ms() - t0));
    free(report);
    /* unchanged files are not described again */
    t0 = mono_ms();
    nv_engine_free(e);
    nv_host_release(h, e);
    cr_assert_eq(nv_engine_new(c, &e, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_host_discover(h, e, NV_HOST_DESCRIBE_ONLY, &report, &err), NV_OK);
    cr_assert_lt(mono_ms() - t0, 300);
    free(report);
    nv_engine_free(e);
    nv_host_release(h, e);
    nv_host_free(h);
    nv_config_free(c);
}
