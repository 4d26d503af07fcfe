/*
 * Step "ship" of the "orders" flow (C): runs once the order is priced,
 * reads the order back from run state and answers a tracking number.
 */
#include <nvent.h>
#include <stdio.h>
#include <string.h>

static const char *const flows[] = { "orders", NULL };
static const char *const subscribes[] = { "order.priced", NULL };

const nv_function_config nvent_config = {
    .abi = NV_ABI_VERSION,
    .worker = { .concurrency = NV_SOME(4) },
    .flow = { .name = flows, .subscribes = subscribes },
};

int nvent_handler(nv_ctx *ctx, const char *input, void *ud);

int
nvent_handler(nv_ctx *ctx, const char *input, void *ud)
{
    char *order = NULL, result[128];
    int rc;

    (void)input;
    (void)ud;
    rc = nv_ctx_state_get(ctx, "order", &order, NULL);
    if (rc != NV_OK || strcmp(order, "null") == 0) {
        nv_free(order);
        nv_ctx_fail(ctx, "the order is not in run state", NULL, 0);
        return rc != NV_OK ? rc : NV_ENOTFOUND;
    }
    nv_free(order);
    /* the run id makes a stable tracking number across retries */
    snprintf(result, sizeof(result), "{\"tracking\":\"NV-%.8s\"}", nv_ctx_flow_id(ctx));
    nv_ctx_log(ctx, "info", "parcel handed to the carrier", result, NULL);
    return nv_ctx_result(ctx, result, NULL);
}
