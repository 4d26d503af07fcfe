/*
 * Memory queue adapter: jobs, leases, pause flags and limiter windows in
 * process memory (nv_queue_ops of include/nvent/adapter.h). One mutex per
 * queue; every state change moves a job between intrusive containers of
 * its queue (heaps, lists), so reserve and finish are O(log n).
 * NEEDSWORK: past STYLE's ~1000 lines; split the heap/window helpers and
 * the read-only ops (get, list, counts) out behind a private header.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/*
 * Job ids are hashed at every enqueue and leased operation: a word at a
 * time instead of uthash's default byte-wise Jenkins hash. Only the
 * hash changes; uthash iterates in insertion order either way.
 */
static inline uint64_t
mq_hash(const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n, v;

    while (n >= 8) {
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}
#define HASH_FUNCTION(keyptr, keylen, hashv) \
    ((hashv) = (unsigned)mq_hash((keyptr), (size_t)(keylen)))

#include "adapters/memory/mem.h"

#define MAX_IDLE_GROUPS 256
/* How long an idle worker of a busy queue watches for work before it
 * sleeps (mem_wait). */
#define MEM_SPIN_NS 5000
/* Job nodes whose data, opts and group fit NODE_INLINE bytes are of one
 * size and reused through a per-queue pool of up to NODE_POOL nodes: a
 * stream of jobs then costs no malloc/free of the (large) node. */
#define NODE_INLINE 512
#define NODE_POOL 64
#define STALLED_REASON "job stalled more than allowable limit"

/* ---- Binary heaps with the element's position stored in the element ---- */

typedef int (*heap_less_fn)(const void *a, const void *b);

struct heap {
    void       **v;
    size_t       n, cap;
    size_t       idx_off;       /* offset of the element's size_t position */
    heap_less_fn less;
};

static void
heap_set(struct heap *h, size_t i, void *e)
{
    h->v[i] = e;
    *(size_t *)((char *)e + h->idx_off) = i;
}

static void
heap_fix(struct heap *h, size_t i)
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
static int
heap_reserve(struct heap *h)
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
static void
heap_push(struct heap *h, void *e)
{
    heap_set(h, h->n++, e);
    heap_fix(h, h->n - 1);
}

static void
heap_remove(struct heap *h, void *e)
{
    size_t i = *(size_t *)((char *)e + h->idx_off);

    h->n--;
    if (i != h->n) {
        heap_set(h, i, h->v[h->n]);
        heap_fix(h, i);
    }
}

static void *
heap_top(const struct heap *h)
{
    return h->n > 0 ? h->v[0] : NULL;
}

/* ---- Data ---- */

/* Limiter window: start times of the latest activations, oldest first. */
struct window {
    int64_t *v;
    size_t   head, n, cap;
};

struct mgroup;

/*
 * A job and its links. Its container follows j.state: waiting -> the heap
 * of its group; delayed -> the queue's delayed heap; active, completed,
 * failed -> the list of that state (completed and failed sorted by
 * finished_on, oldest first).
 */
struct mjob {
    nv_job         j;           /* j.state is never NV_JOB_PAUSED here */
    size_t         heap_i;      /* position in the waiting or delayed heap */
    int64_t        order;       /* waiting: fifo > 0 ascending, lifo < 0 */
    int64_t        dseq;        /* delayed: tie-break of equal delay_until */
    struct mgroup *grp;         /* waiting: its group */
    struct mjob   *prev, *next; /* active / completed / failed list */
    int            pooled;      /* block of NODE_INLINE: reusable (q->pool) */
    int            in_fifo;     /* waiting: in grp->fifo, not grp->waiting */
};

struct jlist {
    struct mjob *head, *tail;
    int64_t      n;
};

/*
 * Jobs by id: open addressing with linear probing over (hash, node)
 * slots, so a lookup reads one array line, not a chain of nodes (cache
 * misses with a large backlog). Deleted slots are tombstones until the
 * next rehash; at most 3/4 of the slots are used (live or tombstone).
 */
struct jslot {
    uint64_t     h;
    struct mjob *m;             /* NULL: empty; JT_TOMB: deleted */
};

struct jtab {
    struct jslot *v;
    size_t        cap, n, used; /* used: live + tombstones */
};

static char jt_tomb_;
#define JT_TOMB ((struct mjob *)&jt_tomb_)

static uint64_t
id_hash(const char *id)
{
    return mq_hash(id, strlen(id));
}

static struct mjob *
jt_find(const struct jtab *t, const char *id)
{
    uint64_t h;

    if (t->n == 0)
        return NULL;
    h = id_hash(id);
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const struct jslot *s = &t->v[i];

        if (s->m == NULL)
            return NULL;
        if (s->m != JT_TOMB && s->h == h && strcmp(s->m->j.id, id) == 0)
            return s->m;
    }
}

static int
jt_rehash(struct jtab *t, size_t cap)
{
    struct jslot *v = nv__calloc(cap, sizeof(*v));

    if (v == NULL)
        return NV_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        size_t k;

        if (t->v[i].m == NULL || t->v[i].m == JT_TOMB)
            continue;
        k = t->v[i].h & (cap - 1);
        while (v[k].m != NULL)
            k = (k + 1) & (cap - 1);
        v[k] = t->v[i];
    }
    nv__free(t->v);
    t->v = v;
    t->cap = cap;
    t->used = t->n;
    return NV_OK;
}

/* Add m, whose id is not in t; 0 when out of memory (t unchanged). */
static int
jt_add(struct jtab *t, struct mjob *m)
{
    uint64_t h = id_hash(m->j.id);
    size_t k;

    if ((t->used + 1) * 4 > t->cap * 3) {
        size_t cap = 16;

        while ((t->n + 1) * 2 > cap)
            cap *= 2;
        if (jt_rehash(t, cap) != NV_OK)
            return 0;
    }
    k = h & (t->cap - 1);
    while (t->v[k].m != NULL && t->v[k].m != JT_TOMB)
        k = (k + 1) & (t->cap - 1);
    if (t->v[k].m == NULL)
        t->used++;
    t->v[k].h = h;
    t->v[k].m = m;
    t->n++;
    return 1;
}

static void
jt_del(struct jtab *t, struct mjob *m)
{
    uint64_t h = id_hash(m->j.id);

    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (t->v[i].m == m) {
            /* before an empty slot no probe continues: empty it too */
            if (t->v[(i + 1) & (t->cap - 1)].m == NULL) {
                t->v[i].m = NULL;
                t->used--;
            } else {
                t->v[i].m = JT_TOMB;
            }
            t->n--;
            return;
        }
        if (t->v[i].m == NULL)
            return;             /* not in t */
    }
}

/* Waiting jobs of one limiter group (j.group; NULL is the group ""). */
struct mgroup {
    char          *key;         /* "" for NULL, else "=" + value */
    struct heap    waiting;     /* by (priority, order) */
    struct jlist   fifo;        /* waiting priority-0 fifo jobs, in order:
                                 * their order only grows, so the list is
                                 * sorted without a heap (the common case) */
    size_t         heap_i;      /* position in queue->groups */
    struct window  win;
    UT_hash_handle hh;
};

/* Everything below 'mu' is guarded by it. */
struct mqueue {
    char            name[NV_NAME_MAX + 1];
    pthread_mutex_t mu;
    pthread_cond_t  cv;         /* 'gen' changed */
    /* gen and idle_gen are written under mu, read without it by the
     * brief spin of mem_wait */
    _Atomic uint64_t gen;       /* grows when a job may have become runnable */
    _Atomic uint64_t idle_gen;  /* gen at the last reserve that found nothing */
    int             waiters;

    struct jtab     jt;         /* every job by id */
    struct mgroup  *groups;     /* by key */
    struct heap     ready;      /* non-empty groups by their first job */
    struct heap     delayed;    /* by (delay_until, dseq) */
    struct jlist    active, completed, failed;
    int64_t         nwaiting;
    int64_t         fifo_seq, lifo_seq, delay_seq;
    int             paused;
    struct window   win;        /* ungrouped limiter window */
    int64_t         lim_duration;   /* last limiter duration seen */
    struct mgroup **scratch;    /* saturated groups set aside by reserve */
    size_t          nscratch;
    struct mjob    *pool;       /* freed nodes for reuse, linked by next */
    int             npool;
};

/*
 * Queues by name, read without a lock: an open-addressing table whose
 * slots are only ever filled (queues live until close). Creation takes
 * 'qmu', fills a slot or publishes a bigger copy; replaced tables are
 * kept in 'retired' until close, since readers may still hold them.
 */
struct qtable {
    size_t                  cap;        /* power of two, at most half full */
    struct qtable          *retired;    /* older table, freed at close */
    _Atomic(struct mqueue *) slot[];
};

struct mqueues {
    pthread_mutex_t         qmu;        /* serializes queue creation */
    _Atomic(struct qtable *) table;
    size_t                  nqueues;    /* guarded by qmu */
    uint64_t         token_key[2];
    _Atomic uint64_t token_ctr;
};

/* ---- Small helpers ---- */

static int
oom(nv_error *err)
{
    return nv__error(err, NV_ENOMEM, "memory queue: out of memory");
}

static int
waiting_less(const void *a, const void *b)
{
    const struct mjob *x = a, *y = b;

    if (x->j.priority != y->j.priority)
        return x->j.priority < y->j.priority;
    return x->order < y->order;
}

static int
delayed_less(const void *a, const void *b)
{
    const struct mjob *x = a, *y = b;

    if (x->j.delay_until != y->j.delay_until)
        return x->j.delay_until < y->j.delay_until;
    return x->dseq < y->dseq;
}

/* The first waiting job of g: the first of its heap and of its fifo. */
static struct mjob *
group_top(const struct mgroup *g)
{
    struct mjob *h = heap_top(&g->waiting), *f = g->fifo.head;

    if (h == NULL)
        return f;
    if (f == NULL)
        return h;
    return waiting_less(f, h) ? f : h;
}

static size_t
group_nwaiting(const struct mgroup *g)
{
    return g->waiting.n + (size_t)g->fifo.n;
}

static int
group_less(const void *a, const void *b)
{
    return waiting_less(group_top(a), group_top(b));
}

static void
list_append(struct jlist *l, struct mjob *m)
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

static void
list_unlink(struct jlist *l, struct mjob *m)
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

static int
win_push(struct window *w, int64_t t)
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
static void
win_prune(struct window *w, int64_t now, int64_t duration)
{
    while (w->n > 0 && w->v[w->head] <= now - duration) {
        w->head = (w->head + 1) % w->cap;
        w->n--;
    }
}

static int64_t
win_oldest(const struct window *w)
{
    return w->v[w->head];
}

/* The reported state (Q-13: waiting in a paused queue is paused). */
static int
reported_state(const struct mqueue *q, const struct mjob *m)
{
    if (m->j.state == NV_JOB_WAITING && q->paused)
        return NV_JOB_PAUSED;
    return m->j.state;
}

/*
 * Buffers allocated before taking q->mu, so that the copy of a reserved
 * job's data and opts (job_out) needs no malloc inside the critical
 * section; sized from what this thread saw last.
 */
struct outbufs {
    char  *p[2];
    size_t cap[2];
};

static _Thread_local size_t outbuf_hint[2] = { 16, 256 };

static void
outbufs_init(struct outbufs *b)
{
    for (int i = 0; i < 2; i++) {
        b->cap[i] = outbuf_hint[i];
        b->p[i] = nv__malloc(b->cap[i]);
        if (b->p[i] == NULL)
            b->cap[i] = 0;
    }
}

static void
outbufs_release(struct outbufs *b)
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
    const nv_job *j = &m->j;
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
    memcpy(out, j, sizeof(*out));
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

static int
job_out(const struct mqueue *q, const struct mjob *m, nv_job *out)
{
    return job_out_buf(q, m, out, NULL);
}

/* Free a job node: the strings that change live apart, data, opts and
 * group inside the node's block (job_new). */
static void
job_destroy(struct mjob *m)
{
    nv__free(m->j.progress_data);
    nv__free(m->j.returnvalue);
    nv__free(m->j.failed_reason);
    nv__free(m->j.logs);
    nv__free(m);
}

/* Drop node m of q: into the pool when it is reusable and the pool has
 * room, else freed. Under q->mu. */
static void
job_recycle(struct mqueue *q, struct mjob *m)
{
    if (!m->pooled || q->npool >= NODE_POOL) {
        job_destroy(m);
        return;
    }
    nv__free(m->j.progress_data);
    nv__free(m->j.returnvalue);
    nv__free(m->j.failed_reason);
    nv__free(m->j.logs);
    m->next = q->pool;
    q->pool = m;
    q->npool++;
}

/* A node of 'size' bytes: reused from q's pool for a standard node. */
static struct mjob *
node_alloc(struct mqueue *q, size_t size)
{
    struct mjob *m = NULL;

    if (size <= sizeof(*m) + NODE_INLINE) {
        pthread_mutex_lock(&q->mu);
        if ((m = q->pool) != NULL) {
            q->pool = m->next;
            q->npool--;
        }
        pthread_mutex_unlock(&q->mu);
        if (m == NULL)
            m = nv__malloc(sizeof(*m) + NODE_INLINE);
        if (m != NULL)
            m->pooled = 1;
        return m;
    }
    m = nv__malloc(size);
    if (m != NULL)
        m->pooled = 0;
    return m;
}

/* A node for a copy of 'src' in one allocation with its data (never NULL:
 * "{}"), opts and group, which never change. */
static struct mjob *
job_new(struct mqueue *q, const nv_job *src)
{
    const char *data = src->data ? src->data : "{}";
    size_t ld = strlen(data) + 1;
    size_t lo = src->opts ? strlen(src->opts) + 1 : 0;
    size_t lg = src->group ? strlen(src->group) + 1 : 0;
    const char *rest[4] = { src->progress_data, src->returnvalue,
                            src->failed_reason, src->logs };
    char **dst[4];
    struct mjob *m = node_alloc(q, sizeof(*m) + ld + lo + lg);
    char *p;
    int pooled;

    if (m == NULL)
        return NULL;
    pooled = m->pooled;
    memset(&m->heap_i, 0, sizeof(*m) - offsetof(struct mjob, heap_i));
    m->pooled = pooled;
    m->j = *src;
    p = (char *)(m + 1);
    m->j.data = memcpy(p, data, ld);
    p += ld;
    m->j.opts = lo ? memcpy(p, src->opts, lo) : NULL;
    p += lo;
    m->j.group = lg ? memcpy(p, src->group, lg) : NULL;
    dst[0] = &m->j.progress_data;
    dst[1] = &m->j.returnvalue;
    dst[2] = &m->j.failed_reason;
    dst[3] = &m->j.logs;
    for (int i = 0; i < 4; i++)
        *dst[i] = NULL;
    for (int i = 0; i < 4; i++) {
        if (rest[i] != NULL && (*dst[i] = nv__strdup(rest[i])) == NULL) {
            job_destroy(m);
            return NULL;
        }
    }
    return m;
}

/* Wake waiters of q: one (a single job) or all. Under q->mu. */
static void
wake(struct mqueue *q, int all)
{
    atomic_store_explicit(&q->gen, atomic_load_explicit(&q->gen,
                          memory_order_relaxed) + 1, memory_order_release);
    if (q->waiters == 0)
        return;
    if (all)
        pthread_cond_broadcast(&q->cv);
    else
        pthread_cond_signal(&q->cv);
}

static void
new_token(struct mqueues *a, char out[40])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t c = atomic_fetch_add(&a->token_ctr, 1) + 1;
    /* splitmix64 of a random key plus a counter: unique per reservation
     * and unguessable enough for a lease (not a secret) */
    uint64_t x = a->token_key[0] + c * 0x9e3779b97f4a7c15ull, y;

    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    y = a->token_key[1] ^ c;
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(x >> (60 - 4 * i)) & 15];
        out[16 + i] = hex[(y >> (60 - 4 * i)) & 15];
    }
    out[32] = '\0';
}

/* ---- Queues ---- */

static struct mqueue *
queue_new(const char *name)
{
    struct mqueue *q = nv__calloc(1, sizeof(*q));
    pthread_condattr_t ca;
    pthread_mutexattr_t ma;

    if (q == NULL)
        return NULL;
    nv__strlcpy(q->name, name, sizeof(q->name));
    /* The producer and the workers take q->mu for short sections, many
     * times per job: spin a little on contention rather than sleep on a
     * futex at once (a sleep and a wake-up syscall per collision). */
    pthread_mutexattr_init(&ma);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    pthread_mutex_init(&q->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    q->ready.idx_off = offsetof(struct mgroup, heap_i);
    q->ready.less = group_less;
    q->delayed.idx_off = offsetof(struct mjob, heap_i);
    q->delayed.less = delayed_less;
    return q;
}

static uint64_t
name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    while (*s != '\0')
        h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
    return h;
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
static struct mqueue *
queue_get(struct mqueues *a, const char *name, int create)
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
        pthread_cond_destroy(&q->cv);
        nv__free(q);
        q = NULL;
    }
    pthread_mutex_unlock(&a->qmu);
    return q;
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

static void
group_free(struct mqueue *q, struct mgroup *g)
{
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
    return g;
}

/*
 * Make room so that m can become waiting without failing: its group
 * exists and both heaps have a free slot. Called before any change.
 */
static int
waiting_prepare(struct mqueue *q, struct mjob *m)
{
    struct mgroup *g = group_get(q, m->j.group);

    if (g == NULL || heap_reserve(&g->waiting) != NV_OK ||
        heap_reserve(&q->ready) != NV_OK)
        return NV_ENOMEM;
    m->grp = g;
    return NV_OK;
}

/* m becomes waiting now (after waiting_prepare). */
static void
waiting_add(struct mqueue *q, struct mjob *m)
{
    struct mgroup *g = m->grp;
    int was_empty = group_nwaiting(g) == 0;

    m->j.state = NV_JOB_WAITING;
    m->order = m->j.lifo ? --q->lifo_seq : ++q->fifo_seq;
    m->in_fifo = m->j.priority == 0 && !m->j.lifo;
    if (m->in_fifo)
        list_append(&g->fifo, m);
    else
        heap_push(&g->waiting, m);
    if (was_empty)
        heap_push(&q->ready, g);
    else if (group_top(g) == m)
        heap_fix(&q->ready, g->heap_i);
    q->nwaiting++;
}

static void
waiting_remove(struct mqueue *q, struct mjob *m)
{
    struct mgroup *g = m->grp;

    if (m->in_fifo)
        list_unlink(&g->fifo, m);
    else
        heap_remove(&g->waiting, m);
    m->in_fifo = 0;
    if (group_nwaiting(g) == 0) {
        heap_remove(&q->ready, g);
        /* Empty groups are kept for reuse (no churn per job) and swept
         * by reap; only a crowd of them is trimmed here. */
        if (g->win.n == 0 && HASH_CNT(hh, q->groups) > MAX_IDLE_GROUPS)
            group_free(q, g);
    } else {
        heap_fix(&q->ready, g->heap_i);
    }
    m->grp = NULL;
    q->nwaiting--;
}

/* Move due delayed jobs to waiting (Q-5: at delay_until, never before). */
static int
promote(struct mqueue *q, int64_t now)
{
    struct mjob *m;
    int moved = 0;

    while ((m = heap_top(&q->delayed)) != NULL && m->j.delay_until <= now) {
        if (waiting_prepare(q, m) != NV_OK)
            return NV_ENOMEM;
        heap_remove(&q->delayed, m);
        waiting_add(q, m);
        moved = 1;
    }
    if (moved)
        wake(q, 1);
    return NV_OK;
}

static int
delayed_add(struct mqueue *q, struct mjob *m)
{
    if (heap_reserve(&q->delayed) != NV_OK)
        return NV_ENOMEM;
    m->j.state = NV_JOB_DELAYED;
    m->dseq = ++q->delay_seq;
    heap_push(&q->delayed, m);
    return NV_OK;
}

/* ---- Removing records ---- */

static void
job_free(struct mqueue *q, struct mjob *m)
{
    jt_del(&q->jt, m);
    job_recycle(q, m);
}

/* Take m out of whatever container holds it. */
static void
job_detach(struct mqueue *q, struct mjob *m)
{
    switch (m->j.state) {
    case NV_JOB_WAITING:
        waiting_remove(q, m);
        break;
    case NV_JOB_DELAYED:
        heap_remove(&q->delayed, m);
        break;
    case NV_JOB_ACTIVE:
        list_unlink(&q->active, m);
        break;
    case NV_JOB_COMPLETED:
        list_unlink(&q->completed, m);
        break;
    case NV_JOB_FAILED:
        list_unlink(&q->failed, m);
        break;
    }
}

/*
 * m has just finished (completed or failed, detached): file it, then apply
 * its retention. Returns 1 when m itself was removed.
 */
static int
finished_add(struct mqueue *q, struct mjob *m)
{
    int done = m->j.state == NV_JOB_COMPLETED;
    struct jlist *l = done ? &q->completed : &q->failed;
    int64_t keep = done ? m->j.remove_on_complete : m->j.remove_on_fail;
    int gone = 0;

    if (keep == 0) {
        job_free(q, m);
        return 1;
    }
    list_insert_finished(l, m);
    while (keep > 0 && l->n > keep) {
        struct mjob *old = l->head;

        gone |= old == m;
        list_unlink(l, old);
        job_free(q, old);
    }
    return gone;
}

/* ---- Enqueue ---- */

/* File a new job (not yet in q->jobs): delayed or waiting. On failure
 * nothing changed and m is freed. */
static int
store_new(struct mqueue *q, struct mjob *m, int64_t now)
{
    int delayed = m->j.delay_until > now, ok = 0;
    int rc = delayed ? delayed_add(q, m) : waiting_prepare(q, m);

    if (rc == NV_OK)
        ok = jt_add(&q->jt, m);
    if (rc == NV_OK && !ok) {
        if (delayed)
            heap_remove(&q->delayed, m);
        rc = NV_ENOMEM;
    }
    if (rc != NV_OK) {
        if (m->grp != NULL && group_nwaiting(m->grp) == 0 &&
            m->grp->win.n == 0)
            group_free(q, m->grp);
        job_destroy(m);
        return rc;
    }
    if (!delayed) {
        waiting_add(q, m);
        wake(q, 0);
    }
    return NV_OK;
}

static int
mem_enqueue(void *self, const nv_job *job, int64_t now,
            int64_t max_unfinished, nv_job *out, int *created, nv_error *err)
{
    struct mqueues *a = self;
    struct mqueue *q;
    struct mjob *m, *old;
    int rc = NV_OK;

    if ((q = queue_get(a, job->queue, 1)) == NULL)
        return oom(err);
    if ((m = job_new(q, job)) == NULL)
        return oom(err);
    if (m->j.id[0] == '\0')
        nv__job_id(now, m->j.id);
    nv__strlcpy(m->j.queue, q->name, sizeof(m->j.queue));
    if (m->j.timestamp == 0)
        m->j.timestamp = now;
    m->j.lease_token[0] = '\0';
    m->j.lease_until = 0;

    pthread_mutex_lock(&q->mu);
    old = jt_find(&q->jt, m->j.id);
    if (old != NULL) {
        /* the existing job, untouched */
        if (out != NULL && job_out(q, old, out) != NV_OK)
            rc = oom(err);
        else if (created != NULL)
            *created = 0;
        pthread_mutex_unlock(&q->mu);
        job_destroy(m);
        return rc;
    }
    if (max_unfinished > 0 &&
        q->nwaiting + (int64_t)q->delayed.n + q->active.n >= max_unfinished) {
        pthread_mutex_unlock(&q->mu);
        job_destroy(m);
        return nv__error(err, NV_EQUEUE_FULL, "queue '%s' is full (%" PRId64
                         " unfinished jobs)", job->queue, max_unfinished);
    }
    rc = store_new(q, m, now);
    if (rc == NV_OK && out != NULL && job_out(q, m, out) != NV_OK) {
        job_detach(q, m);       /* all or nothing */
        job_free(q, m);
        rc = NV_ENOMEM;
    }
    pthread_mutex_unlock(&q->mu);
    if (rc != NV_OK)
        return oom(err);
    if (created != NULL)
        *created = 1;
    return NV_OK;
}

/* ---- Reserving (W-2, Q-4, Q-12, Q-13) ---- */

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
        win_prune(&q->win, now, lim->duration_ms);
        if (q->win.n < (size_t)lim->max)
            return heap_top(&q->ready);
        *next_at = win_oldest(&q->win) + lim->duration_ms;
        return NULL;
    }
    /* a saturated group does not hold back the others; set such
     * groups aside and put them back afterwards. */
    while ((g = heap_top(&q->ready)) != NULL) {
        win_prune(&g->win, now, lim->duration_ms);
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
        heap_remove(&q->ready, g);
        q->scratch[aside++] = g;
    }
    for (size_t i = 0; i < aside; i++)
        heap_push(&q->ready, q->scratch[i]);   /* slots were freed above */
    return g;
}

static int
mem_reserve(void *self, const char *queue, int64_t now, int64_t lease_ms,
            const nv_limiter *lim, nv_job *out, int64_t *next_at,
            nv_error *err)
{
    struct mqueues *a = self;
    struct mqueue *q = queue_get(a, queue, 0);
    struct mgroup *g = NULL;
    struct mjob *m;
    int64_t next = 0;
    struct window *w = NULL;
    struct outbufs b;

    if (q == NULL) {
        if (next_at != NULL)
            *next_at = 0;
        return nv__error(err, NV_ENOTFOUND, "no runnable job in '%s'", queue);
    }
    outbufs_init(&b);
    pthread_mutex_lock(&q->mu);
    if (promote(q, now) != NV_OK) {
        pthread_mutex_unlock(&q->mu);
        outbufs_release(&b);
        return oom(err);
    }
    if (!q->paused)
        g = pick_group(q, now, lim, &next);
    if (g == NULL) {
        atomic_store_explicit(&q->idle_gen, atomic_load_explicit(&q->gen,
                              memory_order_relaxed), memory_order_relaxed);
        if (!q->paused && q->delayed.n > 0)
            next = min_next(next, ((struct mjob *)heap_top(&q->delayed))->j.delay_until);
        pthread_mutex_unlock(&q->mu);
        outbufs_release(&b);
        if (next_at != NULL)
            *next_at = q->paused ? 0 : next;
        return nv__error(err, NV_ENOTFOUND, "no runnable job in '%s'", queue);
    }
    if (lim != NULL && lim->max > 0) {
        w = lim->grouped ? &g->win : &q->win;
        if (win_push(w, now) != NV_OK) {
            pthread_mutex_unlock(&q->mu);
            outbufs_release(&b);
            return oom(err);
        }
    }
    m = group_top(g);
    waiting_remove(q, m);      /* may free g: not used below */
    m->j.state = NV_JOB_ACTIVE;
    m->j.processed_on = now;
    m->j.finished_on = 0;
    m->j.lease_until = now + lease_ms;
    new_token(a, m->j.lease_token);
    list_append(&q->active, m);
    if (job_out_buf(q, m, out, &b) != NV_OK) {
        /* hand the job back as if never reserved */
        list_unlink(&q->active, m);
        m->j.lease_token[0] = '\0';
        m->j.lease_until = 0;
        if (waiting_prepare(q, m) == NV_OK)
            waiting_add(q, m);
        if (w != NULL && w->n > 0)
            w->n--;
        pthread_mutex_unlock(&q->mu);
        outbufs_release(&b);
        return oom(err);
    }
    pthread_mutex_unlock(&q->mu);
    outbufs_release(&b);
    return NV_OK;
}

/* ---- Leased operations ---- */

/* The active job 'id' held with 'token', or NULL (NV_ELEASE). Under mu. */
static struct mjob *
leased(struct mqueue *q, const char *id, const char *token)
{
    struct mjob *m;

    m = jt_find(&q->jt, id);
    if (m == NULL || m->j.state != NV_JOB_ACTIVE || token == NULL ||
        strcmp(m->j.lease_token, token) != 0)
        return NULL;
    return m;
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
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m;

    if (q == NULL)
        return lease_lost(err, queue, id);
    pthread_mutex_lock(&q->mu);
    if ((m = leased(q, id, token)) != NULL)
        m->j.lease_until = until;
    pthread_mutex_unlock(&q->mu);
    return m != NULL ? NV_OK : lease_lost(err, queue, id);
}

static int
mem_finish(void *self, const char *queue, const char *id, const char *token,
           const nv_finish *f, int64_t now, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m;
    char *text = NULL;
    int rc = NV_OK;

    if (q == NULL)
        return lease_lost(err, queue, id);
    switch (f->kind) {
    case NV_FINISH_COMPLETE:
        /* copied below, only when the completed job is kept */
        break;
    case NV_FINISH_RETRY:
    case NV_FINISH_FAIL:
        text = nv__strdup(f->failed_reason ? f->failed_reason : "");
        break;
    case NV_FINISH_RELEASE:
        text = nv__strdup("");
        break;
    default:
        return nv__error(err, NV_EINVAL, "unknown finish kind %d", f->kind);
    }
    if (text == NULL && f->kind != NV_FINISH_COMPLETE)
        return oom(err);
    pthread_mutex_lock(&q->mu);
    if ((m = leased(q, id, token)) == NULL) {
        rc = lease_lost(err, queue, id);
        goto out;
    }
    if (f->kind == NV_FINISH_COMPLETE && m->j.remove_on_complete != 0 &&
        (text = nv__strdup(f->returnvalue ? f->returnvalue
                                          : "null")) == NULL) {
        rc = oom(err);
        goto out;
    }
    if ((f->kind == NV_FINISH_RELEASE ||
         (f->kind == NV_FINISH_RETRY && f->retry_at <= now)) &&
        waiting_prepare(q, m) != NV_OK) {
        rc = oom(err);
        goto out;
    }
    if (f->kind == NV_FINISH_RETRY && f->retry_at > now &&
        heap_reserve(&q->delayed) != NV_OK) {
        rc = oom(err);
        goto out;
    }
    list_unlink(&q->active, m);
    m->j.lease_token[0] = '\0';
    m->j.lease_until = 0;
    if (f->kind != NV_FINISH_RELEASE)
        m->j.attempts_made++;
    switch (f->kind) {
    case NV_FINISH_COMPLETE:
        nv__free(m->j.returnvalue);
        m->j.returnvalue = text;
        m->j.finished_on = now;
        m->j.state = NV_JOB_COMPLETED;
        finished_add(q, m);
        break;
    case NV_FINISH_FAIL:
        nv__free(m->j.failed_reason);
        m->j.failed_reason = text;
        m->j.finished_on = now;
        m->j.state = NV_JOB_FAILED;
        finished_add(q, m);
        break;
    case NV_FINISH_RETRY:
        nv__free(m->j.failed_reason);
        m->j.failed_reason = text;
        if (f->retry_at > now) {
            m->j.delay_until = f->retry_at;
            delayed_add(q, m);      /* room reserved above */
        } else {
            waiting_add(q, m);
            wake(q, 0);
        }
        break;
    case NV_FINISH_RELEASE:
        nv__free(text);
        waiting_add(q, m);
        wake(q, 0);
        break;
    }
    text = NULL;
out:
    pthread_mutex_unlock(&q->mu);
    nv__free(text);
    return rc;
}

static int
mem_progress(void *self, const char *queue, const char *id, const char *token,
             double progress, const char *data, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m;
    char *d = NULL;
    int rc = NV_OK;

    if (q == NULL)
        return lease_lost(err, queue, id);
    if (data != NULL && (d = nv__strdup(data)) == NULL)
        return oom(err);
    pthread_mutex_lock(&q->mu);
    if ((m = leased(q, id, token)) == NULL) {
        rc = lease_lost(err, queue, id);
    } else {
        m->j.progress = progress;
        nv__free(m->j.progress_data);
        m->j.progress_data = d;
        d = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    nv__free(d);
    return rc;
}

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
    char *txt, *out;

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
    txt = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    out = nv__strdup(txt);
    free(txt);
    return out;
}

static int
mem_log(void *self, const char *queue, const char *id, const char *entry_json,
        int keep, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    json_t *entry = json_loads(entry_json, 0, NULL);
    struct mjob *m = NULL;
    char *logs;
    int rc = NV_OK;

    if (entry == NULL)
        return nv__error(err, NV_EINVAL, "log entry is not valid JSON");
    if (q != NULL) {
        pthread_mutex_lock(&q->mu);
        m = jt_find(&q->jt, id);
        if (m != NULL) {
            if ((logs = logs_append(m->j.logs, entry, keep)) == NULL) {
                rc = oom(err);
            } else {
                nv__free(m->j.logs);
                m->j.logs = logs;
            }
        }
        pthread_mutex_unlock(&q->mu);
    }
    json_decref(entry);
    if (m == NULL)
        return job_missing(err, queue, id);
    return rc;
}

/* ---- Reading ---- */

static int
mem_get(void *self, const char *queue, const char *id, nv_job *out,
        nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m = NULL;
    int rc = NV_OK;

    if (q == NULL)
        return job_missing(err, queue, id);
    pthread_mutex_lock(&q->mu);
    m = jt_find(&q->jt, id);
    if (m != NULL && job_out(q, m, out) != NV_OK)
        rc = oom(err);
    pthread_mutex_unlock(&q->mu);
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

static int
mem_list(void *self, const char *queue, unsigned mask, int64_t offset,
         int64_t limit, nv_job **out, size_t *n, int64_t *total,
         nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m, **sel = NULL;
    nv_job *v = NULL;
    size_t cnt = 0, take = 0;
    int rc = NV_OK;

    if (offset < 0)
        offset = 0;
    if (q != NULL) {
        pthread_mutex_lock(&q->mu);
        sel = nv__malloc((q->jt.n + 1) * sizeof(*sel));
        if (sel == NULL)
            rc = NV_ENOMEM;
        for (size_t i = 0; sel != NULL && i < q->jt.cap; i++) {
            m = q->jt.v[i].m;
            if (m != NULL && m != JT_TOMB &&
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
            if (job_out(q, sel[(size_t)offset + i], &v[i]) != NV_OK) {
                nv_job_array_free(v, i);
                v = NULL;
                rc = NV_ENOMEM;
            }
        }
        pthread_mutex_unlock(&q->mu);
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

static int
mem_counts(void *self, const char *queue, nv_job_counts *out, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);

    (void)err;
    memset(out, 0, sizeof(*out));
    if (q == NULL)
        return NV_OK;
    pthread_mutex_lock(&q->mu);
    if (q->paused)
        out->paused = q->nwaiting;
    else
        out->waiting = q->nwaiting;
    out->delayed = (int64_t)q->delayed.n;
    out->active = q->active.n;
    out->completed = q->completed.n;
    out->failed = q->failed.n;
    pthread_mutex_unlock(&q->mu);
    return NV_OK;
}

/* ---- Pause, remove, retry ---- */

static int
mem_set_paused(void *self, const char *queue, int paused, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 1);

    if (q == NULL)
        return oom(err);
    pthread_mutex_lock(&q->mu);
    q->paused = paused != 0;
    if (!q->paused)
        wake(q, 1);
    pthread_mutex_unlock(&q->mu);
    return NV_OK;
}

static int
mem_is_paused(void *self, const char *queue, int *paused, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);

    (void)err;
    *paused = 0;
    if (q != NULL) {
        pthread_mutex_lock(&q->mu);
        *paused = q->paused;
        pthread_mutex_unlock(&q->mu);
    }
    return NV_OK;
}

static int
mem_remove(void *self, const char *queue, const char *id, nv_job *out,
           nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m = NULL;
    int rc = NV_OK;

    if (q == NULL)
        return job_missing(err, queue, id);
    pthread_mutex_lock(&q->mu);
    m = jt_find(&q->jt, id);
    if (m == NULL) {
        rc = job_missing(err, queue, id);
    } else if (m->j.state == NV_JOB_ACTIVE) {
        rc = nv__error(err, NV_EJOB_ACTIVE, "job '%s' in '%s' is active", id,
                       queue);
    } else if (out != NULL && job_out(q, m, out) != NV_OK) {
        rc = oom(err);
    } else {
        job_detach(q, m);
        job_free(q, m);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

static int
mem_retry(void *self, const char *queue, const char *id, int64_t now,
          nv_job *out, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m = NULL;
    int rc = NV_OK;

    (void)now;
    if (q == NULL)
        return job_missing(err, queue, id);
    pthread_mutex_lock(&q->mu);
    m = jt_find(&q->jt, id);
    if (m == NULL) {
        rc = job_missing(err, queue, id);
    } else if (m->j.state != NV_JOB_FAILED) {
        rc = nv__error(err, NV_EJOB_NOT_FAILED, "job '%s' in '%s' is not "
                       "failed", id, queue);
    } else if (waiting_prepare(q, m) != NV_OK) {
        rc = oom(err);
    } else {
        list_unlink(&q->failed, m);
        waiting_add(q, m);
        wake(q, 1);
        if (out != NULL && job_out(q, m, out) != NV_OK)
            rc = oom(err);     /* the retry happened; only the copy failed */
    }
    pthread_mutex_unlock(&q->mu);
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
        win_prune(&g->win, now, q->lim_duration);
        if (g->win.n == 0)
            group_free(q, g);
    }
}

static int
mem_reap(void *self, const char *queue, int64_t now, int max_stalled,
         nv_reaped **out, size_t *n, nv_error *err)
{
    struct mqueue *q = queue_get(self, queue, 0);
    struct mjob *m, *next;
    nv_reaped *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = NV_OK, woke = 0;

    *out = NULL;
    *n = 0;
    if (q == NULL)
        return NV_OK;
    pthread_mutex_lock(&q->mu);
    for (m = q->active.head; m != NULL && rc == NV_OK; m = next) {
        int fail = m->j.stalled_count + 1 > max_stalled;
        char *reason = NULL;

        next = m->next;
        if (m->j.lease_until >= now)
            continue;
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
            (!fail && waiting_prepare(q, m) != NV_OK)) {
            rc = NV_ENOMEM;
            break;
        }
        list_unlink(&q->active, m);
        m->j.stalled_count++;
        m->j.lease_token[0] = '\0';
        m->j.lease_until = 0;
        if (fail) {
            nv__free(m->j.failed_reason);
            m->j.failed_reason = reason;
            m->j.finished_on = now;
            m->j.state = NV_JOB_FAILED;
        } else {
            waiting_add(q, m);
            woke = 1;
        }
        if (job_out(q, m, &v[cnt].job) != NV_OK)
            rc = NV_ENOMEM;     /* the change stands; report what we have */
        else
            v[cnt++].failed = fail;
        if (fail)
            finished_add(q, m);
    }
    if (woke)
        wake(q, 1);
    groups_sweep(q, now);
    pthread_mutex_unlock(&q->mu);
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
 * sleeps at once, so idle workers cost nothing. 1: something happened.
 */
static _Thread_local uint64_t spin_last_idle = UINT64_MAX;

static int
spin_for_work(struct mqueue *q)
{
    uint64_t idle = atomic_load_explicit(&q->idle_gen, memory_order_relaxed);
    int64_t t0;

    if (atomic_load_explicit(&q->gen, memory_order_acquire) != idle)
        return 1;
    if (idle == spin_last_idle)
        return 0;
    spin_last_idle = idle;
    t0 = mono_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&q->gen, memory_order_acquire) != idle)
            return 1;
        if ((i & 63) == 0 && mono_ns() - t0 > MEM_SPIN_NS)
            return 0;
        cpu_relax();
    }
}

static int
mem_wait(void *self, const char *queue, int64_t timeout_ms)
{
    struct mqueue *q = queue_get(self, queue, 1);
    struct timespec ts;
    uint64_t gen;

    if (q == NULL || timeout_ms <= 0)
        return NV_OK;
    if (spin_for_work(q))
        return NV_OK;
    nv__timespec_after(CLOCK_MONOTONIC, timeout_ms * NV__MS, &ts);
    pthread_mutex_lock(&q->mu);
    /* Something happened since the last reserve that found nothing (say
     * an enqueue between that reserve and this wait): do not sleep. */
    gen = q->gen;
    if (gen != q->idle_gen) {
        pthread_mutex_unlock(&q->mu);
        return NV_OK;
    }
    q->waiters++;
    while (q->gen == gen && pthread_cond_timedwait(&q->cv, &q->mu, &ts) == 0)
        ;
    q->waiters--;
    pthread_mutex_unlock(&q->mu);
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
        pthread_mutex_lock(&q->mu);
        wake(q, 1);
        pthread_mutex_unlock(&q->mu);
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

    for (size_t i = 0; i < q->jt.cap; i++) {
        m = q->jt.v[i].m;
        if (m != NULL && m != JT_TOMB)
            job_destroy(m);
    }
    nv__free(q->jt.v);
    HASH_ITER(hh, q->groups, g, gt)
        group_free(q, g);
    while ((m = q->pool) != NULL) {
        q->pool = m->next;
        nv__free(m);
    }
    nv__free(q->ready.v);
    nv__free(q->delayed.v);
    nv__free(q->win.v);
    nv__free(q->scratch);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
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
    .progress = mem_progress,
    .log = mem_log,
    .get = mem_get,
    .list = mem_list,
    .counts = mem_counts,
    .set_paused = mem_set_paused,
    .is_paused = mem_is_paused,
    .remove = mem_remove,
    .retry = mem_retry,
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
