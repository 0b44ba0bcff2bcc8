/* names: builders and parsers of freshet's Redis key, stream and channel
 * names (see names.h). Owns nothing. */
#include "names.h"

#include <string.h>

#include "util.h"

#define STREAM_PREFIX "fr:stream:"
#define DLQ_PREFIX    "fr:dlq:"
#define BATCH_PREFIX  "fr:batch:"

char *fr_names_stream(const char *qname)
{
    return fr_xasprintf(STREAM_PREFIX "%s", qname);
}

char *fr_names_dlq(const char *qname)
{
    return fr_xasprintf(DLQ_PREFIX "%s", qname);
}

char *fr_names_batch(const char *batch_id)
{
    return fr_xasprintf(BATCH_PREFIX "%s", batch_id);
}

char *fr_names_cache(const char *cache, const char *key)
{
    return fr_xasprintf("%s:%s", cache, key);
}

static const char *after_prefix(const char *key, const char *prefix)
{
    size_t n = strlen(prefix);
    if (!key || strncmp(key, prefix, n) != 0 || key[n] == '\0')
        return NULL;
    return key + n;
}

const char *fr_names_stream_qname(const char *key)
{
    return after_prefix(key, STREAM_PREFIX);
}

const char *fr_names_dlq_qname(const char *key)
{
    return after_prefix(key, DLQ_PREFIX);
}

char *fr_names_idem(const char *caller, const char *key)
{
    return fr_xasprintf("fr:idem:%s:%s", caller, key);
}

char *fr_names_idseq(const char *qname)
{
    return fr_xasprintf("fr:idseq:%s", qname);
}

char *fr_names_dlq_lease(const char *qname)
{
    return fr_xasprintf("fr:lease:dlq:%s", qname);
}

char *fr_names_src_lease(const char *src_qname)
{
    return fr_xasprintf("fr:lease:src:%s", src_qname);
}

char *fr_names_src_fence(const char *src_qname)
{
    return fr_xasprintf("fr:fence:src:%s", src_qname);
}

char *fr_names_src_state(const char *src_qname)
{
    return fr_xasprintf("fr:state:src:%s", src_qname);
}
