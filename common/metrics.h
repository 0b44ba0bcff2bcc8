/* metrics: a registry of counters, gauges and histograms owned by the
 * daemon's struct fr_app, rendered in the Prometheus text format. Hot paths
 * bump plain integers through the pointers the registry hands out; no locks:
 * a registry belongs to one loop thread (api workers each have their own and
 * /metrics sums them with fr_metrics_render_many). */
#ifndef FR_METRICS_H
#define FR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct fr_metrics fr_metrics_t;

#define FR_HIST_BUCKETS 14 /* 0.1ms .. 10s, plus +Inf */

struct fr_histogram {
    uint64_t buckets[FR_HIST_BUCKETS + 1]; /* cumulative on render; +Inf last */
    uint64_t count;
    double sum; /* seconds */
};

fr_metrics_t *fr_metrics_new(void);
void fr_metrics_free(fr_metrics_t *m);

/* Finds or creates a series. `labels` is the label set without braces, e.g.
 * "route=\"/player/{id}\",status=\"200\"", or NULL. The returned pointer is
 * owned by the registry and stays valid until fr_metrics_free. Calling again
 * with the same name and labels returns the same pointer. `help` is used the
 * first time a name is seen. */
uint64_t *fr_metrics_counter(fr_metrics_t *m, const char *name, const char *help, const char *labels);
int64_t *fr_metrics_gauge(fr_metrics_t *m, const char *name, const char *help, const char *labels);
struct fr_histogram *fr_metrics_histogram(fr_metrics_t *m, const char *name, const char *help, const char *labels);
void fr_histogram_observe(struct fr_histogram *h, double seconds);

/* Appends the exposition text of one registry, or of several whose series
 * are summed by name + labels. */
int fr_metrics_render(const fr_metrics_t *m, struct fr_buf *out);
int fr_metrics_render_many(const fr_metrics_t *const *ms, size_t n, struct fr_buf *out);

#endif
