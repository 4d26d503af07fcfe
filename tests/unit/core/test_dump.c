/*
 * nv__dump (src/core/engine.c) writes compact JSON without jansson's
 * encoder on the hot path: its text must be exactly json_dumps(JSON_COMPACT
 * | JSON_ENCODE_ANY) of the same value, so stored events do not change.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

static void
same_as_jansson(json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *got = nv__dump(v);

    cr_assert_not_null(want);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want);
    free(want);
    nv__free(got);
    json_decref(v);
}

Test(dump, scalars_are_written_as_jansson_writes_them)
{
    same_as_jansson(json_null());
    same_as_jansson(json_true());
    same_as_jansson(json_false());
    same_as_jansson(json_integer(0));
    same_as_jansson(json_integer(-9223372036854775807LL - 1));
    same_as_jansson(json_integer(9223372036854775807LL));
    same_as_jansson(json_real(1.0));
    same_as_jansson(json_real(-0.1));
    same_as_jansson(json_real(1e300));
    same_as_jansson(json_string(""));
}

Test(dump, strings_get_the_same_escapes)
{
    same_as_jansson(json_string("a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f é ✓ 😀"));
    same_as_jansson(json_stringn("nul\0inside", 10));
}

Test(dump, nested_values_keep_key_order_and_have_no_spaces)
{
    json_t *v = json_loads("{\"z\":1,\"a\":[1,2.5,{\"k\":\"v\",\"\":null}],"
                           "\"m\":{},\"e\":[],\"key\\\"q\":true}", 0, NULL);

    cr_assert_not_null(v);
    same_as_jansson(v);
}

Test(dump, very_deep_values_are_still_written)
{
    json_t *v = json_array();

    for (int i = 0; i < 600; i++) {
        json_t *o = json_array();

        json_array_append_new(o, v);
        v = o;
    }
    same_as_jansson(v);
}
