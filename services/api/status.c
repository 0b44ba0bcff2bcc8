/* status: GET /v1/status (see status.h). One gather per request: the daemon
 * index, then every status key and every dataset's stream facts, sent at
 * once on the worker's command connection; when the last reply is in, the
 * graph of every pipeline is built from the configuration and the facts
 * are merged into its nodes. The request stays valid until answered (even
 * if its client left); a lost Redis answers NULL replies, and the answer
 * then says what it could not read (null state, health "unknown"). */
#include "status.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "config_route.h"
#include "log.h"
#include "names.h"

struct ds_facts {
    const struct fr_dataset *ds; /* borrowed */
    json_int_t length, lag, pending, dead_letters;
    bool has_length, has_group, has_lag, has_dlq;
};

struct gather {
    struct fr_api_worker *w; /* borrowed */
    fr_http_req_t *req;      /* borrowed until answered */
    size_t outstanding;      /* replies awaited */
    bool redis_ok;           /* every reply came */
    json_t *daemons;         /* owned: array of the status objects */
    struct ds_facts *ds;     /* owned: one per dataset of every pipeline */
    size_t n_ds;
};

static void finish(struct gather *g);

static void done_one(struct gather *g)
{
    if (--g->outstanding == 0)
        finish(g);
}

/* ---- replies ------------------------------------------------------------------ */

static void on_status_key(fr_redis_t *r, redisReply *reply, void *data)
{
    struct gather *g = data;
    json_t *o;

    (void)r;
    if (!reply)
        g->redis_ok = false;
    else if (reply->type == REDIS_REPLY_STRING && (o = json_loadb(reply->str, reply->len, 0, NULL)) != NULL) {
        if (json_is_object(o))
            json_array_append(g->daemons, o);
        json_decref(o);
    }
    done_one(g);
}

/* The callbacks of one dataset need both the facts and the gather: they
 * get a small struct pointing at both. */
struct ds_cb {
    struct gather *g;
    struct ds_facts *f;
    int what; /* 0 stream XLEN, 1 XINFO GROUPS, 2 dlq XLEN */
};

static bool field_int(const redisReply *kv, const char *name, json_int_t *out, bool *nil)
{
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || strcmp(k->str, name) != 0)
            continue;
        if (v->type == REDIS_REPLY_INTEGER) {
            *out = (json_int_t)v->integer;
            return true;
        }
        if (nil)
            *nil = true;
        return false;
    }
    return false;
}

static bool field_is(const redisReply *kv, const char *name, const char *value)
{
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
            return v->type == REDIS_REPLY_STRING && strcmp(v->str, value) == 0;
    }
    return false;
}

static void on_ds_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ds_cb *cb = data;
    struct gather *g = cb->g;
    struct ds_facts *f = cb->f;

    (void)r;
    if (!reply) {
        g->redis_ok = false;
    } else if (cb->what == 0 && reply->type == REDIS_REPLY_INTEGER) {
        f->length += (json_int_t)reply->integer; /* summed over the dataset's partitions */
        f->has_length = true;
    } else if (cb->what == 2 && reply->type == REDIS_REPLY_INTEGER) {
        f->dead_letters = (json_int_t)reply->integer;
        f->has_dlq = true;
    } else if (cb->what == 1 && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *kv = reply->element[i];
            if (kv->type != REDIS_REPLY_ARRAY || !field_is(kv, "name", FR_NAMES_GROUP))
                continue;
            json_int_t pending = 0, lag = 0;
            f->has_group = true;
            (void)field_int(kv, "pending", &pending, NULL);
            f->pending += pending;
            if (field_int(kv, "lag", &lag, NULL)) {
                f->lag += lag;
                f->has_lag = true;
            }
        }
    }
    free(cb);
    done_one(g);
}

static void send_ds(struct gather *g, struct ds_facts *f, int what, const char *cmd, const char *key)
{
    struct ds_cb *cb = fr_xcalloc(1, sizeof(*cb));
    const char *argv[3];
    size_t lens[3];
    int argc = 0;

    cb->g = g;
    cb->f = f;
    cb->what = what;
    if (what == 1) {
        argv[argc] = "XINFO";
        lens[argc++] = 5;
        argv[argc] = "GROUPS";
        lens[argc++] = 6;
    } else {
        argv[argc] = cmd;
        lens[argc++] = strlen(cmd);
    }
    argv[argc] = key;
    lens[argc++] = strlen(key);
    g->outstanding++;
    if (fr_redis_commandv(g->w->app->redis, 0, on_ds_reply, cb, argc, argv, lens) != 0) {
        free(cb);
        g->outstanding--;
        g->redis_ok = false;
    }
}

static void on_index(fr_redis_t *r, redisReply *reply, void *data)
{
    struct gather *g = data;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        g->redis_ok = false;
    } else {
        for (size_t i = 0; i < reply->elements && i < FR_API_STATUS_MAX_DAEMONS; i++) {
            const redisReply *k = reply->element[i];
            char daemon[32];
            if (k->type != REDIS_REPLY_STRING || !fr_names_status_daemon(k->str, daemon, sizeof(daemon)))
                continue;
            {
                const char *argv[] = {"GET", k->str};
                size_t lens[] = {3, k->len};
                g->outstanding++;
                if (fr_redis_commandv(r, 0, on_status_key, g, 2, argv, lens) != 0) {
                    g->outstanding--;
                    g->redis_ok = false;
                }
            }
        }
    }
    done_one(g);
}

/* ---- merging what the daemons said --------------------------------------------- */

static int64_t ts_us(json_t *v)
{
    int64_t us = 0;
    const char *s = json_string_value(v);
    if (!s || !fr_parse_timestamp(s, strlen(s), &us))
        return 0;
    return us;
}

static void add_int(json_t *dst, const char *k, json_t *v)
{
    json_t *cur = json_object_get(dst, k);
    if (!json_is_number(v))
        return;
    if (json_is_integer(v) && (!cur || json_is_integer(cur)))
        json_object_set_new(dst, k, json_integer((cur ? json_integer_value(cur) : 0) + json_integer_value(v)));
    else
        json_object_set_new(dst, k, json_real((cur ? json_number_value(cur) : 0) + json_number_value(v)));
}

/* The newer of two timestamps at k (ISO strings) stays in dst. */
static bool take_newer(json_t *dst, const char *k, json_t *v)
{
    if (ts_us(v) > ts_us(json_object_get(dst, k))) {
        json_object_set(dst, k, v);
        return true;
    }
    return false;
}

/* What every daemon instance reported about the section `sec` entry
 * `name` ("sources" / "players.events_drop"), merged: counts summed, the
 * newest of each time, the rest from the instance with the newest time. */
static json_t *merged(struct gather *g, const char *daemon, const char *sec, const char *name)
{
    json_t *out = NULL, *d;
    size_t i;

    json_array_foreach(g->daemons, i, d)
    {
        json_t *e = json_object_get(json_object_get(d, sec), name), *v;
        const char *k;
        if (!json_is_object(e) || !json_is_string(json_object_get(d, "daemon")) ||
            strcmp(json_string_value(json_object_get(d, "daemon")), daemon) != 0)
            continue;
        if (!out) {
            out = json_deep_copy(e);
            json_object_set_new(out, "reported_by", json_array());
            json_array_append(json_object_get(out, "reported_by"), json_object_get(d, "instance"));
            if (json_is_true(json_object_get(e, "lease_held")))
                json_object_set(out, "lease_holder", json_object_get(d, "instance"));
            if (json_is_object(json_object_get(out, "last_run")))
                json_object_set(json_object_get(out, "last_run"), "by", json_object_get(d, "instance"));
            continue;
        }
        json_array_append(json_object_get(out, "reported_by"), json_object_get(d, "instance"));
        json_object_foreach(e, k, v)
        {
            if (strcmp(k, "last_run") == 0) {
                if (ts_us(json_object_get(v, "at")) > ts_us(json_object_get(json_object_get(out, k), "at"))) {
                    json_object_set_new(out, k, json_deep_copy(v));
                    json_object_set(json_object_get(out, k), "by", json_object_get(d, "instance"));
                }
            } else if (strcmp(k, "running") == 0 || strcmp(k, "lease_held") == 0 || strcmp(k, "pending") == 0) {
                if (json_is_true(v))
                    json_object_set(out, k, v);
            } else if (strcmp(k, "next_run") == 0) {
                int64_t a = ts_us(v), b = ts_us(json_object_get(out, k));
                if (a && (!b || a < b))
                    json_object_set(out, k, v);
            } else if (json_is_string(v) && ts_us(v)) {
                if (take_newer(out, k, v) && strcmp(k, "last_refresh_at") == 0) {
                    json_object_set(out, "duration_ms", json_object_get(e, "duration_ms"));
                    json_object_set(out, "keys", json_object_get(e, "keys"));
                    json_object_set(out, "full", json_object_get(e, "full"));
                }
            } else if (json_is_number(v) && strcmp(k, "duration_ms") != 0 && strcmp(k, "keys") != 0) {
                add_int(out, k, v);
            }
        }
        if (json_is_true(json_object_get(e, "lease_held")))
            json_object_set(out, "lease_holder", json_object_get(d, "instance"));
    }
    return out;
}

/* ---- the graph ------------------------------------------------------------------ */

static json_t *node(json_t *nodes, const char *kind, const char *name)
{
    json_t *n = json_object();
    char *id = fr_xasprintf("%s:%s", kind, name);
    json_object_set_new(n, "id", json_string(id));
    json_object_set_new(n, "kind", json_string(kind));
    json_object_set_new(n, "name", json_string(name));
    json_array_append_new(nodes, n);
    free(id);
    return n;
}

static void edge(json_t *edges, const char *fk, const char *from, const char *tk, const char *to)
{
    char *a = fr_xasprintf("%s:%s", fk, from), *b = fr_xasprintf("%s:%s", tk, to);
    json_t *e = json_object();
    json_object_set_new(e, "from", json_string(a));
    json_object_set_new(e, "to", json_string(b));
    json_array_append_new(edges, e);
    free(a);
    free(b);
}

static void set_state(json_t *n, json_t *state, const char *health)
{
    json_object_set_new(n, "health", json_string(health));
    json_object_set_new(n, "state", state ? state : json_null());
}

static const char *src_kind(enum fr_source_kind k)
{
    return k == FR_SRC_FILE ? "file" : k == FR_SRC_PUSH ? "push" : "http_json";
}

static const char *handler_name(enum fr_route_handler h)
{
    switch (h) {
    case FR_RH_SQL:
        return "sql";
    case FR_RH_STATIC:
        return "static";
    case FR_RH_CACHE_FIELD:
        return "cache_field";
    case FR_RH_CACHE_HASH:
        return "cache_hash";
    case FR_RH_CACHE_MULTI:
        return "cache_multi";
    case FR_RH_PUSH:
        return "push";
    case FR_RH_CRUD:
        return "crud";
    }
    return "unknown";
}

/* Does the route's SQL read this table ("players.user_panel")? A word
 * match, enough to draw the edge. */
static bool sql_reads(const char *sql, const char *table)
{
    size_t n = strlen(table);
    for (const char *p = sql ? strstr(sql, table) : NULL; p; p = strstr(p + 1, table)) {
        char after = p[n];
        char before = p == sql ? ' ' : p[-1];
        if ((after == '\0' || !(after == '_' || (after >= 'a' && after <= 'z') || (after >= '0' && after <= '9'))) &&
            !(before == '_' || before == '.' || (before >= 'a' && before <= 'z')))
            return true;
    }
    return false;
}

static json_t *pipeline_graph(struct gather *g, const struct fr_pipeline *p, struct ds_facts *facts, int64_t now_us)
{
    json_t *out = json_object(), *nodes = json_array(), *edges = json_array();
    char qn[512];

    json_object_set_new(out, "name", json_string(p->name));
    for (size_t i = 0; i < p->n_sources; i++) {
        const struct fr_source *s = &p->sources[i];
        json_t *n = node(nodes, "source", s->name), *st;
        const char *health = "unknown";
        json_object_set_new(n, "type", json_string(src_kind(s->kind)));
        snprintf(qn, sizeof(qn), "%s.%s", p->name, s->name);
        st = s->kind == FR_SRC_PUSH ? NULL : merged(g, "ingest", "sources", qn);
        if (s->kind == FR_SRC_PUSH)
            health = "ok"; /* rows come through the api itself */
        else if (st)
            health = json_is_string(json_object_get(json_object_get(st, "last_run"), "result")) &&
                             strcmp(json_string_value(json_object_get(json_object_get(st, "last_run"), "result")),
                                    "failed") == 0
                         ? "failing"
                         : "ok";
        set_state(n, st, health);
        edge(edges, "source", s->name, "dataset", s->dataset);
    }
    for (size_t i = 0; i < p->n_datasets; i++) {
        const struct fr_dataset *ds = &p->datasets[i];
        struct ds_facts *f = &facts[i];
        json_t *n = node(nodes, "dataset", ds->name);
        json_t *st = merged(g, "loader", "datasets", ds->qname);
        const char *health = st ? "ok" : "unknown";
        json_object_set_new(n, "qname", json_string(ds->qname));
        json_object_set_new(n, "table", json_string(ds->table));
        if (!st)
            st = json_object();
        json_object_set_new(st, "stream_length", f->has_length ? json_integer(f->length) : json_null());
        json_object_set_new(st, "pending", f->has_group ? json_integer(f->pending) : json_null());
        json_object_set_new(st, "backlog",
                            f->has_group && f->has_lag ? json_integer(f->lag + f->pending) : json_null());
        json_object_set_new(st, "dead_letters", f->has_dlq ? json_integer(f->dead_letters) : json_null());
        if (f->has_dlq && f->dead_letters > 0 && strcmp(health, "ok") == 0)
            health = "warning";
        set_state(n, st, health);
    }
    for (size_t i = 0; i < p->n_models; i++) {
        const struct fr_model *m = &p->models[i];
        json_t *n = node(nodes, "model", m->name);
        json_t *st;
        int64_t at;
        snprintf(qn, sizeof(qn), "%s.%s", p->name, m->name);
        st = merged(g, "loader", "models", qn);
        json_object_set_new(n, "table", json_string(m->table));
        if (st && (at = ts_us(json_object_get(st, "last_refresh_at"))) > 0)
            json_object_set_new(st, "data_age_s", json_real((double)(now_us - at) / 1e6));
        set_state(n, st,
                  !st                                                         ? "unknown"
                  : json_array_size(json_object_get(st, "failing_tests")) > 0 ? "failing"
                                                                              : "ok");
        for (size_t k = 0; k < m->n_inputs; k++)
            edge(edges, fr_pipeline_dataset(p, m->inputs[k]) ? "dataset" : "model", m->inputs[k], "model", m->name);
    }
    for (size_t i = 0; i < p->n_caches; i++) {
        const struct fr_cache *c = &p->caches[i];
        json_t *n = node(nodes, "cache", c->name);
        json_t *st;
        snprintf(qn, sizeof(qn), "%s.%s", p->name, c->name);
        st = merged(g, "loader", "caches", qn);
        json_object_set_new(n, "format", json_string(c->kind == FR_CACHE_JSON ? "json" : "hash"));
        set_state(n, st, st ? "ok" : "unknown");
        edge(edges, fr_pipeline_dataset(p, c->model) ? "dataset" : "model", c->model, "cache", c->name);
    }
    for (size_t i = 0; i < p->n_routes; i++) {
        const struct fr_route *r = &p->routes[i];
        char *name = fr_xasprintf("%s %s", r->method, r->path);
        json_t *n = node(nodes, "route", name);
        json_object_set_new(n, "method", json_string(r->method));
        json_object_set_new(n, "path", json_string(r->path));
        json_object_set_new(n, "handler", json_string(handler_name(r->handler)));
        json_object_set_new(n, "role", json_string(r->role));
        set_state(n, NULL, "ok");
        if (r->cache && *r->cache)
            edge(edges, "cache", r->cache, "route", name);
        if (r->dataset && *r->dataset)
            edge(edges, "route", name, "dataset", r->dataset); /* writes flow into the dataset */
        if (r->handler == FR_RH_SQL || r->handler == FR_RH_CRUD) {
            for (size_t d = 0; d < p->n_datasets; d++)
                if (sql_reads(r->sql, p->datasets[d].table) ||
                    (r->handler == FR_RH_CRUD && r->dataset && strcmp(r->dataset, p->datasets[d].name) == 0))
                    edge(edges, "dataset", p->datasets[d].name, "route", name);
            for (size_t m = 0; m < p->n_models; m++)
                if (sql_reads(r->sql, p->models[m].table))
                    edge(edges, "model", p->models[m].name, "route", name);
        }
        free(name);
    }
    json_object_set_new(out, "nodes", nodes);
    json_object_set_new(out, "edges", edges);
    return out;
}

static void finish(struct gather *g)
{
    struct fr_api_worker *w = g->w;
    json_t *root = json_object(), *pipes = json_array(), *d;
    int64_t now_us = fr_wall_us();
    size_t i, k = 0;
    char ts[32];
    char *text;

    fr_format_timestamp(now_us, ts);
    json_object_set_new(root, "generated_at", json_string(ts));
    json_object_set_new(root, "redis", json_boolean(g->redis_ok));
    for (size_t p = 0; p < w->app->n_pipelines; p++) {
        json_array_append_new(pipes, pipeline_graph(g, w->app->pipelines[p], &g->ds[k], now_us));
        k += w->app->pipelines[p]->n_datasets;
    }
    json_object_set_new(root, "pipelines", pipes);
    /* each daemon: as it wrote itself (its parts now in the graph), plus
     * the age of that report */
    json_array_foreach(g->daemons, i, d)
    {
        int64_t at = ts_us(json_object_get(d, "updated_at"));
        json_object_del(d, "sources");
        json_object_del(d, "datasets");
        json_object_del(d, "models");
        json_object_del(d, "caches");
        json_object_set_new(d, "report_age_s", at ? json_real((double)(now_us - at) / 1e6) : json_null());
    }
    json_object_set(root, "daemons", g->daemons);
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fr_http_respond(g->req, 200, "application/json", text ? text : "{}", text ? strlen(text) : 2);
    free(text);
    json_decref(root);
    json_decref(g->daemons);
    free(g->ds);
    free(g);
}

void fr_api_status_handle(struct fr_api_worker *w, fr_http_req_t *req)
{
    struct fr_app *app = w->app;
    struct gather *g = fr_xcalloc(1, sizeof(*g));
    char now[24];
    size_t n = 0, k = 0;

    g->w = w;
    g->req = req;
    g->redis_ok = true;
    g->daemons = json_array();
    for (size_t p = 0; p < app->n_pipelines; p++)
        n += app->pipelines[p]->n_datasets;
    g->ds = fr_xcalloc(n + 1, sizeof(*g->ds));
    g->n_ds = n;
    g->outstanding = 1; /* held until everything is sent */
    if (!app->redis || !fr_redis_connected(app->redis)) {
        g->redis_ok = false;
        done_one(g);
        return;
    }
    snprintf(now, sizeof(now), "%" PRId64, fr_wall_us() / 1000);
    {
        char limit[16];
        snprintf(limit, sizeof(limit), "%d", FR_API_STATUS_MAX_DAEMONS);
        const char *argv[] = {"ZRANGEBYSCORE", FR_NAMES_STATUS_INDEX, now, "+inf", "LIMIT", "0", limit};
        size_t lens[] = {13, sizeof(FR_NAMES_STATUS_INDEX) - 1, strlen(now), 4, 5, 1, strlen(limit)};
        g->outstanding++;
        if (fr_redis_commandv(app->redis, 0, on_index, g, 7, argv, lens) != 0) {
            g->outstanding--;
            g->redis_ok = false;
        }
    }
    for (size_t p = 0; p < app->n_pipelines; p++) {
        const struct fr_pipeline *pl = app->pipelines[p];
        for (size_t d = 0; d < pl->n_datasets; d++) {
            struct ds_facts *f = &g->ds[k++];
            char *dlq = fr_names_dlq(pl->datasets[d].qname);
            unsigned np = pl->datasets[d].partitions > 1 ? pl->datasets[d].partitions : 1;
            f->ds = &pl->datasets[d];
            for (unsigned part = 0; part < np; part++) { /* every stream partition, summed */
                char *stream = fr_names_stream_part(pl->datasets[d].qname, part);
                send_ds(g, f, 0, "XLEN", stream);
                send_ds(g, f, 1, NULL, stream);
                free(stream);
            }
            send_ds(g, f, 2, "XLEN", dlq);
            free(dlq);
        }
    }
    done_one(g);
}

void fr_api_status_openapi(struct fr_buf *b)
{
    (void)fr_buf_puts(
        b, "\"/v1/status\":{\"get\":{\"operationId\":\"status\",\"x-role\":\"read\",\"summary\":\"each pipeline "
           "as the graph its YAML declares (sources, datasets, models, caches, routes) with each node's live "
           "state, and the daemons (docs/status.md)\",\"responses\":{\"200\":{\"description\":\"OK\",\"content\":{"
           "\"application/json\":{\"schema\":{\"type\":\"object\",\"required\":[\"generated_at\",\"redis\","
           "\"pipelines\",\"daemons\"],\"properties\":{\"generated_at\":{\"type\":\"string\",\"format\":"
           "\"date-time\"},\"redis\":{\"type\":\"boolean\",\"description\":\"every fact was read\"},"
           "\"pipelines\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"name\",\"nodes\","
           "\"edges\"],\"properties\":{\"name\":{\"type\":\"string\"},\"nodes\":{\"type\":\"array\",\"items\":{"
           "\"type\":\"object\",\"required\":[\"id\",\"kind\",\"name\",\"health\",\"state\"],\"properties\":{"
           "\"id\":{\"type\":\"string\",\"description\":\"kind:name\"},\"kind\":{\"type\":\"string\",\"enum\":["
           "\"source\",\"dataset\",\"model\",\"cache\",\"route\"]},\"name\":{\"type\":\"string\"},\"health\":{"
           "\"type\":\"string\",\"enum\":[\"ok\",\"warning\",\"failing\",\"unknown\"]},\"state\":{\"type\":["
           "\"object\",\"null\"],\"additionalProperties\":true}}}},\"edges\":{\"type\":\"array\",\"items\":{"
           "\"type\":\"object\",\"required\":[\"from\",\"to\"],\"properties\":{\"from\":{\"type\":\"string\"},"
           "\"to\":{\"type\":\"string\"}}}}}}},\"daemons\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
           "\"required\":[\"daemon\",\"instance\",\"version\",\"health\",\"uptime_s\",\"rss_bytes\"],"
           "\"properties\":{\"daemon\":{\"type\":\"string\",\"enum\":[\"ingest\",\"loader\"]},\"instance\":{"
           "\"type\":\"string\"},\"version\":{\"type\":\"string\"},\"health\":{\"type\":\"string\",\"enum\":["
           "\"ok\",\"degraded\"]},\"uptime_s\":{\"type\":\"integer\"},\"rss_bytes\":{\"type\":\"integer\"},"
           "\"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"},\"report_age_s\":{\"type\":\"number\"}"
           "}}}}}}}}}}},"
           "\"/v1/changes\":{\"get\":{\"operationId\":\"changes\",\"x-role\":\"read\",\"summary\":\"Server-Sent "
           "Events of what changed: batch.loaded, model.refreshed, cache.refreshed (event: the type, id: its "
           "position, data: the event JSON); resumable with Last-Event-ID (docs/status.md)\",\"parameters\":[{"
           "\"name\":\"dataset\",\"in\":\"query\",\"required\":false,\"schema\":{\"type\":\"string\"},"
           "\"description\":\"pipeline.dataset: its loads and the models and caches computed from it\"},{"
           "\"name\":\"key\",\"in\":\"query\",\"required\":false,\"schema\":{\"type\":\"string\",\"maxLength\":"
           "512},\"description\":\"only changes that name this key (or name no keys: a whole refresh)\"},{"
           "\"name\":\"Last-Event-ID\",\"in\":\"header\",\"required\":false,\"schema\":{\"type\":\"string\","
           "\"pattern\":\"^[0-9]+(-[0-9]+)?$\"},\"description\":\"resume after this event id\"}],\"responses\":{"
           "\"200\":{\"description\":\"an event stream\",\"content\":{\"text/event-stream\":{\"schema\":{"
           "\"type\":\"string\"}}}},\"422\":{\"description\":\"bad parameter\",\"content\":{\"application/json\":{"
           "\"schema\":{\"$ref\":\"#/components/schemas/HTTPValidationError\"}}}},\"503\":{\"description\":"
           "\"too many clients, or draining\"}}}},");
}
