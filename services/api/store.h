/* store: the api's read path for one keyed cache (e.g. user_panel): the
 * in-process LRU, then the Redis hash "{cache}:{key}", then the model table
 * in PostgreSQL. Rows come back as JSON fragments, one per attribute (the
 * model's columns except the key, in model order). A lookup is an async
 * object for one or many keys: cache hits are answered at once, misses go
 * to Redis in one pipelined burst of HGETALLs, and what Redis lacks (or
 * everything, when Redis is unreachable) goes to PostgreSQL in one query.
 * Rows found in Redis or PostgreSQL are put in the LRU unless an
 * invalidation arrived meanwhile. Loop thread only; one store per worker. */
#ifndef FR_API_STORE_H
#define FR_API_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "lru.h"
#include "metrics.h"
#include "pg.h"
#include "redis.h"
#include "util.h"

#define FR_STORE_MAX_KEY 256 /* key bytes; longer keys are the caller's 422 */

struct fr_store_schema {
    const char *cache;         /* borrowed: Redis key prefix, "user_panel" */
    const char *table;         /* borrowed: "players.user_panel" */
    const char *key_column;    /* borrowed: "player_id" */
    const char *const *attrs;  /* borrowed: attribute (column) names */
    const enum fr_type *types; /* borrowed: their types */
    size_t n_attrs;
};

typedef struct fr_store fr_store_t;

/* redis_ref/pg_ref point at the daemon's client pointers (struct fr_app's
 * redis and pg fields; borrowed, must outlive the store): the store reads
 * them at each use, so a client the app has closed (pointer set to NULL)
 * counts as unreachable. The schema is copied. cache_entries bounds the
 * LRU. Counters api_cache_total{layer,result} are registered in m. Returns
 * NULL + err when the schema is unusable. */
fr_store_t *fr_store_new(fr_redis_t *const *redis_ref, fr_pg_t *const *pg_ref, const struct fr_store_schema *schema,
                         size_t cache_entries, fr_metrics_t *m, char err[FR_ERR_LEN]);
/* All lookups must have completed (they hold the store). NULL: nothing. */
void fr_store_free(fr_store_t *s);
/* rp_ref points at the worker's read pool pointer (readpool.h; borrowed,
 * read at each use, NULL: none): PostgreSQL fallbacks then run through it,
 * for the caller a lookup names (fr_store_lookup_set_caller), and what a
 * replica answered is not kept in the process cache (a replica may be
 * behind the invalidation that emptied it). */
struct fr_readpool;
void fr_store_set_readpool(fr_store_t *s, struct fr_readpool *const *rp_ref);

/* Process-cache probe for one key (counts a process hit or miss). The
 * entry is borrowed: use it before returning to the loop. NULL on a miss or
 * while caching is off. */
const struct fr_lru_entry *fr_store_cached(fr_store_t *s, const char *key, size_t klen);
/* Invalidation (fr:events): drops one key / everything from the LRU and
 * keeps lookups in flight from caching what they read before it. */
void fr_store_invalidate(fr_store_t *s, const char *key, size_t klen);
void fr_store_clear(fr_store_t *s);
/* Caching off: no LRU hits or puts (used while the invalidation channel is
 * down, when staleness could not be noticed). Turning it on or off clears. */
void fr_store_set_caching(fr_store_t *s, bool on);
size_t fr_store_cache_count(const fr_store_t *s);
size_t fr_store_n_attrs(const fr_store_t *s);

/* ---- async lookups */

typedef struct fr_store_lookup fr_store_lookup_t;
/* Called exactly once per started lookup, possibly before
 * fr_store_lookup_start returns (all hits). The callee owns lk and frees it
 * with fr_store_lookup_free (in the callback or later). */
typedef void (*fr_store_cb)(fr_store_lookup_t *lk, void *data);

enum fr_store_item {
    FR_STORE_ITEM_PENDING = 0,
    FR_STORE_ITEM_FOUND,   /* row available through fr_store_lookup_row */
    FR_STORE_ITEM_MISSING, /* in neither Redis nor PostgreSQL */
    FR_STORE_ITEM_ERROR,   /* could not be decided: backends unreachable */
};

/* A lookup with room for about n_hint keys. */
fr_store_lookup_t *fr_store_lookup_new(fr_store_t *s, size_t n_hint);
/* Adds a key (copied; 1..FR_STORE_MAX_KEY bytes, validated by the caller)
 * before start. Returns its item index; a duplicate key returns the index
 * of its first occurrence. */
size_t fr_store_lookup_add(fr_store_lookup_t *lk, const char *key, size_t klen);
/* Starts the lookup; cb fires exactly once (see fr_store_cb). probed: the
 * caller has just missed every key with fr_store_cached, so the process
 * cache is skipped (and not counted twice). */
/* Read-your-writes: who the lookup is for (fr_readpool_caller); copied. */
void fr_store_lookup_set_caller(fr_store_lookup_t *lk, const char *caller);
void fr_store_lookup_start(fr_store_lookup_t *lk, bool probed, fr_store_cb cb, void *data);
void fr_store_lookup_free(fr_store_lookup_t *lk); /* not while started and not yet completed */

/* Results, valid after completion until fr_store_lookup_free. */
size_t fr_store_lookup_count(const fr_store_lookup_t *lk);
enum fr_store_item fr_store_lookup_item(const fr_store_lookup_t *lk, size_t i);
const char *fr_store_lookup_key(const fr_store_lookup_t *lk, size_t i, size_t *len);
/* Only for FOUND items. */
struct fr_row_view fr_store_lookup_row(const fr_store_lookup_t *lk, size_t i);
/* Why items are in ERROR (static string), or NULL when none is. */
const char *fr_store_lookup_error(const fr_store_lookup_t *lk);

#endif
