/* config_model: the models: section of a pipeline (config.h struct
 * fr_model). A select model is a SQL file materialised by key; an aggregate
 * model (kind: aggregate) reads the rows of each batch of one dataset (from:)
 * under a name (as:) and declares per output column how it merges into the
 * stored row of its key (sum, count, min, max, latest, first, list). Once
 * every model is parsed, fr_cfg_check_models resolves inputs (datasets or
 * other models), refuses cycles and puts the models in dependency order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define MAX_SQL_BYTES (1u << 20) /* a model's SQL file */

#define fail fr_cfg_fail

static const char *const model_keys[] = {"kind",    "sql",  "inputs", "key",   "daily", "coalesce_ms",
                                         "columns", "from", "as",     "tests", NULL};
static const char *const agg_column_keys[] = {"name", "type", "merge", "by", "limit", "within", NULL};
static const char *const agg_merge_names[] = {
    [FR_AGG_KEY] = "key", [FR_AGG_SUM] = "sum",       [FR_AGG_COUNT] = "count", [FR_AGG_MIN] = "min",
    [FR_AGG_MAX] = "max", [FR_AGG_LATEST] = "latest", [FR_AGG_FIRST] = "first", [FR_AGG_LIST] = "list",
};
#define AGG_MERGE_LIST "sum, count, min, max, latest, first or list"

void fr_cfg_free_model(struct fr_model *m)
{
    free(m->name);
    free(m->table);
    fr_cfg_free_columns(m->columns, m->n_columns);
    fr_cfg_free_strv(m->key, m->n_key);
    fr_cfg_free_strv(m->inputs, m->n_inputs);
    free(m->sql_path);
    free(m->sql);
    free(m->from);
    free(m->as);
    free(m->agg);
    for (size_t i = 0; i < m->n_tests; i++) {
        struct fr_model_test *t = &m->tests[i];
        free(t->name);
        free(t->column);
        fr_cfg_free_strv(t->values, t->n_values);
        free(t->to_table);
        free(t->field);
        free(t->expr);
    }
    free(m->tests);
}

/* One column of the model, for a test. */
static bool test_column(struct fr_cfg *c, const yaml_node_t *v, const char *what, const struct fr_model *m,
                        char **out)
{
    if (!fr_cfg_get_ident(c, v, "column", out))
        return false;
    if (fr_column_index(m->columns, m->n_columns, *out) < 0)
        return fail(c, v, "%s: '%s' is not a column of the model; use one of its columns", what, *out);
    return true;
}

static const char *const test_kinds[] = {
    [FR_TEST_NOT_NULL] = "not_null",        [FR_TEST_UNIQUE] = "unique",
    [FR_TEST_ACCEPTED] = "accepted_values", [FR_TEST_RELATIONSHIP] = "relationships",
    [FR_TEST_EXPRESSION] = "expression",
};
static const char *const accepted_keys[] = {"column", "values", NULL};
static const char *const relationship_keys[] = {"column", "to", "field", NULL};

/* tests: a list of one-key maps: not_null: col, unique: col,
 * accepted_values: {column, values}, relationships: {column, to, field},
 * expression: "<SQL boolean>". */
static bool parse_tests(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *n, const char *owner,
                        struct fr_model *m)
{
    char what[160];
    size_t total;

    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, n, "tests of %s must be a list; write each as '- not_null: column'", owner);
    total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    m->tests = fr_xcalloc(total ? total : 1, sizeof(*m->tests));
    for (size_t i = 0; i < total; i++) {
        yaml_node_t *item = fr_cfg_node_at(c, n->data.sequence.items.start[i]);
        struct fr_model_test *t = &m->tests[i];
        const char *kind;
        yaml_node_t *v;
        size_t k;

        m->n_tests = i + 1;
        snprintf(what, sizeof(what), "test %zu of %s", i + 1, owner);
        if (item->type != YAML_MAPPING_NODE || fr_cfg_map_len(item) != 1)
            return fail(c, item,
                        "%s must be one of not_null: col, unique: col, accepted_values: {column, values}, "
                        "relationships: {column, to, field}, expression: \"SQL\"; write one per list item",
                        what);
        kind = fr_cfg_scalar_of(fr_cfg_node_at(c, item->data.mapping.pairs.start[0].key));
        v = fr_cfg_node_at(c, item->data.mapping.pairs.start[0].value);
        for (k = 0; k < FR_ARRAY_LEN(test_kinds) && (!kind || strcmp(kind, test_kinds[k]) != 0); k++)
            ;
        if (k == FR_ARRAY_LEN(test_kinds))
            return fail(
                c, item,
                "%s: unknown test '%.40s'; use not_null, unique, accepted_values, relationships or expression", what,
                kind ? kind : "?");
        t->kind = (enum fr_model_test_kind)k;
        switch (t->kind) {
        case FR_TEST_NOT_NULL:
        case FR_TEST_UNIQUE:
            if (!test_column(c, v, what, m, &t->column))
                return false;
            t->name = fr_xasprintf("%s(%s)", test_kinds[k], t->column);
            break;
        case FR_TEST_ACCEPTED: {
            yaml_node_t *cv, *vv;
            if (!fr_cfg_check_map(c, v, what, accepted_keys))
                return false;
            if (!(cv = fr_cfg_map_get(c, v, "column")) || !(vv = fr_cfg_map_get(c, v, "values")))
                return fail(c, v, "%s: accepted_values needs column: and values: [...]; add them", what);
            if (!test_column(c, cv, what, m, &t->column))
                return false;
            if (!fr_cfg_get_str_list(c, vv, "values", false, &t->values, &t->n_values))
                return false;
            if (t->n_values == 0)
                return fail(c, vv, "%s: values is empty; list the accepted values", what);
            t->name = fr_xasprintf("accepted_values(%s)", t->column);
            break;
        }
        case FR_TEST_RELATIONSHIP: {
            yaml_node_t *cv, *tv, *fv;
            char *to;
            if (!fr_cfg_check_map(c, v, what, relationship_keys))
                return false;
            if (!(cv = fr_cfg_map_get(c, v, "column")) || !(tv = fr_cfg_map_get(c, v, "to")) ||
                !(fv = fr_cfg_map_get(c, v, "field")))
                return fail(c, v, "%s: relationships needs column:, to: (a dataset or model) and field:; add them",
                            what);
            if (!test_column(c, cv, what, m, &t->column) || !fr_cfg_get_ident(c, tv, "to", &to))
                return false;
            t->to_table = fr_xasprintf("%s.%s", p->name, to);
            free(to);
            if (!fr_cfg_get_ident(c, fv, "field", &t->field))
                return false;
            t->name = fr_xasprintf("relationships(%s -> %s.%s)", t->column, strchr(t->to_table, '.') + 1, t->field);
            break;
        }
        case FR_TEST_EXPRESSION:
            if (!fr_cfg_get_str(c, v, "expression", &t->expr))
                return false;
            if (t->expr[0] == '\0' || strchr(t->expr, ';'))
                return fail(c, v, "%s: expression must be one SQL boolean over the row's columns; remove the ';'",
                            what);
            t->name = fr_xasprintf("expression(%.80s)", t->expr);
            break;
        }
    }
    return true;
}

static bool read_sql(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *v, const char *what,
                     struct fr_model *m)
{
    char *rel;
    char ferr[FR_ERR_LEN];
    size_t len;

    if (!fr_cfg_get_str(c, v, "sql", &rel))
        return false;
    if (rel[0] == '\0') {
        free(rel);
        return fail(c, v, "sql of %s is empty; give the SQL file path", what);
    }
    m->sql_path = rel[0] == '/' ? fr_xstrdup(rel) : fr_xasprintf("%s/%s", p->dir, rel);
    free(rel);
    m->sql = fr_read_file(m->sql_path, MAX_SQL_BYTES, &len, ferr);
    if (!m->sql)
        return fail(c, v, "cannot read the SQL of %s (%.120s); check the path, relative to %.60s", what, ferr,
                    p->dir);
    if (strlen(m->sql) != len)
        return fail(c, v, "SQL file of %s contains a NUL byte; save it as text", what);
    return true;
}

static bool is_key(const struct fr_model *m, const char *name)
{
    for (size_t k = 0; k < m->n_key; k++)
        if (strcmp(m->key[k], name) == 0)
            return true;
    return false;
}

/* within: a whole number of seconds/minutes/hours/days/weeks ("7 days",
 * "36h") for a timestamptz or date order column; a positive integer for a
 * numeric one. */
static bool parse_within(struct fr_cfg *c, const yaml_node_t *v, const char *what, enum fr_type by_type, int64_t *out)
{
    static const struct {
        const char *name;
        int64_t secs;
    } units[] = {{"s", 1},       {"sec", 1},      {"second", 1}, {"seconds", 1},   {"m", 60},        {"min", 60},
                 {"minute", 60}, {"minutes", 60}, {"h", 3600},   {"hour", 3600},   {"hours", 3600},  {"d", 86400},
                 {"day", 86400}, {"days", 86400}, {"w", 604800}, {"week", 604800}, {"weeks", 604800}};
    bool timed = by_type == FR_T_TIMESTAMPTZ || by_type == FR_T_DATE;
    char *s;
    const char *q;
    int64_t n = 0;
    bool ok = false;

    if (!fr_cfg_get_str(c, v, "within", &s))
        return false;
    q = s;
    while (*q >= '0' && *q <= '9' && n < (INT64_C(1) << 40))
        n = n * 10 + (*q++ - '0');
    if (q != s && n > 0) {
        while (*q == ' ')
            q++;
        if (!timed) {
            ok = *q == '\0';
            *out = n;
        } else {
            for (size_t i = 0; i < FR_ARRAY_LEN(units) && !ok; i++) {
                if (strcmp(q, units[i].name) == 0) {
                    ok = true;
                    *out = n * units[i].secs;
                }
            }
        }
    }
    if (!ok)
        fail(c, v,
             timed ? "within of %s must be a duration like '7 days' (units: seconds, minutes, hours, days, weeks); "
                     "got '%.40s'"
                   : "within of %s must be a positive whole number (in the order column's units); got '%.40s'",
             what, s);
    free(s);
    return ok;
}

/* The columns of an aggregate model: name, type and merge (key columns need
 * none), by for latest/first/list, limit and within for list. */
static bool parse_agg_columns(struct fr_cfg *c, const yaml_node_t *n, const char *owner, struct fr_model *m)
{
    char what[160];
    size_t total;

    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, n,
                    "columns of %s must be a list; write each column as '- {name: x, type: bigint, merge: sum}'",
                    owner);
    total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (total == 0)
        return fail(c, n, "%s has no columns; add at least one '- {name: x, type: bigint, merge: sum}'", owner);
    m->columns = fr_xcalloc(total, sizeof(*m->columns));
    m->agg = fr_xcalloc(total, sizeof(*m->agg));
    for (size_t i = 0; i < total; i++) {
        yaml_node_t *item = fr_cfg_node_at(c, n->data.sequence.items.start[i]);
        struct fr_column *col = &m->columns[i];
        yaml_node_t *v;
        char *ts;
        bool ok;

        m->agg[i].by = -1;
        snprintf(what, sizeof(what), "column %zu of %s", i + 1, owner);
        if (!fr_cfg_check_map(c, item, what, agg_column_keys))
            return false;
        if (!(v = fr_cfg_map_get(c, item, "name")))
            return fail(c, item, "%s has no name; add name: <column>", what);
        if (!fr_cfg_get_ident(c, v, "column name", &col->name))
            return false;
        m->n_columns = i + 1;
        for (size_t k = 0; k < i; k++)
            if (strcmp(m->columns[k].name, col->name) == 0)
                return fail(c, v, "column '%s' of %s is defined twice; rename or remove one", col->name, owner);
        snprintf(what, sizeof(what), "column '%s' of %s", col->name, owner);
        if (!(v = fr_cfg_map_get(c, item, "type")))
            return fail(c, item,
                        "%s has no type; add type: <text, int, bigint, float, numeric, bool, timestamptz, "
                        "date, json>",
                        what);
        if (!fr_cfg_get_str(c, v, "type", &ts))
            return false;
        ok = fr_type_parse(ts, &col->type);
        if (!ok)
            fail(c, v,
                 "unknown column type '%.40s'; use one of text, int, bigint, float, numeric, bool, "
                 "timestamptz, date, json",
                 ts);
        free(ts);
        if (!ok)
            return false;
    }
    /* Merges, once every column is known (by may name a later column). */
    for (size_t i = 0; i < total; i++) {
        yaml_node_t *item = fr_cfg_node_at(c, n->data.sequence.items.start[i]);
        struct fr_column *col = &m->columns[i];
        struct fr_agg_col *a = &m->agg[i];
        yaml_node_t *v = fr_cfg_map_get(c, item, "merge");
        char *ms;
        size_t k = 0;

        snprintf(what, sizeof(what), "column '%s' of %s", col->name, owner);
        if (is_key(m, col->name)) {
            if (v || fr_cfg_map_get(c, item, "by") || fr_cfg_map_get(c, item, "limit") ||
                fr_cfg_map_get(c, item, "within"))
                return fail(c, v ? v : item,
                            "%s is a key column: it takes no merge, by, limit or within; remove them", what);
            a->merge = FR_AGG_KEY;
            continue;
        }
        if (!v)
            return fail(c, item, "%s has no merge; add merge: <" AGG_MERGE_LIST ">", what);
        if (!fr_cfg_get_str(c, v, "merge", &ms))
            return false;
        for (k = 1; k < FR_ARRAY_LEN(agg_merge_names) && strcmp(ms, agg_merge_names[k]) != 0; k++)
            ;
        if (k == FR_ARRAY_LEN(agg_merge_names))
            fail(c, v, "unknown merge '%.40s' for %s; use " AGG_MERGE_LIST, ms, what);
        free(ms);
        if (k == FR_ARRAY_LEN(agg_merge_names))
            return false;
        a->merge = (enum fr_agg_merge)k;
        if ((a->merge == FR_AGG_SUM) && !(col->type == FR_T_INT || col->type == FR_T_BIGINT ||
                                          col->type == FR_T_FLOAT || col->type == FR_T_NUMERIC))
            return fail(c, v, "%s: sum needs a number column (int, bigint, float, numeric); change its type", what);
        if (a->merge == FR_AGG_COUNT && !(col->type == FR_T_INT || col->type == FR_T_BIGINT))
            return fail(c, v, "%s: count needs an int or bigint column; change its type", what);
        if ((a->merge == FR_AGG_MIN || a->merge == FR_AGG_MAX || a->merge == FR_AGG_LATEST ||
             a->merge == FR_AGG_FIRST) &&
            (col->type == FR_T_BOOL || col->type == FR_T_JSON))
            return fail(c, v, "%s: %s does not apply to a bool or json column; change its type", what,
                        agg_merge_names[a->merge]);
        if (a->merge == FR_AGG_LATEST || a->merge == FR_AGG_FIRST || a->merge == FR_AGG_LIST) {
            yaml_node_t *bv = fr_cfg_map_get(c, item, "by");
            char *by;
            if (!bv)
                return fail(c, item, "%s: %s needs an order column; add by: <column>", what,
                            agg_merge_names[a->merge]);
            if (!fr_cfg_get_ident(c, bv, "by", &by))
                return false;
            a->by = fr_column_index(m->columns, m->n_columns, by);
            free(by);
            if (a->by < 0 || (size_t)a->by == i)
                return fail(c, bv, "by of %s must name another column of the model; add the column or fix the name",
                            what);
            if (m->columns[a->by].type == FR_T_BOOL || m->columns[a->by].type == FR_T_JSON)
                return fail(c, bv, "by of %s must be a column of an ordered type (not bool or json)", what);
            if (a->merge == FR_AGG_LIST && col->type == FR_T_JSON)
                return fail(c, v, "%s: a list of json is not supported; list a text or number column", what);
        } else if (fr_cfg_map_get(c, item, "by")) {
            return fail(c, fr_cfg_map_get(c, item, "by"), "%s: by applies to latest, first and list only; remove it",
                        what);
        }
        if (a->merge == FR_AGG_LIST) {
            yaml_node_t *lv = fr_cfg_map_get(c, item, "limit");
            yaml_node_t *wv = fr_cfg_map_get(c, item, "within");
            if (!lv && !wv)
                return fail(c, item, "%s: a list is bounded; add limit: N (newest N items) and/or within: <window>",
                            what);
            if (lv && !fr_cfg_get_u32(c, lv, "limit", 1, 100000, &a->limit))
                return false;
            if (wv && !parse_within(c, wv, what, m->columns[a->by].type, &a->within))
                return false;
        } else if (fr_cfg_map_get(c, item, "limit") || fr_cfg_map_get(c, item, "within")) {
            yaml_node_t *x = fr_cfg_map_get(c, item, "limit");
            return fail(c, x ? x : fr_cfg_map_get(c, item, "within"),
                        "%s: limit and within apply to list only; remove them", what);
        }
    }
    /* latest orders by a max column, first by a min column: the stored
     * order value is then the one of the stored value's row. */
    for (size_t i = 0; i < total; i++) {
        const struct fr_agg_col *a = &m->agg[i];
        yaml_node_t *item = fr_cfg_node_at(c, n->data.sequence.items.start[i]);
        if (a->merge == FR_AGG_LATEST && m->agg[a->by].merge != FR_AGG_MAX)
            return fail(c, fr_cfg_map_get(c, item, "by"),
                        "by of column '%s' of %s: latest orders by a column with merge: max; give '%s' merge: max",
                        m->columns[i].name, owner, m->columns[a->by].name);
        if (a->merge == FR_AGG_FIRST && m->agg[a->by].merge != FR_AGG_MIN)
            return fail(c, fr_cfg_map_get(c, item, "by"),
                        "by of column '%s' of %s: first orders by a column with merge: min; give '%s' merge: min",
                        m->columns[i].name, owner, m->columns[a->by].name);
    }
    return true;
}

static bool parse_aggregate(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *n, const char *what,
                            struct fr_model *m)
{
    yaml_node_t *v;

    if ((v = fr_cfg_map_get(c, n, "inputs")))
        return fail(c, v,
                    "%s is an aggregate: it reads the batches of one dataset; replace inputs: with from: <dataset>",
                    what);
    if ((v = fr_cfg_map_get(c, n, "daily")))
        return fail(c, v, "%s is an aggregate, maintained from each batch: daily does not apply; remove it", what);
    if ((v = fr_cfg_map_get(c, n, "tests")))
        return fail(c, v, "%s is an aggregate: data tests apply to select models; test a model reading it", what);
    if (!(v = fr_cfg_map_get(c, n, "from")))
        return fail(c, n, "%s has no from; add from: <dataset> (the dataset whose batches it aggregates)", what);
    if (!fr_cfg_get_ident(c, v, "from", &m->from))
        return false;
    if (!fr_pipeline_dataset(p, m->from))
        return fail(c, v, "%s aggregates unknown dataset '%s'; define it under datasets: or fix the name", what,
                    m->from);
    m->inputs = fr_xcalloc(1, sizeof(*m->inputs));
    m->inputs[0] = fr_xstrdup(m->from);
    m->n_inputs = 1;
    if ((v = fr_cfg_map_get(c, n, "as"))) {
        if (!fr_cfg_get_ident(c, v, "as", &m->as))
            return false;
        if (strncmp(m->as, "fr_", 3) == 0)
            return fail(c, v, "as of %s must not start with fr_ (reserved for the loader's names); rename it", what);
    } else {
        m->as = fr_xstrdup("batch");
    }
    if (!(v = fr_cfg_map_get(c, n, "key")) || fr_cfg_is_null(v))
        return fail(c, v ? v : n, "%s has no key; add key: [columns] (the rows of one key merge into one row)", what);
    if (!fr_cfg_get_str_list(c, v, "key", true, &m->key, &m->n_key))
        return false;
    if (m->n_key == 0)
        return fail(c, v, "key of %s is empty; name the key columns", what);
    yaml_node_t *kv = v;
    if (!(v = fr_cfg_map_get(c, n, "columns")))
        return fail(c, n, "%s has no columns; list its output columns in SELECT order, each with its merge", what);
    if (!parse_agg_columns(c, v, what, m))
        return false;
    if (!fr_cfg_check_key_columns(c, kv, what, m->key, m->n_key, m->columns, m->n_columns, NULL))
        return false;
    for (size_t i = 0; i < m->n_columns; i++) {
        if (m->agg[i].merge != FR_AGG_LIST)
            continue;
        char hidden[80];
        snprintf(hidden, sizeof(hidden), "%s__by", m->columns[i].name);
        int j = fr_column_index(m->columns, m->n_columns, hidden);
        if (j >= 0)
            return fail(c, fr_cfg_node_at(c, v->data.sequence.items.start[j]),
                        "column '%s' of %s clashes with the order array of list '%s'; rename it", hidden, what,
                        m->columns[i].name);
    }
    if ((v = fr_cfg_map_get(c, n, "sql")))
        return read_sql(c, p, v, what, m);
    /* No SQL: the batch's columns of the same names. */
    {
        const struct fr_dataset *d = fr_pipeline_dataset(p, m->from);
        struct fr_buf s;
        for (size_t i = 0; i < m->n_columns; i++)
            if (fr_column_index(d->columns, d->n_columns, m->columns[i].name) < 0)
                return fail(c, n,
                            "%s has no sql and column '%s' is not a column of dataset '%s'; add sql: "
                            "models/%s.sql selecting it from %s",
                            what, m->columns[i].name, m->from, m->name, m->as);
        fr_buf_init(&s, 0);
        (void)fr_buf_puts(&s, "SELECT ");
        for (size_t i = 0; i < m->n_columns; i++) {
            if (i)
                (void)fr_buf_puts(&s, ", ");
            fr_buf_sql_ident(&s, m->columns[i].name);
        }
        (void)fr_buf_puts(&s, " FROM ");
        fr_buf_sql_ident(&s, m->as);
        m->sql = fr_xstrdup(s.data);
        fr_buf_deinit(&s);
    }
    return true;
}

bool fr_cfg_parse_model(struct fr_cfg *c, struct fr_pipeline *p, const char *name, const yaml_node_t *n,
                        struct fr_model *m)
{
    char what[96];
    yaml_node_t *v;

    snprintf(what, sizeof(what), "model '%s'", name);
    m->name = fr_xstrdup(name);
    m->table = fr_xasprintf("%s.%s", p->name, name);
    m->coalesce_ms = 50;
    if (!fr_cfg_check_map(c, n, what, model_keys))
        return false;
    if (fr_pipeline_dataset(p, name))
        return fail(c, n, "%s has the name of a dataset (both would be table %s.%s); rename one", what, p->name,
                    name);
    if ((v = fr_cfg_map_get(c, n, "kind"))) {
        char *k;
        bool ok = true;
        if (!fr_cfg_get_str(c, v, "kind", &k))
            return false;
        if (strcmp(k, "aggregate") == 0)
            m->kind = FR_MODEL_AGGREGATE;
        else if (strcmp(k, "select") == 0)
            m->kind = FR_MODEL_SELECT;
        else
            ok = fail(c, v, "unknown model kind '%.40s' of %s; use select (the default) or aggregate", k, what);
        free(k);
        if (!ok)
            return false;
    }
    if ((v = fr_cfg_map_get(c, n, "coalesce_ms")) && !fr_cfg_get_u32(c, v, "coalesce_ms", 0, 600000, &m->coalesce_ms))
        return false;
    if (m->kind == FR_MODEL_AGGREGATE)
        return parse_aggregate(c, p, n, what, m);
    if ((v = fr_cfg_map_get(c, n, "from")) || (v = fr_cfg_map_get(c, n, "as")))
        return fail(c, v, "from and as of %s apply to aggregate models; add kind: aggregate or use inputs:", what);
    v = fr_cfg_map_get(c, n, "columns");
    if (!v)
        return fail(c, n, "%s has no columns; list its output columns in SELECT order", what);
    if (!fr_cfg_parse_columns(c, v, what, &m->columns, &m->n_columns))
        return false;
    if ((v = fr_cfg_map_get(c, n, "key")) && !fr_cfg_is_null(v)) {
        if (!fr_cfg_get_str_list(c, v, "key", true, &m->key, &m->n_key))
            return false;
        if (!fr_cfg_check_key_columns(c, v, what, m->key, m->n_key, m->columns, m->n_columns, NULL))
            return false;
    }
    v = fr_cfg_map_get(c, n, "inputs");
    if (!v)
        return fail(c, n, "%s has no inputs; add inputs: [dataset or model, ...] naming what it reads", what);
    if (!fr_cfg_get_str_list(c, v, "inputs", true, &m->inputs, &m->n_inputs))
        return false;
    if (m->n_inputs == 0)
        return fail(c, v, "inputs of %s is empty; name the datasets or models it reads", what);
    if ((v = fr_cfg_map_get(c, n, "daily")) && !fr_cfg_get_bool(c, v, "daily", &m->daily))
        return false;
    if ((v = fr_cfg_map_get(c, n, "tests")) && !fr_cfg_is_null(v) && !parse_tests(c, p, v, what, m))
        return false;
    v = fr_cfg_map_get(c, n, "sql");
    if (!v)
        return fail(c, n, "%s has no sql; add sql: models/%s.sql (relative to the pipeline directory)", what, name);
    return read_sql(c, p, v, what, m);
}

/* Inputs name datasets or models; models read no cycle; the models are
 * reordered (stably) so that each comes after the models it reads. */
bool fr_cfg_check_models(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *root)
{
    size_t n = p->n_models;
    yaml_node_t *sec = fr_cfg_map_get(c, root, "models");
    struct fr_model *sorted;
    bool *placed;
    size_t done = 0;

    for (size_t i = 0; i < n; i++) {
        const struct fr_model *m = &p->models[i];
        yaml_node_t *at = sec ? fr_cfg_map_get(c, sec, m->name) : NULL;
        yaml_node_t *iv = at ? fr_cfg_map_get(c, at, "inputs") : NULL;
        for (size_t k = 0; k < m->n_inputs; k++) {
            if (!fr_pipeline_dataset(p, m->inputs[k]) && !fr_pipeline_model(p, m->inputs[k]))
                return fail(c, iv ? iv : at,
                            "model '%s' reads unknown dataset or model '%s'; define it under datasets: or models: "
                            "or fix the name",
                            m->name, m->inputs[k]);
            if (strcmp(m->inputs[k], m->name) == 0)
                return fail(c, iv ? iv : at, "model '%s' reads itself; remove it from its inputs", m->name);
        }
        for (size_t k = 0; k < m->n_tests; k++) {
            const struct fr_model_test *t = &m->tests[k];
            const char *to = t->to_table ? strchr(t->to_table, '.') + 1 : NULL;
            const struct fr_model *tm = to ? fr_pipeline_model(p, to) : NULL;
            const struct fr_dataset *td = to ? fr_pipeline_dataset(p, to) : NULL;
            if (!to)
                continue;
            if (!tm && !td)
                return fail(c, at ? fr_cfg_map_get(c, at, "tests") : NULL,
                            "test %s of model '%s' points to unknown dataset or model '%s'; fix the name", t->name,
                            m->name, to);
            if ((tm && fr_column_index(tm->columns, tm->n_columns, t->field) < 0) ||
                (td && fr_column_index(td->columns, td->n_columns, t->field) < 0))
                return fail(c, at ? fr_cfg_map_get(c, at, "tests") : NULL,
                            "test %s of model '%s': '%s' is not a column of '%s'; fix the field", t->name, m->name,
                            t->field, to);
        }
    }
    if (n == 0)
        return true;
    sorted = fr_xcalloc(n, sizeof(*sorted));
    placed = fr_xcalloc(n, sizeof(*placed));
    while (done < n) {
        bool progress = false;
        for (size_t i = 0; i < n; i++) {
            bool ready = !placed[i];
            for (size_t k = 0; ready && k < p->models[i].n_inputs; k++) {
                for (size_t j = 0; j < n; j++)
                    if (!placed[j] && strcmp(p->models[j].name, p->models[i].inputs[k]) == 0)
                        ready = false;
            }
            if (!ready)
                continue;
            placed[i] = true;
            sorted[done] = p->models[i];
            sorted[done].order = (uint32_t)done;
            done++;
            progress = true;
        }
        if (!progress)
            break;
    }
    if (done < n) {
        size_t i = 0;
        while (placed[i])
            i++;
        free(sorted);
        free(placed);
        return fail(c, sec ? fr_cfg_map_get(c, sec, p->models[i].name) : root,
                    "model '%s' is part of a cycle of models reading each other; break the cycle", p->models[i].name);
    }
    memcpy(p->models, sorted, n * sizeof(*sorted));
    free(sorted);
    free(placed);
    return true;
}
