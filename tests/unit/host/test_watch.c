/* `nvent dev` watcher (CLI-12): src/host/watch.c. */
#include "helpers.h"

TestSuite(host_watch, .fini = th_cleanup, .timeout = 30);

static nv_host *
host(void)
{
    nv_config *c = th_config(NULL);
    nv_host *h = NULL;
    nv_error err = { 0 };

    cr_assert_eq(nv_host_new(c, th_dir, &h, &err), NV_OK, "%s", err.msg);
    nv_config_free(c);
    return h;
}

Test(host_watch, changes_are_gathered_until_150_ms_pass_without_one)
{
    nv_host *h;
    nv_host_watch *w;
    nv_error err = { 0 };
    char cfg[512];
    int64_t t0;

    th_project();
    th_write("functions/a.c", "int x;\n", 0644);
    th_write("nvent.json", "{}\n", 0644);
    snprintf(cfg, sizeof(cfg), "%s/nvent.json", th_dir);
    h = host();
    cr_assert_eq(nv_host_watch_new(h, cfg, &w, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_host_watch_wait(w, 50, &err), 0);
    th_write("functions/a.c", "int y;\n", 0644);
    t0 = mono_ms();
    cr_assert_eq(nv_host_watch_wait(w, 2000, &err), NV_HOST_CHANGED_FUNCTIONS);
    cr_assert_geq(mono_ms() - t0, 140);
    /* a new subfolder is watched too */
    th_write("functions/sub/deeper/b.c", "int z;\n", 0644);
    cr_assert_eq(nv_host_watch_wait(w, 2000, &err), NV_HOST_CHANGED_FUNCTIONS);
    cr_assert_eq(nv_host_watch_wait(w, 200, &err), 0);
    th_write("functions/sub/deeper/b.c", "int zz;\n", 0644);
    cr_assert_eq(nv_host_watch_wait(w, 2000, &err), NV_HOST_CHANGED_FUNCTIONS);
    /* dot files do not count */
    th_write("functions/.swap", "x", 0644);
    cr_assert_eq(nv_host_watch_wait(w, 300, &err), 0);
    /* the configuration file */
    th_write("nvent.json", "{\"prefix\":\"x\"}\n", 0644);
    cr_assert_eq(nv_host_watch_wait(w, 2000, &err), NV_HOST_CHANGED_CONFIG);
    nv_host_watch_free(w);
    nv_host_free(h);
}

Test(host_watch, a_functions_folder_created_later_is_watched)
{
    nv_host *h;
    nv_host_watch *w;
    nv_error err = { 0 };

    th_project();
    h = host();
    cr_assert_eq(nv_host_watch_new(h, NULL, &w, &err), NV_OK, "%s", err.msg);
    th_mkdirs(strcat(strcpy((char[512]){ 0 }, th_dir), "/functions"));
    cr_assert_eq(nv_host_watch_wait(w, 2000, &err), NV_HOST_CHANGED_FUNCTIONS);
    th_write("functions/a.c", "int x;\n", 0644);
    cr_assert_eq(nv_host_watch_wait(w, 2000, &err), NV_HOST_CHANGED_FUNCTIONS);
    nv_host_watch_free(w);
    nv_host_free(h);
}
