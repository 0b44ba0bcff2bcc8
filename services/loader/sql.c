/* sql: the SQL text of the loader's statements, built from the pipeline's
 * config (sql.h). Pure: no I/O, no state. Names inside string literals are
 * identifiers validated by config ([a-z_][a-z0-9_]*); every other name is
 * quoted with fr_buf_sql_ident. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

static bool has_col(const char *const *cols, size_t n_cols, const char *name)
{
    for (size_t i = 0; i < n_cols; i++)
        if (strcmp(cols[i], name) == 0)
            return true;
    return false;
}

static void put_cols(struct fr_buf *s, const char *const *cols, size_t n_cols)
{
    for (size_t i = 0; i < n_cols; i++) {
        if (i)
            (void)fr_buf_puts(s, ", ");
        fr_buf_sql_ident(s, cols[i]);
    }
}

static void put_keys(struct fr_buf *s, const struct fr_dataset *ds)
{
    for (size_t k = 0; k < ds->n_key; k++) {
        if (k)
            (void)fr_buf_puts(s, ", ");
        fr_buf_sql_ident(s, ds->key[k]);
    }
}

static bool is_key_col(const struct fr_dataset *ds, const char *name)
{
    for (size_t k = 0; k < ds->n_key; k++)
        if (strcmp(ds->key[k], name) == 0)
            return true;
    return false;
}

static const struct fr_column *ds_col(const struct fr_dataset *ds, const char *name)
{
    int i = fr_column_index(ds->columns, ds->n_columns, name);
    return i < 0 ? NULL : &ds->columns[i];
}

/* fr_t.k = <alias>.k AND ... */
static void put_key_match(struct fr_buf *s, const struct fr_dataset *ds, const char *a, const char *b)
{
    for (size_t k = 0; k < ds->n_key; k++) {
        if (k)
            (void)fr_buf_puts(s, " AND ");
        (void)fr_buf_printf(s, "%s.", a);
        fr_buf_sql_ident(s, ds->key[k]);
        (void)fr_buf_printf(s, " = %s.", b);
        fr_buf_sql_ident(s, ds->key[k]);
    }
}

/* (a.k1, a.k2) IS DISTINCT FROM (b.k1, b.k2) */
static void put_key_distinct(struct fr_buf *s, const struct fr_dataset *ds, const char *a, const char *b)
{
    (void)fr_buf_puts(s, "ROW(");
    for (size_t k = 0; k < ds->n_key; k++) {
        (void)fr_buf_printf(s, "%s%s.", k ? ", " : "", a);
        fr_buf_sql_ident(s, ds->key[k]);
    }
    (void)fr_buf_puts(s, ") IS DISTINCT FROM ROW(");
    for (size_t k = 0; k < ds->n_key; k++) {
        (void)fr_buf_printf(s, "%s%s.", k ? ", " : "", b);
        fr_buf_sql_ident(s, ds->key[k]);
    }
    (void)fr_buf_putc(s, ')');
}

void fr_sql_stage(struct fr_buf *s, const struct fr_dataset *ds, size_t first_row)
{
    /* fr_row: the row's 0-based index in the batch (one COPY of rows
     * [first_row, ...) fills the identity in row order). A stage left by
     * another dataset's batch is dropped first (no NOTICE when there is
     * none). ON COMMIT DELETE ROWS: the table stays for the connection's
     * next batches of the dataset (fr_sql_stage_reset). */
    (void)fr_buf_puts(s, "DO $fr$BEGIN IF to_regclass('pg_temp.fr_stage') IS NOT NULL THEN DROP TABLE "
                         "pg_temp.fr_stage; END IF; CREATE TEMP TABLE fr_stage (LIKE ");
    fr_buf_sql_ident(s, ds->table);
    (void)fr_buf_printf(s,
                        " INCLUDING DEFAULTS, fr_row integer GENERATED ALWAYS AS IDENTITY (START WITH %zu "
                        "MINVALUE 0)) ON COMMIT DELETE ROWS; END$fr$",
                        first_row);
}

void fr_sql_copy(struct fr_buf *s, const struct fr_dataset *ds, bool staged, const char *const *cols, size_t n_cols)
{
    (void)fr_buf_puts(s, "COPY ");
    if (staged)
        (void)fr_buf_puts(s, "fr_stage");
    else
        fr_buf_sql_ident(s, ds->table);
    (void)fr_buf_puts(s, " (");
    put_cols(s, cols, n_cols);
    (void)fr_buf_puts(s, ") FROM STDIN");
}

/* True when some non-key column of the batch has a merge rule other than
 * replace: rows of one key are then combined with GROUP BY. */
static bool has_merge_rules(const struct fr_dataset *ds, const char *const *cols, size_t n_cols)
{
    for (size_t i = 0; i < n_cols; i++) {
        const struct fr_column *c = ds_col(ds, cols[i]);
        if (c && !is_key_col(ds, c->name) && c->merge != FR_MERGE_REPLACE)
            return true;
    }
    return false;
}

/* The in-batch combination of column `name` over the rows of one key. */
static void put_group_agg(struct fr_buf *s, const struct fr_dataset *ds, const char *name, bool has_version)
{
    const struct fr_column *c = ds_col(ds, name);
    enum fr_merge m = c ? c->merge : FR_MERGE_REPLACE;

    switch (m) {
    case FR_MERGE_MIN:
    case FR_MERGE_MAX:
        (void)fr_buf_puts(s, m == FR_MERGE_MIN ? "min(" : "max(");
        fr_buf_sql_ident(s, name);
        (void)fr_buf_putc(s, ')');
        break;
    case FR_MERGE_KEEP:
    case FR_MERGE_COALESCE:
        (void)fr_buf_puts(s, "(array_agg(");
        fr_buf_sql_ident(s, name);
        (void)fr_buf_puts(s, m == FR_MERGE_KEEP ? " ORDER BY fr_row) FILTER (WHERE "
                                                : " ORDER BY fr_row DESC) FILTER (WHERE ");
        fr_buf_sql_ident(s, name);
        (void)fr_buf_puts(s, " IS NOT NULL))[1]");
        break;
    case FR_MERGE_REPLACE:
        (void)fr_buf_puts(s, "(array_agg(");
        fr_buf_sql_ident(s, name);
        (void)fr_buf_puts(s, " ORDER BY ");
        if (has_version) {
            fr_buf_sql_ident(s, ds->version);
            (void)fr_buf_puts(s, " DESC NULLS LAST, ");
        }
        (void)fr_buf_puts(s, "fr_row DESC))[1]");
        break;
    }
}

/* The SET expression of column `name` against the stored row. */
static void put_set(struct fr_buf *s, const struct fr_dataset *ds, const char *name, bool has_version, bool guard)
{
    const struct fr_column *c = ds_col(ds, name);
    enum fr_merge m = c ? c->merge : FR_MERGE_REPLACE;
    static const char *const fn[] = {
        [FR_MERGE_MIN] = "LEAST",
        [FR_MERGE_MAX] = "GREATEST",
        [FR_MERGE_KEEP] = "COALESCE",
        [FR_MERGE_COALESCE] = "COALESCE",
    };

    fr_buf_sql_ident(s, name);
    (void)fr_buf_puts(s, " = ");
    if (m == FR_MERGE_REPLACE) {
        if (has_version && guard) {
            /* Mixed with merge rules: no WHERE on the whole row, so guard
             * each replaced column by the version. */
            (void)fr_buf_puts(s, "CASE WHEN fr_t.");
            fr_buf_sql_ident(s, ds->version);
            (void)fr_buf_puts(s, " IS NULL OR fr_t.");
            fr_buf_sql_ident(s, ds->version);
            (void)fr_buf_puts(s, " <= EXCLUDED.");
            fr_buf_sql_ident(s, ds->version);
            (void)fr_buf_puts(s, " THEN EXCLUDED.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " ELSE fr_t.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " END");
        } else {
            (void)fr_buf_puts(s, "EXCLUDED.");
            fr_buf_sql_ident(s, name);
        }
        return;
    }
    (void)fr_buf_printf(s, "%s(%s.", fn[m], m == FR_MERGE_COALESCE ? "EXCLUDED" : "fr_t");
    fr_buf_sql_ident(s, name);
    (void)fr_buf_printf(s, ", %s.", m == FR_MERGE_COALESCE ? "fr_t" : "EXCLUDED");
    fr_buf_sql_ident(s, name);
    (void)fr_buf_putc(s, ')');
}

/* Delete batches: a soft delete (UPDATE ... SET soft_delete = $1, the
 * batch's produced time) or a DELETE; $1 unused by the DELETE. */
static bool build_delete(struct fr_buf *s, const struct fr_dataset *ds, enum fr_batch_op op)
{
    if (ds->soft_delete && op == FR_OP_DELETE) {
        (void)fr_buf_puts(s, "UPDATE ");
        fr_buf_sql_ident(s, ds->table);
        (void)fr_buf_puts(s, " AS fr_t SET ");
        fr_buf_sql_ident(s, ds->soft_delete);
        (void)fr_buf_puts(s, " = $1::timestamptz FROM fr_stage AS fr_s WHERE ");
        put_key_match(s, ds, "fr_t", "fr_s");
        (void)fr_buf_puts(s, " AND fr_t.");
        fr_buf_sql_ident(s, ds->soft_delete);
        (void)fr_buf_puts(s, " IS NULL");
        return true;
    }
    (void)fr_buf_puts(s, "DELETE FROM ");
    fr_buf_sql_ident(s, ds->table);
    (void)fr_buf_puts(s, " AS fr_t USING fr_stage AS fr_s WHERE ");
    put_key_match(s, ds, "fr_t", "fr_s");
    return false;
}

/* The upsert (or delete) of the stage into the table. Returns true when
 * the statement takes $1 (the batch time). */
bool fr_sql_merge(struct fr_buf *s, const struct fr_dataset *ds, const char *const *cols, size_t n_cols,
                  enum fr_batch_op op)
{
    size_t start = s->len;
    bool has_version = ds->version && has_col(cols, n_cols, ds->version);
    bool grouped = has_merge_rules(ds, cols, n_cols);
    bool reactivate = ds->soft_delete && !has_col(cols, n_cols, ds->soft_delete);
    bool any_set = false;

    if (op != FR_OP_UPSERT)
        return build_delete(s, ds, op);
    if (ds->n_key == 0) {
        /* Append-only, staged for an aggregate model: every row goes in. */
        (void)fr_buf_puts(s, "INSERT INTO ");
        fr_buf_sql_ident(s, ds->table);
        (void)fr_buf_puts(s, " (");
        put_cols(s, cols, n_cols);
        (void)fr_buf_puts(s, ") SELECT ");
        put_cols(s, cols, n_cols);
        (void)fr_buf_puts(s, " FROM fr_stage");
        return false;
    }
    (void)fr_buf_puts(s, "INSERT INTO ");
    fr_buf_sql_ident(s, ds->table);
    (void)fr_buf_puts(s, " AS fr_t (");
    put_cols(s, cols, n_cols);
    if (grouped) {
        /* Rows of one key combine by the merge rules, whatever their order. */
        (void)fr_buf_puts(s, ") SELECT ");
        for (size_t i = 0; i < n_cols; i++) {
            const char *name = cols[i];
            if (i)
                (void)fr_buf_puts(s, ", ");
            if (is_key_col(ds, name))
                fr_buf_sql_ident(s, name);
            else
                put_group_agg(s, ds, name, has_version);
        }
        (void)fr_buf_puts(s, " FROM fr_stage GROUP BY ");
        put_keys(s, ds);
    } else {
        (void)fr_buf_puts(s, ") SELECT DISTINCT ON (");
        put_keys(s, ds);
        (void)fr_buf_puts(s, ") ");
        put_cols(s, cols, n_cols);
        (void)fr_buf_puts(s, " FROM fr_stage ORDER BY ");
        put_keys(s, ds);
        if (has_version) {
            (void)fr_buf_puts(s, ", ");
            fr_buf_sql_ident(s, ds->version);
            (void)fr_buf_puts(s, " DESC NULLS LAST");
        }
        /* fr_row is the row's index in the batch: the last row wins among
         * equal versions. */
        (void)fr_buf_puts(s, ", fr_row DESC");
    }
    (void)fr_buf_puts(s, " ON CONFLICT (");
    put_keys(s, ds);
    (void)fr_buf_puts(s, ") DO UPDATE SET ");
    for (size_t i = 0; i < n_cols; i++) {
        const char *name = cols[i];
        if (is_key_col(ds, name))
            continue;
        if (any_set)
            (void)fr_buf_puts(s, ", ");
        any_set = true;
        put_set(s, ds, name, has_version, grouped);
    }
    if (reactivate) {
        /* A write of a soft-deleted key brings it back. */
        if (any_set)
            (void)fr_buf_puts(s, ", ");
        any_set = true;
        fr_buf_sql_ident(s, ds->soft_delete);
        (void)fr_buf_puts(s, " = NULL");
    }
    if (!any_set) {
        /* Only key columns: nothing to update. */
        s->len = start; /* drop the upsert written so far */
        s->data[start] = '\0';
        (void)fr_buf_puts(s, "INSERT INTO ");
        fr_buf_sql_ident(s, ds->table);
        (void)fr_buf_puts(s, " (");
        put_cols(s, cols, n_cols);
        (void)fr_buf_puts(s, ") SELECT DISTINCT ");
        put_cols(s, cols, n_cols);
        (void)fr_buf_puts(s, " FROM fr_stage ON CONFLICT DO NOTHING");
        return false;
    }
    if (has_version && !grouped) {
        (void)fr_buf_puts(s, " WHERE fr_t.");
        fr_buf_sql_ident(s, ds->version);
        (void)fr_buf_puts(s, " IS NULL OR fr_t.");
        fr_buf_sql_ident(s, ds->version);
        (void)fr_buf_puts(s, " <= EXCLUDED.");
        fr_buf_sql_ident(s, ds->version);
    }
    return false;
}

/* True when the batch must go through LOAD_CHECK: an upsert carrying a
 * references or unique column. */
bool fr_sql_needs_check(const struct fr_dataset *ds, const char *const *cols, size_t n_cols, enum fr_batch_op op)
{
    if (ds->n_key == 0 || op != FR_OP_UPSERT)
        return false;
    for (size_t i = 0; i < n_cols; i++) {
        const struct fr_column *c = ds_col(ds, cols[i]);
        if (c && (c->references || c->unique))
            return true;
    }
    return false;
}

/* One statement: finds the rows breaking a references/unique constraint
 * (one reason per row, the first column's), deletes them from the stage,
 * records them in the ledger row ($1 = batch id) and returns them as
 * fr_row, field, value, kind, reason. Names inside the string literals are
 * identifiers validated by config ([a-z_][a-z0-9_]*). */
void fr_sql_check(struct fr_buf *s, const struct fr_pipeline *p, const struct fr_dataset *ds, const char *const *cols,
                  size_t n_cols)
{
    bool first = true;

    (void)fr_buf_puts(s, "WITH fr_bad AS (");
    for (size_t i = 0; i < n_cols; i++) {
        const char *name = cols[i];
        const struct fr_column *c = ds_col(ds, name);
        const struct fr_dataset *ref = c && c->references ? fr_pipeline_dataset(p, c->references) : NULL;

        if (ref && ref->n_key == 1) {
            if (!first)
                (void)fr_buf_puts(s, " UNION ALL ");
            first = false;
            (void)fr_buf_printf(s, "SELECT fr_s.fr_row, %zu AS fr_ci, '%s'::text AS field, fr_s.", i, name);
            fr_buf_sql_ident(s, name);
            (void)fr_buf_printf(s,
                                "::text AS value, 'reference'::text AS kind, format('%%s %%s does not exist in %s', "
                                "'%s'::text, fr_s.",
                                ref->name, name);
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, ") AS reason FROM fr_stage fr_s WHERE fr_s.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ");
            fr_buf_sql_ident(s, ref->table);
            (void)fr_buf_puts(s, " fr_r WHERE fr_r.");
            fr_buf_sql_ident(s, ref->key[0]);
            (void)fr_buf_puts(s, " = fr_s.");
            fr_buf_sql_ident(s, name);
            if (ref->soft_delete) {
                (void)fr_buf_puts(s, " AND fr_r.");
                fr_buf_sql_ident(s, ref->soft_delete);
                (void)fr_buf_puts(s, " IS NULL");
            }
            (void)fr_buf_putc(s, ')');
        }
        if (c && c->unique) {
            if (!first)
                (void)fr_buf_puts(s, " UNION ALL ");
            first = false;
            (void)fr_buf_printf(s, "SELECT fr_s.fr_row, %zu AS fr_ci, '%s'::text AS field, fr_s.", i, name);
            fr_buf_sql_ident(s, name);
            (void)fr_buf_printf(s,
                                "::text AS value, 'unique'::text AS kind, format('%%s %%s is already used by "
                                "another row of %s', '%s'::text, fr_s.",
                                ds->name, name);
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, ") AS reason FROM fr_stage fr_s WHERE fr_s.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " IS NOT NULL AND (EXISTS (SELECT 1 FROM ");
            fr_buf_sql_ident(s, ds->table);
            (void)fr_buf_puts(s, " fr_o WHERE fr_o.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " = fr_s.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " AND ");
            put_key_distinct(s, ds, "fr_o", "fr_s");
            if (ds->soft_delete) {
                (void)fr_buf_puts(s, " AND fr_o.");
                fr_buf_sql_ident(s, ds->soft_delete);
                (void)fr_buf_puts(s, " IS NULL");
            }
            (void)fr_buf_puts(s, ") OR EXISTS (SELECT 1 FROM fr_stage fr_e WHERE fr_e.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " = fr_s.");
            fr_buf_sql_ident(s, name);
            (void)fr_buf_puts(s, " AND fr_e.fr_row < fr_s.fr_row AND ");
            put_key_distinct(s, ds, "fr_e", "fr_s");
            (void)fr_buf_puts(s, "))");
        }
    }
    (void)fr_buf_puts(
        s, "),\nfr_one AS (SELECT DISTINCT ON (fr_row) fr_row, field, value, kind, reason FROM fr_bad "
           "ORDER BY fr_row, fr_ci),\n"
           "fr_del AS (DELETE FROM fr_stage WHERE fr_row IN (SELECT fr_row FROM fr_one)),\n"
           "fr_led AS (UPDATE freshet.batches SET rejected = COALESCE((SELECT jsonb_agg(jsonb_build_object("
           "'row', fr_row, 'field', field, 'value', value, 'kind', kind, 'reason', reason) ORDER BY "
           "fr_row) FROM fr_one), '[]'::jsonb) WHERE batch_id = $1)\n"
           "SELECT fr_row::text, field, value, kind, reason FROM fr_one ORDER BY fr_row");
}

/* Retention of the batch's keys: DELETE the rows whose greatest retention
 * column is before $1 (the cutoff). */
void fr_sql_retain(struct fr_buf *s, const struct fr_dataset *ds)
{
    (void)fr_buf_puts(s, "DELETE FROM ");
    fr_buf_sql_ident(s, ds->table);
    (void)fr_buf_puts(s, " AS fr_t USING fr_stage AS fr_s WHERE ");
    put_key_match(s, ds, "fr_t", "fr_s");
    (void)fr_buf_puts(s, " AND GREATEST(");
    for (size_t i = 0; i < ds->n_retention_columns; i++) {
        (void)fr_buf_puts(s, i ? ", fr_t." : "fr_t.");
        fr_buf_sql_ident(s, ds->retention_columns[i]);
    }
    (void)fr_buf_puts(s, ") < $1::timestamptz");
}
static void put_col_list(struct fr_buf *s, const struct fr_model *m, const char *prefix, const char *suffix)
{
    for (size_t i = 0; i < m->n_columns; i++) {
        if (i)
            (void)fr_buf_puts(s, ", ");
        if (prefix)
            (void)fr_buf_puts(s, prefix);
        fr_buf_sql_ident(s, m->columns[i].name);
        if (suffix)
            (void)fr_buf_puts(s, suffix);
    }
}

/* WITH args AS (...),                      -- fixes the types of $1 and $2
 *      new AS (<model SQL>),
 *      up AS (INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE changed RETURNING *),
 *      del AS (DELETE rows of the recomputed keys the model no longer yields RETURNING *)
 * SELECT false, up.* (as text) UNION ALL SELECT true, del.* (as text)
 * The keyed statement finds the recomputed rows through the key's index
 * (key = ANY ($1 as the key's type)): its cost follows the keys, not the
 * table; the full one compares every row. */
void fr_sql_model_refresh(struct fr_buf *s, const struct fr_model *m, bool all)
{
    size_t n = strlen(m->sql);
    bool any_set = false;
    int key_col = m->n_key == 1 ? fr_column_index(m->columns, m->n_columns, m->key[0]) : -1;
    size_t conflict; /* offset of the conflict clause's ")" */

    while (n > 0 && (m->sql[n - 1] == ';' || m->sql[n - 1] == ' ' || m->sql[n - 1] == '\n' || m->sql[n - 1] == '\t' ||
                     m->sql[n - 1] == '\r'))
        n--;
    (void)fr_buf_puts(s, "WITH fr_args AS (SELECT $1::text[] AS keys, $2::timestamptz AS now),\nfr_new AS (\n");
    (void)fr_buf_append(s, m->sql, n);
    (void)fr_buf_puts(s, "\n),\nfr_up AS (INSERT INTO ");
    fr_buf_sql_ident(s, m->table);
    (void)fr_buf_puts(s, " AS fr_t (");
    put_col_list(s, m, NULL, NULL);
    (void)fr_buf_puts(s, ") SELECT ");
    put_col_list(s, m, NULL, NULL);
    (void)fr_buf_puts(s, " FROM fr_new ON CONFLICT (");
    for (size_t k = 0; k < m->n_key; k++) {
        if (k)
            (void)fr_buf_puts(s, ", ");
        fr_buf_sql_ident(s, m->key[k]);
    }
    conflict = s->len;
    (void)fr_buf_puts(s, ") DO UPDATE SET ");
    for (size_t i = 0; i < m->n_columns; i++) {
        bool is_key = false;
        for (size_t k = 0; k < m->n_key; k++)
            is_key = is_key || strcmp(m->key[k], m->columns[i].name) == 0;
        if (is_key)
            continue;
        if (any_set)
            (void)fr_buf_puts(s, ", ");
        any_set = true;
        fr_buf_sql_ident(s, m->columns[i].name);
        (void)fr_buf_puts(s, " = EXCLUDED.");
        fr_buf_sql_ident(s, m->columns[i].name);
    }
    if (!any_set) {
        /* Key-only model: rewrite the conflict clause to "nothing to do". */
        s->len = conflict + 1;
        s->data[s->len] = '\0';
        (void)fr_buf_puts(s, " DO NOTHING");
    } else {
        (void)fr_buf_puts(s, " WHERE (");
        put_col_list(s, m, "fr_t.", NULL);
        (void)fr_buf_puts(s, ") IS DISTINCT FROM (");
        put_col_list(s, m, "EXCLUDED.", NULL);
        (void)fr_buf_putc(s, ')');
    }
    (void)fr_buf_puts(s, " RETURNING ");
    put_col_list(s, m, "fr_t.", NULL);
    (void)fr_buf_puts(s, "),\nfr_del AS (DELETE FROM ");
    fr_buf_sql_ident(s, m->table);
    (void)fr_buf_puts(s, " AS fr_m WHERE ");
    if (!all && key_col >= 0) {
        /* The keys are text: a text key column is matched through its index,
         * another as text, as the keys were made (a cast of the keys could
         * fail, or match rows the model's own text filter did not yield). */
        (void)fr_buf_puts(s, "fr_m.");
        fr_buf_sql_ident(s, m->key[0]);
        (void)fr_buf_puts(s, m->columns[key_col].type == FR_T_TEXT ? " = ANY ($1::text[]) AND "
                                                                   : "::text = ANY ($1::text[]) AND ");
    } else if (!all) {
        (void)fr_buf_puts(s, "false AND "); /* a composite key: only a full refresh deletes */
    }
    (void)fr_buf_puts(s, "NOT EXISTS (SELECT 1 FROM fr_new fr_n WHERE ");
    for (size_t k = 0; k < m->n_key; k++) {
        if (k)
            (void)fr_buf_puts(s, " AND ");
        (void)fr_buf_puts(s, "fr_n.");
        fr_buf_sql_ident(s, m->key[k]);
        (void)fr_buf_puts(s, " = fr_m.");
        fr_buf_sql_ident(s, m->key[k]);
    }
    (void)fr_buf_puts(s, ") RETURNING ");
    put_col_list(s, m, "fr_m.", NULL);
    if (all) {
        /* Every row may change: kept on the server, read in pages. */
        (void)fr_buf_puts(s, ")\nINSERT INTO pg_temp.fr_changed (deleted, v) SELECT false, ARRAY[");
        put_col_list(s, m, NULL, "::text");
        (void)fr_buf_puts(s, "] FROM fr_up UNION ALL SELECT true, ARRAY[");
        put_col_list(s, m, NULL, "::text");
        (void)fr_buf_puts(s, "] FROM fr_del");
        return;
    }
    (void)fr_buf_puts(s, ")\nSELECT false, ");
    put_col_list(s, m, NULL, "::text");
    (void)fr_buf_puts(s, " FROM fr_up UNION ALL SELECT true, ");
    put_col_list(s, m, NULL, "::text");
    (void)fr_buf_puts(s, " FROM fr_del");
}

void fr_sql_model_page(struct fr_buf *s, const struct fr_model *m)
{
    (void)fr_buf_puts(s, "SELECT deleted");
    for (size_t i = 0; i < m->n_columns; i++)
        (void)fr_buf_printf(s, ", v[%zu]", i + 1);
    (void)fr_buf_puts(s, " FROM pg_temp.fr_changed WHERE id > $1::bigint AND id <= $2::bigint ORDER BY id");
}

void fr_sql_resync_declare(struct fr_buf *s, const struct fr_model *m)
{
    (void)fr_buf_puts(s, "DECLARE fr_resync NO SCROLL CURSOR FOR SELECT ");
    for (size_t i = 0; i < m->n_columns; i++) {
        if (i)
            (void)fr_buf_puts(s, ", ");
        fr_buf_sql_ident(s, m->columns[i].name);
    }
    (void)fr_buf_puts(s, " FROM ");
    fr_buf_sql_ident(s, m->table);
}

void fr_sql_resync_stale(struct fr_buf *s, const struct fr_model *m, size_t key_col)
{
    (void)fr_buf_puts(s, "DECLARE fr_resync NO SCROLL CURSOR FOR SELECT DISTINCT c.k FROM pg_temp.fr_cachekeys c "
                         "WHERE NOT EXISTS (SELECT 1 FROM ");
    fr_buf_sql_ident(s, m->table);
    (void)fr_buf_puts(s, " t WHERE t.");
    fr_buf_sql_ident(s, m->columns[key_col].name);
    (void)fr_buf_puts(s, "::text = c.k)");
}
