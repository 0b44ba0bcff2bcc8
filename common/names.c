/* names: builders and parsers of freshet's Redis key, stream and channel
 * names (see names.h). Owns nothing. */
#include "names.h"

#include <inttypes.h>
#include <string.h>

#include "util.h"

#define STREAM_PREFIX "fr:stream:"
#define DLQ_PREFIX    "fr:dlq:"
#define BATCH_PREFIX  "fr:batch:"

char *fr_names_stream(const char *qname)
{
    return fr_xasprintf(STREAM_PREFIX "{%s}", qname);
}

char *fr_names_stream_part(const char *qname, unsigned part)
{
    if (part == 0)
        return fr_names_stream(qname);
    return fr_xasprintf(STREAM_PREFIX "{%s/%u}", qname, part);
}

unsigned fr_names_partition(const char *key, size_t len, unsigned n)
{
    uint64_t h = 14695981039346656037ull;

    if (n <= 1)
        return 0;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return (unsigned)(h % n);
}

char *fr_names_dlq(const char *qname)
{
    return fr_xasprintf(DLQ_PREFIX "{%s}", qname);
}

char *fr_names_batch(const char *batch_id)
{
    return fr_xasprintf(BATCH_PREFIX "%s", batch_id);
}

char *fr_names_cache(const char *cache, const char *key)
{
    return fr_xasprintf("%s:%s", cache, key);
}

char *fr_names_cache_fields(const char *cache)
{
    return fr_xasprintf("fr:cachefields:%s", cache);
}

/* "PREFIX{qname}" -> qname (heap), else NULL. */
static char *tagged_qname(const char *key, const char *prefix)
{
    size_t n = strlen(prefix);
    size_t len;

    if (!key || strncmp(key, prefix, n) != 0 || key[n] != '{')
        return NULL;
    key += n + 1;
    len = strlen(key);
    if (len < 2 || key[len - 1] != '}' || memchr(key, '}', len - 1) != NULL)
        return NULL;
    return fr_xstrndup(key, len - 1);
}

char *fr_names_stream_qname(const char *key)
{
    return tagged_qname(key, STREAM_PREFIX);
}

char *fr_names_dlq_qname(const char *key)
{
    return tagged_qname(key, DLQ_PREFIX);
}

char *fr_names_idem(const char *caller, const char *key)
{
    return fr_xasprintf("fr:idem:%s:%s", caller, key);
}

char *fr_names_idseq(const char *qname)
{
    return fr_xasprintf("fr:idseq:{%s}", qname);
}

char *fr_names_ryw(const char *caller)
{
    char *k = fr_xasprintf("fr:ryw:%s", caller);
    for (char *c = k; *c; c++)
        if (*c == '{' || *c == '}')
            *c = '_';
    return k;
}

char *fr_names_dlq_lease(const char *qname)
{
    return fr_xasprintf("fr:lease:dlq:{%s}", qname);
}

char *fr_names_src_lease(const char *ds_qname, const char *src_qname)
{
    return fr_xasprintf("fr:lease:src:{%s}:%s", ds_qname, src_qname);
}

char *fr_names_src_fence(const char *ds_qname, const char *src_qname)
{
    return fr_xasprintf("fr:fence:src:{%s}:%s", ds_qname, src_qname);
}

char *fr_names_src_state(const char *ds_qname, const char *src_qname)
{
    return fr_xasprintf("fr:state:src:{%s}:%s", ds_qname, src_qname);
}

char *fr_names_legacy_stream(const char *qname)
{
    return fr_xasprintf(STREAM_PREFIX "%s", qname);
}

char *fr_names_legacy_dlq(const char *qname)
{
    return fr_xasprintf(DLQ_PREFIX "%s", qname);
}

bool fr_names_is_change(const char *type)
{
    return type && (strcmp(type, "batch.loaded") == 0 || strcmp(type, "model.refreshed") == 0 ||
                    strcmp(type, "cache.refreshed") == 0);
}

bool fr_names_event_type(const char *json, size_t len, char *type, size_t cap)
{
    static const char head[] = "{\"type\":\"";
    const char *p, *end;

    if (!json || len < sizeof(head) - 1 || memcmp(json, head, sizeof(head) - 1) != 0 || cap == 0)
        return false;
    p = json + sizeof(head) - 1;
    end = memchr(p, '"', len - (size_t)(p - json));
    if (!end || (size_t)(end - p) >= cap || memchr(p, '\\', (size_t)(end - p)))
        return false;
    memcpy(type, p, (size_t)(end - p));
    type[end - p] = '\0';
    return true;
}

#define STATUS_PREFIX "fr:status:"

char *fr_names_status(const char *daemon, const char *instance)
{
    return fr_xasprintf(STATUS_PREFIX "%s:%s", daemon, instance);
}

bool fr_names_status_daemon(const char *key, char *out, size_t cap)
{
    size_t n = sizeof(STATUS_PREFIX) - 1;
    const char *colon;

    if (!key || strncmp(key, STATUS_PREFIX, n) != 0 || strcmp(key, FR_NAMES_STATUS_INDEX) == 0)
        return false;
    colon = strchr(key + n, ':');
    if (!colon || colon == key + n || colon[1] == '\0' || (size_t)(colon - key - n) >= cap)
        return false;
    memcpy(out, key + n, (size_t)(colon - key - n));
    out[colon - key - n] = '\0';
    return true;
}

char *fr_names_event_route_stale(const char *pipeline, const char *route, const char *path, int64_t age_s,
                                 uint32_t max_age_s, const char *refreshed_at)
{
    struct fr_buf b;
    char ts[40];
    char *out;

    fr_format_timestamp(fr_wall_us(), ts);
    fr_buf_init(&b, 0);
    (void)fr_buf_printf(&b, "{\"type\":\"route.stale\",\"ts\":\"%s\",\"pipeline\":", ts);
    (void)fr_buf_json_str(&b, pipeline, strlen(pipeline));
    (void)fr_buf_puts(&b, ",\"route\":");
    (void)fr_buf_json_str(&b, route, strlen(route));
    (void)fr_buf_puts(&b, ",\"path\":");
    (void)fr_buf_json_str(&b, path, strlen(path));
    (void)fr_buf_printf(&b, ",\"age_s\":%" PRId64 ",\"max_age_s\":%" PRIu32 ",\"refreshed_at\":", age_s, max_age_s);
    (void)fr_buf_json_str(&b, refreshed_at, strlen(refreshed_at));
    (void)fr_buf_putc(&b, '}');
    out = fr_xstrndup(b.data, b.len);
    fr_buf_deinit(&b);
    return out;
}

char *fr_names_backfill(const char *id)
{
    return fr_xasprintf("fr:backfill:%s", id);
}

char *fr_names_event_model_test_failed(const char *pipeline, const char *model, const char *const *tests,
                                       size_t n_tests, const char *const *keys, size_t n_keys, size_t rows)
{
    struct fr_buf b;
    char ts[40];
    char *out;

    fr_format_timestamp(fr_wall_us(), ts);
    fr_buf_init(&b, 0);
    (void)fr_buf_printf(&b, "{\"type\":\"model.test_failed\",\"ts\":\"%s\",\"pipeline\":", ts);
    (void)fr_buf_json_str(&b, pipeline, strlen(pipeline));
    (void)fr_buf_puts(&b, ",\"model\":");
    (void)fr_buf_json_str(&b, model, strlen(model));
    (void)fr_buf_puts(&b, ",\"tests\":[");
    for (size_t i = 0; i < n_tests; i++) {
        if (i)
            (void)fr_buf_putc(&b, ',');
        (void)fr_buf_json_str(&b, tests[i], strlen(tests[i]));
    }
    (void)fr_buf_puts(&b, "],\"keys\":[");
    for (size_t i = 0; i < n_keys; i++) {
        if (i)
            (void)fr_buf_putc(&b, ',');
        (void)fr_buf_json_str(&b, keys[i], strlen(keys[i]));
    }
    (void)fr_buf_printf(&b, "],\"rows\":%zu}", rows);
    out = fr_xstrndup(b.data, b.len);
    fr_buf_deinit(&b);
    return out;
}
