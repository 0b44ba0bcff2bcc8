/* batcher: rows into batches on their stream partitions (see batcher.h). */
#include "batcher.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "util.h"

struct fr_batcher {
    struct fr_batcher_opts o;
    char *prefix;                  /* owned */
    char *file_rel;                /* owned */
    fr_batch_builder_t **builders; /* owned: one per partition when routing rows, else one */
    unsigned n_builders;
    unsigned file_part; /* whole-file routing: the file's partition */
    uint32_t chunk;     /* next batch number, shared by every partition */
    char error[FR_ERR_LEN];
};

fr_batcher_t *fr_batcher_new(const struct fr_batcher_opts *o)
{
    fr_batcher_t *b = fr_xcalloc(1, sizeof(*b));
    b->o = *o;
    b->prefix = fr_xstrdup(o->id_prefix);
    b->file_rel = fr_xstrdup(o->file_rel);
    b->n_builders = fr_partition_by_row(o->ds) ? o->ds->partitions : 1;
    b->file_part = fr_partition_by_row(o->ds) ? 0 : fr_partition_of_file(o->ds, o->file_name);
    b->builders = fr_xcalloc(b->n_builders, sizeof(*b->builders));
    for (unsigned i = 0; i < b->n_builders; i++)
        b->builders[i] = fr_batch_builder_new(o->ds, o->src->name, FR_OP_UPSERT);
    return b;
}

void fr_batcher_free(fr_batcher_t *b)
{
    if (!b)
        return;
    for (unsigned i = 0; i < b->n_builders; i++)
        fr_batch_builder_free(b->builders[i]);
    free(b->builders);
    free(b->prefix);
    free(b->file_rel);
    free(b);
}

/* Packs builder k (when it holds rows) into an item and emits it. */
static int flush_one(fr_batcher_t *b, unsigned k)
{
    fr_batch_builder_t *bb = b->builders[k];
    size_t rows = fr_batch_builder_rows(bb);
    struct fr_pub_item *it;
    int rc;

    if (rows == 0)
        return 0;
    it = fr_pub_item_new(FR_PUB_BATCH, b->o.ds->qname);
    snprintf(it->id, sizeof(it->id), "%s-%0*" PRIu32, b->prefix, b->o.id_digits, b->chunk);
    rc = fr_batch_builder_flush(bb, it->id, b->o.raw, &it->payload);
    if (rc != 0) {
        snprintf(b->error, sizeof(b->error), "cannot pack batch %s: %s", it->id, strerror(-rc));
        fr_pub_item_free(it);
        return rc;
    }
    b->chunk++;
    it->rows = (uint32_t)rows;
    it->file = fr_xstrdup(b->file_rel);
    it->partition = b->n_builders > 1 ? k : b->file_part;
    return b->o.emit(b->o.data, it);
}

int fr_batcher_add(fr_batcher_t *b, const struct fr_row *row)
{
    unsigned k = 0;
    fr_batch_builder_t *bb;

    if (b->n_builders > 1)
        k = fr_partition_of_row(b->o.ds, row->vals, row->lens, row->nulls);
    bb = b->builders[k];
    fr_batch_builder_add(bb, row->vals, row->lens, row->nulls, row->line);
    if ((b->o.src->batch_rows && fr_batch_builder_rows(bb) >= b->o.src->batch_rows) ||
        (b->o.src->batch_bytes && fr_batch_builder_bytes(bb) >= b->o.src->batch_bytes))
        return flush_one(b, k);
    return 0;
}

int fr_batcher_flush(fr_batcher_t *b)
{
    for (unsigned k = 0; k < b->n_builders; k++) {
        int rc = flush_one(b, k);
        if (rc != 0)
            return rc;
    }
    return 0;
}

uint32_t fr_batcher_batches(const fr_batcher_t *b)
{
    return b->chunk;
}

const char *fr_batcher_error(const fr_batcher_t *b)
{
    return b->error;
}
