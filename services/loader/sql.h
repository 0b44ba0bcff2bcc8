/* sql: the SQL text the loader sends, built from the pipeline's config (a
 * dataset and the columns a batch carries, or a model): the statements of a
 * batch's transaction (stage, COPY, per-row constraint check, merge,
 * retention, ledger) and a model's refresh. Pure functions: no I/O, no
 * state, every name quoted with fr_buf_sql_ident; snapshot-tested in
 * tests/unit/test_loader_sql.c. Each builder appends to s. */
#ifndef FR_LOADER_SQL_H
#define FR_LOADER_SQL_H

#include <stdbool.h>
#include <stddef.h>

#include "batch.h"
#include "config.h"
#include "util.h"

/* The ledger row of a batch: $1 batch id, $2 dataset qname, $3 rows; a row
 * back = inserted, none = already loaded. */
#define FR_SQL_LEDGER_INSERT                                                                                         \
    "INSERT INTO freshet.batches (batch_id, dataset, rows) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1"
/* The rows set aside by isolation: $1 batch id, $2 the rejected JSON array. */
#define FR_SQL_LEDGER_REJECTED "UPDATE freshet.batches SET rejected = $2::jsonb WHERE batch_id = $1"
/* Every model's last full-refresh day, as days since 1970-01-01. */
#define FR_SQL_MODEL_STATE_READ "SELECT model, (day - DATE '1970-01-01')::text FROM freshet.model_state"
/* After a full refresh: $1 model state name, $2 the day (date). */
#define FR_SQL_MODEL_STATE_FULL                                                                                      \
    "INSERT INTO freshet.model_state (model, day, refreshed_at) VALUES ($1, $2::date, now()) "                       \
    "ON CONFLICT (model) DO UPDATE SET day = EXCLUDED.day, refreshed_at = EXCLUDED.refreshed_at"
/* After a refresh of some keys: $1 model state name (the day stays). */
#define FR_SQL_MODEL_STATE_KEYS                                                                                      \
    "INSERT INTO freshet.model_state (model, day, refreshed_at) VALUES ($1, NULL, now()) "                           \
    "ON CONFLICT (model) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at"

/* CREATE TEMP TABLE fr_stage (LIKE the table, plus fr_row: the row's
 * 0-based index in the batch, counting from first_row) ON COMMIT DROP. */
void fr_sql_stage(struct fr_buf *s, const struct fr_dataset *ds, size_t first_row);

/* COPY fr_stage (staged: keyed datasets, and append-only ones an
 * aggregate model reads) or the table (other append-only ones) (cols)
 * FROM STDIN. */
void fr_sql_copy(struct fr_buf *s, const struct fr_dataset *ds, bool staged, const char *const *cols, size_t n_cols);

/* True when a batch of op with these columns goes through the constraint
 * check: an upsert of a keyed dataset carrying a references or unique
 * column. */
bool fr_sql_needs_check(const struct fr_dataset *ds, const char *const *cols, size_t n_cols, enum fr_batch_op op);

/* One statement: finds the staged rows breaking a references/unique
 * constraint (one reason per row, the first column's), deletes them from the
 * stage, records them in the ledger row ($1 = batch id) and returns them as
 * fr_row, field, value, kind, reason. p resolves `references:`. */
void fr_sql_check(struct fr_buf *s, const struct fr_pipeline *p, const struct fr_dataset *ds, const char *const *cols,
                  size_t n_cols);

/* The upsert of the stage into the table by the merge rules (op upsert), or
 * the delete / soft delete (op delete, hard_delete); for an append-only
 * dataset, the INSERT of the staged rows. Returns true when the
 * statement takes $1 (the batch's produced time, for a soft delete). */
bool fr_sql_merge(struct fr_buf *s, const struct fr_dataset *ds, const char *const *cols, size_t n_cols,
                  enum fr_batch_op op);

/* Retention of the staged keys: DELETE their rows whose greatest retention
 * column is before $1 (the cutoff). */
void fr_sql_retain(struct fr_buf *s, const struct fr_dataset *ds);

/* A model's refresh, one statement: $1 text[] of keys (NULL = all), $2 now.
 * Computes the model's SQL, upserts the rows that changed, deletes the rows
 * of the recomputed keys it no longer yields, and returns
 * deleted (bool), then every column as text. */
void fr_sql_model_refresh(struct fr_buf *s, const struct fr_model *m);

#endif
