/* auth_gate: API keys applied to freshet-api requests (docs/api-auth.md):
 * the key check of every request that is not on an open path, against the
 * role its route declares (engine.c) or the default role. Step 3 of the
 * front router (router.c), and the Expect: 100-continue hook. Loop thread
 * of its worker. */
#ifndef FR_API_AUTH_GATE_H
#define FR_API_AUTH_GATE_H

#include <stdbool.h>

#include "auth.h"
#include "http.h"

/* FRESHET_API_AUTH (off | on, default off) and FRESHET_API_KEYS_FILE: *out
 * gets the loaded keys (owned by the caller, fr_auth_free) or NULL when
 * auth is off. Returns 0, or -EINVAL with err naming the variable or the
 * file:line and the fix. Start-up only (reads the file). */
FR_MUST_CHECK int fr_api_auth_setup(fr_auth_t **out, char err[FR_ERR_LEN]);

/* Paths open without a key: /healthz, /readyz, /metrics, /openapi.json,
 * /docs and its files. */
bool fr_api_auth_open_path(const char *path);
/* The role a request needs when its route declares none: /admin/... →
 * admin; GET, HEAD, OPTIONS → read; other methods → write. */
enum fr_auth_role fr_api_auth_default_role(const char *method, const char *path);

/* Checks req's key for a route needing `need`. Returns true to go on;
 * false after answering 401 (with WWW-Authenticate: Bearer), 403 or 429
 * (with Retry-After). a NULL (auth off) or need NONE always goes on. */
bool fr_api_auth_gate(fr_auth_t *a, fr_http_req_t *req, enum fr_auth_role need);

/* The fr_http_expect_cb of the api's servers (data = the struct
 * fr_api_worker): the key of an "Expect: 100-continue" request is checked
 * before its body is sent, with the same rules and token as the front
 * handler (which then does not check it again); a refusal is its answer. */
int fr_api_auth_expect(fr_http_req_t *req, const char **detail, void *data);

struct fr_api_worker;
/* The auth step of the front router (router.c): true to go on; false
 * after answering the refusal. Auth off, an open path, or a key the expect
 * hook already checked for this request: true. */
bool fr_api_auth_check(struct fr_api_worker *w, fr_http_req_t *req);

/* The fr_http_handler the api's servers are created with (router.c, data
 * = the struct fr_api_worker): the one dispatch of a request. */
void fr_api_front(fr_http_req_t *req, void *data);

/* `freshet-api hash-key`: reads a key from stdin, prints its SHA-256 hex
 * (the third field of a keys file line). Returns the exit code. */
int fr_api_hash_key_main(void);

#endif
