/* Calls gathered into one round trip: see gather.h. */
#include "adapters/redis/gather.h"

#include "core/util.h"

int
nv__redis_gather_may_send(const nv__redis_gather *g)
{
    if (g->sending == 0)
        return 1;
    if (g->sending >= NV__REDIS_GATHER_INFLIGHT)
        return 0;
    return g->nwait >= g->out_ops;
}

void
nv__redis_gather_submit(nv__redis_gather *g, pthread_mutex_t *mu,
                        nv__redis_gop *op, int args_min,
                        nv__redis_gather_send send, void *ctx)
{
    /* the callers to wake once mu is let go: a batch's, and the next
     * sender */
    nv__redis_parker *wake[NV__REDIS_GATHER_MAX + 1];
    int nwake = 0;

    op->next = NULL;
    op->done = op->taken = 0;
    if (g->tail != NULL)
        g->tail->next = op;
    else
        g->head = op;
    g->tail = op;
    g->nwait++;
    while (!op->done) {
        nv__redis_gop *batch, *last, *o;
        nv__redis_args *ua;
        int n = 1;

        if (op->taken || !nv__redis_gather_may_send(g)) {
            /* woken when done, or to send the next batch */
            nv__redis_park(op->k, mu, -1);
            continue;
        }
        /* send what waits (this op among it) */
        batch = last = g->head;
        last->taken = 1;
        while (last->next != NULL && n < NV__REDIS_GATHER_MAX) {
            last = last->next;
            last->taken = 1;
            n++;
        }
        g->head = last->next;
        if (g->head == NULL)
            g->tail = NULL;
        last->next = NULL;
        g->sending++;
        g->nwait -= n;
        g->out_ops += n;
        ua = NULL;
        if (n >= args_min && !g->args_busy) {
            if (g->args == NULL)
                g->args = nv__malloc(sizeof(*g->args));
            ua = g->args;
            g->args_busy = ua != NULL;
        }
        pthread_mutex_unlock(mu);
        send(ctx, batch, n, ua);
        pthread_mutex_lock(mu);
        g->sending--;
        g->out_ops -= n;
        if (ua != NULL)
            g->args_busy = 0;
        for (o = batch; o != NULL; ) {
            nv__redis_gop *next = o->next;

            o->done = 1;
            if (o != op) {
                /* o may be gone once mu is let go: its parker stays */
                nv__redis_park_owe(o->k);
                wake[nwake++] = o->k;
            }
            o = next;
        }
        if (g->head != NULL && nv__redis_gather_may_send(g)) {
            /* sends the next batch */
            nv__redis_park_owe(g->head->k);
            wake[nwake++] = g->head->k;
        }
        if (!op->done) {    /* this op was not in that batch */
            pthread_mutex_unlock(mu);
            for (int i = 0; i < nwake; i++)
                nv__redis_unpark(wake[i]);
            nwake = 0;
            pthread_mutex_lock(mu);
        }
    }
    pthread_mutex_unlock(mu);
    for (int i = 0; i < nwake; i++)
        nv__redis_unpark(wake[i]);
}

void
nv__redis_gather_free(nv__redis_gather *g)
{
    nv__free(g->args);
    g->args = NULL;
}
