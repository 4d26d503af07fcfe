/*
 * nvent side of the redis_vs_bullmq bench (run.sh builds and runs it on the
 * same redis-server as bullmq_bench.mjs). Prints one JSON line:
 *   - no-op jobs processed per second at concurrency 1, 10 and 100: the
 *     queue is pre-filled, then N worker threads reserve + complete
 *     (removeOnComplete: true) through the redis queue adapter; timed from
 *     the workers' start to the last job. With NV_BENCH_ENGINE (the engine
 *     is in libnvent) also through the engine (registered C handler);
 *   - 3-step flows per second through the engine (NV_BENCH_ENGINE),
 *     started by one thread calling nv_flow_start_many 500 flows at a
 *     time ("flows", as BullMQ's bench adds its flows 500 per
 *     FlowProducer.addBulk call), by one thread calling nv_flow_start a
 *     flow at a time ("flows_1"), and by four such threads ("flows_4t");
 *   - the async ceiling (ceiling.h, NV_BENCH_ENGINE): the script calls
 *     of one flow of the engine, recorded with MONITOR and replayed for
 *     <flows> flows by one thread, 100 flows in flight ("ceiling": flows
 *     per second; "ceiling_calls": calls per flow). Not nvent: what
 *     today's scripts allow a client that never sleeps per call;
 *   - no-op jobs per second with 1, 2 and 3 instances (engines with their
 *     own connections, 10 workers each) sharing one queue (NV_BENCH_ENGINE);
 *   - enqueue->start latency p50/p99: one job at a time, a worker blocked
 *     in the adapter's wait(); the enqueuing thread yields the CPU while
 *     it waits for the start (a busy spin took one of two cores from
 *     redis-server and the worker: p99 3.7 ms instead of 0.4);
 *   - the process' peak RSS, and the peak RSS of a worker process (this
 *     program run with --worker: one engine processing a pre-filled queue
 *     of no-op jobs at concurrency 10 and 100, nothing else; and at 100
 *     with glibc's malloc arenas limited to 2, MALLOC_ARENA_MAX=2);
 *   - CPU time and context switches per job (or per flow) of this process
 *     and of redis-server for each throughput figure ("cpu": {measure:
 *     [client us, redis us, client switches, redis switches]}), the
 *     yardstick on a shared machine (on a VM a switch can cost more than
 *     the work it waits for).
 *   nvent_bench <port> <jobs> <flows> <latency samples> [redis pid]
 * NVB_PARTS (comma list of adapter, engine, flows, ceiling, instances,
 * latency, rss;
 * default all) runs only some parts while iterating; NVB_CONC (comma list
 * of 1, 10, 100; default all) only some concurrencies of the engine part;
 * NVB_INFLIGHT (default 100) the flows in flight of the ceiling part.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nvent.h>
#include <nvent/adapter.h>

#include "ceiling.h"

static int port;
static int redis_pid;

/* ---- CPU time of this process and of redis-server ---- */

static int64_t
self_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
           ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* /proc/<redis pid>/<file> opened for reading; NULL without a pid. */
static FILE *
redis_proc(const char *file)
{
    char path[64];

    if (redis_pid <= 0)
        return NULL;
    snprintf(path, sizeof(path), "/proc/%d/%s", redis_pid, file);
    return fopen(path, "r");
}

/* utime + stime of redis-server from /proc/<pid>/stat, in us. */
static int64_t
redis_cpu_us(void)
{
    char buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f = redis_proc("stat");
    size_t n;

    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
                            "%*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (int64_t)(ut + st) * 1000000 / sysconf(_SC_CLK_TCK);
}

/* Context switches (voluntary + involuntary) of this process, every
 * thread counted. */
static int64_t
self_csw(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)ru.ru_nvcsw + ru.ru_nivcsw;
}

/* The same of redis-server's main thread (the one that runs commands),
 * from /proc/<pid>/status. */
static int64_t
redis_csw(void)
{
    char line[128];
    long long v, sum = 0;
    FILE *f = redis_proc("status");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1 ||
            sscanf(line, "nonvoluntary_ctxt_switches: %lld", &v) == 1)
            sum += v;
    }
    fclose(f);
    return sum;
}

struct cpu_mark { int64_t self, redis, self_csw, redis_csw; };

static struct cpu_mark
cpu_mark(void)
{
    struct cpu_mark m = { self_cpu_us(), redis_cpu_us(), self_csw(),
                          redis_csw() };
    return m;
}

static char cpu_json[4096];

/* Note the CPU (us) and the context switches per operation since 'm'
 * under 'name': [self, redis, self, redis]. */
static void
cpu_note(const char *name, struct cpu_mark m, long ops)
{
    struct cpu_mark n = cpu_mark();
    size_t l = strlen(cpu_json);

    snprintf(cpu_json + l, sizeof(cpu_json) - l,
             "%s\"%s\":[%.1f,%.1f,%.2f,%.2f]", l ? "," : "", name,
             (double)(n.self - m.self) / (double)ops,
             (double)(n.redis - m.redis) / (double)ops,
             (double)(n.self_csw - m.self_csw) / (double)ops,
             (double)(n.redis_csw - m.redis_csw) / (double)ops);
}

/* Whether the comma list in environment variable 'var' names 'name'
 * (unset or empty: every name). */
static int
env_lists(const char *var, const char *name)
{
    const char *s = getenv(var);
    size_t n = strlen(name);

    if (s == NULL || *s == '\0')
        return 1;
    for (const char *p = s; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == s || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    }
    return 0;
}

static int
part(const char *name)
{
    return env_lists("NVB_PARTS", name);
}

/* NVB_CONC (comma list of 1, 10, 100; default all): the concurrencies
 * of the engine part. */
static int
conc_on(int c)
{
    char name[8];

    snprintf(name, sizeof(name), "%d", c);
    return env_lists("NVB_CONC", name);
}

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
die(const char *what, const nv_error *err)
{
    fprintf(stderr, "nvent_bench: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

static nv_queue
open_queue(const char *prefix)
{
    char settings[256];
    nv_error err = { 0 };
    nv_queue q;

    snprintf(settings, sizeof(settings), "{\"prefix\":\"%s\",\"redis\":"
             "{\"host\":\"127.0.0.1\",\"port\":%d,\"db\":0}}", prefix, port);
    if (nv_redis_queue_open(settings, &q, &err) != NV_OK)
        die("open", &err);
    return q;
}

static void
mkjob(nv_job *j, long i)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "j%ld", i);
    snprintf(j->queue, sizeof(j->queue), "noop");
    snprintf(j->name, sizeof(j->name), "noop");
    j->data = (char *)"{}";
    j->opts = (char *)"{\"removeOnComplete\":true}";
    j->remove_on_complete = 0;
    j->remove_on_fail = NV_KEEP_ALL;
}

/* ---- Jobs through the adapter ---- */

struct pool {
    nv_queue    q;
    long        n;
    atomic_long next;       /* producer: next job number */
    atomic_long done;       /* workers: jobs completed */
};

static void *
producer(void *arg)
{
    struct pool *p = arg;
    nv_error err = { 0 };
    long i;

    while ((i = atomic_fetch_add(&p->next, 1)) < p->n) {
        nv_job j;
        mkjob(&j, i);
        if (p->q.ops->enqueue(p->q.self, &j, wall_ms(), 0, NULL, NULL, &err))
            die("enqueue", &err);
    }
    return NULL;
}

static void *
worker(void *arg)
{
    struct pool *p = arg;
    nv_error err = { 0 };
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };

    nv_job j, next;
    int have = 0, got;

    /* finish_reserve (when the adapter has it): one call per job, as the
     * engine's busy workers do */
    while (atomic_load(&p->done) < p->n) {
        int rc;

        if (!have) {
            rc = p->q.ops->reserve(p->q.self, "noop", wall_ms(), 30000, NULL,
                                   &j, NULL, &err);
            if (rc == NV_ENOTFOUND) {
                p->q.ops->wait(p->q.self, "noop", 50);
                continue;
            }
            if (rc != NV_OK)
                die("reserve", &err);
            have = 1;
        }
        if (p->q.ops->finish_reserve != NULL) {
            rc = p->q.ops->finish_reserve(p->q.self, "noop", j.id,
                                          j.lease_token, &f, wall_ms(), 30000,
                                          NULL, &next, &got, NULL, &err);
        } else {
            rc = p->q.ops->finish(p->q.self, "noop", j.id, j.lease_token, &f,
                                  wall_ms(), &err);
            got = 0;
        }
        if (rc != NV_OK)
            die("finish", &err);
        nv_job_release(&j);
        have = got;
        if (got)
            j = next;
        /* the last job: workers waiting on an empty queue stop now, as
         * the engine's stop wakes them (a wait may sleep past its
         * timeout, adapter.h) */
        if (atomic_fetch_add(&p->done, 1) + 1 == p->n)
            p->q.ops->wake(p->q.self);
    }
    if (have)
        nv_job_release(&j);
    return NULL;
}

static double
run_threads(struct pool *p, void *(*fn)(void *), int n)
{
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    int64_t t0 = now_ns();

    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, fn, p);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    free(th);
    return (double)(now_ns() - t0) / 1e9;
}

static double
adapter_jobs(int concurrency, long n, double *enqueue_rate)
{
    char prefix[64], name[32];
    struct pool p = { .n = n };
    struct cpu_mark m;
    double secs;

    snprintf(prefix, sizeof(prefix), "nvb%d-%d", (int)getpid(), concurrency);
    p.q = open_queue(prefix);
    m = cpu_mark();
    secs = run_threads(&p, producer, 16);
    *enqueue_rate = (double)n / secs;
    if (concurrency == 10)
        cpu_note("enqueue", m, n);
    m = cpu_mark();
    secs = run_threads(&p, worker, concurrency);
    snprintf(name, sizeof(name), "adapter_%d", concurrency);
    cpu_note(name, m, n);
    p.q.ops->close(p.q.self);
    return (double)n / secs;
}

/* ---- Latency ---- */

struct probe {
    nv_queue         q;
    atomic_int       stop;
    atomic_llong     started;  /* ns when the worker got the job */
};

static void *
probe_worker(void *arg)
{
    struct probe *p = arg;
    nv_error err = { 0 };
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };

    while (!atomic_load(&p->stop)) {
        nv_job j;
        int rc = p->q.ops->reserve(p->q.self, "noop", wall_ms(), 30000, NULL,
                                   &j, NULL, &err);
        if (rc == NV_ENOTFOUND) {
            p->q.ops->wait(p->q.self, "noop", 1000);
            continue;
        }
        if (rc != NV_OK)
            die("reserve", &err);
        atomic_store(&p->started, now_ns());
        p->q.ops->finish(p->q.self, "noop", j.id, j.lease_token, &f,
                         wall_ms(), &err);
        nv_job_release(&j);
    }
    return NULL;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static void
latency(int samples, double *p50, double *p99)
{
    char prefix[64];
    struct probe p = { .stop = 0 };
    int64_t *lat = calloc((size_t)samples, sizeof(*lat));
    nv_error err = { 0 };
    pthread_t th;

    snprintf(prefix, sizeof(prefix), "nvb%d-lat", (int)getpid());
    p.q = open_queue(prefix);
    pthread_create(&th, NULL, probe_worker, &p);
    usleep(200000);
    for (int i = 0; i < samples; i++) {
        nv_job j;
        int64_t t0;

        mkjob(&j, i);
        atomic_store(&p.started, 0);
        t0 = now_ns();
        if (p.q.ops->enqueue(p.q.self, &j, wall_ms(), 0, NULL, NULL, &err))
            die("enqueue", &err);
        while (atomic_load(&p.started) == 0)
            sched_yield();
        lat[i] = atomic_load(&p.started) - t0;
    }
    atomic_store(&p.stop, 1);
    p.q.ops->wake(p.q.self);
    pthread_join(th, NULL);
    p.q.ops->close(p.q.self);
    qsort(lat, (size_t)samples, sizeof(*lat), cmp_i64);
    *p50 = (double)lat[samples / 2] / 1000.0;
    *p99 = (double)lat[samples * 99 / 100] / 1000.0;
    free(lat);
}

/* ---- Through the engine ---- */
#ifdef NV_BENCH_ENGINE

static atomic_long engine_done;

static int
noop(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ctx, (void)input, (void)ud;
    atomic_fetch_add(&engine_done, 1);
    return NV_OK;
}

static int
step_emit(nv_ctx *ctx, const char *input, void *ud)
{
    (void)input;
    return nv_ctx_emit(ctx, (const char *)ud, NULL, NULL);
}

static nv_engine *
engine(const char *prefix)
{
    char text[512];
    nv_error err = { 0 };
    nv_config *cfg;
    nv_engine *e;

    snprintf(text, sizeof(text),
             "{\"prefix\":\"%s\",\"connections\":{\"redis\":{\"host\":"
             "\"127.0.0.1\",\"port\":%d,\"db\":0}},"
             "\"queue\":{\"adapter\":\"redis\"},\"store\":{\"adapter\":"
             "\"redis\"},\"stream\":{\"adapter\":\"redis\"}}", prefix, port);
    if (nv_config_new(&cfg, &err) != NV_OK ||
        nv_config_load_json(cfg, text, "bench", &err) != NV_OK ||
        nv_engine_new(cfg, &e, &err) != NV_OK)
        die("engine", &err);
    nv_config_free(cfg);
    return e;
}

static double
engine_jobs(int concurrency, long n)
{
    char prefix[64], cfg[160], name[32];
    nv_engine *e;
    nv_error err = { 0 };
    struct cpu_mark m;
    int64_t t0;

    snprintf(prefix, sizeof(prefix), "nve%d-%d", (int)getpid(), concurrency);
    snprintf(cfg, sizeof(cfg), "{\"worker\":{\"concurrency\":%d},\"queue\":"
             "{\"defaultJobOptions\":{\"removeOnComplete\":true}}}",
             concurrency);
    e = engine(prefix);
    atomic_store(&engine_done, 0);
    if (nv_function_register_json(e, "noop", NULL, NV_RUNTIME_C, cfg, noop,
                                  NULL, &err) != NV_OK)
        die("register", &err);
    /* pre-fill while paused (no workers), then time the processing */
    if (nv_engine_start(e, NV_START_NO_WORKERS, &err) != NV_OK)
        die("start", &err);
    for (long i = 0; i < n; i++) {
        if (nv_queue_enqueue(e, "noop", NULL, "{}", NULL, NULL, &err) != NV_OK)
            die("enqueue", &err);
    }
    nv_engine_free(e);
    e = engine(prefix);
    if (nv_function_register_json(e, "noop", NULL, NV_RUNTIME_C, cfg, noop,
                                  NULL, &err) != NV_OK)
        die("register", &err);
    m = cpu_mark();
    t0 = now_ns();
    if (nv_engine_start(e, 0, &err) != NV_OK)
        die("start", &err);
    while (atomic_load(&engine_done) < n)
        usleep(1000);
    t0 = now_ns() - t0;
    snprintf(name, sizeof(name), "engine_%d", concurrency);
    cpu_note(name, m, n);
    nv_engine_free(e);
    return (double)n / ((double)t0 / 1e9);
}

/* k instances (engines with their own adapters and connections) sharing
 * one pre-filled queue, 10 workers each. */
static double
engine_instances(int k, long n)
{
    const char *cfg = "{\"worker\":{\"concurrency\":10},\"queue\":"
                      "{\"defaultJobOptions\":{\"removeOnComplete\":true}}}";
    char prefix[64], name[32];
    nv_engine *e[3];
    nv_error err = { 0 };
    struct cpu_mark m;
    int64_t t0;

    snprintf(prefix, sizeof(prefix), "nvi%d-%d", (int)getpid(), k);
    e[0] = engine(prefix);
    atomic_store(&engine_done, 0);
    if (nv_function_register_json(e[0], "noop", NULL, NV_RUNTIME_C, cfg, noop,
                                  NULL, &err) != NV_OK ||
        nv_engine_start(e[0], NV_START_NO_WORKERS, &err) != NV_OK)
        die("instances", &err);
    for (long i = 0; i < n; i++) {
        if (nv_queue_enqueue(e[0], "noop", NULL, "{}", NULL, NULL, &err))
            die("enqueue", &err);
    }
    nv_engine_free(e[0]);
    for (int i = 0; i < k; i++) {
        e[i] = engine(prefix);
        if (nv_function_register_json(e[i], "noop", NULL, NV_RUNTIME_C, cfg,
                                      noop, NULL, &err) != NV_OK)
            die("register", &err);
    }
    m = cpu_mark();
    t0 = now_ns();
    for (int i = 0; i < k; i++) {
        if (nv_engine_start(e[i], 0, &err) != NV_OK)
            die("start", &err);
    }
    while (atomic_load(&engine_done) < n)
        usleep(1000);
    t0 = now_ns() - t0;
    snprintf(name, sizeof(name), "instances_%d", k);
    cpu_note(name, m, n);
    for (int i = 0; i < k; i++)
        nv_engine_free(e[i]);
    return (double)n / ((double)t0 / 1e9);
}

/* Pre-fill queue "noop" of engine prefix 'prefix' with n jobs (no
 * workers). */
static void
prefill(const char *prefix, const char *cfg, long n)
{
    nv_engine *e = engine(prefix);
    nv_error err = { 0 };

    if (nv_function_register_json(e, "noop", NULL, NV_RUNTIME_C, cfg, noop,
                                  NULL, &err) != NV_OK ||
        nv_engine_start(e, NV_START_NO_WORKERS, &err) != NV_OK)
        die("prefill", &err);
    for (long i = 0; i < n; i++) {
        if (nv_queue_enqueue(e, "noop", NULL, "{}", NULL, NULL, &err) != NV_OK)
            die("enqueue", &err);
    }
    nv_engine_free(e);
}

static void
worker_cfg(char *cfg, size_t size, int concurrency)
{
    snprintf(cfg, size, "{\"worker\":{\"concurrency\":%d},\"queue\":"
             "{\"defaultJobOptions\":{\"removeOnComplete\":true}}}",
             concurrency);
}

/* --worker <prefix> <jobs> <concurrency>: process the pre-filled queue,
 * print the peak RSS in KB. */
static int
worker_main(const char *prefix, long n, int concurrency)
{
    char cfg[160];
    nv_engine *e = engine(prefix);
    nv_error err = { 0 };
    struct rusage ru;

    worker_cfg(cfg, sizeof(cfg), concurrency);
    if (nv_function_register_json(e, "noop", NULL, NV_RUNTIME_C, cfg, noop,
                                  NULL, &err) != NV_OK ||
        nv_engine_start(e, 0, &err) != NV_OK)
        die("worker", &err);
    while (atomic_load(&engine_done) < n)
        usleep(1000);
    nv_engine_free(e);
    getrusage(RUSAGE_SELF, &ru);
    printf("%ld\n", ru.ru_maxrss);
    return 0;
}

/* Peak RSS (KB) of a separate worker process at 'concurrency'; 'env'
 * (may be "") is put in front of its command (e.g. MALLOC_ARENA_MAX=2). */
static long
worker_rss(int concurrency, long n, const char *env)
{
    char prefix[64], cfg[160], exe[512], cmd[800];
    long kb = -1;
    ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    FILE *f;

    if (l <= 0)
        return -1;
    exe[l] = '\0';
    snprintf(prefix, sizeof(prefix), "nvw%d-%d-%d", (int)getpid(),
             concurrency, *env != '\0');
    worker_cfg(cfg, sizeof(cfg), concurrency);
    prefill(prefix, cfg, n);
    snprintf(cmd, sizeof(cmd), "%s '%s' --worker %d %s %ld %d", env, exe,
             port, prefix, n, concurrency);
    f = popen(cmd, "r");
    if (f == NULL || fscanf(f, "%ld", &kb) != 1)
        kb = -1;
    if (f != NULL)
        pclose(f);
    return kb;
}

struct starter {
    nv_engine *e;
    long       n;
    int        bulk;    /* nv_flow_start_many of 500 at a time */
};

/* Start st->n flows "chain", one at a time or 500 at a time (bulk). */
static void *
start_flows(void *arg)
{
    struct starter *st = arg;
    char run_id[NV_ID_MAX];
    nv_error err = { 0 };

    if (st->bulk) {
        static const char *const inputs[500] = { NULL };   /* all {} */
        static char ids[500][NV_ID_MAX];

        for (long i = 0; i < st->n; i += 500) {
            size_t m = st->n - i < 500 ? (size_t)(st->n - i) : 500;

            if (nv_flow_start_many(st->e, "chain", inputs, m, ids, NULL,
                                   &err) != NV_OK)
                die("flow start many", &err);
        }
        return NULL;
    }
    for (long i = 0; i < st->n; i++) {
        if (nv_flow_start(st->e, "chain", "{}", NULL, run_id, NULL,
                          &err) != NV_OK)
            die("flow start", &err);
    }
    return NULL;
}

/* An engine (prefix 'prefix') running the 3-step flow "chain": a emits
 * e1, b on e1 emits e2, c on e2 (counts engine_done). */
static nv_engine *
flows_engine(const char *prefix)
{
    static const char *const flow[] = { "chain", NULL };
    static const char *const e1[] = { "e1", NULL };
    static const char *const e2[] = { "e2", NULL };
    const nv_function_config a = {
        .abi = NV_ABI_VERSION, .worker = { .concurrency = NV_SOME(100) },
        .queue = { .default_job_options = "{\"removeOnComplete\":true}" },
        .flow = { .name = flow, .role = "entry", .emits = e1 } };
    const nv_function_config b = {
        .abi = NV_ABI_VERSION, .worker = { .concurrency = NV_SOME(100) },
        .queue = { .default_job_options = "{\"removeOnComplete\":true}" },
        .flow = { .name = flow, .subscribes = e1, .emits = e2 } };
    const nv_function_config c = {
        .abi = NV_ABI_VERSION, .worker = { .concurrency = NV_SOME(100) },
        .queue = { .default_job_options = "{\"removeOnComplete\":true}" },
        .flow = { .name = flow, .subscribes = e2 } };
    nv_error err = { 0 };
    nv_engine *e = engine(prefix);

    atomic_store(&engine_done, 0);
    if (nv_function_register(e, "a", NULL, &a, step_emit, (void *)"e1",
                             &err) != NV_OK ||
        nv_function_register(e, "b", NULL, &b, step_emit, (void *)"e2",
                             &err) != NV_OK ||
        nv_function_register(e, "c", NULL, &c, noop, NULL, &err) != NV_OK ||
        nv_engine_start(e, 0, &err) != NV_OK)
        die("flows", &err);
    return e;
}

/* 'runs' 3-step flows (flows_engine), started by 'threads' threads calling
 * nv_flow_start one flow at a time, or (bulk) nv_flow_start_many 500 at a
 * time; noted as 'name'. */
static double
engine_flows(long runs, int threads, int bulk, const char *name)
{
    char prefix[64];
    nv_engine *e;
    struct cpu_mark m;
    struct starter st[16];
    pthread_t th[16];
    int64_t t0;

    if (threads < 1 || threads > 16)
        threads = 1;
    snprintf(prefix, sizeof(prefix), "nvf%d-%d-%d", (int)getpid(), threads,
             bulk);
    e = flows_engine(prefix);
    m = cpu_mark();
    t0 = now_ns();
    for (int k = 0; k < threads; k++) {
        st[k].e = e;
        st[k].n = runs / threads + (k < runs % threads);
        st[k].bulk = bulk;
    }
    if (threads == 1) {
        start_flows(&st[0]);
    } else {
        for (int k = 0; k < threads; k++)
            if (pthread_create(&th[k], NULL, start_flows, &st[k]) != 0)
                die("flows: thread", NULL);
        for (int k = 0; k < threads; k++)
            pthread_join(th[k], NULL);
    }
    while (atomic_load(&engine_done) < runs)
        usleep(1000);
    t0 = now_ns() - t0;
    cpu_note(name, m, runs);
    nv_engine_free(e);
    return (double)runs / ((double)t0 / 1e9);
}

/* Run one flow of flows_engine's e to its end, its id into run_id. */
static void
one_flow(nv_engine *e, char *run_id)
{
    nv_error err = { 0 };
    int done = atomic_load(&engine_done);

    if (nv_flow_start(e, "chain", "{}", NULL, run_id, NULL, &err) != NV_OK)
        die("ceiling: flow start", &err);
    while (atomic_load(&engine_done) <= done)
        usleep(1000);
    usleep(300000);     /* the calls after c's handler returned */
}

/*
 * The async ceiling (ceiling.h): the script calls of one flow of the
 * engine, recorded after a first flow (which loads the scripts), replayed
 * 'runs' times with 100 flows in flight (NVB_INFLIGHT: another number);
 * noted as "ceiling". *calls: the calls of one flow.
 */
static double
engine_ceiling(long runs, int *calls)
{
    char prefix[64], run_id[NV_ID_MAX];
    struct nvb_monitor *mon;
    struct nvb_tmpl *t;
    struct cpu_mark m;
    nv_engine *e;
    long errors = 0;
    double rate;

    snprintf(prefix, sizeof(prefix), "nvc%d", (int)getpid());
    e = flows_engine(prefix);
    one_flow(e, run_id);            /* loads the scripts */
    if ((mon = nvb_monitor_start(port)) == NULL)
        die("ceiling: MONITOR", NULL);
    one_flow(e, run_id);
    t = nvb_monitor_stop(mon, run_id, prefix);
    nv_engine_free(e);
    if (t == NULL)
        die("ceiling: no call of the flow recorded", NULL);
    *calls = nvb_tmpl_calls(t);
    snprintf(prefix, sizeof(prefix), "nvr%d", (int)getpid());
    m = cpu_mark();
    rate = nvb_replay(port, t, runs, getenv("NVB_INFLIGHT") != NULL
                      ? atoi(getenv("NVB_INFLIGHT")) : 100, prefix, &errors);
    cpu_note("ceiling", m, runs);
    nvb_tmpl_free(t);
    if (rate < 0 || errors > 0) {
        fprintf(stderr, "nvent_bench: ceiling: %ld failed calls\n", errors);
        exit(1);
    }
    return rate;
}
#endif

int
main(int argc, char **argv)
{
    long jobs, flows;
    int samples;
    double enq = 0, p50 = 0, p99 = 0, rate[3] = { 0, 0, 0 };
    static const int conc[3] = { 1, 10, 100 };
    struct rusage ru;

#ifdef NV_BENCH_ENGINE
    if (argc == 6 && strcmp(argv[1], "--worker") == 0) {
        port = atoi(argv[2]);
        return worker_main(argv[3], atol(argv[4]), atoi(argv[5]));
    }
#endif
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: nvent_bench <port> <jobs> <flows> <samples> "
                "[redis pid]\n");
        return 2;
    }
    port = atoi(argv[1]);
    jobs = atol(argv[2]);
    flows = atol(argv[3]);
    samples = atoi(argv[4]);
    redis_pid = argc == 6 ? atoi(argv[5]) : 0;
    printf("{\"impl\":\"nvent\"");
    if (part("adapter")) {
        for (int i = 0; i < 3; i++)
            rate[i] = adapter_jobs(conc[i], conc[i] == 1 && jobs > 20000
                                   ? 20000 : jobs, &enq);
        printf(",\"jobs\":{\"1\":%.0f,\"10\":%.0f,\"100\":%.0f},"
               "\"enqueue\":%.0f", rate[0], rate[1], rate[2], enq);
    }
    if (part("latency")) {
        latency(samples, &p50, &p99);
        printf(",\"p50_us\":%.1f,\"p99_us\":%.1f", p50, p99);
    }
#ifdef NV_BENCH_ENGINE
    if (part("engine")) {
        int first = 1;

        printf(",\"engine_jobs\":{");
        for (int i = 0; i < 3; i++) {
            if (!conc_on(conc[i]))
                continue;
            printf("%s\"%d\":%.0f", first ? "" : ",", conc[i],
                   engine_jobs(conc[i], conc[i] == 1 && jobs > 20000
                               ? 20000 : jobs));
            first = 0;
        }
        printf("}");
    }
    if (part("flows")) {
        printf(",\"flows\":%.0f", engine_flows(flows, 1, 1, "flows"));
        printf(",\"flows_1\":%.0f", engine_flows(flows, 1, 0, "flows_1"));
        printf(",\"flows_4t\":%.0f", engine_flows(flows, 4, 0, "flows_4t"));
    }
    if (part("ceiling")) {
        int calls = 0;
        double rate = engine_ceiling(flows, &calls);

        printf(",\"ceiling\":%.0f,\"ceiling_calls\":%d", rate, calls);
    }
    if (part("rss")) {
        long n = jobs > 20000 ? 20000 : jobs;

        printf(",\"worker_rss_kb\":{\"10\":%ld,\"100\":%ld,"
               "\"100a2\":%ld}", worker_rss(10, n, ""),
               worker_rss(100, n, ""),
               worker_rss(100, n, "MALLOC_ARENA_MAX=2"));
    }
    if (part("instances")) {
        printf(",\"instances\":{");
        for (int k = 1; k <= 3; k++)
            printf("%s\"%d\":%.0f", k > 1 ? "," : "", k,
                   engine_instances(k, jobs));
        printf("}");
    }
#else
    (void)flows;
#endif
    getrusage(RUSAGE_SELF, &ru);
    printf(",\"cpu\":{%s},\"rss_kb\":%ld}\n", cpu_json, ru.ru_maxrss);
    return 0;
}
