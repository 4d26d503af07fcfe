/*
 * Configuration (§15). STUB: the real implementation follows; the
 * functions exist so other layers can link against config.h.
 */
#include "core/config.h"

#include <string.h>

#include "core/util.h"

int
nv_config_new(nv_config **out, nv_error *err)
{
    nv_config *c = nv__calloc(1, sizeof(*c));

    if (c == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    c->root = json_object();
    c->project_dir = nv__strdup(".");
    *out = c;
    return NV_OK;
}

void
nv_config_free(nv_config *c)
{
    if (c == NULL)
        return;
    json_decref(c->root);
    nv__free(c->project_dir);
    nv__free(c);
}

int
nv_config_load_json(nv_config *c, const char *json, const char *origin,
                    nv_error *err)
{
    (void)c; (void)json; (void)origin;
    return nv__error(err, NV_EINTERNAL, "config: not implemented yet");
}

int
nv_config_set(nv_config *c, const char *path, const char *json_value,
              const char *origin, nv_error *err)
{
    (void)c; (void)path; (void)json_value; (void)origin;
    return nv__error(err, NV_EINTERNAL, "config: not implemented yet");
}

int
nv_config_get(const nv_config *c, const char *path, char **json,
              nv_error *err)
{
    (void)c; (void)path; (void)json;
    return nv__error(err, NV_EINTERNAL, "config: not implemented yet");
}

int
nv_config_set_project_dir(nv_config *c, const char *dir, nv_error *err)
{
    char *d = nv__strdup(dir);

    if (d == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    nv__free(c->project_dir);
    c->project_dir = d;
    return NV_OK;
}

json_t *
nv__config_at(const nv_config *c, const char *path)
{
    (void)c; (void)path;
    return NULL;
}

int64_t
nv__config_int(const nv_config *c, const char *path)
{
    json_t *v = nv__config_at(c, path);

    return json_is_integer(v) ? json_integer_value(v) : 0;
}

const char *
nv__config_str(const nv_config *c, const char *path)
{
    return json_string_value(nv__config_at(c, path));
}

int
nv__config_bool(const nv_config *c, const char *path)
{
    return json_is_true(nv__config_at(c, path));
}

char *
nv__config_adapter_settings(const nv_config *c, const char *kind)
{
    (void)c; (void)kind;
    return nv__strdup("{\"prefix\":\"nq\"}");
}

int
nv__config_dup(const nv_config *c, nv_config **out, nv_error *err)
{
    nv_config *d = nv__calloc(1, sizeof(*d));

    if (d == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    d->root = json_deep_copy(c->root);
    d->project_dir = nv__strdup(c->project_dir);
    *out = d;
    return NV_OK;
}

int
nv__config_apply_env(nv_config *c, char **env, nv_error *err)
{
    (void)c; (void)env; (void)err;
    return NV_OK;
}
