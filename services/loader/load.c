/* load: loads one stream entry exactly once. The batch is decoded and
 * checked, then one transaction writes the ledger row and the rows (COPY
 * straight into an append-only table, or COPY into a temporary stage and an
 * upsert/delete by key), commits, and the entry is acknowledged. A ledger
 * conflict means "already loaded": roll back and acknowledge. PostgreSQL
 * errors roll back and leave the entry pending for a retry; the fifth failure
 * dead-letters it. A failure that belongs to some rows (a data error) is
 * isolated instead: the batch is loaded again in parts (see "Rows at
 * fault"). Every step is a state of struct ld_load and every state change
 * goes through enter(); the statements' text comes from sql.c. The load ends
 * by calling its done callback once (the outcome in struct ld_load). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggsql.h"
#include "loader_int.h"
#include "log.h"
#include "sql.h"

static const char *const state_names[] = {
    [LOAD_IDLE] = "idle",
    [LOAD_BEGIN] = "begin",
    [LOAD_LEDGER] = "ledger",
    [LOAD_STAGE] = "stage",
    [LOAD_COPY] = "copy",
    [LOAD_CHECK] = "check",
    [LOAD_ROWDLQ] = "row-dead-letter",
    [LOAD_MERGE] = "merge",
    [LOAD_RETAIN] = "retention",
    [LOAD_COMMIT] = "commit",
    [LOAD_ROLLBACK] = "rollback",
    [LOAD_DLQ] = "dead-letter",
    [LOAD_ACK] = "ack",
    [LOAD_DONE] = "done",
    [LOAD_SAVEPOINT] = "part-savepoint",
    [LOAD_PART_UNDO] = "part-rollback",
    [LOAD_PART_DROP] = "part-drop-stage",
    [LOAD_PART_RELEASE] = "part-release",
    [LOAD_REJECTS] = "ledger-rejected",
    [LOAD_AGGREGATE] = "aggregate",
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
    [LOAD_LEDGER] =
        B(LOAD_STAGE) | B(LOAD_COPY) | B(LOAD_COMMIT) | B(LOAD_SAVEPOINT) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_STAGE] = B(LOAD_COPY) | B(LOAD_PART_UNDO) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_COPY] = B(LOAD_CHECK) | B(LOAD_MERGE) | B(LOAD_COMMIT) | B(LOAD_PART_UNDO) | B(LOAD_PART_RELEASE) |
                  B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_CHECK] = B(LOAD_MERGE) | B(LOAD_PART_UNDO) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_ROWDLQ] = B(LOAD_COMMIT) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_MERGE] = B(LOAD_RETAIN) | B(LOAD_AGGREGATE) | B(LOAD_ROWDLQ) | B(LOAD_COMMIT) | B(LOAD_PART_UNDO) |
                   B(LOAD_PART_DROP) | B(LOAD_PART_RELEASE) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_RETAIN] = B(LOAD_AGGREGATE) | B(LOAD_ROWDLQ) | B(LOAD_COMMIT) | B(LOAD_PART_UNDO) | B(LOAD_PART_DROP) |
                    B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_AGGREGATE] = B(LOAD_AGGREGATE) | B(LOAD_ROWDLQ) | B(LOAD_COMMIT) | B(LOAD_PART_UNDO) | B(LOAD_PART_DROP) |
                       B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_COMMIT] = B(LOAD_ACK) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_ROLLBACK] = B(LOAD_ACK) | B(LOAD_DLQ) | B(LOAD_BEGIN) | B(LOAD_DONE),
    [LOAD_DLQ] = B(LOAD_ACK) | B(LOAD_DONE),
    [LOAD_ACK] = B(LOAD_DONE),
    [LOAD_DONE] = B(LOAD_IDLE),
    [LOAD_SAVEPOINT] = B(LOAD_STAGE) | B(LOAD_COPY) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_PART_UNDO] = B(LOAD_SAVEPOINT) | B(LOAD_REJECTS) | B(LOAD_COMMIT) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_PART_DROP] = B(LOAD_PART_RELEASE) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_PART_RELEASE] = B(LOAD_SAVEPOINT) | B(LOAD_REJECTS) | B(LOAD_COMMIT) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
    [LOAD_REJECTS] = B(LOAD_ROWDLQ) | B(LOAD_ROLLBACK) | B(LOAD_DONE),
};
#undef B

static void enter(struct ld_load *l, enum ld_load_state to);

static void on_pg(fr_pg_t *pg, PGresult *res, void *data);
static void fail_counted(struct ld_load *l);
static void on_redis(fr_redis_t *r, redisReply *reply, void *data);
static int send_row_dlq(struct ld_load *l);
static void body_done(struct ld_load *l);

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
    /* truncation intended: the precision says so (gcc -O2 -Wformat-truncation) */
    snprintf(l->reason, sizeof(l->reason), "%.*s", (int)sizeof(l->reason) - 1, msg && *msg ? msg : "unknown error");
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
    if (fr_batch_op(l->b) == FR_OP_REPLACED)
        return true; /* no rows: a restore replaced the table */
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
    if (ds->n_key == 0 && (fr_batch_op(l->b) == FR_OP_DELETE || fr_batch_op(l->b) == FR_OP_HARD_DELETE)) {
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

/* The batch's column names (owned array of borrowed names), for sql.c. */
static const char **batch_cols(const fr_batch_t *b)
{
    const char **cols = fr_xcalloc(fr_batch_cols(b) + 1, sizeof(*cols));
    for (size_t i = 0; i < fr_batch_cols(b); i++)
        cols[i] = fr_batch_col_name(b, i);
    return cols;
}

/* A data version the ledger statement returned: the dataset's, or an
 * aggregate model's (into "versions" of batch.loaded). */
static void note_version(struct ld_load *l, const char *name, const char *v, const char *us)
{
    int64_t version, at;
    if (!fr_parse_i64(v, strlen(v), &version) || !fr_parse_i64(us, strlen(us), &at))
        return;
    if (strcmp(name, ds_of(l)->qname) == 0) {
        l->version = version;
        l->version_us = at;
        return;
    }
    if (l->aggv.len)
        (void)fr_buf_putc(&l->aggv, ',');
    (void)fr_buf_json_str(&l->aggv, name, strlen(name));
    (void)fr_buf_printf(&l->aggv, ":%" PRId64, version);
}

/* The data versions raised before the COMMIT (LOAD_COMMIT; the COMMIT's own
 * callback follows and decides). */
static void on_versions(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_load *l = data;

    (void)pg;
    if (fr__loader_gone(l->ld) || !res) /* lost: the COMMIT's callback sees it too */
        return;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 3) {
        fr_warn("batch %s: cannot raise the data version: %s", l->e->id, PQresultErrorMessage(res));
        l->version_failed = true;
        return;
    }
    for (int i = 0; i < PQntuples(res); i++)
        note_version(l, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
}

/* The PREPARE of an aggregate model's statement (LOAD_AGGREGATE; its
 * EXECUTE's callback follows and decides). */
static void on_prepared(fr_pg_t *pg, PGresult *res, void *data)
{
    struct ld_load *l = data;
    struct ld_model *m;

    (void)pg;
    if (fr__loader_gone(l->ld) || !res) /* lost: the EXECUTE's callback sees it too */
        return;
    m = l->e->st->aggs[l->agg_i];
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char why[sizeof(l->reason)];
        const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(why, sizeof(why), "aggregate model %s: %s", m->state_name, msg ? msg : PQresultErrorMessage(res));
        set_reason(l, why);
        l->prepare_failed = true;
        return;
    }
    m->agg_session = l->ld->pg_session;
}

void fr__load_new_session(struct loader *ld)
{
    ld->stage_for = NULL;
    ld->pg_session++;
}

/* Distinct keys for the batch.loaded event: the dataset key when it is one
 * column, else the first single-column key of a model fed by it. Stops
 * counting past LD_EVENT_KEYS (the event then omits them). */
static void event_keys_of(const struct ld_load *l, const fr_batch_t *b, struct fr_keyset *keys)
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
    if (!col || !batch_has_col(b, col, &ci))
        return;
    for (size_t r = 0; r < fr_batch_rows(b) && keys->n <= LD_EVENT_KEYS; r++) {
        size_t len;
        const char *v = fr_batch_value(b, ci, r, &len);
        if (v)
            (void)fr__keyset_add(keys, v, len);
    }
}

static void event_keys(struct ld_load *l)
{
    event_keys_of(l, l->b, &l->keys);
}

static const char *op_name(enum fr_batch_op op)
{
    switch (op) {
    case FR_OP_UPSERT:
        return "upsert";
    case FR_OP_DELETE:
        return "delete";
    case FR_OP_HARD_DELETE:
        return "hard_delete";
    case FR_OP_REPLACED:
        return "replaced";
    }
    return "?";
}

/* [{"row":i,"field":..,"value":..,"kind":..,"reason":..}] from LOAD_CHECK's rows. */
static void put_rejected_json(struct fr_buf *j, const struct ld_rows *rej)
{
    static const char *const names[] = {"row", "field", "value", "kind", "reason"};

    (void)fr_buf_putc(j, '[');
    for (size_t r = 0; r < rej->n_rows; r++) {
        (void)fr_buf_puts(j, r ? ",{" : "{");
        for (size_t c = 0; c < rej->n_cols && c < FR_ARRAY_LEN(names); c++) {
            int len;
            const char *v = fr__rows_val(rej, r, c, &len);
            (void)fr_buf_printf(j, "%s\"%s\":", c ? "," : "", names[c]);
            if (!v)
                (void)fr_buf_puts(j, "null");
            else if (c == 0)
                (void)fr_buf_append(j, v, (size_t)len); /* an integer */
            else
                (void)fr_buf_json_str(j, v, (size_t)len);
        }
        (void)fr_buf_putc(j, '}');
    }
    (void)fr_buf_putc(j, ']');
}

/* XADD fr:dlq:{qname} * kind row batch <id> row <i> field <f> value <v>
 * file <raw path> line <n> reason <r>, one per rejected row, pipelined;
 * on_redis counts the replies. 0, or -ENOTCONN when nothing could be sent. */
static int send_row_dlq(struct ld_load *l)
{
    struct loader *ld = l->ld;
    const char *id = fr_batch_id(l->b);
    const char *file = fr_batch_raw_path(l->b);

    l->dlq_out = 0;
    l->dlq_failed = false;
    for (size_t r = 0; r < l->rej.n_rows; r++) {
        int len;
        const char *row = fr__rows_val(&l->rej, r, 0, &len);
        const char *field = fr__rows_val(&l->rej, r, 1, &len);
        const char *value = fr__rows_val(&l->rej, r, 2, &len);
        const char *reason = fr__rows_val(&l->rej, r, 4, &len);
        int64_t ri = 0;
        char line[16];
        const char *argv[] = {"XADD",
                              l->e->st->dlq,
                              "*",
                              "kind",
                              "row",
                              "batch",
                              id,
                              "row",
                              row ? row : "0",
                              "field",
                              field ? field : "",
                              "value",
                              value ? value : "",
                              "file",
                              file,
                              "line",
                              line,
                              "reason",
                              reason ? reason : ""};
        if (row)
            (void)fr_parse_i64(row, strlen(row), &ri);
        snprintf(line, sizeof(line), "%u",
                 ri >= 0 && (size_t)ri < fr_batch_rows(l->b) ? fr_batch_line(l->b, (size_t)ri) : 0u);
        if (fr_redis_commandv(ld->app->redis, 0, on_redis, l, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0) {
            l->dlq_failed = true;
            break;
        }
        l->dlq_out++;
    }
    if (l->dlq_out == 0)
        return -ENOTCONN;
    /* Some sent, some not: the replies still come; dlq_failed rolls back. */
    return 0;
}

/* batch.loaded of batch b (the load's, or one of its group's), keys: its
 * distinct keys (event_keys_of). */
static void publish_loaded(struct ld_load *l, const fr_batch_t *b, const struct fr_keyset *keys)
{
    struct fr_buf j;
    const char *id = fr_batch_id(b);
    char ts[32];

    fr_buf_init(&j, 0);
    fr_format_timestamp(fr_wall_us(), ts);
    fr__event_begin(&j, "batch.loaded");
    (void)fr_buf_puts(&j, ",\"dataset\":");
    (void)fr_buf_json_str(&j, ds_of(l)->qname, strlen(ds_of(l)->qname));
    (void)fr_buf_puts(&j, ",\"batch\":");
    (void)fr_buf_json_str(&j, id, strlen(id));
    (void)fr_buf_printf(&j, ",\"op\":\"%s\",\"rows\":%zu,\"loaded\":%zu,\"rejected\":", op_name(fr_batch_op(b)),
                        fr_batch_rows(b), fr_batch_rows(b) - l->rej.n_rows);
    put_rejected_json(&j, &l->rej);
    (void)fr_buf_printf(&j, ",\"commit_time\":\"%s\"", ts);
    if (l->version > 0) { /* the api's ETags (docs/routes.md "HTTP caching") */
        fr_format_timestamp(l->version_us, ts);
        (void)fr_buf_printf(&j, ",\"version\":%" PRId64 ",\"refreshed_at\":\"%s\"", l->version, ts);
        if (l->aggv.len)
            (void)fr_buf_printf(&j, ",\"versions\":{%.*s}", (int)l->aggv.len, l->aggv.data);
    }
    fr__json_keys(&j, "keys", keys);
    (void)fr_buf_putc(&j, '}');
    fr__loader_publish(l->ld, &j);
    fr_buf_deinit(&j);
}

static void publish_outcome(struct ld_load *l)
{
    struct loader *ld = l->ld;
    struct fr_buf j;
    const char *id = batch_id_of(l);

    fr_buf_init(&j, 0);
    if (l->outcome == LD_OUT_LOADED) {
        event_keys(l);
        publish_loaded(l, l->b, &l->keys);
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

/* finish() of a group: every batch of it counted and announced as if
 * loaded alone (the same version and commit). */
static void finish_group(struct ld_load *l)
{
    struct loader *ld = l->ld;
    struct ld_stream *st = l->e->st;
    const char *id = batch_id_of(l);
    double secs = (double)(fr_mono_ns() - l->t0_ns) / 1e9;
    size_t rows = 0;

    switch (l->outcome) {
    case LD_OUT_LOADED:
        for (size_t i = 0; i < l->n_group; i++) {
            (*st->m_loaded)++;
            *st->m_rows += fr_batch_rows(l->gb[i]);
            rows += fr_batch_rows(l->gb[i]);
            fr_histogram_observe(ld->m_batch_secs, secs);
            if (!l->ack_lost) {
                struct fr_keyset keys;
                fr__keyset_init(&keys);
                event_keys_of(l, l->gb[i], &keys);
                publish_loaded(l, l->gb[i], &keys);
                fr__keyset_deinit(&keys);
            }
        }
        fr_log_kv(FR_LOG_DEBUG, "batch", id, "loaded %zu batches (%zu rows) into %s in one transaction in %.1f ms",
                  l->n_group, rows, ds_of(l)->table, secs * 1e3);
        break;
    case LD_OUT_SPLIT:
        fr_log_kv(FR_LOG_INFO, "batch", id, "a group of %zu batches of %s did not load (%s): loading them one by one",
                  l->n_group, ds_of(l)->qname, l->reason);
        break;
    case LD_OUT_PG_LOST:
        fr_log_kv(FR_LOG_WARN, "batch", id, "PostgreSQL lost while loading a group of %zu batches (%s): will retry",
                  l->n_group, fr__load_state_name(l->prev));
        break;
    case LD_OUT_REDIS_LOST:
        fr_log_kv(FR_LOG_WARN, "batch", id, "Redis lost while finishing a group of %zu batches (%s): will retry",
                  l->n_group, fr__load_state_name(l->prev));
        break;
    case LD_OUT_DUPLICATE:
    case LD_OUT_FAILED:
    case LD_OUT_DEAD:
        break; /* a group that fails splits instead */
    }
}

static void finish(struct ld_load *l)
{
    struct loader *ld = l->ld;
    struct ld_stream *st = l->e->st;
    const char *id = batch_id_of(l);
    double secs = (double)(fr_mono_ns() - l->t0_ns) / 1e9;

    if (l->n_group > 1) {
        finish_group(l);
        return;
    }
    switch (l->outcome) {
    case LD_OUT_LOADED:
        (*st->m_loaded)++;
        *st->m_rows += fr_batch_rows(l->b) - l->rej.n_rows;
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
    case LD_OUT_SPLIT:
        break; /* only a group splits */
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

/* LOAD_COPY's producer: the next rows of [lo, hi) as COPY text, about
 * LD_COPY_PART_BYTES at a time. Encoding cannot fail for a decoded batch
 * (the buffer has no cap); a failure would end the COPY with an error and
 * the transaction would roll back like any failed statement. */
static int copy_fill(void *data, struct fr_buf *out)
{
    struct ld_load *l = data;

    if (l->n_group > 1) { /* every batch of the group, one after the other */
        while (l->copy_b < l->n_group && out->len < LD_COPY_PART_BYTES) {
            const fr_batch_t *b = l->gb[l->copy_b];
            size_t n = fr_batch_rows(b), to = l->copy_next + 256 < n ? l->copy_next + 256 : n;
            if (l->copy_next >= n) {
                l->copy_b++;
                l->copy_next = 0;
                continue;
            }
            if (fr_batch_copy_text(b, l->copy_next, to, out) != 0)
                return -1;
            l->copy_next = to;
        }
        return l->copy_b < l->n_group ? 1 : 0;
    }
    while (l->copy_next < l->hi && out->len < LD_COPY_PART_BYTES) {
        size_t to = l->copy_next + 256 < l->hi ? l->copy_next + 256 : l->hi;
        if (fr_batch_copy_text(l->b, l->copy_next, to, out) != 0)
            return -1;
        l->copy_next = to;
    }
    return l->copy_next < l->hi ? 1 : 0;
}

/* LOAD_LEDGER of a group: one statement inserting every batch's ledger row
 * (FR_SQL_LEDGER_INSERT_MANY); each row as LOAD_LEDGER writes it alone. */
static int send_ledger_group(struct ld_load *l)
{
    struct fr_buf a[5]; /* ids, rows, raw paths, SHA-256s, keys */
    const char *params[6];
    int rc;

    for (size_t k = 0; k < 5; k++) {
        fr_buf_init(&a[k], 0);
        (void)fr_buf_putc(&a[k], '{');
    }
    for (size_t i = 0; i < l->n_group; i++) {
        const fr_batch_t *b = l->gb[i];
        struct fr_keyset keys;
        struct fr_buf lit;
        fr__sql_array_elem(&a[0], fr_batch_id(b), i == 0);
        (void)fr_buf_printf(&a[1], "%s%zu", i ? "," : "", fr_batch_rows(b));
        fr__sql_array_elem(&a[2], fr_batch_raw_path(b), i == 0);
        fr__sql_array_elem(&a[3], fr_batch_raw_sha256(b), i == 0);
        fr__keyset_init(&keys);
        fr_buf_init(&lit, 0);
        event_keys_of(l, b, &keys);
        if (keys.n && keys.n <= LD_EVENT_KEYS)
            fr__sql_text_array(&lit, &keys);
        fr__sql_array_elem(&a[4], lit.len ? lit.data : NULL, i == 0);
        fr_buf_deinit(&lit);
        fr__keyset_deinit(&keys);
    }
    for (size_t k = 0; k < 5; k++)
        (void)fr_buf_putc(&a[k], '}');
    params[0] = a[0].data;
    params[1] = ds_of(l)->qname;
    params[2] = a[1].data;
    params[3] = a[2].data;
    params[4] = a[3].data;
    params[5] = a[4].data;
    rc = fr_pg_query(l->ld->app->pg, FR_SQL_LEDGER_INSERT_MANY, 6, params, NULL, on_pg, l);
    for (size_t k = 0; k < 5; k++)
        fr_buf_deinit(&a[k]);
    return rc;
}

static void on_group_ack(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_load *l = data;

    (void)r;
    if (fr__loader_gone(l->ld))
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            fr_warn("ack of a group led by %s failed: %s", l->e->id, reply->str);
        l->acks_failed = true;
    }
    if (--l->acks_out > 0)
        return;
    l->ack_lost = l->acks_failed; /* the rest are read again and found in the ledger */
    enter(l, LOAD_DONE);
}

/* LOAD_ACK of a group: one XACK per entry, pipelined. 0, or -ENOTCONN when
 * none could be sent. */
static int send_group_acks(struct ld_load *l)
{
    l->acks_out = 0;
    l->acks_failed = false;
    for (struct ld_entry *e = l->e; e; e = e->next) {
        if (fr__consume_ack(l->ld, e->st, e->id, on_group_ack, l) != 0) {
            l->acks_failed = true;
            break;
        }
        l->acks_out++;
    }
    return l->acks_out ? 0 : -ENOTCONN;
}

/* A group's transaction will not commit: roll it back; main.c puts its
 * entries back to load one by one (group.c). */
static void split_group(struct ld_load *l, const char *why)
{
    set_reason(l, why);
    l->outcome = LD_OUT_SPLIT;
    l->rb_next = LOAD_DONE;
    enter(l, LOAD_ROLLBACK);
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
        if (l->n_group > 1) {
            rc = send_ledger_group(l);
            break;
        }
        const char *params[6];
        struct fr_buf keys;
        snprintf(rows, sizeof(rows), "%zu", fr_batch_rows(l->b));
        fr_buf_init(&keys, 0);
        if (!l->keys.n)
            event_keys(l); /* the same keys batch.loaded names (idempotent) */
        if (l->keys.n && l->keys.n <= LD_EVENT_KEYS)
            fr__sql_text_array(&keys, &l->keys);
        params[0] = fr_batch_id(l->b);
        params[1] = ds->qname;
        params[2] = rows;
        params[3] = fr_batch_raw_path(l->b);
        params[4] = fr_batch_raw_sha256(l->b);
        params[5] = keys.data; /* NULL: none or many */
        rc = fr_pg_query(ld->app->pg, FR_SQL_LEDGER_INSERT, 6, params, NULL, on_pg, l);
        fr_buf_deinit(&keys);
        break;
    }
    case LOAD_STAGE: {
        /* The connection's fr_stage is reused while its batches are of one
         * dataset (ld->stage_for, set by their COMMITs): creating and dropping
         * a temporary table is catalog work that cost more than the rows. */
        char lo[24];
        const char *params[1] = {lo};
        bool reuse = !l->isolate && ld->stage_for == ds;
        ld->stage_for = NULL; /* until this transaction commits */
        snprintf(lo, sizeof(lo), "%zu", l->lo);
        if (reuse) {
            rc = fr_pg_query(ld->app->pg, FR_SQL_STAGE_RESET, 1, params, NULL, on_pg, l);
        } else {
            fr_sql_stage(&s, ds, l->lo);
            rc = fr_pg_query(ld->app->pg, s.data, 0, NULL, NULL, on_pg, l);
        }
        break;
    }
    case LOAD_COPY:
        /* Streamed: rows are encoded a part at a time as the connection
         * takes them (copy_fill), so the server parses while we encode. */
        fr_sql_copy(&s, ds, l->staged, l->cols, fr_batch_cols(l->b));
        l->copy_next = l->lo;
        l->copy_b = 0;
        rc = fr_pg_copy_in_stream(ld->app->pg, s.data, copy_fill, l, on_pg, l);
        break;
    case LOAD_CHECK: {
        const char *params[1] = {fr_batch_id(l->b)};
        fr_sql_check(&s, l->e->st->p, ds, l->cols, fr_batch_cols(l->b));
        rc = fr_pg_query(ld->app->pg, s.data, 1, params, NULL, on_pg, l);
        break;
    }
    case LOAD_ROWDLQ:
        rc = send_row_dlq(l);
        if (rc != 0) {
            /* Redis is down: roll back, the batch stays pending. */
            l->outcome = LD_OUT_REDIS_LOST;
            l->rb_next = LOAD_DONE;
            fr_buf_deinit(&s);
            enter(l, LOAD_ROLLBACK);
            return;
        }
        break;
    case LOAD_MERGE: {
        char ts[40];
        const char *params[1] = {ts};
        fr_format_timestamp(fr_batch_produced_at_us(l->b) ? fr_batch_produced_at_us(l->b) : fr_wall_us(), ts);
        if (fr_sql_merge(&s, ds, l->cols, fr_batch_cols(l->b), fr_batch_op(l->b)))
            rc = fr_pg_query(ld->app->pg, s.data, 1, params, NULL, on_pg, l);
        else
            rc = fr_pg_query(ld->app->pg, s.data, 0, NULL, NULL, on_pg, l);
        break;
    }
    case LOAD_RETAIN: {
        char ts[40];
        const char *params[1] = {ts};
        int64_t cutoff = fr_pipeline_now(l->e->st->p) - (int64_t)ds->retention_days * 86400000000LL;
        fr_format_timestamp(cutoff, ts);
        fr_sql_retain(&s, ds);
        rc = fr_pg_query(ld->app->pg, s.data, 1, params, NULL, on_pg, l);
        break;
    }
    case LOAD_AGGREGATE: {
        /* The batch's staged rows into each aggregate model it feeds, in
         * this transaction: the ledger row makes it exactly once. The
         * statement is PREPAREd once a session (planning it cost several
         * times its run on a small batch), after fr_stage exists: it reads
         * that table, and is planned again when fr_stage is recreated. A
         * PREPARE is not undone by a rollback. */
        struct ld_model *m = l->e->st->aggs[l->agg_i];
        char name[64], exec[80];
        snprintf(name, sizeof(name), "fr_agg_%" PRIu64 "_%zu", ld->pg_session, (size_t)(m - ld->models));
        snprintf(exec, sizeof(exec), "EXECUTE %s", name);
        l->prepare_failed = false;
        if (ld->pg_session == 0 || m->agg_session != ld->pg_session) {
            (void)fr_buf_printf(&s, "PREPARE %s AS ", name);
            fr_aggsql_apply(&s, m->m, ds, "fr_stage", false);
            rc = fr_pg_query(ld->app->pg, s.data, 0, NULL, NULL, on_prepared, l);
        }
        if (rc == 0)
            rc = fr_pg_query(ld->app->pg, exec, 0, NULL, NULL, on_pg, l);
        break;
    }
    case LOAD_COMMIT: {
        /* the data versions, pipelined just before the COMMIT (sql.h) */
        const char *params[1] = {NULL};
        (void)fr_buf_printf(&s, "{\"%s\"", ds->qname);
        for (size_t i = 0; fr_batch_op(l->b) == FR_OP_UPSERT && i < l->e->st->n_aggs; i++)
            (void)fr_buf_printf(&s, ",\"%s\"", l->e->st->aggs[i]->state_name);
        (void)fr_buf_putc(&s, '}');
        params[0] = s.data;
        fr_buf_reset(&l->aggv);
        l->version = 0;
        l->version_failed = false;
        rc = fr_pg_query(ld->app->pg, FR_SQL_VERSIONS_BUMP, 1, params, NULL, on_versions, l);
        if (rc == 0)
            rc = fr_pg_query(ld->app->pg, "COMMIT", 0, NULL, NULL, on_pg, l);
        break;
    }
    case LOAD_ROLLBACK:
        rc = fr_pg_query(ld->app->pg, "ROLLBACK", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_DLQ: {
        const char *path = l->b ? fr_batch_raw_path(l->b) : "";
        const char *id = batch_id_of(l);
        l->outcome = LD_OUT_DEAD;
        rc = fr__consume_dlq(ld, l->e->st, l->e->id, id, path, l->reason, path, strlen(path), l->e->batch,
                             l->e->batch_len, on_redis, l);
        if (rc != 0) {
            l->outcome = LD_OUT_REDIS_LOST;
            fr_buf_deinit(&s);
            enter(l, LOAD_DONE);
            return;
        }
        break;
    }
    case LOAD_ACK:
        rc = l->n_group > 1 ? send_group_acks(l) : fr__consume_ack(ld, l->e->st, l->e->id, on_redis, l);
        if (rc != 0) {
            l->ack_lost = true;
            if (l->outcome != LD_OUT_LOADED)
                l->outcome = LD_OUT_REDIS_LOST;
            fr_buf_deinit(&s);
            enter(l, LOAD_DONE);
            return;
        }
        break;
    case LOAD_SAVEPOINT:
        rc = fr_pg_query(ld->app->pg, "SAVEPOINT fr_part", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_PART_UNDO:
        rc = fr_pg_query(ld->app->pg, "ROLLBACK TO SAVEPOINT fr_part", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_PART_DROP:
        rc = fr_pg_query(ld->app->pg, "DROP TABLE fr_stage", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_PART_RELEASE:
        rc = fr_pg_query(ld->app->pg, "RELEASE SAVEPOINT fr_part", 0, NULL, NULL, on_pg, l);
        break;
    case LOAD_REJECTS: {
        const char *params[2] = {fr_batch_id(l->b), NULL};
        struct fr_buf j;
        fr_buf_init(&j, 0);
        put_rejected_json(&j, &l->rej);
        params[1] = j.data;
        rc = fr_pg_query(ld->app->pg, FR_SQL_LEDGER_REJECTED, 2, params, NULL, on_pg, l);
        fr_buf_deinit(&j);
        break;
    }
    case LOAD_DONE:
        fr_buf_deinit(&s);
        finish(l);
        for (size_t i = 1; i < l->n_group; i++)
            fr_batch_free(l->gb[i]);
        free(l->gb);
        l->gb = NULL;
        l->n_group = 1;
        fr_batch_free(l->b);
        l->b = NULL;
        free(l->cols);
        l->cols = NULL;
        fr__keyset_deinit(&l->keys);
        fr_buf_deinit(&l->aggv);
        fr__rows_deinit(&l->rej);
        fr__rows_deinit(&l->part_rej);
        l->state = LOAD_IDLE;
        l->done(ld, 0);
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

/* ---- Rows at fault ------------------------------------------------------------
 * A batch the server refuses for its data (SQLSTATE class 22 data exception,
 * class 23 integrity constraint, 54000 program_limit_exceeded: e.g. a value
 * too large for a btree index) fails because of some of its rows. Instead of
 * retrying it whole (and dead-lettering every row after the fifth failure),
 * the loader rolls back and loads it again in ONE transaction: the ledger
 * row, then parts of the batch, each under a savepoint. A part that fails for
 * its data is rolled back to its savepoint and split in halves, down to
 * single rows; a single row that still fails is a rejected row (kind "load",
 * the server's reason) like a constraint reject: recorded in the ledger's
 * `rejected`, dead-lettered before the COMMIT and reported in batch.loaded.
 * One COMMIT makes the ledger row and every good row visible together, so the
 * batch is recorded once and loaded exactly once: a crash or a lost
 * connection anywhere leaves nothing, and the retry starts over. (One
 * transaction per part with part-suffixed ledger ids would commit parts
 * separately: a retry after a crash could split the batch differently, the
 * part ids would not name the same rows, and the ledger would no longer
 * answer "is this batch loaded" with one row.) The cost is one subtransaction
 * per part, about 2 x log2(rows) per row at fault; past LD_ISOLATE_PARTS
 * parts the batch fails whole, as before. */

static bool is_data_error(const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return st && (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0 || strcmp(st, "54000") == 0);
}

/* States whose statements write the batch's rows. */
static bool is_row_state(enum ld_load_state s)
{
    return s == LOAD_COPY || s == LOAD_CHECK || s == LOAD_MERGE || s == LOAD_RETAIN || s == LOAD_AGGREGATE;
}

/* Appends one row of 5 columns (row, field, value, kind, reason) to r; a
 * NULL value is SQL null. */
static void rows_add(struct ld_rows *r, const char *const v[5], const int len[5])
{
    size_t k = r->n_rows * 5;

    if (r->n_rows == 0 && !r->off) {
        fr__rows_deinit(r);
        fr_buf_init(&r->data, 0);
        r->n_cols = 5;
    }
    r->off = fr_xrealloc(r->off, (k + 5 + 1) * sizeof(*r->off));
    r->len = fr_xrealloc(r->len, (k + 5 + 1) * sizeof(*r->len));
    r->deleted = fr_xrealloc(r->deleted, (r->n_rows + 2) * sizeof(*r->deleted));
    r->deleted[r->n_rows] = false;
    for (size_t c = 0; c < 5; c++) {
        r->off[k + c] = r->data.len;
        r->len[k + c] = v[c] ? len[c] : -1;
        if (v[c]) {
            (void)fr_buf_append(&r->data, v[c], (size_t)len[c]);
            (void)fr_buf_putc(&r->data, '\0');
        }
    }
    r->n_rows++;
}

/* Appends row i of `from` (LOAD_CHECK's 5 columns) to `to`. */
static void rows_copy_row(struct ld_rows *to, const struct ld_rows *from, size_t i)
{
    const char *v[5];
    int len[5];

    for (size_t c = 0; c < 5; c++)
        v[c] = c < from->n_cols ? fr__rows_val(from, i, c, &len[c]) : NULL;
    rows_add(to, v, len);
}

static void next_part(struct ld_load *l);

static void push_part(struct ld_load *l, size_t lo, size_t hi)
{
    l->todo_lo[l->n_todo] = lo;
    l->todo_hi[l->n_todo] = hi;
    l->n_todo++;
}

/* The first data error of the batch: roll back, then load it in parts. */
static void start_isolation(struct ld_load *l, const PGresult *res)
{
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    fr_log_kv(FR_LOG_WARN, "batch", batch_id_of(l),
              "load of %s refused for its data (%s: %s): loading it again in parts to set the rows at fault "
              "aside",
              ds_of(l)->qname, PQresultErrorField(res, PG_DIAG_SQLSTATE), m ? m : "?");
    l->isolate = true;
    l->n_todo = 0;
    l->parts = 0;
    push_part(l, 0, fr_batch_rows(l->b));
    fr__rows_deinit(&l->rej);
    fr__rows_deinit(&l->part_rej);
    l->rb_next = LOAD_BEGIN;
    enter(l, LOAD_ROLLBACK);
}

/* A part failed for its data: note why, then roll back to its savepoint. */
static void part_failed(struct ld_load *l, const PGresult *res)
{
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    const char *col = PQresultErrorField(res, PG_DIAG_COLUMN_NAME);
    char buf[sizeof(l->reason)];

    snprintf(buf, sizeof(buf), "%s%s%s%s", primary ? primary : "refused by PostgreSQL", detail ? " (" : "",
             detail ? detail : "", detail ? ")" : "");
    set_reason(l, buf);
    snprintf(l->fault_col, sizeof(l->fault_col), "%s", col ? col : "");
    fr__rows_deinit(&l->part_rej);
    enter(l, LOAD_PART_UNDO);
}

/* After the rollback of a failed part: a single row is set aside, a larger
 * part is split in halves (the lower half loads first). */
static void part_undone(struct ld_load *l)
{
    if (l->hi - l->lo == 1) {
        char row[24];
        const char *value = NULL;
        size_t vlen = 0, ci;
        const char *v[5];
        int len[5];

        snprintf(row, sizeof(row), "%zu", l->lo);
        if (l->fault_col[0] && batch_has_col(l->b, l->fault_col, &ci))
            value = fr_batch_value(l->b, ci, l->lo, &vlen);
        v[0] = row;
        v[1] = l->fault_col;
        v[2] = value ? value : "";
        v[3] = "load";
        v[4] = l->reason;
        len[0] = (int)strlen(row);
        len[1] = (int)strlen(l->fault_col);
        len[2] = value ? (int)(vlen > 200 ? 200 : vlen) : 0;
        len[3] = 4;
        len[4] = (int)strlen(l->reason);
        rows_add(&l->rej, v, len);
        fr_log_kv(FR_LOG_WARN, "batch", batch_id_of(l), "row %zu of %s set aside: %s", l->lo, ds_of(l)->qname,
                  l->reason);
    } else {
        size_t mid = l->lo + (l->hi - l->lo) / 2;
        push_part(l, mid, l->hi);
        push_part(l, l->lo, mid);
    }
    next_part(l);
}

/* Loads the next part, or ends the transaction when none is left. */
static void next_part(struct ld_load *l)
{
    if (l->n_todo == 0) {
        fr_log_kv(FR_LOG_INFO, "batch", batch_id_of(l), "%s: %zu of %zu rows load, %zu set aside, in %zu parts",
                  ds_of(l)->qname, fr_batch_rows(l->b) - l->rej.n_rows, fr_batch_rows(l->b), l->rej.n_rows, l->parts);
        enter(l, l->rej.n_rows > 0 ? LOAD_REJECTS : LOAD_COMMIT);
        return;
    }
    if (++l->parts > LD_ISOLATE_PARTS) {
        char why[sizeof(l->reason) + 96];
        snprintf(why, sizeof(why), "more than %d parts needed to set aside the rows at fault; last: %s",
                 LD_ISOLATE_PARTS, l->reason);
        fail_batch(l, why);
        return;
    }
    l->n_todo--;
    l->lo = l->todo_lo[l->n_todo];
    l->hi = l->todo_hi[l->n_todo];
    enter(l, LOAD_SAVEPOINT);
}

/* The dataset's rows are written: the aggregate models next, if any. */
static void rows_done(struct ld_load *l)
{
    l->agg_i = 0;
    if (l->e->st->n_aggs > 0 && fr_batch_op(l->b) == FR_OP_UPSERT)
        enter(l, LOAD_AGGREGATE);
    else
        body_done(l);
}

/* The batch's rows (or the current part's) are written. */
static void body_done(struct ld_load *l)
{
    if (l->isolate)
        enter(l, l->staged ? LOAD_PART_DROP : LOAD_PART_RELEASE);
    else
        enter(l, l->rej.n_rows > 0 ? LOAD_ROWDLQ : LOAD_COMMIT);
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
        if (l->n_group > 1) {
            const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
            char why[sizeof(l->reason)];
            snprintf(why, sizeof(why), "%s",
                     l->state == LOAD_AGGREGATE && l->prepare_failed ? l->reason
                     : m                                             ? m
                                                                     : "error");
            split_group(l, why);
            return;
        }
        if (l->state == LOAD_AGGREGATE && l->prepare_failed) {
            char why[sizeof(l->reason)];
            memcpy(why, l->reason, sizeof(why)); /* the PREPARE's error, not "transaction is aborted" */
            fail_batch(l, why);
            return;
        }
        if (is_data_error(res) && is_row_state(l->state)) {
            if (l->isolate)
                part_failed(l, res);
            else
                start_isolation(l, res);
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
        if (l->n_group > 1 && (size_t)PQntuples(res) != l->n_group) {
            split_group(l, "a batch of it is in the ledger already");
            return;
        }
        if (PQntuples(res) == 0) {
            l->outcome = LD_OUT_DUPLICATE;
            l->rb_next = LOAD_ACK;
            /* Its rows are in: their model keys may not have been refreshed
             * before a crash, so refresh them again. */
            fr__model_touch(l->ld, l->e->st, l->b);
            enter(l, LOAD_ROLLBACK);
            return;
        }
        if (fr_batch_op(l->b) == FR_OP_REPLACED)
            enter(l, LOAD_COMMIT);
        else if (l->isolate)
            next_part(l);
        else
            enter(l, l->staged ? LOAD_STAGE : LOAD_COPY);
        return;
    case LOAD_STAGE:
        enter(l, LOAD_COPY);
        return;
    case LOAD_COPY:
        if (fr_sql_needs_check(ds_of(l), l->cols, fr_batch_cols(l->b), fr_batch_op(l->b)))
            enter(l, LOAD_CHECK);
        else if (l->staged)
            enter(l, LOAD_MERGE);
        else
            rows_done(l);
        return;
    case LOAD_CHECK: {
        struct ld_rows *into = l->isolate ? &l->part_rej : &l->rej;
        fr__rows_deinit(into);
        fr__rows_from_result(into, res, false);
        enter(l, LOAD_MERGE);
        return;
    }
    case LOAD_MERGE:
        if (ds_of(l)->n_retention_columns > 0 && ds_of(l)->retention_days > 0 && fr_batch_op(l->b) == FR_OP_UPSERT)
            enter(l, LOAD_RETAIN);
        else
            rows_done(l);
        return;
    case LOAD_RETAIN:
        rows_done(l);
        return;
    case LOAD_AGGREGATE:
        if (++l->agg_i < l->e->st->n_aggs)
            enter(l, LOAD_AGGREGATE);
        else
            body_done(l);
        return;
    case LOAD_SAVEPOINT:
        enter(l, l->staged ? LOAD_STAGE : LOAD_COPY);
        return;
    case LOAD_PART_UNDO:
        part_undone(l);
        return;
    case LOAD_PART_DROP:
        enter(l, LOAD_PART_RELEASE);
        return;
    case LOAD_PART_RELEASE:
        for (size_t r = 0; r < l->part_rej.n_rows; r++)
            rows_copy_row(&l->rej, &l->part_rej, r);
        fr__rows_deinit(&l->part_rej);
        next_part(l);
        return;
    case LOAD_REJECTS:
        enter(l, LOAD_ROWDLQ);
        return;
    case LOAD_COMMIT:
        if (l->version_failed || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
            /* the version bump failed, so the transaction was rolled back */
            if (l->n_group > 1) {
                split_group(l, "raising the data version failed");
                return;
            }
            fail_batch(l, "raising the data version failed; the transaction was rolled back");
            return;
        }
        if (l->ld->crash_after_commit && l->n_group >= l->ld->crash_after_commit) {
            fr_log_kv(FR_LOG_WARN, "batch", fr_batch_id(l->b),
                      "FRESHET_TEST_CRASH_AFTER_COMMIT: killing myself after COMMIT, before XACK");
            raise(SIGKILL);
        }
        l->outcome = LD_OUT_LOADED;
        if (l->staged && !l->isolate && fr_batch_op(l->b) != FR_OP_REPLACED)
            l->ld->stage_for = ds_of(l); /* its empty fr_stage stays (LOAD_STAGE) */
        if (fr_batch_op(l->b) == FR_OP_REPLACED)
            fr__model_touch_all(l->ld, l->e->st);
        else
            for (size_t i = 0; i < l->n_group; i++)
                fr__model_touch(l->ld, l->e->st, l->n_group > 1 ? l->gb[i] : l->b);
        fr__export_touch(l->ld, l->e->st->p, ds_of(l)->name);
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
    if (l->state == LOAD_ROWDLQ) {
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            if (reply)
                fr_warn("dead letter of a row of %s failed: %s", l->e->id, reply->str);
            l->dlq_failed = true;
        }
        if (--l->dlq_out > 0)
            return;
        if (l->dlq_failed) {
            /* Not all dead letters are in: roll back, retry the batch. */
            l->outcome = LD_OUT_REDIS_LOST;
            l->rb_next = LOAD_DONE;
            enter(l, LOAD_ROLLBACK);
        } else {
            enter(l, LOAD_COMMIT);
        }
        return;
    }
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

/* The entries chained behind the head (a group, group.c): each is decoded;
 * the first that does not fit ends the group, and it and those after it go
 * back to the queue. */
static void group_decode(struct ld_load *l, struct ld_entry *rest)
{
    struct ld_entry *last = l->e;
    size_t n = 1, rows = fr_batch_rows(l->b);
    char err[FR_ERR_LEN];

    for (struct ld_entry *e = rest; e; e = e->next)
        n++;
    l->gb = fr_xcalloc(n, sizeof(*l->gb));
    l->gb[0] = l->b;
    l->e->next = rest;
    while (last->next) {
        struct ld_entry *e = last->next;
        fr_batch_t *b = fr_batch_decode(e->batch, e->batch_len, err);
        if (!b || !fr__group_fits(l->b, b) || rows + fr_batch_rows(b) > LD_GROUP_ROWS) {
            fr_batch_free(b);
            break;
        }
        rows += fr_batch_rows(b);
        l->gb[l->n_group++] = b;
        last = e;
    }
    fr__group_return(l->ld, last->next, false);
    last->next = NULL;
    if (l->n_group == 1) {
        free(l->gb);
        l->gb = NULL;
    }
}

void fr__load_start(struct loader *ld, struct ld_entry *e, ld_done_cb done)
{
    struct ld_load *l = &ld->load;
    struct ld_entry *rest = e->next; /* a group's other entries (group.c) */
    char err[FR_ERR_LEN];

    e->next = NULL;
    memset(l, 0, sizeof(*l));
    l->n_group = 1;
    l->ld = ld;
    l->state = LOAD_IDLE;
    l->e = e;
    l->done = done;
    l->t0_ns = fr_mono_ns();
    fr__keyset_init(&l->keys);
    fr_buf_init(&l->aggv, 0);
    l->keyed = e->st->ds->n_key > 0;
    l->staged = l->keyed || e->st->n_aggs > 0;

    if (rest && (!e->batch || e->batch_len > FR_BATCH_MAX_BYTES)) {
        fr__group_return(ld, rest, false);
        rest = NULL;
    }
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
    if (rest && (!l->b || !check_batch(l))) {
        fr__group_return(ld, rest, false);
        rest = NULL;
    }
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
    l->cols = batch_cols(l->b);
    l->lo = 0;
    l->hi = fr_batch_rows(l->b);
    if (rest)
        group_decode(l, rest);
    enter(l, LOAD_BEGIN);
}
