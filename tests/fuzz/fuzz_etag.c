/* libFuzzer target of the api's HTTP caching parsers (services/api/etag.c
 * and sqlnames.c, compiled in): the input's first line is an If-None-Match
 * header value (client input) matched against a tag made from the rest,
 * and the whole input is scanned as a route's SQL. Beyond "no crash": "*"
 * matches every tag, a header that is exactly one tag matches it, and every
 * schema-qualified name reported fits PostgreSQL's 63 bytes. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/api/etag.c"
#include "../../services/api/sqlnames.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool check_name(const char *schema, const char *name, void *data)
{
    (void)data;
    if (strlen(schema) >= NAME_MAX_LEN || strlen(name) >= NAME_MAX_LEN)
        abort();
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *nl = strchr(s, '\n');
    const char *rest = nl ? nl + 1 : "";
    if (nl)
        *nl = '\0';

    struct fr_etag_digest d;
    char tag[FR_ETAG_LEN];
    fr_etag_digest_init(&d);
    fr_etag_digest_add(&d, rest, strlen(rest));
    fr_etag_format(&d, tag);
    if (strlen(tag) != 20)
        abort();
    bool m = fr_etag_match(s, tag);
    if (fr_etag_is_star(s) && !m)
        abort();
    if (!fr_etag_match(tag, tag) || !fr_etag_match(tag + 2, tag)) /* W/"x" and "x" both match W/"x" */
        abort();

    if (nl)
        *nl = '\n';
    (void)fr_sqlnames_scan(s, check_name, NULL);
    free(s);
    return 0;
}
