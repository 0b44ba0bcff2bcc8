/* engine: routes from configuration (see engine.h, docs/routes.md). */
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "api.h"
#include "backup.h"
#include "idem.h"
#include "log.h"
#include "names.h"
#include "problem.h"
#include "push.h"
#include "readpool.h"
#include "render.h"
#include "workers.h"

#define MAX_RESULT_BYTES (64u << 20) /* a buffered answer (one, value shapes) */
#define PAGE_ROWS        2000        /* list/envelope rows fetched per round trip from a cursor */
#define MAX_VALUE        4096        /* a decoded parameter */

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

struct eroute {
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_route *r;    /* borrowed */
    const struct fr_dataset *ds; /* push: borrowed */
    regex_t *re;                 /* owned: one per param, compiled when it has a pattern */
    size_t n_re;                 /* params[0..n_re) were compiled (those with a pattern) */
    size_t n_static;             /* static segments: more wins a tie */
    char *crud_id;               /* owned: crud: "P/{id}" (metrics label) */
    char *crud_bulk;             /* owned: crud: "P/bulk" */
};

struct fr_api_engine {
    struct fr_api_worker *w; /* borrowed */
    uint64_t cursor_seq;     /* cursor names, unique on the worker's connection */
    size_t n_crud;           /* routes with a crud handler (matched by prefix) */
    struct eroute *routes;   /* owned */
    size_t n;
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
    size_t rows;                    /* rows rendered so far */
    struct fr_buf page;             /* owned: one page of output */
};

/* ------------------------------------------------------------------ setup */

static void eroute_free(struct eroute *er)
{
    free(er->crud_id);
    free(er->crud_bulk);
    if (er->re) {
        for (size_t i = 0; i < er->n_re; i++)
            if (er->r->params[i].pattern)
                regfree(&er->re[i]);
        free(er->re);
    }
}

struct fr_api_engine *fr_api_engine_new(struct fr_api_worker *w, char err[FR_ERR_LEN])
{
    struct fr_app *app = w->app;
    struct fr_api_engine *e = fr_xcalloc(1, sizeof(*e));
    size_t total = 0;
    e->w = w;
    for (size_t i = 0; i < app->n_pipelines; i++)
        total += app->pipelines[i]->n_routes;
    e->routes = fr_xcalloc(total ? total : 1, sizeof(*e->routes));
    for (size_t i = 0; i < app->n_pipelines; i++) {
        const struct fr_pipeline *p = app->pipelines[i];
        for (size_t j = 0; j < p->n_routes; j++) {
            const struct fr_route *r = &p->routes[j];
            struct eroute *er = &e->routes[e->n++];
            er->p = p;
            er->r = r;
            for (size_t k = 0; k + 1 < e->n; k++) {
                const struct fr_route *o = e->routes[k].r;
                if (strcmp(o->path, r->path) == 0 && strcmp(o->method, r->method) == 0) {
                    snprintf(err, FR_ERR_LEN, "%s: route '%s' serves %s %s, as route '%s' of %s does; remove one",
                             p->path, r->name, r->method, r->path, o->name, e->routes[k].p->path);
                    fr_api_engine_free(e);
                    return NULL;
                }
            }
            if (r->handler == FR_RH_PUSH || r->handler == FR_RH_CRUD)
                er->ds = fr_pipeline_dataset(p, r->dataset);
            e->n_crud += r->handler == FR_RH_CRUD;
            if (r->handler == FR_RH_CRUD) {
                er->crud_id = fr_xasprintf("%s/{id}", r->path);
                er->crud_bulk = fr_xasprintf("%s/bulk", r->path);
            }
            for (size_t k = 0; k < r->n_segs; k++)
                er->n_static += r->segs[k][0] != '{';
            er->re = fr_xcalloc(r->n_params ? r->n_params : 1, sizeof(regex_t));
            for (size_t k = 0; k < r->n_params; k++) {
                if (r->params[k].pattern &&
                    regcomp(&er->re[k], r->params[k].pattern, REG_EXTENDED | REG_NOSUB) != 0) {
                    snprintf(err, FR_ERR_LEN, "%s: pattern of %s in route '%s' does not compile", p->path,
                             r->params[k].name, r->name);
                    fr_api_engine_free(e);
                    return NULL;
                }
                er->n_re = k + 1;
            }
        }
    }
    return e;
}

void fr_api_engine_free(struct fr_api_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        eroute_free(&e->routes[i]);
    free(e->routes);
    free(e);
}

/* --------------------------------------------------------------- matching */

/* Matches path against r's segments; path params (raw) go to segs_out. */
static bool match_path(const struct fr_route *r, const char *path, const char **seg_start, size_t *seg_len)
{
    const char *s = path;
    size_t i = 0;
    if (*s != '/')
        return false;
    while (*s == '/') {
        s++;
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (i >= r->n_segs)
            return false;
        const char *g = r->segs[i];
        if (g[0] == '{') {
            if (len == 0)
                return false;
        } else if (strlen(g) != len || memcmp(g, s, len) != 0) {
            return false;
        }
        seg_start[i] = s;
        seg_len[i] = len;
        i++;
        s += len;
    }
    return *s == '\0' && i == r->n_segs;
}

static struct eroute *find(struct fr_api_engine *e, const char *method, const char *path, bool *path_matched,
                           const char **seg_start, size_t *seg_len)
{
    struct eroute *best = NULL;
    const char *ss[64];
    size_t sl[64];
    *path_matched = false;
    for (size_t i = 0; i < e->n; i++) {
        struct eroute *er = &e->routes[i];
        if (er->r->n_segs > 64 || !match_path(er->r, path, ss, sl))
            continue;
        *path_matched = true;
        if (strcmp(er->r->method, method) != 0)
            continue;
        if (!best || er->n_static > best->n_static) {
            best = er;
            memcpy(seg_start, ss, er->r->n_segs * sizeof(*ss));
            memcpy(seg_len, sl, er->r->n_segs * sizeof(*sl));
        }
    }
    return best;
}

static const struct eroute *crud_match(struct fr_api_engine *e, const char *path, const char **pattern);

/* A crud resource's role covers all its paths and verbs: reads (GET of
 * the list and of an item) need its role, writes its role_write. */
const char *fr_api_engine_role(struct fr_api_engine *e, const char *method, const char *path)
{
    bool pm;
    const char *ss[64];
    size_t sl[64];
    const char *pat;
    const struct eroute *cr = e && e->n_crud ? crud_match(e, path, &pat) : NULL;
    if (cr)
        return strcmp(method, "GET") == 0 ? cr->r->role : cr->r->role_write;
    struct eroute *er = e ? find(e, method, path, &pm, ss, sl) : NULL;
    return er ? er->r->role : NULL;
}

size_t fr_api_engine_count(const struct fr_api_engine *e)
{
    return e ? e->n : 0;
}

const struct fr_route *fr_api_engine_route_at(const struct fr_api_engine *e, size_t i, const struct fr_pipeline **p)
{
    *p = e->routes[i].p;
    return e->routes[i].r;
}

/* The crud route a path falls under, and its pattern: P, P/bulk or P/{id}. */
static const struct eroute *crud_match(struct fr_api_engine *e, const char *path, const char **pattern)
{
    for (size_t i = 0; i < e->n; i++) {
        const struct eroute *er = &e->routes[i];
        if (er->r->handler != FR_RH_CRUD)
            continue;
        size_t bl = strlen(er->r->path);
        if (strncmp(path, er->r->path, bl) != 0 || (path[bl] != '\0' && path[bl] != '/'))
            continue;
        const char *seg = path[bl] == '/' ? path + bl + 1 : NULL;
        if (!seg) {
            *pattern = er->r->path;
            return er;
        }
        if (seg[0] == '\0' || strchr(seg, '/'))
            continue;
        *pattern = strcmp(seg, "bulk") == 0 ? er->crud_bulk : er->crud_id;
        return er;
    }
    return NULL;
}

static const char *crud_pattern(struct fr_api_engine *e, const char *path)
{
    const char *pat = NULL;
    return crud_match(e, path, &pat) ? pat : NULL;
}

const char *fr_api_engine_pattern(struct fr_api_engine *e, const char *method, const char *path)
{
    const char *ss[64];
    size_t sl[64];
    bool pm;
    if (!e)
        return NULL;
    const char *c = e->n_crud ? crud_pattern(e, path) : NULL;
    if (c)
        return c;
    if (strncmp(path, "/admin/backup/", 14) == 0 && path[14])
        return "/admin/backup/{dataset}";
    if (strncmp(path, "/admin/restore/", 15) == 0 && path[15])
        return "/admin/restore/{dataset}";
    struct eroute *er = find(e, method, path, &pm, ss, sl);
    if (er)
        return er->r->path;
    for (size_t i = 0; pm && i < e->n; i++) /* a 405: the path's pattern, whatever the method */
        if (e->routes[i].r->n_segs <= 64 && match_path(e->routes[i].r, path, ss, sl))
            return e->routes[i].r->path;
    return NULL;
}

/* ---------------------------------------------------------------- answers */

/* Answers req (counted by routes.c's observer of every answer). */
static void respond(struct eroute *er, fr_http_req_t *req, int status, const char *ctype, const char *body,
                    size_t len, struct fr_api_worker *w)
{
    (void)er;
    (void)w;
    fr_http_respond(req, status, ctype, body ? body : "", len);
}

static void respond_detail(struct eroute *er, fr_http_req_t *req, int status, const char *msg,
                           struct fr_api_worker *w)
{
    fr_problem_detail(&w->out, msg, strlen(msg));
    respond(er, req, status, "application/json", w->out.data, w->out.len, w);
}

/* ------------------------------------------------------------- parameters */

/* Parses one raw value of param p; on success *out is the canonical text to
 * bind (arena). On failure fills msg/type and returns false. */
static bool convert(const struct fr_route_param *p, const regex_t *re, const char *raw, size_t n, fr_http_req_t *req,
                    const char **out, char *msg, size_t msg_cap, const char **type)
{
    char *v = fr_http_req_alloc(req, n + (p->suffix ? strlen(p->suffix) : 0) + 40);
    memcpy(v, raw, n);
    v[n] = '\0';
    switch (p->type) {
    case FR_T_TEXT: {
        if (p->upper || p->lower)
            for (size_t i = 0; i < n; i++)
                v[i] = p->upper ? (char)(v[i] >= 'a' && v[i] <= 'z' ? v[i] - 32 : v[i])
                                : (char)(v[i] >= 'A' && v[i] <= 'Z' ? v[i] + 32 : v[i]);
        if (n < p->min_length || (n == 0 && p->required)) {
            snprintf(msg, msg_cap, "String should have at least %u character%s", p->min_length ? p->min_length : 1,
                     p->min_length > 1 ? "s" : "");
            *type = "string_too_short";
            return false;
        }
        if (n > p->max_length) {
            snprintf(msg, msg_cap, "String should have at most %u characters", p->max_length);
            *type = "string_too_long";
            return false;
        }
        if (memchr(v, '\0', n) || !fr_utf8_valid(v, n)) {
            snprintf(msg, msg_cap, "Input should be a valid string");
            *type = "string_type";
            return false;
        }
        if (p->pattern && regexec(re, v, 0, NULL, 0) != 0) {
            snprintf(msg, msg_cap, "String should match pattern '%.200s'", p->pattern);
            *type = "string_pattern_mismatch";
            return false;
        }
        if (p->n_allowed) {
            bool ok = false;
            for (size_t i = 0; i < p->n_allowed && !ok; i++)
                ok = strcmp(p->allowed[i], v) == 0;
            if (!ok) {
                size_t off = (size_t)snprintf(msg, msg_cap, "Input should be");
                for (size_t i = 0; i < p->n_allowed && off < msg_cap; i++)
                    off += (size_t)snprintf(msg + off, msg_cap - off, "%s'%s'",
                                            i == 0 ? " " : (i + 1 == p->n_allowed ? " or " : ", "), p->allowed[i]);
                *type = "enum";
                return false;
            }
        }
        if (p->suffix) {
            size_t sl = strlen(p->suffix);
            if (n < sl || strcmp(v + n - sl, p->suffix) != 0)
                memcpy(v + n, p->suffix, sl + 1);
        }
        *out = v;
        return true;
    }
    case FR_T_INT:
    case FR_T_BIGINT: {
        int64_t x;
        if (!fr_parse_i64(v, n, &x) || (p->type == FR_T_INT && (x < INT32_MIN || x > INT32_MAX))) {
            snprintf(msg, msg_cap, "Input should be a valid integer, unable to parse string as an integer");
            *type = "int_parsing";
            return false;
        }
        if (p->has_min && x < p->min) {
            snprintf(msg, msg_cap, "Input should be greater than or equal to %" PRId64, p->min);
            *type = "greater_than_equal";
            return false;
        }
        if (p->has_max && x > p->max) {
            snprintf(msg, msg_cap, "Input should be less than or equal to %" PRId64, p->max);
            *type = "less_than_equal";
            return false;
        }
        snprintf(v, n + 40, "%" PRId64, x);
        *out = v;
        return true;
    }
    case FR_T_FLOAT:
    case FR_T_NUMERIC: {
        double d;
        if (!fr_parse_double(v, n, &d)) {
            snprintf(msg, msg_cap, "Input should be a valid number, unable to parse string as a number");
            *type = "float_parsing";
            return false;
        }
        *out = v;
        return true;
    }
    case FR_T_BOOL: {
        static const char *const t[] = {"true", "1", "yes", "on"}, *const f[] = {"false", "0", "no", "off"};
        for (size_t i = 0; i < 4; i++) {
            if (strcmp(v, t[i]) == 0)
                return *out = "true", true;
            if (strcmp(v, f[i]) == 0)
                return *out = "false", true;
        }
        snprintf(msg, msg_cap, "Input should be a valid boolean, unable to interpret input");
        *type = "bool_parsing";
        return false;
    }
    case FR_T_DATE: {
        int32_t days;
        if (!fr_parse_date(v, n, &days)) {
            snprintf(msg, msg_cap, "Input should be a valid date in the format YYYY-MM-DD");
            *type = "date_from_datetime_parsing";
            return false;
        }
        fr_format_date(days, v);
        *out = v;
        return true;
    }
    case FR_T_TIMESTAMPTZ: {
        int64_t us, ms;
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++)
            digits = digits && ((v[i] >= '0' && v[i] <= '9') || (i == 0 && v[i] == '-'));
        if (digits && fr_parse_i64(v, n, &ms) && ms > -62135596800000LL && ms < 253402300800000LL)
            us = ms * 1000;
        else if (!fr_parse_timestamp(v, n, &us)) {
            snprintf(msg, msg_cap, "Input should be a valid datetime (ISO-8601) or epoch milliseconds");
            *type = "datetime_parsing";
            return false;
        }
        char *t = fr_http_req_alloc(req, 40);
        fr_format_timestamp(us, t);
        *out = t;
        return true;
    }
    case FR_T_JSON:
        break;
    }
    *out = v;
    return true;
}

/* Fills vals[] (one per param, NULL = absent) or answers 422; returns false
 * when answered. */
static bool parse_params(struct fr_api_engine *e, struct eroute *er, fr_http_req_t *req, const char **seg_start,
                         const size_t *seg_len, const char **vals)
{
    const struct fr_route *r = er->r;
    struct fr_api_worker *w = e->w;
    const char *q = fr_http_req_query(req);
    size_t qlen = strlen(q);
    struct fr_problem x;
    char msg[512];
    fr_problem_begin(&x, &w->out);
    for (size_t i = 0; i < r->n_params; i++) {
        const struct fr_route_param *p = &r->params[i];
        const char *where = p->in == FR_PARAM_PATH ? "path" : "query";
        const char *raw = NULL;
        size_t n = 0;
        char dec[MAX_VALUE + 1];
        if (p->in == FR_PARAM_PATH) {
            char want[80];
            snprintf(want, sizeof(want), "{%s}", p->name);
            for (size_t k = 0; k < r->n_segs; k++) {
                if (strcmp(r->segs[k], want) == 0) {
                    n = fr_http_pct_decode(seg_start[k], seg_len[k], dec, MAX_VALUE);
                    raw = dec;
                }
            }
        } else if (fr_http_query_get(q, qlen, p->name, &w->q1)) {
            n = w->q1.len;
            raw = w->q1.data ? w->q1.data : "";
        }
        vals[i] = NULL;
        if (raw && n > MAX_VALUE) {
            fr_problem_add(&x, where, p->name, FR_PROBLEM_NO_INDEX, "Value is too long", "string_too_long");
            continue;
        }
        if (!raw || (n == 0 && p->type != FR_T_TEXT)) {
            if (p->def) {
                if (strcmp(p->def, "now") == 0 && p->type == FR_T_TIMESTAMPTZ) {
                    char *t = fr_http_req_alloc(req, 40);
                    fr_format_timestamp(fr_pipeline_now(er->p), t);
                    vals[i] = t;
                } else if (strcmp(p->def, "now_year") == 0) {
                    char *y = fr_http_req_alloc(req, 16);
                    int64_t now = fr_pipeline_now(er->p) / 1000000;
                    time_t t = (time_t)now;
                    struct tm tm;
                    gmtime_r(&t, &tm);
                    snprintf(y, 16, "%d", tm.tm_year + 1900);
                    vals[i] = y;
                } else {
                    vals[i] = p->def;
                }
            } else if (p->required) {
                fr_problem_add(&x, where, p->name, FR_PROBLEM_NO_INDEX, "Field required", "missing");
            }
            continue;
        }
        const char *type = "value_error";
        msg[0] = '\0';
        if (!convert(p, &er->re[i], raw, n, req, &vals[i], msg, sizeof(msg), &type))
            fr_problem_add(&x, where, p->name, FR_PROBLEM_NO_INDEX, msg, type);
    }
    for (size_t i = 0; x.n == 0 && i < r->n_checks; i++) {
        const struct fr_route_check *c = &r->checks[i];
        const char *a = vals[c->a], *b = vals[c->b];
        if (!a || !b)
            continue;
        const struct fr_route_param *pa = &r->params[c->a];
        bool bad;
        if (pa->type == FR_T_INT || pa->type == FR_T_BIGINT || pa->type == FR_T_FLOAT || pa->type == FR_T_NUMERIC)
            bad = strtod(a, NULL) > strtod(b, NULL);
        else if (pa->type == FR_T_TIMESTAMPTZ) {
            int64_t ua = 0, ub = 0;
            bad = fr_parse_timestamp(a, strlen(a), &ua) && fr_parse_timestamp(b, strlen(b), &ub) && ua > ub;
        } else
            bad = strcmp(a, b) > 0;
        if (bad)
            fr_problem_add(&x, pa->in == FR_PARAM_PATH ? "path" : "query", pa->name, FR_PROBLEM_NO_INDEX, c->msg,
                           "value_error");
    }
    if (x.n) {
        fr_problem_end(&x);
        respond(er, req, 422, "application/json", w->out.data, w->out.len, w);
        return false;
    }
    return true;
}

/* -------------------------------------------------------------- rendering */

static void put_json_value(struct fr_buf *b, const PGresult *res, int row, int col)
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

static void put_row_json(struct fr_buf *b, const PGresult *res, int row)
{
    int nf = PQnfields(res);
    (void)fr_buf_putc(b, '{');
    for (int c = 0; c < nf; c++) {
        if (c)
            (void)fr_buf_putc(b, ',');
        const char *name = PQfname(res, c);
        (void)fr_buf_json_str(b, name, strlen(name));
        (void)fr_buf_putc(b, ':');
        put_json_value(b, res, row, c);
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
            put_row_json(b, res, r);
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
    fr_pg_t *pg = fr_api_stream_pg(w, &sr->slot);
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
            respond_detail(sr->er, sr->req, res ? 500 : 503, res ? "query failed" : "database unavailable; retry", w);
        return;
    }
    if (sr->csv && !sr->streaming && sr->rows == 0 && !csv_header_fits(sr->er, res)) {
        close_cursor(sr);
        fr_buf_deinit(&sr->page);
        respond_detail(sr->er, sr->req, 500, "the route's csv_header does not match its query's columns", w);
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
        close_cursor(sr);
        respond(sr->er, sr->req, 200, sr->csv ? "text/csv; charset=utf-8" : "application/json", page.data, page.len,
                w);
        fr_buf_deinit(&page);
        return;
    }
    if (!sr->streaming) {
        sr->streaming = true;
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
    fr_pg_t *pg = fr_api_stream_pg(w, &sr->slot);
    if (!pg || !fr_pg_connected(pg) || fr_pg_query(pg, sql, 0, NULL, NULL, on_page, sr) != 0) {
        fr_api_stream_release(w, &sr->slot);
        fr_buf_deinit(&sr->page);
        if (sr->streaming)
            fr_http_stream_abort(sr->req);
        else
            respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
        return;
    }
    w->inflight++;
}

static void on_declare(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    struct sqlreq *sr = data;
    sr->e->w->inflight--;
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
        respond_detail(er, sr->req, 404, m.data, w);
        fr_buf_deinit(&m);
        return;
    }
    if (sr->csv) {
        if (!csv_header_fits(er, res)) {
            respond_detail(er, sr->req, 500, "the route's csv_header does not match its query's columns", w);
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
            put_row_json(b, res, 0);
            break;
        case FR_SHAPE_VALUE:
            if (nf > 0)
                put_json_value(b, res, 0, 0);
            else
                (void)fr_buf_puts(b, "null");
            break;
        case FR_SHAPE_LIST:
        case FR_SHAPE_ENVELOPE:
            (void)fr_buf_puts(b, er->r->shape == FR_SHAPE_LIST ? "[" : "{\"items\":[");
            for (int r = 0; r < rows; r++) {
                if (r)
                    (void)fr_buf_putc(b, ',');
                put_row_json(b, res, r);
            }
            if (er->r->shape == FR_SHAPE_LIST)
                (void)fr_buf_putc(b, ']');
            else
                (void)fr_buf_printf(b, "],\"count\":%d}", rows);
            break;
        }
    }
    if (b->len >= MAX_RESULT_BYTES) {
        respond_detail(er, sr->req, 500, "result too large to answer at once; paginate with limit/offset", w);
        return;
    }
    respond(er, sr->req, 200, sr->csv ? "text/csv; charset=utf-8" : "application/json", b->data, b->len, w);
}

/* ------------------------------------------------------------------- sql */

static void run_sql(struct sqlreq *sr);

static void on_sql(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    struct sqlreq *sr = data;
    struct fr_api_worker *w = sr->e->w;
    w->inflight--;
    if (!res) {
        respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fr_warn("route %s: query failed: %s", sr->er->r->name, PQresultErrorMessage(res));
        respond_detail(sr->er, sr->req, 500, "query failed", w);
        return;
    }
    if (sr->exists_phase) {
        if (PQntuples(res) == 0) {
            struct fr_buf m;
            fr_buf_init(&m, 0);
            fr_api_route_not_found(sr->er->r, sr->vals, &m);
            respond_detail(sr->er, sr->req, 404, m.data, w);
            fr_buf_deinit(&m);
            return;
        }
        sr->exists_phase = false;
        run_sql(sr);
        return;
    }
    render(sr, res);
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
        respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
        return;
    }
    if (!sr->exists_phase && (r->shape == FR_SHAPE_LIST || r->shape == FR_SHAPE_ENVELOPE)) {
        /* Lists go through a cursor WITH HOLD, a page per round trip, so a
         * large result is streamed (chunked) and never held whole here; the
         * DECLARE and the first FETCH are pipelined. Open cursors are
         * bounded per worker and per client, and run on the worker's
         * stream connections (workers.h): over a bound, 503 before any
         * query. */
        const char *why = NULL;
        if (fr_api_stream_acquire(w, sr->req, &sr->slot, &why) != 0) {
            fr_http_add_header(sr->req, "Retry-After", "1");
            respond_detail(sr->er, sr->req, 503, why, w);
            return;
        }
        fr_pg_t *cpg = fr_api_stream_pg(w, &sr->slot);
        snprintf(sr->cursor, sizeof(sr->cursor), "fr_c_%" PRIu64, ++sr->e->cursor_seq);
        char *decl = fr_xasprintf("DECLARE %s NO SCROLL CURSOR WITH HOLD FOR %s", sr->cursor, sql);
        int rc =
            cpg && fr_pg_connected(cpg) ? fr_pg_query(cpg, decl, (int)n, params, NULL, on_declare, sr) : -ENOTCONN;
        free(decl);
        if (rc != 0) {
            fr_api_stream_release(w, &sr->slot);
            respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
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
        respond_detail(sr->er, sr->req, 503, "database unavailable; retry", w);
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
    const char *cursor; /* list: key after which the page starts (keyset), or NULL */
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
    respond(er, req, 422, "application/json", w->out.data, w->out.len, w);
}

static void crud_gone(struct crudreq *cr, bool gone)
{
    char msg[160];
    if (gone)
        snprintf(msg, sizeof(msg), "%s %.60s was deleted", cr->ds->name, cr->id);
    else
        snprintf(msg, sizeof(msg), "%s %.60s not found", cr->ds->name, cr->id);
    respond_detail(cr->er, cr->req, gone ? 410 : 404, msg, cr->e->w);
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
        respond_detail(cr->er, cr->req, 500, "stored row unreadable", w);
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
        respond_detail(cr->er, cr->req, 503, "database unavailable; retry", w);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fr_warn("route %s: query failed: %s", cr->er->r->name, PQresultErrorMessage(res));
        respond_detail(cr->er, cr->req, 500, "query failed", w);
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
            put_row_json(b, res, r);
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
        respond(cr->er, cr->req, 200, "application/json", b->data, b->len, w);
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
            put_json_value(b, res, 0, c);
        }
        (void)fr_buf_putc(b, '}');
        respond(cr->er, cr->req, 200, "application/json", b->data, b->len, w);
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

static bool crud_handle(struct fr_api_engine *e, fr_http_req_t *req, const char *method, const char *path);

struct crudgate {
    struct fr_api_engine *e;
    const char *method; /* borrowed from the request */
    const char *path;   /* borrowed from the request */
};

static void crud_gated(struct fr_api_worker *w, fr_http_req_t *req, void *arg)
{
    struct crudgate *cg = arg;
    (void)w;
    if (!crud_handle(cg->e, req, cg->method, cg->path)) /* cannot happen: it matched before */
        fr_http_respond_detail(req, 404, "Not Found");
}

/* Serves req when it is under a crud route's path; false otherwise. */
static bool crud_handle(struct fr_api_engine *e, fr_http_req_t *req, const char *method, const char *path)
{
    struct fr_api_worker *w = e->w;
    for (size_t i = 0; i < e->n; i++) {
        struct eroute *er = &e->routes[i];
        if (er->r->handler != FR_RH_CRUD)
            continue;
        size_t bl = strlen(er->r->path);
        if (strncmp(path, er->r->path, bl) != 0 || (path[bl] != '\0' && path[bl] != '/'))
            continue;
        const char *seg = path[bl] == '/' ? path + bl + 1 : NULL;
        if (seg && (seg[0] == '\0' || strchr(seg, '/')))
            continue;
        const struct fr_dataset *ds = fr_pipeline_dataset(er->p, er->r->dataset);
        if (!ds)
            continue;
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
            bool header = blen > c0l && memcmp(body, c0, c0l) == 0 &&
                          (body[c0l] == ',' || body[c0l] == '\n' || body[c0l] == '\r');
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
            respond_detail(er, req, 405, "Method Not Allowed", w);
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
                crud_422(er, req, "query", "limit", "Input should be an integer from 1 to 1000", "less_than_equal",
                         w);
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
                if (w->q1.len == 0 || w->q1.len > MAX_VALUE ||
                    ((key->type == FR_T_INT || key->type == FR_T_BIGINT) &&
                     !fr_parse_i64(w->q1.data, w->q1.len, &kv))) {
                    fr_buf_deinit(&sql);
                    crud_422(er, req, "query", "cursor",
                             "Input should be a key value (the cursor of the previous page's Link)", "cursor_parsing",
                             w);
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
            char dec[MAX_VALUE + 1];
            size_t n = fr_http_pct_decode(seg, strlen(seg), dec, MAX_VALUE);
            int64_t v;
            if (n > MAX_VALUE || n == 0 ||
                ((key->type == FR_T_INT || key->type == FR_T_BIGINT) && !fr_parse_i64(dec, n, &v))) {
                fr_buf_deinit(&sql);
                crud_422(er, req, "path", "id",
                         "Input should be a valid integer, unable to parse string as an integer", "int_parsing", w);
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
        fr_pg_t *pg = w->app->pg;
        int rc = pg && fr_pg_connected(pg) ? fr_pg_query(pg, sql.data, np, params, NULL, on_crud, cr) : -ENOTCONN;
        fr_buf_deinit(&sql);
        if (rc != 0)
            respond_detail(er, req, 503, "database unavailable; retry", w);
        else
            w->inflight++;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ admin routes */

/* POST /admin/backup/{dataset} writes the table to
 * {FRESHET_DATA_DIR}/backups/{pipeline}.{dataset}-{ts}-{random}.avro (a new
 * file each time: fr_backup_write_unique) and answers the file name;
 * POST /admin/restore/{dataset} replaces the table with the Avro body (a
 * corrupt or mismatched file, or data the table refuses, changes nothing:
 * 422 with the reason), then tells the loader so models and caches follow.
 * {dataset} is "pipeline.dataset" or a dataset name. Role admin. The
 * blocking work (libpq, avro-c) runs in libuv's thread pool. */

struct adminjob {
    uv_work_t work;
    struct fr_api_worker *w;
    fr_http_req_t *req;
    const struct fr_pipeline *p;
    const struct fr_dataset *ds;
    bool restore;
    const char *body;
    size_t len;
    char name[FR_BACKUP_NAME_LEN]; /* the backup's file name, chosen by admin_work */
    int rc;
    int64_t rows;
    char err[FR_ERR_LEN];
};

static void admin_work(uv_work_t *wk)
{
    struct adminjob *j = fr_container_of(wk, struct adminjob, work);
    const struct fr_settings *st = &j->w->app->settings;
    if (j->restore) {
        j->rc = fr_backup_restore_buf(st->database_url, j->p, j->ds, j->body, j->len, &j->rows, j->err);
        if (j->rc == 0)
            j->rc = fr_backup_notify(st->redis_url, j->ds, j->err);
    } else {
        char dir[1024];
        snprintf(dir, sizeof(dir), "%s/backups", st->data_dir);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            j->rc = -errno;
            snprintf(j->err, FR_ERR_LEN, "cannot create %.160s: %.60s", dir, strerror(errno));
            return;
        }
        j->rc = fr_backup_write_unique(st->database_url, j->p, j->ds, dir, j->name, &j->rows, j->err);
    }
}

static void admin_done(uv_work_t *wk, int status)
{
    struct adminjob *j = fr_container_of(wk, struct adminjob, work);
    struct fr_api_worker *w = j->w;
    w->inflight--;
    struct fr_buf *b = &w->out;
    fr_buf_reset(b);
    if (status != 0 || j->rc != 0) {
        int code = j->rc == -EPROTO || j->rc == -EBADMSG ? 422 : 503;
        fr_warn("admin %s %s: %s", j->restore ? "restore" : "backup", j->ds->qname, j->err);
        respond_detail(NULL, j->req, code, status != 0 ? "cancelled" : j->err, w);
        return;
    }
    if (j->restore)
        (void)fr_buf_printf(b, "{\"dataset\":\"%s\",\"restored\":%" PRId64 "}", j->ds->qname, j->rows);
    else {
        (void)fr_buf_printf(b, "{\"dataset\":\"%s\",\"rows\":%" PRId64 ",\"file\":", j->ds->qname, j->rows);
        (void)fr_buf_json_str(b, j->name, strlen(j->name));
        (void)fr_buf_putc(b, '}');
    }
    respond(NULL, j->req, j->restore ? 200 : 201, "application/json", b->data, b->len, w);
}

static bool admin_handle(struct fr_api_engine *e, fr_http_req_t *req, const char *method, const char *path)
{
    bool restore;
    const char *name;
    if (strncmp(path, "/admin/backup/", 14) == 0) {
        restore = false;
        name = path + 14;
    } else if (strncmp(path, "/admin/restore/", 15) == 0) {
        restore = true;
        name = path + 15;
    } else {
        return false;
    }
    struct fr_api_worker *w = e->w;
    if (strcmp(method, "POST") != 0) {
        fr_http_add_header(req, "Allow", "POST");
        respond_detail(NULL, req, 405, "Method Not Allowed", w);
        return true;
    }
    const struct fr_pipeline *p = NULL;
    const struct fr_dataset *ds = NULL;
    const char *dot = strchr(name, '.');
    for (size_t i = 0; i < w->app->n_pipelines && !ds; i++) {
        const struct fr_pipeline *q = w->app->pipelines[i];
        if (dot) {
            if (strlen(q->name) == (size_t)(dot - name) && strncmp(q->name, name, (size_t)(dot - name)) == 0)
                ds = fr_pipeline_dataset(q, dot + 1);
        } else {
            ds = fr_pipeline_dataset(q, name);
        }
        if (ds)
            p = q;
    }
    if (!ds) {
        respond_detail(NULL, req, 404, "unknown dataset; use pipeline.dataset", w);
        return true;
    }
    struct adminjob *j = fr_http_req_alloc(req, sizeof(*j));
    memset(j, 0, sizeof(*j));
    j->w = w;
    j->req = req;
    j->p = p;
    j->ds = ds;
    j->restore = restore;
    if (restore) {
        j->body = fr_http_req_body(req, &j->len);
        if (j->len == 0) {
            respond_detail(NULL, req, 422, "send the Avro file as the request body", w);
            return true;
        }
    }
    if (uv_queue_work(&w->app->loop, &j->work, admin_work, admin_done) != 0) {
        respond_detail(NULL, req, 503, "busy; retry", w);
        return true;
    }
    w->inflight++;
    return true;
}

/* ---------------------------------------------------------------- dispatch */

bool fr_api_engine_handle(struct fr_api_engine *e, fr_http_req_t *req)
{
    if (!e)
        return false;
    const char *method = fr_http_req_method(req);
    const char *path = fr_http_req_path(req);
    const char *ss[64];
    size_t sl[64];
    bool pm;
    struct fr_api_worker *w = e->w;
    if (e->n_crud && crud_handle(e, req, method, path))
        return true;
    if (path[0] == '/' && path[1] == 'a' && admin_handle(e, req, method, path))
        return true;
    struct eroute *er = find(e, method, path, &pm, ss, sl);
    if (!er) {
        if (!pm)
            return false;
        char allow[96] = "";
        size_t off = 0;
        const char *ss2[64];
        size_t sl2[64];
        for (size_t i = 0; i < e->n && off < sizeof(allow) - 10; i++)
            if (e->routes[i].r->n_segs <= 64 && match_path(e->routes[i].r, path, ss2, sl2) &&
                !strstr(allow, e->routes[i].r->method))
                off += (size_t)snprintf(allow + off, sizeof(allow) - off, "%s%s", off ? ", " : "",
                                        e->routes[i].r->method);
        fr_http_add_header(req, "Allow", allow);
        respond_detail(NULL, req, 405, "Method Not Allowed", w);
        return true;
    }
    const struct fr_route *r = er->r;
    switch (r->handler) {
    case FR_RH_CACHE_FIELD:
    case FR_RH_CACHE_HASH:
    case FR_RH_CACHE_MULTI: {
        /* declared parameters are checked as for any route */
        const char **cvals = fr_http_req_alloc(req, (r->n_params ? r->n_params : 1) * sizeof(char *));
        if (parse_params(e, er, req, ss, sl, cvals))
            fr_api_cache_route(w, req, er->p, r, cvals);
        return true;
    }
    case FR_RH_STATIC:
        respond(er, req, 200, "application/json", r->sql, strlen(r->sql), w);
        return true;
    case FR_RH_PUSH: {
        struct fr_api_push_spec spec = {
            .pipeline = er->p,
            .ds = er->ds,
            .min_rows = r->min_rows,
            .max_rows = r->max_rows,
            .partial = r->partial,
            .csv_header = true,
            .wait_ms = UINT32_MAX,
            .op = FR_OP_UPSERT,
        };
        fr_api_push(w, req, &spec);
        return true;
    }
    case FR_RH_CRUD: /* matched by prefix in crud_handle */
    case FR_RH_SQL:
        break;
    }
    const char **vals = fr_http_req_alloc(req, (r->n_params ? r->n_params : 1) * sizeof(char *));
    if (!parse_params(e, er, req, ss, sl, vals))
        return true;
    struct sqlreq *sr = fr_http_req_alloc(req, sizeof(*sr));
    memset(sr, 0, sizeof(*sr));
    sr->slot.conn = -1; /* no stream slot held */
    sr->e = e;
    sr->er = er;
    sr->req = req;
    sr->vals = vals;
    sr->csv = wants_csv(er, req, w);
    if (sr->csv && !r->csv) {
        respond_detail(er, req, 406, "this route answers JSON only", w);
        return true;
    }
    if (!sr->csv && !r->json) {
        respond_detail(er, req, 406, "this route answers CSV only; use ?format=csv", w);
        return true;
    }
    sr->exists_phase = r->exists != NULL;
    run_sql(sr);
    return true;
}

/* ---------------------------------------------------------------- openapi */

static const char *oa_type(enum fr_type t)
{
    switch (t) {
    case FR_T_INT:
    case FR_T_BIGINT:
        return "integer";
    case FR_T_FLOAT:
    case FR_T_NUMERIC:
        return "number";
    case FR_T_BOOL:
        return "boolean";
    default:
        return "string";
    }
}

static void oa_str(struct fr_buf *b, const char *s)
{
    (void)fr_buf_json_str(b, s, strlen(s));
}

static void oa_route(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_route *r, bool auth)
{
    char lower[8];
    size_t i = 0;
    for (; r->method[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)(r->method[i] + ('a' - 'A'));
    lower[i] = '\0';
    oa_str(b, lower);
    (void)fr_buf_puts(b, ":{\"operationId\":");
    char op[160];
    snprintf(op, sizeof(op), "%s.%s", p->name, r->name);
    oa_str(b, op);
    (void)fr_buf_puts(b, ",\"tags\":[");
    oa_str(b, p->name);
    (void)fr_buf_puts(b, "],\"summary\":");
    oa_str(b, r->summary ? r->summary : r->name);
    (void)fr_buf_puts(b, ",\"x-role\":");
    oa_str(b, r->role);
    if (auth)
        (void)fr_buf_puts(b, ",\"security\":[{\"bearer\":[]}]");
    (void)fr_buf_puts(b, ",\"parameters\":[");
    for (size_t k = 0; k < r->n_params; k++) {
        const struct fr_route_param *q = &r->params[k];
        if (k)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_puts(b, "{\"name\":");
        oa_str(b, q->name);
        (void)fr_buf_printf(b, ",\"in\":\"%s\",\"required\":%s,\"schema\":{\"type\":\"%s\"",
                            q->in == FR_PARAM_PATH ? "path" : "query", q->required ? "true" : "false",
                            oa_type(q->type));
        if (q->type == FR_T_TIMESTAMPTZ)
            (void)fr_buf_puts(b, ",\"format\":\"date-time\",\"description\":\"ISO-8601 or epoch milliseconds\"");
        if (q->type == FR_T_DATE)
            (void)fr_buf_puts(b, ",\"format\":\"date\"");
        if (q->has_min)
            (void)fr_buf_printf(b, ",\"minimum\":%" PRId64, q->min);
        if (q->has_max)
            (void)fr_buf_printf(b, ",\"maximum\":%" PRId64, q->max);
        if (q->pattern) {
            (void)fr_buf_puts(b, ",\"pattern\":");
            oa_str(b, q->pattern);
        }
        if (q->n_allowed) {
            (void)fr_buf_puts(b, ",\"enum\":[");
            for (size_t a = 0; a < q->n_allowed; a++) {
                if (a)
                    (void)fr_buf_putc(b, ',');
                oa_str(b, q->allowed[a]);
            }
            (void)fr_buf_putc(b, ']');
        }
        if (q->def && strcmp(q->def, "now_year") != 0 && strcmp(q->def, "now") != 0) {
            (void)fr_buf_puts(b, ",\"default\":");
            if (q->type == FR_T_INT || q->type == FR_T_BIGINT)
                (void)fr_buf_puts(b, q->def);
            else
                oa_str(b, q->def);
        }
        (void)fr_buf_puts(b, "}}");
    }
    (void)fr_buf_putc(b, ']');
    if (r->handler == FR_RH_PUSH || r->handler == FR_RH_CACHE_MULTI)
        (void)fr_buf_puts(b, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":{}}"
                             "}}");
    (void)fr_buf_puts(b, ",\"responses\":{");
    if (r->handler == FR_RH_PUSH)
        (void)fr_buf_puts(b, "\"201\":{\"description\":\"loaded\"},\"202\":{\"description\":\"accepted; see "
                             "Location\"}");
    else {
        (void)fr_buf_puts(b, "\"200\":{\"description\":\"OK\",\"content\":{");
        if (r->json)
            (void)fr_buf_puts(b, "\"application/json\":{\"schema\":{}}");
        if (r->csv)
            (void)fr_buf_puts(b, r->json ? ",\"text/csv\":{\"schema\":{\"type\":\"string\"}}"
                                         : "\"text/csv\":{\"schema\":{\"type\":\"string\"}}");
        (void)fr_buf_puts(b, "}}");
    }
    (void)fr_buf_puts(b, ",\"404\":{\"description\":\"Not found\"},\"422\":{\"description\":\"Validation "
                         "error\",\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/"
                         "HTTPValidationError\"}}}}}}");
}

/* One operation of a crud resource. */
static void oa_op(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_route *r, const char *method,
                  const char *op, const char *summary, const char *role, bool id, bool body, const char *ok,
                  bool auth)
{
    char name[160];
    snprintf(name, sizeof(name), "%s.%s_%s", p->name, r->name, op);
    (void)fr_buf_printf(b, "\"%s\":{\"operationId\":", method);
    oa_str(b, name);
    (void)fr_buf_puts(b, ",\"tags\":[");
    oa_str(b, p->name);
    (void)fr_buf_puts(b, "],\"summary\":");
    oa_str(b, summary);
    (void)fr_buf_puts(b, ",\"x-role\":");
    oa_str(b, role);
    if (auth)
        (void)fr_buf_puts(b, ",\"security\":[{\"bearer\":[]}]");
    (void)fr_buf_puts(b, ",\"parameters\":[");
    if (id)
        (void)fr_buf_puts(b, "{\"name\":\"id\",\"in\":\"path\",\"required\":true,\"schema\":{\"type\":\"integer\"}}");
    else if (strcmp(op, "list") == 0)
        (void)fr_buf_puts(b, "{\"name\":\"limit\",\"in\":\"query\",\"required\":false,\"schema\":{\"type\":"
                             "\"integer\",\"minimum\":1,\"maximum\":1000,\"default\":10}},{\"name\":\"offset\","
                             "\"in\":\"query\",\"required\":false,\"schema\":{\"type\":\"integer\",\"minimum\":0,"
                             "\"default\":0}},{\"name\":\"cursor\",\"in\":\"query\",\"required\":false,"
                             "\"description\":\"start after this key (keyset; the Link of a cursor page carries "
                             "the next)\",\"schema\":{\"type\":\"integer\"}}");
    (void)fr_buf_putc(b, ']');
    if (body)
        (void)fr_buf_puts(b, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":{}}"
                             ",\"text/csv\":{\"schema\":{\"type\":\"string\"}}}}");
    (void)fr_buf_printf(b,
                        ",\"responses\":{\"%s\":{\"description\":\"OK\"},\"404\":{\"description\":\"unknown "
                        "id\"},\"410\":{\"description\":\"deleted\"},\"409\":{\"description\":\"a unique value "
                        "held by another row\"},\"400\":{\"description\":\"a reference to a missing row\"},"
                        "\"422\":{\"description\":\"Validation error\"}}}",
                        ok);
}

/* A crud route is three paths: P, P/{id}, P/bulk. */
static void oa_crud(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_route *r, bool auth)
{
    char path[600];
    oa_str(b, r->path);
    (void)fr_buf_puts(b, ":{");
    oa_op(b, p, r, "get", "list", "List (limit/offset or cursor; Link rel=next)", r->role, false, false, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "post", "create", "Create one row (201; an equal row is returned, a deleted one reactivated)",
          r->role_write, false, true, "201", auth);
    (void)fr_buf_puts(b, "},");
    snprintf(path, sizeof(path), "%s/{id}", r->path);
    oa_str(b, path);
    (void)fr_buf_puts(b, ":{");
    oa_op(b, p, r, "get", "get", "One row", r->role, true, false, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "put", "replace", "Replace a row", r->role_write, true, true, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "patch", "update", "Update some fields of a row", r->role_write, true, true, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "delete", "delete", "Delete (soft; X-Soft-Delete: false for good)", r->role_write, true, false,
          "204", auth);
    (void)fr_buf_puts(b, "},");
    snprintf(path, sizeof(path), "%s/bulk", r->path);
    oa_str(b, path);
    (void)fr_buf_puts(b, ":{");
    oa_op(b, p, r, "post", "bulk", "1 to 1000 rows, JSON array or CSV: {inserted, rejected}", r->role_write, false,
          true, "201", auth);
    (void)fr_buf_putc(b, '}');
}

/* POST /v1/push/{pipeline}/{dataset} of a push source (push.c). */
static void oa_push(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_source *src, bool auth)
{
    char path[300], op[200];
    snprintf(path, sizeof(path), "/v1/push/%s/%s", p->name, src->dataset);
    snprintf(op, sizeof(op), "%s.push_%s", p->name, src->dataset);
    oa_str(b, path);
    (void)fr_buf_puts(b, ":{\"post\":{\"operationId\":");
    oa_str(b, op);
    (void)fr_buf_puts(b, ",\"tags\":[");
    oa_str(b, p->name);
    (void)fr_buf_puts(b, "],\"summary\":\"Rows of ");
    (void)fr_buf_puts(b, src->dataset);
    (void)fr_buf_puts(b, " (JSON object or array, or CSV with a header) as one batch; waits for it to load\","
                         "\"x-role\":\"write\"");
    if (auth)
        (void)fr_buf_puts(b, ",\"security\":[{\"bearer\":[]}]");
    (void)fr_buf_puts(b, ",\"parameters\":[{\"name\":\"partial\",\"in\":\"query\",\"required\":false,"
                         "\"description\":\"load the valid rows and list the rejected ones\",\"schema\":{"
                         "\"type\":\"boolean\",\"default\":false}}],\"requestBody\":{\"required\":true,"
                         "\"content\":{\"application/json\":{\"schema\":{}},\"text/csv\":{\"schema\":{"
                         "\"type\":\"string\"}}}},\"responses\":{\"201\":{\"description\":\"loaded\"},"
                         "\"202\":{\"description\":\"accepted; see Location\"},\"413\":{\"description\":"
                         "\"body too large\"},\"415\":{\"description\":\"not JSON or CSV\"},\"422\":{"
                         "\"description\":\"Validation error\",\"content\":{\"application/json\":{\"schema\":{"
                         "\"$ref\":\"#/components/schemas/HTTPValidationError\"}}}},\"503\":{\"description\":"
                         "\"Redis unavailable; retry\"}}}}");
}

void fr_api_openapi(const struct fr_pipeline *const *ps, size_t n, bool auth, struct fr_buf *b)
{
    (void)fr_buf_puts(b, "{\"openapi\":\"3.1.0\",\"info\":{\"title\":\"freshet\",\"version\":\"" FR_VERSION
                         "\"},\"paths\":{");
    bool first_path = true;
    /* group by path: every method of a path inside one object */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ps[i]->n_routes; j++) {
            const struct fr_route *r = &ps[i]->routes[j];
            if (r->handler == FR_RH_CRUD)
                continue; /* below */
            bool seen = false;
            for (size_t i2 = 0; i2 <= i && !seen; i2++)
                for (size_t j2 = 0; j2 < (i2 == i ? j : ps[i2]->n_routes) && !seen; j2++)
                    seen = strcmp(ps[i2]->routes[j2].path, r->path) == 0;
            if (seen)
                continue;
            if (!first_path)
                (void)fr_buf_putc(b, ',');
            first_path = false;
            oa_str(b, r->path);
            (void)fr_buf_puts(b, ":{");
            bool first_m = true;
            for (size_t i2 = i; i2 < n; i2++)
                for (size_t j2 = (i2 == i ? j : 0); j2 < ps[i2]->n_routes; j2++) {
                    if (strcmp(ps[i2]->routes[j2].path, r->path) != 0)
                        continue;
                    if (!first_m)
                        (void)fr_buf_putc(b, ',');
                    first_m = false;
                    oa_route(b, ps[i2], &ps[i2]->routes[j2], auth);
                }
            (void)fr_buf_putc(b, '}');
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ps[i]->n_routes; j++) {
            const struct fr_route *r = &ps[i]->routes[j];
            if (r->handler != FR_RH_CRUD)
                continue;
            if (!first_path)
                (void)fr_buf_putc(b, ',');
            first_path = false;
            oa_crud(b, ps[i], r, auth);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ps[i]->n_sources; j++) {
            if (ps[i]->sources[j].kind != FR_SRC_PUSH)
                continue;
            if (!first_path)
                (void)fr_buf_putc(b, ',');
            first_path = false;
            oa_push(b, ps[i], &ps[i]->sources[j], auth);
        }
    }
    if (!first_path)
        (void)fr_buf_putc(b, ',');
    (void)fr_buf_puts(
        b, "\"/healthz\":{\"get\":{\"operationId\":\"healthz\",\"summary\":\"alive\",\"responses\":{\"200\":{"
           "\"description\":\"OK\"}}}},"
           "\"/readyz\":{\"get\":{\"operationId\":\"readyz\",\"summary\":\"Redis and PostgreSQL "
           "reachable\",\"responses\":{\"200\":{\"description\":\"OK\"},\"503\":{\"description\":\"not "
           "ready\"}}}},"
           "\"/v1/batches/{id}\":{\"get\":{\"operationId\":\"batch_status\",\"x-role\":\"read\",\"summary\":\"state "
           "of a "
           "write's batch\",\"parameters\":[{\"name\":\"id\",\"in\":\"path\",\"required\":true,\"schema\":{"
           "\"type\":\"string\"}}],\"responses\":{\"200\":{\"description\":\"OK\"},\"404\":{"
           "\"description\":\"unknown\"}}}},"
           "\"/admin/backup/{dataset}\":{\"post\":{\"operationId\":\"admin_backup\",\"x-role\":\"admin\","
           "\"summary\":\"write pipeline.dataset to FRESHET_DATA_DIR/backups/ as Avro; answers the file "
           "name\",\"parameters\":[{\"name\":\"dataset\",\"in\":\"path\",\"required\":true,\"schema\":{"
           "\"type\":\"string\"}}],\"responses\":{\"201\":{\"description\":\"written\"},\"404\":{"
           "\"description\":\"unknown dataset\"}}}},"
           "\"/admin/restore/{dataset}\":{\"post\":{\"operationId\":\"admin_restore\",\"x-role\":\"admin\","
           "\"summary\":\"replace pipeline.dataset with the Avro body (a corrupt or mismatched file changes "
           "nothing)\",\"parameters\":[{\"name\":\"dataset\",\"in\":\"path\",\"required\":true,\"schema\":{"
           "\"type\":\"string\"}}],\"requestBody\":{\"required\":true,\"content\":{\"application/"
           "octet-stream\":{\"schema\":{\"type\":\"string\",\"format\":\"binary\"}}}},\"responses\":{"
           "\"200\":{\"description\":\"restored\"},\"422\":{\"description\":\"corrupt or mismatched\"},"
           "\"404\":{\"description\":\"unknown dataset\"}}}}");
    (void)fr_buf_puts(b,
                      "},\"components\":{\"schemas\":{\"HTTPValidationError\":{\"type\":\"object\",\"properties\":{"
                      "\"detail\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"loc\":{"
                      "\"type\":\"array\"},\"msg\":{\"type\":\"string\"},\"type\":{\"type\":\"string\"}}}}}}}");
    if (auth)
        (void)fr_buf_puts(b, ",\"securitySchemes\":{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\"}}");
    (void)fr_buf_puts(b, "}}");
}
