/* Unit tests of common/util.c: timestamps, dates, numbers, JSON/CSV
 * encoding, the capped buffer, ULIDs, SHA-256 and the file helpers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

#include "util.h"

static bool ts(const char *s, int64_t *us)
{
    return fr_parse_timestamp(s, strlen(s), us);
}

static void test_timestamp_valid(void **state)
{
    (void)state;
    int64_t us;
    assert_true(ts("1970-01-01T00:00:00Z", &us));
    assert_int_equal(us, 0);
    assert_true(ts("2024-06-17T12:00:00Z", &us));
    assert_int_equal(us, 1718625600LL * 1000000);
    assert_true(ts("2024-06-17 12:00:00", &us)); /* space, no offset = UTC */
    assert_int_equal(us, 1718625600LL * 1000000);
    assert_true(ts("2024-06-17T12:00Z", &us)); /* no seconds */
    assert_int_equal(us, 1718625600LL * 1000000);
    assert_true(ts("2024-06-17", &us)); /* bare date = midnight UTC */
    assert_int_equal(us, 1718582400LL * 1000000);
    assert_true(ts("2024-06-17T12:00:00.5Z", &us));
    assert_int_equal(us, 1718625600LL * 1000000 + 500000);
    assert_true(ts("2024-06-17T12:00:00.123456Z", &us));
    assert_int_equal(us, 1718625600LL * 1000000 + 123456);
    assert_true(ts("2024-06-17T12:00:00.123456789Z", &us)); /* 9 digits, truncated to µs */
    assert_int_equal(us, 1718625600LL * 1000000 + 123456);
    /* offsets: +02:00, +0200, +02 are all two hours east of UTC */
    assert_true(ts("2024-06-17T14:00:00+02:00", &us));
    assert_int_equal(us, 1718625600LL * 1000000);
    assert_true(ts("2024-06-17T14:00:00+0200", &us));
    assert_int_equal(us, 1718625600LL * 1000000);
    assert_true(ts("2024-06-17T14:00:00+02", &us));
    assert_int_equal(us, 1718625600LL * 1000000);
    assert_true(ts("2024-06-17T06:30:00-05:30", &us));
    assert_int_equal(us, 1718625600LL * 1000000);
    /* an offset that crosses midnight back to the previous day */
    assert_true(ts("2024-06-18T01:00:00+13:00", &us));
    assert_int_equal(us, 1718625600LL * 1000000);
    /* leap years */
    assert_true(ts("2024-02-29T00:00:00Z", &us));
    assert_true(ts("2000-02-29", &us));
    assert_int_equal(us, 951782400LL * 1000000);
    /* before the epoch */
    assert_true(ts("1969-12-31T23:59:59.5Z", &us));
    assert_int_equal(us, -500000);
    /* leap second is accepted (rolls into the next minute) */
    assert_true(ts("2016-12-31T23:59:60Z", &us));
    /* n bounds the input: trailing bytes beyond n are ignored */
    assert_true(fr_parse_timestamp("2024-06-17Tjunk", 10, &us));
    assert_int_equal(us, 1718582400LL * 1000000);
}

static void test_timestamp_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2024",
        "2024-06",
        "2024-6-17",
        "24-06-17",
        "2024-13-01",
        "2024-00-10",
        "2024-06-31",
        "2023-02-29",
        "1900-02-29",
        "2024-02-30",
        "2024-06-17T24:00:00Z",
        "2024-06-17T12:60:00Z",
        "2024-06-17T12:00:61Z",
        "2024-06-17T12Z",
        "2024-06-17T12:00:00.Z",
        "2024-06-17T12:00:00.1234567890Z",
        "2024-06-17T12:00:00+2",
        "2024-06-17T12:00:00+24:00",
        "2024-06-17T12:00:00+02:60",
        "2024-06-17T12:00:00ZZ",
        "2024-06-17T12:00:00 ",
        " 2024-06-17",
        "2024-06-17X12:00:00",
        "2024-06-17T12:00:00+02:0",
        "abcd-ef-gh",
        "2024-06-17T12:00:00Q",
        "2024-06-17T1:00:00Z",
    };
    for (size_t i = 0; i < FR_ARRAY_LEN(bad); i++) {
        int64_t us = 42;
        if (ts(bad[i], &us))
            fail_msg("accepted invalid timestamp '%s'", bad[i]);
        assert_int_equal(us, 42);
    }
}

static void test_timestamp_format(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(fr_format_timestamp(0, out), 20);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    fr_format_timestamp(1718625600LL * 1000000, out);
    assert_string_equal(out, "2024-06-17T12:00:00Z");
    fr_format_timestamp(1718625600LL * 1000000 + 500000, out);
    assert_string_equal(out, "2024-06-17T12:00:00.5Z");
    fr_format_timestamp(1718625600LL * 1000000 + 123000, out);
    assert_string_equal(out, "2024-06-17T12:00:00.123Z");
    size_t n = fr_format_timestamp(1718625600LL * 1000000 + 1, out);
    assert_string_equal(out, "2024-06-17T12:00:00.000001Z");
    assert_int_equal(n, strlen(out));
    fr_format_timestamp(-500000, out);
    assert_string_equal(out, "1969-12-31T23:59:59.5Z");
    fr_format_timestamp(253402300799999999LL, out); /* the last µs of 9999 */
    assert_string_equal(out, "9999-12-31T23:59:59.999999Z");
    /* round trip */
    int64_t us;
    assert_true(ts("2024-02-29T23:59:59.000250Z", &us));
    fr_format_timestamp(us, out);
    assert_string_equal(out, "2024-02-29T23:59:59.00025Z");
}

static void test_dates(void **state)
{
    (void)state;
    int32_t d;
    char out[11];
    assert_true(fr_parse_date("1970-01-01", 10, &d));
    assert_int_equal(d, 0);
    assert_true(fr_parse_date("2024-06-17", 10, &d));
    assert_int_equal(d, 19891);
    assert_int_equal(fr_format_date(d, out), 10);
    assert_string_equal(out, "2024-06-17");
    assert_true(fr_parse_date("1969-12-31", 10, &d));
    assert_int_equal(d, -1);
    fr_format_date(-1, out);
    assert_string_equal(out, "1969-12-31");
    assert_false(fr_parse_date("2024-06-17T00:00:00Z", 20, &d));
    assert_false(fr_parse_date("2023-02-29", 10, &d));
    assert_true(fr_parse_date("2400-02-29", 10, &d));
    assert_false(fr_parse_date("2100-02-29", 10, &d));
    assert_int_equal(fr_days_from_civil(2000, 3, 1), 11017);
}

static void test_parse_i64(void **state)
{
    (void)state;
    int64_t v;
#define I64_OK(s, want)                                                                                              \
    do {                                                                                                             \
        assert_true(fr_parse_i64((s), strlen(s), &v));                                                               \
        assert_int_equal(v, (want));                                                                                 \
    } while (0)
    I64_OK("0", 0);
    I64_OK("42", 42);
    I64_OK("-42", -42);
    I64_OK("+7", 7);
    I64_OK("9223372036854775807", INT64_MAX);
    I64_OK("-9223372036854775808", INT64_MIN);
    static const char *const bad[] = {"",
                                      "-",
                                      "+",
                                      " 1",
                                      "1 ",
                                      "1.0",
                                      "1e3",
                                      "0x10",
                                      "9223372036854775808",
                                      "-9223372036854775809",
                                      "12a",
                                      "--1",
                                      "99999999999999999999"};
    for (size_t i = 0; i < FR_ARRAY_LEN(bad); i++)
        if (fr_parse_i64(bad[i], strlen(bad[i]), &v))
            fail_msg("accepted invalid integer '%s'", bad[i]);
    /* n bounds the input */
    assert_true(fr_parse_i64("123abc", 3, &v));
    assert_int_equal(v, 123);
}

static void test_parse_double(void **state)
{
    (void)state;
    double v;
#define DBL_OK(s, want)                                                                                              \
    do {                                                                                                             \
        assert_true(fr_parse_double((s), strlen(s), &v));                                                            \
        assert_true(v == (want));                                                                                    \
    } while (0)
    DBL_OK("0", 0.0);
    DBL_OK("1e3", 1000.0);
    DBL_OK("-0.5", -0.5);
    DBL_OK("3.25", 3.25);
    DBL_OK(".5", 0.5);
    DBL_OK("5.", 5.0);
    DBL_OK("1E-2", 0.01);
    DBL_OK("+2.5e+1", 25.0);
    static const char *const bad[] = {"",  " 1", "1 ",    "inf", "-inf",  "nan",    "NaN",   "1e", "1e+",
                                      ".", "-",  "0x1p3", "1,5", "1e400", "-1e400", "1.2.3", "e5", "1..2"};
    for (size_t i = 0; i < FR_ARRAY_LEN(bad); i++)
        if (fr_parse_double(bad[i], strlen(bad[i]), &v))
            fail_msg("accepted invalid double '%s'", bad[i]);
    assert_true(fr_parse_double("2.5xyz", 3, &v));
    assert_true(v == 2.5);
}

static char *json(const char *s, size_t n)
{
    static char out[256];
    struct fr_buf b;
    fr_buf_init(&b, 0);
    assert_int_equal(fr_buf_json_str(&b, s, n), 0);
    snprintf(out, sizeof(out), "%s", b.data);
    fr_buf_deinit(&b);
    return out;
}

static void test_json_escape(void **state)
{
    (void)state;
    assert_string_equal(json("", 0), "\"\"");
    assert_string_equal(json("plain", 5), "\"plain\"");
    assert_string_equal(json("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
    assert_string_equal(json("\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
    assert_string_equal(json("\x01\x1f", 2), "\"\\u0001\\u001f\"");
    assert_string_equal(json("a\0b", 3), "\"a\\u0000b\"");
    assert_string_equal(json("/", 1), "\"/\"");
    /* valid UTF-8 passes through */
    assert_string_equal(json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14),
                        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* invalid bytes become U+FFFD, one per bad byte */
    assert_string_equal(json("a\xff"
                             "b",
                             3),
                        "\"a\xef\xbf\xbd"
                        "b\"");
    assert_string_equal(json("\xc3", 1), "\"\xef\xbf\xbd\"");                 /* truncated */
    assert_string_equal(json("\xc0\xaf", 2), "\"\xef\xbf\xbd\xef\xbf\xbd\""); /* overlong */
    assert_string_equal(json("\xed\xa0\x80", 3),                              /* surrogate */
                        "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(json("\xf4\x90\x80\x80", 4), /* > U+10FFFF */
                        "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(json("\xe2\x82"
                             "x",
                             3),
                        "\"\xef\xbf\xbd\xef\xbf\xbdx\"");
}

static void test_csv_field(void **state)
{
    (void)state;
    struct fr_buf b;
    fr_buf_init(&b, 0);
    assert_int_equal(fr_buf_csv_field(&b, "plain", 5), 0);
    assert_int_equal(fr_buf_putc(&b, ','), 0);
    assert_int_equal(fr_buf_csv_field(&b, "a,b", 3), 0);
    assert_int_equal(fr_buf_putc(&b, ','), 0);
    assert_int_equal(fr_buf_csv_field(&b, "say \"hi\"", 8), 0);
    assert_int_equal(fr_buf_putc(&b, ','), 0);
    assert_int_equal(fr_buf_csv_field(&b, "l1\nl2", 5), 0);
    assert_int_equal(fr_buf_putc(&b, ','), 0);
    assert_int_equal(fr_buf_csv_field(&b, "", 0), 0);
    assert_string_equal(b.data, "plain,\"a,b\",\"say \"\"hi\"\"\",\"l1\nl2\",");
    fr_buf_deinit(&b);
}

static void test_buf_cap(void **state)
{
    (void)state;
    struct fr_buf b;
    fr_buf_init(&b, 10);
    assert_int_equal(fr_buf_puts(&b, "12345"), 0);
    assert_int_equal(fr_buf_puts(&b, "67890"), 0); /* exactly at the cap */
    assert_int_equal(b.len, 10);
    assert_int_equal(fr_buf_putc(&b, 'x'), -ENOBUFS);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "1234567890");
    fr_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(fr_buf_printf(&b, "%d-%s", 42, "abc"), 0);
    assert_string_equal(b.data, "42-abc");
    assert_int_equal(fr_buf_printf(&b, "%s", "toolong"), -ENOBUFS);
    assert_string_equal(b.data, "42-abc"); /* unchanged */
    /* a JSON string that does not fit leaves the buffer unchanged */
    assert_int_equal(fr_buf_json_str(&b, "abcd", 4), -ENOBUFS);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "42-abc");
    assert_int_equal(fr_buf_reserve(&b, SIZE_MAX), -ENOBUFS);
    fr_buf_deinit(&b);

    /* unlimited: long printf output crosses the small-buffer path */
    fr_buf_init(&b, 0);
    char big[1000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 50; i++)
        assert_int_equal(fr_buf_printf(&b, "%s|%d", big, i), 0);
    assert_int_equal(b.len, 50 * 999 + 50 * 2 + 40);
    assert_int_equal(b.data[b.len], '\0');
    assert_true(b.cap > b.len);
    fr_buf_deinit(&b);
}

static void test_ulid(void **state)
{
    (void)state;
    enum { N = 2000 };
    static char ids[N][27];
    for (int i = 0; i < N; i++) {
        fr_ulid(ids[i]);
        assert_int_equal(strlen(ids[i]), 26);
        assert_int_equal(strspn(ids[i], "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), 26);
        assert_true(ids[i][0] <= '7'); /* 128 bits in 130: the top char holds 3 bits */
        if (i > 0 && strcmp(ids[i - 1], ids[i]) >= 0)
            fail_msg("ulids not increasing: %s then %s", ids[i - 1], ids[i]);
    }
    /* the first 10 chars encode the time in ms */
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t ms = 0;
    for (int k = 0; k < 10; k++)
        ms = ms * 32 + (uint64_t)(strchr(alphabet, ids[N - 1][k]) - alphabet);
    int64_t now_ms = fr_wall_us() / 1000;
    assert_true((int64_t)ms <= now_ms + 1000 && (int64_t)ms >= now_ms - 60000);
    /* two ids far apart in time differ in the time part */
    char a[27], b[27];
    fr_ulid(a);
    usleep(3000);
    fr_ulid(b);
    assert_true(strncmp(a, b, 10) < 0);
}

static void test_sha256(void **state)
{
    (void)state;
    char out[65];
    fr_sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    fr_sha256_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    struct fr_sha256 s;
    fr_sha256_init(&s);
    fr_sha256_update(&s, "a", 1);
    fr_sha256_update(&s, "bc", 2);
    fr_sha256_final(&s, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_null(s.ctx);
}

/* Entries of dir other than . and .., and the first one's name. */
static int count_entries(const char *dir, char *first, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int c = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (c++ == 0 && first)
            snprintf(first, n, "%s", e->d_name);
    }
    closedir(d);
    return c;
}

static char *slurp(const char *path, size_t *len)
{
    char err[FR_ERR_LEN];
    char *data = fr_read_file(path, 1 << 20, len, err);
    assert_non_null(data);
    return data;
}

static void test_write_atomic(void **state)
{
    (void)state;
    char dir[] = "/tmp/fr_test_atomic_XXXXXX";
    char path[300], sub[300], name[300];
    struct stat st;
    size_t len;
    char *data;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/state.json", dir);

    /* content and exact mode, whatever the umask; nothing else left behind */
    mode_t old = umask(077);
    assert_int_equal(fr_write_file_atomic(path, "one\0two", 7, 0644, FR_WRITE_DURABLE), 0);
    umask(old);
    data = slurp(path, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(data, "one\0two", 7);
    free(data);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(count_entries(dir, name, sizeof(name)), 1);
    assert_string_equal(name, "state.json");

    /* replace an existing file (FAST: rename only), new mode; empty content */
    assert_int_equal(fr_write_file_atomic(path, "", 0, 0600, FR_WRITE_FAST), 0);
    data = slurp(path, &len);
    assert_int_equal(len, 0);
    free(data);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(fr_write_file_atomic(path, "replaced", 8, 0640, FR_WRITE_DURABLE), 0);
    data = slurp(path, &len);
    assert_string_equal(data, "replaced");
    free(data);
    assert_int_equal(count_entries(dir, NULL, 0), 1);

    /* failure after the temp file was written (the target is a directory):
     * an error, the temp file removed, the directory untouched */
    snprintf(sub, sizeof(sub), "%s/adir", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(fr_write_file_atomic(sub, "x", 1, 0644, FR_WRITE_DURABLE), -EISDIR);
    assert_int_equal(count_entries(dir, NULL, 0), 2); /* state.json and adir */
    assert_int_equal(count_entries(sub, NULL, 0), 0);
    /* failure in a streamed write (abort): target unchanged, no temp file */
    struct fr_atomic_file f;
    assert_int_equal(fr_atomic_file_open(&f, path, 0644, FR_WRITE_DURABLE), 0);
    assert_int_equal(write(f.fd, "partial", 7), 7);
    assert_int_equal(count_entries(dir, NULL, 0), 3); /* the temp file, while open */
    fr_atomic_file_abort(&f);
    assert_int_equal(f.fd, -1);
    assert_int_equal(count_entries(dir, NULL, 0), 2);
    data = slurp(path, &len);
    assert_string_equal(data, "replaced");
    free(data);
    /* a streamed write committed */
    assert_int_equal(fr_atomic_file_open(&f, path, 0644, FR_WRITE_FAST), 0);
    assert_int_equal(write(f.fd, "streamed", 8), 8);
    assert_int_equal(fr_atomic_file_commit(&f), 0);
    data = slurp(path, &len);
    assert_string_equal(data, "streamed");
    free(data);
    assert_int_equal(count_entries(dir, NULL, 0), 2);

    /* a missing directory: an error, or created with FR_WRITE_MKDIRS */
    snprintf(sub, sizeof(sub), "%s/x/y/z.csv", dir);
    assert_int_equal(fr_write_file_atomic(sub, "a", 1, 0644, FR_WRITE_FAST), -ENOENT);
    assert_int_equal(fr_write_file_atomic(sub, "a", 1, 0644, FR_WRITE_FAST | FR_WRITE_MKDIRS), 0);
    data = slurp(sub, &len);
    assert_string_equal(data, "a");
    free(data);

    /* the *at variant: a name in an open directory, never a path */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(fr_write_file_atomicat(dfd, "at.txt", "at", 2, 0644, FR_WRITE_DURABLE), 0);
    assert_int_equal(fr_write_file_atomicat(dfd, "x/at.txt", "at", 2, 0644, FR_WRITE_DURABLE), -EINVAL);
    close(dfd);
    snprintf(sub, sizeof(sub), "%s/at.txt", dir);
    data = slurp(sub, &len);
    assert_string_equal(data, "at");
    free(data);

    /* a relative path (the current directory) */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(fr_write_file_atomic("rel.txt", "r", 1, 0644, FR_WRITE_DURABLE), 0);
    assert_int_equal(chdir(cwd), 0);
    snprintf(sub, sizeof(sub), "%s/rel.txt", dir);
    data = slurp(sub, &len);
    assert_string_equal(data, "r");
    free(data);

    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/fr_test_util_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    assert_int_equal(fr_mkdirs(path, 0755), 0);
    assert_int_equal(fr_mkdirs(path, 0755), 0); /* idempotent */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    char file[300];
    snprintf(file, sizeof(file), "%s/f.txt", path);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("hello world", f);
    fclose(f);
    char err[FR_ERR_LEN];
    size_t len = 0;
    char *data = fr_read_file(file, 100, &len, err);
    assert_non_null(data);
    assert_int_equal(len, 11);
    assert_string_equal(data, "hello world");
    free(data);
    assert_null(fr_read_file(file, 5, &len, err)); /* over the cap */
    assert_non_null(strstr(err, "larger"));
    data = fr_read_file(file, 11, &len, err); /* exactly the cap */
    assert_non_null(data);
    free(data);
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/nope", dir);
    assert_null(fr_read_file(missing, 100, &len, err));
    assert_non_null(strstr(err, "nope"));
    assert_non_null(strstr(err, "No such file"));
    /* a file where a directory is wanted */
    char under_file[320];
    snprintf(under_file, sizeof(under_file), "%s/x", file);
    assert_true(fr_mkdirs(under_file, 0755) < 0);

    unlink(file);
    for (int i = 0; i < 3; i++) {
        rmdir(path);
        char *slash = strrchr(path, '/');
        *slash = '\0';
    }
    assert_int_equal(rmdir(dir), 0);
}

static void test_xalloc(void **state)
{
    (void)state;
    char *s = fr_xasprintf("%s-%d", "x", 7);
    assert_string_equal(s, "x-7");
    free(s);
    s = fr_xstrndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = fr_xstrndup("ab", 10);
    assert_string_equal(s, "ab");
    free(s);
    int *p = fr_xcalloc(4, sizeof(int));
    assert_int_equal(p[3], 0);
    p = fr_xrealloc(p, 100 * sizeof(int));
    free(p);
}

static void test_clocks(void **state)
{
    (void)state;
    uint64_t a = fr_mono_ns();
    uint64_t b = fr_mono_ns();
    assert_true(b >= a);
    assert_true(fr_mono_ms() >= a / 1000000);
    assert_true(fr_wall_us() > 1700000000LL * 1000000);
}

static void test_sql_ident(void **state)
{
    struct fr_buf b;
    (void)state;
    fr_buf_init(&b, 0);
    fr_buf_sql_ident(&b, "players.user_panel");
    assert_string_equal(b.data, "\"players\".\"user_panel\"");
    fr_buf_reset(&b);
    fr_buf_sql_ident(&b, "we\"ird");
    assert_string_equal(b.data, "\"we\"\"ird\"");
    fr_buf_deinit(&b);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(fr_utf8_valid("plain ascii, longer than eight bytes", 36));
    assert_true(fr_utf8_valid("Gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x8e\xae", 15));
    assert_true(fr_utf8_valid("", 0));
    assert_false(fr_utf8_valid("\xc0\xaf", 2));          /* overlong '/' */
    assert_false(fr_utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
    assert_false(fr_utf8_valid("\xf4\x90\x80\x80", 4));  /* past U+10FFFF */
    assert_false(fr_utf8_valid("abcdefgh\xe2\x82", 10)); /* truncated after an ASCII run */
    assert_false(fr_utf8_valid("\xff", 1));
    assert_int_equal(fr_utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(fr_utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 2), 0);
}

static void test_backoff(void **state)
{
    struct fr_backoff b;
    uint32_t want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    (void)state;
    fr_backoff_init(&b, 100, 5000);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        uint32_t d = fr_backoff_next(&b);
        assert_true(d >= want[i] / 2 && d <= want[i]); /* jittered into [d/2, d], capped */
    }
    fr_backoff_reset(&b);
    assert_true(fr_backoff_next(&b) <= 100);
    /* jitter actually varies */
    uint32_t first = 0, differs = 0;
    for (int i = 0; i < 50; i++) {
        fr_backoff_reset(&b);
        uint32_t d = fr_backoff_next(&b);
        if (i == 0)
            first = d;
        else if (d != first)
            differs++;
    }
    assert_true(differs > 0);
}

static void test_hash64(void **state)
{
    (void)state;
    assert_true(fr_hash64("p00001", 6) == fr_hash64("p00001", 6));
    assert_true(fr_hash64("p00001", 6) != fr_hash64("p00002", 6));
    assert_true(fr_hash64("ab", 2) != fr_hash64("ab", 1));
    /* low bits spread: 1000 sequential keys over 64 buckets leave none empty */
    unsigned seen[64] = {0};
    char k[16];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(k, sizeof(k), "p%05d", i);
        seen[fr_hash64(k, (size_t)n) & 63]++;
    }
    for (int i = 0; i < 64; i++)
        assert_true(seen[i] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamp_valid),  cmocka_unit_test(test_timestamp_invalid),
        cmocka_unit_test(test_timestamp_format), cmocka_unit_test(test_dates),
        cmocka_unit_test(test_parse_i64),        cmocka_unit_test(test_parse_double),
        cmocka_unit_test(test_json_escape),      cmocka_unit_test(test_csv_field),
        cmocka_unit_test(test_buf_cap),          cmocka_unit_test(test_ulid),
        cmocka_unit_test(test_sha256),           cmocka_unit_test(test_files),
        cmocka_unit_test(test_write_atomic),     cmocka_unit_test(test_xalloc),
        cmocka_unit_test(test_clocks),           cmocka_unit_test(test_sql_ident),
        cmocka_unit_test(test_hash64),           cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_utf8_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
