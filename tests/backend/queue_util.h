/*
 * Helpers of the queue contract tests (test_queue_contract.c and
 * test_queue_model.c): building jobs and calling the ops of the queue
 * opened for the current backend.
 */
#ifndef NV_TESTS_BACKEND_QUEUE_UTIL_H
#define NV_TESTS_BACKEND_QUEUE_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "support/backend.h"

static nv_queue qq;

/* each test file uses only some helpers */
#define QU static __attribute__((unused))

#define Q (qq.self)
#define QOPS (qq.ops)

QU void
queue_setup(void)
{
    nv_error err = { 0 };
    int rc;

    nv_test_watchdog(60);
    rc = nv_test_queue_open(&qq, &err);

    cr_assert_eq(rc, NV_OK, "open %s queue: %s", nv_test_backend(), err.msg);
}

QU void
queue_teardown(void)
{
    if (qq.ops != NULL)
        qq.ops->close(qq.self);
}

/* A job template: the caller fills what matters. Strings are borrowed. */
QU nv_job
mkjob(const char *queue, const char *id, int64_t now)
{
    nv_job j;

    memset(&j, 0, sizeof(j));
    snprintf(j.queue, sizeof(j.queue), "%s", queue);
    snprintf(j.id, sizeof(j.id), "%s", id);
    snprintf(j.name, sizeof(j.name), "%s", queue);
    j.data = (char *)"{\"n\":1}";
    j.opts = (char *)"{\"attempts\":1}";
    j.remove_on_complete = NV_KEEP_ALL;
    j.remove_on_fail = NV_KEEP_ALL;
    j.timestamp = now;
    return j;
}

/* Enqueue a plain waiting job; asserts it was created. */
QU void
enq(const char *queue, const char *id, int64_t now, int priority, int lifo)
{
    nv_job j = mkjob(queue, id, now);
    int created = -1;
    nv_error err = { 0 };

    j.priority = priority;
    j.lifo = lifo;
    cr_assert_eq(QOPS->enqueue(Q, &j, now, 0, NULL, &created, &err), NV_OK,
                 "enqueue %s: %s", id, err.msg);
    cr_assert_eq(created, 1, "enqueue %s: not created", id);
}

/* Reserve; returns the code, the job in 'out' on NV_OK. */
QU int
res(const char *queue, int64_t now, const nv_limiter *lim, nv_job *out,
    int64_t *next_at)
{
    memset(out, 0, sizeof(*out));
    return QOPS->reserve(Q, queue, now, 30000, lim, out, next_at, NULL);
}

/* Reserve and return the job id (static buffer), or "-" when none. */
QU const char *
res_id(const char *queue, int64_t now, const nv_limiter *lim)
{
    static char id[NV_JOB_ID_MAX];
    nv_job j;
    int rc = res(queue, now, lim, &j, NULL);

    if (rc == NV_ENOTFOUND)
        return "-";
    cr_assert_eq(rc, NV_OK, "reserve: %d", rc);
    snprintf(id, sizeof(id), "%s", j.id);
    nv_job_release(&j);
    return id;
}

QU int
fin(const char *queue, const nv_job *j, int kind, const char *text,
    int64_t retry_at, int64_t now)
{
    nv_finish f = { .kind = kind, .retry_at = retry_at };

    if (kind == NV_FINISH_COMPLETE)
        f.returnvalue = text;
    else
        f.failed_reason = text;
    return QOPS->finish(Q, queue, j->id, j->lease_token, &f, now, NULL);
}

/* The stored job; asserts it exists. Release with nv_job_release. */
QU nv_job
get(const char *queue, const char *id)
{
    nv_job j;
    nv_error err = { 0 };

    memset(&j, 0, sizeof(j));
    cr_assert_eq(QOPS->get(Q, queue, id, &j, &err), NV_OK, "get %s: %s", id,
                 err.msg);
    return j;
}

QU int
state_of(const char *queue, const char *id)
{
    nv_job j;
    int st;

    memset(&j, 0, sizeof(j));
    if (QOPS->get(Q, queue, id, &j, NULL) == NV_EJOB_NOT_FOUND)
        return -1;
    st = j.state;
    nv_job_release(&j);
    return st;
}

QU nv_job_counts
counts(const char *queue)
{
    nv_job_counts c;

    cr_assert_eq(QOPS->counts(Q, queue, &c, NULL), NV_OK);
    return c;
}

#endif
