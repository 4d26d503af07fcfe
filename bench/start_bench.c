/*
 * start_bench: runs started per second, one nv_flow_start at a time
 * against nv_flow_start_many (500 at a time), on the memory adapters and
 * on the file adapters with synchronous "normal" and "full", measured in
 * the same run. Not a test: it prints numbers for the closing notes.
 *
 *   build/bench/start_bench [--runs N] [--dir DIR]
 *
 * The flow's entry step does not run (worker.autorun false), so only the
 * starts are timed: flow.start, the index entry and the entry job of each
 * run. DIR (default a fresh directory under /tmp) holds the file data;
 * it is removed afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nvent.h>

#define BULK 500

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what, const nv_error *err)
{
    fprintf(stderr, "start_bench: %s: %s\n", what, err->msg);
    exit(1);
}

static int
noop(nv_ctx *c, const char *input, void *ud)
{
    (void)c;
    (void)input;
    (void)ud;
    return NV_OK;
}

/* An engine on 'adapters' ("memory", or "file" with 'sync' under 'dir'). */
static nv_engine *
engine(const char *adapters, const char *dir, const char *sync)
{
    char cfg[4096];
    nv_config *c = NULL;
    nv_engine *e = NULL;
    nv_error err = { 0 };

    if (strcmp(adapters, "memory") == 0)
        snprintf(cfg, sizeof(cfg), "{}");
    else
        snprintf(cfg, sizeof(cfg),
                 "{\"queue\":{\"adapter\":\"file\",\"file\":{\"dataDir\":"
                 "\"%s/q\",\"synchronous\":\"%s\"}},\"stream\":{\"adapter\":"
                 "\"file\",\"file\":{\"dataDir\":\"%s/s\",\"synchronous\":"
                 "\"%s\"}},\"store\":{\"adapter\":\"file\",\"file\":"
                 "{\"dataDir\":\"%s/t\",\"synchronous\":\"%s\"}}}",
                 dir, sync, dir, sync, dir, sync);
    if (nv_config_new(&c, &err) != NV_OK ||
        nv_config_load_json(c, cfg, "bench", &err) != NV_OK ||
        nv_engine_new(c, &e, &err) != NV_OK)
        die("engine", &err);
    nv_config_free(c);
    if (nv_function_register_json(e, "entry", NULL, NV_RUNTIME_C,
                                  "{\"flow\":{\"name\":\"f\",\"role\":"
                                  "\"entry\"},\"worker\":{\"autorun\":"
                                  "false}}", noop, NULL, &err) != NV_OK ||
        nv_engine_start(e, 0, &err) != NV_OK)
        die("engine start", &err);
    return e;
}

/* Runs per second: 'runs' started one at a time (bulk 0) or BULK at a
 * time, on a fresh engine. */
static double
starts(const char *adapters, const char *dir, const char *sync, long runs,
       int bulk)
{
    static char ids[BULK][NV_ID_MAX];
    static const char *inputs[BULK];    /* all NULL: {} */
    char sub[700], cmd[800], id[NV_ID_MAX];
    nv_error err = { 0 };
    nv_engine *e;
    double t0, t;

    snprintf(sub, sizeof(sub), "%s/%s-%s-%d", dir, adapters, sync, bulk);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", sub);
    if (system(cmd) != 0)
        die("mkdir", &err);
    e = engine(adapters, sub, sync);
    t0 = now_s();
    for (long i = 0; i < runs; i += bulk ? BULK : 1) {
        size_t n = runs - i < BULK ? (size_t)(runs - i) : BULK;

        if (bulk ? nv_flow_start_many(e, "f", inputs, n, ids, NULL, &err)
                 : nv_flow_start(e, "f", "{}", NULL, id, NULL, &err))
            die("start", &err);
    }
    t = now_s() - t0;
    nv_engine_free(e);
    return (double)runs / t;
}

int
main(int argc, char **argv)
{
    static const char *const modes[][2] = {
        { "memory", "-" }, { "file", "normal" }, { "file", "full" },
    };
    char dir[512] = "", cmd[600];
    long runs = 5000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atol(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            snprintf(dir, sizeof(dir), "%s", argv[++i]);
        else {
            fprintf(stderr, "usage: start_bench [--runs N] [--dir DIR]\n");
            return 2;
        }
    }
    if (runs < 1) {
        fprintf(stderr, "start_bench: --runs must be at least 1\n");
        return 2;
    }
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/nvent-start-bench-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("start_bench: mkdtemp");
            return 1;
        }
    }
    printf("%-22s %12s %12s %8s\n", "adapters", "one/s", "bulk/s", "ratio");
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        double one = starts(modes[m][0], dir, modes[m][1], runs, 0);
        double many = starts(modes[m][0], dir, modes[m][1], runs, 1);
        char name[64];

        snprintf(name, sizeof(name), "%s%s%s", modes[m][0],
                 strcmp(modes[m][1], "-") ? " " : "",
                 strcmp(modes[m][1], "-") ? modes[m][1] : "");
        printf("%-22s %12.0f %12.0f %7.1fx\n", name, one, many, many / one);
    }
    printf("%ld runs each way; bulk: nv_flow_start_many of %d\n", runs, BULK);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "start_bench: could not remove %s\n", dir);
    return 0;
}
