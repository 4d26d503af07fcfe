/*
 * File queue, waiters: a worker with nothing to reserve sleeps on an
 * in-process condition variable until a commit that may make a job of
 * its queue runnable bumps that queue's generation, or a timeout.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "adapters/file/queue.h"

/* Wake-up generation of one queue; guarded by fq.wmu. */
struct qgen {
    struct qgen *next;
    uint64_t     gen;
    char         name[];
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
    memcpy(q->name, queue, len + 1);
    q->next = fq->gens;
    fq->gens = q;
    return q;
}

void
fq_notify(struct fq *fq, const char *queue)
{
    struct qgen *q;

    pthread_mutex_lock(&fq->wmu);
    q = qgen_get(fq, queue);
    if (q != NULL)
        q->gen++;
    else
        fq->woken++;    /* out of memory: wake everybody instead */
    pthread_cond_broadcast(&fq->wcv);
    pthread_mutex_unlock(&fq->wmu);
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
    fq->woken++;
    pthread_cond_broadcast(&fq->wcv);
    pthread_mutex_unlock(&fq->wmu);
}
