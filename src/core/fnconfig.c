/*
 * Function configuration (§2). STUB: the real implementation follows.
 */
#include "nvent.h"

#include "core/util.h"

int
nv_function_config_to_json(const nv_function_config *cfg, char **json,
                           nv_error *err)
{
    if (cfg == NULL || cfg->abi != NV_ABI_VERSION)
        return nv__error(err, NV_EINVAL, "function config: ABI version mismatch");
    (void)json;
    return nv__error(err, NV_EINTERNAL, "function config: not implemented yet");
}
