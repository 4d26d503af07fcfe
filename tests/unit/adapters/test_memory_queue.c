/*
 * The memory queue's id table (src/adapters/memory/queue_data.c) under a
 * long mix of adds and removals: removals shift probe runs back instead
 * of leaving tombstones, so every job still present must stay findable
 * and every removed one must be gone, whatever the order.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

/* ---- Generated ids: the id table's ring (queue.h) ---- */

/* A generated-form id "<ms>-<9 base36>" whose number is n (least
 * significant digit first, as the engine writes them). */
static void
gen_id(char *out, size_t size, long ms, uint64_t n)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char tail[10];

    for (int i = 0; i < 9; i++) {
        tail[i] = digits[n % 36];
        n /= 36;
    }
    tail[9] = '\0';
    snprintf(out, size, "%ld-%s", ms, tail);
}

#define NGEN 9000

static char gid[NGEN][48];
static unsigned char gin[NGEN];

static void
enq_id(nv_queue *q, const char *id, int expect_created)
{
    nv_job j;
    int created = -1;

    memset(&j, 0, sizeof(j));
    strcpy(j.queue, "q");
    strcpy(j.name, "q");
    snprintf(j.id, sizeof(j.id), "%s", id);
    j.data = (char *)"{}";
    j.remove_on_complete = NV_KEEP_ALL;
    j.remove_on_fail = NV_KEEP_ALL;
    cr_assert_eq(q->ops->enqueue(q->self, &j, 1000, 0, NULL, &created, NULL),
                 NV_OK);
    cr_assert_eq(created, expect_created, "%s: created %d", id, created);
}

static void
check_all(nv_queue *q, int upto, const char *when)
{
    nv_job_counts c;
    int64_t live = 0;

    for (int k = 0; k < upto; k++) {
        nv_job j;
        int rc;

        memset(&j, 0, sizeof(j));
        rc = q->ops->get(q->self, "q", gid[k], &j, NULL);
        cr_assert_eq(rc == NV_OK, gin[k], "%s: %s expected %s", when, gid[k],
                     gin[k] ? "present" : "absent");
        if (rc == NV_OK) {
            cr_assert_str_eq(j.id, gid[k]);
            nv_job_release(&j);
        }
        live += gin[k];
    }
    cr_assert_eq(q->ops->counts(q->self, "q", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, live, "%s", when);
}

/*
 * Ids of the generated form in every way the ring can meet them: a long
 * run in sequence (the ring grows), removals in any order (its oldest
 * end moves), most of it removed (it shrinks), a job a little older than
 * the oldest, a far number (a second stream: the first moves to the hash
 * part), a number taken by another id with another millisecond, and ids
 * of other forms; every id stays findable, a second enqueue of it is
 * refused and the counts stay exact.
 */
Test(memory_queue, generated_ids_are_found_whatever_their_order_and_streams)
{
    const uint64_t B = 1000000000000ULL;
    uint64_t x = 0x2545f4914f6cdd1dull;
    nv_queue q;
    int n = 0;

    cr_assert_eq(nv_memory_queue_open(NULL, &q, NULL), NV_OK);
    /* a stream of 5000 (the ring grows) */
    for (int i = 0; i < 5000; i++, n++) {
        gen_id(gid[n], sizeof(gid[n]), 1764000000000L + i / 7, B + i);
        enq_id(&q, gid[n], 1);
        gin[n] = 1;
    }
    check_all(&q, n, "after the first stream");
    /* removals in random order, with re-enqueues of removed ids */
    for (int r = 0; r < 12000; r++) {
        int k;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        k = (int)(x % 5000);
        if (gin[k]) {
            cr_assert_eq(q.ops->remove(q.self, "q", gid[k], NULL, NULL),
                         NV_OK);
            gin[k] = 0;
        } else if (r % 3 == 0) {
            enq_id(&q, gid[k], 1);
            gin[k] = 1;
        }
    }
    check_all(&q, n, "after random removals");
    /* all but the ten oldest removed: a sparse ring */
    for (int k = 10; k < 5000; k++) {
        if (gin[k]) {
            cr_assert_eq(q.ops->remove(q.self, "q", gid[k], NULL, NULL),
                         NV_OK);
            gin[k] = 0;
        }
    }
    for (int k = 0; k < 10; k++) {
        if (!gin[k]) {
            enq_id(&q, gid[k], 1);
            gin[k] = 1;
        }
    }
    check_all(&q, n, "sparse");
    /* a little older than the oldest; the number of a present job with
     * another millisecond (another id); a number past the sparse ring
     * (its old jobs move to the hash part) and a stream from there */
    gen_id(gid[n], sizeof(gid[n]), 1764000000000L, B - 3);
    enq_id(&q, gid[n], 1);
    gin[n++] = 1;
    gen_id(gid[n], sizeof(gid[n]), 1764000000999L, B + 4);
    enq_id(&q, gid[n], 1);
    gin[n++] = 1;
    for (int i = 0; i < 1000; i++, n++) {
        gen_id(gid[n], sizeof(gid[n]), 1764000001000L, B + 9000 + i);
        enq_id(&q, gid[n], 1);
        gin[n] = 1;
    }
    check_all(&q, n, "past the sparse ring");
    /* a far stream (the previous one moves to the hash part), then one
     * from the start of the id space (below the ring: hash part) */
    for (int i = 0; i < 1500; i++, n++) {
        gen_id(gid[n], sizeof(gid[n]), 1764000002000L, B + 1000000000 + i);
        enq_id(&q, gid[n], 1);
        gin[n] = 1;
    }
    for (int i = 0; i < 500; i++, n++) {
        gen_id(gid[n], sizeof(gid[n]), 1764000003000L, (uint64_t)i);
        enq_id(&q, gid[n], 1);
        gin[n] = 1;
    }
    /* other forms: not generated, close to it */
    snprintf(gid[n], sizeof(gid[n]), "plain-id");
    enq_id(&q, gid[n], 1);
    gin[n++] = 1;
    snprintf(gid[n], sizeof(gid[n]), "12-abcdefgh");     /* 8 chars */
    enq_id(&q, gid[n], 1);
    gin[n++] = 1;
    snprintf(gid[n], sizeof(gid[n]), "12-abcdefghiJ");
    enq_id(&q, gid[n], 1);
    gin[n++] = 1;
    snprintf(gid[n], sizeof(gid[n]), "-abcdefghi");
    enq_id(&q, gid[n], 1);
    gin[n++] = 1;
    check_all(&q, n, "two streams and other forms");
    /* Q-3 for every present id, wherever it is kept */
    for (int k = 0; k < n; k++) {
        if (gin[k])
            enq_id(&q, gid[k], 0);
    }
    /* the older stream goes, then the newer one in random order */
    for (int k = 0; k < 5000; k++) {
        if (gin[k]) {
            cr_assert_eq(q.ops->remove(q.self, "q", gid[k], NULL, NULL),
                         NV_OK);
            gin[k] = 0;
        }
    }
    check_all(&q, n, "older stream removed");
    for (int r = 0; r < 6000; r++) {
        int k;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        k = 5000 + (int)(x % (uint64_t)(n - 5000));
        if (gin[k]) {
            cr_assert_eq(q.ops->remove(q.self, "q", gid[k], NULL, NULL),
                         NV_OK);
            gin[k] = 0;
        }
    }
    check_all(&q, n, "at the end");
    q.ops->close(q.self);
}

/* A backlog of 20000 generated ids going away: oldest first, in random
 * order (the ring shrinks to the span left), or all but the oldest and
 * the newest first (it is given back with the last one): every id left
 * stays findable. */
Test(memory_queue, a_ring_of_generated_ids_shrinks_as_its_backlog_goes)
{
    enum { N = 20000 };
    static char ids[N][48];
    static unsigned char in[N];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    nv_queue q;

    cr_assert_eq(nv_memory_queue_open(NULL, &q, NULL), NV_OK);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            gen_id(ids[i], sizeof(ids[i]), 1764000000000L + round,
                   5000000ULL * (uint64_t)(round + 1) + (uint64_t)i);
            enq_id(&q, ids[i], 1);
            in[i] = 1;
        }
        for (int r = 0; r < N - 10; r++) {
            int k = round == 2 ? 1 + r % (N - 2) : r;

            if (round == 2 && !in[k])
                continue;
            if (round == 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                k = (int)(x % N);
                if (!in[k])
                    continue;
            }
            cr_assert_eq(q.ops->remove(q.self, "q", ids[k], NULL, NULL),
                         NV_OK);
            in[k] = 0;
        }
        for (int k = 0; k < N; k++) {
            nv_job j;
            int rc = q.ops->get(q.self, "q", ids[k], &j, NULL);

            cr_assert_eq(rc == NV_OK, in[k], "round %d: %s", round, ids[k]);
            if (rc == NV_OK)
                nv_job_release(&j);
        }
        for (int i = 0; i < N; i++) {
            int k = round == 2 ? N - 1 - i : i;      /* newest first */

            if (in[k]) {
                cr_assert_eq(q.ops->remove(q.self, "q", ids[k], NULL, NULL),
                             NV_OK);
                in[k] = 0;
            }
        }
    }
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

/* ---- Waking sleepers ---- */

#define SLEEPERS 3

static nv_queue wq_q;
static int64_t slept_ms[SLEEPERS];

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
sleeper(void *arg)
{
    int k = (int)(intptr_t)arg;
    nv_job j;
    int64_t t0;

    /* nothing to take: the wait that follows sleeps */
    cr_assert_eq(wq_q.ops->reserve(wq_q.self, "q", 1000, 30000, NULL, &j,
                                   NULL, NULL), NV_ENOTFOUND);
    t0 = mono_ms();
    cr_assert_eq(wq_q.ops->wait(wq_q.self, "q", 20000), NV_OK);
    slept_ms[k] = mono_ms() - t0;
    return NULL;
}

/*
 * Jobs enqueued one after another while every worker sleeps wake one
 * sleeper each, although the earlier ones have not run yet (a sleeper
 * with a wake-up on its way is not woken twice, but one without is):
 * no sleeper waits for its timeout.
 */
Test(memory_queue, each_job_enqueued_while_all_sleep_wakes_a_sleeper)
{
    pthread_t t[SLEEPERS];
    struct mqueue *mq;
    int64_t t0;

    cr_assert_eq(nv_memory_queue_open(NULL, &wq_q, NULL), NV_OK);
    enq_id(&wq_q, "first", 1);          /* the queue exists */
    cr_assert_eq(wq_q.ops->remove(wq_q.self, "q", "first", NULL, NULL),
                 NV_OK);
    mq = mq_queue_get(wq_q.self, "q", 0);
    for (int k = 0; k < SLEEPERS; k++)
        pthread_create(&t[k], NULL, sleeper, (void *)(intptr_t)k);
    t0 = mono_ms();
    while (atomic_load(&mq->waiters) < SLEEPERS)
        cr_assert_lt(mono_ms() - t0, 10000, "sleepers never slept");
    for (int k = 0; k < SLEEPERS; k++) {
        nv_job j;

        memset(&j, 0, sizeof(j));
        strcpy(j.queue, "q");
        strcpy(j.name, "q");
        snprintf(j.id, sizeof(j.id), "job-%d", k);
        j.data = (char *)"{}";
        /* no answer asked: the lock-free path of enqueue */
        cr_assert_eq(wq_q.ops->enqueue(wq_q.self, &j, 1000, 0, NULL, NULL,
                                       NULL), NV_OK);
    }
    for (int k = 0; k < SLEEPERS; k++) {
        pthread_join(t[k], NULL);
        cr_assert_lt(slept_ms[k], 10000, "sleeper %d was not woken", k);
    }
    wq_q.ops->close(wq_q.self);
}
