/*
 * The memory queue's id table (src/adapters/memory/queue_data.c) under a
 * long mix of adds and removals: removals shift probe runs back instead
 * of leaving tombstones, so every job still present must stay findable
 * and every removed one must be gone, whatever the order.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "nvent/adapter.h"

TestSuite(memory_queue);

#define NIDS 3000

static void
enq(nv_queue *q, int i)
{
    nv_job j;
    int created = -1;

    memset(&j, 0, sizeof(j));
    strcpy(j.queue, "q");
    strcpy(j.name, "q");
    snprintf(j.id, sizeof(j.id), "id-%d", i);
    j.data = (char *)"{}";
    j.remove_on_complete = NV_KEEP_ALL;
    j.remove_on_fail = NV_KEEP_ALL;
    cr_assert_eq(q->ops->enqueue(q->self, &j, 1000, 0, NULL, &created, NULL),
                 NV_OK);
    cr_assert_eq(created, 1, "id-%d enqueued twice", i);
}

static int
present(nv_queue *q, int i)
{
    char id[32];
    nv_job j;
    int rc;

    snprintf(id, sizeof(id), "id-%d", i);
    memset(&j, 0, sizeof(j));
    rc = q->ops->get(q->self, "q", id, &j, NULL);
    if (rc == NV_OK) {
        cr_assert_str_eq(j.id, id);
        nv_job_release(&j);
    }
    return rc == NV_OK;
}

Test(memory_queue, the_id_table_finds_every_job_after_many_removals)
{
    static unsigned char in[NIDS];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    nv_queue q;
    nv_job_counts c;
    int64_t live = 0;

    cr_assert_eq(nv_memory_queue_open(NULL, &q, NULL), NV_OK);
    for (int round = 0; round < 20000; round++) {
        int i;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i = (int)(x % NIDS);
        if (in[i]) {
            char id[32];

            snprintf(id, sizeof(id), "id-%d", i);
            cr_assert_eq(q.ops->remove(q.self, "q", id, NULL, NULL), NV_OK);
            in[i] = 0;
            live--;
        } else {
            enq(&q, i);
            in[i] = 1;
            live++;
        }
        if (round % 997 == 0) {
            for (int k = 0; k < NIDS; k++)
                cr_assert_eq(present(&q, k), in[k], "id-%d: expected %s",
                             k, in[k] ? "present" : "absent");
        }
    }
    for (int k = 0; k < NIDS; k++)
        cr_assert_eq(present(&q, k), in[k], "id-%d at the end", k);
    cr_assert_eq(q.ops->counts(q.self, "q", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, live);
    q.ops->close(q.self);
}

/* ---- A reserved job's copy finished outside the lock (pins) ---- */

#include "adapters/memory/queue.h"

static void
enq_data(nv_queue *q, const char *id, const char *data)
{
    nv_job j;

    memset(&j, 0, sizeof(j));
    strcpy(j.queue, "q");
    strcpy(j.name, "q");
    snprintf(j.id, sizeof(j.id), "%s", id);
    j.data = (char *)data;
    cr_assert_eq(q->ops->enqueue(q->self, &j, 1000, 0, NULL, NULL, NULL),
                 NV_OK);
}

/* Pin job 'id' as a reserve does under the lock; return its node. */
static struct mjob *
pin(nv_queue *q, const char *id, struct mrec *held)
{
    struct mqueue *mq = mq_queue_get(q->self, "q", 0);
    struct mjob *m;

    mq_lock(mq);                /* files the inbox, as every op does */
    m = mq_jt_find(&mq->jt, id);
    cr_assert_not_null(m);
    cr_assert_eq(mq_job_out_pinned(mq, m, held), NV_OK);
    pthread_mutex_unlock(&mq->mu);
    return m;
}

Test(memory_queue, a_pinned_job_removed_meanwhile_is_not_reused_before_its_copy_ends)
{
    nv_queue q;
    nv_job out;
    struct mrec held;
    struct mjob *m;

    cr_assert_eq(nv_memory_queue_open(NULL, &q, NULL), NV_OK);
    enq_data(&q, "a", "{\"who\":\"a\"}");
    m = pin(&q, "a", &held);
    cr_assert_eq(q.ops->remove(q.self, "q", "a", NULL, NULL), NV_OK);
    /* a new job would take a pooled node: not the pinned one */
    enq_data(&q, "b", "{\"who\":\"b\"}");
    cr_assert_eq(mq_job_out_finish(m, &held, &out, NULL), NV_OK);
    cr_assert_str_eq(out.id, "a");
    cr_assert_str_eq(out.data, "{\"who\":\"a\"}");
    nv_job_release(&out);
    q.ops->close(q.self);
}

Test(memory_queue, a_pinned_job_removed_meanwhile_is_freed_by_its_copy)
{
    char big[2048];
    nv_queue q;
    nv_job out;
    struct mrec held;
    struct mjob *m;

    /* data larger than a pooled node: removal would free it at once */
    memset(big, 'x', sizeof(big));
    memcpy(big, "\"", 1);
    big[sizeof(big) - 2] = '"';
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(nv_memory_queue_open(NULL, &q, NULL), NV_OK);
    enq_data(&q, "a", big);
    m = pin(&q, "a", &held);
    cr_assert_eq(q.ops->remove(q.self, "q", "a", NULL, NULL), NV_OK);
    cr_assert_eq(mq_job_out_finish(m, &held, &out, NULL), NV_OK);  /* ASan: no UAF */
    cr_assert_str_eq(out.data, big);
    nv_job_release(&out);
    q.ops->close(q.self);                                   /* nor a leak */
}
