/*
 * CLI output and argument helpers: error lines (CLI-3), aligned tables
 * (CLI-5), JSON arguments read from the command line or stdin (CLI-6).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int
cli_error(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "nvent: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return CLI_FAIL;
}

int
cli_api_error(int status, const char *body)
{
    json_t *doc = json_loads(body != NULL ? body : "", 0, NULL);
    const char *msg = json_string_value(json_object_get(doc, "message"));
    const char *code = json_string_value(json_object_get(doc, "error"));

    if (msg != NULL && code != NULL)
        cli_error("%s [%s]", msg, code);
    else
        cli_error("unexpected answer from the server (HTTP %d)", status);
    json_decref(doc);
    return CLI_FAIL;
}

void
cli_print_body(const char *body)
{
    size_t n = strlen(body);

    fputs(body, stdout);
    if (n == 0 || body[n - 1] != '\n')
        fputc('\n', stdout);
}

int
cli_int_flag(struct cli *c, const char *name, long lo, long hi, long def,
             long *out)
{
    const char *v = cli_flag(c, name);
    char *end;
    long n;

    if (v == NULL) {
        *out = def;
        return CLI_OK;
    }
    n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < lo || n > hi)
        return cli_usage(c, "--%s: expected an integer from %ld to %ld", name,
                         lo, hi);
    *out = n;
    return CLI_OK;
}

static char *
read_stdin(void)
{
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);

    while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *b = realloc(buf, cap * 2);

            if (b == NULL) {
                free(buf);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
    }
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

char *
cli_json_arg(struct cli *c, const char *arg, const char *what)
{
    char *text = strcmp(arg, "-") == 0 ? read_stdin() : strdup(arg);
    json_error_t je;
    json_t *doc;

    if (text == NULL) {
        cli_error("out of memory");
        return NULL;
    }
    doc = json_loads(text, JSON_DECODE_ANY, &je);
    if (doc == NULL) {
        cli_usage(c, "%s: malformed JSON: %s", what, je.text);
        free(text);
        return NULL;
    }
    json_decref(doc);
    return text;
}

/* ---- Tables ---- */

void
cli_table_init(struct cli_table *t, int ncols)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
}

void
cli_table_add(struct cli_table *t, ...)
{
    va_list ap;

    if ((t->nrows + 1) * t->ncols > t->cap) {
        int cap = t->cap ? t->cap * 2 : t->ncols * 16;
        char **c = realloc(t->cells, (size_t)cap * sizeof(*c));

        if (c == NULL)
            return;
        t->cells = c;
        t->cap = cap;
    }
    va_start(ap, t);
    for (int i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);

        t->cells[t->nrows * t->ncols + i] = strdup(s != NULL ? s : "");
    }
    va_end(ap);
    t->nrows++;
}

void
cli_table_print(struct cli_table *t)
{
    int width[16] = {0};

    for (int r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols && i < 16; i++) {
            int w = (int)strlen(t->cells[r * t->ncols + i]);

            if (w > width[i])
                width[i] = w;
        }
    }
    for (int r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];

            if (i == t->ncols - 1)
                printf("%s\n", s);
            else
                printf("%-*s  ", width[i < 16 ? i : 15], s);
            free((char *)s);
        }
    }
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

const char *
cli_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

char *
cli_num(json_t *o, const char *key)
{
    static char buf[8][32];
    static int next;
    json_t *v = json_object_get(o, key);
    char *b = buf[next++ % 8];

    if (json_is_integer(v))
        snprintf(b, 32, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(b, 32, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(b, 32, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(b, 32, "-");
    return b;
}
