/*
 * flow_demo: the smallest complete nvent program. It defines a flow
 * "order" — an entry step that emits "order.accepted", two steps that run
 * in parallel on that event, and a step that joins both — runs it on the
 * in-memory adapters and prints the run's event stream.
 *
 *   build/examples/flow_demo            # memory adapters
 *   build/examples/flow_demo nvent.json # any configuration file
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nvent.h>

/* ---- Handlers ---- */

static int
accept_order(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ud;
    nv_ctx_log(ctx, "info", "accepting order", input, NULL);
    nv_ctx_state_set(ctx, "customer", "{\"id\":3,\"tier\":\"gold\"}", 0,
                     NULL);
    nv_ctx_emit(ctx, "order.accepted", input, NULL);
    return nv_ctx_result(ctx, "{\"accepted\":true}", NULL);
}

static int
charge(nv_ctx *ctx, const char *input, void *ud)
{
    char *customer = NULL;

    (void)ud;
    (void)input;
    nv_ctx_state_get(ctx, "customer", &customer, NULL);
    nv_ctx_log(ctx, "info", "charging card", customer, NULL);
    nv_free(customer);
    return nv_ctx_result(ctx, "{\"charged\":42.5}", NULL);
}

static int
reserve_stock(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ud;
    (void)input;
    nv_ctx_progress(ctx, 50, NULL, NULL);
    return nv_ctx_result(ctx, "{\"reserved\":[\"sku-1\",\"sku-2\"]}", NULL);
}

static int
ship(nv_ctx *ctx, const char *input, void *ud)
{
    (void)ud;
    /* input: {"step:charge": {...}, "step:reserve": {...}} (F-8) */
    nv_ctx_log(ctx, "info", "shipping", input, NULL);
    return nv_ctx_result(ctx, "{\"tracking\":\"NV123\"}", NULL);
}

/* ---- Function configs: the §2 shape as static structures ---- */

static const char *const order_flow[] = { "order", NULL };
static const char *const accepted[] = { "order.accepted", NULL };
static const char *const joins[] = { "step:charge", "step:reserve", NULL };

static const nv_function_config accept_cfg = {
    .abi = NV_ABI_VERSION,
    .flow = { .name = order_flow, .role = "entry", .emits = accepted },
};
static const nv_function_config charge_cfg = {
    .abi = NV_ABI_VERSION,
    .queue = { .default_job_options =
                   "{\"attempts\":3,\"backoff\":{\"type\":\"exponential\","
                   "\"delay\":100}}" },
    .flow = { .name = order_flow, .subscribes = accepted },
};
static const nv_function_config reserve_cfg = {
    .abi = NV_ABI_VERSION,
    .flow = { .name = order_flow, .subscribes = accepted },
};
static const nv_function_config ship_cfg = {
    .abi = NV_ABI_VERSION,
    .worker = { .concurrency = NV_SOME(1) },
    .flow = { .name = order_flow, .subscribes = joins },
};

static const struct {
    const char               *id;
    const nv_function_config *cfg;
    nv_handler                fn;
} functions[] = {
    { "accept", &accept_cfg, accept_order },
    { "charge", &charge_cfg, charge },
    { "reserve", &reserve_cfg, reserve_stock },
    { "ship", &ship_cfg, ship },
};

/* Print the run body (API-32 shape) as one line per event. */
static void
print_run(const char *run_json)
{
    json_t *run = json_loads(run_json, 0, NULL);
    json_t *ev;
    size_t i;

    json_array_foreach(json_object_get(run, "events"), i, ev) {
        json_t *step = json_object_get(ev, "stepName");
        char *data = json_dumps(json_object_get(ev, "data"),
                                JSON_COMPACT | JSON_ENCODE_ANY);

        printf("%s  %-15s %-8s %s\n",
               json_string_value(json_object_get(ev, "ts")),
               json_string_value(json_object_get(ev, "type")),
               step ? json_string_value(step) : "-", data ? data : "");
        free(data);
    }
    json_decref(run);
}

static int
die(const char *what, const nv_error *err)
{
    fprintf(stderr, "flow_demo: %s: %s\n", what, err->msg);
    return 1;
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

int
main(int argc, char **argv)
{
    nv_error err = { 0 };
    nv_config *cfg;
    nv_engine *e;
    char run_id[NV_ID_MAX], status[16], *run = NULL;

    if (nv_config_new(&cfg, &err) != NV_OK)
        return die("config", &err);
    if (argc > 1) {
        char *text = read_file(argv[1]);

        if (text == NULL) {
            fprintf(stderr, "flow_demo: cannot read '%s'\n", argv[1]);
            return 1;
        }
        if (nv_config_load_json(cfg, text, argv[1], &err) != NV_OK)
            return die("config", &err);
        free(text);
    }
    if (nv_engine_new(cfg, &e, &err) != NV_OK)
        return die("engine", &err);
    nv_config_free(cfg);
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
        if (nv_function_register(e, functions[i].id, NULL, functions[i].cfg,
                                 functions[i].fn, NULL, &err) != NV_OK)
            return die("register", &err);
    }
    if (nv_engine_start(e, 0, &err) != NV_OK) {
        fprintf(stderr, "%s", nv_engine_report(e));
        return die("start", &err);
    }
    if (nv_flow_start(e, "order", "{\"orderId\":7,\"amount\":42.5}", NULL,
                      run_id, NULL, &err) != NV_OK)
        return die("start flow", &err);
    if (nv_run_wait(e, run_id, 10000, status, &err) != NV_OK)
        return die("wait", &err);
    if (nv_run_get(e, "order", run_id, NULL, NULL, 1000, &run, &err) != NV_OK)
        return die("read run", &err);
    printf("run %s of flow order: %s\n", run_id, status);
    print_run(run);
    nv_free(run);
    nv_engine_free(e);
    return strcmp(status, "completed") == 0 ? 0 : 1;
}
