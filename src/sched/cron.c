/*
 * Cron parser and next-fire computation. Each field becomes a bit mask; the
 * next matching local time is found by skipping whole months, days, hours
 * and minutes that cannot match, never by stepping second by second. The
 * local time is then mapped to an instant by the zone (tz.c, CRON-7).
 */
#include "sched/cron.h"

#include <string.h>

#include "core/util.h"

struct field {
    const char         *name;
    int                 lo, hi;
    const char *const  *names;   /* names[i] stands for lo + i; NULL: none */
};

static const char *const month_names[] = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
    "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", NULL,
};
static const char *const day_names[] = {
    "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL,
};

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW };

static const struct field fields[] = {
    [F_SEC]  = { "second",       0, 59, NULL },
    [F_MIN]  = { "minute",       0, 59, NULL },
    [F_HOUR] = { "hour",         0, 23, NULL },
    [F_DOM]  = { "day of month", 1, 31, NULL },
    [F_MON]  = { "month",        1, 12, month_names },
    [F_DOW]  = { "day of week",  0, 7,  day_names },
};

static const struct macro {
    const char *name, *expr;
} macros[] = {
    { "@yearly",   "0 0 1 1 *" },
    { "@annually", "0 0 1 1 *" },
    { "@monthly",  "0 0 1 * *" },
    { "@weekly",   "0 0 * * 0" },
    { "@daily",    "0 0 * * *" },
    { "@midnight", "0 0 * * *" },
    { "@hourly",   "0 * * * *" },
};

/* ---- Parsing ---- */

static int
is_space(char c)
{
    return c == ' ' || c == '\t';
}

static int
is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Explain a token that is neither a number nor a known name. */
static int
bad_token(const struct field *f, const char *tok, nv_error *err)
{
    size_t len = strlen(tok);
    const char *p;

    if ((p = strpbrk(tok, "?#")) != NULL)
        return nv__error(err, NV_EINVALID_CRON, "%s: '%c' is not supported",
                         f->name, *p);
    if (len > 0 && (tok[len - 1] == 'L' || tok[len - 1] == 'W' ||
                    tok[len - 1] == 'l' || tok[len - 1] == 'w') &&
        (len == 1 || strspn(tok, "0123456789") >= len - 1 ||
         strcasecmp(tok, "LW") == 0))
        return nv__error(err, NV_EINVALID_CRON, "%s: '%s' is not supported",
                         f->name, tok);
    if (f->names != NULL && len > 0 && is_alpha(tok[0]))
        return nv__error(err, NV_EINVALID_CRON, "%s: unknown name '%s'",
                         f->name, tok);
    if (len == 0)
        return nv__error(err, NV_EINVALID_CRON, "%s: missing value", f->name);
    return nv__error(err, NV_EINVALID_CRON, "%s: invalid value '%s'", f->name,
                     tok);
}

/* A value: digits or a name of the field; range-checked. */
static int
parse_value(const struct field *f, const char *tok, int *out, nv_error *err)
{
    size_t len = strlen(tok);
    long v = 0;

    if (len > 0 && strspn(tok, "0123456789") == len) {
        for (size_t i = 0; i < len && v <= 1000000; i++)
            v = v * 10 + (tok[i] - '0');
        if (v < f->lo || v > f->hi)
            return nv__error(err, NV_EINVALID_CRON,
                             "%s: %s is out of range %d-%d", f->name, tok,
                             f->lo, f->hi);
        *out = (int)v;
        return NV_OK;
    }
    for (int i = 0; f->names != NULL && f->names[i] != NULL; i++) {
        if (strcasecmp(tok, f->names[i]) == 0) {
            *out = f->lo + i;
            return NV_OK;
        }
    }
    return bad_token(f, tok, err);
}

static int
parse_step(const struct field *f, const char *tok, int *out, nv_error *err)
{
    size_t len = strlen(tok);
    long v = 0;

    if (len == 0 || strspn(tok, "0123456789") != len)
        return nv__error(err, NV_EINVALID_CRON, "%s: invalid step '%s'",
                         f->name, tok);
    for (size_t i = 0; i < len && v <= 1000000; i++)
        v = v * 10 + (tok[i] - '0');
    if (v < 1)
        return nv__error(err, NV_EINVALID_CRON,
                         "%s: step %s must be at least 1", f->name, tok);
    *out = v > 1000000 ? 1000000 : (int)v;
    return NV_OK;
}

/*
 * One list item: '*', a value or a range 'a-b', optionally '/n'. The item
 * text is copied into a small buffer so it can be cut at '-' and '/'.
 */
static int
parse_item(const struct field *f, const char *item, size_t len,
           uint64_t *mask, nv_error *err)
{
    char buf[64], *slash, *dash;
    int lo = f->lo, hi = f->hi, step = 1, rc;

    if (len == 0)
        return nv__error(err, NV_EINVALID_CRON, "%s: empty list item", f->name);
    if (len >= sizeof(buf))
        return nv__error(err, NV_EINVALID_CRON, "%s: item too long", f->name);
    memcpy(buf, item, len);
    buf[len] = '\0';
    if ((slash = strchr(buf, '/')) != NULL) {
        *slash++ = '\0';
        if ((rc = parse_step(f, slash, &step, err)) != NV_OK)
            return rc;
    }
    if (strcmp(buf, "*") != 0) {
        /* a name never contains '-', so the first '-' splits a range */
        dash = strchr(buf, '-');
        if (dash != NULL)
            *dash++ = '\0';
        if ((rc = parse_value(f, buf, &lo, err)) != NV_OK)
            return rc;
        if (dash != NULL) {
            if ((rc = parse_value(f, dash, &hi, err)) != NV_OK)
                return rc;
            if (hi < lo)
                return nv__error(err, NV_EINVALID_CRON,
                                 "%s: range %s-%s is reversed", f->name, buf,
                                 dash);
        } else if (slash == NULL) {
            hi = lo;                    /* a single value */
        }
    }
    for (int v = lo; v <= hi; v += step)
        *mask |= (uint64_t)1 << v;
    return NV_OK;
}

static int
parse_field(int which, const char *text, uint64_t *mask, nv_error *err)
{
    const struct field *f = &fields[which];
    const char *p = text;
    int rc;

    *mask = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

        if ((rc = parse_item(f, p, len, mask, err)) != NV_OK)
            return rc;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (which == F_DOW && (*mask & (1u << 7)))
        *mask = (*mask & 0x7f) | 1;     /* 7 is Sunday too */
    return NV_OK;
}

/* Split 'expr' at spaces and tabs into at most 7 fields (copies). */
static int
split(const char *expr, char fieldv[7][128], int *n, nv_error *err)
{
    const char *p = expr;

    *n = 0;
    for (;;) {
        const char *s;

        while (is_space(*p))
            p++;
        if (*p == '\0')
            return NV_OK;
        s = p;
        while (*p != '\0' && !is_space(*p))
            p++;
        if (*n < 7) {
            if ((size_t)(p - s) >= sizeof(fieldv[0]))
                return nv__error(err, NV_EINVALID_CRON,
                                 "field %d is too long", *n + 1);
            memcpy(fieldv[*n], s, (size_t)(p - s));
            fieldv[*n][p - s] = '\0';
        }
        (*n)++;
    }
}

static const char *
expand_macro(const char *expr, nv_error *err)
{
    char name[32];
    size_t len;

    while (is_space(*expr))
        expr++;
    len = strlen(expr);
    while (len > 0 && is_space(expr[len - 1]))
        len--;
    if (len >= sizeof(name))
        len = sizeof(name) - 1;
    memcpy(name, expr, len);
    name[len] = '\0';
    for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
        if (strcasecmp(name, macros[i].name) == 0)
            return macros[i].expr;
    }
    nv__error(err, NV_EINVALID_CRON, "unknown macro '%s'", name);
    return NULL;
}

int
nv__cron_parse(const char *expr, nv__cron *out, nv_error *err)
{
    char fv[7][128];
    uint64_t masks[6];
    nv__cron c;
    int n, first, rc;

    if (expr == NULL)
        return nv__error(err, NV_EINVALID_CRON, "expression is empty");
    for (const char *p = expr; *p; p++) {
        if (is_space(*p))
            continue;
        if (*p == '@' && (expr = expand_macro(p, err)) == NULL)
            return NV_EINVALID_CRON;
        break;
    }
    if ((rc = split(expr, fv, &n, err)) != NV_OK)
        return rc;
    if (n == 0)
        return nv__error(err, NV_EINVALID_CRON, "expression is empty");
    if (n != 5 && n != 6)
        return nv__error(err, NV_EINVALID_CRON,
                         "expected 5 or 6 fields, got %d", n);
    first = n == 5 ? F_MIN : F_SEC;
    masks[F_SEC] = 1;
    for (int i = first; i <= F_DOW; i++) {
        if ((rc = parse_field(i, fv[i - first], &masks[i], err)) != NV_OK)
            return rc;
    }
    memset(&c, 0, sizeof(c));
    c.sec = masks[F_SEC];
    c.min = masks[F_MIN];
    c.hour = (uint32_t)masks[F_HOUR];
    c.dom = (uint32_t)masks[F_DOM];
    c.mon = (uint32_t)masks[F_MON];
    c.dow = (uint32_t)masks[F_DOW];
    c.dom_star = fv[F_DOM - first][0] == '*';
    c.dow_star = fv[F_DOW - first][0] == '*';
    *out = c;
    return NV_OK;
}

/* ---- Matching ---- */

static int
day_matches(const nv__cron *c, const nv__tm *tm)
{
    int dom = (c->dom >> tm->mday) & 1, dow = (c->dow >> tm->wday) & 1;

    /* CRON-4: both restricted -> either matches; else both must. */
    if (!c->dom_star && !c->dow_star)
        return dom || dow;
    return dom && dow;
}

int
nv__cron_matches(const nv__cron *c, const nv__tm *tm)
{
    return ((c->mon >> tm->mon) & 1) && day_matches(c, tm) &&
           ((c->hour >> tm->hour) & 1) && ((c->min >> tm->min) & 1) &&
           ((c->sec >> tm->sec) & 1);
}

/* Lowest set bit of 'mask' at or above 'from', or -1. */
static int
next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    mask &= ~(uint64_t)0 << from;
    return mask == 0 ? -1 : __builtin_ctzll(mask);
}

static int64_t
day_start(int64_t y, int m, int d)
{
    return nv__days_from_civil(y, m, d) * 86400;
}

int
nv__cron_next_local(const nv__cron *c, int64_t from, int64_t limit,
                    int64_t *out)
{
    int64_t s = from;
    nv__tm tm;

    while (s <= limit) {
        int v;

        nv__secs_to_tm(s, &tm);
        if (!((c->mon >> tm.mon) & 1)) {
            v = next_bit(c->mon, tm.mon);
            s = v < 0 ? day_start(tm.year + 1, next_bit(c->mon, 1), 1)
                      : day_start(tm.year, v, 1);
            continue;
        }
        if (!day_matches(c, &tm)) {
            s = day_start(tm.year, tm.mon, tm.mday) + 86400;
            continue;
        }
        if ((v = next_bit(c->hour, tm.hour)) != tm.hour) {
            s = day_start(tm.year, tm.mon, tm.mday) +
                (v < 0 ? 86400 : v * 3600);
            continue;
        }
        if ((v = next_bit(c->min, tm.min)) != tm.min) {
            s = s - tm.min * 60 - tm.sec + (v < 0 ? 3600 : v * 60);
            continue;
        }
        if ((v = next_bit(c->sec, tm.sec)) != tm.sec) {
            s = s - tm.sec + (v < 0 ? 60 : v);
            continue;
        }
        *out = s;
        return 0;
    }
    return -1;
}

int
nv__cron_next(const nv__cron *c, const nv__tz *z, int64_t after_ms,
              int64_t *next_ms, nv_error *err)
{
    /* Due instants are whole seconds: the first one > after_ms is the first
     * one > floor(after_ms / 1000). */
    int64_t after = after_ms >= 0 ? after_ms / 1000
                                  : -((-after_ms + 999) / 1000);
    int64_t l = after + nv__tz_offset(z, after), limit;
    nv__tm tm;

    nv__secs_to_tm(l, &tm);
    limit = day_start(tm.year + NV_CRON_HORIZON_YEARS, tm.mon,
                      tm.mon == 2 && tm.mday == 29 ? 28 : tm.mday) +
            tm.hour * 3600 + tm.min * 60 + tm.sec;
    /*
     * The map from a local due time to its fire instant (tz resolve) never
     * decreases, and local times before l fire at or before 'after', so the
     * first matching local time from l whose instant is > after is the one.
     */
    for (;;) {
        int64_t cand, t;

        if (nv__cron_next_local(c, l, limit, &cand) != 0)
            return nv__error(err, NV_EINVALID_CRON, "expression never matches");
        t = nv__tz_resolve(z, cand);
        if (t > after) {
            *next_ms = t * 1000;
            return NV_OK;
        }
        l = cand + 1;
        /* every due time in a gap maps to the gap's end: skip the gap */
        if (t + nv__tz_offset(z, t) > l)
            l = t + nv__tz_offset(z, t);
    }
}
