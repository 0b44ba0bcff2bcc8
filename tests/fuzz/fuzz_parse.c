/* libFuzzer target for common/parse.c, the production entry point of every
 * untrusted file. Input: byte 0 picks the format (CSV with header, CSV
 * without, NDJSON, JSON array) and where the rest is cut into two chunks;
 * byte 1 the schema drift policy (bits 0-1 missing, 2-3 type: reject, null,
 * fail; bits 4-5 extra: ignore, reject, null, fail; bit 6: `name` is the
 * key). Accepted rows must be well formed and canonical (canonicalising a
 * value again gives the same bytes), respect the policy (no null in a
 * required column unless missing is `null`, never in the key), and survive
 * the batch codec; drift tallies must be consistent and render as events.
 * NDJSON is differential: the DOM-free line scanner (parse_ndjson.c) must
 * give the same rows, rejects, reasons, result and drift tallies as the
 * jansson path it replaces. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "parse.h"
#include "parse_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *g_allowed[] = {(char *)"join", (char *)"finish", (char *)"buy"};
static struct fr_column g_cols[] = {
    {.name = (char *)"name", .type = FR_T_TEXT, .required = true, .allowed = g_allowed, .n_allowed = 3},
    {.name = (char *)"country", .type = FR_T_TEXT, .upper = true, .length = 2},
    {.name = (char *)"note", .type = FR_T_TEXT},
    {.name = (char *)"i", .type = FR_T_INT},
    {.name = (char *)"b", .type = FR_T_BIGINT},
    {.name = (char *)"f", .type = FR_T_FLOAT},
    {.name = (char *)"num", .type = FR_T_NUMERIC},
    {.name = (char *)"ok", .type = FR_T_BOOL},
    {.name = (char *)"ts", .type = FR_T_TIMESTAMPTZ},
    {.name = (char *)"d", .type = FR_T_DATE},
    {.name = (char *)"j", .type = FR_T_JSON},
};
static int g_key_index[] = {0};
static struct fr_dataset g_ds = {
    .name = (char *)"ev",
    .qname = (char *)"fz.ev",
    .table = (char *)"fz.ev",
    .columns = g_cols,
    .n_columns = sizeof(g_cols) / sizeof(g_cols[0]),
    .schema_version = 1,
};

struct ctx {
    fr_batch_builder_t *builder; /* owned, NULL on the second pass */
    struct fr_buf canon;         /* owned: scratch */
    struct fr_buf log;           /* owned: every row and reject, to compare passes */
};

static int on_row(void *data, const struct fr_row *row)
{
    struct ctx *c = data;
    if (row->line == 0)
        __builtin_trap();
    for (size_t i = 0; i < g_ds.n_columns; i++) {
        if (row->nulls[i]) {
            if (g_cols[i].required && g_ds.drift.missing != FR_DRIFT_NULL)
                __builtin_trap();
            if (g_ds.n_key && i == 0)
                __builtin_trap(); /* a key column is never null */
            continue;
        }
        if (strlen(row->vals[i]) != row->lens[i])
            __builtin_trap();
        /* canonical means a fixed point */
        bool is_null;
        char reason[FR_ERR_LEN];
        fr_buf_reset(&c->canon);
        if (!fr_value_canon(&g_cols[i], row->vals[i], row->lens[i], &c->canon, &is_null, reason) || is_null)
            __builtin_trap();
        if (c->canon.len != row->lens[i] || memcmp(c->canon.data, row->vals[i], row->lens[i]) != 0)
            __builtin_trap();
    }
    fr_buf_printf(&c->log, "%u:", row->line);
    for (size_t i = 0; i < g_ds.n_columns; i++) {
        fr_buf_append(&c->log, row->nulls[i] ? "\\N" : row->vals[i], row->nulls[i] ? 2 : row->lens[i]);
        fr_buf_putc(&c->log, '\x1f');
    }
    if (c->builder)
        fr_batch_builder_add(c->builder, row->vals, row->lens, row->nulls, row->line);
    return 0;
}

static int on_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct ctx *c = data;
    if (line == 0 || !reason || !reason[0] || raw_len > FR_PARSE_MAX_LINE)
        __builtin_trap();
    fr_buf_printf(&c->log, "%u!%s\x1e", line, reason);
    fr_buf_append(&c->log, raw, raw_len);
    fr_buf_putc(&c->log, '\n');
    return 0;
}

static void feed_copy(fr_parser_t *p, const uint8_t *s, size_t n)
{
    char *cp = malloc(n ? n : 1); /* exact size: ASan sees overreads */
    if (!cp)
        abort();
    memcpy(cp, s, n);
    (void)fr_parser_feed(p, cp, n);
    free(cp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const enum fr_file_format fmts[4] = {FR_FMT_CSV, FR_FMT_CSV, FR_FMT_NDJSON, FR_FMT_JSON};
    static const enum fr_drift_action acts[4] = {FR_DRIFT_REJECT, FR_DRIFT_NULL, FR_DRIFT_FAIL, FR_DRIFT_REJECT};
    static const enum fr_drift_action extras[4] = {FR_DRIFT_IGNORE, FR_DRIFT_REJECT, FR_DRIFT_NULL, FR_DRIFT_FAIL};
    unsigned mode = data[0] & 3;
    size_t cut = (size - 2) * (data[0] >> 2) / 63;
    g_ds.drift.missing = acts[data[1] & 3];
    g_ds.drift.type = acts[(data[1] >> 2) & 3];
    g_ds.drift.extra = extras[(data[1] >> 4) & 3];
    g_ds.key_index = (data[1] & 0x40) ? g_key_index : NULL;
    g_ds.n_key = (data[1] & 0x40) ? 1 : 0;
    data += 1;
    size -= 1;
    size_t rest = size - 1;
    /* pass 1: everything in one chunk, as a reference */
    struct ctx whole = {0};
    fr_buf_init(&whole.canon, 0);
    fr_buf_init(&whole.log, 0);
    fr_parser_t *p = fr_parser_new(&g_ds, fmts[mode], mode == 0, on_row, on_reject, &whole);
    feed_copy(p, data + 1, rest);
    int rc1 = fr_parser_finish(p);
    if (fmts[mode] == FR_FMT_NDJSON) {
        /* pass 1b: the jansson reference gives the very same */
        struct ctx ref = {0};
        fr_buf_init(&ref.canon, 0);
        fr_buf_init(&ref.log, 0);
        fr_parser_t *q = fr_parser_new(&g_ds, FR_FMT_NDJSON, false, on_row, on_reject, &ref);
        fr__parser_set_dom(q, true);
        feed_copy(q, data + 1, rest);
        int rc_ref = fr_parser_finish(q);
        if (rc_ref != rc1 || ref.log.len != whole.log.len ||
            (ref.log.len && memcmp(ref.log.data, whole.log.data, ref.log.len) != 0))
            __builtin_trap();
        if (strcmp(fr_parser_error(q), fr_parser_error(p)) != 0 ||
            fr_parser_drift_failed(q) != fr_parser_drift_failed(p) || fr_parser_rows_ok(q) != fr_parser_rows_ok(p) ||
            fr_parser_rows_rejected(q) != fr_parser_rows_rejected(p))
            __builtin_trap();
        for (int k = 0; k < FR_DRIFT_KINDS; k++) {
            const struct fr_drift_tally *a = fr_parser_drift(p, (enum fr_drift_kind)k);
            const struct fr_drift_tally *b = fr_parser_drift(q, (enum fr_drift_kind)k);
            if (a->count != b->count || a->first_line != b->first_line || a->n_fields != b->n_fields ||
                a->more_fields != b->more_fields)
                __builtin_trap();
            for (uint32_t i = 0; i < a->n_fields; i++)
                if (strcmp(a->fields[i], b->fields[i]) != 0)
                    __builtin_trap();
        }
        fr_parser_free(q);
        fr_buf_deinit(&ref.canon);
        fr_buf_deinit(&ref.log);
    }
    fr_parser_free(p);

    /* pass 2: two chunks; same outcome, and through the batch codec */
    struct ctx c = {0};
    c.builder = fr_batch_builder_new(&g_ds, "fuzz", FR_OP_UPSERT);
    fr_buf_init(&c.canon, 0);
    fr_buf_init(&c.log, 0);
    p = fr_parser_new(&g_ds, fmts[mode], mode == 0, on_row, on_reject, &c);
    feed_copy(p, data + 1, cut);
    feed_copy(p, data + 1 + cut, rest - cut);
    int rc = fr_parser_finish(p);
    if (rc < 0 && rc != -EINVAL)
        __builtin_trap();
    if (rc == -EINVAL && !fr_parser_error(p)[0])
        __builtin_trap();
    if (fr_batch_builder_rows(c.builder) != fr_parser_rows_ok(p))
        __builtin_trap();
    if (rc != rc1 || c.log.len != whole.log.len || (c.log.len && memcmp(c.log.data, whole.log.data, c.log.len)))
        __builtin_trap();
    /* drift: a failure only under a `fail` action (or a CSV header the
     * policy cannot load), tallies consistent, events well formed */
    if (fr_parser_drift_failed(p) && (rc != -EINVAL || (!fr_drift_has_fail(&g_ds.drift) && mode != 0)))
        __builtin_trap();
    struct fr_buf ev;
    fr_buf_init(&ev, 0);
    for (int k = 0; k < FR_DRIFT_KINDS; k++) {
        const struct fr_drift_tally *t = fr_parser_drift(p, (enum fr_drift_kind)k);
        if (t->n_fields > FR_DRIFT_FIELDS || (t->count && (!t->n_fields || !t->first_line)))
            __builtin_trap();
        if (k == FR_DRIFT_EXTRA && g_ds.drift.extra == FR_DRIFT_IGNORE && t->count)
            __builtin_trap(); /* ignore does not even look */
        for (uint32_t i = 0; i < t->n_fields; i++)
            if (strnlen(t->fields[i], FR_DRIFT_FIELD_LEN) >= FR_DRIFT_FIELD_LEN)
                __builtin_trap();
        fr_buf_reset(&ev);
        enum fr_drift_action a = fr_drift_action_of(&g_ds.drift, (enum fr_drift_kind)k);
        /* a fixed time: the same input must take the same path (tests/run fuzzes with a fixed seed) */
        if (fr_drift_event_json_at(&ev, "fz", g_ds.qname, "fuzz.csv", (enum fr_drift_kind)k, t, a,
                                   INT64_C(1718000000123456))) {
            if (ev.len < 2 || ev.data[0] != '{' || ev.data[ev.len - 1] != '}' || !fr_utf8_valid(ev.data, ev.len))
                __builtin_trap();
        }
    }
    fr_buf_deinit(&ev);
    fr_buf_deinit(&whole.log);
    fr_buf_deinit(&whole.canon);

    struct fr_buf wire;
    fr_buf_init(&wire, 0);
    if (fr_batch_builder_flush(c.builder, "fuzz-batch", NULL, &wire) == 0) {
        char err[FR_ERR_LEN];
        fr_batch_t *b = fr_batch_decode(wire.data, wire.len, err);
        if (!b || fr_batch_rows(b) != fr_parser_rows_ok(p))
            __builtin_trap();
        struct fr_buf out;
        fr_buf_init(&out, 0);
        if (fr_batch_copy_text(b, 0, fr_batch_rows(b), &out) != 0)
            __builtin_trap();
        fr_buf_deinit(&out);
        fr_batch_free(b);
    }
    fr_buf_deinit(&wire);
    fr_parser_free(p);
    fr_buf_deinit(&c.canon);
    fr_buf_deinit(&c.log);
    fr_batch_builder_free(c.builder);
    return 0;
}
