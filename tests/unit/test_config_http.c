/* Unit tests of common/config_http.c: a full http_json source parses into
 * the documented structs (defaults included), and each config error names
 * file:line:col and the fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "config_http.h"

#define HEAD                                                                                                         \
    "pipeline: t\n"                                                                                                  \
    "datasets:\n"                                                                                                    \
    "  comps:\n"                                                                                                     \
    "    key: [id]\n"                                                                                                \
    "    columns:\n"                                                                                                 \
    "      - {name: id, type: bigint, required: true}\n"                                                             \
    "      - {name: name, type: text}\n"                                                                             \
    "  k:\n"                                                                                                         \
    "    columns:\n"                                                                                                 \
    "      - {name: symbol, type: text}\n"                                                                           \
    "      - {name: open_time, type: timestamptz}\n"                                                                 \
    "      - {name: comp, type: bigint}\n"                                                                           \
    "sources:\n"                                                                                                     \
    "  comps:\n"                                                                                                     \
    "    type: http_json\n"                                                                                          \
    "    dataset: comps\n"                                                                                           \
    "    url: \"http://127.0.0.1:1/v4/competitions\"\n"                                                              \
    "    records: $.competitions\n"                                                                                  \
    "    fields: {id: $.id, name: $.name}\n"

static struct fr_pipeline *parse(const char *yaml, char err[FR_ERR_LEN])
{
    err[0] = '\0';
    return fr_pipeline_parse(yaml, strlen(yaml), "p.yaml", ".", err);
}

static void test_full(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    const char *y = HEAD "    headers: {X-Auth-Token: \"tok\"}\n"
                         "    query: {plan: TIER_ONE}\n"
                         "    schedule: every 1h\n"
                         "    paginate: {type: page, param: page, size_param: limit, size: 100}\n"
                         "    rate_limit: {per_minute: 10, remaining_header: X-Requests-Available-Minute,"
                         " reset_header: X-RequestCounter-Reset}\n"
                         "  klines:\n"
                         "    type: http_json\n"
                         "    dataset: k\n"
                         "    url: \"http://127.0.0.1:1/klines\"\n"
                         "    query: {symbol: \"{symbol}\"}\n"
                         "    records: $\n"
                         "    fields:\n"
                         "      symbol: {value: \"{symbol}\"}\n"
                         "      open_time: {path: \"$[0]\", as: epoch_ms}\n"
                         "    fan_out: {var: symbol, values: [BTCUSDT, ETHUSDT]}\n"
                         "    window: {start: -720h, step: 1000h, align: 1h, start_param: startTime,"
                         " end_param: endTime, format: epoch_ms}\n"
                         "    schedule: \"0 * * * *\"\n"
                         "    retry: {max: 2, base_ms: 10, max_ms: 100}\n"
                         "    timeout: {connect_ms: 100, total_ms: 1000}\n"
                         "    tls_verify: false\n"
                         "    batch: {rows: 10}\n"
                         "  teams:\n"
                         "    type: http_json\n"
                         "    dataset: k\n"
                         "    url: \"http://127.0.0.1:1/c/{parent.id}/teams\"\n"
                         "    records: $.teams\n"
                         "    fields: {comp: {value: \"{parent.id}\"}}\n"
                         "    fan_out: {source: comps, var: parent}\n";
    struct fr_pipeline *p = parse(y, err);
    if (!p)
        fail_msg("%s", err);
    assert_int_equal(p->n_sources, 3);
    const struct fr_http_source *h = p->sources[0].http;
    assert_int_equal(p->sources[0].kind, FR_SRC_HTTP_JSON);
    assert_string_equal(h->url, "http://127.0.0.1:1/v4/competitions");
    assert_int_equal(h->n_headers, 1);
    assert_string_equal(h->headers[0].name, "X-Auth-Token");
    assert_int_equal(h->n_fields, 2);
    assert_int_equal(h->schedule.kind, FR_SCHED_EVERY);
    assert_int_equal(h->schedule.every_ms, 3600000);
    assert_int_equal(h->paginate.kind, FR_PAGE_PAGE);
    assert_int_equal(h->paginate.start, 1);
    assert_int_equal(h->paginate.max_pages, 1000);
    assert_int_equal(h->per_minute, 10);
    assert_true(h->tls_verify);
    assert_int_equal(h->retry_max, 5);
    assert_int_equal(h->max_bytes, FR_HTTP_DEFAULT_MAX_BYTES);
    h = p->sources[1].http;
    assert_true(h->window.enabled && h->window.start_relative);
    assert_true(h->window.start_us == -720LL * 3600 * 1000000);
    assert_true(h->window.step_us == 1000LL * 3600 * 1000000);
    assert_int_equal(h->fan_out.n_values, 2);
    assert_int_equal(h->fields[1].as, FR_AS_EPOCH_MS);
    assert_non_null(h->fields[0].value);
    assert_int_equal(h->schedule.kind, FR_SCHED_CRON);
    assert_false(h->tls_verify);
    assert_int_equal(p->sources[1].batch_rows, 10);
    h = p->sources[2].http;
    assert_string_equal(h->fan_out.source, "comps");
    assert_int_equal(h->schedule.kind, FR_SCHED_MANUAL);
    fr_pipeline_free(p);
}

static void bad(const char *tail, const char *needle)
{
    char err[FR_ERR_LEN], *y = NULL;
    if (asprintf(&y, "%s%s", HEAD, tail) < 0)
        fail();
    struct fr_pipeline *p = parse(y, err);
    free(y);
    if (p) {
        fr_pipeline_free(p);
        fail_msg("accepted: %s", tail);
    }
    if (strncmp(err, "p.yaml:", 7) != 0 || strstr(err, needle) == NULL)
        fail_msg("error '%s' lacks file:line:col or '%s'", err, needle);
}

static void test_errors(void **state)
{
    (void)state;
    bad("    bogus: 1\n", "unknown key 'bogus'");
    bad("    schedule: every 5x\n", "every N");
    bad("    schedule: \"61 * * * *\"\n", "minute field");
    bad("    paginate: {type: pages}\n", "page, offset, cursor or next");
    bad("    paginate: {type: cursor, param: c}\n", "cursor_path");
    bad("    paginate: {type: offset, param: o}\n", "size");
    bad("    fan_out: {var: x}\n", "exactly one of source");
    bad("    fan_out: {var: x, source: nope}\n", "unknown source 'nope'");
    bad("    window: {step: 1h}\n", "needs start");
    bad("    window: {start: yesterday, step: 1h}\n", "ISO-8601");
    bad("    window: {start: -1h, step: 1x}\n", "duration");
    bad("    rate_limit: {per_minute: 0}\n", "per_minute");
    bad("    retry: {base_ms: 100, max_ms: 10}\n", "max_ms");
    bad("    query: {a: \"{nope}\"}\n", "unknown variable {nope}");
    bad("    query: {a: \"{window.start}\"}\n", "has no window");
    bad("    query: {a: \"{x\"}\n", "unterminated");
    bad("  k2:\n    type: http_json\n    dataset: k\n    url: \"http://h/{p.nope}\"\n    records: $\n"
        "    fields: {symbol: \"$[0]\"}\n    fan_out: {source: comps, var: p}\n",
        "no column 'nope'");
    bad("  k2:\n    type: http_json\n    dataset: k\n    url: \"ftp://h/\"\n    records: $\n"
        "    fields: {symbol: \"$[0]\"}\n",
        "http:// or https://");
    bad("  k2:\n    type: http_json\n    dataset: k\n    url: \"http://h/\"\n    records: items\n"
        "    fields: {symbol: \"$[0]\"}\n",
        "not a JSON path");
    bad("  k2:\n    type: http_json\n    dataset: k\n    url: \"http://h/\"\n    records: $\n"
        "    fields: {nocol: \"$[0]\"}\n",
        "not a column");
    bad("  k2:\n    type: http_json\n    dataset: comps\n    url: \"http://h/\"\n    records: $\n"
        "    fields: {name: \"$[0]\"}\n",
        "lack required column 'id'");
    bad("  k2:\n    type: http_json\n    dataset: k\n    url: \"http://h/\"\n    records: $\n"
        "    fields: {symbol: {path: \"$[0]\", value: x}}\n",
        "exactly one of path");
    bad("  k2:\n    type: http_json\n    dataset: k\n    url: \"http://h/\"\n    records: $\n"
        "    fields: {open_time: {path: \"$[0]\", as: epoch_us}}\n",
        "epoch_ms, epoch_s or string");
    bad("  k2:\n    type: http_json\n    dataset: k\n    url: \"http://h/\"\n    fields: {symbol: \"$[0]\"}\n",
        "has no records");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
