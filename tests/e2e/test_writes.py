"""e2e: writes through the pipeline (README "Writes") on the
test pipeline tests/e2e/pipelines/crud: POST /v1/push/{pipeline}/{dataset}
validates rows like files do, publishes one batch, waits for the loader and
answers 201 with the rows; invalid rows -> 422 naming row and field with
nothing published; row-count bounds; CSV bodies; with the loader stopped
the answer is 202 + Location and GET /v1/batches/{id} says queued, then
loaded once the loader runs. Two api workers."""
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "crud")


def post(stack, path, body, ctype="application/json"):
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        c.request("POST", path, body=data, headers={"Content-Type": ctype})
        r = c.getresponse()
        raw = r.read()
        try:
            js = json.loads(raw) if raw else None
        except ValueError:
            js = raw
        return r.status, js, {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def send(stack, method, path, body, headers=None):
    """One request -> (status, raw body bytes, lower-cased headers)."""
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        c.request(method, path, body=body if isinstance(body, (str, bytes)) else json.dumps(body), headers=hdrs)
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def idempotency(t, stack):
    """Idempotency-Key: a retried write is applied once and answered the same."""
    count = lambda p: stack.pg.scalar("SELECT count(*) FROM crud.events WHERE player_id = %s", (p,))  # noqa: E731
    ev = [{"event": "start", "player_id": "k1", "ts": "2024-02-01T10:00:00Z", "country": "es"},
          {"event": "end", "player_id": "k1", "ts": "2024-02-01T11:00:00Z"}]
    st1, b1, h1 = send(stack, "POST", "/v1/push/crud/events", ev, {"Idempotency-Key": "order-1"})
    t.eq(st1, 201, "POST with an Idempotency-Key -> 201")
    t.eq(count("k1"), 2, "its 2 rows are in PostgreSQL")
    t.check(h1.get("location", "").startswith("/v1/batches/idem-"), "its batch id comes from the key (%r)" % h1)
    st2, b2, h2 = send(stack, "POST", "/v1/push/crud/events", ev, {"Idempotency-Key": "order-1"})
    t.eq((st2, b2), (st1, b1), "a retry with the same key answers the same status and body")
    t.eq(h2.get("location"), h1.get("location"), "... and the same Location")
    t.eq(h2.get("idempotent-replayed"), "true", "... marked Idempotent-Replayed: true")
    t.eq(count("k1"), 2, "the retry added no row")
    st, b, _ = send(stack, "POST", "/v1/push/crud/events", ev[:1], {"Idempotency-Key": "order-1"})
    det = json.loads(b).get("detail") if st == 422 else None
    t.check(st == 422 and det and det[0].get("loc") == ["header", "Idempotency-Key"],
            "the same key with another body -> 422 naming the header (%r %r)" % (st, b))
    st, b, _ = send(stack, "POST", "/v1/push/crud/items", [{"id": 77, "name": "x"}], {"Idempotency-Key": "order-1"})
    t.eq(st, 422, "the same key on another route -> 422")
    t.eq(stack.pg.scalar("SELECT count(*) FROM crud.items WHERE id = 77"), 0, "... and nothing written")
    t.eq(send(stack, "POST", "/v1/push/crud/events", ev, {"Idempotency-Key": "x" * 256})[0], 422,
         "a key longer than 255 characters -> 422")

    # concurrent retries (two workers): one write, every answer the same
    import threading
    ev2 = [{"event": "start", "player_id": "k2", "ts": "2024-02-02T10:00:00Z"}]
    answers = []

    def one():
        answers.append(send(stack, "POST", "/v1/push/crud/events", ev2, {"Idempotency-Key": "order-2"})[:2])
    ths = [threading.Thread(target=one) for _ in range(8)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    t.eq(len(answers), 8, "8 concurrent requests with one key answered")
    t.check(len(set(answers)) == 1 and answers[0][0] == 201,
            "they all answer the same 201 and body (%r)" % sorted(set(a[0] for a in answers)))
    t.eq(count("k2"), 1, "8 concurrent requests with one key add the row once")

    # without a key: as before, each POST adds its rows
    for _ in range(2):
        t.eq(send(stack, "POST", "/v1/push/crud/events", [{"event": "end", "player_id": "k3",
                                                              "ts": "2024-02-03T10:00:00Z"}])[0], 201, "POST, no key")
    t.eq(count("k3"), 2, "without a key a repeated POST adds its rows twice (today's behaviour)")

    # after an api restart the kept answer is served again
    t.eq(stack["api"].stop(), 0, "api stops")
    stack.start("api")
    st3, b3, h3 = send(stack, "POST", "/v1/push/crud/events", ev, {"Idempotency-Key": "order-1"})
    t.eq((st3, b3, h3.get("location")), (st1, b1, h1.get("location")),
         "after an api restart a retry still answers the first answer")
    t.eq(count("k1"), 2, "... and adds nothing")

    # the record lost (expired, or Redis flushed): the batch id from the key
    # still makes the loader's ledger skip the second copy
    r = stack.redis.client()
    keys = r.keys("fr:idem:*")
    t.check(len(keys) >= 2, "records kept under fr:idem:* (%r)" % keys)
    t.check(all(0 < r.ttl(k) <= 86400 for k in keys), "records expire within 24 h")
    r.delete(*keys)
    st, _, hd = send(stack, "POST", "/v1/push/crud/events", ev, {"Idempotency-Key": "order-1"})
    t.check(st in (201, 202) and hd.get("location") == h1.get("location"),
            "with the record gone the retry publishes the same batch id (%r %r)" % (st, hd.get("location")))

    def drained():
        g = [g for g in r.xinfo_groups("fr:stream:{crud.events}") if g["name"] in (b"loader", "loader")][0]
        last = r.xinfo_stream("fr:stream:{crud.events}")["last-generated-id"]
        return g["pending"] == 0 and g["last-delivered-id"] == last
    h.wait_until(drained, 30, what="the loader took every entry")
    t.eq(count("k1"), 2, "... and the ledger loads it once: still 2 rows")


def main(t):
    stack = h.Stack(pipelines=PIPE, extra_env={"FRESHET_API_WORKERS": "2", "FRESHET_API_WRITE_WAIT_MS": "5000"})
    t.stack = stack
    stack.start("loader", "api")
    h.wait_until(lambda: stack.pg.scalar("SELECT to_regclass('crud.events') IS NOT NULL"), 30, what="migration")
    r = stack.redis.client()

    ev = [{"event": "start", "player_id": "p1", "ts": "2024-01-01T10:00:00", "country": "fr"},
          {"event": "end", "player_id": "p1", "ts": "2024-01-01T10:30:00.5Z"}]
    st, js, hd = post(stack, "/v1/push/crud/events", ev)
    t.eq(st, 201, "POST 2 valid events -> 201 (loaded within the wait)")
    t.check(isinstance(js, list) and len(js) == 2, "201 answers the rows (%r)" % (js,))
    if isinstance(js, list) and js:
        t.eq(js[0].get("country"), "FR", "rows come back canonical (country upper-cased)")
        t.eq(js[0].get("ts"), "2024-01-01T10:00:00Z", "timestamps canonical UTC")
        t.eq(js[1].get("country"), None, "missing optional value is null")
    loc = hd.get("location", "")
    t.check(loc.startswith("/v1/batches/"), "201 carries Location of the batch (%r)" % loc)
    t.eq(stack.pg.scalar("SELECT count(*) FROM crud.events"), 2, "both rows are in PostgreSQL")

    st, js = stack.get(loc)
    t.eq(st, 200, "GET the batch status")
    t.eq((js or {}).get("status"), "loaded", "status loaded")
    t.eq((js or {}).get("rows"), 2, "ledger rows")
    t.check("loaded_at" in (js or {}), "ledger loaded_at is shown")

    st, js, _ = post(stack, "/v1/push/crud/events",
                     {"event": "start", "player_id": "p2", "ts": "2024-01-02T00:00:00Z", "country": "de"})
    t.eq(st, 201, "POST one object -> 201")
    t.check(isinstance(js, dict) and js.get("player_id") == "p2", "one object in, one object out (%r)" % (js,))

    # invalid rows: 422 naming row and field; nothing published
    before_len = r.xinfo_stream("fr:stream:{crud.events}")["entries-added"]  # the loader trims the stream
    bad = ev + [{"event": "jump", "player_id": "p3", "ts": "2024-01-01T00:00:00Z"},
                {"event": "start", "player_id": "p3", "ts": "not a time"}]
    st, js, _ = post(stack, "/v1/push/crud/events", bad)
    t.eq(st, 422, "invalid rows -> 422")
    det = (js or {}).get("detail", [])
    locs = [d.get("loc") for d in det] if isinstance(det, list) else []
    t.check(["body", 2, "event"] in locs and ["body", 3, "ts"] in locs,
            "422 names row and field of each invalid row (%r)" % (det,))
    t.eq(r.xinfo_stream("fr:stream:{crud.events}")["entries-added"], before_len,
         "nothing published for a request with invalid rows")

    # ?partial=1: the valid rows load, the invalid ones are reported by request index
    st, js, _ = post(stack, "/v1/push/crud/events?partial=1", bad)
    t.eq(st, 201, "partial: 201")
    t.eq((js or {}).get("inserted"), 2, "partial: the 2 valid rows inserted")
    t.eq(sorted(x.get("row") for x in (js or {}).get("rejected", [])), [2, 3], "partial: rejected rows by index")
    t.check(all("reason" in x for x in (js or {}).get("rejected", [])), "partial: each reject has a reason")
    t.eq(stack.pg.scalar("SELECT count(*) FROM crud.events"), 5, "partial: valid rows are in PostgreSQL")

    st, js, _ = post(stack, "/v1/push/crud/events", [])
    t.eq(st, 422, "no rows -> 422")
    many = [{"event": "start", "player_id": "p%d" % i, "ts": "2024-01-01T00:00:00Z"} for i in range(1001)]
    st, js, _ = post(stack, "/v1/push/crud/events", many)
    t.eq(st, 422, "1001 rows -> 422")
    t.check("at most 1000" in json.dumps(js), "the message says the limit (%r)" % (js,))
    st, _, _ = post(stack, "/v1/push/crud/events", "<xml/>", ctype="application/xml")
    t.eq(st, 415, "unsupported Content-Type -> 415")
    st, _, _ = post(stack, "/v1/push/crud/events", "{not json")
    t.eq(st, 422, "bad JSON -> 422")
    st, _, _ = post(stack, "/v1/push/crud/nothing", ev)
    t.eq(st, 404, "dataset without a push source -> 404")
    st, _ = stack.get("/v1/batches/01UNKNOWN")
    t.eq(st, 404, "unknown batch -> 404")

    # CSV body, keyed dataset, upsert
    st, js, _ = post(stack, "/v1/push/crud/items", "id,name,price,active\r\n1,apple,1.50,yes\r\n2,pear,,no\r\n",
                     ctype="text/csv")
    t.eq(st, 201, "CSV body -> 201")
    t.check(isinstance(js, list) and js[0].get("active") is True and js[0].get("price") == 1.5,
            "CSV rows typed in the answer (%r)" % (js,))
    st, _, _ = post(stack, "/v1/push/crud/items", [{"id": 1, "name": "apple", "price": "2.00"}])
    t.eq(st, 201, "upsert of an existing key -> 201")
    t.eq(stack.pg.query("SELECT name, price::text FROM crud.items ORDER BY id"),
         [("apple", "2.00"), ("pear", None)], "items upserted")

    idempotency(t, stack)

    # loader stopped: 202 + Location, queued, then loaded
    stack["loader"].stop()
    st, js, hd = post(stack, "/v1/push/crud/events",
                      [{"event": "start", "player_id": "p9", "ts": "2024-01-03T00:00:00Z"}])
    t.eq(st, 202, "no loader within the wait -> 202")
    loc = hd.get("location", "")
    t.check(loc.startswith("/v1/batches/") and (js or {}).get("status") == "queued", "202 names the batch (%r)" % js)
    st, js = stack.get(loc)
    t.eq((js or {}).get("status"), "queued", "GET the batch while the loader is down: queued")
    stack["loader"].start()
    h.wait_until(lambda: stack.get(loc)[1].get("status") == "loaded", 30, what="batch loaded after loader start")
    t.eq(stack.pg.scalar("SELECT count(*) FROM crud.events WHERE player_id = 'p9'"), 1, "the queued row loaded")

    t.eq(stack["api"].stop(), 0, "api drains and exits 0")
    t.eq(stack["loader"].stop(), 0, "loader exits 0")


if __name__ == "__main__":
    h.TestRun("test_writes").run(main)
