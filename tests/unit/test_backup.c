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

/* A dataset keyed by id with a text, a timestamp and a date column, and a
 * one-record file of it built field by field. */
static struct fr_column g_vcols[4] = {
    {.name = (char *)"id", .type = FR_T_BIGINT},
    {.name = (char *)"t", .type = FR_T_TEXT},
    {.name = (char *)"ts", .type = FR_T_TIMESTAMPTZ},
    {.name = (char *)"d", .type = FR_T_DATE},
};
static char *g_vkey[1] = {(char *)"id"};
static struct fr_dataset g_vds = {
    .name = (char *)"vals",
    .qname = (char *)"pl.vals",
    .table = (char *)"pl.vals",
    .columns = g_vcols,
    .n_columns = 4,
    .key = g_vkey,
    .n_key = 1,
};

struct vrec {
    bool id_null;
    const char *t;
    size_t t_len;
    int64_t ts;
    int32_t d;
};

static void make_vfile(struct fr_buf *f, const struct vrec *v)
{
    struct fr_buf js, blk;
    const char sync[SYNC_LEN] = "0123456789abcdef";

    fr_buf_init(&js, 0);
    fr_buf_init(&blk, 0);
    schema_json(&g_p, &g_vds, &js);
    if (v->id_null) {
        put_long(&blk, 0);
    } else {
        put_long(&blk, 1);
        put_long(&blk, 7);
    }
    put_long(&blk, 1);
    put_bytes(&blk, v->t, v->t_len);
    put_long(&blk, 1);
    put_long(&blk, v->ts);
    put_long(&blk, 1);
    put_long(&blk, v->d);
    (void)fr_buf_append(f, "Obj\x01", 4);
    put_long(f, 1);
    put_bytes(f, "avro.schema", 11);
    put_bytes(f, js.data, js.len);
    put_long(f, 0);
    (void)fr_buf_append(f, sync, SYNC_LEN);
    put_long(f, 1);
    put_long(f, (int64_t)blk.len);
    (void)fr_buf_append(f, blk.data, blk.len);
    (void)fr_buf_append(f, sync, SYNC_LEN);
    fr_buf_deinit(&blk);
    fr_buf_deinit(&js);
}

/* Restores f into a database that cannot be reached: a value refused
 * before connecting gives -EPROTO; an acceptable file gets as far as the
 * connection (-EIO). */
static int restore_v(const struct vrec *v, char err[FR_ERR_LEN])
{
    struct fr_buf f;
    int rc;

    fr_buf_init(&f, 0);
    make_vfile(&f, v);
    rc = fr_backup_restore_buf("host=/nonexistent connect_timeout=1", &g_p, &g_vds, f.data, f.len, NULL, err);
    fr_buf_deinit(&f);
    return rc;
}

/* Regression: restore cut a string at an embedded NUL, clamped timestamps
 * and dates outside years 0001..9999, and sent a null key to the server
 * (whose raw error came back as a 503). Each is now refused before any
 * change, naming the record and field. */
static void test_restore_refuses_unrepresentable_values(void **state)
{
    char err[FR_ERR_LEN];
    struct vrec ok = {.t = "abc", .t_len = 3, .ts = 0, .d = 0};
    struct vrec v;

    (void)state;
    assert_int_equal(restore_v(&ok, err), -EIO); /* well-formed: refused only by the missing server */
    assert_non_null(strstr(err, "cannot connect"));
    /* the limits themselves are accepted */
    v = ok;
    v.ts = MIN_US;
    v.d = MAX_DAYS;
    assert_int_equal(restore_v(&v, err), -EIO);
    v.ts = MAX_US;
    v.d = MIN_DAYS;
    assert_int_equal(restore_v(&v, err), -EIO);

    v = ok;
    v.t = "ab\0cd";
    v.t_len = 5;
    assert_int_equal(restore_v(&v, err), -EPROTO);
    assert_non_null(strstr(err, "record 1 field t"));
    assert_non_null(strstr(err, "NUL"));

    v = ok;
    v.ts = MAX_US + 1; /* 10000-01-01T00:00:00Z */
    assert_int_equal(restore_v(&v, err), -EPROTO);
    assert_non_null(strstr(err, "record 1 field ts"));
    v.ts = MIN_US - 1;
    assert_int_equal(restore_v(&v, err), -EPROTO);
    v.ts = INT64_MIN;
    assert_int_equal(restore_v(&v, err), -EPROTO);

    v = ok;
    v.d = MAX_DAYS + 1;
    assert_int_equal(restore_v(&v, err), -EPROTO);
    assert_non_null(strstr(err, "record 1 field d"));
    v.d = MIN_DAYS - 1;
    assert_int_equal(restore_v(&v, err), -EPROTO);

    v = ok;
    v.id_null = true;
    assert_int_equal(restore_v(&v, err), -EPROTO);
    assert_non_null(strstr(err, "key column id is null"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_schema_mismatch),
        cmocka_unit_test(test_restore_refuses_before_connecting),
        cmocka_unit_test(test_restore_refuses_unrepresentable_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
