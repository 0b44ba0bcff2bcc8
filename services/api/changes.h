/* changes: GET /v1/changes, the change feed (docs/status.md): a
 * Server-Sent Events stream of what the loader changed (batch.loaded,
 * model.refreshed, cache.refreshed), read from the FR_NAMES_CHANGES stream
 * (common/names.h) so each event's id is its stream id and a client that
 * reconnects with Last-Event-ID resumes after it without a gap or a
 * duplicate (an id older than the oldest change kept first gets an event
 * "reset"). Filters: ?dataset= (a dataset's own loads and the models and
 * caches computed from it) and ?key= (events naming that key, or naming no
 * keys: a whole refresh). One Redis reader per worker (XREAD BLOCK) fans
 * every change out to the worker's clients; a client that resumes first
 * catches up with XRANGE on the worker's command connection. Each client
 * may hold at most FRESHET_API_CHANGES_BUFFER_BYTES unsent (a slower one
 * is dropped and counted in api_changes_dropped_total); a comment every
 * FRESHET_API_CHANGES_HEARTBEAT_MS keeps idle connections alive through
 * proxies; at most FRESHET_API_CHANGES_MAX_CLIENTS clients per worker (503
 * past it). Loop thread of the worker. */
#ifndef FR_API_CHANGES_H
#define FR_API_CHANGES_H

#include "http.h"
#include "util.h"

struct fr_api_worker;

/* Reads the settings above from the environment into w's change-feed
 * state (made here, nothing started). 0, or -EINVAL with err naming the
 * variable and its bounds. */
FR_MUST_CHECK int fr_api_changes_init(struct fr_api_worker *w, char err[FR_ERR_LEN]);
/* GET /v1/changes (router.c's built-in reads, after the key check). */
void fr_api_changes_handle(struct fr_api_worker *w, fr_http_req_t *req);
/* Drain: ends every feed (a complete chunked answer), closes the reader;
 * the state is freed once its handles and commands are done. */
void fr_api_changes_drain(struct fr_api_worker *w);

#endif
