/* routes: the cache handlers (cache_field, cache_hash, cache_multi routes
 * of any pipeline, docs/routes.md) and their invalidation (fr:events), the
 * accounting of every answer, and a worker's state (fr_api_worker_init).
 * Requests reach the cache handlers through router.c and engine.c. Hot path: a GET whose
 * key is in the process cache is answered synchronously from the worker's
 * reused buffer; anything else goes through an async store lookup and is
 * answered from its completion callback, which fires exactly once. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "series.h"
#include "auth_gate.h"
#include "engine.h"
#include "httpcache.h"
#include "log.h"
#include "problem.h"
#include "readpool.h"

static const char *const method_names[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};

/* An async cache request: lives in the request's arena until answered. */
struct preq {
    struct fr_api_worker *w;      /* borrowed */
    fr_http_req_t *req;           /* borrowed until answered */
    const struct fr_route *r;     /* borrowed */
    const char **vals;            /* arena: r's parameters */
    const struct fr_api_cache *c; /* borrowed */
    int attr;                     /* cache_field: the attribute */
    const uint32_t *sel;          /* cache_multi: selected attributes (arena) */
    size_t n_sel;
};

/* ------------------------------------------------------------- accounting */

static const char *method_label(const char *m)
{
    for (size_t i = 0; i < FR_ARRAY_LEN(method_names); i++)
        if (strcmp(m, method_names[i]) == 0)
            return method_names[i];
    return "other";
}

/* The label of the routes the engine does not hold. */
static const char *builtin_pattern(const char *path)
{
    static const char *const exact[] = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"};
    for (size_t i = 0; i < FR_ARRAY_LEN(exact); i++)
        if (strcmp(path, exact[i]) == 0)
            return exact[i];
    if (strncmp(path, "/docs/", 6) == 0)
        return "/docs";
    if (strncmp(path, "/v1/batches/", 12) == 0 && path[12])
        return "/v1/batches/{id}";
    if (strncmp(path, "/v1/push/", 9) == 0 && path[9])
        return "/v1/push/{pipeline}/{dataset}";
    return "unmatched";
}

void fr_api_count_answer(fr_http_req_t *req, int status, void *data)
{
    struct fr_api_worker *w = data;
    const char *method = fr_http_req_method(req), *path = fr_http_req_path(req);
    const char *route = fr_api_engine_pattern(w->engine, method, path);
    const char *m = method_label(method);
    uint64_t now = fr_mono_ns(), start = fr_http_req_start_ns(req);

    if (!route)
        route = builtin_pattern(path);
    if (w->readpool && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        char caller[FR_READPOOL_CALLER_LEN]; /* read-your-writes: this caller's reads must see a 2xx write */
        fr_readpool_caller(req, w->auth != NULL, caller);
        fr_readpool_end_write(w->readpool, w->app->pg, fr_http_req_id(req), caller, status >= 200 && status < 300);
    }
    /* route and m are stable pointers (configuration, literals): remember
     * the series by them, so the hot path does no lookup */
    size_t h = (((uintptr_t)route >> 3) * 31 + ((uintptr_t)m >> 3) * 7 + (size_t)status) % FR_API_METRIC_SLOTS;
    struct fr_api_metric_slot *sl = &w->metric_slots[h];
    if (sl->route != route || sl->method != m || sl->status != status) {
        char labels[700];
        snprintf(labels, sizeof(labels), "route=\"%.600s\",method=\"%s\",status=\"%d\"", route, m, status);
        sl->counter = fr_metrics_counter(w->metrics, "http_requests_total",
                                         "HTTP requests by route, method and status", labels);
        snprintf(labels, sizeof(labels), "route=\"%.600s\"", route);
        sl->latency = fr_metrics_histogram(w->metrics, "http_request_duration_seconds",
                                           "HTTP request latency by route", labels);
        sl->route = route;
        sl->method = m;
        sl->status = status;
    }
    (*sl->counter)++;
    fr_histogram_observe(sl->latency, now > start ? (double)(now - start) / 1e9 : 0.0);
    if (fr_log_enabled(FR_LOG_DEBUG)) {
        char id[24];
        snprintf(id, sizeof(id), "%" PRIu64, fr_http_req_id(req));
        fr_log_kv(FR_LOG_DEBUG, "req", id, "%s %s -> %d in %.3f ms", method, path, status,
                  now > start ? (double)(now - start) / 1e6 : 0.0);
    }
}

/* ---------------------------------------------------------------- helpers */

/* Answers the request (body copied; counted by fr_api_count_answer). */
static void finish(fr_http_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    fr_http_respond(req, status, ctype, body ? body : "", len);
}

static void finish_json(fr_http_req_t *req, int status, const struct fr_buf *b)
{
    finish(req, status, "application/json", b->data, b->len);
}

static void finish_detail(struct fr_api_worker *w, fr_http_req_t *req, int status, const char *msg, size_t len)
{
    fr_problem_detail(&w->out, msg, len);
    finish_json(req, status, &w->out);
}

enum idcheck {
    ID_OK = 0,
    ID_EMPTY,
    ID_LONG,
    ID_CTRL,
    ID_UTF8,
};

/* A key that may go into a Redis key name: 1..256 bytes of UTF-8, no
 * control bytes. */
static enum idcheck check_id(const char *s, size_t n)
{
    if (n == 0)
        return ID_EMPTY;
    if (n > FR_STORE_MAX_KEY)
        return ID_LONG;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return ID_CTRL;
    }
    return fr_utf8_valid(s, n) ? ID_OK : ID_UTF8;
}

static void problem_id(struct fr_problem *x, const char *where, const char *name, long idx, enum idcheck c)
{
    switch (c) {
    case ID_EMPTY:
        fr_problem_add(x, where, name, idx, "String should have at least 1 character", "string_too_short");
        break;
    case ID_LONG:
        fr_problem_add(x, where, name, idx, "String should have at most 256 characters", "string_too_long");
        break;
    case ID_CTRL:
        fr_problem_add(x, where, name, idx, "String should not contain control characters",
                       "string_pattern_mismatch");
        break;
    case ID_UTF8:
        fr_problem_add(x, where, name, idx, "Input should be a valid string", "string_type");
        break;
    case ID_OK:
        break;
    }
}

static int find_attr(const struct fr_api_cache *c, const char *name, size_t n)
{
    for (size_t i = 0; i < c->n_attrs; i++) {
        const char *a = c->attrs[i];
        if (strlen(a) == n && memcmp(a, name, n) == 0)
            return (int)i;
    }
    return -1;
}

/* "Unknown attribute 'x'. Valid attributes: a, b" into tmp (reset). */
static void unknown_attr_msg(const struct fr_api_cache *c, struct fr_buf *tmp, const char *name, size_t n)
{
    fr_buf_reset(tmp);
    (void)fr_buf_puts(tmp, "Unknown attribute '");
    (void)fr_buf_append(tmp, name, n);
    (void)fr_buf_puts(tmp, "'. Valid attributes: ");
    (void)fr_buf_puts(tmp, c->valid_list);
}

/* ---- rendering rows */

static void put_value(struct fr_buf *b, struct fr_row_view v, size_t j)
{
    (void)fr_buf_append(b, v.base + v.off[j], v.off[j + 1] - v.off[j]);
}

/* "name": value for attribute j */
static void put_attr(struct fr_buf *b, const struct fr_api_cache *c, struct fr_row_view v, size_t j)
{
    (void)fr_buf_json_str(b, c->attrs[j], strlen(c->attrs[j]));
    (void)fr_buf_putc(b, ':');
    put_value(b, v, j);
}

/* {"<key column>": "...", "a": v, ...} */
static void render_hash(struct fr_buf *b, const struct fr_api_cache *c, const char *id, size_t id_len,
                        struct fr_row_view v)
{
    fr_buf_reset(b);
    (void)fr_buf_putc(b, '{');
    (void)fr_buf_json_str(b, c->key_column, strlen(c->key_column));
    (void)fr_buf_putc(b, ':');
    (void)fr_buf_json_str(b, id, id_len);
    for (size_t j = 0; j < c->n_attrs; j++) {
        (void)fr_buf_putc(b, ',');
        put_attr(b, c, v, j);
    }
    (void)fr_buf_putc(b, '}');
}

static void render_one_attr(struct fr_buf *b, const struct fr_api_cache *c, struct fr_row_view v, size_t j)
{
    fr_buf_reset(b);
    (void)fr_buf_putc(b, '{');
    put_attr(b, c, v, j);
    (void)fr_buf_putc(b, '}');
}

/* 404 with the route's not_found text ({param} substituted). */
static void finish_not_found(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_route *r, const char **vals)
{
    struct fr_buf msg;
    fr_buf_init(&msg, 0);
    fr_api_route_not_found(r, vals, &msg);
    finish_detail(w, req, 404, msg.data, strlen(msg.data));
    fr_buf_deinit(&msg);
}

/* ---------------------------------------------------------------- lookups */

static void on_lookup_done(fr_store_lookup_t *lk, void *data)
{
    struct preq *p = data;
    struct fr_api_worker *w = p->w;
    const struct fr_api_cache *c = p->c;
    struct fr_buf *b = &w->out;
    const char *err = fr_store_lookup_error(lk);
    size_t id_len;
    const char *id;

    w->inflight--;
    if (err) {
        finish_detail(w, p->req, 503, err, strlen(err));
        goto out_free;
    }
    if (p->r->handler == FR_RH_CACHE_MULTI) {
        size_t n = fr_store_lookup_count(lk);
        bool first = true;

        fr_buf_reset(b);
        /* {"<keys member>": {key: {field: value}}, "missing": [keys]}, a
         * keys member "x_ids" answering as "xs": the players shape is
         * {"players": {...}, "missing": [...]} */
        (void)fr_buf_putc(b, '{');
        {
            const char *k = p->r->body_keys;
            size_t kl = strlen(k);
            /* "player_ids" -> "players" */
            if (kl > 4 && strcmp(k + kl - 4, "_ids") == 0) {
                (void)fr_buf_putc(b, '"');
                (void)fr_buf_append(b, k, kl - 4);
                (void)fr_buf_puts(b, "s\"");
            } else {
                (void)fr_buf_json_str(b, k, kl);
            }
        }
        (void)fr_buf_puts(b, ":{");
        for (size_t i = 0; i < n; i++) {
            if (fr_store_lookup_item(lk, i) != FR_STORE_ITEM_FOUND)
                continue;
            struct fr_row_view v = fr_store_lookup_row(lk, i);
            id = fr_store_lookup_key(lk, i, &id_len);
            if (!first)
                (void)fr_buf_putc(b, ',');
            first = false;
            (void)fr_buf_json_str(b, id, id_len);
            (void)fr_buf_puts(b, ":{");
            for (size_t k = 0; k < p->n_sel; k++) {
                if (k)
                    (void)fr_buf_putc(b, ',');
                put_attr(b, c, v, p->sel[k]);
            }
            (void)fr_buf_putc(b, '}');
        }
        (void)fr_buf_puts(b, "},\"missing\":[");
        first = true;
        for (size_t i = 0; i < n; i++) {
            if (fr_store_lookup_item(lk, i) != FR_STORE_ITEM_MISSING)
                continue;
            id = fr_store_lookup_key(lk, i, &id_len);
            if (!first)
                (void)fr_buf_putc(b, ',');
            first = false;
            (void)fr_buf_json_str(b, id, id_len);
        }
        (void)fr_buf_puts(b, "]}");
        finish_json(p->req, 200, b);
        goto out_free;
    }

    id = fr_store_lookup_key(lk, 0, &id_len);
    if (fr_store_lookup_item(lk, 0) != FR_STORE_ITEM_FOUND) {
        finish_not_found(w, p->req, p->r, p->vals);
        goto out_free;
    }
    if (p->r->handler == FR_RH_CACHE_FIELD)
        render_one_attr(b, c, fr_store_lookup_row(lk, 0), (size_t)p->attr);
    else
        render_hash(b, c, id, id_len, fr_store_lookup_row(lk, 0));
    fr_httpcache_respond_value(w->hc, p->req, p->r, b->data, b->len); /* ETag, 304 */

out_free:
    fr_store_lookup_free(lk);
}

static struct preq *preq_new(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_route *r, const char **vals,
                             const struct fr_api_cache *c)
{
    struct preq *p = fr_http_req_alloc(req, sizeof(*p));

    memset(p, 0, sizeof(*p));
    p->w = w;
    p->req = req;
    p->r = r;
    p->vals = vals;
    p->c = c;
    return p;
}

/* Starts the lookup; the request is answered by on_lookup_done (maybe
 * before this returns). */
static void start(struct fr_api_worker *w, struct preq *p, fr_store_lookup_t *lk, bool probed)
{
    w->inflight++;
    if (w->readpool) { /* a PostgreSQL fallback may read a replica: read-your-writes by caller */
        char caller[FR_READPOOL_CALLER_LEN];
        fr_readpool_caller(p->req, w->auth != NULL, caller);
        fr_store_lookup_set_caller(lk, caller);
    }
    fr_store_lookup_start(lk, probed, on_lookup_done, p);
}

/* One key: the process cache answers synchronously, else a lookup. */
static void lookup_one(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_route *r, const char **vals,
                       const struct fr_api_cache *c, const char *id, size_t id_len, int attr)
{
    const struct fr_lru_entry *e = fr_store_cached(c->store, id, id_len);
    struct preq *p;
    fr_store_lookup_t *lk;

    if (e) {
        if (r->handler == FR_RH_CACHE_FIELD)
            render_one_attr(&w->out, c, fr_lru_entry_row(e), (size_t)attr);
        else
            render_hash(&w->out, c, id, id_len, fr_lru_entry_row(e));
        fr_httpcache_respond_value(w->hc, req, r, w->out.data, w->out.len); /* ETag, 304 */
        return;
    }
    p = preq_new(w, req, r, vals, c);
    p->attr = attr;
    lk = fr_store_lookup_new(c->store, 1);
    (void)fr_store_lookup_add(lk, id, id_len);
    start(w, p, lk, true);
}

/* ---------------------------------------------------------------- handlers */

/* cache_field (GET /player/attribute?player_id=&attribute_name=) and
 * cache_hash (GET /player/{player_id}): the key and field are the route's
 * declared parameters, already parsed and checked by the engine. */
static void handle_key(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_route *r, const char **vals,
                       const struct fr_api_cache *c)
{
    int ki = fr_route_param_index(r, r->key_param);
    const struct fr_route_param *kp = &r->params[ki];
    const char *id = vals[ki] ? vals[ki] : "";
    size_t id_len = strlen(id);
    enum idcheck ic = check_id(id, id_len);
    int attr = -1;

    if (ic != ID_OK) {
        struct fr_problem x;
        fr_problem_begin(&x, &w->out);
        problem_id(&x, kp->in == FR_PARAM_PATH ? "path" : "query", kp->name, FR_PROBLEM_NO_INDEX, ic);
        fr_problem_end(&x);
        finish_json(req, 422, &w->out);
        return;
    }
    if (r->handler == FR_RH_CACHE_FIELD) {
        int fi = fr_route_param_index(r, r->field_param);
        const char *name = vals[fi] ? vals[fi] : "";
        attr = find_attr(c, name, strlen(name));
        if (attr < 0) {
            struct fr_buf msg;
            fr_buf_init(&msg, 0);
            unknown_attr_msg(c, &msg, name, strlen(name));
            finish_detail(w, req, 404, msg.data, msg.len);
            fr_buf_deinit(&msg);
            return;
        }
    }
    lookup_one(w, req, r, vals, c, id, id_len, attr);
}

/* cache_multi (POST /player/attributes {"player_ids": [...],
 * "attribute_names": [...]}): the body members the route names. */
static void handle_multi(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_route *r, const char **vals,
                         const struct fr_api_cache *c)
{
    const char *km = r->body_keys, *fm = r->body_fields;
    size_t body_len = 0;
    const char *body = fr_http_req_body(req, &body_len);
    json_error_t jerr;
    json_t *root = NULL;
    json_t *ids, *names;
    struct fr_problem x;
    struct fr_buf msg;
    uint32_t *sel = NULL;
    size_t n_sel = 0;
    struct preq *p;
    fr_store_lookup_t *lk;

    fr_buf_init(&msg, 0);
    fr_problem_begin(&x, &w->out);
    if (!body || body_len == 0) {
        fr_problem_add(&x, "body", NULL, FR_PROBLEM_NO_INDEX, "Field required", "missing");
        goto out_errors;
    }
    root = json_loadb(body, body_len, 0, &jerr);
    if (!root) {
        (void)fr_buf_printf(&msg, "JSON decode error: %s", jerr.text);
        fr_problem_add(&x, "body", NULL, FR_PROBLEM_NO_INDEX, msg.data, "json_invalid");
        goto out_errors;
    }
    if (!json_is_object(root)) {
        fr_problem_add(&x, "body", NULL, FR_PROBLEM_NO_INDEX,
                       "Input should be a valid dictionary or object to extract fields from",
                       "model_attributes_type");
        goto out_errors;
    }

    ids = json_object_get(root, km);
    if (!ids) {
        fr_problem_add(&x, "body", km, FR_PROBLEM_NO_INDEX, "Field required", "missing");
    } else if (!json_is_array(ids)) {
        fr_problem_add(&x, "body", km, FR_PROBLEM_NO_INDEX, "Input should be a valid list", "list_type");
    } else if (json_array_size(ids) > FR_API_MAX_IDS) {
        fr_buf_reset(&msg);
        (void)fr_buf_printf(&msg, "List should have at most %d items after validation, not %zu", FR_API_MAX_IDS,
                            json_array_size(ids));
        fr_problem_add(&x, "body", km, FR_PROBLEM_NO_INDEX, msg.data, "too_long");
    } else {
        for (size_t i = 0; i < json_array_size(ids); i++) {
            json_t *v = json_array_get(ids, i);
            if (!json_is_string(v))
                fr_problem_add(&x, "body", km, (long)i, "Input should be a valid string", "string_type");
            else
                problem_id(&x, "body", km, (long)i, check_id(json_string_value(v), json_string_length(v)));
        }
    }

    names = json_object_get(root, fm);
    if (!names || json_is_null(names)) {
        n_sel = c->n_attrs;
        sel = fr_http_req_alloc(req, (n_sel ? n_sel : 1) * sizeof(*sel));
        for (size_t j = 0; j < n_sel; j++)
            sel[j] = (uint32_t)j;
    } else if (!json_is_array(names)) {
        fr_problem_add(&x, "body", fm, FR_PROBLEM_NO_INDEX, "Input should be a valid list", "list_type");
    } else {
        size_t nn = json_array_size(names);
        sel = fr_http_req_alloc(req, (c->n_attrs ? c->n_attrs : 1) * sizeof(*sel));
        for (size_t i = 0; i < nn; i++) {
            json_t *v = json_array_get(names, i);
            int a;
            if (!json_is_string(v)) {
                fr_problem_add(&x, "body", fm, (long)i, "Input should be a valid string", "string_type");
                continue;
            }
            a = find_attr(c, json_string_value(v), json_string_length(v));
            if (a < 0) {
                unknown_attr_msg(c, &msg, json_string_value(v), json_string_length(v));
                fr_problem_item(x.b, x.n++ == 0, "body", fm, (long)i, NULL, msg.data, msg.len, "value_error");
                continue;
            }
            bool dup = false;
            for (size_t k = 0; k < n_sel && !dup; k++)
                dup = sel[k] == (uint32_t)a;
            if (!dup)
                sel[n_sel++] = (uint32_t)a;
        }
    }
    if (x.n)
        goto out_errors;

    p = preq_new(w, req, r, vals, c);
    p->sel = sel;
    p->n_sel = n_sel;
    lk = fr_store_lookup_new(c->store, json_array_size(ids));
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        (void)fr_store_lookup_add(lk, json_string_value(v), json_string_length(v));
    }
    json_decref(root);
    fr_buf_deinit(&msg);
    start(w, p, lk, false);
    return;

out_errors:
    fr_problem_end(&x);
    json_decref(root);
    fr_buf_deinit(&msg);
    finish_json(req, 422, &w->out);
}

static struct fr_api_cache *cache_of(struct fr_api_worker *w, const struct fr_pipeline *p, const char *name)
{
    for (size_t i = 0; i < w->n_caches; i++)
        if (w->caches[i].pipeline == p && strcmp(w->caches[i].cache->name, name) == 0)
            return &w->caches[i];
    return NULL;
}

void fr_api_cache_route(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_pipeline *p,
                        const struct fr_route *r, const char **vals)
{
    const struct fr_api_cache *c = cache_of(w, p, r->cache);
    if (!c) { /* setup made one per cache a route reads: cannot happen */
        finish_detail(w, req, 503, "the cache behind this route is not configured", 45);
        return;
    }
    if (r->handler == FR_RH_CACHE_MULTI)
        handle_multi(w, req, r, vals, c);
    else
        handle_key(w, req, r, vals, c);
}

void fr_api_caches_set_caching(struct fr_api_worker *w, bool on)
{
    if (w->hc)
        fr_httpcache_set_channel(w->hc, on); /* versions and kept answers follow the same channel */
    for (size_t i = 0; i < w->n_caches; i++)
        fr_store_set_caching(w->caches[i].store, on);
}

/* ---------------------------------------------------------------- events */

void fr_api_on_event(struct fr_api_worker *w, const char *payload, size_t len)
{
    json_error_t jerr;
    json_t *ev, *keys;
    const char *type, *cache, *pipeline;

    if (w->hc)
        fr_httpcache_on_event(w->hc, payload, len); /* data versions, kept SQL answers */
    if (!w->n_caches)
        return;
    ev = json_loadb(payload, len, 0, &jerr);
    if (!ev || !json_is_object(ev)) {
        fr_debug("fr:events: ignoring a message that is not a JSON object");
        json_decref(ev);
        return;
    }
    type = json_string_value(json_object_get(ev, "type"));
    cache = json_string_value(json_object_get(ev, "cache"));
    pipeline = json_string_value(json_object_get(ev, "pipeline"));
    if (!type || strcmp(type, "cache.refreshed") != 0 || !cache)
        goto out;
    keys = json_object_get(ev, "keys");
    for (size_t c = 0; c < w->n_caches; c++) {
        struct fr_api_cache *ac = &w->caches[c];
        if (strcmp(cache, ac->cache->name) != 0 || (pipeline && strcmp(pipeline, ac->pipeline->name) != 0))
            continue;
        if (json_is_true(json_object_get(ev, "all")) || !json_is_array(keys)) {
            fr_debug("cache.refreshed %s: clearing the process cache", cache);
            fr_store_clear(ac->store);
            continue;
        }
        for (size_t i = 0; i < json_array_size(keys); i++) {
            json_t *k = json_array_get(keys, i);
            char num[32];
            if (json_is_string(k)) {
                fr_store_invalidate(ac->store, json_string_value(k), json_string_length(k));
            } else if (json_is_integer(k)) {
                int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(k));
                fr_store_invalidate(ac->store, num, (size_t)n);
            }
        }
        fr_debug("cache.refreshed %s: evicted %zu keys", cache, json_array_size(keys));
    }
out:
    json_decref(ev);
}

/* ---------------------------------------------------------------- setup */

/* The view of cache `name` of p that its routes read: the columns of the
 * model (or dataset) filling it, minus the key, and a store. */
static int cache_add(struct fr_api_worker *w, const struct fr_pipeline *p, const char *name, size_t entries,
                     char err[FR_ERR_LEN])
{
    const struct fr_cache *cache = fr_pipeline_cache(p, name);
    const struct fr_column *cols;
    size_t n_cols;
    const char *table;
    int key;
    struct fr_buf list;

    if (!cache || cache->kind != FR_CACHE_HASH) {
        snprintf(err, FR_ERR_LEN, "%s: cache %s must be of type hash for its routes", p->path, name);
        return -EINVAL;
    }
    const struct fr_model *model = fr_pipeline_model(p, cache->model);
    const struct fr_dataset *ds = model ? NULL : fr_pipeline_dataset(p, cache->model);
    if (model) {
        cols = model->columns;
        n_cols = model->n_columns;
        table = model->table;
    } else if (ds) {
        cols = ds->columns;
        n_cols = ds->n_columns;
        table = ds->table;
    } else {
        snprintf(err, FR_ERR_LEN, "%s: cache %s is filled from '%s', which is neither a model nor a dataset", p->path,
                 name, cache->model);
        return -EINVAL;
    }
    key = fr_column_index(cols, n_cols, cache->key_column);
    if (key < 0) {
        snprintf(err, FR_ERR_LEN, "%s: cache %s key '%s' is not a column of '%s'", p->path, name, cache->key_column,
                 cache->model);
        return -EINVAL;
    }
    w->caches = fr_xrealloc(w->caches, (w->n_caches + 1) * sizeof(*w->caches));
    struct fr_api_cache *c = &w->caches[w->n_caches];
    memset(c, 0, sizeof(*c));
    c->pipeline = p;
    c->cache = cache;
    c->table = table;
    c->key_column = cache->key_column;
    c->attrs = fr_xcalloc(n_cols, sizeof(*c->attrs));
    c->types = fr_xcalloc(n_cols, sizeof(*c->types));
    fr_buf_init(&list, 0);
    for (size_t i = 0; i < n_cols; i++) {
        if ((int)i == key)
            continue;
        if (c->n_attrs)
            (void)fr_buf_puts(&list, ", ");
        (void)fr_buf_puts(&list, cols[i].name);
        c->attrs[c->n_attrs] = cols[i].name;
        c->types[c->n_attrs] = cols[i].type;
        c->n_attrs++;
    }
    c->valid_list = fr_xstrdup(list.data ? list.data : "");
    fr_buf_deinit(&list);
    w->n_caches++; /* counted now: deinit frees what is set so far */
    struct fr_store_schema schema = {
        .cache = cache->name,
        .table = c->table,
        .key_column = c->key_column,
        .attrs = c->attrs,
        .types = c->types,
        .n_attrs = c->n_attrs,
    };
    c->store = fr_store_new(&w->app->redis, &w->app->pg, &schema, entries, w->metrics, err);
    if (c->store)
        fr_store_set_readpool(c->store, &w->readpool); /* read replicas for the PostgreSQL fallback */
    return c->store ? 0 : -EINVAL;
}

static size_t cache_entries_setting(void)
{
    const char *s = getenv("FRESHET_API_CACHE_ENTRIES");
    int64_t v;

    if (s && fr_parse_i64(s, strlen(s), &v) && v >= 0 && v <= 100000000)
        return (size_t)v; /* 0 turns the process cache off */
    if (s)
        fr_warn("FRESHET_API_CACHE_ENTRIES '%s' is not a number in 0..100000000: using %d", s, FR_API_CACHE_ENTRIES);
    return FR_API_CACHE_ENTRIES;
}

int fr_api_worker_init(struct fr_api_worker *w, struct fr_app *app, char err[FR_ERR_LEN])
{
    w->app = app;
    w->metrics = app->metrics;
    fr_buf_init(&w->out, 0);
    fr_buf_init(&w->q1, 0);
    fr_buf_init(&w->q2, 0);
    w->engine = fr_api_engine_new(w, err);
    if (!w->engine)
        return -EINVAL;
    size_t entries = 0;
    for (size_t i = 0; i < fr_api_engine_count(w->engine); i++) {
        const struct fr_pipeline *p;
        const struct fr_route *r = fr_api_engine_route_at(w->engine, i, &p);
        if (r->handler != FR_RH_CACHE_FIELD && r->handler != FR_RH_CACHE_HASH && r->handler != FR_RH_CACHE_MULTI)
            continue;
        if (cache_of(w, p, r->cache))
            continue;
        if (!w->n_caches)
            entries = cache_entries_setting();
        int rc = cache_add(w, p, r->cache, entries, err);
        if (rc != 0)
            return rc;
    }
    if (!w->n_caches)
        fr_debug("no route reads a cache: the cache handlers are off");
    struct fr_readpool_opts ro;
    if (fr_readpool_opts_load(&ro, err) != 0 ||
        fr_readpool_new(&w->readpool, &app->loop, app->settings.database_read_url, &app->pg, &ro, w->metrics, err) !=
            0)
        return -EINVAL;
    fr_readpool_set_redis(w->readpool, &app->redis); /* read-your-writes across api processes */
    w->hc = fr_httpcache_new(w);                     /* after the engine and the read pool */
    return 0;
}

void fr_api_worker_deinit(struct fr_api_worker *w)
{
    fr_api_series_free(w->series);
    w->series = NULL;
    fr_httpcache_free(w->hc);
    w->hc = NULL;
    fr_api_engine_free(w->engine);
    w->engine = NULL;
    for (size_t i = 0; i < w->n_caches; i++) {
        struct fr_api_cache *c = &w->caches[i];
        fr_store_free(c->store);
        free(c->attrs);
        free(c->types);
        free(c->valid_list);
    }
    free(w->caches);
    w->caches = NULL;
    w->n_caches = 0;
    fr_buf_deinit(&w->out);
    fr_buf_deinit(&w->q1);
    fr_buf_deinit(&w->q2);
}
