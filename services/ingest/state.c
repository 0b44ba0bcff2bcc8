/* state: load and atomic save of an http_json source's state file. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
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
    char ts[32], tmp[4200], dir[4096];
    json_t *doc = json_object();
    char *text;
    int fd, rc = 0;

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
    snprintf(dir, sizeof(dir), "%s", path);
    dirname(dir);
    if (fr_mkdirs(dir, 0755) != 0) {
        rc = -errno;
        snprintf(err, FR_ERR_LEN, "cannot create %.180s: %s", dir, strerror(errno));
        goto out;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, FR_ERR_LEN, "cannot write %.180s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            break;
        }
        off += (size_t)w;
    }
    if (rc == 0 && (write(fd, "\n", 1) != 1 || fsync(fd) != 0))
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        snprintf(err, FR_ERR_LEN, "cannot write state %s: %s", path, strerror(-rc));
        unlink(tmp);
        goto out;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
out:
    free(text);
    return rc;
}
