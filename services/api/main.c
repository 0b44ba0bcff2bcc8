/* freshet-api: the HTTP/1.1 read server (README "API: every route").
 *
 * Setup: fr_app (settings, pipelines, the Redis command connection and the
 * PostgreSQL connection) and worker 0 on this thread's loop, set up like
 * every other worker (workers.c: fr_api_worker_init, fr_api_worker_serve:
 * an fr_http_server on settings.api_addr with SO_REUSEPORT, a second Redis
 * connection subscribed to fr:events for cache invalidation, the drain),
 * then the pool starts workers 1..N-1. No admin port: the api serves
 * /metrics, /healthz and /readyz itself.
 *
 * Contract details added here:
 *  - The /player routes are served when a loaded pipeline has a cache named
 *    "user_panel" (type hash); attributes are the columns of the model (or
 *    dataset) that fills it, minus the cache's key column, in column order.
 *  - Reads: in-process LRU → HGETALL {cache}:{id} (an empty reply = not in
 *    Redis; an absent field = null) → SELECT ... FROM {model table} WHERE
 *    {key} = $1 (or = ANY($1) for POST /player/attributes). Not found
 *    anywhere → 404 (not cached); Redis down → PostgreSQL; PostgreSQL
 *    needed but down → 503 {"detail": "..."}.
 *  - Invalidation: a cache.refreshed message whose "cache" is ours (and
 *    "pipeline", when present, ours) evicts its "keys", or everything with
 *    "all": true or without a keys array. While the fr:events subscription
 *    is down the process cache is off (nothing served from it or put in it)
 *    and it is cleared whenever the subscription comes back.
 *  - FRESHET_API_CACHE_ENTRIES (default 200000; 0 = off) bounds the process cache.
 *  - SIGTERM/SIGINT: stop accepting, let requests in flight finish (5 s at
 *    most), close the subscription, then the app; exit 0.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "auth_gate.h"
#include "engine.h"
#include "log.h"
#include "workers.h"

static const char usage[] =
    "Serves the pipelines' routes over HTTP on FRESHET_API_ADDR (--api-addr), with /metrics, /healthz and\n"
    "/readyz on the same address (the api has no admin port).\n"
    "Environment: FRESHET_API_CACHE_ENTRIES bounds the in-process cache (default 200000, 0 = off).\n"
    "  FRESHET_API_WORKERS (default: CPUs), FRESHET_API_MAX_CONNS (per worker), FRESHET_API_AUTH=on|off,\n"
    "  FRESHET_API_KEYS_FILE (name:role:sha256hex lines; see docs/api-auth.md).\n"
    "Commands: freshet-api hash-key  (reads a key on stdin, prints its SHA-256 for the keys file)\n"
    "          freshet-api openapi   (prints the OpenAPI document of the configured routes)\n";

int main(int argc, char **argv)
{
    struct fr_app app;
    struct fr_api_worker w;
    struct fr_http_limits lim;
    fr_auth_t *auth = NULL;
    fr_api_pool_t *pool = NULL;
    size_t n_workers = 1;
    char err[FR_ERR_LEN] = "";
    int rest_argc = 0;
    char **rest_argv = NULL;
    enum fr_settings_result sr;
    int rc;

    if (argc >= 2 && strcmp(argv[1], "hash-key") == 0)
        return fr_api_hash_key_main();
    sr = fr_app_init(&app, "api", usage, "", FR_APP_REDIS | FR_APP_PG, argc, argv, &rest_argc, &rest_argv, err);
    if (sr == FR_SETTINGS_EXIT_OK)
        return 0;
    if (sr != FR_SETTINGS_OK) {
        fprintf(stderr, "freshet-api: %s\n", err);
        return 2;
    }
    memset(&w, 0, sizeof(w));
    w.app = &app; /* fr_api_worker_init sets it too; the failure path needs it before */
    if (rest_argc == 1 && strcmp(rest_argv[0], "openapi") == 0) {
        /* The OpenAPI document of the configured routes, without serving
         * (scripts/gen-route-docs renders the README's route table from it). */
        struct fr_buf doc;
        const char *a = getenv("FRESHET_API_AUTH");
        fr_buf_init(&doc, 0);
        fr_api_openapi((const struct fr_pipeline *const *)app.pipelines, app.n_pipelines, a && strcmp(a, "on") == 0,
                       &doc);
        fwrite(doc.data, 1, doc.len, stdout);
        putchar('\n');
        fr_buf_deinit(&doc);
        fr_app_deinit(&app);
        return 0;
    }
    if (rest_argc > 0) {
        snprintf(err, sizeof(err), "unknown argument '%s' (see --help)", rest_argv[0]);
        goto out_fail;
    }
    if (fr_api_auth_setup(&auth, err) != 0 || fr_api_workers_setting(&n_workers, err) != 0 ||
        fr_api_http_limits(&lim, err) != 0)
        goto out_fail;
    if (fr_api_worker_init(&w, &app, err) != 0 || fr_api_worker_serve(&w, auth, &lim, err) != 0)
        goto out_fail;
    if (fr_api_pool_start(&pool, &w, n_workers, argc, argv, auth, &lim, err) != 0)
        goto out_fail;
    fr_info("listening on %s with %zu worker(s)%s%s", app.settings.api_addr, n_workers,
            w.n_caches ? " (cache routes on)" : "", auth ? " (API keys required)" : "");

    rc = fr_app_run(&app);
    {
        int prc = fr_api_pool_join(pool);
        if (rc == 0)
            rc = prc;
    }
    fr_api_worker_deinit(&w);
    fr_app_deinit(&app);
    fr_auth_free(auth);
    return rc;

out_fail:
    fr_error("%s", err);
    fr_api_worker_abort(&w);
    fr_api_worker_deinit(&w);
    fr_app_deinit(&app);
    fr_auth_free(auth);
    return 2;
}
