/* Unit tests of the CSV formula guard (docs/security.md "CSV answers and
 * exports"): the cell rule of common/util.c that the loader's exports use
 * (fr_buf_csv_value), and the api's CSV cell (services/api/render.c, compiled
 * in) built on it: a text cell starting with = + - @ TAB or CR gets a leading
 * ', numbers, booleans and timestamps never, and csv_raw turns it off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/api/render.c"

/* PostgreSQL type OIDs of result columns (pg_type.h). */
enum {
    T_BOOL = 16,
    T_INT8 = 20,
    T_INT2 = 21,
    T_INT4 = 23,
    T_TEXT = 25,
    T_JSON = 114,
    T_FLOAT4 = 700,
    T_FLOAT8 = 701,
    T_BPCHAR = 1042,
    T_VARCHAR = 1043,
    T_DATE = 1082,
    T_TIMESTAMP = 1114,
    T_TIMESTAMPTZ = 1184,
    T_INTERVAL = 1186,
    T_NUMERIC = 1700,
    T_JSONB = 3802,
    T_ENUM = 16385, /* a user type (an enum, a domain): text */
};

/* The cell fr_buf_csv_cell writes for s (NUL-terminated), as a C string. */
static char *cell(const char *s, bool guard)
{
    static char out[256];
    struct fr_buf b;
    fr_buf_init(&b, 0);
    assert_int_equal(fr_buf_csv_cell(&b, s, strlen(s), guard), 0);
    assert_true(b.len < sizeof(out));
    memcpy(out, b.data, b.len + 1);
    fr_buf_deinit(&b);
    return out;
}

static char *value(const char *s, unsigned int type, bool raw)
{
    static char out[256];
    struct fr_buf b;
    fr_buf_init(&b, 0);
    assert_int_equal(fr_buf_csv_value(&b, s, strlen(s), type, raw), 0);
    memcpy(out, b.data ? b.data : "", b.len + 1);
    fr_buf_deinit(&b);
    return out;
}

static char *api_value(const char *s, unsigned int type, bool raw)
{
    static char out[256];
    struct fr_buf b;
    fr_buf_init(&b, 0);
    assert_int_equal(fr_render_csv_value(&b, type, s, s ? strlen(s) : 0, raw), 0);
    memcpy(out, b.data ? b.data : "", b.len + 1);
    fr_buf_deinit(&b);
    return out;
}

/* Each trigger character, at the start only; nothing else is touched. */
static void test_formula_chars(void **state)
{
    (void)state;
    assert_true(fr_csv_is_formula("=1+1", 4));
    assert_true(fr_csv_is_formula("+1", 2));
    assert_true(fr_csv_is_formula("-1", 2));
    assert_true(fr_csv_is_formula("@SUM(A1)", 8));
    assert_true(fr_csv_is_formula("\tx", 2));
    assert_true(fr_csv_is_formula("\rx", 2));
    assert_true(fr_csv_is_formula("=", 1));
    assert_false(fr_csv_is_formula("", 0));
    assert_false(fr_csv_is_formula("a=1", 3));
    assert_false(fr_csv_is_formula(" =1", 3));
    assert_false(fr_csv_is_formula("'=1", 3));
    assert_false(fr_csv_is_formula("\n=1", 3));
    assert_false(fr_csv_is_formula("1-2", 3));

    assert_string_equal(cell("=1+1", true), "'=1+1");
    assert_string_equal(cell("+1", true), "'+1");
    assert_string_equal(cell("-1", true), "'-1");
    assert_string_equal(cell("@SUM(A1:A9)", true), "'@SUM(A1:A9)");
    assert_string_equal(cell("\tcmd", true), "'\tcmd");
    /* CR makes the field quoted: the ' goes inside the quotes */
    assert_string_equal(cell("\r=1", true), "\"'\r=1\"");
    assert_string_equal(cell("=HYPERLINK(\"http://x\",\"a,b\")", true),
                        "\"'=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\"");
    assert_string_equal(cell("-", true), "'-");
    /* not formulas: as fr_buf_csv_field writes them */
    assert_string_equal(cell("plain", true), "plain");
    assert_string_equal(cell("a=1", true), "a=1");
    assert_string_equal(cell("a,b", true), "\"a,b\"");
    assert_string_equal(cell("", true), "");
    /* without the guard: verbatim (quoted as CSV needs) */
    assert_string_equal(cell("=1+1", false), "=1+1");
    assert_string_equal(cell("-1", false), "-1");
    assert_string_equal(cell("\r=1", false), "\"\r=1\"");
}

/* Which column types are free text (guarded) and which are typed values. */
static void test_types(void **state)
{
    (void)state;
    static const unsigned int text[] = {T_TEXT, T_VARCHAR, T_BPCHAR, T_JSON, T_JSONB, T_ENUM, 0 /* unknown */};
    static const unsigned int typed[] = {T_BOOL,    T_INT2, T_INT4,     T_INT8,      T_FLOAT4,     T_FLOAT8,
                                         T_NUMERIC, T_DATE, T_INTERVAL, T_TIMESTAMP, T_TIMESTAMPTZ};
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        assert_true(fr_csv_type_is_text(text[i]));
    for (size_t i = 0; i < sizeof(typed) / sizeof(typed[0]); i++)
        assert_false(fr_csv_type_is_text(typed[i]));
}

/* The export rule: text cells guarded, a negative number is a number, and
 * csv_raw writes everything as stored. */
static void test_value_rule(void **state)
{
    (void)state;
    assert_string_equal(value("=1+1", T_TEXT, false), "'=1+1");
    assert_string_equal(value("-5", T_TEXT, false), "'-5");
    assert_string_equal(value("@x", T_VARCHAR, false), "'@x");
    assert_string_equal(value("-5", T_INT8, false), "-5");
    assert_string_equal(value("-2.5", T_NUMERIC, false), "-2.5");
    assert_string_equal(value("-1e-05", T_FLOAT8, false), "-1e-05");
    assert_string_equal(value("-Infinity", T_FLOAT8, false), "-Infinity");
    assert_string_equal(value("-1 days", T_INTERVAL, false), "-1 days");
    assert_string_equal(value("=1+1", T_TEXT, true), "=1+1");
    assert_string_equal(value("-5", T_TEXT, true), "-5");
    assert_string_equal(value("x,y", T_TEXT, true), "\"x,y\"");
}

/* The api's CSV cell: the same rule after its own formatting. */
static void test_api_cell(void **state)
{
    (void)state;
    assert_string_equal(api_value("=1+1", T_TEXT, false), "'=1+1");
    assert_string_equal(api_value("=1+1", T_TEXT, true), "=1+1");
    assert_string_equal(api_value("+33 1 23", T_VARCHAR, false), "'+33 1 23");
    assert_string_equal(api_value("-3", T_INT4, false), "-3");
    assert_string_equal(api_value("-0.5", T_NUMERIC, false), "-0.5");
    assert_string_equal(api_value("t", T_BOOL, false), "true");
    assert_string_equal(api_value("f", T_BOOL, false), "false");
    assert_string_equal(api_value("2024-01-01 00:00:00+00", T_TIMESTAMPTZ, false), "2024-01-01T00:00:00Z");
    assert_string_equal(api_value("-infinity", T_TIMESTAMPTZ, false), "-infinity");
    assert_string_equal(api_value("with, comma", T_TEXT, false), "\"with, comma\"");
    assert_string_equal(api_value(NULL, T_TEXT, false), ""); /* SQL null: empty cell */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formula_chars),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_value_rule),
        cmocka_unit_test(test_api_cell),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
