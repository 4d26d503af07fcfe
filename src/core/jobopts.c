/*
 * Job options (§3.1). STUB: the real implementation follows.
 */
#include "core/jobopts.h"

#include <string.h>

#include "core/util.h"

void
nv__jobopts_default(nv__jobopts *o)
{
    memset(o, 0, sizeof(*o));
    o->attempts = 1;
    o->backoff_number = 1;
    o->remove_on_complete = 1000;
    o->remove_on_fail = 5000;
}

int
nv__jobopts_apply(nv__jobopts *o, json_t *j, int allow_job_id,
                  const char *path, nv_error *err)
{
    (void)o; (void)j; (void)allow_job_id; (void)path; (void)err;
    return NV_OK;
}

json_t *
nv__jobopts_to_json(const nv__jobopts *o)
{
    (void)o;
    return json_object();
}

int64_t
nv__backoff_ms(const nv__jobopts *o, int n, double r)
{
    (void)n; (void)r;
    return o->backoff_delay;
}
