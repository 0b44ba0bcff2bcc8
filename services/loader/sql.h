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

/* The ledger row of a batch: $1 batch id, $2 dataset qname, $3 rows, $4 raw
 * path, $5 raw sha256 ("" = none), $6 keys touched (text[] literal, NULL =
 * many); a row back = inserted, none = already loaded. */
#define FR_SQL_LEDGER_INSERT                                                                                         \
    "INSERT INTO freshet.batches (batch_id, dataset, rows, raw_path, raw_sha256, keys) "                             \
    "VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6::text[]) ON CONFLICT DO NOTHING RETURNING 1"
/* The ledger rows of a group of batches (group.c), one statement: $1
 * text[] batch ids, $2 the dataset, $3 int[] rows, $4 text[] raw paths, $5
 * text[] their SHA-256, $6 text[] each batch's keys as an array literal (or
 * NULL). One row back per batch inserted: fewer than the group's batches
 * means some were loaded already. */
#define FR_SQL_LEDGER_INSERT_MANY                                                                                    \
    "INSERT INTO freshet.batches (batch_id, dataset, rows, raw_path, raw_sha256, keys) "                             \
    "SELECT u.b, $2, u.r, NULLIF(u.p, ''), NULLIF(u.h, ''), u.k::text[] "                                            \
    "FROM unnest($1::text[], $3::integer[], $4::text[], $5::text[], $6::text[]) AS u(b, r, p, h, k) "                \
    "ON CONFLICT DO NOTHING RETURNING 1"
/* The data versions a batch changes, + 1, the last statement before its
 * COMMIT (so their row locks are held only for the commit, and loads of one
 * dataset in parallel are not serialized by them): $1 text[] of the dataset
 * and the aggregate models it wrote. Rows back: name, new version,
 * refreshed_at in epoch microseconds. */
#define FR_SQL_VERSIONS_BUMP                                                                                         \
    "INSERT INTO freshet.versions AS v (name, version, refreshed_at) SELECT n, 1, clock_timestamp() "                \
    "FROM unnest($1::text[]) n ON CONFLICT (name) DO UPDATE SET version = v.version + 1, "                           \
    "refreshed_at = clock_timestamp() RETURNING name, version, (extract(epoch FROM refreshed_at) * 1000000)::bigint"
/* The rows set aside by isolation: $1 batch id, $2 the rejected JSON array. */
#define FR_SQL_LEDGER_REJECTED "UPDATE freshet.batches SET rejected = $2::jsonb WHERE batch_id = $1"
/* A model's refresh lock (docs/scaling.md "Many loaders"): a session
 * advisory lock per model, $1 its state name ("{pipeline}.{model}"). Taken
 * (try, never waiting) before a refresh's first statement and before a full
 * cache resync reads the model, released once their cache writes are done:
 * refreshes and resyncs of one model never overlap across loaders, each
 * reads what the one before committed, and its cache writes follow the
 * previous one's. t = taken. */
/* The refresh connection's session, set on every connect (main.c): durable
 * commits whatever the server's default, and no JIT compilation. */
#define FR_SQL_REFRESH_SESSION "SELECT set_config('synchronous_commit', 'on', false), set_config('jit', 'off', false)"
#define FR_SQL_MODEL_TRYLOCK   "SELECT pg_try_advisory_lock(hashtextextended('freshet.model:' || $1, 0))"
#define FR_SQL_MODEL_UNLOCK    "SELECT pg_advisory_unlock(hashtextextended('freshet.model:' || $1, 0))"
/* Every model's last full-refresh day, as days since 1970-01-01. */
#define FR_SQL_MODEL_STATE_READ "SELECT model, (day - DATE '1970-01-01')::text FROM freshet.model_state"
/* A model's data version after a refresh: + 1 when $V (bool) says rows
 * changed; refreshed_at = now. Returns the version and refreshed_at (epoch
 * microseconds). */
#define FR__SQL_MODEL_VERSION(V)                                                                                     \
    "INSERT INTO freshet.versions AS v (name, version, refreshed_at) VALUES ($1, 1, now()) "                         \
    "ON CONFLICT (name) DO UPDATE SET version = v.version + CASE WHEN " V " THEN 1 ELSE 0 END, "                     \
    "refreshed_at = now() RETURNING version, (extract(epoch FROM refreshed_at) * 1000000)::bigint"
/* After a full refresh: $1 model state name ("{pipeline}.{model}", also its
 * version's name), $2 the day (date). A full refresh always bumps the
 * version (a crash between a refresh's commit and this statement must not
 * leave an old version on new data; the loader refreshes in full at start). */
#define FR_SQL_MODEL_STATE_FULL                                                                                      \
    "WITH fr_s AS (INSERT INTO freshet.model_state (model, day, refreshed_at) VALUES ($1, $2::date, now()) "         \
    "ON CONFLICT (model) DO UPDATE SET day = EXCLUDED.day, refreshed_at = "                                          \
    "EXCLUDED.refreshed_at) " FR__SQL_MODEL_VERSION("true")
/* After a refresh of some keys: $1 model state name (the day stays), $2
 * ("t"/"f") whether rows changed. */
#define FR_SQL_MODEL_STATE_KEYS                                                                                      \
    "WITH fr_s AS (INSERT INTO freshet.model_state (model, day, refreshed_at) VALUES ($1, NULL, now()) "             \
    "ON CONFLICT (model) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at) " FR__SQL_MODEL_VERSION("$2::bool")

/* CREATE TEMP TABLE fr_stage (LIKE the table, plus fr_row: the row's
 * 0-based index in the batch, counting from first_row) ON COMMIT DELETE
 * ROWS, in a DO block that first drops an fr_stage left on the connection
 * (another dataset's shape). */
void fr_sql_stage(struct fr_buf *s, const struct fr_dataset *ds, size_t first_row);

/* The same connection's next batch of the same dataset reuses its empty
 * fr_stage (no catalog work): $1 restarts fr_row at the batch's first row. */
#define FR_SQL_STAGE_RESET "SELECT setval(pg_get_serial_sequence('pg_temp.fr_stage', 'fr_row'), $1::bigint, false)"

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

/* A model's refresh, one statement: $1 text[] of keys, $2 now; `all`: the
 * statement of a full refresh, run with $1 NULL. Computes the model's SQL,
 * upserts the rows that changed, deletes the rows of the recomputed keys it
 * no longer yields (a keyed refresh of a composite-key model deletes none),
 * and returns deleted (bool), then every column as text. A full refresh
 * instead keeps those rows in the session's pg_temp.fr_changed
 * (FR_SQL_CHANGED_*: ids 1..n in order), read by fr_sql_model_page, so the
 * loader's memory does not grow with the model. */
void fr_sql_model_refresh(struct fr_buf *s, const struct fr_model *m, bool all);
/* Rows $1 < id <= $2 of pg_temp.fr_changed, shaped as a keyed refresh's
 * result (deleted, then every column as text). */
void fr_sql_model_page(struct fr_buf *s, const struct fr_model *m);

/* A cache resync reads its model through a cursor, in pages, inside one
 * transaction that also holds the cache's Redis keys found by SCAN
 * (pg_temp.fr_cachekeys, dropped at its end) (cache.c). */
#define FR_SQL_RESYNC_KEYS_CREATE "CREATE TEMP TABLE fr_cachekeys (k text) ON COMMIT DROP"
/* $1 text[]: a SCAN page's keys (the part after "{cache}:"). */
#define FR_SQL_RESYNC_KEYS_ADD "INSERT INTO pg_temp.fr_cachekeys SELECT unnest($1::text[])"
/* DECLARE fr_resync CURSOR FOR SELECT (the model's columns) FROM its table. */
void fr_sql_resync_declare(struct fr_buf *s, const struct fr_model *m);
/* DECLARE fr_resync CURSOR FOR the keys of pg_temp.fr_cachekeys that no row
 * of the model has in column key_col (compared as text, as the cache key
 * holds it): the stale keys. */
void fr_sql_resync_stale(struct fr_buf *s, const struct fr_model *m, size_t key_col);
/* Created on every connect of the refresh connection (main.c), emptied
 * before and after each full refresh. */
#define FR_SQL_CHANGED_CREATE                                                                                        \
    "CREATE TEMP TABLE fr_changed (id bigserial PRIMARY KEY, deleted bool NOT NULL, v text[] NOT NULL)"
#define FR_SQL_CHANGED_RESET "TRUNCATE pg_temp.fr_changed RESTART IDENTITY"

#endif
