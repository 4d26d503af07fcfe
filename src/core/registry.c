/*
 * Function registry and flow graph (§1, §2, §7). STUB: the real
 * implementation follows.
 */
#include "core/registry.h"

#include <string.h>

#include "core/util.h"

struct nv__registry {
    int built;
};

int
nv__registry_new(nv__registry **out, nv_error *err)
{
    nv__registry *r = nv__calloc(1, sizeof(*r));

    if (r == NULL)
        return nv__error(err, NV_ENOMEM, "registry: out of memory");
    *out = r;
    return NV_OK;
}

void
nv__registry_free(nv__registry *r)
{
    nv__free(r);
}

int
nv__registry_add(nv__registry *r, const char *id, const char *file,
                 int runtime, const char *config_json, nv_handler h,
                 void *ud, nv_error *err)
{
    (void)r; (void)id; (void)file; (void)runtime; (void)config_json;
    (void)h; (void)ud;
    return nv__error(err, NV_EINTERNAL, "registry: not implemented yet");
}

int
nv__registry_build(nv__registry *r, const nv_config *cfg, int strict,
                   char **report, nv_error *err)
{
    (void)cfg; (void)strict; (void)err;
    r->built = 1;
    if (report != NULL)
        *report = nv__strdup("");
    return NV_OK;
}

size_t
nv__registry_nfunctions(const nv__registry *r)
{
    (void)r;
    return 0;
}

const nv__function *
nv__registry_function(const nv__registry *r, size_t i)
{
    (void)r; (void)i;
    return NULL;
}

const nv__function *
nv__registry_by_queue(const nv__registry *r, const char *queue)
{
    (void)r; (void)queue;
    return NULL;
}

size_t
nv__registry_nflows(const nv__registry *r)
{
    (void)r;
    return 0;
}

const nv__flow *
nv__registry_flow_at(const nv__registry *r, size_t i)
{
    (void)r; (void)i;
    return NULL;
}

const nv__flow *
nv__registry_flow(const nv__registry *r, const char *name)
{
    (void)r; (void)name;
    return NULL;
}

const nv__function *
nv__flow_step(const nv__flow *f, const char *step)
{
    (void)f; (void)step;
    return NULL;
}
