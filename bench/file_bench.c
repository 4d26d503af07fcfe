/*
 * Durable throughput of the file queue adapter (SQLite, group commit):
 *   enqueue         T threads enqueue jobs                           jobs/s
 *   reserve+ack     T threads reserve and complete queued jobs, two
 *                   calls per job (reserve, finish)                  jobs/s
 *   finish_reserve  T workers as the engine runs them: reserve once,
 *                   then one finish_reserve per job (completes the
 *                   job held, takes the next)                        jobs/s
 *   cycle           T threads each enqueue, reserve, complete        jobs/s
 * Every call returns only once its write is committed. Usage:
 *   file_bench [-t threads] [-n jobs] [-s normal|full] [-d dir] [-p rwco]
 * (-p: the phases to run after the enqueue one: r reserve+ack,
 * w finish_reserve, c cycle, o reopen: close and open again, timing the
 * open, which loads the order of every stored job; default rc)
 * Prints one line per phase: "file <sync> <phase> <threads> <jobs/s>
 * (<CPU us/job>)", jobs counted as acknowledged, CPU of the process.
 * Not a test; bench/file_vs_beanstalkd.sh runs it beside beanstalkd.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "nvent/adapter.h"

#define NOW 1700000000000LL

static nv_queue q;
static atomic_long next_id;
static long total_jobs;
static atomic_long errors;
static atomic_long done_jobs;   /* jobs acknowledged in this phase */

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
enqueue_one(long i)
{
    nv_job j;

    memset(&j, 0, sizeof(j));
    snprintf(j.queue, sizeof(j.queue), "bench");
    snprintf(j.name, sizeof(j.name), "bench");
    snprintf(j.id, sizeof(j.id), "job-%ld", i);
    j.data = (char *)"{\"payload\":\"0123456789abcdef0123456789abcdef\"}";
    j.opts = (char *)"{}";
    j.remove_on_complete = 1000;    /* the default retention */
    j.remove_on_fail = 5000;
    j.timestamp = NOW;
    return q.ops->enqueue(q.self, &j, NOW, 0, NULL, NULL, NULL);
}

static int
reserve_ack(void)
{
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };
    nv_job j;
    int rc = q.ops->reserve(q.self, "bench", NOW, 30000, NULL, &j, NULL,
                            NULL);

    if (rc != NV_OK)
        return rc;
    rc = q.ops->finish(q.self, "bench", j.id, j.lease_token, &f, NOW, NULL);
    nv_job_release(&j);
    if (rc == NV_OK)
        atomic_fetch_add(&done_jobs, 1);
    return rc;
}

/* A worker as the engine runs one: reserve once, then end each job and
 * take the next in one call (finish_reserve), until none is left. */
static void *
worker_main(void *arg)
{
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };
    nv_job j, next;
    int got = 0;

    (void)arg;
    if (q.ops->reserve(q.self, "bench", NOW, 30000, NULL, &j, NULL,
                       NULL) != NV_OK)
        return NULL;
    for (;;) {
        int rc;

        if (q.ops->finish_reserve != NULL) {
            rc = q.ops->finish_reserve(q.self, "bench", j.id, j.lease_token,
                                       &f, NOW, 30000, NULL, &next, &got,
                                       NULL, NULL);
        } else {    /* what the engine falls back to */
            rc = q.ops->finish(q.self, "bench", j.id, j.lease_token, &f, NOW,
                               NULL);
            got = rc == NV_OK &&
                  q.ops->reserve(q.self, "bench", NOW, 30000, NULL, &next,
                                 NULL, NULL) == NV_OK;
        }

        nv_job_release(&j);
        if (rc == NV_OK)
            atomic_fetch_add(&done_jobs, 1);
        else
            atomic_fetch_add(&errors, 1);
        if (rc != NV_OK || !got)
            break;
        j = next;
    }
    return NULL;
}

static void *
enqueue_main(void *arg)
{
    long i;

    (void)arg;
    while ((i = atomic_fetch_add(&next_id, 1)) < total_jobs) {
        if (enqueue_one(i) != NV_OK)
            atomic_fetch_add(&errors, 1);
    }
    return NULL;
}

static void *
consume_main(void *arg)
{
    (void)arg;
    while (reserve_ack() == NV_OK)
        ;
    return NULL;
}

static void *
cycle_main(void *arg)
{
    long i;

    (void)arg;
    while ((i = atomic_fetch_add(&next_id, 1)) < total_jobs) {
        if (enqueue_one(i) != NV_OK || reserve_ack() != NV_OK)
            atomic_fetch_add(&errors, 1);
    }
    return NULL;
}

static double cpu_used;   /* CPU seconds (user + system) of the last run */

static double
cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double
run(void *(*fn)(void *), int threads)
{
    pthread_t t[256];
    double t0 = now_s(), c0 = cpu_s();

    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, fn, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    cpu_used = cpu_s() - c0;
    return now_s() - t0;
}

/* One result line: jobs acknowledged per second, CPU time per job. */
static void
report(const char *sync, const char *phase, int threads, double dt)
{
    long n = atomic_load(&done_jobs);

    printf("file %s %s %d %.0f (%.1f us CPU/job)\n", sync, phase, threads,
           n / dt, n > 0 ? cpu_used / n * 1e6 : 0.0);
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    const char *sync = "normal", *dir = NULL, *phases = "rc";
    char tmpl[] = "/tmp/nvent-bench-XXXXXX", settings[1024], cmd[1200];
    int threads = 8, opt;
    long jobs = 50000;
    nv_error err = { 0 };
    double dt;

    while ((opt = getopt(argc, argv, "t:n:s:d:p:")) != -1) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'n': jobs = atol(optarg); break;
        case 's': sync = optarg; break;
        case 'd': dir = optarg; break;
        case 'p': phases = optarg; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-n jobs] "
                    "[-s normal|full] [-d dir] [-p rwco]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 256)
        threads = 8;
    if (dir == NULL && (dir = mkdtemp(tmpl)) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(settings, sizeof(settings), "{\"file\":{\"dataDir\":\"%s\","
             "\"synchronous\":\"%s\"}}", dir, sync);
    if (nv_file_queue_open(settings, &q, &err) != NV_OK) {
        fprintf(stderr, "file_bench: %s\n", err.msg);
        return 1;
    }

    total_jobs = jobs;
    atomic_store(&next_id, 0);
    dt = run(enqueue_main, threads);
    printf("file %s enqueue %d %.0f (%.1f us CPU/job)\n", sync, threads,
           jobs / dt, cpu_used / jobs * 1e6);
    fflush(stdout);

    if (strchr(phases, 'r') != NULL) {
        atomic_store(&done_jobs, 0);
        dt = run(consume_main, threads);
        report(sync, "reserve+ack", threads, dt);
    }
    if (strchr(phases, 'w') != NULL) {
        if (strchr(phases, 'r') != NULL) {
            /* fresh jobs for this phase (not timed) */
            total_jobs = 2 * jobs;
            atomic_store(&next_id, jobs);
            run(enqueue_main, threads);
        }
        atomic_store(&done_jobs, 0);
        dt = run(worker_main, threads);
        report(sync, "finish_reserve", threads, dt);
    }
    if (strchr(phases, 'c') != NULL) {
        total_jobs = 3 * jobs;
        atomic_store(&next_id, 2 * jobs);
        atomic_store(&done_jobs, 0);
        dt = run(cycle_main, threads);
        report(sync, "cycle", threads, dt);
    }

    q.ops->close(q.self);
    if (strchr(phases, 'o') != NULL) {
        nv_job_counts c = { 0 };
        double t0 = now_s();

        if (nv_file_queue_open(settings, &q, &err) != NV_OK) {
            fprintf(stderr, "file_bench: reopen: %s\n", err.msg);
            return 1;
        }
        dt = now_s() - t0;
        q.ops->counts(q.self, "bench", &c, NULL);
        printf("file %s reopen with %lld jobs stored: %.0f ms\n", sync,
               (long long)(c.waiting + c.delayed + c.active + c.completed +
                           c.failed), dt * 1e3);
        q.ops->close(q.self);
    }
    if (atomic_load(&errors) > 0)
        fprintf(stderr, "file_bench: %ld failed calls\n",
                atomic_load(&errors));
    if (strcmp(dir, tmpl) == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "file_bench: cannot remove %s\n", dir);
    }
    return atomic_load(&errors) > 0;
}
