/*
 * Shared value checks with the CF-1 / CFG-3 message wording; see check.h.
 */
#include "core/check.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

void
nv__json_brief(const json_t *v, char *buf, size_t size)
{
    char *s;
    size_t n;

    if (size == 0)
        return;
    s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    if (s == NULL) {
        nv__strlcpy(buf, v ? "?" : "nothing", size);
        return;
    }
    n = strlen(s);
    if (n < size) {
        memcpy(buf, s, n + 1);
    } else if (size > 4) {
        memcpy(buf, s, size - 4);
        memcpy(buf + size - 4, "...", 4);
    } else {
        buf[0] = '\0';
    }
    free(s);
}

int
nv__check_expected(nv_error *err, const char *path, const char *what,
                   const json_t *v)
{
    char got[72];

    nv__json_brief(v, got, sizeof(got));
    return nv__error(err, NV_EINVAL, "%s: expected %s, got %s", path, what,
                     got);
}

int
nv__check_int(const json_t *v, int64_t min, int64_t max, const char *path,
              int64_t *out, nv_error *err)
{
    char what[64];
    int64_t x;

    if (max == INT64_MAX)
        snprintf(what, sizeof(what), "integer >= %" PRId64, min);
    else
        snprintf(what, sizeof(what), "integer %" PRId64 "..%" PRId64, min,
                 max);
    if (!json_is_integer(v))
        return nv__check_expected(err, path, what, v);
    x = json_integer_value(v);
    if (x < min || x > max)
        return nv__check_expected(err, path, what, v);
    if (out != NULL)
        *out = x;
    return NV_OK;
}

int
nv__check_bool(const json_t *v, const char *path, int *out, nv_error *err)
{
    if (!json_is_boolean(v))
        return nv__check_expected(err, path, "boolean", v);
    if (out != NULL)
        *out = json_is_true(v);
    return NV_OK;
}

int
nv__check_string(const json_t *v, int nonempty, const char *path,
                 const char **out, nv_error *err)
{
    if (!json_is_string(v) || (nonempty && json_string_length(v) == 0))
        return nv__check_expected(err, path,
                                  nonempty ? "non-empty string" : "string", v);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return nv__error(err, NV_EINVAL, "%s: string contains a NUL byte",
                         path);
    if (out != NULL)
        *out = json_string_value(v);
    return NV_OK;
}

int
nv__check_name(const json_t *v, const char *path, const char **out,
               nv_error *err)
{
    if (!json_is_string(v) || !nv__valid_name(json_string_value(v))
        || strlen(json_string_value(v)) != json_string_length(v))
        return nv__check_expected(
            err, path, "name matching ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", v);
    if (out != NULL)
        *out = json_string_value(v);
    return NV_OK;
}

int
nv__check_object(const json_t *v, const char *path, nv_error *err)
{
    if (!json_is_object(v))
        return nv__check_expected(err, path, "object", v);
    return NV_OK;
}

int
nv__check_enum(const json_t *v, const char *const *choices, const char *path,
               int *index, nv_error *err)
{
    char what[160];
    size_t len = 0;
    int i;

    if (json_is_string(v)) {
        for (i = 0; choices[i] != NULL; i++) {
            if (strcmp(json_string_value(v), choices[i]) == 0) {
                if (index != NULL)
                    *index = i;
                return NV_OK;
            }
        }
    }
    len = (size_t)snprintf(what, sizeof(what), "one of");
    for (i = 0; choices[i] != NULL && len < sizeof(what); i++)
        len += (size_t)snprintf(what + len, sizeof(what) - len, "%s \"%s\"",
                                i ? "," : "", choices[i]);
    return nv__check_expected(err, path, what, v);
}

int
nv__check_limiter(const json_t *v, const char *path, nv_limiter *out,
                  const char **group_key, nv_error *err)
{
    char p[256];
    const char *key, *gk = NULL;
    json_t *m;
    int64_t max = 0, dur = 0;
    int rc;

    if ((rc = nv__check_object(v, path, err)) != NV_OK)
        return rc;
    json_object_foreach((json_t *)v, key, m) {
        nv__path_join(p, sizeof(p), path, key);
        if (strcmp(key, "max") == 0)
            rc = nv__check_int(m, 1, INT64_MAX, p, &max, err);
        else if (strcmp(key, "duration") == 0)
            rc = nv__check_int(m, 1, INT64_MAX, p, &dur, err);
        else if (strcmp(key, "groupKey") == 0)
            rc = nv__check_string(m, 1, p, &gk, err);
        else
            rc = nv__error(err, NV_EINVAL, "%s: unknown key", p);
        if (rc != NV_OK)
            return rc;
    }
    if (json_object_get(v, "max") == NULL)
        return nv__error(err, NV_EINVAL, "%s.max: required", path);
    if (json_object_get(v, "duration") == NULL)
        return nv__error(err, NV_EINVAL, "%s.duration: required", path);
    if (out != NULL) {
        out->max = max;
        out->duration_ms = dur;
        out->grouped = gk != NULL;
    }
    if (group_key != NULL)
        *group_key = gk;
    return NV_OK;
}

void
nv__path_join(char *buf, size_t size, const char *prefix, const char *key)
{
    if (prefix == NULL || prefix[0] == '\0')
        snprintf(buf, size, "%s", key);
    else
        snprintf(buf, size, "%s.%s", prefix, key);
}
