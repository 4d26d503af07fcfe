/*
 * Memory queue adapter, reading and management: job logs, get,
 * list, counts, pause, remove and manual
 * retry.
 */
#include <jansson.h>

#include "adapters/memory/queue.h"

static int
job_missing(nv_error *err, const char *queue, const char *id)
{
    return nv__error(err, NV_EJOB_NOT_FOUND, "job '%s' not found in '%s'", id,
                     queue);
}

/* logs with 'entry' appended, the newest 'keep' kept (keep <= 0: all). */
static char *
logs_append(const char *logs, json_t *entry, int keep)
{
    json_t *arr = logs ? json_loads(logs, 0, NULL) : NULL;
    char *out;

    if (!json_is_array(arr)) {
        json_decref(arr);
        arr = json_array();
    }
    if (arr == NULL || json_array_append(arr, entry) != 0) {
        json_decref(arr);
        return NULL;
    }
    while (keep > 0 && json_array_size(arr) > (size_t)keep)
        json_array_remove(arr, 0);
    out = nv__dump(arr);
    json_decref(arr);
    return out;
}

int
mq_log(void *self, const char *queue, const char *id, const char *entry_json,
        int keep, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    json_t *entry = json_loads(entry_json, 0, NULL);
    struct mjob *m = NULL;
    char *logs;
    int rc = NV_OK;

    if (entry == NULL)
        return nv__error(err, NV_EINVAL, "log entry is not valid JSON");
    if (q != NULL) {
        mq_lock(q);
        m = mq_jt_find(&q->jt, id);
        if (m != NULL) {
            if ((logs = logs_append(m->j.logs, entry, keep)) == NULL) {
                rc = oom(err);
            } else {
                nv__free(m->j.logs);
                m->j.logs = logs;
            }
        }
        mq_unlock(q);
    }
    json_decref(entry);
    if (m == NULL)
        return job_missing(err, queue, id);
    return rc;
}

/* ---- Reading ---- */

int
mq_get(void *self, const char *queue, const char *id, nv_job *out,
        nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    struct mjob *m = NULL;
    int rc = NV_OK;

    if (q == NULL)
        return job_missing(err, queue, id);
    mq_lock(q);
    m = mq_jt_find(&q->jt, id);
    if (m != NULL && mq_job_out(q, m, out) != NV_OK)
        rc = oom(err);
    mq_unlock(q);
    if (m == NULL)
        return job_missing(err, queue, id);
    return rc;
}

static int
newest_first(const void *a, const void *b)
{
    const struct mjob *x = *(struct mjob *const *)a;
    const struct mjob *y = *(struct mjob *const *)b;

    if (x->j.timestamp != y->j.timestamp)
        return x->j.timestamp > y->j.timestamp ? -1 : 1;
    return -strcmp(x->j.id, y->j.id);
}

/* Sift v[i] down a heap whose top sorts last by newest_first. */
static void
sift_last(struct mjob **v, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < n && newest_first(&v[l], &v[m]) > 0)
            m = l;
        if (r < n && newest_first(&v[r], &v[m]) > 0)
            m = r;
        if (m == i)
            return;
        struct mjob *t = v[i];

        v[i] = v[m];
        v[m] = t;
        i = m;
    }
}

/* Put the first k of v (by newest_first) sorted at its front: a bounded
 * heap, so a page of a long queue costs O(n log k), not a full sort. */
static void
sort_first(struct mjob **v, size_t n, size_t k)
{
    if (k < n) {
        for (size_t i = k / 2; i-- > 0;)
            sift_last(v, k, i);
        for (size_t i = k; i < n; i++) {
            if (k > 0 && newest_first(&v[i], &v[0]) < 0) {
                v[0] = v[i];
                sift_last(v, k, 0);
            }
        }
        n = k;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), newest_first);
}

int
mq_list(void *self, const char *queue, unsigned mask, int64_t offset,
         int64_t limit, nv_job **out, size_t *n, int64_t *total,
         nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    struct mjob *m, **sel = NULL;
    nv_job *v = NULL;
    size_t cnt = 0, take = 0;
    int rc = NV_OK;

    if (offset < 0)
        offset = 0;
    if (q != NULL) {
        mq_lock(q);
        sel = nv__malloc((q->jt.n + 1) * sizeof(*sel));
        if (sel == NULL)
            rc = NV_ENOMEM;
        for (size_t i = 0; sel != NULL && i < mq_jt_slots(&q->jt); i++) {
            m = mq_jt_at(&q->jt, i);
            if (m != NULL &&
                (mask & NV_JOB_MASK(reported_state(q, m))))
                sel[cnt++] = m;
        }
        if ((size_t)offset < cnt) {
            take = cnt - (size_t)offset;
            if (limit >= 0 && (uint64_t)limit < take)
                take = (size_t)limit;
        }
        if (rc == NV_OK && take > 0)
            sort_first(sel, cnt, (size_t)offset + take);
        if (rc == NV_OK && take > 0 && (v = nv__calloc(take, sizeof(*v))) == NULL)
            rc = NV_ENOMEM;
        for (size_t i = 0; rc == NV_OK && i < take; i++) {
            if (mq_job_out(q, sel[(size_t)offset + i], &v[i]) != NV_OK) {
                nv_job_array_free(v, i);
                v = NULL;
                rc = NV_ENOMEM;
            }
        }
        mq_unlock(q);
        nv__free(sel);
    }
    if (rc != NV_OK)
        return oom(err);
    *out = v;
    *n = take;
    if (total != NULL)
        *total = (int64_t)cnt;
    return NV_OK;
}

int
mq_counts(void *self, const char *queue, nv_job_counts *out, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);

    (void)err;
    memset(out, 0, sizeof(*out));
    if (q == NULL)
        return NV_OK;
    mq_lock(q);
    if (q->paused)
        out->paused = q->nwaiting;
    else
        out->waiting = q->nwaiting;
    out->delayed = (int64_t)q->delayed.n;
    out->active = q->nactive;
    out->completed = q->completed.n;
    out->failed = q->failed.n;
    mq_unlock(q);
    return NV_OK;
}

/* ---- Pause, remove, retry ---- */

int
mq_set_paused(void *self, const char *queue, int paused, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 1);

    if (q == NULL)
        return oom(err);
    mq_lock(q);
    q->paused = paused != 0;
    if (!q->paused)
        mq_wake(q, 1);
    mq_unlock(q);
    return NV_OK;
}

int
mq_is_paused(void *self, const char *queue, int *paused, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);

    (void)err;
    *paused = 0;
    if (q != NULL) {
        mq_lock(q);
        *paused = q->paused;
        mq_unlock(q);
    }
    return NV_OK;
}

int
mq_remove(void *self, const char *queue, const char *id, nv_job *out,
           nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    struct mjob *m = NULL;
    int rc = NV_OK;

    if (q == NULL)
        return job_missing(err, queue, id);
    mq_lock(q);
    m = mq_jt_find(&q->jt, id);
    if (m == NULL) {
        rc = job_missing(err, queue, id);
    } else if (m->j.state == NV_JOB_ACTIVE) {
        rc = nv__error(err, NV_EJOB_ACTIVE, "job '%s' in '%s' is active", id,
                       queue);
    } else if (out != NULL && mq_job_out(q, m, out) != NV_OK) {
        rc = oom(err);
    } else {
        mq_job_detach(q, m);
        mq_job_free(q, m);
    }
    mq_unlock(q);
    return rc;
}

int
mq_retry(void *self, const char *queue, const char *id, int64_t now,
          nv_job *out, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    struct mjob *m = NULL;
    int rc = NV_OK;

    (void)now;
    if (q == NULL)
        return job_missing(err, queue, id);
    mq_lock(q);
    m = mq_jt_find(&q->jt, id);
    if (m == NULL) {
        rc = job_missing(err, queue, id);
    } else if (m->j.state != NV_JOB_FAILED) {
        rc = nv__error(err, NV_EJOB_NOT_FAILED, "job '%s' in '%s' is not "
                       "failed", id, queue);
    } else if (mq_waiting_prepare(q, m) != NV_OK) {
        rc = oom(err);
    } else {
        mq_list_unlink(&q->failed, m);
        mq_waiting_add(q, m);
        mq_wake(q, 1);
        if (out != NULL && mq_job_out(q, m, out) != NV_OK)
            rc = oom(err);     /* the retry happened; only the copy failed */
    }
    mq_unlock(q);
    return rc;
}
