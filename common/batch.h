/* batch: the codec of freshet.Batch (proto/freshet.proto), the message that
 * carries typed rows from ingest and api to the loader. A builder
 * accumulates validated rows column by column and packs them; a decoded
 * batch is validated (shape, sizes) before anyone reads it. */
#ifndef FR_BATCH_H
#define FR_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

#define FR_BATCH_MAX_BYTES (64u << 20) /* largest encoded batch we accept */
#define FR_BATCH_ID_LEN    64
#define FR_BATCH_MAX_COLS  1600 /* PostgreSQL's own column limit; decode rejects more */

enum fr_batch_op {
    FR_OP_UPSERT = 0,
    FR_OP_DELETE = 1,      /* soft delete when the dataset has soft_delete, else delete */
    FR_OP_HARD_DELETE = 2, /* delete, also in soft_delete datasets */
    FR_OP_REPLACED = 3,    /* no rows: the table was replaced (restore) */
};

struct fr_raw_ref {
    const char *path;   /* borrowed: landing path relative to FRESHET_DATA_DIR */
    const char *sha256; /* borrowed: hex */
    uint64_t size;
};

typedef struct fr_batch_builder fr_batch_builder_t;

/* The builder borrows `ds` (must outlive it) and copies `source`. */
fr_batch_builder_t *fr_batch_builder_new(const struct fr_dataset *ds, const char *source, enum fr_batch_op op);
void fr_batch_builder_free(fr_batch_builder_t *b);
/* Adds one row: vals[i]/lens[i] for dataset column i, in canonical text
 * form; nulls[i] true marks null (vals[i] ignored). Values are copied. */
void fr_batch_builder_add(fr_batch_builder_t *b, const char *const *vals, const size_t *lens, const bool *nulls,
                          uint32_t line);
size_t fr_batch_builder_rows(const fr_batch_builder_t *b);
size_t fr_batch_builder_bytes(const fr_batch_builder_t *b); /* approximate encoded size */
/* Packs the rows so far with this id (and raw ref, may be NULL) into out
 * (appended), then empties the builder for the next batch. Returns 0;
 * -EINVAL if id is empty or not shorter than FR_BATCH_ID_LEN; -EMSGSIZE if
 * the packed batch would pass FR_BATCH_MAX_BYTES; -ENOBUFS if out's cap is
 * hit. On error out is unchanged and the builder keeps its rows. A value is
 * cut at its first NUL byte (the wire type is a proto string). */
FR_MUST_CHECK int fr_batch_builder_flush(fr_batch_builder_t *b, const char *id, const struct fr_raw_ref *raw,
                                         struct fr_buf *out);

typedef struct fr_batch fr_batch_t;

/* Unpacks and validates: every column holds n_rows values, the nulls bitmap
 * fits, id and dataset are present and short, op and column types are
 * known, column names are present and unique, at most FR_BATCH_MAX_COLS
 * columns, lines absent or one per row. `p` is borrowed (copied); n above
 * FR_BATCH_MAX_BYTES is refused before unpacking. NULL + err on failure. */
fr_batch_t *fr_batch_decode(const void *p, size_t n, char err[FR_ERR_LEN]);
void fr_batch_free(fr_batch_t *b);

const char *fr_batch_id(const fr_batch_t *b);
const char *fr_batch_dataset(const fr_batch_t *b);
const char *fr_batch_source(const fr_batch_t *b);
enum fr_batch_op fr_batch_op(const fr_batch_t *b);
int64_t fr_batch_produced_at_us(const fr_batch_t *b);
size_t fr_batch_rows(const fr_batch_t *b);
size_t fr_batch_cols(const fr_batch_t *b);
const char *fr_batch_col_name(const fr_batch_t *b, size_t col);
enum fr_type fr_batch_col_type(const fr_batch_t *b, size_t col);
/* The value at (col, row), NULL when null; *len gets its length. */
const char *fr_batch_value(const fr_batch_t *b, size_t col, size_t row, size_t *len);
uint32_t fr_batch_line(const fr_batch_t *b, size_t row); /* 0 if unknown */
const char *fr_batch_raw_path(const fr_batch_t *b);      /* "" if none */
const char *fr_batch_raw_sha256(const fr_batch_t *b);    /* "" if none */
uint64_t fr_batch_raw_size(const fr_batch_t *b);         /* 0 if none */
uint32_t fr_batch_schema_version(const fr_batch_t *b);

/* Appends rows [from, to) in PostgreSQL COPY text format (tab-separated,
 * \N for null; backslash, tab, LF and CR escaped as \\ \t \n \r), columns
 * in batch order, each row ending in LF. 0, -EINVAL for a bad range, or
 * -ENOBUFS at out's cap (out then back at its length on entry). */
int fr_batch_copy_text(const fr_batch_t *b, size_t from, size_t to, struct fr_buf *out);

#endif
