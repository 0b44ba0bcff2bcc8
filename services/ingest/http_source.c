/* http_source: runs the http_json sources (http_source.h). One runtime per
 * source holds at most one run; a run walks windows (outer) x fan-out
 * values (inner) x pages, one request at a time, through a small state
 * machine (step()). Responses are landed and parsed on libuv's thread pool;
 * their batches go to the publisher, and the next page is requested only
 * when Redis has accepted every item of the previous one, so state saved
 * after a window never runs ahead of what Redis holds. Owns the curl client,
 * the runtimes, their timers and the fr:control subscriber. */
#include "http_source.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backfill.h"
#include "batch.h"
#include "config_http.h"
#include "http_client.h"
#include "lease.h"
#include "log.h"
#include "names.h"
#include "parse.h"
#include "state.h"

#define MAX_429_WAITS      50     /* a run fails after this many 429s in a row */
#define MAX_PARENT_RECORDS 100000 /* records of a run kept for fan-out children */
#define MAX_WAIT_MS        (3600u * 1000u)

enum hs_state {
    HS_IDLE = 0, /* no run */
    HS_WAIT,     /* timer: rate limit, quota, backoff */
    HS_REQ,      /* request in flight */
    HS_WORK,     /* worker landing + parsing the response */
    HS_PUBLISH,  /* items with the publisher, waiting for acks */
    HS_SAVE,     /* fenced state write in flight */
};

struct hsrcs;

struct hsrc {
    struct fr_httpsrcs *hs;         /* borrowed back pointer */
    const struct fr_pipeline *p;    /* borrowed */
    const struct fr_source *src;    /* borrowed */
    const struct fr_http_source *h; /* borrowed */
    const struct fr_dataset *ds;    /* borrowed */
    struct hsrc *parent;            /* fan_out.source, or NULL */
    bool has_children;
    char state_path[1024];
    char qname[256];          /* "{pipeline}.{source}" */
    struct fr_hstate st;      /* last saved state */
    struct fr_hstate saving;  /* state being written (HS_SAVE) */
    struct fr_hstate file_st; /* legacy state file, imported once into Redis */
    bool has_file_st;
    uv_timer_t sched; /* embedded: next scheduled run */
    uv_timer_t wait;  /* embedded: waits inside a run */
    uv_timer_t retry; /* embedded: next try to take the lease */
    enum hs_state state;
    /* replicas (daemon mode): a run needs the source's lease */
    fr_lease_t *lease;    /* owned, NULL in command mode */
    bool want;            /* a trigger waits for a run */
    int64_t want_due_us;  /* a run that started at or after this (wall µs) serves it */
    int64_t run_start_us; /* wall time the current run's lease was taken */
    bool lease_lost;      /* the current run lost its lease: it ends, publishing nothing more */
    bool catchup;         /* the sched timer is the run at start */
    int64_t sched_due_us; /* cron: the match the sched timer waits for */
    char fence_val[200];  /* lease value of the current run (fenced writes) */
    json_t *parents;      /* owned: the parent's records for the next/current run */
    json_t *last_records; /* owned: records of this source's last good run (children) */
    /* rate limits */
    double tokens;
    uint64_t tokens_ms;
    uint64_t blocked_until_ms; /* quota spent: no request before this (mono ms) */
    uint64_t rng;
    /* the run */
    struct {
        bool backfill;
        char ulid[27];
        uint64_t t0_ms;
        int64_t from_us, to_us, win_us; /* windows [win_us, min(win_us + step, to_us)) */
        size_t fan_i, n_fan;
        uint32_t page;
        char *cursor;   /* owned */
        char *next_url; /* owned */
        char *url;      /* owned: the request being made */
        uint32_t attempt, n429;
        uint64_t rows, rejected, requests, batches, windows_done, windows_total;
        json_t *records; /* owned: this run's records (for children) */
        bool failed;
        char reason[FR_ERR_LEN];
        struct fr_pub_item *qhead, *qtail; /* owned: items waiting for publisher room */
        size_t unacked;                    /* items submitted and not yet done */
        bool item_failed;
        size_t last_n_records;
        char id_prefix[40];
        void (*done)(bool ok, void *data);
        void *done_data;
        fr_backfill_report_cb report; /* a backfill asked on fr:control (backfill.c) */
    } run;
    struct fr_hc_req req; /* embedded */
    /* metrics */
    uint64_t *m_retries, *m_waits, *m_runs_ok, *m_runs_failed;
};

struct fr_httpsrcs {
    struct fr_app *app;
    fr_publisher_t *pub;
    fr_hc_t *hc;
    struct hsrc **srcs; /* owned */
    size_t n;
    fr_redis_t *control; /* owned: fr:control subscriber */
    fr_backfills_t *bf;  /* owned: backfills asked on fr:control (daemon mode) */
    bool stopping;
    size_t open_handles;
    void (*stop_cb)(void *data);
    void *stop_data;
    bool hc_closed;
    bool hc_closing;
    bool leases_closing;
    int64_t start_us; /* wall time of fr_httpsrcs_start: the catch-up run serves triggers up to it */
    uint32_t lease_ttl_ms, lease_renew_ms;
    char holder[160]; /* this process's lease holder id */
};

/* A landing + parse job on the thread pool. */
struct job {
    uv_work_t req;      /* embedded */
    struct hsrc *s;     /* borrowed */
    struct fr_buf body; /* owned: response body */
    char *url;          /* owned */
    long status;
    char *land_dir;      /* owned: absolute landing dir of today */
    char *land_rel;      /* owned: landing path relative to data dir */
    char *data_dir;      /* borrowed */
    char prefix[52];     /* batch id prefix */
    char **field_values; /* owned: per field, the expanded value template or NULL */
    bool collect;        /* keep records for children */
    int64_t win_start, win_end;
    char *fan_key; /* owned */
    /* out */
    struct fr_pub_item *head, *tail; /* owned until handed over */
    bool fatal;
    char reason[FR_ERR_LEN];
    uint64_t rows, rejected, batches;
    size_t n_records;
    char *next;                                  /* owned: next cursor / next URL */
    struct fr_drift_tally drift[FR_DRIFT_KINDS]; /* schema drift seen in the records */
    json_t *records;                             /* owned */
    /* parse state */
    fr_batch_builder_t *builder;
    uint32_t chunk;
    struct fr_raw_ref raw;
    char sha[65];
};

static void step(struct hsrc *s);
static void run_end(struct hsrc *s);
static void maybe_stopped(struct fr_httpsrcs *hs);
static void lease_step(struct hsrc *s);

/* ------------------------------------------------------------ utilities */

static uint64_t rnd(struct hsrc *s)
{
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return s->rng = x;
}

static int64_t floor_to(int64_t t, int64_t unit)
{
    return (t >= 0 ? t / unit : (t - unit + 1) / unit) * unit;
}

static void fmt_time(enum fr_win_format f, int64_t us, char out[40])
{
    if (f == FR_WIN_EPOCH_MS)
        snprintf(out, 40, "%" PRId64, us / 1000);
    else if (f == FR_WIN_EPOCH_S)
        snprintf(out, 40, "%" PRId64, us / 1000000);
    else
        fr_format_timestamp(us, out);
}

static int64_t win_end(const struct hsrc *s)
{
    int64_t e = s->run.win_us + s->h->window.step_us;
    return e < s->run.to_us ? e : s->run.to_us;
}

/* The fan-out value of chain i: a values entry, or a parent record. */
static json_t *parent_of(const struct hsrc *s)
{
    return s->parents && s->h->fan_out.source ? json_array_get(s->parents, s->run.fan_i) : NULL;
}

/* Expands {vars} of a template; esc = URL-escape substituted values. */
static char *expand(struct hsrc *s, const char *t, bool esc)
{
    struct fr_buf b;
    const struct fr_http_source *h = s->h;

    fr_buf_init(&b, 1u << 20);
    for (const char *c = t; *c; c++) {
        if (*c == '{' && c[1] == '{') {
            (void)fr_buf_putc(&b, '{');
            c++;
            continue;
        }
        const char *e = *c == '{' ? strchr(c, '}') : NULL;
        if (!e) {
            (void)fr_buf_putc(&b, *c);
            continue;
        }
        char name[128], val[64];
        const char *v = "";
        size_t len = (size_t)(e - c - 1);
        snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1), c + 1);
        if (strcmp(name, "window.start") == 0) {
            fmt_time(h->window.format, s->run.win_us, val);
            v = val;
        } else if (strcmp(name, "window.end") == 0) {
            fmt_time(h->window.format, win_end(s) - 1000, val);
            v = val;
        } else if (h->fan_out.values && strcmp(name, h->fan_out.var) == 0) {
            v = h->fan_out.values[s->run.fan_i];
        } else if (h->fan_out.var) {
            json_t *pr = parent_of(s);
            json_t *x = pr ? json_object_get(pr, name + strlen(h->fan_out.var) + 1) : NULL;
            v = json_is_string(x) ? json_string_value(x) : "";
        }
        if (esc) {
            char *q = curl_easy_escape(NULL, v, 0);
            (void)fr_buf_puts(&b, q ? q : "");
            curl_free(q);
        } else {
            (void)fr_buf_puts(&b, v);
        }
        c = e;
    }
    (void)fr_buf_putc(&b, '\0');
    return b.data;
}

static void add_param(struct fr_buf *b, bool *first, const char *name, const char *value)
{
    char *k = curl_easy_escape(NULL, name, 0), *v = curl_easy_escape(NULL, value, 0);
    (void)fr_buf_printf(b, "%c%s=%s", *first ? '?' : '&', k ? k : "", v ? v : "");
    *first = false;
    curl_free(k);
    curl_free(v);
}

static char *build_url(struct hsrc *s)
{
    const struct fr_http_source *h = s->h;
    const struct fr_http_paginate *pg = &h->paginate;
    struct fr_buf b;
    bool first;
    char num[40];

    if (pg->kind == FR_PAGE_NEXT && s->run.page > 0 && s->run.next_url) {
        /* resolve a relative next link against the first URL */
        CURLU *u = curl_url();
        char *out = NULL;
        curl_url_set(u, CURLUPART_URL, s->run.url, 0);
        if (curl_url_set(u, CURLUPART_URL, s->run.next_url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
            char *r = fr_xstrdup(out);
            curl_free(out);
            curl_url_cleanup(u);
            return r;
        }
        curl_url_cleanup(u);
        return fr_xstrdup(s->run.next_url);
    }
    char *base = expand(s, h->url, true);
    fr_buf_init(&b, 1u << 20);
    (void)fr_buf_puts(&b, base);
    first = strchr(base, '?') == NULL;
    free(base);
    for (size_t i = 0; i < h->n_query; i++) {
        char *v = expand(s, h->query[i].value, false);
        add_param(&b, &first, h->query[i].name, v);
        free(v);
    }
    if (h->window.enabled) {
        if (h->window.start_param) {
            fmt_time(h->window.format, s->run.win_us, num);
            add_param(&b, &first, h->window.start_param, num);
        }
        if (h->window.end_param) {
            fmt_time(h->window.format, win_end(s) - 1000, num);
            add_param(&b, &first, h->window.end_param, num);
        }
    }
    if (pg->size_param && pg->size) {
        snprintf(num, sizeof(num), "%" PRIu32, pg->size);
        add_param(&b, &first, pg->size_param, num);
    }
    if (pg->kind == FR_PAGE_PAGE) {
        snprintf(num, sizeof(num), "%" PRId64, pg->start + s->run.page);
        add_param(&b, &first, pg->param, num);
    } else if (pg->kind == FR_PAGE_OFFSET) {
        snprintf(num, sizeof(num), "%" PRId64, pg->start + (int64_t)s->run.page * pg->size);
        add_param(&b, &first, pg->param, num);
    } else if (pg->kind == FR_PAGE_CURSOR && s->run.cursor) {
        add_param(&b, &first, pg->param, s->run.cursor);
    }
    (void)fr_buf_putc(&b, '\0');
    return b.data;
}

/* ------------------------------------------------------------- events */

static void event(struct hsrc *s, const char *type, const char *extra_json)
{
    struct fr_buf b;

    fr_buf_init(&b, 0);
    (void)fr_buf_printf(&b, "{\"type\":\"%s\",", type);
    (void)fr_ingest_event_ts(&b);
    (void)fr_buf_puts(&b, ",\"pipeline\":");
    (void)fr_buf_json_str(&b, s->p->name, strlen(s->p->name));
    (void)fr_buf_puts(&b, ",\"source\":");
    (void)fr_buf_json_str(&b, s->src->name, strlen(s->src->name));
    (void)fr_buf_puts(&b, ",\"dataset\":");
    (void)fr_buf_json_str(&b, s->ds->qname, strlen(s->ds->qname));
    (void)fr_buf_printf(&b, ",\"run\":\"%s\"", s->run.ulid);
    if (extra_json)
        (void)fr_buf_puts(&b, extra_json);
    (void)fr_buf_putc(&b, '}');
    fr_ingest_event(s->hs->app, b.data, b.len);
    fr_buf_deinit(&b);
}

static void on_dlq_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)data;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        fr_warn("XADD of a rejected response to the dead-letter stream failed: %s",
                reply ? reply->str : "connection lost");
}

/* A rejected response: one DLQ entry of kind batch (best effort, like events). */
static void dlq_response(struct hsrc *s, const char *reason)
{
    char *key = fr_names_dlq(s->ds->qname);
    const char *id = s->run.id_prefix;
    const char *url = s->run.url ? s->run.url : "";
    const char *argv[] = {"XADD",   key,          "*",   "kind", "batch",  "batch", id,
                          "source", s->src->name, "url", url,    "reason", reason};
    size_t lens[FR_ARRAY_LEN(argv)];
    for (size_t i = 0; i < FR_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    if (s->hs->app->redis == NULL ||
        fr_redis_commandv(s->hs->app->redis, 0, on_dlq_reply, NULL, (int)FR_ARRAY_LEN(argv), argv, lens) != 0)
        fr_warn("rejected response of %s.%s not sent to the dead-letter stream (Redis not connected): %s", s->p->name,
                s->src->name, reason);
    free(key); /* fr_redis_commandv copied it */
}

static void fail(struct hsrc *s, const char *fmt, ...) FR_PRINTF(2, 3);
static void fail(struct hsrc *s, const char *fmt, ...)
{
    va_list ap;

    if (s->run.failed)
        return;
    s->run.failed = true;
    va_start(ap, fmt);
    vsnprintf(s->run.reason, sizeof(s->run.reason), fmt, ap);
    va_end(ap);
}

/* --------------------------------------------------------- worker side */

struct wctx {
    struct job *j;
};

static void job_push(struct job *j, struct fr_pub_item *it)
{
    it->next = NULL;
    if (j->tail)
        j->tail->next = it;
    else
        j->head = it;
    j->tail = it;
}

static int job_flush(struct job *j)
{
    size_t rows = fr_batch_builder_rows(j->builder);
    if (rows == 0)
        return 0;
    struct fr_pub_item *it = fr_pub_item_new(FR_PUB_BATCH, j->s->ds->qname);
    snprintf(it->id, sizeof(it->id), "%s-%03" PRIu32, j->prefix, j->chunk);
    int rc = fr_batch_builder_flush(j->builder, it->id, &j->raw, &it->payload);
    if (rc != 0) {
        snprintf(j->reason, sizeof(j->reason), "cannot pack batch %s: %s", it->id, strerror(-rc));
        j->fatal = true;
        fr_pub_item_free(it);
        return rc;
    }
    j->chunk++;
    it->rows = (uint32_t)rows;
    it->file = fr_xstrdup(j->land_rel);
    job_push(j, it);
    j->batches++;
    return 0;
}

static int job_row(void *data, const struct fr_row *row)
{
    struct job *j = data;
    const struct fr_source *src = j->s->src;

    fr_batch_builder_add(j->builder, row->vals, row->lens, row->nulls, row->line);
    j->rows++;
    if (j->collect && json_array_size(j->records) < MAX_PARENT_RECORDS) {
        json_t *o = json_object();
        for (size_t c = 0; c < j->s->ds->n_columns; c++)
            json_object_set_new(o, j->s->ds->columns[c].name,
                                row->nulls[c] ? json_null() : json_stringn(row->vals[c], row->lens[c]));
        json_array_append_new(j->records, o);
    }
    if ((src->batch_rows && fr_batch_builder_rows(j->builder) >= src->batch_rows) ||
        (src->batch_bytes && fr_batch_builder_bytes(j->builder) >= src->batch_bytes))
        return job_flush(j);
    return 0;
}

static int job_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct job *j = data;
    struct fr_pub_item *it = fr_pub_item_new(FR_PUB_ROW, j->s->ds->qname);

    if (raw_len > FR_PUB_RAW_MAX)
        raw_len = FR_PUB_RAW_MAX;
    it->file = fr_xstrdup(j->land_rel);
    it->line = line;
    it->reason = fr_xstrdup(reason);
    it->raw = fr_xmemdup(raw ? raw : "", raw ? raw_len : 0);
    it->raw_len = raw ? raw_len : 0;
    job_push(j, it);
    j->rejected++;
    return 0;
}

/* Atomic (a replay never reads a response cut short by a crash); the
 * response itself durable, its sidecars not synced. */
static int write_file(const char *path, const char *data, size_t len, bool sync)
{
    return fr_write_file_atomic(path, data, len, 0644, sync ? FR_WRITE_DURABLE : FR_WRITE_FAST);
}

/* Converts one field's JSON value into what the NDJSON row carries. */
static json_t *field_value(const struct fr_http_field *f, json_t *v)
{
    char buf[40];
    if (v == NULL)
        return NULL;
    if (f->as == FR_AS_EPOCH_MS || f->as == FR_AS_EPOCH_S) {
        int64_t n;
        if (json_is_integer(v))
            n = json_integer_value(v);
        else if (json_is_real(v))
            n = (int64_t)json_real_value(v);
        else if (!json_is_string(v) || !fr_parse_i64(json_string_value(v), json_string_length(v), &n))
            return json_incref(v); /* parse.c rejects it with the column's name */
        if (n > INT64_MAX / 1000000 || n < INT64_MIN / 1000000)
            return json_incref(v);
        fr_format_timestamp(f->as == FR_AS_EPOCH_MS ? n * 1000 : n * 1000000, buf);
        return json_string(buf);
    }
    if (f->as == FR_AS_STRING && !json_is_string(v) && !json_is_null(v)) {
        char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *r = json_string(d ? d : "");
        free(d);
        return r;
    }
    return json_incref(v);
}

static void work_cb(uv_work_t *req)
{
    struct job *j = fr_container_of(req, struct job, req);
    struct hsrc *s = j->s;
    const struct fr_http_source *h = s->h;
    json_error_t je;
    json_t *doc, *recs;
    char ulid[27], path[4200];

    doc = json_loadb(j->body.data ? j->body.data : "", j->body.len, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL) {
        snprintf(j->reason, sizeof(j->reason), "response is not valid JSON (line %d column %d: %s); nothing loaded",
                 je.line, je.column, je.text);
        j->fatal = true;
        return;
    }
    recs = fr_jpath_get(h->records, doc);
    if (!json_is_array(recs)) {
        snprintf(j->reason, sizeof(j->reason), "records path %s is %s in the response, not an array; nothing loaded",
                 fr_jpath_text(h->records), recs ? "not an array" : "absent");
        j->fatal = true;
        goto out;
    }
    /* land: {ulid}.json + .sha256 + .meta.json */
    fr_ulid(ulid);
    if (fr_mkdirs(j->land_dir, 0755) != 0) {
        snprintf(j->reason, sizeof(j->reason), "cannot create %s: %s", j->land_dir, strerror(errno));
        j->fatal = true;
        goto out;
    }
    fr_sha256_hex(j->body.data ? j->body.data : "", j->body.len, j->sha);
    char *rel = fr_xasprintf("%s/%s.json", j->land_rel, ulid);
    free(j->land_rel);
    j->land_rel = rel;
    snprintf(path, sizeof(path), "%s/%s.json", j->land_dir, ulid);
    int rc = write_file(path, j->body.data ? j->body.data : "", j->body.len, true);
    if (rc == 0) {
        char *line = fr_xasprintf("%s  %s.json\n", j->sha, ulid);
        snprintf(path, sizeof(path), "%s/%s.json.sha256", j->land_dir, ulid);
        rc = write_file(path, line, strlen(line), false);
        free(line);
    }
    if (rc == 0) {
        char ts[32];
        json_t *m = json_object();
        fr_format_timestamp(fr_wall_us(), ts);
        json_object_set_new(m, "url", json_string(j->url));
        json_object_set_new(m, "status", json_integer(j->status));
        json_object_set_new(m, "time", json_string(ts));
        json_object_set_new(m, "pipeline", json_string(s->p->name));
        json_object_set_new(m, "source", json_string(s->src->name));
        json_object_set_new(m, "dataset", json_string(s->ds->name));
        json_object_set_new(m, "batch_prefix", json_string(j->prefix));
        json_object_set_new(m, "sha256", json_string(j->sha));
        if (j->fan_key)
            json_object_set_new(m, "fan", json_string(j->fan_key));
        if (h->window.enabled) {
            fr_format_timestamp(j->win_start, ts);
            json_object_set_new(m, "window_start", json_string(ts));
            fr_format_timestamp(j->win_end, ts);
            json_object_set_new(m, "window_end", json_string(ts));
        }
        json_t *fv = json_array();
        for (size_t i = 0; i < h->n_fields; i++)
            json_array_append_new(fv, j->field_values[i] ? json_string(j->field_values[i]) : json_null());
        json_object_set_new(m, "field_values", fv);
        char *d = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
        json_decref(m);
        snprintf(path, sizeof(path), "%s/%s.meta.json", j->land_dir, ulid);
        rc = write_file(path, d, strlen(d), false);
        free(d);
    }
    if (rc != 0) {
        snprintf(j->reason, sizeof(j->reason), "cannot land the response under %s: %s", j->land_dir, strerror(-rc));
        j->fatal = true;
        goto out;
    }
    j->raw.path = j->land_rel;
    j->raw.sha256 = j->sha;
    j->raw.size = j->body.len;
    rc = fr_http_records_to_rows(s->ds, s->src, h, recs, (const char *const *)j->field_values, job_row, job_reject, j,
                                 j->drift, j->reason);
    j->n_records = json_array_size(recs);
    if (rc == 0 && !j->fatal)
        rc = job_flush(j);
    if (rc != 0)
        j->fatal = true;
    /* next page pointers */
    if (!j->fatal && h->paginate.kind == FR_PAGE_CURSOR) {
        json_t *c = fr_jpath_get(h->paginate.cursor_path, doc);
        if (json_is_string(c) && json_string_length(c) > 0 && json_string_length(c) < 4096)
            j->next = fr_xstrdup(json_string_value(c));
        else if (json_is_integer(c))
            j->next = fr_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(c));
    } else if (!j->fatal && h->paginate.kind == FR_PAGE_NEXT) {
        json_t *c = fr_jpath_get(h->paginate.next_path, doc);
        if (json_is_string(c) && json_string_length(c) > 0 && json_string_length(c) < 8192)
            j->next = fr_xstrdup(json_string_value(c));
    }
out:
    json_decref(doc);
}

int fr_http_records_to_rows(const struct fr_dataset *ds, const struct fr_source *src, const struct fr_http_source *h,
                            json_t *recs, const char *const *field_values, fr_row_cb on_row, fr_reject_cb on_reject,
                            void *data, struct fr_drift_tally drift[FR_DRIFT_KINDS], char reason[FR_ERR_LEN])
{
    fr_parser_t *parser = fr_parser_new(ds, FR_FMT_NDJSON, false, on_row, on_reject, data);
    int rc = 0;

    (void)src;
    if (parser == NULL) {
        snprintf(reason, FR_ERR_LEN, "cannot create a parser for dataset %s", ds->qname);
        return -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(recs); i++) {
        json_t *r = json_array_get(recs, i), *o = json_object();
        for (size_t f = 0; f < h->n_fields; f++) {
            const struct fr_http_field *fd = &h->fields[f];
            json_t *v = fd->path ? field_value(fd, fr_jpath_get(fd->path, r)) : json_string(field_values[f]);
            if (v)
                json_object_set_new(o, fd->column, v);
        }
        char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(o);
        if (line == NULL) {
            rc = -ENOMEM;
            break;
        }
        size_t n = strlen(line);
        rc = fr_parser_feed(parser, line, n);
        if (rc == 0)
            rc = fr_parser_feed(parser, "\n", 1);
        free(line);
    }
    if (rc == 0)
        rc = fr_parser_finish(parser);
    if (rc == -EINVAL)
        snprintf(reason, FR_ERR_LEN, "%s", fr_parser_error(parser));
    else if (rc != 0 && reason[0] == '\0')
        snprintf(reason, FR_ERR_LEN, "parse failed: %s", strerror(-rc));
    for (int k = 0; drift && k < FR_DRIFT_KINDS; k++)
        drift[k] = *fr_parser_drift(parser, (enum fr_drift_kind)k);
    fr_parser_free(parser);
    return rc;
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    fr_buf_deinit(&j->body);
    free(j->url);
    free(j->land_dir);
    free(j->land_rel);
    if (j->field_values)
        for (size_t i = 0; i < j->s->h->n_fields; i++)
            free(j->field_values[i]);
    free(j->field_values);
    free(j->fan_key);
    while (j->head) {
        struct fr_pub_item *it = j->head;
        j->head = it->next;
        fr_pub_item_free(it);
    }
    free(j->next);
    json_decref(j->records);
    fr_batch_builder_free(j->builder);
    free(j);
}

/* ------------------------------------------------------------ loop side */

static void set_state(struct hsrc *s, enum hs_state to)
{
    s->state = to;
}

static void on_item_done(struct fr_pub_item *it, bool ok, void *data)
{
    struct hsrc *s = data;

    (void)it;
    s->run.unacked--;
    if (!ok)
        s->run.item_failed = true;
    if (s->state == HS_PUBLISH)
        step(s);
    else if (s->hs->stopping)
        maybe_stopped(s->hs);
}

static void pump_items(struct hsrc *s)
{
    while (s->run.qhead && fr_publisher_has_room(s->hs->pub) && !s->hs->stopping) {
        struct fr_pub_item *it = s->run.qhead;
        s->run.qhead = it->next;
        if (!s->run.qhead)
            s->run.qtail = NULL;
        it->next = NULL;
        it->on_done = on_item_done;
        it->done_data = s;
        if (s->lease && !s->run.backfill) { /* daemon: Redis takes it only while this run's lease holds */
            it->fence_key = fr_xstrdup(fr_lease_key(s->lease));
            it->fence_val = fr_xstrdup(s->fence_val);
        }
        s->run.unacked++;
        fr_publisher_submit(s->hs->pub, it);
    }
}

static void after_work_cb(uv_work_t *req, int status)
{
    struct job *j = fr_container_of(req, struct job, req);
    struct hsrc *s = j->s;

    if (status < 0 || s->hs->stopping || s->lease_lost) {
        job_free(j);
        set_state(s, HS_IDLE);
        run_end(s);
        return;
    }
    if (j->fatal) {
        dlq_response(s, j->reason);
        fail(s, "%s (from %s)", j->reason, s->run.url);
        job_free(j);
        set_state(s, HS_IDLE);
        run_end(s);
        return;
    }
    for (int k = 0; k < FR_DRIFT_KINDS; k++) {
        struct fr_buf eb;
        fr_buf_init(&eb, 0);
        if (fr_drift_event_json(&eb, s->p->name, s->ds->qname, j->land_rel, (enum fr_drift_kind)k, &j->drift[k],
                                fr_drift_action_of(&s->ds->drift, (enum fr_drift_kind)k)))
            fr_ingest_event(s->hs->app, eb.data, eb.len);
        fr_buf_deinit(&eb);
    }
    s->run.rows += j->rows;
    s->run.rejected += j->rejected;
    s->run.batches += j->batches;
    s->run.last_n_records = j->n_records;
    free(s->run.cursor);
    s->run.cursor = NULL;
    free(s->run.next_url);
    s->run.next_url = NULL;
    if (s->h->paginate.kind == FR_PAGE_CURSOR)
        s->run.cursor = j->next;
    else
        s->run.next_url = j->next;
    j->next = NULL;
    if (j->records) {
        if (!s->run.records)
            s->run.records = json_array();
        if (json_array_size(s->run.records) + json_array_size(j->records) <= MAX_PARENT_RECORDS)
            json_array_extend(s->run.records, j->records);
        else
            fr_warn("%s.%s: more than %d records in one run; fan-out children get the first ones only", s->p->name,
                    s->src->name, MAX_PARENT_RECORDS);
    }
    /* hand the items over, in order */
    if (j->head) {
        if (s->run.qtail)
            s->run.qtail->next = j->head;
        else
            s->run.qhead = j->head;
        s->run.qtail = j->tail;
        j->head = j->tail = NULL;
    }
    job_free(j);
    set_state(s, HS_PUBLISH);
    pump_items(s);
    step(s);
}

static void start_work(struct hsrc *s)
{
    struct job *j = fr_xcalloc(1, sizeof(*j));
    const struct fr_http_source *h = s->h;
    char date[11];
    const char *data_dir = s->hs->app->settings.data_dir;

    j->s = s;
    j->body = s->req.body; /* moved */
    fr_buf_init(&s->req.body, 0);
    j->url = fr_xstrdup(s->run.url);
    j->status = s->req.status;
    fr_format_date((int32_t)(fr_wall_us() / 86400000000LL), date);
    j->land_rel = fr_xasprintf("landing/%s/%s/%s", s->p->name, s->src->name, date);
    j->land_dir = fr_xasprintf("%s/%s", data_dir, j->land_rel);
    snprintf(j->prefix, sizeof(j->prefix), "%s-%04" PRIu32, s->run.id_prefix, s->run.page);
    j->field_values = fr_xcalloc(h->n_fields ? h->n_fields : 1, sizeof(char *));
    for (size_t i = 0; i < h->n_fields; i++)
        if (h->fields[i].value)
            j->field_values[i] = expand(s, h->fields[i].value, false);
    j->collect = s->has_children;
    if (j->collect)
        j->records = json_array();
    j->win_start = s->run.win_us;
    j->win_end = h->window.enabled ? win_end(s) : 0;
    if (h->fan_out.values)
        j->fan_key = fr_xstrdup(h->fan_out.values[s->run.fan_i]);
    else if (parent_of(s))
        j->fan_key = json_dumps(parent_of(s), JSON_COMPACT | JSON_SORT_KEYS);
    j->builder = fr_batch_builder_new(s->ds, s->src->name, FR_OP_UPSERT);
    set_state(s, HS_WORK);
    if (uv_queue_work(&s->hs->app->loop, &j->req, work_cb, after_work_cb) != 0) {
        fail(s, "cannot queue the response for parsing");
        job_free(j);
        set_state(s, HS_IDLE);
        run_end(s);
    }
}

/* Seconds to wait from a 429: Retry-After (seconds or HTTP date), else a
 * body "Wait N seconds", else -1. */
static int64_t wait_429_ms(struct hsrc *s)
{
    char v[128];
    if (fr_hc_header(&s->req, "Retry-After", v, sizeof(v))) {
        int64_t n;
        if (fr_parse_i64(v, strlen(v), &n) && n >= 0)
            return n * 1000;
        time_t t = curl_getdate(v, NULL);
        if (t > 0) {
            int64_t d = (int64_t)t * 1000 - fr_wall_us() / 1000;
            return d > 0 ? d : 0;
        }
    }
    const char *b = s->req.body.data;
    if (b) {
        const char *w = strstr(b, "Wait ");
        if (w) {
            long n = strtol(w + 5, NULL, 10);
            if (n > 0)
                return (int64_t)n * 1000;
        }
    }
    return -1;
}

static uint32_t backoff_ms(struct hsrc *s)
{
    uint64_t cap = s->h->retry_base_ms;
    for (uint32_t i = 1; i < s->run.attempt && cap < s->h->retry_max_ms; i++)
        cap *= 2;
    if (cap > s->h->retry_max_ms)
        cap = s->h->retry_max_ms;
    return (uint32_t)(rnd(s) % (cap + 1)); /* full jitter */
}

static void count_request(struct hsrc *s, long status)
{
    char labels[256];
    snprintf(labels, sizeof(labels), "pipeline=\"%s\",source=\"%s\",status=\"%ld\"", s->p->name, s->src->name,
             status);
    (*fr_metrics_counter(s->hs->app->metrics, "ingest_http_requests_total", "Requests of http_json sources by status",
                         labels))++;
}

static void note_quota(struct hsrc *s)
{
    char v[64];
    int64_t n;
    const struct fr_http_source *h = s->h;

    if (!h->remaining_header || !fr_hc_header(&s->req, h->remaining_header, v, sizeof(v)) ||
        !fr_parse_i64(v, strlen(v), &n) || n > 0)
        return;
    int64_t reset = 60;
    if (h->reset_header && fr_hc_header(&s->req, h->reset_header, v, sizeof(v)) && fr_parse_i64(v, strlen(v), &reset))
        reset = reset < 0 ? 0 : reset > 3600 ? 3600 : reset;
    s->blocked_until_ms = fr_mono_ms() + (uint64_t)reset * 1000;
    fr_info("%s.%s: request quota spent (%s: %s); next request in %" PRId64 " s", s->p->name, s->src->name,
            h->remaining_header, v, reset);
}

static void on_wait(uv_timer_t *t)
{
    struct hsrc *s = fr_container_of(t, struct hsrc, wait);
    set_state(s, HS_IDLE);
    step(s);
}

static void wait_then(struct hsrc *s, uint64_t ms)
{
    if (ms > MAX_WAIT_MS)
        ms = MAX_WAIT_MS;
    set_state(s, HS_WAIT);
    uv_timer_start(&s->wait, on_wait, ms, 0);
}

static void on_response(struct fr_hc_req *r, void *data)
{
    struct hsrc *s = data;
    long st = r->status;

    (void)r;
    set_state(s, HS_IDLE);
    if (s->hs->stopping || s->lease_lost || r->code == CURLE_ABORTED_BY_CALLBACK) {
        run_end(s);
        return;
    }
    s->run.requests++;
    count_request(s, r->code == CURLE_OK ? st : 0);
    note_quota(s);
    if (r->code == CURLE_FILESIZE_EXCEEDED && !r->too_big) {
        r->too_big = true;
        snprintf(r->error, sizeof(r->error), "response body larger than %zu bytes (max_bytes, per Content-Length)",
                 r->max_bytes);
    }
    if (r->too_big) {
        dlq_response(s, r->error);
        fail(s, "%s (from %s); nothing loaded", r->error, s->run.url);
        run_end(s);
        return;
    }
    if (r->code == CURLE_OK && st == 429) {
        int64_t w = wait_429_ms(s);
        if (++s->run.n429 > MAX_429_WAITS) {
            fail(s, "HTTP 429 %u times in a row from %s", MAX_429_WAITS, s->run.url);
            run_end(s);
            return;
        }
        (*s->m_waits)++;
        if (w < 0) {
            s->run.attempt++;
            w = backoff_ms(s);
        }
        fr_info("%s.%s: HTTP 429, waiting %" PRId64 " ms", s->p->name, s->src->name, w);
        wait_then(s, (uint64_t)w);
        return;
    }
    if (r->code != CURLE_OK || st >= 500) {
        if (s->run.attempt >= s->h->retry_max) {
            if (r->code != CURLE_OK)
                fail(s, "request to %s failed after %u retries: %s", s->run.url, s->run.attempt, r->error);
            else
                fail(s, "HTTP %ld from %s after %u retries", st, s->run.url, s->run.attempt);
            run_end(s);
            return;
        }
        s->run.attempt++;
        (*s->m_retries)++;
        uint32_t d = backoff_ms(s);
        char what[CURL_ERROR_SIZE];
        fr_hc_describe(r, what, sizeof(what));
        fr_warn("%s.%s: %s from %s; retry %u of %u in %u ms", s->p->name, s->src->name, what, s->run.url,
                s->run.attempt, s->h->retry_max, d);
        wait_then(s, d);
        return;
    }
    if (st < 200 || st >= 300) {
        char snip[160];
        size_t n = r->body.len < sizeof(snip) - 1 ? r->body.len : sizeof(snip) - 1;
        memcpy(snip, r->body.data ? r->body.data : "", n);
        snip[n] = '\0';
        fail(s, "HTTP %ld from %s: %s", st, s->run.url, snip);
        run_end(s);
        return;
    }
    s->run.attempt = 0;
    s->run.n429 = 0;
    start_work(s);
}

static void send_request(struct hsrc *s)
{
    const struct fr_http_source *h = s->h;
    uint64_t now = fr_mono_ms();
    char **hdrs;
    struct fr_hc_opts o = {h->connect_ms, h->total_ms, h->tls_verify, h->max_bytes};

    if (s->blocked_until_ms > now) {
        (*s->m_waits)++;
        wait_then(s, s->blocked_until_ms - now);
        return;
    }
    if (h->per_minute) {
        double cap = h->per_minute / 10.0 < 1 ? 1 : h->per_minute / 10.0;
        s->tokens += (double)(now - s->tokens_ms) * h->per_minute / 60000.0;
        s->tokens_ms = now;
        if (s->tokens > cap)
            s->tokens = cap;
        if (s->tokens < 1) {
            (*s->m_waits)++;
            wait_then(s, (uint64_t)((1 - s->tokens) * 60000.0 / h->per_minute) + 1);
            return;
        }
        s->tokens -= 1;
    }
    hdrs = fr_xcalloc(h->n_headers + 1, sizeof(char *));
    for (size_t i = 0; i < h->n_headers; i++) {
        char *v = expand(s, h->headers[i].value, false);
        hdrs[i] = fr_xasprintf("%s: %s", h->headers[i].name, v);
        free(v);
    }
    int rc = fr_hc_get(s->hs->hc, &s->req, s->run.url, (const char *const *)hdrs, h->n_headers, &o, on_response, s);
    for (size_t i = 0; i < h->n_headers; i++)
        free(hdrs[i]);
    free(hdrs);
    if (rc != 0) {
        fail(s, "cannot start a request to %s: %s", s->run.url, strerror(-rc));
        run_end(s);
        return;
    }
    set_state(s, HS_REQ);
}

/* Batch id prefix of the current chain: deterministic per window (so a
 * window redone after a crash has the same ids), per run otherwise. */
static void chain_begin(struct hsrc *s)
{
    const struct fr_http_source *h = s->h;
    s->run.page = 0;
    free(s->run.cursor);
    s->run.cursor = NULL;
    free(s->run.next_url);
    s->run.next_url = NULL;
    if (h->window.enabled) {
        struct fr_buf k;
        fr_buf_init(&k, 0);
        (void)fr_buf_printf(&k, "%s/%s/", s->p->name, s->src->name);
        if (h->fan_out.values)
            (void)fr_buf_puts(&k, h->fan_out.values[s->run.fan_i]);
        else if (parent_of(s)) {
            char *d = json_dumps(parent_of(s), JSON_COMPACT | JSON_SORT_KEYS);
            (void)fr_buf_puts(&k, d ? d : "");
            free(d);
        }
        snprintf(s->run.id_prefix, sizeof(s->run.id_prefix), "w%013" PRId64 "-%016" PRIx64, s->run.win_us / 1000,
                 fr_hash64(k.data, k.len));
        fr_buf_deinit(&k);
    } else {
        snprintf(s->run.id_prefix, sizeof(s->run.id_prefix), "%s-%05zu", s->run.ulid, s->run.fan_i);
    }
}

static void on_state_saved(fr_lease_t *l, int rc, void *data);

/* Writes s->saving through the lease (fenced); on_state_saved goes on with
 * the run. A write that cannot be sent fails the run here. */
static void save_state(struct hsrc *s)
{
    char *text = fr_hstate_encode(&s->saving);
    int rc = fr_lease_set_state(s->lease, text, strlen(text), on_state_saved, s);
    free(text);
    if (rc != 0) {
        if (rc == -EPERM)
            s->lease_lost = true;
        fail(s, "state not saved: %s", rc == -EPERM ? "lease lost" : "Redis not connected");
        run_end(s);
        return;
    }
    set_state(s, HS_SAVE);
}

static void on_state_saved(fr_lease_t *l, int rc, void *data)
{
    struct hsrc *s = data;

    set_state(s, HS_IDLE);
    if (rc != 1) {
        if (rc == 0)
            s->lease_lost = true;
        fail(s,
             rc == 0 ? "lease %s lost: another ingest runs the source now; state not saved"
                     : "state not saved in Redis (%s: connection lost or error); the window is redone next run",
             fr_lease_key(l));
        run_end(s);
        return;
    }
    s->st = s->saving;
    step(s);
}

static void report(struct hsrc *s, bool finished, bool ok)
{
    struct fr_backfill_progress p = {
        s->run.windows_done, s->run.windows_total, s->run.rows, s->run.rejected, s->run.requests, finished, ok, NULL};
    if (finished && !ok)
        p.reason = s->run.failed ? s->run.reason : "stopped (daemon draining)";
    s->run.report(&p, s->run.done_data);
}

static void progress(struct hsrc *s)
{
    if (!s->run.backfill)
        return;
    if (s->run.report) {
        report(s, false, false);
        return;
    }
    double el = (double)(fr_mono_ms() - s->run.t0_ms) / 1000.0;
    double rps = el > 0 ? (double)s->run.rows / el : 0;
    double eta = s->run.windows_done
                     ? el * (double)(s->run.windows_total - s->run.windows_done) / (double)s->run.windows_done
                     : 0;
    if (isatty(2))
        fprintf(stderr, "\r%s.%s: windows %" PRIu64 "/%" PRIu64 ", %" PRIu64 " rows, %.0f rows/s, ETA %.0f s   ",
                s->p->name, s->src->name, s->run.windows_done, s->run.windows_total, s->run.rows, rps, eta);
    else
        fr_info("%s.%s backfill: windows %" PRIu64 "/%" PRIu64 ", %" PRIu64 " rows, %.0f rows/s, ETA %.0f s",
                s->p->name, s->src->name, s->run.windows_done, s->run.windows_total, s->run.rows, rps, eta);
}

/* The heart: decides what the run does next. Called when nothing of the
 * run is in flight (HS_IDLE) or while publishing (HS_PUBLISH). */
static void step(struct hsrc *s)
{
    const struct fr_http_source *h = s->h;

    if (s->hs->stopping || s->lease_lost) {
        if (s->state == HS_IDLE || s->state == HS_PUBLISH) {
            set_state(s, HS_IDLE);
            run_end(s);
        }
        return;
    }
    if (s->state == HS_PUBLISH) {
        pump_items(s);
        if (s->run.qhead || s->run.unacked)
            return;
        set_state(s, HS_IDLE);
        if (s->run.item_failed) {
            fail(s, "publisher dropped items");
            run_end(s);
            return;
        }
        /* the page is in Redis: next page, or the chain is done */
        bool more = false;
        const struct fr_http_paginate *pg = &h->paginate;
        if (s->run.page + 1 < pg->max_pages) {
            if (pg->kind == FR_PAGE_PAGE || pg->kind == FR_PAGE_OFFSET)
                more = s->run.last_n_records > 0 && (pg->size == 0 || s->run.last_n_records >= pg->size);
            else if (pg->kind == FR_PAGE_CURSOR)
                more = s->run.cursor != NULL;
            else if (pg->kind == FR_PAGE_NEXT)
                more = s->run.next_url != NULL;
        }
        if (more) {
            s->run.page++;
            free(s->run.url);
            s->run.url = build_url(s);
            send_request(s);
            return;
        }
        /* chain done */
        if (++s->run.fan_i < s->run.n_fan) {
            if (h->window.enabled && h->fan_out.values && !s->run.backfill && s->lease) {
                /* the chain's batches are in Redis: record it, fenced, so a
                 * takeover starts at the next chain, not the window's first */
                free(s->run.url);
                s->run.url = NULL; /* step() begins chain fan_i once saved */
                s->saving = s->st;
                s->saving.chain_win_us = s->run.win_us;
                s->saving.chains_done = (uint32_t)s->run.fan_i;
                save_state(s);
                return;
            }
            chain_begin(s);
            free(s->run.url);
            s->run.url = build_url(s);
            send_request(s);
            return;
        }
        /* window (or run) done */
        if (!h->window.enabled) {
            run_end(s);
            return;
        }
        s->run.windows_done++;
        int64_t end = win_end(s);
        free(s->run.url);
        s->run.url = NULL;
        s->run.win_us = end;
        s->run.fan_i = 0;
        progress(s);
        if (!s->run.backfill && s->lease && end > s->st.last_end_us) {
            /* the window's batches are in Redis: record it, fenced */
            s->saving = s->st;
            s->saving.last_end_us = end;
            s->saving.chain_win_us = 0;
            s->saving.chains_done = 0;
            save_state(s);
            return;
        }
        step(s);
        return;
    }
    if (s->state == HS_WAIT) /* the wait timer fired: resend the same URL */
        return;
    /* HS_IDLE: after a wait the same URL again; else the next window's first chain */
    if (s->run.url != NULL) {
        send_request(s);
        return;
    }
    if (h->window.enabled && s->run.win_us >= s->run.to_us) {
        run_end(s);
        return;
    }
    chain_begin(s);
    s->run.url = build_url(s);
    send_request(s);
}

static void schedule_next(struct hsrc *s);

static void run_start(struct hsrc *s, bool backfill, int64_t from_us, int64_t to_us)
{
    const struct fr_http_source *h = s->h;

    memset(&s->run, 0, sizeof(s->run));
    s->run.backfill = backfill;
    s->lease_lost = false;
    fr_ulid(s->run.ulid);
    s->run.t0_ms = fr_mono_ms();
    if (h->fan_out.values)
        s->run.n_fan = h->fan_out.n_values;
    else if (h->fan_out.source)
        s->run.n_fan = json_array_size(s->parents);
    else
        s->run.n_fan = 1;
    if (h->window.enabled) {
        int64_t now = fr_pipeline_now(s->p);
        int64_t end = floor_to(now, h->window.align_us);
        int64_t start = h->window.start_relative ? end + h->window.start_us : h->window.start_us;
        start = floor_to(start, h->window.align_us);
        if (!backfill) {
            from_us = s->st.last_end_us > start ? s->st.last_end_us : start;
            to_us = end;
        }
        s->run.from_us = s->run.win_us = from_us;
        s->run.to_us = to_us;
        if (!backfill && h->fan_out.values && s->st.chain_win_us == from_us && s->st.chains_done > 0 &&
            s->st.chains_done < s->run.n_fan) { /* a window left part done: its next chain */
            s->run.fan_i = s->st.chains_done;
            fr_info("%s.%s: window in progress: %" PRIu32 " of %zu fan-out chain(s) already in Redis", s->p->name,
                    s->src->name, s->st.chains_done, s->run.n_fan);
        }
        s->run.windows_total =
            to_us > from_us ? (uint64_t)((to_us - from_us + h->window.step_us - 1) / h->window.step_us) : 0;
    }
    set_state(s, HS_IDLE);
    event(s, "source.started", NULL);
    fr_info("%s.%s: run %s started (%zu fan-out chain(s)%s)", s->p->name, s->src->name, s->run.ulid, s->run.n_fan,
            h->window.enabled ? ", windowed" : "");
    if (s->run.n_fan == 0 || (h->window.enabled && s->run.from_us >= s->run.to_us)) {
        run_end(s);
        return;
    }
    step(s);
}

static void trigger(struct hsrc *s, int64_t due_us);
static void release_lease(struct hsrc *s, bool record);

static void run_end(struct hsrc *s)
{
    struct fr_buf b;
    uint64_t ms = fr_mono_ms() - s->run.t0_ms;
    bool ok = !s->run.failed && !s->hs->stopping;

    /* items not yet handed to the publisher are dropped (run over) */
    while (s->run.qhead) {
        struct fr_pub_item *it = s->run.qhead;
        s->run.qhead = it->next;
        fr_pub_item_free(it);
    }
    s->run.qtail = NULL;
    if (s->run.backfill && isatty(2))
        fputc('\n', stderr);
    fr_buf_init(&b, 0);
    if (ok) {
        (void)fr_buf_printf(&b,
                            ",\"rows\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"batches\":%" PRIu64
                            ",\"requests\":%" PRIu64 ",\"duration_ms\":%" PRIu64,
                            s->run.rows, s->run.rejected, s->run.batches, s->run.requests, ms);
        event(s, "source.finished", b.data);
        (*s->m_runs_ok)++;
        fr_info("%s.%s: run %s finished: %" PRIu64 " rows, %" PRIu64 " rejected, %" PRIu64 " requests in %" PRIu64
                " ms",
                s->p->name, s->src->name, s->run.ulid, s->run.rows, s->run.rejected, s->run.requests, ms);
    } else {
        const char *reason = s->run.failed ? s->run.reason : "stopped (daemon draining)";
        (void)fr_buf_puts(&b, ",\"reason\":");
        (void)fr_buf_json_str(&b, reason, strlen(reason));
        event(s, "source.failed", b.data);
        (*s->m_runs_failed)++;
        fr_log_kv(FR_LOG_WARN, "source", s->src->name, "%s.%s: run %s failed: %s", s->p->name, s->src->name,
                  s->run.ulid, reason);
    }
    fr_buf_deinit(&b);
    free(s->run.cursor);
    free(s->run.next_url);
    free(s->run.url);
    s->run.cursor = s->run.next_url = s->run.url = NULL;
    json_t *records = s->run.records;
    s->run.records = NULL;
    set_state(s, HS_IDLE);
    s->run.t0_ms = 0;
    if (s->run.report) {
        report(s, true, ok);
        s->run.report = NULL;
    }
    if (s->run.done) {
        void (*done)(bool, void *) = s->run.done;
        s->run.done = NULL;
        json_decref(records);
        done(ok, s->run.done_data);
        if (s->lease) /* daemon mode: a run asked meanwhile waited for this backfill */
            lease_step(s);
        return;
    }
    /* a run that ended (not cut short by a drain or a lost lease) serves
     * the triggers before its start, whatever replica got them */
    release_lease(s, !s->hs->stopping && !s->lease_lost);
    if (s->hs->stopping) {
        json_decref(records);
        maybe_stopped(s->hs);
        return;
    }
    if (ok && s->has_children) {
        json_decref(s->last_records);
        s->last_records = records ? records : json_array();
        for (size_t i = 0; i < s->hs->n; i++) {
            struct hsrc *c = s->hs->srcs[i];
            if (c->parent == s) {
                json_decref(c->parents);
                c->parents = json_incref(s->last_records);
                trigger(c, fr_wall_us());
            }
        }
    } else {
        json_decref(records);
    }
    lease_step(s);
}

static bool running(const struct hsrc *s)
{
    return s->run.t0_ms != 0;
}

/* ------------------------------------------------------------ the lease */

static void on_released(fr_lease_t *l, int rc, void *data)
{
    struct hsrc *s = data;

    if (rc != 1)
        fr_warn("%s.%s: lease %s was not ours at release (%s)", s->p->name, s->src->name, fr_lease_key(l),
                rc == 0 ? "taken over" : "no answer from Redis; it expires by itself");
    else
        fr_debug("%s.%s: lease released", s->p->name, s->src->name);
    if (s->hs->stopping)
        maybe_stopped(s->hs);
    else
        lease_step(s);
}

/* Releases the lease after a run (or a skipped one); record = write the
 * state with this run's start as last_run_start_us in the same script. */
static void release_lease(struct hsrc *s, bool record)
{
    char *text = NULL;

    if (s->lease == NULL || !fr_lease_held(s->lease))
        return;
    if (record) {
        s->st.last_run_us = s->run_start_us;
        text = fr_hstate_encode(&s->st);
    }
    int rc = fr_lease_release(s->lease, text, text ? strlen(text) : 0, s->p->name, s->src->name, on_released, s);
    if (rc != 0)
        fr_warn("%s.%s: lease not released (%s); it expires in %" PRIu32 " ms", s->p->name, s->src->name,
                strerror(-rc), s->hs->lease_ttl_ms);
    free(text);
}

/* The one-time import of a legacy state file: written (fenced) as soon as
 * the first lease is taken; Redis's state wins from then on. */
static void on_imported(fr_lease_t *l, int rc, void *data)
{
    struct hsrc *s = data;

    if (rc == 1) {
        s->has_file_st = false;
        fr_info("%s.%s: imported the state file %s into Redis (%s); the file is not read again", s->p->name,
                s->src->name, s->state_path, fr_lease_key(l));
    }
    if (s->hs->stopping)
        maybe_stopped(s->hs);
}

static void on_retry(uv_timer_t *t)
{
    lease_step(fr_container_of(t, struct hsrc, retry));
}

static void on_acquired(fr_lease_t *l, int rc, const char *state, size_t len, void *data)
{
    struct hsrc *s = data;
    struct fr_hstate st;
    char err[FR_ERR_LEN];
    bool import = false;

    if (s->hs->stopping) {
        if (rc == 1)
            release_lease(s, false);
        maybe_stopped(s->hs);
        return;
    }
    if (rc != 1) { /* another replica runs it (or Redis is away): look again soon */
        if (rc == 0)
            fr_debug("%s.%s: lease held by %.*s; waiting", s->p->name, s->src->name, (int)(state ? len : 0),
                     state ? state : "");
        uv_timer_start(&s->retry, on_retry, s->hs->lease_renew_ms, 0);
        return;
    }
    if (state) {
        s->has_file_st = false; /* Redis has the state: a local file is not imported */
        if (fr_hstate_parse(state, len, &st, "Redis state of the source", err) != 0) {
            fr_error("%s.%s: %s (key fr:state:src:%s); the source does not run", s->p->name, s->src->name, err,
                     s->qname);
            s->want = false;
            release_lease(s, false);
            return;
        }
    } else if (s->has_file_st) {
        st = s->file_st;
        import = true;
    } else {
        memset(&st, 0, sizeof(st));
    }
    s->st = st;
    if (s->want_due_us <= st.last_run_us) {
        fr_info("%s.%s: run not needed: a run started after the trigger (by this or another ingest)", s->p->name,
                s->src->name);
        s->want = false;
        release_lease(s, false);
        return;
    }
    s->want = false;
    s->run_start_us = fr_wall_us();
    snprintf(s->fence_val, sizeof(s->fence_val), "%s", fr_lease_value(l));
    fr_info("%s.%s: lease taken (token %" PRIu64 ")", s->p->name, s->src->name, fr_lease_token(l));
    if (import) {
        char *text = fr_hstate_encode(&st);
        if (fr_lease_set_state(l, text, strlen(text), on_imported, s) != 0)
            fr_warn("%s.%s: state file not imported yet (Redis not connected)", s->p->name, s->src->name);
        free(text);
    }
    run_start(s, false, 0, 0);
}

/* Takes the lease when a run is wanted and nothing is in the way. */
static void lease_step(struct hsrc *s)
{
    if (s->hs->stopping || !s->want || running(s) || s->lease == NULL || fr_lease_busy(s->lease) ||
        fr_lease_held(s->lease))
        return;
    if (s->parent && s->parents == NULL) {
        /* no parent records yet: run the parent, which runs us after it */
        fr_info("%s.%s: running parent source %s first", s->p->name, s->src->name, s->parent->src->name);
        s->want = false;
        trigger(s->parent, s->want_due_us);
        return;
    }
    uv_timer_stop(&s->retry);
    if (fr_lease_acquire(s->lease, on_acquired, s) != 0)
        uv_timer_start(&s->retry, on_retry, s->hs->lease_renew_ms, 0);
}

static void on_lease_lost(fr_lease_t *l, void *data)
{
    struct hsrc *s = data;

    (void)l;
    if (!running(s))
        return;
    s->lease_lost = true;
    fail(s, "lease %s lost: another ingest runs the source now", fr_lease_key(l));
    if (s->state == HS_WAIT) {
        uv_timer_stop(&s->wait);
        set_state(s, HS_IDLE);
        run_end(s);
    } else if (s->state == HS_REQ) {
        fr_hc_cancel(&s->req); /* on_response ends the run */
    } else if (s->state == HS_IDLE || s->state == HS_PUBLISH) {
        step(s);
    } /* HS_WORK, HS_SAVE: their callbacks see lease_lost */
}

/* A run is wanted; due_us: a run that started at or after it serves this
 * trigger (so replicas that got the same trigger run it once). */
static void trigger(struct hsrc *s, int64_t due_us)
{
    if (s->hs->stopping)
        return;
    if (!s->want || due_us > s->want_due_us)
        s->want_due_us = due_us;
    s->want = true;
    lease_step(s);
}

static void on_sched(uv_timer_t *t)
{
    struct hsrc *s = fr_container_of(t, struct hsrc, sched);
    const struct fr_sched *sc = &s->h->schedule;
    int64_t now = fr_wall_us();
    int64_t due;

    if (s->catchup) /* the first run at start: any run after this process started serves it */
        due = s->hs->start_us;
    else if (sc->kind == FR_SCHED_EVERY) /* replicas' timers drift: half a period apart is the same run */
        due = now - (int64_t)sc->every_ms * 500;
    else /* cron: the match this timer was armed for, the same on every replica */
        due = s->sched_due_us;
    s->catchup = false;
    trigger(s, due);
    schedule_next(s);
}

static void schedule_next(struct hsrc *s)
{
    const struct fr_sched *sc = &s->h->schedule;
    if (sc->kind == FR_SCHED_MANUAL || s->hs->stopping)
        return;
    int64_t now = fr_wall_us();
    int64_t next = fr_sched_next(sc, now);
    if (next == INT64_MAX)
        return;
    uint64_t ms = (uint64_t)((next - now) / 1000) + 1;
    s->sched_due_us = next;
    uv_timer_start(&s->sched, on_sched, ms, 0);
}

/* ------------------------------------------------------------- control */

static void on_control(fr_redis_t *r, const char *channel, const char *payload, size_t len, void *data)
{
    struct fr_httpsrcs *hs = data;
    json_error_t je;
    json_t *m = json_loadb(payload, len, 0, &je);

    (void)r;
    (void)channel;
    const char *cmd = json_string_value(json_object_get(m, "cmd"));
    const char *pl = json_string_value(json_object_get(m, "pipeline"));
    const char *so = json_string_value(json_object_get(m, "source"));
    json_t *at = json_object_get(m, "at_us"); /* when the run was asked for (freshet-ingest run) */
    if (cmd && strcmp(cmd, "backfill") == 0) {
        if (hs->bf)
            fr_backfills_on_control(hs->bf, m);
    } else if (cmd && strcmp(cmd, "lease_released") == 0 && pl && so) {
        /* a replica let a source go: if we wait for it, try now */
        for (size_t i = 0; i < hs->n; i++) {
            struct hsrc *s = hs->srcs[i];
            if (s->want && strcmp(s->p->name, pl) == 0 && strcmp(s->src->name, so) == 0)
                lease_step(s);
        }
    } else if (!cmd || strcmp(cmd, "run") != 0 || !pl || !so) {
        fr_warn("fr:control: ignored message (want {\"cmd\":\"run\",\"pipeline\":..,\"source\":..})");
    } else if (!fr_httpsrcs_trigger(hs, pl, so, json_is_integer(at) ? json_integer_value(at) : fr_wall_us())) {
        fr_warn("fr:control: no http_json source %.60s.%.60s here", pl, so);
    }
    json_decref(m);
}

/* --------------------------------------------------------------- public */

fr_httpsrcs_t *fr_httpsrcs_new(struct fr_app *app, fr_publisher_t *pub, char err[FR_ERR_LEN])
{
    struct fr_httpsrcs *hs = fr_xcalloc(1, sizeof(*hs));
    size_t n = 0;

    hs->app = app;
    hs->pub = pub;
    for (size_t i = 0; i < app->n_pipelines; i++)
        for (size_t k = 0; k < app->pipelines[i]->n_sources; k++)
            n += app->pipelines[i]->sources[k].kind == FR_SRC_HTTP_JSON;
    hs->srcs = fr_xcalloc(n ? n : 1, sizeof(*hs->srcs));
    if (n == 0)
        return hs;
    hs->hc = fr_hc_new(&app->loop);
    if (hs->hc == NULL) {
        snprintf(err, FR_ERR_LEN, "cannot create the curl multi handle");
        fr_httpsrcs_free(hs);
        return NULL;
    }
    for (size_t i = 0; i < app->n_pipelines; i++) {
        const struct fr_pipeline *p = app->pipelines[i];
        for (size_t k = 0; k < p->n_sources; k++) {
            const struct fr_source *src = &p->sources[k];
            if (src->kind != FR_SRC_HTTP_JSON)
                continue;
            struct hsrc *s = fr_xcalloc(1, sizeof(*s));
            char labels[256];
            s->hs = hs;
            s->p = p;
            s->src = src;
            s->h = src->http;
            s->ds = fr_pipeline_dataset(p, src->dataset);
            s->rng = fr_hash64(src->name, strlen(src->name)) ^ (uint64_t)fr_wall_us() ^ 0x9e3779b97f4a7c15ull;
            if (s->rng == 0)
                s->rng = 1;
            s->tokens = 1;
            s->tokens_ms = fr_mono_ms();
            snprintf(s->state_path, sizeof(s->state_path), "%s/state/%s/%s.json", app->settings.data_dir, p->name,
                     src->name);
            snprintf(s->qname, sizeof(s->qname), "%s.%s", p->name, src->name);
            /* a state file from before replicas: imported into Redis when
             * the source's lease is first taken, if Redis has none */
            int rc = fr_hstate_load(s->state_path, &s->file_st, err);
            if (rc != 0 && rc != -ENOENT) {
                free(s);
                fr_httpsrcs_free(hs);
                return NULL;
            }
            s->has_file_st = rc == 0;
            snprintf(labels, sizeof(labels), "pipeline=\"%s\",source=\"%s\"", p->name, src->name);
            s->m_retries =
                fr_metrics_counter(app->metrics, "ingest_http_retries_total", "Retried http_json requests", labels);
            s->m_waits = fr_metrics_counter(app->metrics, "ingest_http_rate_limit_waits_total",
                                            "Waits for quotas, 429s and the per-minute ceiling", labels);
            s->m_runs_ok = fr_metrics_counter(app->metrics, "ingest_source_runs_total",
                                              "Finished http_json source runs", labels);
            s->m_runs_failed = fr_metrics_counter(app->metrics, "ingest_source_runs_failed_total",
                                                  "Failed http_json source runs", labels);
            uv_timer_init(&app->loop, &s->sched);
            uv_timer_init(&app->loop, &s->wait);
            uv_timer_init(&app->loop, &s->retry);
            hs->open_handles += 3;
            hs->srcs[hs->n++] = s;
        }
    }
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        if (!s->h->fan_out.source)
            continue;
        for (size_t k = 0; k < hs->n; k++)
            if (hs->srcs[k]->p == s->p && strcmp(hs->srcs[k]->src->name, s->h->fan_out.source) == 0) {
                s->parent = hs->srcs[k];
                hs->srcs[k]->has_children = true;
            }
    }
    return hs;
}

size_t fr_httpsrcs_count(const fr_httpsrcs_t *hs)
{
    return hs->n;
}

int fr_httpsrcs_start(fr_httpsrcs_t *hs)
{
    char err[FR_ERR_LEN];

    if (hs->n == 0)
        return 0;
    if (fr_lease_settings(&hs->lease_ttl_ms, &hs->lease_renew_ms, err) != 0) {
        fr_error("%s", err);
        return -EINVAL;
    }
    fr_lease_holder_id(hs->holder, sizeof(hs->holder));
    hs->start_us = fr_wall_us();
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        char *k = fr_names_src_lease(s->ds->qname, s->qname), *f = fr_names_src_fence(s->ds->qname, s->qname),
             *st = fr_names_src_state(s->ds->qname, s->qname);
        s->lease =
            fr_lease_new(hs->app, k, f, st, hs->holder, hs->lease_ttl_ms, hs->lease_renew_ms, on_lease_lost, s);
        free(k);
        free(f);
        free(st);
    }
    fr_info("ingest replica %s: http_json sources run under leases (TTL %" PRIu32 " ms, renewed every %" PRIu32
            " ms)",
            hs->holder, hs->lease_ttl_ms, hs->lease_renew_ms);
    hs->control = fr_redis_new(&hs->app->loop, hs->app->settings.redis_url, "control", err);
    if (hs->control == NULL) {
        fr_error("fr:control subscriber: %s", err);
        return -EINVAL;
    }
    hs->bf = fr_backfills_new(hs->app, hs, hs->holder);
    int rc = fr_redis_subscribe(hs->control, FR_NAMES_CONTROL, on_control, hs);
    if (rc == 0)
        rc = fr_redis_start(hs->control);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        const struct fr_sched *sc = &s->h->schedule;
        if (sc->kind == FR_SCHED_MANUAL)
            continue;
        /* `every` and windowed sources run at start (catch up), cron ones at
         * their next match; fan-out children run after their parent. */
        if (!s->parent && (sc->kind == FR_SCHED_EVERY || s->h->window.enabled)) {
            s->catchup = true;
            uv_timer_start(&s->sched, on_sched, 0, 0);
        } else
            schedule_next(s);
    }
    return 0;
}

bool fr_httpsrcs_trigger(fr_httpsrcs_t *hs, const char *pipeline, const char *source, int64_t due_us)
{
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        if (strcmp(s->p->name, pipeline) == 0 && strcmp(s->src->name, source) == 0) {
            trigger(s, due_us);
            return true;
        }
    }
    return false;
}

int fr_httpsrcs_backfill(fr_httpsrcs_t *hs, const char *pipeline, const char *source, int64_t from_us, int64_t to_us,
                         void (*done)(bool ok, void *data), void *data, char err[FR_ERR_LEN])
{
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        if (strcmp(s->p->name, pipeline) != 0 || strcmp(s->src->name, source) != 0)
            continue;
        if (!s->h->window.enabled) {
            snprintf(err, FR_ERR_LEN, "source %s.%s has no window; backfill needs window: in its config", pipeline,
                     source);
            return -EINVAL;
        }
        if (s->parent) {
            snprintf(err, FR_ERR_LEN,
                     "source %s.%s fans out over source %s: backfill that one (its run feeds this one)", pipeline,
                     source, s->parent->src->name);
            return -EINVAL;
        }
        int64_t a = s->h->window.align_us;
        from_us = floor_to(from_us, a);
        to_us = floor_to(to_us + a - 1, a);
        if (to_us <= from_us) {
            snprintf(err, FR_ERR_LEN, "--from must be before --to");
            return -EINVAL;
        }
        run_start(s, true, from_us, to_us);
        if (!running(s)) {
            done(!s->run.failed, data);
            return 0;
        }
        s->run.done = done;
        s->run.done_data = data;
        return 0;
    }
    snprintf(err, FR_ERR_LEN, "no http_json source %s in pipeline %s; check the names (and FRESHET_PIPELINES)",
             source, pipeline);
    return -ENOENT;
}

static void backfill_job_done(bool ok, void *data)
{
    (void)ok; /* reported through run.report, before this */
    (void)data;
}

int fr_httpsrcs_backfill_job(fr_httpsrcs_t *hs, const char *pipeline, const char *source, int64_t from_us,
                             int64_t to_us, fr_backfill_report_cb cb, void *data, char err[FR_ERR_LEN])
{
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        if (strcmp(s->p->name, pipeline) != 0 || strcmp(s->src->name, source) != 0)
            continue;
        if (hs->stopping) {
            snprintf(err, FR_ERR_LEN, "this ingest is draining");
            return -ESHUTDOWN;
        }
        if (running(s)) {
            snprintf(err, FR_ERR_LEN, "source %s.%s is running; the backfill starts when that run ends", pipeline,
                     source);
            return -EBUSY;
        }
        int rc = fr_httpsrcs_backfill(hs, pipeline, source, from_us, to_us, backfill_job_done, data, err);
        if (rc != 0)
            return rc;
        s->run.report = cb;
        s->run.done_data = data;
        if (!running(s)) /* nothing to fetch: ended at once */
            report(s, true, !s->run.failed);
        else
            report(s, false, false);
        return 0;
    }
    snprintf(err, FR_ERR_LEN, "no http_json source %s in pipeline %s here", source, pipeline);
    return -ENOENT;
}

void fr_httpsrcs_pump(fr_httpsrcs_t *hs)
{
    for (size_t i = 0; i < hs->n; i++)
        if (hs->srcs[i]->state == HS_PUBLISH)
            step(hs->srcs[i]);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct fr_httpsrcs *hs = h->data;
    hs->open_handles--;
    maybe_stopped(hs);
}

static void on_control_closed(void *data)
{
    struct fr_httpsrcs *hs = data;
    hs->control = NULL;
    hs->open_handles--;
    maybe_stopped(hs);
}

static void on_hc_closed(void *data)
{
    struct fr_httpsrcs *hs = data;
    hs->hc_closed = true;
    hs->open_handles--;
    maybe_stopped(hs);
}

static void on_lease_closed(void *data)
{
    struct fr_httpsrcs *hs = data;
    hs->open_handles--;
    maybe_stopped(hs);
}

static void maybe_stopped(struct fr_httpsrcs *hs)
{
    if (!hs->stopping)
        return;
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        if (s->state == HS_REQ || s->state == HS_WORK || s->state == HS_SAVE)
            return; /* their callbacks still come */
        if (s->lease && fr_lease_busy(s->lease))
            return; /* the release (another replica takes over at once) */
        /* items still with the publisher need not be waited for: their
         * on_done only touches s, which lives until fr_httpsrcs_free */
    }
    if (!hs->leases_closing) {
        hs->leases_closing = true;
        for (size_t i = 0; i < hs->n; i++)
            if (hs->srcs[i]->lease) {
                hs->open_handles++;
                fr_lease_close(hs->srcs[i]->lease, on_lease_closed, hs);
            }
    }
    if (hs->hc && !hs->hc_closed && hs->open_handles > 0) {
        bool any_req = false;
        for (size_t i = 0; i < hs->n; i++)
            any_req = any_req || hs->srcs[i]->req.active;
        if (!any_req && !hs->hc_closing) {
            hs->hc_closing = true;
            fr_hc_close(hs->hc, on_hc_closed, hs);
        }
    }
    if (hs->open_handles == 0 && hs->stop_cb) {
        void (*cb)(void *) = hs->stop_cb;
        hs->stop_cb = NULL;
        cb(hs->stop_data);
    }
}

void fr_httpsrcs_stop(fr_httpsrcs_t *hs, void (*cb)(void *data), void *data)
{
    if (hs->stopping)
        return;
    hs->stopping = true;
    hs->stop_cb = cb;
    hs->stop_data = data;
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        s->sched.data = hs;
        s->wait.data = hs;
        s->retry.data = hs;
        uv_timer_stop(&s->wait);
        if (s->state == HS_WAIT || s->state == HS_PUBLISH) {
            set_state(s, HS_IDLE);
            run_end(s);
        }
        uv_close((uv_handle_t *)&s->sched, on_handle_closed);
        uv_close((uv_handle_t *)&s->wait, on_handle_closed);
        uv_close((uv_handle_t *)&s->retry, on_handle_closed);
        if (s->req.active)
            fr_hc_cancel(&s->req);
    }
    if (hs->hc)
        hs->open_handles++; /* the curl client */
    if (hs->control) {
        hs->open_handles++;
        fr_redis_close(hs->control, on_control_closed, hs);
    }
    if (hs->bf) {
        hs->open_handles++;
        fr_backfills_close(hs->bf, on_lease_closed, hs);
    }
    if (hs->open_handles == 0) {
        hs->stop_cb = NULL;
        cb(data);
        return;
    }
    maybe_stopped(hs);
}

void fr_httpsrcs_free(fr_httpsrcs_t *hs)
{
    if (hs == NULL)
        return;
    for (size_t i = 0; i < hs->n; i++) {
        struct hsrc *s = hs->srcs[i];
        fr_hc_req_deinit(&s->req);
        while (s->run.qhead) {
            struct fr_pub_item *it = s->run.qhead;
            s->run.qhead = it->next;
            fr_pub_item_free(it);
        }
        fr_lease_free(s->lease);
        json_decref(s->parents);
        json_decref(s->last_records);
        json_decref(s->run.records);
        free(s->run.url);
        free(s->run.cursor);
        free(s->run.next_url);
        free(s);
    }
    free(hs->srcs);
    fr_hc_free(hs->hc);
    fr_backfills_free(hs->bf);
    free(hs);
}

bool fr_httpsrcs_live(const fr_httpsrcs_t *hs, const char *pipeline, const char *source, struct fr_httpsrc_live *out)
{
    for (size_t i = 0; hs && i < hs->n; i++) {
        const struct hsrc *s = hs->srcs[i];
        if (strcmp(s->p->name, pipeline) != 0 || strcmp(s->src->name, source) != 0)
            continue;
        memset(out, 0, sizeof(*out));
        out->running = running(s);
        out->lease_held = s->lease && fr_lease_held(s->lease);
        if (uv_is_active((const uv_handle_t *)&s->sched))
            out->next_run_us = fr_wall_us() + (int64_t)uv_timer_get_due_in(&s->sched) * 1000;
        out->waits = s->m_waits ? *s->m_waits : 0;
        out->retries = s->m_retries ? *s->m_retries : 0;
        return true;
    }
    return false;
}
