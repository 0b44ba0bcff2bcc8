/* replay: re-publishes landed payloads (replay.h). One file at a time: a
 * worker reads and parses it into batches and rejected rows, the loop hands
 * them to the publisher in order, then the next file. Owns the file list
 * and the job in flight. */
#include "replay.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "batcher.h"
#include "config_http.h"
#include "http_source.h"
#include "log.h"
#include "names.h"
#include "parse.h"

#define REPLAY_MAX_FILE (256u << 20)

struct rfile {
    char *path; /* owned: absolute */
    char *rel;  /* owned: relative to the data dir */
    const struct fr_source *src;
};

struct rjob {
    uv_work_t req; /* embedded */
    struct fr_replay *r;
    struct rfile *f; /* borrowed */
    const struct fr_dataset *ds;
    char prefix[48];
    fr_batcher_t *batcher; /* owned */
    struct fr_raw_ref raw;
    char sha[65];
    struct fr_pub_item *head, *tail; /* owned */
    uint64_t rows, rejected;
    bool fatal;
    char reason[FR_ERR_LEN];
};

struct fr_replay {
    struct fr_app *app;
    fr_publisher_t *pub;
    const struct fr_pipeline *p;
    char ulid[27];
    struct rfile *files; /* owned */
    size_t n_files, cap_files, next;
    struct rjob *job; /* in flight (worker) */
    struct fr_pub_item *qhead, *qtail;
    size_t unacked;
    uint64_t rows, rejected, failed_files;
    uint64_t t0_ms;
    bool stopping, finished, item_failed;
    void (*done)(bool ok, void *data);
    void *data;
    void (*stop_cb)(void *data);
    void *stop_data;
};

static void next_file(struct fr_replay *r);

static void push(struct rjob *j, struct fr_pub_item *it)
{
    it->next = NULL;
    if (j->tail)
        j->tail->next = it;
    else
        j->head = it;
    j->tail = it;
}

static int emit_batch(void *data, struct fr_pub_item *it)
{
    push(data, it);
    return 0;
}

static int on_row(void *data, const struct fr_row *row)
{
    struct rjob *j = data;
    int rc = fr_batcher_add(j->batcher, row);
    j->rows++;
    if (rc != 0)
        snprintf(j->reason, sizeof(j->reason), "%s", fr_batcher_error(j->batcher));
    return rc;
}

static int on_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct rjob *j = data;
    struct fr_pub_item *it = fr_pub_item_new(FR_PUB_ROW, j->ds->qname);
    if (raw_len > FR_PUB_RAW_MAX)
        raw_len = FR_PUB_RAW_MAX;
    it->file = fr_xstrdup(j->f->rel);
    it->line = line;
    it->reason = fr_xstrdup(reason);
    it->raw = fr_xmemdup(raw ? raw : "", raw ? raw_len : 0);
    it->raw_len = raw ? raw_len : 0;
    push(j, it);
    j->rejected++;
    return 0;
}

static void parse_http(struct rjob *j, const char *buf, size_t len)
{
    const struct fr_http_source *h = j->f->src->http;
    char meta_path[4200], err[FR_ERR_LEN];
    size_t mlen = 0;
    json_error_t je;

    snprintf(meta_path, sizeof(meta_path), "%.*s.meta.json", (int)(strlen(j->f->path) - 5), j->f->path);
    char *mtext = fr_read_file(meta_path, 1u << 20, &mlen, err);
    json_t *meta = mtext ? json_loadb(mtext, mlen, 0, &je) : NULL;
    free(mtext);
    json_t *fv = json_object_get(meta, "field_values");
    char **vals = fr_xcalloc(h->n_fields ? h->n_fields : 1, sizeof(char *));
    for (size_t i = 0; i < h->n_fields; i++) {
        json_t *v = json_array_get(fv, i);
        if (h->fields[i].value)
            vals[i] = fr_xstrdup(json_is_string(v) ? json_string_value(v) : "");
    }
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    json_t *recs = doc ? fr_jpath_get(h->records, doc) : NULL;
    if (!doc || !json_is_array(recs)) {
        snprintf(j->reason, sizeof(j->reason), "%s: %s", j->f->rel,
                 doc ? "records path is not an array" : "not valid JSON");
        j->fatal = true;
    } else if (fr_http_records_to_rows(j->ds, j->f->src, h, recs, (const char *const *)vals, on_row, on_reject, j,
                                       NULL, j->reason) != 0) {
        j->fatal = true;
    }
    for (size_t i = 0; i < h->n_fields; i++)
        free(vals[i]);
    free(vals);
    json_decref(doc);
    json_decref(meta);
}

static void parse_file(struct rjob *j, const char *buf, size_t len)
{
    const char *base = strrchr(j->f->path, '/');
    enum fr_file_format fmt = fr_format_from_name(base ? base + 1 : j->f->path);
    if (fmt == 0) {
        snprintf(j->reason, sizeof(j->reason), "%s: unknown format (extension)", j->f->rel);
        j->fatal = true;
        return;
    }
    fr_parser_t *ps = fr_parser_new(j->ds, fmt, j->f->src->csv_header, on_row, on_reject, j);
    int rc = fr_parser_feed(ps, buf, len);
    if (rc == 0)
        rc = fr_parser_finish(ps);
    if (rc == -EINVAL && j->rows == 0) {
        snprintf(j->reason, sizeof(j->reason), "%s: %s", j->f->rel, fr_parser_error(ps));
        j->fatal = true;
    } else if (rc != 0 && rc != -EINVAL) {
        j->fatal = true;
    }
    fr_parser_free(ps);
}

static void work_cb(uv_work_t *req)
{
    struct rjob *j = fr_container_of(req, struct rjob, req);
    char err[FR_ERR_LEN];
    size_t len = 0;
    char *buf = fr_read_file(j->f->path, REPLAY_MAX_FILE, &len, err);

    if (buf == NULL) {
        snprintf(j->reason, sizeof(j->reason), "%s", err);
        j->fatal = true;
        return;
    }
    fr_sha256_hex(buf, len, j->sha);
    j->raw.path = j->f->rel;
    j->raw.sha256 = j->sha;
    j->raw.size = len;
    {
        /* the partition ingest chose for a file routed whole: by the inbound
         * name, "{ulid}-NAME" in the landing zone */
        const char *base = strrchr(j->f->rel, '/');
        const char *dash;
        base = base ? base + 1 : j->f->rel;
        dash = strchr(base, '-');
        base = dash ? dash + 1 : base;
        j->batcher = fr_batcher_new(&(struct fr_batcher_opts){.ds = j->ds,
                                                              .src = j->f->src,
                                                              .id_prefix = j->prefix,
                                                              .id_digits = 4,
                                                              .file_name = base,
                                                              .file_rel = j->f->rel,
                                                              .raw = &j->raw,
                                                              .emit = emit_batch,
                                                              .data = j});
    }
    if (j->f->src->kind == FR_SRC_HTTP_JSON)
        parse_http(j, buf, len);
    else
        parse_file(j, buf, len);
    free(buf);
    if (!j->fatal && fr_batcher_flush(j->batcher) != 0) {
        snprintf(j->reason, sizeof(j->reason), "%s", fr_batcher_error(j->batcher));
        j->fatal = true;
    }
}

static void job_free(struct rjob *j)
{
    while (j->head) {
        struct fr_pub_item *it = j->head;
        j->head = it->next;
        fr_pub_item_free(it);
    }
    fr_batcher_free(j->batcher);
    free(j);
}

static void progress(struct fr_replay *r)
{
    double el = (double)(fr_mono_ms() - r->t0_ms) / 1000.0;
    double rps = el > 0 ? (double)r->rows / el : 0;
    double eta = r->next ? el * (double)(r->n_files - r->next) / (double)r->next : 0;
    if (isatty(2))
        fprintf(stderr, "\rreplay %s: files %zu/%zu, %" PRIu64 " rows, %.0f rows/s, ETA %.0f s   ", r->p->name,
                r->next, r->n_files, r->rows, rps, eta);
    else
        fr_info("replay %s: files %zu/%zu, %" PRIu64 " rows, %.0f rows/s, ETA %.0f s", r->p->name, r->next,
                r->n_files, r->rows, rps, eta);
}

static void finish(struct fr_replay *r)
{
    if (r->finished)
        return;
    r->finished = true;
    if (isatty(2) && r->n_files)
        fputc('\n', stderr);
    bool ok = !r->stopping && !r->item_failed && r->failed_files == 0;
    fr_info("replay %s: %zu file(s), %" PRIu64 " rows, %" PRIu64 " rejected, %" PRIu64 " file(s) failed", r->p->name,
            r->n_files, r->rows, r->rejected, r->failed_files);
    if (r->done)
        r->done(ok, r->data);
}

static void maybe_stopped(struct fr_replay *r)
{
    if (r->stopping && !r->job && r->unacked == 0 && r->stop_cb) {
        void (*cb)(void *) = r->stop_cb;
        r->stop_cb = NULL;
        cb(r->stop_data);
    }
}

static void on_item_done(struct fr_pub_item *it, bool ok, void *data)
{
    struct fr_replay *r = data;
    (void)it;
    r->unacked--;
    if (!ok)
        r->item_failed = true;
    if (r->stopping) {
        maybe_stopped(r);
        return;
    }
    fr_replay_pump(r);
}

void fr_replay_pump(fr_replay_t *r)
{
    while (r->qhead && !r->stopping && fr_publisher_has_room(r->pub)) {
        struct fr_pub_item *it = r->qhead;
        r->qhead = it->next;
        if (!r->qhead)
            r->qtail = NULL;
        it->next = NULL;
        it->on_done = on_item_done;
        it->done_data = r;
        r->unacked++;
        fr_publisher_submit(r->pub, it);
    }
    if (!r->qhead && r->unacked == 0 && !r->job && !r->stopping && !r->finished)
        next_file(r);
}

static void after_work_cb(uv_work_t *req, int status)
{
    struct rjob *j = fr_container_of(req, struct rjob, req);
    struct fr_replay *r = j->r;

    r->job = NULL;
    if (status < 0 || r->stopping) {
        job_free(j);
        maybe_stopped(r);
        return;
    }
    if (j->fatal) {
        r->failed_files++;
        fr_warn("replay: %s skipped: %s", j->f->rel, j->reason);
    }
    r->rows += j->rows;
    r->rejected += j->rejected;
    if (j->head) {
        if (r->qtail)
            r->qtail->next = j->head;
        else
            r->qhead = j->head;
        r->qtail = j->tail;
        j->head = j->tail = NULL;
    }
    job_free(j);
    progress(r);
    fr_replay_pump(r);
}

static void next_file(struct fr_replay *r)
{
    if (r->next >= r->n_files) {
        finish(r);
        return;
    }
    struct rfile *f = &r->files[r->next];
    struct rjob *j = fr_xcalloc(1, sizeof(*j));
    j->r = r;
    j->f = f;
    j->ds = fr_pipeline_dataset(r->p, f->src->dataset);
    snprintf(j->prefix, sizeof(j->prefix), "r%s-%06zu", r->ulid, r->next);
    r->next++;
    r->job = j;
    if (uv_queue_work(&r->app->loop, &j->req, work_cb, after_work_cb) != 0) {
        r->job = NULL;
        job_free(j);
        r->failed_files++;
        finish(r);
    }
}

static int cmp_file(const void *a, const void *b)
{
    const struct rfile *x = a, *y = b;
    return strcmp(x->rel, y->rel);
}

static void add_file(struct fr_replay *r, const char *dir, const char *rel_dir, const char *name,
                     const struct fr_source *src)
{
    size_t n = strlen(name);
    if (name[0] == '.' || (n > 7 && strcmp(name + n - 7, ".sha256") == 0) ||
        (n > 10 && strcmp(name + n - 10, ".meta.json") == 0) || (n > 4 && strcmp(name + n - 4, ".tmp") == 0))
        return;
    if (src->kind == FR_SRC_HTTP_JSON && (n < 5 || strcmp(name + n - 5, ".json") != 0))
        return;
    if (r->n_files == r->cap_files) {
        r->cap_files = r->cap_files ? 2 * r->cap_files : 64;
        r->files = fr_xrealloc(r->files, r->cap_files * sizeof(*r->files));
    }
    r->files[r->n_files].path = fr_xasprintf("%s/%s", dir, name);
    r->files[r->n_files].rel = fr_xasprintf("%s/%s", rel_dir, name);
    r->files[r->n_files].src = src;
    r->n_files++;
}

fr_replay_t *fr_replay_start(struct fr_app *app, fr_publisher_t *pub, const char *pipeline, const char *dataset,
                             const char *source, const char *from, const char *to, void (*done)(bool ok, void *data),
                             void *data, char err[FR_ERR_LEN])
{
    const struct fr_pipeline *p = NULL;
    int32_t dfrom = INT32_MIN, dto = INT32_MAX;

    for (size_t i = 0; i < app->n_pipelines; i++)
        if (strcmp(app->pipelines[i]->name, pipeline) == 0)
            p = app->pipelines[i];
    if (!p) {
        snprintf(err, FR_ERR_LEN, "unknown pipeline '%.60s'; check the name and FRESHET_PIPELINES", pipeline);
        return NULL;
    }
    if ((from && !fr_parse_date(from, strlen(from), &dfrom)) || (to && !fr_parse_date(to, strlen(to), &dto))) {
        snprintf(err, FR_ERR_LEN, "--from/--to must be dates, YYYY-MM-DD");
        return NULL;
    }
    struct fr_replay *r = fr_xcalloc(1, sizeof(*r));
    r->app = app;
    r->pub = pub;
    r->p = p;
    r->done = done;
    r->data = data;
    fr_ulid(r->ulid);
    size_t matched = 0;
    for (size_t i = 0; i < p->n_sources; i++) {
        const struct fr_source *src = &p->sources[i];
        if (src->kind == FR_SRC_PUSH || (source && strcmp(src->name, source) != 0) ||
            (dataset && strcmp(src->dataset, dataset) != 0))
            continue;
        matched++;
        char *sdir = fr_xasprintf("%s/landing/%s/%s", app->settings.data_dir, p->name, src->name);
        DIR *d = opendir(sdir);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            int32_t day;
            if (!fr_parse_date(e->d_name, strlen(e->d_name), &day) || day < dfrom || day > dto)
                continue;
            char *ddir = fr_xasprintf("%s/%s", sdir, e->d_name);
            char *rel = fr_xasprintf("landing/%s/%s/%s", p->name, src->name, e->d_name);
            DIR *dd = opendir(ddir);
            struct dirent *f;
            while (dd && (f = readdir(dd)) != NULL)
                if (f->d_type == DT_REG || f->d_type == DT_UNKNOWN)
                    add_file(r, ddir, rel, f->d_name, src);
            if (dd)
                closedir(dd);
            free(ddir);
            free(rel);
        }
        if (d)
            closedir(d);
        free(sdir);
    }
    if (matched == 0) {
        snprintf(err, FR_ERR_LEN, "no file or http_json source of pipeline %s matches%s%s%s%s", p->name,
                 dataset ? " --dataset " : "", dataset ? dataset : "", source ? " --source " : "",
                 source ? source : "");
        fr_replay_free(r);
        return NULL;
    }
    qsort(r->files, r->n_files, sizeof(*r->files), cmp_file); /* landing names start with a ulid: time order */
    r->t0_ms = fr_mono_ms();
    fr_info("replay %s: %zu landed payload(s), new batch ids r%s-*", p->name, r->n_files, r->ulid);
    next_file(r);
    return r;
}

void fr_replay_stop(fr_replay_t *r, void (*cb)(void *data), void *data)
{
    r->stopping = true;
    r->stop_cb = cb;
    r->stop_data = data;
    while (r->qhead) {
        struct fr_pub_item *it = r->qhead;
        r->qhead = it->next;
        fr_pub_item_free(it);
    }
    r->qtail = NULL;
    if (!r->finished) {
        r->finished = true;
        if (r->done)
            r->done(false, r->data);
    }
    maybe_stopped(r);
}

void fr_replay_free(fr_replay_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_files; i++) {
        free(r->files[i].path);
        free(r->files[i].rel);
    }
    free(r->files);
    free(r);
}
