/* config_http: the http_json source section of a pipeline (URL template,
 * headers, paging, fan-out, windows, rate limits, schedule). */
#ifndef FR_CONFIG_HTTP_H
#define FR_CONFIG_HTTP_H

#include "config.h"

struct fr_http_source {
    char *url; /* owned: URL template */
};

#endif
