/*
 * Run-scoped state (§9, ST-1..ST-8): keys in the store adapter under
 * <p>:flow:<runId>:<key> for flow jobs, <p>:job:<queue>:<jobId>:<key> or
 * <p>:state:<key> for plain jobs (autoScope); values are JSON text kept
 * exactly; TTL in ms; `state` events for flow jobs; cleanup strategies.
 */
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

static char *
state_key(nv_ctx *c, const char *key)
{
    nv_engine *e = c->e;
    char *rest, *full;

    if (c->flow != NULL)
        rest = nv__asprintf("flow:%s:%s", c->job.run_id, key);
    else if (e->state_scope == 0)
        rest = nv__asprintf("job:%s:%s:%s", c->job.queue, c->job.id, key);
    else
        rest = nv__asprintf("state:%s", key);
    if (rest == NULL)
        return NULL;
    full = nv__engine_key(e, "store", rest);
    nv__free(rest);
    return full;
}

static int
check(nv_ctx *c, const char *key, nv_error *err)
{
    int returned;

    if (c == NULL)
        return nv__error(err, NV_EINVAL, "context must not be NULL");
    pthread_mutex_lock(&c->mu);
    returned = c->returned;
    pthread_mutex_unlock(&c->mu);
    if (returned)
        return nv__error(err, NV_ESTATE, "context used after its handler "
                         "returned");
    if (key == NULL || !nv__valid_key(key))
        return nv__error(err, NV_EINVAL, "state key: expected 1..256 bytes "
                         "of UTF-8 without control characters");
    return NV_OK;
}

/* ST-7: writes are refused once the run is finished (or the attempt's
 * outcome is fixed). */
static int
check_write(nv_ctx *c, nv_error *err)
{
    const char *r = atomic_load(&c->cancel);

    if (c->flow != NULL && r != NULL && strcmp(r, "shutdown") != 0)
        return nv__error(err, NV_ESTATE, "state: the run is finished or the "
                         "attempt %s", r);
    return NV_OK;
}

int
nv_ctx_state_get(nv_ctx *c, const char *key, char **value_json, nv_error *err)
{
    char *k, *v = NULL;
    int rc = check(c, key, err);

    if (rc != NV_OK)
        return rc;
    k = state_key(c, key);
    if (k == NULL)
        return nv__error(err, NV_ENOMEM, "state: out of memory");
    rc = c->e->store.ops->kv_get(c->e->store.self, k, nv__now(c->e), &v, err);
    nv__free(k);
    if (rc == NV_ENOTFOUND) {
        v = nv__strdup("null");
        if (v == NULL)
            return nv__error(err, NV_ENOMEM, "state: out of memory");
        rc = NV_OK;
    }
    if (rc != NV_OK)
        return rc;
    if (value_json != NULL)
        *value_json = v;
    else
        nv_free(v);
    return NV_OK;
}

static int
state_event(nv_ctx *c, const char *op, const char *key, int64_t ttl,
            nv_error *err)
{
    json_t *d;
    int rc;

    if (c->flow == NULL)
        return NV_OK;
    d = json_pack("{ssss}", "op", op, "key", key);
    if (d != NULL && ttl > 0)
        json_object_set_new(d, "ttl", json_integer(ttl));
    rc = nv__run_append(c->e, c->job.flow_name, c->job.run_id, "state",
                        c->job.step_name, c->step_id, c->attempt, d, -1, NULL,
                        err);
    json_decref(d);
    return rc;
}

int
nv_ctx_state_set(nv_ctx *c, const char *key, const char *value_json,
                 int64_t ttl_ms, nv_error *err)
{
    json_t *v;
    char *k;
    int64_t expire = 0, now;
    int rc = check(c, key, err);

    if (rc == NV_OK)
        rc = check_write(c, err);
    if (rc != NV_OK)
        return rc;
    if (ttl_ms < 0)
        return nv__error(err, NV_EINVAL, "state ttl: expected integer >= 0, "
                         "got %lld", (long long)ttl_ms);
    rc = nv__parse_json("state value", value_json ? value_json : "null", &v,
                        err);
    if (rc != NV_OK)
        return rc;
    json_decref(v);
    if (ttl_ms == 0 && c->e->state_cleanup == 3)
        ttl_ms = c->e->state_ttl;
    now = nv__now(c->e);
    if (ttl_ms > 0)
        expire = now > INT64_MAX - ttl_ms ? INT64_MAX : now + ttl_ms;
    k = state_key(c, key);
    if (k == NULL)
        return nv__error(err, NV_ENOMEM, "state: out of memory");
    rc = c->e->store.ops->kv_set(c->e->store.self, k,
                                 value_json ? value_json : "null", expire,
                                 err);
    nv__free(k);
    if (rc != NV_OK)
        return rc;
    return state_event(c, "set", key, ttl_ms, err);
}

int
nv_ctx_state_delete(nv_ctx *c, const char *key, nv_error *err)
{
    char *k;
    int rc = check(c, key, err);

    if (rc == NV_OK)
        rc = check_write(c, err);
    if (rc != NV_OK)
        return rc;
    k = state_key(c, key);
    if (k == NULL)
        return nv__error(err, NV_ENOMEM, "state: out of memory");
    rc = c->e->store.ops->kv_del(c->e->store.self, k, err);
    nv__free(k);
    if (rc != NV_OK)
        return rc;
    return state_event(c, "delete", key, 0, err);
}

static void
drop_prefix(nv_engine *e, char *rest)
{
    char *p = rest != NULL ? nv__engine_key(e, "store", rest) : NULL;

    if (p != NULL)
        e->store.ops->kv_del_prefix(e->store.self, p, NULL, NULL);
    nv__free(p);
    nv__free(rest);
}

char *
nv__state_run_prefix(nv_engine *e, const char *run_id)
{
    char *rest = nv__asprintf("flow:%s:", run_id);
    char *p = rest != NULL ? nv__engine_key(e, "store", rest) : NULL;

    nv__free(rest);
    return p;
}

void
nv__state_drop_run(nv_engine *e, const char *run_id)
{
    drop_prefix(e, nv__asprintf("flow:%s:", run_id));
}

void
nv__state_drop_job(nv_engine *e, const char *queue, const char *id)
{
    drop_prefix(e, nv__asprintf("job:%s:%s:", queue, id));
}
