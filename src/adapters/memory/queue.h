/*
 * Internals of the memory queue adapter, shared by its files: queue.c
 * (the queues table, enqueue, reserve, the leased ops, reap, waiting,
 * lifecycle), queue_data.c (heaps, the id table, lists, limiter windows,
 * job nodes, the waiting set) and queue_read.c (log, get, list, counts,
 * pause, remove, retry). One mutex per queue guards everything of it;
 * every state change moves a job between intrusive containers of its
 * queue (heaps, lists), so reserve and finish are O(log n).
 * Private to src/adapters/memory/.
 */
#ifndef NV_ADAPTERS_MEMORY_QUEUE_H
#define NV_ADAPTERS_MEMORY_QUEUE_H

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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
/* Job nodes whose names, data, opts and group fit NODE_INLINE bytes are
 * of one size and reused through a per-queue pool of up to NODE_POOL
 * nodes: a stream of jobs then costs no malloc/free of the node. */
#define NODE_INLINE 256
#define NODE_POOL 32
/* Nodes handed to the producers and not yet taken, per queue (about). */
#define SPARE_MAX 4096
#define MQ_PIN_GONE 0x80000000u
#define MQ_NODE_SIZE (sizeof(struct mjob) + NODE_INLINE)
#define STALLED_REASON "job stalled more than allowable limit"

/* A binary heap whose elements store their position (at idx_off). */
typedef int (*heap_less_fn)(const void *a, const void *b);

struct heap {
    void       **v;
    size_t       n, cap;
    size_t       idx_off;       /* offset of the element's size_t position */
    heap_less_fn less;
};


/* Limiter window: start times of the latest activations, oldest first. */
struct window {
    int64_t *v;
    size_t   head, n, cap;
};

struct mgroup;

/*
 * A job as its node holds it: the fields of nv_job, but the names are
 * pointers into the node's block (nv_job's fixed arrays would spread a
 * node over sixteen cache lines, each a miss for the worker that takes
 * the job from the enqueuing core, and a backlog over 1.6 KB a job).
 * 'queue' is the queue's own name; 'opts' may be the queue's shared copy
 * (mqueue.opts_shared); empty names are a static "".
 */
struct mrec {
    const char *id, *queue, *name, *run_id, *flow_name, *step_name;
    char       *data, *opts, *group;        /* in the block (opts: or shared) */
    int         state;                      /* never NV_JOB_PAUSED here */
    int         priority, lifo;
    int         attempts_made, stalled_count;
    int64_t     remove_on_complete, remove_on_fail;
    double      progress;
    char       *progress_data, *returnvalue, *failed_reason, *logs;
    int64_t     timestamp, delay_until, processed_on, finished_on;
    int64_t     lease_until;
    char        lease_token[40];
};

/*
 * A job and its links. Its container follows j.state: waiting -> the heap
 * (or fifo) of its group; delayed -> the queue's delayed heap; active ->
 * a slot of q->act; completed, failed -> the list of that state (sorted by
 * finished_on, oldest first).
 */
struct mjob {
    struct mrec    j;
    size_t         heap_i;      /* position in the waiting or delayed heap */
    uint64_t       idh;         /* mq_id_hash(j.id), set by mq_jt_add */
    _Atomic unsigned pins;      /* reservers copying it outside the lock,
                                   | MQ_PIN_GONE once freed meanwhile */
    int64_t        order;       /* waiting: fifo > 0 ascending, lifo < 0 */
    int64_t        dseq;        /* delayed: tie-break of equal delay_until */
    struct mgroup *grp;         /* waiting: its group */
    struct mjob   *prev, *next; /* active / completed / failed list */
    int            pooled;      /* block of NODE_INLINE: reusable (q->pool) */
    int            in_fifo;     /* waiting: in grp->fifo, not grp->waiting */
    uint64_t       seqn;        /* seq_ok: the number of its generated id */
    unsigned char  seq_ok;      /* its id has the generated form */
    unsigned char  in_ring;     /* in the id table's ring, not its hash part */
    int64_t        enq_now;     /* in the inbox: the enqueue's 'now' */
    uint32_t       act_i;       /* active: its slot in q->act */
    uint64_t       act_seq;     /* active: reservation order (reap) */
};

struct jlist {
    struct mjob *head, *tail;
    int64_t      n;
};

/*
 * Jobs by id: open addressing with linear probing over (hash, node)
 * slots, so a lookup reads one array line, not a chain of nodes (cache
 * misses with a large backlog). At most half the slots are used; a
 * removal shifts its probe run back (no tombstones).
 */
struct jslot {
    uint64_t     h;
    struct mjob *m;             /* NULL: empty */
};

/*
 * Ids of the generated form "<ms>-<9 base36>" (N-3), whose 9 characters
 * the engine hands out in sequence (src/core/jobs.c), are kept apart in a
 * ring indexed by that number: jobs enqueued one after another then sit
 * in neighbouring slots, so filing and removing a stream of jobs touches
 * a few hot lines instead of a random slot of a large table each (a cache
 * miss each with a large backlog). The ring holds numbers in [lo, lo +
 * rcap); an id of the form that does not fit (another stream, far below
 * or above, or a number already taken by another id) goes to the hash
 * part, and nseq_hashed counts those, so that a lookup of such an id
 * looks there only when some may be there.
 */
struct jtab {
    struct jslot *v;            /* the hash part */
    size_t        cap, hn;
    struct mjob **r;            /* the ring: r[x & (rcap - 1)] */
    size_t        rcap, rn;
    uint64_t      lo, hi;       /* numbers in r: [lo, hi], hi < lo + rcap */
    size_t        nseq_hashed;
    size_t        n;            /* jobs in all */
};

#define JT_MIN_CAP 256
#define RING_MIN 1024
#define RING_MAX ((size_t)1 << 26)

/* The number of a generated id (1: of that form), as the engine makes it:
 * the 9 characters after "<digits>-" are base 36, least significant
 * first. */
static inline int
mq_id_seq(const char *id, uint64_t *x)
{
    const char *p = id;
    uint64_t v = 0, mul = 1;

    while (*p >= '0' && *p <= '9')
        p++;
    if (p == id || p - id > 19 || *p != '-')
        return 0;
    p++;
    for (int i = 0; i < 9; i++) {
        unsigned c = (unsigned char)p[i], d;

        if (c - '0' <= 9)
            d = c - '0';
        else if (c - 'a' <= 'z' - 'a')
            d = c - 'a' + 10;
        else
            return 0;
        v += d * mul;
        mul *= 36;
    }
    if (p[9] != '\0')
        return 0;
    *x = v;
    return 1;
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

/*
 * Everything below 'mu' is guarded by it, but for the inbox block.
 *
 * The inbox: an enqueue that needs no answer from the queue's state (no
 * record copied out, no 'created' flag, no maxQueueSize) does not take
 * mu. It fills a node and pushes it on 'inbox' (a lock-free stack); the
 * next holder of mu files the inbox's jobs in their order, de-duplicating
 * by id then, before it does anything else (mq_lock). Every op of
 * the queue takes mu through mq_lock, so none can see the queue without
 * a job whose enqueue has returned.
 */
struct mqueue {
    char            name[NV_NAME_MAX + 1];
    pthread_mutex_t mu;
    pthread_cond_t  cv;         /* 'gen' changed */
    struct mjob    *pending;    /* inbox jobs not filed yet (out of memory) */
    uint64_t        token_seq;  /* lease tokens handed out */
    uint64_t        token_salt; /* per queue, mixed into its tokens */

    struct jtab     jt;         /* every job by id */
    struct mgroup  *groups;     /* by key */
    struct mgroup  *g0;         /* the group "" (jobs without a group) */
    struct heap     ready;      /* non-empty groups by their first job */
    struct heap     delayed;    /* by (delay_until, dseq) */
    struct jlist    completed, failed;
    /* Active jobs by slot. A lease token names its slot, so the leased
     * ops (finish, extend, progress) find their job without the id table
     * (a cache miss each with a large backlog); no list links either, so
     * workers ending jobs at once write none of each other's nodes. */
    struct mjob   **act;
    uint32_t       *act_free;   /* free slots (a stack) */
    uint32_t        act_n, act_cap, nact_free;
    int64_t         nactive;
    int64_t         nwaiting;
    int64_t         fifo_seq, lifo_seq, delay_seq;
    int             paused;
    struct window   win;        /* ungrouped limiter window */
    int64_t         lim_duration;   /* last limiter duration seen */
    struct mgroup **scratch;    /* saturated groups set aside by reserve */
    size_t          nscratch;
    struct mjob    *pool;       /* freed nodes for reuse, linked by next */
    struct mjob    *pool_tail;  /* its last node */
    int             npool;

    /* The inbox block: the lines producers write, apart from the lines
     * of mu (which the workers take at every job). gen grows under mu or
     * (an inbox push) without it; idle_gen and waiters are written under
     * mu; all are read without it (the brief spin of mem_wait, the inbox
     * push). */
    char            pad0[64];
    _Atomic(struct mjob *) inbox;   /* pushed jobs, newest first */
    _Atomic uint64_t gen;       /* grows when a job may have become runnable */
    _Atomic uint64_t idle_gen;  /* gen at the last reserve that found nothing */
    _Atomic int     waiters;    /* threads asleep in mem_wait */
    _Atomic int     wakes;      /* of them, signalled and not yet back
                                   (written under mu) */
    _Atomic int     spinners;   /* threads watching gen in mem_wait (0, 1) */
    char            pad2[64];
    _Atomic(struct mjob *) spare;   /* nodes handed from pool to producers
                                       (batches pushed, taken all at once) */
    _Atomic int     nspare;     /* nodes in spare and pfree (about) */
    pthread_mutex_t pmu;        /* guards pfree, ptaken (producers only) */
    struct mjob    *pfree;      /* nodes taken from spare */
    int             ptaken;     /* taken from pfree, not yet off nspare */
    _Atomic(char *) opts_shared;    /* the first opts seen, kept till close:
                                       equal opts point here, not copied */
    char            pad1[64];
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
};

/*
 * Buffers allocated before taking q->mu for the copy of a reserved job's
 * data and opts (mq_job_out_finish), sized from what this thread saw
 * last: no malloc between the lock and the copy.
 */
struct outbufs {
    char  *p[2];
    size_t cap[2];
};

/* ---- Small helpers ---- */

static inline void *
heap_top(const struct heap *h)
{
    return h->n > 0 ? h->v[0] : NULL;
}

static inline int
oom(nv_error *err)
{
    return nv__error(err, NV_ENOMEM, "memory queue: out of memory");
}

static inline int
waiting_less(const void *a, const void *b)
{
    const struct mjob *x = a, *y = b;

    if (x->j.priority != y->j.priority)
        return x->j.priority < y->j.priority;
    return x->order < y->order;
}

static inline int64_t
win_oldest(const struct window *w)
{
    return w->v[w->head];
}

/* The first waiting job of g: the first of its heap and of its fifo. */
static inline struct mjob *
group_top(const struct mgroup *g)
{
    struct mjob *h = heap_top(&g->waiting), *f = g->fifo.head;

    if (h == NULL)
        return f;
    if (f == NULL)
        return h;
    return waiting_less(f, h) ? f : h;
}

static inline size_t
group_nwaiting(const struct mgroup *g)
{
    return g->waiting.n + (size_t)g->fifo.n;
}

/* The reported state (Q-13: waiting in a paused queue is paused). */
static inline int
reported_state(const struct mqueue *q, const struct mjob *m)
{
    if (m->j.state == NV_JOB_WAITING && q->paused)
        return NV_JOB_PAUSED;
    return m->j.state;
}

/* ---- Containers (queue_data.c); everything under the queue's mu ---- */

/* Make room for one more element (so a later push cannot fail). */
int   mq_heap_reserve(struct heap *h);
/* Push after mq_heap_reserve succeeded. */
void  mq_heap_push(struct heap *h, void *e);
void  mq_heap_remove(struct heap *h, void *e);
void  mq_heap_fix(struct heap *h, size_t i);
/* Orders of the delayed heap and of a queue's ready groups. */
int   mq_delayed_less(const void *a, const void *b);
int   mq_group_less(const void *a, const void *b);

static inline uint64_t
mq_id_hash(const char *id)
{
    return mq_hash(id, strlen(id));
}

struct mjob *mq_jt_find(const struct jtab *t, const char *id);
/* The same with h = mq_id_hash(id), computed before taking the lock. */
struct mjob *mq_jt_find_h(const struct jtab *t, const char *id, uint64_t h);
/* The job with the id of filled node m (m->idh and m->seqn set), if any. */
struct mjob *mq_jt_find_node(const struct jtab *t, const struct mjob *m);
/* Add m, whose id (hash h) is not in t; 0 when out of memory (t
 * unchanged). */
int   mq_jt_add(struct jtab *t, struct mjob *m, uint64_t h);
void  mq_jt_del(struct jtab *t, struct mjob *m);
/* Where t keeps (or would look for) filled node m: for a prefetch. */
const void *mq_jt_where(const struct jtab *t, const struct mjob *m);
/* Every job of t: mq_jt_at(t, i) for i < mq_jt_slots(t), NULL skipped. */
size_t mq_jt_slots(const struct jtab *t);
struct mjob *mq_jt_at(const struct jtab *t, size_t i);
void  mq_jt_free(struct jtab *t);

void  mq_list_append(struct jlist *l, struct mjob *m);
void  mq_list_unlink(struct jlist *l, struct mjob *m);

int   mq_win_push(struct window *w, int64_t t);
/* Drop activations that no longer count at 'now': t + duration <= now. */
void  mq_win_prune(struct window *w, int64_t now, int64_t duration);

/* ---- Job records (queue_data.c) ---- */

void  mq_outbufs_init(struct outbufs *b);
void  mq_outbufs_release(struct outbufs *b);
int   mq_job_out(const struct mqueue *q, const struct mjob *m, nv_job *out);
/*
 * A reserved job's copy in two steps, so that the lock is not held while
 * its names and data are read (cache lines the enqueuing core wrote).
 * mq_job_out_pinned, under q->mu: what can change (state, times, lease,
 * progress, results, logs) into 'held' (a copy of the record whose names
 * still point into m), and pins m: freed meanwhile, it stays allocated
 * until unpinned. Then, after the unlock, mq_job_out_finish: the whole job
 * into 'out', and unpins m. On NV_ENOMEM 'out' is untouched, 'held' holds
 * no string of its own any more and m is still pinned (the caller gives
 * the job back, then calls mq_job_unpin).
 */
int   mq_job_out_pinned(const struct mqueue *q, struct mjob *m,
                        struct mrec *held);
int   mq_job_out_finish(struct mjob *m, struct mrec *held, nv_job *out,
                        struct outbufs *b);
void  mq_job_unpin(struct mjob *m);
/*
 * Job nodes: one block with the job's names, data, opts and group, which
 * never change. Blocks of the standard size MQ_NODE_SIZE are reused
 * through the queue's pool. mq_job_size gives the block size 'src' needs.
 */
size_t mq_job_size(const nv_job *src);
/* A pooled node or NULL. Under q->mu. */
struct mjob *mq_node_pop(struct mqueue *q);
/* A new node for 'size' bytes (no lock needed); NULL when out of memory. */
struct mjob *mq_node_alloc(size_t size);
/* Give back a node never filed (or not filled): pooled, or freed by
 * mq_unlock. Under q->mu. NULL ok. */
void  mq_node_discard(struct mqueue *q, struct mjob *m);
/* Free the nodes this thread gave up under a lock (mq_unlock). */
extern _Thread_local struct mjob *mq_garbage;
void  mq_garbage_free(void);
/* Fill node m (of mq_job_size(src) bytes at least) with a copy of 'src'
 * in queue q, with the id 'id' (src->id or a generated one); NV_ENOMEM
 * leaves m unfilled. No lock needed. */
int   mq_job_fill(struct mqueue *q, struct mjob *m, const nv_job *src,
                  const char *id);
/* Free the strings a filled node holds apart from its block. */
void  mq_job_release(struct mjob *m);
/* Free a filled node. */
void  mq_job_destroy(struct mjob *m);
/* Wake waiters of q: one (a single job) or all; one is not woken while q
 * is paused (all is: resume, engine stop). Under q->mu. */
void  mq_wake(struct mqueue *q, int all);
/* Active jobs (under q->mu): mq_active_prepare makes room for one more
 * (so that mq_active_add cannot fail); mq_active_add files m in a slot
 * and gives it a fresh lease token naming the slot; mq_active_del takes
 * it out. mq_active_find: the active
 * job of 'token' (which names its slot) if its id is 'id', else NULL. */
int   mq_active_prepare(struct mqueue *q);
void  mq_active_add(struct mqueues *a, struct mqueue *q, struct mjob *m);
void  mq_active_del(struct mqueue *q, struct mjob *m);
struct mjob *mq_active_find(const struct mqueue *q, const char *id,
                            const char *token);

/* ---- The waiting set and state changes (queue_data.c) ---- */

void  mq_group_free(struct mqueue *q, struct mgroup *g);
/* Make room so that m can become waiting without failing: its group
 * exists and both heaps have a free slot. Called before any change. */
int   mq_waiting_prepare(struct mqueue *q, struct mjob *m);
/* m becomes waiting now (after mq_waiting_prepare). */
void  mq_waiting_add(struct mqueue *q, struct mjob *m);
void  mq_waiting_remove(struct mqueue *q, struct mjob *m);
/* Move due delayed jobs to waiting (Q-5: at delay_until, never before). */
int   mq_promote(struct mqueue *q, int64_t now);
int   mq_delayed_add(struct mqueue *q, struct mjob *m);
/* Drop m from the id table and free (or pool) it. */
void  mq_job_free(struct mqueue *q, struct mjob *m);
/* Take m out of whatever container holds it. */
void  mq_job_detach(struct mqueue *q, struct mjob *m);
/* m has just finished (completed or failed, detached): file it, then
 * apply its retention. Returns 1 when m itself was removed. */
int   mq_finished_add(struct mqueue *q, struct mjob *m);

/* ---- Queues (queue.c) ---- */

/* File the inbox's jobs (and earlier leftovers) in their order. Under mu. */
void  mq_drain(struct mqueue *q);

/* Take q->mu; the inbox is filed before anything else is done. */
static inline void
mq_lock(struct mqueue *q)
{
    pthread_mutex_lock(&q->mu);
    if (atomic_load_explicit(&q->inbox, memory_order_acquire) != NULL ||
        q->pending != NULL)
        mq_drain(q);
}

/* Let go of q->mu, then free what was given up under it. */
static inline void
mq_unlock(struct mqueue *q)
{
    pthread_mutex_unlock(&q->mu);
    if (mq_garbage != NULL)
        mq_garbage_free();
}

/* The queue named 'name', created when 'create'; NULL when absent/OOM. */
struct mqueue *mq_queue_get(struct mqueues *a, const char *name, int create);

/* ---- Ops of queue_read.c ---- */

int mq_log(void *self, const char *queue, const char *id,
           const char *entry_json, int keep, nv_error *err);
int mq_get(void *self, const char *queue, const char *id, nv_job *out,
           nv_error *err);
int mq_list(void *self, const char *queue, unsigned mask, int64_t offset,
            int64_t limit, nv_job **out, size_t *n, int64_t *total,
            nv_error *err);
int mq_counts(void *self, const char *queue, nv_job_counts *out,
              nv_error *err);
int mq_set_paused(void *self, const char *queue, int paused, nv_error *err);
int mq_is_paused(void *self, const char *queue, int *paused, nv_error *err);
int mq_remove(void *self, const char *queue, const char *id, nv_job *out,
              nv_error *err);
int mq_retry(void *self, const char *queue, const char *id, int64_t now,
             nv_job *out, nv_error *err);

#endif
