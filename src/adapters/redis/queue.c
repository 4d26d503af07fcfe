/*
 * Redis queue adapter: every state change of a job is one Lua script
 * (src/adapters/redis/lua/queue_*.lua, key layout drawn in
 * queue_common.lua) run on the keys of one queue, which share the hash tag
 * {<prefix>:q:<queue>}. Waiters are woken through pub/sub: each script
 * that makes a job runnable publishes the queue name on <prefix>:q:wake
 * (a batch that made n > 1 jobs runnable: the name, a NUL, then n).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/redis/conn.h"
#include "adapters/redis/gather.h"
#include "adapters/redis/scripts.h"
#include "core/util.h"

enum {
    S_BATCH, S_EXTEND, S_PROGRESS, S_LOG, S_GET, S_LIST,
    S_PAUSE, S_REMOVE, S_RETRY, S_REAP,
};

static const nv__redis_script scripts[] = {
    [S_EXTEND]   = { S_EXTEND,   "queue_extend",   nv__redis_lua_queue_extend,
                     nv__redis_fn_queue_extend, nv__redis_lib_queue },
    [S_PROGRESS] = { S_PROGRESS, "queue_progress", nv__redis_lua_queue_progress,
                     nv__redis_fn_queue_progress, nv__redis_lib_queue },
    [S_LOG]      = { S_LOG,      "queue_log",      nv__redis_lua_queue_log,
                     nv__redis_fn_queue_log, nv__redis_lib_queue },
    [S_GET]      = { S_GET,      "queue_get",      nv__redis_lua_queue_get,
                     nv__redis_fn_queue_get, nv__redis_lib_queue },
    [S_LIST]     = { S_LIST,     "queue_list",     nv__redis_lua_queue_list,
                     nv__redis_fn_queue_list, nv__redis_lib_queue },
    [S_PAUSE]    = { S_PAUSE,    "queue_pause",    nv__redis_lua_queue_pause,
                     nv__redis_fn_queue_pause, nv__redis_lib_queue },
    [S_REMOVE]   = { S_REMOVE,   "queue_remove",   nv__redis_lua_queue_remove,
                     nv__redis_fn_queue_remove, nv__redis_lib_queue },
    [S_RETRY]    = { S_RETRY,    "queue_retry",    nv__redis_lua_queue_retry,
                     nv__redis_fn_queue_retry, nv__redis_lib_queue },
    [S_REAP]     = { S_REAP,     "queue_reap",     nv__redis_lua_queue_reap,
                     nv__redis_fn_queue_reap, nv__redis_lib_queue },
    [S_BATCH]    = { S_BATCH,    "queue_batch",    nv__redis_lua_queue_batch,
                     nv__redis_fn_queue_batch, nv__redis_lib_queue },
};

/*
 * A thread waiting in rq_wait (one per thread: a thread waits on one
 * queue at a time). Each sleeps on its thread's parker, so that a note
 * wakes the very waiter it is given to (see struct note).
 */
struct waiter {
    nv__redis_parker *k;     /* NULL until its first wait */
    int            woken;    /* W_NOTE, W_POLL, or 0 */
    int            queued;   /* in its note's sleepers */
    struct waiter *next;
};

enum { W_NOTE = 1, W_POLL = 2 };

/*
 * Wake-ups of one queue seen by the subscriber thread. Each note is a
 * ticket: it wakes one waiter, or the next thread that comes to wait (a job
 * enqueued between a worker's empty reserve and its wait is not slept
 * over). Tickets nobody took are capped, so a burst of enqueues while
 * every worker is busy costs at most MAX_TICKETS empty reserves later.
 * A note goes to the waiter that came last (its thread's memory is the
 * warmest; the others sleep on), and to the poller (see rq_wait) only
 * when no other waiter is there.
 */
struct note {
    char          *queue;
    int            tickets;  /* notes not yet taken by a waiter */
    struct waiter *sleepers; /* waiting, the latest first */
    int            nsleep;   /* how many */
    const struct waiter *poller;  /* polls for what notes cannot say */
    int64_t        poller_until;  /* monotonic ms: its next poll due */
    uint64_t       gen;      /* grows at each note */
    /* The last empty reserve, valid while no note came since it started
     * (gen, epoch) and 'now' is before its next_at: reserves answer from
     * it without asking Redis, so idle workers cost Redis nothing. */
    int            empty_valid;
    uint64_t       empty_gen, empty_epoch;
    int64_t        empty_next;       /* 0: only a note changes it */
    nv_limiter     empty_lim;
    /* Calls gathered for one round trip (see submit) */
    nv__redis_gather calls;          /* (gather.h) */
    int64_t        poll_next;        /* monotonic ms: next idle poll */
    /* Hand-offs (see hand_off): the lease of this queue's reserves when
     * they have no limiter (0: a limiter, or no reserve yet), enqueues
     * that reserve for a sleeper out now, and the jobs they reserved
     * that no worker took yet, the oldest first. */
    int64_t        hand_lease;
    int            hand_out;
    struct stash  *stash, *stash_tail;
    int            nstash;
};

/* A job reserved by an enqueue of this instance for one of its sleeping
 * workers (the lease is this instance's), until a worker takes it. */
struct stash {
    nv_job        job;
    int64_t       now, lease_ms;    /* the reserve's */
    struct stash *next;
};

#define MAX_TICKETS 16

struct rqueue {
    nv__redis_pool *pool;
    char           *channel;     /* <prefix>:q:wake */

    pthread_mutex_t mu;          /* guards the members below */
    struct note   **notes;       /* never freed before close */
    size_t          nnotes;
    uint64_t        epoch;       /* grows at wake() and reconnection */
    nv__redis_sub  *sub;         /* started by the first wait() */
    int64_t         sub_retry_at;
    int64_t         woke_until;  /* monotonic ms: see rq_wake */
};

/* Longest a waiter blocks between two looks at the queue: short while the
 * subscriber is not running (no notifications), longer once it is. */
#define WAIT_SLICE_MS     100
#define WAIT_SLICE_SUB_MS 1000

static struct note *note_get(struct rqueue *q, const char *queue, int add);
static void local_change(struct rqueue *q, const char *queue);
struct op;
static void send_batch(struct rqueue *q, const char *queue, struct op *ops,
                       int n, nv__redis_args *args);
static void submit(struct rqueue *q, const char *queue, struct op *op);
static void op_free(struct op *o);
static int hand_begin(struct rqueue *q, const char *queue);
static void hand_end(struct rqueue *q, const char *queue, struct op *op,
                     const nv_job *job, int64_t ts);
static void new_token(char tok[40]);
static nv__redis_parker *sleeper_wake(struct note *nt);

/* ---- Calling scripts ---- */

static char *
base_key(struct rqueue *q, const char *queue)
{
    return nv__asprintf("{%s:q:%s}", q->pool->prefix, queue);
}

/* Name the key of the wrong type when a script met one. */
static void
diagnose(struct rqueue *q, const char *base, const char *id, nv_error *err)
{
    static const struct { const char *suffix; const char *type; } keys[] = {
        { ":meta", "hash" }, { ":wait", "zset" }, { ":delayed", "zset" },
        { ":active", "zset" }, { ":completed", "zset" },
        { ":failed", "zset" }, { ":ids", "zset" },
    };
    size_t n = sizeof(keys) / sizeof(keys[0]);

    for (size_t i = 0; i <= n; i++) {
        char *k = i < n ? nv__asprintf("%s%s", base, keys[i].suffix)
                : id ? nv__asprintf("%s:j:%s", base, id) : NULL;
        const char *want = i < n ? keys[i].type : "hash";
        redisReply *r = NULL;

        if (k == NULL)
            return;
        if (nv__redis_cmdf(q->pool, k, &r, NULL, "TYPE %s", k) == NV_OK) {
            int bad = r->type == REDIS_REPLY_STATUS &&
                      strcmp(r->str, "none") != 0 &&
                      strcmp(r->str, want) != 0;
            freeReplyObject(r);
            if (bad) {
                nv__error(err, NV_EBACKEND,
                          "redis key '%s' holds the wrong kind of value "
                          "(expected a %s)", k, want);
                nv__free(k);
                return;
            }
        }
        nv__free(k);
    }
}

/*
 * Run script 'si' for 'queue' with the extra arguments in 'x'. On success
 * *out is the reply array whose first element is >= 0.
 */
static int
run(struct rqueue *q, int si, const char *queue, const char *id,
    nv__redis_args *x, redisReply **out, nv_error *err)
{
    const char *pre[4];
    size_t prelen[4];
    char kb[160], mb[168], *base = kb, *meta = mb;   /* most names fit */
    size_t pl = strlen(q->pool->prefix), ql = strlen(queue);
    redisReply *r = NULL;
    int rc;

    if (pl + ql + 8 <= sizeof(kb)) {    /* "{<prefix>:q:<queue>}" */
        kb[0] = '{';
        memcpy(kb + 1, q->pool->prefix, pl);
        memcpy(kb + 1 + pl, ":q:", 3);
        memcpy(kb + 4 + pl, queue, ql);
        kb[4 + pl + ql] = '}';
        kb[5 + pl + ql] = '\0';
        memcpy(mb, kb, 5 + pl + ql);
        memcpy(mb + 5 + pl + ql, ":meta", 6);
    } else {
        base = base_key(q, queue);
        meta = base ? nv__asprintf("%s:meta", base) : NULL;
    }

    if (base == NULL || meta == NULL || (x && x->oom)) {
        rc = nv__error(err, NV_ENOMEM, "redis queue: out of memory");
        goto done;
    }
    pre[0] = meta;
    pre[1] = base;
    pre[2] = q->channel;
    pre[3] = queue;
    for (int i = 0; i < 4; i++)
        prelen[i] = strlen(pre[i]);
    rc = nv__redis_eval_pre(q->pool, &scripts[si], base, 1, 4, pre, prelen,
                            x ? x->n : 0, x ? x->v : NULL,
                            x ? x->len : NULL, &r, err);
    if (rc == NV_EBACKEND && err && strstr(err->msg, "wrong kind") != NULL)
        diagnose(q, base, id, err);
    if (rc != NV_OK)
        goto done;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        rc = nv__error(err, NV_EBACKEND, "redis queue: unexpected reply");
        goto done;
    }
    if (r->element[0]->integer < 0) {
        rc = (int)r->element[0]->integer;
        nv__error(err, rc, "queue '%s'", queue);
        if (out != NULL) {   /* callers read details of some refusals */
            *out = r;
            r = NULL;
        }
        goto done;
    }
    if (out != NULL) {
        *out = r;
        r = NULL;
    }
done:
    if (r != NULL)
        freeReplyObject(r);
    if (base != kb) {
        nv__free(base);
        nv__free(meta);
    }
    return rc;
}

/* ---- Job records ---- */

static const char *const state_names[] = {
    [NV_JOB_WAITING] = "waiting", [NV_JOB_DELAYED] = "delayed",
    [NV_JOB_ACTIVE] = "active", [NV_JOB_COMPLETED] = "completed",
    [NV_JOB_FAILED] = "failed",
};

static int
state_of(const char *s)
{
    for (int i = 0; i <= NV_JOB_FAILED; i++) {
        if (strcmp(s, state_names[i]) == 0)
            return i;
    }
    return NV_JOB_WAITING;
}

static int
set_str(char **dst, const redisReply *v)
{
    nv__free(*dst);
    *dst = nv__strndup(v->str, v->len);
    return *dst == NULL ? -1 : 0;
}

/*
 * The packed part of a record (field 'r', layout 1.1): the fields no script
 * reads, each "<length>:<bytes>", in this order; an empty one is absent.
 */
enum { P_ID, P_QUEUE, P_NAME, P_DATA, P_OPTS, P_RUN, P_FLOW, P_STEP, P_N };

static char *
pack_record(const nv_job *j, size_t *len)
{
    const char *f[P_N] = {
        [P_ID] = j->id, [P_QUEUE] = j->queue, [P_NAME] = j->name,
        [P_DATA] = j->data ? j->data : "null", [P_OPTS] = j->opts,
        [P_RUN] = j->run_id,
        [P_FLOW] = j->run_id[0] ? j->flow_name : NULL,
        [P_STEP] = j->run_id[0] ? j->step_name : NULL,
    };
    size_t fl[P_N], total = 0;
    char *buf, *w;

    for (int i = 0; i < P_N; i++) {
        fl[i] = f[i] != NULL ? strlen(f[i]) : 0;
        total += fl[i] + 21;
    }
    buf = w = nv__malloc(total + 1);
    if (buf == NULL)
        return NULL;
    for (int i = 0; i < P_N; i++) {
        w += nv__fmt_i64(w, (int64_t)fl[i]);
        *w++ = ':';
        if (fl[i] > 0)
            memcpy(w, f[i], fl[i]);
        w += fl[i];
    }
    *w = '\0';
    *len = (size_t)(w - buf);
    return buf;
}

static void
copy_name(char *dst, size_t size, const char *s, size_t n)
{
    if (n >= size)
        n = size - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int
unpack_record(nv_job *j, const char *p, size_t len)
{
    const char *end = p + len, *s;
    size_t n;

    for (int i = 0; i < P_N; i++) {
        if (nv__redis_ns_next(&p, end, &s, &n) != 0)
            return 0;          /* damaged: keep what was read */
        switch (i) {
        case P_ID:    copy_name(j->id, sizeof(j->id), s, n); break;
        case P_QUEUE: copy_name(j->queue, sizeof(j->queue), s, n); break;
        case P_NAME:  copy_name(j->name, sizeof(j->name), s, n); break;
        case P_RUN:   copy_name(j->run_id, sizeof(j->run_id), s, n); break;
        case P_FLOW:  copy_name(j->flow_name, sizeof(j->flow_name), s, n); break;
        case P_STEP:  copy_name(j->step_name, sizeof(j->step_name), s, n); break;
        case P_DATA:
            nv__free(j->data);
            if ((j->data = nv__strndup(s, n)) == NULL)
                return -1;
            break;
        case P_OPTS:
            nv__free(j->opts);
            j->opts = NULL;
            if (n > 0 && (j->opts = nv__strndup(s, n)) == NULL)
                return -1;
            break;
        }
    }
    return 0;
}

static int
set_field(nv_job *j, const char *k, const redisReply *v)
{
    const char *s = v->str;

    switch (k[0]) {    /* the frequent ones first */
    case 'r':
        if (k[1] == '\0')
            return unpack_record(j, v->str, v->len);
        break;
    case 's':
        if (strcmp(k, "state") == 0) {
            j->state = state_of(s);
            return 0;
        }
        break;
    case 't':
        if (strcmp(k, "timestamp") == 0) {
            j->timestamp = strtoll(s, NULL, 10);
            return 0;
        }
        break;
    case 'n':
        if (strcmp(k, "nologs") == 0)
            return 0;
        break;
    }
    if (strcmp(k, "id") == 0)
        nv__strlcpy(j->id, s, sizeof(j->id));
    else if (strcmp(k, "queue") == 0)
        nv__strlcpy(j->queue, s, sizeof(j->queue));
    else if (strcmp(k, "name") == 0)
        nv__strlcpy(j->name, s, sizeof(j->name));
    else if (strcmp(k, "runId") == 0)
        nv__strlcpy(j->run_id, s, sizeof(j->run_id));
    else if (strcmp(k, "flowName") == 0)
        nv__strlcpy(j->flow_name, s, sizeof(j->flow_name));
    else if (strcmp(k, "stepName") == 0)
        nv__strlcpy(j->step_name, s, sizeof(j->step_name));
    else if (strcmp(k, "data") == 0)
        return set_str(&j->data, v);
    else if (strcmp(k, "opts") == 0)
        return set_str(&j->opts, v);
    else if (strcmp(k, "priority") == 0)
        j->priority = atoi(s);
    else if (strcmp(k, "lifo") == 0)
        j->lifo = atoi(s);
    else if (strcmp(k, "roc") == 0)
        j->remove_on_complete = strtoll(s, NULL, 10);
    else if (strcmp(k, "rof") == 0)
        j->remove_on_fail = strtoll(s, NULL, 10);
    else if (strcmp(k, "attemptsMade") == 0)
        j->attempts_made = atoi(s);
    else if (strcmp(k, "stalledCount") == 0)
        j->stalled_count = atoi(s);
    else if (strcmp(k, "progress") == 0)
        j->progress = strtod(s, NULL);
    else if (strcmp(k, "progressData") == 0)
        return set_str(&j->progress_data, v);
    else if (strcmp(k, "delayUntil") == 0)
        j->delay_until = strtoll(s, NULL, 10);
    else if (strcmp(k, "processedOn") == 0)
        j->processed_on = strtoll(s, NULL, 10);
    else if (strcmp(k, "finishedOn") == 0)
        j->finished_on = strtoll(s, NULL, 10);
    else if (strcmp(k, "returnvalue") == 0)
        return set_str(&j->returnvalue, v);
    else if (strcmp(k, "failedReason") == 0)
        return set_str(&j->failed_reason, v);
    else if (strcmp(k, "group") == 0)
        return set_str(&j->group, v);
    else if (strcmp(k, "leaseUntil") == 0)
        j->lease_until = strtoll(s, NULL, 10);
    else if (strcmp(k, "leaseToken") == 0)
        nv__strlcpy(j->lease_token, s, sizeof(j->lease_token));
    return 0;
}

/* Join the log entries into one JSON array text. */
static char *
join_logs(const redisReply *l)
{
    size_t n = 3;
    char *s, *p;

    for (size_t i = 0; i < l->elements; i++)
        n += l->element[i]->len + 1;
    s = p = nv__malloc(n);
    if (s == NULL)
        return NULL;
    *p++ = '[';
    for (size_t i = 0; i < l->elements; i++) {
        if (i > 0)
            *p++ = ',';
        memcpy(p, l->element[i]->str, l->element[i]->len);
        p += l->element[i]->len;
    }
    *p++ = ']';
    *p = '\0';
    return s;
}

/* hash pairs 'h', paused flag, log entries 'l' (an array, or anything
 * else for none) -> job */
static int
job_from_parts(const redisReply *h, int paused, const redisReply *l,
               nv_job *out, nv_error *err)
{
    nv_job j;
    int bad = 0;

    if (h == NULL || h->type != REDIS_REPLY_ARRAY)
        return nv__error(err, NV_EBACKEND, "redis queue: bad job reply");
    memset(&j, 0, sizeof(j));
    j.remove_on_complete = j.remove_on_fail = NV_KEEP_ALL;
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        bad |= set_field(&j, h->element[i]->str, h->element[i + 1]);
    if (j.state == NV_JOB_WAITING && paused)
        j.state = NV_JOB_PAUSED;
    if (j.state != NV_JOB_ACTIVE) {
        /* left from the last attempt (layout 1.3: queue_common.lua) */
        j.lease_until = 0;
        j.lease_token[0] = '\0';
    }
    if (l != NULL && l->type == REDIS_REPLY_ARRAY && l->elements > 0) {
        j.logs = join_logs(l);
        bad |= j.logs == NULL;
    }
    if (j.data == NULL)
        j.data = nv__strdup("null");
    if (bad || j.data == NULL) {
        nv_job_release(&j);
        return nv__error(err, NV_ENOMEM, "redis queue: out of memory");
    }
    *out = j;
    return NV_OK;
}

/* {hash pairs, paused flag, log entries} -> job */
static int
job_from(const redisReply *r, nv_job *out, nv_error *err)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return nv__error(err, NV_EBACKEND, "redis queue: bad job reply");
    return job_from_parts(r->element[0], nv__redis_int(r->element[1]) == 1,
                          r->element[2], out, err);
}

static void
add_field(nv__redis_args *a, const char *k, const char *v)
{
    if (v == NULL)
        return;
    nv__redis_args_str(a, k);
    nv__redis_args_str(a, v);
}

static void
add_int(nv__redis_args *a, const char *k, int64_t v)
{
    nv__redis_args_str(a, k);
    nv__redis_args_int(a, v);
}

/* ---- Ops ---- */

enum {
    OP_RESERVE = 'R', OP_FINISH = 'F', OP_FINISH_RESERVE = 'X', OP_COUNTS = 'C',
    OP_ENQUEUE = 'E',
};


struct op {
    nv__redis_gop   g;              /* first: its place on the list */
    int             kind;
    const char     *id, *token;     /* F, X */
    const nv_finish *f;             /* F, X */
    int64_t         now, lease_ms;
    const nv_limiter *lim;          /* R, X */
    const nv__redis_args *args;     /* E: its arguments */
    int             quiet;          /* E: a new job's state not wanted */
    char            tok[40];        /* R, X: the new lease's token */
    int             hand;           /* E: and reserve (H, see hand_off) */
    redisReply     *el[8];          /* its part of the batch's reply */
    int             nel;
    int             rc;
    nv_error        err;
};


/* A new job's record as enqueue stored it (state waiting, no lease). */
static int
as_stored(const nv_job *job, int64_t ts, nv_job *out, nv_error *err)
{
    nv_job j;
    int rc = nv_job_copy(&j, job);

    if (rc != NV_OK)
        return nv__error(err, rc, "redis queue: out of memory");
    if (j.data == NULL && (j.data = nv__strdup("null")) == NULL) {
        nv_job_release(&j);
        return nv__error(err, NV_ENOMEM, "redis queue: out of memory");
    }
    j.timestamp = ts;
    j.lifo = j.lifo ? 1 : 0;
    j.state = NV_JOB_WAITING;
    j.lease_until = 0;
    j.lease_token[0] = '\0';
    j.processed_on = j.finished_on = 0;
    if (j.run_id[0] == '\0')
        j.flow_name[0] = j.step_name[0] = '\0';
    *out = j;
    return NV_OK;
}

/* An enqueue's arguments (queue_batch.lua's E) into x (initialised
 * here); *packed (free it after x is sent) holds the packed record. */
static void
enqueue_args(nv__redis_args *a, const nv_job *job, int64_t now,
             int64_t max_unfinished, int64_t ts, char **packedp)
{
    char *packed;
    size_t plen = 0;

    nv__redis_args_init(a);
    nv__redis_args_int(a, now);
    nv__redis_args_int(a, max_unfinished);
    nv__redis_args_str(a, job->id);
    nv__redis_args_int(a, ts);
    nv__redis_args_int(a, job->delay_until);
    nv__redis_args_int(a, job->priority);
    nv__redis_args_str(a, job->lifo ? "1" : "0");
    /* layout 1.1: what no script reads packed in 'r'; the scalars the
     * scripts read only when not their default (absent = default) */
    packed = pack_record(job, &plen);
    nv__redis_args_str(a, "r");
    nv__redis_args_bin(a, packed ? packed : "", plen);
    add_int(a, "timestamp", ts);
    add_field(a, "state", job->delay_until > now ? "delayed" : "waiting");
    add_field(a, "nologs", "1");
    if (job->priority != 0)
        add_int(a, "priority", job->priority);
    if (job->lifo)
        add_int(a, "lifo", 1);
    if (job->remove_on_complete != NV_KEEP_ALL)
        add_int(a, "roc", job->remove_on_complete);
    if (job->remove_on_fail != NV_KEEP_ALL)
        add_int(a, "rof", job->remove_on_fail);
    if (job->attempts_made != 0)
        add_int(a, "attemptsMade", job->attempts_made);
    if (job->stalled_count != 0)
        add_int(a, "stalledCount", job->stalled_count);
    if (job->progress != 0) {
        nv__redis_args_str(a, "progress");
        nv__redis_args_dbl(a, job->progress);
    }
    add_field(a, "progressData", job->progress_data);
    if (job->delay_until > 0)
        add_int(a, "delayUntil", job->delay_until);
    add_field(a, "group", job->group);
    if (packed == NULL)
        a->oom = 1;
    *packedp = packed;
}

static int
rq_enqueue(void *self, const nv_job *job, int64_t now, int64_t max_unfinished,
           nv_job *out, int *created, nv_error *err)
{
    struct rqueue *q = self;
    /* without 'out', a new job's state (paused or not) is not asked */
    struct op op = { .kind = OP_ENQUEUE, .id = job->id, .quiet = out == NULL };
    nv__redis_args x;
    int64_t ts = job->timestamp ? job->timestamp : now;
    char *packed;
    int rc, code = 0;

    enqueue_args(&x, job, now, max_unfinished, ts, &packed);
    if (x.oom) {
        nv__redis_args_release(&x);
        nv__free(packed);
        return nv__error(err, NV_ENOMEM, "redis queue: out of memory");
    }
    /* through the batches: concurrent enqueues share a round trip */
    op.args = &x;
    if (out == NULL && job->delay_until <= now &&
        (op.lease_ms = hand_begin(q, job->queue)) > 0) {
        op.hand = 1;
        op.now = now;
        new_token(op.tok);
    }
    submit(q, job->queue, &op);
    if (op.hand)
        hand_end(q, job->queue, &op, job, ts);
    nv__redis_args_release(&x);
    nv__free(packed);
    rc = op.rc;
    if (rc != NV_OK) {
        if (err != NULL)
            *err = op.err;
    } else if ((code = (int)nv__redis_int(op.el[0])) < 0) {
        rc = nv__error(err, code, "queue '%s'", job->queue);
    }
    if (rc == NV_OK)
        local_change(q, job->queue);
    if (rc == NV_EQUEUE_FULL)
        nv__error(err, rc, "queue '%s' is full (maxQueueSize %lld)",
                  job->queue, (long long)max_unfinished);
    if (rc != NV_OK)
        goto done;
    if (out != NULL && code == 0) {
        rc = job_from_parts(op.el[1], nv__redis_int(op.el[2]) == 1, op.el[3],
                            out, err);
    } else if (out != NULL) {
        /* A new job: the record is the one given, as stored. */
        rc = as_stored(job, ts, out, err);
        if (rc != NV_OK)
            goto done;
        out->state = op.el[1]->type == REDIS_REPLY_STRING &&
                     strcmp(op.el[1]->str, "delayed") == 0 ? NV_JOB_DELAYED
                   : nv__redis_int(op.el[2]) == 1 ? NV_JOB_PAUSED
                   : NV_JOB_WAITING;
    }
    if (rc == NV_OK && created != NULL)
        *created = code;
done:
    op_free(&op);
    return rc;
}

/*
 * The enqueues of a bulk start (nv_flow_start_many): sent in batches of
 * NV__REDIS_GATHER_MAX as one queue_batch call each (quiet enqueues: no
 * hand-off; the batch's note wakes the workers), past the gathering.
 */
static int
rq_enqueue_many(void *self, const nv_job *jobs, size_t n, int64_t now,
                int64_t max_unfinished, int *rcs, int *created, nv_error *err)
{
    struct rqueue *q = self;
    struct op *ops;
    nv__redis_args *xs;
    char **packed;
    size_t cap = n < NV__REDIS_GATHER_MAX ? n : NV__REDIS_GATHER_MAX;
    int first = NV_OK, made = 0;

    if (n == 0)
        return NV_OK;
    ops = nv__calloc(cap, sizeof(*ops));
    xs = nv__calloc(cap, sizeof(*xs));
    packed = nv__calloc(cap, sizeof(*packed));
    if (ops == NULL || xs == NULL || packed == NULL) {
        nv__free(ops);
        nv__free(xs);
        nv__free(packed);
        for (size_t i = 0; i < n; i++)
            rcs[i] = NV_ENOMEM;
        return nv__error(err, NV_ENOMEM, "redis queue: out of memory");
    }
    for (size_t at = 0; at < n; at += cap) {
        size_t m = n - at < cap ? n - at : cap;
        const char *queue = jobs[at].queue;
        int oom = 0;

        memset(ops, 0, m * sizeof(*ops));
        for (size_t i = 0; i < m; i++) {
            const nv_job *j = &jobs[at + i];

            enqueue_args(&xs[i], j, now, max_unfinished,
                         j->timestamp ? j->timestamp : now, &packed[i]);
            oom |= xs[i].oom;
            ops[i].kind = OP_ENQUEUE;
            ops[i].id = j->id;
            ops[i].quiet = 1;
            ops[i].args = &xs[i];
            ops[i].g.next = i + 1 < m ? &ops[i + 1].g : NULL;
        }
        if (!oom)
            send_batch(q, queue, ops, (int)m, NULL);
        for (size_t i = 0; i < m; i++) {
            struct op *o = &ops[i];
            nv_error e1 = { 0 };
            int rc = oom ? nv__error(&e1, NV_ENOMEM, "redis queue: out of "
                                     "memory")
                   : o->rc;
            int64_t code = 0;

            if (!oom && rc != NV_OK)
                e1 = o->err;
            if (rc == NV_OK && (code = nv__redis_int(o->el[0])) < 0)
                rc = code == NV_EQUEUE_FULL
                   ? nv__error(&e1, NV_EQUEUE_FULL, "queue '%s' is "
                               "full (maxQueueSize %lld)", queue,
                               (long long)max_unfinished)
                   : nv__error(&e1, (int)code, "queue '%s'", queue);
            rcs[at + i] = rc;
            if (created != NULL)
                created[at + i] = rc == NV_OK && code == 1;
            made |= rc == NV_OK && code == 1;
            if (rc != NV_OK && first == NV_OK) {
                first = rc;
                if (err != NULL)
                    *err = e1;
            }
            op_free(o);
            nv__redis_args_release(&xs[i]);
            nv__free(packed[i]);
            packed[i] = NULL;
        }
        if (made)
            local_change(q, queue);
    }
    nv__free(ops);
    nv__free(xs);
    nv__free(packed);
    return first;
}

static void
new_token(char tok[40])
{
    unsigned char b[16];
    static const char hex[] = "0123456789abcdef";

    nv__random(b, sizeof(b));
    for (int i = 0; i < 16; i++) {
        tok[2 * i] = hex[b[i] >> 4];
        tok[2 * i + 1] = hex[b[i] & 15];
    }
    tok[32] = '\0';
}

static int
same_limiter(const nv_limiter *a, const nv_limiter *b)
{
    nv_limiter z = { 0 };

    if (b == NULL)
        b = &z;
    return a->max == b->max && a->duration_ms == b->duration_ms &&
           a->grouped == b->grouped;
}

/*
 * Answer an empty reserve from the cache of the last one when nothing can
 * have changed since (see struct note); else note the generation the call
 * starts from in *gen / *epoch, and in *live whether notes were being
 * received then (only such a call may fill the cache). Returns 1 when
 * answered.
 */
static int
empty_cached(struct rqueue *q, const char *queue, int64_t now,
             const nv_limiter *lim, int64_t *next_at, uint64_t *gen,
             uint64_t *epoch, int *live)
{
    struct note *nt;
    int hit = 0;

    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 1);
    *live = nt != NULL && nv__redis_sub_connected(q->sub);
    if (nt != NULL) {
        hit = nt->empty_valid && *live &&
              nt->empty_gen == nt->gen && nt->empty_epoch == q->epoch &&
              (nt->empty_next == 0 || now < nt->empty_next) &&
              same_limiter(&nt->empty_lim, lim);
        if (hit && next_at != NULL)
            *next_at = nt->empty_next;
        *gen = nt->gen;
    }
    *epoch = q->epoch;
    pthread_mutex_unlock(&q->mu);
    return hit;
}

/* The generation a reply about 'queue' starts from (see empty_cached). */
static void
note_gen(struct rqueue *q, const char *queue, uint64_t *gen, uint64_t *epoch,
         int *live)
{
    struct note *nt;

    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 1);
    *live = nt != NULL && nv__redis_sub_connected(q->sub);
    *gen = nt != NULL ? nt->gen : 0;
    *epoch = q->epoch;
    pthread_mutex_unlock(&q->mu);
}

static void
empty_store(struct rqueue *q, const char *queue, const nv_limiter *lim,
            int64_t next, uint64_t gen, uint64_t epoch)
{
    struct note *nt;
    nv_limiter z = { 0 };

    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 0);
    if (nt != NULL && nt->gen == gen && q->epoch == epoch) {
        nt->empty_valid = 1;
        nt->empty_gen = gen;
        nt->empty_epoch = epoch;
        nt->empty_next = next;
        nt->empty_lim = lim ? *lim : z;
    }
    pthread_mutex_unlock(&q->mu);
}

/* This instance just made a job of 'queue' runnable: its own cached empty
 * reserve ends now, without waiting for the note to come back. */
static void
local_change(struct rqueue *q, const char *queue)
{
    struct note *nt;

    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 0);
    if (nt != NULL)
        nt->empty_valid = 0;
    pthread_mutex_unlock(&q->mu);
}

/*
 * Calls of one queue gathered into one round trip (gather.h). Busy
 * workers of a queue (concurrency 10, 100) call reserve / finish /
 * finish_reserve at the same time; the ops of one queue go out together
 * in one queue_batch script, so that Redis runs one script per batch
 * instead of one per call. (Batches out at once are concurrent calls: a
 * call that ended before another began was run by Redis before it.)
 */
static void
op_args(nv__redis_args *x, const struct op *o)
{
    const nv_limiter *lim = o->lim;

    if (o->kind == OP_FINISH_RESERVE && o->f->kind == NV_FINISH_COMPLETE &&
        (lim == NULL || lim->max <= 0)) {
        /* the busy worker's usual call, in short */
        nv__redis_args_str(x, "Y");
        nv__redis_args_str(x, o->id);
        nv__redis_args_str(x, o->token);
        nv__redis_args_int(x, o->now);
        nv__redis_args_str(x, o->f->returnvalue ? o->f->returnvalue : "null");
        nv__redis_args_int(x, o->now + o->lease_ms);   /* leaseUntil */
        nv__redis_args_str(x, o->tok);
        return;
    }
    nv__redis_args_str(x, o->kind == OP_RESERVE ? "R"
                          : o->kind == OP_FINISH ? "F"
                          : o->kind == OP_COUNTS ? "C"
                          : o->kind == OP_ENQUEUE ? (o->hand ? "H"
                                                     : o->quiet ? "e" : "E")
                          : "X");
    if (o->kind == OP_COUNTS)
        return;
    if (o->kind == OP_ENQUEUE) {
        if (o->hand) {
            /* H: a reserve's lease end and token, then e's arguments */
            nv__redis_args_int(x, o->now + o->lease_ms);
            nv__redis_args_str(x, o->tok);
        }
        nv__redis_args_int(x, o->args->n);
        for (int i = 0; i < o->args->n; i++)
            nv__redis_args_bin(x, o->args->v[i], o->args->len[i]);
        if (o->args->oom)
            x->oom = 1;
        return;
    }
    if (o->kind != OP_RESERVE) {
        nv__redis_args_str(x, o->id);
        nv__redis_args_str(x, o->token);
        nv__redis_args_int(x, o->f->kind);
        nv__redis_args_int(x, o->now);
        nv__redis_args_str(x, o->f->returnvalue ? o->f->returnvalue : "null");
        nv__redis_args_str(x, o->f->failed_reason ? o->f->failed_reason : "");
        nv__redis_args_int(x, o->f->retry_at);
        if (o->kind == OP_FINISH)
            return;
    } else {
        nv__redis_args_int(x, o->now);
    }
    nv__redis_args_int(x, o->now + o->lease_ms);   /* leaseUntil */
    nv__redis_args_str(x, o->tok);
    nv__redis_args_int(x, lim ? lim->max : 0);
    nv__redis_args_int(x, lim ? lim->duration_ms : 0);
    nv__redis_args_str(x, lim && lim->grouped ? "1" : "0");
}

/* How many elements of a batch reply, from r[0] on (m left), are the
 * reply of an op of 'kind' (see queue_batch.lua); 0 when malformed. */
static int
reply_len(int kind, int hand, redisReply **r, size_t m)
{
    int n;

    if (m < 1)
        return 0;
    if (kind == OP_COUNTS)
        return 1;
    if (r[0]->type != REDIS_REPLY_INTEGER)
        return 0;
    switch (kind) {
    case OP_FINISH:
        n = 1;
        break;
    case OP_ENQUEUE:
        n = r[0]->integer == 1 ? 3 : r[0]->integer == 0 ? 4 : 1;
        if (m > (size_t)n && r[n]->type == REDIS_REPLY_INTEGER && hand)
            /* H: R's reply after (2: the new job, as given) */
            n += r[n]->integer == 1 ? 3 : r[n]->integer == 2 ? 1 : 2;
        else if (hand)
            return 0;
        break;
    case OP_RESERVE:
        n = r[0]->integer == 1 ? 3 : 2;
        break;
    default:
        if (r[0]->integer < 0)
            n = 1;
        else if (m >= 2 && r[1]->type == REDIS_REPLY_INTEGER)
            n = r[1]->integer == 1 ? 4 : 3;
        else
            return 0;
    }
    return (size_t)n <= m ? n : 0;
}

/* Send ops (a list of n) in one script; fill each op's reply or rc.
 * 'args' (may be NULL) is the queue's argument builder, used by one sender
 * at a time. */
static void
send_batch(struct rqueue *q, const char *queue, struct op *ops, int n,
           nv__redis_args *args)
{
#define NEXT(o) ((struct op *)(o)->g.next)
    /* on the heap: every worker thread sends some batch, and the pages of
     * its stack that a send touches stay with it */
    nv__redis_args *x = args != NULL ? args : nv__malloc(sizeof(*x));
    redisReply *r = NULL;
    nv_error err = { 0 };
    struct op *o;
    size_t i;
    int rc;

    if (x == NULL) {
        rc = nv__error(&err, NV_ENOMEM, "redis queue: out of memory");
    } else {
        nv__redis_args_init(x);
        nv__redis_args_int(x, n);
        for (o = ops; o != NULL; o = NEXT(o))
            op_args(x, o);
        rc = run(q, S_BATCH, queue, n == 1 ? ops->id : NULL, x, &r, &err);
        nv__redis_args_release(x);
        if (x != args)
            nv__free(x);
    }
    /* check the whole reply first: every op gets its part, or an error */
    for (o = ops, i = 1; rc == NV_OK && o != NULL; o = NEXT(o)) {
        int k = reply_len(o->kind, o->hand, r->element + i, r->elements - i);

        if (k == 0)
            rc = nv__error(&err, NV_EBACKEND, "redis queue: unexpected reply");
        i += (size_t)k;
    }
    if (rc == NV_OK && i != r->elements)
        rc = nv__error(&err, NV_EBACKEND, "redis queue: unexpected reply");
    for (o = ops, i = 1; o != NULL; o = NEXT(o)) {
        if (rc != NV_OK) {
            o->rc = rc;
            o->err = err;
            continue;
        }
        o->rc = NV_OK;
        o->nel = reply_len(o->kind, o->hand, r->element + i, r->elements - i);
        for (int k = 0; k < o->nel; k++, i++) {
            o->el[k] = r->element[i];
            r->element[i] = NULL;    /* now the op's */
        }
    }
    if (r != NULL)
        freeReplyObject(r);
#undef NEXT
}

static void
op_free(struct op *o)
{
    for (int k = 0; k < o->nel; k++)
        freeReplyObject(o->el[k]);
    o->nel = 0;
}

/* A batch of one queue's ops, for nv__redis_gather_submit */
struct gather_ctx {
    struct rqueue *q;
    const char    *queue;
};

static void
gather_send(void *ctx, nv__redis_gop *first, int n, nv__redis_args *args)
{
    struct gather_ctx *c = ctx;

    send_batch(c->q, c->queue, (struct op *)first, n, args);
}

static void
submit(struct rqueue *q, const char *queue, struct op *op)
{
    struct gather_ctx c = { q, queue };
    struct note *nt;

    op->nel = 0;
    op->g.next = NULL;
    op->g.k = nv__redis_parker_self();
    pthread_mutex_lock(&q->mu);
    nt = op->g.k != NULL ? note_get(q, queue, 1) : NULL;
    if (nt == NULL) {
        pthread_mutex_unlock(&q->mu);
        send_batch(q, queue, op, 1, NULL);
        return;
    }
    nv__redis_gather_submit(&nt->calls, &q->mu, &op->g, 1, gather_send, &c);
}

/* The reserve scripts reply with the record as it was before the
 * reservation (sparing a second read of it): apply the change here. */
static int
reserved(const redisReply *h, const redisReply *logs, int64_t now,
         int64_t lease_ms, const char *tok, nv_job *out, nv_error *err)
{
    int rc = job_from_parts(h, 0, logs, out, err);

    if (rc == NV_OK) {
        out->state = NV_JOB_ACTIVE;
        out->processed_on = now;
        out->finished_on = 0;
        out->lease_until = now + lease_ms;
        nv__strlcpy(out->lease_token, tok, sizeof(out->lease_token));
    }
    return rc;
}

/*
 * Hand-offs. An enqueue made while a worker of this instance sleeps in
 * wait() on its queue (one that no other hand-off is promised to) also
 * reserves, in the same script (H: at the enqueue's now, with the lease
 * of the queue's reserves), and hands the job to that worker: its next
 * reserve (or finish_reserve) takes it without asking Redis. Otherwise the
 * job's note goes to the subscriber thread through Redis pub/sub, wakes
 * a worker, and that worker's reserve is one more script: a hand-off
 * spares a script, a message and two thread wake-ups per job. The job
 * taken is the queue's first runnable one, not always the new one, so the
 * queue's order and priorities hold; what an H takes is not announced to
 * the other instances (it is not waiting any more). Only queues whose
 * reserves have no limiter hand off. A job handed off is kept only when
 * a sleeper is there to be woken for it when the reply comes (else it
 * goes back at once), and is released (back to waiting, no attempt
 * counted) when no worker took it within a quarter of its lease, or when
 * the queue is closed.
 */
static int rq_finish(void *self, const char *queue, const char *id,
                     const char *token, const nv_finish *f, int64_t now,
                     nv_error *err);

/* The lease for an enqueue's hand-off (0: none now) */
static int
hand_begin(struct rqueue *q, const char *queue)
{
    struct note *nt;
    int64_t lease = 0;

    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 0);
    if (nt != NULL && nt->hand_lease > 0 &&
        nt->nsleep > nt->hand_out + nt->nstash) {
        nt->hand_out++;
        lease = nt->hand_lease;
    }
    pthread_mutex_unlock(&q->mu);
    return (int)(lease > INT32_MAX ? INT32_MAX : lease);
}

/* Give a job handed off (reserved at 'now') back to its queue, and
 * forget it. */
static void
give_back(struct rqueue *q, const char *queue, nv_job *job, int64_t now)
{
    nv_finish rel = { .kind = NV_FINISH_RELEASE };

    rq_finish(q, queue, job->id, job->lease_token, &rel, now, NULL);
    nv_job_release(job);
}

static void
stash_release(struct rqueue *q, const char *queue, struct stash *s)
{
    give_back(q, queue, &s->job, s->now);
    nv__free(s);
}

/* After an H op: its reserve's job (if any) to the stash, for a sleeper
 * (job, stamped ts: the one the H enqueued). */
static void
hand_end(struct rqueue *q, const char *queue, struct op *op,
         const nv_job *job, int64_t ts)
{
    struct stash *s = NULL;
    nv__redis_parker *k = NULL;
    struct note *nt;
    int n = 0;

    if (op->rc == NV_OK) {
        int64_t code = nv__redis_int(op->el[0]);

        n = code == 1 ? 3 : code == 0 ? 4 : 1;     /* its enqueue part */
    }
    if (op->rc == NV_OK && n < op->nel &&
        (nv__redis_int(op->el[n]) == 2 ||
         (nv__redis_int(op->el[n]) == 1 && n + 2 < op->nel))) {
        nv_error e;
        int rc;

        /* (out of memory here, the job stays reserved until its lease
         * ends and the reaper gives it back, as after a crash) */
        s = nv__calloc(1, sizeof(*s));
        if (s != NULL) {
            s->now = op->now;
            s->lease_ms = op->lease_ms;
            if (nv__redis_int(op->el[n]) == 2) {
                /* the new job itself, as given */
                rc = as_stored(job, ts, &s->job, &e);
                if (rc == NV_OK) {
                    s->job.state = NV_JOB_ACTIVE;
                    s->job.processed_on = op->now;
                    s->job.lease_until = op->now + op->lease_ms;
                    nv__strlcpy(s->job.lease_token, op->tok,
                                sizeof(s->job.lease_token));
                }
            } else {
                rc = reserved(op->el[n + 1], op->el[n + 2], op->now,
                              op->lease_ms, op->tok, &s->job, &e);
            }
            if (rc != NV_OK) {
                nv_job_release(&s->job);
                nv__free(s);
                s = NULL;
            }
        }
    }
    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 0);
    if (nt != NULL) {
        nt->hand_out--;
        /* kept only for a worker woken for it, whose reserve comes next:
         * no job waits here on workers that are all busy */
        if (s != NULL && (k = sleeper_wake(nt)) != NULL) {
            if (nt->stash_tail != NULL)
                nt->stash_tail->next = s;
            else
                nt->stash = s;
            nt->stash_tail = s;
            nt->nstash++;
            s = NULL;
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (k != NULL)
        nv__redis_unpark(k);
    if (s != NULL)
        stash_release(q, queue, s);    /* the sleeper is gone: back */
}

/*
 * A job handed off to this queue's workers, into *out (1), else 0. Notes
 * the lease and limiter of the queue's reserves, for hand_begin. Jobs
 * handed off that this reserve cannot take (another lease or a limiter
 * now, or a quarter of their lease gone) are released.
 */
static int
stash_take(struct rqueue *q, const char *queue, int64_t now,
           int64_t lease_ms, const nv_limiter *lim, nv_job *out)
{
    struct stash *s, *drop = NULL;
    struct note *nt;
    int plain = lim == NULL || lim->max <= 0;

    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 1);
    if (nt == NULL) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    nt->hand_lease = plain ? lease_ms : 0;
    while ((s = nt->stash) != NULL) {
        nt->stash = s->next;
        if (nt->stash == NULL)
            nt->stash_tail = NULL;
        nt->nstash--;
        s->next = NULL;
        if (plain && s->lease_ms == lease_ms && now >= s->now - 1000 &&
            now - s->now <= s->lease_ms / 4)
            break;
        s->next = drop;
        drop = s;
    }
    pthread_mutex_unlock(&q->mu);
    while (drop != NULL) {
        struct stash *next = drop->next;

        stash_release(q, queue, drop);
        drop = next;
    }
    if (s == NULL)
        return 0;
    *out = s->job;
    nv__free(s);
    return 1;
}

/* A job taken from the stash goes back to its front (its finish_reserve's
 * finish failed). */
static void
stash_unget(struct rqueue *q, const char *queue, nv_job *job,
            int64_t lease_ms)
{
    struct stash *s = nv__calloc(1, sizeof(*s));
    nv__redis_parker *k = NULL;
    struct note *nt;

    if (s == NULL) {
        give_back(q, queue, job, job->processed_on);
        return;
    }
    s->job = *job;
    s->now = job->processed_on;     /* the reserve's now */
    s->lease_ms = lease_ms;
    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 0);    /* (made by stash_take) */
    s->next = nt->stash;
    nt->stash = s;
    if (nt->stash_tail == NULL)
        nt->stash_tail = s;
    nt->nstash++;
    k = sleeper_wake(nt);
    pthread_mutex_unlock(&q->mu);
    if (k != NULL)
        nv__redis_unpark(k);
}

/*
 * Idle workers poll: each wakes after its wait's timeout (20 ms in the
 * engine) and reserves again, in case something became runnable without a
 * note. With a hundred idle workers per queue and notes arriving all the
 * time (so that the empty-reserve cache rarely holds), that was thousands
 * of empty reserve scripts per second. Every change that makes a job
 * runnable publishes a note, and each note wakes one waiter (a ticket), so
 * the polls only guard against what notes cannot say (a delayed job or a
 * limiter window coming due): one poll per queue per IDLE_POLL_MS is as
 * good as a hundred. A reserve right after a wait that ended by its full
 * timeout (no ticket, no wake, no reconnection, the subscription live) goes
 * to Redis only when no such poll of its queue went out in the last
 * IDLE_POLL_MS; otherwise it answers "none" at once.
 */
#define IDLE_POLL_MS 20

static _Thread_local const struct note *idle_nt;  /* last wait timed out */
static _Thread_local uint64_t idle_epoch;
/* The note whose poller this thread was when its wait ended (see rq_wait) */
static _Thread_local const struct note *polled_nt;
static _Thread_local struct waiter self_waiter;

static void poll_handoff(struct rqueue *q, const char *queue);

static int
idle_skip(struct rqueue *q, const char *queue)
{
    const struct note *w = idle_nt;
    struct note *nt;
    int skip = 0;

    idle_nt = NULL;
    if (w == NULL)
        return 0;
    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 0);
    if (nt == w && q->epoch == idle_epoch && nv__redis_sub_connected(q->sub)) {
        int64_t now = nv__monotonic_ms();

        if (now < nt->poll_next)
            skip = 1;
        else
            nt->poll_next = now + IDLE_POLL_MS;
    }
    pthread_mutex_unlock(&q->mu);
    return skip;
}

static int
rq_reserve(void *self, const char *queue, int64_t now, int64_t lease_ms,
           const nv_limiter *lim, nv_job *out, int64_t *next_at,
           nv_error *err)
{
    struct rqueue *q = self;
    struct op op = { .kind = OP_RESERVE, .now = now, .lease_ms = lease_ms,
                     .lim = lim };
    uint64_t gen = 0, epoch = 0;
    int64_t next = 0;
    int rc, live = 0;

    if (stash_take(q, queue, now, lease_ms, lim, out)) {
        idle_nt = NULL;
        if (polled_nt != NULL)
            poll_handoff(q, queue);   /* this worker is busy now */
        return NV_OK;
    }
    if (idle_skip(q, queue)) {
        if (next_at != NULL)
            *next_at = 0;
        return nv__error(err, NV_ENOTFOUND, "no runnable job in queue '%s'",
                         queue);
    }
    if (empty_cached(q, queue, now, lim, next_at, &gen, &epoch, &live))
        return nv__error(err, NV_ENOTFOUND, "no runnable job in queue '%s'",
                         queue);
    new_token(op.tok);
    submit(q, queue, &op);
    rc = op.rc;
    if (rc != NV_OK) {
        if (err != NULL)
            *err = op.err;
    } else if (nv__redis_int(op.el[0]) == 1) {
        rc = reserved(op.el[1], op.el[2], now, lease_ms, op.tok, out, err);
        if (polled_nt != NULL)
            poll_handoff(q, queue);   /* this worker is busy now */
    } else {
        next = nv__redis_int(op.el[1]);
        if (next_at != NULL)
            *next_at = next;
        if (live)
            empty_store(q, queue, lim, next, gen, epoch);
        rc = nv__error(err, NV_ENOTFOUND, "no runnable job in queue '%s'",
                       queue);
    }
    op_free(&op);
    return rc;
}

static int
lease_error(int rc, const char *queue, const char *id, nv_error *err)
{
    if (rc == NV_ELEASE)
        return nv__error(err, rc, "job '%s' of queue '%s' is not held under "
                         "this lease any more", id, queue);
    if (rc == NV_EJOB_NOT_FOUND)
        return nv__error(err, rc, "job '%s' not found in queue '%s'", id,
                         queue);
    return rc;
}

static int
rq_extend(void *self, const char *queue, const char *id, const char *token,
          int64_t until, nv_error *err)
{
    nv__redis_args x;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    nv__redis_args_str(&x, token);
    nv__redis_args_int(&x, until);
    rc = run(self, S_EXTEND, queue, id, &x, NULL, err);
    nv__redis_args_release(&x);
    return lease_error(rc, queue, id, err);
}

static int
rq_finish(void *self, const char *queue, const char *id, const char *token,
          const nv_finish *f, int64_t now, nv_error *err)
{
    struct op op = { .kind = OP_FINISH, .id = id, .token = token, .f = f,
                     .now = now };
    int rc;

    submit(self, queue, &op);
    rc = op.rc;
    if (rc != NV_OK) {
        if (err != NULL)
            *err = op.err;
    } else {
        rc = (int)nv__redis_int(op.el[0]);
        if (rc > 0)
            rc = NV_OK;
    }
    op_free(&op);
    if (rc == NV_OK && (f->kind == NV_FINISH_RETRY || f->kind == NV_FINISH_RELEASE))
        local_change(self, queue);
    return lease_error(rc, queue, id, err);
}

/* finish + reserve in one op (one round trip per busy worker's job). */
static int
rq_finish_reserve(void *self, const char *queue, const char *id,
                  const char *token, const nv_finish *f, int64_t now,
                  int64_t lease_ms, const nv_limiter *lim, nv_job *out,
                  int *got, int64_t *next_at, nv_error *err)
{
    struct rqueue *q = self;
    struct op op = { .kind = OP_FINISH_RESERVE, .id = id, .token = token,
                     .f = f, .now = now, .lease_ms = lease_ms, .lim = lim };
    uint64_t gen = 0, epoch = 0;
    int64_t next = 0;
    int rc, live = 0;

    *got = 0;
    if (stash_take(q, queue, now, lease_ms, lim, out)) {
        /* a job handed off: the finish alone */
        rc = rq_finish(self, queue, id, token, f, now, err);
        if (rc == NV_OK)
            *got = 1;
        else
            stash_unget(q, queue, out, lease_ms);
        return rc;
    }
    note_gen(q, queue, &gen, &epoch, &live);
    new_token(op.tok);
    submit(q, queue, &op);
    rc = op.rc;
    if (rc != NV_OK) {
        if (err != NULL)
            *err = op.err;
    } else if ((rc = (int)nv__redis_int(op.el[0])) > 0) {
        rc = NV_OK;
        if (f->kind == NV_FINISH_RETRY || f->kind == NV_FINISH_RELEASE)
            local_change(q, queue);
        if (nv__redis_int(op.el[1]) == 1) {
            rc = reserved(op.el[2], op.el[3], now, lease_ms, op.tok, out,
                          err);
            *got = rc == NV_OK;
        } else {
            next = nv__redis_int(op.el[2]);
            if (next_at != NULL)
                *next_at = next;
            if (live && f->kind != NV_FINISH_RETRY &&
                f->kind != NV_FINISH_RELEASE)
                empty_store(q, queue, lim, next, gen, epoch);
        }
    }
    op_free(&op);
    return lease_error(rc, queue, id, err);
}

static int
rq_progress(void *self, const char *queue, const char *id, const char *token,
            double progress, const char *data, nv_error *err)
{
    nv__redis_args x;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    nv__redis_args_str(&x, token);
    nv__redis_args_dbl(&x, progress);
    nv__redis_args_str(&x, data ? "1" : "0");
    nv__redis_args_str(&x, data ? data : "");
    rc = run(self, S_PROGRESS, queue, id, &x, NULL, err);
    nv__redis_args_release(&x);
    return lease_error(rc, queue, id, err);
}

static int
rq_log(void *self, const char *queue, const char *id, const char *entry_json,
       int keep, nv_error *err)
{
    nv__redis_args x;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    nv__redis_args_str(&x, entry_json);
    nv__redis_args_int(&x, keep);
    rc = run(self, S_LOG, queue, id, &x, NULL, err);
    nv__redis_args_release(&x);
    return lease_error(rc, queue, id, err);
}

static int
rq_get(void *self, const char *queue, const char *id, nv_job *out,
       nv_error *err)
{
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    rc = run(self, S_GET, queue, id, &x, &r, err);
    nv__redis_args_release(&x);
    if (rc == NV_OK)
        rc = job_from(r->element[1], out, err);
    if (r != NULL)
        freeReplyObject(r);
    return lease_error(rc, queue, id, err);
}

static int
rq_list(void *self, const char *queue, unsigned mask, int64_t offset,
        int64_t limit, nv_job **out, size_t *n, int64_t *total, nv_error *err)
{
    nv__redis_args x;
    redisReply *r = NULL;
    nv_job *v = NULL;
    size_t cnt = 0;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_int(&x, (int64_t)mask);
    nv__redis_args_int(&x, offset < 0 ? 0 : offset);
    nv__redis_args_int(&x, limit);
    rc = run(self, S_LIST, queue, NULL, &x, &r, err);
    nv__redis_args_release(&x);
    if (rc != NV_OK)
        goto done;
    cnt = r->elements - 2;
    v = nv__calloc(cnt ? cnt : 1, sizeof(*v));
    if (v == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis queue: out of memory");
        goto done;
    }
    for (size_t i = 0; i < cnt; i++) {
        rc = job_from(r->element[i + 2], &v[i], err);
        if (rc != NV_OK) {
            nv_job_array_free(v, i);
            v = NULL;
            goto done;
        }
    }
    if (total != NULL)
        *total = nv__redis_int(r->element[1]);
    *out = v;
    *n = cnt;
done:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* Through the batches: the counts a job event carries (Q-19) are asked by
 * busy workers right after their own finish, and share its round trips. */
static int
rq_counts(void *self, const char *queue, nv_job_counts *out, nv_error *err)
{
    struct op op = { .kind = OP_COUNTS };
    const redisReply *r;
    int rc;

    submit(self, queue, &op);
    rc = op.rc;
    r = op.nel > 0 ? op.el[0] : NULL;
    if (rc != NV_OK) {
        if (err != NULL)
            *err = op.err;
    } else if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 7) {
        rc = nv__error(err, NV_EBACKEND, "redis queue: unexpected reply");
    } else {
        out->waiting = nv__redis_int(r->element[1]);
        out->delayed = nv__redis_int(r->element[2]);
        out->active = nv__redis_int(r->element[3]);
        out->completed = nv__redis_int(r->element[4]);
        out->failed = nv__redis_int(r->element[5]);
        out->paused = nv__redis_int(r->element[6]);
    }
    op_free(&op);
    return rc;
}

static int
rq_set_paused(void *self, const char *queue, int paused, nv_error *err)
{
    nv__redis_args x;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, paused ? "1" : "0");
    rc = run(self, S_PAUSE, queue, NULL, &x, NULL, err);
    nv__redis_args_release(&x);
    if (rc == NV_OK)
        local_change(self, queue);
    return rc;
}

static int
rq_is_paused(void *self, const char *queue, int *paused, nv_error *err)
{
    struct rqueue *q = self;
    char *meta = nv__asprintf("{%s:q:%s}:meta", q->pool->prefix, queue);
    redisReply *r = NULL;
    int rc;

    if (meta == NULL)
        return nv__error(err, NV_ENOMEM, "redis queue: out of memory");
    rc = nv__redis_cmdf(q->pool, meta, &r, err, "HGET %s paused", meta);
    if (rc == NV_OK) {
        *paused = r->type == REDIS_REPLY_STRING && strcmp(r->str, "1") == 0;
        freeReplyObject(r);
    }
    nv__free(meta);
    return rc;
}

static int
rq_remove(void *self, const char *queue, const char *id, nv_job *out,
          nv_error *err)
{
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    rc = run(self, S_REMOVE, queue, id, &x, &r, err);
    nv__redis_args_release(&x);
    if (rc == NV_OK && out != NULL)
        rc = job_from(r->element[1], out, err);
    else if (rc == NV_EJOB_ACTIVE)
        nv__error(err, rc, "job '%s' of queue '%s' is active", id, queue);
    if (r != NULL)
        freeReplyObject(r);
    return lease_error(rc, queue, id, err);
}

static int
rq_retry(void *self, const char *queue, const char *id, int64_t now,
         nv_job *out, nv_error *err)
{
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    (void)now;
    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    rc = run(self, S_RETRY, queue, id, &x, &r, err);
    nv__redis_args_release(&x);
    if (rc == NV_OK)
        local_change(self, queue);
    if (rc == NV_OK && out != NULL)
        rc = job_from(r->element[1], out, err);
    else if (rc == NV_EJOB_NOT_FAILED)
        nv__error(err, rc, "job '%s' of queue '%s' is not failed", id, queue);
    if (r != NULL)
        freeReplyObject(r);
    return lease_error(rc, queue, id, err);
}

static int
rq_reap(void *self, const char *queue, int64_t now, int max_stalled,
        nv_reaped **out, size_t *n, nv_error *err)
{
    nv__redis_args x;
    redisReply *r = NULL;
    nv_reaped *v = NULL;
    size_t cnt = 0;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_int(&x, now);
    nv__redis_args_int(&x, max_stalled);
    rc = run(self, S_REAP, queue, NULL, &x, &r, err);
    nv__redis_args_release(&x);
    if (rc == NV_OK && r->elements > 1)
        local_change(self, queue);
    if (rc != NV_OK)
        goto done;
    cnt = r->elements - 1;
    v = nv__calloc(cnt ? cnt : 1, sizeof(*v));
    if (v == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis queue: out of memory");
        goto done;
    }
    for (size_t i = 0; i < cnt; i++) {
        const redisReply *e = r->element[i + 1];
        v[i].failed = (int)nv__redis_int(e->element[0]);
        rc = job_from(e->element[1], &v[i].job, err);
        if (rc != NV_OK) {
            nv_reaped_free(v, i);
            v = NULL;
            goto done;
        }
    }
    *out = v;
    *n = cnt;
done:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* ---- Waiting ---- */

static struct note *
note_get(struct rqueue *q, const char *queue, int add)
{
    struct note **v, *nt;

    for (size_t i = 0; i < q->nnotes; i++) {
        if (strcmp(q->notes[i]->queue, queue) == 0)
            return q->notes[i];
    }
    if (!add)
        return NULL;
    nt = nv__calloc(1, sizeof(*nt));
    v = nv__realloc(q->notes, (q->nnotes + 1) * sizeof(*v));
    if (nt == NULL || v == NULL || (nt->queue = nv__strdup(queue)) == NULL) {
        nv__free(nt);
        if (v != NULL)
            q->notes = v;
        return NULL;
    }
    q->notes = v;
    q->notes[q->nnotes++] = nt;
    return nt;
}

/* Under q->mu: take w out of nt's sleepers. */
static void
sleeper_remove(struct note *nt, struct waiter *w)
{
    for (struct waiter **pp = &nt->sleepers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            nt->nsleep--;
            break;
        }
    }
    w->next = NULL;
    w->queued = 0;
}

/* Under q->mu: give a note to a sleeper of nt (the latest that is not
 * the poller, else the poller): its parker, owed a signal; NULL when none
 * sleeps. */
static nv__redis_parker *
sleeper_wake(struct note *nt)
{
    struct waiter *w = nt->sleepers;

    while (w != NULL && w == nt->poller)
        w = w->next;
    if (w == NULL)
        w = nt->sleepers;
    if (w == NULL)
        return NULL;
    sleeper_remove(nt, w);
    w->woken = W_NOTE;
    nv__redis_park_owe(w->k);
    return w->k;
}

/* Under q->mu (epoch just grew): every waiter looks again; the pollers
 * are chosen anew. */
static void
wake_all(struct rqueue *q)
{
    for (size_t i = 0; i < q->nnotes; i++) {
        q->notes[i]->poller = NULL;
        for (struct waiter *w = q->notes[i]->sleepers; w != NULL;
             w = w->next) {
            nv__redis_park_owe(w->k);     /* (under the mutex: rare) */
            nv__redis_unpark(w->k);
        }
    }
}

/* One note wakes one waiter of its queue: a job for one worker. */
static void
on_note(void *ud, const char *channel, const char *msg, size_t len)
{
    struct rqueue *q = ud;
    char name[NV_NAME_MAX + 1];
    nv__redis_parker *wake[MAX_TICKETS];
    int nwake = 0;

    pthread_mutex_lock(&q->mu);
    if (channel == NULL) {
        q->epoch++;    /* reconnected: anything may have happened */
        wake_all(q);
    } else {
        /* "<queue>" or "<queue>\0<n>": n jobs became runnable (a batch of
         * enqueues; an older nvent reads the queue name only) */
        const char *nul = memchr(msg, '\0', len);
        size_t nl = nul != NULL ? (size_t)(nul - msg) : len;
        long k = nul != NULL ? 0 : 1;
        struct note *nt = NULL;

        for (size_t i = nl + 1; i < len && msg[i] >= '0' && msg[i] <= '9' &&
             k <= MAX_TICKETS; i++)
            k = k * 10 + (msg[i] - '0');

        if (nl < sizeof(name)) {
            memcpy(name, msg, nl);
            name[nl] = '\0';
            nt = note_get(q, name, 0);
        }
        if (k < 1)
            k = 1;
        if (k > MAX_TICKETS)
            k = MAX_TICKETS;
        if (nt != NULL) {
            nt->gen++;
            for (long i = 0; i < k; i++) {
                if ((wake[nwake] = sleeper_wake(nt)) != NULL)
                    nwake++;
                else if (nt->tickets < MAX_TICKETS)
                    nt->tickets++;
            }
        }
    }
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < nwake; i++)
        nv__redis_unpark(wake[i]);
}

/*
 * The poller of a queue took a job: it is busy now, so another waiter
 * polls instead (it is woken to poll at once: the job the poller found
 * may not have been the only one due).
 */
static void
poll_handoff(struct rqueue *q, const char *queue)
{
    const struct note *was = polled_nt;
    nv__redis_parker *k = NULL;
    struct note *nt;

    polled_nt = NULL;
    pthread_mutex_lock(&q->mu);
    nt = note_get(q, queue, 0);
    if (nt != NULL && nt == was && nt->poller == &self_waiter) {
        struct waiter *w = nt->sleepers;

        nt->poller = w;
        nt->poller_until = nv__monotonic_ms() + IDLE_POLL_MS;
        if (w != NULL) {
            sleeper_remove(nt, w);
            w->woken = W_POLL;
            k = w->k;
            nv__redis_park_owe(k);
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (k != NULL)
        nv__redis_unpark(k);
}

/* This thread's waiter; NULL when out of memory. */
static struct waiter *
waiter_self(void)
{
    struct waiter *w = &self_waiter;

    if (w->k == NULL)
        w->k = nv__redis_parker_self();
    return w->k != NULL ? w : NULL;
}

/*
 * Wait for a note of 'queue' (a job for this waiter), up to timeout_ms.
 * What notes cannot say (a delayed job or a limiter window coming due,
 * see IDLE_POLL_MS) is found by polling: a waiter looks again when its
 * wait times out. While notes are received, one waiter of the queue, its
 * poller, does that for all: the others (when their timeout would not end
 * before the poller's) sleep until a note, or WAIT_SLICE_SUB_MS at most,
 * instead of waking every 20 ms to find nothing (with a hundred idle
 * workers per queue, thousands of thread wake-ups per second). The
 * poller stays the poller while it comes back to wait; when its look
 * finds a job (poll_handoff) the latest other waiter polls instead; when
 * it does not come back in time, the next waiter takes over.
 */
static int
rq_wait(void *self, const char *queue, int64_t timeout_ms)
{
    struct rqueue *q = self;
    int64_t now = nv__monotonic_ms(), slice, deadline;
    const char *ch[1] = { q->channel };
    struct note *nt;
    struct waiter *w;
    uint64_t epoch;

    polled_nt = NULL;
    idle_nt = NULL;
    if (timeout_ms <= 0)
        return NV_OK;
    pthread_mutex_lock(&q->mu);
    if (q->sub == NULL && now >= q->sub_retry_at) {
        /* Subscribe outside the lock: on_note takes it. */
        nv__redis_sub *s = NULL;
        pthread_mutex_unlock(&q->mu);
        nv__redis_sub_start(q->pool, ch, 1, on_note, q, &s, NULL);
        pthread_mutex_lock(&q->mu);
        if (s != NULL && q->sub == NULL) {
            q->sub = s;
        } else if (s != NULL) {
            pthread_mutex_unlock(&q->mu);
            nv__redis_sub_stop(s);
            pthread_mutex_lock(&q->mu);
        } else {
            q->sub_retry_at = nv__monotonic_ms() + 1000;
        }
    }
    slice = q->sub != NULL ? WAIT_SLICE_SUB_MS : WAIT_SLICE_MS;
    deadline = now + (timeout_ms < slice ? timeout_ms : slice);
    nt = note_get(q, queue, 1);
    w = waiter_self();
    epoch = q->epoch;
    if (nt == NULL || w == NULL) {
        pthread_mutex_unlock(&q->mu);
        return NV_OK;
    }
    if (nt->nstash > 0) {      /* a job handed off: for the reserve */
        pthread_mutex_unlock(&q->mu);
        return NV_OK;
    }
    if (nt->tickets > 0) {
        nt->tickets--;
        pthread_mutex_unlock(&q->mu);
        return NV_OK;
    }
    if (!nv__redis_sub_connected(q->sub) || now < q->woke_until) {
        /* no notes, or just woken: every waiter polls */
    } else if (nt->poller == NULL || nt->poller == w ||
               now >= nt->poller_until || deadline < nt->poller_until) {
        nt->poller = w;
        nt->poller_until = deadline;
    } else {
        deadline = now + slice;    /* a note, or the poller's look */
    }
    w->woken = 0;
    w->next = nt->sleepers;
    nt->sleepers = w;
    nt->nsleep++;
    w->queued = 1;
    while (w->woken == 0 && q->epoch == epoch &&
           nv__monotonic_ms() < deadline)
        nv__redis_park(w->k, &q->mu, deadline);
    if (w->queued)
        sleeper_remove(nt, w);
    if (nt->poller == w) {
        /* it looks now, and is back within its timeout (or not the
         * poller any more) */
        polled_nt = nt;
        nt->poller_until = nv__monotonic_ms() +
                           (timeout_ms < slice ? timeout_ms : slice);
    }
    if (w->woken != W_NOTE && q->epoch == epoch &&
        timeout_ms >= IDLE_POLL_MS && nv__redis_sub_connected(q->sub)) {
        idle_nt = nt;       /* a plain timeout: see idle_skip */
        idle_epoch = epoch;
    }
    pthread_mutex_unlock(&q->mu);
    return NV_OK;
}

static void
rq_wake(void *self)
{
    struct rqueue *q = self;

    pthread_mutex_lock(&q->mu);
    q->epoch++;
    /* A waiter that looked for its caller's stop just before this wake
     * and waits just after it must not sleep on until a note: for one
     * slice every wait ends by its own timeout. */
    q->woke_until = nv__monotonic_ms() + WAIT_SLICE_SUB_MS;
    wake_all(q);
    pthread_mutex_unlock(&q->mu);
}

static int
rq_ping(void *self, nv_error *err)
{
    struct rqueue *q = self;

    return nv__redis_cmdf(q->pool, NULL, NULL, err, "PING");
}

static void
rq_close(void *self)
{
    struct rqueue *q = self;

    if (q == NULL)
        return;
    nv__redis_sub_stop(q->sub);
    for (size_t i = 0; i < q->nnotes; i++) {
        struct stash *s;

        while ((s = q->notes[i]->stash) != NULL) {
            q->notes[i]->stash = s->next;
            stash_release(q, q->notes[i]->queue, s);
        }
        nv__redis_gather_free(&q->notes[i]->calls);
        nv__free(q->notes[i]->queue);
        nv__free(q->notes[i]);
    }
    nv__free(q->notes);
    nv__free(q->channel);
    nv__redis_pool_close(q->pool);
    pthread_mutex_destroy(&q->mu);
    nv__free(q);
}

static const nv_queue_ops redis_queue_ops = {
    .name = "redis",
    .enqueue = rq_enqueue,
    .enqueue_many = rq_enqueue_many,
    .reserve = rq_reserve,
    .extend = rq_extend,
    .finish = rq_finish,
    .finish_reserve = rq_finish_reserve,
    .progress = rq_progress,
    .log = rq_log,
    .get = rq_get,
    .list = rq_list,
    .counts = rq_counts,
    .set_paused = rq_set_paused,
    .is_paused = rq_is_paused,
    .remove = rq_remove,
    .retry = rq_retry,
    .reap = rq_reap,
    .wait = rq_wait,
    .wake = rq_wake,
    .ping = rq_ping,
    .close = rq_close,
};

int
nv_redis_queue_open(const char *settings_json, nv_queue *out, nv_error *err)
{
    struct rqueue *q = nv__calloc(1, sizeof(*q));
    int rc;

    if (q == NULL)
        return nv__error(err, NV_ENOMEM, "redis queue: out of memory");
    pthread_mutex_init(&q->mu, NULL);
    rc = nv__redis_pool_open(settings_json, "queue", &q->pool, err);
    if (rc != NV_OK)
        goto fail;
    q->channel = nv__asprintf("%s:q:wake", q->pool->prefix);
    if (q->channel == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis queue: out of memory");
        goto fail;
    }
    out->ops = &redis_queue_ops;
    out->self = q;
    return NV_OK;
fail:
    rq_close(q);
    return rc;
}
