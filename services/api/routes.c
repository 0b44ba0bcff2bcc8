/* routes: request dispatch, the players routes (README "API (players pipeline)"), health,
 * readiness and metrics, with FastAPI-shaped errors. Hot path: a GET whose
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
#include "auth_gate.h"
#include "engine.h"
#include "log.h"

static const char *const route_names[FR_API_R_COUNT] = {
    "/player/attribute", "/player/{player_id}", "/player/attributes", "/healthz", "/readyz", "/metrics", "unmatched",
};
static const char *const method_names[FR_API_METHODS] = {"GET",   "POST", "PUT",     "DELETE",
                                                         "PATCH", "HEAD", "OPTIONS", "other"};
enum { M_GET = 0, M_POST = 1, M_OTHER = FR_API_METHODS - 1 };
/* statuses with a cached counter slot; others are looked up each time */
static const int status_slots[FR_API_STATUSES] = {200, 201, 202, 204, 400, 401, 403, 404,
                                                  405, 408, 413, 422, 429, 500, 502, 503};

/* An async players request: lives in the request's arena until answered. */
struct preq {
    struct fr_api_worker *w; /* borrowed */
    fr_http_req_t *req;      /* borrowed until answered */
    uint8_t route;
    uint8_t method;
    int attr;            /* FR_API_R_ATTR: the attribute */
    const uint32_t *sel; /* FR_API_R_ATTRS: selected attributes (arena) */
    size_t n_sel;
};

/* ---------------------------------------------------------------- helpers */

static int method_slot(const char *m)
{
    for (int i = 0; i < M_OTHER; i++)
        if (strcmp(m, method_names[i]) == 0)
            return i;
    return M_OTHER;
}

static int status_slot(int status)
{
    for (int i = 0; i < FR_API_STATUSES; i++)
        if (status_slots[i] == status)
            return i;
    return -1;
}

static uint64_t *req_counter(struct fr_api_worker *w, int route, int m, int status)
{
    int s = status_slot(status);
    char labels[160];
    uint64_t *c;

    if (s >= 0 && w->req_total[route][m][s])
        return w->req_total[route][m][s];
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%d\"", route_names[route], method_names[m],
             status);
    c = fr_metrics_counter(w->metrics, "http_requests_total", "HTTP requests by route, method and status", labels);
    if (s >= 0)
        w->req_total[route][m][s] = c;
    return c;
}

/* Answers the request (body copied) and accounts for it. */
static void finish(struct fr_api_worker *w, fr_http_req_t *req, int route, int m, int status, const char *ctype,
                   const char *body, size_t len)
{
    uint64_t now = fr_mono_ns();
    uint64_t start = fr_http_req_start_ns(req);
    double secs = now > start ? (double)(now - start) / 1e9 : 0.0;

    (*req_counter(w, route, m, status))++;
    fr_histogram_observe(w->latency[route], secs);
    if (fr_log_enabled(FR_LOG_DEBUG)) {
        char id[24];
        snprintf(id, sizeof(id), "%" PRIu64, fr_http_req_id(req));
        fr_log_kv(FR_LOG_DEBUG, "req", id, "%s %s -> %d in %.3f ms", fr_http_req_method(req), fr_http_req_path(req),
                  status, secs * 1e3);
    }
    fr_http_respond(req, status, ctype, body ? body : "", len);
}

static void finish_json(struct fr_api_worker *w, fr_http_req_t *req, int route, int m, int status,
                        const struct fr_buf *b)
{
    finish(w, req, route, m, status, "application/json", b->data, b->len);
}

static void finish_detail(struct fr_api_worker *w, fr_http_req_t *req, int route, int m, int status, const char *msg)
{
    struct fr_buf *b = &w->out;

    fr_buf_reset(b);
    (void)fr_buf_puts(b, "{\"detail\":");
    (void)fr_buf_json_str(b, msg, strlen(msg));
    (void)fr_buf_putc(b, '}');
    finish_json(w, req, route, m, status, b);
}

static void finish_405(struct fr_api_worker *w, fr_http_req_t *req, int route, int m, const char *allow)
{
    fr_http_add_header(req, "Allow", allow);
    finish_detail(w, req, route, m, 405, "Method Not Allowed");
}

/* ---- 422 lists: {"detail":[{"loc":[...],"msg":"...","type":"..."}, ...]} */

struct errs {
    struct fr_buf *b;
    size_t n;
};

static void errs_begin(struct errs *e, struct fr_buf *b)
{
    e->b = b;
    e->n = 0;
    fr_buf_reset(b);
    (void)fr_buf_puts(b, "{\"detail\":[");
}

/* loc: the JSON array text of the location, e.g. ["query","player_id"] */
static void errs_add(struct errs *e, const char *loc, const char *msg, size_t msg_len, const char *type)
{
    struct fr_buf *b = e->b;

    if (e->n++)
        (void)fr_buf_putc(b, ',');
    (void)fr_buf_printf(b, "{\"loc\":%s,\"msg\":", loc);
    (void)fr_buf_json_str(b, msg, msg_len);
    (void)fr_buf_printf(b, ",\"type\":\"%s\"}", type);
}

static void errs_add_s(struct errs *e, const char *loc, const char *msg, const char *type)
{
    errs_add(e, loc, msg, strlen(msg), type);
}

static void errs_end(struct errs *e)
{
    (void)fr_buf_puts(e->b, "]}");
}

enum idcheck {
    ID_OK = 0,
    ID_EMPTY,
    ID_LONG,
    ID_CTRL,
};

/* A key that may go into a Redis key name: 1..256 bytes, no control bytes. */
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
    return ID_OK;
}

static void errs_add_id(struct errs *e, const char *loc, enum idcheck c)
{
    switch (c) {
    case ID_EMPTY:
        errs_add_s(e, loc, "String should have at least 1 character", "string_too_short");
        break;
    case ID_LONG:
        errs_add_s(e, loc, "String should have at most 256 characters", "string_too_long");
        break;
    case ID_CTRL:
        errs_add_s(e, loc, "String should not contain control characters", "string_pattern_mismatch");
        break;
    case ID_OK:
        break;
    }
}

static int find_attr(const struct fr_api_worker *w, const char *name, size_t n)
{
    for (size_t i = 0; i < w->players.n_attrs; i++) {
        const char *a = w->players.attrs[i];
        if (strlen(a) == n && memcmp(a, name, n) == 0)
            return (int)i;
    }
    return -1;
}

/* "Unknown attribute 'x'. Valid attributes: a, b" into tmp (reset). */
static void unknown_attr_msg(const struct fr_api_worker *w, struct fr_buf *tmp, const char *name, size_t n)
{
    fr_buf_reset(tmp);
    (void)fr_buf_puts(tmp, "Unknown attribute '");
    (void)fr_buf_append(tmp, name, n);
    (void)fr_buf_puts(tmp, "'. Valid attributes: ");
    (void)fr_buf_puts(tmp, w->players.valid_list);
}

/* ---- rendering rows */

static void put_value(struct fr_buf *b, struct fr_row_view v, size_t j)
{
    (void)fr_buf_append(b, v.base + v.off[j], v.off[j + 1] - v.off[j]);
}

/* "name": value for attribute j */
static void put_attr(struct fr_buf *b, const struct fr_api_worker *w, struct fr_row_view v, size_t j)
{
    (void)fr_buf_json_str(b, w->players.attrs[j], strlen(w->players.attrs[j]));
    (void)fr_buf_putc(b, ':');
    put_value(b, v, j);
}

/* {"player_id": "...", "a": v, ...} */
static void render_player(struct fr_buf *b, const struct fr_api_worker *w, const char *id, size_t id_len,
                          struct fr_row_view v)
{
    fr_buf_reset(b);
    (void)fr_buf_putc(b, '{');
    (void)fr_buf_json_str(b, w->players.key_column, strlen(w->players.key_column));
    (void)fr_buf_putc(b, ':');
    (void)fr_buf_json_str(b, id, id_len);
    for (size_t j = 0; j < w->players.n_attrs; j++) {
        (void)fr_buf_putc(b, ',');
        put_attr(b, w, v, j);
    }
    (void)fr_buf_putc(b, '}');
}

static void render_one_attr(struct fr_buf *b, const struct fr_api_worker *w, struct fr_row_view v, size_t j)
{
    fr_buf_reset(b);
    (void)fr_buf_putc(b, '{');
    put_attr(b, w, v, j);
    (void)fr_buf_putc(b, '}');
}

static void finish_not_found(struct fr_api_worker *w, fr_http_req_t *req, int route, int m, const char *id,
                             size_t id_len)
{
    struct fr_buf *b = &w->out;

    fr_buf_reset(b);
    (void)fr_buf_puts(b, "{\"detail\":");
    /* the message is built inside the JSON string: escape the id as JSON,
     * then splice it between the quotes of the message */
    {
        struct fr_buf msg;
        fr_buf_init(&msg, 0);
        (void)fr_buf_puts(&msg, "Player '");
        (void)fr_buf_append(&msg, id, id_len);
        (void)fr_buf_puts(&msg, "' not found");
        (void)fr_buf_json_str(b, msg.data, msg.len);
        fr_buf_deinit(&msg);
    }
    (void)fr_buf_putc(b, '}');
    finish_json(w, req, route, m, 404, b);
}

/* ---------------------------------------------------------------- lookups */

static void on_lookup_done(fr_store_lookup_t *lk, void *data)
{
    struct preq *p = data;
    struct fr_api_worker *w = p->w;
    struct fr_buf *b = &w->out;
    const char *err = fr_store_lookup_error(lk);
    size_t id_len;
    const char *id;

    w->inflight--;
    if (err) {
        finish_detail(w, p->req, p->route, p->method, 503, err);
        goto out_free;
    }
    if (p->route == FR_API_R_ATTRS) {
        size_t n = fr_store_lookup_count(lk);
        bool first = true;

        fr_buf_reset(b);
        (void)fr_buf_puts(b, "{\"players\":{");
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
                put_attr(b, w, v, p->sel[k]);
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
        finish_json(w, p->req, p->route, p->method, 200, b);
        goto out_free;
    }

    id = fr_store_lookup_key(lk, 0, &id_len);
    if (fr_store_lookup_item(lk, 0) != FR_STORE_ITEM_FOUND) {
        finish_not_found(w, p->req, p->route, p->method, id, id_len);
        goto out_free;
    }
    if (p->route == FR_API_R_ATTR)
        render_one_attr(b, w, fr_store_lookup_row(lk, 0), (size_t)p->attr);
    else
        render_player(b, w, id, id_len, fr_store_lookup_row(lk, 0));
    finish_json(w, p->req, p->route, p->method, 200, b);

out_free:
    fr_store_lookup_free(lk);
}

static struct preq *preq_new(struct fr_api_worker *w, fr_http_req_t *req, int route, int m)
{
    struct preq *p = fr_http_req_alloc(req, sizeof(*p));

    memset(p, 0, sizeof(*p));
    p->w = w;
    p->req = req;
    p->route = (uint8_t)route;
    p->method = (uint8_t)m;
    return p;
}

/* Starts the lookup; the request is answered by on_lookup_done (maybe
 * before this returns). */
static void start(struct fr_api_worker *w, struct preq *p, fr_store_lookup_t *lk, bool probed)
{
    w->inflight++;
    fr_store_lookup_start(lk, probed, on_lookup_done, p);
}

/* One key: the process cache answers synchronously, else a lookup. */
static void lookup_one(struct fr_api_worker *w, fr_http_req_t *req, int route, int m, const char *id, size_t id_len,
                       int attr)
{
    const struct fr_lru_entry *e = fr_store_cached(w->store, id, id_len);
    struct preq *p;
    fr_store_lookup_t *lk;

    if (e) {
        if (route == FR_API_R_ATTR)
            render_one_attr(&w->out, w, fr_lru_entry_row(e), (size_t)attr);
        else
            render_player(&w->out, w, id, id_len, fr_lru_entry_row(e));
        finish_json(w, req, route, m, 200, &w->out);
        return;
    }
    p = preq_new(w, req, route, m);
    p->attr = attr;
    lk = fr_store_lookup_new(w->store, 1);
    (void)fr_store_lookup_add(lk, id, id_len);
    start(w, p, lk, true);
}

/* ---------------------------------------------------------------- handlers */

/* GET /player/attribute?player_id=&attribute_name= */
static void handle_attr(struct fr_api_worker *w, fr_http_req_t *req, int m)
{
    const int route = FR_API_R_ATTR;
    const char *q = fr_http_req_query(req);
    size_t qlen = strlen(q);
    bool has_id = fr_http_query_get(q, qlen, "player_id", &w->q1);
    bool has_attr = fr_http_query_get(q, qlen, "attribute_name", &w->q2);
    const char *id = has_id && w->q1.data ? w->q1.data : "";
    size_t id_len = has_id ? w->q1.len : 0;
    const char *name = has_attr && w->q2.data ? w->q2.data : "";
    size_t name_len = has_attr ? w->q2.len : 0;
    enum idcheck ic = ID_OK;
    struct errs e;
    int attr;

    errs_begin(&e, &w->out);
    if (!has_id)
        errs_add_s(&e, "[\"query\",\"player_id\"]", "Field required", "missing");
    else if ((ic = check_id(id, id_len)) != ID_OK)
        errs_add_id(&e, "[\"query\",\"player_id\"]", ic);
    if (!has_attr)
        errs_add_s(&e, "[\"query\",\"attribute_name\"]", "Field required", "missing");
    else if (name_len == 0)
        errs_add_id(&e, "[\"query\",\"attribute_name\"]", ID_EMPTY);
    if (e.n) {
        errs_end(&e);
        finish_json(w, req, route, m, 422, &w->out);
        return;
    }
    attr = find_attr(w, name, name_len);
    if (attr < 0) {
        struct fr_buf msg;
        fr_buf_init(&msg, 0);
        unknown_attr_msg(w, &msg, name, name_len);
        fr_buf_reset(&w->out);
        (void)fr_buf_puts(&w->out, "{\"detail\":");
        (void)fr_buf_json_str(&w->out, msg.data, msg.len);
        (void)fr_buf_putc(&w->out, '}');
        fr_buf_deinit(&msg);
        finish_json(w, req, route, m, 404, &w->out);
        return;
    }
    lookup_one(w, req, route, m, id, id_len, attr);
}

/* GET /player/{player_id}; seg is the raw path segment */
static void handle_player(struct fr_api_worker *w, fr_http_req_t *req, int m, const char *seg)
{
    const int route = FR_API_R_PLAYER;
    char id[FR_STORE_MAX_KEY + 1];
    size_t n = fr_api_pct_decode(seg, strlen(seg), id, FR_STORE_MAX_KEY);
    enum idcheck ic = n > FR_STORE_MAX_KEY ? ID_LONG : check_id(id, n);

    if (ic != ID_OK) {
        struct errs e;
        errs_begin(&e, &w->out);
        errs_add_id(&e, "[\"path\",\"player_id\"]", ic);
        errs_end(&e);
        finish_json(w, req, route, m, 422, &w->out);
        return;
    }
    lookup_one(w, req, route, m, id, n, -1);
}

/* POST /player/attributes {"player_ids": [...], "attribute_names": [...]} */
static void handle_attrs(struct fr_api_worker *w, fr_http_req_t *req, int m)
{
    const int route = FR_API_R_ATTRS;
    size_t body_len = 0;
    const char *body = fr_http_req_body(req, &body_len);
    json_error_t jerr;
    json_t *root = NULL;
    json_t *ids, *names;
    struct errs e;
    char loc[64];
    struct fr_buf msg;
    uint32_t *sel = NULL;
    size_t n_sel = 0;
    struct preq *p;
    fr_store_lookup_t *lk;

    fr_buf_init(&msg, 0);
    errs_begin(&e, &w->out);
    if (!body || body_len == 0) {
        errs_add_s(&e, "[\"body\"]", "Field required", "missing");
        goto out_errors;
    }
    root = json_loadb(body, body_len, 0, &jerr);
    if (!root) {
        (void)fr_buf_printf(&msg, "JSON decode error: %s", jerr.text);
        errs_add(&e, "[\"body\"]", msg.data, msg.len, "json_invalid");
        goto out_errors;
    }
    if (!json_is_object(root)) {
        errs_add_s(&e, "[\"body\"]", "Input should be a valid dictionary or object to extract fields from",
                   "model_attributes_type");
        goto out_errors;
    }

    ids = json_object_get(root, "player_ids");
    if (!ids) {
        errs_add_s(&e, "[\"body\",\"player_ids\"]", "Field required", "missing");
    } else if (!json_is_array(ids)) {
        errs_add_s(&e, "[\"body\",\"player_ids\"]", "Input should be a valid list", "list_type");
    } else if (json_array_size(ids) > FR_API_MAX_IDS) {
        fr_buf_reset(&msg);
        (void)fr_buf_printf(&msg, "List should have at most %d items after validation, not %zu", FR_API_MAX_IDS,
                            json_array_size(ids));
        errs_add(&e, "[\"body\",\"player_ids\"]", msg.data, msg.len, "too_long");
    } else {
        for (size_t i = 0; i < json_array_size(ids); i++) {
            json_t *v = json_array_get(ids, i);
            snprintf(loc, sizeof(loc), "[\"body\",\"player_ids\",%zu]", i);
            if (!json_is_string(v))
                errs_add_s(&e, loc, "Input should be a valid string", "string_type");
            else
                errs_add_id(&e, loc, check_id(json_string_value(v), json_string_length(v)));
        }
    }

    names = json_object_get(root, "attribute_names");
    if (!names || json_is_null(names)) {
        n_sel = w->players.n_attrs;
        sel = fr_http_req_alloc(req, (n_sel ? n_sel : 1) * sizeof(*sel));
        for (size_t j = 0; j < n_sel; j++)
            sel[j] = (uint32_t)j;
    } else if (!json_is_array(names)) {
        errs_add_s(&e, "[\"body\",\"attribute_names\"]", "Input should be a valid list", "list_type");
    } else {
        size_t nn = json_array_size(names);
        sel = fr_http_req_alloc(req, (w->players.n_attrs ? w->players.n_attrs : 1) * sizeof(*sel));
        for (size_t i = 0; i < nn; i++) {
            json_t *v = json_array_get(names, i);
            int a;
            snprintf(loc, sizeof(loc), "[\"body\",\"attribute_names\",%zu]", i);
            if (!json_is_string(v)) {
                errs_add_s(&e, loc, "Input should be a valid string", "string_type");
                continue;
            }
            a = find_attr(w, json_string_value(v), json_string_length(v));
            if (a < 0) {
                unknown_attr_msg(w, &msg, json_string_value(v), json_string_length(v));
                errs_add(&e, loc, msg.data, msg.len, "value_error");
                continue;
            }
            bool dup = false;
            for (size_t k = 0; k < n_sel && !dup; k++)
                dup = sel[k] == (uint32_t)a;
            if (!dup)
                sel[n_sel++] = (uint32_t)a;
        }
    }
    if (e.n)
        goto out_errors;

    p = preq_new(w, req, route, m);
    p->sel = sel;
    p->n_sel = n_sel;
    lk = fr_store_lookup_new(w->store, json_array_size(ids));
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        (void)fr_store_lookup_add(lk, json_string_value(v), json_string_length(v));
    }
    json_decref(root);
    fr_buf_deinit(&msg);
    start(w, p, lk, false);
    return;

out_errors:
    errs_end(&e);
    json_decref(root);
    fr_buf_deinit(&msg);
    finish_json(w, req, route, m, 422, &w->out);
}

static void handle_readyz(struct fr_api_worker *w, fr_http_req_t *req, int m)
{
    struct fr_app *app = w->app;
    bool redis_ok = app->redis && fr_redis_connected(app->redis);
    bool pg_ok = app->pg && fr_pg_connected(app->pg);

    fr_buf_reset(&w->out);
    (void)fr_buf_printf(&w->out, "{\"redis\":%s,\"postgres\":%s}", redis_ok ? "true" : "false",
                        pg_ok ? "true" : "false");
    finish_json(w, req, FR_API_R_READYZ, m, redis_ok && pg_ok ? 200 : 503, &w->out);
}

static void handle_metrics(struct fr_api_worker *w, fr_http_req_t *req, int m)
{
    fr_buf_reset(&w->out);
    (void)fr_metrics_render(w->metrics, &w->out);
    finish(w, req, FR_API_R_METRICS, m, 200, "text/plain; version=0.0.4", w->out.data, w->out.len);
}

void fr_api_handle(fr_http_req_t *req, void *data)
{
    struct fr_api_worker *w = data;
    const char *path = fr_http_req_path(req);
    int m = method_slot(fr_http_req_method(req));

    /* Declared routes first (engine.c): the players routes are among them. */
    if (fr_api_engine_handle(w->engine, req))
        return;
    if (strcmp(path, "/openapi.json") == 0) {
        if (m != M_GET) {
            finish_405(w, req, FR_API_R_UNMATCHED, m, "GET");
            return;
        }
        fr_buf_reset(&w->out);
        fr_api_openapi((const struct fr_pipeline *const *)w->app->pipelines, w->app->n_pipelines, w->auth != NULL,
                       &w->out);
        finish_json(w, req, FR_API_R_UNMATCHED, m, 200, &w->out);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        static const char ok[] = "{\"status\":\"ok\"}";
        if (m == M_GET)
            finish(w, req, FR_API_R_HEALTHZ, m, 200, "application/json", ok, sizeof(ok) - 1);
        else
            finish_405(w, req, FR_API_R_HEALTHZ, m, "GET");
        return;
    } else if (strcmp(path, "/readyz") == 0) {
        if (m == M_GET)
            handle_readyz(w, req, m);
        else
            finish_405(w, req, FR_API_R_READYZ, m, "GET");
        return;
    } else if (strcmp(path, "/metrics") == 0) {
        if (m == M_GET)
            handle_metrics(w, req, m);
        else
            finish_405(w, req, FR_API_R_METRICS, m, "GET");
        return;
    }
    finish_detail(w, req, FR_API_R_UNMATCHED, m, 404, "Not Found");
}

void fr_api_cache_route(struct fr_api_worker *w, fr_http_req_t *req, int handler, const char *seg, size_t seg_len)
{
    int m = method_slot(fr_http_req_method(req));
    (void)seg_len; /* seg is the path's last segment: NUL-terminated at the path's end */
    if (!w->has_players) {
        finish_detail(w, req, FR_API_R_UNMATCHED, m, 503, "the cache behind this route is not configured");
        return;
    }
    if (handler == FR_RH_CACHE_FIELD)
        handle_attr(w, req, m);
    else if (handler == FR_RH_CACHE_HASH)
        handle_player(w, req, m, seg);
    else
        handle_attrs(w, req, m);
}

static enum fr_auth_role route_role(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *method = fr_http_req_method(req), *path = fr_http_req_path(req);
    const char *role = fr_api_engine_role(w->engine, method, path);
    enum fr_auth_role r;
    if (role && fr_auth_role_parse(role, strlen(role), &r))
        return r;
    return fr_api_auth_default_role(method, path);
}

/* ---------------------------------------------------------------- events */

void fr_api_on_event(struct fr_api_worker *w, const char *payload, size_t len)
{
    json_error_t jerr;
    json_t *ev, *keys;
    const char *type, *cache, *pipeline;

    if (!w->store)
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
    if (!type || strcmp(type, "cache.refreshed") != 0 || !cache || strcmp(cache, w->players.cache->name) != 0 ||
        (pipeline && strcmp(pipeline, w->players.pipeline->name) != 0))
        goto out;

    keys = json_object_get(ev, "keys");
    if (json_is_true(json_object_get(ev, "all")) || !json_is_array(keys)) {
        fr_debug("cache.refreshed %s: clearing the process cache", cache);
        fr_store_clear(w->store);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(keys); i++) {
        json_t *k = json_array_get(keys, i);
        char num[32];
        if (json_is_string(k)) {
            fr_store_invalidate(w->store, json_string_value(k), json_string_length(k));
        } else if (json_is_integer(k)) {
            int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(k));
            fr_store_invalidate(w->store, num, (size_t)n);
        }
    }
    fr_debug("cache.refreshed %s: evicted %zu keys", cache, json_array_size(keys));
out:
    json_decref(ev);
}

/* ---------------------------------------------------------------- setup */

static int find_players(struct fr_api_worker *w, char err[FR_ERR_LEN])
{
    struct fr_api_players *pl = &w->players;
    const struct fr_cache *cache = NULL;
    const struct fr_pipeline *p = NULL;
    const struct fr_column *cols;
    size_t n_cols;
    int key;
    struct fr_buf list;

    const struct fr_route *cr = fr_api_engine_cache_route(w->engine, &p);
    if (cr)
        cache = fr_pipeline_cache(p, cr->cache);
    if (!cache) {
        fr_debug("no route reads a cache: the cache handlers are off");
        return 0;
    }
    if (cache->kind != FR_CACHE_HASH) {
        snprintf(err, FR_ERR_LEN, "%s: cache user_panel must be of type hash for the /player routes", p->path);
        return -EINVAL;
    }
    const struct fr_model *model = fr_pipeline_model(p, cache->model);
    const struct fr_dataset *ds = model ? NULL : fr_pipeline_dataset(p, cache->model);
    if (model) {
        cols = model->columns;
        n_cols = model->n_columns;
        pl->table = model->table;
    } else if (ds) {
        cols = ds->columns;
        n_cols = ds->n_columns;
        pl->table = ds->table;
    } else {
        snprintf(err, FR_ERR_LEN, "%s: cache user_panel is filled from '%s', which is neither a model nor a dataset",
                 p->path, cache->model);
        return -EINVAL;
    }
    key = fr_column_index(cols, n_cols, cache->key_column);
    if (key < 0) {
        snprintf(err, FR_ERR_LEN, "%s: cache user_panel key '%s' is not a column of '%s'", p->path, cache->key_column,
                 cache->model);
        return -EINVAL;
    }
    pl->pipeline = p;
    pl->cache = cache;
    pl->key_column = cache->key_column;
    pl->attrs = fr_xcalloc(n_cols, sizeof(*pl->attrs));
    pl->types = fr_xcalloc(n_cols, sizeof(*pl->types));
    fr_buf_init(&list, 0);
    for (size_t i = 0; i < n_cols; i++) {
        if ((int)i == key)
            continue;
        if (pl->n_attrs)
            (void)fr_buf_puts(&list, ", ");
        (void)fr_buf_puts(&list, cols[i].name);
        pl->attrs[pl->n_attrs] = cols[i].name;
        pl->types[pl->n_attrs] = cols[i].type;
        pl->n_attrs++;
    }
    pl->valid_list = fr_xstrdup(list.data ? list.data : "");
    fr_buf_deinit(&list);
    w->has_players = true;
    return 0;
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
    char labels[96];
    int rc;

    w->app = app;
    w->metrics = app->metrics;
    fr_buf_init(&w->out, 0);
    fr_buf_init(&w->q1, 0);
    fr_buf_init(&w->q2, 0);
    for (int r = 0; r < FR_API_R_COUNT; r++) {
        snprintf(labels, sizeof(labels), "route=\"%s\"", route_names[r]);
        w->latency[r] = fr_metrics_histogram(w->metrics, "http_request_duration_seconds",
                                             "HTTP request latency by route", labels);
    }
    w->engine = fr_api_engine_new(w, err);
    if (!w->engine)
        return -EINVAL;
    w->route_role = route_role;
    rc = find_players(w, err);
    if (rc != 0)
        return rc;
    if (w->has_players) {
        struct fr_store_schema schema = {
            .cache = w->players.cache->name,
            .table = w->players.table,
            .key_column = w->players.key_column,
            .attrs = w->players.attrs,
            .types = w->players.types,
            .n_attrs = w->players.n_attrs,
        };
        w->store = fr_store_new(&app->redis, &app->pg, &schema, cache_entries_setting(), w->metrics, err);
        if (!w->store)
            return -EINVAL;
    }
    return 0;
}

void fr_api_worker_deinit(struct fr_api_worker *w)
{
    fr_api_engine_free(w->engine);
    w->engine = NULL;
    fr_store_free(w->store);
    w->store = NULL;
    free(w->players.attrs);
    free(w->players.types);
    free(w->players.valid_list);
    memset(&w->players, 0, sizeof(w->players));
    fr_buf_deinit(&w->out);
    fr_buf_deinit(&w->q1);
    fr_buf_deinit(&w->q2);
}
