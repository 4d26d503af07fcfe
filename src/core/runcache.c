/*
 * Cache of recently active runs: per run, the projection accumulator of
 * the events read or appended so far (projection.h), the number of those
 * events and the ids of the last two. Streams are append-only, so what was
 * applied stays valid; a lookup that must be current asks the stream's
 * length, and when it grew reads only what was appended since (by this or
 * another instance) with read(after = the id before the last applied one),
 * checking that the last applied event comes back first, so a deleted (or
 * shortened) stream is noticed and read afresh. This engine's own appends
 * are applied directly when the cache held every event before them.
 *
 * A lookup may instead accept the cached state when it holds at least
 * 'min_version' events: after its own append returned version V, a caller
 * whose append was applied (the cache then holds V events) sees the stream
 * exactly as it was at that append, without a round trip. Anything
 * another instance appended afterwards is seen by that instance's own
 * decisions, and terminal events are appended at an expected version
 * (F-13), so a later append is never overlooked where it matters.
 *
 * Entries go when their run is removed, and the least recently used when the cache is
 * full (runs or events). The stream stays the only truth: the cache only
 * saves reading and projecting it again.
 */
#include <stdint.h>
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

/*
 * The table is split in shards by the run id's hash, each with its own
 * lock (workers of different runs do not wait for each other), an open
 * addressing table of (hash, entry) slots (a lookup touches one or two
 * cache lines, not a chain of entries) and its entries in order of last
 * use.
 */
#define RC_SHARDS     16
#define RC_MAX_RUNS   4096
#define RC_MAX_EVENTS 262144    /* events applied in all entries */
#define RC_SHARD_RUNS (RC_MAX_RUNS / RC_SHARDS)
#define RC_SHARD_EVENTS (RC_MAX_EVENTS / RC_SHARDS)
#define RC_SLOTS      (2 * RC_SHARD_RUNS)         /* a power of two */

struct rc_shard;

struct rc_entry {
    char              run_id[NV_ID_MAX];
    uint32_t          hash;
    struct rc_shard  *sh;
    struct rc_entry  *older, *newer;  /* the shard's list by last use */
    pthread_mutex_t   mu;       /* guards the members below */
    int               refs;     /* under the shard lock */
    int               gone;     /* out of the table; freed at refs == 0 */
    size_t            counted;  /* n as last added to sh->events */
    const nv__flowrt *f;        /* the run's flow, set with acc */
    nv__proj_acc     *acc;      /* NULL while no event is applied */
    size_t            n;        /* events applied */
    int               dirty_set;   /* dirty_gen below is valid */
    unsigned          dirty_gen;   /* the run was marked dirty under it */
    char              last_id[NV_EVENT_ID_MAX];
    char              prev_id[NV_EVENT_ID_MAX];   /* "" when n < 2 */
};

struct rc_slot {
    uint32_t         hash;
    struct rc_entry *x;         /* NULL: empty */
};

struct rc_shard {
    pthread_mutex_t  mu;        /* guards the slots, the list, refs */
    struct rc_slot   slot[RC_SLOTS];
    struct rc_entry *oldest, *newest;
    size_t           count;
    size_t           events;    /* sum of the entries' counted */
};

struct nv__rcache {
    struct rc_shard shard[RC_SHARDS];
};

/* 8 bytes at a time (run ids are 36 characters), mixed by multiplying */
static uint32_t
hash_of(const char *s, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ len, w;

    for (; len >= 8; s += 8, len -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
    h ^= h >> 29;
    return (uint32_t)h;
}

static size_t
home(uint32_t hash)
{
    return (hash >> 4) & (RC_SLOTS - 1);   /* the low bits pick the shard */
}

static struct rc_entry *
find(struct rc_shard *sh, uint32_t hash, const char *run_id)
{
    for (size_t i = home(hash); sh->slot[i].x != NULL;
         i = (i + 1) & (RC_SLOTS - 1)) {
        if (sh->slot[i].hash == hash &&
            strcmp(sh->slot[i].x->run_id, run_id) == 0)
            return sh->slot[i].x;
    }
    return NULL;
}

/* k in (i, j], cyclically */
static int
between(size_t k, size_t i, size_t j)
{
    return i <= j ? k > i && k <= j : k > i || k <= j;
}

/* Remove x's slot, shifting back the slots after it (linear probing). */
static void
slot_del(struct rc_shard *sh, struct rc_entry *x)
{
    size_t i = home(x->hash), j;

    while (sh->slot[i].x != x)
        i = (i + 1) & (RC_SLOTS - 1);
    sh->slot[i].x = NULL;
    for (j = (i + 1) & (RC_SLOTS - 1); sh->slot[j].x != NULL;
         j = (j + 1) & (RC_SLOTS - 1)) {
        if (!between(home(sh->slot[j].hash), i, j)) {
            sh->slot[i] = sh->slot[j];
            sh->slot[j].x = NULL;
            i = j;
        }
    }
}

static void
entry_clear(struct rc_entry *x)
{
    nv__proj_acc_free(x->acc);
    x->acc = NULL;
    x->f = NULL;
    x->n = 0;
    x->last_id[0] = '\0';
    x->prev_id[0] = '\0';
}

static void
entry_free(struct rc_entry *x)
{
    entry_clear(x);
    pthread_mutex_destroy(&x->mu);
    nv__free(x);
}

int
nv__rcache_new(nv__rcache **out)
{
    nv__rcache *c = nv__calloc(1, sizeof(*c));

    if (c == NULL)
        return NV_ENOMEM;
    for (int i = 0; i < RC_SHARDS; i++)
        pthread_mutex_init(&c->shard[i].mu, NULL);
    *out = c;
    return NV_OK;
}

void
nv__rcache_free(nv__rcache *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < RC_SHARDS; i++) {
        struct rc_shard *sh = &c->shard[i];

        while (sh->oldest != NULL) {
            struct rc_entry *x = sh->oldest;

            sh->oldest = x->newer;
            entry_free(x);
        }
        pthread_mutex_destroy(&sh->mu);
    }
    nv__free(c);
}

/* Take an entry out of the table. Under sh->mu. */
static void
unlink_entry(struct rc_shard *sh, struct rc_entry *x)
{
    slot_del(sh, x);
    if (x->older != NULL)
        x->older->newer = x->newer;
    else
        sh->oldest = x->newer;
    if (x->newer != NULL)
        x->newer->older = x->older;
    else
        sh->newest = x->older;
    sh->count--;
    sh->events -= x->counted;
    x->counted = 0;
    x->gone = 1;
    if (x->refs == 0)
        entry_free(x);
}

void
nv__rcache_evict(nv_engine *e, const char *run_id)
{
    nv__rcache *c = e->rcache;
    struct rc_shard *sh;
    struct rc_entry *x;
    uint32_t h;

    if (c == NULL || run_id == NULL)
        return;
    h = hash_of(run_id, strlen(run_id));
    sh = &c->shard[h & (RC_SHARDS - 1)];
    pthread_mutex_lock(&sh->mu);
    x = find(sh, h, run_id);
    if (x != NULL)
        unlink_entry(sh, x);
    pthread_mutex_unlock(&sh->mu);
}

/* The entry of 'run_id', locked; created when 'create'. */
static struct rc_entry *
acquire(nv__rcache *c, const char *run_id, int create)
{
    size_t len = strlen(run_id);
    uint32_t h;
    struct rc_shard *sh;
    struct rc_entry *x;

    if (len >= NV_ID_MAX)
        return NULL;
    h = hash_of(run_id, len);
    sh = &c->shard[h & (RC_SHARDS - 1)];
    pthread_mutex_lock(&sh->mu);
    x = find(sh, h, run_id);
    if (x == NULL && create) {
        while ((sh->count >= RC_SHARD_RUNS ||
                sh->events > RC_SHARD_EVENTS) && sh->oldest != NULL)
            unlink_entry(sh, sh->oldest);
        x = nv__calloc(1, sizeof(*x));
        if (x != NULL) {
            size_t i = home(h);

            nv__strlcpy(x->run_id, run_id, sizeof(x->run_id));
            x->hash = h;
            x->sh = sh;
            pthread_mutex_init(&x->mu, NULL);
            while (sh->slot[i].x != NULL)
                i = (i + 1) & (RC_SLOTS - 1);
            sh->slot[i].hash = h;
            sh->slot[i].x = x;
            x->older = sh->newest;
            if (sh->newest != NULL)
                sh->newest->newer = x;
            else
                sh->oldest = x;
            sh->newest = x;
            sh->count++;
        }
    }
    if (x != NULL && x != sh->newest) {
        /* used: to the newest end (eviction takes the least recently
         * used; a run in progress stays while a backlog of new runs is
         * started) */
        if (x->older != NULL)
            x->older->newer = x->newer;
        else
            sh->oldest = x->newer;
        x->newer->older = x->older;
        x->older = sh->newest;
        x->newer = NULL;
        sh->newest->newer = x;
        sh->newest = x;
    }
    if (x != NULL)
        x->refs++;
    pthread_mutex_unlock(&sh->mu);
    if (x != NULL)
        pthread_mutex_lock(&x->mu);
    return x;
}

/* A missing run is not kept. */
static void
release(nv__rcache *c, struct rc_entry *x)
{
    struct rc_shard *sh = x->sh;
    size_t n = x->n;

    (void)c;
    pthread_mutex_unlock(&x->mu);
    pthread_mutex_lock(&sh->mu);
    if (!x->gone) {
        sh->events += n - x->counted;
        x->counted = n;
        if (n == 0)
            unlink_entry(sh, x);    /* x->refs > 0 here: not freed yet */
    }
    if (--x->refs == 0 && x->gone)
        entry_free(x);
    pthread_mutex_unlock(&sh->mu);
}

/*
 * Mark the run dirty (nv__index_mark_dirty) unless it is in the current
 * dirty set. Under the entry's lock: whoever saw the mark current saw it
 * made. A flush bumps the generation when it takes the set, before it
 * reads the runs: an event appended before a mark was skipped is read.
 */
static void
mark_locked(nv_engine *e, struct rc_entry *x, const char *flow)
{
    if (!x->dirty_set || x->dirty_gen != atomic_load(&e->dirty_gen)) {
        x->dirty_gen = nv__index_mark_dirty(e, flow, x->run_id);
        x->dirty_set = 1;
    }
}

/* Apply one event (the next of the stream) to an entry. */
static int
entry_apply(struct rc_entry *x, const nv__flowrt *f, const nv_event *ev,
            json_t *data, const nv__proj_facts *facts, nv_error *err)
{
    int rc;

    if (x->acc == NULL) {
        x->acc = nv__proj_acc_new(&f->def);
        if (x->acc == NULL)
            return nv__error(err, NV_ENOMEM, "out of memory");
        x->f = f;
    }
    rc = facts != NULL ? nv__proj_apply_facts(x->acc, ev, facts, err)
                       : nv__proj_apply(x->acc, ev, data, err);
    if (rc != NV_OK)
        return rc;
    x->n++;
    memcpy(x->prev_id, x->last_id, sizeof(x->prev_id));
    nv__strlcpy(x->last_id, ev->id, sizeof(x->last_id));
    return NV_OK;
}

/* Bring an entry of flow 'f' up to date with its stream; with 'quick',
 * accept it as it is when it holds events. Under x->mu. */
static int
refresh(nv_engine *e, const nv__flowrt *f, struct rc_entry *x, int quick,
        nv_error *err)
{
    char *key;
    nv_event *v = NULL;
    size_t k = 0;
    int rc;

    if (x->n > 0 && quick)
        return NV_OK;
    key = nv__stream_key(e, x->run_id);
    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    if (x->n > 0) {
        int64_t len = -1;

        /* usually nothing new (this engine's own appends are applied
         * directly): the length says so without copying any event */
        if (e->stream.ops->length(e->stream.self, key, &len, NULL) == NV_OK &&
            len == (int64_t)x->n) {
            nv__free(key);
            return NV_OK;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t from = 0;

        rc = e->stream.ops->read(e->stream.self, key,
                                 x->n >= 2 ? x->prev_id : NULL, -1, &v, &k,
                                 err);
        if (rc != NV_OK)
            break;
        if (x->n > 0) {
            /* the last applied event must come back first */
            if (k == 0 || strcmp(v[0].id, x->last_id) != 0) {
                /* the stream was deleted or recreated: read it afresh */
                entry_clear(x);
                nv_events_free(v, k);
                v = NULL;
                k = 0;
                continue;
            }
            from = 1;
        } else if (k > 0 && strcmp(v[0].flow_name, f->flow->name) != 0) {
            rc = nv__error(err, NV_ERUN_NOT_FOUND, "run '%s' not found in "
                           "flow '%s'", x->run_id, f->flow->name);
            break;
        }
        for (size_t i = from; rc == NV_OK && i < k; i++)
            rc = entry_apply(x, f, &v[i], NULL, NULL, err);
        break;
    }
    nv_events_free(v, k);
    nv__free(key);
    if (rc != NV_OK)
        entry_clear(x);
    return rc;
}

/*
 * An event this engine just appended as the stream's 'version'-th: when the
 * cache holds exactly the events before it, apply it with its data as
 * built ('facts' when not NULL, else 'data' parsed, or NULL: then
 * ev->data is parsed if needed). Otherwise the next lookup reads it from
 * the stream.
 */
void
nv__rcache_put(nv_engine *e, const char *run_id, const nv_event *ev,
               json_t *data, const nv__proj_facts *facts, int64_t version,
               int mark)
{
    nv__rcache *c = e->rcache;
    const nv__flowrt *f;
    struct rc_entry *x;

    x = c != NULL && version >= 1 ? acquire(c, run_id, version == 1) : NULL;
    if (x == NULL) {
        if (mark)
            nv__index_mark_dirty(e, ev->flow_name, run_id);
        return;
    }
    if (mark)
        mark_locked(e, x, ev->flow_name);
    if ((int64_t)x->n >= version)
        entry_clear(x);             /* the stream was deleted and begun anew */
    f = x->f;
    if (version == 1)
        f = nv__flowrt_find(e, ev->flow_name);
    if (f != NULL && (int64_t)x->n == version - 1 &&
        strcmp(ev->flow_name, f->flow->name) == 0 &&
        entry_apply(x, f, ev, data, facts, NULL) != NV_OK)
        entry_clear(x);
    release(c, x);
}

void
nv__rcache_mark_dirty(nv_engine *e, const char *flow, const char *run_id)
{
    struct rc_entry *x = e->rcache != NULL ? acquire(e->rcache, run_id, 0)
                                           : NULL;

    if (x == NULL) {
        nv__index_mark_dirty(e, flow, run_id);
        return;
    }
    mark_locked(e, x, flow);
    release(e->rcache, x);
}

/*
 * Call 'fn' with the run's accumulated state: as of now (min_version < 0:
 * brought up to date with the stream), or as cached when that holds at
 * least min_version events. NV_ERUN_NOT_FOUND when the stream is missing
 * or belongs to another flow.
 */
int
nv__rcache_with(nv_engine *e, const nv__flowrt *f, const char *run_id,
                int64_t min_version, nv__rcache_fn fn, void *ud,
                nv_error *err)
{
    struct rc_entry *x = e->rcache != NULL ? acquire(e->rcache, run_id, 1)
                                           : NULL;
    int rc;

    if (x != NULL && x->n > 0 && x->f != f) {
        /* cached under another flow (a ghost flow of the API): read
         * privately */
        release(e->rcache, x);
        x = NULL;
    }
    if (x == NULL) {
        struct rc_entry tmp;

        memset(&tmp, 0, sizeof(tmp));
        nv__strlcpy(tmp.run_id, run_id, sizeof(tmp.run_id));
        rc = refresh(e, f, &tmp, 0, err);
        if (rc == NV_OK && tmp.n == 0)
            rc = nv__error(err, NV_ERUN_NOT_FOUND, "run '%s' not found in "
                           "flow '%s'", run_id, f->flow->name);
        if (rc == NV_OK)
            rc = fn(ud, tmp.acc, err);
        entry_clear(&tmp);
        return rc;
    }
    rc = refresh(e, f, x, min_version >= 0 && x->n >= (size_t)min_version,
                 err);
    if (rc == NV_OK && x->n == 0)
        rc = nv__error(err, NV_ERUN_NOT_FOUND, "run '%s' not found in "
                       "flow '%s'", run_id, f->flow->name);
    if (rc == NV_OK)
        rc = fn(ud, x->acc, err);
    release(e->rcache, x);
    return rc;
}

int
nv__rcache_trial(nv_engine *e, const nv__flowrt *f, const char *run_id,
                 const nv_event *ev, const nv__proj_facts *facts, int64_t now,
                 nv__run_proj *p, int64_t *cached, nv_error *err)
{
    struct rc_entry *x = e->rcache != NULL ? acquire(e->rcache, run_id, 0)
                                           : NULL;
    nv__proj_acc *a = NULL;
    int rc;

    memset(p, 0, sizeof(*p));
    if (x == NULL)
        return NV_ENOTFOUND;
    if (x->n > 0 && x->f == f && x->acc != NULL) {
        a = nv__proj_acc_clone(x->acc);
        *cached = (int64_t)x->n;
    }
    release(e->rcache, x);
    if (a == NULL)
        return NV_ENOTFOUND;
    rc = facts != NULL ? nv__proj_apply_facts(a, ev, facts, err)
                       : nv__proj_apply(a, ev, NULL, err);
    if (rc == NV_OK)
        rc = nv__proj_view(a, now, p, err);
    nv__proj_acc_free(a);
    return rc;
}
