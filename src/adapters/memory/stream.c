/*
 * Memory stream adapter: one growable array of compact events per stream, ids
 * "<ms>-<seq>" (E-2), expected-version appends (F-13), and live
 * notifications to subscribers in append order. Implements nv_stream_ops
 * of include/nvent/adapter.h; nothing survives the process.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/memory/mem.h"

/* ---- Data ---- */

/*
 * An event kept compact: its strings packed in one block (type, run_id,
 * flow_name, step_name, step_id, then data) instead of the fixed-size
 * nv_event (about 600 bytes) it is handed out as. A stream of ten events
 * is then a few hundred bytes, not ten kilobytes of mostly zeros.
 */
enum { F_TYPE, F_RUN, F_FLOW, F_STEP, F_STEP_ID, F_DATA, F_N };

struct mevent {
    int64_t  ms, seq;           /* the id, parsed */
    int64_t  ts;
    int      attempt;
    int      has_data;
    uint32_t off[F_N];          /* of each string in blk */
    char    *blk;
};

struct mstream {
    char          *name;
    struct mevent *v;
    size_t         n, cap;      /* n = the stream's version */
    UT_hash_handle hh;
};

/* A notification waiting for delivery; owns its strings. */
struct note {
    struct note *next;
    uint64_t     seq;           /* delivery order, from 1 */
    char        *stream;        /* event note: the stream key */
    nv_event     ev;
    int          has_event;
    char        *channel;       /* message note */
    char        *message;
};

struct sub {
    uint64_t          id;       /* the handle; ids grow, 'subs' is sorted */
    uint64_t          from_seq; /* first note seq it receives */
    int               flow_only;   /* messages and flow.* events only */
    nv_stream_note_fn fn;
    void             *ud;
};

/*
 * Streams live in shards by name, each with its own lock: appends to
 * different runs do not wait for each other (one lock for all streams was
 * the most contended lock of a flow benchmark).
 */
#define MS_SHARDS 16

struct mshard {
    pthread_mutex_t mu;         /* guards 'streams' */
    struct mstream *streams;
    char            pad[64];    /* shards on their own cache lines */
};

/*
 * Notifications: appends queue a note under their shard's 'mu' (so the
 * queue is in each stream's append order), then the appending thread
 * delivers the queue unless another thread is already doing so; that
 * thread then delivers it too. A callback runs with no lock held, so it
 * may append or publish (its note is delivered after it returns).
 * Unsubscribe waits while the subscription's callback runs ('running').
 */
struct mstreams {
    struct mshard   sh[MS_SHARDS];
    atomic_size_t   listening;  /* nsubs, read without nmu by appends */
    atomic_size_t   listening_all;  /* those not flow_only */

    pthread_mutex_t nmu;        /* guards everything below; after the
                                   shards' 'mu' */
    pthread_cond_t  ncv;        /* 'running' changed */
    struct note    *head, *tail;
    uint64_t        next_seq;
    int             delivering; /* a thread drains the queue */
    pthread_t       deliverer;
    struct sub     *subs;
    size_t          nsubs, capsubs;
    uint64_t        next_sub_id;
    uint64_t        running;    /* sub whose callback runs, 0 = none */
};

/* ---- Notifications ---- */

static void
note_free(struct note *n)
{
    if (n == NULL)
        return;
    nv__free(n->stream);
    nv__free(n->ev.data);
    nv__free(n->channel);
    nv__free(n->message);
    nv__free(n);
}

/* Queue a note unless nobody listens; takes ownership. Under nmu. */
static void
note_push(struct mstreams *s, struct note *n)
{
    n->seq = ++s->next_seq;
    if (s->tail != NULL)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
}

static int
is_flow_type(const char *type)
{
    return strncmp(type, "flow.", 5) == 0;
}

/* Deliver one note to every subscription. Called and returns under nmu. */
static void
note_deliver(struct mstreams *s, const struct note *n)
{
    nv_stream_note view = {
        .stream = n->has_event ? n->stream : NULL,
        .event = n->has_event ? &n->ev : NULL,
        .channel = n->channel,
        .message = n->message,
    };
    uint64_t last = 0;

    for (;;) {
        struct sub cur = { 0 };

        for (size_t i = 0; i < s->nsubs; i++) {
            if (s->subs[i].id > last) {
                cur = s->subs[i];
                break;
            }
        }
        if (cur.id == 0)
            break;
        last = cur.id;
        if (n->seq < cur.from_seq ||
            (cur.flow_only && n->has_event && !is_flow_type(n->ev.type)))
            continue;
        s->running = cur.id;
        pthread_mutex_unlock(&s->nmu);
        cur.fn(cur.ud, &view);
        pthread_mutex_lock(&s->nmu);
        s->running = 0;
        pthread_cond_broadcast(&s->ncv);
    }
}

/* Drain the note queue unless another thread already is. */
static void
notes_drain(struct mstreams *s)
{
    pthread_mutex_lock(&s->nmu);
    if (s->delivering) {
        pthread_mutex_unlock(&s->nmu);
        return;
    }
    s->delivering = 1;
    s->deliverer = pthread_self();
    while (s->head != NULL) {
        struct note *n = s->head;

        s->head = n->next;
        if (s->head == NULL)
            s->tail = NULL;
        note_deliver(s, n);
        note_free(n);
    }
    s->delivering = 0;
    pthread_mutex_unlock(&s->nmu);
}

/* ---- Streams ---- */

/* The shard of stream 'name'. */
static struct mshard *
shard_of(struct mstreams *s, const char *name)
{
    uint32_t h = 2166136261u;

    for (const char *p = name; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &s->sh[(h ^ (h >> 16)) % MS_SHARDS];
}

static struct mstream *
stream_lookup(struct mshard *s, const char *name, int create)
{
    struct mstream *st;
    int ok;

    MEM_HASH_FIND(s->streams, name, st);
    if (st != NULL || !create)
        return st;
    st = nv__calloc(1, sizeof(*st));
    if (st == NULL || (st->name = nv__strdup(name)) == NULL)
        goto fail;
    MEM_HASH_ADD(s->streams, st, name, ok);
    if (ok)
        return st;
fail:
    if (st != NULL)
        nv__free(st->name);
    nv__free(st);
    return NULL;
}

static void
stream_free(struct mshard *s, struct mstream *st)
{
    HASH_DEL(s->streams, st);
    for (size_t i = 0; i < st->n; i++)
        nv__free(st->v[i].blk);
    nv__free(st->v);
    nv__free(st->name);
    nv__free(st);
}

/* A note for subscribers of an appended event, or NULL (none / OOM). */
static int mevent_out(const struct mevent *me, nv_event *out);

static struct note *
event_note(struct mstreams *s, const char *stream, const struct mevent *ev)
{
    struct note *n;

    if (atomic_load(&s->listening) == 0 ||
        (atomic_load(&s->listening_all) == 0 &&
         !is_flow_type(ev->blk + ev->off[F_TYPE])))
        return NULL;
    pthread_mutex_lock(&s->nmu);
    n = s->nsubs > 0 ? nv__calloc(1, sizeof(*n)) : NULL;
    if (n != NULL) {
        n->has_event = 1;
        n->stream = nv__strdup(stream);
        if (n->stream == NULL || mevent_out(ev, &n->ev) != NV_OK) {
            note_free(n);
            n = NULL;
        }
    }
    if (n != NULL)
        note_push(s, n);
    pthread_mutex_unlock(&s->nmu);
    return n;
}

/* "<ms>-<seq>" without printf (an append's main cost otherwise). */
static void
format_id(char *buf, size_t size, int64_t ms, int64_t seq)
{
    char tmp[48];
    size_t n = 0;
    int64_t parts[2] = { seq, ms };

    if (ms < 0 || seq < 0 || size < 42) {
        snprintf(buf, size, "%" PRId64 "-%" PRId64, ms, seq);
        return;
    }
    for (int p = 0; p < 2; p++) {
        int64_t v = parts[p];

        if (p == 1)
            tmp[n++] = '-';
        do {
            tmp[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v > 0);
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
}

/* Pack ev's strings into me (id and ts set by the caller). */
static int
mevent_set(struct mevent *me, const nv_event *ev)
{
    const char *f[F_N] = { ev->type, ev->run_id, ev->flow_name,
                           ev->step_name, ev->step_id, ev->data };
    const size_t max[F_N] = { sizeof(ev->type), sizeof(ev->run_id),
                              sizeof(ev->flow_name), sizeof(ev->step_name),
                              sizeof(ev->step_id), SIZE_MAX };
    size_t len[F_N], total = 0;

    for (int i = 0; i < F_N; i++) {
        len[i] = f[i] == NULL ? 0 : strnlen(f[i], max[i] - 1);
        total += len[i] + 1;
    }
    if (total > UINT32_MAX || (me->blk = nv__malloc(total)) == NULL)
        return NV_ENOMEM;
    total = 0;
    for (int i = 0; i < F_N; i++) {
        me->off[i] = (uint32_t)total;
        if (len[i] > 0)
            memcpy(me->blk + total, f[i], len[i]);
        me->blk[total + len[i]] = '\0';
        total += len[i] + 1;
    }
    me->has_data = ev->data != NULL;
    me->attempt = ev->attempt;
    return NV_OK;
}

/* The nv_event of me, its data copied (released with nv_event_release). */
static int
mevent_out(const struct mevent *me, nv_event *out)
{
    char *const dst[F_DATA] = { out->type, out->run_id, out->flow_name,
                                out->step_name, out->step_id };
    const size_t size[F_DATA] = { sizeof(out->type), sizeof(out->run_id),
                                  sizeof(out->flow_name),
                                  sizeof(out->step_name),
                                  sizeof(out->step_id) };
    char *data = NULL;

    if (me->has_data &&
        (data = nv__strdup(me->blk + me->off[F_DATA])) == NULL)
        return NV_ENOMEM;
    memset(out->id, 0, sizeof(out->id));
    format_id(out->id, sizeof(out->id), me->ms, me->seq);
    out->ts = me->ts;
    out->attempt = me->attempt;
    out->data = data;
    for (int i = 0; i < F_DATA; i++) {
        const char *src = me->blk + me->off[i];
        size_t n = strlen(src);

        memcpy(dst[i], src, n + 1);
        memset(dst[i] + n + 1, 0, size[i] - n - 1);
    }
    return NV_OK;
}

static int
mem_append_many(void *self, const char *stream, const nv_event *evs,
                size_t nev, int64_t now, int64_t expected_version,
                nv_event *out, int64_t *version, nv_error *err)
{
    struct mstreams *s = self;
    struct mshard *sh = shard_of(s, stream);
    struct mstream *st;
    struct mevent *me;
    int64_t ms, seq;
    size_t base = 0;
    int rc = NV_OK, notify = 0;

    pthread_mutex_lock(&sh->mu);
    st = stream_lookup(sh, stream, 0);
    if (expected_version >= 0 && (int64_t)(st ? st->n : 0) != expected_version) {
        rc = nv__error(err, NV_ECONFLICT, "stream '%s' holds %zu events, "
                       "expected %" PRId64, stream, st ? st->n : 0,
                       expected_version);
        goto out;
    }
    if (st == NULL && (st = stream_lookup(sh, stream, 1)) == NULL)
        goto oom;
    if (st->n + nev > st->cap) {
        /* 12 compact events stay a small allocation (< 1 KB, malloc's
         * fast bins): a short flow's stream never grows */
        size_t cap = st->cap ? st->cap * 2 : 12;
        struct mevent *v;

        while (cap < st->n + nev)
            cap *= 2;
        v = nv__realloc(st->v, cap * sizeof(*v));
        if (v == NULL)
            goto oom;
        st->v = v;
        st->cap = cap;
    }
    base = st->n;
    for (size_t k = 0; k < nev; k++) {
        /* E-2: ms never goes back; seq grows within one ms. */
        ms = now;
        seq = 0;
        if (st->n > 0) {
            const struct mevent *last = &st->v[st->n - 1];

            if (ms <= last->ms) {
                ms = last->ms;
                seq = last->seq + 1;
            }
        }
        me = &st->v[st->n];
        if (mevent_set(me, &evs[k]) != NV_OK)
            goto undo;
        me->ms = ms;
        me->seq = seq;
        me->ts = now;
        if (out != NULL && mevent_out(me, &out[k]) != NV_OK) {
            nv__free(me->blk);
            goto undo;
        }
        st->n++;
    }
    if (version != NULL)
        *version = (int64_t)st->n;
    for (size_t k = base; k < st->n; k++)
        notify |= event_note(s, stream, &st->v[k]) != NULL;
    goto out;
undo:
    /* all or none */
    while (st->n > base) {
        st->n--;
        nv__free(st->v[st->n].blk);
        if (out != NULL)
            nv_event_release(&out[st->n - base]);
    }
oom:
    rc = nv__error(err, NV_ENOMEM, "memory stream: out of memory");
out:
    if (st != NULL && st->n == 0)
        stream_free(sh, st);
    pthread_mutex_unlock(&sh->mu);
    if (notify)
        notes_drain(s);
    return rc;
}

static int
mem_append(void *self, const char *stream, const nv_event *ev, int64_t now,
           int64_t expected_version, nv_event *out, int64_t *version,
           nv_error *err)
{
    return mem_append_many(self, stream, ev, 1, now, expected_version, out,
                           version, err);
}

static int
mem_read(void *self, const char *stream, const char *after, int64_t limit,
         nv_event **out, size_t *n, nv_error *err)
{
    struct mstreams *s = self;
    struct mshard *sh = shard_of(s, stream);
    struct mstream *st;
    int64_t ams = -1, aseq = -1;
    size_t lo = 0, cnt = 0;
    nv_event *v = NULL;
    int rc = NV_OK;

    if (after != NULL && *after != '\0' &&
        nv__event_id_parse(after, &ams, &aseq) != 0)
        return nv__error(err, NV_EINVAL, "invalid event id '%s'", after);
    pthread_mutex_lock(&sh->mu);
    st = stream_lookup(sh, stream, 0);
    if (st != NULL) {
        size_t hi = st->n;

        /* first event with id > after */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const struct mevent *e = &st->v[mid];

            if (e->ms < ams || (e->ms == ams && e->seq <= aseq))
                lo = mid + 1;
            else
                hi = mid;
        }
        cnt = st->n - lo;
        if (limit >= 0 && (uint64_t)limit < cnt)
            cnt = (size_t)limit;
    }
    if (cnt > 0 && (v = nv__calloc(cnt, sizeof(*v))) == NULL)
        rc = NV_ENOMEM;
    for (size_t i = 0; rc == NV_OK && i < cnt; i++) {
        if (mevent_out(&st->v[lo + i], &v[i]) != NV_OK) {
            nv_events_free(v, i);
            v = NULL;
            rc = NV_ENOMEM;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    if (rc != NV_OK)
        return nv__error(err, rc, "memory stream: out of memory");
    *out = v;
    *n = cnt;
    return NV_OK;
}

static int
mem_length(void *self, const char *stream, int64_t *out, nv_error *err)
{
    struct mshard *sh = shard_of(self, stream);
    struct mstream *st;

    (void)err;
    pthread_mutex_lock(&sh->mu);
    st = stream_lookup(sh, stream, 0);
    *out = st ? (int64_t)st->n : 0;
    pthread_mutex_unlock(&sh->mu);
    return NV_OK;
}

static int
mem_del(void *self, const char *stream, nv_error *err)
{
    struct mshard *sh = shard_of(self, stream);
    struct mstream *st;

    (void)err;
    pthread_mutex_lock(&sh->mu);
    if ((st = stream_lookup(sh, stream, 0)) != NULL)
        stream_free(sh, st);
    pthread_mutex_unlock(&sh->mu);
    return NV_OK;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
mem_names(void *self, const char *prefix, char ***out, size_t *n,
          nv_error *err)
{
    struct mstreams *s = self;
    size_t plen = prefix != NULL ? strlen(prefix) : 0, k = 0, cap = 0;
    struct mstream *st, *tmp;
    char **v = NULL;

    for (int i = 0; i < MS_SHARDS; i++) {
        struct mshard *sh = &s->sh[i];

        pthread_mutex_lock(&sh->mu);
        HASH_ITER(hh, sh->streams, st, tmp) {
            if (st->n == 0 ||
                strncmp(st->name, prefix ? prefix : "", plen) != 0)
                continue;
            if (k == cap) {
                size_t c = cap ? cap * 2 : 16;
                char **w = nv__realloc(v, c * sizeof(*w));

                if (w == NULL)
                    goto oom;
                v = w;
                cap = c;
            }
            if ((v[k] = nv__strdup(st->name)) == NULL)
                goto oom;
            k++;
            continue;
oom:
            pthread_mutex_unlock(&sh->mu);
            nv_strv_free(v, k);
            return nv__error(err, NV_ENOMEM, "memory stream: out of memory");
        }
        pthread_mutex_unlock(&sh->mu);
    }
    if (v == NULL && (v = nv__calloc(1, sizeof(*v))) == NULL)
        return nv__error(err, NV_ENOMEM, "memory stream: out of memory");
    qsort(v, k, sizeof(*v), cmp_str);
    *out = v;
    *n = k;
    return NV_OK;
}

static int
mem_publish(void *self, const char *channel, const char *message,
            nv_error *err)
{
    struct mstreams *s = self;
    struct note *n = NULL;
    int rc = NV_OK;

    for (int i = 0; i < MS_SHARDS; i++)     /* orders it with appends */
        pthread_mutex_lock(&s->sh[i].mu);
    pthread_mutex_lock(&s->nmu);
    if (s->nsubs > 0) {
        n = nv__calloc(1, sizeof(*n));
        if (n != NULL) {
            n->channel = nv__strdup(channel);
            n->message = nv__strdup(message);
            if (n->channel == NULL || n->message == NULL) {
                note_free(n);
                n = NULL;
            }
        }
        if (n == NULL)
            rc = nv__error(err, NV_ENOMEM, "memory stream: out of memory");
        else
            note_push(s, n);
    }
    pthread_mutex_unlock(&s->nmu);
    for (int i = MS_SHARDS - 1; i >= 0; i--)
        pthread_mutex_unlock(&s->sh[i].mu);
    if (n != NULL)
        notes_drain(s);
    return rc;
}

/* ---- Subscriptions ---- */

static int
mem_subscribe_flow(void *self, int flow_only, nv_stream_note_fn fn, void *ud,
                   void **handle, nv_error *err)
{
    struct mstreams *s = self;
    int rc = NV_OK;

    pthread_mutex_lock(&s->nmu);
    if (s->nsubs == s->capsubs) {
        size_t cap = s->capsubs ? s->capsubs * 2 : 4;
        struct sub *v = nv__realloc(s->subs, cap * sizeof(*v));

        if (v == NULL) {
            rc = nv__error(err, NV_ENOMEM, "memory stream: out of memory");
            goto out;
        }
        s->subs = v;
        s->capsubs = cap;
    }
    atomic_fetch_add(&s->listening, 1);
    if (!flow_only)
        atomic_fetch_add(&s->listening_all, 1);
    s->subs[s->nsubs++] = (struct sub){
        .id = ++s->next_sub_id,
        .from_seq = s->next_seq + 1,
        .flow_only = flow_only != 0,
        .fn = fn,
        .ud = ud,
    };
    *handle = (void *)(uintptr_t)s->next_sub_id;
out:
    pthread_mutex_unlock(&s->nmu);
    return rc;
}

static int
mem_subscribe(void *self, nv_stream_note_fn fn, void *ud, void **handle,
              nv_error *err)
{
    return mem_subscribe_flow(self, 0, fn, ud, handle, err);
}

static void
mem_unsubscribe(void *self, void *handle)
{
    struct mstreams *s = self;
    uint64_t id = (uint64_t)(uintptr_t)handle;

    if (s == NULL || id == 0)
        return;
    pthread_mutex_lock(&s->nmu);
    for (size_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id == id) {
            if (!s->subs[i].flow_only)
                atomic_fetch_sub(&s->listening_all, 1);
            memmove(&s->subs[i], &s->subs[i + 1],
                    (s->nsubs - i - 1) * sizeof(s->subs[0]));
            s->nsubs--;
            atomic_fetch_sub(&s->listening, 1);
            break;
        }
    }
    /* After return the callback must not run: wait for a running one,
     * unless it is this very thread (a callback unsubscribing itself). */
    while (s->running == id &&
           !(s->delivering && pthread_equal(s->deliverer, pthread_self())))
        pthread_cond_wait(&s->ncv, &s->nmu);
    pthread_mutex_unlock(&s->nmu);
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
mem_close(void *self)
{
    struct mstreams *s = self;

    if (s == NULL)
        return;
    for (int i = 0; i < MS_SHARDS; i++) {
        while (s->sh[i].streams != NULL)
            stream_free(&s->sh[i], s->sh[i].streams);
        pthread_mutex_destroy(&s->sh[i].mu);
    }
    while (s->head != NULL) {
        struct note *n = s->head;

        s->head = n->next;
        note_free(n);
    }
    nv__free(s->subs);
    pthread_cond_destroy(&s->ncv);
    pthread_mutex_destroy(&s->nmu);
    nv__free(s);
}

static const nv_stream_ops mem_stream_ops = {
    .name = "memory",
    .append = mem_append,
    .read = mem_read,
    .length = mem_length,
    .del = mem_del,
    .names = mem_names,
    .publish = mem_publish,
    .subscribe = mem_subscribe,
    .unsubscribe = mem_unsubscribe,
    .subscribe_flow = mem_subscribe_flow,
    .append_many = mem_append_many,
    .ping = mem_ping,
    .close = mem_close,
};

int
nv_memory_stream_open(const char *settings_json, nv_stream *out,
                      nv_error *err)
{
    struct mstreams *s;

    (void)settings_json;   /* the memory stream has no settings */
    s = nv__calloc(1, sizeof(*s));
    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "memory stream: out of memory");
    for (int i = 0; i < MS_SHARDS; i++)
        pthread_mutex_init(&s->sh[i].mu, NULL);
    pthread_mutex_init(&s->nmu, NULL);
    pthread_cond_init(&s->ncv, NULL);
    out->ops = &mem_stream_ops;
    out->self = s;
    return NV_OK;
}
