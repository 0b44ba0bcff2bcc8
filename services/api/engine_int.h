/* engine_int: what the route engine's modules share (not for the rest of
 * the api, which uses engine.h). The compiled route table (engine.c) and
 * the entry point of each concern:
 *   engine.c    table, matching, roles, patterns, dispatch to a handler
 *   params.c    typed parameters: parse, validate, 422
 *   sqlroute.c  sql routes: query, results (JSON/CSV), paging, streaming cursor
 *   crud.c      crud resources (reads in SQL, writes through push.c)
 *   admin.c     POST /admin/backup|restore/{dataset}
 *   openapi.c   /openapi.json from the same routes
 * Error bodies come from problem.c. Loop thread only. */
#ifndef FR_API_ENGINE_INT_H
#define FR_API_ENGINE_INT_H

#include <libpq-fe.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

#define FR_API_MAX_VALUE 4096 /* a decoded parameter */

struct eroute {
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_route *r;    /* borrowed */
    const struct fr_dataset *ds; /* push: borrowed */
    regex_t *re;                 /* owned: one per param, compiled when it has a pattern */
    size_t n_re;                 /* params[0..n_re) were compiled (those with a pattern) */
    size_t n_static;             /* static segments: more wins a tie */
    char *crud_id;               /* owned: crud: "P/{id}" (metrics label) */
    char *crud_bulk;             /* owned: crud: "P/bulk" */
};

struct fr_api_engine {
    struct fr_api_worker *w; /* borrowed */
    uint64_t cursor_seq;     /* cursor names, unique on the worker's connection */
    size_t n_crud;           /* routes with a crud handler (matched by prefix) */
    struct eroute *routes;   /* owned */
    size_t n;
};

/* Answers req (counted by routes.c's observer of every answer); er and w
 * may be NULL for fr_api_respond. engine.c. */
void fr_api_respond(struct eroute *er, fr_http_req_t *req, int status, const char *ctype, const char *body,
                    size_t len, struct fr_api_worker *w);
/* Answers {"detail": msg} (problem.c) built in w->out. engine.c. */
void fr_api_respond_detail(struct eroute *er, fr_http_req_t *req, int status, const char *msg,
                           struct fr_api_worker *w);
/* The crud route a path falls under, and its pattern: P, P/bulk or P/{id}
 * (engine.c). NULL when none. */
struct eroute *fr_api_crud_match(struct fr_api_engine *e, const char *path, const char **pattern);

/* params.c: fills vals[] (one per param, NULL = absent) from the path
 * segments seg_start/seg_len and the query, or answers 422; returns false
 * when answered. */
bool fr_api_parse_params(struct fr_api_engine *e, struct eroute *er, fr_http_req_t *req, const char **seg_start,
                         const size_t *seg_len, const char **vals);

/* sqlroute.c: runs er's SQL for req and answers (buffered, or streamed a
 * page at a time from a cursor). */
void fr_api_sql_route(struct fr_api_engine *e, struct eroute *er, fr_http_req_t *req, const char **ss,
                      const size_t *sl);
/* sqlroute.c: one value of a result as JSON (by the column's type), and a
 * row as a JSON object. */
void fr_api_put_json_value(struct fr_buf *b, const PGresult *res, int row, int col);
void fr_api_put_row_json(struct fr_buf *b, const PGresult *res, int row);

/* crud.c: serves req when it is under a crud route's path; false otherwise. */
bool fr_api_crud_handle(struct fr_api_engine *e, fr_http_req_t *req, const char *method, const char *path);
/* admin.c: serves POST /admin/backup|restore/{dataset}; false otherwise. */
bool fr_api_admin_handle(struct fr_api_engine *e, fr_http_req_t *req, const char *method, const char *path);

#endif
