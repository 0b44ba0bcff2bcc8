/* migrate: creates or migrates, idempotently, the freshet schema (batch
 * ledger, model state) and every loaded pipeline's schema, dataset tables
 * (added columns are added), model tables and the indexes model refreshes
 * need. One transaction, serialized between loaders by an advisory lock;
 * statements run one after another on app->pg. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aggsql.h"
#include "loader_int.h"
#include "log.h"

#define MIGRATE_LOCK_ID "7236834405" /* pg_advisory_xact_lock key of freshet migrations */

static void add(struct ld_migrate *m, struct fr_buf *b)
{
    m->sql = fr_xrealloc(m->sql, (m->n + 1) * sizeof(*m->sql));
    m->sql[m->n++] = fr_xstrdup(b->data ? b->data : "");
    fr_buf_reset(b);
}

static void add_str(struct ld_migrate *m, const char *s)
{
    m->sql = fr_xrealloc(m->sql, (m->n + 1) * sizeof(*m->sql));
    m->sql[m->n++] = fr_xstrdup(s);
}

static void free_sql(struct ld_migrate *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->sql[i]);
    free(m->sql);
    m->sql = NULL;
    m->n = 0;
    m->i = 0;
}

/* CREATE TABLE IF NOT EXISTS t (cols, PRIMARY KEY(keys)) + ADD COLUMN IF NOT EXISTS each. */
static void add_table(struct ld_migrate *m, struct fr_buf *b, const char *table, const struct fr_column *cols,
                      size_t n_cols, char *const *key, size_t n_key)
{
    (void)fr_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    fr_buf_sql_ident(b, table);
    (void)fr_buf_puts(b, " (");
    for (size_t i = 0; i < n_cols; i++) {
        if (i)
            (void)fr_buf_puts(b, ", ");
        fr_buf_sql_ident(b, cols[i].name);
        (void)fr_buf_printf(b, " %s", fr_type_sql(cols[i].type));
    }
    if (n_key) {
        (void)fr_buf_puts(b, ", PRIMARY KEY (");
        for (size_t i = 0; i < n_key; i++) {
            if (i)
                (void)fr_buf_puts(b, ", ");
            fr_buf_sql_ident(b, key[i]);
        }
        (void)fr_buf_putc(b, ')');
    }
    (void)fr_buf_putc(b, ')');
    add(m, b);

    (void)fr_buf_puts(b, "ALTER TABLE ");
    fr_buf_sql_ident(b, table);
    for (size_t i = 0; i < n_cols; i++) {
        (void)fr_buf_puts(b, i ? ", ADD COLUMN IF NOT EXISTS " : " ADD COLUMN IF NOT EXISTS ");
        fr_buf_sql_ident(b, cols[i].name);
        (void)fr_buf_printf(b, " %s", fr_type_sql(cols[i].type));
    }
    add(m, b);
}

/* CREATE INDEX IF NOT EXISTS {dsname}_{col}_idx ON table (col). */
static void add_index(struct ld_migrate *m, struct fr_buf *b, const char *dsname, const char *col, const char *table)
{
    struct fr_buf name;

    fr_buf_init(&name, 0);
    (void)fr_buf_printf(&name, "%s_%s_idx", dsname, col);
    if (name.len > 63) { /* PostgreSQL's NAMEDATALEN - 1 */
        name.len = 63;
        name.data[63] = '\0';
    }
    (void)fr_buf_puts(b, "CREATE INDEX IF NOT EXISTS ");
    fr_buf_sql_ident(b, name.data);
    (void)fr_buf_puts(b, " ON ");
    fr_buf_sql_ident(b, table);
    (void)fr_buf_puts(b, " (");
    fr_buf_sql_ident(b, col);
    (void)fr_buf_putc(b, ')');
    fr_buf_deinit(&name);
    add(m, b);
}

/* An aggregate model's table; the first time (no freshet.model_state row
 * yet), filled from every row its dataset already holds, in this
 * transaction, so batches loaded before the model existed count too. */
static void add_aggregate(struct ld_migrate *m, struct fr_buf *b, const struct fr_pipeline *p,
                          const struct fr_model *mo)
{
    const struct fr_dataset *ds = fr_pipeline_dataset(p, mo->from);
    struct fr_buf src;

    fr_aggsql_table(b, mo, false);
    add(m, b);
    fr_aggsql_table(b, mo, true);
    add(m, b);
    /* Names inside the literals are identifiers validated by config. */
    fr_buf_init(&src, 0);
    (void)fr_buf_puts(&src, "(SELECT * FROM ");
    fr_buf_sql_ident(&src, ds->table);
    (void)fr_buf_printf(&src,
                        " WHERE NOT EXISTS (SELECT 1 FROM freshet.model_state WHERE model = '%s.%s')) AS fr_src",
                        p->name, mo->name);
    fr_aggsql_apply(b, mo, ds, src.data, false);
    add(m, b);
    fr_buf_deinit(&src);
    (void)fr_buf_printf(b,
                        "INSERT INTO freshet.model_state (model, day, refreshed_at) VALUES ('%s.%s', NULL, now()) "
                        "ON CONFLICT (model) DO NOTHING",
                        p->name, mo->name);
    add(m, b);
}

static void build(struct loader *ld)
{
    struct ld_migrate *m = &ld->mig;
    struct fr_buf b;

    free_sql(m);
    fr_buf_init(&b, 0);
    /* Session-wide, before the transaction (so a rollback cannot undo it):
     * a COMMIT we XACK after must be durable whatever the server's default,
     * or a server crash could undo a batch already acknowledged. */
    add_str(m, "SET synchronous_commit = on");
    /* Aggregate models group a whole batch (tens of MB staged): sort it in
     * memory. Per operation of this session's statements, not a total. */
    add_str(m, "SET work_mem = '64MB'");
    add_str(m, "BEGIN");
    add_str(m, "SET LOCAL client_min_messages = warning"); /* no "already exists, skipping" noise */
    add_str(m, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_ID ")");
    add_str(m, "CREATE SCHEMA IF NOT EXISTS freshet");
    add_str(m, "CREATE TABLE IF NOT EXISTS freshet.batches (batch_id text PRIMARY KEY, dataset text NOT NULL, "
               "rows integer NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now())");
    /* Rows of a batch not inserted (constraints): docs/loader.md. */
    add_str(m, "ALTER TABLE freshet.batches ADD COLUMN IF NOT EXISTS rejected jsonb NOT NULL DEFAULT '[]'::jsonb");
    add_str(m, "CREATE TABLE IF NOT EXISTS freshet.model_state (model text PRIMARY KEY, day date, "
               "refreshed_at timestamptz)");
    /* Provenance of a batch (docs/routes.md "Provenance"): its raw file in
     * the landing zone and the keys it touched (NULL = more than the
     * batch.loaded event lists). */
    add_str(m, "ALTER TABLE freshet.batches ADD COLUMN IF NOT EXISTS raw_path text");
    add_str(m, "ALTER TABLE freshet.batches ADD COLUMN IF NOT EXISTS raw_sha256 text");
    add_str(m, "ALTER TABLE freshet.batches ADD COLUMN IF NOT EXISTS keys text[]");
    /* Data versions (docs/routes.md "HTTP caching"): one row per dataset and
     * model ("{pipeline}.{name}"), version + 1 in the transaction that
     * changes its data, refreshed_at at each load or refresh. */
    add_str(m, "CREATE TABLE IF NOT EXISTS freshet.versions (name text PRIMARY KEY, version bigint NOT NULL, "
               "refreshed_at timestamptz NOT NULL)");
    for (size_t pi = 0; pi < ld->app->n_pipelines; pi++) {
        const struct fr_pipeline *p = ld->app->pipelines[pi];

        (void)fr_buf_puts(&b, "CREATE SCHEMA IF NOT EXISTS ");
        fr_buf_sql_ident(&b, p->name);
        add(m, &b);
        for (size_t d = 0; d < p->n_datasets; d++) {
            const struct fr_dataset *ds = &p->datasets[d];
            add_table(m, &b, ds->table, ds->columns, ds->n_columns, ds->key, ds->n_key);
            /* unique columns are checked per row by the load: index them
             * (not a unique index: soft-deleted rows may share a value). */
            for (size_t c = 0; c < ds->n_columns; c++) {
                if (!ds->columns[c].unique)
                    continue;
                add_index(m, &b, ds->name, ds->columns[c].name, ds->table);
            }
        }
        for (size_t mi = 0; mi < p->n_models; mi++) {
            const struct fr_model *mo = &p->models[mi];
            if (mo->kind == FR_MODEL_AGGREGATE) {
                add_aggregate(m, &b, p, mo);
                continue;
            }
            add_table(m, &b, mo->table, mo->columns, mo->n_columns, mo->key, mo->n_key);
            /* Incremental refreshes select the inputs by the model key. */
            for (size_t ii = 0; ii < mo->n_inputs; ii++) {
                const struct fr_dataset *ds = fr_pipeline_dataset(p, mo->inputs[ii]);
                bool all = ds && mo->n_key > 0;
                for (size_t k = 0; all && k < mo->n_key; k++)
                    all = fr_column_index(ds->columns, ds->n_columns, mo->key[k]) >= 0;
                /* A dataset keyed exactly by the model key has its primary key. */
                if (!all || (ds->n_key == mo->n_key && strcmp(ds->key[0], mo->key[0]) == 0))
                    continue;
                {
                    struct fr_buf name;
                    fr_buf_init(&name, 0);
                    (void)fr_buf_puts(&name, ds->name);
                    for (size_t k = 0; k < mo->n_key; k++)
                        (void)fr_buf_printf(&name, "_%s", mo->key[k]);
                    (void)fr_buf_puts(&name, "_idx");
                    if (name.len > 63) { /* PostgreSQL's NAMEDATALEN - 1 */
                        name.len = 63;
                        name.data[63] = '\0';
                    }
                    (void)fr_buf_puts(&b, "CREATE INDEX IF NOT EXISTS ");
                    fr_buf_sql_ident(&b, name.data);
                    fr_buf_deinit(&name);
                }
                (void)fr_buf_puts(&b, " ON ");
                fr_buf_sql_ident(&b, ds->table);
                (void)fr_buf_puts(&b, " (");
                for (size_t k = 0; k < mo->n_key; k++) {
                    if (k)
                        (void)fr_buf_puts(&b, ", ");
                    fr_buf_sql_ident(&b, mo->key[k]);
                }
                (void)fr_buf_putc(&b, ')');
                add(m, &b);
            }
        }
    }
    add_str(m, "COMMIT");
    fr_buf_deinit(&b);
}

static void send_next(struct loader *ld);

static void migrate_done(struct loader *ld, int status)
{
    ld_done_cb done = ld->mig.done;

    ld->mig.done = NULL;
    done(ld, status);
}

static void on_result(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_migrate *m = &ld->mig;
    ExecStatusType st;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    if (!res) {
        free_sql(m);
        m->rolling_back = false;
        migrate_done(ld, -ENOTCONN);
        return;
    }
    if (m->rolling_back) {
        m->rolling_back = false;
        free_sql(m);
        migrate_done(ld, -EIO);
        return;
    }
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fr_error("migration failed at statement %zu (%s): %s", m->i, m->sql[m->i], PQresultErrorMessage(res));
        m->rolling_back = true;
        if (fr_pg_query(ld->app->pg, "ROLLBACK", 0, NULL, NULL, on_result, ld) != 0) {
            m->rolling_back = false;
            free_sql(m);
            migrate_done(ld, -ENOTCONN);
        }
        return;
    }
    m->i++;
    if (m->i >= m->n) {
        fr_info("migrations applied (%zu statements)", m->n);
        free_sql(m);
        migrate_done(ld, 0);
        return;
    }
    send_next(ld);
}

static void send_next(struct loader *ld)
{
    struct ld_migrate *m = &ld->mig;

    if (fr_pg_query(ld->app->pg, m->sql[m->i], 0, NULL, NULL, on_result, ld) != 0) {
        free_sql(m);
        migrate_done(ld, -ENOTCONN);
    }
}

void fr__migrate_start(struct loader *ld, ld_done_cb done)
{
    ld->mig.done = done;
    build(ld);
    ld->mig.i = 0;
    ld->mig.rolling_back = false;
    send_next(ld);
}
