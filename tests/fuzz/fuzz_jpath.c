/* libFuzzer target of common/jpath.c (the production entry points
 * fr_jpath_compile + fr_jpath_get): the input's first line is a path, the
 * rest a JSON document the path is evaluated on. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jpath.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t plen = nl ? (size_t)(nl - s) : size;
    char err[FR_ERR_LEN];
    fr_jpath_t *p = fr_jpath_compile(s, plen, err);

    if (p == NULL)
        return 0;
    if (nl) {
        json_error_t je;
        json_t *doc = json_loadb(nl + 1, size - plen - 1, JSON_DECODE_ANY, &je);
        if (doc) {
            json_t *v = fr_jpath_get(p, doc);
            if (v && json_is_string(v))
                (void)json_string_length(v);
            json_decref(doc);
        }
    }
    (void)fr_jpath_text(p);
    fr_jpath_free(p);
    return 0;
}
