/* batches: GET /v1/batches/{id}, the status of a write (README "Writes"):
 *  - loaded: the ledger row (freshet.batches, every column it has: dataset,
 *    rows, loaded_at, and rejected rows with reasons where the loader
 *    records them);
 *  - rejected: the batch is in fr:dlq:{dataset} (with the reason);
 *  - queued: published (fr:batch:{id}, written by push.c) and neither of
 *    the above yet;
 *  - 404 otherwise.
 * Reads the ledger on the worker's PostgreSQL connection, then Redis. */
#include "batches.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "names.h"

#define DLQ_SCAN 1000 /* newest dead letters looked at for a rejected batch */

struct bq {
    struct fr_api_worker *w; /* borrowed */
    fr_http_req_t *req;      /* borrowed until answered */
    char id[80];
    char dataset[160];
    char entry[64];
    int64_t rows;
};

static bool id_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= 80)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

static void answer_json(struct bq *q, int status, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

    fr_http_respond(q->req, status, "application/json", s, s ? strlen(s) : 0);
    free(s);
    json_decref(o);
}

static void answer_queued(struct bq *q)
{
    json_t *o = json_object();

    json_object_set_new(o, "batch", json_string(q->id));
    json_object_set_new(o, "status", json_string("queued"));
    json_object_set_new(o, "dataset", json_string(q->dataset));
    json_object_set_new(o, "rows", json_integer(q->rows));
    json_object_set_new(o, "entry", json_string(q->entry));
    answer_json(q, 200, o);
}

/* XREVRANGE fr:dlq:{dataset}: an entry whose "batch" field is ours. */
static void on_dlq(fr_redis_t *r, redisReply *reply, void *data)
{
    struct bq *q = data;
    (void)r;

    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            redisReply *e = reply->element[i];
            redisReply *f;
            const char *reason = NULL;
            bool ours = false;

            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            f = e->element[1];
            for (size_t k = 0; k + 1 < f->elements; k += 2) {
                if (f->element[k]->type != REDIS_REPLY_STRING || f->element[k + 1]->type != REDIS_REPLY_STRING)
                    continue;
                if (strcmp(f->element[k]->str, "batch") == 0 && strcmp(f->element[k + 1]->str, q->id) == 0)
                    ours = true;
                if (strcmp(f->element[k]->str, "reason") == 0)
                    reason = f->element[k + 1]->str;
            }
            if (ours) {
                json_t *o = json_object();
                json_object_set_new(o, "batch", json_string(q->id));
                json_object_set_new(o, "status", json_string("rejected"));
                json_object_set_new(o, "dataset", json_string(q->dataset));
                json_object_set_new(o, "reason", json_string(reason ? reason : ""));
                answer_json(q, 200, o);
                return;
            }
        }
    }
    answer_queued(q);
}

/* GET fr:batch:{id}: published by the api? */
static void on_batch_key(fr_redis_t *r, redisReply *reply, void *data)
{
    struct bq *q = data;
    json_t *v;
    char *key;
    char count[16];
    (void)r;

    if (!reply) {
        fr_http_respond_detail(q->req, 503, "Redis unavailable: cannot tell whether the batch is queued; retry");
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown batch id '%s'", q->id);
        fr_http_respond_detail(q->req, 404, msg);
        return;
    }
    v = json_loadb(reply->str, reply->len, 0, NULL);
    snprintf(q->dataset, sizeof(q->dataset), "%s", v ? json_string_value(json_object_get(v, "dataset")) ?: "" : "");
    snprintf(q->entry, sizeof(q->entry), "%s", v ? json_string_value(json_object_get(v, "entry")) ?: "" : "");
    q->rows = v ? json_integer_value(json_object_get(v, "rows")) : 0;
    json_decref(v);
    key = fr_names_dlq(q->dataset);
    snprintf(count, sizeof(count), "%d", DLQ_SCAN);
    {
        const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", count};
        size_t lens[] = {9, strlen(key), 1, 1, 5, strlen(count)};
        int rc = fr_redis_commandv(q->w->app->redis, 0, on_dlq, q, 6, argv, lens);
        free(key);
        if (rc != 0)
            answer_queued(q);
    }
}

static void on_ledger(fr_pg_t *pg, PGresult *res, void *data)
{
    struct bq *q = data;
    char *key;
    (void)pg;

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res)
            fr_warn("batch status %s: %s", q->id, PQresultErrorMessage(res));
        fr_http_respond_detail(q->req, 503, "PostgreSQL unavailable: cannot read the batch ledger; retry");
        return;
    }
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        json_t *row = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        json_t *o = json_object();
        const char *k;
        json_t *v;

        json_object_set_new(o, "batch", json_string(q->id));
        json_object_set_new(o, "status", json_string("loaded"));
        json_object_foreach(row, k, v)
        {
            if (strcmp(k, "batch_id") != 0)
                json_object_set(o, k, v);
        }
        json_decref(row);
        answer_json(q, 200, o);
        return;
    }
    key = fr_names_batch(q->id);
    {
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, strlen(key)};
        int rc = fr_redis_commandv(q->w->app->redis, 0, on_batch_key, q, 2, argv, lens);
        free(key);
        if (rc != 0)
            fr_http_respond_detail(q->req, 503, "Redis unavailable: cannot tell whether the batch is queued; retry");
    }
}

bool fr_api_batches_route(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    const char *id;
    struct bq *q;
    const char *params[1];

    if (strncmp(path, "/v1/batches/", 12) != 0)
        return false;
    id = path + 12;
    if (strcmp(fr_http_req_method(req), "GET") != 0) {
        fr_http_add_header(req, "Allow", "GET");
        fr_http_respond_detail(req, 405, "Method Not Allowed");
        return true;
    }
    if (!id_ok(id)) {
        fr_http_respond_detail(req, 404, "unknown batch id (ids are 1..79 of [A-Za-z0-9._-])");
        return true;
    }
    q = fr_http_req_alloc(req, sizeof(*q));
    memset(q, 0, sizeof(*q));
    q->w = w;
    q->req = req;
    snprintf(q->id, sizeof(q->id), "%s", id);
    params[0] = q->id;
    if (!w->app->pg || fr_pg_query(w->app->pg, "SELECT to_jsonb(b)::text FROM freshet.batches b WHERE batch_id = $1",
                                   1, params, NULL, on_ledger, q) != 0)
        fr_http_respond_detail(req, 503, "PostgreSQL unavailable: cannot read the batch ledger; retry");
    return true;
}
