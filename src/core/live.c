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

int
nv__live_attach(nv_engine *e, nv_error *err)
{
    int rc = NV_OK;

    pthread_mutex_lock(&e->live_mu);
    if (!e->subscribed) {
        rc = e->stream.ops->subscribe(e->stream.self, on_note, e,
                                      &e->sub_handle, err);
        e->subscribed = rc == NV_OK;
    }
    pthread_mutex_unlock(&e->live_mu);
    return rc;
}

void
nv__live_detach(nv_engine *e)
{
    void *h = NULL;

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
    rc = nv__live_attach(e, err);
    if (rc != NV_OK) {
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
    nv__listeners_local(e);
    *out = l;
    return NV_OK;
}

void
nv_live_unsubscribe(nv_engine *e, nv_live *s)
{
    if (e == NULL || s == NULL)
        return;
    pthread_mutex_lock(&e->live_mu);
    for (struct nv_live **p = &e->lives; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            atomic_fetch_sub(&e->nlive, 1);
            break;
        }
    }
    pthread_mutex_unlock(&e->live_mu);
    nv__free(s);
}
