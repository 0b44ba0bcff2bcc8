/* backfills: start a backfill and read its progress (see backfills.h). */
#include "backfills.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config_http.h"
#include "log.h"
#include "names.h"
#include "problem.h"

#define PREFIX     "/admin/backfills"
#define PREFIX_LEN (sizeof(PREFIX) - 1)

struct bf {
    struct fr_api_worker *w; /* borrowed */
    fr_http_req_t *req;      /* borrowed until answered */
    char id[27];
    char *key; /* owned */
};

/* Frees what q owns: before answering, since q itself lives in the
 * request's arena and goes with the answer. */
static void bf_done(struct bf *q)
{
    free(q->key);
    q->key = NULL;
}

static void answer_422(struct fr_api_worker *w, fr_http_req_t *req, const char *name, const char *msg)
{
    fr_problem_one(&w->out, "body", name, msg, "value_error");
    fr_http_respond_json(req, 422, &w->out);
}

static void on_noop(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)reply;
    (void)data;
}

/* ---- start --------------------------------------------------------------------- */

static void on_publish(fr_redis_t *r, redisReply *reply, void *data)
{
    struct bf *q = data;

    (void)r;
    fr_http_req_t *req = q->req;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        bf_done(q);
        fr_http_respond_detail(req, 503, "Redis unavailable: the backfill was not asked for; retry");
    } else if (reply->integer == 0) {
        const char *argv[] = {"HSET", q->key, "state", "failed", "reason", "no freshet-ingest listened"};
        if (fr_redis_commandv(q->w->app->redis, 0, on_noop, NULL, 6, argv, NULL) != 0)
            fr_debug("backfill %s: state not written", q->id);
        bf_done(q);
        fr_http_respond_detail(req, 503, "no freshet-ingest listens on fr:control: start it, then ask again");
    } else {
        char loc[64];
        snprintf(loc, sizeof(loc), PREFIX "/%s", q->id);
        json_t *o = json_pack("{s:s,s:s,s:s}", "id", q->id, "state", "queued", "progress", loc);
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        bf_done(q);
        fr_http_add_header(req, "Location", loc);
        fr_http_respond(req, 202, "application/json", s, s ? strlen(s) : 0);
        free(s);
    }
}

static bool member_str(struct fr_api_worker *w, fr_http_req_t *req, json_t *o, const char *name, const char **out)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v) || json_string_length(v) == 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s is required: a non-empty string", name);
        answer_422(w, req, name, msg);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static void start(struct fr_api_worker *w, fr_http_req_t *req)
{
    size_t blen = 0;
    const char *body = fr_http_req_body(req, &blen);
    json_error_t je;
    json_t *o = body && blen ? json_loadb(body, blen, JSON_REJECT_DUPLICATES, &je) : NULL;
    const char *pl, *so, *from_s, *to_s;
    const struct fr_pipeline *p = NULL;
    const struct fr_source *src = NULL;
    int64_t from_us, to_us;
    char msg[400];

    if (!json_is_object(o)) {
        json_decref(o);
        answer_422(w, req, NULL, "body must be a JSON object {\"pipeline\",\"source\",\"from\",\"to\"}");
        return;
    }
    if (!member_str(w, req, o, "pipeline", &pl) || !member_str(w, req, o, "source", &so) ||
        !member_str(w, req, o, "from", &from_s) || !member_str(w, req, o, "to", &to_s))
        goto out;
    for (size_t i = 0; i < w->app->n_pipelines && !p; i++)
        if (strcmp(w->app->pipelines[i]->name, pl) == 0)
            p = w->app->pipelines[i];
    if (!p) {
        snprintf(msg, sizeof(msg), "unknown pipeline '%.100s'", pl);
        answer_422(w, req, "pipeline", msg);
        goto out;
    }
    for (size_t k = 0; k < p->n_sources && !src; k++)
        if (strcmp(p->sources[k].name, so) == 0)
            src = &p->sources[k];
    if (!src || src->kind != FR_SRC_HTTP_JSON || !src->http->window.enabled || src->http->fan_out.source) {
        snprintf(msg, sizeof(msg),
                 !src                            ? "unknown source '%.100s' in pipeline %.100s"
                 : src->kind != FR_SRC_HTTP_JSON ? "source '%.100s' of %.100s is not an http_json source"
                 : !src->http->window.enabled    ? "source '%.100s' of %.100s has no window: nothing to backfill"
                                                 : "source '%.100s' of %.100s fans out over another source: "
                                                   "backfill that one",
                 so, pl);
        answer_422(w, req, "source", msg);
        goto out;
    }
    if (!fr_parse_timestamp(from_s, strlen(from_s), &from_us)) {
        answer_422(w, req, "from", "from must be an ISO-8601 time (2024-01-01 or 2024-01-01T00:00:00Z)");
        goto out;
    }
    if (!fr_parse_timestamp(to_s, strlen(to_s), &to_us)) {
        answer_422(w, req, "to", "to must be an ISO-8601 time (2024-01-01 or 2024-01-01T00:00:00Z)");
        goto out;
    }
    if (to_us <= from_us) {
        answer_422(w, req, "to", "to must be after from");
        goto out;
    }

    struct bf *q = fr_http_req_alloc(req, sizeof(*q));
    memset(q, 0, sizeof(*q));
    q->w = w;
    q->req = req;
    fr_ulid(q->id);
    q->key = fr_names_backfill(q->id);
    char ts[40], ttl[16], from_n[24], to_n[24];
    fr_format_timestamp(fr_wall_us(), ts);
    snprintf(ttl, sizeof(ttl), "%d", FR_NAMES_BACKFILL_TTL_S);
    snprintf(from_n, sizeof(from_n), "%" PRId64, from_us);
    snprintf(to_n, sizeof(to_n), "%" PRId64, to_us);
    json_t *m = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "cmd", "backfill", "id", q->id, "pipeline", pl, "source", so,
                          "from_us", (json_int_t)from_us, "to_us", (json_int_t)to_us);
    char *msg_s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    /* the hash before the message (same connection, in order): the ingest
     * that claims it finds it */
    const char *hargv[] = {"HSET", q->key, "state", "queued", "pipeline",   pl, "source",       so,
                           "from", from_s, "to",    to_s,     "created_at", ts, "windows_done", "0"};
    const char *eargv[] = {"EXPIRE", q->key, ttl};
    const char *pargv[] = {"PUBLISH", FR_NAMES_CONTROL, msg_s};
    fr_redis_t *r = w->app->redis;
    if (fr_redis_commandv(r, 0, on_noop, NULL, (int)FR_ARRAY_LEN(hargv), hargv, NULL) != 0 ||
        fr_redis_commandv(r, 0, on_noop, NULL, 3, eargv, NULL) != 0 ||
        fr_redis_commandv(r, 0, on_publish, q, 3, pargv, NULL) != 0) {
        bf_done(q);
        fr_http_respond_detail(req, 503, "Redis unavailable: the backfill was not asked for; retry");
    } else {
        fr_info("backfill %s of %s.%s asked for (%s .. %s)", q->id, pl, so, from_s, to_s);
    }
    free(msg_s);
out:
    json_decref(o);
}

/* ---- progress ------------------------------------------------------------------ */

static bool numeric_field(const char *k)
{
    static const char *const names[] = {"windows_done", "windows_total", "rows",
                                        "rejected",     "requests",      "updated_at"};
    for (size_t i = 0; i < FR_ARRAY_LEN(names); i++)
        if (strcmp(k, names[i]) == 0)
            return true;
    return false;
}

static void on_hgetall(fr_redis_t *r, redisReply *reply, void *data)
{
    struct bf *q = data;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        bf_done(q);
        fr_http_respond_detail(q->req, 503, "Redis unavailable: cannot read the backfill; retry");
        return;
    }
    if (reply->elements == 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown backfill %s (backfills are kept %d s after their last update)", q->id,
                 FR_NAMES_BACKFILL_TTL_S);
        bf_done(q);
        fr_http_respond_detail(q->req, 404, msg);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(q->id));
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *k = reply->element[i], *v = reply->element[i + 1];
        int64_t n;
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (numeric_field(k->str) && fr_parse_i64(v->str, v->len, &n))
            json_object_set_new(o, k->str, json_integer((json_int_t)n));
        else
            json_object_set_new(o, k->str, json_stringn(v->str, v->len));
    }
    const char *state = json_string_value(json_object_get(o, "state"));
    json_int_t done = json_integer_value(json_object_get(o, "windows_done"));
    json_int_t total = json_integer_value(json_object_get(o, "windows_total"));
    double pct = state && strcmp(state, "done") == 0 ? 100.0 : total > 0 ? 100.0 * (double)done / (double)total : 0;
    json_object_set_new(o, "percent", json_real(pct > 100 ? 100 : pct));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    bf_done(q);
    fr_http_respond(q->req, 200, "application/json", s, s ? strlen(s) : 0);
    free(s);
}

static bool ulid_ok(const char *s)
{
    if (strlen(s) != 26)
        return false;
    for (size_t i = 0; i < 26; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

static void progress(struct fr_api_worker *w, fr_http_req_t *req, const char *id)
{
    if (!ulid_ok(id)) {
        fr_http_respond_detail(req, 404, "unknown backfill id (ids are the 26-character ULIDs POST answered)");
        return;
    }
    struct bf *q = fr_http_req_alloc(req, sizeof(*q));
    memset(q, 0, sizeof(*q));
    q->w = w;
    q->req = req;
    snprintf(q->id, sizeof(q->id), "%s", id);
    q->key = fr_names_backfill(id);
    const char *argv[] = {"HGETALL", q->key};
    if (fr_redis_commandv(w->app->redis, 0, on_hgetall, q, 2, argv, NULL) != 0) {
        bf_done(q);
        fr_http_respond_detail(req, 503, "Redis unavailable: cannot read the backfill; retry");
    }
}

bool fr_api_backfills_route(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    const char *method = fr_http_req_method(req);

    if (strncmp(path, PREFIX, PREFIX_LEN) != 0 || (path[PREFIX_LEN] != '\0' && path[PREFIX_LEN] != '/'))
        return false;
    if (path[PREFIX_LEN] == '\0' || path[PREFIX_LEN + 1] == '\0') {
        if (strcmp(method, "POST") != 0) {
            fr_http_add_header(req, "Allow", "POST");
            fr_http_respond_detail(req, 405, "Method Not Allowed");
        } else {
            start(w, req);
        }
        return true;
    }
    if (strcmp(method, "GET") != 0) {
        fr_http_add_header(req, "Allow", "GET");
        fr_http_respond_detail(req, 405, "Method Not Allowed");
        return true;
    }
    progress(w, req, path + PREFIX_LEN + 1);
    return true;
}
