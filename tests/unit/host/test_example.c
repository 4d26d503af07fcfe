/*
 * examples/project runs: its C entry and step, its Python and shell steps
 * make one "orders" flow that completes (memory adapters here).
 */
#include "helpers.h"

#include <jansson.h>
#include <limits.h>

TestSuite(host_example, .fini = th_cleanup, .timeout = 60);

/* examples/project next to the build folder of this test binary. */
static void
copy_example(void)
{
    char exe[PATH_MAX], cmd[2 * PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    cr_assert_gt(n, 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(cmd, sizeof(cmd), "cp -r %s/../examples/project/. %s/", exe, th_dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(host_example, the_orders_flow_of_the_example_project_completes)
{
    nv_config *cfg;
    nv_host *h;
    nv_engine *e;
    nv_error err = { 0 };
    char *report = NULL, *text = NULL, run_id[NV_ID_MAX], status[16];
    json_t *body, *ev;
    size_t i;
    int completed = 0, notified = 0;

    th_project();
    copy_example();
    cfg = th_config(NULL);
    {
        char path[600], *doc;
        FILE *fp;
        long len;

        snprintf(path, sizeof(path), "%s/nvent.json", th_dir);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        fseek(fp, 0, SEEK_END);
        len = ftell(fp);
        rewind(fp);
        doc = calloc(1, (size_t)len + 1);
        cr_assert_eq(fread(doc, 1, (size_t)len, fp), (size_t)len);
        fclose(fp);
        cr_assert_eq(nv_config_load_json(cfg, doc, "nvent.json", &err), NV_OK, "%s", err.msg);
        free(doc);
    }
    cr_assert_eq(nv_config_set(cfg, "queue.adapter", "\"memory\"", "test", &err), NV_OK);
    cr_assert_eq(nv_config_set(cfg, "store.adapter", "\"memory\"", "test", &err), NV_OK);
    cr_assert_eq(nv_config_set(cfg, "stream.adapter", "\"memory\"", "test", &err), NV_OK);
    cr_assert_eq(nv_host_new(cfg, th_dir, &h, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_engine_new(cfg, &e, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_host_discover(h, e, 0, &report, &err), NV_OK, "%s", report);
    cr_assert_eq(nv_engine_start(e, NV_START_STRICT, &err), NV_OK, "%s\n%s", err.msg,
                 nv_engine_report(e));
    cr_assert_eq(nv_flow_start(e, "orders", "{\"id\":\"A-1001\",\"items\":[{\"sku\":\"tea\","
                               "\"qty\":2,\"price\":60}]}", NULL, run_id, NULL, &err), NV_OK,
                 "%s", err.msg);
    cr_assert_eq(nv_run_wait(e, run_id, 30000, status, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_run_get(e, "orders", run_id, NULL, NULL, 1000, &text, &err), NV_OK);
    body = json_loads(text, 0, NULL);
    nv_free(text);
    cr_assert_str_eq(status, "completed", "%s", json_dumps(body, JSON_INDENT(1)));
    json_array_foreach(json_object_get(body, "events"), i, ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *d = json_object_get(ev, "data");

        if (strcmp(type, "step.completed") == 0)
            completed++;
        if (strcmp(type, "step.completed") == 0 &&
            json_is_true(json_object_get(json_object_get(d, "result"), "notified")))
            notified = 1;
    }
    cr_assert_eq(completed, 4, "%s", json_dumps(body, JSON_INDENT(1)));
    cr_assert(notified);
    json_decref(body);
    nv_engine_stop(e, 2000);
    nv_host_shutdown(h);
    nv_engine_free(e);
    nv_host_release(h, e);
    nv_host_free(h);
    nv_config_free(cfg);
    free(report);
}
