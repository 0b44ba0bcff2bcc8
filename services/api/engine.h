/* engine: the api's route table, compiled once per worker from every
 * pipeline's `routes:` (common/config_route.h, docs/routes.md). It matches
 * method + path (static segments win over parameters; a path that matches
 * with another method is a 405), has the parameters checked (params.c:
 * FastAPI-shaped 422 naming the parameter), and runs the handler: sql
 * (sqlroute.c), crud (crud.c), admin (admin.c), static, push (push.c) and
 * the cache handlers of routes.c. /openapi.json is rendered from the same
 * routes (openapi.c). Those modules share engine_int.h. Loop thread only. */
#ifndef FR_API_ENGINE_H
#define FR_API_ENGINE_H

#include <stdbool.h>

#include "config.h"
#include "config_route.h"
#include "http.h"
#include "util.h"

struct fr_api_worker;
struct fr_api_engine;

/* Builds the table from w->app's pipelines. NULL + err on a route the
 * engine cannot serve (e.g. two pipelines declaring the same method and
 * path). */
struct fr_api_engine *fr_api_engine_new(struct fr_api_worker *w, char err[FR_ERR_LEN]);
void fr_api_engine_free(struct fr_api_engine *e);

/* Serves req when a declared route matches its path (any method: a wrong
 * one is a 405). Returns false, answering nothing, when none matches. */
bool fr_api_engine_handle(struct fr_api_engine *e, fr_http_req_t *req);

/* The role the matched route declares ("read", "write", "admin"), or NULL
 * when no route matches (auth then applies its defaults). */
const char *fr_api_engine_role(struct fr_api_engine *e, const char *method, const char *path);

/* The routes of the table, in pipeline order: i < fr_api_engine_count. */
size_t fr_api_engine_count(const struct fr_api_engine *e);
const struct fr_route *fr_api_engine_route_at(const struct fr_api_engine *e, size_t i, const struct fr_pipeline **p);

/* The declared path pattern path falls under ("/player/{player_id}", a
 * crud's "/v1/job/{id}", "/admin/backup/{dataset}"), whatever the method,
 * or NULL: the label requests are counted under. */
const char *fr_api_engine_pattern(struct fr_api_engine *e, const char *method, const char *path);

/* out = r's not_found text with each {param} replaced by vals[param]
 * ("Not Found" when it has none), NUL-terminated. */
void fr_api_route_not_found(const struct fr_route *r, const char **vals, struct fr_buf *out);

/* OpenAPI 3.1 document of every route (plus the built-in ones) into out. */
void fr_api_openapi(const struct fr_pipeline *const *ps, size_t n, bool auth, struct fr_buf *out);

#endif
