/* unit: the api's keys (services/api/auth.c, compiled in): keys file
 * parsing and its errors, constant-time comparison, roles, the token
 * bucket, and the 401/403/429 decisions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../services/api/auth.c"

/* sha256("reader-key"), ("writer-key"), ("admin-key") computed in setup */
static char h_read[65], h_write[65], h_admin[65];

static int setup(void **state)
{
    (void)state;
    fr_sha256_hex("reader-key", 10, h_read);
    fr_sha256_hex("writer-key", 10, h_write);
    fr_sha256_hex("admin-key", 9, h_admin);
    return 0;
}

static fr_auth_t *parse(const char *text, char err[FR_ERR_LEN])
{
    return fr_auth_parse(text, strlen(text), "keys.txt", 1000, err);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(fr_auth_ct_equal("abcdef", "abcdef", 6));
    assert_false(fr_auth_ct_equal("abcdef", "abcdeg", 6));
    assert_false(fr_auth_ct_equal("xbcdef", "abcdef", 6));
    assert_true(fr_auth_ct_equal("", "", 0));
    assert_true(fr_auth_ct_equal("ab", "ac", 1));
}

static void test_roles(void **state)
{
    enum fr_auth_role r;
    (void)state;
    assert_true(fr_auth_role_parse("read", 4, &r));
    assert_int_equal(r, FR_AUTH_ROLE_READ);
    assert_true(fr_auth_role_parse("admin", 5, &r));
    assert_int_equal(r, FR_AUTH_ROLE_ADMIN);
    assert_false(fr_auth_role_parse("root", 4, &r));
    assert_false(fr_auth_role_parse("none", 4, &r));
    assert_true(FR_AUTH_ROLE_READ < FR_AUTH_ROLE_WRITE && FR_AUTH_ROLE_WRITE < FR_AUTH_ROLE_ADMIN);
    assert_string_equal(fr_auth_role_name(FR_AUTH_ROLE_WRITE), "write");
}

static void test_parse_ok(void **state)
{
    char err[FR_ERR_LEN] = "";
    char text[1024];
    fr_auth_t *a;
    double rate, burst;
    (void)state;

    snprintf(text, sizeof(text), "# comment\n\n  reader:read:%s\r\nwriter : write : %s : 5\nops:admin:%s:2:3\n",
             h_read, h_write, h_admin);
    a = parse(text, err);
    assert_non_null(a);
    assert_int_equal(fr_auth_count(a), 3);
    assert_string_equal(fr_auth_key_name(a, 0), "reader");
    assert_int_equal(fr_auth_key_role(a, 1), FR_AUTH_ROLE_WRITE);
    fr_auth_key_limits(a, 0, &rate, &burst);
    assert_true(rate == FR_AUTH_DEFAULT_RATE && burst == FR_AUTH_DEFAULT_BURST);
    fr_auth_key_limits(a, 1, &rate, &burst);
    assert_true(rate == 5 && burst == 10); /* burst defaults to 2 x rate */
    fr_auth_key_limits(a, 2, &rate, &burst);
    assert_true(rate == 2 && burst == 3);
    fr_auth_free(a);
}

static void test_parse_upper_hex(void **state)
{
    char err[FR_ERR_LEN] = "";
    char text[256], up[65];
    struct fr_auth_decision d;
    fr_auth_t *a;
    (void)state;

    for (int i = 0; i < 65; i++)
        up[i] = (h_read[i] >= 'a' && h_read[i] <= 'f') ? (char)(h_read[i] - 32) : h_read[i];
    snprintf(text, sizeof(text), "r:read:%s", up); /* no final newline */
    a = parse(text, err);
    assert_non_null(a);
    fr_auth_check(a, "Bearer reader-key", FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 0);
    fr_auth_free(a);
}

static void expect_error(const char *text, const char *needle)
{
    char err[FR_ERR_LEN] = "";
    fr_auth_t *a = parse(text, err);

    if (a)
        fail_msg("parsed, expected an error containing '%s'", needle);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not contain '%s'", err, needle);
}

static void test_parse_errors(void **state)
{
    char text[512];
    (void)state;

    expect_error("", "no keys");
    expect_error("# only a comment\n", "no keys");
    expect_error("reader:read\n", "keys.txt:1: expected name:role:sha256hex");
    snprintf(text, sizeof(text), "\nreader:root:%s\n", h_read);
    expect_error(text, "keys.txt:2: role 'root'");
    expect_error("reader:read:secret-key-in-clear\n", "hash-key");
    snprintf(text, sizeof(text), "bad name:read:%s\n", h_read);
    expect_error(text, "key name");
    snprintf(text, sizeof(text), "a:read:%s\na:write:%s\n", h_read, h_write);
    expect_error(text, "keys.txt:2: key name 'a' appears twice");
    snprintf(text, sizeof(text), "a:read:%s\nb:write:%s\n", h_read, h_read);
    expect_error(text, "same hash");
    snprintf(text, sizeof(text), "a:read:%s:0\n", h_read);
    expect_error(text, "rate_per_s");
    snprintf(text, sizeof(text), "a:read:%s:1:0.5\n", h_read);
    expect_error(text, "burst");
    snprintf(text, sizeof(text), "a:read:%s:1:2:3\n", h_read);
    expect_error(text, "expected name:role");
    snprintf(text, sizeof(text), "a:read:%.63sg\n", h_read);
    expect_error(text, "hex digits");
}

static void test_tbucket(void **state)
{
    struct fr_tbucket b;
    uint64_t retry = 0;
    (void)state;

    fr_tbucket_init(&b, 2, 3, 10000); /* 2/s, burst 3 */
    assert_true(fr_tbucket_take(&b, 10000, &retry));
    assert_true(fr_tbucket_take(&b, 10000, &retry));
    assert_true(fr_tbucket_take(&b, 10000, &retry));
    assert_false(fr_tbucket_take(&b, 10000, &retry));
    assert_int_equal(retry, 500);
    assert_false(fr_tbucket_take(&b, 10250, &retry)); /* half a token */
    assert_int_equal(retry, 250);
    assert_true(fr_tbucket_take(&b, 10500, &retry));
    /* a long pause refills up to the burst only */
    for (int i = 0; i < 3; i++)
        assert_true(fr_tbucket_take(&b, 100000, &retry));
    assert_false(fr_tbucket_take(&b, 100000, &retry));
    /* a clock going backwards refills nothing and does not crash */
    assert_false(fr_tbucket_take(&b, 5000, &retry));
    assert_true(retry >= 1);
}

static void test_check(void **state)
{
    char err[FR_ERR_LEN] = "";
    char text[1024];
    struct fr_auth_decision d;
    fr_auth_t *a;
    (void)state;

    snprintf(text, sizeof(text), "reader:read:%s\nwriter:write:%s:1:2\nops:admin:%s\n", h_read, h_write, h_admin);
    a = parse(text, err);
    assert_non_null(a);

    fr_auth_check(a, NULL, FR_AUTH_ROLE_NONE, 1000, &d);
    assert_int_equal(d.status, 0); /* open route */
    fr_auth_check(a, NULL, FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 401);
    fr_auth_check(a, "Basic abc", FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 401);
    fr_auth_check(a, "Bearer ", FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 401);
    fr_auth_check(a, "Bearer wrong-key", FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 401);
    assert_null(d.key_name);
    fr_auth_check(a, "Bearer reader-key", FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 0);
    assert_string_equal(d.key_name, "reader");
    fr_auth_check(a, "bearer reader-key", FR_AUTH_ROLE_WRITE, 1000, &d);
    assert_int_equal(d.status, 403);
    fr_auth_check(a, "Bearer admin-key", FR_AUTH_ROLE_ADMIN, 1000, &d);
    assert_int_equal(d.status, 0);
    assert_int_equal(d.role, FR_AUTH_ROLE_ADMIN);
    fr_auth_check(a, "Bearer writer-key", FR_AUTH_ROLE_ADMIN, 1000, &d);
    assert_int_equal(d.status, 403);

    /* writer: burst 2 at 1/s, one token already used by the 403 above */
    fr_auth_check(a, "Bearer writer-key", FR_AUTH_ROLE_WRITE, 1000, &d);
    assert_int_equal(d.status, 0);
    fr_auth_check(a, "Bearer writer-key", FR_AUTH_ROLE_WRITE, 1000, &d);
    assert_int_equal(d.status, 429);
    assert_int_equal(d.retry_after_s, 1);
    fr_auth_check(a, "Bearer writer-key", FR_AUTH_ROLE_WRITE, 2000, &d);
    assert_int_equal(d.status, 0);
    /* other keys are not affected by the writer's bucket */
    fr_auth_check(a, "Bearer reader-key", FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 0);
    fr_auth_free(a);
}

/* Failed authentications are limited per client IP: after
 * FR_AUTH_FAIL_BURST unknown keys, every request of that address gets 429
 * (a valid key too, or guessing would go on), other addresses are not
 * affected, and the bucket refills at FR_AUTH_FAIL_RATE. */
static void test_fail_limit(void **state)
{
    char err[FR_ERR_LEN] = "";
    char text[1024];
    struct fr_auth_decision d;
    fr_auth_t *a;
    (void)state;

    snprintf(text, sizeof(text), "reader:read:%s\n", h_read);
    a = parse(text, err);
    assert_non_null(a);
    for (int i = 0; i < (int)FR_AUTH_FAIL_BURST; i++) {
        fr_auth_check_from(a, "Bearer guess", "192.0.2.7", FR_AUTH_ROLE_READ, 5000, &d);
        assert_int_equal(d.status, 401);
    }
    fr_auth_check_from(a, "Bearer guess", "192.0.2.7", FR_AUTH_ROLE_READ, 5000, &d);
    assert_int_equal(d.status, 429);
    assert_true(d.retry_after_s >= 1);
    fr_auth_check_from(a, "Bearer reader-key", "192.0.2.7", FR_AUTH_ROLE_READ, 5000, &d);
    assert_int_equal(d.status, 429);
    fr_auth_check_from(a, NULL, "192.0.2.7", FR_AUTH_ROLE_READ, 5000, &d);
    assert_int_equal(d.status, 429);
    /* another address, and an unknown one, are not limited by it */
    fr_auth_check_from(a, "Bearer reader-key", "192.0.2.8", FR_AUTH_ROLE_READ, 5000, &d);
    assert_int_equal(d.status, 0);
    fr_auth_check_from(a, "Bearer guess", "", FR_AUTH_ROLE_READ, 5000, &d);
    assert_int_equal(d.status, 401);
    /* open routes stay open */
    fr_auth_check_from(a, NULL, "192.0.2.7", FR_AUTH_ROLE_NONE, 5000, &d);
    assert_int_equal(d.status, 0);
    /* the bucket refills: one more try a second */
    fr_auth_check_from(a, "Bearer reader-key", "192.0.2.7", FR_AUTH_ROLE_READ, 6000, &d);
    assert_int_equal(d.status, 0);
    /* a valid key takes no failure token: many in a row stay allowed */
    for (int i = 0; i < 50; i++) {
        fr_auth_check_from(a, "Bearer reader-key", "192.0.2.9", FR_AUTH_ROLE_READ, 7000, &d);
        assert_int_equal(d.status, 0);
    }
    /* many addresses: each its own bucket (the table evicts idle ones) */
    for (int i = 0; i < 3000; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
        fr_auth_check_from(a, "Bearer guess", ip, FR_AUTH_ROLE_READ, 8000, &d);
        assert_int_equal(d.status, 401);
    }
    fr_auth_free(a);
}

static void test_hash_key(void **state)
{
    char a[65], b[65], c[65];
    (void)state;

    fr_auth_hash_key("reader-key\n", 11, a);
    fr_auth_hash_key("reader-key\r\n", 12, b);
    fr_auth_hash_key("reader-key", 10, c);
    assert_string_equal(a, h_read);
    assert_string_equal(b, h_read);
    assert_string_equal(c, h_read);
    /* sha256("abc"), a published test vector */
    fr_auth_hash_key("abc", 3, a);
    assert_string_equal(a, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* "Authorization: Basic base64(user:key)" (a browser's login prompt, the
 * console): the password is the key, the user name is ignored. */
static void test_basic(void **state)
{
    char err[FR_ERR_LEN] = "";
    char text[1024], out[FR_AUTH_BASIC_MAX];
    const char *key;
    struct fr_auth_decision d;

    (void)state;
    assert_int_equal(fr_auth_basic_key("b3BzOmFkbWluLWtleQ==", out, sizeof(out), &key), 9); /* ops:admin-key */
    assert_memory_equal(key, "admin-key", 9);
    assert_int_equal(fr_auth_basic_key("OmFkbWluLWtleQ", out, sizeof(out), &key), 9); /* :admin-key, unpadded */
    assert_int_equal(fr_auth_basic_key("b3Bz", out, sizeof(out), &key), 0);           /* "ops": no ':' */
    assert_int_equal(fr_auth_basic_key("b3BzOg==", out, sizeof(out), &key), 0);       /* "ops:": empty key */
    assert_int_equal(fr_auth_basic_key("b3Bz*mFk", out, sizeof(out), &key), 0);       /* not base64 */
    assert_int_equal(fr_auth_basic_key("b3BzOmFkbWluLWtleQ==", out, 8, &key), 0);     /* over cap */
    snprintf(text, sizeof(text), "reader:read:%s\nops:admin:%s\n", h_read, h_admin);
    fr_auth_t *a = parse(text, err);
    assert_non_null(a);
    fr_auth_check(a, "Basic b3BzOmFkbWluLWtleQ==", FR_AUTH_ROLE_ADMIN, 1000, &d);
    assert_int_equal(d.status, 0);
    assert_string_equal(d.key_name, "ops");
    fr_auth_check(a, "basic eDpyZWFkZXIta2V5", FR_AUTH_ROLE_ADMIN, 1000, &d); /* x:reader-key */
    assert_int_equal(d.status, 403);
    fr_auth_check(a, "Basic eDp3cm9uZw==", FR_AUTH_ROLE_READ, 1000, &d); /* x:wrong */
    assert_int_equal(d.status, 401);
    fr_auth_check(a, "Basic b3Bz", FR_AUTH_ROLE_READ, 1000, &d);
    assert_int_equal(d.status, 401);
    fr_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_equal),     cmocka_unit_test(test_roles),
        cmocka_unit_test(test_parse_ok),     cmocka_unit_test(test_parse_upper_hex),
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_tbucket),
        cmocka_unit_test(test_check),        cmocka_unit_test(test_hash_key),
        cmocka_unit_test(test_fail_limit),   cmocka_unit_test(test_basic),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
