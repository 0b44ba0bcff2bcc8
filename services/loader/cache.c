/* cache: writes model rows into their Redis cache keys "{cache}:{key}" and
 * resyncs whole caches. Each key is replaced atomically, so readers see the
 * old row or the new one, never half of it (a NULL column is an absent
 * field): DEL + HSET, or SET for JSON caches, inside MULTI/EXEC groups of up
 * to LD_CACHE_GROUP keys; on a Redis Cluster each key on its own (see
 * one_command). Commands of a group are pipelined and their replies
 * counted. A resync writes every row of the model, then SCANs the cache's
 * keys and deletes those the model no longer has; it holds neither the
 * model nor the key set in memory: in one transaction on app->pg, it reads
 * the model through a cursor LD_PAGE_ROWS rows at a time, writes each page,
 * copies each SCAN page's keys into a temporary table, and reads back the
 * keys no row has (the stale ones) a page at a time to DEL. Uses app->redis, and one
 * writer (ld->cw): a refresh's writes and a resync never overlap, as the
 * scheduler runs a resync only when no refresh is in flight. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader_int.h"
#include "log.h"
#include "names.h"
#include "sql.h"

#define SCAN_COUNT "1000"

static void group_done(struct ld_cachew *cw);
static void scan_next(struct ld_cachew *cw);
static void fetch_page(struct ld_cachew *cw);

static void on_unlocked(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    (void)res;
    (void)data;
}

static void finish(struct ld_cachew *cw, int status)
{
    struct loader *ld = cw->ld;
    ld_done_cb done = cw->done;

    /* The transaction first: an unlock sent inside an aborted one would
     * fail, and the session's lock would outlive the resync. */
    if (cw->txn) { /* a resync that did not reach its COMMIT (a lost connection ended it already) */
        cw->txn = false;
        if (fr_pg_connected(ld->app->pg) &&
            fr_pg_query(ld->app->pg, "ROLLBACK", 0, NULL, NULL, on_unlocked, NULL) != 0)
            fr_debug("cache resync: ROLLBACK not sent (the connection is going: it ends the transaction)");
    }
    if (cw->locked) { /* a resync's model lock (model.c "the model lock") */
        const char *params[1] = {cw->cache->model->state_name};
        cw->locked = false;
        if (fr_pg_connected(ld->app->pg))
            if (fr_pg_query(ld->app->pg, FR_SQL_MODEL_UNLOCK, 1, params, NULL, on_unlocked, NULL) != 0)
                fr_debug("model %s: unlock not sent (the connection is going: it releases the lock)", params[0]);
    }
    fr__rows_deinit(&cw->own_rows);
    free(cw->cursor);
    cw->cursor = NULL;
    cw->done = NULL;
    if (done)
        done(ld, status);
}

static void on_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_cachew *cw = data;

    (void)r;
    if (fr__loader_gone(cw->ld))
        return;
    if (!reply)
        cw->failed = true;
    else if (reply->type == REDIS_REPLY_ERROR)
        fr_warn("cache %s: Redis error: %s", cw->cache->c->name, reply->str);
    if (--cw->outstanding == 0)
        group_done(cw);
}

static bool queue_cmd(struct ld_cachew *cw, int argc, const char **argv, const size_t *lens)
{
    if (cw->failed)
        return false;
    if (fr_redis_commandv(cw->ld->app->redis, 0, on_reply, cw, argc, argv, lens) != 0) {
        cw->failed = true;
        return false;
    }
    cw->outstanding++;
    return true;
}

static bool is_number_text(const char *v)
{
    double d;
    return fr_parse_double(v, strlen(v), &d);
}

static void row_json(const struct ld_cachew *cw, size_t row, struct fr_buf *j)
{
    const struct fr_model *m = cw->cache->model->m;
    bool first = true;

    (void)fr_buf_putc(j, '{');
    for (size_t c = 0; c < cw->rows->n_cols && c < m->n_columns; c++) {
        int len;
        const char *v = fr__rows_val(cw->rows, row, c, &len);

        if (!first)
            (void)fr_buf_putc(j, ',');
        first = false;
        (void)fr_buf_json_str(j, m->columns[c].name, strlen(m->columns[c].name));
        (void)fr_buf_putc(j, ':');
        if (!v) {
            (void)fr_buf_puts(j, "null");
            continue;
        }
        switch (m->columns[c].type) {
        case FR_T_INT:
        case FR_T_BIGINT:
        case FR_T_FLOAT:
        case FR_T_NUMERIC:
            if (is_number_text(v))
                (void)fr_buf_append(j, v, (size_t)len);
            else
                (void)fr_buf_json_str(j, v, (size_t)len); /* NaN, Infinity */
            break;
        case FR_T_BOOL:
            (void)fr_buf_puts(j, v[0] == 't' ? "true" : "false");
            break;
        case FR_T_JSON:
            (void)fr_buf_append(j, v, (size_t)len);
            break;
        default:
            (void)fr_buf_json_str(j, v, (size_t)len);
            break;
        }
    }
    (void)fr_buf_putc(j, '}');
}

/* True on a Redis Cluster, where a group's MULTI/EXEC would become one
 * transaction per key anyway (each key its own slot): there each key is
 * written on its own, pipelined: one HSET for a hash row whose columns are
 * all set while the keys are known to hold model columns only
 * (fields_known, fr_names_cache_fields), else MULTI, DEL, HSET (and
 * EXPIRE), EXEC on that key; a SET (which replaces any value) for a JSON
 * string. Measured on one redis-server: the transaction costs 3.4 us of
 * Redis CPU a key where a script doing the same cost 6.0 to 7.4 us. */
static bool one_command(const struct ld_cachew *cw)
{
    return fr_redis_is_cluster(cw->ld->app->redis);
}

/* The model's column names, comma-separated (fr_names_cache_fields' value). */
static char *fields_of(const struct fr_model *m)
{
    struct fr_buf b;
    char *out;
    fr_buf_init(&b, 0);
    for (size_t i = 0; i < m->n_columns; i++) {
        if (i)
            (void)fr_buf_putc(&b, ',');
        (void)fr_buf_puts(&b, m->columns[i].name);
    }
    out = fr_xstrdup(b.len ? b.data : "");
    fr_buf_deinit(&b);
    return out;
}

/* A hash row the cluster path may write with one HSET: every column set, no
 * TTL, and the keys known to hold no field but the model's columns. */
static bool whole_hset(const struct ld_cachew *cw, size_t row, size_t n)
{
    if (!cw->fields_known || cw->cache->c->ttl_s || n != cw->cache->model->m->n_columns)
        return false;
    for (size_t col = 0; col < n; col++) {
        int len;
        if (!fr__rows_val(cw->rows, row, col, &len))
            return false;
    }
    return true;
}

/* Queues the commands of one row. */
static void write_row(struct ld_cachew *cw, size_t row)
{
    const struct fr_cache *c = cw->cache->c;
    const struct fr_model *m = cw->cache->model->m;
    const struct ld_rows *rows = cw->rows;
    int klen;
    const char *kv = fr__rows_val(rows, row, (size_t)cw->cache->key_col, &klen);
    char *key;
    char ttl[16];

    if (!kv)
        return;
    key = fr_names_cache(c->name, kv);
    snprintf(ttl, sizeof(ttl), "%u", c->ttl_s);
    if (!one_command(cw) || rows->deleted[row]) {
        const char *argv[] = {"DEL", key};
        if (!queue_cmd(cw, 2, argv, NULL))
            goto out_key;
    }
    if (rows->deleted[row])
        goto out_key;
    if (one_command(cw) && c->kind == FR_CACHE_HASH) {
        size_t n = rows->n_cols < m->n_columns ? rows->n_cols : m->n_columns;
        const char **argv = fr_xcalloc(2 + 2 * n, sizeof(*argv));
        size_t *lens = fr_xcalloc(2 + 2 * n, sizeof(*lens));
        bool whole = whole_hset(cw, row, n);
        int argc = 0;

        if (!whole) {
            const char *mu[] = {"MULTI"}, *del[] = {"DEL", key};
            (void)queue_cmd(cw, 1, mu, NULL);
            (void)queue_cmd(cw, 2, del, NULL);
        }
        argv[argc] = "HSET";
        lens[argc++] = 4;
        argv[argc] = key;
        lens[argc++] = strlen(key);
        for (size_t col = 0; col < n; col++) {
            int len;
            const char *v = fr__rows_val(rows, row, col, &len);
            if (!v)
                continue; /* null: an absent field */
            argv[argc] = m->columns[col].name;
            lens[argc++] = strlen(m->columns[col].name);
            argv[argc] = v;
            lens[argc++] = (size_t)len;
        }
        if (argc > 2)
            (void)queue_cmd(cw, argc, argv, lens);
        if (!whole) {
            const char *ex[] = {"EXPIRE", key, ttl}, *exec[] = {"EXEC"};
            if (c->ttl_s)
                (void)queue_cmd(cw, 3, ex, NULL);
            (void)queue_cmd(cw, 1, exec, NULL);
        }
        free(argv);
        free(lens);
        (*cw->ld->m_cache_keys)++;
        goto out_key;
    }
    if (c->kind == FR_CACHE_JSON) {
        struct fr_buf j;
        const char *argv[5] = {"SET", key, NULL, "EX", ttl};
        size_t lens[5];
        fr_buf_init(&j, 0);
        row_json(cw, row, &j);
        argv[2] = j.data;
        for (int i = 0; i < 5; i++)
            lens[i] = i == 2 ? j.len : strlen(argv[i]);
        (void)queue_cmd(cw, c->ttl_s ? 5 : 3, argv, lens);
        fr_buf_deinit(&j);
    } else {
        size_t n = rows->n_cols < m->n_columns ? rows->n_cols : m->n_columns;
        const char **argv = fr_xcalloc(2 + 2 * n, sizeof(*argv));
        size_t *lens = fr_xcalloc(2 + 2 * n, sizeof(*lens));
        int argc = 0;

        argv[argc] = "HSET";
        lens[argc++] = 4;
        argv[argc] = key;
        lens[argc++] = strlen(key);
        for (size_t col = 0; col < n; col++) {
            int len;
            const char *v = fr__rows_val(rows, row, col, &len);
            if (!v)
                continue; /* null: an absent field */
            argv[argc] = m->columns[col].name;
            lens[argc++] = strlen(m->columns[col].name);
            argv[argc] = v;
            lens[argc++] = (size_t)len;
        }
        if (argc > 2)
            (void)queue_cmd(cw, argc, argv, lens);
        free(argv);
        free(lens);
        if (c->ttl_s) {
            const char *ex[] = {"EXPIRE", key, ttl};
            (void)queue_cmd(cw, 3, ex, NULL);
        }
    }
    (*cw->ld->m_cache_keys)++;
out_key:
    free(key);
}

static void write_group(struct ld_cachew *cw)
{
    size_t end;

    if (cw->next >= cw->rows->n_rows) {
        if (cw->resync && !cw->last_page) {
            fetch_page(cw);
        } else if (cw->resync) {
            free(cw->cursor);
            cw->cursor = fr_xstrdup("0");
            scan_next(cw);
        } else {
            finish(cw, 0);
        }
        return;
    }
    end = cw->next + LD_CACHE_GROUP;
    if (end > cw->rows->n_rows)
        end = cw->rows->n_rows;
    cw->outstanding = 1; /* held while sending */
    if (!one_command(cw)) {
        const char *multi[] = {"MULTI"};
        (void)queue_cmd(cw, 1, multi, NULL);
    }
    for (; cw->next < end && !cw->failed; cw->next++)
        write_row(cw, cw->next);
    if (!one_command(cw)) {
        const char *exec[] = {"EXEC"};
        (void)queue_cmd(cw, 1, exec, NULL);
    }
    if (--cw->outstanding == 0)
        group_done(cw);
}

static void group_done(struct ld_cachew *cw)
{
    if (cw->failed) {
        fr_warn("cache %s: Redis lost while writing; a resync follows the reconnect", cw->cache->c->name);
        finish(cw, -EIO);
        return;
    }
    write_group(cw);
}

void fr__cache_write(struct loader *ld, struct ld_cache *c, const struct ld_rows *rows, ld_done_cb done)
{
    struct ld_cachew *cw = &ld->cw;

    memset(cw, 0, sizeof(*cw));
    cw->ld = ld;
    cw->cache = c;
    cw->rows = rows;
    cw->done = done;
    cw->fields_known = c->fields_known;
    write_group(cw);
}

/* ---- resync ---------------------------------------------------------------------- */

/* A resync statement's result: false (and the resync ended) unless it is
 * `want`. A NULL result is a lost connection, or a statement cancelled
 * after its timeout on a live one: finish() rolls back when it is live. An
 * error ends the resync with `err`: -EPROTO (the model cannot be read: not
 * retried until the next reconnect) or -EIO (retried). */
static bool resync_ok(struct ld_cachew *cw, const PGresult *res, ExecStatusType want, const char *what, int err)
{
    if (!res) {
        finish(cw, -ENOTCONN);
        return false;
    }
    if (PQresultStatus(res) != want) {
        fr_error("cache %s: resync (%s) failed: %s", cw->cache->c->name, what, PQresultErrorMessage(res));
        finish(cw, err);
        return false;
    }
    return true;
}

/* Statements whose result only matters when it is an error: the next
 * statement's own result (aborted after a failure) ends the resync. */
static void on_resync_step(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_cachew *cw = data;

    (void)pg;
    if (fr__loader_gone(cw->ld) || !res)
        return;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) /* the cause; the next statement's error ends the resync */
        fr_error("cache %s: resync: %s", cw->cache->c->name, PQresultErrorMessage(res));
}

static void on_row_page(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_cachew *cw = data;

    (void)pg;
    if (fr__loader_gone(cw->ld) || !resync_ok(cw, res, PGRES_TUPLES_OK, "read the model", cw->total ? -EIO : -EPROTO))
        return;
    fr__rows_deinit(&cw->own_rows);
    fr__rows_from_result(&cw->own_rows, res, false);
    cw->rows = &cw->own_rows;
    cw->next = 0;
    cw->last_page = cw->own_rows.n_rows < LD_PAGE_ROWS;
    cw->total += cw->own_rows.n_rows;
    write_group(cw);
}

/* The next page of the cursor fr_resync: the model's rows, or the stale
 * keys once the SCAN is done. */
static void fetch_page(struct ld_cachew *cw);
static void on_stale_page(fr_pg_t *pg, PGresult *res, void *data);

static int send_fetch(struct ld_cachew *cw, fr_pg_cb cb)
{
    char q[64];
    snprintf(q, sizeof(q), "FETCH FORWARD %d FROM fr_resync", LD_PAGE_ROWS);
    return fr_pg_query(cw->ld->app->pg, q, 0, NULL, NULL, cb, cw);
}

static void fetch_page(struct ld_cachew *cw)
{
    if (send_fetch(cw, on_row_page) != 0) {
        finish(cw, -ENOTCONN);
    }
}

static void on_fields_set(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)data;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        fr_warn("cache fields record not written: %s", reply->str);
}

/* Every row written and every stale key deleted: the resync is done. */
static void resync_done(struct ld_cachew *cw)
{
    struct loader *ld = cw->ld;
    struct ld_cache *c = cw->cache;
    struct fr_buf j;

    fr_info("cache %s resynced: %zu keys in %.1f ms (%zu stale deleted)", c->c->name, cw->total,
            (double)(fr_mono_ns() - cw->start_ns) / 1e6, cw->stale);
    c->need_resync = false;
    if (one_command(cw) && c->c->kind == FR_CACHE_HASH) {
        /* every key written whole: its fields are the model's columns;
         * the record tells the next resync (any loader) so */
        char *k = fr_names_cache_fields(c->c->name);
        char *v = fields_of(c->model->m);
        const char *argv[] = {"SET", k, v};
        if (fr_redis_commandv(ld->app->redis, 0, on_fields_set, NULL, 3, argv, NULL) != 0)
            fr_warn("cache %s: fields record not sent (the next resync writes every key in full)", c->c->name);
        c->fields_known = true;
        free(k);
        free(v);
    }
    fr_buf_init(&j, 0);
    fr__event_begin(&j, "cache.refreshed");
    (void)fr_buf_puts(&j, ",\"cache\":");
    (void)fr_buf_json_str(&j, c->c->name, strlen(c->c->name));
    (void)fr_buf_puts(&j, ",\"pipeline\":");
    (void)fr_buf_json_str(&j, c->p->name, strlen(c->p->name));
    (void)fr_buf_puts(&j, ",\"all\":true}");
    fr__loader_publish(ld, &j);
    fr_buf_deinit(&j);
    finish(cw, 0);
}

static void on_committed(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_cachew *cw = data;

    (void)pg;
    if (fr__loader_gone(cw->ld))
        return;
    if (!resync_ok(cw, res, PGRES_COMMAND_OK, "commit", -EIO))
        return;
    cw->txn = false;
    resync_done(cw);
}

static void on_del(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_cachew *cw = data;

    (void)r;
    if (fr__loader_gone(cw->ld))
        return;
    if (!reply) {
        finish(cw, -EIO);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR)
        fr_warn("cache %s: DEL of stale keys failed: %s", cw->cache->c->name, reply->str);
    if (!cw->last_page) {
        if (send_fetch(cw, on_stale_page) != 0)
            finish(cw, -ENOTCONN);
        return;
    }
    if (fr_pg_query(cw->ld->app->pg, "COMMIT", 0, NULL, NULL, on_committed, cw) != 0) {
        finish(cw, -ENOTCONN);
    }
}

/* A page of stale keys: DEL them (one command), then the next page. */
static void on_stale_page(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_cachew *cw = data;
    int n;
    char **keys;
    const char **argv;
    int rc;

    (void)pg;
    if (fr__loader_gone(cw->ld) || !resync_ok(cw, res, PGRES_TUPLES_OK, "find stale keys", -EIO))
        return;
    n = PQntuples(res);
    cw->last_page = n < LD_PAGE_ROWS;
    keys = fr_xcalloc((size_t)n + 1, sizeof(*keys));
    argv = fr_xcalloc((size_t)n + 1, sizeof(*argv));
    argv[0] = "DEL";
    for (int i = 0; i < n; i++) {
        keys[i] = fr_names_cache(cw->cache->c->name, PQgetvalue(res, i, 0));
        argv[i + 1] = keys[i];
    }
    if (n > 0) {
        fr_info("cache %s: deleting %d stale keys", cw->cache->c->name, n);
        cw->stale += (size_t)n;
        rc = fr_redis_commandv(cw->ld->app->redis, 0, on_del, cw, n + 1, argv, NULL);
    } else {
        /* nothing to delete: the same path, a PING's reply standing for the DEL's */
        const char *ping[] = {"PING"};
        rc = fr_redis_commandv(cw->ld->app->redis, 0, on_del, cw, 1, ping, NULL);
    }
    for (int i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    if (rc != 0)
        finish(cw, -EIO);
}

static void on_stale_declared(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_cachew *cw = data;

    (void)pg;
    if (fr__loader_gone(cw->ld) || !resync_ok(cw, res, PGRES_COMMAND_OK, "find stale keys", -EIO))
        return;
    if (send_fetch(cw, on_stale_page) != 0) {
        finish(cw, -ENOTCONN);
    }
}

/* The SCAN is done: its keys are in fr_cachekeys. */
static void find_stale(struct ld_cachew *cw)
{
    struct fr_buf s;
    int rc;

    fr_buf_init(&s, 0);
    rc = fr_pg_query(cw->ld->app->pg, "CLOSE fr_resync", 0, NULL, NULL, on_resync_step, cw);
    fr_sql_resync_stale(&s, cw->cache->model->m, (size_t)cw->cache->key_col);
    if (rc == 0)
        rc = fr_pg_query(cw->ld->app->pg, s.data, 0, NULL, NULL, on_stale_declared, cw);
    fr_buf_deinit(&s);
    if (rc != 0) {
        finish(cw, -ENOTCONN);
    }
}

static void on_keys_added(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_cachew *cw = data;

    (void)pg;
    if (fr__loader_gone(cw->ld) || !resync_ok(cw, res, PGRES_COMMAND_OK, "note the cache's keys", -EIO))
        return;
    scan_next(cw);
}

static void on_bad_del(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_cachew *cw = data;

    (void)r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        fr_warn("cache %s: DEL of a key that is not text failed: %s", cw->cache->c->name, reply->str);
}

/* A SCAN page: its keys of this cache go into fr_cachekeys, then the next page. */
static void on_scan(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_cachew *cw = data;
    struct loader *ld = cw->ld;
    const char *name = cw->cache->c->name;
    size_t plen = strlen(name) + 1;
    const redisReply *keys;
    struct fr_buf arr;
    const char *params[1];
    bool first = true;
    int rc;

    (void)r;
    if (fr__loader_gone(ld))
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            fr_warn("cache %s: SCAN failed: %s", name, reply->str);
        finish(cw, -EIO);
        return;
    }
    free(cw->cursor);
    cw->cursor = fr_xstrndup(reply->element[0]->str, reply->element[0]->len);
    keys = reply->element[1];
    fr_buf_init(&arr, 0);
    (void)fr_buf_putc(&arr, '{');
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        char *suffix;
        if (k->type != REDIS_REPLY_STRING || k->len < plen || memcmp(k->str, name, plen - 1) != 0 ||
            k->str[plen - 1] != ':')
            continue;
        if (memchr(k->str, '\0', k->len) || !fr_utf8_valid(k->str + plen, k->len - plen)) {
            /* no row's text has it: stale, and not a text value to compare */
            const char *argv[] = {"DEL", k->str};
            const size_t lens[] = {3, k->len};
            if (fr_redis_commandv(ld->app->redis, 0, on_bad_del, cw, 2, argv, lens) == 0)
                cw->stale++;
            continue;
        }
        suffix = fr_xstrndup(k->str + plen, k->len - plen);
        fr__sql_array_elem(&arr, suffix, first);
        first = false;
        free(suffix);
    }
    (void)fr_buf_putc(&arr, '}');
    if (first) { /* none of ours in this page */
        fr_buf_deinit(&arr);
        scan_next(cw);
        return;
    }
    params[0] = arr.data;
    rc = fr_pg_query(ld->app->pg, FR_SQL_RESYNC_KEYS_ADD, 1, params, NULL, on_keys_added, cw);
    fr_buf_deinit(&arr);
    if (rc != 0) {
        finish(cw, -ENOTCONN);
    }
}

static void scan_next(struct ld_cachew *cw)
{
    struct loader *ld = cw->ld;
    char *pattern;

    if (strcmp(cw->cursor, "0") == 0 && cw->scanning) {
        find_stale(cw);
        return;
    }
    cw->scanning = true;
    pattern = fr_names_cache(cw->cache->c->name, "*");
    {
        const char *argv[] = {"SCAN", cw->cursor, "MATCH", pattern, "COUNT", SCAN_COUNT};
        if (fr_redis_commandv(ld->app->redis, 0, on_scan, cw, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0) {
            free(pattern);
            finish(cw, -EIO);
            return;
        }
    }
    free(pattern);
}

/* The resync's transaction: fr_cachekeys, the cursor over the model, its
 * first page. It reads the model holding its refresh lock (model.c), so it
 * never writes an older snapshot over what another loader's refresh wrote. */
static void resync_open(struct ld_cachew *cw)
{
    struct loader *ld = cw->ld;
    struct fr_buf s;
    int rc;

    fr_buf_init(&s, 0);
    fr_sql_resync_declare(&s, cw->cache->model->m);
    cw->txn = true;
    rc = fr_pg_query(ld->app->pg, "BEGIN", 0, NULL, NULL, on_resync_step, cw);
    if (rc == 0)
        rc = fr_pg_query(ld->app->pg, FR_SQL_RESYNC_KEYS_CREATE, 0, NULL, NULL, on_resync_step, cw);
    if (rc == 0)
        rc = fr_pg_query(ld->app->pg, s.data, 0, NULL, NULL, on_resync_step, cw);
    fr_buf_deinit(&s);
    if (rc == 0) {
        fetch_page(cw);
        return;
    }
    finish(cw, -ENOTCONN);
}

static void on_fields(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_cachew *cw = data;
    char *want;

    (void)r;
    if (fr__loader_gone(cw->ld))
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        finish(cw, -EIO);
        return;
    }
    want = fields_of(cw->cache->model->m);
    cw->fields_known = reply->type == REDIS_REPLY_STRING && strcmp(reply->str, want) == 0;
    free(want);
    resync_open(cw);
}

static void on_resync_locked(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_cachew *cw = data;

    (void)pg;
    if (fr__loader_gone(cw->ld))
        return;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        finish(cw, res ? -EIO : -ENOTCONN);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        fr_debug("cache %s: model %s is being refreshed by another loader; resync later", cw->cache->c->name,
                 cw->cache->model->state_name);
        finish(cw, -EBUSY);
        return;
    }
    cw->locked = true;
    if (one_command(cw) && cw->cache->c->kind == FR_CACHE_HASH) {
        /* which fields the keys may hold: the record of the last full write */
        char *k = fr_names_cache_fields(cw->cache->c->name);
        const char *argv[] = {"GET", k};
        int rc = fr_redis_commandv(cw->ld->app->redis, 0, on_fields, cw, 2, argv, NULL);
        free(k);
        if (rc != 0)
            finish(cw, -EIO);
        return;
    }
    resync_open(cw);
}

void fr__cache_resync(struct loader *ld, struct ld_cache *c, ld_done_cb done)
{
    struct ld_cachew *cw = &ld->cw;
    const char *params[1] = {c->model->state_name};

    memset(cw, 0, sizeof(*cw));
    cw->ld = ld;
    cw->cache = c;
    cw->done = done;
    cw->resync = true;
    cw->start_ns = fr_mono_ns();
    if (fr_pg_query(ld->app->pg, FR_SQL_MODEL_TRYLOCK, 1, params, NULL, on_resync_locked, cw) != 0)
        finish(cw, -ENOTCONN);
}
