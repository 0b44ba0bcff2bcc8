"""e2e: API keys on freshet-api (docs/api-auth.md): FRESHET_API_AUTH=on with a keys
file; open paths stay open; no/unknown key -> 401 with WWW-Authenticate;
a role below the route's -> 403; a key over its rate -> 429 with
Retry-After; `freshet-api hash-key`; a bad keys file refuses to start.
Runs the api with 2 workers, so the per-key bucket is shared across them."""
import hashlib
import http.client
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def req(stack, method, path, key=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        hdrs = {}
        if key is not None:
            hdrs["Authorization"] = "Bearer " + key
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def main(t):
    # hash-key: the same digest as sha256 of the key, newline dropped
    out = subprocess.run([os.path.join(h.BIN, "freshet-api"), "hash-key"], input=b"reader-key\n",
                         stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    t.eq(out, sha("reader-key"), "hash-key prints sha256 of the key")

    base = h.tmpdir()
    keys = os.path.join(base, "keys.txt")
    with open(keys, "w") as f:
        f.write("# test keys\n")
        f.write("reader:read:%s\n" % sha("reader-key"))
        f.write("writer:write:%s:1000:1000\n" % sha("writer-key"))
        f.write("ops:admin:%s\n" % sha("admin-key"))
        f.write("slow:read:%s:0.2:2\n" % sha("slow-key"))
    stack = h.Stack(extra_env={"FRESHET_API_AUTH": "on", "FRESHET_API_KEYS_FILE": keys,
                               "FRESHET_API_WORKERS": "2"})
    t.stack = stack
    stack.start("api")

    for p in ("/healthz", "/readyz", "/metrics", "/docs", "/docs/ui.css"):
        st, _ = req(stack, "GET", p)
        t.check(st in (200, 503), "%s is open without a key (got %d)" % (p, st))

    st, hd = req(stack, "GET", "/player/p1")
    t.eq(st, 401, "no key -> 401")
    t.check(hd.get("www-authenticate", "").startswith("Bearer"), "401 carries WWW-Authenticate: Bearer (%r)" % hd)
    st, _ = req(stack, "GET", "/player/p1", key="not-a-key")
    t.eq(st, 401, "unknown key -> 401")
    st, _ = req(stack, "GET", "/player/p1", key="")
    t.eq(st, 401, "empty bearer -> 401")

    st, _ = req(stack, "GET", "/no/such/route", key="reader-key")
    t.eq(st, 404, "reader passes the gate on a GET (404 from routing)")
    st, _ = req(stack, "POST", "/no/such/route", key="reader-key", body="{}")
    t.eq(st, 403, "reader on a write -> 403")
    st, _ = req(stack, "POST", "/no/such/route", key="writer-key", body="{}")
    t.eq(st, 404, "writer passes the gate on a write")
    st, _ = req(stack, "POST", "/admin/backup/x", key="writer-key", body="")
    t.eq(st, 403, "writer on an admin route -> 403")
    st, _ = req(stack, "POST", "/admin/backup/x", key="admin-key", body="")
    t.check(st not in (401, 403, 429), "admin passes the gate on an admin route (got %d)" % st)

    # slow: burst 2, 0.2/s: the third request in a row is limited
    codes = [req(stack, "GET", "/no/such/route", key="slow-key") for _ in range(4)]
    t.eq([c[0] for c in codes[:2]], [404, 404], "slow key: burst of 2 allowed")
    limited = [c for c in codes[2:] if c[0] == 429]
    t.check(len(limited) == 2, "slow key: then 429 (got %r)" % [c[0] for c in codes])
    if limited:
        ra = limited[0][1].get("retry-after", "")
        t.check(ra.isdigit() and int(ra) >= 1, "429 has Retry-After in seconds (%r)" % ra)
    st, _ = req(stack, "GET", "/no/such/route", key="reader-key")
    t.eq(st, 404, "other keys are not limited by slow's bucket")
    t.eq(stack["api"].stop(), 0, "api drains and exits 0")

    # the sample keys file docker-compose.yml mounts parses and works
    sample = h.Daemon("api", dict(stack.env, FRESHET_API_AUTH="on",
                                  FRESHET_API_KEYS_FILE=os.path.join(h.SRC, "deploy", "api-keys.sample.txt")), base)
    sample.start()
    h.wait_until(lambda: stack.get("/healthz")[0] == 200, 20, what="api with the sample keys")
    t.eq(req(stack, "GET", "/no/such/route", key="sample-read-key")[0], 404, "sample-read-key is accepted")
    t.eq(req(stack, "POST", "/admin/backup/x", key="sample-write-key", body="")[0], 403,
         "sample-write-key is not admin")
    t.eq(sample.stop(), 0, "api with the sample keys drains")

    # refusing to start: on without a keys file, a bad line
    bad = h.Daemon("api", dict(stack.env, FRESHET_API_AUTH="on", FRESHET_API_KEYS_FILE=""), base)
    bad.start()
    t.eq(bad.wait_exit(20), 2, "FRESHET_API_AUTH=on without a keys file exits 2")
    t.check("FRESHET_API_KEYS_FILE" in bad.log(), "the error names FRESHET_API_KEYS_FILE")
    with open(keys, "w") as f:
        f.write("reader:read:plain-text-key\n")
    bad = h.Daemon("api2", dict(stack.env, FRESHET_API_AUTH="on", FRESHET_API_KEYS_FILE=keys), base)
    bad.name = "api"
    bad.start()
    t.eq(bad.wait_exit(20), 2, "a keys file with a clear-text key exits 2")
    t.check("keys.txt:1" in bad.log() and "hash-key" in bad.log(), "the error names file:line and hash-key")


if __name__ == "__main__":
    h.TestRun("test_auth").run(main)
