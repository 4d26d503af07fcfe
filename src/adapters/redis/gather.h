/*
 * Calls gathered into one round trip, for the redis queue (queue_batch)
 * and stream (stream_appendb) adapters. Busy threads call at the same
 * time; each call becomes an op on a list, and a caller whose op waits
 * there when the ops waiting may go out sends every op waiting (up to a
 * maximum) in one script, then hands each caller its reply. Callers that
 * came meanwhile wait, and one of them sends the next batch when it may.
 * A lone caller sends its op at once: no delay is added.
 *
 * Ops may go out (nv__redis_gather_may_send) with no batch out at once;
 * with one out, only when as many ops wait as that batch has (or when it
 * comes back): Redis runs the batch out meanwhile, and the ops its reply
 * hands back join the next batch instead of trickling out in small ones.
 * At most NV__REDIS_GATHER_INFLIGHT batches are out at once. Measured on
 * the queue: with one, Redis waited while the client read a batch's reply
 * and woke its callers (and went to sleep in between: at concurrency 10,
 * 5.4 ops a batch instead of 3.2, but a context switch of redis-server per
 * batch, and its CPU per job stayed at 31 us); with two it has the next
 * one at hand (concurrency 100: 31k -> 42k jobs/s). Each batch costs
 * Redis ~35-40 us besides its ops (a read and a write system call, the
 * function call, a handful of commands shared by its ops); at concurrency
 * 10, sending the second batch at once made batches of 3.6 ops, holding
 * it makes 4.0-4.3 with Redis still never idle, and Redis's CPU per job
 * falls by ~2 us. On the stream appends (stream.c) one batch out made 6.6
 * calls per flow instead of 7.0, but more socket reads for Redis and ~4%
 * fewer flows/s.
 */
#ifndef NV_ADAPTERS_REDIS_GATHER_H
#define NV_ADAPTERS_REDIS_GATHER_H

#include <pthread.h>

#include "adapters/redis/conn.h"

#define NV__REDIS_GATHER_MAX      64   /* ops in one batch at most */
#define NV__REDIS_GATHER_INFLIGHT 2

/* An op's place on the list: the first member of each adapter's op. */
typedef struct nv__redis_gop {
    int                   done, taken;
    nv__redis_parker     *k;     /* the caller's: it waits there */
    struct nv__redis_gop *next;
} nv__redis_gop;

/* One list of ops (a queue's, the stream adapter's); zero = empty. */
typedef struct nv__redis_gather {
    nv__redis_gop  *head, *tail;   /* waiting to be sent */
    int             sending;       /* batches out */
    int             nwait;         /* ops waiting */
    int             out_ops;       /* ops in the batches out */
    nv__redis_args *args;          /* a sender's, reused (or NULL) */
    int             args_busy;
} nv__redis_gather;

/* Send the n ops from 'first' (linked by next) in one call and fill their
 * replies; 'args' is an argument builder to reuse, or NULL. */
typedef void (*nv__redis_gather_send)(void *ctx, nv__redis_gop *first, int n,
                                      nv__redis_args *args);

/*
 * With 'mu' held (it guards g): put op on g's list and return once its
 * reply is in (sending batches as described above, 'mu' let go meanwhile
 * and on return). A batch of at least 'args_min' ops is sent with g's
 * reused argument builder. op->k must be the caller's parker.
 */
void nv__redis_gather_submit(nv__redis_gather *g, pthread_mutex_t *mu,
                             nv__redis_gop *op, int args_min,
                             nv__redis_gather_send send, void *ctx);

/* Under the lock: whether the ops waiting may go out now. */
int nv__redis_gather_may_send(const nv__redis_gather *g);

/* Free g's argument builder (no op may be on g). */
void nv__redis_gather_free(nv__redis_gather *g);

#endif
