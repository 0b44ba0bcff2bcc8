/* config: daemon settings (defaults < --config file < environment < flags)
 * and pipeline YAML files, parsed with libyaml's document API into immutable
 * structs. Every map is checked against a table of valid keys; every error
 * names "file:line:col: what is wrong; how to fix it". Owns nothing global. */
#include "config.h"
#include "config_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "log.h"

#define MAX_YAML_BYTES (4u << 20) /* a pipeline file */
#define MAX_SQL_BYTES  (1u << 20) /* a model's SQL file */
#define MAX_DEPTH      16         /* nesting of YAML collections */
#define MAX_IDENT      63         /* PostgreSQL identifier length */

#ifndef FR_VERSION /* set by CMakeLists.txt */
#define FR_VERSION "0.0.0"
#endif

/* ------------------------------------------------------------------- types */

static const char *const type_names[] = {"text", "int",         "bigint", "float", "numeric",
                                         "bool", "timestamptz", "date",   "json"};
static const char *const type_sqls[] = {"text",        "integer", "bigint", "double precision", "numeric", "boolean",
                                        "timestamptz", "date",    "jsonb"};
#define TYPE_LIST "text, int, bigint, float, numeric, bool, timestamptz, date, json"

const char *fr_type_name(enum fr_type t)
{
    return (unsigned)t < FR_ARRAY_LEN(type_names) ? type_names[t] : "?";
}

const char *fr_type_sql(enum fr_type t)
{
    return (unsigned)t < FR_ARRAY_LEN(type_sqls) ? type_sqls[t] : "text";
}

bool fr_type_parse(const char *s, enum fr_type *out)
{
    for (size_t i = 0; i < FR_ARRAY_LEN(type_names); i++) {
        if (strcmp(s, type_names[i]) == 0) {
            *out = (enum fr_type)i;
            return true;
        }
    }
    return false;
}

/* ----------------------------------------------------------------- freeing */

void fr_cfg_free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void fr_cfg_free_columns(struct fr_column *c, size_t n)
{
    if (!c)
        return;
    for (size_t i = 0; i < n; i++) {
        free(c[i].name);
        fr_cfg_free_strv(c[i].allowed, c[i].n_allowed);
        free(c[i].references);
    }
    free(c);
}

void fr_pipeline_free(struct fr_pipeline *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_datasets; i++) {
        struct fr_dataset *d = &p->datasets[i];
        free(d->name);
        free(d->qname);
        free(d->table);
        fr_cfg_free_columns(d->columns, d->n_columns);
        fr_cfg_free_strv(d->key, d->n_key);
        free(d->version);
        free(d->key_index);
        fr_cfg_free_strv(d->retention_columns, d->n_retention_columns);
        free(d->soft_delete);
    }
    free(p->datasets);
    for (size_t i = 0; i < p->n_sources; i++) {
        struct fr_source *s = &p->sources[i];
        free(s->name);
        free(s->dataset);
        free(s->dir);
        fr_http_source_free(s->http);
    }
    free(p->sources);
    for (size_t i = 0; i < p->n_models; i++) {
        fr_cfg_free_model(&p->models[i]);
    }
    free(p->models);
    for (size_t i = 0; i < p->n_caches; i++) {
        struct fr_cache *c = &p->caches[i];
        free(c->name);
        free(c->model);
        free(c->key_column);
    }
    free(p->caches);
    for (size_t i = 0; i < p->n_exports; i++) {
        struct fr_export *e = &p->exports[i];
        free(e->name);
        free(e->sql_path);
        free(e->sql);
        fr_cfg_free_strv(e->after, e->n_after);
        free(e->path);
    }
    free(p->exports);
    fr_routes_free(p->routes, p->n_routes);
    free(p->name);
    free(p->dir);
    free(p->path);
    free(p);
}

/* ----------------------------------------------------------- YAML helpers */

bool fr_cfg_fail_at(struct fr_cfg *c, const yaml_mark_t *m, const char *fmt, ...)
{
    int n = snprintf(c->err, FR_ERR_LEN, "%s:%zu:%zu: ", c->file, m ? m->line + 1 : 1, m ? m->column + 1 : 1);
    if (n < 0 || n >= FR_ERR_LEN)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, FR_ERR_LEN - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

#define fail fr_cfg_fail

yaml_node_t *fr_cfg_node_at(struct fr_cfg *c, int idx)
{
    return yaml_document_get_node(c->doc, idx);
}

bool fr_cfg_is_ident(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_IDENT)
        return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

bool fr_cfg_is_null(const yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0;
}

/* ${VAR} and ${VAR:-default} from the environment. */
static bool subst(struct fr_cfg *c, const yaml_node_t *n, const char *in, size_t len, char **out)
{
    struct fr_buf b;
    fr_buf_init(&b, MAX_YAML_BYTES);
    size_t i = 0;
    while (i < len) {
        if (in[i] != '$' || i + 1 >= len || in[i + 1] != '{') {
            if (fr_buf_putc(&b, in[i]) < 0)
                goto out_too_big;
            i++;
            continue;
        }
        size_t start = i + 2, j = start;
        while (j < len && in[j] != '}')
            j++;
        if (j >= len) {
            fr_buf_deinit(&b);
            return fail(c, n, "unterminated '${' in '%.60s'; close it with '}'", in);
        }
        /* in[start..j) is "VAR" or "VAR:-default" */
        size_t name_end = start;
        while (name_end < j && in[name_end] != ':')
            name_end++;
        char name[128];
        size_t nlen = name_end - start;
        bool ok = nlen > 0 && nlen < sizeof(name);
        for (size_t k = start; ok && k < name_end; k++) {
            char ch = in[k];
            ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_' ||
                 (k > start && ch >= '0' && ch <= '9');
        }
        bool has_default = false;
        if (ok && name_end < j) {
            ok = j - name_end >= 2 && in[name_end + 1] == '-';
            has_default = ok;
        }
        if (!ok) {
            fr_buf_deinit(&b);
            return fail(c, n, "bad variable reference '%.*s'; use ${NAME} or ${NAME:-default}",
                        (int)(j + 1 - i > 60 ? 60 : j + 1 - i), in + i);
        }
        memcpy(name, in + start, nlen);
        name[nlen] = '\0';
        const char *val = getenv(name);
        if (val && val[0] == '\0' && has_default)
            val = NULL; /* ${VAR:-x} also replaces an empty value, like the shell */
        int r;
        if (val)
            r = fr_buf_puts(&b, val);
        else if (has_default)
            r = fr_buf_append(&b, in + name_end + 2, j - (name_end + 2));
        else {
            fr_buf_deinit(&b);
            return fail(c, n, "environment variable %s is not set; set it or write ${%s:-default}", name, name);
        }
        if (r < 0)
            goto out_too_big;
        i = j + 1;
    }
    if (fr_buf_reserve(&b, 0) < 0)
        goto out_too_big;
    b.data[b.len] = '\0';
    *out = b.data; /* ownership moves to the caller */
    return true;

out_too_big:
    fr_buf_deinit(&b);
    return fail(c, n, "value too long after substitution; shorten it");
}

/* A scalar's value after ${VAR} substitution; owned by the caller. */
bool fr_cfg_get_str(struct fr_cfg *c, const yaml_node_t *n, const char *what, char **out)
{
    if (!n || n->type != YAML_SCALAR_NODE)
        return fail(c, n, "%s must be a single value, not a %s; write it as key: value", what,
                    n && n->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
    return subst(c, n, (const char *)n->data.scalar.value, n->data.scalar.length, out);
}

bool fr_cfg_get_ident(struct fr_cfg *c, const yaml_node_t *n, const char *what, char **out)
{
    char *s;
    if (!fr_cfg_get_str(c, n, what, &s))
        return false;
    if (!fr_cfg_is_ident(s)) {
        fail(c, n,
             "%s '%.60s' is not a valid name; use 1-63 characters of a-z, 0-9 and _, not starting "
             "with a digit",
             what, s);
        free(s);
        return false;
    }
    *out = s;
    return true;
}

bool fr_cfg_get_bool(struct fr_cfg *c, const yaml_node_t *n, const char *what, bool *out)
{
    char *s;
    if (!fr_cfg_get_str(c, n, what, &s))
        return false;
    bool ok = true;
    if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0)
        *out = false;
    else
        ok = fail(c, n, "%s must be true or false, not '%.40s'; use true or false", what, s);
    free(s);
    return ok;
}

bool fr_cfg_get_u32(struct fr_cfg *c, const yaml_node_t *n, const char *what, uint32_t min, uint32_t max,
                    uint32_t *out)
{
    char *s;
    if (!fr_cfg_get_str(c, n, what, &s))
        return false;
    int64_t v;
    bool ok = true;
    if (!fr_parse_i64(s, strlen(s), &v))
        ok = fail(c, n, "%s must be a whole number, not '%.40s'; use a number from %u to %u", what, s, min, max);
    else if (v < (int64_t)min || v > (int64_t)max)
        ok = fail(c, n, "%s %lld is out of range; use a number from %u to %u", what, (long long)v, min, max);
    else
        *out = (uint32_t)v;
    free(s);
    return ok;
}

/* A list of scalars, or one scalar taken as a list of one. */
bool fr_cfg_get_str_list(struct fr_cfg *c, const yaml_node_t *n, const char *what, bool idents, char ***out,
                         size_t *count)
{
    *out = NULL;
    *count = 0;
    if (n->type == YAML_MAPPING_NODE)
        return fail(c, n, "%s must be a list; write it as [a, b]", what);
    if (n->type == YAML_SCALAR_NODE) {
        char *s;
        if (!(idents ? fr_cfg_get_ident(c, n, what, &s) : fr_cfg_get_str(c, n, what, &s)))
            return false;
        *out = fr_xmalloc(sizeof(char *));
        (*out)[0] = s;
        *count = 1;
        return true;
    }
    size_t total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    char **v = fr_xcalloc(total ? total : 1, sizeof(char *));
    for (size_t i = 0; i < total; i++) {
        yaml_node_t *item = fr_cfg_node_at(c, n->data.sequence.items.start[i]);
        if (!item || !(idents ? fr_cfg_get_ident(c, item, what, &v[i]) : fr_cfg_get_str(c, item, what, &v[i]))) {
            fr_cfg_free_strv(v, i);
            return false;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(v[k], v[i]) == 0) {
                fail(c, item, "%s lists '%.60s' twice; remove the duplicate", what, v[i]);
                fr_cfg_free_strv(v, i + 1);
                return false;
            }
        }
    }
    *out = v;
    *count = total;
    return true;
}

/* 0 for anything but a mapping, so lookups on a null or scalar node (a
 * user's "s:" with no value) find nothing instead of reading a union member
 * that is not there. */
size_t fr_cfg_map_len(const yaml_node_t *n)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return 0;
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

const char *fr_cfg_scalar_of(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Checks that n is a mapping whose keys are all in `valid` (NULL-terminated),
 * each once. */
bool fr_cfg_check_map(struct fr_cfg *c, const yaml_node_t *n, const char *what, const char *const *valid)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(c, n, "%s must be a mapping (key: value lines); indent its keys under it", what);
    for (size_t i = 0; i < fr_cfg_map_len(n); i++) {
        yaml_node_t *k = fr_cfg_node_at(c, n->data.mapping.pairs.start[i].key);
        const char *ks = fr_cfg_scalar_of(k);
        if (!ks)
            return fail(c, k, "%s has a key that is not a plain name; use name: value", what);
        bool known = false;
        for (size_t v = 0; valid[v]; v++)
            known = known || strcmp(ks, valid[v]) == 0;
        if (!known) {
            char list[160];
            size_t off = 0;
            list[0] = '\0';
            for (size_t v = 0; valid[v] && off < sizeof(list); v++) {
                int w = snprintf(list + off, sizeof(list) - off, "%s%s", v ? ", " : "", valid[v]);
                if (w < 0)
                    break;
                off += (size_t)w;
            }
            return fail(c, k, "unknown key '%.40s' in %s; valid keys: %s", ks, what, list);
        }
        for (size_t j = 0; j < i; j++) {
            const char *prev = fr_cfg_scalar_of(fr_cfg_node_at(c, n->data.mapping.pairs.start[j].key));
            if (prev && strcmp(prev, ks) == 0)
                return fail(c, k, "key '%.40s' appears twice in %s; keep one", ks, what);
        }
    }
    return true;
}

yaml_node_t *fr_cfg_map_get(struct fr_cfg *c, const yaml_node_t *n, const char *key)
{
    for (size_t i = 0; i < fr_cfg_map_len(n); i++) {
        const char *ks = fr_cfg_scalar_of(fr_cfg_node_at(c, n->data.mapping.pairs.start[i].key));
        if (ks && strcmp(ks, key) == 0)
            return fr_cfg_node_at(c, n->data.mapping.pairs.start[i].value);
    }
    return NULL;
}

/* A mapping of name: {...} (datasets, sources, ...). */
bool fr_cfg_check_named_map(struct fr_cfg *c, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n,
                    "%s must be a mapping of name: {...}; write each entry as 'name:' with its keys "
                    "indented below",
                    what);
    for (size_t i = 0; i < fr_cfg_map_len(n); i++) {
        yaml_node_t *k = fr_cfg_node_at(c, n->data.mapping.pairs.start[i].key);
        const char *ks = fr_cfg_scalar_of(k);
        if (!ks || !fr_cfg_is_ident(ks))
            return fail(c, k,
                        "%s name '%.60s' is not valid; use 1-63 characters of a-z, 0-9 and _, not "
                        "starting with a digit",
                        what, ks ? ks : "?");
        for (size_t j = 0; j < i; j++) {
            const char *prev = fr_cfg_scalar_of(fr_cfg_node_at(c, n->data.mapping.pairs.start[j].key));
            if (prev && strcmp(prev, ks) == 0)
                return fail(c, k, "%s '%s' is defined twice; rename or remove one", what, ks);
        }
    }
    return true;
}

/* --------------------------------------------------------------- sections */

static const char *const column_keys[] = {"name",    "type",       "required", "upper", "length",
                                          "allowed", "references", "unique",   "merge", NULL};
static const char *const merge_names[] = {"replace", "min", "max", "keep", "coalesce"};

bool fr_cfg_parse_columns(struct fr_cfg *c, const yaml_node_t *n, const char *owner, struct fr_column **out,
                          size_t *count)
{
    char what[128];
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, n, "columns of %s must be a list; write each column as '- {name: x, type: text}'", owner);
    size_t total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (total == 0)
        return fail(c, n, "%s has no columns; add at least one '- {name: x, type: text}'", owner);
    struct fr_column *cols = fr_xcalloc(total, sizeof(*cols));
    size_t done = 0;
    for (; done < total; done++) {
        struct fr_column *col = &cols[done];
        yaml_node_t *item = fr_cfg_node_at(c, n->data.sequence.items.start[done]);
        snprintf(what, sizeof(what), "column %zu of %s", done + 1, owner);
        if (!fr_cfg_check_map(c, item, what, column_keys))
            goto out_free;
        yaml_node_t *v = fr_cfg_map_get(c, item, "name");
        if (!v) {
            fail(c, item, "%s has no name; add name: <column>", what);
            goto out_free;
        }
        if (!fr_cfg_get_ident(c, v, "column name", &col->name))
            goto out_free;
        for (size_t k = 0; k < done; k++) {
            if (strcmp(cols[k].name, col->name) == 0) {
                fail(c, v, "column '%s' of %s is defined twice; rename or remove one", col->name, owner);
                done++;
                goto out_free;
            }
        }
        snprintf(what, sizeof(what), "column '%s' of %s", col->name, owner);
        v = fr_cfg_map_get(c, item, "type");
        if (!v) {
            fail(c, item, "%s has no type; add type: <one of " TYPE_LIST ">", what);
            done++;
            goto out_free;
        }
        char *ts;
        if (!fr_cfg_get_str(c, v, "type", &ts)) {
            done++;
            goto out_free;
        }
        bool ok = fr_type_parse(ts, &col->type);
        if (!ok)
            fail(c, v, "unknown column type '%.40s'; use one of " TYPE_LIST, ts);
        free(ts);
        if (!ok) {
            done++;
            goto out_free;
        }
        bool bad = false;
        if ((v = fr_cfg_map_get(c, item, "required")) && !fr_cfg_get_bool(c, v, "required", &col->required))
            bad = true;
        if (!bad && (v = fr_cfg_map_get(c, item, "upper"))) {
            if (col->type != FR_T_TEXT)
                bad = !fail(c, v, "upper applies to text columns only; remove it from %s", what);
            else
                bad = !fr_cfg_get_bool(c, v, "upper", &col->upper);
        }
        if (!bad && (v = fr_cfg_map_get(c, item, "length"))) {
            if (col->type != FR_T_TEXT)
                bad = !fail(c, v, "length applies to text columns only; remove it from %s", what);
            else
                bad = !fr_cfg_get_u32(c, v, "length", 1, 1u << 20, &col->length);
        }
        if (!bad && (v = fr_cfg_map_get(c, item, "allowed"))) {
            if (col->type != FR_T_TEXT)
                bad = !fail(c, v, "allowed applies to text columns only; remove it from %s", what);
            else if (!fr_cfg_get_str_list(c, v, "allowed", false, &col->allowed, &col->n_allowed))
                bad = true;
            else if (col->n_allowed == 0)
                bad = !fail(c, v, "allowed of %s is empty; list the values or remove it", what);
        }
        if (!bad && (v = fr_cfg_map_get(c, item, "references")))
            bad = !fr_cfg_get_ident(c, v, "references", &col->references);
        if (!bad && (v = fr_cfg_map_get(c, item, "unique")))
            bad = !fr_cfg_get_bool(c, v, "unique", &col->unique);
        if (!bad && (v = fr_cfg_map_get(c, item, "merge"))) {
            char *ms;
            if (!fr_cfg_get_str(c, v, "merge", &ms)) {
                bad = true;
            } else {
                size_t k = 0;
                while (k < FR_ARRAY_LEN(merge_names) && strcmp(ms, merge_names[k]) != 0)
                    k++;
                if (k == FR_ARRAY_LEN(merge_names))
                    bad = !fail(c, v, "unknown merge rule '%.40s' for %s; use replace, min, max, keep or coalesce",
                                ms, what);
                else
                    col->merge = (enum fr_merge)k;
                free(ms);
            }
        }
        if (bad) {
            done++;
            goto out_free;
        }
    }
    *out = cols;
    *count = total;
    return true;

out_free:
    fr_cfg_free_columns(cols, done);
    return false;
}

/* Checks that every name in `names` is a column; fills idx when not NULL. */
bool fr_cfg_check_key_columns(struct fr_cfg *c, const yaml_node_t *n, const char *owner, char **names, size_t count,
                              const struct fr_column *cols, size_t n_cols, int *idx)
{
    for (size_t i = 0; i < count; i++) {
        int k = fr_column_index(cols, n_cols, names[i]);
        if (k < 0)
            return fail(c, n,
                        "key column '%s' of %s is not one of its columns; add the column or fix the "
                        "name",
                        names[i], owner);
        if (idx)
            idx[i] = k;
    }
    return true;
}

static const char *const dataset_keys[] = {"columns",   "key",         "version",    "schema_version", "drift",
                                           "retention", "soft_delete", "partitions", "partition_by",   NULL};
static const char *const drift_keys[] = {"missing", "type", "extra", NULL};
static const char *const retention_keys[] = {"columns", "days", NULL};

static bool parse_drift_action(struct fr_cfg *c, const yaml_node_t *n, const char *what, bool extra,
                               enum fr_drift_action *out)
{
    char *s;
    if (!fr_cfg_get_str(c, n, what, &s))
        return false;
    bool ok = true;
    if (strcmp(s, "reject") == 0)
        *out = FR_DRIFT_REJECT;
    else if (strcmp(s, "null") == 0)
        *out = FR_DRIFT_NULL;
    else if (strcmp(s, "fail") == 0)
        *out = FR_DRIFT_FAIL;
    else if (extra && strcmp(s, "ignore") == 0)
        *out = FR_DRIFT_IGNORE;
    else
        ok = fail(c, n, "unknown drift action '%.40s' for %s; use reject, null, fail%s", s, what,
                  extra ? " or ignore" : "");
    free(s);
    return ok;
}

static bool parse_dataset_extras(struct fr_cfg *c, struct fr_dataset *d, const yaml_node_t *n, const char *what)
{
    yaml_node_t *v, *w;
    d->drift.missing = FR_DRIFT_REJECT;
    d->drift.type = FR_DRIFT_REJECT;
    d->drift.extra = FR_DRIFT_IGNORE;
    if ((v = fr_cfg_map_get(c, n, "drift")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_check_map(c, v, "drift", drift_keys))
            return false;
        if ((w = fr_cfg_map_get(c, v, "missing")) &&
            !parse_drift_action(c, w, "drift missing", false, &d->drift.missing))
            return false;
        if ((w = fr_cfg_map_get(c, v, "type")) && !parse_drift_action(c, w, "drift type", false, &d->drift.type))
            return false;
        if ((w = fr_cfg_map_get(c, v, "extra")) && !parse_drift_action(c, w, "drift extra", true, &d->drift.extra))
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "retention")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_check_map(c, v, "retention", retention_keys))
            return false;
        if (!(w = fr_cfg_map_get(c, v, "columns")))
            return fail(c, v,
                        "retention of %s has no columns; name the timestamp columns whose greatest is the "
                        "row's age",
                        what);
        if (!fr_cfg_get_str_list(c, w, "retention columns", true, &d->retention_columns, &d->n_retention_columns))
            return false;
        for (size_t i = 0; i < d->n_retention_columns; i++) {
            int k = fr_column_index(d->columns, d->n_columns, d->retention_columns[i]);
            if (k < 0 || (d->columns[k].type != FR_T_TIMESTAMPTZ && d->columns[k].type != FR_T_DATE))
                return fail(c, w, "retention column '%s' of %s is not a timestamptz or date column; fix the name",
                            d->retention_columns[i], what);
        }
        if (!(w = fr_cfg_map_get(c, v, "days")))
            return fail(c, v, "retention of %s has no days; add days: 365", what);
        if (!fr_cfg_get_u32(c, w, "retention days", 1, 100000, &d->retention_days))
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "soft_delete")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_get_ident(c, v, "soft_delete", &d->soft_delete))
            return false;
        int k = fr_column_index(d->columns, d->n_columns, d->soft_delete);
        if (k < 0 || d->columns[k].type != FR_T_TIMESTAMPTZ)
            return fail(c, v, "soft_delete column '%s' of %s must be one of its timestamptz columns", d->soft_delete,
                        what);
        if (d->n_key == 0)
            return fail(c, v, "soft_delete needs a key in %s; add key: [..]", what);
    }
    d->partitions = 1;
    d->partition_col = -1;
    if ((v = fr_cfg_map_get(c, n, "partitions")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_get_u32(c, v, "partitions", 1, FR_DATASET_MAX_PARTITIONS, &d->partitions))
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "partition_by")) && !fr_cfg_is_null(v)) {
        char *col;
        bool ok = true;
        if (!fr_cfg_get_ident(c, v, "partition_by", &col))
            return false;
        d->partition_col = fr_column_index(d->columns, d->n_columns, col);
        if (d->partition_col < 0)
            ok = fail(c, v, "partition_by column '%s' is not a column of %s; fix the name", col, what);
        else if (d->n_key > 0)
            ok = fail(c, v,
                      "partition_by of %s: a keyed dataset's rows are partitioned by its key; remove partition_by",
                      what);
        else if (d->partitions < 2)
            ok = fail(c, v, "partition_by of %s routes nothing with one stream; add partitions: N (N >= 2)", what);
        free(col);
        if (!ok)
            return false;
    }
    for (size_t i = 0; i < d->n_columns; i++) {
        const struct fr_column *col = &d->columns[i];
        if ((col->merge != FR_MERGE_REPLACE || col->unique) && d->n_key == 0)
            return fail(c, n, "column '%s' of %s has merge or unique but the dataset has no key; add key: [..]",
                        col->name, what);
    }
    return true;
}

static bool parse_dataset(struct fr_cfg *c, struct fr_pipeline *p, const char *name, const yaml_node_t *n,
                          struct fr_dataset *d)
{
    char what[96];
    snprintf(what, sizeof(what), "dataset '%s'", name);
    d->name = fr_xstrdup(name);
    d->qname = fr_xasprintf("%s.%s", p->name, name);
    d->table = fr_xasprintf("%s.%s", p->name, name);
    d->schema_version = 1;
    if (!fr_cfg_check_map(c, n, what, dataset_keys))
        return false;
    yaml_node_t *v = fr_cfg_map_get(c, n, "columns");
    if (!v)
        return fail(c, n, "%s has no columns; add columns: with '- {name: x, type: text}' items", what);
    if (!fr_cfg_parse_columns(c, v, what, &d->columns, &d->n_columns))
        return false;
    if ((v = fr_cfg_map_get(c, n, "key")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_get_str_list(c, v, "key", true, &d->key, &d->n_key))
            return false;
        d->key_index = fr_xcalloc(d->n_key ? d->n_key : 1, sizeof(int));
        if (!fr_cfg_check_key_columns(c, v, what, d->key, d->n_key, d->columns, d->n_columns, d->key_index))
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "version")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_get_ident(c, v, "version column", &d->version))
            return false;
        int k = fr_column_index(d->columns, d->n_columns, d->version);
        if (k < 0)
            return fail(c, v,
                        "version column '%s' of %s is not one of its columns; add the column or fix "
                        "the name",
                        d->version, what);
        if (d->n_key == 0)
            return fail(c, v, "version needs a key in %s; add key: [..] or remove version", what);
    }
    if ((v = fr_cfg_map_get(c, n, "schema_version")) &&
        !fr_cfg_get_u32(c, v, "schema_version", 1, 1000000, &d->schema_version))
        return false;
    return parse_dataset_extras(c, d, n, what);
}

static const char *const source_keys[] = {
    "type", "dataset", "dir", "formats", "csv_header", "batch", "scan_interval_ms", "max_file_bytes", NULL};
static const char *const batch_keys[] = {"rows", "bytes", "latency_ms", NULL};

static bool parse_formats(struct fr_cfg *c, const yaml_node_t *n, unsigned *out)
{
    char **v;
    size_t count;
    if (!fr_cfg_get_str_list(c, n, "formats", false, &v, &count))
        return false;
    unsigned bits = 0;
    bool ok = count > 0 || fail(c, n, "formats is empty; list csv, ndjson or json");
    for (size_t i = 0; ok && i < count; i++) {
        if (strcmp(v[i], "csv") == 0)
            bits |= FR_FMT_CSV;
        else if (strcmp(v[i], "ndjson") == 0)
            bits |= FR_FMT_NDJSON;
        else if (strcmp(v[i], "json") == 0)
            bits |= FR_FMT_JSON;
        else
            ok = fail(c, n, "unknown file format '%.40s'; use csv, ndjson or json", v[i]);
    }
    fr_cfg_free_strv(v, count);
    *out = bits;
    return ok;
}

/* max_file_bytes: a byte count, 1 .. 1 TiB. */
static bool get_file_bytes(struct fr_cfg *c, const yaml_node_t *n, uint64_t *out)
{
    char *s;
    int64_t v;
    bool ok;

    if (!fr_cfg_get_str(c, n, "max_file_bytes", &s))
        return false;
    ok = fr_parse_i64(s, strlen(s), &v) && v >= 1 && v <= (int64_t)FR_SOURCE_MAX_FILE_BYTES;
    free(s);
    if (!ok)
        return fail(c, n,
                    "max_file_bytes must be a byte count 1..%llu; fix: give plain bytes, e.g. 1073741824 for 1 GiB",
                    (unsigned long long)FR_SOURCE_MAX_FILE_BYTES);
    *out = (uint64_t)v;
    return true;
}

static bool parse_source(struct fr_cfg *c, struct fr_pipeline *p, const char *name, const yaml_node_t *n,
                         struct fr_source *s)
{
    char what[96];
    snprintf(what, sizeof(what), "source '%s'", name);
    s->name = fr_xstrdup(name);
    s->formats = FR_FMT_CSV | FR_FMT_NDJSON;
    s->csv_header = true;
    s->batch_rows = 50000;
    s->batch_bytes = 8u << 20;
    s->batch_latency_ms = 20;
    s->scan_interval_ms = 1000;
    s->max_file_bytes = FR_SOURCE_DEFAULT_MAX_FILE_BYTES;
    yaml_node_t *v = fr_cfg_map_get(c, n, "type");
    const char *ts = v ? fr_cfg_scalar_of(v) : NULL;
    if (ts && strcmp(ts, "http_json") == 0) {
        /* config_http.c checks its own keys, type/dataset/batch included. */
        s->kind = FR_SRC_HTTP_JSON;
        yaml_node_t *dv = fr_cfg_map_get(c, n, "dataset");
        if (!dv)
            return fail(c, n, "%s has no dataset; add dataset: <one of the pipeline's datasets>", what);
        if (!fr_cfg_get_ident(c, dv, "dataset", &s->dataset))
            return false;
        if (!fr_pipeline_dataset(p, s->dataset))
            return fail(c, dv, "%s loads unknown dataset '%s'; define it under datasets: or fix the name", what,
                        s->dataset);
        return fr_cfg_parse_http_source(c, p, s, n);
    }
    if (!fr_cfg_check_map(c, n, what, source_keys))
        return false;
    if (!v)
        return fail(c, n, "%s has no type; add type: file, http_json or push", what);
    char *t;
    if (!fr_cfg_get_str(c, v, "type", &t))
        return false;
    bool ok = true;
    if (strcmp(t, "file") == 0)
        s->kind = FR_SRC_FILE;
    else if (strcmp(t, "push") == 0)
        s->kind = FR_SRC_PUSH;
    else
        ok = fail(c, v, "unknown source type '%.40s'; use file, http_json or push", t);
    free(t);
    if (!ok)
        return false;
    v = fr_cfg_map_get(c, n, "dataset");
    if (!v)
        return fail(c, n, "%s has no dataset; add dataset: <one of the pipeline's datasets>", what);
    if (!fr_cfg_get_ident(c, v, "dataset", &s->dataset))
        return false;
    if (!fr_pipeline_dataset(p, s->dataset))
        return fail(c, v, "%s loads unknown dataset '%s'; define it under datasets: or fix the name", what,
                    s->dataset);
    static const char *const file_only[] = {"dir", "formats", "csv_header", "scan_interval_ms", "max_file_bytes"};
    if (s->kind != FR_SRC_FILE) {
        for (size_t i = 0; i < FR_ARRAY_LEN(file_only); i++)
            if ((v = fr_cfg_map_get(c, n, file_only[i])))
                return fail(c, v, "%s applies to file sources only; remove it from %s", file_only[i], what);
    } else {
        if ((v = fr_cfg_map_get(c, n, "dir"))) {
            if (!fr_cfg_get_str(c, v, "dir", &s->dir))
                return false;
            if (s->dir[0] == '\0')
                return fail(c, v, "dir of %s is empty; give a directory relative to FRESHET_DATA_DIR", what);
        } else {
            s->dir = fr_xasprintf("inbound/%s/%s", p->name, s->dataset);
        }
        if ((v = fr_cfg_map_get(c, n, "formats")) && !parse_formats(c, v, &s->formats))
            return false;
        if ((v = fr_cfg_map_get(c, n, "csv_header")) && !fr_cfg_get_bool(c, v, "csv_header", &s->csv_header))
            return false;
        if ((v = fr_cfg_map_get(c, n, "scan_interval_ms")) &&
            !fr_cfg_get_u32(c, v, "scan_interval_ms", 10, 3600000, &s->scan_interval_ms))
            return false;
        if ((v = fr_cfg_map_get(c, n, "max_file_bytes")) && !get_file_bytes(c, v, &s->max_file_bytes))
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "batch"))) {
        char bwhat[128];
        snprintf(bwhat, sizeof(bwhat), "batch of %s", what);
        if (!fr_cfg_check_map(c, v, bwhat, batch_keys))
            return false;
        yaml_node_t *b;
        if ((b = fr_cfg_map_get(c, v, "rows")) && !fr_cfg_get_u32(c, b, "batch rows", 1, 10000000, &s->batch_rows))
            return false;
        if ((b = fr_cfg_map_get(c, v, "bytes")) &&
            !fr_cfg_get_u32(c, b, "batch bytes", 1024, FR_SOURCE_MAX_BATCH_BYTES, &s->batch_bytes))
            return false;
        if ((b = fr_cfg_map_get(c, v, "latency_ms")) &&
            !fr_cfg_get_u32(c, b, "batch latency_ms", 0, 600000, &s->batch_latency_ms))
            return false;
    }
    return true;
}

static const char *const cache_keys[] = {"from", "key", "type", "ttl_s", NULL};

static bool parse_cache(struct fr_cfg *c, struct fr_pipeline *p, const char *name, const yaml_node_t *n,
                        struct fr_cache *k)
{
    char what[96];
    snprintf(what, sizeof(what), "cache '%s'", name);
    k->name = fr_xstrdup(name);
    if (!fr_cfg_check_map(c, n, what, cache_keys))
        return false;
    yaml_node_t *v = fr_cfg_map_get(c, n, "from");
    if (!v)
        return fail(c, n, "%s has no from; add from: <model or dataset name>", what);
    if (!fr_cfg_get_ident(c, v, "from", &k->model))
        return false;
    const struct fr_column *cols;
    size_t n_cols;
    char *const *keys;
    size_t n_keys;
    const struct fr_model *m = fr_pipeline_model(p, k->model);
    const struct fr_dataset *d = fr_pipeline_dataset(p, k->model);
    if (m) {
        cols = m->columns;
        n_cols = m->n_columns;
        keys = m->key;
        n_keys = m->n_key;
    } else if (d) {
        cols = d->columns;
        n_cols = d->n_columns;
        keys = d->key;
        n_keys = d->n_key;
    } else {
        return fail(c, v, "%s is filled from unknown model '%s'; define it under models: or fix the name", what,
                    k->model);
    }
    if ((v = fr_cfg_map_get(c, n, "key"))) {
        if (!fr_cfg_get_ident(c, v, "cache key column", &k->key_column))
            return false;
        if (fr_column_index(cols, n_cols, k->key_column) < 0)
            return fail(c, v, "key column '%s' of %s is not a column of '%s'; use one of its columns", k->key_column,
                        what, k->model);
    } else if (n_keys > 0) {
        k->key_column = fr_xstrdup(keys[0]);
    } else {
        return fail(c, n, "%s needs a key column ('%s' has no key); add key: <column>", what, k->model);
    }
    k->kind = FR_CACHE_HASH;
    if ((v = fr_cfg_map_get(c, n, "type"))) {
        char *t;
        if (!fr_cfg_get_str(c, v, "type", &t))
            return false;
        bool ok = true;
        if (strcmp(t, "hash") == 0)
            k->kind = FR_CACHE_HASH;
        else if (strcmp(t, "json") == 0)
            k->kind = FR_CACHE_JSON;
        else
            ok = fail(c, v, "unknown cache type '%.40s'; use hash or json", t);
        free(t);
        if (!ok)
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "ttl_s")) && !fr_cfg_get_u32(c, v, "ttl_s", 0, 365u * 86400u, &k->ttl_s))
        return false;
    return true;
}

static const char *const pipeline_keys[] = {"pipeline", "description", "now",     "datasets", "sources",
                                            "models",   "caches",      "exports", "routes",   NULL};

static const char *const export_keys[] = {"sql", "after", "path", "csv_raw", NULL};

static bool parse_export(struct fr_cfg *c, struct fr_pipeline *p, const char *name, const yaml_node_t *n,
                         struct fr_export *e)
{
    char what[96];
    snprintf(what, sizeof(what), "export '%s'", name);
    e->name = fr_xstrdup(name);
    if (!fr_cfg_check_map(c, n, what, export_keys))
        return false;
    yaml_node_t *v = fr_cfg_map_get(c, n, "after");
    if (!v)
        return fail(c, n, "%s has no after; add after: [model or dataset names] that trigger it", what);
    if (!fr_cfg_get_str_list(c, v, "after", true, &e->after, &e->n_after))
        return false;
    for (size_t i = 0; i < e->n_after; i++)
        if (!fr_pipeline_model(p, e->after[i]) && !fr_pipeline_dataset(p, e->after[i]))
            return fail(c, v, "%s runs after unknown model or dataset '%s'; fix the name", what, e->after[i]);
    if (!(v = fr_cfg_map_get(c, n, "path")))
        return fail(c, n, "%s has no path; add path: output/%s/%s-{ts}.csv (relative to FRESHET_DATA_DIR)", what,
                    p->name, name);
    if (!fr_cfg_get_str(c, v, "path", &e->path))
        return false;
    if (e->path[0] == '\0' || e->path[0] == '/' || strstr(e->path, ".."))
        return fail(c, v, "path of %s must be relative to FRESHET_DATA_DIR, without '..'", what);
    if ((v = fr_cfg_map_get(c, n, "csv_raw")) && !fr_cfg_get_bool(c, v, "csv_raw", &e->csv_raw))
        return false;
    if (!(v = fr_cfg_map_get(c, n, "sql")))
        return fail(c, n, "%s has no sql; add sql: reports/%s.sql", what, name);
    char *rel;
    if (!fr_cfg_get_str(c, v, "sql", &rel))
        return false;
    e->sql_path = rel[0] == '/' ? fr_xstrdup(rel) : fr_xasprintf("%s/%s", p->dir, rel);
    free(rel);
    char ferr[FR_ERR_LEN];
    size_t len;
    e->sql = fr_read_file(e->sql_path, MAX_SQL_BYTES, &len, ferr);
    if (!e->sql)
        return fail(c, v, "cannot read the SQL of %s (%.120s); check the path, relative to %.60s", what, ferr,
                    p->dir);
    if (strlen(e->sql) != len)
        return fail(c, v, "SQL file of %s contains a NUL byte; save it as text", what);
    return true;
}

/* References name a keyed dataset of the same pipeline (checked once all
 * datasets are known, so order in the file does not matter). */
static bool check_references(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *root)
{
    for (size_t i = 0; i < p->n_datasets; i++) {
        const struct fr_dataset *d = &p->datasets[i];
        for (size_t j = 0; j < d->n_columns; j++) {
            const char *r = d->columns[j].references;
            if (!r)
                continue;
            const struct fr_dataset *t = fr_pipeline_dataset(p, r);
            if (!t || t->n_key != 1)
                return fail(c, fr_cfg_map_get(c, root, "datasets"),
                            "column '%s' of dataset '%s' references '%s', which is not a dataset with a one-column "
                            "key; fix the name",
                            d->columns[j].name, d->name, r);
        }
    }
    return true;
}

/* Iterates a name: {...} section, calling fn for each entry into an array of
 * `size`-byte structs. */
#define PARSE_SECTION(c, p, root, secname, arr, count, fn, label)                                                    \
    do {                                                                                                             \
        yaml_node_t *sec_ = fr_cfg_map_get((c), (root), (secname));                                                  \
        if (sec_ && !fr_cfg_is_null(sec_)) {                                                                         \
            if (!fr_cfg_check_named_map((c), sec_, (secname)))                                                       \
                goto label;                                                                                          \
            size_t total_ = fr_cfg_map_len(sec_);                                                                    \
            (arr) = fr_xcalloc(total_ ? total_ : 1, sizeof(*(arr)));                                                 \
            for (size_t i_ = 0; i_ < total_; i_++) {                                                                 \
                yaml_node_pair_t *pair_ = &sec_->data.mapping.pairs.start[i_];                                       \
                const char *name_ = fr_cfg_scalar_of(fr_cfg_node_at((c), pair_->key));                               \
                (count)++;                                                                                           \
                if (!fn((c), (p), name_, fr_cfg_node_at((c), pair_->value), &(arr)[i_]))                             \
                    goto label;                                                                                      \
            }                                                                                                        \
        }                                                                                                            \
    } while (0)

/* Rejects aliases and deep nesting before building the document: our schema
 * never needs them, and they are how small inputs become large or recursive. */
static bool prescan(struct fr_cfg *c, const char *yaml, size_t len)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return fr_cfg_fail_at(c, NULL, "out of memory initialising the YAML parser; retry");
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    bool ok = true;
    int depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            ok = fr_cfg_fail_at(c, &parser.problem_mark, "YAML syntax error: %s%s%s; fix the indentation or quoting",
                                parser.problem ? parser.problem : "invalid YAML", parser.context ? " " : "",
                                parser.context ? parser.context : "");
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_ALIAS_EVENT) {
            ok = fr_cfg_fail_at(c, &ev.start_mark, "YAML aliases (*name) are not supported; write the value out");
        } else if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH)
                ok = fr_cfg_fail_at(c, &ev.start_mark, "nesting deeper than %d levels; flatten the file", MAX_DEPTH);
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (t == YAML_DOCUMENT_END_EVENT) {
            /* Only the first document counts; stop here. */
            yaml_event_delete(&ev);
            break;
        }
        yaml_event_delete(&ev);
        if (!ok || t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    return ok;
}

static char *basename_dup(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/')
        s--;
    return fr_xstrndup(path + s, n - s);
}

static struct fr_pipeline *parse_impl(const char *yaml, size_t len, const char *file, const char *dir,
                                      const char *fallback_name, char err[FR_ERR_LEN])
{
    struct fr_cfg c = {.doc = NULL, .file = file, .err = err};
    struct fr_pipeline *p = NULL;
    err[0] = '\0';
    if (len > MAX_YAML_BYTES) {
        fr_cfg_fail_at(&c, NULL, "file is larger than %u bytes; split it", MAX_YAML_BYTES);
        return NULL;
    }
    if (!prescan(&c, yaml, len))
        return NULL;

    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fr_cfg_fail_at(&c, NULL, "out of memory initialising the YAML parser; retry");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        fr_cfg_fail_at(&c, &parser.problem_mark, "YAML syntax error: %s; fix the indentation or quoting",
                       parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return NULL;
    }
    c.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || fr_cfg_is_null(root)) {
        fr_cfg_fail_at(&c, NULL, "the pipeline file is empty; start with 'pipeline: <name>' and 'datasets:'");
        goto out_doc;
    }
    if (!fr_cfg_check_map(&c, root, "the pipeline file", pipeline_keys))
        goto out_doc;

    p = fr_xcalloc(1, sizeof(*p));
    p->dir = fr_xstrdup(dir && dir[0] ? dir : ".");
    p->path = fr_xstrdup(file);
    yaml_node_t *v = fr_cfg_map_get(&c, root, "pipeline");
    if (v) {
        if (!fr_cfg_get_ident(&c, v, "pipeline name", &p->name))
            goto out_free;
    } else {
        char *base = fallback_name ? fr_xstrdup(fallback_name) : basename_dup(p->dir);
        if (!fr_cfg_is_ident(base)) {
            free(base);
            fail(&c, root, "the pipeline has no name; add pipeline: <name> (a-z, 0-9, _)");
            goto out_free;
        }
        p->name = base;
    }
    if ((v = fr_cfg_map_get(&c, root, "description"))) {
        char *d;
        if (!fr_cfg_get_str(&c, v, "description", &d))
            goto out_free;
        free(d);
    }
    if ((v = fr_cfg_map_get(&c, root, "now")) && !fr_cfg_is_null(v)) {
        char *s;
        if (!fr_cfg_get_str(&c, v, "now", &s))
            goto out_free;
        bool ok = s[0] == '\0' || fr_parse_timestamp(s, strlen(s), &p->now_us);
        if (!ok)
            fail(&c, v, "now '%.60s' is not an ISO-8601 timestamp; use e.g. 2024-06-17T12:00:00Z", s);
        free(s);
        if (!ok)
            goto out_free;
    }
    yaml_node_t *ds = fr_cfg_map_get(&c, root, "datasets");
    if (!ds || fr_cfg_is_null(ds) || (ds->type == YAML_MAPPING_NODE && fr_cfg_map_len(ds) == 0)) {
        fail(&c, ds ? ds : root, "the pipeline has no datasets; add datasets: with at least one dataset");
        goto out_free;
    }
    PARSE_SECTION(&c, p, root, "datasets", p->datasets, p->n_datasets, parse_dataset, out_free);
    PARSE_SECTION(&c, p, root, "sources", p->sources, p->n_sources, parse_source, out_free);
    PARSE_SECTION(&c, p, root, "models", p->models, p->n_models, fr_cfg_parse_model, out_free);
    if (!fr_cfg_check_models(&c, p, root))
        goto out_free;
    PARSE_SECTION(&c, p, root, "caches", p->caches, p->n_caches, parse_cache, out_free);
    PARSE_SECTION(&c, p, root, "exports", p->exports, p->n_exports, parse_export, out_free);
    if (!check_references(&c, p, root))
        goto out_free;
    if ((v = fr_cfg_map_get(&c, root, "routes")) && !fr_cfg_is_null(v) && !fr_cfg_parse_routes(&c, p, v))
        goto out_free;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return p;

out_free:
    fr_pipeline_free(p);
    p = NULL;
out_doc:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return NULL;
}

struct fr_pipeline *fr_pipeline_parse(const char *yaml, size_t len, const char *name, const char *dir,
                                      char err[FR_ERR_LEN])
{
    const char *label = name && name[0] ? name : "pipeline.yaml";
    return parse_impl(yaml, len, label, dir, NULL, err);
}

struct fr_pipeline *fr_pipeline_load(const char *path, char err[FR_ERR_LEN])
{
    struct stat st;
    char *file;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        file = fr_xasprintf("%.*s/pipeline.yaml", (int)(n > 1 && path[n - 1] == '/' ? n - 1 : n), path);
    } else {
        file = fr_xstrdup(path);
    }
    char *dir;
    const char *slash = strrchr(file, '/');
    if (slash)
        dir = fr_xstrndup(file, slash == file ? 1 : (size_t)(slash - file));
    else
        dir = fr_xstrdup(".");
    struct fr_pipeline *p = NULL;
    size_t len;
    char ferr[FR_ERR_LEN];
    char *text = fr_read_file(file, MAX_YAML_BYTES, &len, ferr);
    if (!text) {
        snprintf(err, FR_ERR_LEN, "%.190s; check FRESHET_PIPELINES_DIR / FRESHET_PIPELINES", ferr);
        goto out;
    }
    char *base = basename_dup(dir);
    p = parse_impl(text, len, file, dir, fr_cfg_is_ident(base) ? base : NULL, err);
    free(base);
    free(text);
out:
    free(dir);
    free(file);
    return p;
}

const struct fr_dataset *fr_pipeline_dataset(const struct fr_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->n_datasets; i++)
        if (p->datasets[i].name && strcmp(p->datasets[i].name, name) == 0)
            return &p->datasets[i];
    return NULL;
}

const struct fr_model *fr_pipeline_model(const struct fr_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->n_models; i++)
        if (p->models[i].name && strcmp(p->models[i].name, name) == 0)
            return &p->models[i];
    return NULL;
}

const struct fr_cache *fr_pipeline_cache(const struct fr_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->n_caches; i++)
        if (p->caches[i].name && strcmp(p->caches[i].name, name) == 0)
            return &p->caches[i];
    return NULL;
}

int fr_column_index(const struct fr_column *cols, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (cols[i].name && strcmp(cols[i].name, name) == 0)
            return (int)i;
    return -1;
}

int64_t fr_pipeline_now(const struct fr_pipeline *p)
{
    return p->now_us ? p->now_us : fr_wall_us();
}

/* ---------------------------------------------------------------- settings */

enum setting_id {
    S_REDIS_URL = 0,
    S_DATABASE_URL,
    S_API_ADDR,
    S_ADMIN_ADDR,
    S_PIPELINES,
    S_PIPELINES_DIR,
    S_DATA_DIR,
    S_NOW,
    S_LOG_LEVEL,
    S_DLQ_MAX_ENTRIES,
    S_DLQ_MAX_AGE,
    S_TRIM_INTERVAL_MS,
    S_DATABASE_READ_URL,
    S_COUNT,
};

struct setting_def {
    const char *flag; /* without the leading "--" */
    const char *env;
    const char *key; /* in the --config YAML */
    const char *arg; /* metavariable in --help */
    const char *help;
};

static const struct setting_def settings_table[S_COUNT] = {
    [S_REDIS_URL] = {"redis-url", "FRESHET_REDIS_URL", "redis_url", "URL", "Redis"},
    [S_DATABASE_URL] = {"database-url", "FRESHET_DATABASE_URL", "database_url", "URL", "PostgreSQL (libpq URI)"},
    [S_API_ADDR] = {"api-addr", "FRESHET_API_ADDR", "api_addr", "HOST:PORT", "api listen address"},
    [S_ADMIN_ADDR] = {"admin-addr", "FRESHET_ADMIN_ADDR", "admin_addr", "HOST:PORT",
                      "admin listen address (/metrics, /healthz)"},
    [S_PIPELINES] = {"pipelines", "FRESHET_PIPELINES", "pipelines", "A,B",
                     "pipelines to run: names under the pipelines dir, or paths"},
    [S_PIPELINES_DIR] = {"pipelines-dir", "FRESHET_PIPELINES_DIR", "pipelines_dir", "DIR",
                         "directory holding NAME/pipeline.yaml"},
    [S_DATA_DIR] = {"data-dir", "FRESHET_DATA_DIR", "data_dir", "DIR", "landing zone, inbound drops, outputs"},
    [S_NOW] = {"now", "FRESHET_NOW", "now", "ISO8601", "pins \"now\" for every pipeline"},
    [S_LOG_LEVEL] = {"log-level", "FRESHET_LOG_LEVEL", "log_level", "LEVEL", "debug, info, warn or error"},
    [S_DLQ_MAX_ENTRIES] = {"dlq-max-entries", "FRESHET_DLQ_MAX_ENTRIES", "dlq_max_entries", "N",
                           "loader: dead letters kept per dataset; older ones are archived to files"},
    [S_DLQ_MAX_AGE] = {"dlq-max-age", "FRESHET_DLQ_MAX_AGE", "dlq_max_age", "AGE",
                       "loader: dead letters older than this (30s, 15m, 12h, 7d) are archived to files"},
    [S_TRIM_INTERVAL_MS] = {"trim-interval-ms", "FRESHET_TRIM_INTERVAL_MS", "trim_interval_ms", "MS",
                            "loader: how often acknowledged stream entries are trimmed and dead letters bounded"},
    [S_DATABASE_READ_URL] = {"database-read-url", "FRESHET_DATABASE_READ_URL", "database_read_url", "URL,URL",
                             "api: PostgreSQL read replicas (comma-separated libpq URIs) for SQL reads"},
};

static const char *setting_default(enum setting_id id, const char *admin_default)
{
    switch (id) {
    case S_REDIS_URL:
        return "redis://127.0.0.1:6379/0";
    case S_DATABASE_URL:
        return "postgresql://freshet@127.0.0.1:5432/freshet";
    case S_API_ADDR:
        return "0.0.0.0:8000";
    case S_ADMIN_ADDR:
        return admin_default ? admin_default : "127.0.0.1:9101";
    case S_PIPELINES:
        return NULL;
    case S_PIPELINES_DIR:
        return "pipelines";
    case S_DATA_DIR:
        return "./var";
    case S_NOW:
        return NULL;
    case S_LOG_LEVEL:
        return "info";
    case S_DLQ_MAX_ENTRIES:
        return "100000";
    case S_DLQ_MAX_AGE:
        return "7d";
    case S_TRIM_INTERVAL_MS:
        return "5000";
    case S_DATABASE_READ_URL:
        return NULL;
    case S_COUNT:
        break;
    }
    return NULL;
}

void fr_settings_deinit(struct fr_settings *s)
{
    if (!s)
        return;
    free(s->redis_url);
    free(s->database_url);
    free(s->database_read_url);
    free(s->api_addr);
    free(s->admin_addr);
    free(s->pipelines);
    free(s->pipelines_dir);
    free(s->data_dir);
    free(s->log_level);
    free(s->config_path);
    memset(s, 0, sizeof(*s));
}

static void print_help(const char *daemon, const char *usage, const char *admin_default)
{
    printf("Usage: freshet-%s [flags]%s\n\n", daemon, usage ? " [command ...]" : "");
    printf("Settings come from defaults, then the --config file, then the environment, then flags.\n\n");
    printf("  %-28s %s\n", "--config FILE", "YAML file with the settings below in lower case (redis_url: ...)");
    for (size_t i = 0; i < S_COUNT; i++) {
        const struct setting_def *d = &settings_table[i];
        char flag[64];
        if (i == S_ADMIN_ADDR && admin_default && !admin_default[0])
            continue; /* "" = this daemon has no admin port (the api serves /metrics itself) */
        snprintf(flag, sizeof(flag), "--%s %s", d->flag, d->arg);
        const char *def = setting_default((enum setting_id)i, admin_default);
        printf("  %-28s %s\n  %-28s   env %s, default %s\n", flag, d->help, "", d->env, def ? def : "(unset)");
    }
    printf("  %-28s %s\n  %-28s %s\n", "--help", "print this help and exit", "--version",
           "print the version and exit");
    if (usage)
        printf("\n%s\n", usage);
    fflush(stdout);
}

/* A dead-letter age: seconds, or a number with s, m, h or d. */
static bool parse_age(const char *s, uint64_t *out_s)
{
    size_t n = strlen(s);
    uint64_t unit = 1;
    int64_t v;

    if (n > 0) {
        switch (s[n - 1]) {
        case 's':
            n--;
            break;
        case 'm':
            unit = 60;
            n--;
            break;
        case 'h':
            unit = 3600;
            n--;
            break;
        case 'd':
            unit = 86400;
            n--;
            break;
        default:
            break;
        }
    }
    if (n == 0 || !fr_parse_i64(s, n, &v) || v < 1 || (uint64_t)v > FR_SETTINGS_DLQ_MAX_AGE_S / unit)
        return false;
    *out_s = (uint64_t)v * unit;
    return true;
}

/* Checks the retention settings (the others pass); `src` names the value. */
static bool check_retention(enum setting_id id, const char *val, const char *src, char err[FR_ERR_LEN])
{
    int64_t v;
    uint64_t age;

    if (id == S_DLQ_MAX_ENTRIES &&
        (!fr_parse_i64(val, strlen(val), &v) || v < 1 || v > FR_SETTINGS_DLQ_MAX_ENTRIES)) {
        snprintf(err, FR_ERR_LEN, "%s: '%.60s' is not a number of dead letters in 1..%d", src, val,
                 FR_SETTINGS_DLQ_MAX_ENTRIES);
        return false;
    }
    if (id == S_DLQ_MAX_AGE && !parse_age(val, &age)) {
        snprintf(err, FR_ERR_LEN,
                 "%s: '%.60s' is not an age; use seconds or a number with s, m, h or d (7d), "
                 "at most 3650d",
                 src, val);
        return false;
    }
    if (id == S_TRIM_INTERVAL_MS && (!fr_parse_i64(val, strlen(val), &v) || v < 10 || v > 3600000)) {
        snprintf(err, FR_ERR_LEN, "%s: '%.60s' is not a number of milliseconds in 10..3600000", src, val);
        return false;
    }
    return true;
}

static const char *const settings_file_keys[] = {"redis_url",         "database_url",
                                                 "api_addr",          "admin_addr",
                                                 "pipelines",         "pipelines_dir",
                                                 "data_dir",          "now",
                                                 "log_level",         "dlq_max_entries",
                                                 "dlq_max_age",       "trim_interval_ms",
                                                 "database_read_url", NULL};

static bool load_settings_file(const char *path, char *vals[S_COUNT], char err[FR_ERR_LEN])
{
    size_t len;
    char ferr[FR_ERR_LEN];
    char rerr[FR_ERR_LEN];
    char *text = fr_read_file(path, 1u << 20, &len, ferr);
    if (!text) {
        snprintf(err, FR_ERR_LEN, "--config: %.200s; give an existing YAML file", ferr);
        return false;
    }
    struct fr_cfg c = {.doc = NULL, .file = path, .err = err};
    bool ok = prescan(&c, text, len);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (ok && !yaml_parser_initialize(&parser))
        ok = fr_cfg_fail_at(&c, NULL, "out of memory initialising the YAML parser; retry");
    if (!ok) {
        free(text);
        return false;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        fr_cfg_fail_at(&c, &parser.problem_mark, "YAML syntax error: %s; fix the indentation or quoting",
                       parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        free(text);
        return false;
    }
    c.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !fr_cfg_is_null(root)) {
        ok = fr_cfg_check_map(&c, root, "the settings file", settings_file_keys);
        for (size_t i = 0; ok && i < S_COUNT; i++) {
            yaml_node_t *v = fr_cfg_map_get(&c, root, settings_table[i].key);
            if (!v)
                continue;
            char *s;
            if (!fr_cfg_get_str(&c, v, settings_table[i].key, &s)) {
                ok = false;
                break;
            }
            if (i == S_NOW) {
                int64_t us;
                if (s[0] && !fr_parse_timestamp(s, strlen(s), &us)) {
                    ok = fail(&c, v, "now '%.60s' is not an ISO-8601 timestamp; use e.g. 2024-06-17T12:00:00Z", s);
                    free(s);
                    break;
                }
            } else if (i == S_LOG_LEVEL) {
                enum fr_log_level lvl;
                if (!fr_log_parse_level(s, &lvl)) {
                    ok = fail(&c, v, "unknown log level '%.40s'; use debug, info, warn or error", s);
                    free(s);
                    break;
                }
            } else if (!check_retention((enum setting_id)i, s, settings_table[i].key, rerr)) {
                ok = fail(&c, v, "%s", rerr);
                free(s);
                break;
            }
            free(vals[i]);
            vals[i] = s;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    return ok;
}

/* Checks one value from the environment or a flag; `src` names it. */
static bool check_value(enum setting_id id, const char *val, const char *src, char err[FR_ERR_LEN])
{
    if (!check_retention(id, val, src, err))
        return false;
    if (id == S_NOW) {
        int64_t us;
        if (val[0] && !fr_parse_timestamp(val, strlen(val), &us)) {
            snprintf(err, FR_ERR_LEN, "%s: '%.60s' is not an ISO-8601 timestamp; use e.g. 2024-06-17T12:00:00Z", src,
                     val);
            return false;
        }
    } else if (id == S_LOG_LEVEL) {
        enum fr_log_level lvl;
        if (!fr_log_parse_level(val, &lvl)) {
            snprintf(err, FR_ERR_LEN, "%s: unknown log level '%.40s'; use debug, info, warn or error", src, val);
            return false;
        }
    }
    return true;
}

/* Matches "--flag" or "--flag=value" against `name`; *inline_val gets the
 * part after '=' (NULL if none). */
static bool match_flag(const char *arg, const char *name, const char **inline_val)
{
    if (arg[0] != '-' || arg[1] != '-')
        return false;
    size_t n = strlen(name);
    if (strncmp(arg + 2, name, n) != 0)
        return false;
    if (arg[2 + n] == '\0') {
        *inline_val = NULL;
        return true;
    }
    if (arg[2 + n] == '=') {
        *inline_val = arg + 3 + n;
        return true;
    }
    return false;
}

enum fr_settings_result fr_settings_load(struct fr_settings *s, const char *daemon, const char *usage,
                                         const char *default_admin_addr, int argc, char **argv, int *rest_argc,
                                         char ***rest_argv, char err[FR_ERR_LEN])
{
    char *vals[S_COUNT] = {0};
    char *config_path = NULL;
    enum fr_settings_result res = FR_SETTINGS_ERROR;
    memset(s, 0, sizeof(*s));
    err[0] = '\0';
    if (!daemon)
        daemon = "daemon";

    /* Pass 1: --help, --version and --config come before everything else. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *iv;
        if (strcmp(a, "--") == 0)
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(daemon, usage, default_admin_addr);
            res = FR_SETTINGS_EXIT_OK;
            goto out;
        }
        if (strcmp(a, "--version") == 0) {
            printf("freshet-%s %s\n", daemon, FR_VERSION);
            fflush(stdout);
            res = FR_SETTINGS_EXIT_OK;
            goto out;
        }
        if (match_flag(a, "config", &iv)) {
            if (!iv && i + 1 >= argc) {
                snprintf(err, FR_ERR_LEN, "--config needs a value; use --config FILE");
                goto out;
            }
            free(config_path);
            config_path = fr_xstrdup(iv ? iv : argv[++i]);
        }
    }
    if (!config_path) {
        const char *e = getenv("FRESHET_CONFIG");
        if (e && e[0])
            config_path = fr_xstrdup(e);
    }

    for (size_t i = 0; i < S_COUNT; i++) {
        const char *d = setting_default((enum setting_id)i, default_admin_addr);
        vals[i] = d ? fr_xstrdup(d) : NULL;
    }
    if (config_path && !load_settings_file(config_path, vals, err))
        goto out;
    for (size_t i = 0; i < S_COUNT; i++) {
        const char *e = getenv(settings_table[i].env);
        if (!e || !e[0])
            continue;
        if (!check_value((enum setting_id)i, e, settings_table[i].env, err))
            goto out;
        free(vals[i]);
        vals[i] = fr_xstrdup(e);
    }

    /* Pass 2: flags; everything else is compacted into argv[1..] for the
     * caller, in order. */
    int kept = 0;
    bool only_rest = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        const char *iv = NULL;
        if (!only_rest && strcmp(a, "--") == 0) {
            only_rest = true;
            continue;
        }
        bool matched = false;
        if (!only_rest && match_flag(a, "config", &iv)) {
            if (!iv)
                i++;
            continue;
        }
        for (size_t k = 0; !only_rest && k < S_COUNT; k++) {
            if (!match_flag(a, settings_table[k].flag, &iv))
                continue;
            if (!iv) {
                if (i + 1 >= argc) {
                    snprintf(err, FR_ERR_LEN, "--%s needs a value; use --%s %s", settings_table[k].flag,
                             settings_table[k].flag, settings_table[k].arg);
                    goto out;
                }
                iv = argv[++i];
            }
            char src[48];
            snprintf(src, sizeof(src), "--%s", settings_table[k].flag);
            if (!check_value((enum setting_id)k, iv, src, err))
                goto out;
            free(vals[k]);
            vals[k] = fr_xstrdup(iv);
            matched = true;
            break;
        }
        if (!matched)
            argv[1 + kept++] = a;
    }
    if (kept > 0 && (!rest_argc || !rest_argv)) {
        snprintf(err, FR_ERR_LEN, "unknown argument '%.60s'; see freshet-%s --help", argv[1], daemon);
        goto out;
    }
    if (1 + kept < argc)
        argv[1 + kept] = NULL;
    if (rest_argc)
        *rest_argc = kept;
    if (rest_argv)
        *rest_argv = argc > 0 ? argv + 1 : argv;

    s->redis_url = vals[S_REDIS_URL];
    s->database_url = vals[S_DATABASE_URL];
    s->database_read_url = vals[S_DATABASE_READ_URL];
    s->api_addr = vals[S_API_ADDR];
    s->admin_addr = vals[S_ADMIN_ADDR];
    s->pipelines = vals[S_PIPELINES];
    s->pipelines_dir = vals[S_PIPELINES_DIR];
    s->data_dir = vals[S_DATA_DIR];
    s->log_level = vals[S_LOG_LEVEL];
    /* Retention settings: validated when read. */
    s->dlq_max_entries = (uint64_t)strtoull(vals[S_DLQ_MAX_ENTRIES], NULL, 10);
    (void)parse_age(vals[S_DLQ_MAX_AGE], &s->dlq_max_age_s);
    s->trim_interval_ms = (uint32_t)strtoul(vals[S_TRIM_INTERVAL_MS], NULL, 10);
    free(vals[S_DLQ_MAX_ENTRIES]);
    free(vals[S_DLQ_MAX_AGE]);
    free(vals[S_TRIM_INTERVAL_MS]);
    s->now_us = 0;
    if (vals[S_NOW] && vals[S_NOW][0] && !fr_parse_timestamp(vals[S_NOW], strlen(vals[S_NOW]), &s->now_us))
        s->now_us = 0; /* already validated */
    free(vals[S_NOW]);
    s->config_path = config_path;
    return FR_SETTINGS_OK;

out:
    for (size_t i = 0; i < S_COUNT; i++)
        free(vals[i]);
    free(config_path);
    if (rest_argc)
        *rest_argc = 0;
    if (rest_argv)
        *rest_argv = NULL;
    return res;
}

/* --------------------------------------------------------------- pipelines */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Paths of the pipeline files to load, sorted when found by listing. */
static int pipeline_paths(const struct fr_settings *s, char ***out, size_t *n, char err[FR_ERR_LEN])
{
    const char *pdir = s->pipelines_dir ? s->pipelines_dir : "pipelines";
    char **v = NULL;
    size_t count = 0, cap = 0;
    if (s->pipelines && s->pipelines[0]) {
        const char *p = s->pipelines;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            while (len > 0 && (*p == ' ' || *p == '\t')) {
                p++;
                len--;
            }
            while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                len--;
            if (len > 0) {
                if (count == cap) {
                    cap = cap ? cap * 2 : 8;
                    v = fr_xrealloc(v, cap * sizeof(*v));
                }
                char *item = fr_xstrndup(p, len);
                if (memchr(item, '/', len)) {
                    v[count++] = item;
                } else {
                    if (!fr_cfg_is_ident(item)) {
                        snprintf(err, FR_ERR_LEN,
                                 "FRESHET_PIPELINES: '%.60s' is not a pipeline name; use names "
                                 "of directories under %.80s, or paths",
                                 item, pdir);
                        free(item);
                        fr_cfg_free_strv(v, count);
                        return -EINVAL;
                    }
                    v[count++] = fr_xasprintf("%s/%s/pipeline.yaml", pdir, item);
                    free(item);
                }
            }
            if (!e)
                break;
            p = e + 1;
        }
    } else {
        DIR *d = opendir(pdir);
        if (!d) {
            int e = errno;
            snprintf(err, FR_ERR_LEN, "%.100s: %s; set FRESHET_PIPELINES_DIR to the pipelines directory", pdir,
                     strerror(e));
            return -e;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char *path = fr_xasprintf("%s/%s/pipeline.yaml", pdir, de->d_name);
            struct stat st;
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
                free(path);
                continue;
            }
            if (count == cap) {
                cap = cap ? cap * 2 : 8;
                v = fr_xrealloc(v, cap * sizeof(*v));
            }
            v[count++] = path;
        }
        closedir(d);
        if (count > 1)
            qsort(v, count, sizeof(*v), cmp_str);
    }
    if (count == 0) {
        free(v);
        snprintf(err, FR_ERR_LEN, "no pipelines found in %.100s; add NAME/pipeline.yaml or set FRESHET_PIPELINES",
                 pdir);
        return -ENOENT;
    }
    *out = v;
    *n = count;
    return 0;
}

int fr_pipelines_load_all(const struct fr_settings *s, struct fr_pipeline ***out, size_t *n, char err[FR_ERR_LEN])
{
    char **paths = NULL;
    size_t count = 0;
    *out = NULL;
    *n = 0;
    int rc = pipeline_paths(s, &paths, &count, err);
    if (rc < 0)
        return rc;
    struct fr_pipeline **ps = fr_xcalloc(count, sizeof(*ps));
    size_t loaded = 0;
    for (; loaded < count; loaded++) {
        ps[loaded] = fr_pipeline_load(paths[loaded], err);
        if (!ps[loaded]) {
            rc = -EINVAL;
            goto out_free;
        }
        for (size_t k = 0; k < loaded; k++) {
            if (strcmp(ps[k]->name, ps[loaded]->name) == 0) {
                snprintf(err, FR_ERR_LEN, "%.100s: pipeline name '%s' is also used by %.100s; rename one",
                         ps[loaded]->path, ps[loaded]->name, ps[k]->path);
                loaded++;
                rc = -EINVAL;
                goto out_free;
            }
        }
        if (s->now_us)
            ps[loaded]->now_us = s->now_us;
    }
    fr_cfg_free_strv(paths, count);
    *out = ps;
    *n = count;
    return 0;

out_free:
    fr_pipelines_free(ps, loaded);
    fr_cfg_free_strv(paths, count);
    return rc;
}

void fr_pipelines_free(struct fr_pipeline **ps, size_t n)
{
    if (!ps)
        return;
    for (size_t i = 0; i < n; i++)
        fr_pipeline_free(ps[i]);
    free(ps);
}
