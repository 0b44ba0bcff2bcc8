/* unit: the SQL text the loader sends (services/loader/sql.c, compiled in),
 * built from a small pipeline parsed by the config parser: the stage, COPY,
 * merge (plain upsert, version guard, merge rules, key-only, soft and hard
 * delete), the references/unique check, retention, and a model's refresh.
 * Each statement is compared with its expected text (a snapshot): a change
 * to generated SQL shows up here as a diff to review. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../services/loader/aggsql.c"
#include "../../services/loader/sql.c"
#include "../../services/loader/testsql.c"

static const char yaml[] = "pipeline: t\n"
                           "datasets:\n"
                           "  ev:\n"
                           "    columns:\n"
                           "      - {name: id, type: bigint}\n"
                           "      - {name: ts, type: timestamptz}\n"
                           "  dept:\n"
                           "    key: [id]\n"
                           "    columns:\n"
                           "      - {name: id, type: bigint}\n"
                           "      - {name: name, type: text, unique: true}\n"
                           "      - {name: deleted_at, type: timestamptz}\n"
                           "    soft_delete: deleted_at\n"
                           "  emp:\n"
                           "    key: [id]\n"
                           "    version: v\n"
                           "    columns:\n"
                           "      - {name: id, type: bigint}\n"
                           "      - {name: v, type: bigint}\n"
                           "      - {name: dept_id, type: bigint, references: dept}\n"
                           "      - {name: ts, type: timestamptz}\n"
                           "      - {name: deleted_at, type: timestamptz}\n"
                           "    soft_delete: deleted_at\n"
                           "    retention: {columns: [ts, deleted_at], days: 30}\n"
                           "  sess:\n"
                           "    key: [sid]\n"
                           "    version: v\n"
                           "    columns:\n"
                           "      - {name: sid, type: text}\n"
                           "      - {name: v, type: bigint}\n"
                           "      - {name: start_ts, type: timestamptz, merge: min}\n"
                           "      - {name: end_ts, type: timestamptz, merge: max}\n"
                           "      - {name: country, type: text, merge: keep}\n"
                           "      - {name: note, type: text, merge: coalesce}\n"
                           "  tags:\n"
                           "    key: [a, b]\n"
                           "    columns:\n"
                           "      - {name: a, type: text}\n"
                           "      - {name: b, type: text}\n"
                           "models:\n"
                           "  panel:\n"
                           "    sql: models/panel.sql\n"
                           "    inputs: [ev]\n"
                           "    key: [id]\n"
                           "    tests:\n"
                           "      - not_null: n\n"
                           "      - unique: n\n"
                           "      - accepted_values: {column: n, values: ['1', \"it's\"]}\n"
                           "      - relationships: {column: id, to: ev, field: id}\n"
                           "      - expression: \"n >= 0\"\n"
                           "    columns:\n"
                           "      - {name: id, type: bigint}\n"
                           "      - {name: n, type: bigint}\n"
                           "  agg:\n"
                           "    kind: aggregate\n"
                           "    from: ev\n"
                           "    as: rows\n"
                           "    sql: models/agg.sql\n"
                           "    key: [id]\n"
                           "    columns:\n"
                           "      - {name: id, type: bigint}\n"
                           "      - {name: n, type: bigint, merge: count}\n"
                           "      - {name: total, type: bigint, merge: sum}\n"
                           "      - {name: lo, type: timestamptz, merge: min}\n"
                           "      - {name: hi, type: timestamptz, merge: max}\n"
                           "      - {name: first_v, type: bigint, merge: first, by: lo}\n"
                           "      - {name: last_v, type: bigint, merge: latest, by: hi}\n"
                           "      - {name: recent, type: bigint, merge: list, by: hi, limit: 3, within: 2 hours}\n"
                           "  pairs:\n"
                           "    sql: models/pairs.sql\n"
                           "    inputs: [tags]\n"
                           "    key: [a, b]\n"
                           "    columns:\n"
                           "      - {name: a, type: text}\n"
                           "      - {name: b, type: text}\n";

static char dir[64];
static struct fr_pipeline *pl;

static void write_file(const char *name, const char *text)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    char err[FR_ERR_LEN];
    char path[128];

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/fr_test_loader_sql_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/models", dir);
    mkdir(path, 0755);
    write_file("models/panel.sql", "SELECT id, count(*) AS n FROM t.ev\n"
                                   "WHERE $1::text[] IS NULL OR id::text = ANY ($1) GROUP BY id;\n\n");
    write_file("models/pairs.sql", "SELECT DISTINCT a, b FROM t.tags");
    write_file("models/agg.sql", "SELECT id, 1 AS n, id AS total, ts AS lo, ts AS hi, id AS first_v, id AS last_v, "
                                 "id AS recent FROM rows;\n");
    pl = fr_pipeline_parse(yaml, strlen(yaml), "t.yaml", dir, err);
    if (!pl) {
        fprintf(stderr, "parse: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    char path[128];

    (void)state;
    fr_pipeline_free(pl);
    snprintf(path, sizeof(path), "%s/models/panel.sql", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/models/pairs.sql", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/models/agg.sql", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/models", dir);
    rmdir(path);
    rmdir(dir);
    return 0;
}

static const struct fr_dataset *ds(const char *name)
{
    const struct fr_dataset *d = fr_pipeline_dataset(pl, name);
    assert_non_null(d);
    return d;
}

static const struct fr_model *model(const char *name)
{
    for (size_t i = 0; i < pl->n_models; i++)
        if (strcmp(pl->models[i].name, name) == 0)
            return &pl->models[i];
    fail_msg("no model %s", name);
    return NULL;
}

/* Compares b with want, printing both on a difference; resets b. */
static void expect(struct fr_buf *b, const char *want)
{
    const char *got = b->data ? b->data : "";
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "SQL differs.\n--- want\n%s\n--- got\n%s\n", want, got);
        fail();
    }
    fr_buf_reset(b);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_stage_copy(void **state)
{
    static const char *const ev_cols[] = {"id", "ts"};
    static const char *const dept_cols[] = {"id", "name"};
    struct fr_buf b;

    (void)state;
    fr_buf_init(&b, 0);
    fr_sql_stage(&b, ds("dept"), 0);
    expect(&b,
           "DO $fr$BEGIN IF to_regclass('pg_temp.fr_stage') IS NOT NULL THEN DROP TABLE pg_temp.fr_stage; END IF; "
           "CREATE TEMP TABLE fr_stage (LIKE \"t\".\"dept\" INCLUDING DEFAULTS, fr_row integer GENERATED ALWAYS "
           "AS IDENTITY (START WITH 0 MINVALUE 0)) ON COMMIT DELETE ROWS; END$fr$");
    fr_sql_stage(&b, ds("dept"), 17);
    expect(&b,
           "DO $fr$BEGIN IF to_regclass('pg_temp.fr_stage') IS NOT NULL THEN DROP TABLE pg_temp.fr_stage; END IF; "
           "CREATE TEMP TABLE fr_stage (LIKE \"t\".\"dept\" INCLUDING DEFAULTS, fr_row integer GENERATED ALWAYS "
           "AS IDENTITY (START WITH 17 MINVALUE 0)) ON COMMIT DELETE ROWS; END$fr$");
    fr_sql_copy(&b, ds("ev"), false, ev_cols, N(ev_cols));
    expect(&b, "COPY \"t\".\"ev\" (\"id\", \"ts\") FROM STDIN");
    fr_sql_copy(&b, ds("dept"), true, dept_cols, N(dept_cols));
    expect(&b, "COPY fr_stage (\"id\", \"name\") FROM STDIN");
    /* an append-only dataset an aggregate model reads is staged, then appended */
    fr_sql_copy(&b, ds("ev"), true, ev_cols, N(ev_cols));
    expect(&b, "COPY fr_stage (\"id\", \"ts\") FROM STDIN");
    assert_false(fr_sql_merge(&b, ds("ev"), ev_cols, N(ev_cols), FR_OP_UPSERT));
    expect(&b, "INSERT INTO \"t\".\"ev\" (\"id\", \"ts\") SELECT \"id\", \"ts\" FROM fr_stage");
    fr_buf_deinit(&b);
}

static void test_merge(void **state)
{
    static const char *const dept_cols[] = {"id", "name"};
    static const char *const dept_live[] = {"id", "name", "deleted_at"};
    static const char *const emp_cols[] = {"id", "v", "dept_id"};
    static const char *const sess_cols[] = {"sid", "v", "start_ts", "end_ts", "country", "note"};
    static const char *const sess_nov[] = {"sid", "start_ts"};
    static const char *const tags_cols[] = {"b", "a"};
    struct fr_buf b;

    (void)state;
    fr_buf_init(&b, 0);
    /* plain: last row of a key wins; a write brings a soft-deleted key back */
    assert_false(fr_sql_merge(&b, ds("dept"), dept_cols, N(dept_cols), FR_OP_UPSERT));
    expect(&b, "INSERT INTO \"t\".\"dept\" AS fr_t (\"id\", \"name\") SELECT DISTINCT ON (\"id\") \"id\", \"name\" "
               "FROM fr_stage ORDER BY \"id\", fr_row DESC ON CONFLICT (\"id\") DO UPDATE SET \"name\" = "
               "EXCLUDED.\"name\", \"deleted_at\" = NULL");
    /* the batch carries the soft-delete column: no reactivation */
    assert_false(fr_sql_merge(&b, ds("dept"), dept_live, N(dept_live), FR_OP_UPSERT));
    expect(&b, "INSERT INTO \"t\".\"dept\" AS fr_t (\"id\", \"name\", \"deleted_at\") SELECT DISTINCT ON (\"id\") "
               "\"id\", \"name\", \"deleted_at\" FROM fr_stage ORDER BY \"id\", fr_row DESC ON CONFLICT (\"id\") DO "
               "UPDATE SET \"name\" = EXCLUDED.\"name\", \"deleted_at\" = EXCLUDED.\"deleted_at\"");
    /* version: an older row never overwrites a newer one */
    assert_false(fr_sql_merge(&b, ds("emp"), emp_cols, N(emp_cols), FR_OP_UPSERT));
    expect(&b, "INSERT INTO \"t\".\"emp\" AS fr_t (\"id\", \"v\", \"dept_id\") SELECT DISTINCT ON (\"id\") \"id\", "
               "\"v\", \"dept_id\" FROM fr_stage ORDER BY \"id\", \"v\" DESC NULLS LAST, fr_row DESC ON CONFLICT "
               "(\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\", \"dept_id\" = EXCLUDED.\"dept_id\", \"deleted_at\" = "
               "NULL WHERE fr_t.\"v\" IS NULL OR fr_t.\"v\" <= EXCLUDED.\"v\"");
    /* merge rules: GROUP BY key, replaced columns guarded by the version */
    assert_false(fr_sql_merge(&b, ds("sess"), sess_cols, N(sess_cols), FR_OP_UPSERT));
    expect(&b,
           "INSERT INTO \"t\".\"sess\" AS fr_t (\"sid\", \"v\", \"start_ts\", \"end_ts\", \"country\", \"note\") "
           "SELECT \"sid\", (array_agg(\"v\" ORDER BY \"v\" DESC NULLS LAST, fr_row DESC))[1], min(\"start_ts\"), "
           "max(\"end_ts\"), (array_agg(\"country\" ORDER BY fr_row) FILTER (WHERE \"country\" IS NOT NULL))[1], "
           "(array_agg(\"note\" ORDER BY fr_row DESC) FILTER (WHERE \"note\" IS NOT NULL))[1] FROM fr_stage GROUP BY "
           "\"sid\" ON CONFLICT (\"sid\") DO UPDATE SET \"v\" = CASE WHEN fr_t.\"v\" IS NULL OR fr_t.\"v\" <= "
           "EXCLUDED.\"v\" THEN EXCLUDED.\"v\" ELSE fr_t.\"v\" END, \"start_ts\" = LEAST(fr_t.\"start_ts\", "
           "EXCLUDED.\"start_ts\"), \"end_ts\" = GREATEST(fr_t.\"end_ts\", EXCLUDED.\"end_ts\"), \"country\" = "
           "COALESCE(fr_t.\"country\", EXCLUDED.\"country\"), \"note\" = COALESCE(EXCLUDED.\"note\", fr_t.\"note\")");
    /* merge rules without the version column in the batch */
    assert_false(fr_sql_merge(&b, ds("sess"), sess_nov, N(sess_nov), FR_OP_UPSERT));
    expect(&b, "INSERT INTO \"t\".\"sess\" AS fr_t (\"sid\", \"start_ts\") SELECT \"sid\", min(\"start_ts\") FROM "
               "fr_stage GROUP BY \"sid\" ON CONFLICT (\"sid\") DO UPDATE SET \"start_ts\" = "
               "LEAST(fr_t.\"start_ts\", EXCLUDED.\"start_ts\")");
    /* key columns only: nothing to update; what b held before stays */
    (void)fr_buf_puts(&b, "-- kept\n");
    assert_false(fr_sql_merge(&b, ds("tags"), tags_cols, N(tags_cols), FR_OP_UPSERT));
    expect(&b, "-- kept\n"
               "INSERT INTO \"t\".\"tags\" (\"b\", \"a\") SELECT DISTINCT \"b\", \"a\" FROM fr_stage ON CONFLICT DO "
               "NOTHING");
    fr_buf_deinit(&b);
}

static void test_delete(void **state)
{
    static const char *const dept_key[] = {"id"};
    static const char *const tags_cols[] = {"a", "b"};
    struct fr_buf b;

    (void)state;
    fr_buf_init(&b, 0);
    assert_true(fr_sql_merge(&b, ds("dept"), dept_key, N(dept_key), FR_OP_DELETE));
    expect(&b, "UPDATE \"t\".\"dept\" AS fr_t SET \"deleted_at\" = $1::timestamptz FROM fr_stage AS fr_s WHERE "
               "fr_t.\"id\" = fr_s.\"id\" AND fr_t.\"deleted_at\" IS NULL");
    assert_false(fr_sql_merge(&b, ds("dept"), dept_key, N(dept_key), FR_OP_HARD_DELETE));
    expect(&b, "DELETE FROM \"t\".\"dept\" AS fr_t USING fr_stage AS fr_s WHERE fr_t.\"id\" = fr_s.\"id\"");
    assert_false(fr_sql_merge(&b, ds("tags"), tags_cols, N(tags_cols), FR_OP_DELETE));
    expect(&b, "DELETE FROM \"t\".\"tags\" AS fr_t USING fr_stage AS fr_s WHERE fr_t.\"a\" = fr_s.\"a\" AND "
               "fr_t.\"b\" = fr_s.\"b\"");
    fr_buf_deinit(&b);
}

static void test_check(void **state)
{
    static const char *const dept_cols[] = {"id", "name"};
    static const char *const dept_key[] = {"id"};
    static const char *const emp_cols[] = {"id", "v", "dept_id"};
    static const char *const ev_cols[] = {"id", "ts"};
    struct fr_buf b;

    (void)state;
    assert_true(fr_sql_needs_check(ds("dept"), dept_cols, N(dept_cols), FR_OP_UPSERT));
    assert_true(fr_sql_needs_check(ds("emp"), emp_cols, N(emp_cols), FR_OP_UPSERT));
    assert_false(fr_sql_needs_check(ds("dept"), dept_key, N(dept_key), FR_OP_UPSERT));
    assert_false(fr_sql_needs_check(ds("dept"), dept_cols, N(dept_cols), FR_OP_DELETE));
    assert_false(fr_sql_needs_check(ds("ev"), ev_cols, N(ev_cols), FR_OP_UPSERT));
    fr_buf_init(&b, 0);
    fr_sql_check(&b, pl, ds("dept"), dept_cols, N(dept_cols));
    expect(
        &b,
        "WITH fr_bad AS (SELECT fr_s.fr_row, 1 AS fr_ci, 'name'::text AS field, fr_s.\"name\"::text AS value, "
        "'unique'::text AS kind, format('%s %s is already used by another row of dept', 'name'::text, fr_s.\"name\") "
        "AS reason FROM fr_stage fr_s WHERE fr_s.\"name\" IS NOT NULL AND (EXISTS (SELECT 1 FROM \"t\".\"dept\" fr_o "
        "WHERE fr_o.\"name\" = fr_s.\"name\" AND ROW(fr_o.\"id\") IS DISTINCT FROM ROW(fr_s.\"id\") AND "
        "fr_o.\"deleted_at\" IS NULL) OR EXISTS (SELECT 1 FROM fr_stage fr_e WHERE fr_e.\"name\" = fr_s.\"name\" AND "
        "fr_e.fr_row < fr_s.fr_row AND ROW(fr_e.\"id\") IS DISTINCT FROM ROW(fr_s.\"id\")))),\n"
        "fr_one AS (SELECT DISTINCT ON (fr_row) fr_row, field, value, kind, reason FROM fr_bad ORDER BY fr_row, "
        "fr_ci),\n"
        "fr_del AS (DELETE FROM fr_stage WHERE fr_row IN (SELECT fr_row FROM fr_one)),\n"
        "fr_led AS (UPDATE freshet.batches SET rejected = COALESCE((SELECT jsonb_agg(jsonb_build_object('row', "
        "fr_row, 'field', field, 'value', value, 'kind', kind, 'reason', reason) ORDER BY fr_row) FROM fr_one), "
        "'[]'::jsonb) WHERE batch_id = $1)\n"
        "SELECT fr_row::text, field, value, kind, reason FROM fr_one ORDER BY fr_row");
    fr_sql_check(&b, pl, ds("emp"), emp_cols, N(emp_cols));
    expect(&b,
           "WITH fr_bad AS (SELECT fr_s.fr_row, 2 AS fr_ci, 'dept_id'::text AS field, fr_s.\"dept_id\"::text AS "
           "value, 'reference'::text AS kind, format('%s %s does not exist in dept', 'dept_id'::text, "
           "fr_s.\"dept_id\") AS reason FROM fr_stage fr_s WHERE fr_s.\"dept_id\" IS NOT NULL AND NOT EXISTS (SELECT "
           "1 FROM \"t\".\"dept\" fr_r WHERE fr_r.\"id\" = fr_s.\"dept_id\" AND fr_r.\"deleted_at\" IS NULL)),\n"
           "fr_one AS (SELECT DISTINCT ON (fr_row) fr_row, field, value, kind, reason FROM fr_bad ORDER BY fr_row, "
           "fr_ci),\n"
           "fr_del AS (DELETE FROM fr_stage WHERE fr_row IN (SELECT fr_row FROM fr_one)),\n"
           "fr_led AS (UPDATE freshet.batches SET rejected = COALESCE((SELECT jsonb_agg(jsonb_build_object('row', "
           "fr_row, 'field', field, 'value', value, 'kind', kind, 'reason', reason) ORDER BY fr_row) FROM fr_one), "
           "'[]'::jsonb) WHERE batch_id = $1)\n"
           "SELECT fr_row::text, field, value, kind, reason FROM fr_one ORDER BY fr_row");
    fr_buf_deinit(&b);
}

static void test_retain(void **state)
{
    struct fr_buf b;

    (void)state;
    fr_buf_init(&b, 0);
    fr_sql_retain(&b, ds("emp"));
    expect(&b, "DELETE FROM \"t\".\"emp\" AS fr_t USING fr_stage AS fr_s WHERE fr_t.\"id\" = fr_s.\"id\" AND "
               "GREATEST(fr_t.\"ts\", fr_t.\"deleted_at\") < $1::timestamptz");
    fr_buf_deinit(&b);
}

static void test_model_refresh(void **state)
{
    struct fr_buf b;

    (void)state;
    fr_buf_init(&b, 0);
    /* one key column: incremental by $1 (a bigint key compared as text, as
     * the keys are made; a text key through its index); the SQL file's
     * trailing ; goes */
    fr_sql_model_refresh(&b, model("panel"), false);
    expect(&b, "WITH fr_args AS (SELECT $1::text[] AS keys, $2::timestamptz AS now),\n"
               "fr_new AS (\n"
               "SELECT id, count(*) AS n FROM t.ev\n"
               "WHERE $1::text[] IS NULL OR id::text = ANY ($1) GROUP BY id\n"
               "),\n"
               "fr_up AS (INSERT INTO \"t\".\"panel\" AS fr_t (\"id\", \"n\") SELECT \"id\", \"n\" FROM fr_new ON "
               "CONFLICT (\"id\") DO UPDATE SET \"n\" = EXCLUDED.\"n\" WHERE (fr_t.\"id\", fr_t.\"n\") IS DISTINCT "
               "FROM (EXCLUDED.\"id\", EXCLUDED.\"n\") RETURNING fr_t.\"id\", fr_t.\"n\"),\n"
               "fr_del AS (DELETE FROM \"t\".\"panel\" AS fr_m WHERE fr_m.\"id\"::text = ANY ($1::text[]) AND "
               "NOT EXISTS (SELECT 1 FROM fr_new fr_n WHERE fr_n.\"id\" = fr_m.\"id\") RETURNING "
               "fr_m.\"id\", fr_m.\"n\")\n"
               "SELECT false, \"id\"::text, \"n\"::text FROM fr_up UNION ALL SELECT true, \"id\"::text, \"n\"::text "
               "FROM fr_del");
    /* the full refresh ($1 null): every row the model no longer yields goes */
    fr_sql_model_refresh(&b, model("panel"), true);
    expect(&b,
           "WITH fr_args AS (SELECT $1::text[] AS keys, $2::timestamptz AS now),\n"
           "fr_new AS (\n"
           "SELECT id, count(*) AS n FROM t.ev\n"
           "WHERE $1::text[] IS NULL OR id::text = ANY ($1) GROUP BY id\n"
           "),\n"
           "fr_up AS (INSERT INTO \"t\".\"panel\" AS fr_t (\"id\", \"n\") SELECT \"id\", \"n\" FROM fr_new ON "
           "CONFLICT (\"id\") DO UPDATE SET \"n\" = EXCLUDED.\"n\" WHERE (fr_t.\"id\", fr_t.\"n\") IS DISTINCT "
           "FROM (EXCLUDED.\"id\", EXCLUDED.\"n\") RETURNING fr_t.\"id\", fr_t.\"n\"),\n"
           "fr_del AS (DELETE FROM \"t\".\"panel\" AS fr_m WHERE NOT EXISTS (SELECT 1 FROM fr_new fr_n WHERE "
           "fr_n.\"id\" = fr_m.\"id\") RETURNING fr_m.\"id\", fr_m.\"n\")\n"
           "INSERT INTO pg_temp.fr_changed (deleted, v) SELECT false, ARRAY[\"id\"::text, \"n\"::text] FROM fr_up "
           "UNION ALL SELECT true, ARRAY[\"id\"::text, \"n\"::text] FROM fr_del");
    /* its changed rows, a page at a time, as a keyed refresh returns them */
    fr_sql_model_page(&b, model("panel"));
    expect(&b, "SELECT deleted, v[1], v[2] FROM pg_temp.fr_changed WHERE id > $1::bigint AND id <= $2::bigint ORDER "
               "BY id");
    /* a cache resync: the model through a cursor, then the cache keys no row has (as text) */
    fr_sql_resync_declare(&b, model("panel"));
    expect(&b, "DECLARE fr_resync NO SCROLL CURSOR FOR SELECT \"id\", \"n\" FROM \"t\".\"panel\"");
    fr_sql_resync_stale(&b, model("panel"), 0);
    expect(&b,
           "DECLARE fr_resync NO SCROLL CURSOR FOR SELECT DISTINCT c.k FROM pg_temp.fr_cachekeys c WHERE NOT EXISTS "
           "(SELECT 1 FROM \"t\".\"panel\" t WHERE t.\"id\"::text = c.k)");
    /* composite key, key columns only: full refreshes, nothing to update */
    fr_sql_model_refresh(&b, model("pairs"), true);
    expect(
        &b,
        "WITH fr_args AS (SELECT $1::text[] AS keys, $2::timestamptz AS now),\n"
        "fr_new AS (\n"
        "SELECT DISTINCT a, b FROM t.tags\n"
        "),\n"
        "fr_up AS (INSERT INTO \"t\".\"pairs\" AS fr_t (\"a\", \"b\") SELECT \"a\", \"b\" FROM fr_new ON CONFLICT "
        "(\"a\", \"b\") DO NOTHING RETURNING fr_t.\"a\", fr_t.\"b\"),\n"
        "fr_del AS (DELETE FROM \"t\".\"pairs\" AS fr_m WHERE NOT EXISTS (SELECT 1 FROM "
        "fr_new fr_n WHERE fr_n.\"a\" = fr_m.\"a\" AND fr_n.\"b\" = fr_m.\"b\") RETURNING fr_m.\"a\", fr_m.\"b\")\n"
        "INSERT INTO pg_temp.fr_changed (deleted, v) SELECT false, ARRAY[\"a\"::text, \"b\"::text] FROM fr_up UNION "
        "ALL SELECT true, ARRAY[\"a\"::text, \"b\"::text] FROM fr_del");
    fr_buf_deinit(&b);
}

static void test_data_tests(void **state)
{
    struct fr_buf b;

    (void)state;
    fr_buf_init(&b, 0);
    fr_testsql_build(&b, model("panel"));
    expect(&b, "WITH fr_args AS (SELECT $1::text[] AS keys, $2::timestamptz AS now),\n"
               "fr_new AS (\n"
               "SELECT id, count(*) AS n FROM t.ev\n"
               "WHERE $1::text[] IS NULL OR id::text = ANY ($1) GROUP BY id\n"
               "),\n"
               "fr_fail AS (SELECT 'not_null(n)'::text AS test, fr_new.\"id\"::text AS key FROM fr_new WHERE fr_new."
               "\"n\" IS NULL\n"
               "  UNION ALL SELECT 'unique(n)'::text AS test, fr_new.\"id\"::text AS key FROM fr_new WHERE fr_new.\""
               "n\" IS NOT NULL AND (fr_new.\"n\" IN (SELECT fr_d.\"n\" FROM fr_new AS fr_d GROUP BY 1 HAVING count("
               "*) > 1) OR ($1::text[] IS NOT NULL AND EXISTS (SELECT 1 FROM \"t\".\"panel\" AS fr_o WHERE fr_o.\"n"
               "\" = fr_new.\"n\" AND NOT fr_o.\"id\"::text = ANY ($1::text[]))))\n"
               "  UNION ALL SELECT 'accepted_values(n)'::text AS test, fr_new.\"id\"::text AS key FROM fr_new WHERE "
               "fr_new.\"n\" IS NOT NULL AND fr_new.\"n\"::text <> ALL (ARRAY['1', 'it''s']::text[])\n"
               "  UNION ALL SELECT 'relationships(id -> ev.id)'::text AS test, fr_new.\"id\"::text AS key FROM fr_ne"
               "w WHERE fr_new.\"id\" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM \"t\".\"ev\" AS fr_r WHERE fr_r.\"id"
               "\" = fr_new.\"id\")\n"
               "  UNION ALL SELECT 'expression(n >= 0)'::text AS test, fr_new.\"id\"::text AS key FROM fr_new WHERE "
               "NOT COALESCE((n >= 0), false))\n"
               "SELECT test, key FROM fr_fail ORDER BY test, key LIMIT 100");
    fr_buf_deinit(&b);
}

static void test_aggregate(void **state)
{
    struct fr_buf b;

    (void)state;
    fr_buf_init(&b, 0);
    fr_aggsql_apply(&b, model("agg"), ds("ev"), "fr_stage", true);
    expect(&b, "WITH \"rows\" AS (SELECT \"id\", \"ts\" FROM fr_stage),\n"
               "fr_rows AS (\n"
               "SELECT id, 1 AS n, id AS total, ts AS lo, ts AS hi, id AS first_v, id AS last_v, id AS recent FROM r"
               "ows\n"
               "),\n"
               "fr_win AS (SELECT fr_rows.*, max(\"hi\") OVER (PARTITION BY \"id\") AS fr_max_7 FROM fr_rows),\n"
               "fr_agg AS (SELECT \"id\" AS \"id\", count(\"n\") AS \"n\", sum(\"total\") AS \"total\", min(\"lo\") "
               "AS \"lo\", max(\"hi\") AS \"hi\", (array_agg(\"first_v\" ORDER BY \"lo\" ASC NULLS LAST, \"first_v\""
               " ASC NULLS LAST))[1] AS \"first_v\", (array_agg(\"last_v\" ORDER BY \"hi\" DESC NULLS LAST, \"last_v"
               "\" DESC NULLS LAST))[1] AS \"last_v\", (array_agg(\"recent\" ORDER BY \"hi\" DESC, \"recent\" DESC N"
               "ULLS LAST) FILTER (WHERE \"hi\" IS NOT NULL AND \"hi\" >= fr_max_7 - interval '7200 seconds'))[1:3] "
               "AS \"recent\", (array_agg(\"hi\" ORDER BY \"hi\" DESC, \"recent\" DESC NULLS LAST) FILTER (WHERE \"h"
               "i\" IS NOT NULL AND \"hi\" >= fr_max_7 - interval '7200 seconds'))[1:3] AS \"recent__by\" FROM fr_wi"
               "n WHERE \"id\" IS NOT NULL GROUP BY \"id\")\n"
               "INSERT INTO \"t\".\"agg\" AS fr_t (\"id\", \"n\", \"total\", \"lo\", \"hi\", \"first_v\", \"last_v\""
               ", \"recent\", \"recent__by\") SELECT \"id\", \"n\", \"total\", \"lo\", \"hi\", \"first_v\", \"last_v"
               "\", \"recent\", \"recent__by\" FROM fr_agg ON CONFLICT (\"id\") DO UPDATE SET\n"
               "  \"n\" = COALESCE(fr_t.\"n\", 0) + COALESCE(EXCLUDED.\"n\", 0),\n"
               "  \"total\" = COALESCE(fr_t.\"total\" + EXCLUDED.\"total\", fr_t.\"total\", EXCLUDED.\"total\"),\n"
               "  \"lo\" = LEAST(fr_t.\"lo\", EXCLUDED.\"lo\"),\n"
               "  \"hi\" = GREATEST(fr_t.\"hi\", EXCLUDED.\"hi\"),\n"
               "  \"first_v\" = CASE WHEN EXCLUDED.\"lo\" < fr_t.\"lo\" OR (fr_t.\"lo\" IS NULL AND EXCLUDED.\"lo\" "
               "IS NOT NULL) THEN EXCLUDED.\"first_v\" WHEN EXCLUDED.\"lo\" IS NOT DISTINCT FROM fr_t.\"lo\" THEN LE"
               "AST(fr_t.\"first_v\", EXCLUDED.\"first_v\") ELSE fr_t.\"first_v\" END,\n"
               "  \"last_v\" = CASE WHEN EXCLUDED.\"hi\" > fr_t.\"hi\" OR (fr_t.\"hi\" IS NULL AND EXCLUDED.\"hi\" I"
               "S NOT NULL) THEN EXCLUDED.\"last_v\" WHEN EXCLUDED.\"hi\" IS NOT DISTINCT FROM fr_t.\"hi\" THEN GREA"
               "TEST(fr_t.\"last_v\", EXCLUDED.\"last_v\") ELSE fr_t.\"last_v\" END,\n"
               "  (\"recent\", \"recent__by\") = (SELECT CASE WHEN EXCLUDED.\"recent__by\" IS NULL THEN fr_t.\"rec"
               "ent\" WHEN fr_t.\"recent__by\" IS NULL THEN EXCLUDED.\"recent\" ELSE array_agg(fr_l.v ORDER BY fr_"
               "l.b DESC, fr_l.v DESC NULLS LAST) END, CASE WHEN EXCLUDED.\"recent__by\" IS NULL THEN fr_t.\"recen"
               "t__by\" WHEN fr_t.\"recent__by\" IS NULL THEN EXCLUDED.\"recent__by\" ELSE array_agg(fr_l.b ORDER "
               "BY fr_l.b DESC, fr_l.v DESC NULLS LAST) END FROM (SELECT fr_u.b, fr_u.v FROM unnest(fr_t.\"recent_"
               "_by\" || EXCLUDED.\"recent__by\", fr_t.\"recent\" || EXCLUDED.\"recent\") AS fr_u(b, v) WHERE EXCL"
               "UDED.\"recent__by\" IS NOT NULL AND fr_t.\"recent__by\" IS NOT NULL AND fr_u.b >= GREATEST(fr_t.\""
               "recent__by\"[1], EXCLUDED.\"recent__by\"[1]) - interval '7200 seconds' ORDER BY fr_u.b DESC, fr_u."
               "v DESC NULLS LAST LIMIT 3) AS fr_l)\n"
               "RETURNING fr_t.\"id\"::text");
    fr_aggsql_table(&b, model("agg"), false);
    expect(&b, "CREATE TABLE IF NOT EXISTS \"t\".\"agg\" (\"id\" bigint, \"n\" bigint, \"total\" bigint, \"lo\" time"
               "stamptz, \"hi\" timestamptz, \"first_v\" bigint, \"last_v\" bigint, \"recent\" bigint[], \"recent__b"
               "y\" timestamptz[], PRIMARY KEY (\"id\"))");
    fr_aggsql_table(&b, model("agg"), true);
    expect(&b, "ALTER TABLE \"t\".\"agg\" ADD COLUMN IF NOT EXISTS \"id\" bigint, ADD COLUMN IF NOT EXISTS \"n\" big"
               "int, ADD COLUMN IF NOT EXISTS \"total\" bigint, ADD COLUMN IF NOT EXISTS \"lo\" timestamptz, ADD COL"
               "UMN IF NOT EXISTS \"hi\" timestamptz, ADD COLUMN IF NOT EXISTS \"first_v\" bigint, ADD COLUMN IF NOT"
               " EXISTS \"last_v\" bigint, ADD COLUMN IF NOT EXISTS \"recent\" bigint[], ADD COLUMN IF NOT EXISTS \""
               "recent__by\" timestamptz[]");
    fr_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage_copy), cmocka_unit_test(test_merge),      cmocka_unit_test(test_delete),
        cmocka_unit_test(test_check),      cmocka_unit_test(test_retain),     cmocka_unit_test(test_model_refresh),
        cmocka_unit_test(test_aggregate),  cmocka_unit_test(test_data_tests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
