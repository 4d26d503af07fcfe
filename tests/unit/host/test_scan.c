/* Discovery of the functions folder (FN-1..FN-4): src/host/scan.c. */
#include "helpers.h"

TestSuite(host_scan, .fini = th_cleanup);

static void
scan(hfile **f, size_t *n, int *missing, hbuf *report)
{
    host_settings s;

    th_settings(&s, NULL);
    cr_assert_eq(host_scan(&s, f, n, missing, report), 0);
    host_settings_release(&s);
}

Test(host_scan, ids_are_paths_relative_to_the_folder_without_extension)
{
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/billing/charge.c", "int x;\n", 0644);
    th_write("functions/tools/resize.py", "#!/usr/bin/env python3\n", 0755);
    th_write("functions/notify", "#!/bin/sh\n", 0700);
    th_write("functions/README.md", "docs\n", 0644);
    th_write("functions/lib/util.h", "int y;\n", 0644);
    scan(&f, &n, &missing, &rep);
    cr_assert_eq(missing, 0);
    cr_assert_eq(rep.len, 0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(f[0].id, "billing/charge");
    cr_assert_eq(f[0].kind, HFILE_C);
    cr_assert_str_eq(f[0].rel, "functions/billing/charge.c");
    cr_assert_str_eq(f[1].id, "notify");
    cr_assert_eq(f[1].kind, HFILE_PROC);
    cr_assert_str_eq(f[2].id, "tools/resize");
    cr_assert_eq(f[2].kind, HFILE_PROC);
    host_files_free(f, n);
}

Test(host_scan, dot_files_and_dot_folders_are_skipped)
{
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/.hidden.c", "int x;\n", 0644);
    th_write("functions/.git/hook", "#!/bin/sh\n", 0755);
    th_write("functions/ok.c", "int x;\n", 0644);
    scan(&f, &n, &missing, &rep);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(f[0].id, "ok");
    host_files_free(f, n);
}

Test(host_scan, links_to_files_are_followed_links_to_folders_are_not)
{
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    th_project();
    th_write("elsewhere/step.c", "int x;\n", 0644);
    th_write("elsewhere/sub/deep.c", "int x;\n", 0644);
    {
        char t[512];

        th_write("functions/keep.c", "int x;\n", 0644);
        snprintf(t, sizeof(t), "%s/elsewhere/step.c", th_dir);
        th_symlink(t, "functions/linked.c");
        snprintf(t, sizeof(t), "%s/elsewhere/sub", th_dir);
        th_symlink(t, "functions/dirlink");
        th_symlink("/nonexistent/file.c", "functions/broken.c");
    }
    scan(&f, &n, &missing, &rep);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(f[0].id, "keep");
    cr_assert_str_eq(f[1].id, "linked");
    cr_assert_eq(f[1].kind, HFILE_C);
    host_files_free(f, n);
}

Test(host_scan, a_file_reached_twice_counts_once_under_its_real_path)
{
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };
    char t[512];

    th_project();
    th_write("functions/real.c", "int x;\n", 0644);
    snprintf(t, sizeof(t), "%s/functions/real.c", th_dir);
    th_symlink(t, "functions/alias.c");
    scan(&f, &n, &missing, &rep);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(f[0].id, "real");
    cr_assert_eq(f[0].via_link, 0);
    host_files_free(f, n);
}

Test(host_scan, two_files_with_one_id_are_an_error_naming_both)
{
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/a.py", "#!/bin/sh\n", 0755);
    th_write("functions/a.sh", "#!/bin/sh\n", 0755);
    th_write("functions/b.c", "int x;\n", 0644);
    scan(&f, &n, &missing, &rep);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(f[0].id, "b");
    cr_assert_str_eq(rep.s, "functions/a.sh: -: function id 'a' is also the id of "
                     "functions/a.py\n");
    host_files_free(f, n);
    hbuf_release(&rep);
}

Test(host_scan, a_missing_folder_is_reported_as_missing)
{
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    th_project();
    scan(&f, &n, &missing, &rep);
    cr_assert_eq(missing, 1);
    cr_assert_eq(n, 0);
}

Test(host_scan, the_folder_comes_from_functions_dir)
{
    host_settings s;
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    th_project();
    th_write("fns/x.c", "int x;\n", 0644);
    th_settings(&s, "{\"functions\":{\"dir\":\"fns\"}}");
    cr_assert_eq(host_scan(&s, &f, &n, &missing, &rep), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(f[0].rel, "fns/x.c");
    host_files_free(f, n);
    host_settings_release(&s);
}

Test(host_scan, a_build_folder_inside_the_functions_folder_is_skipped)
{
    host_settings s;
    hfile *f;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/a.c", "int x;\n", 0644);
    th_write("functions/build/a.so", "\x7f" "ELF", 0755);
    th_settings(&s, "{\"functions\":{\"buildDir\":\"functions/build\"}}");
    cr_assert_eq(host_scan(&s, &f, &n, &missing, &rep), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(f[0].id, "a");
    host_files_free(f, n);
    host_settings_release(&s);
}
