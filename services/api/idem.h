/* idem: the Idempotency-Key of writes. A write request carrying the header
 * is applied at most once per caller (the API key; "anon" when auth is off)
 * and key: the first request's answer (status, content type, Location,
 * body) is kept in Redis (fr:idem:{caller}:{key}, 24 h) and a retry gets it
 * back unchanged, with `Idempotent-Replayed: true`. A retry that arrives
 * while the first is in flight waits for its answer (bounded: the write wait
 * + 5 s), then answers 409. The same key with another method, path, query,
 * Content-Type or body answers 422. A 5xx answer is not kept (the retry runs
 * again). The batch such a write publishes is named from caller and key
 * (fr_api_idem_batch_id), so the loader's ledger loads it once even when
 * the record is gone. Loop thread only. */
#ifndef FR_API_IDEM_H
#define FR_API_IDEM_H

#include <stdbool.h>

#include "http.h"

struct fr_api_worker;

#define FR_API_IDEM_HEADER  "Idempotency-Key"
#define FR_API_IDEM_TTL_S   86400 /* a kept answer: 24 h */
#define FR_API_IDEM_MAX_KEY 255   /* bytes of a key; longer -> 422 */
#define FR_API_IDEM_POLL_MS 50    /* a waiting retry reads the record this often */

/* Runs the write (the request is this key's first). */
typedef void (*fr_api_idem_run)(struct fr_api_worker *w, fr_http_req_t *req, void *arg);

/* Returns false, having done nothing, when req has no Idempotency-Key or
 * already went through a gate (the caller serves it as usual). Otherwise
 * returns true and takes the request over: run(w, req, arg) fires at most
 * once, later, when req is its key's first (its answer is then kept), or
 * req is answered here: the kept answer, 409 (the first still in flight
 * after the wait), 422 (a bad key, or the key of another request), 503
 * (Redis unavailable, draining). arg must live as long as req. */
bool fr_api_idem_gate(struct fr_api_worker *w, fr_http_req_t *req, fr_api_idem_run run, void *arg);

/* The batch id of a gated request ("idem-" + 32 hex digits of SHA-256 of
 * caller and key: the same for every retry), or NULL when req was not
 * gated. Borrowed from req. */
const char *fr_api_idem_batch_id(const fr_http_req_t *req);

/* The worker drains: waiting retries answer 503 now. */
void fr_api_idem_drain(struct fr_api_worker *w);

#endif
