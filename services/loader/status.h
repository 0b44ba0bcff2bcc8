/* status: what this loader reports in its status key for GET /v1/status
 * (common/dstatus.h, docs/status.md): per dataset the rows and batches it
 * loaded, the rows per minute over the last minute, the batches it
 * dead-lettered and its last load; per model its last refresh, duration
 * and keys changed (an aggregate model: the last batch merged into it),
 * its data tests failing now (model.test_failed until the next refresh);
 * per cache its last write and keys. It
 * learns them from the events the loader publishes (fr__loader_publish
 * passes each one here), so no job knows about it. Loop thread only. */
#ifndef FR_LOADER_STATUS_H
#define FR_LOADER_STATUS_H

#include <stddef.h>

struct loader;
typedef struct fr_ldstatus fr_ldstatus_t;

/* Starts writing the loader's status (ld's streams, models and caches are
 * set up). */
fr_ldstatus_t *fr_ldstatus_start(struct loader *ld);
/* One event the loader published (JSON); others than batch.loaded,
 * model.refreshed, model.test_failed and cache.refreshed are ignored. NULL s:
 * nothing. */
void fr_ldstatus_note(fr_ldstatus_t *s, const char *json, size_t len);
/* Drain: removes the status key and frees s. NULL: nothing. */
void fr_ldstatus_stop(fr_ldstatus_t *s);

#endif
