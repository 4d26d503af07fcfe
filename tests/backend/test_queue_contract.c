/*
 * Queue adapter contract (include/nvent/adapter.h, nv_queue_ops): one test
 * per documented behaviour, error paths included. Runs unchanged against
 * every backend (NV_TEST_BACKEND); every op gets an explicit 'now'.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/queue_util.h"
#include "core/adapters.h"

TestSuite(queue_contract, .init = queue_setup, .fini = queue_teardown);

#define QN "mail"

/* ---- enqueue ---- */

Test(queue_contract, enqueue_stores_a_waiting_job_and_returns_it)
{
    nv_job j = mkjob(QN, "j1", 1000), out, got;
    int created = -1;

    j.priority = 7;
    snprintf(j.run_id, sizeof(j.run_id), "0190a000-0000-7000-8000-00000000000a");
    snprintf(j.flow_name, sizeof(j.flow_name), "orders");
    snprintf(j.step_name, sizeof(j.step_name), "charge");
    j.group = (char *)"eu";
    memset(&out, 0, sizeof(out));
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, &out, &created, NULL), NV_OK);
    cr_assert_eq(created, 1);
    cr_assert_eq(out.state, NV_JOB_WAITING);
    cr_assert_str_eq(out.id, "j1");
    cr_assert_str_eq(out.queue, QN);
    nv_job_release(&out);

    got = get(QN, "j1");
    cr_assert_eq(got.state, NV_JOB_WAITING);
    cr_assert_str_eq(got.name, QN);
    cr_assert_str_eq(got.data, "{\"n\":1}");
    cr_assert_str_eq(got.opts, "{\"attempts\":1}");
    cr_assert_str_eq(got.run_id, "0190a000-0000-7000-8000-00000000000a");
    cr_assert_str_eq(got.flow_name, "orders");
    cr_assert_str_eq(got.step_name, "charge");
    cr_assert_str_eq(got.group, "eu");
    cr_assert_eq(got.priority, 7);
    cr_assert_eq(got.timestamp, 1000);
    cr_assert_eq(got.attempts_made, 0);
    cr_assert_eq(got.stalled_count, 0);
    cr_assert_eq(got.processed_on, 0);
    cr_assert_eq(got.finished_on, 0);
    cr_assert_null(got.returnvalue);
    cr_assert_null(got.failed_reason);
    nv_job_release(&got);
}

Test(queue_contract, enqueue_with_a_future_delay_until_is_delayed)
{
    nv_job j = mkjob(QN, "d1", 1000), out;
    nv_job_counts c;

    j.delay_until = 1500;
    memset(&out, 0, sizeof(out));
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, &out, NULL, NULL), NV_OK);
    cr_assert_eq(out.state, NV_JOB_DELAYED);
    cr_assert_eq(out.delay_until, 1500);
    nv_job_release(&out);
    /* due already: waiting */
    j = mkjob(QN, "d2", 1000);
    j.delay_until = 1000;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, &out, NULL, NULL), NV_OK);
    cr_assert_eq(out.state, NV_JOB_WAITING);
    nv_job_release(&out);
    c = counts(QN);
    cr_assert_eq(c.delayed, 1);
    cr_assert_eq(c.waiting, 1);
}

Test(queue_contract, enqueue_into_a_paused_queue_reports_paused)
{
    nv_job j = mkjob(QN, "p1", 1000), out;
    nv_job_counts c;

    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    memset(&out, 0, sizeof(out));
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, &out, NULL, NULL), NV_OK);
    cr_assert_eq(out.state, NV_JOB_PAUSED);
    nv_job_release(&out);
    cr_assert_eq(state_of(QN, "p1"), NV_JOB_PAUSED);
    c = counts(QN);
    cr_assert_eq(c.paused, 1);
    cr_assert_eq(c.waiting, 0);
}

/* Enqueue 'id' again with other data; assert nothing changed. */
static void
assert_dedup(const char *id, int want_state)
{
    nv_job j = mkjob(QN, id, 9000), out, got;
    int created = -1;

    j.data = (char *)"{\"other\":true}";
    j.priority = 99;
    memset(&out, 0, sizeof(out));
    cr_assert_eq(QOPS->enqueue(Q, &j, 9000, 0, &out, &created, NULL), NV_OK);
    cr_assert_eq(created, 0, "%s: created again", id);
    cr_assert_eq(out.state, want_state, "%s: state %d", id, out.state);
    cr_assert_str_eq(out.data, "{\"n\":1}");
    nv_job_release(&out);
    got = get(QN, id);
    cr_assert_eq(got.state, want_state);
    cr_assert_str_eq(got.data, "{\"n\":1}");
    cr_assert_eq(got.priority, 0);
    cr_assert_eq(got.timestamp, 1000);
    nv_job_release(&got);
}

Test(queue_contract, enqueue_of_an_existing_id_returns_it_unchanged_in_every_state)
{
    nv_job j, a;

    enq(QN, "active", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    enq(QN, "done", 1000, 0, 0);
    enq(QN, "bad", 1000, 0, 0);
    enq(QN, "wait", 1000, 0, 0);
    j = mkjob(QN, "later", 1000);
    j.delay_until = 50000;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    {
        nv_job d, b;

        cr_assert_eq(res(QN, 1000, NULL, &d, NULL), NV_OK);
        cr_assert_str_eq(d.id, "done");
        cr_assert_eq(fin(QN, &d, NV_FINISH_COMPLETE, "1", 0, 1100), NV_OK);
        cr_assert_eq(res(QN, 1000, NULL, &b, NULL), NV_OK);
        cr_assert_str_eq(b.id, "bad");
        cr_assert_eq(fin(QN, &b, NV_FINISH_FAIL, "boom", 0, 1100), NV_OK);
        nv_job_release(&d);
        nv_job_release(&b);
    }
    assert_dedup("active", NV_JOB_ACTIVE);
    assert_dedup("done", NV_JOB_COMPLETED);
    assert_dedup("bad", NV_JOB_FAILED);
    assert_dedup("wait", NV_JOB_WAITING);
    assert_dedup("later", NV_JOB_DELAYED);
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    assert_dedup("wait", NV_JOB_PAUSED);
    cr_assert_eq(counts(QN).paused, 1);
    nv_job_release(&a);
}

/* An enqueue that asks for nothing back (no 'out', no 'created', no
 * capacity): an adapter may take the job in without answering (the
 * memory queue's inbox), but every later op must see it and Q-3 holds. */
static void
enq_quiet(const char *queue, const char *id, const char *data, int priority)
{
    nv_job j = mkjob(queue, id, 1000);

    j.data = (char *)data;
    j.priority = priority;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
}

Test(queue_contract, an_enqueue_asking_nothing_back_is_seen_at_once_and_deduplicated)
{
    nv_job got, a;

    enq_quiet(QN, "a", "{\"v\":1}", 0);
    enq_quiet(QN, "a", "{\"v\":2}", 0);        /* changes nothing */
    enq_quiet(QN, "b", "{}", 0);
    enq_quiet(QN, "c", "{}", 0);
    enq_quiet(QN, "first", "{}", 0);
    enq(QN, "asked", 1000, 0, 0);               /* between quiet ones */
    enq_quiet(QN, "d", "{}", 0);
    got = get(QN, "a");
    cr_assert_str_eq(got.data, "{\"v\":1}");
    nv_job_release(&got);
    cr_assert_eq(counts(QN).waiting, 6);
    cr_assert_str_eq(res_id(QN, 1000, NULL), "a");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "b");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "c");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "first");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "asked");
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "d");
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "7", 0, 1100), NV_OK);
    nv_job_release(&a);
    /* a kept finished job is not replaced either */
    enq_quiet(QN, "d", "{\"v\":3}", 0);
    cr_assert_eq(state_of(QN, "d"), NV_JOB_COMPLETED);
    cr_assert_eq(counts(QN).waiting, 0);
    /* removed, its id is free again */
    cr_assert_eq(QOPS->remove(Q, QN, "d", NULL, NULL), NV_OK);
    enq_quiet(QN, "d", "{\"v\":4}", 0);
    got = get(QN, "d");
    cr_assert_str_eq(got.data, "{\"v\":4}");
    cr_assert_eq(got.state, NV_JOB_WAITING);
    nv_job_release(&got);
}

#define QUIET_THREADS 4
#define QUIET_JOBS 250

static atomic_int quiet_errors;

/* (no cr_assert outside the test's thread) */
static void *
quiet_producer(void *arg)
{
    int k = (int)(intptr_t)arg;
    char id[32];

    for (int i = 0; i < 2 * QUIET_JOBS; i++) {
        nv_job j;

        if (i % 2 == 0)
            snprintf(id, sizeof(id), "t%d-%d", k, i / 2);
        else
            snprintf(id, sizeof(id), "shared-%d", i / 2);
        j = mkjob(QN, id, 1000);
        if (QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL) != NV_OK)
            atomic_fetch_add(&quiet_errors, 1);
    }
    return NULL;
}

Test(queue_contract, concurrent_quiet_enqueues_keep_every_job_once)
{
    pthread_t th[QUIET_THREADS];
    int64_t seen = 0;
    nv_job j;

    for (int k = 0; k < QUIET_THREADS; k++)
        cr_assert_eq(pthread_create(&th[k], NULL, quiet_producer,
                                    (void *)(intptr_t)k), 0);
    /* a consumer meanwhile */
    while (seen < 100) {
        if (res(QN, 1000, NULL, &j, NULL) == NV_OK) {
            cr_assert_eq(fin(QN, &j, NV_FINISH_COMPLETE, "null", 0, 1000),
                         NV_OK);
            nv_job_release(&j);
            seen++;
        }
    }
    for (int k = 0; k < QUIET_THREADS; k++)
        pthread_join(th[k], NULL);
    cr_assert_eq(atomic_load(&quiet_errors), 0);
    cr_assert_eq(counts(QN).waiting + seen,
                 QUIET_THREADS * QUIET_JOBS + QUIET_JOBS);
    for (int i = 0; i < QUIET_JOBS; i += 50) {
        char id[32];

        snprintf(id, sizeof(id), "shared-%d", i);
        cr_assert_neq(state_of(QN, id), -1, "%s missing", id);
        snprintf(id, sizeof(id), "t3-%d", i);
        cr_assert_neq(state_of(QN, id), -1, "%s missing", id);
    }
}

Test(queue_contract, a_removed_job_id_can_be_used_again)
{
    nv_job j, got;
    int created = 0;

    enq(QN, "x", 1000, 0, 0);
    cr_assert_eq(QOPS->remove(Q, QN, "x", NULL, NULL), NV_OK);
    j = mkjob(QN, "x", 2000);
    j.data = (char *)"{\"v\":2}";
    cr_assert_eq(QOPS->enqueue(Q, &j, 2000, 0, NULL, &created, NULL), NV_OK);
    cr_assert_eq(created, 1);
    got = get(QN, "x");
    cr_assert_str_eq(got.data, "{\"v\":2}");
    nv_job_release(&got);
}

Test(queue_contract, job_ids_are_unique_per_queue_only)
{
    enq("a", "same", 1000, 0, 0);
    enq("b", "same", 1000, 0, 0);
    cr_assert_eq(counts("a").waiting, 1);
    cr_assert_eq(counts("b").waiting, 1);
}

Test(queue_contract, enqueue_fails_with_queue_full_counting_unfinished_jobs_only)
{
    nv_job j = mkjob(QN, "d", 1000), a;
    nv_error err = { 0 };
    nv_job_counts c;

    j.delay_until = 90000;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 3, NULL, NULL, NULL), NV_OK);
    j = mkjob(QN, "w1", 1000);
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 3, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);   /* w1 active */
    j = mkjob(QN, "w2", 1000);
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 3, NULL, NULL, NULL), NV_OK);
    j = mkjob(QN, "w3", 1000);
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 3, NULL, NULL, &err),
                 NV_EQUEUE_FULL);
    cr_assert_eq(err.code, NV_EQUEUE_FULL);
    cr_assert_eq(state_of(QN, "w3"), -1, "a refused job is not stored");
    /* paused waiting jobs count too */
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 3, NULL, NULL, NULL),
                 NV_EQUEUE_FULL);
    cr_assert_eq(QOPS->set_paused(Q, QN, 0, NULL), NV_OK);
    /* a finished job frees its place */
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "null", 0, 1200), NV_OK);
    cr_assert_eq(QOPS->enqueue(Q, &j, 1300, 3, NULL, NULL, NULL), NV_OK);
    /* 0 = unlimited */
    j = mkjob(QN, "w4", 1000);
    cr_assert_eq(QOPS->enqueue(Q, &j, 1300, 0, NULL, NULL, NULL), NV_OK);
    c = counts(QN);
    cr_assert_eq(c.waiting + c.delayed + c.active, 4);
    cr_assert_eq(c.completed, 1);
    nv_job_release(&a);
}

/* ---- reservation order (Q-4) ---- */

/* enqueue_many (optional; the file and redis queues have it): each job as
 * an enqueue of its own, in order (redis: over more than one round trip,
 * 64 a trip; file: in one transaction). */
Test(queue_contract, enqueue_many_enqueues_each_job_as_enqueue_would)
{
    enum { N = 70 };
    static char ids[N][16];
    nv_job jobs[N];
    int rcs[N], made[N];
    nv_error err = { 0 };

    if (strcmp(nv_test_backend(), "memory") != 0)
        cr_assert_not_null(QOPS->enqueue_many);
    if (QOPS->enqueue_many == NULL)
        return;                   /* memory: the engine enqueues one by one */
    enq(QN, "j5", 1000, 0, 0);    /* exists: not created again */
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "j%d", i);
        jobs[i] = mkjob(QN, ids[i], 1000);
    }
    cr_assert_eq(QOPS->enqueue_many(Q, jobs, N, 1000, 0, rcs, made, &err),
                 NV_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rcs[i], NV_OK, "job %d", i);
        cr_assert_eq(made[i], i != 5, "job %d", i);
    }
    cr_assert_str_eq(res_id(QN, 1001, NULL), "j5", "the older one first");
    for (int i = 0; i < N; i++) {
        if (i != 5)
            cr_assert_str_eq(res_id(QN, 1001, NULL), ids[i]);
    }
    cr_assert_str_eq(res_id(QN, 1001, NULL), "-");
}

Test(queue_contract, enqueue_many_refuses_the_jobs_past_the_maximum)
{
    static char ids[5][16];
    nv_job jobs[5];
    int rcs[5], made[5];
    nv_error err = { 0 };

    if (QOPS->enqueue_many == NULL)
        return;
    for (int i = 0; i < 5; i++) {
        snprintf(ids[i], sizeof(ids[i]), "m%d", i);
        jobs[i] = mkjob(QN, ids[i], 1000);
    }
    cr_assert_eq(QOPS->enqueue_many(Q, jobs, 5, 1000, 3, rcs, made, &err),
                 NV_EQUEUE_FULL);
    cr_assert_eq(err.code, NV_EQUEUE_FULL);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(rcs[i], i < 3 ? NV_OK : NV_EQUEUE_FULL, "job %d", i);
        cr_assert_eq(made[i], i < 3, "job %d", i);
        cr_assert_eq(state_of(QN, ids[i]), i < 3 ? NV_JOB_WAITING : -1);
    }
}

Test(queue_contract, reserve_takes_the_lowest_priority_then_the_oldest)
{
    enq(QN, "p5a", 1000, 5, 0);
    enq(QN, "p1a", 1001, 1, 0);
    enq(QN, "p1b", 1002, 1, 0);
    enq(QN, "p0", 1003, 0, 0);
    enq(QN, "p5b", 1004, 5, 0);
    enq(QN, "big", 1005, 2097152, 0);
    cr_assert_str_eq(res_id(QN, 2000, NULL), "p0");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "p1a");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "p1b");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "p5a");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "p5b");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "big");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "-");
}

Test(queue_contract, lifo_jobs_go_ahead_of_the_waiting_jobs_of_their_priority)
{
    enq(QN, "a", 1000, 0, 0);
    enq(QN, "b", 1000, 0, 0);
    enq(QN, "c", 1000, 0, 1);
    enq(QN, "hi", 1000, 1, 0);
    enq(QN, "hilifo", 1000, 1, 1);
    enq(QN, "e", 1000, 0, 1);
    enq(QN, "f", 1000, 0, 0);
    cr_assert_str_eq(res_id(QN, 1000, NULL), "e");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "c");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "a");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "b");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "f");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "hilifo");
    cr_assert_str_eq(res_id(QN, 1000, NULL), "hi");
}

Test(queue_contract, reserve_makes_the_job_active_with_a_lease)
{
    nv_job a, got;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(QOPS->reserve(Q, QN, 5000, 30000, NULL, &a, NULL, NULL),
                 NV_OK);
    cr_assert_str_eq(a.id, "j");
    cr_assert_eq(a.state, NV_JOB_ACTIVE);
    cr_assert_eq(a.processed_on, 5000);
    cr_assert_eq(a.lease_until, 35000);
    cr_assert_gt(strlen(a.lease_token), 7);
    cr_assert_str_eq(a.data, "{\"n\":1}");
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_ACTIVE);
    cr_assert_eq(got.processed_on, 5000);
    nv_job_release(&got);
    cr_assert_eq(counts(QN).active, 1);
    cr_assert_eq(counts(QN).waiting, 0);
    nv_job_release(&a);
}

Test(queue_contract, every_reservation_gets_a_fresh_token)
{
    nv_job a, b;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_RELEASE, NULL, 0, 1001), NV_OK);
    cr_assert_eq(res(QN, 1002, NULL, &b, NULL), NV_OK);
    cr_assert_str_eq(b.id, "j");
    cr_assert_str_neq(a.lease_token, b.lease_token);
    /* the old holder cannot finish the new attempt */
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 1003), NV_ELEASE);
    cr_assert_eq(state_of(QN, "j"), NV_JOB_ACTIVE);
    cr_assert_eq(fin(QN, &b, NV_FINISH_COMPLETE, "1", 0, 1003), NV_OK);
    nv_job_release(&a);
    nv_job_release(&b);
}

Test(queue_contract, reserve_from_an_empty_or_unknown_queue_is_not_found)
{
    nv_job a;
    int64_t next = -1;

    cr_assert_eq(res("nothing", 1000, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 0);
    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    nv_job_release(&a);
    next = -1;
    cr_assert_eq(res(QN, 1000, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 0);
}

/* ---- delays (Q-5) ---- */

Test(queue_contract, a_delayed_job_becomes_runnable_exactly_at_delay_until)
{
    nv_job j = mkjob(QN, "d", 1000), a;
    int64_t next = -1;

    j.delay_until = 1500;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 1500);
    cr_assert_eq(res(QN, 1499, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 1500);
    cr_assert_eq(state_of(QN, "d"), NV_JOB_DELAYED);
    cr_assert_eq(res(QN, 1500, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "d");
    cr_assert_eq(a.processed_on, 1500);
    nv_job_release(&a);
}

Test(queue_contract, a_delayed_job_due_sooner_than_those_seen_runs_at_its_own_time)
{
    nv_job j = mkjob(QN, "late", 1000), a;
    int64_t next = -1;

    j.delay_until = 5000;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 5000);
    j = mkjob(QN, "soon", 1100);
    j.delay_until = 1200;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1100, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 1150, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 1200);
    cr_assert_eq(res(QN, 1200, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "soon");
    nv_job_release(&a);
    cr_assert_eq(res(QN, 4999, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 5000);
    cr_assert_eq(res(QN, 5000, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "late");
    nv_job_release(&a);
}

Test(queue_contract, next_at_is_the_earliest_delayed_job)
{
    nv_job j;
    nv_job a;
    int64_t next = -1;

    j = mkjob(QN, "late", 1000);
    j.delay_until = 9000;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    j = mkjob(QN, "soon", 1000);
    j.delay_until = 4000;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 4000);
    cr_assert_eq(res(QN, 4000, NULL, &a, &next), NV_OK);
    nv_job_release(&a);
    cr_assert_eq(res(QN, 4000, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 9000);
}

Test(queue_contract, promoted_jobs_keep_priority_order_and_follow_earlier_waiting_jobs)
{
    nv_job j;

    enq(QN, "w5", 1000, 5, 0);
    enq(QN, "w0", 1000, 0, 0);
    j = mkjob(QN, "d0", 1000);
    j.delay_until = 1200;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    j = mkjob(QN, "d1", 1000);
    j.delay_until = 1100;
    j.priority = 1;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_str_eq(res_id(QN, 1300, NULL), "w0");
    cr_assert_str_eq(res_id(QN, 1300, NULL), "d0");
    cr_assert_str_eq(res_id(QN, 1300, NULL), "d1");
    cr_assert_str_eq(res_id(QN, 1300, NULL), "w5");
}

Test(queue_contract, due_delayed_jobs_are_promoted_in_delay_order)
{
    nv_job j;

    j = mkjob(QN, "second", 1000);
    j.delay_until = 1300;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    j = mkjob(QN, "first", 1000);
    j.delay_until = 1200;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_str_eq(res_id(QN, 2000, NULL), "first");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "second");
}

/* ---- limiter (Q-12) ---- */

Test(queue_contract, limiter_allows_max_jobs_per_window)
{
    nv_limiter lim = { .max = 2, .duration_ms = 1000 };
    nv_job a;
    int64_t next = -1;

    for (int i = 0; i < 5; i++) {
        char id[16];

        snprintf(id, sizeof(id), "j%d", i);
        enq(QN, id, 0, 0, 0);
    }
    cr_assert_str_eq(res_id(QN, 10000, &lim), "j0");
    cr_assert_str_eq(res_id(QN, 10000, &lim), "j1");
    cr_assert_eq(res(QN, 10000, &lim, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 11000);
    cr_assert_eq(res(QN, 10999, &lim, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(counts(QN).waiting, 3, "held-back jobs stay waiting");
    cr_assert_str_eq(res_id(QN, 11000, &lim), "j2");
    cr_assert_str_eq(res_id(QN, 11000, &lim), "j3");
    cr_assert_str_eq(res_id(QN, 11000, &lim), "-");
    /* no limiter: no window */
    cr_assert_str_eq(res_id(QN, 11000, NULL), "j4");
}

Test(queue_contract, limiter_window_slides)
{
    nv_limiter lim = { .max = 2, .duration_ms = 1000 };
    nv_job a;
    int64_t next = -1;

    for (int i = 0; i < 5; i++) {
        char id[16];

        snprintf(id, sizeof(id), "j%d", i);
        enq(QN, id, 0, 0, 0);
    }
    cr_assert_str_eq(res_id(QN, 5000, &lim), "j0");
    cr_assert_str_eq(res_id(QN, 5600, &lim), "j1");
    cr_assert_eq(res(QN, 5900, &lim, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 6000);
    cr_assert_str_eq(res_id(QN, 6000, &lim), "j2");
    cr_assert_eq(res(QN, 6000, &lim, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 6600);
    cr_assert_str_eq(res_id(QN, 6600, &lim), "j3");
}

static void
enq_group(const char *id, const char *group)
{
    nv_job j = mkjob(QN, id, 0);

    j.group = (char *)group;
    cr_assert_eq(QOPS->enqueue(Q, &j, 0, 0, NULL, NULL, NULL), NV_OK);
}

Test(queue_contract, a_saturated_group_does_not_hold_back_other_groups)
{
    nv_limiter lim = { .max = 1, .duration_ms = 1000, .grouped = 1 };
    nv_job a;
    int64_t next = -1;

    enq_group("a1", "A");
    enq_group("a2", "A");
    enq_group("b1", "B");
    enq_group("n1", NULL);
    enq_group("n2", NULL);
    cr_assert_str_eq(res_id(QN, 1000, &lim), "a1");
    cr_assert_str_eq(res_id(QN, 1000, &lim), "b1");
    cr_assert_str_eq(res_id(QN, 1000, &lim), "n1");
    cr_assert_eq(res(QN, 1500, &lim, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 2000);
    cr_assert_eq(counts(QN).waiting, 2);
    cr_assert_str_eq(res_id(QN, 2000, &lim), "a2");
    cr_assert_str_eq(res_id(QN, 2000, &lim), "n2");
}

Test(queue_contract, group_windows_are_counted_separately)
{
    nv_limiter lim = { .max = 2, .duration_ms = 1000, .grouped = 1 };

    enq_group("a1", "A");
    enq_group("a2", "A");
    enq_group("a3", "A");
    enq_group("b1", "B");
    enq_group("b2", "B");
    cr_assert_str_eq(res_id(QN, 1000, &lim), "a1");
    cr_assert_str_eq(res_id(QN, 1000, &lim), "a2");
    cr_assert_str_eq(res_id(QN, 1000, &lim), "b1");
    cr_assert_str_eq(res_id(QN, 1000, &lim), "b2");
    cr_assert_str_eq(res_id(QN, 1000, &lim), "-");
    cr_assert_str_eq(res_id(QN, 2000, &lim), "a3");
}

/* ---- pause (Q-13, CL-1) ---- */

Test(queue_contract, a_paused_queue_reserves_nothing_and_resumes_in_order)
{
    nv_job a;
    int paused = -1;
    nv_job *v = NULL;
    size_t n = 0;
    int64_t total = 0;

    enq(QN, "a", 1000, 0, 0);
    enq(QN, "b", 1001, 0, 0);
    cr_assert_eq(QOPS->is_paused(Q, QN, &paused, NULL), NV_OK);
    cr_assert_eq(paused, 0);
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    cr_assert_eq(QOPS->is_paused(Q, QN, &paused, NULL), NV_OK);
    cr_assert_eq(paused, 1);
    enq(QN, "c", 1002, 0, 0);
    cr_assert_eq(res(QN, 2000, NULL, &a, NULL), NV_ENOTFOUND);
    cr_assert_eq(counts(QN).paused, 3);
    cr_assert_eq(counts(QN).waiting, 0);
    cr_assert_eq(QOPS->list(Q, QN, NV_JOB_MASK(NV_JOB_PAUSED), 0, 10, &v, &n,
                            &total, NULL), NV_OK);
    cr_assert_eq(total, 3);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(v[i].state, NV_JOB_PAUSED);
    nv_job_array_free(v, n);
    cr_assert_eq(QOPS->list(Q, QN, NV_JOB_MASK(NV_JOB_WAITING), 0, 10, &v, &n,
                            &total, NULL), NV_OK);
    cr_assert_eq(total, 0);
    nv_job_array_free(v, n);

    cr_assert_eq(QOPS->set_paused(Q, QN, 0, NULL), NV_OK);
    cr_assert_eq(state_of(QN, "a"), NV_JOB_WAITING);
    cr_assert_str_eq(res_id(QN, 2000, NULL), "a");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "b");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "c");
}

Test(queue_contract, pausing_lets_active_jobs_finish)
{
    nv_job a;

    enq(QN, "a", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    cr_assert_eq(state_of(QN, "a"), NV_JOB_ACTIVE);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 1100), NV_OK);
    cr_assert_eq(state_of(QN, "a"), NV_JOB_COMPLETED);
    nv_job_release(&a);
}

Test(queue_contract, a_lifo_job_goes_ahead_of_paused_jobs_of_its_priority)
{
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    enq(QN, "a", 1000, 0, 0);
    enq(QN, "b", 1000, 0, 0);
    enq(QN, "c", 1000, 0, 1);
    cr_assert_eq(QOPS->set_paused(Q, QN, 0, NULL), NV_OK);
    cr_assert_str_eq(res_id(QN, 2000, NULL), "c");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "a");
    cr_assert_str_eq(res_id(QN, 2000, NULL), "b");
}

Test(queue_contract, delayed_jobs_due_in_a_paused_queue_report_paused)
{
    nv_job j = mkjob(QN, "d", 1000), a;

    j.delay_until = 1100;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    cr_assert_eq(res(QN, 1200, NULL, &a, NULL), NV_ENOTFOUND);
    cr_assert_eq(state_of(QN, "d"), NV_JOB_PAUSED);
    cr_assert_eq(QOPS->set_paused(Q, QN, 0, NULL), NV_OK);
    cr_assert_str_eq(res_id(QN, 1200, NULL), "d");
}

/* ---- leases: extend, finish, progress ---- */

Test(queue_contract, extend_moves_the_lease_and_needs_the_token)
{
    nv_job a, got;
    nv_reaped *r = NULL;
    size_t n = 0;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(QOPS->reserve(Q, QN, 1000, 1000, NULL, &a, NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->extend(Q, QN, "j", a.lease_token, 5000, NULL), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.lease_until, 5000);
    nv_job_release(&got);
    cr_assert_eq(QOPS->reap(Q, QN, 4000, 1, &r, &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    nv_reaped_free(r, n);
    cr_assert_eq(QOPS->extend(Q, QN, "j", "not-the-token", 9000, NULL),
                 NV_ELEASE);
    cr_assert_eq(QOPS->extend(Q, QN, "nope", a.lease_token, 9000, NULL),
                 NV_ELEASE);
    nv_job_release(&a);
}

Test(queue_contract, complete_records_returnvalue_finished_on_and_the_attempt)
{
    nv_job a, got;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = NULL };

    enq(QN, "j", 1000, 0, 0);
    enq(QN, "k", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "{\"ok\":true}", 0, 1250),
                 NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_COMPLETED);
    cr_assert_str_eq(got.returnvalue, "{\"ok\":true}");
    cr_assert_eq(got.finished_on, 1250);
    cr_assert_eq(got.attempts_made, 1);
    cr_assert_eq(got.processed_on, 1000);
    nv_job_release(&got);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "2", 0, 1300), NV_ELEASE,
                 "a finished job has no lease");
    nv_job_release(&a);
    /* no return value is null */
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    f.returnvalue = NULL;
    cr_assert_eq(QOPS->finish(Q, QN, "k", a.lease_token, &f, 1300, NULL),
                 NV_OK);
    got = get(QN, "k");
    cr_assert_str_eq(got.returnvalue, "null");
    nv_job_release(&got);
    nv_job_release(&a);
    cr_assert_eq(counts(QN).completed, 2);
    cr_assert_eq(counts(QN).active, 0);
}

Test(queue_contract, fail_records_the_reason_exactly)
{
    nv_job a, got;
    const char *why = "card declined: \"insufficient\" funds\n at line 3";

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_FAIL, why, 0, 1400), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_FAILED);
    cr_assert_str_eq(got.failed_reason, why);
    cr_assert_eq(got.finished_on, 1400);
    cr_assert_eq(got.attempts_made, 1);
    nv_job_release(&got);
    cr_assert_eq(counts(QN).failed, 1);
    nv_job_release(&a);
}

Test(queue_contract, retry_with_a_future_time_delays_the_job)
{
    nv_job a, got;
    int64_t next = 0;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_RETRY, "try again", 3000, 1100), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_DELAYED);
    cr_assert_eq(got.delay_until, 3000);
    cr_assert_eq(got.attempts_made, 1);
    cr_assert_str_eq(got.failed_reason, "try again");
    cr_assert_eq(got.finished_on, 0);
    nv_job_release(&got);
    nv_job_release(&a);
    cr_assert_eq(res(QN, 2999, NULL, &a, &next), NV_ENOTFOUND);
    cr_assert_eq(next, 3000);
    cr_assert_eq(res(QN, 3000, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "j");
    cr_assert_eq(a.attempts_made, 1);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 3100), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.attempts_made, 2);
    nv_job_release(&got);
    nv_job_release(&a);
}

Test(queue_contract, retry_due_now_makes_the_job_waiting)
{
    nv_job a, got;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_RETRY, "again", 1100, 1100), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_WAITING);
    cr_assert_eq(got.attempts_made, 1);
    nv_job_release(&got);
    nv_job_release(&a);
    cr_assert_str_eq(res_id(QN, 1100, NULL), "j");
}

Test(queue_contract, release_returns_the_job_to_waiting_without_an_attempt)
{
    nv_job a, got;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_RELEASE, NULL, 0, 1100), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_WAITING);
    cr_assert_eq(got.attempts_made, 0);
    cr_assert_eq(got.stalled_count, 0);
    nv_job_release(&got);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 1200), NV_ELEASE);
    nv_job_release(&a);
    cr_assert_str_eq(res_id(QN, 1200, NULL), "j");
}

Test(queue_contract, finish_with_a_wrong_token_changes_nothing)
{
    nv_job a, got;
    nv_finish f = { .kind = NV_FINISH_FAIL, .failed_reason = "x" };

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(QOPS->finish(Q, QN, "j", "stale", &f, 1100, NULL), NV_ELEASE);
    cr_assert_eq(QOPS->finish(Q, QN, "nope", a.lease_token, &f, 1100, NULL),
                 NV_ELEASE);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_ACTIVE);
    cr_assert_eq(got.attempts_made, 0);
    nv_job_release(&got);
    nv_job_release(&a);
}

Test(queue_contract, progress_is_recorded_for_the_lease_holder_only)
{
    nv_job a, got;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(QOPS->progress(Q, QN, "j", a.lease_token, 42.5,
                                "{\"step\":3}", NULL), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.progress, 42.5);
    cr_assert_str_eq(got.progress_data, "{\"step\":3}");
    nv_job_release(&got);
    cr_assert_eq(QOPS->progress(Q, QN, "j", "stale", 50, NULL, NULL),
                 NV_ELEASE);
    got = get(QN, "j");
    cr_assert_eq(got.progress, 42.5);
    nv_job_release(&got);
    nv_job_release(&a);
}

Test(queue_contract, log_keeps_the_newest_entries)
{
    nv_job got;
    json_t *arr;
    char entry[64];

    enq(QN, "j", 1000, 0, 0);
    for (int i = 0; i < 5; i++) {
        snprintf(entry, sizeof(entry),
                 "{\"ts\":%d,\"level\":\"info\",\"message\":\"m%d\"}", i, i);
        cr_assert_eq(QOPS->log(Q, QN, "j", entry, 3, NULL), NV_OK);
    }
    got = get(QN, "j");
    cr_assert_not_null(got.logs);
    arr = json_loads(got.logs, 0, NULL);
    cr_assert(json_is_array(arr));
    cr_assert_eq(json_array_size(arr), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 0),
                                                       "message")), "m2");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 2),
                                                       "message")), "m4");
    json_decref(arr);
    nv_job_release(&got);
    cr_assert_eq(QOPS->log(Q, QN, "nope", "{}", 3, NULL), NV_EJOB_NOT_FOUND);
}

Test(queue_contract, a_reserved_job_carries_its_logs_and_a_new_one_none)
{
    nv_job a, b;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1100, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "j");
    cr_assert(a.logs == NULL || strcmp(a.logs, "[]") == 0);
    cr_assert_eq(QOPS->log(Q, QN, "j", "{\"message\":\"m0\"}", 10, NULL),
                 NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_RELEASE, NULL, 0, 1200), NV_OK);
    nv_job_release(&a);
    cr_assert_eq(res(QN, 1300, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "j");
    cr_assert_not_null(a.logs);
    cr_assert_not_null(strstr(a.logs, "m0"));
    enq(QN, "k", 1301, 0, 0);
    cr_assert_eq(res(QN, 1400, NULL, &b, NULL), NV_OK);
    cr_assert_str_eq(b.id, "k");
    cr_assert(b.logs == NULL || strcmp(b.logs, "[]") == 0);
    nv_job_release(&a);
    nv_job_release(&b);
}

/* ---- reading ---- */

Test(queue_contract, get_of_a_missing_job_is_job_not_found)
{
    nv_job j;

    cr_assert_eq(QOPS->get(Q, QN, "nope", &j, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(QOPS->get(Q, "noqueue", "nope", &j, NULL), NV_EJOB_NOT_FOUND);
}

Test(queue_contract, list_is_newest_first_with_offset_limit_and_total)
{
    nv_job *v = NULL, a;
    size_t n = 0;
    int64_t total = 0;

    enq(QN, "t1", 1000, 0, 0);
    enq(QN, "t3b", 3000, 0, 0);
    enq(QN, "t2", 2000, 0, 0);
    enq(QN, "t3a", 3000, 0, 0);
    enq(QN, "t4", 4000, 9, 0);
    cr_assert_eq(res(QN, 5000, NULL, &a, NULL), NV_OK);    /* t1 active */
    cr_assert_str_eq(a.id, "t1");
    nv_job_release(&a);

    cr_assert_eq(QOPS->list(Q, QN, NV_JOB_MASK_ALL, 0, 100, &v, &n, &total,
                            NULL), NV_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(total, 5);
    cr_assert_str_eq(v[0].id, "t4");
    cr_assert_str_eq(v[1].id, "t3b");
    cr_assert_str_eq(v[2].id, "t3a");
    cr_assert_str_eq(v[3].id, "t2");
    cr_assert_str_eq(v[4].id, "t1");
    cr_assert_eq(v[4].state, NV_JOB_ACTIVE);
    nv_job_array_free(v, n);

    cr_assert_eq(QOPS->list(Q, QN, NV_JOB_MASK(NV_JOB_WAITING), 1, 2, &v, &n,
                            &total, NULL), NV_OK);
    cr_assert_eq(total, 4);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].id, "t3b");
    cr_assert_str_eq(v[1].id, "t3a");
    nv_job_array_free(v, n);

    cr_assert_eq(QOPS->list(Q, QN, NV_JOB_MASK(NV_JOB_ACTIVE) |
                            NV_JOB_MASK(NV_JOB_FAILED), 0, 10, &v, &n, &total,
                            NULL), NV_OK);
    cr_assert_eq(total, 1);
    cr_assert_str_eq(v[0].id, "t1");
    nv_job_array_free(v, n);

    cr_assert_eq(QOPS->list(Q, QN, NV_JOB_MASK_ALL, 10, 10, &v, &n, &total,
                            NULL), NV_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(total, 5);
    nv_job_array_free(v, n);

    cr_assert_eq(QOPS->list(Q, "none", NV_JOB_MASK_ALL, 0, 10, &v, &n, &total,
                            NULL), NV_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(total, 0);
    nv_job_array_free(v, n);
}

Test(queue_contract, counts_are_exact_in_every_state)
{
    nv_job j, a, b, c;
    nv_job_counts k;

    for (int i = 0; i < 6; i++) {
        char id[16];

        snprintf(id, sizeof(id), "w%d", i);
        enq(QN, id, 1000 + i, 0, 0);
    }
    j = mkjob(QN, "d", 1000);
    j.delay_until = 99999;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 2000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(res(QN, 2000, NULL, &b, NULL), NV_OK);
    cr_assert_eq(res(QN, 2000, NULL, &c, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 2100), NV_OK);
    cr_assert_eq(fin(QN, &b, NV_FINISH_FAIL, "x", 0, 2100), NV_OK);
    k = counts(QN);
    cr_assert_eq(k.waiting, 3);
    cr_assert_eq(k.delayed, 1);
    cr_assert_eq(k.active, 1);
    cr_assert_eq(k.completed, 1);
    cr_assert_eq(k.failed, 1);
    cr_assert_eq(k.paused, 0);
    k = counts("unknown");
    cr_assert_eq(k.waiting + k.delayed + k.active + k.completed + k.failed +
                 k.paused, 0);
    nv_job_release(&a);
    nv_job_release(&b);
    nv_job_release(&c);
}

/* ---- remove and retry ---- */

Test(queue_contract, remove_deletes_jobs_that_are_not_active)
{
    nv_job j, a, b, out;

    enq(QN, "w", 1000, 0, 0);
    j = mkjob(QN, "d", 1000);
    j.delay_until = 5000;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    enq(QN, "c", 1000, 0, 0);
    enq(QN, "f", 1000, 0, 0);
    enq(QN, "act", 1000, 9, 0);
    cr_assert_str_eq(res_id(QN, 1000, NULL), "w");
    /* w is now active: put two more through */
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 1100), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &b, NULL), NV_OK);
    cr_assert_eq(fin(QN, &b, NV_FINISH_FAIL, "x", 0, 1100), NV_OK);

    cr_assert_eq(QOPS->remove(Q, QN, "w", NULL, NULL), NV_EJOB_ACTIVE);
    cr_assert_eq(state_of(QN, "w"), NV_JOB_ACTIVE);
    memset(&out, 0, sizeof(out));
    cr_assert_eq(QOPS->remove(Q, QN, "d", &out, NULL), NV_OK);
    cr_assert_str_eq(out.id, "d");
    cr_assert_eq(out.state, NV_JOB_DELAYED);
    nv_job_release(&out);
    cr_assert_eq(QOPS->remove(Q, QN, a.id, NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->remove(Q, QN, b.id, NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->remove(Q, QN, "act", NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->remove(Q, QN, "act", NULL, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(state_of(QN, "d"), -1);
    {
        nv_job_counts k = counts(QN);

        cr_assert_eq(k.waiting + k.delayed + k.completed + k.failed, 0);
        cr_assert_eq(k.active, 1);
    }
    cr_assert_str_eq(res_id(QN, 9000, NULL), "-", "a removed delayed job "
                     "never runs");
    nv_job_release(&a);
    nv_job_release(&b);
}

Test(queue_contract, remove_works_on_paused_jobs)
{
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    enq(QN, "p", 1000, 0, 0);
    cr_assert_eq(QOPS->remove(Q, QN, "p", NULL, NULL), NV_OK);
    cr_assert_eq(counts(QN).paused, 0);
}

Test(queue_contract, retry_makes_a_failed_job_waiting_and_keeps_its_record)
{
    nv_job a, out, got;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_FAIL, "boom", 0, 1500), NV_OK);
    nv_job_release(&a);
    memset(&out, 0, sizeof(out));
    cr_assert_eq(QOPS->retry(Q, QN, "j", 2000, &out, NULL), NV_OK);
    cr_assert_eq(out.state, NV_JOB_WAITING);
    cr_assert_eq(out.finished_on, 1500);
    cr_assert_str_eq(out.failed_reason, "boom");
    cr_assert_eq(out.attempts_made, 1);
    nv_job_release(&out);
    cr_assert_eq(counts(QN).failed, 0);
    cr_assert_eq(counts(QN).waiting, 1);
    cr_assert_eq(res(QN, 2100, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "j");
    cr_assert_eq(a.finished_on, 0, "running again: unfinished");
    got = get(QN, "j");
    cr_assert_eq(got.finished_on, 0);
    nv_job_release(&got);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 2200), NV_OK);
    got = get(QN, "j");
    cr_assert_eq(got.attempts_made, 2);
    cr_assert_eq(got.finished_on, 2200);
    nv_job_release(&got);
    nv_job_release(&a);
}

Test(queue_contract, retry_of_a_job_that_is_not_failed_is_refused)
{
    nv_job a, d;

    enq(QN, "w", 1000, 0, 0);
    enq(QN, "c", 1000, 1, 0);
    enq(QN, "act", 1000, 2, 0);
    cr_assert_eq(res(QN, 1000, NULL, &d, NULL), NV_OK);   /* w */
    cr_assert_eq(fin(QN, &d, NV_FINISH_RELEASE, NULL, 0, 1000), NV_OK);
    nv_job_release(&d);
    /* w waiting again (released), c completed, act active */
    cr_assert_eq(res(QN, 1000, NULL, &d, NULL), NV_OK);
    cr_assert_str_eq(d.id, "w");
    cr_assert_eq(fin(QN, &d, NV_FINISH_RELEASE, NULL, 0, 1000), NV_OK);
    nv_job_release(&d);
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    cr_assert_eq(QOPS->retry(Q, QN, "w", 1000, NULL, NULL), NV_EJOB_NOT_FAILED);
    cr_assert_eq(QOPS->set_paused(Q, QN, 0, NULL), NV_OK);
    cr_assert_eq(QOPS->retry(Q, QN, "w", 1000, NULL, NULL), NV_EJOB_NOT_FAILED);
    cr_assert_str_eq(res_id(QN, 1000, NULL), "w");
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);   /* c */
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 1000), NV_OK);
    cr_assert_eq(QOPS->retry(Q, QN, "c", 1000, NULL, NULL), NV_EJOB_NOT_FAILED);
    cr_assert_eq(QOPS->retry(Q, QN, "w", 1000, NULL, NULL), NV_EJOB_NOT_FAILED,
                 "active");
    cr_assert_eq(QOPS->retry(Q, QN, "nope", 1000, NULL, NULL),
                 NV_EJOB_NOT_FOUND);
    cr_assert_eq(state_of(QN, "c"), NV_JOB_COMPLETED);
    nv_job_release(&a);
}

/* ---- retention (Q-10) ---- */

/* Enqueue id with retention, run it to completion (or failure) at 'now'. */
static void
run_to_end(const char *id, int64_t keep_done, int64_t keep_failed, int ok,
           int64_t now)
{
    nv_job j = mkjob(QN, id, now), a;

    j.remove_on_complete = keep_done;
    j.remove_on_fail = keep_failed;
    cr_assert_eq(QOPS->enqueue(Q, &j, now, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, now, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, id);
    cr_assert_eq(fin(QN, &a, ok ? NV_FINISH_COMPLETE : NV_FINISH_FAIL, "x",
                     0, now), NV_OK);
    nv_job_release(&a);
}

Test(queue_contract, remove_on_complete_true_removes_the_job_as_it_finishes)
{
    run_to_end("a", 0, NV_KEEP_ALL, 1, 1000);
    cr_assert_eq(state_of(QN, "a"), -1);
    cr_assert_eq(counts(QN).completed, 0);
    /* the id is free again */
    enq(QN, "a", 2000, 0, 0);
}

Test(queue_contract, remove_on_complete_n_keeps_the_newest_n)
{
    nv_job *v = NULL;
    size_t n = 0;
    int64_t total = 0;

    run_to_end("a", 2, NV_KEEP_ALL, 1, 1000);
    run_to_end("b", 2, NV_KEEP_ALL, 1, 2000);
    cr_assert_eq(counts(QN).completed, 2);
    run_to_end("c", 2, NV_KEEP_ALL, 1, 3000);
    cr_assert_eq(counts(QN).completed, 2);
    cr_assert_eq(state_of(QN, "a"), -1);
    cr_assert_eq(state_of(QN, "b"), NV_JOB_COMPLETED);
    cr_assert_eq(state_of(QN, "c"), NV_JOB_COMPLETED);
    cr_assert_eq(QOPS->list(Q, QN, NV_JOB_MASK(NV_JOB_COMPLETED), 0, 10, &v,
                            &n, &total, NULL), NV_OK);
    cr_assert_eq(total, 2);
    nv_job_array_free(v, n);
    /* the finishing job's own option applies to the whole state */
    run_to_end("d", 1, NV_KEEP_ALL, 1, 4000);
    cr_assert_eq(counts(QN).completed, 1);
    cr_assert_eq(state_of(QN, "d"), NV_JOB_COMPLETED);
}

Test(queue_contract, retention_keeps_the_newest_by_finished_on)
{
    nv_job j, a, b;

    j = mkjob(QN, "x", 1000);
    j.remove_on_complete = 1;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    j = mkjob(QN, "y", 1000);
    j.remove_on_complete = 1;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &b, NULL), NV_OK);
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 5000), NV_OK);
    /* finishes later, but with an older finished_on (clock went back) */
    cr_assert_eq(fin(QN, &b, NV_FINISH_COMPLETE, "1", 0, 4000), NV_OK);
    cr_assert_eq(state_of(QN, a.id), NV_JOB_COMPLETED);
    cr_assert_eq(state_of(QN, b.id), -1);
    nv_job_release(&a);
    nv_job_release(&b);
}

Test(queue_contract, retention_counts_each_final_state_separately)
{
    run_to_end("f1", NV_KEEP_ALL, 1, 0, 1000);
    run_to_end("c1", 1, NV_KEEP_ALL, 1, 2000);
    run_to_end("c2", 1, NV_KEEP_ALL, 1, 3000);
    run_to_end("f2", NV_KEEP_ALL, 5, 0, 4000);
    cr_assert_eq(counts(QN).completed, 1);
    cr_assert_eq(counts(QN).failed, 2);
    run_to_end("f3", NV_KEEP_ALL, 0, 0, 5000);
    cr_assert_eq(state_of(QN, "f3"), -1);
    cr_assert_eq(counts(QN).failed, 2);
    run_to_end("f4", NV_KEEP_ALL, 1, 0, 6000);
    cr_assert_eq(counts(QN).failed, 1);
    cr_assert_eq(state_of(QN, "f4"), NV_JOB_FAILED);
    cr_assert_eq(state_of(QN, "c2"), NV_JOB_COMPLETED);
}

Test(queue_contract, keep_all_keeps_every_finished_job)
{
    for (int i = 0; i < 20; i++) {
        char id[16];

        snprintf(id, sizeof(id), "k%d", i);
        run_to_end(id, NV_KEEP_ALL, NV_KEEP_ALL, i % 2, 1000 + i);
    }
    cr_assert_eq(counts(QN).completed, 10);
    cr_assert_eq(counts(QN).failed, 10);
}

/* ---- reap (W-3) ---- */

Test(queue_contract, reap_returns_expired_leases_to_waiting)
{
    nv_job a, got;
    nv_reaped *r = NULL;
    size_t n = 0;

    enq(QN, "j", 1000, 0, 0);
    cr_assert_eq(QOPS->reserve(Q, QN, 1000, 500, NULL, &a, NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->reap(Q, QN, 1500, 1, &r, &n, NULL), NV_OK);
    cr_assert_eq(n, 0, "a lease ending at 'now' has not ended before it");
    nv_reaped_free(r, n);
    cr_assert_eq(QOPS->reap(Q, QN, 1501, 1, &r, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(r[0].job.id, "j");
    cr_assert_eq(r[0].failed, 0);
    cr_assert_eq(r[0].job.state, NV_JOB_WAITING);
    cr_assert_eq(r[0].job.stalled_count, 1);
    cr_assert_eq(r[0].job.attempts_made, 0);
    nv_reaped_free(r, n);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_WAITING);
    cr_assert_eq(got.stalled_count, 1);
    nv_job_release(&got);
    /* the stale holder lost it */
    cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "1", 0, 1600), NV_ELEASE);
    cr_assert_eq(QOPS->extend(Q, QN, "j", a.lease_token, 9000, NULL),
                 NV_ELEASE);
    nv_job_release(&a);
    cr_assert_str_eq(res_id(QN, 1600, NULL), "j");
}

Test(queue_contract, reap_fails_a_job_that_stalled_more_than_max_stalled)
{
    nv_job a, got;
    nv_reaped *r = NULL;
    size_t n = 0;

    enq(QN, "j", 1000, 0, 0);
    enq(QN, "other", 1000, 5, 0);
    cr_assert_eq(QOPS->reserve(Q, QN, 1000, 100, NULL, &a, NULL, NULL), NV_OK);
    nv_job_release(&a);
    cr_assert_eq(QOPS->reap(Q, QN, 2000, 1, &r, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(r[0].failed, 0);
    nv_reaped_free(r, n);
    cr_assert_eq(QOPS->reserve(Q, QN, 3000, 100, NULL, &a, NULL, NULL), NV_OK);
    cr_assert_str_eq(a.id, "j");
    nv_job_release(&a);
    cr_assert_eq(QOPS->reap(Q, QN, 4000, 1, &r, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(r[0].failed, 1);
    cr_assert_eq(r[0].job.state, NV_JOB_FAILED);
    cr_assert_eq(r[0].job.stalled_count, 2);
    cr_assert_str_eq(r[0].job.failed_reason,
                     "job stalled more than allowable limit");
    cr_assert_eq(r[0].job.finished_on, 4000);
    nv_reaped_free(r, n);
    got = get(QN, "j");
    cr_assert_eq(got.state, NV_JOB_FAILED);
    cr_assert_str_eq(got.failed_reason, "job stalled more than allowable limit");
    cr_assert_eq(got.finished_on, 4000);
    nv_job_release(&got);
    cr_assert_eq(counts(QN).failed, 1);
    cr_assert_eq(counts(QN).waiting, 1);
}

Test(queue_contract, reap_with_max_stalled_zero_fails_at_once_and_applies_retention)
{
    nv_job j = mkjob(QN, "j", 1000), a;
    nv_reaped *r = NULL;
    size_t n = 0;

    j.remove_on_fail = 0;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->reserve(Q, QN, 1000, 100, NULL, &a, NULL, NULL), NV_OK);
    nv_job_release(&a);
    cr_assert_eq(QOPS->reap(Q, QN, 2000, 0, &r, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(r[0].failed, 1);
    cr_assert_str_eq(r[0].job.id, "j");
    nv_reaped_free(r, n);
    cr_assert_eq(state_of(QN, "j"), -1);
    cr_assert_eq(counts(QN).failed, 0);
}

Test(queue_contract, reap_only_touches_its_queue_and_expired_leases)
{
    nv_job a, b;
    nv_reaped *r = NULL;
    size_t n = 0;

    enq("q1", "x", 1000, 0, 0);
    enq("q2", "y", 1000, 0, 0);
    enq("q1", "z", 1000, 0, 0);
    cr_assert_eq(QOPS->reserve(Q, "q1", 1000, 100, NULL, &a, NULL, NULL), NV_OK);
    cr_assert_eq(QOPS->reserve(Q, "q1", 1000, 5000, NULL, &b, NULL, NULL), NV_OK);
    nv_job_release(&a);
    nv_job_release(&b);
    cr_assert_eq(QOPS->reserve(Q, "q2", 1000, 100, NULL, &a, NULL, NULL), NV_OK);
    nv_job_release(&a);
    cr_assert_eq(QOPS->reap(Q, "q1", 2000, 1, &r, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(r[0].job.id, "x");
    nv_reaped_free(r, n);
    cr_assert_eq(state_of("q1", "z"), NV_JOB_ACTIVE);
    cr_assert_eq(state_of("q2", "y"), NV_JOB_ACTIVE);
}

/* ---- wait / wake ---- */

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
late_enqueue(void *arg)
{
    struct timespec ts = { 0, 100 * 1000000 };

    (void)arg;
    nanosleep(&ts, NULL);
    enq(QN, "late", 1000, 0, 0);
    return NULL;
}

Test(queue_contract, wait_returns_when_a_job_is_enqueued)
{
    pthread_t t;
    int64_t t0 = mono_ms();

    pthread_create(&t, NULL, late_enqueue, NULL);
    /* the wait may return early: loop until the job is there */
    while (counts(QN).waiting == 0 && mono_ms() - t0 < 8000)
        cr_assert_eq(QOPS->wait(Q, QN, 8000), NV_OK);
    cr_assert_lt(mono_ms() - t0, 4000);
    pthread_join(t, NULL);
    cr_assert_str_eq(res_id(QN, 1000, NULL), "late");
}

Test(queue_contract, wait_returns_after_its_timeout)
{
    int64_t t0 = mono_ms();

    cr_assert_eq(QOPS->wait(Q, QN, 50), NV_OK);
    cr_assert_lt(mono_ms() - t0, 3000);
}

static void *
late_wake(void *arg)
{
    struct timespec ts = { 0, 100 * 1000000 };

    (void)arg;
    nanosleep(&ts, NULL);
    QOPS->wake(Q);
    return NULL;
}

Test(queue_contract, wake_releases_waiters)
{
    pthread_t t;
    int64_t t0 = mono_ms();

    pthread_create(&t, NULL, late_wake, NULL);
    cr_assert_eq(QOPS->wait(Q, QN, 10000), NV_OK);
    cr_assert_lt(mono_ms() - t0, 5000);
    pthread_join(t, NULL);
}

/* ---- concurrency ---- */

#define RES_THREADS 4
#define RES_JOBS 200

static int reserved_times[RES_JOBS];
static pthread_mutex_t res_mu = PTHREAD_MUTEX_INITIALIZER;

static void *
reserve_worker(void *arg)
{
    (void)arg;
    for (;;) {
        nv_job a;
        int rc = res(QN, 1000, NULL, &a, NULL);

        if (rc == NV_ENOTFOUND)
            break;
        cr_assert_eq(rc, NV_OK);
        pthread_mutex_lock(&res_mu);
        reserved_times[atoi(a.id + 1)]++;
        pthread_mutex_unlock(&res_mu);
        cr_assert_eq(fin(QN, &a, NV_FINISH_COMPLETE, "null", 0, 1000), NV_OK);
        nv_job_release(&a);
    }
    return NULL;
}

Test(queue_contract, concurrent_reservers_get_each_job_once)
{
    pthread_t t[RES_THREADS];

    for (int i = 0; i < RES_JOBS; i++) {
        char id[16];

        snprintf(id, sizeof(id), "j%d", i);
        enq(QN, id, 1000, i % 3, 0);
    }
    for (int i = 0; i < RES_THREADS; i++)
        pthread_create(&t[i], NULL, reserve_worker, NULL);
    for (int i = 0; i < RES_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < RES_JOBS; i++)
        cr_assert_eq(reserved_times[i], 1, "job j%d reserved %d times", i,
                     reserved_times[i]);
    cr_assert_eq(counts(QN).completed, RES_JOBS);
}

/* Threads finishing one job under one lease at the same time (a caller's
 * bug, or a retried call): exactly one finish takes effect, whatever
 * batching the adapter does with concurrent calls. */
#define DUP_THREADS 8

static const nv_job *dup_job;
static _Atomic int dup_go, dup_ok, dup_lease;

static void *
dup_finisher(void *arg)
{
    int kind = *(const int *)arg, rc;

    while (!dup_go)
        sched_yield();
    rc = fin(QN, dup_job, kind, "x", 0, 2000);
    if (rc == NV_OK)
        dup_ok++;
    else if (rc == NV_ELEASE || rc == NV_EJOB_NOT_FOUND)
        dup_lease++;    /* the job is gone, or no longer under that lease */
    return NULL;
}

/* Keeps the queue busy with other calls while the finishers race, so that
 * an adapter that gathers concurrent calls gathers the finishes together. */
static void *
dup_noise(void *arg)
{
    (void)arg;
    while (dup_go != 2)
        (void)counts(QN);
    return NULL;
}

static void
race_finishes(const char *id, int64_t keep, int kind)
{
    pthread_t t[DUP_THREADS], noise;
    nv_job j = mkjob(QN, id, 1000), a;

    j.remove_on_complete = j.remove_on_fail = keep;
    cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(res(QN, 1000, NULL, &a, NULL), NV_OK);
    dup_job = &a;
    dup_go = dup_ok = dup_lease = 0;
    pthread_create(&noise, NULL, dup_noise, NULL);
    for (int i = 0; i < DUP_THREADS; i++)
        pthread_create(&t[i], NULL, dup_finisher, &kind);
    dup_go = 1;
    for (int i = 0; i < DUP_THREADS; i++)
        pthread_join(t[i], NULL);
    dup_go = 2;
    pthread_join(noise, NULL);
    cr_assert_eq(dup_ok, 1, "%s: %d finishes took effect", id, (int)dup_ok);
    cr_assert_eq(dup_lease, DUP_THREADS - 1);
    nv_job_release(&a);
}

Test(queue_contract, concurrent_finishes_of_one_lease_take_effect_once)
{
    int64_t done;

    for (int i = 0; i < 10; i++) {
        char id[16];

        snprintf(id, sizeof(id), "r%d", i);
        race_finishes(id, 0, NV_FINISH_COMPLETE);     /* removed as it ends */
        cr_assert_eq(state_of(QN, id), -1);
        snprintf(id, sizeof(id), "k%d", i);
        race_finishes(id, NV_KEEP_ALL, i % 2 ? NV_FINISH_FAIL
                                              : NV_FINISH_COMPLETE);
        cr_assert_eq(state_of(QN, id), i % 2 ? NV_JOB_FAILED
                                             : NV_JOB_COMPLETED);
    }
    done = counts(QN).completed;
    cr_assert_eq(done, 5);
    cr_assert_eq(counts(QN).failed, 5);
    cr_assert_eq(counts(QN).active, 0);
}

static _Atomic int dedup_created;

static void *
dedup_worker(void *arg)
{
    for (int i = 0; i < 20; i++) {
        char id[16];
        nv_job j;
        int created = 0;

        snprintf(id, sizeof(id), "same%d", i);
        j = mkjob(QN, id, 1000);
        j.data = (char *)arg;
        cr_assert_eq(QOPS->enqueue(Q, &j, 1000, 0, NULL, &created, NULL),
                     NV_OK);
        if (created)
            dedup_created++;
    }
    return NULL;
}

Test(queue_contract, concurrent_enqueues_of_one_id_create_one_job)
{
    pthread_t t[4];
    static const char *data[4] = { "{\"t\":0}", "{\"t\":1}", "{\"t\":2}",
                                   "{\"t\":3}" };

    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, dedup_worker, (void *)data[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(dedup_created, 20);
    cr_assert_eq(counts(QN).waiting, 20);
}

Test(queue_contract, ping_answers)
{
    cr_assert_eq(QOPS->ping(Q, NULL), NV_OK);
}

/* ---- finish_reserve (optional op; nv__queue_finish_reserve falls back) ---- */

/* finish 'a' with 'kind' and reserve the next job of QN at 'now'. */
static int
fin_res(const nv_job *a, int kind, int64_t now, const nv_limiter *lim,
        nv_job *next, int *got, int64_t *next_at)
{
    nv_finish f = { .kind = kind, .retry_at = now + 5000 };

    if (kind == NV_FINISH_COMPLETE)
        f.returnvalue = "{\"done\":1}";
    else
        f.failed_reason = "boom";
    memset(next, 0, sizeof(*next));
    *got = -1;
    return nv__queue_finish_reserve(&qq, QN, a->id, a->lease_token, &f, now,
                                    30000, lim, next, got, next_at, NULL);
}

Test(queue_contract, finish_reserve_completes_and_hands_out_the_next_job)
{
    nv_job a, b, got;
    int have;

    enq(QN, "j1", 1000, 0, 0);
    enq(QN, "j2", 1001, 0, 0);
    cr_assert_eq(res(QN, 1100, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "j1");
    cr_assert_eq(fin_res(&a, NV_FINISH_COMPLETE, 1200, NULL, &b, &have, NULL),
                 NV_OK);
    cr_assert_eq(have, 1);
    cr_assert_str_eq(b.id, "j2");
    cr_assert_eq(b.state, NV_JOB_ACTIVE);
    cr_assert_eq(b.processed_on, 1200);
    cr_assert_eq(b.lease_until, 1200 + 30000);
    cr_assert_neq(b.lease_token[0], '\0');
    cr_assert_str_eq(b.data, "{\"n\":1}");
    got = get(QN, "j1");
    cr_assert_eq(got.state, NV_JOB_COMPLETED);
    cr_assert_str_eq(got.returnvalue, "{\"done\":1}");
    cr_assert_eq(got.finished_on, 1200);
    cr_assert_eq(got.attempts_made, 1);
    nv_job_release(&got);
    /* the job handed out is held under its token like a reserved one */
    cr_assert_eq(fin(QN, &b, NV_FINISH_COMPLETE, "2", 0, 1300), NV_OK);
    cr_assert_eq(counts(QN).completed, 2);
    cr_assert_eq(counts(QN).active, 0);
    nv_job_release(&a);
    nv_job_release(&b);
}

Test(queue_contract, finish_reserve_on_an_empty_queue_finishes_and_gives_next_at)
{
    nv_job a, b, d = mkjob(QN, "later", 1000);
    int have;
    int64_t next_at = -1;

    d.delay_until = 4000;
    cr_assert_eq(QOPS->enqueue(Q, &d, 1000, 0, NULL, NULL, NULL), NV_OK);
    enq(QN, "j1", 1000, 0, 0);
    cr_assert_eq(res(QN, 1100, NULL, &a, NULL), NV_OK);
    cr_assert_eq(fin_res(&a, NV_FINISH_FAIL, 1200, NULL, &b, &have, &next_at),
                 NV_OK);
    cr_assert_eq(have, 0);
    cr_assert_eq(next_at, 4000);
    cr_assert_eq(state_of(QN, "j1"), NV_JOB_FAILED);
    cr_assert_eq(counts(QN).failed, 1);
    cr_assert_eq(counts(QN).delayed, 1);
    nv_job_release(&a);
}

Test(queue_contract, finish_reserve_with_a_lost_lease_reserves_nothing)
{
    nv_job a, b, got;
    int have;

    enq(QN, "j1", 1000, 0, 0);
    enq(QN, "j2", 1001, 0, 0);
    cr_assert_eq(res(QN, 1100, NULL, &a, NULL), NV_OK);
    snprintf(a.lease_token, sizeof(a.lease_token), "stale");
    cr_assert_eq(fin_res(&a, NV_FINISH_COMPLETE, 1200, NULL, &b, &have, NULL),
                 NV_ELEASE);
    cr_assert_neq(have, 1);
    got = get(QN, "j1");
    cr_assert_eq(got.state, NV_JOB_ACTIVE);
    cr_assert_eq(got.attempts_made, 0);
    nv_job_release(&got);
    cr_assert_eq(state_of(QN, "j2"), NV_JOB_WAITING);
    nv_job_release(&a);
}

Test(queue_contract, finish_reserve_respects_pause_and_the_limiter)
{
    nv_limiter lim = { .max = 2, .duration_ms = 1000 };
    nv_job a, b, c;
    int have;
    int64_t next_at = 0;

    enq(QN, "j1", 1000, 0, 0);
    enq(QN, "j2", 1001, 0, 0);
    enq(QN, "j3", 1002, 0, 0);
    cr_assert_eq(res(QN, 1100, &lim, &a, NULL), NV_OK);
    /* the second job of the window is allowed, the third is not */
    cr_assert_eq(fin_res(&a, NV_FINISH_COMPLETE, 1200, &lim, &b, &have,
                         &next_at), NV_OK);
    cr_assert_eq(have, 1);
    cr_assert_str_eq(b.id, "j2");
    cr_assert_eq(fin_res(&b, NV_FINISH_RETRY, 1300, &lim, &c, &have,
                         &next_at), NV_OK);
    cr_assert_eq(have, 0);
    cr_assert_eq(next_at, 1100 + 1000);
    cr_assert_eq(state_of(QN, "j2"), NV_JOB_DELAYED);
    cr_assert_eq(state_of(QN, "j3"), NV_JOB_WAITING);
    nv_job_release(&a);
    nv_job_release(&b);
    /* paused: the finish happens, nothing is handed out */
    cr_assert_eq(res(QN, 2200, NULL, &a, NULL), NV_OK);
    cr_assert_str_eq(a.id, "j3");
    enq(QN, "j4", 2200, 0, 0);
    cr_assert_eq(QOPS->set_paused(Q, QN, 1, NULL), NV_OK);
    cr_assert_eq(fin_res(&a, NV_FINISH_COMPLETE, 2300, NULL, &b, &have, NULL),
                 NV_OK);
    cr_assert_eq(have, 0);
    cr_assert_eq(state_of(QN, "j3"), NV_JOB_COMPLETED);
    cr_assert_eq(state_of(QN, "j4"), NV_JOB_PAUSED);
    nv_job_release(&a);
}

/* Busy workers: each ends its job with finish_reserve and goes on with the
 * job handed out; every third job fails its first attempt and is retried
 * at once (waiting again), the others complete. */
#define FR_THREADS 6
#define FR_JOBS 150

static void *
fin_res_worker(void *arg)
{
    nv_job a, next;
    int have = 0, got;

    (void)arg;
    for (;;) {
        if (!have) {
            if (res(QN, 1000, NULL, &a, NULL) != NV_OK)
                break;
            have = 1;
        }
        {
            int k = atoi(a.id + 1);
            int kind = k % 3 == 0 && a.attempts_made == 0 ? NV_FINISH_RETRY
                                                          : NV_FINISH_COMPLETE;
            nv_finish f = { .kind = kind, .returnvalue = "null",
                            .failed_reason = "again", .retry_at = 0 };

            cr_assert_eq(nv__queue_finish_reserve(&qq, QN, a.id, a.lease_token,
                                                  &f, 1000, 30000, NULL, &next,
                                                  &got, NULL, NULL), NV_OK);
        }
        nv_job_release(&a);
        have = got;
        if (got)
            a = next;
    }
    return NULL;
}

static atomic_int fr_running;

/* Counts taken while the workers run: each is one consistent snapshot. */
static void *
fr_counter(void *arg)
{
    int *bad = arg;

    while (atomic_load(&fr_running)) {
        nv_job_counts c;

        cr_assert_eq(QOPS->counts(Q, QN, &c, NULL), NV_OK);
        if (c.waiting + c.active + c.completed + c.delayed + c.failed +
            c.paused != FR_JOBS)
            (*bad)++;
    }
    return NULL;
}

Test(queue_contract, concurrent_finish_reserve_calls_end_every_job_exactly_as_asked)
{
    pthread_t t[FR_THREADS], ct;
    int bad = 0;

    for (int i = 0; i < FR_JOBS; i++) {
        char id[16];

        snprintf(id, sizeof(id), "j%d", i);
        enq(QN, id, 1000, 0, 0);
    }
    atomic_store(&fr_running, 1);
    pthread_create(&ct, NULL, fr_counter, &bad);
    for (int i = 0; i < FR_THREADS; i++)
        pthread_create(&t[i], NULL, fin_res_worker, NULL);
    for (int i = 0; i < FR_THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&fr_running, 0);
    pthread_join(ct, NULL);
    cr_assert_eq(bad, 0, "counts that were not one snapshot");
    cr_assert_eq(counts(QN).completed, FR_JOBS);
    cr_assert_eq(counts(QN).active, 0);
    cr_assert_eq(counts(QN).waiting, 0);
    for (int i = 0; i < FR_JOBS; i++) {
        char id[16];
        nv_job j;

        snprintf(id, sizeof(id), "j%d", i);
        j = get(QN, id);
        cr_assert_eq(j.state, NV_JOB_COMPLETED);
        cr_assert_eq(j.attempts_made, i % 3 == 0 ? 2 : 1, "job %s", id);
        nv_job_release(&j);
    }
}
