/* Unit tests of common/backup.c's restore-side checks (compiled in, so the
 * static functions are reachable): the container framing walk refuses
 * truncated, misframed and trailing input, and the schema check names the
 * field that differs. No database: these run before any connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../../common/backup.c"

static struct fr_column g_cols[2] = {
    {.name = (char *)"id", .type = FR_T_BIGINT},
    {.name = (char *)"ts", .type = FR_T_TIMESTAMPTZ},
};
static struct fr_dataset g_ds = {
    .name = (char *)"ev",
    .qname = (char *)"pl.ev",
    .table = (char *)"pl.ev",
    .columns = g_cols,
    .n_columns = 2,
};
static struct fr_pipeline g_p = {.name = (char *)"pl"};

/* A container: header with the dataset's schema, one block of `n` bytes. */
static void make_file(struct fr_buf *f, const char *block, size_t n, int64_t count)
{
    struct fr_buf js;
    const char sync[SYNC_LEN] = "0123456789abcdef";

    fr_buf_init(&js, 0);
    schema_json(&g_p, &g_ds, &js);
    (void)fr_buf_append(f, "Obj\x01", 4);
    put_long(f, 3);
    put_bytes(f, "freshet.rows", 12);
    put_bytes(f, count ? "1" : "0", 1);
    put_bytes(f, "avro.schema", 11);
    put_bytes(f, js.data, js.len);
    put_bytes(f, "freshet.dataset", 15);
    put_bytes(f, "pl.ev", 5);
    put_long(f, 0);
    (void)fr_buf_append(f, sync, SYNC_LEN);
    put_long(f, count);
    put_long(f, (int64_t)n);
    (void)fr_buf_append(f, block, n);
    (void)fr_buf_append(f, sync, SYNC_LEN);
    fr_buf_deinit(&js);
}

static void test_framing(void **state)
{
    struct fr_buf f;
    const char *schema, *ds;
    size_t sl, dl;
    int64_t recs = 0;
    char err[FR_ERR_LEN];

    (void)state;
    fr_buf_init(&f, 0);
    make_file(&f, "\x02\x04\x02\x06", 4, 1);
    assert_int_equal(check_container(f.data, f.len, &schema, &sl, &ds, &dl, &recs, err), 0);
    assert_int_equal(recs, 1);
    assert_int_equal(dl, 5);
    assert_int_equal(check_schema(&g_ds, schema, sl, err), 0);
    /* every truncation is refused */
    for (size_t n = 0; n < f.len; n++)
        assert_int_equal(check_container(f.data, n, &schema, &sl, &ds, &dl, &recs, err), -EBADMSG);
    /* a trailing byte, a damaged sync marker */
    (void)fr_buf_putc(&f, 0);
    assert_int_equal(check_container(f.data, f.len, &schema, &sl, &ds, &dl, &recs, err), -EBADMSG);
    f.len--;
    f.data[f.len - 1] ^= 1;
    assert_int_equal(check_container(f.data, f.len, &schema, &sl, &ds, &dl, &recs, err), -EBADMSG);
    assert_non_null(strstr(err, "corrupt"));
    fr_buf_deinit(&f);
    /* a block size past the end */
    fr_buf_init(&f, 0);
    make_file(&f, "", 0, 1);
    f.data[f.len - SYNC_LEN - 1] = 0x7e;
    assert_int_equal(check_container(f.data, f.len, &schema, &sl, &ds, &dl, &recs, err), -EBADMSG);
    fr_buf_deinit(&f);
}

static void test_schema_mismatch(void **state)
{
    char err[FR_ERR_LEN];
    const char *wrong_type = "{\"type\":\"record\",\"name\":\"ev\",\"fields\":[{\"name\":\"id\",\"type\":[\"null\","
                             "\"long\"]},{\"name\":\"ts\",\"type\":[\"null\",\"long\"]}]}";
    const char *wrong_name =
        "{\"type\":\"record\",\"name\":\"ev\",\"fields\":[{\"name\":\"ident\",\"type\":[\"null\","
        "\"long\"]}]}";
    const char *extra = "{\"type\":\"record\",\"name\":\"ev\",\"fields\":[{\"name\":\"id\",\"type\":[\"null\","
                        "\"long\"]},{\"name\":\"ts\",\"type\":[\"null\",{\"type\":\"long\",\"logicalType\":"
                        "\"timestamp-micros\"}]},{\"name\":\"x\",\"type\":\"int\"}]}";

    (void)state;
    assert_int_equal(check_schema(&g_ds, wrong_type, strlen(wrong_type), err), -EPROTO);
    assert_non_null(strstr(err, "field 'ts'"));
    assert_int_equal(check_schema(&g_ds, wrong_name, strlen(wrong_name), err), -EPROTO);
    assert_non_null(strstr(err, "'ident'"));
    assert_int_equal(check_schema(&g_ds, extra, strlen(extra), err), -EPROTO);
    assert_non_null(strstr(err, "field 'x'"));
    assert_int_equal(check_schema(&g_ds, "not json", 8, err), -EPROTO);
}

static void test_restore_refuses_before_connecting(void **state)
{
    char err[FR_ERR_LEN];
    (void)state;
    /* a bad conninfo is never reached: the file is refused first */
    assert_int_equal(fr_backup_restore_buf("host=/nonexistent", &g_p, &g_ds, "Obj", 3, NULL, err), -EBADMSG);
    assert_int_equal(
        fr_backup_restore_buf("host=/nonexistent", &g_p, &g_ds, "PAR1xxxxxxxxxxxxxxxxxxxx", 24, NULL, err), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_schema_mismatch),
        cmocka_unit_test(test_restore_refuses_before_connecting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
