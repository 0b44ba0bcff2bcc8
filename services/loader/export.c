/* export: the loader's upkeep jobs in the refresh slot (on refresh_pg, when
 * no model refresh is due): pipeline exports (a SELECT written as CSV after
 * a refresh of a model, or a load of a dataset, named in `after`) and the
 * daily retention of datasets with `retention` (all rows; loads handle their
 * own keys). The CSV file is written with blocking I/O on the loop (without
 * fsync): exports are small reports, written at most once per refresh. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader_int.h"
#include "log.h"

#define US_PER_DAY 86400000000LL

static int32_t day_of(int64_t us)
{
    int64_t d = us / US_PER_DAY;
    if (us < 0 && us % US_PER_DAY != 0)
        d--;
    return (int32_t)d;
}

void fr__export_touch(struct loader *ld, const struct fr_pipeline *p, const char *name)
{
    for (size_t i = 0; i < ld->n_exports; i++) {
        struct ld_export *x = &ld->exports[i];
        if (x->p != p)
            continue;
        for (size_t k = 0; k < x->x->n_after; k++)
            if (strcmp(x->x->after[k], name) == 0)
                x->pending = true;
    }
}

/* ---- CSV ------------------------------------------------------------------------ */

/* Header labels are the query's column names, written as they are; data
 * cells follow fr_buf_csv_value, the rule the api's CSV answers share: a
 * text cell starting with = + - @ TAB or CR gets a leading ' unless the
 * export says csv_raw (docs/security.md). */
static void csv_field(struct fr_buf *b, const char *v, size_t n)
{
    (void)fr_buf_csv_field(b, v, n);
}

/* "{ts}" of the path becomes the UTC time as 20240617T120000Z. */
static char *expand_path(const char *data_dir, const char *path, int64_t now_us)
{
    struct fr_buf b;
    char iso[32];
    char ts[20];
    const char *p;
    char *out;

    fr_format_timestamp(now_us, iso); /* YYYY-MM-DDTHH:MM:SS... */
    snprintf(ts, sizeof(ts), "%.4s%.2s%.2sT%.2s%.2s%.2sZ", iso, iso + 5, iso + 8, iso + 11, iso + 14, iso + 17);
    fr_buf_init(&b, 0);
    (void)fr_buf_printf(&b, "%s/", data_dir);
    for (p = path; *p;) {
        if (strncmp(p, "{ts}", 4) == 0) {
            (void)fr_buf_puts(&b, ts);
            p += 4;
        } else {
            (void)fr_buf_putc(&b, *p++);
        }
    }
    out = fr_xstrdup(b.data);
    fr_buf_deinit(&b);
    return out;
}

/* Writes the CSV atomically (readers see the old export or the new one),
 * creating directories. FR_WRITE_FAST: no fsync on the loop; an export lost
 * to a crash is written again by the next refresh. */
static int write_atomic(const char *path, const struct fr_buf *data, char err[FR_ERR_LEN])
{
    int rc =
        fr_write_file_atomic(path, data->data ? data->data : "", data->len, 0644, FR_WRITE_FAST | FR_WRITE_MKDIRS);
    if (rc != 0)
        snprintf(err, FR_ERR_LEN, "cannot write %s: %s", path, strerror(-rc));
    return rc;
}

static void on_export(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_export *x = ld->export_run;
    struct fr_buf csv;
    struct fr_buf j;
    char err[FR_ERR_LEN];
    char *path;
    int nf;
    int nr;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    ld->export_run = NULL;
    if (!res) {
        x->pending = true; /* connection lost: again once it is back */
        fr__loader_job_done(ld, JOB_REFRESH, -ENOTCONN);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fr_error("export %s of pipeline %s (%s) failed: %s", x->x->name, x->p->name, x->x->sql_path,
                 PQresultErrorMessage(res));
        fr__loader_job_done(ld, JOB_REFRESH, -EIO);
        return;
    }
    nf = PQnfields(res);
    nr = PQntuples(res);
    fr_buf_init(&csv, 0);
    for (int c = 0; c < nf; c++) {
        const char *name = PQfname(res, c);
        if (c)
            (void)fr_buf_putc(&csv, ',');
        csv_field(&csv, name, strlen(name));
    }
    (void)fr_buf_putc(&csv, '\n');
    for (int r = 0; r < nr; r++) {
        for (int c = 0; c < nf; c++) {
            if (c)
                (void)fr_buf_putc(&csv, ',');
            if (!PQgetisnull(res, r, c))
                (void)fr_buf_csv_value(&csv, PQgetvalue(res, r, c), (size_t)PQgetlength(res, r, c), PQftype(res, c),
                                       x->x->csv_raw);
        }
        (void)fr_buf_putc(&csv, '\n');
    }
    path = expand_path(ld->app->settings.data_dir, x->x->path, fr_pipeline_now(x->p));
    if (write_atomic(path, &csv, err) != 0) {
        fr_error("export %s of pipeline %s: %s", x->x->name, x->p->name, err);
    } else {
        const char *rel = path + strlen(ld->app->settings.data_dir) + 1;
        fr_info("export %s of pipeline %s: %d rows written to %s", x->x->name, x->p->name, nr, path);
        fr_buf_init(&j, 0);
        fr__event_begin(&j, "export.written");
        (void)fr_buf_puts(&j, ",\"pipeline\":");
        (void)fr_buf_json_str(&j, x->p->name, strlen(x->p->name));
        (void)fr_buf_puts(&j, ",\"export\":");
        (void)fr_buf_json_str(&j, x->x->name, strlen(x->x->name));
        (void)fr_buf_puts(&j, ",\"path\":");
        (void)fr_buf_json_str(&j, rel, strlen(rel));
        (void)fr_buf_printf(&j, ",\"rows\":%d}", nr);
        fr__loader_publish(ld, &j);
        fr_buf_deinit(&j);
    }
    free(path);
    fr_buf_deinit(&csv);
    fr__loader_job_done(ld, JOB_REFRESH, 0);
}

/* ---- daily retention --------------------------------------------------------------- */

/* dataset.retained: the rows deleted and the dataset's new data version
 * (the api's ETags, docs/routes.md "HTTP caching"). */
static void publish_retained(struct loader *ld, struct ld_stream *st, const PGresult *res)
{
    struct fr_buf j;
    int64_t version, us;
    char ts[40];
    const char *v = PQgetvalue(res, 0, 1), *u = PQgetvalue(res, 0, 2);

    if (PQnfields(res) != 3 || PQgetisnull(res, 0, 1) || !fr_parse_i64(v, strlen(v), &version) ||
        !fr_parse_i64(u, strlen(u), &us))
        return;
    fr_format_timestamp(us, ts);
    fr_buf_init(&j, 0);
    fr__event_begin(&j, "dataset.retained");
    (void)fr_buf_puts(&j, ",\"dataset\":");
    (void)fr_buf_json_str(&j, st->ds->qname, strlen(st->ds->qname));
    (void)fr_buf_printf(&j, ",\"rows\":%s,\"version\":%" PRId64 ",\"refreshed_at\":\"%s\"}", PQgetvalue(res, 0, 0),
                        version, ts);
    fr__loader_publish(ld, &j);
    fr_buf_deinit(&j);
}

static void on_retained(fr_pg_t *pg, PGresult *res, void *data)
{
    struct loader *ld = data;
    struct ld_stream *st = ld->retain_run;

    (void)pg;
    if (fr__loader_gone(ld))
        return;
    ld->retain_run = NULL;
    if (!res) {
        fr__loader_job_done(ld, JOB_REFRESH, -ENOTCONN);
        return;
    }
    st->retain_day = st->retain_next_day; /* an error is logged and retried the next day */
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fr_error("retention of %s failed: %s", st->ds->table, PQresultErrorMessage(res));
        fr__loader_job_done(ld, JOB_REFRESH, -EIO);
        return;
    }
    if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
        fr_info("retention of %s: %s rows older than %" PRIu32 " days deleted", st->ds->table, PQgetvalue(res, 0, 0),
                st->ds->retention_days);
        fr__model_touch_all(ld, st);
        publish_retained(ld, st, res);
    }
    fr__loader_job_done(ld, JOB_REFRESH, 0);
}

static bool start_retention(struct loader *ld, struct ld_stream *st, int32_t today)
{
    const struct fr_dataset *ds = st->ds;
    int64_t cutoff = fr_pipeline_now(st->p) - (int64_t)ds->retention_days * US_PER_DAY;
    char ts[40];
    const char *params[2] = {ts, ds->qname};
    struct fr_buf s;
    int rc;

    fr_format_timestamp(cutoff, ts);
    fr_buf_init(&s, 0);
    (void)fr_buf_puts(&s, "WITH fr_d AS (DELETE FROM ");
    fr_buf_sql_ident(&s, ds->table);
    (void)fr_buf_puts(&s, " WHERE GREATEST(");
    for (size_t i = 0; i < ds->n_retention_columns; i++) {
        if (i)
            (void)fr_buf_puts(&s, ", ");
        fr_buf_sql_ident(&s, ds->retention_columns[i]);
    }
    /* and the dataset's data version + 1 when rows went (refreshed_at stays) */
    (void)fr_buf_puts(&s, ") < $1::timestamptz RETURNING 1), fr_n AS (SELECT count(*) AS n FROM fr_d), "
                          "fr_v AS (INSERT INTO freshet.versions AS v (name, version, refreshed_at) "
                          "SELECT $2, 1, now() FROM fr_n WHERE n > 0 ON CONFLICT (name) DO UPDATE SET "
                          "version = v.version + 1 RETURNING version, "
                          "(extract(epoch FROM refreshed_at) * 1000000)::bigint AS us) "
                          "SELECT n::text, (SELECT version FROM fr_v)::text, (SELECT us FROM fr_v)::text FROM fr_n");
    ld->refreshing = true;
    ld->retain_run = st;
    st->retain_next_day = today;
    rc = fr_pg_query(ld->refresh_pg, s.data, 2, params, NULL, on_retained, ld);
    fr_buf_deinit(&s);
    if (rc != 0) {
        ld->retain_run = NULL;
        ld->refreshing = false;
        return false;
    }
    return true;
}

bool fr__upkeep_start(struct loader *ld)
{
    /* Exports wait until the loads read so far are done (a burst of
     * batches writes one file, not one per batch). */
    for (size_t i = 0; i < ld->n_exports && ld->q_len == 0 && ld->job != JOB_LOAD; i++) {
        struct ld_export *x = &ld->exports[i];
        char now[40];
        const char *params[1] = {now};

        if (!x->pending)
            continue;
        x->pending = false;
        fr_format_timestamp(fr_pipeline_now(x->p), now);
        ld->refreshing = true;
        ld->export_run = x;
        if (fr_pg_query(ld->refresh_pg, x->x->sql, 1, params, NULL, on_export, ld) != 0) {
            x->pending = true;
            ld->export_run = NULL;
            ld->refreshing = false;
            return false;
        }
        return true;
    }
    for (size_t i = 0; i < ld->n_streams; i++) {
        struct ld_stream *st = &ld->streams[i];
        int32_t today;

        if (st->part != 0 || st->ds->n_retention_columns == 0 || st->ds->retention_days == 0)
            continue; /* once per dataset (partition 0) */
        today = day_of(fr_pipeline_now(st->p));
        if (today != st->retain_day)
            return start_retention(ld, st, today);
    }
    return false;
}
