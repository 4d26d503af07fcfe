/*
 * Redis plumbing shared by the three redis adapters: settings parsing, one
 * connection per server shared by every thread of the process (requests
 * pipelined, replies read in order; connections made with hiredis 0.14,
 * kept in a small pool when idle), Lua scripts run as functions (FCALL)
 * or with EVALSHA (falling back to EVAL on NOSCRIPT), error translation,
 * and a subscriber thread on its own connection for pub/sub.
 */
#ifndef NV_ADAPTERS_REDIS_CONN_H
#define NV_ADAPTERS_REDIS_CONN_H

#include <hiredis.h>
#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdint.h>

#include "nvent/adapter.h"

/* A Lua script: its source (EVAL form; its SHA1 is cached per pool), and
 * the same code as a Redis function: its name and its library's source
 * (lua/gen.sh). Redis 7 runs the function (FCALL: the library's closures
 * are made once, at FUNCTION LOAD, not at every call); an older server
 * the script. */
typedef struct nv__redis_script {
    int         id;         /* index into the pool's SHA cache */
    const char *name;
    const char *src;
    const char *fn;         /* NULL: EVALSHA only */
    const char *lib;
} nv__redis_script;

#define NV__REDIS_MAX_SCRIPTS 32

typedef struct nv__redis_pool {
    char  host[256];
    int   port;
    int   db;
    char *username;          /* NULL when none */
    char *password;          /* NULL when none */
    char *prefix;            /* the adapter's key prefix ("nq") */
    char  addr[300];         /* "host:port" for messages */

    pthread_mutex_t mu;      /* guards everything below */
    redisContext  **idle;    /* connections not in use */
    size_t          nidle, cap;
    int64_t         retry_at;   /* monotonic ms: no connect before this */
    int64_t         backoff_ms; /* next wait after a failed connect */
    char            down_msg[200]; /* last connect error while down */
    char            sha[NV__REDIS_MAX_SCRIPTS][41];
    int             no_functions;  /* the server has no FCALL (Redis < 7) */
    char           *bufs[4];   /* I/O buffers not in use (conn.c) */
    int             nbufs;

    /* The shared connection that scripts go through (conn.c, "mux"):
     * requests of all threads written back to back, replies read in
     * order; one for all the pools of a process that reach the same
     * server, database and user. */
    struct nv__redis_mxhome *mxh;
} nv__redis_pool;

/* Parse settings ({"prefix", "redis": {host, port, db, username?,
 * password?} or {url}}) and connect once, so that a bad address or
 * password fails here with a message naming it. */
int  nv__redis_pool_open(const char *settings_json, const char *kind,
                         nv__redis_pool **out, nv_error *err);
void nv__redis_pool_close(nv__redis_pool *p);

/* A fresh connection with AUTH and SELECT done (for subscribers). */
redisContext *nv__redis_connect(nv__redis_pool *p, int64_t timeout_ms,
                                nv_error *err);

/* Run one command (argv form) through the shared connection (as scripts:
 * see nv__redis_eval). Error replies become
 * NV_EBACKEND (WRONGTYPE names 'key'); *out is the reply (free with
 * freeReplyObject). */
int nv__redis_cmd(nv__redis_pool *p, const char *key, redisReply **out,
                  nv_error *err, int argc, const char **argv,
                  const size_t *lens);
/* printf-style convenience (hiredis format: %s, %b, %lld). */
int nv__redis_cmdf(nv__redis_pool *p, const char *key, redisReply **out,
                   nv_error *err, const char *fmt, ...);
/* Several commands sent together (one request of the shared connection);
 * out[i] per command. */
int nv__redis_pipeline(nv__redis_pool *p, const char *key, size_t n,
                       const int *argcs, const char ***argvs,
                       const size_t **lens, redisReply **out, nv_error *err);

/* FCALL (or EVALSHA) the script with 'nkeys' keys followed by args (argv
 * holds keys then args). Scripts of all threads share one connection of
 * the pool: each caller's request is written as soon as no other thread
 * is writing, without waiting for the replies of earlier ones, and the
 * replies are read in order by one waiting thread for all (pipelining:
 * Redis reads, runs and answers requests that meet in one go). */
int nv__redis_eval(nv__redis_pool *p, const nv__redis_script *s,
                   const char *key, int nkeys, int argc, const char **argv,
                   const size_t *lens, redisReply **out, nv_error *err);
/* The same with 'npre' arguments (pre, prelen) put before argv (keys
 * among them as nkeys says): spares the caller a copy of its arguments. */
int nv__redis_eval_pre(nv__redis_pool *p, const nv__redis_script *s,
                       const char *key, int nkeys, int npre,
                       const char *const *pre, const size_t *prelen, int argc,
                       const char **argv, const size_t *lens,
                       redisReply **out, nv_error *err);

/* ---- Parking a thread ----
 * Each thread's own semaphore, made at its first use and freed when the
 * thread ends, for waits that another thread ends. A waiter sleeps in
 * nv__redis_park, which lets the mutex go for the sleep and takes it back
 * (plainly: a condition variable's wait takes it back marked as contended,
 * so that every unlock after it made a futex system call for nobody). The
 * waker decides under the mutex (nv__redis_park_owe) and posts after
 * unlocking it (nv__redis_unpark): a thread woken while the waker still
 * held the mutex would at once block on it again. A post that finds its
 * thread no longer asleep ends that thread's next park at once (every
 * wait loops on its condition), and a thread's end waits for the posts
 * owed to it. */
typedef struct nv__redis_parker {
    sem_t          sem;
    _Atomic int    owed;     /* posts decided, not yet made */
} nv__redis_parker;

/* This thread's parker; NULL when out of memory. */
nv__redis_parker *nv__redis_parker_self(void);
/* With 'mu' held: sleep on k until posted, or until the monotonic
 * deadline (ms; < 0: none), without 'mu' meanwhile. May return early. */
void nv__redis_park(nv__redis_parker *k, pthread_mutex_t *mu,
                    int64_t deadline_ms);
/* Under the mutex: a post to k will follow. */
void nv__redis_park_owe(nv__redis_parker *k);
/* After unlocking: post to k (owed before). */
void nv__redis_unpark(nv__redis_parker *k);

/* ---- Argument builder ---- */
#define NV__REDIS_ARGS_INLINE 48
#define NV__REDIS_ARGS_NUMBUF 768

/* Arguments of one command, borrowed strings and formatted numbers; the
 * first NV__REDIS_ARGS_INLINE and the numbers that fit live inside the
 * struct (no allocation per call): never copy a nv__redis_args. */
typedef struct nv__redis_args {
    const char **v;
    size_t      *len;
    char       **owned;     /* formatted numbers to free */
    int          n, cap, nowned, capowned;
    int          oom;
    size_t       numlen;
    const char  *v_in[NV__REDIS_ARGS_INLINE];
    size_t       len_in[NV__REDIS_ARGS_INLINE];
    char         num[NV__REDIS_ARGS_NUMBUF];
} nv__redis_args;

void nv__redis_args_init(nv__redis_args *a);
void nv__redis_args_release(nv__redis_args *a);
void nv__redis_args_str(nv__redis_args *a, const char *s);   /* borrowed */
void nv__redis_args_bin(nv__redis_args *a, const char *s, size_t n);
void nv__redis_args_int(nv__redis_args *a, int64_t v);
void nv__redis_args_dbl(nv__redis_args *a, double v);

/* ---- Reply helpers ---- */
int64_t nv__redis_int(const redisReply *r);   /* integer or numeric string */
char   *nv__redis_dup(const redisReply *r);   /* string -> heap copy, else NULL */

/* ---- Subscriber thread (its own connection) ---- */
/* channel NULL: the connection was lost or re-established (notes may have
 * been missed). */
typedef void (*nv__redis_msg_fn)(void *ud, const char *channel,
                                 const char *msg, size_t len);
typedef struct nv__redis_sub nv__redis_sub;
/* Connects and subscribes before returning, so that every message
 * published afterwards is delivered. */
int  nv__redis_sub_start(nv__redis_pool *p, const char *const *channels,
                         size_t n, nv__redis_msg_fn fn, void *ud,
                         nv__redis_sub **out, nv_error *err);
/* 1 while the subscription is live (no message can have been missed
 * since the last callback with channel NULL). */
int  nv__redis_sub_connected(nv__redis_sub *s);
/* Stops and joins the thread; no callback runs after it returns. */
void nv__redis_sub_stop(nv__redis_sub *s);

/* ---- Length-prefixed fields ("<len>:<bytes>") for pub/sub payloads ---- */
/* Read the next field of [*p, end); 0 on success. */
int nv__redis_ns_next(const char **p, const char *end, const char **s,
                      size_t *n);

/*
 * The Redis key of a name given by the engine. The engine already puts the
 * adapter's prefix in front ("nq:flow:<runId>", E-7): such a name is used
 * as it is. Any other name gets "<prefix>:" in front (CFG-4), so that two
 * adapters with different prefixes never share a key. Caller frees.
 */
char *nv__redis_key(const nv__redis_pool *p, const char *name);
/* The inverse for names read back from Redis (idx_names). Caller frees. */
char *nv__redis_unkey(const nv__redis_pool *p, const char *key, int added);

#endif
