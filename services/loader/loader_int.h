/* loader_int: internals shared by the files of freshet-loader: the one
 * struct loader (the daemon's state, reached from main.c's scheduler), the
 * stream/model/cache descriptors built from the pipelines at start, and the
 * cross-file functions (fr__loader_*). Loop thread only, everywhere. */
#ifndef FR_LOADER_INT_H
#define FR_LOADER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "app.h"
#include "batch.h"
#include "config.h"
#include "metrics.h"
#include "pg.h"
#include "redis.h"
#include "util.h"

#define LD_READ_COUNT 64 /* entries per stream per XREADGROUP */
#define LD_READ_BYTES                                                                                                \
    (8u << 20)                            /* aim of one read's total batch bytes (COUNT adapts; the                  \
                                              reply is held about 3 times: reader buffer, reply, copies) */
#define LD_BLOCK_MS          1000         /* XREADGROUP BLOCK */
#define LD_COPY_PART_BYTES   (256u << 10) /* a streamed COPY's part: encoded while the server parses the last */
#define LD_LOCKED_RETRY_MS   50           /* a model another loader is refreshing: try again after */
#define LD_POLL_MS           20     /* Redis Cluster, several streams: reads poll (no BLOCK) this often when idle */
#define LD_XREAD_TIMEOUT_MS  6000   /* command timeout of the stream connection (> block) */
#define LD_MAX_ATTEMPTS      5      /* failed loads of one entry before it is dead-lettered */
#define LD_RETRY_STEP_MS     200    /* backoff = step x attempts */
#define LD_CLAIM_EVERY_MS    10000  /* XAUTOCLAIM period */
#define LD_CLAIM_IDLE_MS     30000  /* default: entries idle longer than this are claimed */
#define LD_LAG_EVERY_MS      5000   /* loader_stream_lag sampling period */
#define LD_PAGE_ROWS         5000   /* a full refresh's changed rows are read and cached this many at a time */
#define LD_REFRESH_KEYS      5000   /* a keyed refresh takes at most this many touched keys; the rest wait */
#define LD_FULL_REFRESH_KEYS 50000  /* more touched keys than this: refresh the whole model */
#define LD_EVENT_KEYS        100    /* events list keys only up to this many */
#define LD_CACHE_GROUP       500    /* keys per MULTI/EXEC group */
#define LD_PG_TIMEOUT_MS     300000 /* per statement: full refreshes can be long */
#define LD_RETRY_MS          1000   /* retry of migrations / groups / refresh after an error */
#define LD_DLQ_RAW_MAX       4096   /* bytes of "raw" in a dead letter */
#define LD_ISOLATE_DEPTH     64     /* parts pending while bisecting: > log2(rows of a batch) + 1 */
#define LD_ISOLATE_PARTS     4096   /* parts one isolation may try; past it the batch fails whole */
#define LD_TRIM_ACKS         128    /* this many acks trim the streams before the interval is up ... */
#define LD_TRIM_MIN_MS       1000   /* ... at most this often */
#define LD_GROUP_ENTRIES     64     /* queued batches of one append-only stream loaded in one transaction ... */
#define LD_GROUP_ROWS        20000  /* ... holding at most this many rows ... */
#define LD_GROUP_BYTES       (4u << 20) /* ... and this many encoded bytes (group.c) */

struct loader;

/* A leaf job's completion (migration, model_state, groups, batch load,
 * model refresh, cache write or resync), called exactly once: status 0 ok,
 * -ENOTCONN connection lost, other < 0 error. The job knows nothing of who
 * scheduled it: main.c passes these and frees its slot in them. */
typedef void (*ld_done_cb)(struct loader *ld, int status);

/* ---- a set of strings (touched keys) ------------------------------------ */

/* Open addressing, owned copies. Iterate with: for i < cap, if slots[i]. */
struct fr_keyset {
    char **slots; /* owned: cap entries, NULL = empty; each an owned NUL-terminated string */
    size_t cap;   /* power of two, 0 before the first add */
    size_t n;     /* strings held */
};
void fr__keyset_init(struct fr_keyset *s);
void fr__keyset_deinit(struct fr_keyset *s);
void fr__keyset_clear(struct fr_keyset *s);
/* Adds a copy of s[0..len); true if it was not there yet. */
bool fr__keyset_add(struct fr_keyset *s, const char *k, size_t len);
bool fr__keyset_has(const struct fr_keyset *s, const char *k, size_t len);
/* Moves every string of `from` into `to` (from ends empty). */
void fr__keyset_merge(struct fr_keyset *to, struct fr_keyset *from);
/* Moves up to max keys of `from` into `to` (keys not in `to`), in the
 * order of their hash from *cursor (kept by the caller, 0 at first), which
 * it moves on: successive takes go round every key, so none waits more
 * than about from->n / max takes. */
void fr__keyset_take(struct fr_keyset *to, struct fr_keyset *from, size_t max, uint32_t *cursor);

/* ---- a copied result set ------------------------------------------------ */

/* Rows copied out of a PGresult (results are only borrowed in callbacks). */
struct ld_rows {
    size_t n_rows;
    size_t n_cols;
    struct fr_buf data; /* owned: every value, NUL-terminated, back to back */
    size_t *off;        /* owned: n_rows*n_cols offsets into data */
    int *len;           /* owned: n_rows*n_cols lengths, -1 = SQL null */
    bool *deleted;      /* owned: per row; true = key deleted from the model */
};
/* Copies res; when flag_col, column 0 is a boolean "deleted" flag ('t'/'f')
 * and is not part of the copied columns. */
void fr__rows_from_result(struct ld_rows *r, const PGresult *res, bool flag_col);
void fr__rows_deinit(struct ld_rows *r);
static inline const char *fr__rows_val(const struct ld_rows *r, size_t row, size_t col, int *len)
{
    size_t i = row * r->n_cols + col;
    *len = r->len[i];
    return r->len[i] < 0 ? NULL : r->data.data + r->off[i];
}

/* ---- SQL and JSON helpers ----------------------------------------------- */

/* Appends one element of a PostgreSQL array literal: "v" quoted and
 * escaped, or NULL; a comma before it unless first. */
void fr__sql_array_elem(struct fr_buf *b, const char *v, bool first);
/* Appends the elements as a PostgreSQL array literal {"a","b"}. */
void fr__sql_text_array(struct fr_buf *b, const struct fr_keyset *keys);
/* Appends ,"keys":[...] when 0 < n <= LD_EVENT_KEYS. */
void fr__json_keys(struct fr_buf *b, const char *field, const struct fr_keyset *keys);

/* ---- configuration views ------------------------------------------------- */

struct ld_stream {
    struct loader *ld;           /* borrowed: back pointer */
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_dataset *ds; /* borrowed */
    char *key;                   /* owned: "fr:stream:{qname}" */
    char *dlq;                   /* owned: "fr:dlq:{qname}" */
    unsigned part;               /* stream partition (fr_names_stream_part); 0 also owns the
                                    dataset's retention and dead-letter bounding */
    unsigned n_parts;            /* the dataset's partitions (streams), >= 1 */
    int64_t lag_now;             /* this partition's lag + pending (m_lag sums the partitions) */
    char *fail_id;               /* owned or NULL: entry whose load failed last */
    char *fail_reason;           /* owned or NULL: its last error */
    unsigned attempts;           /* failed loads of fail_id */
    uint64_t *m_loaded;          /* borrowed from the registry: loader_batches_total{result=loaded} */
    uint64_t *m_duplicate;
    uint64_t *m_failed;
    uint64_t *m_dead;
    uint64_t *m_rows;       /* loader_rows_total */
    int64_t *m_lag;         /* loader_stream_lag */
    uint64_t *m_trimmed;    /* loader_stream_trimmed_total: acknowledged entries trimmed */
    uint64_t *m_archived;   /* loader_dlq_archived_total: dead letters archived to files, then trimmed */
    struct ld_model **aggs; /* owned array of borrowed: aggregate models fed by its batches */
    size_t n_aggs;
    int32_t retain_day;      /* UTC day of the last full retention run, INT32_MIN = none yet */
    int32_t retain_next_day; /* day of the run in flight */
};

/* A pipeline export, pending after a refresh/load of one of its `after`. */
struct ld_export {
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_export *x;   /* borrowed */
    bool pending;
};

struct ld_cache;

struct ld_model {
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_model *m;    /* borrowed */
    char *state_name;            /* owned: "{pipeline}.{model}", key of freshet.model_state */
    char *refresh_sql;           /* owned: the keyed refresh's CTE statement (sql.c) */
    char *refresh_all_sql;       /* owned: the full refresh's */
    char *page_sql;              /* owned: a page of the full refresh's changed rows */
    int key_col;                 /* index in m->columns of the single key column, -1 when composite */
    struct fr_keyset touched;    /* keys to recompute */
    uint32_t take_cursor;        /* where the next take of touched starts (fr__keyset_take) */
    bool all;                    /* recompute everything (day turn, start, too many keys) */
    uint64_t first_touch_ms;     /* monotonic, 0 = nothing pending */
    uint64_t last_touch_ms;
    uint64_t retry_at_ms;      /* after a failed refresh, 0 = none */
    uint64_t last_cost_ms;     /* duration of the last refresh (SQL + cache writes) */
    uint64_t last_end_ms;      /* monotonic end of the last refresh, 0 = none */
    char *test_sql;            /* owned or NULL: the data tests' statement (testsql.c) */
    bool hold;                 /* its data tests failed: not due until something touches it again */
    uint64_t *m_test_failures; /* model_test_failures_total{model} */
    int32_t day;               /* UTC day (days since epoch) of the last full refresh, INT32_MIN = unknown */
    struct ld_cache **caches;  /* owned array of borrowed: caches filled from this model */
    size_t n_caches;
    struct fr_histogram *m_secs; /* model_refresh_seconds{model} */
    uint64_t agg_session;        /* aggregate: ld->pg_session its apply statement is PREPAREd in (load.c) */
};

struct ld_cache {
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_cache *c;    /* borrowed */
    struct ld_model *model;      /* borrowed */
    int key_col;                 /* index in the model's columns */
    bool need_resync;            /* write every key and drop stale ones */
    bool fields_known;           /* a hash cache on a cluster: every key holds only model columns
                                    (fr_names_cache_fields matched, or a resync wrote every key) */
};

/* ---- the per-batch load (load.c) ----------------------------------------- */

enum ld_load_state {
    LOAD_IDLE = 0,
    LOAD_BEGIN,    /* BEGIN sent */
    LOAD_LEDGER,   /* INSERT INTO freshet.batches ... RETURNING sent */
    LOAD_STAGE,    /* fr_stage created, or reused and reset (staged batches) */
    LOAD_COPY,     /* COPY ... FROM STDIN sent */
    LOAD_CHECK,    /* per-row constraints: bad rows out of the stage, into the ledger row */
    LOAD_ROWDLQ,   /* XADD fr:dlq:* of each rejected row sent (before COMMIT: at least once) */
    LOAD_MERGE,    /* INSERT .. ON CONFLICT / DELETE / soft-delete UPDATE from the stage sent */
    LOAD_RETAIN,   /* retention of the batch's keys sent */
    LOAD_COMMIT,   /* COMMIT sent */
    LOAD_ROLLBACK, /* ROLLBACK sent (duplicate or error) */
    LOAD_DLQ,      /* XADD fr:dlq:* sent */
    LOAD_ACK,      /* XACK sent */
    LOAD_DONE,
    /* isolation (load.c): after a data error the batch is loaded again in
     * parts, one savepoint each, bisecting down to the rows at fault */
    LOAD_SAVEPOINT,    /* SAVEPOINT fr_part sent */
    LOAD_PART_UNDO,    /* ROLLBACK TO SAVEPOINT fr_part sent (the part failed) */
    LOAD_PART_DROP,    /* DROP TABLE fr_stage sent (the part loaded) */
    LOAD_PART_RELEASE, /* RELEASE SAVEPOINT fr_part sent */
    LOAD_REJECTS,      /* UPDATE freshet.batches SET rejected sent (every part done) */
    LOAD_AGGREGATE,    /* the staged rows merged into aggregate model agg_i sent */
};

enum ld_outcome {
    LD_OUT_LOADED = 0, /* committed (and acked unless redis_lost) */
    LD_OUT_DUPLICATE,  /* already in the ledger: acked */
    LD_OUT_FAILED,     /* PG refused it: rolled back, left pending, retry later */
    LD_OUT_DEAD,       /* dead-lettered and acked */
    LD_OUT_PG_LOST,    /* PostgreSQL connection lost: left pending */
    LD_OUT_REDIS_LOST, /* Redis lost during DLQ/ack: left pending */
    LD_OUT_SPLIT,      /* a group's transaction did not commit (error, duplicate): rolled back, its
                          entries go back to the queue to load one by one (group.c) */
};

/* One stream entry, copied out of the XREADGROUP reply. */
struct ld_entry {
    struct ld_entry *next; /* owned: queue link */
    struct ld_stream *st;  /* borrowed */
    char *id;              /* owned: stream entry id */
    char *batch_id;        /* owned or NULL: the entry's "id" field */
    char *batch;           /* owned or NULL (entry deleted from the stream) */
    size_t batch_len;
    size_t rows; /* the entry's "rows" field, 0 = absent (only sizes groups) */
    bool single; /* load it alone: a group it was in did not commit */
};
void fr__entry_free(struct ld_entry *e);

struct ld_load {
    struct loader *ld; /* borrowed: back pointer */
    enum ld_load_state state;
    enum ld_load_state prev;    /* state before the current one (logs) */
    enum ld_load_state rb_next; /* after ROLLBACK: LOAD_ACK (duplicate) or LOAD_DONE/LOAD_DLQ */
    struct ld_entry *e;         /* owned while running: the batch, or the first of a group (e->next ...) */
    ld_done_cb done;            /* called once when the load ends (status 0; the outcome is here) */
    fr_batch_t *b;              /* owned or NULL (undecodable) */
    const char **cols;          /* owned or NULL: b's column names (borrowed from b), for sql.c */
    enum ld_outcome outcome;
    bool ack_lost;         /* committed, but the XACK got no reply (Redis lost) */
    bool keyed;            /* dataset has a key */
    bool staged;           /* rows go through fr_stage: keyed, or aggregate models read them */
    size_t agg_i;          /* LOAD_AGGREGATE: index in st->aggs */
    char reason[1024];     /* why it failed / was dead-lettered */
    uint64_t t0_ns;        /* start, for loader_batch_seconds */
    struct fr_keyset keys; /* distinct dataset/model keys for batch.loaded */
    int64_t version;       /* the dataset's data version this batch made (ledger), 0 = unknown */
    int64_t version_us;    /* and its refreshed_at, epoch microseconds */
    struct fr_buf aggv;    /* "name":version, ... of the aggregate models it wrote (batch.loaded) */
    bool version_failed;   /* LOAD_COMMIT: raising the versions failed (the COMMIT rolled back) */
    bool prepare_failed;   /* LOAD_AGGREGATE: its PREPARE failed (reason holds why) */
    struct ld_rows rej;    /* rows rejected by LOAD_CHECK: fr_row, field, value, kind, reason */
    size_t dlq_out;        /* LOAD_ROWDLQ: replies awaited */
    bool dlq_failed;       /* LOAD_ROWDLQ: a reply was NULL or an error */
    /* isolation (load.c, "Rows at fault"): */
    bool isolate;                     /* loading in parts after a data error */
    size_t lo, hi;                    /* rows [lo, hi) of the batch being loaded (all of it unless isolating) */
    size_t copy_next;                 /* LOAD_COPY: the next row to encode for the streamed COPY */
    size_t todo_lo[LD_ISOLATE_DEPTH]; /* parts still to load, a stack: lowest rows on top */
    size_t todo_hi[LD_ISOLATE_DEPTH];
    size_t n_todo;
    size_t parts;            /* parts tried */
    struct ld_rows part_rej; /* LOAD_CHECK's rejects of the current part, into rej once it loads */
    char fault_col[64];      /* column the server named in the current part's error, "" = none */
    /* a group (group.c): n_group > 1 batches of one append-only stream in one transaction */
    fr_batch_t **gb;  /* owned or NULL: the group's decoded batches, gb[0] == b (borrowed there) */
    size_t n_group;   /* batches in this load, 1 unless grouped */
    size_t copy_b;    /* LOAD_COPY of a group: the batch being encoded */
    size_t acks_out;  /* LOAD_ACK of a group: XACK replies awaited */
    bool acks_failed; /* LOAD_ACK of a group: a reply was NULL or an error */
};
/* Starts loading entry e (ownership taken). done(ld, 0) fires once at the
 * end, maybe before this returns; ld->load.outcome says how it went. */
void fr__load_start(struct loader *ld, struct ld_entry *e, ld_done_cb done);
const char *fr__load_state_name(enum ld_load_state s);
/* The main connection is new, or the tables may have changed (a migration
 * ran): the loads' per-session state (fr_stage, PREPAREd statements) is gone. */
void fr__load_new_session(struct loader *ld);

/* ---- load groups (group.c) -------------------------------------------------------- */

/* Takes the next load off the queue: its head entry, and when that entry's
 * stream is append-only and plain (no constraints, no retention), the queued
 * entries of the same stream right after it, up to LD_GROUP_ENTRIES,
 * LD_GROUP_ROWS and LD_GROUP_BYTES, chained by e->next. NULL when empty. */
struct ld_entry *fr__group_take(struct loader *ld);
/* Puts a chain of entries back at the head of the queue, in order; single:
 * each is then loaded alone. */
void fr__group_return(struct loader *ld, struct ld_entry *chain, bool single);
/* True when batch b may join a group led by batch `head` of the same stream. */
bool fr__group_fits(const fr_batch_t *head, const fr_batch_t *b);

/* ---- model refresh and caches (model.c, cache.c) -------------------------- */

struct ld_refresh {
    struct ld_model *model; /* borrowed: model being refreshed */
    struct fr_keyset keys;  /* keys being recomputed (moved from model->touched) */
    bool all;               /* NULL keys */
    struct ld_rows rows;    /* changed / deleted rows (a full refresh: the current page) */
    size_t changed;         /* a full refresh: rows in pg_temp.fr_changed */
    size_t page_from;       /* a full refresh: the next page's rows are ids page_from + 1.. */
    bool txn;               /* in the transaction of a model with data tests (BEGIN sent) */
    char *keys_arr;         /* owned or NULL: $1 while the tests run */
    int64_t version;        /* the model's data version after it (freshet.versions), 0 = unknown */
    int64_t version_us;     /* and its refreshed_at, epoch microseconds */
    size_t cache_i;         /* next cache of the model to write */
    uint64_t t0_ns;
    int32_t day;           /* day of "now" used */
    char now[32];          /* "now" passed as $2 */
    ld_done_cb done;       /* called once when the refresh (and its cache writes) ends */
    ld_done_cb outer_done; /* the caller's done: done releases the model lock first */
    bool locked;           /* holds the model's refresh lock (FR_SQL_MODEL_TRYLOCK) on refresh_pg */
};

/* Cache writer/resync job. */
struct ld_cachew {
    struct loader *ld;          /* borrowed */
    struct ld_cache *cache;     /* borrowed */
    const struct ld_rows *rows; /* borrowed (write) or &own_rows (resync) */
    struct ld_rows own_rows;    /* resync: the current page of the model (LD_PAGE_ROWS rows at most) */
    size_t next;                /* next row to write */
    size_t outstanding;         /* replies awaited in the current group */
    bool failed;                /* a reply came back NULL (Redis lost) */
    bool resync;                /* full resync mode */
    bool txn;                   /* resync: its transaction on app->pg is open (cursor, fr_cachekeys) */
    bool last_page;             /* resync: own_rows is the model's last page */
    size_t total;               /* resync: rows written */
    size_t stale;               /* resync: stale keys deleted */
    bool scanning;              /* resync: SCAN started */
    char *cursor;               /* owned: SCAN cursor */
    uint64_t start_ns;          /* resync: monotonic start, for the log line */
    bool locked;                /* resync: holds the model's refresh lock on app->pg */
    bool fields_known;          /* a key's fields are model columns only: a full row may be one HSET */
    ld_done_cb done;
};
/* Writes rows (changed rows, or deleted keys when rows->deleted) of the
 * model into cache c, MULTI/EXEC groups, pipelined. done(ld, 0 | -EIO). */
void fr__cache_write(struct loader *ld, struct ld_cache *c, const struct ld_rows *rows, ld_done_cb done);
/* Full resync of one cache (SELECT the model, write every key, delete stale
 * keys, publish cache.refreshed all). done(ld, 0 | -EIO | -EPROTO). */
void fr__cache_resync(struct loader *ld, struct ld_cache *c, ld_done_cb done);

/* Starts a refresh of model m (its touched keys or all) on ld->refresh_pg,
 * then writes its caches through ld->cw. done(ld, 0 | -ENOTCONN | -EIO)
 * fires once, maybe before this returns; a failed refresh has put its keys
 * back and set m->retry_at_ms. */
void fr__model_refresh(struct loader *ld, struct ld_model *m, ld_done_cb done);
/* Builds m->refresh_sql, refresh_all_sql and test_sql. */
void fr__model_build_sql(struct ld_model *m);
/* Adds the keys batch b touches to every model fed by its dataset. */
void fr__model_touch(struct loader *ld, const struct ld_stream *st, const fr_batch_t *b);
/* Every model fed by the dataset of st must be recomputed in full (restore,
 * retention). */
void fr__model_touch_all(struct loader *ld, const struct ld_stream *st);
/* True when a model refresh is due now; *wait_ms gets the time until the
 * next one otherwise (UINT64_MAX = none pending). */
struct ld_model *fr__model_due(struct loader *ld, bool stream_idle, uint64_t *wait_ms);
/* Day-turn check (1 s tick). */
void fr__model_day_check(struct loader *ld);
/* Loads freshet.model_state, then marks every model for a full refresh.
 * done(ld, 0 | -ENOTCONN | -EIO) fires once. */
void fr__model_load_state(struct loader *ld, ld_done_cb done);

/* ---- exports and daily retention (export.c) ---------------------------------- */

/* A model or dataset `name` of pipeline p changed: its exports are due. */
void fr__export_touch(struct loader *ld, const struct fr_pipeline *p, const char *name);
/* Starts one upkeep job (a due export, else a due daily retention) in the
 * refresh slot; true when started (ld->refreshing set; completion
 * fr__loader_job_done(ld, JOB_REFRESH, ...)). */
bool fr__upkeep_start(struct loader *ld);

/* ---- commands (command.c) ----------------------------------------------------- */

/* Runs `backup ...` or `restore ...` (argv[0] is the command), blocking;
 * returns the exit code. The app's clients are never started. */
int fr__loader_command(struct fr_app *app, int argc, char **argv);

/* ---- migrations (migrate.c) ------------------------------------------------ */

struct ld_migrate {
    char **sql; /* owned: statements, BEGIN .. COMMIT */
    size_t n;
    size_t i;          /* statement in flight */
    bool rolling_back; /* ROLLBACK after an error is in flight */
    ld_done_cb done;   /* called once when the migration ends */
};

/* Runs the idempotent migrations in one transaction. done(ld, 0 | -EIO (PG
 * error) | -ENOTCONN) fires once, maybe before this returns. */
void fr__migrate_start(struct loader *ld, ld_done_cb done);

/* ---- stream consumption (consume.c) ---------------------------------------- */

/* XGROUP CREATE of every stream; done(ld, 0 | -ENOTCONN | -EIO) fires once. */
void fr__consume_groups(struct loader *ld, ld_done_cb done);
/* One XREADGROUP on the stream connection; `ahead`: a read ahead beside a
 * load, which never blocks (it must not hold the connection from the
 * pending read a failed load asks for). */
void fr__consume_read(struct loader *ld, bool ahead);
void fr__consume_claim(struct loader *ld); /* XAUTOCLAIM every stream */
void fr__consume_sample_lag(struct loader *ld);
/* XACK st id. cb fires once (NULL reply = Redis lost). */
FR_MUST_CHECK int fr__consume_ack(struct loader *ld, struct ld_stream *st, const char *id, fr_redis_cb cb,
                                  void *data);
/* XADD fr:dlq:{qname} * kind batch entry <stream entry id> batch <id> file <raw path> line 0 reason <r>
 * raw <bytes, at most LD_DLQ_RAW_MAX> payload <the stream entry's batch bytes, whole>. */
FR_MUST_CHECK int fr__consume_dlq(struct loader *ld, struct ld_stream *st, const char *entry_id, const char *batch_id,
                                  const char *file, const char *reason, const char *raw, size_t raw_len,
                                  const char *payload, size_t payload_len, fr_redis_cb cb, void *data);

/* ---- retention (trim.c) ------------------------------------------------------ */

struct ld_dlqjob;
/* One round of XTRIM MINID of every batch stream below what every consumer
 * group has acknowledged; does nothing while the last round runs. */
void fr__trim_streams(struct loader *ld);
/* Bounds every dead-letter stream (FRESHET_DLQ_MAX_ENTRIES/_AGE): archive
 * to {data dir}/archive/dlq/{qname}/{day}.ndjson (fsync), then XTRIM. One
 * run at a time (ld->dlq); does nothing while one runs. */
void fr__trim_dlq(struct loader *ld);

/* ---- the daemon ------------------------------------------------------------- */

/* ld->job holds the exclusive jobs and the batch load; a model refresh has
 * its own slot (ld->refreshing, on ld->refresh_pg) and may overlap a load,
 * but never an exclusive job (migrate, state, groups, resync). */
enum ld_job {
    JOB_NONE = 0,
    JOB_MIGRATE,
    JOB_STATE, /* loading freshet.model_state */
    JOB_GROUPS,
    JOB_LOAD,
    JOB_REFRESH, /* only as fr__loader_job_done's argument: never in ld->job */
    JOB_RESYNC,
};

struct loader {
    struct fr_app *app;                 /* borrowed */
    fr_redis_t *xread;                  /* owned: blocking stream reads only */
    fr_pg_t *refresh_pg;                /* owned: model refreshes and their model_state updates */
    const struct fr_dataset *stage_for; /* the dataset whose empty fr_stage the main connection holds (load.c) */
    uint64_t pg_session;                /* counts the main connection's sessions (fr__load_new_session) */
    char consumer[256];                 /* consumer name in the group */
    uint32_t claim_idle_ms;             /* FRESHET_CLAIM_IDLE_MS: claim other consumers' entries idle this long */
    uint32_t claim_every_ms;            /* XAUTOCLAIM period: min(LD_CLAIM_EVERY_MS, claim_idle_ms / 2) */
    struct ld_stream *streams;          /* owned */
    size_t n_streams;
    struct ld_model *models; /* owned */
    size_t n_models;
    struct ld_cache *caches; /* owned */
    size_t n_caches;

    struct fr_ldstatus *status; /* owned: status key writer (status.c); NULL before start */

    struct ld_export *exports; /* owned */
    size_t n_exports;
    struct ld_export *export_run; /* borrowed: export in the refresh slot */
    struct ld_stream *retain_run; /* borrowed: daily retention in the refresh slot */

    struct ld_entry *q_head; /* owned: entries read, not yet loaded */
    struct ld_entry *q_tail; /* borrowed */
    size_t q_len;
    bool reading;              /* an XREADGROUP is outstanding */
    bool read_ahead_sent;      /* the load in flight has had its read ahead (one a load) */
    bool read_pending;         /* next read uses id 0 (our pending entries) */
    uint64_t pending_gen;      /* bumped each time read_pending is asked for */
    bool last_read_full;       /* the last read returned COUNT entries for some stream */
    bool read_new_once;        /* a read of new entries (">") has completed since start */
    unsigned read_count;       /* COUNT of the next read, 1..LD_READ_COUNT */
    uint64_t read_gen;         /* bumped when the queue is dropped: stale reads are ignored */
    size_t groups_outstanding; /* XGROUP CREATE replies awaited */
    int groups_status;         /* 0, or the first failure of the groups job */
    ld_done_cb groups_done;    /* the groups job's completion */
    ld_done_cb state_done;     /* the model_state load's completion */

    bool pg_up;                /* app->pg connected */
    bool refresh_pg_up;        /* refresh_pg connected */
    bool redis_up;             /* app->redis connected */
    bool xread_up;             /* xread connected */
    bool need_migrate;         /* migrations before any batch */
    bool need_state;           /* load freshet.model_state */
    bool need_groups;          /* XGROUP CREATE */
    bool started;              /* first migration done */
    enum ld_job job;           /* the exclusive job or the batch load running */
    bool refreshing;           /* a model refresh is running (ld->refresh, on refresh_pg) */
    uint64_t backoff_until_ms; /* no load/read before this (monotonic ms) */
    uint64_t retry_at_ms;      /* migrations/groups retry not before this */

    bool draining;             /* SIGTERM: finish in flight, then stop */
    bool closed;               /* handles closed, app shut down */
    size_t crash_after_commit; /* FRESHET_TEST_CRASH_AFTER_COMMIT=n: die after a COMMIT of >= n batches, 0 = off */

    uv_timer_t tick; /* 1 s: day turn, claim, lag */
    uv_timer_t wake; /* runs the scheduler (0 ms kick or a wait) */
    uint64_t last_claim_ms;
    uint64_t last_lag_ms;
    uint64_t last_refresh_ms;  /* end of the last model refresh */
    uint64_t last_trim_ms;     /* start of the last retention round (trim.c) */
    size_t trims_out;          /* streams whose trim round is in flight */
    uint64_t acks_since_trim;  /* entries this loader acknowledged since the last ack-triggered round */
    uint64_t last_ack_trim_ms; /* start of the last ack-triggered stream trim round */
    struct ld_dlqjob *dlq;     /* owned or NULL: the dead-letter bound run in flight (frees itself) */

    struct ld_migrate mig;         /* the migration in flight */
    struct ld_load load;           /* the batch in flight */
    struct ld_refresh refresh;     /* the model refresh in flight */
    struct ld_cachew cw;           /* the refresh's cache write or the resync in flight (never both) */
    struct ld_cache *resync_cache; /* borrowed: cache being resynced */

    struct fr_histogram *m_batch_secs; /* loader_batch_seconds */
    uint64_t *m_cache_keys;            /* cache_keys_written_total */
    uint64_t *m_retries;               /* loader_retries_total */
};

/* Asks for a read of our pending entries (a pending read already in flight
 * may have missed what made us ask). */
static inline void fr__want_pending(struct loader *ld)
{
    ld->read_pending = true;
    ld->pending_gen++;
}

/* True once the loader or the app is shutting down: callbacks then return
 * without touching anything (app->pg / app->redis may be NULL already). */
static inline bool fr__loader_gone(const struct loader *ld)
{
    return ld->closed || !ld->app->pg || !ld->app->redis;
}

/* Runs the scheduler on the next loop turn. */
void fr__loader_kick(struct loader *ld);
/* A job ended: frees its slot (ld->job, or ld->refreshing for
 * JOB_REFRESH). status 0 ok, -ENOTCONN connection lost, other < 0 error
 * (retried later). Only export.c's upkeep jobs call it by name (JOB_REFRESH);
 * every other job gets its completion as a done callback. */
void fr__loader_job_done(struct loader *ld, enum ld_job job, int status);
/* PUBLISH fr:events json (fire and forget). */
void fr__loader_publish(struct loader *ld, const struct fr_buf *json);
/* Appends {"type":"<type>","ts":"<now>" (no closing brace). */
void fr__event_begin(struct fr_buf *b, const char *type);
/* The connection state callbacks note losses here. */
void fr__loader_pg_lost(struct loader *ld);
void fr__loader_redis_lost(struct loader *ld);

#endif
