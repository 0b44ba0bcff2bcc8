/* state: JSON encoding of an http_json source's state, and the reader of
 * legacy state files (state.h). No I/O besides that reader. */
#include "state.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fr_hstate_parse(const char *text, size_t len, struct fr_hstate *st, const char *what, char err[FR_ERR_LEN])
{
    json_error_t je;
    json_t *doc, *v;

    memset(st, 0, sizeof(*st));
    doc = json_loadb(text, len, 0, &je);
    if (doc == NULL || !json_is_object(doc)) {
        snprintf(err, FR_ERR_LEN,
                 "%s: not a source state (%s); fix or delete it (a deleted state refetches from window start)", what,
                 doc ? "not an object" : je.text);
        json_decref(doc);
        return -EINVAL;
    }
    v = json_object_get(doc, "last_window_end");
    if (json_is_string(v) && !fr_parse_timestamp(json_string_value(v), json_string_length(v), &st->last_end_us)) {
        snprintf(err, FR_ERR_LEN, "%s: last_window_end is not ISO-8601; fix or delete it", what);
        json_decref(doc);
        return -EINVAL;
    }
    v = json_object_get(doc, "cursor");
    if (json_is_string(v))
        snprintf(st->cursor, sizeof(st->cursor), "%s", json_string_value(v));
    v = json_object_get(doc, "last_run_start_us");
    if (json_is_integer(v))
        st->last_run_us = json_integer_value(v);
    v = json_object_get(doc, "chain_window_start_us");
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        json_t *n = json_object_get(doc, "chains_done");
        if (!json_is_integer(n) || json_integer_value(n) < 0 || json_integer_value(n) > UINT32_MAX) {
            snprintf(err, FR_ERR_LEN, "%s: chains_done is not a count; fix or delete it", what);
            json_decref(doc);
            return -EINVAL;
        }
        st->chain_win_us = json_integer_value(v);
        st->chains_done = (uint32_t)json_integer_value(n);
    }
    json_decref(doc);
    return 0;
}

char *fr_hstate_encode(const struct fr_hstate *st)
{
    char ts[32];
    json_t *doc = json_object();
    char *text;

    if (st->last_end_us) {
        fr_format_timestamp(st->last_end_us, ts);
        json_object_set_new(doc, "last_window_end", json_string(ts));
    }
    if (st->cursor[0])
        json_object_set_new(doc, "cursor", json_string(st->cursor));
    if (st->last_run_us)
        json_object_set_new(doc, "last_run_start_us", json_integer(st->last_run_us));
    if (st->chain_win_us) {
        json_object_set_new(doc, "chain_window_start_us", json_integer(st->chain_win_us));
        json_object_set_new(doc, "chains_done", json_integer(st->chains_done));
    }
    fr_format_timestamp(fr_wall_us(), ts);
    json_object_set_new(doc, "updated", json_string(ts));
    text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    if (text == NULL) /* jansson out of memory: our policy is to abort */
        abort();
    return text;
}

int fr_hstate_load(const char *path, struct fr_hstate *st, char err[FR_ERR_LEN])
{
    struct fr_buf b;
    FILE *f;
    char chunk[4096];
    size_t n;
    int rc;

    memset(st, 0, sizeof(*st));
    f = fopen(path, "rb");
    if (f == NULL) {
        rc = -errno;
        if (rc == -ENOENT)
            return rc;
        snprintf(err, FR_ERR_LEN, "%s: %s", path, strerror(-rc));
        return rc;
    }
    fr_buf_init(&b, 1u << 20);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (fr_buf_append(&b, chunk, n) != 0) {
            snprintf(err, FR_ERR_LEN, "%s: larger than 1 MiB, not a state file", path);
            fclose(f);
            fr_buf_deinit(&b);
            return -EFBIG;
        }
    }
    fclose(f);
    rc = fr_hstate_parse(b.data ? b.data : "", b.len, st, path, err);
    fr_buf_deinit(&b);
    return rc;
}
