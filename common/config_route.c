/* config_route: parses `routes:` (docs/routes.md). Every error names
 * file:line:col and the fix; the api compiles the result into its table. */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "config_route.h"

#define fail        fr_cfg_fail
#define MAX_ROUTES  256
#define MAX_PARAMS  32
#define MAX_SQL_LEN (1u << 20)

int fr_route_param_index(const struct fr_route *r, const char *name)
{
    for (size_t i = 0; i < r->n_params; i++)
        if (strcmp(r->params[i].name, name) == 0)
            return (int)i;
    return -1;
}

void fr_routes_free(struct fr_route *r, size_t n)
{
    if (!r)
        return;
    for (size_t i = 0; i < n; i++) {
        struct fr_route *x = &r[i];
        free(x->name);
        free(x->method);
        free(x->path);
        free(x->summary);
        free(x->role);
        free(x->role_write);
        fr_cfg_free_strv(x->segs, x->n_segs);
        for (size_t j = 0; j < x->n_params; j++) {
            struct fr_route_param *p = &x->params[j];
            free(p->name);
            free(p->def);
            free(p->pattern);
            fr_cfg_free_strv(p->allowed, p->n_allowed);
            free(p->suffix);
        }
        free(x->params);
        for (size_t j = 0; j < x->n_checks; j++)
            free(x->checks[j].msg);
        free(x->checks);
        free(x->sql);
        free(x->args);
        free(x->exists);
        free(x->exists_args);
        free(x->cache);
        free(x->key_param);
        free(x->field_param);
        free(x->body_keys);
        free(x->body_fields);
        fr_cfg_free_strv(x->csv_header, x->n_csv_header);
        free(x->dataset);
        free(x->not_found);
    }
    free(r);
}

static const char *const route_keys[] = {"name",   "method",  "path",   "summary", "role", "params",
                                         "checks", "handler", "output", "max_age", NULL};
static const char *const param_keys[] = {"in",    "type",       "required",   "default", "min",
                                         "max",   "min_length", "max_length", "pattern", "allowed",
                                         "upper", "lower",      "suffix",     NULL};
static const char *const handler_keys[] = {"sql",         "query",  "args",        "exists",
                                           "exists_args", "static", "cache_field", "cache_hash",
                                           "cache_multi", "push",   "crud",        NULL};
static const char *const output_keys[] = {"shape",       "formats", "not_found", "csv_header",
                                          "csv_newline", "csv_raw", NULL};
static const char *const cache_keys[] = {"cache", "key", "field", "keys", "fields", NULL};
static const char *const push_keys[] = {"dataset", "min_rows", "max_rows", "partial", NULL};

static bool get_i64(struct fr_cfg *c, const yaml_node_t *n, const char *what, int64_t *out)
{
    char *s;
    if (!fr_cfg_get_str(c, n, what, &s))
        return false;
    bool ok = fr_parse_i64(s, strlen(s), out);
    if (!ok)
        fail(c, n, "%s must be a whole number, not '%.40s'", what, s);
    free(s);
    return ok;
}

static bool parse_param(struct fr_cfg *c, struct fr_route *r, const char *name, const yaml_node_t *n,
                        struct fr_route_param *p)
{
    char what[160];
    snprintf(what, sizeof(what), "parameter '%s' of route '%s'", name, r->name);
    p->name = fr_xstrdup(name);
    p->type = FR_T_TEXT;
    p->in = FR_PARAM_QUERY;
    if (!fr_cfg_check_map(c, n, what, param_keys))
        return false;
    yaml_node_t *v;
    char *s;
    if ((v = fr_cfg_map_get(c, n, "in"))) {
        if (!fr_cfg_get_str(c, v, "in", &s))
            return false;
        bool ok = true;
        if (strcmp(s, "path") == 0)
            p->in = FR_PARAM_PATH;
        else if (strcmp(s, "query") != 0)
            ok = fail(c, v, "in of %s must be path or query, not '%.20s'", what, s);
        free(s);
        if (!ok)
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "type"))) {
        if (!fr_cfg_get_str(c, v, "type", &s))
            return false;
        bool ok = fr_type_parse(s, &p->type) && p->type != FR_T_JSON;
        if (!ok)
            fail(c, v, "type of %s must be text, int, bigint, float, numeric, bool, date or timestamptz, not '%.20s'",
                 what, s);
        free(s);
        if (!ok)
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "required")) && !fr_cfg_get_bool(c, v, "required", &p->required))
        return false;
    if (p->in == FR_PARAM_PATH)
        p->required = true;
    if ((v = fr_cfg_map_get(c, n, "default")) && !fr_cfg_get_str(c, v, "default", &p->def))
        return false;
    bool is_int = p->type == FR_T_INT || p->type == FR_T_BIGINT;
    if ((v = fr_cfg_map_get(c, n, "min"))) {
        if (!is_int)
            return fail(c, v, "min applies to int and bigint parameters; remove it from %s", what);
        if (!get_i64(c, v, "min", &p->min))
            return false;
        p->has_min = true;
    }
    if ((v = fr_cfg_map_get(c, n, "max"))) {
        if (!is_int)
            return fail(c, v, "max applies to int and bigint parameters; remove it from %s", what);
        if (!get_i64(c, v, "max", &p->max))
            return false;
        p->has_max = true;
    }
    if (p->has_min && p->has_max && p->min > p->max)
        return fail(c, n, "min is above max in %s; swap them", what);
    static const char *const text_only[] = {"min_length", "max_length", "pattern", "allowed",
                                            "upper",      "lower",      "suffix"};
    if (p->type != FR_T_TEXT)
        for (size_t i = 0; i < FR_ARRAY_LEN(text_only); i++)
            if ((v = fr_cfg_map_get(c, n, text_only[i])))
                return fail(c, v, "%s applies to text parameters; remove it from %s", text_only[i], what);
    if ((v = fr_cfg_map_get(c, n, "min_length")) && !fr_cfg_get_u32(c, v, "min_length", 0, 4096, &p->min_length))
        return false;
    p->max_length = 256;
    if ((v = fr_cfg_map_get(c, n, "max_length")) && !fr_cfg_get_u32(c, v, "max_length", 1, 4096, &p->max_length))
        return false;
    if ((v = fr_cfg_map_get(c, n, "pattern"))) {
        if (!fr_cfg_get_str(c, v, "pattern", &p->pattern))
            return false;
        regex_t re;
        if (regcomp(&re, p->pattern, REG_EXTENDED | REG_NOSUB) != 0)
            return fail(c, v, "pattern of %s is not a valid POSIX extended regex", what);
        regfree(&re);
    }
    if ((v = fr_cfg_map_get(c, n, "allowed")) &&
        !fr_cfg_get_str_list(c, v, "allowed", false, &p->allowed, &p->n_allowed))
        return false;
    if ((v = fr_cfg_map_get(c, n, "upper")) && !fr_cfg_get_bool(c, v, "upper", &p->upper))
        return false;
    if ((v = fr_cfg_map_get(c, n, "lower")) && !fr_cfg_get_bool(c, v, "lower", &p->lower))
        return false;
    if ((v = fr_cfg_map_get(c, n, "suffix")) && !fr_cfg_get_str(c, v, "suffix", &p->suffix))
        return false;
    return true;
}

/* A list of parameter names -> indexes. */
static bool parse_args(struct fr_cfg *c, struct fr_route *r, const yaml_node_t *n, const char *what, int **out,
                       size_t *count)
{
    char **names;
    size_t k;
    if (!fr_cfg_get_str_list(c, n, what, true, &names, &k))
        return false;
    *out = fr_xcalloc(k ? k : 1, sizeof(int));
    *count = k;
    bool ok = true;
    for (size_t i = 0; ok && i < k; i++) {
        int idx = fr_route_param_index(r, names[i]);
        if (idx < 0)
            ok = fail(c, n,
                      "%s of route '%s' names '%s', which is not one of its params; declare it under params:", what,
                      r->name, names[i]);
        else
            (*out)[i] = idx;
    }
    fr_cfg_free_strv(names, k);
    return ok;
}

static bool read_sql(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *v, const char *what, char **out)
{
    char *rel;
    if (!fr_cfg_get_str(c, v, "sql", &rel))
        return false;
    char *path = rel[0] == '/' ? fr_xstrdup(rel) : fr_xasprintf("%s/%s", p->dir, rel);
    free(rel);
    char ferr[FR_ERR_LEN];
    size_t len;
    *out = fr_read_file(path, MAX_SQL_LEN, &len, ferr);
    bool ok = *out != NULL;
    if (!ok)
        fail(c, v, "cannot read the SQL of %s (%.120s); check the path, relative to %.60s", what, ferr, p->dir);
    else if (strlen(*out) != len)
        ok = fail(c, v, "SQL file of %s contains a NUL byte; save it as text", what);
    free(path);
    return ok;
}

static bool parse_cache_handler(struct fr_cfg *c, struct fr_pipeline *p, struct fr_route *r, const yaml_node_t *v,
                                const char *what)
{
    if (!fr_cfg_check_map(c, v, what, cache_keys))
        return false;
    yaml_node_t *w;
    if (!(w = fr_cfg_map_get(c, v, "cache")))
        return fail(c, v, "%s has no cache; add cache: <a cache of the pipeline>", what);
    if (!fr_cfg_get_ident(c, w, "cache", &r->cache))
        return false;
    const struct fr_cache *k = fr_pipeline_cache(p, r->cache);
    if (!k)
        return fail(c, w, "%s reads unknown cache '%s'; define it under caches:", what, r->cache);
    if (k->kind != FR_CACHE_HASH)
        return fail(c, w, "%s needs a hash cache; '%s' is json", what, r->cache);
    if (r->handler == FR_RH_CACHE_MULTI) {
        /* the body: {"<keys>": [...], "<fields>": [...]} */
        static const char *const not_multi[] = {"key", "field"};
        for (size_t i = 0; i < FR_ARRAY_LEN(not_multi); i++)
            if ((w = fr_cfg_map_get(c, v, not_multi[i])))
                return fail(c, w,
                            "%s of %s names a param; cache_multi reads its body: use keys: and fields:", not_multi[i],
                            what);
        if ((w = fr_cfg_map_get(c, v, "keys")) ? !fr_cfg_get_ident(c, w, "keys", &r->body_keys) : false)
            return false;
        if ((w = fr_cfg_map_get(c, v, "fields")) ? !fr_cfg_get_ident(c, w, "fields", &r->body_fields) : false)
            return false;
        if (!r->body_keys)
            r->body_keys = fr_xasprintf("%ss", k->key_column);
        if (!r->body_fields)
            r->body_fields = fr_xstrdup("attribute_names");
        if (strcmp(r->body_keys, r->body_fields) == 0)
            return fail(c, v, "keys and fields of %s are both '%s'; name two body members", what, r->body_keys);
        return true;
    }
    static const char *const multi_only[] = {"keys", "fields"};
    for (size_t i = 0; i < FR_ARRAY_LEN(multi_only); i++)
        if ((w = fr_cfg_map_get(c, v, multi_only[i])))
            return fail(c, w, "%s applies to cache_multi; use key: (and field:) naming params in %s", multi_only[i],
                        what);
    if ((w = fr_cfg_map_get(c, v, "key"))) {
        if (!fr_cfg_get_ident(c, w, "key", &r->key_param))
            return false;
        if (fr_route_param_index(r, r->key_param) < 0)
            return fail(c, w, "key '%s' of %s is not one of the route's params", r->key_param, what);
    } else {
        return fail(c, v, "%s has no key; add key: <the param holding the cache key>", what);
    }
    if ((w = fr_cfg_map_get(c, v, "field"))) {
        if (!fr_cfg_get_ident(c, w, "field", &r->field_param))
            return false;
        if (fr_route_param_index(r, r->field_param) < 0)
            return fail(c, w, "field '%s' of %s is not one of the route's params", r->field_param, what);
        if (r->handler != FR_RH_CACHE_FIELD)
            return fail(c, w, "field applies to cache_field; remove it from %s", what);
    } else if (r->handler == FR_RH_CACHE_FIELD) {
        return fail(c, v, "%s has no field; add field: <the param naming the field>", what);
    }
    return true;
}

static bool parse_handler(struct fr_cfg *c, struct fr_pipeline *p, struct fr_route *r, const yaml_node_t *n)
{
    char what[160];
    snprintf(what, sizeof(what), "handler of route '%s'", r->name);
    if (!fr_cfg_check_map(c, n, what, handler_keys))
        return false;
    static const char *const kinds[] = {"sql",        "query",       "static", "cache_field",
                                        "cache_hash", "cache_multi", "push",   "crud"};
    const char *kind = NULL;
    yaml_node_t *v = NULL;
    for (size_t i = 0; i < FR_ARRAY_LEN(kinds); i++) {
        yaml_node_t *w = fr_cfg_map_get(c, n, kinds[i]);
        if (!w)
            continue;
        if (kind)
            return fail(c, w, "%s has both %s and %s; keep one", what, kind, kinds[i]);
        kind = kinds[i];
        v = w;
    }
    if (!kind)
        return fail(
            c, n,
            "%s has no handler; add sql:, query:, static:, cache_field:, cache_hash:, cache_multi: or push:", what);
    yaml_node_t *w;
    if (strcmp(kind, "sql") == 0 || strcmp(kind, "query") == 0) {
        r->handler = FR_RH_SQL;
        if (kind[0] == 's' ? !read_sql(c, p, v, what, &r->sql) : !fr_cfg_get_str(c, v, "query", &r->sql))
            return false;
        if ((w = fr_cfg_map_get(c, n, "args")) && !parse_args(c, r, w, "args", &r->args, &r->n_args))
            return false;
        if ((w = fr_cfg_map_get(c, n, "exists")) && !fr_cfg_get_str(c, w, "exists", &r->exists))
            return false;
        if ((w = fr_cfg_map_get(c, n, "exists_args")) &&
            !parse_args(c, r, w, "exists_args", &r->exists_args, &r->n_exists_args))
            return false;
        return true;
    }
    static const char *const sql_only[] = {"args", "exists", "exists_args"};
    for (size_t i = 0; i < FR_ARRAY_LEN(sql_only); i++)
        if ((w = fr_cfg_map_get(c, n, sql_only[i])))
            return fail(c, w, "%s applies to sql handlers; remove it from %s", sql_only[i], what);
    if (strcmp(kind, "static") == 0) {
        r->handler = FR_RH_STATIC;
        return fr_cfg_get_str(c, v, "static", &r->sql);
    }
    if (strcmp(kind, "crud") == 0) {
        static const char *const crud_keys[] = {"dataset", NULL};
        r->handler = FR_RH_CRUD;
        if (!fr_cfg_check_map(c, v, what, crud_keys))
            return false;
        if (!(w = fr_cfg_map_get(c, v, "dataset")))
            return fail(c, v, "crud of route '%s' has no dataset; add dataset: <a keyed dataset>", r->name);
        if (!fr_cfg_get_ident(c, w, "dataset", &r->dataset))
            return false;
        const struct fr_dataset *d = fr_pipeline_dataset(p, r->dataset);
        if (!d || d->n_key != 1)
            return fail(c, w, "crud of route '%s' needs a dataset with a one-column key; '%s' is not one", r->name,
                        r->dataset);
        if (r->n_params)
            return fail(c, n, "crud route '%s' takes no params: its id, limit and offset are built in", r->name);
        return true;
    }
    if (strcmp(kind, "push") == 0) {
        r->handler = FR_RH_PUSH;
        if (!fr_cfg_check_map(c, v, what, push_keys))
            return false;
        if (!(w = fr_cfg_map_get(c, v, "dataset")))
            return fail(c, v, "push of route '%s' has no dataset; add dataset: <dataset name>", r->name);
        if (!fr_cfg_get_ident(c, w, "dataset", &r->dataset))
            return false;
        if (!fr_pipeline_dataset(p, r->dataset))
            return fail(c, w, "push of route '%s' writes unknown dataset '%s'", r->name, r->dataset);
        r->min_rows = 1;
        r->max_rows = 1000;
        if ((w = fr_cfg_map_get(c, v, "min_rows")) && !fr_cfg_get_u32(c, w, "min_rows", 1, 100000, &r->min_rows))
            return false;
        if ((w = fr_cfg_map_get(c, v, "max_rows")) && !fr_cfg_get_u32(c, w, "max_rows", 1, 100000, &r->max_rows))
            return false;
        if (r->min_rows > r->max_rows)
            return fail(c, v, "min_rows is above max_rows in route '%s'", r->name);
        if ((w = fr_cfg_map_get(c, v, "partial")) && !fr_cfg_get_bool(c, w, "partial", &r->partial))
            return false;
        return true;
    }
    r->handler = strcmp(kind, "cache_field") == 0  ? FR_RH_CACHE_FIELD
                 : strcmp(kind, "cache_hash") == 0 ? FR_RH_CACHE_HASH
                                                   : FR_RH_CACHE_MULTI;
    return parse_cache_handler(c, p, r, v, what);
}

/* CSV column labels: one per result column, in order, each once (the
 * query's column count is checked when the route answers). */
static bool parse_csv_header(struct fr_cfg *c, struct fr_route *r, const yaml_node_t *v, const char *what)
{
    if (r->handler != FR_RH_SQL || !r->csv)
        return fail(c, v, "csv_header applies to sql routes with csv in formats; remove it from %s", what);
    if (!fr_cfg_get_str_list(c, v, "csv_header", false, &r->csv_header, &r->n_csv_header))
        return false;
    if (r->n_csv_header == 0)
        return fail(c, v, "csv_header of %s is empty; list one label per column", what);
    if (r->n_csv_header > 256)
        return fail(c, v, "csv_header of %s has more than 256 labels", what);
    for (size_t i = 0; i < r->n_csv_header; i++) {
        const char *l = r->csv_header[i];
        size_t len = strlen(l);
        if (len == 0 || len > 256)
            return fail(c, v, "label %zu of csv_header of %s must be 1 to 256 bytes", i + 1, what);
        for (size_t k = 0; k < len; k++)
            if ((unsigned char)l[k] < 0x20 || l[k] == 0x7f)
                return fail(c, v, "label '%.40s' of csv_header of %s has a control character; remove it", l, what);
        if (!fr_utf8_valid(l, len))
            return fail(c, v, "label %zu of csv_header of %s is not valid UTF-8", i + 1, what);
    }
    return true;
}

static bool parse_output(struct fr_cfg *c, struct fr_route *r, const yaml_node_t *n)
{
    char what[160];
    snprintf(what, sizeof(what), "output of route '%s'", r->name);
    if (!fr_cfg_check_map(c, n, what, output_keys))
        return false;
    yaml_node_t *v;
    char *s;
    if ((v = fr_cfg_map_get(c, n, "shape"))) {
        if (!fr_cfg_get_str(c, v, "shape", &s))
            return false;
        bool ok = true;
        if (strcmp(s, "list") == 0)
            r->shape = FR_SHAPE_LIST;
        else if (strcmp(s, "one") == 0)
            r->shape = FR_SHAPE_ONE;
        else if (strcmp(s, "envelope") == 0)
            r->shape = FR_SHAPE_ENVELOPE;
        else if (strcmp(s, "value") == 0)
            r->shape = FR_SHAPE_VALUE;
        else
            ok = fail(c, v, "unknown shape '%.20s' in %s; use list, one, envelope or value", s, what);
        free(s);
        if (!ok)
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "formats"))) {
        char **f;
        size_t k;
        if (!fr_cfg_get_str_list(c, v, "formats", false, &f, &k))
            return false;
        r->json = r->csv = false;
        bool ok = k > 0 || fail(c, v, "formats of %s is empty; list json and/or csv", what);
        for (size_t i = 0; ok && i < k; i++) {
            if (strcmp(f[i], "json") == 0)
                r->json = true;
            else if (strcmp(f[i], "csv") == 0)
                r->csv = true;
            else
                ok = fail(c, v, "unknown format '%.20s' in %s; use json or csv", f[i], what);
        }
        fr_cfg_free_strv(f, k);
        if (!ok)
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "not_found")) && !fr_cfg_get_str(c, v, "not_found", &r->not_found))
        return false;
    if ((v = fr_cfg_map_get(c, n, "csv_header")) && !parse_csv_header(c, r, v, what))
        return false;
    if ((v = fr_cfg_map_get(c, n, "csv_newline"))) {
        char *s2;
        if (!r->csv)
            return fail(c, v, "csv_newline applies to routes with csv in formats; add it or remove csv_newline");
        if (!fr_cfg_get_str(c, v, "csv_newline", &s2))
            return false;
        bool ok = true;
        if (strcmp(s2, "lf") == 0)
            r->csv_lf = true;
        else if (strcmp(s2, "crlf") != 0)
            ok = fail(c, v, "csv_newline of %s must be crlf or lf, not '%.20s'", what, s2);
        free(s2);
        if (!ok)
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "csv_raw"))) {
        if (!r->csv)
            return fail(c, v, "csv_raw applies to routes with csv in formats; add it or remove csv_raw");
        if (!fr_cfg_get_bool(c, v, "csv_raw", &r->csv_raw))
            return false;
    }
    return true;
}

#define MAX_AGE_LIMIT_S (3650u * 86400u)

/* max_age: seconds, or a number with s, m, h or d (15m); 1s..3650d. */
static bool parse_max_age(struct fr_cfg *c, struct fr_route *r, const yaml_node_t *v)
{
    char *s = NULL;
    if (!fr_cfg_get_str(c, v, "max_age", &s))
        return false;
    size_t n = strlen(s);
    uint64_t unit = 1;
    if (n > 1 && strchr("smhd", s[n - 1])) {
        unit = s[n - 1] == 's' ? 1 : s[n - 1] == 'm' ? 60 : s[n - 1] == 'h' ? 3600 : 86400;
        n--;
    }
    int64_t num;
    bool ok = n > 0 && isdigit((unsigned char)s[0]) && fr_parse_i64(s, n, &num) && num >= 1 &&
              (uint64_t)num <= MAX_AGE_LIMIT_S / unit;
    if (ok)
        r->max_age_s = (uint32_t)((uint64_t)num * unit);
    else
        fail(c, v,
             "max_age of route '%s' must be seconds or a number with s, m, h or d (15m), 1s..3650d, not '%.40s'",
             r->name, s);
    free(s);
    return ok;
}

static bool split_path(struct fr_cfg *c, struct fr_route *r, const yaml_node_t *n)
{
    const char *s = r->path;
    if (s[0] != '/' || strlen(s) > 512)
        return fail(c, n, "path of route '%s' must start with '/' (and be under 512 bytes)", r->name);
    size_t cap = 8;
    r->segs = fr_xcalloc(cap, sizeof(char *));
    while (*s == '/') {
        s++;
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 && e)
            return fail(c, n, "path of route '%s' has an empty segment ('//'); remove it", r->name);
        if (r->n_segs == cap) {
            cap *= 2;
            r->segs = fr_xrealloc(r->segs, cap * sizeof(char *));
        }
        r->segs[r->n_segs++] = fr_xstrndup(s, len);
        s += len;
    }
    for (size_t i = 0; i < r->n_segs; i++) {
        const char *g = r->segs[i];
        size_t len = strlen(g);
        if (len > 0 && g[0] == '{') {
            char name[64];
            if (g[len - 1] != '}' || len - 2 >= sizeof(name) || len < 3)
                return fail(c, n, "path segment '%.40s' of route '%s' must be {name}", g, r->name);
            memcpy(name, g + 1, len - 2);
            name[len - 2] = '\0';
            int k = fr_route_param_index(r, name);
            if (k < 0 || r->params[k].in != FR_PARAM_PATH)
                return fail(c, n,
                            "path parameter '{%s}' of route '%s' is not declared; add %s: {in: path, type: ...}",
                            name, r->name, name);
        } else if (strchr(g, '{') || strchr(g, '}')) {
            return fail(c, n, "path segment '%.40s' of route '%s' mixes text and a parameter; use a whole segment", g,
                        r->name);
        }
    }
    for (size_t k = 0; k < r->n_params; k++) {
        if (r->params[k].in != FR_PARAM_PATH)
            continue;
        char want[80];
        snprintf(want, sizeof(want), "{%s}", r->params[k].name);
        bool found = false;
        for (size_t i = 0; i < r->n_segs; i++)
            found = found || strcmp(r->segs[i], want) == 0;
        if (!found)
            return fail(c, n, "parameter '%s' of route '%s' is in: path but the path has no {%s}", r->params[k].name,
                        r->name, r->params[k].name);
    }
    return true;
}

/* role: <read|write|admin>, or (crud) {read: <role>, write: <role>}. */
static bool role_value(struct fr_cfg *c, const struct fr_route *r, yaml_node_t *v, const char *what, char **out)
{
    if (!fr_cfg_get_str(c, v, what, out))
        return false;
    if (strcmp(*out, "read") && strcmp(*out, "write") && strcmp(*out, "admin"))
        return fail(c, v, "%s of route '%s' must be read, write or admin", what, r->name);
    return true;
}

static bool parse_role(struct fr_cfg *c, struct fr_route *r, yaml_node_t *v)
{
    if (!v) {
        r->role = fr_xstrdup(strcmp(r->method, "GET") == 0 ? "read" : "write");
        return true;
    }
    if (v->type != YAML_MAPPING_NODE)
        return role_value(c, r, v, "role", &r->role);
    static const char *const keys[] = {"read", "write", NULL};
    if (!fr_cfg_check_map(c, v, "role", keys))
        return false;
    yaml_node_t *rd = fr_cfg_map_get(c, v, "read"), *wr = fr_cfg_map_get(c, v, "write");
    if (rd && !role_value(c, r, rd, "role.read", &r->role))
        return false;
    if (wr && !role_value(c, r, wr, "role.write", &r->role_write))
        return false;
    if (!r->role)
        r->role = fr_xstrdup("read");
    if (!r->role_write)
        r->role_write = fr_xstrdup("write");
    return true;
}

static bool parse_route(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *n, struct fr_route *r, size_t pos)
{
    char what[96];
    snprintf(what, sizeof(what), "route %zu", pos + 1);
    if (!fr_cfg_check_map(c, n, what, route_keys))
        return false;
    yaml_node_t *v;
    if (!(v = fr_cfg_map_get(c, n, "name")))
        return fail(c, n, "%s has no name; add name: <a-z_ identifier>", what);
    if (!fr_cfg_get_ident(c, v, "route name", &r->name))
        return false;
    if ((v = fr_cfg_map_get(c, n, "method"))) {
        if (!fr_cfg_get_str(c, v, "method", &r->method))
            return false;
        static const char *const ms[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
        bool ok = false;
        for (size_t i = 0; i < FR_ARRAY_LEN(ms); i++)
            ok = ok || strcmp(r->method, ms[i]) == 0;
        if (!ok)
            return fail(c, v, "method of route '%s' must be GET, POST, PUT, PATCH or DELETE", r->name);
    } else {
        r->method = fr_xstrdup("GET");
    }
    if ((v = fr_cfg_map_get(c, n, "summary")) && !fr_cfg_get_str(c, v, "summary", &r->summary))
        return false;
    if ((v = fr_cfg_map_get(c, n, "max_age")) && !parse_max_age(c, r, v))
        return false;
    yaml_node_t *role_node = fr_cfg_map_get(c, n, "role");
    if (!parse_role(c, r, role_node))
        return false;
    if ((v = fr_cfg_map_get(c, n, "params")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_check_named_map(c, v, "params"))
            return false;
        size_t k = fr_cfg_map_len(v);
        if (k > MAX_PARAMS)
            return fail(c, v, "route '%s' has more than %d params", r->name, MAX_PARAMS);
        r->params = fr_xcalloc(k ? k : 1, sizeof(*r->params));
        for (size_t i = 0; i < k; i++) {
            yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
            r->n_params++;
            if (!parse_param(c, r, fr_cfg_scalar_of(fr_cfg_node_at(c, pair->key)), fr_cfg_node_at(c, pair->value),
                             &r->params[i]))
                return false;
        }
    }
    if (!(v = fr_cfg_map_get(c, n, "path")))
        return fail(c, n, "route '%s' has no path; add path: /something/{param}", r->name);
    if (!fr_cfg_get_str(c, v, "path", &r->path) || !split_path(c, r, v))
        return false;
    if ((v = fr_cfg_map_get(c, n, "checks")) && !fr_cfg_is_null(v)) {
        if (v->type != YAML_SEQUENCE_NODE)
            return fail(c, v, "checks of route '%s' must be a list of {le: [a, b], msg: ...}", r->name);
        size_t k = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        r->checks = fr_xcalloc(k ? k : 1, sizeof(*r->checks));
        for (size_t i = 0; i < k; i++) {
            yaml_node_t *item = fr_cfg_node_at(c, v->data.sequence.items.start[i]);
            static const char *const ck[] = {"le", "msg", NULL};
            if (!fr_cfg_check_map(c, item, "a check", ck))
                return false;
            yaml_node_t *le = fr_cfg_map_get(c, item, "le");
            int *idx = NULL;
            size_t m = 0;
            if (!le)
                return fail(c, item, "check of route '%s' has no le: [a, b]", r->name);
            if (!parse_args(c, r, le, "le", &idx, &m))
                return free(idx), false;
            r->n_checks++;
            if (m != 2) {
                free(idx);
                return fail(c, le, "le of route '%s' needs exactly two params", r->name);
            }
            r->checks[i].a = idx[0];
            r->checks[i].b = idx[1];
            free(idx);
            yaml_node_t *msg = fr_cfg_map_get(c, item, "msg");
            if (msg ? !fr_cfg_get_str(c, msg, "msg", &r->checks[i].msg) : false)
                return false;
            if (!msg)
                r->checks[i].msg = fr_xasprintf("%s must not be after %s", r->params[r->checks[i].a].name,
                                                r->params[r->checks[i].b].name);
        }
    }
    r->json = true;
    if (!(v = fr_cfg_map_get(c, n, "handler")))
        return fail(c, n, "route '%s' has no handler; add handler: {query: SELECT ...} (see docs/routes.md)",
                    r->name);
    if (!parse_handler(c, p, r, v))
        return false;
    if ((v = fr_cfg_map_get(c, n, "output")) && !parse_output(c, r, v))
        return false;
    if (r->handler == FR_RH_CRUD) {
        /* one role covers every verb of the resource; {read, write} splits them */
        if (!r->role_write)
            r->role_write = fr_xstrdup(role_node ? r->role : "write");
        if (!role_node) {
            free(r->role);
            r->role = fr_xstrdup("read");
        }
    } else if (r->role_write) {
        return fail(c, role_node, "role of route '%s': {read: ..., write: ...} is for crud routes; give one role",
                    r->name);
    }
    return true;
}

bool fr_cfg_parse_routes(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, n, "routes must be a list; write each route as '- name: x' with path: and handler:");
    size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (k > MAX_ROUTES)
        return fail(c, n, "more than %d routes; split the pipeline", MAX_ROUTES);
    p->routes = fr_xcalloc(k ? k : 1, sizeof(*p->routes));
    for (size_t i = 0; i < k; i++) {
        yaml_node_t *item = fr_cfg_node_at(c, n->data.sequence.items.start[i]);
        p->n_routes++;
        if (!parse_route(c, p, item, &p->routes[i], i))
            return false;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(p->routes[j].name, p->routes[i].name) == 0)
                return fail(c, item, "route name '%s' is used twice; rename one", p->routes[i].name);
            if (strcmp(p->routes[j].path, p->routes[i].path) == 0 &&
                strcmp(p->routes[j].method, p->routes[i].method) == 0)
                return fail(c, item, "routes '%s' and '%s' both serve %s %s; remove one", p->routes[j].name,
                            p->routes[i].name, p->routes[i].method, p->routes[i].path);
        }
    }
    return true;
}
