/* C builds (C-1, C-2, C-4): src/host/cbuild.c. */
#include "helpers.h"

#include <time.h>

TestSuite(host_cbuild, .fini = th_cleanup, .timeout = 60);

static const char *const good_c =
    "#include <nvent.h>\n"
    "int nvent_handler(nv_ctx *c, const char *in, void *ud);\n"
    "int nvent_handler(nv_ctx *c, const char *in, void *ud)\n"
    "{ (void)c; (void)in; (void)ud; return NV_OK; }\n"
    "const nv_function_config nvent_config = { .abi = NV_ABI_VERSION };\n";

static hfile
one_file(host_settings *s)
{
    hfile *f, r;
    size_t n;
    int missing;
    hbuf rep = { 0 };

    cr_assert_eq(host_scan(s, &f, &n, &missing, &rep), 0);
    cr_assert_eq(n, 1);
    r = f[0];
    free(f);
    hbuf_release(&rep);
    return r;
}

static void
done(host_settings *s, hfile *f, hbuf *rep)
{
    free(f->id);
    free(f->path);
    free(f->rel);
    hbuf_release(rep);
    host_settings_release(s);
}

static int
build(host_settings *s, hfile *f, hbuf *rep)
{
    char *so = NULL;
    int rc = host_cbuild(s, f, &so, NULL, rep);

    if (rc != CBUILD_FAILED) {
        char want[512];

        snprintf(want, sizeof(want), "%s/.nvent/build/%s.so", th_dir, f->id);
        cr_assert_str_eq(so, want);
        cr_assert_eq(access(so, R_OK), 0);
    }
    free(so);
    return rc;
}

static void
make_older(const char *rel)
{
    char p[512];
    struct timespec t[2] = { { .tv_sec = 1000000000 }, { .tv_sec = 1000000000 } };

    snprintf(p, sizeof(p), "%s/%s", th_dir, rel);
    cr_assert_eq(utimensat(AT_FDCWD, p, t, 0), 0);
}

Test(host_cbuild, builds_into_the_build_dir_and_reuses_a_fresh_object)
{
    host_settings s;
    hfile f;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/billing/charge.c", good_c, 0644);
    th_settings(&s, NULL);
    f = one_file(&s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT, "%s", rep.s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_FRESH);
    cr_assert_eq(rep.len, 0);
    done(&s, &f, &rep);
}

Test(host_cbuild, an_object_older_than_its_source_is_rebuilt)
{
    host_settings s;
    hfile f;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/a.c", good_c, 0644);
    th_settings(&s, NULL);
    f = one_file(&s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT);
    make_older(".nvent/build/a.so");
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_FRESH);
    done(&s, &f, &rep);
}

Test(host_cbuild, other_flags_rebuild_the_object)
{
    host_settings s, s2;
    hfile f;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/a.c", good_c, 0644);
    th_settings(&s, NULL);
    f = one_file(&s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT);
    th_settings(&s2, "{\"functions\":{\"cflags\":[\"-DX=1\"]}}");
    cr_assert_eq(build(&s2, &f, &rep), CBUILD_BUILT);
    cr_assert_eq(build(&s2, &f, &rep), CBUILD_FRESH);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT);
    host_settings_release(&s2);
    done(&s, &f, &rep);
}

Test(host_cbuild, an_object_built_for_another_abi_is_rebuilt)
{
    host_settings s;
    hfile f;
    hbuf rep = { 0 };
    char p[512];
    FILE *fp;

    th_project();
    th_write("functions/a.c", good_c, 0644);
    th_settings(&s, NULL);
    f = one_file(&s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT);
    /* the stamp of an object from an nvent with ABI 0 */
    snprintf(p, sizeof(p), "%s/.nvent/build/a.so.stamp", th_dir);
    fp = fopen(p, "r+");
    cr_assert_not_null(fp);
    fputs("nvent-abi 0", fp);
    fclose(fp);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_FRESH);
    done(&s, &f, &rep);
}

Test(host_cbuild, flags_lines_among_the_first_20_lines_are_used)
{
    host_settings s;
    hfile f;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/a.c",
             "// nvent:cflags -DANSWER=42 -DOTHER\n"
             "  //   nvent:ldflags -lm\n"
             "#include <math.h>\n"
             "#if ANSWER != 42 || !defined(OTHER)\n#error flags not applied\n#endif\n"
             "double f(double x);\ndouble f(double x) { return sqrt(x); }\n", 0644);
    th_settings(&s, NULL);
    f = one_file(&s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_BUILT, "%s", rep.s);
    done(&s, &f, &rep);
}

Test(host_cbuild, a_compiler_failure_reports_the_file_then_the_diagnostics)
{
    host_settings s;
    hfile f;
    hbuf rep = { 0 };
    const char *nl;

    th_project();
    th_write("functions/bad.c", "int main(void) { return undeclared_thing; }\n", 0644);
    th_settings(&s, NULL);
    f = one_file(&s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_FAILED);
    nl = strchr(rep.s, '\n');
    cr_assert_not_null(nl);
    cr_assert_eq(strncmp(rep.s, "functions/bad.c: -: compilation failed (compiler exited "
                         "with code 1)\n", (size_t)(nl - rep.s) + 1), 0, "%s", rep.s);
    cr_assert_not_null(strstr(nl, "functions/bad.c:1:"), "%s", rep.s);
    cr_assert_not_null(strstr(nl, "undeclared_thing"), "%s", rep.s);
    /* failed: nothing is left to be loaded, and it is tried again */
    cr_assert_eq(build(&s, &f, &rep), CBUILD_FAILED);
    done(&s, &f, &rep);
}

Test(host_cbuild, a_missing_compiler_is_reported)
{
    host_settings s;
    hfile f;
    hbuf rep = { 0 };

    th_project();
    th_write("functions/a.c", good_c, 0644);
    th_settings(&s, "{\"functions\":{\"cc\":\"no-such-cc-here\"}}");
    f = one_file(&s);
    cr_assert_eq(build(&s, &f, &rep), CBUILD_FAILED);
    cr_assert_str_eq(rep.s, "functions/a.c: -: cannot run compiler 'no-such-cc-here': "
                     "No such file or directory\n");
    done(&s, &f, &rep);
}
