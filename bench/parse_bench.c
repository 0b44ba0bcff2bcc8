/* bench_parse: parse throughput of one NDJSON file through fr_parser, the
 * DOM-free scanner (parse_ndjson.c) against the jansson path it replaced,
 * in interleaved rounds (the order alternates), and optionally a CSV file of
 * the same events as a third side. The file is read into memory first and
 * fed in 256 KiB chunks, as the ingest worker does; rows go to a callback that
 * touches them. Prints one JSON object: median rows/s and MB/s per side.
 *   bench_parse PIPELINE.yaml DATASET FILE.ndjson ROUNDS [FILE.csv] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "parse.h"
#include "parse_int.h"

#define CHUNK (256u << 10) /* the ingest worker's read size (IO_CHUNK) */

struct sink {
    uint64_t bytes; /* value bytes seen, so the rows are not optimised away */
};

static int on_row(void *data, const struct fr_row *row)
{
    struct sink *s = data;
    s->bytes += row->lens[0] + row->line;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = fr_xmalloc(len > 0 ? (size_t)len : 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* One pass; returns seconds, fills rows ok + rejected. */
static double pass(const struct fr_dataset *ds, enum fr_file_format fmt, bool dom, const char *buf, size_t n,
                   uint64_t *rows)
{
    struct sink s = {0};
    fr_parser_t *p = fr_parser_new(ds, fmt, fmt == FR_FMT_CSV, on_row, NULL, &s);
    fr__parser_set_dom(p, dom);
    double t0 = now_s();
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += CHUNK)
        rc = fr_parser_feed(p, buf + off, n - off < CHUNK ? n - off : CHUNK);
    if (rc == 0)
        rc = fr_parser_finish(p);
    double t = now_s() - t0;
    if (rc != 0) {
        fprintf(stderr, "parse failed: %s\n", fr_parser_error(p));
        exit(1);
    }
    *rows = fr_parser_rows_ok(p) + fr_parser_rows_rejected(p);
    fr_parser_free(p);
    return t;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PIPELINE.yaml DATASET FILE.ndjson ROUNDS [FILE.csv]\n", argv[0]);
        return 2;
    }
    char err[FR_ERR_LEN] = "";
    struct fr_pipeline *pl = fr_pipeline_load(argv[1], err);
    if (!pl) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const struct fr_dataset *ds = fr_pipeline_dataset(pl, argv[2]);
    if (!ds) {
        fprintf(stderr, "no dataset %s\n", argv[2]);
        return 1;
    }
    int rounds = atoi(argv[4]);
    if (rounds < 1 || rounds > 1000)
        rounds = 5;
    size_t nd_n, csv_n = 0;
    char *nd = slurp(argv[3], &nd_n);
    char *csv = argc > 5 ? slurp(argv[5], &csv_n) : NULL;
    double *t_scan = fr_xcalloc((size_t)rounds, sizeof(double));
    double *t_dom = fr_xcalloc((size_t)rounds, sizeof(double));
    double *t_csv = fr_xcalloc((size_t)rounds, sizeof(double));
    uint64_t r_scan = 0, r_dom = 0, r_csv = 0;
    for (int r = 0; r < rounds; r++) {
        if (r % 2 == 0) {
            t_scan[r] = pass(ds, FR_FMT_NDJSON, false, nd, nd_n, &r_scan);
            t_dom[r] = pass(ds, FR_FMT_NDJSON, true, nd, nd_n, &r_dom);
        } else {
            t_dom[r] = pass(ds, FR_FMT_NDJSON, true, nd, nd_n, &r_dom);
            t_scan[r] = pass(ds, FR_FMT_NDJSON, false, nd, nd_n, &r_scan);
        }
        if (csv)
            t_csv[r] = pass(ds, FR_FMT_CSV, false, csv, csv_n, &r_csv);
    }
    if (r_scan != r_dom) {
        fprintf(stderr, "the two paths disagree: %llu vs %llu records\n", (unsigned long long)r_scan,
                (unsigned long long)r_dom);
        return 1;
    }
    double ms = median(t_scan, rounds), md = median(t_dom, rounds);
    printf("{\"rounds\":%d,\"ndjson_rows\":%llu,\"ndjson_bytes\":%zu,"
           "\"scan_rows_s\":%.1f,\"scan_mb_s\":%.2f,\"dom_rows_s\":%.1f,\"dom_mb_s\":%.2f",
           rounds, (unsigned long long)r_scan, nd_n, (double)r_scan / ms, (double)nd_n / ms / 1e6, (double)r_dom / md,
           (double)nd_n / md / 1e6);
    if (csv) {
        double mc = median(t_csv, rounds);
        printf(",\"csv_rows\":%llu,\"csv_bytes\":%zu,\"csv_rows_s\":%.1f,\"csv_mb_s\":%.2f",
               (unsigned long long)r_csv, csv_n, (double)r_csv / mc, (double)csv_n / mc / 1e6);
    }
    printf("}\n");
    free(t_scan);
    free(t_dom);
    free(t_csv);
    free(nd);
    free(csv);
    fr_pipeline_free(pl);
    return 0;
}
