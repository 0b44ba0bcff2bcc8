/* Unit tests of common/batch.c: builder -> packed bytes -> decoded batch,
 * COPY text escaping, and decode's refusal of malformed input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch.h"
#include "freshet.pb-c.h"

static struct fr_column g_cols[3] = {
    {.name = (char *)"name", .type = FR_T_TEXT, .required = true},
    {.name = (char *)"n", .type = FR_T_BIGINT},
    {.name = (char *)"doc", .type = FR_T_JSON},
};
static struct fr_dataset g_ds = {
    .name = (char *)"ev",
    .qname = (char *)"pl.ev",
    .table = (char *)"pl.ev",
    .columns = g_cols,
    .n_columns = 3,
    .schema_version = 7,
};

/* The value of (col, row) used by the round-trip test; NULL = null. */
static const char *val_for(size_t col, size_t row, char *tmp, size_t cap)
{
    switch (col) {
    case 0: {
        static const char *const awkward[] = {"plain", "back\\slash", "tab\there", "nl\nhere",      "cr\rhere",
                                              "",      "ünï€ode 😀",   "\\N",       "quote\"d,comma"};
        snprintf(tmp, cap, "%s-%zu", awkward[row % FR_ARRAY_LEN(awkward)], row);
        return row % 9 == 5 ? "" : tmp; /* an empty string that is not null */
    }
    case 1:
        if (row % 7 == 3)
            return NULL;
        snprintf(tmp, cap, "%lld", (long long)row * 1000003LL - 500);
        return tmp;
    default:
        if (row % 3 == 0)
            return NULL;
        snprintf(tmp, cap, "{\"k\":%zu,\"s\":\"a\\tb\"}", row);
        return tmp;
    }
}

static fr_batch_t *build_and_decode(size_t rows, struct fr_buf *wire)
{
    fr_batch_builder_t *b = fr_batch_builder_new(&g_ds, "drop", FR_OP_UPSERT);
    char tmp[3][128];
    for (size_t r = 0; r < rows; r++) {
        const char *vals[3];
        size_t lens[3];
        bool nulls[3];
        for (size_t c = 0; c < 3; c++) {
            const char *v = val_for(c, r, tmp[c], sizeof(tmp[c]));
            nulls[c] = v == NULL;
            vals[c] = v ? v : "";
            lens[c] = v ? strlen(v) : 0;
        }
        fr_batch_builder_add(b, vals, lens, nulls, (uint32_t)(r + 2));
    }
    assert_int_equal(fr_batch_builder_rows(b), rows);
    size_t est = fr_batch_builder_bytes(b);
    struct fr_raw_ref raw = {.path = "landing/players/x.csv", .sha256 = "abcd", .size = 12345};
    assert_int_equal(fr_batch_builder_flush(b, "01HZZZTESTID", &raw, wire), 0);
    assert_int_equal(fr_batch_builder_rows(b), 0);
    /* the estimate is in the right ballpark */
    assert_true(est + 64 >= wire->len / 2 && est <= wire->len * 2 + 256);
    fr_batch_builder_free(b);
    char err[FR_ERR_LEN] = "";
    fr_batch_t *d = fr_batch_decode(wire->data, wire->len, err);
    if (!d)
        fail_msg("decode: %s", err);
    return d;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct fr_buf wire;
    fr_buf_init(&wire, 0);
    fr_batch_t *d = build_and_decode(1000, &wire);
    assert_string_equal(fr_batch_id(d), "01HZZZTESTID");
    assert_string_equal(fr_batch_dataset(d), "pl.ev");
    assert_string_equal(fr_batch_source(d), "drop");
    assert_int_equal(fr_batch_op(d), FR_OP_UPSERT);
    assert_int_equal(fr_batch_schema_version(d), 7);
    assert_true(fr_batch_produced_at_us(d) > 1600000000LL * 1000000);
    assert_int_equal(fr_batch_rows(d), 1000);
    assert_int_equal(fr_batch_cols(d), 3);
    assert_string_equal(fr_batch_col_name(d, 0), "name");
    assert_string_equal(fr_batch_col_name(d, 2), "doc");
    assert_int_equal(fr_batch_col_type(d, 1), FR_T_BIGINT);
    assert_int_equal(fr_batch_col_type(d, 2), FR_T_JSON);
    assert_string_equal(fr_batch_raw_path(d), "landing/players/x.csv");
    assert_string_equal(fr_batch_raw_sha256(d), "abcd");
    assert_int_equal(fr_batch_raw_size(d), 12345);
    char tmp[128];
    for (size_t r = 0; r < 1000; r++) {
        assert_int_equal(fr_batch_line(d, r), r + 2);
        for (size_t c = 0; c < 3; c++) {
            const char *want = val_for(c, r, tmp, sizeof(tmp));
            size_t len = 99;
            const char *got = fr_batch_value(d, c, r, &len);
            if (!want) {
                assert_null(got);
                assert_int_equal(len, 0);
            } else {
                assert_non_null(got);
                assert_int_equal(len, strlen(want));
                assert_memory_equal(got, want, len);
            }
        }
    }
    /* out of range */
    assert_null(fr_batch_value(d, 3, 0, NULL));
    assert_null(fr_batch_value(d, 0, 1000, NULL));
    assert_int_equal(fr_batch_line(d, 1000), 0);
    fr_batch_free(d);
    fr_buf_deinit(&wire);
}

static void test_copy_text(void **state)
{
    (void)state;
    fr_batch_builder_t *b = fr_batch_builder_new(&g_ds, "s", FR_OP_DELETE);
    const char *v1[3] = {"a\\b\tc\nd\re", "42", ""};
    size_t l1[3] = {strlen(v1[0]), 2, 0};
    bool n1[3] = {false, false, true};
    const char *v2[3] = {"", "", "{\"x\":\"\\\\\"}"};
    size_t l2[3] = {0, 0, strlen(v2[2])};
    bool n2[3] = {false, true, false};
    fr_batch_builder_add(b, v1, l1, n1, 0);
    fr_batch_builder_add(b, v2, l2, n2, 0);
    struct fr_buf wire;
    fr_buf_init(&wire, 0);
    assert_int_equal(fr_batch_builder_flush(b, "id1", NULL, &wire), 0);
    char err[FR_ERR_LEN];
    fr_batch_t *d = fr_batch_decode(wire.data, wire.len, err);
    assert_non_null(d);
    assert_int_equal(fr_batch_op(d), FR_OP_DELETE);
    assert_string_equal(fr_batch_raw_path(d), "");
    assert_int_equal(fr_batch_line(d, 0), 0); /* no lines were given */
    struct fr_buf out;
    fr_buf_init(&out, 0);
    assert_int_equal(fr_batch_copy_text(d, 0, 2, &out), 0);
    assert_string_equal(out.data, "a\\\\b\\tc\\nd\\re\t42\t\\N\n"
                                  "\t\\N\t{\"x\":\"\\\\\\\\\"}\n");
    fr_buf_reset(&out);
    assert_int_equal(fr_batch_copy_text(d, 1, 2, &out), 0);
    assert_string_equal(out.data, "\t\\N\t{\"x\":\"\\\\\\\\\"}\n");
    assert_int_equal(fr_batch_copy_text(d, 2, 1, &out), -EINVAL);
    assert_int_equal(fr_batch_copy_text(d, 0, 3, &out), -EINVAL);
    /* a capped buffer fails cleanly and is left as it was */
    struct fr_buf small;
    fr_buf_init(&small, 8);
    assert_int_equal(fr_buf_puts(&small, "xy"), 0);
    assert_true(fr_batch_copy_text(d, 0, 2, &small) < 0);
    assert_int_equal(small.len, 2);
    assert_string_equal(small.data, "xy");
    fr_buf_deinit(&small);
    fr_buf_deinit(&out);
    fr_batch_free(d);
    fr_buf_deinit(&wire);
    fr_batch_builder_free(b);
}

static void test_flush_resets_and_appends(void **state)
{
    (void)state;
    fr_batch_builder_t *b = fr_batch_builder_new(&g_ds, "s", FR_OP_UPSERT);
    const char *v[3] = {"x", "1", "2"};
    size_t l[3] = {1, 1, 1};
    bool n[3] = {false, false, false};
    for (int i = 0; i < 5; i++)
        fr_batch_builder_add(b, v, l, n, 10);
    struct fr_buf out;
    fr_buf_init(&out, 0);
    /* bad ids are refused and the rows kept */
    assert_int_equal(fr_batch_builder_flush(b, "", NULL, &out), -EINVAL);
    char longid[FR_BATCH_ID_LEN + 1];
    memset(longid, 'a', FR_BATCH_ID_LEN);
    longid[FR_BATCH_ID_LEN] = '\0';
    assert_int_equal(fr_batch_builder_flush(b, longid, NULL, &out), -EINVAL);
    assert_int_equal(out.len, 0);
    assert_int_equal(fr_batch_builder_rows(b), 5);
    assert_int_equal(fr_batch_builder_flush(b, "first", NULL, &out), 0);
    size_t first = out.len;
    const char *w[3] = {"y", "", "3"};
    bool m[3] = {false, true, false};
    fr_batch_builder_add(b, w, l, m, 11);
    assert_int_equal(fr_batch_builder_flush(b, "second", NULL, &out), 0);
    char err[FR_ERR_LEN];
    fr_batch_t *d1 = fr_batch_decode(out.data, first, err);
    fr_batch_t *d2 = fr_batch_decode(out.data + first, out.len - first, err);
    assert_non_null(d1);
    assert_non_null(d2);
    assert_int_equal(fr_batch_rows(d1), 5);
    assert_int_equal(fr_batch_rows(d2), 1);
    assert_string_equal(fr_batch_id(d2), "second");
    assert_string_equal(fr_batch_value(d2, 0, 0, NULL), "y");
    assert_null(fr_batch_value(d2, 1, 0, NULL)); /* the null bitmap was reset too */
    assert_non_null(fr_batch_value(d1, 1, 4, NULL));
    assert_int_equal(fr_batch_line(d2, 0), 11);
    /* an empty batch is fine */
    assert_int_equal(fr_batch_builder_flush(b, "third", NULL, &out), 0);
    fr_batch_free(d1);
    fr_batch_free(d2);
    fr_buf_deinit(&out);
    fr_batch_builder_free(b);
}

/* ---- decode refusals ---- */

struct msg {
    Freshet__Batch b;
    Freshet__Column c[2];
    Freshet__Column *cp[2];
    char *v0[3];
    char *v1[3];
    uint8_t nulls[2];
    uint32_t lines[3];
};

static void msg_init(struct msg *m)
{
    memset(m, 0, sizeof(*m));
    freshet__batch__init(&m->b);
    m->b.id = (char *)"bid";
    m->b.dataset = (char *)"p.d";
    m->b.n_rows = 3;
    for (int i = 0; i < 2; i++) {
        freshet__column__init(&m->c[i]);
        m->cp[i] = &m->c[i];
    }
    m->v0[0] = (char *)"a";
    m->v0[1] = (char *)"b";
    m->v0[2] = (char *)"c";
    m->v1[0] = m->v1[1] = m->v1[2] = (char *)"1";
    m->c[0].name = (char *)"c0";
    m->c[0].n_values = 3;
    m->c[0].values = m->v0;
    m->c[1].name = (char *)"c1";
    m->c[1].type = FRESHET__COLUMN_TYPE__TYPE_INT;
    m->c[1].n_values = 3;
    m->c[1].values = m->v1;
    m->nulls[0] = 0x2;
    m->c[1].nulls.data = m->nulls;
    m->c[1].nulls.len = 1;
    m->b.n_columns = 2;
    m->b.columns = m->cp;
    m->lines[0] = 1;
    m->lines[1] = 2;
    m->lines[2] = 3;
    m->b.n_lines = 3;
    m->b.lines = m->lines;
}

/* Packs m, decodes it: returns whether it was accepted; err filled. */
static bool try_decode(struct msg *m, char err[FR_ERR_LEN])
{
    size_t n = freshet__batch__get_packed_size(&m->b);
    uint8_t *buf = malloc(n + 1);
    assert_non_null(buf);
    freshet__batch__pack(&m->b, buf);
    err[0] = '\0';
    fr_batch_t *d = fr_batch_decode(buf, n, err);
    free(buf);
    bool ok = d != NULL;
    if (!ok)
        assert_true(err[0] != '\0');
    fr_batch_free(d);
    return ok;
}

static void expect_reject(struct msg *m, const char *needle)
{
    char err[FR_ERR_LEN];
    assert_false(try_decode(m, err));
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
}

/* Regression (fuzz_parse finding): flushing a builder with no rows must
 * not index a NULL pointer array, and must give a valid empty batch. */
static void test_flush_empty(void **state)
{
    (void)state;
    fr_batch_builder_t *b = fr_batch_builder_new(&g_ds, "s", FR_OP_UPSERT);
    struct fr_buf out;
    char err[FR_ERR_LEN];

    fr_buf_init(&out, 0);
    assert_int_equal(fr_batch_builder_flush(b, "01EMPTY-000000", NULL, &out), 0);
    fr_batch_t *d = fr_batch_decode(out.data, out.len, err);
    assert_non_null(d);
    assert_int_equal(fr_batch_rows(d), 0);
    assert_int_equal(fr_batch_cols(d), g_ds.n_columns);
    fr_batch_free(d);
    fr_buf_deinit(&out);
    fr_batch_builder_free(b);
}

static void test_decode_validates(void **state)
{
    (void)state;
    struct msg m;
    char err[FR_ERR_LEN];
    msg_init(&m);
    assert_true(try_decode(&m, err));

    msg_init(&m);
    m.c[1].n_values = 2;
    expect_reject(&m, "2 values for 3 rows");
    msg_init(&m);
    m.b.n_rows = 4;
    m.b.n_lines = 0;
    expect_reject(&m, "3 values for 4 rows");
    msg_init(&m);
    m.c[1].nulls.len = 2;
    m.nulls[1] = 0;
    expect_reject(&m, "null bitmap");
    msg_init(&m);
    m.b.n_lines = 2;
    expect_reject(&m, "line numbers");
    msg_init(&m);
    m.c[0].type = 9;
    expect_reject(&m, "unknown type");
    msg_init(&m);
    m.b.op = 5;
    expect_reject(&m, "unknown op");
    msg_init(&m);
    m.c[1].name = (char *)"c0";
    expect_reject(&m, "twice");
    msg_init(&m);
    m.c[1].name = (char *)"";
    expect_reject(&m, "no name");
    msg_init(&m);
    m.b.id = (char *)"";
    expect_reject(&m, "no id");
    msg_init(&m);
    char longid[FR_BATCH_ID_LEN + 1];
    memset(longid, 'x', FR_BATCH_ID_LEN);
    longid[FR_BATCH_ID_LEN] = '\0';
    m.b.id = longid;
    expect_reject(&m, "longer than");
    longid[FR_BATCH_ID_LEN - 1] = '\0'; /* 63 bytes: fine */
    assert_true(try_decode(&m, err));
    msg_init(&m);
    m.b.dataset = (char *)"";
    expect_reject(&m, "no dataset");
    msg_init(&m);
    m.b.n_columns = 0;
    expect_reject(&m, "no columns");
}

static void test_decode_garbage(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_null(fr_batch_decode(junk, sizeof(junk), err));
    assert_non_null(strstr(err, "not a valid"));
    static const uint8_t badlen[] = {0x0a, 0x7f, 'a'}; /* id claims 127 bytes, has 1 */
    assert_null(fr_batch_decode(badlen, sizeof(badlen), err));
    assert_null(fr_batch_decode("", 0, err)); /* empty message: no id */
    /* the size limit is checked before anything is read */
    assert_null(fr_batch_decode("x", (size_t)FR_BATCH_MAX_BYTES + 1, err));
    assert_non_null(strstr(err, "limit"));

    /* every prefix of a real batch: no crash; cut inside a field fails */
    struct fr_buf wire;
    fr_buf_init(&wire, 0);
    fr_batch_t *d = build_and_decode(50, &wire);
    fr_batch_free(d);
    size_t rejected = 0;
    for (size_t n = 0; n < wire.len; n++) {
        uint8_t *cp = malloc(n + 1); /* exact-size copy so ASan sees overreads */
        assert_non_null(cp);
        memcpy(cp, wire.data, n);
        fr_batch_t *t = fr_batch_decode(cp, n, err);
        if (!t)
            rejected++;
        fr_batch_free(t);
        free(cp);
    }
    assert_true(rejected > wire.len * 9 / 10);
    assert_null(fr_batch_decode(wire.data, wire.len - 1, err));
    assert_null(fr_batch_decode(wire.data, wire.len / 2, err));
    /* random byte flips: no crash */
    srand(42);
    for (int i = 0; i < 2000; i++) {
        uint8_t *cp = malloc(wire.len);
        assert_non_null(cp);
        memcpy(cp, wire.data, wire.len);
        for (int k = 0; k < 3; k++)
            cp[(size_t)rand() % wire.len] = (uint8_t)rand();
        fr_batch_t *t = fr_batch_decode(cp, wire.len, err);
        if (t) {
            struct fr_buf out;
            fr_buf_init(&out, 0);
            assert_int_equal(fr_batch_copy_text(t, 0, fr_batch_rows(t), &out), 0);
            fr_buf_deinit(&out);
        }
        fr_batch_free(t);
        free(cp);
    }
    fr_buf_deinit(&wire);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_copy_text),
        cmocka_unit_test(test_flush_resets_and_appends),
        cmocka_unit_test(test_flush_empty),
        cmocka_unit_test(test_decode_validates),
        cmocka_unit_test(test_decode_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
