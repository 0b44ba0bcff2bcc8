/* group: which queued batches share one transaction. Under a backlog the
 * queue holds many small batches of one stream (a file drop every 50 ms
 * makes one each); loading each in its own transaction pays a ledger round
 * trip, a COPY, an aggregate merge of a few rows into many stored ones and a
 * durable commit per batch. Batches of an append-only dataset without
 * constraints or retention are independent rows, and aggregate merges do
 * not depend on how rows are cut into batches (docs/pipelines.md), so the
 * entries right behind the head of the queue, of the same stream, are
 * loaded with it in one transaction: one ledger statement naming every
 * batch, one COPY, one merge, one commit (load.c). A group that does not
 * commit (an error, a batch already in the ledger) goes back to the queue,
 * each entry then loaded alone with the usual retry, isolation and
 * dead-letter rules. The queue itself is main.c's; these only take from and
 * give back to its head. */
#include <string.h>

#include "loader_int.h"

/* A stream whose batches may share a transaction. */
static bool stream_groups(const struct ld_stream *st)
{
    const struct fr_dataset *ds = st->ds;
    return ds->n_key == 0 && !(ds->n_retention_columns > 0 && ds->retention_days > 0) && !st->fail_id;
}

static struct ld_entry *pop(struct loader *ld)
{
    struct ld_entry *e = ld->q_head;
    if (!e)
        return NULL;
    ld->q_head = e->next;
    if (!ld->q_head)
        ld->q_tail = NULL;
    ld->q_len--;
    e->next = NULL;
    return e;
}

struct ld_entry *fr__group_take(struct loader *ld)
{
    struct ld_entry *head = pop(ld), *last = head;
    size_t n = 1, rows, bytes;

    if (!head || head->single || !head->batch || head->rows == 0 || !stream_groups(head->st))
        return head;
    rows = head->rows;
    bytes = head->batch_len;
    while (n < LD_GROUP_ENTRIES && ld->q_head) {
        const struct ld_entry *e = ld->q_head;
        if (e->st != head->st || e->single || !e->batch || e->rows == 0 || rows + e->rows > LD_GROUP_ROWS ||
            bytes + e->batch_len > LD_GROUP_BYTES)
            break;
        rows += e->rows;
        bytes += e->batch_len;
        last->next = pop(ld);
        last = last->next;
        n++;
    }
    return head;
}

void fr__group_return(struct loader *ld, struct ld_entry *chain, bool single)
{
    struct ld_entry *last = NULL;
    size_t n = 0;

    for (struct ld_entry *e = chain; e; e = e->next) {
        e->single = e->single || single;
        last = e;
        n++;
    }
    if (!last)
        return;
    last->next = ld->q_head;
    ld->q_head = chain;
    if (!ld->q_tail)
        ld->q_tail = last;
    ld->q_len += n;
}

bool fr__group_fits(const fr_batch_t *head, const fr_batch_t *b)
{
    size_t nc = fr_batch_cols(head);

    if (fr_batch_op(b) != FR_OP_UPSERT || fr_batch_op(head) != FR_OP_UPSERT || fr_batch_cols(b) != nc ||
        strcmp(fr_batch_dataset(b), fr_batch_dataset(head)) != 0)
        return false;
    for (size_t i = 0; i < nc; i++)
        if (strcmp(fr_batch_col_name(b, i), fr_batch_col_name(head, i)) != 0)
            return false;
    return true;
}
