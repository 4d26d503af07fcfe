/*
 * Job options (§3.1): one table row per option, applied member by member
 * over a copy so a failure leaves the caller's options unchanged; the Q-6
 * retry wait with jitter and saturating arithmetic. See jobopts.h.
 */
#include "core/jobopts.h"

#include <math.h>
#include <string.h>

#include "core/check.h"
#include "core/util.h"

#define PRIORITY_MAX 2097152

typedef int (*opt_fn)(nv__jobopts *o, json_t *v, const char *path,
                      nv_error *err);

struct opt_row {
    const char *name;
    opt_fn      apply;      /* NULL: known but not supported (CF-2) */
};

void
nv__jobopts_default(nv__jobopts *o)
{
    memset(o, 0, sizeof(*o));
    o->attempts = 1;
    o->backoff_type = NV__BACKOFF_FIXED;
    o->backoff_number = 1;
    o->remove_on_complete = 1000;
    o->remove_on_fail = 5000;
}

/* ---- One function per option ---- */

static int
opt_attempts(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    int64_t x;
    int rc = nv__check_int(v, 1, 1000, path, &x, err);

    if (rc == NV_OK)
        o->attempts = (int)x;
    return rc;
}

static int
backoff_object(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    static const char *const types[] = { "fixed", "exponential", NULL };
    const char *key;
    char p[256];
    json_t *m;
    int64_t delay = 0;
    double jitter = 0;
    int type = 0, rc = NV_OK;

    json_object_foreach(v, key, m) {
        nv__path_join(p, sizeof(p), path, key);
        if (strcmp(key, "type") == 0) {
            rc = nv__check_enum(m, types, p, &type, err);
        } else if (strcmp(key, "delay") == 0) {
            rc = nv__check_int(m, 0, INT64_MAX, p, &delay, err);
        } else if (strcmp(key, "jitter") == 0) {
            if (!json_is_number(m) || json_number_value(m) < 0
                || json_number_value(m) > 1)
                rc = nv__check_expected(err, p, "number 0..1", m);
            else
                jitter = json_number_value(m);
        } else {
            rc = nv__error(err, NV_EINVAL, "%s: unknown key", p);
        }
        if (rc != NV_OK)
            return rc;
    }
    if (json_object_get(v, "type") == NULL)
        return nv__error(err, NV_EINVAL, "%s.type: required", path);
    if (json_object_get(v, "delay") == NULL)
        return nv__error(err, NV_EINVAL, "%s.delay: required", path);
    o->backoff_number = 0;
    o->backoff_type = type;
    o->backoff_delay = delay;
    o->jitter = jitter;
    return NV_OK;
}

/* CF-5: a backoff replaces the previous one whole. */
static int
opt_backoff(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    if (json_is_object(v))
        return backoff_object(o, v, path, err);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return nv__check_expected(
            err, path,
            "integer >= 0 or {type: \"fixed\"|\"exponential\", delay, jitter?}",
            v);
    o->backoff_number = 1;
    o->backoff_type = NV__BACKOFF_FIXED;
    o->backoff_delay = json_integer_value(v);
    o->jitter = 0;
    return NV_OK;
}

static int
opt_delay(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    return nv__check_int(v, 0, INT64_MAX, path, &o->delay, err);
}

static int
opt_priority(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    int64_t x;
    int rc = nv__check_int(v, 0, PRIORITY_MAX, path, &x, err);

    if (rc == NV_OK)
        o->priority = (int)x;
    return rc;
}

static int
opt_timeout(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    return nv__check_int(v, 0, INT64_MAX, path, &o->timeout, err);
}

static int
opt_lifo(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    return nv__check_bool(v, path, &o->lifo, err);
}

/* true = remove at once (0), false = keep all, N = keep N. */
static int
retention(json_t *v, const char *path, int64_t *keep, int *as_bool,
          nv_error *err)
{
    if (json_is_boolean(v)) {
        *keep = json_is_true(v) ? 0 : NV_KEEP_ALL;
        *as_bool = 1;
        return NV_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return nv__check_expected(err, path, "boolean or integer >= 0", v);
    *keep = json_integer_value(v);
    *as_bool = 0;
    return NV_OK;
}

static int
opt_remove_on_complete(nv__jobopts *o, json_t *v, const char *path,
                       nv_error *err)
{
    return retention(v, path, &o->remove_on_complete,
                     &o->remove_on_complete_bool, err);
}

static int
opt_remove_on_fail(nv__jobopts *o, json_t *v, const char *path,
                   nv_error *err)
{
    return retention(v, path, &o->remove_on_fail, &o->remove_on_fail_bool,
                     err);
}

static int
opt_job_id(nv__jobopts *o, json_t *v, const char *path, nv_error *err)
{
    const char *s;

    if (!json_is_string(v) || !nv__valid_key(json_string_value(v))
        || strlen(json_string_value(v)) != json_string_length(v))
        return nv__check_expected(
            err, path, "string of 1..256 bytes without control characters",
            v);
    s = json_string_value(v);
    nv__strlcpy(o->job_id, s, sizeof(o->job_id));
    return NV_OK;
}

static const struct opt_row opt_rows[] = {
    { "attempts",         opt_attempts },
    { "backoff",          opt_backoff },
    { "delay",            opt_delay },
    { "priority",         opt_priority },
    { "timeout",          opt_timeout },
    { "lifo",             opt_lifo },
    { "removeOnComplete", opt_remove_on_complete },
    { "removeOnFail",     opt_remove_on_fail },
    { "jobId",            opt_job_id },
    { "repeat",           NULL },
};

int
nv__jobopts_apply(nv__jobopts *o, json_t *j, int allow_job_id,
                  const char *path, nv_error *err)
{
    nv__jobopts tmp = *o;
    const char *key;
    char p[256];
    json_t *v;
    size_t i;
    int rc;

    if (j == NULL)
        return NV_OK;
    if (!json_is_object(j))
        return nv__check_expected(err, path ? path : "opts", "object", j);
    json_object_foreach(j, key, v) {
        nv__path_join(p, sizeof(p), path, key);
        for (i = 0; i < sizeof(opt_rows) / sizeof(opt_rows[0]); i++) {
            if (strcmp(opt_rows[i].name, key) == 0)
                break;
        }
        if (i == sizeof(opt_rows) / sizeof(opt_rows[0]))
            return nv__error(err, NV_EINVAL, "%s: unknown key", p);
        if (opt_rows[i].apply == NULL)
            return nv__error(err, NV_EINVAL, "%s: not supported", p);
        if (opt_rows[i].apply == opt_job_id && !allow_job_id)
            return nv__error(err, NV_EINVAL,
                             "%s: not allowed here (only at enqueue)", p);
        rc = opt_rows[i].apply(&tmp, v, p, err);
        if (rc != NV_OK)
            return rc;
    }
    *o = tmp;
    return NV_OK;
}

static json_t *
retention_json(int64_t keep, int as_bool)
{
    if (as_bool)
        return json_boolean(keep == 0);
    if (keep == NV_KEEP_ALL)
        return json_false();
    return json_integer(keep);
}

static json_t *
backoff_json(const nv__jobopts *o)
{
    json_t *b;

    if (o->backoff_number)
        return json_integer(o->backoff_delay);
    b = json_object();
    if (b == NULL)
        return NULL;
    json_object_set_new(b, "type", json_string(
        o->backoff_type == NV__BACKOFF_EXPONENTIAL ? "exponential" : "fixed"));
    json_object_set_new(b, "delay", json_integer(o->backoff_delay));
    if (o->jitter > 0)
        json_object_set_new(b, "jitter", json_real(o->jitter));
    return b;
}

json_t *
nv__jobopts_to_json(const nv__jobopts *o)
{
    json_t *j = json_object();
    int bad = 0;

    if (j == NULL)
        return NULL;
    bad |= json_object_set_new(j, "attempts", json_integer(o->attempts));
    bad |= json_object_set_new(j, "backoff", backoff_json(o));
    bad |= json_object_set_new(j, "delay", json_integer(o->delay));
    bad |= json_object_set_new(j, "priority", json_integer(o->priority));
    bad |= json_object_set_new(j, "timeout", json_integer(o->timeout));
    bad |= json_object_set_new(j, "lifo", json_boolean(o->lifo));
    bad |= json_object_set_new(j, "removeOnComplete",
        retention_json(o->remove_on_complete, o->remove_on_complete_bool));
    bad |= json_object_set_new(j, "removeOnFail",
        retention_json(o->remove_on_fail, o->remove_on_fail_bool));
    if (o->job_id[0] != '\0')
        bad |= json_object_set_new(j, "jobId", json_string(o->job_id));
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int64_t
nv__backoff_ms(const nv__jobopts *o, int n, double r)
{
    int64_t w = o->backoff_delay, cut;
    double j = o->jitter, x;
    int shift;

    if (w <= 0)
        return 0;
    if (!o->backoff_number && o->backoff_type == NV__BACKOFF_EXPONENTIAL) {
        shift = n > 1 ? n - 1 : 0;
        if (shift >= 63 || w > (INT64_MAX >> shift))
            w = INT64_MAX;
        else
            w <<= shift;
    }
    if (!(j > 0) || !(r > 0))
        return w;
    if (j > 1)
        j = 1;
    if (r >= 1)
        r = nextafter(1.0, 0.0);
    /* w - floor(w * j * r). In doubles w may round up, so the cut is
     * clamped to w: the wait never goes negative. */
    x = floor((double)w * j * r);
    if (x >= (double)w)
        cut = w;
    else
        cut = (int64_t)x;
    if (cut < 0)
        cut = 0;
    return w - cut;
}
