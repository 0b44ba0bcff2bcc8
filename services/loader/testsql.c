/* testsql: the data tests of a select model as one SELECT (testsql.h). Test
 * names are quoted as SQL literals; column and table names are identifiers
 * validated by config and quoted with fr_buf_sql_ident; an expression is
 * the pipeline author's SQL, like the model's own. */
#include <string.h>

#include "testsql.h"

static void literal(struct fr_buf *s, const char *v)
{
    (void)fr_buf_putc(s, '\'');
    for (const char *q = v; *q; q++) {
        if (*q == '\'')
            (void)fr_buf_putc(s, '\'');
        (void)fr_buf_putc(s, *q);
    }
    (void)fr_buf_putc(s, '\'');
}

static void col(struct fr_buf *s, const char *prefix, const char *name)
{
    (void)fr_buf_puts(s, prefix);
    fr_buf_sql_ident(s, name);
}

/* The row's key as text. */
static void key_text(struct fr_buf *s, const struct fr_model *m)
{
    if (m->n_key == 1) {
        col(s, "fr_new.", m->key[0]);
        (void)fr_buf_puts(s, "::text");
        return;
    }
    (void)fr_buf_puts(s, "concat_ws(','");
    for (size_t k = 0; k < m->n_key; k++)
        col(s, ", fr_new.", m->key[k]);
    (void)fr_buf_putc(s, ')');
}

void fr_testsql_build(struct fr_buf *s, const struct fr_model *m)
{
    size_t n = strlen(m->sql);

    while (n > 0 && (m->sql[n - 1] == ';' || m->sql[n - 1] == ' ' || m->sql[n - 1] == '\n' || m->sql[n - 1] == '\t' ||
                     m->sql[n - 1] == '\r'))
        n--;
    (void)fr_buf_puts(s, "WITH fr_args AS (SELECT $1::text[] AS keys, $2::timestamptz AS now),\nfr_new AS (\n");
    (void)fr_buf_append(s, m->sql, n);
    (void)fr_buf_puts(s, "\n),\nfr_fail AS (");
    for (size_t i = 0; i < m->n_tests; i++) {
        const struct fr_model_test *t = &m->tests[i];
        if (i)
            (void)fr_buf_puts(s, "\n  UNION ALL ");
        (void)fr_buf_puts(s, "SELECT ");
        literal(s, t->name);
        (void)fr_buf_puts(s, "::text AS test, ");
        key_text(s, m);
        (void)fr_buf_puts(s, " AS key FROM fr_new WHERE ");
        switch (t->kind) {
        case FR_TEST_NOT_NULL:
            col(s, "fr_new.", t->column);
            (void)fr_buf_puts(s, " IS NULL");
            break;
        case FR_TEST_UNIQUE:
            col(s, "fr_new.", t->column);
            (void)fr_buf_puts(s, " IS NOT NULL AND (");
            col(s, "fr_new.", t->column);
            (void)fr_buf_puts(s, " IN (SELECT ");
            col(s, "fr_d.", t->column);
            (void)fr_buf_puts(s, " FROM fr_new AS fr_d GROUP BY 1 HAVING count(*) > 1)");
            if (m->n_key == 1) {
                (void)fr_buf_puts(s, " OR ($1::text[] IS NOT NULL AND EXISTS (SELECT 1 FROM ");
                fr_buf_sql_ident(s, m->table);
                (void)fr_buf_puts(s, " AS fr_o WHERE ");
                col(s, "fr_o.", t->column);
                (void)fr_buf_puts(s, " = ");
                col(s, "fr_new.", t->column);
                (void)fr_buf_puts(s, " AND NOT ");
                col(s, "fr_o.", m->key[0]);
                (void)fr_buf_puts(s, "::text = ANY ($1::text[])))");
            }
            (void)fr_buf_putc(s, ')');
            break;
        case FR_TEST_ACCEPTED:
            col(s, "fr_new.", t->column);
            (void)fr_buf_puts(s, " IS NOT NULL AND ");
            col(s, "fr_new.", t->column);
            (void)fr_buf_puts(s, "::text <> ALL (ARRAY[");
            for (size_t v = 0; v < t->n_values; v++) {
                if (v)
                    (void)fr_buf_puts(s, ", ");
                literal(s, t->values[v]);
            }
            (void)fr_buf_puts(s, "]::text[])");
            break;
        case FR_TEST_RELATIONSHIP:
            col(s, "fr_new.", t->column);
            (void)fr_buf_puts(s, " IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ");
            fr_buf_sql_ident(s, t->to_table);
            (void)fr_buf_puts(s, " AS fr_r WHERE ");
            col(s, "fr_r.", t->field);
            (void)fr_buf_puts(s, " = ");
            col(s, "fr_new.", t->column);
            (void)fr_buf_putc(s, ')');
            break;
        case FR_TEST_EXPRESSION:
            (void)fr_buf_printf(s, "NOT COALESCE((%s), false)", t->expr);
            break;
        }
    }
    (void)fr_buf_printf(s, ")\nSELECT test, key FROM fr_fail ORDER BY test, key LIMIT %d", FR_TESTSQL_MAX_FAILURES);
}
