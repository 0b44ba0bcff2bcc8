/* sid_assert: cmocka helpers for tests of Redis stream ids (common/sid.h):
 * an id from its text (the parse must succeed) and an id's text compared.
 * Include after cmocka.h and sid.h. */
#ifndef FR_TEST_SID_ASSERT_H
#define FR_TEST_SID_ASSERT_H

#include <string.h>

static struct fr_sid sid(const char *s)
{
    struct fr_sid id;
    assert_true(fr_sid_parse(s, strlen(s), &id));
    return id;
}

static void assert_sid(struct fr_sid id, const char *want)
{
    char got[FR_SID_LEN];
    fr_sid_format(id, got);
    assert_string_equal(got, want);
}

#endif
