/*
 * Internal helpers: allocation with a failure hook, error filling, clocks,
 * ids (UUIDv7, job ids) and name checks. See util.h.
 */
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- Allocation ---- */

static atomic_long fail_countdown;   /* 0: never fail; constant-free global
                                        state limited to a test hook */

void
nv__alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}

static int
should_fail(void)
{
    long v = atomic_load(&fail_countdown);

    while (v > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &v, v - 1))
            return v == 1;
    }
    return 0;
}

void *
nv__malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *
nv__calloc(size_t count, size_t n)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, n ? n : 1);
}

void *
nv__realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void
nv__free(void *p)
{
    free(p);
}

void
nv_free(void *p)
{
    free(p);
}

char *
nv__strndup(const char *s, size_t n)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = nv__malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *
nv__strdup(const char *s)
{
    return s == NULL ? NULL : nv__strndup(s, strlen(s));
}

char *
nv__asprintf(const char *fmt, ...)
{
    va_list ap;
    int n;
    char *s;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    s = nv__malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- Errors ---- */

int
nv__error(nv_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void
nv__error_clear(nv_error *err)
{
    if (err == NULL)
        return;
    err->code = NV_OK;
    err->msg[0] = '\0';
}

int
nv__strlcpy(char *dst, const char *src, size_t size)
{
    size_t n;

    if (size == 0)
        return -1;
    if (src == NULL)
        src = "";
    n = strlen(src);
    if (n >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* ---- Time ---- */

int64_t
nv__system_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
nv__monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
nv__iso_time(int64_t ms, char *buf, size_t size)
{
    time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int milli = (int)(ms - (int64_t)sec * 1000);
    struct tm tm;
    int64_t days = (int64_t)sec >= 0 ? (int64_t)sec / 86400
                                     : ((int64_t)sec - 86399) / 86400;
    int64_t sod = (int64_t)sec - days * 86400;

    /* Civil date from days since 1970-01-01 (H. Hinnant's algorithm):
     * no gmtime_r, which takes glibc's time zone lock, and no printf. */
    {
        int64_t z = days + 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int64_t d = doy - (153 * mp + 2) / 5 + 1;
        int64_t m = mp < 10 ? mp + 3 : mp - 9;
        int64_t y = yoe + era * 400 + (m <= 2);
        int v[7] = { (int)y, (int)m, (int)d, (int)(sod / 3600),
                     (int)(sod / 60 % 60), (int)(sod % 60), milli };

        if (y >= 0 && y <= 9999 && size >= 25) {
            static const char pat[] = "0000-00-00T00:00:00.000Z";
            static const int at[7] = { 3, 6, 9, 12, 15, 18, 22 };

            memcpy(buf, pat, sizeof(pat));
            for (int i = 0; i < 7; i++) {
                for (int k = at[i], x = v[i]; x > 0; k--, x /= 10)
                    buf[k] = (char)('0' + x % 10);
            }
            return;
        }
    }
    gmtime_r(&sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, milli);
}

void
nv__timespec_after(clockid_t clk, int64_t ns, struct timespec *out)
{
    clock_gettime(clk, out);
    if (ns < 0)
        ns = 0;
    out->tv_sec += (time_t)(ns / 1000000000LL);
    out->tv_nsec += (long)(ns % 1000000000LL);
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

int
nv__parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (s == NULL)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

void
nv__sleep_ms(int64_t ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- Ids ---- */

/*
 * Random bytes for ids and lease tokens. These need to be unpredictable
 * enough not to collide, not secret, so a per-thread xoshiro256** seeded
 * once from getrandom() serves them without a system call per job (a
 * getrandom() per enqueue was a visible share of the hot path).
 */
static _Thread_local uint64_t rng_state[4];
static _Thread_local int rng_seeded;

static void
os_random(void *buf, size_t n)
{
    unsigned char *p = buf;

    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* Cannot happen on Linux >= 3.17; degrade rather than abort. */
            uint64_t x = (uint64_t)nv__monotonic_ms() ^
                         ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)p;

            for (size_t i = 0; i < n; i++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                p[i] = (unsigned char)(x >> 56);
            }
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* A forked child must not repeat its parent's sequence. */
static void
rng_after_fork(void)
{
    rng_seeded = 0;
}

static pthread_once_t rng_once = PTHREAD_ONCE_INIT;

static void
rng_register_fork(void)
{
    pthread_atfork(NULL, NULL, rng_after_fork);
}

static uint64_t
rng_next(void)
{
    uint64_t *s = rng_state;
    uint64_t result, t;

    if (!rng_seeded) {
        pthread_once(&rng_once, rng_register_fork);
        do
            os_random(rng_state, sizeof(rng_state));
        while ((s[0] | s[1] | s[2] | s[3]) == 0);
        rng_seeded = 1;
    }
    result = rotl(s[1] * 5, 7) * 9;
    t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void
nv__random(void *buf, size_t n)
{
    unsigned char *p = buf;

    while (n > 0) {
        uint64_t v = rng_next();
        size_t k = n < sizeof(v) ? n : sizeof(v);

        memcpy(p, &v, k);
        p += k;
        n -= k;
    }
}

double
nv__random_unit(void)
{
    uint64_t v;

    nv__random(&v, sizeof(v));
    return (double)(v >> 11) * (1.0 / 9007199254740992.0);
}

static pthread_mutex_t uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t uuid_last_ms;
static uint16_t uuid_last_seq;

/* Layout (RFC 9562): 48-bit ms, version 7, 12 bits 'seq', variant 10,
 * the rest of 'b' as it is. */
static void
uuid_text(unsigned char b[16], int64_t ms, uint16_t seq, char out[NV_ID_MAX])
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;

    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((seq >> 8) & 0x0f));
    b[7] = (unsigned char)(seq & 0xff);
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[b[i] >> 4];
        out[k++] = hex[b[i] & 0x0f];
    }
    out[k] = '\0';
}

void
nv__uuidv7(int64_t ms, char out[NV_ID_MAX])
{
    unsigned char b[16];
    uint16_t seq;

    nv__random(b, sizeof(b));
    /* 12 bits after the version hold a counter so ids made by this process
     * in one millisecond still sort in creation order (N-2). */
    pthread_mutex_lock(&uuid_lock);
    if (ms <= uuid_last_ms) {
        ms = uuid_last_ms;
        seq = (uint16_t)(uuid_last_seq + 1);
        if (seq > 0x0fff) {
            ms++;
            seq = 0;
        }
    } else {
        seq = (uint16_t)((b[6] << 8 | b[7]) & 0x03ff);
    }
    uuid_last_ms = ms;
    uuid_last_seq = seq;
    pthread_mutex_unlock(&uuid_lock);

    uuid_text(b, ms, seq, out);
}

void
nv__uuidv7_of(int64_t ms, const char *key, char out[NV_ID_MAX])
{
    unsigned char b[16];
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;

    /* two FNV-1a hashes, then a splitmix64 finish for every bit */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h1 = (h1 ^ *p) * 0x100000001b3ULL;
        h2 = (h2 ^ *p) * 0x100000001b3ULL ^ (h2 >> 29);
    }
    for (int r = 0; r < 2; r++) {
        uint64_t *h = r == 0 ? &h1 : &h2;

        *h = (*h ^ (*h >> 30)) * 0xbf58476d1ce4e5b9ULL;
        *h = (*h ^ (*h >> 27)) * 0x94d049bb133111ebULL;
        *h ^= *h >> 31;
    }
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(h1 >> (8 * i));
        b[8 + i] = (unsigned char)(h2 >> (8 * i));
    }
    uuid_text(b, ms, (uint16_t)(h1 >> 52), out);
}

size_t
nv__fmt_i64(char *out, int64_t v)
{
    static const char pairs[201] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, t = u;
    size_t n = 1, k;

    /* the digits counted first, then written from the end two at a time
     * (every command's argument lengths go through here) */
    while (t >= 10) {
        t /= 10;
        n++;
    }
    if (v < 0)
        *out++ = '-';
    out[n] = '\0';
    for (k = n; u >= 100; u /= 100) {
        k -= 2;
        memcpy(out + k, pairs + 2 * (u % 100), 2);
    }
    if (u >= 10)
        memcpy(out + k - 2, pairs + 2 * u, 2);
    else
        out[k - 1] = (char)('0' + u);
    return n + (v < 0);
}

void
nv__job_id(int64_t ms, char out[NV_JOB_ID_MAX])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char r[9];
    char tail[10];
    size_t n;

    nv__random(r, sizeof(r));
    for (int i = 0; i < 9; i++)
        tail[i] = digits[r[i] % 36];
    tail[9] = '\0';
    n = nv__fmt_i64(out, ms);
    out[n++] = '-';
    memcpy(out + n, tail, 10);
}

/* ---- Names ---- */

static int
name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int
nv__valid_name(const char *s)
{
    size_t n;

    if (s == NULL || s[0] == '\0')
        return 0;
    if (!name_char((unsigned char)s[0]) || s[0] == '.' || s[0] == '_' ||
        s[0] == '-')
        return 0;
    for (n = 1; s[n] != '\0'; n++) {
        if (n >= NV_NAME_MAX || !name_char((unsigned char)s[n]))
            return 0;
    }
    return 1;
}

/* Length of the UTF-8 sequence at p (1..4), or 0 when invalid. */
static size_t
utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

int
nv__valid_key(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t total = 0;

    if (s == NULL || s[0] == '\0')
        return 0;
    while (*p != '\0') {
        size_t n = utf8_len(p);

        if (n == 0 || *p < 0x20 || *p == 0x7f)
            return 0;
        /* C1 control characters U+0080..U+009F */
        if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
            return 0;
        p += n;
        total += n;
        if (total > 256)
            return 0;
    }
    return 1;
}

/* ---- Event ids ---- */

int
nv__event_id_parse(const char *id, int64_t *ms, int64_t *seq)
{
    char *end;
    long long a, b;

    if (id == NULL || *id < '0' || *id > '9')
        return -1;
    errno = 0;
    a = strtoll(id, &end, 10);
    if (errno != 0 || *end != '-' || end[1] < '0' || end[1] > '9')
        return -1;
    b = strtoll(end + 1, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *ms = a;
    *seq = b;
    return 0;
}

int
nv__event_id_cmp(const char *a, const char *b)
{
    int64_t am, as, bm, bs;
    int va = nv__event_id_parse(a, &am, &as) == 0;
    int vb = nv__event_id_parse(b, &bm, &bs) == 0;

    if (!va || !vb)
        return va - vb;
    if (am != bm)
        return am < bm ? -1 : 1;
    if (as != bs)
        return as < bs ? -1 : 1;
    return 0;
}
