/* log: structured logging, one JSON object per line on stderr:
 *   {"ts":"2026-11-21T14:00:00.123Z","level":"info","daemon":"loader","msg":"...", "batch":"..."}
 * The level and daemon name are one-time process setup (the only globals). */
#ifndef FR_LOG_H
#define FR_LOG_H

#include <stdbool.h>

#include "util.h"

enum fr_log_level {
    FR_LOG_DEBUG = 0,
    FR_LOG_INFO = 1,
    FR_LOG_WARN = 2,
    FR_LOG_ERROR = 3,
};

/* Once, at startup, before any thread starts. */
void fr_log_init(const char *daemon, enum fr_log_level level);
/* Parses "debug|info|warn|error"; false if unknown. */
bool fr_log_parse_level(const char *s, enum fr_log_level *out);
bool fr_log_enabled(enum fr_log_level level);

/* Writes one line. `key`/`val` add one extra string field (e.g. "batch",
 * id; "file", path) when key is not NULL. Thread-safe (one write(2)). */
void fr__log_write(enum fr_log_level level, const char *key, const char *val, const char *fmt, ...) FR_PRINTF(4, 5);

#define fr_log(level, ...)                                                                                           \
    do {                                                                                                             \
        if (fr_log_enabled(level))                                                                                   \
            fr__log_write((level), NULL, NULL, __VA_ARGS__);                                                         \
    } while (0)

/* Same, with one context field: fr_log_kv(FR_LOG_INFO, "batch", id, "loaded %d rows", n). */
#define fr_log_kv(level, key, val, ...)                                                                              \
    do {                                                                                                             \
        if (fr_log_enabled(level))                                                                                   \
            fr__log_write((level), (key), (val), __VA_ARGS__);                                                       \
    } while (0)

#define fr_debug(...) fr_log(FR_LOG_DEBUG, __VA_ARGS__)
#define fr_info(...)  fr_log(FR_LOG_INFO, __VA_ARGS__)
#define fr_warn(...)  fr_log(FR_LOG_WARN, __VA_ARGS__)
#define fr_error(...) fr_log(FR_LOG_ERROR, __VA_ARGS__)

#endif
