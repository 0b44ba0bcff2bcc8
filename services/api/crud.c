/* crud: resource routes (`crud: {dataset: D}`, docs/routes.md): list with
 * keyset or offset paging, get, create (ids for rows without one), bulk,
 * replace, patch, soft and hard delete; 404/410/409/400. Reads are SQL on
 * the worker's connection; writes go through push.c and idem.c. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "engine_int.h"
#include "httpcache.h"
#include "log.h"
#include "problem.h"
#include "idem.h"
#include "names.h"
#include "push.h"
#include "readpool.h"

/* ------------------------------------------------------------------ crud */

/* A resource route (`crud: {dataset: D}` at path P, docs/routes.md): GET P (list,
 * limit/offset, Link rel=next), GET P/{id}, POST P, POST P/bulk, PUT and
 * PATCH P/{id}, DELETE P/{id} (soft by default; X-Soft-Delete: false
 * hard). Reads are SQL on the worker's connection; writes go through the
 * dataset's stream (push.c), so the loader's checks apply: a unique value
 * held by another row answers 409, a reference to a missing or deleted row
 * 400. 404 unknown id, 410 soft-deleted. */

enum crud_op { CRUD_LIST, CRUD_GET, CRUD_PUT, CRUD_PATCH, CRUD_DELETE };

struct crudreq {
    struct fr_api_engine *e;
    struct eroute *er;
    fr_http_req_t *req;
    const struct fr_dataset *ds;
    enum crud_op op;
    int64_t limit, offset;
    const char *id;
    const char *cursor;         /* list: key after which the page starts (keyset), or NULL */
    struct fr_httpcache_req hc; /* reads: ETag from the dataset's version (httpcache.h) */
};

static void crud_cols(const struct fr_dataset *ds, struct fr_buf *b)
{
    bool first = true;
    for (size_t i = 0; i < ds->n_columns; i++) {
        if (ds->soft_delete && strcmp(ds->columns[i].name, ds->soft_delete) == 0)
            continue;
        (void)fr_buf_puts(b, first ? "t." : ", t.");
        (void)fr_buf_puts(b, ds->columns[i].name);
        first = false;
    }
}

static void crud_422(struct eroute *er, fr_http_req_t *req, const char *where, const char *name, const char *msg,
                     const char *type, struct fr_api_worker *w)
{
    fr_problem_one(&w->out, where, name, msg, type);
    fr_api_respond(er, req, 422, "application/json", w->out.data, w->out.len, w);
}

static void crud_gone(struct crudreq *cr, bool gone)
{
    char msg[160];
    if (gone)
        snprintf(msg, sizeof(msg), "%s %.60s was deleted", cr->ds->name, cr->id);
    else
        snprintf(msg, sizeof(msg), "%s %.60s not found", cr->ds->name, cr->id);
    fr_api_respond_detail(cr->er, cr->req, gone ? 410 : 404, msg, cr->e->w);
}

static void crud_write(struct crudreq *cr, const char *stored)
{
    struct fr_api_worker *w = cr->e->w;
    const struct fr_column *key = &cr->ds->columns[cr->ds->key_index[0]];
    json_error_t jerr;
    json_t *row = NULL;
    size_t blen = 0;
    const char *body = fr_http_req_body(cr->req, &blen);
    if (cr->op == CRUD_DELETE) {
        row = json_loads(stored, 0, &jerr);
    } else {
        json_t *in = json_loadb(body, blen, 0, &jerr);
        if (!in || !json_is_object(in)) {
            json_decref(in);
            crud_422(cr->er, cr->req, "body", "body", "body must be a JSON object", "model_attributes_type", w);
            return;
        }
        if (cr->op == CRUD_PATCH) {
            row = json_loads(stored, 0, &jerr);
            if (row)
                json_object_update(row, in);
            json_decref(in);
        } else {
            row = in;
        }
    }
    if (!row) {
        fr_api_respond_detail(cr->er, cr->req, 500, "stored row unreadable", w);
        return;
    }
    /* the id is the path's, whatever the body says */
    int64_t n;
    if ((key->type == FR_T_INT || key->type == FR_T_BIGINT) && fr_parse_i64(cr->id, strlen(cr->id), &n))
        json_object_set_new(row, key->name, json_integer(n));
    else
        json_object_set_new(row, key->name, json_string(cr->id));
    if (cr->ds->soft_delete)
        json_object_del(row, cr->ds->soft_delete);
    char *text = json_dumps(row, JSON_COMPACT);
    json_decref(row);
    size_t tl = strlen(text);
    char *copy = fr_http_req_alloc(cr->req, tl + 1);
    memcpy(copy, text, tl + 1);
    free(text);
    const char *soft = fr_http_req_header(cr->req, "X-Soft-Delete");
    struct fr_api_push_spec spec = {
        .pipeline = cr->er->p,
        .ds = cr->ds,
        .min_rows = 1,
        .max_rows = 1,
        .wait_ms = UINT32_MAX,
        .op = cr->op != CRUD_DELETE                      ? FR_OP_UPSERT
              : (soft && strcasecmp(soft, "false") == 0) ? FR_OP_HARD_DELETE
                                                         : FR_OP_DELETE,
        .body = copy,
        .body_len = tl,
        .ok_status = cr->op == CRUD_DELETE ? 204 : 200,
    };
    fr_api_push(w, cr->req, &spec);
}

static void on_crud(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    struct crudreq *cr = data;
    struct fr_api_worker *w = cr->e->w;
    w->inflight--;
    if (!res) {
        fr_api_respond_detail(cr->er, cr->req, 503, "database unavailable; retry", w);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fr_warn("route %s: query failed: %s", cr->er->r->name, PQresultErrorMessage(res));
        fr_api_respond_detail(cr->er, cr->req, 500, "query failed", w);
        return;
    }
    int rows = PQntuples(res), nf = PQnfields(res);
    struct fr_buf *b = &w->out;
    fr_buf_reset(b);
    if (cr->op == CRUD_LIST) {
        (void)fr_buf_putc(b, '[');
        for (int r = 0; r < rows; r++) {
            if (r)
                (void)fr_buf_putc(b, ',');
            fr_api_put_row_json(b, res, r);
        }
        (void)fr_buf_putc(b, ']');
        if (rows == cr->limit) {
            char link[600];
            int kc = PQfnumber(res, cr->ds->columns[cr->ds->key_index[0]].name);
            if (cr->cursor && kc >= 0) {
                /* keyset: the next page starts after this page's last key */
                int off = snprintf(link, sizeof(link), "<%s?limit=%" PRId64 "&cursor=", cr->er->r->path, cr->limit);
                const char *k = PQgetvalue(res, rows - 1, kc);
                for (; *k && off < (int)sizeof(link) - 20; k++) {
                    unsigned char ch = (unsigned char)*k;
                    if ((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                        ch == '-' || ch == '_' || ch == '.' || ch == '~')
                        link[off++] = (char)ch;
                    else
                        off += snprintf(link + off, sizeof(link) - (size_t)off, "%%%02X", ch);
                }
                snprintf(link + off, sizeof(link) - (size_t)off, ">; rel=\"next\"");
            } else {
                snprintf(link, sizeof(link), "<%s?limit=%" PRId64 "&offset=%" PRId64 ">; rel=\"next\"",
                         cr->er->r->path, cr->limit, cr->offset + cr->limit);
            }
            fr_http_add_header(cr->req, "Link", link);
        }
        if (!fr_httpcache_answer(w->hc, cr->req, &cr->hc, NULL, b->data ? b->data : "", b->len))
            fr_api_respond(cr->er, cr->req, 200, "application/json", b->data, b->len, w);
        return;
    }
    if (rows == 0) {
        crud_gone(cr, false);
        return;
    }
    bool gone = PQgetvalue(res, 0, nf - 1)[0] == 't';
    const char *soft = fr_http_req_header(cr->req, "X-Soft-Delete");
    bool hard = cr->op == CRUD_DELETE && soft && strcasecmp(soft, "false") == 0;
    if (gone && !hard) { /* a hard DELETE purges a soft-deleted row too */
        crud_gone(cr, true);
        return;
    }
    if (cr->op == CRUD_GET) {
        (void)fr_buf_putc(b, '{');
        for (int c = 0; c + 1 < nf; c++) {
            if (c)
                (void)fr_buf_putc(b, ',');
            const char *name = PQfname(res, c);
            (void)fr_buf_json_str(b, name, strlen(name));
            (void)fr_buf_putc(b, ':');
            fr_api_put_json_value(b, res, 0, c);
        }
        (void)fr_buf_putc(b, '}');
        if (!fr_httpcache_answer(w->hc, cr->req, &cr->hc, NULL, b->data ? b->data : "", b->len))
            fr_api_respond(cr->er, cr->req, 200, "application/json", b->data, b->len, w);
        return;
    }
    crud_write(cr, PQgetvalue(res, 0, 0));
}

/* Only DELETE soft-deletes: a JSON POST body (an object or an array of
 * objects) that names the soft_delete column is sent without it, so a
 * client cannot create or keep a row deleted. Other bodies pass as they are
 * (push.c answers 422 for what it cannot read). */
static void crud_strip_soft(const struct fr_dataset *ds, fr_http_req_t *req, const char *body, size_t blen,
                            struct fr_api_push_spec *spec)
{
    if (!ds->soft_delete || blen == 0 || !memmem(body, blen, ds->soft_delete, strlen(ds->soft_delete)))
        return;
    json_error_t jerr;
    json_t *in = json_loadb(body, blen, 0, &jerr);
    if (!in)
        return;
    bool changed = false;
    if (json_is_object(in)) {
        changed = json_object_del(in, ds->soft_delete) == 0;
    } else if (json_is_array(in)) {
        for (size_t i = 0; i < json_array_size(in); i++)
            if (json_is_object(json_array_get(in, i)))
                changed |= json_object_del(json_array_get(in, i), ds->soft_delete) == 0;
    }
    char *text = changed ? json_dumps(in, JSON_COMPACT) : NULL;
    json_decref(in);
    if (!text)
        return;
    size_t tl = strlen(text);
    char *copy = fr_http_req_alloc(req, tl + 1);
    memcpy(copy, text, tl + 1);
    free(text);
    spec->body = copy;
    spec->body_len = tl;
}

/* POST P and P/bulk: JSON rows without the key (an int or bigint `id`)
 * get the next free ones. The ids come from a Redis counter per dataset
 * (fr:idseq:{qname}), raised atomically to the table's max(id) (soft-deleted
 * rows included) before each allocation, so concurrent POSTs on any worker
 * or replica never get the same id. */
struct crudpost {
    struct fr_api_engine *e;
    fr_http_req_t *req;
    struct fr_api_push_spec spec; /* body: the request's or an arena copy */
    size_t missing;               /* rows without a key */
    char max[24];                 /* the table's max(key) */
};

#define IDSEQ_LUA                                                                                                    \
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0') "                                                       \
    "if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end "                                       \
    "return redis.call('INCRBY', KEYS[1], ARGV[2])"

/* The JSON body's rows that lack the key: counted (fill == false), or given
 * ids first.. in order (fill == true; *out gets the new body in the arena). */
static size_t crud_ids(struct crudpost *cp, bool fill, int64_t first)
{
    const struct fr_dataset *ds = cp->spec.ds;
    const char *kname = ds->columns[ds->key_index[0]].name;
    size_t blen = cp->spec.body ? cp->spec.body_len : 0;
    const char *body = cp->spec.body ? cp->spec.body : fr_http_req_body(cp->req, &blen);
    json_error_t jerr;
    json_t *in = json_loadb(body, blen, 0, &jerr);
    size_t n = 0;

    if (!in)
        return 0; /* push.c answers 422 for what does not parse */
    for (size_t i = 0; i < (json_is_array(in) ? json_array_size(in) : 1); i++) {
        json_t *row = json_is_array(in) ? json_array_get(in, i) : in;
        json_t *k = json_is_object(row) ? json_object_get(row, kname) : NULL;
        if (!json_is_object(row) || (k && !json_is_null(k)))
            continue;
        if (fill)
            json_object_set_new(row, kname, json_integer((json_int_t)(first + (int64_t)n)));
        n++;
    }
    if (fill && n) {
        char *text = json_dumps(in, JSON_COMPACT);
        size_t tl = text ? strlen(text) : 0;
        char *copy = fr_http_req_alloc(cp->req, tl + 1);
        memcpy(copy, text ? text : "", tl + 1);
        free(text);
        cp->spec.body = copy;
        cp->spec.body_len = tl;
    }
    json_decref(in);
    return n;
}

static void on_idseq(fr_redis_t *r, redisReply *reply, void *data)
{
    struct crudpost *cp = data;
    struct fr_api_worker *w = cp->e->w;
    (void)r;

    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        fr_warn("crud %s: id allocation failed: %s", cp->spec.ds->qname,
                reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
        fr_http_respond_detail(cp->req, 503, "could not assign an id (Redis unavailable); retry later");
        return;
    }
    (void)crud_ids(cp, true, (int64_t)reply->integer - (int64_t)cp->missing + 1);
    fr_api_push(w, cp->req, &cp->spec);
}

static void on_idmax(fr_pg_t *pg, PGresult *res, void *data)
{
    struct crudpost *cp = data;
    struct fr_api_worker *w = cp->e->w;
    (void)pg;

    w->inflight--;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        if (res)
            fr_warn("crud %s: max id query failed: %s", cp->spec.ds->qname, PQresultErrorMessage(res));
        fr_http_respond_detail(cp->req, 503, "database unavailable; retry");
        return;
    }
    snprintf(cp->max, sizeof(cp->max), "%s", PQgetvalue(res, 0, 0));
    char *key = fr_names_idseq(cp->spec.ds->qname);
    char n[24];
    snprintf(n, sizeof(n), "%zu", cp->missing);
    const char *argv[] = {"EVAL", IDSEQ_LUA, "1", key, cp->max, n};
    int rc = fr_redis_commandv(w->app->redis, 0, on_idseq, cp, 6, argv, NULL);
    free(key);
    if (rc != 0)
        fr_http_respond_detail(cp->req, 503, "could not assign an id (Redis unavailable); retry later");
}

static void crud_post(struct fr_api_engine *e, fr_http_req_t *req, const struct fr_api_push_spec *spec)
{
    struct fr_api_worker *w = e->w;
    const struct fr_dataset *ds = spec->ds;
    const struct fr_column *key = ds->n_key == 1 ? &ds->columns[ds->key_index[0]] : NULL;
    const char *ct = fr_http_req_header(req, "Content-Type");
    struct crudpost *cp;

    if (!key || (key->type != FR_T_INT && key->type != FR_T_BIGINT) ||
        (!spec->body && ct && strncasecmp(ct, "text/csv", 8) == 0)) {
        fr_api_push(w, req, spec);
        return;
    }
    cp = fr_http_req_alloc(req, sizeof(*cp));
    memset(cp, 0, sizeof(*cp));
    cp->e = e;
    cp->req = req;
    cp->spec = *spec;
    cp->missing = crud_ids(cp, false, 0);
    if (cp->missing == 0) {
        fr_api_push(w, req, spec);
        return;
    }
    struct fr_buf sql;
    fr_buf_init(&sql, 0);
    (void)fr_buf_printf(&sql, "SELECT coalesce(max(%s), 0)::text FROM %s", key->name, ds->table);
    fr_pg_t *pg = w->app->pg;
    int rc = pg && fr_pg_connected(pg) ? fr_pg_query(pg, sql.data, 0, NULL, NULL, on_idmax, cp) : -ENOTCONN;
    fr_buf_deinit(&sql);
    if (rc != 0)
        fr_http_respond_detail(req, 503, "database unavailable; retry");
    else
        w->inflight++;
}

struct crudgate {
    struct fr_api_engine *e;
    const char *method; /* borrowed from the request */
    const char *path;   /* borrowed from the request */
};

static void crud_gated(struct fr_api_worker *w, fr_http_req_t *req, void *arg)
{
    struct crudgate *cg = arg;
    (void)w;
    if (!fr_api_crud_handle(cg->e, req, cg->method, cg->path)) /* cannot happen: it matched before */
        fr_http_respond_detail(req, 404, "Not Found");
}

/* Serves req when it is under a crud route's path; false otherwise. */
bool fr_api_crud_handle(struct fr_api_engine *e, fr_http_req_t *req, const char *method, const char *path)
{
    struct fr_api_worker *w = e->w;
    const char *pattern;
    struct eroute *er = fr_api_crud_match(e, path, &pattern);
    if (!er)
        return false;
    const size_t bl = strlen(er->r->path);
    const char *seg = path[bl] == '/' ? path + bl + 1 : NULL;
    const struct fr_dataset *ds = fr_pipeline_dataset(er->p, er->r->dataset);
    if (!ds)
        return false;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        /* a write with an Idempotency-Key runs once per key (idem.c) */
        struct crudgate *cg = fr_http_req_alloc(req, sizeof(*cg));
        cg->e = e;
        cg->method = method;
        cg->path = path;
        if (fr_api_idem_gate(w, req, crud_gated, cg))
            return true;
    }
    struct crudreq *cr = fr_http_req_alloc(req, sizeof(*cr));
    memset(cr, 0, sizeof(*cr));
    cr->e = e;
    cr->er = er;
    cr->req = req;
    cr->ds = ds;
    bool is_bulk = seg && strcmp(seg, "bulk") == 0;
    if (strcmp(method, "POST") == 0 && (!seg || is_bulk)) {
        /* A CSV body may start with a header naming the columns (the
         * first column's name, then ',' or the line end); the files of
         * the hr pipeline have none. */
        size_t blen = 0;
        const char *body = fr_http_req_body(req, &blen);
        const char *c0 = ds->columns[0].name;
        size_t c0l = strlen(c0);
        bool header =
            blen > c0l && memcmp(body, c0, c0l) == 0 && (body[c0l] == ',' || body[c0l] == '\n' || body[c0l] == '\r');
        struct fr_api_push_spec spec = {
            .pipeline = er->p,
            .ds = ds,
            .min_rows = 1,
            .max_rows = is_bulk ? 1000 : 1,
            .partial = is_bulk,
            .array_only = is_bulk,
            .csv_header = header,
            .wait_ms = UINT32_MAX,
            .op = FR_OP_UPSERT,
        };
        crud_strip_soft(ds, req, body, blen, &spec);
        crud_post(e, req, &spec);
        return true;
    }
    const char *allow = seg ? "GET, PUT, PATCH, DELETE" : "GET, POST";
    if (!seg && strcmp(method, "GET") == 0) {
        cr->op = CRUD_LIST;
    } else if (seg && !is_bulk && strcmp(method, "GET") == 0) {
        cr->op = CRUD_GET;
    } else if (seg && !is_bulk && strcmp(method, "PUT") == 0) {
        cr->op = CRUD_PUT;
    } else if (seg && !is_bulk && strcmp(method, "PATCH") == 0) {
        cr->op = CRUD_PATCH;
    } else if (seg && !is_bulk && strcmp(method, "DELETE") == 0) {
        cr->op = CRUD_DELETE;
    } else {
        fr_http_add_header(req, "Allow", is_bulk ? "POST" : allow);
        fr_api_respond_detail(er, req, 405, "Method Not Allowed", w);
        return true;
    }
    const struct fr_column *key = &ds->columns[ds->key_index[0]];
    struct fr_buf sql;
    fr_buf_init(&sql, 0);
    const char *params[3];
    char a[24], b2[24];
    int np;
    if (cr->op == CRUD_LIST) {
        const char *q = fr_http_req_query(req);
        size_t ql = strlen(q);
        cr->limit = 10;
        cr->offset = 0;
        if (fr_http_query_get(q, ql, "limit", &w->q1) &&
            (!fr_parse_i64(w->q1.data ? w->q1.data : "", w->q1.len, &cr->limit) || cr->limit < 1 ||
             cr->limit > 1000)) {
            fr_buf_deinit(&sql);
            crud_422(er, req, "query", "limit", "Input should be an integer from 1 to 1000", "less_than_equal", w);
            return true;
        }
        if (fr_http_query_get(q, ql, "offset", &w->q1) &&
            (!fr_parse_i64(w->q1.data ? w->q1.data : "", w->q1.len, &cr->offset) || cr->offset < 0)) {
            fr_buf_deinit(&sql);
            crud_422(er, req, "query", "offset", "Input should be an integer >= 0", "greater_than_equal", w);
            return true;
        }
        /* cursor=K (keyset, the Link of a cursor page carries the next
         * one): rows whose key is after K; offset then counts from K */
        if (fr_http_query_get(q, ql, "cursor", &w->q1)) {
            int64_t kv;
            if (w->q1.len == 0 || w->q1.len > FR_API_MAX_VALUE ||
                ((key->type == FR_T_INT || key->type == FR_T_BIGINT) && !fr_parse_i64(w->q1.data, w->q1.len, &kv))) {
                fr_buf_deinit(&sql);
                crud_422(er, req, "query", "cursor",
                         "Input should be a key value (the cursor of the previous page's Link)", "cursor_parsing", w);
                return true;
            }
            char *cur = fr_http_req_alloc(req, w->q1.len + 1);
            memcpy(cur, w->q1.data, w->q1.len);
            cur[w->q1.len] = '\0';
            cr->cursor = cur;
        }
        (void)fr_buf_puts(&sql, "SELECT ");
        crud_cols(ds, &sql);
        (void)fr_buf_printf(&sql, " FROM %s t WHERE true", ds->table);
        if (ds->soft_delete)
            (void)fr_buf_printf(&sql, " AND t.%s IS NULL", ds->soft_delete);
        if (cr->cursor)
            (void)fr_buf_printf(&sql, " AND t.%s > $3::%s", key->name, fr_type_sql(key->type));
        (void)fr_buf_printf(&sql, " ORDER BY t.%s LIMIT $1::bigint OFFSET $2::bigint", key->name);
        snprintf(a, sizeof(a), "%" PRId64, cr->limit);
        snprintf(b2, sizeof(b2), "%" PRId64, cr->offset);
        params[0] = a;
        params[1] = b2;
        params[2] = cr->cursor;
        np = cr->cursor ? 3 : 2;
    } else {
        char dec[FR_API_MAX_VALUE + 1];
        size_t n = fr_http_pct_decode(seg, strlen(seg), dec, FR_API_MAX_VALUE);
        int64_t v;
        if (n > FR_API_MAX_VALUE || n == 0 ||
            ((key->type == FR_T_INT || key->type == FR_T_BIGINT) && !fr_parse_i64(dec, n, &v))) {
            fr_buf_deinit(&sql);
            crud_422(er, req, "path", "id", "Input should be a valid integer, unable to parse string as an integer",
                     "int_parsing", w);
            return true;
        }
        char *id = fr_http_req_alloc(req, n + 1);
        memcpy(id, dec, n);
        id[n] = '\0';
        cr->id = id;
        if (cr->op == CRUD_GET) {
            (void)fr_buf_puts(&sql, "SELECT ");
            crud_cols(ds, &sql);
        } else {
            (void)fr_buf_puts(&sql, "SELECT to_jsonb(t)::text");
        }
        if (ds->soft_delete)
            (void)fr_buf_printf(&sql, ", t.%s IS NOT NULL AS fr_gone", ds->soft_delete);
        else
            (void)fr_buf_puts(&sql, ", false AS fr_gone");
        (void)fr_buf_printf(&sql, " FROM %s t WHERE t.%s = $1::%s", ds->table, key->name, fr_type_sql(key->type));
        params[0] = id;
        np = 1;
    }
    /* reads: ETag from the dataset's version, 304 before the query */
    if ((cr->op == CRUD_LIST || cr->op == CRUD_GET) && fr_httpcache_crud_begin(w->hc, req, er->r, &cr->hc)) {
        fr_buf_deinit(&sql);
        return true;
    }
    fr_pg_t *pg = w->app->pg;
    int rc = pg && fr_pg_connected(pg) ? fr_pg_query(pg, sql.data, np, params, NULL, on_crud, cr) : -ENOTCONN;
    fr_buf_deinit(&sql);
    if (rc != 0)
        fr_api_respond_detail(er, req, 503, "database unavailable; retry", w);
    else
        w->inflight++;
    return true;
}
