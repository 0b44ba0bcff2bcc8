/* backup: a dataset's table to an Avro object container file and back, an
 * exact round trip (docs/loader.md). The Avro schema comes from the dataset's
 * columns (docs/loader.md lists the type mapping); every field is a union
 * with null; the record is named after the dataset; the file header carries
 * freshet.pipeline, freshet.dataset and freshet.schema_version. Restore
 * checks the file's schema against the dataset and reads every record
 * before it changes anything, then replaces the table in one transaction.
 * Everything here blocks (libpq, hiredis, files): use it from a command or a
 * worker thread, never on an event loop. Thread-safe: no shared state. */
#ifndef FR_BACKUP_H
#define FR_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

#define FR_BACKUP_MAX_BYTES ((size_t)1 << 30) /* largest Avro file restore accepts */

/* Writes the table of dataset ds (pipeline p) to `path` (a unique temp file
 * beside it, fsync'ed, renamed over path), rows in key order. conninfo: a
 * libpq connection string or URI. *rows (may be NULL) gets the row count.
 * 0, or a negative errno with err filled ("cannot connect ...", "cannot
 * write FILE: ..."). */
FR_MUST_CHECK int fr_backup_write(const char *conninfo, const struct fr_pipeline *p, const struct fr_dataset *ds,
                                  const char *path, int64_t *rows, char err[FR_ERR_LEN]);

#define FR_BACKUP_NAME_LEN 256 /* bytes of a name fr_backup_write_unique chooses, NUL included */

/* The same into directory `dir` under a name no other backup has, never
 * replacing a file: "{pipeline}.{dataset}-{YYYYMMDDTHHMMSSZ}-{8 random
 * chars}.avro", written to "dir/.{qname}.XXXXXX" (mkostemp), fsync'ed, then
 * hard-linked to the name (link(2) fails on an existing name: another is
 * drawn) and the temp file removed, directory fsync'ed. Two backups in the
 * same second get two files. The name goes to name[]. Same errors. */
FR_MUST_CHECK int fr_backup_write_unique(const char *conninfo, const struct fr_pipeline *p,
                                         const struct fr_dataset *ds, const char *dir, char name[FR_BACKUP_NAME_LEN],
                                         int64_t *rows, char err[FR_ERR_LEN]);

/* Encodes the table to memory instead: *out (owned by the caller, free())
 * and *len. Same errors. */
FR_MUST_CHECK int fr_backup_encode(const char *conninfo, const struct fr_pipeline *p, const struct fr_dataset *ds,
                                   char **out, size_t *len, int64_t *rows, char err[FR_ERR_LEN]);

/* Replaces the table of ds with the records of the Avro file in avro[0..len)
 * (borrowed). The file's schema must match the dataset's columns (names,
 * order and types; -EPROTO naming the field otherwise), every record must
 * decode (-EBADMSG for a corrupt file), and every value must be one the
 * table holds exactly (-EPROTO naming the record and field: a string with
 * a NUL byte, a timestamp or date outside years 0001..9999, a null key);
 * in all these cases nothing is changed. Then BEGIN; TRUNCATE; COPY;
 * COMMIT; a COPY the table refuses for its data (SQLSTATE class 22 or 23,
 * 54000: duplicate keys, a value too large to index) rolls back and is
 * -EPROTO with a message naming the record and the rule, not the server's
 * text (which quotes row data and constraint names). *rows (may be NULL)
 * gets the count. Does not tell the loader: call fr_backup_notify after it. */
FR_MUST_CHECK int fr_backup_restore_buf(const char *conninfo, const struct fr_pipeline *p,
                                        const struct fr_dataset *ds, const void *avro, size_t len, int64_t *rows,
                                        char err[FR_ERR_LEN]);

/* Same, from a file (at most FR_BACKUP_MAX_BYTES). */
FR_MUST_CHECK int fr_backup_restore_file(const char *conninfo, const struct fr_pipeline *p,
                                         const struct fr_dataset *ds, const char *path, int64_t *rows,
                                         char err[FR_ERR_LEN]);

/* Tells the loaders the table was replaced: XADDs an OP_REPLACED batch (no
 * rows) to fr:stream:{qname}; the loader records it and refreshes every
 * model fed by the dataset in full (caches follow) and its exports.
 * redis_url: redis://[:password@]host[:port][/db]. 0 or -errno + err. */
FR_MUST_CHECK int fr_backup_notify(const char *redis_url, const struct fr_dataset *ds, char err[FR_ERR_LEN]);

/* Connects to redis_url and PINGs it (5 s timeout), so a restore can fail
 * before it changes the table when it could not tell the loaders after.
 * 0 or -errno + err naming the setting to fix. */
FR_MUST_CHECK int fr_backup_redis_check(const char *redis_url, char err[FR_ERR_LEN]);

#endif
