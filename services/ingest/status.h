/* status: what this ingest reports in its status key for GET /v1/status
 * (common/dstatus.h, docs/status.md): per source of the loaded pipelines
 * its kind, dataset, runs (ok and failed), last run (time, result, rows,
 * rejected rows, reason), rows and batches published, and, for http_json
 * sources, whether it runs now, when it runs next, whether this instance
 * holds its lease, and its rate-limit waits. Times and counts come from the
 * events the ingest publishes (fr_ingest_event passes each one here); the
 * live part from http_source.c. Loop thread only. */
#ifndef FR_INGEST_STATUS_H
#define FR_INGEST_STATUS_H

#include <stddef.h>

#include "app.h"
#include "http_source.h"

typedef struct fr_instatus fr_instatus_t;

/* Starts writing the status of app's sources; http may be NULL. */
fr_instatus_t *fr_instatus_start(struct fr_app *app, fr_httpsrcs_t *http);
/* One event the ingest published (JSON): batch.published, source.finished,
 * source.failed and file.rejected count; others are ignored. NULL s:
 * nothing. */
void fr_instatus_note(fr_instatus_t *s, const char *json, size_t len);
/* The ingest's event observer: passes an event to the daemon's status (its
 * struct ingest is reached from app; defined in main.c). Command mode has
 * no status: nothing. */
void fr_ingest_observe_event(struct fr_app *app, const char *json, size_t len);
/* Drain: removes the status key and frees s. NULL: nothing. */
void fr_instatus_stop(fr_instatus_t *s);

#endif
