/*
 * nv__dump: compact JSON text without jansson's per-call cost (util.h).
 */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/*
 * Compact JSON text, byte for byte what json_dumps(JSON_COMPACT |
 * JSON_ENCODE_ANY) gives (keys in insertion order, the same escapes),
 * without its per-call loop-detection table: this runs for every event
 * and index entry written. Reals and very deep values go to jansson.
 */
struct jbuf {
    char  *s;
    size_t n, cap;
    int    bad;
};

static void
jb_put(struct jbuf *b, const char *p, size_t k)
{
    if (b->bad)
        return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        char *s;

        while (cap < b->n + k + 1)
            cap *= 2;
        s = nv__realloc(b->s, cap);
        if (s == NULL) {
            b->bad = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, k);
    b->n += k;
}

static void
jb_string(struct jbuf *b, const char *s, size_t len)
{
    size_t from = 0;

    jb_put(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        const char *t = esc;
        size_t k = 2;

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        jb_put(b, s + from, i - from);
        from = i + 1;
        switch (ch) {
        case '"':  t = "\\\""; break;
        case '\\': t = "\\\\"; break;
        case '\b': t = "\\b"; break;
        case '\f': t = "\\f"; break;
        case '\n': t = "\\n"; break;
        case '\r': t = "\\r"; break;
        case '\t': t = "\\t"; break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04X", ch);
            k = 6;
        }
        jb_put(b, t, k);
    }
    jb_put(b, s + from, len - from);
    jb_put(b, "\"", 1);
}

static void
jb_value(struct jbuf *b, const json_t *j, int depth)
{
    char num[32];

    if (b->bad)
        return;
    if (depth > 256) {
        b->bad = 2;         /* let jansson do it (and find any loop) */
        return;
    }
    switch (json_typeof(j)) {
    case JSON_NULL:
        jb_put(b, "null", 4);
        break;
    case JSON_TRUE:
        jb_put(b, "true", 4);
        break;
    case JSON_FALSE:
        jb_put(b, "false", 5);
        break;
    case JSON_INTEGER:
        jb_put(b, num, nv__fmt_i64(num, (int64_t)json_integer_value(j)));
        break;
    case JSON_STRING:
        jb_string(b, json_string_value(j), json_string_length(j));
        break;
    case JSON_ARRAY:
        jb_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i > 0)
                jb_put(b, ",", 1);
            jb_value(b, json_array_get(j, i), depth + 1);
        }
        jb_put(b, "]", 1);
        break;
    case JSON_OBJECT: {
        void *it = json_object_iter((json_t *)j);
        int first = 1;

        jb_put(b, "{", 1);
        for (; it != NULL; it = json_object_iter_next((json_t *)j, it)) {
            if (!first)
                jb_put(b, ",", 1);
            first = 0;
            jb_string(b, json_object_iter_key(it),
                      json_object_iter_key_len(it));
            jb_put(b, ":", 1);
            jb_value(b, json_object_iter_value(it), depth + 1);
        }
        jb_put(b, "}", 1);
        break;
    }
    default: {                  /* JSON_REAL: jansson's own formatting */
        char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

        if (t == NULL)
            b->bad = 1;
        else
            jb_put(b, t, strlen(t));
        free(t);
    }
    }
}

char *
nv__dump(const json_t *j)
{
    struct jbuf b = { 0 };

    if (j == NULL)
        return NULL;
    jb_value(&b, j, 0);
    if (b.bad == 0) {
        b.s[b.n] = '\0';
        return b.s;
    }
    nv__free(b.s);
    if (b.bad == 2) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        char *r = s != NULL ? nv__strdup(s) : NULL;

        free(s);
        return r;
    }
    return NULL;
}
