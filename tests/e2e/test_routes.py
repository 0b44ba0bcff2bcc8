"""e2e: routes declared in YAML (tests/e2e/pipelines/routes, docs/routes.md):
every handler kind, parameter type and output shape, checked against the
same query run with psycopg2; FastAPI-shaped 422s naming the parameter;
404s; 405; CSV; /openapi.json listing the routes (the push routes too).
Cache routes with names of their own (tests/e2e/pipelines/cachex): their
declared parameters are checked. /metrics counts every request under its
route pattern and status, writes and admin routes included. --help lists no
admin port."""
import csv
import http.client
import io
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BIN, Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "routes")
CX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "cachex")
HEADER = "sym,at,px,qty,ok,note\n"


def raw(stack, method, path, body=None, headers=None):
    """(status, body bytes, {lower-case header: value}) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def body(resp):
    return json.loads(resp[1]) if resp[1] else None


def detail_locs(resp):
    d = body(resp)["detail"]
    return [tuple(x["loc"]) for x in d]


def iso(ts):
    s = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        s += (".%06d" % ts.microsecond).rstrip("0")
    return s + "Z"


def metrics(stack):
    """{(route, method, status): count} of http_requests_total (summed over the workers)."""
    st, b, _ = raw(stack, "GET", "/metrics")
    out = {}
    for m in re.finditer(r'^http_requests_total\{route="([^"]*)",method="([^"]*)",status="([0-9]+)"\} ([0-9]+)$',
                         b.decode(), re.M):
        out[(m.group(1), m.group(2), int(m.group(3)))] = int(m.group(4))
    return out


def counted(t, stack, method, path, body=None, headers=None, want_route=None, want_status=None):
    """Sends one request and checks /metrics counted it once under want_route and its status."""
    before = metrics(stack)
    st, b, h = raw(stack, method, path, body, headers)
    key = (want_route, method, want_status if want_status is not None else st)
    after = wait_until(lambda: (lambda m: m if m.get(key, 0) > before.get(key, 0) else None)(metrics(stack)), 10,
                       what="%s %s counted" % (method, path))
    t.eq((st if want_status is None else want_status, after.get(key, 0) - before.get(key, 0)), (st, 1),
         "%s %s -> %d counted under route=%s" % (method, path, st, want_route))
    return st, b, h


def cache_routes(t, stack):
    """The cx cache routes: names from the YAML, declared params checked."""
    stack.drop("cx", "items", "a.csv", "sku,qty,price,place\nAB-1,5,2.5,north\nAB-2,,1,\"sou,th\"\n")
    wait_until(lambda: raw(stack, "GET", "/cx/stock/AB-2")[0] == 200, 30, what="cx items cached")
    st, b, _ = raw(stack, "GET", "/cx/stock?sku=AB-1&attr=qty")
    t.eq((st, json.loads(b)), (200, {"qty": 5}), "cache_field with key sku, field attr")
    st, b, _ = raw(stack, "GET", "/cx/stock/AB-2")
    t.eq((st, json.loads(b)), (200, {"sku": "AB-2", "qty": None, "price": 1, "place": "sou,th"}),
         "cache_hash keyed by sku")
    st, b, _ = raw(stack, "GET", "/cx/stock/ZZ-9")
    t.eq((st, json.loads(b)), (404, {"detail": "no stock for ZZ-9"}), "missing key: the route's not_found")
    for path, loc, typ in (("/cx/stock?attr=qty", ("query", "sku"), "missing"),
                           ("/cx/stock?sku=ab-1&attr=qty", ("query", "sku"), "string_pattern_mismatch"),
                           ("/cx/stock?sku=AB-1&attr=colour", ("query", "attr"), "enum"),
                           ("/cx/stock?sku=AB-1", ("query", "attr"), "missing"),
                           ("/cx/stock/%FF%FE", ("path", "sku"), "string_type"),
                           ("/cx/stock/A%01B", ("path", "sku"), "string_pattern_mismatch"),
                           ("/cx/stock/ABCDEFGHIJKLM", ("path", "sku"), "string_too_long")):
        st, b, _ = raw(stack, "GET", path)
        d = json.loads(b)["detail"] if st == 422 else b
        t.eq((st, [(tuple(x["loc"]), x["type"]) for x in d] if st == 422 else d), (422, [(loc, typ)]),
             "%s -> 422 naming %s (%s)" % (path, loc[1], typ))
    st, b, _ = raw(stack, "POST", "/cx/stock", json.dumps({"skus": ["AB-1", "ZZ-9"], "fields": ["place"]}),
                   {"Content-Type": "application/json"})
    t.eq((st, json.loads(b)), (200, {"skus": {"AB-1": {"place": "north"}}, "missing": ["ZZ-9"]}),
         "cache_multi reads the body members the route names (skus, fields) and answers under skus")
    st, b, _ = raw(stack, "POST", "/cx/stock", json.dumps({"skus": ["AB-1", "x\u0001"], "fields": ["nope"]}),
                   {"Content-Type": "application/json"})
    t.eq((st, [tuple(x["loc"]) for x in json.loads(b)["detail"]]),
         (422, [("body", "skus", 1), ("body", "fields", 0)]), "cache_multi 422 names the members")
    # the players routes' parameter names are not looked for here
    st, b, _ = raw(stack, "GET", "/cx/stock?player_id=AB-1&attribute_name=qty")
    t.eq(st, 422, "player_id/attribute_name mean nothing to the cx route")


def main(t):
    # --help describes the api as it is: no admin port
    hp = subprocess.run([os.path.join(BIN, "freshet-api"), "--help"], capture_output=True, text=True, timeout=30)
    t.eq(hp.returncode, 0, "freshet-api --help exits 0")
    t.check("--admin-addr" not in hp.stdout and "FRESHET_ADMIN_ADDR" not in hp.stdout and "/metrics" in hp.stdout,
            "freshet-api --help lists no admin port and says where /metrics is")

    # Under ASan freed memory sits in a quarantine (256 MB by default), which
    # would hide what the streaming bound below is about: keep it small.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=1"}
    stack = t.stack = Stack(pipelines=PIPE + "," + CX, extra_env=env).start("loader", "ingest", "api")
    stack.drop("rt", "ticks", "a.csv", HEADER +
               "AUSD,2024-01-01T00:00:00Z,1.5,10,true,plain\n"
               "AUSD,2024-01-01T01:00:00Z,2.25,20,false,\"with, comma\"\n"
               "AUSD,2024-01-01T02:00:00.5Z,3,30,,\n"
               "BUSD,2023-05-01T00:00:00Z,100,1,true,b\n")
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM rt.ticks") == 4, 30, what="ticks loaded")

    # static
    st, b, _ = raw(stack, "GET", "/rt/health")
    t.eq((st, json.loads(b)), (200, {"detail": "Healthy"}), "static handler")

    # sql list: path param folded upper + suffix, checked against psycopg2
    st, b, h = raw(stack, "GET", "/rt/ticks/a")
    t.eq(st, 200, "GET /rt/ticks/a (a -> AUSD)")
    rows = stack.pg.query("SELECT sym, at, px::float8, qty, ok, note FROM rt.ticks WHERE sym = 'AUSD' ORDER BY at")
    want = [{"sym": r[0], "at": iso(r[1]), "px": r[2], "qty": r[3], "ok": r[4], "note": r[5]} for r in rows]
    t.eq(json.loads(b), want, "rows equal the same query in psycopg2, typed (numbers, ISO Z, bool, null)")
    st, b, _ = raw(stack, "GET", "/rt/ticks/AUSD?from=2024-01-01T01:00:00Z&to=1704074400500")
    t.eq([r["at"] for r in json.loads(b)], ["2024-01-01T01:00:00Z", "2024-01-01T02:00:00.5Z"],
         "from ISO and to epoch ms, inclusive")
    st, b, _ = raw(stack, "GET", "/rt/ticks/AUSD?limit=1")
    t.eq(len(json.loads(b)), 1, "limit")

    # CSV by ?format=csv and by Accept
    st, b, h = raw(stack, "GET", "/rt/ticks/AUSD?format=csv")
    t.eq(st, 200, "csv 200")
    t.check(h.get("content-type", "").startswith("text/csv"), "csv content type: %r" % h.get("content-type"))
    got = list(csv.reader(io.StringIO(b.decode())))
    t.eq(got[0], ["sym", "at", "px", "qty", "ok", "note"], "csv header")
    t.eq(got[2][5], "with, comma", "csv quoting")
    t.eq(len(got), 4, "csv rows")
    st, b, h = raw(stack, "GET", "/rt/ticks/AUSD", headers={"Accept": "text/csv"})
    t.check(st == 200 and b.startswith(b"sym,at"), "Accept: text/csv")

    # 422s naming the parameter
    st, b, _ = raw(stack, "GET", "/rt/ticks/AUSD?limit=0")
    t.eq((st, detail_locs((st, b))), (422, [("query", "limit")]), "limit below min -> 422 naming limit")
    st, b, _ = raw(stack, "GET", "/rt/ticks/AUSD?limit=abc")
    t.eq(json.loads(b)["detail"][0]["type"], "int_parsing", "limit not an int")
    st, b, _ = raw(stack, "GET", "/rt/ticks/A1B")
    t.eq((st, detail_locs((st, b))), (422, [("path", "sym")]), "pattern mismatch -> 422 naming sym")
    st, b, _ = raw(stack, "GET", "/rt/ticks/AUSD?from=yesterday")
    t.eq((st, detail_locs((st, b))), (422, [("query", "from")]), "bad timestamp -> 422 naming from")
    st, b, _ = raw(stack, "GET", "/rt/ticks/AUSD?from=2024-02-01T00:00:00Z&to=2024-01-01T00:00:00Z")
    t.eq((st, detail_locs((st, b))), (422, [("query", "from")]), "from after to -> 422")
    t.eq(json.loads(b)["detail"][0]["msg"], "from must not be after to", "check message")

    # exists -> 404 with the param substituted
    st, b, _ = raw(stack, "GET", "/rt/ticks/zz")
    t.eq((st, json.loads(b)), (404, {"detail": "Unknown symbol ZZUSD"}), "unknown symbol -> 404")

    # one, with a default from the pipeline's now (2024)
    st, b, _ = raw(stack, "GET", "/rt/count")
    want = stack.pg.scalar("SELECT count(*) FROM rt.ticks WHERE extract(year FROM at AT TIME ZONE 'UTC') = 2024")
    t.eq(json.loads(b), {"ticks": want, "year": 2024}, "one row, year defaults to now's year")
    st, b, _ = raw(stack, "GET", "/rt/count?year=2023")
    t.eq(json.loads(b)["ticks"], 1, "year=2023")
    st, b, _ = raw(stack, "GET", "/rt/count?year=2023&format=csv")
    t.eq(b.decode(), "ticks,year\r\n1,2023\r\n", "one row as CSV")

    # envelope + allowed values
    st, b, _ = raw(stack, "GET", "/rt/by-sym/AUSD")
    e = json.loads(b)
    t.eq((e["count"], len(e["items"]), e["items"][0]["at"]), (2, 2, "2024-01-01T02:00:00.5Z"), "envelope")
    st, b, _ = raw(stack, "GET", "/rt/by-sym/CUSD")
    t.eq((st, json.loads(b)["detail"][0]["type"]), (422, "enum"), "allowed values -> 422 enum")

    # value, and its 404
    st, b, _ = raw(stack, "GET", "/rt/last/BUSD")
    t.eq((st, json.loads(b)), (200, 100), "value shape")
    st, b, _ = raw(stack, "GET", "/rt/last/NOPE")
    t.eq((st, json.loads(b)), (404, {"detail": "no tick for NOPE"}), "value shape 404")

    # CSV-only route
    st, b, _ = raw(stack, "GET", "/rt/report.csv")
    t.eq((st, b.decode()), (200, "sym,n\r\nAUSD,3\r\nBUSD,1\r\n"), "csv-only route answers CSV by default")

    # 405 with Allow; unknown path 404
    st, b, h = raw(stack, "DELETE", "/rt/health")
    t.eq((st, h.get("allow")), (405, "GET"), "405 with Allow")
    st, b, _ = raw(stack, "GET", "/rt/nope")
    t.eq(st, 404, "unknown path")

    # push route: 1..3 rows, loads and is readable at once on 201
    st, b, h = raw(stack, "POST", "/rt/ticks", json.dumps(
        [{"sym": "CUSD", "at": "2024-03-01T00:00:00Z", "px": "7", "qty": "1"}]).encode(),
        headers={"Content-Type": "application/json"})
    t.check(st in (201, 202), "push answered %d %r" % (st, b[:200]))
    if st == 201:
        st2, b2, _ = raw(stack, "GET", "/rt/last/CUSD")
        t.eq((st2, json.loads(b2)), (200, 7), "a 201 row is readable at once")
    st, b, _ = raw(stack, "POST", "/rt/ticks", json.dumps(
        [{"sym": "DUSD", "at": "2024-03-01T00:00:00Z"}] * 4).encode(), headers={"Content-Type": "application/json"})
    t.eq(st, 422, "4 rows > max_rows 3 -> 422")

    # Large results stream (chunked, a page at a time from a cursor): a
    # 1M-row CSV arrives whole while the api's RSS stays bounded.
    import threading
    from harness import rss_kb
    api_pid = stack["api"].proc.pid
    peak = [rss_kb(api_pid) or 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(api_pid) or 0)
            done.wait(0.05)
    th = threading.Thread(target=sample)
    th.start()
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=120)
    c.request("GET", "/rt/big?n=1000000&format=csv")
    r = c.getresponse()
    te = r.getheader("Transfer-Encoding")
    lines = 0
    last = b""
    while True:
        chunk = r.read(1 << 16)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        last = (last + chunk)[-80:]
    c.close()
    done.set()
    th.join()
    t.eq((r.status, te), (200, "chunked"), "1M-row CSV is streamed with chunked encoding")
    t.eq(lines, 1000001, "every row arrives (header + 1,000,000)")
    t.check(last.endswith(b"1000000,%s\r\n" % __import__("hashlib").md5(b"1000000").hexdigest().encode()),
            "last row intact: %r" % last[-60:])
    t.check(peak[0] < 32 * 1024, "api peak RSS while streaming %d kB < 32 MB" % peak[0])
    print("api peak RSS during the 1M-row CSV: %.1f MB" % (peak[0] / 1024.0))
    st, b, h = raw(stack, "GET", "/rt/big?n=250000")
    rows = json.loads(b)
    t.check(st == 200 and len(rows) == 250000 and rows[-1]["i"] == 250000 and h.get("transfer-encoding") == "chunked",
            "250k-row JSON list streamed and valid")
    st, b, h = raw(stack, "GET", "/rt/big-envelope?n=4500")
    e = json.loads(b)
    t.eq((e["count"], len(e["items"]), e["items"][-1]["i"]), (4500, 4500, 4500), "envelope across pages")
    st, b, h = raw(stack, "GET", "/rt/big?n=10")
    t.check("content-length" in h and len(json.loads(b)) == 10, "a one-page result has a Content-Length")
    # the connection stays usable after a streamed answer (keep-alive)
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    c.request("GET", "/rt/big?n=5000&format=csv")
    r1 = c.getresponse()
    n1 = r1.read().count(b"\n")
    c.request("GET", "/rt/health")
    r2 = c.getresponse()
    t.eq((n1, r2.status, r2.read()), (5001, 200, b'{"detail": "Healthy"}'), "keep-alive after a stream")
    c.close()

    # OpenAPI lists every declared route with its parameters
    st, b, _ = raw(stack, "GET", "/openapi.json")
    doc = json.loads(b)
    t.eq(doc["openapi"], "3.1.0", "openapi version")
    for p in ["/rt/health", "/rt/ticks/{sym}", "/rt/count", "/rt/by-sym/{sym}", "/rt/last/{sym}", "/rt/ticks"]:
        t.check(p in doc["paths"], "openapi has %s" % p)
    lim = [x for x in doc["paths"]["/rt/ticks/{sym}"]["get"]["parameters"] if x["name"] == "limit"][0]
    t.eq((lim["schema"]["minimum"], lim["schema"]["maximum"]), (1, 1000), "openapi carries bounds")
    push = doc["paths"].get("/v1/push/rt/ticks", {}).get("post", {})
    t.eq((push.get("x-role"), [x["name"] for x in push.get("parameters", [])]), ("write", ["partial"]),
         "openapi lists the push source's POST /v1/push/rt/ticks")
    t.check({"201", "202", "422"} <= set(push.get("responses", {})), "push responses in openapi")
    t.check(not any(p.startswith("/v1/push/cx/") for p in doc["paths"]), "no push path without a push source")

    cache_routes(t, stack)

    # /metrics: every request under its route pattern and status, whoever answered
    counted(t, stack, "GET", "/rt/ticks/a", want_route="/rt/ticks/{sym}")
    counted(t, stack, "GET", "/rt/big?n=5000", want_route="/rt/big")  # streamed
    counted(t, stack, "GET", "/cx/stock/AB-1", want_route="/cx/stock/{sku}")
    counted(t, stack, "GET", "/cx/stock/AB-1", want_route="/cx/stock/{sku}")  # from the process cache
    counted(t, stack, "GET", "/rt/ticks/A1B", want_route="/rt/ticks/{sym}", want_status=422)
    counted(t, stack, "DELETE", "/rt/health", want_route="/rt/health", want_status=405)
    counted(t, stack, "GET", "/rt/nope", want_route="unmatched", want_status=404)
    js = {"Content-Type": "application/json"}
    tick = json.dumps([{"sym": "EUSD", "at": "2024-03-02T00:00:00Z", "px": "1"}]).encode()
    st, _, _ = counted(t, stack, "POST", "/rt/ticks", tick, js, want_route="/rt/ticks")
    t.check(st in (201, 202), "POST /rt/ticks answered %d" % st)
    st, _, _ = counted(t, stack, "POST", "/v1/push/rt/ticks", tick, js, want_route="/v1/push/{pipeline}/{dataset}")
    t.check(st in (201, 202), "POST /v1/push/rt/ticks answered %d" % st)
    counted(t, stack, "GET", "/v1/batches/01NOSUCHBATCH-0", want_route="/v1/batches/{id}", want_status=404)
    st, _, _ = counted(t, stack, "PUT", "/cx/items/AB-1", json.dumps({"qty": 7, "place": "east"}).encode(), js,
                       want_route="/cx/items/{id}")
    t.eq(st, 200, "PUT /cx/items/AB-1")
    counted(t, stack, "GET", "/cx/items/AB-1", want_route="/cx/items/{id}")
    counted(t, stack, "POST", "/admin/backup/cx.items", want_route="/admin/backup/{dataset}")
    counted(t, stack, "GET", "/healthz", want_route="/healthz")
    counted(t, stack, "GET", "/openapi.json", want_route="/openapi.json")
    m = metrics(stack)
    t.check(not any(r == "unmatched" and s < 400 for (r, _, s) in m),
            "no answered route is counted as unmatched: %r" % sorted(k for k in m if k[0] == "unmatched"))


if __name__ == "__main__":
    TestRun("routes").run(main)
