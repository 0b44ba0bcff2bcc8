/* api: the freshet-api daemon's per-worker state and the entry points its
 * files share (main.c: setup and drain; routes.c: dispatch and the players
 * handlers). Each worker owns one loop's worth of state; nothing is global,
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

enum fr_api_route {
    FR_API_R_ATTR = 0, /* GET /player/attribute */
    FR_API_R_PLAYER,   /* GET /player/{player_id} */
    FR_API_R_ATTRS,    /* POST /player/attributes */
    FR_API_R_HEALTHZ,
    FR_API_R_READYZ,
    FR_API_R_METRICS,
    FR_API_R_UNMATCHED, /* 404s: one label for every unknown path */
    FR_API_R_COUNT,
};

#define FR_API_METHODS       8  /* GET POST PUT DELETE PATCH HEAD OPTIONS other */
#define FR_API_STATUSES      16 /* see status_slot() in routes.c */
#define FR_API_MAX_IDS       1000
#define FR_API_CACHE_ENTRIES 200000

/* The players routes' view of the pipeline that has a cache "user_panel". */
struct fr_api_players {
    const struct fr_pipeline *pipeline; /* borrowed: app->pipelines[i] */
    const struct fr_cache *cache;       /* borrowed */
    const char *table;                  /* borrowed: "players.user_panel" */
    const char *key_column;             /* borrowed: "player_id" */
    const char **attrs;                 /* owned array of borrowed names, model order */
    enum fr_type *types;                /* owned */
    size_t n_attrs;
    char *valid_list; /* owned: "country, avg_price_10, ..." */
};

struct fr_api_worker {
    struct fr_app *app;     /* borrowed */
    fr_metrics_t *metrics;  /* borrowed: this worker's registry */
    fr_http_server_t *http; /* owned until closed in the drain */
    fr_redis_t *sub;        /* owned until closed: fr:events subscription */
    fr_store_t *store;      /* owned, NULL when no players pipeline is loaded */
    bool has_players;
    struct fr_api_players players;
    bool sub_connected; /* the invalidation channel is up */
    size_t inflight;    /* requests waiting on a lookup */
    struct fr_buf out;  /* response scratch, reused */
    struct fr_buf q1;   /* query parameter scratch */
    struct fr_buf q2;
    uint64_t *req_total[FR_API_R_COUNT][FR_API_METHODS][FR_API_STATUSES]; /* borrowed, lazily looked up */
    struct fr_histogram *latency[FR_API_R_COUNT];                         /* borrowed */
    /* auth (auth_gate.c): the process-wide keys, NULL when FRESHET_API_AUTH=off */
    fr_auth_t *auth; /* borrowed: shared by every worker */
    /* the role a request's route declares (set by the route engine); NULL:
     * fr_api_auth_default_role */
    enum fr_auth_role (*route_role)(struct fr_api_worker *w, fr_http_req_t *req);
    struct fr_api_pool *pool;     /* borrowed: workers.c's pool, NULL with one worker */
    struct fr_api_push *push;     /* owned by push.c: writes waiting for their batch (lazily made) */
    bool push_closed;             /* the worker drains: no new writes */
    struct fr_api_idem *idem;     /* owned by idem.c: retries waiting for a first answer (lazily made) */
    struct fr_api_engine *engine; /* owned: the routes of every pipeline (engine.c) */
};

/* Percent-decodes a path segment s[0..n) into out (cap bytes); returns the
 * decoded length, or cap + 1 when it does not fit. Invalid escapes are kept
 * as they are. (engine.c; routes.c uses it too.) */
size_t fr_api_pct_decode(const char *s, size_t n, char *out, size_t cap);

/* The cache handlers (routes.c) behind the engine's cache_field,
 * cache_hash and cache_multi routes; seg is the raw last path segment. */
void fr_api_cache_route(struct fr_api_worker *w, fr_http_req_t *req, int handler, const char *seg, size_t seg_len);

/* Fills w (zeroed by the caller): finds the players pipeline (a cache named
 * "user_panel"), builds the store and registers the metrics. Returns 0, or
 * -EINVAL with err filled when the pipeline is unusable. The http server
 * and the subscription are main.c's. */
FR_MUST_CHECK int fr_api_worker_init(struct fr_api_worker *w, struct fr_app *app, char err[FR_ERR_LEN]);
/* Frees what init allocated; every lookup must have completed. */
void fr_api_worker_deinit(struct fr_api_worker *w);

/* The fr_http_handler of the api server (data = the worker). */
void fr_api_handle(fr_http_req_t *req, void *data);

/* Handles one fr:events message (JSON): evicts what a cache.refreshed for
 * our cache names. */
void fr_api_on_event(struct fr_api_worker *w, const char *payload, size_t len);

#endif
