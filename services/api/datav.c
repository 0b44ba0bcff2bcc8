/* datav: a worker's table of data versions (see datav.h). */
#include "datav.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define RETRY_MS 1000 /* between failed reads of freshet.versions */

#define VERSIONS_SQL                                                                                                 \
    "SELECT name, version, (extract(epoch FROM refreshed_at) * 1000000)::bigint FROM freshet.versions"

struct entry {
    char *name; /* owned: "{pipeline}.{name}" */
    int64_t version;
    int64_t refreshed_us; /* epoch microseconds, 0 = never */
};

struct fr_datav {
    struct entry *e; /* owned */
    size_t n;
    fr_pg_t *const *pg_ref; /* borrowed */
    bool channel_up;        /* fr:events subscribed */
    bool loaded;            /* the table was read since the channel came up */
    bool reading;           /* a read is in flight */
    bool orphaned;          /* freed while reading: the read's callback frees */
    uint64_t gen;           /* channel ups so far: a read started before one is not trusted */
    uint64_t last_try_ms;   /* monotonic */
};

fr_datav_t *fr_datav_new(const struct fr_pipeline *const *pipelines, size_t n, fr_pg_t *const *pg_ref)
{
    fr_datav_t *dv = fr_xcalloc(1, sizeof(*dv));
    size_t total = 0;
    dv->pg_ref = pg_ref;
    for (size_t i = 0; i < n; i++)
        total += pipelines[i]->n_datasets + pipelines[i]->n_models;
    dv->e = fr_xcalloc(total ? total : 1, sizeof(*dv->e));
    for (size_t i = 0; i < n; i++) {
        const struct fr_pipeline *p = pipelines[i];
        for (size_t d = 0; d < p->n_datasets; d++)
            dv->e[dv->n++].name = fr_xasprintf("%s.%s", p->name, p->datasets[d].name);
        for (size_t m = 0; m < p->n_models; m++)
            dv->e[dv->n++].name = fr_xasprintf("%s.%s", p->name, p->models[m].name);
    }
    return dv;
}

static void destroy(fr_datav_t *dv)
{
    for (size_t i = 0; i < dv->n; i++)
        free(dv->e[i].name);
    free(dv->e);
    free(dv);
}

void fr_datav_free(fr_datav_t *dv)
{
    if (!dv)
        return;
    if (dv->reading) {
        dv->orphaned = true;
        return;
    }
    destroy(dv);
}

static int find_qname(const fr_datav_t *dv, const char *qname, size_t len)
{
    for (size_t i = 0; i < dv->n; i++)
        if (strlen(dv->e[i].name) == len && memcmp(dv->e[i].name, qname, len) == 0)
            return (int)i;
    return -1;
}

int fr_datav_find(const fr_datav_t *dv, const char *pipeline, const char *name)
{
    size_t pl = strlen(pipeline), nl = strlen(name);
    for (size_t i = 0; i < dv->n; i++) {
        const char *q = dv->e[i].name;
        if (strncmp(q, pipeline, pl) == 0 && q[pl] == '.' && strcmp(q + pl + 1, name) == 0 &&
            strlen(q) == pl + 1 + nl)
            return (int)i;
    }
    return -1;
}

/* Raises entry i to (version, us); true when the version changed. Versions
 * only grow, so a read and an event may arrive in any order. */
static bool raise_to(struct entry *e, int64_t version, int64_t us)
{
    bool changed = version > e->version;
    if (changed)
        e->version = version;
    if (us > e->refreshed_us)
        e->refreshed_us = us;
    return changed;
}

struct read_ctx {
    fr_datav_t *dv;
    uint64_t gen;
};

static void on_read(fr_pg_t *pg, PGresult *res, void *data)
{
    struct read_ctx *c = data;
    fr_datav_t *dv = c->dv;
    uint64_t gen = c->gen;

    (void)pg;
    free(c);
    dv->reading = false;
    if (dv->orphaned) {
        destroy(dv);
        return;
    }
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        fr_debug("cannot read freshet.versions (%s): answers carry no ETag until it can be read",
                 res ? PQresultErrorMessage(res) : "connection lost");
        return;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        const char *name = PQgetvalue(res, r, 0), *v = PQgetvalue(res, r, 1), *us = PQgetvalue(res, r, 2);
        int64_t version, t;
        int i = find_qname(dv, name, strlen(name));
        if (i < 0 || !fr_parse_i64(v, strlen(v), &version) || !fr_parse_i64(us, strlen(us), &t))
            continue;
        (void)raise_to(&dv->e[i], version, t);
    }
    if (gen == dv->gen && dv->channel_up)
        dv->loaded = true;
}

static void start_read(fr_datav_t *dv)
{
    fr_pg_t *pg = *dv->pg_ref;
    uint64_t now = fr_mono_ms();
    if (dv->reading || !dv->channel_up || !pg || !fr_pg_connected(pg) ||
        (dv->last_try_ms && now - dv->last_try_ms < RETRY_MS))
        return;
    dv->last_try_ms = now;
    struct read_ctx *c = fr_xmalloc(sizeof(*c));
    c->dv = dv;
    c->gen = dv->gen;
    if (fr_pg_query(pg, VERSIONS_SQL, 0, NULL, NULL, on_read, c) != 0) {
        free(c);
        return;
    }
    dv->reading = true;
}

bool fr_datav_get(fr_datav_t *dv, int i, int64_t *version, int64_t *refreshed_us)
{
    if (!dv->loaded || i < 0 || (size_t)i >= dv->n) {
        if (!dv->loaded)
            start_read(dv);
        return false;
    }
    *version = dv->e[i].version;
    *refreshed_us = dv->e[i].refreshed_us;
    return true;
}

void fr_datav_set_channel(fr_datav_t *dv, bool up)
{
    if (up == dv->channel_up)
        return;
    dv->channel_up = up;
    dv->loaded = false;
    if (up) {
        dv->gen++;
        dv->last_try_ms = 0;
        start_read(dv);
    }
}

int fr_datav_on_event(fr_datav_t *dv, const json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *qname = NULL, *at;
    char buf[512];
    json_t *jv;
    int64_t us = 0;
    int i;

    if (!type)
        return -1;
    if (strcmp(type, "batch.loaded") == 0 || strcmp(type, "dataset.retained") == 0) {
        qname = json_string_value(json_object_get(ev, "dataset"));
    } else if (strcmp(type, "model.refreshed") == 0) {
        const char *p = json_string_value(json_object_get(ev, "pipeline"));
        const char *m = json_string_value(json_object_get(ev, "model"));
        if (p && m && strlen(p) + strlen(m) + 2 <= sizeof(buf)) {
            memcpy(buf, p, strlen(p));
            buf[strlen(p)] = '.';
            memcpy(buf + strlen(p) + 1, m, strlen(m) + 1);
            qname = buf;
        }
    } else {
        return -1;
    }
    if (!qname || (i = find_qname(dv, qname, strlen(qname))) < 0)
        return -1;
    jv = json_object_get(ev, "version");
    at = json_string_value(json_object_get(ev, "refreshed_at"));
    if (json_is_integer(jv) && at && fr_parse_timestamp(at, strlen(at), &us)) {
        /* a batch of a dataset feeding aggregate models changed them too */
        json_t *vs = json_object_get(ev, "versions"), *mv; /* jansson's iterator takes no const */
        const char *mn;
        int changed = -1;
        json_object_foreach(vs, mn, mv)
        {
            int k = find_qname(dv, mn, strlen(mn));
            if (k >= 0 && json_is_integer(mv) && raise_to(&dv->e[k], (int64_t)json_integer_value(mv), us))
                changed = FR_DATAV_MANY;
        }
        if (raise_to(&dv->e[i], (int64_t)json_integer_value(jv), us))
            return changed == FR_DATAV_MANY ? FR_DATAV_MANY : i;
        return changed;
    }
    /* the data changed but the message does not say to what: read the
     * table again before trusting any version */
    dv->loaded = false;
    dv->last_try_ms = 0;
    start_read(dv);
    return i;
}
