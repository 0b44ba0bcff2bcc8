/* Unit tests of common/parse.c over the real players pipeline dataset
 * (pipelines/players/pipeline.yaml): CSV with and without header in any
 * chunking, NDJSON, JSON arrays, rejects with their lines and reasons, and
 * fr_value_canon for every type. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "config.h"
#include "parse.h"
#include "parse_int.h"

static struct fr_pipeline *g_pl;
static const struct fr_dataset *g_ds;
static bool g_log_drift; /* run() appends the drift tallies to its log */
static bool g_dom;       /* run() reads NDJSON with jansson only (the reference path) */

/* The repository root, from this file's path (CMake passes it absolute). */
static char *pipeline_path(void)
{
    const char *f = __FILE__;
    const char *cut = strstr(f, "tests/unit/test_parse.c");
    if (!cut)
        return fr_xstrdup("pipelines/players/pipeline.yaml");
    return fr_xasprintf("%.*spipelines/players/pipeline.yaml", (int)(cut - f), f);
}

static int setup(void **state)
{
    (void)state;
    char err[FR_ERR_LEN] = "";
    char *path = pipeline_path();
    g_pl = fr_pipeline_load(path, err);
    free(path);
    if (!g_pl) {
        fprintf(stderr, "fr_pipeline_load: %s\n", err);
        return -1;
    }
    g_ds = fr_pipeline_dataset(g_pl, "events");
    return g_ds ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fr_pipeline_free(g_pl);
    return 0;
}

/* ---- a log of what the parser produced -------------------------------- */

struct log {
    const struct fr_dataset *ds;
    struct fr_buf b;
    int stop_after; /* on_row returns -42 once this many rows were seen; 0 = never */
    int rows;
};

static int log_row(void *data, const struct fr_row *r)
{
    struct log *l = data;
    fr_buf_printf(&l->b, "%u:", r->line);
    for (size_t i = 0; i < l->ds->n_columns; i++) {
        if (i)
            fr_buf_putc(&l->b, '|');
        if (r->nulls[i]) {
            fr_buf_puts(&l->b, "~");
        } else {
            assert_int_equal(strlen(r->vals[i]), r->lens[i]); /* NUL-terminated too */
            fr_buf_append(&l->b, r->vals[i], r->lens[i]);
        }
    }
    fr_buf_putc(&l->b, '\n');
    l->rows++;
    if (l->stop_after && l->rows >= l->stop_after)
        return -42;
    return 0;
}

static int log_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct log *l = data;
    fr_buf_printf(&l->b, "%u! %s [%.*s]\n", line, reason, (int)(raw_len > 40 ? 40 : raw_len), raw);
    return 0;
}

/* Parses `in` fed in chunks of `chunk` bytes (0 = whole, -1 = random sizes).
 * Returns the log (caller frees); *rc gets the first nonzero result. */
static char *run(const struct fr_dataset *ds, enum fr_file_format fmt, bool header, const char *in, size_t n,
                 long chunk, int *rc, char *err_out)
{
    struct log l = {.ds = ds};
    fr_buf_init(&l.b, 0);
    fr_buf_puts(&l.b, "");
    fr_parser_t *p = fr_parser_new(ds, fmt, header, log_row, log_reject, &l);
    fr__parser_set_dom(p, g_dom);
    *rc = 0;
    size_t off = 0;
    while (off < n && *rc == 0) {
        size_t k = n - off;
        if (chunk > 0 && (size_t)chunk < k)
            k = (size_t)chunk;
        else if (chunk < 0)
            k = 1 + (size_t)rand() % (k < 64 ? k : 64);
        /* an exact-size copy so ASan catches reads past the chunk */
        char *cp = malloc(k);
        assert_non_null(cp);
        memcpy(cp, in + off, k);
        *rc = fr_parser_feed(p, cp, k);
        free(cp);
        off += k;
    }
    if (*rc == 0)
        *rc = fr_parser_finish(p);
    if (err_out)
        snprintf(err_out, FR_ERR_LEN, "%s", fr_parser_error(p));
    fr_buf_printf(&l.b, "ok=%llu rejected=%llu\n", (unsigned long long)fr_parser_rows_ok(p),
                  (unsigned long long)fr_parser_rows_rejected(p));
    for (int k = 0; g_log_drift && k < FR_DRIFT_KINDS; k++) {
        const struct fr_drift_tally *t = fr_parser_drift(p, (enum fr_drift_kind)k);
        if (t->count == 0 && t->n_fields == 0)
            continue;
        fr_buf_printf(&l.b, "drift %s=%llu@%u", fr_drift_kind_name((enum fr_drift_kind)k),
                      (unsigned long long)t->count, t->first_line);
        for (uint32_t i = 0; i < t->n_fields; i++)
            fr_buf_printf(&l.b, "%c%s", i ? ',' : ' ', t->fields[i]);
        fr_buf_putc(&l.b, '\n');
    }
    if (g_log_drift && fr_parser_drift_failed(p))
        fr_buf_puts(&l.b, "drift failed\n");
    fr_parser_free(p);
    return l.b.data;
}

static void expect_same_any_chunking(const struct fr_dataset *ds, enum fr_file_format fmt, bool header,
                                     const char *in, size_t n, const char *want)
{
    int rc;
    char *whole = run(ds, fmt, header, in, n, 0, &rc, NULL);
    assert_int_equal(rc, 0);
    if (strcmp(whole, want) != 0) {
        fprintf(stderr, "got:\n%s\nwant:\n%s", whole, want);
        fail();
    }
    char *bytewise = run(ds, fmt, header, in, n, 1, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(bytewise, whole);
    free(bytewise);
    for (int i = 0; i < 20; i++) {
        char *rnd = run(ds, fmt, header, in, n, -1, &rc, NULL);
        assert_int_equal(rc, 0);
        assert_string_equal(rnd, whole);
        free(rnd);
    }
    free(whole);
}

/* ---- CSV -------------------------------------------------------------- */

static const char CSV_SAMPLE[] =
    "\xEF\xBB\xBF"
    "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score,extra\r\n"
    "srvTournamentJoined,p1,2024-06-10,us,ios,2024-06-10 23:59:30,,,x\r\n"
    "srvTransactionCompleted,p2,2024-06-11,DE,android,2024-06-11T01:02:03Z,4.99,,\r\n"
    "\"srvTournamentFinished\",\"p "
    "\"\"3\"\"\",,FR,\"web\nbrowser\",2024-06-11T05:00:00.250+02:00,,1234.5,\"multi\nline\"\n"
    "\n"
    "srvTournamentJoined,p4,2024-06-12,USA,ios,2024-06-12T00:00:00Z,,,\n"
    "srvBogus,p5,2024-06-12,US,ios,2024-06-12T00:00:00Z,,,\n"
    "srvTournamentFinished,p6,2024-06-12,US,ios,not-a-time,,,\n"
    "srvTransactionCompleted,p7,2024-06-12,US,ios,2024-06-12T00:00:00Z,abc,,\n"
    "srvTournamentJoined,p8,US\n"
    "srvTournamentJoined,,2024-06-12,US,ios,2024-06-12T00:00:00Z,,,\n"
    "srvTournamentJoined,p9,2024-06-12,u1,ios,2024-06-12T00:00:00Z,,,\n"
    "srvTournamentJoined,p10,2024-13-12,US,ios,2024-06-12T00:00:00Z,,,\n"
    "\"srvTournamentJoined\"x,p11,2024-06-12,US,ios,2024-06-12T00:00:00Z,,,\n"
    "srvTournamentJoined,p12,2024-06-12,gb,pc,2024-06-12T10:00:00Z,,7,last";

static const char CSV_WANT[] =
    "2:srvTournamentJoined|p1|2024-06-10|US|ios|2024-06-10T23:59:30Z|~|~\n"
    "3:srvTransactionCompleted|p2|2024-06-11|DE|android|2024-06-11T01:02:03Z|4.99|~\n"
    "4:srvTournamentFinished|p \"3\"|~|FR|web\nbrowser|2024-06-11T03:00:00.25Z|~|1234.5\n"
    "8! country: must be 2 letters, got 'USA' [srvTournamentJoined,p4,2024-06-12,USA,io]\n"
    "9! name: 'srvBogus' is not one of srvTournamentJoined, srvTournamentFinished, srvTransactionCompleted "
    "[srvBogus,p5,2024-06-12,US,ios,2024-06-12]\n"
    "10! timestamp_utc: 'not-a-time' is not an ISO-8601 timestamp [srvTournamentFinished,p6,2024-06-12,US,i]\n"
    "11! deposit_amount: 'abc' is not a number [srvTransactionCompleted,p7,2024-06-12,US]\n"
    "12! record has 3 fields, the header has 9 [srvTournamentJoined,p8,US]\n"
    "13! player_id: is required but empty [srvTournamentJoined,,2024-06-12,US,ios,2]\n"
    "14! country: must be 2 letters, got 'u1' [srvTournamentJoined,p9,2024-06-12,u1,ios]\n"
    "15! date_utc: '2024-13-12' is not a date (YYYY-MM-DD) [srvTournamentJoined,p10,2024-13-12,US,io]\n"
    "16! malformed quoted field (text after the closing quote) [\"srvTournamentJoined\"x,p11,2024-06-12,US]\n"
    "17:srvTournamentJoined|p12|2024-06-12|GB|pc|2024-06-12T10:00:00Z|~|7\n"
    "ok=4 rejected=9\n";

static void test_csv_header_any_chunking(void **state)
{
    (void)state;
    srand(7);
    expect_same_any_chunking(g_ds, FR_FMT_CSV, true, CSV_SAMPLE, sizeof(CSV_SAMPLE) - 1, CSV_WANT);
}

static void test_csv_header_by_name(void **state)
{
    (void)state;
    /* reordered, case and spaces in names, optional columns missing */
    static const char in[] = "Country , timestamp_utc,player_id,NAME\n"
                             "fr,2024-01-02T03:04:05Z,px,srvTournamentJoined\n";
    expect_same_any_chunking(g_ds, FR_FMT_CSV, true, in, sizeof(in) - 1,
                             "2:srvTournamentJoined|px|~|FR|~|2024-01-02T03:04:05Z|~|~\nok=1 rejected=0\n");
}

static void test_csv_header_missing_required(void **state)
{
    (void)state;
    static const char in[] = "name,date_utc,country,timestamp_utc\nsrvTournamentJoined,,US,2024-01-01\n";
    int rc;
    char err[FR_ERR_LEN];
    char *log = run(g_ds, FR_FMT_CSV, true, in, sizeof(in) - 1, 0, &rc, err);
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(err, "line 1: CSV header lacks required column player_id (schema drift: missing, action "
                             "reject: the whole file is rejected)");
    assert_string_equal(log, "1! CSV header lacks required column player_id (schema drift: missing, action reject: "
                             "the whole file is rejected) [name,date_utc,country,timestamp_utc]\nok=0 rejected=1\n");
    free(log);
    /* a file with no header at all */
    log = run(g_ds, FR_FMT_CSV, true, "\n\r\n", 3, 0, &rc, err);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, "no header"));
    free(log);
    /* a header naming a column twice */
    static const char dup[] = "name,player_id,country,timestamp_utc,country\n";
    log = run(g_ds, FR_FMT_CSV, true, dup, sizeof(dup) - 1, 0, &rc, err);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, "country twice"));
    free(log);
}

static void test_csv_no_header(void **state)
{
    (void)state;
    static const char in[] = "srvTournamentJoined,p1,2024-06-10,us,ios,2024-06-10T00:00:00Z,,\n"
                             "srvTournamentJoined,p1,2024-06-10,us,ios,2024-06-10T00:00:00Z,,,\n"
                             "srvTournamentFinished,p2,,se,,2024-06-10T00:00:01Z,,-3.5e1\r\n"
                             "\"unterminated,p3";
    expect_same_any_chunking(g_ds, FR_FMT_CSV, false, in, sizeof(in) - 1,
                             "1:srvTournamentJoined|p1|2024-06-10|US|ios|2024-06-10T00:00:00Z|~|~\n"
                             "2! record has 9 fields, expected 8 [srvTournamentJoined,p1,2024-06-10,us,ios]\n"
                             "3:srvTournamentFinished|p2|~|SE|~|2024-06-10T00:00:01Z|~|-35\n"
                             "4! unterminated quoted field [\"unterminated,p3]\n"
                             "ok=2 rejected=2\n");
}

static void test_csv_too_long(void **state)
{
    (void)state;
    struct fr_buf in;
    fr_buf_init(&in, 0);
    fr_buf_puts(&in, "name,player_id,country,timestamp_utc\n");
    fr_buf_puts(&in, "srvTournamentJoined,a,US,2024-01-01\n");
    fr_buf_puts(&in, "srvTournamentJoined,");
    for (size_t i = 0; i < FR_PARSE_MAX_LINE; i++)
        fr_buf_putc(&in, i % 1000 == 999 ? '"' : 'x'); /* stray quotes must not matter */
    fr_buf_puts(&in, ",US,2024-01-01\n");
    fr_buf_puts(&in, "srvTournamentJoined,b,US,2024-01-02\n");
    /* exactly at the cap is fine */
    size_t at = in.len;
    fr_buf_puts(&in, "srvTournamentJoined,");
    size_t pad = FR_PARSE_MAX_LINE - strlen("srvTournamentJoined,") - strlen(",US,2024-01-03");
    for (size_t i = 0; i < pad; i++)
        fr_buf_putc(&in, 'y');
    fr_buf_puts(&in, ",US,2024-01-03\n");
    assert_int_equal(in.len - at - 1, FR_PARSE_MAX_LINE);
    fr_buf_puts(&in, "srvTournamentJoined,c,US,2024-01-04");

    struct log l = {.ds = g_ds};
    for (int mode = 0; mode < 3; mode++) {
        fr_buf_init(&l.b, 0);
        fr_parser_t *p = fr_parser_new(g_ds, FR_FMT_CSV, true, log_row, log_reject, &l);
        size_t chunk = mode == 0 ? in.len : mode == 1 ? 4096 : 777777;
        for (size_t off = 0; off < in.len; off += chunk) {
            size_t k = in.len - off < chunk ? in.len - off : chunk;
            assert_int_equal(fr_parser_feed(p, in.data + off, k), 0);
        }
        assert_int_equal(fr_parser_finish(p), 0);
        assert_int_equal(fr_parser_rows_ok(p), 4);
        assert_int_equal(fr_parser_rows_rejected(p), 1);
        const char *s = l.b.data;
        assert_memory_equal(s, "2:srvTournamentJoined|a|", strlen("2:srvTournamentJoined|a|"));
        assert_non_null(strstr(s, "\n3! record is longer than 1048576 bytes [srvTournamentJoined,xxx"));
        assert_non_null(strstr(s, "\n4:srvTournamentJoined|b|~|US|~|2024-01-02T00:00:00Z|~|~\n"));
        assert_non_null(strstr(s, "\n5:srvTournamentJoined|yyyy"));
        assert_non_null(strstr(s, "\n6:srvTournamentJoined|c|~|US|~|2024-01-04T00:00:00Z|~|~\n"));
        fr_parser_free(p);
        fr_buf_deinit(&l.b);
    }
    fr_buf_deinit(&in);
}

static void test_callback_stops(void **state)
{
    (void)state;
    struct log l = {.ds = g_ds, .stop_after = 2};
    fr_buf_init(&l.b, 0);
    fr_parser_t *p = fr_parser_new(g_ds, FR_FMT_CSV, true, log_row, log_reject, &l);
    assert_int_equal(fr_parser_feed(p, CSV_SAMPLE, sizeof(CSV_SAMPLE) - 1), -42);
    assert_int_equal(l.rows, 2);
    assert_int_equal(fr_parser_feed(p, "x\n", 2), -42);
    assert_int_equal(fr_parser_finish(p), -42);
    fr_parser_free(p);
    fr_buf_deinit(&l.b);
}

/* ---- NDJSON and JSON ---------------------------------------------------- */

static const char ND_SAMPLE[] =
    "\xEF\xBB\xBF{\"name\":\"srvTransactionCompleted\",\"player_id\":\"p1\",\"date_utc\":\"2024-06-10\","
    "\"country\":\"us\",\"platform\":\"ios\",\"timestamp_utc\":\"2024-06-10T10:00:00Z\",\"deposit_amount\":4.99,"
    "\"tournament_score\":null,\"extra\":{\"a\":1}}\n"
    "  \r\n"
    "[1,2]\n"
    "\"str\"\n"
    "{\"name\":\"srvTournamentFinished\",\"player_id\":\"p2\",\"country\":\"DE\","
    "\"timestamp_utc\":\"2024-06-10 10:00:00\",\"tournament_score\":77}\r\n"
    "{\"name\":\"srvTournamentFinished\",\"player_id\":\"p3\",\"country\":\"DE\","
    "\"timestamp_utc\":\"2024-06-10T10:00:00Z\",\"tournament_score\":\"abc\"}\n"
    "{\"name\":\"srvTournamentFinished\",\"player_id\":{\"x\":1},\"country\":\"DE\","
    "\"timestamp_utc\":\"2024-06-10T10:00:00Z\"}\n"
    "{\"name\":\"srvTournamentFinished\"\n"
    "{\"name\":\"srvTournamentJoined\",\"player_id\":\"p4\",\"country\":\"DE\","
    "\"timestamp_utc\":\"2024-06-10T10:00:00Z\",\"deposit_amount\":1e2,\"platform\":true}\n"
    "{\"name\":null,\"player_id\":\"p5\",\"country\":\"DE\",\"timestamp_utc\":\"2024-06-10T10:00:00Z\"}\n"
    "{\"player_id\":12345,\"name\":\"srvTournamentJoined\",\"country\":\"fr\","
    "\"timestamp_utc\":\"2024-06-10T10:00:00Z\",\"tournament_score\":0.1}\n"
    "{\"name\":\"srvTournamentJoined\",\"name\":\"srvTournamentJoined\"}\n"
    "{\"name\":\"srvTournamentJoined\",\"player_id\":\"p6\",\"country\":\"FR\",\"timestamp_utc\":\"2024-06-10\"}";

static const char ND_WANT[] =
    "1:srvTransactionCompleted|p1|2024-06-10|US|ios|2024-06-10T10:00:00Z|4.99|~\n"
    "3! line is not a JSON object [[1,2]]\n"
    "4! line is not a JSON object [\"str\"]\n"
    "5:srvTournamentFinished|p2|~|DE|~|2024-06-10T10:00:00Z|~|77\n"
    "6! tournament_score: 'abc' is not a number [{\"name\":\"srvTournamentFinished\",\"player_]\n"
    "7! player_id: must be a text, not an object [{\"name\":\"srvTournamentFinished\",\"player_]\n"
    "8! invalid JSON at column 31: '}' expected near end of file [{\"name\":\"srvTournamentFinished\"]\n"
    "9:srvTournamentJoined|p4|~|DE|true|2024-06-10T10:00:00Z|100|~\n"
    "10! name: is required but empty [{\"name\":null,\"player_id\":\"p5\",\"country\":]\n"
    "11:srvTournamentJoined|12345|~|FR|~|2024-06-10T10:00:00Z|~|0.1\n"
    "12! invalid JSON at column 36: duplicate object key near '\"name\"' "
    "[{\"name\":\"srvTournamentJoined\",\"name\":\"sr]\n"
    "13:srvTournamentJoined|p6|~|FR|~|2024-06-10T00:00:00Z|~|~\n"
    "ok=5 rejected=7\n";

static void test_ndjson(void **state)
{
    (void)state;
    srand(11);
    expect_same_any_chunking(g_ds, FR_FMT_NDJSON, false, ND_SAMPLE, sizeof(ND_SAMPLE) - 1, ND_WANT);
}

static void test_json_array(void **state)
{
    (void)state;
    static const char in[] = "[{\"name\":\"srvTournamentJoined\",\"player_id\":\"a\",\"country\":\"se\","
                             "\"timestamp_utc\":\"2024-06-10T10:00:00Z\"},\n 5,\n"
                             "{\"name\":\"srvTournamentJoined\",\"player_id\":\"\",\"country\":\"se\","
                             "\"timestamp_utc\":\"2024-06-10T10:00:00Z\"}]";
    expect_same_any_chunking(g_ds, FR_FMT_JSON, false, in, sizeof(in) - 1,
                             "1:srvTournamentJoined|a|~|SE|~|2024-06-10T10:00:00Z|~|~\n"
                             "2! element is not a JSON object [5]\n"
                             "3! player_id: is required but empty [{\"name\":\"srvTournamentJoined\",\"player_id]\n"
                             "ok=1 rejected=2\n");
    int rc;
    char err[FR_ERR_LEN];
    char *log = run(g_ds, FR_FMT_JSON, false, "{\"a\":1}", 7, 0, &rc, err);
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(err, "JSON document is not an array of objects");
    free(log);
    log = run(g_ds, FR_FMT_JSON, false, "[{", 2, 0, &rc, err);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, "invalid JSON"));
    free(log);
}

/* ---- values ----------------------------------------------------------- */

static void expect_canon(const struct fr_column *col, const char *in, const char *want)
{
    struct fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_puts(&out, "pre:");
    bool is_null = true;
    char reason[FR_ERR_LEN] = "";
    bool ok = fr_value_canon(col, in, strlen(in), &out, &is_null, reason);
    if (!ok)
        fail_msg("%s '%s': rejected: %s", col->name, in, reason);
    if (!want) {
        assert_true(is_null);
        assert_string_equal(out.data, "pre:");
    } else {
        assert_false(is_null);
        if (strcmp(out.data + 4, want) != 0)
            fail_msg("%s '%s': got '%s', want '%s'", col->name, in, out.data + 4, want);
    }
    fr_buf_deinit(&out);
}

static void expect_bad(const struct fr_column *col, const char *in, size_t n, const char *want_reason)
{
    struct fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_puts(&out, "pre:");
    bool is_null = false;
    char reason[FR_ERR_LEN] = "";
    if (fr_value_canon(col, in, n, &out, &is_null, reason))
        fail_msg("%s '%.*s' accepted as '%s'", col->name, (int)n, in, out.data);
    assert_string_equal(out.data, "pre:"); /* nothing left behind */
    if (strcmp(reason, want_reason) != 0)
        fail_msg("%s '%.*s': reason '%s', want '%s'", col->name, (int)n, in, reason, want_reason);
    fr_buf_deinit(&out);
}

static void test_value_canon(void **state)
{
    (void)state;
    struct fr_column c = {.name = (char *)"v"};

    c.type = FR_T_TEXT;
    expect_canon(&c, "  keep spaces ", "  keep spaces ");
    expect_canon(&c, "", NULL);
    expect_canon(&c, "ünïcödé", "ünïcödé");
    expect_bad(&c, "a\0b", 3, "v: contains a NUL byte");
    expect_bad(&c, "bad \xff utf8", 10, "v: is not valid UTF-8");
    expect_bad(&c, "\xed\xa0\x80", 3, "v: is not valid UTF-8"); /* surrogate */
    expect_bad(&c, "\xc3", 1, "v: is not valid UTF-8");
    c.required = true;
    expect_bad(&c, "", 0, "v: is required but empty");
    c.required = false;
    c.length = 3;
    expect_canon(&c, "abc", "abc");
    expect_bad(&c, "abcd", 4, "v: must be 3 characters long, got 4 in 'abcd'");
    c.upper = true;
    c.length = 2;
    expect_canon(&c, "us", "US");
    expect_canon(&c, "gB", "GB");
    expect_bad(&c, "u1", 2, "v: must be 2 letters, got 'u1'");
    expect_bad(&c, "\xc3\xa9", 2, "v: must be 2 letters, got '\xc3\xa9'");
    c.length = 0;
    expect_canon(&c, "abcDEF", "ABCDEF");
    expect_bad(&c, "ab c", 4, "v: must be letters only, got 'ab c'");
    c.upper = false;
    char *allowed[] = {(char *)"x", (char *)"yy"};
    c.allowed = allowed;
    c.n_allowed = 2;
    expect_canon(&c, "yy", "yy");
    expect_bad(&c, "y", 1, "v: 'y' is not one of x, yy");
    c.allowed = NULL;
    c.n_allowed = 0;

    c.type = FR_T_INT;
    expect_canon(&c, "42", "42");
    expect_canon(&c, " -7 ", "-7");
    expect_canon(&c, "+007", "7");
    expect_canon(&c, "-2147483648", "-2147483648");
    expect_canon(&c, "   ", NULL);
    expect_bad(&c, "2147483648", 10, "v: 2147483648 is out of range for int");
    expect_bad(&c, "1.0", 3, "v: '1.0' is not an integer");
    expect_bad(&c, "-", 1, "v: '-' is not an integer");
    expect_bad(&c, "12a", 3, "v: '12a' is not an integer");
    c.type = FR_T_BIGINT;
    expect_canon(&c, "9223372036854775807", "9223372036854775807");
    expect_canon(&c, "-9223372036854775808", "-9223372036854775808");
    expect_bad(&c, "9223372036854775808", 19, "v: '9223372036854775808' is not an integer");

    c.type = FR_T_FLOAT;
    expect_canon(&c, "4.99", "4.99");
    expect_canon(&c, "0.1", "0.1");
    expect_canon(&c, "1e3", "1000");
    expect_canon(&c, "-0.5", "-0.5");
    expect_canon(&c, "0.30000000000000004", "0.30000000000000004");
    expect_canon(&c, "12", "12");
    expect_bad(&c, "nan", 3, "v: 'nan' is not a number");
    expect_bad(&c, "inf", 3, "v: 'inf' is not a number");
    expect_bad(&c, "1e999", 5, "v: '1e999' is not a number");
    expect_bad(&c, "0x10", 4, "v: '0x10' is not a number");
    expect_bad(&c, "1,5", 3, "v: '1,5' is not a number");
    expect_bad(&c, "1.2.3", 5, "v: '1.2.3' is not a number");

    c.type = FR_T_NUMERIC;
    expect_canon(&c, "123.4500", "123.4500");
    expect_canon(&c, "-.5", "-.5");
    expect_canon(&c, "5.", "5.");
    expect_canon(&c, "1.5e-3", "1.5e-3");
    expect_bad(&c, "1e", 2, "v: '1e' is not a decimal number");
    expect_bad(&c, ".", 1, "v: '.' is not a decimal number");
    expect_bad(&c, "NaN", 3, "v: 'NaN' is not a decimal number");

    c.type = FR_T_BOOL;
    expect_canon(&c, "TRUE", "t");
    expect_canon(&c, "t", "t");
    expect_canon(&c, "1", "t");
    expect_canon(&c, "Yes", "t");
    expect_canon(&c, "false", "f");
    expect_canon(&c, "F", "f");
    expect_canon(&c, "0", "f");
    expect_canon(&c, "no", "f");
    expect_bad(&c, "maybe", 5, "v: 'maybe' is not a boolean (true/false)");

    c.type = FR_T_TIMESTAMPTZ;
    expect_canon(&c, "2024-06-10 23:59:30", "2024-06-10T23:59:30Z");
    expect_canon(&c, "2024-06-10T23:59:30Z", "2024-06-10T23:59:30Z");
    expect_canon(&c, "2024-06-10T23:59:30.5+01:00", "2024-06-10T22:59:30.5Z");
    expect_canon(&c, "2024-06-10", "2024-06-10T00:00:00Z");
    expect_bad(&c, "yesterday", 9, "v: 'yesterday' is not an ISO-8601 timestamp");
    expect_bad(&c, "2024-02-30T00:00:00Z", 20, "v: '2024-02-30T00:00:00Z' is not an ISO-8601 timestamp");

    c.type = FR_T_DATE;
    expect_canon(&c, "2024-02-29", "2024-02-29");
    expect_bad(&c, "2023-02-29", 10, "v: '2023-02-29' is not a date (YYYY-MM-DD)");
    expect_bad(&c, "20240101", 8, "v: '20240101' is not a date (YYYY-MM-DD)");

    c.type = FR_T_JSON;
    expect_canon(&c, "{ \"a\" : [1, 2.5, \"x\"], \"b\": null }", "{\"a\":[1,2.5,\"x\"],\"b\":null}");
    expect_canon(&c, "\"str\"", "\"str\"");
    expect_canon(&c, " 12 ", "12");
    expect_bad(&c, "{", 1, "v: invalid JSON: string or '}' expected near end of file");
}

static void test_format_from_name(void **state)
{
    (void)state;
    assert_int_equal(fr_format_from_name("a/b/events-1.csv"), FR_FMT_CSV);
    assert_int_equal(fr_format_from_name("X.CSV"), FR_FMT_CSV);
    assert_int_equal(fr_format_from_name("e.ndjson"), FR_FMT_NDJSON);
    assert_int_equal(fr_format_from_name("e.jsonl"), FR_FMT_NDJSON);
    assert_int_equal(fr_format_from_name("e.json"), FR_FMT_JSON);
    assert_int_equal(fr_format_from_name("e.txt"), 0);
    assert_int_equal(fr_format_from_name("csv"), 0);
}

/* ---- schema drift (issue 3) ------------------------------------------- */

/* A keyed dataset `dt.ev` (key id) with the given drift actions, loaded
 * through the YAML parser like any pipeline. */
static struct fr_pipeline *drift_pipeline(const char *missing, const char *type, const char *extra)
{
    char err[FR_ERR_LEN] = "";
    char *yaml = fr_xasprintf("pipeline: dt\n"
                              "datasets:\n"
                              "  ev:\n"
                              "    key: [id]\n"
                              "    drift: {missing: %s, type: %s, extra: %s}\n"
                              "    columns:\n"
                              "      - {name: id, type: bigint, required: true}\n"
                              "      - {name: name, type: text, required: true}\n"
                              "      - {name: score, type: int}\n"
                              "      - {name: note, type: text, length: 2}\n"
                              "sources:\n"
                              "  drop: {type: file, dataset: ev, formats: [csv, ndjson, json]}\n",
                              missing, type, extra);
    struct fr_pipeline *pl = fr_pipeline_parse(yaml, strlen(yaml), "drift.yaml", ".", err);
    free(yaml);
    if (!pl)
        fprintf(stderr, "drift pipeline: %s\n", err);
    assert_non_null(pl);
    return pl;
}

/* Runs `in` through a parser of dt.ev with the given policy (whole and in
 * random chunks: same log) and compares the log with tallies. */
static void expect_drift(const char *missing, const char *type, const char *extra, enum fr_file_format fmt,
                         const char *in, int want_rc, const char *want)
{
    struct fr_pipeline *pl = drift_pipeline(missing, type, extra);
    const struct fr_dataset *ds = fr_pipeline_dataset(pl, "ev");
    int rc;
    g_log_drift = true;
    char *log = run(ds, fmt, true, in, strlen(in), 0, &rc, NULL);
    if (strcmp(log, want) != 0)
        fprintf(stderr, "--- got:\n%s--- want:\n%s", log, want);
    assert_string_equal(log, want);
    assert_int_equal(rc, want_rc);
    if (fmt != FR_FMT_JSON) {
        char *pieces = run(ds, fmt, true, in, strlen(in), -1, &rc, NULL);
        assert_string_equal(pieces, want);
        free(pieces);
    }
    g_log_drift = false;
    free(log);
    fr_pipeline_free(pl);
}

static const char NDJ[] = "{\"id\":1,\"name\":\"a\",\"score\":5}\n"
                          "{\"id\":2,\"score\":6}\n"                         /* name missing */
                          "{\"id\":3,\"name\":\"c\",\"score\":\"x7\"}\n"     /* score mistyped */
                          "{\"name\":\"d\"}\n"                               /* key missing */
                          "{\"id\":\"five\",\"name\":\"e\"}\n"               /* key mistyped */
                          "{\"id\":6,\"name\":\"f\",\"note\":\"toolong\"}\n" /* validation, not drift */
                          "{\"id\":7,\"name\":\"g\",\"zz\":1,\"yy\":2}\n";   /* two extra keys */

/* Regression: a key or unique text value too long for PostgreSQL's btree
 * index (~2700 bytes) failed its whole batch at load. The parser rejects
 * that row alone, naming the column and the limit; 2000 bytes still load,
 * and a long value of a plain column is not bounded. */
static void test_indexed_value_bound(void **state)
{
    char err[FR_ERR_LEN];
    const char *yaml = "pipeline: ix\n"
                       "datasets:\n"
                       "  tags:\n"
                       "    key: [name]\n"
                       "    columns:\n"
                       "      - {name: name, type: text, required: true}\n"
                       "      - {name: label, type: text, unique: true}\n"
                       "      - {name: note, type: text}\n"
                       "sources:\n"
                       "  drop: {type: file, dataset: tags, formats: [csv, ndjson]}\n";
    struct fr_pipeline *pl = fr_pipeline_parse(yaml, strlen(yaml), "ix.yaml", ".", err);
    const struct fr_dataset *ds;
    struct fr_buf in, want;
    char *log;
    int rc;
    const size_t max = FR_PARSE_MAX_INDEXED_BYTES;

    (void)state;
    assert_non_null(pl);
    ds = fr_pipeline_dataset(pl, "tags");
    fr_buf_init(&in, 0);
    fr_buf_init(&want, 0);
    (void)fr_buf_puts(&in, "name,label,note\n");
    for (size_t i = 0; i < max; i++) /* line 2: key of exactly the limit */
        (void)fr_buf_putc(&in, 'k');
    (void)fr_buf_puts(&in, ",a,x\n");
    for (size_t i = 0; i <= max; i++) /* line 3: key one byte over */
        (void)fr_buf_putc(&in, 'k');
    (void)fr_buf_puts(&in, ",b,x\nc,");
    for (size_t i = 0; i < 3000; i++) /* line 4: a unique value of 3000 bytes */
        (void)fr_buf_putc(&in, 'u');
    (void)fr_buf_puts(&in, ",x\nd,d,");
    for (size_t i = 0; i < 3000; i++) /* line 5: a plain column: no bound */
        (void)fr_buf_putc(&in, 'n');
    (void)fr_buf_puts(&in, "\n");
    log = run(ds, FR_FMT_CSV, true, in.data, in.len, 0, &rc, NULL);
    assert_int_equal(rc, 0);
    (void)fr_buf_printf(&want, "2:%.*s|a|x\n", (int)max, in.data + 16);
    (void)fr_buf_printf(&want, "3! name: 2001 bytes, over the limit of 2000 bytes for a key column [%.40s]\n",
                        in.data + 16);
    (void)fr_buf_puts(&want, "4! label: 3000 bytes, over the limit of 2000 bytes for a unique column [c,uuuuuuuuuuuuu"
                             "uuuuuuuuuuuuuuuuuuuuuuuuu]\n");
    assert_non_null(strstr(log, want.data));
    assert_non_null(strstr(log, "5:d|d|nnnn"));
    free(log);
    /* NDJSON: the same rule */
    fr_buf_reset(&in);
    (void)fr_buf_puts(&in, "{\"name\":\"");
    for (size_t i = 0; i < 3000; i++)
        (void)fr_buf_putc(&in, 'k');
    (void)fr_buf_puts(&in, "\"}\n{\"name\":\"ok\"}\n");
    log = run(ds, FR_FMT_NDJSON, false, in.data, in.len, 0, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "1! name: 3000 bytes, over the limit of 2000 bytes for a key column"));
    assert_non_null(strstr(log, "2:ok|~|~"));
    free(log);
    fr_buf_deinit(&in);
    fr_buf_deinit(&want);
    fr_pipeline_free(pl);
}

static void test_drift_default_policy(void **state)
{
    (void)state;
    /* reject, reject, ignore: the reasons are the plain ones, extra keys unseen */
    expect_drift(
        "reject", "reject", "ignore", FR_FMT_NDJSON, NDJ, 0,
        "1:1|a|5|~\n"
        "2! name: is required but empty [{\"id\":2,\"score\":6}]\n"
        "3! score: 'x7' is not an integer [{\"id\":3,\"name\":\"c\",\"score\":\"x7\"}]\n"
        "4! id: is required but empty [{\"name\":\"d\"}]\n"
        "5! id: 'five' is not an integer [{\"id\":\"five\",\"name\":\"e\"}]\n"
        "6! note: must be 2 characters long, got 7 in 'toolong' [{\"id\":6,\"name\":\"f\",\"note\":\"toolong\"}]\n"
        "7:7|g|~|~\n"
        "ok=2 rejected=5\n"
        "drift missing=2@2 name,id\n"
        "drift type=2@3 score,id\n");
}

static void test_drift_null(void **state)
{
    (void)state;
    /* null: non-key values load as null, key columns still reject, extra keys dropped and counted */
    expect_drift(
        "null", "null", "null", FR_FMT_NDJSON, NDJ, 0,
        "1:1|a|5|~\n"
        "2:2|~|6|~\n"
        "3:3|c|~|~\n"
        "4! id: is required but empty (schema drift: missing, action null; a key column cannot be null) "
        "[{\"name\":\"d\"}]\n"
        "5! id: 'five' is not an integer (schema drift: type, action null; a key column cannot be null) "
        "[{\"id\":\"five\",\"name\":\"e\"}]\n"
        "6! note: must be 2 characters long, got 7 in 'toolong' [{\"id\":6,\"name\":\"f\",\"note\":\"toolong\"}]\n"
        "7:7|g|~|~\n"
        "ok=4 rejected=3\n"
        "drift missing=2@2 name,id\n"
        "drift type=2@3 score,id\n"
        "drift extra=2@7 zz,yy\n");
    /* a JSON value of the wrong kind is type drift too */
    expect_drift("reject", "null", "ignore", FR_FMT_JSON,
                 "[{\"id\":1,\"name\":\"a\",\"score\":{\"v\":1}},{\"id\":[2],\"name\":\"b\"}]", 0,
                 "1:1|a|~|~\n"
                 "2! id: must be a bigint, not an array (schema drift: type, action null; a key column cannot be "
                 "null) [{\"id\":[2],\"name\":\"b\"}]\n"
                 "ok=1 rejected=1\n"
                 "drift type=2@1 score,id\n");
}

static void test_drift_null_required(void **state)
{
    (void)state;
    /* regression (fuzz_parse, corpus/parse/regress-required-type-null): type
     * `null` never nulls a required column; the row is rejected with its
     * reason. Only `missing: null` loads a NULL there (row 3). */
    expect_drift("reject", "null", "ignore", FR_FMT_JSON,
                 "[{\"id\":1,\"name\":[\"a\"]},{\"id\":2,\"name\":{\"v\":1},\"score\":\"x\"}]", 0,
                 "1! name: must be a text, not an array (schema drift: type, action null; a required column cannot "
                 "be null) [{\"id\":1,\"name\":[\"a\"]}]\n"
                 "2! name: must be a text, not an object (schema drift: type, action null; a required column cannot "
                 "be null) [{\"id\":2,\"name\":{\"v\":1},\"score\":\"x\"}]\n"
                 "ok=0 rejected=2\n"
                 "drift type=2@1 name\n");
    expect_drift("null", "null", "ignore", FR_FMT_NDJSON,
                 "{\"id\":1,\"name\":[1],\"score\":\"x\"}\n{\"id\":2,\"name\":true}\n{\"id\":3}\n", 0,
                 "1! name: must be a text, not an array (schema drift: type, action null; a required column cannot "
                 "be null) [{\"id\":1,\"name\":[1],\"score\":\"x\"}]\n"
                 "2:2|true|~|~\n"
                 "3:3|~|~|~\n"
                 "ok=2 rejected=1\n"
                 "drift missing=1@3 name\n"
                 "drift type=1@1 name\n");
}

static void test_drift_fail(void **state)
{
    (void)state;
    /* type fail: the first mistyped value stops everything; on_reject sees it once */
    expect_drift("reject", "fail", "ignore", FR_FMT_NDJSON, NDJ, -EINVAL,
                 "1:1|a|5|~\n"
                 "2! name: is required but empty [{\"id\":2,\"score\":6}]\n"
                 "3! score: 'x7' is not an integer (schema drift: type, action fail: the whole file is rejected) "
                 "[{\"id\":3,\"name\":\"c\",\"score\":\"x7\"}]\n"
                 "ok=1 rejected=2\n"
                 "drift missing=1@2 name\n"
                 "drift type=1@3 score\n"
                 "drift failed\n");
    expect_drift("fail", "reject", "ignore", FR_FMT_NDJSON, NDJ, -EINVAL,
                 "1:1|a|5|~\n"
                 "2! name: is required but empty (schema drift: missing, action fail: the whole file is rejected) "
                 "[{\"id\":2,\"score\":6}]\n"
                 "ok=1 rejected=1\n"
                 "drift missing=1@2 name\n"
                 "drift failed\n");
    /* extra fail in a JSON array */
    expect_drift("reject", "reject", "fail", FR_FMT_JSON,
                 "[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":\"b\",\"q\":0}]", -EINVAL,
                 "1:1|a|~|~\n"
                 "2! q: is not a column of dt.ev (schema drift: extra, action fail: the whole file is rejected) "
                 "[{\"id\":2,\"name\":\"b\",\"q\":0}]\n"
                 "ok=1 rejected=1\n"
                 "drift extra=1@2 q\n"
                 "drift failed\n");
    /* the error names line, field and kind */
    struct fr_pipeline *pl = drift_pipeline("reject", "fail", "ignore");
    fr_parser_t *p = fr_parser_new(fr_pipeline_dataset(pl, "ev"), FR_FMT_CSV, true, NULL, NULL, NULL);
    static const char csv[] = "id,name,score\n1,a,2\n2,b,zz\n3,c,4\n";
    assert_int_equal(fr_parser_feed(p, csv, sizeof(csv) - 1), -EINVAL);
    assert_true(fr_parser_drift_failed(p));
    assert_string_equal(fr_parser_error(p), "line 3: score: 'zz' is not an integer (schema drift: type, action fail: "
                                            "the whole file is rejected)");
    assert_int_equal(fr_parser_finish(p), -EINVAL);
    fr_parser_free(p);
    assert_true(fr_drift_has_fail(&fr_pipeline_dataset(pl, "ev")->drift));
    fr_pipeline_free(pl);
}

static void test_drift_extra_reject(void **state)
{
    (void)state;
    expect_drift(
        "reject", "reject", "reject", FR_FMT_NDJSON, NDJ, 0,
        "1:1|a|5|~\n"
        "2! name: is required but empty [{\"id\":2,\"score\":6}]\n"
        "3! score: 'x7' is not an integer [{\"id\":3,\"name\":\"c\",\"score\":\"x7\"}]\n"
        "4! id: is required but empty [{\"name\":\"d\"}]\n"
        "5! id: 'five' is not an integer [{\"id\":\"five\",\"name\":\"e\"}]\n"
        "6! note: must be 2 characters long, got 7 in 'toolong' [{\"id\":6,\"name\":\"f\",\"note\":\"toolong\"}]\n"
        "7! zz: is not a column of dt.ev (schema drift: extra, action reject) [{\"id\":7,\"name\":\"g\",\"zz\""
        ":1,\"yy\":2}]\n"
        "ok=1 rejected=6\n"
        "drift missing=2@2 name,id\n"
        "drift type=2@3 score,id\n"
        "drift extra=2@7 zz,yy\n");
}

static void test_drift_csv_header(void **state)
{
    (void)state;
    /* an undeclared header column: ignore (default) loads, null drops and counts per row */
    static const char extra[] = "id,name,bonus,score\n1,a,x,2\n2,b,y,3\n";
    expect_drift("reject", "reject", "ignore", FR_FMT_CSV, extra, 0, "2:1|a|2|~\n3:2|b|3|~\nok=2 rejected=0\n");
    expect_drift("reject", "reject", "null", FR_FMT_CSV, extra, 0,
                 "2:1|a|2|~\n3:2|b|3|~\nok=2 rejected=0\ndrift extra=2@1 bonus\n");
    /* reject or fail: the header fails the file (every row would be rejected) */
    expect_drift(
        "reject", "reject", "reject", FR_FMT_CSV, extra, -EINVAL,
        "1! bonus: CSV header column is not a column of dt.ev (schema drift: extra, action reject: the whole "
        "file is rejected) [id,name,bonus,score]\n"
        "ok=0 rejected=1\ndrift extra=1@1 bonus\ndrift failed\n");
    /* a required column absent from the header: null fills it, unless it is the key */
    expect_drift("null", "reject", "ignore", FR_FMT_CSV, "id,score\r\n1,2\r\n2,\r\n", 0,
                 "2:1|~|2|~\n3:2|~|~|~\nok=2 rejected=0\ndrift missing=2@2 name\n");
    expect_drift("null", "reject", "ignore", FR_FMT_CSV, "name,score\n1,2\n", -EINVAL,
                 "1! CSV header lacks required column id (schema drift: missing, action null; a key column cannot be "
                 "null) [name,score]\nok=0 rejected=1\ndrift missing=1@1 id\ndrift failed\n");
    /* an empty header name is an extra column too */
    expect_drift("reject", "reject", "null", FR_FMT_CSV, "id,name,\n1,a,\n", 0,
                 "2:1|a|~|~\nok=1 rejected=0\ndrift extra=1@1 #3\n");
}

static void test_drift_event_json(void **state)
{
    (void)state;
    struct fr_drift_tally t = {.count = 12, .first_line = 7, .n_fields = 2, .fields = {"score", "na\"me"}};
    struct fr_buf b;
    fr_buf_init(&b, 0);
    assert_true(fr_drift_event_json(&b, "players", "players.events", "a.csv", FR_DRIFT_TYPE, &t, FR_DRIFT_NULL));
    json_error_t jerr;
    json_t *j = json_loadb(b.data, b.len, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "schema.drift");
    assert_string_equal(json_string_value(json_object_get(j, "pipeline")), "players");
    assert_string_equal(json_string_value(json_object_get(j, "dataset")), "players.events");
    assert_string_equal(json_string_value(json_object_get(j, "file")), "a.csv");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "type");
    assert_string_equal(json_string_value(json_object_get(j, "field")), "score");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "fields"), 1)), "na\"me");
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 12);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), 7);
    assert_string_equal(json_string_value(json_object_get(j, "action")), "null");
    assert_non_null(json_object_get(j, "ts"));
    json_decref(j);
    /* nothing to say: no count, or ignore */
    size_t len = b.len;
    assert_false(fr_drift_event_json(&b, "p", "p.d", "f", FR_DRIFT_EXTRA, &t, FR_DRIFT_IGNORE));
    t.count = 0;
    assert_false(fr_drift_event_json(&b, "p", "p.d", "f", FR_DRIFT_TYPE, &t, FR_DRIFT_REJECT));
    assert_int_equal(b.len, len);
    fr_buf_deinit(&b);
    /* names are cut at FR_DRIFT_FIELD_LEN on a character boundary; more than FR_DRIFT_FIELDS are flagged */
    struct fr_pipeline *pl = drift_pipeline("reject", "reject", "null");
    fr_parser_t *p = fr_parser_new(fr_pipeline_dataset(pl, "ev"), FR_FMT_NDJSON, false, NULL, NULL, NULL);
    struct fr_buf in;
    fr_buf_init(&in, 0);
    fr_buf_puts(&in, "{\"id\":1,\"name\":\"a\"");
    for (int i = 0; i < 10; i++)
        fr_buf_printf(&in, ",\"k%d\":%d", i, i);
    fr_buf_puts(&in, ",\"");
    for (int i = 0; i < 40; i++)
        fr_buf_puts(&in, "\xc3\xa9"); /* é x 40 = 80 bytes */
    fr_buf_puts(&in, "\":0}\n");
    assert_int_equal(fr_parser_feed(p, in.data, in.len), 0);
    assert_int_equal(fr_parser_finish(p), 0);
    const struct fr_drift_tally *x = fr_parser_drift(p, FR_DRIFT_EXTRA);
    assert_int_equal(x->count, 11);
    assert_int_equal(x->n_fields, FR_DRIFT_FIELDS);
    assert_true(x->more_fields);
    assert_string_equal(x->fields[0], "k0");
    fr_parser_free(p);
    fr_buf_reset(&in);
    p = fr_parser_new(fr_pipeline_dataset(pl, "ev"), FR_FMT_NDJSON, false, NULL, NULL, NULL);
    fr_buf_puts(&in, "{\"id\":1,\"name\":\"a\",\"");
    for (int i = 0; i < 40; i++)
        fr_buf_puts(&in, "\xc3\xa9");
    fr_buf_puts(&in, "\":0}\n");
    assert_int_equal(fr_parser_feed(p, in.data, in.len), 0);
    x = fr_parser_drift(p, FR_DRIFT_EXTRA);
    assert_int_equal(strlen(x->fields[0]), 62); /* 31 whole characters of 2 bytes */
    assert_true(fr_utf8_valid(x->fields[0], 62));
    fr_parser_free(p);
    fr_buf_deinit(&in);
    fr_pipeline_free(pl);
}

/* ---- NDJSON without a DOM (parse_ndjson.c) ------------------------------ */

/* Every type, and drift `null` so a mistyped value shows as ~. */
static struct fr_pipeline *types_pipeline(const char *extra)
{
    char err[FR_ERR_LEN] = "";
    char *yaml = fr_xasprintf("pipeline: ty\n"
                              "datasets:\n"
                              "  ev:\n"
                              "    drift: {missing: reject, type: null, extra: %s}\n"
                              "    columns:\n"
                              "      - {name: t, type: text}\n"
                              "      - {name: i, type: int}\n"
                              "      - {name: b, type: bigint}\n"
                              "      - {name: f, type: float}\n"
                              "      - {name: n, type: numeric}\n"
                              "      - {name: ok, type: bool}\n"
                              "      - {name: ts, type: timestamptz}\n"
                              "      - {name: d, type: date}\n"
                              "      - {name: j, type: json}\n"
                              "      - {name: k_e, type: text}\n"
                              "sources:\n"
                              "  drop: {type: file, dataset: ev, formats: [ndjson]}\n",
                              extra);
    struct fr_pipeline *pl = fr_pipeline_parse(yaml, strlen(yaml), "types.yaml", ".", err);
    free(yaml);
    if (!pl)
        fprintf(stderr, "types pipeline: %s\n", err);
    assert_non_null(pl);
    return pl;
}

static const char ND_TRICKY[] =
    /* 1: escapes of every kind, a surrogate pair, an escaped key */
    "{\"t\":\"a\\\"b\\\\c\\/"
    "d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u20AC\",\"\\u0069\":7,\"k\\u005fe\":\"\xc3\xa9\"}\n"
    /* 2: white space everywhere JSON allows it, CR LF */
    " \t{ \"t\" : \"x\" ,\t\"i\" :-0 , \"ok\":true } \t\r\n"
    /* 3: nested values in the json column, compacted, order kept */
    "{\"j\":{ \"z\" : [1, 2.50, {\"y\" : null}], \"a\":\"\\u00e9\\n\" },\"t\":\"{\\\"no\\\":1}\"}\n"
    /* 4: scalars in the json column */
    "{\"j\":\"s\\u0001\",\"t\":\"\"}\n"
    "{\"j\":1.0}\n"
    "{\"j\":[]}\n"
    /* 7: numbers: int64 bounds, reals, exponent, into text too */
    "{\"b\":9223372036854775807,\"i\":-2147483648,\"f\":0.1,\"n\":12.50e3,\"t\":1e2}\n"
    "{\"b\":-9223372036854775808,\"f\":123456789012345.67,\"t\":0.30000000000000004}\n"
    "{\"f\":1E+2,\"t\":-0.0,\"n\":-0,\"b\":1.0}\n"
    "{\"f\":1234567890123456789012345678901234567890.0,\"t\":5e-324,\"i\":2147483648}\n"
    /* 11: out of range for jansson: the line is rejected with its reason */
    "{\"b\":9223372036854775808}\n"
    "{\"b\":-9223372036854775809}\n"
    "{\"f\":1e400}\n"
    /* 14: duplicates, top level and nested (also in an unknown key) */
    "{\"t\":\"a\",\"\\u0074\":\"b\"}\n"
    "{\"j\":{\"a\":1,\"b\":{\"c\":1,\"c\":2}}}\n"
    "{\"zz\":[{\"q\":1,\"q\":1}]}\n"
    /* 17: bad strings */
    "{\"t\":\"\\ud800\"}\n"
    "{\"t\":\"\\udc00\"}\n"
    "{\"t\":\"a\\u0000b\"}\n"
    "{\"t\":\"\xc3\x28\"}\n"
    "{\"t\":\"a\tb\"}\n"
    /* 22: unknown fields of every shape, objects and arrays in typed columns */
    "{\"zz\":{\"a\":[1,{\"b\":\"\\u00e9\"}]},\"t\":\"ok\",\"yy\":[],\"i\":{\"x\":1},\"ok\":[true]}\n"
    /* 23: syntax errors */
    "{\"t\":\"x\",}\n"
    "{\"i\":01}\n"
    "{\"t\":\"x\"} x\n"
    "{\"ok\":tru}\n"
    "{\"t\":\"x\",\f\"i\":1}\n";

static const char ND_TRICKY_WANT[] =
    "1:a\"b\\c/d\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac|7|~|~|~|~|~|~|~|\xc3\xa9\n"
    "2:x|0|~|~|~|t|~|~|~|~\n"
    "3:{\"no\":1}|~|~|~|~|~|~|~|{\"z\":[1,2.5,{\"y\":null}],\"a\":\"\xc3\xa9\\n\"}|~\n"
    "4:~|~|~|~|~|~|~|~|\"s\\u0001\"|~\n"
    "5:~|~|~|~|~|~|~|~|1.0|~\n"
    "6:~|~|~|~|~|~|~|~|[]|~\n"
    "7:100|-2147483648|9223372036854775807|0.1|12500|~|~|~|~|~\n"
    "8:0.30000000000000004|~|-9223372036854775808|123456789012345.67|~|~|~|~|~|~\n"
    "9:-0|~|1|100|0|~|~|~|~|~\n"
    "10:4.94065645841247e-324|~|~|1.2345678901234568e+39|~|~|~|~|~|~\n"
    "11! invalid JSON at column 24: too big integer near '9223372036854775808' [{\"b\":9223372036854775808}]\n"
    "12! invalid JSON at column 25: too big negative integer near '-9223372036854775809' "
    "[{\"b\":-9223372036854775809}]\n"
    "13! invalid JSON at column 10: real number overflow near '1e400' [{\"f\":1e400}]\n"
    "14! invalid JSON at column 17: duplicate object key near '\"\\u0074\"' [{\"t\":\"a\",\"\\u0074\":\"b\"}]\n"
    "15! invalid JSON at column 26: duplicate object key near '\"c\"' [{\"j\":{\"a\":1,\"b\":{\"c\":1,\"c\":2}}}]\n"
    "16! invalid JSON at column 17: duplicate object key near '\"q\"' [{\"zz\":[{\"q\":1,\"q\":1}]}]\n"
    "17! invalid JSON at column 13: invalid Unicode '\\uD800' near '\"\\ud800\"' [{\"t\":\"\\ud800\"}]\n"
    "18! invalid JSON at column 13: invalid Unicode '\\uDC00' near '\"\\udc00\"' [{\"t\":\"\\udc00\"}]\n"
    "19! invalid JSON at column 15: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"a\\u0000b\"' "
    "[{\"t\":\"a\\u0000b\"}]\n"
    "20! invalid JSON at column 6: unable to decode byte 0xc3 near '\"' [{\"t\":\"\xc3(\"}]\n"
    "21! invalid JSON at column 7: control character 0x9 near '\"a' [{\"t\":\"a\tb\"}]\n"
    "22:ok|~|~|~|~|~|~|~|~|~\n"
    "23! invalid JSON at column 10: string or '}' expected near '}' [{\"t\":\"x\",}]\n"
    "24! invalid JSON at column 6: invalid token near '0' [{\"i\":01}]\n"
    "25! invalid JSON at column 11: end of file expected near 'x' [{\"t\":\"x\"} x]\n"
    "26! invalid JSON at column 9: invalid token near 'tru' [{\"ok\":tru}]\n"
    "27! invalid JSON at column 10: string or '}' expected near '\f' [{\"t\":\"x\",\f\"i\":1}]\n"
    "ok=11 rejected=16\n"
    "drift type=3@10 i,ok\n";

/* The scanner gives exactly the rows, rejects and reasons of jansson on
 * tricky input (escapes, surrogates, nesting, white space, number bounds,
 * duplicates), in any chunking, under each extra-field policy. */
static void test_ndjson_scanner_rows(void **state)
{
    (void)state;
    srand(5);
    struct fr_pipeline *pl = types_pipeline("ignore");
    const struct fr_dataset *ds = fr_pipeline_dataset(pl, "ev");
    g_log_drift = true;
    int rc;
    char *log = run(ds, FR_FMT_NDJSON, false, ND_TRICKY, sizeof(ND_TRICKY) - 1, 0, &rc, NULL);
    assert_int_equal(rc, 0);
    if (strcmp(log, ND_TRICKY_WANT) != 0)
        fprintf(stderr, "--- got:\n%s--- want:\n%s", log, ND_TRICKY_WANT);
    assert_string_equal(log, ND_TRICKY_WANT);
    free(log);
    static const char *const extras[] = {"ignore", "reject", "null", "fail"};
    for (size_t e = 0; e < FR_ARRAY_LEN(extras); e++) {
        struct fr_pipeline *pe = types_pipeline(extras[e]);
        const struct fr_dataset *de = fr_pipeline_dataset(pe, "ev");
        int rc_ref;
        g_dom = true;
        char *ref = run(de, FR_FMT_NDJSON, false, ND_TRICKY, sizeof(ND_TRICKY) - 1, 0, &rc_ref, NULL);
        g_dom = false;
        for (int chunk = 0; chunk >= -1; chunk--) {
            char *got = run(de, FR_FMT_NDJSON, false, ND_TRICKY, sizeof(ND_TRICKY) - 1, chunk, &rc, NULL);
            assert_string_equal(got, ref);
            assert_int_equal(rc, rc_ref);
            free(got);
        }
        free(ref);
        fr_pipeline_free(pe);
    }
    g_log_drift = false;
    fr_pipeline_free(pl);
}

/* The scanner takes the valid lines itself (so the rows above are its
 * own) and leaves every line jansson rejects to jansson. */
static void test_ndjson_scanner_accepts(void **state)
{
    (void)state;
    struct fr__nd_scan s;
    fr__nd_scan_init(&s);
    static const char *const good[] = {
        "{}",
        " {\"a\" : 1 }\t",
        "{\"t\":\"a\\\"b\\u00e9\\ud83d\\ude00\",\"n\":-0.5e-3,\"x\":[{},[],{\"a\":{\"a\":1}}],\"a\":null}",
        "{\"b\":9223372036854775807,\"c\":-9223372036854775808,\"f\":1e308,\"g\":1e-400}",
        "{\"a\":{\"k\":1},\"b\":{\"k\":1}}",
    };
    for (size_t i = 0; i < FR_ARRAY_LEN(good); i++) {
        if (!fr__nd_scan(&s, good[i], strlen(good[i])))
            fail_msg("declined: %s", good[i]);
    }
    /* members of the third: keys and strings unescaped, raw spans as written */
    assert_true(fr__nd_scan(&s, good[2], strlen(good[2])));
    assert_int_equal(s.n_m, 4);
    assert_int_equal(s.m[0].kind, FR__ND_STRING);
    assert_int_equal(s.m[0].str_len, strlen("a\"b\xc3\xa9\xf0\x9f\x98\x80"));
    assert_memory_equal(s.m[0].str, "a\"b\xc3\xa9\xf0\x9f\x98\x80", s.m[0].str_len);
    assert_int_equal(s.m[1].kind, FR__ND_REAL);
    assert_int_equal(s.m[1].raw_len, 7);
    assert_memory_equal(s.m[1].raw, "-0.5e-3", 7);
    assert_int_equal(s.m[2].kind, FR__ND_ARRAY);
    assert_memory_equal(s.m[2].raw, "[{},[],{\"a\":{\"a\":1}}]", s.m[2].raw_len);
    assert_int_equal(s.m[3].kind, FR__ND_NULL);
    assert_int_equal(s.m[3].key_len, 1);
    assert_memory_equal(s.m[3].key, "a", 1);
    static const char *const bad[] = {
        "",
        "[]",
        "{\"a\":1,\"a\":2}",
        "{\"a\":1,\"\\u0061\":2}",
        "{\"x\":{\"a\":1,\"a\":2}}",
        "{\"b\":9223372036854775808}",
        "{\"b\":-9223372036854775809}",
        "{\"f\":1e309}",
        "{\"f\":-1e400}",
        "{\"t\":\"\\ud800\"}",
        "{\"t\":\"\\ud800\\u0041\"}",
        "{\"t\":\"\\udfff\"}",
        "{\"t\":\"\\u0000\"}",
        "{\"t\":\"\\x\"}",
        "{\"t\":\"\xed\xa0\x80\"}",
        "{\"t\":\"\xc0\xaf\"}",
        "{\"t\":\"\x01\"}",
        "{\"a\":1,}",
        "{\"a\":1} {}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":+1}",
        "{\"a\":1e}",
        "{\"a\":nul}",
        "{\"a\":truex}",
        "{\"a\"\f:1}",
        "{\"a\":[1,]}",
        "{\"a\":1",
        "{\"a\":\"x",
    };
    for (size_t i = 0; i < FR_ARRAY_LEN(bad); i++) {
        if (fr__nd_scan(&s, bad[i], strlen(bad[i])))
            fail_msg("accepted: %s", bad[i]);
        json_error_t jerr;
        json_t *v = json_loadb(bad[i], strlen(bad[i]), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (v && json_is_object(v))
            fail_msg("jansson takes it, the scanner should too: %s", bad[i]);
        json_decref(v);
    }
    /* deeper than the scanner goes: left to jansson, which takes it */
    struct fr_buf deep;
    fr_buf_init(&deep, 0);
    fr_buf_puts(&deep, "{\"a\":");
    for (int i = 0; i < 100; i++)
        fr_buf_putc(&deep, '[');
    for (int i = 0; i < 100; i++)
        fr_buf_putc(&deep, ']');
    fr_buf_putc(&deep, '}');
    assert_false(fr__nd_scan(&s, deep.data, deep.len));
    fr_buf_deinit(&deep);
    fr__nd_scan_deinit(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_header_any_chunking),
        cmocka_unit_test(test_csv_header_by_name),
        cmocka_unit_test(test_csv_header_missing_required),
        cmocka_unit_test(test_csv_no_header),
        cmocka_unit_test(test_csv_too_long),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_ndjson),
        cmocka_unit_test(test_json_array),
        cmocka_unit_test(test_value_canon),
        cmocka_unit_test(test_format_from_name),
        cmocka_unit_test(test_indexed_value_bound),
        cmocka_unit_test(test_drift_default_policy),
        cmocka_unit_test(test_drift_null),
        cmocka_unit_test(test_drift_null_required),
        cmocka_unit_test(test_drift_fail),
        cmocka_unit_test(test_drift_extra_reject),
        cmocka_unit_test(test_drift_csv_header),
        cmocka_unit_test(test_drift_event_json),
        cmocka_unit_test(test_ndjson_scanner_rows),
        cmocka_unit_test(test_ndjson_scanner_accepts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
