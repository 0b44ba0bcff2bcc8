/* status: the loader's members of its status JSON (status.h). Counters come
 * from the metrics the loader keeps (rows, batches) and from the events it
 * publishes (times, durations, keys); a ring of samples taken at each write
 * gives the rows per minute. Owns its arrays and the dstatus writer. */
#include "status.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dstatus.h"
#include "loader_int.h"

#define RING 13 /* samples, one per status write (5 s): a minute and one */

struct ds_stat {
    int64_t last_load_us; /* wall, 0 = none since start */
    uint64_t ring_rows[RING];
    uint64_t ring_ms[RING];
    size_t ring_n, ring_i;
};

struct model_stat {
    int64_t last_us; /* wall, 0 = none since start */
    double ms;
    int64_t keys; /* rows changed by the last refresh */
    bool all;
    uint64_t refreshes;
    uint64_t test_failures; /* refreshes held back by a failing data test, since start */
    int64_t failed_us;      /* the last one, wall; 0 = none */
    char *failing;          /* owned or NULL: its tests' JSON array; cleared by the next refresh */
};

struct cache_stat {
    int64_t last_us;
    int64_t keys; /* keys written by the last write, -1 = all (a resync) */
    uint64_t writes;
};

struct fr_ldstatus {
    struct loader *ld;    /* borrowed */
    fr_dstatus_t *writer; /* owned until stopped */
    struct ds_stat *ds;   /* owned: one per ld->streams */
    struct model_stat *models;
    struct cache_stat *caches;
};

static void put_ts(struct fr_buf *b, const char *name, int64_t us)
{
    char ts[32];
    if (!us) {
        (void)fr_buf_printf(b, ",\"%s\":null", name);
        return;
    }
    fr_format_timestamp(us, ts);
    (void)fr_buf_printf(b, ",\"%s\":\"%s\"", name, ts);
}

static double per_min(struct ds_stat *d, uint64_t rows, uint64_t now_ms)
{
    size_t oldest;
    double rate = 0;

    /* the oldest sample of the ring, at most a minute back */
    if (d->ring_n > 0) {
        oldest = d->ring_n < RING ? 0 : d->ring_i;
        if (now_ms > d->ring_ms[oldest])
            rate = (double)(rows - d->ring_rows[oldest]) * 60000.0 / (double)(now_ms - d->ring_ms[oldest]);
    }
    d->ring_rows[d->ring_i] = rows;
    d->ring_ms[d->ring_i] = now_ms;
    d->ring_i = (d->ring_i + 1) % RING;
    if (d->ring_n < RING)
        d->ring_n++;
    return rate;
}

static void fill(struct fr_buf *b, void *data)
{
    fr_ldstatus_t *s = data;
    struct loader *ld = s->ld;
    uint64_t now_ms = fr_mono_ms();

    (void)fr_buf_puts(b, ",\"consumer\":");
    (void)fr_buf_json_str(b, ld->consumer, strlen(ld->consumer));
    (void)fr_buf_puts(b, ",\"datasets\":{");
    for (size_t i = 0, n = 0; i < ld->n_streams; i++) {
        const struct ld_stream *st = &ld->streams[i];
        double rate;
        if (st->part != 0)
            continue; /* one entry per dataset: its partitions share the counters (lag: their sum) */
        rate = per_min(&s->ds[i], *st->m_rows, now_ms);
        if (n++)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_json_str(b, st->ds->qname, strlen(st->ds->qname));
        (void)fr_buf_printf(b,
                            ":{\"rows_loaded\":%" PRIu64 ",\"rows_per_min\":%.1f,\"batches_loaded\":%" PRIu64
                            ",\"batches_failed\":%" PRIu64 ",\"batches_dead\":%" PRIu64 ",\"lag\":%" PRId64,
                            *st->m_rows, rate, *st->m_loaded, *st->m_failed, *st->m_dead, *st->m_lag);
        put_ts(b, "last_load_at", s->ds[i].last_load_us);
        (void)fr_buf_putc(b, '}');
    }
    (void)fr_buf_puts(b, "},\"models\":{");
    for (size_t i = 0; i < ld->n_models; i++) {
        const struct ld_model *m = &ld->models[i];
        const struct model_stat *ms = &s->models[i];
        if (i)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_json_str(b, m->state_name, strlen(m->state_name));
        (void)fr_buf_printf(b, ":{\"refreshes\":%" PRIu64, ms->refreshes);
        put_ts(b, "last_refresh_at", ms->last_us);
        if (m->m->kind == FR_MODEL_AGGREGATE)
            (void)fr_buf_printf(b, ",\"aggregate\":true,\"rows_merged\":%" PRId64, ms->last_us ? ms->keys : 0);
        else if (ms->last_us)
            (void)fr_buf_printf(b, ",\"duration_ms\":%.3f,\"keys\":%" PRId64 ",\"full\":%s", ms->ms, ms->keys,
                                ms->all ? "true" : "false");
        (void)fr_buf_printf(b, ",\"pending\":%s", m->all || m->touched.n > 0 ? "true" : "false");
        if (m->m->n_tests > 0 || ms->test_failures > 0) {
            (void)fr_buf_printf(b, ",\"test_failures\":%" PRIu64 ",\"failing_tests\":%s", ms->test_failures,
                                ms->failing ? ms->failing : "[]");
            put_ts(b, "test_failed_at", ms->failed_us);
        }
        (void)fr_buf_putc(b, '}');
    }
    (void)fr_buf_puts(b, "},\"caches\":{");
    for (size_t i = 0; i < ld->n_caches; i++) {
        const struct ld_cache *c = &ld->caches[i];
        const struct cache_stat *cs = &s->caches[i];
        if (i)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_putc(b, '"');
        (void)fr_buf_puts(b, c->p->name);
        (void)fr_buf_putc(b, '.');
        (void)fr_buf_puts(b, c->c->name); /* names are identifiers (config.c) */
        (void)fr_buf_printf(b, "\":{\"writes\":%" PRIu64, cs->writes);
        put_ts(b, "last_write_at", cs->last_us);
        if (cs->last_us && cs->keys >= 0)
            (void)fr_buf_printf(b, ",\"keys\":%" PRId64, cs->keys);
        else if (cs->last_us)
            (void)fr_buf_puts(b, ",\"keys\":\"all\"");
        (void)fr_buf_putc(b, '}');
    }
    (void)fr_buf_putc(b, '}');
}

fr_ldstatus_t *fr_ldstatus_start(struct loader *ld)
{
    fr_ldstatus_t *s = fr_xcalloc(1, sizeof(*s));

    s->ld = ld;
    s->ds = fr_xcalloc(ld->n_streams + 1, sizeof(*s->ds));
    s->models = fr_xcalloc(ld->n_models + 1, sizeof(*s->models));
    s->caches = fr_xcalloc(ld->n_caches + 1, sizeof(*s->caches));
    s->writer = fr_dstatus_start(ld->app, fill, s);
    return s;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

void fr_ldstatus_note(fr_ldstatus_t *s, const char *json, size_t len)
{
    struct loader *ld;
    json_t *o;
    const char *type, *pipeline;

    if (!s)
        return;
    ld = s->ld;
    o = json_loadb(json, len, 0, NULL);
    if (!o)
        return;
    type = str(o, "type");
    pipeline = str(o, "pipeline");
    if (type && strcmp(type, "batch.loaded") == 0) {
        const char *qn = str(o, "dataset");
        for (size_t i = 0; qn && i < ld->n_streams; i++) {
            const struct ld_stream *st = &ld->streams[i];
            if (strcmp(st->ds->qname, qn) != 0)
                continue;
            s->ds[i].last_load_us = fr_dstatus_event_us(o);
            /* its aggregate models were merged in the batch's transaction */
            for (size_t m = 0; m < ld->n_models; m++) {
                const struct ld_model *lm = &ld->models[m];
                if (lm->m->kind != FR_MODEL_AGGREGATE || lm->p != st->p || !lm->m->from ||
                    strcmp(lm->m->from, st->ds->name) != 0)
                    continue;
                s->models[m].last_us = s->ds[i].last_load_us;
                s->models[m].keys = json_integer_value(json_object_get(o, "loaded"));
                s->models[m].ms = 0;
                s->models[m].refreshes++;
            }
            break; /* the dataset's first stream (partition 0) holds its figures */
        }
    } else if (type && strcmp(type, "model.refreshed") == 0 && pipeline) {
        const char *name = str(o, "model");
        for (size_t i = 0; name && i < ld->n_models; i++) {
            struct model_stat *ms = &s->models[i];
            if (strcmp(ld->models[i].p->name, pipeline) != 0 || strcmp(ld->models[i].m->name, name) != 0)
                continue;
            ms->last_us = fr_dstatus_event_us(o);
            ms->ms = json_number_value(json_object_get(o, "ms"));
            ms->keys = json_integer_value(json_object_get(o, "count"));
            ms->all = json_object_get(o, "keys") == NULL;
            ms->refreshes++;
            free(ms->failing); /* a refresh went through: its tests passed */
            ms->failing = NULL;
        }
    } else if (type && strcmp(type, "model.test_failed") == 0 && pipeline) {
        const char *name = str(o, "model");
        json_t *tests = json_object_get(o, "tests");
        for (size_t i = 0; name && i < ld->n_models; i++) {
            struct model_stat *ms = &s->models[i];
            if (strcmp(ld->models[i].p->name, pipeline) != 0 || strcmp(ld->models[i].m->name, name) != 0)
                continue;
            ms->test_failures++;
            ms->failed_us = fr_dstatus_event_us(o);
            free(ms->failing);
            ms->failing = json_is_array(tests) ? json_dumps(tests, JSON_COMPACT) : NULL;
        }
    } else if (type && strcmp(type, "cache.refreshed") == 0 && pipeline) {
        const char *name = str(o, "cache");
        for (size_t i = 0; name && i < ld->n_caches; i++) {
            struct cache_stat *cs = &s->caches[i];
            json_t *keys = json_object_get(o, "keys");
            if (strcmp(ld->caches[i].p->name, pipeline) != 0 || strcmp(ld->caches[i].c->name, name) != 0)
                continue;
            cs->last_us = fr_dstatus_event_us(o);
            cs->keys = json_is_array(keys) ? (int64_t)json_array_size(keys) : -1;
            cs->writes++;
        }
    }
    json_decref(o);
}

void fr_ldstatus_stop(fr_ldstatus_t *s)
{
    if (!s)
        return;
    fr_dstatus_stop(s->writer);
    for (size_t i = 0; i < s->ld->n_models; i++)
        free(s->models[i].failing);
    free(s->ds);
    free(s->models);
    free(s->caches);
    free(s);
}
