/* Unit tests of common/config.c: the bundled players pipeline loads with the
 * documented defaults; each kind of config error names file:line:col and the
 * fix; ${VAR} substitution; settings precedence (default < --config file <
 * environment < flags); loading all pipelines of a directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char src_dir[512];

static void find_src_dir(void)
{
    const char *e = getenv("FRESHET_SRC_DIR");
    if (e && e[0]) {
        snprintf(src_dir, sizeof(src_dir), "%s", e);
        return;
    }
    /* __FILE__ is .../tests/unit/test_config.c in CMake builds. */
    snprintf(src_dir, sizeof(src_dir), "%s", __FILE__);
    char *p = strstr(src_dir, "/tests/unit/test_config.c");
    if (p)
        *p = '\0';
    else
        snprintf(src_dir, sizeof(src_dir), "%s", "../..");
}

/* A scratch directory with models/m.sql, removed at the end. */
static char tmp_dir[64];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/fr_test_config_XXXXXX");
    if (!mkdtemp(tmp_dir))
        return -1;
    char path[256];
    snprintf(path, sizeof(path), "%s/models", tmp_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/models/m.sql", tmp_dir);
    write_file(path, "SELECT id, v FROM t.ev WHERE $1::text[] IS NULL OR id = ANY ($1)");
    unsetenv("PLAYERS_NOW");
    unsetenv("FRESHET_NOW");
    unsetenv("FRESHET_CONFIG");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ players */

static void test_players_pipeline(void **state)
{
    (void)state;
    char path[600], err[FR_ERR_LEN];
    snprintf(path, sizeof(path), "%s/pipelines/players", src_dir);
    struct fr_pipeline *p = fr_pipeline_load(path, err);
    if (!p)
        fail_msg("players pipeline failed to load: %s", err);
    assert_string_equal(p->name, "players");
    assert_string_equal(p->dir, path);
    assert_non_null(strstr(p->path, "pipelines/players/pipeline.yaml"));
    assert_int_equal(p->now_us, 1718625600LL * 1000000);

    assert_int_equal(p->n_datasets, 1);
    const struct fr_dataset *d = fr_pipeline_dataset(p, "events");
    assert_non_null(d);
    assert_string_equal(d->qname, "players.events");
    assert_string_equal(d->table, "players.events");
    assert_int_equal(d->n_columns, 8);
    assert_int_equal(d->n_key, 0);
    assert_null(d->version);
    assert_int_equal(d->schema_version, 1);
    assert_string_equal(d->columns[0].name, "name");
    assert_int_equal(d->columns[0].type, FR_T_TEXT);
    assert_true(d->columns[0].required);
    assert_int_equal(d->columns[0].n_allowed, 3);
    assert_string_equal(d->columns[0].allowed[2], "srvTransactionCompleted");
    int ci = fr_column_index(d->columns, d->n_columns, "country");
    assert_int_equal(ci, 3);
    assert_true(d->columns[ci].upper);
    assert_int_equal(d->columns[ci].length, 2);
    assert_int_equal(d->columns[fr_column_index(d->columns, d->n_columns, "date_utc")].type, FR_T_DATE);
    assert_int_equal(d->columns[fr_column_index(d->columns, d->n_columns, "timestamp_utc")].type, FR_T_TIMESTAMPTZ);
    assert_int_equal(d->columns[fr_column_index(d->columns, d->n_columns, "deposit_amount")].type, FR_T_FLOAT);
    assert_false(d->columns[fr_column_index(d->columns, d->n_columns, "platform")].required);
    assert_int_equal(fr_column_index(d->columns, d->n_columns, "nope"), -1);

    assert_int_equal(p->n_sources, 1);
    const struct fr_source *s = &p->sources[0];
    assert_string_equal(s->name, "events_drop");
    assert_int_equal(s->kind, FR_SRC_FILE);
    assert_string_equal(s->dataset, "events");
    assert_string_equal(s->dir, "inbound/players/events");
    assert_int_equal(s->formats, FR_FMT_CSV | FR_FMT_NDJSON);
    assert_true(s->csv_header);
    assert_int_equal(s->batch_rows, 50000);
    assert_int_equal(s->batch_bytes, 8388608);
    assert_int_equal(s->batch_latency_ms, 20);
    assert_int_equal(s->scan_interval_ms, 1000);

    assert_int_equal(p->n_models, 2);
    /* the aggregate first: user_panel reads it */
    const struct fr_model *a = &p->models[0];
    assert_string_equal(a->name, "player_days");
    assert_int_equal(a->kind, FR_MODEL_AGGREGATE);
    assert_string_equal(a->from, "events");
    assert_int_equal(a->n_key, 2);
    assert_int_equal(a->agg[fr_column_index(a->columns, a->n_columns, "deposits")].limit, 10);
    const struct fr_model *m = fr_pipeline_model(p, "user_panel");
    assert_ptr_equal(m, &p->models[1]);
    assert_non_null(m);
    assert_string_equal(m->table, "players.user_panel");
    assert_int_equal(m->n_columns, 6);
    assert_int_equal(m->columns[4].type, FR_T_INT);
    assert_int_equal(m->n_key, 1);
    assert_string_equal(m->key[0], "player_id");
    assert_int_equal(m->n_inputs, 1);
    assert_string_equal(m->inputs[0], "player_days");
    assert_true(m->daily);
    assert_int_equal(m->coalesce_ms, 20);
    assert_non_null(strstr(m->sql_path, "pipelines/players/models/user_panel.sql"));
    assert_non_null(strstr(m->sql, "$1"));
    assert_non_null(strstr(m->sql, "players.player_days"));

    assert_int_equal(p->n_caches, 1);
    const struct fr_cache *c = fr_pipeline_cache(p, "user_panel");
    assert_non_null(c);
    assert_string_equal(c->model, "user_panel");
    assert_string_equal(c->key_column, "player_id");
    assert_int_equal(c->kind, FR_CACHE_HASH);
    assert_int_equal(c->ttl_s, 0);
    assert_null(fr_pipeline_cache(p, "nope"));
    assert_int_equal(fr_pipeline_now(p), 1718625600LL * 1000000);
    fr_pipeline_free(p);

    /* the pinned now follows the environment */
    setenv("PLAYERS_NOW", "2024-07-01T00:00:00+02:00", 1);
    p = fr_pipeline_load(path, err);
    assert_non_null(p);
    assert_int_equal(p->now_us, (1719792000LL - 7200) * 1000000);
    fr_pipeline_free(p);
    unsetenv("PLAYERS_NOW");

    /* the YAML file path works as well as its directory */
    snprintf(path, sizeof(path), "%s/pipelines/players/pipeline.yaml", src_dir);
    p = fr_pipeline_load(path, err);
    assert_non_null(p);
    fr_pipeline_free(p);
    fr_pipeline_free(NULL);
}

static void test_types(void **state)
{
    (void)state;
    enum fr_type t;
    static const char *const names[] = {"text", "int",         "bigint", "float", "numeric",
                                        "bool", "timestamptz", "date",   "json"};
    for (size_t i = 0; i < FR_ARRAY_LEN(names); i++) {
        assert_true(fr_type_parse(names[i], &t));
        assert_int_equal(t, (int)i);
        assert_string_equal(fr_type_name(t), names[i]);
    }
    assert_false(fr_type_parse("strng", &t));
    assert_false(fr_type_parse("TEXT", &t));
    assert_string_equal(fr_type_sql(FR_T_INT), "integer");
    assert_string_equal(fr_type_sql(FR_T_FLOAT), "double precision");
    assert_string_equal(fr_type_sql(FR_T_BOOL), "boolean");
    assert_string_equal(fr_type_sql(FR_T_TIMESTAMPTZ), "timestamptz");
}

/* ------------------------------------------------------------ errors */

#define FILE_LABEL "pipelines/t/pipeline.yaml"

/* Parses yaml expecting failure at the first occurrence of `at` (1-based
 * line:col computed from the text) with `hint` in the message. */
static void expect_error(const char *yaml, const char *at, const char *hint)
{
    char err[FR_ERR_LEN];
    memset(err, 'x', sizeof(err));
    struct fr_pipeline *p = fr_pipeline_parse(yaml, strlen(yaml), FILE_LABEL, tmp_dir, err);
    if (p) {
        fr_pipeline_free(p);
        fail_msg("parsed, expected an error with '%s' for:\n%s", hint, yaml);
    }
    assert_non_null(memchr(err, '\0', sizeof(err)));
    char want[96];
    if (at) {
        const char *pos = strstr(yaml, at);
        assert_non_null(pos);
        int line = 1, col = 1;
        for (const char *q = yaml; q < pos; q++) {
            if (*q == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(want, sizeof(want), FILE_LABEL ":%d:%d: ", line, col);
    } else {
        snprintf(want, sizeof(want), FILE_LABEL ":");
    }
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("error '%s' does not start with '%s'", err, want);
    if (!strstr(err, hint))
        fail_msg("error '%s' lacks '%s'", err, hint);
    if (!strstr(err, "; "))
        fail_msg("error '%s' has no '; fix' part", err);
}

#define HEAD "pipeline: t\ndatasets:\n  ev:\n    columns:\n"
#define COLS HEAD "      - {name: id, type: text}\n      - {name: v, type: int}\n"

static void test_errors_datasets(void **state)
{
    (void)state;
    expect_error(HEAD "      - {name: id, type: strng}\n", "strng",
                 "unknown column type 'strng'; use one of text, int, bigint, float, numeric, bool, timestamptz, "
                 "date, json");
    expect_error(HEAD "      - {name: id, typ: text}\n", "typ:",
                 "unknown key 'typ' in column 1 of dataset 'ev'; valid keys: name, type, required, upper, "
                 "length, allowed");
    expect_error(HEAD "      - {name: id}\n", "{name", "has no type; add type:");
    expect_error(HEAD "      - {type: text}\n", "{type", "has no name");
    expect_error(HEAD "      - {name: 1abc, type: text}\n", "1abc", "is not a valid name");
    expect_error(HEAD "      - {name: Id, type: text}\n", "Id,", "is not a valid name");
    expect_error(HEAD "      - {name: id, type: text}\n      - {name: id, type: int}\n", "id, type: int",
                 "defined twice");
    expect_error(HEAD "      - {name: id, type: text, required: maybe}\n", "maybe", "true or false");
    expect_error(HEAD "      - {name: id, type: int, upper: true}\n", "true}", "text columns only");
    expect_error(HEAD "      - {name: id, type: text, length: -1}\n", "-1", "out of range");
    expect_error(HEAD "      - {name: id, type: text, length: two}\n", "two", "whole number");
    expect_error(HEAD "      - {name: id, type: text, allowed: {a: 1}}\n", "{a: 1}", "must be a list");
    expect_error("pipeline: t\ndatasets:\n  ev:\n    columns: {name: id}\n", "{name: id}", "must be a list");
    expect_error("pipeline: t\ndatasets:\n  ev:\n    colums:\n      - {name: id, type: text}\n", "colums",
                 "unknown key 'colums' in dataset 'ev'; valid keys: columns, key, version, schema_version");
    expect_error("pipeline: t\ndatasets:\n  Events:\n    columns:\n      - {name: id, type: text}\n", "Events",
                 "not valid");
    expect_error(COLS "    key: [idd]\n", "[idd]", "key column 'idd' of dataset 'ev' is not one of its columns");
    expect_error(COLS "    key: [id]\n    version: ver\n", "ver\n", "version column 'ver'");
    expect_error(COLS "    version: v\n", "v\n", "version needs a key");
    expect_error(COLS "    schema_version: 0\n", "0\n", "out of range");
    expect_error(COLS "    key: [id, id]\n", "id]", "twice");
    expect_error("pipeline: t\ndatasets: {}\n", "{}", "no datasets");
    expect_error("pipeline: t\n", NULL, "no datasets");
    expect_error("pipeline: t\ndatasets:\n  - ev\n", "- ev", "must be a mapping of name");
}

/* partitions: N streams; partition_by picks an append-only dataset's routing column. */
static void test_partitions(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    const char *yaml = COLS "    partitions: 3\n";
    struct fr_pipeline *p = fr_pipeline_parse(yaml, strlen(yaml), FILE_LABEL, tmp_dir, err);
    if (!p)
        fail_msg("%s", err);
    assert_int_equal(p->datasets[0].partitions, 3);
    fr_pipeline_free(p);
    p = fr_pipeline_parse(COLS, strlen(COLS), FILE_LABEL, tmp_dir, err);
    assert_non_null(p);
    assert_int_equal(p->datasets[0].partitions, 1);
    fr_pipeline_free(p);
    expect_error(COLS "    partitions: 0\n", "0\n", "out of range");
    expect_error(COLS "    partitions: 65\n", "65", "out of range");
    expect_error(COLS "    partitions: many\n", "many", "whole number");
    p = fr_pipeline_parse(COLS "    partitions: 4\n    partition_by: id\n",
                          strlen(COLS "    partitions: 4\n    partition_by: id\n"), FILE_LABEL, tmp_dir, err);
    if (!p)
        fail_msg("%s", err);
    assert_int_equal(p->datasets[0].partitions, 4);
    assert_int_equal(p->datasets[0].partition_col, 0);
    fr_pipeline_free(p);
    expect_error(COLS "    partitions: 2\n    partition_by: nope\n", "nope",
                 "partition_by column 'nope' is not a column");
    expect_error(COLS "    partition_by: id\n", "id\n", "routes nothing with one stream; add partitions");
    expect_error(COLS "    key: [id]\n    partitions: 2\n    partition_by: id\n", "id\n",
                 "partitioned by its key; remove partition_by");
    expect_error(COLS "    partition: 2\n", "partition:", "partitions");
}

static void test_errors_top(void **state)
{
    (void)state;
    expect_error(COLS "datasetz: 1\n", "datasetz",
                 "unknown key 'datasetz' in the pipeline file; valid keys: pipeline, description, now, datasets, "
                 "sources, models, caches");
    expect_error("pipeline: Bad-Name\ndatasets:\n  ev:\n    columns:\n      - {name: id, type: text}\n", "Bad-Name",
                 "not a valid name");
    expect_error(COLS "now: yesterday\n", "yesterday", "now 'yesterday' is not an ISO-8601 timestamp");
    expect_error(COLS "now: 2024-02-30T00:00:00Z\n", "2024-02-30", "ISO-8601");
    expect_error(COLS "now: ${FR_TEST_SURELY_UNSET_VAR}\n", "${FR_TEST",
                 "environment variable FR_TEST_SURELY_UNSET_VAR is not set");
    expect_error(COLS "now: ${FR_TEST_SURELY_UNSET_VAR\n", "${FR_TEST", "unterminated");
    expect_error(COLS "now: ${1BAD}\n", "${1BAD", "bad variable reference");
    expect_error("pipeline: t\ndatasets:\n  ev:\n    columns:\n      - {name: id, type: text\n", NULL,
                 "YAML syntax error");
    expect_error("pipeline: t\npipeline: u\n"
                 "datasets: {}\n",
                 "pipeline: u", "appears twice");
    expect_error("", NULL, "empty");
    expect_error("- a\n- b\n", "- a", "must be a mapping");
    expect_error("base: &b {name: id, type: text}\n", "base", "unknown key");
    expect_error(HEAD "      - &c {name: id, type: text}\n      - *c\n", "*c", "aliases");
    expect_error("a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h:\n        i:\n         j:\n"
                 "          k:\n           l:\n            m:\n             n:\n              o:\n"
                 "               p:\n                q: [1]\n",
                 "q: [1]", "nesting deeper");
}

#define SRC COLS "sources:\n  s:\n"

static void test_errors_sources(void **state)
{
    (void)state;
    expect_error(SRC "    type: ftp\n    dataset: ev\n", "ftp",
                 "unknown source type 'ftp'; use file, http_json or push");
    expect_error(SRC "    dataset: ev\n", "dataset: ev\n", "has no type");
    /* A source with no value at all (fuzz regression: read as a mapping). */
    expect_error(COLS "sources:\n  src: ~\n", "~", "must be a mapping");
    expect_error(SRC "    type: file\n    dataset: evv\n", "evv", "unknown dataset 'evv'");
    expect_error(SRC "    type: file\n", "type: file", "has no dataset");
    expect_error(SRC "    type: file\n    dataset: ev\n    formats: [csv, xml]\n", "[csv",
                 "unknown file format 'xml'");
    expect_error(SRC "    type: file\n    dataset: ev\n    batch: {rows: 0}\n", "0}", "batch rows 0 is out of range");
    expect_error(SRC "    type: file\n    dataset: ev\n    batch: {rows: 1e3}\n", "1e3", "whole number");
    expect_error(SRC "    type: file\n    dataset: ev\n    batch: {bytes: 99999999999}\n", "999", "out of range");
    /* over FR_SOURCE_MAX_BATCH_BYTES: the codec would refuse such batches */
    expect_error(SRC "    type: file\n    dataset: ev\n    batch: {bytes: 67108864}\n", "67108864", "out of range");
    expect_error(SRC "    type: file\n    dataset: ev\n    batch: {row: 5}\n",
                 "row:", "valid keys: rows, bytes, latency_ms");
    expect_error(SRC "    type: push\n    dataset: ev\n    dir: x\n", "x\n", "file sources only");
    expect_error(SRC "    type: file\n    dataset: ev\n    dirr: x\n", "dirr", "unknown key 'dirr' in source 's'");
    expect_error(SRC "    type: file\n    dataset: ev\n    csv_header: 1\n", "1\n", "true or false");
    expect_error(SRC "    type: file\n    dataset: ev\n    max_file_bytes: 0\n", "0\n",
                 "max_file_bytes must be a byte count");
    expect_error(SRC "    type: file\n    dataset: ev\n    max_file_bytes: 2GB\n", "2GB", "max_file_bytes must be");
    expect_error(SRC "    type: file\n    dataset: ev\n    max_file_bytes: 1099511627777\n", "1099511627777",
                 "max_file_bytes must be");
    expect_error(SRC "    type: push\n    dataset: ev\n    max_file_bytes: 10\n", "10\n", "file sources only");
}

#define MODEL COLS "models:\n  m:\n"

static void test_errors_models(void **state)
{
    (void)state;
    expect_error(MODEL "    sql: models/m.sql\n    inputs: [nope]\n    columns:\n      - {name: id, type: text}\n",
                 "[nope]", "reads unknown dataset or model 'nope'");
    expect_error(MODEL
                 "    sql: models/missing.sql\n    inputs: [ev]\n    columns:\n      - {name: id, type: text}\n",
                 "models/missing.sql", "cannot read the SQL of model 'm'");
    expect_error(MODEL "    inputs: [ev]\n    columns:\n      - {name: id, type: text}\n", "inputs", "has no sql");
    expect_error(MODEL "    sql: models/m.sql\n    columns:\n      - {name: id, type: text}\n", "sql",
                 "has no inputs");
    expect_error(MODEL "    sql: models/m.sql\n    inputs: [ev]\n    key: [v]\n    columns:\n"
                       "      - {name: id, type: text}\n",
                 "[v]", "key column 'v' of model 'm'");
    expect_error(MODEL "    sql: models/m.sql\n    inputs: [ev]\n    coalesce_ms: 9999999\n    columns:\n"
                       "      - {name: id, type: text}\n",
                 "9999999", "out of range");
    expect_error(MODEL "    sql: models/m.sql\n    inputs: [ev]\n", "sql", "has no columns");
    expect_error(COLS "models:\n  ev:\n    sql: models/m.sql\n    inputs: [ev]\n    columns:\n"
                      "      - {name: id, type: text}\n",
                 "sql", "name of a dataset");
}

#define CACHE                                                                                                        \
    MODEL "    sql: models/m.sql\n    inputs: [ev]\n    key: [id]\n    columns:\n"                                   \
          "      - {name: id, type: text}\n      - {name: v, type: int}\ncaches:\n  c:\n"

static void test_errors_caches(void **state)
{
    (void)state;
    expect_error(CACHE "    from: mm\n", "mm", "unknown model 'mm'");
    expect_error(CACHE "    from: m\n    key: idx\n", "idx", "key column 'idx' of cache 'c' is not a column of 'm'");
    expect_error(CACHE "    from: m\n    type: list\n", "list", "unknown cache type 'list'; use hash or json");
    expect_error(CACHE "    key: id\n", "key: id\n", "has no from");
    expect_error(CACHE "    from: ev\n", "from", "needs a key column");
    expect_error(CACHE "    from: m\n    ttl: 5\n", "ttl", "valid keys: from, key, type, ttl_s");
}

/* ------------------------------------------------------------ success paths */

static void test_full_and_defaults(void **state)
{
    (void)state;
    setenv("FR_TEST_DROP_DIR", "drops/custom", 1);
    unsetenv("FR_TEST_UNSET_X");
    const char *yaml = CACHE "    from: m\n    type: json\n    ttl_s: 60\n"
                             "sources:\n"
                             "  a:\n    type: file\n    dataset: ev\n"
                             "  b:\n    type: file\n    dataset: ev\n    dir: ${FR_TEST_DROP_DIR}/in\n"
                             "    formats: json\n    csv_header: false\n    scan_interval_ms: 250\n"
                             "    max_file_bytes: 4096\n"
                             "    batch: {rows: 10, bytes: 2048, latency_ms: 0}\n"
                             "  c:\n    type: push\n    dataset: ${FR_TEST_UNSET_X:-ev}\n";
    char err[FR_ERR_LEN];
    struct fr_pipeline *p = fr_pipeline_parse(yaml, strlen(yaml), FILE_LABEL, tmp_dir, err);
    if (!p)
        fail_msg("parse failed: %s", err);
    assert_string_equal(p->name, "t");
    assert_int_equal(p->now_us, 0);
    int64_t before = fr_wall_us();
    int64_t now = fr_pipeline_now(p);
    assert_true(now >= before && now <= fr_wall_us());
    assert_int_equal(p->n_sources, 3);
    assert_string_equal(p->sources[0].dir, "inbound/t/ev");
    assert_int_equal(p->sources[0].formats, FR_FMT_CSV | FR_FMT_NDJSON);
    assert_int_equal(p->sources[0].batch_rows, 50000);
    assert_int_equal(p->sources[0].batch_bytes, 8u << 20);
    assert_int_equal(p->sources[0].batch_latency_ms, 20);
    assert_int_equal(p->sources[0].scan_interval_ms, 1000);
    assert_true(p->sources[0].max_file_bytes == 1ull << 30);
    assert_string_equal(p->sources[1].dir, "drops/custom/in");
    assert_int_equal(p->sources[1].formats, FR_FMT_JSON);
    assert_false(p->sources[1].csv_header);
    assert_int_equal(p->sources[1].scan_interval_ms, 250);
    assert_true(p->sources[1].max_file_bytes == 4096);
    assert_int_equal(p->sources[1].batch_rows, 10);
    assert_int_equal(p->sources[1].batch_bytes, 2048);
    assert_int_equal(p->sources[1].batch_latency_ms, 0);
    assert_int_equal(p->sources[2].kind, FR_SRC_PUSH);
    assert_string_equal(p->sources[2].dataset, "ev");
    const struct fr_model *m = fr_pipeline_model(p, "m");
    assert_non_null(m);
    assert_string_equal(m->table, "t.m");
    assert_int_equal(m->coalesce_ms, 50);
    assert_false(m->daily);
    assert_non_null(strstr(m->sql, "SELECT id, v"));
    const struct fr_cache *c = fr_pipeline_cache(p, "c");
    assert_string_equal(c->key_column, "id"); /* the model's first key column */
    assert_int_equal(c->kind, FR_CACHE_JSON);
    assert_int_equal(c->ttl_s, 60);
    fr_pipeline_free(p);

    /* future dataset fields: key, version, schema_version */
    const char *ds = COLS "    key: id\n    version: v\n    schema_version: 3\n"
                          "caches:\n  ev:\n    from: ev\n";
    p = fr_pipeline_parse(ds, strlen(ds), FILE_LABEL, tmp_dir, err);
    if (!p)
        fail_msg("parse failed: %s", err);
    const struct fr_dataset *d = fr_pipeline_dataset(p, "ev");
    assert_int_equal(d->n_key, 1);
    assert_string_equal(d->key[0], "id");
    assert_int_equal(d->key_index[0], 0);
    assert_string_equal(d->version, "v");
    assert_int_equal(d->schema_version, 3);
    assert_string_equal(p->caches[0].key_column, "id");
    assert_int_equal(p->caches[0].kind, FR_CACHE_HASH);
    fr_pipeline_free(p);

    /* no "pipeline:" key: the name comes from the directory */
    const char *noname = "datasets:\n  ev:\n    columns:\n      - {name: id, type: text}\n";
    p = fr_pipeline_parse(noname, strlen(noname), FILE_LABEL, "/x/games", err);
    assert_non_null(p);
    assert_string_equal(p->name, "games");
    assert_string_equal(p->datasets[0].qname, "games.ev");
    fr_pipeline_free(p);
    unsetenv("FR_TEST_DROP_DIR");
}

/* ------------------------------------------------------------ settings */

static enum fr_settings_result load(struct fr_settings *s, int argc, char **argv, int *rc, char ***rv,
                                    char err[FR_ERR_LEN])
{
    return fr_settings_load(s, "loader", "commands:\n  backup --dataset NAME", "127.0.0.1:9102", argc, argv, rc, rv,
                            err);
}

static void clear_env(void)
{
    static const char *const vars[] = {"FRESHET_REDIS_URL",  "FRESHET_DATABASE_URL", "FRESHET_API_ADDR",
                                       "FRESHET_ADMIN_ADDR", "FRESHET_PIPELINES",    "FRESHET_PIPELINES_DIR",
                                       "FRESHET_DATA_DIR",   "FRESHET_NOW",          "FRESHET_LOG_LEVEL",
                                       "FRESHET_CONFIG"};
    for (size_t i = 0; i < FR_ARRAY_LEN(vars); i++)
        unsetenv(vars[i]);
}

static void test_settings_defaults(void **state)
{
    (void)state;
    clear_env();
    struct fr_settings s;
    char err[FR_ERR_LEN];
    char *argv[] = {(char *)"freshet-loader", NULL};
    int rc = -1;
    char **rv = NULL;
    assert_int_equal(load(&s, 1, argv, &rc, &rv, err), FR_SETTINGS_OK);
    assert_string_equal(s.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(s.database_url, "postgresql://freshet@127.0.0.1:5432/freshet");
    assert_string_equal(s.api_addr, "0.0.0.0:8000");
    assert_string_equal(s.admin_addr, "127.0.0.1:9102");
    assert_null(s.pipelines);
    assert_string_equal(s.pipelines_dir, "pipelines");
    assert_string_equal(s.data_dir, "./var");
    assert_int_equal(s.now_us, 0);
    assert_string_equal(s.log_level, "info");
    assert_null(s.config_path);
    assert_int_equal(rc, 0);
    fr_settings_deinit(&s);
    fr_settings_deinit(&s); /* idempotent */
}

static void test_settings_precedence(void **state)
{
    (void)state;
    clear_env();
    char cfg[256];
    snprintf(cfg, sizeof(cfg), "%s/settings.yaml", tmp_dir);
    write_file(cfg, "redis_url: redis://file:1/0\ndata_dir: /from/file\napi_addr: file:1\n"
                    "log_level: debug\n");
    setenv("FRESHET_REDIS_URL", "redis://env:2/0", 1);
    setenv("FRESHET_API_ADDR", "env:2", 1);
    setenv("FRESHET_NOW", "2024-06-17T12:00:00Z", 1);
    setenv("FRESHET_PIPELINES", "players", 1);
    char a_cfg[300];
    snprintf(a_cfg, sizeof(a_cfg), "--config=%s", cfg);
    char *argv[] = {(char *)"freshet-loader",
                    (char *)"backup",
                    a_cfg,
                    (char *)"--redis-url",
                    (char *)"redis://flag:3/0",
                    (char *)"--dataset",
                    (char *)"players.events",
                    (char *)"--admin-addr=127.0.0.1:1",
                    (char *)"--",
                    (char *)"--data-dir",
                    NULL};
    int argc = (int)FR_ARRAY_LEN(argv) - 1;
    struct fr_settings s;
    char err[FR_ERR_LEN];
    int rc = -1;
    char **rv = NULL;
    if (load(&s, argc, argv, &rc, &rv, err) != FR_SETTINGS_OK)
        fail_msg("settings failed: %s", err);
    assert_string_equal(s.redis_url, "redis://flag:3/0"); /* flag > env > file */
    assert_string_equal(s.api_addr, "env:2");             /* env > file */
    assert_string_equal(s.data_dir, "/from/file");        /* file > default */
    assert_string_equal(s.log_level, "debug");
    assert_string_equal(s.admin_addr, "127.0.0.1:1");
    assert_string_equal(s.pipelines, "players");
    assert_int_equal(s.now_us, 1718625600LL * 1000000);
    assert_string_equal(s.config_path, cfg);
    /* unknown words and flags stay for the caller, in order; after "--"
     * everything is left alone */
    assert_int_equal(rc, 4);
    assert_string_equal(rv[0], "backup");
    assert_string_equal(rv[1], "--dataset");
    assert_string_equal(rv[2], "players.events");
    assert_string_equal(rv[3], "--data-dir");
    assert_null(rv[4]);
    fr_settings_deinit(&s);
    clear_env();
}

/* Retention settings (loader): defaults, units, file < env < flag, and errors. */
static void test_settings_retention(void **state)
{
    (void)state;
    clear_env();
    struct fr_settings s;
    char err[FR_ERR_LEN];
    char cfg[256];
    char a_cfg[300];
    char *argv1[] = {(char *)"freshet-loader", NULL};
    assert_int_equal(load(&s, 1, argv1, NULL, NULL, err), FR_SETTINGS_OK);
    assert_int_equal(s.dlq_max_entries, 100000);
    assert_int_equal(s.dlq_max_age_s, 7 * 86400);
    assert_int_equal(s.trim_interval_ms, 5000);
    fr_settings_deinit(&s);

    snprintf(cfg, sizeof(cfg), "%s/retention.yaml", tmp_dir);
    write_file(cfg, "dlq_max_entries: 10\ndlq_max_age: 15m\ntrim_interval_ms: 250\n");
    snprintf(a_cfg, sizeof(a_cfg), "--config=%s", cfg);
    setenv("FRESHET_DLQ_MAX_AGE", "12h", 1);
    char *argv2[] = {(char *)"freshet-loader", a_cfg, (char *)"--dlq-max-entries", (char *)"7", NULL};
    if (load(&s, 4, argv2, NULL, NULL, err) != FR_SETTINGS_OK)
        fail_msg("settings failed: %s", err);
    assert_int_equal(s.dlq_max_entries, 7);    /* flag > file */
    assert_int_equal(s.dlq_max_age_s, 43200);  /* env > file */
    assert_int_equal(s.trim_interval_ms, 250); /* file > default */
    fr_settings_deinit(&s);
    setenv("FRESHET_DLQ_MAX_AGE", "90", 1); /* plain seconds */
    assert_int_equal(load(&s, 1, argv1, NULL, NULL, err), FR_SETTINGS_OK);
    assert_int_equal(s.dlq_max_age_s, 90);
    fr_settings_deinit(&s);

    static const char *const bad[][2] = {{"FRESHET_DLQ_MAX_AGE", "7x"},      {"FRESHET_DLQ_MAX_AGE", "0d"},
                                         {"FRESHET_DLQ_MAX_AGE", "3651d"},   {"FRESHET_DLQ_MAX_ENTRIES", "0"},
                                         {"FRESHET_DLQ_MAX_ENTRIES", "1e3"}, {"FRESHET_TRIM_INTERVAL_MS", "5"},
                                         {"FRESHET_TRIM_INTERVAL_MS", "-1"}};
    for (size_t i = 0; i < FR_ARRAY_LEN(bad); i++) {
        clear_env();
        unsetenv("FRESHET_DLQ_MAX_AGE");
        setenv(bad[i][0], bad[i][1], 1);
        assert_int_equal(load(&s, 1, argv1, NULL, NULL, err), FR_SETTINGS_ERROR);
        assert_non_null(strstr(err, bad[i][0]));
        unsetenv(bad[i][0]);
    }
    write_file(cfg, "dlq_max_age: soon\n");
    assert_int_equal(load(&s, 2, (char *[]){(char *)"freshet-loader", a_cfg, NULL}, NULL, NULL, err),
                     FR_SETTINGS_ERROR);
    assert_non_null(strstr(err, "dlq_max_age"));
    clear_env();
}

static void test_settings_errors(void **state)
{
    (void)state;
    clear_env();
    struct fr_settings s;
    char err[FR_ERR_LEN];
    int rc;
    char **rv;

    setenv("FRESHET_NOW", "not-a-time", 1);
    char *a1[] = {(char *)"x", NULL};
    assert_int_equal(load(&s, 1, a1, &rc, &rv, err), FR_SETTINGS_ERROR);
    assert_non_null(strstr(err, "FRESHET_NOW"));
    assert_non_null(strstr(err, "ISO-8601"));
    unsetenv("FRESHET_NOW");

    char *a2[] = {(char *)"x", (char *)"--log-level", (char *)"loud", NULL};
    assert_int_equal(load(&s, 3, a2, &rc, &rv, err), FR_SETTINGS_ERROR);
    assert_non_null(strstr(err, "--log-level"));
    assert_non_null(strstr(err, "debug, info, warn or error"));

    char *a3[] = {(char *)"x", (char *)"--redis-url", NULL};
    assert_int_equal(load(&s, 2, a3, &rc, &rv, err), FR_SETTINGS_ERROR);
    assert_non_null(strstr(err, "--redis-url needs a value"));

    /* unknown arguments are an error when the caller takes none */
    char *a4[] = {(char *)"x", (char *)"--bogus", NULL};
    assert_int_equal(fr_settings_load(&s, "api", NULL, NULL, 2, a4, NULL, NULL, err), FR_SETTINGS_ERROR);
    assert_non_null(strstr(err, "--bogus"));

    char cfg[256];
    snprintf(cfg, sizeof(cfg), "%s/bad-settings.yaml", tmp_dir);
    write_file(cfg, "redis_url: redis://x\nredis_ulr: y\n");
    char *a5[] = {(char *)"x", (char *)"--config", cfg, NULL};
    assert_int_equal(load(&s, 3, a5, &rc, &rv, err), FR_SETTINGS_ERROR);
    char want[300];
    snprintf(want, sizeof(want), "%s:2:1: unknown key 'redis_ulr'", cfg);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("'%s' does not start with '%s'", err, want);

    char *a6[] = {(char *)"x", (char *)"--config", (char *)"/nonexistent/settings.yaml", NULL};
    assert_int_equal(load(&s, 3, a6, &rc, &rv, err), FR_SETTINGS_ERROR);
    assert_non_null(strstr(err, "/nonexistent/settings.yaml"));

    /* --version and --help stop before anything else */
    fflush(stdout);
    char *a7[] = {(char *)"x", (char *)"--version", NULL};
    assert_int_equal(load(&s, 2, a7, &rc, &rv, err), FR_SETTINGS_EXIT_OK);
    char *a8[] = {(char *)"x", (char *)"--now", (char *)"garbage", (char *)"--help", NULL};
    assert_int_equal(load(&s, 4, a8, &rc, &rv, err), FR_SETTINGS_EXIT_OK);
}

/* ------------------------------------------------------------ load_all */

static void test_load_all(void **state)
{
    (void)state;
    clear_env();
    struct fr_settings s;
    memset(&s, 0, sizeof(s));
    char pdir[600], err[FR_ERR_LEN];
    snprintf(pdir, sizeof(pdir), "%s/pipelines", src_dir);
    s.pipelines_dir = pdir;
    struct fr_pipeline **ps = NULL;
    size_t n = 0;
    if (fr_pipelines_load_all(&s, &ps, &n, err) != 0)
        fail_msg("load_all failed: %s", err);
    assert_true(n >= 1);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found = found || strcmp(ps[i]->name, "players") == 0;
        if (i > 0)
            assert_true(strcmp(ps[i - 1]->path, ps[i]->path) < 0); /* sorted */
    }
    assert_true(found);
    fr_pipelines_free(ps, n);

    /* named, with a pinned now overriding the YAML */
    s.pipelines = (char *)"players";
    s.now_us = 1000000;
    assert_int_equal(fr_pipelines_load_all(&s, &ps, &n, err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ps[0]->now_us, 1000000);
    fr_pipelines_free(ps, n);

    /* a scratch directory with two pipelines, listed sorted; "b" before "a"
     * on disk order does not matter */
    char dir[256], path[300];
    snprintf(dir, sizeof(dir), "%s/pl", tmp_dir);
    mkdir(dir, 0755);
    const char *names[] = {"zeta", "alpha"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/pipeline.yaml", dir, names[i]);
        write_file(path, "datasets:\n  ev:\n    columns:\n      - {name: id, type: text}\n");
    }
    snprintf(path, sizeof(path), "%s/not_a_pipeline", dir);
    mkdir(path, 0755);
    s.pipelines_dir = dir;
    s.pipelines = NULL;
    s.now_us = 0;
    assert_int_equal(fr_pipelines_load_all(&s, &ps, &n, err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ps[0]->name, "alpha");
    assert_string_equal(ps[1]->name, "zeta");
    fr_pipelines_free(ps, n);

    /* a path (contains '/') and a name, comma-separated with spaces */
    char list[700];
    snprintf(list, sizeof(list), " zeta , %s/players ", pdir);
    s.pipelines = list;
    assert_int_equal(fr_pipelines_load_all(&s, &ps, &n, err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ps[0]->name, "zeta");
    assert_string_equal(ps[1]->name, "players");
    fr_pipelines_free(ps, n);

    /* errors: unknown name, empty directory, broken pipeline */
    s.pipelines = (char *)"nope";
    assert_true(fr_pipelines_load_all(&s, &ps, &n, err) < 0);
    assert_non_null(strstr(err, "nope"));
    s.pipelines = NULL;
    s.pipelines_dir = (char *)"/nonexistent-freshet-dir";
    assert_true(fr_pipelines_load_all(&s, &ps, &n, err) < 0);
    assert_non_null(strstr(err, "FRESHET_PIPELINES_DIR"));
    snprintf(path, sizeof(path), "%s/zeta/pipeline.yaml", dir);
    write_file(path, "datasets:\n  ev:\n    columns:\n      - {name: id, type: txt}\n");
    s.pipelines_dir = dir;
    assert_true(fr_pipelines_load_all(&s, &ps, &n, err) < 0);
    char want[400];
    snprintf(want, sizeof(want), "%s:4:26: unknown column type 'txt'", path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("'%s' does not start with '%s'", err, want);
}

int main(void)
{
    find_src_dir();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_players_pipeline),   cmocka_unit_test(test_types),
        cmocka_unit_test(test_errors_datasets),    cmocka_unit_test(test_errors_top),
        cmocka_unit_test(test_errors_sources),     cmocka_unit_test(test_errors_models),
        cmocka_unit_test(test_errors_caches),      cmocka_unit_test(test_full_and_defaults),
        cmocka_unit_test(test_settings_defaults),  cmocka_unit_test(test_settings_precedence),
        cmocka_unit_test(test_settings_retention), cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_load_all),           cmocka_unit_test(test_partitions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
