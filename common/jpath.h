/* jpath: a small, bounded JSON path language for picking records and fields
 * out of API responses (http_json sources): `$` (the root), `.name`,
 * `[N]` (array index, 0-based; negative counts from the end) and
 * `['key']` / `["key"]` (any key; \\ and \' or \" escapes). A compiled
 * path is immutable plain data and may be shared by threads. */
#ifndef FR_JPATH_H
#define FR_JPATH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define FR_JPATH_MAX_LEN   1024 /* longest path text accepted */
#define FR_JPATH_MAX_STEPS 32   /* most steps after `$` */

typedef struct fr_jpath fr_jpath_t;

/* Compiles s[0..n). NULL + err ("position N: what is wrong; the fix") on a
 * syntax error, an empty key, more than FR_JPATH_MAX_STEPS steps or a path
 * longer than FR_JPATH_MAX_LEN. */
fr_jpath_t *fr_jpath_compile(const char *s, size_t n, char err[FR_ERR_LEN]);
void fr_jpath_free(fr_jpath_t *p);
/* The value at the path in root (borrowed from root), NULL when any step is
 * missing or of the wrong kind. Never allocates; O(steps) lookups. */
json_t *fr_jpath_get(const fr_jpath_t *p, const json_t *root);
/* The path as written (for messages). */
const char *fr_jpath_text(const fr_jpath_t *p);
/* Number of steps after `$` (0 = the root itself). */
size_t fr_jpath_steps(const fr_jpath_t *p);

#endif
