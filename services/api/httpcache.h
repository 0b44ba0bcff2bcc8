/* httpcache: HTTP caching of the api's read answers (docs/routes.md "HTTP
 * caching"). For each route it knows the data behind its answers: the
 * datasets and models a sql route's SQL names (sqlnames.c), the model or
 * dataset filling a cache route's cache, a crud route's dataset. It gives
 * every read answer an ETag, Last-Modified and Age, answers a matching
 * If-None-Match with 304 before any query, keeps whole SQL-route answers in
 * the process (anscache.c) until an input of theirs changes, and reports a
 * route whose data is older than its max_age (metric, fr:events event, log
 * line). Versions come from datav.c. Loop thread only; one per worker. */
#ifndef FR_API_HTTPCACHE_H
#define FR_API_HTTPCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "etag.h"
#include "http.h"

struct fr_api_worker;
typedef struct fr_httpcache fr_httpcache_t;

#define FR_HTTPCACHE_BYTES (64u << 20) /* default FRESHET_API_ANSWER_CACHE_BYTES, per worker */

/* For the routes of w's engine (built before). Never NULL. */
fr_httpcache_t *fr_httpcache_new(struct fr_api_worker *w);
void fr_httpcache_free(fr_httpcache_t *hc); /* NULL: nothing */

/* The invalidation channel (fr:events) went up or down: versions are
 * untrusted until read again, kept answers are dropped. */
void fr_httpcache_set_channel(fr_httpcache_t *hc, bool up);
/* An fr:events message: batch.loaded and model.refreshed move versions and
 * drop the kept answers that read what changed. */
void fr_httpcache_on_event(fr_httpcache_t *hc, const char *payload, size_t len);

/* The state of one versioned read, in the request's arena. */
struct fr_httpcache_req {
    int route;              /* the route's index here, -1 = not versioned */
    bool tagged;            /* etag and modified_us are set */
    char etag[FR_ETAG_LEN]; /* W/"..." */
    int64_t modified_us;    /* the newest refresh of its inputs, epoch us; 0 = unknown */
    char *key;              /* arena: the answer cache key (route, parameters, format) */
    size_t klen;
    bool star;  /* If-None-Match: * on an answer that may be a 404: decided at the 200 */
    bool dated; /* untagged (its SQL reads the clock), but Last-Modified and Age are known */
};

/* A sql route's read (vals: its parsed parameters, one per param, NULL =
 * absent; csv: the format): tags it from the versions of its inputs, and
 * answers at once when it can: 304 for a matching If-None-Match, or the kept
 * answer. Returns true when answered; else st says how to tag the answer. */
bool fr_httpcache_sql_begin(fr_httpcache_t *hc, fr_http_req_t *req, const struct fr_route *r, const char **vals,
                            bool csv, struct fr_httpcache_req *st);
/* A crud read (the method, path and query are its parameters): as above,
 * without an answer cache. */
bool fr_httpcache_crud_begin(fr_httpcache_t *hc, fr_http_req_t *req, const struct fr_route *r,
                             struct fr_httpcache_req *st);
/* Before a 200 of a read begun above goes out: adds ETag, Last-Modified
 * and Age, and keeps the answer (sql routes; body != NULL: the whole
 * answer; NULL: it is streamed and not kept). Returns true when it answered
 * instead (304 for "If-None-Match: *", which only a found answer matches);
 * the caller then sends nothing. ctype must be a static string. */
bool fr_httpcache_answer(fr_httpcache_t *hc, fr_http_req_t *req, struct fr_httpcache_req *st, const char *ctype,
                         const char *body, size_t len);

/* A cache route's 200 answer, rendered in body: tags it by its bytes (the
 * key's value) and answers 304 or the 200, with Last-Modified and Age from
 * the cache's model. */
void fr_httpcache_respond_value(fr_httpcache_t *hc, fr_http_req_t *req, const struct fr_route *r, const char *body,
                                size_t len);

#endif
