/*
 * Time-zone conversion (src/sched/tz.c) checked against the system's own
 * conversion: each Criterion test runs in its own process, so the oracle may
 * set TZ and call tzset()+localtime_r, which the library itself never does.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sched/tz.h"

static uint64_t rng_state;

static uint64_t
rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void
oracle_zone(const char *name)
{
    cr_assert_eq(setenv("TZ", name, 1), 0);
    tzset();
}

/* Compare one instant with localtime_r. */
static void
check_instant(const nv__tz *z, int64_t s)
{
    time_t t = (time_t)s;
    struct tm want;
    nv__tm got;
    int32_t off;
    int isdst;

    cr_assert_not_null(localtime_r(&t, &want));
    nv__tz_local(z, s * 1000 + 999, &got, &off, &isdst);
    cr_assert(got.year == want.tm_year + 1900 && got.mon == want.tm_mon + 1 &&
              got.mday == want.tm_mday && got.hour == want.tm_hour &&
              got.min == want.tm_min && got.sec == want.tm_sec &&
              got.wday == want.tm_wday && got.yday == want.tm_yday,
              "%s at %lld: got %lld-%02d-%02d %02d:%02d:%02d wday %d, want "
              "%d-%02d-%02d %02d:%02d:%02d wday %d", nv__tz_name(z),
              (long long)s, (long long)got.year, got.mon, got.mday, got.hour,
              got.min, got.sec, got.wday, want.tm_year + 1900,
              want.tm_mon + 1, want.tm_mday, want.tm_hour, want.tm_min,
              want.tm_sec, want.tm_wday);
    cr_assert_eq(off, want.tm_gmtoff, "%s at %lld: offset %d, want %ld",
                 nv__tz_name(z), (long long)s, off, want.tm_gmtoff);
    cr_assert_eq(isdst, want.tm_isdst > 0, "%s at %lld: isdst",
                 nv__tz_name(z), (long long)s);
}

/* The oracle's instants for a local time: every t near it whose local time
 * is exactly 'l', found through the offsets seen within a day. */
static int
oracle_from_local(int64_t l, int64_t *out)
{
    long offs[64];
    int noffs = 0, n = 0;

    for (int64_t t = l - 30 * 3600; t <= l + 30 * 3600; t += 3600) {
        time_t tt = (time_t)t;
        struct tm tm;
        int seen = 0;

        localtime_r(&tt, &tm);
        for (int i = 0; i < noffs; i++)
            seen |= offs[i] == tm.tm_gmtoff;
        if (!seen && noffs < 64)
            offs[noffs++] = tm.tm_gmtoff;
    }
    for (int i = 0; i < noffs; i++) {
        time_t tt = (time_t)(l - offs[i]);
        struct tm tm;
        int dup = 0;

        localtime_r(&tt, &tm);
        if (tm.tm_gmtoff != offs[i])
            continue;
        for (int j = 0; j < n; j++)
            dup |= out[j] == l - offs[i];
        if (!dup)
            out[n++] = l - offs[i];
    }
    for (int i = 1; i < n; i++) {          /* sort ascending */
        for (int j = i; j > 0 && out[j] < out[j - 1]; j--) {
            int64_t x = out[j];
            out[j] = out[j - 1];
            out[j - 1] = x;
        }
    }
    return n;
}

static void
check_local(const nv__tz *z, int64_t l)
{
    int64_t want[8], got[8];
    int nw = oracle_from_local(l, want), ng;
    nv__tm tm;

    nv__secs_to_tm(l, &tm);
    ng = nv__tz_from_local(z, &tm, got, 8);
    cr_assert_eq(ng, nw, "%s local %lld: %d instants, want %d", nv__tz_name(z),
                 (long long)l, ng, nw);
    for (int i = 0; i < ng; i++)
        cr_assert_eq(got[i], want[i], "%s local %lld: instant %d", nv__tz_name(z),
                     (long long)l, i);
}

/* Local times every 15 minutes within 3 hours of each offset change of
 * the years [y0, y1), as the oracle finds them (hourly scan). */
static int
check_transitions(const nv__tz *z, int64_t from, int64_t to)
{
    long prev = 0;
    int changes = 0;

    for (int64_t t = from; t < to; t += 3600) {
        time_t tt = (time_t)t;
        struct tm tm;

        localtime_r(&tt, &tm);
        if (t != from && tm.tm_gmtoff != prev) {
            int64_t l = t + (tm.tm_gmtoff < prev ? tm.tm_gmtoff : prev);

            changes++;
            l -= l % 900;
            for (int64_t k = l - 3 * 3600; k <= l + 3 * 3600; k += 900)
                check_local(z, k);
            for (int64_t k = t - 3 * 3600; k <= t + 3 * 3600; k += 300)
                check_instant(z, k);
        }
        prev = tm.tm_gmtoff;
    }
    return changes;
}

/* Many instants: random over 1900..2500, every hour of recent and
 * footer-rule years, and local times around each offset change. */
static void
compare_zone(const char *name, int recent, int future)
{
    nv__tz *z;
    nv_error err;

    oracle_zone(name);
    cr_assert_eq(nv__tz_load(name, &z, &err), NV_OK, "%s", err.msg);
    rng_state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 5000; i++) {
        /* 1900-01-01 .. 2500-01-01 */
        int64_t s = -2208988800LL + (int64_t)(rng() % 18934560000ULL);

        check_instant(z, s);
    }
    for (int64_t s = 1704067200; s < 1767225600; s += 3600)
        check_instant(z, s);
    for (int i = 0; i < 1000; i++) {
        int64_t l = -1577923200LL + (int64_t)(rng() % 17000000000ULL);

        check_local(z, l - l % 900);
    }
    /* 1970..1975, 2024..2027, and 2100..2102 (past the table: footer) */
    check_transitions(z, 0, 157766400);
    cr_assert_eq(check_transitions(z, 1704067200, 1798761600) > 0, recent, "%s", name);
    cr_assert_eq(check_transitions(z, 4102444800, 4165603200) > 0, future, "%s", name);
    nv__tz_free(z);
}

Test(tz, berlin_matches_the_system_conversion) { compare_zone("Europe/Berlin", 1, 1); }
Test(tz, new_york_matches_the_system_conversion) { compare_zone("America/New_York", 1, 1); }
Test(tz, lord_howe_half_hour_dst_matches_the_system_conversion)
{
    compare_zone("Australia/Lord_Howe", 1, 1);
}
Test(tz, kathmandu_matches_the_system_conversion) { compare_zone("Asia/Kathmandu", 0, 0); }
Test(tz, utc_matches_the_system_conversion) { compare_zone("UTC", 0, 0); }
Test(tz, santiago_and_sydney_southern_rules_match_the_system_conversion)
{
    compare_zone("America/Santiago", 1, 1);
    compare_zone("Australia/Sydney", 1, 1);
}
Test(tz, permanent_dst_and_negative_dst_zones_match_the_system_conversion)
{
    compare_zone("Africa/Casablanca", 1, 0);
    compare_zone("Europe/Dublin", 1, 1);
}

Test(tz, spring_forward_gap_has_no_instant_and_fold_has_two)
{
    nv__tz *z;
    int64_t out[4];
    nv__tm gap = { .year = 2025, .mon = 3, .mday = 30, .hour = 2, .min = 30 };
    nv__tm fold = { .year = 2025, .mon = 10, .mday = 26, .hour = 2, .min = 30 };

    cr_assert_eq(nv__tz_load("Europe/Berlin", &z, NULL), NV_OK);
    cr_assert_eq(nv__tz_from_local(z, &gap, out, 4), 0);
    cr_assert_eq(nv__tz_from_local(z, &fold, out, 4), 2);
    /* 02:30 CEST = 00:30Z, 02:30 CET = 01:30Z */
    cr_assert_eq(out[0], 1761438600);
    cr_assert_eq(out[1], 1761442200);
    /* a due time in the gap resolves to the gap's end, 01:00Z */
    cr_assert_eq(nv__tz_resolve(z, nv__tm_to_secs(&gap)), 1743296400);
    cr_assert_eq(nv__tz_resolve(z, nv__tm_to_secs(&fold)), 1761438600);
    nv__tz_free(z);
}

Test(tz, lord_howe_far_future_uses_the_footer_rule)
{
    nv__tz *z;
    nv__tm tm;
    int32_t off;
    int isdst;

    cr_assert_eq(nv__tz_load("Australia/Lord_Howe", &z, NULL), NV_OK);
    /* 2200-01-15T00:00Z: summer, +11:00 */
    nv__tz_local(z, 7259328000000LL, &tm, &off, &isdst);
    cr_assert_eq(off, 11 * 3600);
    cr_assert(isdst);
    /* 2200-07-15T00:00Z: winter, +10:30 */
    nv__tz_local(z, 7274966400000LL, &tm, &off, &isdst);
    cr_assert_eq(off, 10 * 3600 + 1800);
    cr_assert_not(isdst);
    cr_assert_eq(tm.hour, 10);
    cr_assert_eq(tm.min, 30);
    nv__tz_free(z);
}

Test(tz, unknown_zone_is_refused_with_its_name)
{
    nv__tz *z = NULL;
    nv_error err;

    cr_assert_eq(nv__tz_load("Mars/Olympus_Mons", &z, &err), NV_EINVALID_TZ);
    cr_assert_str_eq(err.msg, "unknown time zone 'Mars/Olympus_Mons'");
    cr_assert_null(z);
    cr_assert_eq(nv__tz_load("", &z, &err), NV_EINVALID_TZ);
    /* a file in the database that is not a zone */
    cr_assert_eq(nv__tz_load("zone.tab", &z, &err), NV_EINVALID_TZ);
    cr_assert_eq(nv__tz_load("Europe", &z, &err), NV_EINVALID_TZ);
    /* leap-second zones are not POSIX time */
    if (access("/usr/share/zoneinfo/right/UTC", R_OK) == 0)
        cr_assert_eq(nv__tz_load("right/UTC", &z, &err), NV_EINVALID_TZ);
}

Test(tz, path_traversal_in_zone_names_is_refused)
{
    const char *bad[] = { "../../etc/passwd", "/etc/localtime", "Europe/../UTC",
                          "./UTC", "Europe//Berlin", "Europe/Berlin/", "UTC\n",
                          "Europe/Ber lin", "..", NULL };
    nv_error err;
    nv__tz *z;

    for (int i = 0; bad[i] != NULL; i++) {
        cr_assert_eq(nv__tz_load(bad[i], &z, &err), NV_EINVALID_TZ, "%s", bad[i]);
        cr_assert(strstr(err.msg, "time zone") != NULL);
    }
}

Test(tz, cache_returns_the_same_zone_object)
{
    nv__tz_cache *c;
    const nv__tz *a, *b;
    nv_error err;

    cr_assert_eq(nv__tz_cache_new(&c, NULL), NV_OK);
    cr_assert_eq(nv__tz_cache_get(c, "Asia/Kathmandu", &a, NULL), NV_OK);
    cr_assert_eq(nv__tz_cache_get(c, "Asia/Kathmandu", &b, NULL), NV_OK);
    cr_assert_eq(a, b);
    cr_assert_eq(nv__tz_offset(a, 1700000000), 5 * 3600 + 45 * 60);
    cr_assert_eq(nv__tz_cache_get(c, "Nowhere/Land", &b, &err), NV_EINVALID_TZ);
    nv__tz_cache_free(c);
}
