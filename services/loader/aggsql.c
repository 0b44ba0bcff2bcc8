/* aggsql: the SQL of aggregate models (aggsql.h). Each merge is written so
 * that merging two partial aggregates gives the aggregate of all their rows,
 * whatever the split and order:
 *  - sum, count: added (a sum over no non-null value is null);
 *  - min, max: LEAST / GREATEST (nulls ignored);
 *  - latest by b (b a max column): the value of the newer b; equal b: the
 *    greatest value (nulls last), as ORDER BY b DESC, value DESC NULLS LAST;
 *  - first by b (b a min column): mirror image;
 *  - list by b: the union of both lists' items re-sorted (b desc, value
 *    desc nulls last), cut to the window below the newest b, then to
 *    `limit` items. A bounded top-N of a union is the top-N of the union of
 *    top-Ns, and an item outside one part's window is outside the whole's. */
#include <stdio.h>
#include <string.h>

#include "aggsql.h"

static void agg_ident(struct fr_buf *s, const char *prefix, const char *name, const char *suffix)
{
    if (prefix)
        (void)fr_buf_puts(s, prefix);
    fr_buf_sql_ident(s, name);
    if (suffix)
        (void)fr_buf_puts(s, suffix);
}

/* "{name}__by" quoted. */
static void agg_by_array(struct fr_buf *s, const char *prefix, const char *name)
{
    char buf[96];
    snprintf(buf, sizeof(buf), "%s__by", name);
    agg_ident(s, prefix, buf, NULL);
}

/* The lower bound of a list's window: <newest> - within. */
static void agg_window(struct fr_buf *s, const struct fr_model *m, const struct fr_agg_col *a)
{
    enum fr_type t = m->columns[a->by].type;
    if (t == FR_T_TIMESTAMPTZ || t == FR_T_DATE)
        (void)fr_buf_printf(s, " - interval '%lld seconds'", (long long)a->within);
    else
        (void)fr_buf_printf(s, " - %lld", (long long)a->within);
}

static void agg_keys(struct fr_buf *s, const struct fr_model *m, const char *prefix, const char *suffix)
{
    for (size_t k = 0; k < m->n_key; k++) {
        if (k)
            (void)fr_buf_puts(s, ", ");
        agg_ident(s, prefix, m->key[k], suffix);
    }
}

/* The in-batch aggregate of column i (over fr_rows or fr_win). by_arr: the
 * order-value array of a list instead of its values. */
static void agg_batch(struct fr_buf *s, const struct fr_model *m, size_t i, bool by_arr)
{
    const struct fr_agg_col *a = &m->agg[i];
    const char *c = m->columns[i].name;
    const char *b = a->by >= 0 ? m->columns[a->by].name : NULL;

    switch (a->merge) {
    case FR_AGG_KEY:
        agg_ident(s, NULL, c, NULL);
        return;
    case FR_AGG_SUM:
        agg_ident(s, "sum(", c, ")");
        return;
    case FR_AGG_COUNT:
        agg_ident(s, "count(", c, ")");
        return;
    case FR_AGG_MIN:
        agg_ident(s, "min(", c, ")");
        return;
    case FR_AGG_MAX:
        agg_ident(s, "max(", c, ")");
        return;
    case FR_AGG_LATEST:
    case FR_AGG_FIRST: {
        const char *dir = a->merge == FR_AGG_LATEST ? " DESC NULLS LAST" : " ASC NULLS LAST";
        agg_ident(s, "(array_agg(", c, " ORDER BY ");
        agg_ident(s, NULL, b, dir);
        agg_ident(s, ", ", c, dir);
        (void)fr_buf_puts(s, "))[1]");
        return;
    }
    case FR_AGG_LIST:
        agg_ident(s, "(array_agg(", by_arr ? b : c, " ORDER BY ");
        agg_ident(s, NULL, b, " DESC, ");
        agg_ident(s, NULL, c, " DESC NULLS LAST) FILTER (WHERE ");
        agg_ident(s, NULL, b, " IS NOT NULL");
        if (a->within > 0) {
            agg_ident(s, " AND ", b, " >= ");
            (void)fr_buf_printf(s, "fr_max_%zu", i);
            agg_window(s, m, a);
        }
        (void)fr_buf_puts(s, "))");
        if (a->limit > 0)
            (void)fr_buf_printf(s, "[1:%u]", a->limit);
        return;
    }
}

/* The SET expression merging column i of EXCLUDED into the stored row fr_t
 * (a list: agg_merge_list). */
static void agg_merge(struct fr_buf *s, const struct fr_model *m, size_t i)
{
    const struct fr_agg_col *a = &m->agg[i];
    const char *c = m->columns[i].name;
    const char *b = a->by >= 0 ? m->columns[a->by].name : NULL;

    switch (a->merge) {
    case FR_AGG_KEY:
        return;
    case FR_AGG_SUM:
        agg_ident(s, "COALESCE(fr_t.", c, " + ");
        agg_ident(s, "EXCLUDED.", c, ", ");
        agg_ident(s, "fr_t.", c, ", ");
        agg_ident(s, "EXCLUDED.", c, ")");
        return;
    case FR_AGG_COUNT:
        agg_ident(s, "COALESCE(fr_t.", c, ", 0) + ");
        agg_ident(s, "COALESCE(EXCLUDED.", c, ", 0)");
        return;
    case FR_AGG_MIN:
    case FR_AGG_MAX:
        agg_ident(s, a->merge == FR_AGG_MIN ? "LEAST(fr_t." : "GREATEST(fr_t.", c, ", ");
        agg_ident(s, "EXCLUDED.", c, ")");
        return;
    case FR_AGG_LATEST:
    case FR_AGG_FIRST: {
        bool latest = a->merge == FR_AGG_LATEST;
        agg_ident(s, "CASE WHEN EXCLUDED.", b, latest ? " > " : " < ");
        agg_ident(s, "fr_t.", b, " OR (");
        agg_ident(s, "fr_t.", b, " IS NULL AND ");
        agg_ident(s, "EXCLUDED.", b, " IS NOT NULL) THEN ");
        agg_ident(s, "EXCLUDED.", c, " WHEN ");
        agg_ident(s, "EXCLUDED.", b, " IS NOT DISTINCT FROM ");
        agg_ident(s, "fr_t.", b, latest ? " THEN GREATEST(" : " THEN LEAST(");
        agg_ident(s, "fr_t.", c, ", ");
        agg_ident(s, "EXCLUDED.", c, ") ELSE ");
        agg_ident(s, "fr_t.", c, " END");
        return;
    }
    case FR_AGG_LIST:
        return; /* agg_merge_list */
    }
}

/* The SET of a list column and its order values, one sub-SELECT for both:
 * ("c", "c__by") = (SELECT <values>, <order values> FROM <merged items>).
 * Both stored arrays are sorted (newest order value first), so the newest
 * of the union is the greater first item. One side empty: the other is
 * already sorted and cut, and the sub-SELECT's items are none. The items
 * are sorted once for the cut (LIMIT) and by each array_agg. */
static void agg_merge_list(struct fr_buf *s, const struct fr_model *m, size_t i)
{
    const struct fr_agg_col *a = &m->agg[i];
    const char *c = m->columns[i].name;

    agg_ident(s, "(", c, ", ");
    agg_by_array(s, NULL, c);
    (void)fr_buf_puts(s, ") = (SELECT ");
    for (int by = 0; by < 2; by++) {
        agg_by_array(s, by ? ", CASE WHEN EXCLUDED." : "CASE WHEN EXCLUDED.", c);
        (void)fr_buf_puts(s, " IS NULL THEN ");
        if (by)
            agg_by_array(s, "fr_t.", c);
        else
            agg_ident(s, "fr_t.", c, NULL);
        agg_by_array(s, " WHEN fr_t.", c);
        (void)fr_buf_puts(s, " IS NULL THEN ");
        if (by)
            agg_by_array(s, "EXCLUDED.", c);
        else
            agg_ident(s, "EXCLUDED.", c, NULL);
        (void)fr_buf_puts(s, by ? " ELSE array_agg(fr_l.b ORDER BY fr_l.b DESC, fr_l.v DESC NULLS LAST) END"
                                : " ELSE array_agg(fr_l.v ORDER BY fr_l.b DESC, fr_l.v DESC NULLS LAST) END");
    }
    (void)fr_buf_puts(s, " FROM (SELECT fr_u.b, fr_u.v FROM unnest(");
    agg_by_array(s, "fr_t.", c);
    agg_by_array(s, " || EXCLUDED.", c);
    agg_ident(s, ", fr_t.", c, " || ");
    agg_ident(s, "EXCLUDED.", c, ") AS fr_u(b, v) WHERE ");
    agg_by_array(s, "EXCLUDED.", c);
    agg_by_array(s, " IS NOT NULL AND fr_t.", c);
    (void)fr_buf_puts(s, " IS NOT NULL");
    if (a->within > 0) {
        agg_by_array(s, " AND fr_u.b >= GREATEST(fr_t.", c);
        agg_by_array(s, "[1], EXCLUDED.", c);
        (void)fr_buf_puts(s, "[1])");
        agg_window(s, m, a);
    }
    if (a->limit > 0)
        (void)fr_buf_printf(s, " ORDER BY fr_u.b DESC, fr_u.v DESC NULLS LAST LIMIT %u", a->limit);
    (void)fr_buf_puts(s, ") AS fr_l)");
}

static bool agg_has_window(const struct fr_model *m)
{
    for (size_t i = 0; i < m->n_columns; i++)
        if (m->agg[i].merge == FR_AGG_LIST && m->agg[i].within > 0)
            return true;
    return false;
}

/* Column list of the table: every column, plus "{name}__by" after each list. */
static void agg_table_cols(struct fr_buf *s, const struct fr_model *m, const char *prefix)
{
    for (size_t i = 0; i < m->n_columns; i++) {
        if (i)
            (void)fr_buf_puts(s, ", ");
        agg_ident(s, prefix, m->columns[i].name, NULL);
        if (m->agg[i].merge == FR_AGG_LIST) {
            (void)fr_buf_puts(s, ", ");
            agg_by_array(s, prefix, m->columns[i].name);
        }
    }
}

void fr_aggsql_apply(struct fr_buf *s, const struct fr_model *m, const struct fr_dataset *ds, const char *src,
                     bool returning)
{
    size_t n = strlen(m->sql);
    bool any_set = false;

    while (n > 0 && (m->sql[n - 1] == ';' || m->sql[n - 1] == ' ' || m->sql[n - 1] == '\n' || m->sql[n - 1] == '\t' ||
                     m->sql[n - 1] == '\r'))
        n--;
    /* The rows under the model's name for them. */
    agg_ident(s, "WITH ", m->as, " AS (SELECT ");
    for (size_t i = 0; i < ds->n_columns; i++)
        agg_ident(s, i ? ", " : NULL, ds->columns[i].name, NULL);
    (void)fr_buf_printf(s, " FROM %s),\nfr_rows AS (\n", src);
    (void)fr_buf_append(s, m->sql, n);
    (void)fr_buf_puts(s, "\n),\n");
    if (agg_has_window(m)) {
        /* Each list's newest order value per key, for its window. */
        (void)fr_buf_puts(s, "fr_win AS (SELECT fr_rows.*");
        for (size_t i = 0; i < m->n_columns; i++) {
            if (m->agg[i].merge != FR_AGG_LIST || m->agg[i].within == 0)
                continue;
            agg_ident(s, ", max(", m->columns[m->agg[i].by].name, ") OVER (PARTITION BY ");
            agg_keys(s, m, NULL, NULL);
            (void)fr_buf_printf(s, ") AS fr_max_%zu", i);
        }
        (void)fr_buf_puts(s, " FROM fr_rows),\n");
    }
    (void)fr_buf_puts(s, "fr_agg AS (SELECT ");
    for (size_t i = 0; i < m->n_columns; i++) {
        if (i)
            (void)fr_buf_puts(s, ", ");
        agg_batch(s, m, i, false);
        agg_ident(s, " AS ", m->columns[i].name, NULL);
        if (m->agg[i].merge == FR_AGG_LIST) {
            (void)fr_buf_puts(s, ", ");
            agg_batch(s, m, i, true);
            agg_by_array(s, " AS ", m->columns[i].name);
        }
    }
    (void)fr_buf_puts(s, agg_has_window(m) ? " FROM fr_win WHERE " : " FROM fr_rows WHERE ");
    for (size_t k = 0; k < m->n_key; k++)
        agg_ident(s, k ? " AND " : NULL, m->key[k], " IS NOT NULL");
    (void)fr_buf_puts(s, " GROUP BY ");
    agg_keys(s, m, NULL, NULL);
    (void)fr_buf_puts(s, ")\nINSERT INTO ");
    fr_buf_sql_ident(s, m->table);
    (void)fr_buf_puts(s, " AS fr_t (");
    agg_table_cols(s, m, NULL);
    (void)fr_buf_puts(s, ") SELECT ");
    agg_table_cols(s, m, NULL);
    (void)fr_buf_puts(s, " FROM fr_agg ON CONFLICT (");
    agg_keys(s, m, NULL, NULL);
    (void)fr_buf_puts(s, ") DO ");
    for (size_t i = 0; i < m->n_columns; i++) {
        if (m->agg[i].merge == FR_AGG_KEY)
            continue;
        (void)fr_buf_puts(s, any_set ? ",\n  " : "UPDATE SET\n  ");
        any_set = true;
        if (m->agg[i].merge == FR_AGG_LIST) {
            agg_merge_list(s, m, i);
            continue;
        }
        agg_ident(s, NULL, m->columns[i].name, " = ");
        agg_merge(s, m, i);
    }
    if (!any_set)
        (void)fr_buf_puts(s, "NOTHING");
    if (returning) {
        (void)fr_buf_puts(s, "\nRETURNING ");
        agg_keys(s, m, "fr_t.", "::text");
    }
}

void fr_aggsql_table(struct fr_buf *s, const struct fr_model *m, bool alter)
{
    if (alter) {
        agg_ident(s, "ALTER TABLE ", m->table, NULL);
    } else {
        agg_ident(s, "CREATE TABLE IF NOT EXISTS ", m->table, " (");
    }
    for (size_t i = 0; i < m->n_columns; i++) {
        const struct fr_column *c = &m->columns[i];
        bool list = m->agg[i].merge == FR_AGG_LIST;
        (void)fr_buf_puts(s, alter ? (i ? ", ADD COLUMN IF NOT EXISTS " : " ADD COLUMN IF NOT EXISTS ")
                                   : (i ? ", " : ""));
        agg_ident(s, NULL, c->name, NULL);
        (void)fr_buf_printf(s, " %s%s", fr_type_sql(c->type), list ? "[]" : "");
        if (list) {
            (void)fr_buf_puts(s, alter ? ", ADD COLUMN IF NOT EXISTS " : ", ");
            agg_by_array(s, NULL, c->name);
            (void)fr_buf_printf(s, " %s[]", fr_type_sql(m->columns[m->agg[i].by].type));
        }
    }
    if (!alter) {
        (void)fr_buf_puts(s, ", PRIMARY KEY (");
        agg_keys(s, m, NULL, NULL);
        (void)fr_buf_puts(s, "))");
    }
}
