/* Unit tests of common/config_route.c: a route of every handler kind parses
 * into the documented structs (defaults included), and each config error
 * names file:line:col and the fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "config_route.h"

#define HEAD                                                                                                         \
    "pipeline: t\n"                                                                                                  \
    "datasets:\n"                                                                                                    \
    "  ticks:\n"                                                                                                     \
    "    columns:\n"                                                                                                 \
    "      - {name: sym, type: text}\n"                                                                              \
    "      - {name: at, type: timestamptz}\n"                                                                        \
    "  attrs:\n"                                                                                                     \
    "    columns:\n"                                                                                                 \
    "      - {name: player_id, type: text}\n"                                                                        \
    "      - {name: attribute_name, type: text}\n"                                                                   \
    "      - {name: attribute_value, type: text}\n"                                                                  \
    "caches:\n"                                                                                                      \
    "  panel:\n"                                                                                                     \
    "    type: hash\n"                                                                                               \
    "    from: attrs\n"                                                                                              \
    "    key: player_id\n"                                                                                           \
    "routes:\n"

static struct fr_pipeline *parse(const char *yaml, char err[FR_ERR_LEN])
{
    err[0] = '\0';
    return fr_pipeline_parse(yaml, strlen(yaml), "p.yaml", ".", err);
}

static void test_full(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    const char *y = HEAD "  - name: ticks\n"
                         "    path: /t/{sym}\n"
                         "    summary: Ticks of one symbol\n"
                         "    params:\n"
                         "      sym: {in: path, type: text, pattern: \"^[A-Z]+$\", upper: true, suffix: USD}\n"
                         "      from: {in: query, type: timestamptz}\n"
                         "      to: {in: query, type: timestamptz}\n"
                         "      limit: {in: query, type: int, default: 100, min: 1, max: 1000}\n"
                         "      side: {in: query, type: text, allowed: [buy, sell]}\n"
                         "    checks: [{le: [from, to], msg: \"from must not be after to\"}]\n"
                         "    handler:\n"
                         "      query: \"SELECT * FROM t.ticks WHERE sym = $1 LIMIT $2\"\n"
                         "      args: [sym, limit]\n"
                         "      exists: \"SELECT 1 FROM t.ticks WHERE sym = $1\"\n"
                         "      exists_args: [sym]\n"
                         "    output: {shape: envelope, formats: [json, csv], not_found: \"no {sym}\"}\n"
                         "  - name: attr\n"
                         "    path: /player/attribute\n"
                         "    params:\n"
                         "      player_id: {in: query, type: text, required: true}\n"
                         "      attribute_name: {in: query, type: text, required: true}\n"
                         "    handler:\n"
                         "      cache_field: {cache: panel, key: player_id, field: attribute_name}\n"
                         "  - name: many\n"
                         "    method: POST\n"
                         "    path: /player/attributes\n"
                         "    role: read\n"
                         "    handler: {cache_multi: {cache: panel}}\n"
                         "  - name: put\n"
                         "    method: POST\n"
                         "    path: /t\n"
                         "    handler: {push: {dataset: ticks, max_rows: 10}}\n";
    struct fr_pipeline *p = parse(y, err);
    assert_non_null(p);
    assert_int_equal(p->n_routes, 4);

    const struct fr_route *r = &p->routes[0];
    assert_string_equal(r->name, "ticks");
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->role, "read");
    assert_string_equal(r->summary, "Ticks of one symbol");
    assert_int_equal(r->n_segs, 2);
    assert_string_equal(r->segs[0], "t");
    assert_string_equal(r->segs[1], "{sym}");
    assert_int_equal(r->n_params, 5);
    int sym = fr_route_param_index(r, "sym"), lim = fr_route_param_index(r, "limit");
    assert_true(sym >= 0 && lim >= 0);
    assert_int_equal(r->params[sym].in, FR_PARAM_PATH);
    assert_true(r->params[sym].required); /* path params always are */
    assert_true(r->params[sym].upper);
    assert_string_equal(r->params[sym].suffix, "USD");
    assert_string_equal(r->params[sym].pattern, "^[A-Z]+$");
    assert_int_equal(r->params[lim].type, FR_T_INT);
    assert_true(r->params[lim].has_min && r->params[lim].has_max);
    assert_int_equal(r->params[lim].min, 1);
    assert_int_equal(r->params[lim].max, 1000);
    assert_string_equal(r->params[lim].def, "100");
    int side = fr_route_param_index(r, "side");
    assert_int_equal(r->params[side].n_allowed, 2);
    assert_int_equal(r->n_checks, 1);
    assert_int_equal(r->checks[0].a, fr_route_param_index(r, "from"));
    assert_int_equal(r->checks[0].b, fr_route_param_index(r, "to"));
    assert_int_equal(r->handler, FR_RH_SQL);
    assert_int_equal(r->n_args, 2);
    assert_int_equal(r->args[0], sym);
    assert_int_equal(r->args[1], lim);
    assert_non_null(r->exists);
    assert_int_equal(r->n_exists_args, 1);
    assert_int_equal(r->shape, FR_SHAPE_ENVELOPE);
    assert_true(r->json && r->csv);
    assert_string_equal(r->not_found, "no {sym}");
    assert_int_equal(fr_route_param_index(r, "nope"), -1);

    r = &p->routes[1];
    assert_int_equal(r->handler, FR_RH_CACHE_FIELD);
    assert_string_equal(r->cache, "panel");
    assert_string_equal(r->key_param, "player_id");
    assert_string_equal(r->field_param, "attribute_name");
    assert_true(r->json && !r->csv); /* default formats: json */

    r = &p->routes[2];
    assert_int_equal(r->handler, FR_RH_CACHE_MULTI);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->role, "read");

    r = &p->routes[3];
    assert_int_equal(r->handler, FR_RH_PUSH);
    assert_string_equal(r->role, "write"); /* default for non-GET */
    assert_string_equal(r->dataset, "ticks");
    assert_int_equal(r->max_rows, 10);
    fr_pipeline_free(p);
}

/* Each broken route fails with file:line:col, and a message part. */
static void expect_err(const char *routes, const char *where, const char *part)
{
    char err[FR_ERR_LEN];
    size_t n = strlen(HEAD) + strlen(routes) + 1;
    char *y = malloc(n);
    assert_non_null(y);
    snprintf(y, n, "%s%s", HEAD, routes);
    struct fr_pipeline *p = parse(y, err);
    if (p) {
        fr_pipeline_free(p);
        fail_msg("parsed, expected an error containing '%s' for:\n%s", part, routes);
    }
    if (!strstr(err, where) || !strstr(err, part))
        fail_msg("error '%s' lacks '%s' or '%s'", err, where, part);
    free(y);
}

static void test_errors(void **state)
{
    (void)state;
    /* HEAD has 17 lines: the first route is on line 18 */
    expect_err("  - name: a\n    path: /x\n    handler: {nope: 1}\n", "p.yaml:20:", "nope");
    expect_err("  - name: a\n    path: /x/{id}\n    handler: {query: \"SELECT 1\"}\n", "p.yaml:", "{id}");
    expect_err("  - name: a\n    path: /x\n    params: {id: {in: query, type: int}}\n"
               "    handler: {query: \"SELECT $1\", args: [id, other]}\n",
               "p.yaml:21:", "names 'other', which is not one of its params");
    expect_err("  - name: a\n    path: /x\n    params: {n: {in: query, type: int, min: 5, max: 1}}\n"
               "    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:", "min is above max");
    expect_err("  - name: a\n    path: /x\n    params: {n: {in: query, type: text, min: 5}}\n"
               "    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:", "min applies to int and bigint");
    expect_err("  - name: a\n    path: /x\n    params: {n: {in: query, type: money}}\n"
               "    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:", "type of");
    expect_err("  - name: a\n    path: /x\n    params: {n: {in: query, type: text, pattern: \"([\"}}\n"
               "    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:", "not a valid POSIX extended regex");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "  - name: a\n    path: /y\n    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:21:", "used twice");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "  - name: b\n    path: /x\n    handler: {query: \"SELECT 2\"}\n",
               "p.yaml:", "both serve GET /x");
    expect_err("  - name: a\n    path: x\n    handler: {query: \"SELECT 1\"}\n", "p.yaml:", "must start with '/'");
    expect_err("  - name: a\n    path: /x\n", "p.yaml:18:", "has no handler");
    expect_err("  - name: a\n    method: GOT\n    path: /x\n    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:19:", "method of route 'a'");
    expect_err("  - name: a\n    path: /x\n    handler: {cache_field: {cache: nope, key: k, field: f}}\n",
               "p.yaml:", "unknown cache 'nope'");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\", static: \"{}\"}\n",
               "p.yaml:", "keep one");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n    output: {shape: tree}\n",
               "p.yaml:", "unknown shape 'tree'");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n    output: {formats: [xml]}\n",
               "p.yaml:", "unknown format 'xml'");
    expect_err("  - name: a\n    path: /x\n    handler: {push: {dataset: nope}}\n",
               "p.yaml:", "unknown dataset 'nope'");
    expect_err("  - name: a\n    path: /x\n    params: {a: {in: query, type: int}}\n"
               "    checks: [{le: [a]}]\n    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:", "exactly two params");
    expect_err("  - name: a\n    path: /x\n    colour: red\n    handler: {query: \"SELECT 1\"}\n",
               "p.yaml:", "colour");
}

/* output.csv_header labels the CSV columns (JSON keeps the column names)
 * and csv_newline picks the line end; cache_multi names its body members. */
static void test_csv_header(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    const char *y = HEAD "  - name: summary\n"
                         "    path: /s\n"
                         "    handler: {query: \"SELECT 1 AS a, 2 AS b\"}\n"
                         "    output:\n"
                         "      formats: [json, csv]\n"
                         "      csv_header: [Competition, Number of Teams]\n"
                         "      csv_newline: lf\n"
                         "  - name: plain\n"
                         "    path: /p\n"
                         "    handler: {query: \"SELECT 1\"}\n"
                         "    output: {formats: [csv]}\n"
                         "  - name: many\n"
                         "    method: POST\n"
                         "    path: /m\n"
                         "    handler: {cache_multi: {cache: panel, keys: ids, fields: names}}\n"
                         "  - name: many_default\n"
                         "    method: POST\n"
                         "    path: /m2\n"
                         "    handler: {cache_multi: {cache: panel}}\n";
    struct fr_pipeline *p = parse(y, err);
    assert_non_null(p);
    const struct fr_route *r = &p->routes[0];
    assert_int_equal(r->n_csv_header, 2);
    assert_string_equal(r->csv_header[0], "Competition");
    assert_string_equal(r->csv_header[1], "Number of Teams");
    assert_true(r->csv_lf);
    r = &p->routes[1];
    assert_int_equal(r->n_csv_header, 0);
    assert_null(r->csv_header);
    assert_false(r->csv_lf); /* CRLF by default */
    r = &p->routes[2];
    assert_string_equal(r->body_keys, "ids");
    assert_string_equal(r->body_fields, "names");
    r = &p->routes[3];
    assert_string_equal(r->body_keys, "player_ids"); /* the cache's key column + s */
    assert_string_equal(r->body_fields, "attribute_names");
    fr_pipeline_free(p);

    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {csv_header: [A]}\n",
               "p.yaml:21:", "csv_header applies to sql routes with csv in formats");
    expect_err("  - name: a\n    path: /x\n    handler: {static: \"{}\"}\n"
               "    output: {formats: [json, csv], csv_header: [A]}\n",
               "p.yaml:", "csv_header applies to sql routes");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {formats: [csv], csv_header: []}\n",
               "p.yaml:", "is empty");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {formats: [csv], csv_header: [A, A]}\n",
               "p.yaml:", "twice");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {formats: [csv], csv_header: [\"A\\nB\"]}\n",
               "p.yaml:", "control character");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {formats: [csv], csv_newline: cr}\n",
               "p.yaml:", "must be crlf or lf");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {csv_newline: lf}\n",
               "p.yaml:", "csv_newline applies to routes with csv");
    expect_err("  - name: a\n    method: POST\n    path: /x\n    handler: {cache_multi: {cache: panel, key: k}}\n",
               "p.yaml:", "cache_multi reads its body");
    expect_err("  - name: a\n    path: /x\n    params: {k: {in: query}}\n"
               "    handler: {cache_hash: {cache: panel, key: k, keys: ks}}\n",
               "p.yaml:", "keys applies to cache_multi");
    expect_err("  - name: a\n    path: /x\n    params: {k: {in: query}, f: {in: query}}\n"
               "    handler: {cache_hash: {cache: panel, key: k, field: f}}\n",
               "p.yaml:", "field applies to cache_field");
}

/* output.csv_raw (a route) and csv_raw (an export) turn the CSV formula
 * guard off; both default to false, and csv_raw needs csv in formats. */
static void test_csv_raw(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    char sql[] = "/tmp/fr_test_csv_raw_XXXXXX";
    int fd = mkstemp(sql);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "SELECT 1", 8), 8);
    close(fd);
    char *y = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&y, &len);
    assert_non_null(f);
    fprintf(f,
            HEAD "  - name: raw\n"
                 "    path: /r\n"
                 "    handler: {query: \"SELECT 1\"}\n"
                 "    output: {formats: [json, csv], csv_raw: true}\n"
                 "  - name: guarded\n"
                 "    path: /g\n"
                 "    handler: {query: \"SELECT 1\"}\n"
                 "    output: {formats: [csv]}\n"
                 "exports:\n"
                 "  raw: {sql: %s, after: [ticks], path: out/r.csv, csv_raw: true}\n"
                 "  guarded: {sql: %s, after: [ticks], path: out/g.csv}\n",
            sql, sql);
    fclose(f);
    struct fr_pipeline *p = parse(y, err);
    if (!p)
        fail_msg("%s", err);
    assert_true(p->routes[0].csv_raw);
    assert_false(p->routes[1].csv_raw);
    assert_int_equal(p->n_exports, 2);
    assert_string_equal(p->exports[0].name, "raw");
    assert_true(p->exports[0].csv_raw);
    assert_false(p->exports[1].csv_raw);
    fr_pipeline_free(p);
    free(y);

    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {csv_raw: true}\n",
               "p.yaml:21:", "csv_raw applies to routes with csv in formats");
    expect_err("  - name: a\n    path: /x\n    handler: {query: \"SELECT 1\"}\n"
               "    output: {formats: [csv], csv_raw: maybe}\n",
               "p.yaml:21:", "csv_raw");
    y = NULL;
    f = open_memstream(&y, &len);
    assert_non_null(f);
    fprintf(f, HEAD "exports:\n  raw: {sql: %s, after: [ticks], path: out/r.csv, csv_raw: 2}\n", sql);
    fclose(f);
    p = parse(y, err);
    assert_null(p);
    if (!strstr(err, "p.yaml:") || !strstr(err, "csv_raw"))
        fail_msg("error '%s' does not name csv_raw", err);
    free(y);
    unlink(sql);
}

/* max_age: seconds or a number with s, m, h or d; absent = 0 (never
 * reported); errors name file:line:col of the value and the accepted form. */
static void test_max_age(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    const char *y = HEAD "  - name: a\n"
                         "    path: /a\n"
                         "    max_age: 15m\n"
                         "    handler: {query: \"SELECT 1\"}\n"
                         "  - name: b\n"
                         "    path: /b\n"
                         "    max_age: 90\n"
                         "    handler: {query: \"SELECT 1\"}\n"
                         "  - name: c\n"
                         "    path: /c\n"
                         "    max_age: 2d\n"
                         "    handler: {cache_hash: {cache: panel, key: player_id}}\n"
                         "    params: {player_id: {in: query, type: text, required: true}}\n"
                         "  - name: d\n"
                         "    path: /d\n"
                         "    handler: {query: \"SELECT 1\"}\n";
    struct fr_pipeline *p = parse(y, err);
    if (!p)
        fail_msg("%s", err);
    assert_int_equal(p->routes[0].max_age_s, 900);
    assert_int_equal(p->routes[1].max_age_s, 90);
    assert_int_equal(p->routes[2].max_age_s, 2 * 86400);
    assert_int_equal(p->routes[3].max_age_s, 0);
    fr_pipeline_free(p);

    /* the route starts on line 18: max_age's value is at 20:14 */
    expect_err("  - name: a\n    path: /x\n    max_age: soon\n    handler: {query: \"SELECT 1\"}\n", "p.yaml:20:14",
               "max_age of route 'a' must be seconds or a number with s, m, h or d");
    expect_err("  - name: a\n    path: /x\n    max_age: 0\n    handler: {query: \"SELECT 1\"}\n", "p.yaml:20:14",
               "1s..3650d");
    expect_err("  - name: a\n    path: /x\n    max_age: 3651d\n    handler: {query: \"SELECT 1\"}\n", "p.yaml:20:14",
               "not '3651d'");
    expect_err("  - name: a\n    path: /x\n    max_age: -5m\n    handler: {query: \"SELECT 1\"}\n", "p.yaml:20:14",
               "max_age");
    expect_err("  - name: a\n    path: /x\n    max_age: [1]\n    handler: {query: \"SELECT 1\"}\n", "p.yaml:20:14",
               "max_age");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),    cmocka_unit_test(test_errors),  cmocka_unit_test(test_csv_header),
        cmocka_unit_test(test_csv_raw), cmocka_unit_test(test_max_age),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
