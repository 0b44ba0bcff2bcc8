/* series: per-minute rows and freshness of loaded batches (see series.h). */
#include "series.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "freshness.h"
#include "problem.h"

struct ds_series {
    char qname[256];
    struct fr_fresh_ring ring;
};

/* A route that answered data older than its max_age (route.stale). */
struct stale {
    char pipeline[128], route[128], path[256];
    int64_t age_s, max_age_s;
    int64_t at_us; /* when the event came, 0 = free */
};

struct fr_api_series {
    struct ds_series *ds; /* owned: one per dataset of the api's pipelines */
    size_t n;
    struct stale stale[FR_API_SERIES_STALE];
};

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

/* Remembers a route.stale: the route's slot, else a free or the oldest one. */
static void on_stale(struct fr_api_series *s, json_t *e)
{
    const char *pl = json_string_value(json_object_get(e, "pipeline"));
    const char *route = json_string_value(json_object_get(e, "route"));
    const char *path = json_string_value(json_object_get(e, "path"));
    struct stale *slot = NULL;

    if (!pl || !path)
        return;
    for (size_t i = 0; i < FR_API_SERIES_STALE && !slot; i++)
        if (s->stale[i].at_us && strcmp(s->stale[i].pipeline, pl) == 0 && strcmp(s->stale[i].path, path) == 0)
            slot = &s->stale[i];
    for (size_t i = 0; i < FR_API_SERIES_STALE && !slot; i++)
        if (!s->stale[i].at_us)
            slot = &s->stale[i];
    if (!slot) {
        slot = &s->stale[0];
        for (size_t i = 1; i < FR_API_SERIES_STALE; i++)
            if (s->stale[i].at_us < slot->at_us)
                slot = &s->stale[i];
    }
    snprintf(slot->pipeline, sizeof(slot->pipeline), "%s", pl);
    snprintf(slot->route, sizeof(slot->route), "%s", route ? route : "");
    snprintf(slot->path, sizeof(slot->path), "%s", path);
    slot->age_s = (int64_t)json_integer_value(json_object_get(e, "age_s"));
    slot->max_age_s = (int64_t)json_integer_value(json_object_get(e, "max_age_s"));
    slot->at_us = fr_wall_us();
}

void fr_api_series_on_event(struct fr_api_worker *w, const char *payload, size_t len)
{
    static const char want[] = "{\"type\":\"batch.loaded\"";
    static const char stale[] = "{\"type\":\"route.stale\"";
    if (len >= sizeof(stale) - 1 && memcmp(payload, stale, sizeof(stale) - 1) == 0) {
        json_t *e = json_loadb(payload, len, 0, NULL);
        on_stale(series_of(w), e);
        json_decref(e);
        return;
    }
    if (len < sizeof(want) - 1 || memcmp(payload, want, sizeof(want) - 1) != 0)
        return;
    json_t *e = json_loadb(payload, len, 0, NULL);
    const char *qname = json_string_value(json_object_get(e, "dataset"));
    const char *batch = json_string_value(json_object_get(e, "batch"));
    const char *commit = json_string_value(json_object_get(e, "commit_time"));
    json_t *loaded = json_object_get(e, "loaded");
    struct fr_api_series *s = series_of(w);
    int64_t commit_us;

    for (size_t i = 0; qname && i < s->n; i++) {
        if (strcmp(s->ds[i].qname, qname) != 0)
            continue;
        if (!commit || !fr_parse_timestamp(commit, strlen(commit), &commit_us))
            commit_us = fr_wall_us();
        uint64_t rows = json_is_integer(loaded) ? (uint64_t)json_integer_value(loaded)
                                                : (uint64_t)json_integer_value(json_object_get(e, "rows"));
        int64_t id_ms = batch ? fr_fresh_id_ms(batch) : -1;
        int64_t fresh_ms = id_ms >= 0 ? commit_us / 1000 - id_ms : -1;
        if (fresh_ms > (int64_t)7 * 86400 * 1000) /* not a claim time: left out */
            fresh_ms = -1;
        fr_fresh_add(&s->ds[i].ring, commit_us / 60000000, rows, fresh_ms);
        break;
    }
    json_decref(e);
}

static json_t *seconds_or_null(double s)
{
    return s < 0 ? json_null() : json_real(s);
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
    int64_t now_us = fr_wall_us(), now_min = now_us / 60000000;
    json_t *minutes = json_array(), *rps = json_array(), *batches = json_array(), *p50 = json_array(),
           *p99 = json_array();
    for (int64_t mi = now_min - FR_FRESH_MINUTES + 1; mi <= now_min; mi++) {
        struct fr_fresh_minute sum;
        memset(&sum, 0, sizeof(sum));
        for (size_t i = 0; i < s->n; i++)
            if (!only || strcmp(s->ds[i].qname, only) == 0)
                (void)fr_fresh_sum(&s->ds[i].ring, mi, &sum);
        /* the current minute is not over: its rate is over the seconds so far */
        double secs = mi == now_min ? (double)(now_us / 1000000 - mi * 60) + 1 : 60.0;
        json_array_append_new(minutes, json_integer((json_int_t)(mi * 60)));
        json_array_append_new(rps, sum.batches ? json_real((double)sum.rows / secs) : json_null());
        json_array_append_new(batches, json_integer((json_int_t)sum.batches));
        json_array_append_new(p50, seconds_or_null(fr_fresh_quantile_s(&sum, 0.5)));
        json_array_append_new(p99, seconds_or_null(fr_fresh_quantile_s(&sum, 0.99)));
    }
    json_t *o = json_pack("{s:o,s:o,s:o,s:o,s:o}", "minutes", minutes, "rows_per_s", rps, "batches", batches,
                          "freshness_p50_s", p50, "freshness_p99_s", p99);
    if (only)
        json_object_set_new(o, "dataset", json_string(only));
    json_t *st = json_array();
    for (size_t i = 0; i < FR_API_SERIES_STALE; i++) {
        const struct stale *x = &s->stale[i];
        if (!x->at_us || now_us - x->at_us > (int64_t)FR_API_SERIES_STALE_S * 1000000)
            continue;
        char at[40];
        fr_format_timestamp(x->at_us, at);
        json_array_append_new(st, json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "pipeline", x->pipeline, "route", x->route,
                                            "path", x->path, "age_s", (json_int_t)x->age_s, "max_age_s",
                                            (json_int_t)x->max_age_s, "at", at));
    }
    json_object_set_new(o, "stale_routes", st);
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
