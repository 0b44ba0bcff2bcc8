/* backfill: backfills asked on fr:control ({"cmd":"backfill","id",
 * "pipeline","source","from_us","to_us"}: POST /admin/backfills of the api,
 * docs/console.md). Every ingest gets the message; of those that run the
 * source's pipeline, the one that claims it
 * (HSETNX holder on the job's hash, common/names.h fr_names_backfill) runs
 * it through http_source (fr_httpsrcs_backfill_job) and writes its
 * progress into that hash (state, windows, rows, reason), renewing its TTL
 * on each write. A source that is running now is retried every
 * FR_BACKFILL_RETRY_MS (state "waiting") until its run ends. Owned by
 * http_source (created with the fr:control subscriber); loop thread only. */
#ifndef FR_INGEST_BACKFILL_H
#define FR_INGEST_BACKFILL_H

#include <jansson.h>

#include "app.h"

#define FR_BACKFILL_RETRY_MS 500
#define FR_BACKFILL_MAX_JOBS 64 /* claimed and not finished, per ingest; more are refused (state failed) */

typedef struct fr_backfills fr_backfills_t;
struct fr_httpsrcs;

fr_backfills_t *fr_backfills_new(struct fr_app *app, struct fr_httpsrcs *hs, const char *holder);
/* A {"cmd":"backfill",...} message (borrowed for the call). */
void fr_backfills_on_control(fr_backfills_t *b, json_t *msg);
/* Drain: no new job; closes the retry timer, then cb. Jobs that end after
 * this still write their outcome (best effort). */
void fr_backfills_close(fr_backfills_t *b, void (*cb)(void *data), void *data);
void fr_backfills_free(fr_backfills_t *b);

#endif
