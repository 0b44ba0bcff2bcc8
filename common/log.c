/* log: one JSON object per line on stderr, written with a single write(2) so
 * lines from several threads never interleave. The daemon name and level are
 * the only globals, set once at startup by fr_log_init. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_MSG_MAX  4096 /* bytes of formatted message kept; longer is cut */
#define LOG_LINE_MAX 8192 /* bytes of one whole line */

static char log_daemon[64] = "freshet";
static enum fr_log_level log_level = FR_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fr_log_init(const char *daemon, enum fr_log_level level)
{
    if (daemon)
        snprintf(log_daemon, sizeof(log_daemon), "%s", daemon);
    if ((int)level < FR_LOG_DEBUG || level > FR_LOG_ERROR)
        level = FR_LOG_INFO;
    log_level = level;
}

bool fr_log_parse_level(const char *s, enum fr_log_level *out)
{
    if (!s)
        return false;
    for (size_t i = 0; i < FR_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum fr_log_level)i;
            return true;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = FR_LOG_WARN;
        return true;
    }
    return false;
}

bool fr_log_enabled(enum fr_log_level level)
{
    return level >= log_level;
}

/* Cuts n so that s[0..n) does not end in the middle of a UTF-8 sequence. */
static size_t utf8_trim(const char *s, size_t n)
{
    size_t k = n;
    size_t back = 0;
    while (k > 0 && back < 4 && ((unsigned char)s[k - 1] & 0xC0) == 0x80) {
        k--;
        back++;
    }
    if (k > 0 && (unsigned char)s[k - 1] >= 0xC0) {
        unsigned char lead = (unsigned char)s[k - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (back + 1 < need)
            return k - 1;
    }
    return n;
}

void fr__log_write(enum fr_log_level level, const char *key, const char *val, const char *fmt, ...)
{
    int saved_errno = errno;
    char msg[LOG_MSG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t mlen;
    bool truncated = false;
    if (n < 0) {
        mlen = 0;
    } else if ((size_t)n > LOG_MSG_MAX) {
        mlen = utf8_trim(msg, LOG_MSG_MAX);
        truncated = true;
    } else {
        mlen = (size_t)n;
    }

    char ts[32];
    fr_format_timestamp(fr_wall_us(), ts);
    unsigned lvl = (unsigned)level < FR_ARRAY_LEN(level_names) ? (unsigned)level : 3u;

    struct fr_buf b;
    fr_buf_init(&b, LOG_LINE_MAX);
    int r = fr_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"daemon\":", ts, level_names[lvl]);
    if (r == 0)
        r = fr_buf_json_str(&b, log_daemon, strlen(log_daemon));
    if (r == 0)
        r = fr_buf_puts(&b, ",\"msg\":");
    if (r == 0)
        r = fr_buf_json_str(&b, msg, mlen);
    if (r == 0 && truncated)
        r = fr_buf_puts(&b, ",\"truncated\":true");
    if (r == 0 && key) {
        /* The extra field may be long (a path): keep the line bounded. */
        size_t vlen = val ? strlen(val) : 0;
        if (vlen > 1024)
            vlen = utf8_trim(val, 1024);
        r = fr_buf_putc(&b, ',');
        if (r == 0)
            r = fr_buf_json_str(&b, key, strlen(key));
        if (r == 0)
            r = fr_buf_putc(&b, ':');
        if (r == 0)
            r = val ? fr_buf_json_str(&b, val, vlen) : fr_buf_puts(&b, "null");
    }
    if (r == 0)
        r = fr_buf_puts(&b, "}\n");
    if (r == 0) {
        size_t off = 0;
        while (off < b.len) {
            ssize_t w = write(STDERR_FILENO, b.data + off, b.len - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            off += (size_t)w;
        }
    }
    fr_buf_deinit(&b);
    errno = saved_errno;
}
