/*
 * Flow-heavy crash test on the file adapters (A-4, SD-4, SD-5): a child
 * process runs an engine that starts runs of a diamond flow (entry, two
 * steps on its event, a join) and reports each acknowledged run id over a
 * pipe; the parent kills it with SIGKILL at a random moment, starts a new
 * engine on the same data directories and checks that every acknowledged
 * run completes with exactly one terminal event and one step.completed per
 * step (no step's emits dispatched twice).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "file_util.h"
#include "nvent.h"

TestSuite(file_flow_crash, .timeout = 90);

#define MAX_RUNS 200

static int
step(nv_ctx *c, const char *input, void *ud)
{
    (void)input;
    if (ud != NULL && nv_ctx_emit(c, (const char *)ud, "{}", NULL) != NV_OK)
        return -1;
    return nv_ctx_result(c, "{\"ok\":true}", NULL);
}

static nv_engine *
engine_open(const char *dir)
{
    char cfg[2048];
    nv_config *c = NULL;
    nv_engine *e = NULL;
    nv_error err = { 0 };

    snprintf(cfg, sizeof(cfg),
             "{\"queue\":{\"adapter\":\"file\",\"file\":{\"dataDir\":\"%s/queue\"},"
             "\"worker\":{\"lockDurationMs\":1000,\"concurrency\":4}},"
             "\"store\":{\"adapter\":\"file\",\"file\":{\"dataDir\":\"%s/store\"}},"
             "\"stream\":{\"adapter\":\"file\",\"file\":{\"dataDir\":\"%s/stream\"}}}",
             dir, dir, dir);
    if (nv_config_new(&c, &err) != NV_OK ||
        nv_config_load_json(c, cfg, "test", &err) != NV_OK ||
        nv_engine_new(c, &e, &err) != NV_OK) {
        fprintf(stderr, "engine: %s\n", err.msg);
        nv_config_free(c);
        return NULL;
    }
    nv_config_free(c);
    if (nv_function_register_json(e, "start", NULL, NV_RUNTIME_C,
            "{\"flow\":{\"name\":\"f\",\"role\":\"entry\",\"emits\":[\"go\"]}}",
            step, (void *)"go", &err) != NV_OK ||
        nv_function_register_json(e, "a", NULL, NV_RUNTIME_C,
            "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"go\"]}}",
            step, NULL, &err) != NV_OK ||
        nv_function_register_json(e, "b", NULL, NV_RUNTIME_C,
            "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"go\"]}}",
            step, NULL, &err) != NV_OK ||
        nv_function_register_json(e, "j", NULL, NV_RUNTIME_C,
            "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"step:a\","
            "\"step:b\"]}}", step, NULL, &err) != NV_OK ||
        nv_engine_start(e, 0, &err) != NV_OK) {
        fprintf(stderr, "engine: %s %s\n", err.msg, nv_engine_report(e));
        nv_engine_free(e);
        return NULL;
    }
    return e;
}

static void
child_main(const char *dir, int fd)
{
    nv_engine *e = engine_open(dir);
    char run[NV_ID_MAX];

    if (e == NULL)
        _exit(2);
    if (write(fd, "R", 1) != 1)
        _exit(4);
    for (int i = 0; i < MAX_RUNS; i++) {
        if (nv_flow_start(e, "f", "{}", NULL, run, NULL, NULL) != NV_OK)
            _exit(3);
        if (write(fd, run, NV_ID_MAX) != NV_ID_MAX)
            _exit(4);
    }
    for (;;)
        pause();
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run ids acknowledged before the kill (NV_ID_MAX bytes each). The child
 * is killed 'delay_ms' after its first acknowledgement, so that it dies
 * in the middle of its work even on a loaded machine (or after 30 s
 * without any: then the caller's checks fail). */
static size_t
collect(int fd, pid_t pid, int delay_ms, char **out)
{
    size_t cap = MAX_RUNS * NV_ID_MAX + 1, have = 0;
    char *buf = malloc(cap);
    int64_t deadline = now_ms() + 30000;
    int killed = 0;
    ssize_t r;

    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };

        if (!killed && left <= 0) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        if (poll(&p, 1, killed ? 1000 : (int)(left > 0 ? left : 0)) <= 0)
            continue;
        r = read(fd, buf + have, cap - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (have == 0 && !killed)
            deadline = now_ms() + delay_ms;     /* the first ack */
        have += (size_t)r;
    }
    *out = buf;
    return have / NV_ID_MAX;
}

static int
count_type(json_t *events, const char *type, const char *step_name)
{
    json_t *ev;
    size_t i;
    int n = 0;

    json_array_foreach(events, i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        const char *s = json_string_value(json_object_get(ev, "stepName"));

        if (t != NULL && strcmp(t, type) == 0 &&
            (step_name == NULL || (s != NULL && strcmp(s, step_name) == 0)))
            n++;
    }
    return n;
}

static void
check_run(nv_engine *e, const char *run)
{
    char status[16] = "", *text = NULL;
    nv_error err = { 0 };
    json_t *r, *events;

    cr_assert_eq(nv_run_wait(e, run, 30000, status, &err), NV_OK,
                 "run %s did not finish: %s", run, err.msg);
    cr_assert_str_eq(status, "completed", "run %s", run);
    cr_assert_eq(nv_run_get(e, "f", run, NULL, NULL, 10000, &text, &err),
                 NV_OK, "%s", err.msg);
    r = json_loads(text, 0, NULL);
    nv_free(text);
    events = json_object_get(r, "events");
    cr_assert_eq(count_type(events, "flow.start", NULL), 1, "run %s", run);
    cr_assert_eq(count_type(events, "flow.completed", NULL) +
                 count_type(events, "flow.failed", NULL) +
                 count_type(events, "flow.stalled", NULL) +
                 count_type(events, "flow.cancel", NULL), 1,
                 "run %s: one terminal event", run);
    cr_assert_eq(count_type(events, "flow.completed", NULL), 1);
    for (const char *const *s = (const char *const[]){ "start", "a", "b", "j",
                                                      NULL }; *s; s++)
        cr_assert_eq(count_type(events, "step.completed", *s), 1,
                     "run %s step %s", run, *s);
    json_decref(r);
}

static void
flow_crash_run(unsigned seed)
{
    char *dir = ft_dir(), *runs = NULL, ready;
    int fds[2], status;
    pid_t pid;
    size_t n;
    nv_engine *e;

    srand(seed);
    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        child_main(dir, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    cr_assert_eq(read(fds[0], &ready, 1), 1, "seed %u: the child died", seed);
    n = collect(fds[0], pid, 100 + rand() % 400, &runs);
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status), "seed %u: child status %d", seed, status);
    cr_assert_gt(n, 0, "seed %u: no run was acknowledged", seed);

    e = engine_open(dir);
    cr_assert_not_null(e, "seed %u: restart failed", seed);
    for (size_t i = 0; i < n; i++)
        check_run(e, runs + i * NV_ID_MAX);
    nv_engine_free(e);
    free(runs);
    free(dir);
}

Test(file_flow_crash, runs_resume_after_kill_9_with_one_terminal_event_each)
{
    unsigned seed = (unsigned)time(NULL);

    for (unsigned i = 0; i < 2; i++)
        flow_crash_run(seed + i);
}
