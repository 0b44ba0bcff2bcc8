/* state: load and atomic save of an http_json source's state file
 * (fr_write_file_atomic, durable). */
#include "state.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fr_hstate_load(const char *path, struct fr_hstate *st, char err[FR_ERR_LEN])
{
    json_error_t je;
    json_t *doc, *v;

    memset(st, 0, sizeof(*st));
    if (access(path, F_OK) != 0)
        return -ENOENT;
    doc = json_load_file(path, 0, &je);
    if (doc == NULL || !json_is_object(doc)) {
        snprintf(err, FR_ERR_LEN,
                 "%s: not a state file (%s); fix or delete it (a deleted state refetches from window start)", path,
                 doc ? "not an object" : je.text);
        json_decref(doc);
        return -EINVAL;
    }
    v = json_object_get(doc, "last_window_end");
    if (json_is_string(v) && !fr_parse_timestamp(json_string_value(v), json_string_length(v), &st->last_end_us)) {
        snprintf(err, FR_ERR_LEN, "%s: last_window_end is not ISO-8601; fix or delete the file", path);
        json_decref(doc);
        return -EINVAL;
    }
    v = json_object_get(doc, "cursor");
    if (json_is_string(v))
        snprintf(st->cursor, sizeof(st->cursor), "%s", json_string_value(v));
    json_decref(doc);
    return 0;
}

int fr_hstate_save(const char *path, const struct fr_hstate *st, char err[FR_ERR_LEN])
{
    char ts[32];
    json_t *doc = json_object();
    char *text;
    int rc;

    if (st->last_end_us) {
        fr_format_timestamp(st->last_end_us, ts);
        json_object_set_new(doc, "last_window_end", json_string(ts));
    }
    if (st->cursor[0])
        json_object_set_new(doc, "cursor", json_string(st->cursor));
    fr_format_timestamp(fr_wall_us(), ts);
    json_object_set_new(doc, "updated", json_string(ts));
    text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    if (text == NULL) {
        snprintf(err, FR_ERR_LEN, "cannot encode state %s: out of memory", path);
        return -ENOMEM;
    }
    {
        struct fr_buf b;
        fr_buf_init(&b, 0);
        if (fr_buf_puts(&b, text) != 0 || fr_buf_putc(&b, '\n') != 0)
            rc = -ENOMEM;
        else /* durable: a run resumes from here after a crash */
            rc = fr_write_file_atomic(path, b.data, b.len, 0644, FR_WRITE_DURABLE | FR_WRITE_MKDIRS);
        fr_buf_deinit(&b);
    }
    if (rc != 0)
        snprintf(err, FR_ERR_LEN, "cannot write state %s: %s", path, strerror(-rc));
    free(text);
    return rc;
}
