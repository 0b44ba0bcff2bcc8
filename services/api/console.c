/* console: serves the embedded /console page and its files (see console.h). */
#include "console.h"

#include <string.h>

static const struct {
    const char *path;
    const char *ctype;
    const char *data;
    const char *end;
    bool immutable; /* the library: cached a day */
} files[] = {
    {"/console", "text/html; charset=utf-8", fr__console_html, fr__console_html_end, false},
    {"/console/", "text/html; charset=utf-8", fr__console_html, fr__console_html_end, false},
    {"/console/console.js", "application/javascript; charset=utf-8", fr__console_js, fr__console_js_end, false},
    {"/console/console.css", "text/css; charset=utf-8", fr__console_css, fr__console_css_end, false},
    {"/console/uplot.js", "application/javascript; charset=utf-8", fr__uplot_js, fr__uplot_js_end, true},
    {"/console/uplot.css", "text/css; charset=utf-8", fr__uplot_css, fr__uplot_css_end, true},
};

bool fr_api_console_path(const char *path)
{
    return strcmp(path, "/console") == 0 || strncmp(path, "/console/", 9) == 0;
}

bool fr_api_console_handle(fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    const char *method = fr_http_req_method(req);

    if (!fr_api_console_path(path))
        return false;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        fr_http_add_header(req, "Allow", "GET, HEAD");
        fr_http_respond_detail(req, 405, "Method Not Allowed");
        return true;
    }
    for (size_t i = 0; i < FR_ARRAY_LEN(files); i++) {
        if (strcmp(path, files[i].path) != 0)
            continue;
        fr_http_add_header(req, "Cache-Control", files[i].immutable ? "public, max-age=86400" : "no-cache");
        fr_http_add_header(req, "X-Content-Type-Options", "nosniff");
        if (files[i].ctype[5] == 'h') /* the page: its own files only */
            fr_http_add_header(req, "Content-Security-Policy",
                               "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'");
        fr_http_respond(req, 200, files[i].ctype, files[i].data, (size_t)(files[i].end - files[i].data));
        return true;
    }
    fr_http_respond_detail(req, 404,
                           "Not Found: the console's files are console.js, console.css, uplot.js and "
                           "uplot.css");
    return true;
}

const char *fr_api_console_pattern(const char *path)
{
    static const char dl[] = "/admin/deadletters/";
    if (strncmp(path, dl, sizeof(dl) - 1) == 0) {
        const char *rest = strchr(path + sizeof(dl) - 1, '/');
        if (!rest)
            return "/admin/deadletters/{dataset}";
        rest = strchr(rest + 1, '/');
        return rest ? "/admin/deadletters/{dataset}/{id}/redrive" : "/admin/deadletters/{dataset}/{id}";
    }
    if (strcmp(path, "/admin/backfills") == 0)
        return "/admin/backfills";
    if (strncmp(path, "/admin/backfills/", 17) == 0)
        return "/admin/backfills/{id}";
    if (strcmp(path, "/admin/series") == 0)
        return "/admin/series";
    if (fr_api_console_path(path))
        return "/console";
    return NULL;
}

#define P_DATASET                                                                                                    \
    "{\"name\":\"dataset\",\"in\":\"path\",\"required\":true,\"description\":\"pipeline.dataset\",\"schema\":{"      \
    "\"type\":\"string\"}}"
#define P_ID                                                                                                         \
    "{\"name\":\"id\",\"in\":\"path\",\"required\":true,\"description\":\"the dead letter's id (MS-SEQ)\","          \
    "\"schema\":{\"type\":\"string\"}}"

void fr_api_console_openapi(struct fr_buf *b)
{
    (void)fr_buf_puts(
        b,
        "\"/console\":{\"get\":{\"operationId\":\"console\",\"x-role\":\"admin\",\"summary\":\"the operator "
        "console (HTML page)\",\"responses\":{\"200\":{\"description\":\"the "
        "page\",\"content\":{\"text/html\":{}}}}}},"
        "\"/admin/deadletters/{dataset}\":{\"get\":{\"operationId\":\"admin_deadletters\",\"x-role\":\"admin\","
        "\"summary\":\"a dataset's dead letters, newest first\",\"parameters\":[" P_DATASET
        ",{\"name\":\"limit\",\"in\":\"query\",\"schema\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":500,"
        "\"default\":50}},{\"name\":\"before\",\"in\":\"query\",\"description\":\"the next of the previous page\","
        "\"schema\":{\"type\":\"string\"}}],\"responses\":{\"200\":{\"description\":\"{dataset, total, items, "
        "next}\"},\"404\":{\"description\":\"unknown dataset\"},\"422\":{\"description\":\"bad limit or "
        "before\"}}}},"
        "\"/admin/deadletters/{dataset}/{id}\":{\"delete\":{\"operationId\":\"admin_deadletter_discard\",\"x-role\":"
        "\"admin\",\"summary\":\"discard one dead letter\",\"parameters\":[" P_DATASET "," P_ID
        "],\"responses\":{\"204\":{\"description\":\"discarded\"},\"404\":{\"description\":\"no such dead "
        "letter\"}}}},"
        "\"/admin/deadletters/{dataset}/{id}/redrive\":{\"post\":{\"operationId\":\"admin_deadletter_redrive\","
        "\"x-role\":\"admin\",\"summary\":\"put one dead letter back into the dataset's stream (the body's row, "
        "else its raw record, else its batch); it leaves the dead letters once queued\",\"parameters\":[" P_DATASET
        "," P_ID
        "],\"requestBody\":{\"required\":false,\"content\":{\"application/json\":{\"schema\":{\"type\":\"object\","
        "\"properties\":{\"row\":{\"type\":\"object\"}}}}}},\"responses\":{\"200\":{\"description\":\"{dataset, id, "
        "batch, entry, rows}\"},\"404\":{\"description\":\"no such dead letter\"},\"422\":{\"description\":\"the "
        "row does not validate\"}}}},"
        "\"/admin/backfills\":{\"post\":{\"operationId\":\"admin_backfill\",\"x-role\":\"admin\",\"summary\":"
        "\"backfill a windowed http_json source over [from, to)\",\"requestBody\":{\"required\":true,\"content\":{"
        "\"application/json\":{\"schema\":{\"type\":\"object\",\"required\":[\"pipeline\",\"source\",\"from\","
        "\"to\"],\"properties\":{\"pipeline\":{\"type\":\"string\"},\"source\":{\"type\":\"string\"},\"from\":{"
        "\"type\":\"string\",\"format\":\"date-time\"},\"to\":{\"type\":\"string\",\"format\":\"date-time\"}}}}}},"
        "\"responses\":{\"202\":{\"description\":\"{id, state, progress}\"},\"422\":{\"description\":\"a member is "
        "missing or wrong\"},\"503\":{\"description\":\"no ingest listens\"}}}},"
        "\"/admin/backfills/{id}\":{\"get\":{\"operationId\":\"admin_backfill_progress\",\"x-role\":\"admin\","
        "\"summary\":\"a backfill's state and progress\",\"parameters\":[{\"name\":\"id\",\"in\":\"path\","
        "\"required\":true,\"schema\":{\"type\":\"string\"}}],\"responses\":{\"200\":{\"description\":\"{id, state, "
        "windows_done, windows_total, rows, percent, reason}\"},\"404\":{\"description\":\"unknown or "
        "expired\"}}}},"
        "\"/admin/series\":{\"get\":{\"operationId\":\"admin_series\",\"x-role\":\"admin\",\"summary\":\"rows/s "
        "and freshness p50/p99 per minute over the last hour\",\"parameters\":[{\"name\":\"dataset\",\"in\":"
        "\"query\",\"schema\":{\"type\":\"string\"}}],\"responses\":{\"200\":{\"description\":\"{minutes, "
        "rows_per_s, batches, freshness_p50_s, freshness_p99_s}\"}}}}");
}
