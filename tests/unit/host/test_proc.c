/*
 * Functions from a folder run through a real engine (memory adapters):
 * process functions (§11: P-4..P-12, CL-2) and C functions (§10), and the
 * discovery report (FN-4, FN-6, C-3, C-4, P-3). src/host/host.c, proc.c.
 */
#include "helpers.h"

#include <jansson.h>
#include <signal.h>

TestSuite(host_proc, .fini = th_cleanup, .timeout = 60);

/*
 * A process function in Python that plays the job's data.do actions, then
 * answers with its pid, the answers it read and what it was given.
 */
static const char *const player_py =
    "#!/usr/bin/python3\n"
    "import sys, json, os, time, signal\n"
    "CONFIG = json.loads('%s')\n"
    "def send(m):\n"
    "    sys.stdout.write(json.dumps(m) + '\\n'); sys.stdout.flush()\n"
    "while True:\n"
    "    line = sys.stdin.readline()\n"
    "    if not line: break\n"
    "    m = json.loads(line)\n"
    "    if m['type'] == 'describe':\n"
    "        send({'type': 'config', 'config': CONFIG}); continue\n"
    "    if m['type'] != 'job': continue\n"
    "    jid = m['id']; answers = []\n"
    "    for a in m['data'].get('do', []):\n"
    "        k, v = next(iter(a.items()))\n"
    "        if k == 'send':\n"
    "            v.setdefault('id', jid); send(v)\n"
    "        elif k == 'raw': sys.stdout.write(v); sys.stdout.flush()\n"
    "        elif k == 'stderr': sys.stderr.write(v + '\\n'); sys.stderr.flush()\n"
    "        elif k == 'sleep': time.sleep(v)\n"
    "        elif k == 'signal': os.kill(os.getpid(), getattr(signal, v))\n"
    "        elif k == 'exit': sys.exit(v)\n"
    "        elif k == 'read': answers.append(json.loads(sys.stdin.readline()))\n"
    "        elif k == 'pidfile': open(v, 'w').write(str(os.getpid()))\n"
    "        elif k == 'end': break\n"
    "    else:\n"
    "        send({'type': 'result', 'id': jid, 'result': {'answers': answers,\n"
    "              'pid': os.getpid(), 'ctx': m['ctx'], 'name': m['name'],\n"
    "              'env': [os.environ.get('NVENT_PROTOCOL'),\n"
    "                      os.environ.get('NVENT_FUNCTION_ID'),\n"
    "                      os.environ.get('NVENT_QUEUE'), os.getcwd()]}})\n";

static void
write_player(const char *rel, const char *config)
{
    char text[8192];

    snprintf(text, sizeof(text), player_py, config);
    th_write(rel, text, 0755);
}

typedef struct fixture {
    nv_config *cfg;
    nv_host   *h;
    nv_engine *e;
    char      *report;
    int        discover_rc;
} fixture;

static void
start(fixture *f, const char *doc)
{
    nv_error err = { 0 };
    const char *adapter = getenv("NV_TEST_HOST_ADAPTER");   /* default memory */

    memset(f, 0, sizeof(*f));
    f->cfg = th_config(doc != NULL ? doc :
                       "{\"functions\":{\"describeTimeoutMs\":3000,\"killGraceMs\":300}}");
    if (adapter != NULL && *adapter != '\0') {
        char v[64];

        snprintf(v, sizeof(v), "\"%s\"", adapter);
        cr_assert_eq(nv_config_set(f->cfg, "queue.adapter", v, "test", &err), NV_OK);
        cr_assert_eq(nv_config_set(f->cfg, "store.adapter", v, "test", &err), NV_OK);
        cr_assert_eq(nv_config_set(f->cfg, "stream.adapter", v, "test", &err), NV_OK);
    }
    cr_assert_eq(nv_host_new(f->cfg, th_dir, &f->h, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_engine_new(f->cfg, &f->e, &err), NV_OK, "%s", err.msg);
    f->discover_rc = nv_host_discover(f->h, f->e, 0, &f->report, &err);
}

static void
start_ok(fixture *f, const char *doc)
{
    nv_error err = { 0 };

    start(f, doc);
    cr_assert_eq(f->discover_rc, NV_OK, "%s", f->report);
    cr_assert_str_eq(f->report, "");
    cr_assert_eq(nv_engine_start(f->e, 0, &err), NV_OK, "%s\n%s", err.msg,
                 nv_engine_report(f->e));
}

static void
stop(fixture *f)
{
    nv_engine_stop(f->e, 2000);
    nv_host_shutdown(f->h);
    nv_engine_free(f->e);
    nv_host_release(f->h, f->e);
    nv_host_free(f->h);
    nv_config_free(f->cfg);
    free(f->report);
}

static char *
enqueue(fixture *f, const char *queue, const char *data, const char *opts)
{
    char *body = NULL;
    nv_error err = { 0 };
    json_t *b;
    char *id;

    cr_assert_eq(nv_queue_enqueue(f->e, queue, NULL, data, opts, &body, &err), NV_OK,
                 "%s", err.msg);
    b = json_loads(body, 0, NULL);
    id = strdup(json_string_value(json_object_get(b, "id")));
    json_decref(b);
    nv_free(body);
    return id;
}

/* The job record once it is completed or failed. */
static json_t *
finished(fixture *f, const char *queue, const char *id)
{
    int64_t until = mono_ms() + 20000;

    for (;;) {
        char *text = NULL;
        json_t *j;
        const char *st;

        cr_assert_eq(nv_job_get(f->e, queue, id, &text, NULL), NV_OK);
        j = json_loads(text, 0, NULL);
        nv_free(text);
        st = json_string_value(json_object_get(j, "state"));
        if (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0)
            return j;
        cr_assert_lt(mono_ms(), until, "job %s did not finish: %s", id, st);
        json_decref(j);
        usleep(10000);
    }
}

static json_t *
run_job(fixture *f, const char *queue, const char *data, const char *opts)
{
    char *id = enqueue(f, queue, data, opts);
    json_t *j = finished(f, queue, id);

    free(id);
    return j;
}

static const char *
jstr(json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));

    return s != NULL ? s : "(none)";
}

/* Canonical text of a JSON value (sorted keys), in a static buffer. */
static const char *
canon(json_t *v)
{
    static char buf[4096];
    char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

    snprintf(buf, sizeof(buf), "%s", t != NULL ? t : "(null)");
    free(t);
    return buf;
}

static json_int_t
result_pid(json_t *job)
{
    return json_integer_value(json_object_get(json_object_get(job, "returnvalue"), "pid"));
}

/* A log entry of a plain job with that level and message? */
static int
has_log(json_t *job, const char *level, const char *message)
{
    json_t *logs = json_object_get(job, "logs"), *l;
    size_t i;

    json_array_foreach(logs, i, l) {
        const char *lv = json_string_value(json_object_get(l, "level"));
        const char *m = json_string_value(json_object_get(l, "message"));

        if (lv && m && strcmp(lv, level) == 0 && strcmp(m, message) == 0)
            return 1;
    }
    return 0;
}

static int
has_log_prefix(json_t *job, const char *level, const char *prefix)
{
    json_t *logs = json_object_get(job, "logs"), *l;
    size_t i;

    json_array_foreach(logs, i, l) {
        const char *lv = json_string_value(json_object_get(l, "level"));
        const char *m = json_string_value(json_object_get(l, "message"));

        if (lv && m && strcmp(lv, level) == 0 && strncmp(m, prefix, strlen(prefix)) == 0)
            return 1;
    }
    return 0;
}

/* ---- Process functions ---- */

Test(host_proc, a_process_function_gets_its_job_and_its_result_is_the_job_result)
{
    fixture f;
    json_t *j, *r, *ctx, *env;
    char cwd[600];

    th_project();
    write_player("functions/tools/resize.py", "{\"queue\":{\"name\":\"img\"}}");
    start_ok(&f, NULL);
    j = run_job(&f, "img", "{\"x\":1}", NULL);
    cr_assert_str_eq(jstr(j, "state"), "completed", "%s", jstr(j, "failedReason"));
    r = json_object_get(j, "returnvalue");
    ctx = json_object_get(r, "ctx");
    cr_assert_str_eq(jstr(ctx, "queue"), "img");
    cr_assert_str_eq(jstr(ctx, "jobId"), jstr(j, "id"));
    cr_assert(json_is_null(json_object_get(ctx, "flowId")));
    cr_assert(json_is_null(json_object_get(ctx, "flowName")));
    cr_assert_eq(json_integer_value(json_object_get(ctx, "attempt")), 1);
    cr_assert_eq(json_integer_value(json_object_get(ctx, "timeoutMs")), 0);
    env = json_object_get(r, "env");
    cr_assert_str_eq(json_string_value(json_array_get(env, 0)), "1");
    cr_assert_str_eq(json_string_value(json_array_get(env, 1)), "tools/resize");
    cr_assert_str_eq(json_string_value(json_array_get(env, 2)), "img");
    snprintf(cwd, sizeof(cwd), "%s", th_dir);
    cr_assert_str_eq(json_string_value(json_array_get(env, 3)), cwd);
    json_decref(j);
    stop(&f);
}

Test(host_proc, children_are_long_lived_and_reused_between_jobs)
{
    fixture f;
    json_t *a, *b;

    th_project();
    write_player("functions/p.py", "{\"worker\":{\"concurrency\":1}}");
    start_ok(&f, NULL);
    a = run_job(&f, "p", "{}", NULL);
    b = run_job(&f, "p", "{}", NULL);
    cr_assert_str_eq(jstr(b, "state"), "completed");
    cr_assert_eq(result_pid(a), result_pid(b));
    json_decref(a);
    json_decref(b);
    stop(&f);
}

Test(host_proc, state_log_and_stderr_round_trip)
{
    fixture f;
    json_t *j, *answers;

    th_project();
    write_player("functions/p.py", "{}");
    start_ok(&f, NULL);
    j = run_job(&f, "p", "{\"do\":["
                "{\"send\":{\"type\":\"state.set\",\"rid\":1,\"key\":\"k\",\"value\":{\"n\":0}}},"
                "{\"send\":{\"type\":\"state.get\",\"rid\":\"two\",\"key\":\"k\"}},"
                "{\"send\":{\"type\":\"state.get\",\"rid\":3,\"key\":\"absent\"}},"
                "{\"send\":{\"type\":\"state.delete\",\"rid\":4,\"key\":\"k\"}},"
                "{\"send\":{\"type\":\"state.get\",\"rid\":5,\"key\":\"k\"}},"
                "{\"send\":{\"type\":\"state.get\",\"rid\":6}},"
                "{\"read\":1},{\"read\":1},{\"read\":1},{\"read\":1},{\"read\":1},{\"read\":1},"
                "{\"send\":{\"type\":\"log\",\"level\":\"info\",\"message\":\"hello\","
                "\"meta\":{\"a\":1}}},"
                "{\"send\":{\"type\":\"log\",\"level\":\"loud\",\"message\":\"x\"}},"
                "{\"send\":{\"type\":\"progress\",\"progress\":140}},"
                "{\"send\":{\"type\":\"progress\",\"progress\":40}},"
                "{\"stderr\":\"careful now\"}]}", NULL);
    cr_assert_str_eq(jstr(j, "state"), "completed", "%s", jstr(j, "failedReason"));
    answers = json_object_get(json_object_get(j, "returnvalue"), "answers");
    cr_assert_eq(json_array_size(answers), 6);
    cr_assert_str_eq(canon(json_array_get(answers, 0)),
                     "{\"ok\":true,\"rid\":1,\"type\":\"state.result\",\"value\":null}");
    cr_assert_str_eq(canon(json_array_get(answers, 1)),
                     "{\"ok\":true,\"rid\":\"two\",\"type\":\"state.result\","
                     "\"value\":{\"n\":0}}");
    cr_assert(json_is_null(json_object_get(json_array_get(answers, 2), "value")));
    cr_assert(json_is_true(json_object_get(json_array_get(answers, 3), "ok")));
    cr_assert(json_is_null(json_object_get(json_array_get(answers, 4), "value")));
    cr_assert(json_is_false(json_object_get(json_array_get(answers, 5), "ok")));
    cr_assert_str_eq(jstr(json_array_get(answers, 5), "error"), "\"key\" must be a string");
    cr_assert(has_log(j, "info", "hello"));
    cr_assert(has_log_prefix(j, "warn", "invalid log message: "));
    cr_assert(has_log_prefix(j, "warn", "invalid progress message: "));
    cr_assert(has_log(j, "warn", "careful now"), "%s", canon(j));
    cr_assert_eq(json_real_value(json_object_get(j, "progress")), 40.0);
    json_decref(j);
    stop(&f);
}

Test(host_proc, a_child_that_crashes_mid_job_fails_it_and_is_restarted)
{
    fixture f;
    json_t *a, *b, *c;

    th_project();
    write_player("functions/p.py", "{\"worker\":{\"concurrency\":1}}");
    start_ok(&f, NULL);
    a = run_job(&f, "p", "{}", NULL);
    b = run_job(&f, "p", "{\"do\":[{\"signal\":\"SIGSEGV\"}]}", NULL);
    cr_assert_str_eq(jstr(b, "state"), "failed");
    cr_assert_str_eq(jstr(b, "failedReason"), "process killed by signal SIGSEGV");
    c = run_job(&f, "p", "{}", NULL);
    cr_assert_str_eq(jstr(c, "state"), "completed", "%s", jstr(c, "failedReason"));
    cr_assert_neq(result_pid(a), result_pid(c));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    stop(&f);
}

Test(host_proc, a_child_that_exits_mid_job_fails_it_with_its_code)
{
    fixture f;
    json_t *b;

    th_project();
    write_player("functions/p.py", "{}");
    start_ok(&f, NULL);
    b = run_job(&f, "p", "{\"do\":[{\"stderr\":\"bye\"},{\"exit\":3}]}", NULL);
    cr_assert_str_eq(jstr(b, "failedReason"), "process exited with code 3");
    cr_assert(has_log(b, "warn", "bye"));
    json_decref(b);
    stop(&f);
}

Test(host_proc, a_job_past_its_timeout_is_killed_with_the_exact_error)
{
    fixture f;
    json_t *b, *c;
    char pidfile[600], data[800];
    FILE *fp;
    int pid = 0;
    int64_t t0;

    th_project();
    write_player("functions/p.py", "{\"worker\":{\"concurrency\":1}}");
    start_ok(&f, NULL);
    snprintf(pidfile, sizeof(pidfile), "%s/pid", th_dir);
    snprintf(data, sizeof(data), "{\"do\":[{\"pidfile\":\"%s\"},{\"sleep\":30}]}", pidfile);
    json_decref(run_job(&f, "p", "{}", NULL));   /* the child is up */
    t0 = mono_ms();
    b = run_job(&f, "p", data, "{\"timeout\":800}");
    cr_assert_str_eq(jstr(b, "failedReason"), "timed out after 800 ms");
    cr_assert_lt(mono_ms() - t0, 3000);
    fp = fopen(pidfile, "r");
    cr_assert_not_null(fp);
    cr_assert_eq(fscanf(fp, "%d", &pid), 1);
    fclose(fp);
    /* SIGTERM at once: python dies of it */
    for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
        usleep(10000);
    cr_assert_neq(kill(pid, 0), 0, "the child still runs");
    c = run_job(&f, "p", "{}", NULL);
    cr_assert_str_eq(jstr(c, "state"), "completed", "%s", jstr(c, "failedReason"));
    cr_assert_neq(result_pid(c), pid);
    json_decref(b);
    json_decref(c);
    stop(&f);
}

Test(host_proc, a_child_ignoring_sigterm_is_killed_after_the_grace)
{
    fixture f;
    json_t *b;
    char pidfile[600];
    FILE *fp;
    int pid = 0;

    th_project();
    th_write("functions/stubborn.sh",
             "#!/bin/sh\ntrap '' TERM\n"
             "while read line; do\n"
             "  case \"$line\" in\n"
             "  *describe*) echo '{\"type\":\"config\",\"config\":{}}' ;;\n"
             "  *) echo $$ > \"$PIDFILE\"; sleep 30 ;;\n"
             "  esac\n"
             "done\n", 0755);
    snprintf(pidfile, sizeof(pidfile), "%s/pid", th_dir);
    setenv("PIDFILE", pidfile, 1);
    start_ok(&f, NULL);
    b = run_job(&f, "stubborn", "{}", "{\"timeout\":500}");
    cr_assert_str_eq(jstr(b, "failedReason"), "timed out after 500 ms");
    fp = fopen(pidfile, "r");
    cr_assert_not_null(fp);
    cr_assert_eq(fscanf(fp, "%d", &pid), 1);
    fclose(fp);
    usleep(100000);
    cr_assert_eq(kill(pid, 0), 0, "killed before the grace");
    for (int i = 0; i < 300 && kill(pid, 0) == 0; i++)
        usleep(10000);
    cr_assert_neq(kill(pid, 0), 0, "not killed after the grace");
    json_decref(b);
    stop(&f);
}

Test(host_proc, garbage_on_stdout_is_a_protocol_error_and_the_child_is_restarted)
{
    fixture f;
    json_t *a, *b, *c;

    th_project();
    write_player("functions/p.py", "{\"worker\":{\"concurrency\":1}}");
    start_ok(&f, NULL);
    a = run_job(&f, "p", "{}", NULL);
    b = run_job(&f, "p", "{\"do\":[{\"raw\":\"hello there\\n\"}]}", NULL);
    cr_assert_str_eq(jstr(b, "state"), "failed");
    cr_assert_eq(strncmp(jstr(b, "failedReason"), "protocol error: invalid JSON: ", 30), 0,
                 "%s", jstr(b, "failedReason"));
    c = run_job(&f, "p", "{}", NULL);
    cr_assert_str_eq(jstr(c, "state"), "completed", "%s", jstr(c, "failedReason"));
    cr_assert_neq(result_pid(a), result_pid(c));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    stop(&f);
}

Test(host_proc, protocol_errors_name_what_was_wrong)
{
    static const struct { const char *data, *reason; } cases[] = {
        { "{\"do\":[{\"raw\":\"[1,2]\\n\"}]}",
          "protocol error: a message must be a JSON object" },
        { "{\"do\":[{\"raw\":\"{\\\"id\\\":1}\\n\"}]}",
          "protocol error: message without a string \"type\"" },
        { "{\"do\":[{\"send\":{\"type\":\"bogus\"}}]}",
          "protocol error: unknown message type 'bogus'" },
        { "{\"do\":[{\"send\":{\"type\":\"config\",\"config\":{}}}]}",
          "protocol error: config message outside describe" },
        { "{\"do\":[{\"send\":{\"type\":\"log\",\"id\":\"nope\",\"level\":\"info\","
          "\"message\":\"m\"}}]}",
          "protocol error: log message for job 'nope', not the job in progress" },
        { "{\"do\":[{\"send\":{\"type\":\"error\"}}]}",
          "protocol error: error message without a string \"message\"" },
    };
    fixture f;

    th_project();
    write_player("functions/p.py", "{}");
    start_ok(&f, "{\"functions\":{\"describeTimeoutMs\":3000,\"killGraceMs\":300},"
             "\"queue\":{\"defaultJobOptions\":{\"attempts\":1}}}");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = run_job(&f, "p", cases[i].data, NULL);

        cr_assert_str_eq(jstr(j, "failedReason"), cases[i].reason);
        json_decref(j);
    }
    stop(&f);
}

Test(host_proc, a_line_over_max_message_bytes_is_a_protocol_error)
{
    fixture f;
    json_t *j;
    char data[4096];

    th_project();
    write_player("functions/p.py", "{}");
    start_ok(&f, "{\"functions\":{\"killGraceMs\":300,\"maxMessageBytes\":1024}}");
    snprintf(data, sizeof(data), "{\"do\":[{\"send\":{\"type\":\"log\",\"level\":\"info\","
             "\"message\":\"%02000d\"}}]}", 7);
    j = run_job(&f, "p", data, NULL);
    cr_assert_str_eq(jstr(j, "failedReason"), "protocol error: message longer than 1024 bytes");
    json_decref(j);
    stop(&f);
}

Test(host_proc, an_error_message_fails_the_job_and_retry_false_forbids_retries)
{
    fixture f;
    json_t *j;

    th_project();
    write_player("functions/p.py", "{\"queue\":{\"defaultJobOptions\":{\"attempts\":3}}}");
    start_ok(&f, NULL);
    j = run_job(&f, "p", "{\"do\":[{\"send\":{\"type\":\"error\",\"message\":\"boom\","
                "\"retry\":false}},{\"end\":1}]}", NULL);
    cr_assert_str_eq(jstr(j, "state"), "failed");
    cr_assert_str_eq(jstr(j, "failedReason"), "boom");
    cr_assert_eq(json_integer_value(json_object_get(j, "attemptsMade")), 1);
    json_decref(j);
    stop(&f);
}

Test(host_proc, big_messages_both_ways_do_not_deadlock)
{
    fixture f;
    json_t *j;
    char *data;
    size_t n = 600u << 10;         /* more than a pipe buffer */

    th_project();
    th_write("functions/echo.py",
             "#!/usr/bin/python3\nimport sys, json\n"
             "for line in sys.stdin:\n"
             "    m = json.loads(line)\n"
             "    if m['type'] == 'describe':\n"
             "        print(json.dumps({'type': 'config', 'config': {}}), flush=True)\n"
             "    elif m['type'] == 'job':\n"
             "        for i in range(200):\n"
             "            sys.stderr.write('x' * 1000 + '\\n')\n"
             "        print(json.dumps({'type': 'result', 'id': m['id'],\n"
             "              'result': len(m['data']['s'])}), flush=True)\n", 0755);
    start_ok(&f, NULL);
    data = malloc(n + 16);
    strcpy(data, "{\"s\":\"");
    memset(data + 6, 'a', n);
    strcpy(data + 6 + n, "\"}");
    j = run_job(&f, "echo", data, NULL);
    cr_assert_str_eq(jstr(j, "state"), "completed", "%s", jstr(j, "failedReason"));
    cr_assert_eq(json_integer_value(json_object_get(j, "returnvalue")), (json_int_t)n);
    free(data);
    json_decref(j);
    stop(&f);
}

/* ---- Discovery report (FN-6) ---- */

static const char *const good_c =
    "#include <nvent.h>\n"
    "int nvent_handler(nv_ctx *c, const char *in, void *ud);\n"
    "int nvent_handler(nv_ctx *c, const char *in, void *ud)\n"
    "{ (void)in; (void)ud; return nv_ctx_result(c, \"{\\\"v\\\":VALUE}\", NULL); }\n"
    "const nv_function_config nvent_config = { .abi = NV_ABI_VERSION,\n"
    "    .queue = { .name = \"cq\" } };\n";

static void
write_c(const char *rel, int value)
{
    char text[2048], num[16];
    const char *p = strstr(good_c, "VALUE");

    snprintf(num, sizeof(num), "%d", value);
    snprintf(text, sizeof(text), "%.*s%s%s", (int)(p - good_c), good_c, num, p + 5);
    th_write(rel, text, 0644);
}

Test(host_proc, a_c_function_is_built_loaded_and_run)
{
    fixture f;
    json_t *j;

    th_project();
    write_c("functions/calc.c", 123);
    start_ok(&f, NULL);
    j = run_job(&f, "cq", "{}", NULL);
    cr_assert_str_eq(jstr(j, "state"), "completed", "%s", jstr(j, "failedReason"));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "returnvalue"), "v")),
                 123);
    json_decref(j);
    stop(&f);
}

Test(host_proc, every_problem_is_reported_one_per_line)
{
    fixture f;
    const char *r;

    th_project();
    th_write("functions/broken.c", "int f(void) { return nope; }\n", 0644);
    th_write("functions/nosyms.c", "int unrelated;\n", 0644);
    th_write("functions/oldabi.c",
             "#include <nvent.h>\n"
             "static int run(nv_ctx *c, const char *in, void *ud)\n"
             "{ (void)c; (void)in; (void)ud; return 0; }\n"
             "const nv_function_config nvent_config = { .abi = 99 };\n"
             "int nvent_handler(nv_ctx *c, const char *in, void *ud)\n"
             "{ return run(c, in, ud); }\n", 0644);
    th_write("functions/ptr.c",
             "#include <nvent.h>\n"
             "static int run(nv_ctx *c, const char *in, void *ud)\n"
             "{ (void)c; (void)in; (void)ud; return 0; }\n"
             "const nv_function_config nvent_config = { .abi = NV_ABI_VERSION };\n"
             "nv_handler nvent_handler = run;\n", 0644);
    th_write("functions/silent.sh", "#!/bin/sh\nsleep 30\n", 0755);
    th_write("functions/dup.sh", "#!/bin/sh\n", 0755);
    th_write("functions/dup.py", "#!/bin/sh\n", 0755);
    write_player("functions/fine.py", "{}");
    start(&f, "{\"functions\":{\"describeTimeoutMs\":1500,\"killGraceMs\":100}}");
    cr_assert_eq(f.discover_rc, NV_EINVAL);
    r = f.report;
    cr_assert_not_null(strstr(r, "functions/dup.sh: -: function id 'dup' is also the id "
                              "of functions/dup.py\n"), "%s", r);
    cr_assert_not_null(strstr(r, "functions/broken.c: -: compilation failed (compiler "
                              "exited with code 1)\n"), "%s", r);
    cr_assert_not_null(strstr(r, "functions/broken.c:1:"), "%s", r);
    cr_assert_not_null(strstr(r, "functions/nosyms.c: -: missing symbol nvent_config\n"
                              "functions/nosyms.c: -: missing symbol nvent_handler\n"), "%s", r);
    cr_assert_not_null(strstr(r, "functions/oldabi.c: -: ABI mismatch: nvent_config.abi "
                              "is 99, this nvent has ABI 1"), "%s", r);
    cr_assert_not_null(strstr(r, "functions/ptr.c: -: nvent_handler must be a function"),
                       "%s", r);
    cr_assert_not_null(strstr(r, "functions/silent.sh: -: no config answer to describe "
                              "within 1500 ms\n"), "%s", r);
    cr_assert_null(strstr(r, "fine.py"), "%s", r);
    stop(&f);
}

Test(host_proc, a_missing_functions_folder_is_no_error)
{
    fixture f;

    th_project();
    start_ok(&f, NULL);
    stop(&f);
}

/*
 * A reload as `nvent dev` does it (CLI-12): a new engine on the old one's
 * adapters, discovered and started; when that fails, the old engine goes
 * on; else the old one stops and the jobs it left queued run on the new
 * code.
 */
static int
reload(fixture *f, nv_engine **out)
{
    nv_error err = { 0 };
    nv_engine *e = NULL;
    char *report = NULL;
    int rc;

    cr_assert_eq(nv_engine_new_sharing(f->cfg, f->e, &e, &err), NV_OK, "%s",
                 err.msg);
    rc = nv_host_discover(f->h, e, 0, &report, &err);
    if (rc == NV_OK)
        rc = nv_engine_start(e, 0, &err);
    if (rc != NV_OK) {
        cr_assert_not_null(strstr(report, "functions/calc.c: -: compilation failed"),
                           "%s", report);
        nv_engine_free(e);
        nv_host_release(f->h, e);
        e = NULL;
    }
    free(report);
    *out = e;
    return rc;
}

Test(host_proc, a_dev_reload_keeps_the_old_engine_on_failure_else_runs_the_new_code)
{
    fixture f;
    nv_engine *e2 = NULL;
    nv_error err = { 0 };
    json_t *a, *b;
    char *body = NULL;

    th_project();
    write_c("functions/calc.c", 1);
    write_player("functions/p.py", "{\"queue\":{\"name\":\"old\"}}");
    start_ok(&f, NULL);
    a = run_job(&f, "cq", "{}", NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(a, "returnvalue"), "v")), 1);
    json_decref(a);

    /* a broken change: the new engine does not start, the old goes on */
    th_write("functions/calc.c", "int nope(void) { return x; }\n", 0644);
    cr_assert_neq(reload(&f, &e2), NV_OK);
    a = run_job(&f, "cq", "{}", NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(a, "returnvalue"), "v")), 1);
    json_decref(a);

    /* a good change: a job queued before the swap runs on the new code */
    write_c("functions/calc.c", 2);
    write_player("functions/p.py", "{\"queue\":{\"name\":\"new\"}}");
    cr_assert_eq(nv_queue_pause(f.e, "cq", NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_queue_enqueue(f.e, "cq", NULL, "{}", NULL, &body, &err), NV_OK);
    a = json_loads(body, 0, NULL);
    nv_free(body);
    cr_assert_eq(reload(&f, &e2), NV_OK);
    nv_engine_stop(f.e, 1000);
    nv_engine_free(f.e);
    nv_host_release(f.h, f.e);
    f.e = e2;
    cr_assert_eq(nv_queue_resume(f.e, "cq", NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_engine_wait_idle(f.e, 10000, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_job_get(f.e, "cq", jstr(a, "id"), &body, &err), NV_OK, "%s", err.msg);
    b = json_loads(body, 0, NULL);
    nv_free(body);
    cr_assert_str_eq(jstr(b, "state"), "completed", "%s", jstr(b, "failedReason"));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(b, "returnvalue"), "v")), 2);
    json_decref(a);
    json_decref(b);
    b = run_job(&f, "cq", "{}", NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(b, "returnvalue"), "v")), 2);
    json_decref(b);
    b = run_job(&f, "new", "{}", NULL);
    cr_assert_str_eq(jstr(b, "state"), "completed", "%s", jstr(b, "failedReason"));
    json_decref(b);
    stop(&f);
}

/* ---- Flows: emits, stderr events, cancel, CL-2 requests ---- */

static json_t *
run_events(fixture *f, const char *run_id)
{
    char *text = NULL;
    nv_error err = { 0 };
    json_t *b, *ev;

    cr_assert_eq(nv_run_get(f->e, NULL, run_id, NULL, NULL, 10000, &text, &err), NV_OK,
                 "%s", err.msg);
    b = json_loads(text, 0, NULL);
    nv_free(text);
    ev = json_incref(json_object_get(b, "events"));
    json_decref(b);
    return ev;
}

static json_t *
find_event(json_t *events, const char *type, const char *step)
{
    json_t *ev;
    size_t i;

    json_array_foreach(events, i, ev) {
        if (strcmp(jstr(ev, "type"), type) == 0 &&
            (step == NULL || strcmp(jstr(ev, "stepName"), step) == 0))
            return ev;
    }
    return NULL;
}

Test(host_proc, a_process_step_emits_logs_stderr_and_makes_flow_requests)
{
    fixture f;
    char run_id[NV_ID_MAX], status[16];
    nv_error err = { 0 };
    json_t *events, *ev, *answers, *v;

    th_project();
    write_player("functions/start.py",
                 "{\"flow\":{\"name\":\"f\",\"role\":\"entry\",\"emits\":[\"go\"]}}");
    write_player("functions/next.py", "{\"flow\":{\"name\":\"f\",\"subscribes\":[\"go\"]}}");
    write_player("functions/other.py", "{\"flow\":{\"name\":\"g\",\"role\":\"entry\"}}");
    start_ok(&f, NULL);
    cr_assert_eq(nv_flow_start(f.e, "f", "{\"do\":["
                 "{\"send\":{\"type\":\"emit\",\"name\":\"go\",\"payload\":{\"n\":7}}},"
                 "{\"send\":{\"type\":\"emit\",\"name\":\"bad name!\"}},"
                 "{\"stderr\":\"to the run\"},"
                 "{\"send\":{\"type\":\"flow.isRunning\",\"rid\":1}},"
                 "{\"send\":{\"type\":\"flow.getRunningFlows\",\"rid\":2}},"
                 "{\"send\":{\"type\":\"flow.start\",\"rid\":3,\"flow\":\"g\","
                 "\"input\":{\"x\":1}}},"
                 "{\"send\":{\"type\":\"flow.start\",\"rid\":4,\"flow\":\"nope\"}},"
                 "{\"read\":1},{\"read\":1},{\"read\":1},{\"read\":1}]}",
                 NULL, run_id, NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_run_wait(f.e, run_id, 20000, status, &err), NV_OK, "%s", err.msg);
    cr_assert_str_eq(status, "completed");
    events = run_events(&f, run_id);
    ev = find_event(events, "emit", "start");
    cr_assert_not_null(ev, "%s", canon(events));
    cr_assert_str_eq(jstr(json_object_get(ev, "data"), "name"), "go");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(json_object_get(ev, "data"),
                                                                    "payload"), "n")), 7);
    cr_assert_not_null(find_event(events, "step.completed", "next"));
    {
        size_t i;
        int stderr_seen = 0, warn_seen = 0;

        json_array_foreach(events, i, ev) {
            json_t *d = json_object_get(ev, "data");

            if (strcmp(jstr(ev, "type"), "log") != 0)
                continue;
            if (strcmp(jstr(d, "message"), "to the run") == 0 &&
                strcmp(jstr(d, "stream"), "stderr") == 0 &&
                strcmp(jstr(d, "level"), "warn") == 0)
                stderr_seen = 1;
            if (strncmp(jstr(d, "message"), "invalid emit message: ", 22) == 0)
                warn_seen = 1;
        }
        cr_assert(stderr_seen, "%s", canon(events));
        cr_assert(warn_seen, "%s", canon(events));
    }
    json_decref(events);
    /* the answers, from the step's result */
    events = run_events(&f, run_id);
    ev = find_event(events, "step.completed", "start");
    answers = json_object_get(json_object_get(json_object_get(ev, "data"), "result"),
                              "answers");
    cr_assert_eq(json_array_size(answers), 4, "%s", canon(ev));
    v = json_array_get(answers, 0);
    cr_assert_str_eq(jstr(v, "type"), "flow.result");
    cr_assert(json_is_true(json_object_get(v, "ok")));
    cr_assert(json_is_false(json_object_get(v, "value")));      /* no other run */
    v = json_array_get(answers, 1);
    cr_assert(json_is_array(json_object_get(v, "value")), "%s", canon(v));
    v = json_object_get(json_array_get(answers, 2), "value");
    cr_assert_str_eq(jstr(v, "queue"), "other");
    cr_assert_str_eq(jstr(v, "step"), "other");
    cr_assert_str_eq(jstr(v, "flowId"), jstr(v, "runId"));
    {
        char want[128];

        snprintf(want, sizeof(want), "%s__other", jstr(v, "runId"));
        cr_assert_str_eq(jstr(v, "id"), want);
    }
    v = json_array_get(answers, 3);
    cr_assert(json_is_false(json_object_get(v, "ok")));
    cr_assert_eq(json_integer_value(json_object_get(v, "rid")), 4);
    json_decref(events);
    stop(&f);
}

Test(host_proc, flow_requests_in_a_plain_job_without_a_flow_are_refused)
{
    fixture f;
    json_t *j, *a;

    th_project();
    write_player("functions/p.py", "{}");
    start_ok(&f, NULL);
    j = run_job(&f, "p", "{\"do\":[{\"send\":{\"type\":\"flow.isRunning\",\"rid\":\"r\"}},"
                "{\"read\":1}]}", NULL);
    a = json_array_get(json_object_get(json_object_get(j, "returnvalue"), "answers"), 0);
    cr_assert_str_eq(jstr(a, "type"), "flow.result");
    cr_assert(json_is_false(json_object_get(a, "ok")));
    cr_assert_str_eq(jstr(a, "error"), "no \"flow\" given and the job is not in a flow");
    json_decref(j);
    stop(&f);
}

Test(host_proc, a_canceled_run_sends_cancel_to_the_busy_child)
{
    fixture f;
    char run_id[NV_ID_MAX], got[600], data[1200];
    nv_error err = { 0 };
    FILE *fp = NULL;
    json_t *m;
    char line[1024] = "";

    th_project();
    th_write("functions/waiter.py",
             "#!/usr/bin/python3\nimport sys, json, os\n"
             "for line in sys.stdin:\n"
             "    m = json.loads(line)\n"
             "    if m['type'] == 'describe':\n"
             "        print(json.dumps({'type': 'config', 'config': {'flow': {'name': 'w',\n"
             "              'role': 'entry'}}}), flush=True)\n"
             "    elif m['type'] == 'job':\n"
             "        jid = m['id']; path = m['data']['path']\n"
             "        open(path + '.started', 'w').close()\n"
             "    elif m['type'] == 'cancel':\n"
             "        open(path + '.tmp', 'w').write(line)\n"
             "        os.rename(path + '.tmp', path)\n"
             "        print(json.dumps({'type': 'error', 'id': jid, 'message': 'stopped'}),\n"
             "              flush=True)\n", 0755);
    start_ok(&f, NULL);
    snprintf(got, sizeof(got), "%s/cancel.json", th_dir);
    snprintf(data, sizeof(data), "{\"path\":\"%s\"}", got);
    cr_assert_eq(nv_flow_start(f.e, "w", data, NULL, run_id, NULL, &err), NV_OK, "%s", err.msg);
    snprintf(line, sizeof(line), "%s.started", got);
    for (int i = 0; i < 1000 && access(line, F_OK) != 0; i++)
        usleep(10000);
    cr_assert_eq(access(line, F_OK), 0, "the job never started");
    cr_assert_eq(nv_run_cancel(f.e, "w", run_id, NULL, &err), NV_OK, "%s", err.msg);
    for (int i = 0; i < 500 && (fp = fopen(got, "r")) == NULL; i++)
        usleep(10000);
    cr_assert_not_null(fp, "no cancel message reached the child");
    cr_assert_not_null(fgets(line, sizeof(line), fp));
    fclose(fp);
    m = json_loads(line, 0, NULL);
    cr_assert_str_eq(jstr(m, "type"), "cancel");
    cr_assert_str_eq(jstr(m, "reason"), "canceled");
    {
        char want[128];

        snprintf(want, sizeof(want), "%s__waiter", run_id);
        cr_assert_str_eq(jstr(m, "id"), want);
    }
    json_decref(m);
    stop(&f);
}
