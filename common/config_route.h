/* config_route: the routes section of a pipeline. */
#ifndef FR_CONFIG_ROUTE_H
#define FR_CONFIG_ROUTE_H

#include "config.h"

struct fr_route {
    char *path; /* owned */
};

#endif
