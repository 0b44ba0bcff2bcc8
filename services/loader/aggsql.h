/* aggsql: the SQL of aggregate models (docs/loader.md, "Aggregate models"):
 * the statement that merges a batch's rows into an aggregate model's table,
 * inside the batch's own transaction, and the table's DDL. Pure functions of
 * the pipeline config (no I/O, no state), every name quoted with
 * fr_buf_sql_ident; snapshot-tested in tests/unit/test_loader_sql.c and run
 * against PostgreSQL in tests/module/test_aggregate.c. */
#ifndef FR_LOADER_AGGSQL_H
#define FR_LOADER_AGGSQL_H

#include <stdbool.h>

#include "config.h"
#include "util.h"

/* One statement: the rows of `src` (SQL text of a relation: fr_stage for a
 * batch; a SELECT of the dataset's table to fill the model from every
 * stored row) are visible to the model's
 * SQL under m->as; its output rows are grouped by the key with each
 * column's merge (rows with a null key column are left out) and upserted,
 * each column merging into the stored row of its key (config.h enum
 * fr_agg_merge). The result does not depend on how rows are split into
 * batches nor on their order. With `returning`, returns every written
 * row's key columns as text, in key order. */
void fr_aggsql_apply(struct fr_buf *s, const struct fr_model *m, const struct fr_dataset *ds, const char *src,
                     bool returning);

/* The DDL of an aggregate model's table: CREATE TABLE IF NOT EXISTS with
 * the primary key (alter false) or ALTER TABLE ... ADD COLUMN IF NOT EXISTS
 * of each column (alter true). A list column is an array of its type plus
 * "{name}__by", the array of its items' order values. */
void fr_aggsql_table(struct fr_buf *s, const struct fr_model *m, bool alter);

#endif
