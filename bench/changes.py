"""Change feed benchmark (docs/status.md "GET /v1/changes"): 1,000 clients
connected to /v1/changes, delivery latency of each change to every client and
the api's memory, against Redis pub/sub fanning the same payloads out to
1,000 subscribers in the same run.

  FRESHET_BIN_DIR=build-bench /usr/bin/python3 bench/changes.py   (bench/run runs it)

One api worker. The changes are appended to fr:changes by this script
(XADD, the entry the loader writes: type + event JSON carrying the send
time), BENCH_CHANGES_RATE a second for BENCH_FRESH_SECONDS; the reference
PUBLISHes the same JSON on a channel that 1,000 raw RESP connections
subscribe to. Every delivery is timed from the send (wall clock, one
machine) to the moment the client process reads it (one Python process,
epoll, for both sides: its own cost is in both). BENCH_ROUNDS interleaved
rounds, medians. The table replaces the "Change feed" section of
bench/results.md (between its markers)."""
import json
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from harness import SRC, Stack, rss_kb, wait_until  # noqa: E402

BEGIN, END = "<!-- changes:begin -->", "<!-- changes:end -->"
QUICK = os.environ.get("BENCH_QUICK") == "1"
CLIENTS = int(os.environ.get("BENCH_CHANGES_CLIENTS", "200" if QUICK else "1000"))
RATE = int(os.environ.get("BENCH_CHANGES_RATE", "5"))
SECONDS = int(os.environ.get("BENCH_FRESH_SECONDS", "4" if QUICK else "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
CHANNEL = "bench:fanout"
MARK = b'"bench_ns":'


def connect_feed(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v1/changes HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    return s


def connect_sub(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL)).encode())
    return s


class Clients:
    """n sockets read in one epoll loop; every MARK found is a delivery,
    timed when its bytes were read. A marker cut by a read boundary is found
    in the next read (the tail is kept)."""

    def __init__(self, socks):
        self.socks = {s.fileno(): s for s in socks}
        self.tail = {fd: b"" for fd in self.socks}
        self.ep = select.epoll()
        for fd, s in self.socks.items():
            s.setblocking(False)
            self.ep.register(fd, select.EPOLLIN)
        self.lat = []       # seconds, one per delivery
        self.per_seq = {}   # seq -> deliveries
        self.closed = 0

    def poll(self, until):
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            for fd, _ in self.ep.poll(min(left, 0.2)):
                try:
                    data = self.socks[fd].recv(262144)
                except BlockingIOError:
                    continue
                now = time.time_ns()
                if not data:
                    self.ep.unregister(fd)
                    self.closed += 1
                    continue
                buf = self.tail[fd] + data
                pos = 0
                while True:
                    i = buf.find(MARK, pos)
                    if i < 0:  # keep what may be the start of a marker
                        self.tail[fd] = buf[max(pos, len(buf) - len(MARK)):]
                        break
                    j = k = i + len(MARK)
                    while k < len(buf) and 48 <= buf[k] <= 57:
                        k += 1
                    q = buf.find(b'"seq":', k)
                    e = q + 6
                    while 0 <= q and e < len(buf) and 48 <= buf[e] <= 57:
                        e += 1
                    if k == len(buf) or q < 0 or e == len(buf):  # cut by the read: the rest comes next
                        self.tail[fd] = buf[i:]
                        break
                    self.lat.append((now - int(buf[j:k])) / 1e9)
                    seq = int(buf[q + 6:e])
                    self.per_seq[seq] = self.per_seq.get(seq, 0) + 1
                    pos = e

    def close(self):
        for s in self.socks.values():
            s.close()
        self.ep.close()


def sender(redis_port, kind, seq0, n, rate):
    """Runs in a child process: sends n payloads at rate/s."""
    code = r'''
import sys, time, json, redis
r = redis.Redis(host="127.0.0.1", port=%d)
kind, seq0, n, rate = %r, %d, %d, %d
t0 = time.monotonic()
for i in range(n):
    wait = t0 + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    ev = '{"type":"cache.refreshed","bench_ns":%%d,"seq":%%d,"cache":"bench","pipeline":"bench","keys":["k%%d"]}' %% (
        time.time_ns(), seq0 + i, i)
    if kind == "feed":
        r.xadd("fr:changes", {"type": "cache.refreshed", "event": ev}, maxlen=10000, approximate=True)
    else:
        r.publish("%s", ev)
''' % (redis_port, kind, seq0, n, rate, CHANNEL)
    return subprocess.Popen(["/usr/bin/python3", "-c", code])


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def run_round(kind, c, redis_port, seq0):
    n = RATE * SECONDS
    before = len(c.lat)
    p = sender(redis_port, kind, seq0, n, RATE)
    c.poll(time.monotonic() + SECONDS + 0.5)
    p.wait(30)
    c.poll(time.monotonic() + 2.0)  # stragglers
    lat = c.lat[before:]
    got = sum(c.per_seq.get(s, 0) for s in range(seq0, seq0 + n))
    return {"lat": lat, "expected": n * CLIENTS, "got": got}


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    st = Stack(pipelines="players", extra_env={"FRESHET_LOG_LEVEL": "warn", "FRESHET_API_WORKERS": "1"}).start("api")
    api_pid = st["api"].proc.pid
    rport = st.redis.port
    time.sleep(1)
    rss_idle = rss_kb(api_pid)
    feeds = [connect_feed(st.api_port) for _ in range(CLIENTS)]
    for s in feeds:  # every answer head in: the feed is live from here
        s.settimeout(30)
        h = b""
        while b"\r\n\r\n" not in h:
            h += s.recv(4096)
        assert h.startswith(b"HTTP/1.1 200"), h[:80]
    subs = [connect_sub(rport) for _ in range(CLIENTS)]
    for s in subs:
        s.settimeout(30)
        h = b""
        while h.count(b"\r\n") < 6:
            h += s.recv(4096)
    wait_until(lambda: int(st.redis.client().execute_command("PUBSUB", "NUMSUB", CHANNEL)[1]) == CLIENTS, 30,
               what="subscribers")
    rss_conn = rss_kb(api_pid)
    fc, rc = Clients(feeds), Clients(subs)
    res = {"feed": [], "pubsub": []}
    seq = 0
    rss_peak = rss_conn
    try:
        for _ in range(ROUNDS):
            for kind, c in (("feed", fc), ("pubsub", rc)):
                res[kind].append(run_round(kind, c, rport, seq))
                seq += RATE * SECONDS
                rss_peak = max(rss_peak, rss_kb(api_pid))
            print("round: feed p99 %.2f ms, pubsub p99 %.2f ms" % (
                pct(res["feed"][-1]["lat"], 99) * 1e3, pct(res["pubsub"][-1]["lat"], 99) * 1e3), flush=True)
        _, metrics = st.get("/metrics")
    finally:
        fc.close()
        rc.close()
        st["api"].stop()
    dropped = sum(float(ln.split()[-1]) for ln in metrics.splitlines() if ln.startswith("api_changes_dropped_total"))

    def med(kind, f):
        return statistics.median(f(r) for r in res[kind])

    rows = []
    for name, f in (("p50", lambda r: pct(r["lat"], 50)), ("p99", lambda r: pct(r["lat"], 99)),
                    ("max", lambda r: max(r["lat"]) if r["lat"] else float("nan"))):
        a, b = med("feed", f) * 1e3, med("pubsub", f) * 1e3
        rows.append((name, a, b, a / b if b else float("nan")))
    got_f = sum(r["got"] for r in res["feed"])
    exp_f = sum(r["expected"] for r in res["feed"])
    got_p = sum(r["got"] for r in res["pubsub"])
    exp_p = sum(r["expected"] for r in res["pubsub"])
    lines = [BEGIN, "## Change feed (bench/changes.py)", "",
             "%d clients on `GET /v1/changes` (1 api worker) vs %d Redis pub/sub subscribers, %d changes/s for "
             "%d s, %d interleaved rounds, medians; %d CPUs. Delivery = from the XADD (feed) or PUBLISH "
             "(reference) of a change to its read by each client (one epoll Python process reads both sides)."
             % (CLIENTS, CLIENTS, RATE, SECONDS, ROUNDS, os.cpu_count())
             + " Load average at the end of the run: %.1f (other work shares the CPUs: compare the ratio)."
             % os.getloadavg()[0], "",
             "| delivery latency | feed ms | Redis pub/sub ms | ratio |", "|---|---|---|---|"]
    for name, a, b, ratio in rows:
        lines.append("| %s | %.2f | %.2f | %.2f |" % (name, a, b, ratio))
    lines += ["", "| | value |", "|---|---|",
              "| deliveries (feed) | %d of %d |" % (got_f, exp_f),
              "| deliveries (pub/sub) | %d of %d |" % (got_p, exp_p),
              "| clients dropped (api_changes_dropped_total) | %d |" % dropped,
              "| api RSS idle | %.1f MB |" % (rss_idle / 1024.0),
              "| api RSS with %d feeds connected | %.1f MB (%.1f KB per feed) |" % (
                  CLIENTS, rss_conn / 1024.0, (rss_conn - rss_idle) / CLIENTS),
              "| api RSS peak during the rounds | %.1f MB |" % (rss_peak / 1024.0),
              END]
    section = "\n".join(lines) + "\n"
    print(section)
    if QUICK:
        return
    path = os.path.join(SRC, "bench", "results.md")
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
