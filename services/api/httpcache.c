/* httpcache: ETag, Last-Modified and Age on the api's read answers, 304s,
 * the SQL-route answer cache and max_age reports (see httpcache.h). */
#include "httpcache.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anscache.h"
#include "api.h"
#include "datav.h"
#include "engine.h"
#include "log.h"
#include "names.h"
#include "sqlnames.h"

#define REPORT_EVERY_MS 60000u /* a stale route's event and log line, at most once a minute per worker */

struct hroute {
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_route *r;    /* borrowed */
    int *inputs;                 /* owned: datav entries its answers depend on */
    size_t n_inputs;
    bool versioned;          /* its answers can be tagged from versions (sql, crud) */
    bool dated;              /* every input is known: Last-Modified and Age even when untagged (sql) */
    uint64_t last_report_ms; /* monotonic: the last max_age event and log line */
    uint64_t *stale;         /* borrowed: api_stale_answers_total{route} (max_age routes) */
};

struct fr_httpcache {
    struct fr_api_worker *w; /* borrowed */
    fr_datav_t *dv;          /* owned */
    fr_anscache_t *ac;       /* owned */
    struct hroute *routes;   /* owned */
    size_t n;
    bool sql_tags;          /* false with read replicas: a lagging one could answer older data than its tag */
    uint64_t *not_modified; /* borrowed: api_not_modified_total */
};

/* ------------------------------------------------------------------ setup */

static void add_input(struct hroute *hr, int i)
{
    for (size_t k = 0; k < hr->n_inputs; k++)
        if (hr->inputs[k] == i)
            return;
    hr->inputs = fr_xrealloc(hr->inputs, (hr->n_inputs + 1) * sizeof(*hr->inputs));
    hr->inputs[hr->n_inputs++] = i;
}

struct scan_ctx {
    fr_httpcache_t *hc;
    struct hroute *hr;
    bool ok;
};

/* A schema-qualified name in a route's SQL: a dataset or model of a
 * pipeline is an input; another table of a pipeline's schema, or one of
 * freshet's, public or the catalogs, is data without a version (the route is
 * then not versioned); anything else is a table alias (e.column). */
static bool on_name(const char *schema, const char *name, void *data)
{
    struct scan_ctx *x = data;
    struct fr_app *app = x->hc->w->app;
    static const char *const unversioned[] = {"freshet", "public", "pg_catalog", "information_schema"};

    for (size_t i = 0; i < FR_ARRAY_LEN(unversioned); i++)
        if (strcmp(schema, unversioned[i]) == 0)
            return x->ok = false;
    for (size_t i = 0; i < app->n_pipelines; i++) {
        if (strcmp(app->pipelines[i]->name, schema) != 0)
            continue;
        int k = fr_datav_find(x->hc->dv, schema, name);
        if (k < 0)
            return x->ok = false;
        add_input(x->hr, k);
        return true;
    }
    return true;
}

static void setup_route(fr_httpcache_t *hc, struct hroute *hr)
{
    const struct fr_route *r = hr->r;
    const struct fr_pipeline *p = hr->p;
    int k;

    switch (r->handler) {
    case FR_RH_SQL: {
        struct scan_ctx x = {.hc = hc, .hr = hr, .ok = true};
        bool stable = fr_sqlnames_scan(r->sql, on_name, &x);
        if (x.ok && r->exists)
            stable = fr_sqlnames_scan(r->exists, on_name, &x) && stable;
        hr->dated = x.ok && hr->n_inputs > 0;
        hr->versioned = hr->dated && stable && strcmp(r->method, "GET") == 0;
        if (!hr->versioned)
            fr_debug("route %s: its SQL reads no declared dataset or model, or reads the clock: answers carry no "
                     "ETag and are not kept",
                     r->name);
        break;
    }
    case FR_RH_CACHE_FIELD:
    case FR_RH_CACHE_HASH: {
        const struct fr_cache *c = fr_pipeline_cache(p, r->cache);
        if (c && (k = fr_datav_find(hc->dv, p->name, c->model)) >= 0)
            add_input(hr, k);
        break;
    }
    case FR_RH_CRUD:
        if (r->dataset && (k = fr_datav_find(hc->dv, p->name, r->dataset)) >= 0) {
            add_input(hr, k);
            hr->versioned = true;
        }
        break;
    default:
        break;
    }
    if (r->max_age_s)
        hr->stale = fr_metrics_counter(hc->w->metrics, "api_stale_answers_total",
                                       "Answers whose data was older than the route's max_age", NULL);
}

static size_t answer_bytes_setting(void)
{
    const char *s = getenv("FRESHET_API_ANSWER_CACHE_BYTES");
    int64_t v;
    if (s && fr_parse_i64(s, strlen(s), &v) && v >= 0 && v <= ((int64_t)1 << 40))
        return (size_t)v; /* 0 turns the answer cache off */
    if (s)
        fr_warn("FRESHET_API_ANSWER_CACHE_BYTES '%s' is not a number of bytes in 0..2^40: using %u", s,
                FR_HTTPCACHE_BYTES);
    return FR_HTTPCACHE_BYTES;
}

fr_httpcache_t *fr_httpcache_new(struct fr_api_worker *w)
{
    fr_httpcache_t *hc = fr_xcalloc(1, sizeof(*hc));
    struct fr_app *app = w->app;
    size_t n = fr_api_engine_count(w->engine);

    hc->w = w;
    hc->dv = fr_datav_new((const struct fr_pipeline *const *)app->pipelines, app->n_pipelines, &app->pg);
    hc->ac = fr_anscache_new(answer_bytes_setting(), w->metrics);
    hc->sql_tags = w->readpool == NULL;
    hc->not_modified =
        fr_metrics_counter(w->metrics, "api_not_modified_total", "Conditional reads answered 304 Not Modified", NULL);
    hc->routes = fr_xcalloc(n ? n : 1, sizeof(*hc->routes));
    for (size_t i = 0; i < n; i++) {
        struct hroute *hr = &hc->routes[hc->n++];
        hr->r = fr_api_engine_route_at(w->engine, i, &hr->p);
        setup_route(hc, hr);
    }
    return hc;
}

void fr_httpcache_free(fr_httpcache_t *hc)
{
    if (!hc)
        return;
    for (size_t i = 0; i < hc->n; i++)
        free(hc->routes[i].inputs);
    free(hc->routes);
    fr_anscache_free(hc->ac);
    fr_datav_free(hc->dv);
    free(hc);
}

static struct hroute *find_route(fr_httpcache_t *hc, const struct fr_route *r, int *idx)
{
    for (size_t i = 0; i < hc->n; i++)
        if (hc->routes[i].r == r) {
            if (idx)
                *idx = (int)i;
            return &hc->routes[i];
        }
    return NULL;
}

/* ----------------------------------------------------------------- events */

void fr_httpcache_set_channel(fr_httpcache_t *hc, bool up)
{
    fr_datav_set_channel(hc->dv, up);
    fr_anscache_clear(hc->ac);
}

struct sweep_ctx {
    fr_httpcache_t *hc;
    int input;
};

static bool reads_input(int route, void *data)
{
    struct sweep_ctx *x = data;
    const struct hroute *hr = &x->hc->routes[route];
    for (size_t k = 0; k < hr->n_inputs; k++)
        if (hr->inputs[k] == x->input)
            return true;
    return false;
}

void fr_httpcache_on_event(fr_httpcache_t *hc, const char *payload, size_t len)
{
    json_error_t jerr;
    json_t *ev;

    if (!memmem(payload, len, "\"batch.loaded\"", 14) && !memmem(payload, len, "\"model.refreshed\"", 17) &&
        !memmem(payload, len, "\"dataset.retained\"", 18))
        return;
    ev = json_loadb(payload, len, 0, &jerr);
    if (!ev)
        return;
    if (json_is_object(ev)) {
        struct sweep_ctx x = {.hc = hc, .input = fr_datav_on_event(hc->dv, ev)};
        if (x.input == FR_DATAV_MANY)
            fr_anscache_clear(hc->ac); /* a batch that fed aggregate models: rare enough to drop all */
        else if (x.input >= 0)
            fr_anscache_sweep(hc->ac, reads_input, &x);
    }
    json_decref(ev);
}

/* ---------------------------------------------------------------- answers */

/* IMF-fixdate (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT". */
static void http_date(int64_t us, char out[40])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* A route whose data is older than its max_age: counted on every answer,
 * and at most once a minute an fr:events route.stale and a log line. */
static void check_age(fr_httpcache_t *hc, struct hroute *hr, int64_t modified_us, int64_t now_us)
{
    const struct fr_route *r = hr->r;
    if (!r->max_age_s || !modified_us || now_us - modified_us <= (int64_t)r->max_age_s * 1000000)
        return;
    (*hr->stale)++;
    uint64_t now_ms = fr_mono_ms();
    if (hr->last_report_ms && now_ms - hr->last_report_ms < REPORT_EVERY_MS)
        return;
    hr->last_report_ms = now_ms;
    int64_t age_s = (now_us - modified_us) / 1000000;
    char at[40];
    fr_format_timestamp(modified_us, at);
    fr_warn("route %s (%s): its data was last refreshed at %s, %" PRId64 " s ago, past its max_age of %" PRIu32
            " s; check its sources and the loader",
            r->name, r->path, at, age_s, r->max_age_s);
    fr_redis_t *redis = hc->w->app->redis;
    if (!redis || !fr_redis_connected(redis))
        return;
    char *ev = fr_names_event_route_stale(hr->p->name, r->name, r->path, age_s, r->max_age_s, at);
    if (fr_redis_command(redis, 1000, NULL, NULL, "PUBLISH %s %s", FR_NAMES_EVENTS, ev) != 0)
        fr_debug("route.stale of %s not published: Redis unavailable", r->name);
    free(ev);
}

static void add_headers(fr_http_req_t *req, const char *etag, int64_t modified_us, int64_t now_us)
{
    if (etag)
        fr_http_add_header(req, "ETag", etag);
    fr_http_add_header(req, "Cache-Control", "no-cache");
    if (!modified_us)
        return;
    char date[40], age[24];
    http_date(modified_us, date);
    int64_t a = now_us > modified_us ? (now_us - modified_us) / 1000000 : 0;
    snprintf(age, sizeof(age), "%" PRId64, a);
    fr_http_add_header(req, "Last-Modified", date);
    fr_http_add_header(req, "Age", age);
}

static void not_modified(fr_httpcache_t *hc, fr_http_req_t *req)
{
    (*hc->not_modified)++;
    fr_http_respond(req, 304, NULL, "", 0);
}

/* Tags a versioned read from the versions of its inputs; false (untagged)
 * while they are not known. */
static bool tag(fr_httpcache_t *hc, struct hroute *hr, struct fr_httpcache_req *st)
{
    struct fr_etag_digest d;
    int64_t newest = 0;
    fr_etag_digest_init(&d);
    fr_etag_digest_add(&d, st->key, st->klen);
    for (size_t k = 0; k < hr->n_inputs; k++) {
        int64_t v, us;
        if (!fr_datav_get(hc->dv, hr->inputs[k], &v, &us))
            return false;
        fr_etag_digest_i64(&d, v);
        if (us > newest)
            newest = us;
    }
    fr_etag_format(&d, st->etag);
    st->modified_us = newest;
    st->tagged = true;
    return true;
}

static void key_part(struct fr_buf *k, const char *s)
{
    if (!s) {
        (void)fr_buf_putc(k, '\0'); /* absent */
        return;
    }
    size_t n = strlen(s);
    (void)fr_buf_putc(k, '\1');
    (void)fr_buf_append(k, &n, sizeof(n));
    (void)fr_buf_append(k, s, n);
}

static char *arena_copy(fr_http_req_t *req, const struct fr_buf *b)
{
    char *p = fr_http_req_alloc(req, b->len ? b->len : 1);
    if (b->len)
        memcpy(p, b->data, b->len);
    return p;
}

/* Shared by sql and crud reads once st->key is set: the tag, max_age, 304.
 * found: the answer cannot be a 404 (a list), so "*" matches at once. */
static bool begin_tagged(fr_httpcache_t *hc, fr_http_req_t *req, struct hroute *hr, struct fr_httpcache_req *st,
                         bool found)
{
    if (!tag(hc, hr, st))
        return false;
    int64_t now = fr_wall_us();
    const char *inm = fr_http_req_header(req, "If-None-Match");
    check_age(hc, hr, st->modified_us, now);
    if (!found && fr_etag_is_star(inm)) {
        st->star = true;
        return false;
    }
    if (fr_etag_match(inm, st->etag)) {
        add_headers(req, st->etag, st->modified_us, now);
        not_modified(hc, req);
        return true;
    }
    return false;
}

bool fr_httpcache_sql_begin(fr_httpcache_t *hc, fr_http_req_t *req, const struct fr_route *r, const char **vals,
                            bool csv, struct fr_httpcache_req *st)
{
    int idx;
    struct hroute *hr = find_route(hc, r, &idx);
    memset(st, 0, sizeof(*st));
    st->route = -1;
    if (!hr || !hr->dated || !hc->sql_tags)
        return false;
    st->route = idx;
    if (!hr->versioned) { /* its answer follows the clock: dated, not tagged */
        int64_t v, us;
        for (size_t k = 0; k < hr->n_inputs; k++) {
            if (!fr_datav_get(hc->dv, hr->inputs[k], &v, &us))
                return false;
            if (us > st->modified_us)
                st->modified_us = us;
        }
        st->dated = true;
        check_age(hc, hr, st->modified_us, fr_wall_us());
        return false;
    }
    struct fr_buf k;
    fr_buf_init(&k, 0);
    key_part(&k, "sql");
    key_part(&k, hr->p->name);
    key_part(&k, r->name);
    key_part(&k, csv ? "csv" : "json");
    for (size_t i = 0; i < r->n_params; i++)
        key_part(&k, vals[i]);
    st->key = arena_copy(req, &k);
    st->klen = k.len;
    fr_buf_deinit(&k);
    bool found = (r->shape == FR_SHAPE_LIST || r->shape == FR_SHAPE_ENVELOPE) && !r->exists;
    if (begin_tagged(hc, req, hr, st, found))
        return true;
    if (!st->tagged)
        return false;
    const struct fr_answer *a = fr_anscache_get(hc->ac, st->key, st->klen);
    if (!a)
        return false;
    if (strcmp(a->etag, st->etag) != 0) { /* kept under older versions */
        fr_anscache_del(hc->ac, st->key, st->klen);
        return false;
    }
    add_headers(req, a->etag, st->modified_us, fr_wall_us());
    if (st->star)
        not_modified(hc, req); /* a kept answer is a found one */
    else
        fr_http_respond(req, 200, a->ctype, a->body, a->len);
    return true;
}

bool fr_httpcache_crud_begin(fr_httpcache_t *hc, fr_http_req_t *req, const struct fr_route *r,
                             struct fr_httpcache_req *st)
{
    int idx;
    struct hroute *hr = find_route(hc, r, &idx);
    memset(st, 0, sizeof(*st));
    st->route = -1;
    if (!hr || !hr->versioned)
        return false;
    st->route = idx;
    struct fr_buf k;
    fr_buf_init(&k, 0);
    key_part(&k, "crud");
    key_part(&k, hr->p->name);
    key_part(&k, r->name);
    key_part(&k, fr_http_req_path(req));
    key_part(&k, fr_http_req_query(req));
    st->key = arena_copy(req, &k);
    st->klen = k.len;
    fr_buf_deinit(&k);
    return begin_tagged(hc, req, hr, st, strcmp(fr_http_req_path(req), r->path) == 0 /* the list */);
}

bool fr_httpcache_answer(fr_httpcache_t *hc, fr_http_req_t *req, struct fr_httpcache_req *st, const char *ctype,
                         const char *body, size_t len)
{
    if (!st || st->route < 0 || (!st->tagged && !st->dated))
        return false;
    if (!st->tagged) {
        add_headers(req, NULL, st->modified_us, fr_wall_us());
        return false;
    }
    add_headers(req, st->etag, st->modified_us, fr_wall_us());
    if (body && hc->routes[st->route].r->handler == FR_RH_SQL) {
        struct fr_answer a = {
            .body = body, .len = len, .ctype = ctype, .modified_us = st->modified_us, .route = st->route};
        memcpy(a.etag, st->etag, sizeof(a.etag));
        fr_anscache_put(hc->ac, st->key, st->klen, &a);
    }
    if (body && st->star) { /* a found answer matches "*" */
        not_modified(hc, req);
        return true;
    }
    return false;
}

void fr_httpcache_respond_value(fr_httpcache_t *hc, fr_http_req_t *req, const struct fr_route *r, const char *body,
                                size_t len)
{
    struct hroute *hr = find_route(hc, r, NULL);
    struct fr_etag_digest d;
    char etag[FR_ETAG_LEN];
    int64_t modified = 0, v, now = fr_wall_us();

    /* the key's version is its value: the same bytes on any replica, after
     * any restart, and a new tag exactly when the value changes */
    fr_etag_digest_init(&d);
    fr_etag_digest_add(&d, "value", 5);
    fr_etag_digest_add(&d, r->name, strlen(r->name));
    if (hr)
        fr_etag_digest_add(&d, hr->p->name, strlen(hr->p->name));
    fr_etag_digest_add(&d, body, len);
    fr_etag_format(&d, etag);
    if (hr && hr->n_inputs && fr_datav_get(hc->dv, hr->inputs[0], &v, &modified))
        check_age(hc, hr, modified, now);
    add_headers(req, etag, modified, now);
    if (fr_etag_match(fr_http_req_header(req, "If-None-Match"), etag)) {
        not_modified(hc, req);
        return;
    }
    fr_http_respond(req, 200, "application/json", body, len);
}
