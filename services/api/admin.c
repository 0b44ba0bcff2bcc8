/* admin: the admin routes POST /admin/backup/{dataset} and
 * POST /admin/restore/{dataset} (Avro, common/backup.c; role admin). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api.h"
#include "engine_int.h"
#include "log.h"
#include "problem.h"
#include "backup.h"
#include "names.h"

/* ------------------------------------------------------------ admin routes */

/* POST /admin/backup/{dataset} writes the table to
 * {FRESHET_DATA_DIR}/backups/{pipeline}.{dataset}-{ts}-{random}.avro (a new
 * file each time: fr_backup_write_unique) and answers the file name;
 * POST /admin/restore/{dataset} replaces the table with the Avro body (a
 * corrupt or mismatched file, or data the table refuses, changes nothing:
 * 422 with the reason), then tells the loader so models and caches follow.
 * {dataset} is "pipeline.dataset" or a dataset name. Role admin. The
 * blocking work (libpq, avro-c) runs in libuv's thread pool. */

struct adminjob {
    uv_work_t work;
    struct fr_api_worker *w;
    fr_http_req_t *req;
    const struct fr_pipeline *p;
    const struct fr_dataset *ds;
    bool restore;
    const char *body;
    size_t len;
    char name[FR_BACKUP_NAME_LEN]; /* the backup's file name, chosen by admin_work */
    int rc;
    int64_t rows;
    char err[FR_ERR_LEN];
};

static void admin_work(uv_work_t *wk)
{
    struct adminjob *j = fr_container_of(wk, struct adminjob, work);
    const struct fr_settings *st = &j->w->app->settings;
    if (j->restore) {
        j->rc = fr_backup_restore_buf(st->database_url, j->p, j->ds, j->body, j->len, &j->rows, j->err);
        if (j->rc == 0)
            j->rc = fr_backup_notify(st->redis_url, j->ds, j->err);
    } else {
        char dir[1024];
        snprintf(dir, sizeof(dir), "%s/backups", st->data_dir);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            j->rc = -errno;
            snprintf(j->err, FR_ERR_LEN, "cannot create %.160s: %.60s", dir, strerror(errno));
            return;
        }
        j->rc = fr_backup_write_unique(st->database_url, j->p, j->ds, dir, j->name, &j->rows, j->err);
    }
}

static void admin_done(uv_work_t *wk, int status)
{
    struct adminjob *j = fr_container_of(wk, struct adminjob, work);
    struct fr_api_worker *w = j->w;
    w->inflight--;
    struct fr_buf *b = &w->out;
    fr_buf_reset(b);
    if (status != 0 || j->rc != 0) {
        int code = j->rc == -EPROTO || j->rc == -EBADMSG ? 422 : 503;
        fr_warn("admin %s %s: %s", j->restore ? "restore" : "backup", j->ds->qname, j->err);
        fr_api_respond_detail(NULL, j->req, code, status != 0 ? "cancelled" : j->err, w);
        return;
    }
    if (j->restore)
        (void)fr_buf_printf(b, "{\"dataset\":\"%s\",\"restored\":%" PRId64 "}", j->ds->qname, j->rows);
    else {
        (void)fr_buf_printf(b, "{\"dataset\":\"%s\",\"rows\":%" PRId64 ",\"file\":", j->ds->qname, j->rows);
        (void)fr_buf_json_str(b, j->name, strlen(j->name));
        (void)fr_buf_putc(b, '}');
    }
    fr_api_respond(NULL, j->req, j->restore ? 200 : 201, "application/json", b->data, b->len, w);
}

bool fr_api_admin_handle(struct fr_api_engine *e, fr_http_req_t *req, const char *method, const char *path)
{
    bool restore;
    const char *name;
    if (strncmp(path, "/admin/backup/", 14) == 0) {
        restore = false;
        name = path + 14;
    } else if (strncmp(path, "/admin/restore/", 15) == 0) {
        restore = true;
        name = path + 15;
    } else {
        return false;
    }
    struct fr_api_worker *w = e->w;
    if (strcmp(method, "POST") != 0) {
        fr_http_add_header(req, "Allow", "POST");
        fr_api_respond_detail(NULL, req, 405, "Method Not Allowed", w);
        return true;
    }
    const struct fr_pipeline *p = NULL;
    const struct fr_dataset *ds = NULL;
    const char *dot = strchr(name, '.');
    for (size_t i = 0; i < w->app->n_pipelines && !ds; i++) {
        const struct fr_pipeline *q = w->app->pipelines[i];
        if (dot) {
            if (strlen(q->name) == (size_t)(dot - name) && strncmp(q->name, name, (size_t)(dot - name)) == 0)
                ds = fr_pipeline_dataset(q, dot + 1);
        } else {
            ds = fr_pipeline_dataset(q, name);
        }
        if (ds)
            p = q;
    }
    if (!ds) {
        fr_api_respond_detail(NULL, req, 404, "unknown dataset; use pipeline.dataset", w);
        return true;
    }
    struct adminjob *j = fr_http_req_alloc(req, sizeof(*j));
    memset(j, 0, sizeof(*j));
    j->w = w;
    j->req = req;
    j->p = p;
    j->ds = ds;
    j->restore = restore;
    if (restore) {
        j->body = fr_http_req_body(req, &j->len);
        if (j->len == 0) {
            fr_api_respond_detail(NULL, req, 422, "send the Avro file as the request body", w);
            return true;
        }
    }
    if (uv_queue_work(&w->app->loop, &j->work, admin_work, admin_done) != 0) {
        fr_api_respond_detail(NULL, req, 503, "busy; retry", w);
        return true;
    }
    w->inflight++;
    return true;
}
