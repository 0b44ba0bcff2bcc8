/* push: writes through the pipeline (`push` sources; README "Writes").
 * A request body (one JSON object, a JSON array of objects, or CSV with
 * Content-Type text/csv) is validated row by row with the dataset's
 * columns (common/parse.c, the same checks as files), packed as one
 * freshet.Batch (common/batch.c, id = a ULID, source "api") and XADDed on
 * fr:stream:{pipeline}.{dataset} (with an Idempotency-Key, once per key:
 * idem.h, and the batch id comes from the key). The request then waits (bounded) for the
 * loader's batch.loaded of that id on this worker's fr:events
 * subscription: 201 with the rows, else 202 with Location:
 * /v1/batches/{id}. `fr:batch:{id}` (7 days) remembers the stream entry so
 * GET /v1/batches/{id} can tell queued from unknown. Loop thread only. */
#ifndef FR_API_PUSH_H
#define FR_API_PUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "config.h"
#include "http.h"

struct fr_api_worker;

#define FR_API_PUSH_WAIT_MS     2000 /* default wait for batch.loaded */
#define FR_API_PUSH_MAX_WAITERS 256  /* per worker; more in flight -> 503 */
#define FR_API_PUSH_MAX_REJECTS 100  /* reported per request */

/* What a push route declares. */
struct fr_api_push_spec {
    const struct fr_pipeline *pipeline; /* borrowed */
    const struct fr_dataset *ds;        /* borrowed */
    uint32_t min_rows;                  /* fewer -> 422 (0 counts as 1) */
    uint32_t max_rows;                  /* more -> 422; 0 = FR_API_PUSH_DEFAULT_MAX */
    bool partial;                       /* bulk: invalid rows are reported, the valid ones load; 201
                                           {"inserted": n, "rejected": [{"row": i, "reason": ...}]} */
    bool csv_header;                    /* a text/csv body starts with a header row */
    bool array_only;                    /* a JSON body must be an array (bulk): an object -> 422 list_type */
    uint32_t wait_ms; /* UINT32_MAX = the default (FRESHET_API_WRITE_WAIT_MS or 2000); 0 = answer 202 at once */
    enum fr_batch_op op;
    /* crud (engine.c): a JSON body built by the caller instead of the
     * request's, and the status of success (0 = 201 with the rows; 200 =
     * the rows; 204 = no body). */
    const char *body;
    size_t body_len;
    int ok_status;
};

#define FR_API_PUSH_DEFAULT_MAX 1000

/* Handles one write request with spec (borrowed for the call). Answers
 * exactly once: 201, 202, 422 (validation, row counts), 415 (body type),
 * 503 (Redis down, too many writes in flight, shutting down). */
void fr_api_push(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_api_push_spec *spec);

/* The built-in route POST /v1/push/{pipeline}/{dataset} for every dataset
 * that has a `push` source: 1..1000 rows, all valid (422 otherwise); with
 * ?partial=1 the valid rows load and the answer is the bulk shape. Returns
 * false (not answered) when req is not for it. */
bool fr_api_push_route(struct fr_api_worker *w, fr_http_req_t *req);

/* An fr:events message (JSON): a batch.loaded or batch.rejected of a
 * batch this worker waits for answers its request. */
void fr_api_push_on_event(struct fr_api_worker *w, const char *payload, size_t len);

/* The worker drains: waiting requests get 202 now, new pushes 503. */
void fr_api_push_drain(struct fr_api_worker *w);

/* FRESHET_API_WRITE_WAIT_MS (0..60000), default 2000. */
uint32_t fr_api_push_default_wait_ms(void);

#endif
