/* params: a route's typed parameters (docs/routes.md): raw values from the
 * path segments and the query string, decoded and checked by type (int,
 * bigint, float, numeric, bool, date, timestamp, string; enum, pattern,
 * bounds, lists), and the FastAPI-shaped 422 naming each refused one
 * (problem.c). The canonical text of a value is what SQL binds. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "engine_int.h"
#include "log.h"
#include "problem.h"

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
bool fr_api_parse_params(struct fr_api_engine *e, struct eroute *er, fr_http_req_t *req, const char **seg_start,
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
        char dec[FR_API_MAX_VALUE + 1];
        if (p->in == FR_PARAM_PATH) {
            char want[80];
            snprintf(want, sizeof(want), "{%s}", p->name);
            for (size_t k = 0; k < r->n_segs; k++) {
                if (strcmp(r->segs[k], want) == 0) {
                    n = fr_http_pct_decode(seg_start[k], seg_len[k], dec, FR_API_MAX_VALUE);
                    raw = dec;
                }
            }
        } else if (fr_http_query_get(q, qlen, p->name, &w->q1)) {
            n = w->q1.len;
            raw = w->q1.data ? w->q1.data : "";
        }
        vals[i] = NULL;
        if (raw && n > FR_API_MAX_VALUE) {
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
        fr_api_respond(er, req, 422, "application/json", w->out.data, w->out.len, w);
        return false;
    }
    return true;
}
