/* provenance: the built-in route GET /v1/provenance/{cache}/{key}
 * (docs/routes.md "Provenance"): the value served for a cache key, the
 * batches behind it (ids, rows, when loaded, the landed raw file and its
 * sha256, from the batch ledger freshet.batches) and the refresh of the
 * model that computed it (freshet.versions). */
#ifndef FR_API_PROVENANCE_H
#define FR_API_PROVENANCE_H

#include <stdbool.h>

#include "http.h"

struct fr_api_worker;

#define FR_PROVENANCE_BATCHES 100 /* batches listed, newest first */

/* Answers req and returns true when its path is /v1/provenance/...; false
 * (not answered) otherwise. Loop thread. */
bool fr_api_provenance_route(struct fr_api_worker *w, fr_http_req_t *req);

#endif
