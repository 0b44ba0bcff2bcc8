/* partition: which stream partition a file's rows go to (docs/scaling.md
 * "Partitioned streams"). A dataset with `partitions: N` (N >= 2) has N
 * batch streams (fr_names_stream_part). Its rows are routed by:
 *   - its key, when it has one: every row of one key on one stream, so a
 *     key's rows keep their order on one stream;
 *   - its partition_by column, when append-only and declared;
 *   - else the file: every batch of a file on the stream of its inbound
 *     name's hash.
 * The hash is FNV-1a 64 (fr_names_partition) of the routing columns'
 * canonical text: int and bigint values as plain decimal ("007" and "+7"
 * route with "7"), a NULL as one 0x00 byte, other types as sent; columns
 * are separated by a 0x1f byte. Stable across versions and hosts. */
#ifndef FR_PARTITION_H
#define FR_PARTITION_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* True when `ds` routes each row (by key or partition_by), false when it has
 * one stream or routes whole files. */
bool fr_partition_by_row(const struct fr_dataset *ds);
/* The partition (0..partitions-1) of one row (vals/lens/nulls in column
 * order, as fr_row gives them). 0 unless fr_partition_by_row(ds). */
unsigned fr_partition_of_row(const struct fr_dataset *ds, const char *const *vals, const size_t *lens,
                             const bool *nulls);
/* The partition of every batch of a file routed whole, from its inbound name
 * (the name dropped in inbound/, without the "{ulid}-" the landing zone adds). */
unsigned fr_partition_of_file(const struct fr_dataset *ds, const char *name);

#endif
