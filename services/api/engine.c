/* engine: the route table compiled from configuration (see engine.h,
 * docs/routes.md), matching (method + path, static segments win, crud
 * resources by prefix), the role and metrics pattern of a path, and the
 * dispatch of a matched request to its concern: crud.c, admin.c, the cache
 * handlers (routes.c), static, push (push.c), or sqlroute.c. Parameters are
 * checked by params.c first. The modules share engine_int.h. */
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "console.h"
#include "engine_int.h"
#include "log.h"
#include "problem.h"
#include "push.h"

/* ------------------------------------------------------------------ setup */

static void eroute_free(struct eroute *er)
{
    free(er->crud_id);
    free(er->crud_bulk);
    if (er->re) {
        for (size_t i = 0; i < er->n_re; i++)
            if (er->r->params[i].pattern)
                regfree(&er->re[i]);
        free(er->re);
    }
}

struct fr_api_engine *fr_api_engine_new(struct fr_api_worker *w, char err[FR_ERR_LEN])
{
    struct fr_app *app = w->app;
    struct fr_api_engine *e = fr_xcalloc(1, sizeof(*e));
    size_t total = 0;
    e->w = w;
    for (size_t i = 0; i < app->n_pipelines; i++)
        total += app->pipelines[i]->n_routes;
    e->routes = fr_xcalloc(total ? total : 1, sizeof(*e->routes));
    for (size_t i = 0; i < app->n_pipelines; i++) {
        const struct fr_pipeline *p = app->pipelines[i];
        for (size_t j = 0; j < p->n_routes; j++) {
            const struct fr_route *r = &p->routes[j];
            struct eroute *er = &e->routes[e->n++];
            er->p = p;
            er->r = r;
            for (size_t k = 0; k + 1 < e->n; k++) {
                const struct fr_route *o = e->routes[k].r;
                if (strcmp(o->path, r->path) == 0 && strcmp(o->method, r->method) == 0) {
                    snprintf(err, FR_ERR_LEN, "%s: route '%s' serves %s %s, as route '%s' of %s does; remove one",
                             p->path, r->name, r->method, r->path, o->name, e->routes[k].p->path);
                    fr_api_engine_free(e);
                    return NULL;
                }
            }
            if (r->handler == FR_RH_PUSH || r->handler == FR_RH_CRUD)
                er->ds = fr_pipeline_dataset(p, r->dataset);
            e->n_crud += r->handler == FR_RH_CRUD;
            if (r->handler == FR_RH_CRUD) {
                er->crud_id = fr_xasprintf("%s/{id}", r->path);
                er->crud_bulk = fr_xasprintf("%s/bulk", r->path);
            }
            for (size_t k = 0; k < r->n_segs; k++)
                er->n_static += r->segs[k][0] != '{';
            er->re = fr_xcalloc(r->n_params ? r->n_params : 1, sizeof(regex_t));
            for (size_t k = 0; k < r->n_params; k++) {
                if (r->params[k].pattern &&
                    regcomp(&er->re[k], r->params[k].pattern, REG_EXTENDED | REG_NOSUB) != 0) {
                    snprintf(err, FR_ERR_LEN, "%s: pattern of %s in route '%s' does not compile", p->path,
                             r->params[k].name, r->name);
                    fr_api_engine_free(e);
                    return NULL;
                }
                er->n_re = k + 1;
            }
        }
    }
    return e;
}

void fr_api_engine_free(struct fr_api_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        eroute_free(&e->routes[i]);
    free(e->routes);
    free(e);
}

/* --------------------------------------------------------------- matching */

/* Matches path against r's segments; path params (raw) go to segs_out. */
static bool match_path(const struct fr_route *r, const char *path, const char **seg_start, size_t *seg_len)
{
    const char *s = path;
    size_t i = 0;
    if (*s != '/')
        return false;
    while (*s == '/') {
        s++;
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (i >= r->n_segs)
            return false;
        const char *g = r->segs[i];
        if (g[0] == '{') {
            if (len == 0)
                return false;
        } else if (strlen(g) != len || memcmp(g, s, len) != 0) {
            return false;
        }
        seg_start[i] = s;
        seg_len[i] = len;
        i++;
        s += len;
    }
    return *s == '\0' && i == r->n_segs;
}

static struct eroute *find(struct fr_api_engine *e, const char *method, const char *path, bool *path_matched,
                           const char **seg_start, size_t *seg_len)
{
    struct eroute *best = NULL;
    const char *ss[64];
    size_t sl[64];
    *path_matched = false;
    for (size_t i = 0; i < e->n; i++) {
        struct eroute *er = &e->routes[i];
        if (er->r->n_segs > 64 || !match_path(er->r, path, ss, sl))
            continue;
        *path_matched = true;
        if (strcmp(er->r->method, method) != 0)
            continue;
        if (!best || er->n_static > best->n_static) {
            best = er;
            memcpy(seg_start, ss, er->r->n_segs * sizeof(*ss));
            memcpy(seg_len, sl, er->r->n_segs * sizeof(*sl));
        }
    }
    return best;
}

/* A crud resource's role covers all its paths and verbs: reads (GET of
 * the list and of an item) need its role, writes its role_write. */
const char *fr_api_engine_role(struct fr_api_engine *e, const char *method, const char *path)
{
    bool pm;
    const char *ss[64];
    size_t sl[64];
    const char *pat;
    const struct eroute *cr = e && e->n_crud ? fr_api_crud_match(e, path, &pat) : NULL;
    if (cr)
        return strcmp(method, "GET") == 0 ? cr->r->role : cr->r->role_write;
    struct eroute *er = e ? find(e, method, path, &pm, ss, sl) : NULL;
    return er ? er->r->role : NULL;
}

size_t fr_api_engine_count(const struct fr_api_engine *e)
{
    return e ? e->n : 0;
}

const struct fr_route *fr_api_engine_route_at(const struct fr_api_engine *e, size_t i, const struct fr_pipeline **p)
{
    *p = e->routes[i].p;
    return e->routes[i].r;
}

/* The crud route a path falls under, and its pattern: P, P/bulk or P/{id}. */
struct eroute *fr_api_crud_match(struct fr_api_engine *e, const char *path, const char **pattern)
{
    for (size_t i = 0; i < e->n; i++) {
        struct eroute *er = &e->routes[i];
        if (er->r->handler != FR_RH_CRUD)
            continue;
        size_t bl = strlen(er->r->path);
        if (strncmp(path, er->r->path, bl) != 0 || (path[bl] != '\0' && path[bl] != '/'))
            continue;
        const char *seg = path[bl] == '/' ? path + bl + 1 : NULL;
        if (!seg) {
            *pattern = er->r->path;
            return er;
        }
        if (seg[0] == '\0' || strchr(seg, '/'))
            continue;
        *pattern = strcmp(seg, "bulk") == 0 ? er->crud_bulk : er->crud_id;
        return er;
    }
    return NULL;
}

static const char *crud_pattern(struct fr_api_engine *e, const char *path)
{
    const char *pat = NULL;
    return fr_api_crud_match(e, path, &pat) ? pat : NULL;
}

const char *fr_api_engine_pattern(struct fr_api_engine *e, const char *method, const char *path)
{
    const char *ss[64];
    size_t sl[64];
    bool pm;
    if (!e)
        return NULL;
    const char *c = e->n_crud ? crud_pattern(e, path) : NULL;
    if (c)
        return c;
    if (strncmp(path, "/admin/backup/", 14) == 0 && path[14])
        return "/admin/backup/{dataset}";
    const char *console = fr_api_console_pattern(path);
    if (console)
        return console;
    if (strncmp(path, "/admin/restore/", 15) == 0 && path[15])
        return "/admin/restore/{dataset}";
    struct eroute *er = find(e, method, path, &pm, ss, sl);
    if (er)
        return er->r->path;
    for (size_t i = 0; pm && i < e->n; i++) /* a 405: the path's pattern, whatever the method */
        if (e->routes[i].r->n_segs <= 64 && match_path(e->routes[i].r, path, ss, sl))
            return e->routes[i].r->path;
    return NULL;
}

/* ---------------------------------------------------------------- answers */

/* Answers req (counted by routes.c's observer of every answer). */
void fr_api_respond(struct eroute *er, fr_http_req_t *req, int status, const char *ctype, const char *body,
                    size_t len, struct fr_api_worker *w)
{
    (void)er;
    (void)w;
    fr_http_respond(req, status, ctype, body ? body : "", len);
}

void fr_api_respond_detail(struct eroute *er, fr_http_req_t *req, int status, const char *msg,
                           struct fr_api_worker *w)
{
    fr_problem_detail(&w->out, msg, strlen(msg));
    fr_api_respond(er, req, status, "application/json", w->out.data, w->out.len, w);
}

/* ---------------------------------------------------------------- dispatch */

bool fr_api_engine_handle(struct fr_api_engine *e, fr_http_req_t *req)
{
    if (!e)
        return false;
    const char *method = fr_http_req_method(req);
    const char *path = fr_http_req_path(req);
    const char *ss[64];
    size_t sl[64];
    bool pm;
    struct fr_api_worker *w = e->w;
    if (e->n_crud && fr_api_crud_handle(e, req, method, path))
        return true;
    if (path[0] == '/' && path[1] == 'a' && fr_api_admin_handle(e, req, method, path))
        return true;
    struct eroute *er = find(e, method, path, &pm, ss, sl);
    if (!er) {
        if (!pm)
            return false;
        char allow[96] = "";
        size_t off = 0;
        const char *ss2[64];
        size_t sl2[64];
        for (size_t i = 0; i < e->n && off < sizeof(allow) - 10; i++)
            if (e->routes[i].r->n_segs <= 64 && match_path(e->routes[i].r, path, ss2, sl2) &&
                !strstr(allow, e->routes[i].r->method))
                off += (size_t)snprintf(allow + off, sizeof(allow) - off, "%s%s", off ? ", " : "",
                                        e->routes[i].r->method);
        fr_http_add_header(req, "Allow", allow);
        fr_api_respond_detail(NULL, req, 405, "Method Not Allowed", w);
        return true;
    }
    const struct fr_route *r = er->r;
    switch (r->handler) {
    case FR_RH_CACHE_FIELD:
    case FR_RH_CACHE_HASH:
    case FR_RH_CACHE_MULTI: {
        /* declared parameters are checked as for any route */
        const char **cvals = fr_http_req_alloc(req, (r->n_params ? r->n_params : 1) * sizeof(char *));
        if (fr_api_parse_params(e, er, req, ss, sl, cvals))
            fr_api_cache_route(w, req, er->p, r, cvals);
        return true;
    }
    case FR_RH_STATIC:
        fr_api_respond(er, req, 200, "application/json", r->sql, strlen(r->sql), w);
        return true;
    case FR_RH_PUSH: {
        struct fr_api_push_spec spec = {
            .pipeline = er->p,
            .ds = er->ds,
            .min_rows = r->min_rows,
            .max_rows = r->max_rows,
            .partial = r->partial,
            .csv_header = true,
            .wait_ms = UINT32_MAX,
            .op = FR_OP_UPSERT,
        };
        fr_api_push(w, req, &spec);
        return true;
    }
    case FR_RH_CRUD: /* matched by prefix in crud_handle */
    case FR_RH_SQL:
        break;
    }
    fr_api_sql_route(e, er, req, ss, sl);
    return true;
}
