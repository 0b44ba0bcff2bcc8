"""e2e: the operator console (docs/console.md) on a running freshet with all
five pipelines (players, sessions and hr from their samples, football and
crypto against tools/fake_upstream), driven in Debian's headless chromium
over the DevTools protocol (tests/lib/cdp.py):
  - the admin endpoints the page uses: statuses and 422s naming the field;
    a read key gets 403 and an admin key 200 on an api with auth on;
  - the page draws every node of every pipeline's graph (/v1/status);
  - an NDJSON file with bad rows: its dead letters show in the page within
    seconds, with their reasons; one corrected in the page and re-driven
    loads into players.events; another is discarded; a batch the loader
    refuses (a trigger error) is re-driven once the trigger is gone and loads;
  - a backfill of crypto.klines started from the page, with two ingests
    running, is claimed and run by exactly one, reaches 100 % and its candles
    are in the table;
  - a route.stale event turns its route amber; every daemon exits 0.
Screenshots go to the build folder (console-*.png); with
FRESHET_CONSOLE_SCREENSHOT=PATH the overview is also written there (how
docs/console.png is made)."""
import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402
from cdp import Browser  # noqa: E402

NOW = "2024-06-17T12:30:00Z"
TOKEN = "test-token-42"
PIPELINES = ("players", "sessions", "hr", "football", "crypto")
BAD_COUNTRY = "console-bad-country"
BAD_NAME = "console-bad-name"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def basic(user, key):
    return "Basic " + base64.b64encode(("%s:%s" % (user, key)).encode()).decode()


def shot(b, name):
    path = os.path.join(h.BIN, "console-%s.png" % name)
    b.screenshot(path)
    return path


def load_samples(stack):
    env = dict(os.environ)
    env.update({"FRESHET_DATA_DIR": stack.data_dir, "FRESHET_PIPELINES_DIR": os.path.join(h.SRC, "pipelines"),
                "FRESHET_PIPELINES": "players,sessions,hr", "SAMPLE_PLAYERS": "20", "SAMPLE_EVENTS": "400"})
    return subprocess.run([os.path.join(h.SRC, "deploy", "load-samples")], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)


def detail_names(body):
    """The names a 422 body's items point at (last element of each loc)."""
    d = (body or {}).get("detail") if isinstance(body, dict) else None
    return [x["loc"][-1] for x in d] if isinstance(d, list) else []


def check_endpoints(t, stack):
    st, page = stack.get("/console")
    t.check(st == 200 and "/console/console.js" in page and "/console/uplot.js" in page, "GET /console: the page")
    st, js = stack.get("/console/uplot.js")
    t.check(st == 200 and "uPlot" in js, "GET /console/uplot.js: the embedded uPlot")
    st, _ = stack.get("/console/console.css")
    t.eq(st, 200, "GET /console/console.css")
    t.eq(stack.get("/console/nope.js")[0], 404, "an unknown console file -> 404")
    t.eq(stack.request("POST", "/console", body="")[0], 405, "POST /console -> 405")

    st, spec = stack.get("/openapi.json")
    paths = (spec or {}).get("paths", {}) if st == 200 else {}
    for p in ("/console", "/admin/deadletters/{dataset}", "/admin/deadletters/{dataset}/{id}",
              "/admin/deadletters/{dataset}/{id}/redrive", "/admin/backfills", "/admin/backfills/{id}",
              "/admin/series"):
        t.check(p in paths, "/openapi.json declares %s" % p)

    st, body = stack.get("/admin/deadletters/players.events?limit=5")
    t.check(st == 200 and isinstance(body.get("items"), list) and "total" in body,
            "GET /admin/deadletters/players.events: %s %r" % (st, body))
    t.eq(stack.get("/admin/deadletters/players.nope")[0], 404, "unknown dataset -> 404")
    st, body = stack.get("/admin/deadletters/players.events?limit=0")
    t.check(st == 422 and detail_names(body) == ["limit"], "limit=0 -> 422 naming limit: %r" % (body,))
    st, body = stack.get("/admin/deadletters/players.events?before=yesterday")
    t.check(st == 422 and detail_names(body) == ["before"], "before=yesterday -> 422 naming before: %r" % (body,))
    t.eq(stack.request("DELETE", "/admin/deadletters/players.events/1-0")[0], 404, "discard of an unknown id -> 404")
    t.eq(stack.request("POST", "/admin/deadletters/players.events/1-0/redrive")[0], 404,
         "re-drive of an unknown id -> 404")
    t.eq(stack.request("PUT", "/admin/deadletters/players.events/1-0")[0], 405, "PUT a dead letter -> 405")

    cases = [({}, "pipeline"),
             ({"pipeline": "crypto"}, "source"),
             ({"pipeline": "nope", "source": "klines", "from": "2024-01-01", "to": "2024-01-02"}, "pipeline"),
             ({"pipeline": "crypto", "source": "nope", "from": "2024-01-01", "to": "2024-01-02"}, "source"),
             ({"pipeline": "players", "source": "events_drop", "from": "2024-01-01", "to": "2024-01-02"}, "source"),
             ({"pipeline": "crypto", "source": "klines", "from": "soon", "to": "2024-01-02"}, "from"),
             ({"pipeline": "crypto", "source": "klines", "from": "2024-01-02", "to": "2024-01-01"}, "to")]
    for body, field in cases:
        st, got = stack.request("POST", "/admin/backfills", body=body)
        t.check(st == 422 and detail_names(got) == [field],
                "POST /admin/backfills %s -> 422 naming %s: %s %r" % (json.dumps(body), field, st, got))
    t.eq(stack.get("/admin/backfills/not-an-id")[0], 404, "unknown backfill -> 404")
    t.eq(stack.get("/admin/backfills/01J0000000000000000000000Z")[0], 404, "expired/unknown backfill -> 404")

    st, body = stack.get("/admin/series")
    t.check(st == 200 and len(body.get("minutes", [])) == 60 and len(body.get("rows_per_s", [])) == 60,
            "GET /admin/series: 60 minutes")
    st, body = stack.get("/admin/series?dataset=nope.x")
    t.check(st == 422 and detail_names(body) == ["dataset"], "series of an unknown dataset -> 422 naming dataset")


def check_roles(t, stack):
    """A second api on the same Redis and PostgreSQL, auth on."""
    keys = os.path.join(stack.base, "console-keys.txt")
    with open(keys, "w") as f:
        f.write("reader:read:%s\nops:admin:%s\n" % (sha("reader-key"), sha("admin-key")))
    port = h.free_port()
    d = os.path.join(stack.base, "api-auth")
    os.makedirs(d, exist_ok=True)
    api = h.Daemon("api", dict(stack.env, FRESHET_API_AUTH="on", FRESHET_API_KEYS_FILE=keys,
                               FRESHET_API_ADDR="127.0.0.1:%d" % port), d)
    api.start()
    h.wait_until(lambda: stack.get("/healthz", port=port)[0] == 200, 20, what="the auth api")
    for method, path, body in (("GET", "/console", None), ("GET", "/admin/deadletters/players.events", None),
                               ("DELETE", "/admin/deadletters/players.events/1-0", None),
                               ("POST", "/admin/deadletters/players.events/1-0/redrive", None),
                               ("POST", "/admin/backfills", {}), ("GET", "/admin/series", None)):
        st, _ = stack.request(method, path, body=body, port=port)
        t.eq(st, 401, "%s %s without a key -> 401" % (method, path))
        st, _ = stack.request(method, path, body=body, port=port, headers={"Authorization": "Bearer reader-key"})
        t.eq(st, 403, "%s %s with a read key -> 403" % (method, path))
    st, _ = stack.request("GET", "/console", port=port, headers={"Authorization": "Bearer admin-key"})
    t.eq(st, 200, "GET /console with an admin key -> 200")
    st, _ = stack.request("GET", "/admin/deadletters/players.events", port=port,
                          headers={"Authorization": "Bearer admin-key"})
    t.eq(st, 200, "GET /admin/deadletters/players.events with an admin key -> 200")
    # a browser: the console's 401 asks for a login, whose password is the key
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/console")
    r = c.getresponse()
    r.read()
    c.close()
    t.check(r.status == 401 and (r.getheader("WWW-Authenticate") or "").startswith("Basic realm="),
            "GET /console without a key -> 401 asking for Basic: %s" % r.getheader("WWW-Authenticate"))
    st, _ = stack.request("GET", "/console", port=port, headers={"Authorization": basic("ops", "admin-key")})
    t.eq(st, 200, "GET /console with Basic ops:admin-key -> 200")
    st, _ = stack.request("GET", "/v1/status", port=port, headers={"Authorization": basic("ops", "admin-key")})
    t.eq(st, 200, "GET /v1/status with the same login -> 200")
    st, _ = stack.request("GET", "/console", port=port, headers={"Authorization": basic("x", "reader-key")})
    t.eq(st, 403, "GET /console with Basic x:reader-key -> 403")
    return api, port


def check_graph(t, stack, b):
    st, status = stack.get("/v1/status")
    if not t.eq(st, 200, "GET /v1/status"):
        return
    names = [p["name"] for p in status.get("pipelines", [])]
    t.eq(sorted(names), sorted(PIPELINES), "/v1/status has the five pipelines")
    want = ["%s|%s" % (p["name"], n["id"]) for p in status["pipelines"] for n in p["nodes"]]
    t.check(len(want) > 20, "the five graphs have nodes (%d)" % len(want))

    def drawn():
        keys = b.js("Array.from(document.querySelectorAll('.node')).map(g => g.getAttribute('data-key'))") or []
        return all(k in keys for k in want)

    h.wait_until(drawn, 30, interval=0.2, what="every node drawn")
    keys = b.js("Array.from(document.querySelectorAll('.node')).map(g => g.getAttribute('data-key'))")
    t.check(all(k in keys for k in want), "the page draws every node of every pipeline (%d)" % len(want))
    for kind in ("source", "dataset", "model", "cache", "route"):
        t.check(any(k.split("|")[1].startswith(kind + ":") for k in keys), "the graphs show %ss" % kind)
    health = b.js("Array.from(document.querySelectorAll('.node')).map(g => g.getAttribute('data-health'))")
    t.check(set(health) <= {"ok", "warning", "failing", "unknown"} and "ok" in health,
            "nodes are coloured by health: %r" % sorted(set(health)))
    t.check(b.js("Array.from(document.querySelectorAll('.node')).every(g => g.tabIndex === 0 && "
                 "g.getAttribute('aria-label'))"), "every node is keyboard-focusable and labelled")
    t.check(b.js("Array.from(document.querySelectorAll('select, input, textarea')).every(e => "
                 "e.labels && e.labels.length > 0)"), "every form control has a label")
    t.check(b.js("document.documentElement.scrollWidth <= 1366"), "no horizontal scroll at 1366x768")


def main(t):
    fake = h.FakeUpstream(seed=7, now=NOW).start()
    stack = t.stack = h.Stack(pipelines=",".join(PIPELINES), now=NOW, extra_env={
        "BINANCE_API_URL": fake.url, "FOOTBALL_API_URL": fake.url, "FOOTBALL_API_TOKEN": TOKEN,
        "FOOTBALL_API_PER_MINUTE": "100000"}).start()
    r = load_samples(stack)
    t.eq(r.returncode, 0, "load-samples: " + r.stdout[-300:])
    h.wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE dataset = 'hr.hired_employees'")
                 > 0, 120, interval=0.5, what="the samples load")

    check_endpoints(t, stack)
    auth_api, auth_port = check_roles(t, stack)

    b = Browser().start()
    b.navigate("http://127.0.0.1:%d/console" % stack.api_port)
    check_graph(t, stack, b)
    h.wait_until(lambda: b.js("document.querySelector('#chart-fresh canvas') !== null"), 30, interval=0.2,
                 what="the charts drawn")
    t.check(b.js("document.querySelector('#chart-rows canvas') !== null"), "the charts are drawn (uPlot)")
    shot(b, "overview")

    # bad rows: an NDJSON file, two good rows and two bad ones
    rows = [{"name": "srvTournamentJoined", "player_id": "console-good-1", "country": "DE",
             "timestamp_utc": "2024-06-17T10:00:00Z"},
            {"name": "srvTournamentJoined", "player_id": BAD_COUNTRY, "country": "DEU",
             "timestamp_utc": "2024-06-17T10:01:00Z"},
            {"name": "srvNope", "player_id": BAD_NAME, "country": "FR", "timestamp_utc": "2024-06-17T10:02:00Z"},
            {"name": "srvTournamentJoined", "player_id": "console-good-2", "country": "IT",
             "timestamp_utc": "2024-06-17T10:03:00Z"}]
    # the keyboard selects the dataset in its graph: its dead letters list
    t.check(b.js("(() => { const g = document.querySelector('.node[data-key=\"players|dataset:events\"]'); "
                 "g.focus(); return document.activeElement === g; })()"), "Tab focus reaches the dataset node")
    b.key("Enter", "Enter", 13)
    h.wait_until(lambda: b.js("document.getElementById('dlq-ds').value") == "players.events", 10, interval=0.1,
                 what="Enter selects players.events")
    t.check("players.events" in (b.js("document.getElementById('node').textContent") or ""),
            "the selected node's state is shown")
    stack.drop("players", "events", "console-bad.ndjson", "".join(json.dumps(x) + "\n" for x in rows))
    dropped = time.monotonic()

    def dlq_rows():
        return b.js("Array.from(document.querySelectorAll('#dlq-body tr[data-id]')).map(tr => "
                    "({id: tr.getAttribute('data-id'), text: tr.textContent}))") or []

    h.wait_until(lambda: sum(1 for x in dlq_rows() if BAD_COUNTRY in x["text"] or BAD_NAME in x["text"]) == 2, 60,
                 interval=0.2, what="the two dead letters in the page")
    print("measured: the dead letters showed in the page %.1f s after the file was dropped"
          % (time.monotonic() - dropped))
    shown = dlq_rows()
    bad_c = [x for x in shown if BAD_COUNTRY in x["text"]][0]
    bad_n = [x for x in shown if BAD_NAME in x["text"]][0]
    t.check("country" in bad_c["text"], "the dead letter shows its reason: %s" % bad_c["text"][:200])
    shot(b, "deadletters")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id IN ('console-good-1', "
                         "'console-good-2')"), 2, "the good rows loaded")

    # re-drive the corrected row from the page
    fixed = dict(rows[1], country="DE")
    b.js("(() => { const tr = document.querySelector('#dlq-body tr[data-id=\"%s\"]'); "
         "tr.querySelector('textarea').value = %s; tr.querySelector('button.redrive').click(); })()"
         % (bad_c["id"], json.dumps(json.dumps(fixed))))
    h.wait_until(lambda: "Re-driven" in (b.js("document.getElementById('dlq-msg').textContent") or ""), 20,
                 interval=0.1, what="the page says re-driven")
    h.wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id = %s",
                                         (BAD_COUNTRY,)) == 1, 60, interval=0.2, what="the re-driven row loaded")
    t.eq(stack.pg.scalar("SELECT country FROM players.events WHERE player_id = %s", (BAD_COUNTRY,)), "DE",
         "the re-driven row loaded as corrected")
    redis = stack.redis.client()
    ids = [e[0].decode() if isinstance(e[0], bytes) else e[0] for e in redis.xrange("fr:dlq:{players.events}")]
    t.check(bad_c["id"] not in ids, "the re-driven dead letter left the DLQ")
    st, _ = stack.request("POST", "/admin/deadletters/players.events/%s/redrive" % bad_c["id"])
    t.eq(st, 404, "a second re-drive of it -> 404")

    # an uncorrected re-drive is refused with the reason; then discard it
    st, body = stack.request("POST", "/admin/deadletters/players.events/%s/redrive" % bad_n["id"])
    t.check(st == 422 and detail_names(body) == ["raw"], "re-drive of the row as it was -> 422 naming raw: %r"
            % (body,))
    st, body = stack.request("POST", "/admin/deadletters/players.events/%s/redrive" % bad_n["id"],
                             body={"row": {"name": "srvNope"}, "extra": 1})
    t.check(st == 422 and detail_names(body) == ["extra"], "unknown body member -> 422 naming it: %r" % (body,))
    b.js("document.querySelector('#dlq-body tr[data-id=\"%s\"] button.discard').click()" % bad_n["id"])
    h.wait_until(lambda: "Discarded" in (b.js("document.getElementById('dlq-msg').textContent") or ""), 20,
                 interval=0.1, what="the page says discarded")
    ids = [e[0].decode() if isinstance(e[0], bytes) else e[0] for e in redis.xrange("fr:dlq:{players.events}")]
    t.check(bad_n["id"] not in ids, "the discarded dead letter left the DLQ")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id = %s", (BAD_NAME,)), 0,
         "the discarded row never loaded")

    # a whole batch the loader refuses (a trigger error belongs to no row): a dead letter of kind
    # batch; once the cause is gone (the trigger dropped), re-driven from the page, it loads
    stack.pg.query("CREATE FUNCTION players.console_no_poison() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN IF NEW.player_id = 'console-poison' THEN RAISE EXCEPTION 'console: poison row'; "
                   "END IF; RETURN NEW; END$$")
    stack.pg.query("CREATE TRIGGER console_no_poison BEFORE INSERT ON players.events "
                   "FOR EACH ROW EXECUTE FUNCTION players.console_no_poison()")
    poison = dict(rows[0], player_id="console-poison")
    stack.drop("players", "events", "console-poison.ndjson", json.dumps(poison) + "\n")
    h.wait_until(lambda: any("console: poison row" in x["text"] for x in dlq_rows()), 120, interval=0.3,
                 what="the refused batch in the page")
    dead = [x for x in dlq_rows() if "console: poison row" in x["text"]][0]
    t.check("batch" in dead["text"], "it is shown as a batch: %s" % dead["text"][:200])
    t.eq(b.js("document.querySelector('#dlq-body tr[data-id=\"%s\"] textarea').value" % dead["id"]), "",
         "a batch's row box starts empty (re-driven as it was)")
    st, body = stack.request("POST", "/admin/deadletters/players.events/%s/redrive" % dead["id"],
                             body={"row": "not an object"})
    t.check(st == 422 and detail_names(body) == ["row"], "a row that is not an object -> 422 naming row: %r"
            % (body,))
    stack.pg.query("DROP TRIGGER console_no_poison ON players.events")
    b.js("document.querySelector('#dlq-body tr[data-id=\"%s\"] button.redrive').click()" % dead["id"])
    h.wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id = 'console-poison'")
                 == 1, 60, interval=0.2, what="the re-driven batch loaded")
    ids = [e[0].decode() if isinstance(e[0], bytes) else e[0] for e in redis.xrange("fr:dlq:{players.events}")]
    t.check(dead["id"] not in ids, "the re-driven batch left the DLQ")

    # a backfill from the page, with a second ingest running: one of them claims it and runs it;
    # 240 hours before the 720 the source keeps
    d2 = os.path.join(stack.base, "ingest2")
    os.makedirs(d2, exist_ok=True)
    ingest2 = h.Daemon("ingest", dict(stack["ingest"].env, FRESHET_ADMIN_ADDR="127.0.0.1:%d" % h.free_port()), d2)
    ingest2.start()
    h.wait_until(lambda: dict(redis.pubsub_numsub("fr:control")).get(b"fr:control", 0) >= 2, 30, interval=0.2,
                 what="both ingests listening on fr:control")
    before = stack.pg.scalar("SELECT count(*) FROM crypto.ohlc_hourly WHERE open_time < '2024-05-18T12:00:00Z'")
    b.js("(() => { document.getElementById('bf-source').value = 'crypto.klines'; "
         "document.getElementById('bf-from').value = '2024-05-08T12:00:00Z'; "
         "document.getElementById('bf-to').value = '2024-05-18T12:00:00Z'; "
         "document.getElementById('bf-start').click(); })()")
    started = time.monotonic()
    h.wait_until(lambda: "done" in (b.js("document.getElementById('bf-text').textContent") or "")
                 or "failed" in (b.js("document.getElementById('bf-text').textContent") or ""), 120, interval=0.2,
                 what="the backfill ends")
    print("measured: the page's backfill (10 days x 3 symbols) ended %.1f s after Start" % (time.monotonic() - started))
    text = b.js("document.getElementById('bf-text').textContent")
    t.check("done" in text and "100 %" in text, "the backfill reaches 100 %%: %s" % text)
    t.eq(b.js("document.getElementById('bf-progress').value"), 100, "the progress bar is full")
    h.wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM crypto.ohlc_hourly WHERE open_time >= "
                                         "'2024-05-08T12:00:00Z' AND open_time < '2024-05-18T12:00:00Z'") >= 720,
                 60, interval=0.3, what="the backfilled candles")
    got = stack.pg.scalar("SELECT count(*) FROM crypto.ohlc_hourly WHERE open_time >= '2024-05-08T12:00:00Z' "
                          "AND open_time < '2024-05-18T12:00:00Z'")
    t.eq(got, 720, "3 symbols x 240 backfilled hours (before: %d older rows)" % before)
    bf_id = b.js("document.getElementById('bf-text').textContent")
    ids = [k.decode() if isinstance(k, bytes) else k for k in redis.scan_iter("fr:backfill:*")]
    t.eq(len(ids), 1, "one backfill hash: %r" % ids)
    holder = redis.hget(ids[0], "holder") if ids else None
    claims = [ids and ("backfill %s of crypto.klines claimed by" % ids[0].split(":")[-1]) in d.log()
              for d in (stack["ingest"], ingest2)]
    t.check(holder is not None and sum(1 for c in claims if c) == 1,
            "exactly one of the two ingests claimed and ran it (holder %r, %r; %s)" % (holder, claims, bf_id))
    t.eq(ingest2.stop(), 0, "the second ingest drains and exits 0")
    shot(b, "backfill")

    # a route answering data older than its max_age (route.stale on fr:events) turns amber
    redis.publish("fr:events", json.dumps({"type": "route.stale", "ts": NOW, "pipeline": "crypto", "route": "ohlc",
                                           "path": "/ohlc/{symbol}", "age_s": 7300, "max_age_s": 3600,
                                           "refreshed_at": NOW}, separators=(",", ":")))

    def listed():
        st, body = stack.get("/admin/series")
        return st == 200 and any(x["path"] == "/ohlc/{symbol}" and x["age_s"] == 7300
                                 for x in body.get("stale_routes", []))

    h.wait_until(listed, 20, interval=0.1, what="/admin/series lists the stale route")
    t.check(listed(), "/admin/series lists the stale route")
    node = "document.querySelector('.node[data-key=\"crypto|route:GET /ohlc/{symbol}\"]')"
    h.wait_until(lambda: b.js(node + ".getAttribute('data-health')") == "warning", 40, interval=0.3,
                 what="the stale route drawn as a warning")
    t.check("max_age" in b.js(node + ".getAttribute('aria-label')"), "its label says why")

    # live: the change feed's events reach the page
    t.check(b.js("document.querySelectorAll('#changes li').length") > 0
            or "polling" in (b.js("document.getElementById('live').textContent") or ""),
            "the page lists changes from /v1/changes")
    b.js("window.scrollTo(0, 0)")
    path = shot(b, "final")
    out = os.environ.get("FRESHET_CONSOLE_SCREENSHOT")
    if out:
        b.screenshot(out, full=False)
    t.check(os.path.getsize(path) > 10000, "screenshot %s written" % path)

    # with auth on, a browser that logged in (Basic, the key as password) gets the same page
    b.call("Network.enable")
    b.call("Network.setExtraHTTPHeaders", headers={"Authorization": basic("ops", "admin-key")})
    b.navigate("http://127.0.0.1:%d/console" % auth_port)
    h.wait_until(lambda: b.js("document.querySelectorAll('.node').length") > 20, 30, interval=0.2,
                 what="the graphs through the auth api")
    h.wait_until(lambda: b.js("document.getElementById('live').textContent") == "live", 30, interval=0.2,
                 what="the change feed through the auth api")
    t.check(b.js("document.getElementById('keyform').hidden"), "no key asked for after the login")
    b.stop()
    t.eq(auth_api.stop(), 0, "the auth api drains and exits 0")
    for name in ("api", "ingest", "loader"):  # under ASan: no leak of what the console did
        t.eq(stack[name].stop(), 0, "%s drains and exits 0" % name)


if __name__ == "__main__":
    h.TestRun("e2e_console").run(main)
