/* api: the freshet-api daemon's per-worker state and the entry points its
 * files share (workers.c: a worker's server, subscription and drain;
 * router.c: the dispatch of a request; routes.c: the cache handlers and
 * request accounting). Each worker owns one loop's worth of state; nothing is global,
 * so N workers (one loop each, SO_REUSEPORT) can later run side by side. */
#ifndef FR_API_H
#define FR_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "auth.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "redis.h"
#include "store.h"
#include "util.h"

#define FR_API_MAX_IDS       1000
#define FR_API_CACHE_ENTRIES 200000
#define FR_API_METRIC_SLOTS  256 /* request counters remembered per worker (routes.c) */

/* One cache that cache_* routes read (routes.c): the model or dataset that
 * fills it, its fields, and the read path (store). */
struct fr_api_cache {
    const struct fr_pipeline *pipeline; /* borrowed: app->pipelines[i] */
    const struct fr_cache *cache;       /* borrowed */
    const char *table;                  /* borrowed: "players.user_panel" */
    const char *key_column;             /* borrowed: "player_id" */
    const char **attrs;                 /* owned array of borrowed names, model order */
    enum fr_type *types;                /* owned */
    size_t n_attrs;
    char *valid_list;  /* owned: "country, avg_price_10, ..." */
    fr_store_t *store; /* owned */
};

/* A remembered http_requests_total series (routes.c's accounting). */
struct fr_api_metric_slot {
    const char *route;  /* borrowed: a route pattern (configuration or a literal) */
    const char *method; /* borrowed: a literal */
    int status;
    uint64_t *counter;            /* borrowed from the registry */
    struct fr_histogram *latency; /* borrowed: the route's http_request_duration_seconds */
};

struct fr_api_worker {
    struct fr_app *app;          /* borrowed */
    fr_metrics_t *metrics;       /* borrowed: this worker's registry */
    fr_http_server_t *http;      /* owned until closed in the drain */
    fr_redis_t *sub;             /* owned until closed: fr:events subscription */
    struct fr_api_cache *caches; /* owned: one per cache a route reads */
    size_t n_caches;
    bool sub_connected; /* the invalidation channel is up */
    size_t inflight;    /* requests waiting on a lookup */
    struct fr_buf out;  /* response scratch, reused */
    struct fr_buf q1;   /* query parameter scratch */
    struct fr_buf q2;
    struct fr_api_metric_slot metric_slots[FR_API_METRIC_SLOTS]; /* http_requests_total, by hash */
    /* auth (auth_gate.c): the process-wide keys, NULL when FRESHET_API_AUTH=off */
    fr_auth_t *auth;                /* borrowed: shared by every worker */
    struct fr_api_pool *pool;       /* borrowed: workers.c's pool, NULL with one worker */
    struct fr_api_push *push;       /* owned by push.c: writes waiting for their batch (lazily made) */
    bool push_closed;               /* the worker drains: no new writes */
    struct fr_api_idem *idem;       /* owned by idem.c: retries waiting for a first answer (lazily made) */
    struct fr_api_engine *engine;   /* owned: the routes of every pipeline (engine.c) */
    struct fr_api_streams *streams; /* owned by workers.c: list cursors' connections and bounds (lazily made) */
    struct fr_readpool *readpool;   /* owned: SQL reads on read replicas (readpool.h); NULL = the primary only */
    struct fr_api_series *series;   /* owned by series.c: the console's per-minute charts (lazily made) */
    struct fr_api_changes *changes; /* owned by changes.c: the change feed's clients and reader; NULL after drain */
    struct fr_httpcache *hc;        /* owned: ETags, 304s, kept SQL answers, max_age (httpcache.h) */
};

/* The cache handlers (routes.c) behind the engine's cache_field,
 * cache_hash and cache_multi routes of pipeline p: vals holds r's
 * parameters, parsed and checked by the engine (one per param, NULL =
 * absent). */
void fr_api_cache_route(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_pipeline *p,
                        const struct fr_route *r, const char **vals);
/* Turns the process cache of every cache on or off (the invalidation
 * channel is up or down). */
void fr_api_caches_set_caching(struct fr_api_worker *w, bool on);

/* Accounting of every answer (the http server's answer observer, data =
 * the worker): http_requests_total{route,method,status} and the latency
 * histogram, under the route's declared path pattern. */
void fr_api_count_answer(fr_http_req_t *req, int status, void *data);

/* Fills w (zeroed by the caller): builds the route table, one store per
 * cache a route reads, and registers the metrics. Returns 0, or -EINVAL
 * with err filled when a pipeline is unusable. The http server and the
 * subscription are main.c's. */
FR_MUST_CHECK int fr_api_worker_init(struct fr_api_worker *w, struct fr_app *app, char err[FR_ERR_LEN]);
/* Frees what init allocated; every lookup must have completed. */
void fr_api_worker_deinit(struct fr_api_worker *w);

/* Handles one fr:events message (JSON): evicts what a cache.refreshed for
 * our cache names. */
void fr_api_on_event(struct fr_api_worker *w, const char *payload, size_t len);

#endif
