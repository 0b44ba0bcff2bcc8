/* config_route: the routes section of a pipeline (docs/routes.md): method,
 * path with typed parameters, the handler and the output. Parsed once at
 * start into immutable structs the api compiles into its route table. */
#ifndef FR_CONFIG_ROUTE_H
#define FR_CONFIG_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

enum fr_route_handler {
    FR_RH_SQL = 0,
    FR_RH_STATIC,
    FR_RH_CACHE_FIELD,
    FR_RH_CACHE_HASH,
    FR_RH_CACHE_MULTI,
    FR_RH_PUSH,
    FR_RH_CRUD, /* a resource: list, get, POST, POST /bulk, PUT, PATCH, DELETE under the path */
};

enum fr_route_shape {
    FR_SHAPE_LIST = 0, /* [rows] */
    FR_SHAPE_ONE,      /* first row, 404 when none */
    FR_SHAPE_ENVELOPE, /* {"items": [rows], "count": n} */
    FR_SHAPE_VALUE,    /* first column of the first row, as is */
};

enum fr_param_in {
    FR_PARAM_PATH = 0,
    FR_PARAM_QUERY,
};

struct fr_route_param {
    char *name; /* owned */
    enum fr_param_in in;
    enum fr_type type;
    bool required;
    char *def; /* owned or NULL: default text ("now_year" = the pipeline's current year) */
    bool has_min, has_max;
    int64_t min, max;                /* int/bigint bounds */
    uint32_t min_length, max_length; /* text, in bytes; max 0 = 256 */
    char *pattern;                   /* owned or NULL: POSIX extended regex the text must match */
    char **allowed;                  /* owned: allowed text values */
    size_t n_allowed;
    bool upper, lower; /* text: case folding before checks */
    char *suffix;      /* owned or NULL: appended to text when missing (btc -> BTCUSDT) */
};

struct fr_route_check {
    int a, b;  /* param indexes: 422 when both present and a > b */
    char *msg; /* owned */
};

struct fr_route {
    char *name;       /* owned */
    char *method;     /* owned: "GET", ... */
    char *path;       /* owned: "/ohlc/{symbol}" */
    char *summary;    /* owned or NULL */
    char *role;       /* owned: read | write | admin (crud: the role of its reads, list and item GET) */
    char *role_write; /* owned: crud: the role of its writes (POST, bulk, PUT, PATCH, DELETE); else NULL */
    char **segs;      /* owned: path split at '/', "{x}" kept for parameters */
    size_t n_segs;
    struct fr_route_param *params; /* owned */
    size_t n_params;
    struct fr_route_check *checks; /* owned */
    size_t n_checks;
    enum fr_route_handler handler;
    char *sql; /* owned: sql handler's SELECT, or static body */
    int *args; /* owned: param index per $n */
    size_t n_args;
    char *exists;     /* owned or NULL: 404 check */
    int *exists_args; /* owned */
    size_t n_exists_args;
    char *cache;       /* owned: cache_* handlers */
    char *key_param;   /* owned: cache_field / cache_hash: the param holding the key */
    char *field_param; /* owned: cache_field: the param naming the field */
    char *body_keys;   /* owned: cache_multi: body member listing the keys ("{key column}s") */
    char *body_fields; /* owned: cache_multi: body member listing the fields ("attribute_names") */
    char *dataset;     /* owned: push */
    uint32_t min_rows, max_rows;
    bool partial;
    enum fr_route_shape shape;
    bool json, csv;    /* formats */
    char *not_found;   /* owned or NULL */
    char **csv_header; /* owned or NULL: CSV column labels, one per result column (default: column names) */
    size_t n_csv_header;
    bool csv_lf;        /* CSV lines end with LF (as exports write them), not CRLF */
    bool csv_raw;       /* output.csv_raw: CSV text cells as stored, without the formula guard */
    uint32_t max_age_s; /* max_age: data behind an answer older than this is reported; 0 = never */
};

int fr_route_param_index(const struct fr_route *r, const char *name); /* -1 if absent */

#endif
