/* unit: which queued entries share a transaction (services/loader/group.c,
 * compiled in): the head and the entries of its stream right behind it,
 * within the entry, row and byte bounds, never a keyed stream, a failing
 * stream or an entry marked single; entries given back go to the head of
 * the queue in order; and a batch joins a group only with the same dataset,
 * op and columns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../services/loader/group.c"

static struct fr_column g_cols[2] = {
    {.name = (char *)"player_id", .type = FR_T_TEXT},
    {.name = (char *)"n", .type = FR_T_BIGINT},
};
static char *g_key[1] = {(char *)"player_id"};
static struct fr_dataset g_append = {
    .name = (char *)"ev", .qname = (char *)"pl.ev", .table = (char *)"pl.ev", .columns = g_cols, .n_columns = 2};
static struct fr_dataset g_other = {
    .name = (char *)"ev2", .qname = (char *)"pl.ev2", .table = (char *)"pl.ev2", .columns = g_cols, .n_columns = 2};
static struct fr_dataset g_keyed = {.name = (char *)"kv",
                                    .qname = (char *)"pl.kv",
                                    .table = (char *)"pl.kv",
                                    .columns = g_cols,
                                    .n_columns = 2,
                                    .key = g_key,
                                    .n_key = 1};

static struct loader g_ld;
static struct ld_stream g_st[3]; /* append, another append, keyed */
static struct ld_entry g_e[100];
static char g_payload[] = "x";

static void reset(void)
{
    memset(&g_ld, 0, sizeof(g_ld));
    memset(g_st, 0, sizeof(g_st));
    memset(g_e, 0, sizeof(g_e));
    g_st[0].ds = &g_append;
    g_st[1].ds = &g_other;
    g_st[2].ds = &g_keyed;
}

/* Queues entry i of stream s with rows and bytes. */
static struct ld_entry *q(size_t i, size_t s, size_t rows, size_t bytes)
{
    struct ld_entry *e = &g_e[i];
    e->st = &g_st[s];
    e->batch = g_payload;
    e->batch_len = bytes;
    e->rows = rows;
    e->next = NULL;
    if (g_ld.q_tail)
        g_ld.q_tail->next = e;
    else
        g_ld.q_head = e;
    g_ld.q_tail = e;
    g_ld.q_len++;
    return e;
}

static size_t chain_len(const struct ld_entry *e)
{
    size_t n = 0;
    for (; e; e = e->next)
        n++;
    return n;
}

/* The queue's entries as indexes into g_e, checked against want[0..n). */
static void assert_queue(const size_t *want, size_t n)
{
    const struct ld_entry *e = g_ld.q_head, *last = NULL;
    size_t i = 0;
    for (; e; e = e->next, i++) {
        assert_true(i < n);
        assert_int_equal((size_t)(e - g_e), want[i]);
        last = e;
    }
    assert_int_equal(i, n);
    assert_int_equal(g_ld.q_len, n);
    assert_ptr_equal(g_ld.q_tail, last);
}

static void test_takes_its_stream_behind_the_head(void **state)
{
    (void)state;
    reset();
    q(0, 0, 100, 1000);
    q(1, 0, 100, 1000);
    q(2, 0, 100, 1000);
    q(3, 1, 100, 1000); /* another stream: ends the group */
    q(4, 0, 100, 1000);
    struct ld_entry *g = fr__group_take(&g_ld);
    assert_ptr_equal(g, &g_e[0]);
    assert_int_equal(chain_len(g), 3);
    assert_ptr_equal(g->next->next, &g_e[2]);
    assert_queue((const size_t[]){3, 4}, 2);
    g = fr__group_take(&g_ld);
    assert_int_equal(chain_len(g), 1); /* the other stream's one */
    g = fr__group_take(&g_ld);
    assert_ptr_equal(g, &g_e[4]);
    assert_int_equal(chain_len(g), 1);
    assert_null(g_ld.q_head);
    assert_null(g_ld.q_tail);
    assert_null(fr__group_take(&g_ld));
}

static void test_bounds(void **state)
{
    (void)state;
    /* rows: 3 x 2/5 of LD_GROUP_ROWS > LD_GROUP_ROWS */
    reset();
    for (size_t i = 0; i < 3; i++)
        q(i, 0, LD_GROUP_ROWS * 2 / 5, 10);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 2);
    assert_int_equal(g_ld.q_len, 1);
    /* bytes */
    reset();
    for (size_t i = 0; i < 3; i++)
        q(i, 0, 10, LD_GROUP_BYTES / 2);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 2);
    /* entries */
    reset();
    for (size_t i = 0; i < LD_GROUP_ENTRIES + 5; i++)
        q(i, 0, 1, 1);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), LD_GROUP_ENTRIES);
    assert_int_equal(g_ld.q_len, 5);
    /* an entry whose size is unknown ends the group; a head of unknown size is alone */
    reset();
    q(0, 0, 10, 10);
    q(1, 0, 0, 10);
    q(2, 0, 10, 10);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
}

static void test_never_grouped(void **state)
{
    (void)state;
    /* a keyed dataset: rows of one key in two batches must merge in order, one batch at a time */
    reset();
    q(0, 2, 10, 10);
    q(1, 2, 10, 10);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    /* retention */
    reset();
    g_append.n_retention_columns = 1;
    g_append.retention_days = 7;
    q(0, 0, 10, 10);
    q(1, 0, 10, 10);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    g_append.n_retention_columns = 0;
    g_append.retention_days = 0;
    /* a stream with a failing entry */
    reset();
    g_st[0].fail_id = (char *)"1-0";
    q(0, 0, 10, 10);
    q(1, 0, 10, 10);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    /* an entry marked single, at the head or behind it */
    reset();
    q(0, 0, 10, 10)->single = true;
    q(1, 0, 10, 10);
    q(2, 0, 10, 10)->single = true;
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
}

static void test_return_in_order(void **state)
{
    (void)state;
    reset();
    for (size_t i = 0; i < 5; i++)
        q(i, 0, 10, 10);
    struct ld_entry *g = fr__group_take(&g_ld);
    assert_int_equal(chain_len(g), 5);
    assert_int_equal(g_ld.q_len, 0);
    q(5, 0, 10, 10); /* read meanwhile */
    fr__group_return(&g_ld, g, true);
    assert_queue((const size_t[]){0, 1, 2, 3, 4, 5}, 6);
    for (size_t i = 0; i < 5; i++)
        assert_true(g_e[i].single);
    assert_false(g_e[5].single);
    /* then each alone */
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(chain_len(fr__group_take(&g_ld)), 1);
    /* given back to an empty queue, not single */
    reset();
    q(0, 0, 10, 10);
    q(1, 0, 10, 10);
    g = fr__group_take(&g_ld);
    fr__group_return(&g_ld, g->next, false);
    g->next = NULL;
    assert_queue((const size_t[]){1}, 1);
    assert_false(g_e[1].single);
    fr__group_return(&g_ld, NULL, true);
    assert_queue((const size_t[]){1}, 1);
}

static fr_batch_t *batch(const struct fr_dataset *ds, enum fr_batch_op op, const char *id)
{
    fr_batch_builder_t *bb = fr_batch_builder_new(ds, "drop", op);
    const char *vals[2] = {"p1", "7"};
    size_t lens[2] = {2, 1};
    bool nulls[2] = {false, false};
    struct fr_buf wire;
    char err[FR_ERR_LEN];
    fr_batch_t *b;

    fr_buf_init(&wire, 0);
    fr_batch_builder_add(bb, vals, lens, nulls, 1);
    assert_int_equal(fr_batch_builder_flush(bb, id, NULL, &wire), 0);
    b = fr_batch_decode(wire.data, wire.len, err);
    assert_non_null(b);
    fr_batch_builder_free(bb);
    fr_buf_deinit(&wire);
    return b;
}

static void test_fits(void **state)
{
    (void)state;
    fr_batch_t *a = batch(&g_append, FR_OP_UPSERT, "a");
    fr_batch_t *b = batch(&g_append, FR_OP_UPSERT, "b");
    fr_batch_t *other = batch(&g_other, FR_OP_UPSERT, "c");
    fr_batch_t *del = batch(&g_append, FR_OP_DELETE, "d");

    assert_true(fr__group_fits(a, b));
    assert_false(fr__group_fits(a, other));
    assert_false(fr__group_fits(a, del));
    assert_false(fr__group_fits(del, a));
    fr_batch_free(a);
    fr_batch_free(b);
    fr_batch_free(other);
    fr_batch_free(del);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takes_its_stream_behind_the_head),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_never_grouped),
        cmocka_unit_test(test_return_in_order),
        cmocka_unit_test(test_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
