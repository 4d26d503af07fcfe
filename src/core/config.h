/*
 * Configuration (§15): the resolved nvent.json document behind the opaque
 * public nv_config, and the accessors the engine, the scheduler and the host
 * read it through. The key table (paths, types, ranges, defaults, docs) is
 * data in config.c; nv_config_* in nvent.h are the public entry points.
 */
#ifndef NV_CORE_CONFIG_H
#define NV_CORE_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "nvent.h"

/*
 * The configuration. 'root' is always the complete §15 document: every key
 * of the table present with its effective value (defaults filled in), the
 * per-adapter blocks resolved (queue.redis from connections.redis when not
 * given, queue.file.dataDir = <connections.file.dataDir>/queue, prefixes
 * from 'prefix' (CFG-4)), and every path absolute (resolved against
 * 'project_dir'). 'project_dir' is absolute: the working directory unless
 * nv_config_set_project_dir() chose another one. Read-only for everyone but
 * config.c; a configuration is not shared between threads while it changes.
 */
struct nv_config {
    json_t *root;          /* resolved document (owned) */
    char   *project_dir;   /* absolute, no trailing '/' unless "/" */
    json_t *given;         /* what was written (files, nv_config_set),
                              validated, before defaults; config.c only */
};

/*
 * The value at a dotted key path ("server.port", "queue.worker"), borrowed
 * from c->root (valid until the configuration changes), or NULL when the
 * path does not exist. Optional values that are unset read as JSON null
 * (server.token) or are absent (queue.limiter).
 */
json_t *nv__config_at(const nv_config *c, const char *path);

/* Integer at 'path'; 0 when absent or not an integer. */
int64_t nv__config_int(const nv_config *c, const char *path);

/* String at 'path', borrowed like nv__config_at; NULL when absent, null or
 * not a string. */
const char *nv__config_str(const nv_config *c, const char *path);

/* Boolean at 'path' as 0/1; 0 when absent or not a boolean. */
int nv__config_bool(const nv_config *c, const char *path);

/*
 * Settings JSON text handed to an adapter constructor for adapter kind
 * 'kind' ("queue", "store" or "stream"), see nv_queue_open_fn in adapter.h:
 *   {"prefix": "nq",
 *    "file":  {"dataDir": "<absolute>", "synchronous": "normal"|"full"},
 *    "redis": {"host": "127.0.0.1", "port": 6379, "db": 0,
 *              "username"?: .., "password"?: ..}}
 * A redis block given as {url} is returned parsed into host/port/db/...
 * Returns a string the caller frees with nv__free (or nv_free), or NULL for
 * an unknown kind or out of memory.
 */
char *nv__config_adapter_settings(const nv_config *c, const char *kind);

/*
 * Deep copy of 'c' into *out (freed with nv_config_free). NV_ENOMEM on
 * failure, *out untouched. The engine copies the configuration it is given.
 */
int nv__config_dup(const nv_config *c, nv_config **out, nv_error *err);

/*
 * CFG-6: apply the NVENT_* environment variables found in 'env' (a NULL
 * terminated "NAME=value" array like environ; NULL = none) over 'c':
 *   NVENT_PORT -> server.port, NVENT_HOST -> server.host,
 *   NVENT_TOKEN -> server.token, NVENT_REDIS_URL -> connections.redis {url},
 *   NVENT_DATA_DIR -> connections.file.dataDir, NVENT_LOG_LEVEL -> debug.level.
 * Per-adapter redis/file blocks written in a loaded file keep priority over
 * NVENT_REDIS_URL / NVENT_DATA_DIR for their adapter. NVENT_CONFIG and
 * NVENT_URL are not configuration values and are ignored here. An empty
 * NVENT_TOKEN means no token (null); other empty variables are ignored;
 * NVENT_PORT must be plain digits. An invalid
 * value fails with NV_EINVAL and a message naming the variable
 * ("NVENT_PORT: server.port: expected integer 0..65535, got \"x\""). $CC
 * becomes functions.cc unless the file sets it (§15). 'c' is then
 * unchanged. The library never reads the environment itself: the server
 * calls this.
 */
int nv__config_apply_env(nv_config *c, char **env, nv_error *err);

#endif
