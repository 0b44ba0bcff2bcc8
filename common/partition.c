/* partition: stream partition of a row or a file (see partition.h). */
#include "partition.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

bool fr_partition_by_row(const struct fr_dataset *ds)
{
    return ds->partitions > 1 && (ds->n_key > 0 || ds->partition_col >= 0);
}

/* Appends column k's canonical text to buf (at most cap bytes; a longer
 * value is cut: only the hash needs it, and every copy cuts it alike). */
static size_t canon(const struct fr_dataset *ds, int k, const char *v, size_t n, bool null, char *buf, size_t cap)
{
    if (null) {
        if (cap > 0)
            buf[0] = '\0';
        return cap > 0 ? 1 : 0;
    }
    if (ds->columns[k].type == FR_T_INT || ds->columns[k].type == FR_T_BIGINT) {
        char tmp[32];
        if (n > 0 && n < sizeof(tmp)) {
            char *end;
            memcpy(tmp, v, n);
            tmp[n] = '\0';
            errno = 0;
            long long x = strtoll(tmp, &end, 10);
            if (errno == 0 && *end == '\0' && end != tmp) {
                int w = snprintf(tmp, sizeof(tmp), "%lld", x);
                size_t m = (size_t)w < cap ? (size_t)w : cap;
                memcpy(buf, tmp, m);
                return m;
            }
        }
    }
    if (n > cap)
        n = cap;
    memcpy(buf, v, n);
    return n;
}

unsigned fr_partition_of_row(const struct fr_dataset *ds, const char *const *vals, const size_t *lens,
                             const bool *nulls)
{
    char buf[1024];
    size_t len = 0;

    if (!fr_partition_by_row(ds))
        return 0;
    if (ds->n_key > 0) {
        for (size_t i = 0; i < ds->n_key; i++) {
            int k = ds->key_index[i];
            if (i > 0 && len < sizeof(buf))
                buf[len++] = 0x1f;
            len += canon(ds, k, vals[k], lens[k], nulls && nulls[k], buf + len, sizeof(buf) - len);
        }
    } else {
        int k = ds->partition_col;
        len = canon(ds, k, vals[k], lens[k], nulls && nulls[k], buf, sizeof(buf));
    }
    return fr_names_partition(buf, len, ds->partitions);
}

unsigned fr_partition_of_file(const struct fr_dataset *ds, const char *name)
{
    return fr_names_partition(name, strlen(name), ds->partitions);
}
