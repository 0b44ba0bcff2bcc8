/* deadletters: the dead letters of a dataset for the console
 * (docs/console.md), role admin:
 *   GET    /admin/deadletters/{dataset}?limit=&before=  newest first, paged
 *   DELETE /admin/deadletters/{dataset}/{id}            discard one
 *   POST   /admin/deadletters/{dataset}/{id}/redrive    re-drive one (redrive.c)
 * {dataset} is "pipeline.dataset"; {id} a dead letter's stream entry id in
 * fr:dlq:{dataset} (common/names.h). Loop thread of the worker. */
#ifndef FR_API_DEADLETTERS_H
#define FR_API_DEADLETTERS_H

#include <stdbool.h>

#include "config.h"
#include "http.h"

struct fr_api_worker;

#define FR_API_DLQ_DEFAULT_LIMIT 50
#define FR_API_DLQ_MAX_LIMIT     500

/* Answers req when it is one of the paths above (405 for another method,
 * 404 for an unknown dataset) and returns true; false otherwise. */
bool fr_api_deadletters_route(struct fr_api_worker *w, fr_http_req_t *req);

/* The dataset "pipeline.name" of the api's pipelines (and its pipeline in
 * *pp), or NULL. */
const struct fr_dataset *fr_api_find_dataset(struct fr_api_worker *w, const char *qname,
                                             const struct fr_pipeline **pp);
/* A stream entry id "MS-SEQ" (digits, one '-', each part 1..20 digits). */
bool fr_api_stream_id_ok(const char *s);

#endif
