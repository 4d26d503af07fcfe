/*
 * Tests of src/core/util.c: ids (N-2, N-3, E-2), name and key checks
 * (N-1, N-4), time formatting and the allocation failure hook.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"

Test(util, uuidv7_is_lowercase_canonical_and_sorts_by_creation)
{
    char prev[NV_ID_MAX] = "", id[NV_ID_MAX];

    for (int i = 0; i < 5000; i++) {
        nv__uuidv7(1700000000000 + i / 1000, id);
        cr_assert_eq(strlen(id), 36);
        cr_assert_eq(id[14], '7', "version nibble: %s", id);
        cr_assert(strchr("89ab", id[19]) != NULL, "variant: %s", id);
        for (const char *p = id; *p; p++)
            cr_assert(strchr("0123456789abcdef-", *p) != NULL, "%s", id);
        cr_assert_gt(strcmp(id, prev), 0, "%s after %s", id, prev);
        strcpy(prev, id);
    }
}

Test(util, uuidv7_keeps_order_when_the_clock_goes_back)
{
    char a[NV_ID_MAX], b[NV_ID_MAX];

    nv__uuidv7(1800000000000, a);
    nv__uuidv7(1700000000000, b);
    cr_assert_gt(strcmp(b, a), 0);
}

Test(util, uuidv7_of_a_key_is_the_same_id_every_time_and_differs_by_key)
{
    char a[NV_ID_MAX], b[NV_ID_MAX], c[NV_ID_MAX], d[NV_ID_MAX];
    char ref[NV_ID_MAX];

    nv__uuidv7_of(1700000000000, "sched@1700000000000", a);
    nv__uuidv7_of(1700000000000, "sched@1700000000000", b);
    nv__uuidv7_of(1700000000000, "sched@1700000300000", c);
    nv__uuidv7_of(1700000000001, "sched@1700000000000", d);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    cr_assert_str_neq(a, d);
    cr_assert_eq(strlen(a), 36);
    cr_assert_eq(a[14], '7', "version nibble: %s", a);
    cr_assert(strchr("89ab", a[19]) != NULL, "variant: %s", a);
    /* the time part is the given ms, as in a generated one */
    nv__uuidv7(1700000000000, ref);
    cr_assert_eq(strncmp(a, ref, 13), 0, "%s vs %s", a, ref);
}

Test(util, generated_job_ids_have_ms_and_nine_base36_chars)
{
    char id[NV_JOB_ID_MAX], other[NV_JOB_ID_MAX];
    const char *dash;

    nv__job_id(1740816902045, id);
    nv__job_id(1740816902045, other);
    dash = strchr(id, '-');
    cr_assert_not_null(dash);
    cr_assert_eq(strncmp(id, "1740816902045-", 14), 0);
    cr_assert_eq(strlen(dash + 1), 9);
    for (const char *p = dash + 1; *p; p++)
        cr_assert(strchr("0123456789abcdefghijklmnopqrstuvwxyz", *p));
    cr_assert_str_neq(id, other);
}

Test(util, forked_child_does_not_repeat_the_parents_random_sequence)
{
    int fd[2];
    char mine[NV_JOB_ID_MAX], theirs[NV_JOB_ID_MAX] = "";
    pid_t pid;

    nv__job_id(1, mine);      /* seed the parent's generator */
    cr_assert_eq(pipe(fd), 0);
    pid = fork();
    if (pid == 0) {
        nv__job_id(1, theirs);
        _exit(write(fd[1], theirs, sizeof(theirs)) == sizeof(theirs) ? 0 : 1);
    }
    nv__job_id(1, mine);
    cr_assert_eq(read(fd[0], theirs, sizeof(theirs)), (ssize_t)sizeof(theirs));
    waitpid(pid, NULL, 0);
    cr_assert_str_neq(mine, theirs);
}

Test(util, names_follow_n1)
{
    char longest[129];

    memset(longest, 'a', 128);
    longest[128] = '\0';
    cr_assert(nv__valid_name("a"));
    cr_assert(nv__valid_name("Order.created_v2-x"));
    cr_assert(nv__valid_name(longest));
    longest[127] = '\0';
    cr_assert(nv__valid_name(longest));
    memset(longest, 'a', 128);
    cr_assert(nv__valid_name(longest));
    cr_assert_not(nv__valid_name(NULL));
    cr_assert_not(nv__valid_name(""));
    cr_assert_not(nv__valid_name(".a"));
    cr_assert_not(nv__valid_name("-a"));
    cr_assert_not(nv__valid_name("_a"));
    cr_assert_not(nv__valid_name("a b"));
    cr_assert_not(nv__valid_name("a/b"));
    cr_assert_not(nv__valid_name("a:b"));
    cr_assert_not(nv__valid_name("é"));
}

Test(util, name_of_129_chars_is_refused)
{
    char s[130];

    memset(s, 'b', 129);
    s[129] = '\0';
    cr_assert_not(nv__valid_name(s));
}

Test(util, keys_are_utf8_without_control_characters)
{
    char s[258];

    cr_assert(nv__valid_key("customer"));
    cr_assert(nv__valid_key("käse/€ 1"));
    cr_assert_not(nv__valid_key(""));
    cr_assert_not(nv__valid_key("a\nb"));
    cr_assert_not(nv__valid_key("a\x7f"));
    cr_assert_not(nv__valid_key("\xc2\x85"));          /* C1 control */
    cr_assert_not(nv__valid_key("\xff"));              /* invalid byte */
    cr_assert_not(nv__valid_key("\xed\xa0\x80"));      /* surrogate */
    cr_assert_not(nv__valid_key("\xc0\xaf"));          /* overlong */
    memset(s, 'k', 256);
    s[256] = '\0';
    cr_assert(nv__valid_key(s));
    s[256] = 'k';
    s[257] = '\0';
    cr_assert_not(nv__valid_key(s));
}

Test(util, event_ids_compare_numerically)
{
    int64_t ms, seq;

    cr_assert_eq(nv__event_id_parse("1740816902045-12", &ms, &seq), 0);
    cr_assert_eq(ms, 1740816902045);
    cr_assert_eq(seq, 12);
    cr_assert_lt(nv__event_id_cmp("9-5", "10-0"), 0);
    cr_assert_lt(nv__event_id_cmp("10-9", "10-10"), 0);
    cr_assert_eq(nv__event_id_cmp("10-10", "10-10"), 0);
    cr_assert_neq(nv__event_id_parse("10", &ms, &seq), 0);
    cr_assert_neq(nv__event_id_parse("a-1", &ms, &seq), 0);
    cr_assert_neq(nv__event_id_parse("1-1x", &ms, &seq), 0);
    cr_assert_lt(nv__event_id_cmp("bad", "0-0"), 0);
}

Test(util, iso_time_has_milliseconds_and_z)
{
    char buf[32];

    nv__iso_time(1740816902045, buf, sizeof(buf));
    cr_assert_str_eq(buf, "2025-03-01T08:15:02.045Z");
    nv__iso_time(0, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
}

Test(util, allocation_hook_fails_exactly_the_nth_call)
{
    void *a, *b, *c;

    nv__alloc_fail_after(2);
    a = nv__malloc(8);
    b = nv__malloc(8);
    c = nv__malloc(8);
    cr_assert_not_null(a);
    cr_assert_null(b);
    cr_assert_not_null(c);
    nv__free(a);
    nv__free(c);
    nv__alloc_fail_after(0);
}

Test(util, error_fills_code_and_message)
{
    nv_error err;

    cr_assert_eq(nv__error(&err, NV_EINVAL, "bad '%s'", "x"), NV_EINVAL);
    cr_assert_eq(err.code, NV_EINVAL);
    cr_assert_str_eq(err.msg, "bad 'x'");
    cr_assert_eq(nv__error(NULL, NV_EIO, "ignored"), NV_EIO);
    cr_assert_str_eq(nv_error_name(NV_ERUN_NOT_FOUND), "run_not_found");
    cr_assert_eq(nv_error_status(NV_EQUEUE_FULL), 429);
    cr_assert_eq(nv_error_status(NV_EJSON), 400);
    cr_assert_str_eq(nv_error_name(12345), "internal");
}

Test(util, iso_time_matches_gmtime_across_leap_years_and_before_1970)
{
    for (int64_t ms = -86400000LL * 800; ms < 253402300799999LL;
         ms += 86400000LL * 37 + 3600000LL * 5 + 61001) {
        time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        int milli = (int)(ms - (int64_t)sec * 1000);
        struct tm tm;
        char want[80], got[40];

        gmtime_r(&sec, &tm);
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, milli);
        nv__iso_time(ms, got, sizeof(got));
        cr_assert_str_eq(got, want, "ms %lld", (long long)ms);
    }
}

Test(util, parse_i64_takes_exactly_one_integer)
{
    int64_t v = 7;

    cr_assert_eq(nv__parse_i64("-42", &v), 0);
    cr_assert_eq(v, -42);
    cr_assert_eq(nv__parse_i64("9223372036854775807", &v), 0);
    cr_assert_eq(v, INT64_MAX);
    v = 7;
    cr_assert_neq(nv__parse_i64("9223372036854775808", &v), 0);
    cr_assert_neq(nv__parse_i64("", &v), 0);
    cr_assert_neq(nv__parse_i64("12x", &v), 0);
    cr_assert_neq(nv__parse_i64("1.5", &v), 0);
    cr_assert_neq(nv__parse_i64(NULL, &v), 0);
    cr_assert_eq(v, 7, "untouched on failure");
}

Test(util, timespec_after_normalises_nanoseconds)
{
    struct timespec before, ts;

    clock_gettime(CLOCK_MONOTONIC, &before);
    nv__timespec_after(CLOCK_MONOTONIC, 1999 * NV__MS, &ts);
    cr_assert_lt(ts.tv_nsec, 1000000000L);
    cr_assert_geq(ts.tv_nsec, 0);
    int64_t d = (int64_t)(ts.tv_sec - before.tv_sec) * 1000000000LL +
                (ts.tv_nsec - before.tv_nsec);
    cr_assert_geq(d, 1999 * NV__MS);
    cr_assert_lt(d, 2100 * NV__MS);
    nv__timespec_after(CLOCK_MONOTONIC, -5, &ts);   /* clamps to now */
    cr_assert_lt(ts.tv_nsec, 1000000000L);
}

/* nv__fmt_i64 writes what "%lld" writes (and its NUL), at every length,
 * both signs and both ends of the range. */
Test(util, fmt_i64_writes_what_printf_writes)
{
    int64_t v[64];
    size_t n = 0;
    char a[32], b[32];

    v[n++] = 0;
    v[n++] = INT64_MAX;
    v[n++] = INT64_MIN;
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        v[n++] = p - 1;
        v[n++] = p;
        v[n++] = -(p + 1);
    }
    for (size_t i = 0; i < n; i++) {
        memset(a, 'x', sizeof(a));
        snprintf(b, sizeof(b), "%lld", (long long)v[i]);
        cr_assert_eq(nv__fmt_i64(a, v[i]), strlen(b), "%s", b);
        cr_assert_str_eq(a, b);
    }
}
