/* batcher: one file's parsed rows into packed batches, each on its stream
 * partition (common/partition.h). A dataset that routes rows (by key or
 * partition_by) gets one builder per partition, and a row joins the builder
 * of its partition; otherwise one builder, every batch on the file's
 * partition. A builder is flushed when it reaches the source's batch_rows
 * or batch_bytes, and every non-empty one at the end, in partition order.
 * Batch ids are "PREFIX-NNNN" with one counter for the file, so the same
 * file parsed again gives the same batches with the same ids: a resumed or
 * redone file is exactly-once through the loader's ledger. Used by the file
 * source (filesrc.c) and replay (replay.c); any one thread at a time. */
#ifndef FR_INGEST_BATCHER_H
#define FR_INGEST_BATCHER_H

#include <stdint.h>

#include "batch.h"
#include "config.h"
#include "parse.h"
#include "publish.h"

typedef struct fr_batcher fr_batcher_t;

/* Takes a packed batch item (owned from then on, also on error); returns 0,
 * or a negative errno that stops the file (e.g. -ECANCELED). */
typedef int (*fr_batcher_emit_cb)(void *data, struct fr_pub_item *it);

struct fr_batcher_opts {
    const struct fr_dataset *ds;  /* borrowed */
    const struct fr_source *src;  /* borrowed: its name, batch_rows, batch_bytes */
    const char *id_prefix;        /* copied: batch ids are "PREFIX-%0*u" */
    int id_digits;                /* width of the counter */
    const char *file_name;        /* borrowed: the inbound name (whole-file routing) */
    const char *file_rel;         /* copied into each item's file: its landing path */
    const struct fr_raw_ref *raw; /* borrowed, must outlive the batcher */
    fr_batcher_emit_cb emit;
    void *data;
};

/* Never NULL (allocation failures abort, as everywhere). */
fr_batcher_t *fr_batcher_new(const struct fr_batcher_opts *o);
void fr_batcher_free(fr_batcher_t *b);
/* Adds one row; may emit the batch it completes. 0 or the emit's error
 * (or -ENOMEM / the codec's error when packing fails: see fr_batcher_error). */
int fr_batcher_add(fr_batcher_t *b, const struct fr_row *row);
/* Emits every non-empty batch (end of the file). */
int fr_batcher_flush(fr_batcher_t *b);
/* Batches emitted so far. */
uint32_t fr_batcher_batches(const fr_batcher_t *b);
/* Why packing failed ("" when it did not). */
const char *fr_batcher_error(const fr_batcher_t *b);

#endif
