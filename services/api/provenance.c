/* provenance: GET /v1/provenance/{cache}/{key} (see provenance.h). One
 * statement builds the whole answer in PostgreSQL: the model row (the
 * value the cache serves), the ledger rows of the model's input datasets
 * that touched the key (the loader records a batch's keys when there are
 * few; a batch of many keys, or one loaded before keys were recorded, is
 * listed with "keys_known": false), and the model's version. */
#include "provenance.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "problem.h"

#define PREFIX    "/v1/provenance/"
#define TS_FORMAT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
#define MAX_KEY   256

struct pq {
    struct fr_api_worker *w;
    fr_http_req_t *req;
};

static void answer_detail(struct fr_api_worker *w, fr_http_req_t *req, int status, const char *msg)
{
    fr_problem_detail(&w->out, msg, strlen(msg));
    fr_http_respond(req, status, "application/json", w->out.data, w->out.len);
}

static void on_answer(fr_pg_t *pg, PGresult *res, void *data)
{
    struct pq *q = data;
    (void)pg;
    q->w->inflight--;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res)
            fr_warn("provenance: %s", PQresultErrorMessage(res));
        answer_detail(q->w, q->req, 503, "PostgreSQL unavailable: cannot read the batch ledger; retry");
        return;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        answer_detail(q->w, q->req, 404, "no such key in this cache");
        return;
    }
    fr_http_respond(q->req, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
}

/* The statement for cache c of p: $1 key, $2 cache name, $3 the input
 * datasets (text[]), $4 the model's (or dataset's) qname. */
static void build_sql(struct fr_buf *s, const char *table, const char *key_col)
{
    (void)fr_buf_puts(s, "SELECT json_build_object('cache', $2::text, 'key', $1::text, 'value', v.value, "
                         "'model', (SELECT json_build_object('name', x.name, 'version', x.version, 'refreshed_at', "
                         "to_char(x.refreshed_at AT TIME ZONE 'UTC', " TS_FORMAT
                         ")) FROM freshet.versions x WHERE x.name = $4), "
                         "'batches', COALESCE((SELECT json_agg(json_build_object('batch', b.batch_id, 'dataset', "
                         "b.dataset, 'rows', b.rows, 'loaded_at', to_char(b.loaded_at AT TIME ZONE 'UTC', " TS_FORMAT
                         "), 'raw', CASE WHEN b.raw_path IS NULL THEN NULL ELSE json_build_object('path', "
                         "b.raw_path, 'sha256', b.raw_sha256) END, 'keys_known', b.keys IS NOT NULL) "
                         "ORDER BY b.loaded_at DESC, b.batch_id DESC) FROM (SELECT * FROM freshet.batches "
                         "WHERE dataset = ANY ($3::text[]) AND (keys IS NULL OR $1 = ANY (keys)) "
                         "ORDER BY loaded_at DESC, batch_id DESC LIMIT ");
    (void)fr_buf_printf(s, "%d", FR_PROVENANCE_BATCHES);
    (void)fr_buf_puts(s, ") b), '[]'::json))::text FROM (SELECT to_jsonb(t) AS value FROM ");
    (void)fr_buf_puts(s, table); /* the config's schema.table, validated identifiers */
    (void)fr_buf_puts(s, " t WHERE t.");
    fr_buf_sql_ident(s, key_col);
    (void)fr_buf_puts(s, "::text = $1) v");
}

static void array_literal(struct fr_buf *b, const char *pipeline, const char *const *names, size_t n)
{
    (void)fr_buf_putc(b, '{');
    for (size_t i = 0; i < n; i++)
        (void)fr_buf_printf(b, "%s\"%s.%s\"", i ? "," : "", pipeline, names[i]);
    (void)fr_buf_putc(b, '}');
}

bool fr_api_provenance_route(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    if (strncmp(path, PREFIX, sizeof(PREFIX) - 1) != 0)
        return false;
    if (strcmp(fr_http_req_method(req), "GET") != 0) {
        fr_http_add_header(req, "Allow", "GET");
        answer_detail(w, req, 405, "Method Not Allowed");
        return true;
    }
    const char *rest = path + sizeof(PREFIX) - 1, *slash = strchr(rest, '/');
    if (!slash || slash == rest || slash[1] == '\0' || strchr(slash + 1, '/')) {
        answer_detail(w, req, 404, "use /v1/provenance/{cache}/{key}");
        return true;
    }
    char cache[128], key[MAX_KEY + 1];
    size_t cl = (size_t)(slash - rest);
    size_t kl = fr_http_pct_decode(slash + 1, strlen(slash + 1), key, MAX_KEY);
    if (cl >= sizeof(cache) || kl == 0 || kl > MAX_KEY || memchr(key, '\0', kl)) {
        answer_detail(w, req, 404, "no such cache or key (a key is 1..256 bytes)");
        return true;
    }
    memcpy(cache, rest, cl);
    cache[cl] = '\0';
    key[kl] = '\0';

    const struct fr_pipeline *p = NULL;
    const struct fr_cache *c = NULL;
    for (size_t i = 0; i < w->app->n_pipelines && !c; i++)
        if ((c = fr_pipeline_cache(w->app->pipelines[i], cache)))
            p = w->app->pipelines[i];
    if (!c) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unknown cache '%.100s'", cache);
        answer_detail(w, req, 404, msg);
        return true;
    }
    const struct fr_model *m = fr_pipeline_model(p, c->model);
    const struct fr_dataset *ds = m ? NULL : fr_pipeline_dataset(p, c->model);
    if (!m && !ds) {
        answer_detail(w, req, 404, "this cache is filled from neither a model nor a dataset");
        return true;
    }
    struct fr_buf sql, inputs;
    fr_buf_init(&sql, 0);
    fr_buf_init(&inputs, 0);
    build_sql(&sql, m ? m->table : ds->table, c->key_column);
    if (m)
        array_literal(&inputs, p->name, (const char *const *)m->inputs, m->n_inputs);
    else
        array_literal(&inputs, p->name, (const char *const *)&ds->name, 1);
    char *qname = fr_xasprintf("%s.%s", p->name, c->model);
    const char *params[4] = {key, c->name, inputs.data, qname};
    struct pq *q = fr_http_req_alloc(req, sizeof(*q));
    q->w = w;
    q->req = req;
    fr_pg_t *pg = w->app->pg;
    int rc = pg && fr_pg_connected(pg) ? fr_pg_query(pg, sql.data, 4, params, NULL, on_answer, q) : -ENOTCONN;
    free(qname);
    fr_buf_deinit(&sql);
    fr_buf_deinit(&inputs);
    if (rc != 0)
        answer_detail(w, req, 503, "PostgreSQL unavailable: cannot read the batch ledger; retry");
    else
        w->inflight++;
    return true;
}
