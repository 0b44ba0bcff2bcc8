/* batches: the built-in route GET /v1/batches/{id}: queued, loaded (the
 * ledger row), rejected (a dead letter) or 404 (see batches.c). */
#ifndef FR_API_BATCHES_H
#define FR_API_BATCHES_H

#include <stdbool.h>

#include "http.h"

struct fr_api_worker;

/* Answers req and returns true when its path is /v1/batches/...; false
 * (not answered) otherwise. */
bool fr_api_batches_route(struct fr_api_worker *w, fr_http_req_t *req);

#endif
