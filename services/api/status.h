/* status: GET /v1/status (docs/status.md): for each pipeline the graph its
 * YAML declares (sources -> datasets -> models -> caches -> routes, as
 * nodes and edges) with each node's live state, and the daemons. The live
 * state is read per request, without blocking, from Redis: the status keys
 * ingest and loader instances write (common/dstatus.h), and per dataset
 * its stream's consumer group (XINFO GROUPS: lag, pending), its length and
 * its dead letters (XLEN). Bounded: at most FR_API_STATUS_MAX_DAEMONS
 * daemon instances, a fixed number of commands per dataset. Loop thread of
 * the worker. */
#ifndef FR_API_STATUS_H
#define FR_API_STATUS_H

#include "http.h"
#include "util.h"

struct fr_api_worker;

#define FR_API_STATUS_MAX_DAEMONS 64

/* Appends the OpenAPI path items of /v1/status and /v1/changes, each
 * followed by ',' (openapi.c), with the schema of the status answer. */
void fr_api_status_openapi(struct fr_buf *b);
/* GET /v1/status (router.c's built-in reads, after the key check). */
void fr_api_status_handle(struct fr_api_worker *w, fr_http_req_t *req);

#endif
