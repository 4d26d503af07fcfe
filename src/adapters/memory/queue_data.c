/*
 * Memory queue adapter, containers: binary heaps, the id table, job lists,
 * limiter windows, job nodes and their copies, and the waiting set with
 * the state changes built on them. Everything here runs under the
 * queue's mutex (queue.h).
 */
#include <stdio.h>

#include "adapters/memory/queue.h"

/* ---- Binary heaps with the element's position stored in the element ---- */

static void
heap_set(struct heap *h, size_t i, void *e)
{
    h->v[i] = e;
    *(size_t *)((char *)e + h->idx_off) = i;
}

void
mq_heap_fix(struct heap *h, size_t i)
{
    void *e = h->v[i];

    while (i > 0 && h->less(e, h->v[(i - 1) / 2])) {
        heap_set(h, i, h->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = l;

        if (l >= h->n)
            break;
        if (r < h->n && h->less(h->v[r], h->v[l]))
            m = r;
        if (!h->less(h->v[m], e))
            break;
        heap_set(h, i, h->v[m]);
        i = m;
    }
    heap_set(h, i, e);
}

/* Make room for one more element (so a later push cannot fail). */
int
mq_heap_reserve(struct heap *h)
{
    size_t cap;
    void **v;

    if (h->n < h->cap)
        return NV_OK;
    cap = h->cap ? h->cap * 2 : 16;
    v = nv__realloc(h->v, cap * sizeof(*v));
    if (v == NULL)
        return NV_ENOMEM;
    h->v = v;
    h->cap = cap;
    return NV_OK;
}

/* Push after heap_reserve succeeded. */
void
mq_heap_push(struct heap *h, void *e)
{
    heap_set(h, h->n++, e);
    mq_heap_fix(h, h->n - 1);
}

void
mq_heap_remove(struct heap *h, void *e)
{
    size_t i = *(size_t *)((char *)e + h->idx_off);

    h->n--;
    if (i != h->n) {
        heap_set(h, i, h->v[h->n]);
        mq_heap_fix(h, i);
    }
}


/* ---- The id table: a hash part and a ring of generated ids (queue.h) ---- */

static struct mjob *
hash_find(const struct jtab *t, const char *id, uint64_t h)
{
    if (t->hn == 0)
        return NULL;
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const struct jslot *s = &t->v[i];

        if (s->m == NULL)
            return NULL;
        if (s->h == h && strcmp(s->m->j.id, id) == 0)
            return s->m;
    }
}

/* The job of id (hash h; of the generated form when seq, number x). */
static struct mjob *
jt_find(const struct jtab *t, const char *id, uint64_t h, int seq,
        uint64_t x)
{
    if (seq) {
        if (t->rn > 0 && x - t->lo < t->rcap) {
            struct mjob *m = t->r[x & (t->rcap - 1)];

            if (m != NULL && strcmp(m->j.id, id) == 0)
                return m;
        }
        if (t->nseq_hashed == 0)
            return NULL;
    }
    return hash_find(t, id, h);
}

struct mjob *
mq_jt_find(const struct jtab *t, const char *id)
{
    return mq_jt_find_h(t, id, mq_id_hash(id));
}

struct mjob *
mq_jt_find_h(const struct jtab *t, const char *id, uint64_t h)
{
    uint64_t x = 0;
    int seq = mq_id_seq(id, &x);

    return jt_find(t, id, h, seq, x);
}

struct mjob *
mq_jt_find_node(const struct jtab *t, const struct mjob *m)
{
    return jt_find(t, m->j.id, m->idh, m->seq_ok, m->seqn);
}

static int
jt_rehash(struct jtab *t, size_t cap)
{
    struct jslot *v = nv__calloc(cap, sizeof(*v));

    if (v == NULL)
        return NV_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        size_t k;

        if (t->v[i].m == NULL)
            continue;
        k = t->v[i].h & (cap - 1);
        while (v[k].m != NULL)
            k = (k + 1) & (cap - 1);
        v[k] = t->v[i];
    }
    nv__free(t->v);
    t->v = v;
    t->cap = cap;
    return NV_OK;
}

/* Add m (hash h) to the hash part; 0 when out of memory. */
static int
hash_add(struct jtab *t, struct mjob *m, uint64_t h)
{
    size_t k;

    /* at most half full: short probes, also for ids that are absent (the
     * check of every enqueue); never below JT_MIN_CAP, so that a queue
     * that stays small is not rehashed every few jobs */
    if ((t->hn + 1) * 2 > t->cap) {
        size_t cap = JT_MIN_CAP;

        while ((t->hn + 1) * 4 > cap)
            cap *= 2;
        if (jt_rehash(t, cap) != NV_OK)
            return 0;
    }
    k = h & (t->cap - 1);
    while (t->v[k].m != NULL)
        k = (k + 1) & (t->cap - 1);
    t->v[k].h = h;
    t->v[k].m = m;
    m->idh = h;
    m->in_ring = 0;
    t->hn++;
    if (m->seq_ok)
        t->nseq_hashed++;
    return 1;
}

/*
 * Remove m by shifting back the entries of its probe run (no tombstone:
 * probes stay as short as the load allows however many jobs come and go).
 */
static void
hash_del(struct jtab *t, struct mjob *m)
{
    size_t mask = t->cap - 1, i, j;

    if (t->hn == 0)
        return;
    for (i = m->idh & mask;; i = (i + 1) & mask) {
        if (t->v[i].m == m)
            break;
        if (t->v[i].m == NULL)
            return;             /* not in t */
    }
    for (j = (i + 1) & mask; t->v[j].m != NULL; j = (j + 1) & mask) {
        size_t home = t->v[j].h & mask;

        /* the entry at j may fill the hole at i unless its home lies
         * cyclically in (i, j] */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            t->v[i] = t->v[j];
            i = j;
        }
    }
    t->v[i].m = NULL;
    t->hn--;
    if (m->seq_ok)
        t->nseq_hashed--;
}

/* The ring re-made with cap slots (a power of two holding [lo, hi]). */
static int
ring_resize(struct jtab *t, size_t cap)
{
    struct mjob **r = nv__calloc(cap, sizeof(*r));

    if (r == NULL)
        return NV_ENOMEM;
    for (size_t i = 0; i < t->rcap; i++) {
        if (t->r[i] != NULL)
            r[t->r[i]->seqn & (cap - 1)] = t->r[i];
    }
    nv__free(t->r);
    t->r = r;
    t->rcap = cap;
    return NV_OK;
}

/* Move the ring's jobs below number 'below' (all: UINT64_MAX) to the hash
 * part; 0 when out of memory (those moved stay moved). */
static int
ring_evict(struct jtab *t, uint64_t below)
{
    size_t mask = t->rcap - 1;

    while (t->rn > 0 && t->lo < below) {
        struct mjob *m = t->r[t->lo & mask];

        if (m != NULL) {
            if (!hash_add(t, m, m->idh))
                return 0;
            t->r[t->lo & mask] = NULL;
            t->rn--;
        }
        t->lo++;
    }
    return 1;
}

static size_t
pow2_at_least(uint64_t n)
{
    size_t c = RING_MIN;

    while (c < n)
        c *= 2;
    return c;
}

/* Put m (its number x = m->seqn) in the ring; 0 when it does not fit (it
 * then goes to the hash part) or out of memory. */
static int
ring_put(struct jtab *t, struct mjob *m)
{
    uint64_t x = m->seqn;

    if (t->rn == 0) {
        if (t->rcap == 0 && ring_resize(t, RING_MIN) != NV_OK)
            return 0;
        t->lo = t->hi = x;
    }
    if (x < t->lo) {
        /* a little older than the oldest (producers racing): room? */
        if (t->hi - x >= t->rcap)
            return 0;
        t->lo = x;
    } else if (x - t->lo >= t->rcap) {
        uint64_t span = x - t->lo + 1;

        if (span <= RING_MAX && span <= 8 * (uint64_t)(t->rn + RING_MIN)) {
            if (ring_resize(t, pow2_at_least(span)) != NV_OK)
                return 0;
        } else if (x - t->lo >= 2 * (uint64_t)t->rcap) {
            /* far away: a new stream; the old one's jobs to the hash */
            for (size_t i = 0; i < t->rcap && t->rn > 0; i++) {
                struct mjob *o = t->r[i];

                if (o != NULL) {
                    if (!hash_add(t, o, o->idh))
                        return 0;
                    t->r[i] = NULL;
                    t->rn--;
                }
            }
            t->lo = t->hi = x;
        } else if (!ring_evict(t, x - t->rcap + 1)) {
            return 0;
        } else if (t->rn == 0) {
            t->lo = t->hi = x;
        }
    }
    if (t->r[x & (t->rcap - 1)] != NULL)
        return 0;               /* the number of another id */
    t->r[x & (t->rcap - 1)] = m;
    t->rn++;
    if (x > t->hi)
        t->hi = x;
    m->in_ring = 1;
    return 1;
}

static void
ring_del(struct jtab *t, struct mjob *m)
{
    size_t mask = t->rcap - 1;

    t->r[m->seqn & mask] = NULL;
    m->in_ring = 0;
    if (--t->rn == 0) {
        if (t->rcap > 16 * RING_MIN) {
            nv__free(t->r);     /* a backlog gone: give its room back */
            t->r = NULL;
            t->rcap = 0;
        }
        return;
    }
    while (t->r[t->lo & mask] == NULL)
        t->lo++;
    /* mostly empty after a backlog went: a smaller ring if the span fits */
    if (t->rcap > 16 * RING_MIN && t->rn * 64 < t->rcap &&
        (t->hi - t->lo + 1) * 4 <= t->rcap)
        ring_resize(t, pow2_at_least(t->hi - t->lo + 1));
}

/* Add m, whose id is not in t; 0 when out of memory (t unchanged). */
int
mq_jt_add(struct jtab *t, struct mjob *m, uint64_t h)
{
    m->idh = h;
    if (m->seq_ok && ring_put(t, m)) {
        t->n++;
        return 1;
    }
    if (!hash_add(t, m, h))
        return 0;
    t->n++;
    return 1;
}

void
mq_jt_del(struct jtab *t, struct mjob *m)
{
    if (m->in_ring) {
        ring_del(t, m);
        t->n--;
    } else {
        size_t before = t->hn;

        hash_del(t, m);
        if (t->hn < before)
            t->n--;
    }
}

const void *
mq_jt_where(const struct jtab *t, const struct mjob *m)
{
    if (m->seq_ok && t->rcap > 0 && m->seqn - t->lo < t->rcap)
        return &t->r[m->seqn & (t->rcap - 1)];
    return t->cap > 0 ? &t->v[m->idh & (t->cap - 1)] : NULL;
}

size_t
mq_jt_slots(const struct jtab *t)
{
    return t->rcap + t->cap;
}

struct mjob *
mq_jt_at(const struct jtab *t, size_t i)
{
    return i < t->rcap ? t->r[i] : t->v[i - t->rcap].m;
}

void
mq_jt_free(struct jtab *t)
{
    nv__free(t->r);
    nv__free(t->v);
    memset(t, 0, sizeof(*t));
}


/* ---- Small helpers ---- */


int
mq_delayed_less(const void *a, const void *b)
{
    const struct mjob *x = a, *y = b;

    if (x->j.delay_until != y->j.delay_until)
        return x->j.delay_until < y->j.delay_until;
    return x->dseq < y->dseq;
}

int
mq_group_less(const void *a, const void *b)
{
    return waiting_less(group_top(a), group_top(b));
}

void
mq_list_append(struct jlist *l, struct mjob *m)
{
    m->next = NULL;
    m->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
    l->n++;
}

/* Insert keeping the list sorted by finished_on (equal: after). */
static void
list_insert_finished(struct jlist *l, struct mjob *m)
{
    struct mjob *p = l->tail;

    while (p != NULL && p->j.finished_on > m->j.finished_on)
        p = p->prev;
    m->prev = p;
    m->next = p ? p->next : l->head;
    if (m->next != NULL)
        m->next->prev = m;
    else
        l->tail = m;
    if (p != NULL)
        p->next = m;
    else
        l->head = m;
    l->n++;
}

void
mq_list_unlink(struct jlist *l, struct mjob *m)
{
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        l->head = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    else
        l->tail = m->prev;
    m->prev = m->next = NULL;
    l->n--;
}

int
mq_win_push(struct window *w, int64_t t)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 8;
        int64_t *v = nv__malloc(cap * sizeof(*v));

        if (v == NULL)
            return NV_ENOMEM;
        for (size_t i = 0; i < w->n; i++)
            v[i] = w->v[(w->head + i) % w->cap];
        nv__free(w->v);
        w->v = v;
        w->head = 0;
        w->cap = cap;
    }
    w->v[(w->head + w->n) % w->cap] = t;
    w->n++;
    return NV_OK;
}

/* Drop activations that no longer count at 'now': t + duration <= now. */
void
mq_win_prune(struct window *w, int64_t now, int64_t duration)
{
    while (w->n > 0 && w->v[w->head] <= now - duration) {
        w->head = (w->head + 1) % w->cap;
        w->n--;
    }
}

/* ---- Copies ---- */

static void
copy_str(char *d, const char *s, size_t size)
{
    size_t n = strnlen(s, size - 1);

    memcpy(d, s, n);
    d[n] = '\0';
}

/* The fields of r that change (all but names, data, opts, group) into
 * the nv_job d. */
static void
rec_vars_out(nv_job *d, const struct mrec *r)
{
    d->state = r->state;
    d->priority = r->priority;
    d->lifo = r->lifo;
    d->remove_on_complete = r->remove_on_complete;
    d->remove_on_fail = r->remove_on_fail;
    d->attempts_made = r->attempts_made;
    d->stalled_count = r->stalled_count;
    d->progress = r->progress;
    d->timestamp = r->timestamp;
    d->delay_until = r->delay_until;
    d->processed_on = r->processed_on;
    d->finished_on = r->finished_on;
    d->lease_until = r->lease_until;
    copy_str(d->lease_token, r->lease_token, sizeof(d->lease_token));
}

/* The names of r into d. */
static void
rec_names_out(nv_job *d, const struct mrec *r)
{
    copy_str(d->queue, r->queue, sizeof(d->queue));
    copy_str(d->name, r->name, sizeof(d->name));
    copy_str(d->run_id, r->run_id, sizeof(d->run_id));
    copy_str(d->flow_name, r->flow_name, sizeof(d->flow_name));
    copy_str(d->step_name, r->step_name, sizeof(d->step_name));
}

static _Thread_local size_t outbuf_hint[2] = { 16, 256 };

void
mq_outbufs_init(struct outbufs *b)
{
    for (int i = 0; i < 2; i++) {
        b->cap[i] = outbuf_hint[i];
        b->p[i] = nv__malloc(b->cap[i]);
        if (b->p[i] == NULL)
            b->cap[i] = 0;
    }
}

void
mq_outbufs_release(struct outbufs *b)
{
    nv__free(b->p[0]);
    nv__free(b->p[1]);
}

/* A copy of s: in b's buffer i when it fits, else allocated. */
static char *
outbuf_dup(struct outbufs *b, int i, const char *s)
{
    size_t n;
    char *d;

    if (s == NULL)
        return NULL;
    if (b == NULL)
        return nv__strdup(s);
    n = strlen(s) + 1;
    if (n > outbuf_hint[i] && n <= 65536)
        outbuf_hint[i] = (n + 63) & ~(size_t)63;
    if (b->p[i] == NULL || n > b->cap[i])
        return nv__strdup(s);
    d = memcpy(b->p[i], s, n);
    b->p[i] = NULL;
    b->cap[i] = 0;
    return d;
}

/* Copy m out for the caller (written only on success); data and opts go
 * into b's buffers when they fit (b may be NULL). */
static int
job_out_buf(const struct mqueue *q, const struct mjob *m, nv_job *out,
            struct outbufs *b)
{
    const struct mrec *j = &m->j;
    const char *src[7] = { j->data, j->opts, j->progress_data, j->returnvalue,
                           j->failed_reason, j->logs, j->group };
    char *dup[7];

    for (int i = 0; i < 7; i++) {
        dup[i] = i < 2 ? outbuf_dup(b, i, src[i])
                       : src[i] ? nv__strdup(src[i]) : NULL;
        if (src[i] != NULL && dup[i] == NULL) {
            while (i-- > 0)
                nv__free(dup[i]);
            return NV_ENOMEM;
        }
    }
    memset(out, 0, sizeof(*out));       /* the caller's own cache lines */
    copy_str(out->id, j->id, sizeof(out->id));
    rec_names_out(out, j);
    rec_vars_out(out, j);
    out->data = dup[0];
    out->opts = dup[1];
    out->progress_data = dup[2];
    out->returnvalue = dup[3];
    out->failed_reason = dup[4];
    out->logs = dup[5];
    out->group = dup[6];
    out->state = reported_state(q, m);
    return NV_OK;
}

int
mq_job_out_pinned(const struct mqueue *q, struct mjob *m, struct mrec *held)
{
    const struct mrec *j = &m->j;
    const char *src[4] = { j->progress_data, j->returnvalue,
                           j->failed_reason, j->logs };
    char *dup[4];

    for (int i = 0; i < 4; i++) {
        dup[i] = src[i] != NULL ? nv__strdup(src[i]) : NULL;
        if (src[i] != NULL && dup[i] == NULL) {
            while (i-- > 0)
                nv__free(dup[i]);
            return NV_ENOMEM;
        }
    }
    *held = *j;
    held->progress_data = dup[0];
    held->returnvalue = dup[1];
    held->failed_reason = dup[2];
    held->logs = dup[3];
    held->state = reported_state(q, m);
    atomic_fetch_add_explicit(&m->pins, 1, memory_order_relaxed);
    return NV_OK;
}

void
mq_job_unpin(struct mjob *m)
{
    if (atomic_fetch_sub_explicit(&m->pins, 1, memory_order_acq_rel) ==
        (MQ_PIN_GONE | 1u))
        mq_job_destroy(m);
}

int
mq_job_out_finish(struct mjob *m, struct mrec *held, nv_job *out,
                  struct outbufs *b)
{
    const struct mrec *j = &m->j;
    char *data = outbuf_dup(b, 0, j->data);
    char *opts = outbuf_dup(b, 1, j->opts);
    char *group = j->group != NULL ? nv__strdup(j->group) : NULL;

    if ((j->data != NULL && data == NULL) ||
        (j->opts != NULL && opts == NULL) ||
        (j->group != NULL && group == NULL)) {
        char **own[4] = { &held->progress_data, &held->returnvalue,
                          &held->failed_reason, &held->logs };

        nv__free(data);
        nv__free(opts);
        nv__free(group);
        for (int i = 0; i < 4; i++) {
            nv__free(*own[i]);
            *own[i] = NULL;
        }
        return NV_ENOMEM;       /* still pinned */
    }
    copy_str(out->id, j->id, sizeof(out->id));
    rec_names_out(out, j);
    rec_vars_out(out, held);
    out->state = held->state;
    out->data = data;
    out->opts = opts;
    out->group = group;
    out->progress_data = held->progress_data;
    out->returnvalue = held->returnvalue;
    out->failed_reason = held->failed_reason;
    out->logs = held->logs;
    mq_job_unpin(m);            /* m may be freed from here on */
    return NV_OK;
}

int
mq_job_out(const struct mqueue *q, const struct mjob *m, nv_job *out)
{
    return job_out_buf(q, m, out, NULL);
}

/* The strings of a filled node that change live apart from its block:
 * free them (the node itself stays). */
void
mq_job_release(struct mjob *m)
{
    nv__free(m->j.progress_data);
    nv__free(m->j.returnvalue);
    nv__free(m->j.failed_reason);
    nv__free(m->j.logs);
}

/* Free a filled job node. */
void
mq_job_destroy(struct mjob *m)
{
    mq_job_release(m);
    nv__free(m);
}

/* Bytes a name takes in a node's block (an empty one takes none). */
static size_t
name_size(const char *s, size_t max)
{
    return s[0] != '\0' ? strnlen(s, max - 1) + 1 : 0;
}

size_t
mq_job_size(const nv_job *src)
{
    /* the id: room for a generated one when src has none */
    return sizeof(struct mjob) +
           (src->id[0] != '\0' ? name_size(src->id, sizeof(src->id)) : 32) +
           name_size(src->name, sizeof(src->name)) +
           name_size(src->run_id, sizeof(src->run_id)) +
           name_size(src->flow_name, sizeof(src->flow_name)) +
           name_size(src->step_name, sizeof(src->step_name)) +
           strlen(src->data ? src->data : "{}") + 1 +
           (src->opts ? strlen(src->opts) + 1 : 0) +
           (src->group ? strlen(src->group) + 1 : 0);
}

struct mjob *
mq_node_pop(struct mqueue *q)
{
    struct mjob *m = q->pool;

    if (m != NULL) {
        q->pool = m->next;
        if (--q->npool == 0)
            q->pool_tail = NULL;
    }
    return m;
}

struct mjob *
mq_node_alloc(size_t size)
{
    int pooled = size <= MQ_NODE_SIZE;
    struct mjob *m = nv__malloc(pooled ? MQ_NODE_SIZE : size);

    if (m != NULL)
        m->pooled = pooled;
    return m;
}

/* Nodes given up under a queue's mu, freed by this thread once it lets
 * go of the lock (mq_unlock): free() of a node another thread allocated
 * takes that thread's malloc arena lock, which must not lengthen the
 * hold of the queue's. */
_Thread_local struct mjob *mq_garbage;

void
mq_node_discard(struct mqueue *q, struct mjob *m)
{
    if (m == NULL)
        return;
    if (!m->pooled) {
        m->next = mq_garbage;
        mq_garbage = m;
        return;
    }
    m->next = q->pool;
    q->pool = m;
    if (q->npool++ == 0)
        q->pool_tail = m;
    if (q->npool < NODE_POOL)
        return;
    /* A batch for the producers (the inbox path), who allocate a node per
     * job: pushed whatever they hold already, up to SPARE_MAX nodes, so a
     * steady stream reuses its nodes without malloc or free. Beyond that
     * (a backlog shrinking) the batch is freed, after the unlock. */
    if (atomic_load_explicit(&q->nspare, memory_order_relaxed) <
        SPARE_MAX) {
        struct mjob *head = atomic_load_explicit(&q->spare,
                                                 memory_order_relaxed);

        atomic_fetch_add_explicit(&q->nspare, q->npool, memory_order_relaxed);
        do
            q->pool_tail->next = head;
        while (!atomic_compare_exchange_weak_explicit(&q->spare, &head,
                                                      q->pool,
                                                      memory_order_release,
                                                      memory_order_relaxed));
    } else {
        q->pool_tail->next = mq_garbage;
        mq_garbage = q->pool;
    }
    q->pool = q->pool_tail = NULL;
    q->npool = 0;
}

void
mq_garbage_free(void)
{
    struct mjob *m;

    while ((m = mq_garbage) != NULL) {
        mq_garbage = m->next;
        nv__free(m);
    }
}

/* Copy name s (size bounded by max) to *p and return it; "" for an
 * empty one, which takes no room. */
static const char *
put_name(char **p, const char *s, size_t max)
{
    size_t n = name_size(s, max);
    char *d = *p;

    if (n == 0)
        return "";
    memcpy(d, s, n - 1);
    d[n - 1] = '\0';
    *p += n;
    return d;
}

/* The queue's shared copy of opts when equal to it (the first opts the
 * queue saw: usually every job's, its function's defaults), else NULL. */
static char *
opts_shared(struct mqueue *q, const char *opts)
{
    char *s = atomic_load_explicit(&q->opts_shared, memory_order_acquire);

    if (s == NULL) {
        char *mine = nv__strdup(opts), *none = NULL;

        if (mine == NULL)
            return NULL;
        if (atomic_compare_exchange_strong(&q->opts_shared, &none, mine)) {
            s = mine;
        } else {
            nv__free(mine);
            s = none;
        }
    }
    return strcmp(s, opts) == 0 ? s : NULL;
}

int
mq_job_fill(struct mqueue *q, struct mjob *m, const nv_job *src,
            const char *id)
{
    const char *data = src->data ? src->data : "{}";
    const char *rest[4] = { src->progress_data, src->returnvalue,
                            src->failed_reason, src->logs };
    char **dst[4];
    struct mrec *r = &m->j;
    char *p;
    size_t n;
    int pooled = m->pooled;

    memset(m, 0, sizeof(*m));
    m->pooled = pooled;
    p = (char *)(m + 1);
    r->id = put_name(&p, id, NV_JOB_ID_MAX);
    m->seq_ok = (unsigned char)mq_id_seq(r->id, &m->seqn);
    r->queue = q->name;
    r->name = put_name(&p, src->name, sizeof(src->name));
    r->run_id = put_name(&p, src->run_id, sizeof(src->run_id));
    r->flow_name = put_name(&p, src->flow_name, sizeof(src->flow_name));
    r->step_name = put_name(&p, src->step_name, sizeof(src->step_name));
    n = strlen(data) + 1;
    r->data = memcpy(p, data, n);
    p += n;
    if (src->opts != NULL && (r->opts = opts_shared(q, src->opts)) == NULL) {
        n = strlen(src->opts) + 1;
        r->opts = memcpy(p, src->opts, n);
        p += n;
    }
    if (src->group != NULL)
        r->group = memcpy(p, src->group, strlen(src->group) + 1);
    r->state = src->state;
    r->priority = src->priority;
    r->lifo = src->lifo;
    r->remove_on_complete = src->remove_on_complete;
    r->remove_on_fail = src->remove_on_fail;
    r->attempts_made = src->attempts_made;
    r->stalled_count = src->stalled_count;
    r->progress = src->progress;
    r->timestamp = src->timestamp;
    r->delay_until = src->delay_until;
    r->processed_on = src->processed_on;
    r->finished_on = src->finished_on;
    r->lease_until = src->lease_until;
    copy_str(r->lease_token, src->lease_token, sizeof(r->lease_token));
    dst[0] = &r->progress_data;
    dst[1] = &r->returnvalue;
    dst[2] = &r->failed_reason;
    dst[3] = &r->logs;
    for (int i = 0; i < 4; i++) {
        if (rest[i] != NULL && (*dst[i] = nv__strdup(rest[i])) == NULL) {
            while (i-- > 0)
                nv__free(*dst[i]);
            return NV_ENOMEM;
        }
    }
    return NV_OK;
}

/* Wake waiters of q: one (a single job) or all. Under q->mu. */
void
mq_wake(struct mqueue *q, int all)
{
    /* Nothing becomes runnable in a paused queue: its idle
     * workers stay asleep until the resume (which wakes all). */
    if (q->paused && !all)
        return;
    int waiters;

    atomic_fetch_add(&q->gen, 1);       /* inbox pushes add without mu */
    if ((waiters = atomic_load(&q->waiters)) == 0)
        return;
    /* A worker watching 'gen' (mem_wait) takes a single job without a
     * wake-up: a sleeper is woken only for more than it can take. */
    if (!all && q->nwaiting <= 1 &&
        atomic_load_explicit(&q->spinners, memory_order_relaxed) > 0)
        return;
    if (all) {
        atomic_store(&q->wakes, waiters);
        pthread_cond_broadcast(&q->cv);
    } else if (atomic_load(&q->wakes) < waiters) {
        /* not when every sleeper has a wake-up on its way already (the
         * woken one takes the lock, so files the inbox, when it runs) */
        atomic_fetch_add(&q->wakes, 1);
        pthread_cond_signal(&q->cv);
    }
}

/*
 * A lease token: 32 hex digits. The first 16 are splitmix64 of a random
 * key plus the queue's counter: unique per reservation of the queue (a
 * lease names its queue and job too) and unguessable enough for a lease
 * (not a secret); the counter is the queue's, under its lock, so
 * reserves share no cache line. The last 16: more of the key, then the
 * job's active slot in the low 32 bits.
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The 8 hex digits of v, most significant first, as the bytes of a word
 * in memory order: the nibbles spread one a byte, then made digits all at
 * once (a reserve writes a token per job). */
static uint64_t
hex8(uint32_t v)
{
    uint64_t n = v, gt9;

    n = ((n & 0xffff0000ull) << 16) | (n & 0xffffull);
    n = ((n & 0x0000ff000000ff00ull) << 8) | (n & 0x000000ff000000ffull);
    n = ((n & 0x00f000f000f000f0ull) << 4) | (n & 0x000f000f000f000full);
    n = __builtin_bswap64(n);           /* most significant first */
    gt9 = ((n + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    return n + 0x3030303030303030ull + gt9 * ('a' - '0' - 10);
}

/* Write x as 16 hex digits. */
static void
hex16(char *out, uint64_t x)
{
    uint64_t hi = hex8((uint32_t)(x >> 32)), lo = hex8((uint32_t)x);

    memcpy(out, &hi, 8);
    memcpy(out + 8, &lo, 8);
}
#else
/* Write x as 16 hex digits, a byte (two digits) at a time. */
static void
hex16(char *out, uint64_t x)
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 7; i >= 0; i--, x >>= 8) {
        out[2 * i] = hex[(x >> 4) & 15];
        out[2 * i + 1] = hex[x & 15];
    }
}
#endif

static void
new_token(struct mqueues *a, struct mqueue *q, uint32_t slot, char out[40])
{
    uint64_t c = ++q->token_seq;
    uint64_t x = a->token_key[0] + q->token_salt + c * 0x9e3779b97f4a7c15ull;

    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    hex16(out, x);
    hex16(out + 16, ((a->token_key[1] ^ c) & 0xffffffff00000000ull) | slot);
    out[32] = '\0';
}

/* The slot a token names (its last 8 hex digits); 0 when it cannot be
 * one of ours. The rest is checked by comparing the whole token. */
static int
token_slot(const char *t, uint32_t *slot)
{
    uint32_t v = 0;

    if (strnlen(t, 33) != 32)
        return 0;
    for (int i = 24; i < 32; i++) {
        unsigned c = (unsigned char)t[i], d = c - '0';

        if (d > 9) {
            d = c - 'a';
            if (d > 5)
                return 0;
            d += 10;
        }
        v = v << 4 | d;
    }
    *slot = v;
    return 1;
}

int
mq_active_prepare(struct mqueue *q)
{
    uint32_t cap;
    struct mjob **v;
    uint32_t *f;

    if (q->nact_free > 0 || q->act_n < q->act_cap)
        return NV_OK;
    if (q->act_cap >= UINT32_MAX / 2)
        return NV_ENOMEM;
    cap = q->act_cap ? q->act_cap * 2 : 16;
    v = nv__realloc(q->act, cap * sizeof(*v));
    if (v == NULL)
        return NV_ENOMEM;
    q->act = v;
    f = nv__realloc(q->act_free, cap * sizeof(*f));
    if (f == NULL)
        return NV_ENOMEM;       /* act grew: harmless */
    q->act_free = f;
    q->act_cap = cap;
    return NV_OK;
}

void
mq_active_add(struct mqueues *a, struct mqueue *q, struct mjob *m)
{
    uint32_t slot = q->nact_free > 0 ? q->act_free[--q->nact_free]
                                     : q->act_n++;

    q->act[slot] = m;
    m->act_i = slot;
    new_token(a, q, slot, m->j.lease_token);
    m->act_seq = q->token_seq;
    q->nactive++;
}

void
mq_active_del(struct mqueue *q, struct mjob *m)
{
    q->act[m->act_i] = NULL;
    q->act_free[q->nact_free++] = m->act_i;
    q->nactive--;
}

struct mjob *
mq_active_find(const struct mqueue *q, const char *id, const char *token)
{
    struct mjob *m;
    uint32_t slot;

    if (token == NULL || !token_slot(token, &slot) || slot >= q->act_n)
        return NULL;
    m = q->act[slot];
    /* both tokens are 32 digits and a NUL (token_slot, new_token) */
    if (m == NULL || memcmp(m->j.lease_token, token, 33) != 0 ||
        strcmp(m->j.id, id) != 0)
        return NULL;
    return m;
}

/* ---- Groups and the waiting set ---- */

static void
group_key(const char *group, char *buf, size_t size)
{
    if (group == NULL)
        buf[0] = '\0';
    else
        snprintf(buf, size, "=%s", group);
}

void
mq_group_free(struct mqueue *q, struct mgroup *g)
{
    if (g == q->g0)
        q->g0 = NULL;
    HASH_DEL(q->groups, g);
    nv__free(g->waiting.v);
    nv__free(g->win.v);
    nv__free(g->key);
    nv__free(g);
}

static struct mgroup *
group_get(struct mqueue *q, const char *group)
{
    char small[64], *key = small;
    size_t need = group ? strlen(group) + 2 : 1;
    struct mgroup *g = NULL;
    int ok = 0;

    if (group == NULL && q->g0 != NULL)
        return q->g0;
    if (need > sizeof(small) && (key = nv__malloc(need)) == NULL)
        return NULL;
    group_key(group, key, need);
    MEM_HASH_FIND(q->groups, key, g);
    if (g == NULL && (g = nv__calloc(1, sizeof(*g))) != NULL) {
        g->waiting.idx_off = offsetof(struct mjob, heap_i);
        g->waiting.less = waiting_less;
        if ((g->key = nv__strdup(key)) != NULL)
            MEM_HASH_ADD(q->groups, g, key, ok);
        if (g->key == NULL || !ok) {
            nv__free(g->key);
            nv__free(g);
            g = NULL;
        }
    }
    if (key != small)
        nv__free(key);
    if (group == NULL)
        q->g0 = g;
    return g;
}

/*
 * Make room so that m can become waiting without failing: its group
 * exists and both heaps have a free slot. Called before any change.
 */
int
mq_waiting_prepare(struct mqueue *q, struct mjob *m)
{
    struct mgroup *g = group_get(q, m->j.group);

    if (g == NULL || mq_heap_reserve(&g->waiting) != NV_OK ||
        mq_heap_reserve(&q->ready) != NV_OK)
        return NV_ENOMEM;
    m->grp = g;
    return NV_OK;
}

/* m becomes waiting now (after waiting_prepare). */
void
mq_waiting_add(struct mqueue *q, struct mjob *m)
{
    struct mgroup *g = m->grp;
    int was_empty = group_nwaiting(g) == 0;

    m->j.state = NV_JOB_WAITING;
    m->order = m->j.lifo ? --q->lifo_seq : ++q->fifo_seq;
    m->in_fifo = m->j.priority == 0 && !m->j.lifo;
    if (m->in_fifo)
        mq_list_append(&g->fifo, m);
    else
        mq_heap_push(&g->waiting, m);
    if (was_empty)
        mq_heap_push(&q->ready, g);
    else if (group_top(g) == m)
        mq_heap_fix(&q->ready, g->heap_i);
    q->nwaiting++;
}

void
mq_waiting_remove(struct mqueue *q, struct mjob *m)
{
    struct mgroup *g = m->grp;

    if (m->in_fifo)
        mq_list_unlink(&g->fifo, m);
    else
        mq_heap_remove(&g->waiting, m);
    m->in_fifo = 0;
    if (group_nwaiting(g) == 0) {
        mq_heap_remove(&q->ready, g);
        /* Empty groups are kept for reuse (no churn per job) and swept
         * by reap; only a crowd of them is trimmed here. */
        if (g->win.n == 0 && HASH_CNT(hh, q->groups) > MAX_IDLE_GROUPS)
            mq_group_free(q, g);
    } else {
        mq_heap_fix(&q->ready, g->heap_i);
    }
    m->grp = NULL;
    q->nwaiting--;
}

/* Move due delayed jobs to waiting (Q-5: at delay_until, never before). */
int
mq_promote(struct mqueue *q, int64_t now)
{
    struct mjob *m;
    int moved = 0;

    while ((m = heap_top(&q->delayed)) != NULL && m->j.delay_until <= now) {
        if (mq_waiting_prepare(q, m) != NV_OK)
            return NV_ENOMEM;
        mq_heap_remove(&q->delayed, m);
        mq_waiting_add(q, m);
        moved = 1;
    }
    if (moved)
        mq_wake(q, 1);
    return NV_OK;
}

int
mq_delayed_add(struct mqueue *q, struct mjob *m)
{
    if (mq_heap_reserve(&q->delayed) != NV_OK)
        return NV_ENOMEM;
    m->j.state = NV_JOB_DELAYED;
    m->dseq = ++q->delay_seq;
    mq_heap_push(&q->delayed, m);
    return NV_OK;
}

/* ---- Removing records ---- */

void
mq_job_free(struct mqueue *q, struct mjob *m)
{
    mq_jt_del(&q->jt, m);
    /* a reserver still copying it (mq_job_out_finish) frees it */
    if (atomic_fetch_or_explicit(&m->pins, MQ_PIN_GONE,
                                 memory_order_acq_rel) != 0)
        return;
    mq_job_release(m);
    mq_node_discard(q, m);
}

/* Take m out of whatever container holds it. */
void
mq_job_detach(struct mqueue *q, struct mjob *m)
{
    switch (m->j.state) {
    case NV_JOB_WAITING:
        mq_waiting_remove(q, m);
        break;
    case NV_JOB_DELAYED:
        mq_heap_remove(&q->delayed, m);
        break;
    case NV_JOB_ACTIVE:
        mq_active_del(q, m);
        break;
    case NV_JOB_COMPLETED:
        mq_list_unlink(&q->completed, m);
        break;
    case NV_JOB_FAILED:
        mq_list_unlink(&q->failed, m);
        break;
    }
}

/*
 * m has just finished (completed or failed, detached): file it, then apply
 * its retention. Returns 1 when m itself was removed.
 */
int
mq_finished_add(struct mqueue *q, struct mjob *m)
{
    int done = m->j.state == NV_JOB_COMPLETED;
    struct jlist *l = done ? &q->completed : &q->failed;
    int64_t keep = done ? m->j.remove_on_complete : m->j.remove_on_fail;
    int gone = 0;

    if (keep == 0) {
        mq_job_free(q, m);
        return 1;
    }
    list_insert_finished(l, m);
    while (keep > 0 && l->n > keep) {
        struct mjob *old = l->head;

        gone |= old == m;
        mq_list_unlink(l, old);
        mq_job_free(q, old);
    }
    return gone;
}