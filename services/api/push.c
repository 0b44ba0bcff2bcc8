/* push: validated writes published as batches, answered when loaded (see
 * push.h).
 *
 * A waiter is one write in flight. It holds a reference for its XADD (the
 * Redis callback fires exactly once) and one for its timer (released in the
 * timer's close callback); it is freed when both are gone. Its request is
 * answered exactly once: 503 if the XADD fails, 201 on batch.loaded, 422 on
 * batch.rejected, 202 when the wait ends or the worker drains. */
#include "push.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api.h"
#include "idem.h"
#include "log.h"
#include "names.h"
#include "parse.h"
#include "problem.h"

#define BATCH_KEY_TTL_S "604800" /* fr:batch:{id}: 7 days */

enum wstate {
    W_XADD,    /* XADD sent */
    W_WAITING, /* queued; waiting for batch.loaded */
    W_DONE,    /* answered */
};

struct waiter {
    struct fr_api_push *st; /* borrowed; NULL once unlinked */
    fr_http_req_t *req;     /* borrowed until answered, then NULL */
    struct fr_api_worker *w;
    char id[FR_BATCH_ID_LEN];
    char qname[160];
    enum wstate state;
    int refs;
    bool single;  /* body was one object: answer one object */
    bool partial; /* bulk: answer {"inserted","rejected"} */
    uint32_t wait_ms;
    int ok_status;              /* 201 (default), 200, or 204 (no body) */
    size_t n_rows;              /* rows published */
    struct fr_buf rows_json;    /* owned: JSON array of the rows published */
    struct fr_buf rejects_json; /* owned: ',{"row":i,"reason":...}' items, partial only */
    uint32_t *row_map;          /* owned: request index (0-based) of each batch row */
    uv_timer_t timer;
    bool timer_init;
    struct waiter *prev, *next;
};

struct fr_api_push {
    struct waiter *head; /* waiters not answered yet (or XADD pending) */
    size_t n;
    bool closed; /* draining: new pushes get 503 */
};

uint32_t fr_api_push_default_wait_ms(void)
{
    const char *s = getenv("FRESHET_API_WRITE_WAIT_MS");
    int64_t v;

    if (s && fr_parse_i64(s, strlen(s), &v) && v >= 0 && v <= 60000)
        return (uint32_t)v;
    return FR_API_PUSH_WAIT_MS;
}

static struct fr_api_push *state_of(struct fr_api_worker *w)
{
    if (!w->push && !w->push_closed)
        w->push = fr_xcalloc(1, sizeof(*w->push));
    return w->push;
}

/* ---------------------------------------------------------------- waiters */

static void waiter_release(struct waiter *wt)
{
    if (--wt->refs > 0)
        return;
    fr_buf_deinit(&wt->rows_json);
    fr_buf_deinit(&wt->rejects_json);
    free(wt->row_map);
    free(wt);
}

static void on_timer_closed(uv_handle_t *h)
{
    waiter_release(fr_container_of((uv_timer_t *)h, struct waiter, timer));
}

static void unlink_waiter(struct waiter *wt)
{
    struct fr_api_push *st = wt->st;

    if (!st)
        return;
    if (wt->prev)
        wt->prev->next = wt->next;
    else
        st->head = wt->next;
    if (wt->next)
        wt->next->prev = wt->prev;
    wt->prev = wt->next = NULL;
    wt->st = NULL;
    st->n--;
    if (st->closed && st->n == 0) {
        wt->w->push = NULL;
        free(st);
    }
}

/* Answers (if not yet) and retires the waiter's timer. */
static void finish(struct waiter *wt, int status, const char *ctype, const struct fr_buf *body)
{
    if (wt->req) {
        fr_http_respond(wt->req, status, ctype, body ? body->data : NULL, body ? body->len : 0);
        wt->req = NULL;
    }
    wt->state = W_DONE;
    unlink_waiter(wt);
    if (wt->timer_init && !uv_is_closing((uv_handle_t *)&wt->timer)) {
        uv_timer_stop(&wt->timer);
        uv_close((uv_handle_t *)&wt->timer, on_timer_closed);
    }
}

static void finish_detail(struct waiter *wt, int status, const char *msg)
{
    struct fr_buf b;

    fr_buf_init(&b, 0);
    fr_problem_detail(&b, msg, strlen(msg));
    finish(wt, status, "application/json", &b);
    fr_buf_deinit(&b);
}

static void answer_202(struct waiter *wt)
{
    struct fr_buf b;
    char loc[96];

    if (wt->req) {
        snprintf(loc, sizeof(loc), "/v1/batches/%s", wt->id);
        fr_http_add_header(wt->req, "Location", loc);
    }
    fr_buf_init(&b, 0);
    (void)fr_buf_printf(&b, "{\"batch\":\"%s\",\"status\":\"queued\",\"rows\":%zu,\"location\":\"/v1/batches/%s\"}",
                        wt->id, wt->n_rows, wt->id);
    finish(wt, 202, "application/json", &b);
    fr_buf_deinit(&b);
}

/* 201: the rows (one object for a one-object body), or the bulk shape.
 * extra_rejects: loader-side rejects from the event (JSON array or NULL). */
/* Appends one loader reject as {"row": <request index>, "field", "reason"}. */
static void put_loader_reject(struct fr_buf *b, const struct waiter *wt, json_t *r)
{
    json_int_t row = json_integer_value(json_object_get(r, "row"));
    const char *field = json_string_value(json_object_get(r, "field"));
    const char *reason = json_string_value(json_object_get(r, "reason"));
    size_t idx = row >= 0 && (size_t)row < wt->n_rows && wt->row_map ? wt->row_map[row] : (size_t)row;

    (void)fr_buf_printf(b, "{\"row\":%zu", idx);
    if (field) {
        (void)fr_buf_puts(b, ",\"field\":");
        (void)fr_buf_json_str(b, field, strlen(field));
    }
    (void)fr_buf_puts(b, ",\"reason\":");
    (void)fr_buf_json_str(b, reason ? reason : "", reason ? strlen(reason) : 0);
    (void)fr_buf_putc(b, '}');
}

/* A write whose every row had to load but the loader refused some
 * (references, unique): 409 for a unique conflict, else 400, naming them. */
static void answer_refused(struct waiter *wt, json_t *loader_rejects)
{
    struct fr_buf b;
    int status = 400;

    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "{\"detail\":");
    if (json_array_size(loader_rejects) == 1) {
        const char *reason = json_string_value(json_object_get(json_array_get(loader_rejects, 0), "reason"));
        (void)fr_buf_json_str(&b, reason ? reason : "", reason ? strlen(reason) : 0);
    } else {
        (void)fr_buf_putc(&b, '[');
        for (size_t i = 0; i < json_array_size(loader_rejects); i++) {
            if (i)
                (void)fr_buf_putc(&b, ',');
            put_loader_reject(&b, wt, json_array_get(loader_rejects, i));
        }
        (void)fr_buf_putc(&b, ']');
    }
    (void)fr_buf_printf(&b, ",\"batch\":\"%s\"}", wt->id);
    for (size_t i = 0; i < json_array_size(loader_rejects); i++) {
        const char *kind = json_string_value(json_object_get(json_array_get(loader_rejects, i), "kind"));
        if (kind && strcmp(kind, "unique") == 0)
            status = 409;
    }
    finish(wt, status, "application/json", &b);
    fr_buf_deinit(&b);
}

static void answer_201(struct waiter *wt, json_t *loader_rejects)
{
    struct fr_buf b;
    size_t n_loader = loader_rejects ? json_array_size(loader_rejects) : 0;

    if (!wt->partial && n_loader > 0) {
        answer_refused(wt, loader_rejects);
        return;
    }
    fr_buf_init(&b, 0);
    if (wt->partial) {
        (void)fr_buf_printf(&b, "{\"batch\":\"%s\",\"inserted\":%zu,\"rejected\":[", wt->id,
                            wt->n_rows >= n_loader ? wt->n_rows - n_loader : 0);
        if (wt->rejects_json.len > 1)
            (void)fr_buf_append(&b, wt->rejects_json.data + 1, wt->rejects_json.len - 1); /* skip ',' */
        for (size_t i = 0; i < n_loader; i++) {
            if (b.data[b.len - 1] != '[')
                (void)fr_buf_putc(&b, ',');
            put_loader_reject(&b, wt, json_array_get(loader_rejects, i));
        }
        (void)fr_buf_puts(&b, "]}");
    } else if (wt->single && wt->rows_json.len > 2) {
        (void)fr_buf_append(&b, wt->rows_json.data + 1, wt->rows_json.len - 2); /* strip [ ] */
    } else {
        (void)fr_buf_append(&b, wt->rows_json.data, wt->rows_json.len);
    }
    if (wt->req) {
        char loc[96];
        snprintf(loc, sizeof(loc), "/v1/batches/%s", wt->id);
        fr_http_add_header(wt->req, "Location", loc);
    }
    if (wt->ok_status == 204)
        finish(wt, 204, NULL, NULL);
    else
        finish(wt, wt->ok_status, "application/json", &b);
    fr_buf_deinit(&b);
}

static void on_timer(uv_timer_t *t)
{
    struct waiter *wt = fr_container_of(t, struct waiter, timer);
    answer_202(wt);
}

static void on_noop_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)reply;
    (void)data;
}

/* A best-effort command whose reply nobody needs (logged when it cannot be sent). */
static void fire(fr_redis_t *r, int argc, const char **argv, const size_t *lens)
{
    if (fr_redis_commandv(r, 0, on_noop_reply, NULL, argc, argv, lens) != 0)
        fr_debug("push: %s not sent (Redis not connected)", argv[0]);
}

static void after_queued(struct waiter *wt, const char *entry)
{
    struct fr_api_worker *w = wt->w;
    struct fr_buf v;
    char *key = fr_names_batch(wt->id);

    fr_buf_init(&v, 0);
    (void)fr_buf_puts(&v, "{\"dataset\":");
    (void)fr_buf_json_str(&v, wt->qname, strlen(wt->qname));
    (void)fr_buf_puts(&v, ",\"entry\":");
    (void)fr_buf_json_str(&v, entry, strlen(entry));
    (void)fr_buf_printf(&v, ",\"rows\":%zu,\"source\":\"api\"}", wt->n_rows);
    {
        const char *argv[] = {"SET", key, v.data, "EX", BATCH_KEY_TTL_S};
        size_t lens[] = {3, strlen(key), v.len, 2, strlen(BATCH_KEY_TTL_S)};
        fire(w->app->redis, 5, argv, lens);
    }
    free(key);
    fr_buf_reset(&v);
    {
        char ts[32];
        fr_format_timestamp(fr_wall_us(), ts);
        (void)fr_buf_printf(&v, "{\"type\":\"batch.published\",\"ts\":\"%s\",\"dataset\":", ts);
        (void)fr_buf_json_str(&v, wt->qname, strlen(wt->qname));
        (void)fr_buf_printf(&v, ",\"batch\":\"%s\",\"rows\":%zu,\"source\":\"api\"}", wt->id, wt->n_rows);
        const char *argv[] = {"PUBLISH", FR_NAMES_EVENTS, v.data};
        size_t lens[] = {7, strlen(FR_NAMES_EVENTS), v.len};
        fire(w->app->redis, 3, argv, lens);
    }
    fr_buf_deinit(&v);
}

static void on_xadd(fr_redis_t *r, redisReply *reply, void *data)
{
    struct waiter *wt = data;
    (void)r;

    if (wt->state == W_XADD) {
        if (!reply || reply->type != REDIS_REPLY_STRING) {
            fr_warn("push %s: XADD to the stream of %s failed: %s", wt->id, wt->qname,
                    reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
            finish_detail(wt, 503, "could not queue the write (Redis unavailable); retry later");
        } else {
            after_queued(wt, reply->str);
            wt->state = W_WAITING;
            if (wt->wait_ms == 0 || !wt->st || wt->st->closed)
                answer_202(wt);
            else
                uv_timer_start(&wt->timer, on_timer, wt->wait_ms, 0);
        }
    }
    waiter_release(wt);
}

/* ----------------------------------------------------------------- parsing */

struct collect {
    const struct fr_dataset *ds;
    fr_batch_builder_t *builder;
    struct fr_buf *rows_json; /* JSON array being built */
    struct fr_buf *errs;      /* 422 detail items (strict) or bulk reject items */
    uint32_t *row_map;        /* request index of each accepted row (max_rows entries) */
    bool partial;
    uint32_t max_rows;
    size_t index; /* records seen (rows + rejects), 0-based index of the next */
    size_t n_ok, n_rejected;
};

static void put_json_value(struct fr_buf *b, enum fr_type t, const char *v, size_t n)
{
    switch (t) {
    case FR_T_INT:
    case FR_T_BIGINT:
    case FR_T_FLOAT:
    case FR_T_NUMERIC:
    case FR_T_JSON:
        (void)fr_buf_append(b, v, n);
        break;
    case FR_T_BOOL:
        (void)fr_buf_puts(b, n > 0 && v[0] == 't' ? "true" : "false");
        break;
    default:
        (void)fr_buf_json_str(b, v, n);
        break;
    }
}

static int on_row(void *data, const struct fr_row *row)
{
    struct collect *c = data;

    c->index++;
    if (c->n_ok >= c->max_rows)
        return -E2BIG;
    c->row_map[c->n_ok] = (uint32_t)(c->index - 1);
    fr_batch_builder_add(c->builder, row->vals, row->lens, row->nulls, (uint32_t)c->index);
    (void)fr_buf_putc(c->rows_json, c->n_ok ? ',' : '[');
    (void)fr_buf_putc(c->rows_json, '{');
    for (size_t i = 0; i < c->ds->n_columns; i++) {
        const struct fr_column *col = &c->ds->columns[i];
        if (i)
            (void)fr_buf_putc(c->rows_json, ',');
        (void)fr_buf_json_str(c->rows_json, col->name, strlen(col->name));
        (void)fr_buf_putc(c->rows_json, ':');
        if (row->nulls[i])
            (void)fr_buf_puts(c->rows_json, "null");
        else
            put_json_value(c->rows_json, col->type, row->vals[i], row->lens[i]);
    }
    (void)fr_buf_putc(c->rows_json, '}');
    c->n_ok++;
    return 0;
}

/* The column a parse reason names ("country: must be ..."), or NULL. */
static const struct fr_column *reason_column(const struct fr_dataset *ds, const char *reason)
{
    const char *colon = strchr(reason, ':');

    if (!colon)
        return NULL;
    for (size_t i = 0; i < ds->n_columns; i++)
        if (strlen(ds->columns[i].name) == (size_t)(colon - reason) &&
            memcmp(ds->columns[i].name, reason, (size_t)(colon - reason)) == 0)
            return &ds->columns[i];
    return NULL;
}

static int on_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct collect *c = data;
    size_t idx = c->index++;
    (void)line;
    (void)raw;
    (void)raw_len;

    c->n_rejected++;
    if (c->n_rejected > FR_API_PUSH_MAX_REJECTS)
        return 0;
    if (c->partial) {
        (void)fr_buf_printf(c->errs, ",{\"row\":%zu,\"reason\":", idx);
        (void)fr_buf_json_str(c->errs, reason, strlen(reason));
        (void)fr_buf_putc(c->errs, '}');
    } else {
        const struct fr_column *col = reason_column(c->ds, reason);
        fr_problem_item(c->errs, c->errs->len == 0, "body", NULL, (long)idx, col ? col->name : NULL, reason,
                        strlen(reason), "value_error");
    }
    return 0;
}

static void respond_422_list(fr_http_req_t *req, const char *items, size_t n)
{
    struct fr_buf b;

    fr_buf_init(&b, 0);
    fr_problem_list(&b, items, n);
    fr_http_respond_json(req, 422, &b);
    fr_buf_deinit(&b);
}

static void respond_422_typed(fr_http_req_t *req, const char *msg, const char *type)
{
    struct fr_buf b;

    fr_buf_init(&b, 0);
    fr_problem_one(&b, "body", NULL, msg, type);
    fr_http_respond_json(req, 422, &b);
    fr_buf_deinit(&b);
}

static void respond_422_msg(fr_http_req_t *req, const char *msg)
{
    respond_422_typed(req, msg, "value_error");
}

static bool ctype_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    return ct && strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* ---------------------------------------------------------------- publish */

static void push_do(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_api_push_spec *spec);

static void push_gated(struct fr_api_worker *w, fr_http_req_t *req, void *arg)
{
    push_do(w, req, arg);
}

void fr_api_push(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_api_push_spec *spec)
{
    /* a write with an Idempotency-Key runs once per key (idem.c); the
     * spec is copied into the request for the wait */
    if (fr_http_req_header(req, FR_API_IDEM_HEADER) && !fr_api_idem_batch_id(req)) {
        struct fr_api_push_spec *copy = fr_http_req_alloc(req, sizeof(*copy));

        *copy = *spec;
        if (fr_api_idem_gate(w, req, push_gated, copy))
            return;
    }
    push_do(w, req, spec);
}

static void push_do(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_api_push_spec *spec)
{
    struct fr_api_push *st = state_of(w);
    const char *ct = fr_http_req_header(req, "Content-Type");
    size_t blen = 0;
    const char *body = fr_http_req_body(req, &blen);
    enum fr_file_format fmt;
    struct collect c;
    struct fr_buf errs, wrapped, payload;
    fr_parser_t *p;
    struct waiter *wt;
    bool single = false;
    uint32_t max_rows = spec->max_rows ? spec->max_rows : FR_API_PUSH_DEFAULT_MAX;
    uint32_t min_rows = spec->min_rows ? spec->min_rows : 1;
    char *key, num[24], msg[FR_ERR_LEN];
    int rc;

    if (!st || st->closed) {
        fr_http_respond_detail(req, 503, "shutting down; retry on another instance");
        return;
    }
    if (st->n >= FR_API_PUSH_MAX_WAITERS) {
        fr_http_add_header(req, "Retry-After", "1");
        fr_http_respond_detail(req, 503, "too many writes in flight on this worker; retry shortly");
        return;
    }
    if (spec->body) {
        body = spec->body;
        blen = spec->body_len;
        fmt = FR_FMT_JSON;
    } else if (ctype_is(ct, "text/csv")) {
        fmt = FR_FMT_CSV;
    } else if (!ct || ct[0] == '\0' || ctype_is(ct, "application/json")) {
        fmt = FR_FMT_JSON;
    } else {
        fr_http_respond_detail(req, 415,
                               "Content-Type must be application/json (an object or an array of "
                               "objects) or text/csv");
        return;
    }

    fr_buf_init(&wrapped, 0);
    if (fmt == FR_FMT_JSON) {
        size_t i = 0;
        while (i < blen && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
            i++;
        if (i < blen && body[i] == '{' && spec->array_only) {
            fr_buf_deinit(&wrapped);
            respond_422_typed(req, "Input should be a valid list (a JSON array of objects)", "list_type");
            return;
        }
        if (i < blen && body[i] == '{') {
            single = true;
            (void)fr_buf_putc(&wrapped, '[');
            (void)fr_buf_append(&wrapped, body, blen);
            (void)fr_buf_putc(&wrapped, ']');
            body = wrapped.data;
            blen = wrapped.len;
        } else if (i == blen || body[i] != '[') {
            fr_buf_deinit(&wrapped);
            respond_422_msg(req, "body must be a JSON object or a JSON array of objects (or CSV with "
                                 "Content-Type: text/csv)");
            return;
        }
    }

    wt = fr_xcalloc(1, sizeof(*wt));
    wt->w = w;
    wt->req = req;
    wt->single = single;
    wt->partial = spec->partial;
    wt->ok_status = spec->ok_status ? spec->ok_status : 201;
    wt->wait_ms = spec->wait_ms == UINT32_MAX ? fr_api_push_default_wait_ms() : spec->wait_ms;
    fr_buf_init(&wt->rows_json, 0);
    fr_buf_init(&wt->rejects_json, 0);
    fr_buf_init(&errs, 0);
    fr_buf_init(&payload, 0);
    memset(&c, 0, sizeof(c));
    c.ds = spec->ds;
    c.builder = fr_batch_builder_new(spec->ds, "api", spec->op);
    c.rows_json = &wt->rows_json;
    c.errs = spec->partial ? &wt->rejects_json : &errs;
    c.partial = spec->partial;
    c.max_rows = max_rows;
    wt->row_map = fr_xcalloc(max_rows, sizeof(*wt->row_map));
    c.row_map = wt->row_map;

    p = fr_parser_new(spec->ds, fmt, spec->csv_header, on_row, on_reject, &c);
    rc = fr_parser_feed(p, body, blen);
    if (rc == 0)
        rc = fr_parser_finish(p);
    if (rc == -E2BIG || c.n_ok + c.n_rejected > max_rows) {
        snprintf(msg, sizeof(msg), "too many rows: send at most %u per request (this route's limit)", max_rows);
        respond_422_msg(req, msg);
        goto out_free;
    }
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "body does not parse: %s", fr_parser_error(p));
        respond_422_msg(req, msg);
        goto out_free;
    }
    if (!spec->partial && c.n_rejected > 0) {
        respond_422_list(req, errs.data, errs.len);
        goto out_free;
    }
    if (c.n_ok + c.n_rejected < min_rows) {
        snprintf(msg, sizeof(msg), "too few rows: send at least %u (got %zu)", min_rows, c.n_ok + c.n_rejected);
        respond_422_msg(req, msg);
        goto out_free;
    }
    (void)fr_buf_putc(&wt->rows_json, c.n_ok ? ']' : '[');
    if (c.n_ok == 0)
        (void)fr_buf_putc(&wt->rows_json, ']');
    wt->n_rows = c.n_ok;
    snprintf(wt->qname, sizeof(wt->qname), "%s", spec->ds->qname);
    if (fr_api_idem_batch_id(req)) /* the same id for every retry: the ledger loads it once */
        snprintf(wt->id, sizeof(wt->id), "%s", fr_api_idem_batch_id(req));
    else
        fr_ulid(wt->id);

    if (c.n_ok == 0) { /* bulk with every row invalid: nothing to publish */
        fr_parser_free(p);
        fr_batch_builder_free(c.builder);
        fr_buf_deinit(&errs);
        fr_buf_deinit(&payload);
        fr_buf_deinit(&wrapped);
        wt->refs = 1;
        wt->state = W_WAITING;
        answer_201(wt, NULL);
        waiter_release(wt);
        return;
    }
    rc = fr_batch_builder_flush(c.builder, wt->id, NULL, &payload);
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "the rows do not fit in one batch (%s); send fewer", strerror(-rc));
        respond_422_msg(req, msg);
        goto out_free;
    }

    key = fr_names_stream(wt->qname);
    snprintf(num, sizeof(num), "%zu", wt->n_rows);
    {
        const char *gargv[] = {"XGROUP", "CREATE", key, FR_NAMES_GROUP, "0", "MKSTREAM"};
        size_t glens[] = {6, 6, strlen(key), strlen(FR_NAMES_GROUP), 1, 8};
        const char *argv[] = {"XADD", key, "*", "batch", payload.data, "id", wt->id, "rows", num};
        size_t lens[] = {4, strlen(key), 1, 5, payload.len, 2, strlen(wt->id), 4, strlen(num)};

        fire(w->app->redis, 6, gargv, glens);
        wt->state = W_XADD;
        wt->refs = 1;
        rc = fr_redis_commandv(w->app->redis, 0, on_xadd, wt, 9, argv, lens);
    }
    free(key);
    if (rc != 0) {
        wt->req = NULL;
        fr_http_respond_detail(req, 503, "could not queue the write (Redis unavailable); retry later");
        wt->refs = 1;
        goto out_free;
    }
    /* refs == 1 is the XADD's; the timer takes its own */
    if (uv_timer_init(&w->app->loop, &wt->timer) == 0) {
        wt->timer_init = true;
        wt->refs++;
    }
    wt->st = st;
    wt->next = st->head;
    if (st->head)
        st->head->prev = wt;
    st->head = wt;
    st->n++;
    fr_parser_free(p);
    fr_batch_builder_free(c.builder);
    fr_buf_deinit(&errs);
    fr_buf_deinit(&payload);
    fr_buf_deinit(&wrapped);
    return;

out_free:
    fr_parser_free(p);
    fr_batch_builder_free(c.builder);
    fr_buf_deinit(&errs);
    fr_buf_deinit(&payload);
    fr_buf_deinit(&wrapped);
    fr_buf_deinit(&wt->rows_json);
    fr_buf_deinit(&wt->rejects_json);
    free(wt->row_map);
    free(wt);
}

/* ------------------------------------------------------------------ events */

void fr_api_push_on_event(struct fr_api_worker *w, const char *payload, size_t len)
{
    struct fr_api_push *st = w->push;
    json_t *root, *type, *batch;
    const char *t, *id;
    struct waiter *wt;

    if (!st || st->n == 0)
        return;
    if (!memmem(payload, len, "\"batch.loaded\"", 14) && !memmem(payload, len, "\"batch.rejected\"", 16))
        return;
    root = json_loadb(payload, len, 0, NULL);
    if (!root)
        return;
    type = json_object_get(root, "type");
    batch = json_object_get(root, "batch");
    t = json_string_value(type);
    id = json_string_value(batch);
    if (!t || !id)
        goto out;
    for (wt = st->head; wt; wt = wt->next)
        if (wt->state == W_WAITING && strcmp(wt->id, id) == 0)
            break;
    if (!wt)
        goto out;
    if (strcmp(t, "batch.loaded") == 0) {
        json_t *rej = json_object_get(root, "rejected");
        answer_201(wt, json_is_array(rej) ? rej : NULL);
    } else if (strcmp(t, "batch.rejected") == 0) {
        const char *reason = json_string_value(json_object_get(root, "reason"));
        char msg[FR_ERR_LEN];
        snprintf(msg, sizeof(msg), "the loader rejected the write: %s", reason ? reason : "(no reason)");
        finish_detail(wt, 422, msg);
    }
out:
    json_decref(root);
}

void fr_api_push_drain(struct fr_api_worker *w)
{
    struct fr_api_push *st = w->push;
    struct waiter *wt, *next;

    w->push_closed = true;
    fr_api_idem_drain(w);
    if (!st)
        return;
    st->closed = true;
    for (wt = st->head; wt; wt = next) {
        next = wt->next;
        if (wt->state == W_WAITING)
            answer_202(wt); /* may free st when it was the last */
    }
    if (w->push && w->push->n == 0) {
        free(w->push);
        w->push = NULL;
    }
}

/* ------------------------------------------------------------ the route */

bool fr_api_push_route(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    const char *rest, *slash;
    char pname[128], dname[128], msg[FR_ERR_LEN];
    const struct fr_pipeline *pl = NULL;
    const struct fr_dataset *ds = NULL;
    bool has_push = false;
    struct fr_api_push_spec spec;

    if (strncmp(path, "/v1/push/", 9) != 0)
        return false;
    rest = path + 9;
    slash = strchr(rest, '/');
    if (!slash || (size_t)(slash - rest) >= sizeof(pname) || strlen(slash + 1) >= sizeof(dname) ||
        strchr(slash + 1, '/')) {
        fr_http_respond_detail(req, 404, "Not Found: use /v1/push/{pipeline}/{dataset}");
        return true;
    }
    memcpy(pname, rest, (size_t)(slash - rest));
    pname[slash - rest] = '\0';
    snprintf(dname, sizeof(dname), "%s", slash + 1);
    for (size_t i = 0; i < w->app->n_pipelines && !pl; i++)
        if (strcmp(w->app->pipelines[i]->name, pname) == 0)
            pl = w->app->pipelines[i];
    if (pl)
        ds = fr_pipeline_dataset(pl, dname);
    for (size_t i = 0; ds && i < pl->n_sources; i++)
        if (pl->sources[i].kind == FR_SRC_PUSH && strcmp(pl->sources[i].dataset, dname) == 0)
            has_push = true;
    if (!has_push) {
        snprintf(msg, sizeof(msg),
                 "no push source for dataset '%.60s' of pipeline '%.60s' (add a source with type: push)", dname,
                 pname);
        fr_http_respond_detail(req, 404, msg);
        return true;
    }
    if (strcmp(fr_http_req_method(req), "POST") != 0) {
        fr_http_add_header(req, "Allow", "POST");
        fr_http_respond_detail(req, 405, "Method Not Allowed");
        return true;
    }
    memset(&spec, 0, sizeof(spec));
    spec.pipeline = pl;
    spec.ds = ds;
    spec.min_rows = 1;
    spec.max_rows = FR_API_PUSH_DEFAULT_MAX;
    spec.csv_header = true;
    {
        const char *partial = fr_http_req_param(req, "partial");
        spec.partial = partial && (strcmp(partial, "1") == 0 || strcmp(partial, "true") == 0);
    }
    spec.wait_ms = UINT32_MAX;
    spec.op = FR_OP_UPSERT;
    fr_api_push(w, req, &spec);
    return true;
}
