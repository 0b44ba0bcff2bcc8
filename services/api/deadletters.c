/* deadletters: list and discard a dataset's dead letters (see
 * deadletters.h); re-drive is redrive.c's. */
#include "deadletters.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "names.h"
#include "problem.h"
#include "redrive.h"

#define PREFIX     "/admin/deadletters/"
#define PREFIX_LEN (sizeof(PREFIX) - 1)

struct dq {
    struct fr_api_worker *w; /* borrowed */
    fr_http_req_t *req;      /* borrowed until answered */
    char qname[256];
    char id[48];
    long limit;
    json_t *items; /* owned: the page, until XLEN answers */
    char next[48];
};

const struct fr_dataset *fr_api_find_dataset(struct fr_api_worker *w, const char *qname,
                                             const struct fr_pipeline **pp)
{
    for (size_t i = 0; i < w->app->n_pipelines; i++) {
        const struct fr_pipeline *p = w->app->pipelines[i];
        for (size_t d = 0; d < p->n_datasets; d++)
            if (strcmp(p->datasets[d].qname, qname) == 0) {
                if (pp)
                    *pp = p;
                return &p->datasets[d];
            }
    }
    return NULL;
}

static bool digits(const char *s, size_t n)
{
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool fr_api_stream_id_ok(const char *s)
{
    const char *dash = strchr(s, '-');
    return dash && digits(s, (size_t)(dash - s)) && digits(dash + 1, strlen(dash + 1));
}

static void answer_422(struct fr_api_worker *w, fr_http_req_t *req, const char *where, const char *name,
                       const char *msg)
{
    fr_problem_one(&w->out, where, name, msg, "value_error");
    fr_http_respond_json(req, 422, &w->out);
}

/* ---- list ---------------------------------------------------------------------- */

static void on_xlen(fr_redis_t *r, redisReply *reply, void *data)
{
    struct dq *q = data;
    json_t *o = json_object();
    char *s;

    (void)r;
    json_object_set_new(o, "dataset", json_string(q->qname));
    json_object_set_new(o, "total",
                        reply && reply->type == REDIS_REPLY_INTEGER ? json_integer(reply->integer) : json_null());
    json_object_set_new(o, "items", q->items);
    q->items = NULL;
    json_object_set_new(o, "next", q->next[0] ? json_string(q->next) : json_null());
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fr_http_respond(q->req, 200, "application/json", s, s ? strlen(s) : 0);
    free(s);
    json_decref(o);
}

/* One dead letter as JSON: its fields as strings, but the binary batch of
 * a refused batch ("payload") as its size. */
static json_t *entry_json(const redisReply *e)
{
    json_t *o = json_object();
    const redisReply *f = e->element[1];

    json_object_set_new(o, "id", json_stringn(e->element[0]->str, e->element[0]->len));
    for (size_t k = 0; k + 1 < f->elements; k += 2) {
        const redisReply *n = f->element[k], *v = f->element[k + 1];
        if (n->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || strcmp(n->str, "id") == 0)
            continue;
        if (strcmp(n->str, "payload") == 0) {
            json_object_set_new(o, "payload_bytes", json_integer((json_int_t)v->len));
            continue;
        }
        json_t *sv = json_stringn(v->str, v->len);
        if (!sv) /* not UTF-8: shown escaped by byte */
            sv = json_string("(binary)");
        json_object_set_new(o, n->str, sv);
    }
    return o;
}

static void on_page(fr_redis_t *r, redisReply *reply, void *data)
{
    struct dq *q = data;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        fr_http_respond_detail(q->req, 503, "Redis unavailable: cannot read the dead letters; retry");
        return;
    }
    q->items = json_array();
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        if ((long)json_array_size(q->items) == q->limit) { /* one more than asked: there is a next page */
            const char *last =
                json_string_value(json_object_get(json_array_get(q->items, (size_t)q->limit - 1), "id"));
            snprintf(q->next, sizeof(q->next), "%s", last ? last : "");
            break;
        }
        json_array_append_new(q->items, entry_json(e));
    }
    char *key = fr_names_dlq(q->qname);
    const char *argv[] = {"XLEN", key};
    int rc = fr_redis_commandv(q->w->app->redis, 0, on_xlen, q, 2, argv, NULL);
    free(key);
    if (rc != 0)
        on_xlen(NULL, NULL, q);
}

static void list(struct fr_api_worker *w, fr_http_req_t *req, const char *qname)
{
    const char *ls = fr_http_req_param(req, "limit"), *before = fr_http_req_param(req, "before");
    int64_t limit = FR_API_DLQ_DEFAULT_LIMIT;
    char count[24], end[64];

    if (ls && (!fr_parse_i64(ls, strlen(ls), &limit) || limit < 1 || limit > FR_API_DLQ_MAX_LIMIT)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "limit must be an integer from 1 to %d", FR_API_DLQ_MAX_LIMIT);
        answer_422(w, req, "query", "limit", msg);
        return;
    }
    if (before && !fr_api_stream_id_ok(before)) {
        answer_422(w, req, "query", "before",
                   "before must be a dead letter id (MS-SEQ, the \"next\" of the previous page)");
        return;
    }
    struct dq *q = fr_http_req_alloc(req, sizeof(*q));
    memset(q, 0, sizeof(*q));
    q->w = w;
    q->req = req;
    q->limit = (long)limit;
    snprintf(q->qname, sizeof(q->qname), "%s", qname);
    snprintf(count, sizeof(count), "%ld", q->limit + 1);
    if (before)
        snprintf(end, sizeof(end), "(%s", before); /* exclusive: the page after `before` */
    else
        snprintf(end, sizeof(end), "+");
    char *key = fr_names_dlq(qname);
    const char *argv[] = {"XREVRANGE", key, end, "-", "COUNT", count};
    int rc = fr_redis_commandv(w->app->redis, 0, on_page, q, 6, argv, NULL);
    free(key);
    if (rc != 0)
        fr_http_respond_detail(req, 503, "Redis unavailable: cannot read the dead letters; retry");
}

/* ---- discard ------------------------------------------------------------------- */

static void on_xdel(fr_redis_t *r, redisReply *reply, void *data)
{
    struct dq *q = data;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        fr_http_respond_detail(q->req, 503, "Redis unavailable: the dead letter is unchanged; retry");
    } else if (reply->integer == 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "no dead letter %s in %s (discarded or re-driven already?)", q->id, q->qname);
        fr_http_respond_detail(q->req, 404, msg);
    } else {
        fr_info("dead letter %s of %s discarded", q->id, q->qname);
        fr_http_respond(q->req, 204, NULL, NULL, 0);
    }
}

static void discard(struct fr_api_worker *w, fr_http_req_t *req, const char *qname, const char *id)
{
    struct dq *q = fr_http_req_alloc(req, sizeof(*q));
    memset(q, 0, sizeof(*q));
    q->w = w;
    q->req = req;
    snprintf(q->qname, sizeof(q->qname), "%s", qname);
    snprintf(q->id, sizeof(q->id), "%s", id);
    char *key = fr_names_dlq(qname);
    const char *argv[] = {"XDEL", key, id};
    int rc = fr_redis_commandv(w->app->redis, 0, on_xdel, q, 3, argv, NULL);
    free(key);
    if (rc != 0)
        fr_http_respond_detail(req, 503, "Redis unavailable: the dead letter is unchanged; retry");
}

/* ---- routing ------------------------------------------------------------------- */

static void method_not_allowed(fr_http_req_t *req, const char *allow)
{
    fr_http_add_header(req, "Allow", allow);
    fr_http_respond_detail(req, 405, "Method Not Allowed");
}

bool fr_api_deadletters_route(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    const char *method = fr_http_req_method(req);
    char qname[256], id[48];

    if (strncmp(path, PREFIX, PREFIX_LEN) != 0)
        return false;
    const char *ds_s = path + PREFIX_LEN, *slash = strchr(ds_s, '/');
    size_t ds_n = slash ? (size_t)(slash - ds_s) : strlen(ds_s);
    if (ds_n == 0 || ds_n >= sizeof(qname)) {
        fr_http_respond_detail(req, 404, "Not Found: use /admin/deadletters/{pipeline.dataset}");
        return true;
    }
    memcpy(qname, ds_s, ds_n);
    qname[ds_n] = '\0';
    const struct fr_dataset *ds = fr_api_find_dataset(w, qname, NULL);
    if (!ds) {
        char msg[400];
        snprintf(msg, sizeof(msg), "unknown dataset '%.255s': name it pipeline.dataset", qname);
        fr_http_respond_detail(req, 404, msg);
        return true;
    }
    if (!slash || slash[1] == '\0') {
        if (strcmp(method, "GET") != 0)
            method_not_allowed(req, "GET");
        else
            list(w, req, qname);
        return true;
    }
    const char *id_s = slash + 1, *rest = strchr(id_s, '/');
    size_t id_n = rest ? (size_t)(rest - id_s) : strlen(id_s);
    if (id_n >= sizeof(id)) {
        fr_http_respond_detail(req, 404, "unknown dead letter id (ids look like 1718000000000-0)");
        return true;
    }
    memcpy(id, id_s, id_n);
    id[id_n] = '\0';
    if (!fr_api_stream_id_ok(id)) {
        fr_http_respond_detail(req, 404, "unknown dead letter id (ids look like 1718000000000-0)");
        return true;
    }
    if (!rest) {
        if (strcmp(method, "DELETE") != 0)
            method_not_allowed(req, "DELETE");
        else
            discard(w, req, qname, id);
        return true;
    }
    if (strcmp(rest, "/redrive") != 0) {
        fr_http_respond_detail(req, 404, "Not Found: use /admin/deadletters/{dataset}/{id}/redrive");
        return true;
    }
    if (strcmp(method, "POST") != 0)
        method_not_allowed(req, "POST");
    else
        fr_api_redrive(w, req, ds, id);
    return true;
}
