/* metrics: a registry of metric families (name, help, type), each holding
 * series keyed by their label set. Every series value is allocated on its own
 * so the pointers handed out stay valid while the registry grows. Lookups are
 * linear scans: they happen at setup or on rare paths; hot paths keep the
 * pointer. Rendering follows the Prometheus text exposition format 0.0.4. */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind {
    K_COUNTER = 0,
    K_GAUGE,
    K_HISTOGRAM,
};

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

/* Upper bounds of the histogram buckets, in seconds; +Inf is implicit. */
static const double bucket_bounds[FR_HIST_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                      0.025,  0.05,    0.1,    0.25,  0.5,    1,     10};
static const char *const bucket_le[FR_HIST_BUCKETS] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                                                       "0.005",  "0.01",    "0.025",  "0.05",  "0.1",
                                                       "0.25",   "0.5",     "1",      "10"};

struct series {
    char *labels; /* owned: label set without braces, "" when none */
    union {
        uint64_t *counter;         /* owned */
        int64_t *gauge;            /* owned */
        struct fr_histogram *hist; /* owned */
        void *any;
    } v;
};

struct family {
    char *name; /* owned */
    char *help; /* owned */
    enum kind kind;
    struct series *series; /* owned array; the values it points to are separate allocations */
    size_t n_series;
    size_t cap_series;
};

struct fr_metrics {
    struct family *families; /* owned, in registration order */
    size_t n_families;
    size_t cap_families;
};

fr_metrics_t *fr_metrics_new(void)
{
    fr_metrics_t *m = fr_xcalloc(1, sizeof(*m));
    return m;
}

void fr_metrics_free(fr_metrics_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_families; i++) {
        struct family *f = &m->families[i];
        for (size_t j = 0; j < f->n_series; j++) {
            free(f->series[j].labels);
            free(f->series[j].v.any);
        }
        free(f->series);
        free(f->name);
        free(f->help);
    }
    free(m->families);
    free(m);
}

static struct family *family_find(const fr_metrics_t *m, const char *name)
{
    for (size_t i = 0; i < m->n_families; i++)
        if (strcmp(m->families[i].name, name) == 0)
            return &m->families[i];
    return NULL;
}

/* Finds or creates the series; *created tells which. The type of an existing
 * name must match: registering one name as two types is a programming error. */
static struct series *series_get(fr_metrics_t *m, const char *name, const char *help, const char *labels,
                                 enum kind kind, bool *created)
{
    if (!labels)
        labels = "";
    *created = false;
    struct family *f = family_find(m, name);
    if (!f) {
        if (m->n_families == m->cap_families) {
            m->cap_families = m->cap_families ? m->cap_families * 2 : 16;
            m->families = fr_xrealloc(m->families, m->cap_families * sizeof(*m->families));
        }
        f = &m->families[m->n_families++];
        memset(f, 0, sizeof(*f));
        f->name = fr_xstrdup(name);
        f->help = fr_xstrdup(help ? help : "");
        f->kind = kind;
    } else if (f->kind != kind) {
        fprintf(stderr, "metrics: %s registered as %s and %s\n", name, kind_names[f->kind], kind_names[kind]);
        abort();
    }
    for (size_t j = 0; j < f->n_series; j++)
        if (strcmp(f->series[j].labels, labels) == 0)
            return &f->series[j];
    if (f->n_series == f->cap_series) {
        f->cap_series = f->cap_series ? f->cap_series * 2 : 4;
        f->series = fr_xrealloc(f->series, f->cap_series * sizeof(*f->series));
    }
    struct series *s = &f->series[f->n_series++];
    s->labels = fr_xstrdup(labels);
    switch (kind) {
    case K_COUNTER:
        s->v.counter = fr_xcalloc(1, sizeof(uint64_t));
        break;
    case K_GAUGE:
        s->v.gauge = fr_xcalloc(1, sizeof(int64_t));
        break;
    case K_HISTOGRAM:
        s->v.hist = fr_xcalloc(1, sizeof(struct fr_histogram));
        break;
    }
    *created = true;
    return s;
}

uint64_t *fr_metrics_counter(fr_metrics_t *m, const char *name, const char *help, const char *labels)
{
    bool created;
    return series_get(m, name, help, labels, K_COUNTER, &created)->v.counter;
}

int64_t *fr_metrics_gauge(fr_metrics_t *m, const char *name, const char *help, const char *labels)
{
    bool created;
    return series_get(m, name, help, labels, K_GAUGE, &created)->v.gauge;
}

struct fr_histogram *fr_metrics_histogram(fr_metrics_t *m, const char *name, const char *help, const char *labels)
{
    bool created;
    return series_get(m, name, help, labels, K_HISTOGRAM, &created)->v.hist;
}

void fr_histogram_observe(struct fr_histogram *h, double seconds)
{
    if (!(seconds >= 0)) /* negative or NaN: clamp, never corrupt the sum */
        seconds = 0;
    size_t i = 0;
    while (i < FR_HIST_BUCKETS && seconds > bucket_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += seconds;
}

/* Shortest "%g" form that reads back as the same double. */
static void fmt_double(double v, char out[32])
{
    snprintf(out, 32, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, 32, "%.17g", v);
}

/* Appends "name{labels}" or "name{labels,extra}" (extra may be NULL). */
static int put_series_name(struct fr_buf *out, const char *name, const char *suffix, const char *labels,
                           const char *extra)
{
    int r = fr_buf_printf(out, "%s%s", name, suffix);
    if (r < 0)
        return r;
    bool has_labels = labels && labels[0];
    if (!has_labels && !extra)
        return 0;
    r = fr_buf_putc(out, '{');
    if (r == 0 && has_labels)
        r = fr_buf_puts(out, labels);
    if (r == 0 && has_labels && extra)
        r = fr_buf_putc(out, ',');
    if (r == 0 && extra)
        r = fr_buf_puts(out, extra);
    if (r == 0)
        r = fr_buf_putc(out, '}');
    return r;
}

static int render_family(const struct family *f, struct fr_buf *out)
{
    int r = fr_buf_printf(out, "# HELP %s ", f->name);
    /* HELP text escapes backslash and newline. */
    for (const char *p = f->help; r == 0 && *p; p++) {
        if (*p == '\\')
            r = fr_buf_puts(out, "\\\\");
        else if (*p == '\n')
            r = fr_buf_puts(out, "\\n");
        else
            r = fr_buf_putc(out, *p);
    }
    if (r == 0)
        r = fr_buf_printf(out, "\n# TYPE %s %s\n", f->name, kind_names[f->kind]);
    for (size_t j = 0; r == 0 && j < f->n_series; j++) {
        const struct series *s = &f->series[j];
        char num[32];
        switch (f->kind) {
        case K_COUNTER:
            r = put_series_name(out, f->name, "", s->labels, NULL);
            if (r == 0)
                r = fr_buf_printf(out, " %llu\n", (unsigned long long)*s->v.counter);
            break;
        case K_GAUGE:
            r = put_series_name(out, f->name, "", s->labels, NULL);
            if (r == 0)
                r = fr_buf_printf(out, " %lld\n", (long long)*s->v.gauge);
            break;
        case K_HISTOGRAM: {
            const struct fr_histogram *h = s->v.hist;
            uint64_t cum = 0;
            char le[32];
            for (size_t b = 0; r == 0 && b <= FR_HIST_BUCKETS; b++) {
                cum += h->buckets[b];
                snprintf(le, sizeof(le), "le=\"%s\"", b < FR_HIST_BUCKETS ? bucket_le[b] : "+Inf");
                r = put_series_name(out, f->name, "_bucket", s->labels, le);
                if (r == 0)
                    r = fr_buf_printf(out, " %llu\n", (unsigned long long)cum);
            }
            fmt_double(h->sum, num);
            if (r == 0)
                r = put_series_name(out, f->name, "_sum", s->labels, NULL);
            if (r == 0)
                r = fr_buf_printf(out, " %s\n", num);
            if (r == 0)
                r = put_series_name(out, f->name, "_count", s->labels, NULL);
            if (r == 0)
                r = fr_buf_printf(out, " %llu\n", (unsigned long long)h->count);
            break;
        }
        }
    }
    return r;
}

int fr_metrics_render(const fr_metrics_t *m, struct fr_buf *out)
{
    for (size_t i = 0; i < m->n_families; i++) {
        int r = render_family(&m->families[i], out);
        if (r < 0)
            return r;
    }
    return 0;
}

int fr_metrics_render_many(const fr_metrics_t *const *ms, size_t n, struct fr_buf *out)
{
    /* Merge into a scratch registry, then render it. A name registered with
     * different types in two registries keeps the first type; the other
     * registry's series of that name are skipped. */
    fr_metrics_t *sum = fr_metrics_new();
    for (size_t k = 0; k < n; k++) {
        const fr_metrics_t *m = ms[k];
        if (!m)
            continue;
        for (size_t i = 0; i < m->n_families; i++) {
            const struct family *f = &m->families[i];
            const struct family *have = family_find(sum, f->name);
            if (have && have->kind != f->kind)
                continue;
            for (size_t j = 0; j < f->n_series; j++) {
                const struct series *s = &f->series[j];
                bool created;
                struct series *d = series_get(sum, f->name, f->help, s->labels, f->kind, &created);
                switch (f->kind) {
                case K_COUNTER:
                    *d->v.counter += *s->v.counter;
                    break;
                case K_GAUGE:
                    *d->v.gauge += *s->v.gauge;
                    break;
                case K_HISTOGRAM:
                    for (size_t b = 0; b <= FR_HIST_BUCKETS; b++)
                        d->v.hist->buckets[b] += s->v.hist->buckets[b];
                    d->v.hist->count += s->v.hist->count;
                    d->v.hist->sum += s->v.hist->sum;
                    break;
                }
            }
            if (f->n_series == 0 && !family_find(sum, f->name)) {
                /* Keep an empty family visible: HELP/TYPE without series. */
                bool created;
                series_get(sum, f->name, f->help, "", f->kind, &created);
                struct family *nf = family_find(sum, f->name);
                free(nf->series[0].labels);
                free(nf->series[0].v.any);
                nf->n_series = 0;
            }
        }
    }
    int r = fr_metrics_render(sum, out);
    fr_metrics_free(sum);
    return r;
}
