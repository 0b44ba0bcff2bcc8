/* load: loads one stream entry exactly once. The batch is decoded and
 * checked, then one transaction writes the ledger row and the rows (COPY
 * straight into an append-only table, or COPY into a temporary stage and an
 * upsert/delete by key), commits, and the entry is acknowledged. A ledger
 * conflict means "already loaded": roll back and acknowledge. PostgreSQL
 * errors roll back and leave the entry pending for a retry; the fifth failure
 * dead-letters it. Every step is a state of struct ld_load and every state
 * change goes through enter(). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader_int.h"
#include "log.h"

static const char *const state_names[] = {
    [LOAD_IDLE] = "idle",       [LOAD_BEGIN] = "begin", [LOAD_LEDGER] = "ledger", [LOAD_STAGE] = "stage",
    [LOAD_COPY] = "copy",       [LOAD_MERGE] = "merge", [LOAD_COMMIT] = "commit", [LOAD_ROLLBACK] = "rollback",
    [LOAD_DLQ] = "dead-letter", [LOAD_ACK] = "ack",     [LOAD_DONE] = "done",
};

const char *fr__load_state_name(enum ld_load_state s)
{
    return (size_t)s < FR_ARRAY_LEN(state_names) && state_names[s] ? state_names[s] : "?";
}

/* Legal transitions: bit `to` set in allowed[from]. DONE is reachable from
 * every busy state (connection lost). */
#define B(s) (1u << (s))
static const unsigned allowed[] = {
    [LOAD_IDLE] = B(LOAD_BEGIN) | B(LOAD_DLQ) | B(LOAD_ACK),
    [LOAD_BEGIN] = B(LOAD_LEDGER) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_LEDGER] = B(LOAD_STAGE) | B(LOAD_COPY) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_STAGE] = B(LOAD_COPY) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_COPY] = B(LOAD_MERGE) | B(LOAD_COMMIT) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_MERGE] = B(LOAD_COMMIT) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_COMMIT] = B(LOAD_ACK) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_ROLLBACK] = B(LOAD_ACK) | B(LOAD_DLQ) | B(LOAD_DONE),
    [LOAD_DLQ] = B(LOAD_ACK) | B(LOAD_DONE),
    [LOAD_ACK] = B(LOAD_DONE),
    [LOAD_DONE] = B(LOAD_IDLE),
};
#undef B

static void enter(struct ld_load *l, enum ld_load_state to);

static void on_pg(fr_pg_t *pg, PGresult *res, void *data);
static void fail_counted(struct ld_load *l);
static void on_redis(fr_redis_t *r, redisReply *reply, void *data);

static const struct fr_dataset *ds_of(const struct ld_load *l)
{
    return l->e->st->ds;
}

/* The batch id: from the batch, else the entry's "id" field, else the entry id. */
static const char *batch_id_of(const struct ld_load *l)
{
    if (l->b)
        return fr_batch_id(l->b);
    return l->e->batch_id ? l->e->batch_id : l->e->id;
}

/* Records a failure reason (first line of a PG message, trimmed). */
static void set_reason(struct ld_load *l, const char *msg)
{
    size_t n;
    snprintf(l->reason, sizeof(l->reason), "%s", msg && *msg ? msg : "unknown error");
    n = strlen(l->reason);
    while (n > 0 && (l->reason[n - 1] == '\n' || l->reason[n - 1] == ' '))
        l->reason[--n] = '\0';
}

/* A PostgreSQL failure of the batch itself: count it, then roll back and
 * either leave it pending (retry) or dead-letter it. */
static void fail_batch(struct ld_load *l, const char *msg)
{
    set_reason(l, msg);
    fail_counted(l);
}

/* Same, with the reason taken from a PG error result: the primary message,
 * plus its detail when there is one. */
static void fail_batch_res(struct ld_load *l, const PGresult *res)
{
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    char buf[sizeof(l->reason)];

    if (!primary) { /* no diagnostic fields: use the whole message */
        const char *m = PQresultErrorMessage(res);
        fail_batch(l, m && *m ? m : PQresStatus(PQresultStatus(res)));
        return;
    }
    if (detail)
        snprintf(buf, sizeof(buf), "%s (%s)", primary, detail);
    else
        snprintf(buf, sizeof(buf), "%s", primary);
    set_reason(l, buf);
    fail_counted(l);
}

static void fail_counted(struct ld_load *l)
{
    struct ld_stream *st = l->e->st;

    if (!st->fail_id || strcmp(st->fail_id, l->e->id) != 0) {
        free(st->fail_id);
        st->fail_id = fr_xstrdup(l->e->id);
        st->attempts = 0;
    }
    st->attempts++;
    free(st->fail_reason);
    st->fail_reason = fr_xstrdup(l->reason);
    l->outcome = LD_OUT_FAILED;
    l->rb_next = st->attempts >= LD_MAX_ATTEMPTS ? LOAD_DLQ : LOAD_DONE;
    fr_log_kv(FR_LOG_WARN, "batch", batch_id_of(l), "load of %s failed (attempt %u of %d): %s", ds_of(l)->qname,
              st->attempts, LD_MAX_ATTEMPTS, l->reason);
    enter(l, LOAD_ROLLBACK);
}

/* Checks the decoded batch against the dataset; fills reason on failure. */
static bool check_batch(struct ld_load *l)
{
    const struct fr_dataset *ds = ds_of(l);
    size_t nc = fr_batch_cols(l->b);

    if (strcmp(fr_batch_dataset(l->b), ds->qname) != 0) {
        snprintf(l->reason, sizeof(l->reason), "batch is for dataset '%s' but arrived on %s", fr_batch_dataset(l->b),
                 l->e->st->key);
        return false;
    }
    if (nc == 0) {
        snprintf(l->reason, sizeof(l->reason), "batch has no columns");
        return false;
    }
    for (size_t i = 0; i < nc; i++) {
        const char *name = fr_batch_col_name(l->b, i);
        if (fr_column_index(ds->columns, ds->n_columns, name) < 0) {
            snprintf(l->reason, sizeof(l->reason), "column '%s' is not a column of dataset %s", name, ds->qname);
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(fr_batch_col_name(l->b, j), name) == 0) {
                snprintf(l->reason, sizeof(l->reason), "column '%s' appears twice", name);
                return false;
            }
        }
    }
    for (size_t k = 0; k < ds->n_key; k++) {
        bool found = false;
        for (size_t i = 0; i < nc && !found; i++)
            found = strcmp(fr_batch_col_name(l->b, i), ds->key[k]) == 0;
        if (!found) {
            snprintf(l->reason, sizeof(l->reason), "batch lacks key column '%s' of dataset %s", ds->key[k],
                     ds->qname);
            return false;
        }
    }
    if (ds->n_key == 0 && fr_batch_op(l->b) == FR_OP_DELETE) {
        snprintf(l->reason, sizeof(l->reason), "delete batch for dataset %s, which has no key", ds->qname);
        return false;
    }
    return true;
}

static bool batch_has_col(const fr_batch_t *b, const char *name, size_t *idx)
{
    for (size_t i = 0; i < fr_batch_cols(b); i++) {
        if (strcmp(fr_batch_col_name(b, i), name) == 0) {
            *idx = i;
            return true;
        }
    }
    return false;
}

static void put_cols(struct fr_buf *s, const fr_batch_t *b, const char *prefix)
{
    for (size_t i = 0; i < fr_batch_cols(b); i++) {
        if (i)
            (void)fr_buf_puts(s, ", ");
        if (prefix)
            (void)fr_buf_puts(s, prefix);
        fr_buf_sql_ident(s, fr_batch_col_name(b, i));
    }
}

static void put_keys(struct fr_buf *s, const struct fr_dataset *ds)
{
    for (size_t k = 0; k < ds->n_key; k++) {
        if (k)
            (void)fr_buf_puts(s, ", ");
        fr_buf_sql_ident(s, ds->key[k]);
    }
}

static void build_merge(const struct ld_load *l, struct fr_buf *s)
{
    const struct fr_dataset *ds = ds_of(l);
    const fr_batch_t *b = l->b;
    size_t vi;
    bool has_version = ds->version && batch_has_col(b, ds->version, &vi);
    bool any_set = false;

    if (fr_batch_op(b) == FR_OP_DELETE) {
        (void)fr_buf_puts(s, "DELETE FROM ");
        fr_buf_sql_ident(s, ds->table);
        (void)fr_buf_puts(s, " AS fr_t USING fr_stage AS fr_s WHERE ");
        for (size_t k = 0; k < ds->n_key; k++) {
            if (k)
                (void)fr_buf_puts(s, " AND ");
            (void)fr_buf_puts(s, "fr_t.");
            fr_buf_sql_ident(s, ds->key[k]);
            (void)fr_buf_puts(s, " = fr_s.");
            fr_buf_sql_ident(s, ds->key[k]);
        }
        return;
    }
    (void)fr_buf_puts(s, "INSERT INTO ");
    fr_buf_sql_ident(s, ds->table);
    (void)fr_buf_puts(s, " AS fr_t (");
    put_cols(s, b, NULL);
    (void)fr_buf_puts(s, ") SELECT DISTINCT ON (");
    put_keys(s, ds);
    (void)fr_buf_puts(s, ") ");
    put_cols(s, b, NULL);
    (void)fr_buf_puts(s, " FROM fr_stage ORDER BY ");
    put_keys(s, ds);
    if (has_version) {
        (void)fr_buf_puts(s, ", ");
        fr_buf_sql_ident(s, ds->version);
        (void)fr_buf_puts(s, " DESC NULLS LAST");
    }
    /* The stage is filled by one COPY: ctid order is row order, so the last
     * row of the batch wins among equal versions. */
    (void)fr_buf_puts(s, ", ctid DESC ON CONFLICT (");
    put_keys(s, ds);
    (void)fr_buf_puts(s, ") DO UPDATE SET ");
    for (size_t i = 0; i < fr_batch_cols(b); i++) {
        const char *name = fr_batch_col_name(b, i);
        bool is_key = false;
        for (size_t k = 0; k < ds->n_key; k++)
            is_key = is_key || strcmp(ds->key[k], name) == 0;
        if (is_key)
            continue;
        if (any_set)
            (void)fr_buf_puts(s, ", ");
        any_set = true;
        fr_buf_sql_ident(s, name);
        (void)fr_buf_puts(s, " = EXCLUDED.");
        fr_buf_sql_ident(s, name);
    }
    if (!any_set) {
        /* Only key columns: nothing to update. */
        fr_buf_reset(s);
        (void)fr_buf_puts(s, "INSERT INTO ");
        fr_buf_sql_ident(s, ds->table);
        (void)fr_buf_puts(s, " (");
        put_cols(s, b, NULL);
        (void)fr_buf_puts(s, ") SELECT DISTINCT ");
        put_cols(s, b, NULL);
        (void)fr_buf_puts(s, " FROM fr_stage ON CONFLICT DO NOTHING");
        return;
    }
    if (has_version) {
        (void)fr_buf_puts(s, " WHERE fr_t.");
        fr_buf_sql_ident(s, ds->version);
        (void)fr_buf_puts(s, " IS NULL OR fr_t.");
        fr_buf_sql_ident(s, ds->version);
        (void)fr_buf_puts(s, " <= EXCLUDED.");
        fr_buf_sql_ident(s, ds->version);
    }
}

/* Distinct keys for the batch.loaded event: the dataset key when it is one
 * column, else the first single-column key of a model fed by it. Stops
 * counting past LD_EVENT_KEYS (the event then omits them). */
static void event_keys(struct ld_load *l)
{
    struct loader *ld = l->ld;
    const struct fr_dataset *ds = ds_of(l);
    const char *col = NULL;
    size_t ci = 0;

    if (ds->n_key == 1) {
        col = ds->key[0];
    } else {
        for (size_t i = 0; i < ld->n_models && !col; i++) {
            const struct ld_model *m = &ld->models[i];
            if (m->p != l->e->st->p || m->key_col < 0)
                continue;
            for (size_t k = 0; k < m->m->n_inputs; k++)
                if (strcmp(m->m->inputs[k], ds->name) == 0)
                    col = m->m->key[0];
        }
    }
    if (!col || !batch_has_col(l->b, col, &ci))
        return;
    for (size_t r = 0; r < fr_batch_rows(l->b) && l->keys.n <= LD_EVENT_KEYS; r++) {
        size_t len;
        const char *v = fr_batch_value(l->b, ci, r, &len);
        if (v)
            (void)fr__keyset_add(&l->keys, v, len);
    }
}

static void publish_outcome(struct ld_load *l)
{
    struct loader *ld = l->ld;
    struct fr_buf j;
    const char *id = batch_id_of(l);

    fr_buf_init(&j, 0);
    if (l->outcome == LD_OUT_LOADED) {
        char ts[32];
        fr_format_timestamp(fr_wall_us(), ts);
        fr__event_begin(&j, "batch.loaded");
        (void)fr_buf_puts(&j, ",\"dataset\":");
        (void)fr_buf_json_str(&j, ds_of(l)->qname, strlen(ds_of(l)->qname));
        (void)fr_buf_puts(&j, ",\"batch\":");
        (void)fr_buf_json_str(&j, id, strlen(id));
        (void)fr_buf_printf(&j, ",\"rows\":%zu,\"commit_time\":\"%s\"", fr_batch_rows(l->b), ts);
        event_keys(l);
        fr__json_keys(&j, "keys", &l->keys);
        (void)fr_buf_putc(&j, '}');
    } else if (l->outcome == LD_OUT_DEAD) {
        fr__event_begin(&j, "batch.rejected");
        (void)fr_buf_puts(&j, ",\"dataset\":");
        (void)fr_buf_json_str(&j, ds_of(l)->qname, strlen(ds_of(l)->qname));
        (void)fr_buf_puts(&j, ",\"batch\":");
        (void)fr_buf_json_str(&j, id, strlen(id));
        (void)fr_buf_puts(&j, ",\"reason\":");
        (void)fr_buf_json_str(&j, l->reason, strlen(l->reason));
        (void)fr_buf_putc(&j, '}');
    }
    if (j.len)
        fr__loader_publish(ld, &j);
    fr_buf_deinit(&j);
}

static void finish(struct ld_load *l)
{
    struct loader *ld = l->ld;
    struct ld_stream *st = l->e->st;
    const char *id = batch_id_of(l);
    double secs = (double)(fr_mono_ns() - l->t0_ns) / 1e9;

    switch (l->outcome) {
    case LD_OUT_LOADED:
        (*st->m_loaded)++;
        *st->m_rows += fr_batch_rows(l->b);
        fr_histogram_observe(ld->m_batch_secs, secs);
        fr_log_kv(FR_LOG_DEBUG, "batch", id, "loaded %zu rows into %s in %.1f ms", fr_batch_rows(l->b),
                  ds_of(l)->table, secs * 1e3);
        break;
    case LD_OUT_DUPLICATE:
        (*st->m_duplicate)++;
        fr_log_kv(FR_LOG_INFO, "batch", id, "already loaded into %s: skipped", ds_of(l)->table);
        break;
    case LD_OUT_FAILED:
        (*st->m_failed)++;
        break;
    case LD_OUT_DEAD:
        (*st->m_dead)++;
        fr_log_kv(FR_LOG_ERROR, "batch", id, "dead-lettered to %s: %s", st->dlq, l->reason);
        break;
    case LD_OUT_PG_LOST:
        fr_log_kv(FR_LOG_WARN, "batch", id, "PostgreSQL lost while loading (%s): will retry",
                  fr__load_state_name(l->prev));
        break;
    case LD_OUT_REDIS_LOST:
        fr_log_kv(FR_LOG_WARN, "batch", id, "Redis lost while finishing (%s): will retry",
                  fr__load_state_name(l->prev));
        break;
    }
    if (l->outcome == LD_OUT_LOADED || l->outcome == LD_OUT_DEAD || l->outcome == LD_OUT_DUPLICATE) {
        if (st->fail_id && strcmp(st->fail_id, l->e->id) == 0) {
            free(st->fail_id);
            st->fail_id = NULL;
            free(st->fail_reason);
            st->fail_reason = NULL;
            st->attempts = 0;
        }
    }
    if (!l->ack_lost && (l->outcome == LD_OUT_LOADED || l->outcome == LD_OUT_DEAD))
        publish_outcome(l);
}

/* The one transition function: checks the transition, then performs the
 * new state's action. */
static void enter(struct ld_load *l, enum ld_load_state to)
{
    struct loader *ld = l->ld;
    const struct fr_dataset *ds;
    struct fr_buf s;
    int rc = 0;

    if (!(allowed[l->state] & (1u << to))) {
        fr_error("load: illegal transition %s -> %s", fr__load_state_name(l->state), fr__load_state_name(to));
        abort(); /* programmer error */
    }
    l->prev = l->state;
    l->state = to;
    ds = ds_of(l);
    fr_buf_init(&s, 0);

    switch (to) {
    case LOAD_BEGIN:
        rc = fr_pg_query(ld->app->pg, "BEGIN", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_LEDGER: {
        char rows[24];
        const char *params[3];
        snprintf(rows, sizeof(rows), "%zu", fr_batch_rows(l->b));
        params[0] = fr_batch_id(l->b);
        params[1] = ds->qname;
        params[2] = rows;
        rc = fr_pg_query(ld->app->pg,
                         "INSERT INTO freshet.batches (batch_id, dataset, rows) VALUES ($1, $2, $3) "
                         "ON CONFLICT DO NOTHING RETURNING 1",
                         3, params, NULL, on_pg, l);
        break;
    }
    case LOAD_STAGE:
        (void)fr_buf_puts(&s, "CREATE TEMP TABLE fr_stage (LIKE ");
        fr_buf_sql_ident(&s, ds->table);
        (void)fr_buf_puts(&s, " INCLUDING DEFAULTS) ON COMMIT DROP");
        rc = fr_pg_query(ld->app->pg, s.data, 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_COPY: {
        struct fr_buf data;
        (void)fr_buf_puts(&s, "COPY ");
        if (l->keyed)
            (void)fr_buf_puts(&s, "fr_stage");
        else
            fr_buf_sql_ident(&s, ds->table);
        (void)fr_buf_puts(&s, " (");
        put_cols(&s, l->b, NULL);
        (void)fr_buf_puts(&s, ") FROM STDIN");
        fr_buf_init(&data, 0);
        if (fr_batch_copy_text(l->b, 0, fr_batch_rows(l->b), &data) != 0) {
            fr_buf_deinit(&data);
            fr_buf_deinit(&s);
            fail_batch(l, "cannot encode the batch as COPY text");
            return;
        }
        rc = fr_pg_copy_in(ld->app->pg, s.data, data.data ? data.data : "", data.len, on_pg, l);
        fr_buf_deinit(&data);
        break;
    }
    case LOAD_MERGE:
        build_merge(l, &s);
        rc = fr_pg_query(ld->app->pg, s.data, 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_COMMIT:
        rc = fr_pg_query(ld->app->pg, "COMMIT", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_ROLLBACK:
        rc = fr_pg_query(ld->app->pg, "ROLLBACK", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_DLQ: {
        const char *path = l->b ? fr_batch_raw_path(l->b) : "";
        const char *id = batch_id_of(l);
        l->outcome = LD_OUT_DEAD;
        rc = fr__consume_dlq(ld, l->e->st, l->e->id, id, path, l->reason, path, strlen(path), on_redis, l);
        if (rc != 0) {
            l->outcome = LD_OUT_REDIS_LOST;
            fr_buf_deinit(&s);
            enter(l, LOAD_DONE);
            return;
        }
        break;
    }
    case LOAD_ACK:
        rc = fr__consume_ack(ld, l->e->st, l->e->id, on_redis, l);
        if (rc != 0) {
            l->ack_lost = true;
            if (l->outcome != LD_OUT_LOADED)
                l->outcome = LD_OUT_REDIS_LOST;
            fr_buf_deinit(&s);
            enter(l, LOAD_DONE);
            return;
        }
        break;
    case LOAD_DONE:
        fr_buf_deinit(&s);
        finish(l);
        fr_batch_free(l->b);
        l->b = NULL;
        fr__keyset_deinit(&l->keys);
        l->state = LOAD_IDLE;
        fr__loader_load_done(ld);
        return;
    case LOAD_IDLE:
        break;
    }
    fr_buf_deinit(&s);
    if (rc != 0) {
        /* PostgreSQL is not connected: not the batch's fault. */
        l->outcome = LD_OUT_PG_LOST;
        enter(l, LOAD_DONE);
    }
}

static void on_rollback_ignored(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    (void)res; /* the connection may be gone; a transaction left open is ended either way */
    (void)data;
}

static void on_pg(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_load *l = data;
    ExecStatusType st;

    if (fr__loader_gone(l->ld))
        return;
    if (!res) {
        /* Lost or timed out. A COMMIT in flight may or may not have
         * happened: the entry stays pending and the ledger decides. */
        l->outcome = LD_OUT_PG_LOST;
        enter(l, LOAD_DONE);
        return;
    }
    st = PQresultStatus(res);
    if (l->state == LOAD_ROLLBACK) {
        enter(l, l->rb_next);
        return;
    }
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        /* Every error the server sends has a SQLSTATE; one without is made
         * up by libpq (connection closed mid-statement, pipeline aborted):
         * not the batch's fault, so not counted towards the dead letter. */
        if (!PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
            fr_warn("batch %s: %s: treating as a lost connection", l->e->id, PQresultErrorMessage(res));
            if (fr_pg_connected(pg) && fr_pg_query(pg, "ROLLBACK", 0, NULL, NULL, on_rollback_ignored, NULL) != 0)
                fr_warn("batch %s: cannot queue ROLLBACK", l->e->id);
            l->outcome = LD_OUT_PG_LOST;
            enter(l, LOAD_DONE);
            return;
        }
        fail_batch_res(l, res);
        return;
    }
    switch (l->state) {
    case LOAD_BEGIN:
        enter(l, LOAD_LEDGER);
        return;
    case LOAD_LEDGER:
        if (PQntuples(res) == 0) {
            l->outcome = LD_OUT_DUPLICATE;
            l->rb_next = LOAD_ACK;
            /* Its rows are in: their model keys may not have been refreshed
             * before a crash, so refresh them again. */
            fr__model_touch(l->ld, l->e->st, l->b);
            enter(l, LOAD_ROLLBACK);
            return;
        }
        enter(l, l->keyed ? LOAD_STAGE : LOAD_COPY);
        return;
    case LOAD_STAGE:
        enter(l, LOAD_COPY);
        return;
    case LOAD_COPY:
        enter(l, l->keyed ? LOAD_MERGE : LOAD_COMMIT);
        return;
    case LOAD_MERGE:
        enter(l, LOAD_COMMIT);
        return;
    case LOAD_COMMIT:
        if (l->ld->crash_after_commit) {
            fr_log_kv(FR_LOG_WARN, "batch", fr_batch_id(l->b),
                      "FRESHET_TEST_CRASH_AFTER_COMMIT: killing myself after COMMIT, before XACK");
            raise(SIGKILL);
        }
        l->outcome = LD_OUT_LOADED;
        fr__model_touch(l->ld, l->e->st, l->b);
        enter(l, LOAD_ACK);
        return;
    default:
        fr_error("load: PostgreSQL result in state %s", fr__load_state_name(l->state));
        abort();
    }
}

static void on_redis(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_load *l = data;

    (void)r;
    if (fr__loader_gone(l->ld))
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            fr_warn("%s of %s failed: %s", fr__load_state_name(l->state), l->e->id, reply->str);
        if (l->state == LOAD_ACK)
            l->ack_lost = true;
        if (l->outcome != LD_OUT_LOADED)
            l->outcome = LD_OUT_REDIS_LOST;
        enter(l, LOAD_DONE);
        return;
    }
    switch (l->state) {
    case LOAD_DLQ:
        enter(l, LOAD_ACK);
        return;
    case LOAD_ACK:
        enter(l, LOAD_DONE);
        return;
    default:
        fr_error("load: Redis reply in state %s", fr__load_state_name(l->state));
        abort();
    }
}

void fr__load_start(struct loader *ld, struct ld_entry *e)
{
    struct ld_load *l = &ld->load;
    char err[FR_ERR_LEN];

    memset(l, 0, sizeof(*l));
    l->ld = ld;
    l->state = LOAD_IDLE;
    l->e = e;
    l->t0_ns = fr_mono_ns();
    fr__keyset_init(&l->keys);
    l->keyed = e->st->ds->n_key > 0;

    if (!e->batch) {
        /* Deleted from the stream while pending: nothing to load. */
        set_reason(l, "entry no longer in the stream");
        l->outcome = LD_OUT_DUPLICATE;
        enter(l, LOAD_ACK);
        return;
    }
    if (e->batch_len > FR_BATCH_MAX_BYTES) {
        set_reason(l, "batch larger than the limit");
        enter(l, LOAD_DLQ);
        return;
    }
    l->b = fr_batch_decode(e->batch, e->batch_len, err);
    if (!l->b) {
        char why[FR_ERR_LEN + 32];
        snprintf(why, sizeof(why), "undecodable batch: %s", err);
        set_reason(l, why);
        enter(l, LOAD_DLQ);
        return;
    }
    if (!check_batch(l)) {
        enter(l, LOAD_DLQ);
        return;
    }
    enter(l, LOAD_BEGIN);
}
