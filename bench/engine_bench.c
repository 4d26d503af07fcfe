/*
 * engine_bench: the core engine's figures on the adapters of a config file
 * (default: memory). Not a test: it prints numbers, medians of several
 * runs, for the closing notes and for comparison between revisions.
 *
 *   build/bench/engine_bench [--jobs N] [--flows N] [--runs R]
 *                            [--only jobs|flows|latency] [config.json]
 *
 * 1. no-op plain jobs, enqueue -> ack, per second (producer and workers
 *    running at once);
 * 2. flow steps per second: 3-step flows chained by events;
 * 3. enqueue -> start latency p50 / p99 (one job in flight at a time).
 * 1 and 2 also print the process's CPU time (user + system) per job or
 * step: on a shared machine a steadier yardstick than the rate.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <nvent.h>

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time (user + system) of the whole process (RUSAGE_SELF) or of the
 * calling thread (RUSAGE_THREAD), seconds. */
static double
cpu_of(int who)
{
    struct rusage ru;

    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double
cpu_s(void)
{
    return cpu_of(RUSAGE_SELF);
}

static atomic_llong done_jobs;
static double cpu_per_op;         /* us of CPU per job / step, last run */
static double cpu_producer;       /* us of it in the enqueuing thread */
static atomic_llong started_ns;   /* latency probe: handler start time */

static int
noop(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ctx, (void)input, (void)ud;
    atomic_fetch_add(&done_jobs, 1);
    return NV_OK;
}

static int
probe(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ctx, (void)input, (void)ud;
    atomic_store(&started_ns, now_ns());
    return NV_OK;
}

static int
step_emit(nv_ctx *ctx, const char *input, void *ud)
{
    (void)input;
    return nv_ctx_emit(ctx, (const char *)ud, NULL, NULL);
}

static int
step_last(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ctx, (void)input, (void)ud;
    atomic_fetch_add(&done_jobs, 1);
    return NV_OK;
}

static const char *config_text;

static nv_engine *
engine(void)
{
    nv_error err = { 0 };
    nv_config *cfg;
    nv_engine *e;

    if (nv_config_new(&cfg, &err) != NV_OK ||
        (config_text != NULL &&
         nv_config_load_json(cfg, config_text, "bench", &err) != NV_OK) ||
        nv_engine_new(cfg, &e, &err) != NV_OK) {
        fprintf(stderr, "engine_bench: %s\n", err.msg);
        exit(1);
    }
    nv_config_free(cfg);
    return e;
}

static void
must(int rc, const nv_error *err, const char *what)
{
    if (rc != NV_OK) {
        fprintf(stderr, "engine_bench: %s: %s\n", what, err->msg);
        exit(1);
    }
}

static const char plain_cfg[] =
    "{\"worker\":{\"concurrency\":2},"
    "\"queue\":{\"defaultJobOptions\":{\"removeOnComplete\":true}}}";

static double
bench_jobs(long n)
{
    nv_engine *e = engine();
    nv_error err = { 0 };
    double t0, t1, c0, p0;

    atomic_store(&done_jobs, 0);
    must(nv_function_register_json(e, "noop", NULL, NV_RUNTIME_C, plain_cfg,
                                   noop, NULL, &err), &err, "register");
    must(nv_engine_start(e, 0, &err), &err, "start");
    c0 = cpu_s();
    p0 = cpu_of(RUSAGE_THREAD);
    t0 = now_s();
    for (long i = 0; i < n; i++) {
        int rc = nv_queue_enqueue(e, "noop", NULL, "{}", NULL, NULL, &err);

        must(rc, &err, "enqueue");
    }
    cpu_producer = (cpu_of(RUSAGE_THREAD) - p0) * 1e6 / (double)n;
    while (atomic_load(&done_jobs) < n)
        nv_engine_wait_idle(e, 100, NULL);
    t1 = now_s();
    cpu_per_op = (cpu_s() - c0) * 1e6 / (double)n;
    nv_engine_free(e);
    return (double)n / (t1 - t0);
}

static double
bench_flows(long runs)
{
    static const char *const flow[] = { "chain", NULL };
    static const char *const e1[] = { "e1", NULL };
    static const char *const e2[] = { "e2", NULL };
    const nv_function_config a = {
        .abi = NV_ABI_VERSION, .worker = { .concurrency = NV_SOME(4) },
        .queue = { .default_job_options = "{\"removeOnComplete\":true}" },
        .flow = { .name = flow, .role = "entry", .emits = e1 } };
    const nv_function_config b = {
        .abi = NV_ABI_VERSION, .worker = { .concurrency = NV_SOME(4) },
        .queue = { .default_job_options = "{\"removeOnComplete\":true}" },
        .flow = { .name = flow, .subscribes = e1, .emits = e2 } };
    const nv_function_config c = {
        .abi = NV_ABI_VERSION, .worker = { .concurrency = NV_SOME(4) },
        .queue = { .default_job_options = "{\"removeOnComplete\":true}" },
        .flow = { .name = flow, .subscribes = e2 } };
    nv_engine *e = engine();
    nv_error err = { 0 };
    char run_id[NV_ID_MAX];
    double t0, t1, c0;

    atomic_store(&done_jobs, 0);
    must(nv_function_register(e, "a", NULL, &a, step_emit, (void *)"e1",
                              &err), &err, "register a");
    must(nv_function_register(e, "b", NULL, &b, step_emit, (void *)"e2",
                              &err), &err, "register b");
    must(nv_function_register(e, "c", NULL, &c, step_last, NULL, &err), &err,
         "register c");
    must(nv_engine_start(e, 0, &err), &err, "start");
    c0 = cpu_s();
    t0 = now_s();
    for (long i = 0; i < runs; i++)
        must(nv_flow_start(e, "chain", "{}", NULL, run_id, NULL, &err), &err,
             "flow start");
    while (atomic_load(&done_jobs) < runs)
        nv_engine_wait_idle(e, 100, NULL);
    nv_run_wait(e, run_id, 60000, NULL, NULL);
    t1 = now_s();
    cpu_per_op = (cpu_s() - c0) * 1e6 / (double)(3 * runs);
    nv_engine_free(e);
    return (double)(3 * runs) / (t1 - t0);
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static void
bench_latency(int samples, double *p50, double *p99)
{
    nv_engine *e = engine();
    nv_error err = { 0 };
    int64_t *lat = calloc((size_t)samples, sizeof(*lat));

    must(nv_function_register_json(e, "probe", NULL, NV_RUNTIME_C, plain_cfg,
                                   probe, NULL, &err), &err, "register");
    must(nv_engine_start(e, 0, &err), &err, "start");
    for (int i = 0; i < samples; i++) {
        int64_t t0;

        atomic_store(&started_ns, 0);
        t0 = now_ns();
        must(nv_queue_enqueue(e, "probe", NULL, "{}", NULL, NULL, &err),
             &err, "enqueue");
        while (atomic_load(&started_ns) == 0)
            ;
        lat[i] = atomic_load(&started_ns) - t0;
        nv_engine_wait_idle(e, 1000, NULL);
    }
    qsort(lat, (size_t)samples, sizeof(*lat), cmp_i64);
    *p50 = (double)lat[samples / 2] / 1000.0;
    *p99 = (double)lat[samples * 99 / 100] / 1000.0;
    free(lat);
    nv_engine_free(e);
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return v[n / 2];
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL) {
        fprintf(stderr, "engine_bench: cannot read '%s'\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    fclose(f);
    return buf;
}

int
main(int argc, char **argv)
{
    long jobs = 1000000, flows = 100000;
    int runs = 5;
    const char *only = NULL;
    double v[16], cpu[16], prod[16], p50[16], p99[16];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
            jobs = atol(argv[++i]);
        else if (strcmp(argv[i], "--flows") == 0 && i + 1 < argc)
            flows = atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else
            config_text = slurp(argv[i]);
    }
    if (runs < 1 || runs > 16)
        runs = 5;
    printf("engine_bench: adapters from %s, median of %d runs\n",
           config_text ? "the given config" : "defaults (memory)", runs);
    if (only == NULL || strcmp(only, "jobs") == 0) {
        for (int r = 0; r < runs; r++) {
            v[r] = bench_jobs(jobs);
            cpu[r] = cpu_per_op;
            prod[r] = cpu_producer;
        }
        /* one thread calls nv_queue_enqueue, a job at a time, while the
         * workers run; CPU is the whole process's, then the enqueuing
         * thread's part of it */
        printf("no-op jobs enqueue->ack:  %12.0f jobs/s   (%ld jobs, "
               "%.2f us CPU/job, %.2f of it enqueuing)\n", median(v, runs),
               jobs, median(cpu, runs), median(prod, runs));
    }
    if (only == NULL || strcmp(only, "flows") == 0) {
        for (int r = 0; r < runs; r++) {
            v[r] = bench_flows(flows);
            cpu[r] = cpu_per_op;
        }
        printf("flow steps (3-step flows): %11.0f steps/s  (%ld runs, "
               "%.2f us CPU/step)\n", median(v, runs), flows,
               median(cpu, runs));
    }
    if (only == NULL || strcmp(only, "latency") == 0) {
        for (int r = 0; r < runs; r++)
            bench_latency(2000, &p50[r], &p99[r]);
        printf("enqueue->start latency:   p50 %.1f us   p99 %.1f us\n",
               median(p50, runs), median(p99, runs));
    }
    return 0;
}
