/*
 * Queue and schedule commands: enqueue, queues, schedule add/list/rm, and
 * the local ones: version, build. One API call each (CLI-4, CLI-5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "http/http.h"
#if defined(__has_include)
#if __has_include("host/host.h")
#include "host/host.h"
#define CLI_HAVE_HOST 1
#endif
#endif

/* ---- enqueue ---- */

int
cmd_enqueue(struct cli *c)
{
    const char *name = cli_flag(c, "name"), *opts = cli_flag(c, "opts");
    char *queue = cli_enc(c->pos[0]), *data, *req, *body = NULL, path[512];
    json_t *doc, *o = NULL;
    int rc;

    if (!http_valid_name(c->pos[0])) {
        free(queue);
        return cli_usage(c, "invalid queue name '%s'", c->pos[0]);
    }
    if ((data = cli_json_arg(c, c->pos[1], "data")) == NULL) {
        free(queue);
        return CLI_USAGE;
    }
    if (opts != NULL && ((o = json_loads(opts, 0, NULL)) == NULL ||
                         !json_is_object(o))) {
        json_decref(o);
        free(queue);
        free(data);
        return cli_usage(c, "--opts: expected a JSON object");
    }
    doc = json_pack("{s:o}", "data", json_loads(data, JSON_DECODE_ANY, NULL));
    if (name != NULL)
        json_object_set_new(doc, "name", json_string(name));
    if (o != NULL)
        json_object_set_new(doc, "opts", o);
    req = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    snprintf(path, sizeof(path), "/api/_queues/%s/enqueue", queue);
    rc = cli_api_ok(c, "POST", path, req, NEED_QUEUE, &body);
    free(queue);
    free(data);
    free(req);
    if (rc != CLI_OK)
        return rc;
    if (c->json) {
        cli_print_body(body);
    } else {
        doc = json_loads(body, 0, NULL);
        printf("%s\n", cli_str(doc, "id"));
        json_decref(doc);
    }
    free(body);
    return CLI_OK;
}

/* ---- queues ---- */

int
cmd_queues(struct cli *c)
{
    char *body = NULL;
    json_t *doc, *q;
    struct cli_table t;
    size_t i;
    int rc;

    if ((rc = cli_api_ok(c, "GET", "/api/_queues", NULL, NEED_QUEUE,
                         &body)) != CLI_OK)
        return rc;
    if (c->json) {
        cli_print_body(body);
        free(body);
        return CLI_OK;
    }
    doc = json_loads(body, 0, NULL);
    cli_table_init(&t, 8);
    cli_table_add(&t, "QUEUE", "WAITING", "ACTIVE", "DELAYED", "PAUSED",
                  "COMPLETED", "FAILED", "STATE");
    json_array_foreach(doc, i, q) {
        json_t *n = json_object_get(q, "counts");

        cli_table_add(&t, cli_str(q, "name"), cli_num(n, "waiting"),
                      cli_num(n, "active"), cli_num(n, "delayed"),
                      cli_num(n, "paused"), cli_num(n, "completed"),
                      cli_num(n, "failed"),
                      json_is_true(json_object_get(q, "isPaused")) ? "paused"
                                                                   : "running");
    }
    cli_table_print(&t);
    json_decref(doc);
    free(body);
    return CLI_OK;
}

/* ---- schedules ---- */

int
cmd_schedule_add(struct cli *c)
{
    const char *cron = cli_flag(c, "cron"), *delay = cli_flag(c, "delay");
    const char *tz = cli_flag(c, "tz"), *input = cli_flag(c, "input");
    const char *misfire = cli_flag(c, "misfire");
    char *flow = cli_enc(c->pos[0]), *req, *body = NULL, path[512];
    json_t *doc = json_object(), *in;
    long limit, ms;
    int rc = CLI_USAGE;

    if (cron != NULL && delay != NULL) {
        cli_usage(c, "give either --cron or --delay, not both");
        goto out;
    }
    if (cron == NULL && delay == NULL) {
        cli_usage(c, "give --cron or --delay");
        goto out;
    }
    if (delay != NULL && (tz != NULL || cli_flag(c, "limit") != NULL)) {
        cli_usage(c, "--tz and --limit go with --cron only");
        goto out;
    }
    if (misfire != NULL && strcmp(misfire, "once") != 0 &&
        strcmp(misfire, "skip") != 0) {
        cli_usage(c, "--misfire: expected once or skip");
        goto out;
    }
    if (cron != NULL) {
        json_object_set_new(doc, "cron", json_string(cron));
        if (tz != NULL)
            json_object_set_new(doc, "tz", json_string(tz));
        if (cli_flag(c, "limit") != NULL) {
            if (cli_int_flag(c, "limit", 1, 2000000000L, 1, &limit) != CLI_OK)
                goto out;
            json_object_set_new(doc, "limit", json_integer(limit));
        }
    } else {
        if (cli_int_flag(c, "delay", 0, 0x7fffffffffffffffL, 0, &ms) != CLI_OK)
            goto out;
        json_object_set_new(doc, "delay", json_integer(ms));
    }
    if (input != NULL) {
        char *text = cli_json_arg(c, input, "--input");

        if (text == NULL)
            goto out;
        in = json_loads(text, JSON_DECODE_ANY, NULL);
        free(text);
        json_object_set_new(doc, "input", in);
    }
    if (misfire != NULL)
        json_object_set_new(doc, "misfire", json_string(misfire));
    req = json_dumps(doc, JSON_COMPACT);
    snprintf(path, sizeof(path), "/api/_flows/%s/schedule", flow);
    rc = cli_api_ok(c, "POST", path, req, NEED_STORE, &body);
    free(req);
    if (rc == CLI_OK) {
        if (c->json) {
            cli_print_body(body);
        } else {
            json_t *b = json_loads(body, 0, NULL);

            printf("%s\n", cli_str(b, "id"));
            json_decref(b);
        }
    }
out:
    json_decref(doc);
    free(flow);
    free(body);
    return rc;
}

int
cmd_schedule_list(struct cli *c)
{
    char *flow = c->npos > 0 ? cli_enc(c->pos[0]) : NULL, *body = NULL;
    char path[512];
    json_t *doc, *s;
    struct cli_table t;
    size_t i;
    int rc;

    if (flow != NULL)
        snprintf(path, sizeof(path), "/api/_flows/%s/schedules", flow);
    else
        snprintf(path, sizeof(path), "/api/_schedules");
    free(flow);
    if ((rc = cli_api_ok(c, "GET", path, NULL, NEED_STORE, &body)) != CLI_OK)
        return rc;
    if (c->json) {
        cli_print_body(body);
        free(body);
        return CLI_OK;
    }
    doc = json_loads(body, 0, NULL);
    cli_table_init(&t, 5);
    cli_table_add(&t, "ID", "FLOW", "SCHEDULE", "NEXT RUN", "RUNS");
    json_array_foreach(doc, i, s) {
        json_t *sc = json_object_get(s, "schedule");
        char what[300];

        if (json_object_get(sc, "cron") != NULL)
            snprintf(what, sizeof(what), "%s (%s)", cli_str(sc, "cron"),
                     json_object_get(sc, "tz") ? cli_str(sc, "tz") : "UTC");
        else
            snprintf(what, sizeof(what), "once at %s", cli_str(sc, "runAt"));
        cli_table_add(&t, cli_str(s, "id"), cli_str(s, "flowName"), what,
                      json_is_string(json_object_get(s, "nextRun"))
                          ? cli_str(s, "nextRun") : "-",
                      cli_num(s, "runCount"));
    }
    cli_table_print(&t);
    json_decref(doc);
    free(body);
    return CLI_OK;
}

int
cmd_schedule_rm(struct cli *c)
{
    char *flow = cli_enc(c->pos[0]), *id = cli_enc(c->pos[1]), *body = NULL;
    char path[1200];
    int rc;

    snprintf(path, sizeof(path), "/api/_flows/%s/schedules/%s", flow, id);
    free(flow);
    free(id);
    if ((rc = cli_api_ok(c, "DELETE", path, NULL, NEED_STORE, &body)) != CLI_OK)
        return rc;
    if (c->json)
        cli_print_body(body);
    else
        printf("deleted %s\n", c->pos[1]);
    free(body);
    return CLI_OK;
}

/* ---- local commands ---- */

int
cmd_version(struct cli *c)
{
    (void)c;
    printf("nvent %s\n", NV_VERSION);
    return CLI_OK;
}

int
cmd_build(struct cli *c)
{
#ifdef CLI_HAVE_HOST
    nv_error err = {0};
    char *report = NULL;
    int rc = nv_host_build(c->cfg, c->project_dir, &report, &err);

    if (report != NULL)
        fputs(report, stdout);
    free(report);
    if (rc == NV_EINVAL)
        return CLI_FAIL;
    if (rc != NV_OK)
        return cli_error("%s", err.msg);
    return CLI_OK;
#else
    (void)c;
    return cli_error("build: C function support is not part of this binary");
#endif
}
