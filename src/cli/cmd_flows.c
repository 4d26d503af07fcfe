/*
 * Flow and run commands: flows, start, runs, events (--follow), cancel,
 * rebuild-index. Each is one API call (CLI-4); --json prints its body
 * exactly (CLI-5), otherwise aligned human-readable lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "http/http.h"

/* ---- flows ---- */

static void
print_levels(json_t *flow)
{
    json_t *levels = json_object_get(json_object_get(flow, "analyzed"),
                                     "levels");
    json_t *lvl, *step;
    size_t i, j;

    printf("  ");
    json_array_foreach(levels, i, lvl) {
        if (i > 0)
            printf(" \u2192 ");
        if (json_array_size(lvl) > 1)
            printf("(");
        json_array_foreach(lvl, j, step)
            printf("%s%s", j > 0 ? ", " : "", json_string_value(step));
        if (json_array_size(lvl) > 1)
            printf(")");
    }
    printf("\n");
}

static int
print_flows(struct cli *c, const char *body)
{
    json_t *doc = json_loads(body, 0, NULL), *f, *w;
    size_t i, j;

    if (c->json) {
        cli_print_body(body);
        json_decref(doc);
        return CLI_OK;
    }
    if (json_array_size(doc) == 0)
        printf("no flows\n");
    json_array_foreach(doc, i, f) {
        json_t *steps = json_object_get(json_object_get(f, "analyzed"),
                                        "steps");

        printf("%s  entry: %s  steps: %zu\n", cli_str(f, "id"),
               cli_str(json_object_get(f, "entry"), "step"),
               json_object_size(steps));
        print_levels(f);
        json_array_foreach(json_object_get(f, "warnings"), j, w)
            printf("  warning: %s\n", json_string_value(w));
    }
    json_decref(doc);
    return CLI_OK;
}

/* Any warning fails with --strict (CLI-9), like startup does. */
static int
strict_check(const char *body)
{
    json_t *doc = json_loads(body, 0, NULL), *f;
    size_t i;
    int warned = 0;

    json_array_foreach(doc, i, f)
        warned |= json_array_size(json_object_get(f, "warnings")) > 0;
    json_decref(doc);
    return warned ? cli_error("flow warnings are errors with --strict")
                  : CLI_OK;
}

int
cmd_flows(struct cli *c)
{
    char *body = NULL;
    int status = 0, rc;

    /* Without a server: local analysis of the functions folder. */
    rc = cli_api(c, "GET", "/api/_flows", NULL, 0, &status, &body);
    if (rc != CLI_OK) {
        nv_engine *e = NULL;

        fprintf(stderr, "nvent: no server; analyzing the functions folder\n");
        if ((rc = cli_engine_open(c, 1, &e)) != CLI_OK)
            return rc;
        c->direct = e;
        if ((rc = cli_api(c, "GET", "/api/_flows", NULL, 0, &status,
                          &body)) != CLI_OK)
            return rc;
    }
    if (status != 200) {
        rc = cli_api_error(status, body);
        free(body);
        return rc;
    }
    rc = print_flows(c, body);
    if (rc == CLI_OK && cli_has(c, "strict"))
        rc = strict_check(body);
    free(body);
    return rc;
}

/* ---- start ---- */

int
cmd_start(struct cli *c)
{
    char *flow = cli_enc(c->pos[0]), *input = NULL, *body = NULL, path[512];
    json_t *doc;
    int rc;

    if (!http_valid_name(c->pos[0])) {
        free(flow);
        return cli_usage(c, "invalid flow name '%s'", c->pos[0]);
    }
    if (c->npos > 1 && (input = cli_json_arg(c, c->pos[1], "input")) == NULL) {
        free(flow);
        return CLI_USAGE;
    }
    snprintf(path, sizeof(path), "/api/_flows/%s/start", flow);
    rc = cli_api_ok(c, "POST", path, input != NULL ? input : "{}", NEED_ALL,
                    &body);
    free(flow);
    free(input);
    if (rc != CLI_OK)
        return rc;
    if (c->json) {
        cli_print_body(body);
    } else {
        doc = json_loads(body, 0, NULL);
        printf("%s\n", cli_str(doc, "runId"));
        json_decref(doc);
    }
    free(body);
    return CLI_OK;
}

/* ---- runs ---- */

int
cmd_runs(struct cli *c)
{
    const char *st = cli_flag(c, "status");
    char *flow = cli_enc(c->pos[0]), *stq = st ? cli_enc(st) : NULL;
    char *body = NULL, path[700];
    long limit, offset;
    json_t *doc, *it;
    struct cli_table t;
    size_t i;
    int rc;

    if ((rc = cli_int_flag(c, "limit", 1, 100, 50, &limit)) != CLI_OK ||
        (rc = cli_int_flag(c, "offset", 0, 2000000000L, 0, &offset)) != CLI_OK)
        goto out;
    snprintf(path, sizeof(path), "/api/_flows/%s/runs?limit=%ld&offset=%ld%s%s",
             flow, limit, offset, stq ? "&status=" : "", stq ? stq : "");
    if ((rc = cli_api_ok(c, "GET", path, NULL, NEED_STORE, &body)) != CLI_OK)
        goto out;
    if (c->json) {
        cli_print_body(body);
        goto out;
    }
    doc = json_loads(body, 0, NULL);
    cli_table_init(&t, 5);
    cli_table_add(&t, "RUN", "STATUS", "STARTED", "COMPLETED", "STEPS");
    json_array_foreach(json_object_get(doc, "items"), i, it) {
        char steps[64];

        snprintf(steps, sizeof(steps), "%s/%s", cli_num(it, "completedSteps"),
                 cli_num(it, "stepCount"));
        cli_table_add(&t, cli_str(it, "id"), cli_str(it, "status"),
                      cli_str(it, "startedAt"),
                      json_object_get(it, "completedAt") ? cli_str(it, "completedAt")
                                                         : "-",
                      steps);
    }
    cli_table_print(&t);
    printf("%s of %s runs\n", cli_num(doc, "count"), cli_num(doc, "total"));
    json_decref(doc);
out:
    free(body);
    free(flow);
    free(stq);
    return rc;
}

/* ---- events ---- */

static void
print_event(json_t *ev)
{
    json_t *data = json_object_get(ev, "data");
    char *d = data != NULL ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY)
                           : NULL;
    char att[32] = "";

    if (json_object_get(ev, "attempt") != NULL)
        snprintf(att, sizeof(att), " #%s", cli_num(ev, "attempt"));
    printf("%s  %-14s %s%s%s%s\n", cli_str(ev, "ts"), cli_str(ev, "type"),
           cli_str(ev, "stepName"), att, d != NULL ? "  " : "",
           d != NULL ? d : "");
    free(d);
    fflush(stdout);
}

static int
is_terminal(const char *type)
{
    return type != NULL &&
           (strcmp(type, "flow.completed") == 0 ||
            strcmp(type, "flow.failed") == 0 ||
            strcmp(type, "flow.cancel") == 0 ||
            strcmp(type, "flow.stalled") == 0);
}

struct follow {
    struct cli *cli;
    char        last[128];      /* id of the last event printed */
};

static int
on_event(void *ud, const char *id, const char *data)
{
    struct follow *f = ud;
    struct cli *c = f->cli;
    json_t *ev = json_loads(data, 0, NULL);
    int stop;

    if (ev == NULL)
        return 0;
    snprintf(f->last, sizeof(f->last), "%s", id);
    if (c->json) {
        printf("%s\n", data);         /* one event record per line (CL-7) */
        fflush(stdout);
    } else {
        print_event(ev);
    }
    stop = is_terminal(json_string_value(json_object_get(ev, "type")));
    json_decref(ev);
    return stop;
}

int
cmd_events(struct cli *c)
{
    char *run = cli_enc(c->pos[0]), *body = NULL, path[512];
    json_t *doc, *ev;
    size_t i;
    int rc;

    if (cli_has(c, "follow")) {
        struct follow f = { .cli = c };
        int dropped = 0;

        snprintf(path, sizeof(path), "/api/_runs/%s/stream", run);
        free(run);
        /* A broken stream resumes after the last event printed (SSE-3),
         * for up to a minute without a server. */
        for (int tries = 0;; tries++) {
            rc = cli_sse(c, path, f.last[0] ? f.last : NULL, on_event, &f,
                         &dropped);
            if (!dropped)
                return rc;
            if (tries == 60)
                return cli_error("live stream from %s lost", c->url);
            if (tries == 0)
                fprintf(stderr, "nvent: live stream interrupted; "
                                "reconnecting\n");
            if (f.last[0] == '\0')
                snprintf(f.last, sizeof(f.last), "0-0");
            sleep(1);
        }
    }
    snprintf(path, sizeof(path), "/api/_runs/%s?limit=10000", run);
    free(run);
    if ((rc = cli_api_ok(c, "GET", path, NULL, NEED_STORE | NEED_STREAM,
                         &body)) != CLI_OK)
        return rc;
    if (c->json) {
        cli_print_body(body);
    } else {
        doc = json_loads(body, 0, NULL);
        json_array_foreach(json_object_get(doc, "events"), i, ev)
            print_event(ev);
        json_decref(doc);
    }
    free(body);
    return CLI_OK;
}

/* ---- cancel ---- */

int
cmd_cancel(struct cli *c)
{
    char *flow = cli_enc(c->pos[0]), *run = cli_enc(c->pos[1]);
    char *body = NULL, path[600];
    int rc;

    snprintf(path, sizeof(path), "/api/_flows/%s/runs/%s/cancel", flow, run);
    free(flow);
    free(run);
    if ((rc = cli_api_ok(c, "POST", path, NULL, NEED_ALL, &body)) != CLI_OK)
        return rc;
    if (c->json)
        cli_print_body(body);
    else
        printf("canceled %s\n", c->pos[1]);
    free(body);
    return CLI_OK;
}

/* ---- rebuild-index ---- */

int
cmd_rebuild_index(struct cli *c)
{
    const char *flow = cli_flag(c, "flow");
    char *req = NULL, *body = NULL;
    json_t *doc;
    int rc;

    if (flow != NULL && !http_valid_name(flow))
        return cli_usage(c, "invalid flow name '%s'", flow);
    doc = flow != NULL ? json_pack("{s:s}", "flow", flow) : json_object();
    req = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    rc = cli_api_ok(c, "POST", "/api/_flows/rebuild-index", req,
                    NEED_STORE | NEED_STREAM, &body);
    free(req);
    if (rc != CLI_OK)
        return rc;
    if (c->json) {
        cli_print_body(body);
    } else {
        doc = json_loads(body, 0, NULL);
        printf("rebuilt the index: %s flows, %s runs\n", cli_num(doc, "flows"),
               cli_num(doc, "runs"));
        json_decref(doc);
    }
    free(body);
    return CLI_OK;
}
