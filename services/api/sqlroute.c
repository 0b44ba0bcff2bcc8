/* sqlroute: the sql routes (docs/routes.md): the query with bound
 * parameters on the worker's PostgreSQL connection (or a read replica,
 * readpool.c), the optional exists check (404 with the route's not_found),
 * results as JSON or CSV (render.c for a cell) in the route's shape (one,
 * value, list, envelope), and list/envelope results paged from a WITH HOLD
 * cursor on a bounded stream slot (workers.c; the cursor itself on a read
 * replica that has the caller's writes, when there is one), streamed in
 * chunks with backpressure. */
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
#include "readpool.h"
#include "render.h"
#include "workers.h"

#define MAX_RESULT_BYTES (64u << 20) /* a buffered answer (one, value shapes) */
#define PAGE_ROWS        2000        /* list/envelope rows fetched per round trip from a cursor */

/* PostgreSQL type OIDs (pg_type.h is not in libpq-dev). */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_DATE = 1082,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700,
    OID_JSONB = 3802,
};

/* One sql request in flight, in the request's arena. */
struct sqlreq {
    struct fr_api_engine *e;
    struct eroute *er;
    fr_http_req_t *req;
    bool csv;
    bool exists_phase;
    bool streaming;                 /* the head went out: chunks follow */
    bool gone;                      /* the client went away */
    const char **vals;              /* arena: one per param, NULL = absent */
    char cursor[40];                /* list/envelope: the WITH HOLD cursor on the slot's connection */
    struct fr_api_stream_slot slot; /* list/envelope: the cursor's bounded slot (workers.h) */
    int replica;                    /* list/envelope: the read replica holding the cursor, -1: the slot's */
    bool no_replica;                /* a replica failed the cursor: the primary's stream connection */
    bool need_known;                /* need holds the caller's read-your-writes position */
    uint64_t need;                  /* fr_readpool_need's answer */
    bool declare_failed;            /* the replica failed the DECLARE: its FETCH runs it again on the primary */
    size_t rows;                    /* rows rendered so far */
    struct fr_buf page;             /* owned: one page of output */
    struct fr_httpcache_req hc;     /* its ETag and answer-cache key (httpcache.h) */
};

/* -------------------------------------------------------------- rendering */

void fr_api_put_json_value(struct fr_buf *b, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        (void)fr_buf_puts(b, "null");
        return;
    }
    const char *v = PQgetvalue(res, row, col);
    size_t n = (size_t)PQgetlength(res, row, col);
    switch (PQftype(res, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        (void)fr_buf_append(b, v, n);
        return;
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC: {
        double d;
        if (!fr_parse_double(v, n, &d)) /* NaN, Infinity */
            (void)fr_buf_puts(b, "null");
        else
            (void)fr_buf_append(b, v, n);
        return;
    }
    case OID_BOOL:
        (void)fr_buf_puts(b, v[0] == 't' ? "true" : "false");
        return;
    case OID_JSON:
    case OID_JSONB:
        (void)fr_buf_append(b, v, n);
        return;
    case OID_TIMESTAMPTZ:
    case OID_TIMESTAMP: {
        int64_t us;
        char t[40];
        if (fr_parse_timestamp(v, n, &us)) {
            size_t tl = fr_format_timestamp(us, t);
            (void)fr_buf_json_str(b, t, tl);
            return;
        }
        break;
    }
    default:
        break;
    }
    (void)fr_buf_json_str(b, v, n);
}

/* One CSV cell (render.c); `raw` is the route's output.csv_raw. */
static void put_csv_value(struct fr_buf *b, const PGresult *res, int row, int col, bool raw)
{
    if (PQgetisnull(res, row, col))
        return;
    (void)fr_render_csv_value(b, PQftype(res, col), PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col),
                              raw);
}

void fr_api_put_row_json(struct fr_buf *b, const PGresult *res, int row)
{
    int nf = PQnfields(res);
    (void)fr_buf_putc(b, '{');
    for (int c = 0; c < nf; c++) {
        if (c)
            (void)fr_buf_putc(b, ',');
        const char *name = PQfname(res, c);
        (void)fr_buf_json_str(b, name, strlen(name));
        (void)fr_buf_putc(b, ':');
        fr_api_put_json_value(b, res, row, c);
    }
    (void)fr_buf_putc(b, '}');
}

void fr_api_route_not_found(const struct fr_route *r, const char **vals, struct fr_buf *out)
{
    const char *s = r->not_found ? r->not_found : "Not Found";
    while (*s) {
        const char *o = strchr(s, '{');
        const char *c = o ? strchr(o, '}') : NULL;
        if (!o || !c) {
            (void)fr_buf_puts(out, s);
            break;
        }
        (void)fr_buf_append(out, s, (size_t)(o - s));
        char name[64];
        size_t nl = (size_t)(c - o - 1);
        int k = -1;
        if (nl < sizeof(name)) {
            memcpy(name, o + 1, nl);
            name[nl] = '\0';
            k = fr_route_param_index(r, name);
        }
        if (k >= 0 && vals[k])
            (void)fr_buf_puts(out, vals[k]);
        else
            (void)fr_buf_append(out, o, (size_t)(c - o + 1));
        s = c + 1;
    }
    (void)fr_buf_putc(out, '\0');
}

/* ---- CSV: the route's labels (csv_header) or the column names, and its
 * line end (CRLF, or LF as exports write files) */

static const char *csv_eol(const struct fr_route *r)
{
    return r->csv_lf ? "\n" : "\r\n";
}

/* False (and a warning) when csv_header does not label every column. */
static bool csv_header_fits(const struct eroute *er, const PGresult *res)
{
    const struct fr_route *r = er->r;
    if (!r->n_csv_header || r->n_csv_header == (size_t)PQnfields(res))
        return true;
    fr_warn("route %s: csv_header has %zu labels but the query returns %d columns; fix one of them", r->name,
            r->n_csv_header, PQnfields(res));
    return false;
}

static void csv_head(const struct fr_route *r, const PGresult *res, struct fr_buf *b)
{
    for (int c = 0; c < PQnfields(res); c++) {
        const char *l = r->n_csv_header ? r->csv_header[c] : PQfname(res, c);
        if (c)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_csv_field(b, l, strlen(l));
    }
    (void)fr_buf_puts(b, csv_eol(r));
}

/* ---- list and envelope results, a page at a time from a cursor */

static void page_prefix(struct sqlreq *sr, const PGresult *res, struct fr_buf *b)
{
    if (sr->csv) {
        csv_head(sr->er->r, res, b);
    } else {
        (void)fr_buf_puts(b, sr->er->r->shape == FR_SHAPE_LIST ? "[" : "{\"items\":[");
    }
}

static void page_rows(struct sqlreq *sr, const PGresult *res, struct fr_buf *b)
{
    int rows = PQntuples(res), nf = PQnfields(res);
    for (int r = 0; r < rows; r++, sr->rows++) {
        if (sr->csv) {
            for (int c = 0; c < nf; c++) {
                if (c)
                    (void)fr_buf_putc(b, ',');
                put_csv_value(b, res, r, c, sr->er->r->csv_raw);
            }
            (void)fr_buf_puts(b, csv_eol(sr->er->r));
        } else {
            if (sr->rows)
                (void)fr_buf_putc(b, ',');
            fr_api_put_row_json(b, res, r);
        }
    }
}

static void page_suffix(struct sqlreq *sr, struct fr_buf *b)
{
    if (sr->csv)
        return;
    if (sr->er->r->shape == FR_SHAPE_LIST)
        (void)fr_buf_putc(b, ']');
    else
        (void)fr_buf_printf(b, "],\"count\":%zu}", sr->rows);
}

/* The connection holding sr's cursor: its read replica's, else the stream
 * slot's on the primary (NULL: gone). */
static fr_pg_t *cursor_pg(struct sqlreq *sr)
{
    struct fr_api_worker *w = sr->e->w;
    return sr->replica >= 0 ? fr_readpool_conn(w->readpool, sr->replica) : fr_api_stream_pg(w, &sr->slot);
}

static void run_sql(struct sqlreq *sr);

static void on_ignore(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    (void)res;
    struct fr_api_worker *w = data;
    w->inflight--;
}

/* Closes the cursor (fire and forget: a reconnect dropped it anyway) and
 * gives its slot back. */
static void close_cursor(struct sqlreq *sr)
{
    struct fr_api_worker *w = sr->e->w;
    fr_pg_t *pg = cursor_pg(sr);
    char sql[64];
    snprintf(sql, sizeof(sql), "CLOSE %s", sr->cursor);
    if (pg && fr_pg_connected(pg) && fr_pg_query(pg, sql, 0, NULL, NULL, on_ignore, w) == 0)
        w->inflight++;
    fr_api_stream_release(w, &sr->slot);
}

static void fetch_page(struct sqlreq *sr);

/* The client's socket has room again, or the client is gone (the next
 * write says which). */
static void on_writable(fr_http_req_t *req, void *data)
{
    (void)req;
    fetch_page(data);
}

static void on_page(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    struct sqlreq *sr = data;
    struct fr_api_worker *w = sr->e->w;
    w->inflight--;
    if (sr->replica >= 0 && !sr->streaming && sr->rows == 0 &&
        (sr->declare_failed ||
         ((!res || PQresultStatus(res) != PGRES_TUPLES_OK) && fr_readpool_failed(w->readpool, sr->replica, res)))) {
        close_cursor(sr);      /* if it is still open there; gives the slot back */
        sr->no_replica = true; /* nothing answered yet: the whole read again on the primary */
        fr_buf_deinit(&sr->page);
        run_sql(sr);
        return;
    }
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        /* sr lives in the request's arena: finish with it before answering */
        if (res) {
            fr_warn("route %s: query failed: %s", sr->er->r->name, PQresultErrorMessage(res));
            close_cursor(sr);
        }
        fr_api_stream_release(w, &sr->slot); /* lost with its connection, or timed out (and cancelled) */
        fr_buf_deinit(&sr->page);
        if (sr->streaming)
            fr_http_stream_abort(sr->req); /* truncated, and the client can tell */
        else
            fr_api_respond_detail(sr->er, sr->req, res ? 500 : 503,
                                  res ? "query failed" : "database unavailable; retry", w);
        return;
    }
    if (sr->csv && !sr->streaming && sr->rows == 0 && !csv_header_fits(sr->er, res)) {
        close_cursor(sr);
        fr_buf_deinit(&sr->page);
        fr_api_respond_detail(sr->er, sr->req, 500, "the route's csv_header does not match its query's columns", w);
        return;
    }
    bool last = PQntuples(res) < PAGE_ROWS;
    fr_buf_reset(&sr->page);
    if (!sr->streaming && sr->rows == 0)
        page_prefix(sr, res, &sr->page);
    page_rows(sr, res, &sr->page);
    if (last)
        page_suffix(sr, &sr->page);
    if (!sr->streaming && last) {
        /* the whole answer fit in one page: a plain response with a length */
        struct fr_buf page = sr->page;
        const char *ctype = sr->csv ? "text/csv; charset=utf-8" : "application/json";
        close_cursor(sr);
        if (!fr_httpcache_answer(w->hc, sr->req, &sr->hc, ctype, page.data ? page.data : "", page.len))
            fr_api_respond(sr->er, sr->req, 200, ctype, page.data, page.len, w);
        fr_buf_deinit(&page);
        return;
    }
    if (!sr->streaming) {
        sr->streaming = true;
        (void)fr_httpcache_answer(w->hc, sr->req, &sr->hc, NULL, NULL, 0); /* tagged, not kept */
        if (fr_http_stream_begin(sr->req, 200, sr->csv ? "text/csv; charset=utf-8" : "application/json") != 0)
            sr->gone = true;
    }
    if (!sr->gone && fr_http_stream_write(sr->req, sr->page.data, sr->page.len) != 0)
        sr->gone = true;
    if (last || sr->gone) {
        fr_http_req_t *req = sr->req;
        bool gone = sr->gone;
        close_cursor(sr);
        fr_buf_deinit(&sr->page);
        if (gone)
            fr_http_stream_abort(req);
        else
            fr_http_stream_end(req);
        return;
    }
    if (fr_http_stream_blocked(sr->req))
        fr_http_stream_on_writable(sr->req, on_writable, sr); /* backpressure: wait for the client */
    else
        fetch_page(sr);
}

static void fetch_page(struct sqlreq *sr)
{
    struct fr_api_worker *w = sr->e->w;
    char sql[80];
    snprintf(sql, sizeof(sql), "FETCH %d FROM %s", PAGE_ROWS, sr->cursor);
    fr_pg_t *pg = cursor_pg(sr);
    if (!pg || !fr_pg_connected(pg) || fr_pg_query(pg, sql, 0, NULL, NULL, on_page, sr) != 0) {
        fr_api_stream_release(w, &sr->slot);
        fr_buf_deinit(&sr->page);
        if (sr->streaming)
            fr_http_stream_abort(sr->req);
        else
            fr_api_respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
        return;
    }
    w->inflight++;
}

static void on_declare(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    struct sqlreq *sr = data;
    sr->e->w->inflight--;
    if (sr->replica >= 0 && (!res || PQresultStatus(res) != PGRES_COMMAND_OK) &&
        fr_readpool_failed(sr->e->w->readpool, sr->replica, res)) {
        sr->declare_failed = true;
        return;
    }
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
        fr_warn("route %s: query failed: %s", sr->er->r->name, PQresultErrorMessage(res));
    /* the FETCH queued behind it answers the request either way */
}

static void render(struct sqlreq *sr, const PGresult *res)
{
    struct fr_api_worker *w = sr->e->w;
    struct eroute *er = sr->er;
    struct fr_buf *b = &w->out;
    int rows = PQntuples(res), nf = PQnfields(res);
    fr_buf_reset(b);
    if ((er->r->shape == FR_SHAPE_ONE || er->r->shape == FR_SHAPE_VALUE) && rows == 0) {
        struct fr_buf m;
        fr_buf_init(&m, 0);
        fr_api_route_not_found(er->r, sr->vals, &m);
        fr_api_respond_detail(er, sr->req, 404, m.data, w);
        fr_buf_deinit(&m);
        return;
    }
    if (sr->csv) {
        if (!csv_header_fits(er, res)) {
            fr_api_respond_detail(er, sr->req, 500, "the route's csv_header does not match its query's columns", w);
            return;
        }
        csv_head(er->r, res, b);
        int last = er->r->shape == FR_SHAPE_ONE ? (rows > 0 ? 1 : 0) : rows;
        for (int r = 0; r < last; r++) {
            for (int c = 0; c < nf; c++) {
                if (c)
                    (void)fr_buf_putc(b, ',');
                put_csv_value(b, res, r, c, er->r->csv_raw);
            }
            if (fr_buf_puts(b, csv_eol(er->r)) != 0)
                break;
        }
    } else {
        switch (er->r->shape) {
        case FR_SHAPE_ONE:
            fr_api_put_row_json(b, res, 0);
            break;
        case FR_SHAPE_VALUE:
            if (nf > 0)
                fr_api_put_json_value(b, res, 0, 0);
            else
                (void)fr_buf_puts(b, "null");
            break;
        case FR_SHAPE_LIST:
        case FR_SHAPE_ENVELOPE:
            (void)fr_buf_puts(b, er->r->shape == FR_SHAPE_LIST ? "[" : "{\"items\":[");
            for (int r = 0; r < rows; r++) {
                if (r)
                    (void)fr_buf_putc(b, ',');
                fr_api_put_row_json(b, res, r);
            }
            if (er->r->shape == FR_SHAPE_LIST)
                (void)fr_buf_putc(b, ']');
            else
                (void)fr_buf_printf(b, "],\"count\":%d}", rows);
            break;
        }
    }
    if (b->len >= MAX_RESULT_BYTES) {
        fr_api_respond_detail(er, sr->req, 500, "result too large to answer at once; paginate with limit/offset", w);
        return;
    }
    const char *ctype = sr->csv ? "text/csv; charset=utf-8" : "application/json";
    if (!fr_httpcache_answer(w->hc, sr->req, &sr->hc, ctype, b->data ? b->data : "", b->len))
        fr_api_respond(er, sr->req, 200, ctype, b->data, b->len, w);
}

/* ------------------------------------------------------------------- sql */

static void on_sql(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    struct sqlreq *sr = data;
    struct fr_api_worker *w = sr->e->w;
    w->inflight--;
    if (!res) {
        fr_api_respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fr_warn("route %s: query failed: %s", sr->er->r->name, PQresultErrorMessage(res));
        fr_api_respond_detail(sr->er, sr->req, 500, "query failed", w);
        return;
    }
    if (sr->exists_phase) {
        if (PQntuples(res) == 0) {
            struct fr_buf m;
            fr_buf_init(&m, 0);
            fr_api_route_not_found(sr->er->r, sr->vals, &m);
            fr_api_respond_detail(sr->er, sr->req, 404, m.data, w);
            fr_buf_deinit(&m);
            return;
        }
        sr->exists_phase = false;
        run_sql(sr);
        return;
    }
    render(sr, res);
}

/* The caller's read-your-writes position came from Redis: the list goes on. */
static void on_cursor_need(uint64_t need, void *data)
{
    struct sqlreq *sr = data;
    sr->e->w->inflight--;
    sr->need = need;
    sr->need_known = true;
    run_sql(sr);
}

static void run_sql(struct sqlreq *sr)
{
    struct fr_api_worker *w = sr->e->w;
    const struct fr_route *r = sr->er->r;
    const char *sql = sr->exists_phase ? r->exists : r->sql;
    const int *args = sr->exists_phase ? r->exists_args : r->args;
    size_t n = sr->exists_phase ? r->n_exists_args : r->n_args;
    const char **params = fr_http_req_alloc(sr->req, (n ? n : 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++)
        params[i] = sr->vals[args[i]];
    fr_pg_t *pg = w->app->pg;
    if (!pg || !fr_pg_connected(pg)) {
        fr_api_respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
        return;
    }
    if (!sr->exists_phase && (r->shape == FR_SHAPE_LIST || r->shape == FR_SHAPE_ENVELOPE)) {
        /* Lists go through a cursor WITH HOLD, a page per round trip, so a
         * large result is streamed (chunked) and never held whole here; the
         * DECLARE and the first FETCH are pipelined. Open cursors are
         * bounded per worker and per client, and run on the worker's
         * stream connections (workers.h): over a bound, 503 before any
         * query. */
        if (w->readpool && !sr->no_replica && !sr->need_known) { /* first, where the caller's writes are */
            char who[FR_READPOOL_CALLER_LEN];
            fr_readpool_caller(sr->req, w->auth != NULL, who);
            if (fr_readpool_need(w->readpool, who, &sr->need, on_cursor_need, sr) == 1) {
                w->inflight++;
                return;
            }
            sr->need_known = true;
        }
        const char *why = NULL;
        if (fr_api_stream_acquire(w, sr->req, &sr->slot, &why) != 0) {
            fr_http_add_header(sr->req, "Retry-After", "1");
            fr_api_respond_detail(sr->er, sr->req, 503, why, w);
            return;
        }
        /* a read replica that has the caller's writes holds it, when there is one */
        sr->replica = -1;
        sr->declare_failed = false;
        if (w->readpool && !sr->no_replica)
            sr->replica = fr_readpool_pick_need(w->readpool, sr->need);
        fr_pg_t *cpg = cursor_pg(sr);
        snprintf(sr->cursor, sizeof(sr->cursor), "fr_c_%" PRIu64, ++sr->e->cursor_seq);
        char *decl = fr_xasprintf("DECLARE %s NO SCROLL CURSOR WITH HOLD FOR %s", sr->cursor, sql);
        int rc =
            cpg && fr_pg_connected(cpg) ? fr_pg_query(cpg, decl, (int)n, params, NULL, on_declare, sr) : -ENOTCONN;
        free(decl);
        if (rc != 0 && sr->replica >= 0) {
            fr_api_stream_release(w, &sr->slot);
            sr->no_replica = true;
            run_sql(sr);
            return;
        }
        if (rc != 0) {
            fr_api_stream_release(w, &sr->slot);
            fr_api_respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
            return;
        }
        w->inflight++;
        fr_buf_init(&sr->page, 0);
        fetch_page(sr);
        return;
    }
    char caller[FR_READPOOL_CALLER_LEN]; /* replicas, when configured (read-your-writes per caller) */
    if (w->readpool)
        fr_readpool_caller(sr->req, w->auth != NULL, caller);
    if (fr_readpool_query(w->readpool, pg, w->readpool ? caller : NULL, sql, (int)n, params, on_sql, sr) != 0) {
        fr_api_respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
        return;
    }
    w->inflight++;
}

static bool wants_csv(const struct eroute *er, fr_http_req_t *req, struct fr_api_worker *w)
{
    const char *q = fr_http_req_query(req);
    if (fr_http_query_get(q, strlen(q), "format", &w->q2) && w->q2.data)
        return strcmp(w->q2.data, "csv") == 0;
    const char *acc = fr_http_req_header(req, "Accept");
    if (acc && strstr(acc, "text/csv"))
        return true;
    return !er->r->json && er->r->csv;
}

/* The SQL handler of er (matched, path segments ss/sl): parameters, the
 * format (JSON or CSV, 406 when the route has not it), then the query. */
void fr_api_sql_route(struct fr_api_engine *e, struct eroute *er, fr_http_req_t *req, const char **ss,
                      const size_t *sl)
{
    struct fr_api_worker *w = e->w;
    const struct fr_route *r = er->r;
    const char **vals = fr_http_req_alloc(req, (r->n_params ? r->n_params : 1) * sizeof(char *));
    if (!fr_api_parse_params(e, er, req, ss, sl, vals))
        return;
    struct sqlreq *sr = fr_http_req_alloc(req, sizeof(*sr));
    memset(sr, 0, sizeof(*sr));
    sr->slot.conn = -1; /* no stream slot held */
    sr->replica = -1;
    sr->e = e;
    sr->er = er;
    sr->req = req;
    sr->vals = vals;
    sr->csv = wants_csv(er, req, w);
    if (sr->csv && !r->csv) {
        fr_api_respond_detail(er, req, 406, "this route answers JSON only", w);
        return;
    }
    if (!sr->csv && !r->json) {
        fr_api_respond_detail(er, req, 406, "this route answers CSV only; use ?format=csv", w);
        return;
    }
    /* ETag from its inputs' versions: 304, or the answer kept in the process */
    if (fr_httpcache_sql_begin(w->hc, req, r, vals, sr->csv, &sr->hc))
        return;
    sr->exists_phase = r->exists != NULL;
    run_sql(sr);
}
