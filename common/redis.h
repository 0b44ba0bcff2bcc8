/* redis: an async Redis client on hiredis 0.14.1's async API, attached to a
 * libuv loop by our own adapter (ac->ev hooks on one uv_poll per fd; poll
 * errors are passed on, not dropped). Adds what hiredis lacks: per-command
 * timeouts (a uv_timer per command; on expiry the connection is dropped so
 * every pending command completes with NULL), reconnect with exponential
 * backoff (100 ms .. 5 s, jittered), and re-subscription after reconnect.
 * Use one fr_redis_t per role: commands (pipelined freely), pub/sub, and
 * blocking stream reads (XREADGROUP BLOCK) each on their own connection.
 * Loop thread only. */
#ifndef FR_REDIS_H
#define FR_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

typedef struct fr_redis fr_redis_t;

/* Completion of one command, called exactly once: with the reply (borrowed,
 * valid only during the call; may be a REDIS_REPLY_ERROR), or with NULL when
 * the command timed out, the connection was lost, or the client is closing. */
typedef void (*fr_redis_cb)(fr_redis_t *r, redisReply *reply, void *data);
/* A pub/sub message: channel and payload borrowed for the call. */
typedef void (*fr_redis_msg_cb)(fr_redis_t *r, const char *channel, const char *payload, size_t len, void *data);
/* Connection state changes: connected true after each (re)connect (and after
 * re-subscribing), false when a connection is lost. */
typedef void (*fr_redis_state_cb)(fr_redis_t *r, bool connected, void *data);

/* url: redis://[:password@]host[:port][/db]; host must be an IP address or
 * "localhost" (no blocking DNS on the loop). Or
 * redis+cluster://[:password@]host:port,host:port,... (seed nodes of a Redis
 * Cluster, db 0): the same API, commands routed by their keys' slot,
 * MOVED/ASK followed, failover handled; MULTI/EXEC split per slot, SCAN over
 * every master, a command whose keys span slots -EINVAL (docs/scaling.md).
 * `name` tags log lines. Returns NULL + err on a bad URL. Does not connect
 * until fr_redis_start. */
fr_redis_t *fr_redis_new(uv_loop_t *loop, const char *url, const char *name, char err[FR_ERR_LEN]);
void fr_redis_set_state_cb(fr_redis_t *r, fr_redis_state_cb cb, void *data);
void fr_redis_set_timeout(fr_redis_t *r, uint32_t ms); /* default command timeout, 5000 ms */
/* TCP connect + AUTH/SELECT/re-subscribe must finish within this, else the
 * attempt is dropped and retried with backoff. 0 = the default, 2000 ms. */
void fr_redis_set_connect_timeout(fr_redis_t *r, uint32_t ms);
/* Starts connecting (and reconnecting forever, with backoff). */
FR_MUST_CHECK int fr_redis_start(fr_redis_t *r);
bool fr_redis_connected(const fr_redis_t *r);
/* True for a redis+cluster:// handle: a command's keys must then share a
 * slot (a multi-stream XREADGROUP is one read per stream, say). */
bool fr_redis_is_cluster(const fr_redis_t *r);

/* Sends a command. timeout_ms 0 = the default. Returns 0 (cb will fire
 * exactly once) or -ENOTCONN when not connected / -ESHUTDOWN when closing
 * (cb will NOT fire). Arguments are copied. Also -EINVAL (cb will NOT fire)
 * for a malformed command, for (P)(UN)SUBSCRIBE/MONITOR (use
 * fr_redis_subscribe) and on a client that has subscriptions. */
FR_MUST_CHECK int fr_redis_command(fr_redis_t *r, uint32_t timeout_ms, fr_redis_cb cb, void *data, const char *fmt,
                                   ...);
FR_MUST_CHECK int fr_redis_commandv(fr_redis_t *r, uint32_t timeout_ms, fr_redis_cb cb, void *data, int argc,
                                    const char **argv, const size_t *argvlen);
/* Number of commands sent and not yet completed (for backpressure). */
size_t fr_redis_pending(const fr_redis_t *r);

/* Subscribes this connection to a channel (kept across reconnects). The
 * connection may then only be used for more subscriptions. May be called
 * before fr_redis_start or while disconnected: the channel is subscribed on
 * the next (re)connect, before the state cb reports connected. Returns 0,
 * -EEXIST (channel already subscribed), -EBUSY (commands still pending),
 * -EINVAL (empty channel) or -ESHUTDOWN. `cb` fires once per message. */
FR_MUST_CHECK int fr_redis_subscribe(fr_redis_t *r, const char *channel, fr_redis_msg_cb cb, void *data);

/* Stops reconnecting, completes pending commands with NULL, closes the
 * connection and its handles; `cb` (may be NULL) fires once everything is
 * closed, after which the client is freed. Safe to call from any callback;
 * the teardown runs on the next loop turn. A second call does nothing. */
void fr_redis_close(fr_redis_t *r, void (*cb)(void *data), void *data);

#endif
