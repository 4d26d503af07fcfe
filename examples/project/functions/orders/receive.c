/*
 * Entry step of the "orders" flow, a C function (SPEC §10): nvent compiles
 * this file to .nvent/build/orders/receive.so and loads it. It checks the
 * order, keeps it in run state and emits "order.received" with its subtotal.
 */
// nvent:ldflags -ljansson
#include <jansson.h>
#include <nvent.h>
#include <stdlib.h>

static const char *const flows[] = { "orders", NULL };
static const char *const emits[] = { "order.received", NULL };

const nv_function_config nvent_config = {
    .abi = NV_ABI_VERSION,
    .queue = {
        .default_job_options =
            "{\"attempts\":3,\"backoff\":{\"type\":\"exponential\",\"delay\":500}}",
    },
    .flow = { .name = flows, .role = "entry", .emits = emits },
};

int nvent_handler(nv_ctx *ctx, const char *input, void *ud);

int
nvent_handler(nv_ctx *ctx, const char *input, void *ud)
{
    json_t *order = json_loads(input, 0, NULL), *items, *it, *ev;
    double subtotal = 0;
    char *payload, *result;
    size_t i;
    int rc;

    (void)ud;
    items = json_object_get(order, "items");
    if (!json_is_string(json_object_get(order, "id")) || !json_is_array(items) ||
        json_array_size(items) == 0) {
        json_decref(order);
        /* a bad order will not get better: no retries (W-6) */
        nv_ctx_fail(ctx, "an order needs a string \"id\" and a non-empty \"items\" array",
                    NULL, NV_FAIL_NO_RETRY);
        return NV_EINVAL;
    }
    json_array_foreach(items, i, it) {
        subtotal += json_number_value(json_object_get(it, "price")) *
                    (double)json_integer_value(json_object_get(it, "qty"));
    }
    nv_ctx_state_set(ctx, "order", input, 0, NULL);
    ev = json_pack("{s:O, s:f, s:i}", "id", json_object_get(order, "id"),
                   "subtotal", subtotal, "items", (int)json_array_size(items));
    payload = json_dumps(ev, JSON_COMPACT);
    nv_ctx_log(ctx, "info", "order received", payload, NULL);
    rc = nv_ctx_emit(ctx, "order.received", payload, NULL);
    result = payload;
    if (rc == NV_OK)
        rc = nv_ctx_result(ctx, result, NULL);
    free(payload);
    json_decref(ev);
    json_decref(order);
    return rc;
}
