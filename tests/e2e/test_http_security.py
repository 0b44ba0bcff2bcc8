"""e2e: the api's request handling against the security issue's items
(docs/security.md, "HTTP requests and API keys").

- a crud resource's role covers every verb (list, item GET, POST, bulk,
  PUT, PATCH, DELETE), one role or {read, write}; /openapi.json says so;
- fields sent as chunked trailers are never headers: an Authorization
  trailer does not authenticate (admin backup included), an X-Soft-Delete
  trailer does not hard-delete;
- 401/403/429 are counted in /metrics and logged at info; unknown keys are
  rate-limited per client address (429 with Retry-After);
- Expect: 100-continue gets 401/403 before the body when the key is
  refused, 100 Continue when it is good;
- 400 (JSON) on obs-fold, HTTP/1.1 without Host, two Authorization fields,
  Transfer-Encoding in HTTP/1.0; HEAD on a GET route answers its headers;
- a client that half-closes after its request gets the answer of an
  asynchronous route (a crud write through the stream)."""
import hashlib
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "secroles")
KEYS = {"read": "reader-key", "write": "writer-key", "admin": "admin-key"}


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def raw(stack, data, half_close=False, timeout=15):
    """Sends bytes, returns everything the server writes until it closes."""
    s = socket.create_connection(("127.0.0.1", stack.api_port), timeout=timeout)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def status_of(resp):
    line = resp.split(b"\r\n", 1)[0]
    return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None


def call(stack, method, path, role=None, body=None, headers=None):
    hd = dict(headers or {})
    if role:
        hd["Authorization"] = "Bearer " + KEYS[role]
    return stack.request(method, path, body=body, headers=hd)


def metric(stack, route, status):
    _, text = stack.get("/metrics")
    total = 0
    for line in text.splitlines():
        if line.startswith("http_requests_total{") and 'route="%s"' % route in line and \
                'status="%d"' % status in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def main(t):
    base = h.tmpdir()
    keys = os.path.join(base, "keys.txt")
    with open(keys, "w") as f:
        f.write("reader:read:%s\nwriter:write:%s\nops:admin:%s\n" % (sha("reader-key"), sha("writer-key"),
                                                                     sha("admin-key")))
    stack = h.Stack(pipelines=PIPE, extra_env={"FRESHET_API_AUTH": "on", "FRESHET_API_KEYS_FILE": keys,
                                               "FRESHET_API_WORKERS": "2", "FRESHET_LOG_LEVEL": "info"})
    t.stack = stack
    stack.start()

    # 1. roles of crud resources, every verb, each role of key
    st, _ = call(stack, "POST", "/v1/thing", "admin", {"id": 1, "name": "a"})
    t.eq(st, 201, "admin creates a thing")
    st, _ = call(stack, "POST", "/v1/note", "admin", {"id": 1, "name": "n"})
    t.eq(st, 201, "admin creates a note")
    verbs = [("GET", "%s", None), ("GET", "%s/1", None), ("POST", "%s", {"id": 2, "name": "b"}),
             ("POST", "%s/bulk", [{"id": 3, "name": "c"}]), ("PUT", "%s/1", {"id": 1, "name": "x"}),
             ("PATCH", "%s/1", {"name": "y"}), ("DELETE", "%s/1", None)]
    for role in ("read", "write"):
        for m, p, body in verbs:
            st, _ = call(stack, m, p % "/v1/thing", role, body)
            t.eq(st, 403, "role: admin on a crud route: %s %s with a %s key -> 403" % (m, p % "/v1/thing", role))
    for role in ("read", "write"):
        for m, p, body in verbs:
            st, _ = call(stack, m, p % "/v1/note", role, body)
            want = 200 if m == "GET" else 403
            t.eq(st, want, "role {read: read, write: admin}: %s %s with a %s key" % (m, p % "/v1/note", role))
    st, _ = call(stack, "GET", "/v1/thing/1", "admin")
    t.eq(st, 200, "admin reads a thing")
    st, _ = call(stack, "PATCH", "/v1/note/1", "admin", {"name": "z"})
    t.eq(st, 200, "admin writes a note")
    _, oa = stack.get("/openapi.json")
    paths = oa["paths"]
    for p in ("/v1/thing", "/v1/thing/{id}", "/v1/thing/bulk"):
        for m, op in paths[p].items():
            t.eq(op.get("x-role"), "admin", "openapi: %s %s x-role admin" % (m, p))
    t.eq(paths["/v1/note/{id}"]["get"]["x-role"], "read", "openapi: note get is read")
    t.eq(paths["/v1/note/{id}"]["delete"]["x-role"], "admin", "openapi: note delete is admin")
    t.eq(paths["/v1/note/bulk"]["post"]["x-role"], "admin", "openapi: note bulk is admin")

    # 2. trailers are not headers
    body = b'{"id": 9, "name": "t"}'
    chunked = b"%x\r\n%s\r\n0\r\nAuthorization: Bearer admin-key\r\n\r\n" % (len(body), body)
    r = raw(stack, b"POST /v1/thing HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    t.eq(status_of(r), 401, "an Authorization trailer does not authenticate a crud POST")
    r = raw(stack, b"POST /admin/backup/secroles.things HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n0\r\nAuthorization: Bearer admin-key\r\n\r\n")
    t.eq(status_of(r), 401, "an Authorization trailer does not authenticate an admin backup")
    st, _ = call(stack, "DELETE", "/v1/thing/1", "admin")
    t.eq(st, 204, "soft delete of thing 1")
    r = raw(stack, b"DELETE /v1/thing/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer admin-key\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\nX-Soft-Delete: false\r\n\r\n")
    t.check(status_of(r) in (204, 410), "a DELETE with an X-Soft-Delete trailer answers (%r)" % r[:60])
    n = stack.pg.scalar("SELECT count(*) FROM secroles.things WHERE id = 1")
    t.eq(n, 1, "X-Soft-Delete: false as a trailer does not hard-delete")

    # 3. refusals counted and logged; unknown keys limited per address
    before401 = metric(stack, "/v1/thing/{id}", 401)
    before403 = metric(stack, "/v1/thing/{id}", 403)
    call(stack, "GET", "/v1/thing/1")
    call(stack, "GET", "/v1/thing/1", "read")
    t.eq(metric(stack, "/v1/thing/{id}", 401), before401 + 1, "a 401 is counted in http_requests_total")
    t.eq(metric(stack, "/v1/thing/{id}", 403), before403 + 1, "a 403 is counted in http_requests_total")
    log = stack["api"].log()
    t.check('auth: 403 for GET /v1/thing/1' in log and '"info"' in log, "a 403 is logged at info")

    # 4. Expect: 100-continue is decided by the key first
    r = raw(stack, b"POST /v1/thing HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer writer-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n")
    t.eq(status_of(r), 403, "Expect with a key below the route's role: 403, no 100 Continue")
    t.check(b"100 Continue" not in r, "no 100 Continue before a refusal")
    r = raw(stack, b"POST /v1/thing HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n")
    t.eq(status_of(r), 401, "Expect without a key: 401")
    s = socket.create_connection(("127.0.0.1", stack.api_port), timeout=15)
    body = b'{"id": 5, "name": "e"}'
    s.sendall(b"POST /v1/thing HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer admin-key\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
    first = s.recv(4096)
    t.check(first.startswith(b"HTTP/1.1 100 Continue"), "a good key gets 100 Continue (%r)" % first[:40])
    s.sendall(body)
    rest = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        rest += b
    s.close()
    t.check(b"HTTP/1.1 201" in first + rest, "then the write answers 201")

    # 5. strict parsing, HEAD
    for name, req in (("obs-fold", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"),
                      ("no Host", b"GET /healthz HTTP/1.1\r\n\r\n"),
                      ("two Authorization", b"GET /v1/note/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer x\r\n"
                                            b"Authorization: Bearer reader-key\r\n\r\n"),
                      ("TE in HTTP/1.0", b"POST /v1/note HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")):
        r = raw(stack, req)
        t.eq(status_of(r), 400, "%s -> 400" % name)
        body = r.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in r else b""
        t.check(body.startswith(b'{"detail"'), "%s: the 400 has a JSON body (%r)" % (name, body[:60]))
    r = raw(stack, b"HEAD /v1/note/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer reader-key\r\n"
            b"Connection: close\r\n\r\n")
    t.eq(status_of(r), 200, "HEAD on a GET route -> 200")
    head, _, rest = r.partition(b"\r\n\r\n")
    t.check(b"Content-Length: " in head and b"Content-Length: 0" not in head, "HEAD has the GET's Content-Length")
    t.eq(rest, b"", "HEAD has no body")
    r = raw(stack, b"HEAD /v1/note HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer reader-key\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    t.eq(r.count(b"HTTP/1.1 200"), 2, "HEAD of a list, then a GET on the same connection: both 200 (%r)" % r[-80:])

    # 6. half-close after an asynchronous request (a crud write via the stream)
    body = b'{"id": 6, "name": "h"}'
    r = raw(stack, b"POST /v1/thing HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer admin-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), half_close=True)
    t.eq(status_of(r), 201, "a half-closed client gets the answer of an asynchronous write")

    # 3b. last: unknown keys from one address end in 429 (this blocks 127.0.0.1)
    codes = [call(stack, "GET", "/v1/note/1", headers={"Authorization": "Bearer guess-%d" % i})[0]
             for i in range(12)]
    t.check(codes[:3] == [401, 401, 401] and 429 in codes, "unknown keys are limited per address (%r)" % codes)
    st, _ = call(stack, "GET", "/v1/note/1", "read")
    t.eq(st, 429, "while limited, a good key from that address gets 429 too")
    t.check(metric(stack, "/v1/note/{id}", 429) >= 1, "the 429 is counted")
    time.sleep(1.2)
    st, _ = call(stack, "GET", "/v1/note/1", "read")
    t.eq(st, 200, "the address gets a try back after a second")


if __name__ == "__main__":
    h.TestRun("test_http_security").run(main)
