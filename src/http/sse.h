/*
 * Live streams (SSE-1..SSE-4) on libmicrohttpd: one libnvent live
 * subscription per server feeds the per-instance ring buffer of the global
 * stream and every open run stream. Connections wait suspended and are
 * resumed when they have something to send.
 */
#ifndef NV_HTTP_SSE_H
#define NV_HTTP_SSE_H

#include <microhttpd.h>
#include <stdint.h>

#include "http/http.h"

#define SSE_RING_SIZE 1000

struct sse_hub;

/* Subscribe to the engine's live messages. */
int  sse_hub_new(nv_engine *e, const struct http_options *o,
                 struct sse_hub **out, nv_error *err);
/* Unsubscribe and free; every client must be gone (sse_hub_shutdown). */
void sse_hub_free(struct sse_hub *h);

/* Follow engine 'e' instead (no request may be using the hub's engine). */
int  sse_hub_swap_engine(struct sse_hub *h, nv_engine *e, nv_error *err);

/*
 * Open the stream 'rs' describes on connection 'c'. Returns the response to
 * queue, or NULL after filling 'rs' with the error to answer instead (404
 * for an unknown flow or run, 503 past server.maxSseClients).
 */
struct MHD_Response *sse_open(struct sse_hub *h, struct MHD_Connection *c,
                              struct http_res *rs);

/* Heartbeats: call often; sends ": ping" when server.sseHeartbeatMs passed. */
void sse_tick(struct sse_hub *h, int64_t now_ms);

/*
 * End every stream (they finish their current message and close) and
 * refuse new ones. Waits up to 'wait_ms' for the connections to go.
 */
void sse_hub_shutdown(struct sse_hub *h, int64_t wait_ms);

#endif
