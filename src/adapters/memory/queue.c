/*
 * Memory queue adapter: jobs, leases, pause flags and limiter windows in
 * process memory (nv_queue_ops of include/nvent/adapter.h). This file has
 * the queues table, enqueue, reserve, the leased ops, reap, waiting for
 * work and the lifecycle; queue_data.c the containers, queue_read.c the
 * reading and management ops (queue.h).
 */
#include <time.h>

#include "adapters/memory/queue.h"

/* ---- Queues ---- */

static uint64_t
name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    while (*s != '\0')
        h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
    return h;
}

static struct mqueue *
queue_new(const char *name)
{
    struct mqueue *q = nv__calloc(1, sizeof(*q));
    pthread_condattr_t ca;
    pthread_mutexattr_t ma;

    if (q == NULL)
        return NULL;
    nv__strlcpy(q->name, name, sizeof(q->name));
    q->token_salt = name_hash(name);
    /* The producer and the workers take q->mu for short sections, many
     * times per job: spin a little on contention rather than sleep on a
     * futex at once (a sleep and a wake-up syscall per collision). */
    pthread_mutexattr_init(&ma);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    pthread_mutex_init(&q->mu, &ma);
    pthread_mutex_init(&q->pmu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    q->ready.idx_off = offsetof(struct mgroup, heap_i);
    q->ready.less = mq_group_less;
    q->delayed.idx_off = offsetof(struct mjob, heap_i);
    q->delayed.less = mq_delayed_less;
    return q;
}

static struct mqueue *
table_find(struct qtable *t, const char *name, uint64_t h)
{
    for (size_t i = 0; i < t->cap; i++) {
        struct mqueue *q = atomic_load_explicit(
            &t->slot[(h + i) & (t->cap - 1)], memory_order_acquire);

        if (q == NULL || strcmp(q->name, name) == 0)
            return q;
    }
    return NULL;
}

static void
table_put(struct qtable *t, struct mqueue *q)
{
    uint64_t h = name_hash(q->name);
    size_t i = 0;

    while (atomic_load_explicit(&t->slot[(h + i) & (t->cap - 1)],
                                memory_order_relaxed) != NULL)
        i++;
    atomic_store_explicit(&t->slot[(h + i) & (t->cap - 1)], q,
                          memory_order_release);
}

static struct qtable *
table_new(size_t cap)
{
    struct qtable *t = nv__calloc(1, sizeof(*t) + cap * sizeof(t->slot[0]));

    if (t != NULL)
        t->cap = cap;
    return t;
}

/* Add q under qmu, growing the table first when it would be half full. */
static int
queue_add(struct mqueues *a, struct mqueue *q)
{
    struct qtable *t = atomic_load_explicit(&a->table, memory_order_relaxed);

    if ((a->nqueues + 1) * 2 > t->cap) {
        struct qtable *n = table_new(t->cap * 2);

        if (n == NULL)
            return NV_ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {
            struct mqueue *x = atomic_load_explicit(&t->slot[i],
                                                    memory_order_relaxed);

            if (x != NULL)
                table_put(n, x);
        }
        n->retired = t;
        atomic_store_explicit(&a->table, n, memory_order_release);
        t = n;
    }
    table_put(t, q);
    a->nqueues++;
    return NV_OK;
}

/* The queue named 'name', created when 'create'; NULL when absent/OOM. */
struct mqueue *
mq_queue_get(struct mqueues *a, const char *name, int create)
{
    uint64_t h = name_hash(name);
    struct mqueue *q;

    q = table_find(atomic_load_explicit(&a->table, memory_order_acquire),
                   name, h);
    if (q != NULL || !create)
        return q;
    pthread_mutex_lock(&a->qmu);
    q = table_find(atomic_load_explicit(&a->table, memory_order_relaxed),
                   name, h);
    if (q == NULL && (q = queue_new(name)) != NULL &&
        queue_add(a, q) != NV_OK) {
        pthread_mutex_destroy(&q->mu);
        pthread_mutex_destroy(&q->pmu);
        pthread_cond_destroy(&q->cv);
        nv__free(q);
        q = NULL;
    }
    pthread_mutex_unlock(&a->qmu);
    return q;
}

/* ---- Enqueue ---- */

/* File a new job (not yet in q->jt, id hash h): delayed or waiting.
 * NV_ENOMEM: nothing changed and m is not filed (the caller keeps it). */
static int
file_new(struct mqueue *q, struct mjob *m, int64_t now, uint64_t h)
{
    int delayed = m->j.delay_until > now;
    int rc = delayed ? mq_delayed_add(q, m) : mq_waiting_prepare(q, m);

    if (rc == NV_OK && !mq_jt_add(&q->jt, m, h)) {
        if (delayed)
            mq_heap_remove(&q->delayed, m);
        rc = NV_ENOMEM;
    }
    if (rc != NV_OK) {
        if (m->grp != NULL && group_nwaiting(m->grp) == 0 &&
            m->grp->win.n == 0)
            mq_group_free(q, m->grp);
        m->grp = NULL;
        return rc;
    }
    if (!delayed)
        mq_waiting_add(q, m);
    return NV_OK;
}

/* file_new, and wake a waiter; on failure m is discarded. */
static int
store_new(struct mqueue *q, struct mjob *m, int64_t now, uint64_t h)
{
    int rc = file_new(q, m, now, h);

    if (rc != NV_OK) {
        mq_job_release(m);
        mq_node_discard(q, m);
        return rc;
    }
    if (m->j.state == NV_JOB_WAITING)
        mq_wake(q, 0);
    return NV_OK;
}

/*
 * The inbox's jobs, oldest first, after those left pending: each is filed
 * as a locked enqueue would have, or dropped when its id exists.
 * Out of memory, the rest stays pending for the next holder of mu.
 */
void
mq_drain(struct mqueue *q)
{
    struct mjob *m = atomic_exchange_explicit(&q->inbox, NULL,
                                              memory_order_acquire);
    struct mjob *fifo = NULL, **tail;

    /* Reversing the list reads every node (a chain of misses on lines
     * the producer wrote): ask for the id-table slot each will look up
     * and the lines of its record filing reads (id, state, times)
     * meanwhile, so that filing them does not wait for each in turn. */
    while (m != NULL) {
        struct mjob *next = m->next;
        const void *slot = mq_jt_where(&q->jt, m);

        if (slot != NULL)
            __builtin_prefetch(slot, 1);
        for (size_t off = 0; off < offsetof(struct mjob, heap_i); off += 64)
            __builtin_prefetch((const char *)m + off, 1);
        m->next = fifo;
        fifo = m;
        m = next;
    }
    for (tail = &q->pending; *tail != NULL; tail = &(*tail)->next)
        ;
    *tail = fifo;
    while ((m = q->pending) != NULL) {
        struct mjob *next = m->next;   /* filing m reuses its links */

        if (mq_jt_find_node(&q->jt, m) != NULL) {
            mq_job_release(m);
            mq_node_discard(q, m);
        } else if (file_new(q, m, m->enq_now, m->idh) != NV_OK) {
            break;
        }
        q->pending = next;
    }
}

/* Ask for the lines of m a reserve reads (its record, its names). */
static inline void
prefetch_node(const struct mjob *m)
{
    const char *p = (const char *)m;

    for (size_t off = 0; off < sizeof(*m) + 64; off += 64)
        __builtin_prefetch(p + off, 1);
}

/* A node of MQ_NODE_SIZE for a producer, without mu: from the nodes the
 * workers freed (handed over through q->spare), else NULL. */
static struct mjob *
spare_pop(struct mqueue *q)
{
    struct mjob *m;

    if (atomic_load_explicit(&q->spare, memory_order_relaxed) == NULL &&
        q->pfree == NULL)
        return NULL;
    if (pthread_mutex_trylock(&q->pmu) != 0)
        return NULL;            /* another producer: allocate */
    if (q->pfree == NULL)
        q->pfree = atomic_exchange_explicit(&q->spare, NULL,
                                            memory_order_acquire);
    if ((m = q->pfree) != NULL) {
        q->pfree = m->next;
        /* a worker freed it last: have its lines here for the next fill */
        if (q->pfree != NULL)
            prefetch_node(q->pfree);
        /* nspare is shared with the workers: off by a batch at a time */
        if (++q->ptaken == NODE_POOL) {
            atomic_fetch_sub_explicit(&q->nspare, q->ptaken,
                                      memory_order_relaxed);
            q->ptaken = 0;
        }
    }
    pthread_mutex_unlock(&q->pmu);
    return m;
}

/*
 * The inbox path of enqueue (see struct mqueue): no lock. Then a waiter
 * is woken only when some thread sleeps and none is watching 'gen'.
 */
static int
enqueue_inbox(struct mqueues *a, struct mqueue *q, const nv_job *job,
              const char *id, int64_t now, size_t size, nv_error *err)
{
    struct mjob *m = size <= MQ_NODE_SIZE ? spare_pop(q) : NULL;
    struct mjob *head;

    (void)a;
    if (m == NULL && (m = mq_node_alloc(size)) == NULL)
        return oom(err);
    if (mq_job_fill(q, m, job, id) != NV_OK) {
        nv__free(m);
        return oom(err);
    }
    if (m->j.timestamp == 0)
        m->j.timestamp = now;
    m->j.lease_token[0] = '\0';
    m->j.lease_until = 0;
    m->idh = mq_id_hash(m->j.id);
    m->enq_now = now;
    head = atomic_load_explicit(&q->inbox, memory_order_relaxed);
    do
        m->next = head;
    while (!atomic_compare_exchange_weak_explicit(&q->inbox, &head, m,
                                                  memory_order_release,
                                                  memory_order_relaxed));
    /* a sleeper registers (waiters + 1) before it looks at gen again:
     * one of the two sees the other (both seq_cst). Nobody to wake when
     * every sleeper has a wake-up on its way: waiters read first, then
     * wakes, as a sleeper takes its wake off (wakes - 1) before it
     * registers again. */
    atomic_fetch_add(&q->gen, 1);
    if (atomic_load(&q->waiters) > atomic_load(&q->wakes) &&
        atomic_load(&q->spinners) == 0) {
        mq_lock(q);
        mq_wake(q, 0);
        mq_unlock(q);
    }
    return NV_OK;
}

/*
 * One lock per job: the id's hash is computed before it,
 * and the node comes from the queue's pool under it (a new block is
 * allocated outside the lock when the pool is empty).
 */
static int
mem_enqueue(void *self, const nv_job *job, int64_t now,
            int64_t max_unfinished, nv_job *out, int *created, nv_error *err)
{
    struct mqueues *a = self;
    struct mqueue *q;
    struct mjob *m = NULL, *old;
    char idbuf[NV_JOB_ID_MAX];
    const char *id = job->id;
    size_t size = mq_job_size(job);
    uint64_t h;
    int rc = NV_OK;

    if ((q = mq_queue_get(a, job->queue, 1)) == NULL)
        return oom(err);
    if (id[0] == '\0') {
        nv__job_id(now, idbuf);
        id = idbuf;
    }
    if (out == NULL && created == NULL && max_unfinished <= 0)
        return enqueue_inbox(a, q, job, id, now, size, err);
    h = mq_id_hash(id);
    if (size > MQ_NODE_SIZE && (m = mq_node_alloc(size)) == NULL)
        return oom(err);
    mq_lock(q);
    for (;;) {
        old = mq_jt_find_h(&q->jt, id, h);
        if (old != NULL) {
            /* the existing job, untouched */
            if (out != NULL && mq_job_out(q, old, out) != NV_OK)
                rc = oom(err);
            else if (created != NULL)
                *created = 0;
            mq_node_discard(q, m);
            mq_unlock(q);
            return rc;
        }
        if (max_unfinished > 0 &&
            q->nwaiting + (int64_t)q->delayed.n + q->nactive >=
                max_unfinished) {
            mq_node_discard(q, m);
            mq_unlock(q);
            return nv__error(err, NV_EQUEUE_FULL, "queue '%s' is full (%"
                             PRId64 " unfinished jobs)", job->queue,
                             max_unfinished);
        }
        if (m != NULL || (m = mq_node_pop(q)) != NULL)
            break;
        /* no pooled node: allocate one outside the lock, look again */
        mq_unlock(q);
        if ((m = mq_node_alloc(size)) == NULL)
            return oom(err);
        mq_lock(q);
    }
    if (mq_job_fill(q, m, job, id) != NV_OK) {
        mq_node_discard(q, m);
        mq_unlock(q);
        return oom(err);
    }
    if (m->j.timestamp == 0)
        m->j.timestamp = now;
    m->j.lease_token[0] = '\0';
    m->j.lease_until = 0;
    rc = store_new(q, m, now, h);
    if (rc == NV_OK && out != NULL && mq_job_out(q, m, out) != NV_OK) {
        mq_job_detach(q, m);       /* all or nothing */
        mq_job_free(q, m);
        rc = NV_ENOMEM;
    }
    mq_unlock(q);
    if (rc != NV_OK)
        return oom(err);
    if (created != NULL)
        *created = 1;
    return NV_OK;
}

/* ---- Reserving (W-2, Q-4, Q-12, Q-13) ---- */

/*
 * Where the id table keeps the job this thread reserved last: noted
 * under mu at the reserve, prefetched before taking mu to end that job
 * (removing a finished job reads its slot), so that the cache miss (the
 * table is large with a large backlog) overlaps the wait for the lock
 * instead of lengthening the time it is held. Only ever prefetched, never
 * read: a stale address (the table grew since) costs a useless line.
 */
static _Thread_local const void *jt_hint;


static int64_t
min_next(int64_t a, int64_t b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

/*
 * The group whose first job runs next under 'lim', or NULL; *next_at gets
 * the earliest time a saturated window frees a slot.
 */
static struct mgroup *
pick_group(struct mqueue *q, int64_t now, const nv_limiter *lim,
           int64_t *next_at)
{
    struct mgroup *g = NULL;
    size_t aside = 0;

    if (lim == NULL || lim->max <= 0)
        return heap_top(&q->ready);
    q->lim_duration = lim->duration_ms;
    if (!lim->grouped) {
        mq_win_prune(&q->win, now, lim->duration_ms);
        if (q->win.n < (size_t)lim->max)
            return heap_top(&q->ready);
        *next_at = win_oldest(&q->win) + lim->duration_ms;
        return NULL;
    }
    /* a saturated group does not hold back the others; set such
     * groups aside and put them back afterwards. */
    while ((g = heap_top(&q->ready)) != NULL) {
        mq_win_prune(&g->win, now, lim->duration_ms);
        if (g->win.n < (size_t)lim->max)
            break;
        *next_at = min_next(*next_at, win_oldest(&g->win) + lim->duration_ms);
        if (aside == q->nscratch) {
            size_t cap = q->nscratch ? q->nscratch * 2 : 16;
            struct mgroup **v = nv__realloc(q->scratch, cap * sizeof(*v));

            if (v == NULL) {
                g = NULL;
                break;
            }
            q->scratch = v;
            q->nscratch = cap;
        }
        mq_heap_remove(&q->ready, g);
        q->scratch[aside++] = g;
    }
    for (size_t i = 0; i < aside; i++)
        mq_heap_push(&q->ready, q->scratch[i]);   /* slots were freed above */
    return g;
}

/*
 * reserve() under q->mu (a queue that exists): NV_OK with the first half
 * of the job's copy in 'held' and *pinned the node to finish it from
 * after the unlock (reserve_finish), NV_ENOTFOUND with *next_at set (0:
 * unknown), or NV_ENOMEM with nothing changed.
 */
static int
reserve_locked(struct mqueues *a, struct mqueue *q, int64_t now,
               int64_t lease_ms, const nv_limiter *lim, struct mrec *held,
               struct mjob **pinned, int64_t *next_at)
{
    struct mgroup *g = NULL;
    struct mjob *m, *nx;
    int64_t next = 0;
    struct window *w = NULL;
    int tries = 0;

    *next_at = 0;
again:
    if (mq_promote(q, now) != NV_OK)
        return NV_ENOMEM;
    if (!q->paused)
        g = pick_group(q, now, lim, &next);
    if (g == NULL) {
        /* gen, then the inbox: a push not seen empty makes gen grow after
         * (push, then gen + 1, in that order) */
        uint64_t gen = atomic_load(&q->gen);

        /* (a few times: a stream of pushes into a queue with nothing
         * runnable, paused or limited, cannot hold the lock forever) */
        if (atomic_load(&q->inbox) != NULL && ++tries < 4) {
            mq_drain(q);
            next = 0;
            goto again;
        }
        atomic_store_explicit(&q->idle_gen, gen, memory_order_relaxed);
        if (!q->paused && q->delayed.n > 0)
            next = min_next(next, ((struct mjob *)heap_top(&q->delayed))->j.delay_until);
        *next_at = q->paused ? 0 : next;
        return NV_ENOTFOUND;
    }
    if (mq_active_prepare(q) != NV_OK)
        return NV_ENOMEM;
    if (lim != NULL && lim->max > 0) {
        w = lim->grouped ? &g->win : &q->win;
        if (mq_win_push(w, now) != NV_OK)
            return NV_ENOMEM;
    }
    m = group_top(g);
    nx = m->in_fifo ? m->next : NULL;
    mq_waiting_remove(q, m);      /* may free g: not used below */
    m->j.state = NV_JOB_ACTIVE;
    m->j.processed_on = now;
    m->j.finished_on = 0;
    m->j.lease_until = now + lease_ms;
    mq_active_add(a, q, m);
    jt_hint = mq_jt_where(&q->jt, m);
    /* the slot is read again to end the job: have it at hand by then;
     * the next job of the fifo is read by the next reserve (here or in
     * the other worker): its record, a miss with a large backlog */
    if (jt_hint != NULL)
        __builtin_prefetch(jt_hint, 1);
    if (nx != NULL)
        prefetch_node(nx);
    if (mq_job_out_pinned(q, m, held) != NV_OK) {
        /* hand the job back as if never reserved */
        mq_active_del(q, m);
        m->j.lease_token[0] = '\0';
        m->j.lease_until = 0;
        if (mq_waiting_prepare(q, m) == NV_OK)
            mq_waiting_add(q, m);
        if (w != NULL && w->n > 0)
            w->n--;
        return NV_ENOMEM;
    }
    *pinned = m;
    return NV_OK;
}

/* The active job 'id' (hash h) held with 'token', or NULL (NV_ELEASE).
 * Under mu. */
static struct mjob *leased(struct mqueue *q, const char *id,
                           const char *token);

/*
 * After the unlock: the second half of a reserved job's copy. When that
 * runs out of memory the job goes back to waiting (unless its lease is
 * already gone) and 'out' holds nothing: NV_ENOMEM.
 */
static int
reserve_finish(struct mqueue *q, struct mjob *m, struct mrec *held,
               nv_job *out, struct outbufs *b)
{
    struct mjob *back;

    if (mq_job_out_finish(m, held, out, b) == NV_OK)
        return NV_OK;
    mq_lock(q);                 /* m is still pinned: its id is readable */
    back = leased(q, m->j.id, held->lease_token);
    if (back != NULL && mq_waiting_prepare(q, back) == NV_OK) {
        mq_active_del(q, back);
        back->j.lease_token[0] = '\0';
        back->j.lease_until = 0;
        mq_waiting_add(q, back);
        mq_wake(q, 0);
    }
    mq_unlock(q);
    mq_job_unpin(m);
    return NV_ENOMEM;
}

static int
mem_reserve(void *self, const char *queue, int64_t now, int64_t lease_ms,
            const nv_limiter *lim, nv_job *out, int64_t *next_at,
            nv_error *err)
{
    struct mqueues *a = self;
    struct mqueue *q = mq_queue_get(a, queue, 0);
    struct outbufs b;
    struct mjob *m = NULL;
    struct mrec held;
    int64_t next = 0;
    int rc;

    if (q == NULL) {
        if (next_at != NULL)
            *next_at = 0;
        return nv__error(err, NV_ENOTFOUND, "no runnable job in '%s'", queue);
    }
    mq_outbufs_init(&b);
    mq_lock(q);
    rc = reserve_locked(a, q, now, lease_ms, lim, &held, &m, &next);
    mq_unlock(q);
    if (rc == NV_OK)
        rc = reserve_finish(q, m, &held, out, &b);
    mq_outbufs_release(&b);
    if (rc == NV_ENOTFOUND) {
        if (next_at != NULL)
            *next_at = next;
        return nv__error(err, NV_ENOTFOUND, "no runnable job in '%s'", queue);
    }
    return rc == NV_OK ? NV_OK : oom(err);
}

/* ---- Leased operations ---- */

/* The active job 'id' (hash h) held with 'token', or NULL (NV_ELEASE).
 * Under mu. */
static struct mjob *
leased(struct mqueue *q, const char *id, const char *token)
{
    struct mjob *m = mq_active_find(q, id, token);

    return m != NULL && m->j.state == NV_JOB_ACTIVE ? m : NULL;
}

static int
lease_lost(nv_error *err, const char *queue, const char *id)
{
    return nv__error(err, NV_ELEASE, "lease of job '%s' in '%s' is gone", id,
                     queue);
}

static int
mem_extend(void *self, const char *queue, const char *id, const char *token,
           int64_t until, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    struct mjob *m;

    if (q == NULL)
        return lease_lost(err, queue, id);
    mq_lock(q);
    if ((m = leased(q, id, token)) != NULL)
        m->j.lease_until = until;
    mq_unlock(q);
    return m != NULL ? NV_OK : lease_lost(err, queue, id);
}

/* The text finish() stores for 'f' (failed_reason), allocated before the
 * lock; *text = NULL for COMPLETE (copied under the lock, only when the
 * completed job is kept). */
static int
finish_text(const nv_finish *f, char **text, nv_error *err)
{
    *text = NULL;
    switch (f->kind) {
    case NV_FINISH_COMPLETE:
        return NV_OK;
    case NV_FINISH_RETRY:
    case NV_FINISH_FAIL:
        *text = nv__strdup(f->failed_reason ? f->failed_reason : "");
        break;
    case NV_FINISH_RELEASE:
        *text = nv__strdup("");
        break;
    default:
        return nv__error(err, NV_EINVAL, "unknown finish kind %d", f->kind);
    }
    return *text != NULL ? NV_OK : oom(err);
}

/* finish() under q->mu; takes *text (set to NULL when used). */
static int
finish_locked(struct mqueue *q, const char *queue, const char *id,
              const char *token, const nv_finish *f, int64_t now,
              char **text, nv_error *err)
{
    struct mjob *m = leased(q, id, token);

    if (m == NULL)
        return lease_lost(err, queue, id);
    if (f->kind == NV_FINISH_COMPLETE && m->j.remove_on_complete != 0 &&
        (*text = nv__strdup(f->returnvalue ? f->returnvalue
                                           : "null")) == NULL)
        return oom(err);
    if ((f->kind == NV_FINISH_RELEASE ||
         (f->kind == NV_FINISH_RETRY && f->retry_at <= now)) &&
        mq_waiting_prepare(q, m) != NV_OK)
        return oom(err);
    if (f->kind == NV_FINISH_RETRY && f->retry_at > now &&
        mq_heap_reserve(&q->delayed) != NV_OK)
        return oom(err);
    mq_active_del(q, m);
    m->j.lease_token[0] = '\0';
    m->j.lease_until = 0;
    if (f->kind != NV_FINISH_RELEASE)
        m->j.attempts_made++;
    switch (f->kind) {
    case NV_FINISH_COMPLETE:
        nv__free(m->j.returnvalue);
        m->j.returnvalue = *text;
        m->j.finished_on = now;
        m->j.state = NV_JOB_COMPLETED;
        mq_finished_add(q, m);
        break;
    case NV_FINISH_FAIL:
        nv__free(m->j.failed_reason);
        m->j.failed_reason = *text;
        m->j.finished_on = now;
        m->j.state = NV_JOB_FAILED;
        mq_finished_add(q, m);
        break;
    case NV_FINISH_RETRY:
        nv__free(m->j.failed_reason);
        m->j.failed_reason = *text;
        if (f->retry_at > now) {
            m->j.delay_until = f->retry_at;
            mq_delayed_add(q, m);      /* room reserved above */
        } else {
            mq_waiting_add(q, m);
            mq_wake(q, 0);
        }
        break;
    case NV_FINISH_RELEASE:
        nv__free(*text);
        mq_waiting_add(q, m);
        mq_wake(q, 0);
        break;
    }
    *text = NULL;
    return NV_OK;
}

static int
mem_finish(void *self, const char *queue, const char *id, const char *token,
           const nv_finish *f, int64_t now, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    char *text;
    int rc;

    if (q == NULL)
        return lease_lost(err, queue, id);
    rc = finish_text(f, &text, err);
    if (rc != NV_OK)
        return rc;
    mq_lock(q);
    rc = finish_locked(q, queue, id, token, f, now, &text, err);
    mq_unlock(q);
    nv__free(text);
    return rc;
}

/*
 * finish() and, when it succeeded, reserve() of the same queue under one
 * lock: a busy worker takes q->mu once per job. A failed reserve (out of
 * memory) leaves the finish done and hands out nothing (*got = 0).
 */
static int
mem_finish_reserve(void *self, const char *queue, const char *id,
                   const char *token, const nv_finish *f, int64_t now,
                   int64_t lease_ms, const nv_limiter *lim, nv_job *out,
                   int *got, int64_t *next_at, nv_error *err)
{
    struct mqueues *a = self;
    struct mqueue *q = mq_queue_get(a, queue, 0);
    struct outbufs b;
    struct mjob *m = NULL;
    struct mrec held;
    char *text;
    int64_t next = 0;
    int rc, rrc = NV_ENOTFOUND;

    *got = 0;
    if (next_at != NULL)
        *next_at = 0;
    if (q == NULL)
        return lease_lost(err, queue, id);
    rc = finish_text(f, &text, err);
    if (rc != NV_OK)
        return rc;
    mq_outbufs_init(&b);
    if (jt_hint != NULL)
        __builtin_prefetch(jt_hint, 1);
    mq_lock(q);
    rc = finish_locked(q, queue, id, token, f, now, &text, err);
    if (rc == NV_OK)
        rrc = reserve_locked(a, q, now, lease_ms, lim, &held, &m, &next);
    mq_unlock(q);
    if (rrc == NV_OK)
        rrc = reserve_finish(q, m, &held, out, &b);
    mq_outbufs_release(&b);
    nv__free(text);
    if (rrc == NV_OK) {
        *got = 1;
    } else if (rrc == NV_ENOTFOUND && next_at != NULL) {
        *next_at = next;
    }
    return rc;
}

static int
mem_progress(void *self, const char *queue, const char *id, const char *token,
             double progress, const char *data, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    struct mjob *m;
    char *d = NULL;
    int rc = NV_OK;

    if (q == NULL)
        return lease_lost(err, queue, id);
    if (data != NULL && (d = nv__strdup(data)) == NULL)
        return oom(err);
    mq_lock(q);
    if ((m = leased(q, id, token)) == NULL) {
        rc = lease_lost(err, queue, id);
    } else {
        m->j.progress = progress;
        nv__free(m->j.progress_data);
        m->j.progress_data = d;
        d = NULL;
    }
    mq_unlock(q);
    nv__free(d);
    return rc;
}

/* ---- Reaping expired leases (W-3) ---- */

/* Free groups kept only for a limiter window that no longer counts. */
static void
groups_sweep(struct mqueue *q, int64_t now)
{
    struct mgroup *g, *tmp;

    HASH_ITER(hh, q->groups, g, tmp) {
        if (group_nwaiting(g) > 0)
            continue;
        mq_win_prune(&g->win, now, q->lim_duration);
        if (g->win.n == 0)
            mq_group_free(q, g);
    }
}

static int
act_seq_less(const void *a, const void *b)
{
    const struct mjob *x = *(struct mjob *const *)a;
    const struct mjob *y = *(struct mjob *const *)b;

    return (x->act_seq > y->act_seq) - (x->act_seq < y->act_seq);
}

/* The active jobs of q whose lease ended before 'now', in the order they
 * were reserved (*exp NULL when none). Under mu. */
static int
expired_leases(struct mqueue *q, int64_t now, struct mjob ***exp,
               size_t *nexp)
{
    size_t k = 0;

    *exp = NULL;
    *nexp = 0;
    for (uint32_t i = 0; i < q->act_n; i++)
        k += q->act[i] != NULL && q->act[i]->j.lease_until < now;
    if (k == 0)
        return NV_OK;
    if ((*exp = nv__malloc(k * sizeof(**exp))) == NULL)
        return NV_ENOMEM;
    for (uint32_t i = 0; i < q->act_n; i++)
        if (q->act[i] != NULL && q->act[i]->j.lease_until < now)
            (*exp)[(*nexp)++] = q->act[i];
    qsort(*exp, *nexp, sizeof(**exp), act_seq_less);
    return NV_OK;
}

static int
mem_reap(void *self, const char *queue, int64_t now, int max_stalled,
         nv_reaped **out, size_t *n, nv_error *err)
{
    struct mqueue *q = mq_queue_get(self, queue, 0);
    struct mjob *m, **exp;
    nv_reaped *v = NULL;
    size_t cnt = 0, cap = 0, nexp;
    int rc, woke = 0;

    *out = NULL;
    *n = 0;
    if (q == NULL)
        return NV_OK;
    mq_lock(q);
    rc = expired_leases(q, now, &exp, &nexp);
    for (size_t e = 0; e < nexp && rc == NV_OK; e++) {
        int fail;
        char *reason = NULL;

        m = exp[e];
        fail = m->j.stalled_count + 1 > max_stalled;
        if (cnt == cap) {
            size_t c = cap ? cap * 2 : 8;
            nv_reaped *t = nv__realloc(v, c * sizeof(*t));

            if (t == NULL) {
                rc = NV_ENOMEM;
                break;
            }
            v = t;
            cap = c;
        }
        if ((fail && (reason = nv__strdup(STALLED_REASON)) == NULL) ||
            (!fail && mq_waiting_prepare(q, m) != NV_OK)) {
            rc = NV_ENOMEM;
            break;
        }
        mq_active_del(q, m);
        m->j.stalled_count++;
        m->j.lease_token[0] = '\0';
        m->j.lease_until = 0;
        if (fail) {
            nv__free(m->j.failed_reason);
            m->j.failed_reason = reason;
            m->j.finished_on = now;
            m->j.state = NV_JOB_FAILED;
        } else {
            mq_waiting_add(q, m);
            woke = 1;
        }
        if (mq_job_out(q, m, &v[cnt].job) != NV_OK)
            rc = NV_ENOMEM;     /* the change stands; report what we have */
        else
            v[cnt++].failed = fail;
        if (fail)
            mq_finished_add(q, m);
    }
    if (woke && !q->paused)
        mq_wake(q, 1);
    groups_sweep(q, now);
    mq_unlock(q);
    nv__free(exp);
    if (rc != NV_OK) {
        nv_reaped_free(v, cnt);
        return oom(err);
    }
    *out = v;
    *n = cnt;
    return NV_OK;
}


/* ---- Waiting for work ---- */

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Before sleeping on the condition variable, watch 'gen' for a few
 * microseconds: a job enqueued meanwhile is then taken without a futex
 * sleep and wake-up. Only while the queue is busy: a thread whose
 * previous wait saw the same idle generation (nothing happened since)
 * sleeps at once, so idle workers cost nothing. One thread of a queue
 * watches at a time; mq_wake leaves it a single job without a wake-up
 * (it looks again under the lock before it sleeps, so none is lost).
 * 1: something happened.
 */
static _Thread_local uint64_t spin_last_idle = UINT64_MAX;

static int
spin_for_work(struct mqueue *q)
{
    uint64_t idle = atomic_load_explicit(&q->idle_gen, memory_order_relaxed);
    int64_t t0;
    int got = 0;

    if (atomic_load_explicit(&q->gen, memory_order_acquire) != idle)
        return 1;
    if (idle == spin_last_idle)
        return 0;
    spin_last_idle = idle;
    /* One watcher per queue: on a small machine a second spinning thread
     * only takes the CPU from the threads that make the work. */
    if (atomic_fetch_add(&q->spinners, 1) > 0) {
        atomic_fetch_sub(&q->spinners, 1);
        return 0;
    }
    t0 = mono_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&q->gen, memory_order_acquire) != idle) {
            got = 1;
            break;
        }
        if ((i & 63) == 0 && mono_ns() - t0 > MEM_SPIN_NS)
            break;
        cpu_relax();
    }
    atomic_fetch_sub(&q->spinners, 1);
    return got;
}

static int
mem_wait(void *self, const char *queue, int64_t timeout_ms)
{
    struct mqueue *q = mq_queue_get(self, queue, 1);
    struct timespec ts;
    uint64_t gen;

    if (q == NULL || timeout_ms <= 0)
        return NV_OK;
    if (spin_for_work(q))
        return NV_OK;
    nv__timespec_after(CLOCK_MONOTONIC, timeout_ms * NV__MS, &ts);
    mq_lock(q);
    /* Something happened since the last reserve that found nothing (say
     * an enqueue between that reserve and this wait): do not sleep. */
    gen = atomic_load(&q->gen);
    if (gen != atomic_load_explicit(&q->idle_gen, memory_order_relaxed)) {
        mq_unlock(q);
        return NV_OK;
    }
    atomic_fetch_add(&q->waiters, 1);
    while (atomic_load(&q->gen) == gen &&
           pthread_cond_timedwait(&q->cv, &q->mu, &ts) == 0)
        ;
    /* back: a wake-up on its way to it (or to another that timed out
     * meanwhile: then one more signal than needed, never one less) */
    if (atomic_load(&q->wakes) > 0)
        atomic_fetch_sub(&q->wakes, 1);
    atomic_fetch_sub(&q->waiters, 1);
    mq_unlock(q);
    return NV_OK;
}

static void
mem_wake(void *self)
{
    struct mqueues *a = self;
    struct qtable *t = atomic_load_explicit(&a->table, memory_order_acquire);

    for (size_t i = 0; i < t->cap; i++) {
        struct mqueue *q = atomic_load_explicit(&t->slot[i],
                                                memory_order_acquire);

        if (q == NULL)
            continue;
        mq_lock(q);
        mq_wake(q, 1);
        mq_unlock(q);
    }
}

/* ---- Lifecycle ---- */

static int
mem_ping(void *self, nv_error *err)
{
    (void)self;
    (void)err;
    return NV_OK;
}

static void
queue_free(struct mqueue *q)
{
    struct mjob *m;
    struct mgroup *g, *gt;

    for (size_t i = 0; i < mq_jt_slots(&q->jt); i++) {
        m = mq_jt_at(&q->jt, i);
        if (m != NULL)
            mq_job_destroy(m);
    }
    mq_jt_free(&q->jt);
    HASH_ITER(hh, q->groups, g, gt)
        mq_group_free(q, g);
    while ((m = q->pool) != NULL) {
        q->pool = m->next;
        nv__free(m);
    }
    /* jobs never filed: in the inbox, or pending */
    for (int i = 0; i < 2; i++) {
        m = i == 0 ? atomic_exchange(&q->inbox, NULL) : q->pending;
        while (m != NULL) {
            struct mjob *next = m->next;

            mq_job_destroy(m);
            m = next;
        }
    }
    for (int i = 0; i < 2; i++) {
        m = i == 0 ? atomic_load(&q->spare) : q->pfree;
        while (m != NULL) {
            struct mjob *next = m->next;

            nv__free(m);
            m = next;
        }
    }
    nv__free(q->ready.v);
    nv__free(q->delayed.v);
    nv__free(q->win.v);
    nv__free(q->scratch);
    nv__free(atomic_load(&q->opts_shared));
    nv__free(q->act);
    nv__free(q->act_free);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->pmu);
    nv__free(q);
}

static void
mem_close(void *self)
{
    struct mqueues *a = self;
    struct qtable *t;

    if (a == NULL)
        return;
    t = atomic_load_explicit(&a->table, memory_order_relaxed);
    for (size_t i = 0; t != NULL && i < t->cap; i++) {
        struct mqueue *q = atomic_load_explicit(&t->slot[i],
                                                memory_order_relaxed);

        if (q != NULL)
            queue_free(q);
    }
    while (t != NULL) {
        struct qtable *old = t->retired;

        nv__free(t);
        t = old;
    }
    pthread_mutex_destroy(&a->qmu);
    nv__free(a);
}

static const nv_queue_ops mem_queue_ops = {
    .name = "memory",
    .enqueue = mem_enqueue,
    .reserve = mem_reserve,
    .extend = mem_extend,
    .finish = mem_finish,
    .finish_reserve = mem_finish_reserve,
    .progress = mem_progress,
    .log = mq_log,
    .get = mq_get,
    .list = mq_list,
    .counts = mq_counts,
    .set_paused = mq_set_paused,
    .is_paused = mq_is_paused,
    .remove = mq_remove,
    .retry = mq_retry,
    .reap = mem_reap,
    .wait = mem_wait,
    .wake = mem_wake,
    .ping = mem_ping,
    .close = mem_close,
};

int
nv_memory_queue_open(const char *settings_json, nv_queue *out, nv_error *err)
{
    struct mqueues *a;

    (void)settings_json;   /* the memory queue has no settings */
    a = nv__calloc(1, sizeof(*a));
    if (a == NULL)
        return oom(err);
    atomic_init(&a->table, table_new(16));
    if (atomic_load(&a->table) == NULL) {
        nv__free(a);
        return oom(err);
    }
    pthread_mutex_init(&a->qmu, NULL);
    nv__random(a->token_key, sizeof(a->token_key));
    out->ops = &mem_queue_ops;
    out->self = a;
    return NV_OK;
}