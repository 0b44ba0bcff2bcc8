/* backfills: the console's backfills (docs/console.md), role admin:
 *   POST /admin/backfills {"pipeline","source","from","to"}: checks the
 *     source (an http_json source with a window, not a fan-out child) and
 *     the range (ISO-8601, from before to), writes fr:backfill:{id} (state
 *     queued; common/names.h) and asks the ingests on fr:control; 202
 *     {"id","state","progress"} with Location, 503 when no ingest listens.
 *   GET /admin/backfills/{id}: the hash the ingest that runs it keeps
 *     current (state queued|waiting|running|done|failed, windows, rows,
 *     reason) plus "percent"; 404 once unknown or expired.
 * Loop thread of the worker. */
#ifndef FR_API_BACKFILLS_H
#define FR_API_BACKFILLS_H

#include <stdbool.h>

#include "http.h"

struct fr_api_worker;

/* Answers req when its path is /admin/backfills or /admin/backfills/{id}
 * and returns true; false otherwise. */
bool fr_api_backfills_route(struct fr_api_worker *w, fr_http_req_t *req);

#endif
