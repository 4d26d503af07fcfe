/*
 * Small helpers of the host: a growable text buffer, string vectors, the
 * settings read once from the configuration (§15 functions.*), paths.
 */
#include "host/internal.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Text buffer ---- */

int
hbuf_add(hbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->s, cap);
        if (p == NULL)
            return -1;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

int
hbuf_puts(hbuf *b, const char *s)
{
    return hbuf_add(b, s, strlen(s));
}

int
hbuf_printf(hbuf *b, const char *fmt, ...)
{
    va_list ap;
    char small[512], *big;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return hbuf_add(b, small, (size_t)n);
    big = malloc((size_t)n + 1);
    if (big == NULL)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = hbuf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

void
hbuf_consume(hbuf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->s, b->s + n, b->len - n);
        b->len -= n;
    }
    if (b->s != NULL)
        b->s[b->len] = '\0';
}

void
hbuf_release(hbuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

char *
hbuf_take(hbuf *b)
{
    char *s = b->s;

    if (s == NULL)
        s = strdup("");
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

/* ---- String vectors ---- */

void
strv_free(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p != NULL; p++)
        free(*p);
    free(v);
}

int
strv_push(char ***v, size_t *n, const char *s)
{
    char **p = realloc(*v, (*n + 2) * sizeof(char *));

    if (p == NULL)
        return -1;
    *v = p;
    p[*n] = strdup(s);
    if (p[*n] == NULL)
        return -1;
    (*n)++;
    p[*n] = NULL;
    return 0;
}

char **
strv_split(const char *s)
{
    char **v = calloc(1, sizeof(char *));
    size_t n = 0;

    if (v == NULL)
        return NULL;
    while (*s != '\0') {
        size_t len;
        char word[4096];

        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        len = strcspn(s, " \t\r\n");
        if (len == 0)
            break;
        if (len >= sizeof(word))
            len = sizeof(word) - 1;
        memcpy(word, s, len);
        word[len] = '\0';
        if (strv_push(&v, &n, word) != 0) {
            strv_free(v);
            return NULL;
        }
        s += strcspn(s, " \t\r\n");
    }
    return v;
}

int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Settings ---- */

/* The value at 'path' as JSON, NULL when the configuration has none (or
 * cannot say: the defaults of §15 then apply). */
static json_t *
cfg_value(const nv_config *cfg, const char *path)
{
    char *text = NULL;
    json_t *v;

    if (cfg == NULL || nv_config_get(cfg, path, &text, NULL) != NV_OK)
        return NULL;
    v = json_loads(text, JSON_DECODE_ANY, NULL);
    nv_free(text);
    return v;
}

static int64_t
cfg_int(const nv_config *cfg, const char *path, int64_t def)
{
    json_t *v = cfg_value(cfg, path);
    int64_t r = def;

    if (json_is_integer(v))
        r = json_integer_value(v);
    json_decref(v);
    return r;
}

static char *
cfg_str(const nv_config *cfg, const char *path, const char *def)
{
    json_t *v = cfg_value(cfg, path);
    char *r = NULL;

    if (json_is_string(v))
        r = strdup(json_string_value(v));
    else if (def != NULL)
        r = strdup(def);
    json_decref(v);
    return r;
}

static char **
cfg_strv(const nv_config *cfg, const char *path)
{
    json_t *v = cfg_value(cfg, path), *it;
    char **r = calloc(1, sizeof(char *));
    size_t n = 0, i;

    if (r != NULL && json_is_array(v)) {
        json_array_foreach(v, i, it) {
            if (json_is_string(it) && strv_push(&r, &n, json_string_value(it)) != 0)
                break;
        }
    }
    json_decref(v);
    return r;
}

/* 'p' made absolute against 'base' (malloc'ed). */
static char *
absolute(const char *base, const char *p)
{
    char *r;

    if (p == NULL)
        return NULL;
    if (p[0] == '/')
        return strdup(p);
    if (asprintf(&r, "%s/%s", base, p) < 0)
        return NULL;
    return r;
}

int
host_settings_load(host_settings *s, const nv_config *cfg,
                   const char *project_dir, nv_error *err)
{
    char cwd[PATH_MAX], *dir, *cc;
    const char *env_cc = getenv("CC");

    memset(s, 0, sizeof(*s));
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        strcpy(cwd, "/");
    s->project_dir = absolute(cwd, project_dir != NULL ? project_dir : ".");
    if (s->project_dir != NULL) {
        char real[PATH_MAX];

        if (realpath(s->project_dir, real) != NULL) {
            free(s->project_dir);
            s->project_dir = strdup(real);
        }
    }
    dir = cfg_str(cfg, "functions.dir", "functions");
    s->functions_dir = absolute(s->project_dir, dir);
    free(dir);
    dir = cfg_str(cfg, "functions.buildDir", ".nvent/build");
    s->build_dir = absolute(s->project_dir, dir);
    free(dir);
    cc = cfg_str(cfg, "functions.cc", env_cc != NULL && *env_cc ? env_cc : "cc");
    s->cc = cc != NULL ? strv_split(cc) : NULL;
    free(cc);
    s->cflags = cfg_strv(cfg, "functions.cflags");
    s->ldflags = cfg_strv(cfg, "functions.ldflags");
    s->describe_timeout_ms = cfg_int(cfg, "functions.describeTimeoutMs", 5000);
    s->kill_grace_ms = cfg_int(cfg, "functions.killGraceMs", 5000);
    s->max_message_bytes = cfg_int(cfg, "functions.maxMessageBytes", 16777216);
    s->shutdown_grace_ms = cfg_int(cfg, "shutdownGraceMs", 10000);
    s->default_concurrency = cfg_int(cfg, "queue.worker.concurrency", 2);
    if (s->project_dir == NULL || s->functions_dir == NULL ||
        s->build_dir == NULL || s->cc == NULL || s->cflags == NULL ||
        s->ldflags == NULL) {
        host_settings_release(s);
        if (err != NULL) {
            err->code = NV_ENOMEM;
            snprintf(err->msg, sizeof(err->msg), "host: out of memory");
        }
        return NV_ENOMEM;
    }
    if (s->cc[0] == NULL) {
        strv_free(s->cc);
        s->cc = strv_split("cc");
    }
    return NV_OK;
}

void
host_settings_release(host_settings *s)
{
    free(s->project_dir);
    free(s->functions_dir);
    free(s->build_dir);
    strv_free(s->cc);
    strv_free(s->cflags);
    strv_free(s->ldflags);
    memset(s, 0, sizeof(*s));
}

char *
host_rel(const host_settings *s, const char *abs)
{
    size_t n = strlen(s->project_dir);

    if (strncmp(abs, s->project_dir, n) == 0 && abs[n] == '/')
        return strdup(abs + n + 1);
    if (strcmp(s->project_dir, "/") == 0 && abs[0] == '/')
        return strdup(abs + 1);
    return strdup(abs);
}
