/* series: the console's charts (docs/console.md): per dataset, per minute
 * of the last hour, the rows loaded and the freshness of each loaded
 * batch (freshness.h), kept in memory by every worker from the
 * batch.loaded events of its fr:events subscription (so every worker holds
 * the same series, from its start on). Freshness of a batch = its
 * commit_time minus the time in its id (a ULID, or "{ulid}-{chunk}": when
 * the ingest claimed the file or the api took the write); ids that carry
 * no time are counted without.
 *   GET /admin/series[?dataset=pipeline.name] (role admin): {"minutes":
 *   [unix s...], "rows_per_s": [...], "batches": [...],
 *   "freshness_p50_s": [...], "freshness_p99_s": [...], "stale_routes":
 *   [...]} oldest first, null where a minute had no batch; all datasets
 *   summed without dataset. stale_routes: the routes whose route.stale
 *   (an answer older than the route's max_age) came in the last
 *   FR_API_SERIES_STALE_S, at most FR_API_SERIES_STALE of them:
 *   {"pipeline","route","path","age_s","max_age_s","at"}.
 * Loop thread of the worker. */
#ifndef FR_API_SERIES_H
#define FR_API_SERIES_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

struct fr_api_worker;
struct fr_api_series;

#define FR_API_SERIES_STALE   64
#define FR_API_SERIES_STALE_S 600

/* One fr:events message (any type; only batch.loaded is kept). Makes w's
 * series at the first one. */
void fr_api_series_on_event(struct fr_api_worker *w, const char *payload, size_t len);
/* GET /admin/series: answers and returns true; false for another path. */
bool fr_api_series_route(struct fr_api_worker *w, fr_http_req_t *req);
void fr_api_series_free(struct fr_api_series *s);

#endif
