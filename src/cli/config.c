/*
 * Configuration for every command (CFG-1, CFG-2, CFG-6): the file from
 * --config, else $NVENT_CONFIG, else ./nvent.json when present; its folder
 * is the project directory; NVENT_* variables override the file; command
 * flags override both. Also the server log (CFG-7) and the server URL the
 * client commands use (CLI-4).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/config.h"    /* nv__config_apply_env: the library's CFG-6 */

extern char **environ;

/* ---- Logging ---- */

static const char *const level_names[] = {
    "debug", "info", "warn", "error", "silent",
};

int
cli_level_of(const char *name)
{
    for (int i = 0; i < 5; i++) {
        if (name != NULL && strcmp(name, level_names[i]) == 0)
            return i;
    }
    return NV_LOG_INFO;
}

void
cli_log(void *ud, int level, const char *msg)
{
    static const char *const up[] = { "DEBUG", "INFO", "WARN", "ERROR" };
    const int *min = ud;
    struct timespec ts;
    struct tm tm;
    char when[32];

    if (level < (min != NULL ? *min : NV_LOG_INFO) || level < 0 ||
        level > NV_LOG_ERROR)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One write per line, so lines of different threads never mix. */
    fprintf(stderr, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000L,
            up[level], msg);
}

/* ---- Values ---- */

static json_t *
cfg_value(const struct cli *c, const char *path)
{
    char *text = NULL;
    json_t *v;

    if (nv_config_get(c->cfg, path, &text, NULL) != NV_OK)
        return NULL;
    v = json_loads(text, JSON_DECODE_ANY, NULL);
    nv_free(text);
    return v;
}

int64_t
cli_cfg_int(const struct cli *c, const char *path, int64_t def)
{
    json_t *v = cfg_value(c, path);
    int64_t n = json_is_integer(v) ? json_integer_value(v) : def;

    json_decref(v);
    return n;
}

char *
cli_cfg_str(const struct cli *c, const char *path)
{
    json_t *v = cfg_value(c, path);
    char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;

    json_decref(v);
    return s;
}

int
cli_cfg_bool(const struct cli *c, const char *path, int def)
{
    json_t *v = cfg_value(c, path);
    int b = json_is_boolean(v) ? json_is_true(v) : def;

    json_decref(v);
    return b;
}

/* ---- Loading ---- */

static char *
read_file(const char *path, int *eno)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL) {
        *eno = errno;
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    *eno = buf == NULL ? EIO : 0;
    fclose(f);
    return buf;
}

static int
load_file(struct cli *c, const char *path)
{
    char dirbuf[PATH_MAX], abs[PATH_MAX];
    nv_error err = {0};
    char *text;
    int eno = 0;

    text = read_file(path, &eno);
    if (text == NULL)
        return cli_error("cannot read configuration '%s': %s", path,
                         strerror(eno));
    snprintf(dirbuf, sizeof(dirbuf), "%s", path);
    if (realpath(dirname(dirbuf), abs) == NULL)
        snprintf(abs, sizeof(abs), "%s", dirbuf);
    if (nv_config_set_project_dir(c->cfg, abs, &err) != NV_OK ||
        nv_config_load_json(c->cfg, text, path, &err) != NV_OK) {
        free(text);
        return cli_error("%s", err.msg);
    }
    free(text);
    c->config_file = strdup(path);
    free(c->project_dir);
    c->project_dir = strdup(abs);
    return CLI_OK;
}

/* CLI-4: --url, else $NVENT_URL, else the configured address. */
static void
resolve_url(struct cli *c)
{
    const char *u = cli_flag(c, "url");
    char *host;
    char buf[300];

    if (u == NULL)
        u = getenv("NVENT_URL");
    if (u != NULL && u[0] != '\0') {
        c->url = strdup(u);
        return;
    }
    host = cli_cfg_str(c, "server.host");
    if (host == NULL || strcmp(host, "0.0.0.0") == 0 || host[0] == '\0') {
        free(host);
        host = strdup("127.0.0.1");
    } else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0) {
        free(host);
        host = strdup("[::1]");
    } else if (strchr(host, ':') != NULL && host[0] != '[') {
        snprintf(buf, sizeof(buf), "[%s]", host);
        free(host);
        host = strdup(buf);
    }
    snprintf(buf, sizeof(buf), "http://%s:%lld", host,
             (long long)cli_cfg_int(c, "server.port", 3000));
    free(host);
    c->url = strdup(buf);
}

int
cli_config_load(struct cli *c)
{
    const char *path = cli_flag(c, "config");
    nv_error err = {0};
    struct stat st;
    char *level;
    int rc;

    char cwd[PATH_MAX];

    if (nv_config_new(&c->cfg, &err) != NV_OK)
        return cli_error("%s", err.msg);
    c->project_dir = strdup(getcwd(cwd, sizeof(cwd)) != NULL ? cwd : ".");
    if (path == NULL) {
        path = getenv("NVENT_CONFIG");
        if (path != NULL && path[0] == '\0')
            path = NULL;
    }
    if (path != NULL) {
        if ((rc = load_file(c, path)) != CLI_OK)
            return rc;
    } else if (stat("nvent.json", &st) == 0) {
        if ((rc = load_file(c, "nvent.json")) != CLI_OK)
            return rc;
    }
    if (nv__config_apply_env(c->cfg, environ, &err) != NV_OK)
        return cli_error("%s", err.msg);
    if (cli_flag(c, "port") != NULL &&
        nv_config_set(c->cfg, "server.port", cli_flag(c, "port"), "--port",
                      &err) != NV_OK)
        return cli_usage(c, "%s", err.msg);
    level = cli_cfg_str(c, "debug.level");
    c->log_level = cli_level_of(level);
    free(level);
    c->token = cli_cfg_str(c, "server.token");
    if (c->token != NULL && c->token[0] == '\0') {
        free(c->token);          /* an empty token is no token */
        c->token = NULL;
    }
    resolve_url(c);
    return CLI_OK;
}
