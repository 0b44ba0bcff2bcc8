/* config: the two kinds of configuration every daemon reads once at start
 * and never changes afterwards.
 *  - struct fr_settings: addresses, paths, clock, from the environment
 *    (README "Configuration") with flags overriding it.
 *  - struct fr_pipeline: a pipeline's YAML (pipelines/NAME/pipeline.yaml)
 *    with ${ENV} substitution and the SQL files it references, parsed with
 *    libyaml into immutable structs. Every error names file:line:col and
 *    the fix, and the daemon refuses to start. */
#ifndef FR_CONFIG_H
#define FR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Column types, same order as freshet.ColumnType in proto/freshet.proto. */
enum fr_type {
    FR_T_TEXT = 0,
    FR_T_INT,
    FR_T_BIGINT,
    FR_T_FLOAT,
    FR_T_NUMERIC,
    FR_T_BOOL,
    FR_T_TIMESTAMPTZ,
    FR_T_DATE,
    FR_T_JSON,
};
const char *fr_type_name(enum fr_type t); /* "text", "int", ... (YAML spelling) */
const char *fr_type_sql(enum fr_type t);  /* "text", "integer", "bigint", "double precision", ... */
bool fr_type_parse(const char *s, enum fr_type *out);

/* How a keyed upsert combines a new value with the stored one (merge rules
 * for partial rows, e.g. a session's end arriving before its start). Null
 * values never overwrite under min/max/keep. */
enum fr_merge {
    FR_MERGE_REPLACE = 0, /* the newer row's value (default) */
    FR_MERGE_MIN,         /* least of the two, nulls ignored */
    FR_MERGE_MAX,         /* greatest of the two, nulls ignored */
    FR_MERGE_KEEP,        /* the stored value unless it is null (first non-null wins) */
    FR_MERGE_COALESCE,    /* the newer value unless it is null */
};

struct fr_column {
    char *name; /* owned; [a-z_][a-z0-9_]* */
    enum fr_type type;
    bool required;   /* empty/missing value rejects the row */
    bool upper;      /* text: upper-case it before checks */
    uint32_t length; /* text: exact length in bytes, 0 = any */
    char **allowed;  /* owned: text values allowed, NULL = any */
    size_t n_allowed;
    enum fr_merge merge; /* keyed datasets: how an upsert combines values */
    char *references;    /* owned or NULL: dataset name (same pipeline) whose key this column holds;
                            a row pointing at a missing (or soft-deleted) row is rejected */
    bool unique;         /* no two live rows share a value: a conflicting row is rejected */
};

/* Schema drift policy of a dataset: what parsing does with a row whose
 * fields do not match the declared columns. Every case is reported (DLQ
 * entry and a batch.rejected/row event); none is a crash. */
enum fr_drift_action {
    FR_DRIFT_REJECT = 0, /* the row goes to the dead-letter stream, the rest loads */
    FR_DRIFT_NULL,       /* the field is loaded as null (missing/type) or dropped (extra) */
    FR_DRIFT_FAIL,       /* the whole batch (file or response) is rejected */
    FR_DRIFT_IGNORE,     /* extra fields only: silently dropped (default for extra) */
};

struct fr_drift {
    enum fr_drift_action missing; /* a required field is absent or empty; default reject */
    enum fr_drift_action type;    /* a value does not parse as its type; default reject */
    enum fr_drift_action extra;   /* a field (NDJSON/JSON key) not among the columns; default ignore */
};

struct fr_dataset {
    char *name;                /* owned: name inside the pipeline, "events" */
    char *qname;               /* owned: "{pipeline}.{name}", the stream/ledger name */
    char *table;               /* owned: SQL identifier, "players.events" (schema = pipeline) */
    struct fr_column *columns; /* owned */
    size_t n_columns;
    char **key; /* owned: key column names; n_key == 0 means append-only */
    size_t n_key;
    char *version; /* owned or NULL: upserts are monotonic on this column */
    uint32_t schema_version;
    int *key_index; /* owned: index in columns[] of each key column */
    struct fr_drift drift;
    /* Retention: rows whose greatest retention column is older than now -
     * retention_days are deleted (daily and after loads). 0 = keep forever. */
    char **retention_columns; /* owned */
    size_t n_retention_columns;
    uint32_t retention_days;
    char *soft_delete; /* owned or NULL: timestamptz column set by a soft DELETE; rows with it
                          set are "gone" (410) and do not satisfy references */
    /* Batch streams (docs/scaling.md "Partitioned streams"): 1 = one stream;
     * N = N streams, each on its own Redis Cluster slot. A file's rows go
     * to the stream of their key's hash (keyed datasets), of their
     * partition_col's hash (append-only with partition_by), else every
     * batch of a file to the stream of its inbound name's hash
     * (common/partition.h). */
    uint32_t partitions;
    int partition_col; /* append-only: index of the partition_by column, -1 = by file */
};

#define FR_DATASET_MAX_PARTITIONS 64u

/* Largest batch_bytes a source may ask for: a batch is flushed after the row
 * that crosses it, and the codec refuses batches over FR_BATCH_MAX_BYTES
 * (64 MiB), so the cap leaves room for one more row of the longest line. */
#define FR_SOURCE_MAX_BATCH_BYTES (32u << 20)
/* max_file_bytes of a file source: default and largest accepted. */
#define FR_SOURCE_DEFAULT_MAX_FILE_BYTES (1ull << 30)
#define FR_SOURCE_MAX_FILE_BYTES         (1ull << 40)

enum fr_source_kind {
    FR_SRC_FILE = 0,
    FR_SRC_PUSH,
    FR_SRC_HTTP_JSON,
};

enum fr_file_format {
    FR_FMT_CSV = 1u << 0,
    FR_FMT_NDJSON = 1u << 1,
    FR_FMT_JSON = 1u << 2,
};

struct fr_http_source; /* config_http.h */
struct fr_route;       /* config_route.h */

struct fr_source {
    char *name; /* owned */
    enum fr_source_kind kind;
    char *dataset; /* owned: dataset name inside the pipeline */
    /* file */
    char *dir;        /* owned: inbound dir relative to FRESHET_DATA_DIR, "inbound/players/events" */
    unsigned formats; /* FR_FMT_* bits */
    bool csv_header;  /* CSV files start with a header row (default true) */
    /* batching of good rows: flush at whichever comes first */
    uint32_t batch_rows;       /* default 50000 */
    uint32_t batch_bytes;      /* default 8 MiB */
    uint32_t batch_latency_ms; /* default 20 */
    uint32_t scan_interval_ms; /* rescan of the directory besides inotify, default 1000 */
    uint64_t max_file_bytes;   /* file: larger files go to rejected/ unread, default 1 GiB */
    /* http_json: URL, paging, fan-out, windows, rate limits, schedule */
    struct fr_http_source *http; /* owned, NULL unless kind == FR_SRC_HTTP_JSON */
};

/* A model is a SELECT materialised into a table and refreshed by key
 * (select), or maintained from each batch of one dataset in the batch's own
 * transaction (aggregate: docs/loader.md, "Aggregate models"). */
enum fr_model_kind {
    FR_MODEL_SELECT = 0,
    FR_MODEL_AGGREGATE,
};

/* How an aggregate model's column merges the batch's rows into the stored
 * row of their key. Every merge gives the same result whatever the order
 * and grouping of the rows into batches. */
enum fr_agg_merge {
    FR_AGG_KEY = 0, /* a key column */
    FR_AGG_SUM,     /* sum of the non-null values (null when none) */
    FR_AGG_COUNT,   /* number of non-null values */
    FR_AGG_MIN,
    FR_AGG_MAX,
    FR_AGG_LATEST, /* the value of the row with the greatest `by` (a max column); ties: the greatest value */
    FR_AGG_FIRST,  /* the value of the row with the least `by` (a min column); ties: the least value */
    FR_AGG_LIST,   /* values of the rows whose `by` is not null, newest first (by desc, value desc),
                      bounded by `limit` items and/or a `within` window below the newest `by` */
};

struct fr_agg_col {
    enum fr_agg_merge merge;
    int by;         /* latest/first/list: index in the model's columns of the order column, else -1 */
    uint32_t limit; /* list: at most this many items, 0 = no limit */
    int64_t within; /* list: keep items with by >= newest by - within; seconds when `by` is a timestamptz or
                       date, the column's units otherwise; 0 = no window */
};

/* A data test on a select model's rows, run on the keys each refresh
 * recomputes: a failing refresh is not applied (docs/loader.md "Data tests"). */
enum fr_model_test_kind {
    FR_TEST_NOT_NULL = 0, /* column is never null */
    FR_TEST_UNIQUE,       /* no two rows of the model share the column's value */
    FR_TEST_ACCEPTED,     /* column (as text) is one of values, or null */
    FR_TEST_RELATIONSHIP, /* column's value, when not null, is a `field` of the dataset or model `to` */
    FR_TEST_EXPRESSION,   /* a SQL boolean over the row's columns is true */
};

struct fr_model_test {
    enum fr_model_test_kind kind;
    char *name;    /* owned: how reports name it, "not_null(country)", "expression(...)" */
    char *column;  /* owned or NULL (expression) */
    char **values; /* owned: accepted values */
    size_t n_values;
    char *to_table; /* owned or NULL: relationships: the table of `to` ("players.events") */
    char *field;    /* owned or NULL: relationships: its column */
    char *expr;     /* owned or NULL: expression */
};

struct fr_model {
    char *name;                /* owned: "user_panel" */
    char *table;               /* owned: "players.user_panel" */
    struct fr_column *columns; /* owned: the model's output columns, in SELECT order */
    size_t n_columns;
    char **key; /* owned: key columns (incremental refresh by these) */
    size_t n_key;
    char **inputs; /* owned: dataset names whose batches make this model stale */
    size_t n_inputs;
    char *sql_path;       /* owned: path of the SQL file */
    char *sql;            /* owned: the SELECT. $1 is a text[] of keys to recompute
                             (NULL = all), $2 is "now" as timestamptz. */
    bool daily;           /* depends on "now": refresh everything when the UTC day turns */
    uint32_t coalesce_ms; /* wait this long for more batches before refreshing, default 50 */
    enum fr_model_kind kind;
    /* aggregate models: inputs is {from}; sql reads the batch's rows as `as` (no parameters) */
    char *from;                  /* owned or NULL: the dataset whose batches feed it */
    char *as;                    /* owned or NULL: name of the batch's rows in sql, default "batch" */
    struct fr_agg_col *agg;      /* owned or NULL: n_columns entries, how each column merges */
    uint32_t order;              /* position in dependency order: a model comes after every model it reads */
    struct fr_model_test *tests; /* owned: select models' data tests */
    size_t n_tests;
};

enum fr_cache_kind {
    FR_CACHE_HASH = 0, /* one field per column, absent field = null */
    FR_CACHE_JSON,     /* a string holding the row as a JSON object */
};

struct fr_cache {
    char *name;       /* owned: key prefix, "user_panel" -> "user_panel:{key}" */
    char *model;      /* owned: model (or dataset) name that fills it */
    char *key_column; /* owned */
    enum fr_cache_kind kind;
    uint32_t ttl_s; /* 0 = no expiry */
};

/* An export: a SQL query written to a file after the models it reads are
 * refreshed (the football summary CSV). */
struct fr_export {
    char *name;     /* owned */
    char *sql_path; /* owned */
    char *sql;      /* owned: a SELECT; $1 is "now" as timestamptz */
    char **after;   /* owned: dataset/model names whose refresh triggers it */
    size_t n_after;
    char *path;   /* owned: relative to FRESHET_DATA_DIR; "{ts}" becomes the UTC time, 20240617T120000Z */
    bool csv_raw; /* text cells as stored, without the formula guard (fr_buf_csv_value) */
};

struct fr_pipeline {
    char *name;     /* owned: "players"; also the SQL schema name */
    char *dir;      /* owned: the pipeline's directory */
    char *path;     /* owned: the YAML file */
    int64_t now_us; /* the pinned "now" (UTC µs), 0 = wall clock */
    struct fr_dataset *datasets;
    size_t n_datasets; /* owned */
    struct fr_source *sources;
    size_t n_sources; /* owned */
    struct fr_model *models;
    size_t n_models; /* owned */
    struct fr_cache *caches;
    size_t n_caches; /* owned */
    struct fr_export *exports;
    size_t n_exports; /* owned */
    struct fr_route *routes;
    size_t n_routes; /* owned (config_route.h) */
};

/* Loads pipelines/NAME/pipeline.yaml (or the YAML file at `path`).
 * ${VAR} and ${VAR:-default} are substituted from the environment; an unset
 * variable without a default is an error. Returns NULL and fills err with
 * "file:line:col: what is wrong; how to fix it".
 * `path` may be the pipeline directory or its YAML file; dir = the file's
 * directory. The pipeline name is the `pipeline:` key, else the directory's
 * name. Blocking (reads files): startup only. */
struct fr_pipeline *fr_pipeline_load(const char *path, char err[FR_ERR_LEN]);
/* Same, from a string (tests and fuzzing); `name` is used in messages (as
 * the FILE of "FILE:LINE:COL: ...") and SQL file paths are relative to
 * `dir`. YAML aliases and nesting deeper than 16 levels are rejected. */
struct fr_pipeline *fr_pipeline_parse(const char *yaml, size_t len, const char *name, const char *dir,
                                      char err[FR_ERR_LEN]);
void fr_pipeline_free(struct fr_pipeline *p);

const struct fr_dataset *fr_pipeline_dataset(const struct fr_pipeline *p, const char *name);
const struct fr_model *fr_pipeline_model(const struct fr_pipeline *p, const char *name);
const struct fr_cache *fr_pipeline_cache(const struct fr_pipeline *p, const char *name);
int fr_column_index(const struct fr_column *cols, size_t n, const char *name); /* -1 if absent */

/* Daemon settings. Each field is filled from (lowest wins last): default,
 * --config file, environment, command-line flag. An empty environment
 * variable counts as unset. */
struct fr_settings {
    char *redis_url;     /* owned: FRESHET_REDIS_URL, default redis://127.0.0.1:6379/0 */
    char *database_url;  /* owned: FRESHET_DATABASE_URL, default postgresql://freshet@127.0.0.1:5432/freshet */
    char *api_addr;      /* owned: FRESHET_API_ADDR, default 0.0.0.0:8000 */
    char *admin_addr;    /* owned: FRESHET_ADMIN_ADDR, metrics/health of ingest and loader;
                            default 127.0.0.1:9101 (ingest), :9102 (loader) */
    char *pipelines;     /* owned: FRESHET_PIPELINES, comma-separated; NULL = all */
    char *pipelines_dir; /* owned: FRESHET_PIPELINES_DIR, default "pipelines" */
    char *data_dir;      /* owned: FRESHET_DATA_DIR, default ./var */
    int64_t now_us;      /* FRESHET_NOW, 0 = unset */
    char *log_level;     /* owned: FRESHET_LOG_LEVEL, default info */
    char *config_path;   /* owned: --config FILE (YAML with the same keys in lower case), NULL = none */

    /* loader: retention of streams and dead letters (docs/architecture.md, Redis keys) */
    uint64_t dlq_max_entries;  /* FRESHET_DLQ_MAX_ENTRIES: dead letters kept per dataset, default 100000 */
    uint64_t dlq_max_age_s;    /* FRESHET_DLQ_MAX_AGE (30s, 15m, 12h, 7d): older ones are archived, default 7d */
    uint32_t trim_interval_ms; /* FRESHET_TRIM_INTERVAL_MS: trim and dead-letter bound period, default 5000 */

    /* api: PostgreSQL read replicas (services/api/readpool.h) */
    char *database_read_url; /* owned: FRESHET_DATABASE_READ_URL, comma-separated libpq URIs; NULL = none */
};
#define FR_SETTINGS_DLQ_MAX_ENTRIES 1000000000        /* bound of FRESHET_DLQ_MAX_ENTRIES */
#define FR_SETTINGS_DLQ_MAX_AGE_S   (3650ull * 86400) /* bound of FRESHET_DLQ_MAX_AGE */

enum fr_settings_result {
    FR_SETTINGS_OK = 0,
    FR_SETTINGS_EXIT_OK, /* --help or --version printed: exit 0 */
    FR_SETTINGS_ERROR,   /* err filled: exit 2 */
};

/* Parses environment then argv (--redis-url, --database-url, --api-addr,
 * --admin-addr, --pipelines, --pipelines-dir, --data-dir, --now, --log-level,
 * --config, --help, --version). `daemon` names the program in --help; `usage`
 * is extra help text for daemon-specific commands (may be NULL).
 * default_admin_addr is that daemon's admin port default. Unknown flags are
 * left for the caller in *rest (argv order kept).
 * Rest details: *rest_argv points into argv, whose entries 1.. are reordered
 * in place (no allocation); it excludes argv[0]; rest_argv[rest_argc] is NULL
 * when argv was NULL-terminated. Everything after "--" goes to rest. When
 * rest_argc/rest_argv are NULL, any unknown argument is an error.
 * --help and --version print to stdout. On FR_SETTINGS_OK the caller owns
 * *s (fr_settings_deinit); on the other results *s holds nothing (deinit is
 * still safe). */
enum fr_settings_result fr_settings_load(struct fr_settings *s, const char *daemon, const char *usage,
                                         const char *default_admin_addr, int argc, char **argv, int *rest_argc,
                                         char ***rest_argv, char err[FR_ERR_LEN]);
void fr_settings_deinit(struct fr_settings *s);

/* Loads the pipelines named by settings (all directories under
 * pipelines_dir holding pipeline.yaml when NULL). now_us of each pipeline is
 * overridden by settings->now_us when set. */
FR_MUST_CHECK int fr_pipelines_load_all(const struct fr_settings *s, struct fr_pipeline ***out, size_t *n,
                                        char err[FR_ERR_LEN]);
void fr_pipelines_free(struct fr_pipeline **ps, size_t n);

/* The pipeline's current time: now_us if pinned, else the wall clock. */
int64_t fr_pipeline_now(const struct fr_pipeline *p);

#endif
