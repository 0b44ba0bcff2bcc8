/* Unit tests of common/partition.c: which stream partition a row or a file
 * goes to. Rows of one key (or one partition_by value) always share a
 * partition whatever their other columns, integer keys route by value
 * (not by spelling), the routing spreads keys over every partition, and a
 * dataset that routes whole files ignores the row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "names.h"
#include "partition.h"

static struct fr_pipeline *parse(const char *yaml)
{
    char err[FR_ERR_LEN];
    struct fr_pipeline *p = fr_pipeline_parse(yaml, strlen(yaml), "t.yaml", ".", err);
    if (!p)
        fail_msg("%s", err);
    return p;
}

#define HEAD                                                                                                         \
    "pipeline: t\n"                                                                                                  \
    "datasets:\n"                                                                                                    \
    "  d:\n"                                                                                                         \
    "    columns:\n"                                                                                                 \
    "      - {name: id, type: int}\n"                                                                                \
    "      - {name: name, type: text}\n"                                                                             \
    "      - {name: v, type: int}\n"

static unsigned row_part(const struct fr_dataset *ds, const char *id, const char *name, const char *v)
{
    const char *vals[3] = {id ? id : "", name ? name : "", v};
    size_t lens[3] = {id ? strlen(id) : 0, name ? strlen(name) : 0, strlen(v)};
    bool nulls[3] = {id == NULL, name == NULL, false};
    return fr_partition_of_row(ds, vals, lens, nulls);
}

/* A keyed dataset: by its key; the other columns do not matter. */
static void test_by_key(void **state)
{
    (void)state;
    struct fr_pipeline *p = parse(HEAD "    key: [id]\n    partitions: 4\n");
    const struct fr_dataset *ds = &p->datasets[0];
    unsigned seen[4] = {0};
    char id[16];

    assert_true(fr_partition_by_row(ds));
    for (int i = 0; i < 400; i++) {
        snprintf(id, sizeof(id), "%d", i);
        unsigned a = row_part(ds, id, "x", "1");
        assert_true(a < 4);
        assert_int_equal(a, row_part(ds, id, "other", "99"));
        seen[a]++;
    }
    for (int k = 0; k < 4; k++) /* 400 keys over 4 partitions: none empty, none with most */
        assert_in_range(seen[k], 50, 150);
    /* an integer key routes by value, not by its spelling */
    assert_int_equal(row_part(ds, "7", "a", "1"), row_part(ds, "007", "b", "2"));
    assert_int_equal(row_part(ds, "7", "a", "1"), row_part(ds, "+7", "b", "2"));
    /* the hash is FNV-1a of the canonical text */
    assert_int_equal(row_part(ds, "42", "a", "1"), fr_names_partition("42", 2, 4));
    fr_pipeline_free(p);
}

/* A composite key: every key column counts, separated (so "1","23" and
 * "12","3" are different keys). */
static void test_composite_key(void **state)
{
    (void)state;
    struct fr_pipeline *p = parse(HEAD "    key: [id, name]\n    partitions: 64\n");
    const struct fr_dataset *ds = &p->datasets[0];
    assert_int_equal(row_part(ds, "1", "23", "5"), fr_names_partition("1\x1f"
                                                                      "23",
                                                                      4, 64));
    assert_int_equal(row_part(ds, "12", "3", "5"), fr_names_partition("12\x1f"
                                                                      "3",
                                                                      4, 64));
    assert_int_not_equal(row_part(ds, "1", "23", "5"), row_part(ds, "12", "3", "5"));
    /* a NULL key column is one 0x00 byte, not the empty string */
    assert_int_equal(row_part(ds, "1", NULL, "5"), fr_names_partition("1\x1f\0", 3, 64));
    fr_pipeline_free(p);
}

/* An append-only dataset with partition_by: by that column alone. */
static void test_partition_by(void **state)
{
    (void)state;
    struct fr_pipeline *p = parse(HEAD "    partitions: 3\n    partition_by: name\n");
    const struct fr_dataset *ds = &p->datasets[0];
    assert_true(fr_partition_by_row(ds));
    assert_int_equal(row_part(ds, "1", "alice", "1"), row_part(ds, "2", "alice", "9"));
    assert_int_equal(row_part(ds, "1", "alice", "1"), fr_names_partition("alice", 5, 3));
    assert_int_equal(fr_partition_of_file(ds, "f.csv"), fr_names_partition("f.csv", 5, 3));
    fr_pipeline_free(p);
}

/* Routed by file, or one stream: every row on partition 0 of the row
 * function; files by their name. */
static void test_by_file_and_single(void **state)
{
    (void)state;
    struct fr_pipeline *p = parse(HEAD "    partitions: 5\n");
    const struct fr_dataset *ds = &p->datasets[0];
    unsigned seen[5] = {0};
    char name[32];

    assert_false(fr_partition_by_row(ds));
    assert_int_equal(row_part(ds, "1", "a", "1"), 0);
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "drop-%d.csv", i);
        seen[fr_partition_of_file(ds, name)]++;
    }
    for (int k = 0; k < 5; k++)
        assert_in_range(seen[k], 50, 150);
    fr_pipeline_free(p);

    p = parse(HEAD "    key: [id]\n");
    assert_false(fr_partition_by_row(&p->datasets[0]));
    assert_int_equal(row_part(&p->datasets[0], "1", "a", "1"), 0);
    assert_int_equal(fr_partition_of_file(&p->datasets[0], "f.csv"), 0);
    fr_pipeline_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_key),
        cmocka_unit_test(test_composite_key),
        cmocka_unit_test(test_partition_by),
        cmocka_unit_test(test_by_file_and_single),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
