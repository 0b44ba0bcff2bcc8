/* testsql: the SQL of a select model's data tests (docs/loader.md "Data
 * tests"): one read-only statement over the rows a refresh is about to
 * write. Pure function of the config (no I/O); snapshot-tested in
 * tests/unit/test_loader_sql.c. */
#ifndef FR_LOADER_TESTSQL_H
#define FR_LOADER_TESTSQL_H

#include "config.h"
#include "util.h"

/* At most this many failing rows come back (the report names them). */
#define FR_TESTSQL_MAX_FAILURES 100

/* $1 text[] of keys to recompute (NULL = all), $2 now, as the refresh:
 * computes the model's rows for those keys and returns (test name, the
 * row's key as text: one key column, or the columns joined by ',') for
 * every row failing a test, ordered, at most FR_TESTSQL_MAX_FAILURES.
 * unique compares the new rows with each other and with the stored rows
 * of the keys not recomputed. */
void fr_testsql_build(struct fr_buf *s, const struct fr_model *m);

#endif
