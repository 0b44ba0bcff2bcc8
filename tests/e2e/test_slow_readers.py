"""e2e (security regression: one reader holds PostgreSQL hostage): many
clients ask for a large streamed list and never read it. Before the fix each
worker's one PostgreSQL connection queued every cursor's DECLARE and FETCH
behind the others, timed operations from when they were queued, dropped the
connection on the first timeout ("operation timed out") and every other
client got 503. Now streaming cursors run on their own connections, are
bounded per worker and per API key (over the bound: 503 + Retry-After with a
JSON body, before any query), a timed-out statement is cancelled alone, and
short requests of another key keep getting 200. After the slow clients go,
the api serves large lists again. Loopback only; bounded loop counts; the
checks are statuses and counts, not timings."""
import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "routes")
N_SLOW = 120          # connections that ask and never read
ROWS = 200000         # rows of each slow request (many pages: it streams)
N_SHORT = 30          # short requests of the other key while they hang on


def sha(s):
    import hashlib
    return hashlib.sha256(s.encode()).hexdigest()


def get(stack, path, key, timeout=30, source="127.0.0.1"):
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=timeout, source_address=(source, 0))
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + key} if key else {})
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def slow_open(stack, key, rows=ROWS):
    """A connection that sends a large list request and does not read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
    s.settimeout(10)
    s.connect(("127.0.0.1", stack.api_port))
    auth = "Authorization: Bearer %s\r\n" % key if key else ""
    s.sendall(("GET /rt/big?n=%d&format=csv HTTP/1.1\r\nHost: x\r\n%s\r\n" % (rows, auth)).encode())
    return s


def head_of(s):
    """(status, headers, body so far) of what a slow connection was sent; a
    connection the api closed without an answer gives status 0."""
    buf = b""
    s.settimeout(5)
    try:
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            d = s.recv(4096)
            if not d:
                break
            buf += d
    except (socket.timeout, OSError):
        pass
    if b"\r\n\r\n" not in buf:
        return 0, {}, b""
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0") or 0)
    try:
        while hdrs.get("content-length") and len(rest) < n:
            d = s.recv(4096)
            if not d:
                break
            rest += d
    except (socket.timeout, OSError):
        pass
    return int(lines[0].split()[1]), hdrs, rest


def short_round(t, stack, key, what):
    """Short requests of the other key: a one-row query, a small list (a
    cursor too) and a value. Returns the statuses seen."""
    seen = {}
    for i in range(N_SHORT):
        path = ("/rt/count?year=2024", "/rt/ticks/AUSD", "/rt/last/AUSD")[i % 3]
        st, b, _ = get(stack, path, key)
        seen[st] = seen.get(st, 0) + 1
        if st == 200 and path == "/rt/ticks/AUSD":
            t.eq(len(json.loads(b)), 3, "%s: the small list is whole" % what)
    return seen


def main(t):
    base = h.tmpdir()
    keys = os.path.join(base, "keys.txt")
    with open(keys, "w") as f:
        f.write("hog:read:%s:100000:100000\n" % sha("hog-key"))
        f.write("user:read:%s:100000:100000\n" % sha("user-key"))
    stack = t.stack = h.Stack(pipelines=PIPE, extra_env={
        "FRESHET_API_AUTH": "on", "FRESHET_API_KEYS_FILE": keys, "FRESHET_API_WORKERS": "2",
        # the slow clients hold their streams for the whole check
        "FRESHET_API_REQUEST_TIMEOUT_MS": "120000"}).start("loader", "ingest", "api")
    stack.drop("rt", "ticks", "a.csv", "sym,at,px,qty,ok,note\n"
               "AUSD,2024-01-01T00:00:00Z,1.5,10,true,a\n"
               "AUSD,2024-01-01T01:00:00Z,2.25,20,false,b\n"
               "AUSD,2024-01-01T02:00:00Z,3,30,,\n")
    h.wait_until(lambda: get(stack, "/rt/ticks/AUSD", "user-key")[0] == 200 and
                 len(json.loads(get(stack, "/rt/ticks/AUSD", "user-key")[1])) == 3, 30, what="ticks loaded")
    t.eq(short_round(t, stack, "user-key", "before"), {200: N_SHORT}, "short requests answer 200 before the hogs")

    slow = []
    try:
        for _ in range(N_SLOW):
            slow.append(slow_open(stack, "hog-key"))
        # let the api take them all in (it answers or streams each one)
        time.sleep(3)
        seen = short_round(t, stack, "user-key", "during")
        t.eq(seen, {200: N_SHORT}, "short requests of another key answer 200 while %d readers hang" % N_SLOW)
        # the hogs: each one was either streamed to (200) or refused before
        # any query with 503, Retry-After and a JSON detail
        statuses = {}
        refused_ok = 0
        for s in slow:
            st, hd, b = head_of(s)
            statuses[st] = statuses.get(st, 0) + 1
            if st == 503:
                try:
                    detail = json.loads(b).get("detail", "")
                except ValueError:
                    detail = ""
                if hd.get("retry-after", "").isdigit() and "application/json" in hd.get("content-type", "") \
                        and detail:
                    refused_ok += 1
        print("slow clients' answers: %s" % statuses)
        t.eq(sorted(statuses), [200, 503], "every slow client got 200 (streamed) or 503 (over the bound)")
        t.eq(refused_ok, statuses.get(503, -1), "each 503 has a Retry-After and a JSON detail")
    finally:
        for s in slow:
            s.close()

    # recovery: after the slow clients are gone, large lists stream again
    def big_ok():
        st, b, hd = get(stack, "/rt/big?n=30000&format=csv", "hog-key", timeout=60)
        return st == 200 and b.count(b"\n") == 30001
    h.wait_until(big_ok, 60, interval=0.5, what="a large list streams whole after the slow clients left")
    t.check(big_ok(), "a large list streams whole after the slow clients left")
    t.eq(short_round(t, stack, "user-key", "after"), {200: N_SHORT}, "short requests answer 200 after")
    log = stack["api"].log()
    t.check("operation timed out" not in log and "connection lost" not in log,
            "no PostgreSQL connection of the api was dropped")
    t.eq(stack["api"].stop(), 0, "the api drains (its stream connections closed) and exits 0")
    stalled(t)


def stalled(t):
    """Keys off: the bound is per client address. A stream whose client
    stops reading holds its slot until the request timeout closes its
    connection; then the slot (and its cursor) is free again."""
    stack = t.stack = h.Stack(pipelines=PIPE, extra_env={
        "FRESHET_API_WORKERS": "1", "FRESHET_API_MAX_STREAMS_PER_CLIENT": "1",
        "FRESHET_API_REQUEST_TIMEOUT_MS": "4000"}).start("api")
    # the api streams before the hog comes (its stream connections are up)
    h.wait_until(lambda: get(stack, "/rt/big?n=5000", None)[0] == 200, 30, interval=0.25,
                 what="the api streams a large list")
    hog = slow_open(stack, None)
    try:
        # the hog's stream holds 127.0.0.1's one slot: another stream from
        # there is refused (by the bound: with Retry-After), one from
        # another address (127.0.0.2) is not
        h.wait_until(lambda: get(stack, "/rt/big?n=5000", None)[2].get("retry-after") == "1", 30, interval=0.1,
                     what="a second stream from the hog's address is refused by the bound")
        st, b, hd = get(stack, "/rt/big?n=5000", None)
        t.eq((st, hd.get("retry-after"), "detail" in json.loads(b)), (503, "1", True),
             "over the per-address bound: 503, Retry-After: 1, JSON detail")
        st, b, _ = get(stack, "/rt/big?n=5000&format=csv", None, source="127.0.0.2")
        t.eq((st, b.count(b"\n")), (200, 5001), "another address streams meanwhile")
        # the stalled stream is cut at the request timeout: the slot comes back
        h.wait_until(lambda: get(stack, "/rt/big?n=5000", None)[0] == 200, 30, interval=0.25,
                     what="the hog's slot is free after its stalled stream was cut")
        st, b, _ = get(stack, "/rt/big?n=5000&format=csv", None)
        t.eq((st, b.count(b"\n")), (200, 5001), "the hog's address streams again once its stalled stream is cut")
    finally:
        hog.close()
    t.eq(stack["api"].stop(), 0, "the api drains and exits 0")


if __name__ == "__main__":
    h.TestRun("test_slow_readers").run(main)
