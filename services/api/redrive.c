/* redrive: a dead letter back into its dataset's stream (see redrive.h). */
#include "redrive.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "batch.h"
#include "log.h"
#include "names.h"
#include "parse.h"
#include "problem.h"

/* KEYS[1] stream, KEYS[2] dlq; ARGV entry id, batch, batch id, rows. Nil
 * when the dead letter is gone; else the new stream entry id. */
static const char lua_redrive[] =
    "if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) == 0 then return false end\n"
    "local e = redis.call('XADD', KEYS[1], '*', 'batch', ARGV[2], 'id', ARGV[3], 'rows', ARGV[4])\n"
    "redis.call('XDEL', KEYS[2], ARGV[1])\n"
    "return e\n";

struct rd {
    struct fr_api_worker *w;     /* borrowed */
    fr_http_req_t *req;          /* borrowed until answered */
    const struct fr_dataset *ds; /* borrowed */
    char id[48];
    char batch[FR_BATCH_ID_LEN];
    char *row; /* owned: the body's "row" as JSON text, or NULL */
    size_t rows;
};

struct collect {
    fr_batch_builder_t *builder;
    char reason[FR_ERR_LEN];
    size_t n_ok, n_rejected;
};

static int on_row(void *data, const struct fr_row *row)
{
    struct collect *c = data;
    fr_batch_builder_add(c->builder, row->vals, row->lens, row->nulls, row->line);
    c->n_ok++;
    return 0;
}

static int on_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct collect *c = data;
    (void)line;
    (void)raw;
    (void)raw_len;
    if (c->n_rejected++ == 0)
        snprintf(c->reason, sizeof(c->reason), "%s", reason);
    return 0;
}

/* Frees what q owns: before answering, since q itself lives in the
 * request's arena and goes with the answer. */
static void rd_free(struct rd *q)
{
    free(q->row);
    q->row = NULL;
}

static void answer_422(struct rd *q, const char *where, const char *name, const char *msg)
{
    fr_problem_one(&q->w->out, where, name, msg, "value_error");
    rd_free(q);
    fr_http_respond_json(q->req, 422, &q->w->out);
}

static void answer_503(struct rd *q)
{
    rd_free(q);
    fr_http_respond_detail(q->req, 503, "Redis unavailable: the dead letter is unchanged; retry");
}

static void answer_gone(struct rd *q)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "no dead letter %s in %s (discarded or re-driven already?)", q->id, q->ds->qname);
    rd_free(q);
    fr_http_respond_detail(q->req, 404, msg);
}

static void on_noop(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)reply;
    (void)data;
}

static void on_eval(fr_redis_t *r, redisReply *reply, void *data)
{
    struct rd *q = data;

    (void)r;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            fr_warn("re-drive of %s in %s: %s", q->id, q->ds->qname, reply->str);
        answer_503(q);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        answer_gone(q);
        return;
    }
    fr_info("dead letter %s of %s re-driven as batch %s (%zu rows, entry %s)", q->id, q->ds->qname, q->batch, q->rows,
            reply->str);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s%,s:I}", "dataset", q->ds->qname, "id", q->id, "batch", q->batch, "entry",
                          reply->str, (size_t)reply->len, "rows", (json_int_t)q->rows);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    rd_free(q);
    fr_http_respond(q->req, 200, "application/json", s, s ? strlen(s) : 0);
    free(s);
}

/* Sends the script with the packed batch. */
static void requeue(struct rd *q, const char *payload, size_t len)
{
    char *stream = fr_names_stream(q->ds->qname), *dlq = fr_names_dlq(q->ds->qname);
    char rows[24];
    snprintf(rows, sizeof(rows), "%zu", q->rows);
    const char *gargv[] = {"XGROUP", "CREATE", stream, FR_NAMES_GROUP, "0", "MKSTREAM"};
    const char *argv[] = {"EVAL", lua_redrive, "2", stream, dlq, q->id, payload, q->batch, rows};
    size_t lens[] = {4,   strlen(lua_redrive), 1,           strlen(stream), strlen(dlq), strlen(q->id),
                     len, strlen(q->batch),    strlen(rows)};
    /* the group exists once a loader ran; BUSYGROUP is the usual answer */
    if (fr_redis_commandv(q->w->app->redis, 0, on_noop, NULL, 6, gargv, NULL) != 0 ||
        fr_redis_commandv(q->w->app->redis, 0, on_eval, q, 9, argv, lens) != 0)
        answer_503(q);
    free(stream);
    free(dlq);
}

static const redisReply *field(const redisReply *f, const char *name)
{
    for (size_t k = 0; k + 1 < f->elements; k += 2)
        if (f->element[k]->type == REDIS_REPLY_STRING && strcmp(f->element[k]->str, name) == 0 &&
            f->element[k + 1]->type == REDIS_REPLY_STRING)
            return f->element[k + 1];
    return NULL;
}

static bool looks_json_object(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i < n && s[i] == '{';
}

static void on_entry(fr_redis_t *r, redisReply *reply, void *data)
{
    struct rd *q = data;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        answer_503(q);
        return;
    }
    if (reply->elements == 0 || reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements != 2 ||
        reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
        answer_gone(q);
        return;
    }
    const redisReply *f = reply->element[0]->element[1];
    const redisReply *kind = field(f, "kind"), *raw = field(f, "raw"), *payload = field(f, "payload");
    const char *text = NULL, *where = "body", *name = "row";
    size_t text_len = 0;
    enum fr_file_format fmt = FR_FMT_NDJSON;

    if (q->row) {
        text = q->row;
        text_len = strlen(q->row);
    } else if (kind && strcmp(kind->str, "batch") == 0 && payload && payload->len > 0) {
        char err[FR_ERR_LEN];
        fr_batch_t *b = fr_batch_decode(payload->str, payload->len, err);
        if (!b) {
            char msg[FR_ERR_LEN + 80];
            snprintf(msg, sizeof(msg), "the dead letter's batch does not decode (%s); discard it", err);
            answer_422(q, "dead_letter", "payload", msg);
            return;
        }
        snprintf(q->batch, sizeof(q->batch), "%s", fr_batch_id(b));
        q->rows = fr_batch_rows(b);
        fr_batch_free(b);
        requeue(q, payload->str, payload->len);
        return;
    } else if (raw && raw->len > 0) {
        text = raw->str;
        text_len = raw->len;
        where = "dead_letter";
        name = "raw";
        if (!looks_json_object(text, text_len))
            fmt = FR_FMT_CSV; /* a CSV line: by column position */
    } else {
        answer_422(q, "body", "row",
                   "this dead letter carries no record to re-drive (a row the loader refused keeps only its field "
                   "and value): send the corrected row as {\"row\": {...}}");
        return;
    }

    struct collect c;
    memset(&c, 0, sizeof(c));
    c.builder = fr_batch_builder_new(q->ds, "redrive", FR_OP_UPSERT);
    fr_parser_t *p = fr_parser_new(q->ds, fmt, false, on_row, on_reject, &c);
    int rc = fr_parser_feed(p, text, text_len);
    if (rc == 0)
        rc = fr_parser_finish(p);
    char msg[FR_ERR_LEN + 200];
    if (rc != 0 || c.n_rejected > 0 || c.n_ok != 1) {
        if (rc != 0)
            snprintf(msg, sizeof(msg), "does not parse: %s", fr_parser_error(p));
        else if (c.n_rejected > 0)
            snprintf(msg, sizeof(msg), "%s%s", c.reason,
                     q->row ? "" : "; correct it and send it as {\"row\": {...}}");
        else
            snprintf(msg, sizeof(msg), "must be one record (got %zu)", c.n_ok);
        fr_parser_free(p);
        fr_batch_builder_free(c.builder);
        answer_422(q, where, name, msg);
        return;
    }
    fr_parser_free(p);
    struct fr_buf out;
    fr_buf_init(&out, 0);
    fr_ulid(q->batch);
    q->rows = 1;
    rc = fr_batch_builder_flush(c.builder, q->batch, NULL, &out);
    fr_batch_builder_free(c.builder);
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "the row does not fit in a batch (%s)", strerror(-rc));
        answer_422(q, where, name, msg);
    } else {
        requeue(q, out.data, out.len);
    }
    fr_buf_deinit(&out);
}

void fr_api_redrive(struct fr_api_worker *w, fr_http_req_t *req, const struct fr_dataset *ds, const char *id)
{
    struct rd *q = fr_http_req_alloc(req, sizeof(*q));
    size_t blen = 0;
    const char *body = fr_http_req_body(req, &blen);

    memset(q, 0, sizeof(*q));
    q->w = w;
    q->req = req;
    q->ds = ds;
    snprintf(q->id, sizeof(q->id), "%s", id);
    if (body && blen > 0) {
        json_error_t je;
        json_t *o = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &je);
        const char *k;
        json_t *v;
        if (!json_is_object(o)) {
            json_decref(o);
            answer_422(q, "body", NULL, "body must be empty or a JSON object {\"row\": {...}}");
            return;
        }
        json_object_foreach(o, k, v)
        {
            if (strcmp(k, "row") != 0) {
                char name[128];
                snprintf(name, sizeof(name), "%s", k); /* k goes with o */
                json_decref(o);
                answer_422(q, "body", name, "unknown member: the body is {\"row\": {...}} (or empty)");
                return;
            }
        }
        json_t *row = json_object_get(o, "row");
        if (!json_is_object(row)) {
            json_decref(o);
            answer_422(q, "body", "row", "row must be a JSON object: the corrected record, column: value");
            return;
        }
        q->row = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
    }
    char *dlq = fr_names_dlq(ds->qname);
    const char *argv[] = {"XRANGE", dlq, q->id, q->id};
    int rc = fr_redis_commandv(w->app->redis, 0, on_entry, q, 4, argv, NULL);
    free(dlq);
    if (rc != 0)
        answer_503(q);
}
