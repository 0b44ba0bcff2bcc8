/* status: the ingest's members of its status JSON (status.h), one entry per
 * source of the loaded pipelines. Owns its per-source counters and the
 * dstatus writer. */
#include "status.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dstatus.h"

struct src_stat {
    const struct fr_pipeline *p; /* borrowed */
    const struct fr_source *src; /* borrowed */
    char qname[256];             /* dataset "{pipeline}.{dataset}" */
    uint64_t runs_ok, runs_failed;
    int64_t last_run_us; /* wall: last run's end (http_json) or last file (file), 0 = none */
    bool last_ok;
    uint64_t last_rows, last_rejected;
    char last_reason[256];
    char last_file[256];
    uint64_t rows, batches; /* published since start */
    uint64_t files_rejected;
};

struct fr_instatus {
    struct fr_app *app;    /* borrowed */
    fr_httpsrcs_t *http;   /* borrowed, may be NULL */
    fr_dstatus_t *writer;  /* owned */
    struct src_stat *srcs; /* owned */
    size_t n;
};

static const char *kind_name(enum fr_source_kind k)
{
    switch (k) {
    case FR_SRC_FILE:
        return "file";
    case FR_SRC_PUSH:
        return "push";
    case FR_SRC_HTTP_JSON:
        return "http_json";
    }
    return "unknown";
}

static void fill(struct fr_buf *b, void *data)
{
    fr_instatus_t *s = data;
    char ts[32];

    (void)fr_buf_puts(b, ",\"sources\":{");
    for (size_t i = 0; i < s->n; i++) {
        struct src_stat *st = &s->srcs[i];
        struct fr_httpsrc_live live;

        if (i)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_printf(b, "\"%s.%s\":{\"kind\":\"%s\",\"dataset\":", st->p->name, st->src->name,
                            kind_name(st->src->kind));
        (void)fr_buf_json_str(b, st->qname, strlen(st->qname));
        (void)fr_buf_printf(
            b, ",\"runs_ok\":%" PRIu64 ",\"runs_failed\":%" PRIu64 ",\"rows\":%" PRIu64 ",\"batches\":%" PRIu64,
            st->runs_ok, st->runs_failed, st->rows, st->batches);
        if (st->src->kind == FR_SRC_FILE)
            (void)fr_buf_printf(b, ",\"files_rejected\":%" PRIu64, st->files_rejected);
        if (st->last_run_us) {
            fr_format_timestamp(st->last_run_us, ts);
            (void)fr_buf_printf(
                b, ",\"last_run\":{\"at\":\"%s\",\"result\":\"%s\",\"rows\":%" PRIu64 ",\"rejected\":%" PRIu64, ts,
                st->last_ok ? "ok" : "failed", st->last_rows, st->last_rejected);
            if (st->last_reason[0]) {
                (void)fr_buf_puts(b, ",\"reason\":");
                (void)fr_buf_json_str(b, st->last_reason, strlen(st->last_reason));
            }
            if (st->last_file[0]) {
                (void)fr_buf_puts(b, ",\"file\":");
                (void)fr_buf_json_str(b, st->last_file, strlen(st->last_file));
            }
            (void)fr_buf_putc(b, '}');
        } else {
            (void)fr_buf_puts(b, ",\"last_run\":null");
        }
        if (st->src->kind == FR_SRC_HTTP_JSON && s->http &&
            fr_httpsrcs_live(s->http, st->p->name, st->src->name, &live)) {
            (void)fr_buf_printf(
                b, ",\"running\":%s,\"lease_held\":%s,\"rate_limit_waits\":%" PRIu64 ",\"retries\":%" PRIu64,
                live.running ? "true" : "false", live.lease_held ? "true" : "false", live.waits, live.retries);
            if (live.next_run_us > 0) {
                fr_format_timestamp(live.next_run_us, ts);
                (void)fr_buf_printf(b, ",\"next_run\":\"%s\"", ts);
            } else {
                (void)fr_buf_puts(b, ",\"next_run\":null");
            }
        }
        (void)fr_buf_putc(b, '}');
    }
    (void)fr_buf_putc(b, '}');
}

fr_instatus_t *fr_instatus_start(struct fr_app *app, fr_httpsrcs_t *http)
{
    fr_instatus_t *s = fr_xcalloc(1, sizeof(*s));
    size_t n = 0;

    s->app = app;
    s->http = http;
    for (size_t i = 0; i < app->n_pipelines; i++)
        n += app->pipelines[i]->n_sources;
    s->srcs = fr_xcalloc(n + 1, sizeof(*s->srcs));
    for (size_t i = 0; i < app->n_pipelines; i++) {
        const struct fr_pipeline *p = app->pipelines[i];
        for (size_t k = 0; k < p->n_sources; k++) {
            struct src_stat *st = &s->srcs[s->n++];
            st->p = p;
            st->src = &p->sources[k];
            snprintf(st->qname, sizeof(st->qname), "%s.%s", p->name, st->src->dataset);
        }
    }
    s->writer = fr_dstatus_start(app, fill, s);
    return s;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static uint64_t num(json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

void fr_instatus_note(fr_instatus_t *s, const char *json, size_t len)
{
    json_t *o;
    const char *type, *pipeline, *source, *dataset;

    if (!s)
        return;
    o = json_loadb(json, len, 0, NULL);
    if (!o)
        return;
    type = str(o, "type");
    pipeline = str(o, "pipeline");
    source = str(o, "source");
    dataset = str(o, "dataset");
    if (!type)
        goto out;
    if ((strcmp(type, "source.finished") == 0 || strcmp(type, "source.failed") == 0) && pipeline && source) {
        bool ok = type[7] == 'f' && type[8] == 'i' && type[9] == 'n';
        for (size_t i = 0; i < s->n; i++) {
            struct src_stat *st = &s->srcs[i];
            const char *reason = str(o, "reason"), *file = str(o, "file");
            if (strcmp(st->p->name, pipeline) != 0 || strcmp(st->src->name, source) != 0)
                continue;
            if (ok)
                st->runs_ok++;
            else
                st->runs_failed++;
            st->last_run_us = fr_dstatus_event_us(o);
            st->last_ok = ok;
            st->last_rows = num(o, "rows");
            st->last_rejected = num(o, "rejected");
            snprintf(st->last_reason, sizeof(st->last_reason), "%s", reason ? reason : "");
            snprintf(st->last_file, sizeof(st->last_file), "%s", file ? file : "");
        }
    } else if (strcmp(type, "batch.published") == 0 && dataset) {
        /* the batch's raw payload lies under landing/{pipeline}/{source}/ */
        const char *file = str(o, "file");
        for (size_t i = 0; file && i < s->n; i++) {
            struct src_stat *st = &s->srcs[i];
            char dir[300];
            snprintf(dir, sizeof(dir), "landing/%s/%s/", st->p->name, st->src->name);
            if (strcmp(st->qname, dataset) != 0 || !strstr(file, dir))
                continue;
            st->rows += num(o, "rows");
            st->batches++;
            if (st->src->kind == FR_SRC_FILE) {
                const char *base = strrchr(file, '/');
                base = base ? base + 1 : file;
                if (strcmp(st->last_file, base) != 0 || !st->last_ok) {
                    st->runs_ok++; /* a new file */
                    st->last_rows = 0;
                }
                st->last_run_us = fr_dstatus_event_us(o);
                st->last_ok = true;
                st->last_rows += num(o, "rows");
                st->last_rejected = 0;
                st->last_reason[0] = '\0';
                snprintf(st->last_file, sizeof(st->last_file), "%s", base);
            }
            break;
        }
    } else if (strcmp(type, "file.rejected") == 0 && dataset) {
        const char *file = str(o, "file"), *reason = str(o, "reason");
        for (size_t i = 0; i < s->n; i++) {
            struct src_stat *st = &s->srcs[i];
            if (st->src->kind != FR_SRC_FILE || strcmp(st->qname, dataset) != 0)
                continue;
            st->files_rejected++;
            st->runs_failed++;
            st->last_run_us = fr_dstatus_event_us(o);
            st->last_ok = false;
            st->last_rows = 0;
            snprintf(st->last_reason, sizeof(st->last_reason), "%s", reason ? reason : "");
            snprintf(st->last_file, sizeof(st->last_file), "%s", file ? file : "");
            break;
        }
    }
out:
    json_decref(o);
}

void fr_instatus_stop(fr_instatus_t *s)
{
    if (!s)
        return;
    fr_dstatus_stop(s->writer);
    free(s->srcs);
    free(s);
}
