/* config_route: placeholder until the routes parser lands. */
#include <stdlib.h>

#include "config_int.h"
#include "config_route.h"

bool fr_cfg_parse_routes(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *n)
{
    (void)p;
    return fr_cfg_fail(c, n, "routes are not supported yet; remove routes:");
}

void fr_routes_free(struct fr_route *r, size_t n)
{
    if (!r)
        return;
    for (size_t i = 0; i < n; i++)
        free(r[i].path);
    free(r);
}
