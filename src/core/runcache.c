/*
 * Cache of recently active runs: per run, the events read so far and their
 * parsed data. Streams are append-only, so a cached prefix stays valid; a
 * lookup asks the stream's length, and when it grew reads only what was
 * appended since (by this or another instance) with read(after = the id
 * before the last cached one), checking that the last cached event comes
 * back first, so a deleted (or shortened) stream is noticed and read
 * afresh. Entries go when their run is removed, and the oldest when the
 * cache is full (runs or events). The stream stays the only
 * truth: the cache only saves reading and parsing it again.
 *
 * Parsed data is shared read-only between threads (jansson refcounts are
 * atomic); nobody mutates it.
 */
#include <string.h>
#include <uthash.h>

#include "core/engine_int.h"
#include "core/util.h"

#define RC_MAX_RUNS   4096
#define RC_MAX_EVENTS 65536     /* events held in all, about 30 MB */

struct rc_entry {
    char            run_id[NV_ID_MAX];
    pthread_mutex_t mu;         /* guards the events below */
    int             refs;       /* under the cache lock */
    int             gone;       /* out of the table; freed at refs == 0 */
    size_t          counted;    /* n as last added to c->events */
    nv_event       *ev;
    json_t        **data;
    size_t          n, cap;
    UT_hash_handle  hh;
};

struct nv__rcache {
    pthread_mutex_t  mu;        /* guards tab and refs */
    struct rc_entry *tab;       /* insertion order = age */
    size_t           count;
    size_t           events;    /* sum of the entries' counted */
};

static void
entry_clear(struct rc_entry *x)
{
    for (size_t i = 0; i < x->n; i++) {
        nv__free(x->ev[i].data);
        json_decref(x->data[i]);
    }
    x->n = 0;
}

static void
entry_free(struct rc_entry *x)
{
    entry_clear(x);
    nv__free(x->ev);
    nv__free(x->data);
    pthread_mutex_destroy(&x->mu);
    nv__free(x);
}

int
nv__rcache_new(nv__rcache **out)
{
    nv__rcache *c = nv__calloc(1, sizeof(*c));

    if (c == NULL)
        return NV_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return NV_OK;
}

void
nv__rcache_free(nv__rcache *c)
{
    struct rc_entry *x, *tmp;

    if (c == NULL)
        return;
    HASH_ITER(hh, c->tab, x, tmp) {
        HASH_DEL(c->tab, x);
        entry_free(x);
    }
    pthread_mutex_destroy(&c->mu);
    nv__free(c);
}

/* Take an entry out of the table. Under c->mu. */
static void
unlink_entry(nv__rcache *c, struct rc_entry *x)
{
    HASH_DEL(c->tab, x);
    c->count--;
    c->events -= x->counted;
    x->counted = 0;
    x->gone = 1;
    if (x->refs == 0)
        entry_free(x);
}

void
nv__rcache_evict(nv_engine *e, const char *run_id)
{
    nv__rcache *c = e->rcache;
    struct rc_entry *x;

    if (c == NULL || run_id == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    HASH_FIND_STR(c->tab, run_id, x);
    if (x != NULL)
        unlink_entry(c, x);
    pthread_mutex_unlock(&c->mu);
}

static struct rc_entry *
acquire(nv__rcache *c, const char *run_id)
{
    struct rc_entry *x;

    if (strlen(run_id) >= NV_ID_MAX)
        return NULL;
    pthread_mutex_lock(&c->mu);
    HASH_FIND_STR(c->tab, run_id, x);
    if (x == NULL) {
        while ((c->count >= RC_MAX_RUNS || c->events > RC_MAX_EVENTS) &&
               c->tab != NULL)
            unlink_entry(c, c->tab);        /* the oldest */
        x = nv__calloc(1, sizeof(*x));
        if (x != NULL) {
            nv__strlcpy(x->run_id, run_id, sizeof(x->run_id));
            pthread_mutex_init(&x->mu, NULL);
            HASH_ADD_STR(c->tab, run_id, x);
            c->count++;
        }
    }
    if (x != NULL)
        x->refs++;
    pthread_mutex_unlock(&c->mu);
    if (x != NULL)
        pthread_mutex_lock(&x->mu);
    return x;
}

/* A missing run is not kept. */
static void
release(nv__rcache *c, struct rc_entry *x)
{
    size_t n = x->n;

    pthread_mutex_unlock(&x->mu);
    pthread_mutex_lock(&c->mu);
    if (!x->gone) {
        c->events += n - x->counted;
        x->counted = n;
        if (n == 0)
            unlink_entry(c, x);     /* x->refs > 0 here: not freed yet */
    }
    if (--x->refs == 0 && x->gone)
        entry_free(x);
    pthread_mutex_unlock(&c->mu);
}

static int
grow(struct rc_entry *x, size_t more)
{
    if (x->n + more > x->cap) {
        size_t cap = x->cap ? x->cap : 16;
        nv_event *ev;
        json_t **d;

        while (cap < x->n + more)
            cap *= 2;
        ev = nv__realloc(x->ev, cap * sizeof(*ev));
        if (ev == NULL)
            return NV_ENOMEM;
        x->ev = ev;
        d = nv__realloc(x->data, cap * sizeof(*d));
        if (d == NULL)
            return NV_ENOMEM;
        x->data = d;
        x->cap = cap;
    }
    return NV_OK;
}

/* Append one event whose data is 'd' (taken, as is ev->data on NV_OK). */
static int
take_parsed(struct rc_entry *x, const nv_event *ev, json_t *d)
{
    if (grow(x, 1) != NV_OK)
        return NV_ENOMEM;
    x->ev[x->n] = *ev;
    x->data[x->n] = d;
    x->n++;
    return NV_OK;
}

/* Append events read from the stream (taking their data), parsing each. */
static int
take(struct rc_entry *x, nv_event *v, size_t from, size_t k, nv_error *err)
{
    if (grow(x, k - from) != NV_OK)
        return nv__error(err, NV_ENOMEM, "out of memory");
    for (size_t i = from; i < k; i++) {
        json_t *d = v[i].data != NULL
                        ? json_loads(v[i].data, JSON_DECODE_ANY, NULL)
                        : json_object();

        if (d == NULL)
            return nv__error(err, NV_EINVAL, "event '%s' of run '%s' has "
                             "invalid data", v[i].id, v[i].run_id);
        take_parsed(x, &v[i], d);       /* room made above */
        v[i].data = NULL;
    }
    return NV_OK;
}

/* Bring an entry up to date with its stream. Under x->mu. */
static int
refresh(nv_engine *e, struct rc_entry *x, nv_error *err)
{
    char *key = nv__stream_key(e, x->run_id);
    nv_event *v = NULL;
    size_t k = 0;
    int rc;

    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    if (x->n > 0) {
        int64_t len = -1;

        /* usually nothing new (this engine's own appends are put in
         * directly): the length says so without copying any event */
        if (e->stream.ops->length(e->stream.self, key, &len, NULL) == NV_OK &&
            len == (int64_t)x->n) {
            nv__free(key);
            return NV_OK;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *after = x->n >= 2 ? x->ev[x->n - 2].id : NULL;

        rc = e->stream.ops->read(e->stream.self, key, after, -1, &v, &k, err);
        if (rc != NV_OK)
            break;
        if (x->n == 0) {
            rc = take(x, v, 0, k, err);
            break;
        }
        /* the last cached event must come back first */
        if (k > 0 && strcmp(v[0].id, x->ev[x->n - 1].id) == 0) {
            rc = take(x, v, 1, k, err);
            break;
        }
        /* the stream was deleted or recreated: read it afresh */
        entry_clear(x);
        nv_events_free(v, k);
        v = NULL;
        k = 0;
    }
    nv_events_free(v, k);
    nv__free(key);
    if (rc != NV_OK)
        entry_clear(x);
    return rc;
}

/*
 * An event this engine just appended as the stream's 'version'-th: when the
 * cache holds exactly the events before it, add it with its data as built
 * (no read, no parse). The data must not be changed afterwards. Takes
 * ev->data. Otherwise the next lookup reads it from the stream.
 */
void
nv__rcache_put(nv_engine *e, const char *run_id, nv_event *ev, json_t *data,
               int64_t version)
{
    nv__rcache *c = e->rcache;
    struct rc_entry *x;

    if (c == NULL || version < 1 || strlen(run_id) >= NV_ID_MAX)
        return;
    if (version == 1) {
        x = acquire(c, run_id);          /* a new run: cache it from here */
    } else {
        pthread_mutex_lock(&c->mu);
        HASH_FIND_STR(c->tab, run_id, x);
        if (x != NULL)
            x->refs++;
        pthread_mutex_unlock(&c->mu);
        if (x != NULL)
            pthread_mutex_lock(&x->mu);
    }
    if (x == NULL)
        return;
    if ((int64_t)x->n == version - 1) {
        json_t *d = data != NULL ? json_incref(data) : json_object();
        nv_event one = *ev;

        if (d != NULL && take_parsed(x, &one, d) == NV_OK)
            ev->data = NULL;
        else
            json_decref(d);
    }
    release(c, x);
}

int
nv__rcache_with(nv_engine *e, const char *run_id, nv__rcache_fn fn,
                void *ud, nv_error *err)
{
    struct rc_entry *x = e->rcache != NULL ? acquire(e->rcache, run_id)
                                           : NULL;
    int rc;

    if (x == NULL) {
        /* no cache: a private copy, read whole */
        struct rc_entry tmp;

        memset(&tmp, 0, sizeof(tmp));
        nv__strlcpy(tmp.run_id, run_id, sizeof(tmp.run_id));
        rc = refresh(e, &tmp, err);
        if (rc == NV_OK)
            rc = fn(ud, tmp.ev, (json_t *const *)tmp.data, tmp.n, err);
        entry_clear(&tmp);
        nv__free(tmp.ev);
        nv__free(tmp.data);
        return rc;
    }
    rc = refresh(e, x, err);
    if (rc == NV_OK)
        rc = fn(ud, x->ev, (json_t *const *)x->data, x->n, err);
    release(e->rcache, x);
    return rc;
}
