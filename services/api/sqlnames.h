/* sqlnames: which datasets and models a route's SQL reads, found by
 * scanning its text for schema-qualified names (docs/routes.md "HTTP
 * caching"): the api keeps a route's answers and tags them with the data
 * versions of exactly these inputs. Pure functions, no state. */
#ifndef FR_API_SQLNAMES_H
#define FR_API_SQLNAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Called for each schema-qualified name `schema.name` outside string
 * literals, quoted identifiers' quotes removed and unquoted ones folded to
 * lower case (as PostgreSQL does), that is not a function call. Returns
 * false to stop the scan. */
typedef bool (*fr_sqlnames_cb)(const char *schema, const char *name, void *data);

/* Scans sql (all of it, unless the callback stops it). Returns false when
 * the answer of this SQL may change without its inputs changing (it calls a
 * clock or random function: now(), current_timestamp, current_date,
 * localtime..., clock_timestamp(), random(), nextval(), ...) or when the
 * callback stopped the scan; true otherwise. Comments ("--", block) and string literals ('...', E'...',
 * $tag$...$tag$) are skipped. Names longer than 63 bytes are truncated. */
bool fr_sqlnames_scan(const char *sql, fr_sqlnames_cb cb, void *data);

#endif
