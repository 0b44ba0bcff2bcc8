/* model: keeps select models fresh (aggregate models are maintained by the
 * batch loads themselves, load.c). Batches add the model keys they touch,
 * to every model reading their dataset directly or through an aggregate of
 * it; a model's refresh then adds the keys of its changed rows to the
 * models reading it. Refreshes are continuous: a model with keys waiting is
 * due coalesce_ms after the first of them (a full recompute during a
 * backlog also no sooner than its last duration after it ended), and not
 * while a model it reads has keys waiting or is refreshing (dependency
 * order). One statement recomputes those keys (or everything) with the
 * model's SQL and upserts/deletes only rows that changed; the changed rows
 * then go to the model's caches. Daily models are recomputed in full when
 * the UTC day of the pipeline's "now" turns. Refreshes run on the loader's
 * own connection (ld->refresh_pg), beside the batch loads on app->pg, which
 * never wait for them: they read committed data only, and keys touched
 * meanwhile wait in the model for the next refresh. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader_int.h"
#include "log.h"
#include "names.h"
#include "sql.h"
#include "testsql.h"

#define US_PER_DAY 86400000000LL

static int32_t day_of(int64_t us)
{
    int64_t d = us / US_PER_DAY;
    if (us < 0 && us % US_PER_DAY != 0)
        d--;
    return (int32_t)d;
}

void fr__model_build_sql(struct ld_model *lm)
{
    struct fr_buf s;

    fr_buf_init(&s, 0);
    fr_sql_model_refresh(&s, lm->m, false);
    free(lm->refresh_sql);
    lm->refresh_sql = fr_xstrdup(s.data);
    fr_buf_reset(&s);
    fr_sql_model_refresh(&s, lm->m, true);
    free(lm->refresh_all_sql);
    lm->refresh_all_sql = fr_xstrdup(s.data);
    fr_buf_reset(&s);
    fr_sql_model_page(&s, lm->m);
    free(lm->page_sql);
    lm->page_sql = fr_xstrdup(s.data);
    fr_buf_reset(&s);
    free(lm->test_sql);
    lm->test_sql = NULL;
    if (lm->m->n_tests > 0) {
        fr_testsql_build(&s, lm->m);
        lm->test_sql = fr_xstrdup(s.data);
    }
    fr_buf_deinit(&s);
}

static void mark_all(struct ld_model *m)
{
    m->hold = false;
    m->all = true;
    fr__keyset_clear(&m->touched);
    if (!m->first_touch_ms)
        m->first_touch_ms = 1; /* long ago: due at once */
    m->last_touch_ms = 1;
}

static bool is_aggregate(const struct ld_model *m)
{
    return m->m->kind == FR_MODEL_AGGREGATE;
}

/* True when select model m reads dataset `ds` directly or through an
 * aggregate model of it (maintained in the batch's transaction). */
static bool fed_by(const struct loader *ld, const struct ld_model *m, const struct fr_pipeline *p, const char *ds)
{
    if (m->p != p || is_aggregate(m))
        return false;
    for (size_t k = 0; k < m->m->n_inputs; k++) {
        if (strcmp(m->m->inputs[k], ds) == 0)
            return true;
        for (size_t j = 0; j < ld->n_models; j++) {
            const struct ld_model *a = &ld->models[j];
            if (a->p == p && is_aggregate(a) && strcmp(a->m->name, m->m->inputs[k]) == 0 &&
                strcmp(a->m->from, ds) == 0)
                return true;
        }
    }
    return false;
}

/* True when select model m reads select model `up`. */
static bool reads_model(const struct ld_model *m, const struct ld_model *up)
{
    if (m->p != up->p || is_aggregate(m) || is_aggregate(up) || m == up)
        return false;
    for (size_t k = 0; k < m->m->n_inputs; k++)
        if (strcmp(m->m->inputs[k], up->m->name) == 0)
            return true;
    return false;
}

void fr__model_touch(struct loader *ld, const struct ld_stream *st, const fr_batch_t *b)
{
    uint64_t now = fr_mono_ms();

    for (size_t i = 0; i < ld->n_models; i++) {
        struct ld_model *m = &ld->models[i];
        size_t ci = 0;
        bool found = false;

        if (!fed_by(ld, m, st->p, st->ds->name))
            continue;
        m->hold = false; /* a refresh that failed its data tests is retried after the next batch */
        if (!m->first_touch_ms)
            m->first_touch_ms = now;
        m->last_touch_ms = now;
        if (m->all)
            continue;
        if (m->key_col >= 0) {
            for (size_t c = 0; c < fr_batch_cols(b) && !found; c++) {
                if (strcmp(fr_batch_col_name(b, c), m->m->key[0]) == 0) {
                    ci = c;
                    found = true;
                }
            }
        }
        if (!found) {
            /* Composite key, or the batch does not carry it: recompute all. */
            m->all = true;
            fr__keyset_clear(&m->touched);
            continue;
        }
        for (size_t r = 0; r < fr_batch_rows(b); r++) {
            size_t len;
            const char *v = fr_batch_value(b, ci, r, &len);
            if (v)
                (void)fr__keyset_add(&m->touched, v, len);
            if (m->touched.n > LD_FULL_REFRESH_KEYS) {
                m->all = true;
                fr__keyset_clear(&m->touched);
                break;
            }
        }
    }
}

void fr__model_touch_all(struct loader *ld, const struct ld_stream *st)
{
    for (size_t i = 0; i < ld->n_models; i++) {
        struct ld_model *m = &ld->models[i];
        if (fed_by(ld, m, st->p, st->ds->name)) {
            mark_all(m);
            m->first_touch_ms = fr_mono_ms(); /* coalesce like any batch */
            m->last_touch_ms = m->first_touch_ms;
        }
    }
}

/* Select model `up` refreshed and changed `changed` rows: the models
 * reading it are stale for the keys of its changed rows (their values of
 * the reader's key column, in `rows`), or in full when `up` has no such
 * column or was refreshed in full (its rows were read in pages: `rows` is
 * not used then). */
static void touch_readers(struct loader *ld, const struct ld_model *up, const struct ld_rows *rows, bool all,
                          size_t changed)
{
    uint64_t now = fr_mono_ms();

    for (size_t i = 0; i < ld->n_models; i++) {
        struct ld_model *m = &ld->models[i];
        int ci;

        if (!reads_model(m, up) || changed == 0)
            continue;
        m->hold = false;
        if (!m->first_touch_ms)
            m->first_touch_ms = now;
        m->last_touch_ms = now;
        if (m->all)
            continue;
        ci = m->key_col >= 0 ? fr_column_index(up->m->columns, up->m->n_columns, m->m->key[0]) : -1;
        if (all || ci < 0) {
            mark_all(m);
            continue;
        }
        for (size_t r = 0; r < rows->n_rows; r++) {
            int len;
            const char *v = fr__rows_val(rows, r, (size_t)ci, &len);
            if (v)
                (void)fr__keyset_add(&m->touched, v, (size_t)len);
            if (m->touched.n > LD_FULL_REFRESH_KEYS) {
                mark_all(m);
                break;
            }
        }
    }
}

/* True while a select model m reads has keys waiting or is refreshing: m
 * waits, so that it refreshes once, after its inputs (dependency order). */
static bool upstream_pending(const struct loader *ld, const struct ld_model *m)
{
    for (size_t j = 0; j < ld->n_models; j++) {
        const struct ld_model *up = &ld->models[j];
        if (!reads_model(m, up))
            continue;
        if (up->all || up->touched.n > 0 || (ld->refreshing && ld->refresh.model == up))
            return true;
    }
    return false;
}

struct ld_model *fr__model_due(struct loader *ld, bool stream_idle, uint64_t *wait_ms)
{
    uint64_t now = fr_mono_ms();
    uint64_t best_due = UINT64_MAX;
    struct ld_model *best_m = NULL;

    for (size_t i = 0; i < ld->n_models; i++) {
        struct ld_model *m = &ld->models[i];
        uint64_t due;

        if (is_aggregate(m) || m->hold || upstream_pending(ld, m))
            continue;
        if (!m->all && m->touched.n == 0) {
            if (m->first_touch_ms && !m->all) /* touched with no key values (nulls) */
                m->first_touch_ms = 0;
            continue;
        }
        /* Continuous: coalesce_ms after the first change waiting, so a
         * change waits for at most the refresh running plus its own. A full
         * recompute during a backlog also waits as long as the last one
         * took since it ended: at most half of the time (loads run beside
         * refreshes on their own connection either way). */
        due = m->first_touch_ms + m->m->coalesce_ms;
        if (m->all && !stream_idle && m->last_end_ms + m->last_cost_ms > due)
            due = m->last_end_ms + m->last_cost_ms;
        if (m->retry_at_ms > due)
            due = m->retry_at_ms;
        /* The one due first: a model left due by a chunked refresh (its
         * other keys were touched at the take, below) queues behind models
         * waiting longer, instead of taking every turn. */
        if (due < best_due) {
            best_due = due;
            best_m = m;
        }
    }
    if (best_m && best_due <= now) {
        *wait_ms = 0;
        return best_m;
    }
    *wait_ms = best_m ? best_due - now : UINT64_MAX;
    return NULL;
}

void fr__model_day_check(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_models; i++) {
        struct ld_model *m = &ld->models[i];
        int32_t today;

        if (is_aggregate(m) || !m->m->daily || m->all || m->day == INT32_MIN)
            continue;
        if (ld->refreshing && ld->refresh.model == m)
            continue;
        today = day_of(fr_pipeline_now(m->p));
        if (today != m->day) {
            char d[12];
            fr_format_date(today, d);
            fr_info("model %s: the UTC day turned to %s, refreshing every key", m->state_name, d);
            mark_all(m);
        }
    }
}

/* ---- model_state ---------------------------------------------------------------- */

static void on_state(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    if (!res) {
        ld->state_done(ld, -ENOTCONN);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fr_error("cannot read freshet.model_state: %s", PQresultErrorMessage(res));
        ld->state_done(ld, -EIO);
        return;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        const char *name = PQgetvalue(res, r, 0);
        for (size_t i = 0; i < ld->n_models; i++) {
            int64_t d;
            const char *v = PQgetvalue(res, r, 1);
            if (strcmp(ld->models[i].state_name, name) != 0 || PQgetisnull(res, r, 1))
                continue;
            if (fr_parse_i64(v, strlen(v), &d))
                ld->models[i].day = (int32_t)d;
        }
    }
    /* Every model is recomputed in full at start (a model whose last full
     * refresh was another day must be; and a crash may have left keys of
     * acknowledged batches unrefreshed), then its caches resynced. */
    for (size_t i = 0; i < ld->n_models; i++)
        if (!is_aggregate(&ld->models[i]))
            mark_all(&ld->models[i]);
    ld->state_done(ld, 0);
}

void fr__model_load_state(struct loader *ld, ld_done_cb done)
{
    ld->state_done = done;
    if (fr_pg_query(ld->app->pg, FR_SQL_MODEL_STATE_READ, 0, NULL, NULL, on_state, ld) != 0)
        ld->state_done(ld, -ENOTCONN);
}

/* ---- refresh ----------------------------------------------------------------------- */

static void restore_keys(struct ld_refresh *r)
{
    struct ld_model *m = r->model;
    if (r->all) {
        mark_all(m);
    } else {
        if (!m->all)
            fr__keyset_merge(&m->touched, &r->keys);
        if (!m->first_touch_ms)
            m->first_touch_ms = fr_mono_ms();
        m->last_touch_ms = m->first_touch_ms;
    }
    fr__keyset_deinit(&r->keys);
    free(r->keys_arr);
    r->keys_arr = NULL;
}

static void on_rollback_done(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    (void)res; /* the connection may be gone: a transaction left open ends with it */
    (void)data;
}

/* Ends the refresh's transaction (data tests) without applying it. */
static void rollback(struct loader *ld)
{
    struct ld_refresh *r = &ld->refresh;
    if (!r->txn)
        return;
    r->txn = false;
    if (fr_pg_connected(ld->refresh_pg) &&
        fr_pg_query(ld->refresh_pg, "ROLLBACK", 0, NULL, NULL, on_rollback_done, NULL) != 0)
        fr_warn("model %s: cannot queue ROLLBACK", r->model->state_name);
}

static void publish_cache_event(struct loader *ld, struct ld_cache *c, const struct ld_rows *rows, bool all)
{
    struct fr_buf j;
    struct fr_keyset keys;

    fr_buf_init(&j, 0);
    fr__keyset_init(&keys);
    fr__event_begin(&j, "cache.refreshed");
    (void)fr_buf_puts(&j, ",\"cache\":");
    (void)fr_buf_json_str(&j, c->c->name, strlen(c->c->name));
    (void)fr_buf_puts(&j, ",\"pipeline\":");
    (void)fr_buf_json_str(&j, c->p->name, strlen(c->p->name));
    for (size_t i = 0; !all && rows && i < rows->n_rows && keys.n <= LD_EVENT_KEYS; i++) {
        int len;
        const char *v = fr__rows_val(rows, i, (size_t)c->key_col, &len);
        if (v)
            (void)fr__keyset_add(&keys, v, (size_t)len);
    }
    if (all || keys.n > LD_EVENT_KEYS)
        (void)fr_buf_puts(&j, ",\"all\":true");
    else
        fr__json_keys(&j, "keys", &keys);
    (void)fr_buf_putc(&j, '}');
    fr__loader_publish(ld, &j);
    fr__keyset_deinit(&keys);
    fr_buf_deinit(&j);
}

/* Rows the refresh changed or deleted: a full one's are on the server
 * (pg_temp.fr_changed), read page by page. */
static size_t changed_count(const struct ld_refresh *r)
{
    return r->all ? r->changed : r->rows.n_rows;
}

static void publish_model_event(struct loader *ld)
{
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;
    double secs = (double)(fr_mono_ns() - r->t0_ns) / 1e9;
    struct fr_buf j;

    fr_histogram_observe(m->m_secs, secs);
    fr_buf_init(&j, 0);
    fr__event_begin(&j, "model.refreshed");
    (void)fr_buf_puts(&j, ",\"model\":");
    (void)fr_buf_json_str(&j, m->m->name, strlen(m->m->name));
    (void)fr_buf_puts(&j, ",\"pipeline\":");
    (void)fr_buf_json_str(&j, m->p->name, strlen(m->p->name));
    if (!r->all)
        fr__json_keys(&j, "keys", &r->keys);
    if (r->version > 0) { /* the api's ETags (docs/routes.md "HTTP caching") */
        char ts[40];
        fr_format_timestamp(r->version_us, ts);
        (void)fr_buf_printf(&j, ",\"version\":%" PRId64 ",\"refreshed_at\":\"%s\"", r->version, ts);
    }
    (void)fr_buf_printf(&j, ",\"count\":%zu,\"ms\":%.3f}", changed_count(r), secs * 1e3);
    fr__loader_publish(ld, &j);
    fr_buf_deinit(&j);
    fr_log(r->all ? FR_LOG_INFO : FR_LOG_DEBUG, "model %s refreshed (%s): %zu rows changed in %.1f ms", m->state_name,
           r->all ? "all keys" : "touched keys", changed_count(r), secs * 1e3);
}

static void on_reset(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    (void)data;
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
        fr_warn("refresh connection: %s", PQresultErrorMessage(res));
}

static void finish_refresh(struct loader *ld)
{
    struct ld_refresh *r = &ld->refresh;

    if (r->all && fr_pg_connected(ld->refresh_pg) &&
        fr_pg_query(ld->refresh_pg, FR_SQL_CHANGED_RESET, 0, NULL, NULL, on_reset, NULL) != 0)
        fr_debug("model %s: fr_changed left for the next full refresh", r->model->state_name);

    touch_readers(ld, r->model, &r->rows, r->all, changed_count(r));
    fr__rows_deinit(&r->rows);
    fr__keyset_deinit(&r->keys);
    r->model->retry_at_ms = 0;
    r->model->last_cost_ms = (fr_mono_ns() - r->t0_ns) / 1000000u;
    r->model->last_end_ms = fr_mono_ms();
    fr__export_touch(ld, r->model->p, r->model->m->name);
    ld->last_refresh_ms = fr_mono_ms();
    r->done(ld, 0);
}

static void next_cache(struct loader *ld);

static void on_cache_written(struct loader *ld, int status)
{
    struct ld_refresh *r = &ld->refresh;
    struct ld_cache *c = r->model->caches[r->cache_i];

    if (fr__loader_gone(ld))
        return;
    if (status == 0 && r->rows.n_rows > 0)
        publish_cache_event(ld, c, &r->rows, false);
    else if (status != 0)
        c->need_resync = true; /* Redis lost: the resync after reconnect repairs it */
    r->cache_i++;
    next_cache(ld);
}

static void next_page(struct loader *ld);

static void next_cache(struct loader *ld)
{
    struct ld_refresh *r = &ld->refresh;

    if (r->cache_i >= r->model->n_caches || r->rows.n_rows == 0) {
        if (r->all)
            next_page(ld);
        else
            finish_refresh(ld);
        return;
    }
    fr__cache_write(ld, r->model->caches[r->cache_i], &r->rows, on_cache_written);
}

/* ---- a full refresh's rows, page by page ---------------------------------------
 * The model table is committed: a page that cannot be read leaves the
 * model's caches to a resync, as a lost Redis does. */

static void pages_lost(struct loader *ld, const char *why)
{
    struct ld_refresh *r = &ld->refresh;

    fr_warn("model %s: changed rows not read (%s): its caches are resynced", r->model->state_name, why);
    for (size_t i = 0; i < r->model->n_caches; i++)
        r->model->caches[i]->need_resync = true;
    finish_refresh(ld);
}

static void on_page(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_refresh *r = &ld->refresh;
    size_t want;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        pages_lost(ld, res ? PQresultErrorMessage(res) : "connection lost");
        return;
    }
    want = r->changed - r->page_from < LD_PAGE_ROWS ? r->changed - r->page_from : LD_PAGE_ROWS;
    if ((size_t)PQntuples(res) != want) {
        /* Ids 1..changed no longer there: the connection was replaced
         * between pages (a new session, a new empty table), or the reset
         * before the refresh failed. */
        pages_lost(ld, "a page came back short");
        return;
    }
    fr__rows_from_result(&r->rows, res, true); /* next_page emptied r->rows */
    r->page_from += LD_PAGE_ROWS;
    r->cache_i = 0;
    next_cache(ld);
}

static void next_page(struct loader *ld)
{
    struct ld_refresh *r = &ld->refresh;
    char from[24], to[24];
    const char *params[2] = {from, to};

    fr__rows_deinit(&r->rows);
    if (r->page_from >= r->changed || r->model->n_caches == 0) {
        finish_refresh(ld);
        return;
    }
    snprintf(from, sizeof(from), "%zu", r->page_from);
    snprintf(to, sizeof(to), "%zu", r->page_from + LD_PAGE_ROWS);
    if (fr_pg_query(ld->refresh_pg, r->model->page_sql, 2, params, NULL, on_page, ld) != 0)
        pages_lost(ld, "connection lost");
}

/* After the refresh committed: its caches (a full refresh's page by page). */
static void start_caches(struct loader *ld)
{
    struct ld_refresh *r = &ld->refresh;

    r->cache_i = 0;
    r->page_from = 0;
    if (r->all)
        next_page(ld);
    else
        next_cache(ld);
}

static void on_committed(fr_pg_t *pg, PGresult *res, void *data);

static void on_state_saved(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    if (res && PQresultStatus(res) != PGRES_TUPLES_OK) {
        fr_warn("cannot update freshet.model_state: %s", PQresultErrorMessage(res));
    } else if (res && PQntuples(res) == 1 && PQnfields(res) == 2) { /* the model's data version */
        const char *v = PQgetvalue(res, 0, 0), *us = PQgetvalue(res, 0, 1);
        if (!fr_parse_i64(v, strlen(v), &ld->refresh.version) ||
            !fr_parse_i64(us, strlen(us), &ld->refresh.version_us))
            ld->refresh.version = 0;
    }
    if (ld->refresh.txn) {
        /* Data tests passed: make it visible, then the caches. */
        if (fr_pg_query(ld->refresh_pg, "COMMIT", 0, NULL, NULL, on_committed, ld) != 0)
            on_committed(pg, NULL, ld);
        return;
    }
    /* The model table is committed either way: go on with the caches. */
    publish_model_event(ld);
    start_caches(ld);
}

/* The result of a refresh statement (the refresh or its data tests): false
 * when it failed, after putting the keys back and ending the refresh: a
 * lost (or timed out) refresh_pg retries after the reconnect, never at once;
 * an error, after a longer pause. `step` names the statement in the log. */
static bool refresh_step_ok(struct loader *ld, PGresult *res, ExecStatusType want, const char *step)
{
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;

    if (!res) {
        r->txn = false;
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, -ENOTCONN);
        return false;
    }
    if (PQresultStatus(res) != want) {
        fr_error("%s of model %s failed: %s", step, m->state_name, PQresultErrorMessage(res));
        rollback(ld);
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + 5 * LD_RETRY_MS;
        r->done(ld, -EIO);
        return false;
    }
    return true;
}

static void on_refreshed(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;
    const char *params[2];
    char day[12];

    (void)pg;
    if (fr__loader_gone(ld) || !refresh_step_ok(ld, res, r->all ? PGRES_COMMAND_OK : PGRES_TUPLES_OK, "refresh"))
        return;
    if (r->all)
        r->changed = (size_t)strtoull(PQcmdTuples(res), NULL, 10); /* INSERT 0 n into fr_changed */
    else
        fr__rows_from_result(&r->rows, res, true);
    if (r->all)
        m->day = r->day;
    fr_format_date(r->day, day);
    params[0] = m->state_name;
    params[1] = r->all ? day : r->rows.n_rows > 0 ? "t" : "f"; /* KEYS: bump the version when rows changed */
    if (fr_pg_query(ld->refresh_pg, r->all ? FR_SQL_MODEL_STATE_FULL : FR_SQL_MODEL_STATE_KEYS, 2, params, NULL,
                    on_state_saved, ld) != 0) {
        if (r->txn) { /* nothing is committed: as a lost connection */
            r->txn = false;
            fr__rows_deinit(&r->rows);
            restore_keys(r);
            m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
            r->done(ld, -ENOTCONN);
            return;
        }
        publish_model_event(ld);
        start_caches(ld);
    }
}

/* ---- data tests ----------------------------------------------------------------
 * A model with tests refreshes in one REPEATABLE READ transaction: BEGIN, the
 * tests over the rows the refresh is about to write (testsql.c), then, when
 * none fails, the refresh and its model_state row, COMMIT, then the caches.
 * When one fails, ROLLBACK: the model table and its caches keep their last
 * good values; the failure is reported (model.test_failed, the metric
 * model_test_failures_total, an error log naming the tests and keys) and the
 * keys wait until a batch (or a model read) touches the model again. */

static void report_test_failure(struct loader *ld, const PGresult *res)
{
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;
    int n = PQntuples(res);
    const char **tests = fr_xcalloc((size_t)n + 1, sizeof(*tests));
    const char **keys = fr_xcalloc((size_t)n + 1, sizeof(*keys));
    size_t n_tests = 0, n_keys = 0;
    struct fr_buf log;
    char *event;

    for (int i = 0; i < n; i++) {
        const char *t = PQgetvalue(res, i, 0), *k = PQgetvalue(res, i, 1);
        bool seen = false;
        for (size_t j = 0; j < n_tests && !seen; j++)
            seen = strcmp(tests[j], t) == 0;
        if (!seen)
            tests[n_tests++] = t;
        seen = false;
        for (size_t j = 0; j < n_keys && !seen; j++)
            seen = strcmp(keys[j], k) == 0;
        if (!seen && n_keys < LD_EVENT_KEYS)
            keys[n_keys++] = k;
    }
    if (m->m_test_failures)
        (*m->m_test_failures)++;
    event = fr_names_event_model_test_failed(m->p->name, m->m->name, tests, n_tests, keys, n_keys, (size_t)n);
    {
        struct fr_buf j;
        fr_buf_init(&j, 0);
        (void)fr_buf_puts(&j, event);
        fr__loader_publish(ld, &j);
        fr_buf_deinit(&j);
    }
    free(event);
    fr_buf_init(&log, 0);
    for (int i = 0; i < n && i < 20; i++)
        (void)fr_buf_printf(&log, "%s%s for key %s", i ? "; " : "", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    fr_error("model %s: data tests failed (%d row%s%s): %s; the refresh is not applied (the last good values keep "
             "serving) and is retried after the next batch",
             m->state_name, n, n == 1 ? "" : "s", n >= FR_TESTSQL_MAX_FAILURES ? " or more" : "",
             log.data ? log.data : "");
    fr_buf_deinit(&log);
    free(tests);
    free(keys);
}

static void on_tested(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;
    const char *params[2];

    (void)pg;
    if (fr__loader_gone(ld) || !refresh_step_ok(ld, res, PGRES_TUPLES_OK, "data tests"))
        return;
    if (PQntuples(res) > 0) {
        report_test_failure(ld, res);
        rollback(ld);
        restore_keys(r);
        m->hold = true; /* after restore_keys: retried once something touches the model again */
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, -EIO);
        return;
    }
    params[0] = r->keys_arr;
    params[1] = r->now;
    if (fr_pg_query(ld->refresh_pg, r->all ? m->refresh_all_sql : m->refresh_sql, 2, params, NULL, on_refreshed,
                    ld) != 0) {
        r->txn = false;
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, -ENOTCONN);
        return;
    }
    free(r->keys_arr);
    r->keys_arr = NULL;
}

static void on_begun(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;
    const char *params[2];

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    params[0] = r->keys_arr;
    params[1] = r->now;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK ||
        fr_pg_query(ld->refresh_pg, m->test_sql, 2, params, NULL, on_tested, ld) != 0) {
        if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
            fr_error("model %s: BEGIN failed: %s", m->state_name, PQresultErrorMessage(res));
        rollback(ld);
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, res ? -EIO : -ENOTCONN);
    }
}

static void on_committed(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    r->txn = false;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        /* Lost, or the transaction had failed (COMMIT answers ROLLBACK):
         * nothing is applied. */
        if (res)
            fr_error("model %s: refresh not committed: %s", m->state_name,
                     PQresultStatus(res) == PGRES_COMMAND_OK ? PQcmdStatus(res) : PQresultErrorMessage(res));
        fr__rows_deinit(&r->rows);
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, res ? -EIO : -ENOTCONN);
        return;
    }
    publish_model_event(ld);
    start_caches(ld);
}

/* ---- the model lock -------------------------------------------------------------
 * Several loaders refresh the same models: each refresh holds the model's
 * session advisory lock on refresh_pg (FR_SQL_MODEL_TRYLOCK, never waiting)
 * from before its first statement until its cache writes are done. So the
 * refreshes of one model never overlap, each reads what the previous one
 * committed (its statement starts after the lock is taken), and its cache
 * writes come after the previous one's: a slower loader cannot overwrite a
 * newer row or cache value with an older one. A model locked by another
 * loader keeps its keys and is tried again LD_LOCKED_RETRY_MS later. A lost
 * connection releases the lock on the server. */

static void on_unlocked(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    (void)res; /* f (not held: the session was replaced) is fine */
    (void)data;
}

/* r->done: releases the lock (queued behind the refresh's own statements),
 * then the caller's done. */
static void unlock_done(struct loader *ld, int status)
{
    struct ld_refresh *r = &ld->refresh;
    ld_done_cb done = r->outer_done;

    if (r->locked) {
        const char *params[1] = {r->model->state_name};
        r->locked = false;
        if (fr_pg_connected(ld->refresh_pg))
            if (fr_pg_query(ld->refresh_pg, FR_SQL_MODEL_UNLOCK, 1, params, NULL, on_unlocked, NULL) != 0)
                fr_debug("model %s: unlock not sent (the connection is going: it releases the lock)", params[0]);
    }
    done(ld, status);
}

static void refresh_locked(struct loader *ld);

static void on_locked(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        if (res)
            fr_error("model %s: cannot take its refresh lock: %s", m->state_name, PQresultErrorMessage(res));
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, res ? -EIO : -ENOTCONN);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        /* Another loader is refreshing this model: its keys wait here. */
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_LOCKED_RETRY_MS;
        r->done(ld, -EBUSY);
        return;
    }
    r->locked = true;
    refresh_locked(ld);
}

void fr__model_refresh(struct loader *ld, struct ld_model *m, ld_done_cb done)
{
    struct ld_refresh *r = &ld->refresh;
    int64_t now = fr_pipeline_now(m->p);
    const char *params[1];
    struct fr_buf arr;

    free(r->keys_arr); /* NULL unless a refresh ended without passing by restore_keys */
    memset(r, 0, sizeof(*r));
    r->model = m;
    r->outer_done = done;
    r->done = unlock_done;
    r->t0_ns = fr_mono_ns();
    r->all = m->all || m->key_col < 0;
    fr__keyset_init(&r->keys);
    if (!r->all && m->touched.n > LD_REFRESH_KEYS) {
        /* A bounded share: the rest stay touched, due coalesce_ms from now,
         * so the next refresh follows this one unless another model has
         * waited longer (fr__model_due). */
        fr__keyset_take(&r->keys, &m->touched, LD_REFRESH_KEYS, &m->take_cursor);
        m->first_touch_ms = fr_mono_ms();
        m->last_touch_ms = m->first_touch_ms;
    } else {
        r->keys = m->touched;
        fr__keyset_init(&m->touched);
        m->all = false;
        m->first_touch_ms = 0;
        m->last_touch_ms = 0;
    }
    r->day = day_of(now);
    fr_format_timestamp(now, r->now);

    fr_buf_init(&arr, 0);
    if (!r->all)
        fr__sql_text_array(&arr, &r->keys);
    r->keys_arr = r->all ? NULL : fr_xstrdup(arr.data);
    fr_buf_deinit(&arr);
    params[0] = m->state_name;
    if (fr_pg_query(ld->refresh_pg, FR_SQL_MODEL_TRYLOCK, 1, params, NULL, on_locked, ld) != 0) {
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, -ENOTCONN);
    }
}

/* The refresh proper, holding the model's lock. */
static void refresh_locked(struct loader *ld)
{
    struct ld_refresh *r = &ld->refresh;
    struct ld_model *m = r->model;
    const char *params[2];

    params[0] = r->keys_arr;
    params[1] = r->now;
    if (r->all && fr_pg_query(ld->refresh_pg, FR_SQL_CHANGED_RESET, 0, NULL, NULL, on_reset, NULL) != 0) {
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, -ENOTCONN);
        return;
    }
    if (m->test_sql) {
        /* Data tests first, in the refresh's transaction. */
        r->txn = true;
        if (fr_pg_query(ld->refresh_pg, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL, NULL, on_begun, ld) != 0) {
            r->txn = false;
            restore_keys(r);
            m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
            r->done(ld, -ENOTCONN);
        }
        return;
    }
    if (fr_pg_query(ld->refresh_pg, r->all ? m->refresh_all_sql : m->refresh_sql, 2, params, NULL, on_refreshed,
                    ld) != 0) {
        restore_keys(r);
        m->retry_at_ms = fr_mono_ms() + LD_RETRY_MS;
        r->done(ld, -ENOTCONN);
        return;
    }
    free(r->keys_arr);
    r->keys_arr = NULL;
}
