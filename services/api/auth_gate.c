/* auth_gate: the api's key checks (see auth_gate.h); router.c calls them. */
#include "auth_gate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "console.h"
#include "docsui.h"
#include "engine.h"
#include "log.h"

#define HASH_KEY_MAX 4096 /* bytes of key read from stdin */

int fr_api_auth_setup(fr_auth_t **out, char err[FR_ERR_LEN])
{
    const char *mode = getenv("FRESHET_API_AUTH");
    const char *path = getenv("FRESHET_API_KEYS_FILE");

    *out = NULL;
    if (!mode || mode[0] == '\0' || strcmp(mode, "off") == 0)
        return 0;
    if (strcmp(mode, "on") != 0) {
        snprintf(err, FR_ERR_LEN, "FRESHET_API_AUTH='%.32s': use on or off", mode);
        return -EINVAL;
    }
    if (!path || path[0] == '\0') {
        snprintf(err, FR_ERR_LEN,
                 "FRESHET_API_AUTH=on needs FRESHET_API_KEYS_FILE (lines name:role:sha256hex; see docs/api-auth.md)");
        return -EINVAL;
    }
    *out = fr_auth_load(path, err);
    if (!*out)
        return -EINVAL;
    fr_info("api keys: %zu loaded from %s", fr_auth_count(*out), path);
    return 0;
}

bool fr_api_auth_open_path(const char *path)
{
    return strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 || strcmp(path, "/metrics") == 0 ||
           strcmp(path, "/openapi.json") == 0 || fr_api_docsui_path(path);
}

enum fr_auth_role fr_api_auth_default_role(const char *method, const char *path)
{
    if (strncmp(path, "/admin/", 7) == 0 || fr_api_console_path(path))
        return FR_AUTH_ROLE_ADMIN;
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 || strcmp(method, "OPTIONS") == 0)
        return FR_AUTH_ROLE_READ;
    return FR_AUTH_ROLE_WRITE;
}

/* The key check of req: 0, or the refusal's status with its headers added
 * and *detail set. Refusals are logged at info (client, route, key): they
 * are what an operator looks for after an attack or a broken client. */
static int decide(fr_auth_t *a, fr_http_req_t *req, enum fr_auth_role need, const char **detail)
{
    struct fr_auth_decision d;
    char retry[16];

    if (!a || need == FR_AUTH_ROLE_NONE)
        return 0;
    fr_auth_check_from(a, fr_http_req_header(req, "Authorization"), fr_http_req_peer(req), need, fr_mono_ms(), &d);
    switch (d.status) {
    case 0:
        return 0;
    case 401:
        if (fr_api_console_path(fr_http_req_path(req))) /* a browser: its login prompt sends Basic */
            fr_http_add_header(req, "WWW-Authenticate", "Basic realm=\"freshet console\", charset=\"UTF-8\"");
        else
            fr_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"freshet\"");
        break;
    case 429:
        snprintf(retry, sizeof(retry), "%u", d.retry_after_s);
        fr_http_add_header(req, "Retry-After", retry);
        break;
    default:
        break;
    }
    fr_info("auth: %d for %s %s from %s (key %s)", d.status, fr_http_req_method(req), fr_http_req_path(req),
            fr_http_req_peer(req), d.key_name ? d.key_name : "-");
    *detail = d.detail;
    return d.status;
}

bool fr_api_auth_gate(fr_auth_t *a, fr_http_req_t *req, enum fr_auth_role need)
{
    const char *detail = NULL;
    int status = decide(a, req, need, &detail);
    if (status == 0)
        return true;
    fr_http_respond_detail(req, status, detail);
    return false;
}

/* Marks a request whose key the expect hook already checked (one check,
 * one token, per request). */
static const char g_checked;

static enum fr_auth_role need_of(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    if (!w->auth || fr_api_auth_open_path(path))
        return FR_AUTH_ROLE_NONE;
    const char *method = fr_http_req_method(req);
    const char *role = fr_api_engine_role(w->engine, method, path);
    enum fr_auth_role r;
    if (role && fr_auth_role_parse(role, strlen(role), &r))
        return r;
    return fr_api_auth_default_role(method, path);
}

int fr_api_auth_expect(fr_http_req_t *req, const char **detail, void *data)
{
    struct fr_api_worker *w = data;
    int status = decide(w->auth, req, need_of(w, req), detail);
    if (status == 0)
        fr_http_req_set_data(req, (void *)&g_checked);
    return status;
}

bool fr_api_auth_check(struct fr_api_worker *w, fr_http_req_t *req)
{
    if (fr_http_req_data(req) == &g_checked) {
        fr_http_req_set_data(req, NULL); /* checked before its body (Expect: 100-continue) */
        return true;
    }
    if (!w->auth || fr_api_auth_open_path(fr_http_req_path(req)))
        return true;
    return fr_api_auth_gate(w->auth, req, need_of(w, req));
}

int fr_api_hash_key_main(void)
{
    char buf[HASH_KEY_MAX + 1];
    char hex[65];
    size_t n = fread(buf, 1, sizeof(buf), stdin);
    size_t k;

    if (ferror(stdin)) {
        fprintf(stderr, "freshet-api hash-key: cannot read the key from stdin\n");
        return 2;
    }
    if (n > HASH_KEY_MAX) {
        fprintf(stderr, "freshet-api hash-key: key longer than %d bytes\n", HASH_KEY_MAX);
        return 2;
    }
    k = n;
    if (k > 0 && buf[k - 1] == '\n')
        k--;
    if (k > 0 && buf[k - 1] == '\r')
        k--;
    if (k == 0) {
        fprintf(stderr, "freshet-api hash-key: empty key (usage: echo -n KEY | freshet-api hash-key)\n");
        return 2;
    }
    fr_auth_hash_key(buf, n, hex);
    printf("%s\n", hex);
    return 0;
}
