/* lease: one ingest replica at a time per http_json source (docs/sources.md
 * "Replicas"). A lease is a Redis string fr_names_src_lease() =
 * "{holder}/{token}" set NX with a TTL; each acquisition draws a fencing
 * token from INCR fr_names_src_fence(). The holder renews it (Lua
 * compare-and-extend) every renew_ms and releases it (compare-and-delete)
 * when its run ends or on SIGTERM, so another replica takes over at once;
 * a holder that dies is replaced when the TTL runs out. Writes of the
 * holder (batches, state) go through fenced scripts that check the lease
 * still has this acquisition's value, so a paused holder that lost its
 * lease cannot publish. Internal to freshet-ingest; loop thread only; uses
 * app->redis (read on each use). */
#ifndef FR_INGEST_LEASE_H
#define FR_INGEST_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"

#define FR_LEASE_TTL_MS_DEFAULT   5000u
#define FR_LEASE_RENEW_MS_DEFAULT 1000u
/* Error replies of the fenced scripts start with this. */
#define FR_LEASE_FENCED "FENCED"

/* EVAL script of a fenced XADD: KEYS = lease, stream; ARGV = lease value,
 * then the XADD arguments after the key ("*", field, value, ...). Answers
 * the entry id, or an error starting with FR_LEASE_FENCED. */
extern const char fr_lease_lua_xadd[];

/* FRESHET_LEASE_TTL_MS (1000..600000, default 5000) and
 * FRESHET_LEASE_RENEW_MS (100..ttl/2, default 1000) from the environment.
 * 0, or -EINVAL with err naming the variable. */
FR_MUST_CHECK int fr_lease_settings(uint32_t *ttl_ms, uint32_t *renew_ms, char err[FR_ERR_LEN]);
/* "{hostname}:{pid}:{random}": unique per process. */
void fr_lease_holder_id(char *out, size_t n);

typedef struct fr_lease fr_lease_t;

/* Acquisition result: rc 1 = acquired (state = the value of the state key
 * read in the same script, NULL when absent; borrowed for the call), 0 =
 * held by another (state = its holder's value), < 0 = no answer (Redis
 * down or an error reply). */
typedef void (*fr_lease_acquire_cb)(fr_lease_t *l, int rc, const char *state, size_t state_len, void *data);
/* A fenced write or release: rc 1 = done, 0 = the lease was not ours any
 * more (nothing written), < 0 = no answer. */
typedef void (*fr_lease_done_cb)(fr_lease_t *l, int rc, void *data);
/* The lease was lost while held (renewal found another value, or no
 * renewal succeeded for a whole TTL). Fires once per loss. */
typedef void (*fr_lease_lost_cb)(fr_lease_t *l, void *data);

/* key/fence/state: the three key names (copied). NULL never. */
fr_lease_t *fr_lease_new(struct fr_app *app, const char *key, const char *fence_key, const char *state_key,
                         const char *holder, uint32_t ttl_ms, uint32_t renew_ms, fr_lease_lost_cb lost, void *data);
/* Tries to take the lease (one script: NX set with token + GET state).
 * 0 (cb fires once) or -ENOTCONN / -EBUSY (another operation in flight;
 * cb does not fire). */
FR_MUST_CHECK int fr_lease_acquire(fr_lease_t *l, fr_lease_acquire_cb cb, void *data);
/* Writes the state key if the lease is still ours (fenced SET). 0 or
 * -ENOTCONN / -EPERM (not held); cb fires once on 0. */
FR_MUST_CHECK int fr_lease_set_state(fr_lease_t *l, const char *state, size_t len, fr_lease_done_cb cb, void *data);
/* Releases the lease if it is still ours (compare-and-delete), first
 * writing `state` (may be NULL) into the state key, and publishes
 * {"cmd":"lease_released",...} on fr:control so waiting replicas retry at
 * once; all in one script. Stops renewing now. 0 (cb fires once) or
 * -ENOTCONN / -EPERM (not held; cb does not fire). */
FR_MUST_CHECK int fr_lease_release(fr_lease_t *l, const char *state, size_t len, const char *pipeline,
                                   const char *source, fr_lease_done_cb cb, void *data);
bool fr_lease_held(const fr_lease_t *l);
/* True while a command of the lease is in flight. */
bool fr_lease_busy(const fr_lease_t *l);
const char *fr_lease_key(const fr_lease_t *l);
/* "{holder}/{token}" while held, else "". */
const char *fr_lease_value(const fr_lease_t *l);
uint64_t fr_lease_token(const fr_lease_t *l);
/* Stops renewing and closes the timer; cb once it is closed and no command
 * is in flight. The lease is not released (call fr_lease_release first).
 * Freed by fr_lease_free after the loop ended. */
void fr_lease_close(fr_lease_t *l, void (*cb)(void *data), void *data);
void fr_lease_free(fr_lease_t *l);

#endif
