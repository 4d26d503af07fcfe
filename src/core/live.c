/*
 * Live messages (SSE-4): the engine subscribes once to its stream adapter
 * and fans out every appended event ({kind: "flow.event", event}) and every
 * message published on its live channel (job and queue messages, from any
 * instance) to the local subscribers. The same subscription raises the
 * cancellation check of local attempts when a run is canceled or stalled
 * elsewhere (CTX-7).
 */
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

void
nv__live_local(nv_engine *e, const char *json)
{
    pthread_mutex_lock(&e->live_mu);
    for (struct nv_live *l = e->lives; l != NULL; l = l->next)
        l->fn(l->ud, json);
    pthread_mutex_unlock(&e->live_mu);
}

static void
on_event(nv_engine *e, const nv_event *ev)
{
    json_t *m, *rec;
    char *s;

    if (strcmp(ev->type, "flow.cancel") == 0)
        nv__attempts_cancel(e, ev->run_id, "canceled");
    else if (strcmp(ev->type, "flow.stalled") == 0)
        nv__attempts_cancel(e, ev->run_id, "stalled");
    if (nv__event_is_terminal(ev->type)) {
        atomic_fetch_add(&e->run_gen, 1);
        if (atomic_load(&e->run_waiters) > 0) {
            pthread_mutex_lock(&e->mu);
            pthread_cond_broadcast(&e->run_cv);
            pthread_mutex_unlock(&e->mu);
        }
    }
    if (atomic_load(&e->nlive) == 0)
        return;
    rec = nv__event_json(ev);
    if (rec == NULL)
        return;
    m = json_pack("{ssso}", "kind", "flow.event", "event", rec);
    s = m != NULL ? nv__dump(m) : NULL;
    json_decref(m);
    if (s != NULL)
        nv__live_local(e, s);
    nv__free(s);
}

static void
on_note(void *ud, const nv_stream_note *note)
{
    nv_engine *e = ud;

    if (note->event != NULL) {
        on_event(e, note->event);
        return;
    }
    if (note->message != NULL && note->channel != NULL &&
        nv__listeners_note(e, note->channel))
        return;
    if (note->message != NULL && note->channel != NULL &&
        strcmp(note->channel, e->live_channel) == 0 &&
        atomic_load(&e->nlive) > 0)
        nv__live_local(e, note->message);
}

/*
 * The engine's subscription to its stream adapter. Without live
 * subscribers a shared stream is listened to for flow events only (other
 * instances' cancels and ends, CTX-7) when the adapter can spare the rest
 * (subscribe_flow: on Redis, the step events then cost no PUBLISH at
 * all); the first live subscriber widens it to every event and the last
 * one to leave narrows it again. A change subscribes anew before it ends
 * the old subscription: a note may come twice meanwhile (its effects here
 * are idempotent, and no live subscriber sees it: widening happens before
 * the first one is added, narrowing after the last one left), none is
 * lost. Under e->sub_mu.
 */
static int
sub_change(nv_engine *e, int all, nv_error *err)
{
    const nv_stream_ops *ops = e->stream.ops;
    void *h = NULL, *old;
    int rc, subscribed;

    if (!all && ops->subscribe_flow == NULL)
        all = 1;
    pthread_mutex_lock(&e->live_mu);
    subscribed = e->subscribed;
    old = e->sub_handle;
    if (subscribed && e->sub_all == all) {
        pthread_mutex_unlock(&e->live_mu);
        return NV_OK;
    }
    pthread_mutex_unlock(&e->live_mu);
    rc = ops->subscribe_flow != NULL
       ? ops->subscribe_flow(e->stream.self, !all, on_note, e, &h, err)
       : ops->subscribe(e->stream.self, on_note, e, &h, err);
    if (rc != NV_OK)
        return subscribed ? NV_OK : rc;  /* narrowing may fail: stay wide */
    pthread_mutex_lock(&e->live_mu);
    e->sub_handle = h;
    e->sub_all = all;
    e->subscribed = 1;
    pthread_mutex_unlock(&e->live_mu);
    /* outside live_mu: the callback may be waiting for it */
    if (subscribed && old != NULL)
        ops->unsubscribe(e->stream.self, old);
    return NV_OK;
}

int
nv__live_attach(nv_engine *e, nv_error *err)
{
    int rc = NV_OK;

    pthread_mutex_lock(&e->sub_mu);
    if (!e->subscribed)
        rc = sub_change(e, atomic_load(&e->nlive) > 0, err);
    pthread_mutex_unlock(&e->sub_mu);
    return rc;
}

void
nv__live_detach(nv_engine *e)
{
    void *h = NULL;

    pthread_mutex_lock(&e->sub_mu);
    pthread_mutex_lock(&e->live_mu);
    if (e->subscribed) {
        h = e->sub_handle;
        e->subscribed = 0;
        e->sub_handle = NULL;
    }
    pthread_mutex_unlock(&e->live_mu);
    /* outside live_mu: the callback may be waiting for it */
    if (h != NULL)
        e->stream.ops->unsubscribe(e->stream.self, h);
    pthread_mutex_unlock(&e->sub_mu);
    nv__listeners_stop(e);
}

int
nv_live_subscribe(nv_engine *e, nv_live_fn fn, void *ud, nv_live **out,
                  nv_error *err)
{
    struct nv_live *l;
    int rc;

    if (e == NULL || fn == NULL || out == NULL)
        return nv__error(err, NV_EINVAL, "live: engine, callback and out "
                         "must not be NULL");
    l = nv__calloc(1, sizeof(*l));
    if (l == NULL)
        return nv__error(err, NV_ENOMEM, "live: out of memory");
    pthread_mutex_lock(&e->sub_mu);
    rc = sub_change(e, 1, err);
    if (rc != NV_OK) {
        pthread_mutex_unlock(&e->sub_mu);
        nv__free(l);
        return rc;
    }
    l->fn = fn;
    l->ud = ud;
    pthread_mutex_lock(&e->live_mu);
    l->next = e->lives;
    e->lives = l;
    atomic_fetch_add(&e->nlive, 1);
    pthread_mutex_unlock(&e->live_mu);
    pthread_mutex_unlock(&e->sub_mu);
    nv__listeners_local(e);
    *out = l;
    return NV_OK;
}

void
nv_live_unsubscribe(nv_engine *e, nv_live *s)
{
    if (e == NULL || s == NULL)
        return;
    pthread_mutex_lock(&e->sub_mu);
    pthread_mutex_lock(&e->live_mu);
    for (struct nv_live **p = &e->lives; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            atomic_fetch_sub(&e->nlive, 1);
            break;
        }
    }
    pthread_mutex_unlock(&e->live_mu);
    /* the last one gone: flow events only again, where the stream is
     * shared (elsewhere the engine listens only for live subscribers and
     * keeps the subscription it has, as before) */
    if (atomic_load(&e->nlive) == 0 && e->shared_stream && e->subscribed)
        sub_change(e, 0, NULL);
    pthread_mutex_unlock(&e->sub_mu);
    nv__free(s);
}
