/*
 * File queue, waiters: a worker with nothing to reserve sleeps on its
 * queue's condition variable until a commit that may make a job of that
 * queue runnable bumps the queue's generation, or a timeout. A commit
 * that made one job runnable wakes one waiter of that queue, not every
 * idle worker of every queue (each of which would come back with a
 * write of its own).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "adapters/file/queue.h"

/* Wake-up generation of one queue; guarded by fq.wmu. */
struct qgen {
    struct qgen    *next;
    uint64_t        gen;
    pthread_cond_t  cv;        /* its waiters */
    char            name[];
};

/* What the last reserve of this thread saw, so that a job enqueued
 * between that reserve and the following wait is not slept through. */
static _Thread_local struct {
    const struct fq   *fq;
    const struct qgen *q;
    uint64_t           gen;
} tl_seen;

static struct qgen *
qgen_get(struct fq *fq, const char *queue)
{
    struct qgen *q;
    size_t len = strlen(queue);

    for (q = fq->gens; q != NULL; q = q->next) {
        if (strcmp(q->name, queue) == 0)
            return q;
    }
    q = nv__calloc(1, sizeof(*q) + len + 1);
    if (q == NULL)
        return NULL;
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    memcpy(q->name, queue, len + 1);
    q->next = fq->gens;
    fq->gens = q;
    return q;
}

/* Every waiter of every queue: a wake-up for all. Called with fq.wmu. */
static void
wake_all(struct fq *fq)
{
    fq->woken++;
    for (struct qgen *q = fq->gens; q != NULL; q = q->next)
        pthread_cond_broadcast(&q->cv);
    pthread_cond_broadcast(&fq->wcv);
}

static void
notify(struct fq *fq, const char *queue, int all)
{
    struct qgen *q;

    pthread_mutex_lock(&fq->wmu);
    q = qgen_get(fq, queue);
    if (q == NULL) {
        wake_all(fq);   /* out of memory: wake everybody instead */
    } else {
        q->gen++;
        if (all)
            pthread_cond_broadcast(&q->cv);
        else
            pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&fq->wmu);
}

void
fq_notify(struct fq *fq, const char *queue)
{
    notify(fq, queue, 1);
}

void
fq_notify_one(struct fq *fq, const char *queue)
{
    notify(fq, queue, 0);
}

void
fq_wait_mark(struct fq *fq, const char *queue)
{
    struct qgen *q;

    pthread_mutex_lock(&fq->wmu);
    q = qgen_get(fq, queue);
    tl_seen.fq = fq;
    tl_seen.q = q;
    tl_seen.gen = q ? q->gen : 0;
    pthread_mutex_unlock(&fq->wmu);
}

void
fq_wait_release(struct fq *fq)
{
    struct qgen *q;

    while ((q = fq->gens) != NULL) {
        fq->gens = q->next;
        pthread_cond_destroy(&q->cv);
        nv__free(q);
    }
}

int
fq_wait(void *self, const char *queue, int64_t timeout_ms)
{
    struct fq *fq = self;
    struct timespec ts;
    struct qgen *q;
    uint64_t start, woken;

    if (timeout_ms <= 0)
        return NV_OK;
    nv__timespec_after(CLOCK_MONOTONIC, timeout_ms * NV__MS, &ts);
    pthread_mutex_lock(&fq->wmu);
    q = qgen_get(fq, queue);
    start = q == NULL ? 0 : tl_seen.fq == fq && tl_seen.q == q ? tl_seen.gen
                                                               : q->gen;
    woken = fq->woken;
    while (q != NULL && q->gen == start && fq->woken == woken) {
        if (pthread_cond_timedwait(&q->cv, &fq->wmu, &ts) != 0)
            break;
    }
    /* Out of memory (no generation): the timeout, or anybody's wake. */
    while (q == NULL && fq->woken == woken) {
        if (pthread_cond_timedwait(&fq->wcv, &fq->wmu, &ts) != 0)
            break;
    }
    tl_seen.fq = NULL;
    pthread_mutex_unlock(&fq->wmu);
    return NV_OK;
}

void
fq_wake(void *self)
{
    struct fq *fq = self;

    pthread_mutex_lock(&fq->wmu);
    wake_all(fq);
    pthread_mutex_unlock(&fq->wmu);
}
