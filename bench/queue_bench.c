/*
 * Queue adapter micro-benchmark: no-op jobs through enqueue -> reserve ->
 * finish(complete) directly on the adapter ops, with retention 0, on one
 * thread and on several threads sharing one queue. Prints jobs per second.
 * Usage: queue_bench [--adapter memory|file|redis] [--settings JSON]
 *                    [--jobs N] [--threads T]   (settings: adapter.h)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nvent/adapter.h"

static nv_queue q;
static int64_t njobs = 1000000;
static int nthreads = 4;

static double
secs_of(clockid_t c)
{
    struct timespec ts;

    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
secs(void)
{
    return secs_of(CLOCK_MONOTONIC);
}

static double cpu_ns_per_job;

static void *
worker(void *arg)
{
    int64_t base = (int64_t)(intptr_t)arg * njobs, per = njobs / nthreads;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };

    for (int64_t i = 0; i < per; i++) {
        nv_job j, a;

        memset(&j, 0, sizeof(j));
        snprintf(j.id, sizeof(j.id), "%" PRId64, base + i);
        strcpy(j.queue, "bench");
        strcpy(j.name, "bench");
        j.data = (char *)"{}";
        j.opts = (char *)"{}";
        j.remove_on_complete = 0;
        j.remove_on_fail = 0;
        if (q.ops->enqueue(q.self, &j, 1000, 0, NULL, NULL, NULL) != NV_OK)
            abort();
        if (q.ops->reserve(q.self, "bench", 1000, 30000, NULL, &a, NULL,
                           NULL) != NV_OK)
            continue;
        if (q.ops->finish(q.self, "bench", a.id, a.lease_token, &f, 1000,
                          NULL) != NV_OK)
            abort();
        nv_job_release(&a);
    }
    return NULL;
}

static double
run(int threads)
{
    pthread_t t[64];
    double t0, c0;

    nthreads = threads;  /* read by worker */
    t0 = secs();
    c0 = secs_of(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    cpu_ns_per_job = (secs_of(CLOCK_PROCESS_CPUTIME_ID) - c0) * 1e9 /
                     (double)(njobs / threads * threads);
    return (double)(njobs / threads * threads) / (secs() - t0);
}

int
main(int argc, char **argv)
{
    const char *adapter = "memory", *settings = "{}";
    nv_error err = { 0 };

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--adapter") == 0)
            adapter = argv[i + 1];
        else if (strcmp(argv[i], "--settings") == 0)
            settings = argv[i + 1];
        else if (strcmp(argv[i], "--jobs") == 0)
            njobs = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            nthreads = atoi(argv[i + 1]);
    }
    if (nthreads < 1 || nthreads > 64)
        nthreads = 4;
    if (nv_queue_open(adapter, settings, &q, &err) != NV_OK) {
        fprintf(stderr, "queue_bench: %s\n", err.msg);
        return 1;
    }
    {
        int want = nthreads;
        double one = run(1), cpu1 = cpu_ns_per_job, many = run(want);

        printf("%s queue, 1 thread: %.0f jobs/s (%.0f ns CPU per job)\n",
               adapter, one, cpu1);
        printf("%s queue, %d threads: %.0f jobs/s (%.0f ns CPU per job)\n",
               adapter, want, many, cpu_ns_per_job);
    }
    q.ops->close(q.self);
    return 0;
}
