/* store: process cache → Redis → PostgreSQL read path (see store.h).
 *
 * A lookup walks NEW → PROCESS → REDIS → PG → DONE (PROCESS → DONE when
 * every key hit the process cache); set_state() rejects anything else.
 * The lookup completes once, in DONE, from whichever callback finished the
 * last phase: Redis and PostgreSQL callbacks always fire exactly once (with
 * NULL on a lost connection or timeout), so every lookup completes. */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "readpool.h"
#include "render.h"

#define REDIS_TIMEOUT_MS 1000
#define PG_STMT_ONE      "fr_api_get_one"
#define PG_STMT_MANY     "fr_api_get_many"
#define WARN_EVERY_MS    5000
#define LOOKUP_BUF_MAX   (64u << 20) /* fragments of one lookup: far above 1000 rows */

struct fr_store {
    fr_redis_t *const *redis_ref; /* borrowed: &app->redis */
    fr_pg_t *const *pg_ref;       /* borrowed: &app->pg */
    fr_readpool_t *const *rp_ref; /* borrowed: &worker->readpool, or NULL */
    char *cache;                  /* owned */
    size_t cache_len;
    char **attrs;        /* owned */
    enum fr_type *types; /* owned */
    size_t n_attrs;
    char *sql_one;        /* owned: SELECT ... WHERE key = $1 */
    char *sql_many;       /* owned: SELECT ... WHERE key = ANY($1) */
    bool prepared;        /* both statements registered with the pg client */
    bool prepared_broken; /* the server lacks them: plain queries */
    fr_lru_t *lru;        /* owned */
    bool caching;
    bool disabled;         /* process cache off by configuration */
    uint64_t gen;          /* bumped by every invalidation */
    const char **tmp_vals; /* owned: scratch, n_attrs */
    size_t *tmp_lens;      /* owned: scratch, n_attrs */
    size_t live_lookups;
    uint64_t warn_redis_ms; /* last warning, for rate limiting */
    uint64_t warn_pg_ms;
    uint64_t *c_proc_hit, *c_proc_miss; /* borrowed from the registry */
    uint64_t *c_redis_hit, *c_redis_miss;
    uint64_t *c_pg_hit, *c_pg_miss;
};

enum lk_state {
    LK_NEW = 0,
    LK_PROCESS,
    LK_REDIS,
    LK_PG,
    LK_DONE,
};

struct lk_item {
    fr_store_lookup_t *lk; /* borrowed: back pointer, the Redis callback's data */
    uint32_t key_off;      /* into lk->keys */
    uint32_t key_len;
    uint8_t state; /* enum fr_store_item */
};

struct fr_store_lookup {
    fr_store_t *s; /* borrowed */
    enum lk_state state;
    struct lk_item *items; /* owned */
    size_t n, cap;
    struct fr_buf keys; /* key bytes, each NUL-terminated */
    struct fr_buf vals; /* JSON fragments of found rows */
    uint32_t *offs;     /* owned: (n_attrs + 1) per item, into vals */
    uint32_t *slots;    /* owned: open-addressing index, item + 1 (0 = empty) */
    size_t slot_mask;
    size_t outstanding;                  /* Redis commands in flight */
    bool issuing;                        /* inside the Redis send loop */
    bool redis_failed;                   /* some Redis read failed */
    bool used_prepared;                  /* the PostgreSQL query in flight is a prepared one */
    uint64_t gen;                        /* s->gen when the backends were asked */
    bool from_replica;                   /* a read replica answered: not cached */
    char caller[FR_READPOOL_CALLER_LEN]; /* read-your-writes ("": none) */
    const char *error;                   /* static, or NULL */
    fr_store_cb cb;
    void *data;
};

/* ---------------------------------------------------------------- helpers */

static bool warn_due(uint64_t *last)
{
    uint64_t now = fr_mono_ms();
    if (*last && now - *last < WARN_EVERY_MS)
        return false;
    *last = now;
    return true;
}

/* ---------------------------------------------------------------- store */

fr_store_t *fr_store_new(fr_redis_t *const *redis_ref, fr_pg_t *const *pg_ref, const struct fr_store_schema *schema,
                         size_t cache_entries, fr_metrics_t *m, char err[FR_ERR_LEN])
{
    fr_store_t *s;
    struct fr_buf b;
    const char *help = "Reads by cache layer and result";

    if (!schema->cache || !schema->table || !schema->key_column || strlen(schema->cache) > 128) {
        snprintf(err, FR_ERR_LEN, "store: cache, table and key column are required (cache name <= 128 bytes)");
        return NULL;
    }
    s = fr_xcalloc(1, sizeof(*s));
    s->redis_ref = redis_ref;
    s->pg_ref = pg_ref;
    s->cache = fr_xstrdup(schema->cache);
    s->cache_len = strlen(s->cache);
    s->n_attrs = schema->n_attrs;
    s->attrs = fr_xcalloc(s->n_attrs ? s->n_attrs : 1, sizeof(*s->attrs));
    s->types = fr_xcalloc(s->n_attrs ? s->n_attrs : 1, sizeof(*s->types));
    s->tmp_vals = fr_xcalloc(s->n_attrs ? s->n_attrs : 1, sizeof(*s->tmp_vals));
    s->tmp_lens = fr_xcalloc(s->n_attrs ? s->n_attrs : 1, sizeof(*s->tmp_lens));
    for (size_t i = 0; i < s->n_attrs; i++) {
        s->attrs[i] = fr_xstrdup(schema->attrs[i]);
        s->types[i] = schema->types[i];
    }

    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "SELECT ");
    fr_buf_sql_ident(&b, schema->key_column);
    for (size_t i = 0; i < s->n_attrs; i++) {
        (void)fr_buf_puts(&b, ", ");
        fr_buf_sql_ident(&b, s->attrs[i]);
    }
    (void)fr_buf_puts(&b, " FROM ");
    fr_buf_sql_ident(&b, schema->table);
    (void)fr_buf_puts(&b, " WHERE ");
    fr_buf_sql_ident(&b, schema->key_column);
    s->sql_many = fr_xasprintf("%s = ANY($1)", b.data);
    s->sql_one = fr_xasprintf("%s = $1", b.data);
    fr_buf_deinit(&b);

    s->disabled = cache_entries == 0; /* FRESHET_API_CACHE_ENTRIES=0: no process cache */
    s->lru = fr_lru_new(cache_entries ? cache_entries : 1, s->n_attrs);
    s->caching = !s->disabled;
    s->c_proc_hit = fr_metrics_counter(m, "api_cache_total", help, "layer=\"process\",result=\"hit\"");
    s->c_proc_miss = fr_metrics_counter(m, "api_cache_total", help, "layer=\"process\",result=\"miss\"");
    s->c_redis_hit = fr_metrics_counter(m, "api_cache_total", help, "layer=\"redis\",result=\"hit\"");
    s->c_redis_miss = fr_metrics_counter(m, "api_cache_total", help, "layer=\"redis\",result=\"miss\"");
    s->c_pg_hit = fr_metrics_counter(m, "api_cache_total", help, "layer=\"postgres\",result=\"hit\"");
    s->c_pg_miss = fr_metrics_counter(m, "api_cache_total", help, "layer=\"postgres\",result=\"miss\"");
    return s;
}

void fr_store_free(fr_store_t *s)
{
    if (!s)
        return;
    assert(s->live_lookups == 0);
    fr_lru_free(s->lru);
    for (size_t i = 0; i < s->n_attrs; i++)
        free(s->attrs[i]);
    free(s->attrs);
    free(s->types);
    free(s->tmp_vals);
    free(s->tmp_lens);
    free(s->sql_one);
    free(s->sql_many);
    free(s->cache);
    free(s);
}

const struct fr_lru_entry *fr_store_cached(fr_store_t *s, const char *key, size_t klen)
{
    const struct fr_lru_entry *e = NULL;

    if (s->caching)
        e = fr_lru_get(s->lru, key, klen);
    if (e)
        (*s->c_proc_hit)++;
    else
        (*s->c_proc_miss)++;
    return e;
}

void fr_store_invalidate(fr_store_t *s, const char *key, size_t klen)
{
    s->gen++;
    (void)fr_lru_del(s->lru, key, klen);
}

void fr_store_clear(fr_store_t *s)
{
    s->gen++;
    fr_lru_clear(s->lru);
}

void fr_store_set_caching(fr_store_t *s, bool on)
{
    s->caching = on && !s->disabled;
    fr_store_clear(s);
}

size_t fr_store_cache_count(const fr_store_t *s)
{
    return fr_lru_count(s->lru);
}

size_t fr_store_n_attrs(const fr_store_t *s)
{
    return s->n_attrs;
}

/* ---------------------------------------------------------------- lookups */

static void set_state(fr_store_lookup_t *lk, enum lk_state to)
{
    static const bool legal[5][5] = {
        [LK_NEW] = {[LK_PROCESS] = true},
        [LK_PROCESS] = {[LK_REDIS] = true, [LK_DONE] = true},
        [LK_REDIS] = {[LK_PG] = true},
        [LK_PG] = {[LK_DONE] = true},
    };
    if (!legal[lk->state][to]) {
        fr_error("store: illegal lookup transition %d -> %d", (int)lk->state, (int)to);
        abort();
    }
    lk->state = to;
}

fr_store_lookup_t *fr_store_lookup_new(fr_store_t *s, size_t n_hint)
{
    fr_store_lookup_t *lk = fr_xcalloc(1, sizeof(*lk));
    size_t slots = 8;

    if (n_hint < 1)
        n_hint = 1;
    if (n_hint > 4096)
        n_hint = 4096;
    while (slots < n_hint * 2)
        slots <<= 1;
    lk->s = s;
    lk->cap = n_hint;
    lk->items = fr_xmalloc(lk->cap * sizeof(*lk->items));
    lk->slots = fr_xcalloc(slots, sizeof(*lk->slots));
    lk->slot_mask = slots - 1;
    fr_buf_init(&lk->keys, LOOKUP_BUF_MAX);
    fr_buf_init(&lk->vals, LOOKUP_BUF_MAX);
    s->live_lookups++;
    return lk;
}

void fr_store_lookup_free(fr_store_lookup_t *lk)
{
    if (!lk)
        return;
    assert(lk->state == LK_NEW || lk->state == LK_DONE);
    lk->s->live_lookups--;
    free(lk->items);
    free(lk->slots);
    free(lk->offs);
    fr_buf_deinit(&lk->keys);
    fr_buf_deinit(&lk->vals);
    free(lk);
}

static const char *item_key(const fr_store_lookup_t *lk, const struct lk_item *it)
{
    return lk->keys.data + it->key_off;
}

/* Index of the item with this key, or SIZE_MAX. */
static size_t index_find(const fr_store_lookup_t *lk, const char *key, size_t klen)
{
    size_t pos = fr_hash64(key, klen) & lk->slot_mask;

    for (;;) {
        uint32_t v = lk->slots[pos];
        if (v == 0)
            return SIZE_MAX;
        const struct lk_item *it = &lk->items[v - 1];
        if (it->key_len == klen && memcmp(item_key(lk, it), key, klen) == 0)
            return v - 1;
        pos = (pos + 1) & lk->slot_mask;
    }
}

static void index_insert(fr_store_lookup_t *lk, size_t idx)
{
    const struct lk_item *it = &lk->items[idx];
    size_t pos = fr_hash64(item_key(lk, it), it->key_len) & lk->slot_mask;

    while (lk->slots[pos] != 0)
        pos = (pos + 1) & lk->slot_mask;
    lk->slots[pos] = (uint32_t)(idx + 1);
}

static void index_grow(fr_store_lookup_t *lk)
{
    size_t slots = (lk->slot_mask + 1) * 2;

    free(lk->slots);
    lk->slots = fr_xcalloc(slots, sizeof(*lk->slots));
    lk->slot_mask = slots - 1;
    for (size_t i = 0; i < lk->n; i++)
        index_insert(lk, i);
}

size_t fr_store_lookup_add(fr_store_lookup_t *lk, const char *key, size_t klen)
{
    size_t idx;
    struct lk_item *it;

    assert(lk->state == LK_NEW);
    assert(klen >= 1 && klen <= FR_STORE_MAX_KEY);
    idx = index_find(lk, key, klen);
    if (idx != SIZE_MAX)
        return idx;
    if (lk->n == lk->cap) {
        lk->cap *= 2;
        lk->items = fr_xrealloc(lk->items, lk->cap * sizeof(*lk->items));
    }
    if ((lk->n + 1) * 2 > lk->slot_mask + 1)
        index_grow(lk);
    it = &lk->items[lk->n];
    it->lk = lk;
    it->key_off = (uint32_t)lk->keys.len;
    it->key_len = (uint32_t)klen;
    it->state = FR_STORE_ITEM_PENDING;
    if (fr_buf_append(&lk->keys, key, klen) != 0 || fr_buf_putc(&lk->keys, '\0') != 0) {
        /* 64 MiB of keys: the caller's bounds (1000 x 256 bytes) prevent it */
        fr_error("store: lookup key buffer full");
        abort();
    }
    idx = lk->n++;
    index_insert(lk, idx);
    return idx;
}

static uint32_t *item_offs(const fr_store_lookup_t *lk, size_t i)
{
    return lk->offs + i * (lk->s->n_attrs + 1);
}

/* Renders a row given as text values (NULL = SQL null) into item i. */
static int render_row(fr_store_lookup_t *lk, size_t i, const char *const *vals, const size_t *lens)
{
    fr_store_t *s = lk->s;
    uint32_t *off = item_offs(lk, i);
    size_t start = lk->vals.len;

    for (size_t j = 0; j < s->n_attrs; j++) {
        off[j] = (uint32_t)lk->vals.len;
        if (fr_render_value(&lk->vals, s->types[j], vals[j], lens[j]) != 0)
            goto out_truncate;
    }
    off[s->n_attrs] = (uint32_t)lk->vals.len;
    return 0;

out_truncate:
    lk->vals.len = start;
    return -ENOBUFS;
}

static void maybe_cache(fr_store_lookup_t *lk, size_t i)
{
    fr_store_t *s = lk->s;
    const struct lk_item *it = &lk->items[i];

    /* An invalidation since we asked may concern this key: don't cache
     * what may be stale; the next read fetches it again. */
    if (!s->caching || lk->gen != s->gen || lk->from_replica)
        return;
    if (fr_lru_put(s->lru, item_key(lk, it), it->key_len, lk->vals.data, item_offs(lk, i)) != 0)
        fr_warn("store: row too large for the process cache");
}

static void complete(fr_store_lookup_t *lk)
{
    set_state(lk, LK_DONE);
    lk->cb(lk, lk->data); /* may free lk */
}

static void fail_pending(fr_store_lookup_t *lk, const char *why)
{
    for (size_t i = 0; i < lk->n; i++) {
        if (lk->items[i].state == FR_STORE_ITEM_PENDING) {
            lk->items[i].state = FR_STORE_ITEM_ERROR;
            lk->error = why;
        }
    }
}

static int send_pg(fr_store_lookup_t *lk, bool try_prepared);

static void on_pg_result(fr_pg_t *pg, PGresult *res, void *data)
{
    fr_store_lookup_t *lk = data;
    fr_store_t *s = lk->s;
    int ncols = (int)s->n_attrs + 1;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (pg != *s->pg_ref)
        lk->from_replica = true;

    if (state && strcmp(state, "26000") == 0 && lk->used_prepared) {
        /* The statements were prepared at connect time, before the table
         * existed (the loader creates it): use plain queries from now on. */
        s->prepared_broken = true;
        if (send_pg(lk, false) == 0)
            return;
    }
    if (state && strcmp(state, "42P01") == 0) {
        /* no table yet: nothing was loaded, so every key is unknown */
        if (warn_due(&s->warn_pg_ms))
            fr_warn("store: %s", PQresultErrorMessage(res));
    } else if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != ncols) {
        if (warn_due(&s->warn_pg_ms))
            fr_warn("store: PostgreSQL read of %s failed: %s", s->cache,
                    !res ? "connection lost or timed out" : PQresultErrorMessage(res));
        fail_pending(lk, lk->redis_failed ? "Redis and PostgreSQL are unavailable" : "PostgreSQL is unavailable");
        complete(lk);
        return;
    }
    for (int r = 0; PQresultStatus(res) == PGRES_TUPLES_OK && r < PQntuples(res); r++) {
        const char *key = PQgetvalue(res, r, 0);
        size_t klen = (size_t)PQgetlength(res, r, 0);
        size_t i = index_find(lk, key, klen);

        if (i == SIZE_MAX || lk->items[i].state != FR_STORE_ITEM_PENDING)
            continue;
        for (size_t j = 0; j < s->n_attrs; j++) {
            bool null = PQgetisnull(res, r, (int)j + 1);
            s->tmp_vals[j] = null ? NULL : PQgetvalue(res, r, (int)j + 1);
            s->tmp_lens[j] = null ? 0 : (size_t)PQgetlength(res, r, (int)j + 1);
        }
        if (render_row(lk, i, s->tmp_vals, s->tmp_lens) != 0) {
            lk->items[i].state = FR_STORE_ITEM_ERROR;
            lk->error = "Result too large";
            continue;
        }
        lk->items[i].state = FR_STORE_ITEM_FOUND;
        (*s->c_pg_hit)++;
        maybe_cache(lk, i);
    }
    for (size_t i = 0; i < lk->n; i++) {
        if (lk->items[i].state == FR_STORE_ITEM_PENDING) {
            lk->items[i].state = FR_STORE_ITEM_MISSING;
            (*s->c_pg_miss)++;
        }
    }
    complete(lk);
}

static bool ensure_prepared(fr_store_t *s, fr_pg_t *pg)
{
    int rc;

    if (s->prepared)
        return !s->prepared_broken;
    rc = fr_pg_prepare(pg, PG_STMT_ONE, s->sql_one, 1);
    if (rc != 0 && rc != -EEXIST)
        return false;
    rc = fr_pg_prepare(pg, PG_STMT_MANY, s->sql_many, 1);
    if (rc != 0 && rc != -EEXIST)
        return false;
    s->prepared = true;
    return !s->prepared_broken;
}

/* Appends the PostgreSQL array literal {"k1","k2"} of the pending keys. */
static void put_array_literal(const fr_store_lookup_t *lk, struct fr_buf *b)
{
    bool first = true;

    (void)fr_buf_putc(b, '{');
    for (size_t i = 0; i < lk->n; i++) {
        const struct lk_item *it = &lk->items[i];
        const char *k = item_key(lk, it);
        if (it->state != FR_STORE_ITEM_PENDING)
            continue;
        if (!first)
            (void)fr_buf_putc(b, ',');
        first = false;
        (void)fr_buf_putc(b, '"');
        for (size_t c = 0; c < it->key_len; c++) {
            if (k[c] == '"' || k[c] == '\\')
                (void)fr_buf_putc(b, '\\');
            (void)fr_buf_putc(b, k[c]);
        }
        (void)fr_buf_putc(b, '"');
    }
    (void)fr_buf_putc(b, '}');
}

/* Sends the one PostgreSQL query of this lookup for its pending keys
 * (there is at least one). Returns 0 (on_pg_result will fire) or < 0. */
static int send_pg(fr_store_lookup_t *lk, bool try_prepared)
{
    fr_store_t *s = lk->s;
    fr_pg_t *pg = *s->pg_ref;
    size_t pending = 0, last = 0;
    const char *param;
    struct fr_buf arr;
    bool prepared;
    int rc;

    if (!pg || !fr_pg_connected(pg))
        return -ENOTCONN;
    for (size_t i = 0; i < lk->n; i++) {
        if (lk->items[i].state == FR_STORE_ITEM_PENDING) {
            pending++;
            last = i;
        }
    }
    fr_readpool_t *rp = s->rp_ref ? *s->rp_ref : NULL;
    prepared = !rp && try_prepared && ensure_prepared(s, pg);
    lk->used_prepared = prepared;
    fr_buf_init(&arr, 0);
    if (rp) { /* replicas (plain statements: they are not prepared there) */
        const char *caller = lk->caller[0] ? lk->caller : NULL;
        if (pending == 1) {
            param = item_key(lk, &lk->items[last]);
            rc = fr_readpool_query(rp, pg, caller, s->sql_one, 1, &param, on_pg_result, lk);
        } else {
            put_array_literal(lk, &arr);
            param = arr.data;
            rc = fr_readpool_query(rp, pg, caller, s->sql_many, 1, &param, on_pg_result, lk);
        }
    } else if (pending == 1) {
        param = item_key(lk, &lk->items[last]);
        if (prepared)
            rc = fr_pg_exec(pg, PG_STMT_ONE, 1, &param, NULL, on_pg_result, lk);
        else
            rc = fr_pg_query(pg, s->sql_one, 1, &param, NULL, on_pg_result, lk);
    } else {
        put_array_literal(lk, &arr);
        param = arr.data;
        if (prepared)
            rc = fr_pg_exec(pg, PG_STMT_MANY, 1, &param, NULL, on_pg_result, lk);
        else
            rc = fr_pg_query(pg, s->sql_many, 1, &param, NULL, on_pg_result, lk);
    }
    fr_buf_deinit(&arr);
    return rc;
}

static void pg_phase(fr_store_lookup_t *lk)
{
    fr_store_t *s = lk->s;
    bool pending = false;
    int rc;

    set_state(lk, LK_PG);
    for (size_t i = 0; i < lk->n && !pending; i++)
        pending = lk->items[i].state == FR_STORE_ITEM_PENDING;
    if (!pending) {
        complete(lk);
        return;
    }
    rc = send_pg(lk, true);
    if (rc == 0)
        return; /* on_pg_result completes */
    if (warn_due(&s->warn_pg_ms))
        fr_warn("store: PostgreSQL unreachable for %s reads: %s", s->cache, strerror(-rc));
    fail_pending(lk, lk->redis_failed ? "Redis and PostgreSQL are unavailable" : "PostgreSQL is unavailable");
    complete(lk);
}

static void redis_failed(fr_store_lookup_t *lk, const char *why)
{
    fr_store_t *s = lk->s;

    lk->redis_failed = true;
    if (warn_due(&s->warn_redis_ms))
        fr_warn("store: Redis read of %s failed (%s): falling back to PostgreSQL", s->cache, why);
}

/* Renders a HGETALL reply (field, value, field, value ...) into item i. */
static int render_hash(fr_store_lookup_t *lk, size_t i, const redisReply *reply)
{
    fr_store_t *s = lk->s;

    for (size_t j = 0; j < s->n_attrs; j++) {
        s->tmp_vals[j] = NULL;
        s->tmp_lens[j] = 0;
    }
    for (size_t e = 0; e + 1 < reply->elements; e += 2) {
        const redisReply *f = reply->element[e];
        const redisReply *v = reply->element[e + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        for (size_t j = 0; j < s->n_attrs; j++) {
            if (strlen(s->attrs[j]) == (size_t)f->len && memcmp(s->attrs[j], f->str, (size_t)f->len) == 0) {
                s->tmp_vals[j] = v->str;
                s->tmp_lens[j] = (size_t)v->len;
                break;
            }
        }
    }
    return render_row(lk, i, s->tmp_vals, s->tmp_lens);
}

static void on_hgetall(fr_redis_t *r, redisReply *reply, void *data)
{
    struct lk_item *it = data;
    fr_store_lookup_t *lk = it->lk;
    fr_store_t *s = lk->s;
    size_t i = (size_t)(it - lk->items);
    (void)r;

    lk->outstanding--;
    if (!reply) {
        (*s->c_redis_miss)++;
        redis_failed(lk, "no reply: timeout or connection lost");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        (*s->c_redis_miss)++;
        redis_failed(lk, reply->str);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        if (render_hash(lk, i, reply) == 0) {
            it->state = FR_STORE_ITEM_FOUND;
            (*s->c_redis_hit)++;
            maybe_cache(lk, i);
        } else {
            (*s->c_redis_miss)++;
        }
    } else {
        (*s->c_redis_miss)++; /* empty hash: not in Redis */
    }
    if (!lk->issuing && lk->outstanding == 0)
        pg_phase(lk);
}

static void redis_phase(fr_store_lookup_t *lk)
{
    fr_store_t *s = lk->s;
    fr_redis_t *r = *s->redis_ref;
    char key[FR_STORE_MAX_KEY + 160];
    const char *argv[2];
    size_t argvlen[2];

    set_state(lk, LK_REDIS);
    if (!r || !fr_redis_connected(r)) {
        for (size_t i = 0; i < lk->n; i++)
            if (lk->items[i].state == FR_STORE_ITEM_PENDING)
                (*s->c_redis_miss)++;
        redis_failed(lk, "not connected");
        pg_phase(lk);
        return;
    }
    memcpy(key, s->cache, s->cache_len);
    key[s->cache_len] = ':';
    argv[0] = "HGETALL";
    argvlen[0] = 7;
    argv[1] = key;
    lk->issuing = true;
    for (size_t i = 0; i < lk->n; i++) {
        struct lk_item *it = &lk->items[i];
        int rc;
        if (it->state != FR_STORE_ITEM_PENDING)
            continue;
        memcpy(key + s->cache_len + 1, item_key(lk, it), it->key_len);
        argvlen[1] = s->cache_len + 1 + it->key_len;
        lk->outstanding++;
        rc = fr_redis_commandv(r, REDIS_TIMEOUT_MS, on_hgetall, it, 2, argv, argvlen);
        if (rc != 0) {
            lk->outstanding--;
            (*s->c_redis_miss)++;
            redis_failed(lk, strerror(-rc));
        }
    }
    lk->issuing = false;
    if (lk->outstanding == 0)
        pg_phase(lk);
}

void fr_store_set_readpool(fr_store_t *s, fr_readpool_t *const *rp_ref)
{
    s->rp_ref = rp_ref;
}

void fr_store_lookup_set_caller(fr_store_lookup_t *lk, const char *caller)
{
    snprintf(lk->caller, sizeof(lk->caller), "%s", caller ? caller : "");
}

void fr_store_lookup_start(fr_store_lookup_t *lk, bool probed, fr_store_cb cb, void *data)
{
    fr_store_t *s = lk->s;
    size_t pending = 0;
    size_t stride = s->n_attrs + 1;

    lk->cb = cb;
    lk->data = data;
    lk->offs = fr_xcalloc(lk->n ? lk->n * stride : 1, sizeof(*lk->offs));
    set_state(lk, LK_PROCESS);
    for (size_t i = 0; i < lk->n; i++) {
        struct lk_item *it = &lk->items[i];
        const struct fr_lru_entry *e = probed ? NULL : fr_store_cached(s, item_key(lk, it), it->key_len);
        if (!e) {
            pending++;
            continue;
        }
        struct fr_row_view v = fr_lru_entry_row(e);
        uint32_t *off = item_offs(lk, i);
        size_t base = lk->vals.len;
        if (fr_buf_append(&lk->vals, v.base + v.off[0], v.off[s->n_attrs] - v.off[0]) != 0) {
            pending++;
            continue;
        }
        for (size_t j = 0; j <= s->n_attrs; j++)
            off[j] = (uint32_t)(base + v.off[j] - v.off[0]);
        it->state = FR_STORE_ITEM_FOUND;
    }
    if (pending == 0) {
        complete(lk);
        return;
    }
    lk->gen = s->gen;
    redis_phase(lk);
}

size_t fr_store_lookup_count(const fr_store_lookup_t *lk)
{
    return lk->n;
}

enum fr_store_item fr_store_lookup_item(const fr_store_lookup_t *lk, size_t i)
{
    return (enum fr_store_item)lk->items[i].state;
}

const char *fr_store_lookup_key(const fr_store_lookup_t *lk, size_t i, size_t *len)
{
    *len = lk->items[i].key_len;
    return item_key(lk, &lk->items[i]);
}

struct fr_row_view fr_store_lookup_row(const fr_store_lookup_t *lk, size_t i)
{
    struct fr_row_view v;

    v.base = lk->vals.data;
    v.off = item_offs(lk, i);
    return v;
}

const char *fr_store_lookup_error(const fr_store_lookup_t *lk)
{
    return lk->error;
}
