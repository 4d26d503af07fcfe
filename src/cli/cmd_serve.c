/*
 * `nvent serve` and `nvent dev` (CLI-8, CLI-12, SEC-3, W-7): discover the
 * functions, validate, start the engine and the HTTP server, then wait for
 * SIGINT/SIGTERM and stop cleanly; a second signal exits at once. `dev`
 * also watches the functions folder and swaps in a new engine when the
 * functions change and validate.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "http/http.h"
#if defined(__has_include)
#if __has_include("host/host.h")
#include "host/host.h"
#define CLI_HAVE_HOST 1
#endif
#endif

#ifndef CLI_HAVE_HOST
typedef struct nv_host nv_host;
#endif

struct server {
    struct cli  *cli;
    nv_engine   *engine;
    nv_host     *host;
    http_server *http;
    unsigned     flags;          /* NV_START_STRICT */
    int64_t      grace_ms;
    sigset_t     sigs;
    nv_live     *echo;           /* dev: handler log events to the terminal */
};

/* SEC-3: 127.0.0.0/8, ::1 and localhost are loopback. */
static int
is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

static void
log_lines(struct cli *c, int level, const char *text)
{
    while (text != NULL && *text != '\0') {
        size_t n = strcspn(text, "\n");
        char *line = strndup(text, n);

        if (line != NULL && n > 0)
            cli_log(&c->log_level, level, line);
        free(line);
        text += n + (text[n] == '\n');
    }
}

/* The built UI: $NVENT_UI_DIR, else ui/dist next to the binary's tree. */
static char *
find_ui_dir(void)
{
    const char *env = getenv("NVENT_UI_DIR");
    char exe[PATH_MAX], path[PATH_MAX + 32];
    struct stat st;
    ssize_t n;

    if (env != NULL && env[0] != '\0')
        return strdup(env);
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    static const char *const rel[] = { "/../ui/dist", "/ui/dist",
                                       "/../share/nvent/ui" };
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", exe, rel[i]);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return strdup(path);
    }
    return NULL;
}

/*
 * A new engine with the project's functions, validated and started; on the
 * adapters of 'with' when not NULL (a reload of `nvent dev`). Problems are
 * printed; returns CLI_OK or CLI_FAIL.
 */
static int
engine_up(struct server *s, nv_engine *with, nv_engine **out)
{
    struct cli *c = s->cli;
    nv_error err = {0};
    nv_engine *e = NULL;
    int rc, discovered = NV_OK;

    rc = with != NULL ? nv_engine_new_sharing(c->cfg, with, &e, &err)
                      : nv_engine_new(c->cfg, &e, &err);
    if (rc != NV_OK)
        return cli_error("%s", err.msg);
    nv_engine_set_logger(e, cli_log, &c->log_level, c->log_level);
#ifdef CLI_HAVE_HOST
    {
        char *report = NULL;

        discovered = nv_host_discover(s->host, e, 0, &report, &err);
        if (report != NULL && report[0] != '\0')
            fputs(report, stderr);
        free(report);
        if (discovered != NV_OK && discovered != NV_EINVAL) {
            nv_engine_free(e);
            nv_host_release(s->host, e);
            return cli_error("%s", err.msg);
        }
    }
#endif
    rc = nv_engine_start(e, s->flags | (discovered != NV_OK
                                            ? NV_START_NO_WORKERS : 0), &err);
    if (rc != NV_OK || discovered != NV_OK) {
        const char *rep = nv_engine_report(e);

        if (rep != NULL && rep[0] != '\0')
            fputs(rep, stderr);
        else if (rc != NV_OK)
            cli_error("%s", err.msg);
        nv_engine_free(e);
#ifdef CLI_HAVE_HOST
        nv_host_release(s->host, e);
#endif
        return CLI_FAIL;
    }
    log_lines(c, NV_LOG_WARN, nv_engine_report(e));
    *out = e;
    return CLI_OK;
}

static void *
second_signal(void *arg)
{
    struct server *s = arg;
    int sig = 0;

    sigwait(&s->sigs, &sig);
    cli_log(&s->cli->log_level, NV_LOG_WARN, "second signal: exiting now");
#ifdef CLI_HAVE_HOST
    if (s->host != NULL)
        nv_host_kill(s->host);
#endif
    _exit(1);
    return NULL;
}

static void
shutdown_all(struct server *s, int sig)
{
    pthread_t t;

    if (sig != 0)
        cli_log(&s->cli->log_level, NV_LOG_INFO,
                sig == SIGINT ? "SIGINT: stopping" : "SIGTERM: stopping");
    pthread_create(&t, NULL, second_signal, s);
    pthread_detach(t);
    http_server_stop(s->http);
    if (s->echo != NULL)
        nv_live_unsubscribe(s->engine, s->echo);
    nv_engine_stop(s->engine, s->grace_ms);
#ifdef CLI_HAVE_HOST
    if (s->host != NULL)
        nv_host_shutdown(s->host);
#endif
    nv_engine_free(s->engine);
#ifdef CLI_HAVE_HOST
    if (s->host != NULL) {
        nv_host_release(s->host, s->engine);
        nv_host_free(s->host);
    }
#endif
    cli_log(&s->cli->log_level, NV_LOG_INFO, "stopped");
}

#ifdef CLI_HAVE_HOST
/* CLI-12: `dev` echoes handler log entries (flow `log` events). */
static void
echo_log(void *ud, const char *json)
{
    struct server *s = ud;
    json_t *m = json_loads(json, 0, NULL);
    json_t *ev = json_object_get(m, "event"), *d = json_object_get(ev, "data");
    const char *lvl = json_string_value(json_object_get(d, "level"));
    char line[1200];

    if (ev != NULL && strcmp(cli_str(ev, "type"), "log") == 0) {
        snprintf(line, sizeof(line), "%s/%s: %s", cli_str(ev, "flowName"),
                 cli_str(ev, "stepName"), cli_str(d, "message"));
        cli_log(&s->cli->log_level, cli_level_of(lvl), line);
    }
    json_decref(m);
}

static void
echo_follow(struct server *s, nv_engine *old)
{
    if (s->echo != NULL && old != NULL)
        nv_live_unsubscribe(old, s->echo);
    s->echo = NULL;
    if (s->engine != NULL)
        nv_live_subscribe(s->engine, echo_log, s, &s->echo, NULL);
}

/*
 * CLI-12: a valid new registry replaces the old one; else the old stays.
 * The new engine works on the old one's adapters (nv_engine_new_sharing),
 * so with every adapter, memory included, queued jobs and runs in progress
 * carry over; the old engine then stops gracefully (W-7): its running jobs
 * finish on the old code, and what it still held goes back to waiting for
 * the new one.
 */
static void
dev_reload(struct server *s)
{
    nv_engine *e2 = NULL, *old = s->engine;
    nv_error err = {0};

    cli_log(&s->cli->log_level, NV_LOG_INFO, "functions changed: reloading");
    if (engine_up(s, old, &e2) != CLI_OK) {
        cli_log(&s->cli->log_level, NV_LOG_ERROR,
                "reload failed; the previous functions stay in force");
        return;
    }
    if (http_server_swap_engine(s->http, e2, &err) != NV_OK) {
        cli_log(&s->cli->log_level, NV_LOG_ERROR, err.msg);
        nv_engine_free(e2);
        nv_host_release(s->host, e2);
        return;
    }
    s->engine = e2;
    echo_follow(s, old);
    nv_engine_stop(old, s->grace_ms);
    nv_engine_free(old);
    nv_host_release(s->host, old);
    cli_log(&s->cli->log_level, NV_LOG_INFO, "reloaded");
}

static int
dev_loop(struct server *s)
{
    nv_host_watch *w = NULL;
    nv_error err = {0};
    struct timespec zero = { 0, 0 };

    if (nv_host_watch_new(s->host, s->cli->config_file, &w, &err) != NV_OK) {
        cli_log(&s->cli->log_level, NV_LOG_ERROR, err.msg);
        return -1;
    }
    for (;;) {
        int sig = sigtimedwait(&s->sigs, NULL, &zero);
        int what;

        if (sig > 0) {
            nv_host_watch_free(w);
            return sig;
        }
        what = nv_host_watch_wait(w, 200, &err);
        if (what < 0) {
            cli_log(&s->cli->log_level, NV_LOG_ERROR, err.msg);
            continue;
        }
        if (what & NV_HOST_CHANGED_CONFIG)
            cli_log(&s->cli->log_level, NV_LOG_WARN,
                    "configuration changed; restart nvent dev");
        if (what & NV_HOST_CHANGED_FUNCTIONS)
            dev_reload(s);
    }
}
#endif

static int
serve_main(struct cli *c, int dev)
{
    struct server s = { .cli = c };
    struct http_options o = {0};
    nv_error err = {0};
    char *host = cli_cfg_str(c, "server.host"), *ui = NULL;
    int port = 0, rc, sig = 0;

    sigemptyset(&s.sigs);
    sigaddset(&s.sigs, SIGINT);
    sigaddset(&s.sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &s.sigs, NULL);   /* every thread inherits */
    s.flags = cli_has(c, "strict") ? NV_START_STRICT : 0;
    s.grace_ms = cli_cfg_int(c, "shutdownGraceMs", 10000);
    if (host == NULL)
        host = strdup("127.0.0.1");
    if (!is_loopback(host) && c->token == NULL) {
        rc = cli_error("refusing to listen on %s without server.token (or "
                       "NVENT_TOKEN)", host);
        free(host);
        return rc;
    }
#ifdef CLI_HAVE_HOST
    if (nv_host_new(c->cfg, c->project_dir, &s.host, &err) != NV_OK) {
        free(host);
        return cli_error("%s", err.msg);
    }
    nv_host_set_logger(s.host, cli_log, &c->log_level);
#else
    if (dev)
        cli_log(&c->log_level, NV_LOG_WARN,
                "function discovery is not built in; serving without "
                "functions and without watching");
#endif
    if ((rc = engine_up(&s, NULL, &s.engine)) != CLI_OK) {
#ifdef CLI_HAVE_HOST
        nv_host_free(s.host);
#endif
        free(host);
        return rc;
    }
    if (cli_cfg_bool(c, "server.ui", 1))
        ui = find_ui_dir();
    o.host = host;
    o.port = (int)cli_cfg_int(c, "server.port", 3000);
    o.token = c->token;
    o.max_body_bytes = cli_cfg_int(c, "server.maxBodyBytes", 1048576);
    o.request_timeout_ms = cli_cfg_int(c, "server.requestTimeoutMs", 30000);
    o.sse_heartbeat_ms = cli_cfg_int(c, "server.sseHeartbeatMs", 15000);
    o.max_sse_clients = (int)cli_cfg_int(c, "server.maxSseClients", 256);
    o.ui_dir = cli_cfg_bool(c, "server.ui", 1) ? ui : "";
    o.log = cli_log;
    o.log_ud = &c->log_level;
    o.log_level = c->log_level;
    if (http_server_start(s.engine, &o, &s.http, &port, &err) != NV_OK) {
        cli_error("%s", err.msg);
        s.http = NULL;
        shutdown_all(&s, 0);
        free(host);
        free(ui);
        return CLI_FAIL;
    }
    {
        char line[400];

        snprintf(line, sizeof(line), "nvent listening on http://%s%s%s:%d",
                 strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", port);
        cli_log(&c->log_level, NV_LOG_INFO, line);
    }
#ifdef CLI_HAVE_HOST
    if (dev) {
        echo_follow(&s, NULL);
        sig = dev_loop(&s);
    }
#endif
    while (sig <= 0 && sigwait(&s.sigs, &sig) != 0)
        ;
    shutdown_all(&s, sig);
    free(host);
    free(ui);
    return CLI_OK;
}

int
cmd_serve(struct cli *c)
{
    return serve_main(c, 0);
}

int
cmd_dev(struct cli *c)
{
    return serve_main(c, 1);
}
