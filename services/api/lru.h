/* lru: the api's in-process read cache. A bounded hash map from a key (a
 * player id: any bytes) to a row of pre-rendered JSON value fragments
 * ("1.5", "null", "\"DE\""), evicting the least recently used entry when
 * full. One per worker loop: not thread-safe, no locks. */
#ifndef FR_API_LRU_H
#define FR_API_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct fr_lru fr_lru_t;
struct fr_lru_entry;

/* A borrowed view of one row of JSON fragments: value i is
 * base[off[i] .. off[i+1]). Used for cache entries and lookup results alike. */
struct fr_row_view {
    const char *base;    /* borrowed */
    const uint32_t *off; /* borrowed: n_vals + 1 offsets into base */
};

/* A cache of at most max_entries rows of n_vals values each (max_entries
 * >= 1). Never returns NULL (aborts on OOM). */
fr_lru_t *fr_lru_new(size_t max_entries, size_t n_vals);
void fr_lru_free(fr_lru_t *l); /* NULL: nothing */

/* Finds key and marks it most recently used. The returned entry is borrowed:
 * valid until the next fr_lru_put/del/clear on this cache. NULL if absent. */
const struct fr_lru_entry *fr_lru_get(fr_lru_t *l, const char *key, size_t klen);
/* Inserts or replaces key with a copy of the row: value i is
 * base[off[i] .. off[i+1]) (off has n_vals + 1 non-decreasing entries).
 * Evicts the least recently used entry when full. Returns 0, or -EINVAL
 * when a length does not fit the entry format (> 4 GiB). */
FR_MUST_CHECK int fr_lru_put(fr_lru_t *l, const char *key, size_t klen, const char *base, const uint32_t *off);
/* Removes key; true if it was present. */
bool fr_lru_del(fr_lru_t *l, const char *key, size_t klen);
void fr_lru_clear(fr_lru_t *l);
size_t fr_lru_count(const fr_lru_t *l);
size_t fr_lru_n_vals(const fr_lru_t *l);

/* The entry's row (borrowed, same lifetime as the entry). */
struct fr_row_view fr_lru_entry_row(const struct fr_lru_entry *e);

#endif
