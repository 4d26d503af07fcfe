/*
 * Cron expressions (src/sched/cron.c): parse errors of each class with the
 * field named (CRON-5), macros, the DOM/DOW OR rule (CRON-4), and next due
 * times across month ends, leap years and DST changes (CRON-7).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "sched/cron.h"

/* "2025-03-30T01:00:00Z" (seconds optional, ".mmm" optional) -> epoch ms */
static int64_t
iso(const char *s)
{
    int y, mo, d, h = 0, mi = 0, se = 0, ms = 0;

    cr_assert(sscanf(s, "%d-%d-%dT%d:%d:%d.%d", &y, &mo, &d, &h, &mi, &se, &ms) >= 5,
              "bad iso %s", s);
    return (nv__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) * 1000 + ms;
}

static char *
fmt(int64_t ms)
{
    static char buf[4][32];
    static int k;
    char *b = buf[k++ % 4];

    nv__iso_time(ms, b, 32);
    return b;
}

static int
parse_err(const char *expr, char *msg)
{
    nv__cron c;
    nv_error err = { 0 };
    int rc = nv__cron_parse(expr, &c, &err);

    strcpy(msg, err.msg);
    return rc;
}

#define assert_refused(expr, want)                                           \
    do {                                                                     \
        char m_[256];                                                        \
        cr_assert_eq(parse_err(expr, m_), NV_EINVALID_CRON, "%s", expr);     \
        cr_assert_str_eq(m_, want, "%s", expr);                              \
    } while (0)

/* Due times of 'expr' in 'zone' after 'from', n of them, as ISO strings. */
static void
expect_next(const char *expr, const char *zone, const char *from, int n,
            const char *const *want)
{
    nv__cron c;
    nv__tz *z;
    nv_error err;
    int64_t t = iso(from);

    cr_assert_eq(nv__cron_parse(expr, &c, &err), NV_OK, "%s: %s", expr, err.msg);
    cr_assert_eq(nv__tz_load(zone, &z, &err), NV_OK, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(nv__cron_next(&c, z, t, &t, &err), NV_OK, "%s", err.msg);
        cr_assert_str_eq(fmt(t), fmt(iso(want[i])), "%s in %s after %s, #%d",
                         expr, zone, from, i);
    }
    nv__tz_free(z);
}

#define NEXT(expr, zone, from, ...)                                          \
    do {                                                                     \
        const char *const w_[] = { __VA_ARGS__ };                           \
        expect_next(expr, zone, from, sizeof(w_) / sizeof(w_[0]), w_);       \
    } while (0)

/* ---- Parsing ---- */

Test(cron_parse, wrong_field_counts_are_refused)
{
    assert_refused("* * * *", "expected 5 or 6 fields, got 4");
    assert_refused("* * * * * * *", "expected 5 or 6 fields, got 7");
    assert_refused("", "expression is empty");
    assert_refused("  \t ", "expression is empty");
}

Test(cron_parse, out_of_range_values_name_the_field)
{
    assert_refused("0 24 * * *", "hour: 24 is out of range 0-23");
    assert_refused("60 * * * *", "minute: 60 is out of range 0-59");
    assert_refused("60 * * * * *", "second: 60 is out of range 0-59");
    assert_refused("0 0 0 * *", "day of month: 0 is out of range 1-31");
    assert_refused("0 0 32 * *", "day of month: 32 is out of range 1-31");
    assert_refused("0 0 * 13 *", "month: 13 is out of range 1-12");
    assert_refused("0 0 * 0 *", "month: 0 is out of range 1-12");
    assert_refused("0 0 * * 8", "day of week: 8 is out of range 0-7");
    assert_refused("0 1-99 * * *", "hour: 99 is out of range 0-23");
    assert_refused("0 99999999999999999999 * * *",
                   "hour: 99999999999999999999 is out of range 0-23");
}

Test(cron_parse, reversed_ranges_and_bad_steps_are_refused)
{
    assert_refused("0 5-3 * * *", "hour: range 5-3 is reversed");
    assert_refused("0 0 * * FRI-MON", "day of week: range FRI-MON is reversed");
    assert_refused("*/0 * * * *", "minute: step 0 must be at least 1");
    assert_refused("*/x * * * *", "minute: invalid step 'x'");
    assert_refused("*/ * * * *", "minute: invalid step ''");
    assert_refused("1-5/-1 * * * *", "minute: invalid step '-1'");
}

Test(cron_parse, unsupported_characters_and_unknown_names_are_refused)
{
    assert_refused("0 0 L * *", "day of month: 'L' is not supported");
    assert_refused("0 0 15W * *", "day of month: '15W' is not supported");
    assert_refused("0 0 LW * *", "day of month: 'LW' is not supported");
    assert_refused("0 0 * * 5L", "day of week: '5L' is not supported");
    assert_refused("0 0 * * 1#2", "day of week: '#' is not supported");
    assert_refused("0 0 ? * 1", "day of month: '?' is not supported");
    assert_refused("0 0 * FOO *", "month: unknown name 'FOO'");
    assert_refused("0 0 * * MONDAY", "day of week: unknown name 'MONDAY'");
    assert_refused("0 0 * JAN-FOO *", "month: unknown name 'FOO'");
    assert_refused("0 MON * * *", "hour: invalid value 'MON'");
    assert_refused("0 0 * * JAN", "day of week: unknown name 'JAN'");
    assert_refused("0 1,,2 * * *", "hour: empty list item");
    assert_refused("0 1, * * *", "hour: empty list item");
    assert_refused("0 -1 * * *", "hour: missing value");
    assert_refused("0 +1 * * *", "hour: invalid value '+1'");
    assert_refused("@reboot", "unknown macro '@reboot'");
    assert_refused("@daily 0", "unknown macro '@daily 0'");
}

Test(cron_parse, lists_ranges_steps_and_names_in_any_case)
{
    nv__cron c;

    cr_assert_eq(nv__cron_parse("1,2,10-12,50-59/3 */6 1-31/10 jan,Mar-MAY sun-TUE", &c, NULL), NV_OK);
    cr_assert_eq(c.sec, 1);
    cr_assert_eq(c.min, (1ull << 1) | (1ull << 2) | (7ull << 10) | (1ull << 50) |
                        (1ull << 53) | (1ull << 56) | (1ull << 59));
    cr_assert_eq(c.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    cr_assert_eq(c.dom, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
    cr_assert_eq(c.mon, (1u << 1) | (7u << 3));
    cr_assert_eq(c.dow, 7u);
    cr_assert_eq(nv__cron_parse("\t30\t5 * * * *  ", &c, NULL), NV_OK);
    cr_assert_eq(c.sec, 1ull << 30);
    cr_assert_eq(c.min, 1ull << 5);
    /* a/n runs to the field maximum; 7 is Sunday */
    cr_assert_eq(nv__cron_parse("0 0 * * 5/1", &c, NULL), NV_OK);
    cr_assert_eq(c.dow, (1u << 5) | (1u << 6) | 1u);
    cr_assert_eq(nv__cron_parse("0 0 * * 7", &c, NULL), NV_OK);
    cr_assert_eq(c.dow, 1u);
    cr_assert_eq(nv__cron_parse("10/20 * * * *", &c, NULL), NV_OK);
    cr_assert_eq(c.min, (1ull << 10) | (1ull << 30) | (1ull << 50));
}

Test(cron_parse, macros_expand_to_their_expressions)
{
    const char *pairs[][2] = {
        { "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" },
        { "@monthly", "0 0 1 * *" }, { "@weekly", "0 0 * * 0" },
        { "@daily", "0 0 * * *" }, { "@midnight", "0 0 * * *" },
        { "@hourly", "0 * * * *" }, { " @DAILY ", "0 0 * * *" },
    };

    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        nv__cron a, b;

        cr_assert_eq(nv__cron_parse(pairs[i][0], &a, NULL), NV_OK, "%s", pairs[i][0]);
        cr_assert_eq(nv__cron_parse(pairs[i][1], &b, NULL), NV_OK);
        cr_assert(memcmp(&a, &b, sizeof(a)) == 0, "%s", pairs[i][0]);
    }
    NEXT("@weekly", "UTC", "2025-01-01T00:00Z", "2025-01-05T00:00Z", "2025-01-12T00:00Z");
    NEXT("@yearly", "UTC", "2025-01-01T00:00Z", "2026-01-01T00:00Z");
}

/* ---- Next fire ---- */

Test(cron_next, seconds_field_and_millisecond_starts)
{
    NEXT("* * * * * *", "UTC", "2025-01-01T12:00:00.500Z",
         "2025-01-01T12:00:01Z", "2025-01-01T12:00:02Z");
    NEXT("*/20 * * * * *", "UTC", "2025-01-01T12:00:59.999Z",
         "2025-01-01T12:01:00Z", "2025-01-01T12:01:20Z");
    NEXT("* * * * *", "UTC", "2025-01-01T12:00:00Z", "2025-01-01T12:01:00Z");
    /* strictly after: a due time equal to the start is not returned */
    NEXT("0 12 * * *", "UTC", "2025-01-01T12:00:00Z", "2025-01-02T12:00:00Z");
    NEXT("0 12 * * *", "UTC", "2025-01-01T11:59:59.999Z", "2025-01-01T12:00:00Z");
}

Test(cron_next, month_ends_and_short_months)
{
    NEXT("0 0 31 * *", "UTC", "2025-01-31T00:00Z",
         "2025-03-31T00:00Z", "2025-05-31T00:00Z", "2025-07-31T00:00Z",
         "2025-08-31T00:00Z", "2025-10-31T00:00Z", "2025-12-31T00:00Z",
         "2026-01-31T00:00Z");
    NEXT("59 23 30 * *", "UTC", "2025-01-30T23:59Z", "2025-03-30T23:59Z");
    NEXT("0 0 1 * *", "Europe/Berlin", "2025-12-15T00:00Z",
         "2025-12-31T23:00Z", "2026-01-31T23:00Z");
    NEXT("0 0 * * *", "UTC", "2025-12-31T23:59:59Z", "2026-01-01T00:00Z");
}

Test(cron_next, leap_days)
{
    NEXT("0 0 29 2 *", "UTC", "2025-01-01T00:00Z", "2028-02-29T00:00Z", "2032-02-29T00:00Z");
    /* 2100 is not a leap year: 2096 then 2104 */
    NEXT("0 0 29 2 *", "UTC", "2096-03-01T00:00Z", "2104-02-29T00:00Z");
    NEXT("0 12 28-31 2 *", "UTC", "2024-02-27T00:00Z",
         "2024-02-28T12:00Z", "2024-02-29T12:00Z", "2025-02-28T12:00Z");
}

Test(cron_next, day_of_month_or_day_of_week_when_both_restricted)
{
    /* the 13th, or any Friday (2025-06-06 and 13 are Fridays) */
    NEXT("0 0 13 * 5", "UTC", "2025-06-01T00:00Z",
         "2025-06-06T00:00Z", "2025-06-13T00:00Z", "2025-06-20T00:00Z",
         "2025-06-27T00:00Z", "2025-07-04T00:00Z", "2025-07-11T00:00Z",
         "2025-07-13T00:00Z");
    /* day of month starting with '*': both must match (odd days that are
     * Mondays) */
    NEXT("0 0 */2 * MON", "UTC", "2025-06-01T00:00Z",
         "2025-06-09T00:00Z", "2025-06-23T00:00Z", "2025-07-07T00:00Z");
    /* day of week '*': only the day of month */
    NEXT("0 0 15 * *", "UTC", "2025-06-01T00:00Z", "2025-06-15T00:00Z");
    /* day of month '*', a day of week: only that weekday */
    NEXT("0 0 * * 0", "UTC", "2025-06-01T00:00Z", "2025-06-08T00:00Z");
    NEXT("0 0 * * 7", "UTC", "2025-06-01T00:00Z", "2025-06-08T00:00Z");
}

Test(cron_next, berlin_spring_gap_fires_once_at_the_end_of_the_gap)
{
    /* 2025-03-30: 02:00 CET -> 03:00 CEST at 01:00Z */
    NEXT("30 2 * * *", "Europe/Berlin", "2025-03-29T12:00Z",
         "2025-03-30T01:00Z", "2025-03-31T00:30Z");
    /* four due times in the gap give a single fire */
    NEXT("*/15 2 * * *", "Europe/Berlin", "2025-03-30T00:50Z",
         "2025-03-30T01:00Z", "2025-03-31T00:00Z");
    /* a due time right after the gap is its own fire: 02:45 in the gap fires
     * at 03:00 together with the 03:00 due time, once */
    NEXT("45 2,3 * * *", "Europe/Berlin", "2025-03-30T00:00Z",
         "2025-03-30T01:00Z", "2025-03-30T01:45Z");
    NEXT("0 3 * * *", "Europe/Berlin", "2025-03-30T00:00Z",
         "2025-03-30T01:00Z", "2025-03-31T01:00Z");
}

Test(cron_next, berlin_autumn_fold_fires_only_at_the_first_occurrence)
{
    /* 2025-10-26: 03:00 CEST -> 02:00 CET at 01:00Z; 02:30 happens at 00:30Z
     * and 01:30Z */
    NEXT("30 2 * * *", "Europe/Berlin", "2025-10-25T12:00Z",
         "2025-10-26T00:30Z", "2025-10-27T01:30Z");
    NEXT("0,30 * * * *", "Europe/Berlin", "2025-10-26T00:00Z",
         "2025-10-26T00:30Z", "2025-10-26T02:00Z", "2025-10-26T02:30Z");
    /* starting inside the second pass of the fold */
    NEXT("*/20 2 * * *", "Europe/Berlin", "2025-10-26T01:10Z", "2025-10-27T01:00Z");
}

Test(cron_next, new_york_gap_and_fold)
{
    /* 2025-03-09: 02:00 EST -> 03:00 EDT at 07:00Z */
    NEXT("30 2 * * *", "America/New_York", "2025-03-08T12:00Z",
         "2025-03-09T07:00Z", "2025-03-10T06:30Z");
    /* 2025-11-02: 02:00 EDT -> 01:00 EST at 06:00Z */
    NEXT("30 1 * * *", "America/New_York", "2025-11-01T12:00Z",
         "2025-11-02T05:30Z", "2025-11-03T06:30Z");
    NEXT("0 * * * *", "America/New_York", "2025-11-02T04:30Z",
         "2025-11-02T05:00Z", "2025-11-02T07:00Z");
}

Test(cron_next, lord_howe_half_hour_gap_and_fold)
{
    /* 2025-10-05: 02:00 +1030 -> 02:30 +11 at 15:30Z the day before */
    NEXT("15 2 * * *", "Australia/Lord_Howe", "2025-10-04T00:00Z",
         "2025-10-04T15:30Z", "2025-10-05T15:15Z");
    NEXT("*/10 2 * * *", "Australia/Lord_Howe", "2025-10-04T15:00Z",
         "2025-10-04T15:30Z", "2025-10-04T15:40Z");
    /* 2025-04-06: 02:00 +11 -> 01:30 +1030 at 15:00Z the day before; 01:45
     * happens at 14:45Z and 15:15Z */
    NEXT("45 1 * * *", "Australia/Lord_Howe", "2025-04-05T00:00Z",
         "2025-04-05T14:45Z", "2025-04-06T15:15Z");
}

Test(cron_next, kathmandu_quarter_hour_offset)
{
    NEXT("0 9 * * *", "Asia/Kathmandu", "2025-01-01T00:00Z",
         "2025-01-01T03:15Z", "2025-01-02T03:15Z");
}

Test(cron_next, far_future_uses_the_footer_rule)
{
    /* 2200-03-30 is the last Sunday of March 2200 */
    NEXT("30 2 30 3 *", "Europe/Berlin", "2200-01-01T00:00Z", "2200-03-30T01:00Z");
}

Test(cron_next, expressions_that_never_match_are_refused)
{
    const char *never[] = { "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *", NULL };

    for (int i = 0; never[i] != NULL; i++) {
        nv__cron c;
        nv__tz *z;
        nv_error err;
        int64_t t;
        clock_t c0 = clock();

        cr_assert_eq(nv__cron_parse(never[i], &c, NULL), NV_OK);
        cr_assert_eq(nv__tz_load("UTC", &z, NULL), NV_OK);
        cr_assert_eq(nv__cron_next(&c, z, iso("2025-01-01T00:00Z"), &t, &err),
                     NV_EINVALID_CRON);
        cr_assert_str_eq(err.msg, "expression never matches");
        cr_assert_lt((double)(clock() - c0) / CLOCKS_PER_SEC, 0.05, "too slow");
        nv__tz_free(z);
    }
    /* February 30th, or any Monday: matches */
    NEXT("0 0 30 2 MON", "UTC", "2025-01-01T00:00Z", "2025-02-03T00:00Z");
}

Test(cron_next, every_second_through_a_gap_and_a_fold_is_fast)
{
    nv__cron c;
    nv__tz *z;
    int64_t t = iso("2025-03-30T00:59:58Z");
    clock_t c0 = clock();

    cr_assert_eq(nv__cron_parse("* * * * * *", &c, NULL), NV_OK);
    cr_assert_eq(nv__tz_load("Europe/Berlin", &z, NULL), NV_OK);
    cr_assert_eq(nv__cron_next(&c, z, t, &t, NULL), NV_OK);
    cr_assert_str_eq(fmt(t), "2025-03-30T00:59:59.000Z");
    cr_assert_eq(nv__cron_next(&c, z, t, &t, NULL), NV_OK);
    cr_assert_str_eq(fmt(t), "2025-03-30T01:00:00.000Z");
    cr_assert_eq(nv__cron_next(&c, z, t, &t, NULL), NV_OK);
    cr_assert_str_eq(fmt(t), "2025-03-30T01:00:01.000Z");
    /* from inside a fold's second pass, one due time per second resumes
     * right after the fold */
    t = iso("2025-10-26T01:00:00Z");
    cr_assert_eq(nv__cron_next(&c, z, t, &t, NULL), NV_OK);
    cr_assert_str_eq(fmt(t), "2025-10-26T02:00:00.000Z");
    cr_assert_lt((double)(clock() - c0) / CLOCKS_PER_SEC, 0.5, "too slow");
    nv__tz_free(z);
}
