/* openapi: the OpenAPI 3.1 document of every configured route (sql,
 * static, cache, crud, push sources) and the built-in ones, rendered from
 * the pipelines (engine.h: fr_api_openapi). Pure: no I/O. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "console.h"
#include "engine.h"
#include "status.h"

/* ---------------------------------------------------------------- openapi */

static const char *oa_type(enum fr_type t)
{
    switch (t) {
    case FR_T_INT:
    case FR_T_BIGINT:
        return "integer";
    case FR_T_FLOAT:
    case FR_T_NUMERIC:
        return "number";
    case FR_T_BOOL:
        return "boolean";
    default:
        return "string";
    }
}

static void oa_str(struct fr_buf *b, const char *s)
{
    (void)fr_buf_json_str(b, s, strlen(s));
}

static void oa_route(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_route *r, bool auth)
{
    char lower[8];
    size_t i = 0;
    for (; r->method[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)(r->method[i] + ('a' - 'A'));
    lower[i] = '\0';
    oa_str(b, lower);
    (void)fr_buf_puts(b, ":{\"operationId\":");
    char op[160];
    snprintf(op, sizeof(op), "%s.%s", p->name, r->name);
    oa_str(b, op);
    (void)fr_buf_puts(b, ",\"tags\":[");
    oa_str(b, p->name);
    (void)fr_buf_puts(b, "],\"summary\":");
    oa_str(b, r->summary ? r->summary : r->name);
    (void)fr_buf_puts(b, ",\"x-role\":");
    oa_str(b, r->role);
    if (auth)
        (void)fr_buf_puts(b, ",\"security\":[{\"bearer\":[]}]");
    (void)fr_buf_puts(b, ",\"parameters\":[");
    for (size_t k = 0; k < r->n_params; k++) {
        const struct fr_route_param *q = &r->params[k];
        if (k)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_puts(b, "{\"name\":");
        oa_str(b, q->name);
        (void)fr_buf_printf(b, ",\"in\":\"%s\",\"required\":%s,\"schema\":{\"type\":\"%s\"",
                            q->in == FR_PARAM_PATH ? "path" : "query", q->required ? "true" : "false",
                            oa_type(q->type));
        if (q->type == FR_T_TIMESTAMPTZ)
            (void)fr_buf_puts(b, ",\"format\":\"date-time\",\"description\":\"ISO-8601 or epoch milliseconds\"");
        if (q->type == FR_T_DATE)
            (void)fr_buf_puts(b, ",\"format\":\"date\"");
        if (q->has_min)
            (void)fr_buf_printf(b, ",\"minimum\":%" PRId64, q->min);
        if (q->has_max)
            (void)fr_buf_printf(b, ",\"maximum\":%" PRId64, q->max);
        if (q->pattern) {
            (void)fr_buf_puts(b, ",\"pattern\":");
            oa_str(b, q->pattern);
        }
        if (q->n_allowed) {
            (void)fr_buf_puts(b, ",\"enum\":[");
            for (size_t a = 0; a < q->n_allowed; a++) {
                if (a)
                    (void)fr_buf_putc(b, ',');
                oa_str(b, q->allowed[a]);
            }
            (void)fr_buf_putc(b, ']');
        }
        if (q->def && strcmp(q->def, "now_year") != 0 && strcmp(q->def, "now") != 0) {
            (void)fr_buf_puts(b, ",\"default\":");
            if (q->type == FR_T_INT || q->type == FR_T_BIGINT)
                (void)fr_buf_puts(b, q->def);
            else
                oa_str(b, q->def);
        }
        (void)fr_buf_puts(b, "}}");
    }
    (void)fr_buf_putc(b, ']');
    if (r->handler == FR_RH_PUSH || r->handler == FR_RH_CACHE_MULTI)
        (void)fr_buf_puts(b, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":{}}"
                             "}}");
    (void)fr_buf_puts(b, ",\"responses\":{");
    if (r->handler == FR_RH_PUSH)
        (void)fr_buf_puts(b, "\"201\":{\"description\":\"loaded\"},\"202\":{\"description\":\"accepted; see "
                             "Location\"}");
    else {
        (void)fr_buf_puts(b, "\"200\":{\"description\":\"OK\",\"content\":{");
        if (r->json)
            (void)fr_buf_puts(b, "\"application/json\":{\"schema\":{}}");
        if (r->csv)
            (void)fr_buf_puts(b, r->json ? ",\"text/csv\":{\"schema\":{\"type\":\"string\"}}"
                                         : "\"text/csv\":{\"schema\":{\"type\":\"string\"}}");
        (void)fr_buf_puts(b, "}}");
    }
    (void)fr_buf_puts(b, ",\"404\":{\"description\":\"Not found\"},\"422\":{\"description\":\"Validation "
                         "error\",\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/"
                         "HTTPValidationError\"}}}}}}");
}

/* One operation of a crud resource. */
static void oa_op(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_route *r, const char *method,
                  const char *op, const char *summary, const char *role, bool id, bool body, const char *ok,
                  bool auth)
{
    char name[160];
    snprintf(name, sizeof(name), "%s.%s_%s", p->name, r->name, op);
    (void)fr_buf_printf(b, "\"%s\":{\"operationId\":", method);
    oa_str(b, name);
    (void)fr_buf_puts(b, ",\"tags\":[");
    oa_str(b, p->name);
    (void)fr_buf_puts(b, "],\"summary\":");
    oa_str(b, summary);
    (void)fr_buf_puts(b, ",\"x-role\":");
    oa_str(b, role);
    if (auth)
        (void)fr_buf_puts(b, ",\"security\":[{\"bearer\":[]}]");
    (void)fr_buf_puts(b, ",\"parameters\":[");
    if (id)
        (void)fr_buf_puts(b, "{\"name\":\"id\",\"in\":\"path\",\"required\":true,\"schema\":{\"type\":\"integer\"}}");
    else if (strcmp(op, "list") == 0)
        (void)fr_buf_puts(b, "{\"name\":\"limit\",\"in\":\"query\",\"required\":false,\"schema\":{\"type\":"
                             "\"integer\",\"minimum\":1,\"maximum\":1000,\"default\":10}},{\"name\":\"offset\","
                             "\"in\":\"query\",\"required\":false,\"schema\":{\"type\":\"integer\",\"minimum\":0,"
                             "\"default\":0}},{\"name\":\"cursor\",\"in\":\"query\",\"required\":false,"
                             "\"description\":\"start after this key (keyset; the Link of a cursor page carries "
                             "the next)\",\"schema\":{\"type\":\"integer\"}}");
    (void)fr_buf_putc(b, ']');
    if (body)
        (void)fr_buf_puts(b, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":{}}"
                             ",\"text/csv\":{\"schema\":{\"type\":\"string\"}}}}");
    (void)fr_buf_printf(b,
                        ",\"responses\":{\"%s\":{\"description\":\"OK\"},\"404\":{\"description\":\"unknown "
                        "id\"},\"410\":{\"description\":\"deleted\"},\"409\":{\"description\":\"a unique value "
                        "held by another row\"},\"400\":{\"description\":\"a reference to a missing row\"},"
                        "\"422\":{\"description\":\"Validation error\"}}}",
                        ok);
}

/* A crud route is three paths: P, P/{id}, P/bulk. */
static void oa_crud(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_route *r, bool auth)
{
    char path[600];
    oa_str(b, r->path);
    (void)fr_buf_puts(b, ":{");
    oa_op(b, p, r, "get", "list", "List (limit/offset or cursor; Link rel=next)", r->role, false, false, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "post", "create", "Create one row (201; an equal row is returned, a deleted one reactivated)",
          r->role_write, false, true, "201", auth);
    (void)fr_buf_puts(b, "},");
    snprintf(path, sizeof(path), "%s/{id}", r->path);
    oa_str(b, path);
    (void)fr_buf_puts(b, ":{");
    oa_op(b, p, r, "get", "get", "One row", r->role, true, false, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "put", "replace", "Replace a row", r->role_write, true, true, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "patch", "update", "Update some fields of a row", r->role_write, true, true, "200", auth);
    (void)fr_buf_putc(b, ',');
    oa_op(b, p, r, "delete", "delete", "Delete (soft; X-Soft-Delete: false for good)", r->role_write, true, false,
          "204", auth);
    (void)fr_buf_puts(b, "},");
    snprintf(path, sizeof(path), "%s/bulk", r->path);
    oa_str(b, path);
    (void)fr_buf_puts(b, ":{");
    oa_op(b, p, r, "post", "bulk", "1 to 1000 rows, JSON array or CSV: {inserted, rejected}", r->role_write, false,
          true, "201", auth);
    (void)fr_buf_putc(b, '}');
}

/* POST /v1/push/{pipeline}/{dataset} of a push source (push.c). */
static void oa_push(struct fr_buf *b, const struct fr_pipeline *p, const struct fr_source *src, bool auth)
{
    char path[300], op[200];
    snprintf(path, sizeof(path), "/v1/push/%s/%s", p->name, src->dataset);
    snprintf(op, sizeof(op), "%s.push_%s", p->name, src->dataset);
    oa_str(b, path);
    (void)fr_buf_puts(b, ":{\"post\":{\"operationId\":");
    oa_str(b, op);
    (void)fr_buf_puts(b, ",\"tags\":[");
    oa_str(b, p->name);
    (void)fr_buf_puts(b, "],\"summary\":\"Rows of ");
    (void)fr_buf_puts(b, src->dataset);
    (void)fr_buf_puts(b, " (JSON object or array, or CSV with a header) as one batch; waits for it to load\","
                         "\"x-role\":\"write\"");
    if (auth)
        (void)fr_buf_puts(b, ",\"security\":[{\"bearer\":[]}]");
    (void)fr_buf_puts(b, ",\"parameters\":[{\"name\":\"partial\",\"in\":\"query\",\"required\":false,"
                         "\"description\":\"load the valid rows and list the rejected ones\",\"schema\":{"
                         "\"type\":\"boolean\",\"default\":false}}],\"requestBody\":{\"required\":true,"
                         "\"content\":{\"application/json\":{\"schema\":{}},\"text/csv\":{\"schema\":{"
                         "\"type\":\"string\"}}}},\"responses\":{\"201\":{\"description\":\"loaded\"},"
                         "\"202\":{\"description\":\"accepted; see Location\"},\"413\":{\"description\":"
                         "\"body too large\"},\"415\":{\"description\":\"not JSON or CSV\"},\"422\":{"
                         "\"description\":\"Validation error\",\"content\":{\"application/json\":{\"schema\":{"
                         "\"$ref\":\"#/components/schemas/HTTPValidationError\"}}}},\"503\":{\"description\":"
                         "\"Redis unavailable; retry\"}}}}");
}

void fr_api_openapi(const struct fr_pipeline *const *ps, size_t n, bool auth, struct fr_buf *b)
{
    (void)fr_buf_puts(b, "{\"openapi\":\"3.1.0\",\"info\":{\"title\":\"freshet\",\"version\":\"" FR_VERSION
                         "\"},\"paths\":{");
    bool first_path = true;
    /* group by path: every method of a path inside one object */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ps[i]->n_routes; j++) {
            const struct fr_route *r = &ps[i]->routes[j];
            if (r->handler == FR_RH_CRUD)
                continue; /* below */
            bool seen = false;
            for (size_t i2 = 0; i2 <= i && !seen; i2++)
                for (size_t j2 = 0; j2 < (i2 == i ? j : ps[i2]->n_routes) && !seen; j2++)
                    seen = strcmp(ps[i2]->routes[j2].path, r->path) == 0;
            if (seen)
                continue;
            if (!first_path)
                (void)fr_buf_putc(b, ',');
            first_path = false;
            oa_str(b, r->path);
            (void)fr_buf_puts(b, ":{");
            bool first_m = true;
            for (size_t i2 = i; i2 < n; i2++)
                for (size_t j2 = (i2 == i ? j : 0); j2 < ps[i2]->n_routes; j2++) {
                    if (strcmp(ps[i2]->routes[j2].path, r->path) != 0)
                        continue;
                    if (!first_m)
                        (void)fr_buf_putc(b, ',');
                    first_m = false;
                    oa_route(b, ps[i2], &ps[i2]->routes[j2], auth);
                }
            (void)fr_buf_putc(b, '}');
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ps[i]->n_routes; j++) {
            const struct fr_route *r = &ps[i]->routes[j];
            if (r->handler != FR_RH_CRUD)
                continue;
            if (!first_path)
                (void)fr_buf_putc(b, ',');
            first_path = false;
            oa_crud(b, ps[i], r, auth);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ps[i]->n_sources; j++) {
            if (ps[i]->sources[j].kind != FR_SRC_PUSH)
                continue;
            if (!first_path)
                (void)fr_buf_putc(b, ',');
            first_path = false;
            oa_push(b, ps[i], &ps[i]->sources[j], auth);
        }
    }
    if (!first_path)
        (void)fr_buf_putc(b, ',');
    fr_api_status_openapi(b); /* status.c: /v1/status, /v1/changes */
    (void)fr_buf_puts(
        b, "\"/healthz\":{\"get\":{\"operationId\":\"healthz\",\"summary\":\"alive\",\"responses\":{\"200\":{"
           "\"description\":\"OK\"}}}},"
           "\"/readyz\":{\"get\":{\"operationId\":\"readyz\",\"summary\":\"Redis and PostgreSQL "
           "reachable\",\"responses\":{\"200\":{\"description\":\"OK\"},\"503\":{\"description\":\"not "
           "ready\"}}}},"
           "\"/v1/batches/{id}\":{\"get\":{\"operationId\":\"batch_status\",\"x-role\":\"read\",\"summary\":\"state "
           "of a "
           "write's batch\",\"parameters\":[{\"name\":\"id\",\"in\":\"path\",\"required\":true,\"schema\":{"
           "\"type\":\"string\"}}],\"responses\":{\"200\":{\"description\":\"OK\"},\"404\":{"
           "\"description\":\"unknown\"}}}},"
           "\"/v1/provenance/{cache}/{key}\":{\"get\":{\"operationId\":\"provenance\",\"x-role\":\"read\","
           "\"summary\":\"the value a cache serves for a key, the batches behind it (ids, landed raw files with "
           "sha256) and the model refresh that computed it\",\"parameters\":[{\"name\":\"cache\",\"in\":\"path\","
           "\"required\":true,\"schema\":{\"type\":\"string\"}},{\"name\":\"key\",\"in\":\"path\",\"required\":"
           "true,\"schema\":{\"type\":\"string\"}}],\"responses\":{\"200\":{\"description\":\"OK\"},\"404\":{"
           "\"description\":\"unknown cache or key\"}}}},"
           "\"/admin/backup/{dataset}\":{\"post\":{\"operationId\":\"admin_backup\",\"x-role\":\"admin\","
           "\"summary\":\"write pipeline.dataset to FRESHET_DATA_DIR/backups/ as Avro; answers the file "
           "name\",\"parameters\":[{\"name\":\"dataset\",\"in\":\"path\",\"required\":true,\"schema\":{"
           "\"type\":\"string\"}}],\"responses\":{\"201\":{\"description\":\"written\"},\"404\":{"
           "\"description\":\"unknown dataset\"}}}},"
           "\"/admin/restore/{dataset}\":{\"post\":{\"operationId\":\"admin_restore\",\"x-role\":\"admin\","
           "\"summary\":\"replace pipeline.dataset with the Avro body (a corrupt or mismatched file changes "
           "nothing)\",\"parameters\":[{\"name\":\"dataset\",\"in\":\"path\",\"required\":true,\"schema\":{"
           "\"type\":\"string\"}}],\"requestBody\":{\"required\":true,\"content\":{\"application/"
           "octet-stream\":{\"schema\":{\"type\":\"string\",\"format\":\"binary\"}}}},\"responses\":{"
           "\"200\":{\"description\":\"restored\"},\"422\":{\"description\":\"corrupt or mismatched\"},"
           "\"404\":{\"description\":\"unknown dataset\"}}}},");
    fr_api_console_openapi(b);
    (void)fr_buf_puts(b,
                      "},\"components\":{\"schemas\":{\"HTTPValidationError\":{\"type\":\"object\",\"properties\":{"
                      "\"detail\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"loc\":{"
                      "\"type\":\"array\"},\"msg\":{\"type\":\"string\"},\"type\":{\"type\":\"string\"}}}}}}}");
    if (auth)
        (void)fr_buf_puts(b, ",\"securitySchemes\":{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\"}}");
    (void)fr_buf_puts(b, "}}");
}
