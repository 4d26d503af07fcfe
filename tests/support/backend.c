/*
 * Backend test helpers (see backend.h): fresh adapters of the backend
 * named by $NV_TEST_BACKEND, settings and nvent.json texts built with
 * jansson, and a fake clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <jansson.h>

#include "support/backend.h"

const char *
nv_test_backend(void)
{
    const char *b = getenv("NV_TEST_BACKEND");

    return b != NULL && *b != '\0' ? b : "memory";
}

void
nv_test_random_hex(char *out, size_t n)
{
    unsigned char b[32];
    static const char hex[] = "0123456789abcdef";

    if (n > 63)
        n = 63;
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        /* fall back to something unique enough within one run */
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)(rand() ^ (int)i);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = hex[(b[i / 2] >> ((i & 1) ? 0 : 4)) & 15];
    out[n] = '\0';
}

/* A fresh directory under $NV_TEST_TMP or /tmp; caller frees. */
static char *
fresh_dir(void)
{
    const char *tmp = getenv("NV_TEST_TMP");
    char *path;

    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    if (asprintf(&path, "%s/nvt-XXXXXX", tmp) < 0)
        return NULL;
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

/* {host, port, db, username?, password?} from $NV_TEST_REDIS_URL,
 * redis://[[user]:password@]host[:port][/db]. */
static json_t *
redis_connection(void)
{
    const char *url = getenv("NV_TEST_REDIS_URL");
    char host[256] = "127.0.0.1", user[128] = "", pass[128] = "";
    int port = 6379, db = 0;
    const char *p, *at, *slash;
    json_t *j;

    if (url == NULL || *url == '\0')
        url = "redis://127.0.0.1:6379/0";
    p = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
    slash = strchr(p, '/');
    at = strchr(p, '@');
    if (at != NULL && (slash == NULL || at < slash)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));

        if (colon != NULL) {
            snprintf(user, sizeof(user), "%.*s", (int)(colon - p), p);
            snprintf(pass, sizeof(pass), "%.*s", (int)(at - colon - 1),
                     colon + 1);
        } else {
            snprintf(pass, sizeof(pass), "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    {
        size_t hl = slash ? (size_t)(slash - p) : strlen(p);
        const char *colon = memchr(p, ':', hl);

        if (colon != NULL) {
            port = atoi(colon + 1);
            hl = (size_t)(colon - p);
        }
        if (hl > 0)
            snprintf(host, sizeof(host), "%.*s", (int)hl, p);
    }
    if (slash != NULL && slash[1] != '\0')
        db = atoi(slash + 1);
    j = json_pack("{s:s, s:i, s:i}", "host", host, "port", port, "db", db);
    if (*user != '\0')
        json_object_set_new(j, "username", json_string(user));
    if (*pass != '\0')
        json_object_set_new(j, "password", json_string(pass));
    return j;
}

static char *
unique_prefix(void)
{
    char hex[17], *p;

    nv_test_random_hex(hex, 16);
    if (asprintf(&p, "t%s", hex) < 0)
        return NULL;
    return p;
}

char *
nv_test_settings(const char *kind)
{
    const char *b = nv_test_backend();
    char *prefix = unique_prefix(), *out = NULL;
    json_t *j = json_object();

    if (prefix == NULL || j == NULL)
        goto done;
    json_object_set_new(j, "prefix", json_string(prefix));
    if (strcmp(b, "file") == 0) {
        char *dir = fresh_dir(), *sub = NULL;

        if (dir == NULL || asprintf(&sub, "%s/%s", dir, kind) < 0) {
            free(dir);
            goto done;
        }
        json_object_set_new(j, "file", json_pack("{s:s, s:s}", "dataDir", sub,
                                                 "synchronous", "normal"));
        free(dir);
        free(sub);
    } else if (strcmp(b, "redis") == 0) {
        json_object_set_new(j, "redis", redis_connection());
    }
    out = json_dumps(j, JSON_COMPACT);
done:
    json_decref(j);
    free(prefix);
    return out;
}

#define OPEN_FRESH(kind, fn)                                                \
    do {                                                                    \
        char *settings = nv_test_settings(kind);                            \
        int rc;                                                             \
                                                                            \
        if (settings == NULL) {                                             \
            if (err != NULL) {                                              \
                err->code = NV_EIO;                                         \
                snprintf(err->msg, sizeof(err->msg),                        \
                         "cannot make test settings");                      \
            }                                                               \
            return NV_EIO;                                                  \
        }                                                                   \
        rc = fn(nv_test_backend(), settings, out, err);                     \
        free(settings);                                                     \
        return rc;                                                          \
    } while (0)

int
nv_test_queue_open(nv_queue *out, nv_error *err)
{
    OPEN_FRESH("queue", nv_queue_open);
}

int
nv_test_store_open(nv_store *out, nv_error *err)
{
    OPEN_FRESH("store", nv_store_open);
}

int
nv_test_stream_open(nv_stream *out, nv_error *err)
{
    OPEN_FRESH("stream", nv_stream_open);
}

char *
nv_test_config_json(void)
{
    const char *b = nv_test_backend();
    char *prefix = unique_prefix(), *out = NULL;
    json_t *j = json_object(), *conn = json_object();

    if (prefix == NULL || j == NULL || conn == NULL)
        goto done;
    json_object_set_new(j, "prefix", json_string(prefix));
    json_object_set_new(j, "queue", json_pack("{s:s}", "adapter", b));
    json_object_set_new(j, "store", json_pack("{s:s}", "adapter", b));
    json_object_set_new(j, "stream", json_pack("{s:s}", "adapter", b));
    if (strcmp(b, "file") == 0) {
        char *dir = fresh_dir();

        if (dir == NULL)
            goto done;
        json_object_set_new(conn, "file", json_pack("{s:s}", "dataDir", dir));
        free(dir);
    } else if (strcmp(b, "redis") == 0) {
        json_object_set_new(conn, "redis", redis_connection());
    }
    if (json_object_size(conn) > 0)
        json_object_set(j, "connections", conn);
    out = json_dumps(j, JSON_COMPACT);
done:
    json_decref(conn);
    json_decref(j);
    free(prefix);
    return out;
}

void
nv_test_watchdog(unsigned seconds)
{
    alarm(seconds);
}

void
nv_test_clock_init(nv_test_clock *c, int64_t now)
{
    atomic_init(&c->now, now);
}

int64_t
nv_test_clock_now(void *ud)
{
    return atomic_load(&((nv_test_clock *)ud)->now);
}

void
nv_test_clock_set(nv_test_clock *c, int64_t now)
{
    atomic_store(&c->now, now);
}

void
nv_test_clock_advance(nv_test_clock *c, int64_t ms)
{
    atomic_fetch_add(&c->now, ms);
}
