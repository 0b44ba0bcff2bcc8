/* anscache: a worker's process cache of whole SQL-route answers (docs/routes.md
 * "HTTP caching"): the bytes of a 200 answer, its content type, entity tag
 * and Last-Modified, keyed by the route, its parameters and format. Bounded
 * in bytes (keys and bodies counted), least recently used out first. An
 * entry is valid for the data versions its tag names: the caller compares
 * tags at each hit and drops entries whose inputs changed (fr:events).
 * Metrics: api_answer_cache_bytes, api_answer_cache_total{result}. Loop
 * thread only; one per worker. */
#ifndef FR_API_ANSCACHE_H
#define FR_API_ANSCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etag.h"
#include "metrics.h"

typedef struct fr_anscache fr_anscache_t;

/* A kept answer, borrowed: valid until the next put/drop/clear. */
struct fr_answer {
    const char *body;  /* borrowed */
    size_t len;        /* bytes */
    const char *ctype; /* borrowed: a static content type */
    char etag[FR_ETAG_LEN];
    int64_t modified_us; /* Last-Modified, epoch us (0 = unknown) */
    int route;           /* the caller's route index (sweeps) */
};

/* max_bytes 0: off (get misses, put keeps nothing). Metrics registered in m. */
fr_anscache_t *fr_anscache_new(size_t max_bytes, fr_metrics_t *m);
void fr_anscache_free(fr_anscache_t *c); /* NULL: nothing */

/* The answer kept under key, made most recently used; NULL on a miss. */
const struct fr_answer *fr_anscache_get(fr_anscache_t *c, const void *key, size_t klen);
/* Keeps a copy of the answer under key (replacing one), evicting least
 * recently used answers past the bound. An answer larger than an eighth of
 * the bound is not kept. ctype must be a static string. */
void fr_anscache_put(fr_anscache_t *c, const void *key, size_t klen, const struct fr_answer *a);
/* Drops the entry under key (a stale hit). */
void fr_anscache_del(fr_anscache_t *c, const void *key, size_t klen);
/* Drops every answer of a route for which drop(route, data) is true. */
void fr_anscache_sweep(fr_anscache_t *c, bool (*drop)(int route, void *data), void *data);
void fr_anscache_clear(fr_anscache_t *c);
size_t fr_anscache_bytes(const fr_anscache_t *c);
size_t fr_anscache_count(const fr_anscache_t *c);

#endif
