/*
 * Several nvent instances on one Redis, with the real clock: jobs are
 * shared out and each runs once; a job whose instance was killed (kill -9)
 * is delivered again by another one after its lease. Runs only with
 * NV_TEST_BACKEND=redis (the other backends serve one instance).
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nvent.h"
#include "support/backend.h"

static void
skip_unless_redis(void)
{
    if (strcmp(nv_test_backend(), "redis") != 0)
        cr_skip_test("redis only");
}

static void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

static nv_engine *
instance(const char *config, const char *fn_config, nv_handler h, void *ud,
         unsigned flags)
{
    nv_error err = { 0 };
    nv_config *cfg = NULL;
    nv_engine *e = NULL;

    cr_assert_eq(nv_config_new(&cfg, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_config_load_json(cfg, config, "test", &err), NV_OK, "%s",
                 err.msg);
    cr_assert_eq(nv_engine_new(cfg, &e, &err), NV_OK, "%s", err.msg);
    nv_config_free(cfg);
    cr_assert_eq(nv_function_register_json(e, "work", NULL, NV_RUNTIME_C,
                                           fn_config, h, ud, &err), NV_OK,
                 "%s", err.msg);
    cr_assert_eq(nv_engine_start(e, flags, &err), NV_OK, "%s\n%s", err.msg,
                 nv_engine_report(e));
    return e;
}

/* ---- Sharing ---- */

#define NJOBS 300

static atomic_int runs[NJOBS];
static atomic_int by_instance[3];

static int
count_run(nv_ctx *ctx, const char *input, void *ud)
{
    const char *p = strstr(input, "\"n\":");

    (void)ctx;
    if (p != NULL) {
        int n = atoi(p + 4);
        if (n >= 0 && n < NJOBS)
            atomic_fetch_add(&runs[n], 1);
    }
    atomic_fetch_add(&by_instance[(int)(intptr_t)ud], 1);
    /* a job takes a little time, as real ones do: one instance's four
       workers cannot drain all 300 before the others' first reserve
       (no-op jobs on a loaded machine sometimes went all to one) */
    sleep_ms(3);
    return NV_OK;
}

Test(redis_instances, jobs_are_shared_out_and_each_runs_once, .timeout = 60)
{
    const char *fn = "{\"worker\":{\"concurrency\":4}}";
    char *config;
    nv_engine *e[3];
    nv_error err = { 0 };
    int total = 0;

    skip_unless_redis();
    config = nv_test_config_json();
    for (int i = 0; i < 3; i++)
        e[i] = instance(config, fn, count_run, (void *)(intptr_t)i, 0);
    for (int n = 0; n < NJOBS; n++) {
        char data[32];
        snprintf(data, sizeof(data), "{\"n\":%d}", n);
        cr_assert_eq(nv_queue_enqueue(e[n % 3], "work", NULL, data, NULL,
                                      NULL, &err), NV_OK, "%s", err.msg);
    }
    for (int t = 0; t < 400 && total < NJOBS; t++) {
        total = 0;
        for (int i = 0; i < 3; i++)
            total += atomic_load(&by_instance[i]);
        sleep_ms(50);
    }
    sleep_ms(200);    /* a duplicate delivery would show up now */
    for (int n = 0; n < NJOBS; n++)
        cr_assert_eq(atomic_load(&runs[n]), 1, "job %d ran %d times", n,
                     atomic_load(&runs[n]));
    for (int i = 0; i < 3; i++)
        cr_assert_gt(atomic_load(&by_instance[i]), 0,
                     "instance %d ran no job (%d/%d/%d)", i,
                     atomic_load(&by_instance[0]),
                     atomic_load(&by_instance[1]),
                     atomic_load(&by_instance[2]));
    for (int i = 0; i < 3; i++)
        nv_engine_free(e[i]);
    free(config);
}

/* ---- A killed instance ---- */

static int started_fd = -1;

static int
hang(nv_ctx *ctx, const char *input, void *ud)
{
    char b = 1;

    (void)ctx, (void)input, (void)ud;
    if (write(started_fd, &b, 1) != 1)
        _exit(3);
    for (;;)
        pause();
    return NV_OK;
}

static atomic_int finished;

static int
finish(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ctx, (void)input, (void)ud;
    atomic_fetch_add(&finished, 1);
    return NV_OK;
}

Test(redis_instances, a_killed_instance_s_job_runs_elsewhere_after_its_lease,
     .timeout = 60)
{
    const char *fn = "{\"worker\":{\"concurrency\":1,\"lockDurationMs\":1000,"
                     "\"maxStalledCount\":3}}";
    char *config, *body = NULL, id[300] = "";
    int pfd[2];
    pid_t child;
    nv_engine *client, *other;
    nv_error err = { 0 };
    char b;

    skip_unless_redis();
    config = nv_test_config_json();
    cr_assert_eq(pipe(pfd), 0);
    child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        /* the instance that will die with the job active */
        /* no cr_assert here: this process is not Criterion's */
        nv_config *cfg = NULL;
        nv_engine *e = NULL;

        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the test */
        close(pfd[0]);
        started_fd = pfd[1];
        if (nv_config_new(&cfg, NULL) != NV_OK ||
            nv_config_load_json(cfg, config, "test", NULL) != NV_OK ||
            nv_engine_new(cfg, &e, NULL) != NV_OK ||
            nv_function_register_json(e, "work", NULL, NV_RUNTIME_C, fn, hang,
                                      NULL, NULL) != NV_OK ||
            nv_engine_start(e, 0, NULL) != NV_OK)
            _exit(2);
        for (;;)
            pause();
    }
    close(pfd[1]);
    client = instance(config, fn, finish, NULL, NV_START_NO_WORKERS);
    cr_assert_eq(nv_queue_enqueue(client, "work", NULL, "{}", NULL, &body,
                                  &err), NV_OK, "%s", err.msg);
    {
        const char *p = strstr(body, "\"id\":\"");
        cr_assert_not_null(p);
        sscanf(p + 6, "%299[^\"]", id);
    }
    nv_free(body);
    {
        struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
        int ready = poll(&pf, 1, 20000);

        if (ready != 1 || read(pfd[0], &b, 1) != 1) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            cr_assert_fail("the job never started in the child instance");
        }
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);

    other = instance(config, fn, finish, NULL, 0);
    for (int t = 0; t < 200 && atomic_load(&finished) == 0; t++)
        sleep_ms(50);
    cr_assert_eq(atomic_load(&finished), 1, "not redelivered");
    sleep_ms(300);
    cr_assert_eq(nv_job_get(client, "work", id, &body, &err), NV_OK, "%s",
                 err.msg);
    cr_assert(strstr(body, "\"stalledCount\":1") != NULL, "%s", body);
    cr_assert(strstr(body, "\"state\":\"completed\"") != NULL, "%s", body);
    nv_free(body);
    nv_engine_free(other);
    nv_engine_free(client);
    close(pfd[0]);
    free(config);
}
