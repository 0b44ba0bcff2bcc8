/* support: small helpers of the loader: a string set for touched keys, a
 * copy of a PGresult that outlives its callback, SQL identifier quoting and
 * array literals, and the JSON pieces of fr:events messages. */
#include <stdlib.h>
#include <string.h>

#include "loader_int.h"

/* ---- keyset ---------------------------------------------------------------- */

void fr__keyset_init(struct fr_keyset *s)
{
    memset(s, 0, sizeof(*s));
}

void fr__keyset_clear(struct fr_keyset *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i]);
        s->slots[i] = NULL;
    }
    s->n = 0;
}

void fr__keyset_deinit(struct fr_keyset *s)
{
    fr__keyset_clear(s);
    free(s->slots);
    memset(s, 0, sizeof(*s));
}

/* Slot of k, or of the empty slot where it would go. cap > 0. */
static size_t find_slot(const struct fr_keyset *s, const char *k, size_t len)
{
    size_t mask = s->cap - 1;
    size_t i = (size_t)fr_hash64(k, len) & mask;
    while (s->slots[i]) {
        if (strlen(s->slots[i]) == len && memcmp(s->slots[i], k, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static void insert_owned(struct fr_keyset *s, char *str)
{
    size_t i = find_slot(s, str, strlen(str));
    s->slots[i] = str;
    s->n++;
}

static void grow(struct fr_keyset *s)
{
    char **old = s->slots;
    size_t old_cap = s->cap;

    s->cap = old_cap ? old_cap * 2 : 64;
    s->slots = fr_xcalloc(s->cap, sizeof(*s->slots));
    s->n = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i])
            insert_owned(s, old[i]);
    free(old);
}

bool fr__keyset_add(struct fr_keyset *s, const char *k, size_t len)
{
    size_t i;

    if ((s->n + 1) * 4 > s->cap * 3)
        grow(s);
    i = find_slot(s, k, len);
    if (s->slots[i])
        return false;
    s->slots[i] = fr_xstrndup(k, len);
    s->n++;
    return true;
}

bool fr__keyset_has(const struct fr_keyset *s, const char *k, size_t len)
{
    if (s->cap == 0)
        return false;
    return s->slots[find_slot(s, k, len)] != NULL;
}

void fr__keyset_merge(struct fr_keyset *to, struct fr_keyset *from)
{
    for (size_t i = 0; i < from->cap; i++) {
        char *k = from->slots[i];
        if (!k)
            continue;
        from->slots[i] = NULL;
        if (fr__keyset_has(to, k, strlen(k))) {
            free(k);
            continue;
        }
        if ((to->n + 1) * 4 > to->cap * 3)
            grow(to);
        insert_owned(to, k);
    }
    from->n = 0;
}

#define TAKE_BUCKET_BITS 12 /* the hash ring in 4,096 arcs */

/* A key's place on the hash ring, 0 .. 2^32 - 1. */
static uint32_t ring_pos(const char *k)
{
    return (uint32_t)(fr_hash64(k, strlen(k)) >> 32);
}

void fr__keyset_take(struct fr_keyset *to, struct fr_keyset *from, size_t max, uint32_t *cursor)
{
    struct fr_keyset rest;
    size_t count[1u << TAKE_BUCKET_BITS] = {0};
    size_t below = 0, in_b = 0;
    uint32_t b = 0;
    const unsigned shift = 32 - TAKE_BUCKET_BITS;

    if (from->n <= max) {
        fr__keyset_merge(to, from);
        return;
    }
    /* Keys go in ring order from *cursor: the arcs before arc b whole, then
     * the first of arc b up to max; the cursor moves to arc b. New keys land
     * all over the ring, so the cursor goes round and a key waits at most
     * one turn (about from->n / max takes). */
    for (size_t i = 0; i < from->cap; i++)
        if (from->slots[i])
            count[(uint32_t)(ring_pos(from->slots[i]) - *cursor) >> shift]++;
    while (below + count[b] <= max) /* ends: count sums to from->n > max */
        below += count[b++];
    fr__keyset_init(&rest);
    for (size_t i = 0; i < from->cap; i++) {
        char *key = from->slots[i];
        uint32_t arc;
        struct fr_keyset *into;
        if (!key)
            continue;
        from->slots[i] = NULL;
        arc = (uint32_t)(ring_pos(key) - *cursor) >> shift;
        into = arc < b || (arc == b && in_b++ < max - below) ? to : &rest;
        if ((into->n + 1) * 4 > into->cap * 3)
            grow(into);
        insert_owned(into, key);
    }
    *cursor += b << shift;
    fr__keyset_deinit(from);
    *from = rest;
}

/* ---- rows ------------------------------------------------------------------- */

void fr__rows_from_result(struct ld_rows *r, const PGresult *res, bool flag_col)
{
    size_t first = flag_col ? 1 : 0;
    int nf = PQnfields(res);

    memset(r, 0, sizeof(*r));
    fr_buf_init(&r->data, 0);
    r->n_rows = (size_t)PQntuples(res);
    r->n_cols = nf > (int)first ? (size_t)nf - first : 0;
    r->off = fr_xcalloc(r->n_rows * r->n_cols + 1, sizeof(*r->off));
    r->len = fr_xcalloc(r->n_rows * r->n_cols + 1, sizeof(*r->len));
    r->deleted = fr_xcalloc(r->n_rows + 1, sizeof(*r->deleted));
    for (size_t i = 0; i < r->n_rows; i++) {
        if (flag_col)
            r->deleted[i] = PQgetvalue(res, (int)i, 0)[0] == 't';
        for (size_t j = 0; j < r->n_cols; j++) {
            size_t k = i * r->n_cols + j;
            int col = (int)(j + first);
            if (PQgetisnull(res, (int)i, col)) {
                r->len[k] = -1;
                continue;
            }
            r->off[k] = r->data.len;
            r->len[k] = PQgetlength(res, (int)i, col);
            (void)fr_buf_append(&r->data, PQgetvalue(res, (int)i, col), (size_t)r->len[k]);
            (void)fr_buf_putc(&r->data, '\0');
        }
    }
}

void fr__rows_deinit(struct ld_rows *r)
{
    fr_buf_deinit(&r->data);
    free(r->off);
    free(r->len);
    free(r->deleted);
    memset(r, 0, sizeof(*r));
}

/* ---- SQL --------------------------------------------------------------------- */

void fr__sql_array_elem(struct fr_buf *b, const char *v, bool first)
{
    if (!first)
        (void)fr_buf_putc(b, ',');
    if (!v) {
        (void)fr_buf_puts(b, "NULL");
        return;
    }
    (void)fr_buf_putc(b, '"');
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            (void)fr_buf_putc(b, '\\');
        (void)fr_buf_putc(b, *v);
    }
    (void)fr_buf_putc(b, '"');
}

void fr__sql_text_array(struct fr_buf *b, const struct fr_keyset *keys)
{
    bool first = true;

    (void)fr_buf_putc(b, '{');
    for (size_t i = 0; i < keys->cap; i++) {
        if (!keys->slots[i])
            continue;
        fr__sql_array_elem(b, keys->slots[i], first);
        first = false;
    }
    (void)fr_buf_putc(b, '}');
}

/* ---- events --------------------------------------------------------------------- */

void fr__json_keys(struct fr_buf *b, const char *field, const struct fr_keyset *keys)
{
    bool first = true;

    if (keys->n == 0 || keys->n > LD_EVENT_KEYS)
        return;
    (void)fr_buf_printf(b, ",\"%s\":[", field);
    for (size_t i = 0; i < keys->cap; i++) {
        if (!keys->slots[i])
            continue;
        if (!first)
            (void)fr_buf_putc(b, ',');
        first = false;
        (void)fr_buf_json_str(b, keys->slots[i], strlen(keys->slots[i]));
    }
    (void)fr_buf_putc(b, ']');
}

void fr__event_begin(struct fr_buf *b, const char *type)
{
    char ts[32];
    fr_format_timestamp(fr_wall_us(), ts);
    (void)fr_buf_printf(b, "{\"type\":\"%s\",\"ts\":\"%s\"", type, ts);
}

void fr__entry_free(struct ld_entry *e)
{
    if (!e)
        return;
    free(e->id);
    free(e->batch_id);
    free(e->batch);
    free(e);
}
