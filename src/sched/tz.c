/*
 * Time-zone conversion from the system tz database without touching TZ or
 * tzset(): TZif files (RFC 8536, versions 1 to 4) are parsed into a table of
 * transitions plus the POSIX TZ footer rule that governs instants after the
 * last transition. See tz.h.
 */
#include "sched/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_MAX_FILE    (1 << 20)
#define TZ_NAME_MAX    255
/* Offsets in TZif files are within +-26 h; windows below must cover them. */
#define TZ_WINDOW      (30 * 3600)

/* A POSIX TZ rule date: Jn, n, or Mm.w.d; plus a time of day (seconds). */
struct rule_date {
    char    kind;       /* 'J', 'N' (zero-based day), 'M' */
    int     n, m, w, d;
    int32_t time;       /* -167h..167h (RFC 8536 extension) */
};

/* The footer "std offset [dst [offset] [,start[/time],end[/time]]]". */
struct rule {
    int32_t std_off;    /* east positive */
    int32_t dst_off;
    int     has_dst;
    struct rule_date start, end;
};

struct ttinfo {
    int32_t off;        /* east positive */
    uint8_t isdst;
};

struct nv__tz {
    char          *name;
    int64_t       *trans;   /* ascending transition instants */
    uint8_t       *idx;     /* type index of each transition */
    size_t         ntrans;
    struct ttinfo *types;
    size_t         ntypes;
    int            has_rule;
    struct rule    rule;
};

/* ---- Civil calendar (Howard Hinnant's days_from_civil) ---- */

static int
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int
nv__days_in_month(int64_t y, int m)
{
    static const int dm[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

    return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}

int64_t
nv__days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t
floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void
nv__civil_from_days(int64_t z, nv__tm *out)
{
    int64_t era, doe, yoe, y, doy, mp, d, m;

    out->wday = (int)(((z % 7) + 11) % 7);      /* 1970-01-01 was a Thursday */
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    out->year = y + (m <= 2);
    out->mon = (int)m;
    out->mday = (int)d;
    out->yday = (int)(z - 719468 - nv__days_from_civil(out->year, 1, 1));
}

int64_t
nv__tm_to_secs(const nv__tm *t)
{
    return nv__days_from_civil(t->year, t->mon, t->mday) * 86400
           + t->hour * 3600 + t->min * 60 + t->sec;
}

void
nv__secs_to_tm(int64_t s, nv__tm *out)
{
    int64_t days = floordiv(s, 86400), rem = s - days * 86400;

    nv__civil_from_days(days, out);
    out->hour = (int)(rem / 3600);
    out->min = (int)(rem / 60 % 60);
    out->sec = (int)(rem % 60);
}

/* ---- POSIX TZ footer rules ---- */

/* Zone abbreviation: <...> quoted, or three or more letters. */
static const char *
parse_abbr(const char *p)
{
    const char *s = p;

    if (*p == '<') {
        while (*p && *p != '>')
            p++;
        return *p == '>' && p - s > 1 ? p + 1 : NULL;
    }
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] with hh up to max_h; seconds into *out. */
static const char *
parse_hms(const char *p, int max_h, int32_t *out)
{
    int sign = 1, part = 0;
    int32_t v[3] = { 0, 0, 0 };

    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    for (;;) {
        int digits = 0;

        if (*p < '0' || *p > '9')
            return NULL;
        while (*p >= '0' && *p <= '9' && digits < 3) {
            v[part] = v[part] * 10 + (*p++ - '0');
            digits++;
        }
        if (++part == 3 || *p != ':')
            break;
        p++;
    }
    if (v[0] > max_h || v[1] > 59 || v[2] > 59)
        return NULL;
    *out = sign * (v[0] * 3600 + v[1] * 60 + v[2]);
    return p;
}

static const char *
parse_num(const char *p, int lo, int hi, int *out)
{
    int v = 0, digits = 0;

    while (*p >= '0' && *p <= '9' && digits < 4) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || v < lo || v > hi)
        return NULL;
    *out = v;
    return p;
}

static const char *
parse_rule_date(const char *p, struct rule_date *r)
{
    if (*p == 'J') {
        r->kind = 'J';
        p = parse_num(p + 1, 1, 365, &r->n);
    } else if (*p == 'M') {
        r->kind = 'M';
        p = parse_num(p + 1, 1, 12, &r->m);
        if (p == NULL || *p++ != '.')
            return NULL;
        p = parse_num(p, 1, 5, &r->w);
        if (p == NULL || *p++ != '.')
            return NULL;
        p = parse_num(p, 0, 6, &r->d);
    } else {
        r->kind = 'N';
        p = parse_num(p, 0, 365, &r->n);
    }
    if (p == NULL)
        return NULL;
    r->time = 2 * 3600;
    if (*p == '/')
        p = parse_hms(p + 1, 167, &r->time);
    return p;
}

/* Parse a TZ string; returns 0 on success. */
static int
parse_rule(const char *s, struct rule *r)
{
    const char *p = parse_abbr(s);
    int32_t off;

    memset(r, 0, sizeof(*r));
    if (p == NULL || (p = parse_hms(p, 24, &off)) == NULL)
        return -1;
    r->std_off = -off;
    if (*p == '\0')
        return 0;
    if ((p = parse_abbr(p)) == NULL)
        return -1;
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (*p != ',' && *p != '\0') {
        if ((p = parse_hms(p, 24, &off)) == NULL)
            return -1;
        r->dst_off = -off;
    }
    if (*p == '\0') {
        /* POSIX leaves the default rule to the implementation; this is the
         * US rule glibc uses. TZif footers always carry a rule. */
        p = "M3.2.0,M11.1.0";
    } else if (*p++ != ',') {
        return -1;
    }
    if ((p = parse_rule_date(p, &r->start)) == NULL || *p++ != ',')
        return -1;
    if ((p = parse_rule_date(p, &r->end)) == NULL || *p != '\0')
        return -1;
    return 0;
}

/* Local seconds (since 1970, local civil time) of a rule date in year y. */
static int64_t
rule_local(const struct rule_date *r, int64_t y)
{
    int64_t days = nv__days_from_civil(y, 1, 1);

    if (r->kind == 'J') {
        days += r->n - 1 + (is_leap(y) && r->n >= 60);
    } else if (r->kind == 'N') {
        days += r->n;
    } else {
        int64_t first = nv__days_from_civil(y, r->m, 1);
        int wd1 = (int)(((first % 7) + 11) % 7);
        int day = 1 + (r->d - wd1 + 7) % 7 + (r->w - 1) * 7;

        while (day > nv__days_in_month(y, r->m))
            day -= 7;
        days = first + day - 1;
    }
    return days * 86400 + r->time;
}

/* DST start and end instants (UTC seconds) of rule year y. */
static void
rule_year(const struct rule *r, int64_t y, int64_t *start, int64_t *end)
{
    *start = rule_local(&r->start, y) - r->std_off;
    *end = rule_local(&r->end, y) - r->dst_off;
}

static int64_t
rule_year_of(const struct rule *r, int64_t t)
{
    nv__tm tm;

    nv__civil_from_days(floordiv(t + r->std_off, 86400), &tm);
    return tm.year;
}

static int
rule_isdst(const struct rule *r, int64_t t)
{
    int64_t s, e;

    if (!r->has_dst)
        return 0;
    rule_year(r, rule_year_of(r, t), &s, &e);
    if (s < e)
        return t >= s && t < e;
    return t < e || t >= s;     /* southern hemisphere */
}

/* Smallest rule transition instant > t. */
static int64_t
rule_next(const struct rule *r, int64_t t)
{
    int64_t y = rule_year_of(r, t), best = INT64_MAX;

    if (!r->has_dst)
        return INT64_MAX;
    for (int64_t k = y - 1; k <= y + 1; k++) {
        int64_t s, e;

        rule_year(r, k, &s, &e);
        if (s > t && s < best)
            best = s;
        if (e > t && e < best)
            best = e;
    }
    return best;
}

/* ---- Lookups ---- */

/* Index of the last transition <= t, or -1 when t is before the first. */
static ptrdiff_t
trans_find(const nv__tz *z, int64_t t)
{
    size_t lo = 0, hi = z->ntrans;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (z->trans[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (ptrdiff_t)lo - 1;
}

static int
uses_rule(const nv__tz *z, int64_t t)
{
    return z->has_rule && (z->ntrans == 0 || t >= z->trans[z->ntrans - 1]);
}

static struct ttinfo
info_at(const nv__tz *z, int64_t t)
{
    struct ttinfo ti;
    ptrdiff_t i;

    if (uses_rule(z, t)) {
        ti.isdst = (uint8_t)rule_isdst(&z->rule, t);
        ti.off = ti.isdst ? z->rule.dst_off : z->rule.std_off;
        return ti;
    }
    i = trans_find(z, t);
    /* RFC 8536 3.2: before the first transition, type 0 applies. */
    return z->types[i < 0 ? 0 : z->idx[i]];
}

int32_t
nv__tz_offset(const nv__tz *z, int64_t utc_s)
{
    return info_at(z, utc_s).off;
}

/* Smallest instant > t where the offset may change, or INT64_MAX. */
static int64_t
next_change(const nv__tz *z, int64_t t)
{
    ptrdiff_t i;

    if (uses_rule(z, t))
        return rule_next(&z->rule, t);
    i = trans_find(z, t);
    if ((size_t)(i + 1) < z->ntrans)
        return z->trans[i + 1];
    return INT64_MAX;
}

void
nv__tz_local(const nv__tz *z, int64_t utc_ms, nv__tm *out, int32_t *offset_s,
             int *isdst)
{
    int64_t s = floordiv(utc_ms, 1000);
    struct ttinfo ti = info_at(z, s);

    nv__secs_to_tm(s + ti.off, out);
    if (offset_s != NULL)
        *offset_s = ti.off;
    if (isdst != NULL)
        *isdst = ti.isdst;
}

/*
 * Walk the segments of constant offset that cover the UTC window around
 * local time 'l' ([l - TZ_WINDOW, l + TZ_WINDOW]) in order, calling 'fn' on
 * each; a non-zero return stops the walk.
 */
typedef int (*segment_fn)(void *ud, int64_t start, int64_t end, int32_t off);

static void
walk_segments(const nv__tz *z, int64_t l, segment_fn fn, void *ud)
{
    int64_t t = l - TZ_WINDOW, stop = l + TZ_WINDOW;
    int64_t start = INT64_MIN;

    while (t <= stop) {
        int64_t next = next_change(z, t);

        if (fn(ud, start, next, nv__tz_offset(z, t)))
            return;
        if (next == INT64_MAX)
            return;
        start = t = next;
    }
}

struct from_local {
    int64_t  l;
    int64_t *out;
    int      max, n;
};

static int
collect_match(void *ud, int64_t start, int64_t end, int32_t off)
{
    struct from_local *f = ud;
    int64_t t = f->l - off;

    if (t >= start && t < end) {
        if (f->n < f->max)
            f->out[f->n] = t;
        f->n++;
    }
    return 0;
}

int
nv__tz_from_local(const nv__tz *z, const nv__tm *local, int64_t *out, int max)
{
    struct from_local f = { nv__tm_to_secs(local), out, max, 0 };

    walk_segments(z, f.l, collect_match, &f);
    return f.n;
}

struct resolve {
    int64_t l, t;
};

static int
resolve_segment(void *ud, int64_t start, int64_t end, int32_t off)
{
    struct resolve *r = ud;
    int64_t t = r->l - off;

    if (t >= start && t < end) {
        r->t = t;               /* first occurrence */
        return 1;
    }
    if (t < start) {
        r->t = start;           /* the segment starts past l: a gap */
        return 1;
    }
    return 0;
}

int64_t
nv__tz_resolve(const nv__tz *z, int64_t local_s)
{
    struct resolve r = { local_s, INT64_MAX };

    walk_segments(z, local_s, resolve_segment, &r);
    return r.t;
}

/* ---- Loading TZif files ---- */

static int
valid_zone_name(const char *name)
{
    size_t len = strlen(name);
    const char *comp = name;

    if (len == 0 || len > TZ_NAME_MAX || name[0] == '/')
        return 0;
    for (const char *p = name;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t cl = (size_t)(p - comp);

            if (cl == 0 || (cl == 1 && comp[0] == '.') ||
                (cl == 2 && comp[0] == '.' && comp[1] == '.'))
                return 0;
            if (*p == '\0')
                return 1;
            comp = p + 1;
            continue;
        }
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
              *p == '+' || *p == '.'))
            return 0;
    }
}

static int
read_file(const char *path, unsigned char **buf, size_t *len)
{
    struct stat st;
    unsigned char *b;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TZ_MAX_FILE ||
        (b = nv__malloc((size_t)st.st_size + 1)) == NULL) {
        close(fd);
        return -1;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    b[got] = '\0';
    *buf = b;
    *len = got;
    return 0;
}

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct header {
    uint32_t isut, isstd, leap, time, type, chr;
};

static int
read_header(const unsigned char *p, size_t len, struct header *h, int *version,
            int check)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return -1;
    *version = p[4] == 0 ? 1 : p[4] - '0';
    h->isut = be32(p + 20);
    h->isstd = be32(p + 24);
    h->leap = be32(p + 28);
    h->time = be32(p + 32);
    h->type = be32(p + 36);
    h->chr = be32(p + 40);
    if (!check)
        return h->time > 100000 || h->leap > 100000 ? -1 : 0;
    if (h->type == 0 || h->type > 256 || h->chr == 0 || h->time > 100000 ||
        h->leap > 100000 || (h->isut != 0 && h->isut != h->type) ||
        (h->isstd != 0 && h->isstd != h->type))
        return -1;
    return 0;
}

static size_t
block_size(const struct header *h, int tsize)
{
    return (size_t)h->time * (tsize + 1) + (size_t)h->type * 6 + h->chr +
           (size_t)h->leap * (tsize + 4) + h->isstd + h->isut;
}

/* Parse the data block at p (time size 4 or 8) into z. */
static int
read_block(nv__tz *z, const struct header *h, const unsigned char *p, int tsize)
{
    const unsigned char *ip = p + (size_t)h->time * tsize;
    const unsigned char *tp = ip + h->time;

    z->ntrans = h->time;
    z->ntypes = h->type;
    z->trans = nv__calloc(h->time + 1, sizeof(*z->trans));
    z->idx = nv__calloc(h->time + 1, 1);
    z->types = nv__calloc(h->type, sizeof(*z->types));
    if (z->trans == NULL || z->idx == NULL || z->types == NULL)
        return NV_ENOMEM;
    for (uint32_t i = 0; i < h->time; i++) {
        z->trans[i] = tsize == 8 ? be64(p + 8 * i) : (int32_t)be32(p + 4 * i);
        z->idx[i] = ip[i];
        if (ip[i] >= h->type || (i > 0 && z->trans[i] <= z->trans[i - 1]))
            return NV_EINVALID_TZ;
    }
    for (uint32_t i = 0; i < h->type; i++) {
        int32_t off = (int32_t)be32(tp + 6 * i);

        if (off < -89999 || off > 93599 || tp[6 * i + 4] > 1)
            return NV_EINVALID_TZ;
        z->types[i].off = off;
        z->types[i].isdst = tp[6 * i + 4];
    }
    return NV_OK;
}

static int
parse_tzif(nv__tz *z, const unsigned char *b, size_t len)
{
    struct header h;
    int version, rc;
    size_t need;

    /* The 32-bit block of a version 2+ file may be minimal ("slim"). */
    if (read_header(b, len, &h, &version, 0) != 0 ||
        (version < 2 && read_header(b, len, &h, &version, 1) != 0))
        return NV_EINVALID_TZ;
    need = 44 + block_size(&h, 4);
    if (need > len)
        return NV_EINVALID_TZ;
    if (version < 2)
        return h.leap > 0 ? NV_EINVALID_TZ : read_block(z, &h, b + 44, 4);

    /* Version 2+: skip the 32-bit block, use the 64-bit one and the footer. */
    b += need;
    len -= need;
    if (read_header(b, len, &h, &version, 1) != 0)
        return NV_EINVALID_TZ;
    need = 44 + block_size(&h, 8);
    if (need > len)
        return NV_EINVALID_TZ;
    /* "right/" zones count leap seconds in their transition times, which
     * POSIX time (and this reader) does not: refuse them */
    if (h.leap > 0)
        return NV_EINVALID_TZ;
    rc = read_block(z, &h, b + 44, 8);
    if (rc != NV_OK)
        return rc;
    b += need;
    len -= need;
    if (len >= 2 && b[0] == '\n') {
        const unsigned char *nl = memchr(b + 1, '\n', len - 1);
        char footer[128];
        size_t flen;

        if (nl == NULL || (flen = (size_t)(nl - b - 1)) >= sizeof(footer))
            return NV_EINVALID_TZ;
        memcpy(footer, b + 1, flen);
        footer[flen] = '\0';
        if (flen > 0) {
            if (parse_rule(footer, &z->rule) != 0)
                return NV_EINVALID_TZ;
            z->has_rule = 1;
        }
    }
    return NV_OK;
}

void
nv__tz_free(nv__tz *z)
{
    if (z == NULL)
        return;
    nv__free(z->name);
    nv__free(z->trans);
    nv__free(z->idx);
    nv__free(z->types);
    nv__free(z);
}

const char *
nv__tz_name(const nv__tz *z)
{
    return z->name;
}

/* UTC without a zone file (a system without tzdata still knows UTC). */
static int
load_utc(nv__tz *z)
{
    z->types = nv__calloc(1, sizeof(*z->types));
    return z->types == NULL ? NV_ENOMEM : (z->ntypes = 1, NV_OK);
}

int
nv__tz_load(const char *name, nv__tz **out, nv_error *err)
{
    const char *dir = getenv("TZDIR");
    unsigned char *buf = NULL;
    size_t len = 0;
    nv__tz *z;
    char *path;
    int rc;

    if (name == NULL || !valid_zone_name(name))
        return nv__error(err, NV_EINVALID_TZ, "invalid time zone name '%s'",
                         name == NULL ? "" : name);
    if (dir == NULL || dir[0] == '\0')
        dir = TZ_DEFAULT_DIR;
    z = nv__calloc(1, sizeof(*z));
    path = nv__asprintf("%s/%s", dir, name);
    if (z == NULL || path == NULL || (z->name = nv__strdup(name)) == NULL) {
        nv__free(path);
        nv__tz_free(z);
        return nv__error(err, NV_ENOMEM, "time zone: out of memory");
    }
    if (read_file(path, &buf, &len) != 0) {
        rc = strcmp(name, "UTC") == 0 ? load_utc(z) : NV_EINVALID_TZ;
    } else {
        rc = parse_tzif(z, buf, len);
    }
    nv__free(buf);
    nv__free(path);
    if (rc != NV_OK) {
        nv__tz_free(z);
        if (rc == NV_ENOMEM)
            return nv__error(err, rc, "time zone: out of memory");
        return nv__error(err, rc, "unknown time zone '%s'", name);
    }
    *out = z;
    return NV_OK;
}

/* ---- Cache ---- */

struct nv__tz_cache {
    pthread_mutex_t lock;   /* guards zones, n */
    nv__tz        **zones;
    size_t          n;
};

int
nv__tz_cache_new(nv__tz_cache **out, nv_error *err)
{
    nv__tz_cache *c = nv__calloc(1, sizeof(*c));

    if (c == NULL)
        return nv__error(err, NV_ENOMEM, "time zone cache: out of memory");
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return NV_OK;
}

void
nv__tz_cache_free(nv__tz_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        nv__tz_free(c->zones[i]);
    nv__free(c->zones);
    pthread_mutex_destroy(&c->lock);
    nv__free(c);
}

int
nv__tz_cache_get(nv__tz_cache *c, const char *name, const nv__tz **out,
                 nv_error *err)
{
    nv__tz *z, **grown;
    int rc = NV_OK;

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->zones[i]->name, name) == 0) {
            *out = c->zones[i];
            goto done;
        }
    }
    rc = nv__tz_load(name, &z, err);
    if (rc != NV_OK)
        goto done;
    grown = nv__realloc(c->zones, (c->n + 1) * sizeof(*grown));
    if (grown == NULL) {
        nv__tz_free(z);
        rc = nv__error(err, NV_ENOMEM, "time zone cache: out of memory");
        goto done;
    }
    c->zones = grown;
    c->zones[c->n++] = z;
    *out = z;
done:
    pthread_mutex_unlock(&c->lock);
    return rc;
}
