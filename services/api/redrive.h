/* redrive: POST /admin/deadletters/{dataset}/{id}/redrive (docs/console.md),
 * a dead letter back into its dataset's stream. The rows come from, in
 * this order: the body's "row" (a JSON object: the corrected row), the dead
 * letter's raw record when it is a JSON object (NDJSON), its raw CSV line
 * read by column position, or, for a whole batch refused by the loader
 * (kind batch), its payload as it was. Rows are validated like a push
 * (common/parse.c; 422 naming the field); then one Lua script checks that
 * the dead letter is still there, XADDs the batch on fr:stream:{dataset}
 * and XDELs the dead letter, so it leaves the DLQ exactly when it is
 * queued again (a second re-drive or a discard in between: 404). 200
 * {"dataset","id","batch","entry","rows"}. Loop thread of the worker. */
#ifndef FR_API_REDRIVE_H
#define FR_API_REDRIVE_H

#include "config.h"
#include "http.h"

struct fr_api_worker;

void fr_api_redrive(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_dataset *ds, const char *id);

#endif
