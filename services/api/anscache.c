/* anscache: bounded answer cache (see anscache.h): a chained hash table
 * over a doubly linked recency list. */
#include "anscache.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct node {
    struct node *next;     /* hash chain */
    struct node *prev_lru; /* towards most recent */
    struct node *next_lru; /* towards least recent */
    uint64_t hash;
    size_t klen;
    size_t size;        /* bytes charged against the bound */
    struct fr_answer a; /* a.body points into this allocation, after the key */
    char data[];        /* key bytes, then body bytes */
};

struct fr_anscache {
    struct node **buckets; /* owned */
    size_t n_buckets;      /* power of two */
    size_t n;
    size_t bytes;
    size_t max_bytes;
    struct node *mru, *lru;
    int64_t *g_bytes; /* borrowed: api_answer_cache_bytes */
    uint64_t *c_hit;  /* borrowed: api_answer_cache_total{result} */
    uint64_t *c_miss;
    uint64_t *c_evict;
    uint64_t *c_drop;
};

static uint64_t hash_key(const void *k, size_t n)
{
    return fr_hash64(k, n);
}

fr_anscache_t *fr_anscache_new(size_t max_bytes, fr_metrics_t *m)
{
    fr_anscache_t *c = fr_xcalloc(1, sizeof(*c));
    c->max_bytes = max_bytes;
    c->n_buckets = 256;
    c->buckets = fr_xcalloc(c->n_buckets, sizeof(*c->buckets));
    c->g_bytes =
        fr_metrics_gauge(m, "api_answer_cache_bytes", "Bytes of SQL-route answers kept in the process cache", NULL);
    const char *help = "SQL-route answer cache lookups and removals by result";
    c->c_hit = fr_metrics_counter(m, "api_answer_cache_total", help, "result=\"hit\"");
    c->c_miss = fr_metrics_counter(m, "api_answer_cache_total", help, "result=\"miss\"");
    c->c_evict = fr_metrics_counter(m, "api_answer_cache_total", help, "result=\"evicted\"");
    c->c_drop = fr_metrics_counter(m, "api_answer_cache_total", help, "result=\"invalidated\"");
    return c;
}

static void lru_unlink(fr_anscache_t *c, struct node *n)
{
    if (n->prev_lru)
        n->prev_lru->next_lru = n->next_lru;
    else
        c->mru = n->next_lru;
    if (n->next_lru)
        n->next_lru->prev_lru = n->prev_lru;
    else
        c->lru = n->prev_lru;
    n->prev_lru = n->next_lru = NULL;
}

static void lru_front(fr_anscache_t *c, struct node *n)
{
    n->next_lru = c->mru;
    n->prev_lru = NULL;
    if (c->mru)
        c->mru->prev_lru = n;
    c->mru = n;
    if (!c->lru)
        c->lru = n;
}

static struct node **slot_of(fr_anscache_t *c, uint64_t h, const void *key, size_t klen)
{
    struct node **s = &c->buckets[h & (c->n_buckets - 1)];
    while (*s && !((*s)->hash == h && (*s)->klen == klen && memcmp((*s)->data, key, klen) == 0))
        s = &(*s)->next;
    return s;
}

static void remove_node(fr_anscache_t *c, struct node *n)
{
    struct node **s = slot_of(c, n->hash, n->data, n->klen);
    *s = n->next;
    lru_unlink(c, n);
    c->bytes -= n->size;
    c->n--;
    *c->g_bytes = (int64_t)c->bytes;
    free(n);
}

void fr_anscache_free(fr_anscache_t *c)
{
    if (!c)
        return;
    fr_anscache_clear(c);
    free(c->buckets);
    free(c);
}

const struct fr_answer *fr_anscache_get(fr_anscache_t *c, const void *key, size_t klen)
{
    if (!c->max_bytes || !c->n) {
        (*c->c_miss)++;
        return NULL;
    }
    struct node *n = *slot_of(c, hash_key(key, klen), key, klen);
    if (!n) {
        (*c->c_miss)++;
        return NULL;
    }
    (*c->c_hit)++;
    lru_unlink(c, n);
    lru_front(c, n);
    return &n->a;
}

static void grow(fr_anscache_t *c)
{
    size_t nb = c->n_buckets * 2;
    struct node **b = fr_xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct node *n = c->buckets[i];
        while (n) {
            struct node *next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = nb;
}

void fr_anscache_put(fr_anscache_t *c, const void *key, size_t klen, const struct fr_answer *a)
{
    size_t size = sizeof(struct node) + klen + a->len;
    if (!c->max_bytes || size > c->max_bytes / 8)
        return;
    fr_anscache_del(c, key, klen);
    while (c->lru && c->bytes + size > c->max_bytes) {
        remove_node(c, c->lru);
        (*c->c_evict)++;
    }
    struct node *n = fr_xmalloc(size);
    memset(n, 0, sizeof(*n));
    n->hash = hash_key(key, klen);
    n->klen = klen;
    n->size = size;
    memcpy(n->data, key, klen);
    if (a->len)
        memcpy(n->data + klen, a->body, a->len);
    n->a = *a;
    n->a.body = n->data + klen;
    struct node **s = &c->buckets[n->hash & (c->n_buckets - 1)];
    n->next = *s;
    *s = n;
    lru_front(c, n);
    c->n++;
    c->bytes += size;
    *c->g_bytes = (int64_t)c->bytes;
    if (c->n > c->n_buckets)
        grow(c);
}

void fr_anscache_del(fr_anscache_t *c, const void *key, size_t klen)
{
    if (!c->n)
        return;
    struct node *n = *slot_of(c, hash_key(key, klen), key, klen);
    if (n) {
        remove_node(c, n);
        (*c->c_drop)++;
    }
}

void fr_anscache_sweep(fr_anscache_t *c, bool (*drop)(int route, void *data), void *data)
{
    struct node *n = c->mru;
    while (n) {
        struct node *next = n->next_lru;
        if (drop(n->a.route, data)) {
            remove_node(c, n);
            (*c->c_drop)++;
        }
        n = next;
    }
}

void fr_anscache_clear(fr_anscache_t *c)
{
    while (c->lru)
        remove_node(c, c->lru);
}

size_t fr_anscache_bytes(const fr_anscache_t *c)
{
    return c->bytes;
}

size_t fr_anscache_count(const fr_anscache_t *c)
{
    return c->n;
}
