/* unit: the models: section (common/config_model.c): aggregate models
 * (kind, from, as, key, each column's merge with by/limit/within), their
 * errors with file:line:col and a fix, models reading models, cycles, and
 * the dependency order the models are put in. */
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

#include "config.h"

#define FILE_LABEL "pipelines/t/pipeline.yaml"

static char dir[64];

static int setup(void **state)
{
    char path[128];
    FILE *f;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/fr_test_config_model_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/m.sql", dir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("SELECT 1", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    char path[128];

    (void)state;
    snprintf(path, sizeof(path), "%s/m.sql", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}

static struct fr_pipeline *parse_ok(const char *yaml)
{
    char err[FR_ERR_LEN];
    struct fr_pipeline *p = fr_pipeline_parse(yaml, strlen(yaml), FILE_LABEL, dir, err);
    if (!p)
        fail_msg("parse failed: %s", err);
    return p;
}

/* Parses yaml expecting failure at the first occurrence of `at` with
 * `hint` in the message and a "; fix" part. */
static void expect_error(const char *yaml, const char *at, const char *hint)
{
    char err[FR_ERR_LEN];
    char want[96];
    const char *pos = strstr(yaml, at);
    int line = 1, col = 1;
    struct fr_pipeline *p = fr_pipeline_parse(yaml, strlen(yaml), FILE_LABEL, dir, err);

    if (p) {
        fr_pipeline_free(p);
        fail_msg("parsed, expected an error with '%s' for:\n%s", hint, yaml);
    }
    assert_non_null(pos);
    for (const char *q = yaml; q < pos; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(want, sizeof(want), FILE_LABEL ":%d:%d: ", line, col);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("error '%s' does not start with '%s'", err, want);
    if (!strstr(err, hint))
        fail_msg("error '%s' lacks '%s'", err, hint);
    if (!strstr(err, "; "))
        fail_msg("error '%s' has no '; fix' part", err);
}

#define HEAD                                                                                                         \
    "pipeline: t\n"                                                                                                  \
    "datasets:\n"                                                                                                    \
    "  ev:\n"                                                                                                        \
    "    columns:\n"                                                                                                 \
    "      - {name: pid, type: text}\n"                                                                              \
    "      - {name: ts, type: timestamptz}\n"                                                                        \
    "      - {name: amount, type: float}\n"                                                                          \
    "      - {name: country, type: text}\n"                                                                          \
    "models:\n"

static const char full[] = HEAD "  panel:\n"
                                "    sql: m.sql\n"
                                "    inputs: [days]\n"
                                "    key: [pid]\n"
                                "    columns:\n"
                                "      - {name: pid, type: text}\n"
                                "  days:\n"
                                "    kind: aggregate\n"
                                "    from: ev\n"
                                "    as: rows\n"
                                "    key: [pid]\n"
                                "    sql: m.sql\n"
                                "    columns:\n"
                                "      - {name: pid, type: text}\n"
                                "      - {name: n, type: bigint, merge: count}\n"
                                "      - {name: total, type: float, merge: sum}\n"
                                "      - {name: lo, type: float, merge: min}\n"
                                "      - {name: last_ts, type: timestamptz, merge: max}\n"
                                "      - {name: first_ts, type: timestamptz, merge: min}\n"
                                "      - {name: country, type: text, merge: latest, by: last_ts}\n"
                                "      - {name: first_country, type: text, merge: first, by: first_ts}\n"
                                "      - {name: recent, type: float, merge: list, by: last_ts, limit: 10}\n"
                                "      - {name: week, type: float, merge: list, by: last_ts, within: 7 days}\n"
                                "  top:\n"
                                "    sql: m.sql\n"
                                "    inputs: [panel, ev]\n"
                                "    key: [pid]\n"
                                "    columns:\n"
                                "      - {name: pid, type: text}\n";

static void test_aggregate(void **state)
{
    struct fr_pipeline *p = parse_ok(full);
    const struct fr_model *m;

    (void)state;
    /* dependency order: days, then panel (reads days), then top (reads panel) */
    assert_int_equal(p->n_models, 3);
    assert_string_equal(p->models[0].name, "days");
    assert_string_equal(p->models[1].name, "panel");
    assert_string_equal(p->models[2].name, "top");
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(p->models[i].order, i);
    m = fr_pipeline_model(p, "days");
    assert_non_null(m);
    assert_int_equal(m->kind, FR_MODEL_AGGREGATE);
    assert_string_equal(m->from, "ev");
    assert_string_equal(m->as, "rows");
    assert_int_equal(m->n_inputs, 1);
    assert_string_equal(m->inputs[0], "ev");
    assert_int_equal(m->agg[0].merge, FR_AGG_KEY);
    assert_int_equal(m->agg[1].merge, FR_AGG_COUNT);
    assert_int_equal(m->agg[2].merge, FR_AGG_SUM);
    assert_int_equal(m->agg[3].merge, FR_AGG_MIN);
    assert_int_equal(m->agg[4].merge, FR_AGG_MAX);
    assert_int_equal(m->agg[6].merge, FR_AGG_LATEST);
    assert_int_equal(m->agg[6].by, 4);
    assert_int_equal(m->agg[7].merge, FR_AGG_FIRST);
    assert_int_equal(m->agg[7].by, 5);
    assert_int_equal(m->agg[8].merge, FR_AGG_LIST);
    assert_int_equal(m->agg[8].limit, 10);
    assert_int_equal(m->agg[8].within, 0);
    assert_int_equal(m->agg[9].within, 7 * 86400);
    assert_int_equal(m->agg[9].limit, 0);
    assert_int_equal(fr_pipeline_model(p, "panel")->kind, FR_MODEL_SELECT);
    assert_null(fr_pipeline_model(p, "panel")->agg);
    fr_pipeline_free(p);
}

static void test_aggregate_defaults(void **state)
{
    struct fr_pipeline *p = parse_ok(HEAD "  a:\n    kind: aggregate\n    from: ev\n    key: [pid]\n    columns:\n"
                                          "      - {name: pid, type: text}\n"
                                          "      - {name: amount, type: float, merge: max}\n");

    (void)state;
    /* no sql: the batch's columns of the same names, read as "batch" */
    assert_string_equal(p->models[0].as, "batch");
    assert_string_equal(p->models[0].sql, "SELECT \"pid\", \"amount\" FROM \"batch\"");
    fr_pipeline_free(p);
}

#define AGG    HEAD "  a:\n    kind: aggregate\n    from: ev\n    key: [pid]\n    sql: m.sql\n    columns:\n"
#define KEYCOL "      - {name: pid, type: text}\n"

static void test_aggregate_errors(void **state)
{
    (void)state;
    expect_error(HEAD "  a:\n    kind: rollup\n", "rollup", "unknown model kind 'rollup'");
    expect_error(HEAD "  a:\n    kind: aggregate\n    key: [pid]\n    columns:\n" KEYCOL, "kind", "has no from");
    expect_error(HEAD "  a:\n    kind: aggregate\n    from: nope\n", "nope", "aggregates unknown dataset 'nope'");
    expect_error(HEAD "  a:\n    kind: aggregate\n    from: ev\n    inputs: [ev]\n", "[ev]", "replace inputs:");
    expect_error(HEAD "  a:\n    kind: aggregate\n    from: ev\n    daily: true\n", "true", "daily does not apply");
    expect_error(HEAD "  a:\n    kind: aggregate\n    from: ev\n    as: fr_rows\n", "fr_rows", "reserved");
    expect_error(HEAD "  a:\n    kind: aggregate\n    from: ev\n    columns:\n" KEYCOL, "kind", "has no key");
    expect_error(AGG KEYCOL "      - {name: n, type: bigint}\n", "{name: n", "column 'n' of model 'a' has no merge");
    expect_error(AGG KEYCOL "      - {name: n, type: bigint, merge: avg}\n", "avg", "unknown merge 'avg'");
    expect_error(AGG "      - {name: pid, type: text, merge: sum}\n", "sum", "is a key column");
    expect_error(AGG KEYCOL "      - {name: n, type: text, merge: sum}\n", "sum", "sum needs a number column");
    expect_error(AGG KEYCOL "      - {name: n, type: float, merge: count}\n", "count}",
                 "count needs an int or bigint column");
    expect_error(AGG KEYCOL "      - {name: c, type: text, merge: latest}\n", "{name: c, type: text, merge: latest}",
                 "latest needs an order column");
    expect_error(AGG KEYCOL "      - {name: c, type: text, merge: latest, by: nope}\n", "nope",
                 "must name another column");
    expect_error(AGG KEYCOL "      - {name: ts, type: timestamptz, merge: min}\n"
                            "      - {name: c, type: text, merge: latest, by: ts}\n",
                 "ts}", "latest orders by a column with merge: max");
    expect_error(AGG KEYCOL "      - {name: ts, type: timestamptz, merge: max}\n"
                            "      - {name: c, type: text, merge: first, by: ts}\n",
                 "ts}", "first orders by a column with merge: min");
    expect_error(AGG KEYCOL "      - {name: ts, type: timestamptz, merge: max}\n"
                            "      - {name: c, type: float, merge: list, by: ts}\n",
                 "{name: c, type: float, merge: list, by: ts}", "a list is bounded");
    expect_error(AGG KEYCOL "      - {name: ts, type: timestamptz, merge: max}\n"
                            "      - {name: c, type: float, merge: list, by: ts, within: 3 fortnights}\n",
                 "3 fortnights", "within of column 'c' of model 'a' must be a duration");
    expect_error(AGG KEYCOL "      - {name: n, type: bigint, merge: max}\n"
                            "      - {name: c, type: float, merge: list, by: n, within: 3 days}\n",
                 "3 days", "must be a positive whole number");
    expect_error(AGG KEYCOL "      - {name: ts, type: timestamptz, merge: max}\n"
                            "      - {name: c, type: float, merge: max, limit: 3}\n",
                 "3}", "limit and within apply to list only");
    expect_error(AGG KEYCOL "      - {name: ts, type: timestamptz, merge: max, by: pid}\n", "pid}",
                 "by applies to latest, first and list only");
    expect_error(AGG KEYCOL "      - {name: ts, type: timestamptz, merge: max}\n"
                            "      - {name: c, type: float, merge: list, by: ts, limit: 3}\n"
                            "      - {name: c__by, type: float, merge: max}\n",
                 "{name: c__by", "clashes with the order array of list 'c'");
    expect_error(HEAD "  a:\n    kind: aggregate\n    from: ev\n    key: [pid]\n    columns:\n" KEYCOL
                      "      - {name: nope, type: float, merge: max}\n",
                 "kind", "column 'nope' is not a column of dataset 'ev'");
    expect_error(HEAD "  a:\n    from: ev\n    sql: m.sql\n    inputs: [ev]\n    columns:\n" KEYCOL, "ev\n",
                 "apply to aggregate models");
}

static void test_dependencies(void **state)
{
    (void)state;
    expect_error(HEAD "  a:\n    sql: m.sql\n    inputs: [b]\n    key: [pid]\n    columns:\n" KEYCOL
                      "  b:\n    sql: m.sql\n    inputs: [a]\n    key: [pid]\n    columns:\n" KEYCOL,
                 "sql: m.sql\n    inputs: [b]", "part of a cycle");
    expect_error(HEAD "  a:\n    sql: m.sql\n    inputs: [a]\n    key: [pid]\n    columns:\n" KEYCOL, "[a]",
                 "reads itself");
    expect_error(HEAD "  a:\n    sql: m.sql\n    inputs: [zz]\n    key: [pid]\n    columns:\n" KEYCOL, "[zz]",
                 "reads unknown dataset or model 'zz'");
}

#define SEL                                                                                                          \
    HEAD "  s:\n    sql: m.sql\n    inputs: [ev]\n    key: [pid]\n    columns:\n" KEYCOL                             \
         "      - {name: n, type: int}\n"

static void test_data_tests(void **state)
{
    struct fr_pipeline *p = parse_ok(SEL "    tests:\n"
                                         "      - not_null: n\n"
                                         "      - unique: pid\n"
                                         "      - accepted_values: {column: n, values: [1, 2]}\n"
                                         "      - relationships: {column: pid, to: ev, field: pid}\n"
                                         "      - expression: \"n >= 0\"\n");
    const struct fr_model *m = &p->models[0];

    (void)state;
    assert_int_equal(m->n_tests, 5);
    assert_int_equal(m->tests[0].kind, FR_TEST_NOT_NULL);
    assert_string_equal(m->tests[0].name, "not_null(n)");
    assert_int_equal(m->tests[1].kind, FR_TEST_UNIQUE);
    assert_string_equal(m->tests[1].column, "pid");
    assert_int_equal(m->tests[2].kind, FR_TEST_ACCEPTED);
    assert_int_equal(m->tests[2].n_values, 2);
    assert_string_equal(m->tests[2].values[1], "2");
    assert_int_equal(m->tests[3].kind, FR_TEST_RELATIONSHIP);
    assert_string_equal(m->tests[3].to_table, "t.ev");
    assert_string_equal(m->tests[3].field, "pid");
    assert_string_equal(m->tests[3].name, "relationships(pid -> ev.pid)");
    assert_int_equal(m->tests[4].kind, FR_TEST_EXPRESSION);
    assert_string_equal(m->tests[4].expr, "n >= 0");
    fr_pipeline_free(p);

    expect_error(SEL "    tests:\n      - not_nul: n\n", "not_nul", "unknown test 'not_nul'");
    expect_error(SEL "    tests:\n      - not_null: zz\n", "zz", "'zz' is not a column of the model");
    expect_error(SEL "    tests:\n      - {not_null: n, unique: n}\n", "{not_null", "write one per list item");
    expect_error(SEL "    tests:\n      - accepted_values: {column: n}\n", "{column: n}",
                 "needs column: and values:");
    expect_error(SEL "    tests:\n      - relationships: {column: n, to: nope, field: x}\n", "- relationships",
                 "points to unknown dataset or model 'nope'");
    expect_error(SEL "    tests:\n      - relationships: {column: n, to: ev, field: x}\n", "- relationships",
                 "'x' is not a column of 'ev'");
    expect_error(SEL "    tests:\n      - expression: \"n > 0; DROP TABLE x\"\n", "\"n > 0", "remove the ';'");
    expect_error(AGG KEYCOL "      - {name: n, type: bigint, merge: count}\n    tests:\n      - not_null: n\n",
                 "- not_null", "data tests apply to select models");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregate),        cmocka_unit_test(test_aggregate_defaults),
        cmocka_unit_test(test_aggregate_errors), cmocka_unit_test(test_dependencies),
        cmocka_unit_test(test_data_tests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
