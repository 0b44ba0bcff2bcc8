/* lru: bounded in-process cache of rendered rows (see lru.h). Chained hash
 * table with a power-of-two bucket array sized for max_entries, and a
 * doubly-linked recency list (head = most recent). Each entry is a single
 * allocation: header, value offsets, key, values. */
#include "lru.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fr_lru_entry {
    struct fr_lru_entry *hnext; /* borrowed: next in the bucket chain */
    struct fr_lru_entry *prev;  /* borrowed: more recently used */
    struct fr_lru_entry *next;  /* borrowed: less recently used */
    uint64_t hash;
    uint32_t klen;   /* key bytes */
    uint32_t dlen;   /* value bytes */
    uint32_t n_vals; /* same as the cache's; kept for fr_lru_entry_row */
    uint32_t off[];  /* n_vals + 1 offsets into the values; then key, NUL, values */
};

struct fr_lru {
    struct fr_lru_entry **buckets; /* owned: chains of owned entries */
    size_t mask;                   /* bucket count - 1 */
    size_t count;
    size_t max_entries;
    size_t n_vals;
    struct fr_lru_entry *head; /* most recently used */
    struct fr_lru_entry *tail; /* least recently used: evicted first */
};

static char *entry_key(struct fr_lru_entry *e)
{
    return (char *)(e->off + e->n_vals + 1);
}

fr_lru_t *fr_lru_new(size_t max_entries, size_t n_vals)
{
    fr_lru_t *l = fr_xcalloc(1, sizeof(*l));
    size_t nb = 16;

    if (max_entries < 1)
        max_entries = 1;
    while (nb < max_entries && nb < ((size_t)1 << 30))
        nb <<= 1;
    l->buckets = fr_xcalloc(nb, sizeof(*l->buckets));
    l->mask = nb - 1;
    l->max_entries = max_entries;
    l->n_vals = n_vals;
    return l;
}

void fr_lru_free(fr_lru_t *l)
{
    if (!l)
        return;
    fr_lru_clear(l);
    free(l->buckets);
    free(l);
}

static void list_unlink(fr_lru_t *l, struct fr_lru_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(fr_lru_t *l, struct fr_lru_entry *e)
{
    e->prev = NULL;
    e->next = l->head;
    if (l->head)
        l->head->prev = e;
    l->head = e;
    if (!l->tail)
        l->tail = e;
}

/* Returns the link pointing at the entry for key (or at the chain's NULL end). */
static struct fr_lru_entry **find_link(fr_lru_t *l, const char *key, size_t klen, uint64_t h)
{
    struct fr_lru_entry **link = &l->buckets[h & l->mask];

    while (*link) {
        struct fr_lru_entry *e = *link;
        if (e->hash == h && e->klen == klen && memcmp(entry_key(e), key, klen) == 0)
            return link;
        link = &e->hnext;
    }
    return link;
}

/* Unlinks *link's entry from chain and list and frees it. */
static void remove_at(fr_lru_t *l, struct fr_lru_entry **link)
{
    struct fr_lru_entry *e = *link;

    *link = e->hnext;
    list_unlink(l, e);
    l->count--;
    free(e);
}

const struct fr_lru_entry *fr_lru_get(fr_lru_t *l, const char *key, size_t klen)
{
    uint64_t h = fr_hash64(key, klen);
    struct fr_lru_entry *e = *find_link(l, key, klen, h);

    if (!e)
        return NULL;
    if (l->head != e) {
        list_unlink(l, e);
        list_push_front(l, e);
    }
    return e;
}

int fr_lru_put(fr_lru_t *l, const char *key, size_t klen, const char *base, const uint32_t *off)
{
    uint32_t start = off[0];
    uint32_t end = off[l->n_vals];
    uint64_t h;
    struct fr_lru_entry **link;
    struct fr_lru_entry *e;
    size_t hdr;

    if (end < start || klen > UINT32_MAX / 2)
        return -EINVAL;
    h = fr_hash64(key, klen);
    link = find_link(l, key, klen, h);
    if (*link)
        remove_at(l, link);
    else if (l->count >= l->max_entries && l->tail)
        remove_at(l, find_link(l, entry_key(l->tail), l->tail->klen, l->tail->hash));

    hdr = sizeof(*e) + (l->n_vals + 1) * sizeof(uint32_t);
    e = fr_xmalloc(hdr + klen + 1 + (end - start));
    e->hash = h;
    e->klen = (uint32_t)klen;
    e->dlen = end - start;
    e->n_vals = (uint32_t)l->n_vals;
    for (size_t i = 0; i <= l->n_vals; i++)
        e->off[i] = off[i] - start;
    memcpy(entry_key(e), key, klen);
    entry_key(e)[klen] = '\0';
    memcpy(entry_key(e) + klen + 1, base + start, end - start);

    /* find_link after a possible eviction: the chain may have changed */
    link = find_link(l, key, klen, h);
    e->hnext = NULL;
    *link = e;
    list_push_front(l, e);
    l->count++;
    return 0;
}

bool fr_lru_del(fr_lru_t *l, const char *key, size_t klen)
{
    struct fr_lru_entry **link = find_link(l, key, klen, fr_hash64(key, klen));

    if (!*link)
        return false;
    remove_at(l, link);
    return true;
}

void fr_lru_clear(fr_lru_t *l)
{
    struct fr_lru_entry *e = l->head;

    /* Clear the bucket of each entry rather than memset the whole table:
     * an empty cache keeps its (calloc'd, untouched) table out of RSS. */
    while (e) {
        struct fr_lru_entry *next = e->next;
        l->buckets[e->hash & l->mask] = NULL;
        free(e);
        e = next;
    }
    l->head = l->tail = NULL;
    l->count = 0;
}

size_t fr_lru_count(const fr_lru_t *l)
{
    return l->count;
}

size_t fr_lru_n_vals(const fr_lru_t *l)
{
    return l->n_vals;
}

struct fr_row_view fr_lru_entry_row(const struct fr_lru_entry *e)
{
    struct fr_row_view v;
    const char *key = (const char *)(e->off + e->n_vals + 1);

    v.off = e->off;
    v.base = key + e->klen + 1;
    return v;
}
