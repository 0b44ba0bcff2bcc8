/* Unit tests of common/metrics.c: exact Prometheus exposition output for
 * counters, gauges and histograms, pointer stability, and summing several
 * registries with fr_metrics_render_many. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static char *render(const fr_metrics_t *m)
{
    struct fr_buf b;
    fr_buf_init(&b, 0);
    assert_int_equal(fr_metrics_render(m, &b), 0);
    char *s = fr_xstrdup(b.data ? b.data : "");
    fr_buf_deinit(&b);
    return s;
}

static void test_counter_gauge(void **state)
{
    (void)state;
    fr_metrics_t *m = fr_metrics_new();
    uint64_t *ok =
        fr_metrics_counter(m, "fr_http_requests_total", "HTTP requests.", "route=\"/player/{id}\",status=\"200\"");
    uint64_t *nf = fr_metrics_counter(m, "fr_http_requests_total", "ignored the second time",
                                      "route=\"/player/{id}\",status=\"404\"");
    int64_t *g = fr_metrics_gauge(m, "fr_stream_lag", "Entries not yet consumed.", NULL);
    uint64_t *plain = fr_metrics_counter(m, "fr_batches_total", "Batches.", NULL);
    *ok += 3;
    *nf += 1;
    *g = -2;
    *plain = 7;
    /* same name + labels returns the same pointer */
    assert_ptr_equal(ok,
                     fr_metrics_counter(m, "fr_http_requests_total", NULL, "route=\"/player/{id}\",status=\"200\""));
    assert_ptr_equal(plain, fr_metrics_counter(m, "fr_batches_total", NULL, ""));
    char *s = render(m);
    assert_string_equal(s, "# HELP fr_http_requests_total HTTP requests.\n"
                           "# TYPE fr_http_requests_total counter\n"
                           "fr_http_requests_total{route=\"/player/{id}\",status=\"200\"} 3\n"
                           "fr_http_requests_total{route=\"/player/{id}\",status=\"404\"} 1\n"
                           "# HELP fr_stream_lag Entries not yet consumed.\n"
                           "# TYPE fr_stream_lag gauge\n"
                           "fr_stream_lag -2\n"
                           "# HELP fr_batches_total Batches.\n"
                           "# TYPE fr_batches_total counter\n"
                           "fr_batches_total 7\n");
    free(s);
    fr_metrics_free(m);
    fr_metrics_free(NULL);
}

static void test_histogram(void **state)
{
    (void)state;
    fr_metrics_t *m = fr_metrics_new();
    struct fr_histogram *h = fr_metrics_histogram(m, "fr_req_seconds", "Latency.", "route=\"/x\"");
    fr_histogram_observe(h, 0.00005); /* first bucket */
    fr_histogram_observe(h, 0.0001);  /* bound is inclusive: first bucket */
    fr_histogram_observe(h, 0.003);   /* le 0.005 */
    fr_histogram_observe(h, 0.75);    /* le 1 */
    fr_histogram_observe(h, 20);      /* +Inf only */
    char *s = render(m);
    const char *want = "# HELP fr_req_seconds Latency.\n"
                       "# TYPE fr_req_seconds histogram\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.0001\"} 2\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.00025\"} 2\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.0005\"} 2\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.001\"} 2\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.0025\"} 2\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.005\"} 3\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.01\"} 3\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.025\"} 3\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.05\"} 3\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.1\"} 3\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.25\"} 3\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"0.5\"} 3\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"1\"} 4\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"10\"} 4\n"
                       "fr_req_seconds_bucket{route=\"/x\",le=\"+Inf\"} 5\n"
                       "fr_req_seconds_sum{route=\"/x\"} 20.75315\n"
                       "fr_req_seconds_count{route=\"/x\"} 5\n";
    assert_string_equal(s, want);
    free(s);
    assert_int_equal(h->count, 5);

    /* no labels: le is the only label */
    struct fr_histogram *h2 = fr_metrics_histogram(m, "fr_refresh_seconds", "Refresh.", NULL);
    fr_histogram_observe(h2, 0.5);
    s = render(m);
    assert_non_null(strstr(s, "fr_refresh_seconds_bucket{le=\"0.25\"} 0\n"
                              "fr_refresh_seconds_bucket{le=\"0.5\"} 1\n"));
    assert_non_null(strstr(s, "fr_refresh_seconds_bucket{le=\"+Inf\"} 1\n"
                              "fr_refresh_seconds_sum 0.5\n"
                              "fr_refresh_seconds_count 1\n"));
    free(s);
    fr_metrics_free(m);
}

static void test_pointer_stability(void **state)
{
    (void)state;
    fr_metrics_t *m = fr_metrics_new();
    uint64_t *first = fr_metrics_counter(m, "c0", "h", "i=\"0\"");
    *first = 11;
    char name[32], labels[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "c%d", i % 40);
        snprintf(labels, sizeof(labels), "i=\"%d\"", i);
        uint64_t *p = fr_metrics_counter(m, name, "h", labels);
        *p += (uint64_t)i;
    }
    assert_ptr_equal(first, fr_metrics_counter(m, "c0", "h", "i=\"0\""));
    assert_int_equal(*first, 11);
    uint64_t *p299 = fr_metrics_counter(m, "c19", "h", "i=\"299\"");
    assert_int_equal(*p299, 299);
    fr_metrics_free(m);
}

static void test_render_many(void **state)
{
    (void)state;
    fr_metrics_t *a = fr_metrics_new();
    fr_metrics_t *b = fr_metrics_new();
    *fr_metrics_counter(a, "fr_req_total", "Requests.", "status=\"200\"") = 5;
    *fr_metrics_counter(b, "fr_req_total", "Requests.", "status=\"200\"") = 7;
    *fr_metrics_counter(b, "fr_req_total", "Requests.", "status=\"500\"") = 1;
    *fr_metrics_gauge(a, "fr_conns", "Open connections.", NULL) = 2;
    *fr_metrics_gauge(b, "fr_conns", "Open connections.", NULL) = 3;
    fr_histogram_observe(fr_metrics_histogram(a, "fr_lat", "Latency.", NULL), 0.001);
    fr_histogram_observe(fr_metrics_histogram(b, "fr_lat", "Latency.", NULL), 2);
    fr_histogram_observe(fr_metrics_histogram(b, "fr_lat", "Latency.", NULL), 0.0002);
    const fr_metrics_t *const ms[] = {a, b};
    struct fr_buf out;
    fr_buf_init(&out, 0);
    assert_int_equal(fr_metrics_render_many(ms, 2, &out), 0);
    const char *want = "# HELP fr_req_total Requests.\n"
                       "# TYPE fr_req_total counter\n"
                       "fr_req_total{status=\"200\"} 12\n"
                       "fr_req_total{status=\"500\"} 1\n"
                       "# HELP fr_conns Open connections.\n"
                       "# TYPE fr_conns gauge\n"
                       "fr_conns 5\n"
                       "# HELP fr_lat Latency.\n"
                       "# TYPE fr_lat histogram\n"
                       "fr_lat_bucket{le=\"0.0001\"} 0\n"
                       "fr_lat_bucket{le=\"0.00025\"} 1\n"
                       "fr_lat_bucket{le=\"0.0005\"} 1\n"
                       "fr_lat_bucket{le=\"0.001\"} 2\n"
                       "fr_lat_bucket{le=\"0.0025\"} 2\n"
                       "fr_lat_bucket{le=\"0.005\"} 2\n"
                       "fr_lat_bucket{le=\"0.01\"} 2\n"
                       "fr_lat_bucket{le=\"0.025\"} 2\n"
                       "fr_lat_bucket{le=\"0.05\"} 2\n"
                       "fr_lat_bucket{le=\"0.1\"} 2\n"
                       "fr_lat_bucket{le=\"0.25\"} 2\n"
                       "fr_lat_bucket{le=\"0.5\"} 2\n"
                       "fr_lat_bucket{le=\"1\"} 2\n"
                       "fr_lat_bucket{le=\"10\"} 3\n"
                       "fr_lat_bucket{le=\"+Inf\"} 3\n"
                       "fr_lat_sum 2.0012\n"
                       "fr_lat_count 3\n";
    assert_string_equal(out.data, want);
    /* the registries themselves are untouched */
    assert_int_equal(*fr_metrics_counter(a, "fr_req_total", NULL, "status=\"200\""), 5);
    /* one registry renders the same as render() */
    fr_buf_reset(&out);
    assert_int_equal(fr_metrics_render_many(ms, 1, &out), 0);
    char *single = render(a);
    assert_string_equal(out.data, single);
    free(single);
    /* a capped buffer reports -ENOBUFS */
    struct fr_buf small;
    fr_buf_init(&small, 16);
    assert_true(fr_metrics_render_many(ms, 2, &small) < 0);
    fr_buf_deinit(&small);
    fr_buf_deinit(&out);
    fr_metrics_free(a);
    fr_metrics_free(b);
}

static void test_help_escaping(void **state)
{
    (void)state;
    fr_metrics_t *m = fr_metrics_new();
    *fr_metrics_counter(m, "x_total", "line1\nback\\slash", NULL) = 1;
    char *s = render(m);
    assert_string_equal(s, "# HELP x_total line1\\nback\\\\slash\n# TYPE x_total counter\nx_total 1\n");
    free(s);
    fr_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge),     cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_pointer_stability), cmocka_unit_test(test_render_many),
        cmocka_unit_test(test_help_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
