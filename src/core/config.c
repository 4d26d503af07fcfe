/*
 * Configuration (§15). Every key is one row of the table below (path,
 * type, range or choices, default, doc). A configuration keeps two
 * documents: 'given', what files and nv_config_set() wrote (validated,
 * merged key by key), and 'root', recomputed from 'given' after each
 * change: defaults filled in, per-adapter blocks derived (CFG-4, CFG-5),
 * paths made absolute. Readers only ever see 'root'.
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/jobopts.h"
#include "core/util.h"

/* ---- The key table ---- */

enum key_type {
    K_OBJ,        /* a block of further keys */
    K_STR,        /* non-empty string */
    K_PATH,       /* non-empty string; relative -> against the project dir */
    K_INT,        /* integer min..max (CL-14) */
    K_BOOL,
    K_ENUM,       /* one of 'choices' */
    K_STRV,       /* array of strings */
    K_TOKEN,      /* non-empty string or null */
    K_REDIS,      /* CFG-5 connection */
    K_JOBOPTS,    /* §3.1 without jobId */
    K_LIMITER,    /* CF-3, or null for none */
    K_UNSUP,      /* known from the TypeScript nvent, not supported here */
};

struct key_row {
    const char        *path;
    enum key_type      type;
    int64_t            min, max;
    const char *const *choices;
    const char        *def;   /* default as JSON text; NULL: none/derived */
    const char        *doc;   /* K_UNSUP: the hint shown with the error */
};

#define NOLIM INT64_MAX

static const char *const adapters[] = { "memory", "file", "redis", NULL };
static const char *const syncs[] = { "normal", "full", NULL };
static const char *const levels[] = {
    "debug", "info", "warn", "error", "silent", NULL,
};
static const char *const scopes[] = { "always", "flow", "never", NULL };
static const char *const strategies[] = {
    "never", "immediate", "on-complete", "ttl", NULL,
};
static const char *const misfires[] = { "once", "skip", NULL };

#define REDIS_DEFAULT "{\"host\":\"127.0.0.1\",\"port\":6379,\"db\":0}"

/* The three adapter kinds share one block shape; their defaults are
 * derived from 'prefix' and 'connections.*' (CFG-4, CFG-5). */
#define ADAPTER_ROWS(kind)                                                  \
    { kind, K_OBJ, 0, 0, NULL, NULL, "the " kind " adapter" },              \
    { kind ".adapter", K_ENUM, 0, 0, adapters, "\"memory\"",                \
      "backend of the " kind " adapter: memory, file or redis" },           \
    { kind ".prefix", K_STR, 0, 0, NULL, NULL,                              \
      "key prefix of the " kind " adapter (default: prefix)" },             \
    { kind ".redis", K_REDIS, 0, 0, NULL, NULL,                             \
      "Redis connection of the " kind " adapter "                           \
      "(default: connections.redis)" },                                     \
    { kind ".file", K_OBJ, 0, 0, NULL, NULL,                                \
      "SQLite settings of the " kind " adapter" },                          \
    { kind ".file.dataDir", K_PATH, 0, 0, NULL, NULL,                       \
      "folder of " kind ".db (default: <connections.file.dataDir>/"         \
      kind ")" },                                                           \
    { kind ".file.synchronous", K_ENUM, 0, 0, syncs, "\"normal\"",          \
      "normal survives kill -9, full also survives power loss" }

static const struct key_row rows[] = {
    { "prefix", K_STR, 0, 0, NULL, "\"nq\"",
      "default key prefix of the three adapters" },
    { "functions", K_OBJ, 0, 0, NULL, NULL, "function discovery and build" },
    { "functions.dir", K_PATH, 0, 0, NULL, "\"functions\"",
      "folder scanned for functions (FN-1)" },
    { "functions.buildDir", K_PATH, 0, 0, NULL, "\".nvent/build\"",
      "where C functions are compiled to (C-1)" },
    { "functions.cc", K_STR, 0, 0, NULL, "\"cc\"",
      "C compiler (the server passes $CC when set)" },
    { "functions.cflags", K_STRV, 0, 0, NULL, "[]", "extra compiler flags" },
    { "functions.ldflags", K_STRV, 0, 0, NULL, "[]", "extra linker flags" },
    { "functions.describeTimeoutMs", K_INT, 1, NOLIM, NULL, "5000",
      "time a process function has to answer describe (P-3)" },
    { "functions.killGraceMs", K_INT, 0, NOLIM, NULL, "5000",
      "SIGTERM to SIGKILL delay for process functions" },
    { "functions.maxMessageBytes", K_INT, 1024, NOLIM, NULL, "16777216",
      "largest stdio protocol message" },
    { "server", K_OBJ, 0, 0, NULL, NULL, "HTTP server" },
    { "server.host", K_STR, 0, 0, NULL, "\"127.0.0.1\"", "listen address" },
    { "server.port", K_INT, 0, 65535, NULL, "3000",
      "listen port (0: any free port)" },
    { "server.token", K_TOKEN, 0, 0, NULL, "null",
      "bearer token required by the API (SEC-2); null: none" },
    { "server.maxBodyBytes", K_INT, 1, NOLIM, NULL, "1048576",
      "largest request body" },
    { "server.requestTimeoutMs", K_INT, 1, NOLIM, NULL, "30000",
      "time a request body has to arrive (CL-15)" },
    { "server.sseHeartbeatMs", K_INT, 1000, NOLIM, NULL, "15000",
      "interval of SSE heartbeat comments" },
    { "server.maxSseClients", K_INT, 1, NOLIM, NULL, "256",
      "live stream connections at once" },
    { "server.ui", K_BOOL, 0, 0, NULL, "true", "serve the web UI" },
    { "shutdownGraceMs", K_INT, 0, NOLIM, NULL, "10000",
      "time active handlers get at shutdown (W-7)" },
    { "debug", K_OBJ, 0, 0, NULL, NULL, "logging" },
    { "debug.level", K_ENUM, 0, 0, levels, "\"info\"",
      "lowest level of the server log" },
    { "connections", K_OBJ, 0, 0, NULL, NULL,
      "connections shared by the adapters" },
    { "connections.redis", K_REDIS, 0, 0, NULL, REDIS_DEFAULT,
      "{host, port, username?, password?, db} or {url}" },
    { "connections.file", K_OBJ, 0, 0, NULL, NULL, "file adapters" },
    { "connections.file.dataDir", K_PATH, 0, 0, NULL, "\".data\"",
      "parent folder of the file adapters' data" },
    ADAPTER_ROWS("queue"),
    ADAPTER_ROWS("store"),
    ADAPTER_ROWS("stream"),
    { "queue.defaultJobOptions", K_JOBOPTS, 0, 0, NULL, "{}",
      "job options of every queue (§3.1), under the functions' own" },
    { "queue.limiter", K_LIMITER, 0, 0, NULL, NULL,
      "{max, duration, groupKey?}: a limiter for each queue (CF-3)" },
    { "queue.worker", K_OBJ, 0, 0, NULL, NULL,
      "worker settings of every queue, under the functions' own" },
    { "queue.worker.concurrency", K_INT, 1, 1024, NULL, "2",
      "jobs of a queue running at once per instance" },
    { "queue.worker.autorun", K_BOOL, 0, 0, NULL, "true",
      "false: queues start paused (Q-14)" },
    { "queue.worker.lockDurationMs", K_INT, 1000, NOLIM, NULL, "30000",
      "lease length (W-2)" },
    { "queue.worker.maxStalledCount", K_INT, 0, NOLIM, NULL, "1",
      "lease expiries tolerated per job (W-3)" },
    { "queue.maxQueueSize", K_INT, 0, NOLIM, NULL, "0",
      "unfinished jobs a queue accepts (0: unlimited, Q-11)" },
    { "store.state", K_OBJ, 0, 0, NULL, NULL, "run-scoped state (§9)" },
    { "store.state.autoScope", K_ENUM, 0, 0, scopes, "\"always\"",
      "scoping of state keys to their run" },
    { "store.state.cleanup", K_OBJ, 0, 0, NULL, NULL, "state cleanup" },
    { "store.state.cleanup.strategy", K_ENUM, 0, 0, strategies, "\"never\"",
      "when a run's state is deleted" },
    { "store.state.cleanup.ttlMs", K_INT, 1, NOLIM, NULL, "3600000",
      "lifetime of state under the ttl strategy" },
    { "store.retention", K_OBJ, 0, 0, NULL, NULL, "run retention (§8.1)" },
    { "store.retention.maxRunsPerFlow", K_INT, 0, NOLIM, NULL, "1000",
      "finished runs kept per flow" },
    { "store.retention.maxAgeMs", K_INT, 0, NOLIM, NULL, "604800000",
      "age after which finished runs are removed" },
    { "store.retention.maxLogEventsPerRun", K_INT, 0, NOLIM, NULL, "10000",
      "log events kept per run" },
    { "flows", K_OBJ, 0, 0, NULL, NULL, "flow settings" },
    { "flows.stallDetection", K_OBJ, 0, 0, NULL, NULL,
      "stall detection (§13)" },
    { "flows.stallDetection.enabled", K_BOOL, 0, 0, NULL, "true",
      "mark runs without activity as stalled" },
    { "flows.stallDetection.stallTimeout", K_INT, 1, NOLIM, NULL, "1800000",
      "inactivity after which a run is stalled" },
    { "flows.stallDetection.checkInterval", K_INT, 1, NOLIM, NULL, "60000",
      "interval of stall checks and reconciliation" },
    { "flows.stallDetection.enablePeriodicCheck", K_BOOL, 0, 0, NULL, "true",
      "false has the effect of enabled: false" },
    { "scheduler", K_OBJ, 0, 0, NULL, NULL, "schedules (§12)" },
    { "scheduler.misfire", K_ENUM, 0, 0, misfires, "\"once\"",
      "default misfire policy (S-7)" },
    { "scheduler.misfireThresholdMs", K_INT, 0, NOLIM, NULL, "60000",
      "lateness after which a due time is missed" },
    /* CFG-3: known from the TypeScript nvent, refused with a hint. */
    { "dir", K_UNSUP, 0, 0, NULL, NULL, "use functions.dir" },
    { "ui", K_UNSUP, 0, 0, NULL, NULL, "use server.ui" },
    { "flow", K_UNSUP, 0, 0, NULL, NULL, "use flows" },
    { "store.eventTTL", K_UNSUP, 0, 0, NULL, NULL, "use store.retention" },
    { "store.metadataTTL", K_UNSUP, 0, 0, NULL, NULL, "use store.retention" },
    { "store.kvTTL", K_UNSUP, 0, 0, NULL, NULL, "use store.retention" },
    { "store.indexTTL", K_UNSUP, 0, 0, NULL, NULL, "use store.retention" },
    { "store.compression", K_UNSUP, 0, 0, NULL, NULL, "use store.retention" },
    { "stream.retryAttempts", K_UNSUP, 0, 0, NULL, NULL, NULL },
    { "stream.retryDelay", K_UNSUP, 0, 0, NULL, NULL, NULL },
    { "queue.worker.pollingIntervalMs", K_UNSUP, 0, 0, NULL, NULL, NULL },
    { "queue.worker.drainDelayMs", K_UNSUP, 0, 0, NULL, NULL, NULL },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static const char *const kinds[] = { "queue", "store", "stream", NULL };

static const struct key_row *
find_row(const char *path)
{
    size_t i;

    for (i = 0; i < NROWS; i++) {
        if (strcmp(rows[i].path, path) == 0)
            return &rows[i];
    }
    return NULL;
}

/* ---- Paths inside documents ---- */

/* The value at dotted 'path' of 'doc' (borrowed), NULL when absent. */
static json_t *
doc_at(json_t *doc, const char *path)
{
    char seg[256];
    const char *p = path, *dot;
    size_t n;

    if (path == NULL || path[0] == '\0')
        return doc;
    while (doc != NULL) {
        dot = strchr(p, '.');
        n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(seg) || !json_is_object(doc))
            return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        doc = json_object_get(doc, seg);
        if (dot == NULL)
            return doc;
        p = dot + 1;
    }
    return NULL;
}

/* Set 'value' (reference stolen) at dotted 'path', creating blocks. */
static int
doc_set(json_t *doc, const char *path, json_t *value)
{
    char seg[256];
    const char *p = path, *dot;
    json_t *next;
    size_t n;

    if (value == NULL)
        return -1;
    for (;;) {
        dot = strchr(p, '.');
        n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(seg) || !json_is_object(doc)) {
            json_decref(value);
            return -1;
        }
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (dot == NULL)
            return json_object_set_new(doc, seg, value);
        next = json_object_get(doc, seg);
        if (!json_is_object(next)) {
            next = json_object();
            if (json_object_set_new(doc, seg, next) != 0) {
                json_decref(value);
                return -1;
            }
        }
        doc = next;
        p = dot + 1;
    }
}

/* ---- Validation of one value ---- */

static int
check_strv(json_t *v, const char *path, nv_error *err)
{
    char p[300];
    size_t i;
    json_t *e;

    if (!json_is_array(v))
        return nv__check_expected(err, path, "array of strings", v);
    json_array_foreach(v, i, e) {
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        if (nv__check_string(e, 0, p, NULL, err) != NV_OK)
            return NV_EINVAL;
    }
    return NV_OK;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into a new json string; NULL when malformed. */
static json_t *
pct_decode(const char *s, size_t n)
{
    char buf[512];
    size_t i, o = 0;

    if (n >= sizeof(buf))
        return NULL;
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return NULL;
            buf[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            buf[o++] = s[i];
        }
    }
    if (memchr(buf, '\0', o) != NULL)
        return NULL;
    return json_stringn(buf, o);
}

/* Digits only, value in 0..max; -1 otherwise. */
static int64_t
parse_uint(const char *s, size_t n, int64_t max)
{
    int64_t x = 0;
    size_t i;

    if (n == 0 || n > 18)
        return -1;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    return x <= max ? x : -1;
}

#define URL_FORM "redis://[[user]:password@]host[:port][/db]"

/* CFG-5: redis://[[user]:password@]host[:port][/db] into 'out'. */
static int
parse_redis_url(json_t *v, const char *path, json_t *out, nv_error *err)
{
    const char *s = json_string_value(v), *auth, *end, *at, *hp, *colon;
    const char *hend;
    json_t *user = NULL, *pass = NULL;
    int64_t port = 6379, db = 0;

    if (strncmp(s, "rediss://", 9) == 0)
        return nv__error(err, NV_EINVAL, "%s: TLS is not supported", path);
    if (strncmp(s, "redis://", 8) != 0)
        return nv__check_expected(err, path, URL_FORM, v);
    auth = s + 8;
    end = auth + strcspn(auth, "/?#");
    if (*end == '?' || *end == '#' || strpbrk(end, "?#") != NULL)
        return nv__check_expected(err, path, URL_FORM, v);
    if (*end == '/' && end[1] != '\0') {
        db = parse_uint(end + 1, strlen(end + 1), INT_MAX);
        if (db < 0)
            return nv__check_expected(err, path, URL_FORM, v);
    }
    /* userinfo ends at the last '@' of the authority */
    at = NULL;
    for (hp = auth; hp < end; hp++) {
        if (*hp == '@')
            at = hp;
    }
    hp = auth;
    if (at != NULL) {
        colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon != NULL) {
            if (colon > auth)
                user = pct_decode(auth, (size_t)(colon - auth));
            pass = pct_decode(colon + 1, (size_t)(at - colon - 1));
            if ((colon > auth && user == NULL) || pass == NULL)
                goto bad;
        } else if (at > auth) {
            user = pct_decode(auth, (size_t)(at - auth));
            if (user == NULL)
                goto bad;
        }
        hp = at + 1;
    }
    if (*hp == '[') {                       /* [IPv6]:port */
        hend = memchr(hp, ']', (size_t)(end - hp));
        if (hend == NULL || hend == hp + 1)
            goto bad;
        json_object_set_new(out, "host",
                            json_stringn(hp + 1, (size_t)(hend - hp - 1)));
        colon = hend + 1 < end && hend[1] == ':' ? hend + 1 : NULL;
        if (hend + 1 < end && colon == NULL)
            goto bad;
    } else {
        colon = memchr(hp, ':', (size_t)(end - hp));
        hend = colon ? colon : end;
        if (hend == hp)
            goto bad;
        json_object_set_new(out, "host", json_stringn(hp, (size_t)(hend - hp)));
    }
    if (colon != NULL) {
        port = parse_uint(colon + 1, (size_t)(end - colon - 1), 65535);
        if (port < 1)
            goto bad;
    }
    json_object_set_new(out, "port", json_integer(port));
    json_object_set_new(out, "db", json_integer(db));
    if (user != NULL)
        json_object_set_new(out, "username", user);
    if (pass != NULL)
        json_object_set_new(out, "password", pass);
    return NV_OK;

bad:
    json_decref(user);
    json_decref(pass);
    return nv__check_expected(err, path, URL_FORM, v);
}

/*
 * CFG-5: validate a connection and write its normalised form
 * {host, port, db, username?, password?} to *norm (may be NULL).
 */
static int
check_redis(json_t *v, const char *path, json_t **norm, nv_error *err)
{
    char p[300];
    const char *key;
    json_t *m, *out, *url;
    int64_t x;
    int rc = NV_OK;

    if (!json_is_object(v))
        return nv__check_expected(
            err, path, "{host, port, username?, password?, db} or {url}", v);
    url = json_object_get(v, "url");
    if (url != NULL && json_object_size(v) > 1)
        return nv__error(err, NV_EINVAL,
                         "%s: give either {url} or {host, port, username?, "
                         "password?, db}, not both", path);
    out = json_object();
    if (out == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    json_object_set_new(out, "host", json_string("127.0.0.1"));
    json_object_set_new(out, "port", json_integer(6379));
    json_object_set_new(out, "db", json_integer(0));
    json_object_foreach(v, key, m) {
        nv__path_join(p, sizeof(p), path, key);
        if (strcmp(key, "url") == 0) {
            rc = nv__check_string(m, 1, p, NULL, err);
            if (rc == NV_OK)
                rc = parse_redis_url(m, p, out, err);
        } else if (strcmp(key, "host") == 0) {
            rc = nv__check_string(m, 1, p, NULL, err);
        } else if (strcmp(key, "port") == 0) {
            rc = nv__check_int(m, 1, 65535, p, &x, err);
        } else if (strcmp(key, "db") == 0) {
            rc = nv__check_int(m, 0, INT_MAX, p, &x, err);
        } else if (strcmp(key, "username") == 0
                   || strcmp(key, "password") == 0) {
            rc = nv__check_string(m, 0, p, NULL, err);
        } else {
            rc = nv__error(err, NV_EINVAL, "%s: unknown key", p);
        }
        if (rc != NV_OK)
            break;
        if (strcmp(key, "url") != 0)
            json_object_set(out, key, m);
    }
    if (rc != NV_OK || norm == NULL)
        json_decref(out);
    else
        *norm = out;
    return rc;
}

static int
check_jobopts(json_t *v, const char *path, json_t **norm, nv_error *err)
{
    nv__jobopts o;
    int rc;

    nv__jobopts_default(&o);
    rc = nv__jobopts_apply(&o, v, 0, path, err);
    if (rc == NV_OK && norm != NULL) {
        *norm = nv__jobopts_to_json(&o);
        if (*norm == NULL)
            return nv__error(err, NV_ENOMEM, "config: out of memory");
    }
    return rc;
}

/*
 * Validate leaf value 'v' of row 'row' at 'path'; with 'norm', also give
 * its effective form (new reference).
 */
static int
check_leaf(const struct key_row *row, json_t *v, const char *path,
           json_t **norm, nv_error *err)
{
    int rc;

    switch (row->type) {
    case K_STR:
    case K_PATH:
        rc = nv__check_string(v, 1, path, NULL, err);
        break;
    case K_INT:
        rc = nv__check_int(v, row->min, row->max, path, NULL, err);
        break;
    case K_BOOL:
        rc = nv__check_bool(v, path, NULL, err);
        break;
    case K_ENUM:
        rc = nv__check_enum(v, row->choices, path, NULL, err);
        break;
    case K_STRV:
        rc = check_strv(v, path, err);
        break;
    case K_TOKEN:
        rc = json_is_null(v) ? NV_OK
                             : nv__check_string(v, 1, path, NULL, err);
        if (rc != NV_OK)
            rc = nv__check_expected(err, path, "non-empty string or null", v);
        break;
    case K_REDIS:
        return check_redis(v, path, norm, err);
    case K_JOBOPTS:
        return check_jobopts(v, path, norm, err);
    case K_LIMITER:
        rc = json_is_null(v) ? NV_OK
                             : nv__check_limiter(v, path, NULL, NULL, err);
        break;
    default:
        rc = nv__error(err, NV_EINTERNAL, "%s: not a value", path);
        break;
    }
    if (rc == NV_OK && norm != NULL)
        *norm = json_deep_copy(v);
    return rc;
}

static int
not_supported(const struct key_row *row, nv_error *err)
{
    if (row->doc != NULL)
        return nv__error(err, NV_EINVAL, "%s: not supported (%s)", row->path,
                         row->doc);
    return nv__error(err, NV_EINVAL, "%s: not supported", row->path);
}

/* Validate document 'doc' found at 'path' ("" for the root). */
static int
check_doc(json_t *doc, const char *path, nv_error *err)
{
    const struct key_row *row;
    const char *key;
    char p[300];
    json_t *v;
    int rc;

    if (!json_is_object(doc))
        return nv__check_expected(err, path[0] ? path : "configuration",
                                  "object", doc);
    json_object_foreach(doc, key, v) {
        nv__path_join(p, sizeof(p), path, key);
        row = find_row(p);
        if (row == NULL)
            return nv__error(err, NV_EINVAL, "%s: unknown key", p);
        if (row->type == K_UNSUP)
            return not_supported(row, err);
        if (row->type == K_OBJ)
            rc = check_doc(v, p, err);
        else
            rc = check_leaf(row, v, p, NULL, err);
        if (rc != NV_OK)
            return rc;
    }
    return NV_OK;
}

/* Merge validated 'doc' into 'given': blocks key by key, values whole. */
static int
merge_doc(json_t *given, json_t *doc, const char *path)
{
    const struct key_row *row;
    const char *key;
    char p[300];
    json_t *v, *sub;

    json_object_foreach(doc, key, v) {
        nv__path_join(p, sizeof(p), path, key);
        row = find_row(p);
        if (row != NULL && row->type == K_OBJ) {
            sub = json_object_get(given, key);
            if (!json_is_object(sub)) {
                sub = json_object();
                if (json_object_set_new(given, key, sub) != 0)
                    return -1;
            }
            if (merge_doc(sub, v, p) != 0)
                return -1;
        } else if (json_object_set_new(given, key, json_deep_copy(v)) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- Resolution: given -> root ---- */

/* Lexically normalised absolute form of 'p' against 'base'. */
static char *
abs_path(const char *base, const char *p)
{
    char *joined, *out, *seg, *save = NULL;
    size_t len, o = 0;

    joined = p[0] == '/' ? nv__strdup(p) : nv__asprintf("%s/%s", base, p);
    if (joined == NULL)
        return NULL;
    len = strlen(joined);
    out = nv__malloc(len + 2);
    if (out == NULL) {
        nv__free(joined);
        return NULL;
    }
    for (seg = strtok_r(joined, "/", &save); seg != NULL;
         seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, seg, strlen(seg));
        o += strlen(seg);
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    nv__free(joined);
    return out;
}

/* Overlay the given leaves onto root in their effective form. */
static int
overlay(json_t *root, json_t *given, const char *path, nv_error *err)
{
    const struct key_row *row;
    const char *key;
    char p[300];
    json_t *v, *norm = NULL;
    int rc;

    json_object_foreach(given, key, v) {
        nv__path_join(p, sizeof(p), path, key);
        row = find_row(p);
        if (row == NULL || row->type == K_UNSUP)
            continue;
        if (row->type == K_OBJ) {
            rc = overlay(root, v, p, err);
        } else {
            rc = check_leaf(row, v, p, &norm, err);
            if (rc == NV_OK && row->type == K_LIMITER && json_is_null(norm)) {
                json_decref(norm);
                json_object_del(doc_at(root, path), key);
                continue;
            }
            if (rc == NV_OK && doc_set(root, p, norm) != 0)
                rc = nv__error(err, NV_ENOMEM, "config: out of memory");
        }
        if (rc != NV_OK)
            return rc;
    }
    return NV_OK;
}

static int
set_default(json_t *root, const char *path, json_t *v)
{
    if (doc_at(root, path) != NULL) {
        json_decref(v);
        return 0;
    }
    return doc_set(root, path, v);
}

/* CFG-4, CFG-5, A-4 defaults that depend on other keys. */
static int
derive(json_t *root)
{
    char p[64];
    char *dir;
    size_t i;
    int bad = 0;

    for (i = 0; kinds[i] != NULL; i++) {
        snprintf(p, sizeof(p), "%s.prefix", kinds[i]);
        bad |= set_default(root, p, json_deep_copy(doc_at(root, "prefix")));
        snprintf(p, sizeof(p), "%s.redis", kinds[i]);
        bad |= set_default(root, p,
                           json_deep_copy(doc_at(root, "connections.redis")));
        snprintf(p, sizeof(p), "%s.file.dataDir", kinds[i]);
        dir = nv__asprintf("%s/%s", json_string_value(
                               doc_at(root, "connections.file.dataDir")),
                           kinds[i]);
        bad |= dir == NULL || set_default(root, p, json_string(dir));
        nv__free(dir);
    }
    return bad ? -1 : 0;
}

static int
resolve_paths(json_t *root, const char *base)
{
    json_t *v;
    char *abs;
    size_t i;

    for (i = 0; i < NROWS; i++) {
        if (rows[i].type != K_PATH)
            continue;
        v = doc_at(root, rows[i].path);
        if (!json_is_string(v))
            continue;
        abs = abs_path(base, json_string_value(v));
        if (abs == NULL || json_string_set(v, abs) != 0) {
            nv__free(abs);
            return -1;
        }
        nv__free(abs);
    }
    return 0;
}

/* A copy of block 'obj' at 'path' with its keys in table order, so every
 * effective document reads the same whatever order it was written in. */
static json_t *
reorder(json_t *obj, const char *path)
{
    json_t *out = json_object(), *v;
    const char *key;
    size_t i, n = strlen(path);

    if (out == NULL)
        return NULL;
    for (i = 0; i < NROWS; i++) {
        key = rows[i].path + (n ? n + 1 : 0);
        if ((n && (strncmp(rows[i].path, path, n) != 0
                   || rows[i].path[n] != '.'))
            || strchr(key, '.') != NULL)
            continue;
        v = json_object_get(obj, key);
        if (v == NULL)
            continue;
        v = rows[i].type == K_OBJ ? reorder(v, rows[i].path) : json_incref(v);
        if (json_object_set_new(out, key, v) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/*
 * Compute the effective document from 'given'. Paths are resolved before
 * the derived data folders so <connections.file.dataDir>/queue is
 * absolute too.
 */
static int
resolve(json_t *given, const char *base, json_t **out, nv_error *err)
{
    json_t *root = json_object(), *v, *norm, *sorted;
    size_t i;
    int rc;

    if (root == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    for (i = 0; i < NROWS; i++) {
        if (rows[i].def == NULL)
            continue;
        v = json_loads(rows[i].def, JSON_DECODE_ANY, NULL);
        norm = NULL;
        rc = v ? check_leaf(&rows[i], v, rows[i].path, &norm, err) : NV_ENOMEM;
        json_decref(v);
        if (rc != NV_OK || doc_set(root, rows[i].path, norm) != 0)
            goto oom;
    }
    rc = overlay(root, given, "", err);
    if (rc != NV_OK) {
        json_decref(root);
        return rc;
    }
    if (resolve_paths(root, base) != 0 || derive(root) != 0)
        goto oom;
    sorted = reorder(root, "");
    json_decref(root);
    if (sorted == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    *out = sorted;
    return NV_OK;

oom:
    json_decref(root);
    return nv__error(err, NV_ENOMEM, "config: out of memory");
}

/* Replace c->given with 'given' (stolen) after resolving it. */
static int
commit(nv_config *c, json_t *given, nv_error *err)
{
    json_t *root = NULL;
    int rc = resolve(given, c->project_dir, &root, err);

    if (rc != NV_OK) {
        json_decref(given);
        return rc;
    }
    json_decref(c->given);
    json_decref(c->root);
    c->given = given;
    c->root = root;
    return NV_OK;
}

/* Prefix err->msg with "<origin>: " (CFG-3). */
static int
with_origin(nv_error *err, int rc, const char *origin)
{
    char msg[sizeof(err->msg)];
    size_t n;

    if (err == NULL || origin == NULL || origin[0] == '\0')
        return rc;
    nv__strlcpy(msg, origin, sizeof(msg));
    n = strlen(msg);
    nv__strlcpy(msg + n, ": ", sizeof(msg) - n);
    n = strlen(msg);
    nv__strlcpy(msg + n, err->msg, sizeof(msg) - n);
    memcpy(err->msg, msg, sizeof(msg));
    return rc;
}

/* Validate 'doc' and merge it; 'c' unchanged on failure. */
static int
load_doc(nv_config *c, json_t *doc, nv_error *err)
{
    json_t *given;
    int rc = check_doc(doc, "", err);

    if (rc != NV_OK)
        return rc;
    given = json_deep_copy(c->given);
    if (given == NULL || merge_doc(given, doc, "") != 0) {
        json_decref(given);
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    }
    return commit(c, given, err);
}

/* ---- Public API ---- */

int
nv_config_new(nv_config **out, nv_error *err)
{
    char cwd[PATH_MAX];
    nv_config *c;
    int rc;

    if (out == NULL)
        return nv__error(err, NV_EINVAL, "config: out is NULL");
    c = nv__calloc(1, sizeof(*c));
    if (c == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    c->project_dir = nv__strdup(getcwd(cwd, sizeof(cwd)) ? cwd : "/");
    c->given = json_object();
    if (c->project_dir == NULL || c->given == NULL) {
        nv_config_free(c);
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    }
    rc = commit(c, json_object(), err);
    if (rc != NV_OK) {
        nv_config_free(c);
        return rc;
    }
    *out = c;
    return NV_OK;
}

void
nv_config_free(nv_config *c)
{
    if (c == NULL)
        return;
    json_decref(c->root);
    json_decref(c->given);
    nv__free(c->project_dir);
    nv__free(c);
}

int
nv_config_load_json(nv_config *c, const char *json, const char *origin,
                    nv_error *err)
{
    json_error_t je;
    json_t *doc;
    int rc;

    if (c == NULL || json == NULL)
        return nv__error(err, NV_EINVAL, "config: NULL argument");
    doc = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL)
        return with_origin(err, nv__error(err, NV_EJSON,
                                          "invalid JSON: %s (line %d, column %d)",
                                          je.text, je.line, je.column),
                           origin);
    rc = load_doc(c, doc, err);
    json_decref(doc);
    return rc == NV_OK ? rc : with_origin(err, rc, origin);
}

/* Rows whose value is an object edited as a whole. */
static int
object_value(const struct key_row *row)
{
    return row != NULL && (row->type == K_JOBOPTS || row->type == K_LIMITER
                           || row->type == K_REDIS);
}

/* The row whose path is the longest proper prefix of 'path', or NULL. */
static const struct key_row *
prefix_row(const char *path, size_t *plen)
{
    const struct key_row *best = NULL;
    size_t i, n;

    for (i = 0; i < NROWS; i++) {
        n = strlen(rows[i].path);
        if (strncmp(rows[i].path, path, n) == 0 && path[n] == '.'
            && (best == NULL || n > strlen(best->path)))
            best = &rows[i];
    }
    if (best != NULL)
        *plen = strlen(best->path);
    return best;
}

/*
 * Build the document {a: {b: value}} for 'path'. A path inside an object
 * value (queue.defaultJobOptions.attempts) edits a copy of that value.
 */
static int
nest(const nv_config *c, const char *path, json_t *value, json_t **doc,
     nv_error *err)
{
    const struct key_row *row = find_row(path), *pr;
    json_t *d, *inner;
    char outer[300];
    size_t plen = 0;

    if (row == NULL) {
        pr = prefix_row(path, &plen);
        if (pr != NULL && pr->type == K_UNSUP)
            return not_supported(pr, err);
        if (!object_value(pr))
            return nv__error(err, NV_EINVAL, "%s: unknown key", path);
        snprintf(outer, sizeof(outer), "%.*s", (int)plen, path);
        inner = json_deep_copy(doc_at(c->given, outer));
        if (!json_is_object(inner)) {
            json_decref(inner);
            inner = json_object();
        }
        if (doc_set(inner, path + plen + 1, json_incref(value)) != 0) {
            json_decref(inner);
            return nv__error(err, NV_ENOMEM, "config: out of memory");
        }
        path = outer;
        value = inner;
    } else {
        json_incref(value);
    }
    d = json_object();
    if (d == NULL || doc_set(d, path, value) != 0) {
        json_decref(d);
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    }
    *doc = d;
    return NV_OK;
}

int
nv_config_set(nv_config *c, const char *path, const char *json_value,
              const char *origin, nv_error *err)
{
    json_error_t je;
    json_t *v, *doc = NULL;
    int rc;

    if (c == NULL || path == NULL || path[0] == '\0' || json_value == NULL)
        return nv__error(err, NV_EINVAL, "config: NULL argument");
    v = json_loads(json_value, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (v == NULL)
        return with_origin(err, nv__error(err, NV_EJSON,
                                          "%s: invalid JSON: %s", path,
                                          je.text),
                           origin);
    rc = nest(c, path, v, &doc, err);
    json_decref(v);
    if (rc == NV_OK)
        rc = load_doc(c, doc, err);
    json_decref(doc);
    return rc == NV_OK ? rc : with_origin(err, rc, origin);
}

int
nv_config_get(const nv_config *c, const char *path, char **json,
              nv_error *err)
{
    const struct key_row *row;
    json_t *v;
    size_t plen;
    char *s;

    if (c == NULL || json == NULL)
        return nv__error(err, NV_EINVAL, "config: NULL argument");
    if (path != NULL && path[0] != '\0') {
        row = find_row(path);
        if (row == NULL) {
            row = prefix_row(path, &plen);
            if (!object_value(row))
                row = NULL;
        }
        if (row == NULL || row->type == K_UNSUP)
            return nv__error(err, NV_EINVAL, "%s: unknown key", path);
    }
    v = doc_at(c->root, path);
    s = json_dumps(v ? v : json_null(), JSON_ENCODE_ANY | JSON_COMPACT);
    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    *json = s;
    return NV_OK;
}

int
nv_config_set_project_dir(nv_config *c, const char *dir, nv_error *err)
{
    char cwd[PATH_MAX];
    char *old, *abs;
    json_t *given;
    int rc;

    if (c == NULL || dir == NULL || dir[0] == '\0')
        return nv__error(err, NV_EINVAL, "config: project directory is empty");
    abs = abs_path(getcwd(cwd, sizeof(cwd)) ? cwd : "/", dir);
    given = json_deep_copy(c->given);
    if (abs == NULL || given == NULL) {
        nv__free(abs);
        json_decref(given);
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    }
    old = c->project_dir;
    c->project_dir = abs;
    rc = commit(c, given, err);
    if (rc != NV_OK) {
        c->project_dir = old;
        nv__free(abs);
        return rc;
    }
    nv__free(old);
    return NV_OK;
}

/* ---- Internal accessors ---- */

json_t *
nv__config_at(const nv_config *c, const char *path)
{
    if (c == NULL)
        return NULL;
    return doc_at(c->root, path);
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
    json_t *block, *s;
    char *out;
    size_t i;

    for (i = 0; kinds[i] != NULL; i++) {
        if (kind != NULL && strcmp(kinds[i], kind) == 0)
            break;
    }
    if (c == NULL || kinds[i] == NULL)
        return NULL;
    block = doc_at(c->root, kind);
    s = json_pack("{s:O, s:O, s:O, s:O}",
                  "adapter", json_object_get(block, "adapter"),
                  "prefix", json_object_get(block, "prefix"),
                  "file", json_object_get(block, "file"),
                  "redis", json_object_get(block, "redis"));
    if (s == NULL)
        return NULL;
    out = nv__dump(s);
    json_decref(s);
    return out;
}

int
nv__config_dup(const nv_config *c, nv_config **out, nv_error *err)
{
    nv_config *d = nv__calloc(1, sizeof(*d));

    if (d == NULL)
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    d->root = json_deep_copy(c->root);
    d->given = json_deep_copy(c->given);
    d->project_dir = nv__strdup(c->project_dir);
    if (d->root == NULL || d->given == NULL || d->project_dir == NULL) {
        nv_config_free(d);
        return nv__error(err, NV_ENOMEM, "config: out of memory");
    }
    *out = d;
    return NV_OK;
}

/* ---- Environment (CFG-6) ---- */

enum env_kind { ENV_INT, ENV_STR, ENV_TOKEN, ENV_REDIS_URL };

struct env_row {
    const char   *name;
    const char   *path;
    enum env_kind kind;
};

static const struct env_row env_rows[] = {
    { "NVENT_PORT",      "server.port",              ENV_INT },
    { "NVENT_HOST",      "server.host",              ENV_STR },
    { "NVENT_TOKEN",     "server.token",             ENV_TOKEN },
    { "NVENT_REDIS_URL", "connections.redis",        ENV_REDIS_URL },
    { "NVENT_DATA_DIR",  "connections.file.dataDir", ENV_STR },
    { "NVENT_LOG_LEVEL", "debug.level",              ENV_STR },
};

static const char *
env_get(char **env, const char *name)
{
    size_t n = strlen(name);

    for (; env != NULL && *env != NULL; env++) {
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return *env + n + 1;
    }
    return NULL;
}

/* The JSON value an environment text stands for. */
static json_t *
env_value(enum env_kind kind, const char *text)
{
    int64_t x;

    switch (kind) {
    case ENV_INT:
        x = parse_uint(text, strlen(text), INT64_MAX / 10);
        return x >= 0 ? json_integer(x) : json_string(text);
    case ENV_TOKEN:
        return text[0] ? json_string(text) : json_null();
    case ENV_REDIS_URL:
        return json_pack("{s:s}", "url", text);
    default:
        return json_string(text);
    }
}

int
nv__config_apply_env(nv_config *c, char **env, nv_error *err)
{
    nv_config *tmp = NULL;
    const char *text;
    json_t *v, *doc;
    size_t i;
    int rc;

    rc = nv__config_dup(c, &tmp, err);
    if (rc != NV_OK)
        return rc;
    for (i = 0; i < sizeof(env_rows) / sizeof(env_rows[0]); i++) {
        text = env_get(env, env_rows[i].name);
        if (text == NULL || (text[0] == '\0' && env_rows[i].kind != ENV_TOKEN))
            continue;
        v = env_value(env_rows[i].kind, text);
        doc = json_object();
        if (v == NULL || doc == NULL || doc_set(doc, env_rows[i].path, v) != 0) {
            json_decref(doc);
            rc = nv__error(err, NV_ENOMEM, "config: out of memory");
            goto done;
        }
        rc = load_doc(tmp, doc, err);
        json_decref(doc);
        if (rc != NV_OK) {
            with_origin(err, rc, env_rows[i].name);
            goto done;
        }
    }
    /* §15: functions.cc defaults to $CC; a value from the file wins. */
    text = env_get(env, "CC");
    if (text != NULL && text[0] != '\0'
        && doc_at(tmp->given, "functions.cc") == NULL) {
        doc = json_pack("{s:{s:s}}", "functions", "cc", text);
        rc = doc ? load_doc(tmp, doc, err)
                 : nv__error(err, NV_ENOMEM, "config: out of memory");
        json_decref(doc);
        if (rc != NV_OK) {
            with_origin(err, rc, "CC");
            goto done;
        }
    }
    /* Swap the documents in: 'c' keeps its identity. */
    v = c->root;
    c->root = tmp->root;
    tmp->root = v;
    v = c->given;
    c->given = tmp->given;
    tmp->given = v;
    rc = NV_OK;
done:
    nv_config_free(tmp);
    return rc;
}
