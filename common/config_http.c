/* config_http: placeholder until the http_json parser lands. */
#include <stdlib.h>

#include "config_http.h"
#include "config_int.h"

bool fr_cfg_parse_http_source(struct fr_cfg *c, struct fr_pipeline *p, struct fr_source *s, const yaml_node_t *n)
{
    (void)p;
    (void)s;
    return fr_cfg_fail(c, n, "source type http_json is not supported yet; use file or push");
}

void fr_http_source_free(struct fr_http_source *h)
{
    if (!h)
        return;
    free(h->url);
    free(h);
}
