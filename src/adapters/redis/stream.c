/*
 * Redis stream adapter: a run stream is a Redis stream named as given (E-7,
 * "<p>:flow:<runId>"), appended by one Lua script that checks the expected
 * version, computes the id (E-2) and publishes the event in the same step:
 * flow.* events on the live channel <p>:live, where publish() sends
 * messages too, the other events on <p>:live:steps, and there only while
 * someone subscribes to it. Appends made at the same time by several
 * threads go out together, one script call for appends of many runs
 * (submit; this assumes one Redis node, not a Cluster, as the rest of
 * the adapters do). A subscription reads both channels (one of
 * flow events only, subscribe_flow, reads <p>:live only) on its own
 * connection and thread: one connection keeps the order of the two.
 * Payloads on <p>:live are length-prefixed fields ("<len>:<bytes>"):
 *   e stream id ts type runId flowName stepName stepId attempt hasData data
 *   m channel message
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/redis/conn.h"
#include "adapters/redis/gather.h"
#include "adapters/redis/scripts.h"
#include "core/util.h"

static const nv__redis_script append_script = {
    0, "stream_append", nv__redis_lua_stream_append,
    nv__redis_fn_stream_append, nv__redis_lib_stream,
};

static const nv__redis_script appendn_script = {
    1, "stream_appendn", nv__redis_lua_stream_appendn,
    nv__redis_fn_stream_appendn, nv__redis_lib_stream,
};

static const nv__redis_script listen_script = {
    2, "stream_listen", nv__redis_lua_stream_listen,
    nv__redis_fn_stream_listen, nv__redis_lib_stream,
};

static const nv__redis_script appendb_script = {
    3, "stream_appendb", nv__redis_lua_stream_appendb,
    nv__redis_fn_stream_appendb, nv__redis_lib_stream,
};

/*
 * Appends called at the same time by several threads (the workers of a
 * flow's steps, of many runs) are gathered into one script call
 * (stream_appendb), as the redis queue gathers its calls: Redis pays the
 * fixed cost of a call (~2.5 us of its CPU: the request, the function's
 * call, the reply) once per batch instead of once per append. An
 * append's own work (its ~14 arguments, XLEN, XADD: ~11 us) stays: on
 * the 3-step flows bench the script calls per flow fell from 13.4 to 7.0
 * while Redis's CPU per flow stayed within the noise. See submit.
 */

/* One caller's append waiting to be sent, or out. */
struct aop {
    nv__redis_gop   g;          /* first: its place on the list */
    const char     *stream;     /* as the engine gave it (notes) */
    char           *key;        /* its Redis key */
    const nv_event *evs;
    size_t          n;
    int64_t         now, expected;
    redisReply     *rep;        /* {1, length, id...} or {-6, length} */
    int             rc;
    nv_error        err;
};

struct rstream {
    nv__redis_pool *pool;
    char           *channel;    /* <p>:live */
    char           *steps;      /* <p>:live:steps */

    pthread_mutex_t mu;         /* guards calls */
    nv__redis_gather calls;     /* appends gathered (gather.h) */
};

struct rsub {
    nv__redis_sub    *sub;
    nv_stream_note_fn fn;
    void             *ud;
    struct rstream   *s;
    int               steps;    /* subscribed to s->steps too */
};

/*
 * A subscription to the steps channel just (re)started: tell the append
 * scripts, which keep whether anyone listens there instead of asking
 * PUBSUB NUMSUB at each append (stream_common.lua). A failure is left
 * alone: they ask again within 256 appends.
 */
static void
tell_listening(struct rstream *s)
{
    const char *av[1] = { s->steps };
    size_t al[1] = { strlen(s->steps) };
    redisReply *r = NULL;
    nv_error e = { 0 };

    if (nv__redis_eval(s->pool, &listen_script, s->steps, 1, 1, av, al, &r,
                       &e) == NV_OK)
        freeReplyObject(r);
}

/* The eight script arguments that describe one event to append. */
static void
args_event(nv__redis_args *a, const nv_event *ev)
{
    nv__redis_args_str(a, ev->type);
    nv__redis_args_str(a, ev->run_id);
    nv__redis_args_str(a, ev->flow_name);
    nv__redis_args_str(a, ev->step_name);
    nv__redis_args_str(a, ev->step_id);
    nv__redis_args_int(a, ev->attempt);
    nv__redis_args_str(a, ev->data ? "1" : "0");
    nv__redis_args_str(a, ev->data ? ev->data : "");
}

/*
 * A lone op, by the script of one append: stream_append for one event
 * (its reply {1, id, length} made {1, length, id} here), stream_appendn
 * for several. Cheaper for Redis than stream_appendb with one op (~14.1
 * against ~15.9 us of its CPU, redis-benchmark -P 16).
 */
static int
send_one(struct rstream *s, struct aop *o, redisReply **out, nv_error *err)
{
    nv__redis_args a;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&a);
    nv__redis_args_str(&a, o->key);
    nv__redis_args_int(&a, o->now);
    nv__redis_args_int(&a, o->expected);
    nv__redis_args_str(&a, s->channel);
    if (o->n == 1) {
        args_event(&a, o->evs);
        nv__redis_args_str(&a, o->stream);
        nv__redis_args_str(&a, s->steps);
    } else {
        nv__redis_args_str(&a, s->steps);
        nv__redis_args_str(&a, o->stream);
        nv__redis_args_int(&a, (int64_t)o->n);
        for (size_t k = 0; k < o->n; k++)
            args_event(&a, &o->evs[k]);
    }
    if (a.oom) {
        nv__redis_args_release(&a);
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    }
    rc = nv__redis_eval(s->pool, o->n == 1 ? &append_script : &appendn_script,
                        o->key, 1, a.n, a.v, a.len, &r, err);
    nv__redis_args_release(&a);
    if (rc != NV_OK)
        return rc;
    if (o->n == 1 && r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
        redisReply *id = r->element[1];

        r->element[1] = r->element[2];
        r->element[2] = id;
    }
    *out = r;
    return NV_OK;
}

/* Whether r is the reply of an op of n events (stream_appendb.lua). */
static int
reply_ok(const redisReply *r, size_t n)
{
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return r != NULL;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return 0;
    if (r->element[0]->integer < 0)
        return r->elements == 2;
    if (r->elements != 2 + n)
        return 0;
    for (size_t k = 0; k < n; k++) {
        if (r->element[2 + k]->type != REDIS_REPLY_STRING)
            return 0;
    }
    return 1;
}

/*
 * Send ops (a list of n) in one call; give each its reply (o->rep) or
 * error (o->rc, o->err). A call that fails as a whole (connection lost, a
 * Redis error) fails every op with its error, as the call of one would.
 * 'x' (may be NULL) is the stream's argument builder, used by one sender
 * at a time.
 */
static void
send_batch(struct rstream *s, struct aop *ops, int n, nv__redis_args *x)
{
#define NEXT(o) ((struct aop *)(o)->g.next)
    redisReply *r = NULL;
    nv_error err = { 0 };
    struct aop *o;
    int rc, mine = 0;

    if (n == 1) {
        ops->rc = send_one(s, ops, &ops->rep, &ops->err);
        return;
    }
    if (x == NULL) {
        x = nv__malloc(sizeof(*x));
        mine = 1;
    }
    if (x == NULL) {
        rc = nv__error(&err, NV_ENOMEM, "redis stream: out of memory");
    } else {
        nv__redis_args_init(x);
        for (o = ops; o != NULL; o = NEXT(o))
            nv__redis_args_str(x, o->key);
        nv__redis_args_str(x, s->channel);
        nv__redis_args_str(x, s->steps);
        nv__redis_args_int(x, n);
        for (o = ops; o != NULL; o = NEXT(o)) {
            nv__redis_args_str(x, o->stream);
            nv__redis_args_int(x, o->now);
            nv__redis_args_int(x, o->expected);
            nv__redis_args_int(x, (int64_t)o->n);
            for (size_t k = 0; k < o->n; k++)
                args_event(x, &o->evs[k]);
        }
        rc = x->oom ? nv__error(&err, NV_ENOMEM, "redis stream: out of memory")
           : nv__redis_eval(s->pool, &appendb_script, ops->key, n, x->n,
                            x->v, x->len, &r, &err);
        nv__redis_args_release(x);
        if (mine)
            nv__free(x);
    }
    /* check the whole reply first: every op gets its part, or an error */
    if (rc == NV_OK && (r->type != REDIS_REPLY_ARRAY ||
                        r->elements != (size_t)n))
        rc = nv__error(&err, NV_EBACKEND, "redis stream: unexpected reply");
    o = ops;
    for (int i = 0; rc == NV_OK && i < n; i++, o = NEXT(o)) {
        if (!reply_ok(r->element[i], o->n))
            rc = nv__error(&err, NV_EBACKEND, "redis stream: unexpected "
                           "reply");
    }
    o = ops;
    for (int i = 0; i < n; i++, o = NEXT(o)) {
        o->rc = rc;
        if (rc != NV_OK) {
            o->err = err;
            continue;
        }
        o->rep = r->element[i];
        r->element[i] = NULL;    /* now the op's */
        if (o->rep->type == REDIS_REPLY_ERROR) {
            /* as the call of one says it (conn.c) */
            if (strstr(o->rep->str, "WRONGTYPE") != NULL)
                o->rc = nv__error(&o->err, NV_EBACKEND, "redis key '%s' "
                                  "holds the wrong kind of value", o->key);
            else
                o->rc = nv__error(&o->err, NV_EBACKEND, "redis at %s: %s",
                                  s->pool->addr, o->rep->str);
            freeReplyObject(o->rep);
            o->rep = NULL;
        }
    }
    if (r != NULL)
        freeReplyObject(r);
#undef NEXT
}

/*
 * An append called while others are: the ops of the stream adapter go out
 * together (gather.h) in one stream_appendb call. Ops of one batch are
 * run in the order they came; batches out at once were concurrent calls
 * (a call that ended before another began was run by Redis before it).
 */
static void
gather_send(void *ctx, nv__redis_gop *first, int n, nv__redis_args *args)
{
    send_batch(ctx, (struct aop *)first, n, args);
}

static void
submit(struct rstream *s, struct aop *op)
{
    op->rep = NULL;
    op->g.next = NULL;
    op->g.k = nv__redis_parker_self();
    if (op->g.k == NULL) {
        send_batch(s, op, 1, NULL);
        return;
    }
    pthread_mutex_lock(&s->mu);
    /* (a batch of one goes by its own script: no builder) */
    nv__redis_gather_submit(&s->calls, &s->mu, &op->g, 2, gather_send, s);
}

/*
 * Append n events (n >= 1) to 'stream' at the expected version, through
 * submit; fill out[0..n) and *version as append / append_many say.
 */
static int op_result(struct aop *op, nv_event *out, int64_t *version,
                     nv_error *err);

static int
append_events(struct rstream *s, const char *stream, const nv_event *evs,
              size_t n, int64_t now, int64_t expected_version,
              nv_event *out, int64_t *version, nv_error *err)
{
    struct aop op;

    memset(&op, 0, sizeof(op));
    op.stream = stream;
    op.evs = evs;
    op.n = n;
    op.now = now;
    op.expected = expected_version;
    op.key = nv__redis_key(s->pool, stream);
    if (op.key == NULL)
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    submit(s, &op);
    nv__free(op.key);
    return op_result(&op, out, version, err);
}

/* The outcome of an op sent: out[0..op->n) and *version as append /
 * append_many say; frees its reply. */
static int
op_result(struct aop *op, nv_event *out, int64_t *version, nv_error *err)
{
    const char *stream = op->stream;
    const nv_event *evs = op->evs;
    size_t n = op->n, k;
    int64_t now = op->now, expected_version = op->expected;
    const redisReply *r;
    int rc;

    if (op->rc != NV_OK) {
        if (err != NULL)
            *err = op->err;
        return op->rc;
    }
    r = op->rep;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        rc = nv__error(err, NV_EBACKEND, "redis stream: unexpected reply");
    } else if (r->element[0]->integer < 0) {
        rc = nv__error(err, NV_ECONFLICT, "stream '%s' holds %lld events, "
                       "expected %lld", stream,
                       (long long)nv__redis_int(r->element[1]),
                       (long long)expected_version);
    } else if (r->elements != 2 + n) {
        rc = nv__error(err, NV_EBACKEND, "redis stream: unexpected reply");
    } else {
        rc = NV_OK;
        for (k = 0; out != NULL && k < n; k++) {
            if (nv_event_copy(&out[k], &evs[k]) != NV_OK)
                break;
            nv__strlcpy(out[k].id, r->element[2 + k]->str, sizeof(out[k].id));
            out[k].ts = now;
        }
        if (out != NULL && k < n) {
            /* appended, but the records cannot be handed out */
            while (k > 0)
                nv_event_release(&out[--k]);
            rc = nv__error(err, NV_ENOMEM, "redis stream: out of memory");
        }
        if (version != NULL)
            *version = nv__redis_int(r->element[1]);
    }
    freeReplyObject(op->rep);
    op->rep = NULL;
    return rc;
}

static int
rt_append(void *self, const char *stream, const nv_event *ev, int64_t now,
          int64_t expected_version, nv_event *out, int64_t *version,
          nv_error *err)
{
    return append_events(self, stream, ev, 1, now, expected_version, out,
                         version, err);
}

static int
rt_append_many(void *self, const char *stream, const nv_event *evs, size_t n,
               int64_t now, int64_t expected_version, nv_event *out,
               int64_t *version, nv_error *err)
{
    if (n == 0)
        return nv__error(err, NV_EINVAL, "append_many: no event");
    return append_events(self, stream, evs, n, now, expected_version, out,
                         version, err);
}

/* One XRANGE entry [id, [field, value, ...]] -> event. */
/*
 * The appends of a bulk start (nv_flow_start_many), each to its own
 * stream: sent in batches of NV__REDIS_GATHER_MAX as one stream_appendb
 * call each, past the gathering (their caller has them all at hand).
 */
static int
rt_append_each(void *self, const char *const *streams, const nv_event *evs,
               size_t n, int64_t now, const int64_t *expected, nv_event *out,
               int *rcs, nv_error *err)
{
    struct rstream *s = self;
    struct aop *ops;
    int first = NV_OK;

    if (n == 0)
        return NV_OK;
    ops = nv__calloc(n < NV__REDIS_GATHER_MAX ? n : NV__REDIS_GATHER_MAX,
                     sizeof(*ops));
    if (ops == NULL) {
        for (size_t i = 0; i < n; i++)
            rcs[i] = NV_ENOMEM;
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    }
    for (size_t at = 0; at < n; at += NV__REDIS_GATHER_MAX) {
        size_t m = n - at < NV__REDIS_GATHER_MAX ? n - at
                 : NV__REDIS_GATHER_MAX;
        int oom = 0;

        memset(ops, 0, m * sizeof(*ops));
        for (size_t i = 0; i < m; i++) {
            struct aop *o = &ops[i];

            o->stream = streams[at + i];
            o->evs = &evs[at + i];
            o->n = 1;
            o->now = now;
            o->expected = expected != NULL ? expected[at + i] : -1;
            o->key = nv__redis_key(s->pool, o->stream);
            o->g.next = i + 1 < m ? &ops[i + 1].g : NULL;
            oom |= o->key == NULL;
        }
        if (!oom)
            send_batch(s, ops, (int)m, NULL);
        for (size_t i = 0; i < m; i++) {
            struct aop *o = &ops[i];
            nv_error e1 = { 0 };

            if (oom) {
                o->rc = nv__error(&o->err, NV_ENOMEM, "redis stream: out "
                                  "of memory");
            }
            rcs[at + i] = op_result(o, out != NULL ? &out[at + i] : NULL,
                                    NULL, &e1);
            if (rcs[at + i] != NV_OK && first == NV_OK) {
                first = rcs[at + i];
                if (err != NULL)
                    *err = e1;
            }
            nv__free(o->key);
        }
    }
    nv__free(ops);
    return first;
}

static int
event_from(const redisReply *e, nv_event *ev)
{
    const redisReply *f;

    memset(ev, 0, sizeof(*ev));
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
        return -1;
    nv__strlcpy(ev->id, e->element[0]->str, sizeof(ev->id));
    f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str;
        const redisReply *v = f->element[i + 1];
        if (strcmp(k, "type") == 0)
            nv__strlcpy(ev->type, v->str, sizeof(ev->type));
        else if (strcmp(k, "runId") == 0)
            nv__strlcpy(ev->run_id, v->str, sizeof(ev->run_id));
        else if (strcmp(k, "flowName") == 0)
            nv__strlcpy(ev->flow_name, v->str, sizeof(ev->flow_name));
        else if (strcmp(k, "stepName") == 0)
            nv__strlcpy(ev->step_name, v->str, sizeof(ev->step_name));
        else if (strcmp(k, "stepId") == 0)
            nv__strlcpy(ev->step_id, v->str, sizeof(ev->step_id));
        else if (strcmp(k, "attempt") == 0)
            ev->attempt = atoi(v->str);
        else if (strcmp(k, "ts") == 0)
            ev->ts = strtoll(v->str, NULL, 10);
        else if (strcmp(k, "data") == 0 &&
                 (ev->data = nv__strndup(v->str, v->len)) == NULL)
            return -1;
    }
    return 0;
}

static int
rt_read(void *self, const char *stream, const char *after, int64_t limit,
        nv_event **out, size_t *n, nv_error *err)
{
    struct rstream *s = self;
    char start[NV_EVENT_ID_MAX + 2], *key;
    redisReply *r = NULL;
    nv_event *v;
    int rc;

    if (limit == 0) {
        *out = nv__calloc(1, sizeof(nv_event));
        *n = 0;
        return *out ? NV_OK : nv__error(err, NV_ENOMEM, "out of memory");
    }
    key = nv__redis_key(s->pool, stream);
    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    if (after == NULL || after[0] == '\0')
        snprintf(start, sizeof(start), "-");
    else
        snprintf(start, sizeof(start), "(%s", after);
    if (limit > 0)
        rc = nv__redis_cmdf(s->pool, key, &r, err,
                            "XRANGE %s %s + COUNT %lld", key, start,
                            (long long)limit);
    else
        rc = nv__redis_cmdf(s->pool, key, &r, err, "XRANGE %s %s +",
                            key, start);
    nv__free(key);
    if (rc != NV_OK)
        return rc;
    v = nv__calloc(r->elements ? r->elements : 1, sizeof(*v));
    if (v == NULL) {
        freeReplyObject(r);
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    }
    for (size_t i = 0; i < r->elements; i++) {
        if (event_from(r->element[i], &v[i]) != 0) {
            nv_events_free(v, i + 1);
            freeReplyObject(r);
            return nv__error(err, NV_ENOMEM, "redis stream: bad entry in '%s'",
                             stream);
        }
    }
    *out = v;
    *n = r->elements;
    freeReplyObject(r);
    return NV_OK;
}

static int
rt_length(void *self, const char *stream, int64_t *out, nv_error *err)
{
    struct rstream *s = self;
    char *key = nv__redis_key(s->pool, stream);
    redisReply *r = NULL;
    int rc;

    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    rc = nv__redis_cmdf(s->pool, key, &r, err, "XLEN %s", key);
    if (rc == NV_OK) {
        *out = r->integer;
        freeReplyObject(r);
    }
    nv__free(key);
    return rc;
}

static int
rt_del(void *self, const char *stream, nv_error *err)
{
    struct rstream *s = self;
    char *key = nv__redis_key(s->pool, stream);
    int rc;

    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    rc = nv__redis_cmdf(s->pool, key, NULL, err, "DEL %s", key);
    nv__free(key);
    return rc;
}

/* del_many: the DELs in one pipeline per 256 streams. */
static int
rt_del_many(void *self, const char *const *streams, size_t n, nv_error *err)
{
    struct rstream *s = self;
    int rc = NV_OK;

    for (size_t i = 0; rc == NV_OK && i < n; i += 256) {
        size_t k = n - i < 256 ? n - i : 256;
        const char **av = nv__calloc(2 * k, sizeof(*av));
        const char ***argv = nv__calloc(k, sizeof(*argv));
        int *argc = nv__calloc(k, sizeof(*argc));
        redisReply **out = nv__calloc(k, sizeof(*out));
        char **keys = nv__calloc(k, sizeof(*keys));

        if (av == NULL || argv == NULL || argc == NULL || out == NULL ||
            keys == NULL)
            rc = nv__error(err, NV_ENOMEM, "redis stream: out of memory");
        for (size_t j = 0; rc == NV_OK && j < k; j++) {
            if ((keys[j] = nv__redis_key(s->pool, streams[i + j])) == NULL) {
                rc = nv__error(err, NV_ENOMEM, "redis stream: out of memory");
                break;
            }
            av[2 * j] = "DEL";
            av[2 * j + 1] = keys[j];
            argv[j] = &av[2 * j];
            argc[j] = 2;
        }
        if (rc == NV_OK)
            rc = nv__redis_pipeline(s->pool, keys[0], k, argc, argv, NULL,
                                    out, err);
        for (size_t j = 0; rc == NV_OK && j < k; j++)
            freeReplyObject(out[j]);
        for (size_t j = 0; keys != NULL && j < k; j++)
            nv__free(keys[j]);
        nv__free(keys);
        nv__free(out);
        nv__free(argc);
        nv__free(argv);
        nv__free(av);
    }
    return rc;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 'prefix' as a SCAN MATCH pattern: glob characters escaped, then '*'. */
static char *
glob_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    char *g = nv__malloc(2 * n + 2), *o = g;

    if (g == NULL)
        return NULL;
    for (const char *p = prefix; *p != '\0'; p++) {
        if (strchr("*?[]\\", *p) != NULL)
            *o++ = '\\';
        *o++ = *p;
    }
    *o++ = '*';
    *o = '\0';
    return g;
}

static int
rt_names(void *self, const char *prefix, char ***out, size_t *n,
         nv_error *err)
{
    struct rstream *s = self;
    char *kp = nv__redis_key(s->pool, prefix != NULL ? prefix : "");
    char *pat = kp != NULL ? glob_prefix(kp) : NULL;
    int added = kp != NULL && strcmp(kp, prefix != NULL ? prefix : "") != 0;
    char **v = NULL, cursor[32] = "0";
    size_t k = 0, cap = 0;
    int rc = NV_OK;

    if (pat == NULL)
        rc = nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    do {
        redisReply *r = NULL;

        if (rc != NV_OK)
            break;
        rc = nv__redis_cmdf(s->pool, kp, &r, err,
                            "SCAN %s MATCH %s COUNT 1000 TYPE stream",
                            cursor, pat);
        if (rc != NV_OK)
            break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            rc = nv__error(err, NV_EBACKEND, "redis stream: unexpected SCAN "
                           "reply");
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; rc == NV_OK && i < r->element[1]->elements; i++) {
            const redisReply *e = r->element[1]->element[i];
            char **nv;

            if (e->type != REDIS_REPLY_STRING)
                continue;
            if (k == cap) {
                cap = cap ? cap * 2 : 64;
                nv = nv__realloc(v, cap * sizeof(*v));
                if (nv == NULL) {
                    rc = nv__error(err, NV_ENOMEM, "redis stream: out of "
                                   "memory");
                    break;
                }
                v = nv;
            }
            if ((v[k] = nv__redis_unkey(s->pool, e->str, added)) == NULL)
                rc = nv__error(err, NV_ENOMEM, "redis stream: out of memory");
            else
                k++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    nv__free(pat);
    nv__free(kp);
    if (rc != NV_OK) {
        nv_strv_free(v, k);
        return rc;
    }
    /* SCAN may return a key twice */
    if (k > 0)
        qsort(v, k, sizeof(*v), cmp_str);
    {
        size_t w = 0;

        for (size_t i = 0; i < k; i++) {
            if (w > 0 && strcmp(v[w - 1], v[i]) == 0)
                nv__free(v[i]);
            else
                v[w++] = v[i];
        }
        k = w;
    }
    *out = v;
    *n = k;
    return NV_OK;
}

static int
rt_publish(void *self, const char *channel, const char *message,
           nv_error *err)
{
    struct rstream *s = self;
    size_t cl = strlen(channel), ml = strlen(message);
    char *p = nv__asprintf("1:m%zu:%s%zu:%s", cl, channel, ml, message);
    int rc;

    if (p == NULL)
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    rc = nv__redis_cmdf(s->pool, s->channel, NULL, err, "PUBLISH %s %s",
                        s->channel, p);
    nv__free(p);
    return rc;
}

/* Copy a field into a NUL-terminated buffer (truncating). */
static void
field(char *dst, size_t size, const char *s, size_t n)
{
    if (n >= size)
        n = size - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void
on_live(void *ud, const char *channel, const char *msg, size_t len)
{
    struct rsub *rs = ud;
    const char *p = msg, *end = msg + len, *f[12];
    size_t fl[12], nf = 0;

    (void)channel;
    if (msg == NULL) {
        /* lost, or reconnected: nothing to replay (live only) */
        if (rs->steps && nv__redis_sub_connected(rs->sub))
            tell_listening(rs->s);
        return;
    }
    while (nf < 12 && nv__redis_ns_next(&p, end, &f[nf], &fl[nf]) == 0)
        nf++;
    if (nf == 3 && fl[0] == 1 && f[0][0] == 'm') {
        char *ch = nv__strndup(f[1], fl[1]);
        char *m = nv__strndup(f[2], fl[2]);
        nv_stream_note note = { .channel = ch, .message = m };
        if (ch != NULL && m != NULL)
            rs->fn(rs->ud, &note);
        nv__free(ch);
        nv__free(m);
    } else if (nf == 12 && fl[0] == 1 && f[0][0] == 'e') {
        nv_event ev;
        char *stream = nv__strndup(f[1], fl[1]);
        char num[32];
        nv_stream_note note = { .stream = stream, .event = &ev };

        memset(&ev, 0, sizeof(ev));
        field(ev.id, sizeof(ev.id), f[2], fl[2]);
        field(num, sizeof(num), f[3], fl[3]);
        ev.ts = strtoll(num, NULL, 10);
        field(ev.type, sizeof(ev.type), f[4], fl[4]);
        field(ev.run_id, sizeof(ev.run_id), f[5], fl[5]);
        field(ev.flow_name, sizeof(ev.flow_name), f[6], fl[6]);
        field(ev.step_name, sizeof(ev.step_name), f[7], fl[7]);
        field(ev.step_id, sizeof(ev.step_id), f[8], fl[8]);
        field(num, sizeof(num), f[9], fl[9]);
        ev.attempt = atoi(num);
        if (fl[10] == 1 && f[10][0] == '1')
            ev.data = nv__strndup(f[11], fl[11]);
        if (stream != NULL && (ev.data != NULL || f[10][0] != '1'))
            rs->fn(rs->ud, &note);
        nv__free(ev.data);
        nv__free(stream);
    }
}

static int
rt_subscribe_flow(void *self, int flow_only, nv_stream_note_fn fn, void *ud,
                  void **handle, nv_error *err)
{
    struct rstream *s = self;
    struct rsub *rs = nv__calloc(1, sizeof(*rs));
    const char *ch[2] = { s->channel, s->steps };
    int rc;

    if (rs == NULL)
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    rs->fn = fn;
    rs->ud = ud;
    rs->s = s;
    rs->steps = !flow_only;
    rc = nv__redis_sub_start(s->pool, ch, flow_only ? 1 : 2, on_live, rs,
                             &rs->sub, err);
    if (rc != NV_OK) {
        nv__free(rs);
        return rc;
    }
    if (rs->steps)
        tell_listening(s);
    *handle = rs;
    return NV_OK;
}

static int
rt_subscribe(void *self, nv_stream_note_fn fn, void *ud, void **handle,
             nv_error *err)
{
    return rt_subscribe_flow(self, 0, fn, ud, handle, err);
}

static void
rt_unsubscribe(void *self, void *handle)
{
    struct rsub *rs = handle;

    (void)self;
    if (rs == NULL)
        return;
    nv__redis_sub_stop(rs->sub);
    nv__free(rs);
}

static int
rt_ping(void *self, nv_error *err)
{
    return nv__redis_cmdf(((struct rstream *)self)->pool, NULL, NULL, err,
                          "PING");
}

static void
rt_close(void *self)
{
    struct rstream *s = self;

    if (s == NULL)
        return;
    nv__redis_pool_close(s->pool);
    nv__free(s->channel);
    nv__free(s->steps);
    nv__redis_gather_free(&s->calls);
    pthread_mutex_destroy(&s->mu);
    nv__free(s);
}

static const nv_stream_ops redis_stream_ops = {
    .name = "redis",
    .append = rt_append,
    .read = rt_read,
    .length = rt_length,
    .del = rt_del,
    .del_many = rt_del_many,
    .names = rt_names,
    .publish = rt_publish,
    .subscribe = rt_subscribe,
    .unsubscribe = rt_unsubscribe,
    .subscribe_flow = rt_subscribe_flow,
    .append_many = rt_append_many,
    .append_each = rt_append_each,
    .ping = rt_ping,
    .close = rt_close,
};

int
nv_redis_stream_open(const char *settings_json, nv_stream *out, nv_error *err)
{
    struct rstream *s = nv__calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "redis stream: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    rc = nv__redis_pool_open(settings_json, "stream", &s->pool, err);
    if (rc != NV_OK)
        goto fail;
    s->channel = nv__asprintf("%s:live", s->pool->prefix);
    s->steps = nv__asprintf("%s:live:steps", s->pool->prefix);
    if (s->channel == NULL || s->steps == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis stream: out of memory");
        goto fail;
    }
    out->ops = &redis_stream_ops;
    out->self = s;
    return NV_OK;
fail:
    rt_close(s);
    return rc;
}
