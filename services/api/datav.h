/* datav: what a worker knows of the data versions behind its answers
 * (docs/routes.md "HTTP caching"). One entry per dataset and model of the
 * pipelines ("{pipeline}.{name}"): its version (freshet.versions, bumped by
 * the loader in the transaction that changes the data) and when it was last
 * loaded or refreshed. Read from PostgreSQL once, kept current by the
 * version and refreshed_at that fr:events' batch.loaded and model.refreshed
 * carry. A version is trusted only while the invalidation channel is up and
 * the table has been read since it last came up (events may have been
 * missed in between); until then fr_datav_get says "unknown" and the
 * caller answers without a tag. Loop thread only; one per worker. */
#ifndef FR_API_DATAV_H
#define FR_API_DATAV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "pg.h"

typedef struct fr_datav fr_datav_t;

/* Entries for every dataset and model of the pipelines. pg_ref: the
 * worker's client pointer (borrowed, read at each use; NULL = none). */
fr_datav_t *fr_datav_new(const struct fr_pipeline *const *pipelines, size_t n, fr_pg_t *const *pg_ref);
/* A read in flight finishes (and frees) on its own. NULL: nothing. */
void fr_datav_free(fr_datav_t *dv);

/* The entry of "{pipeline}.{name}", or -1. */
int fr_datav_find(const fr_datav_t *dv, const char *pipeline, const char *name);
/* The version and refreshed_at (epoch us, 0 = never) of entry i; false
 * while versions are not trusted (then a read from PostgreSQL is started,
 * at most once a second). */
bool fr_datav_get(fr_datav_t *dv, int i, int64_t *version, int64_t *refreshed_us);
/* The invalidation channel went up or down (see the file comment). */
void fr_datav_set_channel(fr_datav_t *dv, bool up);
/* An fr:events message (parsed): a batch.loaded or model.refreshed
 * carrying a version updates its entry (a batch.loaded also the aggregate
 * models in its "versions"). Returns the entry whose version changed, -1
 * when none did, FR_DATAV_MANY when several did. */
#define FR_DATAV_MANY (-2)
int fr_datav_on_event(fr_datav_t *dv, const json_t *ev);

#endif
