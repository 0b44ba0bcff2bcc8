/* series: per-minute rows and freshness of loaded batches (see series.h). */
#include "series.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "problem.h"

struct minute {
    int64_t minute; /* unix minute this slot holds, 0 = empty */
    uint64_t rows, batches, n_fresh;
    uint32_t hist[FR_API_SERIES_BUCKETS];
};

struct ds_series {
    char qname[256];
    struct minute slots[FR_API_SERIES_MINUTES];
};

struct fr_api_series {
    struct ds_series *ds; /* owned: one per dataset of the api's pipelines */
    size_t n;
};

unsigned fr_api_series_bucket(uint64_t ms)
{
    if (ms <= 1)
        return 0;
    double b = ceil(3.0 * log2((double)ms));
    return b >= FR_API_SERIES_BUCKETS - 1 ? FR_API_SERIES_BUCKETS - 1 : (unsigned)b;
}

double fr_api_series_bucket_upper_ms(unsigned bucket)
{
    return exp2((double)bucket / 3.0);
}

int64_t fr_api_series_id_ms(const char *id)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    int64_t ms = 0;
    size_t n = strlen(id);

    if (n < 26 || (n > 26 && id[26] != '-'))
        return -1;
    for (size_t i = 0; i < 10; i++) {
        const char *p = strchr(alphabet, id[i]);
        if (!p || id[i] == '\0')
            return -1;
        ms = ms * 32 + (p - alphabet);
    }
    for (size_t i = 10; i < 26; i++)
        if (!strchr(alphabet, id[i]) || id[i] == '\0')
            return -1;
    return ms < ((int64_t)1 << 48) ? ms : -1;
}

static struct fr_api_series *series_of(struct fr_api_worker *w)
{
    if (w->series)
        return w->series;
    struct fr_api_series *s = fr_xcalloc(1, sizeof(*s));
    size_t n = 0;
    for (size_t i = 0; i < w->app->n_pipelines; i++)
        n += w->app->pipelines[i]->n_datasets;
    s->ds = fr_xcalloc(n ? n : 1, sizeof(*s->ds));
    for (size_t i = 0; i < w->app->n_pipelines; i++)
        for (size_t d = 0; d < w->app->pipelines[i]->n_datasets; d++)
            snprintf(s->ds[s->n++].qname, sizeof(s->ds[0].qname), "%s", w->app->pipelines[i]->datasets[d].qname);
    w->series = s;
    return s;
}

static struct minute *slot(struct ds_series *d, int64_t minute)
{
    struct minute *m = &d->slots[minute % FR_API_SERIES_MINUTES];
    if (m->minute != minute) {
        memset(m, 0, sizeof(*m));
        m->minute = minute;
    }
    return m;
}

void fr_api_series_on_event(struct fr_api_worker *w, const char *payload, size_t len)
{
    static const char want[] = "{\"type\":\"batch.loaded\"";
    if (len < sizeof(want) - 1 || memcmp(payload, want, sizeof(want) - 1) != 0)
        return;
    json_t *e = json_loadb(payload, len, 0, NULL);
    const char *qname = json_string_value(json_object_get(e, "dataset"));
    const char *batch = json_string_value(json_object_get(e, "batch"));
    const char *commit = json_string_value(json_object_get(e, "commit_time"));
    json_t *loaded = json_object_get(e, "loaded");
    struct fr_api_series *s = series_of(w);
    int64_t now_us = fr_wall_us(), commit_us;

    for (size_t i = 0; qname && i < s->n; i++) {
        if (strcmp(s->ds[i].qname, qname) != 0)
            continue;
        if (!commit || !fr_parse_timestamp(commit, strlen(commit), &commit_us))
            commit_us = now_us;
        struct minute *m = slot(&s->ds[i], commit_us / 60000000);
        m->batches++;
        m->rows += json_is_integer(loaded) ? (uint64_t)json_integer_value(loaded)
                                           : (uint64_t)json_integer_value(json_object_get(e, "rows"));
        int64_t id_ms = batch ? fr_api_series_id_ms(batch) : -1;
        int64_t fresh_ms = id_ms >= 0 ? commit_us / 1000 - id_ms : -1;
        if (fresh_ms >= 0 && fresh_ms < (int64_t)7 * 86400 * 1000) {
            m->hist[fr_api_series_bucket((uint64_t)fresh_ms)]++;
            m->n_fresh++;
        }
        break;
    }
    json_decref(e);
}

static json_t *quantile(const uint32_t *hist, uint64_t n, double q)
{
    if (n == 0)
        return json_null();
    uint64_t rank = (uint64_t)ceil(q * (double)n), seen = 0;
    for (unsigned b = 0; b < FR_API_SERIES_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= rank && hist[b] > 0)
            return json_real(fr_api_series_bucket_upper_ms(b) / 1000.0);
    }
    return json_null();
}

bool fr_api_series_route(struct fr_api_worker *w, fr_http_req_t *req)
{
    if (strcmp(fr_http_req_path(req), "/admin/series") != 0)
        return false;
    if (strcmp(fr_http_req_method(req), "GET") != 0) {
        fr_http_add_header(req, "Allow", "GET");
        fr_http_respond_detail(req, 405, "Method Not Allowed");
        return true;
    }
    struct fr_api_series *s = series_of(w);
    const char *only = fr_http_req_param(req, "dataset");
    bool found = only == NULL;
    for (size_t i = 0; only && i < s->n; i++)
        found = found || strcmp(s->ds[i].qname, only) == 0;
    if (!found) {
        fr_problem_one(&w->out, "query", "dataset", "unknown dataset: name it pipeline.dataset", "value_error");
        fr_http_respond_json(req, 422, &w->out);
        return true;
    }
    int64_t now_min = fr_wall_us() / 60000000;
    json_t *minutes = json_array(), *rps = json_array(), *batches = json_array(), *p50 = json_array(),
           *p99 = json_array();
    for (int64_t mi = now_min - FR_API_SERIES_MINUTES + 1; mi <= now_min; mi++) {
        uint32_t hist[FR_API_SERIES_BUCKETS] = {0};
        uint64_t rows = 0, nb = 0, nf = 0;
        for (size_t i = 0; i < s->n; i++) {
            if (only && strcmp(s->ds[i].qname, only) != 0)
                continue;
            const struct minute *m = &s->ds[i].slots[mi % FR_API_SERIES_MINUTES];
            if (m->minute != mi)
                continue;
            rows += m->rows;
            nb += m->batches;
            nf += m->n_fresh;
            for (unsigned b = 0; b < FR_API_SERIES_BUCKETS; b++)
                hist[b] += m->hist[b];
        }
        json_array_append_new(minutes, json_integer((json_int_t)(mi * 60)));
        /* the current minute is not over: its rate is over the seconds so far */
        double secs = mi == now_min ? (double)(fr_wall_us() / 1000000 - mi * 60) + 1 : 60.0;
        json_array_append_new(rps, nb ? json_real((double)rows / secs) : json_null());
        json_array_append_new(batches, json_integer((json_int_t)nb));
        json_array_append_new(p50, quantile(hist, nf, 0.5));
        json_array_append_new(p99, quantile(hist, nf, 0.99));
    }
    json_t *o = json_pack("{s:o,s:o,s:o,s:o,s:o}", "minutes", minutes, "rows_per_s", rps, "batches", batches,
                          "freshness_p50_s", p50, "freshness_p99_s", p99);
    if (only)
        json_object_set_new(o, "dataset", json_string(only));
    char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fr_http_respond(req, 200, "application/json", txt, txt ? strlen(txt) : 0);
    free(txt);
    json_decref(o);
    return true;
}

void fr_api_series_free(struct fr_api_series *s)
{
    if (!s)
        return;
    free(s->ds);
    free(s);
}
