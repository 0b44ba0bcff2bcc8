/* redis internals shared by redis.c (one connection) and redis_cluster.c
 * (Redis Cluster: a slot map over one redis.c client per node), plus the
 * pure functions of the cluster protocol, unit-tested in
 * tests/unit/test_redis_cluster.c. Not for callers outside common/redis*. */
#ifndef FR_REDIS_INT_H
#define FR_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis.h"
#include "util.h"

#define FR_REDIS_SLOTS       16384u
#define FR_REDIS_CLUSTER_PFX "redis+cluster://"
#define FR_REDIS_MAX_KEYS    4096u /* keys one routed command may name */
#define FR_REDIS_HOST_MAX    64u   /* an IP address, with room to spare */
#define FR_REDIS_CURSOR_MAX  48u   /* "i.c" SCAN cursor of a cluster */

struct fr__cluster;

/* ---- pure functions (no I/O) ----------------------------------------- */

/* CRC16-CCITT (XMODEM) as Redis Cluster uses it: "123456789" -> 0x31C3. */
uint16_t fr__redis_crc16(const char *buf, size_t len);
/* The slot of a key: CRC16 of the hash tag (the bytes between the first '{'
 * and the next '}', when not empty) or of the whole key, mod 16384. */
unsigned fr__redis_key_slot(const char *key, size_t len);

/* A -MOVED or -ASK error: "MOVED 3999 127.0.0.1:6381". */
struct fr__redis_redirect {
    bool ask;                     /* ASK (one command, after ASKING) vs MOVED */
    unsigned slot;                /* 0..16383 */
    char host[FR_REDIS_HOST_MAX]; /* an IP address (IPv6 without brackets) */
    int port;                     /* 1..65535 */
};
/* True when `err` (an error reply's text) is a well-formed MOVED/ASK. */
bool fr__redis_parse_redirect(const char *err, size_t len, struct fr__redis_redirect *out);

/* The arguments of one formatted RESP command ("*N\r\n$L\r\n..."):
 * pointers into the command text (borrowed), not NUL-terminated. */
struct fr__redis_args {
    size_t argc;
    const char **argv; /* owned array (the strings are borrowed) */
    size_t *argvlen;   /* owned */
};
/* Splits `cmd`; false on anything but one well-formed command. Free the
 * arrays with fr__redis_args_deinit (also after a failure). */
bool fr__redis_args_parse(const char *cmd, size_t len, struct fr__redis_args *a);
void fr__redis_args_deinit(struct fr__redis_args *a);

/* How a command is routed in a cluster. */
enum fr__redis_route {
    FR_ROUTE_KEYS = 0, /* by its keys (keys[] below); every key in one slot */
    FR_ROUTE_ANY,      /* no key: any master (PING, PUBLISH, ...) */
    FR_ROUTE_SCAN,     /* SCAN: every master in turn (cluster cursor) */
    FR_ROUTE_MULTI,    /* MULTI: opens a client-side transaction */
    FR_ROUTE_EXEC,     /* EXEC: sends the transaction, one per slot */
    FR_ROUTE_SPLIT,    /* DEL/UNLINK/EXISTS/TOUCH over several slots: one per slot, integers summed */
    FR_ROUTE_BAD,      /* cannot be routed (malformed, DISCARD/WATCH, too many keys) */
};
/* Classifies a command and, for FR_ROUTE_KEYS/SPLIT, fills keys[] with the
 * argv indexes of its keys (at most `max`) and *nkeys. The table covers the
 * commands freshet sends (docs/scaling.md); an unlisted command with an
 * argument is routed by argv[1]. */
enum fr__redis_route fr__redis_route_of(const struct fr__redis_args *a, size_t *keys, size_t max, size_t *nkeys);

/* One range of CLUSTER SLOTS: slots [start, end] served by host:port. */
struct fr__redis_range {
    unsigned start;
    unsigned end;
    char host[FR_REDIS_HOST_MAX];
    int port;
};
/* Parses a CLUSTER SLOTS reply into ranges (masters only; `fallback_host`
 * replaces an empty host, as a node that does not know its own address
 * answers). Returns the count (0 = not a usable reply), at most `max`. */
size_t fr__redis_parse_slots(const redisReply *reply, const char *fallback_host, struct fr__redis_range *out,
                             size_t max);

/* Cluster SCAN cursors: "0" = start/done, else "<master index>.<node cursor>". */
bool fr__redis_cursor_parse(const char *s, size_t len, size_t *master, unsigned long long *cursor);
void fr__redis_cursor_format(char out[FR_REDIS_CURSOR_MAX], size_t master, unsigned long long cursor);

/* ---- the link between redis.c and redis_cluster.c --------------------- */

/* redis_cluster.c, called by redis.c on a handle whose URL is
 * redis+cluster://. fr__cluster_new parses the URL (NULL + err on error). */
struct fr__cluster *fr__cluster_new(fr_redis_t *owner, uv_loop_t *loop, const char *url, const char *name,
                                    char err[FR_ERR_LEN]);
void fr__cluster_start(struct fr__cluster *cl);
bool fr__cluster_connected(const struct fr__cluster *cl);
size_t fr__cluster_pending(const struct fr__cluster *cl);
/* Takes a formatted command (copied). Same returns as fr_redis_commandv. */
int fr__cluster_submit(struct fr__cluster *cl, uint32_t timeout_ms, fr_redis_cb cb, void *data, const char *cmd,
                       size_t len);
int fr__cluster_subscribe(struct fr__cluster *cl, const char *channel, fr_redis_msg_cb cb, void *data);
/* Closes every node client; calls fr__redis_cluster_closed(owner) once all
 * are gone, and frees itself. */
void fr__cluster_close(struct fr__cluster *cl);

/* redis.c, called by redis_cluster.c. */
void fr__redis_cluster_closed(fr_redis_t *owner);
void fr__redis_emit_state(fr_redis_t *owner, bool connected);
void fr__redis_timeouts(const fr_redis_t *owner, uint32_t *timeout_ms, uint32_t *connect_timeout_ms);
/* Sends an already formatted command (copied) on a single-node client:
 * fr_redis_commandv without the formatting. */
int fr__redis_submit_formatted(fr_redis_t *r, uint32_t timeout_ms, fr_redis_cb cb, void *data, const char *cmd,
                               size_t len);
/* Checks a single-node URL's syntax the way fr_redis_new does (for seeds). */
bool fr__redis_url_check(const char *url, int *db, char err[FR_ERR_LEN]);

#endif
