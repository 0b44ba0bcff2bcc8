/* config_http: parses an http_json source (config_http.h) with the YAML
 * helpers of config_int.h, and the schedule and duration syntaxes shared
 * with freshet-ingest. Every error names file:line:col and the fix. */
#include "config_http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

static const char *const http_keys[] = {"type",   "dataset",  "url",        "headers", "query",     "records",
                                        "fields", "schedule", "paginate",   "fan_out", "window",    "rate_limit",
                                        "retry",  "timeout",  "tls_verify", "batch",   "max_bytes", NULL};
static const char *const field_keys[] = {"path", "as", "value", NULL};
static const char *const page_keys[] = {"type",        "param",     "size_param", "size", "start",
                                        "cursor_path", "next_path", "max_pages",  NULL};
static const char *const fan_keys[] = {"source", "var", "values", NULL};
static const char *const win_keys[] = {"start", "step", "align", "start_param", "end_param", "format", NULL};
static const char *const rate_keys[] = {"per_minute", "remaining_header", "reset_header", NULL};
static const char *const retry_keys[] = {"max", "base_ms", "max_ms", NULL};
static const char *const timeout_keys[] = {"connect_ms", "total_ms", NULL};
static const char *const batch_keys[] = {"rows", "bytes", NULL};

/* ------------------------------------------------------------ durations */

bool fr_duration_parse(const char *s, int64_t *out_us)
{
    bool neg = false;
    int64_t v = 0, mul;
    size_t digits = 0;

    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    while (*s >= '0' && *s <= '9') {
        if (++digits > 12)
            return false;
        v = v * 10 + (*s++ - '0');
    }
    if (digits == 0)
        return false;
    if (strcmp(s, "ms") == 0)
        mul = 1000;
    else if (strcmp(s, "s") == 0)
        mul = 1000000;
    else if (strcmp(s, "m") == 0)
        mul = 60 * 1000000LL;
    else if (strcmp(s, "h") == 0)
        mul = 3600 * 1000000LL;
    else if (strcmp(s, "d") == 0)
        mul = 86400 * 1000000LL;
    else
        return false;
    *out_us = (neg ? -v : v) * mul;
    return true;
}

/* ------------------------------------------------------------- schedules */

/* One cron field: "*", "a", "a-b", lists, "/step" on any of them. */
static bool cron_field(const char *f, unsigned lo, unsigned hi, uint64_t *bits, bool *star, const char *name,
                       char *err)
{
    char buf[64];
    char *save = NULL, *item;

    *bits = 0;
    *star = strcmp(f, "*") == 0;
    if (strlen(f) >= sizeof(buf)) {
        snprintf(err, FR_ERR_LEN, "cron %s field too long", name);
        return false;
    }
    strcpy(buf, f);
    for (item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        unsigned a, b, step = 1;
        char *slash = strchr(item, '/'), *end;
        if (slash) {
            *slash = '\0';
            unsigned long st = strtoul(slash + 1, &end, 10);
            if (end == slash + 1 || *end || st == 0 || st > hi) {
                snprintf(err, FR_ERR_LEN, "cron %s field: bad step '%.20s'; write */N with N in 1..%u", name,
                         slash + 1, hi);
                return false;
            }
            step = (unsigned)st;
        }
        if (strcmp(item, "*") == 0) {
            a = lo;
            b = hi;
        } else {
            unsigned long x = strtoul(item, &end, 10), y;
            if (end == item || !isdigit((unsigned char)item[0]))
                goto bad;
            y = x;
            if (*end == '-') {
                char *e2;
                y = strtoul(end + 1, &e2, 10);
                if (e2 == end + 1 || *e2)
                    goto bad;
            } else if (*end) {
                goto bad;
            } else if (slash) {
                y = hi; /* "5/15" = 5-hi/15 */
            }
            if (x < lo || y > hi || x > y)
                goto bad;
            a = (unsigned)x;
            b = (unsigned)y;
        }
        for (unsigned v = a; v <= b; v += step)
            *bits |= 1ull << v;
    }
    if (*bits == 0)
        goto bad;
    return true;
bad:
    snprintf(err, FR_ERR_LEN, "cron %s field '%.20s' is not valid; use *, N, N-M, lists and /step within %u-%u", name,
             f, lo, hi);
    return false;
}

bool fr_sched_parse(const char *s, struct fr_sched *out, char err[FR_ERR_LEN])
{
    memset(out, 0, sizeof(*out));
    if (strcmp(s, "manual") == 0) {
        out->kind = FR_SCHED_MANUAL;
        return true;
    }
    if (strncmp(s, "every ", 6) == 0) {
        int64_t us;
        const char *d = s + 6;
        while (*d == ' ')
            d++;
        if (!fr_duration_parse(d, &us) || us < 1000000 || d[0] == '-' || d[0] == '+') {
            snprintf(err, FR_ERR_LEN, "schedule '%.40s': write every N followed by s, m, h or d (at least 1s)", s);
            return false;
        }
        out->kind = FR_SCHED_EVERY;
        out->every_ms = (uint64_t)(us / 1000);
        return true;
    }
    char buf[160], *f[6], *save = NULL;
    size_t n = 0;
    if (strlen(s) >= sizeof(buf)) {
        snprintf(err, FR_ERR_LEN, "schedule too long; use every N{s,m,h,d}, a 5-field cron or manual");
        return false;
    }
    strcpy(buf, s);
    for (char *t = strtok_r(buf, " \t", &save); t && n < 6; t = strtok_r(NULL, " \t", &save))
        f[n++] = t;
    if (n != 5) {
        snprintf(err, FR_ERR_LEN,
                 "schedule '%.40s' is not valid; use every 30s|5m|1h|1d, manual, or 5 cron fields "
                 "(minute hour day-of-month month day-of-week, UTC)",
                 s);
        return false;
    }
    uint64_t b;
    bool star;
    out->kind = FR_SCHED_CRON;
    if (!cron_field(f[0], 0, 59, &b, &star, "minute", err))
        return false;
    out->minute = b;
    if (!cron_field(f[1], 0, 23, &b, &star, "hour", err))
        return false;
    out->hour = (uint32_t)b;
    if (!cron_field(f[2], 1, 31, &b, &out->dom_star, "day-of-month", err))
        return false;
    out->dom = (uint32_t)b;
    if (!cron_field(f[3], 1, 12, &b, &star, "month", err))
        return false;
    out->month = (uint32_t)b;
    if (!cron_field(f[4], 0, 7, &b, &out->dow_star, "day-of-week", err))
        return false;
    if (b & (1u << 7))
        b = (b | 1u) & 0x7f;
    out->dow = (uint32_t)b;
    return true;
}

/* --------------------------------------------------------------- helpers */

static bool get_path(struct fr_cfg *c, const yaml_node_t *n, const char *what, fr_jpath_t **out)
{
    char *s, perr[FR_ERR_LEN];
    if (!fr_cfg_get_str(c, n, what, &s))
        return false;
    *out = fr_jpath_compile(s, strlen(s), perr);
    if (*out == NULL) {
        bool r = fr_cfg_fail(c, n, "%s '%.60s' is not a JSON path (%s)", what, s, perr);
        free(s);
        return r;
    }
    free(s);
    return true;
}

/* Checks the {names} of a template against what the source defines. */
static bool check_template(struct fr_cfg *c, const yaml_node_t *n, const char *what, const char *t,
                           const struct fr_pipeline *p, const struct fr_http_source *h)
{
    for (const char *s = t; *s; s++) {
        if (*s == '{' && s[1] == '{') {
            s++;
            continue;
        }
        if (*s != '{')
            continue;
        const char *e = strchr(s, '}');
        if (!e)
            return fr_cfg_fail(c, n, "%s: unterminated '{' in '%.60s'; close it with } (or write {{ for a literal {)",
                               what, t);
        size_t len = (size_t)(e - s - 1);
        char name[128];
        if (len == 0 || len >= sizeof(name))
            return fr_cfg_fail(c, n, "%s: bad variable '{%.*s}'", what, (int)(len > 60 ? 60 : len), s + 1);
        memcpy(name, s + 1, len);
        name[len] = '\0';
        bool ok = false;
        if (strcmp(name, "window.start") == 0 || strcmp(name, "window.end") == 0) {
            ok = h->window.enabled;
            if (!ok)
                return fr_cfg_fail(c, n, "%s uses {%s} but the source has no window; add window: or remove it", what,
                                   name);
        } else if (h->fan_out.var) {
            size_t vl = strlen(h->fan_out.var);
            if (h->fan_out.values) {
                ok = strcmp(name, h->fan_out.var) == 0;
            } else if (strncmp(name, h->fan_out.var, vl) == 0 && name[vl] == '.') {
                const struct fr_source *ps = NULL;
                for (size_t i = 0; i < p->n_sources; i++)
                    if (p->sources[i].name && strcmp(p->sources[i].name, h->fan_out.source) == 0)
                        ps = &p->sources[i];
                const struct fr_dataset *pd = ps ? fr_pipeline_dataset(p, ps->dataset) : NULL;
                if (pd && fr_column_index(pd->columns, pd->n_columns, name + vl + 1) < 0)
                    return fr_cfg_fail(c, n, "%s uses {%s} but dataset '%s' of source '%s' has no column '%s'", what,
                                       name, pd->name, h->fan_out.source, name + vl + 1);
                ok = pd != NULL;
            }
        }
        if (!ok)
            return fr_cfg_fail(c, n,
                               "%s uses unknown variable {%s}; known: the fan_out var ({%s}%s) and {window.start}, "
                               "{window.end}",
                               what, name, h->fan_out.var ? h->fan_out.var : "none",
                               h->fan_out.values || !h->fan_out.var ? "" : " as {VAR.column}");
        s = e;
    }
    return true;
}

static bool parse_kvs(struct fr_cfg *c, const yaml_node_t *n, const char *what, struct fr_http_kv **out,
                      size_t *count)
{
    if (n->type != YAML_MAPPING_NODE)
        return fr_cfg_fail(c, n, "%s must be a mapping of name: value", what);
    size_t len = fr_cfg_map_len(n);
    *out = fr_xcalloc(len ? len : 1, sizeof(**out));
    for (size_t i = 0; i < len; i++) {
        yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = fr_cfg_node_at(c, pr->key);
        const char *ks = fr_cfg_scalar_of(k);
        if (!ks || !ks[0])
            return fr_cfg_fail(c, k, "%s has a key that is not a plain name", what);
        for (const char *q = ks; *q; q++)
            if ((unsigned char)*q <= ' ' || *q == ':' || *q == '\x7f')
                return fr_cfg_fail(c, k, "%s name '%.40s' holds a space, control character or ':'; remove it", what,
                                   ks);
        (*count)++;
        (*out)[i].name = fr_xstrdup(ks);
        if (!fr_cfg_get_str(c, fr_cfg_node_at(c, pr->value), what, &(*out)[i].value))
            return false;
        for (const char *q = (*out)[i].value; *q; q++)
            if (*q == '\r' || *q == '\n')
                return fr_cfg_fail(c, fr_cfg_node_at(c, pr->value), "%s value of %s holds a line break; remove it",
                                   what, ks);
    }
    return true;
}

static bool get_duration(struct fr_cfg *c, const yaml_node_t *n, const char *what, int64_t *out)
{
    char *s;
    if (!fr_cfg_get_str(c, n, what, &s))
        return false;
    bool ok = fr_duration_parse(s, out);
    free(s);
    return ok || fr_cfg_fail(c, n, "%s is not a duration; write e.g. 30s, 5m, 1h or 1d", what);
}

/* ---------------------------------------------------------------- sections */

static bool parse_fields(struct fr_cfg *c, const yaml_node_t *n, const struct fr_dataset *ds,
                         struct fr_http_source *h, const char *what)
{
    if (n->type != YAML_MAPPING_NODE)
        return fr_cfg_fail(c, n, "fields of %s must be a mapping of column: $.json.path", what);
    size_t len = fr_cfg_map_len(n);
    if (len == 0)
        return fr_cfg_fail(c, n, "fields of %s is empty; map each column to a JSON path", what);
    h->fields = fr_xcalloc(len, sizeof(*h->fields));
    for (size_t i = 0; i < len; i++) {
        yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = fr_cfg_node_at(c, pr->key), *v = fr_cfg_node_at(c, pr->value), *x;
        const char *col = fr_cfg_scalar_of(k);
        struct fr_http_field *f = &h->fields[i];
        if (!col || fr_column_index(ds->columns, ds->n_columns, col) < 0)
            return fr_cfg_fail(c, k,
                               "field '%.40s' of %s is not a column of dataset '%s'; fix the name or add the column",
                               col ? col : "?", what, ds->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(h->fields[j].column, col) == 0)
                return fr_cfg_fail(c, k, "field '%s' appears twice in %s; keep one", col, what);
        h->n_fields++;
        f->column = fr_xstrdup(col);
        if (v->type == YAML_SCALAR_NODE) {
            if (!get_path(c, v, "field path", &f->path))
                return false;
            continue;
        }
        char fw[128];
        snprintf(fw, sizeof(fw), "field '%s' of %s", col, what);
        if (!fr_cfg_check_map(c, v, fw, field_keys))
            return false;
        yaml_node_t *pv = fr_cfg_map_get(c, v, "path"), *vv = fr_cfg_map_get(c, v, "value");
        if ((pv == NULL) == (vv == NULL))
            return fr_cfg_fail(c, v, "%s needs exactly one of path: $.json.path or value: template", fw);
        if (pv && !get_path(c, pv, "field path", &f->path))
            return false;
        if (vv) {
            if (!fr_cfg_get_str(c, vv, "field value", &f->value)) /* template checked by the caller */
                return false;
        }
        if ((x = fr_cfg_map_get(c, v, "as"))) {
            const char *as = fr_cfg_scalar_of(x);
            if (as && strcmp(as, "epoch_ms") == 0)
                f->as = FR_AS_EPOCH_MS;
            else if (as && strcmp(as, "epoch_s") == 0)
                f->as = FR_AS_EPOCH_S;
            else if (as && strcmp(as, "string") == 0)
                f->as = FR_AS_STRING;
            else
                return fr_cfg_fail(c, x, "as of %s must be epoch_ms, epoch_s or string", fw);
        }
    }
    return true;
}

static bool parse_paginate(struct fr_cfg *c, const yaml_node_t *n, struct fr_http_paginate *pg, const char *what)
{
    yaml_node_t *v;
    char pw[128];
    snprintf(pw, sizeof(pw), "paginate of %s", what);
    if (!fr_cfg_check_map(c, n, pw, page_keys))
        return false;
    pg->max_pages = 1000;
    if (!(v = fr_cfg_map_get(c, n, "type")))
        return fr_cfg_fail(c, n, "%s has no type; add type: page, offset, cursor or next", pw);
    const char *t = fr_cfg_scalar_of(v);
    if (t && strcmp(t, "page") == 0)
        pg->kind = FR_PAGE_PAGE, pg->start = 1;
    else if (t && strcmp(t, "offset") == 0)
        pg->kind = FR_PAGE_OFFSET;
    else if (t && strcmp(t, "cursor") == 0)
        pg->kind = FR_PAGE_CURSOR;
    else if (t && strcmp(t, "next") == 0)
        pg->kind = FR_PAGE_NEXT;
    else
        return fr_cfg_fail(c, v, "type of %s must be page, offset, cursor or next", pw);
    if ((v = fr_cfg_map_get(c, n, "param")) && !fr_cfg_get_str(c, v, "param", &pg->param))
        return false;
    if (!pg->param && pg->kind != FR_PAGE_NEXT)
        return fr_cfg_fail(c, n, "%s needs param: the query parameter carrying the page, offset or cursor", pw);
    if ((v = fr_cfg_map_get(c, n, "size_param")) && !fr_cfg_get_str(c, v, "size_param", &pg->size_param))
        return false;
    if ((v = fr_cfg_map_get(c, n, "size")) && !fr_cfg_get_u32(c, v, "size", 1, 1000000, &pg->size))
        return false;
    if (pg->kind == FR_PAGE_OFFSET && pg->size == 0)
        return fr_cfg_fail(c, n, "%s of type offset needs size: the number of records per page", pw);
    if ((v = fr_cfg_map_get(c, n, "start"))) {
        uint32_t st;
        if (!fr_cfg_get_u32(c, v, "start", 0, 1000000000, &st))
            return false;
        pg->start = st;
    }
    if ((v = fr_cfg_map_get(c, n, "cursor_path")) && !get_path(c, v, "cursor_path", &pg->cursor_path))
        return false;
    if ((v = fr_cfg_map_get(c, n, "next_path")) && !get_path(c, v, "next_path", &pg->next_path))
        return false;
    if (pg->kind == FR_PAGE_CURSOR && !pg->cursor_path)
        return fr_cfg_fail(c, n, "%s of type cursor needs cursor_path: where the next cursor is, e.g. $.next_cursor",
                           pw);
    if (pg->kind == FR_PAGE_NEXT && !pg->next_path)
        return fr_cfg_fail(c, n, "%s of type next needs next_path: where the next URL is, e.g. $.links.next", pw);
    if ((v = fr_cfg_map_get(c, n, "max_pages")) && !fr_cfg_get_u32(c, v, "max_pages", 1, 1000000, &pg->max_pages))
        return false;
    return true;
}

static bool parse_fan_out(struct fr_cfg *c, const yaml_node_t *n, struct fr_pipeline *p, struct fr_source *s,
                          struct fr_http_fanout *fo, const char *what)
{
    yaml_node_t *v;
    char fw[128];
    snprintf(fw, sizeof(fw), "fan_out of %s", what);
    if (!fr_cfg_check_map(c, n, fw, fan_keys))
        return false;
    if (!(v = fr_cfg_map_get(c, n, "var")))
        return fr_cfg_fail(c, n, "%s needs var: the template variable name, e.g. var: parent", fw);
    if (!fr_cfg_get_ident(c, v, "var", &fo->var))
        return false;
    if (strcmp(fo->var, "window") == 0)
        return fr_cfg_fail(c, v, "var of %s may not be 'window' (reserved); pick another name", fw);
    yaml_node_t *sv = fr_cfg_map_get(c, n, "source"), *vv = fr_cfg_map_get(c, n, "values");
    if ((sv == NULL) == (vv == NULL))
        return fr_cfg_fail(c, n, "%s needs exactly one of source: <http_json source> or values: [..]", fw);
    if (vv) {
        if (!fr_cfg_get_str_list(c, vv, "values", false, &fo->values, &fo->n_values))
            return false;
        if (fo->n_values == 0)
            return fr_cfg_fail(c, vv, "values of %s is empty; list at least one", fw);
        return true;
    }
    if (!fr_cfg_get_ident(c, sv, "fan_out source", &fo->source))
        return false;
    if (strcmp(fo->source, s->name) == 0)
        return fr_cfg_fail(c, sv, "%s names the source itself; name another http_json source", fw);
    for (size_t i = 0; i < p->n_sources; i++) {
        const struct fr_source *o = &p->sources[i];
        if (o != s && o->name && strcmp(o->name, fo->source) == 0) {
            if (o->kind != FR_SRC_HTTP_JSON)
                return fr_cfg_fail(c, sv, "%s names source '%s', which is not http_json", fw, fo->source);
            return true;
        }
    }
    return fr_cfg_fail(c, sv, "%s names unknown source '%s'; define it above this source", fw, fo->source);
}

static bool get_time(struct fr_cfg *c, const yaml_node_t *n, bool *rel, int64_t *us)
{
    char *s;
    if (!fr_cfg_get_str(c, n, "window start", &s))
        return false;
    bool ok;
    if (s[0] == '-' || s[0] == '+') {
        *rel = true;
        ok = fr_duration_parse(s, us);
    } else {
        *rel = false;
        ok = fr_parse_timestamp(s, strlen(s), us);
    }
    free(s);
    return ok ||
           fr_cfg_fail(c, n, "window start must be ISO-8601 (2024-01-01T00:00:00Z) or relative to now (-720h, -30d)");
}

static bool parse_window(struct fr_cfg *c, const yaml_node_t *n, struct fr_http_window *w, const char *what)
{
    yaml_node_t *v;
    char ww[128];
    snprintf(ww, sizeof(ww), "window of %s", what);
    if (!fr_cfg_check_map(c, n, ww, win_keys))
        return false;
    w->enabled = true;
    if (!(v = fr_cfg_map_get(c, n, "start")))
        return fr_cfg_fail(c, n, "%s needs start: ISO-8601 or relative to now like -720h", ww);
    if (!get_time(c, v, &w->start_relative, &w->start_us))
        return false;
    if (!(v = fr_cfg_map_get(c, n, "step")))
        return fr_cfg_fail(c, n, "%s needs step: the window length, e.g. 1d", ww);
    if (!get_duration(c, v, "window step", &w->step_us))
        return false;
    if (w->step_us < 1000000)
        return fr_cfg_fail(c, v, "window step must be at least 1s");
    w->align_us = 1000000;
    if ((v = fr_cfg_map_get(c, n, "align"))) {
        if (!get_duration(c, v, "window align", &w->align_us))
            return false;
        if (w->align_us < 1000000)
            return fr_cfg_fail(c, v, "window align must be at least 1s");
    }
    if ((v = fr_cfg_map_get(c, n, "start_param")) && !fr_cfg_get_str(c, v, "start_param", &w->start_param))
        return false;
    if ((v = fr_cfg_map_get(c, n, "end_param")) && !fr_cfg_get_str(c, v, "end_param", &w->end_param))
        return false;
    if ((v = fr_cfg_map_get(c, n, "format"))) {
        const char *f = fr_cfg_scalar_of(v);
        if (f && strcmp(f, "epoch_ms") == 0)
            w->format = FR_WIN_EPOCH_MS;
        else if (f && strcmp(f, "epoch_s") == 0)
            w->format = FR_WIN_EPOCH_S;
        else if (f && strcmp(f, "iso") == 0)
            w->format = FR_WIN_ISO;
        else
            return fr_cfg_fail(c, v, "format of %s must be epoch_ms, epoch_s or iso", ww);
    }
    return true;
}

bool fr_cfg_parse_http_source(struct fr_cfg *c, struct fr_pipeline *p, struct fr_source *s, const yaml_node_t *n)
{
    char what[96];
    yaml_node_t *v, *x;
    struct fr_http_source *h;
    const struct fr_dataset *ds = fr_pipeline_dataset(p, s->dataset);

    snprintf(what, sizeof(what), "source '%s'", s->name);
    if (!fr_cfg_check_map(c, n, what, http_keys))
        return false;
    h = s->http = fr_xcalloc(1, sizeof(*h));
    h->retry_max = 5;
    h->retry_base_ms = 500;
    h->retry_max_ms = 30000;
    h->connect_ms = 5000;
    h->total_ms = 30000;
    h->tls_verify = true;
    h->max_bytes = FR_HTTP_DEFAULT_MAX_BYTES;

    /* fan_out and window first: the templates below are checked against them */
    if ((v = fr_cfg_map_get(c, n, "fan_out")) && !parse_fan_out(c, v, p, s, &h->fan_out, what))
        return false;
    if ((v = fr_cfg_map_get(c, n, "window")) && !parse_window(c, v, &h->window, what))
        return false;

    if (!(v = fr_cfg_map_get(c, n, "url")))
        return fr_cfg_fail(c, n, "%s has no url; add url: \"https://host/path\"", what);
    if (!fr_cfg_get_str(c, v, "url", &h->url))
        return false;
    if (strncmp(h->url, "http://", 7) != 0 && strncmp(h->url, "https://", 8) != 0)
        return fr_cfg_fail(c, v, "url of %s must start with http:// or https://", what);
    if (!check_template(c, v, "url", h->url, p, h))
        return false;
    if ((v = fr_cfg_map_get(c, n, "headers"))) {
        if (!parse_kvs(c, v, "headers", &h->headers, &h->n_headers))
            return false;
        for (size_t i = 0; i < h->n_headers; i++)
            if (!check_template(c, v, "headers", h->headers[i].value, p, h))
                return false;
    }
    if ((v = fr_cfg_map_get(c, n, "query"))) {
        if (!parse_kvs(c, v, "query", &h->query, &h->n_query))
            return false;
        for (size_t i = 0; i < h->n_query; i++)
            if (!check_template(c, v, "query", h->query[i].value, p, h))
                return false;
    }
    if (!(v = fr_cfg_map_get(c, n, "records")))
        return fr_cfg_fail(c, n, "%s has no records; add records: $.items (or $ when the body is the array)", what);
    if (!get_path(c, v, "records", &h->records))
        return false;
    if (!(v = fr_cfg_map_get(c, n, "fields")))
        return fr_cfg_fail(c, n, "%s has no fields; map each column to a JSON path, e.g. id: $.id", what);
    if (!parse_fields(c, v, ds, h, what))
        return false;
    /* value templates were checked without the pipeline (parent columns): recheck */
    for (size_t i = 0; i < h->n_fields; i++)
        if (h->fields[i].value && !check_template(c, v, "fields", h->fields[i].value, p, h))
            return false;
    for (size_t i = 0; i < ds->n_columns; i++)
        if (ds->columns[i].required) {
            bool have = false;
            for (size_t k = 0; k < h->n_fields; k++)
                have = have || strcmp(h->fields[k].column, ds->columns[i].name) == 0;
            if (!have)
                return fr_cfg_fail(c, v, "fields of %s lack required column '%s' of dataset '%s'; add it", what,
                                   ds->columns[i].name, ds->name);
        }
    if ((v = fr_cfg_map_get(c, n, "schedule"))) {
        char *str, serr[FR_ERR_LEN];
        if (!fr_cfg_get_str(c, v, "schedule", &str))
            return false;
        bool ok = fr_sched_parse(str, &h->schedule, serr);
        free(str);
        if (!ok)
            return fr_cfg_fail(c, v, "%s", serr);
    } else {
        h->schedule.kind = FR_SCHED_MANUAL;
    }
    if ((v = fr_cfg_map_get(c, n, "paginate")) && !parse_paginate(c, v, &h->paginate, what))
        return false;
    if ((v = fr_cfg_map_get(c, n, "rate_limit"))) {
        if (!fr_cfg_check_map(c, v, "rate_limit", rate_keys))
            return false;
        if ((x = fr_cfg_map_get(c, v, "per_minute")) &&
            !fr_cfg_get_u32(c, x, "per_minute", 1, 1000000, &h->per_minute))
            return false;
        if ((x = fr_cfg_map_get(c, v, "remaining_header")) &&
            !fr_cfg_get_str(c, x, "remaining_header", &h->remaining_header))
            return false;
        if ((x = fr_cfg_map_get(c, v, "reset_header")) && !fr_cfg_get_str(c, x, "reset_header", &h->reset_header))
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "retry"))) {
        if (!fr_cfg_check_map(c, v, "retry", retry_keys))
            return false;
        if ((x = fr_cfg_map_get(c, v, "max")) && !fr_cfg_get_u32(c, x, "retry max", 0, 100, &h->retry_max))
            return false;
        if ((x = fr_cfg_map_get(c, v, "base_ms")) &&
            !fr_cfg_get_u32(c, x, "retry base_ms", 1, 600000, &h->retry_base_ms))
            return false;
        if ((x = fr_cfg_map_get(c, v, "max_ms")) &&
            !fr_cfg_get_u32(c, x, "retry max_ms", 1, 3600000, &h->retry_max_ms))
            return false;
        if (h->retry_max_ms < h->retry_base_ms)
            return fr_cfg_fail(c, v, "retry max_ms is below base_ms; raise max_ms");
    }
    if ((v = fr_cfg_map_get(c, n, "timeout"))) {
        if (!fr_cfg_check_map(c, v, "timeout", timeout_keys))
            return false;
        if ((x = fr_cfg_map_get(c, v, "connect_ms")) &&
            !fr_cfg_get_u32(c, x, "timeout connect_ms", 10, 600000, &h->connect_ms))
            return false;
        if ((x = fr_cfg_map_get(c, v, "total_ms")) &&
            !fr_cfg_get_u32(c, x, "timeout total_ms", 10, 3600000, &h->total_ms))
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "tls_verify")) && !fr_cfg_get_bool(c, v, "tls_verify", &h->tls_verify))
        return false;
    if ((v = fr_cfg_map_get(c, n, "max_bytes")) &&
        !fr_cfg_get_u32(c, v, "max_bytes", 1024, FR_HTTP_DEFAULT_MAX_BYTES * 4u, &h->max_bytes))
        return false;
    if ((v = fr_cfg_map_get(c, n, "batch"))) {
        if (!fr_cfg_check_map(c, v, "batch", batch_keys))
            return false;
        if ((x = fr_cfg_map_get(c, v, "rows")) && !fr_cfg_get_u32(c, x, "batch rows", 1, 10000000, &s->batch_rows))
            return false;
        if ((x = fr_cfg_map_get(c, v, "bytes")) &&
            !fr_cfg_get_u32(c, x, "batch bytes", 1024, FR_SOURCE_MAX_BATCH_BYTES, &s->batch_bytes))
            return false;
    }
    return true;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

int64_t fr_sched_next(const struct fr_sched *s, int64_t after_us)
{
    const int64_t min_us = 60 * 1000000LL, hour_us = 60 * min_us, day_us = 24 * hour_us;

    if (s->kind == FR_SCHED_MANUAL)
        return INT64_MAX;
    if (s->kind == FR_SCHED_EVERY)
        return after_us + (int64_t)s->every_ms * 1000;
    /* next whole minute strictly after */
    int64_t t = (after_us >= 0 ? after_us / min_us : (after_us - min_us + 1) / min_us) * min_us + min_us;
    int64_t limit = t + 5 * 366 * day_us;
    while (t < limit) {
        int64_t days = t >= 0 ? t / day_us : (t - day_us + 1) / day_us;
        int64_t in_day = t - days * day_us;
        int y;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        if (!(s->month & (1u << m))) {
            /* first day of the next month */
            unsigned nm = m == 12 ? 1 : m + 1;
            int ny = m == 12 ? y + 1 : y;
            t = fr_days_from_civil(ny, nm, 1) * day_us;
            continue;
        }
        unsigned dow = (unsigned)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday (4) */
        bool dom_ok = (s->dom >> d) & 1u, dow_ok = (s->dow >> dow) & 1u;
        bool day_ok = (s->dom_star || s->dow_star) ? (dom_ok && dow_ok) : (dom_ok || dow_ok);
        if (!day_ok) {
            t = (days + 1) * day_us;
            continue;
        }
        unsigned hour = (unsigned)(in_day / hour_us), minute = (unsigned)((in_day % hour_us) / min_us);
        if (!((s->hour >> hour) & 1u)) {
            t = days * day_us + (int64_t)(hour + 1) * hour_us;
            continue;
        }
        if (!((s->minute >> minute) & 1ull)) {
            t += min_us;
            continue;
        }
        return t;
    }
    return INT64_MAX;
}

static void free_kvs(struct fr_http_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
}

void fr_http_source_free(struct fr_http_source *h)
{
    if (!h)
        return;
    free(h->url);
    free_kvs(h->headers, h->n_headers);
    free_kvs(h->query, h->n_query);
    fr_jpath_free(h->records);
    for (size_t i = 0; i < h->n_fields; i++) {
        free(h->fields[i].column);
        fr_jpath_free(h->fields[i].path);
        free(h->fields[i].value);
    }
    free(h->fields);
    free(h->paginate.param);
    free(h->paginate.size_param);
    fr_jpath_free(h->paginate.cursor_path);
    fr_jpath_free(h->paginate.next_path);
    free(h->fan_out.source);
    free(h->fan_out.var);
    fr_cfg_free_strv(h->fan_out.values, h->fan_out.n_values);
    free(h->window.start_param);
    free(h->window.end_param);
    free(h->remaining_header);
    free(h->reset_header);
    free(h);
}
