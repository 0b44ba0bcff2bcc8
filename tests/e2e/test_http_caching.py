"""e2e: HTTP caching of read answers (docs/routes.md "HTTP caching",
tests/e2e/pipelines/httpc). Every read route kind answers ETag,
Last-Modified and Age; a matching If-None-Match gets 304 (lists, W/, *;
"*" never for an answer that would be a 404); the tag changes exactly when
the data behind the answer changes: a batch of another dataset leaves it, a
batch touching the key (or the SQL route's dataset) changes it, and a key
the batch did not touch keeps its tag. 304s are answered while the test's
own redis-server and PostgreSQL (postmaster and backends) are stopped
(SIGSTOP), so they touched neither. A kept SQL-route answer is served from
the process (api_answer_cache_total hit) and replaced after a batch. A
route whose data is older than its max_age counts api_stale_answers_total
and publishes route.stale. Another api replica, and the api after a
restart, answer the same tags. GET /v1/provenance/{cache}/{key} names the
batches and the landed raw files whose sha256 is the dropped files'."""
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Daemon, Stack, TestRun, free_port, tmpdir, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "httpc")
ITEMS_A = "sku,qty,place\nAB-1,5,north\nAB-2,7,south\nAB-3,1,north\n"
ITEMS_B = "sku,qty,place\nAB-1,6,north\n"
PRICES_A = "sym,px\nBTC,100\n"
PRICES_B = "sym,px\nETH,5\n"


class Conn:
    """One keep-alive connection (one api worker): (status, body, headers) per request."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path, inm=None):
        try:
            self.c.request("GET", path, headers={"If-None-Match": inm} if inm else {})
            r = self.c.getresponse()
            return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
        except (OSError, http.client.HTTPException):
            self.c.close()  # a fresh connection for the next try
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            raise

    def close(self):
        self.c.close()


def metric(stack, name, labels=""):
    st, text = stack.get("/metrics")
    m = re.search(r"^%s%s (\d+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return int(m.group(1)) if m else 0


def tagged(c, path):
    """The answer once it carries an ETag and Last-Modified (the worker has read the versions)."""
    out = {}

    def ok():
        st, b, h = c.get(path)
        if st == 200 and "etag" in h and "last-modified" in h:
            out["r"] = (st, b, h)
            return True
        return False
    wait_until(ok, 30, what="ETag on " + path)
    return out["r"]


def main(t):
    stack = t.stack = Stack(pipelines=PIPE, extra_env={"FRESHET_API_WORKERS": "1"}).start()
    stack.drop("hc", "items", "a.csv", ITEMS_A)
    stack.drop("hc", "prices", "p.csv", PRICES_A)
    c = Conn(stack.api_port)
    wait_until(lambda: c.get("/hc/stock/AB-1")[0] == 200, 30, what="stock cached")
    wait_until(lambda: c.get("/hc/price/BTC")[0] == 200, 30, what="prices loaded")

    # --- every read route kind carries ETag, Last-Modified, Age
    st, body, h = tagged(c, "/hc/stock/AB-1")
    e_ab1 = h["etag"]
    t.check(e_ab1.startswith('W/"') and e_ab1.endswith('"'), "weak ETag: %r" % e_ab1)
    t.check("last-modified" in h and h["last-modified"].endswith(" GMT"), "cache route Last-Modified: %r" % h)
    t.check(h.get("age", "").isdigit(), "cache route Age: %r" % h)
    e_ab2 = tagged(c, "/hc/stock/AB-2")[2]["etag"]
    t.check(e_ab1 != e_ab2, "two keys, two tags")
    st, body, h = tagged(c, "/hc/items")
    e_items = h["etag"]
    t.check("last-modified" in h and h.get("age", "").isdigit(), "sql route Last-Modified and Age: %r" % h)
    t.eq([r["sku"] for r in json.loads(body)], ["AB-1", "AB-2", "AB-3"], "items answer")
    e_north = tagged(c, "/hc/items?place=north")[2]["etag"]
    e_csv = tagged(c, "/hc/items?format=csv")[2]["etag"]
    t.check(len({e_items, e_north, e_csv}) == 3, "parameters and format are part of the tag")
    e_row = tagged(c, "/hc/rows/AB-1")[2]["etag"]
    e_price = tagged(c, "/hc/price/BTC")[2]["etag"]
    st, body, h = c.get("/hc/clock")
    t.check(st == 200 and "etag" not in h, "a route reading the clock carries no ETag: %r" % h)
    t.check("last-modified" in h and h.get("age", "").isdigit(), "but Last-Modified and Age of its data: %r" % h)

    # --- If-None-Match: 304 with the tag, no body; lists, W/ and * match; others do not
    for path, tag in (("/hc/stock/AB-1", e_ab1), ("/hc/items", e_items), ("/hc/rows/AB-1", e_row),
                      ("/hc/price/BTC", e_price)):
        st, body, h = c.get(path, inm=tag)
        t.eq((st, body, h.get("etag")), (304, b"", tag), "304 for unchanged data on " + path)
        t.eq(c.get(path, inm='"nope", ' + tag.replace("W/", ""))[0], 304, "list and strong form match on " + path)
        t.eq(c.get(path, inm="*")[0], 304, "* matches on " + path)
        t.eq(c.get(path, inm='W/"0000000000000000"')[0], 200, "another tag: 200 on " + path)
    t.eq(c.get("/hc/price/NOPE", inm="*")[0], 404, "* does not match an answer that does not exist")
    t.eq(c.get("/hc/rows/ZZ-9", inm="*")[0], 404, "* on a missing crud row: 404")
    n304 = metric(stack, "api_not_modified_total")
    t.check(n304 >= 12, "api_not_modified_total counts the 304s: %d" % n304)

    # --- the SQL answer is kept in the process
    hits = metric(stack, "api_answer_cache_total", '{result="hit"}')
    st, body, h = c.get("/hc/items")
    t.eq((st, h.get("etag")), (200, e_items), "kept answer, same tag")
    t.check(metric(stack, "api_answer_cache_total", '{result="hit"}') > hits, "answer cache hit counted")
    t.check(metric(stack, "api_answer_cache_bytes") > 0, "api_answer_cache_bytes")

    # --- a batch of another dataset: tags of the items routes stay
    stack.drop("hc", "prices", "p2.csv", PRICES_B)
    wait_until(lambda: c.get("/hc/price/BTC")[2].get("etag") not in (None, e_price), 30,
               what="prices batch seen by the api (its route's tag moved)")
    for path, tag in (("/hc/stock/AB-1", e_ab1), ("/hc/items", e_items), ("/hc/rows/AB-1", e_row)):
        t.eq(c.get(path, inm=tag)[0], 304, "batch of another dataset: same tag on " + path)

    # --- 304 with Redis and PostgreSQL stopped (SIGSTOP of the test's own
    # redis-server, postmaster and backends): answered from what the process knows
    warm = c.get("/hc/stock/AB-2")
    t.eq(warm[2].get("etag"), e_ab2, "AB-2 tag")
    with open(os.path.join(stack.pg.data, "postmaster.pid")) as f:
        pm = int(f.readline())
    backends = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pm)], capture_output=True, text=True).stdout
    stopped = [stack.redis.proc.pid, pm] + [int(x) for x in backends.split()]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        for path, tag in (("/hc/stock/AB-2", e_ab2), ("/hc/items", e_items), ("/hc/rows/AB-1", e_row)):
            st, body, h = c.get(path, inm=tag)
            t.eq((st, h.get("etag")), (304, tag), "304 while Redis and PostgreSQL are stopped: " + path)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)

    # --- a batch touching AB-1: new tags exactly where the data changed
    subscriber = stack.redis.client().pubsub()
    subscriber.subscribe("fr:events")
    stack.drop("hc", "items", "b.csv", ITEMS_B)
    wait_until(lambda: json.loads(c.get("/hc/stock/AB-1")[1] or b"{}").get("qty") == 6, 30, what="AB-1 refreshed")
    st, body, h = c.get("/hc/stock/AB-1", inm=e_ab1)
    t.check(st == 200 and h.get("etag") not in (None, e_ab1), "AB-1 changed: 200 with a new tag (%s)" % h.get("etag"))
    t.eq(c.get("/hc/stock/AB-1", inm=h.get("etag"))[0], 304, "the new tag is 304")
    t.eq(c.get("/hc/stock/AB-2", inm=e_ab2)[0], 304, "AB-2, not in the batch: same tag")
    wait_until(lambda: c.get("/hc/items")[2].get("etag") != e_items, 30, what="items tag moved")
    st, body, h = c.get("/hc/items", inm=e_items)
    t.eq(st, 200, "sql route after a batch of its dataset: 200")
    t.eq([r["qty"] for r in json.loads(body)], [6, 7, 1], "kept answer replaced by the new data")
    t.check(c.get("/hc/rows/AB-1", inm=e_row)[0] == 200, "crud read after a batch of its dataset: 200")
    t.check(metric(stack, "api_answer_cache_total", '{result="invalidated"}') > 0, "kept answers invalidated")

    # --- max_age: /hc/price has 1s; its data ages past it
    wait_until(lambda: c.get("/hc/price/BTC")[0] == 200 and metric(stack, "api_stale_answers_total") > 0, 30,
               what="api_stale_answers_total")
    stale = []

    def got_stale():
        m = subscriber.get_message(timeout=0.2)
        while m:
            if m["type"] == "message":
                ev = json.loads(m["data"])
                if ev.get("type") == "route.stale":
                    stale.append(ev)
            m = subscriber.get_message(timeout=0.01)
        return bool(stale)
    wait_until(got_stale, 30, what="route.stale event")
    t.eq((stale[0]["pipeline"], stale[0]["route"], stale[0]["max_age_s"]), ("hc", "price", 1), "route.stale event")
    t.check(stale[0]["age_s"] >= 1, "route.stale age_s: %r" % stale[0])
    t.check("max_age of 1 s" in stack["api"].log(), "stale route logged")
    subscriber.close()

    # --- the same tags from another api replica, and after a restart
    now = {p: c.get(p)[2].get("etag") for p in ("/hc/stock/AB-1", "/hc/items", "/hc/rows/AB-1", "/hc/price/BTC")}
    port2 = free_port()
    api2 = Daemon("api", dict(stack.env, FRESHET_API_ADDR="127.0.0.1:%d" % port2), tmpdir("freshet-api2-")).start()
    wait_until(lambda: stack.get("/healthz", port=port2)[0] == 200, 20, what="second api up")
    c2 = Conn(port2)
    for p, tag in now.items():
        t.eq(tagged(c2, p)[2]["etag"], tag, "another api replica, same tag on " + p)
    c2.close()
    t.eq(api2.stop(), 0, "second api drains and exits 0")
    c.close()
    t.eq(stack["api"].stop(), 0, "api drains and exits 0 (ASan: nothing leaked)")
    stack["api"].start()
    wait_until(lambda: stack.get("/healthz")[0] == 200, 20, what="api back")
    c = Conn(stack.api_port)
    for p, tag in now.items():
        t.eq(tagged(c, p)[2]["etag"], tag, "after an api restart, same tag on " + p)

    # --- provenance of a cache key: the batches and landed files behind it
    st, prov = stack.get("/v1/provenance/stock/AB-1")
    t.eq(st, 200, "provenance answer: %r" % (prov,))
    if st == 200:
        batches = prov["batches"]
        want_b = hashlib.sha256(ITEMS_B.encode()).hexdigest()
        want_a = hashlib.sha256(ITEMS_A.encode()).hexdigest()
        t.eq([b["raw"]["sha256"] for b in batches], [want_b, want_a], "AB-1's batches, newest first, by raw sha256")
        ledger = stack.pg.query("SELECT batch_id FROM freshet.batches WHERE dataset = 'hc.items' "
                                "ORDER BY loaded_at DESC")
        t.eq([b["batch"] for b in batches], [r[0] for r in ledger], "batch ids from the ledger")
        for b in batches:
            path = os.path.join(stack.data_dir, b["raw"]["path"])
            with open(path, "rb") as f:
                t.eq(hashlib.sha256(f.read()).hexdigest(), b["raw"]["sha256"], "landed file's sha256 " + path)
            t.eq(b["dataset"], "hc.items", "batch dataset")
        t.eq((prov["cache"], prov["key"], prov["model"]["name"]), ("stock", "AB-1", "hc.stock"), "provenance names")
        t.check(prov["model"]["version"] >= 1 and prov["model"]["refreshed_at"], "model refresh: %r" % prov["model"])
        t.check(prov["value"]["qty"] == 6, "the value served: %r" % prov.get("value"))
    t.eq(stack.get("/v1/provenance/stock/ZZ-9")[0], 404, "provenance of an unknown key")
    t.eq(stack.get("/v1/provenance/nocache/AB-1")[0], 404, "provenance of an unknown cache")
    st, doc = stack.get("/openapi.json")
    t.check("/v1/provenance/{cache}/{key}" in doc.get("paths", {}), "provenance in /openapi.json")
    c.close()
    t.eq(stack["api"].stop(), 0, "api drains and exits 0 after the provenance reads")


if __name__ == "__main__":
    TestRun("test_http_caching").run(main)
